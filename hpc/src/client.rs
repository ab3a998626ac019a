//! Async client for the agent's JSON-RPC over SSH: connects with the user's key
//! (or ssh-agent), verifies the agent's host key against `known_hosts`, opens the
//! `openmosix` subsystem and multiplexes calls and subscription updates on it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{self, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::framing::{Frame, LineReader, write_line};
use crate::protocol::{
    MAX_MESSAGE_BYTES, Notification, Request, Response, RpcError, UPDATE_NOTIFICATION, Update,
};

/// Which private key the client authenticates with.
#[derive(Debug, Clone, Default)]
pub enum Identity {
    /// The keys of a running ssh-agent (`$SSH_AUTH_SOCK`), then `~/.ssh/id_*`.
    #[default]
    Default,
    /// This private key file (unencrypted OpenSSH format).
    KeyFile(PathBuf),
}

/// How the client connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The key to authenticate with.
    pub identity: Identity,
    /// The `known_hosts` file that agents' host keys are checked against.
    pub known_hosts: PathBuf,
    /// Record an unknown host key instead of refusing it (trust on first use).
    pub trust_on_first_use: bool,
    /// SSH user name (the agent decides by key, not by user).
    pub user: String,
    /// Limit for TCP connect, key exchange and authentication together.
    pub connect_timeout: Duration,
    /// When set, the agent must present exactly this host key (known_hosts is not consulted).
    pub pinned_host_key: Option<PublicKey>,
}

impl ClientConfig {
    /// Defaults: ssh-agent or `~/.ssh/id_*`, `~/.ssh/known_hosts`, no TOFU, user root, 5 s.
    pub fn from_env() -> Self {
        Self {
            identity: Identity::Default,
            known_hosts: crate::paths::default_known_hosts()
                .unwrap_or_else(|| PathBuf::from("/root/.ssh/known_hosts")),
            trust_on_first_use: false,
            user: "root".into(),
            connect_timeout: Duration::from_secs(5),
            pinned_host_key: None,
        }
    }
}

/// Everything that can go wrong talking to an agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connection or SSH transport failure.
    #[error("cannot reach agent at {addr}: {message}")]
    Unreachable {
        /// The address tried.
        addr: String,
        /// Why.
        message: String,
    },
    /// The agent's host key differs from the one recorded in known_hosts.
    #[error(
        "HOST KEY CHANGED for {host}: the agent presents {fingerprint}, which differs from the key recorded at {path}:{line}; refusing to connect (remove that line only if you know why the key changed)"
    )]
    HostKeyChanged {
        /// Host as looked up in known_hosts.
        host: String,
        /// Fingerprint of the presented key.
        fingerprint: String,
        /// The known_hosts file.
        path: String,
        /// Line of the recorded key.
        line: usize,
    },
    /// The agent's host key is not in known_hosts and TOFU was not requested.
    #[error(
        "unknown host key for {host}: {fingerprint} is not in {path}; confirm it and connect with trust-on-first-use to record it"
    )]
    HostKeyUnknown {
        /// Host as looked up in known_hosts.
        host: String,
        /// Fingerprint of the presented key.
        fingerprint: String,
        /// The known_hosts file.
        path: String,
    },
    /// No key was accepted.
    #[error("authentication refused by {addr}: {message}")]
    AuthRefused {
        /// The agent.
        addr: String,
        /// Which keys were tried.
        message: String,
    },
    /// A key file could not be loaded.
    #[error("cannot load key {path}: {message}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The agent answered with a JSON-RPC error.
    #[error("{0}")]
    Rpc(#[from] RpcError),
    /// The connection closed.
    #[error("connection to agent closed")]
    Closed,
    /// The agent did not answer in time.
    #[error("agent did not answer within {0:?}")]
    Timeout(Duration),
    /// The agent sent something that is not the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

#[derive(Debug)]
enum HostKeyProblem {
    Changed { fingerprint: String, line: usize },
    Unknown { fingerprint: String },
    Io(String),
}

/// Verifies agents' host keys against known_hosts (the russh client handler).
pub struct HostKeyChecker {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    tofu: bool,
    pinned: Option<PublicKey>,
    problem: Arc<Mutex<Option<HostKeyProblem>>>,
}

impl HostKeyChecker {
    fn check(&self, key: &PublicKey) -> Result<bool, HostKeyProblem> {
        let fingerprint = key.fingerprint(keys::HashAlg::Sha256).to_string();
        if let Some(pinned) = &self.pinned {
            return if pinned.key_data() == key.key_data() {
                Ok(true)
            } else {
                Err(HostKeyProblem::Changed {
                    fingerprint,
                    line: 0,
                })
            };
        }
        let known = if self.known_hosts.exists() {
            keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts)
        } else {
            Ok(false)
        };
        match known {
            Ok(true) => Ok(true),
            Ok(false) if self.tofu => {
                keys::known_hosts::learn_known_hosts_path(
                    &self.host,
                    self.port,
                    key,
                    &self.known_hosts,
                )
                .map_err(|e| HostKeyProblem::Io(e.to_string()))?;
                tracing::info!(host = %self.host, %fingerprint, "recorded new host key");
                Ok(true)
            }
            Ok(false) => Err(HostKeyProblem::Unknown { fingerprint }),
            Err(keys::Error::KeyChanged { line }) => {
                Err(HostKeyProblem::Changed { fingerprint, line })
            }
            Err(e) => Err(HostKeyProblem::Io(e.to_string())),
        }
    }
}

