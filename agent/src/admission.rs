//! Who may start an SSH session, and how many may run: the agent's answer to
//! OpenSSH's `MaxStartups` and `PerSourceMaxStartups`, made fair so that a
//! flood of unauthenticated connections cannot keep anyone else out.
//!
//! - **Per source address**, new connections are rate-limited (a token
//!   bucket) and at most [`AdmissionLimits::per_source`] may wait for
//!   authentication; a further one from that address closes that address's
//!   oldest waiting connection (early drop).
//! - **In all**, at most [`AdmissionLimits::waiting`] connections may wait;
//!   when full, a newcomer closes the oldest waiting connection of the address
//!   holding the most, unless its own address already holds as many (then the
//!   newcomer is refused). So an address with few waiting connections (an
//!   admin, another agent) always gets in, however many others flood.
//! - **Authenticated sessions** are capped at [`SessionSlots`]' limit, of which
//!   the last [`AdmissionLimits::cluster_reserved`] slots are kept for the
//!   cluster key: users and admins can never take every slot from the agents.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hpc::model::Role;
use tokio::task::AbortHandle;

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    /// Most connections waiting for authentication, in all.
    pub waiting: usize,
    /// Most connections waiting for authentication from one address.
    pub per_source: usize,
    /// New connections per second one address may open (sustained).
    pub per_source_rate: f64,
    /// New connections one address may open at once (bucket size).
    pub per_source_burst: f64,
    /// Most authenticated sessions.
    pub sessions: usize,
    /// Of those, how many only the cluster key may take.
    pub cluster_reserved: usize,
    /// Most open channels in one session.
    pub channels: usize,
    /// Time from connecting to finishing authentication.
    pub login_grace: Duration,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            waiting: 256,
            per_source: 8,
            per_source_rate: 50.0,
            per_source_burst: 100.0,
            sessions: 256,
            cluster_reserved: 32,
            channels: 16,
            login_grace: Duration::from_secs(20),
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address opened connections faster than its rate allows.
    Rate,
    /// Every waiting slot is taken, and its address already holds the most.
    Full,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Rate => "too many new connections from this address",
            Refusal::Full => "too many unauthenticated connections",
        })
    }
}

struct Waiting {
    id: u64,
    abort: AbortHandle,
}

#[derive(Default)]
struct Source {
    waiting: VecDeque<Waiting>,
    tokens: f64,
    refilled: Option<Instant>,
}

#[derive(Default)]
struct Registry {
    sources: HashMap<IpAddr, Source>,
    waiting: usize,
    next_id: u64,
}

impl Registry {
    fn evict_oldest(&mut self, ip: IpAddr) -> bool {
        let Some(src) = self.sources.get_mut(&ip) else {
            return false;
        };
        let Some(w) = src.waiting.pop_front() else {
            return false;
        };
        w.abort.abort();
        self.waiting = self.waiting.saturating_sub(1);
        tracing::info!(peer = %ip, "closed the oldest unauthenticated connection of this address to admit a newer one");
        true
    }

    /// The address holding the most waiting connections, and how many.
    fn heaviest(&self) -> Option<(IpAddr, usize)> {
        self.sources
            .iter()
            .map(|(ip, s)| (*ip, s.waiting.len()))
            .max_by_key(|(_, n)| *n)
    }
}

/// Connections waiting for authentication, by source address.
pub struct Startups {
    limits: AdmissionLimits,
    registry: Mutex<Registry>,
}

/// A waiting connection's place; give it back with [`Startups::leave`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    ip: IpAddr,
    id: u64,
}

impl Startups {
    /// An empty registry.
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            limits,
            registry: Mutex::new(Registry::default()),
        }
    }

    /// Admits the connection whose session task is `abort` from `ip`,
    /// closing another waiting connection if that makes room (see the module
    /// documentation), or refuses it.
    pub fn admit(&self, ip: IpAddr, abort: AbortHandle) -> Result<Ticket, Refusal> {
        let now = Instant::now();
        let mut r = match self.registry.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        let limits = self.limits;
        let src = r.sources.entry(ip).or_default();
        let elapsed = src
            .refilled
            .map_or(f64::MAX, |t| now.duration_since(t).as_secs_f64());
        src.tokens = (src.tokens + elapsed * limits.per_source_rate).min(limits.per_source_burst);
        src.refilled = Some(now);
        if src.tokens < 1.0 {
            return Err(Refusal::Rate);
        }
        src.tokens -= 1.0;
        let mine = src.waiting.len();
        if mine >= limits.per_source {
            r.evict_oldest(ip);
        } else if r.waiting >= limits.waiting {
            match r.heaviest() {
                Some((heavy, n)) if n > mine + 1 => {
                    r.evict_oldest(heavy);
                }
                _ => return Err(Refusal::Full),
            }
        }
        r.next_id += 1;
        let id = r.next_id;
        r.sources
            .entry(ip)
            .or_default()
            .waiting
            .push_back(Waiting { id, abort });
        r.waiting += 1;
        Ok(Ticket { ip, id })
    }

    /// The connection authenticated or ended: it no longer waits.
    pub fn leave(&self, t: Ticket) {
        let mut r = match self.registry.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        let Some(src) = r.sources.get_mut(&t.ip) else {
            return;
        };
        let before = src.waiting.len();
        src.waiting.retain(|w| w.id != t.id);
        let left = before - src.waiting.len();
        let idle = src.waiting.is_empty()
            && src.refilled.is_none_or(|at| {
                at.elapsed().as_secs_f64() * self.limits.per_source_rate
                    >= self.limits.per_source_burst
            });
        if idle {
            r.sources.remove(&t.ip);
        }
        r.waiting = r.waiting.saturating_sub(left);
    }

    /// How many connections wait now.
    pub fn waiting(&self) -> usize {
        self.registry.lock().map(|r| r.waiting).unwrap_or(0)
    }
}

