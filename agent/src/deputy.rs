//! Home deputies, as in openMosix: when a process that no agent started
//! moves away, its stopped original stays at home as its stand-in, so that
//! its PID, its parent's `wait()` and the signals sent to it keep working.
//!
//! One thread (the tracer; ptrace requests must all come from the thread
//! that attached) keeps every deputy:
//!
//! - **adopt**: `PTRACE_SEIZE` the stopped original, unregister its rseq
//!   area, unmap all of its memory but the vDSO (two injected `munmap`s),
//!   unblock every signal (it may have been stopped in a critical section
//!   that blocks them) and park it in `pause()` at the vDSO's `syscall`
//!   instruction: a deputy holds no memory and uses no CPU;
//! - **signals** sent to it (by its parent, a user, `kill`) stop it in
//!   signal-delivery-stop: the signal is reported ([`DeputyEvent::Signal`])
//!   for the agent to forward to the running process, and suppressed here
//!   (its `pause()` restarts); the tracer looks every 20 ms after anything
//!   happened, backing off to every 320 ms while nothing does;
//! - **end**: when the process ends remotely the deputy ends the same way: an
//!   injected `exit_group(code)`, or, for a signal, its handler and mask
//!   reset by injection and the same signal delivered, so the parent's
//!   `wait()` gets the true status;
//! - a deputy killed here (`SIGKILL` cannot be caught) is reported
//!   ([`DeputyEvent::Gone`]) so that the running process is killed too.
//!
//! The same thread gives a process whose session leader is outside this PID
//! namespace a session of its own before it moves ([`Deputies::lead_session`]):
//! CRIU refuses to checkpoint a process whose session it cannot see.
//!
//! Syscalls are injected by pointing the stopped thread at a `syscall`
//! instruction of its vDSO with the call in its registers and single-stepping
//! it (x86-64 only; elsewhere adoption fails with a clear error).

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

/// How often the tracer looks at its deputies right after something
/// happened; the pause doubles while nothing does, up to [`POLL_IDLE`] (a
/// signal sent to an idle deputy is forwarded within that).
const POLL_BUSY: Duration = Duration::from_millis(20);
/// The longest pause between two looks.
const POLL_IDLE: Duration = Duration::from_millis(320);

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// It exited with this code.
    Exit(i32),
    /// A signal ended it.
    Signal(i32),
}

impl End {
    /// The status from a `waitpid` status word, if it tells an end.
    pub fn from_wait_status(status: i32) -> Option<End> {
        if libc::WIFEXITED(status) {
            Some(End::Exit(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(End::Signal(libc::WTERMSIG(status)))
        } else {
            None
        }
    }
}

/// What happened to a deputy, for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeputyEvent {
    /// A signal was sent to the deputy: forward it to the running process.
    Signal {
        /// The deputy's PID.
        pid: i32,
        /// The signal.
        signal: i32,
    },
    /// The deputy ended here (killed, or ended on request).
    Gone {
        /// The deputy's PID.
        pid: i32,
        /// How.
        end: End,
    },
}

/// Why a deputy operation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeputyError {
    /// ptrace or an injected syscall failed.
    #[error("process {pid}: {what}")]
    Failed {
        /// The process.
        pid: i32,
        /// What went wrong.
        what: String,
    },
    /// The process is no deputy of this agent.
    #[error("process {0} is not a deputy here")]
    Unknown(i32),
    /// The tracer thread has stopped.
    #[error("the deputy keeper has stopped")]
    Stopped,
}

/// What adoption did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    /// Resident memory before (bytes).
    pub rss_before: u64,
    /// Resident memory after (bytes).
    pub rss_after: u64,
    /// Signals that were waiting for the stopped original (sent while it
    /// moved), held back here: the process should get them.
    pub pending: Vec<i32>,
}

enum Request {
    Adopt(i32, mpsc::Sender<Result<Adopted, DeputyError>>),
    Readopt(i32, mpsc::Sender<Result<(), DeputyError>>),
    End(i32, End, mpsc::Sender<Result<(), DeputyError>>),
    LeadSession(i32, mpsc::Sender<Result<(), DeputyError>>),
}

/// The handle on the tracer thread.
#[derive(Clone)]
pub struct Deputies {
    requests: mpsc::Sender<Request>,
}

