//! Automatic balancing on a lab whose two nodes have one CPU each, one run,
//! as root with real CRIU: the wall time of work started on node 1 with the
//! agents balancing (`--balance on`), beside the same work on the same kind
//! of lab without it (`--balance off`: everything on node 1's CPU), measured
//! in the same run, three rounds, medians.
//!
//! - two CPU-bound jobs (`mosrun` twice) of equal work; target ≥ 1.6×;
//! - the seed's multifibo (one job forking 4 workers); target ≥ 1.5×;
//! - the machine's ceiling, in the same run: the same two jobs pinned by
//!   hand to two CPUs vs to one (a virtual machine's CPUs may not scale).
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p testkit --bench balancing`
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::{Duration, Instant};

use hpc::client::Client;
use hpc::protocol::{JobInfo, SpawnParams, methods};
use serde_json::json;
use testkit::{TestLab, unique_dir};

/// Burns a fixed amount of CPU: N rounds of a sum.
const SPIN: &str = "import sys\ns = 0\nfor i in range(int(sys.argv[1])):\n    s += i * i\n";

/// multifibo: forks W workers that each burn N rounds; exits 0 if all did.
const MULTIFIBO: &str = r#"
import os, sys
w, n = int(sys.argv[1]), int(sys.argv[2])
kids = []
for i in range(w):
    pid = os.fork()
    if pid == 0:
        s = 0
        for j in range(n):
            s += j * j
        print(i, "->", s % 1000, flush=True)
        os._exit(0)
    kids.append(pid)
sys.exit(0 if all(os.waitpid(p, 0)[1] == 0 for p in kids) else 1)
"#;

async fn spawn(c: &Client, dir: &Path, argv: &[String], out: &str) -> JobInfo {
    let p = SpawnParams {
        argv: argv.to_vec(),
        cwd: dir.display().to_string(),
        env: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())],
        stdout: Some(dir.join(out).display().to_string()),
        ..SpawnParams::default()
    };
    c.call(methods::PROC_SPAWN, p).await.expect("spawn")
}

/// Waits until every job ended (status 0); the time since `t0`.
async fn all_done(c: &Client, jobs: &[JobInfo], t0: Instant) -> f64 {
    loop {
        let mut done = true;
        for j in jobs {
            let s: JobInfo = c
                .call(methods::JOB_STATUS, json!({ "pid": j.home_pid }))
                .await
                .expect("status");
            match s.exit {
                Some(0) => {}
                Some(code) => panic!("job {} ended with {code}", j.home_pid),
                None => done = false,
            }
        }
        if done {
            return t0.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The wall times of both workloads on a fresh 2-node pinned lab.
async fn run(tag: &str, octet: u8, balance: bool, rounds: u64) -> (f64, f64) {
    let mut extra = vec!["--cpus-per-node", "1"];
    if balance {
        extra.push("--agent-arg=--balance=on");
    }
    let lab = TestLab::up_with(tag, octet, 2, &extra);
    lab.settled(2, Duration::from_secs(60)).await;
    let home = lab.client(1).await;
    let dir = unique_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), "bench-balancing");
    std::fs::write(dir.join("spin.py"), SPIN).unwrap();
    std::fs::write(dir.join("multifibo.py"), MULTIFIBO).unwrap();
    let py = |script: &str, args: &[String]| {
        let mut v = vec![
            "python3".to_string(),
            dir.join(script).display().to_string(),
        ];
        v.extend_from_slice(args);
        v
    };
    let t0 = Instant::now();
    let a = spawn(&home, &dir, &py("spin.py", &[rounds.to_string()]), "a.out").await;
    let b = spawn(&home, &dir, &py("spin.py", &[rounds.to_string()]), "b.out").await;
    let two = all_done(&home, &[a, b], t0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t0 = Instant::now();
    let args = ["4".to_string(), (rounds / 2).to_string()];
    let m = spawn(&home, &dir, &py("multifibo.py", &args), "m.out").await;
    let fibo = all_done(&home, &[m], t0).await;
    let lines = std::fs::read_to_string(dir.join("m.out")).unwrap_or_default();
    assert_eq!(lines.lines().count(), 4, "every worker's result: {lines}");
    let _ = std::fs::remove_dir_all(&dir);
    (two, fibo)
}

/// Rounds of the whole measurement.
const ROUNDS: usize = 3;

/// The median of a few figures.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The machine's own ceiling: two SPIN runs pinned by hand (`taskset`) to
/// CPUs `cpus.0` and `cpus.1` at once; the wall time until both ended.
fn pinned_pair(script: &Path, rounds: u64, cpus: (&str, &str)) -> f64 {
    let t0 = Instant::now();
    let start = |cpu: &str| {
        std::process::Command::new("taskset")
            .args(["-c", cpu, "python3"])
            .arg(script)
            .arg(rounds.to_string())
            .spawn()
            .expect("taskset python3")
    };
    let (mut a, mut b) = (start(cpus.0), start(cpus.1));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    t0.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(euid == 0, "run as root (CRIU and network namespaces)");
    // About 10 s of one CPU per job on this machine.
    let rounds = 60_000_000;
    let scratch = unique_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), "bench-ceiling");
    std::fs::write(scratch.join("spin.py"), SPIN).unwrap();
    let spin = scratch.join("spin.py");
    // Three rounds, each measuring everything, so that the machine's noise
    // falls on all columns alike; the medians are printed.
    let mut rows: [Vec<f64>; 6] = Default::default();
    for round in 1..=ROUNDS {
        let one = pinned_pair(&spin, rounds, ("0", "0"));
        let two = pinned_pair(&spin, rounds, ("0", "1"));
        let (two_one, fibo_one) = run("bo", 108, false, rounds).await;
        let (two_bal, fibo_bal) = run("bb", 109, true, rounds).await;
        println!(
            "round {round}: two jobs {two_bal:.1} s balanced / {two_one:.1} s one CPU; multifibo {fibo_bal:.1} / {fibo_one:.1}; by hand {two:.1} / {one:.1}"
        );
        for (v, x) in rows
            .iter_mut()
            .zip([two_bal, two_one, fibo_bal, fibo_one, two, one])
        {
            v.push(x);
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let [
        two_bal,
        two_one,
        fibo_bal,
        fibo_one,
        by_hand_two,
        by_hand_one,
    ] = rows.map(median);
    println!(
        "== automatic balancing, 2 lab nodes with a CPU each, work started on node 1 (medians of {ROUNDS}) =="
    );
    println!(
        "{:<34} {:>12} {:>14} {:>9} {:>8}",
        "workload", "balanced s", "one CPU s", "speed-up", "target"
    );
    for (name, bal, one, target) in [
        ("two CPU-bound jobs", two_bal, two_one, "1.6×"),
        ("multifibo, 4 forked workers", fibo_bal, fibo_one, "1.5×"),
        ("ceiling: two pinned by hand", by_hand_two, by_hand_one, "-"),
    ] {
        println!(
            "{name:<34} {bal:>12.1} {one:>14.1} {:>8.2}× {target:>8}",
            one / bal
        );
    }
    println!(
        "(the ceiling row: the same two jobs on two CPUs vs one, by taskset, no agents: what this machine allows)"
    );
}
