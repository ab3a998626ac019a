//! The openMosix JSON-RPC 2.0 protocol: envelopes, error codes, method names and
//! their parameter and result types. One JSON object per line on the wire (see
//! [`crate::framing`]); `docs/PROTOCOL.md` documents every method with examples.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{NodeId, NodeStatus, ProcessDelta, Role};

/// Largest accepted message (one line), in bytes. Longer lines are discarded
/// and answered with [`codes::MESSAGE_TOO_LARGE`].
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Shortest subscription interval, in milliseconds.
pub const MIN_SUBSCRIBE_INTERVAL_MS: u64 = 250;
/// Method name of server-pushed subscription notifications.
pub const UPDATE_NOTIFICATION: &str = "update";

/// JSON-RPC error codes: the standard ones and openMosix's own (-32001..).
pub mod codes {
    /// The line is not valid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Parameters missing or of the wrong type.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The agent failed internally.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The caller's role does not allow this.
    pub const FORBIDDEN: i64 = -32001;
    /// No such process.
    pub const NO_SUCH_PROCESS: i64 = -32002;
    /// No such node.
    pub const NO_SUCH_NODE: i64 = -32003;
    /// No such `/proc/hpc` path, or it is read-only.
    pub const NO_SUCH_PATH: i64 = -32004;
    /// The feature is not available on this agent (e.g. the migration engine).
    pub const UNAVAILABLE: i64 = -32005;
    /// A node could not be reached.
    pub const NODE_UNREACHABLE: i64 = -32006;
    /// The message exceeded [`super::MAX_MESSAGE_BYTES`].
    pub const MESSAGE_TOO_LARGE: i64 = -32007;
    /// The operating system refused the action (errno text in the message).
    pub const OS_ERROR: i64 = -32008;
    /// A migration was refused or failed; the process continues where it was.
    pub const MIGRATION_FAILED: i64 = -32009;
}

/// Method names.
pub mod methods {
    /// Read a `/proc/hpc` path.
    pub const HPC_READ: &str = "hpc.read";
    /// Write a `/proc/hpc` path.
    pub const HPC_WRITE: &str = "hpc.write";
    /// List the entries of a `/proc/hpc` directory.
    pub const HPC_LIST: &str = "hpc.list";
    /// This node's status.
    pub const NODE_STATUS: &str = "node.status";
    /// This node's load as it is now (not smoothed), with what is arriving:
    /// → [`super::LoadNow`]; what a placing peer asks.
    pub const NODE_LOAD: &str = "node.load";
    /// Every node of the cluster.
    pub const CLUSTER_NODES: &str = "cluster.nodes";
    /// The process list, filtered.
    pub const PROC_LIST: &str = "proc.list";
    /// One process's row.
    pub const PROC_GET: &str = "proc.get";
    /// Read a per-process openMosix field.
    pub const PROC_READ: &str = "proc.read";
    /// Write a per-process openMosix field.
    pub const PROC_WRITE: &str = "proc.write";
    /// Send a signal.
    pub const PROC_SIGNAL: &str = "proc.signal";
    /// Change a nice value.
    pub const PROC_RENICE: &str = "proc.renice";
    /// Start pushing updates.
    pub const SUBSCRIBE: &str = "subscribe";
    /// Stop pushing updates.
    pub const UNSUBSCRIBE: &str = "unsubscribe";
    /// Who the caller is to the agent.
    pub const WHOAMI: &str = "agent.whoami";
    /// Start a job in its own PID namespace (`mosrun`): [`super::SpawnParams`] → [`super::JobInfo`].
    pub const PROC_SPAWN: &str = "proc.spawn";
    /// Move a process: [`super::MigrateParams`] → [`super::MigrationReport`].
    pub const PROC_MIGRATE: &str = "proc.migrate";
    /// Where the move of a process from this node stands:
    /// [`super::PidParams`] → [`super::MoveProgress`] or null (none under way).
    pub const PROC_PROGRESS: &str = "proc.progress";
    /// A job's record (where it runs, migrations, exit status): [`super::PidParams`] → [`super::JobInfo`].
    pub const JOB_STATUS: &str = "job.status";
    /// The jobs this node knows: its own (anywhere) and its guests → `[JobInfo]`.
    pub const JOB_LIST: &str = "job.list";
    /// Agent to home agent: a job moved ([`super::JobInfo`]); cluster key only.
    pub const JOB_MOVED: &str = "job.moved";
    /// Agent to home agent: a guest job ended ([`super::JobExited`]); cluster key only.
    pub const JOB_EXITED: &str = "job.exited";
    /// Forget the host key pinned for a node (after an admin rotated it):
    /// [`super::NodeParams`] → [`super::ForgottenHostKey`]; admin only.
    pub const CLUSTER_FORGET_HOST_KEY: &str = "cluster.forget_host_key";
    /// What the gossip transport accepted and dropped: → [`super::GossipStats`].
    pub const CLUSTER_GOSSIP_STATS: &str = "cluster.gossip_stats";
    /// Every admin setting of the node in one answer ([`super::AdminState`]).
    pub const ADMIN_GET: &str = "admin.get";
    /// The migrations this node carried out, from a sequence number on.
    pub const MOVES_SINCE: &str = "moves.since";
    /// The cluster map this node uses (`setpe -r`, `showmap`): → [`super::ClusterMapInfo`].
    pub const CLUSTER_MAP: &str = "cluster.map";
    /// Take a new cluster map without a restart (`setpe -w`):
    /// [`super::SetMapParams`] → [`super::ClusterMapInfo`]; admin only.
    pub const CLUSTER_SET_MAP: &str = "cluster.set_map";
}

