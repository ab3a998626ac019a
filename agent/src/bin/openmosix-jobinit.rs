//! `openmosix-jobinit`: PID 1 of a migratable job's own PID namespace.
//!
//! The agent starts every job as `unshare --pid --fork openmosix-jobinit
//! [OPTIONS] -- CMD ARGS`, as root and with a fixed minimal environment. This
//! program then makes itself the session leader (CRIU refuses a job whose
//! session leader is outside its PID namespace), starts CMD as PID 2 with the
//! caller's identity, working directory and output files, forwards the signals
//! it receives to CMD (a namespace's init ignores signals it has no handler for,
//! so CMD must not be init), reaps orphans, and exits with CMD's status: its
//! exit code, or 128 + the signal that killed it.
//!
//! CMD's environment does not come from this program's environment: the agent
//! writes it (`NAME=value\0` pairs) into the start pipe (`--sync-fd`), and CMD
//! reads it there, drops to its user and only then looks the program up in that
//! environment's `PATH` and executes it. So nothing of the caller's environment
//! is ever seen by anything that runs as root.
//!
//! With `--placeholder` it is instead the PID 1 of the namespace a single
//! moved process is restored into (see [`placeholder`]).
//!
//! It uses only libc so that its checkpoint is small.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

/// What the agent asked for.
struct Options {
    uid: Option<libc::uid_t>,
    gid: Option<libc::gid_t>,
    /// Supplementary groups (empty: none).
    groups: Vec<libc::gid_t>,
    cwd: Option<CString>,
    stdout: Option<CString>,
    stderr: Option<CString>,
    /// A pipe the command waits on before it starts, until the agent has
    /// recorded the job; the agent then writes the command's environment into
    /// it and closes it.
    sync_fd: Option<libc::c_int>,
    argv: Vec<CString>,
}

