//! Migration benchmark, one run, as root with real CRIU: a job holding 16, 64,
//! 256 and 1024 MiB is migrated between two nodes of a lab cluster by the
//! agents, post-copy (lazy checkpoint, ~2 MiB of images, restore, commit; the
//! memory follows) and pre-copy (checkpoint, all images over the agents' SSH
//! channel, restore, commit), beside the floor measured in the same run: the
//! same process checkpointed and restored by hand with the CRIU command line
//! on one machine (`criu dump` + `criu restore`, no transfer at all). Targets:
//! the freeze within 1.1× the floor at every size, post-copy's at 1 GiB
//! within 0.25 s.
//!
//! Then the same for a single plain process that no agent started (16, 64
//! and 256 MiB, moving on its own with its deputy at home; its floor is CRIU
//! with `--shell-job` by hand), and what an idle deputy costs.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p testkit --bench migration`
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hpc::protocol::{JobInfo, MigrationReport, SpawnParams, methods};
use serde_json::json;
use testkit::{TestLab, bin, unique_dir};

/// Fills N MiB with a pattern, then says "ready" and sleeps.
const HOLDER: &str = r#"
import sys, time
n = int(sys.argv[2]) << 20
buf = bytearray((bytes(range(251)) * (n // 251 + 1))[:n])
open(sys.argv[1], 'w').write("ready\n")
while True:
    time.sleep(0.1)
"#;

const SIZES: [u64; 4] = [16, 64, 256, 1024];
const RUNS: usize = 3;

/// Runs of a job's moves and of its floor: more for small jobs, whose
/// freezes of tens of milliseconds move by several on this VM from run to
/// run (a median of 9 takes that out; it costs a few seconds).
fn runs(mib: u64) -> usize {
    if mib <= 64 { 9 } else { RUNS }
}

fn wait_ready(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains("ready")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} never became ready", path.display());
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `criu dump -t PID` (with `extra` options) into `images`, by hand.
fn criu_dump(images: &Path, pid: i32, extra: &[&str]) {
    let dump = Command::new("criu")
        .arg("dump")
        .args(extra)
        .args(["-o", "dump.log", "-t", &pid.to_string(), "-D"])
        .arg(images)
        .status()
        .unwrap();
    assert!(dump.success(), "criu dump {extra:?} failed");
}

/// `criu restore --restore-detached` (with `extra` options) of `images`, by
/// hand; the restored PID.
fn criu_restore(images: &Path, extra: &[&str]) -> i32 {
    let pidfile = images.join("pid");
    let restore = Command::new("criu")
        .arg("restore")
        .args(extra)
        .args(["--restore-detached", "-o", "restore.log", "--pidfile"])
        .arg(&pidfile)
        .arg("-D")
        .arg(images)
        .status()
        .unwrap();
    assert!(restore.success(), "criu restore {extra:?} failed");
    std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The floor: dump and restore by hand with the CRIU CLI, same kind of job.
fn floor_ms(dir: &Path, script: &str, mib: u64) -> f64 {
    let ready = dir.join(format!("floor-{mib}.ready"));
    let _ = std::fs::remove_file(&ready);
    let mut unshare = Command::new("unshare")
        .args(["--pid", "--fork"])
        .arg(bin("openmosix-jobinit"))
        .arg("--")
        .args(["python3", script])
        .arg(&ready)
        .arg(mib.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare");
    wait_ready(&ready);
    let root: i32 = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        unshare.id(),
        unshare.id()
    ))
    .unwrap()
    .split_whitespace()
    .next()
    .unwrap()
    .parse()
    .unwrap();
    let images = dir.join(format!("floor-{mib}"));
    let _ = std::fs::remove_dir_all(&images);
    std::fs::create_dir(&images).unwrap();
    let t = Instant::now();
    criu_dump(&images, root, &[]);
    let restored = criu_restore(&images, &[]);
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let _ = unshare.wait();
    // SAFETY: the process this benchmark just restored.
    unsafe { libc::kill(restored, libc::SIGKILL) };
    let _ = std::fs::remove_dir_all(&images);
    ms
}

#[tokio::main]
async fn main() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(euid == 0, "run as root (CRIU and network namespaces)");
    let dir = unique_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), "bench-migration");
    let script = dir.join("holder.py");
    std::fs::write(&script, HOLDER).unwrap();
    let script_s = script.display().to_string();
    let lab = TestLab::up("bm", 99, 2);
    let home = lab.client(1).await;
    // The baseline of the pages path: the same pre-copy moves with the
    // memory inside the agents' SSH session instead of the direct link.
    let ssh_lab = TestLab::up_with("bs", 135, 2, &["--agent-arg=--pages-link=ssh"]);
    let ssh_home = ssh_lab.client(1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "== a job migrated between two lab nodes, each mode, vs the CRIU CLI floor (medians of 9 up to 64 MiB, of {RUNS} above) =="
    );
    println!(
        "   (postcopy and precopy: memory on the direct sealed link; precopy/ssh: the same pre-copy with the memory in the SSH session)"
    );
    println!(
        "{:>6} {:>11} {:>9} {:>9} {:>11} {:>9} {:>11} {:>9} {:>10} {:>9} {:>11} {:>9}",
        "MiB",
        "mode",
        "image MiB",
        "dump ms",
        "transfer ms",
        "restore ms",
        "freeze ms",
        "total ms",
        "released",
        "floor ms",
        "freeze/flr",
        "total/flr"
    );
    // BENCH_SIZES=16,256 measures only those sizes.
    let sizes: Vec<u64> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| SIZES.to_vec());
    for mib in sizes {
        let mut by_mode = moves(&home, &dir, &script_s, mib, &["postcopy", "precopy"], "").await;
        by_mode.extend(moves(&ssh_home, &dir, &script_s, mib, &["precopy"], "/ssh").await);
        let floors: Vec<f64> = (0..runs(mib))
            .map(|_| floor_ms(&dir, &script_s, mib))
            .collect();
        let floor = median(floors);
        for (mode, reports) in &by_mode {
            let m = |f: fn(&MigrationReport) -> u64| {
                median(reports.iter().map(|r| f(r) as f64).collect())
            };
            let freeze = m(|r| r.freeze_ms);
            let total = m(|r| r.total_ms);
            println!(
                "{:>6} {:>11} {:>9.1} {:>9.0} {:>11.0} {:>9.0} {:>11.0} {:>9.0} {:>10.0} {:>9.0} {:>10.2}x {:>8.2}x",
                mib,
                mode,
                m(|r| r.bytes) / 1048576.0,
                m(|r| r.dump_ms),
                m(|r| r.transfer_ms),
                m(|r| r.restore_ms),
                freeze,
                total,
                m(|r| r.released_ms),
                floor,
                freeze / floor,
                total / floor
            );
        }
    }
    singles(&lab, &home, &dir, &script_s).await;
    drop((home, ssh_home));
    drop((lab, ssh_lab));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Spawns a job of `mib` MiB on node 1 of `home`'s lab and moves it between
