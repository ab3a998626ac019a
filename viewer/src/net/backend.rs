//! The runtime thread: watches the cluster through one node, keeps the
//! process lists of the watched nodes, reads admin state and carries out the
//! UI's commands, each in its own task so that a slow node holds up nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hpc::client::Client;
use hpc::model::{AdminState, Liveness, NodeId, NodeStatus};
use hpc::protocol::{
    JobInfo, MigrateParams, MoveLogPage, MoveProgress, MoveRecord, MovesSinceParams, NoParams,
    PathValue, PidParams, ProcWriteParams, ReniceParams, SignalParams, SpawnParams,
    SubscribeParams, WriteParams, methods,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::collector_ctl;
use super::links::{LinkPool, LinkSettings, link_state};
use super::spawn::ExecRequest;
use super::{Command, Event};

use crate::tasks::Tasks;
pub use crate::tasks::Waker;

/// How long an expel, bring or migration may take before the app stops waiting.
const LONG_ACTION: Duration = Duration::from_secs(900);
/// How often a migration's source is asked how far it is while it runs.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// How often every connected node's admin state is read again.
const ADMIN_REFRESH_EVERY: u32 = 5;
/// Most admin reads in flight at once.
const ADMIN_READS_IN_FLIGHT: usize = 8;

/// Queues events for the UI and wakes it.
#[derive(Clone)]
pub struct EventSink {
    tx: std::sync::mpsc::Sender<Event>,
    wake: Waker,
}

impl EventSink {
    /// Queues `event` and wakes the UI.
    pub fn send(&self, event: Event) {
        if self.tx.send(event).is_ok() {
            (self.wake)();
        }
    }
}

/// What the backend needs to know.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Nodes to find the cluster through, in order.
    pub seeds: Vec<String>,
    /// Keys and host checking.
    pub links: LinkSettings,
    /// How often the cluster's figures are fetched.
    pub poll: Duration,
    /// The collector's program.
    pub collector_program: String,
    /// Arguments added to `openmosixcollector -d`.
    pub collector_start_args: Vec<String>,
}

/// The handle the UI holds: send commands, drain events.
pub struct Backend {
    commands: mpsc::UnboundedSender<Command>,
    events: std::sync::mpsc::Receiver<Event>,
    tasks: Tasks,
}

