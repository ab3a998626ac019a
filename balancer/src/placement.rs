//! Where a new process starts: a program just started, or a worker just
//! forked. Moving it now costs little (a program's image is still small)
//! or at least no more than later, and its whole life is ahead, so the node
//! asks a few peers drawn at random for their load **now** (gossip is up to
//! a second old, and every node placing on the same old figures would pile
//! onto one) and starts it where it would run fastest, if the time that
//! saves a process of typical length is more than the move costs.
//!
//! "Fastest" is the CPU share it would get, in reference CPUs: a node of
//! speed factor `f` with `c` CPUs and `k` processes (it included) gives each
//! `min(f, f·c/k)`.

use hpc::model::{LOAD_UNIT, NodeId, STANDARD_SPEED};

use crate::{CostModel, NodeView, Policy, Rng, load};

impl Policy {
    /// The peers a placement asks for their load now: up to
    /// [`Settings::probes`](crate::Settings::probes) distinct ones drawn at
    /// random among those that take guests, seen in the gossip lately.
    pub fn probe_set(&self, me: &NodeView, peers: &[NodeView], rng: &mut Rng) -> Vec<NodeId> {
        let s = &self.settings;
        let mut open: Vec<NodeId> = peers
            .iter()
            .filter(|p| p.id != me.id && p.accepts && p.age <= s.max_staleness)
            .map(|p| p.id)
            .collect();
        let mut out = Vec::with_capacity(s.probes.min(open.len()));
        while out.len() < s.probes && !open.is_empty() {
            out.push(open.swap_remove(rng.below(open.len())));
        }
        out
    }

    /// Where a new process of node `me` should start, given the `probed`
    /// peers as they answered (loads without it; `me.load` without it too),
    /// its size and what moves cost this node: the peer with room for it
    /// where it would run fastest, if a process of
    /// [`Settings::newborn_work`](crate::Settings::newborn_work) would finish
    /// sooner there by more than the move costs. `None`: here.
    pub fn place(
        &self,
        me: &NodeView,
        probed: &[NodeView],
        bytes: u64,
        cost: &CostModel,
    ) -> Option<Placement> {
        let here = share_with_one(me);
        let best = probed
            .iter()
            .filter(|p| p.id != me.id && p.accepts && p.free_mem >= bytes)
            .max_by(|a, b| share_with_one(a).total_cmp(&share_with_one(b)))?;
        let there = share_with_one(best);
        let work = self.settings.newborn_work;
        let saved = work / here - work / there;
        let cost = cost.estimate(bytes);
        (here > 0.0 && there > 0.0 && saved > cost.as_secs_f64()).then(|| Placement {
            target: best.id,
            why: format!(
                "placement: it would get {here:.2} of a reference CPU here (load {:.0}), {there:.2} on node {} (load {:.0}); about {:.0} ms saved for a move of about {} ms",
                me.load,
                best.id,
                best.load,
                saved * 1000.0,
                cost.as_millis()
            ),
        })
    }
}

/// Where a new process goes, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The node.
    pub target: NodeId,
    /// Why, for the move's record.
    pub why: String,
}

/// The CPU share (reference CPUs) one more process would get on `v`.
fn share_with_one(v: &NodeView) -> f64 {
    let factor = f64::from(v.speed) / f64::from(STANDARD_SPEED);
    let with_one = v.load + load::units(1.0, v.speed, v.cpus);
    if with_one <= 0.0 {
        return factor;
    }
    // `with_one` units are k·100/(f·c): f·c/k is 100 over them.
    factor.min(f64::from(LOAD_UNIT) / with_one)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn node(id: NodeId, load: f64, speed: u32, cpus: u32) -> NodeView {
        NodeView {
            id,
            load,
            speed,
            cpus,
            free_mem: 4 << 30,
            total_mem: 8 << 30,
            accepts: true,
            age: Duration::from_millis(500),
        }
    }

    const STD: u32 = STANDARD_SPEED;
    /// A new program's size: its move costs about 0.1 s.
    const SMALL: u64 = 4 << 20;

    fn place(me: NodeView, probed: &[NodeView], bytes: u64) -> Option<NodeId> {
        Policy::default()
            .place(&me, probed, bytes, &CostModel::default())
            .map(|d| d.target)
    }

    #[test]
    fn shares_follow_speed_cpus_and_load() {
        assert!((share_with_one(&node(1, 0.0, STD, 1)) - 1.0).abs() < 1e-9);
        assert!((share_with_one(&node(1, 100.0, STD, 1)) - 0.5).abs() < 1e-9);
        // One busy of two CPUs: the new one still gets a whole CPU.
        assert!((share_with_one(&node(1, 50.0, STD, 2)) - 1.0).abs() < 1e-9);
        assert!((share_with_one(&node(1, 0.0, 2 * STD, 1)) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_new_process_goes_where_it_gains_more_than_the_move_costs() {
        // Sharing one CPU here, alone there: it goes.
        assert_eq!(
            place(node(1, 100.0, STD, 1), &[node(2, 0.0, STD, 1)], SMALL),
            Some(2)
        );
        // A CPU of its own here: nothing to gain on an equal node.
        assert_eq!(
            place(node(1, 50.0, STD, 2), &[node(2, 0.0, STD, 1)], SMALL),
            None
        );
        // A much faster idle node is worth a move...
        assert_eq!(
            place(node(1, 0.0, STD, 1), &[node(2, 0.0, 2 * STD, 1)], SMALL),
            Some(2)
        );
        // ...unless the move costs more than it saves (1 GiB: seconds).
        assert_eq!(
            place(node(1, 0.0, STD, 1), &[node(2, 0.0, 2 * STD, 1)], 1 << 30),
            None
        );
        // The best of those asked, not the first.
        let probed = [
            node(2, 200.0, STD, 1),
            node(3, 0.0, STD, 1),
            node(4, 100.0, STD, 1),
        ];
        assert_eq!(place(node(1, 300.0, STD, 1), &probed, SMALL), Some(3));
        // Nodes that take no guests, or have no room for it, are not chosen.
        let closed = NodeView {
            accepts: false,
            ..node(2, 0.0, STD, 1)
        };
        let full = NodeView {
            free_mem: 1 << 20,
            ..node(3, 0.0, STD, 1)
        };
        assert_eq!(place(node(1, 300.0, STD, 1), &[closed, full], SMALL), None);
    }

    #[test]
    fn probes_are_distinct_open_fresh_peers() {
        let p = Policy::default();
        let me = node(1, 0.0, STD, 1);
        let mut peers: Vec<NodeView> = (2..=20).map(|i| node(i, 0.0, STD, 1)).collect();
        peers.push(NodeView {
            accepts: false,
            ..node(21, 0.0, STD, 1)
        });
        peers.push(NodeView {
            age: Duration::from_secs(60),
            ..node(22, 0.0, STD, 1)
        });
        peers.push(me.clone());
        let mut rng = Rng::new(4);
        for _ in 0..200 {
            let mut set = p.probe_set(&me, &peers, &mut rng);
            assert_eq!(set.len(), p.settings.probes);
            assert!(set.iter().all(|id| (2..=20).contains(id)), "{set:?}");
            set.sort_unstable();
            set.dedup();
            assert_eq!(set.len(), p.settings.probes);
        }
        assert_eq!(p.probe_set(&me, &peers[..2], &mut rng).len(), 2);
    }
}
