//! Jobs: process trees started through the agent (`mosrun`, the app's execution
//! dialog), each in its own PID namespace so that CRIU can restore it on any
//! node without PID collisions.
//!
//! A job's identity is its home node and its command's PID there (`home_pid`).
//! The home agent keeps a record of every job it started, wherever the job runs;
//! the agent of a node that hosts a guest keeps a record too. Records are
//! persisted with the rest of the agent state, so a restarted agent still knows
//! where its processes are. The agent is the child subreaper of its node, so it
//! reaps every job that runs on it (restored jobs are adopted when CRIU exits)
//! and learns their exit status.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hpc::model::{NodeId, ProcessInfo};
use hpc::protocol::{JobInfo, RpcError, SpawnParams, codes};
use serde::{Deserialize, Serialize};

use crate::store::{PersistedState, Store};

/// A job as this agent persists it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// What every node may know of the job.
    #[serde(flatten)]
    pub info: JobInfo,
    /// The child of this agent whose exit ends the job here (0 = none): the
    /// `unshare` that started it at home, or the restored init it adopted.
    #[serde(default)]
    pub reap_pid: i32,
    /// When the job ended (ms since the Unix epoch).
    #[serde(default)]
    pub ended_ms: u64,
    /// A single process's deputy here at home (its original, stopped; 0: none).
    #[serde(default)]
    pub deputy: i32,
    /// Where a single process's placeholder writes how it ended (on the node
    /// it runs on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_file: Option<PathBuf>,
}

/// The persisted key of a job.
pub fn job_key(home: NodeId, home_pid: i32) -> String {
    format!("{home}/{home_pid}")
}

/// How long ended jobs stay listed by `job.status` at home.
pub const KEEP_ENDED: Duration = Duration::from_secs(3600);

/// The agent's jobs: persisted records plus what lives only in memory.
pub struct Jobs {
    store: Arc<Store>,
    node: NodeId,
    programs: Result<JobPrograms, String>,
    /// Last rows of this node's jobs that run elsewhere, refreshed from their hosts.
    remote_rows: Mutex<HashMap<i32, ProcessInfo>>,
    /// Children to reap that no record waits for any more.
    strays: Mutex<Vec<i32>>,
    /// Jobs being migrated now (by key).
    busy: Mutex<HashSet<String>>,
    /// `job.moved` notices their home has not taken yet (it was unreachable).
    pending_moves: Mutex<Vec<JobInfo>>,
}

/// Reserves a job for one migration; released when dropped.
pub struct BusyGuard<'a> {
    jobs: &'a Jobs,
    key: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut b) = self.jobs.busy.lock() {
            b.remove(&self.key);
        }
    }
}

fn store_error(e: crate::store::StoreError) -> RpcError {
    RpcError::new(codes::OS_ERROR, e.to_string())
}

impl Jobs {
    /// The jobs of node `node`, started with `programs` (or, when they could
    /// not be found, refused with that reason).
    pub fn new(store: Arc<Store>, node: NodeId, programs: Result<JobPrograms, String>) -> Self {
        Self {
            store,
            node,
            programs,
            remote_rows: Mutex::new(HashMap::new()),
            strays: Mutex::new(Vec::new()),
            busy: Mutex::new(HashSet::new()),
            pending_moves: Mutex::new(Vec::new()),
        }
    }

    /// Keeps a `job.moved` notice to send again later.
    pub fn defer_move_notice(&self, moved: JobInfo) {
        if let Ok(mut p) = self.pending_moves.lock() {
            p.push(moved);
        }
    }

