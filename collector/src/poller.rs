//! Reaching the agents: the cluster's node list from a seed agent, and one
//! worker task per node that keeps an SSH connection and answers each tick with
//! the node's status and process list. A node that cannot be reached is
//! reported down with the reason, and its worker reconnects with backoff
//! (1 s doubling to 30 s) while the others go on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hpc::client::{Client, ClientConfig, ClientError};
use hpc::model::{NodeId, NodeStatus, ProcessInfo};
use hpc::protocol::{
    JobInfo, MoveLogPage, MovesSinceParams, NoParams, PidParams, ProcListParams, methods,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a node said this tick.
#[derive(Debug, Clone)]
pub struct NodeAnswer {
    /// The node.
    pub node: NodeId,
    /// Name and address as the cluster lists it.
    pub name: String,
    /// Agent address.
    pub addr: String,
    /// Its status and process list, or why it could not be read.
    pub result: Result<(NodeStatus, Vec<ProcessInfo>), String>,
    /// The moves its log holds after the cursor asked with (None when the
    /// log could not be read this tick: the next tick asks again).
    pub moves: Option<MoveLogPage>,
}

/// What a worker answers for one tick.
type TickAnswer = (
    Result<(NodeStatus, Vec<ProcessInfo>), String>,
    Option<MoveLogPage>,
);

enum Request {
    Tick(MovesSinceParams, oneshot::Sender<TickAnswer>),
    Job(i32, oneshot::Sender<Option<JobInfo>>),
}

/// One node's worker handle.
struct Worker {
    name: String,
    addr: String,
    host_key: String,
    tx: mpsc::Sender<Request>,
}

/// The agents of the cluster, as the collector reaches them.
pub struct Poller {
    seeds: Vec<String>,
    config: ClientConfig,
    answer_timeout: Duration,
    seed: Option<Client>,
    workers: HashMap<NodeId, Worker>,
}

impl Poller {
    /// A poller that learns the cluster from `seeds` (tried in order), with
    /// `config` (the monitor key, known_hosts for the seeds), waiting at most
    /// `answer_timeout` for each tick's answers.
    pub fn new(seeds: Vec<String>, config: ClientConfig, answer_timeout: Duration) -> Self {
        Self {
            seeds,
            config,
            answer_timeout,
            seed: None,
            workers: HashMap::new(),
        }
    }

    /// Adds seeds to try after the given ones (e.g. addresses the history knows).
    pub fn add_seeds(&mut self, more: impl IntoIterator<Item = String>) {
        for s in more {
            if !self.seeds.contains(&s) {
                self.seeds.push(s);
            }
        }
    }

    /// The cluster's nodes, from the first seed that answers (None when none does).
    async fn membership(&mut self) -> Option<Vec<NodeStatus>> {
        if let Some(c) = &self.seed {
            match c
                .call_within(methods::CLUSTER_NODES, NoParams {}, self.answer_timeout)
                .await
            {
                Ok(nodes) => return Some(nodes),
                Err(e) => {
                    tracing::warn!(seed = c.addr(), error = %e, "seed stopped answering");
                    self.seed = None;
                }
            }
        }
        for addr in self.seeds.clone() {
            let connected = tokio::time::timeout(
                self.answer_timeout.max(Duration::from_secs(1)),
                Client::connect(&addr, &self.config),
            )
            .await;
            match connected {
                Ok(Ok(c)) => {
                    tracing::info!(seed = %addr, "reading the cluster from this agent");
                    self.seed = Some(c);
                    return Box::pin(self.membership()).await;
                }
                Ok(Err(e)) => tracing::debug!(seed = %addr, error = %e, "seed unreachable"),
                Err(_) => tracing::debug!(seed = %addr, "seed timed out"),
            }
        }
        None
    }

    /// Follows the node list: starts workers for new nodes, stops those of nodes
    /// that left. Returns the nodes that left. Keeps the last list when no seed answers.
    async fn follow_membership(&mut self) -> Vec<NodeId> {
        let Some(nodes) = self.membership().await else {
            if self.workers.is_empty() {
                tracing::warn!("no seed agent answers; nothing to sample yet");
            }
            return Vec::new();
        };
        let listed: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
        let left: Vec<NodeId> = self
            .workers
            .keys()
            .copied()
            .filter(|id| !listed.contains(id))
            .collect();
        for id in &left {
            tracing::info!(node = id, "node left the cluster");
            self.workers.remove(id);
        }
        for n in nodes {
            let changed = self.workers.get(&n.id).is_none_or(|w| {
                w.addr != n.addr || (!n.host_key.is_empty() && w.host_key != n.host_key)
            });
            if changed {
                self.workers.insert(n.id, self.spawn_worker(&n));
            } else if let Some(w) = self.workers.get_mut(&n.id) {
                w.name = n.name.clone();
            }
        }
        left
    }

    fn spawn_worker(&self, n: &NodeStatus) -> Worker {
        let (tx, rx) = mpsc::channel(4);
        let mut config = self.config.clone();
        if !n.host_key.is_empty() {
            match russh::keys::PublicKey::from_openssh(&n.host_key) {
                Ok(k) => config.pinned_host_key = Some(k),
                Err(e) => {
                    tracing::warn!(node = n.id, error = %e, "unreadable host key in the node list; using known_hosts")
                }
            }
        }
        tokio::spawn(worker(
            n.id,
            n.addr.clone(),
            config,
            self.answer_timeout,
            rx,
        ));
        Worker {
            name: n.name.clone(),
            addr: n.addr.clone(),
            host_key: n.host_key.clone(),
            tx,
        }
    }

    /// One tick: follows the node list, then asks every node at once for its
    /// figures, processes and the moves its log holds after `cursor(node)`.
    /// Returns every node's answer (in node order) and the nodes that left.
    pub async fn poll(
        &mut self,
        cursor: impl Fn(NodeId) -> MovesSinceParams,
    ) -> (Vec<NodeAnswer>, Vec<NodeId>) {
        let left = self.follow_membership().await;
        let deadline = Instant::now() + self.answer_timeout;
        let mut pending = Vec::new();
        for (id, w) in &self.workers {
            let (tx, rx) = oneshot::channel();
            let sent = w.tx.try_send(Request::Tick(cursor(*id), tx)).is_ok();
            pending.push((*id, w.name.clone(), w.addr.clone(), sent.then_some(rx)));
        }
        let mut answers = Vec::with_capacity(pending.len());
        for (node, name, addr, rx) in pending {
            let (result, moves) = match rx {
                None => (Err("still busy with the previous tick".to_string()), None),
                Some(rx) => match tokio::time::timeout_at(deadline, rx).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => (Err("worker stopped".to_string()), None),
                    Err(_) => (
                        Err(format!(
                            "no answer within {} ms",
                            self.answer_timeout.as_millis()
                        )),
                        None,
                    ),
                },
            };
            answers.push(NodeAnswer {
                node,
                name,
                addr,
                result,
                moves,
            });
        }
        answers.sort_by_key(|a| a.node);
        (answers, left)
    }

    /// The job record of `home_pid` at node `home` (for a move's figures or an
    /// exit code), if that node answers within the tick timeout.
    pub async fn job(&self, home: NodeId, home_pid: i32) -> Option<JobInfo> {
        let w = self.workers.get(&home)?;
        let (tx, rx) = oneshot::channel();
        w.tx.try_send(Request::Job(home_pid, tx)).ok()?;
        tokio::time::timeout(self.answer_timeout, rx)
            .await
            .ok()?
            .ok()?
    }
}

