//! The agent's shared state, handed to every connection (rerun's "context" idea).

use std::sync::Arc;
use std::time::Instant;

use hpc::model::{NodeId, NodeStatus, ProcessInfo};
use tokio::sync::watch;

use crate::cluster::ClusterView;
use crate::keys::AuthorizedKeys;
use crate::store::Store;

/// How long a request about a process born since the last sampling pass
/// may wait for a pass that lists it (a pass takes milliseconds, but a
/// loaded node may keep the sampler from running for a while).
pub const NEWBORN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// One sampling pass, as published to readers.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Pass number, from 0.
    pub seq: u64,
    /// When the pass began (what it lists existed by then).
    pub begun: Instant,
    /// When the pass ended.
    pub taken: Instant,
    /// This node's figures.
    pub status: NodeStatus,
    /// This pass's load, not smoothed (what `node.load` answers).
    pub raw_load: u32,
    /// This node's own load as the balancer weighs it: it rises slowly and
    /// drops at once (`status.load`, what peers see, does the opposite).
    pub local_load: u32,
    /// The process table, sorted by PID.
    pub processes: Arc<Vec<ProcessInfo>>,
}

impl Snapshot {
    /// The row of process `pid`, if this pass listed it.
    pub fn process(&self, pid: i32) -> Option<&ProcessInfo> {
        let i = self.processes.binary_search_by_key(&pid, |p| p.pid).ok()?;
        self.processes.get(i)
    }
}

/// Everything connections need.
pub struct AgentContext {
    /// This node's id.
    pub node_id: NodeId,
    /// Persistent admin and per-process state.
    pub store: Arc<Store>,
    /// The latest sampling pass.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Membership and peers' figures.
    pub cluster: ClusterView,
    /// Who may connect, with which role.
    pub authorized: AuthorizedKeys,
    /// Why migration is unavailable on this node ("migration unavailable: …").
    pub migration: String,
    /// Wakes the sampler early (after a write that changes what it reports).
    pub resample: std::sync::mpsc::SyncSender<()>,
    /// Hands each job `proc.spawn` starts, and each worker a job forks, to
    /// the balancer for placement (nobody listens when balancing is off).
    pub newborns: tokio::sync::mpsc::UnboundedSender<crate::balancing::Newborn>,
    /// Processes arriving here (counted by `node.load`).
    pub arrivals: Arc<crate::arrivals::Arrivals>,
    /// The processes being moved from here right now.
    pub in_motion: crate::migration::in_motion::InMotion,
    /// The moves this node is sending, for `proc.progress`.
    pub under_way: crate::migration::progress::UnderWay,
    /// The CRIU binary, when migration is available.
    pub criu: Option<std::path::PathBuf>,
    /// Whether migrations pre-copy memory while the process runs (the kernel
    /// tracks dirty memory).
    pub precopy: bool,
    /// `openmosix-pullguard`, when post-copy migration works here (the
    /// kernel's userfaultfd, CRIU's page-server pipes and the guard itself).
    pub postcopy: Option<std::path::PathBuf>,
    /// Migrations arriving here that wait for their pages channel.
    pub page_channels: crate::migration::postcopy::PageChannels,
    /// This node's pages port (the direct, sealed link of migrations'
    /// memory); `None`: the memory goes in the SSH session.
    pub pages_port: Option<u16>,
    /// Counters of migrations and balancer decisions, for `--metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The 0700 directory migration images pass through, and its ledger of room.
    pub images: Arc<crate::image_space::ImageSpace>,
    /// Who decided what about each migration (survives restarts).
    pub ledger: crate::migration::ledger::Ledger,
    /// Every migration this node carried out, numbered (`moves.since`).
    pub move_log: crate::move_log::MoveLog,
    /// A fault injected on purpose by the tests (`--test-fault`); `None` in production.
    pub fault: Option<crate::migration::Fault>,
    /// Jobs started here or hosted here.
    pub jobs: Arc<crate::jobs::Jobs>,
    /// Connections to the other agents.
    pub peers: crate::peers::Peers,
    /// The stopped originals of this node's single processes that run
    /// elsewhere (or in a namespace of their own here).
    pub deputies: crate::deputy::Deputies,
}

impl AgentContext {
    /// The latest snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// Asks for an early sampling pass and waits (at most `limit`) until it is
    /// published, so that a change just made shows in the next answer.
    pub async fn fresh_snapshot(&self, limit: std::time::Duration) {
        let asked = Instant::now();
        let mut rx = self.snapshot.clone();
        self.request_resample();
        // A pass under way when asked may have read /proc before the change:
        // only one begun since counts.
        let _ = tokio::time::timeout(limit, rx.wait_for(|s| s.begun >= asked)).await;
    }

    /// When `/proc` shows process `pid` but the latest pass does not list it
    /// (born since), asks for an early pass and waits (at most
    /// [`NEWBORN_WAIT`]) until one begun since is published: that pass lists
    /// every process of this node that existed when it began.
    pub async fn listing(&self, pid: i32) {
        let unlisted = pid > 0
            && self.current().process(pid).is_none()
            && std::path::Path::new(&format!("/proc/{pid}")).exists();
        if unlisted {
            self.fresh_snapshot(NEWBORN_WAIT).await;
        }
    }

    /// Asks the sampler for an early pass (coalesced; never blocks).
    pub fn request_resample(&self) {
        let _ = self.resample.try_send(());
    }
}
