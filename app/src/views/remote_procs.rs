//! The remote processes window: the guests running on a node (processes whose
//! home is elsewhere), with "go home" and "go to best node".

use hpc::model::NodeId;

use crate::context::AppContext;
use crate::net::Command;
use crate::state::identity;

/// The guests of one node.
pub struct RemoteProcs {
    /// The node.
    pub node: NodeId,
    /// Whether the window is open.
    pub open: bool,
}

impl RemoteProcs {
    /// The window for `node`, open.
    pub fn new(node: NodeId) -> Self {
        Self { node, open: true }
    }

    /// The window title.
    pub fn title(&self) -> String {
        format!("remote processes on node {}", self.node)
    }

    /// Shows the window.
    pub fn show(&mut self, ctx: &egui::Context, cx: &mut AppContext) {
        let mut is_open = self.open;
        let node = self.node;
        egui::Window::new(self.title())
            .id(egui::Id::unique(("remote-procs", node)))
            .open(&mut is_open)
            .show(ctx, |ui| {
                let Some(table) = cx.state.processes.get(&node) else {
                    ui.label("loading the process list…");
                    return;
                };
                let mut guests: Vec<_> = table
                    .values()
                    .filter(|p| identity(node, p).0 != node)
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
                            if ui.button("go home").clicked() {
                                cx.send(Command::Migrate {
                                    node,
                                    pid: p.pid,
                                    to: "home".into(),
                                });
                            }
                            if ui.button("go to best node").clicked() {
                                cx.send(Command::Migrate {
                                    node,
                                    pid: p.pid,
                                    to: "balance".into(),
                                });
                            }
                            ui.end_row();
                        }
                    });
            });
        self.open = is_open;
    }
}
