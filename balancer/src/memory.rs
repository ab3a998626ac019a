//! Memory ushering, as MOSIX did it: a node whose free memory falls under
//! [`Settings::mem_low`](crate::Settings::mem_low) of its memory moves a
//! process out to a node with room, before the kernel's OOM killer picks a
//! victim. Load does not matter here, nor the age gate: the largest process
//! that fits somewhere goes (it frees the most), to the node with the most
//! free memory among those that would keep
//! [`Settings::mem_keep`](crate::Settings::mem_keep) of theirs free with it
//! (more than `mem_low`, so the target is not pushed into ushering it back).

use crate::{Candidate, Decision, NodeView, Policy};

impl Policy {
    /// Whether `me` has less than [`Settings::mem_low`](crate::Settings::mem_low)
    /// of its memory free.
    pub fn short_of_memory(&self, me: &NodeView) -> bool {
        me.total_mem > 0 && (me.free_mem as f64) < self.settings.mem_low * me.total_mem as f64
    }

    /// One ushering decision of node `me`, or `None` when it has memory
    /// enough or nothing fits anywhere. `since_last` as for
    /// [`Policy::decide`].
    pub fn usher(
        &self,
        me: &NodeView,
        peers: &[NodeView],
        candidates: &[Candidate],
        since_last: Option<std::time::Duration>,
    ) -> Option<Decision> {
        let s = &self.settings;
        if since_last.is_some_and(|t| t < s.min_interval) || !self.short_of_memory(me) {
            return None;
        }
        let open: Vec<&NodeView> = peers
            .iter()
            .filter(|p| p.id != me.id && p.accepts && p.age <= s.max_staleness)
            .collect();
        let mut order: Vec<&Candidate> = candidates.iter().filter(|c| c.bytes > 0).collect();
        order.sort_by_key(|c| std::cmp::Reverse(c.bytes));
        order.into_iter().find_map(|c| {
            let room = |t: &NodeView| {
                let keep = (t.total_mem as f64 * s.mem_keep) as u64;
                t.free_mem.saturating_sub(c.bytes) >= keep.max(1) && t.free_mem > c.bytes
            };
            let target = open
                .iter()
                .filter(|t| c.mask.allows(t.id) && room(t))
                .max_by_key(|t| t.free_mem)?;
            Some(Decision {
                id: c.id,
                target: target.id,
                why: format!(
                    "memory: {} MiB free of {} MiB here (under {:.0} %); it holds {} MiB, node {} has {} MiB free",
                    me.free_mem >> 20,
                    me.total_mem >> 20,
                    s.mem_low * 100.0,
                    c.bytes >> 20,
                    target.id,
                    target.free_mem >> 20
                ),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hpc::model::{ClusterMask, STANDARD_SPEED};

    use super::*;

    const MIB: u64 = 1 << 20;

    fn node(id: u32, free: u64, total: u64) -> NodeView {
        NodeView {
            id,
            load: 0.0,
            speed: STANDARD_SPEED,
            cpus: 1,
            free_mem: free * MIB,
            total_mem: total * MIB,
            accepts: true,
            age: Duration::from_millis(500),
        }
    }

    fn holding(id: i64, mib: u64) -> Candidate {
        Candidate {
            id,
            cpu: 0.0,
            age: Duration::ZERO,
            bytes: mib * MIB,
            mask: ClusterMask::default(),
        }
    }

    #[test]
    fn a_node_short_of_memory_moves_its_largest_process_that_fits_to_the_roomiest_node() {
        let p = Policy::default();
        let me = node(1, 40, 512);
        let peers = [node(2, 300, 512), node(3, 450, 512)];
        let d = p
            .usher(&me, &peers, &[holding(10, 20), holding(11, 200)], None)
            .unwrap();
        assert_eq!((d.id, d.target), (11, 3));
        assert!(
            d.why.starts_with("memory: 40 MiB free of 512 MiB"),
            "{}",
            d.why
        );
        // Too big for anyone: the next largest goes.
        let d = p
            .usher(&me, &peers, &[holding(10, 20), holding(11, 440)], None)
            .unwrap();
        assert_eq!((d.id, d.target), (10, 3));
    }

    #[test]
    fn enough_memory_no_room_a_mask_or_a_closed_node_keep_it_here() {
        let p = Policy::default();
        let c = [holding(10, 100)];
        // 60 MiB of 512 is above 10 %.
        assert_eq!(
            p.usher(&node(1, 60, 512), &[node(2, 500, 512)], &c, None),
            None
        );
        let me = node(1, 20, 512);
        // The target would keep under 20 % free.
        assert_eq!(p.usher(&me, &[node(2, 180, 512)], &c, None), None);
        let masked = Candidate {
            mask: ClusterMask {
                migfilter: true,
                mignodes: 0b1,
                migpolicy: 1,
            },
            ..holding(10, 100)
        };
        assert_eq!(p.usher(&me, &[node(2, 500, 512)], &[masked], None), None);
        let closed = NodeView {
            accepts: false,
            ..node(2, 500, 512)
        };
        assert_eq!(p.usher(&me, &[closed], &c, None), None);
        assert_eq!(
            p.usher(
                &me,
                &[node(2, 500, 512)],
                &c,
                Some(Duration::from_millis(10))
            ),
            None
        );
        assert!(p.usher(&me, &[node(2, 500, 512)], &c, None).is_some());
    }
}
