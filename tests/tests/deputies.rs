//! Any process moves, openMosix-style (issue 14), with real CRIU in a lab: a
//! process started by a plain shell in node 1's network namespace (no agent
//! started it) is unlocked, moves to node 2 and back home on its own, keeping
//! its PID, memory and output; its original stays home as a deputy holding
//! no memory, signals sent to the deputy reach it, and its exit status (or
//! the signal that killed it) reaches the shell's `wait`. A process with a
//! pipe to one that stays is refused before anything is frozen.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hpc::client::Client;
use hpc::protocol::{JobInfo, methods};
use serde_json::json;
use testkit::{TestLab, job_status as status, migrate, wait_for, without_inherited_fds};

/// Fills N MiB with a known pattern and writes its SHA-256 ("sum HEX"),
/// then a counter line every 50 ms; says "usr1 PID" on SIGUSR1 (PID: what
/// getpid() says); once the quit file exists, writes the sum again and
/// exits with status 3.
const WORKER: &str = r#"
import sys, time, signal, hashlib, os
n = int(sys.argv[2]) << 20
buf = bytearray((bytes(range(251)) * (n // 251 + 1))[:n])
f = open(sys.argv[1], 'a', buffering=1)
f.write("sum " + hashlib.sha256(buf).hexdigest() + "\n")
signal.signal(signal.SIGUSR1, lambda *_: f.write("usr1 %d\n" % os.getpid()))
i = 0
while True:
    i += 1
    f.write(f"{i}\n")
    if os.path.exists(sys.argv[3]):
        f.write("sum " + hashlib.sha256(buf).hexdigest() + "\n")
        sys.exit(3)
    time.sleep(0.05)
"#;

/// A shell in a lab node's network namespace running the worker and then
/// writing the status its `wait` got; the worker is its only child.
struct Shell {
    sh: Child,
    dir: PathBuf,
    worker: i32,
}

impl Shell {
    fn start(lab: &TestLab, node: u32, name: &str, mib: u32, pipe: bool) -> Self {
        let dir = script_dir(lab, &format!("deputy-{name}"), "worker.py", WORKER);
        let d = dir.display();
        let tail = if pipe { " | cat" } else { "" };
        let script = format!(
            "python3 {d}/worker.py {d}/out {mib} {d}/quit{tail} > {d}/stdout 2>&1; echo \"status $?\" > {d}/status"
        );
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/om-{}-{node}", lab.name))
            .args(["/bin/sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        without_inherited_fds(&mut cmd);
        let sh = cmd.spawn().expect("nsenter sh");
        let deadline = Instant::now() + Duration::from_secs(30);
        let worker = loop {
            let found = testkit::children(sh.id() as i32).into_iter().find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.contains("worker.py"))
            });
            if let Some(w) = found
                && sums(&dir.join("out")).len() == 1
            {
                break w;
            }
            assert!(Instant::now() < deadline, "the worker did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        Self { sh, dir, worker }
    }

    fn out(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// What the shell's `wait` said, once it said it.
    fn status(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("status"))
            .ok()
            .map(|s| s.trim().to_string())
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; the PID is ours.
        unsafe { libc::kill(self.worker, libc::SIGKILL) };
        let _ = self.sh.kill();
        let _ = self.sh.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh directory `label-PID` in the lab's, holding the script `file`.
fn script_dir(lab: &TestLab, label: &str, file: &str, text: &str) -> PathBuf {
    let dir = lab.dir.join(format!("{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), text).unwrap();
    dir
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn sums(path: &Path) -> Vec<String> {
    lines(path)
        .into_iter()
        .filter(|l| l.starts_with("sum "))
        .collect()
}

fn counts(path: &Path) -> Vec<u64> {
    lines(path).iter().filter_map(|l| l.parse().ok()).collect()
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Unlocks a plain process (it is locked until someone says it may move).
async fn unlock(c: &Client, pid: i32) {
    let listed = wait_for(Duration::from_secs(10), || async {
        c.call_value(methods::PROC_GET, json!({ "pid": pid }))
            .await
            .ok()
    })
    .await;
    assert!(listed.is_some(), "node 1 lists process {pid}");
    c.call_value(
        methods::PROC_WRITE,
        json!({ "pid": pid, "field": "lock", "value": 0 }),
    )
    .await
    .expect("unlock");
}

/// Waits until the output has grown by `n` counter lines.
async fn grows(path: &Path, n: usize) {
    let before = counts(path).len();
    let grown = wait_for(Duration::from_secs(20), || async {
        (counts(path).len() >= before + n).then_some(())
    })
    .await;
    assert!(grown.is_some(), "the output stopped at {before} lines");
}

fn assert_continuous(path: &Path) {
    let c = counts(path);
    for w in c.windows(2) {
        assert_eq!(w[1], w[0] + 1, "the counter jumped: {w:?}");
    }
}

#[tokio::test]
async fn a_plain_process_moves_away_and_home_with_a_deputy_keeping_its_place() {
    let lab = TestLab::up("dp", 101, 2);
    lab.settled(2, Duration::from_secs(60)).await;
    let home = lab.client(1).await;
    let sh = Shell::start(&lab, 1, "trip", 256, false);
    let pid = sh.worker;

    // Locked as every plain process is, until unlocked.
    let refused = migrate(&home, pid, "2").await.unwrap_err();
    assert!(refused.contains("locked"), "{refused}");
    unlock(&home, pid).await;

    let r = migrate(&home, pid, "2").await.expect("to node 2");
    assert_eq!((r.home, r.home_pid, r.to), (1, pid, 2));
    let j = status(&home, pid).await;
    assert!(j.single && j.where_ == 2, "{j:?}");
    // The original stays as the deputy: same PID, no memory.
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let rss = rss_kib(pid);
    assert!(rss <= 1024, "the deputy holds {rss} KiB");
    grows(&sh.out(), 10).await;

    // A signal sent to the deputy reaches the process on node 2, whose
    // getpid() is still the PID it was started with.
    // SAFETY: a signal to a process this test started.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let heard = wait_for(Duration::from_secs(10), || async {
        lines(&sh.out())
            .contains(&format!("usr1 {pid}"))
            .then_some(())
    })
    .await;
    assert!(heard.is_some(), "SIGUSR1 did not reach the moved process");

    // Home again, into a namespace of its own beside its deputy.
    let r = migrate(&home, pid, "home").await.expect("home");
    assert_eq!(r.to, 1);
    assert_eq!(status(&home, pid).await.where_, 1);
    grows(&sh.out(), 10).await;

    // It ends with status 3: the shell's wait says 3.
    std::fs::write(sh.dir.join("quit"), "").unwrap();
    let said = wait_for(Duration::from_secs(30), || async { sh.status() }).await;
    assert_eq!(said.as_deref(), Some("status 3"));
    let s = sums(&sh.out());
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[0], s[1], "the memory changed on the way");
    assert_continuous(&sh.out());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the deputy ended"
    );
}

#[tokio::test]
async fn killed_away_it_is_killed_at_home_and_a_pipe_to_a_process_that_stays_is_refused() {
    let lab = TestLab::up("dk", 102, 2);
    lab.settled(2, Duration::from_secs(60)).await;
    let home = lab.client(1).await;

    // Killed on node 2 with SIGKILL: the shell's wait says killed by 9.
    let sh = Shell::start(&lab, 1, "kill", 16, false);
    unlock(&home, sh.worker).await;
    migrate(&home, sh.worker, "2").await.expect("to node 2");
    grows(&sh.out(), 5).await;
    let away = status(&home, sh.worker).await;
    let host = lab.client(2).await;
    host.call_value(
        methods::PROC_SIGNAL,
        json!({ "pid": away.pid, "signal": "KILL" }),
    )
    .await
    .expect("kill on node 2");
    let said = wait_for(Duration::from_secs(30), || async { sh.status() }).await;
    assert_eq!(said.as_deref(), Some("status 137"), "sh reports 128 + 9");
    let j = status(&home, sh.worker).await;
    assert_eq!((j.exit, j.signal), (Some(137), Some(9)), "{j:?}");

    // Its output goes through a pipe to `cat`, which stays: refused up
    // front, and it runs on untouched.
    let piped = Shell::start(&lab, 1, "pipe", 16, true);
    unlock(&home, piped.worker).await;
    let refused = migrate(&home, piped.worker, "2").await.unwrap_err();
    assert!(
        refused.contains("pipe") && refused.contains("cat"),
        "{refused}"
    );
    assert!(Path::new(&format!("/proc/{}", piped.worker)).exists());
    let state = std::fs::read_to_string(format!("/proc/{}/stat", piped.worker)).unwrap();
    let state = state.rsplit_once(") ").unwrap().1.chars().next().unwrap();
    assert!(matches!(state, 'R' | 'S'), "untouched: state {state}");
    assert_eq!(status_of(&home, piped.worker).await, None);
    // And the process table says why, for whoever looks first.
    let said = wait_for(Duration::from_secs(15), || async {
        let row: hpc::model::ProcessInfo = home
            .call(methods::PROC_GET, json!({ "pid": piped.worker }))
            .await
            .ok()?;
        row.cantmove.contains("pipe").then_some(row.cantmove)
    })
    .await;
    assert!(said.is_some(), "cantmove names the pipe");
}

/// The job record of a process, if the node keeps one.
async fn status_of(c: &Client, pid: i32) -> Option<JobInfo> {
    c.call(methods::JOB_STATUS, json!({ "pid": pid }))
        .await
        .ok()
}

fn status_field(pid: i32, field: &str) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The process (not the thread) tracing `pid`.
fn tracer_of(pid: i32) -> i32 {
    match status_field(pid, "TracerPid:") {
        0 => 0,
        thread => status_field(thread, "Tgid:"),
    }
}

#[tokio::test]
async fn the_home_agent_restarts_and_crashes_and_so_does_the_host_while_its_process_runs_away() {
    let lab = TestLab::up("dr", 103, 2);
    lab.settled(2, Duration::from_secs(60)).await;
    let sh = Shell::start(&lab, 1, "restart", 16, false);
    let pid = sh.worker;
    // Two mosrun jobs as well: one stays home, one runs away on node 2.
    let quit = sh.dir.join("jobs-quit");
    let (stay, away) = {
        let home = lab.client(1).await;
        unlock(&home, pid).await;
        migrate(&home, pid, "2").await.expect("to node 2");
        let script = format!(
            "while [ ! -e {} ]; do sleep 0.1; done; exit 5",
            quit.display()
        );
        let job = |script: String| {
            let home = &home;
            async move {
                let p = hpc::protocol::SpawnParams {
                    argv: vec!["sh".into(), "-c".into(), script],
                    cwd: "/".into(),
                    env: vec![("PATH".into(), "/usr/bin:/bin".into())],
                    ..hpc::protocol::SpawnParams::default()
                };
                let j: JobInfo = home.call(methods::PROC_SPAWN, p).await.expect("mosrun");
                j
            }
        };
        let stay = job(script.clone()).await;
        let away = job(script).await;
        migrate(&home, away.pid, "2")
            .await
            .expect("a job to node 2");
        (stay, away)
    };
    assert_eq!(
        tracer_of(pid),
        lab.agent_pid(1),
        "the agent keeps the deputy"
    );

    for (round, signal) in ["term", "kill"].into_iter().enumerate() {
        lab.restart_agent(1, signal);
        lab.settled(2, Duration::from_secs(60)).await;
        let taken = wait_for(Duration::from_secs(10), || async {
            (tracer_of(pid) == lab.agent_pid(1)).then_some(())
        })
        .await;
        assert!(
            taken.is_some(),
            "after a {signal} the new agent took the deputy back"
        );
        let home = lab.client(1).await;
        let j = status(&home, pid).await;
        assert!(j.where_ == 2 && j.exit.is_none(), "{j:?}");
        grows(&sh.out(), 5).await;
        // Signals to the deputy still reach the process.
        // SAFETY: a signal to a process this test started.
        unsafe { libc::kill(pid, libc::SIGUSR1) };
        let heard = wait_for(Duration::from_secs(10), || async {
            let n = lines(&sh.out())
                .iter()
                .filter(|l| **l == format!("usr1 {pid}"))
                .count();
            (n > round).then_some(())
        })
        .await;
        assert!(heard.is_some(), "SIGUSR1 after the {signal}");
    }

    // Its host crashes too and comes back: the process runs on, untouched.
    lab.restart_agent(2, "kill");
    lab.settled(2, Duration::from_secs(60)).await;
    grows(&sh.out(), 5).await;
    let home = lab.client(1).await;
    let j = status(&home, pid).await;
    assert!(j.where_ == 2 && j.exit.is_none(), "{j:?}");

    // Its end still reaches the shell, with its real status.
    std::fs::write(sh.dir.join("quit"), "").unwrap();
    let said = wait_for(Duration::from_secs(30), || async { sh.status() }).await;
    assert_eq!(said.as_deref(), Some("status 3"));
    assert_continuous(&sh.out());

    // The jobs' ends reach their home too, though no agent that runs now
    // started them: their inits wrote them down.
    std::fs::write(&quit, "").unwrap();
    for j in [&stay, &away] {
        let ended = wait_for(Duration::from_secs(30), || async {
            status(&home, j.pid).await.exit
        })
        .await;
        assert_eq!(ended, Some(5), "job {}", j.pid);
    }
}

/// A parent started by a plain shell forks three CPU-bound workers and waits
/// for them, writing what each `waitpid` said. Worker i computes until the
/// file `quit-i` exists, writes its result and exits with 10 + i; once the
/// file `term` exists the parent sends SIGTERM to worker 1.
const PARENT: &str = r#"
import os, sys, time, signal
d = sys.argv[1]
kids = []
for i in range(3):
    pid = os.fork()
    if pid == 0:
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)
        r = 0
        while not os.path.exists(f"{d}/quit-{i}"):
            r = fib(16)
        with open(f"{d}/result-{i}", "w") as f:
            f.write(f"{r} {os.getpid()}\n")
        os._exit(10 + i)
    kids.append(pid)
with open(f"{d}/kids", "w") as f:
    f.write(" ".join(map(str, kids)) + "\n")
while not os.path.exists(f"{d}/term"):
    time.sleep(0.05)
os.kill(kids[1], signal.SIGTERM)
out = []
for pid in kids:
    _, st = os.waitpid(pid, 0)
    out.append(f"exit {os.WEXITSTATUS(st)}" if os.WIFEXITED(st) else f"signal {os.WTERMSIG(st)}")
with open(f"{d}/statuses.tmp", "w") as f:
    f.write("\n".join(out) + "\n")
os.rename(f"{d}/statuses.tmp", f"{d}/statuses")
"#;

#[tokio::test]
async fn forked_workers_move_to_other_nodes_and_their_parent_waits_for_their_real_ends() {
    let lab = TestLab::up("df", 104, 3);
    lab.settled(3, Duration::from_secs(60)).await;
    let home = lab.client(1).await;
    let dir = script_dir(&lab, "deputy-fork", "parent.py", PARENT);
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/om-{}-1", lab.name))
        .arg("python3")
        .arg(dir.join("parent.py"))
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    without_inherited_fds(&mut cmd);
    let mut parent = cmd.spawn().expect("the parent");
    let kids: Vec<i32> = wait_for(Duration::from_secs(20), || async {
        let text = std::fs::read_to_string(dir.join("kids")).ok()?;
        let k: Vec<i32> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        (k.len() == 3).then_some(k)
    })
    .await
    .expect("the workers");

    // The parent keeps running at home; each worker goes elsewhere.
    let targets = ["2", "3", "2"];
    for (pid, to) in kids.iter().zip(targets) {
        unlock(&home, *pid).await;
        let r = migrate(&home, *pid, to).await.expect("a worker moves");
        assert_eq!(r.to.to_string(), to);
    }
    let host2 = lab.client(2).await;
    for (pid, to) in kids.iter().zip(targets) {
        let j = status(&home, *pid).await;
        assert_eq!(j.where_.to_string(), to, "{j:?}");
    }

    // Worker 0 finishes on node 2: exit 10, its result written there.
    std::fs::write(dir.join("quit-0"), "").unwrap();
    // The parent's SIGTERM to worker 1 reaches it on node 3.
    std::fs::write(dir.join("term"), "").unwrap();
    // Worker 2 is killed on node 2.
    let w2 = status(&home, kids[2]).await;
    host2
        .call_value(
            methods::PROC_SIGNAL,
            json!({ "pid": w2.pid, "signal": "KILL" }),
        )
        .await
        .expect("kill worker 2 on node 2");

    let said = wait_for(Duration::from_secs(60), || async {
        std::fs::read_to_string(dir.join("statuses")).ok()
    })
    .await
    .expect("the parent waited for every worker");
    assert_eq!(said, "exit 10\nsignal 15\nsignal 9\n");
    let result = std::fs::read_to_string(dir.join("result-0")).unwrap();
    assert!(
        result.ends_with(&format!(" {}\n", kids[0])),
        "worker 0's getpid() is still {}: {result}",
        kids[0]
    );
    assert_eq!(parent.wait().unwrap().code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The seed's multifibo, in Python: forks N workers; each says "I started
/// VPID", computes Fibonacci numbers (CPU-bound) until the go file exists,
/// then prints "I -> fib(K) = F, pid VPID" and exits 0; the parent waits for
/// all and exits 0 only if every worker did.
const MULTIFIBO: &str = r#"
import os, sys, time
n, go = int(sys.argv[1]), sys.argv[2]
def fib(k):
    return k if k < 2 else fib(k - 1) + fib(k - 2)
kids = []
for i in range(n):
    pid = os.fork()
    if pid == 0:
        print(f"{i} started {os.getpid()}", flush=True)
        k = 18 + i
        while not os.path.exists(go):
            f = fib(k)
        print(f"{i} -> fib({k}) = {fib(k)}, pid {os.getpid()}", flush=True)
        os._exit(0)
    kids.append(pid)
ok = all(os.waitpid(p, 0)[1] == 0 for p in kids)
print("all done" if ok else "a worker failed", flush=True)
sys.exit(0 if ok else 1)
"#;

fn fib(k: u64) -> u64 {
    if k < 2 { k } else { fib(k - 1) + fib(k - 2) }
}

#[tokio::test]
async fn a_mosrun_job_spreads_its_forked_workers_and_ends_well() {
    let lab = TestLab::up("dm", 105, 3);
    lab.settled(3, Duration::from_secs(60)).await;
    let home = lab.client(1).await;
    let dir = script_dir(&lab, "multifibo", "multifibo.py", MULTIFIBO);
    let (out, go) = (dir.join("out"), dir.join("go"));
    let p = hpc::protocol::SpawnParams {
        argv: vec![
            "python3".into(),
            dir.join("multifibo.py").display().to_string(),
            "4".into(),
            go.display().to_string(),
        ],
        cwd: dir.display().to_string(),
        env: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())],
        stdout: Some(out.display().to_string()),
        ..hpc::protocol::SpawnParams::default()
    };
    let job: JobInfo = home.call(methods::PROC_SPAWN, p).await.expect("mosrun");

    // Its four workers, by the PIDs node 1 lists, and the PIDs they see
    // (by worker number).
    let (workers, seen): (Vec<(i32, String)>, Vec<String>) =
        wait_for(Duration::from_secs(30), || async {
            let mut kids = testkit::children(job.pid);
            let mut seen = vec![String::new(); 4];
            for l in lines(&out) {
                if let Some((i, vpid)) = l.split_once(" started ") {
                    *seen.get_mut(i.parse::<usize>().ok()?)? = vpid.to_string();
                }
            }
            kids.sort_unstable();
            (kids.len() == 4 && seen.iter().all(|v| !v.is_empty())).then(|| {
                let w = kids.into_iter().map(|k| (k, inner_pid(k))).collect();
                (w, seen)
            })
        })
        .await
        .expect("the workers started");
    let mut inner: Vec<&String> = workers.iter().map(|(_, v)| v).collect();
    let mut said: Vec<&String> = seen.iter().collect();
    inner.sort();
    said.sort();
    assert_eq!(inner, said, "their PIDs in the job's namespace");

    // They may move as the job may (unlocked), each on its own.
    let targets = ["2", "3", "2", "3"];
    for ((pid, _), to) in workers.iter().zip(targets) {
        let row: hpc::model::ProcessInfo = wait_for(Duration::from_secs(10), || async {
            home.call(methods::PROC_GET, json!({ "pid": pid }))
                .await
                .ok()
        })
        .await
        .expect("node 1 lists the worker");
        assert!(!row.lock, "a job's worker is locked: {row:?}");
        let r = migrate(&home, *pid, to).await.expect("a worker moves");
        assert_eq!((r.home_pid, r.to.to_string()), (*pid, to.to_string()));
    }
    for ((pid, _), to) in workers.iter().zip(targets) {
        let j = status(&home, *pid).await;
        assert!(j.single && j.where_.to_string() == to, "{j:?}");
        let rss = rss_kib(*pid);
        assert!(rss <= 1024, "worker {pid}'s deputy holds {rss} KiB");
    }
    // The job itself cannot move whole while its workers are away.
    let whole = migrate(&home, job.pid, "2").await.unwrap_err();
    assert!(whole.contains("deputy"), "{whole}");
    // Worker 0 hops on, and home again (into a namespace of its own).
    let w0 = workers[0].0;
    assert_eq!(migrate(&home, w0, "3").await.expect("2 to 3").to, 3);
    assert_eq!(migrate(&home, w0, "home").await.expect("home").to, 1);

    std::fs::write(&go, "").unwrap();
    let ended = wait_for(Duration::from_secs(120), || async {
        status(&home, job.pid).await.exit
    })
    .await;
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(ended, Some(0), "the job's parent failed:\n{text}");
    for (i, vpid) in seen.iter().enumerate() {
        let k = 18 + i as u64;
        let want = format!("{i} -> fib({k}) = {}, pid {vpid}", fib(k));
        assert!(text.contains(&want), "missing `{want}` in:\n{text}");
    }
    assert!(text.contains("all done"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The PID `pid` has in its own PID namespace (`NSpid`'s last field).
fn inner_pid(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last().map(str::to_string))
        .unwrap_or_default()
}