/// nodes 1 and 2, [`runs`] times in each of `modes`; the reports by mode
/// (its name followed by `suffix`). The job is killed afterwards.
async fn moves(
    home: &hpc::client::Client,
    dir: &Path,
    script_s: &str,
    mib: u64,
    modes: &[&str],
    suffix: &str,
) -> Vec<(String, Vec<MigrationReport>)> {
    let ready: PathBuf = dir.join(format!("job-{mib}{}.ready", suffix.replace('/', "-")));
    let job: JobInfo = home
        .call(
            methods::PROC_SPAWN,
            SpawnParams {
                argv: vec![
                    "python3".into(),
                    script_s.to_string(),
                    ready.display().to_string(),
                    mib.to_string(),
                ],
                cwd: dir.display().to_string(),
                env: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())],
                uid: 0,
                gid: 0,
                stdout: None,
                stderr: None,
                lock: false,
                decay: None,
            },
        )
        .await
        .expect("spawn");
    wait_ready(&ready);
    let mut by_mode: Vec<(String, Vec<MigrationReport>)> = Vec::new();
    let mut at = 1;
    for &mode in modes {
        let mut reports: Vec<MigrationReport> = Vec::new();
        for _ in 0..runs(mib) {
            let to = if at == 1 { "2" } else { "1" };
            let v = home
                .call_value_within(
                    methods::PROC_MIGRATE,
                    json!({ "pid": job.home_pid, "to": to, "mode": mode }),
                    Duration::from_secs(600),
                )
                .await
                .expect("migrate");
            at = if at == 1 { 2 } else { 1 };
            reports.push(serde_json::from_value(v).unwrap());
        }
        by_mode.push((format!("{mode}{suffix}"), reports));
    }
    let _ = home
        .call_value(
            methods::PROC_SIGNAL,
            json!({ "pid": job.home_pid, "signal": "KILL" }),
        )
        .await;
    by_mode
}

