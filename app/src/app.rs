//! The app: one window with the menu bar, the Nodes and Processes tabs, the
//! status bar, and the dialogs and windows the user opened.

use egui::Ui;
use hpc::model::NodeId;
use viewer::net::{CollectorAction, Command};
use viewer::window::OpenWindows;
use viewer::{Needs, Open, Scope, ViewerContext, Window, notices, screenshot};

use crate::views::exec_dialog::ExecDialog;
use crate::views::host_keys;
use crate::views::main_view::MainView;
use crate::views::process_box::ProcessBox;

/// The tabs of the main window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// The node list.
    Nodes,
    /// The process box of the whole cluster.
    Processes,
}

/// The whole app's state.
pub struct OpenMosixView {
    /// Cluster state and the network side.
    pub cx: ViewerContext,
    /// The selected tab.
    pub tab: Tab,
    main_view: MainView,
    cluster_procs: ProcessBox,
    /// The open windows (dialogs, process boxes, migrators...).
    pub windows: OpenWindows,
    show_notices: bool,
    checkpoint_label: String,
    watched: Vec<NodeId>,
    /// The history the Analyzer menu opens.
    pub history: history::store::Location,
    /// A window shown as the whole main panel instead of the tabs
    /// (`openmosixview --migmon`).
    pub solo: Option<Box<dyn Window>>,
}

impl OpenMosixView {
    /// The app over `cx`.
    pub fn new(cx: ViewerContext) -> Self {
        Self {
            cx,
            tab: Tab::Nodes,
            main_view: MainView::default(),
            cluster_procs: ProcessBox::new(Scope::All),
            windows: OpenWindows::default(),
            show_notices: false,
            checkpoint_label: String::new(),
            watched: Vec::new(),
            history: history::store::Location::Sqlite(history::store::DEFAULT_DB.into()),
            solo: None,
        }
    }

    /// The app showing only `window` in its main panel (the menus stay;
    /// View -> Nodes goes back to the tabs).
    pub fn solo(mut self, window: impl Window + 'static) -> Self {
        self.solo = Some(Box::new(window));
        self
    }

    /// Whether the first frame worth a screenshot can be drawn: the nodes
    /// and their state are in, and for a solo window every up node's
    /// process list too.
    pub fn complete(&self) -> bool {
        let s = &self.cx.state;
        screenshot::frame_complete(s)
            && (self.solo.is_none() || s.up_nodes().iter().all(|n| s.processes.contains_key(n)))
    }

    /// Applies queued events; true when something arrived.
    pub fn logic(&mut self) -> bool {
        self.cx.drain_events()
    }

    /// Builds one frame of the whole window.
    pub fn ui(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        let mut open = Vec::new();
        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui, &mut open));
        egui::Panel::bottom("status").show(ui, |ui| {
            notices::status_bar_ui(ui, &self.cx.state.notices, &mut self.show_notices);
        });
        egui::CentralPanel::default().show(ui, |ui| {
            if let Some(w) = &mut self.solo {
                open.extend(w.ui(ui, &mut self.cx));
                return;
            }
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.tab, Tab::Nodes, "Nodes");
                ui.selectable_value(&mut self.tab, Tab::Processes, "Processes");
            });
            ui.separator();
            match self.tab {
                Tab::Nodes => open.extend(self.main_view.ui(ui, &mut self.cx)),
                Tab::Processes => open.extend(self.cluster_procs.box_ui(ui, &mut self.cx)),
            }
        });
        open.extend(self.windows.show(&ctx, &mut self.cx));
        notices::window(&ctx, &self.cx.state.notices, &mut self.show_notices);
        host_keys::prompt_ui(&ctx, &mut self.cx);
        if self.cx.state.last_job.take().is_some() {
            // A job started from the execution dialog: show it in the process box.
            self.tab = Tab::Processes;
        }
        for o in open {
            self.open(o);
        }
        self.update_watches();
    }

    /// Opens a window (or brings the open one with the same key back).
    pub fn open(&mut self, what: Open) {
        match what {
            Open::Window(w) => self.windows.open(w),
            Open::ClusterProcesses => {
                self.tab = Tab::Processes;
                self.solo = None;
            }
        }
    }

    /// What the main window's tab and every open window need, folded.
    pub fn needs(&self) -> Needs {
        let tab = match (&self.solo, self.tab) {
            (Some(w), _) => w.needs(&self.cx),
            (None, Tab::Processes) => Needs::all_processes(),
            (None, Tab::Nodes) => Needs::nothing(),
        };
        tab.union(self.windows.needs(&self.cx))
    }

    /// The nodes whose process lists some open view needs.
    pub fn needed_process_lists(&self) -> Vec<NodeId> {
        self.needs()
            .process_nodes(self.cx.state.nodes.keys().copied())
    }

    fn update_watches(&mut self) {
        let needed = self.needed_process_lists();
        if needed != self.watched {
            self.cx.send(Command::WatchProcesses(needed.clone()));
            self.watched = needed;
        }
    }

    fn menu_ui(&mut self, ui: &mut Ui, open: &mut Vec<Open>) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Quit").clicked() {
                    ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
                }
            });
            ui.menu_button("Run", |ui| {
                if ui.button("advanced execution…").clicked() {
                    open.push(Open::window(ExecDialog::default()));
                    ui.close();
                }
            });
            ui.menu_button("Collector", |ui| {
                for (label, action) in [
                    ("start", CollectorAction::Start),
                    ("stop", CollectorAction::Stop),
                    ("new history", CollectorAction::NewHistory),
                    ("status", CollectorAction::Status),
                ] {
                    if ui.button(label).clicked() {
                        self.cx.send(Command::Collector(action));
                        ui.close();
                    }
                }
                ui.separator();
                ui.horizontal(|ui| {
                    ui.add(
                        egui::TextEdit::singleline(&mut self.checkpoint_label)
                            .hint_text("label")
                            .desired_width(120.0),
                    );
                    if ui.button("checkpoint").clicked() {
                        self.cx.send(Command::Collector(CollectorAction::Checkpoint(
                            self.checkpoint_label.clone(),
                        )));
                        ui.close();
                    }
                });
            });
            ui.menu_button("Analyzer", |ui| {
                let source = analyzer::Source::current_of(self.history.clone());
                if ui.button("load and memory overview").clicked() {
                    open.push(Open::window(analyzer::Analyzer::new(source.clone())));
                    ui.close();
                }
                if ui.button("process history").clicked() {
                    open.push(Open::window(analyzer::ProcessHistory::new(source)));
                    ui.close();
                }
            });
            ui.menu_button("View", |ui| {
                if ui.button("Nodes").clicked() {
                    self.tab = Tab::Nodes;
                    self.solo = None;
                    ui.close();
                }
                if ui.button("Processes").clicked() {
                    self.tab = Tab::Processes;
                    self.solo = None;
                    ui.close();
                }
                if ui.button("migration monitor").clicked() {
                    open.push(Open::window(migmon::Migmon::default()));
                    ui.close();
                }
                if ui.button("Notices").clicked() {
                    self.show_notices = true;
                    ui.close();
                }
            });
        });
    }
}
