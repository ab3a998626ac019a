//! The cluster data model: what `/proc/hpc` shows about nodes, processes and
//! the admin state, as it travels over the wire.

use serde::{Deserialize, Serialize};

/// An openMosix node number (1..=65535, as in setpe maps; 0 means "off").
pub type NodeId = u32;

/// The yardstick: a node of speed 10000 is the reference CPU (see `agent::speed`).
pub const STANDARD_SPEED: u32 = 10_000;

/// Load units per fully busy standard CPU: a load of 100 is one CPU's worth of
/// runnable work on a node of speed [`STANDARD_SPEED`].
pub const LOAD_UNIT: u32 = 100;

/// Whether a node answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// The node gossips and its figures are current.
    Up,
    /// The node stopped answering (or was never seen).
    Down,
}

/// The figures `/proc/hpc/nodes/<id>/*` shows for one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// openMosix node id (`mospe`).
    pub id: NodeId,
    /// Host name or address the node is known by.
    pub name: String,
    /// Address of the node's agent RPC endpoint (`host:port`).
    pub addr: String,
    /// Up or down.
    pub status: Liveness,
    /// Number of online CPUs.
    pub cpus: u32,
    /// openMosix load: runnable work normalised by speed and CPUs, smoothed;
    /// [`LOAD_UNIT`] = one fully busy standard CPU.
    pub load: u32,
    /// Relative speed, [`STANDARD_SPEED`] = the reference CPU.
    pub speed: u32,
    /// Utilisation in percent (100 = nothing stalls on memory pressure).
    pub util: u32,
    /// Logical free memory in bytes (what can be given to processes: MemAvailable).
    pub mem: u64,
    /// Physical free memory in bytes (MemFree).
    pub rmem: u64,
    /// Total memory in bytes.
    pub tmem: u64,
    /// Whether balancers may send it guests (false when `block` or `quiet` is set;
    /// a quiet node still takes moves asked for by hand).
    #[serde(default)]
    pub accepts: bool,
    /// Milliseconds since the node's figures were last refreshed.
    #[serde(default)]
    pub age_ms: u64,
    /// Why the node is down, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether processes can migrate to and from this node, and if not, why
    /// ("migration unavailable: <reason>").
    #[serde(default)]
    pub migration: String,
    /// The agent's SSH host public key (OpenSSH format), spread by the
    /// authenticated gossip so that agents can verify each other.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_key: String,
}

impl NodeStatus {
    /// Whether processes can migrate to and from this node (its `migration`
    /// does not say "migration unavailable: …").
    pub fn migration_available(&self) -> bool {
        !self.migration.starts_with("migration unavailable")
    }
}

/// The openMosix admin state of one node (`/proc/hpc/admin/*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AdminState {
    /// 1 = no automatic migration away from this node.
    pub stay: bool,
    /// 1 = local processes stay (guests may still leave).
    pub lstay: bool,
    /// 1 = refuse arriving guests.
    pub block: bool,
    /// 1 = stop disseminating this node's load to the others.
    pub quiet: bool,
    /// Seconds between decay steps.
    pub decay_interval: u32,
    /// Per mille of statistics kept per interval for slow-decay processes.
    pub slow_decay: u32,
    /// Per mille of statistics kept per interval for fast-decay processes.
    pub fast_decay: u32,
    /// This node's speed (calibrated, or set by an admin).
    pub speed: u32,
    /// Whether [`AdminState::speed`] was set by an admin (`setspeed`) rather than calibrated.
    pub speed_set_by_admin: bool,
    /// This node's openMosix id (0 = openMosix off).
    pub mospe: NodeId,
    /// Yardstick speed (`getyard`/`setyard`).
    pub yardstick: u32,
}

impl Default for AdminState {
    fn default() -> Self {
        Self {
            stay: false,
            lstay: false,
            block: false,
            quiet: false,
            decay_interval: 1,
            slow_decay: 975,
            fast_decay: 926,
            speed: STANDARD_SPEED,
            speed_set_by_admin: false,
            mospe: 0,
            yardstick: STANDARD_SPEED,
        }
    }
}

/// How fast a process's statistics decay (openMosix `mosrun -s/-f/-n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecayClass {
    /// Slow decay (the default; `slow-decay` per mille kept per interval).
    #[default]
    Slow,
    /// Fast decay (`fast-decay` per mille kept).
    Fast,
    /// No decay.
    None,
}

