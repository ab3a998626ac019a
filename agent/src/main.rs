//! `openmosixd`: the openMosix node agent (one per node, runs as root).

use std::net::SocketAddr;
use std::path::PathBuf;

use agent::startup::{AgentConfig, run};
use clap::Parser;
use hpc::paths;

/// openMosix node agent: samples this node, keeps the openMosix admin state,
/// gossips load with its peers and serves /proc/hpc over SSH (port 4660).
#[derive(Parser, Debug)]
#[command(name = "openmosixd", version, args_override_self = true)]
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
    /// Most concurrent authenticated SSH sessions.
    #[arg(long, default_value_t = 256)]
    max_sessions: usize,
    /// Of those, how many only the cluster key (other agents) may take.
    #[arg(long, default_value_t = 32)]
    cluster_reserved_sessions: usize,
    /// Most connections waiting for authentication, in all.
    #[arg(long, default_value_t = 256)]
    max_unauthenticated: usize,
    /// Most connections waiting for authentication from one address (further
    /// ones close that address's oldest).
    #[arg(long, default_value_t = 8)]
    max_unauthenticated_per_source: usize,
    /// Most open channels in one SSH session.
    #[arg(long, default_value_t = 16)]
    max_channels: usize,
    /// Seconds a client has to authenticate after connecting.
    #[arg(long, default_value_t = 20)]
    login_grace_secs: u64,
    /// Which processes are this node's: `all` (the machine) or `netns` (only those in the
    /// agent's network namespace, for lab nodes sharing one kernel).
    #[arg(long, default_value = "all", value_parser = ["all", "netns"])]
    scope: String,
    /// The CRIU binary (default: `criu` in /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin, /bin;
    /// it must belong to root).
    #[arg(long)]
    criu: Option<PathBuf>,
    /// Directory migration images pass through (default: STATE_DIR/images).
    #[arg(long)]
    image_dir: Option<PathBuf>,
    /// Most MiB of migration images held at once (default: the image file
    /// system's free space, less 1 % of it and at least 64 MiB).
    #[arg(long)]
    image_space: Option<u64>,
    /// The local socket for this node's users (default: RUN_DIR/agent.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Seconds a gossip datagram's send time may differ from this node's clock.
    #[arg(long, default_value_t = 60)]
    gossip_replay_window_secs: u64,
    /// Injects a migration fault on purpose (tests only): drop-after-commit,
    /// lose-commit, target-silent-after-commit.
    #[arg(long, hide = true)]
    test_fault: Option<agent::migration::Fault>,
    /// Automatic load balancing: `on` moves busy processes to lighter nodes
    /// on its own (the admin switches `stay`, `lstay`, `block` and `quiet`
    /// apply); `off` moves only what is asked for. The last one given wins.
    #[arg(long, value_enum, default_value = "on")]
    balance: OnOff,
    /// Autodiscovery (openMosix's omdiscd): `on` announces this agent on a
    /// multicast group and meets the agents it hears there (sealed with the
    /// cluster key); an agent with no map entry then takes the last octet of
    /// its IPv4 address as its node id. The last one given wins.
    #[arg(long, value_enum, default_value = "on")]
    discovery: OnOff,
    /// The multicast group and port of autodiscovery.
    #[arg(long, default_value_t = agent::discovery::DEFAULT_GROUP)]
    discovery_group: std::net::SocketAddrV4,
    /// The address of the interface autodiscovery uses (default: this node's).
    #[arg(long)]
    discovery_interface: Option<std::net::Ipv4Addr>,
    /// Make CONFIG_DIR/cluster_key for a new cluster and exit (never
    /// replaces one; copy it to every other node before starting them).
    #[arg(long)]
    new_cluster_key: bool,
    /// Serve this node's figures for Prometheus at http://ADDR/metrics
    /// (`--metrics` alone: 127.0.0.1:9466). Read-only and without a key:
    /// keep it on loopback or a monitoring network.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9466")]
    metrics: Option<SocketAddr>,
    /// How a migration's memory travels between agents: `direct`, on a TCP
    /// connection of its own (every record sealed with AES-256-GCM under a
    /// key made for that migration and handed over in the SSH session), to
    /// the target's --pages-port; `ssh`, inside the agents' SSH session
    /// (slower; for networks that pass only the agent's port). A source
    /// whose direct link does not connect within 2 s takes the SSH session.
    #[arg(long, value_enum, default_value = "direct")]
    pages_link: PagesLink,
    /// The TCP port of the direct pages link (0: any free port; each
    /// migration's offer tells the other agent which).
    #[arg(long, default_value_t = 0)]
    pages_port: u16,
}

/// How a migration's memory travels (`--pages-link`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PagesLink {
    /// On a sealed TCP link of its own.
    Direct,
    /// Inside the SSH session.
    Ssh,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Descriptors the agent was started with beyond stdio (a shell's, a
    // harness's) are no business of the jobs and helpers it starts.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets descriptor flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    hpc::logging::init("info,russh=warn,chitchat=warn");
    let cli = Cli::parse();
    if cli.new_cluster_key {
        let fingerprint = agent::startup::new_cluster_key(&cli.config_dir)?;
        println!(
            "created {} ({fingerprint}); copy it to every node of the cluster",
            cli.config_dir.join(paths::CLUSTER_KEY_FILE).display()
        );
        return Ok(());
    }
    run(AgentConfig {
        config_dir: cli.config_dir,
        state_dir: cli.state_dir,
        run_dir: cli.run_dir,
        map: cli.map,
        listen: cli.listen,
        node_id: cli.node_id,
        limits: agent::admission::AdmissionLimits {
            sessions: cli.max_sessions.max(1),
            cluster_reserved: cli.cluster_reserved_sessions,
            waiting: cli.max_unauthenticated.max(1),
            per_source: cli.max_unauthenticated_per_source.max(1),
            channels: cli.max_channels.max(1),
            login_grace: std::time::Duration::from_secs(cli.login_grace_secs.max(1)),
            ..Default::default()
        },
        scope_netns: cli.scope == "netns",
        criu: cli.criu,
        image_dir: cli.image_dir,
        image_space: cli.image_space.map(|m| m.saturating_mul(1 << 20)),
        socket: cli.socket,
        replay_window: std::time::Duration::from_secs(cli.gossip_replay_window_secs.max(1)),
        fault: cli.test_fault,
        balance: cli.balance == OnOff::On,
        discovery: (cli.discovery == OnOff::On)
            .then_some((cli.discovery_group, cli.discovery_interface)),
        metrics: cli.metrics,
        pages_port: (cli.pages_link == PagesLink::Direct).then_some(cli.pages_port),
    })
    .await
}

/// A switch on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    /// Switched on.
    On,
    /// Switched off.
    Off,
}
