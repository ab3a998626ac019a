//! The source's side of a post-copy migration: CRIU serving the frozen
//! tree's memory through the bridge, and how the pull ended, which decides
//! whether the frozen copy ends or resumes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite};

use super::super::wire::{self, Msg};
use super::{Bridged, LazyCriu, PULL_STALL, Traffic, Watch};

/// How long CRIU may take to end once its socket closed or its part is done.
const CRIU_END: Duration = Duration::from_secs(30);
/// How long the source waits for the target's word once the bridge ended.
const LAST_WORD: Duration = Duration::from_secs(5);

/// A lazy checkpoint serving the frozen tree's memory over the bridge.
pub struct Serving {
    criu: tokio::process::Child,
    bridge: tokio::task::JoinHandle<Bridged>,
    dir: PathBuf,
}

/// How a pull ended, as the source sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEnd {
    /// The target has every page (the bytes it counted).
    Complete(u64),
    /// The target ended its copy (why): the frozen copy here continues.
    Failed(String),
    /// The target may have every page (this CRIU answered its last request)
    /// but its word was lost: ask it.
    InDoubt(String),
    /// The pull broke before this CRIU answered the last request, so the
    /// target cannot have every page and ends its copy: the frozen copy
    /// here continues once the target has had time to do so (why).
    Broken(String),
}

impl Serving {
    /// Bridges `dump` (CRIU serving the memory) to the pages channel,
    /// counting the pages that go in `traffic`.
    pub fn start<R, W>(dump: LazyCriu, read: R, write: W, dir: &Path, traffic: Arc<Traffic>) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let bridge = tokio::spawn(super::bridge(
            dump.socket,
            read,
            write,
            traffic,
            None,
            Watch::PULL,
        ));
        Self {
            criu: dump.child,
            bridge,
            dir: dir.to_path_buf(),
        }
    }

    /// Before the commit: the move failed. CRIU is made to let the tree go
    /// (its socket closes, it leaves the tree stopped and ends); the caller
    /// then resumes the tree.
    pub async fn abandon(mut self) {
        self.bridge.abort();
        self.end_criu().await;
    }

    /// Waits for CRIU to end; kills it past [`CRIU_END`].
    async fn end_criu(&mut self) {
        match tokio::time::timeout(CRIU_END, self.criu.wait()).await {
            Ok(Ok(s)) if !s.success() => tracing::warn!(
                error = %super::super::criu_cmd::log_errors(&self.dir.join("dump.log")),
                "CRIU's page server failed"
            ),
            Ok(_) => {}
            Err(_) => {
                tracing::error!("CRIU's page server did not end; killed");
                let _ = self.criu.kill().await;
            }
        }
    }

    /// After the commit: waits until the target says every page arrived or
    /// its copy ended, or the pull breaks; CRIU has ended when this returns.
    pub async fn outcome<R: AsyncBufRead + Unpin>(mut self, control: &mut R) -> PullEnd {
        let recv = wire::recv(control);
        tokio::pin!(recv);
        let mut bridged: Option<Bridged> = None;
        let mut bridge_ended = false;
        let word = tokio::select! {
            m = &mut recv => Some(m),
            b = &mut self.bridge => {
                bridged = b.ok();
                bridge_ended = true;
                None
            }
        };
        let word = match word {
            Some(m) => Some(m),
            None => tokio::time::timeout(LAST_WORD, &mut recv).await.ok(),
        };
        let end = match word {
            Some(Ok(Msg::Pulled { bytes })) => PullEnd::Complete(bytes),
            Some(Ok(Msg::Failed { reason })) => PullEnd::Failed(reason),
            other => {
                let why = match other {
                    Some(Ok(m)) => format!("unexpected message during the pull: {m:?}"),
                    Some(Err(e)) => format!("the target agent went away during the pull ({e})"),
                    None => "the target agent said nothing once the pull ended".into(),
                };
                // Did this CRIU answer the last request (and close its end)?
                if !bridge_ended {
                    bridged = tokio::time::timeout(PULL_STALL, &mut self.bridge)
                        .await
                        .ok()
                        .and_then(Result::ok);
                }
                match bridged {
                    Some(Bridged {
                        local_closed: true, ..
                    }) => PullEnd::InDoubt(why),
                    Some(Bridged {
                        problem: Some(p), ..
                    }) => PullEnd::Broken(format!("{why}: {p}")),
                    _ => PullEnd::Broken(why),
                }
            }
        };
        // CRIU lets the tree go (stopped) once its socket closes; the
        // ledger's decision then ends or resumes it.
        self.bridge.abort();
        self.end_criu().await;
        end
    }
}
