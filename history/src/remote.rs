//! Reading a history through the collector: the query socket's protocol and
//! both of its ends. A desktop user who may not read the history files (they
//! hold every user's command lines, so they are 0640 root) asks the running
//! collector, which answers members of its reader group (`openmosix` by
//! default) from its own read-only connection.
//!
//! One JSON line each way per connection: a [`Query`], then an [`Answer`].
//! A query names a history by [`HistoryKey`]; the collector answers only for
//! histories of its own database (the current one and its archives).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::events::{Checkpoint, ProcMove};
use crate::overview::{Overview, Report};
use crate::query::{History, ProcessAt, ProcessRecord};
use crate::store::{self, HistoryInfo, HistoryRef, Location};

/// The default query socket of the collector.
pub const DEFAULT_QUERY_SOCKET: &str = "/run/openmosix-history/history.sock";
/// The default group whose members may read the history through it.
pub const DEFAULT_READER_GROUP: &str = "openmosix";
/// Longest query line accepted.
pub const MAX_QUERY_LINE: usize = 4096;
/// Most buckets an overview query may ask for.
pub const MAX_COLUMNS: usize = 4096;

/// A history of the collector's database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryKey {
    /// The SQLite file (the current one or an archive); None for PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Its number in that database.
    pub id: i64,
}

impl HistoryKey {
    /// The key of `h`.
    pub fn of(h: &HistoryRef) -> Self {
        Self {
            file: match &h.location {
                Location::Sqlite(p) => Some(p.display().to_string()),
                Location::Postgres(_) => None,
            },
            id: h.id,
        }
    }
}

/// A history the collector lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// How to name it.
    pub key: HistoryKey,
    /// When it began (ms).
    pub started_ms: i64,
    /// When it was closed (None for the current one).
    pub ended_ms: Option<i64>,
}

/// A question to the collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "query", rename_all = "snake_case")]
pub enum Query {
    /// Every history of its database.
    List,
    /// The first and last sample.
    Span {
        /// Which history (None: the current one).
        history: Option<HistoryKey>,
    },
    /// [`History::overview`].
    Overview {
        /// Which history (None: the current one).
        history: Option<HistoryKey>,
        /// From (ms).
        from: i64,
        /// To (ms).
        to: i64,
        /// Buckets (at most [`MAX_COLUMNS`]).
        columns: usize,
    },
    /// [`History::report`].
    Report {
        /// Which history (None: the current one).
        history: Option<HistoryKey>,
        /// From (ms).
        from: i64,
        /// To (ms).
        to: i64,
    },
    /// [`History::processes_at`] of every node.
    ProcessesAt {
        /// Which history (None: the current one).
        history: Option<HistoryKey>,
        /// The instant (ms).
        t_ms: i64,
    },
    /// [`History::find_process`].
    FindProcess {
        /// Which history (None: the current one).
        history: Option<HistoryKey>,
        /// Home node.
        home: u32,
        /// PID at home.
        home_pid: i32,
    },
    /// [`History::moves`].
    Moves {
        /// Which history (None: the current one).
        history: Option<HistoryKey>,
        /// The process's number.
        id: i64,
    },
    /// [`History::checkpoints`].
    Checkpoints {
        /// Which history (None: the current one).
        history: Option<HistoryKey>,
        /// From (ms).
        from: i64,
        /// To (ms).
        to: i64,
    },
}

/// The collector's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", content = "value", rename_all = "snake_case")]
pub enum Answer {
    /// To [`Query::List`].
    List(Vec<Listed>),
    /// To [`Query::Span`].
    Span(Option<(i64, i64)>),
    /// To [`Query::Overview`].
    Overview(Box<Overview>),
    /// To [`Query::Report`].
    Report(Box<Report>),
    /// To [`Query::ProcessesAt`].
    Processes(Vec<ProcessAt>),
    /// To [`Query::FindProcess`].
    Records(Vec<ProcessRecord>),
    /// To [`Query::Moves`].
    Moves(Vec<ProcMove>),
    /// To [`Query::Checkpoints`].
    Checkpoints(Vec<Checkpoint>),
    /// The query failed; why.
    Error(String),
}