impl client::Handler for HostKeyChecker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_public_key else {
            return Ok(false);
        };
        match self.check(key) {
            Ok(ok) => Ok(ok),
            Err(problem) => {
                if let Ok(mut slot) = self.problem.lock() {
                    *slot = Some(problem);
                }
                Ok(false)
            }
        }
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

/// The writing half of a connection, whatever carries it (an SSH channel or
/// the agent's local Unix socket).
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Most subscription updates queued for a consumer that does not keep up.
/// When the queue is full the update stream ends (the receiver sees `None`),
/// so the consumer subscribes again and starts from a full list instead of
/// applying deltas with a gap.
pub const UPDATE_QUEUE: usize = 1024;

/// An RPC connection to one agent.
pub struct Client {
    addr: String,
    writer: tokio::sync::Mutex<Writer>,
    pending: Pending,
    next_id: AtomicU64,
    updates: Mutex<Option<mpsc::Receiver<Update>>>,
    call_timeout: Duration,
    closed: Arc<std::sync::atomic::AtomicBool>,
    /// The task reading answers and updates.
    reader: tokio::task::JoinHandle<()>,
    /// Keeps the SSH session alive (none on the Unix socket).
    session: Option<Handle<HostKeyChecker>>,
}

impl Drop for Client {
    /// Ends the connection: the reader stops and the SSH session is closed,
    /// so the agent frees its session at once.
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(session) = self.session.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = session
                    .disconnect(russh::Disconnect::ByApplication, "", "")
                    .await;
            });
        }
    }
}

/// An SSH session with the `openmosix` subsystem open, before any framing: for
/// tools and tests that speak the wire protocol byte by byte.
pub struct RawConnection {
    /// The subsystem's byte stream.
    pub stream: russh::ChannelStream<client::Msg>,
    /// Keeps the SSH session alive.
    pub session: Handle<HostKeyChecker>,
}

/// Opens an SSH session to `addr`, authenticates and opens the subsystem.
pub async fn connect_raw(addr: &str, config: &ClientConfig) -> Result<RawConnection, ClientError> {
    connect_subsystem(addr, config, crate::paths::SUBSYSTEM).await
}

/// Opens an SSH session to `addr`, authenticates and opens the named subsystem.
pub async fn connect_subsystem(
    addr: &str,
    config: &ClientConfig,
    subsystem: &str,
) -> Result<RawConnection, ClientError> {
    tokio::time::timeout(
        config.connect_timeout,
        connect_raw_inner(addr, config, subsystem),
    )
    .await
    .map_err(|_| ClientError::Unreachable {
        addr: addr.to_string(),
        message: format!("no answer within {:?}", config.connect_timeout),
    })?
}

