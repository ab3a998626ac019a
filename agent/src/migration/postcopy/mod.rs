//! Post-copy's moving parts. At the source, CRIU's lazy checkpoint serves the
//! frozen tree's memory on a socket; at the target, CRIU's lazy-pages daemon
//! pulls it into the restored copy, in the background and on faults. The
//! agents carry that traffic over the migration's pages path ([`bridge`]):
//! the direct sealed link ([`super::pages_path`]) or the `openmosix-pages`
//! SSH channel of the migration's session, never over a port of CRIU's own. The
//! target's copy is guarded by `openmosix-pullguard` ([`PullGuard`]), which
//! ends it should the target agent die with pages still missing.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

pub mod source;
pub mod target;

/// How long a bridge waits for the other node while the pull is on (the
/// lazy-pages daemon asks for pages without pause until it has them all).
pub const PULL_STALL: Duration = Duration::from_secs(10);

/// How long a bridge waits, after the other node ended its stream, for the
/// local CRIU to close its end (at once when its part is done).
const END_GRACE: Duration = Duration::from_secs(2);

/// The pull's rate under the `slow-pull` test fault (bytes a second).
const SLOW_PULL_RATE: u64 = 4 << 20;

/// How long the target waits for the source to open the pages channel.
const CHANNEL_WAIT: Duration = Duration::from_secs(30);

/// A close-on-exec pipe, or why not.
fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    crate::helpers::cloexec_pipe().map_err(|e| format!("cannot make a pipe: {e}"))
}

/// A connected socket pair: the agent's end (for tokio) and CRIU's.
pub(super) fn socket_pair() -> Result<(tokio::net::UnixStream, OwnedFd), String> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| format!("cannot make a socket pair: {e}"))?;
    ours.set_nonblocking(true)
        .map_err(|e| format!("cannot make a socket pair: {e}"))?;
    let ours = tokio::net::UnixStream::from_std(ours)
        .map_err(|e| format!("cannot make a socket pair: {e}"))?;
    Ok((ours, OwnedFd::from(theirs)))
}

/// Waits until CRIU writes its status byte (true) or closes the pipe
/// without one: it failed or exited (false).
async fn status_ready(read: OwnedFd) -> bool {
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::from(read);
        let mut b = [0u8; 1];
        std::io::Read::read(&mut f, &mut b).is_ok_and(|n| n == 1)
    })
    .await
    .unwrap_or(false)
}

/// A running CRIU (lazy checkpoint or lazy-pages daemon) and the agent's end
/// of its page socket.
pub struct LazyCriu {
    /// The CRIU process.
    pub child: tokio::process::Child,
    /// The agent's end of the socket CRIU serves or pulls pages on.
    pub socket: tokio::net::UnixStream,
}

/// Starts CRIU with a fresh page socket and status pipe (`spawn` gets CRIU's
/// ends) and waits until it says it is ready; CRIU's error lines if it ends
/// first.
async fn start_ready<F>(dir: &Path, log: &str, spawn: F) -> Result<LazyCriu, String>
where
    F: FnOnce(i32, i32) -> Result<tokio::process::Child, String>,
{
    let (socket, theirs) = socket_pair()?;
    let (status_read, status_write) = pipe()?;
    let mut child = spawn(theirs.as_raw_fd(), status_write.as_raw_fd())?;
    // Only CRIU holds them now: its exit closes the status pipe.
    drop((theirs, status_write));
    if status_ready(status_read).await {
        return Ok(LazyCriu { child, socket });
    }
    let _ = child.wait().await;
    Err(super::criu_cmd::log_errors(&dir.join(log)))
}

/// Source: checkpoints `what` lazily into `dir` and waits until every image
/// but memory is written; CRIU then serves the memory on the returned socket.
pub async fn start_lazy_dump(
    criu: &Path,
    what: super::criu_cmd::Dumped,
    dir: &Path,
) -> Result<LazyCriu, String> {
    start_ready(dir, "dump.log", |ps_socket, status| {
        super::criu_cmd::spawn_lazy_dump(
            criu,
            what,
            dir,
            super::criu_cmd::LazyFds { ps_socket, status },
        )
    })
    .await
    .map_err(|e| format!("CRIU could not checkpoint it: {e}"))
}