/// A JSON-RPC request (or a notification, when `id` is absent).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Always "2.0".
    pub jsonrpc: String,
    /// Request id, echoed in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// Method name.
    pub method: String,
    /// Parameters (an object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct RpcError {
    /// One of [`codes`].
    pub code: i64,
    /// What went wrong, for a person.
    pub message: String,
    /// Extra machine-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with a code and a message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }
    /// Invalid parameters.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PARAMS, message)
    }
    /// The caller's role does not allow the call.
    pub fn forbidden(role: Role, what: &str) -> Self {
        Self::new(
            codes::FORBIDDEN,
            format!("permission denied: a {role} key may not {what} (needs an admin key)"),
        )
    }
    /// No such process.
    pub fn no_such_process(pid: i32) -> Self {
        Self::new(codes::NO_SUCH_PROCESS, format!("no such process: {pid}"))
    }
    /// No such node.
    pub fn no_such_node(node: NodeId) -> Self {
        Self::new(codes::NO_SUCH_NODE, format!("no such node: {node}"))
    }
}

/// A JSON-RPC response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// Always "2.0".
    pub jsonrpc: String,
    /// The request's id (null when the request could not be read).
    pub id: Value,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    /// A success response.
    pub fn ok(id: Value, result: Value) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id,
            result: Some(result),
            error: None,
        }
    }
    /// An error response.
    pub fn err(id: Value, error: RpcError) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id,
            result: None,
            error: Some(error),
        }
    }
}

/// A server-to-client notification (no id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    /// Always "2.0".
    pub jsonrpc: String,
    /// Notification name ([`UPDATE_NOTIFICATION`]).
    pub method: String,
    /// Payload.
    pub params: Value,
}

/// Parameters of a method that takes none (sent as `{}`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct NoParams {}

/// `hpc.read` / `hpc.list` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathParams {
    /// Path below `/proc/hpc`, e.g. `admin/stay` or `nodes/2/load`.
    pub path: String,
}

/// `hpc.write` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteParams {
    /// Path below `/proc/hpc`.
    pub path: String,
    /// Value to write (number or string, as one would `echo` it).
    pub value: Value,
    /// For `decay/*`: the process the write applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
}

