//! The event loop: processor sharing on every node, arrivals, completions,
//! balancer ticks (each node once a second, at its own phase, as the agent
//! decides after each sample, and again as soon as its last move landed),
//! gossip (every node's load as of the last second), and migrations that
//! freeze a process for their cost before it runs on the target (counted in
//! the target's load meanwhile).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use balancer::{Candidate, CostModel, NodeView, Policy, Rng, Sent, load};
use hpc::model::ClusterMask;

use crate::report::{Finished, Report};
use crate::workload::Workload;

/// How moves are decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// Nothing moves; every process runs where it arrived.
    None,
    /// Each process starts on the least-loaded node and never moves (forked
    /// ones start beside their parent): by fresh figures, or (`false`) by
    /// gossip up to a second old.
    Placement {
        /// Figures as they are now.
        fresh: bool,
    },
    /// The balancer's policy, but every node sees every load as it is now
    /// and always picks the least-loaded node.
    GlobalFresh(Policy),
    /// The balancer's policy on gossip up to a second old (two random
    /// choices) for moves; a new program, and a forked worker once the
    /// agent has seen it, is placed as the agent places them: a few peers
    /// asked for their load now, moved there at once if it gains (a small
    /// move for a program, its whole image for a worker; several at once).
    Balancer(Policy),
}

/// What a new program's move at placement carries: it has only just
/// started, so its image is small.
const NEWBORN_BYTES: u64 = 4 << 20;

/// How long after a fork the agent sees the new worker (its watch of a
/// job's processes looks every tenth of a second).
const FORK_SEEN: f64 = 0.1;

/// Placements a node has under way at once, beside its one balancing move.
const PLACEMENTS_AT_ONCE: usize = 4;

/// What a migration really costs in the simulation: the lab's line.
fn true_cost(bytes: u64) -> f64 {
    0.090 + 0.0033 * bytes as f64 / f64::from(1u32 << 20)
}

/// Events, ordered by time (ns) then sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Arrive(usize),
    /// A node's next completion, valid if the node's version still matches.
    Complete(usize, u64),
    Tick(usize),
    /// A decision right after the node's last move landed.
    Again(usize),
    Gossip,
    /// A frozen process (from, to) lands on a node: moved by the balancer,
    /// or (`true`) placed.
    Land(usize, usize, usize, bool),
    /// The agent of a node sees a worker forked there.
    Newborn(usize, usize),
}

struct Proc {
    remaining: f64,
    arrived: f64,
    ideal: f64,
    bytes: u64,
    moves: u32,
    forked: bool,
}

struct NodeState {
    running: Vec<usize>,
    /// Processes on their way here.
    incoming: usize,
    /// A move from here is under way.
    moving: bool,
    /// Placements from here under way.
    placing: usize,
    since: f64,
    version: u64,
    last_move: Option<f64>,
    cost: CostModel,
    sent: Sent,
}

struct Sim<'a> {
    w: &'a Workload,
    strategy: Strategy,
    now: f64,
    seq: u64,
    events: BinaryHeap<Reverse<(u64, u64, Kind)>>,
    procs: Vec<Proc>,
    nodes: Vec<NodeState>,
    gossip: Vec<f64>,
    gossip_at: f64,
    rng: Rng,
    finished: Vec<Finished>,
    bytes_moved: u64,
}

