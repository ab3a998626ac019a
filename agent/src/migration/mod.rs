//! The migration engine: which process may go where ([`migrate`]), the
//! transfer itself ([`send`], [`receive`]) with CRIU ([`criu_cmd`]), the home
//! node's bookkeeping, and the admin actions built on it (`expel`, `bring`).

pub mod criu_cmd;
pub mod deputies;
pub mod image_files;
pub mod in_motion;
pub mod ledger;
pub mod pages_path;
pub mod postcopy;
pub mod progress;
pub mod receive;
pub mod sealed_link;
pub mod send;
pub mod streaming;
pub mod wire;

use std::time::{Duration, Instant};

use hpc::model::{NodeId, NodeStatus};
use hpc::protocol::{
    Evacuation, JobInfo, MigrateParams, MigrationMode, MigrationReport, MoveFailure, RpcError,
    codes, methods,
};
use serde_json::{Value, json};

use crate::context::AgentContext;
use crate::jobs::JobRecord;
use crate::rpc::to_value;

/// How long a forwarded migration may take.
pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(900);

/// A fault the agent injects on purpose, for the tests of what happens when a
/// migration's last steps go wrong (`openmosixd --test-fault NAME`; never set
/// in production).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Source: send the commit, then drop the connection without reading the answer.
    DropAfterCommit,
    /// Source: drop the connection instead of sending the commit (as if lost on the way).
    LoseCommit,
    /// Target: take the commit and resume, then drop the connection unanswered.
    TargetSilentAfterCommit,
    /// Target: pull post-copy pages at 4 MiB/s at most (so that a test can
    /// break a pull under way).
    SlowPull,
    /// Target: end the page server as soon as a streamed checkpoint's
    /// channel arrives (so that the source falls back to files).
    BreakStream,
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "drop-after-commit" => Ok(Self::DropAfterCommit),
            "lose-commit" => Ok(Self::LoseCommit),
            "target-silent-after-commit" => Ok(Self::TargetSilentAfterCommit),
            "slow-pull" => Ok(Self::SlowPull),
            "break-stream" => Ok(Self::BreakStream),
            other => Err(format!(
                "unknown fault `{other}` (drop-after-commit, lose-commit, target-silent-after-commit, slow-pull, break-stream)"
            )),
        }
    }
}

/// The image space for CRIU's images other than memory: all that a
/// post-copy move writes.
pub const OTHER_IMAGES: u64 = 4 << 20;

/// The image space to reserve for a checkpoint of `estimate` bytes of
/// memory: the estimate plus 1/64 and [`OTHER_IMAGES`]; `None` when that
/// overflows.
pub fn estimate_with_margin(estimate: u64) -> Option<u64> {
    estimate
        .checked_add(estimate / 64)?
        .checked_add(OTHER_IMAGES)
}

fn refused(pid: i32, why: impl std::fmt::Display) -> RpcError {
    RpcError::new(
        codes::MIGRATION_FAILED,
        format!("process {pid} cannot move: {why}"),
    )
}

/// Why a process moves, for its record (the move log and the history).
#[derive(Debug, Clone, PartialEq)]
pub enum Cause {
    /// `proc.migrate`: a person, a tool, or the home forwarding a request.
    Asked,
    /// `expel`: a guest sent home.
    Expel,
    /// `bring`: a job brought home.
    Bring,
    /// The balancer, with its reason.
    Balance(String),
    /// Memory ushering, with its reason.
    Memory(String),
}

impl From<&Cause> for crate::metrics::MoveCause {
    fn from(c: &Cause) -> Self {
        match c {
            Cause::Asked => Self::Asked,
            Cause::Expel => Self::Expel,
            Cause::Bring => Self::Bring,
            Cause::Balance(_) => Self::Balance,
            Cause::Memory(_) => Self::Memory,
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Asked => f.write_str("asked for"),
            Self::Expel => f.write_str("expel: guests sent home"),
            Self::Bring => f.write_str("bring: jobs brought home"),
            Self::Balance(why) | Self::Memory(why) => f.write_str(why),
        }
    }
}

