//! Samples the node from `/proc`, cheaply.
//!
//! Per pass (once a second): `/proc/stat`, `/proc/meminfo`,
//! `/proc/pressure/memory`, one `getdents` walk of `/proc`, and one `pread` of
//! each process's `stat` through a file descriptor kept open from pass to pass
//! (a dead process's descriptor reads `ESRCH`, so PID reuse cannot confuse it).
//! `cmdline` is read once, when a PID is first seen; the owner comes from an
//! `fstat` of the same descriptor. `maps`/`smaps` are never read. Buffers are reused.
//!
//! The walk of `/proc` is skipped when nothing was forked since the last one
//! (`processes` in `/proc/stat`, read anyway, counts every fork and clone of
//! the machine): no new process can have appeared, a PID cannot have been
//! reused, and one `poll` of a pidfd per process tells which ones ended.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::Instant;

use hpc::model::{DecayClass, ProcessInfo, PsFields};

use crate::users::UserNames;

/// Figures of the whole node from one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeFigures {
    /// Online CPUs.
    pub cpus: u32,
    /// CPUs' worth of busy time over the last period.
    pub busy_cpus: f64,
    /// Runnable tasks now, not counting the sampler.
    pub runnable: u32,
    /// MemAvailable, bytes.
    pub mem_available: u64,
    /// MemFree, bytes.
    pub mem_free: u64,
    /// MemTotal, bytes.
    pub mem_total: u64,
    /// Utilisation percent: 100 minus the share of time some task stalled on memory.
    pub util: u32,
}

impl NodeFigures {
    /// Takes the CPU demand from `procs` alone (the CPUs they used over the
    /// period and how many are runnable), leaving out `me` (the sampler), and
    /// counts only the CPUs this process may run on: a lab node shares the
    /// machine's kernel (and may be pinned to some of its CPUs), so its load
    /// is its own processes' on its own CPUs, not the machine's.
    pub fn demand_of(&mut self, procs: &[ProcessInfo], me: i32) {
        let own = procs.iter().filter(|p| p.pid != me);
        self.busy_cpus = own.clone().map(|p| f64::from(p.cpu) / 100.0).sum();
        self.runnable = own.filter(|p| p.state == 'R').count() as u32;
        if let Some(n) = allowed_cpus() {
            self.cpus = n;
        }
    }
}

/// How many CPUs this process may run on (its affinity), when known.
fn allowed_cpus() -> Option<u32> {
    hpc::affinity::allowed_cpus()
        .and_then(|c| u32::try_from(c.len()).ok())
        .filter(|n| *n > 0)
}

/// The static part of a process, read once, and its CPU accounting.
struct Tracked {
    stat: Option<File>,
    /// Readable once the process has ended (`pidfd_open`), watched by
    /// [`Sampler::ends`].
    pidfd: Option<std::os::fd::OwnedFd>,
    start_ticks: u64,
    last_ticks: u64,
    uid: u32,
    user: String,
    cmdline: String,
    /// The command line read empty: it is read again at each read of the
    /// process until it is not (a read in the middle of an exec finds the new
    /// `comm` but no arguments yet; a copy restored post-copy has them only
    /// once their page arrived). Zombies are not asked again.
    cmdline_pending: bool,
    /// `comm` at the last pass; a change means the process called exec.
    comm: Vec<u8>,
    kernel_thread: bool,
    /// Outside this agent's scope (another node's network namespace in a lab).
    foreign: bool,
    /// The row of its last read, and when that was.
    last: Option<(Box<ProcessInfo>, Instant)>,
    /// Reads in a row that found it asleep with no CPU used.
    idle_reads: u32,
    /// Its terminal's device number and name, as last read.
    tty: (u32, String),
}

/// Reads in a row that must find a process idle before it is read less often.
const IDLE_AFTER: u32 = 3;
/// An idle process is read every this many passes (spread by PID), and at
/// every pass the agent asked for early (after a signal, a renice, a write).
const IDLE_EVERY: u64 = 5;

