//! openmosixcollector against a real lab cluster (root): every node sampled, a
//! node stopped mid-run recorded down then up, the process history of every node
//! across a real CRIU migration, `-n`/`-r`/`-k` through the command line, and
//! SIGKILL at random moments (20 times) leaving an intact history that holds
//! every tick the collector reported committed.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::{Duration, Instant};

use collector::daemon::now_ms;
use history::query::History;
use history::store::{self, HistoryRef, Location};
use hpc::protocol::methods;
use serde_json::json;
use testkit::{TestCollector, TestLab, spawn_sleep, wait_for};

fn base() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

fn current(c: &TestCollector) -> HistoryRef {
    HistoryRef {
        location: Location::Sqlite(c.db()),
        id: 1,
    }
}

fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions; the PID is the lab's agent.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "signal {sig} to {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_nodes_and_processes_across_a_migration_and_an_outage() {
    let lab = TestLab::up("co", 91, 3);
    let admin = lab.client(1).await;
    let job = spawn_sleep(&admin, 600).await;
    let mut col = TestCollector::start(base(), &lab, "500ms", &[]);

    // Every node is sampled and up.
    let h = current(&col);
    let all_up = wait_for(Duration::from_secs(20), || async {
        let hist = History::open(&h).await.ok()?;
        let now = now_ms();
        let per_node = hist.samples_by_node(None, now - 1500, now).await.ok()?;
        hist.close().await;
        (per_node.len() == 3 && per_node.values().all(|s| s.iter().any(|x| x.up))).then_some(())
    })
    .await;
    assert!(all_up.is_some(), "three nodes up; log:\n{}", col.log_text());

    // A checkpoint through the command line.
    let out = col.cli(&["-n", "before the move"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before_move = now_ms();

    // A real migration 1 → 2, once node 1's gossip sees node 2.
    let gossip_up = wait_for(Duration::from_secs(30), || async {
        let nodes: Vec<hpc::model::NodeStatus> =
            admin.call(methods::CLUSTER_NODES, json!({})).await.ok()?;
        nodes
            .iter()
            .all(|n| n.status == hpc::model::Liveness::Up)
            .then_some(())
    })
    .await;
    assert!(gossip_up.is_some(), "node 1 sees every node up");
    let report: serde_json::Value = admin
        .call_value_within(
            methods::PROC_MIGRATE,
            json!({ "pid": job.home_pid, "to": "2" }),
            Duration::from_secs(120),
        )
        .await
        .expect("migrate");
    let new_pid = report["pid"].as_i64().expect("new PID") as i32;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_move = now_ms();

    // Node 3's agent stops answering (SIGSTOP), then comes back (SIGCONT).
    let agent3 = lab.agent_pid(3);
    send_signal(agent3, libc::SIGSTOP);
    let stopped_at = now_ms();
    tokio::time::sleep(Duration::from_secs(4)).await;
    send_signal(agent3, libc::SIGCONT);
    let back = wait_for(Duration::from_secs(40), || async {
        let hist = History::open(&h).await.ok()?;
        let ev = hist.node_events(Some(3), stopped_at, i64::MAX).await.ok()?;
        hist.close().await;
        (ev.len() >= 2 && ev.last().is_some_and(|e| e.up)).then_some(ev)
    })
    .await
    .unwrap_or_else(|| panic!("node 3 down then up; log:\n{}", col.log_text()));
    assert!(!back[0].up && !back[0].reason.is_empty(), "{back:?}");

    // The job ends: killed through its home.
    admin
        .call_value(
            methods::PROC_SIGNAL,
            json!({ "pid": job.home_pid, "signal": "KILL" }),
        )
        .await
        .expect("kill job");
    let killed_at = now_ms();
    // Its end is recorded, then its exit code once the host told the home.
    let exit = wait_for(Duration::from_secs(30), || async {
        let hist = History::open(&h).await.ok()?;
        let rec = hist.find_process(1, job.home_pid).await.ok()?;
        hist.close().await;
        rec.first().and_then(|p| p.exit_code)
    })
    .await;
    assert_eq!(
        exit,
        Some(137),
        "KILL; log:\n{}",
        col.log_text()
            .lines()
            .filter(|l| !l.contains("committed tick"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // -r archives; -k stops cleanly.
    let out = col.cli(&["-r"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = col.cli(&["-k"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        col.wait_exit(Duration::from_secs(10)).is_some(),
        "stopped by -k"
    );
    assert!(col.log_text().contains("collector stopped"));

    let list = store::list_histories(&Location::Sqlite(col.db()))
        .await
        .unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let archive = History::open(&list[0].history).await.unwrap();
    let (t0, t1) = archive.span().await.unwrap().expect("samples");

    // Every node has samples; node 3 was down while stopped and up after.
    let per_node = archive.samples_by_node(None, t0, t1).await.unwrap();
    assert_eq!(per_node.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    let n3 = &per_node[&3];
    assert!(n3.iter().any(|s| !s.up && s.t_ms > stopped_at));
    assert!(n3.last().unwrap().up);
    let st = archive.node_stats(1, t0, t1).await.unwrap();
    assert_eq!(st.samples, st.up_samples);
    assert!(st.load.is_some() && st.used_mem_kib.is_some());

    // The job: on node 1 before the move, on node 2 after, gone after the kill.
    let is_job = |p: &history::query::ProcessAt| {
        p.process.start.home == 1 && p.process.start.home_pid == job.home_pid
    };
    let at = |node, t| {
        let a = &archive;
        async move { a.processes_at(Some(node), t).await.unwrap() }
    };
    let p1 = at(1, before_move).await;
    let rec = p1
        .iter()
        .find(|p| is_job(p))
        .expect("job on node 1 before the move");
    assert!(
        rec.process.start.cmd.contains("sleep 600"),
        "{:?}",
        rec.process.start.cmd
    );
    assert!(!at(2, before_move).await.iter().any(is_job));
    let p2 = at(2, after_move).await;
    let moved = p2
        .iter()
        .find(|p| is_job(p))
        .expect("job on node 2 after the move");
    assert_eq!(moved.pid, new_pid);
    assert!(!at(1, after_move).await.iter().any(is_job));
    let moves = archive.moves(rec.process.start.id).await.unwrap();
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!((moves[0].from, moves[0].to), (1, 2));
    assert!(
        moves[0].freeze_ms.is_some() && moves[0].duration_ms.is_some(),
        "{moves:?}"
    );
    let ended = archive.find_process(1, job.home_pid).await.unwrap();
    let ended_ms = ended[0].ended_ms.expect("job ended");
    assert_eq!(ended[0].exit_code, Some(137));
    assert!(
        ended_ms >= killed_at - 1000 && ended_ms <= killed_at + 3000,
        "{ended_ms} vs {killed_at}"
    );
    // Other nodes' processes are history too (each node's agent at least).
    assert!(!at(3, after_move).await.is_empty());

    let cps = archive.checkpoints(t0, t1).await.unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].label, "before the move");
    archive.close().await;

    // The new history carries the processes still running.
    let newest = History::open(&list[1].history).await.unwrap();
    assert!(
        !newest
            .processes_at(None, now_ms())
            .await
            .unwrap()
            .is_empty()
    );
    newest.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_nothing_committed() {
    let lab = TestLab::up("ck", 90, 2);
    let mut col = TestCollector::start(base(), &lab, "100ms", &[]);
    let mut rng_state = u64::from(std::process::id()) | 1;
    for round in 0..20 {
        // Let it commit a few ticks, then kill it at an arbitrary moment.
        let deadline = Instant::now() + Duration::from_secs(20);
        let before = col.committed_ticks().len();
        while col.committed_ticks().len() < before + 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        std::thread::sleep(Duration::from_millis(rng_state % 250));
        col.kill();

        let check = store::integrity_check(&col.db())
            .await
            .expect("integrity_check");
        assert_eq!(check, "ok", "round {round}");
        let committed = col.committed_ticks();
        let hist = History::open(&current(&col))
            .await
            .expect("open after kill");
        let stored: std::collections::HashSet<i64> = hist
            .samples(1, 0, i64::MAX)
            .await
            .expect("read after kill")
            .iter()
            .map(|s| s.t_ms)
            .collect();
        hist.close().await;
        let missing: Vec<&i64> = committed.iter().filter(|t| !stored.contains(t)).collect();
        assert!(
            missing.is_empty(),
            "round {round}: committed ticks missing: {missing:?}"
        );
        if round < 19 {
            col.restart();
        }
    }
    assert!(col.committed_ticks().len() >= 60);
}

/// `-d` forks a daemon that holds the PID file, a second `-d` is refused,
/// `-n` without a daemon says so, `-k` stops it, and no argument prints help.
#[test]
fn daemon_mode_pid_file_and_kill() {
    let dir = testkit::unique_dir(base(), "collector-d");
    let key = dir.join("key");
    testkit::new_key(&key);
    let flag = |name: &str| dir.join(name).display().to_string();
    let common = [
        "--seed".to_string(),
        "127.0.0.1:1".into(),
        "--key".into(),
        flag("key"),
        "--db".into(),
        flag("history/current.db"),
        "--pid-file".into(),
        flag("collector.pid"),
        "--control".into(),
        flag("collector.sock"),
        "--query-socket".into(),
        "none".into(),
        "--log-file".into(),
        flag("log/collector.log"),
        "--interval".into(),
        "200ms".into(),
        "--archive-every".into(),
        "1s".into(),
    ];
    let run = |args: &[&str]| {
        std::process::Command::new(testkit::bin("openmosixcollector"))
            .args(args)
            .args(&common)
            .output()
            .expect("run openmosixcollector")
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    let help = std::process::Command::new(testkit::bin("openmosixcollector"))
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(text(&help).contains("-n [LABEL]"), "{}", text(&help));

    let out = run(&["-n", "x"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not running"), "{}", text(&out));

    let out = run(&["-d"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("started (PID"), "{}", text(&out));
    let pid: i32 = std::fs::read_to_string(dir.join("collector.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let again = run(&["-d"]);
    assert!(!again.status.success());
    assert!(
        text(&again).contains(&format!("already running (PID {pid})")),
        "{}",
        text(&again)
    );

    let out = run(&["-n", "checkpoint from -n"]);
    assert!(out.status.success(), "{}", text(&out));
    // --archive-every 1s: the history is archived on its own.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let archives = std::fs::read_dir(dir.join("history"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("current-"))
        .count();
    assert!(archives >= 1, "automatic archives: {archives}");
    let out = run(&["-k"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!dir.join("collector.pid").exists());
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains(") Z"),
        "daemon gone: {state}"
    );
    let log = std::fs::read_to_string(dir.join("log/collector.log")).unwrap();
    assert!(log.contains("collector stopped"), "{log}");
    let out = run(&["-k"]);
    assert!(!out.status.success() && text(&out).contains("not running"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every move is in the history, however fast they come: a job hops ten
/// times around a lab, 200 ms apart, while the collector samples only every
/// second and is killed and restarted in the middle (three hops happen while
/// it is down). The history holds exactly the ten moves, in order, each with
/// the figures its migration reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_fast_hops_are_all_in_the_history_across_a_collector_restart() {
    let lab = TestLab::up("ch", 84, 3);
    let admin = lab.client(1).await;
    let job = spawn_sleep(&admin, 600).await;
    let mut col = TestCollector::start(base(), &lab, "1s", &[]);
    let h = current(&col);
    let seen = wait_for(Duration::from_secs(20), || async {
        let hist = History::open(&h).await.ok()?;
        let rec = hist.find_process(1, job.home_pid).await.ok()?;
        hist.close().await;
        (!rec.is_empty()).then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "the job is recorded; log:\n{}",
        col.log_text()
    );
    // Every node sees every other up (each hop is asked of the node the job
    // runs on, which checks its target).
    lab.settled(3, Duration::from_secs(30)).await;

    let targets = [2, 3, 1, 2, 3, 1, 2, 3, 1, 2];
    let mut reports = Vec::new();
    for (i, to) in targets.iter().enumerate() {
        if i == 5 {
            col.kill();
        }
        if i == 8 {
            col.restart();
        }
        let r: hpc::protocol::MigrationReport = admin
            .call_within(
                methods::PROC_MIGRATE,
                hpc::protocol::MigrateParams {
                    pid: job.home_pid,
                    to: to.to_string(),
                    force: false,
                    // Both modes, each recorded as such.
                    mode: if i % 2 == 0 {
                        hpc::protocol::MigrationMode::Postcopy
                    } else {
                        hpc::protocol::MigrationMode::Precopy
                    },
                },
                Duration::from_secs(120),
            )
            .await
            .unwrap_or_else(|e| panic!("hop {i} to node {to}: {e}"));
        assert_eq!(r.to, *to);
        reports.push(r);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let moves = wait_for(Duration::from_secs(30), || async {
        let hist = History::open(&h).await.ok()?;
        let rec = hist.find_process(1, job.home_pid).await.ok()?;
        let moves = hist.moves(rec.first()?.start.id).await.ok()?;
        hist.close().await;
        (moves.len() >= 10).then_some((rec, moves))
    })
    .await;
    let log = col.log_text();
    let (rec, moves) = moves.unwrap_or_else(|| panic!("ten moves recorded; log:\n{log}"));
    assert_eq!(rec.len(), 1, "one process across the restart: {rec:?}");
    assert_eq!(moves.len(), 10, "{moves:?}");
    let mut from = 1;
    for (i, (m, r)) in moves.iter().zip(&reports).enumerate() {
        assert_eq!((m.from, m.to, m.pid), (from, r.to, r.pid), "hop {i}: {m:?}");
        assert_eq!(m.t_ms, r.at_ms as i64, "hop {i}");
        assert_eq!(m.freeze_ms, Some(r.freeze_ms as i64), "hop {i}");
        assert_eq!(m.duration_ms, Some(r.total_ms as i64), "hop {i}");
        assert_eq!(m.bytes, Some(r.bytes as i64), "hop {i}");
        assert_eq!(m.mode, Some(r.mode), "hop {i}");
        if r.mode == hpc::protocol::MigrationMode::Postcopy {
            assert_eq!(m.released_ms, Some(r.released_ms as i64), "hop {i}");
            assert_eq!(m.pulled_bytes, Some(r.pulled_bytes as i64), "hop {i}");
        } else {
            assert_eq!((m.released_ms, m.pulled_bytes), (None, None), "hop {i}");
        }
        from = r.to;
    }
    // And never twice: nothing more arrives on later ticks.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let hist = History::open(&h).await.unwrap();
    assert_eq!(hist.moves(rec[0].start.id).await.unwrap().len(), 10);
    hist.close().await;
    let _ = admin
        .call_value(
            methods::PROC_SIGNAL,
            json!({ "pid": job.home_pid, "signal": "KILL" }),
        )
        .await;
}

/// A group made for a test, removed at the end even when the test fails.
struct TestGroup(String);

impl TestGroup {
    fn create(tag: &str) -> Self {
        let name = format!("om{tag}{}", std::process::id());
        let groupadd = hpc::paths::system_program("groupadd").expect("groupadd is installed");
        let ok = std::process::Command::new(groupadd)
            .args(["--system", &name])
            .status()
            .expect("run groupadd");
        assert!(ok.success(), "groupadd {name}");
        Self(name)
    }

    fn add(&self, user: &testkit::TestUser) {
        let usermod = hpc::paths::system_program("usermod").expect("usermod is installed");
        let ok = std::process::Command::new(usermod)
            .args(["-aG", &self.0, &user.name])
            .status()
            .expect("run usermod");
        assert!(ok.success(), "usermod -aG {} {}", self.0, user.name);
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        if let Some(groupdel) = hpc::paths::system_program("groupdel") {
            let _ = std::process::Command::new(groupdel).arg(&self.0).status();
        }
    }
}

/// A directory under /run (every user can reach it), removed at the end.
struct RunDir(std::path::PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends one query line to the socket as `user` (with perl, a client that is
/// not ours) and returns the answer line.
fn ask_as(user: &testkit::TestUser, socket: &Path, query: &str) -> String {
    let script = "use IO::Socket::UNIX; \
        my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $ARGV[0]) or die \"connect: $!\\n\"; \
        print $s \"$ARGV[1]\\n\"; my $l = <$s>; print $l;";
    let out = user
        .command("/usr/bin/perl")
        .args(["-e", script])
        .arg(socket)
        .arg(query)
        .output()
        .expect("run perl");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A desktop user who may not read the history files reads the live history
/// through the collector's query socket when it is in the reader group; a
/// user outside the group is refused with the reason; the analyzer falls
/// back to the socket when it cannot open the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_group_members_read_the_history_through_the_collector() {
    let lab = TestLab::up("cq", 85, 2);
    let group = TestGroup::create("rd");
    let reader = testkit::TestUser::create("qa");
    let outsider = testkit::TestUser::create("qb");
    group.add(&reader);
    let run = RunDir(std::path::PathBuf::from(format!(
        "/run/openmosix-test-history-{}",
        std::process::id()
    )));
    let socket = run.0.join("history.sock");
    let socket_arg = socket.display().to_string();
    let col = TestCollector::start(
        base(),
        &lab,
        "500ms",
        &["--query-socket", &socket_arg, "--reader-group", &group.0],
    );
    let h = current(&col);
    let sampled = wait_for(Duration::from_secs(20), || async {
        let hist = History::open(&h).await.ok()?;
        let s = hist.span().await.ok()??;
        hist.close().await;
        (s.1 > s.0).then_some(())
    })
    .await;
    assert!(sampled.is_some(), "samples; log:\n{}", col.log_text());

    // The history file itself is closed to both users.
    let db = col.db().display().to_string();
    let direct = reader
        .command("/usr/bin/perl")
        .args([
            "-e",
            "open(my $f, '<', $ARGV[0]) or print \"denied\"; print \"\\n\";",
            &db,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&direct.stdout).trim(), "denied");

    // The reader asks the collector: the span and an overview of every node.
    let span = ask_as(&reader, &socket, r#"{"query":"span"}"#);
    assert!(span.contains(r#""answer":"span""#), "{span}");
    let now = now_ms();
    let overview = ask_as(
        &reader,
        &socket,
        &format!(
            r#"{{"query":"overview","from":{},"to":{now},"columns":100}}"#,
            now - 60_000
        ),
    );
    let parsed: history::remote::Answer =
        serde_json::from_str(overview.trim()).unwrap_or_else(|e| panic!("{e}: {overview}"));
    match parsed {
        history::remote::Answer::Overview(o) => {
            assert_eq!(o.nodes.keys().copied().collect::<Vec<_>>(), [1, 2])
        }
        other => panic!("{other:?}"),
    }
    // Someone outside the group is told why not.
    let refused = ask_as(&outsider, &socket, r#"{"query":"span"}"#);
    assert!(
        refused.contains("permission denied") && refused.contains(&group.0),
        "{refused}"
    );
    // A bad query is an error, not a crash.
    let bad = ask_as(&reader, &socket, r#"{"query":"drop tables"}"#);
    assert!(bad.contains("bad query"), "{bad}");

    // The analyzer reads through the collector when the database cannot be
    // opened (here: a path that does not exist on this side).
    let source = analyzer::Source::current_of(Location::Sqlite(run.0.join("elsewhere.db")))
        .with_socket(socket.clone());
    let reader_side = source.open().await.expect("open through the collector");
    assert!(reader_side.through_collector());
    let ov = reader_side.overview(now - 60_000, now, 200).await.unwrap();
    assert_eq!(ov.nodes.len(), 2);
    let listed = source.list().await.unwrap();
    assert_eq!(listed.len(), 1);
}
