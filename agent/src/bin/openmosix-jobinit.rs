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

fn main() {
    let o = parse(std::env::args_os().skip(1)).unwrap_or_else(|e| fail(&e));
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
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                    std::process::exit(code);
                }
            }
        }
    }
}