/// Per-process kernel figures from one `stat` read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatFields {
    /// State letter.
    pub state: char,
    /// Parent PID.
    pub ppid: i32,
    /// Process group, as this PID namespace sees it (0: outside it).
    pub pgrp: i32,
    /// Session, as this PID namespace sees it (0: its leader is outside it).
    pub session: i32,
    /// `flags` (PF_*).
    pub flags: u64,
    /// utime + stime in clock ticks.
    pub ticks: u64,
    /// Nice value.
    pub nice: i32,
    /// Thread count.
    pub threads: u32,
    /// Start time in ticks after boot.
    pub start_ticks: u64,
    /// RSS in pages.
    pub rss_pages: u64,
    /// Scheduling policy (SCHED_* number).
    pub policy: u32,
    /// Controlling terminal's device number (0: none).
    pub tty_nr: u32,
    /// The terminal's foreground process group (-1: no terminal).
    pub tpgid: i32,
    /// Virtual memory size in bytes.
    pub vsize: u64,
}

const PF_KTHREAD: u64 = 0x0020_0000;

/// Parses the text of `/proc/PID/stat`; returns the fields and `comm`.
pub fn parse_stat(text: &[u8]) -> Option<(StatFields, &[u8])> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let comm = text.get(open + 1..close)?;
    let rest = text.get(close + 2..)?;
    let mut it = rest.split(|&b| b == b' ');
    let mut fields = [0u64; 38];
    let state = *it.next()?.first()? as char;
    // fields[k] holds stat field k+4 (1-based man-page numbering), parsed as i64→u64.
    for slot in fields.iter_mut() {
        let f = it.next()?;
        *slot = parse_i64(f)? as u64;
    }
    Some((
        StatFields {
            state,
            ppid: fields[0] as i64 as i32,
            pgrp: fields[1] as i64 as i32,
            session: fields[2] as i64 as i32,
            flags: fields[5],
            ticks: fields[10].wrapping_add(fields[11]),
            nice: fields[15] as i64 as i32,
            threads: fields[16] as u32,
            start_ticks: fields[18],
            rss_pages: fields[20],
            policy: fields[37] as u32,
            tty_nr: fields[3] as u32,
            tpgid: fields[4] as i64 as i32,
            vsize: fields[19],
        },
        comm,
    ))
}

/// One field of `/proc/PID/status` (the line starting with `key`), read by
/// `parse` from what follows the key.
pub fn status_field<T>(pid: i32, key: &str, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(parse)
}

/// The start time of the process that has `pid` now, in seconds since the
/// Unix epoch, computed exactly as a sampling pass computes
/// [`ProcessInfo::start_time`]; `None` when there is no such process. Comparing
/// the two tells a process from a later one that reused its PID.
pub fn start_time_of(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let (fields, _) = parse_stat(&stat)?;
    let boot = std::fs::read("/proc/stat").ok()?;
    let btime = boot
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"btime "))
        .and_then(parse_i64)? as u64;
    // SAFETY: sysconf has no memory-safety preconditions.
    let clk_tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let clk_tck = if clk_tck > 0 { clk_tck as f64 } else { 100.0 };
    Some(btime + (fields.start_ticks as f64 / clk_tck) as u64)
}

fn parse_i64(f: &[u8]) -> Option<i64> {
    let (neg, digits) = match f.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, f),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.wrapping_mul(10).wrapping_add(i64::from(b - b'0'));
    }
    Some(if neg { -n } else { n })
}

