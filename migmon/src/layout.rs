//! Where everything sits: the main node's penguin in the middle, the other
//! penguins on a circle around it; the main node's processes (those started
//! there, wherever they run, and its guests) as squares on rings around the
//! penguin that runs them. Pure geometry, computed from the cluster state;
//! the window keeps it until the process lists, the nodes, the area or the
//! filter change ([`LayoutKey`]).

use std::collections::HashMap;
use std::f32::consts::TAU;

use egui::{Pos2, Rect, Vec2, vec2};
use hpc::model::{NodeId, ProcessInfo};
use viewer::moves::Identity;
use viewer::state::{ClusterState, identity, runs_on};

/// The largest square side.
const MAX_SIDE: f32 = 12.0;
/// The smallest square side (2,000 processes around one node still fit).
const MIN_SIDE: f32 = 3.0;
/// Distance between square centres on a ring, in sides.
const PITCH: f32 = 1.5;
/// Penguins at least this tall carry their label; smaller ones on hover.
pub const LABEL_FROM: f32 = 26.0;
/// The height of a penguin's label.
const LABEL_HEIGHT: f32 = 14.0;

/// A process square.
#[derive(Debug, Clone, PartialEq)]
pub struct Square {
    /// Its identity: home node and PID at home.
    pub id: Identity,
    /// The node that lists it (where commands about it go).
    pub listed_on: NodeId,
    /// Its PID there.
    pub pid: i32,
    /// The node it runs on.
    pub runs_on: NodeId,
    /// Where it sits.
    pub rect: Rect,
    /// The process as listed.
    pub info: ProcessInfo,
}

impl Square {
    /// Its home node.
    pub fn home(&self) -> NodeId {
        self.id.0
    }

    /// Whether it runs away from home (drawn green, with a line home).
    pub fn migrated(&self) -> bool {
        self.runs_on != self.id.0
    }

    /// Whether it may be moved by a drag (not locked, nothing keeps it).
    pub fn movable(&self) -> bool {
        !self.info.lock && self.info.cantmove.is_empty()
    }
}

/// A penguin: a node and where it sits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Penguin {
    /// The node.
    pub node: NodeId,
    /// Its centre.
    pub at: Pos2,
    /// Its height.
    pub size: f32,
}

/// The whole picture.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layout {
    /// The penguins, the main one first.
    pub penguins: Vec<Penguin>,
    /// The process squares, ordered by node then home PID.
    pub squares: Vec<Square>,
    /// The square of each identity.
    index: HashMap<Identity, usize>,
}

impl Layout {
    /// The penguin of `node`.
    pub fn penguin(&self, node: NodeId) -> Option<&Penguin> {
        self.penguins.iter().find(|p| p.node == node)
    }

    /// The penguin under `pos`, if any.
    pub fn penguin_at(&self, pos: Pos2) -> Option<NodeId> {
        self.penguins
            .iter()
            .find(|p| p.at.distance(pos) <= p.size * 0.6)
            .map(|p| p.node)
    }

    /// The square under `pos`, if any (the one drawn last wins, as seen).
    pub fn square_at(&self, pos: Pos2) -> Option<&Square> {
        self.squares
            .iter()
            .rev()
            .find(|s| s.rect.expand(1.0).contains(pos))
    }

    /// The square of a process.
    pub fn square(&self, id: Identity) -> Option<&Square> {
        self.index.get(&id).and_then(|i| self.squares.get(*i))
    }
}

/// What a layout depends on: it is computed again only when this changes.
#[derive(Debug, Clone, PartialEq)]
pub struct LayoutKey {
    /// The process lists' version.
    pub processes: u64,
    /// The nodes.
    pub nodes: Vec<NodeId>,
    /// The area, in whole points.
    pub area: [i32; 4],
    /// The main node.
    pub main: NodeId,
    /// Only processes that may move.
    pub movable_only: bool,
    /// The filter.
    pub filter: String,
}

