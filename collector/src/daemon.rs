//! The collector's loop: every interval it polls the agents, turns the answers
//! into one [`TickBatch`] and writes it; it serves `-n`/`-r`/status requests
//! and archives the history every `archive_every`.
//!
//! Nothing is dropped on a failed write (a full disk, a database restart): the
//! batch stays queued and is written with the next tick, up to
//! [`MAX_QUEUED_TICKS`]; the error is logged once per outage.

use std::collections::HashMap;
use std::time::Duration;

use hpc::client::ClientConfig;
use hpc::model::NodeId;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::control::{Incoming, Reply, Request};
use crate::poller::Poller;
use crate::tracker::{NodeProcs, Tracker};
use history::events::{Checkpoint, MoveCursor, NodeChange, NodeMeta, ProcEvent, TickBatch};
use history::sample::{NodeSample, Sample};
use history::store::{Location, Store, StoreError};
use hpc::protocol::{MoveLogPage, MoveRecord, MovesSinceParams};

/// Ticks kept in memory while the database refuses writes (an hour at 1 Hz).
pub const MAX_QUEUED_TICKS: usize = 3600;

/// Ticks to keep asking a job's home for the exit code of an ended job.
const EXIT_WAIT_TICKS: u32 = 30;

/// How the collector runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Agents to learn the cluster from.
    pub seeds: Vec<String>,
    /// Key and known_hosts for the agents.
    pub client: ClientConfig,
    /// Sampling interval.
    pub interval: Duration,
    /// The history database.
    pub db: Location,
    /// Archive the history and begin anew this often.
    pub archive_every: Duration,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    hpc::clock::now_ms() as i64
}

/// What the loop knows about each node between ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    name: String,
    addr: String,
    up: Option<bool>,
}

/// The running collector.
pub struct Daemon {
    settings: Settings,
    store: Option<Store>,
    poller: Poller,
    tracker: Tracker,
    known: HashMap<NodeId, Known>,
    queued: Vec<TickBatch>,
    last_t: i64,
    failing: bool,
    ticks: u64,
    /// Ended jobs whose exit code the home has not reported yet: (process,
    /// identity, ticks left to ask).
    awaiting_exit: Vec<(i64, (NodeId, i32), u32)>,
    /// How far each node's move log has been read (written with the moves).
    cursors: HashMap<NodeId, MoveCursor>,
}

impl Daemon {
    /// Opens the history and resumes tracking the processes it lists as running.
    pub async fn start(settings: Settings) -> Result<Self, StoreError> {
        let store = Store::open(settings.db.clone(), now_ms()).await?;
        let tracker = Tracker::resume(
            store.open_processes().await?,
            store.next_process_id().await?,
        );
        let answer_timeout =
            (settings.interval * 4 / 5).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let mut poller = Poller::new(
            settings.seeds.clone(),
            settings.client.clone(),
            answer_timeout,
        );
        poller.add_seeds(store.known_addrs().await?);
        let cursors = store
            .move_cursors()
            .await?
            .into_iter()
            .map(|c| (c.node, c))
            .collect();
        tracing::info!(
            history = %describe(&store.history()),
            running = tracker.running(),
            interval_ms = settings.interval.as_millis() as u64,
            "collector started"
        );
        Ok(Self {
            settings,
            store: Some(store),
            poller,
            tracker,
            known: HashMap::new(),
            queued: Vec::new(),
            last_t: 0,
            failing: false,
            ticks: 0,
            awaiting_exit: Vec::new(),
            cursors,
        })
    }

