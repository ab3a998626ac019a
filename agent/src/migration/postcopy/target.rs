//! The target's side of a post-copy migration: the lazy-pages daemon bridged
//! to the source over the pages channel, the guard of the restored copy, and
//! the wait for the last page.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Bridged, ChannelArrived, PullGuard, Traffic, Watch};

/// How long the daemon and the bridge may take to both end once one has.
const BOTH_END: Duration = Duration::from_secs(5);

/// A restored copy's pull in progress: CRIU's lazy-pages daemon, the
/// bridge's outcome, the bytes it has brought, and the copy's guard.
pub struct Pull {
    daemon: tokio::process::Child,
    dir: PathBuf,
    /// A second descriptor of the daemon's socket, until the guard holds it:
    /// while it is open the daemon cannot see the socket close.
    hold: Option<OwnedFd>,
    bridged: oneshot::Receiver<Bridged>,
    traffic: Arc<Traffic>,
    guard: Option<PullGuard>,
}

impl Pull {
    /// Waits for the source's pages channel, starts the lazy-pages daemon on
    /// the images in `dir` and bridges the two.
    pub async fn start(
        criu: &Path,
        dir: &Path,
        channel: oneshot::Receiver<ChannelArrived>,
    ) -> Result<Self, String> {
        let arrived = super::wait_channel(channel).await?;
        let daemon = super::start_lazy_daemon(criu, dir).await?;
        let hold = super::second_descriptor(&daemon.socket)?;
        let mut child = daemon.child;
        let Some(bridging) = super::hand_to_bridge(arrived, daemon.socket, Watch::PULL) else {
            let _ = child.start_kill();
            return Err("the pages channel closed before the pull began".into());
        };
        Ok(Self {
            daemon: child,
            dir: dir.to_path_buf(),
            hold: Some(hold),
            bridged: bridging.ended,
            traffic: bridging.traffic,
            guard: None,
        })
    }

    /// Puts the restored tree rooted at `root` under the guard's watch.
    pub fn guard(
        &mut self,
        program: &Path,
        root: i32,
        jobs: &crate::jobs::Jobs,
    ) -> Result<(), String> {
        let hold = self
            .hold
            .take()
            .ok_or_else(|| "the copy is guarded already".to_string())?;
        self.guard = Some(PullGuard::start(program, root, hold, jobs)?);
        Ok(())
    }

    /// Memory bytes that have arrived so far.
    pub fn received(&self) -> u64 {
        self.traffic.received.load(Ordering::Relaxed)
    }

    /// Waits until every page has arrived (the bytes) or the pull broke
    /// (why). The copy is still guarded either way: [`Pull::release`] it
    /// once complete, or end it before dropping this.
    pub async fn finish(&mut self) -> Result<u64, String> {
        let outcome = tokio::select! {
            status = self.daemon.wait() => {
                let ok = status.as_ref().is_ok_and(|s| s.success());
                if !ok {
                    Err(super::super::criu_cmd::log_errors(&self.dir.join("lazy-pages.log")))
                } else {
                    // Its last answer still crosses the bridge.
                    match tokio::time::timeout(BOTH_END, &mut self.bridged).await {
                        Ok(Ok(Bridged { problem: None, .. })) => Ok(()),
                        Ok(Ok(Bridged { problem: Some(p), .. })) => Err(p),
                        Ok(Err(_)) => Err("the pages channel closed".into()),
                        // The daemon has every page: the source keeps a
                        // channel open longer, which changes nothing here.
                        Err(_) => Ok(()),
                    }
                }
            }
            bridged = &mut self.bridged => {
                match bridged {
                    Ok(Bridged { problem: Some(p), .. }) => Err(p),
                    Ok(Bridged { problem: None, .. }) => {
                        // The daemon closed its end: it is done, or failed.
                        match tokio::time::timeout(BOTH_END, self.daemon.wait()).await {
                            Ok(Ok(s)) if s.success() => Ok(()),
                            Ok(_) => Err(super::super::criu_cmd::log_errors(
                                &self.dir.join("lazy-pages.log"),
                            )),
                            Err(_) => Err("CRIU's lazy-pages daemon closed its socket but did not end".into()),
                        }
                    }
                    Err(_) => Err("the pages channel closed".into()),
                }
            }
        };
        outcome.map(|()| self.received())
    }

    /// Every page arrived: the guard leaves.
    pub fn release(mut self) {
        if let Some(g) = self.guard.take() {
            g.release();
        }
    }
}

impl Drop for Pull {
    fn drop(&mut self) {
        // Unguarded, the copy has not run yet: the daemon may go. Guarded and
        // not released, the guard ends the copy first (if the caller has not)
        // and only then lets the daemon see its socket close.
        if self.guard.is_none() {
            let _ = self.daemon.start_kill();
        }
    }
}
