//! The still part of the picture (lines home, penguins, squares) as one
//! tessellated mesh, kept until the layout, a penguin's look or the set of
//! moving squares changes. Two thousand squares and their lines would
//! otherwise be shaped and tessellated again every frame; a kept mesh is only
//! copied. What moves (a gliding or dragged square and its line) is left out
//! and drawn on top each frame, with the overlays (progress, refusals, drop
//! target, labels).

use std::sync::Arc;

use egui::epaint::{Mesh, Tessellator};
use egui::{Context, Shape, Stroke};
use hpc::model::NodeId;
use viewer::moves::Identity;

use crate::layout::{Layout, Square};
use crate::paint::{AT_HOME, AWAY, STUCK};
use crate::penguin::{self, Mood};

/// How a penguin looks: its node, mood and load (in 5 % steps, so that a
/// load that wobbles does not rebuild the picture every second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// The node.
    pub node: NodeId,
    /// Its mood.
    pub mood: Mood,
    /// Its load in 5 % steps of its capacity.
    pub busy: u8,
}

impl Look {
    /// The look of `node` in `mood` at `load_percent`.
    pub fn new(node: NodeId, mood: Mood, load_percent: f32) -> Self {
        Self {
            node,
            mood,
            busy: (load_percent.clamp(0.0, 100.0) / 5.0).round() as u8,
        }
    }

    fn busy(&self) -> f32 {
        f32::from(self.busy) * 0.05
    }
}

/// What the kept mesh was built from.
#[derive(Debug, Clone, PartialEq)]
struct Key {
    layout: u64,
    looks: Vec<Look>,
    main: NodeId,
    moving: Vec<Identity>,
    pixels_per_point: f32,
}

/// The kept mesh.
#[derive(Default)]
pub struct Picture {
    key: Option<Key>,
    mesh: Arc<Mesh>,
}

/// A square's colour.
pub fn fill(sq: &Square) -> egui::Color32 {
    if sq.migrated() {
        AWAY
    } else if !sq.movable() {
        STUCK
    } else {
        AT_HOME
    }
}

/// The line from a square's home penguin to `to`, if its home is drawn.
pub fn line_home(layout: &Layout, sq: &Square, to: egui::Pos2) -> Option<Shape> {
    let home = layout.penguin(sq.home())?;
    Some(Shape::line_segment(
        [home.at, to],
        Stroke::new(1.0, AWAY.gamma_multiply(0.7)),
    ))
}

/// A square's shapes at its place: its fill, and a gold edge when locked.
pub fn square_shapes(sq: &Square, rect: egui::Rect, out: &mut Vec<Shape>) {
    out.push(Shape::rect_filled(rect, 1.0, fill(sq)));
    if sq.info.lock {
        out.push(Shape::rect_stroke(
            rect.expand(1.0),
            1.0,
            Stroke::new(1.0, egui::Color32::from_rgb(200, 160, 30)),
            egui::StrokeKind::Outside,
        ));
    }
}

impl Picture {
    /// The mesh of `layout` (generation `generation`) with the penguins
    /// looking as `looks` say, leaving out the squares in `moving`; built
    /// again only when one of those changed.
    pub fn mesh(
        &mut self,
        ctx: &Context,
        layout: &Layout,
        generation: u64,
        looks: Vec<Look>,
        main: NodeId,
        mut moving: Vec<Identity>,
    ) -> Arc<Mesh> {
        moving.sort_unstable();
        let key = Key {
            layout: generation,
            looks,
            main,
            moving,
            pixels_per_point: ctx.pixels_per_point(),
        };
        if self.key.as_ref() != Some(&key) {
            self.mesh = Arc::new(build(ctx, layout, &key));
            self.key = Some(key);
        }
        self.mesh.clone()
    }
}

fn build(ctx: &Context, layout: &Layout, key: &Key) -> Mesh {
    let still = |sq: &&Square| key.moving.binary_search(&sq.id).is_err();
    let mut shapes = Vec::with_capacity(layout.squares.len() * 2 + layout.penguins.len() * 14);
    shapes.extend(
        layout
            .squares
            .iter()
            .filter(still)
            .filter(|s| s.migrated())
            .filter_map(|s| line_home(layout, s, s.rect.center())),
    );
    for (pg, look) in layout.penguins.iter().zip(&key.looks) {
        penguin::shapes(
            &mut shapes,
            pg.at,
            pg.size,
            look.mood,
            look.busy(),
            pg.node == key.main,
        );
    }
    for sq in layout.squares.iter().filter(still) {
        square_shapes(sq, sq.rect, &mut shapes);
    }
    let mut tessellator = Tessellator::new(
        key.pixels_per_point,
        ctx.tessellation_options(|o| *o),
        ctx.fonts(|f| f.font_image_size()),
        Vec::new(),
    );
    let mut mesh = Mesh::default();
    for shape in shapes {
        tessellator.tessellate_shape(shape, &mut mesh);
    }
    mesh
}