    /// Takes the deferred `job.moved` notices.
    pub fn take_move_notices(&self) -> Vec<JobInfo> {
        self.pending_moves
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// All records.
    pub fn all(&self) -> Vec<JobRecord> {
        self.store.jobs()
    }

    /// Live guests: jobs of other nodes that run here.
    pub fn guests(&self) -> Vec<JobRecord> {
        self.all()
            .into_iter()
            .filter(|r| {
                r.info.home != self.node && r.info.where_ == self.node && r.info.exit.is_none()
            })
            .collect()
    }

    /// Live jobs of this node that run elsewhere.
    pub fn away_jobs(&self) -> Vec<JobRecord> {
        self.all()
            .into_iter()
            .filter(|r| {
                r.info.home == self.node && r.info.where_ != self.node && r.info.exit.is_none()
            })
            .collect()
    }

    /// The record of the live job that runs here and has `pid` (its command or
    /// its init) or has `pid` inside its PID namespace.
    pub fn running_here_with(&self, pid: i32) -> Option<JobRecord> {
        let here: Vec<JobRecord> = self
            .all()
            .into_iter()
            .filter(|j| j.info.where_ == self.node && j.info.exit.is_none())
            .collect();
        if let Some(j) = here
            .iter()
            .find(|j| j.info.pid == pid || j.info.root_pid == pid)
        {
            return Some(j.clone());
        }
        let ns = pid_ns(pid)?;
        // A single process not (yet) in a namespace of its own shares the
        // node's: nothing else is part of it.
        here.into_iter()
            .filter(|j| !(j.info.single && j.info.root_pid == j.info.pid))
            .find(|j| pid_ns(j.info.root_pid).is_some_and(|n| n == ns))
    }

    /// The local PID a caller means: a job of this node that came back home
    /// runs under a new PID, but is still addressed by its home PID.
    pub fn local_pid(&self, pid: i32) -> i32 {
        self.get(self.node, pid)
            .filter(|j| j.info.where_ == self.node && j.info.exit.is_none())
            .map(|j| j.info.pid)
            .unwrap_or(pid)
    }

    /// The record of this node's live job `home_pid` when it runs elsewhere.
    pub fn away(&self, home_pid: i32) -> Option<JobRecord> {
        self.get(self.node, home_pid)
            .filter(|j| j.info.where_ != self.node && j.info.exit.is_none())
    }

    /// The record of job `home/home_pid`, if this node has one.
    pub fn get(&self, home: NodeId, home_pid: i32) -> Option<JobRecord> {
        self.store.job(&job_key(home, home_pid))
    }

    /// Replaces (or adds) a record.
    pub fn put(&self, rec: JobRecord) -> Result<(), RpcError> {
        let key = job_key(rec.info.home, rec.info.home_pid);
        self.store
            .update(|s| {
                s.jobs.insert(key, rec);
            })
            .map_err(store_error)
    }

    /// Changes a record in place; false when there is none.
    pub fn modify(
        &self,
        home: NodeId,
        home_pid: i32,
        change: impl FnOnce(&mut JobRecord),
    ) -> Result<bool, RpcError> {
        let key = job_key(home, home_pid);
        self.store
            .update(|s| match s.jobs.get_mut(&key) {
                Some(r) => {
                    change(r);
                    true
                }
                None => false,
            })
            .map_err(store_error)
    }

    /// Removes a record; its child (if any) is still reaped.
    pub fn remove(&self, home: NodeId, home_pid: i32) -> Result<(), RpcError> {
        let key = job_key(home, home_pid);
        let removed = self
            .store
            .update(|s| s.jobs.remove(&key))
            .map_err(store_error)?;
        if let Some(r) = removed
            && r.reap_pid > 0
        {
            self.add_stray(r.reap_pid);
        }
        Ok(())
    }

    /// Stops treating the job's child as the job: the frozen source copy of a
    /// job that just moved is killed next, and its end is not the job's end.
    /// The child is still reaped.
    pub fn release_child(&self, home: NodeId, home_pid: i32) -> Result<(), RpcError> {
        let mut child = 0;
        self.modify(home, home_pid, |r| child = std::mem::take(&mut r.reap_pid))?;
        if child > 0 {
            self.add_stray(child);
        }
        Ok(())
    }

    /// Reaps `pid` later (a child no record waits for).
    pub fn add_stray(&self, pid: i32) {
        if let Ok(mut s) = self.strays.lock() {
            s.push(pid);
        }
    }

    /// Marks a job as being migrated; `None` when a migration of it is under way.
    pub fn reserve(&self, home: NodeId, home_pid: i32) -> Option<BusyGuard<'_>> {
        let key = job_key(home, home_pid);
        let mut b = self.busy.lock().ok()?;
        if !b.insert(key.clone()) {
            return None;
        }
        Some(BusyGuard { jobs: self, key })
    }

    /// Whether a migration of job `home/home_pid` is under way here.
    pub fn is_busy(&self, home: NodeId, home_pid: i32) -> bool {
        self.busy
            .lock()
            .map(|b| b.contains(&job_key(home, home_pid)))
            .unwrap_or(false)
    }

