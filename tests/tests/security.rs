//! The agent's security, against real agents with real keys, as root: the
//! role matrix over every RPC method and the migration subsystem; root
//! helpers that no caller's environment reaches; a user bound to its uid;
//! forged and replayed gossip; channel, session and connection limits.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hpc::client::{Client, ClientError, connect_subsystem};
use hpc::model::{Liveness, NodeStatus, Role};
use hpc::protocol::{GossipStats, JobInfo, SpawnParams, WhoAmI, codes, methods};
use serde_json::{Value, json};
use testkit::{Keys, TestAgent, TestCluster, TestUser, Victim, unique_dir, wait_for};

fn base() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// A key for `user`, bound to its uid in `agent`'s authorized_keys.
fn user_key(keys: &Keys, agent: &TestAgent, user: &TestUser) -> PathBuf {
    let path = keys.dir.join(format!("user-{}", user.uid));
    let key = testkit::new_key(&path);
    let line = key.public_key().to_openssh().unwrap();
    agent.authorize(&format!("user uid={} {line} test user", user.uid));
    path
}

/// The node's admin files.
async fn admin_state(c: &Client) -> Vec<Value> {
    let mut out = Vec::new();
    for f in ["block", "stay", "lstay", "quiet", "speed", "expel"] {
        out.push(testkit::hpc_read(c, &format!("admin/{f}")).await);
    }
    out
}

/// The outcome of a call: `Ok` or the error code.
async fn code_of(c: &Client, method: &str, params: Value) -> Result<Value, (i64, String)> {
    match c.call_value(method, params).await {
        Ok(v) => Ok(v),
        Err(ClientError::Rpc(e)) => Err((e.code, e.message)),
        Err(other) => Err((0, other.to_string())),
    }
}

