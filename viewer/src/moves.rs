//! What the app knows about migrations, by process identity (home node, PID
//! at home): the ones it asked for that are still under way, how the recent
//! ones it asked for ended, and the last move of each process as the nodes'
//! move logs tell it (whoever started it: `migrate`, the balancer, another
//! admin).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hpc::model::NodeId;
use hpc::protocol::{MigrationReport, MoveProgress};

/// A process's identity: its home node and its PID there.
pub type Identity = (NodeId, i32);

/// How long an ended migration's outcome is shown on its process.
pub const OUTCOME_SHOWN: Duration = Duration::from_secs(8);

/// How many processes' last moves are remembered.
const MAX_LAST_MOVES: usize = 20_000;

/// A migration the app asked for that has not answered yet.
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight {
    /// The process.
    pub identity: Identity,
    /// Where it was asked to go (`3`, `home`, `balance`).
    pub to: String,
    /// When it was asked.
    pub since: Instant,
    /// Its image size estimate in bytes (its resident memory when asked).
    pub bytes: u64,
    /// How far it is, as its source last said.
    pub progress: Option<MoveProgress>,
}

/// How a migration the app asked for ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Where it was asked to go.
    pub to: String,
    /// When the answer came.
    pub at: Instant,
    /// The agent's report, or why it did not move.
    pub result: Result<MigrationReport, String>,
}

/// Migrations in flight, recent outcomes and last moves.
#[derive(Debug, Default)]
pub struct Moves {
    /// Asked for and not answered, by (node that lists the process, PID there).
    in_flight: HashMap<(NodeId, i32), InFlight>,
    /// How the app's recent migrations ended, by identity.
    outcomes: HashMap<Identity, Outcome>,
    /// Each process's last move, by identity.
    last: HashMap<Identity, MigrationReport>,
    /// Bytes per millisecond of the moves seen so far (0: none yet).
    throughput: f64,
}

impl Moves {
    /// Records that the app asked `node` to move its process `pid`.
    pub fn begin(&mut self, node: NodeId, pid: i32, identity: Identity, to: &str, bytes: u64) {
        self.outcomes.remove(&identity);
        self.in_flight.insert(
            (node, pid),
            InFlight {
                identity,
                to: to.to_string(),
                since: Instant::now(),
                bytes,
                progress: None,
            },
        );
    }

    /// Records the answer to the migration of `pid` on `node`.
    pub fn end(&mut self, node: NodeId, pid: i32, result: Result<MigrationReport, String>) {
        self.expire();
        let Some(flight) = self.in_flight.remove(&(node, pid)) else {
            return;
        };
        if let Ok(r) = &result {
            self.record(r.clone());
        }
        self.outcomes.insert(
            flight.identity,
            Outcome {
                to: flight.to,
                at: Instant::now(),
                result,
            },
        );
    }

    /// Records where the migration of `pid` on `node` stands.
    pub fn progress(&mut self, node: NodeId, pid: i32, progress: MoveProgress) {
        if let Some(f) = self.in_flight.get_mut(&(node, pid)) {
            f.progress = Some(progress);
        }
    }

    /// Records a move from a node's log (or an answer).
    pub fn record(&mut self, report: MigrationReport) {
        if report.total_ms > 0 && report.bytes > 0 {
            let rate = report.bytes as f64 / report.total_ms as f64;
            self.throughput = if self.throughput == 0.0 {
                rate
            } else {
                self.throughput * 0.7 + rate * 0.3
            };
        }
        let id = (report.home, report.home_pid);
        let newer = self
            .last
            .get(&id)
            .is_none_or(|old| old.at_ms <= report.at_ms);
        if newer {
            if self.last.len() >= MAX_LAST_MOVES && !self.last.contains_key(&id) {
                // Forget the oldest half rather than grow without bound.
                let mut ats: Vec<u64> = self.last.values().map(|r| r.at_ms).collect();
                ats.sort_unstable();
                let cut = ats.get(ats.len() / 2).copied().unwrap_or(0);
                self.last.retain(|_, r| r.at_ms > cut);
            }
            self.last.insert(id, report);
        }
    }