impl Backend {
    /// Starts the runtime: the network side on its own thread, the views'
    /// work ([`Backend::tasks`]) on two workers.
    pub fn start(config: BackendConfig, wake: Waker) -> std::io::Result<Self> {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = std::sync::mpsc::channel();
        let sink = EventSink {
            tx: ev_tx,
            wake: wake.clone(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("openmosixview-worker")
            .enable_all()
            .build()?;
        let tasks = Tasks::new(runtime.handle().clone(), wake);
        std::thread::Builder::new()
            .name("openmosixview-net".into())
            .spawn(move || runtime.block_on(run(config, cmd_rx, sink)))?;
        Ok(Self {
            commands: cmd_tx,
            events: ev_rx,
            tasks,
        })
    }

    /// The runner for the views' own work, on this backend's runtime.
    pub fn tasks(&self) -> Tasks {
        self.tasks.clone()
    }

    /// Sends a command (never blocks).
    pub fn send(&self, command: Command) {
        if self.commands.send(command).is_err() {
            tracing::error!("the network thread has stopped");
        }
    }

    /// The next queued event, if any (never blocks).
    pub fn try_recv(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }
}

async fn run(
    config: BackendConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    sink: EventSink,
) {
    let config = Arc::new(config);
    let pool = Arc::new(LinkPool::new(config.links.clone(), sink.clone()));
    let cluster = tokio::spawn(watch_cluster(pool.clone(), config.clone(), sink.clone()));
    let mut watches: HashMap<NodeId, JoinHandle<()>> = HashMap::new();
    while let Some(command) = commands.recv().await {
        match command {
            Command::WatchProcesses(nodes) => {
                watches.retain(|node, task| {
                    let keep = nodes.contains(node);
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                for node in nodes {
                    watches.entry(node).or_insert_with(|| {
                        tokio::spawn(watch_processes(pool.clone(), node, sink.clone()))
                    });
                }
            }
            Command::TrustHostKey { addr } => pool.trust(&addr),
            other => {
                tokio::spawn(perform(pool.clone(), config.clone(), other, sink.clone()));
            }
        }
    }
    cluster.abort();
    for task in watches.values() {
        task.abort();
    }
}

/// Fetches `cluster.nodes` every poll period through the first node that
/// answers (the seeds, then every node learned so far), and reads the admin
/// state of every up node every few periods.
async fn watch_cluster(pool: Arc<LinkPool>, config: Arc<BackendConfig>, sink: EventSink) {
    let mut current: Option<(String, Client)> = None;
    let mut backoff = Duration::from_secs(1);
    let mut polls: u32 = 0;
    let mut admin_reads: Option<JoinHandle<()>> = None;
    loop {
        let Some((via, client)) = &current else {
            let mut candidates = config.seeds.clone();
            for a in pool.known_addrs() {
                if !candidates.contains(&a) {
                    candidates.push(a);
                }
            }
            let mut last = "no node to connect to (give --node HOST)".to_string();
            for addr in candidates {
                match pool.connect_addr(&addr, None).await {
                    Ok(c) => {
                        current = Some((addr, c));
                        break;
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            if current.is_none() {
                sink.send(Event::ClusterUnreachable(last));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            continue;
        };
        match client
            .call::<_, Vec<NodeStatus>>(methods::CLUSTER_NODES, NoParams {})
            .await
        {
            Ok(nodes) => {
                backoff = Duration::from_secs(1);
                pool.learn(&nodes);
                let up: Vec<NodeId> = nodes
                    .iter()
                    .filter(|n| n.status == Liveness::Up)
                    .map(|n| n.id)
                    .collect();
                sink.send(Event::Nodes {
                    via: via.clone(),
                    nodes,
                });
                let idle = admin_reads.as_ref().is_none_or(|t| t.is_finished());
                if polls.is_multiple_of(ADMIN_REFRESH_EVERY) && idle {
                    admin_reads =
                        Some(tokio::spawn(read_all_admin(pool.clone(), up, sink.clone())));
                }
                polls = polls.wrapping_add(1);
            }
            Err(e) => {
                sink.send(Event::ClusterUnreachable(format!("{via}: {e}")));
                current = None;
                continue;
            }
        }
        tokio::time::sleep(config.poll).await;
    }
}

async fn read_all_admin(pool: Arc<LinkPool>, nodes: Vec<NodeId>, sink: EventSink) {
    let limit = Arc::new(tokio::sync::Semaphore::new(ADMIN_READS_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for node in nodes {
        let (pool, sink, limit) = (pool.clone(), sink.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            refresh_admin(&pool, node, &sink).await;
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Reads one node's admin state and reports it (link failures are reported by the pool).
async fn refresh_admin(pool: &LinkPool, node: NodeId, sink: &EventSink) {
    let Ok(client) = pool.get(node).await else {
        return;
    };
    match read_admin(&client).await {
        Ok(admin) => sink.send(Event::Admin { node, admin }),
        Err(e) => tracing::debug!(node, error = %e, "cannot read admin state"),
    }
}

async fn read_admin(client: &Client) -> Result<AdminState, hpc::client::ClientError> {
    client.call(methods::ADMIN_GET, NoParams {}).await
}

/// Keeps one node's process list current over its own connection, reconnecting
/// with backoff until the UI stops watching (the task is aborted).
async fn watch_processes(pool: Arc<LinkPool>, node: NodeId, sink: EventSink) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match pool.open(node).await {
            Ok(client) => {
                backoff = Duration::from_secs(1);
                let subscribed = client
                    .call::<_, Value>(
                        methods::SUBSCRIBE,
                        SubscribeParams {
                            interval_ms: 1000,
                            status: false,
                            processes: true,
                        },
                    )
                    .await;
                match (subscribed, client.take_updates()) {
                    (Ok(_), Some(mut updates)) => {
                        let mut log = MoveLogReader::default();
                        let mut tick = tokio::time::interval(MOVE_LOG_POLL);
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        loop {
                            tokio::select! {
                                u = updates.recv() => {
                                    let Some(u) = u else { break };
                                    if let Some(delta) = u.processes {
                                        sink.send(Event::Processes {
                                            node,
                                            delta,
                                            reset: u.seq == 0,
                                        });
                                    }
                                }
                                _ = tick.tick() => {
                                    let moves = log.poll(&client).await;
                                    if !moves.is_empty() {
                                        sink.send(Event::Moves { node, moves });
                                    }
                                }
                            }
                        }
                        sink.send(Event::Done {
                            what: format!("process list of node {node}"),
                            result: Err("the connection closed; reconnecting".into()),
                        });
                    }
                    (Err(e), _) => sink.send(Event::Done {
                        what: format!("process list of node {node}"),
                        result: Err(e.to_string()),
                    }),
                    (Ok(_), None) => {}
                }
            }
            Err(e) => sink.send(Event::Link {
                node,
                state: link_state(&e),
            }),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// How often a watched node's move log is read.
const MOVE_LOG_POLL: Duration = Duration::from_secs(1);
/// How many of a node's past moves are read when watching starts.
const MOVE_LOG_BACKLOG: u64 = 500;

/// Follows one node's move log: the last `MOVE_LOG_BACKLOG` moves first,
/// then each new one once.
#[derive(Default)]
struct MoveLogReader {
    /// The log's epoch and the last sequence number read.
    at: Option<(String, u64)>,
}

impl MoveLogReader {
    /// The moves logged since the last call (none when the node cannot say:
    /// an older agent, or a link problem the process list reports).
    async fn poll(&mut self, client: &Client) -> Vec<MoveRecord> {
        let (epoch, after) = match &self.at {
            Some((e, a)) => (Some(e.clone()), *a),
            None => {
                let head: Result<MoveLogPage, _> = client
                    .call(
                        methods::MOVES_SINCE,
                        MovesSinceParams {
                            epoch: None,
                            after: 0,
                            limit: Some(1),
                        },
                    )
                    .await;
                match head {
                    Ok(h) => (Some(h.epoch), h.last.saturating_sub(MOVE_LOG_BACKLOG)),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot read the move log");
                        return Vec::new();
                    }
                }
            }
        };
        let page: Result<MoveLogPage, _> = client
            .call(
                methods::MOVES_SINCE,
                MovesSinceParams {
                    epoch: epoch.clone(),
                    after,
                    limit: None,
                },
            )
            .await;
        match page {
            Ok(p) => {
                // A new log (the file was lost) starts over from its beginning.
                let last = p.moves.last().map_or(
                    if Some(&p.epoch) == epoch.as_ref() {
                        after
                    } else {
                        0
                    },
                    |m| m.seq,
                );
                self.at = Some((p.epoch, last));
                p.moves
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the move log");
                Vec::new()
            }
        }
    }
}

async fn perform(
    pool: Arc<LinkPool>,
    config: Arc<BackendConfig>,
    command: Command,
    sink: EventSink,
) {
    match command {
        Command::WriteAdmin { nodes, path, value } => {
            for node in nodes {
                let (pool, sink, path, value) =
                    (pool.clone(), sink.clone(), path.clone(), value.clone());
                tokio::spawn(async move {
                    let what = format!("node {node}: {path} = {value}");
                    let result = write_admin(&pool, node, &path, &value).await;
                    sink.send(Event::Done { what, result });
                    refresh_admin(&pool, node, &sink).await;
                });
            }
        }
        Command::Switch { nodes, on } => {
            for node in nodes {
                let (pool, sink) = (pool.clone(), sink.clone());
                tokio::spawn(async move {
                    let what = format!(
                        "node {node}: openMosix {}",
                        if on { "start" } else { "stop" }
                    );
                    let result = switch(&pool, node, on).await;
                    sink.send(Event::Done { what, result });
                    refresh_admin(&pool, node, &sink).await;
                });
            }
        }
        Command::RefreshAdmin(node) => refresh_admin(&pool, node, &sink).await,
        Command::Migrate { node, pid, to } => {
            let call = call_within(
                &pool,
                node,
                methods::PROC_MIGRATE,
                MigrateParams {
                    pid,
                    to: to.clone(),
                    force: false,
                    mode: hpc::protocol::MigrationMode::Auto,
                },
                LONG_ACTION,
            );
            tokio::pin!(call);
            // While it runs, the source says how far it is.
            let result = loop {
                tokio::select! {
                    r = &mut call => break r,
                    () = tokio::time::sleep(PROGRESS_EVERY) => {
                        let asked: Result<Option<MoveProgress>, String> = call_within(
                            &pool,
                            node,
                            methods::PROC_PROGRESS,
                            PidParams { pid },
                            Duration::from_secs(5),
                        )
                        .await;
                        if let Ok(Some(progress)) = asked {
                            sink.send(Event::MoveProgress { node, pid, progress });
                        }
                    }
                }
            };
            sink.send(Event::Migrated {
                node,
                pid,
                to,
                result,
            });
        }
        Command::Signal { node, pid, signal } => {
            let what = format!("SIG{signal} to process {pid} on node {node}");
            let params = SignalParams {
                pid,
                signal,
                start_time: None,
            };
            act(
                &pool,
                node,
                methods::PROC_SIGNAL,
                params,
                what,
                "sent",
                &sink,
            )
            .await;
        }
        Command::Renice { node, pid, nice } => {
            let what = format!("renice process {pid} on node {node} to {nice}");
            let params = ReniceParams {
                pid,
                nice,
                start_time: None,
            };
            act(
                &pool,
                node,
                methods::PROC_RENICE,
                params,
                what,
                "done",
                &sink,
            )
            .await;
        }
        Command::ProcWrite {
            node,
            pid,
            field,
            value,
        } => {
            let what = format!("process {pid} on node {node}: {field} = {value}");
            let params = ProcWriteParams { pid, field, value };
            act(
                &pool,
                node,
                methods::PROC_WRITE,
                params,
                what,
                "done",
                &sink,
            )
            .await;
        }
        Command::Execute(request) => execute(&pool, request, &sink).await,
        Command::Collector(action) => {
            let args = action.args(&config.collector_start_args);
            let what = format!(
                "{} ({} {})",
                action.describe(),
                config.collector_program,
                args.join(" ")
            );
            let result = collector_ctl::run(&config.collector_program, &args).await;
            sink.send(Event::Done { what, result });
        }
        Command::WatchProcesses(_) | Command::TrustHostKey { .. } => {}
    }
}

/// Calls `method` on `node` and reports the outcome as `what`.
async fn act<P: Serialize>(
    pool: &LinkPool,
    node: NodeId,
    method: &str,
    params: P,
    what: String,
    ok: &str,
    sink: &EventSink,
) {
    let result = call_within::<_, Value>(pool, node, method, params, hpc::client::CALL_TIMEOUT)
        .await
        .map(|_| ok.to_string());
    sink.send(Event::Done { what, result });
}

/// Calls `method` on `node`, waiting at most `timeout` for the answer.
async fn call_within<P: Serialize, R: DeserializeOwned>(
    pool: &LinkPool,
    node: NodeId,
    method: &str,
    params: P,
    timeout: Duration,
) -> Result<R, String> {
    let client = pool.get(node).await.map_err(|e| e.to_string())?;
    client
        .call_within(method, params, timeout)
        .await
        .map_err(|e| e.to_string())
}

async fn write_admin(
    pool: &LinkPool,
    node: NodeId,
    path: &str,
    value: &Value,
) -> Result<String, String> {
    let v: PathValue = call_within(
        pool,
        node,
        methods::HPC_WRITE,
        WriteParams {
            path: path.into(),
            value: value.clone(),
            pid: None,
        },
        LONG_ACTION,
    )
    .await?;
    Ok(describe_write(&v))
}

/// The answer of an admin write, for a person (`expel`/`bring` report moves).
fn describe_write(v: &PathValue) -> String {
    match &v.moves {
        Some(m) if !m.failed.is_empty() => {
            let reasons: Vec<String> = m
                .failed
                .iter()
                .map(|f| format!("{}: {}", f.pid, f.error))
                .collect();
            format!("moved {}; could not move {}", m.moved, reasons.join("; "))
        }
        Some(m) => format!("moved {}", m.moved),
        None => format!("now {}", v.value),
    }
}

/// openMosix stop: the node takes no guests, moves nothing on its own, stops
/// announcing its load, sends its guests home and brings its own jobs back.
/// Start clears those flags.
async fn switch(pool: &LinkPool, node: NodeId, on: bool) -> Result<String, String> {
    let flag = u8::from(!on);
    for f in ["block", "stay", "lstay", "quiet"] {
        write_admin(pool, node, &format!("admin/{f}"), &Value::from(flag)).await?;
    }
    if on {
        return Ok("balancing on: guests accepted, automigration on".into());
    }
    let expelled = write_admin(pool, node, "admin/expel", &Value::from(1)).await?;
    let brought = write_admin(pool, node, "admin/bring", &Value::from(1)).await?;
    Ok(format!("stopped; expel: {expelled}; bring: {brought}"))
}

async fn execute(pool: &LinkPool, request: ExecRequest, sink: &EventSink) {
    let what = format!(
        "run {} ({} from node {})",
        request.program,
        request.mode.mosrun_words(),
        request.home
    );
    let nodes = pool.known_nodes();
    let launches = match request.mode.launches(request.home, &nodes) {
        Ok(l) => l,
        Err(e) => {
            sink.send(Event::Done {
                what,
                result: Err(e),
            });
            return;
        }
    };
    let client = match pool.get(request.home).await {
        Ok(c) => c,
        Err(e) => {
            sink.send(Event::Done {
                what,
                result: Err(e.to_string()),
            });
            return;
        }
    };
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut argv = vec![request.program.clone()];
    argv.extend(request.args.iter().cloned());
    let env: Vec<(String, String)> = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    let mut started = Vec::new();
    for launch in launches {
        let spawn = SpawnParams {
            argv: argv.clone(),
            cwd: request.cwd.clone(),
            env: env.clone(),
            uid,
            gid,
            stdout: Some(request.output.clone()),
            stderr: None,
            lock: launch.lock,
            decay: launch.decay,
        };
        let job: JobInfo = match client.call(methods::PROC_SPAWN, spawn).await {
            Ok(j) => j,
            Err(e) => {
                sink.send(Event::Done {
                    what: what.clone(),
                    result: Err(e.to_string()),
                });
                continue;
            }
        };
        let mut node = request.home;
        if let Some(target) = launch.target {
            let moved = client
                .call_within::<_, Value>(
                    methods::PROC_MIGRATE,
                    MigrateParams {
                        pid: job.home_pid,
                        to: target.to_string(),
                        force: true,
                        mode: hpc::protocol::MigrationMode::Auto,
                    },
                    LONG_ACTION,
                )
                .await;
            if let Err(e) = moved {
                // As `mosrun` without -F: a job that cannot go where it was sent is stopped.
                let _ = client
                    .call::<_, Value>(
                        methods::PROC_SIGNAL,
                        SignalParams {
                            pid: job.home_pid,
                            signal: "KILL".into(),
                            start_time: None,
                        },
                    )
                    .await;
                sink.send(Event::Done {
                    what: what.clone(),
                    result: Err(format!("node {target} cannot take the job: {e}")),
                });
                continue;
            }
            node = target;
        }
        started.push(format!("PID {} on node {node}", job.home_pid));
        sink.send(Event::JobStarted {
            home: request.home,
            home_pid: job.home_pid,
            node,
        });
    }
    if !started.is_empty() {
        sink.send(Event::Done {
            what,
            result: Ok(format!("started {}", started.join(", "))),
        });
    }
}
