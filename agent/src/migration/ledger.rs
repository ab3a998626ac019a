//! The migration ledger: who decided what about each migration, kept in small
//! files (`STATE_DIR/migrations/ID.in`, `ID.out`) so that an agent that dies
//! and restarts still knows, and a migration whose `commit` answer was lost
//! never ends with two running copies.
//!
//! The **target** decides: a restored copy waits stopped, `pending`; the first
//! of (the source's `commit`, an abort) wins, under one lock. `committed` is
//! written before the copy is resumed. A source that did not hear the answer
//! asks again over a new connection (`resolve`); asking aborts a copy still
//! pending, so the answer is final either way. An id the target never
//! committed is answered "not committed": its copy never ran.
//!
//! The **source** writes `ID.out` (the job and its frozen tree) before it sends
//! `commit`. Until the target's decision is known the tree stays frozen; the
//! record survives a restart of the source agent, which then asks again.
//!
//! The files are not synced to disk: they must survive the agent, not the
//! machine (a machine that crashes takes its copy of the process with it, and
//! the other side's answer is then right).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use hpc::protocol::JobInfo;
use serde::{Deserialize, Serialize};

/// How long decided migrations are remembered.
pub const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// A migration id: 32 lower-case hex digits, chosen by the source.
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Whether `id` has the form of a migration id (it names files).
pub fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The target's decision about one migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Decision {
    /// Restored and stopped, waiting for the commit.
    Pending {
        /// The restored tree's root.
        root_pid: i32,
        /// Its start time (to tell it from a later process with its PID).
        start_time: u64,
    },
    /// Post-copy: the copy here runs while its memory is still being pulled
    /// from the source's frozen copy; it ends if the pull fails.
    Pulling {
        /// The restored tree's root.
        root_pid: i32,
        /// Its start time.
        start_time: u64,
    },
    /// The copy here runs (post-copy: with all its memory); the source's
    /// copy must end.
    Committed,
    /// The copy here was ended (or never ran); the source's copy continues.
    Aborted,
}

/// What the source keeps while the target's decision is unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InDoubt {
    /// The migration.
    pub id: String,
    /// The target node.
    pub target: hpc::model::NodeId,
    /// The job as it would be recorded if it moved (`where` = the target).
    pub moved: JobInfo,
    /// The frozen tree at the source, root first.
    pub tree: Vec<i32>,
    /// The root's start time.
    pub root_start: u64,
}

/// Errors of the ledger's files.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A file could not be written.
    #[error("cannot record migration {id}: {source}")]
    Io {
        /// The migration.
        id: String,
        /// Why.
        source: std::io::Error,
    },
    /// The id is not one.
    #[error("`{0}` is not a migration id")]
    BadId(String),
}

/// The ledger of one agent.
pub struct Ledger {
    dir: PathBuf,
    decisions: Mutex<HashMap<String, Decision>>,
    /// The source's migrations in doubt: the `ID.out` files, read once at
    /// start and then kept beside them, so asking costs no disk reads.
    doubts: Mutex<HashMap<String, InDoubt>>,
}

