//! Connections to agents: one shared RPC client per node, opened on first use,
//! verified against known_hosts (the first node) or against the host key the
//! cluster's authenticated gossip announces (every other node).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hpc::client::{Client, ClientConfig, ClientError, Identity};
use hpc::model::{NodeId, NodeStatus, Role};
use hpc::protocol::{NoParams, WhoAmI, methods};
use russh::keys::PublicKey;

use super::{Event, LinkState};

/// How the app authenticates and checks agents.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// Private key file; `None` = ssh-agent, then `~/.ssh/id_*`.
    pub key: Option<PathBuf>,
    /// known_hosts file.
    pub known_hosts: PathBuf,
    /// Limit for connecting to one agent.
    pub connect_timeout: Duration,
}

impl LinkSettings {
    /// The client configuration for `addr`, pinned to `host_key` when given.
    pub fn client_config(&self, host_key: Option<&PublicKey>, tofu: bool) -> ClientConfig {
        let mut c = ClientConfig::from_env();
        if let Some(k) = &self.key {
            c.identity = Identity::KeyFile(k.clone());
        }
        c.known_hosts = self.known_hosts.clone();
        c.connect_timeout = self.connect_timeout;
        c.pinned_host_key = host_key.cloned();
        c.trust_on_first_use = tofu;
        c
    }
}

/// The link state a connection error means.
pub fn link_state(e: &ClientError) -> LinkState {
    match e {
        ClientError::AuthRefused { .. } | ClientError::Key { .. } => {
            LinkState::Unauthorised(e.to_string())
        }
        ClientError::HostKeyChanged { .. } | ClientError::HostKeyUnknown { .. } => {
            LinkState::HostKey(e.to_string())
        }
        _ => LinkState::Unreachable(e.to_string()),
    }
}

#[derive(Default)]
struct Slot {
    client: Option<Arc<Client>>,
}

/// Where each node is and how to check it.
#[derive(Debug, Clone)]
struct Address {
    addr: String,
    host_key: Option<PublicKey>,
}

/// One shared client per node.
pub struct LinkPool {
    settings: LinkSettings,
    addrs: Mutex<HashMap<NodeId, Address>>,
    slots: Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<Slot>>>>,
    trusted: Mutex<HashSet<String>>,
    prompted: Mutex<HashSet<String>>,
    events: super::backend::EventSink,
}

impl LinkPool {
    /// A pool that reports link changes to `events`.
    pub fn new(settings: LinkSettings, events: super::backend::EventSink) -> Self {
        Self {
            settings,
            addrs: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
            trusted: Mutex::new(HashSet::new()),
            prompted: Mutex::new(HashSet::new()),
            events,
        }
    }

    /// Learns the nodes' addresses and gossiped host keys.
    pub fn learn(&self, nodes: &[NodeStatus]) {
        let Ok(mut addrs) = self.addrs.lock() else {
            return;
        };
        for n in nodes {
            let host_key = PublicKey::from_openssh(n.host_key.trim()).ok();
            addrs.insert(
                n.id,
                Address {
                    addr: n.addr.clone(),
                    host_key,
                },
            );
        }
    }

    /// The addresses of every known node (for finding the cluster again).
    pub fn known_addrs(&self) -> Vec<String> {
        self.addrs
            .lock()
            .map(|a| a.values().map(|x| x.addr.clone()).collect())
            .unwrap_or_default()
    }

    /// The ids of every known node.
    pub fn known_nodes(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .addrs
            .lock()
            .map(|a| a.keys().copied().collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// The user confirmed the host key of `addr`.
    pub fn trust(&self, addr: &str) {
        if let Ok(mut t) = self.trusted.lock() {
            t.insert(addr.to_string());
        }
        if let Ok(mut p) = self.prompted.lock() {
            p.remove(addr);
        }
    }

    /// Connects to `addr` checked against known_hosts (or `host_key`); an
    /// unknown key is offered to the user once and refused until confirmed.
    pub async fn connect_addr(
        &self,
        addr: &str,
        host_key: Option<&PublicKey>,
    ) -> Result<Client, ClientError> {
        let tofu = self
            .trusted
            .lock()
            .map(|t| t.contains(addr))
            .unwrap_or(false);
        let config = self.settings.client_config(host_key, tofu);
        let result = Client::connect(addr, &config).await;
        if let Err(ClientError::HostKeyUnknown { fingerprint, .. }) = &result {
            let first = self
                .prompted
                .lock()
                .map(|mut p| p.insert(addr.to_string()))
                .unwrap_or(false);
            if first {
                self.events.send(Event::HostKeyUnknown {
                    addr: addr.to_string(),
                    fingerprint: fingerprint.clone(),
                });
            }
        }
        result
    }

    /// Opens a new, unshared connection to `node` (for subscriptions).
    pub async fn open(&self, node: NodeId) -> Result<Client, ClientError> {
        let address = self
            .addrs
            .lock()
            .ok()
            .and_then(|a| a.get(&node).cloned())
            .ok_or_else(|| ClientError::Unreachable {
                addr: format!("node {node}"),
                message: "the cluster does not list this node".into(),
            })?;
        self.connect_addr(&address.addr, address.host_key.as_ref())
            .await
    }

    /// The shared client of `node`, connecting if needed; reports the link state.
    pub async fn get(&self, node: NodeId) -> Result<Arc<Client>, ClientError> {
        let slot = {
            let Ok(mut slots) = self.slots.lock() else {
                return Err(ClientError::Closed);
            };
            slots.entry(node).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(c) = &slot.client
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        slot.client = None;
        match self.open(node).await {
            Ok(client) => {
                let role = client
                    .call::<_, WhoAmI>(methods::WHOAMI, NoParams {})
                    .await
                    .map(|w| w.role)
                    .unwrap_or(Role::Monitor);
                let client = Arc::new(client);
                slot.client = Some(client.clone());
                self.events.send(Event::Link {
                    node,
                    state: LinkState::Connected(role),
                });
                Ok(client)
            }
            Err(e) => {
                tracing::debug!(node, error = %e, "cannot connect");
                self.events.send(Event::Link {
                    node,
                    state: link_state(&e),
                });
                Err(e)
            }
        }
    }
}
