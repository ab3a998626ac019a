//! Which history a view reads, and how: the collector's current history or
//! an archive, opened read-only ([`Reader::Direct`]); or, when this user may
//! not open the files (they are 0640 root), asked of the running collector
//! through its query socket ([`Reader::Collector`]), which answers members of
//! its reader group. Also the list of every history (the File menu).

use std::path::PathBuf;
use std::time::Duration;

use history::events::{Checkpoint, ProcMove};
use history::overview::{Overview, Report};
use history::query::{History, ProcessAt, ProcessRecord};
use history::remote::{self, Answer, HistoryKey, Query};
use history::store::{self, HistoryInfo, HistoryRef, Location};
use viewer::tasks::{Pending, Poll};

/// How long a query to the collector may take.
const ASK_WITHIN: Duration = Duration::from_secs(60);

/// The history a view reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Which one.
    pub history: HistoryRef,
    /// Whether it is the one being written (the views follow it live).
    pub current: bool,
    /// The collector's query socket, asked when the files cannot be opened.
    pub socket: PathBuf,
}

impl Source {
    /// The current history of the database at `location` (a SQLite file or a
    /// PostgreSQL URL, as `openmosixcollector --db` takes).
    pub fn current_of(location: Location) -> Self {
        Self {
            history: HistoryRef { location, id: 1 },
            current: true,
            socket: PathBuf::from(remote::DEFAULT_QUERY_SOCKET),
        }
    }

    /// Asks the collector at `socket` when the files cannot be opened.
    pub fn with_socket(mut self, socket: PathBuf) -> Self {
        self.socket = socket;
        self
    }

    /// An archived (or any listed) history, read as `self` is.
    pub fn listed(&self, info: &HistoryInfo) -> Self {
        Self {
            history: info.history.clone(),
            current: info.ended_ms.is_none(),
            socket: self.socket.clone(),
        }
    }

