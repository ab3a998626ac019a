//! Cluster membership and the load exchange, on chitchat (scuttlebutt gossip with
//! phi-accrual failure detection) over [`AuthenticatedUdp`].
//!
//! Each node's SSH host key is pinned the first time gossip shows it (kept in
//! the agent state). Gossip that later announces another key for that node
//! does not replace it: the node is shown down with the reason, and agents
//! keep verifying it against the pinned key. An admin who rotated a node's key
//! runs `mosctl forget-host-key ID` on every other node (`cluster.forget_host_key`);
//! the next gossip pins the new one.
//!
//! Each agent publishes one key, `status`, holding its [`NodeStatus`] as JSON
//! (with the sample time); chitchat spreads it. A node whose heartbeats stop is
//! declared down by the failure detector after about six gossip intervals (3 s).
//! Peers come from the cluster map (the seeds). Membership itself does not depend
//! on the map: any node that gossips with the cluster secret joins, so automatic
//! discovery only has to hand chitchat more seed addresses.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, spawn_chitchat};
use hpc::clock::now_ms;
use hpc::map::ClusterMap;
use hpc::model::{Liveness, NodeId, NodeStatus};
use serde::{Deserialize, Serialize};

use crate::gossip_transport::{AuthenticatedUdp, GossipCounters, ReplayWindow};
use crate::store::{Store, StoreError};

/// Gossip period.
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(500);
/// Phi threshold: with phi = silence / mean heartbeat interval, 6 means ~3 s of silence.
pub const PHI_THRESHOLD: f64 = 6.0;
const STATUS_KEY: &str = "status";
const CLUSTER_ID: &str = "openmosix";

/// What one node gossips.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Gossiped {
    status: NodeStatus,
    /// Sample time, ms since the Unix epoch.
    at_ms: u64,
}

/// A node known only by name and address (never heard from, or no figures yet).
fn placeholder(id: NodeId, name: String, addr: String, reason: &str) -> NodeStatus {
    NodeStatus {
        id,
        name,
        addr,
        status: Liveness::Down,
        cpus: 0,
        load: 0,
        speed: 0,
        util: 0,
        mem: 0,
        rmem: 0,
        tmem: 0,
        accepts: false,
        age_ms: 0,
        reason: Some(reason.into()),
        migration: String::new(),
        host_key: String::new(),
    }
}

