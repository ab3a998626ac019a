//! The agent's SSH server: public-key authentication only (roles from
//! `authorized_keys`, plus the cluster key), compression off, and one subsystem,
//! `openmosix`, whose channel is handed to [`crate::connection::serve`], plus
//! `openmosix-migrate` for other agents (cluster key) sending migration images.
//! Shells, exec requests and other subsystems are refused.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hpc::model::Role;
use russh::keys::PrivateKey;
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::admission::{AdmissionLimits, SessionSlots, Slot, Startups, Ticket};
use crate::context::AgentContext;
use crate::keys::fingerprint;
use crate::rpc::Caller;

/// Builds the russh configuration.
pub fn ssh_config(host_key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(Cow::Borrowed(concat!(
            "SSH-2.0-openmosixd_",
            env!("CARGO_PKG_VERSION")
        ))),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(500),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        keys: vec![host_key],
        preferred: hpc::client::preferred_algorithms(),
        // Large windows and packets: migration images stream through channels.
        window_size: hpc::client::WINDOW_SIZE,
        maximum_packet_size: hpc::client::MAX_PACKET,
        max_auth_attempts: 6,
        // Subscriptions may be quiet for long; dead peers are found by keepalives.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        ..Default::default()
    }
}

/// Accepts connections on `listener` until the task is dropped, admitting
/// them by [`AdmissionLimits`].
pub async fn run(
    listener: TcpListener,
    config: russh::server::Config,
    ctx: Arc<AgentContext>,
    limits: AdmissionLimits,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let startups = Arc::new(Startups::new(limits));
    let slots = Arc::new(SessionSlots::new(limits.sessions, limits.cluster_reserved));
    let mut last_refusal: Option<std::time::Instant> = None;
    loop {
        let (socket, peer) = crate::accept::next_connection("ssh port", || listener.accept()).await;
        let _ = socket.set_nodelay(true);
        let (admitted_tx, admitted) = oneshot::channel();
        let accepted = Accepted {
            config: config.clone(),
            ctx: ctx.clone(),
            startups: startups.clone(),
            slots: slots.clone(),
            limits,
            peer,
        };
        let task = tokio::spawn(accepted.serve(socket, admitted));
        match startups.admit(peer.ip(), task.abort_handle()) {
            Ok(ticket) => {
                let _ = admitted_tx.send(ticket);
            }
            Err(why) => {
                task.abort();
                let muted = last_refusal.is_some_and(|t| t.elapsed() < Duration::from_secs(10));
                if !muted {
                    tracing::warn!(%peer, waiting = startups.waiting(), "connection refused: {why} (further refusals muted for 10 s)");
                    last_refusal = Some(std::time::Instant::now());
                }
            }
        }
    }
}

/// An accepted connection, waiting to be admitted.
struct Accepted {
    config: Arc<russh::server::Config>,
    ctx: Arc<AgentContext>,
    startups: Arc<Startups>,
    slots: Arc<SessionSlots>,
    limits: AdmissionLimits,
    peer: SocketAddr,
}

impl Accepted {
    /// Runs one session once admitted; a client that has not authenticated
    /// when the login grace time ends is disconnected (the handshake itself is
    /// bounded by it too).
    async fn serve(self, socket: tokio::net::TcpStream, admitted: oneshot::Receiver<Ticket>) {
        let Ok(ticket) = admitted.await else {
            return;
        };
        let peer = self.peer;
        let startups = self.startups.clone();
        let authenticated = Arc::new(AtomicBool::new(false));
        let handler = SessionHandler {
            ctx: self.ctx,
            peer,
            caller: None,
            channels: HashMap::new(),
            live_channels: Arc::new(AtomicUsize::new(0)),
            max_channels: self.limits.channels,
            authenticated: authenticated.clone(),
            startups: self.startups,
            ticket,
            slots: self.slots,
            slot: None,
        };
        let deadline = tokio::time::Instant::now() + self.limits.login_grace;
        let run = russh::server::run_stream(self.config, socket, handler);
        let session = match tokio::time::timeout_at(deadline, run).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "ssh handshake failed");
                startups.leave(ticket);
                return;
            }
            Err(_) => {
                tracing::info!(%peer, "no ssh handshake within the login grace time; closed");
                startups.leave(ticket);
                return;
            }
        };
        let handle = session.handle();
        let watchdog = tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if !authenticated.load(Ordering::Acquire) {
                tracing::info!(%peer, "not authenticated within the login grace time; disconnecting");
                let _ = handle
                    .disconnect(
                        russh::Disconnect::ByApplication,
                        "login grace time over".into(),
                        String::new(),
                    )
                    .await;
            }
        });
        if let Err(e) = session.await {
            tracing::debug!(%peer, error = %e, "ssh session ended with an error");
        }
        watchdog.abort();
        startups.leave(ticket);
    }
}