/// Keeps what it needs between passes and produces node figures and the process table.
pub struct Sampler {
    tracked: HashMap<i32, Tracked>,
    users: UserNames,
    buf: Vec<u8>,
    clk_tck: f64,
    page_size: u64,
    boot_time: u64,
    last_cpu: Option<(u64, u64)>,
    fd_budget: usize,
    own_pid: i32,
    /// When set, only processes in this network namespace (inode) are listed.
    scope_netns: Option<u64>,
    /// Passes so far.
    passes: u64,
    /// The next pass reads every process (one was asked for early).
    full: bool,
    /// Forks since boot at the last read of `/proc/stat`.
    forks: Option<u64>,
    /// Forks since boot when `/proc` was last walked.
    walked_at: Option<u64>,
    /// The pidfds of the tracked processes, to learn which ended.
    ends: Option<Ends>,
    /// The memory cgroup this agent runs in (its limit is the node's memory).
    memcg: Option<hpc::memcg::MemoryCgroup>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    /// A sampler with empty history.
    pub fn new() -> Self {
        // SAFETY: sysconf has no memory-safety preconditions.
        let clk_tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Self {
            tracked: HashMap::new(),
            users: UserNames::default(),
            buf: Vec::with_capacity(4096),
            clk_tck: if clk_tck > 0 { clk_tck as f64 } else { 100.0 },
            page_size: page_size(),
            boot_time: 0,
            last_cpu: None,
            fd_budget: raise_fd_limit().saturating_sub(128),
            own_pid: std::process::id() as i32,
            scope_netns: None,
            passes: 0,
            full: true,
            forks: None,
            walked_at: None,
            ends: Ends::new(),
            memcg: hpc::memcg::MemoryCgroup::own(),
        }
    }

    /// A sampler that lists only the processes of its own network namespace
    /// (one node of a lab cluster, where all nodes share one kernel).
    pub fn scoped_to_own_netns() -> std::io::Result<Self> {
        let own = netns_of("self")
            .ok_or_else(|| std::io::Error::other("cannot read /proc/self/ns/net"))?;
        Ok(Self {
            scope_netns: Some(own),
            ..Self::new()
        })
    }

    /// Whether it lists only its own network namespace's processes.
    pub fn is_scoped(&self) -> bool {
        self.scope_netns.is_some()
    }

    /// Reads the node-wide files.
    pub fn node(&mut self) -> std::io::Result<NodeFigures> {
        let mut fig = NodeFigures {
            util: 100,
            ..Default::default()
        };
        read_into("/proc/stat", &mut self.buf)?;
        let mut cpu_total = 0u64;
        let mut cpu_idle = 0u64;
        for line in self.buf.split(|&b| b == b'\n') {
            if let Some(rest) = line.strip_prefix(b"cpu ") {
                let v: Vec<u64> = rest
                    .split(|&b| b == b' ')
                    .filter(|f| !f.is_empty())
                    .filter_map(|f| parse_i64(f).map(|n| n as u64))
                    .collect();
                cpu_total = v.iter().take(8).sum();
                // idle + iowait
                cpu_idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            } else if line.starts_with(b"cpu") {
                fig.cpus += 1;
            } else if let Some(rest) = line.strip_prefix(b"procs_running ") {
                let n = parse_i64(rest).unwrap_or(1).max(1) as u32;
                fig.runnable = n - 1;
            } else if let Some(rest) = line.strip_prefix(b"btime ") {
                self.boot_time = parse_i64(rest).unwrap_or(0) as u64;
            } else if let Some(rest) = line.strip_prefix(b"processes ") {
                self.forks = parse_i64(rest).map(|n| n as u64);
            }
        }
        fig.cpus = fig.cpus.max(1);
        if let Some((t0, i0)) = self.last_cpu {
            let dt = cpu_total.saturating_sub(t0);
            let di = cpu_idle.saturating_sub(i0);
            if dt > 0 {
                fig.busy_cpus = (dt.saturating_sub(di)) as f64 / dt as f64 * f64::from(fig.cpus);
            }
        }
        self.last_cpu = Some((cpu_total, cpu_idle));

        read_into("/proc/meminfo", &mut self.buf)?;
        for line in self.buf.split(|&b| b == b'\n') {
            let kib = |rest: &[u8]| {
                rest.split(|&b| b == b' ')
                    .find(|f| !f.is_empty())
                    .and_then(parse_i64)
                    .unwrap_or(0) as u64
                    * 1024
            };
            if let Some(r) = line.strip_prefix(b"MemTotal:") {
                fig.mem_total = kib(r);
            } else if let Some(r) = line.strip_prefix(b"MemFree:") {
                fig.mem_free = kib(r);
            } else if let Some(r) = line.strip_prefix(b"MemAvailable:") {
                fig.mem_available = kib(r);
            }
        }
        if let Some(cg) = &self.memcg {
            cg.narrow(
                &mut fig.mem_total,
                &mut fig.mem_available,
                &mut fig.mem_free,
            );
        }
        if read_into("/proc/pressure/memory", &mut self.buf).is_ok()
            && let Some(avg) = psi_some_avg10(&self.buf)
        {
            fig.util = (100.0 - avg).round().clamp(0.0, 100.0) as u32;
        }
        Ok(fig)
    }