impl LayoutKey {
    /// The key of a layout of `state` in `area`.
    pub fn of(
        state: &ClusterState,
        main: NodeId,
        area: Rect,
        movable_only: bool,
        filter: &str,
    ) -> Self {
        Self {
            processes: state.processes_version,
            nodes: state.nodes.keys().copied().collect(),
            area: [
                area.min.x as i32,
                area.min.y as i32,
                area.max.x as i32,
                area.max.y as i32,
            ],
            main,
            movable_only,
            filter: filter.to_string(),
        }
    }
}

/// Whether a process is shown: not a kernel thread, movable when
/// `movable_only`, and its user or command contains `filter`.
pub fn shown(p: &ProcessInfo, movable_only: bool, filter: &str) -> bool {
    let kernel = p.cmdline.starts_with('[') || p.ppid == 2 || p.pid == 2;
    if viewer::state::is_plumbing(p) {
        return false;
    }
    let movable = !p.lock && p.cantmove.is_empty();
    let matches = filter.is_empty() || p.user.contains(filter) || p.cmdline.contains(filter);
    !kernel && (movable || !movable_only) && matches
}

/// Lays out `state` in `area` around the main node `main`.
pub fn layout(
    state: &ClusterState,
    main: NodeId,
    area: Rect,
    movable_only: bool,
    filter: &str,
) -> Layout {
    let penguins = penguins(state, main, area);
    // The processes that belong in the picture, each once, by where it runs.
    let mut rows: HashMap<Identity, (NodeId, NodeId, &ProcessInfo)> = HashMap::new();
    for (listed_on, table) in &state.processes {
        for p in table.values() {
            let id = identity(*listed_on, p);
            let runs = runs_on(*listed_on, p);
            // A home lists its migrated processes too (where = elsewhere):
            // the row of the node that runs it is the one drawn.
            if runs != *listed_on || (id.0 != main && runs != main) {
                continue;
            }
            if !shown(p, movable_only, filter) {
                continue;
            }
            let row = (runs, *listed_on, p);
            match rows.get(&id) {
                // Both ends list it for a moment while it moves: the copy
                // that has moved more often (or, by the move log, is where
                // it went) is the live one.
                Some((old_runs, _, old)) if !newer(state, id, row, (*old_runs, old)) => {}
                _ => {
                    rows.insert(id, row);
                }
            }
        }
    }
    let mut by_node: HashMap<NodeId, Vec<(Identity, NodeId, &ProcessInfo)>> = HashMap::new();
    for (id, (runs, listed_on, p)) in rows {
        by_node.entry(runs).or_default().push((id, listed_on, p));
    }
    let mut squares = Vec::new();
    let others = penguins.len().saturating_sub(1).max(1) as f32;
    let outer = outer_radius(area);
    for penguin in &penguins {
        let Some(mut procs) = by_node.remove(&penguin.node) else {
            continue;
        };
        procs.sort_by_key(|(id, _, _)| *id);
        // Clear of the penguin's rings (load, main) and of its label.
        let label = if penguin.size >= LABEL_FROM {
            LABEL_HEIGHT
        } else {
            0.0
        };
        let first = penguin.size * 0.72 + 3.0 + label;
        let room = if penguin.node == main {
            outer * 0.62
        } else {
            (outer * TAU / others * 0.5).max(first + 8.0 * MIN_SIDE)
        };
        let (side, spots) = rings(penguin.at, procs.len(), first, room);
        for ((id, listed_on, p), at) in procs.into_iter().zip(spots) {
            squares.push(Square {
                id,
                listed_on,
                pid: p.pid,
                runs_on: penguin.node,
                rect: Rect::from_center_size(at, Vec2::splat(side)),
                info: p.clone(),
            });
        }
    }
    let index = squares.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    Layout {
        penguins,
        squares,
        index,
    }
}

