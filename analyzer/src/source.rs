//! Which history a view reads: the collector's current one or an archive,
//! opened read-only, and the list of every history beside it (the File menu).

use history::query::History;
use history::store::{self, HistoryInfo, HistoryRef, Location};
use viewer::tasks::{Pending, Poll};

/// The history a view reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Which one.
    pub history: HistoryRef,
    /// Whether it is the one being written (the views follow it live).
    pub current: bool,
}

impl Source {
    /// The current history of the database at `location` (a SQLite file or a
    /// PostgreSQL URL, as `openmosixcollector --db` takes).
    pub fn current_of(location: Location) -> Self {
        Self {
            history: HistoryRef { location, id: 1 },
            current: true,
        }
    }

    /// An archived (or any listed) history.
    pub fn listed(info: &HistoryInfo) -> Self {
        Self {
            history: info.history.clone(),
            current: info.ended_ms.is_none(),
        }
    }

    /// Opens it read-only; for the current history of a PostgreSQL database,
    /// the open one (its id is looked up).
    pub async fn open(&self) -> Result<History, String> {
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
}

/// Every history of the database `location`: the current one and its archives.
pub async fn list(location: Location) -> Result<Vec<HistoryInfo>, String> {
    store::list_histories(&location)
        .await
        .map_err(|e| e.to_string())
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
