//! The migmon window: the picture of [`crate::layout`], and the gestures on
//! it. Dragging a square and dropping it on a penguin sends
//! `Command::Migrate` to that node; double-clicking a square that runs away
//! from home sends it home. The outcome comes back as a notice, and the next
//! process lists move the square.

use egui::{Color32, Id, Rect, Sense, Stroke, Ui, Vec2};
use hpc::model::NodeId;
use viewer::net::{Command, LinkState};
use viewer::{Needs, Open, ViewerContext, Window};

use crate::layout::{Layout, Square, layout};
use crate::penguin::{self, Mood};

/// The migration monitor.
pub struct Migmon {
    /// The node in the middle of the picture (0: the first node).
    pub main: NodeId,
    /// Show only processes that may move.
    pub movable_only: bool,
    /// Filter by user or command.
    pub filter: String,
    /// The picture as last drawn (the tests find squares and penguins in it).
    pub last: Layout,
}

impl Default for Migmon {
    fn default() -> Self {
        Self {
            main: 0,
            movable_only: true,
            filter: String::new(),
            last: Layout::default(),
        }
    }
}

impl Migmon {
    /// What a process's square says on hover.
    fn tooltip(sq: &Square) -> String {
        let p = &sq.info;
        let mut t = format!(
            "PID {} (home node {}, PID {} there)\n{}\nuser {}\nruns on node {}",
            p.pid, sq.home, sq.home_pid, p.cmdline, p.user, sq.runs_on
        );
        if p.lock {
            t.push_str("\nlocked to its node");
        }
        if !p.cantmove.is_empty() {
            t.push_str(&format!("\ncannot move: {}", p.cantmove));
        }
        t
    }

    /// Draws the picture and handles the gestures.
    pub fn migmon_ui(&mut self, ui: &mut Ui, vc: &mut ViewerContext) {
        let nodes: Vec<NodeId> = vc.state.nodes.keys().copied().collect();
        if !nodes.contains(&self.main) {
            self.main = nodes.first().copied().unwrap_or(0);
        }
        ui.horizontal(|ui| {
            egui::ComboBox::from_label("main node")
                .selected_text(format!("node {}", self.main))
                .show_ui(ui, |ui| {
                    for n in &nodes {
                        ui.selectable_value(&mut self.main, *n, format!("node {n}"));
                    }
                });
            ui.checkbox(&mut self.movable_only, "show only migratable");
            let l = ui.label("filter");
            ui.add(
                egui::TextEdit::singleline(&mut self.filter)
                    .hint_text("user or command")
                    .desired_width(140.0),
            )
            .labelled_by(l.id);
        });
        let (area, _) = ui.allocate_exact_size(ui.available_size(), Sense::hover());
        let lay = layout(&vc.state, self.main, area, self.movable_only, &self.filter);
        let painter = ui.painter_at(area);
        // Lines home first, under everything.
        for sq in lay.squares.iter().filter(|s| s.migrated()) {
            if let Some(home) = lay.penguin(sq.home) {
                painter.line_segment(
                    [home, sq.rect.center()],
                    Stroke::new(1.0, Color32::from_rgb(60, 170, 80)),
                );
            }
        }
        for (node, at) in &lay.penguins {
            let entry = vc.state.nodes.get(node);
            let mood = match entry {
                Some(e) if !e.is_up() => Mood::Down,
                Some(e) if e.admin.as_ref().is_some_and(|a| a.block) => Mood::Blocking,
                _ => Mood::Up,
            };
            let busy = entry.map_or(0.0, |e| e.load_percent() / 100.0);
            penguin::draw(
                &painter,
                *at,
                lay.penguin_size,
                mood,
                busy,
                *node == self.main,
            );
            let name = entry.map_or(String::new(), |e| e.status.name.clone());
            painter.text(
                *at + Vec2::new(0.0, lay.penguin_size * 0.62 + 2.0),
                egui::Align2::CENTER_TOP,
                format!("{node} {name}"),
                egui::FontId::proportional(11.0),
                ui.visuals().text_color(),
            );
            let why = entry.and_then(|e| match &e.link {
                LinkState::Connected(_) if e.is_up() => None,
                _ => e
                    .status
                    .reason
                    .clone()
                    .or(e.link.reason().map(str::to_string)),
            });
            let hit = Rect::from_center_size(*at, Vec2::splat(lay.penguin_size));
            let r = ui.interact(hit, Id::unique(("penguin", *node)), Sense::click());
            if r.clicked() {
                self.main = *node;
            }
            r.on_hover_text(match why {
                Some(w) => format!("node {node}: {w}"),
                None => format!("node {node}: load {:.0}", busy * 100.0),
            });
        }
        let pointer = ui.ctx().pointer_interact_pos();
        let mut command = None;
        for sq in &lay.squares {
            let id = Id::unique(("square", sq.home, sq.home_pid));
            let r = ui.interact(sq.rect, id, Sense::click_and_drag());
            let fill = if sq.migrated() {
                Color32::from_rgb(40, 180, 60)
            } else if sq.info.lock || !sq.info.cantmove.is_empty() {
                Color32::from_gray(120)
            } else {
                Color32::from_rgb(70, 120, 220)
            };
            let mut rect = sq.rect;
            if r.dragged()
                && let Some(p) = pointer
            {
                rect = Rect::from_center_size(p, sq.rect.size() * 1.5);
            }
            painter.rect_filled(rect, 1.0, fill);
            if r.drag_stopped() {
                if let Some(to) = pointer.and_then(|p| lay.penguin_at(p))
                    && to != sq.runs_on
                {
                    command = Some(Command::Migrate {
                        node: sq.listed_on,
                        pid: sq.pid,
                        to: to.to_string(),
                    });
                }
            } else if r.double_clicked() && sq.migrated() {
                command = Some(Command::Migrate {
                    node: sq.listed_on,
                    pid: sq.pid,
                    to: "home".into(),
                });
            }
            r.on_hover_text(Self::tooltip(sq));
        }
        if let Some(c) = command {
            vc.send(c);
        }
        self.last = lay;
    }
}

impl Window for Migmon {
    fn key(&self) -> Id {
        Id::unique("migmon")
    }

    fn title(&self) -> String {
        "openMosixmigmon".into()
    }

    fn frame<'a>(&self, window: egui::Window<'a>) -> egui::Window<'a> {
        window.default_size([720.0, 620.0])
    }

    fn ui(&mut self, ui: &mut Ui, vc: &mut ViewerContext) -> Vec<Open> {
        self.migmon_ui(ui, vc);
        Vec::new()
    }

    /// Processes may run anywhere: every node's list.
    fn needs(&self, _vc: &ViewerContext) -> Needs {
        Needs::all_processes()
    }
}