/// `hpc.read` / `hpc.write` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathValue {
    /// The path read or written.
    pub path: String,
    /// Its value after the call (`admin/expel` and `admin/bring`: the number
    /// written, 0 or 1).
    pub value: Value,
    /// What an `admin/expel` or `admin/bring` moved, when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moves: Option<Evacuation>,
}

impl PathValue {
    /// The value of `path` with no moves.
    pub fn new(path: impl Into<String>, value: Value) -> Self {
        Self {
            path: path.into(),
            value,
            moves: None,
        }
    }
}

/// What `admin/expel` or `admin/bring` did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evacuation {
    /// Processes moved.
    pub moved: u32,
    /// Processes that could not move, with why.
    pub failed: Vec<MoveFailure>,
}

/// A process that `expel` or `bring` could not move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveFailure {
    /// Its PID (on the node asked).
    pub pid: i32,
    /// Why it did not move.
    pub error: String,
}

/// `proc.list` filter; every given field must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcFilter {
    /// Only these PIDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<Vec<i32>>,
    /// Only this user's processes (name or uid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Only processes whose command line contains this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Only processes in one of these states (letters, e.g. "RD").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<String>,
    /// Only processes using at least this CPU percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cpu: Option<f32>,
    /// Only processes that may move (lock = 0, no cantmove reason).
    #[serde(default)]
    pub movable: bool,
    /// Only migrated processes (where != home).
    #[serde(default)]
    pub migrated: bool,
    /// At most this many rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `proc.list` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcListParams {
    /// The filter.
    #[serde(default)]
    pub filter: ProcFilter,
}

/// Parameters naming one process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PidParams {
    /// The process.
    pub pid: i32,
}

/// `proc.read` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcFieldParams {
    /// The process.
    pub pid: i32,
    /// `where`, `goto`, `lock`, `cantmove`, `nmigs`, `migfilter`, `mignodes`, `migpolicy`, `decay`.
    pub field: String,
}

/// `proc.write` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcWriteParams {
    /// The process.
    pub pid: i32,
    /// The field (see [`ProcFieldParams::field`]).
    pub field: String,
    /// The value.
    pub value: Value,
}

/// `proc.signal` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignalParams {
    /// The process.
    pub pid: i32,
    /// `STOP`, `CONT`, `TERM`, `KILL`, `HUP`, `INT`, `USR1` or `USR2` (with or without `SIG`).
    pub signal: String,
    /// The process's start time as the caller saw it (`ProcessInfo::start_time`):
    /// when given, a different process that reused the PID is not touched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
}

/// `proc.renice` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReniceParams {
    /// The process.
    pub pid: i32,
    /// New nice value, -20..=19 (20 is taken as 19, as renice does).
    pub nice: i32,
    /// As in [`SignalParams::start_time`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
}

/// A node's load as it is now (`node.load`): what a peer placing a new
/// process asks of a few nodes instead of trusting gossip up to a second old.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadNow {
    /// The node.
    pub id: NodeId,
    /// Its load at its last sampling pass (not smoothed), plus what is
    /// arriving, in load units.
    pub load: u32,
    /// Processes arriving: migrations being received, and those that landed
    /// after that pass.
    pub arriving: u32,
    /// Its speed.
    pub speed: u32,
    /// Its CPUs.
    pub cpus: u32,
    /// Whether it takes guests now (not blocking, not quiet, migration available).
    pub accepts: bool,
}

/// The cluster map a node uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMapInfo {
    /// The node that answers.
    pub node: NodeId,
    /// Its map file.
    pub path: String,
    /// The map, in setpe format (`ID ADDR 1` per node; empty: the node
    /// knows its peers by autodiscovery only).
    pub text: String,
}

/// `cluster.set_map` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetMapParams {
    /// The new map, in setpe format.
    pub text: String,
}

/// Parameters naming one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeParams {
    /// The node.
    pub node: NodeId,
}

/// `cluster.forget_host_key` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgottenHostKey {
    /// The node.
    pub node: NodeId,
    /// Fingerprint of the key that was pinned, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forgotten: Option<String>,
}

