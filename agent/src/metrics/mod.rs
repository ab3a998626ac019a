//! The node's openMosix figures for Prometheus (`--metrics ADDR`): counters
//! kept as migrations and balancer decisions happen ([`Metrics`]), the text
//! exposition format ([`exposition`]) and a small read-only HTTP server
//! ([`http`]).

pub mod exposition;
pub mod http;

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the freeze-time histogram's buckets.
pub const FREEZE_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Why this node moved a process, as the metrics tell moves apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveCause {
    /// `proc.migrate`: a person, a tool, or the home forwarding a request.
    Asked,
    /// `expel`: a guest sent home.
    Expel,
    /// `bring`: a job brought home.
    Bring,
    /// The balancer.
    Balance,
    /// Memory ushering.
    Memory,
}

impl MoveCause {
    /// Every cause, in the exposition's order.
    pub const ALL: [Self; 5] = [
        Self::Asked,
        Self::Expel,
        Self::Bring,
        Self::Balance,
        Self::Memory,
    ];

    /// The `cause` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Asked => "asked",
            Self::Expel => "expel",
            Self::Bring => "bring",
            Self::Balance => "balance",
            Self::Memory => "memory",
        }
    }
}

/// What the balancer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Move a busy process to a lighter node.
    Move,
    /// Place a new process elsewhere at once.
    Place,
    /// Usher a process out of a node short of memory.
    Usher,
}

impl Decision {
    /// Every decision, in the exposition's order.
    pub const ALL: [Self; 3] = [Self::Move, Self::Place, Self::Usher];

    /// The `decision` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Move => "move",
            Self::Place => "place",
            Self::Usher => "usher",
        }
    }
}

/// Counters of this node's migrations and balancer decisions since the
/// agent started (arrivals are counted by [`crate::arrivals`]).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Moves this node carried out, by [`MoveCause`]: succeeded, failed.
    out: [[AtomicU64; 2]; 5],
    /// Bytes of the moves that succeeded, images and memory.
    out_bytes: AtomicU64,
    /// Freeze times of the moves that succeeded: per bucket (not
    /// cumulative), then the sum in microseconds.
    freeze: [AtomicU64; FREEZE_BUCKETS.len() + 1],
    freeze_sum_us: AtomicU64,
    /// Balancer decisions by [`Decision`].
    decisions: [AtomicU64; 3],
}

fn bump(c: Option<&AtomicU64>) {
    if let Some(c) = c {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// A move carried out by this node ended, with its freeze (ms) and
    /// bytes when it succeeded.
    pub fn moved(&self, cause: MoveCause, outcome: Option<(u64, u64)>) {
        let row = self.out.get(cause as usize);
        bump(row.and_then(|r| r.get(usize::from(outcome.is_none()))));
        if let Some((freeze_ms, bytes)) = outcome {
            self.out_bytes.fetch_add(bytes, Ordering::Relaxed);
            let secs = freeze_ms as f64 / 1000.0;
            let b = FREEZE_BUCKETS
                .iter()
                .position(|le| secs <= *le)
                .unwrap_or(FREEZE_BUCKETS.len());
            bump(self.freeze.get(b));
            self.freeze_sum_us
                .fetch_add(freeze_ms.saturating_mul(1000), Ordering::Relaxed);
        }
    }

    /// The balancer decided `decision`.
    pub fn decided(&self, decision: Decision) {
        bump(self.decisions.get(decision as usize));
    }

    fn read(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_and_decisions_are_counted_where_they_belong() {
        let m = Metrics::default();
        m.moved(MoveCause::Balance, Some((80, 1000)));
        m.moved(MoveCause::Balance, None);
        m.moved(MoveCause::Asked, Some((3000, 24)));
        assert_eq!(Metrics::read(&m.out[3][0]), 1);
        assert_eq!(Metrics::read(&m.out[3][1]), 1);
        assert_eq!(Metrics::read(&m.out[0][0]), 1);
        assert_eq!(Metrics::read(&m.out_bytes), 1024);
        // 80 ms falls in the 0.1 s bucket, 3 s in the 5 s one.
        assert_eq!(Metrics::read(&m.freeze[3]), 1);
        assert_eq!(Metrics::read(&m.freeze[8]), 1);
        assert_eq!(Metrics::read(&m.freeze_sum_us), 3_080_000);
        m.decided(Decision::Place);
        m.decided(Decision::Place);
        assert_eq!(Metrics::read(&m.decisions[1]), 2);
        for (i, c) in MoveCause::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "ALL is in index order");
        }
        for (i, d) in Decision::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i, "ALL is in index order");
        }
    }
}