/// Target: starts the lazy-pages daemon on the images in `dir` and waits
/// until it listens for the restore.
pub async fn start_lazy_daemon(criu: &Path, dir: &Path) -> Result<LazyCriu, String> {
    start_ready(dir, "lazy-pages.log", |ps_socket, status| {
        super::criu_cmd::spawn_lazy_daemon(criu, dir, ps_socket, status)
    })
    .await
    .map_err(|e| format!("CRIU's lazy-pages daemon could not start: {e}"))
}

/// The bytes a bridge carried, each way, as they go.
#[derive(Debug, Default)]
pub struct Traffic {
    /// From the other node to the local CRIU.
    pub received: AtomicU64,
    /// From the local CRIU to the other node.
    pub sent: AtomicU64,
}

/// How a bridge tells a dead or stuck other node: it must take the bytes
/// sent to it within `stall`, and answer within `stall` of the first bytes
/// left unanswered (`every_request`: a pull, whose every request is answered
/// at once) or of the last bytes sent (a stream of pages, answered only
/// when the sender stops and waits, at its start and end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// The longest wait.
    pub stall: Duration,
    /// Whether each request expects its answer before the next counts.
    pub every_request: bool,
}

impl Watch {
    /// A pull: every request is answered within [`PULL_STALL`].
    pub const PULL: Self = Self {
        stall: PULL_STALL,
        every_request: true,
    };
    /// A stream: the other node keeps taking the bytes, and answers within
    /// [`PULL_STALL`] once the sender waits.
    pub const STREAM: Self = Self {
        stall: PULL_STALL,
        every_request: false,
    };
}

/// How a bridge ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bridged {
    /// The local CRIU closed its socket: it finished its part of the pull.
    pub local_closed: bool,
    /// What went wrong with the other node, if anything did.
    pub problem: Option<String>,
}

