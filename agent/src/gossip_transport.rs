//! chitchat transport over UDP where every datagram carries an HMAC-SHA256 tag
//! keyed with the cluster secret, over the body, a per-sender counter and the
//! send time: datagrams from outside the cluster (forged load figures, injected
//! members) and replays of genuine ones are dropped before chitchat sees them.
//!
//! ```text
//! datagram = body | counter (8 bytes, BE) | sent_ms (8 bytes, BE) | HMAC-SHA256(key, all before)
//! ```
//!
//! A datagram is accepted once, and only within [`ReplayWindow`] of its send
//! time (the nodes' clocks must agree within it: run NTP).
//!
//! chitchat keeps its wire encoding private, so encoding stays with chitchat's
//! own UDP socket, bound to an ephemeral loopback port. An outgoing datagram is
//! sent by it to a loopback relay socket of ours (connected to chitchat's
//! socket, so the kernel drops anything else sent to it), tagged, and sent to
//! the peer from the public gossip socket. An incoming datagram is verified
//! first and only then handed to chitchat's socket, from a loopback socket of
//! ours kept for that peer (also connected to chitchat's socket). chitchat's
//! socket itself cannot be connected, so whatever it receives from an address
//! that is not one of those relay sockets is dropped here, before chitchat
//! acts on it: a local user who finds the ephemeral port cannot speak gossip.
//! The relay socket a datagram came from names its real sender.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket as ChitchatUdp};
use hpc::protocol::GossipStats;
use ring::hmac;
use tokio::net::UdpSocket;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_507;
/// Length of the HMAC-SHA256 tag appended to each datagram.
pub const TAG_LEN: usize = 32;
/// Length of the counter and the send time before the tag.
pub const STAMP_LEN: usize = 16;
/// Most peers with a relay socket of their own; beyond, the oldest is reused.
const MAX_PEERS: usize = 4096;
/// Most datagram tags remembered against replay within the window.
const MAX_REMEMBERED: usize = 1 << 20;

/// How far a datagram's send time may be from the receiver's clock.
#[derive(Debug, Clone, Copy)]
pub struct ReplayWindow(pub Duration);

impl Default for ReplayWindow {
    fn default() -> Self {
        Self(Duration::from_secs(60))
    }
}

/// Counters of what the transport accepted and dropped, shared with the RPC.
#[derive(Debug, Default)]
pub struct GossipCounters {
    accepted: AtomicU64,
    bad_tag: AtomicU64,
    replayed: AtomicU64,
    stale: AtomicU64,
    foreign: AtomicU64,
    /// Counted by the membership view, not the transport.
    pub host_key_mismatch: AtomicU64,
}

impl GossipCounters {
    /// The counters now.
    pub fn snapshot(&self) -> GossipStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GossipStats {
            accepted: get(&self.accepted),
            bad_tag: get(&self.bad_tag),
            replayed: get(&self.replayed),
            stale: get(&self.stale),
            foreign: get(&self.foreign),
            host_key_mismatch: get(&self.host_key_mismatch),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// UDP transport authenticated with the cluster secret.
pub struct AuthenticatedUdp {
    key: hmac::Key,
    window: ReplayWindow,
    counters: Arc<GossipCounters>,
}

impl AuthenticatedUdp {
    /// A transport keyed with `secret`, counting into `counters`.
    pub fn new(secret: &[u8; 32], window: ReplayWindow, counters: Arc<GossipCounters>) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            window,
            counters,
        }
    }
}

async fn loopback() -> std::io::Result<UdpSocket> {
    UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
}

#[async_trait]
impl Transport for AuthenticatedUdp {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let public = UdpSocket::bind(listen_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind gossip socket {listen_addr}/udp: {e}"))?;
        let inner = ChitchatUdp::open(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let inner_addr = inner.local_addr()?;
        let out_relay = loopback().await?;
        out_relay.connect(inner_addr).await?;
        Ok(Box::new(AuthenticatedSocket {
            public,
            inner,
            inner_addr,
            out_relay_addr: out_relay.local_addr()?,
            out_relay,
            relays: Relays::default(),
            key: self.key.clone(),
            window: self.window,
            seen: Seen::default(),
            counters: self.counters.clone(),
            counter: rand::random::<u64>() >> 1,
            buf: vec![0u8; MAX_DATAGRAM + STAMP_LEN + TAG_LEN].into_boxed_slice(),
            last_warning: None,
        }))
    }
}

/// One loopback socket per verified peer, connected to chitchat's socket.
#[derive(Default)]
struct Relays {
    by_peer: HashMap<SocketAddr, (UdpSocket, SocketAddr)>,
    peer_of: HashMap<SocketAddr, SocketAddr>,
    order: VecDeque<SocketAddr>,
}

impl Relays {
    async fn for_peer(
        &mut self,
        peer: SocketAddr,
        inner: SocketAddr,
    ) -> std::io::Result<&UdpSocket> {
        if !self.by_peer.contains_key(&peer) {
            if self.by_peer.len() >= MAX_PEERS
                && let Some(old) = self.order.pop_front()
                && let Some((_, local)) = self.by_peer.remove(&old)
            {
                self.peer_of.remove(&local);
            }
            let s = loopback().await?;
            s.connect(inner).await?;
            let local = s.local_addr()?;
            self.peer_of.insert(local, peer);
            self.order.push_back(peer);
            self.by_peer.insert(peer, (s, local));
        }
        self.by_peer
            .get(&peer)
            .map(|(s, _)| s)
            .ok_or_else(|| std::io::Error::other("relay socket vanished"))
    }
}

/// Tags of accepted datagrams still inside the replay window.
#[derive(Default)]
struct Seen {
    tags: HashSet<[u8; TAG_LEN]>,
    by_time: VecDeque<(u64, [u8; TAG_LEN])>,
}

impl Seen {
    /// Forgets tags sent before `oldest_ms`; they are refused as stale anyway.
    fn expire(&mut self, oldest_ms: u64) {
        while let Some((t, tag)) = self.by_time.front() {
            if *t >= oldest_ms && self.by_time.len() < MAX_REMEMBERED {
                break;
            }
            self.tags.remove(tag);
            self.by_time.pop_front();
        }
    }

