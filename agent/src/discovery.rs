//! Autodiscovery, as openMosix's `omdiscd` did it: every agent announces
//! itself on a multicast group (default [`DEFAULT_GROUP`], on the interface of
//! its own address) every [`ANNOUNCE_EVERY`], and listens there. An
//! announcement is sealed with the cluster secret like gossip (an HMAC over
//! the body and its send time), so only agents holding the cluster key are
//! heard. Hearing one from a node gossip does not know yet, the agent
//! gossips with it once ([`crate::cluster::ClusterView::meet`]); chitchat does the rest, both
//! ways. The map stays the static alternative (and names the seeds); a new
//! agent needs only the cluster key.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use hpc::model::NodeId;
use ring::hmac;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;

use crate::context::AgentContext;
use crate::gossip_transport::{ReplayWindow, STAMP_LEN, TAG_LEN, open_sealed, seal};

/// The default group and port: an administratively scoped group (RFC 2365),
/// one port above the agent's.
pub const DEFAULT_GROUP: SocketAddrV4 =
    SocketAddrV4::new(Ipv4Addr::new(239, 255, 46, 60), hpc::paths::AGENT_PORT + 1);
/// How often an agent announces itself.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(2);
/// Largest announcement read.
const MAX_ANNOUNCEMENT: usize = 2048;

/// What an agent announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// Its node id.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Where it gossips (and serves RPC).
    pub addr: SocketAddr,
}

/// How to discover.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Multicast group and port.
    pub group: SocketAddrV4,
    /// The interface to use, by its address.
    pub interface: Ipv4Addr,
    /// This agent's announcement.
    pub me: Announcement,
    /// The gossip secret (from the cluster key).
    pub secret: [u8; 32],
    /// How far an announcement's send time may be from this node's clock.
    pub window: ReplayWindow,
}

/// The sockets: one joined to the group (receiving), one sending from the
/// interface.
fn sockets(cfg: &DiscoveryConfig) -> std::io::Result<(UdpSocket, UdpSocket)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let rx = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    rx.set_reuse_address(true)?;
    rx.set_reuse_port(true)?;
    rx.bind(&SocketAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.group.port())).into())?;
    rx.join_multicast_v4(cfg.group.ip(), &cfg.interface)?;
    rx.set_nonblocking(true)?;
    let tx = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    tx.set_multicast_if_v4(&cfg.interface)?;
    tx.set_multicast_ttl_v4(1)?;
    tx.set_multicast_loop_v4(true)?;
    tx.bind(&SocketAddr::from(SocketAddrV4::new(cfg.interface, 0)).into())?;
    tx.set_nonblocking(true)?;
    Ok((
        UdpSocket::from_std(std::net::UdpSocket::from(rx))?,
        UdpSocket::from_std(std::net::UdpSocket::from(tx))?,
    ))
}

/// Announces and listens until the agent stops; logs and gives up if the
/// group cannot be joined (the map still works).
pub async fn run(cfg: DiscoveryConfig, ctx: Arc<AgentContext>) {
    let (rx, tx) = match sockets(&cfg) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(group = %cfg.group, interface = %cfg.interface, error = %e,
                "autodiscovery is off: cannot use the multicast group (the cluster map still works)");
            return;
        }
    };
    tracing::info!(group = %cfg.group, interface = %cfg.interface, "autodiscovery: announcing and listening");
    let key = hmac::Key::new(hmac::HMAC_SHA256, &cfg.secret);
    let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
    let mut counter = 0u64;
    let mut buf = vec![0u8; MAX_ANNOUNCEMENT + STAMP_LEN + TAG_LEN];
    let mut conflict_told = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                counter = counter.wrapping_add(1);
                if let Some(d) = sealed(&key, &cfg.me, counter)
                    && let Err(e) = tx.send_to(&d, SocketAddr::V4(cfg.group)).await
                {
                    tracing::debug!(error = %e, "autodiscovery: cannot announce");
                }
            }
            got = rx.recv_from(&mut buf) => {
                let Ok((n, from)) = got else { continue };
                let Some(a) = buf.get(..n).and_then(|d| heard(&key, d, cfg.window)) else {
                    tracing::debug!(%from, "autodiscovery: dropped an announcement that is not the cluster's");
                    continue;
                };
                if a.addr == cfg.me.addr {
                    continue;
                }
                if a.id == cfg.me.id {
                    if !conflict_told {
                        tracing::error!(id = a.id, other = %a.addr, "autodiscovery: another agent announces this node's id; give one of them another --node-id");
                        conflict_told = true;
                    }
                    continue;
                }
                ctx.cluster.meet(a.id, a.addr).await;
            }
        }
    }
}

/// An announcement, sealed.
fn sealed(key: &hmac::Key, me: &Announcement, counter: u64) -> Option<Vec<u8>> {
    let mut d = serde_json::to_vec(me).ok()?;
    if d.len() > MAX_ANNOUNCEMENT {
        return None;
    }
    let len = d.len();
    d.resize(len + STAMP_LEN + TAG_LEN, 0);
    let total = seal(key, &mut d, len, counter, hpc::clock::now_ms())?;
    d.truncate(total);
    Some(d)
}

/// The announcement in a datagram, if the cluster sealed it in time.
fn heard(key: &hmac::Key, d: &[u8], window: ReplayWindow) -> Option<Announcement> {
    let (len, _, _) = open_sealed(key, d, hpc::clock::now_ms(), window).ok()?;
    serde_json::from_slice(d.get(..len)?).ok()
}

/// The node id an agent with no map entry takes: the last octet of its IPv4
/// address (as openMosix's autodiscovery numbered nodes), if 1 to 254.
pub fn id_from_address(ip: std::net::IpAddr) -> Option<NodeId> {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [_, _, _, last] = v4.octets();
            (1..=254).contains(&last).then_some(NodeId::from(last))
        }
        std::net::IpAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_open_only_with_the_cluster_secret_and_in_time() {
        let me = Announcement {
            id: 3,
            name: "node3".into(),
            addr: "10.0.0.3:4660".parse().unwrap(),
        };
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]);
        let d = sealed(&key, &me, 1).unwrap();
        let window = ReplayWindow(Duration::from_secs(60));
        assert_eq!(heard(&key, &d, window), Some(me));
        let other = hmac::Key::new(hmac::HMAC_SHA256, &[8; 32]);
        assert_eq!(heard(&other, &d, window), None);
        let mut bad = d.clone();
        bad[2] ^= 1;
        assert_eq!(heard(&key, &bad, window), None);
        assert_eq!(heard(&key, &d[..10], window), None);
    }

    #[test]
    fn ids_come_from_the_last_octet() {
        assert_eq!(id_from_address("10.77.0.3".parse().unwrap()), Some(3));
        assert_eq!(id_from_address("10.77.0.0".parse().unwrap()), None);
        assert_eq!(id_from_address("::1".parse().unwrap()), None);
    }
}
