//! The target side of a migration, served on the `openmosix-migrate`
//! subsystem (cluster key only): check the offer and reserve room for its
//! images, store them in a 0700 directory (held to the reservation, with a
//! time limit on every read), restore the job stopped, and let it run only on
//! the source's commit, decided in the [`Ledger`](super::ledger::Ledger).
//! Anything else (the source gone, an abort, a timeout) ends the restored
//! copy, so there is never a second running copy. The same subsystem answers
//! a source that asks what was decided (`resolve`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::criu_cmd;
use super::image_files;
use super::ledger::{Decision, valid_id};
use super::postcopy::target::Pull;
use super::send::ImageDir;
use super::streaming::PageServer;
use super::wire::{self, ImageFile, Msg};
use super::{Fault, estimate_with_margin};
use crate::context::AgentContext;
use crate::image_space::Reservation;
use crate::jobs::now_ms;

/// How long the source may take between messages of a migration.
const STEP_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a new channel may take to say what it wants.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one channel of the migration subsystem: an incoming migration, or
/// a question about one.
pub async fn receive<R, W>(read: R, mut write: W, ctx: Arc<AgentContext>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut read = BufReader::with_capacity(256 * 1024, read);
    let first = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, wire::recv(&mut read)).await;
    match first {
        Ok(Ok(Msg::Offer {
            id,
            job,
            from,
            estimate,
            postcopy,
            stream,
            link_key,
        })) => {
            let offer = Offer {
                id,
                job: *job,
                from,
                estimate,
                postcopy,
                stream,
                link_key,
            };
            incoming(&ctx, offer, &mut read, &mut write).await;
        }
        Ok(Ok(Msg::Resolve { id })) => {
            let reply = if valid_id(&id) {
                Msg::Outcome {
                    committed: resolve(&ctx, &id) == Decision::Committed,
                }
            } else {
                Msg::Failed {
                    reason: format!("`{id}` is not a migration id"),
                }
            };
            let _ = wire::send(&mut write, &reply).await;
        }
        Ok(Ok(other)) => {
            let reason = format!("expected an offer or a resolve, got {}", kind(&other));
            let _ = wire::send(&mut write, &Msg::Failed { reason }).await;
        }
        Ok(Err(wire::WireError::Protocol(e))) => {
            let reason = format!("not a migration message: {e}");
            let _ = wire::send(&mut write, &Msg::Failed { reason }).await;
        }
        Ok(Err(_)) | Err(_) => {}
    }
}

/// The name of a message, for errors.
fn kind(m: &Msg) -> &'static str {
    match m {
        Msg::Offer { .. } => "offer",
        Msg::Accept { .. } => "accept",
        Msg::Refuse { .. } => "refuse",
        Msg::PreFiles { .. } => "pre_files",
        Msg::Stored => "stored",
        Msg::Files { .. } => "files",
        Msg::Abort { .. } => "abort",
        Msg::Restored { .. } => "restored",
        Msg::Failed { .. } => "failed",
        Msg::Commit => "commit",
        Msg::Resolve { .. } => "resolve",
        Msg::Outcome { .. } => "outcome",
        Msg::Committed { .. } => "committed",
        Msg::Pulled { .. } => "pulled",
    }
}

/// A source asks what became of migration `id`: the final decision; a copy
/// still waiting for its commit is ended first.
pub fn resolve(ctx: &AgentContext, id: &str) -> Decision {
    let (decision, pending) = ctx.ledger.settle(id);
    if let Some((root, start)) = pending {
        tracing::warn!(
            id,
            root,
            "source asked about a migration still waiting for its commit; restored copy ended"
        );
        end_copy(ctx, root, start);
    }
    decision
}

/// Ends a restored copy, if the process at `root` still is that copy.
fn end_copy(ctx: &AgentContext, root: i32, start: u64) {
    if crate::sampler::start_time_of(root) == Some(start) {
        criu_cmd::kill_job(root);
        ctx.jobs.add_stray(root);
    }
}

/// What the source offered.
struct Offer {
    id: String,
    job: hpc::protocol::JobInfo,
    from: hpc::model::NodeId,
    estimate: u64,
    postcopy: bool,
    stream: bool,
    link_key: Option<super::sealed_link::LinkKey>,
}

