//! Headless nodes against a real lab (issue 17): `mps` beside `ps` on the
//! same processes, and the agent's Prometheus endpoint during migrations,
//! checked by `promtool`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use hpc::model::ProcessInfo;
use testkit::{TestLab, bin, migrate, spawn_sleep, wait_for};
use tokio::io::AsyncWriteExt;

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

/// `curl` run in lab node `node`'s network namespace: the status code and
/// the body.
fn curl_in(lab: &TestLab, node: u32, args: &[&str]) -> (String, String) {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/om-{}-{node}", lab.name))
        .args(["curl", "-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

/// The value of the sample `series` (name and labels as printed).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

const METRICS: &str = "http://127.0.0.1:9466/metrics";

#[tokio::test]
async fn the_metrics_endpoint_counts_migrations_as_they_happen_and_passes_promtool() {
    // Node 1 serves its metrics on its own loopback, the default address.
    // Each session takes at most 4 channels at once.
    let lab = TestLab::up_with(
        "mt",
        131,
        2,
        &[
            "--node-arg=1:--metrics",
            "--node-arg=1:--max-channels=4",
            "--node-arg=2:--max-channels=4",
        ],
    );
    lab.settled(2, Duration::from_secs(60)).await;
    let home = lab.client(1).await;
    let (code, before) = curl_in(&lab, 1, &[METRICS]);
    assert_eq!(code, "200", "{before}");
    assert!(
        before
            .lines()
            .any(|l| l.starts_with("openmosix_node_info{node=\"1\",") && l.ends_with("} 1")),
        "{before}"
    );
    assert_eq!(
        sample(&before, "openmosix_cluster_nodes{state=\"up\"}"),
        2.0
    );
    assert_eq!(
        sample(&before, "openmosix_migration_freeze_seconds_count"),
        0.0
    );
    assert!(sample(&before, "openmosix_cpus") >= 1.0);
    assert!(sample(&before, "openmosix_memory_total_bytes") > 0.0);
    // Node 2 serves none.
    let (code, _) = curl_in(&lab, 2, &[METRICS]);
    assert_eq!(code, "000", "node 2 was not asked to serve metrics");

    // Scraped every 100 ms while a job moves to node 2 and back.
    let job = spawn_sleep(&home, 3004).await;
    let scrapes = {
        let lab_name = lab.name.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let scraper = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let out = Command::new("nsenter")
                    .arg(format!("--net=/run/netns/om-{lab_name}-1"))
                    .args(["curl", "-sf", "--max-time", "5", METRICS])
                    .output()
                    .expect("curl");
                assert!(out.status.success(), "a scrape failed during the moves");
                seen.push(String::from_utf8_lossy(&out.stdout).into_owned());
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        });
        let away = migrate(&home, job.pid, "2").await.expect("to node 2");
        let (_, during) = curl_in(&lab, 1, &[METRICS]);
        assert_eq!(sample(&during, "openmosix_processes{where=\"away\"}"), 1.0);
        let back = migrate(&home, job.pid, "home").await.expect("home");
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = scraper.join().expect("the scraper");
        (away, back, seen)
    };
    let (away, _back, seen) = scrapes;
    assert!(seen.len() >= 3, "{} scrapes", seen.len());
    // The counters only grow, scrape after scrape.
    let outs: Vec<f64> = seen
        .iter()
        .map(|t| {
            sample(
                t,
                "openmosix_migrations_out_total{cause=\"asked\",result=\"ok\"}",
            )
        })
        .collect();
    assert!(outs.windows(2).all(|w| w[0] <= w[1]), "{outs:?}");
    let (_, after) = curl_in(&lab, 1, &[METRICS]);
    assert_eq!(
        sample(
            &after,
            "openmosix_migrations_out_total{cause=\"asked\",result=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&after, "openmosix_migrations_in_total{result=\"landed\"}"),
        1.0
    );
    assert_eq!(
        sample(&after, "openmosix_migration_freeze_seconds_count"),
        1.0
    );
    let freeze = sample(&after, "openmosix_migration_freeze_seconds_sum");
    assert!(
        (freeze - away.freeze_ms as f64 / 1000.0).abs() < 0.002,
        "{freeze} s vs {} ms",
        away.freeze_ms
    );
    assert!(sample(&after, "openmosix_migration_out_bytes_total") >= away.bytes as f64);
    assert_eq!(sample(&after, "openmosix_processes{where=\"away\"}"), 0.0);
    // Node 1 moved the job and then forwarded the move home to node 2, all
    // on the one session it keeps open to node 2.
    assert_eq!(sample(&after, "openmosix_peer_sessions_total"), 1.0);
    // Many more moves on that session: each gives its channel back (a
    // session takes 4 at once), so none needs a session anew.
    for round in 0..6 {
        migrate(&home, job.pid, "2")
            .await
            .unwrap_or_else(|e| panic!("round {round}, to node 2: {e}"));
        migrate(&home, job.pid, "home")
            .await
            .unwrap_or_else(|e| panic!("round {round}, home: {e}"));
    }
    let (_, later) = curl_in(&lab, 1, &[METRICS]);
    assert_eq!(sample(&later, "openmosix_peer_sessions_total"), 1.0);
    assert_eq!(
        sample(
            &later,
            "openmosix_migrations_out_total{cause=\"asked\",result=\"ok\"}"
        ),
        7.0
    );

    // promtool reads it as valid exposition, with no lint complaints.
    let mut check = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/install-deps.sh installs it)");
    let mut stdin = check.stdin.take().unwrap();
    stdin.write_all(after.as_bytes()).await.unwrap();
    drop(stdin);
    let checked = check.wait_with_output().await.unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Anything but GET /metrics is answered with a clear refusal.
    assert_eq!(curl_in(&lab, 1, &["http://127.0.0.1:9466/"]).0, "404");
    assert_eq!(curl_in(&lab, 1, &["-X", "POST", METRICS]).0, "405");
    assert_eq!(curl_in(&lab, 1, &["-I", METRICS]).0, "200");
    let garbage = Command::new("nsenter")
        .arg(format!("--net=/run/netns/om-{}-1", lab.name))
        .args([
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/9466; printf 'garbage\\r\\n\\r\\n' >&3; head -1 <&3",
        ])
        .output()
        .expect("bash");
    assert_eq!(
        String::from_utf8_lossy(&garbage.stdout).trim(),
        "HTTP/1.1 400 Bad Request"
    );
}

/// A tmux server of its own (its own socket), running one program in a
/// window of a fixed size; killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(label: &str, width: u16, height: u16, argv: &[String]) -> Self {
        let socket = format!("om-{label}-{}", std::process::id());
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
            ])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .args(["-e", "TERM=xterm-256color"])
            .args(argv)
            .status()
            .expect("tmux (scripts/install-deps.sh installs it)");
        assert!(status.success(), "tmux new-session");
        Self { socket }
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        assert!(self.tmux(&args).status.success(), "send-keys {keys:?}");
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    fn alive(&self) -> bool {
        self.tmux(&["has-session", "-t", "t"]).status.success()
    }

    /// Waits until the screen satisfies `ok`; the screen, or a panic
    /// showing the last one.
    async fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let found = wait_for(Duration::from_secs(60), || async {
            let s = self.screen();
            ok(&s).then_some(s)
        })
        .await;
        found.unwrap_or_else(|| panic!("the screen never showed {what}:\n{}", self.screen()))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The node ids under mosmon's bars (the line of labels).