/// `cluster.gossip_stats` result: gossip datagrams since the agent started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipStats {
    /// Verified datagrams handed to the membership protocol.
    pub accepted: u64,
    /// Dropped: no valid tag of this cluster's key (forged or from another cluster).
    pub bad_tag: u64,
    /// Dropped: a valid datagram seen before (replayed).
    pub replayed: u64,
    /// Dropped: a valid datagram outside the replay window (old, or a clock far off).
    pub stale: u64,
    /// Dropped: reached the agent's internal relay from anywhere but the agent itself.
    pub foreign: u64,
    /// Gossip about a node whose host key differs from the one pinned for it.
    pub host_key_mismatch: u64,
}

/// `subscribe` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeParams {
    /// Push period in milliseconds (>= [`MIN_SUBSCRIBE_INTERVAL_MS`]).
    pub interval_ms: u64,
    /// Push node status.
    #[serde(default = "yes")]
    pub status: bool,
    /// Push process-list changes.
    #[serde(default)]
    pub processes: bool,
}

fn yes() -> bool {
    true
}

/// `subscribe` result and `unsubscribe` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionId {
    /// The subscription.
    pub subscription: u64,
}

/// Payload of an [`UPDATE_NOTIFICATION`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Update {
    /// The subscription this belongs to.
    pub subscription: u64,
    /// Sequence number, from 0.
    pub seq: u64,
    /// Current node status (when subscribed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
    /// Process changes since the previous push (the first push lists all as added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<ProcessDelta>,
}

/// `agent.whoami` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The role of the caller's key.
    pub role: Role,
    /// SHA256 fingerprint of the caller's key, or `unix:uid=N` on the local socket.
    pub key: String,
    /// The uid a `user` caller acts as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// This node's id.
    pub node: NodeId,
    /// Agent version.
    pub version: String,
}

/// Params of `proc.spawn`: a command to start as a migratable job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpawnParams {
    /// Program and arguments (the program is looked up on `PATH`).
    pub argv: Vec<String>,
    /// Working directory (absolute).
    pub cwd: String,
    /// Environment of the job.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// User the job runs as (a `user` caller may only name its own uid).
    pub uid: u32,
    /// Group the job runs as (a `user` caller: one of its own groups).
    pub gid: u32,
    /// File the job's standard output is appended to (default: `/dev/null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// File the job's standard error is appended to (default: the stdout file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Start locked (`mosrun -L`, `nomig`): never moved unless unlocked.
    #[serde(default)]
    pub lock: bool,
    /// Decay class (`mosrun -n/-s/-f`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay: Option<crate::model::DecayClass>,
}

/// Params of `proc.migrate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrateParams {
    /// The process: a local PID, or the home PID of a job that runs elsewhere.
    pub pid: i32,
    /// A node id, `home` or `balance`.
    pub to: String,
    /// Move it even if it is locked (`expel` and `bring` do).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// How its memory moves (`auto` when left out).
    #[serde(default, skip_serializing_if = "MigrationMode::is_auto")]
    pub mode: MigrationMode,
}

/// How a migration moves a process's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationMode {
    /// Post-copy where both nodes can, else pre-copy.
    #[default]
    Auto,
    /// Post-copy (lazy pages): only the small non-memory images move while
    /// the process is frozen; it runs on the target at once and its memory
    /// follows in the background and on faults, over the agents' channel.
    Postcopy,
    /// Everything moves while the process is frozen (after a pre-dump where
    /// the kernel tracks dirty memory).
    Precopy,
}

impl MigrationMode {
    /// Whether this is [`MigrationMode::Auto`].
    pub fn is_auto(&self) -> bool {
        *self == Self::Auto
    }

    /// Its name in prose: `post-copy`, `pre-copy`, `auto`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Postcopy => "post-copy",
            Self::Precopy => "pre-copy",
        }
    }

    /// Its name on the command line and in reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Postcopy => "postcopy",
            Self::Precopy => "precopy",
        }
    }
}

