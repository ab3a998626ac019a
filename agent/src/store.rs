//! The agent's persistent state: the openMosix admin state and per-process
//! settings (lock, decay, cluster mask), written atomically (temp file in the
//! same 0700 directory, fsync, rename, fsync of the directory) so a crash never
//! leaves a half-written file.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hpc::model::{AdminState, ClusterMask, DecayClass};
use serde::{Deserialize, Serialize};

/// File name of the state inside the state directory.
pub const STATE_FILE: &str = "agent-state.json";

/// Settings an admin (or `mosrun`) gave one process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcSettings {
    /// Lock override (`None` = the default for the process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<bool>,
    /// Decay class override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay: Option<DecayClass>,
    /// Cluster mask override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<ClusterMask>,
}

/// Identifies a process across PID reuse: its PID and its start time (ticks after boot, as seconds since epoch).
pub type ProcKey = (i32, u64);

/// Everything persisted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PersistedState {
    /// Whether the speed was calibrated on this machine already.
    #[serde(default)]
    pub calibrated: bool,
    /// `/proc/hpc/admin/*`.
    #[serde(default)]
    pub admin: AdminState,
    /// Per-process settings, keyed `"PID@START"`.
    #[serde(default)]
    pub processes: BTreeMap<String, ProcSettings>,
    /// Jobs this node is home of (wherever they run) or hosts, keyed `"HOME/HOME_PID"`.
    #[serde(default)]
    pub jobs: BTreeMap<String, crate::jobs::JobRecord>,
    /// The host key (OpenSSH public key line) each other node showed first:
    /// gossip alone can never replace it (`cluster.forget_host_key` does).
    #[serde(default)]
    pub node_host_keys: BTreeMap<hpc::model::NodeId, String>,
}

/// Errors loading or saving the state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing failed (full disk, permissions...).
    #[error("cannot {action} agent state {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The state and the file it lives in.
pub struct Store {
    path: PathBuf,
    state: Mutex<PersistedState>,
}

/// Formats a process key for the persisted map.
pub fn key_string(key: ProcKey) -> String {
    format!("{}@{}", key.0, key.1)
}

impl Store {
    /// Loads the state from `dir`, or starts from defaults when there is none.
    /// A file that cannot be parsed is kept aside (renamed `.corrupt`) and reported.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    tracing::error!(path = %path.display(), error = %e, aside = %aside.display(),
                        "agent state is unreadable; keeping it aside and starting from defaults");
                    std::fs::rename(&path, &aside).map_err(|source| StoreError::Io {
                        action: "move aside",
                        path: path.display().to_string(),
                        source,
                    })?;
                    PersistedState::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PersistedState::default(),
            Err(source) => {
                return Err(StoreError::Io {
                    action: "read",
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        Ok(Self {
            path,
            state: Mutex::new(state),
        })
    }

    /// A copy of the current state.
    pub fn get(&self) -> PersistedState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The settings of one process, if it has any (without copying the others).
    pub fn settings_of(&self, key: ProcKey) -> Option<ProcSettings> {
        let s = self.state.lock().ok()?;
        s.processes.get(&key_string(key)).cloned()
    }

    /// One job record (without copying the rest of the state).
    pub fn job(&self, key: &str) -> Option<crate::jobs::JobRecord> {
        self.state.lock().ok()?.jobs.get(key).cloned()
    }

    /// Every job record (without copying the rest of the state).
    pub fn jobs(&self) -> Vec<crate::jobs::JobRecord> {
        self.state
            .lock()
            .map(|s| s.jobs.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The pinned host keys of other nodes (without copying the rest).
    pub fn get_node_host_keys(&self) -> BTreeMap<hpc::model::NodeId, String> {
        self.state
            .lock()
            .map(|s| s.node_host_keys.clone())
            .unwrap_or_default()
    }

    /// The admin state.
    pub fn admin(&self) -> AdminState {
        self.state
            .lock()
            .map(|s| s.admin.clone())
            .unwrap_or_default()
    }

    /// Applies `change` and persists the result; on a write error the change is
    /// rolled back, so memory and disk never disagree.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut PersistedState) -> T,
    ) -> Result<T, StoreError> {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = guard.clone();
        let out = change(&mut guard);
        if *guard != before
            && let Err(e) = write_atomically(&self.path, &guard)
        {
            *guard = before;
            return Err(e);
        }
        Ok(out)
    }
}

fn write_atomically(path: &Path, state: &PersistedState) -> Result<(), StoreError> {
    let io = |action, source| StoreError::Io {
        action,
        path: path.display().to_string(),
        source,
    };
    let bytes =
        serde_json::to_vec_pretty(state).map_err(|e| io("encode", std::io::Error::other(e)))?;
    replace_private_file(path, &bytes, Durability::Synced).map_err(|e| io("write", e))
}

/// Whether [`replace_private_file`] waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file and its directory: survives a machine crash.
    Synced,
    /// Survives the process, not the machine (no fsync).
    ProcessOnly,
}

/// Replaces `path` with `bytes` atomically: a 0600 temporary file beside it,
/// created without following a symbolic link, written, then renamed over it.
/// A crash never leaves a half-written file.
pub fn replace_private_file(
    path: &Path,
    bytes: &[u8],
    durability: Durability,
) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let written = f.write_all(bytes).and_then(|_| match durability {
        Durability::Synced => f.sync_all(),
        Durability::ProcessOnly => Ok(()),
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    if durability == Durability::Synced
        && let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private scratch directory under the workspace's target dir (never /tmp).
    fn scratch() -> tempfile::TempDir {
        let base = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/unit-tmp");
        std::fs::create_dir_all(base).unwrap();
        tempfile::tempdir_in(base).unwrap()
    }

    #[test]
    fn persists_and_restores_and_survives_corruption() {
        let dir = scratch();
        let store = Store::open(dir.path()).unwrap();
        store
            .update(|s| {
                s.admin.block = true;
                s.admin.speed = 1234;
            })
            .unwrap();
        let again = Store::open(dir.path()).unwrap();
        assert!(again.admin().block);
        assert_eq!(again.admin().speed, 1234);
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let fresh = Store::open(dir.path()).unwrap();
        assert_eq!(fresh.admin(), AdminState::default());
        assert!(dir.path().join("agent-state.json.corrupt").exists());
    }

    #[test]
    fn failed_write_rolls_back() {
        let dir = scratch();
        let store = Store::open(&dir.path().join("missing-dir")).unwrap();
        let err = store.update(|s| s.admin.quiet = true).unwrap_err();
        assert!(
            err.to_string().contains("cannot write agent state"),
            "{err}"
        );
        assert!(!store.admin().quiet);
    }
}
