//! Programs the agent runs as root (`unshare`, `openmosix-jobinit`, CRIU):
//! found at absolute paths in system directories, checked to be owned by root
//! and writable by nobody else, and run with a fixed minimal environment. A
//! caller's environment never reaches them; a job's own environment reaches
//! only the job, after it dropped to its user (see [`crate::jobs`]).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hpc::paths::SYSTEM_PATH;

/// Fails unless `path` is a regular file that only root can change: owned by
/// root, not writable by group or others, in a directory likewise (so nobody
/// else can swap it for another program).
pub fn check_trusted(path: &Path) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path", path.display()));
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    owned_by_root(path, &meta)?;
    if let Some(dir) = path.parent() {
        let d = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        owned_by_root(dir, &d)?;
    }
    Ok(())
}

fn owned_by_root(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    root_only(path, meta, "the agent runs it as root")
}

/// Fails unless `meta` (of `path`) belongs to root (or this process's user)
/// and neither group nor others may write it: for what decides what runs as
/// root, or who is root-equivalent. `why` ends the error.
pub fn root_only(path: &Path, meta: &std::fs::Metadata, why: &str) -> Result<(), String> {
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "{} belongs to uid {}, not root; {why}",
            path.display(),
            meta.uid()
        ));
    }
    // A sticky directory (like /tmp) still lets others replace their own
    // entries: no group or other write at all.
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by others (mode {:o}; fix it with chmod go-w); {why}",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// A system program by name (see [`hpc::paths::system_program`]), checked with [`check_trusted`].
pub fn locate(name: &str) -> Result<PathBuf, String> {
    let path = hpc::paths::system_program(name)
        .ok_or_else(|| format!("`{name}` not found in {SYSTEM_PATH}"))?;
    check_trusted(&path)?;
    Ok(path)
}

/// A close-on-exec pipe (read end, write end).
pub fn cloexec_pipe() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let [r, w] = fds;
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(r),
            std::os::fd::OwnedFd::from_raw_fd(w),
        )
    })
}

/// For a child between fork and exec (`pre_exec`): clears close-on-exec on
/// `fds`, descriptors the parent keeps open until the child has started and
/// passes by number on the command line. Only calls `fcntl`, which is
/// async-signal-safe.
pub fn keep_across_exec(fds: &[std::os::fd::RawFd]) -> std::io::Result<()> {
    for &fd in fds {
        // SAFETY: fcntl with F_SETFD only changes this process's descriptor flags.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A command for a program run as root: no inherited environment but
/// `PATH` = [`SYSTEM_PATH`], working directory `/`.
pub fn root_command(program: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    c.env_clear().env("PATH", SYSTEM_PATH).current_dir("/");
    c
}

/// [`root_command`] for tokio.
pub fn root_command_async(program: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(program);
    c.env_clear().env("PATH", SYSTEM_PATH).current_dir("/");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_programs_are_found_by_absolute_path() {
        let p = locate("unshare").unwrap();
        assert!(p.is_absolute() && p.ends_with("unshare"), "{}", p.display());
    }

    #[test]
    fn a_program_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let base = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/unit-tmp");
        std::fs::create_dir_all(base).unwrap();
        let dir = tempfile::tempdir_in(base).unwrap();
        let prog = dir.path().join("prog");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_trusted(&prog).unwrap_err();
        assert!(
            e.contains("writable by others") || e.contains("not root"),
            "{e}"
        );
        assert!(check_trusted(Path::new("relative/prog")).is_err());
    }
}