    /// Walks `/proc` and returns one row per process, with the openMosix fields
    /// at their defaults (`home` = `where` = `node`, locked); `classify` may refine them.
    pub fn processes(&mut self, node: u32) -> std::io::Result<Vec<ProcessInfo>> {
        self.passes = self.passes.wrapping_add(1);
        // Nothing forked since the last walk (`node` read the count just
        // before): the tracked processes are all there is.
        let no_forks = self.forks.is_some() && self.forks == self.walked_at;
        if no_forks
            && !self.full
            && let Some(rows) = self.processes_known(node)
        {
            return Ok(rows);
        }
        self.walked_at = self.forks;
        let mut seen: Vec<i32> = Vec::with_capacity(self.tracked.len() + 16);
        let mut rows = Vec::with_capacity(self.tracked.len() + 16);
        for entry in std::fs::read_dir("/proc")? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            match self.sample_pid(pid, node, false) {
                Sampled::Row(row) => {
                    seen.push(pid);
                    rows.push(*row);
                }
                Sampled::Foreign => seen.push(pid),
                Sampled::Gone => {}
            }
        }
        if seen.len() != self.tracked.len() {
            seen.sort_unstable();
            self.tracked
                .retain(|pid, _| seen.binary_search(pid).is_ok());
        }
        rows.sort_unstable_by_key(|r: &ProcessInfo| r.pid);
        self.full = false;
        Ok(rows)
    }

    /// One pass over the tracked processes only (no walk of `/proc`): those
    /// an idle read would skip are read anyway if their pidfd says they
    /// ended (one `epoll_wait` returns just those). `None` if that failed
    /// (the caller walks instead).
    fn processes_known(&mut self, node: u32) -> Option<Vec<ProcessInfo>> {
        let ended = self.ends.as_ref()?.ended()?;
        let mut pids: Vec<i32> = self.tracked.keys().copied().collect();
        pids.sort_unstable();
        let mut rows = Vec::with_capacity(pids.len());
        for pid in pids {
            let blind = self.tracked.get(&pid).is_some_and(|t| t.pidfd.is_none());
            match self.sample_pid(pid, node, blind || ended.contains(&pid)) {
                Sampled::Row(row) => rows.push(*row),
                Sampled::Foreign => {}
                Sampled::Gone => {
                    self.tracked.remove(&pid);
                }
            }
        }
        self.full = false;
        Some(rows)
    }

    /// Makes the next pass read every process, idle ones too (after an
    /// action that may have changed one: a signal, a renice, a write).
    pub fn read_all_next(&mut self) {
        self.full = true;
    }

    /// Samples one PID; `read_anyway` reads it even if it is idle and not due.
    fn sample_pid(&mut self, pid: i32, node: u32, read_anyway: bool) -> Sampled {
        // A process asleep for a while is read only every few passes; its
        // last row stands in between (the kernel formatting a thousand
        // `stat` files is most of what sampling costs).
        let due = read_anyway
            || self.full
            || (self.passes.wrapping_add(pid.unsigned_abs().into())) % IDLE_EVERY == 0;
        if !due
            && let Some(t) = self.tracked.get(&pid)
            && t.idle_reads >= IDLE_AFTER
            && !t.foreign
            && let Some((row, _)) = &t.last
        {
            return Sampled::Row(row.clone());
        }
        let mut fresh = false;
        // The new `comm` when the process called exec since the last pass.
        let mut exec: Option<Vec<u8>> = None;
        let known = match self.tracked.get(&pid) {
            Some(t) => {
                let read = match &t.stat {
                    Some(f) => read_at_into(f, &mut self.buf),
                    None => read_path_into(&format!("/proc/{pid}/stat"), &mut self.buf),
                };
                read.ok()
                    .and_then(|_| parse_stat(&self.buf))
                    .filter(|(s, _)| s.start_ticks == t.start_ticks)
                    .map(|(s, comm)| {
                        if comm != t.comm.as_slice() {
                            exec = Some(comm.to_vec());
                        }
                        s
                    })
            }
            None => None,
        };
        let fields = match known {
            Some(f) => f,
            None => {
                self.tracked.remove(&pid);
                let Some(t) = self.track(pid) else {
                    return Sampled::Gone;
                };
                let Some((f, _)) = parse_stat(&self.buf) else {
                    return Sampled::Gone;
                };
                fresh = true;
                self.tracked.insert(pid, t);
                f
            }
        };
        if exec.is_none()
            && fields.state != 'Z'
            && let Some(t) = self.tracked.get(&pid)
            && t.cmdline_pending
        {
            exec = Some(t.comm.clone());
        }
        if let Some(comm) = exec {
            self.refresh_after_exec(pid, comm);
        }
        let Some(t) = self.tracked.get_mut(&pid) else {
            return Sampled::Gone;
        };
        if t.foreign {
            return Sampled::Foreign;
        }
        // Over the time since its last read (an idle one is not read every
        // pass); a process read for the first time has no share yet.
        let now = Instant::now();
        let since = t
            .last
            .as_ref()
            .map(|(_, at)| now.duration_since(*at).as_secs_f64())
            .filter(|p| *p > 0.0);
        let used = fields.ticks.saturating_sub(t.last_ticks);
        let cpu = match since {
            Some(p) if !fresh => (used as f64 / self.clk_tck / p * 100.0) as f32,
            _ => 0.0,
        };
        t.idle_reads = if used == 0 && fields.state != 'R' && !fresh {
            t.idle_reads.saturating_add(1)
        } else {
            0
        };
        t.last_ticks = fields.ticks;
        let cantmove = crate::classify::quick_reason(&fields, t.kernel_thread, pid == self.own_pid)
            .unwrap_or("");
        if t.tty.0 != fields.tty_nr {
            t.tty = (fields.tty_nr, hpc::tty::name(fields.tty_nr));
        }
        let ps = PsFields {
            vsize: fields.vsize,
            cpu_ms: (fields.ticks as f64 * 1000.0 / self.clk_tck) as u64,
            tty: t.tty.1.clone(),
            flags: ps_flags(pid, &fields),
        };
        let row = Box::new(ProcessInfo {
            pid,
            ppid: fields.ppid,
            user: t.user.clone(),
            uid: t.uid,
            state: fields.state,
            nice: fields.nice,
            cpu,
            rss: fields.rss_pages * self.page_size,
            threads: fields.threads,
            start_time: self.boot_time + (fields.start_ticks as f64 / self.clk_tck) as u64,
            cmdline: t.cmdline.clone(),
            home: node,
            home_pid: pid,
            where_: node,
            lock: true,
            cantmove: cantmove.to_string(),
            nmigs: 0,
            decay: DecayClass::Slow,
            mask: Default::default(),
            ps,
        });
        t.last = Some((row.clone(), now));
        Sampled::Row(row)
    }

    /// Opens a new PID's `stat` (left in `self.buf`) and reads its static data.
    fn track(&mut self, pid: i32) -> Option<Tracked> {
        // Two descriptors a process: within the budget, or neither.
        let keep = self.tracked.len().saturating_mul(2) < self.fd_budget;
        // Opened before `stat`: should the PID be reused in between, the
        // pidfd reads as ended and the process is simply read every pass.
        let pidfd = if keep {
            pidfd_open(pid).filter(|fd| self.ends.as_ref().is_some_and(|e| e.watch(fd, pid)))
        } else {
            None
        };
        let mut file = File::open(format!("/proc/{pid}/stat")).ok()?;
        let uid = file.metadata().ok()?.uid();
        self.buf.clear();
        file.read_to_end(&mut self.buf).ok()?;
        let (fields, comm) = parse_stat(&self.buf)?;
        let comm_raw = comm.to_vec();
        let comm = String::from_utf8_lossy(comm).into_owned();
        let kernel_thread = fields.flags & PF_KTHREAD != 0;
        let args = if kernel_thread {
            None
        } else {
            read_cmdline(pid).filter(|c| !c.is_empty())
        };
        let cmdline_pending = !kernel_thread && args.is_none();
        let cmdline = args.unwrap_or_else(|| format!("[{comm}]"));
        let foreign = self
            .scope_netns
            .is_some_and(|own| netns_of(&pid.to_string()) != Some(own));
        Some(Tracked {
            stat: keep.then_some(file),
            pidfd,
            start_ticks: fields.start_ticks,
            last_ticks: fields.ticks,
            uid,
            user: self.users.name(uid),
            cmdline,
            cmdline_pending,
            comm: comm_raw,
            kernel_thread,
            foreign,
            last: None,
            idle_reads: 0,
            tty: (fields.tty_nr, hpc::tty::name(fields.tty_nr)),
        })
    }

    /// After exec (`comm` became `comm`), or to retry a command line found
    /// empty, re-reads the command line and the owner (a setuid program
    /// changes it).
    fn refresh_after_exec(&mut self, pid: i32, comm: Vec<u8>) {
        let Some(t) = self.tracked.get_mut(&pid) else {
            return;
        };
        if t.kernel_thread {
            return;
        }
        let name = String::from_utf8_lossy(&comm).into_owned();
        t.comm = comm;
        match read_cmdline(pid).filter(|c| !c.is_empty()) {
            Some(args) => {
                t.cmdline = args;
                t.cmdline_pending = false;
            }
            None => {
                t.cmdline = format!("[{name}]");
                t.cmdline_pending = true;
            }
        }
        if let Some(uid) = t
            .stat
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.uid())
            && uid != t.uid
        {
            t.uid = uid;
            t.user = self.users.name(uid);
        }
    }
}

