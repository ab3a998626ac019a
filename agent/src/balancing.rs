//! Automatic load balancing: after every sampling pass the agent asks the
//! [`balancer`] policy whether one of its processes should move, and moves
//! it as `proc.migrate` would (one at a time; the policy spaces them). What
//! it may move: the jobs running here and the processes that may move on
//! their own (unlocked, no `cantmove`), busy ones; with `lstay` only guests;
//! with `stay` nothing. A job `proc.spawn` starts here, and each worker a
//! job forks ([`crate::fork_watch`]), is placed at once where it would run
//! fastest among a few peers asked for their load now (exec- and fork-time
//! placement, [`balancer::placement`]). A node short of memory first ushers
//! its largest process that fits elsewhere out ([`balancer::memory`]). On
//! unless the agent runs with `--balance off`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use balancer::load::Demand;
use balancer::{Candidate, CostModel, NodeView, Policy, Rng, Sent};
use hpc::model::{DecayClass, Liveness, NodeId, NodeStatus, ProcessInfo};
use hpc::protocol::{MigrateParams, MigrationReport, RpcError};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::context::{AgentContext, Snapshot};
use crate::metrics::Decision;
use crate::migration::Cause;

/// How long what this node sent counts in its view of the targets (gossip
/// shows it by then).
const SENT_FOR: Duration = Duration::from_secs(3);

/// How long a process whose move failed is left alone (so that one CRIU
/// cannot checkpoint is not frozen again and again).
const FAILED_FOR: Duration = Duration::from_secs(60);

/// Placements under way at once, beside the one balancing move (a job
/// forking four workers has them placed together).
const PLACEMENTS_AT_ONCE: usize = 4;

/// How long a peer may take to say its load before a placement goes on
/// without it.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// A process just born here that may start elsewhere at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newborn {
    /// A job `proc.spawn` started (its command's PID).
    Program(i32),
    /// A process a job running here forked (`job`: the job's command).
    Worker {
        /// The new process.
        pid: i32,
        /// The command of its job.
        job: i32,
    },
}

/// How a placement's move ended.
struct Placed {
    pid: i32,
    target: NodeId,
    result: Result<MigrationReport, RpcError>,
}

/// Balances for as long as the agent samples: a pass after every snapshot,
/// a placement for every new job or worker handed over on `newborns`
/// (several under way at once), and what each placement's move learnt.
pub async fn balance_loop(ctx: Arc<AgentContext>, mut newborns: UnboundedReceiver<Newborn>) {
    let mut b = Balancer::new();
    let mut snapshots = ctx.snapshot.clone();
    let (placed_tx, mut placed) = tokio::sync::mpsc::unbounded_channel();
    loop {
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return;
                }
                b.pass(&ctx).await;
            }
            Some(n) = newborns.recv() => b.place(&ctx, n, &placed_tx).await,
            Some(p) = placed.recv() => b.placed(p),
        }
    }
}

/// What the balancing loop keeps between decisions.
struct Balancer {
    policy: Policy,
    cost: CostModel,
    rng: Rng,
    sent: Sent,
    sent_at: Instant,
    last_move: Option<Instant>,
    failed: HashMap<i32, Instant>,
    /// Each candidate's remembered demand (its decay class), and when.
    demand: HashMap<i32, (Demand, Instant)>,
    /// Where each placement under way goes.
    placing: Vec<NodeId>,
    /// Newborns left here lately (counted until a pass lists them).
    stayed: Vec<i32>,
    /// Newborns placed away lately (no longer counted once a pass found
    /// them not running here).
    left: Vec<i32>,
}

impl Balancer {
    fn new() -> Self {
        Self {
            policy: Policy::default(),
            cost: CostModel::default(),
            rng: Rng::new(u64::from(std::process::id()) ^ hpc::clock::now_ms()),
            sent: Sent::default(),
            sent_at: Instant::now(),
            last_move: None,
            failed: HashMap::new(),
            demand: HashMap::new(),
            placing: Vec::new(),
            stayed: Vec::new(),
            left: Vec::new(),
        }
    }

    /// This node and its peers as the policy sees them now (peers raised by
    /// what this node sent lately).
    async fn views(&mut self, ctx: &AgentContext, snap: &Snapshot) -> (NodeView, Vec<NodeView>) {
        if self.sent_at.elapsed() > SENT_FOR {
            self.sent.clear();
            self.sent_at = Instant::now();
        }
        // Its own load drops at once when a process left (the exported
        // figure decays slowly, and would send a second one after it), and
        // placements on their way out no longer count.
        let st = &snap.status;
        let leaving = balancer::load::units(self.placing.len() as f64, st.speed, st.cpus);
        let me = NodeView {
            load: (f64::from(snap.local_load) - leaving).max(0.0),
            age: Duration::ZERO,
            ..view(st)
        };
        let mut peers: Vec<NodeView> = ctx
            .cluster
            .nodes(&snap.status)
            .await
            .iter()
            .map(view)
            .collect();
        self.sent.adjust(&mut peers);
        (me, peers)
    }