async fn connect_raw_inner(
    addr: &str,
    config: &ClientConfig,
    subsystem: &str,
) -> Result<RawConnection, ClientError> {
    let sock: SocketAddr =
        crate::map::resolve(addr).map_err(|message| ClientError::Unreachable {
            addr: addr.to_string(),
            message,
        })?;
    let host = addr
        .rsplit_once(':')
        .filter(|(_, p)| p.parse::<u16>().is_ok())
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .unwrap_or_else(|| addr.to_string());
    let problem = Arc::new(Mutex::new(None));
    let checker = HostKeyChecker {
        host: host.clone(),
        port: sock.port(),
        known_hosts: config.known_hosts.clone(),
        tofu: config.trust_on_first_use,
        pinned: config.pinned_host_key.clone(),
        problem: problem.clone(),
    };
    let ssh_config = Arc::new(client::Config {
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        nodelay: true,
        preferred: preferred_algorithms(),
        window_size: WINDOW_SIZE,
        maximum_packet_size: MAX_PACKET,
        ..Default::default()
    });
    let unreachable = |message: String| ClientError::Unreachable {
        addr: addr.to_string(),
        message,
    };
    let mut session = match client::connect(ssh_config, sock, checker).await {
        Ok(s) => s,
        Err(e) => {
            let taken = problem.lock().ok().and_then(|mut p| p.take());
            let path = if config.pinned_host_key.is_some() {
                "the pinned host key".to_string()
            } else {
                config.known_hosts.display().to_string()
            };
            return Err(match taken {
                Some(HostKeyProblem::Changed { fingerprint, line }) => {
                    ClientError::HostKeyChanged {
                        host,
                        fingerprint,
                        path,
                        line,
                    }
                }
                Some(HostKeyProblem::Unknown { fingerprint }) => ClientError::HostKeyUnknown {
                    host,
                    fingerprint,
                    path,
                },
                Some(HostKeyProblem::Io(m)) => unreachable(format!("known_hosts {path}: {m}")),
                None => unreachable(e.to_string()),
            });
        }
    };
    authenticate(&mut session, addr, config).await?;
    let stream = open_channel(&session, addr, subsystem).await?;
    Ok(RawConnection { stream, session })
}

