//! Start-up: directories, keys, map, node id, calibration, then the sampler
//! thread, gossip and the SSH server, and an orderly shutdown on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use hpc::map::{ClusterMap, MapNode};
use hpc::model::NodeId;
use hpc::paths;

use crate::cluster::{ClusterConfig, ClusterView};
use crate::context::AgentContext;
use crate::keys::{AuthorizedKeys, gossip_secret, load_or_create_key};
use crate::sampling::{NodeIdentity, SamplingLoop};
use crate::store::Store;

/// Where the agent keeps things and where it listens.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Host key, authorized keys, cluster key, map.
    pub config_dir: PathBuf,
    /// Persistent state.
    pub state_dir: PathBuf,
    /// PID file and runtime files.
    pub run_dir: PathBuf,
    /// The cluster map (default `config_dir/openmosix.map`; absent = a cluster of one).
    pub map: Option<PathBuf>,
    /// TCP address of the SSH server (default: this node's map address, else 0.0.0.0:4660).
    pub listen: Option<SocketAddr>,
    /// This node's id (default: the map entry matching `listen` or a local address).
    pub node_id: Option<NodeId>,
    /// Session, channel and unauthenticated-connection limits of the SSH server.
    pub limits: crate::admission::AdmissionLimits,
    /// List only the processes of the agent's own network namespace (lab nodes).
    pub scope_netns: bool,
    /// The CRIU binary (default: found in the system directories).
    pub criu: Option<PathBuf>,
    /// Where migration images go (default `state_dir/images`).
    pub image_dir: Option<PathBuf>,
    /// Most bytes of migration images at once (default: what the disk has).
    pub image_space: Option<u64>,
    /// The local socket (default `run_dir/agent.sock`).
    pub socket: Option<PathBuf>,
    /// How far a gossip datagram's send time may be from this node's clock.
    pub replay_window: Duration,
    /// A fault to inject (tests only).
    pub fault: Option<crate::migration::Fault>,
    /// Balance automatically ([`crate::balancing`]).
    pub balance: bool,
    /// Autodiscovery ([`crate::discovery`]): the multicast group, and the
    /// interface's address (default: this node's address); `None`: off.
    pub discovery: Option<(std::net::SocketAddrV4, Option<std::net::Ipv4Addr>)>,
    /// Where to serve the Prometheus metrics ([`crate::metrics`]); `None`: nowhere.
    pub metrics: Option<SocketAddr>,
    /// The port of the direct pages link ([`crate::migration::pages_path`];
    /// 0: any free port); `None`: migrations' memory goes in the SSH session.
    pub pages_port: Option<u16>,
}

impl AgentConfig {
    /// The map file to read.
    pub fn map_path(&self) -> PathBuf {
        self.map
            .clone()
            .unwrap_or_else(|| self.config_dir.join(paths::MAP_FILE))
    }
}

/// Creates `path` (and its parents) with `mode` if missing, and refuses to
/// use it if it is a symbolic link, belongs to another user, or others may
/// write it (the original collector's `/tmp` symlink hole, CVE-2005-0894).
fn own_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?;
    if meta.file_type().is_symlink() {
        bail!("{} is a symbolic link; refusing to use it", path.display());
    }
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        bail!(
            "{} belongs to uid {}, not to the agent's user (uid {me}); refusing to use it",
            path.display(),
            meta.uid()
        );
    }
    if meta.permissions().mode() & 0o022 != 0 {
        bail!(
            "{} is writable by others (mode {:o}); fix it with chmod go-w",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    Ok(())
}

fn private_dir(path: &Path) -> anyhow::Result<()> {
    own_dir(path, 0o700)
}

/// `openmosixd --new-cluster-key`: makes `config_dir`'s cluster key for a
/// new cluster, never replacing one; its fingerprint. (The packages' setup
/// calls it only when asked: every node of a cluster needs the same key.)
pub fn new_cluster_key(config_dir: &Path) -> anyhow::Result<String> {
    private_dir(config_dir)?;
    let path = config_dir.join(paths::CLUSTER_KEY_FILE);
    if std::fs::symlink_metadata(&path).is_ok() {
        bail!(
            "{} exists already; it is kept (remove it first to start a new cluster)",
            path.display()
        );
    }
    let key = load_or_create_key(&path)?;
    Ok(crate::keys::fingerprint(key.public_key()))
}

/// The runtime directory: like [`private_dir`], but others may enter it to
/// reach the local socket (0755).
fn run_dir(path: &Path) -> anyhow::Result<()> {
    own_dir(path, 0o755)?;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o011 != 0o011 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot open {} for local users", path.display()))?;
        tracing::info!(dir = %path.display(), "runtime directory made 0755 so local users reach the agent's socket");
    }
    Ok(())
}

