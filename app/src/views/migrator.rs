//! The migrator window: one process's live status and location, every node
//! (double-click migrates there), home, best, kill, SIGSTOP, SIGCONT and renice,
//! and its move as a bar: under way (frozen, memory pulled) or the last one.

use egui::{Color32, Ui};
use hpc::model::NodeId;

use viewer::actions::ProcessAction;
use viewer::net::Command;
use viewer::widgets::{move_done_bar, move_progress_bar, status_color};
use viewer::{Needs, Open, ViewerContext, Window};

/// The migrator of one process, followed by identity wherever it moves.
pub struct Migrator {
    /// Home node.
    pub home: NodeId,
    /// PID at home.
    pub home_pid: i32,
    nice: i32,
    nice_dirty: bool,
    target: Option<NodeId>,
}

impl Window for Migrator {
    fn key(&self) -> egui::Id {
        egui::Id::unique(("migrator", self.home, self.home_pid))
    }

    fn title(&self) -> String {
        format!("migrator: process {} of node {}", self.home_pid, self.home)
    }

    fn frame<'a>(&self, window: egui::Window<'a>) -> egui::Window<'a> {
        window.default_width(420.0)
    }

    fn ui(&mut self, ui: &mut Ui, vc: &mut ViewerContext) -> Vec<Open> {
        self.migrator_ui(ui, vc);
        Vec::new()
    }

    /// The process may be anywhere: every node's list.
    fn needs(&self, _vc: &ViewerContext) -> Needs {
        Needs::all_processes()
    }
}

impl Migrator {
    /// A migrator for the process (home, home PID).
    pub fn new(home: NodeId, home_pid: i32) -> Self {
        Self {
            home,
            home_pid,
            nice: 0,
            nice_dirty: false,
            target: None,
        }
    }

    /// Its move under way as a bar (frozen, memory streamed or pulled), or
    /// its last move with the figures.
    fn move_ui(&self, ui: &mut Ui, cx: &ViewerContext) {
        let moves = &cx.state.moves;
        let identity = (self.home, self.home_pid);
        if let Some(f) = moves.in_flight(identity) {
            let elapsed = f.since.elapsed().as_millis() as u64;
            match &f.progress {
                Some(p) => {
                    move_progress_bar(ui, p, elapsed);
                }
                None => {
                    ui.add(
                        egui::ProgressBar::new(0.0)
                            .animate(true)
                            .text(format!("asking to move it to {} ({elapsed} ms)", f.to)),
                    );
                }
            }
        } else if let Some(r) = moves.last_move(identity) {
            move_done_bar(ui, r);
        }
    }

    fn migrator_ui(&mut self, ui: &mut Ui, cx: &mut ViewerContext) {
        self.move_ui(ui, cx);
        let Some((node, p)) = cx
            .state
            .find_job(self.home, self.home_pid)
            .map(|(n, p)| (n, p.clone()))
        else {
            ui.colored_label(
                Color32::from_rgb(210, 120, 0),
                "not listed on any watched node: it ended, or is moving right now",
            );
            return;
        };
        if !self.nice_dirty {
            self.nice = p.nice;
        }
        let place = if node == self.home {
            format!("runs at home (node {node})")
        } else {
            format!("runs on node {node}, home node {}", self.home)
        };
        ui.label(format!("{} — PID {} there", place, p.pid));
        ui.label(format!(
            "{}: state {}, CPU {:.1} %, nice {}, {} migrations",
            p.cmdline, p.state, p.cpu, p.nice, p.nmigs
        ));
        let unavailable = cx
            .state
            .nodes
            .get(&node)
            .map(|n| n.status.migration.clone())
            .filter(|m| m.starts_with("migration unavailable"));
        let movable = p.cantmove.is_empty() && !p.lock;
        if let Some(why) = &unavailable {
            ui.colored_label(Color32::from_rgb(210, 40, 40), why);
        } else if !movable {
            let why = if p.cantmove.is_empty() {
                "locked (lock = 1)".to_string()
            } else {
                p.cantmove.clone()
            };
            ui.colored_label(Color32::from_rgb(180, 140, 20), format!("🔒 {why}"));
        }
        let can_move = unavailable.is_none();
        let mut locked = p.lock;
        if ui
            .checkbox(&mut locked, "locked (no migration)")
            .on_hover_text("/proc/PID/lock: a locked process is moved only by expel and bring")
            .changed()
        {
            cx.act(node, p.pid, ProcessAction::Lock(locked));
        }
        ui.separator();
        ui.label("click a node and \"migrate\", or double-click it:");
        let ids: Vec<NodeId> = cx.state.nodes.keys().copied().collect();
        for id in ids {
            let Some(entry) = cx.state.nodes.get(&id) else {
                continue;
            };
            let here = id == node;
            let text = format!(
                "node {id} — {} — load {:.0} %{}",
                entry.status.addr,
                entry.load_percent(),
                if here { " (here)" } else { "" }
            );
            let color = status_color(entry.is_up());
            let response = ui
                .selectable_label(
                    self.target == Some(id),
                    egui::RichText::new(text).color(color),
                )
                .on_hover_text(format!("double-click: migrate to node {id}"));
            if response.clicked() {
                self.target = Some(id);
            }
            if response.double_clicked() && !here && can_move {
                cx.act(node, p.pid, ProcessAction::MoveTo(id));
            }
        }
        let target = self.target.filter(|t| *t != node);
        if ui
            .add_enabled(can_move && target.is_some(), egui::Button::new("migrate"))
            .on_hover_text("move the process to the selected node")
            .clicked()
            && let Some(t) = target
        {
            cx.act(node, p.pid, ProcessAction::MoveTo(t));
        }
        ui.separator();
        ui.horizontal(|ui| {
            for action in [ProcessAction::Home, ProcessAction::Best] {
                let hint = match action {
                    ProcessAction::Best => "the least loaded node that has room",
                    _ => "back to the node it was started on",
                };
                if ui
                    .add_enabled(can_move, egui::Button::new(action.label()))
                    .on_hover_text(hint)
                    .clicked()
                {
                    cx.act(node, p.pid, action);
                }
            }
            for action in [
                ProcessAction::Kill,
                ProcessAction::Stop,
                ProcessAction::Cont,
            ] {
                if ui.button(action.label()).clicked() {
                    cx.act(node, p.pid, action);
                }
            }
        });
        let response = ui.add(egui::Slider::new(&mut self.nice, -20..=20).text("nice"));
        if response.changed() {
            self.nice_dirty = true;
        }
        if self.nice_dirty
            && (response.drag_stopped() || (response.changed() && !response.dragged()))
        {
            cx.send(Command::Renice {
                node,
                pid: p.pid,
                nice: self.nice,
            });
            self.nice_dirty = false;
        }
    }
}
