//! `openmosix-lab`: turns one Linux machine into an N-node openMosix cluster for
//! demos and tests. Each node is a network namespace with its own address on a
//! private bridge, its own agent (entered with `nsenter --net`, scoped to the
//! processes of its namespace), keys and map. `down` removes exactly what `up`
//! created, stopping agents by PID.

mod net;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hpc::client::{Client, ClientConfig, Identity};
use hpc::model::NodeStatus;
use hpc::protocol::methods;
use serde_json::json;

use state::Lab;

/// An N-node openMosix cluster on one machine (network namespaces on a bridge).
#[derive(Parser, Debug)]
#[command(name = "openmosix-lab", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create the lab and start one agent per node.
    Up {
        /// Number of nodes (1-60).
        #[arg(long, default_value_t = 4)]
        nodes: u32,
        /// Lab name: 1-8 lower-case letters or digits.
        #[arg(long, default_value = "lab")]
        name: String,
        /// First three octets of the lab's private /24 (node N gets .N, the host .254).
        #[arg(long, default_value = "10.77.0")]
        subnet: String,
        /// The agent binary (default: openmosixd next to this program, else /usr/local/sbin/openmosixd).
        #[arg(long)]
        agent: Option<PathBuf>,
        /// An extra argument for every node's agent (repeat for more), e.g.
        /// `--agent-arg=--image-space=512`.
        #[arg(long = "agent-arg", allow_hyphen_values = true)]
        agent_args: Vec<String>,
        /// An extra argument for one node's agent, as ID:ARG (repeat for more),
        /// e.g. `--node-arg=2:--image-space=256`.
        #[arg(long = "node-arg", allow_hyphen_values = true, value_parser = node_arg)]
        node_args: Vec<(u32, String)>,
        /// Pin each node's agent, and everything it starts or restores, to K
        /// CPUs of its own: node N gets CPUs (N-1)·K to N·K-1, wrapping
        /// around the machine's CPUs (nodes then share some). Its load and
        /// CPU count are then those CPUs'.
        #[arg(long, value_name = "K")]
        cpus_per_node: Option<u32>,
        /// Give each node M MiB of memory of its own: a memory cgroup that its
        /// agent, and everything it starts or restores, runs in. Its memory
        /// figures are then that cgroup's, and the kernel's OOM killer acts
        /// there when it is full.
        #[arg(long, value_name = "M")]
        mem_per_node: Option<u64>,
        /// Leave node ID out of the map (repeat for more): its agent starts
        /// with only the cluster key, no map and no node id, and joins by
        /// autodiscovery (its id is the last octet of its address, so ID).
        #[arg(long = "unmapped", value_name = "ID")]
        unmapped: Vec<u32>,
    },
    /// Stop the lab's agents and remove its namespaces, links and files.
    Down {
        /// Lab name.
        #[arg(long, default_value = "lab")]
        name: String,
    },
    /// Stop one node's agent and start it again (its jobs, guests and
    /// deputies stay, as under systemd with `KillMode=process`).
    Restart {
        /// Lab name.
        #[arg(long, default_value = "lab")]
        name: String,
        /// The node.
        #[arg(long)]
        node: u32,
        /// How to stop it: `term` (a clean shutdown) or `kill` (a crash).
        #[arg(long, default_value = "term", value_parser = ["term", "kill"])]
        signal: String,
    },
    /// Cut one node off the lab's network (`down`) or join it again (`up`):
    /// its interface goes down, as a pulled cable; its agent keeps running.
    Link {
        /// Lab name.
        #[arg(long, default_value = "lab")]
        name: String,
        /// The node.
        #[arg(long)]
        node: u32,
        /// `down` or `up`.
        #[arg(value_parser = ["down", "up"])]
        state: String,
    },
    /// Show the lab's nodes as its first node sees them.
    Status {
        /// Lab name.
        #[arg(long, default_value = "lab")]
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    hpc::logging::init("warn");
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Up {
            nodes,
            name,
            subnet,
            agent,
            agent_args,
            node_args,
            cpus_per_node,
            mem_per_node,
            unmapped,
        } => up(
            &name,
            nodes,
            &subnet,
            agent,
            (&agent_args, &node_args),
            (cpus_per_node, mem_per_node, &unmapped),
        ),
        Cmd::Down { name } => down(&name),
        Cmd::Restart { name, node, signal } => restart(&name, node, &signal),
        Cmd::Link { name, node, state } => {
            state::Lab::open(&name).and_then(|lab| lab.set_link(node, state == "up"))
        }
        Cmd::Status { name, json } => status(&name, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("openmosix-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn restart(name: &str, node: u32, signal: &str) -> anyhow::Result<()> {
    let mut lab = state::Lab::open(name)?;
    let sig = if signal == "kill" {
        libc::SIGKILL
    } else {
        libc::SIGTERM
    };
    let pid = lab.restart(node, sig)?;
    println!("node {node}'s agent restarted (PID {pid})");
    Ok(())
}

fn agent_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.join("openmosixd")));
    let candidates = sibling
        .into_iter()
        .chain([PathBuf::from("/usr/local/sbin/openmosixd")]);
    for c in candidates {
        if c.exists() {
            return Ok(c);
        }
    }
    bail!("openmosixd not found next to openmosix-lab nor in /usr/local/sbin; pass --agent")
}