    /// Remembers the latest row of a job that runs elsewhere.
    pub fn set_remote_row(&self, home_pid: i32, row: ProcessInfo) {
        if let Ok(mut r) = self.remote_rows.lock() {
            r.insert(home_pid, row);
        }
    }

    /// Marks the rows of jobs running here with their identity and settings,
    /// and adds a row for each of this node's jobs that runs elsewhere (with
    /// `where` = that node), keeping the table sorted by PID.
    pub fn annotate(&self, state: &PersistedState, procs: &mut Vec<ProcessInfo>) {
        if state.jobs.is_empty() {
            return;
        }
        let mut by_pid: HashMap<i32, &JobInfo> = HashMap::new();
        for j in state.jobs.values().map(|r| &r.info) {
            if j.where_ == self.node && j.exit.is_none() {
                by_pid.insert(j.pid, j);
                by_pid.insert(j.root_pid, j);
            }
        }
        for row in procs.iter_mut() {
            if let Some(j) = by_pid.get(&row.pid) {
                mark(row, j);
            }
        }
        inherit_from_jobs(state, &by_pid, procs);
        let remote = self
            .remote_rows
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let mut added = false;
        // A single process's deputy is shown as the process it stands for:
        // hidden while the process runs here (its row is the process's), the
        // process's row in its place while it runs elsewhere.
        let mut hidden = Vec::new();
        for r in state.jobs.values() {
            let j = &r.info;
            if r.deputy <= 0 || j.exit.is_some() {
                continue;
            }
            let Ok(i) = procs.binary_search_by_key(&r.deputy, |p| p.pid) else {
                continue;
            };
            if j.where_ == self.node {
                hidden.push(r.deputy);
                continue;
            }
            let mut row = away_row(&remote, j);
            if let Some(deputy) = procs.get_mut(i) {
                row.pid = deputy.pid;
                row.ppid = deputy.ppid;
                *deputy = row;
            }
        }
        if !hidden.is_empty() {
            procs.retain(|p| !hidden.contains(&p.pid));
        }
        for r in state.jobs.values() {
            let j = &r.info;
            if j.home != self.node || j.where_ == self.node || j.exit.is_some() || r.deputy > 0 {
                continue;
            }
            if procs.binary_search_by_key(&j.home_pid, |p| p.pid).is_ok() {
                tracing::debug!(
                    pid = j.home_pid,
                    "home PID of a migrated job is reused locally; not listed"
                );
                continue;
            }
            let mut row = away_row(&remote, j);
            row.pid = j.home_pid;
            row.ppid = 0;
            procs.push(row);
            added = true;
        }
        if added {
            procs.sort_by_key(|p| p.pid);
        }
    }

