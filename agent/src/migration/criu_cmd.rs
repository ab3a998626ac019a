//! Running CRIU: checkpoint a job's tree leaving it frozen, restore a tree
//! leaving it stopped, and the signals that resume or end a frozen tree. CRIU's
//! own error lines become the error text.

use std::path::Path;
use std::time::Instant;

/// Runs `criu ACTION ARGS -o LOG -D DIR` with no terminal and returns the
/// time taken (ms); on failure the error is `CRIU could not WHAT: <its log's
/// error lines>`.
async fn run<I>(criu: &Path, args: I, log: &str, dir: &Path, what: &str) -> Result<u64, String>
where
    I: IntoIterator,
    I::Item: AsRef<std::ffi::OsStr>,
{
    let t = Instant::now();
    let status = crate::helpers::root_command_async(criu)
        .args(args)
        .args(["-o", log, "-D"])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| format!("cannot run {}: {e}", criu.display()))?;
    if !status.success() {
        return Err(format!(
            "CRIU could not {what}: {}",
            log_errors(&dir.join(log))
        ));
    }
    Ok(t.elapsed().as_millis() as u64)
}

/// Pre-copy: writes the memory of the tree rooted at `root` into `dir` while
/// it keeps running, and starts tracking which pages it changes afterwards.
pub async fn pre_dump(criu: &Path, root: i32, dir: &Path) -> Result<u64, String> {
    let root = root.to_string();
    let args = ["pre-dump", "--track-mem", "-t", &root];
    run(criu, args, "pre-dump.log", dir, "pre-copy it").await
}

/// Checkpoints the tree rooted at `root` into `dir`, leaving it stopped. With
/// `parent`, only the pages changed since the pre-dump in `dir/../pre` are
/// written. Returns the time taken (ms). On failure CRIU resumes the tree itself.
pub async fn dump(criu: &Path, root: i32, dir: &Path, parent: bool) -> Result<u64, String> {
    let root = root.to_string();
    let mut args = vec!["dump", "--leave-stopped", "--file-locks", "-t", &root];
    if parent {
        args.extend(["--track-mem", "--prev-images-dir", "../pre"]);
    }
    run(criu, args, "dump.log", dir, "checkpoint it").await
}

/// Restores the images in `dir`, leaving the tree stopped and detached (it is
/// adopted by the agent, the subreaper). Returns the tree's root PID and the
/// time taken (ms).
pub async fn restore(criu: &Path, dir: &Path) -> Result<(i32, u64), String> {
    let pidfile = dir.join("restored.pid");
    let mut args: Vec<&std::ffi::OsStr> = [
        "restore",
        "--restore-detached",
        "--leave-stopped",
        "--file-locks",
        "--pidfile",
    ]
    .iter()
    .map(|a| a.as_ref())
    .collect();
    args.push(pidfile.as_os_str());
    let ms = run(criu, args, "restore.log", dir, "restore it").await?;
    let pid = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .ok_or_else(|| "CRIU restored the job but wrote no PID file".to_string())?;
    Ok((pid, ms))
}

/// The error lines of a CRIU log, without source locations and without the
/// harmless RLIMIT_NOFILE complaint; the last three are kept.
pub fn log_errors(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let errors: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("Error") && !l.contains("RLIMIT_NOFILE"))
        .map(|l| match l.split_once("): ") {
            Some((_, msg)) => msg.trim().to_string(),
            None => l.trim().to_string(),
        })
        .collect();
    if errors.is_empty() {
        return "CRIU failed without an error line in its log".into();
    }
    let skip = errors.len().saturating_sub(3);
    errors.into_iter().skip(skip).collect::<Vec<_>>().join("; ")
}

/// Every process of the tree rooted at `root` (root first).
pub fn tree(root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while let Some(&p) = out.get(i) {
        out.extend(crate::jobs::children(p));
        i += 1;
    }
    out
}

/// Sends SIGCONT to every process of a frozen tree.
pub fn resume(pids: &[i32]) {
    for &p in pids {
        if p > 0 {
            // SAFETY: kill has no memory-safety preconditions; p > 0.
            unsafe { libc::kill(p, libc::SIGCONT) };
        }
    }
}

/// Ends a job: SIGKILL to its PID namespace's init ends every process in it.
pub fn kill_job(root: i32) {
    if root > 0 {
        // SAFETY: kill has no memory-safety preconditions; root > 0.
        unsafe { libc::kill(root, libc::SIGKILL) };
    }
}