/// The kernel knows which of the map's addresses are ours: binding to one succeeds.
fn is_local(addr: &SocketAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(addr.ip(), 0)).is_ok()
}

/// Picks this node's map entry.
fn pick_self(map: &ClusterMap, cfg: &AgentConfig) -> anyhow::Result<Option<MapNode>> {
    if let Some(id) = cfg.node_id {
        return Ok(map.node(id).cloned());
    }
    if let Some(l) = cfg.listen
        && let Some(n) = map.nodes.iter().find(|n| {
            n.addr == l
                || (n.addr.ip() == l.ip()
                    && !l.ip().is_unspecified()
                    && map.nodes.iter().filter(|m| m.addr.ip() == l.ip()).count() == 1)
        })
    {
        return Ok(Some(n.clone()));
    }
    let local: Vec<&MapNode> = map.nodes.iter().filter(|n| is_local(&n.addr)).collect();
    match local.as_slice() {
        [] if map.nodes.is_empty() => Ok(None),
        [] => bail!("none of the cluster map's addresses belongs to this machine; pass --node-id"),
        [one] => Ok(Some((*one).clone())),
        _ => bail!("several cluster map entries are addresses of this machine; pass --node-id"),
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(cfg: AgentConfig) -> anyhow::Result<()> {
    private_dir(&cfg.config_dir)?;
    private_dir(&cfg.state_dir)?;
    run_dir(&cfg.run_dir)?;
    if let Err(e) = private_dir(Path::new(paths::ENDED_DIR)) {
        tracing::warn!(error = %e, "jobs that end while no agent is their parent (after a restart) will end with an unknown status");
    }
    let host_key = load_or_create_key(&cfg.config_dir.join(paths::HOST_KEY_FILE))?;
    let cluster_key = load_or_create_key(&cfg.config_dir.join(paths::CLUSTER_KEY_FILE))?;
    let secret = gossip_secret(&cluster_key)?;

    let map_path = cfg.map_path();
    let map = if map_path.exists() || cfg.map.is_some() {
        ClusterMap::load(&map_path)?
    } else {
        ClusterMap::default()
    };
    let me = pick_self(&map, &cfg)?;
    let listen = cfg
        .listen
        .or(me.as_ref().map(|n| n.addr))
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], paths::AGENT_PORT)));
    let advertise = me
        .as_ref()
        .map(|n| n.addr)
        .unwrap_or_else(|| advertised(listen));
    // With no map entry, a discovering agent numbers itself by its address.
    let discovered_id = cfg
        .discovery
        .and_then(|_| crate::discovery::id_from_address(advertise.ip()));
    let node_id = cfg
        .node_id
        .or(me.as_ref().map(|n| n.id))
        .or(discovered_id)
        .unwrap_or(1);
    if !map.nodes.is_empty() && me.is_none() {
        bail!(
            "node {node_id} is not in the cluster map {}",
            map_path.display()
        );
    }
    let name = me.as_ref().map(|n| n.host.clone()).unwrap_or_else(hostname);

    let store = Arc::new(Store::open(&cfg.state_dir)?);
    if !store.get().calibrated {
        let speed =
            tokio::task::spawn_blocking(|| crate::speed::calibrate(Duration::from_millis(250)))
                .await?;
        store.update(|s| {
            s.calibrated = true;
            if !s.admin.speed_set_by_admin {
                s.admin.speed = speed;
            }
        })?;
        tracing::info!(speed, "calibrated node speed");
    }
    store.update(|s| s.admin.mospe = node_id)?;

    let images = cfg
        .image_dir
        .clone()
        .unwrap_or_else(|| cfg.state_dir.join(paths::IMAGES_DIR));
    private_dir(&images)?;
    clear_stale_images(&images);
    let images = crate::image_space::ImageSpace::new(images, cfg.image_space);
    let ledger_dir = cfg.state_dir.join("migrations");
    private_dir(&ledger_dir)?;
    let (ledger, stale_restores) = crate::migration::ledger::Ledger::open(ledger_dir);
    let move_log = crate::move_log::MoveLog::open(cfg.state_dir.join(paths::MOVE_LOG_FILE))
        .map_err(|e| anyhow::anyhow!("cannot open the move log: {e}"))?;
    if let Err(e) = crate::jobs::become_subreaper() {
        tracing::warn!(error = %e, "cannot become the child subreaper; migrated jobs' exit status will be lost");
    }
    let jobinit = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("openmosix-jobinit")))
        .unwrap_or_else(|| PathBuf::from("/usr/local/sbin/openmosix-jobinit"));
    let programs = if jobinit.exists() {
        crate::jobs::JobPrograms::locate(jobinit.clone())
    } else {
        Err(format!(
            "{} is missing (install it next to openmosixd)",
            jobinit.display()
        ))
    };
    if let Err(why) = &programs {
        tracing::warn!(%why, "jobs cannot be started");
    }
    let criu_path = cfg.criu.clone();
    let detected =
        tokio::task::spawn_blocking(move || crate::criu::detect(criu_path.as_deref())).await?;
    let mut precopy = false;
    let mut postcopy = None;
    let pullguard = jobinit.with_file_name("openmosix-pullguard");
    let (criu, migration) = match (detected, &programs) {
        (Ok(_), Err(why)) => (None, format!("migration unavailable: {why}")),
        (Ok(c), Ok(_)) => {
            let lazy = c.lazy_pages.clone().and_then(|()| {
                crate::helpers::check_trusted(&pullguard)
                    .map_err(|e| format!("its guard is missing: {e}"))
            });
            let mut m = format!(
                "migration available: CRIU {} at {}{}{}",
                c.version,
                c.binary.display(),
                match &lazy {
                    Ok(()) => ", with post-copy".to_string(),
                    Err(why) => format!(" (no post-copy: {why})"),
                },
                if c.mem_tracking {
                    ", with pre-copy"
                } else {
                    " (no pre-dump: the kernel does not track dirty memory)"
                }
            );
            if lazy.is_ok() {
                postcopy = Some(pullguard.clone());
            }
            let binary = c.binary.clone();
            tokio::task::spawn_blocking(move || crate::criu::warm_feature_cache(&binary)).await?;
            if let Some(limit) = crate::criu::other_users_limit(&c.version) {
                tracing::warn!("{limit}");
                m.push_str("; ");
                m.push_str(limit);
            }
            precopy = c.mem_tracking;
            (Some(c.binary), m)
        }
        (Err(reason), _) => (None, format!("migration unavailable: {reason}")),
    };
    tracing::info!(%migration, "checked CRIU");
    let host_key_line = host_key
        .public_key()
        .to_openssh()
        .context("cannot encode the host key")?;
    let identity = NodeIdentity {
        id: node_id,
        name: name.clone(),
        addr: advertise.to_string(),
        migration: migration.clone(),
        host_key: host_key_line,
    };
    let jobs = Arc::new(crate::jobs::Jobs::new(store.clone(), node_id, programs));
    let sampler = if cfg.scope_netns {
        crate::sampler::Sampler::scoped_to_own_netns()?
    } else {
        crate::sampler::Sampler::new()
    };
    let mut lp = SamplingLoop::new(identity, sampler).with_jobs(jobs.clone());
    let first = lp.pass(&store).context("cannot read /proc")?;
    let (snap_tx, snap_rx) = tokio::sync::watch::channel(Arc::new(first));
    let (wake_tx, wake_rx) = std::sync::mpsc::sync_channel(1);
    let sampler_store = store.clone();
    std::thread::Builder::new()
        .name("sampler".into())
        .spawn(move || crate::sampling::run(lp, sampler_store, snap_tx, wake_rx))
        .context("cannot start the sampler thread")?;

    let gossip_listen = SocketAddr::new(listen.ip(), advertise.port());
    let cluster = ClusterView::start(ClusterConfig {
        self_id: node_id,
        advertise,
        listen: gossip_listen,
        map,
        map_path: map_path.clone(),
        secret,
        replay_window: crate::gossip_transport::ReplayWindow(cfg.replay_window),
        store: store.clone(),
    })
    .await
    .context("cannot start cluster gossip")?;

    let authorized = AuthorizedKeys::new(
        cfg.config_dir.join(paths::AUTHORIZED_KEYS_FILE),
        cluster_key.public_key().clone(),
    );
    let (deputies, deputy_events) =
        crate::deputy::Deputies::start().context("cannot start the deputy keeper")?;
    let (newborns, newborns_rx) = tokio::sync::mpsc::unbounded_channel();
    let pages_listener = match cfg.pages_port {
        Some(port) if criu.is_some() => Some(
            tokio::net::TcpListener::bind(SocketAddr::new(listen.ip(), port))
                .await
                .with_context(|| {
                    format!(
                        "cannot listen for pages links on {}:{port}/tcp",
                        listen.ip()
                    )
                })?,
        ),
        _ => None,
    };
    let pages_port = pages_listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port());
    let ctx = Arc::new(AgentContext {
        node_id,
        store,
        snapshot: snap_rx,
        cluster,
        authorized,
        migration,
        resample: wake_tx,
        newborns,
        arrivals: Arc::default(),
        in_motion: Default::default(),
        under_way: Default::default(),
        criu,
        precopy,
        postcopy,
        page_channels: Default::default(),
        pages_port,
        metrics: Arc::default(),
        images,
        ledger,
        move_log,
        fault: cfg.fault,
        jobs,
        peers: crate::peers::Peers::new(cfg.config_dir.join(paths::CLUSTER_KEY_FILE)),
        deputies,
    });
    if let Some(f) = cfg.fault {
        tracing::warn!(fault = ?f, "TEST FAULT INJECTION IS ON: migrations will fail on purpose");
    }
    crate::migration::end_stale_restores(&ctx, stale_restores);
    crate::migration::deputies::readopt_all(&ctx).await;
    let jobs_task = tokio::spawn(crate::migration::jobs_loop(ctx.clone()));
    match (cfg.discovery, advertise.ip()) {
        (Some((group, interface)), std::net::IpAddr::V4(own)) => {
            let d = crate::discovery::DiscoveryConfig {
                group,
                interface: interface.unwrap_or(own),
                me: crate::discovery::Announcement {
                    id: node_id,
                    name: name.clone(),
                    addr: advertise,
                },
                secret,
                window: crate::gossip_transport::ReplayWindow(cfg.replay_window),
            };
            tokio::spawn(crate::discovery::run(d, ctx.clone()));
        }
        (Some(_), ip) => {
            tracing::warn!(%ip, "autodiscovery is off: it needs an IPv4 address (the cluster map still works)");
        }
        (None, _) => tracing::info!("autodiscovery is off (--discovery off)"),
    }
    match (cfg.balance, ctx.criu.is_some()) {
        (true, true) => {
            tokio::spawn(crate::balancing::balance_loop(ctx.clone(), newborns_rx));
            tokio::spawn(crate::fork_watch::watch(ctx.clone()));
            tracing::info!("automatic load balancing is on");
        }
        (true, false) => {
            drop(newborns_rx);
            tracing::info!("automatic load balancing is off: migration is unavailable here");
        }
        (false, _) => {
            // Nobody places new jobs: spawns' hand-overs are dropped at once.
            drop(newborns_rx);
            tracing::info!("automatic load balancing is off (--balance off)");
        }
    }
    tokio::spawn(crate::migration::deputies::deputy_loop(
        ctx.clone(),
        deputy_events,
    ));
    let socket_path = cfg
        .socket
        .clone()
        .unwrap_or_else(|| cfg.run_dir.join(paths::AGENT_SOCKET_FILE));
    let local = crate::local_socket::bind(&socket_path)?;
    let local_task = tokio::spawn(crate::local_socket::serve(local, ctx.clone()));

    let metrics_task = match cfg.metrics {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot serve the metrics on {addr}/tcp"))?;
            if !addr.ip().is_loopback() {
                tracing::warn!(%addr, "metrics served beyond loopback: anyone who reaches that address reads this node's figures (no key is asked)");
            }
            tracing::info!(%addr, "serving Prometheus metrics at /metrics");
            Some(tokio::spawn(crate::metrics::http::serve(
                listener,
                ctx.clone(),
            )))
        }
        None => None,
    };
    if let Some(l) = pages_listener {
        tracing::info!(
            port = pages_port,
            "migrations' memory takes the direct pages link"
        );
        tokio::spawn(crate::migration::pages_path::serve(l, ctx.clone()));
    }
    let publisher = tokio::spawn(publish_status(ctx.clone()));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}/tcp"))?;
    let pid_file = cfg.run_dir.join("openmosixd.pid");
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write {}", pid_file.display()))?;
    tracing::info!(node = node_id, %listen, gossip = %gossip_listen, socket = %socket_path.display(), "openmosixd ready");
    // Machine-readable readiness line for scripts and tests.
    println!(
        "openmosixd ready node={node_id} listen={} gossip={gossip_listen}",
        listener.local_addr()?
    );

    let config = crate::server::ssh_config(host_key);
    let server = tokio::spawn(crate::server::run(
        listener,
        config,
        ctx.clone(),
        cfg.limits,
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        r = server => match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "ssh server stopped"),
            Err(e) => tracing::error!(error = %e, "ssh server task failed"),
        },
    }
    publisher.abort();
    jobs_task.abort();
    if let Some(t) = metrics_task {
        t.abort();
    }
    local_task.abort();
    let _ = std::fs::remove_file(&socket_path);
    let _ = std::fs::remove_file(&pid_file);
    Ok(())
}

