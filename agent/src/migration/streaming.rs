//! Streaming pre-copy: the checkpoint's memory goes to the target while CRIU
//! reads it, instead of into files that are sent afterwards. The source runs
//! `criu dump --page-server --ps-socket`; the target runs `criu page-server
//! --ps-socket`, which writes the memory images into the migration's image
//! directory. Both sockets are bridged over the migration's pages path (the
//! direct sealed link, or the `openmosix-pages` SSH channel:
//! [`super::pages_path`]) by [`postcopy::bridge`], as in post-copy: dump and
//! transfer overlap, and only the small non-memory images follow in `files`.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::criu_cmd::{self, Dumped};
use super::postcopy::{self, Bridged, ChannelArrived, Traffic, Watch};

/// How long the page server may take to end once the checkpoint is done
/// (it has flushed every page by then, so at once).
const SERVER_END: Duration = Duration::from_secs(30);

/// Source: checkpoints `what` into `dir`, its memory going over `channel`
/// to the target's page server as it is read (counted in `traffic`).
/// Returns the time taken (ms). On failure CRIU resumes the tree, as after
/// any failed checkpoint.
pub async fn dump(
    criu: &Path,
    what: Dumped,
    dir: &Path,
    channel: super::pages_path::PagesPath,
    traffic: Arc<Traffic>,
) -> Result<u64, String> {
    let t = Instant::now();
    let (socket, theirs) = postcopy::socket_pair()?;
    let mut child = criu_cmd::spawn_streamed_dump(criu, what, dir, theirs.as_raw_fd())?;
    // Only CRIU holds its end now: the bridge ends when CRIU does.
    drop(theirs);
    let bridge = postcopy::bridge(
        socket,
        channel.read,
        channel.write,
        traffic,
        None,
        Watch::STREAM,
    );
    // When the bridge breaks it drops CRIU's peer socket, so CRIU's next
    // write fails and it ends (resuming the tree).
    let (status, bridged) = tokio::join!(child.wait(), bridge);
    let ok = status.as_ref().is_ok_and(|s| s.success());
    if !ok {
        let mut why = criu_cmd::log_errors(&dir.join("dump.log"));
        if let Some(p) = bridged.problem {
            why = format!("{why} ({p})");
        }
        return Err(format!("CRIU could not checkpoint it: {why}"));
    }
    Ok(t.elapsed().as_millis() as u64)
}

/// Target: CRIU's page server writing a streamed checkpoint's memory into
/// the image directory, bridged to the source's pages channel. Killed if
/// dropped before [`PageServer::finish`].
pub struct PageServer {
    child: tokio::process::Child,
    dir: PathBuf,
    bridged: oneshot::Receiver<Bridged>,
    traffic: Arc<Traffic>,
    finished: bool,
}

impl PageServer {
    /// Waits for the source's pages channel and starts the page server on
    /// `dir`, bridged to it.
    pub async fn start(
        criu: &Path,
        dir: &Path,
        channel: oneshot::Receiver<ChannelArrived>,
    ) -> Result<Self, String> {
        let arrived = postcopy::wait_channel(channel).await?;
        let (socket, theirs) = postcopy::socket_pair()?;
        let mut child = criu_cmd::spawn_page_server(criu, dir, theirs.as_raw_fd())?;
        drop(theirs);
        let Some(bridging) = postcopy::hand_to_bridge(arrived, socket, Watch::STREAM) else {
            let _ = child.start_kill();
            return Err("the pages channel closed before the checkpoint began".into());
        };
        Ok(Self {
            child,
            dir: dir.to_path_buf(),
            bridged: bridging.ended,
            traffic: bridging.traffic,
            finished: false,
        })
    }

    /// The source's checkpoint is done: waits for the page server to end and
    /// returns the bytes that came over the channel, or CRIU's words.
    pub async fn finish(&mut self) -> Result<u64, String> {
        let status = tokio::time::timeout(SERVER_END, self.child.wait()).await;
        self.finished = true;
        match status {
            Ok(Ok(s)) if s.success() => Ok(self.traffic.received.load(Ordering::Relaxed)),
            Ok(_) => {
                let mut why = criu_cmd::log_errors(&self.dir.join("page-server.log"));
                if let Ok(Bridged {
                    problem: Some(p), ..
                }) = self.bridged.try_recv()
                {
                    why = format!("{why} ({p})");
                }
                Err(format!("CRIU's page server failed: {why}"))
            }
            Err(_) => {
                let _ = self.child.start_kill();
                Err(format!(
                    "CRIU's page server did not end within {SERVER_END:?} of the checkpoint"
                ))
            }
        }
    }

    /// Ends the page server at once (the `break-stream` test fault).
    pub fn stop(&mut self) {
        let _ = self.child.start_kill();
    }

    /// The source fell back to files: the page server is ended and waited
    /// for, so that nothing it writes lands after the directory is cleared.
    pub async fn abandon(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(SERVER_END, self.child.wait()).await;
        self.finished = true;
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.start_kill();
        }
    }
}