/// Runs `w` under `strategy` until every process has ended.
pub fn run(w: &Workload, strategy: Strategy, seed: u64) -> Report {
    let mut s = Sim {
        w,
        strategy,
        now: 0.0,
        seq: 0,
        events: BinaryHeap::new(),
        procs: Vec::with_capacity(w.arrivals.len()),
        nodes: w
            .nodes
            .iter()
            .map(|_| NodeState {
                running: Vec::new(),
                incoming: 0,
                moving: false,
                placing: 0,
                since: 0.0,
                version: 0,
                last_move: None,
                cost: CostModel::default(),
                sent: Sent::default(),
            })
            .collect(),
        gossip: vec![0.0; w.nodes.len()],
        gossip_at: 0.0,
        rng: Rng::new(seed),
        finished: Vec::with_capacity(w.arrivals.len()),
        bytes_moved: 0,
    };
    for (i, a) in w.arrivals.iter().enumerate() {
        s.at(a.at, Kind::Arrive(i));
    }
    if matches!(s.strategy, Strategy::GlobalFresh(_) | Strategy::Balancer(_)) {
        for n in 0..w.nodes.len() {
            let phase = s.rng.unit();
            s.at(phase, Kind::Tick(n));
        }
    }
    s.at(0.0, Kind::Gossip);
    while let Some(Reverse((t, _, kind))) = s.events.pop() {
        s.now = t as f64 / 1e9;
        match kind {
            Kind::Arrive(i) => s.arrive(i),
            Kind::Complete(n, v) => s.complete(n, v),
            Kind::Tick(n) => {
                if s.busy() {
                    s.at(s.now + 1.0, Kind::Tick(n));
                }
                s.decide(n);
            }
            Kind::Again(n) => s.decide(n),
            Kind::Gossip => s.gossip(),
            Kind::Land(p, from, to, placed) => s.land(p, from, to, placed),
            Kind::Newborn(p, n) => s.newborn(p, n),
        }
    }
    Report::new(&s.finished, s.bytes_moved)
}