/// The address clients should use for an agent listening on `listen`: the
/// address itself, or for a wildcard the address of the default route's
/// interface (found by connecting a UDP socket, which sends nothing), or loopback.
fn advertised(listen: SocketAddr) -> SocketAddr {
    if !listen.ip().is_unspecified() {
        return listen;
    }
    let ip = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    SocketAddr::new(ip, listen.port())
}

/// Gossips the node status after every sampling pass, unless `quiet`: a
/// node that turns quiet says so once (it takes no guests from balancers,
/// `accepts` is false) and is silent from then on.
async fn publish_status(ctx: Arc<AgentContext>) {
    let mut rx = ctx.snapshot.clone();
    let mut was_quiet = false;
    loop {
        if rx.changed().await.is_err() {
            return;
        }
        let status = rx.borrow_and_update().status.clone();
        let quiet = ctx.store.admin().quiet;
        if !quiet || !was_quiet {
            ctx.cluster.publish(&status).await;
        }
        was_quiet = quiet && !status.accepts;
    }
}

/// Removes image directories left by a previous run (a crash mid-migration);
/// their source copies resumed or their target copies never ran.
fn clear_stale_images(images: &Path) {
    let Ok(entries) = std::fs::read_dir(images) else {
        return;
    };
    for e in entries.flatten() {
        // Files here are the status files of single processes' placeholders,
        // which outlive the agent: kept.
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Err(err) = std::fs::remove_dir_all(e.path()) {
            tracing::warn!(dir = %e.path().display(), error = %err, "cannot remove stale images");
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
