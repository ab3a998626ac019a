//! The history store: one [`Store`] writes the current history of a SQLite file
//! or PostgreSQL database, one transaction per tick, and closes it into an
//! archive on request. Reading is [`crate::query`]'s job.
//!
//! Layout (see `migrations/`): each tick is one row of `ticks` holding every
//! node's sample ([`crate::codec::encode_tick`]); every [`BLOCK_TICKS`] ticks the
//! staged rows are folded, in the same transaction, into one `blocks` row per
//! node ([`crate::codec::encode_block`]). A crash loses at most the tick being
//! written; the disk holds a few bytes per node-sample.

pub mod location;
pub mod sql;
pub mod summaries;

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::{AnyConnection, AnyPool, Row};

use crate::codec;
use crate::events::{MoveCursor, ProcEvent, ProcStart, TickBatch};
use crate::sample::{NodeSample, Sample};
use crate::summary::{Summary, median_step};
pub use location::{DEFAULT_DB, Location};
use sql::{Val, insert_rows, int, query};

/// Ticks folded into one block per node.
pub const BLOCK_TICKS: usize = 60;

/// What can go wrong with the history store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A bad `--db` or an unsafe directory.
    #[error("{0}")]
    Config(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The database refused or failed.
    #[error("{location}: {message}")]
    Db {
        /// The database.
        location: String,
        /// What it said (e.g. "database or disk is full").
        message: String,
    },
    /// The schema could not be applied.
    #[error("{0}: applying the schema failed: {1}")]
    Migrate(String, String),
    /// Stored sample data does not decode.
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn db(location: &Location, e: sqlx::Error) -> Self {
        let message = match &e {
            sqlx::Error::Database(d) => d.message().to_string(),
            other => other.to_string(),
        };
        StoreError::Db {
            location: location.to_string(),
            message,
        }
    }
}

/// One history of one database: where it is and its number there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HistoryRef {
    /// The database.
    pub location: Location,
    /// Its id in the `histories` table.
    pub id: i64,
}

/// A history as listed for the analyzer's file menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryInfo {
    /// How to open it.
    pub history: HistoryRef,
    /// When it began (ms).
    pub started_ms: i64,
    /// When it was closed (None for the current one).
    pub ended_ms: Option<i64>,
}

/// A process that was running when the collector last wrote (to resume tracking).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenProcess {
    /// As it was first recorded.
    pub start: ProcStart,
    /// Node it was last on.
    pub node: u32,
    /// Its PID there.
    pub pid: i32,
}

/// The writer of the current history.
pub struct Store {
    pool: AnyPool,
    location: Location,
    history: i64,
    started_ms: i64,
    staged: usize,
}

impl Store {
    /// Opens (creating as needed) the database and its current history; a new
    /// history begins at `now_ms` when none is open.
    pub async fn open(location: Location, now_ms: i64) -> Result<Self, StoreError> {
        let pool = location::connect(&location, true).await?;
        let db = |e| StoreError::db(&location, e);
        let open = query(
            "SELECT id, started_ms FROM histories WHERE ended_ms IS NULL ORDER BY id DESC LIMIT 1"
                .into(),
        )
        .fetch_optional(&pool)
        .await
        .map_err(db)?;
        let (history, started_ms) = match open {
            Some(row) => (int(&row, 0).map_err(db)?, int(&row, 1).map_err(db)?),
            None => {
                let row = query(
                    "INSERT INTO histories (started_ms, label) VALUES ($1, '') RETURNING id".into(),
                )
                .bind(now_ms)
                .fetch_one(&pool)
                .await
                .map_err(db)?;
                (int(&row, 0).map_err(db)?, now_ms)
            }
        };
        let staged = query("SELECT COUNT(*) FROM ticks WHERE history = $1".into())
            .bind(history)
            .fetch_one(&pool)
            .await
            .and_then(|r| int(&r, 0))
            .map_err(db)?;
        tracing::info!(db = %location, history, "history open");
        Ok(Self {
            pool,
            location,
            history,
            started_ms,
            staged: usize::try_from(staged).unwrap_or(0),
        })
    }

