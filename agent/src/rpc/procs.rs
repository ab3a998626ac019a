//! Process methods: list, get, per-process openMosix fields, signals, renice.

use hpc::model::{ClusterMask, DecayClass, ProcessInfo};
use hpc::protocol::{
    MigrateParams, PidParams, ProcFieldParams, ProcFilter, ProcListParams, ProcWriteParams,
    ReniceParams, RpcError, SignalParams, codes, methods,
};
use serde_json::{Value, json};

use super::{Caller, to_value};
use crate::context::AgentContext;
use crate::sampling::apply_one;
use crate::store::{ProcSettings, key_string};

fn matches(p: &ProcessInfo, f: &ProcFilter) -> bool {
    f.pids.as_ref().is_none_or(|pids| pids.contains(&p.pid))
        && f.user
            .as_ref()
            .is_none_or(|u| *u == p.user || *u == p.uid.to_string())
        && f.command
            .as_ref()
            .is_none_or(|c| p.cmdline.contains(c.as_str()))
        && f.states.as_ref().is_none_or(|s| s.contains(p.state))
        && f.min_cpu.is_none_or(|c| p.cpu >= c)
        && (!f.movable || (!p.lock && p.cantmove.is_empty()))
        && (!f.migrated || p.where_ != p.home)
}

/// `proc.list`.
pub fn list(ctx: &AgentContext, p: ProcListParams) -> Result<Value, RpcError> {
    let snap = ctx.current();
    let limit = p.filter.limit.unwrap_or(usize::MAX);
    let rows: Vec<&ProcessInfo> = snap
        .processes
        .iter()
        .filter(|r| matches(r, &p.filter))
        .take(limit)
        .collect();
    to_value(&rows)
}

async fn find(ctx: &AgentContext, pid: i32) -> Result<ProcessInfo, RpcError> {
    if pid <= 0 {
        return Err(RpcError::invalid_params(format!(
            "pid must be a positive number, not {pid}"
        )));
    }
    let pid = ctx.jobs.local_pid(pid);
    ctx.listing(pid).await;
    let snap = ctx.current();
    if let Some(p) = snap.process(pid)
        && p.where_ != ctx.node_id
        && ctx.jobs.away(pid).is_some()
    {
        // A job of this node that runs elsewhere: its row comes from its host.
        return Ok(p.clone());
    }
    if let Some(p) = snap.process(pid)
        && std::path::Path::new(&format!("/proc/{pid}")).exists()
    {
        // Settings written since the last sampling pass show at once.
        let mut row = p.clone();
        if let Some(s) = ctx.store.settings_of((pid, row.start_time)) {
            apply_one(&s, &mut row);
        }
        return Ok(row);
    }
    Err(RpcError::no_such_process(pid))
}

/// [`find`], with the process classified in depth (the list does that only
/// for unlocked processes; one process asked for is worth the extra reads).
async fn find_classified(ctx: &AgentContext, pid: i32) -> Result<ProcessInfo, RpcError> {
    let mut row = find(ctx, pid).await?;
    if row.cantmove.is_empty() && row.where_ == ctx.node_id {
        row.cantmove = crate::classify::deep_reason(pid).unwrap_or_default();
    }
    Ok(row)
}

/// The uid owning process `pid` as callers address it: for a job's command
/// (here or away), the owner in its record, which holds from the moment the
/// job is started (a sampling pass may still show the command as root for
/// an instant, before it dropped to its user); else the local process's.
pub async fn owner(ctx: &AgentContext, pid: i32) -> Result<u32, RpcError> {
    let local = ctx.jobs.local_pid(pid);
    let job = ctx.jobs.away(pid).or_else(|| {
        ctx.jobs
            .running_here_with(local)
            .filter(|j| j.info.pid == local)
    });
    if let Some(job) = job {
        return Ok(job.info.uid);
    }
    Ok(find(ctx, pid).await?.uid)
}

