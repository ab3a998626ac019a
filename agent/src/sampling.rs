//! The sampling loop: once a second, read the node ([`Sampler`]), apply the
//! persisted per-process settings, smooth the load, publish a [`Snapshot`] and
//! gossip the node's status. Runs on its own thread (it does blocking `/proc` I/O)
//! and hands results over a watch channel, like bottom's collector thread.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hpc::model::{Liveness, NodeId, NodeStatus, ProcessInfo};
use tokio::sync::watch;

use crate::context::Snapshot;
use crate::load::{LoadTracker, raw_load};
use crate::sampler::Sampler;
use crate::store::{PersistedState, ProcSettings, Store, key_string};

/// Sampling period.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Static facts the loop stamps on every status.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// openMosix id.
    pub id: NodeId,
    /// Name shown for the node.
    pub name: String,
    /// RPC address.
    pub addr: String,
    /// Migration availability, as shown in the status.
    pub migration: String,
    /// The agent's SSH host public key (OpenSSH format).
    pub host_key: String,
}

/// How often unlocked processes that used CPU are classified in depth.
pub const DEEP_CLASSIFY_EVERY: Duration = Duration::from_secs(5);

/// How often idle unlocked processes are (those the balancer does not move
/// for their load; a move re-checks anyway): from this, plus up to half as
/// much again by PID, so that a thousand sleepers are not all re-read in one
/// pass.
pub const DEEP_CLASSIFY_IDLE_EVERY: Duration = Duration::from_secs(60);

/// The state kept from pass to pass.
pub struct SamplingLoop {
    sampler: Sampler,
    load: LoadTracker,
    identity: NodeIdentity,
    seq: u64,
    /// Deep `cantmove` reasons of unlocked processes, by PID and start time.
    deep: HashMap<(i32, u64), (Instant, String)>,
    /// The node's jobs, to mark their rows and list those running elsewhere.
    jobs: Option<Arc<crate::jobs::Jobs>>,
}

impl SamplingLoop {
    /// A loop for this node, reading with `sampler`.
    pub fn new(identity: NodeIdentity, sampler: Sampler) -> Self {
        Self {
            sampler,
            load: LoadTracker::default(),
            identity,
            seq: 0,
            deep: HashMap::new(),
            jobs: None,
        }
    }

    /// Marks job rows and lists this node's jobs running elsewhere.
    pub fn with_jobs(mut self, jobs: Arc<crate::jobs::Jobs>) -> Self {
        self.jobs = Some(jobs);
        self
    }

    /// One pass.
    pub fn pass(&mut self, store: &Store) -> std::io::Result<Snapshot> {
        let begun = Instant::now();
        let mut fig = self.sampler.node()?;
        let mut procs = self.sampler.processes(self.identity.id)?;
        if self.sampler.is_scoped() {
            fig.demand_of(&procs, std::process::id() as i32);
        }
        // One read of the persisted state serves the admin figures and the settings.
        let state = store.get();
        let admin = &state.admin;
        apply_settings(store, &state, &mut procs);
        if let Some(jobs) = &self.jobs {
            jobs.annotate(&state, &mut procs);
        }
        // A job's own processes move with the job; any other unlocked
        // process would move alone, so what it shares counts too.
        let jobs: HashSet<i32> = state
            .jobs
            .values()
            .filter(|r| r.info.where_ == self.identity.id && r.info.exit.is_none())
            .flat_map(|r| [r.info.pid, r.info.root_pid])
            .collect();
        // A deputy's row is its process's (classified where it runs).
        let deputies: HashSet<i32> = state
            .jobs
            .values()
            .filter(|r| r.deputy > 0 && r.info.exit.is_none())
            .map(|r| r.deputy)
            .collect();
        self.classify_unlocked(&mut procs, &jobs, &deputies);
        let demand = fig.busy_cpus.max(f64::from(fig.runnable));
        let raw = raw_load(demand, admin.speed, fig.cpus);
        self.load.update(raw);
        let status = NodeStatus {
            id: self.identity.id,
            name: self.identity.name.clone(),
            addr: self.identity.addr.clone(),
            status: Liveness::Up,
            cpus: fig.cpus,
            load: self.load.exported,
            speed: admin.speed,
            util: fig.util,
            mem: fig.mem_available,
            rmem: fig.mem_free,
            tmem: fig.mem_total,
            accepts: !admin.block && !admin.quiet,
            age_ms: 0,
            reason: None,
            migration: self.identity.migration.clone(),
            host_key: self.identity.host_key.clone(),
        };
        let snap = Snapshot {
            seq: self.seq,
            begun,
            taken: Instant::now(),
            status,
            local_load: self.load.local,
            raw_load: raw,
            processes: Arc::new(procs),
        };
        self.seq += 1;
        Ok(snap)
    }