/// Why a new map was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SetMapError {
    /// It does not parse, or leaves this node out.
    #[error("{0}")]
    Invalid(String),
    /// It could not be written.
    #[error("cannot write the cluster map {path}: {source}")]
    Write {
        /// The map file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Handle on the running membership.
pub struct ClusterView {
    handle: ChitchatHandle,
    map: std::sync::RwLock<ClusterMap>,
    map_path: std::path::PathBuf,
    self_id: NodeId,
    store: Arc<Store>,
    counters: Arc<GossipCounters>,
    /// (node, fingerprint) of announced keys that differ from the pinned one, already reported.
    mismatches: Mutex<HashSet<(NodeId, String)>>,
}

/// How to join.
pub struct ClusterConfig {
    /// This node's id.
    pub self_id: NodeId,
    /// Address peers gossip to (UDP).
    pub advertise: SocketAddr,
    /// Address to bind (UDP).
    pub listen: SocketAddr,
    /// The map (seeds and names).
    pub map: ClusterMap,
    /// Where the map is kept (`setpe -w` writes it there).
    pub map_path: std::path::PathBuf,
    /// Gossip authentication secret.
    pub secret: [u8; 32],
    /// How far a gossip datagram's send time may be from this node's clock.
    pub replay_window: ReplayWindow,
    /// Where pinned host keys are kept.
    pub store: Arc<Store>,
}

impl ClusterView {
    /// Starts gossiping.
    pub async fn start(cfg: ClusterConfig) -> anyhow::Result<Self> {
        let generation = now_ms();
        let id = ChitchatId::new(cfg.self_id.to_string(), generation, cfg.advertise);
        let seeds = cfg
            .map
            .nodes
            .iter()
            .filter(|n| n.id != cfg.self_id)
            .map(|n| n.addr.to_string())
            .collect();
        let config = ChitchatConfig {
            chitchat_id: id,
            cluster_id: CLUSTER_ID.into(),
            gossip_interval: GOSSIP_INTERVAL,
            listen_addr: cfg.listen,
            seed_nodes: seeds,
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: PHI_THRESHOLD,
                sampling_window_size: 100,
                max_interval: Duration::from_secs(10),
                initial_interval: GOSSIP_INTERVAL,
                dead_node_grace_period: Duration::from_secs(24 * 3600),
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let counters = Arc::new(GossipCounters::default());
        let transport = AuthenticatedUdp::new(&cfg.secret, cfg.replay_window, counters.clone());
        let handle = spawn_chitchat(config, Vec::new(), &transport).await?;
        Ok(Self {
            handle,
            map: std::sync::RwLock::new(cfg.map),
            map_path: cfg.map_path,
            self_id: cfg.self_id,
            store: cfg.store,
            counters,
            mismatches: Mutex::new(HashSet::new()),
        })
    }

    /// What the gossip transport accepted and dropped so far.
    pub fn gossip_stats(&self) -> hpc::protocol::GossipStats {
        self.counters.snapshot()
    }

    /// Forgets the host key pinned for `node`; returns its fingerprint.
    pub fn forget_host_key(&self, node: NodeId) -> Result<Option<String>, StoreError> {
        let old = self.store.update(|s| s.node_host_keys.remove(&node))?;
        if let Ok(mut m) = self.mismatches.lock() {
            m.retain(|(n, _)| *n != node);
        }
        Ok(old.map(|k| fingerprint_of(&k)))
    }

    /// Holds `entry`'s announced host key to the one pinned for its node, pinning
    /// it when there is none yet.
    fn check_host_key(&self, entry: &mut NodeStatus, pinned: Option<&String>) {
        if entry.host_key.is_empty() {
            return;
        }
        let Some(pinned) = pinned else {
            let (id, key) = (entry.id, entry.host_key.clone());
            match self.store.update(|s| s.node_host_keys.insert(id, key)) {
                Ok(_) => {
                    tracing::info!(node = id, key = %fingerprint_of(&entry.host_key), "pinned host key of node")
                }
                Err(e) => tracing::warn!(node = id, error = %e, "cannot pin a node's host key"),
            }
            return;
        };
        if same_key(pinned, &entry.host_key) {
            return;
        }
        let announced = fingerprint_of(&entry.host_key);
        let first = self
            .mismatches
            .lock()
            .map(|mut m| m.insert((entry.id, announced.clone())))
            .unwrap_or(false);
        if first {
            self.counters
                .host_key_mismatch
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(node = entry.id, %announced, pinned = %fingerprint_of(pinned),
                "gossip announces another host key for a node; keeping the pinned one");
        }
        entry.status = Liveness::Down;
        entry.reason = Some(format!(
            "host key changed: gossip announces {announced}, but {} is pinned for node {}; if the key was rotated on purpose, run `mosctl forget-host-key {}` here",
            fingerprint_of(pinned),
            entry.id,
            entry.id
        ));
        entry.host_key = pinned.clone();
    }

    /// Publishes this node's status (skipped while `quiet`).
    pub async fn publish(&self, status: &NodeStatus) {
        let g = Gossiped {
            status: status.clone(),
            at_ms: now_ms(),
        };
        let Ok(json) = serde_json::to_string(&g) else {
            return;
        };
        self.handle
            .with_chitchat(|c| c.self_node_state().set(STATUS_KEY, &json))
            .await;
    }

    /// Every node of the cluster: the map's nodes and every node gossip knows,
    /// with `local` standing for this node.
    pub async fn nodes(&self, local: &NodeStatus) -> Vec<NodeStatus> {
        let now = now_ms();
        let (live, states): (Vec<ChitchatId>, Vec<(ChitchatId, Option<String>)>) = self
            .handle
            .with_chitchat(|c| {
                let live = c.live_nodes().cloned().collect();
                let states = c
                    .node_states()
                    .iter()
                    .map(|(id, st)| (id.clone(), st.get(STATUS_KEY).map(str::to_string)))
                    .collect();
                (live, states)
            })
            .await;
        let mut out: BTreeMap<NodeId, NodeStatus> = BTreeMap::new();
        for n in &self.map().nodes {
            out.insert(
                n.id,
                placeholder(n.id, n.host.clone(), n.addr.to_string(), "never heard from"),
            );
        }
        // Newest generation of each node wins (a restarted node has a new generation).
        let mut newest: BTreeMap<NodeId, (u64, ChitchatId, Option<String>)> = BTreeMap::new();
        for (id, status) in states {
            let Ok(nid) = id.node_id.parse::<NodeId>() else {
                continue;
            };
            if newest
                .get(&nid)
                .is_none_or(|(g, _, _)| id.generation_id > *g)
            {
                newest.insert(nid, (id.generation_id, id, status));
            }
        }
        let pins = self.store.get_node_host_keys();
        for (nid, (_, cid, json)) in newest {
            if nid == self.self_id {
                continue;
            }
            let is_live = live.contains(&cid);
            let gossiped = json.and_then(|j| serde_json::from_str::<Gossiped>(&j).ok());
            let entry = out.entry(nid).or_insert_with(|| {
                let addr = cid.gossip_advertise_addr;
                placeholder(
                    nid,
                    addr.ip().to_string(),
                    addr.to_string(),
                    "no figures yet",
                )
            });
            if let Some(g) = gossiped {
                let name = entry.name.clone();
                *entry = g.status;
                entry.id = nid;
                if !name.is_empty() {
                    entry.name = name;
                }
                entry.age_ms = now.saturating_sub(g.at_ms);
            }
            if is_live {
                entry.status = Liveness::Up;
                entry.reason = None;
            } else {
                entry.status = Liveness::Down;
                entry.reason = Some("stopped answering (no gossip heartbeat)".into());
            }
            self.check_host_key(entry, pins.get(&nid));
        }
        out.insert(self.self_id, local.clone());
        out.into_values().collect()
    }

    /// The map in use.
    pub fn map(&self) -> ClusterMap {
        self.map.read().map(|m| m.clone()).unwrap_or_default()
    }

    /// The file the map is kept in.
    pub fn map_path(&self) -> &std::path::Path {
        &self.map_path
    }

    /// Takes `map` as the cluster map (`setpe -w`) without a restart: writes
    /// it to the map file (a new 0600 file renamed over the old, never
    /// through a link), uses it for names and seeds, and meets its nodes gossip does
    /// not know yet. A map must name this node (an empty one leaves the
    /// cluster to autodiscovery).
    pub async fn set_map(&self, map: ClusterMap) -> Result<(), SetMapError> {
        if !map.nodes.is_empty() && map.node(self.self_id).is_none() {
            return Err(SetMapError::Invalid(format!(
                "the new map leaves out this node ({}); give it an entry or use another node",
                self.self_id
            )));
        }
        let write_err = |source| SetMapError::Write {
            path: self.map_path.display().to_string(),
            source,
        };
        crate::store::replace_private_file(
            &self.map_path,
            map.to_text().as_bytes(),
            crate::store::Durability::Synced,
        )
        .map_err(write_err)?;
        if let Ok(mut m) = self.map.write() {
            *m = map.clone();
        }
        for n in map.nodes.iter().filter(|n| n.id != self.self_id) {
            self.meet(n.id, n.addr).await;
        }
        Ok(())
    }

    /// Gossips once with node `id` at `addr` if gossip knows no node at that
    /// address yet (one heard of by autodiscovery, or added to the map);
    /// chitchat keeps up with it from then on.
    pub async fn meet(&self, id: NodeId, addr: SocketAddr) {
        let known = self
            .handle
            .with_chitchat(|c| {
                c.node_states()
                    .keys()
                    .any(|n| n.gossip_advertise_addr == addr)
            })
            .await;
        if known {
            return;
        }
        tracing::info!(node = id, %addr, "meeting a node gossip does not know yet");
        if let Err(e) = self.handle.gossip(addr) {
            tracing::warn!(node = id, %addr, error = %e, "cannot gossip with a new node");
        }
    }

    /// Stops gossiping.
    pub async fn shutdown(self) {
        let _ = self.handle.shutdown().await;
    }
}

/// Whether two OpenSSH public key lines hold the same key (comments aside).
fn same_key(a: &str, b: &str) -> bool {
    if a == b {
        // The usual case: the pin is the line gossip announced.
        return true;
    }
    match (
        russh::keys::PublicKey::from_openssh(a),
        russh::keys::PublicKey::from_openssh(b),
    ) {
        (Ok(x), Ok(y)) => x.key_data() == y.key_data(),
        _ => a.trim() == b.trim(),
    }
}

/// The SHA256 fingerprint of an OpenSSH public key line (or the line's start).
fn fingerprint_of(line: &str) -> String {
    russh::keys::PublicKey::from_openssh(line)
        .map(|k| crate::keys::fingerprint(&k))
        .unwrap_or_else(|_| line.chars().take(24).collect())
}