/// The floor of a single process: the same plain process checkpointed
/// (`--shell-job`) and restored by hand with the CRIU CLI on one machine.
fn single_floor_ms(dir: &Path, script: &str, mib: u64) -> f64 {
    let ready = dir.join(format!("single-floor-{mib}.ready"));
    let _ = std::fs::remove_file(&ready);
    let mut child = Command::new("python3")
        .arg(script)
        .arg(&ready)
        .arg(mib.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    wait_ready(&ready);
    let pid = child.id() as i32;
    let images = dir.join(format!("single-floor-{mib}"));
    let _ = std::fs::remove_dir_all(&images);
    std::fs::create_dir(&images).unwrap();
    let t = Instant::now();
    criu_dump(&images, pid, &["--shell-job"]);
    let dumped = t.elapsed();
    // Its PID must be free again before it can be restored on this kernel.
    let _ = child.wait();
    let t = Instant::now();
    criu_restore(&images, &["--shell-job"]);
    let ms = (dumped + t.elapsed()).as_secs_f64() * 1000.0;
    // SAFETY: the process this benchmark just restored.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = std::fs::remove_dir_all(&images);
    ms
}

/// CPU ticks (user + system) of a process or thread stat file.
fn ticks(stat: &Path) -> u64 {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    let rest = text.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Single processes (not started by an agent) moving on their own, with
/// their deputy at home; then what an idle deputy costs.
async fn singles(lab: &TestLab, home: &hpc::client::Client, dir: &Path, script: &str) {
    println!();
    println!(
        "== a single plain process moving on its own (deputy at home) vs the CRIU CLI floor for it (medians of {RUNS}) =="
    );
    println!(
        "{:>6} {:>9} {:>11} {:>11} {:>10} {:>10} {:>11} {:>7}",
        "MiB", "dump ms", "transfer ms", "restore ms", "freeze ms", "total ms", "floor ms", "ratio"
    );
    let mut last_deputy = None;
    for mib in [16u64, 64, 256] {
        let ready = dir.join(format!("single-{mib}.ready"));
        let _ = std::fs::remove_file(&ready);
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/om-{}-1", lab.name))
            .args(["python3", script])
            .arg(&ready)
            .arg(mib.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        testkit::without_inherited_fds(&mut cmd);
        let child = cmd.spawn().expect("nsenter python3");
        wait_ready(&ready);
        let pid = child.id() as i32;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        home.call_value(
            methods::PROC_WRITE,
            json!({ "pid": pid, "field": "lock", "value": 0 }),
        )
        .await
        .expect("unlock");
        let mut reports: Vec<MigrationReport> = Vec::new();
        for i in 0..RUNS {
            let to = if i % 2 == 0 { "2" } else { "home" };
            let v = home
                .call_value_within(
                    methods::PROC_MIGRATE,
                    json!({ "pid": pid, "to": to }),
                    Duration::from_secs(600),
                )
                .await
                .expect("migrate a single process");
            reports.push(serde_json::from_value(v).unwrap());
        }
        let floors: Vec<f64> = (0..RUNS)
            .map(|_| single_floor_ms(dir, script, mib))
            .collect();
        let m =
            |f: fn(&MigrationReport) -> u64| median(reports.iter().map(|r| f(r) as f64).collect());
        let freeze = m(|r| r.freeze_ms);
        let floor = median(floors);
        println!(
            "{:>6} {:>9.0} {:>11.0} {:>11.0} {:>10.0} {:>10.0} {:>11.0} {:>6.2}x",
            mib,
            m(|r| r.dump_ms),
            m(|r| r.transfer_ms),
            m(|r| r.restore_ms),
            freeze,
            m(|r| r.total_ms),
            floor,
            freeze / floor
        );
        if mib == 256 {
            last_deputy = Some((pid, child));
        } else {
            let _ = home
                .call_value(
                    methods::PROC_SIGNAL,
                    json!({ "pid": pid, "signal": "KILL" }),
                )
                .await;
            let mut child = child;
            let _ = child.wait();
        }
    }
    // The 256 MiB process away (after an odd number of moves it is on node
    // 2), its deputy idle at home for 10 s: its own CPU, its memory, and the
    // CPU of the agent's thread that keeps deputies.
    let Some((pid, mut child)) = last_deputy else {
        return;
    };
    let agent = lab.agent_pid(1);
    let keeper = std::fs::read_dir(format!("/proc/{agent}/task"))
        .unwrap()
        .flatten()
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim().starts_with("openmosixd-depu"))
        })
        .map(|t| t.path().join("stat"))
        .expect("the deputy keeper thread");
    let deputy_stat = PathBuf::from(format!("/proc/{pid}/stat"));
    let (d0, k0) = (ticks(&deputy_stat), ticks(&keeper));
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let secs = t.elapsed().as_secs_f64();
    let (d1, k1) = (ticks(&deputy_stat), ticks(&keeper));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    println!();
    println!(
        "idle deputy of a 256 MiB process over {secs:.0} s: its CPU {} ticks ({:.3} % of a core), its RSS {rss}; the agent's deputy keeper {} ticks ({:.3} % of a core; a tick is {:.0} ms); baseline: the process itself, were it not moved, would hold 256 MiB here",
        d1 - d0,
        (d1 - d0) as f64 / hz / secs * 100.0,
        k1 - k0,
        (k1 - k0) as f64 / hz / secs * 100.0,
        1000.0 / hz
    );
    let _ = home
        .call_value(
            methods::PROC_SIGNAL,
            json!({ "pid": pid, "signal": "KILL" }),
        )
        .await;
    let _ = child.wait();
}