    /// Records a tag; false when it was seen before.
    fn first_time(&mut self, sent_ms: u64, tag: [u8; TAG_LEN]) -> bool {
        if !self.tags.insert(tag) {
            return false;
        }
        self.by_time.push_back((sent_ms, tag));
        true
    }
}

struct AuthenticatedSocket {
    public: UdpSocket,
    inner: ChitchatUdp,
    inner_addr: SocketAddr,
    out_relay: UdpSocket,
    out_relay_addr: SocketAddr,
    relays: Relays,
    key: hmac::Key,
    window: ReplayWindow,
    seen: Seen,
    counters: Arc<GossipCounters>,
    counter: u64,
    buf: Box<[u8]>,
    last_warning: Option<Instant>,
}

/// Why an incoming datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No valid tag.
    BadTag,
    /// Seen before.
    Replayed,
    /// Outside the replay window.
    Stale,
}

impl AuthenticatedSocket {
    fn warn_rejected(&mut self, from: SocketAddr, why: &str) {
        let muted = self
            .last_warning
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10));
        if !muted {
            tracing::warn!(%from, "dropped gossip datagram: {why} (further drops muted for 10 s)");
            self.last_warning = Some(Instant::now());
        }
    }

    fn count(&self, r: Rejection) {
        bump(match r {
            Rejection::BadTag => &self.counters.bad_tag,
            Rejection::Replayed => &self.counters.replayed,
            Rejection::Stale => &self.counters.stale,
        });
    }
}

/// What one wait in [`AuthenticatedSocket::recv`] produced.
enum Incoming {
    /// chitchat's own socket decoded a datagram.
    Inner(RecvOutcome),
    /// A datagram reached the public socket.
    Public(std::io::Result<(usize, SocketAddr)>),
}

fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
    )
}

/// Appends the counter, the send time and the tag to the `len` body bytes of
/// `buf`; returns the datagram's length, or `None` if it would not fit.
pub fn seal(
    key: &hmac::Key,
    buf: &mut [u8],
    len: usize,
    counter: u64,
    now_ms: u64,
) -> Option<usize> {
    let stamped = len.checked_add(STAMP_LEN)?;
    let total = stamped.checked_add(TAG_LEN)?;
    if total > MAX_DATAGRAM {
        return None;
    }
    buf.get_mut(len..len + 8)?
        .copy_from_slice(&counter.to_be_bytes());
    buf.get_mut(len + 8..stamped)?
        .copy_from_slice(&now_ms.to_be_bytes());
    let tag = hmac::sign(key, buf.get(..stamped)?);
    buf.get_mut(stamped..total)?.copy_from_slice(tag.as_ref());
    Some(total)
}

/// Checks a datagram's tag and time; returns the body's length and the tag.
pub fn open_sealed(
    key: &hmac::Key,
    datagram: &[u8],
    now_ms: u64,
    window: ReplayWindow,
) -> Result<(usize, u64, [u8; TAG_LEN]), Rejection> {
    let stamped = datagram
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(Rejection::BadTag)?;
    let body_len = stamped.checked_sub(STAMP_LEN).ok_or(Rejection::BadTag)?;
    let (signed, tag) = datagram.split_at(stamped);
    hmac::verify(key, signed, tag).map_err(|_| Rejection::BadTag)?;
    let mut sent = [0u8; 8];
    sent.copy_from_slice(signed.get(body_len + 8..stamped).ok_or(Rejection::BadTag)?);
    let sent_ms = u64::from_be_bytes(sent);
    let window_ms = window.0.as_millis() as u64;
    if sent_ms.abs_diff(now_ms) > window_ms {
        return Err(Rejection::Stale);
    }
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(tag);
    Ok((body_len, sent_ms, t))
}

