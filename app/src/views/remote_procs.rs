//! The remote processes window: the guests running on a node (processes whose
//! home is elsewhere), with "go home" and "go to best node".

use hpc::model::NodeId;
use viewer::net::Command;
use viewer::state::identity;
use viewer::{Needs, Open, ViewerContext, Window};

/// The guests of one node.
pub struct RemoteProcs {
    /// The node.
    pub node: NodeId,
}

impl RemoteProcs {
    /// The window for `node`.
    pub fn new(node: NodeId) -> Self {
        Self { node }
    }
}

impl Window for RemoteProcs {
    fn key(&self) -> egui::Id {
        egui::Id::unique(("remote-procs", self.node))
    }

    fn title(&self) -> String {
        format!("remote processes on node {}", self.node)
    }

    fn needs(&self, _vc: &ViewerContext) -> Needs {
        Needs::processes_of([self.node])
    }

    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewerContext) -> Vec<Open> {
        let node = self.node;
        let Some(table) = cx.state.processes.get(&node) else {
            ui.label("loading the process list…");
            return Vec::new();
        };
        let mut guests: Vec<_> = table
            .values()
            .filter(|p| identity(node, p).0 != node && !viewer::state::is_plumbing(p))
            .cloned()
            .collect();
        guests.sort_by_key(|p| p.pid);
        if guests.is_empty() {
            ui.label("no guests: no process from another node runs here");
        }
        egui::Grid::new(("guests", node))
            .striped(true)
            .show(ui, |ui| {
                for h in ["PID", "home", "user", "command", "", ""] {
                    ui.strong(h);
                }
                ui.end_row();
                for p in guests {
                    let (home, home_pid) = identity(node, &p);
                    ui.label(p.pid.to_string());
                    ui.label(format!("node {home} (PID {home_pid})"));
                    ui.label(&p.user);
                    ui.label(&p.cmdline);
                    for (label, to) in [("go home", "home"), ("go to best node", "balance")] {
                        if ui.button(label).clicked() {
                            cx.send(Command::Migrate {
                                node,
                                pid: p.pid,
                                to: to.into(),
                            });
                        }
                    }
                    ui.end_row();
                }
            });
        Vec::new()
    }
}
