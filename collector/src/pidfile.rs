//! The PID file (`/run/openmosixcollector.pid`): held with an exclusive `flock`
//! for the daemon's life, so a second copy is refused and a file left by a
//! killed daemon is recognised as stale (the kernel drops the lock with it).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The default PID file.
pub const DEFAULT_PID_FILE: &str = "/run/openmosixcollector.pid";

/// PID file failures.
#[derive(Debug, thiserror::Error)]
pub enum PidError {
    /// Another collector holds it.
    #[error("openmosixcollector is already running (PID {0})")]
    Running(i32),
    /// File trouble.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// A held PID file; removed when dropped.
pub struct PidFile {
    path: PathBuf,
    _file: File,
}

fn open(path: &Path, create: bool) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn try_lock(file: &File, mode: libc::c_int) -> bool {
    // SAFETY: flock on a descriptor we own; no memory is passed.
    unsafe { libc::flock(file.as_raw_fd(), mode | libc::LOCK_NB) == 0 }
}

fn read_pid(file: &mut File) -> i32 {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    text.trim().parse().unwrap_or(0)
}

impl PidFile {
    /// Takes the PID file for this process, or says who holds it.
    pub fn acquire(path: &Path) -> Result<Self, PidError> {
        let err = |e| PidError::Io(path.display().to_string(), e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut file = open(path, true).map_err(err)?;
        if !try_lock(&file, libc::LOCK_EX) {
            return Err(PidError::Running(read_pid(&mut file)));
        }
        file.set_len(0).map_err(err)?;
        file.rewind().map_err(err)?;
        writeln!(file, "{}", std::process::id()).map_err(err)?;
        file.flush().map_err(err)?;
        Ok(Self {
            path: path.to_path_buf(),
            _file: file,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The PID of the collector holding `path`, if one does (None for a missing
/// or stale file).
pub fn running(path: &Path) -> Option<i32> {
    let mut file = open(path, false).ok()?;
    if try_lock(&file, libc::LOCK_SH) {
        return None;
    }
    Some(read_pid(&mut file)).filter(|p| *p > 0)
}
