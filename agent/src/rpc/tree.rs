//! The `/proc/hpc` tree: `admin/*`, `nodes/<id>/*`, `decay/*`, `remote/*`.

use hpc::model::{DecayClass, Liveness, NodeId, NodeStatus};
use hpc::protocol::{PathValue, RpcError, codes};
use serde_json::{Value, json};

use super::to_value;
use crate::context::AgentContext;
use crate::store::{ProcSettings, key_string};

/// Files of `admin/` that can be read.
pub const ADMIN_FILES: &[&str] = &[
    "block",
    "bring",
    "decay-interval",
    "expel",
    "fast-decay",
    "lstay",
    "mospe",
    "quiet",
    "slow-decay",
    "speed",
    "stay",
    "version",
    "yardstick",
];
/// Files of `nodes/<id>/`.
pub const NODE_FILES: &[&str] = &[
    "CPUs", "load", "mem", "rmem", "speed", "status", "tmem", "util",
];
/// Files of `decay/` (written with a PID).
pub const DECAY_FILES: &[&str] = &["clear", "cpujob", "fast", "iojob", "slow"];

fn no_path(path: &str, why: &str) -> RpcError {
    RpcError::new(codes::NO_SUCH_PATH, format!("/proc/hpc/{path}: {why}"))
}

/// The components of a `/proc/hpc` path.
pub fn split(path: &str) -> Vec<&str> {
    path.trim_start_matches("/proc/hpc")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

fn result(path: &str, value: Value) -> Result<Value, RpcError> {
    to_value(&PathValue::new(path, value))
}

async fn node(ctx: &AgentContext, id: &str) -> Result<NodeStatus, RpcError> {
    let id: NodeId = id
        .parse()
        .map_err(|_| RpcError::new(codes::NO_SUCH_NODE, format!("`{id}` is not a node number")))?;
    let local = ctx.current().status.clone();
    if id == ctx.node_id {
        return Ok(local);
    }
    ctx.cluster
        .nodes(&local)
        .await
        .into_iter()
        .find(|n| n.id == id)
        .ok_or_else(|| RpcError::no_such_node(id))
}

/// Reads a path.
pub async fn read(ctx: &AgentContext, path: &str) -> Result<Value, RpcError> {
    let parts = split(path);
    let admin = ctx.store.admin();
    let value = match parts.as_slice() {
        ["admin", f] => match *f {
            "stay" => json!(u8::from(admin.stay)),
            "lstay" => json!(u8::from(admin.lstay)),
            "block" => json!(u8::from(admin.block)),
            "quiet" => json!(u8::from(admin.quiet)),
            "decay-interval" => json!(admin.decay_interval),
            "slow-decay" => json!(admin.slow_decay),
            "fast-decay" => json!(admin.fast_decay),
            "speed" => json!(admin.speed),
            "mospe" => json!(ctx.node_id),
            "yardstick" => json!(admin.yardstick),
            "version" => json!(format!("openmosixd {}", env!("CARGO_PKG_VERSION"))),
            "expel" | "bring" => json!(0),
            _ => return Err(no_path(path, "no such admin file")),
        },
        ["nodes", id, f] => {
            let n = node(ctx, id).await?;
            let up = n.status == Liveness::Up;
            match *f {
                "CPUs" | "cpus" => json!(if up { i64::from(n.cpus) } else { -101 }),
                "load" => json!(n.load),
                "mem" => json!(n.mem),
                "rmem" => json!(n.rmem),
                "tmem" => json!(n.tmem),
                "speed" => json!(n.speed),
                "util" => json!(n.util),
                "status" => json!(if up { "up" } else { "down" }),
                _ => return Err(no_path(path, "no such node file")),
            }
        }
        ["decay", f] if DECAY_FILES.contains(f) => {
            return Err(RpcError::invalid_params(format!(
                "/proc/hpc/decay/{f} is per process: read a process's decay with proc.read field=decay"
            )));
        }
        ["remote", pid, rest @ ..] => {
            let g = guest(ctx, pid)?;
            let v = remote_entry(&g);
            match rest {
                [] => v,
                [f] => v.get(*f).cloned().ok_or_else(|| {
                    no_path(path, "no such guest file (from, identity, statm, stats)")
                })?,
                _ => return Err(no_path(path, "no such file")),
            }
        }
        _ => return Err(no_path(path, "no such file")),
    };
    result(path, value)
}

fn guest(ctx: &AgentContext, pid: &str) -> Result<crate::jobs::JobRecord, RpcError> {
    ctx.jobs
        .guests()
        .into_iter()
        .find(|g| g.info.pid.to_string() == pid)
        .ok_or_else(|| {
            RpcError::new(
                codes::NO_SUCH_PROCESS,
                format!("no guest process {pid} on this node"),
            )
        })
}

/// `/proc/hpc/remote/<pid>`: where the guest came from, who it is, its memory
/// (`statm`, pages) and its CPU and migration figures.
fn remote_entry(g: &crate::jobs::JobRecord) -> Value {
    let statm = std::fs::read_to_string(format!("/proc/{}/statm", g.info.pid))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cpu_ticks = std::fs::read(format!("/proc/{}/stat", g.info.pid))
        .ok()
        .and_then(|b| Some(crate::sampler::parse_stat(&b)?.0.ticks))
        .unwrap_or(0);
    let from = g
        .info
        .last_migration
        .as_ref()
        .map(|m| m.from)
        .unwrap_or(g.info.home);
    json!({
        "from": from,
        "identity": format!("{}:{}", g.info.home, g.info.home_pid),
        "statm": statm,
        "stats": {
            "cpu_ticks": cpu_ticks,
            "last_migration": g.info.last_migration,
            "nmigs": g.info.nmigs,
            "cmdline": g.info.cmdline,
            "user": g.info.user,
        },
    })
}

/// Lists a directory.
pub async fn list(ctx: &AgentContext, path: &str) -> Result<Value, RpcError> {
    let parts = split(path);
    let entries: Vec<String> = match parts.as_slice() {
        [] => ["admin", "decay", "nodes", "remote"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ["admin"] => ADMIN_FILES.iter().map(|s| s.to_string()).collect(),
        ["decay"] => DECAY_FILES.iter().map(|s| s.to_string()).collect(),
        ["nodes"] => {
            let local = ctx.current().status.clone();
            ctx.cluster
                .nodes(&local)
                .await
                .iter()
                .map(|n| n.id.to_string())
                .collect()
        }
        ["nodes", id] => {
            node(ctx, id).await?;
            NODE_FILES.iter().map(|s| s.to_string()).collect()
        }
        ["remote"] => ctx
            .jobs
            .guests()
            .iter()
            .map(|g| g.info.pid.to_string())
            .collect(),
        ["remote", pid] => {
            guest(ctx, pid)?;
            ["from", "identity", "statm", "stats"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        }
        _ => return Err(no_path(path, "not a directory")),
    };
    result(path, json!(entries))
}

fn as_u32(path: &str, v: &Value, range: std::ops::RangeInclusive<u32>) -> Result<u32, RpcError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        Value::Bool(b) => Some(u64::from(*b)),
        _ => None,
    };
    n.and_then(|n| u32::try_from(n).ok())
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            RpcError::invalid_params(format!(
                "/proc/hpc/{path} takes a whole number from {} to {}, not {v}",
                range.start(),
                range.end()
            ))
        })
}

