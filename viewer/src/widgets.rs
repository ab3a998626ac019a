//! Small widgets shared by the views: the node lamp and percent bars.

use egui::{Color32, Response, RichText, Sense, Ui, Vec2};

/// Green for up, red for down.
pub fn status_color(up: bool) -> Color32 {
    if up {
        Color32::from_rgb(40, 180, 60)
    } else {
        Color32::from_rgb(210, 40, 40)
    }
}

/// The original's lamp: a coloured disc with the node id beside it.
pub fn lamp(ui: &mut Ui, id: &str, up: bool) -> Response {
    ui.horizontal(|ui| {
        let (rect, _) = ui.allocate_exact_size(Vec2::splat(14.0), Sense::hover());
        ui.painter()
            .circle_filled(rect.center(), 6.0, status_color(up));
        ui.label(RichText::new(id).strong().color(status_color(up)))
    })
    .inner
    .on_hover_text(if up { "up" } else { "down" })
}

/// A bar filled to `percent` (clamped to 0..=100 for the fill), with the
/// percentage written on it.
pub fn percent_bar(ui: &mut Ui, percent: f32, width: f32, hot_above: f32) -> Response {
    let fill = if percent > hot_above {
        Color32::from_rgb(200, 70, 50)
    } else {
        Color32::from_rgb(60, 120, 200)
    };
    ui.add(
        egui::ProgressBar::new((percent / 100.0).clamp(0.0, 1.0))
            .desired_width(width)
            .fill(fill)
            .text(format!("{percent:.0} %")),
    )
}

/// Bytes as KiB/MiB/GiB.
pub fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f >= K * K * K {
        format!("{:.1} GiB", f / (K * K * K))
    } else if f >= K * K {
        format!("{:.0} MiB", f / (K * K))
    } else {
        format!("{:.0} KiB", f / K)
    }
}
