//! What the UI knows about the cluster, built only from the network side's
//! [`Event`]s; views read it (the host-key dialog also drops the prompts the
//! user has answered).

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use hpc::model::{AdminState, Liveness, NodeId, NodeStatus, ProcessInfo, Role};

use hpc::protocol::MigrationReport;

use crate::moves::Moves;
use crate::net::{Event, LinkState};

/// One node as the main view shows it.
#[derive(Debug, Clone)]
pub struct NodeEntry {
    /// Its figures, from the cluster's gossip.
    pub status: NodeStatus,
    /// Its admin state, once read.
    pub admin: Option<AdminState>,
    /// The app's connection to it.
    pub link: LinkState,
}

impl NodeEntry {
    /// Whether the node is up.
    pub fn is_up(&self) -> bool {
        self.status.status == Liveness::Up
    }

    /// Load in percent of the node's capacity (100 = every CPU busy).
    pub fn load_percent(&self) -> f32 {
        self.status.load as f32 * 100.0 / hpc::model::LOAD_UNIT as f32
    }

    /// Used memory in percent of the total.
    pub fn mem_used_percent(&self) -> f32 {
        if self.status.tmem == 0 {
            return 0.0;
        }
        let used = self.status.tmem.saturating_sub(self.status.mem);
        used as f32 * 100.0 / self.status.tmem as f32
    }
}

/// How the app's view of the cluster stands.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterLink {
    /// Looking for a node to talk to.
    Connecting,
    /// Figures come from this node.
    Via(String),
    /// No node answers; why.
    Unreachable(String),
}

/// A message for the user: an action's outcome or a problem.
#[derive(Debug, Clone)]
pub struct Notice {
    /// When it happened.
    pub at: SystemTime,
    /// What it is about.
    pub what: String,
    /// Ok text or error.
    pub result: Result<String, String>,
}

/// A host key waiting for the user's decision.
#[derive(Debug, Clone, PartialEq)]
pub struct HostKeyPrompt {
    /// The agent's address.
    pub addr: String,
    /// Its key's fingerprint.
    pub fingerprint: String,
}

/// Everything the views read.
#[derive(Debug)]
pub struct ClusterState {
    /// Where the figures come from.
    pub link: ClusterLink,
    /// The nodes, by id.
    pub nodes: BTreeMap<NodeId, NodeEntry>,
    /// Process lists of the watched nodes, by node and PID.
    pub processes: BTreeMap<NodeId, HashMap<i32, ProcessInfo>>,
    /// Bumped whenever a process list changes (views cache on it).
    pub processes_version: u64,
    /// Newest last.
    pub notices: Vec<Notice>,
    /// Host keys the user has to confirm.
    pub host_key_prompts: Vec<HostKeyPrompt>,
    /// The last job started from the execution dialog: (home, home PID).
    pub last_job: Option<(NodeId, i32)>,
    /// Migrations under way, their outcomes and each process's last move.
    pub moves: Moves,
    /// Bumped on every event (frames are built only when it changes or on input).
    pub version: u64,
}

/// How many notices are kept.
const MAX_NOTICES: usize = 500;

impl Default for ClusterState {
    fn default() -> Self {
        Self {
            link: ClusterLink::Connecting,
            nodes: BTreeMap::new(),
            processes: BTreeMap::new(),
            processes_version: 0,
            notices: Vec::new(),
            host_key_prompts: Vec::new(),
            last_job: None,
            moves: Moves::default(),
            version: 0,
        }
    }
}