/// `proc.get`.
pub async fn get(ctx: &AgentContext, p: PidParams) -> Result<Value, RpcError> {
    to_value(&find_classified(ctx, p.pid).await?)
}

/// `proc.read`.
pub async fn read(ctx: &AgentContext, p: ProcFieldParams) -> Result<Value, RpcError> {
    let row = find_classified(ctx, p.pid).await?;
    let v = match p.field.as_str() {
        "where" | "goto" => json!(row.where_),
        "home" => json!(row.home),
        "lock" => json!(u8::from(row.lock)),
        "cantmove" => json!(row.cantmove),
        "nmigs" => json!(row.nmigs),
        "migfilter" => json!(u8::from(row.mask.migfilter)),
        "mignodes" => json!(row.mask.mignodes),
        "migpolicy" => json!(row.mask.migpolicy),
        "decay" => json!(row.decay),
        other => return Err(unknown_field(other)),
    };
    Ok(json!({ "pid": p.pid, "field": p.field, "value": v }))
}

fn unknown_field(f: &str) -> RpcError {
    RpcError::invalid_params(format!(
        "unknown process field `{f}` (where, goto, home, lock, cantmove, nmigs, migfilter, mignodes, migpolicy, decay)"
    ))
}

fn number(field: &str, v: &Value, max: u64) -> Result<u64, RpcError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(u64::from(*b)),
        _ => None,
    };
    n.filter(|n| *n <= max).ok_or_else(|| {
        RpcError::invalid_params(format!(
            "{field} takes a whole number from 0 to {max}, not {v}"
        ))
    })
}

/// `proc.write`. Writing `goto` (or `where`, `migrate`) moves the process;
/// the settings of a job (lock, decay, mask) live in its record and travel with it.
pub async fn write(
    ctx: &AgentContext,
    caller: &Caller,
    p: ProcWriteParams,
) -> Result<Value, RpcError> {
    caller.require_owner(
        &format!("change process {}'s {}", p.pid, p.field),
        owner(ctx, p.pid).await?,
    )?;
    if matches!(p.field.as_str(), "goto" | "where" | "migrate") {
        let to = match &p.value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let report = crate::migration::migrate(
            ctx,
            MigrateParams {
                pid: p.pid,
                to,
                force: false,
                mode: hpc::protocol::MigrationMode::Auto,
            },
            crate::migration::Cause::Asked,
        )
        .await?;
        return to_value(&report);
    }
    let row = find(ctx, p.pid).await?;
    let job = ctx
        .jobs
        .away(p.pid)
        .or_else(|| ctx.jobs.running_here_with(ctx.jobs.local_pid(p.pid)));
    if let Some(job) = job {
        return write_job_setting(ctx, caller, &job, &p).await;
    }
    let setting = Setting::parse(&p)?;
    // The mask is read-modify-written on the stored settings, not the snapshot,
    // so successive writes of its three fields never undo each other.
    let base = row.mask;
    let change = move |s: &mut ProcSettings| match setting {
        Setting::Lock(l) => s.lock = Some(l),
        Setting::Decay(d) => s.decay = Some(d),
        mask => mask.set_mask(s.mask.get_or_insert(base)),
    };
    let key = key_string((row.pid, row.start_time));
    ctx.store
        .update(|s| change(s.processes.entry(key).or_default()))
        .map_err(|e| RpcError::new(codes::OS_ERROR, e.to_string()))?;
    tracing::info!(pid = p.pid, field = %p.field, value = %p.value, key = %caller.key, "process setting changed");
    // Answered once the process table shows it (`mosctl unlock` then `migrate`).
    ctx.fresh_snapshot(std::time::Duration::from_millis(1500))
        .await;
    Ok(json!({ "pid": p.pid, "field": p.field, "value": p.value }))
}

/// A parsed write of a per-process openMosix setting.
#[derive(Debug, Clone, Copy)]
enum Setting {
    Lock(bool),
    MigFilter(bool),
    MigNodes(u64),
    MigPolicy(u8),
    Decay(DecayClass),
}