#[async_trait]
impl Socket for AuthenticatedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.public.local_addr()?)
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        // Drop anything left over by a cancelled send, so bytes never go to the wrong peer.
        while self.out_relay.try_recv(&mut self.buf).is_ok() {}
        self.inner.send(self.out_relay_addr, envelope).await?;
        let n = self
            .out_relay
            .recv(self.buf.get_mut(..MAX_DATAGRAM).unwrap_or_default())
            .await?;
        self.counter = self.counter.wrapping_add(1);
        let Some(total) = seal(
            &self.key,
            &mut self.buf,
            n,
            self.counter,
            hpc::clock::now_ms(),
        ) else {
            tracing::warn!(bytes = n, "gossip message too large, not sent");
            return Ok(SendOutcome { num_bytes_sent: 0 });
        };
        let datagram = self.buf.get(..total).unwrap_or_default();
        match self.public.send_to(datagram, to).await {
            Ok(sent) => Ok(SendOutcome {
                num_bytes_sent: sent,
            }),
            Err(e) => {
                // A peer that is down is not a broken transport.
                if !transient(&e) {
                    tracing::debug!(%to, error = %e, "gossip send failed");
                }
                Ok(SendOutcome { num_bytes_sent: 0 })
            }
        }
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let Self {
                public, inner, buf, ..
            } = self;
            let incoming = tokio::select! {
                biased;
                out = inner.recv() => Incoming::Inner(out?),
                r = public.recv_from(buf) => Incoming::Public(r),
            };
            let (n, from) = match incoming {
                // At chitchat's socket: relayed by us, or sent by a stranger.
                Incoming::Inner(mut out) => match self.relays.peer_of.get(&out.from_addr) {
                    Some(peer) => {
                        out.from_addr = *peer;
                        bump(&self.counters.accepted);
                        return Ok(out);
                    }
                    None => {
                        bump(&self.counters.foreign);
                        let from = out.from_addr;
                        self.warn_rejected(
                            from,
                            "sent to the agent's internal gossip socket from outside the agent",
                        );
                        continue;
                    }
                },
                Incoming::Public(Ok(r)) => r,
                Incoming::Public(Err(e)) if transient(&e) => continue,
                Incoming::Public(Err(e)) => {
                    return Err(anyhow::anyhow!("gossip socket failed: {e}"));
                }
            };
            let now = hpc::clock::now_ms();
            let datagram = self.buf.get(..n).unwrap_or_default();
            let checked =
                open_sealed(&self.key, datagram, now, self.window).and_then(|(len, sent, tag)| {
                    self.seen
                        .expire(now.saturating_sub(self.window.0.as_millis() as u64));
                    if self.seen.first_time(sent, tag) {
                        Ok(len)
                    } else {
                        Err(Rejection::Replayed)
                    }
                });
            let body_len = match checked {
                Ok(len) => len,
                Err(r) => {
                    self.count(r);
                    let why = match r {
                        Rejection::BadTag => "not signed with this cluster's key",
                        Rejection::Replayed => "a replay of a datagram already received",
                        Rejection::Stale => {
                            "sent outside the replay window (an old datagram, or clocks that disagree: run NTP)"
                        }
                    };
                    self.warn_rejected(from, why);
                    continue;
                }
            };
            let relay = self.relays.for_peer(from, self.inner_addr).await?;
            let body = self.buf.get(..body_len).unwrap_or_default();
            relay.send(body).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_datagrams_open_once_and_only_in_time() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]);
        let other = hmac::Key::new(hmac::HMAC_SHA256, &[8u8; 32]);
        let w = ReplayWindow(Duration::from_secs(60));
        let mut buf = vec![0u8; 128];
        buf[..5].copy_from_slice(b"hello");
        let n = seal(&key, &mut buf, 5, 1, 1_000_000).unwrap();
        let d = &buf[..n];
        let (len, sent, tag) = open_sealed(&key, d, 1_000_500, w).unwrap();
        assert_eq!((len, sent), (5, 1_000_000));
        assert_eq!(
            open_sealed(&other, d, 1_000_500, w).unwrap_err(),
            Rejection::BadTag
        );
        assert_eq!(
            open_sealed(&key, d, 1_070_000, w).unwrap_err(),
            Rejection::Stale
        );
        let mut flipped = d.to_vec();
        flipped[n - STAMP_LEN - TAG_LEN + 9] ^= 1; // the send time
        assert_eq!(
            open_sealed(&key, &flipped, 1_000_500, w).unwrap_err(),
            Rejection::BadTag
        );
        let mut seen = Seen::default();
        assert!(seen.first_time(sent, tag));
        assert!(!seen.first_time(sent, tag));
        seen.expire(sent + 1);
        assert!(
            seen.first_time(sent, tag),
            "forgotten once outside the window"
        );
        assert_eq!(
            open_sealed(&key, &d[..10], 1_000_500, w).unwrap_err(),
            Rejection::BadTag
        );
    }
}
