//! The running collector's control socket (`/run/openmosixcollector/collector.sock`,
//! 0600 in a 0700 directory of its own, answering only root and the collector's
//! own user, checked with `SO_PEERCRED`): `-n` (checkpoint), `-r` (archive and
//! begin anew) and status reach the daemon through it, one JSON line each way. Framing lives here; what a
//! request does is [`crate::daemon`]'s job.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// The default control socket.
pub const DEFAULT_SOCKET: &str = "/run/openmosixcollector/collector.sock";

/// Longest request line accepted.
const MAX_LINE: usize = 4096;

/// A request to the running collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// Write a checkpoint with this label.
    Checkpoint {
        /// The label (may be empty).
        label: String,
    },
    /// Archive the current history and begin a new one.
    Rotate,
    /// Report what it is doing.
    Status,
}

/// The answer: a message, or an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether it worked.
    pub ok: bool,
    /// What happened, or what went wrong.
    pub message: String,
}

/// A request with the channel its answer goes back on.
pub type Incoming = (Request, oneshot::Sender<Reply>);

/// Control-socket failures.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Socket file trouble.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// Nothing listens.
    #[error("openmosixcollector is not running (nothing listens on {0})")]
    NotRunning(String),
    /// The daemon did not answer in time.
    #[error("openmosixcollector did not answer within {0:?}")]
    Timeout(Duration),
    /// The answer was not understood.
    #[error("bad answer from openmosixcollector: {0}")]
    BadAnswer(String),
}

/// Binds the socket at `path` (replacing a stale one), owner-only. Its
/// directory is created 0700 if missing and refused if others could enter
/// or write it, so the socket is never reachable by anyone else, not even in
/// the moment between `bind` and `chmod`.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let err = |e| ControlError::Io(path.display().to_string(), e);
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let meta = std::fs::symlink_metadata(dir).map_err(err)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(err(std::io::Error::other(format!(
            "its directory {} must be a directory of uid {me} that nobody else may enter (mode 0700)",
            dir.display()
        ))));
    }
    hpc::unix_socket::bind(path, 0o600).map_err(err)
}

/// Whether the peer of `stream` may control the collector: root or the
/// collector's own user.
fn trusted_peer(stream: &UnixStream) -> bool {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    stream
        .peer_cred()
        .is_ok_and(|c| c.uid() == 0 || c.uid() == me)
}

/// Accepts connections and hands each request to `to_daemon`, until that closes.
pub async fn serve(listener: UnixListener, to_daemon: mpsc::Sender<Incoming>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        if !trusted_peer(&stream) {
            tracing::warn!(peer = ?stream.peer_cred().ok(), "control connection from another user refused");
            continue;
        }
        let to_daemon = to_daemon.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, to_daemon).await {
                tracing::debug!(error = %e, "control connection failed");
            }
        });
    }
}

async fn handle(stream: UnixStream, to_daemon: mpsc::Sender<Incoming>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_LINE as u64);
    reader.read_line(&mut line).await?;
    let reply = match serde_json::from_str::<Request>(line.trim()) {
        Err(e) => Reply {
            ok: false,
            message: format!("bad request: {e}"),
        },
        Ok(req) => {
            let (tx, rx) = oneshot::channel();
            if to_daemon.send((req, tx)).await.is_err() {
                Reply {
                    ok: false,
                    message: "the collector is stopping".into(),
                }
            } else {
                rx.await.unwrap_or(Reply {
                    ok: false,
                    message: "the collector is stopping".into(),
                })
            }
        }
    };
    let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await
}

/// Sends `request` to the collector listening on `path` and returns its reply.
pub async fn send(path: &Path, request: &Request, within: Duration) -> Result<Reply, ControlError> {
    let shown = path.display().to_string();
    let work = async {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|_| ControlError::NotRunning(shown.clone()))?;
        let (read, mut write) = stream.into_split();
        let mut line =
            serde_json::to_vec(request).map_err(|e| ControlError::BadAnswer(e.to_string()))?;
        line.push(b'\n');
        write
            .write_all(&line)
            .await
            .map_err(|e| ControlError::Io(shown.clone(), e))?;
        let mut answer = String::new();
        BufReader::new(read)
            .read_line(&mut answer)
            .await
            .map_err(|e| ControlError::Io(shown.clone(), e))?;
        serde_json::from_str::<Reply>(answer.trim())
            .map_err(|e| ControlError::BadAnswer(format!("{e}: {answer:?}")))
    };
    tokio::time::timeout(within, work)
        .await
        .map_err(|_| ControlError::Timeout(within))?
}