fn cstring(s: OsString) -> Result<CString, String> {
    CString::new(s.as_bytes()).map_err(|_| "an argument contains a NUL byte".to_string())
}

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Options, String> {
    let mut o = Options {
        uid: None,
        gid: None,
        groups: Vec::new(),
        cwd: None,
        stdout: None,
        stderr: None,
        sync_fd: None,
        argv: Vec::new(),
    };
    while let Some(a) = args.next() {
        let flag = a.to_string_lossy().into_owned();
        if flag == "--" {
            break;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .to_string_lossy()
                .parse::<u32>()
                .map_err(|_| format!("{flag} takes a number"))
        };
        match flag.as_str() {
            "--uid" => o.uid = Some(number()?),
            "--gid" => o.gid = Some(number()?),
            "--groups" => {
                o.groups = value
                    .to_string_lossy()
                    .split(',')
                    .filter(|g| !g.is_empty())
                    .map(|g| {
                        g.parse::<libc::gid_t>()
                            .map_err(|_| "--groups takes numbers".to_string())
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--cwd" => o.cwd = Some(cstring(value)?),
            "--stdout" => o.stdout = Some(cstring(value)?),
            "--stderr" => o.stderr = Some(cstring(value)?),
            "--sync-fd" => o.sync_fd = Some(number()? as libc::c_int),
            other => return Err(format!("unknown option {other}")),
        }
    }
    for a in args {
        o.argv.push(cstring(a)?);
    }
    if o.argv.is_empty() {
        return Err("usage: openmosix-jobinit [--uid U] [--gid G] [--groups G,G...] [--cwd DIR] [--stdout FILE] [--stderr FILE] [--sync-fd FD] -- CMD [ARGS]".into());
    }
    Ok(o)
}

/// Signals forwarded to CMD (SIGCHLD is handled, SIGKILL/SIGSTOP cannot be caught).
const FORWARDED: [libc::c_int; 11] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGCONT,
    libc::SIGTSTP,
    libc::SIGWINCH,
    libc::SIGPWR,
];

fn fail(msg: &str) -> ! {
    eprintln!("openmosix-jobinit: {msg}");
    std::process::exit(127)
}

/// Most bytes of environment read from the start pipe (the agent sends at most 256 KiB).
const MAX_ENV: usize = 1 << 20;

/// Reads the start pipe to its end: the command's environment.
///
/// # Safety
/// `fd` must be a readable descriptor; called in the forked child only.
unsafe fn read_env(fd: libc::c_int) -> Vec<u8> {
    let mut env = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // SAFETY: `chunk` is a valid buffer of its length.
        let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        let Ok(n) = usize::try_from(n) else { break };
        if n == 0 || env.len() + n > MAX_ENV {
            break;
        }
        env.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    env
}

/// Splits `NAME=value\0` pairs into C strings.
fn env_strings(env: &[u8]) -> Vec<CString> {
    env.split(|&b| b == 0)
        .filter(|e| e.contains(&b'='))
        .filter_map(|e| CString::new(e).ok())
        .collect()
}

/// The `PATH` of an environment (the agent's default when it has none).
fn path_of(env: &[CString]) -> Vec<u8> {
    env.iter()
        .find_map(|e| e.as_bytes().strip_prefix(b"PATH=").map(<[u8]>::to_vec))
        .unwrap_or_else(|| b"/usr/local/bin:/usr/bin:/bin".to_vec())
}

/// In the child, between fork and exec: identity, directory, files, then exec.
/// On failure it writes to stderr and exits 127. jobinit is single-threaded,
/// so the allocations here cannot deadlock.
fn exec_child(o: &Options, mask: &libc::sigset_t) -> ! {
    let die = |what: &[u8]| -> ! {
        // SAFETY: write and _exit are async-signal-safe; the buffer is valid.
        unsafe {
            libc::write(2, what.as_ptr().cast(), what.len());
            libc::_exit(127)
        }
    };
    // SAFETY: plain system calls on valid, NUL-terminated buffers owned by `o`.
    unsafe {
        libc::sigprocmask(libc::SIG_SETMASK, mask, std::ptr::null_mut());
        let env = match o.sync_fd {
            Some(fd) => {
                let env = read_env(fd);
                libc::close(fd);
                env_strings(&env)
            }
            None => Vec::new(),
        };
        if let Some(g) = o.gid {
            let groups = o.groups.as_ptr();
            if libc::setgroups(o.groups.len(), groups) != 0 || libc::setgid(g) != 0 {
                die(b"openmosix-jobinit: cannot set the group\n");
            }
        }
        if let Some(u) = o.uid
            && libc::setuid(u) != 0
        {
            die(b"openmosix-jobinit: cannot set the user\n");
        }
        if let Some(d) = &o.cwd
            && libc::chdir(d.as_ptr()) != 0
        {
            die(b"openmosix-jobinit: cannot enter the working directory\n");
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        if null >= 0 {
            libc::dup2(null, 0);
        }
        for (fd, path) in [(1, &o.stdout), (2, &o.stderr)] {
            if let Some(p) = path {
                let f = libc::open(
                    p.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC,
                    0o644,
                );
                if f < 0 {
                    die(b"openmosix-jobinit: cannot open an output file\n");
                }
                libc::dup2(f, fd);
            }
        }
        // The command gets stdio only, whatever jobinit was started with.
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        let mut argv: Vec<*const libc::c_char> = o.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        let Some(program) = o.argv.first() else {
            die(b"openmosix-jobinit: no command\n")
        };
        // As execvp does, but with the job's own PATH, searched as the job's user.
        let candidates: Vec<CString> = if program.as_bytes().contains(&b'/') {
            vec![program.clone()]
        } else {
            path_of(&env)
                .split(|&b| b == b':')
                .map(|d| if d.is_empty() { &b"."[..] } else { d })
                .filter_map(|d| {
                    let mut full = d.to_vec();
                    full.push(b'/');
                    full.extend_from_slice(program.as_bytes());
                    CString::new(full).ok()
                })
                .collect()
        };
        for c in &candidates {
            libc::execve(c.as_ptr(), argv.as_ptr(), envp.as_ptr());
        }
        die(b"openmosix-jobinit: cannot execute the command\n")
    }
}

/// `--placeholder WAIT_FOR LAST_PID STATUS_FILE`: PID 1 of the namespace a
/// single moved process is restored into. It sets the namespace's last PID
/// (so the helpers that enter it to restore do not take the process's PID),
/// writes `ready` to STATUS_FILE, reaps whatever ends in the namespace, and
/// when the process `WAIT_FOR` (its PID in the namespace) ends, writes how
/// (`exit N` or `signal N`) to STATUS_FILE and exits with its code (128 + N
/// for a signal).
fn placeholder(mut args: impl Iterator<Item = OsString>) -> ! {
    let mut next = |what: &str| {
        args.next()
            .unwrap_or_else(|| fail(&format!("--placeholder needs {what}")))
    };
    let wait_for: libc::pid_t = next("the PID to wait for")
        .to_string_lossy()
        .parse()
        .unwrap_or_else(|_| fail("the PID to wait for is not a number"));
    let last_pid = next("the last PID").to_string_lossy().into_owned();
    let status_file = cstring(next("the status file")).unwrap_or_else(|e| fail(&e));
    // SAFETY: setsid, open, write, close, waitpid, usleep and exit on valid
    // arguments and buffers.
    unsafe {
        libc::setsid();
        let f = libc::open(
            c"/proc/sys/kernel/ns_last_pid".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        if f < 0 || libc::write(f, last_pid.as_ptr().cast(), last_pid.len()) < 0 {
            fail("cannot set the namespace's last PID");
        }
        libc::close(f);
        // Ready: the agent waits for this before it enters the namespace.
        let ready = b"ready\n";
        let f = libc::open(
            status_file.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        );
        if f < 0 || libc::write(f, ready.as_ptr().cast(), ready.len()) < 0 {
            fail("cannot write the status file");
        }
        libc::close(f);
        loop {
            let mut status = 0;
            let pid = libc::waitpid(-1, &mut status, 0);
            if pid < 0 {
                // No child yet: the restored process is adopted when CRIU leaves.
                libc::usleep(20_000);
                continue;
            }
            if pid != wait_for {
                continue;
            }
            let (text, code) = if libc::WIFEXITED(status) {
                let c = libc::WEXITSTATUS(status);
                (format!("exit {c}\n"), c)
            } else {
                let sig = libc::WTERMSIG(status);
                (format!("signal {sig}\n"), 128 + sig)
            };
            let f = libc::open(
                status_file.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            );
            if f >= 0 {
                libc::write(f, text.as_ptr().cast(), text.len());
                libc::fsync(f);
                libc::close(f);
            }
            std::process::exit(code);
        }
    }
}

/// Writes how the command ended to `ENDED_DIR/PID`, PID being this init's
/// on the node (the node's /proc says it, wherever CRIU restored the job),
/// for an agent that is not the job's parent; nothing when it cannot.
fn write_end(said: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(me) = std::fs::read_link("/proc/self") else {
        return;
    };
    let path = std::path::Path::new(hpc::paths::ENDED_DIR).join(me);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    if let Ok(mut f) = file {
        let _ = f.write_all(said.as_bytes());
    }
}

fn main() {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "--placeholder") {
        args.next();
        placeholder(args);
    }
    let o = parse(args).unwrap_or_else(|e| fail(&e));
    // SAFETY: setsid, sigprocmask, fork, sigwaitinfo, waitpid and kill are used
    // with valid arguments; the child only calls async-signal-safe functions.
    unsafe {
        libc::setsid();
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED {
            libc::sigaddset(&mut set, s);
        }
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
        let main_pid = libc::fork();
        if main_pid < 0 {
            fail(&format!("cannot fork: {}", std::io::Error::last_os_error()));
        }
        if main_pid == 0 {
            exec_child(&o, &old);
        }
        if let Some(fd) = o.sync_fd {
            libc::close(fd);
        }
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&set, &mut info);
            if sig < 0 {
                continue; // EINTR, e.g. after a restore by CRIU
            }
            if sig != libc::SIGCHLD {
                libc::kill(main_pid, sig);
                continue;
            }
            loop {
                let mut status = 0;
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid <= 0 {
                    break;
                }
                if pid == main_pid {
                    let (code, said) = if libc::WIFEXITED(status) {
                        let c = libc::WEXITSTATUS(status);
                        (c, format!("exit {c}\n"))
                    } else {
                        let s = libc::WTERMSIG(status);
                        (128 + s, format!("signal {s}\n"))
                    };
                    write_end(&said);
                    std::process::exit(code);
                }
            }
        }
    }
}