/// Authenticated sessions, with slots kept for the cluster key.
pub struct SessionSlots {
    limit: usize,
    reserved: usize,
    used: AtomicUsize,
}

/// One authenticated session's slot, given back when dropped.
pub struct Slot(Arc<SessionSlots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SessionSlots {
    /// `limit` sessions, the last `reserved` for the cluster key.
    pub fn new(limit: usize, reserved: usize) -> Self {
        Self {
            limit,
            reserved: reserved.min(limit.saturating_sub(1)),
            used: AtomicUsize::new(0),
        }
    }

    /// A slot for a session of `role`, if one is free for it.
    pub fn take(self: &Arc<Self>, role: Role) -> Option<Slot> {
        let cap = if role == Role::Cluster {
            self.limit
        } else {
            self.limit - self.reserved
        };
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> AbortHandle {
        tokio::spawn(std::future::pending::<()>()).abort_handle()
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[tokio::test]
    async fn one_flooding_address_cannot_keep_another_out() {
        let limits = AdmissionLimits {
            waiting: 16,
            per_source: 4,
            per_source_rate: 1000.0,
            per_source_burst: 1000.0,
            ..Default::default()
        };
        let s = Startups::new(limits);
        let mut flood = Vec::new();
        for _ in 0..10 {
            let h = task();
            flood.push(h.clone());
            s.admit(ip(2), h).unwrap();
        }
        assert_eq!(
            s.waiting(),
            4,
            "an address keeps at most per_source waiting"
        );
        assert_eq!(flood.iter().filter(|h| h.is_finished()).count(), 0);
        tokio::task::yield_now().await;
        assert_eq!(
            flood.iter().filter(|h| h.is_finished()).count(),
            6,
            "the oldest were closed"
        );
        s.admit(ip(1), task()).unwrap();
        assert_eq!(s.waiting(), 5);
    }

    #[tokio::test]
    async fn a_full_registry_makes_room_from_the_heaviest_address() {
        let limits = AdmissionLimits {
            waiting: 8,
            per_source: 8,
            per_source_rate: 1000.0,
            per_source_burst: 1000.0,
            ..Default::default()
        };
        let s = Startups::new(limits);
        for _ in 0..6 {
            s.admit(ip(2), task()).unwrap();
        }
        for _ in 0..2 {
            s.admit(ip(3), task()).unwrap();
        }
        // Full: a newcomer from a quiet address takes a slot of the heaviest.
        let t = s.admit(ip(1), task()).unwrap();
        assert_eq!(s.waiting(), 8);
        // The heaviest itself is refused rather than evicting others.
        assert_eq!(s.admit(ip(2), task()).unwrap_err(), Refusal::Full);
        s.leave(t);
        assert_eq!(s.waiting(), 7);
    }

    #[tokio::test]
    async fn new_connections_are_rate_limited_per_address() {
        let limits = AdmissionLimits {
            per_source_rate: 1.0,
            per_source_burst: 3.0,
            ..Default::default()
        };
        let s = Startups::new(limits);
        for _ in 0..3 {
            let t = s.admit(ip(2), task()).unwrap();
            s.leave(t);
        }
        assert_eq!(s.admit(ip(2), task()).unwrap_err(), Refusal::Rate);
        assert!(
            s.admit(ip(1), task()).is_ok(),
            "other addresses are not affected"
        );
    }

    #[test]
    fn the_cluster_key_keeps_its_reserved_slots() {
        let slots = Arc::new(SessionSlots::new(4, 2));
        let a = slots.take(Role::Admin).unwrap();
        let _b = slots.take(Role::User).unwrap();
        assert!(
            slots.take(Role::Admin).is_none(),
            "two slots are the cluster's"
        );
        let _c = slots.take(Role::Cluster).unwrap();
        let _d = slots.take(Role::Cluster).unwrap();
        assert!(slots.take(Role::Cluster).is_none());
        drop(a);
        assert!(slots.take(Role::Cluster).is_some());
    }
}
