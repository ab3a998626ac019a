//! The move log: every migration this node carried out as the source, with a
//! sequence number, kept in `STATE_DIR/moves.log` so that the collector can
//! read every move from where it left off (`moves.since`), however fast the
//! moves come and even while it was down.
//!
//! The file is JSON lines: a header naming the log's epoch, then one
//! [`MoveRecord`] per line. Appends are synced (a move is rare and slow next
//! to a `fdatasync`). At [`KEEP`] × 2 records the file is rewritten with the
//! newest [`KEEP`]. A torn last line (the agent died mid-write) is dropped on
//! load; a file that cannot be read at all is set aside and a new epoch
//! begins, so a reader notices and reads the new log from its start.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hpc::protocol::{
    JobInfo, MOVES_PAGE_MAX, MigrationReport, MoveLogPage, MoveRecord, MovesSinceParams,
};
use serde::{Deserialize, Serialize};

/// Records kept after a rewrite.
pub const KEEP: usize = 10_000;

/// The file's first line.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    epoch: String,
}

/// What can go wrong with the move log.
#[derive(Debug, thiserror::Error)]
pub enum MoveLogError {
    /// The file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

struct Inner {
    epoch: String,
    records: VecDeque<MoveRecord>,
    last: u64,
    /// Lines in the file (header excluded).
    lines: usize,
}

/// This node's move log.
pub struct MoveLog {
    path: PathBuf,
    inner: Mutex<Inner>,
}

fn new_epoch() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl MoveLog {
    /// Opens the log at `path` (creating it, or a new epoch if it is unreadable).
    pub fn open(path: PathBuf) -> Result<Self, MoveLogError> {
        let loaded = match std::fs::File::open(&path) {
            Ok(f) => load(std::io::BufReader::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the move log; starting a new one");
                None
            }
        };
        let inner = match loaded {
            Some(inner) => inner,
            None => {
                if path.exists() {
                    let mut aside = path.as_os_str().to_owned();
                    aside.push(".unreadable");
                    let _ = std::fs::rename(&path, PathBuf::from(aside));
                }
                Inner {
                    epoch: new_epoch(),
                    records: VecDeque::new(),
                    last: 0,
                    lines: 0,
                }
            }
        };
        let log = Self {
            path,
            inner: Mutex::new(inner),
        };
        {
            let inner = log.lock();
            log.rewrite(&inner)?;
        }
        Ok(log)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn io(&self, source: std::io::Error) -> MoveLogError {
        MoveLogError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Records a committed migration of `job` (its record after the move).
    pub fn record(&self, job: &JobInfo, report: &MigrationReport) -> Result<u64, MoveLogError> {
        let mut inner = self.lock();
        let rec = MoveRecord {
            seq: inner.last + 1,
            report: report.clone(),
            cmdline: job.cmdline.clone(),
            user: job.user.clone(),
            start_time: job.start_time,
        };
        let mut line =
            serde_json::to_vec(&rec).map_err(|e| self.io(std::io::Error::other(e.to_string())))?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        f.write_all(&line)
            .and_then(|_| f.sync_data())
            .map_err(|e| self.io(e))?;
        inner.last = rec.seq;
        inner.lines += 1;
        inner.records.push_back(rec);
        while inner.records.len() > KEEP {
            inner.records.pop_front();
        }
        if inner.lines >= 2 * KEEP {
            self.rewrite(&inner)?;
            inner.lines = inner.records.len();
        }
        Ok(inner.last)
    }

    /// Writes the header and the kept records to a new file in place of the old.
    fn rewrite(&self, inner: &Inner) -> Result<(), MoveLogError> {
        let mut bytes = serde_json::to_vec(&Header {
            epoch: inner.epoch.clone(),
        })
        .map_err(|e| self.io(std::io::Error::other(e.to_string())))?;
        bytes.push(b'\n');
        for r in &inner.records {
            let line =
                serde_json::to_vec(r).map_err(|e| self.io(std::io::Error::other(e.to_string())))?;
            bytes.extend_from_slice(&line);
            bytes.push(b'\n');
        }
        crate::store::replace_private_file(&self.path, &bytes, crate::store::Durability::Synced)
            .map_err(|e| self.io(e))
    }

    /// The moves after `p.after` (all of the log when `p.epoch` is another log's).
    pub fn page(&self, p: &MovesSinceParams) -> MoveLogPage {
        let inner = self.lock();
        let after = match &p.epoch {
            Some(e) if *e == inner.epoch => p.after,
            _ => 0,
        };
        let limit = p.limit.unwrap_or(MOVES_PAGE_MAX).clamp(1, MOVES_PAGE_MAX) as usize;
        MoveLogPage {
            epoch: inner.epoch.clone(),
            moves: inner
                .records
                .iter()
                .filter(|r| r.seq > after)
                .take(limit)
                .cloned()
                .collect(),
            first: inner.records.front().map_or(inner.last + 1, |r| r.seq),
            last: inner.last,
        }
    }

    /// Where the log is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads a log file; None when its header is unreadable.
fn load(r: impl BufRead) -> Option<Inner> {
    let mut lines = r.lines();
    let header: Header = serde_json::from_str(&lines.next()?.ok()?).ok()?;
    let mut records = VecDeque::new();
    let mut last = 0;
    let mut count = 0;
    for line in lines {
        let Ok(line) = line else { break };
        match serde_json::from_str::<MoveRecord>(&line) {
            Ok(rec) if rec.seq > last => {
                last = rec.seq;
                count += 1;
                records.push_back(rec);
                if records.len() > KEEP {
                    records.pop_front();
                }
            }
            // A torn last line, or garbage: what follows cannot be trusted.
            _ => {
                tracing::warn!("the move log ends in an unreadable line; dropped");
                break;
            }
        }
    }
    Some(Inner {
        epoch: header.epoch,
        records,
        last,
        lines: count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> tempfile::TempDir {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-scratch");
        std::fs::create_dir_all(&base).unwrap();
        tempfile::tempdir_in(base).unwrap()
    }

    fn job(pid: i32) -> JobInfo {
        JobInfo {
            home: 1,
            home_pid: pid,
            cmdline: "sleep 100".into(),
            user: "root".into(),
            ..JobInfo::default()
        }
    }

    fn report(to: u32) -> MigrationReport {
        MigrationReport {
            home: 1,
            home_pid: 42,
            from: 1,
            to,
            ..MigrationReport::default()
        }
    }

    #[test]
    fn moves_are_read_from_where_the_reader_left_off_across_restarts() {
        let dir = scratch();
        let path = dir.path().join("moves.log");
        let log = MoveLog::open(path.clone()).unwrap();
        for to in 2..=4 {
            log.record(&job(42), &report(to)).unwrap();
        }
        let all = log.page(&MovesSinceParams::default());
        assert_eq!(all.moves.len(), 3);
        assert_eq!(all.last, 3);
        let epoch = all.epoch.clone();
        drop(log);
        // A torn line at the end (the agent died while writing) is dropped.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"seq\":4,\"rep").unwrap();
        drop(f);
        let log = MoveLog::open(path.clone()).unwrap();
        let page = log.page(&MovesSinceParams {
            epoch: Some(epoch.clone()),
            after: 1,
            limit: None,
        });
        assert_eq!(page.epoch, epoch);
        let seqs: Vec<u64> = page.moves.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [2, 3]);
        assert_eq!(page.moves[1].report.to, 4);
        assert_eq!(log.record(&job(42), &report(2)).unwrap(), 4);
        // Another log's reader gets everything, from the start.
        let other = log.page(&MovesSinceParams {
            epoch: Some("0".repeat(32)),
            after: 3,
            limit: Some(2),
        });
        assert_eq!(
            other.moves.iter().map(|m| m.seq).collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[test]
    fn an_unreadable_log_is_set_aside_and_a_new_epoch_begins() {
        let dir = scratch();
        let path = dir.path().join("moves.log");
        std::fs::write(&path, b"not json\n").unwrap();
        let log = MoveLog::open(path.clone()).unwrap();
        let page = log.page(&MovesSinceParams::default());
        assert!(page.moves.is_empty());
        assert_eq!(page.epoch.len(), 32);
        assert!(dir.path().join("moves.log.unreadable").exists());
    }
}
