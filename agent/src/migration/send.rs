//! The source side of a migration: offer, checkpoint (the job stays frozen),
//! stream the images, wait for the restore, commit, and only then end the
//! source copy. Every failure after the checkpoint resumes the frozen copy, so
//! the process continues where it was with its memory intact.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hpc::model::NodeStatus;
use hpc::protocol::{MemoryPath, MigrationMode, MigrationReport, RpcError, codes};
use tokio::io::{AsyncBufRead, AsyncWrite, BufReader};

use super::Fault;
use super::criu_cmd;
use super::ledger::InDoubt;
use super::postcopy::Traffic;
use super::postcopy::source::{PullEnd, Serving};
use super::wire::{self, Msg};
use crate::context::AgentContext;
use crate::jobs::{JobRecord, now_ms};

/// How long the target may take to store and restore the images.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the target may take to answer an offer or a commit.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A directory of images, removed when dropped.
pub struct ImageDir(pub PathBuf);

impl ImageDir {
    /// Creates `parent/name` with its `pre` and `final` subdirectories, all 0700.
    pub fn create(parent: &Path, name: &str) -> Result<Self, String> {
        let dir = parent.join(name);
        make_private_dir(&dir)?;
        let made = Self(dir);
        for sub in [made.pre(), made.fin()] {
            make_private_dir(&sub)?;
        }
        Ok(made)
    }

    /// Where the pre-copy images go.
    pub fn pre(&self) -> PathBuf {
        self.0.join("pre")
    }

    /// Where the final checkpoint's images go (its `parent` is `../pre`).
    pub fn fin(&self) -> PathBuf {
        self.0.join("final")
    }
}

impl Drop for ImageDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove image directory");
        }
    }
}

/// Creates a 0700 directory.
pub fn make_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create image directory {}: {e}", dir.display()))
}

/// Empties a directory (the images of a failed checkpoint).
pub(super) fn clear_dir(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let _ = std::fs::remove_file(e.path());
    }
}

/// What the transfer and restore produced.
struct Restored {
    root_pid: i32,
    pid: i32,
    restore_ms: u64,
    transfer_ms: u64,
    bytes: u64,
    streamed_bytes: u64,
    files: u32,
}

async fn answer<R: AsyncBufRead + Unpin>(r: &mut R, limit: Duration) -> Result<Msg, String> {
    match tokio::time::timeout(limit, wire::recv(r)).await {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(format!("the target agent went away ({e})")),
        Err(_) => Err(format!("the target agent did not answer within {limit:?}")),
    }
}

/// Memory a set of processes would checkpoint: resident plus swapped-out
/// pages (`VmRSS` + `VmSwap`), in bytes; the expected image size.
pub fn image_estimate(pids: &[i32]) -> u64 {
    let kib = |text: &str, field: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .map(|s| (kib(&s, "VmRSS:") + kib(&s, "VmSwap:")).saturating_mul(1024))
        .fold(0u64, u64::saturating_add)
}

/// A checkpointed tree, stopped: resumed when dropped unless its fate was
/// handed on ([`FrozenTree::hand_over`]), so no error, cancelled task or
/// shutdown can leave the process stopped.
pub struct FrozenTree {
    pids: Vec<i32>,
    armed: bool,
}

impl FrozenTree {
    fn new(pids: Vec<i32>) -> Self {
        Self { pids, armed: true }
    }

    /// From here the migration ledger decides whether the tree resumes or ends.
    fn hand_over(&mut self) {
        self.armed = false;
    }
}

impl Drop for FrozenTree {
    fn drop(&mut self) {
        if self.armed {
            criu_cmd::resume(&self.pids);
        }
    }
}

/// How long a migration request waits to learn the fate of a commit whose
/// answer was lost before it returns (the agent keeps asking afterwards).
const RESOLVE_WAIT: Duration = Duration::from_secs(60);
/// How long a source whose pull broke asks the target before it resumes
/// its copy anyway: past the target's own stall limit, by which the target
/// has ended its copy.
const BROKEN_WAIT: Duration = Duration::from_secs(15);

