//! The lab's record of what it made (kept in `LAB_ROOT/<name>/lab.json`, written
//! after every step), and building and tearing down from it.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::net;

/// Where labs keep their files.
pub const LAB_ROOT: &str = "/var/lib/openmosix/lab";
/// Where lab nodes keep their runtime files (PID file, local socket): under
/// `/run`, open to local users (0755) so they reach a node's socket.
pub const RUN_ROOT: &str = "/run/openmosix-lab";

/// Something `up` created and `down` must remove.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Created {
    /// A bridge in the root namespace.
    Bridge(String),
    /// A network namespace.
    Netns(String),
    /// The root-side end of a veth pair (removing it removes both ends).
    Veth(String),
    /// A node's memory cgroup.
    MemCgroup(hpc::memcg::MemoryCgroup),
}

/// One lab node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabNode {
    /// openMosix node id.
    pub id: u32,
    /// Agent address, `IP:4660`.
    pub addr: String,
    /// Network namespace name.
    pub netns: String,
    /// The agent's PID once started.
    pub pid: Option<u32>,
    /// The agent program it was started with (for `restart`).
    #[serde(default)]
    pub agent: Option<PathBuf>,
    /// The agent's extra arguments (for `restart`).
    #[serde(default)]
    pub args: Vec<String>,
    /// The CPUs the agent (and all it starts) is pinned to; empty: all.
    #[serde(default)]
    pub cpus: Vec<usize>,
    /// The memory cgroup the agent (and all it starts) runs in, if the
    /// node's memory is limited.
    #[serde(default)]
    pub memcg: Option<hpc::memcg::MemoryCgroup>,
    /// Left out of the map: the agent starts with only the cluster key (no
    /// map, no node id) and joins by autodiscovery.
    #[serde(default)]
    pub unmapped: bool,
}

/// The CPUs this process may run on.
fn allowed_cpus() -> anyhow::Result<Vec<usize>> {
    hpc::affinity::allowed_cpus().ok_or_else(|| {
        anyhow::anyhow!(
            "cannot read this program's CPUs: {}",
            std::io::Error::last_os_error()
        )
    })
}

/// The lab record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// Lab name.
    pub name: String,
    /// First three octets of the /24.
    pub subnet: String,
    /// What was created, in order.
    pub created: Vec<Created>,
    /// The nodes.
    pub nodes: Vec<LabNode>,
}

/// A lab on disk.
pub struct Lab {
    /// The record.
    pub state: LabState,
    dir: PathBuf,
}

/// Whether a process is running.
pub fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

fn validate(name: &str, subnet: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 8
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        bail!("lab name `{name}` must be 1-8 lower-case letters or digits");
    }
    let octets: Vec<&str> = subnet.split('.').collect();
    if octets.len() != 3 || octets.iter().any(|o| o.parse::<u8>().is_err()) {
        bail!("--subnet `{subnet}` must be three octets, e.g. 10.77.0");
    }
    Ok(())
}

