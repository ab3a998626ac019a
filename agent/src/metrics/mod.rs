//! The node's openMosix figures for Prometheus (`--metrics ADDR`): counters
//! kept as migrations and balancer decisions happen ([`Metrics`]), the text
//! exposition format ([`exposition`]) and a small read-only HTTP server
//! ([`http`]).

pub mod exposition;
pub mod http;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the freeze-time histogram's buckets.
pub const FREEZE_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Why this node moved a process, as the metrics label it.
pub const CAUSES: [&str; 5] = ["asked", "expel", "bring", "balance", "memory"];

/// What the balancer decided, as the metrics label it.
pub const DECISIONS: [&str; 3] = ["move", "place", "usher"];

/// Counters of this node's migrations and balancer decisions since the
/// agent started.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Moves this node carried out, by [`CAUSES`] index: succeeded, failed.
    out: [[AtomicU64; 2]; 5],
    /// Bytes of the moves that succeeded, images and memory.
    out_bytes: AtomicU64,
    /// Freeze times of the moves that succeeded: per bucket (not
    /// cumulative), then the sum in microseconds.
    freeze: [AtomicU64; FREEZE_BUCKETS.len() + 1],
    freeze_sum_us: AtomicU64,
    /// Arrivals: landed, failed.
    arrivals: [AtomicU64; 2],
    /// Balancer decisions by [`DECISIONS`] index.
    decisions: [AtomicU64; 3],
}

/// One arrival under way: counted as landed by [`Arrival::landed`], as
/// failed if dropped before.
#[derive(Debug)]
pub struct Arrival {
    metrics: Arc<Metrics>,
    landed: bool,
}

impl Arrival {
    /// The process runs here now.
    pub fn landed(mut self) {
        self.landed = true;
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        let i = usize::from(!self.landed);
        if let Some(c) = self.metrics.arrivals.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn bump(c: Option<&AtomicU64>, by: u64) {
    if let Some(c) = c {
        c.fetch_add(by, Ordering::Relaxed);
    }
}

impl Metrics {
    /// A move carried out by this node ended: `cause` one of [`CAUSES`],
    /// with its freeze (ms) and bytes when it succeeded.
    pub fn moved(&self, cause: &str, outcome: Option<(u64, u64)>) {
        let Some(c) = CAUSES.iter().position(|x| *x == cause) else {
            return;
        };
        let row = self.out.get(c);
        bump(row.and_then(|r| r.get(usize::from(outcome.is_none()))), 1);
        if let Some((freeze_ms, bytes)) = outcome {
            self.out_bytes.fetch_add(bytes, Ordering::Relaxed);
            let secs = freeze_ms as f64 / 1000.0;
            let b = FREEZE_BUCKETS
                .iter()
                .position(|le| secs <= *le)
                .unwrap_or(FREEZE_BUCKETS.len());
            bump(self.freeze.get(b), 1);
            self.freeze_sum_us
                .fetch_add(freeze_ms.saturating_mul(1000), Ordering::Relaxed);
        }
    }

    /// An arrival begins.
    pub fn arrival(self: &Arc<Self>) -> Arrival {
        Arrival {
            metrics: self.clone(),
            landed: false,
        }
    }

    /// The balancer decided `decision`, one of [`DECISIONS`].
    pub fn decided(&self, decision: &str) {
        let i = DECISIONS.iter().position(|d| *d == decision);
        bump(i.and_then(|i| self.decisions.get(i)), 1);
    }

    fn read(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_arrivals_and_decisions_are_counted_where_they_belong() {
        let m = Arc::new(Metrics::default());
        m.moved("balance", Some((80, 1000)));
        m.moved("balance", None);
        m.moved("asked", Some((3000, 24)));
        m.moved("nonsense", Some((1, 1)));
        assert_eq!(Metrics::read(&m.out[3][0]), 1);
        assert_eq!(Metrics::read(&m.out[3][1]), 1);
        assert_eq!(Metrics::read(&m.out[0][0]), 1);
        assert_eq!(Metrics::read(&m.out_bytes), 1024);
        // 80 ms falls in the 0.1 s bucket, 3 s in the 5 s one.
        assert_eq!(Metrics::read(&m.freeze[3]), 1);
        assert_eq!(Metrics::read(&m.freeze[8]), 1);
        assert_eq!(Metrics::read(&m.freeze_sum_us), 3_080_000);
        m.arrival().landed();
        drop(m.arrival());
        drop(m.arrival());
        assert_eq!(
            (Metrics::read(&m.arrivals[0]), Metrics::read(&m.arrivals[1])),
            (1, 2)
        );
        m.decided("place");
        m.decided("place");
        assert_eq!(Metrics::read(&m.decisions[1]), 2);
    }
}