/// What one PID's pass produced.
enum Sampled {
    Row(Box<ProcessInfo>),
    Foreign,
    Gone,
}

/// `ps`'s flags after the state letter, from one `stat` read.
pub fn ps_flags(pid: i32, f: &StatFields) -> String {
    let mut flags = String::new();
    if f.nice < 0 {
        flags.push('<');
    } else if f.nice > 0 {
        flags.push('N');
    }
    if f.session == pid {
        flags.push('s');
    }
    if f.threads > 1 {
        flags.push('l');
    }
    if f.tty_nr != 0 && f.tpgid == f.pgrp && f.pgrp > 0 {
        flags.push('+');
    }
    flags
}

/// The network namespace inode of `/proc/<who>`.
fn netns_of(who: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{who}/ns/net")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn read_cmdline(pid: i32) -> Option<String> {
    let mut raw = Vec::new();
    File::open(format!("/proc/{pid}/cmdline"))
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut raw)
        .ok()?;
    while raw.last() == Some(&0) {
        raw.pop();
    }
    for b in raw.iter_mut() {
        if *b == 0 {
            *b = b' ';
        }
    }
    Some(String::from_utf8_lossy(&raw).into_owned())
}

fn psi_some_avg10(text: &[u8]) -> Option<f64> {
    let line = text
        .split(|&b| b == b'\n')
        .find(|l| l.starts_with(b"some "))?;
    let s = std::str::from_utf8(line).ok()?;
    s.split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))
        .and_then(|v| v.parse().ok())
}