impl std::fmt::Display for MigrationMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MigrationMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "postcopy" => Ok(Self::Postcopy),
            "precopy" => Ok(Self::Precopy),
            other => Err(format!(
                "unknown migration mode `{other}` (postcopy, precopy, auto)"
            )),
        }
    }
}

/// Which way a move's memory went between the two agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryPath {
    /// In image files, on the migration's SSH channel (pre-copy without
    /// streaming, or a stream that broke).
    #[default]
    Files,
    /// On the direct link: a TCP connection of its own, every record sealed
    /// with a key made for the move.
    Direct,
    /// On the `openmosix-pages` channel of the migration's SSH session.
    Ssh,
}

impl MemoryPath {
    /// Its name in prose.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Files => "in image files",
            Self::Direct => "on the direct link",
            Self::Ssh => "in the SSH session",
        }
    }
}

/// What one migration did, phase by phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationReport {
    /// The job's home node.
    pub home: NodeId,
    /// The job's identity: its PID at home.
    pub home_pid: i32,
    /// Node it left.
    pub from: NodeId,
    /// Node it runs on now.
    pub to: NodeId,
    /// Its command's PID on the new node.
    pub pid: i32,
    /// Image bytes moved.
    pub bytes: u64,
    /// Image files moved.
    pub files: u32,
    /// Checkpoint time (ms).
    pub dump_ms: u64,
    /// Transfer time (ms).
    pub transfer_ms: u64,
    /// Restore time on the target (ms).
    pub restore_ms: u64,
    /// Time the process was stopped, from freezing to running on the target (ms).
    pub freeze_ms: u64,
    /// How the memory moved: `postcopy` or `precopy` (never `auto`).
    #[serde(default)]
    pub mode: MigrationMode,
    /// Post-copy: from freezing until the last page reached the target and
    /// the source's frozen copy was released (ms); pre-copy: the freeze.
    #[serde(default)]
    pub released_ms: u64,
    /// Post-copy: memory bytes pulled after the process resumed on the target.
    #[serde(default)]
    pub pulled_bytes: u64,
    /// Pre-copy: of `bytes`, the memory streamed to the target's page server
    /// while the checkpoint read it (0 when it went as files).
    #[serde(default)]
    pub streamed_bytes: u64,
    /// Which way the memory went (streamed or pulled): the direct link or the
    /// SSH session; `files` when it went as image files.
    #[serde(default)]
    pub memory_path: MemoryPath,
    /// Pre-copy time, while the process kept running (ms; 0 without pre-copy).
    #[serde(default)]
    pub precopy_ms: u64,
    /// Bytes moved by the pre-copy (the final `bytes` are only what changed since).
    #[serde(default)]
    pub precopy_bytes: u64,
    /// Whole migration, from the request to the end (ms).
    pub total_ms: u64,
    /// Migrations of this job so far, this one included.
    pub nmigs: u32,
    /// When it ended (ms since the Unix epoch).
    pub at_ms: u64,
    /// Why it moved: `asked for` (`proc.migrate`), `expel: …`, `bring: …`,
    /// `balance: …` (the balancer's figures) or `memory: …` (ushering).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub why: String,
}