/// One node's worker: keeps a connection and answers requests until the
/// handle is dropped.
async fn worker(
    node: NodeId,
    addr: String,
    config: ClientConfig,
    timeout: Duration,
    mut rx: mpsc::Receiver<Request>,
) {
    let mut client: Option<Arc<Client>> = None;
    let mut backoff = Duration::from_secs(1);
    let mut next_attempt = Instant::now();
    let mut last_error = String::from("not connected yet");
    while let Some(req) = rx.recv().await {
        if client.is_none() && Instant::now() >= next_attempt {
            let connect_within = timeout.max(Duration::from_millis(500));
            match tokio::time::timeout(connect_within, Client::connect(&addr, &config)).await {
                Ok(Ok(c)) => {
                    tracing::info!(node, %addr, "connected");
                    client = Some(Arc::new(c));
                    backoff = Duration::from_secs(1);
                }
                Ok(Err(e)) => last_error = e.to_string(),
                Err(_) => {
                    last_error =
                        format!("connect timed out after {} ms", connect_within.as_millis())
                }
            }
            if client.is_none() {
                tracing::debug!(node, %addr, error = %last_error, retry_in = ?backoff, "unreachable");
                next_attempt = Instant::now() + backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        match req {
            Request::Tick(cursor, reply) => {
                let Some(c) = client.clone() else {
                    let _ = reply.send((Err(last_error.clone()), None));
                    continue;
                };
                let (status, procs, moves) = tokio::join!(
                    c.call_within::<_, NodeStatus>(methods::NODE_STATUS, NoParams {}, timeout),
                    c.call_within::<_, Vec<ProcessInfo>>(
                        methods::PROC_LIST,
                        ProcListParams::default(),
                        timeout
                    ),
                    c.call_within::<_, MoveLogPage>(methods::MOVES_SINCE, cursor, timeout),
                );
                let moves = match moves {
                    Ok(page) => Some(page),
                    Err(e) => {
                        tracing::debug!(node, %addr, error = %e, "cannot read the move log");
                        None
                    }
                };
                let answer = status.and_then(|s| Ok((s, procs?)));
                let answer = answer.map_err(|e| {
                    if matches!(e, ClientError::Closed | ClientError::Timeout(_)) {
                        tracing::info!(node, %addr, error = %e, "connection lost");
                        client = None;
                        next_attempt = Instant::now();
                    }
                    last_error = e.to_string();
                    last_error.clone()
                });
                let _ = reply.send((answer, moves));
            }
            Request::Job(pid, reply) => {
                let info = match &client {
                    Some(c) => c
                        .call_within(methods::JOB_STATUS, PidParams { pid }, timeout)
                        .await
                        .ok(),
                    None => None,
                };
                let _ = reply.send(info);
            }
        }
    }
}