    /// Opens it read-only (for the current history of a PostgreSQL database,
    /// the open one); when that is refused and the collector's query socket
    /// is there, reads through the collector.
    pub async fn open(&self) -> Result<Reader, String> {
        match self.open_direct().await {
            Ok(h) => Ok(Reader::Direct(h)),
            Err(e) if self.socket.exists() => {
                tracing::info!(error = %e, socket = %self.socket.display(), "reading the history through the collector");
                Ok(Reader::Collector {
                    socket: self.socket.clone(),
                    key: (!self.current).then(|| HistoryKey::of(&self.history)),
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn open_direct(&self) -> Result<History, String> {
        let mut h = self.history.clone();
        if self.current && matches!(h.location, Location::Postgres(_)) {
            let list = store::list_histories(&h.location)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(open) = list.iter().rev().find(|i| i.ended_ms.is_none()) {
                h = open.history.clone();
            }
        }
        History::open(&h).await.map_err(|e| e.to_string())
    }

    /// A short name: the file, or the database and history number.
    pub fn name(&self) -> String {
        match &self.history.location {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(_) => {
                format!("history {} of {}", self.history.id, self.history.location)
            }
        }
    }

    /// Every history of its database: the current one and its archives (from
    /// the collector when the files cannot be read).
    pub async fn list(&self) -> Result<Vec<HistoryInfo>, String> {
        let location = self.history.location.clone();
        let direct = store::list_histories(&location)
            .await
            .map_err(|e| e.to_string());
        match direct {
            Ok(list) if !list.is_empty() || !self.socket.exists() => Ok(list),
            Ok(_) | Err(_) if self.socket.exists() => {
                tracing::info!("listing the histories through the collector");
                match remote::ask(&self.socket, &Query::List, ASK_WITHIN).await? {
                    Answer::List(list) => Ok(list
                        .into_iter()
                        .map(|l| HistoryInfo {
                            history: HistoryRef {
                                location: l
                                    .key
                                    .file
                                    .map_or(location.clone(), |f| Location::Sqlite(f.into())),
                                id: l.key.id,
                            },
                            started_ms: l.started_ms,
                            ended_ms: l.ended_ms,
                        })
                        .collect()),
                    other => Err(unexpected(&other)),
                }
            }
            other => other,
        }
    }
}

/// An open history: the database itself, or the collector asked for it.
pub enum Reader {
    /// Read-only connections to the database.
    Direct(History),
    /// The collector's query socket.
    Collector {
        /// The socket.
        socket: PathBuf,
        /// Which history (None: the collector's current one).
        key: Option<HistoryKey>,
    },
}

fn unexpected(a: &Answer) -> String {
    match a {
        Answer::Error(e) => e.clone(),
        _ => "the collector answered another question".into(),
    }
}

impl Reader {
    async fn ask(&self, query: Query) -> Result<Answer, String> {
        match self {
            Reader::Collector { socket, .. } => remote::ask(socket, &query, ASK_WITHIN).await,
            Reader::Direct(_) => Err("not a collector".into()),
        }
    }

    fn key(&self) -> Option<HistoryKey> {
        match self {
            Reader::Collector { key, .. } => key.clone(),
            Reader::Direct(_) => None,
        }
    }

    /// The first and last sample.
    pub async fn span(&self) -> Result<Option<(i64, i64)>, String> {
        match self {
            Reader::Direct(h) => h.span().await.map_err(|e| e.to_string()),
            _ => match self
                .ask(Query::Span {
                    history: self.key(),
                })
                .await?
            {
                Answer::Span(s) => Ok(s),
                other => Err(unexpected(&other)),
            },
        }
    }

    /// [`History::overview`].
    pub async fn overview(&self, from: i64, to: i64, columns: usize) -> Result<Overview, String> {
        match self {
            Reader::Direct(h) => h
                .overview(from, to, columns)
                .await
                .map_err(|e| e.to_string()),
            _ => match self
                .ask(Query::Overview {
                    history: self.key(),
                    from,
                    to,
                    columns,
                })
                .await?
            {
                Answer::Overview(o) => Ok(*o),
                other => Err(unexpected(&other)),
            },
        }
    }

    /// [`History::report`].
    pub async fn report(&self, from: i64, to: i64) -> Result<Report, String> {
        match self {
            Reader::Direct(h) => h.report(from, to).await.map_err(|e| e.to_string()),
            _ => match self
                .ask(Query::Report {
                    history: self.key(),
                    from,
                    to,
                })
                .await?
            {
                Answer::Report(r) => Ok(*r),
                other => Err(unexpected(&other)),
            },
        }
    }

    /// The processes of every node at `t_ms`.
    pub async fn processes_at(&self, t_ms: i64) -> Result<Vec<ProcessAt>, String> {
        match self {
            Reader::Direct(h) => h.processes_at(None, t_ms).await.map_err(|e| e.to_string()),
            _ => match self
                .ask(Query::ProcessesAt {
                    history: self.key(),
                    t_ms,
                })
                .await?
            {
                Answer::Processes(p) => Ok(p),
                other => Err(unexpected(&other)),
            },
        }
    }

    /// [`History::find_process`].
    pub async fn find_process(
        &self,
        home: u32,
        home_pid: i32,
    ) -> Result<Vec<ProcessRecord>, String> {
        match self {
            Reader::Direct(h) => h
                .find_process(home, home_pid)
                .await
                .map_err(|e| e.to_string()),
            _ => match self
                .ask(Query::FindProcess {
                    history: self.key(),
                    home,
                    home_pid,
                })
                .await?
            {
                Answer::Records(r) => Ok(r),
                other => Err(unexpected(&other)),
            },
        }
    }

    /// [`History::moves`].
    pub async fn moves(&self, id: i64) -> Result<Vec<ProcMove>, String> {
        match self {
            Reader::Direct(h) => h.moves(id).await.map_err(|e| e.to_string()),
            _ => match self
                .ask(Query::Moves {
                    history: self.key(),
                    id,
                })
                .await?
            {
                Answer::Moves(m) => Ok(m),
                other => Err(unexpected(&other)),
            },
        }
    }

    /// [`History::checkpoints`].
    pub async fn checkpoints(&self, from: i64, to: i64) -> Result<Vec<Checkpoint>, String> {
        match self {
            Reader::Direct(h) => h.checkpoints(from, to).await.map_err(|e| e.to_string()),
            _ => match self
                .ask(Query::Checkpoints {
                    history: self.key(),
                    from,
                    to,
                })
                .await?
            {
                Answer::Checkpoints(c) => Ok(c),
                other => Err(unexpected(&other)),
            },
        }
    }

    /// Whether it reads through the collector.
    pub fn through_collector(&self) -> bool {
        matches!(self, Reader::Collector { .. })
    }

    /// Closes the connections.
    pub async fn close(self) {
        if let Reader::Direct(h) = self {
            h.close().await;
        }
    }
}

/// The result of a view's query once it is there, clearing `slot` (a query
/// that ended without a result counts as an error).
pub fn take<T>(slot: &mut Option<Pending<Result<T, String>>>) -> Option<Result<T, String>> {
    let got = match slot.as_mut()?.poll() {
        Poll::Running => return None,
        Poll::Ready(r) => r,
        Poll::Lost => Err("the query stopped".into()),
    };
    *slot = None;
    Some(got)
}