fn read_into(path: &str, buf: &mut Vec<u8>) -> std::io::Result<()> {
    read_path_into(path, buf)
}

fn read_path_into(path: &str, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    File::open(path)?.read_to_end(buf)?;
    Ok(())
}

fn read_at_into(file: &File, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    buf.resize(buf.capacity().max(1024), 0);
    let mut filled = 0;
    while let Some(free) = buf.get_mut(filled..) {
        let n = file.read_at(free, filled as u64)?;
        filled += n;
        if n == 0 || filled < buf.len() {
            break;
        }
        buf.resize(buf.len() * 2, 0);
    }
    buf.truncate(filled);
    Ok(())
}

/// An epoll set of the tracked processes' pidfds: one call returns the
/// ones that ended, however many are watched. A pidfd leaves the set when
/// it is closed (its process no longer tracked).
struct Ends {
    epoll: std::os::fd::OwnedFd,
}

impl Ends {
    fn new() -> Option<Self> {
        // SAFETY: epoll_create1 takes flags and returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
        let epoll = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
        Some(Self { epoll })
    }

    /// Watches `pidfd` (process `pid`); false if it cannot.
    fn watch(&self, pidfd: &std::os::fd::OwnedFd, pid: i32) -> bool {
        use std::os::fd::AsRawFd;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: u64::from(pid.unsigned_abs()),
        };
        // SAFETY: both descriptors are open (owned by the caller and by
        // `self`), and `ev` is a valid event the call only reads.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                pidfd.as_raw_fd(),
                &mut ev,
            ) == 0
        }
    }

    /// The PIDs whose processes ended (still zombies, or gone), without
    /// waiting; `None` if the kernel said no.
    fn ended(&self) -> Option<HashSet<i32>> {
        use std::os::fd::AsRawFd;
        let mut out = HashSet::new();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        loop {
            // SAFETY: `events` is a live array of 64 epoll_event structs the
            // call writes at most 64 of.
            let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 64, 0) };
            let n = usize::try_from(n).ok()?;
            let before = out.len();
            out.extend(
                events
                    .iter()
                    .take(n)
                    .filter_map(|e| i32::try_from(e.u64).ok()),
            );
            // A full batch may hide more. Ended processes stay ready (level
            // triggered, and epoll hands ready ones out in turn) until their
            // pidfd is closed, so a batch with none new means all were seen.
            if n < events.len() || out.len() == before {
                return Some(out);
            }
        }
    }
}

