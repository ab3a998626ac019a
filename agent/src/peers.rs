//! Agent-to-agent calls: SSH with the cluster key, the peer's host key pinned
//! to the one it spreads through the authenticated gossip. Connections are
//! cached per node and dropped when they fail.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hpc::client::{Client, ClientConfig, ClientError, Identity};
use hpc::model::{Liveness, NodeId, NodeStatus};
use hpc::protocol::{RpcError, codes};
use serde_json::Value;

use crate::cluster::ClusterView;

/// Connections to the other agents of the cluster.
pub struct Peers {
    cluster_key: PathBuf,
    /// Held only to look up or store a client, never across a connect.
    clients: std::sync::Mutex<HashMap<NodeId, Arc<Client>>>,
    /// SSH sessions opened to peers since the agent started.
    opened: AtomicU64,
}

/// The error for a peer that cannot be used.
pub fn unreachable(node: NodeId, why: impl std::fmt::Display) -> RpcError {
    RpcError::new(
        codes::NODE_UNREACHABLE,
        format!("node {node} is unreachable: {why}"),
    )
}

fn client_error(node: NodeId, e: ClientError) -> RpcError {
    match e {
        ClientError::Rpc(e) => e,
        other => unreachable(node, other),
    }
}

impl Peers {
    /// Peers reached with the private cluster key at `cluster_key`.
    pub fn new(cluster_key: PathBuf) -> Self {
        Self {
            cluster_key,
            clients: std::sync::Mutex::new(HashMap::new()),
            opened: AtomicU64::new(0),
        }
    }

    /// SSH sessions this agent opened to its peers since it started: one
    /// per peer is kept for calls and moves, so more mean sessions that
    /// broke or were refused.
    pub fn sessions_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// The gossiped status of `node`, which must be up and have published its host key.
    pub async fn status_of(
        &self,
        cluster: &ClusterView,
        local: &NodeStatus,
        node: NodeId,
    ) -> Result<NodeStatus, RpcError> {
        let st = cluster
            .nodes(local)
            .await
            .into_iter()
            .find(|n| n.id == node)
            .ok_or_else(|| RpcError::no_such_node(node))?;
        if st.status != Liveness::Up {
            return Err(unreachable(
                node,
                st.reason.as_deref().unwrap_or("it is down"),
            ));
        }
        Ok(st)
    }

    fn config(&self, st: &NodeStatus) -> Result<ClientConfig, RpcError> {
        let key = russh::keys::PublicKey::from_openssh(&st.host_key).map_err(|_| {
            unreachable(
                st.id,
                "it has not published a valid host key in the gossip yet",
            )
        })?;
        Ok(ClientConfig {
            identity: Identity::KeyFile(self.cluster_key.clone()),
            known_hosts: PathBuf::from("/dev/null"),
            trust_on_first_use: false,
            user: "root".into(),
            connect_timeout: Duration::from_secs(5),
            pinned_host_key: Some(key),
        })
    }

    fn cached(&self, node: NodeId) -> Option<Arc<Client>> {
        let clients = self.clients.lock().ok()?;
        clients.get(&node).filter(|c| !c.is_closed()).cloned()
    }

    fn forget(&self, node: NodeId) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.remove(&node);
        }
    }

    /// The cached connection to `st`'s agent, or a new one. The connect runs
    /// without any lock held, so a node that does not answer delays only the
    /// calls to it; when two calls connect at once, the first stored wins.
    async fn client(&self, st: &NodeStatus) -> Result<Arc<Client>, RpcError> {
        if let Some(c) = self.cached(st.id) {
            return Ok(c);
        }
        let fresh = Arc::new(
            Client::connect(&st.addr, &self.config(st)?)
                .await
                .map_err(|e| client_error(st.id, e))?,
        );
        self.opened.fetch_add(1, Ordering::Relaxed);
        let Ok(mut clients) = self.clients.lock() else {
            return Ok(fresh);
        };
        let kept = match clients.get(&st.id) {
            Some(other) if !other.is_closed() => other.clone(),
            _ => {
                clients.insert(st.id, fresh.clone());
                fresh
            }
        };
        Ok(kept)
    }

    /// Calls `method` on the agent of `st`, reconnecting once if the cached
    /// connection broke.
    pub async fn call(
        &self,
        st: &NodeStatus,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        for attempt in 0..2 {
            let c = self.client(st).await?;
            match c.call_value_within(method, params.clone(), timeout).await {
                Ok(v) => return Ok(v),
                Err(ClientError::Rpc(e)) => return Err(e),
                Err(e) => {
                    self.forget(st.id);
                    if attempt == 1 || !matches!(e, ClientError::Closed) {
                        return Err(client_error(st.id, e));
                    }
                }
            }
        }
        Err(unreachable(st.id, "connection lost"))
    }

    /// Opens the migration subsystem on the agent of `st`, on the session kept
    /// warm for calls to it (a new one if that broke or took no more
    /// channels). The connection keeps the session alive while it is used.
    pub async fn open_migration(&self, st: &NodeStatus) -> Result<MigrationConnection, RpcError> {
        let mut last = None;
        for _ in 0..2 {
            let session = self.client(st).await?;
            match session.open_channel(hpc::paths::MIGRATION_SUBSYSTEM).await {
                Ok(stream) => return Ok(MigrationConnection { stream, session }),
                Err(e) => {
                    tracing::debug!(node = st.id, error = %e, "no migration channel on the kept session; connecting anew");
                    self.forget(st.id);
                    last = Some(e);
                }
            }
        }
        Err(last.map_or_else(
            || unreachable(st.id, "no migration channel"),
            |e| client_error(st.id, e),
        ))
    }
}

/// A migration channel to a peer and the SSH session it runs in (shared
/// with the calls to that peer), on which the move opens its pages channel.
pub struct MigrationConnection {
    /// The `openmosix-migrate` channel's byte stream.
    pub stream: russh::ChannelStream<russh::client::Msg>,
    /// The session; holding it keeps the session open.
    pub session: Arc<Client>,
}
