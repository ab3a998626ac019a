//! JSON-RPC method dispatch, independent of the transport: a request's method
//! and params in, a result or an [`RpcError`] out. Role checks happen here.

mod procs;
mod tree;

use hpc::model::Role;
use hpc::protocol::{
    MigrateParams, PathParams, PidParams, RpcError, WhoAmI, WriteParams, codes, methods,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::context::AgentContext;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The role of the key the caller authenticated with.
    pub role: Role,
    /// SHA256 fingerprint of that key.
    pub key: String,
}

impl Caller {
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

    /// Fails unless the caller may change state.
    pub fn require_write(&self, what: &str) -> Result<(), RpcError> {
        if self.role.can_write() {
            Ok(())
        } else {
            Err(RpcError::forbidden(self.role, what))
        }
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
        methods::HPC_WRITE => {
            let p: WriteParams = params(method, p)?;
            caller.require_write(&format!("write {}", p.path))?;
            match p.path.trim_matches('/') {
                "admin/expel" => crate::migration::expel(ctx).await,
                "admin/bring" => crate::migration::bring(ctx).await,
                _ => tree::write(ctx, &p.path, &p.value, p.pid),
            }
        }
        methods::NODE_STATUS => to_value(&ctx.current().status),
        methods::CLUSTER_NODES => {
            let local = ctx.current().status.clone();
            to_value(&ctx.cluster.nodes(&local).await)
        }
        methods::PROC_LIST => procs::list(ctx, params(method, p)?),
        methods::PROC_GET => procs::get(ctx, params(method, p)?),
        methods::PROC_READ => procs::read(ctx, params(method, p)?),
        methods::PROC_WRITE => procs::write(ctx, caller, params(method, p)?).await,
        methods::PROC_SIGNAL => procs::signal(ctx, caller, params(method, p)?).await,
        methods::PROC_RENICE => procs::renice(ctx, caller, params(method, p)?).await,
        methods::PROC_SPAWN => {
            caller.require_write("start jobs")?;
            let job = ctx.jobs.spawn(params(method, p)?).await?;
            ctx.fresh_snapshot(std::time::Duration::from_millis(1500))
                .await;
            to_value(&job)
        }
        methods::PROC_MIGRATE => {
            let p: MigrateParams = params(method, p)?;
            caller.require_write(&format!("move process {}", p.pid))?;
            to_value(&crate::migration::migrate(ctx, p).await?)
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
            node: ctx.node_id,
            version: env!("CARGO_PKG_VERSION").into(),
        }),
        other => Err(RpcError::new(
            codes::METHOD_NOT_FOUND,
            format!("unknown method `{other}` (see docs/PROTOCOL.md for the method list)"),
        )),
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