/// Whether `row` is the process `id` rather than `old`: the command rather
/// than its job's init, the later copy rather than the one it left.
fn newer(
    state: &ClusterState,
    id: Identity,
    row: (NodeId, NodeId, &ProcessInfo),
    old: (NodeId, &ProcessInfo),
) -> bool {
    if row.0 == old.0 {
        // A job's init and its command share the identity: the command.
        return row.2.ppid == old.1.pid;
    }
    if let Some(m) = state.moves.last_move(id)
        && (row.0 == m.to) != (old.0 == m.to)
    {
        return row.0 == m.to;
    }
    row.2.nmigs > old.1.nmigs
}

/// The radius of the circle the penguins sit on.
fn outer_radius(area: Rect) -> f32 {
    (area.width().min(area.height()) * 0.40).max(40.0)
}

/// The main penguin in the middle, the others on the circle.
fn penguins(state: &ClusterState, main: NodeId, area: Rect) -> Vec<Penguin> {
    let center = area.center();
    let outer = outer_radius(area);
    let others: Vec<NodeId> = state.nodes.keys().copied().filter(|n| *n != main).collect();
    let size = (outer * TAU / others.len().max(1) as f32 * 0.45).clamp(14.0, 56.0);
    let mut out = vec![Penguin {
        node: main,
        at: center,
        size: (size * 1.25).clamp(28.0, 64.0),
    }];
    out.extend(others.iter().enumerate().map(|(i, n)| {
        let a = i as f32 / others.len() as f32 * TAU - std::f32::consts::FRAC_PI_2;
        Penguin {
            node: *n,
            at: center + vec2(a.cos(), a.sin()) * outer,
            size,
        }
    }));
    out
}

/// `count` spots on rings around `center`, the squares' inner edge at
/// radius `first` outwards, keeping within `room` where the squares can
/// shrink enough: the side of the squares, and the spots.
pub fn rings(center: Pos2, count: usize, first: f32, room: f32) -> (f32, Vec<Pos2>) {
    if count == 0 {
        return (MAX_SIDE, Vec::new());
    }
    // The side at which the annulus from `first` to `room` holds them all.
    let annulus = std::f32::consts::PI * (room * room - first * first).max(0.0);
    let side = ((annulus / count as f32).sqrt() / PITCH).clamp(MIN_SIDE, MAX_SIDE);
    let step = side * PITCH;
    let mut spots = Vec::with_capacity(count);
    let mut radius = first + side * 0.5;
    let mut ring = 0;
    while spots.len() < count {
        let capacity = ((TAU * radius / step).floor() as usize).max(1);
        let here = capacity.min(count - spots.len());
        // A ring that is not full spreads its squares evenly.
        let offset = if ring % 2 == 1 { 0.5 } else { 0.0 };
        for i in 0..here {
            let a = (i as f32 + offset) / here as f32 * TAU - std::f32::consts::FRAC_PI_2;
            spots.push(center + vec2(a.cos(), a.sin()) * radius);
        }
        radius += step;
        ring += 1;
    }
    (side, spots)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn rings_hold_every_square_without_overlap_and_shrink_them() {
        let c = egui::pos2(0.0, 0.0);
        for count in [1, 5, 40, 500, 2000] {
            let (side, spots) = rings(c, count, 30.0, 250.0);
            assert_eq!(spots.len(), count);
            assert!((MIN_SIDE..=MAX_SIDE).contains(&side));
            for (i, a) in spots.iter().enumerate() {
                for b in spots.iter().skip(i + 1) {
                    assert!(a.distance(*b) >= side, "{count}: squares overlap");
                }
            }
            let far = spots.iter().map(|p| p.distance(c)).fold(0.0, f32::max);
            assert!(far <= 250.0 + side * PITCH, "{count}: {far} out of room");
        }
        assert!(rings(c, 2000, 30.0, 250.0).0 < rings(c, 10, 30.0, 250.0).0);
    }
}