/// Carries the bytes between the local CRIU's socket and the other node's
/// channel, counting them each way in `traffic`, until the local CRIU
/// closes its end (its part is done) or the other node goes away, takes no
/// bytes for `watch.stall`, or leaves bytes sent to it unanswered that long
/// ([`Watch`]). It never shuts the local socket down: whether CRIU may see
/// it close is the caller's decision (a second descriptor of it may be held
/// elsewhere).
pub async fn bridge<R, W>(
    local: tokio::net::UnixStream,
    mut remote_r: R,
    mut remote_w: W,
    traffic: Arc<Traffic>,
    throttle: Option<u64>,
    watch: Watch,
) -> Bridged
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut lr, mut lw) = local.into_split();
    let stall = watch.stall;
    let began = tokio::time::Instant::now();
    let since = || began.elapsed().as_millis() as u64 + 1;
    // When bytes went to the other node with nothing back since (ms after
    // `began`, plus one; 0: nothing awaited). The pull stalls when an answer
    // takes longer than `stall`; before the first request (the target
    // still restoring) nothing is awaited, however long that takes.
    let awaiting = AtomicU64::new(0);
    // Local to remote: ends when CRIU closes its end (Ok) or the remote
    // does not take the bytes (Err).
    let up = async {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match lr.read(&mut buf).await {
                Ok(n) if n > 0 => n,
                // CRIU closed its end (or is gone): its part is done, and the
                // other node is told so (a direct link's end record).
                _ => {
                    let _ = tokio::time::timeout(stall, remote_w.shutdown()).await;
                    return Ok(());
                }
            };
            let chunk = buf.get(..n).unwrap_or_default();
            match tokio::time::timeout(stall, remote_w.write_all(chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("the other node went away ({e})")),
                Err(_) => {
                    return Err(format!("the other node took no data for {stall:?}"));
                }
            }
            if let Err(e) = remote_w.flush().await {
                return Err(format!("the other node went away ({e})"));
            }
            traffic.sent.fetch_add(n as u64, Ordering::Relaxed);
            if watch.every_request {
                let _ = awaiting.compare_exchange(0, since(), Ordering::Relaxed, Ordering::Relaxed);
            } else {
                awaiting.store(since(), Ordering::Relaxed);
            }
        }
    };
    // Remote to local: ends at the remote's end of stream (Ok) or when it
    // breaks or stalls (Err).
    let down = async {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        let stall_ms = stall.as_millis() as u64;
        loop {
            // `read` is cancel-safe: a tick without data loses nothing.
            let n =
                match tokio::time::timeout(Duration::from_secs(1), remote_r.read(&mut buf)).await {
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => return Err(format!("the other node went away ({e})")),
                    Err(_) => {
                        let w = awaiting.load(Ordering::Relaxed);
                        if w != 0 && since().saturating_sub(w) > stall_ms {
                            return Err(format!("the other node has not answered for {stall:?}"));
                        }
                        continue;
                    }
                };
            awaiting.store(0, Ordering::Relaxed);
            traffic.received.fetch_add(n as u64, Ordering::Relaxed);
            total += n as u64;
            if let Some(rate) = throttle.filter(|r| *r > 0) {
                let due = began + Duration::from_secs_f64(total as f64 / rate as f64);
                tokio::time::sleep_until(due).await;
            }
            if lw
                .write_all(buf.get(..n).unwrap_or_default())
                .await
                .is_err()
            {
                // CRIU is gone; `up` sees its end close.
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::pin!(up, down);
    let mut remote_ended = false;
    loop {
        tokio::select! {
            r = &mut up => {
                return Bridged {
                    local_closed: r.is_ok(),
                    problem: r.err(),
                };
            }
            r = &mut down, if !remote_ended => {
                match r {
                    Ok(()) => remote_ended = true,
                    Err(problem) => {
                        return Bridged {
                            local_closed: false,
                            problem: Some(problem),
                        };
                    }
                }
            }
            // The other node ended its stream: the local CRIU, if its part is
            // done, closes its end at once.
            _ = tokio::time::sleep(END_GRACE), if remote_ended => {
                return Bridged {
                    local_closed: false,
                    problem: Some("the other node ended the page stream before the pull finished".into()),
                };
            }
        }
    }
}

/// A second descriptor of the agent's end of a page socket, for the guard.
pub fn second_descriptor(socket: &tokio::net::UnixStream) -> Result<OwnedFd, String> {
    socket
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot share the page socket: {e}"))
}

/// `openmosix-pullguard` watching a restored copy whose memory is being
/// pulled: it ends the copy if this agent dies first. [`PullGuard::release`]
/// lets it go; dropping the guard unreleased makes it end the copy (the
/// caller has ended it already).
pub struct PullGuard {
    /// The guard's pipe from this agent: `r` releases, a close ends the copy.
    control: OwnedFd,
}

impl PullGuard {
    /// Starts the guard for the tree rooted at `root`, holding `hold` (a
    /// second descriptor of the agent's end of the lazy-pages daemon's
    /// socket, from [`second_descriptor`]). The agent's reaper collects it
    /// once it has exited.
    pub fn start(
        program: &Path,
        root: i32,
        hold: OwnedFd,
        jobs: &crate::jobs::Jobs,
    ) -> Result<Self, String> {
        let pidfd = crate::sampler::pidfd_open(root)
            .ok_or_else(|| format!("cannot watch the restored process {root}"))?;
        let (control_read, control) = pipe()?;
        let keep = [
            control_read.as_raw_fd(),
            pidfd.as_raw_fd(),
            hold.as_raw_fd(),
        ];
        let mut cmd = crate::helpers::root_command(program);
        cmd.args(["--control", &keep[0].to_string()])
            .args(["--pidfd", &keep[1].to_string()])
            .args(["--hold", &keep[2].to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: setsid and keep_across_exec are async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                libc::setsid();
                crate::helpers::keep_across_exec(&keep)
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        // Not waited for here: the jobs loop reaps it with the other strays.
        jobs.add_stray(child.id() as i32);
        Ok(Self { control })
    }

    /// The copy has all its memory (or was ended here): the guard leaves.
    pub fn release(self) {
        let mut f = std::fs::File::from(self.control);
        let _ = std::io::Write::write_all(&mut f, b"r");
    }
}

/// What a target's migration hands the pages channel that arrived for it:
/// its CRIU's socket to bridge (the lazy-pages daemon's or the page
/// server's), and where to count and report.
pub struct BridgeJob {
    /// The agent's end of the local CRIU's socket.
    pub socket: tokio::net::UnixStream,
    /// Bytes from the source, counted as they arrive.
    pub traffic: Arc<Traffic>,
    /// How the bridge judges the source.
    pub watch: Watch,
    /// How the bridge ended.
    pub result: oneshot::Sender<Bridged>,
}

/// A pages channel that arrived: it waits for its [`BridgeJob`].
pub type ChannelArrived = oneshot::Sender<BridgeJob>;

/// A local CRIU's socket bridged to a pages channel: the bytes carried so
/// far, and how the bridge ended once it has.
pub struct Bridging {
    /// The bytes carried, each way.
    pub traffic: Arc<Traffic>,
    /// How the bridge ended.
    pub ended: oneshot::Receiver<Bridged>,
}

/// Hands `socket` to the bridge of the pages channel that `arrived`,
/// judged by `watch`; None when that channel has closed already.
pub fn hand_to_bridge(
    arrived: ChannelArrived,
    socket: tokio::net::UnixStream,
    watch: Watch,
) -> Option<Bridging> {
    let (result, ended) = oneshot::channel();
    let traffic = Arc::new(Traffic::default());
    let job = BridgeJob {
        socket,
        traffic: traffic.clone(),
        watch,
        result,
    };
    arrived.send(job).ok()?;
    Some(Bridging { traffic, ended })
}

/// Target: the migrations waiting for their pages channel, by id, with the
/// key of their direct link if they have one.
#[derive(Default)]
pub struct PageChannels {
    waiting: Mutex<HashMap<String, Waiting>>,
}

/// A migration waiting for its pages channel.
struct Waiting {
    arrived: oneshot::Sender<ChannelArrived>,
    key: Option<super::sealed_link::LinkKey>,
}

impl PageChannels {
    /// Registers migration `id` (with its direct link's key, if any); the
    /// receiver gets its channel, whichever way it comes.
    pub fn expect(
        &self,
        id: &str,
        key: Option<super::sealed_link::LinkKey>,
    ) -> oneshot::Receiver<ChannelArrived> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(id.to_string(), Waiting { arrived: tx, key });
        }
        rx
    }

    /// The direct link key of migration `id`, while it waits.
    pub fn key_of(&self, id: &str) -> Option<super::sealed_link::LinkKey> {
        self.waiting
            .lock()
            .ok()
            .and_then(|w| w.get(id).and_then(|m| m.key.clone()))
    }

    /// Forgets migration `id` (over, or never got its channel).
    pub fn forget(&self, id: &str) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(id);
        }
    }

    /// Hands a channel to migration `id`; false when no migration waits for it.
    fn hand_over(&self, id: &str, ch: ChannelArrived) -> bool {
        let tx = self.waiting.lock().ok().and_then(|mut w| w.remove(id));
        tx.is_some_and(|m| m.arrived.send(ch).is_ok())
    }
}

