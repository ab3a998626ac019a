//! JSON-RPC method dispatch, independent of the transport: a request's method
//! and params in, a result or an [`RpcError`] out. Role checks happen here.

mod procs;
mod tree;

use hpc::model::Role;
use hpc::protocol::{
    ClusterMapInfo, ForgottenHostKey, MigrateParams, NodeParams, PathParams, PathValue, PidParams,
    RpcError, SetMapParams, SpawnParams, WhoAmI, WriteParams, codes, methods,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::context::AgentContext;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The role of the key the caller authenticated with (or, on the local
    /// socket, of its uid: root is `admin`, anyone else `user`).
    pub role: Role,
    /// SHA256 fingerprint of that key, or `unix:uid=N` on the local socket.
    pub key: String,
    /// The uid a `user` caller acts as.
    pub uid: Option<u32>,
}

impl Caller {
    /// A caller of the local Unix socket, known by its uid (`SO_PEERCRED`).
    pub fn local(uid: u32) -> Self {
        Self {
            role: if uid == 0 { Role::Admin } else { Role::User },
            key: format!("unix:uid={uid}"),
            uid: Some(uid),
        }
    }

    /// Fails unless the caller is another agent of the cluster.
    pub fn require_cluster(&self, method: &str) -> Result<(), RpcError> {
        if self.role == Role::Cluster {
            Ok(())
        } else {
            Err(RpcError::new(
                codes::FORBIDDEN,
                format!("permission denied: {method} is for the cluster's agents only"),
            ))
        }
    }

    /// Fails unless the caller may change node state (admin or cluster).
    pub fn require_admin(&self, what: &str) -> Result<(), RpcError> {
        if self.role.can_write() {
            Ok(())
        } else {
            Err(RpcError::forbidden(self.role, what))
        }
    }

    /// Fails unless the caller may act on a process owned by `owner`: admins
    /// and agents on any, a `user` on its own, a monitor on none.
    pub fn require_owner(&self, what: &str, owner: u32) -> Result<(), RpcError> {
        match (self.role, self.uid) {
            (Role::Admin | Role::Cluster, _) => Ok(()),
            (Role::User, Some(uid)) if uid == owner => Ok(()),
            (Role::User, Some(uid)) => Err(RpcError::new(
                codes::FORBIDDEN,
                format!(
                    "permission denied: cannot {what}: it belongs to uid {owner}, and a user (uid {uid}) acts only on its own processes"
                ),
            )),
            (role, _) => Err(RpcError::new(
                codes::FORBIDDEN,
                format!(
                    "permission denied: a {role} key may not {what} (a user key may act on its own processes, an admin key on any)"
                ),
            )),
        }
    }

    /// Fails unless the caller may start a job as `uid`:`gid`. A `user` starts
    /// jobs only as itself, in one of its own groups; admins as anyone.
    pub fn require_spawn_as(&self, uid: u32, gid: u32) -> Result<(), RpcError> {
        match (self.role, self.uid) {
            (Role::Admin | Role::Cluster, _) => Ok(()),
            (Role::User, Some(me)) if me != uid => Err(RpcError::new(
                codes::FORBIDDEN,
                format!(
                    "permission denied: a user (uid {me}) starts jobs only as itself, not as uid {uid}"
                ),
            )),
            (Role::User, Some(me)) => {
                if crate::users::groups_of(me).contains(&gid) {
                    Ok(())
                } else {
                    Err(RpcError::new(
                        codes::FORBIDDEN,
                        format!("permission denied: uid {me} is not a member of group {gid}"),
                    ))
                }
            }
            (role, _) => Err(RpcError::forbidden(role, "start jobs")),
        }
    }
}

/// `node.load`: the last pass's load, not smoothed, plus what is arriving.
fn load_now(ctx: &AgentContext) -> hpc::protocol::LoadNow {
    let snap = ctx.current();
    let st = &snap.status;
    let arriving = ctx.arrivals.since(snap.taken);
    let more = balancer::load::units(f64::from(arriving), st.speed, st.cpus);
    hpc::protocol::LoadNow {
        id: st.id,
        load: snap.raw_load.saturating_add(more.round() as u32),
        arriving,
        speed: st.speed,
        cpus: st.cpus,
        accepts: st.accepts && st.migration_available(),
    }
}

/// Decodes a method's params, with a message naming the method.
pub fn params<T: DeserializeOwned>(method: &str, params: Value) -> Result<T, RpcError> {
    let params = if params.is_null() { json!({}) } else { params };
    serde_json::from_value(params)
        .map_err(|e| RpcError::invalid_params(format!("invalid params for {method}: {e}")))
}

/// Runs one method. Subscriptions are the connection's business and never reach here.
pub async fn dispatch(
    ctx: &AgentContext,
    caller: &Caller,
    method: &str,
    p: Value,
) -> Result<Value, RpcError> {
    match method {
        methods::HPC_READ => {
            let p: PathParams = params(method, p)?;
            tree::read(ctx, &p.path).await
        }
        methods::HPC_LIST => {
            let p: PathParams = params(method, p)?;
            tree::list(ctx, &p.path).await
        }
        methods::HPC_WRITE => hpc_write(ctx, caller, params(method, p)?).await,
        methods::ADMIN_GET => {
            let mut admin = ctx.store.admin();
            admin.mospe = ctx.node_id;
            to_value(&admin)
        }
        methods::MOVES_SINCE => to_value(&ctx.move_log.page(&params(method, p)?)),
        methods::NODE_STATUS => to_value(&ctx.current().status),
        methods::NODE_LOAD => to_value(&load_now(ctx)),
        methods::CLUSTER_NODES => {
            let local = ctx.current().status.clone();
            to_value(&ctx.cluster.nodes(&local).await)
        }
        methods::CLUSTER_FORGET_HOST_KEY => {
            let p: NodeParams = params(method, p)?;
            caller.require_admin(&format!("forget the host key of node {}", p.node))?;
            let forgotten = ctx
                .cluster
                .forget_host_key(p.node)
                .map_err(|e| RpcError::new(codes::OS_ERROR, e.to_string()))?;
            tracing::info!(node = p.node, ?forgotten, key = %caller.key, "pinned host key forgotten");
            to_value(&ForgottenHostKey {
                node: p.node,
                forgotten,
            })
        }
        methods::CLUSTER_GOSSIP_STATS => to_value(&ctx.cluster.gossip_stats()),
        methods::CLUSTER_MAP => to_value(&map_info(ctx)),
        methods::CLUSTER_SET_MAP => {
            let p: SetMapParams = params(method, p)?;
            caller.require_admin("change the cluster map")?;
            // Host names in a map are resolved: off the async threads.
            let map = tokio::task::spawn_blocking(move || hpc::map::ClusterMap::parse(&p.text))
                .await
                .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))?
                .map_err(|e| RpcError::invalid_params(e.to_string()))?;
            ctx.cluster.set_map(map).await.map_err(|e| match e {
                crate::cluster::SetMapError::Invalid(m) => RpcError::invalid_params(m),
                e @ crate::cluster::SetMapError::Write { .. } => {
                    RpcError::new(codes::OS_ERROR, e.to_string())
                }
            })?;
            tracing::info!(key = %caller.key, nodes = ctx.cluster.map().nodes.len(), "cluster map changed");
            to_value(&map_info(ctx))
        }
        methods::PROC_LIST => procs::list(ctx, params(method, p)?),
        methods::PROC_GET => procs::get(ctx, params(method, p)?).await,
        methods::PROC_PROGRESS => {
            let p: PidParams = params(method, p)?;
            // A job back home runs under a new PID but is asked for by its
            // home PID.
            to_value(&ctx.under_way.get(ctx.jobs.local_pid(p.pid)))
        }
        methods::PROC_READ => procs::read(ctx, params(method, p)?).await,
        methods::PROC_WRITE => procs::write(ctx, caller, params(method, p)?).await,
        methods::PROC_SIGNAL => procs::signal(ctx, caller, params(method, p)?).await,
        methods::PROC_RENICE => procs::renice(ctx, caller, params(method, p)?).await,
        methods::PROC_SPAWN => {
            let p: SpawnParams = params(method, p)?;
            caller.require_spawn_as(p.uid, p.gid)?;
            let job = ctx.jobs.spawn(p, caller.role.can_write()).await?;
            ctx.fresh_snapshot(std::time::Duration::from_millis(1500))
                .await;
            // The balancer may start it elsewhere (it answers here first).
            let _ = ctx
                .newborns
                .send(crate::balancing::Newborn::Program(job.pid));
            to_value(&job)
        }
        methods::PROC_MIGRATE => {
            let p: MigrateParams = params(method, p)?;
            let owner = procs::owner(ctx, p.pid).await?;
            caller.require_owner(&format!("move process {}", p.pid), owner)?;
            to_value(&crate::migration::migrate(ctx, p, crate::migration::Cause::Asked).await?)
        }
        methods::JOB_STATUS => {
            let p: PidParams = params(method, p)?;
            let rec = ctx
                .jobs
                .get(ctx.node_id, p.pid)
                .or_else(|| ctx.jobs.running_here_with(p.pid))
                .ok_or_else(|| RpcError::no_such_process(p.pid))?;
            to_value(&rec.info)
        }
        methods::JOB_LIST => {
            let all: Vec<_> = ctx.jobs.all().into_iter().map(|r| r.info).collect();
            to_value(&all)
        }
        methods::JOB_MOVED => {
            caller.require_cluster(method)?;
            crate::migration::job_moved(ctx, params(method, p)?).await
        }
        methods::JOB_EXITED => {
            caller.require_cluster(method)?;
            crate::migration::job_exited(ctx, params(method, p)?)
        }
        methods::WHOAMI => to_value(&WhoAmI {
            role: caller.role,
            key: caller.key.clone(),
            uid: caller.uid,
            node: ctx.node_id,
            version: env!("CARGO_PKG_VERSION").into(),
        }),
        other => Err(RpcError::new(
            codes::METHOD_NOT_FOUND,
            format!("unknown method `{other}` (see docs/PROTOCOL.md for the method list)"),
        )),
    }
}