impl Setting {
    /// Parses `field` = `value`; read-only and unknown fields are refused.
    fn parse(p: &ProcWriteParams) -> Result<Self, RpcError> {
        Ok(match p.field.as_str() {
            "lock" => Self::Lock(number("lock", &p.value, 1)? == 1),
            "migfilter" => Self::MigFilter(number("migfilter", &p.value, 1)? == 1),
            "mignodes" => Self::MigNodes(number("mignodes", &p.value, u64::MAX)?),
            "migpolicy" => Self::MigPolicy(number("migpolicy", &p.value, 1)? as u8),
            "decay" => Self::Decay(serde_json::from_value(p.value.clone()).map_err(|_| {
                RpcError::invalid_params(format!(
                    "decay takes \"slow\", \"fast\" or \"none\", not {}",
                    p.value
                ))
            })?),
            "home" | "cantmove" | "nmigs" => {
                return Err(RpcError::new(
                    codes::NO_SUCH_PATH,
                    format!("{} is read-only", p.field),
                ));
            }
            other => return Err(unknown_field(other)),
        })
    }

    /// Applies a cluster-mask setting to `mask` (other settings leave it alone).
    fn set_mask(self, mask: &mut ClusterMask) {
        match self {
            Self::MigFilter(on) => mask.migfilter = on,
            Self::MigNodes(bits) => mask.mignodes = bits,
            Self::MigPolicy(pol) => mask.migpolicy = pol,
            Self::Lock(_) | Self::Decay(_) => {}
        }
    }
}

/// A setting of a job: kept in the job's record on the node that runs it and,
/// for a job away from home, forwarded there.
async fn write_job_setting(
    ctx: &AgentContext,
    caller: &Caller,
    job: &crate::jobs::JobRecord,
    p: &ProcWriteParams,
) -> Result<Value, RpcError> {
    let info = &job.info;
    if info.where_ != ctx.node_id {
        let host = host_of(ctx, info.where_).await?;
        let params = to_value(&ProcWriteParams {
            pid: info.pid,
            field: p.field.clone(),
            value: p.value.clone(),
        })?;
        return ctx
            .peers
            .call(&host, methods::PROC_WRITE, params, FORWARD_TIMEOUT)
            .await;
    }
    let setting = Setting::parse(p)?;
    let change = move |j: &mut hpc::protocol::JobInfo| match setting {
        Setting::Lock(l) => j.lock = l,
        Setting::Decay(d) => j.decay = Some(d),
        mask => mask.set_mask(&mut j.mask),
    };
    ctx.jobs
        .modify(info.home, info.home_pid, |r| change(&mut r.info))?;
    // The home keeps a copy of the settings too, so they survive the job's return.
    if info.home != ctx.node_id
        && let Ok(home) = host_of(ctx, info.home).await
        && let Some(copy) = ctx.jobs.get(info.home, info.home_pid).map(|r| r.info)
    {
        let _ = ctx
            .peers
            .call(&home, methods::JOB_MOVED, to_value(&copy)?, FORWARD_TIMEOUT)
            .await;
    }
    tracing::info!(pid = p.pid, field = %p.field, value = %p.value, key = %caller.key, "job setting changed");
    ctx.request_resample();
    Ok(json!({ "pid": p.pid, "field": p.field, "value": p.value }))
}

/// How long a call forwarded to another node may take.
const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn host_of(
    ctx: &AgentContext,
    node: hpc::model::NodeId,
) -> Result<hpc::model::NodeStatus, RpcError> {
    let local = ctx.current().status.clone();
    ctx.peers.status_of(&ctx.cluster, &local, node).await
}