    /// Fills the deep `cantmove` reason of unlocked processes (the ones that may
    /// be asked to move), re-checking a busy one at most every
    /// [`DEEP_CLASSIFY_EVERY`] and an idle one every
    /// [`DEEP_CLASSIFY_IDLE_EVERY`] or so; for a process that is not a job's,
    /// what it shares with others too.
    fn classify_unlocked(
        &mut self,
        procs: &mut [ProcessInfo],
        jobs: &HashSet<i32>,
        deputies: &HashSet<i32>,
    ) {
        let now = Instant::now();
        let mut seen = HashSet::new();
        for p in procs
            .iter_mut()
            .filter(|p| !p.lock && p.cantmove.is_empty() && !deputies.contains(&p.pid))
        {
            let key = (p.pid, p.start_time);
            seen.insert(key);
            let every = if p.cpu > 0.0 {
                DEEP_CLASSIFY_EVERY
            } else {
                let spread = u64::from(p.pid.unsigned_abs())
                    % (DEEP_CLASSIFY_IDLE_EVERY.as_secs() / 2).max(1);
                DEEP_CLASSIFY_IDLE_EVERY + Duration::from_secs(spread)
            };
            let fresh = self
                .deep
                .get(&key)
                .filter(|(t, _)| now.duration_since(*t) < every);
            let reason = match fresh {
                Some((_, r)) => r.clone(),
                None => {
                    let r = crate::classify::deep_reason(p.pid)
                        .or_else(|| {
                            (!jobs.contains(&p.pid))
                                .then(|| {
                                    crate::classify::container_reason(p.pid).or_else(|| {
                                        crate::classify::sharing_reason(p.pid, &[p.pid])
                                    })
                                })
                                .flatten()
                        })
                        .unwrap_or_default();
                    self.deep.insert(key, (now, r.clone()));
                    r
                }
            };
            p.cantmove = reason;
        }
        self.deep.retain(|k, _| seen.contains(k));
    }
}

/// Applies one process's stored settings to its row.
pub fn apply_one(s: &ProcSettings, p: &mut ProcessInfo) {
    if let Some(l) = s.lock {
        p.lock = l;
    }
    if let Some(d) = s.decay {
        p.decay = d;
    }
    if let Some(m) = s.mask {
        p.mask = m;
    }
}

/// Applies lock/decay/mask settings and forgets those of processes that exited.
fn apply_settings(store: &Store, state: &PersistedState, procs: &mut [ProcessInfo]) {
    if state.processes.is_empty() {
        return;
    }
    let mut alive = HashSet::with_capacity(state.processes.len());
    for p in procs.iter_mut() {
        let key = key_string((p.pid, p.start_time));
        if let Some(s) = state.processes.get(&key) {
            apply_one(s, p);
            alive.insert(key);
        }
    }
    if alive.len() != state.processes.len()
        && let Err(e) = store.update(|s| s.processes.retain(|k, _| alive.contains(k)))
    {
        tracing::warn!(error = %e, "cannot forget settings of exited processes");
    }
}

/// Runs the loop on the current thread until `tx` has no receivers. `wake` lets
/// writers ask for an early pass.
pub fn run(
    mut lp: SamplingLoop,
    store: Arc<Store>,
    tx: watch::Sender<Arc<Snapshot>>,
    wake: std::sync::mpsc::Receiver<()>,
) {
    loop {
        let started = Instant::now();
        match lp.pass(&store) {
            Ok(s) => {
                if tx.send(Arc::new(s)).is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!(error = %e, "sampling /proc failed"),
        }
        let rest = PERIOD.saturating_sub(started.elapsed());
        match wake.recv_timeout(rest) {
            // Asked early (after a signal, a renice, a write): look at
            // every process, idle ones too.
            Ok(()) => lp.sampler.read_all_next(),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}
