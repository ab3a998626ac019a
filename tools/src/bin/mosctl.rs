//! `mosctl`: openMosix node control, as in the openMosix userland, against any
//! node's agent (`--node HOST[:PORT]`, default the local agent).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hpc::client::{Client, ClientError};
use hpc::model::{AdminState, Liveness, NodeId, NodeStatus};
use hpc::protocol::{
    ClusterMapInfo, ForgottenHostKey, NoParams, NodeParams, PathParams, PathValue, ProcWriteParams,
    SetMapParams, SignalParams, WhoAmI, WriteParams, methods,
};
use serde_json::{Value, json};
use tools::connect::{EXIT_FAILED, NodeArgs, exit_code};

/// openMosix node control.
#[derive(Parser, Debug)]
#[command(
    name = "mosctl",
    version,
    about = "openMosix node control (talks to openmosixd)"
)]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// No automatic migration away from this node.
    Stay,
    /// Allow automatic migration again (alias: -stay).
    Nostay,
    /// Local processes stay; guests may still leave.
    Lstay,
    /// Local processes may migrate again (alias: -lstay).
    Nolstay,
    /// Refuse arriving guest processes.
    Block,
    /// Accept guest processes again (alias: -block).
    Noblock,
    /// Stop sending this node's load to the others.
    Quiet,
    /// Send load information again (alias: -quiet).
    Noquiet,
    /// Send all guests away (waits until done; implies block).
    Expel,
    /// Bring all of this node's migrated processes home (waits; implies lstay).
    Bring,
    /// Show the decay interval and the slow and fast decay rates.
    Getdecay,
    /// Show the migration tuning parameters.
    Gettune,
    /// Show the yardstick speed.
    Getyard,
    /// Set the yardstick: a number, or `this` for this node's speed.
    Setyard { value: String },
    /// Node id ↔ name: `whois ID` names the node, `whois HOST` gives its id, no argument: this node.
    Whois { who: Option<String> },
    /// A node's openMosix load (100 = one busy standard CPU).
    Getload { id: Option<NodeId> },
    /// A node's speed (10000 = the reference CPU).
    Getspeed { id: Option<NodeId> },
    /// A node's status.
    Status { id: Option<NodeId> },
    /// Is a node up? Prints yes or no.
    Isup { id: Option<NodeId> },
    /// A node's logical free memory, in bytes.
    Getmem { id: Option<NodeId> },
    /// A node's physical free memory, in bytes.
    Getfree { id: Option<NodeId> },
    /// A node's utilisation, in percent.
    Getutil { id: Option<NodeId> },
    /// Set this node's speed.
    Setspeed { speed: u32 },
    /// Set the decay interval (seconds) and the slow and fast decay rates (per mille).
    Setdecay { interval: u32, slow: u32, fast: u32 },
    /// Every node of the cluster with its figures (an addition to the original set).
    Nodes,
    /// Send a signal to a process wherever it runs (PID as on this node; an addition).
    Kill {
        /// The signal: TERM, KILL, INT, HUP, STOP, CONT, USR1, USR2.
        #[arg(short = 's', long, default_value = "TERM")]
        signal: String,
        /// The process.
        pid: i32,
    },
    /// Keep a process on the node it runs on (lock=1; an addition).
    Lock {
        /// The process.
        pid: i32,
    },
    /// Let a process move again (lock=0; an addition).
    Unlock {
        /// The process.
        pid: i32,
    },
    /// Who this agent takes you for: role, key or uid (an addition).
    Whoami,
    /// Forget the host key pinned for a node after its key was rotated; the
    /// next gossip pins the new one (admin; run it on every other node).
    ForgetHostKey {
        /// The node whose key changed.
        node: NodeId,
    },
    /// The cluster as this node sees it: every node it knows, from its map
    /// or by autodiscovery, up or down (also run as `showmap`).
    Showmap,
    /// Read (`-r`) or write (`-w`) this node's cluster map; a written map is
    /// applied at once, without a restart (also run as `setpe`).
    Setpe {
        /// Print the map in use, in setpe format.
        #[arg(
            short = 'r',
            conflicts_with = "write",
            required_unless_present = "write"
        )]
        read: bool,
        /// Take a new map (admin), from `-f FILE` or standard input.
        #[arg(short = 'w')]
        write: bool,
        /// The map file for `-w` (default: standard input).
        #[arg(short = 'f', requires = "write")]
        file: Option<std::path::PathBuf>,
    },
}