    /// Runs until `stop` fires, serving `control` requests; the last tick is
    /// written before it returns.
    pub async fn run(
        mut self,
        mut control: mpsc::Receiver<Incoming>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), StoreError> {
        let mut interval = tokio::time::interval(self.settings.interval);
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = interval.tick() => self.tick().await,
                Some((req, reply)) = control.recv() => {
                    let answer = self.handle(req).await;
                    let _ = reply.send(answer);
                }
            }
        }
        self.flush().await;
        if !self.queued.is_empty() {
            tracing::error!(
                ticks = self.queued.len(),
                "stopping with ticks that could not be written"
            );
        }
        if let Some(s) = self.store.take() {
            s.close().await;
        }
        tracing::info!("collector stopped");
        Ok(())
    }

    fn tick_time(&mut self) -> i64 {
        let step = self.settings.interval.as_millis().max(1) as i64;
        let now = now_ms();
        // On the interval's grid, so steady ticks compress to nothing.
        let mut t = (now + step / 2) / step * step;
        if t <= self.last_t {
            t = self.last_t + 1;
        }
        self.last_t = t;
        t
    }

    /// One tick: poll, track, write.
    async fn tick(&mut self) {
        let cursors = &self.cursors;
        let (answers, left) = self
            .poller
            .poll(|node| match cursors.get(&node) {
                Some(c) => MovesSinceParams {
                    epoch: Some(c.epoch.clone()),
                    after: c.seq,
                    limit: None,
                },
                None => MovesSinceParams::default(),
            })
            .await;
        let t = self.tick_time();
        let mut batch = TickBatch {
            t_ms: t,
            ..TickBatch::default()
        };
        let mut lists = Vec::with_capacity(answers.len());
        let mut logged = Vec::new();
        for a in answers.iter() {
            if let Some(page) = &a.moves {
                logged.extend(self.new_moves(a.node, page, &mut batch));
            }
        }
        for a in answers {
            let known = self.known.entry(a.node).or_insert_with(|| Known {
                name: String::new(),
                addr: String::new(),
                up: None,
            });
            if known.name != a.name || known.addr != a.addr {
                known.name = a.name.clone();
                known.addr = a.addr.clone();
                batch.nodes.push(NodeMeta {
                    id: a.node,
                    name: a.name,
                    addr: a.addr,
                });
            }
            let (sample, procs, reason) = match a.result {
                Ok((status, procs)) => (
                    Sample::from_status(t, &status),
                    NodeProcs::Listed(procs),
                    String::new(),
                ),
                Err(reason) => (Sample::down(t), NodeProcs::Unknown, reason),
            };
            if known.up != Some(sample.up) {
                if sample.up {
                    tracing::info!(node = a.node, "node up");
                } else {
                    tracing::warn!(node = a.node, %reason, "node down");
                }
                known.up = Some(sample.up);
                batch.node_changes.push(NodeChange {
                    node: a.node,
                    t_ms: t,
                    up: sample.up,
                    reason,
                });
            }
            batch.samples.push(NodeSample {
                node: a.node,
                sample,
            });
            lists.push((a.node, procs));
        }
        let mut ended = Vec::new();
        for node in left {
            self.known.remove(&node);
            ended.extend(self.tracker.node_left(node, t));
            batch.node_changes.push(NodeChange {
                node,
                t_ms: t,
                up: false,
                reason: "left the cluster".into(),
            });
        }
        batch.procs = self.tracker.apply_moves(t, logged);
        batch.procs.extend(self.tracker.update(t, &lists));
        batch.procs.extend(ended);
        self.add_job_figures(&mut batch.procs, t).await;
        for e in &batch.procs {
            tracing::debug!(event = ?e, "process history");
        }
        self.queued.push(batch);
        self.flush().await;
        self.ticks += 1;
        let due = self.store.as_ref().is_some_and(|s| {
            Duration::from_millis((t - s.started_ms()).max(0) as u64) >= self.settings.archive_every
        });
        if due && let Err(e) = self.rotate().await {
            tracing::error!(error = %e, "archiving the history failed");
        }
    }

    /// The moves of `node`'s log page that are new to this history, and its
    /// cursor moved past them (recorded in `batch`). A node read for the first
    /// time in this history gives the moves made since the history began (so
    /// moves made while the collector was down are not lost).
    fn new_moves(
        &mut self,
        node: NodeId,
        page: &MoveLogPage,
        batch: &mut TickBatch,
    ) -> Vec<MoveRecord> {
        let known = self.cursors.get(&node);
        let same_log = known.is_some_and(|c| c.epoch == page.epoch);
        let after = known.filter(|_| same_log).map_or(0, |c| c.seq);
        if let Some(c) = known
            && same_log
            && page.first > c.seq + 1
        {
            tracing::warn!(
                node,
                lost = page.first - c.seq - 1,
                "moves dropped from the node's log before they were read"
            );
        }
        let since = if known.is_some() {
            i64::MIN
        } else {
            self.store.as_ref().map_or(i64::MIN, |s| s.started_ms())
        };
        let fresh: Vec<MoveRecord> = page
            .moves
            .iter()
            .filter(|m| m.seq > after && m.report.at_ms as i64 >= since)
            .cloned()
            .collect();
        let cursor = MoveCursor {
            node,
            epoch: page.epoch.clone(),
            seq: page.moves.last().map_or(after, |m| m.seq.max(after)),
        };
        if self.cursors.get(&node) != Some(&cursor) {
            batch.cursors.push(cursor.clone());
            self.cursors.insert(node, cursor);
        }
        fresh
    }

    /// Fills in what a job's home knows: a move's duration, freeze time and
    /// instant, and an ended job's exit code (processes that are not jobs have
    /// no record there and keep None).
    async fn add_job_figures(&mut self, events: &mut Vec<ProcEvent>, t: i64) {
        // Exit codes the homes learnt since (a guest's end reaches its home late).
        let mut waiting = std::mem::take(&mut self.awaiting_exit);
        for (id, (home, home_pid), left) in waiting.iter_mut() {
            match self.poller.job(*home, *home_pid).await {
                Some(job) if job.exit.is_some() => {
                    events.extend(job.exit.map(|code| ProcEvent::Exit { id: *id, code }));
                    *left = 0;
                }
                Some(_) => *left = left.saturating_sub(1),
                None => *left = 0,
            }
        }
        waiting.retain(|w| w.2 > 0);
        self.awaiting_exit = waiting;
        for e in events.iter_mut() {
            let id = match e {
                // Moves from the logs carry their figures already.
                ProcEvent::Move(m) if m.freeze_ms.is_none() => m.id,
                ProcEvent::End(end) if end.reason == "exited" => end.id,
                _ => continue,
            };
            let Some((home, home_pid)) = self.tracker.job_identity(id) else {
                continue;
            };
            let Some(job) = self.poller.job(home, home_pid).await else {
                tracing::debug!(id, home, home_pid, "no answer about the job from its home");
                continue;
            };
            match e {
                ProcEvent::Move(m) => {
                    let Some(report) = job.last_migration.filter(|r| r.to == m.to) else {
                        continue;
                    };
                    m.duration_ms = Some(report.total_ms as i64);
                    m.freeze_ms = Some(report.freeze_ms as i64);
                    m.mode = Some(report.mode);
                    (m.released_ms, m.pulled_bytes) = crate::tracker::move_figures(&report);
                    if !report.why.is_empty() {
                        m.why = Some(report.why);
                    }
                    let at = report.at_ms as i64;
                    let window = 10 * self.settings.interval.as_millis() as i64;
                    if at <= t && at >= t - window {
                        m.t_ms = at;
                    }
                }
                ProcEvent::End(end) => {
                    tracing::debug!(id, home, home_pid, exit = ?job.exit, "job ended");
                    end.exit_code = job.exit;
                    if job.exit.is_none() {
                        self.awaiting_exit
                            .push((end.id, (home, home_pid), EXIT_WAIT_TICKS));
                    }
                }
                _ => {}
            }
        }
    }

    /// Writes the queued ticks in one transaction; keeps them on failure.
    async fn flush(&mut self) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        if self.queued.is_empty() {
            return;
        }
        match store.write(&self.queued).await {
            Ok(()) => {
                if self.failing {
                    tracing::info!(
                        ticks = self.queued.len(),
                        "history writes work again; queued ticks written"
                    );
                    self.failing = false;
                }
                for b in &self.queued {
                    tracing::debug!(t = b.t_ms, "committed tick");
                }
                self.queued.clear();
            }
            Err(e) => {
                if !self.failing {
                    tracing::error!(error = %e, "writing the history failed; keeping ticks in memory and retrying each tick");
                    self.failing = true;
                }
                if self.queued.len() > MAX_QUEUED_TICKS {
                    let drop = self.queued.len() - MAX_QUEUED_TICKS;
                    tracing::error!(
                        dropped = drop,
                        "too many unwritten ticks; dropping the oldest"
                    );
                    self.queued.drain(..drop);
                }
            }
        }
    }

    async fn handle(&mut self, req: Request) -> Reply {
        match req {
            Request::Checkpoint { label } => {
                let t = now_ms();
                self.queued.push(TickBatch {
                    t_ms: t,
                    checkpoints: vec![Checkpoint {
                        t_ms: t,
                        label: label.clone(),
                    }],
                    ..TickBatch::default()
                });
                self.flush().await;
                if self.queued.is_empty() {
                    Reply {
                        ok: true,
                        message: format!("checkpoint \"{label}\" written at {t}"),
                    }
                } else {
                    Reply { ok: false, message: "the checkpoint is queued but the history cannot be written now (see the log)".into() }
                }
            }
            Request::Rotate => match self.rotate().await {
                Ok(msg) => Reply {
                    ok: true,
                    message: msg,
                },
                Err(e) => Reply {
                    ok: false,
                    message: e.to_string(),
                },
            },
            Request::Status => {
                let up = self.known.values().filter(|k| k.up == Some(true)).count();
                let history = self
                    .store
                    .as_ref()
                    .map(|s| describe(&s.history()))
                    .unwrap_or_default();
                Reply {
                    ok: true,
                    message: format!(
                        "writing {history}; {} nodes ({up} up); {} processes running; {} ticks; {} unwritten",
                        self.known.len(),
                        self.tracker.running(),
                        self.ticks,
                        self.queued.len()
                    ),
                }
            }
        }
    }

    /// Archives the current history and begins a new one that starts with the
    /// processes still running.
    async fn rotate(&mut self) -> Result<String, StoreError> {
        self.flush().await;
        let Some(store) = self.store.take() else {
            return Err(StoreError::Config("no history is open".into()));
        };
        let location = store.history().location;
        let now = now_ms();
        let (store, archived) = match store.rotate(now).await {
            Ok(r) => r,
            Err(e) => {
                // The old history stays current; reopen it.
                self.store = Some(Store::open(location, now).await?);
                return Err(e);
            }
        };
        self.store = Some(store);
        self.known.clear();
        self.queued.push(TickBatch {
            t_ms: now,
            procs: self.tracker.carry_over(),
            // The new history reads the logs on from where the old one stopped.
            cursors: self.cursors.values().cloned().collect(),
            ..TickBatch::default()
        });
        self.flush().await;
        let msg = format!("history archived as {}", describe(&archived));
        tracing::info!("{msg}");
        Ok(msg)
    }
}

fn describe(h: &history::store::HistoryRef) -> String {
    match &h.location {
        Location::Sqlite(p) => p.display().to_string(),
        Location::Postgres(_) => format!("history {} of {}", h.id, h.location),
    }
}