/// Opens a channel with the named subsystem on an authenticated session
/// to the agent at `addr`.
async fn open_channel(
    session: &Handle<HostKeyChecker>,
    addr: &str,
    subsystem: &str,
) -> Result<russh::ChannelStream<client::Msg>, ClientError> {
    let unreachable = |message: String| ClientError::Unreachable {
        addr: addr.to_string(),
        message,
    };
    let mut channel = session
        .channel_open_session()
        .await
        .map_err(|e| unreachable(format!("cannot open channel: {e}")))?;
    channel
        .request_subsystem(true, subsystem)
        .await
        .map_err(|e| unreachable(format!("subsystem refused: {e}")))?;
    // Wait for the agent's answer, so a refusal is an error now rather than a
    // channel that never answers.
    loop {
        match channel.wait().await {
            Some(russh::ChannelMsg::Success) => break,
            Some(russh::ChannelMsg::Failure) => {
                return Err(unreachable(format!(
                    "subsystem refused: the agent does not serve `{subsystem}` to this key"
                )));
            }
            Some(russh::ChannelMsg::Close | russh::ChannelMsg::Eof) | None => {
                return Err(unreachable(format!(
                    "subsystem refused: the channel closed before `{subsystem}` started"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(channel.into_stream())
}

/// SSH channel window (flow control): large enough that migration images
/// stream without waiting for window adjustments on a LAN.
pub const WINDOW_SIZE: u32 = 32 << 20;
/// Largest SSH packet accepted on a channel.
pub const MAX_PACKET: u32 = 256 << 10;

/// Algorithms agents and clients prefer: no compression, and AES-GCM first
/// (hardware-accelerated on current CPUs, faster than ChaCha20 for bulk data).
pub fn preferred_algorithms() -> russh::Preferred {
    russh::Preferred {
        compression: std::borrow::Cow::Borrowed(&[russh::compression::NONE]),
        cipher: std::borrow::Cow::Borrowed(&[
            russh::cipher::AES_256_GCM,
            russh::cipher::CHACHA20_POLY1305,
            russh::cipher::AES_256_CTR,
        ]),
        ..Default::default()
    }
}

async fn authenticate(
    session: &mut Handle<HostKeyChecker>,
    addr: &str,
    config: &ClientConfig,
) -> Result<(), ClientError> {
    let mut tried: Vec<String> = Vec::new();
    let files = match &config.identity {
        Identity::KeyFile(p) => vec![p.clone()],
        Identity::Default => {
            if try_ssh_agent(session, &config.user, &mut tried).await {
                return Ok(());
            }
            crate::paths::default_identity_files()
                .into_iter()
                .filter(|p| p.exists())
                .collect()
        }
    };
    for path in files {
        let key = load_key(&path)?;
        let hash = session
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten();
        let result = session
            .authenticate_publickey(
                &config.user,
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .map_err(|e| ClientError::Unreachable {
                addr: addr.to_string(),
                message: e.to_string(),
            })?;
        if result.success() {
            return Ok(());
        }
        tried.push(path.display().to_string());
    }
    Err(ClientError::AuthRefused {
        addr: addr.to_string(),
        message: if tried.is_empty() {
            "no SSH key found (no ssh-agent keys, no ~/.ssh/id_ed25519, id_ecdsa or id_rsa)".into()
        } else {
            format!("none of these keys is authorized: {}", tried.join(", "))
        },
    })
}

async fn try_ssh_agent(
    session: &mut Handle<HostKeyChecker>,
    user: &str,
    tried: &mut Vec<String>,
) -> bool {
    let Ok(mut agent) = keys::agent::client::AgentClient::connect_env().await else {
        return false;
    };
    let Ok(identities) = agent.request_identities().await else {
        return false;
    };
    for identity in identities {
        let keys::agent::AgentIdentity::PublicKey { key, comment } = identity else {
            continue;
        };
        let hash = session
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten();
        match session
            .authenticate_publickey_with(user, key, hash, &mut agent)
            .await
        {
            Ok(r) if r.success() => return true,
            _ => tried.push(format!("ssh-agent key {comment}")),
        }
    }
    false
}

/// How long [`Client::call_value`] waits for an answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Loads an unencrypted OpenSSH private key.
pub fn load_key(path: &Path) -> Result<keys::PrivateKey, ClientError> {
    keys::load_secret_key(path, None).map_err(|e| ClientError::Key {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

impl Client {
    /// Connects to the agent at `addr` (`host` or `host:port`) over SSH.
    pub async fn connect(addr: &str, config: &ClientConfig) -> Result<Self, ClientError> {
        let raw = connect_raw(addr, config).await?;
        let (read, write) = tokio::io::split(raw.stream);
        Ok(Self::over(
            addr.to_string(),
            read,
            Box::new(write),
            Some(raw.session),
        ))
    }

    /// Connects to the local agent's Unix socket (no key: the agent takes the
    /// caller's uid from the socket; root is `admin`, anyone else `user`).
    pub async fn connect_unix(path: &Path) -> Result<Self, ClientError> {
        let shown = path.display().to_string();
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::UnixStream::connect(path),
        )
        .await
        .map_err(|_| ClientError::Unreachable {
            addr: shown.clone(),
            message: "no answer within 5 s".into(),
        })?
        .map_err(|e| ClientError::Unreachable {
            addr: shown.clone(),
            message: match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    format!("{e} (is openmosixd running on this node?)")
                }
                _ => e.to_string(),
            },
        })?;
        let (read, write) = stream.into_split();
        Ok(Self::over(shown, read, Box::new(write), None))
    }

    fn over<R: AsyncRead + Send + Unpin + 'static>(
        addr: String,
        read: R,
        writer: Writer,
        session: Option<Handle<HostKeyChecker>>,
    ) -> Self {
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let (updates_tx, updates_rx) = mpsc::channel(UPDATE_QUEUE);
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = tokio::spawn(read_loop(read, pending.clone(), updates_tx, closed.clone()));
        Self {
            addr,
            writer: tokio::sync::Mutex::new(writer),
            pending,
            next_id: AtomicU64::new(1),
            updates: Mutex::new(Some(updates_rx)),
            call_timeout: CALL_TIMEOUT,
            closed,
            reader,
            session,
        }
    }

    /// The address this client is connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Calls `method` with `params` and decodes the result.
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: P,
    ) -> Result<R, ClientError> {
        self.call_within(method, params, self.call_timeout).await
    }

    /// [`Client::call`] with its own answer timeout (for long actions such as
    /// migrations and `expel`).
    pub async fn call_within<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: P,
        timeout: Duration,
    ) -> Result<R, ClientError> {
        let value = self
            .call_value_within(
                method,
                serde_json::to_value(params).map_err(proto)?,
                timeout,
            )
            .await?;
        serde_json::from_value(value).map_err(proto)
    }

    /// Calls `method` with JSON params and returns the raw JSON result.
    pub async fn call_value(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.call_value_within(method, params, self.call_timeout)
            .await
    }

    /// [`Client::call_value`] with its own answer timeout (for long actions such
    /// as migrations and `expel`).
    pub async fn call_value_within(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        let request = Request {
            jsonrpc: "2.0".into(),
            id: Some(Value::from(id)),
            method: method.to_string(),
            params: Some(params),
        };
        let line = serde_json::to_vec(&request).map_err(proto)?;
        {
            let mut w = self.writer.lock().await;
            if write_line(&mut *w, &line).await.is_err() {
                self.forget(id);
                return Err(ClientError::Closed);
            }
        }
        let response = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => return Err(ClientError::Closed),
            Err(_) => {
                self.forget(id);
                return Err(ClientError::Timeout(timeout));
            }
        };
        match (response.result, response.error) {
            (_, Some(e)) => Err(ClientError::Rpc(e)),
            (Some(r), None) => Ok(r),
            (None, None) => Ok(Value::Null),
        }
    }

    /// Opens one more channel with the named subsystem on this client's SSH
    /// session (a warm session spares a connect and a login); an error on
    /// the Unix socket, which has no session.
    pub async fn open_channel(
        &self,
        subsystem: &str,
    ) -> Result<russh::ChannelStream<client::Msg>, ClientError> {
        let Some(session) = &self.session else {
            return Err(ClientError::Unreachable {
                addr: self.addr.clone(),
                message: format!("`{subsystem}` needs an SSH session, not the local socket"),
            });
        };
        open_channel(session, &self.addr, subsystem).await
    }

    /// Whether the connection has closed (the agent went away or the session broke).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Takes the stream of subscription updates (once; later calls get `None`).
    /// The stream ends when the connection closes or when the consumer fell
    /// [`UPDATE_QUEUE`] updates behind.
    pub fn take_updates(&self) -> Option<mpsc::Receiver<Update>> {
        self.updates.lock().ok().and_then(|mut u| u.take())
    }

    fn forget(&self, id: u64) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&id);
        }
    }
}