/// A job (a process tree started through the agent) as its home or host knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// Home node.
    pub home: NodeId,
    /// Identity: the command's PID at home.
    pub home_pid: i32,
    /// Node it runs on now.
    #[serde(rename = "where")]
    pub where_: NodeId,
    /// The command's PID on that node.
    pub pid: i32,
    /// The job's init (its PID namespace's PID 1) on that node.
    pub root_pid: i32,
    /// Command line.
    pub cmdline: String,
    /// Owner.
    pub uid: u32,
    /// Owner's name.
    pub user: String,
    /// Start time, seconds since the Unix epoch.
    pub start_time: u64,
    /// Migrations so far.
    pub nmigs: u32,
    /// Locked to its node.
    pub lock: bool,
    /// Decay class, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay: Option<crate::model::DecayClass>,
    /// Cluster mask.
    #[serde(default)]
    pub mask: crate::model::ClusterMask,
    /// Exit code once it ended (128 + N when killed by signal N).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// The signal that ended it, when one did (then `exit` is 128 + it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// A single process that no agent started, moved on its own: wherever it
    /// runs away from its original it lives in a PID namespace of its own
    /// (`root_pid` is that namespace's placeholder init), and its home keeps
    /// the stopped original as its deputy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single: bool,
    /// For a single process forked inside a job, the PID it has in the job's
    /// PID namespace (what `getpid()` says, kept wherever it runs); 0 when
    /// that is its home PID.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub vpid: i32,
    /// The last migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_migration: Option<MigrationReport>,
}

impl JobInfo {
    /// The PID the process knows itself by: in its placeholder namespaces
    /// it keeps this PID.
    pub fn own_pid(&self) -> i32 {
        if self.vpid > 0 {
            self.vpid
        } else {
            self.home_pid
        }
    }
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// Params of `moves.since`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovesSinceParams {
    /// The log the caller read before ([`MoveLogPage::epoch`]); when it is not
    /// this node's current log, the answer starts at the log's beginning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// Sequence number of the last move the caller has (0: none).
    #[serde(default)]
    pub after: u64,
    /// At most this many moves (default and ceiling: [`MOVES_PAGE_MAX`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Most moves one `moves.since` answer carries.
pub const MOVES_PAGE_MAX: u32 = 1000;

/// `moves.since` result: a page of this node's move log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MoveLogPage {
    /// Which log this is (a new one begins when the log file is lost).
    pub epoch: String,
    /// The moves after the caller's `after`, oldest first.
    pub moves: Vec<MoveRecord>,
    /// The oldest sequence number the log still holds (older ones were dropped).
    pub first: u64,
    /// The newest sequence number in the log (0: empty).
    pub last: u64,
}

/// One migration this node carried out as the source, as its move log keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MoveRecord {
    /// Its place in the log, from 1, without gaps.
    pub seq: u64,
    /// The migration: identity, from, to, PID there, figures, when.
    pub report: MigrationReport,
    /// The job's command line.
    pub cmdline: String,
    /// Its owner's name.
    pub user: String,
    /// Its start time, seconds since the Unix epoch.
    pub start_time: u64,
}

/// What a move under way is doing (`proc.progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovePhase {
    /// Offered to the target (and pre-copied, where the kernel can); the
    /// process still runs here.
    Preparing,
    /// Frozen: checkpoint, transfer and restore.
    Frozen,
    /// Running at the target while its memory is pulled (post-copy); the
    /// frozen copy here is released when the last page has gone.
    Pulling,
}

/// Where a move under way stands, as its source sees it (`proc.progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveProgress {
    /// The target node.
    pub to: NodeId,
    /// How the memory moves (`auto` until the nodes agreed).
    pub mode: MigrationMode,
    /// What it is doing.
    pub phase: MovePhase,
    /// How long it has been frozen (ms; the whole freeze once it runs there).
    pub frozen_ms: u64,
    /// Memory bytes that went to the target so far (streamed or pulled).
    pub moved_bytes: u64,
    /// The memory expected to go (its resident memory when the move began).
    pub expected_bytes: u64,
}

impl MoveProgress {
    /// The share of the expected memory gone so far (0..=1); None when
    /// nothing is expected.
    pub fn share(&self) -> Option<f64> {
        (self.expected_bytes > 0)
            .then(|| (self.moved_bytes as f64 / self.expected_bytes as f64).clamp(0.0, 1.0))
    }
}

/// Params of `job.exited`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobExited {
    /// The job's home PID.
    pub home_pid: i32,
    /// Node it ran on.
    pub node: NodeId,
    /// Exit code (128 + N when killed by signal N).
    pub code: i32,
    /// The signal that ended it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}