    /// Starts a job: `unshare --pid --fork openmosix-jobinit … -- CMD`, waits
    /// until its command runs and records it. `unshare` and `openmosix-jobinit`
    /// run as root with a fixed environment; the job's own environment goes
    /// through the start pipe and reaches only CMD, after it became its user.
    /// `privileged` callers (admins) have the program and directory checked
    /// as root; others as the job's user.
    pub async fn spawn(&self, p: SpawnParams, privileged: bool) -> Result<JobInfo, RpcError> {
        let programs = self.programs.as_ref().map_err(|why| {
            RpcError::new(codes::UNAVAILABLE, format!("cannot start jobs: {why}"))
        })?;
        let program = p
            .argv
            .first()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| RpcError::invalid_params("argv must name a program"))?;
        let groups = crate::users::groups_of(p.uid);
        let me = Identity {
            uid: p.uid,
            gids: if groups.is_empty() {
                vec![p.gid]
            } else {
                groups.clone()
            },
            privileged,
        };
        if !Path::new(&p.cwd).is_absolute() || !me.can_enter(Path::new(&p.cwd)) {
            return Err(RpcError::invalid_params(format!(
                "working directory `{}` is not an existing absolute directory that uid {} may enter",
                p.cwd, p.uid
            )));
        }
        let path_var = p
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| DEFAULT_JOB_PATH.into());
        find_program(program, &p.cwd, &path_var, &me).ok_or_else(|| {
            RpcError::invalid_params(format!(
                "no such program: `{program}` (not found, or not executable by uid {}; PATH={path_var})",
                p.uid
            ))
        })?;
        let env = encode_env(&p.env)?;
        let stdout = p.stdout.clone().unwrap_or_else(|| "/dev/null".into());
        let stderr = p.stderr.clone().unwrap_or_else(|| stdout.clone());
        // The command waits on this pipe until the job is recorded, so that even
        // a program that ends at once is known by its PID first; then it reads
        // its environment from it.
        let (sync_read, sync_write) = crate::helpers::cloexec_pipe().map_err(|e| {
            RpcError::new(codes::OS_ERROR, format!("cannot start the job (pipe): {e}"))
        })?;
        let group_list: Vec<String> = groups.iter().map(u32::to_string).collect();
        let mut cmd = crate::helpers::root_command(&programs.unshare);
        cmd.arg("--pid")
            .arg("--fork")
            .arg(&programs.jobinit)
            .args(["--uid", &p.uid.to_string(), "--gid", &p.gid.to_string()])
            .args(["--groups", &group_list.join(",")])
            .args(["--cwd", &p.cwd, "--stdout", &stdout, "--stderr", &stderr])
            .args(["--sync-fd", &SYNC_FD.to_string()])
            .arg("--")
            .args(&p.argv)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let raw_read = sync_read.as_raw_fd();
        // SAFETY: dup2 is async-signal-safe; it gives the child the pipe's read
        // end as SYNC_FD (dup2 clears close-on-exec on the copy).
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw_read, SYNC_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let spawned = cmd.spawn();
        drop(sync_read);
        let child = spawned.map_err(|e| {
            RpcError::new(
                codes::OS_ERROR,
                format!("cannot start the job ({}): {e}", programs.unshare.display()),
            )
        })?;
        let unshare_pid = child.id() as i32;
        // The Child handle is dropped without waiting: the reaper waits for it.
        drop(child);
        let root = first_child_within(unshare_pid, Duration::from_secs(3)).await;
        let main = match root {
            Some(r) => first_child_within(r, Duration::from_secs(3)).await,
            None => None,
        };
        let (Some(root), Some(main)) = (root, main) else {
            drop(sync_write);
            self.add_stray(unshare_pid);
            return Err(RpcError::new(
                codes::OS_ERROR,
                format!("the job `{program}` ended before it could be recorded"),
            ));
        };
        let info = JobInfo {
            home: self.node,
            home_pid: main,
            where_: self.node,
            pid: main,
            root_pid: root,
            cmdline: p.argv.join(" "),
            uid: p.uid,
            user: crate::users::UserNames::default().name(p.uid),
            start_time: now_ms() / 1000,
            nmigs: 0,
            lock: p.lock,
            decay: p.decay,
            mask: Default::default(),
            exit: None,
            signal: None,
            single: false,
            vpid: 0,
            last_migration: None,
        };
        let recorded = self.put(JobRecord {
            info: info.clone(),
            reap_pid: unshare_pid,
            ..Default::default()
        });
        if let Err(e) = recorded {
            crate::migration::criu_cmd::kill_job(root);
            self.add_stray(unshare_pid);
            return Err(e);
        }
        // Let the command start: its environment, then end of file.
        let handed = tokio::task::spawn_blocking(move || {
            let mut w = std::fs::File::from(sync_write);
            std::io::Write::write_all(&mut w, &env)
        })
        .await;
        if !matches!(handed, Ok(Ok(()))) {
            tracing::warn!(pid = main, "the job ended before it took its environment");
        }
        tracing::info!(pid = main, uid = p.uid, cmd = %info.cmdline, "job started");
        Ok(info)
    }

    /// One pass of the reaper: waits (without blocking) for every child this
    /// agent is responsible for; records exit codes. Returns guests that ended
    /// and whose home must be told.
    pub fn reap(&self) -> Vec<JobRecord> {
        if let Ok(mut strays) = self.strays.lock() {
            strays.retain(|pid| try_wait(*pid).is_none());
        }
        let all = self.all();
        let mut changed = false;
        for r in all.iter().filter(|r| r.reap_pid > 0) {
            let Some(code) = try_wait(r.reap_pid) else {
                continue;
            };
            changed = true;
            // A single process's placeholder wrote how it really ended; a
            // job's init did too (read when this agent was not its parent).
            let by_init = ended_file(r);
            let end = r
                .status_file
                .as_deref()
                .and_then(end_in_file)
                .or_else(|| by_init.as_deref().and_then(end_in_file));
            if let Some(f) = &by_init {
                let _ = std::fs::remove_file(f);
            }
            let (code, signal) = match end {
                Some(crate::deputy::End::Exit(c)) => (c, None),
                Some(crate::deputy::End::Signal(s)) => (128 + s, Some(s)),
                None => (code, None),
            };
            if let Some(f) = &r.status_file {
                let _ = std::fs::remove_file(f);
            }
            // Decided on the record as it is now, not on the copy above: a
            // migration may have moved the job meanwhile.
            let mut ended = false;
            let result = self.modify(r.info.home, r.info.home_pid, |rec| {
                if rec.reap_pid != r.reap_pid {
                    return;
                }
                rec.reap_pid = 0;
                rec.status_file = None;
                if rec.info.where_ == self.node && rec.info.exit.is_none() {
                    rec.info.exit = Some(code);
                    rec.info.signal = signal;
                    rec.ended_ms = now_ms();
                    ended = true;
                }
            });
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot record a job's end");
            }
            if ended {
                tracing::info!(home = r.info.home, pid = r.info.home_pid, code, "job ended");
            }
        }
        // This node's ended jobs stay listed for a while; an ended guest stays
        // until its home was told (the caller removes it then).
        let cutoff = now_ms().saturating_sub(KEEP_ENDED.as_millis() as u64);
        let keep = |r: &JobRecord| {
            r.info.exit.is_none() || r.info.home != self.node || r.ended_ms > cutoff
        };
        if !all.iter().all(keep) {
            changed = true;
            let _ = self.store.update(|s| s.jobs.retain(|_, r| keep(r)));
        }
        let now = if changed { self.all() } else { all };
        now.into_iter()
            .filter(|r| r.info.home != self.node && r.info.exit.is_some())
            .collect()
    }
}