fn normalise_args() -> Vec<String> {
    let mut args: Vec<String> = std::env::args().collect();
    // Run as `showmap` or `setpe` (a link to mosctl): that subcommand.
    let called = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|f| f.to_string_lossy().into_owned());
    if let Some(sub @ ("showmap" | "setpe")) = called.as_deref() {
        args.insert(1, sub.to_string());
    }
    args.into_iter()
        .map(|a| match a.as_str() {
            "-stay" => "nostay".into(),
            "-lstay" => "nolstay".into(),
            "-block" => "noblock".into(),
            "-quiet" => "noquiet".into(),
            _ => a,
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    hpc::logging::init("warn");
    let cli = Cli::parse_from(normalise_args());
    let client = match cli.node.connect().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mosctl: {e}");
            return ExitCode::from(exit_code(&e) as u8);
        }
    };
    match run(&client, &cli).await {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mosctl: {e}");
            ExitCode::from(exit_code(&e).max(EXIT_FAILED) as u8)
        }
    }
}

/// `expel`/`bring`: waits until every process moved; fails listing those that could not.
async fn evacuate(c: &Client, path: &str, what: &str, j: bool) -> Result<String, ClientError> {
    let v: PathValue = c
        .call_within(
            methods::HPC_WRITE,
            WriteParams {
                path: path.into(),
                value: Value::from(1),
                pid: None,
            },
            std::time::Duration::from_secs(3600),
        )
        .await?;
    let ev = v.moves.unwrap_or_default();
    let moved = ev.moved;
    let failed: Vec<String> = ev
        .failed
        .iter()
        .map(|f| format!("{}: {}", f.pid, f.error))
        .collect();
    if !failed.is_empty() {
        return Err(ClientError::Rpc(hpc::protocol::RpcError::new(
            hpc::protocol::codes::MIGRATION_FAILED,
            format!(
                "{moved} {what}; these could not move: {}",
                failed.join("; ")
            ),
        )));
    }
    Ok(if j {
        json!({ "moved": moved, "failed": ev.failed }).to_string()
    } else {
        format!("{moved} {what}")
    })
}

async fn write(c: &Client, path: &str, value: Value) -> Result<Value, ClientError> {
    let r: PathValue = c
        .call(
            methods::HPC_WRITE,
            WriteParams {
                path: path.into(),
                value,
                pid: None,
            },
        )
        .await?;
    Ok(r.value)
}

async fn read(c: &Client, path: &str) -> Result<Value, ClientError> {
    let r: PathValue = c
        .call(methods::HPC_READ, PathParams { path: path.into() })
        .await?;
    Ok(r.value)
}

async fn admin(c: &Client) -> Result<AdminState, ClientError> {
    c.call(methods::ADMIN_GET, NoParams {}).await
}