impl Ledger {
    /// Opens the ledger in `dir` (a 0700 directory the caller made), loading
    /// the target decisions recorded there and forgetting old ones. Returns it
    /// with the copies left pending by a previous run: they never got their
    /// commit and must be ended.
    pub fn open(dir: PathBuf) -> (Self, Vec<(String, Decision)>) {
        let mut decisions = HashMap::new();
        let mut doubts = HashMap::new();
        let mut stale = Vec::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = e.path();
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > KEEP);
            let Some(id) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| valid_id(s))
                .map(str::to_string)
            else {
                continue;
            };
            if path.extension().is_some_and(|x| x == "in") {
                if old {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                let Some(d) = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Decision>(&b).ok())
                else {
                    continue;
                };
                if matches!(d, Decision::Pending { .. } | Decision::Pulling { .. }) {
                    stale.push((id.clone(), d));
                }
                decisions.insert(id, d);
            } else if path.extension().is_some_and(|x| x == "out")
                && let Some(d) = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<InDoubt>(&b).ok())
            {
                doubts.insert(id, d);
            }
        }
        (
            Self {
                dir,
                decisions: Mutex::new(decisions),
                doubts: Mutex::new(doubts),
            },
            stale,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Decision>> {
        lock(&self.decisions)
    }

    fn write(&self, id: &str, ext: &str, bytes: &[u8]) -> Result<(), LedgerError> {
        if !valid_id(id) {
            return Err(LedgerError::BadId(id.into()));
        }
        let path = self.dir.join(format!("{id}.{ext}"));
        crate::store::replace_private_file(&path, bytes, crate::store::Durability::ProcessOnly)
            .map_err(|source| LedgerError::Io {
                id: id.into(),
                source,
            })
    }

    fn record(&self, id: &str, d: Decision) -> Result<(), LedgerError> {
        let bytes = serde_json::to_vec(&d).map_err(|e| LedgerError::Io {
            id: id.into(),
            source: std::io::Error::other(e),
        })?;
        self.write(id, "in", &bytes)
    }

    /// Target: a copy was restored and waits stopped. Fails when the id was
    /// decided already (a source that gave up asked first): the copy must end.
    pub fn restored(&self, id: &str, root_pid: i32, start_time: u64) -> Result<(), LedgerError> {
        let mut d = self.lock();
        if d.contains_key(id) {
            return Err(LedgerError::Io {
                id: id.into(),
                source: std::io::Error::other("the migration was decided already"),
            });
        }
        let pending = Decision::Pending {
            root_pid,
            start_time,
        };
        self.record(id, pending)?;
        d.insert(id.into(), pending);
        Ok(())
    }

    /// Target: the commit arrived. True when the copy may run: it was still
    /// pending, and `committed` is now recorded.
    pub fn commit(&self, id: &str) -> bool {
        let mut d = self.lock();
        if !matches!(d.get(id), Some(Decision::Pending { .. })) {
            return false;
        }
        if let Err(e) = self.record(id, Decision::Committed) {
            tracing::error!(error = %e, "cannot record a commit; the copy will not run");
            return false;
        }
        d.insert(id.into(), Decision::Committed);
        true
    }

    /// Target, post-copy: the commit arrived. True when the copy may run
    /// (it was pending); it is `pulling` until [`Ledger::pulled`].
    pub fn commit_pulling(&self, id: &str) -> bool {
        let mut d = self.lock();
        let Some(Decision::Pending {
            root_pid,
            start_time,
        }) = d.get(id).copied()
        else {
            return false;
        };
        let pulling = Decision::Pulling {
            root_pid,
            start_time,
        };
        if let Err(e) = self.record(id, pulling) {
            tracing::error!(error = %e, "cannot record a commit; the copy will not run");
            return false;
        }
        d.insert(id.into(), pulling);
        true
    }

    /// Target, post-copy: every page arrived. True when the migration is
    /// now committed (it was still pulling: nobody ended the copy).
    pub fn pulled(&self, id: &str) -> bool {
        let mut d = self.lock();
        if !matches!(d.get(id), Some(Decision::Pulling { .. })) {
            return false;
        }
        if let Err(e) = self.record(id, Decision::Committed) {
            tracing::error!(error = %e, "cannot record a finished pull");
            return false;
        }
        d.insert(id.into(), Decision::Committed);
        true
    }

    /// Target: the migration is over without a commit (or, post-copy,
    /// without all its pages), or a source asks about it. A pending or
    /// pulling copy is aborted (the caller ends it: its root and start time
    /// are returned); the final decision is returned.
    pub fn settle(&self, id: &str) -> (Decision, Option<(i32, u64)>) {
        let mut d = self.lock();
        match d.get(id).copied() {
            Some(Decision::Committed) => (Decision::Committed, None),
            Some(
                Decision::Pending {
                    root_pid,
                    start_time,
                }
                | Decision::Pulling {
                    root_pid,
                    start_time,
                },
            ) => {
                if let Err(e) = self.record(id, Decision::Aborted) {
                    tracing::warn!(error = %e, "cannot record an abort");
                }
                d.insert(id.into(), Decision::Aborted);
                (Decision::Aborted, Some((root_pid, start_time)))
            }
            // Never restored here, or forgotten long ago: it never ran. (A
            // source asks only after `restored`, which is recorded before it
            // is sent, so no restore of this id can still be under way.)
            Some(Decision::Aborted) | None => (Decision::Aborted, None),
        }
    }

    /// Source: the commit is about to be sent; until [`Ledger::settled`], the
    /// tree stays frozen and the outcome is asked of the target.
    pub fn in_doubt(&self, rec: &InDoubt) -> Result<(), LedgerError> {
        let bytes = serde_json::to_vec(rec).map_err(|e| LedgerError::Io {
            id: rec.id.clone(),
            source: std::io::Error::other(e),
        })?;
        self.write(&rec.id, "out", &bytes)?;
        lock(&self.doubts).insert(rec.id.clone(), rec.clone());
        Ok(())
    }

    /// Source: the outcome is known and acted on.
    pub fn settled(&self, id: &str) {
        if valid_id(id) {
            let _ = std::fs::remove_file(self.dir.join(format!("{id}.out")));
        }
        lock(&self.doubts).remove(id);
    }

    /// Source: the migrations whose outcome is still unknown.
    pub fn unsettled(&self) -> Vec<InDoubt> {
        lock(&self.doubts).values().cloned().collect()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Locks `m`, also after a panic elsewhere left it poisoned (the maps stay valid).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let base = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/unit-tmp");
        std::fs::create_dir_all(base).unwrap();
        let dir = tempfile::tempdir_in(base).unwrap();
        let (l, stale) = Ledger::open(dir.path().to_path_buf());
        assert!(stale.is_empty());
        (dir, l)
    }

    #[test]
    fn the_first_of_commit_and_abort_wins() {
        let (_d, l) = ledger();
        let (a, b) = (new_id(), new_id());
        l.restored(&a, 100, 5).unwrap();
        assert!(l.commit(&a));
        assert_eq!(l.settle(&a), (Decision::Committed, None));
        l.restored(&b, 200, 6).unwrap();
        assert_eq!(l.settle(&b), (Decision::Aborted, Some((200, 6))));
        assert!(
            !l.commit(&b),
            "a late commit does not resume an aborted copy"
        );
        let c = new_id();
        assert_eq!(
            l.settle(&c).0,
            Decision::Aborted,
            "never restored: never ran"
        );
        assert!(
            !l.dir().join(format!("{c}.in")).exists(),
            "and nothing is kept of it"
        );
        assert!(l.restored("../../etc/passwd", 1, 1).is_err());
    }

    #[test]
    fn decisions_and_doubts_survive_a_restart() {
        let (dir, l) = ledger();
        let (a, b) = (new_id(), new_id());
        l.restored(&a, 100, 5).unwrap();
        assert!(l.commit(&a));
        l.restored(&b, 200, 6).unwrap();
        let doubt = InDoubt {
            id: new_id(),
            target: 2,
            moved: JobInfo::default(),
            tree: vec![10, 11],
            root_start: 9,
        };
        l.in_doubt(&doubt).unwrap();
        drop(l);
        let (again, stale) = Ledger::open(dir.path().to_path_buf());
        assert_eq!(again.settle(&a).0, Decision::Committed);
        assert_eq!(
            stale,
            vec![(
                b.clone(),
                Decision::Pending {
                    root_pid: 200,
                    start_time: 6
                }
            )]
        );
        assert_eq!(again.unsettled(), vec![doubt.clone()]);
        again.settled(&doubt.id);
        assert!(again.unsettled().is_empty());
    }

    #[test]
    fn a_post_copy_copy_is_pulling_until_its_last_page_and_can_still_be_aborted() {
        let (dir, l) = ledger();
        let (a, b, c) = (new_id(), new_id(), new_id());
        // Pulled to the end: committed.
        l.restored(&a, 100, 5).unwrap();
        assert!(l.commit_pulling(&a));
        assert!(!l.commit_pulling(&a), "one commit only");
        assert!(l.pulled(&a));
        assert_eq!(l.settle(&a), (Decision::Committed, None));
        // The pull broke (or the source asked first): aborted, the copy ends.
        l.restored(&b, 200, 6).unwrap();
        assert!(l.commit_pulling(&b));
        assert_eq!(l.settle(&b), (Decision::Aborted, Some((200, 6))));
        assert!(
            !l.pulled(&b),
            "a late last page does not commit an ended copy"
        );
        // Still pulling when the agent stops: ended by the next one.
        l.restored(&c, 300, 7).unwrap();
        assert!(l.commit_pulling(&c));
        drop(l);
        let (again, stale) = Ledger::open(dir.path().to_path_buf());
        assert_eq!(
            stale,
            vec![(
                c.clone(),
                Decision::Pulling {
                    root_pid: 300,
                    start_time: 7
                }
            )]
        );
        assert_eq!(again.settle(&c), (Decision::Aborted, Some((300, 7))));
        assert_eq!(again.settle(&a).0, Decision::Committed);
    }
}