/// Target: waits for migration `id`'s pages channel.
pub async fn wait_channel(rx: oneshot::Receiver<ChannelArrived>) -> Result<ChannelArrived, String> {
    match tokio::time::timeout(CHANNEL_WAIT, rx).await {
        Ok(Ok(ch)) => Ok(ch),
        _ => Err(format!(
            "the source opened no pages channel within {CHANNEL_WAIT:?}"
        )),
    }
}

/// Serves one `openmosix-pages` channel: its first line names the migration
/// (32 hex digits); once that migration hands it the lazy-pages daemon's
/// socket, it carries the pages until the bridge ends.
pub async fn serve_channel<R, W>(mut read: R, write: W, ctx: Arc<crate::context::AgentContext>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let named = tokio::time::timeout(
        Duration::from_secs(30),
        super::pages_path::read_id(&mut read),
    );
    let Ok(Some(id)) = named.await else {
        tracing::warn!("a pages channel without a migration id; closed");
        return;
    };
    carry(&ctx, &id, read, write).await;
}

/// Hands a pages channel (or direct link) to migration `id`, and once that
/// migration hands it its CRIU's socket, carries the pages until the bridge
/// ends.
pub async fn carry<R, W>(ctx: &crate::context::AgentContext, id: &str, read: R, write: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = oneshot::channel();
    if !ctx.page_channels.hand_over(id, tx) {
        tracing::warn!(id, "a pages channel for no migration waiting here; closed");
        return;
    }
    let Ok(job) = rx.await else {
        return;
    };
    let throttle = (ctx.fault == Some(super::Fault::SlowPull)).then_some(SLOW_PULL_RATE);
    let bridged = bridge(job.socket, read, write, job.traffic, throttle, job.watch).await;
    let _ = job.result.send(bridged);
}