/// Moves `job` (running here) to the node `target`. `started` is when the
/// request arrived (for the report's total); `cause`, why it moves.
pub async fn send(
    ctx: &AgentContext,
    criu: &Path,
    job: &JobRecord,
    target: &NodeStatus,
    started: Instant,
    cause: &super::Cause,
    mode: MigrationMode,
) -> Result<MigrationReport, RpcError> {
    let info = &job.info;
    let fail = |reason: String| {
        RpcError::new(
            codes::MIGRATION_FAILED,
            format!(
                "process {} did not move to node {}: {reason}; it continues on node {}",
                info.pid, target.id, ctx.node_id
            ),
        )
    };
    // A single process moves alone: its namespace's placeholder init (when
    // it has one here) first, as the root that ends with it.
    let tree = if !info.single {
        criu_cmd::tree(info.root_pid)
    } else if info.root_pid != info.pid && info.root_pid > 0 {
        vec![info.root_pid, info.pid]
    } else {
        vec![info.pid]
    };
    let in_namespace = info.single && tree.len() > 1;
    let at = if in_namespace {
        criu_cmd::SingleAt::Placeholder {
            inner: info.own_pid(),
        }
    } else {
        match crate::jobs::other_namespace(info.pid, "pid") {
            Some(pidns) if info.single => criu_cmd::SingleAt::Job { pidns },
            _ => criu_cmd::SingleAt::Node,
        }
    };
    let root_start = tree
        .first()
        .and_then(|r| crate::sampler::start_time_of(*r))
        .unwrap_or(0);
    let estimate = image_estimate(&tree);
    // Post-copy moves whole jobs; a single process (with its deputy at
    // home) moves pre-copy.
    let want_postcopy = match mode {
        MigrationMode::Precopy => false,
        MigrationMode::Auto => ctx.postcopy.is_some() && !info.single,
        MigrationMode::Postcopy if info.single => {
            return Err(fail(
                "post-copy moves whole jobs; a single process moves pre-copy (--mode precopy or auto)".into(),
            ));
        }
        MigrationMode::Postcopy if ctx.postcopy.is_some() => true,
        MigrationMode::Postcopy => {
            return Err(fail(format!(
                "node {} cannot move it post-copy ({})",
                ctx.node_id, ctx.migration
            )));
        }
    };
    // Room for the checkpoint here, before anything is frozen: a lazy
    // checkpoint writes no memory, so post-copy needs room only for the
    // other images (more if the target will not take it post-copy).
    let no_room = |why: String| format!("node {} has no room to checkpoint it: {why}", ctx.node_id);
    let full = super::estimate_with_margin(estimate)
        .ok_or_else(|| fail(no_room("its size overflows".into())))?;
    let first = if want_postcopy {
        super::OTHER_IMAGES
    } else {
        full
    };
    let mut room = ctx
        .images
        .reserve(first)
        .map_err(|why| fail(no_room(why)))?;
    // `proc.progress` follows it from here until it ends.
    let traffic = Arc::new(Traffic::default());
    let progress = ctx
        .under_way
        .follow(info.pid, target.id, estimate, traffic.clone());
    // Pre-copy without a pre-dump streams the checkpoint's memory.
    let pre_dump_first = ctx.precopy && !info.single;
    let conn = ctx.peers.open_migration(target).await?;
    let (read, mut write) = tokio::io::split(conn.stream);
    let mut read = BufReader::with_capacity(64 * 1024, read);

    let id = super::ledger::new_id();
    // The direct pages link's key, if this node uses one (it travels only
    // in the offer, inside the SSH session).
    let link_key = if ctx.pages_port.is_some() {
        super::sealed_link::LinkKey::new()
            .inspect_err(|e| tracing::warn!(error = %e, "the pages go in the SSH session"))
            .ok()
    } else {
        None
    };
    let mut offered = info.clone();
    offered.nmigs += 1;
    let offer = Msg::Offer {
        id: id.clone(),
        job: Box::new(offered.clone()),
        from: ctx.node_id,
        estimate,
        postcopy: want_postcopy,
        stream: !pre_dump_first,
        link_key: link_key.clone(),
    };
    wire::send(&mut write, &offer)
        .await
        .map_err(|e| fail(format!("cannot offer it to the target: {e}")))?;
    let (lazy, stream, link_port) = match answer(&mut read, ANSWER_TIMEOUT).await.map_err(fail)? {
        Msg::Accept {
            postcopy,
            stream,
            link_port,
        } => {
            let lazy = postcopy && want_postcopy;
            (lazy, stream && !lazy && !pre_dump_first, link_port)
        }
        Msg::Refuse { reason } => return Err(fail(reason)),
        other => return Err(fail(format!("unexpected answer to the offer: {other:?}"))),
    };
    let moved_as = if lazy {
        MigrationMode::Postcopy
    } else {
        MigrationMode::Precopy
    };
    progress.agreed(moved_as);
    if !lazy && let Err(why) = room.ensure(full) {
        let reason = no_room(why);
        abort(&mut write, &reason).await;
        return Err(fail(reason));
    }
    if mode == MigrationMode::Postcopy && !lazy {
        let reason = format!("node {} cannot take it post-copy", target.id);
        abort(&mut write, &reason).await;
        return Err(fail(reason));
    }
    // The memory travels on a channel of its own in this session: pulled
    // (post-copy) or streamed during the checkpoint.
    let pages = if lazy || stream {
        let link = link_port.zip(link_key.as_ref());
        match super::pages_path::open(&conn.session, &id, &target.addr, link).await {
            Ok(p) => Some(p),
            Err(reason) => {
                abort(&mut write, &reason).await;
                return Err(fail(reason));
            }
        }
    } else {
        None
    };
    let pages_way = pages.as_ref().map_or(MemoryPath::Files, |p| p.way);

    let dir = ImageDir::create(
        ctx.images.dir(),
        &format!("out-{}-{}-{}", info.home, info.home_pid, now_ms()),
    )
    .map_err(fail)?;
    let (pre, fin) = (dir.pre(), dir.fin());
    // Pre-copy while the job runs, so that the freeze only moves what changed.
    let t_pre = Instant::now();
    let pre_dumped = if pre_dump_first && !lazy {
        criu_cmd::pre_dump(criu, info.root_pid, &pre).await
    } else {
        Err("the kernel does not track dirty memory".to_string())
    };
    let (precopy_bytes, parent) = match pre_dumped {
        Ok(_) => {
            let files = super::image_files::list(&pre).map_err(fail)?;
            let lost = |e: String| fail(format!("pre-copy: {e}"));
            wire::send(
                &mut write,
                &Msg::PreFiles {
                    files: files.clone(),
                },
            )
            .await
            .map_err(|e| lost(e.to_string()))?;
            let bytes = super::image_files::send(&pre, &files, &mut write)
                .await
                .map_err(lost)?;
            match answer(&mut read, RESTORE_TIMEOUT).await.map_err(fail)? {
                Msg::Stored => (bytes, true),
                Msg::Failed { reason } => return Err(fail(reason)),
                other => {
                    return Err(fail(format!(
                        "unexpected answer to the pre-copy: {other:?}"
                    )));
                }
            }
        }
        Err(e) => {
            tracing::debug!(pid = info.pid, error = %e, "no pre-copy; moving everything during the freeze");
            (0, false)
        }
    };
    let precopy_ms = t_pre.elapsed().as_millis() as u64;
    if info.single
        && !in_namespace
        && let Err(reason) = lead_session_if_unseen(ctx, info.pid).await
    {
        abort(&mut write, &reason).await;
        return Err(fail(reason));
    }
    let mut frozen_at = Instant::now();
    progress.frozen();
    let what = if info.single {
        criu_cmd::Dumped::Single { pid: info.pid, at }
    } else {
        criu_cmd::Dumped::Tree {
            root: info.root_pid,
            parent,
        }
    };
    let (pages, mut stream_to) = if lazy { (pages, None) } else { (None, pages) };
    // Post-copy: CRIU then serves the memory from the frozen tree.
    let mut serving = None;
    // Streaming: whether the memory went to the target's page server (a
    // second attempt writes files).
    let mut streamed = false;
    let mut checkpoint = async || {
        if lazy {
            let t = Instant::now();
            let dump = super::postcopy::start_lazy_dump(criu, what, &fin).await?;
            serving = Some(dump);
            Ok(t.elapsed().as_millis() as u64)
        } else if let Some(channel) = stream_to.take() {
            let dumped = super::streaming::dump(criu, what, &fin, channel, traffic.clone()).await;
            streamed = dumped.is_ok();
            dumped
        } else {
            criu_cmd::dump(criu, what, &fin).await
        }
    };
    let mut dumped = checkpoint().await;
    if let Err(first) = &dumped {
        // CRIU resumed the tree. A second attempt gets past transient failures
        // (seen under load: "Parasite failed to dump /proc/self/cgroup"); a
        // real refusal fails again with the same words.
        tracing::warn!(pid = info.pid, error = %first, "checkpoint failed; trying once more");
        clear_dir(&fin);
        tokio::time::sleep(Duration::from_millis(100)).await;
        frozen_at = Instant::now();
        progress.frozen();
        dumped = checkpoint().await;
    }
    let step = |what: &str| {
        tracing::debug!(
            pid = info.pid,
            ms = frozen_at.elapsed().as_millis() as u64,
            "frozen: {what}"
        );
    };
    step("checkpointed");
    let dump_ms = match dumped {
        Ok(ms) => ms,
        Err(reason) => {
            abort(&mut write, &reason).await;
            return Err(fail(reason));
        }
    };
    // The tree is frozen from here on: the guard resumes it on any failure.
    let mut frozen = FrozenTree::new(tree.clone());
    let serving = match (serving, pages) {
        (Some(dump), Some(pages)) => Some(Serving::start(
            dump,
            pages.read,
            pages.write,
            &fin,
            traffic.clone(),
        )),
        _ => None,
    };
    let sent = Sent {
        parent,
        lazy,
        streamed,
    };
    let restored = match transfer(&fin, sent, &mut read, &mut write).await {
        Ok(r) => r,
        Err(reason) => {
            if let Some(s) = serving {
                s.abandon().await;
            }
            drop(frozen);
            tracing::warn!(pid = info.pid, to = target.id, %reason, "migration failed; resumed at the source");
            return Err(fail(reason));
        }
    };
    step("restored there");
    // The memory went the pages' way if pulled or streamed, else as files.
    let memory_path = if lazy || streamed {
        pages_way
    } else {
        MemoryPath::Files
    };
    let mut report = MigrationReport {
        home: info.home,
        home_pid: info.home_pid,
        from: ctx.node_id,
        to: target.id,
        pid: restored.pid,
        bytes: restored.bytes,
        files: restored.files,
        dump_ms,
        transfer_ms: restored.transfer_ms,
        restore_ms: restored.restore_ms,
        freeze_ms: frozen_at.elapsed().as_millis() as u64,
        mode: moved_as,
        released_ms: 0,
        pulled_bytes: 0,
        streamed_bytes: restored.streamed_bytes,
        memory_path,
        precopy_ms,
        precopy_bytes,
        total_ms: started.elapsed().as_millis() as u64,
        nmigs: offered.nmigs,
        at_ms: now_ms(),
        why: cause.to_string(),
    };
    offered.where_ = target.id;
    offered.pid = restored.pid;
    offered.root_pid = restored.root_pid;
    offered.last_migration = Some(report.clone());
    let doubt = InDoubt {
        id: id.clone(),
        target: target.id,
        moved: offered.clone(),
        tree,
        root_start,
    };
    // Before the commit leaves, the ledger takes over the frozen tree: from
    // here only the target's decision resumes or ends it.
    if let Err(e) = ctx.ledger.in_doubt(&doubt) {
        if let Some(s) = serving {
            s.abandon().await;
        }
        drop(frozen);
        return Err(fail(format!("cannot record the hand-over: {e}")));
    }
    frozen.hand_over();
    step("hand-over recorded");
    let mut pull_failed: Option<String> = None;
    let answered = commit(ctx, &mut read, &mut write).await;
    if let Ok(after_resume_ms) = &answered {
        progress.running_there();
        let freeze = (frozen_at.elapsed().as_millis() as u64).saturating_sub(*after_resume_ms);
        report.freeze_ms = freeze;
    }
    let committed = match (answered, serving) {
        (Ok(_), None) => Some(true),
        (Ok(_), Some(serving)) => {
            match serving.outcome(&mut read).await {
                PullEnd::Complete(bytes) => {
                    report.pulled_bytes = bytes;
                    Some(true)
                }
                PullEnd::Failed(why) => {
                    tracing::warn!(pid = info.pid, to = target.id, %why, "post-copy pull failed at the target; resuming here");
                    pull_failed = Some(why);
                    Some(false)
                }
                PullEnd::InDoubt(why) => {
                    tracing::warn!(pid = info.pid, to = target.id, %why, id, "post-copy: the last page left, the target's word did not arrive; asking it");
                    ask_until(ctx, &doubt, RESOLVE_WAIT).await
                }
                PullEnd::Broken(why) => {
                    // The target cannot have every page: it ends its copy
                    // (its agent, or its guard if the agent died). Asking
                    // makes sure; without an answer, its stall timer has
                    // fired by the time this gives up.
                    tracing::warn!(pid = info.pid, to = target.id, %why, id, "post-copy pull broke; the target ends its copy");
                    pull_failed = Some(why);
                    Some(ask_until(ctx, &doubt, BROKEN_WAIT).await.unwrap_or(false))
                }
            }
        }
        (Err(why), serving) => {
            if let Some(s) = serving {
                // Not committed or not known: CRIU lets the tree go stopped.
                s.abandon().await;
            }
            tracing::warn!(pid = info.pid, to = target.id, %why, id, "commit unanswered; asking the target what it decided");
            ask_until(ctx, &doubt, RESOLVE_WAIT).await
        }
    };
    drop((read, write, conn.session));
    drop(dir);
    match committed {
        Some(true) => {
            report.released_ms = if lazy {
                frozen_at.elapsed().as_millis() as u64
            } else {
                report.freeze_ms
            };
            report.total_ms = started.elapsed().as_millis() as u64;
            report.at_ms = now_ms();
            let mut moved = offered;
            moved.last_migration = Some(report.clone());
            let mut doubt = doubt;
            doubt.moved = moved;
            settle(ctx, &doubt, true).await;
            tracing::info!(
                pid = info.home_pid,
                home = info.home,
                to = target.id,
                bytes = report.bytes,
                dump_ms,
                transfer_ms = report.transfer_ms,
                restore_ms = report.restore_ms,
                freeze_ms = report.freeze_ms,
                "migrated"
            );
            Ok(report)
        }
        Some(false) => {
            settle(ctx, &doubt, false).await;
            Err(fail(match pull_failed {
                Some(why) => format!("its memory could not be pulled ({why})"),
                None => format!(
                    "node {} did not take the commit, so its copy was ended",
                    target.id
                ),
            }))
        }
        None => Err(RpcError::new(
            codes::MIGRATION_FAILED,
            format!(
                "process {} is held stopped on node {}: it was handed to node {}, whose answer to the commit was lost, and node {} cannot be asked now; the agent keeps asking and then resumes it here or ends it, as node {} decided (never both)",
                info.pid, ctx.node_id, target.id, target.id, target.id
            ),
        )),
    }
}

