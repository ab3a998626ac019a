//! Test harness: starts real `openmosixd` agents on loopback, each in its own
//! uniquely named directory with throw-away keys, and stops them by PID (and
//! removes their directories) when dropped, even when a test fails.
//!
//! Binaries are taken from the cargo target directory next to the test
//! executable (`target/debug/openmosixd`), or from `$OPENMOSIX_BIN_DIR`.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hpc::client::{Client, ClientConfig, Identity};
use russh::keys::{Algorithm, PrivateKey, PublicKey};

/// Where a cargo-built binary lives.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("OPENMOSIX_BIN_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            // target/debug/deps/test-xxxx → target/debug
            Some(exe.parent()?.parent()?.to_path_buf())
        });
    let path = dir.unwrap_or_default().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A fresh 0700 directory under `base`, unique across parallel tests and processes.
pub fn unique_dir(base: &Path, label: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!("{label}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod test dir");
    dir
}

/// Writes a new Ed25519 key pair (`path` and `path.pub`), mode 0600.
pub fn new_key(path: &Path) -> PrivateKey {
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("keygen");
    write_private(path, &key);
    std::fs::write(
        path.with_extension("pub"),
        key.public_key().to_openssh().expect("pub"),
    )
    .expect("write pub");
    key
}

fn write_private(path: &Path, key: &PrivateKey) {
    use std::io::Write;
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .expect("encode");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("key file");
    f.write_all(text.as_bytes()).expect("write key");
}

