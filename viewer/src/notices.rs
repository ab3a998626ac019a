//! Outcomes of actions and problems: the last one in the status bar, all of
//! them in the notices window.

use egui::{Color32, Ui};

use crate::state::Notice;

/// Colour of a notice.
fn color(n: &Notice) -> Color32 {
    if n.result.is_ok() {
        Color32::from_rgb(40, 160, 60)
    } else {
        Color32::from_rgb(210, 40, 40)
    }
}

/// One line for a notice.
pub fn line(n: &Notice) -> String {
    let time = chrono_like(n.at);
    match &n.result {
        Ok(r) => format!("{time} {}: {r}", n.what),
        Err(e) => format!("{time} {}: FAILED: {e}", n.what),
    }
}

fn chrono_like(at: std::time::SystemTime) -> String {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

/// The status bar: the newest notice and a button for the rest.
pub fn status_bar_ui(ui: &mut Ui, notices: &[Notice], show_all: &mut bool) {
    ui.horizontal(|ui| {
        if ui.button(format!("notices ({})", notices.len())).clicked() {
            *show_all = !*show_all;
        }
        if let Some(n) = notices.last() {
            ui.colored_label(color(n), line(n));
        }
    });
}

/// The notices window (UTC times).
pub fn window(ctx: &egui::Context, notices: &[Notice], open: &mut bool) {
    egui::Window::new("notices")
        .open(open)
        .default_size([640.0, 300.0])
        .show(ctx, |ui| {
            egui::ScrollArea::vertical()
                .stick_to_bottom(true)
                .show(ui, |ui| {
                    for n in notices {
                        ui.colored_label(color(n), line(n));
                    }
                });
        });
}