impl ClusterState {
    /// Applies one event.
    pub fn apply(&mut self, event: Event) {
        self.version += 1;
        match event {
            Event::Nodes { via, nodes } => {
                self.link = ClusterLink::Via(via);
                let listed: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
                self.nodes.retain(|id, _| listed.contains(id));
                self.processes.retain(|id, _| listed.contains(id));
                for status in nodes {
                    match self.nodes.get_mut(&status.id) {
                        Some(entry) => entry.status = status,
                        None => {
                            self.nodes.insert(
                                status.id,
                                NodeEntry {
                                    status,
                                    admin: None,
                                    link: LinkState::Idle,
                                },
                            );
                        }
                    }
                }
            }
            Event::ClusterUnreachable(why) => {
                if self.link != ClusterLink::Unreachable(why.clone()) {
                    self.notice("cluster", Err(why.clone()));
                }
                self.link = ClusterLink::Unreachable(why);
            }
            Event::Link { node, state } => {
                if let Some(reason) = state.reason() {
                    let changed = self.nodes.get(&node).is_none_or(|n| n.link != state);
                    if changed {
                        self.notice(&format!("node {node}"), Err(reason.to_string()));
                    }
                }
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.link = state;
                }
            }
            Event::Admin { node, admin } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.admin = Some(admin);
                }
            }
            Event::Processes { node, delta, reset } => {
                let table = self.processes.entry(node).or_default();
                if reset {
                    table.clear();
                }
                for p in delta.added.into_iter().chain(delta.changed) {
                    table.insert(p.pid, p);
                }
                for pid in delta.removed {
                    table.remove(&pid);
                }
                self.processes_version += 1;
            }
            Event::HostKeyUnknown { addr, fingerprint } => {
                let prompt = HostKeyPrompt { addr, fingerprint };
                if !self.host_key_prompts.contains(&prompt) {
                    self.host_key_prompts.push(prompt);
                }
            }
            Event::Done { what, result } => self.notice(&what, result),
            Event::Migrated {
                node,
                pid,
                to,
                result,
            } => {
                let what = format!("migrate process {pid} (node {node}) to {to}");
                self.notice(
                    &what,
                    result.as_ref().map(describe_move).map_err(Clone::clone),
                );
                self.moves.end(node, pid, result);
            }
            Event::MoveProgress {
                node,
                pid,
                progress,
            } => self.moves.progress(node, pid, progress),
            Event::Moves { moves, .. } => {
                for m in moves {
                    self.moves.record(m.report);
                }
            }
            Event::JobStarted { home, home_pid, .. } => self.last_job = Some((home, home_pid)),
        }
    }

    fn notice(&mut self, what: &str, result: Result<String, String>) {
        match &result {
            Ok(r) => tracing::info!(what, result = %r),
            Err(e) => tracing::warn!(what, error = %e),
        }
        self.notices.push(Notice {
            at: SystemTime::now(),
            what: what.to_string(),
            result,
        });
        if self.notices.len() > MAX_NOTICES {
            self.notices.drain(..self.notices.len() - MAX_NOTICES);
        }
    }

    /// The ids of the up nodes.
    pub fn up_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.is_up())
            .map(|n| n.status.id)
            .collect()
    }

    /// The loads of the up nodes.
    pub fn up_loads(&self) -> Vec<u32> {
        self.nodes
            .values()
            .filter(|n| n.is_up())
            .map(|n| n.status.load)
            .collect()
    }

    /// The role our key has on `node`, when connected.
    pub fn role(&self, node: NodeId) -> Option<Role> {
        match self.nodes.get(&node).map(|n| &n.link) {
            Some(LinkState::Connected(r)) => Some(*r),
            _ => None,
        }
    }

    /// Finds a process by identity (home node, PID at home), wherever it runs
    /// now: the process itself, not the home's record of a process that runs
    /// elsewhere nor the job's init.
    pub fn find_job(&self, home: NodeId, home_pid: i32) -> Option<(NodeId, &ProcessInfo)> {
        let candidates: Vec<(NodeId, &ProcessInfo)> = self
            .processes
            .iter()
            .flat_map(|(node, table)| table.values().map(move |p| (*node, p)))
            .filter(|(node, p)| identity(*node, p) == (home, home_pid))
            .collect();
        let runs_here = |(node, p): &(NodeId, &ProcessInfo)| runs_on(*node, p) == *node;
        let is_parent = |(node, p): &(NodeId, &ProcessInfo)| {
            candidates
                .iter()
                .any(|(n, c)| n == node && c.ppid == p.pid && c.pid != p.pid)
        };
        candidates
            .iter()
            .find(|c| runs_here(c) && !is_parent(c))
            .or_else(|| candidates.iter().find(|c| runs_here(c)))
            .or_else(|| candidates.first())
            .copied()
    }
}

/// A finished migration, for a person.
pub fn describe_move(r: &MigrationReport) -> String {
    format!(
        "now on node {} as PID {} ({} ms, frozen {} ms, {} KiB)",
        r.to,
        r.pid,
        r.total_ms,
        r.freeze_ms,
        r.bytes / 1024
    )
}

/// Whether a row is the agent's plumbing around a job (its `unshare` and
/// its `openmosix-jobinit`, or a moved process's placeholder), not a process
/// anyone started: views show the job as its command.
pub fn is_plumbing(p: &ProcessInfo) -> bool {
    p.cmdline.contains("openmosix-jobinit")
}

/// The node a process runs on (a home lists its migrated processes with
/// `where` = the node that runs them).
pub fn runs_on(listed_on: NodeId, p: &ProcessInfo) -> NodeId {
    if p.where_ == 0 { listed_on } else { p.where_ }
}

/// A process's identity: its home node and its PID there.
pub fn identity(listed_on: NodeId, p: &ProcessInfo) -> (NodeId, i32) {
    let home = if p.home == 0 { listed_on } else { p.home };
    let home_pid = if p.home_pid == 0 { p.pid } else { p.home_pid };
    (home, home_pid)
}