/// A free TCP+UDP port on 127.0.0.1 (free now; the agent binds it right after).
pub fn free_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = t.local_addr().expect("addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `n` free loopback addresses.
pub fn loopback_addrs(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
        .collect()
}

/// A setpe map numbering `addrs` from node 1.
pub fn map_for(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{} {a} 1\n", i + 1))
        .collect()
}

/// The keys a test cluster uses.
pub struct Keys {
    /// Directory holding them.
    pub dir: PathBuf,
    /// Admin client key.
    pub admin: PathBuf,
    /// Monitor client key.
    pub monitor: PathBuf,
    /// A key no agent knows.
    pub stranger: PathBuf,
    /// The cluster key (all agents share it).
    pub cluster: PrivateKey,
}

impl Keys {
    /// Generates keys in a new directory under `base`.
    pub fn generate(base: &Path) -> Self {
        let dir = unique_dir(base, "keys");
        let admin = dir.join("admin");
        let monitor = dir.join("monitor");
        let stranger = dir.join("stranger");
        new_key(&admin);
        new_key(&monitor);
        new_key(&stranger);
        let cluster = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("keygen");
        Self {
            dir,
            admin,
            monitor,
            stranger,
            cluster,
        }
    }

    /// The cluster key as a private key file (for tests that act as an agent).
    pub fn cluster_key_file(&self) -> PathBuf {
        let path = self.dir.join("cluster");
        if !path.exists() {
            write_private(&path, &self.cluster);
        }
        path
    }

    /// `authorized_keys` text granting admin and monitor.
    pub fn authorized_keys(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p.with_extension("pub")).expect("pub key");
        format!(
            "admin {}\nmonitor {}\n",
            read(&self.admin).trim(),
            read(&self.monitor).trim()
        )
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One running agent.
pub struct TestAgent {
    /// Node id.
    pub id: u32,
    /// RPC address.
    pub addr: SocketAddr,
    /// Its directory (config/, state/, run/).
    pub dir: PathBuf,
    /// Its host public key.
    pub host_key: PublicKey,
    child: Option<Child>,
    map: PathBuf,
    /// Extra command-line flags for the next (re)start.
    pub extra_args: Vec<String>,
}

impl TestAgent {
    /// Prepares the directories and starts the agent as node `id` of `map_text`.
    pub fn start(base: &Path, keys: &Keys, id: u32, addr: SocketAddr, map_text: &str) -> Self {
        let dir = unique_dir(base, &format!("agent{id}"));
        let config = dir.join("config");
        for d in ["config", "state", "run"] {
            std::fs::create_dir_all(dir.join(d)).expect("mkdir");
            std::fs::set_permissions(dir.join(d), std::fs::Permissions::from_mode(0o700))
                .expect("chmod");
        }
        write_private(&config.join(hpc::paths::CLUSTER_KEY_FILE), &keys.cluster);
        std::fs::write(
            config.join(hpc::paths::AUTHORIZED_KEYS_FILE),
            keys.authorized_keys(),
        )
        .expect("authorized_keys");
        let map = config.join(hpc::paths::MAP_FILE);
        std::fs::write(&map, map_text).expect("map");
        let host_key = new_key(&config.join(hpc::paths::HOST_KEY_FILE))
            .public_key()
            .clone();
        let _ = std::fs::remove_file(config.join(hpc::paths::HOST_KEY_FILE).with_extension("pub"));
        let mut a = Self {
            id,
            addr,
            dir,
            host_key,
            child: None,
            map,
            extra_args: Vec::new(),
        };
        a.restart();
        a
    }

    /// Starts a standalone agent (a cluster of one) on a free port.
    pub fn standalone(base: &Path, keys: &Keys) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Self::start(base, keys, 1, addr, &format!("1 {addr} 1\n"))
    }

    /// (Re)starts the process and waits until it reports ready.
    pub fn restart(&mut self) {
        self.kill();
        let mut child = Command::new(bin("openmosixd"))
            .arg("--config-dir")
            .arg(self.dir.join("config"))
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--run-dir")
            .arg(self.dir.join("run"))
            .arg("--map")
            .arg(&self.map)
            .arg("--node-id")
            .arg(self.id.to_string())
            .arg("--listen")
            .arg(self.addr.to_string())
            // Tests move processes by hand, and loopback clusters are what
            // their maps say; a test about balancing or autodiscovery turns
            // it on in `extra_args` (the last one given wins).
            .args(["--balance", "off", "--discovery", "off"])
            .args(&self.extra_args)
            .env("OPENMOSIX_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn openmosixd");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if l.starts_with("openmosixd ready") => {}
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("agent {} did not start: {other:?}", self.id);
            }
        }
        self.child = Some(child);
    }

    /// The agent's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the agent with SIGTERM (by PID) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill has no memory-safety preconditions; the PID is our child's.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the agent with SIGKILL (by PID).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Adds a line to the agent's `authorized_keys` (the agent re-reads it).
    pub fn authorize(&self, line: &str) {
        use std::io::Write;
        let path = self
            .dir
            .join("config")
            .join(hpc::paths::AUTHORIZED_KEYS_FILE);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("authorized_keys");
        writeln!(f, "{line}").expect("append to authorized_keys");
    }

    /// The agent's local socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("run").join(hpc::paths::AGENT_SOCKET_FILE)
    }

    /// Writes a known_hosts file that lists this agent's host key.
    pub fn write_known_hosts(&self, path: &Path) {
        let key = self.host_key.to_openssh().expect("encode host key");
        std::fs::write(path, format!("[127.0.0.1]:{} {key}\n", self.addr.port()))
            .expect("known_hosts");
    }

    /// A client config for `key`, with this agent's host key pinned.
    pub fn client_config(&self, key: &Path) -> ClientConfig {
        let mut c = ClientConfig::from_env();
        c.identity = Identity::KeyFile(key.to_path_buf());
        c.pinned_host_key = Some(self.host_key.clone());
        c
    }

    /// Connects with `key`.
    pub async fn client(&self, key: &Path) -> Client {
        Client::connect(&self.addr.to_string(), &self.client_config(key))
            .await
            .expect("connect to agent")
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Several agents sharing one map and one cluster key.
pub struct TestCluster {
    /// The agents, node 1 first.
    pub agents: Vec<TestAgent>,
    /// The keys.
    pub keys: Keys,
}

impl TestCluster {
    /// Starts `n` agents on loopback.
    pub fn start(base: &Path, n: u32) -> Self {
        let keys = Keys::generate(base);
        let addrs = loopback_addrs(n as usize);
        let map = map_for(&addrs);
        let agents = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| TestAgent::start(base, &keys, i as u32 + 1, *a, &map))
            .collect();
        Self { agents, keys }
    }

    /// The map text the cluster uses.
    pub fn map_text(&self) -> String {
        self.agents
            .iter()
            .map(|a| format!("{} {} 1\n", a.id, a.addr))
            .collect()
    }
}

/// A local user made for one test (`useradd`), removed when dropped.
pub struct TestUser {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
}

