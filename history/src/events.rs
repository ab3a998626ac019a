//! What one tick adds to the history: samples, node changes, process events
//! and checkpoints. The daemon builds a [`TickBatch`] per tick and the store
//! writes it in one transaction.

use crate::sample::NodeSample;
use hpc::model::NodeId;
use hpc::protocol::MigrationMode;

/// A node as the history names it (written when first seen or renamed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeMeta {
    /// openMosix node id.
    pub id: NodeId,
    /// Host name.
    pub name: String,
    /// Agent address.
    pub addr: String,
}

/// A node went up or down.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeChange {
    /// The node.
    pub node: NodeId,
    /// When (ms).
    pub t_ms: i64,
    /// Up (true) or down.
    pub up: bool,
    /// Why it is down ("connection refused", "no answer within 800 ms"...).
    pub reason: String,
}

/// A process appeared.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcStart {
    /// Its number in this history.
    pub id: i64,
    /// Home node.
    pub home: NodeId,
    /// PID at home (its identity).
    pub home_pid: i32,
    /// Node it was first seen on.
    pub node: NodeId,
    /// Its PID there.
    pub pid: i32,
    /// Command line.
    pub cmd: String,
    /// Owner.
    pub owner: String,
    /// When it started (ms; the process's own start time).
    pub started_ms: i64,
}

/// A process moved between nodes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcMove {
    /// The process.
    pub id: i64,
    /// When it arrived (ms).
    pub t_ms: i64,
    /// Node it left.
    pub from: NodeId,
    /// Node it runs on now.
    pub to: NodeId,
    /// Its PID on the new node.
    pub pid: i32,
    /// The whole migration (ms), when the home reported it.
    pub duration_ms: Option<i64>,
    /// How long it was frozen (ms), when the home reported it.
    pub freeze_ms: Option<i64>,
    /// Image bytes moved, when the move was logged by its source.
    pub bytes: Option<i64>,
    /// Why it moved (`asked for`, `balance: …`, `memory: …`, `expel: …`,
    /// `bring: …`), when the move was logged by its source.
    #[serde(default)]
    pub why: Option<String>,
    /// How its memory travelled (post-copy or pre-copy), when the home or
    /// the source reported the move.
    #[serde(default)]
    pub mode: Option<MigrationMode>,
    /// Post-copy: from the freeze until the source's copy was released (ms).
    #[serde(default)]
    pub released_ms: Option<i64>,
    /// Post-copy: memory bytes pulled after it resumed on the new node.
    #[serde(default)]
    pub pulled_bytes: Option<i64>,
}

/// A process ended (or vanished).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcEnd {
    /// The process.
    pub id: i64,
    /// When it was first missed (ms).
    pub t_ms: i64,
    /// "exited", or why it is taken as gone.
    pub reason: String,
    /// Exit code, for jobs whose home reported it.
    pub exit_code: Option<i32>,
}

/// A change in the process history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProcEvent {
    /// Appeared.
    Start(ProcStart),
    /// Moved.
    Move(ProcMove),
    /// Ended.
    End(ProcEnd),
    /// An ended job's exit code, learnt after its end was recorded.
    Exit {
        /// The process.
        id: i64,
        /// Its exit code (128 + N when killed by signal N).
        code: i32,
    },
}

/// A checkpoint (`openmosixcollector -n LABEL`); the analyzer draws it as a blue line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// When (ms).
    pub t_ms: i64,
    /// Its label.
    pub label: String,
}

/// How far the collector has read one node's move log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MoveCursor {
    /// The node.
    pub node: NodeId,
    /// Which log (a node that lost its log begins a new epoch).
    pub epoch: String,
    /// The last sequence number read.
    pub seq: u64,
}

/// Everything one tick adds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickBatch {
    /// The tick's time (ms).
    pub t_ms: i64,
    /// One sample per known node (down nodes included).
    pub samples: Vec<NodeSample>,
    /// Nodes seen for the first time or renamed.
    pub nodes: Vec<NodeMeta>,
    /// Nodes that went up or down.
    pub node_changes: Vec<NodeChange>,
    /// Process starts, moves and ends.
    pub procs: Vec<ProcEvent>,
    /// Checkpoints asked for since the last tick.
    pub checkpoints: Vec<Checkpoint>,
    /// Move-log positions after the moves in `procs` (written with them, so a
    /// restarted collector reads on from exactly there).
    pub cursors: Vec<MoveCursor>,
}