/// Parses `ID:ARG`.
fn node_arg(s: &str) -> Result<(u32, String), String> {
    let (id, arg) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not ID:ARG"))?;
    let id = id.parse().map_err(|_| format!("`{id}` is not a node id"))?;
    Ok((id, arg.to_string()))
}

fn up(
    name: &str,
    nodes: u32,
    subnet: &str,
    agent: Option<PathBuf>,
    (agent_args, node_args): (&[String], &[(u32, String)]),
    (cpus_per_node, mem_per_node, unmapped): (Option<u32>, Option<u64>, &[u32]),
) -> anyhow::Result<()> {
    if !(1..=60).contains(&nodes) {
        bail!("--nodes must be from 1 to 60");
    }
    let agent = agent_binary(agent)?;
    let mut lab = Lab::create(name, subnet, nodes)?;
    if let Some(k) = cpus_per_node {
        lab.pin(k)?;
    }
    // Any failure from here on removes what was made so far.
    let made = lab
        .leave_unmapped(unmapped)
        .and_then(|()| match mem_per_node {
            Some(m) => lab.limit_memory(m),
            None => Ok(()),
        })
        .and_then(|()| lab.build(&agent, agent_args, node_args));
    if let Err(e) = made {
        let cleanup = lab.teardown();
        return Err(match cleanup {
            Ok(()) => e.context("lab not created (everything made so far was removed)"),
            Err(c) => e.context(format!("lab not created; cleaning up also failed: {c:#}")),
        });
    }
    println!(
        "lab `{name}` is up: {nodes} node(s) on {subnet}.0/24 (bridge {}, host {subnet}.254)",
        lab.bridge()
    );
    for n in &lab.state.nodes {
        println!(
            "  node {:>2}  {}  netns {}  agent PID {}{}{}",
            n.id,
            n.addr,
            n.netns,
            n.pid.unwrap_or(0),
            if n.cpus.is_empty() {
                String::new()
            } else {
                format!("  CPUs {:?}", n.cpus)
            },
            n.memcg.as_ref().map_or(String::new(), |c| format!(
                "  memory cgroup {}",
                c.dir().display()
            ))
        );
    }
    println!(
        "mosctl --socket {} nodes    # as any local user, on node 1",
        lab.run_dir(1).join(hpc::paths::AGENT_SOCKET_FILE).display()
    );
    println!(
        "mosctl --node {} --key {} --known-hosts {} nodes",
        lab.state
            .nodes
            .first()
            .map(|n| n.addr.as_str())
            .unwrap_or(""),
        lab.admin_key().display(),
        lab.known_hosts().display()
    );
    Ok(())
}

fn down(name: &str) -> anyhow::Result<()> {
    let mut lab = Lab::open(name)?;
    lab.teardown()?;
    println!("lab `{name}` is down");
    Ok(())
}

fn status(name: &str, as_json: bool) -> anyhow::Result<()> {
    let lab = Lab::open(name)?;
    let first = lab.state.nodes.first().context("the lab has no nodes")?;
    let mut config = ClientConfig::from_env();
    config.identity = Identity::KeyFile(lab.admin_key());
    config.known_hosts = lab.known_hosts();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let nodes: Vec<NodeStatus> = rt.block_on(async {
        let c = Client::connect(&first.addr, &config).await?;
        c.call(methods::CLUSTER_NODES, hpc::protocol::NoParams {})
            .await
    })?;
    if as_json {
        let agents: Vec<_> = lab.state.nodes.iter().map(|n| json!({ "id": n.id, "addr": n.addr, "netns": n.netns, "pid": n.pid, "running": n.pid.is_some_and(state::alive) })).collect();
        println!(
            "{}",
            json!({ "name": name, "nodes": nodes, "agents": agents })
        );
        return Ok(());
    }
    println!(
        "lab `{name}` ({} node(s)), as node {} sees it:",
        lab.state.nodes.len(),
        first.id
    );
    println!("{}", tools::render::nodes_table(&nodes));
    for n in &lab.state.nodes {
        if !n.pid.is_some_and(state::alive) {
            println!(
                "warning: the agent of node {} (PID {:?}) is not running; see {}",
                n.id,
                n.pid,
                lab.node_dir(n.id).join("agent.log").display()
            );
        }
    }
    Ok(())
}

/// How long `up` waits for an agent to report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