    /// One pass: usher a process out if memory is short, else move one if
    /// the load says so.
    async fn pass(&mut self, ctx: &AgentContext) {
        let snap = ctx.current();
        let admin = ctx.store.get().admin;
        if admin.stay {
            return;
        }
        let (me, peers) = self.views(ctx, &snap).await;
        self.failed.retain(|_, at| at.elapsed() < FAILED_FOR);
        let mut candidates = candidates(ctx, &snap, admin.lstay);
        candidates.retain(|c| i32::try_from(c.id).is_ok_and(|pid| !self.failed.contains_key(&pid)));
        self.remember_demand(&snap, &admin, &mut candidates);
        // A process with children would take them along (a job's command
        // moves its whole job) or be refused: the policy weighs one process
        // at a time, so those stay out. Only the ones it could pick are
        // looked at (a thousand idle processes cost nothing here).
        let short = self.policy.short_of_memory(&me);
        let min_cpu = self.policy.settings.min_cpu;
        candidates.retain(|c| {
            (c.cpu < min_cpu && !short)
                || i32::try_from(c.id).is_ok_and(|pid| crate::jobs::children(pid).is_empty())
        });
        let since = self.last_move.map(|t| t.elapsed());
        // Short of memory, ushering comes first; else the load decides.
        let ushered = self.policy.usher(&me, &peers, &candidates, since).map(|d| {
            let cause = Cause::Memory(d.why.clone());
            (d, cause)
        });
        let Some((d, cause)) = ushered.or_else(|| {
            self.policy
                .decide(&me, &peers, &candidates, &self.cost, since, &mut self.rng)
                .map(|d| {
                    let cause = Cause::Balance(d.why.clone());
                    (d, cause)
                })
        }) else {
            return;
        };
        let cpu = candidates
            .iter()
            .find(|c| c.id == d.id)
            .map_or(1.0, |c| c.cpu);
        ctx.metrics.decided(match cause {
            Cause::Memory(_) => Decision::Usher,
            _ => Decision::Move,
        });
        if let Ok(pid) = i32::try_from(d.id) {
            self.send(ctx, pid, d.target, cause, cpu).await;
        }
    }

    /// Replaces each candidate's CPU share of this pass by its demand as its
    /// decay class remembers it (slow, fast or none, at the node's
    /// `decay-interval`, `slow-decay` and `fast-decay`).
    fn remember_demand(
        &mut self,
        snap: &Snapshot,
        admin: &hpc::model::AdminState,
        candidates: &mut [Candidate],
    ) {
        let now = Instant::now();
        let interval = f64::from(admin.decay_interval.max(1));
        self.demand.retain(|pid, _| snap.process(*pid).is_some());
        for c in candidates.iter_mut() {
            let Ok(pid) = i32::try_from(c.id) else {
                continue;
            };
            let keep = match snap.process(pid).map(|p| p.decay) {
                Some(DecayClass::Fast) => Some(f64::from(admin.fast_decay) / 1000.0),
                Some(DecayClass::None) => None,
                Some(DecayClass::Slow) | None => Some(f64::from(admin.slow_decay) / 1000.0),
            };
            let (d, at) = self.demand.entry(pid).or_insert((Demand::default(), now));
            // A first pass counts as one interval's worth.
            let since = now.duration_since(*at).as_secs_f64().max(if d.is_empty() {
                interval
            } else {
                0.0
            });
            d.update(c.cpu, keep, since / interval);
            *at = now;
            c.cpu = d.value();
        }
    }