async fn incoming<R, W>(ctx: &Arc<AgentContext>, offer: Offer, read: &mut R, write: &mut W)
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Offer {
        id,
        job,
        from,
        estimate,
        postcopy,
        stream,
        link_key,
    } = offer;
    // Post-copy moves whole jobs (as the source asks only for them).
    let postcopy = postcopy && ctx.postcopy.is_some() && !job.single;
    let mut room = match check_offer(ctx, &id, &job, estimate, postcopy) {
        Ok(r) => r,
        Err(reason) => {
            tracing::info!(pid = job.home_pid, home = job.home, from, %reason, "refused a migration");
            let _ = wire::send(write, &Msg::Refuse { reason }).await;
            return;
        }
    };
    // Otherwise the memory streams to a page server here, when asked.
    let stream = stream && !postcopy;
    // Either way the source opens the pages path next: the direct link on
    // this node's pages port if both have one, else the SSH channel.
    let link_port = ctx
        .pages_port
        .filter(|_| link_key.is_some() && (postcopy || stream));
    let mut channel = (postcopy || stream).then(|| {
        ctx.page_channels
            .expect(&id, link_key.filter(|_| link_port.is_some()))
    });
    let _forget = ForgetChannel(ctx, &id);
    let accept = Msg::Accept {
        postcopy,
        stream,
        link_port,
    };
    if wire::send(write, &accept).await.is_err() {
        return;
    }
    // Peers placing new processes count it from now (`node.load`).
    let arriving = ctx.arrivals.begin();
    let dir = match ImageDir::create(
        ctx.images.dir(),
        &format!("in-{}-{}-{}", job.home, job.home_pid, now_ms()),
    ) {
        Ok(d) => d,
        Err(reason) => {
            let _ = wire::send(write, &Msg::Failed { reason }).await;
            return;
        }
    };
    let (pre, fin) = (dir.pre(), dir.fin());
    let Some(criu) = ctx.criu.clone() else {
        return;
    };
    let mut page_server = match channel.take() {
        Some(ch) if stream => match PageServer::start(&criu, &fin, ch).await {
            Ok(mut p) => {
                if ctx.fault == Some(Fault::BreakStream) {
                    p.stop();
                }
                Some(p)
            }
            Err(e) => {
                let reason = format!("on node {}: {e}", ctx.node_id);
                let _ = wire::send(write, &Msg::Failed { reason }).await;
                return;
            }
        },
        other => {
            channel = other;
            None
        }
    };
    let mut next = tokio::time::timeout(STEP_TIMEOUT, wire::recv(read)).await;
    if let Ok(Ok(Msg::PreFiles { files })) = &next {
        if !receive_files(ctx, &pre, files, read, write, &job, &mut room).await {
            return;
        }
        if wire::send(write, &Msg::Stored).await.is_err() {
            return;
        }
        next = tokio::time::timeout(STEP_TIMEOUT, wire::recv(read)).await;
    }
    let (files, parent, lazy, streamed) = match next {
        Ok(Ok(Msg::Files {
            files,
            parent,
            lazy,
            streamed,
        })) => (files, parent, lazy, streamed),
        Ok(Ok(Msg::Abort { reason })) => {
            tracing::info!(pid = job.home_pid, from, %reason, "source aborted the migration");
            return;
        }
        Ok(Ok(other)) => {
            let reason = format!("expected the images, got {}", kind(&other));
            let _ = wire::send(write, &Msg::Failed { reason }).await;
            return;
        }
        _ => return,
    };
    // The source is frozen from here: where its freeze goes, for `debug` logs.
    let images_at = std::time::Instant::now();
    let step = |what: &str| {
        tracing::debug!(
            pid = job.home_pid,
            ms = images_at.elapsed().as_millis() as u64,
            "frozen: {what}"
        );
    };
    // Streaming: the page server has written the memory (or the source fell
    // back to files, and it goes).
    let mut streamed_bytes = 0;
    match (page_server.take(), streamed) {
        (Some(mut server), true) => {
            let stored = server.finish().await.and_then(|bytes| {
                room.ensure(room.written().saturating_add(bytes))
                    .and_then(|()| room.wrote(bytes))
                    .map(|()| bytes)
            });
            match stored {
                Ok(bytes) => streamed_bytes = bytes,
                Err(e) => {
                    let reason = format!("node {} could not store the memory: {e}", ctx.node_id);
                    let _ = wire::send(write, &Msg::Failed { reason }).await;
                    return;
                }
            }
        }
        (Some(server), false) => {
            server.abandon().await;
            super::send::clear_dir(&fin);
        }
        (None, true) => {
            let reason = format!(
                "node {} did not agree to streaming, yet the images came without memory",
                ctx.node_id
            );
            let _ = wire::send(write, &Msg::Failed { reason }).await;
            return;
        }
        (None, false) => {}
    }
    // Post-copy: the lazy-pages daemon, bridged to the source, serves the
    // restore. It starts once the few images it reads at its start are here
    // (the source sends them first), while the others arrive.
    let lazy_start = match (lazy, channel) {
        (false, _) => None,
        (true, Some(channel)) => Some(channel),
        (true, None) => {
            let reason = format!(
                "node {} did not agree to post-copy, yet the images came without memory",
                ctx.node_id
            );
            let _ = wire::send(write, &Msg::Failed { reason }).await;
            return;
        }
    };
    let first = match lazy_start {
        Some(_) => image_files::daemon_prefix(&files),
        None => files.len(),
    };
    let (early, rest) = files.split_at(first);
    if !receive_files(ctx, &fin, early, read, write, &job, &mut room).await {
        return;
    }
    let (started, stored) = match lazy_start {
        Some(channel) => {
            let (started, stored) = tokio::join!(
                Pull::start(&criu, &fin, channel),
                receive_files(ctx, &fin, rest, read, write, &job, &mut room)
            );
            (Some(started), stored)
        }
        None => (None, true),
    };
    if !stored {
        return;
    }
    step("images stored, lazy-pages daemon ready");
    let mut pull = match started.transpose() {
        Ok(p) => p,
        Err(e) => {
            let reason = format!("on node {}: {e}", ctx.node_id);
            let _ = wire::send(write, &Msg::Failed { reason }).await;
            return;
        }
    };
    if parent && let Err(e) = std::os::unix::fs::symlink("../pre", fin.join("parent")) {
        let reason = format!("node {} cannot link the pre-copy images: {e}", ctx.node_id);
        let _ = wire::send(write, &Msg::Failed { reason }).await;
        return;
    }
    // A single process gets a placeholder namespace of its own to keep its PID.
    let mut placeholder = None;
    let restored = if job.single {
        let status_file = ctx.images.dir().join(format!(
            "single-{}-{}-{}.status",
            job.home,
            job.home_pid,
            now_ms()
        ));
        match ctx.jobs.start_placeholder(job.own_pid(), status_file).await {
            Ok(ph) => {
                let r = criu_cmd::restore_single(&criu, &fin, ph.init)
                    .await
                    .map(|(pid, ms)| (ph.init, pid, ms));
                if r.is_err() {
                    criu_cmd::kill_job(ph.init);
                    ctx.jobs.add_stray(ph.unshare);
                }
                placeholder = Some(ph);
                r
            }
            Err(e) => Err(e),
        }
    } else {
        criu_cmd::restore(&criu, &fin, lazy)
            .await
            .map(|(root, ms)| {
                let pid = crate::jobs::children(root).first().copied().unwrap_or(root);
                (root, pid, ms)
            })
    };
    let (root_pid, pid, restore_ms) = match restored {
        Ok(r) => r,
        Err(reason) => {
            let reason = format!("on node {}: {reason}", ctx.node_id);
            let _ = wire::send(write, &Msg::Failed { reason }).await;
            return;
        }
    };
    step("restored");
    // The child of this agent whose end is the process's end here.
    let reap_pid = placeholder.as_ref().map_or(root_pid, |p| p.unshare);
    let start = crate::sampler::start_time_of(root_pid).unwrap_or(0);
    let guarded = match (&mut pull, &ctx.postcopy) {
        (Some(p), Some(program)) => p.guard(program, root_pid, &ctx.jobs),
        _ => Ok(()),
    };
    if let Err(e) = guarded.and_then(|()| {
        ctx.ledger
            .restored(&id, root_pid, start)
            .map_err(|e| e.to_string())
    }) {
        criu_cmd::kill_job(root_pid);
        ctx.jobs.add_stray(reap_pid);
        let reason = format!("on node {}: {e}", ctx.node_id);
        let _ = wire::send(write, &Msg::Failed { reason }).await;
        return;
    }
    let restored = Msg::Restored {
        root_pid,
        pid,
        restore_ms,
        streamed_bytes,
    };
    step("guarded and recorded");
    let commit_arrived = wire::send(write, &restored).await.is_ok()
        && matches!(
            tokio::time::timeout(STEP_TIMEOUT, wire::recv(read)).await,
            Ok(Ok(Msg::Commit))
        );
    let committed = commit_arrived
        && if pull.is_some() {
            ctx.ledger.commit_pulling(&id)
        } else {
            ctx.ledger.commit(&id)
        };
    if !committed {
        if placeholder.is_some() {
            ctx.jobs.add_stray(reap_pid);
        }
        if let (_, Some((root, start))) = ctx.ledger.settle(&id) {
            tracing::warn!(
                pid = job.home_pid,
                from,
                "no commit from the source; restored copy ended"
            );
            end_copy(ctx, root, start);
        }
        if commit_arrived {
            let reason = format!(
                "node {}: the source asked about this migration before its commit arrived, so the copy here was ended",
                ctx.node_id
            );
            let _ = wire::send(write, &Msg::Failed { reason }).await;
        }
        return;
    }
    step("committed");
    criu_cmd::resume(&criu_cmd::tree(root_pid));
    let resumed = std::time::Instant::now();
    step("resumed");
    arriving.landed();
    let mut info = job.clone();
    info.where_ = ctx.node_id;
    info.pid = pid;
    info.root_pid = root_pid;
    info.exit = None;
    let previous = ctx.jobs.get(job.home, job.home_pid);
    let mut rec = previous.clone().unwrap_or_default();
    if rec.reap_pid > 0 {
        ctx.jobs.add_stray(rec.reap_pid);
    }
    if rec.info.last_migration.is_some() && info.last_migration.is_none() {
        info.last_migration = rec.info.last_migration.clone();
    }
    rec.info = info;
    rec.reap_pid = reap_pid;
    rec.status_file = placeholder.map(|p| p.status_file);
    if let Err(e) = ctx.jobs.put(rec) {
        tracing::error!(error = %e, "cannot record an arrived job");
    }
    // Answer once the process table lists the job, so the caller sees it at once.
    ctx.fresh_snapshot(Duration::from_millis(1500)).await;
    tracing::info!(
        pid = job.home_pid,
        home = job.home,
        from,
        local = pid,
        "job arrived"
    );
    if ctx.fault == Some(Fault::TargetSilentAfterCommit) {
        tracing::warn!(id, "test fault: leaving the commit unanswered");
        return;
    }
    let done = Msg::Committed {
        after_resume_ms: resumed.elapsed().as_millis() as u64,
    };
    let _ = wire::send(write, &done).await;
    if let Some(pull) = pull {
        let landed = Landed {
            id: &id,
            home: job.home,
            home_pid: job.home_pid,
            root_pid,
            reap_pid,
            start,
            previous,
        };
        let last = finish_pull(ctx, pull, landed).await;
        let _ = wire::send(write, &last).await;
    }
    let _ = write.shutdown().await;
}