impl Deputies {
    /// Starts the tracer thread; events arrive on the returned receiver.
    pub fn start() -> std::io::Result<(Self, tokio::sync::mpsc::UnboundedReceiver<DeputyEvent>)> {
        let (tx, rx) = mpsc::channel();
        let (ev_tx, ev_rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("openmosixd-deputies".into())
            .spawn(move || tracer(rx, ev_tx))?;
        Ok((Self { requests: tx }, ev_rx))
    }

    /// Takes the stopped process `pid` as a deputy and releases its memory.
    pub fn adopt(&self, pid: i32) -> Result<Adopted, DeputyError> {
        self.ask(|tx| Request::Adopt(pid, tx))
    }

    /// Takes back a deputy a previous run of the agent adopted (it waited
    /// in its `pause()`, untraced, while no agent ran).
    pub fn readopt(&self, pid: i32) -> Result<(), DeputyError> {
        self.ask(|tx| Request::Readopt(pid, tx))
    }

    /// Ends the deputy `pid` as the process it stands for ended.
    pub fn end(&self, pid: i32, end: End) -> Result<(), DeputyError> {
        self.ask(|tx| Request::End(pid, end, tx))
    }

    /// Makes `pid` the leader of a new session (an injected `setsid()`) and
    /// lets it go on as it was, running or stopped; fails for a process-group
    /// leader.
    pub fn lead_session(&self, pid: i32) -> Result<(), DeputyError> {
        self.ask(|tx| Request::LeadSession(pid, tx))
    }

    /// Sends the tracer a request and waits for its answer.
    fn ask<T>(
        &self,
        request: impl FnOnce(mpsc::Sender<Result<T, DeputyError>>) -> Request,
    ) -> Result<T, DeputyError> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .send(request(tx))
            .map_err(|_| DeputyError::Stopped)?;
        rx.recv().map_err(|_| DeputyError::Stopped)?
    }
}

/// The resident memory of a process in bytes (0 when unknown).
pub fn rss_of(pid: i32) -> u64 {
    crate::sampler::status_field(pid, "VmRSS:", |v| {
        v.split_whitespace().next()?.parse::<u64>().ok()
    })
    .map_or(0, |kib| kib * 1024)
}

