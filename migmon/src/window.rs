//! The migmon window: the picture of [`crate::layout`], moving as
//! [`crate::motion`] says, and the gestures on it. The whole picture is one
//! widget that finds the square or penguin under the pointer itself (2,000
//! squares as 2,000 widgets would cost a frame its budget):
//!
//! - drag a square onto a penguin: the process migrates there;
//! - double-click a square away from home: it goes home;
//! - right-click a square: home, best node, lock/unlock, SIGSTOP/SIGCONT,
//!   kill;
//! - click a penguin: it becomes the main node.
//!
//! Every action is a [`ProcessAction`] sent as the migrator sends it; its
//! progress and outcome come back through [`viewer::moves`].

use std::time::{Duration, Instant};

use egui::{Id, Pos2, Rect, Sense, Shape, Stroke, Ui, Vec2};
use hpc::model::NodeId;
use viewer::actions::ProcessAction;
use viewer::moves::Identity;
use viewer::net::LinkState;
use viewer::state::NodeEntry;
use viewer::{Needs, Open, ViewerContext, Window};

use crate::layout::{LABEL_FROM, Layout, LayoutKey, Square, layout};
use crate::motion::Motion;
use crate::paint::{self, MOVING, REFUSED};
use crate::penguin::Mood;
use crate::picture::{self, Look, Picture};

/// How often the picture is redrawn while something moves.
const ANIMATION_FRAME: Duration = Duration::from_millis(16);

/// The migration monitor.
pub struct Migmon {
    /// The node in the middle of the picture (0: the first node).
    pub main: NodeId,
    /// Show only processes that may move.
    pub movable_only: bool,
    /// Filter by user or command.
    pub filter: String,
    /// Keep the layout until what it depends on changes (the benchmark's
    /// baseline turns this off).
    pub cache_layout: bool,
    layout: Layout,
    key: Option<LayoutKey>,
    motion: Motion,
    /// The square being dragged.
    drag: Option<Identity>,
    /// The square whose menu is open.
    menu_for: Option<Identity>,
    /// The squares drawn mid-glide in the last frame, and where.
    gliding: Vec<(Identity, Pos2)>,
    /// Bumped with each new layout.
    generation: u64,
    /// The still part of the picture.
    picture: Picture,
}

impl Default for Migmon {
    fn default() -> Self {
        Self {
            main: 0,
            movable_only: false,
            filter: String::new(),
            cache_layout: true,
            layout: Layout::default(),
            key: None,
            motion: Motion::default(),
            drag: None,
            menu_for: None,
            gliding: Vec::new(),
            generation: 0,
            picture: Picture::default(),
        }
    }
}

impl Migmon {
    /// A monitor centred on `main`.
    pub fn new(main: NodeId) -> Self {
        Self {
            main,
            ..Self::default()
        }
    }

    /// The picture as last laid out (squares and penguins with their places).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The squares drawn mid-glide in the last frame, and where.
    pub fn gliding(&self) -> &[(Identity, Pos2)] {
        &self.gliding
    }