impl Lab {
    /// Starts a new lab record; fails if one of that name exists.
    pub fn create(name: &str, subnet: &str, nodes: u32) -> anyhow::Result<Self> {
        validate(name, subnet)?;
        let dir = PathBuf::from(LAB_ROOT).join(name);
        if dir.exists() {
            bail!(
                "lab `{name}` exists already ({}); run `openmosix-lab down --name {name}` first",
                dir.display()
            );
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let nodes = (1..=nodes)
            .map(|id| LabNode {
                id,
                addr: format!("{subnet}.{id}:{}", hpc::paths::AGENT_PORT),
                netns: format!("om-{name}-{id}"),
                pid: None,
                agent: None,
                args: Vec::new(),
                cpus: Vec::new(),
                memcg: None,
                unmapped: false,
            })
            .collect();
        let lab = Self {
            state: LabState {
                name: name.into(),
                subnet: subnet.into(),
                created: Vec::new(),
                nodes,
            },
            dir,
        };
        lab.save()?;
        Ok(lab)
    }

    /// Opens an existing lab.
    pub fn open(name: &str) -> anyhow::Result<Self> {
        let dir = PathBuf::from(LAB_ROOT).join(name);
        let path = dir.join("lab.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("no lab named `{name}` ({} missing)", path.display()))?;
        let state = serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged", path.display()))?;
        Ok(Self { state, dir })
    }

    fn save(&self) -> anyhow::Result<()> {
        let path = self.dir.join("lab.json");
        let tmp = self.dir.join("lab.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.state)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    fn record(&mut self, c: Created) -> anyhow::Result<()> {
        self.state.created.push(c);
        self.save()
    }

    /// The bridge's name.
    pub fn bridge(&self) -> String {
        format!("omb-{}", self.state.name)
    }

    /// The lab's admin key (private).
    pub fn admin_key(&self) -> PathBuf {
        self.dir.join("admin_key")
    }

    /// The lab's monitor key (private; read-only role, for openmosixcollector).
    pub fn monitor_key(&self) -> PathBuf {
        self.dir.join("monitor_key")
    }

    /// known_hosts listing every node's host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// A node's directory (config/, state/, agent.log).
    pub fn node_dir(&self, id: u32) -> PathBuf {
        self.dir.join(format!("node{id}"))
    }

    /// The lab's runtime directory.
    pub fn run_root(&self) -> PathBuf {
        PathBuf::from(RUN_ROOT).join(&self.state.name)
    }

    /// A node's runtime directory (PID file, `agent.sock`).
    pub fn run_dir(&self, id: u32) -> PathBuf {
        self.run_root().join(format!("node{id}"))
    }

    /// Gives each node `k` CPUs of its own, from those this program may run
    /// on (wrapping around them).
    pub fn pin(&mut self, k: u32) -> anyhow::Result<()> {
        let allowed = allowed_cpus()?;
        let k = k as usize;
        if k == 0 || k > allowed.len() {
            bail!(
                "--cpus-per-node must be from 1 to {} (the CPUs this machine lets us use)",
                allowed.len()
            );
        }
        for (i, n) in self.state.nodes.iter_mut().enumerate() {
            n.cpus = (0..k)
                .filter_map(|c| allowed.get((i * k + c) % allowed.len()).copied())
                .collect();
        }
        self.save()
    }

    /// Leaves nodes `ids` out of the map: they start with only the cluster
    /// key and join by autodiscovery.
    pub fn leave_unmapped(&mut self, ids: &[u32]) -> anyhow::Result<()> {
        for id in ids {
            let n = self
                .state
                .nodes
                .iter_mut()
                .find(|n| n.id == *id)
                .with_context(|| format!("--unmapped {id}: the lab has no node {id}"))?;
            n.unmapped = true;
        }
        if self.state.nodes.iter().all(|n| n.unmapped) {
            bail!("--unmapped: at least one node must be in the map");
        }
        self.save()
    }

    /// Gives each node `mib` MiB of memory of its own: a memory cgroup (inside
    /// this program's) that its agent, and all it starts or restores, runs
    /// in; the kernel's OOM killer acts there when it is full.
    pub fn limit_memory(&mut self, mib: u64) -> anyhow::Result<()> {
        if mib < 64 {
            bail!("--mem-per-node must be at least 64 (MiB)");
        }
        let parent = hpc::memcg::MemoryCgroup::own().context(
            "--mem-per-node needs a memory cgroup (v1 or v2) mounted under /sys/fs/cgroup",
        )?;
        for i in 0..self.state.nodes.len() {
            let Some(id) = self.state.nodes.get(i).map(|n| n.id) else {
                continue;
            };
            let name = format!("openmosix-lab-{}-node{id}", self.state.name);
            let cg = parent.child(&name, mib << 20).with_context(|| {
                format!(
                    "cannot make the memory cgroup {}",
                    parent.dir().join(&name).display()
                )
            })?;
            self.record(Created::MemCgroup(cg.clone()))?;
            if let Some(n) = self.state.nodes.get_mut(i) {
                n.memcg = Some(cg);
            }
        }
        self.save()
    }

    /// Creates the network and starts the agents, each with `args` (for
    /// every node) and its own from `node_args` (`(id, arg)`).
    pub fn build(
        &mut self,
        agent: &std::path::Path,
        args: &[String],
        node_args: &[(u32, String)],
    ) -> anyhow::Result<()> {
        let name = self.state.name.clone();
        let subnet = self.state.subnet.clone();
        let bridge = self.bridge();
        if net::link_exists(&bridge) {
            bail!("a link named {bridge} exists already");
        }
        net::keygen(&self.admin_key(), &format!("openmosix-lab {name} admin"))?;
        net::keygen(
            &self.monitor_key(),
            &format!("openmosix-lab {name} monitor"),
        )?;
        net::keygen(
            &self.dir.join("cluster_key"),
            &format!("openmosix-lab {name} cluster"),
        )?;
        let mut authorized = format!(
            "admin {}\nmonitor {}\n",
            net::public_of(&self.admin_key())?,
            net::public_of(&self.monitor_key())?
        );
        if let Ok(root) = std::fs::read_to_string("/root/.ssh/id_ed25519.pub") {
            authorized.push_str(&format!("admin {}\n", root.trim()));
        }
        let map: String = self
            .state
            .nodes
            .iter()
            .filter(|n| !n.unmapped)
            .map(|n| format!("{} {subnet}.{} 1\n", n.id, n.id))
            .collect();
        std::fs::write(self.dir.join("openmosix.map"), &map)?;

        net::ip(&["link", "add", &bridge, "type", "bridge"])?;
        self.record(Created::Bridge(bridge.clone()))?;
        net::ip(&["addr", "add", &format!("{subnet}.254/24"), "dev", &bridge])?;
        net::ip(&["link", "set", &bridge, "up"])?;

        for node in self.state.nodes.clone() {
            if net::netns_exists(&node.netns) {
                bail!("network namespace {} exists already", node.netns);
            }
            net::ip(&["netns", "add", &node.netns])?;
            self.record(Created::Netns(node.netns.clone()))?;
            let host = format!("om{name}-{}", node.id);
            let peer = format!("op{name}-{}", node.id);
            net::ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer])?;
            self.record(Created::Veth(host.clone()))?;
            net::ip(&["link", "set", &peer, "netns", &node.netns])?;
            net::ip_in(&node.netns, &["link", "set", &peer, "name", "eth0"])?;
            net::ip_in(
                &node.netns,
                &[
                    "addr",
                    "add",
                    &format!("{subnet}.{}/24", node.id),
                    "dev",
                    "eth0",
                ],
            )?;
            net::ip_in(&node.netns, &["link", "set", "eth0", "up"])?;
            // CRIU's kernel probes need loopback up in every namespace.
            net::ip_in(&node.netns, &["link", "set", "lo", "up"])?;
            net::ip(&["link", "set", &host, "master", &bridge])?;
            net::ip(&["link", "set", &host, "up"])?;
            self.prepare_node_dir(node.id, &authorized, (!node.unmapped).then_some(&map))?;
        }
        // One at a time: each agent calibrates its speed at first start, and
        // concurrent calibrations on shared cores would skew the figures.
        for i in 0..self.state.nodes.len() {
            let id = self.state.nodes.get(i).map(|n| n.id).unwrap_or(0);
            let mut own: Vec<String> = args.to_vec();
            own.extend(
                node_args
                    .iter()
                    .filter(|(n, _)| *n == id)
                    .map(|(_, a)| a.clone()),
            );
            let pid = self.start_agent(i, agent, &own)?;
            if let Some(n) = self.state.nodes.get_mut(i) {
                n.pid = Some(pid);
                n.agent = Some(agent.to_path_buf());
                n.args = own;
            }
            self.save()?;
            if let Some(n) = self.state.nodes.get(i) {
                self.wait_ready(n)?;
            }
        }
        let mut kh = String::new();
        for n in &self.state.nodes {
            let key = net::public_of(
                &self
                    .node_dir(n.id)
                    .join("config")
                    .join(hpc::paths::HOST_KEY_FILE),
            )?;
            let host = n.addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(&n.addr);
            kh.push_str(&format!("[{host}]:{} {key}\n", hpc::paths::AGENT_PORT));
        }
        std::fs::write(self.known_hosts(), kh)?;
        Ok(())
    }

    fn prepare_node_dir(
        &self,
        id: u32,
        authorized: &str,
        map: Option<&String>,
    ) -> anyhow::Result<()> {
        let dir = self.node_dir(id);
        for sub in ["config", "state"] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir.join(sub))?;
        }
        for d in [PathBuf::from(RUN_ROOT), self.run_root(), self.run_dir(id)] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&d)?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
        }
        let config = dir.join("config");
        std::fs::copy(
            self.dir.join("cluster_key"),
            config.join(hpc::paths::CLUSTER_KEY_FILE),
        )?;
        std::fs::set_permissions(
            config.join(hpc::paths::CLUSTER_KEY_FILE),
            std::fs::Permissions::from_mode(0o600),
        )?;
        std::fs::write(config.join(hpc::paths::AUTHORIZED_KEYS_FILE), authorized)?;
        if let Some(map) = map {
            std::fs::write(config.join(hpc::paths::MAP_FILE), map)?;
        }
        Ok(())
    }

    fn start_agent(
        &self,
        index: usize,
        agent: &std::path::Path,
        args: &[String],
    ) -> anyhow::Result<u32> {
        let node = self.state.nodes.get(index).context("no such node")?;
        let dir = self.node_dir(node.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))?;
        let mut child = net::system("nsenter")?;
        child
            .arg(format!("--net=/run/netns/{}", node.netns))
            .arg(agent)
            .arg("--config-dir")
            .arg(dir.join("config"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--run-dir")
            .arg(self.run_dir(node.id))
            .args(
                (!node.unmapped)
                    .then(|| ["--node-id".to_string(), node.id.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .arg("--listen")
            .arg(&node.addr)
            .args(["--scope", "netns"])
            .args(args)
            // The agents' log filter (`OPENMOSIX_AGENT_LOG=debug`, say); the
            // lab tool's own `OPENMOSIX_LOG` stays its own.
            .envs(std::env::var_os("OPENMOSIX_AGENT_LOG").map(|v| ("OPENMOSIX_LOG", v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        if !node.cpus.is_empty() {
            let cpus = node.cpus.clone();
            // SAFETY: sched_setaffinity is async-signal-safe and only changes
            // the child; the set is built on its stack before the call.
            unsafe {
                child.pre_exec(move || {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    for c in &cpus {
                        libc::CPU_SET(*c, &mut set);
                    }
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        if let Some(cg) = &node.memcg {
            let procs = std::ffi::CString::new(cg.procs_file().as_os_str().as_encoded_bytes())
                .context("a cgroup path with a NUL byte")?;
            // SAFETY: open, write and close are async-signal-safe; the path
            // was built before the fork. Writing "0" moves the child itself.
            unsafe {
                child.pre_exec(move || {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                    let err = std::io::Error::last_os_error();
                    libc::close(fd);
                    if n != 1 {
                        return Err(err);
                    }
                    Ok(())
                });
            }
        }
        let child = child
            .spawn()
            .with_context(|| format!("cannot start the agent of node {}", node.id))?;
        // nsenter execs the agent in place (no fork for --net), so this is the agent's PID.
        Ok(child.id())
    }

    fn wait_ready(&self, node: &LabNode) -> anyhow::Result<()> {
        let log = self.node_dir(node.id).join("agent.log");
        let deadline = Instant::now() + crate::READY_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("openmosixd ready") {
                return Ok(());
            }
            let running = node.pid.is_some_and(alive) && !is_zombie(node.pid);
            if !running || Instant::now() > deadline {
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                bail!(
                    "the agent of node {} {}; last log lines:\n{}",
                    node.id,
                    if running {
                        "did not become ready in time"
                    } else {
                        "exited"
                    },
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sets node `id`'s interface up or down (a cable pulled or put back).
    pub fn set_link(&self, id: u32, up: bool) -> anyhow::Result<()> {
        let node = self
            .state
            .nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("the lab has no node {id}"))?;
        let state = if up { "up" } else { "down" };
        net::ip_in(&node.netns, &["link", "set", "eth0", state])
    }

    /// Stops node `id`'s agent with `signal` (its jobs and deputies stay, as
    /// under systemd with `KillMode=process`), then starts it again as it was
    /// started and waits until it is ready.
    pub fn restart(&mut self, id: u32, signal: i32) -> anyhow::Result<u32> {
        let i = self
            .state
            .nodes
            .iter()
            .position(|n| n.id == id)
            .with_context(|| format!("the lab has no node {id}"))?;
        let node = self.state.nodes.get(i).cloned().context("no such node")?;
        let agent = node
            .agent
            .clone()
            .context("the lab was made by an older openmosix-lab; bring it up again")?;
        if let Some(pid) = node.pid
            && alive(pid)
        {
            // SAFETY: kill has no memory-safety preconditions; this PID is the agent we started.
            unsafe { libc::kill(pid as i32, signal) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && !is_zombie(Some(pid)) {
                if Instant::now() > deadline {
                    bail!("the agent of node {id} (PID {pid}) did not stop");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let log = self.node_dir(id).join("agent.log");
        let mut old = std::fs::read_to_string(&log).unwrap_or_default();
        // wait_ready looks for the new readiness line only.
        old = old.replace("openmosixd ready", "openmosixd was ready");
        std::fs::write(&log, old)?;
        let pid = self.start_agent(i, &agent, &node.args)?;
        if let Some(n) = self.state.nodes.get_mut(i) {
            n.pid = Some(pid);
        }
        self.save()?;
        if let Some(n) = self.state.nodes.get(i) {
            self.wait_ready(n)?;
        }
        Ok(pid)
    }

    /// Stops the agents (SIGTERM, then SIGKILL after 5 s) and removes every
    /// created link and namespace, then the lab's files. Keeps going past errors
    /// and reports them all at the end.
    pub fn teardown(&mut self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        for n in &self.state.nodes {
            if let Some(pid) = n.pid
                && alive(pid)
            {
                // SAFETY: kill has no memory-safety preconditions; this PID is the agent we started.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for n in &self.state.nodes {
            let Some(pid) = n.pid else { continue };
            while alive(pid) && !is_zombie(Some(pid)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(pid) && !is_zombie(Some(pid)) {
                // SAFETY: as above.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        // Jobs the lab's agents started or received live in the nodes'
        // namespaces; they belong to the lab and end with it.
        for n in &self.state.nodes {
            if net::netns_exists(&n.netns) {
                for pid in net::pids_in_netns(&n.netns) {
                    // SAFETY: kill has no memory-safety preconditions; the PID is a
                    // process of this lab's own network namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        for c in self.state.created.iter().rev() {
            let r = match c {
                Created::MemCgroup(cg) => remove_cgroup(cg),
                Created::Veth(v) if net::link_exists(v) => net::ip(&["link", "del", v]),
                Created::Netns(ns) if net::netns_exists(ns) => net::ip(&["netns", "del", ns]),
                Created::Bridge(b) if net::link_exists(b) => net::ip(&["link", "del", b]),
                _ => Ok(()),
            };
            if let Err(e) = r {
                problems.push(format!("{e:#}"));
            }
        }
        if problems.is_empty()
            && self.run_root().exists()
            && let Err(e) = std::fs::remove_dir_all(self.run_root())
        {
            problems.push(format!("cannot remove {}: {e}", self.run_root().display()));
        }
        if problems.is_empty() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("cannot remove {}", self.dir.display()))?;
            return Ok(());
        }
        bail!("{}", problems.join("; "))
    }
}

/// Removes a node's memory cgroup once the processes killed in it are gone.
fn remove_cgroup(cg: &hpc::memcg::MemoryCgroup) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match cg.remove() {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => bail!("cannot remove {}: {e}", cg.dir().display()),
        }
    }
}

fn is_zombie(pid: Option<u32>) -> bool {
    let Some(pid) = pid else { return false };
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('Z')))
        .unwrap_or(false)
}
