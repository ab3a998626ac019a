//! The migration subsystem's messages: one JSON object per line, with the
//! image files' raw bytes between the `files` line and the target's answer.
//!
//! ```text
//! source → target   offer      the job and the size to expect
//! target → source   accept | refuse
//! source → target   pre_files  pre-copy: a pre-dump taken while the job runs, then its bytes
//! target → source   stored | failed
//! source → target   files      the final checkpoint (only what changed since the
//!                              pre-copy): names and sizes, then the bytes of each file
//!                   | abort    (the checkpoint failed)
//! target → source   restored   (running, but stopped) | failed
//! source → target   commit     (the source copy is still frozen)
//! target → source   committed  (the target copy runs; the source kills its copy)
//! ```
//!
//! The memory of both modes below goes on the migration's pages path: the
//! direct sealed link to the target's pages port when `offer` carries a
//! `link_key` and `accept` a `link_port` ([`super::sealed_link`]), else the
//! `openmosix-pages` channel in the same session (first line the id).
//!
//! Streaming pre-copy (`offer` and `accept` say `stream`): the source opens
//! the pages path;
//! its checkpoint sends the memory over it to the target's CRIU page server
//! as it reads it, and `files` (`streamed`) carries the other images.
//!
//! Post-copy (`offer` and `accept` say `postcopy`): the source opens the
//! pages path first, `files` carries every image but memory (`lazy`; the
//! few the lazy-pages daemon reads at its start first), and the target's
//! lazy-pages daemon pulls the memory over that path from the source's
//! frozen copy, from its restore on. After `committed`:
//!
//! ```text
//! target → source   pulled     (every page arrived; the source ends its copy)
//!                   | failed   (the pull broke; the target ended its copy)
//! ```
//! Any break before `commit` is sent leaves the source copy to resume. After
//! it, the source asks again on a new channel until it knows:
//!
//! ```text
//! source → target   resolve {id}
//! target → source   outcome {committed}   (a copy still waiting is ended first)
//! ```

use hpc::model::NodeId;
use hpc::protocol::JobInfo;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest message line.
pub const MAX_LINE: usize = 1 << 20;

/// One image file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageFile {
    /// File name (no directories).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// A message of the migration subsystem.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    /// The source proposes a job.
    Offer {
        /// The migration's id (32 hex digits), for asking about it later.
        #[serde(default)]
        id: String,
        /// The job, with `nmigs` already counting this migration.
        job: Box<JobInfo>,
        /// The source node.
        from: NodeId,
        /// Expected image bytes (the tree's resident memory).
        estimate: u64,
        /// The source would move it post-copy, if the target can.
        #[serde(default)]
        postcopy: bool,
        /// Otherwise the source would stream the checkpoint's memory to the
        /// target's page server, if the target can.
        #[serde(default)]
        stream: bool,
        /// The key of the migration's direct pages link, if the source can
        /// take one (made for this migration; it travels only here, inside
        /// the SSH session).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link_key: Option<super::sealed_link::LinkKey>,
    },
    /// The target takes it.
    Accept {
        /// Post-copy agreed (the source asked and the target can).
        #[serde(default)]
        postcopy: bool,
        /// Streaming agreed (pre-copy): the target's page server waits on
        /// the pages channel, which the source opens next.
        #[serde(default)]
        stream: bool,
        /// The target's pages port, where the source may open the direct
        /// link (sealed with the offer's key) instead of the SSH channel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link_port: Option<u16>,
    },
    /// The target refuses it.
    Refuse {
        /// Why.
        reason: String,
    },
    /// Pre-copy: the images of a pre-dump (taken while the process runs)
    /// follow; the target stores them and answers `stored` or `failed`.
    PreFiles {
        /// In sending order.
        files: Vec<ImageFile>,
    },
    /// The pre-copy images are stored.
    Stored,
    /// The images of the final checkpoint follow.
    Files {
        /// In sending order.
        files: Vec<ImageFile>,
        /// Whether they only hold what changed since the pre-copy images
        /// (their `parent`).
        #[serde(default)]
        parent: bool,
        /// Post-copy: every image but memory, which the target pulls on the
        /// pages channel.
        #[serde(default)]
        lazy: bool,
        /// Streaming: every image but memory, which came over the pages
        /// channel during the checkpoint. Without it after a streaming
        /// `accept`, the source fell back to files and sends the memory here.
        #[serde(default)]
        streamed: bool,
    },
    /// The source gives up (the checkpoint failed).
    Abort {
        /// Why.
        reason: String,
    },
    /// The target restored the job, stopped.
    Restored {
        /// The job's init on the target.
        root_pid: i32,
        /// The job's command on the target.
        pid: i32,
        /// Restore time.
        restore_ms: u64,
        /// Memory bytes that came over the pages channel (streaming).
        #[serde(default)]
        streamed_bytes: u64,
    },
    /// The target could not store or restore the images.
    Failed {
        /// Why (CRIU's own words when CRIU failed).
        reason: String,
    },
    /// The source keeps its copy frozen and hands over.
    Commit,
    /// On a new channel: what did the target decide about migration `id`?
    Resolve {
        /// The migration.
        id: String,
    },
    /// The answer to `resolve`; final.
    Outcome {
        /// Whether the target's copy runs (else it never ran or was ended).
        committed: bool,
    },
    /// The target copy runs.
    Committed {
        /// Time the target spent after resuming the job before answering
        /// (recording it and listing it), not part of the freeze.
        #[serde(default)]
        after_resume_ms: u64,
    },
    /// Post-copy: every page arrived; the target's copy is complete and the
    /// source's frozen copy must end.
    Pulled {
        /// Memory bytes that came over the pages channel.
        bytes: u64,
    },
}

/// Errors of the exchange.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection broke or closed.
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent something else.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Writes one message.
pub async fn send<W: AsyncWrite + Unpin>(w: &mut W, m: &Msg) -> Result<(), WireError> {
    let mut line = serde_json::to_vec(m).map_err(|e| WireError::Protocol(e.to_string()))?;
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one message, of at most [`MAX_LINE`] bytes.
pub async fn recv<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Msg, WireError> {
    let mut line = Vec::new();
    let n = (&mut *r)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    serde_json::from_slice(&line).map_err(|e| WireError::Protocol(e.to_string()))
}