/// The status of node `id` (this node when `None`).
async fn node(c: &Client, id: Option<NodeId>) -> Result<NodeStatus, ClientError> {
    match id {
        None => c.call(methods::NODE_STATUS, NoParams {}).await,
        Some(id) => {
            let nodes: Vec<NodeStatus> = c.call(methods::CLUSTER_NODES, NoParams {}).await?;
            nodes
                .into_iter()
                .find(|n| n.id == id)
                .ok_or_else(|| ClientError::Rpc(hpc::protocol::RpcError::no_such_node(id)))
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

async fn run(c: &Client, cli: &Cli) -> Result<String, ClientError> {
    let j = cli.json;
    let flag = |path: &'static str, on: bool| async move {
        write(c, path, json!(u8::from(on))).await?;
        Ok::<String, ClientError>(if j {
            json!({ path: u8::from(on) }).to_string()
        } else {
            String::new()
        })
    };
    let figure = |id: Option<NodeId>, name: &'static str, pick: fn(&NodeStatus) -> Value| async move {
        let n = node(c, id).await?;
        let v = pick(&n);
        Ok::<String, ClientError>(if j {
            json!({ "node": n.id, name: v }).to_string()
        } else {
            v.to_string()
        })
    };
    match &cli.cmd {
        Cmd::Stay => flag("admin/stay", true).await,
        Cmd::Nostay => flag("admin/stay", false).await,
        Cmd::Lstay => flag("admin/lstay", true).await,
        Cmd::Nolstay => flag("admin/lstay", false).await,
        Cmd::Block => flag("admin/block", true).await,
        Cmd::Noblock => flag("admin/block", false).await,
        Cmd::Quiet => flag("admin/quiet", true).await,
        Cmd::Noquiet => flag("admin/quiet", false).await,
        Cmd::Expel => evacuate(c, "admin/expel", "guests sent home", j).await,
        Cmd::Bring => evacuate(c, "admin/bring", "processes brought home", j).await,
        Cmd::Getdecay => {
            let a = admin(c).await?;
            Ok(if j {
                json!({ "decay-interval": a.decay_interval, "slow-decay": a.slow_decay, "fast-decay": a.fast_decay }).to_string()
            } else {
                format!(
                    "decay interval: {} s\nslow decay: {} (of 1000 kept each interval)\nfast decay: {} (of 1000 kept each interval)",
                    a.decay_interval, a.slow_decay, a.fast_decay
                )
            })
        }
        Cmd::Gettune => {
            let a = admin(c).await?;
            Ok(if j {
                json!({ "speed": a.speed, "yardstick": a.yardstick, "decay-interval": a.decay_interval, "slow-decay": a.slow_decay, "fast-decay": a.fast_decay, "overheads": Value::Null }).to_string()
            } else {
                format!(
                    "speed: {}\nyardstick: {}\ndecay: every {} s, slow {}, fast {}\noverheads: none (openmosixd measures each migration's cost instead of a static table)",
                    a.speed, a.yardstick, a.decay_interval, a.slow_decay, a.fast_decay
                )
            })
        }
        Cmd::Getyard => {
            let v = read(c, "admin/yardstick").await?;
            Ok(if j {
                json!({ "yardstick": v }).to_string()
            } else {
                v.to_string()
            })
        }
        Cmd::Setyard { value } => {
            let n: u64 = if value == "this" {
                read(c, "admin/speed").await?.as_u64().unwrap_or(0)
            } else {
                value.parse().map_err(|_| {
                    ClientError::Rpc(hpc::protocol::RpcError::invalid_params(format!(
                        "setyard takes a number or `this`, not `{value}` (processor names are not known to this version)"
                    )))
                })?
            };
            let v = write(c, "admin/yardstick", json!(n)).await?;
            Ok(if j {
                json!({ "yardstick": v }).to_string()
            } else {
                String::new()
            })
        }
        Cmd::Whois { who } => whois(c, who.as_deref(), j).await,
        Cmd::Getload { id } => figure(*id, "load", |n| json!(n.load)).await,
        Cmd::Getspeed { id } => figure(*id, "speed", |n| json!(n.speed)).await,
        Cmd::Getmem { id } => figure(*id, "mem", |n| json!(n.mem)).await,
        Cmd::Getfree { id } => figure(*id, "rmem", |n| json!(n.rmem)).await,
        Cmd::Getutil { id } => figure(*id, "util", |n| json!(n.util)).await,
        Cmd::Isup { id } => {
            let up = node(c, *id).await?.status == Liveness::Up;
            Ok(if j {
                json!({ "up": up }).to_string()
            } else {
                yes_no(up).to_string()
            })
        }
        Cmd::Status { id } => status(c, *id, j).await,
        Cmd::Nodes => nodes_table(c, j).await,
        Cmd::Kill { signal, pid } => {
            let p = SignalParams {
                pid: *pid,
                signal: signal.clone(),
                start_time: None,
            };
            let v: Value = c.call(methods::PROC_SIGNAL, p).await?;
            Ok(if j { v.to_string() } else { String::new() })
        }
        Cmd::Lock { pid } | Cmd::Unlock { pid } => {
            let on = matches!(cli.cmd, Cmd::Lock { .. });
            let p = ProcWriteParams {
                pid: *pid,
                field: "lock".into(),
                value: json!(u8::from(on)),
            };
            let v: Value = c.call(methods::PROC_WRITE, p).await?;
            Ok(if j { v.to_string() } else { String::new() })
        }
        Cmd::Whoami => {
            let me: WhoAmI = c.call(methods::WHOAMI, NoParams {}).await?;
            Ok(if j {
                json!(me).to_string()
            } else {
                let who = me.uid.map(|u| format!(" (uid {u})")).unwrap_or_default();
                format!("{}{who} on node {} ({})", me.role, me.node, me.key)
            })
        }
        Cmd::ForgetHostKey { node } => {
            let r: ForgottenHostKey = c
                .call(methods::CLUSTER_FORGET_HOST_KEY, NodeParams { node: *node })
                .await?;
            Ok(match (j, &r.forgotten) {
                (true, _) => json!(r).to_string(),
                (false, Some(fp)) => format!(
                    "forgot {fp} for node {node}; the key node {node} gossips next is pinned"
                ),
                (false, None) => format!("no host key was pinned for node {node}"),
            })
        }
        Cmd::Showmap => showmap(c, j).await,
        Cmd::Setpe { write, file, .. } => setpe(c, *write, file.as_deref(), j).await,
        Cmd::Setspeed { speed } => {
            let v = write(c, "admin/speed", json!(speed)).await?;
            Ok(if j {
                json!({ "speed": v }).to_string()
            } else {
                String::new()
            })
        }
        Cmd::Setdecay {
            interval,
            slow,
            fast,
        } => {
            if slow > &1000 || fast > &1000 || interval == &0 {
                return Err(ClientError::Rpc(hpc::protocol::RpcError::invalid_params(
                    "setdecay INTERVAL SLOW FAST: interval >= 1 s, rates from 0 to 1000",
                )));
            }
            write(c, "admin/decay-interval", json!(interval)).await?;
            write(c, "admin/slow-decay", json!(slow)).await?;
            write(c, "admin/fast-decay", json!(fast)).await?;
            Ok(if j {
                json!({ "decay-interval": interval, "slow-decay": slow, "fast-decay": fast })
                    .to_string()
            } else {
                String::new()
            })
        }
    }
}

async fn whois(c: &Client, who: Option<&str>, j: bool) -> Result<String, ClientError> {
    let nodes: Vec<NodeStatus> = c.call(methods::CLUSTER_NODES, NoParams {}).await?;
    let me: WhoAmI = c.call(methods::WHOAMI, NoParams {}).await?;
    let found = match who {
        None => nodes.iter().find(|n| n.id == me.node),
        Some(w) => match w.parse::<NodeId>() {
            Ok(id) => nodes.iter().find(|n| n.id == id),
            Err(_) => nodes.iter().find(|n| {
                n.name == w || n.addr == w || n.addr.rsplit_once(':').is_some_and(|(h, _)| h == w)
            }),
        },
    };
    let Some(n) = found else {
        return Err(ClientError::Rpc(hpc::protocol::RpcError::new(
            hpc::protocol::codes::NO_SUCH_NODE,
            format!("{}: no such openMosix node", who.unwrap_or("this node")),
        )));
    };
    Ok(match (j, who.map(|w| w.parse::<NodeId>().is_ok())) {
        (true, _) => json!({ "node": n.id, "name": n.name, "addr": n.addr }).to_string(),
        (false, None) => format!("This is openMosix node #{}", n.id),
        (false, Some(true)) => n.name.clone(),
        (false, Some(false)) => format!("openMosix node #{}", n.id),
    })
}

async fn status(c: &Client, id: Option<NodeId>, j: bool) -> Result<String, ClientError> {
    let me: WhoAmI = c.call(methods::WHOAMI, NoParams {}).await?;
    let n = node(c, id).await?;
    let local = id.is_none_or(|i| i == me.node);
    let a = if local { Some(admin(c).await?) } else { None };
    if j {
        return Ok(json!({ "node": n, "admin": a }).to_string());
    }
    let up = n.status == Liveness::Up;
    let mut out = format!(
        "openMosix node #{} ({}, {}) is {}",
        n.id,
        n.name,
        n.addr,
        if up { "up" } else { "DOWN" }
    );
    if let Some(r) = &n.reason {
        out.push_str(&format!(" ({r})"));
    }
    if up {
        out.push_str(&format!(
            "\nload: {}  speed: {}  CPUs: {}  util: {}%\nmemory: {} MiB free ({} MiB physically free) of {} MiB",
            n.load, n.speed, n.cpus, n.util, n.mem >> 20, n.rmem >> 20, n.tmem >> 20
        ));
    }
    if let Some(a) = a {
        out.push_str(&format!(
            "\nstay: {}  lstay: {}  block: {}  quiet: {}",
            yes_no(a.stay),
            yes_no(a.lstay),
            yes_no(a.block),
            yes_no(a.quiet)
        ));
    }
    Ok(out)
}

async fn nodes_table(c: &Client, j: bool) -> Result<String, ClientError> {
    let nodes: Vec<NodeStatus> = c.call(methods::CLUSTER_NODES, NoParams {}).await?;
    Ok(if j {
        json!(nodes).to_string()
    } else {
        tools::render::nodes_table(&nodes)
    })
}

/// `showmap`: this node's id, then every node it knows with where it was
/// learnt (the map or autodiscovery) and whether it is up.
async fn showmap(c: &Client, j: bool) -> Result<String, ClientError> {
    let map: ClusterMapInfo = c.call(methods::CLUSTER_MAP, NoParams {}).await?;
    let nodes: Vec<NodeStatus> = c.call(methods::CLUSTER_NODES, NoParams {}).await?;
    let mapped = hpc::map::ClusterMap::parse(&map.text).unwrap_or_default();
    let source = |id: NodeId| match (id == map.node, mapped.node(id).is_some()) {
        (true, _) => "this node",
        (false, true) => "map",
        (false, false) => "discovered",
    };
    if j {
        let rows: Vec<Value> = nodes
            .iter()
            .map(|n| json!({ "id": n.id, "name": n.name, "addr": n.addr, "up": n.status == Liveness::Up, "source": source(n.id) }))
            .collect();
        return Ok(json!({ "node": map.node, "map": map.path, "nodes": rows }).to_string());
    }
    let mut out = format!("My Node-Id: 0x{:04x}\n\n", map.node);
    out.push_str("Node-Id  Address                Name             Up   Known from\n");
    out.push_str("-------  ---------------------  ---------------  ---  ----------\n");
    for n in &nodes {
        out.push_str(&format!(
            "0x{:04x}   {:<21}  {:<15}  {:<3}  {}\n",
            n.id,
            n.addr,
            n.name,
            yes_no(n.status == Liveness::Up),
            source(n.id)
        ));
    }
    out.push_str(&format!("(map file on node {}: {})", map.node, map.path));
    Ok(out)
}

/// `setpe -r` prints the map in use; `setpe -w` sends a new one (from
/// `file`, else standard input), which the node writes and applies.
async fn setpe(
    c: &Client,
    write: bool,
    file: Option<&std::path::Path>,
    j: bool,
) -> Result<String, ClientError> {
    let info: ClusterMapInfo = if write {
        let text = match file {
            Some(f) => std::fs::read_to_string(f),
            None => std::io::read_to_string(std::io::stdin()),
        }
        .map_err(|e| {
            ClientError::Rpc(hpc::protocol::RpcError::invalid_params(format!(
                "cannot read the map{}: {e}",
                file.map(|f| format!(" {}", f.display()))
                    .unwrap_or_default()
            )))
        })?;
        c.call(methods::CLUSTER_SET_MAP, SetMapParams { text })
            .await?
    } else {
        c.call(methods::CLUSTER_MAP, NoParams {}).await?
    };
    Ok(match (j, write) {
        (true, _) => json!(info).to_string(),
        (false, false) => info.text.trim_end().to_string(),
        (false, true) => format!(
            "node {} now uses this map ({} written):\n{}",
            info.node,
            info.path,
            info.text.trim_end()
        ),
    })
}
