//! Where everything sits: penguins on a circle, the main node's processes on
//! a ring around its penguin, each remote node's share of them on a ring
//! around that penguin. Pure geometry, computed from the cluster state.

use egui::{Pos2, Rect, Vec2, pos2, vec2};
use hpc::model::{NodeId, ProcessInfo};
use viewer::state::{ClusterState, identity, runs_on};

/// A process square.
#[derive(Debug, Clone, PartialEq)]
pub struct Square {
    /// Its identity: home node and PID at home.
    pub home: NodeId,
    /// PID at home.
    pub home_pid: i32,
    /// The node that lists it (where commands about it go).
    pub listed_on: NodeId,
    /// Its PID there.
    pub pid: i32,
    /// The node it runs on.
    pub runs_on: NodeId,
    /// Where it is drawn.
    pub rect: Rect,
    /// The process as listed.
    pub info: ProcessInfo,
}

impl Square {
    /// Whether it runs away from home (drawn green, with a line home).
    pub fn migrated(&self) -> bool {
        self.runs_on != self.home
    }
}

/// The whole picture.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layout {
    /// Each node's penguin: id and centre.
    pub penguins: Vec<(NodeId, Pos2)>,
    /// Size of a penguin.
    pub penguin_size: f32,
    /// The process squares.
    pub squares: Vec<Square>,
}

impl Layout {
    /// The penguin of `node`.
    pub fn penguin(&self, node: NodeId) -> Option<Pos2> {
        self.penguins
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, p)| *p)
    }

    /// The penguin under `pos`, if any.
    pub fn penguin_at(&self, pos: Pos2) -> Option<NodeId> {
        let r = self.penguin_size * 0.6;
        self.penguins
            .iter()
            .find(|(_, p)| p.distance(pos) <= r)
            .map(|(n, _)| *n)
    }
}

/// Whether a process is shown: not a kernel thread, and movable when
/// `movable_only`; `filter` matches its user or command.
fn shown(p: &ProcessInfo, movable_only: bool, filter: &str) -> bool {
    let kernel = p.cmdline.starts_with('[') || p.ppid == 2 || p.pid == 2;
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
    let nodes: Vec<NodeId> = state.nodes.keys().copied().collect();
    let center = area.center();
    let radius = (area.width().min(area.height()) * 0.36).max(40.0);
    let penguin_size =
        (radius * 2.0 * std::f32::consts::PI / nodes.len().max(1) as f32 * 0.45).clamp(14.0, 64.0);
    let penguins: Vec<(NodeId, Pos2)> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let a = i as f32 / nodes.len().max(1) as f32 * std::f32::consts::TAU
                - std::f32::consts::FRAC_PI_2;
            (*n, center + vec2(a.cos(), a.sin()) * radius)
        })
        .collect();
    // The processes of the main node: those at home there, and those away
    // from it (listed by the node that runs them).
    let mut by_node: Vec<(NodeId, Vec<(NodeId, &ProcessInfo)>)> = Vec::new();
    for (listed_on, table) in &state.processes {
        for p in table.values() {
            let (home, _) = identity(*listed_on, p);
            let runs = runs_on(*listed_on, p);
            // A home lists its migrated processes too (where = elsewhere):
            // the row of the node that runs it is the one drawn.
            if home != main || runs != *listed_on || !shown(p, movable_only, filter) {
                continue;
            }
            match by_node.iter_mut().find(|(n, _)| *n == runs) {
                Some((_, v)) => v.push((*listed_on, p)),
                None => by_node.push((runs, vec![(*listed_on, p)])),
            }
        }
    }
    let mut squares = Vec::new();
    for (node, mut procs) in by_node {
        let Some(at) = penguins.iter().find(|(n, _)| *n == node).map(|(_, p)| *p) else {
            continue;
        };
        procs.sort_by_key(|(_, p)| p.pid);
        let count = procs.len();
        // Squares shrink as there are more; the ring grows to hold them.
        let side = (penguin_size * 0.3 * (24.0 / count.max(1) as f32).sqrt()).clamp(3.0, 12.0);
        let ring = (penguin_size * 0.75).max(count as f32 * side * 1.4 / std::f32::consts::TAU);
        for (i, (listed_on, p)) in procs.into_iter().enumerate() {
            let a = i as f32 / count as f32 * std::f32::consts::TAU;
            let c = at + vec2(a.cos(), a.sin()) * ring;
            let (home, home_pid) = identity(listed_on, p);
            squares.push(Square {
                home,
                home_pid,
                listed_on,
                pid: p.pid,
                runs_on: node,
                rect: Rect::from_center_size(c, Vec2::splat(side)),
                info: p.clone(),
            });
        }
    }
    Layout {
        penguins,
        penguin_size,
        squares,
    }
}

/// A point `t` (0..=1) of the way from `a` to `b`.
pub fn lerp(a: Pos2, b: Pos2, t: f32) -> Pos2 {
    pos2(a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t)
}
