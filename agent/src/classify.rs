//! Why a process cannot move (`/proc/PID/cantmove`), named after openMosix's
//! reasons where one exists and after what CRIU cannot checkpoint otherwise.
//!
//! Two tiers, to keep sampling cheap:
//! - [`quick_reason`] uses only the `stat` fields every pass reads: kernel
//!   threads, zombies, the agent itself, real-time scheduling;
//! - [`deep_reason`] reads `status`, the fd table and `maps`: being traced,
//!   locked memory, io_uring, MPTCP sockets (each socket's protocol is read
//!   through `pidfd_getfd`), device mappings, System V shared memory. It runs on
//!   demand (`proc.get`, `proc.read`, before any move) and every few seconds for
//!   unlocked processes, never over the whole process table.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::sampler::StatFields;

const SCHED_FIFO: u32 = 1;
const SCHED_RR: u32 = 2;
const SCHED_DEADLINE: u32 = 6;

/// Reasons visible in `stat`.
pub fn quick_reason(f: &StatFields, kernel_thread: bool, is_agent: bool) -> Option<&'static str> {
    if kernel_thread {
        Some("kernel thread")
    } else if f.state == 'Z' || f.state == 'X' {
        Some("zombie")
    } else if is_agent {
        Some("the openMosix agent")
    } else if matches!(f.policy, SCHED_FIFO | SCHED_RR | SCHED_DEADLINE) {
        Some("rt_sched: real-time scheduling policy")
    } else {
        None
    }
}

/// The MPTCP protocol number (`IPPROTO_MPTCP`).
const IPPROTO_MPTCP: i32 = 262;

/// A pidfd for `pid` (kernel >= 5.3), to look at its sockets.
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative result is a descriptor nobody else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The protocol of another process's socket descriptor: the socket is
/// duplicated into the agent with `pidfd_getfd` (kernel >= 5.6; the process is
/// not disturbed), asked for `SO_PROTOCOL`, and closed again.
fn socket_protocol(pidfd: &OwnedFd, fd: i32) -> Option<i32> {
    // SAFETY: pidfd_getfd takes a pidfd, a descriptor number and flags.
    let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if dup < 0 {
        return None;
    }
    // SAFETY: a non-negative result is a new descriptor owned by us.
    let dup = unsafe { OwnedFd::from_raw_fd(dup as i32) };
    let mut proto: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `proto`.
    let r = unsafe {
        libc::getsockopt(
            dup.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PROTOCOL,
            (&mut proto as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(proto)
}

/// Reasons that need `status`, `fd/` and `maps` (several reads; use sparingly).
/// `None` when the process may move, or is gone.
pub fn deep_reason(pid: i32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("TracerPid:")
            && v.trim() != "0"
        {
            return Some(format!(
                "traced: under a debugger (ptrace by PID {})",
                v.trim()
            ));
        }
        if let Some(v) = line.strip_prefix("VmLck:")
            && v.split_whitespace().next().is_some_and(|n| n != "0")
        {
            return Some(format!("mem_lock: locked memory ({})", v.trim()));
        }
    }
    let mut pidfd: Option<Option<OwnedFd>> = None;
    for (number, target) in open_files(pid) {
        if target == "anon_inode:[io_uring]" {
            return Some("io_uring: CRIU cannot checkpoint io_uring instances".into());
        }
        if target.starts_with("socket:[") {
            let pidfd = pidfd.get_or_insert_with(|| pidfd_open(pid));
            if let Some(pidfd) = pidfd.as_ref()
                && socket_protocol(pidfd, number) == Some(IPPROTO_MPTCP)
            {
                return Some("mptcp: has an MPTCP socket, which CRIU cannot checkpoint".into());
            }
        }
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    for line in maps.lines() {
        let path = line.split_whitespace().nth(5).unwrap_or("");
        if path.starts_with("/SYSV") {
            return Some("shm: attached to System V shared memory".into());
        }
        if let Some(dev) = path.strip_prefix("/dev/")
            && !matches!(dev, "zero" | "null")
            && !dev.starts_with("shm/")
            && !path.ends_with("(deleted)")
        {
            return Some(format!("mmap_dev: maps device {path}"));
        }
    }
    None
}

/// The open descriptors of `pid` and what each points at (`readlink` of
/// `/proc/PID/fd/N`); none when they cannot be read.
fn open_files(pid: i32) -> Vec<(i32, String)> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let number = fd.file_name().to_str()?.parse::<i32>().ok()?;
            let target = std::fs::read_link(fd.path()).ok()?;
            Some((number, target.to_string_lossy().into_owned()))
        })
        .collect()
}

