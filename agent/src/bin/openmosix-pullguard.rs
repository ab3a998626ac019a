//! `openmosix-pullguard`: ends a post-copy migration's restored copy if the
//! target's agent dies while the copy's memory is still being pulled.
//!
//! The agent starts it right after a lazy restore with three descriptors:
//! `--control FD` (a pipe from the agent), `--pidfd FD` (the restored tree's
//! root) and `--hold FD` (a second descriptor of the socket the agent bridges
//! to CRIU's lazy-pages daemon). While this program holds that socket the
//! daemon cannot see it close, so it never gives up and closes the process's
//! userfaultfds (after which a missing page would read as zeros). The agent
//! writes `r` once every page arrived, or once it has ended the copy itself:
//! the guard then exits. If the pipe closes without it (the agent died), the
//! guard kills the root (in its own PID namespace: the whole copy), waits
//! until it is gone, and only then lets the socket close.
//!
//! It uses only libc.

use std::os::fd::RawFd;

fn main() {
    let mut control: Option<RawFd> = None;
    let mut pidfd: Option<RawFd> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().and_then(|v| v.parse::<RawFd>().ok());
        match a.as_str() {
            "--control" => control = value,
            "--pidfd" => pidfd = value,
            // Held, never used: it only has to stay open until the end.
            "--hold" => {}
            _ => {
                eprintln!("usage: openmosix-pullguard --control FD --pidfd FD --hold FD");
                std::process::exit(2);
            }
        }
    }
    let (Some(control), Some(pidfd)) = (control, pidfd) else {
        eprintln!("usage: openmosix-pullguard --control FD --pidfd FD --hold FD");
        std::process::exit(2);
    };
    let mut byte = 0u8;
    let released = loop {
        // SAFETY: reads one byte into a local from a descriptor this program
        // was handed.
        let n = unsafe { libc::read(control, (&raw mut byte).cast(), 1) };
        if n == 1 {
            break byte == b'r';
        }
        if n == 0 {
            break false;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break false;
        }
    };
    if released {
        return;
    }
    // SAFETY: pidfd_send_signal with a pidfd this program was handed, no
    // siginfo, no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    // A pidfd reads as ready once the process has exited (its namespace's
    // other processes were killed with it).
    let mut pfd = libc::pollfd {
        fd: pidfd,
        events: libc::POLLIN,
        revents: 0,
    };
    for _ in 0..600 {
        // SAFETY: one valid pollfd, 100 ms.
        let r = unsafe { libc::poll(&raw mut pfd, 1, 100) };
        if r != 0 && !(r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR))
        {
            break;
        }
    }
}