/// Forwards a call about a job of this node that runs elsewhere to its host;
/// `params` name the job by its PID there.
async fn forward(
    ctx: &AgentContext,
    job: &crate::jobs::JobRecord,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    let host = host_of(ctx, job.info.where_).await?;
    ctx.peers.call(&host, method, params, FORWARD_TIMEOUT).await
}

fn os_error(what: &str, pid: i32) -> RpcError {
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        return RpcError::no_such_process(pid);
    }
    RpcError::new(codes::OS_ERROR, format!("{what} {pid} failed: {err}"))
}

/// The listed row of the local process `pid` (not a job away from home),
/// unless it is the agent itself. Whether the process now at that PID is
/// still the listed one is checked by [`pin_process`].
async fn guard_target(ctx: &AgentContext, pid: i32) -> Result<ProcessInfo, RpcError> {
    let row = find(ctx, pid).await?;
    if row.pid == std::process::id() as i32 {
        return Err(RpcError::new(
            codes::FORBIDDEN,
            "refusing to act on the openMosix agent itself",
        ));
    }
    Ok(row)
}

/// Fails unless the process now at `row.pid` started when `row` says (and
/// when the caller says, if it does).
fn same_process(row: &ProcessInfo, seen: Option<u64>) -> Result<(), RpcError> {
    let live = crate::sampler::start_time_of(row.pid);
    let reused = |started: u64| {
        RpcError::new(
            codes::NO_SUCH_PROCESS,
            format!(
                "no such process: {} (that PID now belongs to a process started at {started}, not the one listed)",
                row.pid
            ),
        )
    };
    match live {
        None => Err(RpcError::no_such_process(row.pid)),
        Some(t) if t != row.start_time => Err(reused(t)),
        Some(t) if seen.is_some_and(|s| s != t) => Err(reused(t)),
        Some(_) => Ok(()),
    }
}

/// A pidfd: refers to one process for its whole life, whatever PID reuse
/// happens meanwhile.
struct PidFd(std::os::fd::OwnedFd);

impl PidFd {
    fn open(pid: i32) -> Result<Self, RpcError> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(os_error("opening", pid));
        }
        // SAFETY: the descriptor was just returned by the kernel and is owned by nobody else.
        Ok(Self(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(fd as i32)
        }))
    }

    fn signal(&self, pid: i32, sig: i32) -> Result<(), RpcError> {
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal with a valid pidfd, a signal number, no
        // siginfo (null) and no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc != 0 {
            return Err(os_error("signalling", pid));
        }
        Ok(())
    }

    /// Whether the process has ended (the pidfd reads as ready then).
    fn ended(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut p = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no waiting.
        unsafe { libc::poll(&mut p, 1, 0) > 0 }
    }
}

/// Opens a pidfd on the listed process and checks, after it is open, that it
/// is the listed process; from then on no PID reuse can redirect the action.
fn pin_process(row: &ProcessInfo, seen: Option<u64>) -> Result<PidFd, RpcError> {
    let fd = PidFd::open(row.pid)?;
    same_process(row, seen)?;
    Ok(fd)
}

/// Fails while the local process `pid` belongs to a job being migrated (its
/// copy here may be frozen for the move: a signal could wake it while the
/// target's copy runs), or whose last move is not settled yet.
fn not_moving(ctx: &AgentContext, pid: i32) -> Result<(), RpcError> {
    let Some(job) = ctx.jobs.running_here_with(ctx.jobs.local_pid(pid)) else {
        return Ok(());
    };
    let (home, home_pid) = (job.info.home, job.info.home_pid);
    if ctx.jobs.is_busy(home, home_pid)
        || crate::migration::unsettled(ctx, home, home_pid).is_some()
    {
        return Err(RpcError::new(
            codes::UNAVAILABLE,
            format!("process {pid} is being migrated; try again once it has moved"),
        ));
    }
    Ok(())
}