/// Source: opens the pages channel of migration `id` on `session`.
pub async fn open_channel(
    session: &hpc::client::Client,
    id: &str,
) -> Result<russh::ChannelStream<russh::client::Msg>, String> {
    let mut stream = session
        .open_channel(hpc::paths::PAGES_SUBSYSTEM)
        .await
        .map_err(|e| format!("cannot open the pages channel: {e}"))?;
    stream
        .write_all(format!("{id}\n").as_bytes())
        .await
        .map_err(|e| format!("cannot open the pages channel: {e}"))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bridge_carries_both_ways_until_the_local_side_closes() {
        let (local, mut criu) = tokio::net::UnixStream::pair().unwrap();
        let (remote, mut peer) = tokio::io::duplex(1 << 16);
        let (rr, rw) = tokio::io::split(remote);
        let got = Arc::new(Traffic::default());
        let task = tokio::spawn(bridge(local, rr, rw, got.clone(), None, Watch::PULL));
        peer.write_all(b"request").await.unwrap();
        let mut b = [0u8; 7];
        criu.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"request");
        criu.write_all(b"pages").await.unwrap();
        let mut p = [0u8; 5];
        peer.read_exact(&mut p).await.unwrap();
        assert_eq!(&p, b"pages");
        drop(criu);
        let r = task.await.unwrap();
        assert_eq!(
            r,
            Bridged {
                local_closed: true,
                problem: None
            }
        );
        assert_eq!(got.received.load(Ordering::Relaxed), 7);
        assert_eq!(got.sent.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn a_bridge_whose_other_node_breaks_reports_it_and_leaves_the_local_socket_open() {
        let (local, mut criu) = tokio::net::UnixStream::pair().unwrap();
        let (remote, peer) = tokio::io::duplex(1 << 16);
        let (rr, rw) = tokio::io::split(remote);
        let task = tokio::spawn(bridge(local, rr, rw, Arc::default(), None, Watch::PULL));
        drop(peer);
        let r = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap();
        assert!(!r.local_closed);
        assert!(r.problem.is_some(), "{r:?}");
        // CRIU's end saw no close from the bridge: it would still be waiting.
        let mut b = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(200), criu.read(&mut b)).await;
        assert!(read.is_err() || read.is_ok_and(|r| r.is_ok_and(|n| n == 0)));
    }

    /// A bridge whose local side sends a request the other node never
    /// answers ends within 10 s, saying so, without closing the local side.
    async fn unanswered_request_stalls(watch: Watch) {
        let (local, mut criu) = tokio::net::UnixStream::pair().unwrap();
        let (remote, _peer) = tokio::io::duplex(1 << 16);
        let (rr, rw) = tokio::io::split(remote);
        let waiting = tokio::spawn(bridge(local, rr, rw, Arc::default(), None, watch));
        criu.write_all(b"request").await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the stall ends the bridge")
            .unwrap();
        assert!(!r.local_closed);
        assert!(
            r.problem
                .as_deref()
                .is_some_and(|p| p.contains("not answered")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_bridge_waits_for_the_first_request_but_not_for_an_answer() {
        let stall = Watch {
            stall: Duration::from_secs(2),
            every_request: true,
        };
        // Nothing sent, nothing awaited (the target still restoring): no stall.
        let (local, _criu) = tokio::net::UnixStream::pair().unwrap();
        let (remote, _peer) = tokio::io::duplex(1 << 16);
        let (rr, rw) = tokio::io::split(remote);
        let idle = tokio::spawn(bridge(local, rr, rw, Arc::default(), None, stall));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!idle.is_finished(), "an idle bridge gave up");
        idle.abort();
        // A request sent and never answered: a stall.
        unanswered_request_stalls(stall).await;
    }

    #[tokio::test]
    async fn a_stream_expects_an_answer_only_once_its_sender_waits() {
        let watch = Watch {
            stall: Duration::from_secs(1),
            every_request: false,
        };
        // Bytes streamed for three stall limits with no answer: still on.
        let (local, mut criu) = tokio::net::UnixStream::pair().unwrap();
        let (remote, mut peer) = tokio::io::duplex(1 << 16);
        let (rr, rw) = tokio::io::split(remote);
        let streaming = tokio::spawn(bridge(local, rr, rw, Arc::default(), None, watch));
        let drain = tokio::spawn(async move {
            let mut sink = vec![0u8; 1 << 16];
            let mut got = 0;
            while let Ok(n) = peer.read(&mut sink).await {
                if n == 0 {
                    break;
                }
                got += n;
            }
            got
        });
        for _ in 0..30 {
            criu.write_all(&[7u8; 4096]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!streaming.is_finished(), "a stream was taken for a stall");
        drop(criu);
        let r = streaming.await.unwrap();
        assert_eq!(
            r,
            Bridged {
                local_closed: true,
                problem: None
            }
        );
        drop(drain);
        // A taker that stops taking: the stall.
        let (local, mut criu) = tokio::net::UnixStream::pair().unwrap();
        let (remote, _peer) = tokio::io::duplex(1 << 12);
        let (rr, rw) = tokio::io::split(remote);
        let stuck = tokio::spawn(bridge(local, rr, rw, Arc::default(), None, watch));
        let writer = tokio::spawn(async move {
            let chunk = [7u8; 4096];
            while criu.write_all(&chunk).await.is_ok() {}
        });
        let r = tokio::time::timeout(Duration::from_secs(10), stuck)
            .await
            .expect("the stall ends the bridge")
            .unwrap();
        assert!(
            r.problem
                .as_deref()
                .is_some_and(|p| p.contains("took no data")),
            "{r:?}"
        );
        writer.abort();
        // A sender that stopped to wait for an answer that never comes.
        unanswered_request_stalls(watch).await;
    }

    #[test]
    fn channels_go_only_to_the_migration_waiting_for_them() {
        let chans = PageChannels::default();
        let key = super::super::sealed_link::LinkKey::new().unwrap();
        let mut rx = chans.expect("a".repeat(32).as_str(), Some(key.clone()));
        assert_eq!(chans.key_of(&"a".repeat(32)), Some(key));
        assert_eq!(chans.key_of(&"b".repeat(32)), None);
        assert!(!chans.hand_over(&"b".repeat(32), oneshot::channel().0));
        assert!(chans.hand_over(&"a".repeat(32), oneshot::channel().0));
        assert!(rx.try_recv().is_ok());
        assert!(!chans.hand_over(&"a".repeat(32), oneshot::channel().0));
        assert_eq!(
            chans.key_of(&"a".repeat(32)),
            None,
            "handed over: no second link"
        );
    }
}
