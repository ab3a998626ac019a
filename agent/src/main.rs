//! `openmosixd`: the openMosix node agent (one per node, runs as root).

use std::net::SocketAddr;
use std::path::PathBuf;

use agent::startup::{AgentConfig, run};
use clap::Parser;
use hpc::paths;

/// openMosix node agent: samples this node, keeps the openMosix admin state,
/// gossips load with its peers and serves /proc/hpc over SSH (port 4660).
#[derive(Parser, Debug)]
#[command(name = "openmosixd", version)]
struct Cli {
    /// Configuration directory (host key, authorized_keys, cluster_key, openmosix.map).
    #[arg(long, default_value = paths::CONFIG_DIR)]
    config_dir: PathBuf,
    /// Persistent state directory.
    #[arg(long, default_value = paths::STATE_DIR)]
    state_dir: PathBuf,
    /// Runtime directory (PID file).
    #[arg(long, default_value = paths::RUN_DIR)]
    run_dir: PathBuf,
    /// Cluster map in setpe format (default: CONFIG_DIR/openmosix.map).
    #[arg(long)]
    map: Option<PathBuf>,
    /// Address of the SSH server (default: this node's map address, else 0.0.0.0:4660).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// This node's openMosix id (default: the map entry that is a local address).
    #[arg(long)]
    node_id: Option<u32>,
    /// Most concurrent SSH sessions.
    #[arg(long, default_value_t = 256)]
    max_sessions: usize,
    /// Seconds a client has to authenticate after connecting.
    #[arg(long, default_value_t = 20)]
    login_grace_secs: u64,
    /// Which processes are this node's: `all` (the machine) or `netns` (only those in the
    /// agent's network namespace, for lab nodes sharing one kernel).
    #[arg(long, default_value = "all", value_parser = ["all", "netns"])]
    scope: String,
    /// The CRIU binary (default: `criu` on $PATH or in /usr/local/sbin, /usr/sbin, /sbin).
    #[arg(long)]
    criu: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hpc::logging::init("info,russh=warn,chitchat=warn");
    let cli = Cli::parse();
    run(AgentConfig {
        config_dir: cli.config_dir,
        state_dir: cli.state_dir,
        run_dir: cli.run_dir,
        map: cli.map,
        listen: cli.listen,
        node_id: cli.node_id,
        limits: agent::server::SessionLimits {
            max_sessions: cli.max_sessions.max(1),
            login_grace: std::time::Duration::from_secs(cli.login_grace_secs.max(1)),
        },
        scope_netns: cli.scope == "netns",
        criu: cli.criu,
    })
    .await
}