/// `hpc.write`: the admin files need an admin; `decay/*` is a setting of one
/// process, which its owner may change too. `admin/expel` and `admin/bring`
/// are actions, taken only on 1.
async fn hpc_write(ctx: &AgentContext, caller: &Caller, p: WriteParams) -> Result<Value, RpcError> {
    let what = format!("write {}", p.path);
    match tree::split(&p.path).as_slice() {
        ["decay", _] => {
            let pid = p.pid.ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "/proc/hpc/{} needs the `pid` it applies to",
                    p.path.trim_matches('/')
                ))
            })?;
            caller.require_owner(
                &format!("{what} for process {pid}"),
                procs::owner(ctx, pid).await?,
            )?;
            tree::write(ctx, &p.path, &p.value, Some(pid))
        }
        ["admin", action @ ("expel" | "bring")] => {
            caller.require_admin(&what)?;
            if !tree::as_flag(&p.path, &p.value)? {
                // Writing 0 asks for nothing, as echo 0 > /proc/hpc/admin/expel did.
                return to_value(&PathValue::new(p.path.clone(), json!(0)));
            }
            let moves = if *action == "expel" {
                crate::migration::expel(ctx).await?
            } else {
                crate::migration::bring(ctx).await?
            };
            to_value(&PathValue {
                path: p.path.clone(),
                value: json!(1),
                moves: Some(moves),
            })
        }
        _ => {
            caller.require_admin(&what)?;
            tree::write(ctx, &p.path, &p.value, p.pid)
        }
    }
}

/// Serialises a result.
pub fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))
}

/// The error for actions that need migration, with the node's reason.
pub fn needs_migration(ctx: &AgentContext, what: &str) -> RpcError {
    RpcError::new(
        codes::UNAVAILABLE,
        format!("{what} needs process migration; {}", ctx.migration),
    )
}

/// The cluster map this node uses.
fn map_info(ctx: &AgentContext) -> ClusterMapInfo {
    ClusterMapInfo {
        node: ctx.node_id,
        path: ctx.cluster.map_path().display().to_string(),
        text: ctx.cluster.map().to_text(),
    }
}