/// The process group and session of `pid` as this PID namespace sees them;
/// 0 when its group or session leader is outside the namespace (a process
/// started from outside a container). CRIU cannot checkpoint a process whose
/// session leader it cannot see, so such a process is given a session of its
/// own before it moves alone ([`crate::deputy`]).
pub fn group_and_session(pid: i32) -> Option<(i32, i32)> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let (fields, _) = crate::sampler::parse_stat(&stat)?;
    Some((fields.pgrp, fields.session))
}

/// Why a process not started or restored by the agent cannot move on its
/// own for living in a container: a mount namespace other than the agent's,
/// whose files would not go with it.
pub fn container_reason(pid: i32) -> Option<String> {
    crate::jobs::other_namespace(pid, "mnt").map(|_| {
        "container: it runs in a mount namespace other than the node's (a container's), whose files would not go with it".to_string()
    })
}

/// Why `pid` cannot be given the session of its own it needs (a group
/// leader cannot take one).
fn session_reason(pid: i32) -> Option<String> {
    let (group, session) = group_and_session(pid)?;
    (session == 0 && group == pid).then(|| {
        "session: its session leader is outside this PID namespace (it was started from outside the container) and it leads its own process group, so it cannot take a session of its own to move".to_string()
    })
}

/// Why a single process (moving on its own, `moving` being what goes with
/// it) cannot leave what it shares with processes that stay, said before
/// anything is frozen: a terminal, a socket (its peer or its connection
/// stays), a pipe another process holds an end of, memory another process
/// maps shared (one of the two writing). None when nothing holds it back.
pub fn sharing_reason(pid: i32, moving: &[i32]) -> Option<String> {
    if let Some(reason) = session_reason(pid) {
        return Some(reason);
    }
    let mut pipes = Vec::new();
    for (n, target) in open_files(pid) {
        if target.starts_with("/dev/pts/")
            || target.starts_with("/dev/tty")
            || target == "/dev/console"
        {
            return Some(format!(
                "terminal: fd {n} is its terminal ({target}), which cannot follow it (run it with its output in a file)"
            ));
        }
        if target.starts_with("socket:[") {
            return Some(format!(
                "socket: fd {n} is a socket ({target}); its peer or its connection stays on this node"
            ));
        }
        if let Some(inode) = target.strip_prefix("pipe:[") {
            pipes.push((n, inode.trim_end_matches(']').to_string()));
        }
    }
    let shared = shared_maps(pid);
    if pipes.is_empty() && shared.is_empty() {
        return None;
    }
    // Who else holds an end of those pipes, or maps that memory.
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(other) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if other == pid || moving.contains(&other) {
            continue;
        }
        let comm = || {
            let c = std::fs::read_to_string(format!("/proc/{other}/comm")).unwrap_or_default();
            c.trim().to_string()
        };
        if !pipes.is_empty() {
            for (_, target) in open_files(other) {
                if let Some((n, _)) = pipes
                    .iter()
                    .find(|(_, inode)| target == format!("pipe:[{inode}]"))
                {
                    return Some(format!(
                        "pipe: fd {n} is a pipe shared with process {other} ({}), which stays",
                        comm()
                    ));
                }
            }
        }
        if !shared.is_empty() {
            for theirs in shared_maps(other) {
                if let Some(mine) = shared
                    .iter()
                    .find(|m| m.key == theirs.key && (m.writable || theirs.writable))
                {
                    return Some(format!(
                        "shm: it shares memory ({}) with process {other} ({}), which stays; their writes would no longer reach each other",
                        mine.what,
                        comm()
                    ));
                }
            }
        }
    }
    None
}

/// A shared mapping of a process.
struct SharedMap {
    /// `dev inode` of what it maps.
    key: String,
    /// What it maps, for people.
    what: String,
    /// Mapped writable.
    writable: bool,
}

