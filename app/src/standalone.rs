//! `openmosixview --analyzer [HISTORY]` (or `openmosixanalyzer [HISTORY]`):
//! the analyzer on its own, for an admin who only wants the charts. No agent
//! is contacted; the history is read on a runtime of its own. The process
//! history opens from its menu.

use egui::Ui;
use history::store::Location;
use viewer::tasks::{Tasks, Waker};
use viewer::window::OpenWindows;
use viewer::{Open, ViewerContext, Window};

/// The analyzer as the whole window.
pub struct AnalyzerApp {
    /// Context with no network side.
    pub cx: ViewerContext,
    /// The analyzer, drawn in the main panel.
    pub analyzer: analyzer::Analyzer,
    /// The process history, drawn in the main panel instead when set.
    pub processes: Option<analyzer::ProcessHistory>,
    /// Other windows (the process history).
    pub windows: OpenWindows,
}

impl AnalyzerApp {
    /// The analyzer of the current history at `location`; `wake` repaints the UI.
    pub fn new(location: Location, wake: Waker) -> std::io::Result<Self> {
        let tasks = Tasks::start(wake)?;
        Ok(Self {
            cx: ViewerContext::detached(Default::default(), Some(tasks)),
            analyzer: analyzer::Analyzer::new(analyzer::Source::current_of(location)),
            processes: None,
            windows: OpenWindows::default(),
        })
    }

    /// Shows the process history (openMosixhistory) instead of the charts,
    /// at instant `at` (default: the history's end), with the process
    /// `select` (home, PID at home) selected.
    pub fn show_processes(&mut self, at: Option<i64>, select: Option<(u32, i32)>) {
        let mut p = analyzer::ProcessHistory::new(self.analyzer.source().clone());
        if let Some(t) = at {
            p = p.at(t);
        }
        if let Some((home, pid)) = select {
            p = p.select_identity(home, pid);
        }
        self.processes = Some(p);
    }

    /// Whether the main panel shows data (for `--screenshot`).
    pub fn complete(&self) -> bool {
        match &self.processes {
            Some(p) => p.listed_at().is_some() && !p.waiting_for_journey(),
            None => self.analyzer.overview().is_some() && !self.analyzer.busy(),
        }
    }

    /// Builds one frame.
    pub fn ui(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        let mut open = Vec::new();
        egui::Panel::top("menu").show(ui, |ui| {
            egui::MenuBar::new().ui(ui, |ui| {
                ui.menu_button("View", |ui| {
                    if ui.button("process history").clicked() {
                        open.push(Open::window(analyzer::ProcessHistory::new(
                            self.analyzer.source().clone(),
                        )));
                        ui.close();
                    }
                    if ui.button("Quit").clicked() {
                        ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
                    }
                });
                ui.label(self.analyzer.title());
            });
        });
        egui::CentralPanel::default().show(ui, |ui| match &mut self.processes {
            Some(p) => open.extend(p.ui(ui, &mut self.cx)),
            None => open.extend(self.analyzer.ui(ui, &mut self.cx)),
        });
        open.extend(self.windows.show(&ctx, &mut self.cx));
        for o in open {
            if let Open::Window(w) = o {
                self.windows.open(w);
            }
        }
    }
}
