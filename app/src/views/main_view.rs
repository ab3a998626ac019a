//! The main window's node list (the original's main view): the balancing
//! efficiency, an "all nodes" row and one row per node with its lamp,
//! configuration button, speed slider, load and memory bars and CPU count.

use std::collections::HashMap;

use egui::{Color32, RichText, Ui};
use hpc::model::NodeId;
use serde_json::json;

use viewer::ViewerContext;
use viewer::net::{Command, LinkState};
use viewer::state::ClusterLink;
use viewer::widgets::{bytes, lamp, percent_bar};
use viewer::{Open, Scope};

/// Row height of the node list.
const ROW_HEIGHT: f32 = 22.0;
/// Speeds the slider covers.
const SPEED_RANGE: std::ops::RangeInclusive<u32> = 100..=100_000;

/// The node list; remembers speeds being dragged so the gossip does not snap them back.
#[derive(Default)]
pub struct MainView {
    speed_edit: HashMap<Scope, u32>,
}

impl MainView {
    /// Draws the view; returns what the user asked to open.
    pub fn ui(&mut self, ui: &mut Ui, cx: &mut ViewerContext) -> Vec<Open> {
        let mut open = Vec::new();
        match &cx.state.link {
            ClusterLink::Connecting => {
                ui.label("Connecting to the cluster…");
            }
            ClusterLink::Unreachable(why) => {
                ui.colored_label(
                    Color32::from_rgb(210, 40, 40),
                    format!("Cannot reach the cluster: {why}. Retrying…"),
                );
            }
            ClusterLink::Via(_) => {}
        }
        let efficiency = crate::balance::efficiency(&cx.state.up_loads());
        ui.horizontal(|ui| {
            ui.label("load-balancing efficiency");
            percent_bar(ui, efficiency, 200.0, 101.0)
                .on_hover_text("100 % = every up node carries the same load (see ARCHITECTURE.md)");
        });
        ui.separator();
        self.all_nodes_row_ui(ui, cx, &mut open);
        ui.separator();
        let ids: Vec<NodeId> = cx.state.nodes.keys().copied().collect();
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show_rows(ui, ROW_HEIGHT, ids.len(), |ui, range| {
                for id in ids.get(range).unwrap_or_default() {
                    self.node_row_ui(ui, cx, *id, &mut open);
                }
            });
        open
    }

    fn all_nodes_row_ui(&mut self, ui: &mut Ui, cx: &mut ViewerContext, open: &mut Vec<Open>) {
        let up = cx.state.up_nodes();
        let total = cx.state.nodes.len();
        let (mut cpus, mut mem, mut tmem, mut load) = (0u32, 0u64, 0u64, 0f32);
        for n in cx.state.nodes.values().filter(|n| n.is_up()) {
            cpus += n.status.cpus;
            mem += n.status.mem;
            tmem += n.status.tmem;
            load += n.load_percent();
        }
        let avg_load = if up.is_empty() {
            0.0
        } else {
            load / up.len() as f32
        };
        let mem_used = if tmem == 0 {
            0.0
        } else {
            tmem.saturating_sub(mem) as f32 * 100.0 / tmem as f32
        };
        let avg_speed = if up.is_empty() {
            0
        } else {
            cx.state
                .nodes
                .values()
                .filter(|n| n.is_up())
                .map(|n| n.status.speed)
                .sum::<u32>()
                / up.len() as u32
        };
        ui.horizontal(|ui| {
            ui.add_sized(
                [70.0, ROW_HEIGHT],
                egui::Label::new(format!("{}/{total} up", up.len())),
            );
            if ui
                .add_sized([180.0, ROW_HEIGHT], egui::Button::new("all nodes"))
                .on_hover_text("configure every node at once")
                .clicked()
            {
                open.push(Open::window(super::node_config::NodeConfigDialog::new(
                    Scope::All,
                )));
            }
            self.speed_ui(ui, cx, Scope::All, avg_speed, up);
            percent_bar(ui, avg_load, 120.0, 75.0);
            percent_bar(ui, mem_used, 120.0, 90.0);
            ui.add_sized([90.0, ROW_HEIGHT], egui::Label::new(bytes(mem)));
            ui.label(format!("{cpus} CPUs"));
        });
    }

    fn node_row_ui(
        &mut self,
        ui: &mut Ui,
        cx: &mut ViewerContext,
        id: NodeId,
        open: &mut Vec<Open>,
    ) {
        let Some(node) = cx.state.nodes.get(&id).cloned() else {
            return;
        };
        let up = node.is_up();
        ui.horizontal(|ui| {
            ui.allocate_ui(egui::vec2(70.0, ROW_HEIGHT), |ui| {
                lamp(ui, &id.to_string(), up)
            });
            let same_host = node.status.addr == node.status.name
                || node
                    .status
                    .addr
                    .starts_with(&format!("{}:", node.status.name));
            let name = if same_host || node.status.name.is_empty() {
                node.status.addr.clone()
            } else {
                format!("{} ({})", node.status.name, node.status.addr)
            };
            let button = ui.add_sized([180.0, ROW_HEIGHT], egui::Button::new(&name).truncate());
            if button
                .on_hover_text(format!("configure node {id}"))
                .clicked()
            {
                open.push(Open::window(super::node_config::NodeConfigDialog::new(
                    Scope::Node(id),
                )));
            }
            if !up {
                let why = node.status.reason.clone().unwrap_or_else(|| "down".into());
                ui.colored_label(Color32::from_rgb(210, 40, 40), format!("down: {why}"));
                return;
            }
            self.speed_ui(ui, cx, Scope::Node(id), node.status.speed, vec![id]);
            percent_bar(ui, node.load_percent(), 120.0, 75.0)
                .on_hover_text(format!("openMosix load {}", node.status.load));
            percent_bar(ui, node.mem_used_percent(), 120.0, 90.0);
            ui.add_sized([90.0, ROW_HEIGHT], egui::Label::new(bytes(node.status.mem)));
            ui.label(format!("{} CPUs", node.status.cpus));
            match &node.link {
                LinkState::Connected(role) => {
                    ui.weak(role.to_string());
                }
                LinkState::Idle => {}
                other => {
                    let reason = other.reason().unwrap_or_default().to_string();
                    ui.colored_label(
                        Color32::from_rgb(210, 120, 0),
                        format!("⚠ {}", other.word()),
                    )
                    .on_hover_text(reason);
                }
            }
        });
    }

    fn speed_ui(
        &mut self,
        ui: &mut Ui,
        cx: &mut ViewerContext,
        scope: Scope,
        current: u32,
        nodes: Vec<NodeId>,
    ) {
        let mut value = *self.speed_edit.get(&scope).unwrap_or(&current);
        let response = ui.add(
            egui::Slider::new(&mut value, SPEED_RANGE)
                .logarithmic(true)
                .show_value(false),
        );
        let response = response.on_hover_text(format!("openMosix speed of {}", scope.label()));
        if response.dragged() || response.has_focus() {
            self.speed_edit.insert(scope, value);
        }
        let commit = response.drag_stopped() || (response.changed() && !response.dragged());
        if commit && !nodes.is_empty() {
            cx.send(Command::WriteAdmin {
                nodes,
                path: "admin/speed".into(),
                value: json!(value),
            });
            self.speed_edit.remove(&scope);
        } else if !response.dragged() && !response.has_focus() {
            self.speed_edit.remove(&scope);
        }
        ui.add_sized(
            [60.0, ROW_HEIGHT],
            egui::Label::new(RichText::new(value.to_string()).monospace()),
        );
    }
}