/// What a role may do with a method, in the matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
enum May {
    /// Every role that can connect.
    All,
    /// Admin and cluster (node state, any process).
    Admin,
    /// Cluster only (agent-to-agent).
    Cluster,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_and_the_migration_subsystem_by_every_role() {
    let keys = Keys::generate(base());
    let agent = TestAgent::standalone(base(), &keys);
    let user = TestUser::create("rm");
    let user_key = user_key(&keys, &agent, &user);
    let cluster_key = keys.cluster_key_file();
    // A root process none of the refused callers may touch.
    let victim = Victim::sleep(300);
    let pid = victim.pid();
    let admin = agent.client(&keys.admin).await;
    wait_for(Duration::from_secs(5), || async {
        admin
            .call_value(methods::PROC_GET, json!({ "pid": pid }))
            .await
            .ok()
    })
    .await
    .expect("the victim is listed");
    let job_info = serde_json::to_value(JobInfo {
        home: 1,
        home_pid: pid,
        where_: 2,
        ..Default::default()
    })
    .unwrap();
    let spawn_root = serde_json::to_value(SpawnParams {
        argv: vec!["true".into()],
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        ..Default::default()
    })
    .unwrap();
    // Every method, with params an admin's call of it would use.
    let matrix: Vec<(&str, Value, May)> = vec![
        (
            methods::HPC_READ,
            json!({ "path": "admin/block" }),
            May::All,
        ),
        (methods::HPC_LIST, json!({ "path": "admin" }), May::All),
        (methods::NODE_STATUS, json!({}), May::All),
        (methods::NODE_LOAD, json!({}), May::All),
        (methods::CLUSTER_NODES, json!({}), May::All),
        (methods::CLUSTER_GOSSIP_STATS, json!({}), May::All),
        (methods::PROC_LIST, json!({}), May::All),
        (methods::PROC_GET, json!({ "pid": pid }), May::All),
        (
            methods::PROC_READ,
            json!({ "pid": pid, "field": "lock" }),
            May::All,
        ),
        (methods::JOB_STATUS, json!({ "pid": pid }), May::All),
        (methods::JOB_LIST, json!({}), May::All),
        (methods::WHOAMI, json!({}), May::All),
        (methods::SUBSCRIBE, json!({ "interval_ms": 1000 }), May::All),
        (
            methods::UNSUBSCRIBE,
            json!({ "subscription": 99 }),
            May::All,
        ),
        (
            methods::HPC_WRITE,
            json!({ "path": "admin/block", "value": 1 }),
            May::Admin,
        ),
        (
            methods::HPC_WRITE,
            json!({ "path": "admin/expel", "value": 0 }),
            May::Admin,
        ),
        (
            methods::HPC_WRITE,
            json!({ "path": "decay/fast", "value": 1, "pid": pid }),
            May::Admin,
        ),
        (
            methods::PROC_WRITE,
            json!({ "pid": pid, "field": "lock", "value": 0 }),
            May::Admin,
        ),
        (
            methods::PROC_SIGNAL,
            json!({ "pid": pid, "signal": "STOP" }),
            May::Admin,
        ),
        (
            methods::PROC_RENICE,
            json!({ "pid": pid, "nice": 5 }),
            May::Admin,
        ),
        (methods::PROC_SPAWN, spawn_root, May::Admin),
        (
            methods::PROC_MIGRATE,
            json!({ "pid": pid, "to": "2" }),
            May::Admin,
        ),
        (
            methods::CLUSTER_FORGET_HOST_KEY,
            json!({ "node": 7 }),
            May::Admin,
        ),
        (methods::JOB_MOVED, job_info, May::Cluster),
        (
            methods::JOB_EXITED,
            json!({ "home_pid": pid, "node": 2, "code": 0 }),
            May::Cluster,
        ),
    ];
    let state0 = admin_state(&admin).await;
    let monitor = agent.client(&keys.monitor).await;
    let user_c = agent.client(&user_key).await;
    let me: WhoAmI = user_c.call(methods::WHOAMI, json!({})).await.unwrap();
    assert_eq!((me.role, me.uid), (Role::User, Some(user.uid)));
    // The refused roles first: nothing they try may change anything.
    for (role, c) in [(Role::Monitor, &monitor), (Role::User, &user_c)] {
        for (method, params, may) in &matrix {
            let got = code_of(c, method, params.clone()).await;
            match (may, &got) {
                (May::All, Err((code, msg))) if *code == codes::FORBIDDEN => {
                    panic!("{role} refused {method}: {msg}")
                }
                (May::All, _) => {}
                (_, Err((code, _))) if *code == codes::FORBIDDEN => {}
                (_, other) => panic!("{role} was not refused {method} {params}: {other:?}"),
            }
        }
    }
    assert_eq!(
        admin_state(&admin).await,
        state0,
        "refused calls changed nothing"
    );
    assert_eq!(victim.stat()[0], "S", "the victim was not stopped");
    assert_eq!(victim.stat()[16], "0", "nor reniced");
    let row: Value = admin
        .call_value(methods::PROC_GET, json!({ "pid": pid }))
        .await
        .unwrap();
    assert_eq!(row["lock"], json!(true), "nor unlocked");
    assert_eq!(row["decay"], json!("slow"), "nor given another decay");

    // The allowed roles: never refused (other errors, such as a node that
    // does not exist, are the method's own answer).
    let cluster = agent.client(&cluster_key).await;
    for (role, c) in [(Role::Admin, &admin), (Role::Cluster, &cluster)] {
        for (method, params, may) in &matrix {
            let got = code_of(c, method, params.clone()).await;
            let refused = matches!(&got, Err((code, _)) if *code == codes::FORBIDDEN);
            let expected = *may == May::Cluster && role != Role::Cluster;
            assert_eq!(refused, expected, "{role} {method}: {got:?}");
            if method == &methods::PROC_SIGNAL {
                testkit::signal(c, pid, "CONT").await;
            }
        }
    }

    // The migration subsystem: the cluster key only.
    let addr = agent.addr.to_string();
    for (role, key) in [
        ("monitor", &keys.monitor),
        ("user", &user_key),
        ("admin", &keys.admin),
    ] {
        match connect_subsystem(
            &addr,
            &agent.client_config(key),
            hpc::paths::MIGRATION_SUBSYSTEM,
        )
        .await
        {
            Err(ClientError::Unreachable { message, .. }) => {
                assert!(message.contains("subsystem refused"), "{role}: {message}")
            }
            other => panic!("{role} opened the migration subsystem: {:?}", other.err()),
        }
    }
    assert!(
        connect_subsystem(
            &addr,
            &agent.client_config(&cluster_key),
            hpc::paths::MIGRATION_SUBSYSTEM
        )
        .await
        .is_ok(),
        "the cluster key opens it"
    );
    // An unknown key gets nowhere at all.
    match Client::connect(&addr, &agent.client_config(&keys.stranger)).await {
        Err(ClientError::AuthRefused { .. }) => {}
        other => panic!("a stranger got in: {:?}", other.err()),
    }
    match connect_subsystem(
        &addr,
        &agent.client_config(&keys.stranger),
        hpc::paths::MIGRATION_SUBSYSTEM,
    )
    .await
    {
        Err(ClientError::AuthRefused { .. }) => {}
        other => panic!(
            "a stranger opened the migration subsystem: {:?}",
            other.err()
        ),
    }
}

/// A shared object that, loaded into any process, appends that process's
/// uid to `$EVIL_LOG`: the trace of an `LD_PRELOAD` reaching it.
const EVIL_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void evil(void) {
    const char *log = getenv("EVIL_LOG");
    if (!log) return;
    FILE *f = fopen(log, "a");
    if (!f) return;
    fprintf(f, "uid=%d\n", (int)getuid());
    fclose(f);
}
"#;

async fn job_end(c: &Client, pid: i32) -> i32 {
    wait_for(Duration::from_secs(20), || async {
        let j: JobInfo = c
            .call(methods::JOB_STATUS, json!({ "pid": pid }))
            .await
            .ok()?;
        j.exit
    })
    .await
    .expect("the job ends")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_caller_environment_reaches_a_program_run_as_root() {
    let keys = Keys::generate(base());
    let agent = TestAgent::standalone(base(), &keys);
    let user = TestUser::create("env");
    let user_key = user_key(&keys, &agent, &user);
    let dir = unique_dir(base(), "evil");
    user.chown(&dir);
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    // A fake `unshare` and a fake `openmosix-jobinit` first on the caller's PATH.
    let marker = dir.join("fake-ran");
    for name in ["unshare", "openmosix-jobinit"] {
        let p = bin.join(name);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"fake {name} ran as $(id -u)\" >> {}\nexit 1\n",
                marker.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::chown(&bin, Some(user.uid), Some(user.gid)).unwrap();
    std::fs::write(dir.join("evil.c"), EVIL_C).unwrap();
    let built = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.join("evil.so"))
        .arg(dir.join("evil.c"))
        .status()
        .expect("gcc");
    assert!(built.success());
    let evil_log = dir.join("evil.log");
    std::fs::write(&evil_log, "").unwrap();
    user.chown(&evil_log);
    let out = dir.join("out");
    let env = vec![
        ("PATH".into(), format!("{}:/usr/bin:/bin", bin.display())),
        (
            "LD_PRELOAD".into(),
            dir.join("evil.so").display().to_string(),
        ),
        ("LD_LIBRARY_PATH".into(), dir.display().to_string()),
        ("EVIL_LOG".into(), evil_log.display().to_string()),
        ("FOO".into(), "bar".into()),
    ];
    let spawn = |uid: u32, gid: u32| SpawnParams {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo foo=$FOO uid=$(id -u)".into(),
        ],
        cwd: dir.display().to_string(),
        env: env.clone(),
        uid,
        gid,
        stdout: Some(out.display().to_string()),
        ..Default::default()
    };

    // An admin starts a job as the user, with that hostile environment.
    let admin = agent.client(&keys.admin).await;
    let job: JobInfo = admin
        .call(methods::PROC_SPAWN, spawn(user.uid, user.gid))
        .await
        .expect("spawn");
    assert_eq!(job_end(&admin, job.home_pid).await, 0);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text.trim(),
        format!("foo=bar uid={}", user.uid),
        "the job got its environment, as its user"
    );
    assert!(
        !marker.exists(),
        "a program from the caller's PATH ran: {}",
        std::fs::read_to_string(&marker).unwrap_or_default()
    );
    let loads = std::fs::read_to_string(&evil_log).unwrap();
    assert!(!loads.is_empty(), "the job itself did load its LD_PRELOAD");
    assert!(
        loads.lines().all(|l| l == format!("uid={}", user.uid)),
        "LD_PRELOAD reached a process of another user: {loads}"
    );

