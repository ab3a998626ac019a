//! Automatic load balancing: after every sampling pass the agent asks the
//! [`balancer`] policy whether one of its processes should move, and moves
//! it as `proc.migrate` would (one at a time; the policy spaces them). What
//! it may move: the jobs running here and the processes that may move on
//! their own (unlocked, no `cantmove`), busy ones; with `lstay` only guests;
//! with `stay` nothing. A job `proc.spawn` starts here is placed at once on
//! a lighter node if there is one (exec-time placement). A node short of
//! memory first ushers its largest
//! process that fits elsewhere out ([`balancer::memory`]). On unless the
//! agent runs with `--balance off`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use balancer::load::Demand;
use balancer::{Candidate, CostModel, NodeView, Policy, Rng, Sent};
use hpc::model::{DecayClass, Liveness, NodeId, NodeStatus, ProcessInfo};
use hpc::protocol::MigrateParams;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::context::{AgentContext, Snapshot};
use crate::migration::Cause;

/// How long what this node sent counts in its view of the targets (gossip
/// shows it by then).
const SENT_FOR: Duration = Duration::from_secs(3);

/// How long a process whose move failed is left alone (so that one CRIU
/// cannot checkpoint is not frozen again and again).
const FAILED_FOR: Duration = Duration::from_secs(60);

/// Balances for as long as the agent samples: a pass after every snapshot,
/// and a placement for every new job `proc.spawn` hands over on `new_jobs`.
pub async fn balance_loop(ctx: Arc<AgentContext>, mut new_jobs: UnboundedReceiver<i32>) {
    let mut b = Balancer::new();
    let mut snapshots = ctx.snapshot.clone();
    loop {
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return;
                }
                b.pass(&ctx).await;
            }
            Some(pid) = new_jobs.recv() => b.place(&ctx, pid).await,
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
        // figure decays slowly, and would send a second one after it).
        let me = NodeView {
            load: f64::from(snap.local_load),
            age: Duration::ZERO,
            ..view(&snap.status)
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

    /// A job `proc.spawn` just started here: if a lighter node would run it
    /// better, it goes there at once, while its image is small (exec-time
    /// placement: starting it elsewhere costs one small move). Not when the
    /// node says `stay` or `lstay`, nor for a locked job.
    async fn place(&mut self, ctx: &AgentContext, pid: i32) {
        let snap = ctx.current();
        let admin = ctx.store.get().admin;
        let Some(job) = ctx.jobs.running_here_with(pid) else {
            return;
        };
        if admin.stay || admin.lstay || job.info.lock || job.info.pid != pid {
            return;
        }
        let (me, mut peers) = self.views(ctx, &snap).await;
        peers.retain(|p| job.info.mask.allows(p.id));
        let Some(target) = self.policy.place(&me, &peers, &mut self.rng) else {
            return;
        };
        let there = peers
            .iter()
            .find(|p| p.id == target)
            .map_or(0.0, |p| p.load);
        let why = format!(
            "placement: a new program; load {:.0} here, node {target} at {there:.0}",
            me.load
        );
        self.send(ctx, pid, target, Cause::Balance(why), 1.0).await;
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
        };
        match crate::migration::migrate(ctx, p, cause).await {
            Ok(r) => {
                self.cost
                    .observe(r.bytes, Duration::from_millis(r.freeze_ms));
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

/// A node as the policy sees it, from its gossiped status.
fn view(n: &NodeStatus) -> NodeView {
    NodeView {
        id: n.id,
        load: f64::from(n.load),
        speed: n.speed,
        cpus: n.cpus,
        free_mem: n.mem,
        total_mem: n.tmem,
        accepts: n.status == Liveness::Up
            && n.accepts
            && !n.migration.starts_with("migration unavailable"),
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