/// The processes a job forked (its command's descendants) may move as the
/// job may: they take its lock and cluster mask, unless set on their own.
fn inherit_from_jobs(
    state: &PersistedState,
    jobs: &HashMap<i32, &JobInfo>,
    procs: &mut [ProcessInfo],
) {
    let parent: HashMap<i32, i32> = procs.iter().map(|p| (p.pid, p.ppid)).collect();
    for row in procs.iter_mut() {
        if jobs.contains_key(&row.pid) {
            continue;
        }
        let mut up = row.ppid;
        // Bounded: a PID table read while it changes may hold a cycle.
        for _ in 0..64 {
            if up <= 1 {
                break;
            }
            if let Some(j) = jobs.get(&up).filter(|j| !j.single) {
                let own = state
                    .processes
                    .get(&crate::store::key_string((row.pid, row.start_time)));
                if own.and_then(|s| s.lock).is_none() {
                    row.lock = j.lock;
                }
                if own.and_then(|s| s.mask).is_none() {
                    row.mask = j.mask;
                }
                break;
            }
            up = parent.get(&up).copied().unwrap_or(0);
        }
    }
}

fn mark(row: &mut ProcessInfo, j: &JobInfo) {
    row.home = j.home;
    row.home_pid = j.home_pid;
    row.where_ = j.where_;
    row.nmigs = j.nmigs;
    row.lock = j.lock;
    if let Some(d) = j.decay {
        row.decay = d;
    }
    row.mask = j.mask;
}

/// The row of a job that runs elsewhere: its host's last row of it (or one
/// made from its record), marked with its identity and settings.
fn away_row(remote: &HashMap<i32, ProcessInfo>, j: &JobInfo) -> ProcessInfo {
    let mut row = remote
        .get(&j.home_pid)
        .cloned()
        .unwrap_or_else(|| placeholder_row(j));
    mark(&mut row, j);
    row
}

fn placeholder_row(j: &JobInfo) -> ProcessInfo {
    ProcessInfo {
        pid: j.home_pid,
        ppid: 0,
        user: j.user.clone(),
        uid: j.uid,
        state: 'R',
        nice: 0,
        cpu: 0.0,
        rss: 0,
        threads: 1,
        start_time: j.start_time,
        cmdline: j.cmdline.clone(),
        home: j.home,
        home_pid: j.home_pid,
        where_: j.where_,
        lock: j.lock,
        cantmove: String::new(),
        nmigs: j.nmigs,
        decay: j.decay.unwrap_or_default(),
        mask: j.mask,
        ps: Default::default(),
    }
}

pub use hpc::clock::now_ms;

/// The PID namespace of a process (the inode of `/proc/PID/ns/pid`).
pub fn pid_ns(pid: i32) -> Option<u64> {
    namespace(pid, "pid")
}