    // A user may start jobs only as itself, in its own groups.
    let u = agent.client(&user_key).await;
    for (uid, gid) in [(0, 0), (0, user.gid), (user.uid, 0)] {
        match u
            .call_value(
                methods::PROC_SPAWN,
                serde_json::to_value(spawn(uid, gid)).unwrap(),
            )
            .await
        {
            Err(ClientError::Rpc(e)) => assert_eq!(e.code, codes::FORBIDDEN, "{uid}:{gid}: {e}"),
            other => panic!("a user started a job as {uid}:{gid}: {other:?}"),
        }
    }
    let job: JobInfo = u
        .call(methods::PROC_SPAWN, spawn(user.uid, user.gid))
        .await
        .expect("a user starts its own job");
    assert_eq!(job.uid, user.uid);
    assert_eq!(job_end(&u, job.home_pid).await, 0);
    assert!(!marker.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_acts_on_its_own_processes_only() {
    let keys = Keys::generate(base());
    let agent = TestAgent::standalone(base(), &keys);
    let user = TestUser::create("own");
    let key = user_key(&keys, &agent, &user);
    let dir = unique_dir(base(), "own");
    user.chown(&dir);
    let u = agent.client(&key).await;
    let job: JobInfo = u
        .call(
            methods::PROC_SPAWN,
            SpawnParams {
                argv: vec!["sleep".into(), "300".into()],
                cwd: dir.display().to_string(),
                env: vec![("PATH".into(), "/usr/bin:/bin".into())],
                uid: user.uid,
                gid: user.gid,
                ..Default::default()
            },
        )
        .await
        .expect("spawn");
    let pid = job.home_pid;
    let ok = |r: Result<Value, ClientError>, what: &str| {
        r.unwrap_or_else(|e| panic!("{what}: {e}"));
    };
    ok(
        u.call_value(methods::PROC_RENICE, json!({ "pid": pid, "nice": 5 }))
            .await,
        "raise its own nice",
    );
    match u
        .call_value(methods::PROC_RENICE, json!({ "pid": pid, "nice": 0 }))
        .await
    {
        Err(ClientError::Rpc(e)) => {
            assert_eq!(e.code, codes::FORBIDDEN);
            assert!(e.message.contains("not lower it"), "{}", e.message);
        }
        other => panic!("a user lowered a nice value: {other:?}"),
    }
    ok(
        u.call_value(
            methods::PROC_WRITE,
            json!({ "pid": pid, "field": "lock", "value": 1 }),
        )
        .await,
        "lock its own job",
    );
    ok(
        u.call_value(
            methods::HPC_WRITE,
            json!({ "path": "decay/fast", "value": 1, "pid": pid }),
        )
        .await,
        "set its own job's decay",
    );
    ok(
        u.call_value(
            methods::PROC_SIGNAL,
            json!({ "pid": pid, "signal": "KILL" }),
        )
        .await,
        "kill its own job",
    );
    assert_eq!(job_end(&u, pid).await, 128 + 9);
    // A stale start time never hits a newer process with the PID.
    let v = Victim::sleep(300);
    let a = agent.client(&keys.admin).await;
    wait_for(Duration::from_secs(5), || async {
        a.call_value(methods::PROC_GET, json!({ "pid": v.pid() }))
            .await
            .ok()
    })
    .await
    .unwrap();
    match a
        .call_value(
            methods::PROC_SIGNAL,
            json!({ "pid": v.pid(), "signal": "KILL", "start_time": 12345 }),
        )
        .await
    {
        Err(ClientError::Rpc(e)) => assert_eq!(e.code, codes::NO_SUCH_PROCESS, "{}", e.message),
        other => panic!("signal with another start time: {other:?}"),
    }
    assert_eq!(v.stat()[0], "S");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The UDP ports of process `pid` (its sockets in its network namespace).
fn udp_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let s = l.to_string_lossy().into_owned();
            s.strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/udp")).unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let inode = f.get(9)?;
            if !inodes.iter().any(|i| i == inode) {
                return None;
            }
            let port = f.get(1)?.rsplit_once(':')?.1;
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

async fn stats(c: &Client) -> GossipStats {
    c.call(methods::CLUSTER_GOSSIP_STATS, json!({}))
        .await
        .unwrap()
}

async fn node_seen(c: &Client, id: u32) -> NodeStatus {
    let nodes: Vec<NodeStatus> = c.call(methods::CLUSTER_NODES, json!({})).await.unwrap();
    nodes.into_iter().find(|n| n.id == id).unwrap()
}

/// A chitchat node that claims to be node 2 (a newer generation, another
/// address and host key) and gossips straight to `targets`, as a local user
/// who found the agent's ports would.
async fn impostor(targets: Vec<SocketAddr>, fake_key: String) -> chitchat::ChitchatHandle {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let listen = sock.local_addr().unwrap();
    drop(sock);
    let id = chitchat::ChitchatId::new("2", u64::MAX / 2, listen);
    let config = chitchat::ChitchatConfig {
        chitchat_id: id,
        cluster_id: "openmosix".into(),
        gossip_interval: Duration::from_millis(100),
        listen_addr: listen,
        seed_nodes: targets.iter().map(|a| a.to_string()).collect(),
        failure_detector_config: Default::default(),
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: chitchat::ProtocolVersion::V0,
    };
    let status = json!({
        "status": {
            "id": 2, "name": "impostor", "addr": listen.to_string(), "status": "up",
            "cpus": 64, "load": 0, "speed": 99999, "util": 100, "mem": 1u64 << 40,
            "rmem": 1u64 << 40, "tmem": 1u64 << 40, "accepts": true,
            "migration": "migration available: trust me", "host_key": fake_key
        },
        "at_ms": hpc::clock::now_ms()
    });
    chitchat::spawn_chitchat(
        config,
        vec![("status".into(), status.to_string())],
        &chitchat::transport::UdpTransport,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_gossip_changes_nothing() {
    // Node 3 of the map is this test: agents gossip to it, so it holds real
    // datagrams of the cluster to replay.
    let keys = Keys::generate(base());
    let addrs = testkit::loopback_addrs(3);
    let map = testkit::map_for(&addrs);
    let listener = tokio::net::UdpSocket::bind(addrs[2]).await.unwrap();
    let mut a1 = TestAgent::start(base(), &keys, 1, addrs[0], &map);
    a1.extra_args = vec!["--gossip-replay-window-secs".into(), "4".into()];
    a1.restart();
    let a2 = TestAgent::start(base(), &keys, 2, addrs[1], &map);
    let c1 = a1.client(&keys.admin).await;
    let real = wait_for(Duration::from_secs(20), || async {
        let n = node_seen(&c1, 2).await;
        (n.status == Liveness::Up && !n.host_key.is_empty()).then_some(n)
    })
    .await
    .expect("node 1 sees node 2");
    // Genuine datagrams, captured.
    let mut captured = Vec::new();
    let mut buf = vec![0u8; 65536];
    while captured.len() < 6 {
        let (n, _) = tokio::time::timeout(Duration::from_secs(15), listener.recv_from(&mut buf))
            .await
            .expect("agents gossip to node 3")
            .unwrap();
        captured.push(buf[..n].to_vec());
    }
    let ports = udp_ports(a1.pid().unwrap());
    assert!(ports.len() >= 3, "the agent's UDP sockets: {ports:?}");
    let targets: Vec<SocketAddr> = ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let fake_key = testkit::new_key(&keys.dir.join("impostor_host"))
        .public_key()
        .to_openssh()
        .unwrap();
    let before = stats(&c1).await;

    // 1. An impostor speaks chitchat to every UDP port of agent 1.
    let imp = impostor(targets.clone(), fake_key.clone()).await;
    // 2. Garbage, and genuine datagrams with a flipped bit, to every port.
    let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (i, t) in targets.iter().enumerate() {
        sender.send_to(b"\x00garbage\xff", t).await.unwrap();
        let mut bad = captured[i % captured.len()].clone();
        let at = bad.len() / 2;
        bad[at] ^= 0x40;
        sender.send_to(&bad, t).await.unwrap();
    }
    // 3. Replays: a fresh genuine datagram again and again (the first copy
    //    may pass: agent 1 never saw this one, sent to node 3).
    let public = addrs[0];
    let (n, _) = tokio::time::timeout(Duration::from_secs(15), listener.recv_from(&mut buf))
        .await
        .expect("agents gossip to node 3")
        .unwrap();
    let fresh = buf[..n].to_vec();
    for _ in 0..5 {
        sender.send_to(&fresh, public).await.unwrap();
    }
    for t in &targets {
        sender.send_to(&fresh, t).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    // 4. Old ones, past the (4 s) replay window.
    for d in &captured {
        for t in &targets {
            sender.send_to(d, t).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    imp.shutdown().await.ok();

    let after = stats(&c1).await;
    assert!(
        after.foreign > before.foreign,
        "impostor at the inner socket: {after:?}"
    );
    assert!(
        after.bad_tag > before.bad_tag,
        "forged datagrams: {after:?}"
    );
    assert!(after.replayed >= before.replayed + 4, "replays: {after:?}");
    assert!(after.stale > before.stale, "old datagrams: {after:?}");
    assert_eq!(
        after.host_key_mismatch, 0,
        "no false key ever reached the view"
    );
    let now = node_seen(&c1, 2).await;
    assert_eq!(now.status, Liveness::Up);
    assert_eq!(now.addr, real.addr, "node 2's address is unchanged");
    assert_eq!(
        now.host_key, real.host_key,
        "node 2's host key is unchanged"
    );
    assert_ne!(now.name, "impostor");
    // The cluster still works: node 1 calls node 2 with the pinned key.
    let c2 = a2.client(&keys.admin).await;
    assert_eq!(testkit::hpc_read(&c2, "admin/mospe").await, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_host_key_is_not_replaced_by_gossip_until_forgotten() {
    let cluster = TestCluster::start(base(), 2);
    let c1 = cluster.agents[0].client(&cluster.keys.admin).await;
    let first = wait_for(Duration::from_secs(20), || async {
        let n = node_seen(&c1, 2).await;
        (n.status == Liveness::Up && !n.host_key.is_empty()).then_some(n)
    })
    .await
    .expect("node 1 pins node 2");
    // Node 2 comes back with another host key (a cluster member, not an
    // outsider: it holds the cluster key).
    let mut agents = cluster.agents;
    let mut a2 = agents.pop().unwrap();
    a2.stop();
    testkit::new_key(&a2.dir.join("config").join(hpc::paths::HOST_KEY_FILE));
    a2.restart();
    let refused = wait_for(Duration::from_secs(20), || async {
        let n = node_seen(&c1, 2).await;
        n.reason
            .clone()
            .filter(|r| r.contains("host key changed"))
            .map(|r| (n, r))
    })
    .await
    .expect("the new key is refused");
    assert_eq!(refused.0.status, Liveness::Down);
    assert_eq!(refused.0.host_key, first.host_key, "the pinned key stays");
    assert!(refused.1.contains("forget-host-key 2"), "{}", refused.1);
    // The admin rotated it on purpose: forget, and the next gossip pins the new one.
    let v: Value = c1
        .call_value(methods::CLUSTER_FORGET_HOST_KEY, json!({ "node": 2 }))
        .await
        .unwrap();
    assert!(v["forgotten"].as_str().unwrap().starts_with("SHA256:"));
    let renewed = wait_for(Duration::from_secs(20), || async {
        let n = node_seen(&c1, 2).await;
        (n.status == Liveness::Up && n.host_key != first.host_key).then_some(n)
    })
    .await
    .expect("the new key is pinned");
    assert!(renewed.reason.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_and_sessions_are_capped_and_a_flood_keeps_nobody_out() {
    let keys = Keys::generate(base());
    let mut agent = TestAgent::standalone(base(), &keys);
    agent.extra_args = [
        "--max-channels",
        "4",
        "--max-sessions",
        "6",
        "--cluster-reserved-sessions",
        "2",
        "--login-grace-secs",
        "30",
    ]
    .map(String::from)
    .to_vec();
    agent.restart();
    let addr = agent.addr.to_string();

    // Channels: four live ones; the fifth is refused; closing one frees it.
    let raw = hpc::client::connect_raw(&addr, &agent.client_config(&keys.admin))
        .await
        .unwrap();
    let mut open = Vec::new();
    for _ in 0..3 {
        let ch = raw.session.channel_open_session().await.expect("channel");
        ch.request_subsystem(true, hpc::paths::SUBSYSTEM)
            .await
            .unwrap();
        open.push(ch);
    }
    assert!(
        raw.session.channel_open_session().await.is_err(),
        "a fifth live channel in one session"
    );
    let ch = open.pop().unwrap();
    ch.close().await.unwrap();
    let reopened = wait_for(Duration::from_secs(5), || async {
        raw.session.channel_open_session().await.ok()
    })
    .await;
    assert!(reopened.is_some(), "a closed channel gives its place back");

    // A flood of unauthenticated connections from other addresses.
    let mut flood = Vec::new();
    for source in 2..=40u8 {
        for _ in 0..12 {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            if s.bind(SocketAddr::from(([127, 0, 0, source], 0))).is_ok()
                && let Ok(c) = s.connect(agent.addr).await
            {
                flood.push(c);
            }
        }
    }
    assert!(flood.len() > 300, "flood of {}", flood.len());
    // An admin and the cluster key still get in, quickly.
    let started = std::time::Instant::now();
    let a = agent.client(&keys.admin).await;
    let cluster_key = keys.cluster_key_file();
    let c = agent.client(&cluster_key).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(testkit::hpc_read(&a, "admin/mospe").await, json!(1));
    assert_eq!(testkit::hpc_read(&c, "admin/mospe").await, json!(1));
    drop(flood);

    // Sessions: with 1 (raw) + 2 (a, c) taken, admins may hold 4 of 6; the
    // cluster key keeps the last 2.
    let mut admins = vec![a];
    loop {
        match Client::connect(&addr, &agent.client_config(&keys.admin)).await {
            Ok(x) => admins.push(x),
            Err(_) => break,
        }
        assert!(admins.len() < 10, "no session limit");
    }
    // Sessions now: raw, the admins, c. Non-cluster keys may hold 6 - 2 = 4
    // with c counted, so two admins; the cluster key still gets one more.
    assert_eq!(admins.len(), 2, "two admin sessions beside raw and c");
    let c2 = agent.client(&cluster_key).await;
    assert_eq!(testkit::hpc_read(&c2, "admin/mospe").await, json!(1));
    drop(admins);
    let back = wait_for(Duration::from_secs(5), || async {
        Client::connect(&addr, &agent.client_config(&keys.admin))
            .await
            .ok()
    })
    .await;
    assert!(back.is_some(), "sessions are given back when they end");
}

/// Appends 1, 2, 3, ... to a file, one line every 50 ms.
const COUNTER: &str = "import sys, time\nf = open(sys.argv[1], 'a', buffering=1)\ni = 0\nwhile True:\n    i += 1\n    f.write(f'{i}\\n')\n    time.sleep(0.05)\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_users_run_move_and_kill_their_own_jobs_through_the_socket() {
    let lab = testkit::TestLab::up("us", 83, 2);
    let user = TestUser::create("sk");
    let dir = unique_dir(base(), "sock");
    user.chown(&dir);
    let script = dir.join("counter.py");
    std::fs::write(&script, COUNTER).unwrap();
    let out = dir.join("counter.out");
    let socket = lab.socket(1);
    let admin = lab.client(1).await;
    wait_for(Duration::from_secs(20), || async {
        let n = node_seen(&admin, 2).await;
        (n.status == Liveness::Up && n.migration.starts_with("migration available")).then_some(())
    })
    .await
    .expect("node 2 up");
    let run = |program: &str, args: &[&str]| {
        let out = user
            .command(testkit::bin(program))
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run a tool as the user");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, who, err) = run("mosctl", &["whoami"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        who.starts_with(&format!("user (uid {}) on node 1", user.uid)),
        "{who}"
    );
    let (code, _, err) = run("mosctl", &["block"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("permission denied"), "{err}");

    // mosrun as the user: a job of the user's.
    let out_s = out.display().to_string();
    let script_s = script.display().to_string();
    let (code, pid, err) = run(
        "mosrun",
        &[
            "--detach",
            "-o",
            "counter.log",
            "python3",
            &script_s,
            &out_s,
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let pid: i32 = pid.trim().parse().expect("mosrun prints the job's PID");
    let job: JobInfo = admin
        .call(methods::JOB_STATUS, json!({ "pid": pid }))
        .await
        .unwrap();
    assert_eq!((job.uid, job.where_), (user.uid, 1));
    let owner = std::fs::metadata(format!("/proc/{pid}"))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    assert_eq!(owner, user.uid, "the job runs as the user");
    wait_for(Duration::from_secs(10), || async {
        std::fs::read_to_string(&out)
            .ok()
            .filter(|t| t.lines().count() > 3)
    })
    .await
    .expect("the job runs");

    // migrate as the user: it moves.
    let (code, said, err) = run("migrate", &[&pid.to_string(), "2"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(said.contains("moved from node 1 to node 2"), "{said}");
    let job: JobInfo = admin
        .call(methods::JOB_STATUS, json!({ "pid": pid }))
        .await
        .unwrap();
    assert_eq!(job.where_, 2);

    // Another user's (root's) job: refused, and it keeps running at home.
    let root_out = dir.join("root.out");
    let root_job: JobInfo = admin
        .call(
            methods::PROC_SPAWN,
            SpawnParams {
                argv: vec![
                    "python3".into(),
                    script_s.clone(),
                    root_out.display().to_string(),
                ],
                cwd: dir.display().to_string(),
                env: vec![("PATH".into(), "/usr/bin:/bin".into())],
                uid: 0,
                gid: 0,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let rp = root_job.home_pid.to_string();
    for (tool, args) in [
        ("migrate", vec![rp.as_str(), "2"]),
        ("mosctl", vec!["kill", "-s", "KILL", rp.as_str()]),
        ("mosctl", vec!["unlock", rp.as_str()]),
    ] {
        let (code, _, err) = run(tool, &args);
        assert_eq!(code, Some(1), "{tool} {args:?} on root's job: {err}");
        assert!(err.contains("permission denied"), "{err}");
    }
    let still: JobInfo = admin
        .call(methods::JOB_STATUS, json!({ "pid": root_job.home_pid }))
        .await
        .unwrap();
    assert_eq!((still.where_, still.exit), (1, None));

    // mosctl kill as the user: its job ends, wherever it runs.
    let (code, _, err) = run("mosctl", &["kill", "-s", "KILL", &pid.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(job_end(&admin, pid).await, 128 + 9);
    testkit::signal(&admin, root_job.home_pid, "KILL").await;
    let _ = std::fs::remove_dir_all(&dir);
}
