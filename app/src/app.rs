//! The app: one window with the menu bar, the Nodes and Processes tabs, the
//! status bar, and the dialogs and windows the user opened.

use std::collections::BTreeMap;

use egui::Ui;
use hpc::model::NodeId;

use crate::context::AppContext;
use crate::net::{CollectorAction, Command};
use crate::views::exec_dialog::ExecDialog;
use crate::views::main_view::MainView;
use crate::views::migrator::Migrator;
use crate::views::node_config::NodeConfigDialog;
use crate::views::process_box::ProcessBox;
use crate::views::remote_procs::RemoteProcs;
use crate::views::{Open, Scope, host_keys, notices};

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
    pub cx: AppContext,
    /// The selected tab.
    pub tab: Tab,
    main_view: MainView,
    cluster_procs: ProcessBox,
    /// Open configuration dialogs.
    pub configs: BTreeMap<Scope, NodeConfigDialog>,
    /// The execution dialog.
    pub exec: ExecDialog,
    /// Open process boxes of single nodes.
    pub boxes: BTreeMap<Scope, ProcessBox>,
    /// Open migrators.
    pub migrators: Vec<Migrator>,
    /// Open remote-process windows.
    pub remote: BTreeMap<NodeId, RemoteProcs>,
    show_notices: bool,
    checkpoint_label: String,
    watched: Vec<NodeId>,
}

impl OpenMosixView {
    /// The app over `cx`.
    pub fn new(cx: AppContext) -> Self {
        Self {
            cx,
            tab: Tab::Nodes,
            main_view: MainView::default(),
            cluster_procs: ProcessBox::new(Scope::All),
            configs: BTreeMap::new(),
            exec: ExecDialog::default(),
            boxes: BTreeMap::new(),
            migrators: Vec::new(),
            remote: BTreeMap::new(),
            show_notices: false,
            checkpoint_label: String::new(),
            watched: Vec::new(),
        }
    }

    /// Applies queued events; true when something arrived.
    pub fn logic(&mut self) -> bool {
        self.cx.drain_events()
    }

    /// Builds one frame of the whole window.
    pub fn ui(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        let mut open = Vec::new();
        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| {
            notices::status_bar_ui(ui, &self.cx.state.notices, &mut self.show_notices);
        });
        egui::CentralPanel::default().show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.tab, Tab::Nodes, "Nodes");
                ui.selectable_value(&mut self.tab, Tab::Processes, "Processes");
            });
            ui.separator();
            match self.tab {
                Tab::Nodes => open.extend(self.main_view.ui(ui, &mut self.cx)),
                Tab::Processes => open.extend(self.cluster_procs.ui(ui, &mut self.cx)),
            }
        });
        for dialog in self.configs.values_mut() {
            open.extend(dialog.show(&ctx, &mut self.cx));
        }
        self.configs.retain(|_, d| d.open);
        for b in self.boxes.values_mut() {
            open.extend(b.show(&ctx, &mut self.cx));
        }
        self.boxes.retain(|_, b| b.open);
        for m in &mut self.migrators {
            m.show(&ctx, &mut self.cx);
        }
        self.migrators.retain(|m| m.open);
        for r in self.remote.values_mut() {
            r.show(&ctx, &mut self.cx);
        }
        self.remote.retain(|_, r| r.open);
        self.exec.show(&ctx, &mut self.cx);
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

    /// Opens a dialog or window (or brings the existing one back).
    pub fn open(&mut self, what: Open) {
        match what {
            Open::NodeConfig(scope) => {
                self.configs
                    .entry(scope)
                    .or_insert_with(|| NodeConfigDialog::new(scope));
            }
            Open::ProcessBox(Scope::All) => self.tab = Tab::Processes,
            Open::ProcessBox(scope) => {
                self.boxes
                    .entry(scope)
                    .or_insert_with(|| ProcessBox::new(scope));
            }
            Open::Migrator { home, home_pid } => {
                if !self
                    .migrators
                    .iter()
                    .any(|m| m.home == home && m.home_pid == home_pid)
                {
                    self.migrators.push(Migrator::new(home, home_pid));
                }
            }
            Open::RemoteProcs(node) => {
                self.remote
                    .entry(node)
                    .or_insert_with(|| RemoteProcs::new(node));
            }
        }
    }

    /// The nodes whose process lists some open view needs.
    pub fn needed_process_lists(&self) -> Vec<NodeId> {
        let all = self.tab == Tab::Processes || !self.migrators.is_empty();
        let mut nodes: Vec<NodeId> = if all {
            self.cx.state.nodes.keys().copied().collect()
        } else {
            self.boxes
                .keys()
                .filter_map(|s| match s {
                    Scope::Node(n) => Some(*n),
                    Scope::All => None,
                })
                .chain(self.remote.keys().copied())
                .collect()
        };
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    fn update_watches(&mut self) {
        let needed = self.needed_process_lists();
        if needed != self.watched {
            self.cx.send(Command::WatchProcesses(needed.clone()));
            self.watched = needed;
        }
    }

    fn menu_ui(&mut self, ui: &mut Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Quit").clicked() {
                    ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
                }
            });
            ui.menu_button("Run", |ui| {
                if ui.button("advanced execution…").clicked() {
                    self.exec.open = true;
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
            ui.menu_button("View", |ui| {
                if ui.button("Nodes").clicked() {
                    self.tab = Tab::Nodes;
                    ui.close();
                }
                if ui.button("Processes").clicked() {
                    self.tab = Tab::Processes;
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