/// Gives a channel's place back when its task ends.
struct ChannelGuard(Arc<AtomicUsize>);

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One SSH connection.
pub struct SessionHandler {
    ctx: Arc<AgentContext>,
    peer: SocketAddr,
    caller: Option<Caller>,
    /// Channels open but not yet serving a subsystem.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Channels open now, serving or not.
    live_channels: Arc<AtomicUsize>,
    max_channels: usize,
    authenticated: Arc<AtomicBool>,
    startups: Arc<Startups>,
    ticket: Ticket,
    slots: Arc<SessionSlots>,
    /// This session's place among the authenticated ones (none: over the limit).
    slot: Option<Slot>,
}

impl russh::server::Handler for SessionHandler {
    type Error = anyhow::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(match self.ctx.authorized.role_of(offer.public_key) {
            Some(_) => Auth::Accept,
            None => Auth::reject(),
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let Some(grant) = self.ctx.authorized.role_of(key.public_key) else {
            tracing::warn!(peer = %self.peer, user, key = %fingerprint(key.public_key), "refused unknown key");
            return Ok(Auth::reject());
        };
        let fp = fingerprint(key.public_key);
        if grant.role != Role::Cluster {
            tracing::info!(peer = %self.peer, user, key = %fp, role = %grant.role, uid = ?grant.uid, "authenticated");
        }
        self.slot = self.slots.take(grant.role);
        self.caller = Some(Caller {
            role: grant.role,
            key: fp,
            uid: grant.uid,
        });
        self.authenticated.store(true, Ordering::Release);
        self.startups.leave(self.ticket);
        Ok(Auth::Accept)
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        if self.slot.is_none() {
            let role = self.caller.as_ref().map(|c| c.role);
            tracing::warn!(peer = %self.peer, ?role, "too many sessions; disconnecting");
            session.disconnect(
                russh::Disconnect::TooManyConnections,
                "too many sessions on this agent; try again later",
                "",
            )?;
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.caller.is_none() || self.slot.is_none() {
            return Ok(()); // dropping the handle rejects the channel
        }
        let taken = self
            .live_channels
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_channels).then_some(n + 1)
            });
        if taken.is_err() {
            tracing::info!(peer = %self.peer, max = self.max_channels, "channel refused: too many open in this session");
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A channel that never started a subsystem gives its place back here;
        // a serving one when its task ends.
        if self.channels.remove(&channel).is_some() {
            self.live_channels.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let migration = name == hpc::paths::MIGRATION_SUBSYSTEM;
        let pages = name == hpc::paths::PAGES_SUBSYSTEM;
        let allowed = name == hpc::paths::SUBSYSTEM
            || ((migration || pages)
                && self
                    .caller
                    .as_ref()
                    .is_some_and(|c| c.role == Role::Cluster));
        let (Some(caller), true) = (self.caller.clone(), allowed) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        let Some(channel) = self.channels.remove(&id) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        session.channel_success(id)?;
        let ctx = self.ctx.clone();
        let guard = ChannelGuard(self.live_channels.clone());
        tokio::spawn(async move {
            let _guard = guard;
            // Exit status, EOF and close go through the channel's own sender, so
            // OpenSSH sees them after the last answer (dropping a ChannelStream
            // would race a close against them).
            let (mut read_half, write_half) = channel.split();
            let writer = write_half.make_writer();
            if migration {
                crate::migration::receive::receive(read_half.make_reader(), writer, ctx).await;
            } else if pages {
                crate::migration::postcopy::serve_channel(read_half.make_reader(), writer, ctx)
                    .await;
            } else {
                crate::connection::serve(read_half.make_reader(), writer, ctx, caller).await;
            }
            let _ = write_half.exit_status(0).await;
            let _ = write_half.eof().await;
            let _ = write_half.close().await;
        });
        Ok(())
    }

    async fn exec_request(
        &mut self,
        id: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(id)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(id)?;
        Ok(())
    }
}
