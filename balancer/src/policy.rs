//! Whether to move one process, and where, in the MOSIX tradition:
//!
//! - **who**: unlocked processes that can move (the caller passes only
//!   those), busy ones first, and only once a process has lived long enough
//!   to be worth its move: a process that has lived `a` seconds is expected
//!   to live about as long again (Harchol-Balter and Downey's finding for
//!   Unix process lifetimes), and it gains in proportion to how much lighter
//!   the target is, so it moves only when its age is at least
//!   [`Settings::age_factor`] times what moving it is expected to cost,
//!   divided by the load gap in processes (their criterion `a > c / (n − m)`);
//! - **where**: two peers drawn at random among those that accept guests and
//!   whose gossip is fresh, and the lighter of the two (Mitzenmacher's "power
//!   of two choices": nodes acting at once on the same stale figures do not
//!   all pile onto the one least-loaded node);
//! - **whether**: only if the target, with the process added, stays lighter
//!   than this node is now by [`Settings::margin`], so a process does not
//!   bounce between two nodes;
//! - **how often**: one move at a time, at least [`Settings::min_interval`]
//!   apart.

use std::time::Duration;

use hpc::model::{ClusterMask, NodeId};

use crate::{CostModel, Rng, load};

/// The policy's knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Load units by which the target, after the move, must stay below this
    /// node's load now.
    pub margin: f64,
    /// The least time between two moves this node starts.
    pub min_interval: Duration,
    /// Gossip older than this is not acted on.
    pub max_staleness: Duration,
    /// How many times its expected migration cost a process must have lived.
    pub age_factor: f64,
    /// A process using less than this many CPUs is not worth moving.
    pub min_cpu: f64,
    /// Share of its memory under which a node's free memory makes it usher
    /// processes out ([`Policy::usher`]).
    pub mem_low: f64,
    /// Share of its memory a target must keep free with the process added.
    pub mem_keep: f64,
    /// Peers a placement asks for their load now.
    pub probes: usize,
    /// The CPU time (s, on a reference CPU) a new process is expected to
    /// need: placement moves it only if one of that length would finish
    /// sooner elsewhere by more than the move costs.
    pub newborn_work: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            margin: 30.0,
            min_interval: Duration::from_millis(200),
            max_staleness: Duration::from_secs(5),
            age_factor: 1.0,
            min_cpu: 0.1,
            mem_low: 0.10,
            mem_keep: 0.20,
            probes: 8,
            newborn_work: 1.0,
        }
    }
}

/// A node as the deciding node sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// Its id.
    pub id: NodeId,
    /// Its load (speed-normalised units; [`load::units`]).
    pub load: f64,
    /// Its speed.
    pub speed: u32,
    /// Its CPUs.
    pub cpus: u32,
    /// Its free memory (bytes).
    pub free_mem: u64,
    /// Its memory (bytes).
    pub total_mem: u64,
    /// Whether it takes guests (up, not blocking, not quiet).
    pub accepts: bool,
    /// How old the figures are.
    pub age: Duration,
}

/// A process that may move.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The caller's handle for it (a PID).
    pub id: i64,
    /// The CPUs it would use with a CPU of its own (its decayed demand).
    pub cpu: f64,
    /// How long it has lived.
    pub age: Duration,
    /// Its size (what a move transfers).
    pub bytes: u64,
    /// Where it may go.
    pub mask: ClusterMask,
}

/// A move the policy asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The candidate's id.
    pub id: i64,
    /// Where to.
    pub target: NodeId,
    /// Why, for the move's record.
    pub why: String,
}

/// The policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// Its knobs.
    pub settings: Settings,
}

impl Policy {
    /// A policy with these knobs.
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }

    /// One decision of node `me`: at most one move. `since_last` is the
    /// time since this node last started a move (`None`: never).
    pub fn decide(
        &self,
        me: &NodeView,
        peers: &[NodeView],
        candidates: &[Candidate],
        cost: &CostModel,
        since_last: Option<Duration>,
        rng: &mut Rng,
    ) -> Option<Decision> {
        let s = &self.settings;
        if since_last.is_some_and(|t| t < s.min_interval) {
            return None;
        }
        let open: Vec<&NodeView> = peers
            .iter()
            .filter(|p| p.id != me.id && p.accepts && p.age <= s.max_staleness)
            .collect();
        let target = two_choices(&open, rng)?;
        let mut order: Vec<&Candidate> = candidates.iter().filter(|c| c.cpu >= s.min_cpu).collect();
        order.sort_by(|a, b| b.cpu.total_cmp(&a.cpu).then(a.bytes.cmp(&b.bytes)));
        // The load gap in busy reference CPUs (at least one).
        let gap = ((me.load - target.load) / f64::from(hpc::model::LOAD_UNIT)).max(1.0);
        order.into_iter().find_map(|c| {
            let expected = cost.estimate(c.bytes);
            if c.age.as_secs_f64() < s.age_factor * expected.as_secs_f64() / gap
                || !c.mask.allows(target.id)
                || target.free_mem < c.bytes
            {
                return None;
            }
            let after = target.load + load::units(c.cpu.min(1.0), target.speed, target.cpus);
            (after + s.margin <= me.load).then(|| Decision {
                id: c.id,
                target: target.id,
                why: format!(
                    "balance: load {:.0} here, node {} at {:.0} would reach {:.0}; it has run {:.1} s, a move costs about {} ms",
                    me.load,
                    target.id,
                    target.load,
                    after,
                    c.age.as_secs_f64(),
                    expected.as_millis()
                ),
            })
        })
    }
}

