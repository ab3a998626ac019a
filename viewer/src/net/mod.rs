//! The network side of the app: a tokio runtime on its own thread that talks
//! to the agents and the collector. The UI sends [`Command`]s and reads
//! [`Event`]s over channels; it never waits on the network.

mod backend;
mod collector_ctl;
mod links;
mod spawn;

pub use backend::{Backend, BackendConfig, Waker};
pub use collector_ctl::CollectorAction;
pub use links::LinkSettings;
pub use spawn::{ExecMode, ExecRequest, split_args as spawn_args};

use hpc::model::{AdminState, NodeId, NodeStatus, ProcessDelta, Role};
use hpc::protocol::{MigrationReport, MoveRecord};
use serde_json::Value;

/// How the app's connection to one node stands.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkState {
    /// Not connected yet.
    Idle,
    /// Connected; the agent grants this role to our key.
    Connected(Role),
    /// The node could not be reached.
    Unreachable(String),
    /// The node refused our key.
    Unauthorised(String),
    /// The node's host key is unknown (waiting for the user) or changed (refused).
    HostKey(String),
}

impl LinkState {
    /// A short word for the state.
    pub fn word(&self) -> &'static str {
        match self {
            LinkState::Idle => "not connected",
            LinkState::Connected(_) => "connected",
            LinkState::Unreachable(_) => "unreachable",
            LinkState::Unauthorised(_) => "unauthorised",
            LinkState::HostKey(_) => "host key problem",
        }
    }

    /// The reason, when the link failed.
    pub fn reason(&self) -> Option<&str> {
        match self {
            LinkState::Unreachable(r) | LinkState::Unauthorised(r) | LinkState::HostKey(r) => {
                Some(r)
            }
            _ => None,
        }
    }
}

/// What the UI asks the network side to do.
#[derive(Debug, Clone)]
pub enum Command {
    /// Write an admin file (`admin/stay`, `admin/speed`, `admin/expel`...) on each node.
    WriteAdmin {
        /// The nodes.
        nodes: Vec<NodeId>,
        /// The path below `/proc/hpc`.
        path: String,
        /// The value.
        value: Value,
    },
    /// openMosix start (`true`) or stop (`false`) on each node.
    Switch {
        /// The nodes.
        nodes: Vec<NodeId>,
        /// Start or stop.
        on: bool,
    },
    /// Read a node's admin state again.
    RefreshAdmin(NodeId),
    /// Move a process (`to`: a node id, `home` or `balance`).
    Migrate {
        /// Node that lists the process.
        node: NodeId,
        /// Its PID there.
        pid: i32,
        /// Target.
        to: String,
    },
    /// Send a signal (`STOP`, `CONT`, `KILL`, `TERM`).
    Signal {
        /// Node that lists the process.
        node: NodeId,
        /// Its PID there.
        pid: i32,
        /// The signal's name.
        signal: String,
    },
    /// Change a nice value.
    Renice {
        /// Node that lists the process.
        node: NodeId,
        /// Its PID there.
        pid: i32,
        /// New nice value (-20..=20; 20 is taken as 19).
        nice: i32,
    },
    /// Change a per-process openMosix field (`lock`, `decay`, ...).
    ProcWrite {
        /// Node that lists the process.
        node: NodeId,
        /// Its PID there.
        pid: i32,
        /// The field.
        field: String,
        /// The value.
        value: Value,
    },
    /// Start a program (advanced execution).
    Execute(ExecRequest),
    /// Keep the process lists of exactly these nodes up to date.
    WatchProcesses(Vec<NodeId>),
    /// The user confirmed an unknown host key: record it and connect.
    TrustHostKey {
        /// The address whose key is trusted.
        addr: String,
    },
    /// Run the collector's command line.
    Collector(CollectorAction),
}

/// What happened, for the UI.
#[derive(Debug, Clone)]
pub enum Event {
    /// The cluster as the connected node sees it (every node, every second).
    Nodes {
        /// Address of the node that answered.
        via: String,
        /// Every node.
        nodes: Vec<NodeStatus>,
    },
    /// No node answers `cluster.nodes`; the reason of the last attempt.
    ClusterUnreachable(String),
    /// The link to one node changed.
    Link {
        /// The node.
        node: NodeId,
        /// Its state.
        state: LinkState,
    },
    /// A node's admin state, as read.
    Admin {
        /// The node.
        node: NodeId,
        /// Its state.
        admin: AdminState,
    },
    /// Process-list changes of a watched node (`reset`: the delta lists every process).
    Processes {
        /// The node.
        node: NodeId,
        /// The changes.
        delta: ProcessDelta,
        /// Whether this replaces what was known.
        reset: bool,
    },
    /// An agent presented a host key we do not know; the user must confirm it.
    HostKeyUnknown {
        /// The address.
        addr: String,
        /// The key's SHA256 fingerprint.
        fingerprint: String,
    },
    /// An action ended.
    Done {
        /// What was done, for a person ("migrate 4242 to node 3").
        what: String,
        /// Ok with a result text, or the error.
        result: Result<String, String>,
    },
    /// A migration the app asked for ended.
    Migrated {
        /// Node that listed the process.
        node: NodeId,
        /// Its PID there.
        pid: i32,
        /// Where it was asked to go.
        to: String,
        /// The agent's report, or why it did not move.
        result: Result<MigrationReport, String>,
    },
    /// Where a migration the app asked for stands, as its source says.
    MoveProgress {
        /// Node that listed the process (the move's source).
        node: NodeId,
        /// Its PID there.
        pid: i32,
        /// How far it is.
        progress: hpc::protocol::MoveProgress,
    },
    /// New entries of a watched node's move log (migrations it carried out
    /// as the source, whoever asked for them).
    Moves {
        /// The node.
        node: NodeId,
        /// The moves, oldest first.
        moves: Vec<MoveRecord>,
    },
    /// A job was started by advanced execution.
    JobStarted {
        /// Its home node.
        home: NodeId,
        /// Its PID at home.
        home_pid: i32,
        /// Where it runs.
        node: NodeId,
    },
}