/// The namespace of kind `kind` (`pid`, `mnt`, …) `pid` is in (its inode).
pub fn namespace(pid: i32, kind: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|m| m.ino())
}

/// The namespace of kind `kind` `pid` is in, when it is not the agent's own
/// (a job's PID namespace, a container's mount namespace).
pub fn other_namespace(pid: i32, kind: &str) -> Option<u64> {
    let theirs = namespace(pid, kind)?;
    let ours = namespace(std::process::id() as i32, kind)?;
    (theirs != ours).then_some(theirs)
}

/// The PID `pid` has in its own (innermost) PID namespace, from `NSpid`.
pub fn inner_pid(pid: i32) -> i32 {
    crate::sampler::status_field(pid, "NSpid:", |v| v.split_whitespace().last()?.parse().ok())
        .unwrap_or(pid)
}

/// The children of a process (all its threads'), from `/proc/PID/task/*/children`.
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// The first child of `pid` once it has one, waiting at most `limit` (None
/// if it has none by then, or is gone).
pub async fn first_child_within(pid: i32, limit: Duration) -> Option<i32> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(c) = children(pid).first() {
            return Some(*c);
        }
        if tokio::time::Instant::now() >= deadline || !Path::new(&format!("/proc/{pid}")).exists() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A placeholder namespace started for a single process to be restored in.
#[derive(Debug, Clone)]
pub struct Placeholder {
    /// The agent's child (`unshare`), whose exit ends it.
    pub unshare: i32,
    /// Its init (`openmosix-jobinit --placeholder`), PID 1 inside.
    pub init: i32,
    /// Where the init writes how the process ended.
    pub status_file: PathBuf,
}

