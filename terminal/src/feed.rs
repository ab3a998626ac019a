//! The collection side of a terminal tool (bottom's pattern): a task on the
//! tokio runtime asks the agent for fresh figures every interval and sends
//! them to the UI loop over a channel; the UI sends actions back the same
//! way and gets their outcome as a notice. The UI never waits on the
//! network.

use std::sync::mpsc::Sender;
use std::time::Duration;

use hpc::client::Client;
use hpc::model::{NodeId, NodeStatus, ProcessInfo};
use hpc::protocol::{
    MigrateParams, MigrationMode, MigrationReport, NoParams, ProcListParams, ReniceParams,
    SignalParams, methods,
};
use tools::connect::NodeArgs;

/// What the tool asks the agent for every interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The cluster's nodes (`cluster.nodes`).
    Nodes,
    /// The node's processes too (`proc.list`).
    NodesAndProcesses,
}

/// What the collection task sends the UI.
#[derive(Debug, Clone)]
pub enum Update {
    /// Fresh figures.
    Figures {
        /// The id of the node whose agent answers.
        me: NodeId,
        /// Every node of the cluster as the agent sees it.
        nodes: Vec<NodeStatus>,
        /// The node's processes, when asked for.
        processes: Option<Vec<ProcessInfo>>,
    },
    /// The agent could not be reached or refused: why (the last figures stand).
    Trouble(String),
    /// An action's outcome, for the status line.
    Notice(String),
}

/// An action on a process of the node the tool watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `migrate PID TO` (a node id, `home` or `balance`).
    Migrate { pid: i32, to: String },
    /// Send a signal (`TERM`, `KILL`, …).
    Signal { pid: i32, signal: String },
    /// Set the nice value.
    Renice { pid: i32, nice: i32 },
}

/// Runs the collection task on `rt` until the UI's ends of the channels go.
pub fn start(
    rt: &tokio::runtime::Runtime,
    node: NodeArgs,
    want: Want,
    every: Duration,
    updates: Sender<Update>,
    mut act_rx: tokio::sync::mpsc::UnboundedReceiver<Action>,
) {
    rt.spawn(async move {
        let mut client: Option<Client> = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let update = match connected(&node, &mut client).await {
                        Ok(c) => match figures(c, want).await {
                            Ok(u) => u,
                            Err(e) => {
                                client = None;
                                Update::Trouble(e)
                            }
                        },
                        Err(e) => Update::Trouble(e),
                    };
                    if updates.send(update).is_err() {
                        return;
                    }
                }
                action = act_rx.recv() => {
                    let Some(action) = action else { return };
                    let text = match connected(&node, &mut client).await {
                        Ok(c) => act(c, &action).await,
                        Err(e) => e,
                    };
                    if updates.send(Update::Notice(text)).is_err() {
                        return;
                    }
                    tick.reset_immediately();
                }
            }
        }
    });
}

/// The open connection, or a new one.
async fn connected<'a>(
    node: &NodeArgs,
    client: &'a mut Option<Client>,
) -> Result<&'a Client, String> {
    if client.as_ref().is_some_and(Client::is_closed) {
        *client = None;
    }
    if client.is_none() {
        *client = Some(
            node.connect()
                .await
                .map_err(|e| format!("cannot reach the agent: {e}"))?,
        );
    }
    client.as_ref().ok_or_else(|| "no connection".to_string())
}

async fn figures(c: &Client, want: Want) -> Result<Update, String> {
    let me: NodeStatus = c
        .call(methods::NODE_STATUS, NoParams {})
        .await
        .map_err(|e| e.to_string())?;
    let nodes: Vec<NodeStatus> = c
        .call(methods::CLUSTER_NODES, NoParams {})
        .await
        .map_err(|e| e.to_string())?;
    let processes = match want {
        Want::Nodes => None,
        Want::NodesAndProcesses => Some(
            c.call(methods::PROC_LIST, ProcListParams::default())
                .await
                .map_err(|e| e.to_string())?,
        ),
    };
    Ok(Update::Figures {
        me: me.id,
        nodes,
        processes,
    })
}

/// Carries out `a`; what happened, in words.
async fn act(c: &Client, a: &Action) -> String {
    match a {
        Action::Migrate { pid, to } => {
            let p = MigrateParams {
                pid: *pid,
                to: to.clone(),
                force: false,
                mode: MigrationMode::Auto,
            };
            match c
                .call_within::<_, MigrationReport>(
                    methods::PROC_MIGRATE,
                    p,
                    Duration::from_secs(600),
                )
                .await
            {
                Ok(r) => tools::render::migration_line(&r),
                Err(e) => format!("migrate {pid} {to}: {e}"),
            }
        }
        Action::Signal { pid, signal } => {
            let p = SignalParams {
                pid: *pid,
                signal: signal.clone(),
                start_time: None,
            };
            match c
                .call::<_, serde_json::Value>(methods::PROC_SIGNAL, p)
                .await
            {
                Ok(_) => format!("SIG{signal} sent to process {pid}"),
                Err(e) => format!("signal {pid}: {e}"),
            }
        }
        Action::Renice { pid, nice } => {
            let p = ReniceParams {
                pid: *pid,
                nice: *nice,
                start_time: None,
            };
            match c
                .call::<_, serde_json::Value>(methods::PROC_RENICE, p)
                .await
            {
                Ok(_) => format!("process {pid} reniced to {nice}"),
                Err(e) => format!("renice {pid}: {e}"),
            }
        }
    }
}