    /// A process just born here (a job `proc.spawn` started, a worker a job
    /// forked): a few peers are asked for their load now, and if one would
    /// run it enough faster to pay for the move, it goes there at once,
    /// while its image is small, beside other placements under way. Not
    /// when the node says `stay` (or `lstay`, for its own jobs), nor for a
    /// locked job, nor to nodes its mask excludes.
    async fn place(
        &mut self,
        ctx: &Arc<AgentContext>,
        born: Newborn,
        placed: &UnboundedSender<Placed>,
    ) {
        let (pid, job_pid, what) = match born {
            Newborn::Program(pid) => (pid, pid, "a new program"),
            Newborn::Worker { pid, job } => (pid, job, "a forked worker"),
        };
        let admin = ctx.store.get().admin;
        let Some(job) = ctx.jobs.running_here_with(job_pid) else {
            return;
        };
        if admin.stay
            || (admin.lstay && job.info.home == ctx.node_id)
            || job.info.lock
            || job.info.pid != job_pid
            || self.failed.contains_key(&pid)
        {
            return;
        }
        let Some((computing, bytes)) = newborn_stat(pid) else {
            return;
        };
        match born {
            // A job that has forked already moves with its workers, which
            // are placed one by one as they come.
            Newborn::Program(_) if !crate::jobs::children(pid).is_empty() => return,
            // A worker asleep since its fork (a shell's `sleep`, a helper
            // waiting on a pipe) gains nothing elsewhere.
            Newborn::Worker { .. } if !computing => return,
            _ => {}
        }
        if self.stayed.len() > 64 {
            self.stayed.drain(..32);
        }
        if self.placing.len() >= PLACEMENTS_AT_ONCE {
            self.stayed.push(pid);
            return;
        }
        let snap = ctx.current();
        let statuses = ctx.cluster.nodes(&snap.status).await;
        let me = NodeView {
            load: self.load_here(ctx, &snap, pid),
            age: Duration::ZERO,
            ..view(&snap.status)
        };
        let mut peers: Vec<NodeView> = statuses.iter().map(view).collect();
        peers.retain(|p| job.info.mask.allows(p.id));
        let asked = self.policy.probe_set(&me, &peers, &mut self.rng);
        // Placements from here still on their way count where they go, as
        // far as the target does not count them yet (it counts an arrival
        // once it has accepted it).
        let probed: Vec<NodeView> = probe(ctx, &statuses, &asked)
            .await
            .into_iter()
            .map(|(mut v, arriving)| {
                let ours = self.placing.iter().filter(|t| **t == v.id).count();
                let unseen = ours.saturating_sub(arriving as usize);
                v.load += balancer::load::units(unseen as f64, v.speed, v.cpus);
                v
            })
            .collect();
        let Some(d) = self.policy.place(&me, &probed, bytes, &self.cost) else {
            self.stayed.push(pid);
            return;
        };
        // A few seconds' worth is all the passes need to catch up.
        if self.left.len() > 64 {
            self.left.drain(..32);
        }
        let why = format!("{}; {what}", d.why);
        tracing::info!(pid, to = d.target, %why, "balancing: placing a process");
        ctx.metrics.decided(Decision::Place);
        self.placing.push(d.target);
        self.left.push(pid);
        // Counted there at once, so the next balancing passes see it too.
        self.sent.note(d.target, 1.0);
        let (ctx, tx, target) = (ctx.clone(), placed.clone(), d.target);
        tokio::spawn(async move {
            let p = MigrateParams {
                pid,
                to: target.to_string(),
                force: false,
                mode: hpc::protocol::MigrationMode::Auto,
            };
            let result = crate::migration::migrate(&ctx, p, Cause::Balance(why)).await;
            let _ = tx.send(Placed {
                pid,
                target,
                result,
            });
        });
    }

    /// This node's load now as a newborn `pid` would share it: the last
    /// pass's, less the placed newborns it found running (and the newborn
    /// itself, if it did), plus what arrived since and the newborns that
    /// stayed but were born after it (a burst of forks competes for these
    /// CPUs).
    fn load_here(&self, ctx: &AgentContext, snap: &Snapshot, pid: i32) -> f64 {
        // The pass counted a process if it found it running.
        let counted = |p: &i32| snap.process(*p).is_some_and(|r| r.state == 'R');
        let unseen = |p: &i32| snap.process(*p).is_none();
        let alive = |p: &i32| std::path::Path::new(&format!("/proc/{p}")).exists();
        let more = ctx.arrivals.since(snap.taken) as usize
            + self.stayed.iter().filter(|p| unseen(p) && alive(p)).count();
        let less = self.left.iter().filter(|p| counted(p)).count() + usize::from(counted(&pid));
        let st = &snap.status;
        let units = |n: usize| balancer::load::units(n as f64, st.speed, st.cpus);
        (f64::from(snap.raw_load) + units(more) - units(less)).max(0.0)
    }

    /// A placement's move ended: its cost is learnt, or the process is left
    /// alone for a while.
    fn placed(&mut self, p: Placed) {
        if let Some(i) = self.placing.iter().position(|t| *t == p.target) {
            self.placing.swap_remove(i);
        }
        match p.result {
            Ok(r) => {
                self.cost
                    .observe(r.bytes + r.pulled_bytes, Duration::from_millis(r.freeze_ms));
                tracing::info!(
                    pid = p.pid,
                    to = p.target,
                    freeze_ms = r.freeze_ms,
                    "balancing: placed"
                );
            }
            Err(e) => {
                self.failed.insert(p.pid, Instant::now());
                tracing::info!(pid = p.pid, to = p.target, error = %e.message, "balancing: the placement did not happen");
            }
        }
    }

