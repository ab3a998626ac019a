//! The home side of single processes (see [`crate::deputy`]): what their
//! deputies catch goes to where the process runs, a deputy killed at home
//! takes the process with it, and a process that ended ends its deputy the
//! same way.

use std::sync::Arc;
use std::time::Duration;

use hpc::protocol::{SignalParams, methods};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::context::AgentContext;
use crate::deputy::{Deputies, DeputyError, DeputyEvent, End};
use crate::jobs::JobRecord;
use crate::rpc::to_value;

/// How long a forwarded signal may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Acts on the deputies' events for as long as the agent runs.
pub async fn deputy_loop(ctx: Arc<AgentContext>, mut events: UnboundedReceiver<DeputyEvent>) {
    while let Some(e) = events.recv().await {
        match e {
            DeputyEvent::Signal { pid, signal } => forward(&ctx, pid, signal).await,
            DeputyEvent::Gone { pid, end } => gone(&ctx, pid, end).await,
        }
    }
}

/// Asks the deputy keeper (whose answer blocks until its thread acts) from
/// a blocking thread, so that the runtime's workers never wait on ptrace.
pub async fn ask_keeper<T: Send + 'static>(
    ctx: &AgentContext,
    request: impl FnOnce(&Deputies) -> Result<T, DeputyError> + Send + 'static,
) -> Result<T, String> {
    let deputies = ctx.deputies.clone();
    match tokio::task::spawn_blocking(move || request(&deputies)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The record of the process whose deputy is `pid`.
fn of_deputy(ctx: &AgentContext, pid: i32) -> Option<JobRecord> {
    ctx.jobs
        .all()
        .into_iter()
        .find(|r| r.deputy == pid && r.info.home == ctx.node_id)
}

/// Sends `signal` to the process, wherever it runs.
async fn send(ctx: &AgentContext, rec: &JobRecord, signal: i32) -> Result<(), String> {
    if rec.info.where_ == ctx.node_id {
        // SAFETY: kill has no memory-safety preconditions; the PID is the
        // running copy's, recorded by this agent.
        let r = unsafe { libc::kill(rec.info.pid, signal) };
        return if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().to_string())
        };
    }
    let name = crate::signals::name_of(signal)
        .ok_or_else(|| format!("signal {signal} is not one the agents forward"))?;
    let st = super::peer_status(ctx, rec.info.where_)
        .await
        .map_err(|e| e.message)?;
    let params = to_value(&SignalParams {
        pid: rec.info.pid,
        signal: name.into(),
        start_time: None,
    })
    .map_err(|e| e.message)?;
    ctx.peers
        .call(&st, methods::PROC_SIGNAL, params, FORWARD_TIMEOUT)
        .await
        .map(|_| ())
        .map_err(|e| e.message)
}

/// A signal caught by a deputy: the process gets it.
pub async fn forward(ctx: &AgentContext, pid: i32, signal: i32) {
    // Its own children's ends are nothing to the running process.
    if signal == libc::SIGCHLD {
        return;
    }
    let Some(rec) = of_deputy(ctx, pid) else {
        return;
    };
    if rec.info.exit.is_some() {
        return;
    }
    match send(ctx, &rec, signal).await {
        Ok(()) => tracing::info!(
            pid = rec.info.home_pid,
            signal,
            node = rec.info.where_,
            "signal to a deputy forwarded"
        ),
        Err(e) => tracing::warn!(
            pid = rec.info.home_pid,
            signal,
            error = %e,
            "cannot forward a signal sent to a deputy"
        ),
    }
}

/// A deputy ended at home (killed): the process goes too.
async fn gone(ctx: &AgentContext, pid: i32, end: End) {
    let Some(rec) = of_deputy(ctx, pid) else {
        return;
    };
    let _ = ctx
        .jobs
        .modify(rec.info.home, rec.info.home_pid, |r| r.deputy = 0);
    if rec.info.exit.is_some() {
        return;
    }
    tracing::warn!(
        pid,
        ?end,
        node = rec.info.where_,
        "a deputy was killed at home; ending its process"
    );
    if let Err(e) = send(ctx, &rec, libc::SIGKILL).await {
        tracing::warn!(pid, error = %e, "cannot end the process of a killed deputy");
    }
}

/// At start: takes back the deputies a previous run of the agent kept (they
/// waited, memoryless, in their pause); one that is gone (killed while no
/// agent ran) takes its process with it.
pub async fn readopt_all(ctx: &AgentContext) {
    for rec in ctx.jobs.all() {
        if rec.deputy <= 0 || rec.info.home != ctx.node_id {
            continue;
        }
        let pid = rec.deputy;
        match ask_keeper(ctx, move |d| d.readopt(pid)).await {
            Ok(()) => tracing::info!(pid, "deputy taken back"),
            Err(e) => {
                tracing::warn!(pid, error = %e, "a deputy is gone; ending its process");
                gone(ctx, pid, End::Signal(libc::SIGKILL)).await;
            }
        }
    }
}

/// Ends the deputies whose process ended, the way it ended.
pub async fn end_deputies(ctx: &AgentContext) {
    for rec in ctx.jobs.all() {
        let (Some(code), true) = (rec.info.exit, rec.deputy > 0) else {
            continue;
        };
        let end = rec.info.signal.map_or(End::Exit(code), End::Signal);
        let pid = rec.deputy;
        match ask_keeper(ctx, move |d| d.end(pid, end)).await {
            Ok(()) => tracing::info!(pid, ?end, "deputy ended as its process did"),
            Err(e) => tracing::warn!(pid, error = %e, "cannot end a deputy"),
        }
        let _ = ctx
            .jobs
            .modify(rec.info.home, rec.info.home_pid, |r| r.deputy = 0);
    }
}
