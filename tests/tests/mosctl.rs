//! `mosctl`, every command, against real agents.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use testkit::{TestAgent, TestCluster, bin, wait_for};

fn base() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

struct Mosctl {
    node: String,
    key: PathBuf,
    known_hosts: PathBuf,
}

impl Mosctl {
    fn new(agent: &TestAgent, key: &Path, dir: &Path) -> Self {
        let known_hosts = dir.join(format!("kh-{}", agent.id));
        agent.write_known_hosts(&known_hosts);
        Self {
            node: agent.addr.to_string(),
            key: key.to_path_buf(),
            known_hosts,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_as(&bin("mosctl"), args)
    }

    /// Runs `program` (mosctl, or a link to it) against this node.
    fn run_as(&self, program: &Path, args: &[&str]) -> Output {
        std::process::Command::new(program)
            .arg("--node")
            .arg(&self.node)
            .arg("--key")
            .arg(&self.key)
            .arg("--known-hosts")
            .arg(&self.known_hosts)
            .args(args)
            .env("OPENMOSIX_LOG", "off")
            .output()
            .expect("run mosctl")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "mosctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// Runs and expects failure with `code`; returns stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "mosctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    }
}

#[test]
fn every_mosctl_command() {
    let mut cluster = TestCluster::start(base(), 2);
    let dir = cluster.keys.dir.clone();
    let m = Mosctl::new(&cluster.agents[0], &cluster.keys.admin, &dir);

    // Flags and their aliases, checked through status --json.
    let admin = |m: &Mosctl| m.json(&["status"])["admin"].clone();
    for (on, off, field) in [
        ("stay", "nostay", "stay"),
        ("lstay", "nolstay", "lstay"),
        ("block", "noblock", "block"),
        ("quiet", "noquiet", "quiet"),
    ] {
        assert_eq!(m.ok(&[on]), "", "{on} is silent like the original");
        assert_eq!(admin(&m)[field], Value::Bool(true), "{on}");
        m.ok(&[off]);
        assert_eq!(admin(&m)[field], Value::Bool(false), "{off}");
        m.ok(&[on]);
        m.ok(&[&format!("-{on}")]);
        assert_eq!(admin(&m)[field], Value::Bool(false), "-{on}");
    }
    assert_eq!(m.json(&["block"])["admin/block"], 1);
    m.ok(&["noblock"]);

    // expel/bring wait until everything moved (nothing here) and imply block/lstay.
    assert_eq!(m.ok(&["expel"]), "0 guests sent home");
    assert_eq!(m.ok(&["bring"]), "0 processes brought home");
    assert_eq!(m.json(&["block"])["admin/block"], 1);
    m.ok(&["noblock"]);
    m.ok(&["nolstay"]);

    // Decay.
    assert_eq!(
        m.ok(&["getdecay"]),
        "decay interval: 1 s\nslow decay: 975 (of 1000 kept each interval)\nfast decay: 926 (of 1000 kept each interval)"
    );
    m.ok(&["setdecay", "3", "960", "900"]);
    let d = m.json(&["getdecay"]);
    assert_eq!(
        (
            d["decay-interval"].as_u64(),
            d["slow-decay"].as_u64(),
            d["fast-decay"].as_u64()
        ),
        (Some(3), Some(960), Some(900))
    );
    assert!(
        m.fails(&["setdecay", "0", "960", "900"], 1)
            .contains("interval >= 1")
    );
    assert!(
        m.fails(&["setdecay", "1", "1960", "900"], 1)
            .contains("rates from 0 to 1000")
    );

    // Speed, yardstick, tune.
    m.ok(&["setspeed", "15000"]);
    assert_eq!(m.ok(&["getspeed"]), "15000");
    assert_eq!(m.ok(&["getyard"]), "10000");
    m.ok(&["setyard", "12000"]);
    assert_eq!(m.ok(&["getyard"]), "12000");
    m.ok(&["setyard", "this"]);
    assert_eq!(m.ok(&["getyard"]), "15000");
    assert!(
        m.fails(&["setyard", "pentium"], 1)
            .contains("number or `this`")
    );
    let tune = m.ok(&["gettune"]);
    assert!(
        tune.contains("speed: 15000") && tune.contains("overheads:"),
        "{tune}"
    );
    assert_eq!(m.json(&["gettune"])["yardstick"], 15000);

    // Per-node figures, this node and node 2 (learned by gossip).
    wait_for_node2(&m);
    for cmd in ["getload", "getspeed", "getmem", "getfree", "getutil"] {
        let own: u64 = m
            .ok(&[cmd])
            .parse()
            .unwrap_or_else(|_| panic!("{cmd} prints a number"));
        let other: u64 = m.ok(&[cmd, "2"]).parse().unwrap();
        if cmd != "getload" {
            assert!(own > 0 && other > 0, "{cmd}: {own} {other}");
        }
        if cmd == "getutil" {
            assert!(own <= 100 && other <= 100);
        }
        let j = m.json(&[cmd, "2"]);
        assert_eq!(j["node"], 2, "{cmd}");
    }
    assert_eq!(m.ok(&["isup"]), "yes");
    assert_eq!(m.ok(&["isup", "2"]), "yes");
    assert!(m.fails(&["isup", "9"], 1).contains("no such node: 9"));
    let st = m.ok(&["status"]);
    assert!(
        st.starts_with("openMosix node #1 (127.0.0.1:")
            && st.contains("is up")
            && st.contains("stay: no"),
        "{st}"
    );
    let st2 = m.ok(&["status", "2"]);
    assert!(
        st2.starts_with("openMosix node #2") && st2.contains("load:"),
        "{st2}"
    );

    // The cluster table.
    let table = m.ok(&["nodes"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].contains("LOAD")
            && lines[1].trim_start().starts_with("1 ")
            && lines[2].contains("yes"),
        "{table}"
    );
    assert_eq!(m.json(&["nodes"]).as_array().unwrap().len(), 2);

    // whois in its three forms.
    assert_eq!(m.ok(&["whois"]), "This is openMosix node #1");
    let addr2 = cluster.agents[1].addr.to_string();
    assert_eq!(m.ok(&["whois", "2"]), addr2);
    assert_eq!(m.ok(&["whois", &addr2]), "openMosix node #2");
    assert_eq!(m.json(&["whois", "2"])["addr"], Value::String(addr2));
    assert!(
        m.fails(&["whois", "42"], 1)
            .contains("no such openMosix node")
    );

    // Node 2 stopped: isup says no, status says DOWN.
    cluster.agents[1].stop();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(wait_for(Duration::from_secs(20), || async {
        (m.ok(&["isup", "2"]) == "no").then_some(())
    }))
    .expect("node 2 shows down");
    assert!(m.ok(&["status", "2"]).contains("is DOWN"));
    assert_eq!(m.json(&["isup", "2"])["up"], Value::Bool(false));
    assert!(m.ok(&["nodes"]).contains("stopped answering"));

    // Monitor keys may read but not write.
    let mon = Mosctl::new(&cluster.agents[0], &cluster.keys.monitor, &dir);
    assert_eq!(mon.ok(&["getspeed"]), "15000");
    assert!(mon.fails(&["block"], 1).contains("permission denied"));

    // Unreachable agent, refused key: exit 2 with the reason.
    let stranger = Mosctl::new(&cluster.agents[0], &cluster.keys.stranger, &dir);
    assert!(
        stranger
            .fails(&["status"], 2)
            .contains("authentication refused")
    );
    cluster.agents[0].stop();
    let err = m.fails(&["status"], 2);
    assert!(err.contains("cannot reach agent"), "{err}");
}

fn wait_for_node2(m: &Mosctl) {
    for _ in 0..200 {
        if m.run(&["isup", "2"]).stdout.starts_with(b"yes") && m.ok(&["getspeed", "2"]) != "0" {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("node 2 never came up");
}

#[test]
fn mosctl_authenticates_through_ssh_agent() {
    let keys = testkit::Keys::generate(base());
    let agent = TestAgent::standalone(base(), &keys);
    let home = keys.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let sock = keys.dir.join("agent.sock");
    let mut ssh_agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let add = std::process::Command::new("ssh-add")
        .arg(&keys.admin)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let kh = keys.dir.join("kh");
    agent.write_known_hosts(&kh);
    let run = |sock: &Path| {
        std::process::Command::new(bin("mosctl"))
            .arg("--node")
            .arg(agent.addr.to_string())
            .arg("--known-hosts")
            .arg(&kh)
            .arg("getspeed")
            .env("SSH_AUTH_SOCK", sock)
            .env("HOME", &home)
            .env_remove("OPENMOSIX_KEY")
            .output()
            .unwrap()
    };
    let with_agent = run(&sock);
    let without = run(&keys.dir.join("no-such.sock"));
    let _ = ssh_agent.kill();
    let _ = ssh_agent.wait();
    assert!(
        add.status.success(),
        "ssh-add: {}",
        String::from_utf8_lossy(&add.stderr)
    );
    assert!(
        with_agent.status.success(),
        "{}",
        String::from_utf8_lossy(&with_agent.stderr)
    );
    assert!(
        String::from_utf8_lossy(&with_agent.stdout)
            .trim()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert_eq!(without.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("no SSH key found"),
        "{}",
        String::from_utf8_lossy(&without.stderr)
    );
}

/// `setpe -r` prints the map; `setpe -w` takes a new one without a restart
/// (node 1 meets the added node 3 at once, by the map alone: autodiscovery
/// is off here); `showmap` shows every node and where it was learnt; a map
/// that leaves the node out or does not parse is refused and changes
/// nothing; run as `setpe`/`showmap` (links), mosctl does the same.
#[test]
fn setpe_reads_and_writes_the_map_live_and_showmap_shows_the_cluster() {
    let cluster = TestCluster::start(base(), 2);
    let dir = cluster.keys.dir.clone();
    let m = Mosctl::new(&cluster.agents[0], &cluster.keys.admin, &dir);
    assert_eq!(m.ok(&["setpe", "-r"]), cluster.map_text().trim_end());
    // A third agent that knows only itself.
    let addr3 = testkit::loopback_addrs(1)[0];
    let three = TestAgent::start(base(), &cluster.keys, 3, addr3, &format!("3 {addr3} 1\n"));
    let sees_three = |m: &Mosctl| {
        m.json(&["showmap"])["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == 3 && n["up"] == true)
    };
    std::thread::sleep(Duration::from_secs(2));
    assert!(!sees_three(&m), "node 1 cannot know node 3 yet");

    // Refused, and nothing changes.
    let refused = |args: &[&str], text: &str, want: &str| {
        let f = dir.join("bad.map");
        std::fs::write(&f, text).unwrap();
        let mut a = args.to_vec();
        let fs = f.display().to_string();
        a.extend(["-f", fs.as_str()]);
        let out = m.run(&a);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success() && err.contains(want), "{err}");
        assert_eq!(m.ok(&["setpe", "-r"]), cluster.map_text().trim_end());
    };
    refused(
        &["setpe", "-w"],
        &format!("2 {} 1\n", cluster.agents[1].addr),
        "leaves out this node (1)",
    );
    refused(
        &["setpe", "-w"],
        "1 nowhere.invalid 1 extra\n",
        "cluster map line 1",
    );

    // Written: applied at once, and kept in the map file.
    let new_map = format!("{}3 {addr3} 1\n", cluster.map_text());
    let f = dir.join("new.map");
    std::fs::write(&f, &new_map).unwrap();
    let said = m.ok(&["setpe", "-w", "-f", f.to_str().unwrap()]);
    assert!(said.starts_with("node 1 now uses this map"), "{said}");
    assert_eq!(
        std::fs::read_to_string(
            cluster.agents[0]
                .dir
                .join("config")
                .join(hpc::paths::MAP_FILE)
        )
        .unwrap(),
        new_map
    );
    let met = wait_for_sync(Duration::from_secs(15), || sees_three(&m));
    assert!(met, "node 1 did not meet node 3 from the new map");
    let text = m.ok(&["showmap"]);
    assert!(text.starts_with("My Node-Id: 0x0001"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("0x0003") && l.contains("yes") && l.ends_with("map")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("0x0001") && l.ends_with("this node")),
        "{text}"
    );

    // Under the old names (links to mosctl), the same.
    let link_dir = dir.join("links");
    std::fs::create_dir_all(&link_dir).unwrap();
    for name in ["setpe", "showmap"] {
        let _ = std::fs::remove_file(link_dir.join(name));
        std::os::unix::fs::symlink(bin("mosctl"), link_dir.join(name)).unwrap();
    }
    let run_as = |name: &str, args: &[&str]| {
        let out = m.run_as(&link_dir.join(name), args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    };
    assert_eq!(run_as("setpe", &["-r"]), new_map.trim_end());
    assert!(run_as("showmap", &[]).contains("0x0003"));
    drop(three);
}

/// Polls `ok` every 100 ms until it holds or `limit` passes.
fn wait_for_sync(limit: Duration, ok: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