/// A 0/1 value.
pub fn as_flag(path: &str, v: &Value) -> Result<bool, RpcError> {
    Ok(as_u32(path, v, 0..=1)? == 1)
}

/// Writes a path (the caller's role was checked).
pub fn write(
    ctx: &AgentContext,
    path: &str,
    v: &Value,
    pid: Option<i32>,
) -> Result<Value, RpcError> {
    let parts = split(path);
    let stored = |e: crate::store::StoreError| RpcError::new(codes::OS_ERROR, e.to_string());
    let value: Value = match parts.as_slice() {
        ["admin", f] => {
            let f = *f;
            match f {
                "expel" | "bring" => {
                    return Err(RpcError::invalid_params(format!(
                        "{f} is an action: write 1 to admin/{f}"
                    )));
                }
                "mospe" => {
                    return Err(no_path(
                        path,
                        "read-only: the node id comes from the cluster map or --node-id",
                    ));
                }
                "version" => return Err(no_path(path, "read-only")),
                _ => {}
            }
            let n = match f {
                "stay" | "lstay" | "block" | "quiet" => u32::from(as_flag(path, v)?),
                "decay-interval" => as_u32(path, v, 1..=3600)?,
                "slow-decay" | "fast-decay" => as_u32(path, v, 0..=1000)?,
                "speed" | "yardstick" => as_u32(path, v, 1..=1_000_000)?,
                _ => return Err(no_path(path, "no such admin file")),
            };
            ctx.store
                .update(|s| {
                    let a = &mut s.admin;
                    match f {
                        "stay" => a.stay = n == 1,
                        "lstay" => a.lstay = n == 1,
                        "block" => a.block = n == 1,
                        "quiet" => a.quiet = n == 1,
                        "decay-interval" => a.decay_interval = n,
                        "slow-decay" => a.slow_decay = n,
                        "fast-decay" => a.fast_decay = n,
                        "speed" => {
                            a.speed = n;
                            a.speed_set_by_admin = true;
                        }
                        _ => a.yardstick = n,
                    }
                })
                .map_err(stored)?;
            tracing::info!(path, value = n, "admin state changed");
            ctx.request_resample();
            json!(n)
        }
        ["decay", f] if DECAY_FILES.contains(f) => {
            let pid = pid.ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "/proc/hpc/decay/{f} needs the `pid` it applies to"
                ))
            })?;
            if !as_flag(path, v)? {
                return result(path, json!(0));
            }
            let snap = ctx.current();
            let p = snap
                .process(pid)
                .ok_or_else(|| RpcError::no_such_process(pid))?;
            let decay = match *f {
                "fast" | "iojob" => DecayClass::Fast,
                _ => DecayClass::Slow,
            };
            ctx.store
                .update(|s| {
                    let e = s
                        .processes
                        .entry(key_string((pid, p.start_time)))
                        .or_insert_with(ProcSettings::default);
                    e.decay = Some(decay);
                })
                .map_err(stored)?;
            ctx.request_resample();
            json!(1)
        }
        ["nodes", ..] => {
            return Err(no_path(
                path,
                "read-only (node figures come from the nodes themselves)",
            ));
        }
        ["remote", ..] => return Err(no_path(path, "read-only")),
        _ => return Err(no_path(path, "no such file")),
    };
    result(path, value)
}
