//! The terminal tools against a real lab: `mps` beside `ps` on the same
//! processes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use hpc::model::ProcessInfo;
use testkit::{TestLab, bin, migrate, spawn_sleep, wait_for};

/// A process started in a lab node's network namespace, killed when dropped.
struct InNode(Child);

impl InNode {
    fn start(lab: &TestLab, node: u32, argv: &[&str]) -> Self {
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/om-{}-{node}", lab.name))
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nsenter");
        Self(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for InNode {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mps(lab: &TestLab, node: u32, args: &[&str]) -> Output {
    Command::new(bin("mps"))
        .arg("--socket")
        .arg(lab.socket(node))
        .args(args)
        .output()
        .expect("mps")
}

fn ps(args: &[&str]) -> String {
    let out = Command::new("ps").args(args).output().expect("ps");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(out: &Output) -> String {
    assert!(
        out.status.success(),
        "mps failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rows of a `ps`-style table by PID: the first `fixed` columns and
/// the command (the rest of the line).
fn table(out: &str, fixed: usize, pid_col: usize) -> BTreeMap<i32, (Vec<String>, String)> {
    let mut rows = BTreeMap::new();
    for line in out.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() <= fixed {
            continue;
        }
        let Ok(pid) = cols[pid_col].parse::<i32>() else {
            continue;
        };
        let head: Vec<String> = cols[..fixed].iter().map(|s| s.to_string()).collect();
        rows.insert(pid, (head, cols[fixed..].join(" ")));
    }
    rows
}

/// The PIDs in the network namespace of lab node `node` now.
fn pids_in_node(lab: &TestLab, node: u32) -> BTreeSet<i32> {
    let ns = std::fs::metadata(format!("/run/netns/om-{}-{node}", lab.name))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .expect("the node's netns");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) == ns)
        })
        .collect()
}

#[tokio::test]
async fn mps_aux_and_ef_list_what_ps_lists_with_the_node_each_process_runs_on() {
    let lab = TestLab::up("ps", 130, 2);
    lab.settled(2, Duration::from_secs(60)).await;
    let home = lab.client(1).await;
    let sleeper = InNode::start(&lab, 1, &["sleep", "3001"]);
    let threaded = InNode::start(
        &lab,
        1,
        &[
            "python3",
            "-c",
            "import threading,time; threading.Thread(target=time.sleep,args=(3002,)).start(); time.sleep(3002)",
        ],
    );
    // A job of node 1 that runs on node 2: node 1 lists it under its home PID.
    let job = spawn_sleep(&home, 3003).await;
    migrate(&home, job.pid, "2").await.expect("to node 2");
    let ours = [sleeper.pid(), threaded.pid()];
    let listed = wait_for(Duration::from_secs(10), || async {
        let out = text(&mps(&lab, 1, &["aux"]));
        let rows = table(&out, 11, 1);
        // (Once the second thread runs: a row is up to a sampling pass old.)
        let threads = rows
            .get(&threaded.pid())
            .is_some_and(|(r, _)| r[8].contains('l'));
        (threads
            && ours
                .iter()
                .all(|p| rows.get(p).is_some_and(|(_, cmd)| !cmd.starts_with('['))))
        .then_some(())
    })
    .await;
    assert!(listed.is_some(), "mps never listed {ours:?}");

    // `mps aux` beside `ps aux`: USER PID NODE %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND.
    let mine = table(&text(&mps(&lab, 1, &["aux"])), 11, 1);
    let theirs = table(&ps(&["aux"]), 10, 1);
    let here = pids_in_node(&lab, 1);
    let agent = lab.agent_pid(1);
    for pid in ours.iter().copied().chain([agent]) {
        assert!(here.contains(&pid), "{pid} runs in node 1");
        let (m, mcmd) = mine
            .get(&pid)
            .unwrap_or_else(|| panic!("mps aux lists {pid}"));
        let (p, pcmd) = theirs
            .get(&pid)
            .unwrap_or_else(|| panic!("ps aux lists {pid}"));
        assert_eq!(mcmd, pcmd, "the command of {pid}");
        assert_eq!(m[0], p[0], "the user of {pid}");
        assert_eq!(m[2], "1", "{pid} runs on node 1");
        assert_eq!(m[7], p[6], "the TTY of {pid}");
        assert_eq!(m[9], p[8], "the START of {pid}");
        if pid != agent {
            // (The agent's own figures move between the two reads.)
            assert_eq!(m[5], p[4], "the VSZ of {pid}");
            assert_eq!(m[8], p[7], "the STAT of {pid}");
        }
    }
    assert!(
        mine[&threaded.pid()].0[8].contains('l'),
        "a threaded process is marked l"
    );
    // Every process of node 1 that both saw is the same process.
    for (pid, (_, cmd)) in mine.iter().filter(|(p, _)| here.contains(p)) {
        if let Some((_, theirs)) = theirs.get(pid) {
            assert_eq!(cmd, theirs, "the command of {pid}");
        }
    }
    // No process of another node, and the job away under its home PID.
    assert!(
        !mine.contains_key(&lab.agent_pid(2)),
        "node 2's agent is not node 1's"
    );
    let (row, cmd) = &mine[&job.pid];
    assert_eq!((row[2].as_str(), cmd.as_str()), ("2", "sleep 3003"));

    // `mps -ef` beside `ps -ef`: UID PID PPID NODE C STIME TTY TIME CMD.
    let mine = table(&text(&mps(&lab, 1, &["-ef"])), 8, 1);
    let theirs = table(&ps(&["-ef"]), 7, 1);
    for pid in ours.iter().copied().chain([agent]) {
        let (m, mcmd) = &mine[&pid];
        let (p, pcmd) = &theirs[&pid];
        assert_eq!(mcmd, pcmd);
        assert_eq!(
            (&m[0], &m[2], &m[3]),
            (&p[0], &p[2], &"1".to_string()),
            "UID, PPID, NODE of {pid}"
        );
        assert_eq!((&m[5], &m[6]), (&p[4], &p[5]), "STIME and TTY of {pid}");
    }

    // Selections, JSON and a bad option.
    let one = table(
        &text(&mps(&lab, 1, &["-p", &sleeper.pid().to_string()])),
        4,
        0,
    );
    assert_eq!(one.keys().copied().collect::<Vec<_>>(), vec![sleeper.pid()]);
    assert_eq!(
        one[&sleeper.pid()].1,
        "sleep",
        "plain format shows the program's name"
    );
    let json = text(&mps(
        &lab,
        1,
        &["--json", "-u", "root", "-p", &job.pid.to_string()],
    ));
    let rows: Vec<ProcessInfo> = serde_json::from_str(&json).expect("mps --json");
    assert!(
        rows.iter().all(|r| r.user == "root") && rows.len() >= 3,
        "{} rows",
        rows.len()
    );
    let away = rows
        .iter()
        .find(|r| r.pid == job.pid)
        .expect("the job in --json");
    assert_eq!((away.home, away.where_), (1, 2));
    let bad = mps(&lab, 1, &["-Z"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unsupported option -Z"));
    let down = Command::new(bin("mps"))
        .args([
            "--socket",
            "/run/openmosix-lab/no-such-lab/agent.sock",
            "aux",
        ])
        .output()
        .expect("mps");
    assert_eq!(down.status.code(), Some(2), "an unreachable agent");
    assert!(!down.stderr.is_empty());
}
