//! How a migration's memory travels between the two agents: on the direct
//! [sealed link](super::sealed_link) when both agents have one (the target
//! listens on its pages port; the key came in the offer), else on the
//! `openmosix-pages` channel of the migration's SSH session. Either way the
//! target hands the path to the migration waiting for it under its id
//! ([`PageChannels`](super::postcopy::PageChannels)), which bridges it to its
//! CRIU.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use hpc::protocol::MemoryPath;

use super::sealed_link::{self, LinkKey};
use crate::context::AgentContext;

/// How long the source tries to reach the target's pages port before it
/// takes the SSH channel instead (before anything is frozen).
const CONNECT_WAIT: Duration = Duration::from_secs(2);
/// How long a new link may take to name its migration and prove its key
/// (and the source, to get the target's answer).
const HELLO_WAIT: Duration = Duration::from_secs(10);
/// Links at once from one address that have not yet proved their key; more
/// are closed at once, so strangers elsewhere cannot crowd out a node's own
/// links (a stranger never gets past the id line: ids are secret).
const UNPROVED_PER_ADDRESS: usize = 8;
/// Links at once that have not yet proved their key, from all addresses.
const UNPROVED: usize = 512;

/// The source's end of a migration's pages path.
pub struct PagesPath {
    /// What the target's CRIU side sends.
    pub read: Box<dyn AsyncRead + Send + Unpin>,
    /// Where the source's CRIU side sends.
    pub write: Box<dyn AsyncWrite + Send + Unpin>,
    /// Which it is: [`MemoryPath::Direct`] or [`MemoryPath::Ssh`].
    pub way: MemoryPath,
}

/// Source: opens migration `id`'s pages path to `target` (its agent's
/// address): the direct link on `link` (the target's pages port, and the
/// key of the offer) if given and the port answers, else the SSH channel on
/// `session`. A port that answers but fails the handshake is an error: the
/// target may have taken the link already, so no second path is tried.
pub async fn open(
    session: &hpc::client::Client,
    id: &str,
    target: &str,
    link: Option<(u16, &LinkKey)>,
) -> Result<PagesPath, String> {
    if let Some((port, key)) = link {
        match connect(target, port).await {
            Ok(stream) => {
                let (read, write) =
                    tokio::time::timeout(HELLO_WAIT, sealed_link::open(stream, id, key))
                        .await
                        .map_err(|_| {
                            format!("the target's pages link did not answer within {HELLO_WAIT:?}")
                        })?
                        .map_err(|e| format!("the target's pages link failed: {e}"))?;
                return Ok(PagesPath {
                    read: Box::new(read),
                    write: Box::new(write),
                    way: MemoryPath::Direct,
                });
            }
            Err(why) => {
                tracing::info!(id, target, port, %why, "no direct pages link; the pages go in the SSH session");
            }
        }
    }
    let channel = super::postcopy::open_channel(session, id).await?;
    let (read, write) = tokio::io::split(channel);
    Ok(PagesPath {
        read: Box::new(read),
        write: Box::new(write),
        way: MemoryPath::Ssh,
    })
}

/// Connects to the target's pages port, within [`CONNECT_WAIT`].
async fn connect(target: &str, port: u16) -> Result<TcpStream, String> {
    let addr = hpc::map::resolve(target)?;
    let addr = SocketAddr::new(addr.ip(), port);
    match tokio::time::timeout(CONNECT_WAIT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: no answer within {CONNECT_WAIT:?}")),
    }
}

/// Target: the migration id that a new pages channel or link names on its
/// first line (in clear), read byte by byte so that nothing past it is
/// taken; None if that line is not a migration id.
pub async fn read_id<R: AsyncRead + Unpin>(read: &mut R) -> Option<String> {
    let mut id = Vec::with_capacity(33);
    let mut b = [0u8; 1];
    while id.len() <= 32 {
        read.read_exact(&mut b).await.ok()?;
        if b == [b'\n'] {
            return String::from_utf8(id)
                .ok()
                .filter(|id| super::ledger::valid_id(id));
        }
        id.extend_from_slice(&b);
    }
    None
}

/// Target: accepts direct links until the task is dropped. Each names its
/// migration and proves it holds that migration's key within
/// 10 s, or is closed; a proved link is carried like a pages
/// channel.
pub async fn serve(listener: TcpListener, ctx: Arc<AgentContext>) {
    let unproved = Unproved::default();
    loop {
        let (stream, peer) =
            crate::accept::next_connection("pages port", || listener.accept()).await;
        let Some(permit) = unproved.admit(peer.ip()) else {
            tracing::warn!(%peer, "pages port: too many links waiting for their hello; closed");
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let proved = tokio::time::timeout(HELLO_WAIT, prove(stream, &ctx)).await;
            drop(permit);
            match proved {
                Ok(Ok((id, (read, write)))) => {
                    super::postcopy::carry(&ctx, &id, read, write).await;
                }
                Ok(Err(why)) => tracing::warn!(%peer, %why, "pages port: link refused"),
                Err(_) => tracing::warn!(%peer, "pages port: no hello in time; closed"),
            }
        });
    }
}

/// Reads a link's id, finds the key of the migration it names, and checks
/// and answers its hello.
async fn prove(
    mut stream: TcpStream,
    ctx: &AgentContext,
) -> Result<(String, sealed_link::Link), String> {
    let id = read_id(&mut stream).await.ok_or("no migration id")?;
    let key = ctx
        .page_channels
        .key_of(&id)
        .ok_or_else(|| format!("no migration {id} waits for a direct link here"))?;
    let link = sealed_link::accept(stream, &id, &key)
        .await
        .map_err(|e| e.to_string())?;
    Ok((id, link))
}

/// The links that have not yet proved their key, by address.
#[derive(Default, Clone)]
struct Unproved(Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>);

/// One unproved link's place, given back when dropped.
struct Place(Unproved, std::net::IpAddr);

impl Unproved {
    /// A place for a link from `ip`, if its address and the port have one.
    fn admit(&self, ip: std::net::IpAddr) -> Option<Place> {
        let mut by = self.0.lock().ok()?;
        let all: usize = by.values().sum();
        let here = by.entry(ip).or_default();
        if *here >= UNPROVED_PER_ADDRESS || all >= UNPROVED {
            return None;
        }
        *here += 1;
        Some(Place(self.clone(), ip))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Ok(mut by) = self.0.0.lock()
            && let Some(n) = by.get_mut(&self.1)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by.remove(&self.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strangers_from_one_address_cannot_take_the_places_of_others() {
        let u = Unproved::default();
        let stranger: std::net::IpAddr = "10.0.0.66".parse().unwrap();
        let node: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<Place> = (0..UNPROVED_PER_ADDRESS)
            .map(|_| u.admit(stranger).unwrap())
            .collect();
        assert!(u.admit(stranger).is_none(), "one address, too many");
        let mine = u.admit(node).expect("another address still gets a place");
        drop(held);
        assert!(u.admit(stranger).is_some(), "places come back when dropped");
        drop(mine);
        assert_eq!(u.0.lock().unwrap().get(&node), None);
    }
}