    /// The migration under way for this process, if the app asked for one.
    pub fn in_flight(&self, identity: Identity) -> Option<&InFlight> {
        self.in_flight.values().find(|f| f.identity == identity)
    }

    /// Every migration under way.
    pub fn all_in_flight(&self) -> impl Iterator<Item = &InFlight> {
        self.in_flight.values()
    }

    /// How the app's last migration of this process ended, while recent.
    pub fn outcome(&self, identity: Identity) -> Option<&Outcome> {
        self.outcomes
            .get(&identity)
            .filter(|o| o.at.elapsed() < OUTCOME_SHOWN)
    }

    /// Every recent outcome still shown, by identity.
    pub fn outcomes(&self) -> impl Iterator<Item = (&Identity, &Outcome)> {
        self.outcomes
            .iter()
            .filter(|(_, o)| o.at.elapsed() < OUTCOME_SHOWN)
    }

    /// The process's last move, as far as known.
    pub fn last_move(&self, identity: Identity) -> Option<&MigrationReport> {
        self.last.get(&identity)
    }

    /// Drops outcomes no longer shown.
    pub fn expire(&mut self) {
        self.outcomes.retain(|_, o| o.at.elapsed() < OUTCOME_SHOWN);
    }

    /// An estimate of how far a migration is (0..1), from its image size and
    /// the speed of the moves seen so far; None when there is nothing to go
    /// by. Never reaches 1 before the answer.
    pub fn estimate(&self, flight: &InFlight) -> Option<f32> {
        // The memory gone so far, when the source says.
        if let Some(share) = flight
            .progress
            .filter(|p| p.moved_bytes > 0)
            .and_then(|p| p.share())
        {
            return Some(share.min(0.95) as f32);
        }
        if self.throughput <= 0.0 || flight.bytes == 0 {
            return None;
        }
        let expected_ms = flight.bytes as f64 / self.throughput;
        let elapsed_ms = flight.since.elapsed().as_secs_f64() * 1000.0;
        Some((elapsed_ms / expected_ms.max(1.0)).min(0.95) as f32)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn report(home_pid: i32, at_ms: u64) -> MigrationReport {
        MigrationReport {
            home: 1,
            home_pid,
            from: 1,
            to: 2,
            pid: 77,
            bytes: 1_000_000,
            total_ms: 100,
            freeze_ms: 40,
            at_ms,
            ..MigrationReport::default()
        }
    }

    #[test]
    fn an_answer_ends_the_flight_and_is_remembered_by_identity() {
        let mut m = Moves::default();
        m.begin(1, 500, (1, 500), "2", 2_000_000);
        assert_eq!(m.in_flight((1, 500)).map(|f| f.to.as_str()), Some("2"));
        assert_eq!(m.estimate(m.in_flight((1, 500)).unwrap()), None);
        m.end(1, 500, Ok(report(500, 10)));
        assert!(m.in_flight((1, 500)).is_none());
        assert!(m.outcome((1, 500)).is_some_and(|o| o.result.is_ok()));
        assert_eq!(m.last_move((1, 500)).map(|r| r.freeze_ms), Some(40));
        // Now the speed is known: 10 kB/ms, so 2 MB take about 200 ms.
        m.begin(2, 77, (1, 500), "home", 2_000_000);
        let f = m.in_flight((1, 500)).unwrap().clone();
        assert!(m.estimate(&f).is_some_and(|e| (0.0..0.95).contains(&e)));
    }

    #[test]
    fn a_refusal_is_an_outcome_and_leaves_the_last_move() {
        let mut m = Moves::default();
        m.record(report(600, 10));
        m.begin(2, 77, (1, 600), "3", 0);
        m.end(2, 77, Err("locked".into()));
        assert_eq!(
            m.outcome((1, 600)).map(|o| o.result.clone()),
            Some(Err("locked".into()))
        );
        assert_eq!(m.last_move((1, 600)).map(|r| r.at_ms), Some(10));
        // An older log entry does not replace a newer move.
        m.record(report(600, 5));
        assert_eq!(m.last_move((1, 600)).map(|r| r.at_ms), Some(10));
        // An answer nobody asked for is ignored.
        m.end(9, 9, Err("x".into()));
        assert!(m.outcome((9, 9)).is_none());
    }
}