/// The shared mappings (`MAP_SHARED`: anonymous shared memory, memfd,
/// files) of `pid`, from `/proc/PID/maps`.
fn shared_maps(pid: i32) -> Vec<SharedMap> {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    maps.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (perms, dev, inode) = (f.get(1)?, f.get(3)?, f.get(4)?);
            if !perms.ends_with('s') || *inode == "0" {
                return None;
            }
            let path = f.get(5..).map(|p| p.join(" ")).unwrap_or_default();
            let what = match path.as_str() {
                "" | "/dev/zero (deleted)" => "anonymous shared memory".to_string(),
                p => p.to_string(),
            };
            Some(SharedMap {
                key: format!("{dev} {inode}"),
                what,
                writable: perms.contains('w'),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Runs a script that ends in `time.sleep(30)` and returns once it got
    /// there (it says so on stdout), however slowly python starts.
    fn python(code: &str) -> Child {
        use std::io::BufRead;
        let code = code.replace(
            "time.sleep(30)",
            "print('ready', flush=True)\ntime.sleep(30)",
        );
        let mut c = Command::new("python3")
            .args(["-c", &code])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let out = c.stdout.take().expect("stdout");
        let mut line = String::new();
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        assert_eq!(line.trim(), "ready", "the script failed before its sleep");
        Child(c)
    }

    #[test]
    fn plain_processes_may_move() {
        let c = Child(Command::new("sleep").arg("30").spawn().unwrap());
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(deep_reason(c.0.id() as i32), None);
    }

    #[test]
    fn locked_memory_is_named() {
        let c = python(
            "import ctypes,time\nl=ctypes.CDLL(None)\nassert l.mlockall(3)==0\ntime.sleep(30)",
        );
        let r = deep_reason(c.0.id() as i32).unwrap();
        assert!(r.starts_with("mem_lock"), "{r}");
    }

    #[test]
    fn sysv_shm_is_named() {
        let c = python(
            "import ctypes,time\nl=ctypes.CDLL(None)\nl.shmat.restype=ctypes.c_void_p\nid=l.shmget(0,4096,0o1600)\nassert id>=0\nassert l.shmat(id,None,0)!=ctypes.c_void_p(-1).value\nl.shmctl(id,0,None)\ntime.sleep(30)",
        );
        let r = deep_reason(c.0.id() as i32).unwrap();
        assert!(r.starts_with("shm"), "{r}");
    }

    #[test]
    fn memory_shared_with_a_process_that_stays_is_named() {
        // A parent and its forked child share an anonymous MAP_SHARED page;
        // the child's descriptors are its own (no pipe shared).
        let parent = python(
            "import mmap,os,time\nm=mmap.mmap(-1,4096)\nif os.fork()==0:\n    n=os.open('/dev/null',os.O_RDWR)\n    [os.dup2(n,f) for f in (0,1,2)]\n    os.closerange(3,4096)\n    time.sleep(31)\n    os._exit(0)\ntime.sleep(30)",
        );
        let ppid = parent.0.id() as i32;
        let child = (0..50)
            .find_map(|_| {
                std::thread::sleep(Duration::from_millis(20));
                crate::jobs::children(ppid).first().copied()
            })
            .expect("the child");
        std::thread::sleep(Duration::from_millis(200));
        let r = sharing_reason(child, &[child]).unwrap_or_default();
        assert!(r.starts_with("shm") && r.contains(&ppid.to_string()), "{r}");
        // Moving together, they share nothing with a process that stays.
        assert_eq!(sharing_reason(child, &[child, ppid]), None);
        // SAFETY: a signal to the child this test's parent forked.
        unsafe { libc::kill(child, libc::SIGKILL) };
    }

    #[test]
    fn traced_processes_are_named() {
        // The tracer: python attaches with PTRACE_SEIZE (16902) to a sleeping child of ours.
        let victim = Child(Command::new("sleep").arg("30").spawn().unwrap());
        let pid = victim.0.id();
        let _tracer = python(&format!(
            "import ctypes,time\nl=ctypes.CDLL(None,use_errno=True)\nassert l.ptrace(0x4206,{pid},None,None)==0, ctypes.get_errno()\ntime.sleep(30)"
        ));
        let r = deep_reason(pid as i32).unwrap();
        assert!(r.starts_with("traced"), "{r}");
    }

    #[test]
    fn mptcp_sockets_are_named() {
        let c = python(
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_STREAM,262)\ntime.sleep(30)",
        );
        let r = deep_reason(c.0.id() as i32).unwrap();
        assert!(r.starts_with("mptcp"), "{r}");
        // An ordinary TCP socket is not a reason.
        let t = python("import socket,time\ns=socket.socket()\ntime.sleep(30)");
        assert_eq!(deep_reason(t.0.id() as i32), None);
    }

    #[test]
    fn realtime_policy_is_seen_in_stat() {
        let c = Child(
            Command::new("chrt")
                .args(["-f", "5", "sleep", "30"])
                .spawn()
                .unwrap(),
        );
        // chrt sets the policy, then execs sleep: poll until it did (slow under load).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let reason = loop {
            let text = std::fs::read(format!("/proc/{}/stat", c.0.id())).unwrap();
            let (f, _) = crate::sampler::parse_stat(&text).unwrap();
            let r = quick_reason(&f, false, false);
            if r.is_some() || std::time::Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(reason, Some("rt_sched: real-time scheduling policy"));
    }
}