/// The tracer thread: requests, then a look at every deputy, in turn.
fn tracer(
    requests: mpsc::Receiver<Request>,
    events: tokio::sync::mpsc::UnboundedSender<DeputyEvent>,
) {
    // Deputies and the syscall instruction each one uses.
    let mut deputies: HashMap<i32, u64> = HashMap::new();
    let mut pause = POLL_BUSY;
    loop {
        // With no deputy there is nothing to look at: wait for a request.
        let next = if deputies.is_empty() {
            requests
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            requests.recv_timeout(pause)
        };
        let mut busy = next.is_ok();
        match next {
            Ok(Request::Adopt(pid, reply)) => {
                let r = arch::adopt(pid).map(|(syscall_at, adopted)| {
                    deputies.insert(pid, syscall_at);
                    adopted
                });
                let _ = reply.send(r);
            }
            Ok(Request::Readopt(pid, reply)) => {
                let r = arch::readopt(pid).map(|syscall_at| {
                    deputies.insert(pid, syscall_at);
                });
                let _ = reply.send(r);
            }
            Ok(Request::End(pid, end, reply)) => {
                let r = match deputies.get(&pid) {
                    Some(at) => arch::end(pid, *at, end, &mut |signal| {
                        let _ = events.send(DeputyEvent::Signal { pid, signal });
                    }),
                    None => Err(DeputyError::Unknown(pid)),
                };
                let _ = reply.send(r);
            }
            Ok(Request::LeadSession(pid, reply)) => {
                let _ = reply.send(arch::lead_session(pid));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        deputies.retain(|pid, _| match arch::watch(*pid) {
            Watch::Quiet => true,
            Watch::Signals(signals) => {
                busy = true;
                for signal in signals {
                    let _ = events.send(DeputyEvent::Signal { pid: *pid, signal });
                }
                true
            }
            Watch::Gone(end) => {
                busy = true;
                let _ = events.send(DeputyEvent::Gone { pid: *pid, end });
                false
            }
        });
        pause = if busy {
            POLL_BUSY
        } else {
            (pause * 2).min(POLL_IDLE)
        };
    }
}

/// What one look at a deputy found.
enum Watch {
    /// Nothing new.
    Quiet,
    /// It caught these signals (now suppressed).
    Signals(Vec<i32>),
    /// It ended.
    Gone(End),
}

#[cfg(target_arch = "x86_64")]
mod arch {
    use super::{Adopted, DeputyError, End, Watch, rss_of};

    const PTRACE_EVENT_STOP: i32 = 128;
    /// The highest user address plus one (47-bit address space).
    const USER_TOP: u64 = 0x7fff_ffff_f000;

    fn failed(pid: i32, what: impl Into<String>) -> DeputyError {
        DeputyError::Failed {
            pid,
            what: what.into(),
        }
    }

    fn errno() -> std::io::Error {
        std::io::Error::last_os_error()
    }

    fn ptrace(req: libc::c_uint, pid: i32, addr: usize, data: usize) -> Result<i64, DeputyError> {
        // SAFETY: ptrace with integer arguments; the kernel checks them. The
        // register requests below pass valid pointers in `data`.
        let r = unsafe { libc::ptrace(req, pid, addr, data) };
        if r == -1 {
            return Err(failed(pid, format!("ptrace {req:#x}: {}", errno())));
        }
        Ok(r)
    }

    fn get_regs(pid: i32) -> Result<libc::user_regs_struct, DeputyError> {
        // SAFETY: user_regs_struct is plain integers; all zero is valid.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        ptrace(
            libc::PTRACE_GETREGS,
            pid,
            0,
            &mut regs as *mut libc::user_regs_struct as usize,
        )?;
        Ok(regs)
    }

    fn set_regs(pid: i32, regs: &libc::user_regs_struct) -> Result<(), DeputyError> {
        ptrace(
            libc::PTRACE_SETREGS,
            pid,
            0,
            regs as *const libc::user_regs_struct as usize,
        )
        .map(|_| ())
    }

    /// Waits for the next stop or end of `pid`; `block`: wait for it.
    fn wait(pid: i32, block: bool) -> Result<Option<i32>, DeputyError> {
        let mut status = 0;
        let flags = libc::__WALL | if block { 0 } else { libc::WNOHANG };
        loop {
            // SAFETY: waitpid writes the status into a valid i32.
            let r = unsafe { libc::waitpid(pid, &mut status, flags) };
            if r == -1 {
                let e = errno();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(failed(pid, format!("waitpid: {e}")));
            }
            return Ok((r == pid).then_some(status));
        }
    }

    /// Waits for `pid` to stop with a stop that a tracer may act in;
    /// signals caught meanwhile are handed to `caught`.
    fn wait_for_trap(
        pid: i32,
        want_event_stop: bool,
        caught: &mut dyn FnMut(i32),
    ) -> Result<i32, DeputyError> {
        loop {
            let Some(status) = wait(pid, true)? else {
                continue;
            };
            if let Some(end) = End::from_wait_status(status) {
                return Err(failed(pid, format!("it ended ({end:?})")));
            }
            let sig = libc::WSTOPSIG(status);
            let event = status >> 16;
            if event == PTRACE_EVENT_STOP || !want_event_stop {
                return Ok(status);
            }
            // A signal that arrived first: note it, suppress it, keep waiting.
            caught(sig);
            ptrace(libc::PTRACE_CONT, pid, 0, 0)?;
        }
    }

    /// Stops the seized `pid` where a tracer may act on it.
    fn interrupt(pid: i32, caught: &mut dyn FnMut(i32)) -> Result<(), DeputyError> {
        ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0)?;
        wait_for_trap(pid, true, caught).map(|_| ())
    }

    /// Where a `syscall` instruction (0f 05) sits in the vDSO of `pid`, and
    /// the span of the vDSO and vvar mappings (kept when the rest goes).
    fn vdso(pid: i32) -> Result<(u64, u64, u64), DeputyError> {
        use std::io::{Read, Seek, SeekFrom};
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map_err(|e| failed(pid, format!("maps: {e}")))?;
        let mut keep = (u64::MAX, 0u64);
        let mut vdso = None;
        for line in maps.lines() {
            let mut f = line.split_whitespace();
            let range = f.next().unwrap_or_default();
            let name = f.nth(4).unwrap_or_default();
            let Some((a, b)) = range.split_once('-') else {
                continue;
            };
            let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
                continue;
            };
            if name == "[vdso]" || name.starts_with("[vvar") {
                keep = (keep.0.min(a), keep.1.max(b));
            }
            if name == "[vdso]" {
                vdso = Some((a, b));
            }
        }
        let (a, b) = vdso.ok_or_else(|| failed(pid, "it has no vDSO"))?;
        let mut mem = std::fs::File::open(format!("/proc/{pid}/mem"))
            .map_err(|e| failed(pid, format!("mem: {e}")))?;
        let mut code = vec![0u8; (b - a) as usize];
        mem.seek(SeekFrom::Start(a))
            .and_then(|_| mem.read_exact(&mut code))
            .map_err(|e| failed(pid, format!("reading its vDSO: {e}")))?;
        let at = code
            .windows(2)
            .position(|w| w == [0x0f, 0x05])
            .ok_or_else(|| failed(pid, "no syscall instruction in its vDSO"))?;
        Ok((a + at as u64, keep.0, keep.1))
    }

    /// `PTRACE_GET_RSEQ_CONFIGURATION`.
    const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
    /// `rseq` flag: unregister.
    const RSEQ_FLAG_UNREGISTER: u64 = 1;

    /// The kernel's `struct ptrace_rseq_configuration`.
    #[repr(C)]
    #[derive(Default)]
    struct RseqConfig {
        rseq_abi_pointer: u64,
        rseq_abi_size: u32,
        signature: u32,
        flags: u32,
        pad: u32,
    }

    /// The rseq area `pid` registered (address, size, signature), if any.
    fn rseq(pid: i32) -> Result<Option<(u64, u64, u64)>, DeputyError> {
        let mut conf = RseqConfig::default();
        ptrace(
            PTRACE_GET_RSEQ_CONFIGURATION,
            pid,
            std::mem::size_of::<RseqConfig>(),
            &mut conf as *mut RseqConfig as usize,
        )?;
        Ok((conf.rseq_abi_pointer != 0).then_some((
            conf.rseq_abi_pointer,
            u64::from(conf.rseq_abi_size),
            u64::from(conf.signature),
        )))
    }

    /// Runs syscall `nr` in the stopped `pid` at `syscall_at`; its result.
    fn inject(
        pid: i32,
        syscall_at: u64,
        nr: i64,
        args: [u64; 6],
        caught: &mut dyn FnMut(i32),
    ) -> Result<i64, DeputyError> {
        let saved = get_regs(pid)?;
        let mut regs = saved;
        regs.rip = syscall_at;
        regs.rax = nr as u64;
        // No syscall restart of whatever call it was stopped in.
        regs.orig_rax = u64::MAX;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        set_regs(pid, &regs)?;
        let mut tries = 0;
        loop {
            ptrace(libc::PTRACE_SINGLESTEP, pid, 0, 0)?;
            let status = wait_for_trap(pid, false, caught)?;
            let stopped = libc::WSTOPSIG(status);
            if stopped == libc::SIGTRAP && status >> 16 == 0 {
                break;
            }
            tries += 1;
            if tries > 16 {
                return Err(failed(
                    pid,
                    format!("syscall {nr} did not run (stopped by signal {stopped})"),
                ));
            }
            // A signal got in before the step: note it and step again.
            if status >> 16 == 0 && stopped != libc::SIGSEGV {
                caught(stopped);
            }
        }
        let result = get_regs(pid)?.rax as i64;
        set_regs(pid, &saved)?;
        Ok(result)
    }

    /// Maps a fresh zeroed, read-only page in the stopped `pid` (an empty
    /// signal set, a default `sigaction`); its address.
    fn zeroed_page(pid: i32, at: u64, caught: &mut dyn FnMut(i32)) -> Result<u64, DeputyError> {
        let page = inject(
            pid,
            at,
            libc::SYS_mmap,
            [
                0,
                4096,
                libc::PROT_READ as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
            caught,
        )?;
        if page < 0 {
            return Err(failed(pid, format!("mmap: errno {}", -page)));
        }
        Ok(page as u64)
    }

    /// Parks `pid` in `pause()` at the vDSO's syscall instruction: it waits
    /// there for ever, using no CPU; a signal stops it for its tracer, and
    /// once suppressed the call restarts.
    fn park(pid: i32, at: u64) -> Result<(), DeputyError> {
        let mut regs = get_regs(pid)?;
        regs.rip = at;
        regs.rax = libc::SYS_pause as u64;
        regs.orig_rax = u64::MAX;
        set_regs(pid, &regs)?;
        ptrace(libc::PTRACE_CONT, pid, 0, 0).map(|_| ())
    }

    pub fn adopt(pid: i32) -> Result<(u64, Adopted), DeputyError> {
        let rss_before = rss_of(pid);
        ptrace(libc::PTRACE_SEIZE, pid, 0, 0)?;
        let mut noted = Vec::new();
        let result = (|| {
            interrupt(pid, &mut |s| noted.push(s))?;
            let (at, keep_from, keep_to) = vdso(pid)?;
            // The kernel writes to a registered rseq area on every return to
            // user space; it goes with the memory, so unregister it first.
            if let Some((area, len, signature)) = rseq(pid)? {
                let r = inject(
                    pid,
                    at,
                    libc::SYS_rseq,
                    [area, len, RSEQ_FLAG_UNREGISTER, signature, 0, 0],
                    &mut |s| noted.push(s),
                )?;
                if r < 0 {
                    return Err(failed(pid, format!("rseq unregister: errno {}", -r)));
                }
            }
            // Everything but the vDSO goes: below it and above it.
            for (addr, len) in [(0, keep_from), (keep_to, USER_TOP.saturating_sub(keep_to))] {
                if len > 0 {
                    let r = inject(
                        pid,
                        at,
                        libc::SYS_munmap,
                        [addr, len, 0, 0, 0, 0],
                        &mut |s| noted.push(s),
                    )?;
                    if r < 0 {
                        return Err(failed(pid, format!("munmap: errno {}", -r)));
                    }
                }
            }
            // It may have been stopped with signals blocked (a program's
            // critical section): unblocked, so that every signal sent to it
            // reaches its tracer.
            let page = zeroed_page(pid, at, &mut |s| noted.push(s))?;
            inject(
                pid,
                at,
                libc::SYS_rt_sigprocmask,
                [libc::SIG_SETMASK as u64, page, 0, 8, 0, 0],
                &mut |s| noted.push(s),
            )?;
            park(pid, at)?;
            Ok(at)
        })();
        match result {
            Ok(at) => Ok((
                at,
                Adopted {
                    rss_before,
                    rss_after: rss_of(pid),
                    pending: noted,
                },
            )),
            Err(e) => {
                // Not a deputy after all: let it go, stopped (its memory may
                // be gone: the caller kills it or resumes the running copy).
                let _ = ptrace(libc::PTRACE_DETACH, pid, 0, libc::SIGSTOP as usize);
                Err(e)
            }
        }
    }

    /// Seizes a deputy parked by a previous tracer and parks it again.
    pub fn readopt(pid: i32) -> Result<u64, DeputyError> {
        ptrace(libc::PTRACE_SEIZE, pid, 0, 0)?;
        let result = (|| {
            interrupt(pid, &mut |_| {})?;
            let (at, _, _) = vdso(pid)?;
            park(pid, at)?;
            Ok(at)
        })();
        if result.is_err() {
            let _ = ptrace(libc::PTRACE_DETACH, pid, 0, 0);
        }
        result
    }

    /// Ends deputy `pid` the way `end` says.
    pub fn end(
        pid: i32,
        at: u64,
        end: End,
        caught: &mut dyn FnMut(i32),
    ) -> Result<(), DeputyError> {
        // Out of its pause into a stop where registers may change.
        interrupt(pid, caught)?;
        match end {
            End::Exit(code) => {
                let mut regs = get_regs(pid)?;
                regs.rip = at;
                regs.rax = libc::SYS_exit_group as u64;
                regs.orig_rax = u64::MAX;
                regs.rdi = code as u64;
                set_regs(pid, &regs)?;
                ptrace(libc::PTRACE_SINGLESTEP, pid, 0, 0)?;
            }
            End::Signal(signal) => {
                // A zeroed page: the default action and an empty mask.
                let page = zeroed_page(pid, at, caught)?;
                inject(
                    pid,
                    at,
                    libc::SYS_rt_sigaction,
                    [signal as u64, page, 0, 8, 0, 0],
                    caught,
                )?;
                inject(
                    pid,
                    at,
                    libc::SYS_rt_sigprocmask,
                    [libc::SIG_SETMASK as u64, page, 0, 8, 0, 0],
                    caught,
                )?;
                // No core file of an empty process.
                let none = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: prlimit reads the given rlimit; the old one is not asked for.
                unsafe { libc::prlimit(pid, libc::RLIMIT_CORE, &none, std::ptr::null_mut()) };
                // Sent, then let through when it stops the deputy.
                // SAFETY: kill has no memory-safety preconditions; pid > 0.
                unsafe { libc::kill(pid, signal) };
                ptrace(libc::PTRACE_CONT, pid, 0, 0)?;
            }
        }
        // Reap the tracee's end as its tracer; its parent is told too. A
        // signal that gets in first is not delivered (it would run a
        // handler in no memory): the exit, or the ending signal, goes on.
        let pass_on = match end {
            End::Exit(_) => 0,
            End::Signal(s) => s,
        };
        loop {
            let Some(status) = wait(pid, true)? else {
                continue;
            };
            if End::from_wait_status(status).is_some() {
                return Ok(());
            }
            let pass = if status >> 16 == 0 { pass_on } else { 0 };
            ptrace(libc::PTRACE_CONT, pid, 0, pass as usize)?;
        }
    }

    /// Injects `setsid()` into `pid` and lets it go on; the signals that
    /// arrived while it was held are sent again.
    pub fn lead_session(pid: i32) -> Result<(), DeputyError> {
        ptrace(libc::PTRACE_SEIZE, pid, 0, 0)?;
        let mut noted = Vec::new();
        let result = (|| {
            interrupt(pid, &mut |s| noted.push(s))?;
            let (at, _, _) = vdso(pid)?;
            // The registers are restored after the call: a system call it
            // was interrupted in restarts when it goes on.
            let r = inject(pid, at, libc::SYS_setsid, [0; 6], &mut |s| noted.push(s))?;
            if r < 0 {
                let why = std::io::Error::from_raw_os_error(-r as i32);
                return Err(failed(pid, format!("setsid: {why}")));
            }
            Ok(())
        })();
        let _ = ptrace(libc::PTRACE_DETACH, pid, 0, 0);
        for signal in noted {
            // SAFETY: kill has no memory-safety preconditions; pid > 0.
            unsafe { libc::kill(pid, signal) };
        }
        result
    }

    /// One look at deputy `pid`, without blocking.
    pub fn watch(pid: i32) -> Watch {
        let status = match wait(pid, false) {
            Ok(Some(s)) => s,
            Ok(None) => return Watch::Quiet,
            Err(_) => return Watch::Gone(End::Signal(libc::SIGKILL)),
        };
        if let Some(end) = End::from_wait_status(status) {
            return Watch::Gone(end);
        }
        let sig = libc::WSTOPSIG(status);
        // Back to its pause: the signal is suppressed here (the agent
        // forwards it); any other stop just ends.
        if ptrace(libc::PTRACE_CONT, pid, 0, 0).is_err() {
            return Watch::Gone(End::Signal(libc::SIGKILL));
        }
        if status >> 16 != 0 {
            return Watch::Quiet;
        }
        Watch::Signals(vec![sig])
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod arch {
    use super::{Adopted, DeputyError, End, Watch};

    pub fn adopt(pid: i32) -> Result<(u64, Adopted), DeputyError> {
        Err(DeputyError::Failed {
            pid,
            what: "deputies are implemented for x86-64 only".into(),
        })
    }

    pub fn readopt(pid: i32) -> Result<u64, DeputyError> {
        Err(DeputyError::Unknown(pid))
    }

    pub fn end(
        pid: i32,
        _at: u64,
        _end: End,
        _caught: &mut dyn FnMut(i32),
    ) -> Result<(), DeputyError> {
        Err(DeputyError::Unknown(pid))
    }

    pub fn watch(_pid: i32) -> Watch {
        Watch::Quiet
    }

    pub fn lead_session(pid: i32) -> Result<(), DeputyError> {
        Err(DeputyError::Failed {
            pid,
            what: "giving a process a session of its own is implemented for x86-64 only".into(),
        })
    }
}