/// Sends the commit and waits for `committed`; the target's resume-to-answer
/// time on success.
async fn commit<R, W>(ctx: &AgentContext, read: &mut R, write: &mut W) -> Result<u64, String>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if ctx.fault == Some(Fault::LoseCommit) {
        tracing::warn!("test fault: the commit is lost on the way");
        return Err("test fault: commit lost".into());
    }
    wire::send(write, &Msg::Commit)
        .await
        .map_err(|e| format!("the target agent went away before the commit ({e})"))?;
    if ctx.fault == Some(Fault::DropAfterCommit) {
        tracing::warn!("test fault: connection dropped right after the commit");
        return Err("test fault: connection dropped after the commit".into());
    }
    match answer(read, ANSWER_TIMEOUT).await? {
        Msg::Committed { after_resume_ms } => Ok(after_resume_ms),
        other => Err(format!("unexpected answer to the commit: {other:?}")),
    }
}

/// Asks the target what it decided about `doubt`, over new connections, until
/// it answers or `limit` passes (`None`).
pub async fn ask_until(ctx: &AgentContext, doubt: &InDoubt, limit: Duration) -> Option<bool> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(200);
    loop {
        match ask(ctx, doubt).await {
            Ok(committed) => return Some(committed),
            Err(e) => tracing::debug!(id = doubt.id, error = %e, "target not asked yet"),
        }
        if Instant::now() + pause > deadline {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// One question to the target about `doubt`.
async fn ask(ctx: &AgentContext, doubt: &InDoubt) -> Result<bool, String> {
    let local = ctx.current().status.clone();
    let st = ctx
        .peers
        .status_of(&ctx.cluster, &local, doubt.target)
        .await
        .map_err(|e| e.message)?;
    let conn = ctx.peers.open_migration(&st).await.map_err(|e| e.message)?;
    let (read, mut write) = tokio::io::split(conn.stream);
    let mut read = BufReader::new(read);
    wire::send(
        &mut write,
        &Msg::Resolve {
            id: doubt.id.clone(),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    match answer(&mut read, ANSWER_TIMEOUT).await? {
        Msg::Outcome { committed } => Ok(committed),
        other => Err(format!("unexpected answer to resolve: {other:?}")),
    }
}

/// Acts on the target's decision: ends the frozen copy here and records the
/// departure (committed), or resumes it (not committed); then forgets the doubt.
pub async fn settle(ctx: &AgentContext, doubt: &InDoubt, committed: bool) {
    let root = doubt.tree.first().copied().unwrap_or(0);
    let same = crate::sampler::start_time_of(root) == Some(doubt.root_start);
    let (home, home_pid) = (doubt.moved.home, doubt.moved.home_pid);
    if committed {
        if let Some(report) = &doubt.moved.last_migration
            && let Err(e) = ctx.move_log.record(&doubt.moved, report)
        {
            tracing::error!(error = %e, "cannot record a move in the move log");
        }
        if let Err(e) = ctx.jobs.release_child(home, home_pid) {
            tracing::warn!(error = %e, "cannot release the source copy's child");
        }
        let mut pending = Vec::new();
        if same {
            if doubt.moved.single && doubt.tree.len() == 1 && home == ctx.node_id {
                // The original at home stays as the process's deputy.
                pending = take_as_deputy(ctx, root).await;
            } else {
                criu_cmd::kill_job(root);
                // Gone before the process table is read again, so that the
                // home lists the job where it runs, not its dying copy here.
                crate::jobs::ended_within(&doubt.tree, Duration::from_secs(2)).await;
            }
        }
        if let Some(job) = ctx.jobs.get(home, home_pid) {
            super::record_departure(ctx, &job, doubt.moved.clone()).await;
        }
        // Signals sent to it while it moved go where it runs now.
        for signal in pending {
            super::deputies::forward(ctx, root, signal).await;
        }
    } else if same {
        criu_cmd::resume(&doubt.tree);
        tracing::warn!(
            pid = home_pid,
            to = doubt.target,
            "the target did not take the commit; resumed here"
        );
    }
    ctx.ledger.settled(&doubt.id);
}

/// Tells the target that nothing is coming, and why (it may be gone).
async fn abort<W: AsyncWrite + Unpin>(write: &mut W, reason: &str) {
    let msg = Msg::Abort {
        reason: reason.to_string(),
    };
    let _ = wire::send(write, &msg).await;
}

/// Gives `pid` a session of its own when its session leader is outside this
/// PID namespace (started from outside a container): CRIU cannot checkpoint
/// a process whose session it cannot see. Signals to its former process
/// group no longer reach it afterwards.
async fn lead_session_if_unseen(ctx: &AgentContext, pid: i32) -> Result<(), String> {
    if crate::classify::group_and_session(pid).is_none_or(|(_, session)| session != 0) {
        return Ok(());
    }
    super::deputies::ask_keeper(ctx, move |d| d.lead_session(pid))
        .await
        .map_err(|why| format!("it cannot take the session of its own it needs to move: {why}"))?;
    tracing::info!(
        pid,
        "its session leader is outside this PID namespace: it leads a session of its own now"
    );
    Ok(())
}

/// Adopts the original of a single process that left home as its deputy;
/// one that cannot be adopted is ended (the process runs on elsewhere). The
/// signals that waited for the original are returned, to be forwarded.
async fn take_as_deputy(ctx: &AgentContext, pid: i32) -> Vec<i32> {
    match super::deputies::ask_keeper(ctx, move |d| d.adopt(pid)).await {
        Ok(a) => {
            let home = ctx.node_id;
            if let Err(e) = ctx.jobs.modify(home, pid, |r| r.deputy = pid) {
                tracing::error!(pid, error = %e, "cannot record a deputy");
            }
            tracing::info!(
                pid,
                rss_before = a.rss_before,
                rss_after = a.rss_after,
                pending = ?a.pending,
                "the original stays home as the process's deputy"
            );
            a.pending
        }
        Err(e) => {
            tracing::error!(pid, error = %e, "cannot keep the original as a deputy; ending it");
            criu_cmd::kill_job(pid);
            Vec::new()
        }
    }
}

/// What the final images hold.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// Only what changed since the pre-copy images.
    parent: bool,
    /// No memory: the target pulls it (post-copy).
    lazy: bool,
    /// No memory: it went to the target's page server (streaming).
    streamed: bool,
}

async fn transfer<R, W>(
    dir: &Path,
    sent: Sent,
    read: &mut R,
    write: &mut W,
) -> Result<Restored, String>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let t = Instant::now();
    let files = super::image_files::list(dir)?;
    let lost = |e: wire::WireError| format!("the target agent went away during the transfer ({e})");
    let header = Msg::Files {
        files: files.clone(),
        parent: sent.parent,
        lazy: sent.lazy,
        streamed: sent.streamed,
    };
    wire::send(write, &header).await.map_err(lost)?;
    let bytes = super::image_files::send(dir, &files, write).await?;
    let transfer_ms = t.elapsed().as_millis() as u64;
    match answer(read, RESTORE_TIMEOUT).await? {
        Msg::Restored {
            root_pid,
            pid,
            restore_ms,
            streamed_bytes,
        } => Ok(Restored {
            root_pid,
            pid,
            restore_ms,
            transfer_ms,
            bytes: bytes.saturating_add(streamed_bytes),
            streamed_bytes,
            files: files.len() as u32,
        }),
        Msg::Failed { reason } => Err(reason),
        other => Err(format!("unexpected answer to the images: {other:?}")),
    }
}
