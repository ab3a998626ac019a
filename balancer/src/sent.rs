//! Moves a node has made since the gossip it decides on was fresh: its view
//! of each target is raised by what it sent there (and its own load lowered
//! by what left), so that it does not send a second process onto a node
//! whose gossiped load does not show the first one yet.

use hpc::model::NodeId;

use crate::{NodeView, load};

/// Demand sent to each node since the last gossip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sent {
    to: Vec<(NodeId, f64)>,
}

impl Sent {
    /// Notes a process of `cpu` CPUs sent to `target`.
    pub fn note(&mut self, target: NodeId, cpu: f64) {
        match self.to.iter_mut().find(|(n, _)| *n == target) {
            Some((_, c)) => *c += cpu,
            None => self.to.push((target, cpu)),
        }
    }

    /// Fresh gossip arrived: it shows what was sent.
    pub fn clear(&mut self) {
        self.to.clear();
    }

    /// Raises the views of the nodes processes were sent to.
    pub fn adjust(&self, views: &mut [NodeView]) {
        for v in views.iter_mut() {
            if let Some((_, cpu)) = self.to.iter().find(|(n, _)| *n == v.id) {
                v.load += load::units(*cpu, v.speed, v.cpus);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_target_looks_as_loaded_as_what_was_sent_there() {
        let view = |id| NodeView {
            id,
            load: 0.0,
            speed: hpc::model::STANDARD_SPEED,
            cpus: 1,
            free_mem: 0,
            total_mem: 0,
            accepts: true,
            age: Duration::ZERO,
        };
        let mut sent = Sent::default();
        sent.note(2, 1.0);
        sent.note(2, 0.5);
        let mut views = vec![view(2), view(3)];
        sent.adjust(&mut views);
        assert_eq!((views[0].load, views[1].load), (150.0, 0.0));
        sent.clear();
        let mut views = vec![view(2)];
        sent.adjust(&mut views);
        assert_eq!(views[0].load, 0.0);
    }
}