/// The lighter of two peers drawn at random (the only one, if one).
fn two_choices<'a>(open: &[&'a NodeView], rng: &mut Rng) -> Option<&'a NodeView> {
    let first = *open.get(rng.below(open.len()))?;
    if open.len() == 1 {
        return Some(first);
    }
    // A second, distinct draw.
    let mut j = rng.below(open.len() - 1);
    if open.get(j).is_some_and(|p| p.id == first.id) {
        j = open.len() - 1;
    }
    let second = *open.get(j)?;
    Some(if second.load < first.load {
        second
    } else {
        first
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpc::model::STANDARD_SPEED;

    fn node(id: NodeId, load: f64) -> NodeView {
        NodeView {
            id,
            load,
            speed: STANDARD_SPEED,
            cpus: 1,
            free_mem: 1 << 30,
            total_mem: 2 << 30,
            accepts: true,
            age: Duration::from_millis(500),
        }
    }

    fn busy(id: i64, age_s: u64) -> Candidate {
        Candidate {
            id,
            cpu: 1.0,
            age: Duration::from_secs(age_s),
            bytes: 8 << 20,
            mask: ClusterMask::default(),
        }
    }

    fn decide(me: &NodeView, peers: &[NodeView], c: &[Candidate]) -> Option<Decision> {
        Policy::default().decide(me, peers, c, &CostModel::default(), None, &mut Rng::new(1))
    }

    #[test]
    fn two_busy_processes_on_one_cpu_share_with_an_idle_node() {
        let d = decide(
            &node(1, 200.0),
            &[node(2, 0.0)],
            &[busy(10, 5), busy(11, 5)],
        )
        .unwrap();
        assert_eq!(d.target, 2);
        assert!(d.why.starts_with("balance:"), "{}", d.why);
    }

    #[test]
    fn one_process_per_cpu_stays() {
        assert_eq!(
            decide(&node(1, 100.0), &[node(2, 0.0)], &[busy(10, 5)]),
            None
        );
        // Nor does it bounce between two equally loaded nodes.
        assert_eq!(
            decide(&node(1, 200.0), &[node(2, 100.0)], &[busy(10, 5)]),
            None
        );
    }

    #[test]
    fn young_idle_masked_and_too_big_processes_stay() {
        let me = node(1, 300.0);
        let peers = [node(2, 0.0)];
        // Younger than its move would cost.
        assert_eq!(decide(&me, &peers, &[busy(10, 0)]), None);
        // Idle.
        let idle = Candidate {
            cpu: 0.0,
            ..busy(10, 5)
        };
        assert_eq!(decide(&me, &peers, &[idle]), None);
        // Its mask keeps it off node 2.
        let masked = Candidate {
            mask: ClusterMask {
                migfilter: true,
                mignodes: 0b1,
                migpolicy: 1,
            },
            ..busy(10, 5)
        };
        assert_eq!(decide(&me, &peers, &[masked]), None);
        // No room for it there.
        let big = Candidate {
            bytes: 2 << 30,
            ..busy(10, 5)
        };
        assert_eq!(decide(&me, &peers, &[big]), None);
    }

    #[test]
    fn closed_stale_and_recent_stop_it() {
        let me = node(1, 300.0);
        let c = [busy(10, 5)];
        let closed = NodeView {
            accepts: false,
            ..node(2, 0.0)
        };
        assert_eq!(decide(&me, &[closed], &c), None);
        let stale = NodeView {
            age: Duration::from_secs(60),
            ..node(2, 0.0)
        };
        assert_eq!(decide(&me, &[stale], &c), None);
        let p = Policy::default();
        let just_moved = Some(Duration::from_millis(100));
        let d = p.decide(
            &me,
            &[node(2, 0.0)],
            &c,
            &CostModel::default(),
            just_moved,
            &mut Rng::new(1),
        );
        assert_eq!(d, None);
    }

    #[test]
    fn the_lighter_of_two_random_peers_is_chosen() {
        // Among many peers, the choice is never the heavier of its two draws:
        // over many draws the heaviest node is never picked.
        let me = node(1, 400.0);
        let peers: Vec<NodeView> = (2..=9).map(|i| node(i, f64::from(i) * 10.0)).collect();
        let p = Policy::default();
        let mut rng = Rng::new(3);
        let mut picked = std::collections::HashMap::new();
        for _ in 0..2000 {
            let d = p
                .decide(
                    &me,
                    &peers,
                    &[busy(10, 5)],
                    &CostModel::default(),
                    None,
                    &mut rng,
                )
                .unwrap();
            *picked.entry(d.target).or_insert(0) += 1;
        }
        assert!(!picked.contains_key(&9), "{picked:?}");
        assert!(picked[&2] > picked[&8], "{picked:?}");
        // And spread: not every decision lands on the lightest.
        assert!(picked.len() >= 5, "{picked:?}");
    }

    #[test]
    fn the_busiest_movable_process_goes_first() {
        let light = Candidate {
            cpu: 0.3,
            ..busy(10, 5)
        };
        let d = decide(&node(1, 300.0), &[node(2, 0.0)], &[light, busy(11, 5)]).unwrap();
        assert_eq!(d.id, 11);
    }
}
