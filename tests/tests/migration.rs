//! Real process migration with real CRIU between the nodes of a lab cluster
//! (network namespaces on one machine, run as root): hops with memory and
//! output checked, a 30-hop stress run, failure injection (each ending with the
//! process alive and intact where it was), signals/renice/kill and exit status
//! through the home node, unmovable processes, expel and bring, and mosrun.
//!
//! Each test has its own lab (name and subnet unique per test and process).
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use hpc::protocol::MemoryPath;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hpc::client::Client;
use hpc::model::{NodeStatus, ProcessInfo};
use hpc::protocol::{JobInfo, ProcWriteParams, SpawnParams, WriteParams, methods};
use serde_json::json;
use testkit::{TestLab, bin, job_status as status, migrate, unique_dir, wait_for};

async fn kill(c: &Client, pid: i32) {
    testkit::signal(c, pid, "KILL").await;
}

/// Appends 1, 2, 3, ... to a file, one line every 20 ms.
const COUNTER: &str = r#"
import sys, time
f = open(sys.argv[1], 'a', buffering=1)
i = 0
while True:
    i += 1
    f.write(f"{i}\n")
    time.sleep(0.02)
"#;

/// Fills N MiB with a known pattern, writes its SHA-256 at start and on
/// SIGUSR1 ("sum HEX"), and a counter line every 50 ms. With a third argument
/// `dirty` it rewrites every page with its own bytes between lines, so every
/// checkpoint must carry all of its memory (pre-copy saves nothing).
const MEMORY: &str = r#"
import sys, time, signal, hashlib
n = int(sys.argv[2]) << 20
dirty = len(sys.argv) > 3 and sys.argv[3] == "dirty"
buf = bytearray((bytes(range(251)) * (n // 251 + 1))[:n])
f = open(sys.argv[1], 'a', buffering=1)
def report(*_):
    f.write("sum " + hashlib.sha256(buf).hexdigest() + "\n")
signal.signal(signal.SIGUSR1, report)
report()
i = 0
while True:
    i += 1
    f.write(f"{i}\n")
    if dirty:
        for p in range(0, n, 4096):
            buf[p] = buf[p]
    time.sleep(0.05)
"#;

/// A scratch directory for one test's scripts and output, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Self {
        Self(unique_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), label))
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn script(&self, name: &str, text: &str) -> String {
        let p = self.file(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn spawn(c: &Client, dir: &Scratch, argv: &[&str], out: &str, lock: bool) -> JobInfo {
    let p = SpawnParams {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: dir.0.display().to_string(),
        env: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())],
        uid: 0,
        gid: 0,
        stdout: Some(dir.file(out).display().to_string()),
        stderr: None,
        lock,
        decay: None,
    };
    c.call(methods::PROC_SPAWN, p).await.expect("spawn")
}

/// The counter lines of an output file (checksum lines left out).
fn counts(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The checksum lines of an output file.
fn sums(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("sum ").map(str::to_string))
        .collect()
}

/// A lab of `nodes` nodes with every node seeing the others, a scratch
/// directory, and an admin client of node 1 (the home in these tests).
async fn setup(tag: &str, octet: u8, nodes: u32, label: &str) -> (TestLab, Scratch, Client) {
    setup_with(tag, octet, nodes, label, &[]).await
}

/// [`setup`] with extra `openmosix-lab up` arguments.
async fn setup_with(
    tag: &str,
    octet: u8,
    nodes: u32,
    label: &str,
    extra: &[&str],
) -> (TestLab, Scratch, Client) {
    let lab = TestLab::up_with(tag, octet, nodes, extra);
    let dir = Scratch::new(label);
    let home = lab.client(1).await;
    lab.settled(nodes, Duration::from_secs(20)).await;
    (lab, dir, home)
}

/// Sends USR1 through the home node and waits for the checksum line it makes
/// the memory process write.
async fn checksum_now(home: &Client, home_pid: i32, out: &Path) -> String {
    let n = sums(out).len();
    home.call_value(
        methods::PROC_SIGNAL,
        json!({ "pid": home_pid, "signal": "USR1" }),
    )
    .await
    .expect("USR1 through the home node");
    wait_for(Duration::from_secs(30), || async {
        sums(out).get(n).cloned()
    })
    .await
    .expect("a checksum line after USR1")
}

/// Asserts the counter runs 1, 2, 3, ... with no gap and no repeat.
fn assert_continuous(path: &Path) -> usize {
    let c = counts(path);
    for (i, w) in c.windows(2).enumerate() {
        assert_eq!(
            w[1],
            w[0] + 1,
            "gap or repeat after line {i} of {}",
            path.display()
        );
    }
    assert_eq!(c.first().copied(), Some(1), "counter does not start at 1");
    c.len()
}

/// Waits until the counter grew by `more` lines past `from` (the process runs).
async fn runs_on(path: &Path, from: usize, more: usize) {
    let grew = wait_for(Duration::from_secs(20), || async {
        (counts(path).len() >= from + more).then_some(())
    })
    .await;
    assert!(
        grew.is_some(),
        "{} stopped growing at {from}",
        path.display()
    );
}

/// The process table of a node.
async fn procs(c: &Client) -> Vec<ProcessInfo> {
    c.call(methods::PROC_LIST, json!({}))
        .await
        .expect("proc.list")
}

/// The scheduler state letter of a local PID.
fn state_of(pid: i32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
        .unwrap_or('?')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_and_256_mib_processes_hop_a_b_c_a_intact() {
    let (lab, dir, home) = setup("mh", 92, 3, "hops").await;
    let counter = dir.script("counter.py", COUNTER);
    let memory = dir.script("memory.py", MEMORY);
    let cjob = spawn(&home, &dir, &["python3", &counter, "c.out"], "c.log", false).await;
    let mjob = spawn(
        &home,
        &dir,
        &["python3", &memory, "m.out", "256"],
        "m.log",
        false,
    )
    .await;
    let (c_out, m_out) = (dir.file("c.out"), dir.file("m.out"));
    let baseline = wait_for(Duration::from_secs(30), || async {
        sums(&m_out).first().cloned()
    })
    .await
    .expect("the memory process reports its checksum");
    runs_on(&c_out, 0, 5).await;
    runs_on(&m_out, 0, 3).await;

    for to in [2u32, 3, 1] {
        for (job, out) in [(&cjob, &c_out), (&mjob, &m_out)] {
            let before = counts(out).len();
            let r = migrate(&home, job.home_pid, &to.to_string())
                .await
                .unwrap_or_else(|e| panic!("hop to {to}: {e}"));
            assert_eq!((r.to, r.home, r.home_pid), (to, 1, job.home_pid));
            assert!(r.bytes > 0 && r.freeze_ms >= r.dump_ms, "{r:?}");
            // The home knows where it is; the new node runs it.
            let st = status(&home, job.home_pid).await;
            assert_eq!(st.where_, to, "{st:?}");
            let there = lab.client(to).await;
            let rows = procs(&there).await;
            let row = rows
                .iter()
                .find(|p| p.pid == r.pid)
                .unwrap_or_else(|| panic!("node {to} does not list pid {}", r.pid));
            assert_eq!((row.home, row.home_pid, row.where_), (1, job.home_pid, to));
            runs_on(out, before, 4).await;
            assert_continuous(out);
        }
        // The 256 MiB are unchanged: ask the process (through its home) for its checksum.
        let now = checksum_now(&home, mjob.home_pid, &m_out).await;
        assert_eq!(now, baseline, "memory changed after the hop to node {to}");
    }
    let st = status(&home, mjob.home_pid).await;
    assert_eq!((st.where_, st.nmigs), (1, 3));
    let report = st.last_migration.expect("the last migration is kept");
    assert!(
        report.bytes + report.pulled_bytes >= 256 << 20,
        "{report:?}"
    );
    // The home lists it again under its identity, not as a migrated process.
    let rows = procs(&home).await;
    assert!(
        rows.iter()
            .any(|p| p.home_pid == mjob.home_pid && p.where_ == 1)
    );
    kill(&home, cjob.home_pid).await;
    kill(&home, mjob.home_pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_migrates_30_times_around_the_cluster() {
    let (_lab, dir, home) = setup("ms", 93, 3, "stress").await;
    let counter = dir.script("counter.py", COUNTER);
    let job = spawn(&home, &dir, &["python3", &counter, "c.out"], "c.log", false).await;
    let out = dir.file("c.out");
    runs_on(&out, 0, 3).await;
    let mut freeze = Vec::new();
    for hop in 0..30u32 {
        let to = [2u32, 3, 1][hop as usize % 3];
        let before = counts(&out).len();
        let r = migrate(&home, job.home_pid, &to.to_string())
            .await
            .unwrap_or_else(|e| panic!("hop {hop} to {to}: {e}"));
        freeze.push(r.freeze_ms);
        runs_on(&out, before, 2).await;
    }
    let n = assert_continuous(&out);
    let st = status(&home, job.home_pid).await;
    assert_eq!(st.nmigs, 30);
    assert_eq!(st.where_, 1);
    freeze.sort_unstable();
    eprintln!(
        "30 hops: {n} lines, no gap; freeze median {} ms, max {} ms",
        freeze[15], freeze[29]
    );
    kill(&home, job.home_pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_migrations_leave_the_process_running_intact_at_its_source() {
    let (lab, dir, home) = setup("mf", 94, 3, "fail").await;
    let memory = dir.script("memory.py", MEMORY);
    let job = spawn(
        &home,
        &dir,
        &["python3", &memory, "m.out", "256"],
        "m.log",
        false,
    )
    .await;
    let out = dir.file("m.out");
    let baseline = wait_for(Duration::from_secs(30), || async {
        sums(&out).first().cloned()
    })
    .await
    .expect("checksum");
    // It starts on node 2, so every failure below has a guest host as source.
    migrate(&home, job.home_pid, "2").await.expect("first hop");
    let intact = |label: &'static str| {
        let out = out.clone();
        let baseline = baseline.clone();
        let home = &home;
        async move {
            let st = status(home, job.home_pid).await;
            assert_eq!(st.where_, 2, "{label}: the job left node 2");
            let pid = st.pid;
            assert_ne!(state_of(pid), 'T', "{label}: the job is still frozen");
            let before = counts(&out).len();
            runs_on(&out, before, 3).await;
            let now = checksum_now(home, job.home_pid, &out).await;
            assert_eq!(now, baseline, "{label}: memory changed");
            assert_continuous(&out);
        }
    };

    // 1. The target blocks arrivals.
    let c3 = lab.client(3).await;
    c3.call_value(
        methods::HPC_WRITE,
        json!({ "path": "admin/block", "value": 1 }),
    )
    .await
    .unwrap();
    let e = migrate(&home, job.home_pid, "3").await.unwrap_err();
    assert!(e.contains("blocks arriving processes"), "{e}");
    intact("blocked").await;
    c3.call_value(
        methods::HPC_WRITE,
        json!({ "path": "admin/block", "value": 0 }),
    )
    .await
    .unwrap();

    // 2. The target's image directory is full (a 4 MiB tmpfs over it).
    let images = lab.images_dir(3);
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
        .arg(&images)
        .status()
        .unwrap();
    assert!(mounted.success());
    let e = migrate(&home, job.home_pid, "3").await.unwrap_err();
    let _ = std::process::Command::new("umount").arg(&images).status();
    assert!(e.contains("no room for the images"), "{e}");
    intact("image directory full").await;

    // 3. CRIU refuses: a job holding an established TCP connection.
    let tcp = dir.script(
        "tcp.py",
        "import socket, time\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
         c = socket.create_connection(s.getsockname()); a, _ = s.accept()\n\
         while True: time.sleep(0.05)\n",
    );
    let tjob = spawn(&home, &dir, &["python3", &tcp], "t.log", false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let e = migrate(&home, tjob.home_pid, "2").await.unwrap_err();
    assert!(e.contains("CRIU could not checkpoint it"), "{e}");
    assert!(
        e.contains("Dumping FAILED"),
        "CRIU's own words reach the caller: {e}"
    );
    let st = status(&home, tjob.home_pid).await;
    assert_eq!((st.where_, st.exit), (1, None));
    assert_ne!(state_of(st.pid), 'T');
    kill(&home, tjob.home_pid).await;

    // 4. The target agent is killed during the transfer.
    let target_pid = lab.agent_pid(3);
    let images = lab.images_dir(3);
    let killer = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            // The final images (taken while the job is frozen) are arriving.
            let receiving = std::fs::read_dir(&images)
                .into_iter()
                .flatten()
                .flatten()
                .any(|d| {
                    std::fs::read_dir(d.path().join("final"))
                        .into_iter()
                        .flatten()
                        .flatten()
                        .any(|f| f.metadata().map(|m| m.len() > (4 << 20)).unwrap_or(false))
                });
            if receiving {
                // SAFETY: the lab agent of node 3, started by this test's lab.
                unsafe { libc::kill(target_pid, libc::SIGKILL) };
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    });
    // (Pre-copy: the memory itself is what is in transfer.)
    let e = migrate_mode(&home, job.home_pid, "3", "precopy")
        .await
        .unwrap_err();
    assert!(
        killer.await.unwrap(),
        "the transfer was never seen in progress"
    );
    assert!(e.contains("went away"), "{e}");
    intact("target killed mid-transfer").await;
    kill(&home, job.home_pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_renice_kill_and_exit_status_go_through_the_home_node() {
    let (_lab, dir, home) = setup("mk", 95, 2, "signals").await;
    let script = dir.script(
        "sig.py",
        "import signal, sys, time\nf = open(sys.argv[1], 'a', buffering=1)\n\
         signal.signal(signal.SIGUSR1, lambda *a: f.write('usr1\\n'))\n\
         signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n\
         while True: time.sleep(0.05)\n",
    );
    let job = spawn(&home, &dir, &["python3", &script, "s.out"], "s.log", false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = migrate(&home, job.home_pid, "2").await.expect("migrate");
    let remote = r.pid;
    let sig = |s: &'static str| {
        let home = &home;
        async move {
            home.call_value(
                methods::PROC_SIGNAL,
                json!({ "pid": job.home_pid, "signal": s }),
            )
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"))
        }
    };
    // The home lists it as migrated, with its identity.
    let rows = procs(&home).await;
    let row = rows
        .iter()
        .find(|p| p.pid == job.home_pid)
        .expect("home lists it");
    assert_eq!((row.where_, row.home), (2, 1));
    // renice
    home.call_value(
        methods::PROC_RENICE,
        json!({ "pid": job.home_pid, "nice": 7 }),
    )
    .await
    .unwrap();
    let nice: i32 = std::fs::read_to_string(format!("/proc/{remote}/stat"))
        .unwrap()
        .rsplit_once(") ")
        .unwrap()
        .1
        .split(' ')
        .nth(16)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(nice, 7);
    // STOP / CONT
    sig("STOP").await;
    assert!(
        wait_for(Duration::from_secs(5), || async {
            (state_of(remote) == 'T').then_some(())
        })
        .await
        .is_some()
    );
    sig("CONT").await;
    assert!(
        wait_for(Duration::from_secs(5), || async {
            (state_of(remote) != 'T').then_some(())
        })
        .await
        .is_some()
    );
    // A handled signal
    sig("USR1").await;
    let got = wait_for(Duration::from_secs(5), || async {
        std::fs::read_to_string(dir.file("s.out"))
            .ok()
            .filter(|t| t.contains("usr1"))
    })
    .await;
    assert!(got.is_some(), "USR1 did not reach the migrated process");
    // TERM: the process exits with 7, and the home learns it.
    sig("TERM").await;
    let code = wait_for(Duration::from_secs(20), || async {
        status(&home, job.home_pid).await.exit
    })
    .await;
    assert_eq!(code, Some(7));
    // KILL: 128 + 9.
    let job2 = spawn(&home, &dir, &["sleep", "600"], "k.log", false).await;
    migrate(&home, job2.home_pid, "2").await.expect("migrate");
    kill(&home, job2.home_pid).await;
    let code = wait_for(Duration::from_secs(20), || async {
        status(&home, job2.home_pid).await.exit
    })
    .await;
    assert_eq!(code, Some(137));
    // Unknown PIDs are a clear error.
    let e = home
        .call_value(
            methods::PROC_SIGNAL,
            json!({ "pid": 4_000_000, "signal": "TERM" }),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no such process"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmovable_and_locked_processes_are_refused_at_once() {
    let (lab, dir, home) = setup("mu", 96, 2, "unmovable").await;
    let script = dir.script(
        "mlock.py",
        "import ctypes, time\nctypes.CDLL(None).mlockall(3)\nwhile True: time.sleep(0.05)\n",
    );
    let job = spawn(&home, &dir, &["python3", &script], "l.log", false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let row: ProcessInfo = home
        .call(methods::PROC_GET, json!({ "pid": job.home_pid }))
        .await
        .unwrap();
    assert!(row.cantmove.contains("locked memory"), "{row:?}");
    let t = Instant::now();
    let e = migrate(&home, job.home_pid, "2").await.unwrap_err();
    assert!(
        e.contains("cannot move") && e.contains("locked memory"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_ne!(
        state_of(job.pid),
        'T',
        "an unmovable process is never frozen"
    );
    // A locked job (nomig), and the agent itself (a plain process that can
    // never move).
    let locked = spawn(&home, &dir, &["sleep", "600"], "n.log", true).await;
    let e = migrate(&home, locked.home_pid, "2").await.unwrap_err();
    assert!(e.contains("locked to node 1"), "{e}");
    let agent = lab.agent_pid(1);
    let e = migrate(&home, agent, "2").await.unwrap_err();
    assert!(e.contains("the openMosix agent"), "{e}");
    let e = migrate(&home, locked.home_pid, "9").await.unwrap_err();
    assert!(e.contains("locked") || e.contains("no such node"), "{e}");
    // The cluster mask: node 2 denied (bit 2^(2-1), policy 0 = deny the set).
    let masked = spawn(&home, &dir, &["sleep", "600"], "m.log", false).await;
    for (field, value) in [("mignodes", 2), ("migpolicy", 0), ("migfilter", 1)] {
        home.call_value(
            methods::PROC_WRITE,
            json!({ "pid": masked.home_pid, "field": field, "value": value }),
        )
        .await
        .unwrap();
    }
    let e = migrate(&home, masked.home_pid, "2").await.unwrap_err();
    assert!(e.contains("cluster mask"), "{e}");
    kill(&home, job.home_pid).await;
    kill(&home, locked.home_pid).await;
    kill(&home, masked.home_pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expel_sends_guests_home_and_bring_brings_everything_home() {
    let lab = TestLab::up("me", 97, 3);
    let dir = Scratch::new("expel");
    let c1 = lab.client(1).await;
    let c2 = lab.client(2).await;
    let c3 = lab.client(3).await;
    lab.settled(3, Duration::from_secs(20)).await;
    let a = spawn(&c1, &dir, &["sleep", "600"], "a.log", false).await;
    let b = spawn(&c1, &dir, &["sleep", "600"], "b.log", false).await;
    let g = spawn(&c3, &dir, &["sleep", "600"], "g.log", false).await;
    migrate(&c1, a.home_pid, "2").await.unwrap();
    migrate(&c1, b.home_pid, "2").await.unwrap();
    migrate(&c3, g.home_pid, "2").await.unwrap();
    let remote: Vec<String> = c2
        .call_value(methods::HPC_LIST, json!({ "path": "remote" }))
        .await
        .map(|v| serde_json::from_value(v["value"].clone()).unwrap())
        .unwrap();
    assert_eq!(remote.len(), 3, "{remote:?}");
    let entry = c2
        .call_value(
            methods::HPC_READ,
            json!({ "path": format!("remote/{}", remote[0]) }),
        )
        .await
        .unwrap();
    assert!(
        entry["value"]["identity"].as_str().unwrap().contains(':'),
        "{entry}"
    );
    // expel (mosctl, as an admin would)
    let out = std::process::Command::new(bin("mosctl"))
        .args(["--node", &lab.addr(2), "--key"])
        .arg(lab.admin_key())
        .arg("--known-hosts")
        .arg(lab.dir.join("known_hosts"))
        .arg("expel")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status(&c1, a.home_pid).await.where_, 1);
    assert_eq!(status(&c1, b.home_pid).await.where_, 1);
    assert_eq!(status(&c3, g.home_pid).await.where_, 3);
    let block = c2
        .call_value(methods::HPC_READ, json!({ "path": "admin/block" }))
        .await
        .unwrap();
    assert_eq!(block["value"], 1, "expel implies block");
    let e = migrate(&c1, a.home_pid, "2").await.unwrap_err();
    assert!(e.contains("blocks"), "{e}");
    // bring
    migrate(&c1, a.home_pid, "3").await.unwrap();
    c2.call_value(
        methods::HPC_WRITE,
        json!({ "path": "admin/block", "value": 0 }),
    )
    .await
    .unwrap();
    let ready = wait_for(Duration::from_secs(10), || async {
        migrate(&c1, b.home_pid, "2").await.ok()
    })
    .await;
    assert!(ready.is_some());
    let v = c1
        .call_value_within(
            methods::HPC_WRITE,
            json!({ "path": "admin/bring", "value": 1 }),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert_eq!(v["moves"]["moved"], 2, "{v}");
    assert_eq!(status(&c1, a.home_pid).await.where_, 1);
    assert_eq!(status(&c1, b.home_pid).await.where_, 1);
    for (c, j) in [(&c1, &a), (&c1, &b), (&c3, &g)] {
        kill(c, j.home_pid).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosrun_and_its_wrappers_place_jobs_and_return_their_status() {
    let (lab, dir, home) = setup("mr", 98, 2, "mosrun").await;
    let runon = dir.file("runon");
    std::os::unix::fs::symlink(bin("mosrun"), &runon).unwrap();
    let env = |cmd: &mut std::process::Command| {
        cmd.current_dir(&dir.0)
            .env("OPENMOSIX_NODE", lab.addr(1))
            .env("OPENMOSIX_KEY", lab.admin_key())
            .env("OPENMOSIX_KNOWN_HOSTS", lab.dir.join("known_hosts"))
            .env("OPENMOSIX_LOG", "off");
    };
    // mosrun waits and returns the job's exit status.
    let mut cmd = std::process::Command::new(bin("mosrun"));
    env(&mut cmd);
    let st = cmd
        .args(["-o", "x.out", "sh", "-c", "echo hi; exit 3"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(3));
    assert_eq!(std::fs::read_to_string(dir.file("x.out")).unwrap(), "hi\n");
    // runon 2: the job runs on node 2, locked there.
    let mut cmd = std::process::Command::new(&runon);
    env(&mut cmd);
    let out = cmd
        .args(["2", "--detach", "sleep", "600"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let st = status(&home, pid).await;
    assert_eq!((st.where_, st.lock), (2, true));
    // A program that does not exist is refused with a clear error.
    let mut cmd = std::process::Command::new(bin("mosrun"));
    env(&mut cmd);
    let out = cmd.args(["no-such-program-xyz"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such program"));
    kill(&home, pid).await;
}

/// The running copies of the process whose command line holds `marker`
/// (all lab nodes share this kernel): PIDs of its python processes that are
/// neither zombies nor stopped.
fn running_copies(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.starts_with("python3 ") && cmd.contains(marker)
        })
        .filter(|pid| !matches!(state_of(*pid), 'Z' | 'T' | 't' | '?'))
        .collect()
}

/// The network namespace of a process (which lab node it is on).
fn netns(pid: i32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .map(|m| m.ino())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_after_commit_leaves_exactly_one_running_copy() {
    // Node 1 drops the connection right after sending the commit; node 2, as
    // a target, resumes and then leaves the commit unanswered; node 3 loses
    // its commit on the way. Node 4 behaves.
    let (lab, dir, home) = setup_with(
        "mc",
        81,
        4,
        "commitcut",
        &[
            "--node-arg=1:--test-fault=drop-after-commit",
            "--node-arg=2:--test-fault=target-silent-after-commit",
            "--node-arg=3:--test-fault=lose-commit",
        ],
    )
    .await;
    let (job, out, baseline) = memory_job(&home, &dir, "cut.out", 64).await;
    let marker = out.display().to_string();
    let node_ns: Vec<u64> = (1..=4).map(|id| netns(lab.agent_pid(id))).collect();
    // (to, whether the move happens, where the job is afterwards)
    for (to, moves, at) in [
        ("4", true, 4u32), // from 1: the source drops the line after commit
        ("2", true, 2),    // from 4: the target resumes and stays silent
        ("3", true, 3),    // from 2: plain
        ("4", false, 3),   // from 3: the commit is lost, the target ends its copy
    ] {
        let before = counts(&out).len();
        // The commit protocol of a move whose memory travels while frozen.
        let r = migrate_mode(&home, job.home_pid, to, "precopy").await;
        match (&r, moves) {
            (Ok(r), true) => assert_eq!(r.to, at, "{r:?}"),
            (Err(e), false) => assert!(e.contains("did not take the commit"), "{e}"),
            (other, _) => panic!("move to {to}: {other:?}"),
        }
        let one = wait_for(Duration::from_secs(20), || async {
            let c = running_copies(&marker);
            (c.len() == 1).then_some(c)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "after the move to {to}: running copies {:?}",
                running_copies(&marker)
            )
        });
        let st = status(&home, job.home_pid).await;
        assert_eq!(st.where_, at, "{st:?}");
        assert_eq!(
            netns(one[0]),
            node_ns[at as usize - 1],
            "the one copy runs on node {at}"
        );
        // Still exactly one a while later (no late resume anywhere).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(running_copies(&marker), one, "after the move to {to}");
        runs_on(&out, before, 3).await;
        assert_continuous(&out);
        let now = checksum_now(&home, job.home_pid, &out).await;
        assert_eq!(now, baseline, "memory changed after the move to {to}");
    }
    kill(&home, job.home_pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_offers_never_take_more_image_space_than_there_is() {
    // Node 2 takes at most 100 MiB of images at once; each job needs about 60.
    let (lab, dir, home) =
        setup_with("mo", 82, 2, "offers", &["--node-arg=2:--image-space=100"]).await;
    let memory = dir.script("memory.py", MEMORY);
    let mut jobs = Vec::new();
    for i in 0..3 {
        let out = dir.file(&format!("o{i}.out"));
        let job = spawn(
            &home,
            &dir,
            &["python3", &memory, &out.display().to_string(), "48"],
            &format!("o{i}.log"),
            false,
        )
        .await;
        jobs.push((job, out));
    }
    let mut baselines = Vec::new();
    for (_, out) in &jobs {
        let sum = wait_for(Duration::from_secs(30), || async {
            sums(out).first().cloned()
        })
        .await
        .expect("checksum");
        baselines.push(sum);
    }
    // Watch how much the image directory of node 2 holds while they compete.
    let images = lab.images_dir(2);
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watch = {
        let watching = watching.clone();
        std::thread::spawn(move || {
            let mut most = 0u64;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(dir_bytes(&images));
                std::thread::sleep(Duration::from_millis(2));
            }
            most
        })
    };
    // One connection each: a connection answers its requests in order.
    let (h0, h1, h2) = (
        lab.client(1).await,
        lab.client(1).await,
        lab.client(1).await,
    );
    // Pre-copy: each needs room for its whole memory at node 2.
    let (a, b, c) = tokio::join!(
        migrate_mode(&h0, jobs[0].0.home_pid, "2", "precopy"),
        migrate_mode(&h1, jobs[1].0.home_pid, "2", "precopy"),
        migrate_mode(&h2, jobs[2].0.home_pid, "2", "precopy"),
    );
    let results = [a, b, c];
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let most = watch.join().unwrap();
    assert!(
        most <= 100 << 20,
        "node 2 held {most} bytes of images at once"
    );
    let moved = results.iter().filter(|r| r.is_ok()).count();
    assert!(moved >= 1, "{results:?}");
    assert!(moved < 3, "all three fit at once? {results:?}");
    for ((job, out), (r, baseline)) in jobs.iter().zip(results.iter().zip(&baselines)) {
        let expected = match r {
            Ok(_) => 2,
            Err(e) => {
                assert!(e.contains("no room for the images"), "{e}");
                1
            }
        };
        let st = status(&home, job.home_pid).await;
        assert_eq!(st.where_, expected, "{st:?}");
        let before = counts(out).len();
        runs_on(out, before, 3).await;
        assert_continuous(out);
        assert_eq!(&checksum_now(&home, job.home_pid, out).await, baseline);
    }
    // Room is given back: the refused ones move now, one after the other.
    for ((job, _), r) in jobs.iter().zip(&results) {
        if r.is_err() {
            migrate_mode(&home, job.home_pid, "2", "precopy")
                .await
                .expect("there is room once the others have moved");
        }
    }
    // Post-copy writes no memory into images: back home and all three to
    // node 2 at once fit in its 100 MiB.
    for (job, _) in &jobs {
        migrate_mode(&home, job.home_pid, "1", "postcopy")
            .await
            .expect("home post-copy");
    }
    let (a, b, c) = tokio::join!(
        migrate_mode(&h0, jobs[0].0.home_pid, "2", "postcopy"),
        migrate_mode(&h1, jobs[1].0.home_pid, "2", "postcopy"),
        migrate_mode(&h2, jobs[2].0.home_pid, "2", "postcopy"),
    );
    for (r, (job, out)) in [a, b, c].iter().zip(&jobs) {
        assert!(
            r.is_ok(),
            "post-copy needs room only for the small images: {r:?}"
        );
        let st = status(&home, job.home_pid).await;
        assert_eq!(st.where_, 2, "{st:?}");
        let before = counts(out).len();
        runs_on(out, before, 3).await;
    }
    for (job, _) in &jobs {
        kill(&home, job.home_pid).await;
    }
}

/// Bytes of the regular files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

/// Each lab node's load is its own processes' on its own CPU (they share
/// one kernel; `--cpus-per-node 1` pins each): with two busy jobs on node 1
/// and node 2 idle, node 1 is loaded, node 2 is not, and `balance` finds
/// node 2, where the job then runs on node 2's CPU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_node_counts_its_own_load_and_balance_finds_an_idle_node() {
    let (lab, dir, home) = setup_with("mb", 106, 2, "balance", &["--cpus-per-node", "1"]).await;
    let spin = ["sh", "-c", "while :; do :; done"];
    let a = spawn(&home, &dir, &spin, "a.log", false).await;
    let b = spawn(&home, &dir, &spin, "b.log", false).await;
    let idle = lab.client(2).await;
    let loads = wait_for(Duration::from_secs(15), || async {
        let one: hpc::model::NodeStatus = home.call(methods::NODE_STATUS, json!({})).await.ok()?;
        let two: hpc::model::NodeStatus = idle.call(methods::NODE_STATUS, json!({})).await.ok()?;
        (one.load >= 100 && two.load < 30).then_some((one.load, two.load))
    })
    .await;
    assert!(
        loads.is_some(),
        "node 1 busy and node 2 idle, each by its own processes"
    );
    let st: hpc::model::NodeStatus = idle.call(methods::NODE_STATUS, json!({})).await.unwrap();
    assert_eq!(st.cpus, 1, "a pinned node counts its own CPU");
    let r = migrate(&home, a.home_pid, "balance")
        .await
        .expect("balance");
    assert_eq!(r.to, 2, "{r:?}");
    // Restored under the target's agent, it runs on the target's CPU.
    let cpus_of = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Cpus_allowed_list:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let target = cpus_of(lab.agent_pid(r.to));
    assert!(!target.contains([',', '-']), "one CPU per node: {target}");
    assert_eq!(cpus_of(r.pid), target, "the moved job's CPUs");
    assert_ne!(cpus_of(lab.agent_pid(1)), target, "node 1 has another CPU");
    kill(&home, a.home_pid).await;
    kill(&home, b.home_pid).await;
}

/// Writes `admin/<field>` on the node `c` talks to.
async fn admin(c: &Client, field: &str, value: u32) {
    let p = WriteParams {
        path: format!("admin/{field}"),
        value: json!(value),
        pid: None,
    };
    let _: serde_json::Value = c.call(methods::HPC_WRITE, p).await.expect("admin write");
}

/// Automatic balancing (`--balance on`) on a 3-node lab whose nodes have a
/// CPU each, and what each admin switch stops, and only that. Busy jobs
/// started on node 1:
/// - `stay` on node 1: nothing leaves it;
/// - `block` on node 2, a locked job and a job whose cluster mask allows only
///   node 1: the free job goes to node 3; the locked and masked ones stay;
/// - `quiet` on node 3 (node 2 open again): the next goes to node 2;
/// - `lstay` on node 1: its own new job stays, a guest sent there by hand
///   leaves on its own;
/// - and the spread jobs stay where they went (no bouncing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_jobs_spread_on_their_own_and_each_admin_switch_stops_its_moves() {
    let (lab, dir, home) = setup_with(
        "mz",
        107,
        3,
        "autobalance",
        &["--cpus-per-node", "1", "--agent-arg=--balance=on"],
    )
    .await;
    let (n2, n3) = (lab.client(2).await, lab.client(3).await);
    let spin = ["sh", "-c", "while :; do :; done"];
    let at = |job: &JobInfo| {
        let (home, pid) = (&home, job.home_pid);
        async move { status(home, pid).await.where_ }
    };
    let places = |jobs: Vec<JobInfo>| {
        let home = &home;
        async move {
            let mut w = Vec::new();
            for j in &jobs {
                w.push(status(home, j.home_pid).await.where_);
            }
            w
        }
    };

    // stay: three busy jobs, none leaves node 1.
    admin(&home, "stay", 1).await;
    admin(&n2, "block", 1).await;
    let locked = spawn(&home, &dir, &spin, "locked.log", true).await;
    let masked = spawn(&home, &dir, &spin, "masked.log", false).await;
    for (field, value) in [("migfilter", 1), ("migpolicy", 1), ("mignodes", 1)] {
        let p = ProcWriteParams {
            pid: masked.pid,
            field: field.into(),
            value: json!(value),
        };
        let _: serde_json::Value = home.call(methods::PROC_WRITE, p).await.expect("mask");
    }
    let free = spawn(&home, &dir, &spin, "free.log", false).await;
    let three = vec![locked.clone(), masked.clone(), free.clone()];
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        places(three.clone()).await,
        [1, 1, 1],
        "stay kept them home"
    );

    // block on node 2, a lock and a mask: only the free job moves, to node 3.
    admin(&home, "stay", 0).await;
    let moved = wait_for(Duration::from_secs(30), || async {
        (at(&free).await == 3).then_some(())
    })
    .await;
    assert!(
        moved.is_some(),
        "the free job did not go to node 3: {:?}",
        places(three.clone()).await
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        places(three.clone()).await,
        [1, 1, 3],
        "locked and masked stay, block kept node 2 empty"
    );

    // quiet on node 3 (which has room again), node 2 open: the next goes to 2.
    kill(&home, free.home_pid).await;
    admin(&n3, "quiet", 1).await;
    admin(&n2, "block", 0).await;
    // A quiet node says so once more (its gossip lands within a second).
    let heard = wait_for(Duration::from_secs(10), || async {
        let nodes: Vec<NodeStatus> = home
            .call(methods::CLUSTER_NODES, hpc::protocol::NoParams {})
            .await
            .ok()?;
        let accepts = |id| nodes.iter().any(|n| n.id == id && n.accepts);
        (!accepts(3) && accepts(2)).then_some(())
    })
    .await;
    assert!(
        heard.is_some(),
        "node 1 did not hear that node 3 is quiet and node 2 open"
    );
    let next = spawn(&home, &dir, &spin, "next.log", false).await;
    let went = wait_for(Duration::from_secs(30), || async {
        let w = at(&next).await;
        (w != 1).then_some(w)
    })
    .await;
    assert_eq!(went, Some(2), "a quiet node is not chosen");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(at(&next).await, 2, "it stays spread");
    kill(&home, next.home_pid).await;
    admin(&n3, "quiet", 0).await;

    // lstay on node 1: its own job stays; a guest sent there by hand leaves.
    admin(&home, "lstay", 1).await;
    let own = spawn(&home, &dir, &spin, "own.log", false).await;
    // (lstay on node 2 meanwhile, so that its balancer does not place the
    // new job elsewhere before the test sends it to node 1 by hand.)
    admin(&n2, "lstay", 1).await;
    let guest = spawn(&n2, &dir, &spin, "guest.log", false).await;
    migrate(&n2, guest.home_pid, "1")
        .await
        .expect("the guest to node 1 by hand");
    admin(&n2, "lstay", 0).await;
    let guest_at = || {
        let (n2, pid) = (&n2, guest.home_pid);
        async move { status(n2, pid).await.where_ }
    };
    let left = wait_for(Duration::from_secs(30), || async {
        let w = guest_at().await;
        (w != 1).then_some(w)
    })
    .await;
    assert!(left.is_some(), "the guest did not leave node 1 under lstay");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(at(&own).await, 1, "lstay kept node 1's own job home");
    for j in [&locked, &masked, &own] {
        kill(&home, j.home_pid).await;
    }
    kill(&n2, guest.home_pid).await;
}

/// Holds MiB of memory (argv 1) taken 2 MiB at a time, one step every argv 2
/// seconds, printing how much it holds; then "full", then "alive" five times
/// a second.
const HOLDER: &str = r#"
import sys, time
sys.stdout.reconfigure(line_buffering=True)
top, pause, held = int(sys.argv[1]), float(sys.argv[2]), []
while len(held) * 2 < top:
    held.append(bytearray(b'\x01') * (2 << 20))
    print(len(held) * 2)
    time.sleep(pause)
print("full")
while True:
    time.sleep(0.2)
    print("alive")
"#;

/// Memory ushering on a lab whose nodes have 768 MiB each (a memory cgroup,
/// where the kernel's OOM killer acts when it is full): a locked job holds
/// 300 MiB on node 1 and another grows towards 500 MiB there, more than the
/// node has (without ushering, the OOM killer ends it near 450 MiB). Before
/// the OOM killer acts, node 1 moves the growing job to node 2, which has
/// room, and says why; it reaches its size there and runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_filling_its_memory_ushers_a_process_out_before_any_oom_kill() {
    let (lab, dir, home) = setup_with(
        "mu",
        112,
        2,
        "usher",
        &["--mem-per-node", "768", "--agent-arg=--balance=on"],
    )
    .await;
    std::fs::write(dir.file("holder.py"), HOLDER).unwrap();
    let script = dir.file("holder.py").display().to_string();
    let py = |top: &'static str, pause: &'static str| ["python3", script.as_str(), top, pause];
    let ballast = spawn(&home, &dir, &py("300", "0"), "ballast.out", true).await;
    let ballast_full = wait_for(Duration::from_secs(30), || async {
        std::fs::read_to_string(dir.file("ballast.out"))
            .is_ok_and(|t| t.contains("full"))
            .then_some(())
    })
    .await;
    assert!(ballast_full.is_some(), "the ballast did not fill");
    // Started locked, so that it is not placed elsewhere at once (node 1
    // was busy filling the ballast); unlocked, it may move on its own.
    let grower = spawn(&home, &dir, &py("500", "0.1"), "grower.out", true).await;
    let unlock = ProcWriteParams {
        pid: grower.pid,
        field: "lock".into(),
        value: json!(0),
    };
    let _: serde_json::Value = home
        .call(methods::PROC_WRITE, unlock)
        .await
        .expect("unlock");
    let out = dir.file("grower.out");
    let done = wait_for(Duration::from_secs(90), || async {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        (text.matches("alive").count() >= 5).then_some(())
    })
    .await;
    let (n1, n2) = (lab.memcg(1), lab.memcg(2));
    assert!(
        done.is_some(),
        "the growing job did not reach its size and run on; it printed {:?}; OOM kills: node 1 {:?}, node 2 {:?}",
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .last(),
        n1.oom_kills(),
        n2.oom_kills()
    );
    let st = status(&home, grower.home_pid).await;
    assert_eq!(st.where_, 2, "it runs on node 2");
    let why = st.last_migration.map(|r| r.why).unwrap_or_default();
    assert!(why.starts_with("memory: "), "the move says why: {why:?}");
    assert_eq!(
        (n1.oom_kills(), n2.oom_kills()),
        (Some(0), Some(0)),
        "no OOM kill anywhere"
    );
    assert_eq!(
        status(&home, ballast.home_pid).await.where_,
        1,
        "the locked ballast stayed"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let sizes: Vec<u32> = text.lines().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(
        sizes,
        (1..=250).map(|i| i * 2).collect::<Vec<_>>(),
        "every step, once, in order"
    );
    kill(&home, grower.home_pid).await;
    kill(&home, ballast.home_pid).await;
}

/// Autodiscovery: node 2 of this lab is in no map and has no node id, only
/// the cluster key. Node 1 hears its multicast announcement and meets it;
/// both see each other up (with host keys and migration), node 2 numbers
/// itself by its address, and with a CPU each, of two busy jobs started on
/// node 1 one goes to node 2 on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_only_the_cluster_key_joins_by_discovery_and_receives_work() {
    let (lab, dir, home) = setup_with(
        "dy",
        113,
        2,
        "discovery",
        &[
            "--cpus-per-node",
            "1",
            "--unmapped",
            "2",
            "--agent-arg=--balance=on",
        ],
    )
    .await;
    assert!(
        !lab.dir
            .join("node2/config")
            .join(hpc::paths::MAP_FILE)
            .exists(),
        "node 2 has no map"
    );
    let n2 = lab.client(2).await;
    let mospe: hpc::protocol::PathValue = n2
        .call(
            methods::HPC_READ,
            hpc::protocol::PathParams {
                path: "admin/mospe".into(),
            },
        )
        .await
        .expect("read admin/mospe");
    assert_eq!(mospe.value, json!(2), "node 2 took its id from its address");
    let spin = ["sh", "-c", "while :; do :; done"];
    let a = spawn(&home, &dir, &spin, "a.log", false).await;
    let b = spawn(&home, &dir, &spin, "b.log", false).await;
    let spread = wait_for(Duration::from_secs(30), || async {
        let w = (
            status(&home, a.home_pid).await.where_,
            status(&home, b.home_pid).await.where_,
        );
        (w == (1, 2) || w == (2, 1)).then_some(w)
    })
    .await;
    assert!(spread.is_some(), "no job went to the discovered node");
    kill(&home, a.home_pid).await;
    kill(&home, b.home_pid).await;
}

/// Exec-time placement: with node 1 busy (a job running for a few seconds)
/// and node 2 idle, a new job started on node 1 goes to node 2 at once, as
/// a placement, before it has run long enough for the balancer to weigh it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_job_on_a_busy_node_is_placed_on_an_idle_one_at_once() {
    let (lab, dir, home) = setup_with(
        "mp",
        114,
        2,
        "placement",
        &["--cpus-per-node", "1", "--agent-arg=--balance=on"],
    )
    .await;
    // One speed for both: measured while other tests load the machine, they
    // differ, and a slower-looking idle node may rightly not be chosen.
    for n in 1..=2 {
        admin(&lab.client(n).await, "speed", 10000).await;
    }
    let spin = ["sh", "-c", "while :; do :; done"];
    let busy = spawn(&home, &dir, &spin, "busy.log", true).await;
    // Node 1's own load rises over a few seconds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let new = spawn(&home, &dir, &spin, "new.log", false).await;
    let placed = wait_for(Duration::from_secs(10), || async {
        let st = status(&home, new.home_pid).await;
        (st.where_ == 2).then_some(st)
    })
    .await
    .expect("the new job did not go to node 2");
    let why = placed.last_migration.map(|r| r.why).unwrap_or_default();
    assert!(
        why.starts_with("placement:") && why.ends_with("a new program"),
        "{why}"
    );
    kill(&home, new.home_pid).await;
    kill(&home, busy.home_pid).await;
}

/// A job forking three busy workers on node 1 of three (a CPU each): the
/// agent sees them within a tenth of a second and places two at once, one
/// on each other node (each placement counts the one before), long before a
/// balancing pass would find them old enough to move; the third stays.
#[tokio::test]
async fn a_jobs_forked_workers_are_placed_on_the_other_nodes_at_once() {
    let (lab, dir, home) = setup_with(
        "fp",
        116,
        3,
        "forkplace",
        &["--cpus-per-node", "1", "--agent-arg=--balance=on"],
    )
    .await;
    // One speed for all: measured while other tests load the machine, they
    // differ, and placement rightly starts the job itself on a faster node.
    for n in 1..=3 {
        admin(&lab.client(n).await, "speed", 10000).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let forks = "for i in 1 2 3; do (while :; do :; done) & done; wait";
    let job = spawn(&home, &dir, &["sh", "-c", forks], "fork.log", false).await;
    let workers = wait_for(Duration::from_secs(10), || async {
        let k = testkit::children(job.pid);
        (k.len() == 3).then_some(k)
    })
    .await
    .expect("three workers");
    let started = Instant::now();
    let away = wait_for(Duration::from_secs(20), || async {
        let mut away = Vec::new();
        for w in &workers {
            let st: Option<JobInfo> = home
                .call(methods::JOB_STATUS, json!({ "pid": w }))
                .await
                .ok();
            away.extend(st.filter(|s| s.where_ != 1));
        }
        (away.len() == 2).then_some(away)
    })
    .await
    .expect("two workers placed elsewhere");
    let took = started.elapsed();
    let mut nodes: Vec<u32> = away.iter().map(|s| s.where_).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, [2, 3], "one on each other node");
    for s in &away {
        let why = s
            .last_migration
            .as_ref()
            .map(|r| r.why.clone())
            .unwrap_or_default();
        assert!(
            why.starts_with("placement:") && why.ends_with("a forked worker"),
            "{why}"
        );
    }
    // Still two away a few seconds on: the third stayed home, nothing bounced.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut still = 0;
    for w in &workers {
        let st: Option<JobInfo> = home
            .call(methods::JOB_STATUS, json!({ "pid": w }))
            .await
            .ok();
        still += usize::from(st.is_some_and(|s| s.where_ != 1));
    }
    assert_eq!(still, 2, "placed {took:?} after the fork, then moved again");
    kill(&home, job.pid).await;
    for w in &workers {
        kill(&home, *w).await;
    }
}

/// Starts the memory script (`mib` MiB) as a job of `home` writing to
/// `out`; returns once it runs, with its output file and first checksum.
async fn memory_job(
    home: &Client,
    dir: &Scratch,
    out: &str,
    mib: u32,
) -> (JobInfo, PathBuf, String) {
    let memory = dir.script("memory.py", MEMORY);
    let path = dir.file(out);
    let log = out.replace(".out", ".log");
    let argv = [
        "python3",
        &memory,
        &path.display().to_string(),
        &mib.to_string(),
    ];
    let job = spawn(home, dir, &argv, &log, false).await;
    let baseline = wait_for(Duration::from_secs(30), || async {
        sums(&path).first().cloned()
    })
    .await
    .expect("the memory process reports its checksum");
    runs_on(&path, 0, 3).await;
    (job, path, baseline)
}

/// `proc.migrate` with a mode.
async fn migrate_mode(
    c: &Client,
    pid: i32,
    to: &str,
    mode: &str,
) -> Result<hpc::protocol::MigrationReport, String> {
    let v = c
        .call_value_within(
            methods::PROC_MIGRATE,
            json!({ "pid": pid, "to": to, "mode": mode }),
            Duration::from_secs(300),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(serde_json::from_value(v).expect("a migration report"))
}

/// After a move of the memory job writing `out` to node `to` (network
/// namespace `ns`): exactly one running copy, there, its output continuous
/// past line `before` and its memory's checksum still `baseline`.
async fn one_intact_copy(
    to: u32,
    ns: u64,
    out: &Path,
    before: usize,
    home: &Client,
    home_pid: i32,
    baseline: &str,
) {
    let marker = out.display().to_string();
    let one = wait_for(Duration::from_secs(20), || async {
        let c = running_copies(&marker);
        (c.len() == 1).then_some(c)
    })
    .await
    .unwrap_or_else(|| panic!("running copies {:?}", running_copies(&marker)));
    assert_eq!(netns(one[0]), ns, "it runs on node {to}");
    runs_on(out, before, 3).await;
    assert_continuous(out);
    let now = checksum_now(home, home_pid, out).await;
    assert_eq!(now, baseline, "memory changed after the move to {to}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_job_moves_post_copy_with_its_memory_and_output_intact() {
    let (lab, dir, home) = setup("pc", 117, 2, "postcopy").await;
    let (job, out, baseline) = memory_job(&home, &dir, "p.out", 256).await;
    let node_ns: Vec<u64> = (1..=2).map(|id| netns(lab.agent_pid(id))).collect();
    for to in [2u32, 1] {
        let before = counts(&out).len();
        let r = migrate_mode(&home, job.home_pid, &to.to_string(), "postcopy")
            .await
            .unwrap_or_else(|e| panic!("post-copy move to {to}: {e}"));
        assert_eq!(r.mode, hpc::protocol::MigrationMode::Postcopy, "{r:?}");
        assert_eq!(r.memory_path, MemoryPath::Direct, "{r:?}");
        // Only the small images moved while it was frozen; the memory followed.
        assert!(r.bytes < 32 << 20, "{r:?}");
        assert!(r.pulled_bytes >= 200 << 20, "{r:?}");
        assert!(r.released_ms >= r.freeze_ms, "{r:?}");
        eprintln!(
            "post-copy to {to}: frozen {} ms, released after {} ms, {} MiB pulled",
            r.freeze_ms,
            r.released_ms,
            r.pulled_bytes >> 20
        );
        one_intact_copy(
            to,
            node_ns[to as usize - 1],
            &out,
            before,
            &home,
            job.home_pid,
            &baseline,
        )
        .await;
        let st = status(&home, job.home_pid).await;
        assert_eq!(st.where_, to, "{st:?}");
    }
    kill(&home, job.home_pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_copy_move_streams_its_memory_and_falls_back_to_files_when_the_stream_breaks() {
    // Node 3's page server ends as soon as a streamed checkpoint begins;
    // node 2 takes the stream at 4 MiB/s (so that its agent can be killed
    // in the middle).
    let (lab, dir, home) = setup_with(
        "ps",
        120,
        3,
        "prestream",
        &[
            "--node-arg=3:--test-fault=break-stream",
            "--node-arg=2:--test-fault=slow-pull",
        ],
    )
    .await;
    let (job, out, baseline) = memory_job(&home, &dir, "s.out", 128).await;
    for (to, streams) in [(3u32, false), (1, true)] {
        let before = counts(&out).len();
        let r = migrate_mode(&home, job.home_pid, &to.to_string(), "precopy")
            .await
            .unwrap_or_else(|e| panic!("pre-copy move to {to}: {e}"));
        assert_eq!(r.mode, hpc::protocol::MigrationMode::Precopy, "{r:?}");
        assert!(r.bytes >= 120 << 20, "the memory moved while frozen: {r:?}");
        if streams {
            // The memory went to the page server while CRIU read it; the
            // files were only the other images.
            assert!(r.streamed_bytes >= 120 << 20, "{r:?}");
            assert!(r.bytes - r.streamed_bytes < 16 << 20, "{r:?}");
            assert_eq!(r.memory_path, MemoryPath::Direct, "{r:?}");
        } else {
            // The stream broke: the second checkpoint wrote files.
            assert_eq!(r.streamed_bytes, 0, "{r:?}");
            assert_eq!(r.memory_path, MemoryPath::Files, "{r:?}");
        }
        eprintln!(
            "pre-copy to {to}: frozen {} ms (dump {} ms, transfer {} ms, restore {} ms), {} MiB streamed",
            r.freeze_ms,
            r.dump_ms,
            r.transfer_ms,
            r.restore_ms,
            r.streamed_bytes >> 20
        );
        let ns = netns(lab.agent_pid(to));
        one_intact_copy(to, ns, &out, before, &home, job.home_pid, &baseline).await;
    }
    // The target's agent killed while the memory streams: the move fails
    // with the reason, and the process continues here, intact.
    let before = counts(&out).len();
    let moving = {
        let home = lab.client(1).await;
        let pid = job.home_pid;
        tokio::spawn(async move { migrate_mode(&home, pid, "2", "precopy").await })
    };
    let streaming = wait_for(Duration::from_secs(30), || async {
        let v = home
            .call_value(methods::PROC_PROGRESS, json!({ "pid": job.home_pid }))
            .await
            .ok()?;
        let p: hpc::protocol::MoveProgress = serde_json::from_value(v).ok()?;
        (p.phase == hpc::protocol::MovePhase::Frozen && p.moved_bytes > 0).then_some(p)
    })
    .await
    .expect("the memory streaming to node 2");
    assert!(streaming.moved_bytes < 120 << 20, "{streaming:?}");
    // SAFETY: kill has no memory-safety preconditions; the PID is this
    // test's lab agent.
    unsafe { libc::kill(lab.agent_pid(2), libc::SIGKILL) };
    let e = tokio::time::timeout(Duration::from_secs(120), moving)
        .await
        .expect("the move ends")
        .unwrap()
        .expect_err("the move cannot succeed");
    assert!(e.contains("continues on node 1"), "{e}");
    eprintln!("target killed mid-stream: {e}");
    let ns = netns(lab.agent_pid(1));
    one_intact_copy(1, ns, &out, before, &home, job.home_pid, &baseline).await;
    // A restarted agent clears what the dead one left.
    lab.restart_agent(2, "kill");
    // No image directory is left behind on any node.
    for id in 1..=3 {
        let images = lab.images_dir(id);
        let left: Vec<_> = std::fs::read_dir(&images)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "node {id} kept {left:?}");
    }
    kill(&home, job.home_pid).await;
}

/// Connects to `addr` from the host; None when the connection is refused.
fn stranger(addr: &str) -> Option<std::net::TcpStream> {
    std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()
}

/// Whether the agent closed a stranger's connection (end of stream or reset
/// within `within`).
fn closed_within(mut s: &std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 64];
    matches!(s.read(&mut b), Ok(0))
        || matches!(s.read(&mut b), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock
            && e.kind() != std::io::ErrorKind::TimedOut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_takes_the_direct_link_or_the_ssh_session_and_strangers_at_the_pages_port_change_nothing()
 {
    // Node 2's pages port is fixed, so strangers can find it; node 3 keeps
    // the memory in the SSH session.
    let (lab, dir, home) = setup_with(
        "pl",
        134,
        3,
        "pageslink",
        &[
            "--node-arg=2:--pages-port=4670",
            "--node-arg=3:--pages-link=ssh",
        ],
    )
    .await;
    let (job, out, baseline) = memory_job(&home, &dir, "l.out", 64).await;
    let port = format!("{}.2:4670", lab.subnet);
    // Strangers from the host: a line that is no id, an id of no migration,
    // and more idle links than one address may hold (the extra ones are
    // closed at once).
    for line in ["not an id\n", "0123456789abcdef0123456789abcdef\n"] {
        let mut s = stranger(&port).expect("connect");
        std::io::Write::write_all(&mut s, line.as_bytes()).unwrap();
        assert!(
            closed_within(&s, Duration::from_secs(5)),
            "{line:?} was not shut out"
        );
    }
    let idle: Vec<std::net::TcpStream> = (0..12).filter_map(|_| stranger(&port)).collect();
    assert_eq!(idle.len(), 12, "the pages port takes connections");
    let shut = idle
        .iter()
        .filter(|s| closed_within(s, Duration::from_millis(100)))
        .count();
    assert_eq!(shut, 4, "one address holds 8 unproved links, no more");

    // Both nodes have the link: the memory takes it (the first move while
    // 8 strangers still wait at node 2's port), streamed or pulled. Node 3
    // has none: the SSH session, either way.
    for (to, mode, path) in [
        (2u32, "precopy", MemoryPath::Direct),
        (1, "postcopy", MemoryPath::Direct),
        (2, "postcopy", MemoryPath::Direct),
        (3, "postcopy", MemoryPath::Ssh),
        (1, "precopy", MemoryPath::Ssh),
    ] {
        let before = counts(&out).len();
        let r = migrate_mode(&home, job.home_pid, &to.to_string(), mode)
            .await
            .unwrap_or_else(|e| panic!("{mode} move to {to}: {e}"));
        assert_eq!(r.memory_path, path, "{mode} to {to}: {r:?}");
        assert!(r.pulled_bytes + r.streamed_bytes >= 60 << 20, "{r:?}");
        let ns = netns(lab.agent_pid(to));
        one_intact_copy(to, ns, &out, before, &home, job.home_pid, &baseline).await;
    }
    drop(idle);
    kill(&home, job.home_pid).await;
}

/// The running (not stopped) python3 processes of a network namespace.
fn python_in(ns: u64) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "python3")
        })
        .filter(|pid| netns(*pid) == ns && !matches!(state_of(*pid), 'Z' | 'T' | 't' | '?'))
        .collect()
}

/// A post-copy pull broken half-way, by the target agent's crash (it is
/// restarted only afterwards) and then by a cut link, leaves exactly one
/// running copy: the source's, with its memory intact. (What the target's
/// copy wrote while it ran is written again by the resumed source copy.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_copy_pull_cut_short_leaves_the_source_copy_running_intact() {
    // Node 2 pulls at 4 MiB/s: 64 MiB take some 16 s.
    let (lab, dir, home) = setup_with(
        "pb",
        118,
        2,
        "pullbreak",
        &["--node-arg=2:--test-fault=slow-pull"],
    )
    .await;
    let (job, out, baseline) = memory_job(&home, &dir, "b.out", 64).await;
    let marker = out.display().to_string();
    let node_ns: Vec<u64> = (1..=2).map(|id| netns(lab.agent_pid(id))).collect();
    for how in ["target agent killed", "link cut"] {
        let moving = {
            let home = lab.client(1).await;
            let pid = job.home_pid;
            tokio::spawn(async move { migrate_mode(&home, pid, "2", "postcopy").await })
        };
        // The copy on node 2 runs while its memory is still coming (its
        // command line, in memory not pulled yet, may read empty).
        wait_for(Duration::from_secs(30), || async {
            (!python_in(node_ns[1]).is_empty()).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{how}: the copy never ran on node 2"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The source says where the move stands: running there, its memory
        // being pulled, more of it at each look.
        let progress = |v: serde_json::Value| -> Option<hpc::protocol::MoveProgress> {
            serde_json::from_value(v).expect("a move's progress or null")
        };
        let ask = || async {
            progress(
                home.call_value(methods::PROC_PROGRESS, json!({ "pid": job.home_pid }))
                    .await
                    .expect("proc.progress"),
            )
        };
        let first = ask().await.expect("a move under way");
        assert_eq!(first.phase, hpc::protocol::MovePhase::Pulling, "{first:?}");
        assert_eq!(
            (first.to, first.mode),
            (2, hpc::protocol::MigrationMode::Postcopy)
        );
        assert!(
            first.frozen_ms > 0 && first.expected_bytes >= 60 << 20,
            "{first:?}"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        let later = ask().await.expect("a move under way");
        assert!(
            later.moved_bytes > first.moved_bytes && later.moved_bytes < later.expected_bytes,
            "{first:?} then {later:?}"
        );
        assert_eq!(later.frozen_ms, first.frozen_ms, "the freeze ended");
        match how {
            "target agent killed" => {
                // SAFETY: kill has no memory-safety preconditions; the PID is
                // this test's lab agent.
                unsafe { libc::kill(lab.agent_pid(2), libc::SIGKILL) };
                // Its copy, with pages missing, must not run on: the guard
                // ends it.
                let gone = wait_for(Duration::from_secs(3), || async {
                    python_in(node_ns[1]).is_empty().then_some(())
                })
                .await;
                assert!(
                    gone.is_some(),
                    "the copy on node 2 runs on without its agent"
                );
            }
            _ => lab.set_link(2, false),
        }
        let r = tokio::time::timeout(Duration::from_secs(90), moving)
            .await
            .expect("the move ends")
            .unwrap();
        let e = r.expect_err("the move cannot succeed");
        assert!(e.contains("could not be pulled"), "{how}: {e}");
        let after = home
            .call_value(methods::PROC_PROGRESS, json!({ "pid": job.home_pid }))
            .await
            .expect("proc.progress");
        assert!(after.is_null(), "no move under way: {after}");
        assert!(e.contains("continues on node 1"), "{how}: {e}");
        match how {
            "link cut" => lab.set_link(2, true),
            _ => {
                assert!(python_in(node_ns[1]).is_empty(), "{how}: a copy on node 2");
                // The move has ended: blocking here holds nothing up.
                lab.restart_agent(2, "kill");
            }
        }
        let one = wait_for(Duration::from_secs(30), || async {
            let c = running_copies(&marker);
            (c.len() == 1).then_some(c)
        })
        .await
        .unwrap_or_else(|| panic!("{how}: running copies {:?}", running_copies(&marker)));
        assert_eq!(
            netns(one[0]),
            node_ns[0],
            "{how}: the one copy runs on node 1"
        );
        // Still exactly one a while later.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(running_copies(&marker), one, "{how}");
        let before = counts(&out).len();
        runs_on(&out, before, 3).await;
        let now = checksum_now(&home, job.home_pid, &out).await;
        assert_eq!(now, baseline, "{how}: memory changed");
        let st = status(&home, job.home_pid).await;
        assert_eq!(st.where_, 1, "{how}: {st:?}");
        lab.settled(2, Duration::from_secs(30)).await;
    }
    kill(&home, job.home_pid).await;
}

/// `openmosix-pullguard` kills the watched process when its agent's pipe
/// closes without a release (the agent died), and leaves it alone once
/// released.
#[test]
fn the_pull_guard_ends_the_copy_only_if_its_agent_dies() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let run = |release: bool| -> bool {
        let mut victim = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        // SAFETY: pidfd_open of our own child.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, victim.id() as i32, 0) };
        assert!(pidfd >= 0);
        // SAFETY: the descriptor was just returned to us.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
        let (hold, _other) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut fds = [0; 2];
        // SAFETY: pipe fills the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both were just returned to us.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let keep = [r.as_raw_fd(), pidfd.as_raw_fd(), hold.as_raw_fd()];
        let w_fd = w.as_raw_fd();
        let mut cmd = std::process::Command::new(bin("openmosix-pullguard"));
        cmd.args(["--control", &keep[0].to_string()])
            .args(["--pidfd", &keep[1].to_string()])
            .args(["--hold", &keep[2].to_string()]);
        // SAFETY: fcntl and close are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                libc::close(w_fd);
                for fd in keep {
                    libc::fcntl(fd, libc::F_SETFD, 0);
                }
                Ok(())
            });
        }
        let mut guard = cmd.spawn().unwrap();
        drop(r);
        if release {
            let mut f = std::fs::File::from(w);
            std::io::Write::write_all(&mut f, b"r").unwrap();
        } else {
            drop(w);
        }
        guard.wait().unwrap();
        let killed = victim.try_wait().unwrap().is_some() || {
            std::thread::sleep(Duration::from_millis(200));
            victim.try_wait().unwrap().is_some()
        };
        let _ = victim.kill();
        let _ = victim.wait();
        killed
    };
    assert!(
        run(false),
        "the guard left the copy running when its agent died"
    );
    assert!(!run(true), "the guard killed a released copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_job_hops_30_times_post_copy_around_four_nodes() {
    let (_lab, dir, home) = setup("ph", 119, 4, "posthops").await;
    let (job, out, baseline) = memory_job(&home, &dir, "h.out", 64).await;
    let (mut freeze, mut released) = (Vec::new(), Vec::new());
    for hop in 0..30u32 {
        let to = [2u32, 3, 4, 1][hop as usize % 4];
        let before = counts(&out).len();
        let r = migrate_mode(&home, job.home_pid, &to.to_string(), "postcopy")
            .await
            .unwrap_or_else(|e| panic!("hop {hop} to {to}: {e}"));
        assert_eq!(
            (r.to, r.mode),
            (to, hpc::protocol::MigrationMode::Postcopy),
            "hop {hop}: {r:?}"
        );
        assert!(r.pulled_bytes >= 48 << 20, "hop {hop}: {r:?}");
        freeze.push(r.freeze_ms);
        released.push(r.released_ms);
        runs_on(&out, before, 2).await;
        if hop % 10 == 9 {
            let now = checksum_now(&home, job.home_pid, &out).await;
            assert_eq!(now, baseline, "memory changed by hop {hop}");
        }
    }
    let n = assert_continuous(&out);
    let st = status(&home, job.home_pid).await;
    assert_eq!((st.nmigs, st.where_), (30, 3));
    freeze.sort_unstable();
    released.sort_unstable();
    eprintln!(
        "30 post-copy hops: {n} lines, no gap; freeze median {} ms, max {} ms; released median {} ms",
        freeze[15], freeze[29], released[15]
    );
    kill(&home, job.home_pid).await;
}