/// The size of a memory page (what `rss` in `stat` counts in).
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}

/// A pidfd of `pid` (readable once it has ended), if the kernel has them.
pub fn pidfd_open(pid: i32) -> Option<std::os::fd::OwnedFd> {
    // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    Some(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// Raises the soft open-file limit to the hard limit; returns the new soft limit.
fn raise_fd_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    let wanted = lim.rlim_max.min(1 << 20);
    if wanted > lim.rlim_cur {
        let new = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            return wanted as usize;
        }
    }
    lim.rlim_cur as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_and_parens_in_comm() {
        let line = b"4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 5 3 0 12345 1000000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 2 0 0 0\n";
        let (s, comm) = parse_stat(line).unwrap();
        assert_eq!(comm, b"a) b (c");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.ticks, 300);
        assert_eq!(s.nice, 5);
        assert_eq!(s.threads, 3);
        assert_eq!(s.start_ticks, 12345);
        assert_eq!(s.rss_pages, 300);
        assert_eq!(s.policy, 2);
    }

    #[test]
    fn samples_this_process_and_the_node() {
        let mut s = Sampler::new();
        let node = s.node().unwrap();
        assert!(node.cpus >= 1 && node.mem_total > 0 && node.mem_available <= node.mem_total);
        let rows = s.processes(7).unwrap();
        let me = rows
            .iter()
            .find(|r| r.pid == std::process::id() as i32)
            .unwrap();
        assert_eq!(me.home, 7);
        assert!(me.rss > 0 && me.threads >= 1);
        assert!(me.cmdline.contains("agent"), "{}", me.cmdline);
        // second pass reuses descriptors and computes CPU%
        std::thread::sleep(std::time::Duration::from_millis(20));
        let rows2 = s.processes(7).unwrap();
        assert!(rows2.iter().any(|r| r.pid == me.pid));
    }

    #[test]
    fn a_pass_without_a_walk_sees_ends_and_zombies() {
        let mut s = Sampler::new();
        let mut ends = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut zombie = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let (ends_pid, zombie_pid) = (ends.id() as i32, zombie.id() as i32);
        // Three walks make both idle (read every fifth pass only).
        for _ in 0..4 {
            s.node().unwrap();
            let rows = s.processes(1).unwrap();
            assert!(rows.iter().any(|r| r.pid == zombie_pid));
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        ends.kill().unwrap();
        ends.wait().unwrap();
        zombie.kill().unwrap();
        // Not reaped: a zombie until the end of the test.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let rows = loop {
            let rows = s.processes_known(1).unwrap();
            let z = rows.iter().find(|r| r.pid == zombie_pid).map(|r| r.state);
            if z == Some('Z') || std::time::Instant::now() > deadline {
                break rows;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(
            !rows.iter().any(|r| r.pid == ends_pid),
            "an ended process is listed"
        );
        let z = rows.iter().find(|r| r.pid == zombie_pid).map(|r| r.state);
        assert_eq!(z, Some('Z'), "the zombie is listed as one");
        assert!(rows.iter().any(|r| r.pid == std::process::id() as i32));
        zombie.wait().unwrap();
        let rows = s.processes_known(1).unwrap();
        assert!(
            !rows.iter().any(|r| r.pid == zombie_pid),
            "a reaped zombie is listed"
        );
    }

    #[test]
    fn ends_returns_every_ended_process_past_one_batch() {
        let ends = Ends::new().unwrap();
        let mut kids: Vec<std::process::Child> = (0..100)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap()
            })
            .collect();
        let fds: Vec<_> = kids
            .iter()
            .map(|k| {
                let fd = pidfd_open(k.id() as i32).unwrap();
                assert!(ends.watch(&fd, k.id() as i32));
                fd
            })
            .collect();
        assert!(ends.ended().unwrap().is_empty());
        for k in &mut kids[..90] {
            k.kill().unwrap();
        }
        let want: HashSet<i32> = kids[..90].iter().map(|k| k.id() as i32).collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut got = ends.ended().unwrap();
        while got != want && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            got = ends.ended().unwrap();
        }
        for k in &mut kids {
            let _ = k.kill();
            let _ = k.wait();
        }
        drop(fds);
        assert_eq!(got, want);
    }

    #[test]
    fn command_line_follows_exec() {
        use std::io::Write;
        // The shell waits for a line on stdin before it execs, so the test
        // sees both command lines however loaded the machine is.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read x; exec sleep 30"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut s = Sampler::new();
        let mut wait_for = |want: &str| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let seen = s
                    .processes(1)
                    .unwrap()
                    .into_iter()
                    .find(|r| r.pid == pid)
                    .map(|r| r.cmdline);
                if seen.as_deref() == Some(want) || std::time::Instant::now() > deadline {
                    return seen;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        };
        let before = wait_for("sh -c read x; exec sleep 30");
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let after = wait_for("sleep 30");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(before.as_deref(), Some("sh -c read x; exec sleep 30"));
        assert_eq!(after.as_deref(), Some("sleep 30"));
    }

    #[test]
    fn a_command_line_read_in_the_middle_of_exec_is_read_again() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut s = Sampler::new();
        let row = |s: &mut Sampler| {
            s.processes(1)
                .unwrap()
                .into_iter()
                .find(|r| r.pid == pid)
                .map(|r| r.cmdline)
        };
        let first = row(&mut s);
        // What the first read sees when it falls between exec's new `comm`
        // and its new arguments: the name alone.
        let t = s.tracked.get_mut(&pid).unwrap();
        t.cmdline = "[sleep]".into();
        t.cmdline_pending = true;
        let next = row(&mut s);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(first.as_deref(), Some("sleep 30"));
        assert_eq!(next.as_deref(), Some("sleep 30"));
    }

    #[test]
    fn netns_scope_lists_only_the_own_namespace() {
        let mut other = std::process::Command::new("unshare")
            .args(["--net", "sleep", "30"])
            .spawn()
            .unwrap();
        let mut same = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        // unshare execs sleep in place, so the PID is the same process; wait
        // until it is in its new namespace (slow under load).
        let other_pid = other.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while netns_of(&other_pid.to_string()) == netns_of("self")
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let same_pid = same.id() as i32;
        let mut scoped = Sampler::scoped_to_own_netns().unwrap();
        let rows = scoped.processes(1).unwrap();
        let rows2 = scoped.processes(1).unwrap();
        let mut all = Sampler::new();
        let every = all.processes(1).unwrap();
        let _ = other.kill();
        let _ = other.wait();
        let _ = same.kill();
        let _ = same.wait();
        for r in [&rows, &rows2] {
            assert!(r.iter().any(|p| p.pid == same_pid));
            assert!(
                !r.iter().any(|p| p.pid == other_pid),
                "a process of another netns is listed"
            );
        }
        assert!(every.iter().any(|p| p.pid == other_pid));
    }
}