/// Moves a process: `to` is a node id, `home` or `balance`. A job of this node
/// that runs elsewhere is moved by the node that runs it.
pub async fn migrate(
    ctx: &AgentContext,
    p: MigrateParams,
    cause: Cause,
) -> Result<MigrationReport, RpcError> {
    let started = Instant::now();
    if let Some(away) = ctx.jobs.away(p.pid) {
        let to = if p.to.trim() == "home" {
            ctx.node_id.to_string()
        } else {
            p.to.clone()
        };
        let host = peer_status(ctx, away.info.where_).await?;
        let v = ctx
            .peers
            .call(
                &host,
                methods::PROC_MIGRATE,
                to_value(&MigrateParams {
                    pid: away.info.pid,
                    to,
                    force: p.force,
                    mode: p.mode,
                })?,
                MIGRATION_TIMEOUT,
            )
            .await?;
        return serde_json::from_value(v)
            .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()));
    }
    if ctx.criu.is_none() {
        return Err(crate::rpc::needs_migration(ctx, "moving a process"));
    }
    let pid = ctx.jobs.local_pid(p.pid);
    if pid <= 0 || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(RpcError::no_such_process(p.pid));
    }
    // Born after the last pass (a worker placed as it forks): an early pass
    // lists it.
    ctx.listing(pid).await;
    let (job, new_single) = match ctx.jobs.running_here_with(pid) {
        // A job moves whole when asked by its command's PID or its init's.
        Some(j) if j.info.single || pid == j.info.pid || pid == j.info.root_pid => (j, false),
        // Any other process of a job moves on its own.
        Some(_) => (single_process(ctx, pid, true)?, true),
        None => (single_process(ctx, pid, false)?, true),
    };
    let Some(criu) = ctx.criu.clone() else {
        return Err(crate::rpc::needs_migration(ctx, "moving a process"));
    };
    if job.info.lock && !p.force {
        return Err(refused(
            p.pid,
            format!(
                "it is locked to node {} (lock=1; unlock it with `mosctl`/proc.write lock 0)",
                ctx.node_id
            ),
        ));
    }
    let tree = criu_cmd::tree(job.info.root_pid);
    // Held until this move has ended, however it ends.
    let _claim = ctx.in_motion.claim(&tree).map_err(|busy| {
        refused(
            p.pid,
            format!("process {busy} is being moved already; try again once that move has ended"),
        )
    })?;
    if !job.info.single
        && let Some(away) = ctx
            .jobs
            .all()
            .into_iter()
            .find(|r| r.deputy > 0 && tree.contains(&r.deputy))
    {
        return Err(refused(
            p.pid,
            format!(
                "its process {} runs on node {} (its deputy holds its place here); the job moves whole once that process is back or has ended",
                away.info.home_pid, away.info.where_
            ),
        ));
    }
    for pid in &tree {
        if let Some(reason) = crate::classify::deep_reason(*pid) {
            return Err(refused(
                p.pid,
                format!("process {pid} of the job: {reason}"),
            ));
        }
    }
    if job.info.single
        && let Some(reason) = crate::classify::sharing_reason(job.info.pid, &tree)
    {
        return Err(refused(p.pid, reason));
    }
    let target = resolve_target(ctx, &p.to, &job, &tree).await?;
    if target == ctx.node_id {
        return Err(refused(
            p.pid,
            format!("it already runs on node {}", ctx.node_id),
        ));
    }
    if !job.info.mask.allows(target) {
        return Err(refused(
            p.pid,
            format!("its cluster mask (migfilter/mignodes/migpolicy) does not allow node {target}"),
        ));
    }
    // Whether the target accepts guests is its own answer to the offer (the
    // gossiped flag may be a second old); nothing is frozen before it.
    let st = peer_status(ctx, target).await?;
    if !st.migration_available() {
        return Err(refused(p.pid, format!("node {target}: {}", st.migration)));
    }
    let Some(_busy) = ctx.jobs.reserve(job.info.home, job.info.home_pid) else {
        return Err(refused(p.pid, "a migration of it is already under way"));
    };
    if unsettled(ctx, job.info.home, job.info.home_pid).is_some() {
        return Err(refused(
            p.pid,
            "it is held stopped until the node it was handed to confirms its last migration",
        ));
    }
    if new_single {
        // Recorded from here on: the migration's bookkeeping updates it.
        ctx.jobs.put(job.clone())?;
    }
    let moved = send::send(ctx, &criu, &job, &st, started, &cause, p.mode).await;
    ctx.metrics.moved(
        (&cause).into(),
        moved
            .as_ref()
            .ok()
            .map(|r| (r.freeze_ms, r.bytes + r.pulled_bytes)),
    );
    if new_single && moved.is_err() {
        // Still the plain process it was.
        // (Unless its hand-over is in doubt: the record then waits for the
        // target's answer.)
        let still_here = ctx
            .jobs
            .get(job.info.home, job.info.home_pid)
            .is_some_and(|r| r.info.where_ == ctx.node_id && r.deputy == 0)
            && unsettled(ctx, job.info.home, job.info.home_pid).is_none();
        if still_here && let Err(e) = ctx.jobs.remove(job.info.home, job.info.home_pid) {
            tracing::warn!(error = %e, "cannot forget a process that did not move");
        }
    }
    moved
}