/// Forgets a migration's pages channel when the migration is over.
struct ForgetChannel<'a>(&'a AgentContext, &'a str);

impl Drop for ForgetChannel<'_> {
    fn drop(&mut self) {
        self.0.page_channels.forget(self.1);
    }
}

/// A post-copy copy that runs here while its memory is pulled.
struct Landed<'a> {
    id: &'a str,
    home: hpc::model::NodeId,
    home_pid: i32,
    root_pid: i32,
    reap_pid: i32,
    start: u64,
    /// The job's record before it landed, to put back if the pull fails.
    previous: Option<crate::jobs::JobRecord>,
}

/// Waits for the last page: the copy is then complete (`pulled`), or it is
/// ended before its daemon may stop serving it (`failed`: the source's copy
/// continues). The message for the source.
async fn finish_pull(ctx: &AgentContext, mut pull: Pull, c: Landed<'_>) -> Msg {
    match pull.finish().await {
        Ok(bytes) if ctx.ledger.pulled(c.id) => {
            pull.release();
            // Its command line is readable now that its memory is here.
            ctx.request_resample();
            tracing::info!(
                pid = c.home_pid,
                home = c.home,
                bytes,
                "post-copy: every page arrived"
            );
            Msg::Pulled { bytes }
        }
        outcome => {
            let why = match outcome {
                Err(e) => e,
                Ok(_) => "the source asked about the migration before the last page arrived".into(),
            };
            // The job is not here after all: its record goes back to what it
            // was before the reaper can take the copy's end for the job's.
            let restored = match c.previous {
                Some(p) => ctx.jobs.put(p),
                None => ctx.jobs.remove(c.home, c.home_pid),
            };
            if let Err(e) = restored {
                tracing::error!(error = %e, "cannot put a job's record back");
            }
            ctx.jobs.add_stray(c.reap_pid);
            // Aborted, whoever ends the copy first (a source's `resolve` may have).
            let _ = ctx.ledger.settle(c.id);
            end_copy(ctx, c.root_pid, c.start);
            if !crate::jobs::ended_within(&[c.root_pid], Duration::from_secs(5)).await {
                tracing::error!(root = c.root_pid, "a copy with missing pages did not end");
            }
            ctx.request_resample();
            tracing::warn!(pid = c.home_pid, home = c.home, %why, "post-copy pull failed; the copy here was ended");
            Msg::Failed {
                reason: format!(
                    "node {}: the pull of its memory failed ({why}); the copy there was ended",
                    ctx.node_id
                ),
            }
        }
    }
}

