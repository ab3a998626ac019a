//! chitchat transport over UDP where every datagram carries an HMAC-SHA256 tag
//! keyed with the cluster secret: datagrams from outside the cluster (forged
//! load figures, injected members) are dropped before chitchat sees them.
//!
//! chitchat keeps its wire encoding private, so encoding stays with chitchat's
//! own UDP socket, bound to an ephemeral loopback port. An outgoing datagram is
//! sent by it to a loopback relay socket of ours, tagged, and sent to the peer
//! from the public gossip socket. An incoming datagram is verified first and
//! only then handed to chitchat's socket through a second relay; the peer's
//! real address is restored on the way out. Loopback UDP keeps order, so a
//! FIFO of sender addresses pairs each relayed datagram with its origin.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket as ChitchatUdp};
use ring::hmac;
use tokio::net::UdpSocket;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_507;
/// Length of the HMAC-SHA256 tag appended to each datagram.
pub const TAG_LEN: usize = 32;

/// UDP transport authenticated with the cluster secret.
pub struct AuthenticatedUdp {
    key: hmac::Key,
}

impl AuthenticatedUdp {
    /// A transport keyed with `secret`.
    pub fn new(secret: &[u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
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
        let in_relay = loopback().await?;
        Ok(Box::new(AuthenticatedSocket {
            public,
            inner,
            inner_addr,
            out_relay_addr: out_relay.local_addr()?,
            out_relay,
            in_relay,
            pending_from: VecDeque::new(),
            key: self.key.clone(),
            buf: vec![0u8; MAX_DATAGRAM + TAG_LEN].into_boxed_slice(),
            last_warning: None,
        }))
    }
}

struct AuthenticatedSocket {
    public: UdpSocket,
    inner: ChitchatUdp,
    inner_addr: SocketAddr,
    out_relay: UdpSocket,
    out_relay_addr: SocketAddr,
    in_relay: UdpSocket,
    pending_from: VecDeque<SocketAddr>,
    key: hmac::Key,
    buf: Box<[u8]>,
    last_warning: Option<Instant>,
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
}

fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
    )
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
        while self.out_relay.try_recv_from(&mut self.buf).is_ok() {}
        self.inner.send(self.out_relay_addr, envelope).await?;
        let n = loop {
            let (n, from) = self
                .out_relay
                .recv_from(&mut self.buf[..MAX_DATAGRAM])
                .await?;
            if from == self.inner_addr {
                break n;
            }
        };
        if n + TAG_LEN > MAX_DATAGRAM {
            tracing::warn!(bytes = n, "gossip message too large, not sent");
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        let Some(body) = self.buf.get(..n) else {
            return Ok(SendOutcome { num_bytes_sent: 0 });
        };
        let tag = hmac::sign(&self.key, body);
        let Some(tag_slot) = self.buf.get_mut(n..n + TAG_LEN) else {
            return Ok(SendOutcome { num_bytes_sent: 0 });
        };
        tag_slot.copy_from_slice(tag.as_ref());
        let datagram = self.buf.get(..n + TAG_LEN).unwrap_or_default();
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
            if !self.pending_from.is_empty() {
                let mut out = self.inner.recv().await?;
                if let Some(from) = self.pending_from.pop_front() {
                    out.from_addr = from;
                }
                return Ok(out);
            }
            let (n, from) = match self.public.recv_from(&mut self.buf).await {
                Ok(r) => r,
                Err(e) if transient(&e) => continue,
                Err(e) => return Err(anyhow::anyhow!("gossip socket failed: {e}")),
            };
            let Some(body_len) = n.checked_sub(TAG_LEN) else {
                self.warn_rejected(from, "too short to carry a tag");
                continue;
            };
            let datagram = self.buf.get(..n).unwrap_or_default();
            let (body, tag) = datagram.split_at(body_len.min(datagram.len()));
            if hmac::verify(&self.key, body, tag).is_err() {
                self.warn_rejected(from, "not signed with this cluster's key");
                continue;
            }
            self.in_relay.send_to(body, self.inner_addr).await?;
            self.pending_from.push_back(from);
        }
    }
}
