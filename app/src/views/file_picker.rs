//! A small file chooser for the execution dialog (no desktop portal needed):
//! a path field, the directory's entries, click to enter, double-click to pick.

use std::path::{Path, PathBuf};

use egui::Ui;

/// The chooser's state.
pub struct FilePicker {
    /// Directory shown.
    pub dir: PathBuf,
    /// Whether it is open.
    pub open: bool,
    entries: Vec<(String, bool)>,
    listed: Option<PathBuf>,
    error: Option<String>,
}

impl FilePicker {
    /// A chooser starting in `dir`, closed.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            open: false,
            entries: Vec::new(),
            listed: None,
            error: None,
        }
    }

    fn list(&mut self) {
        if self.listed.as_ref() == Some(&self.dir) {
            return;
        }
        self.listed = Some(self.dir.clone());
        self.entries.clear();
        self.error = None;
        match std::fs::read_dir(&self.dir) {
            Ok(rd) => {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let is_dir = e.path().is_dir();
                    self.entries.push((name, is_dir));
                }
                self.entries
                    .sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            }
            Err(e) => self.error = Some(format!("{}: {e}", self.dir.display())),
        }
    }

    /// Shows the chooser; returns the picked file.
    pub fn show(&mut self, ctx: &egui::Context) -> Option<PathBuf> {
        let mut picked = None;
        let mut is_open = self.open;
        egui::Window::new("choose a program")
            .open(&mut is_open)
            .default_size([420.0, 360.0])
            .show(ctx, |ui| picked = self.ui(ui));
        self.open = is_open && picked.is_none();
        picked
    }

    fn ui(&mut self, ui: &mut Ui) -> Option<PathBuf> {
        self.list();
        let mut picked = None;
        ui.horizontal(|ui| {
            if ui.button("⬆ up").clicked()
                && let Some(parent) = self.dir.parent()
            {
                self.dir = parent.to_path_buf();
            }
            ui.label(self.dir.display().to_string());
        });
        if let Some(e) = &self.error {
            ui.colored_label(egui::Color32::from_rgb(210, 40, 40), e);
        }
        let mut enter = None;
        egui::ScrollArea::vertical().show(ui, |ui| {
            for (name, is_dir) in &self.entries {
                let label = if *is_dir {
                    format!("📁 {name}")
                } else {
                    name.clone()
                };
                let r = ui.selectable_label(false, label);
                if *is_dir && r.clicked() {
                    enter = Some(self.dir.join(name));
                } else if !is_dir && r.double_clicked() {
                    picked = Some(self.dir.join(name));
                }
            }
        });
        if let Some(d) = enter {
            self.dir = d;
        }
        picked
    }
}

/// The directory a picker for `program` starts in.
pub fn start_dir(program: &str) -> PathBuf {
    Path::new(program)
        .parent()
        .filter(|p| p.is_dir())
        .map(Path::to_path_buf)
        .or_else(hpc::paths::home_dir)
        .unwrap_or_else(|| PathBuf::from("/"))
}