/// A process's cluster mask (`/proc/PID/migfilter`, `mignodes`, `migpolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClusterMask {
    /// Whether filtering is on.
    pub migfilter: bool,
    /// Bit list: node N maps to bit 2^(N-1).
    pub mignodes: u64,
    /// 0 = DENY (anywhere except the set nodes), 1 = ALLOW (only the set nodes).
    pub migpolicy: u8,
}

impl ClusterMask {
    /// Whether the mask lets the process go to `node`.
    pub fn allows(&self, node: NodeId) -> bool {
        if !self.migfilter {
            return true;
        }
        let set = (1..=64).contains(&node) && (self.mignodes >> (node - 1)) & 1 == 1;
        if self.migpolicy == 1 { set } else { !set }
    }
}

/// One row of the process table, with the openMosix fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Process id on the node that lists it.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Owner's user name (or numeric uid when unknown).
    pub user: String,
    /// Owner's uid.
    pub uid: u32,
    /// Scheduler state letter (R, S, D, T, Z, ...).
    pub state: char,
    /// Nice value (-20..19).
    pub nice: i32,
    /// CPU use over the last sampling period, percent of one CPU.
    pub cpu: f32,
    /// Resident set size in bytes.
    pub rss: u64,
    /// Number of threads.
    pub threads: u32,
    /// Start time, seconds since the Unix epoch.
    pub start_time: u64,
    /// Command line (arguments joined by spaces; `[comm]` for kernel threads).
    pub cmdline: String,
    /// Home node: where the process was started.
    pub home: NodeId,
    /// The process's identity: its PID on its home node. Equals `pid` unless the
    /// process was migrated (a restored process gets new local PIDs).
    #[serde(default)]
    pub home_pid: i32,
    /// Node where the process runs now (`where`); equals `home` unless migrated.
    #[serde(rename = "where")]
    pub where_: NodeId,
    /// 1 = locked to its node (not movable by the balancer or `migrate`).
    pub lock: bool,
    /// Why the process cannot move, if it cannot (empty when it may).
    pub cantmove: String,
    /// Number of migrations so far.
    pub nmigs: u32,
    /// Decay class.
    pub decay: DecayClass,
    /// Cluster mask.
    #[serde(flatten)]
    pub mask: ClusterMask,
    /// What `ps` shows beside the openMosix fields.
    #[serde(default)]
    pub ps: PsFields,
}

/// The `ps` figures of a process that openMosix does not need itself: its
/// virtual size, CPU time, terminal and state flags (`mps` shows them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PsFields {
    /// Virtual memory size in bytes.
    pub vsize: u64,
    /// CPU time used since it started (user + system), in milliseconds.
    pub cpu_ms: u64,
    /// Its controlling terminal (`pts/0`, `tty1`), empty when it has none.
    pub tty: String,
    /// `ps`'s flags after the state letter: `<` high or `N` low priority,
    /// `s` session leader, `l` multi-threaded, `+` in the terminal's
    /// foreground process group.
    pub flags: String,
}

/// The process-table changes between two snapshots, as pushed to subscribers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessDelta {
    /// Processes new since the last push.
    pub added: Vec<ProcessInfo>,
    /// Processes whose row changed since the last push.
    pub changed: Vec<ProcessInfo>,
    /// PIDs gone since the last push.
    pub removed: Vec<i32>,
}

impl ProcessDelta {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// The caller's role, as granted by the key it authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May read everything, change nothing.
    Monitor,
    /// An ordinary user of the node, bound to a uid: reads what a monitor
    /// reads, and runs, moves, locks, signals and renices its own processes.
    User,
    /// May change state and act on any process (root-equivalent on the node).
    Admin,
    /// Another agent of the same cluster (admin rights plus agent-to-agent calls).
    Cluster,
}

impl Role {
    /// Whether this role may change state or act on processes.
    pub fn can_write(self) -> bool {
        matches!(self, Role::Admin | Role::Cluster)
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "monitor" => Ok(Role::Monitor),
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            "cluster" => Ok(Role::Cluster),
            other => Err(format!(
                "unknown role `{other}` (expected monitor, user, admin or cluster)"
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Monitor => "monitor",
            Role::User => "user",
            Role::Admin => "admin",
            Role::Cluster => "cluster",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_mask_policies() {
        let off = ClusterMask::default();
        assert!(off.allows(3));
        let deny = ClusterMask {
            migfilter: true,
            mignodes: 0b100,
            migpolicy: 0,
        };
        assert!(!deny.allows(3));
        assert!(deny.allows(2));
        let allow = ClusterMask {
            migfilter: true,
            mignodes: 0b100,
            migpolicy: 1,
        };
        assert!(allow.allows(3));
        assert!(!allow.allows(1));
        assert!(!allow.allows(65));
    }
}
