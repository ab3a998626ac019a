//! Where each migration this node is sending stands (`proc.progress`):
//! preparing, frozen (since when), or running at the target while its
//! memory is pulled, with the bytes that have gone so far.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hpc::model::NodeId;
use hpc::protocol::{MigrationMode, MovePhase, MoveProgress};

use super::postcopy::Traffic;

/// One move's state.
#[derive(Debug)]
struct Entry {
    to: NodeId,
    mode: MigrationMode,
    expected: u64,
    frozen_at: Option<Instant>,
    /// The freeze's length, once the target's copy runs.
    frozen_for: Option<u64>,
    /// The memory that went (streamed or pulled).
    traffic: Arc<Traffic>,
}

/// The moves under way from this node, by the PID of the moving process here.
#[derive(Debug, Default)]
pub struct UnderWay(Mutex<HashMap<i32, Entry>>);

/// One move's entry, removed when dropped (however the move ends).
#[derive(Debug)]
pub struct Following<'a> {
    set: &'a UnderWay,
    pid: i32,
}

impl UnderWay {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Entry>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts following the move of `pid` to `to`, `expected` bytes of
    /// memory, which goes through `traffic`.
    pub fn follow(
        &self,
        pid: i32,
        to: NodeId,
        expected: u64,
        traffic: Arc<Traffic>,
    ) -> Following<'_> {
        self.lock().insert(
            pid,
            Entry {
                to,
                mode: MigrationMode::Auto,
                expected,
                frozen_at: None,
                frozen_for: None,
                traffic,
            },
        );
        Following { set: self, pid }
    }

    /// Where the move of `pid` stands, if one is under way.
    pub fn get(&self, pid: i32) -> Option<MoveProgress> {
        let map = self.lock();
        let e = map.get(&pid)?;
        let phase = match (e.frozen_at, e.frozen_for) {
            (None, _) => MovePhase::Preparing,
            (Some(_), None) => MovePhase::Frozen,
            (Some(_), Some(_)) => MovePhase::Pulling,
        };
        let frozen_ms = e
            .frozen_for
            .unwrap_or_else(|| e.frozen_at.map_or(0, |t| t.elapsed().as_millis() as u64));
        Some(MoveProgress {
            to: e.to,
            mode: e.mode,
            phase,
            frozen_ms,
            moved_bytes: e.traffic.sent.load(Ordering::Relaxed),
            expected_bytes: e.expected,
        })
    }
}

impl Following<'_> {
    fn with(&self, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self.set.lock().get_mut(&self.pid) {
            f(e);
        }
    }

    /// The nodes agreed on how the memory moves.
    pub fn agreed(&self, mode: MigrationMode) {
        self.with(|e| e.mode = mode);
    }

    /// The process is frozen from now (again, after a failed first attempt).
    pub fn frozen(&self) {
        self.with(|e| e.frozen_at = Some(Instant::now()));
    }

    /// The target's copy runs (post-copy: its memory still being pulled).
    pub fn running_there(&self) {
        self.with(|e| {
            e.frozen_for = e.frozen_at.map(|t| t.elapsed().as_millis() as u64);
        });
    }
}

impl Drop for Following<'_> {
    fn drop(&mut self) {
        self.set.lock().remove(&self.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_is_followed_from_preparing_to_pulling_and_forgotten_at_its_end() {
        let set = UnderWay::default();
        assert!(set.get(7).is_none());
        let traffic = Arc::new(Traffic::default());
        let f = set.follow(7, 2, 1 << 20, traffic.clone());
        assert_eq!(set.get(7).map(|p| p.phase), Some(MovePhase::Preparing));
        f.agreed(MigrationMode::Postcopy);
        f.frozen();
        let p = set.get(7).unwrap();
        assert_eq!(
            (p.phase, p.mode, p.to),
            (MovePhase::Frozen, MigrationMode::Postcopy, 2)
        );
        f.running_there();
        traffic.sent.fetch_add(4096, Ordering::Relaxed);
        let p = set.get(7).unwrap();
        assert_eq!(
            (p.phase, p.moved_bytes, p.expected_bytes),
            (MovePhase::Pulling, 4096, 1 << 20)
        );
        let frozen = p.frozen_ms;
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(set.get(7).unwrap().frozen_ms, frozen, "the freeze ended");
        drop(f);
        assert!(set.get(7).is_none());
    }
}