impl Jobs {
    /// Starts a placeholder PID namespace whose init waits for the process
    /// that will have PID `wait_for` in it; ready when this returns.
    pub async fn start_placeholder(
        &self,
        wait_for: i32,
        status_file: PathBuf,
    ) -> Result<Placeholder, String> {
        let programs = self.programs.as_ref().map_err(|why| why.clone())?;
        let pid_max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(32768);
        // The helpers that enter the namespace take PIDs after this one: far
        // from the process's own.
        let last = if wait_for > pid_max / 2 {
            300
        } else {
            pid_max - 1000
        };
        let child = crate::helpers::root_command(&programs.unshare)
            .args(["--pid", "--fork"])
            .arg(&programs.jobinit)
            .arg("--placeholder")
            .arg(wait_for.to_string())
            .arg(last.to_string())
            .arg(&status_file)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start a namespace for it: {e}"))?;
        let unshare = child.id() as i32;
        // Dropped without waiting: the reaper waits for it.
        drop(child);
        let started = Placeholder {
            unshare,
            init: first_child_within(unshare, Duration::from_secs(3))
                .await
                .unwrap_or(0),
            status_file,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let ready =
                std::fs::read_to_string(&started.status_file).is_ok_and(|s| s.starts_with("ready"));
            if ready && started.init > 0 {
                return Ok(started);
            }
            if tokio::time::Instant::now() >= deadline {
                crate::migration::criu_cmd::kill_job(started.init);
                self.add_stray(unshare);
                return Err("its namespace did not start".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Where the init of job `r` wrote how its command ended, if it did and
/// after the job started (a file left by an earlier init with the same PID
/// does not count).
fn ended_file(r: &JobRecord) -> Option<PathBuf> {
    if r.info.single || r.info.root_pid <= 0 {
        return None;
    }
    let path = Path::new(hpc::paths::ENDED_DIR).join(r.info.root_pid.to_string());
    let written = std::fs::symlink_metadata(&path).ok()?.modified().ok()?;
    let started = std::time::UNIX_EPOCH + Duration::from_secs(r.info.start_time);
    (written >= started).then_some(path)
}

/// How a process ended, as its init (a placeholder's or a job's) wrote it:
/// `exit N` or `signal N`.
pub fn end_in_file(status_file: &Path) -> Option<crate::deputy::End> {
    let text = std::fs::read_to_string(status_file).ok()?;
    let (kind, n) = text.trim().split_once(' ')?;
    let n: i32 = n.parse().ok()?;
    match kind {
        "exit" => Some(crate::deputy::End::Exit(n)),
        "signal" => Some(crate::deputy::End::Signal(n)),
        _ => None,
    }
}

/// The programs a job is started with.
#[derive(Debug, Clone)]
pub struct JobPrograms {
    /// `unshare` (util-linux), by absolute path.
    pub unshare: PathBuf,
    /// `openmosix-jobinit`, by absolute path.
    pub jobinit: PathBuf,
}

impl JobPrograms {
    /// `unshare` from the system directories and `jobinit` as given, both
    /// checked to be changeable by root only (they run as root).
    pub fn locate(jobinit: PathBuf) -> Result<Self, String> {
        crate::helpers::check_trusted(&jobinit)?;
        Ok(Self {
            unshare: crate::helpers::locate("unshare")?,
            jobinit,
        })
    }
}

/// The `PATH` a job gets when its caller sends none.
pub const DEFAULT_JOB_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Largest environment a job may be given (bytes of `NAME=value\0` pairs).
pub const MAX_ENV_BYTES: usize = 256 * 1024;

/// The job's environment as `NAME=value\0` pairs, as `openmosix-jobinit` reads it.
fn encode_env(env: &[(String, String)]) -> Result<Vec<u8>, RpcError> {
    let mut out = Vec::new();
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(RpcError::invalid_params(format!(
                "environment variable name `{k}` or its value is not valid (no `=` in names, no NUL bytes)"
            )));
        }
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
        if out.len() > MAX_ENV_BYTES {
            return Err(RpcError::invalid_params(format!(
                "the job's environment exceeds {MAX_ENV_BYTES} bytes"
            )));
        }
    }
    Ok(out)
}

/// Who a job runs as, for checking what it may reach before starting it.
struct Identity {
    uid: u32,
    gids: Vec<u32>,
    /// Checks are made as root (an admin's request).
    privileged: bool,
}

impl Identity {
    /// Whether the permission bits of `meta` grant `bits` (a mask of r=4,
    /// w=2, x=1) to this identity.
    fn granted(&self, meta: &std::fs::Metadata, bits: u32) -> bool {
        use std::os::unix::fs::MetadataExt;
        if self.privileged {
            return bits & 1 == 0 || meta.mode() & 0o111 != 0 || meta.is_dir();
        }
        let mode = meta.mode();
        let class = if meta.uid() == self.uid {
            mode >> 6
        } else if self.gids.contains(&meta.gid()) {
            mode >> 3
        } else {
            mode
        };
        class & bits == bits
    }

    /// Whether every directory from `/` down to `path` may be searched, and
    /// `path` is a directory.
    fn can_enter(&self, path: &Path) -> bool {
        let mut at = PathBuf::new();
        for c in path.components() {
            at.push(c);
            let Ok(meta) = std::fs::metadata(&at) else {
                return false;
            };
            if !meta.is_dir() || !self.granted(&meta, 1) {
                return false;
            }
        }
        true
    }

    /// Whether `path` is a file this identity may execute.
    fn can_execute(&self, path: &Path) -> bool {
        let Some(dir) = path.parent() else {
            return false;
        };
        self.can_enter(dir)
            && std::fs::metadata(path).is_ok_and(|m| m.is_file() && self.granted(&m, 1))
    }
}

fn find_program(program: &str, cwd: &str, path_var: &str, who: &Identity) -> Option<PathBuf> {
    if program.contains('/') {
        let p = Path::new(cwd).join(program);
        return who.can_execute(&p).then_some(p);
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(cwd).join(d).join(program))
        .find(|p| who.can_execute(p))
}

/// `waitpid(pid, WNOHANG)`: the exit code (128 + N for signal N) once the
/// child ended, `None` while it runs. A PID that is not our child counts as
/// ended with code -1 (someone else reaped it).
fn try_wait(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waitpid writes the status into a valid local integer.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    match r {
        0 => None,
        r if r == pid => Some(if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        }),
        // Not this agent's child (a previous run of the agent started it):
        // running while it exists; its status, once gone, is unknown here
        // (a single process's placeholder wrote it down).
        _ if alive(pid) => None,
        _ => Some(-1),
    }
}

/// Waits until none of `pids` runs any more (gone or a zombie), for at
/// most `within`; whether they all ended.
pub async fn ended_within(pids: &[i32], within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if !pids.iter().any(|p| alive(*p)) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

/// The descriptor number the job's command finds the start pipe at.
const SYNC_FD: i32 = 3;

/// Makes this process the child subreaper of its descendants, so jobs restored
/// by CRIU (whose parent, CRIU, exits) become the agent's children.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