    /// Moves `pid` to `target`, learning the cost from the move, or leaves
    /// it alone for a while if the move did not happen.
    async fn send(&mut self, ctx: &AgentContext, pid: i32, target: NodeId, cause: Cause, cpu: f64) {
        self.last_move = Some(Instant::now());
        tracing::info!(pid, to = target, why = %cause, "balancing: moving a process");
        let p = MigrateParams {
            pid,
            to: target.to_string(),
            force: false,
            mode: hpc::protocol::MigrationMode::Auto,
        };
        match crate::migration::migrate(ctx, p, cause).await {
            Ok(r) => {
                self.cost
                    .observe(r.bytes + r.pulled_bytes, Duration::from_millis(r.freeze_ms));
                self.sent.note(target, cpu.min(1.0));
                tracing::info!(
                    pid,
                    to = target,
                    freeze_ms = r.freeze_ms,
                    "balancing: moved"
                );
            }
            Err(e) => {
                self.failed.insert(pid, Instant::now());
                tracing::info!(pid, to = target, error = %e.message, "balancing: the move did not happen; leaving it alone for a minute");
            }
        }
    }
}

/// The `asked` peers as they say they are now (`node.load`, all at once),
/// each with the arrivals its load counts; one that does not answer in time
/// is left out.
async fn probe(
    ctx: &Arc<AgentContext>,
    statuses: &[NodeStatus],
    asked: &[NodeId],
) -> Vec<(NodeView, u32)> {
    let mut calls = tokio::task::JoinSet::new();
    for st in statuses.iter().filter(|s| asked.contains(&s.id)) {
        let (ctx, st) = (ctx.clone(), st.clone());
        calls.spawn(async move {
            let v = ctx
                .peers
                .call(
                    &st,
                    hpc::protocol::methods::NODE_LOAD,
                    serde_json::Value::Null,
                    PROBE_TIMEOUT,
                )
                .await
                .ok()?;
            let now: hpc::protocol::LoadNow = serde_json::from_value(v).ok()?;
            let v = NodeView {
                load: f64::from(now.load),
                speed: now.speed,
                cpus: now.cpus,
                accepts: now.accepts,
                age: Duration::ZERO,
                ..view(&st)
            };
            Some((v, now.arriving))
        });
    }
    calls.join_all().await.into_iter().flatten().collect()
}

/// What placement needs of newborn `pid`, from one read of its `stat`:
/// whether it is running or has used CPU since it started (a tick of 10 ms
/// at least), and its resident size (what moving it transfers, about).
fn newborn_stat(pid: i32) -> Option<(bool, u64)> {
    let b = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let (f, _) = crate::sampler::parse_stat(&b)?;
    Some((
        f.state == 'R' || f.ticks > 0,
        f.rss_pages * crate::sampler::page_size(),
    ))
}

/// A node as the policy sees it, from its gossiped status.
fn view(n: &NodeStatus) -> NodeView {
    NodeView {
        id: n.id,
        load: f64::from(n.load),
        speed: n.speed,
        cpus: n.cpus,
        free_mem: n.mem,
        total_mem: n.tmem,
        accepts: n.status == Liveness::Up && n.accepts && n.migration_available(),
        age: Duration::from_millis(n.age_ms),
    }
}

/// The processes running here that may move, with their CPU demand: the
/// CPU share each got, scaled up by how overloaded the node is (a process
/// sharing one CPU with another got half of it, but would use all of one).
fn candidates(ctx: &AgentContext, snap: &Snapshot, guests_only: bool) -> Vec<Candidate> {
    let st = &snap.status;
    let demand = balancer::load::demand(f64::from(st.load), st.speed, st.cpus);
    let overload = (demand / f64::from(st.cpus.max(1))).max(1.0);
    let now = hpc::clock::now_ms() / 1000;
    // A job's init moves with its command: only the command is asked.
    let inits: HashSet<i32> = ctx
        .jobs
        .all()
        .iter()
        .filter(|j| j.info.root_pid != j.info.pid)
        .map(|j| j.info.root_pid)
        .collect();
    let movable = |p: &ProcessInfo| {
        !p.lock
            && p.cantmove.is_empty()
            && p.where_ == ctx.node_id
            && (!guests_only || p.home != ctx.node_id)
            && !inits.contains(&p.pid)
    };
    snap.processes
        .iter()
        .filter(|p| movable(p))
        .map(|p| Candidate {
            id: i64::from(p.pid),
            cpu: (f64::from(p.cpu) / 100.0 * overload).min(1.0),
            age: Duration::from_secs(now.saturating_sub(p.start_time)),
            bytes: p.rss,
            mask: p.mask,
        })
        .collect()
}