/// Stores one set of image files in `dir`, held to the reservation `room`
/// (grown if the files are larger than offered and there is room); on a local
/// error (no room, a full disk) answers `failed` with the reason. False when
/// the migration is over.
async fn receive_files<R, W>(
    ctx: &AgentContext,
    dir: &Path,
    files: &[ImageFile],
    read: &mut R,
    write: &mut W,
    job: &hpc::protocol::JobInfo,
    room: &mut Reservation,
) -> bool
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let declared = files
        .iter()
        .try_fold(room.written(), |sum, f| sum.checked_add(f.size));
    let fits = match declared {
        Some(total) => room.ensure(total),
        None => Err("the image sizes overflow".to_string()),
    };
    if let Err(reason) = fits {
        // Nothing of these files was read: the stream is unusable from here,
        // so answer and end the migration (the source resumes).
        let reason = format!("node {} has no room for the images: {reason}", ctx.node_id);
        let _ = wire::send(write, &Msg::Failed { reason }).await;
        return false;
    }
    match image_files::store(dir, files, read, room).await {
        Ok(None) => true,
        Ok(Some(reason)) => {
            let reason = format!("node {} cannot store the images: {reason}", ctx.node_id);
            let _ = wire::send(write, &Msg::Failed { reason }).await;
            false
        }
        Err(e) => {
            tracing::warn!(pid = job.home_pid, error = %e, "source went away during the transfer");
            false
        }
    }
}

