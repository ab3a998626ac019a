//! The agent's SSH server: public-key authentication only (roles from
//! `authorized_keys`, plus the cluster key), compression off, and one subsystem,
//! `openmosix`, whose channel is handed to [`crate::connection::serve`], plus
//! `openmosix-migrate` for other agents (cluster key) sending migration images.
//! Shells, exec requests and other subsystems are refused.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hpc::model::Role;
use russh::keys::PrivateKey;
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

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

/// Limits on unauthenticated and concurrent sessions (OpenSSH's
/// `LoginGraceTime` and a `MaxStartups`-like cap, applied to all sessions).
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Most concurrent sessions; further connections are closed at once.
    pub max_sessions: usize,
    /// Time a client has from connecting to finishing authentication.
    pub login_grace: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_sessions: 256,
            login_grace: Duration::from_secs(20),
        }
    }
}

/// Accepts connections on `listener` until the task is dropped.
pub async fn run(
    listener: TcpListener,
    config: russh::server::Config,
    ctx: Arc<AgentContext>,
    limits: SessionLimits,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let permits = Arc::new(Semaphore::new(limits.max_sessions));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_sessions, "too many sessions; connection closed");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let authenticated = Arc::new(AtomicBool::new(false));
        let handler = SessionHandler {
            ctx: ctx.clone(),
            peer: Some(peer),
            caller: None,
            channels: HashMap::new(),
            authenticated: authenticated.clone(),
        };
        tokio::spawn(serve_session(
            config.clone(),
            socket,
            handler,
            authenticated,
            limits.login_grace,
            permit,
        ));
    }
}

/// Runs one session; a client that has not authenticated when the login grace
/// time ends is disconnected (the handshake itself is bounded by it too).
async fn serve_session(
    config: Arc<russh::server::Config>,
    socket: tokio::net::TcpStream,
    handler: SessionHandler,
    authenticated: Arc<AtomicBool>,
    grace: Duration,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let peer = handler.peer;
    let deadline = tokio::time::Instant::now() + grace;
    let session =
        match tokio::time::timeout_at(deadline, russh::server::run_stream(config, socket, handler))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(?peer, error = %e, "ssh handshake failed");
                return;
            }
            Err(_) => {
                tracing::info!(
                    ?peer,
                    "no ssh handshake within the login grace time; closed"
                );
                return;
            }
        };
    let handle = session.handle();
    let watchdog = tokio::spawn(async move {
        tokio::time::sleep_until(deadline).await;
        if !authenticated.load(Ordering::Acquire) {
            tracing::info!(
                ?peer,
                "not authenticated within the login grace time; disconnecting"
            );
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
        tracing::debug!(?peer, error = %e, "ssh session ended with an error");
    }
    watchdog.abort();
}

/// One SSH connection.
pub struct SessionHandler {
    ctx: Arc<AgentContext>,
    peer: Option<SocketAddr>,
    caller: Option<Caller>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    authenticated: Arc<AtomicBool>,
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
        let Some(role) = self.ctx.authorized.role_of(key.public_key) else {
            tracing::warn!(peer = ?self.peer, user, key = %fingerprint(key.public_key), "refused unknown key");
            return Ok(Auth::reject());
        };
        let fp = fingerprint(key.public_key);
        if role != Role::Cluster {
            tracing::info!(peer = ?self.peer, user, key = %fp, %role, "authenticated");
        }
        self.caller = Some(Caller { role, key: fp });
        self.authenticated.store(true, Ordering::Release);
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.caller.is_none() || self.channels.len() >= 16 {
            return Ok(()); // dropping the handle rejects the channel
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let migration = name == hpc::paths::MIGRATION_SUBSYSTEM;
        let allowed = name == hpc::paths::SUBSYSTEM
            || (migration
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
        tokio::spawn(async move {
            // Exit status, EOF and close go through the channel's own sender, so
            // OpenSSH sees them after the last answer (dropping a ChannelStream
            // would race a close against them).
            let (mut read_half, write_half) = channel.split();
            let writer = write_half.make_writer();
            if migration {
                crate::migration::receive::receive(read_half.make_reader(), writer, ctx).await;
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