impl Sim<'_> {
    fn at(&mut self, t: f64, kind: Kind) {
        self.seq += 1;
        self.events
            .push(Reverse(((t.max(0.0) * 1e9) as u64, self.seq, kind)));
    }

    fn busy(&self) -> bool {
        // Balancer ticks and gossip go on while anything is left to do.
        self.finished.len() < self.w.arrivals.len()
    }

    /// A process's share of a CPU on node `n` (reference-CPU seconds per second).
    fn rate(&self, n: usize) -> f64 {
        let (Some(node), Some(st)) = (self.w.nodes.get(n), self.nodes.get(n)) else {
            return 0.0;
        };
        let k = st.running.len().max(1) as f64;
        node.factor() * (f64::from(node.cpus) / k).min(1.0)
    }

    fn load(&self, n: usize) -> f64 {
        let (Some(node), Some(st)) = (self.w.nodes.get(n), self.nodes.get(n)) else {
            return 0.0;
        };
        load::units(
            (st.running.len() + st.incoming) as f64,
            node.speed,
            node.cpus,
        )
    }

    /// Brings node `n`'s processes up to now.
    fn advance(&mut self, n: usize) {
        let rate = self.rate(n);
        let Some(st) = self.nodes.get_mut(n) else {
            return;
        };
        let done = rate * (self.now - st.since);
        st.since = self.now;
        for &p in &st.running {
            if let Some(proc) = self.procs.get_mut(p) {
                proc.remaining -= done;
            }
        }
    }

    /// After a change on node `n`: its next completion.
    fn reschedule(&mut self, n: usize) {
        let rate = self.rate(n);
        let Some(st) = self.nodes.get_mut(n) else {
            return;
        };
        st.version += 1;
        let version = st.version;
        let next = st
            .running
            .iter()
            .filter_map(|p| self.procs.get(*p).map(|x| x.remaining))
            .fold(f64::INFINITY, f64::min);
        if next.is_finite() && rate > 0.0 {
            let t = self.now + next.max(0.0) / rate + 1e-9;
            self.at(t, Kind::Complete(n, version));
        }
    }

    fn arrive(&mut self, i: usize) {
        let Some(a) = self.w.arrivals.get(i) else {
            return;
        };
        let factor = self.w.nodes.get(a.node).map_or(1.0, |n| n.factor());
        self.procs.push(Proc {
            remaining: a.work,
            arrived: self.now,
            ideal: a.work / factor,
            bytes: a.bytes,
            moves: 0,
            forked: a.forked,
        });
        let p = self.procs.len() - 1;
        let node = match &self.strategy {
            _ if a.forked => a.node,
            Strategy::Placement { fresh: true } => self.least_loaded(None),
            Strategy::Placement { fresh: false } => self.least_gossiped(),
            Strategy::Balancer(_) => {
                // As the agent does it: started here, then moved at once
                // while small.
                if self.place(p, a.node, a.bytes.min(NEWBORN_BYTES), false) {
                    return;
                }
                a.node
            }
            _ => a.node,
        };
        self.put(p, node);
        if a.forked && matches!(self.strategy, Strategy::Balancer(_)) {
            self.at(self.now + FORK_SEEN, Kind::Newborn(p, a.node));
        }
    }

    /// The agent of node `n` sees worker `p` forked there: placed if it
    /// still runs there.
    fn newborn(&mut self, p: usize, n: usize) {
        let here = self.nodes.get(n).is_some_and(|st| st.running.contains(&p));
        let bytes = self.procs.get(p).map_or(0, |x| x.bytes);
        if here {
            self.place(p, n, bytes, true);
        }
    }

    /// Places process `p` of node `n` (running there if `running`, else
    /// arriving): the policy asks a few peers for their load now and says
    /// whether it goes, a move of `bytes`. True if it went.
    fn place(&mut self, p: usize, n: usize, bytes: u64, running: bool) -> bool {
        let Strategy::Balancer(policy) = &self.strategy else {
            return false;
        };
        let policy = policy.clone();
        if self
            .nodes
            .get(n)
            .is_none_or(|st| st.placing >= PLACEMENTS_AT_ONCE)
        {
            return false;
        }
        let one = self
            .w
            .nodes
            .get(n)
            .map_or(0.0, |x| load::units(1.0, x.speed, x.cpus));
        let me = self.view(n, self.load(n) - if running { one } else { 0.0 }, 0.0);
        let asked = policy.probe_set(&me, &self.gossiped(n), &mut self.rng);
        let probed: Vec<NodeView> = asked
            .into_iter()
            .map(|id| self.view(id as usize, self.load(id as usize), 0.0))
            .collect();
        let cost = self
            .nodes
            .get(n)
            .map(|st| st.cost.clone())
            .unwrap_or_default();
        let Some(d) = policy.place(&me, &probed, bytes, &cost) else {
            return false;
        };
        if running {
            self.advance(n);
            if let Some(st) = self.nodes.get_mut(n) {
                st.running.retain(|x| *x != p);
            }
            self.reschedule(n);
        }
        self.start_move(p, n, d.target as usize, bytes, true);
        true
    }

    /// The node gossip says would be least loaded with one more process.
    fn least_gossiped(&self) -> usize {
        let with_one = |n: usize| {
            let Some(node) = self.w.nodes.get(n) else {
                return f64::INFINITY;
            };
            self.gossip.get(n).copied().unwrap_or(0.0) + load::units(1.0, node.speed, node.cpus)
        };
        (0..self.w.nodes.len())
            .min_by(|a, b| with_one(*a).total_cmp(&with_one(*b)))
            .unwrap_or(0)
    }

    /// The node that would be least loaded with one more process.
    fn least_loaded(&self, except: Option<usize>) -> usize {
        (0..self.w.nodes.len())
            .filter(|n| Some(*n) != except)
            .min_by(|a, b| self.load_with_one(*a).total_cmp(&self.load_with_one(*b)))
            .unwrap_or(0)
    }

    fn load_with_one(&self, n: usize) -> f64 {
        let Some(node) = self.w.nodes.get(n) else {
            return f64::INFINITY;
        };
        self.load(n) + load::units(1.0, node.speed, node.cpus)
    }

    fn put(&mut self, p: usize, n: usize) {
        self.advance(n);
        if let Some(st) = self.nodes.get_mut(n) {
            st.running.push(p);
        }
        self.reschedule(n);
    }

    fn complete(&mut self, n: usize, version: u64) {
        if self.nodes.get(n).is_none_or(|st| st.version != version) {
            return;
        }
        self.advance(n);
        let Some(st) = self.nodes.get_mut(n) else {
            return;
        };
        let procs = &self.procs;
        // Under a microsecond of work left is done (event times are whole
        // nanoseconds, so less would never be reached).
        let (done, left): (Vec<usize>, Vec<usize>) = st
            .running
            .iter()
            .partition(|p| procs.get(**p).is_some_and(|x| x.remaining <= 1e-6));
        st.running = left;
        for p in done {
            if let Some(x) = self.procs.get(p) {
                self.finished.push(Finished {
                    slowdown: (self.now - x.arrived) / x.ideal.max(1e-9),
                    moves: x.moves,
                    forked: x.forked,
                });
            }
        }
        self.reschedule(n);
    }

    fn gossip(&mut self) {
        self.gossip = (0..self.w.nodes.len()).map(|n| self.load(n)).collect();
        self.gossip_at = self.now;
        for st in &mut self.nodes {
            st.sent.clear();
        }
        if self.busy() {
            self.at(self.now + 1.0, Kind::Gossip);
        }
    }

    fn view(&self, n: usize, load: f64, age: f64) -> NodeView {
        let (speed, cpus) = self.w.nodes.get(n).map_or((1, 1), |x| (x.speed, x.cpus));
        NodeView {
            id: n as u32,
            load,
            speed,
            cpus,
            free_mem: u64::MAX,
            total_mem: u64::MAX,
            accepts: true,
            age: Duration::from_secs_f64(age.max(0.0)),
        }
    }

    /// Node `n`'s view of the cluster: the last gossip, raised by what it
    /// sent since.
    fn gossiped(&self, n: usize) -> Vec<NodeView> {
        let age = self.now - self.gossip_at;
        let mut views: Vec<NodeView> = self
            .gossip
            .iter()
            .enumerate()
            .map(|(i, l)| self.view(i, *l, age))
            .collect();
        if let Some(st) = self.nodes.get(n) {
            st.sent.adjust(&mut views);
        }
        views
    }

    /// One decision of node `n` (none while a move of its is under way).
    fn decide(&mut self, n: usize) {
        if self.nodes.get(n).is_none_or(|st| st.moving) {
            return;
        }
        let (policy, fresh) = match &self.strategy {
            Strategy::GlobalFresh(p) => (p.clone(), true),
            Strategy::Balancer(p) => (p.clone(), false),
            _ => return,
        };
        let me = self.view(n, self.load(n), 0.0);
        let peers: Vec<NodeView> = if fresh {
            let best = self.least_loaded(Some(n));
            vec![self.view(best, self.load(best), 0.0)]
        } else {
            self.gossiped(n)
        };
        let Some(st) = self.nodes.get(n) else {
            return;
        };
        let candidates: Vec<Candidate> = st
            .running
            .iter()
            .filter_map(|p| {
                self.procs.get(*p).map(|x| Candidate {
                    id: *p as i64,
                    cpu: 1.0,
                    age: Duration::from_secs_f64(self.now - x.arrived),
                    bytes: x.bytes,
                    mask: ClusterMask::default(),
                })
            })
            .collect();
        let since = st.last_move.map(|t| Duration::from_secs_f64(self.now - t));
        let cost = st.cost.clone();
        let Some(d) = policy.decide(&me, &peers, &candidates, &cost, since, &mut self.rng) else {
            return;
        };
        let p = d.id as usize;
        self.advance(n);
        if let Some(st) = self.nodes.get_mut(n) {
            st.running.retain(|x| *x != p);
        }
        let bytes = self.procs.get(p).map_or(0, |x| x.bytes);
        self.start_move(p, n, d.target as usize, bytes, false);
        self.reschedule(n);
    }

    /// Process `p` (not running anywhere now) leaves node `from` for `to`,
    /// frozen for the move of `bytes`: a placement, or the balancer's move
    /// in `from`'s one move slot.
    fn start_move(&mut self, p: usize, from: usize, to: usize, bytes: u64, placed: bool) {
        let freeze = true_cost(bytes);
        if let Some(st) = self.nodes.get_mut(from) {
            if placed {
                st.placing += 1;
            } else {
                st.last_move = Some(self.now);
                st.moving = true;
            }
            st.sent.note(to as u32, 1.0);
            st.cost.observe(bytes, Duration::from_secs_f64(freeze));
        }
        if let Some(st) = self.nodes.get_mut(to) {
            st.incoming += 1;
        }
        if let Some(x) = self.procs.get_mut(p) {
            x.moves += 1;
        }
        self.bytes_moved += bytes;
        self.at(self.now + freeze, Kind::Land(p, from, to, placed));
    }

    fn land(&mut self, p: usize, from: usize, to: usize, placed: bool) {
        if let Some(st) = self.nodes.get_mut(to) {
            st.incoming = st.incoming.saturating_sub(1);
        }
        self.put(p, to);
        if placed {
            if let Some(st) = self.nodes.get_mut(from) {
                st.placing = st.placing.saturating_sub(1);
            }
            return;
        }
        let again = match self.nodes.get_mut(from) {
            Some(st) => {
                st.moving = false;
                st.last_move
            }
            None => None,
        };
        let min = match &self.strategy {
            Strategy::GlobalFresh(p) | Strategy::Balancer(p) => p.settings.min_interval,
            _ => Duration::ZERO,
        };
        let at = again
            .map_or(self.now, |t| t + min.as_secs_f64())
            .max(self.now);
        self.at(at, Kind::Again(from));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Arrival, Node};
    use hpc::model::STANDARD_SPEED;

    fn two_nodes(arrivals: Vec<Arrival>) -> Workload {
        let node = Node {
            speed: STANDARD_SPEED,
            cpus: 1,
        };
        Workload {
            nodes: vec![node.clone(), node],
            arrivals,
        }
    }

    fn busy(at: f64, work: f64) -> Arrival {
        Arrival {
            at,
            node: 0,
            work,
            bytes: 16 << 20,
            forked: true,
        }
    }

    #[test]
    fn alone_a_process_runs_at_its_ideal() {
        let r = run(&two_nodes(vec![busy(0.0, 10.0)]), Strategy::None, 1);
        assert_eq!(r.processes, 1);
        assert!((r.mean - 1.0).abs() < 1e-6, "{r:?}");
    }

    #[test]
    fn two_on_one_cpu_take_twice_as_long_unless_one_moves() {
        let w = two_nodes(vec![busy(0.0, 20.0), busy(0.0, 20.0)]);
        let none = run(&w, Strategy::None, 1);
        assert!((none.mean - 2.0).abs() < 1e-6, "{none:?}");
        let balanced = run(&w, Strategy::Balancer(Policy::default()), 1);
        assert!(
            (balanced.moves_per_process - 0.5).abs() < 1e-9,
            "{balanced:?}"
        );
        // One moved after about a second, frozen ~0.15 s: both end near 1.
        assert!(balanced.mean < 1.15, "{balanced:?}");
        // Forked, they cannot start elsewhere; started as programs, they can.
        assert!((run(&w, Strategy::Placement { fresh: true }, 1).mean - 2.0).abs() < 1e-6);
        let programs = two_nodes(
            [busy(0.0, 20.0), busy(0.0, 20.0)]
                .into_iter()
                .map(|a| Arrival { forked: false, ..a })
                .collect(),
        );
        let placed = run(&programs, Strategy::Placement { fresh: true }, 1);
        assert!((placed.mean - 1.0).abs() < 1e-6, "{placed:?}");
        // On gossip that does not show the first yet, both start together.
        let herded = run(&programs, Strategy::Placement { fresh: false }, 1);
        assert!((herded.mean - 2.0).abs() < 1e-6, "{herded:?}");
        // The balancer places the second elsewhere at once (what it sent
        // counts): one small move, frozen about 0.1 s of its 20 s.
        let ours = run(&programs, Strategy::Balancer(Policy::default()), 1);
        assert!(
            ours.mean < 1.01 && (ours.moves_per_process - 0.5).abs() < 1e-9,
            "{ours:?}"
        );
    }

    #[test]
    fn the_standard_workload_runs_to_its_end_under_every_strategy() {
        let mut c = crate::WorkloadConfig::standard(8, 3);
        c.seconds = 60.0;
        c.work = (0.5, 30.0);
        let w = Workload::generate(&c);
        let none = run(&w, Strategy::None, 1);
        let ours = run(&w, Strategy::Balancer(Policy::default()), 1);
        assert_eq!(none.processes, w.arrivals.len());
        assert_eq!(ours.processes, w.arrivals.len());
        assert!(ours.mean < none.mean, "{ours:?} vs {none:?}");
    }
}