    /// Draws the picture and handles the gestures.
    pub fn migmon_ui(&mut self, ui: &mut Ui, vc: &mut ViewerContext) {
        let nodes: Vec<NodeId> = vc.state.nodes.keys().copied().collect();
        if !nodes.contains(&self.main) {
            self.main = nodes.first().copied().unwrap_or(0);
        }
        self.toolbar_ui(ui, &nodes);
        let (area, response) = ui.allocate_exact_size(ui.available_size(), Sense::click_and_drag());
        let now = Instant::now();
        let key = LayoutKey::of(&vc.state, self.main, area, self.movable_only, &self.filter);
        if !self.cache_layout || self.key.as_ref() != Some(&key) {
            self.layout = layout(&vc.state, self.main, area, self.movable_only, &self.filter);
            self.motion.update(&self.layout, now);
            self.generation += 1;
            self.key = Some(key);
        }
        let painter = ui.painter_at(area);
        let pointer = response.hover_pos().or(response.interact_pointer_pos());

        // Gestures.
        if response.drag_started() {
            let origin = ui.input(|i| i.pointer.press_origin());
            self.drag = origin.and_then(|p| self.layout.square_at(p)).map(|s| s.id);
        }
        if response.drag_stopped()
            && let Some(id) = self.drag.take()
            && let Some(sq) = self.layout.square(id)
            && let Some(to) = pointer.and_then(|p| self.layout.penguin_at(p))
            && to != sq.runs_on
        {
            vc.act(sq.listed_on, sq.pid, ProcessAction::MoveTo(to));
        }
        let under = match self.drag {
            Some(_) => None,
            None => pointer.and_then(|p| self.layout.square_at(p)).cloned(),
        };
        if response.double_clicked()
            && let Some(sq) = &under
            && sq.migrated()
        {
            vc.act(sq.listed_on, sq.pid, ProcessAction::Home);
        }
        if response.clicked()
            && under.is_none()
            && let Some(n) = pointer.and_then(|p| self.layout.penguin_at(p))
        {
            self.main = n;
        }
        if response.secondary_clicked() {
            self.menu_for = under.as_ref().map(|s| s.id);
        }

        // The still picture (one kept mesh), then what moves, then overlays.
        let looks: Vec<Look> = self
            .layout
            .penguins
            .iter()
            .map(|pg| {
                let entry = vc.state.nodes.get(&pg.node);
                Look::new(
                    pg.node,
                    mood(entry),
                    entry.map_or(0.0, |e| e.load_percent()),
                )
            })
            .collect();
        let mut moving = self.motion.moving(now);
        moving.extend(self.drag);
        let mesh = self.picture.mesh(
            ui.ctx(),
            &self.layout,
            self.generation,
            looks,
            self.main,
            moving.clone(),
        );
        painter.add(Shape::mesh(mesh));
        let drop_on = match (self.drag, pointer) {
            (Some(_), Some(p)) => self.layout.penguin_at(p),
            _ => None,
        };
        let hovered_penguin = pointer.and_then(|p| self.layout.penguin_at(p));
        for pg in &self.layout.penguins {
            let entry = vc.state.nodes.get(&pg.node);
            if drop_on == Some(pg.node) {
                let ok = mood(entry) == Mood::Up;
                painter.circle_stroke(
                    pg.at,
                    pg.size * 0.75,
                    Stroke::new(3.0, if ok { MOVING } else { REFUSED }),
                );
            }
            if pg.size >= LABEL_FROM || hovered_penguin == Some(pg.node) {
                painter.text(
                    pg.at + Vec2::new(0.0, pg.size * 0.62 + 2.0),
                    egui::Align2::CENTER_TOP,
                    penguin_label(pg.node, entry),
                    egui::FontId::proportional(11.0),
                    ui.visuals().text_color(),
                );
            }
        }
        self.moving_ui(&painter, &moving, pointer, now);
        let animating = !moving.is_empty() | self.overlays_ui(ui, &painter, vc);

        // Menu and tooltips.
        response.context_menu(|ui| self.menu_ui(ui, vc));
        if self.drag.is_none() && !response.context_menu_opened() {
            if let Some(sq) = &under {
                response.on_hover_ui_at_pointer(|ui| {
                    ui.label(tooltip(sq, vc));
                });
            } else if let Some(n) = hovered_penguin {
                let text = penguin_tooltip(n, vc.state.nodes.get(&n));
                response.on_hover_ui_at_pointer(|ui| {
                    ui.label(text);
                });
            }
        }
        if animating || self.drag.is_some() {
            ui.ctx().request_repaint_after(ANIMATION_FRAME);
        }
    }