fn bar_labels(screen: &str) -> Vec<String> {
    screen
        .lines()
        .map(|l| l.trim_matches(|c: char| c == '│' || c.is_whitespace()))
        .filter(|l| {
            !l.is_empty()
                && l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.parse::<u32>().is_ok())
        })
        .filter(|l| {
            l.split_whitespace()
                .all(|w| w.parse::<u32>().is_ok() || w == "DOWN")
        })
        .map(str::to_string)
        .next_back()
        .map(|l| {
            let mut out: Vec<String> = Vec::new();
            let mut words = l.split_whitespace().peekable();
            while let Some(w) = words.next() {
                if words.peek() == Some(&"DOWN") {
                    words.next();
                    out.push(format!("{w} DOWN"));
                } else {
                    out.push(w.to_string());
                }
            }
            out
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn mosmon_draws_every_node_marks_a_down_one_and_its_keys_switch_the_view() {
    let lab = TestLab::up("mo", 132, 3);
    lab.settled(3, Duration::from_secs(60)).await;
    let mosmon = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![bin("mosmon").display().to_string(), "--socket".into()];
        v.push(lab.socket(1).display().to_string());
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let t = Tmux::start("mosmon", 100, 24, &mosmon(&[]));
    t.wait("a bar for each node", |s| {
        s.contains("mosmon: load") && bar_labels(s) == ["1", "2", "3"]
    })
    .await;
    t.keys(&["s"]);
    let s = t
        .wait("the speed view", |s| s.contains("mosmon: speed"))
        .await;
    assert!(
        s.contains("x2") || s.contains("x1") || s.lines().any(|l| l.contains('█')),
        "{s}"
    );
    t.keys(&["m"]);
    t.wait("the memory view", |s| {
        s.contains("mosmon: memory in use") && s.contains('M')
    })
    .await;
    t.keys(&["u"]);
    t.wait("the utilisation view", |s| {
        s.contains("mosmon: utilisation") && s.contains('%')
    })
    .await;
    t.keys(&["l"]);
    t.wait("the load view again", |s| s.contains("mosmon: load"))
        .await;

    // Node 3 cut off: marked down, hidden with `d`, counted with `t`.
    lab.set_link(3, false);
    t.wait("node 3 down", |s| bar_labels(s) == ["1", "2", "3 DOWN"])
        .await;
    t.keys(&["d"]);
    t.wait("node 3 hidden", |s| bar_labels(s) == ["1", "2"])
        .await;
    t.keys(&["t"]);
    t.wait("the totals", |s| s.contains("2 of 3 nodes up"))
        .await;

    // It follows the terminal's size.
    assert!(
        t.tmux(&["resize-window", "-t", "t", "-x", "40", "-y", "12"])
            .status
            .success()
    );
    let s = t
        .wait("the smaller window", |s| {
            s.lines().count() <= 12 && s.contains("mosmon: load") && bar_labels(s) == ["1", "2"]
        })
        .await;
    assert!(s.lines().all(|l| l.chars().count() <= 40), "{s}");
    t.keys(&["q"]);
    let gone = wait_for(Duration::from_secs(10), || async {
        (!t.alive()).then_some(())
    })
    .await;
    assert!(gone.is_some(), "q did not quit mosmon");

    // Without cursor control: plain text frames.
    let plain = Command::new(bin("mosmon"))
        .args([
            "--socket",
            &lab.socket(1).display().to_string(),
            "--count",
            "1",
            "-t",
        ])
        .env("TERM", "dumb")
        .output()
        .expect("mosmon");
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert!(
        text.contains("node    1 [") && text.contains("node    3 [") && text.contains("DOWN"),
        "{text}"
    );
    assert!(text.contains("2 of 3 nodes up"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no escape sequences in plain text"
    );
    let unreachable = Command::new(bin("mosmon"))
        .args([
            "--socket",
            "/run/openmosix-lab/none/agent.sock",
            "--count",
            "1",
        ])
        .output()
        .expect("mosmon");
    let text = String::from_utf8_lossy(&unreachable.stdout);
    assert!(text.contains("cannot reach the agent"), "{text}");
    lab.set_link(3, true);
}

/// mtop's row of the process whose command is `command`: its columns.
fn mtop_row(screen: &str, command: &str) -> Option<Vec<String>> {
    screen.lines().find_map(|l| {
        let cols: Vec<String> = l.split_whitespace().map(str::to_string).collect();
        (l.trim_end().ends_with(command) && cols.first()?.parse::<i32>().is_ok()).then_some(cols)
    })
}

#[tokio::test]
async fn mtop_moves_renices_and_kills_the_selected_job_and_shows_where_it_runs() {
    let lab = TestLab::up("mx", 133, 2);
    lab.settled(2, Duration::from_secs(60)).await;
    let home = lab.client(1).await;
    let job = spawn_sleep(&home, 3006).await;
    let argv = vec![
        bin("mtop").display().to_string(),
        "--socket".into(),
        lab.socket(1).display().to_string(),
    ];
    let t = Tmux::start("mtop", 160, 30, &argv);
    let s = t
        .wait("the job", |s| {
            mtop_row(s, "sleep 3006").is_some() && s.contains("CANTMOVE")
        })
        .await;
    let head: Vec<&str> = s.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(head[..6], ["PID", "USER", "NODE", "HOME", "LCK", "NMIG"]);
    let pid = job.pid.to_string();
    t.keys(&["/"]);
    t.keys(&[&pid, "Enter"]);
    t.keys(&["m"]);
    t.wait("the question", |s| s.contains(&format!("migrate {pid} to")))
        .await;
    t.keys(&["2", "Enter"]);
    let s = t
        .wait("the job on node 2", |s| {
            mtop_row(s, "sleep 3006")
                .is_some_and(|r| r[0] == pid && r[2] == "2" && r[3] == "1" && r[5] == "1")
        })
        .await;
    assert!(s.contains("moved from node 1 to node 2"), "{s}");
    assert!(s.contains("1 away"), "{s}");
    t.keys(&["h"]);
    // Back home it runs under a new PID, and stays selected.
    t.wait("the job at home", |s| {
        mtop_row(s, "sleep 3006").is_some_and(|r| r[2] == "1" && r[5] == "2")
    })
    .await;
    t.keys(&["r"]);
    t.keys(&["5", "Enter"]);
    t.wait("the renice", |s| {
        s.contains("reniced to 5") && mtop_row(s, "sleep 3006").is_some_and(|r| r[6] == "5")
    })
    .await;
    t.keys(&["k"]);
    t.keys(&["KILL", "Enter"]);
    // (To the PID it has back home.)
    t.wait("the kill", |s| s.contains("SIGKILL sent to process"))
        .await;
    let ended = wait_for(Duration::from_secs(20), || async {
        testkit::job_status(&home, job.pid).await.exit.map(|_| ())
    })
    .await;
    assert!(ended.is_some(), "the job did not end");
    t.keys(&["q"]);
    let gone = wait_for(Duration::from_secs(10), || async {
        (!t.alive()).then_some(())
    })
    .await;
    assert!(gone.is_some(), "q did not quit mtop");
}