    /// The current history.
    pub fn history(&self) -> HistoryRef {
        HistoryRef {
            location: self.location.clone(),
            id: self.history,
        }
    }

    /// When the current history began (ms).
    pub fn started_ms(&self) -> i64 {
        self.started_ms
    }

    fn err(&self, e: sqlx::Error) -> StoreError {
        StoreError::db(&self.location, e)
    }

    /// Writes `batches` (normally one tick; more when earlier writes failed) in
    /// one transaction, folding staged ticks into blocks when a block is full.
    /// On error nothing of them is written and the caller may retry.
    pub async fn write(&mut self, batches: &[TickBatch]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let mut staged = self.staged;
        for b in batches {
            write_batch(&mut tx, self.history, b)
                .await
                .map_err(|e| self.err(e))?;
            if !b.samples.is_empty() {
                staged += 1;
            }
        }
        if staged >= BLOCK_TICKS {
            fold_ticks(&mut tx, self.history)
                .await
                .map_err(|e| self.err(e))?;
            staged = 0;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        self.staged = staged;
        Ok(())
    }

    /// Folds every staged tick into blocks now (before archiving).
    pub async fn fold(&mut self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        fold_ticks(&mut tx, self.history)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.staged = 0;
        Ok(())
    }

    /// Processes the history lists as running (to resume tracking after a restart).
    pub async fn open_processes(&self) -> Result<Vec<OpenProcess>, StoreError> {
        let rows = query(format!(
            "SELECT {START_COLUMNS}, COALESCE({}, p.node), COALESCE({}, p.pid) \
             FROM processes p WHERE p.history = $1 AND p.ended_ms IS NULL",
            latest_move("to_node", None),
            latest_move("pid", None)
        ))
        .bind(self.history)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                Ok(OpenProcess {
                    start: read_start(r)?,
                    node: int(r, START_WIDTH)? as u32,
                    pid: int(r, START_WIDTH + 1)? as i32,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.err(e))
    }

    /// The next free process number of the current history.
    pub async fn next_process_id(&self) -> Result<i64, StoreError> {
        let row = query("SELECT COALESCE(MAX(id), 0) FROM processes WHERE history = $1".into())
            .bind(self.history)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(int(&row, 0).map_err(|e| self.err(e))? + 1)
    }

    /// How far the current history has read each node's move log.
    pub async fn move_cursors(&self) -> Result<Vec<MoveCursor>, StoreError> {
        let rows = query("SELECT node, epoch, seq FROM move_cursors WHERE history = $1".into())
            .bind(self.history)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                Ok(MoveCursor {
                    node: int(r, 0)? as u32,
                    epoch: r.try_get(1)?,
                    seq: u64::try_from(int(r, 2)?).unwrap_or(0),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.err(e))
    }

    /// Agent addresses the history knows (extra seeds when the first is down).
    pub async fn known_addrs(&self) -> Result<Vec<String>, StoreError> {
        let rows = query("SELECT DISTINCT addr FROM nodes ORDER BY addr".into())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(|e| self.err(e)))
            .collect()
    }

    /// Closes the current history at `now_ms` and begins a new one; returns the
    /// closed one. SQLite: the file is renamed to a dated archive beside it and a
    /// new file begins. PostgreSQL: the history is marked ended.
    pub async fn rotate(self, now_ms: i64) -> Result<(Self, HistoryRef), StoreError> {
        let mut this = self;
        this.fold().await?;
        query("UPDATE histories SET ended_ms = $1 WHERE id = $2".into())
            .bind(now_ms)
            .bind(this.history)
            .execute(&this.pool)
            .await
            .map_err(|e| this.err(e))?;
        match this.location.clone() {
            Location::Postgres(_) => {
                let closed = this.history();
                let location = this.location.clone();
                this.pool.close().await;
                let next = Store::open(location, now_ms).await?;
                Ok((next, closed))
            }
            Location::Sqlite(path) => {
                // An archive is a plain rollback-journal file, readable without
                // write access to its directory. Switching out of WAL needs the
                // only connection, so the pool closes first.
                let id = this.history;
                this.pool.close().await;
                location::leave_wal(&path)
                    .await
                    .map_err(|e| StoreError::db(&this.location, e))?;
                let archive = location::archive_path(&path, now_ms);
                std::fs::rename(&path, &archive).map_err(|e| StoreError::io(&path, e))?;
                tracing::info!(archive = %archive.display(), "history archived");
                let next = Store::open(Location::Sqlite(path), now_ms).await?;
                Ok((
                    next,
                    HistoryRef {
                        location: Location::Sqlite(archive),
                        id,
                    },
                ))
            }
        }
    }

    /// Writes `samples` (per node, in time order, older than anything staged)
    /// straight into blocks of [`BLOCK_TICKS`] samples with their summaries
    /// and series, in one transaction: for importing or generating long
    /// histories without going through ticks.
    pub async fn import(&mut self, samples: &BTreeMap<u32, Vec<Sample>>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let blocks: Vec<(u32, Vec<Sample>)> = samples
            .iter()
            .flat_map(|(node, s)| s.chunks(BLOCK_TICKS).map(|c| (*node, c.to_vec())))
            .collect();
        write_blocks(&mut tx, self.history, &blocks)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// Closes the pool (after the last write).
    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// Every history of `location` (the current one and its archives), oldest first.
pub async fn list_histories(location: &Location) -> Result<Vec<HistoryInfo>, StoreError> {
    let files: Vec<Location> = match location {
        Location::Postgres(_) => vec![location.clone()],
        Location::Sqlite(path) => location::archive_files(path)
            .into_iter()
            .chain(path.exists().then(|| path.clone()))
            .map(Location::Sqlite)
            .collect(),
    };
    let mut out = Vec::new();
    for loc in files {
        let pool = location::connect(&loc, false).await?;
        let rows = query("SELECT id, started_ms, ended_ms FROM histories ORDER BY id".into())
            .fetch_all(&pool)
            .await
            .map_err(|e| StoreError::db(&loc, e))?;
        for r in &rows {
            let db = |e| StoreError::db(&loc, e);
            out.push(HistoryInfo {
                history: HistoryRef {
                    location: loc.clone(),
                    id: int(r, 0).map_err(db)?,
                },
                started_ms: int(r, 1).map_err(db)?,
                ended_ms: r.try_get::<Option<i64>, _>(2).map_err(db)?,
            });
        }
        pool.close().await;
    }
    out.sort_by_key(|h| h.started_ms);
    Ok(out)
}

/// The `processes p` columns [`read_start`] reads, in its order.
pub(crate) const START_COLUMNS: &str =
    "p.id, p.home, p.home_pid, p.node, p.pid, p.cmd, p.owner, p.started_ms";
/// How many columns [`START_COLUMNS`] is.
pub(crate) const START_WIDTH: usize = 8;

/// Reads a process's start from the first [`START_COLUMNS`] of a row.
pub(crate) fn read_start(r: &sqlx::any::AnyRow) -> Result<ProcStart, sqlx::Error> {
    Ok(ProcStart {
        id: int(r, 0)?,
        home: int(r, 1)? as u32,
        home_pid: int(r, 2)? as i32,
        node: int(r, 3)? as u32,
        pid: int(r, 4)? as i32,
        cmd: r.try_get(5)?,
        owner: r.try_get(6)?,
        started_ms: int(r, 7)?,
    })
}

/// A subquery giving `column` of the latest move of process `p` (at or before
/// the placeholder `until`, when given), NULL when it never moved.
pub(crate) fn latest_move(column: &str, until: Option<&str>) -> String {
    let until = until
        .map(|u| format!(" AND m.t <= {u}"))
        .unwrap_or_default();
    format!(
        "(SELECT m.{column} FROM moves m WHERE m.history = p.history AND m.process = p.id{until} \
         ORDER BY m.t DESC LIMIT 1)"
    )
}

/// SQLite's `PRAGMA integrity_check` of a history file: "ok" when intact,
/// otherwise the problems it found.
pub async fn integrity_check(path: &Path) -> Result<String, StoreError> {
    let location = Location::Sqlite(path.to_path_buf());
    let pool = location::connect(&location, false).await?;
    let rows = sqlx::query("PRAGMA integrity_check")
        .fetch_all(&pool)
        .await
        .map_err(|e| StoreError::db(&location, e))?;
    pool.close().await;
    let lines: Result<Vec<String>, _> = rows.iter().map(|r| r.try_get::<String, _>(0)).collect();
    Ok(lines.map_err(|e| StoreError::db(&location, e))?.join("; "))
}

async fn write_batch(
    conn: &mut AnyConnection,
    history: i64,
    b: &TickBatch,
) -> Result<(), sqlx::Error> {
    let h = Val::Int(history);
    if !b.samples.is_empty() {
        query(
            "INSERT INTO ticks (history, t, data) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
                .into(),
        )
        .bind(history)
        .bind(b.t_ms)
        .bind(codec::encode_tick(&b.samples))
        .execute(&mut *conn)
        .await?;
    }
    for n in &b.nodes {
        query(
            "INSERT INTO nodes (history, id, name, addr, first_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (history, id) DO UPDATE SET name = excluded.name, addr = excluded.addr"
                .into(),
        )
        .bind(history)
        .bind(i64::from(n.id))
        .bind(n.name.clone())
        .bind(n.addr.clone())
        .bind(b.t_ms)
        .execute(&mut *conn)
        .await?;
    }
    let changes = b
        .node_changes
        .iter()
        .map(|c| {
            vec![
                h.clone(),
                Val::Int(c.node.into()),
                Val::Int(c.t_ms),
                Val::Int(c.up.into()),
                Val::Text(c.reason.clone()),
            ]
        })
        .collect();
    insert_rows(conn, "node_events (history, node, t, up, reason)", changes).await?;
    let checkpoints = b
        .checkpoints
        .iter()
        .map(|c| vec![h.clone(), Val::Int(c.t_ms), Val::Text(c.label.clone())])
        .collect();
    insert_rows(conn, "checkpoints (history, t, label)", checkpoints).await?;
    for c in &b.cursors {
        query(
            "INSERT INTO move_cursors (history, node, epoch, seq) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (history, node) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq"
                .into(),
        )
        .bind(history)
        .bind(i64::from(c.node))
        .bind(c.epoch.clone())
        .bind(i64::try_from(c.seq).unwrap_or(i64::MAX))
        .execute(&mut *conn)
        .await?;
    }
    write_process_events(conn, history, &b.procs).await
}

async fn write_process_events(
    conn: &mut AnyConnection,
    history: i64,
    events: &[ProcEvent],
) -> Result<(), sqlx::Error> {
    let h = Val::Int(history);
    let mut starts = Vec::new();
    let mut moves = Vec::new();
    for e in events {
        match e {
            ProcEvent::Start(s) => starts.push(vec![
                h.clone(),
                Val::Int(s.id),
                Val::Int(s.home.into()),
                Val::Int(s.home_pid.into()),
                Val::Int(s.node.into()),
                Val::Int(s.pid.into()),
                Val::Text(s.cmd.clone()),
                Val::Text(s.owner.clone()),
                Val::Int(s.started_ms),
            ]),
            ProcEvent::Move(m) => moves.push(vec![
                h.clone(),
                Val::Int(m.id),
                Val::Int(m.t_ms),
                Val::Int(m.from.into()),
                Val::Int(m.to.into()),
                Val::Int(m.pid.into()),
                Val::OptInt(m.duration_ms),
                Val::OptInt(m.freeze_ms),
                Val::OptInt(m.bytes),
                Val::OptText(m.why.clone()),
                Val::OptText(m.mode.map(|x| x.as_str().to_string())),
                Val::OptInt(m.released_ms),
                Val::OptInt(m.pulled_bytes),
            ]),
            ProcEvent::End(_) | ProcEvent::Exit { .. } => {}
        }
    }
    insert_rows(
        conn,
        "processes (history, id, home, home_pid, node, pid, cmd, owner, started_ms)",
        starts,
    )
    .await?;
    insert_rows(
        conn,
        "moves (history, process, t, from_node, to_node, pid, duration_ms, freeze_ms, bytes, why, mode, released_ms, pulled_bytes)",
        moves,
    )
    .await?;
    for e in events {
        match e {
            ProcEvent::End(end) => {
                query(
                    "UPDATE processes SET ended_ms = $1, end_reason = $2, exit_code = $3 \
                     WHERE history = $4 AND id = $5"
                        .into(),
                )
                .bind(end.t_ms)
                .bind(end.reason.clone())
                .bind(end.exit_code.map(i64::from))
                .bind(history)
                .bind(end.id)
                .execute(&mut *conn)
                .await?;
            }
            ProcEvent::Exit { id, code } => {
                query("UPDATE processes SET exit_code = $1 WHERE history = $2 AND id = $3".into())
                    .bind(i64::from(*code))
                    .bind(history)
                    .bind(*id)
                    .execute(&mut *conn)
                    .await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Writes one block per (node, samples) with its summary, and adds the
/// summaries to the minute, hour and day series.
async fn write_blocks(
    conn: &mut AnyConnection,
    history: i64,
    blocks: &[(u32, Vec<Sample>)],
) -> Result<(), sqlx::Error> {
    let mut rows = Vec::with_capacity(blocks.len());
    let mut sums = Vec::with_capacity(blocks.len());
    for (node, samples) in blocks {
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            continue;
        };
        let summary = Summary::of(samples, median_step(samples));
        let mut row = vec![
            Val::Int(history),
            Val::Int((*node).into()),
            Val::Int(first.t_ms),
            Val::Int(last.t_ms),
            Val::Bytes(codec::encode_block(samples)),
        ];
        row.extend(summaries::values(&summary));
        rows.push(row);
        sums.push((*node, first.t_ms, summary));
    }
    insert_rows(
        conn,
        &format!(
            "blocks (history, node, t0, t1, data, {})",
            summaries::COLUMNS
        ),
        rows,
    )
    .await?;
    summaries::add_to_series(conn, history, &sums).await
}

/// Folds every staged tick of `history` into one block per node.
async fn fold_ticks(conn: &mut AnyConnection, history: i64) -> Result<(), sqlx::Error> {
    let rows = query("SELECT t, data FROM ticks WHERE history = $1 ORDER BY t".into())
        .bind(history)
        .fetch_all(&mut *conn)
        .await?;
    let Some(last) = rows.last().map(|r| int(r, 0)).transpose()? else {
        return Ok(());
    };
    let mut per_node: BTreeMap<u32, Vec<Sample>> = BTreeMap::new();
    for r in &rows {
        let t = int(r, 0)?;
        let data: Vec<u8> = r.try_get(1)?;
        let samples = match codec::decode_tick(t, &data) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(t, error = %e, "dropping an undecodable staged tick");
                continue;
            }
        };
        for NodeSample { node, sample } in samples {
            per_node.entry(node).or_default().push(sample);
        }
    }
    let blocks: Vec<(u32, Vec<Sample>)> = per_node.into_iter().collect();
    write_blocks(conn, history, &blocks).await?;
    query("DELETE FROM ticks WHERE history = $1 AND t <= $2".into())
        .bind(history)
        .bind(last)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