impl TestUser {
    /// Creates a system user without a home directory, named after `tag`
    /// and this test process (unique among parallel tests).
    pub fn create(tag: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("om{tag}{}x{n}", std::process::id());
        let useradd = hpc::paths::system_program("useradd").expect("useradd is installed");
        // useradd fails while another one holds /etc/passwd's lock: try again.
        let mut last = String::new();
        for _ in 0..50 {
            let out = Command::new(&useradd)
                .args(["--system", "--no-create-home", "--user-group"])
                .args(["--shell", "/usr/sbin/nologin", &name])
                .output()
                .expect("run useradd");
            if out.status.success() {
                let id = |flag: &str| -> u32 {
                    let out = Command::new("id").args([flag, &name]).output().expect("id");
                    String::from_utf8_lossy(&out.stdout)
                        .trim()
                        .parse()
                        .expect("a numeric id")
                };
                return Self {
                    uid: id("-u"),
                    gid: id("-g"),
                    name,
                };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("useradd {name} failed: {last}");
    }

    /// A command run as this user (its uid and group, no other groups), with
    /// a minimal environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(program);
        c.uid(self.uid)
            .gid(self.gid)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", "/")
            .env("OPENMOSIX_LOG", "warn");
        c
    }

    /// Gives `path` to this user.
    pub fn chown(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).expect("chown");
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        if let Some(userdel) = hpc::paths::system_program("userdel") {
            for _ in 0..50 {
                let ok = Command::new(&userdel)
                    .args(["--force", &self.name])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// A child process started for a test (e.g. `sleep`), killed by PID on drop.
pub struct Victim(pub Child);

impl Victim {
    /// Starts `sleep SECS`.
    pub fn sleep(secs: u32) -> Self {
        Self(
            Command::new("sleep")
                .arg(secs.to_string())
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn sleep"),
        )
    }
    /// Its PID.
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
    /// `/proc/PID/stat` fields after the command name (state is index 0).
    pub fn stat(&self) -> Vec<String> {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        s.rsplit_once(") ")
            .map(|(_, r)| r.split(' ').map(str::to_string).collect())
            .unwrap_or_default()
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a `/proc/hpc` path (panics with the error: test code).
pub async fn hpc_read(c: &Client, path: &str) -> serde_json::Value {
    let r: hpc::protocol::PathValue = c
        .call(
            hpc::protocol::methods::HPC_READ,
            hpc::protocol::PathParams { path: path.into() },
        )
        .await
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
    r.value
}

/// Sends `signal` to `pid` through `c`, whatever the answer (clean-up).
pub async fn signal(c: &Client, pid: i32, signal: &str) {
    let p = hpc::protocol::SignalParams {
        pid,
        signal: signal.into(),
        start_time: None,
    };
    let _ = c
        .call_value(
            hpc::protocol::methods::PROC_SIGNAL,
            serde_json::to_value(p).unwrap_or_default(),
        )
        .await;
}

/// Starts `sleep SECS` as a job (root, in `/`) through `c`.
pub async fn spawn_sleep(c: &Client, secs: u32) -> hpc::protocol::JobInfo {
    let p = hpc::protocol::SpawnParams {
        argv: vec!["sleep".into(), secs.to_string()],
        cwd: "/".into(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        uid: 0,
        gid: 0,
        ..hpc::protocol::SpawnParams::default()
    };
    c.call(hpc::protocol::methods::PROC_SPAWN, p)
        .await
        .expect("spawn")
}

/// Migrates `pid` on the node `c` talks to (to a node id, `home` or
/// `balance`), waiting up to 5 minutes; the report, or the error's text.
pub async fn migrate(
    c: &Client,
    pid: i32,
    to: &str,
) -> Result<hpc::protocol::MigrationReport, String> {
    let v = c
        .call_value_within(
            hpc::protocol::methods::PROC_MIGRATE,
            serde_json::json!({ "pid": pid, "to": to }),
            Duration::from_secs(300),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(serde_json::from_value(v).expect("a migration report"))
}

/// `job.status` of `pid` on the node `c` talks to (panics without one).
pub async fn job_status(c: &Client, pid: i32) -> hpc::protocol::JobInfo {
    c.call(
        hpc::protocol::methods::JOB_STATUS,
        serde_json::json!({ "pid": pid }),
    )
    .await
    .expect("job status")
}

/// The children of a process, from `/proc/PID/task/*/children`.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    out
}

/// Lets a child started with `cmd` inherit no descriptor but 0, 1 and 2, as
/// from a login shell (a test harness's, like cargo's jobserver pipe, would
/// be a pipe shared with processes that stay).
pub fn without_inherited_fds(cmd: &mut Command) {
    // SAFETY: close_range is async-signal-safe and touches only the child.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
}

/// Polls `f` every 100 ms until it returns `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An `openmosix-lab` cluster for one test: uniquely named (`tag` + PID) on its
/// own /24 (`10.<octet>.<PID % 200>`), brought down (agents and the jobs in its
/// namespaces stopped, namespaces and files removed) when dropped, even if the
/// test failed.
pub struct TestLab {
    /// Lab name.
    pub name: String,
    /// Its directory (keys, known_hosts, per-node config/state/run).
    pub dir: PathBuf,
    /// Its subnet, `a.b.c`.
    pub subnet: String,
}

/// Runs `openmosix-lab` with quiet logs.
pub fn run_lab(args: &[&str]) -> std::process::Output {
    Command::new(bin("openmosix-lab"))
        .args(args)
        .env("OPENMOSIX_LOG", "off")
        .output()
        .expect("run openmosix-lab")
}

impl TestLab {
    /// Brings up `nodes` nodes. `tag` (1-4 letters) and `octet` must be unique
    /// among the tests that may run at the same time.
    pub fn up(tag: &str, octet: u8, nodes: u32) -> Self {
        Self::up_with(tag, octet, nodes, &[])
    }

    /// [`TestLab::up`] with extra `openmosix-lab up` arguments
    /// (`--agent-arg=…`, `--node-arg=ID:…`). The agents do not balance
    /// (tests move processes by hand) unless `extra` has
    /// `--agent-arg=--balance=on`.
    pub fn up_with(tag: &str, octet: u8, nodes: u32, extra: &[&str]) -> Self {
        let n = std::process::id() % 200;
        let name = format!("{tag}{n}");
        let subnet = format!("10.{octet}.{n}");
        let agent = bin("openmosixd");
        let out = run_lab(
            &[
                "up",
                "--name",
                &name,
                "--nodes",
                &nodes.to_string(),
                "--subnet",
                &subnet,
                "--agent",
                agent.to_str().expect("UTF-8 path"),
                "--agent-arg=--balance=off",
            ]
            .iter()
            .chain(extra)
            .copied()
            .collect::<Vec<_>>(),
        );
        assert!(
            out.status.success(),
            "lab up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir: Path::new("/var/lib/openmosix/lab").join(&name),
            name,
            subnet,
        }
    }

    /// Waits (up to `limit`) until each of the first `n` nodes sees all `n`
    /// up, with their host keys and migration available; panics otherwise.
    pub async fn settled(&self, n: u32, limit: Duration) {
        for id in 1..=n {
            let c = self.client(id).await;
            let up = wait_for(limit, || async {
                let ns: Vec<hpc::model::NodeStatus> = c
                    .call(
                        hpc::protocol::methods::CLUSTER_NODES,
                        hpc::protocol::NoParams {},
                    )
                    .await
                    .ok()?;
                (ns.len() == n as usize
                    && ns.iter().all(|s| {
                        s.status == hpc::model::Liveness::Up
                            && !s.host_key.is_empty()
                            && s.migration.starts_with("migration available")
                    }))
                .then_some(())
            })
            .await;
            assert!(
                up.is_some(),
                "node {id} does not see all nodes up with migration available"
            );
        }
    }

    /// Stops node `id`'s agent (`signal`: `term` for a clean shutdown,
    /// `kill` for a crash) and starts it again; returns once it is ready.
    pub fn restart_agent(&self, id: u32, signal: &str) {
        let out = run_lab(&[
            "restart",
            "--name",
            &self.name,
            "--node",
            &id.to_string(),
            "--signal",
            signal,
        ]);
        assert!(
            out.status.success(),
            "lab restart: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Cuts node `id` off the lab's network (`up` false) or joins it again.
    pub fn set_link(&self, id: u32, up: bool) {
        let state = if up { "up" } else { "down" };
        let out = run_lab(&[
            "link",
            "--name",
            &self.name,
            "--node",
            &id.to_string(),
            state,
        ]);
        assert!(
            out.status.success(),
            "lab link: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The RPC address of node `id`.
    pub fn addr(&self, id: u32) -> String {
        format!("{}.{id}:4660", self.subnet)
    }

    /// The lab's admin key.
    pub fn admin_key(&self) -> PathBuf {
        self.dir.join("admin_key")
    }

    /// The lab's monitor key (read-only role).
    pub fn monitor_key(&self) -> PathBuf {
        self.dir.join("monitor_key")
    }

    /// The lab's known_hosts (every node's host key).
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// Client settings for the lab (admin key, the lab's known_hosts).
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::from_env();
        c.identity = Identity::KeyFile(self.admin_key());
        c.known_hosts = self.known_hosts();
        c
    }

    /// An admin client of node `id`.
    pub async fn client(&self, id: u32) -> Client {
        Client::connect(&self.addr(id), &self.client_config())
            .await
            .expect("connect to lab node")
    }

    /// Node `id`'s entry in the lab's record.
    fn recorded(&self, id: u32) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.join("lab.json")).expect("lab.json");
        let v: serde_json::Value = serde_json::from_str(&text).expect("lab.json is JSON");
        v["nodes"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["id"] == id))
            .cloned()
            .expect("the node in lab.json")
    }

    /// The PID of node `id`'s agent, from the lab's record.
    pub fn agent_pid(&self, id: u32) -> i32 {
        self.recorded(id)["pid"]
            .as_i64()
            .expect("agent PID in lab.json") as i32
    }

    /// Node `id`'s memory cgroup (`up --mem-per-node`), from the lab's record.
    pub fn memcg(&self, id: u32) -> hpc::memcg::MemoryCgroup {
        serde_json::from_value(self.recorded(id)["memcg"].clone())
            .expect("a memory cgroup in lab.json")
    }

    /// Node `id`'s runtime directory (PID file, local socket).
    pub fn run_dir(&self, id: u32) -> PathBuf {
        Path::new("/run/openmosix-lab")
            .join(&self.name)
            .join(format!("node{id}"))
    }

    /// Node `id`'s local socket.
    pub fn socket(&self, id: u32) -> PathBuf {
        self.run_dir(id).join(hpc::paths::AGENT_SOCKET_FILE)
    }

    /// Node `id`'s migration image directory.
    pub fn images_dir(&self, id: u32) -> PathBuf {
        self.dir
            .join(format!("node{id}"))
            .join("state")
            .join(hpc::paths::IMAGES_DIR)
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the agents said, for whoever reads a failed run's output.
            for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
                let log = entry.path().join("agent.log");
                let Ok(text) = std::fs::read_to_string(&log) else {
                    continue;
                };
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines.get(lines.len().saturating_sub(60)..).unwrap_or(&[]);
                eprintln!("--- {} (last {} lines)", log.display(), tail.len());
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
        if self.dir.exists() {
            let _ = run_lab(&["down", "--name", &self.name]);
        }
    }
}

/// A running `openmosixcollector --foreground` for one test, with its own
/// directory (history, PID file, control socket, log), stopped by PID when
/// dropped. Started with a lab's monitor key and known_hosts.
pub struct TestCollector {
    /// Its directory.
    pub dir: PathBuf,
    /// Flags of every (re)start.
    pub args: Vec<String>,
    child: Option<Child>,
}

impl TestCollector {
    /// Starts a collector seeded with node 1 of `lab`, sampling every `interval`.
    pub fn start(base: &Path, lab: &TestLab, interval: &str, extra: &[&str]) -> Self {
        let dir = unique_dir(base, "collector");
        let mut args: Vec<String> = vec![
            "--seed".into(),
            lab.addr(1),
            "--key".into(),
            lab.monitor_key().display().to_string(),
            "--known-hosts".into(),
            lab.known_hosts().display().to_string(),
            "--interval".into(),
            interval.into(),
            "--db".into(),
            dir.join("current.db").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        if !extra.contains(&"--query-socket") {
            // Tests run side by side: none takes the default query socket.
            args.extend(["--query-socket".to_string(), "none".to_string()]);
        }
        let mut c = Self {
            dir,
            args,
            child: None,
        };
        c.restart();
        c
    }

    /// The current history file.
    pub fn db(&self) -> PathBuf {
        self.dir.join("current.db")
    }

    /// Its log (stderr of every run, appended).
    pub fn log(&self) -> PathBuf {
        self.dir.join("collector.log")
    }

    fn own_flags(&self) -> Vec<String> {
        vec![
            "--pid-file".into(),
            self.dir.join("collector.pid").display().to_string(),
            "--control".into(),
            self.dir.join("collector.sock").display().to_string(),
        ]
    }

    /// Runs `openmosixcollector ARGS` against this collector (its PID file and socket).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin("openmosixcollector"))
            .args(args)
            .args(self.own_flags())
            .output()
            .expect("run openmosixcollector")
    }

    /// (Re)starts it and waits until it answers on its control socket.
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("collector log");
        let child = Command::new(bin("openmosixcollector"))
            .arg("--foreground")
            .args(&self.args)
            .args(self.own_flags())
            .env("OPENMOSIX_LOG", "info,collector=debug,russh=warn,sqlx=warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn openmosixcollector");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.cli(&["--status"]).status.success() {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "collector exited at start ({st}); log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "collector did not answer within 30 s; log:\n{}",
            self.log_text()
        );
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// The times of every tick the collector logged as committed, over all runs.
    pub fn committed_ticks(&self) -> Vec<i64> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("committed tick"))
            .filter_map(|l| {
                let rest = &l[l.find(" t=")? + 3..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect()
    }

    /// Its PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops it with SIGKILL (by PID).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for it to exit on its own (after `-k`), up to `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for TestCollector {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// CPU time this thread has used (benchmarks time frames with it, so that
/// other threads' work does not count).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the given timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
