//! Automatic load balancing: after every sampling pass the agent asks the
//! [`balancer`] policy whether one of its processes should move, and moves
//! it as `proc.migrate` would (one at a time; the policy spaces them). What
//! it may move: the jobs running here and the processes that may move on
//! their own (unlocked, no `cantmove`), busy ones; with `lstay` only guests;
//! with `stay` nothing. A node short of memory first ushers its largest
//! process that fits elsewhere out ([`balancer::memory`]). On unless the
//! agent runs with `--balance off`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use balancer::{Candidate, CostModel, NodeView, Policy, Rng, Sent};
use hpc::model::{Liveness, NodeStatus, ProcessInfo};
use hpc::protocol::MigrateParams;

use crate::context::{AgentContext, Snapshot};
use crate::migration::Cause;

/// How long what this node sent counts in its view of the targets (gossip
/// shows it by then).
const SENT_FOR: Duration = Duration::from_secs(3);

/// How long a process whose move failed is left alone (so that one CRIU
/// cannot checkpoint is not frozen again and again).
const FAILED_FOR: Duration = Duration::from_secs(60);

/// Balances for as long as the agent samples.
pub async fn balance_loop(ctx: Arc<AgentContext>) {
    let policy = Policy::default();
    let mut cost = CostModel::default();
    let mut rng = Rng::new(u64::from(std::process::id()) ^ hpc::clock::now_ms());
    let mut sent = Sent::default();
    let mut sent_at = Instant::now();
    let mut last_move: Option<Instant> = None;
    let mut failed: HashMap<i32, Instant> = HashMap::new();
    let mut snapshots = ctx.snapshot.clone();
    while snapshots.changed().await.is_ok() {
        let snap = ctx.current();
        let admin = ctx.store.get().admin;
        if admin.stay {
            continue;
        }
        if sent_at.elapsed() > SENT_FOR {
            sent.clear();
            sent_at = Instant::now();
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
        sent.adjust(&mut peers);
        failed.retain(|_, at| at.elapsed() < FAILED_FOR);
        let mut candidates = candidates(&ctx, &snap, admin.lstay);
        candidates.retain(|c| i32::try_from(c.id).is_ok_and(|pid| !failed.contains_key(&pid)));
        let since = last_move.map(|t| t.elapsed());
        // Short of memory, ushering comes first; else the load decides.
        let (d, cause) = match policy.usher(&me, &peers, &candidates, since) {
            Some(d) => {
                let why = d.why.clone();
                (d, Cause::Memory(why))
            }
            None => match policy.decide(&me, &peers, &candidates, &cost, since, &mut rng) {
                Some(d) => {
                    let why = d.why.clone();
                    (d, Cause::Balance(why))
                }
                None => continue,
            },
        };
        let Ok(pid) = i32::try_from(d.id) else {
            continue;
        };
        let cpu = candidates
            .iter()
            .find(|c| c.id == d.id)
            .map_or(1.0, |c| c.cpu);
        last_move = Some(Instant::now());
        tracing::info!(pid, to = d.target, why = %d.why, "balancing: moving a process");
        let p = MigrateParams {
            pid,
            to: d.target.to_string(),
            force: false,
        };
        match crate::migration::migrate(&ctx, p, cause).await {
            Ok(r) => {
                cost.observe(r.bytes, Duration::from_millis(r.freeze_ms));
                sent.note(d.target, cpu.min(1.0));
                tracing::info!(
                    pid,
                    to = d.target,
                    freeze_ms = r.freeze_ms,
                    "balancing: moved"
                );
            }
            Err(e) => {
                failed.insert(pid, Instant::now());
                tracing::info!(pid, to = d.target, error = %e.message, "balancing: the move did not happen; leaving it alone for a minute");
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
