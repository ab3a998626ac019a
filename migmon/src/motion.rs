//! Moves as motion: when a process turns up on another node than where it
//! was last drawn (whoever moved it), its square glides from its old spot to
//! its new one. A process that vanished for a moment (between leaving one
//! node's list and appearing in another's) still glides from where it was.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use egui::Pos2;
use hpc::model::NodeId;
use viewer::moves::Identity;

use crate::layout::Layout;

/// How long a glide takes.
pub const GLIDE: Duration = Duration::from_millis(700);
/// How long a vanished process's last spot is remembered.
const REMEMBER: Duration = Duration::from_secs(120);

/// Where a process was last drawn.
#[derive(Debug, Clone, Copy)]
struct Seen {
    node: NodeId,
    at: Pos2,
    /// When it left the picture (None: it is in it).
    gone: Option<Instant>,
}

/// A glide under way.
#[derive(Debug, Clone, Copy)]
struct Glide {
    from: Pos2,
    start: Instant,
}

/// The squares' motion between layouts.
#[derive(Debug, Default)]
pub struct Motion {
    seen: HashMap<Identity, Seen>,
    glides: HashMap<Identity, Glide>,
}

impl Motion {
    /// Takes in a new layout: each square that now sits on another node
    /// than before starts gliding from its old spot.
    pub fn update(&mut self, layout: &Layout, now: Instant) {
        for s in self.seen.values_mut() {
            if s.gone.is_none() {
                s.gone = Some(now);
            }
        }
        for sq in &layout.squares {
            let at = sq.rect.center();
            match self.seen.get_mut(&sq.id) {
                Some(s) => {
                    if s.node != sq.runs_on {
                        // From where it is drawn right now, should it be
                        // mid-glide already.
                        let from = self
                            .glides
                            .get(&sq.id)
                            .map_or(s.at, |g| g.from.lerp(s.at, progress(g.start, now)));
                        self.glides.insert(sq.id, Glide { from, start: now });
                    }
                    *s = Seen {
                        node: sq.runs_on,
                        at,
                        gone: None,
                    };
                }
                None => {
                    self.seen.insert(
                        sq.id,
                        Seen {
                            node: sq.runs_on,
                            at,
                            gone: None,
                        },
                    );
                }
            }
        }
        self.seen
            .retain(|_, s| s.gone.is_none_or(|g| now.duration_since(g) < REMEMBER));
        self.glides
            .retain(|_, g| now.duration_since(g.start) < GLIDE);
    }

    /// Where the square of `id`, whose place is `to`, is drawn at `now`.
    pub fn position(&self, id: Identity, to: Pos2, now: Instant) -> Pos2 {
        match self.glides.get(&id) {
            Some(g) => g.from.lerp(to, progress(g.start, now)),
            None => to,
        }
    }

    /// Whether `id` is gliding at `now`.
    pub fn gliding(&self, id: Identity, now: Instant) -> bool {
        self.glides
            .get(&id)
            .is_some_and(|g| now.duration_since(g.start) < GLIDE)
    }

    /// The processes gliding at `now`.
    pub fn moving(&self, now: Instant) -> Vec<Identity> {
        self.glides
            .iter()
            .filter(|(_, g)| now.duration_since(g.start) < GLIDE)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether anything is gliding at `now` (the view then repaints).
    pub fn any(&self, now: Instant) -> bool {
        self.glides
            .values()
            .any(|g| now.duration_since(g.start) < GLIDE)
    }
}

/// How far a glide started at `start` is at `now`, eased (0..=1).
fn progress(start: Instant, now: Instant) -> f32 {
    let t = (now.duration_since(start).as_secs_f32() / GLIDE.as_secs_f32()).clamp(0.0, 1.0);
    // Ease in and out.
    t * t * (3.0 - 2.0 * t)
}
