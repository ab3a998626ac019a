//! The agent's local Unix socket (`/run/openmosix/agent.sock`, mode 0666): the
//! same JSON-RPC as the SSH subsystem, for the users of this node, without any
//! key. The kernel tells who connected (`SO_PEERCRED`): root is `admin`, every
//! other uid is `user` acting as that uid, so `mosrun`, `migrate` and `mosctl`
//! work for ordinary users on their own processes, as they did on openMosix.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::net::{UnixListener, UnixStream};

use crate::context::AgentContext;
use crate::rpc::Caller;

/// Most connections one uid may hold at once.
pub const PER_UID: usize = 32;
/// Most connections in all.
pub const TOTAL: usize = 256;

/// Binds the socket at `path` (replacing a stale one left by a crash) with
/// mode 0666: connecting grants nothing by itself, the caller's uid decides.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    hpc::unix_socket::bind(path, 0o666).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot create the local socket {}: {e}", path.display()),
        )
    })
}

/// Connections per uid.
#[derive(Default)]
struct Counts {
    per_uid: HashMap<u32, usize>,
    total: usize,
}

/// One connection's place, given back when dropped.
struct Place {
    counts: Arc<Mutex<Counts>>,
    uid: u32,
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counts.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_uid.get_mut(&self.uid) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.per_uid.remove(&self.uid);
                }
            }
        }
    }
}

fn take_place(counts: &Arc<Mutex<Counts>>, uid: u32) -> Option<Place> {
    let mut c = counts.lock().ok()?;
    let mine = c.per_uid.get(&uid).copied().unwrap_or(0);
    // Root always gets in: the node's administrator is never locked out by users.
    if uid != 0 && (mine >= PER_UID || c.total >= TOTAL) {
        return None;
    }
    c.total += 1;
    *c.per_uid.entry(uid).or_insert(0) += 1;
    Some(Place {
        counts: counts.clone(),
        uid,
    })
}

/// Serves the socket until the task is dropped.
pub async fn serve(listener: UnixListener, ctx: Arc<AgentContext>) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    loop {
        let (stream, _) =
            crate::accept::next_connection("local socket", || listener.accept()).await;
        let uid = match stream.peer_cred() {
            Ok(cred) => cred.uid(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell who connected to the local socket; closed");
                continue;
            }
        };
        let Some(place) = take_place(&counts, uid) else {
            tracing::warn!(uid, "local socket connection refused: too many connections");
            refuse(stream).await;
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _place = place;
            let (read, write) = stream.into_split();
            crate::connection::serve(read, write, ctx, Caller::local(uid)).await;
        });
    }
}

/// Tells a refused client why, as a JSON-RPC error, and closes.
async fn refuse(mut stream: UnixStream) {
    use tokio::io::AsyncWriteExt;
    let answer = hpc::protocol::Response::err(
        serde_json::Value::Null,
        hpc::protocol::RpcError::new(
            hpc::protocol::codes::FORBIDDEN,
            format!("too many connections to the local agent (at most {PER_UID} per user)"),
        ),
    );
    if let Ok(mut line) = serde_json::to_vec(&answer) {
        line.push(b'\n');
        let _ = stream.write_all(&line).await;
    }
}