/// A record for the process `pid` to move it on its own: a plain process
/// (not started through the agent) or, `in_job`, one that a job forked; a
/// single process, with no children (they would have to move too).
fn single_process(ctx: &AgentContext, pid: i32, in_job: bool) -> Result<JobRecord, RpcError> {
    let snap = ctx.current();
    let row = snap
        .process(pid)
        .ok_or_else(|| RpcError::no_such_process(pid))?;
    if !row.cantmove.is_empty() {
        return Err(refused(pid, &row.cantmove));
    }
    if let Some(reason) = crate::classify::container_reason(pid) {
        return Err(refused(pid, reason));
    }
    if !in_job && crate::jobs::other_namespace(pid, "pid").is_some() {
        return Err(refused(
            pid,
            "container: it runs in a PID namespace other than the node's and no job's (a container's)",
        ));
    }
    // Forked inside a job, it keeps the PID it has there.
    let vpid = if in_job {
        crate::jobs::inner_pid(pid)
    } else {
        0
    };
    let children = crate::jobs::children(pid);
    if !children.is_empty() {
        return Err(refused(
            pid,
            format!(
                "it has child processes ({}); a process moves on its own only without them (move each child, or start the program with mosrun to move it whole)",
                children
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(JobRecord {
        info: JobInfo {
            home: ctx.node_id,
            home_pid: pid,
            where_: ctx.node_id,
            pid,
            root_pid: pid,
            cmdline: row.cmdline.clone(),
            uid: row.uid,
            user: row.user.clone(),
            start_time: row.start_time,
            nmigs: row.nmigs,
            lock: row.lock,
            decay: Some(row.decay),
            mask: row.mask,
            single: true,
            vpid,
            ..JobInfo::default()
        },
        ..JobRecord::default()
    })
}

async fn peer_status(ctx: &AgentContext, node: NodeId) -> Result<NodeStatus, RpcError> {
    let local = ctx.current().status.clone();
    ctx.peers.status_of(&ctx.cluster, &local, node).await
}

/// The node a `to` argument names.
async fn resolve_target(
    ctx: &AgentContext,
    to: &str,
    job: &JobRecord,
    tree: &[i32],
) -> Result<NodeId, RpcError> {
    match to.trim() {
        "home" => Ok(job.info.home),
        "balance" => best_node(ctx, job, tree).await,
        n => n.parse::<NodeId>().map_err(|_| {
            RpcError::invalid_params(format!(
                "`{to}` is not a node: give a node id, `home` or `balance`"
            ))
        }),
    }
}

/// The load a node would have with one more busy process: its load plus one
/// standard CPU's worth of work scaled by its speed and CPU count.
pub fn load_with_one_more(n: &NodeStatus) -> f64 {
    f64::from(n.load) + balancer::load::units(1.0, n.speed, n.cpus)
}

/// `balance`: the up node that accepts guests, has room for the job and would
/// be least loaded with it; it must beat staying here.
async fn best_node(ctx: &AgentContext, job: &JobRecord, tree: &[i32]) -> Result<NodeId, RpcError> {
    let local = ctx.current().status.clone();
    let need = send::image_estimate(tree);
    let nodes = ctx.cluster.nodes(&local).await;
    let best = nodes
        .iter()
        .filter(|n| {
            n.id != ctx.node_id
                && n.status == hpc::model::Liveness::Up
                && n.accepts
                && n.migration_available()
                && job.info.mask.allows(n.id)
                && n.mem > need
        })
        .min_by(|a, b| load_with_one_more(a).total_cmp(&load_with_one_more(b)));
    match best {
        Some(b) if load_with_one_more(b) < f64::from(local.load) => Ok(b.id),
        Some(b) => Err(refused(
            job.info.pid,
            format!(
                "node {} is already the best place for it (load {}; the best other node, {}, would reach {:.0})",
                ctx.node_id,
                local.load,
                b.id,
                load_with_one_more(b)
            ),
        )),
        None => Err(refused(
            job.info.pid,
            "no other node is up, accepts guests and has room for it",
        )),
    }
}

/// Bookkeeping at the source after a committed migration: the home updates its
/// record; a guest host forgets the job and tells the home where it went.
pub async fn record_departure(ctx: &AgentContext, job: &JobRecord, moved: JobInfo) {
    let home = job.info.home;
    if home == ctx.node_id {
        let result = ctx.jobs.modify(home, job.info.home_pid, |r| r.info = moved);
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot record a departure");
        }
        // The caller's next read shows where the job went.
        ctx.fresh_snapshot(SNAPSHOT_WAIT).await;
        return;
    }
    if let Err(e) = ctx.jobs.remove(home, job.info.home_pid) {
        tracing::error!(error = %e, "cannot forget a departed guest");
    }
    ctx.request_resample();
    if let Err(e) = tell_home(ctx, &moved).await {
        tracing::warn!(home, pid = moved.home_pid, error = %e, "home not told where its job went; will retry");
        ctx.jobs.defer_move_notice(moved);
    }
}

/// Tells a job's home agent where the job runs now.
async fn tell_home(ctx: &AgentContext, moved: &JobInfo) -> Result<(), RpcError> {
    let st = peer_status(ctx, moved.home).await?;
    ctx.peers
        .call(
            &st,
            methods::JOB_MOVED,
            to_value(moved)?,
            Duration::from_secs(10),
        )
        .await
        .map(|_| ())
}

/// How long an answer may wait for the process table to show a change.
const SNAPSHOT_WAIT: Duration = Duration::from_millis(1500);

/// `job.moved` at the home node: where the job runs now, with its settings.
pub async fn job_moved(ctx: &AgentContext, moved: JobInfo) -> Result<Value, RpcError> {
    if moved.home != ctx.node_id {
        return Err(RpcError::invalid_params(format!(
            "job {}/{} does not belong to node {}",
            moved.home, moved.home_pid, ctx.node_id
        )));
    }
    let me = ctx.node_id;
    let known = ctx.jobs.modify(moved.home, moved.home_pid, |r| {
        r.info.nmigs = r.info.nmigs.max(moved.nmigs);
        if moved.last_migration.is_some() {
            r.info.last_migration = moved.last_migration.clone();
        }
        // Settings changed on the host travel home with the notice.
        r.info.lock = moved.lock;
        r.info.decay = moved.decay;
        r.info.mask = moved.mask;
        if moved.where_ != me {
            r.info.where_ = moved.where_;
            r.info.pid = moved.pid;
            r.info.root_pid = moved.root_pid;
        }
    })?;
    if !known {
        return Err(RpcError::no_such_process(moved.home_pid));
    }
    ctx.fresh_snapshot(SNAPSHOT_WAIT).await;
    Ok(json!(true))
}

/// `job.exited` at the home node: a job that ran elsewhere ended.
pub fn job_exited(ctx: &AgentContext, e: hpc::protocol::JobExited) -> Result<Value, RpcError> {
    let known = ctx.jobs.modify(ctx.node_id, e.home_pid, |r| {
        if r.info.where_ == e.node && r.info.exit.is_none() {
            r.info.exit = Some(e.code);
            r.info.signal = e.signal;
            r.ended_ms = crate::jobs::now_ms();
        }
    })?;
    if !known {
        return Err(RpcError::no_such_process(e.home_pid));
    }
    tracing::info!(
        pid = e.home_pid,
        node = e.node,
        code = e.code,
        "migrated job ended"
    );
    ctx.request_resample();
    Ok(json!(true))
}

/// `expel`: block arrivals, then send every guest home. Returns what moved and
/// what could not.
pub async fn expel(ctx: &AgentContext) -> Result<Evacuation, RpcError> {
    if ctx.criu.is_none() {
        return Err(crate::rpc::needs_migration(
            ctx,
            "expel (sending guests home)",
        ));
    }
    ctx.store
        .update(|s| s.admin.block = true)
        .map_err(|e| RpcError::new(codes::OS_ERROR, e.to_string()))?;
    ctx.request_resample();
    // A guest is addressed here by its local PID.
    let guests = ctx.jobs.guests().into_iter().map(|g| g.info.pid);
    Ok(send_home(ctx, guests, Cause::Expel).await)
}

/// Moves each process home (even if locked); what moved and what could not.
async fn send_home(
    ctx: &AgentContext,
    pids: impl Iterator<Item = i32>,
    cause: Cause,
) -> Evacuation {
    let mut done = Evacuation::default();
    for pid in pids {
        let p = MigrateParams {
            pid,
            to: "home".into(),
            force: true,
            mode: MigrationMode::Auto,
        };
        match migrate(ctx, p, cause.clone()).await {
            Ok(_) => done.moved += 1,
            Err(e) => done.failed.push(MoveFailure {
                pid,
                error: e.message,
            }),
        }
    }
    done
}

/// `bring`: keep local processes here (`lstay`), then bring every job of this
/// node home.
pub async fn bring(ctx: &AgentContext) -> Result<Evacuation, RpcError> {
    if ctx.criu.is_none() {
        return Err(crate::rpc::needs_migration(
            ctx,
            "bring (bringing migrated processes home)",
        ));
    }
    ctx.store
        .update(|s| s.admin.lstay = true)
        .map_err(|e| RpcError::new(codes::OS_ERROR, e.to_string()))?;
    // This node's jobs are addressed here by their home PID.
    let away = ctx.jobs.away_jobs().into_iter().map(|j| j.info.home_pid);
    Ok(send_home(ctx, away, Cause::Bring).await)
}

/// The unsettled migration of job `home/home_pid`, if one is.
pub fn unsettled(ctx: &AgentContext, home: NodeId, home_pid: i32) -> Option<ledger::InDoubt> {
    ctx.ledger
        .unsettled()
        .into_iter()
        .find(|d| d.moved.home == home && d.moved.home_pid == home_pid)
}

/// Asks the targets of migrations whose commit went unanswered what they
/// decided, and acts on each answer (a job being migrated now is left to it).
async fn settle_doubts(ctx: &AgentContext) {
    for doubt in ctx.ledger.unsettled() {
        let Some(_busy) = ctx.jobs.reserve(doubt.moved.home, doubt.moved.home_pid) else {
            continue;
        };
        if let Some(committed) = send::ask_until(ctx, &doubt, Duration::ZERO).await {
            tracing::info!(
                id = doubt.id,
                committed,
                "learned what became of a migration"
            );
            send::settle(ctx, &doubt, committed).await;
        }
    }
}

/// Ends the restored copies a previous run of the agent left waiting for
/// their commit: it never came, so they must not run.
pub fn end_stale_restores(ctx: &AgentContext, stale: Vec<(String, ledger::Decision)>) {
    for (id, _) in stale {
        receive::resolve(ctx, &id);
    }
}

/// Background work: reap jobs (every 250 ms); every 2 s tell homes about guests
/// that ended and moves they missed, settle migrations whose commit went
/// unanswered, and refresh the rows of this node's jobs running elsewhere.
pub async fn jobs_loop(ctx: std::sync::Arc<AgentContext>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        tick.tick().await;
        let ended = ctx.jobs.reap();
        if !ended.is_empty() {
            ctx.request_resample();
        }
        deputies::end_deputies(&ctx).await;
        n += 1;
        if !n.is_multiple_of(8) {
            continue;
        }
        for r in ended {
            let Some(code) = r.info.exit else { continue };
            let notice = hpc::protocol::JobExited {
                home_pid: r.info.home_pid,
                node: ctx.node_id,
                code,
                signal: r.info.signal,
            };
            let told = match peer_status(&ctx, r.info.home).await {
                Ok(st) => ctx
                    .peers
                    .call(
                        &st,
                        methods::JOB_EXITED,
                        to_value(&notice).unwrap_or_default(),
                        Duration::from_secs(5),
                    )
                    .await
                    .is_ok(),
                Err(_) => false,
            };
            if told && let Err(e) = ctx.jobs.remove(r.info.home, r.info.home_pid) {
                tracing::warn!(error = %e, "cannot forget an ended guest");
            }
        }
        for moved in ctx.jobs.take_move_notices() {
            if tell_home(&ctx, &moved).await.is_err() {
                ctx.jobs.defer_move_notice(moved);
            }
        }
        settle_doubts(&ctx).await;
        refresh_remote_rows(&ctx).await;
    }
}

async fn refresh_remote_rows(ctx: &AgentContext) {
    for r in ctx.jobs.away_jobs() {
        let Ok(st) = peer_status(ctx, r.info.where_).await else {
            continue;
        };
        if let Ok(v) = ctx
            .peers
            .call(
                &st,
                methods::PROC_GET,
                to_value(&hpc::protocol::PidParams { pid: r.info.pid }).unwrap_or_default(),
                Duration::from_secs(5),
            )
            .await
            && let Ok(row) = serde_json::from_value(v)
        {
            ctx.jobs.set_remote_row(r.info.home_pid, row);
        }
    }
}
