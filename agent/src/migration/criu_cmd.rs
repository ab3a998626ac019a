//! Running CRIU: checkpoint a job's tree leaving it frozen (at once, or
//! lazily for post-copy), the lazy-pages daemon, restore a tree leaving it
//! stopped, and the signals that resume or end a frozen tree. CRIU's own
//! error lines become the error text.

use std::ffi::OsString;
use std::os::fd::RawFd;
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
    run_with_fd(criu, args, log, dir, what, None).await
}

/// `program ARGS -o LOG -D DIR` as root, with no terminal.
fn command<I>(program: &Path, args: I, log: &str, dir: &Path) -> tokio::process::Command
where
    I: IntoIterator,
    I::Item: AsRef<std::ffi::OsStr>,
{
    let mut cmd = crate::helpers::root_command_async(program);
    cmd.args(args)
        .args(["-o", log, "-D"])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

/// [`run`], handing CRIU `pass` as descriptor [`PIDNS_FD`].
async fn run_with_fd<I>(
    criu: &Path,
    args: I,
    log: &str,
    dir: &Path,
    what: &str,
    pass: Option<&std::fs::File>,
) -> Result<u64, String>
where
    I: IntoIterator,
    I::Item: AsRef<std::ffi::OsStr>,
{
    let t = Instant::now();
    let mut cmd = command(criu, args, log, dir);
    if let Some(file) = pass {
        let fd = std::os::fd::AsRawFd::as_raw_fd(file);
        // SAFETY: dup2 and fcntl are async-signal-safe and only touch the
        // child's descriptor table; the descriptor they leave at PIDNS_FD has
        // close-on-exec cleared.
        unsafe {
            cmd.pre_exec(move || {
                let r = if fd == PIDNS_FD {
                    libc::fcntl(fd, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, PIDNS_FD)
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let status = cmd
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

/// The key under which a single process's PID namespace is marked external
/// in its images, and under which the restore is handed the one to enter.
const PIDNS_KEY: &str = "openmosix-pidns";

/// Where a single process lives, which decides how CRIU reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingleAt {
    /// In this node's own PID namespace.
    Node,
    /// Forked inside a job's PID namespace (with the node's mount namespace):
    /// CRIU dumps it from here and marks that PID namespace external, so that
    /// the restore puts it into a placeholder namespace under the same PID.
    Job {
        /// The job's PID namespace (its inode).
        pidns: u64,
    },
    /// In a placeholder namespace (and its own mount namespace, whose /proc
    /// is the namespace's): CRIU runs inside both, as a dump from outside
    /// refuses a PID namespace without its init.
    Placeholder {
        /// Its PID in there.
        inner: i32,
    },
}

/// What a checkpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dumped {
    /// A job's whole tree, from its root (its PID namespace's init).
    Tree {
        /// The root.
        root: i32,
        /// Only the pages changed since the pre-dump in `dir/../pre`.
        parent: bool,
    },
    /// A single process (with `--shell-job`: its session leader stays
    /// behind), living where `at` says.
    Single {
        /// The process.
        pid: i32,
        /// Where it lives.
        at: SingleAt,
    },
}

/// Where a lazy (post-copy) checkpoint serves its memory and says that the
/// other images are written: descriptors of the agent, kept by CRIU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LazyFds {
    /// The page server's connected socket (`--ps-socket`).
    pub ps_socket: RawFd,
    /// Where CRIU writes a byte once it serves pages (`--status-fd`).
    pub status: RawFd,
}

/// Where a checkpoint's memory goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemoryTo {
    /// Into image files beside the others.
    Files,
    /// Nowhere yet: the lazy-pages daemon pulls it (post-copy).
    Lazy(LazyFds),
    /// To a page server at the other end of this connected socket
    /// (`--page-server --ps-socket`), which writes the memory images there.
    PageServer(RawFd),
}

/// The program and arguments that checkpoint `what`, leaving it stopped,
/// its memory going where `memory` says.
fn dump_command(
    criu: &Path,
    what: Dumped,
    memory: MemoryTo,
) -> Result<(std::path::PathBuf, Vec<OsString>), String> {
    let dump = |target: i32, single: bool| {
        let t = target.to_string();
        let mut args = words(&["dump", "--leave-stopped", "--file-locks"]);
        if single {
            args.push("--shell-job".into());
        }
        args.extend(words(&["-t", &t]));
        match memory {
            MemoryTo::Files => {}
            MemoryTo::Lazy(l) => args.extend(words(&[
                "--lazy-pages",
                "--ps-socket",
                &l.ps_socket.to_string(),
                "--status-fd",
                &l.status.to_string(),
            ])),
            MemoryTo::PageServer(fd) => {
                args.extend(words(&["--page-server", "--ps-socket", &fd.to_string()]))
            }
        }
        args
    };
    match what {
        Dumped::Tree { root, parent } => {
            let mut args = dump(root, false);
            if parent {
                args.extend(words(&["--track-mem", "--prev-images-dir", "../pre"]));
            }
            Ok((criu.to_path_buf(), args))
        }
        Dumped::Single {
            pid,
            at: SingleAt::Node,
        } => Ok((criu.to_path_buf(), dump(pid, true))),
        Dumped::Single {
            pid,
            at: SingleAt::Job { pidns },
        } => {
            let mut args = dump(pid, true);
            args.push("--external".into());
            args.push(format!("pid[{pidns}]:{PIDNS_KEY}").into());
            Ok((criu.to_path_buf(), args))
        }
        Dumped::Single {
            pid,
            at: SingleAt::Placeholder { inner },
        } => {
            let nsenter = crate::helpers::locate("nsenter")?;
            let mut args = words(&["-t", &pid.to_string(), "--pid", "--mount", "--"]);
            args.push(criu.into());
            args.extend(dump(inner, true));
            Ok((nsenter, args))
        }
    }
}

/// Checkpoints `what` into `dir`, leaving it stopped. Returns the time
/// taken (ms). On failure CRIU resumes it itself.
pub async fn dump(criu: &Path, what: Dumped, dir: &Path) -> Result<u64, String> {
    let (program, args) = dump_command(criu, what, MemoryTo::Files)?;
    run(&program, args, "dump.log", dir, "checkpoint it").await
}

/// Starts a checkpoint of `what` into `dir` whose memory goes to the page
/// server at the other end of `ps_socket` as it is read (streaming
/// pre-copy); it leaves the tree stopped, or resumes it if it fails.
pub fn spawn_streamed_dump(
    criu: &Path,
    what: Dumped,
    dir: &Path,
    ps_socket: RawFd,
) -> Result<tokio::process::Child, String> {
    let (program, args) = dump_command(criu, what, MemoryTo::PageServer(ps_socket))?;
    spawn(&program, args, "dump.log", dir, vec![ps_socket])
}

/// Starts CRIU's page server on `ps_socket`: it writes the memory images
/// that a streamed checkpoint sends into `dir`, and ends when that
/// checkpoint says it is done.
pub fn spawn_page_server(
    criu: &Path,
    dir: &Path,
    ps_socket: RawFd,
) -> Result<tokio::process::Child, String> {
    let args = words(&["page-server", "--ps-socket", &ps_socket.to_string()]);
    spawn(criu, args, "page-server.log", dir, vec![ps_socket])
}

/// Starts a lazy checkpoint of `what` into `dir` (post-copy): CRIU writes
/// every image but memory, says so on `lazy.status`, then serves the memory
/// on `lazy.ps_socket` until the lazy-pages daemon has pulled it all, and
/// leaves the tree stopped.
pub fn spawn_lazy_dump(
    criu: &Path,
    what: Dumped,
    dir: &Path,
    lazy: LazyFds,
) -> Result<tokio::process::Child, String> {
    let (program, args) = dump_command(criu, what, MemoryTo::Lazy(lazy))?;
    spawn(
        &program,
        args,
        "dump.log",
        dir,
        vec![lazy.ps_socket, lazy.status],
    )
}

/// Starts CRIU's lazy-pages daemon on the images in `dir`: it serves the
/// restore's userfaultfds and pulls the pages from the page server at the
/// other end of `ps_socket`; `status` gets a byte once it listens for the
/// restore.
pub fn spawn_lazy_daemon(
    criu: &Path,
    dir: &Path,
    ps_socket: RawFd,
    status: RawFd,
) -> Result<tokio::process::Child, String> {
    let args = words(&[
        "lazy-pages",
        "--page-server",
        "--ps-socket",
        &ps_socket.to_string(),
        "--status-fd",
        &status.to_string(),
    ]);
    spawn(criu, args, "lazy-pages.log", dir, vec![ps_socket, status])
}

/// Starts `program ARGS -o LOG -D DIR` with no terminal, keeping the
/// descriptors `keep` open in it (their numbers are in `args`).
fn spawn(
    program: &Path,
    args: Vec<OsString>,
    log: &str,
    dir: &Path,
    keep: Vec<RawFd>,
) -> Result<tokio::process::Child, String> {
    let mut cmd = command(program, args, log, dir);
    // SAFETY: the closure only calls the async-signal-safe keep_across_exec.
    unsafe {
        cmd.pre_exec(move || crate::helpers::keep_across_exec(&keep));
    }
    cmd.spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))
}

fn words(w: &[&str]) -> Vec<OsString> {
    w.iter().map(OsString::from).collect()
}

/// The descriptor number the placeholder's PID namespace is handed to CRIU at.
const PIDNS_FD: i32 = 3;

/// Restores the single process imaged in `dir` into the placeholder
/// namespace whose init is `init`, stopped: CRIU enters the namespace, with
/// a mount namespace of its own showing the namespace's /proc, as the
/// leader of a new session (so the process's session is inside the
/// namespace, as the next checkpoint requires), and is handed the namespace
/// for images that name it external ([`SingleAt::Job`]). The process keeps
/// its PID inside the namespace; returns its PID here and the time taken (ms).
pub async fn restore_single(criu: &Path, dir: &Path, init: i32) -> Result<(i32, u64), String> {
    let nsenter = crate::helpers::locate("nsenter")?;
    let unshare = crate::helpers::locate("unshare")?;
    let setsid = crate::helpers::locate("setsid")?;
    let pidns = std::fs::File::open(format!("/proc/{init}/ns/pid"))
        .map_err(|e| format!("cannot open its namespace: {e}"))?;
    let mut args = words(&["-t", &init.to_string(), "--pid", "--"]);
    args.push(unshare.into());
    args.extend(words(&[
        "--mount",
        "--propagation",
        "slave",
        "--fork",
        "--mount-proc",
    ]));
    args.push(setsid.into());
    args.push(criu.into());
    args.extend(words(&[
        "restore",
        "--shell-job",
        "--restore-detached",
        "--leave-stopped",
        "--file-locks",
        "--inherit-fd",
        &format!("fd[{PIDNS_FD}]:{PIDNS_KEY}"),
        "--pidfile",
    ]));
    args.push(dir.join("restored.pid").into());
    let ms = run_with_fd(
        &nsenter,
        args,
        "restore.log",
        dir,
        "restore it",
        Some(&pidns),
    )
    .await?;
    // CRIU has left: the process is the init's child now.
    crate::jobs::first_child_within(init, std::time::Duration::from_millis(500))
        .await
        .map(|pid| (pid, ms))
        .ok_or_else(|| "CRIU restored it but it is not in its namespace".into())
}

/// Restores the images in `dir`, leaving the tree stopped and detached (it is
/// adopted by the agent, the subreaper); with `lazy`, its memory comes from
/// the lazy-pages daemon serving `dir`. Returns the tree's root PID and the
/// time taken (ms).
pub async fn restore(criu: &Path, dir: &Path, lazy: bool) -> Result<(i32, u64), String> {
    let pidfile = dir.join("restored.pid");
    let mut args = words(&[
        "restore",
        "--restore-detached",
        "--leave-stopped",
        "--file-locks",
    ]);
    if lazy {
        args.push("--lazy-pages".into());
    }
    args.push("--pidfile".into());
    args.push(pidfile.clone().into());
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