    fn toolbar_ui(&mut self, ui: &mut Ui, nodes: &[NodeId]) {
        ui.horizontal(|ui| {
            egui::ComboBox::from_label("main node")
                .selected_text(format!("node {}", self.main))
                .show_ui(ui, |ui| {
                    for n in nodes {
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
        ui.weak(
            "drag a process onto a penguin to migrate it; double-click a green one to send it \
             home; right-click for more",
        );
    }

    /// The squares that glide or are dragged, and their lines home: at
    /// their place of the moment, or under the pointer (a ghost at their place).
    fn moving_ui(
        &mut self,
        painter: &egui::Painter,
        moving: &[Identity],
        pointer: Option<Pos2>,
        now: Instant,
    ) {
        self.gliding.clear();
        let mut shapes = Vec::new();
        for sq in moving.iter().filter_map(|id| self.layout.square(*id)) {
            let place = self.motion.position(sq.id, sq.rect.center(), now);
            let rect = Rect::from_center_size(place, sq.rect.size());
            if self.drag == Some(sq.id) {
                shapes.push(Shape::rect_stroke(
                    rect,
                    1.0,
                    Stroke::new(1.0, picture::fill(sq)),
                    egui::StrokeKind::Inside,
                ));
                if let Some(p) = pointer {
                    let held = Rect::from_center_size(p, sq.rect.size().max(Vec2::splat(8.0)));
                    picture::square_shapes(sq, held, &mut shapes);
                }
                continue;
            }
            self.gliding.push((sq.id, place));
            if sq.migrated() {
                shapes.extend(picture::line_home(&self.layout, sq, place));
            }
            picture::square_shapes(sq, rect, &mut shapes);
        }
        painter.extend(shapes);
    }

    /// Migrations under way (a progress ring, a line to where it goes) and
    /// recent refusals (a red cross and the reason); true while any shows.
    fn overlays_ui(&self, ui: &Ui, painter: &egui::Painter, vc: &ViewerContext) -> bool {
        let moves = &vc.state.moves;
        let t = ui.input(|i| i.time) as f32;
        let mut any = false;
        for flight in moves.all_in_flight() {
            let Some(sq) = self.layout.square(flight.identity) else {
                continue;
            };
            any = true;
            let place = sq.rect.center();
            let radius = sq.rect.width().max(6.0) * 0.9 + 3.0;
            paint::progress_ring(painter, place, radius, moves.estimate(flight), t);
            let target = flight
                .to
                .parse::<NodeId>()
                .ok()
                .and_then(|n| self.layout.penguin(n));
            if let Some(pg) = target {
                painter.line_segment([place, pg.at], Stroke::new(1.0, MOVING));
            }
            painter.text(
                place + Vec2::new(radius + 3.0, 0.0),
                egui::Align2::LEFT_CENTER,
                format!(
                    "-> {} {:.1} s",
                    flight.to,
                    flight.since.elapsed().as_secs_f32()
                ),
                egui::FontId::proportional(10.0),
                MOVING,
            );
        }
        for (id, outcome) in moves.outcomes() {
            let (Some(sq), Err(why)) = (self.layout.square(*id), &outcome.result) else {
                continue;
            };
            any = true;
            paint::refused_mark(painter, sq.rect);
            painter.text(
                sq.rect.right_center() + Vec2::new(4.0, 0.0),
                egui::Align2::LEFT_CENTER,
                paint::short(why, 60),
                egui::FontId::proportional(10.0),
                REFUSED,
            );
        }
        any
    }

    /// The right-click menu of a square.
    fn menu_ui(&mut self, ui: &mut Ui, vc: &mut ViewerContext) {
        let Some(sq) = self.menu_for.and_then(|id| self.layout.square(id)).cloned() else {
            ui.label("right-click a process for its actions");
            return;
        };
        ui.label(format!(
            "PID {}: {}",
            sq.pid,
            paint::short(&sq.info.cmdline, 40)
        ));
        ui.separator();
        let mut chosen = None;
        if ui
            .add_enabled(sq.migrated(), egui::Button::new("home"))
            .clicked()
        {
            chosen = Some(ProcessAction::Home);
        }
        if ui.button("best node").clicked() {
            chosen = Some(ProcessAction::Best);
        }
        ui.menu_button("migrate to", |ui| {
            for pg in &self.layout.penguins {
                if pg.node != sq.runs_on && ui.button(format!("node {}", pg.node)).clicked() {
                    chosen = Some(ProcessAction::MoveTo(pg.node));
                }
            }
        });
        ui.separator();
        let lock = ProcessAction::Lock(!sq.info.lock);
        let others = [
            ProcessAction::Stop,
            ProcessAction::Cont,
            ProcessAction::Kill,
        ];
        for action in std::iter::once(lock).chain(others) {
            if ui.button(action.label()).clicked() {
                chosen = Some(action);
            }
        }
        if let Some(action) = chosen {
            vc.act(sq.listed_on, sq.pid, action);
            self.menu_for = None;
            ui.close();
        }
    }
}

/// A penguin's mood from its node's state.
fn mood(entry: Option<&NodeEntry>) -> Mood {
    match entry {
        Some(e) if !e.is_up() => Mood::Down,
        Some(e) if e.admin.as_ref().is_some_and(|a| a.block) || !e.status.accepts => Mood::Blocking,
        _ => Mood::Up,
    }
}

/// The words under a penguin.
fn penguin_label(node: NodeId, entry: Option<&NodeEntry>) -> String {
    let name = entry.map_or("", |e| e.status.name.as_str());
    match mood(entry) {
        Mood::Down => format!("{node} {name} (down)"),
        Mood::Blocking => format!("{node} {name} (blocks arrivals)"),
        Mood::Up => format!("{node} {name}"),
    }
}

/// What a penguin says on hover.
fn penguin_tooltip(node: NodeId, entry: Option<&NodeEntry>) -> String {
    let Some(e) = entry else {
        return format!("node {node}");
    };
    let why = match &e.link {
        LinkState::Connected(_) if e.is_up() => None,
        link => e
            .status
            .reason
            .clone()
            .or(link.reason().map(str::to_string)),
    };
    let mut t = format!(
        "node {node} ({}, {})\nload {:.0} %, memory used {:.0} %",
        e.status.name,
        e.status.addr,
        e.load_percent(),
        e.mem_used_percent()
    );
    match mood(entry) {
        Mood::Down => t.push_str(&format!(
            "\ndown: {}",
            why.unwrap_or_else(|| "no news from it".into())
        )),
        Mood::Blocking => t.push_str("\nblocks arrivals (admin/block)"),
        Mood::Up => {
            if let Some(w) = why {
                t.push_str(&format!("\n{w}"));
            }
        }
    }
    t.push_str("\nclick: put it in the middle");
    t
}

/// What a process's square says on hover.
fn tooltip(sq: &Square, vc: &ViewerContext) -> String {
    let p = &sq.info;
    let mut t = format!(
        "PID {} on node {}\n{}\nuser {}\nhome node {} (PID {} there), runs on node {}",
        p.pid,
        sq.runs_on,
        p.cmdline,
        p.user,
        sq.home(),
        sq.id.1,
        sq.runs_on
    );
    if let Some(m) = vc.state.moves.last_move(sq.id) {
        t.push_str(&format!(
            "\nlast move: node {} -> {}, frozen {} ms ({} ms in all)",
            m.from, m.to, m.freeze_ms, m.total_ms
        ));
        if !m.why.is_empty() {
            t.push_str(&format!("\nwhy: {}", m.why));
        }
    } else if p.nmigs > 0 {
        t.push_str(&format!("\n{} moves so far", p.nmigs));
    }
    if p.lock {
        t.push_str("\nlocked to its node (lock = 1)");
    }
    if !p.cantmove.is_empty() {
        t.push_str(&format!("\ncannot move: {}", p.cantmove));
    }
    if let Some(f) = vc.state.moves.in_flight(sq.id) {
        t.push_str(&format!(
            "\nmoving to {} for {:.1} s",
            f.to,
            f.since.elapsed().as_secs_f32()
        ));
    } else if let Some(o) = vc.state.moves.outcome(sq.id) {
        match &o.result {
            Ok(r) => t.push_str(&format!("\nmoved to node {}", r.to)),
            Err(e) => t.push_str(&format!("\nnot moved to {}: {e}", o.to)),
        }
    }
    t
}

impl Window for Migmon {
    fn key(&self) -> Id {
        Id::unique("migmon")
    }

    fn title(&self) -> String {
        "openMosixmigmon".into()
    }

    fn frame<'a>(&self, window: egui::Window<'a>) -> egui::Window<'a> {
        window.default_size([760.0, 700.0])
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