fn proto(e: serde_json::Error) -> ClientError {
    ClientError::Protocol(e.to_string())
}

/// Most bytes of an answer a client accepts (an agent's process list of a
/// very large node stays far below it).
pub const MAX_ANSWER_BYTES: usize = MAX_MESSAGE_BYTES * 64;

async fn read_loop<R: AsyncRead + Unpin>(
    read: R,
    pending: Pending,
    updates: mpsc::Sender<Update>,
    closed: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut reader = LineReader::new(BufReader::new(read), MAX_ANSWER_BYTES);
    let mut updates = Some(updates);
    loop {
        let line = match reader.next_frame().await {
            Ok(Frame::Line(l)) => l,
            Ok(Frame::TooLong { len, head }) => {
                tracing::warn!(bytes = len, "dropped oversized message from agent");
                if is_update(&head) {
                    // A lost delta: end the stream so the consumer starts afresh.
                    updates = None;
                } else {
                    fail_oversized(&pending, len, &head);
                }
                continue;
            }
            Ok(Frame::Eof) | Err(_) => break,
        };
        let Ok(value) = serde_json::from_slice::<Value>(&line) else {
            tracing::warn!("agent sent a line that is not JSON");
            continue;
        };
        if value.get("method").and_then(Value::as_str) == Some(UPDATE_NOTIFICATION) {
            if let Ok(n) = serde_json::from_value::<Notification>(value)
                && let Ok(u) = serde_json::from_value::<Update>(n.params)
                && let Some(tx) = &updates
                && tx.try_send(u).is_err()
            {
                // Full (or nobody listens): end the stream rather than drop a
                // delta silently; the consumer subscribes again.
                tracing::warn!(
                    queued = UPDATE_QUEUE,
                    "subscription consumer fell behind; update stream closed"
                );
                updates = None;
            }
            continue;
        }
        let Ok(response) = serde_json::from_value::<Response>(value) else {
            continue;
        };
        let Some(id) = response.id.as_u64() else {
            continue;
        };
        let waiter = pending.lock().ok().and_then(|mut p| p.remove(&id));
        if let Some(w) = waiter {
            let _ = w.send(response);
        }
    }
    closed.store(true, Ordering::Relaxed);
    // Dropping the senders wakes every waiting call with `Closed`.
    if let Ok(mut p) = pending.lock() {
        p.clear();
    }
}