/// Refuses before anything is frozen: a malformed offer, no CRIU, blocked,
/// mask, no room (the room is reserved here, under the image ledger's lock;
/// `lazy`: post-copy, whose memory comes into the process, not into images,
/// so only the other images need room).
fn check_offer(
    ctx: &AgentContext,
    id: &str,
    job: &hpc::protocol::JobInfo,
    estimate: u64,
    lazy: bool,
) -> Result<Reservation, String> {
    if !valid_id(id) {
        return Err(format!("`{id}` is not a migration id (32 hex digits)"));
    }
    if ctx.criu.is_none() {
        return Err(format!("node {}: {}", ctx.node_id, ctx.migration));
    }
    if ctx.store.admin().block {
        return Err(format!(
            "node {} blocks arriving processes (block=1)",
            ctx.node_id
        ));
    }
    if !job.mask.allows(ctx.node_id) {
        return Err(format!(
            "the process's cluster mask does not allow node {}",
            ctx.node_id
        ));
    }
    let need = estimate_with_margin(estimate)
        .ok_or_else(|| format!("the offered image size {estimate} is not a size"))?;
    let need = if lazy { super::OTHER_IMAGES } else { need };
    ctx.images
        .reserve(need)
        .map_err(|why| format!("node {} has no room for the images: {why}", ctx.node_id))
}