/// `proc.signal`; for a job running elsewhere, sent by its host.
pub async fn signal(
    ctx: &AgentContext,
    caller: &Caller,
    p: SignalParams,
) -> Result<Value, RpcError> {
    let what = format!("signal process {}", p.pid);
    caller.require_owner(&what, owner(ctx, p.pid).await?)?;
    let name = p.signal.trim().to_ascii_uppercase();
    let Some(sig) = crate::signals::by_name(&name) else {
        return Err(RpcError::invalid_params(format!(
            "unsupported signal `{}` ({})",
            p.signal,
            crate::signals::names()
        )));
    };
    if let Some(job) = ctx.jobs.away(p.pid) {
        let forwarded = SignalParams {
            pid: job.info.pid,
            signal: p.signal.clone(),
            start_time: None,
        };
        let v = forward(ctx, &job, methods::PROC_SIGNAL, to_value(&forwarded)?).await?;
        return Ok(
            json!({ "pid": p.pid, "signal": v.get("signal").cloned().unwrap_or(Value::Null), "node": job.info.where_ }),
        );
    }
    let row = guard_target(ctx, p.pid).await?;
    not_moving(ctx, p.pid)?;
    pin_process(&row, p.start_time)?.signal(row.pid, sig)?;
    tracing::info!(pid = p.pid, signal = %name, key = %caller.key, "signal sent");
    ctx.request_resample();
    Ok(json!({ "pid": p.pid, "signal": name }))
}

/// `proc.renice`: sets the nice value of every thread of the process; for a
/// job running elsewhere, done by its host. A `user` may only raise a nice
/// value (make its process nicer), as renice(1) allows unprivileged users.
pub async fn renice(
    ctx: &AgentContext,
    caller: &Caller,
    p: ReniceParams,
) -> Result<Value, RpcError> {
    let what = format!("renice process {}", p.pid);
    caller.require_owner(&what, owner(ctx, p.pid).await?)?;
    if !(-20..=20).contains(&p.nice) {
        return Err(RpcError::invalid_params(format!(
            "nice must be from -20 to 20, not {}",
            p.nice
        )));
    }
    let nice = p.nice.min(19);
    if caller.role == hpc::model::Role::User {
        let row = find(ctx, p.pid).await?;
        // The live value where the process runs here; the host's last row otherwise.
        let current = std::fs::read(format!("/proc/{}/stat", row.pid))
            .ok()
            .filter(|_| ctx.jobs.away(p.pid).is_none())
            .and_then(|b| Some(crate::sampler::parse_stat(&b)?.0.nice))
            .unwrap_or(row.nice);
        if nice < current {
            return Err(RpcError::new(
                codes::FORBIDDEN,
                format!(
                    "permission denied: a user may raise its processes' nice value, not lower it (process {} has {current}, asked {nice}; an admin may)",
                    p.pid
                ),
            ));
        }
    }
    if let Some(job) = ctx.jobs.away(p.pid) {
        let forwarded = ReniceParams {
            pid: job.info.pid,
            nice,
            start_time: None,
        };
        let v = forward(ctx, &job, methods::PROC_RENICE, to_value(&forwarded)?).await?;
        return Ok(
            json!({ "pid": p.pid, "nice": v.get("nice").cloned().unwrap_or(Value::Null), "node": job.info.where_ }),
        );
    }
    let row = guard_target(ctx, p.pid).await?;
    let pinned = pin_process(&row, p.start_time)?;
    let pid = row.pid;
    let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|_| RpcError::no_such_process(p.pid))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    if pinned.ended() {
        return Err(RpcError::no_such_process(p.pid));
    }
    for tid in tids {
        // SAFETY: setpriority has no memory-safety preconditions.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ESRCH) {
                continue; // the thread exited meanwhile
            }
            return Err(RpcError::new(
                codes::OS_ERROR,
                format!("renice of {} failed: {err}", p.pid),
            ));
        }
    }
    tracing::info!(pid = p.pid, nice, key = %caller.key, "reniced");
    ctx.request_resample();
    Ok(json!({ "pid": p.pid, "nice": nice }))
}
