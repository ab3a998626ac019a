//! The agent's SSH server: public-key authentication only (roles from
//! `authorized_keys`, plus the cluster key), compression off, and one subsystem,
//! `openmosix`, whose channel is handed to [`crate::connection::serve`].
//! Shells, exec requests and other subsystems are refused.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hpc::model::Role;
use russh::keys::PrivateKey;
use russh::server::{Auth, Msg, PublicKeyOffer, Server as _, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::net::TcpListener;

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
        preferred: russh::Preferred {
            compression: Cow::Borrowed(&[russh::compression::NONE]),
            ..Default::default()
        },
        max_auth_attempts: 6,
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    }
}

/// Accepts connections on `listener` until the task is dropped.
pub async fn run(
    listener: TcpListener,
    config: russh::server::Config,
    ctx: Arc<AgentContext>,
) -> std::io::Result<()> {
    let mut server = AgentServer { ctx };
    server.run_on_socket(Arc::new(config), &listener).await
}

struct AgentServer {
    ctx: Arc<AgentContext>,
}

impl russh::server::Server for AgentServer {
    type Handler = SessionHandler;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> SessionHandler {
        SessionHandler {
            ctx: self.ctx.clone(),
            peer,
            caller: None,
            channels: HashMap::new(),
        }
    }

    fn handle_session_error(&mut self, error: anyhow::Error) {
        tracing::debug!(%error, "ssh session ended with an error");
    }
}

/// One SSH connection.
pub struct SessionHandler {
    ctx: Arc<AgentContext>,
    peer: Option<SocketAddr>,
    caller: Option<Caller>,
    channels: HashMap<ChannelId, Channel<Msg>>,
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
        let (Some(caller), true) = (self.caller.clone(), name == hpc::paths::SUBSYSTEM) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        let Some(channel) = self.channels.remove(&id) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        session.channel_success(id)?;
        let ctx = self.ctx.clone();
        let handle = session.handle();
        tokio::spawn(async move {
            crate::connection::serve(channel.into_stream(), ctx, caller).await;
            // Tell OpenSSH clients the subsystem ended normally.
            let _ = handle.exit_status_request(id, 0).await;
            let _ = handle.eof(id).await;
            let _ = handle.close(id).await;
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