/// An answer over the size limit was discarded: its call fails at once with
/// the reason instead of waiting out its timeout. The id is read from the
/// start of the line (agents write it first); without one, every pending
/// call fails, since any of them may have been the one.
fn fail_oversized(pending: &Pending, len: usize, head: &[u8]) {
    let error = RpcError::new(
        crate::protocol::codes::MESSAGE_TOO_LARGE,
        format!(
            "the agent's answer of {len} bytes exceeds this client's limit of {MAX_ANSWER_BYTES} bytes"
        ),
    );
    let Ok(mut p) = pending.lock() else {
        return;
    };
    let waiters: Vec<oneshot::Sender<Response>> = match leading_id(head) {
        Some(id) => p.remove(&id).into_iter().collect(),
        None => p.drain().map(|(_, w)| w).collect(),
    };
    for w in waiters {
        let _ = w.send(Response::err(Value::Null, error.clone()));
    }
}

/// Whether the first bytes of a line are those of an update notification.
fn is_update(head: &[u8]) -> bool {
    let needle = br#""method":"update""#;
    head.windows(needle.len()).any(|w| w == needle)
}

/// The numeric `"id"` of a JSON-RPC response, read from the first bytes of its line.
fn leading_id(head: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(head)
        .ok()
        .or_else(|| std::str::from_utf8(head.get(..head.len().saturating_sub(3))?).ok())?;
    let at = text.find("\"id\":")? + 5;
    let digits: String = text
        .get(at..)?
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_of_an_oversized_answer_is_read_from_its_head() {
        assert_eq!(
            leading_id(br#"{"jsonrpc":"2.0","id":42,"result":[{"pid":1"#),
            Some(42)
        );
        assert_eq!(leading_id(br#"{"jsonrpc":"2.0","id": 7,"#), Some(7));
        assert_eq!(leading_id(br#"{"jsonrpc":"2.0","method":"update""#), None);
    }

    #[tokio::test]
    async fn an_oversized_answer_fails_its_call_at_once() {
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let (tx, rx) = oneshot::channel();
        let (other_tx, mut other_rx) = oneshot::channel();
        pending.lock().unwrap().insert(3, tx);
        pending.lock().unwrap().insert(4, other_tx);
        fail_oversized(&pending, 1 << 30, br#"{"jsonrpc":"2.0","id":3,"result":"#);
        let r = rx.await.unwrap();
        assert_eq!(
            r.error.unwrap().code,
            crate::protocol::codes::MESSAGE_TOO_LARGE
        );
        assert!(
            other_rx.try_recv().is_err(),
            "only the call the answer was for fails"
        );
        assert_eq!(pending.lock().unwrap().len(), 1);
    }
}