/// The history `key` names among those of `db` (None: the current one).
async fn resolve(db: &Location, key: Option<&HistoryKey>) -> Result<HistoryRef, String> {
    let list = store::list_histories(db).await.map_err(|e| e.to_string())?;
    let found = match key {
        None => list.iter().rev().find(|h| h.ended_ms.is_none()),
        Some(k) => list.iter().find(|h| HistoryKey::of(&h.history) == *k),
    };
    found
        .map(|h| h.history.clone())
        .ok_or_else(|| "no such history in the collector's database".to_string())
}

/// Answers `query` from the database `db` (the collector's side).
pub async fn answer(db: &Location, query: Query) -> Answer {
    match run(db, query).await {
        Ok(a) => a,
        Err(e) => Answer::Error(e),
    }
}

async fn run(db: &Location, query: Query) -> Result<Answer, String> {
    let e = |e: store::StoreError| e.to_string();
    if let Query::List = query {
        let list: Vec<HistoryInfo> = store::list_histories(db).await.map_err(e)?;
        return Ok(Answer::List(
            list.iter()
                .map(|h| Listed {
                    key: HistoryKey::of(&h.history),
                    started_ms: h.started_ms,
                    ended_ms: h.ended_ms,
                })
                .collect(),
        ));
    }
    let key = match &query {
        Query::List => None,
        Query::Span { history }
        | Query::Overview { history, .. }
        | Query::Report { history, .. }
        | Query::ProcessesAt { history, .. }
        | Query::FindProcess { history, .. }
        | Query::Moves { history, .. }
        | Query::Checkpoints { history, .. } => history.clone(),
    };
    let h = History::open(&resolve(db, key.as_ref()).await?)
        .await
        .map_err(e)?;
    let out = match query {
        Query::List => Answer::List(Vec::new()),
        Query::Span { .. } => Answer::Span(h.span().await.map_err(e)?),
        Query::Overview {
            from, to, columns, ..
        } => Answer::Overview(Box::new(
            h.overview(from, to, columns.clamp(1, MAX_COLUMNS))
                .await
                .map_err(e)?,
        )),
        Query::Report { from, to, .. } => {
            Answer::Report(Box::new(h.report(from, to).await.map_err(e)?))
        }
        Query::ProcessesAt { t_ms, .. } => {
            Answer::Processes(h.processes_at(None, t_ms).await.map_err(e)?)
        }
        Query::FindProcess { home, home_pid, .. } => {
            Answer::Records(h.find_process(home, home_pid).await.map_err(e)?)
        }
        Query::Moves { id, .. } => Answer::Moves(h.moves(id).await.map_err(e)?),
        Query::Checkpoints { from, to, .. } => {
            Answer::Checkpoints(h.checkpoints(from, to).await.map_err(e)?)
        }
    };
    h.close().await;
    Ok(out)
}

/// Reads one query from `stream`, answers it from `db`, writes the answer.
pub async fn serve_connection(db: &Location, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read)
        .take(MAX_QUERY_LINE as u64)
        .read_line(&mut line)
        .await?;
    let answer = match serde_json::from_str::<Query>(line.trim()) {
        Ok(q) => answer(db, q).await,
        Err(e) => Answer::Error(format!("bad query: {e}")),
    };
    write_answer(&mut write, &answer).await
}

/// Writes `answer` as one line.
pub async fn write_answer(
    write: &mut (impl AsyncWriteExt + Unpin),
    answer: &Answer,
) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(answer).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await
}

/// Asks the collector listening on `socket` (the client's side).
pub async fn ask(socket: &Path, query: &Query, within: Duration) -> Result<Answer, String> {
    let shown = socket.display().to_string();
    let work = async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| format!("cannot reach the collector at {shown}: {e}"))?;
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(query).map_err(|e| e.to_string())?;
        line.push(b'\n');
        write
            .write_all(&line)
            .await
            .map_err(|e| format!("{shown}: {e}"))?;
        let mut answer = String::new();
        BufReader::new(read)
            .read_line(&mut answer)
            .await
            .map_err(|e| format!("{shown}: {e}"))?;
        if answer.is_empty() {
            return Err(format!("{shown}: the collector closed the connection"));
        }
        serde_json::from_str::<Answer>(answer.trim())
            .map_err(|e| format!("bad answer from the collector: {e}"))
    };
    tokio::time::timeout(within, work)
        .await
        .map_err(|_| format!("the collector did not answer within {within:?}"))?
}
