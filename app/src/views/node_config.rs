//! The node configuration dialog: the `mosctl` switches of one node or of all
//! nodes, each showing the node's current state as the agent reports it.

use egui::{Color32, Ui};
use hpc::model::{AdminState, NodeId};
use serde_json::json;

use viewer::net::Command;
use viewer::{Open, Scope, ViewerContext, Window};

/// The configuration dialog of a node or of all nodes.
pub struct NodeConfigDialog {
    /// Which nodes it configures.
    pub scope: Scope,
}

/// One admin flag of the dialog.
struct Flag {
    path: &'static str,
    label: &'static str,
    help: &'static str,
    get: fn(&AdminState) -> bool,
    /// Whether the checkbox shows the flag inverted (automigration = !stay).
    inverted: bool,
}

const FLAGS: &[Flag] = &[
    Flag {
        path: "admin/stay",
        label: "automigration",
        help: "off = stay: processes are not moved away automatically (mosctl stay/nostay)",
        get: |a| a.stay,
        inverted: true,
    },
    Flag {
        path: "admin/lstay",
        label: "local processes stay (lstay)",
        help: "processes started here stay; guests may still leave (mosctl lstay/nolstay)",
        get: |a| a.lstay,
        inverted: false,
    },
    Flag {
        path: "admin/block",
        label: "block arriving guests (block)",
        help: "refuse processes from other nodes (mosctl block/noblock)",
        get: |a| a.block,
        inverted: false,
    },
    Flag {
        path: "admin/quiet",
        label: "quiet (stop announcing load)",
        help: "stop telling the other nodes this node's load (mosctl quiet/noquiet)",
        get: |a| a.quiet,
        inverted: false,
    },
];

impl Window for NodeConfigDialog {
    fn key(&self) -> egui::Id {
        egui::Id::unique(("node-config", self.scope))
    }

    fn title(&self) -> String {
        format!("{} configuration", self.scope.label())
    }

    fn frame<'a>(&self, window: egui::Window<'a>) -> egui::Window<'a> {
        window.resizable(false)
    }

    fn ui(&mut self, ui: &mut Ui, vc: &mut ViewerContext) -> Vec<Open> {
        let mut open = Vec::new();
        self.config_ui(ui, vc, &mut open);
        open
    }
}

impl NodeConfigDialog {
    /// A dialog for `scope`, open.
    pub fn new(scope: Scope) -> Self {
        Self { scope }
    }

    fn nodes(&self, cx: &ViewerContext) -> Vec<NodeId> {
        match self.scope {
            Scope::All => cx.state.up_nodes(),
            Scope::Node(n) => vec![n],
        }
    }

    fn config_ui(&mut self, ui: &mut Ui, cx: &mut ViewerContext, open: &mut Vec<Open>) {
        let nodes = self.nodes(cx);
        let states: Vec<(NodeId, Option<AdminState>)> = nodes
            .iter()
            .map(|n| (*n, cx.state.nodes.get(n).and_then(|e| e.admin.clone())))
            .collect();
        let known: Vec<&AdminState> = states.iter().filter_map(|(_, a)| a.as_ref()).collect();
        if let Scope::Node(n) = self.scope {
            match cx.state.nodes.get(&n) {
                None => {
                    ui.colored_label(
                        Color32::from_rgb(210, 40, 40),
                        format!("node {n} left the cluster"),
                    );
                    return;
                }
                Some(entry) => {
                    ui.label(format!(
                        "{} — {}, link: {}",
                        entry.status.addr,
                        if entry.is_up() { "up" } else { "down" },
                        entry.link.word()
                    ));
                    if let Some(reason) = entry.link.reason() {
                        ui.colored_label(Color32::from_rgb(210, 120, 0), reason);
                    }
                }
            }
        } else {
            ui.label(format!("applies to the {} up nodes", nodes.len()));
        }
        if known.is_empty() {
            ui.label("current state not read yet");
        }
        ui.separator();
        for flag in FLAGS {
            let on = known
                .iter()
                .filter(|a| (flag.get)(a) != flag.inverted)
                .count();
            let mut checked = !known.is_empty() && on == known.len();
            ui.horizontal(|ui| {
                let response = ui
                    .add_enabled(
                        !nodes.is_empty(),
                        egui::Checkbox::new(&mut checked, flag.label),
                    )
                    .on_hover_text(flag.help);
                if response.changed() {
                    let flag_value = checked != flag.inverted;
                    cx.send(Command::WriteAdmin {
                        nodes: nodes.clone(),
                        path: flag.path.into(),
                        value: json!(u8::from(flag_value)),
                    });
                }
                if self.scope == Scope::All && !known.is_empty() {
                    ui.weak(format!("on for {on} of {}", known.len()));
                }
            });
        }
        ui.separator();
        let stopped = known
            .iter()
            .filter(|a| a.block && a.stay && a.lstay && a.quiet)
            .count();
        ui.horizontal(|ui| {
            let state = match (known.len(), stopped) {
                (0, _) => "openMosix: unknown".to_string(),
                (k, 0) => format!("openMosix: running{}", if k > 1 { " on all" } else { "" }),
                (k, s) if s == k => "openMosix: stopped".to_string(),
                (k, s) => format!("openMosix: stopped on {s} of {k}"),
            };
            ui.label(state);
            if ui
                .add_enabled(!nodes.is_empty(), egui::Button::new("start openMosix"))
                .on_hover_text("accept guests and move processes again")
                .clicked()
            {
                cx.send(Command::Switch { nodes: nodes.clone(), on: true });
            }
            if ui
                .add_enabled(!nodes.is_empty(), egui::Button::new("stop openMosix"))
                .on_hover_text("block guests, stop moving and announcing, send guests home, bring own processes back")
                .clicked()
            {
                cx.send(Command::Switch { nodes: nodes.clone(), on: false });
            }
        });
        ui.horizontal(|ui| {
            for (label, path, help) in [
                (
                    "expel guests",
                    "admin/expel",
                    "send every guest process home (mosctl expel)",
                ),
                (
                    "bring processes home",
                    "admin/bring",
                    "bring this node's migrated processes back (mosctl bring)",
                ),
            ] {
                if ui
                    .add_enabled(!nodes.is_empty(), egui::Button::new(label))
                    .on_hover_text(help)
                    .clicked()
                {
                    cx.send(Command::WriteAdmin {
                        nodes: nodes.clone(),
                        path: path.into(),
                        value: json!(1),
                    });
                }
            }
        });
        if let [(_, Some(a))] = states.as_slice() {
            ui.separator();
            ui.label(format!(
                "speed {}, yardstick {}, decay every {} s (slow {} ‰, fast {} ‰)",
                a.speed, a.yardstick, a.decay_interval, a.slow_decay, a.fast_decay
            ));
        }
        ui.separator();
        ui.horizontal(|ui| {
            if ui.button("process box").clicked() {
                open.push(super::process_box::open(self.scope));
            }
            if let Scope::Node(n) = self.scope
                && ui.button("remote processes").clicked()
            {
                open.push(Open::window(super::remote_procs::RemoteProcs::new(n)));
            }
            if ui.button("refresh").clicked() {
                for n in &nodes {
                    cx.send(Command::RefreshAdmin(*n));
                }
            }
        });
    }
}
