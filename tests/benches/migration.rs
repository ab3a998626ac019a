//! Migration benchmark, one run, as root with real CRIU: a process holding
//! 16, 64, 256 and 1024 MiB is migrated between two nodes of a lab cluster by
//! the agents (checkpoint, transfer over the agents' SSH channel, restore,
//! commit), beside the floor measured in the same run: the same process
//! checkpointed and restored by hand with the CRIU command line on one machine
//! (`criu dump` + `criu restore`, no transfer at all). Target: the agents'
//! freeze within 1.25× the floor.
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
    let dump = Command::new("criu")
        .args(["dump", "-o", "dump.log", "-t", &root.to_string(), "-D"])
        .arg(&images)
        .status()
        .unwrap();
    assert!(dump.success(), "floor dump failed");
    let pidfile = images.join("pid");
    let restore = Command::new("criu")
        .args([
            "restore",
            "--restore-detached",
            "-o",
            "restore.log",
            "--pidfile",
        ])
        .arg(&pidfile)
        .arg("-D")
        .arg(&images)
        .status()
        .unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert!(restore.success(), "floor restore failed");
    let _ = unshare.wait();
    let restored: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
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
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("== migration between two lab nodes vs the CRIU CLI floor (medians of {RUNS}) ==");
    println!(
        "{:>6} {:>10} {:>9} {:>11} {:>11} {:>10} {:>10} {:>11} {:>7}",
        "MiB",
        "image MiB",
        "dump ms",
        "transfer ms",
        "restore ms",
        "freeze ms",
        "total ms",
        "floor ms",
        "ratio"
    );
    // BENCH_SIZES=16,256 measures only those sizes.
    let sizes: Vec<u64> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| SIZES.to_vec());
    for mib in sizes {
        let ready: PathBuf = dir.join(format!("job-{mib}.ready"));
        let job: JobInfo = home
            .call(
                methods::PROC_SPAWN,
                SpawnParams {
                    argv: vec![
                        "python3".into(),
                        script_s.clone(),
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
        let mut reports: Vec<MigrationReport> = Vec::new();
        for i in 0..RUNS {
            let to = if i % 2 == 0 { "2" } else { "1" };
            let v = home
                .call_value_within(
                    methods::PROC_MIGRATE,
                    json!({ "pid": job.home_pid, "to": to }),
                    Duration::from_secs(600),
                )
                .await
                .expect("migrate");
            reports.push(serde_json::from_value(v).unwrap());
        }
        let _ = home
            .call_value(
                methods::PROC_SIGNAL,
                json!({ "pid": job.home_pid, "signal": "KILL" }),
            )
            .await;
        let floors: Vec<f64> = (0..RUNS).map(|_| floor_ms(&dir, &script_s, mib)).collect();
        let m =
            |f: fn(&MigrationReport) -> u64| median(reports.iter().map(|r| f(r) as f64).collect());
        let freeze = m(|r| r.freeze_ms);
        let floor = median(floors);
        println!(
            "{:>6} {:>10.1} {:>9.0} {:>11.0} {:>11.0} {:>10.0} {:>10.0} {:>11.0} {:>6.2}x",
            mib,
            m(|r| r.bytes) / 1048576.0,
            m(|r| r.dump_ms),
            m(|r| r.transfer_ms),
            m(|r| r.restore_ms),
            freeze,
            m(|r| r.total_ms),
            floor,
            freeze / floor
        );
    }
    drop(home);
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
}
