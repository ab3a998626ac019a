//! Real agents on loopback: every RPC method, role enforcement, host-key checks,
//! bad input, persistence.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use hpc::client::{Client, ClientError, connect_raw};
use hpc::model::{Liveness, NodeStatus, ProcessInfo};
use hpc::protocol::{PathValue, Update, WhoAmI, codes, methods};
use serde_json::{Value, json};
use testkit::{Keys, TestAgent, Victim, hpc_read as read, wait_for};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn base() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

async fn rpc_err(c: &Client, method: &str, params: Value) -> (i64, String) {
    match c.call_value(method, params).await {
        Err(ClientError::Rpc(r)) => (r.code, r.message),
        other => panic!("{method}: expected an RPC error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpc_tree_reads_writes_and_lists() {
    let keys = Keys::generate(base());
    let agent = TestAgent::standalone(base(), &keys);
    let c = agent.client(&keys.admin).await;

    // Defaults, as openMosix had them.
    for (f, v) in [
        ("stay", 0),
        ("lstay", 0),
        ("block", 0),
        ("quiet", 0),
        ("decay-interval", 1),
        ("slow-decay", 975),
        ("fast-decay", 926),
        ("mospe", 1),
        ("yardstick", 10000),
        ("expel", 0),
        ("bring", 0),
    ] {
        assert_eq!(read(&c, &format!("admin/{f}")).await, json!(v), "admin/{f}");
    }
    assert!(read(&c, "admin/speed").await.as_u64().unwrap() > 0);
    assert!(
        read(&c, "/proc/hpc/admin/version")
            .await
            .as_str()
            .unwrap()
            .starts_with("openmosixd")
    );

    // Writes, in every accepted spelling.
    for (f, v) in [
        ("stay", json!(1)),
        ("lstay", json!("1")),
        ("block", json!(true)),
        ("quiet", json!(1)),
        ("decay-interval", json!(5)),
        ("slow-decay", json!(990)),
        ("fast-decay", json!(900)),
        ("speed", json!(12345)),
        ("yardstick", json!(8000)),
    ] {
        let r: PathValue = c
            .call(
                methods::HPC_WRITE,
                json!({ "path": format!("admin/{f}"), "value": v }),
            )
            .await
            .unwrap();
        assert_eq!(read(&c, &format!("admin/{f}")).await, r.value, "admin/{f}");
    }
    assert_eq!(read(&c, "admin/block").await, json!(1));
    // The node status follows the admin state at the next pass.
    let st = wait_for(Duration::from_secs(5), || async {
        let s: NodeStatus = c.call(methods::NODE_STATUS, json!({})).await.ok()?;
        (s.speed == 12345 && !s.accepts).then_some(s)
    })
    .await
    .expect("status shows the new speed and block");
    assert_eq!(st.status, Liveness::Up);

    // Node files of this node.
    assert_eq!(read(&c, "nodes/1/speed").await, json!(12345));
    assert_eq!(read(&c, "nodes/1/status").await, json!("up"));
    assert!(read(&c, "nodes/1/CPUs").await.as_i64().unwrap() >= 1);
    assert!(
        read(&c, "nodes/1/tmem").await.as_u64().unwrap()
            >= read(&c, "nodes/1/mem").await.as_u64().unwrap()
    );
    assert!(read(&c, "nodes/1/rmem").await.as_u64().unwrap() > 0);
    assert!(read(&c, "nodes/1/util").await.as_u64().unwrap() <= 100);
    assert!(read(&c, "nodes/1/load").await.is_u64());

    // Listings.
    let list = |p: &'static str| {
        let c = &c;
        async move {
            c.call::<_, PathValue>(methods::HPC_LIST, json!({ "path": p }))
                .await
                .unwrap()
                .value
        }
    };
    assert_eq!(list("").await, json!(["admin", "decay", "nodes", "remote"]));
    assert!(
        list("admin")
            .await
            .as_array()
            .unwrap()
            .contains(&json!("stay"))
    );
    assert_eq!(list("nodes").await, json!(["1"]));
    assert!(
        list("nodes/1")
            .await
            .as_array()
            .unwrap()
            .contains(&json!("load"))
    );
    assert!(
        list("decay")
            .await
            .as_array()
            .unwrap()
            .contains(&json!("slow"))
    );
    assert_eq!(list("remote").await, json!([]));

    // expel and bring on a node without guests or migrated jobs: nothing to
    // move, and they imply block and lstay.
    for (path, flag) in [
        ("admin/expel", "admin/block"),
        ("admin/bring", "admin/lstay"),
    ] {
        let v = c
            .call_value(methods::HPC_WRITE, json!({ "path": path, "value": 1 }))
            .await
            .unwrap();
        assert_eq!(
            v,
            json!({ "path": path, "value": 1, "moves": { "moved": 0, "failed": [] } })
        );
        let f = c
            .call_value(methods::HPC_READ, json!({ "path": flag }))
            .await
            .unwrap();
        assert_eq!(f["value"], 1, "{path} sets {flag}");
        c.call_value(methods::HPC_WRITE, json!({ "path": flag, "value": 0 }))
            .await
            .unwrap();
    }
    // Refusals with reasons.
    let refusals = [
        (
            methods::HPC_WRITE,
            json!({ "path": "admin/mospe", "value": 3 }),
            codes::NO_SUCH_PATH,
        ),
        (
            methods::HPC_WRITE,
            json!({ "path": "admin/slow-decay", "value": 1001 }),
            codes::INVALID_PARAMS,
        ),
        (
            methods::HPC_WRITE,
            json!({ "path": "admin/stay", "value": "yes" }),
            codes::INVALID_PARAMS,
        ),
        (
            methods::HPC_WRITE,
            json!({ "path": "nodes/1/load", "value": 1 }),
            codes::NO_SUCH_PATH,
        ),
        (
            methods::HPC_READ,
            json!({ "path": "admin/nonsense" }),
            codes::NO_SUCH_PATH,
        ),
        (
            methods::HPC_READ,
            json!({ "path": "nodes/77/load" }),
            codes::NO_SUCH_NODE,
        ),
        (
            methods::HPC_READ,
            json!({ "path": "nodes/x/load" }),
            codes::NO_SUCH_NODE,
        ),
        (
            methods::HPC_READ,
            json!({ "path": "remote/42/from" }),
            codes::NO_SUCH_PROCESS,
        ),
    ];
    for (method, params, want) in refusals {
        assert_eq!(
            rpc_err(&c, method, params.clone()).await.0,
            want,
            "{method} {params}"
        );
    }

    // decay/* applies to a process.
    let v = Victim::sleep(60);
    assert_eq!(
        rpc_err(
            &c,
            methods::HPC_WRITE,
            json!({ "path": "decay/fast", "value": 1 })
        )
        .await
        .0,
        codes::INVALID_PARAMS
    );
    wait_for(Duration::from_secs(5), || async {
        c.call_value(methods::PROC_GET, json!({ "pid": v.pid() }))
            .await
            .ok()
    })
    .await
    .expect("victim listed");
    c.call_value(
        methods::HPC_WRITE,
        json!({ "path": "decay/fast", "value": 1, "pid": v.pid() }),
    )
    .await
    .unwrap();
    let d = c
        .call_value(
            methods::PROC_READ,
            json!({ "pid": v.pid(), "field": "decay" }),
        )
        .await
        .unwrap();
    assert_eq!(d["value"], json!("fast"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_methods_act_on_real_processes() {
    let keys = Keys::generate(base());
    let agent = TestAgent::standalone(base(), &keys);
    let c = agent.client(&keys.admin).await;
    let v = Victim::sleep(120);
    let pid = v.pid();

    let row: ProcessInfo = wait_for(Duration::from_secs(5), || async {
        c.call(methods::PROC_GET, json!({ "pid": pid })).await.ok()
    })
    .await
    .expect("the new process is listed");
    assert_eq!(row.cmdline, "sleep 120");
    assert_eq!(row.user, "root");
    assert_eq!(
        (row.home, row.where_, row.nmigs),
        (1, 1, 0),
        "truthful migration fields before any migration"
    );
    assert!(
        row.lock,
        "processes not started through the agent are locked"
    );
    assert_eq!(row.ppid, std::process::id() as i32);

    // A process born a moment ago is found at once (the agent waits for a
    // sampling pass that lists it), for reads and for writes.
    for _ in 0..5 {
        let newborn = Victim::sleep(120);
        let row: ProcessInfo = c
            .call(methods::PROC_GET, json!({ "pid": newborn.pid() }))
            .await
            .expect("a newborn process is found");
        assert_eq!(row.pid, newborn.pid());
        let newborn = Victim::sleep(120);
        c.call_value(
            methods::PROC_WRITE,
            json!({ "pid": newborn.pid(), "field": "lock", "value": 0 }),
        )
        .await
        .expect("a newborn process is unlocked");
    }

    // Filters.
    let by_pid: Vec<ProcessInfo> = c
        .call(methods::PROC_LIST, json!({ "filter": { "pids": [pid] } }))
        .await
        .unwrap();
    assert_eq!(by_pid.len(), 1);
    let by_cmd: Vec<ProcessInfo> = c
        .call(
            methods::PROC_LIST,
            json!({ "filter": { "command": "sleep 120", "user": "root", "states": "S" } }),
        )
        .await
        .unwrap();
    assert!(by_cmd.iter().any(|p| p.pid == pid));
    let all: Vec<ProcessInfo> = c.call(methods::PROC_LIST, json!({})).await.unwrap();
    assert!(all.len() > 5 && all.windows(2).all(|w| w[0].pid < w[1].pid));
    let two: Vec<ProcessInfo> = c
        .call(methods::PROC_LIST, json!({ "filter": { "limit": 2 } }))
        .await
        .unwrap();
    assert_eq!(two.len(), 2);
    let movable: Vec<ProcessInfo> = c
        .call(methods::PROC_LIST, json!({ "filter": { "movable": true } }))
        .await
        .unwrap();
    assert!(movable.iter().all(|p| !p.lock));
    let migrated: Vec<ProcessInfo> = c
        .call(
            methods::PROC_LIST,
            json!({ "filter": { "migrated": true } }),
        )
        .await
        .unwrap();
    assert!(migrated.is_empty());
    assert_eq!(
        rpc_err(&c, methods::PROC_LIST, json!({ "filter": { "bogus": 1 } }))
            .await
            .0,
        codes::INVALID_PARAMS
    );

    // Per-process fields.
    for (f, want) in [
        ("where", json!(1)),
        ("home", json!(1)),
        ("lock", json!(1)),
        ("cantmove", json!("")),
        ("nmigs", json!(0)),
        ("migfilter", json!(0)),
        ("mignodes", json!(0)),
        ("migpolicy", json!(0)),
        ("decay", json!("slow")),
    ] {
        let r = c
            .call_value(methods::PROC_READ, json!({ "pid": pid, "field": f }))
            .await
            .unwrap();
        assert_eq!(r["value"], want, "{f}");
    }
    for (f, val) in [
        ("lock", json!(0)),
        ("migfilter", json!(1)),
        ("mignodes", json!(6)),
        ("migpolicy", json!(1)),
        ("decay", json!("none")),
    ] {
        c.call_value(
            methods::PROC_WRITE,
            json!({ "pid": pid, "field": f, "value": val }),
        )
        .await
        .unwrap();
    }
    let row: ProcessInfo = wait_for(Duration::from_secs(5), || async {
        let r: ProcessInfo = c
            .call(methods::PROC_GET, json!({ "pid": pid }))
            .await
            .ok()?;
        (!r.lock).then_some(r)
    })
    .await
    .expect("lock=0 shows");
    assert!(row.mask.migfilter && row.mask.mignodes == 6 && row.mask.migpolicy == 1);
    assert_eq!(row.decay, hpc::model::DecayClass::None);
    let (k, m) = rpc_err(
        &c,
        methods::PROC_WRITE,
        json!({ "pid": pid, "field": "goto", "value": 2 }),
    )
    .await;
    // Unlocked, a plain process may move on its own; here it cannot (what
    // it shares with the test harness, or no node 2 in a one-node cluster),
    // and it is told why and left running.
    assert!(
        [
            codes::MIGRATION_FAILED,
            codes::NODE_UNREACHABLE,
            codes::NO_SUCH_NODE
        ]
        .contains(&k),
        "{k}: {m}"
    );
    // The error names what stopped it: the missing node, or the process.
    let names_it = if k == codes::NO_SUCH_NODE {
        m.contains("node: 2")
    } else {
        m.contains(&pid.to_string()) || m.contains("node 2")
    };
    assert!(names_it, "{k}: {m}");
    let state = v.stat().first().cloned().unwrap_or_default();
    assert!(matches!(state.as_str(), "S" | "R"), "left running: {state}");
    for (method, params, want) in [
        (
            methods::PROC_WRITE,
            json!({ "pid": pid, "field": "nmigs", "value": 2 }),
            codes::NO_SUCH_PATH,
        ),
        (
            methods::PROC_WRITE,
            json!({ "pid": pid, "field": "lock", "value": 7 }),
            codes::INVALID_PARAMS,
        ),
        (
            methods::PROC_READ,
            json!({ "pid": pid, "field": "color" }),
            codes::INVALID_PARAMS,
        ),
    ] {
        assert_eq!(
            rpc_err(&c, method, params.clone()).await.0,
            want,
            "{method} {params}"
        );
    }

    // Renice reaches the kernel.
    c.call_value(methods::PROC_RENICE, json!({ "pid": pid, "nice": 7 }))
        .await
        .unwrap();
    assert_eq!(v.stat()[16], "7");
    c.call_value(methods::PROC_RENICE, json!({ "pid": pid, "nice": 20 }))
        .await
        .unwrap();
    assert_eq!(v.stat()[16], "19", "20 is taken as 19, like renice");
    assert_eq!(
        rpc_err(&c, methods::PROC_RENICE, json!({ "pid": pid, "nice": 21 }))
            .await
            .0,
        codes::INVALID_PARAMS
    );

    // Signals reach the kernel.
    for (signal, state) in [("STOP", "T"), ("SIGCONT", "S")] {
        c.call_value(
            methods::PROC_SIGNAL,
            json!({ "pid": pid, "signal": signal }),
        )
        .await
        .unwrap();
        let reached = wait_for(Duration::from_secs(2), || async {
            (v.stat()[0] == state).then_some(())
        })
        .await;
        assert!(
            reached.is_some(),
            "{signal} should leave the process in state {state}"
        );
    }
    assert_eq!(
        rpc_err(
            &c,
            methods::PROC_SIGNAL,
            json!({ "pid": pid, "signal": "USR9" })
        )
        .await
        .0,
        codes::INVALID_PARAMS
    );
    let agent_pid = agent.pid().unwrap() as i32;
    assert_eq!(
        rpc_err(
            &c,
            methods::PROC_SIGNAL,
            json!({ "pid": agent_pid, "signal": "KILL" })
        )
        .await
        .0,
        codes::FORBIDDEN
    );

    let t = Victim::sleep(120);
    wait_for(Duration::from_secs(5), || async {
        c.call_value(methods::PROC_GET, json!({ "pid": t.pid() }))
            .await
            .ok()
    })
    .await
    .unwrap();
    c.call_value(
        methods::PROC_SIGNAL,
        json!({ "pid": t.pid(), "signal": "TERM" }),
    )
    .await
    .unwrap();
    let mut t = t;
    let status = t.0.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc_sigterm())
    );

    c.call_value(
        methods::PROC_SIGNAL,
        json!({ "pid": pid, "signal": "KILL" }),
    )
    .await
    .unwrap();
    let mut v = v;
    let status = v.0.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );

    // Unknown and invalid PIDs.
    for bad in [pid, 0, -1, i32::MAX] {
        let (k, _) = rpc_err(
            &c,
            methods::PROC_SIGNAL,
            json!({ "pid": bad, "signal": "KILL" }),
        )
        .await;
        assert!(
            k == codes::NO_SUCH_PROCESS || k == codes::INVALID_PARAMS,
            "pid {bad}: {k}"
        );
    }
    assert_eq!(
        rpc_err(&c, methods::PROC_GET, json!({ "pid": 999_999_999 }))
            .await
            .0,
        codes::NO_SUCH_PROCESS
    );

    // whoami.
    let me: WhoAmI = c.call(methods::WHOAMI, json!({})).await.unwrap();
    assert_eq!(me.role, hpc::model::Role::Admin);
    assert_eq!(me.node, 1);
    assert!(me.key.starts_with("SHA256:"));
}

fn libc_sigterm() -> i32 {
    15
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_push_status_and_process_changes() {
    let keys = Keys::generate(base());
    let agent = TestAgent::standalone(base(), &keys);
    let c = agent.client(&keys.monitor).await;
    let mut updates = c.take_updates().unwrap();
    assert!(c.take_updates().is_none());

    let (k, m) = rpc_err(&c, methods::SUBSCRIBE, json!({ "interval_ms": 100 })).await;
    assert_eq!(k, codes::INVALID_PARAMS);
    assert!(m.contains("at least 250"), "{m}");
    let sub = c
        .call_value(
            methods::SUBSCRIBE,
            json!({ "interval_ms": 250, "processes": true }),
        )
        .await
        .unwrap();
    let id = sub["subscription"].as_u64().unwrap();

    let first: Update = tokio::time::timeout(Duration::from_secs(5), updates.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.subscription, first.seq), (id, 0));
    assert!(first.status.is_some());
    assert!(
        first.processes.as_ref().unwrap().added.len() > 5,
        "first push lists every process"
    );

    let v = Victim::sleep(120);
    let pid = v.pid();
    let mut saw_added = false;
    let mut saw_removed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut victim = Some(v);
    while tokio::time::Instant::now() < deadline && !(saw_added && saw_removed) {
        let Ok(Some(u)) = tokio::time::timeout(Duration::from_secs(3), updates.recv()).await else {
            break;
        };
        let d = u.processes.unwrap();
        if d.added.iter().any(|p| p.pid == pid) {
            saw_added = true;
            victim = None; // kill it; the next pushes must report it gone
        }
        if saw_added && d.removed.contains(&pid) {
            saw_removed = true;
        }
    }
    drop(victim);
    assert!(
        saw_added && saw_removed,
        "added={saw_added} removed={saw_removed}"
    );

    assert_eq!(
        c.call_value(methods::UNSUBSCRIBE, json!({ "subscription": id }))
            .await
            .unwrap(),
        json!(true)
    );
    assert_eq!(
        rpc_err(&c, methods::UNSUBSCRIBE, json!({ "subscription": id }))
            .await
            .0,
        codes::INVALID_PARAMS
    );
    // Drain, then nothing more arrives.
    tokio::time::sleep(Duration::from_millis(400)).await;
    while updates.try_recv().is_ok() {}
    assert!(
        tokio::time::timeout(Duration::from_millis(800), updates.recv())
            .await
            .is_err(),
        "no pushes after unsubscribe"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_keys_cannot_write_or_signal() {
    let keys = Keys::generate(base());
    let agent = TestAgent::standalone(base(), &keys);
    let m = agent.client(&keys.monitor).await;
    let v = Victim::sleep(120);
    let pid = v.pid();
    wait_for(Duration::from_secs(5), || async {
        m.call_value(methods::PROC_GET, json!({ "pid": pid }))
            .await
            .ok()
    })
    .await
    .unwrap();

    assert_eq!(read(&m, "admin/block").await, json!(0), "monitors may read");
    let me: WhoAmI = m.call(methods::WHOAMI, json!({})).await.unwrap();
    assert_eq!(me.role, hpc::model::Role::Monitor);
    for (method, params) in [
        (
            methods::HPC_WRITE,
            json!({ "path": "admin/block", "value": 1 }),
        ),
        (
            methods::HPC_WRITE,
            json!({ "path": "admin/speed", "value": 1 }),
        ),
        (
            methods::HPC_WRITE,
            json!({ "path": "decay/fast", "value": 1, "pid": pid }),
        ),
        (
            methods::PROC_WRITE,
            json!({ "pid": pid, "field": "lock", "value": 0 }),
        ),
        (
            methods::PROC_SIGNAL,
            json!({ "pid": pid, "signal": "KILL" }),
        ),
        (
            methods::PROC_SIGNAL,
            json!({ "pid": pid, "signal": "STOP" }),
        ),
        (methods::PROC_RENICE, json!({ "pid": pid, "nice": 10 })),
    ] {
        let (k, msg) = rpc_err(&m, method, params).await;
        assert_eq!(k, codes::FORBIDDEN, "{method}");
        assert!(msg.contains("monitor key may not"), "{msg}");
    }
    assert_eq!(read(&m, "admin/block").await, json!(0));
    assert_eq!(
        v.stat()[0],
        "S",
        "the process was neither stopped nor killed"
    );
    assert_eq!(v.stat()[16], "0", "nor reniced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_are_verified_against_known_hosts() {
    let keys = Keys::generate(base());
    let agent = TestAgent::standalone(base(), &keys);
    let kh = keys.dir.join("known_hosts");
    let addr = agent.addr.to_string();
    let mut cfg = agent.client_config(&keys.admin);
    cfg.pinned_host_key = None;
    cfg.known_hosts = kh.clone();

    // Unknown key, no TOFU: refused, distinct error.
    match Client::connect(&addr, &cfg).await {
        Err(ClientError::HostKeyUnknown { fingerprint, .. }) => {
            assert!(fingerprint.starts_with("SHA256:"))
        }
        other => panic!("expected HostKeyUnknown, got {:?}", other.err()),
    }
    assert!(!kh.exists());
    // TOFU when asked: recorded, and later connections need no TOFU.
    cfg.trust_on_first_use = true;
    Client::connect(&addr, &cfg).await.expect("tofu connect");
    assert!(
        std::fs::read_to_string(&kh)
            .unwrap()
            .contains(&format!("[127.0.0.1]:{}", agent.addr.port()))
    );
    cfg.trust_on_first_use = false;
    let c = Client::connect(&addr, &cfg)
        .await
        .expect("known key connects");
    assert_eq!(read(&c, "admin/mospe").await, json!(1));

    // A changed key is a distinct, explicit error, even with TOFU on.
    let other = testkit::new_key(&keys.dir.join("other_host"));
    std::fs::write(
        &kh,
        format!(
            "[127.0.0.1]:{} {}\n",
            agent.addr.port(),
            other.public_key().to_openssh().unwrap()
        ),
    )
    .unwrap();
    cfg.trust_on_first_use = true;
    match Client::connect(&addr, &cfg).await {
        Err(e @ ClientError::HostKeyChanged { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("HOST KEY CHANGED") && text.contains(":1"),
                "{text}"
            );
        }
        other => panic!("expected HostKeyChanged, got {:?}", other.err()),
    }
    // A pinned key that differs is refused the same way.
    let mut pinned = agent.client_config(&keys.admin);
    pinned.pinned_host_key = Some(other.public_key().clone());
    assert!(matches!(
        Client::connect(&addr, &pinned).await,
        Err(ClientError::HostKeyChanged { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_clients_learn_nothing() {
    let keys = Keys::generate(base());
    let mut agent = TestAgent::standalone(base(), &keys);
    let addr = agent.addr.to_string();
    match Client::connect(&addr, &agent.client_config(&keys.stranger)).await {
        Err(ClientError::AuthRefused { message, .. }) => assert!(
            message.contains("none of these keys is authorized"),
            "{message}"
        ),
        other => panic!("expected AuthRefused, got {:?}", other.err()),
    }
    // Raw garbage on the TCP port: the agent answers with its SSH banner only and stays up.
    let mut s = tokio::net::TcpStream::connect(agent.addr).await.unwrap();
    s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"node.status\"}\n\0\0\0\xff\xff\xff\xff garbage\r\n").await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut got),
    )
    .await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("SSH-2.0-openmosixd"), "{text}");
    assert!(!text.contains("tmem") && !text.contains("load"), "{text}");
    assert!(agent.is_running());
    let c = agent.client(&keys.admin).await;
    assert_eq!(read(&c, "admin/mospe").await, json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_the_connection_stays_usable() {
    let keys = Keys::generate(base());
    let mut agent = TestAgent::standalone(base(), &keys);
    let raw = connect_raw(&agent.addr.to_string(), &agent.client_config(&keys.admin))
        .await
        .unwrap();
    let (r, mut w) = tokio::io::split(raw.stream);
    let mut lines = BufReader::new(r).lines();
    let good =
        br#"{"jsonrpc":"2.0","id":"ok","method":"hpc.read","params":{"path":"admin/mospe"}}"#;

    let huge = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{{\"p\":\"{}\"}}}}",
        "a".repeat(2 << 20)
    );
    let cases: Vec<(Vec<u8>, i64, &str)> = vec![
        (b"{not json".to_vec(), codes::PARSE_ERROR, "not valid JSON"),
        (br#"{"jsonrpc":"2.0","id":2,"method":"no.such"}"#.to_vec(), codes::METHOD_NOT_FOUND, "unknown method"),
        (huge.into_bytes(), codes::MESSAGE_TOO_LARGE, "exceeds the limit of 1048576 bytes"),
        (br#"{"jsonrpc":"2.0","id":3,"method":"hpc.read","params":{"path":42}}"#.to_vec(), codes::INVALID_PARAMS, "invalid params for hpc.read"),
        (br#"{"jsonrpc":"2.0","id":4,"method":"proc.signal","params":{"pid":"one","signal":"KILL"}}"#.to_vec(), codes::INVALID_PARAMS, "invalid params for proc.signal"),
        (br#"{"jsonrpc":"2.0","id":5,"method":"proc.get","params":{"pid":999999999}}"#.to_vec(), codes::NO_SUCH_PROCESS, "no such process"),
        (br#"{"jsonrpc":"2.0","id":6,"method":"hpc.read","params":{"path":"nodes/999/load"}}"#.to_vec(), codes::NO_SUCH_NODE, "no such node"),
        (br#"{"jsonrpc":"2.0","id":7,"method":"proc.signal","params":{"pid":-1,"signal":"KILL"}}"#.to_vec(), codes::INVALID_PARAMS, "positive"),
        (br#"[{"jsonrpc":"2.0","id":8,"method":"node.status"}]"#.to_vec(), codes::INVALID_REQUEST, "batch"),
        (br#"{"id":9,"method":"node.status"}"#.to_vec(), codes::INVALID_REQUEST, "jsonrpc"),
        (br#"{"jsonrpc":"2.0","id":10}"#.to_vec(), codes::INVALID_REQUEST, "method"),
        (br#"{"jsonrpc":"2.0","id":11,"method":"node.status","params":[1]}"#.to_vec(), codes::INVALID_PARAMS, "object"),
        (br#"{"jsonrpc":"2.0","id":{"x":1},"method":"node.status"}"#.to_vec(), codes::INVALID_REQUEST, "id"),
        (br#""just a string""#.to_vec(), codes::INVALID_REQUEST, "object"),
        (b"\xff\xfe\x00binary".to_vec(), codes::PARSE_ERROR, "not valid JSON"),
    ];
    for (input, want, text) in cases {
        w.write_all(&input).await.unwrap();
        w.write_all(b"\n").await.unwrap();
        let reply: Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(reply["error"]["code"], json!(want), "{reply}");
        let msg = reply["error"]["message"].as_str().unwrap();
        assert!(msg.contains(text), "{msg} should mention {text}");
        // The connection still answers.
        w.write_all(good).await.unwrap();
        w.write_all(b"\n").await.unwrap();
        let ok: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(
            ok,
            json!({ "jsonrpc": "2.0", "id": "ok", "result": { "path": "admin/mospe", "value": 1 } })
        );
    }
    // A notification (no id) gets no answer; the next request is answered.
    w.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"node.status\"}\n")
        .await
        .unwrap();
    w.write_all(good).await.unwrap();
    w.write_all(b"\n").await.unwrap();
    let ok: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(ok["id"], json!("ok"));
    assert!(agent.is_running(), "the agent never panics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_state_survives_a_restart() {
    let keys = Keys::generate(base());
    let mut agent = TestAgent::standalone(base(), &keys);
    {
        let c = agent.client(&keys.admin).await;
        for (p, v) in [
            ("admin/block", 1),
            ("admin/stay", 1),
            ("admin/speed", 4321),
            ("admin/slow-decay", 950),
        ] {
            c.call_value(methods::HPC_WRITE, json!({ "path": p, "value": v }))
                .await
                .unwrap();
        }
    }
    let state = std::fs::metadata(agent.dir.join("state/agent-state.json")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&state.permissions()) & 0o777,
        0o600
    );
    agent.kill(); // even SIGKILL loses nothing: every write was persisted atomically
    agent.restart();
    let c = agent.client(&keys.admin).await;
    assert_eq!(read(&c, "admin/block").await, json!(1));
    assert_eq!(read(&c, "admin/stay").await, json!(1));
    assert_eq!(
        read(&c, "admin/speed").await,
        json!(4321),
        "an admin's setspeed is not recalibrated away"
    );
    assert_eq!(read(&c, "admin/slow-decay").await, json!(950));
    assert_eq!(read(&c, "admin/lstay").await, json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_openssh_speaks_the_subsystem() {
    let keys = Keys::generate(base());
    let agent = TestAgent::standalone(base(), &keys);
    let kh = keys.dir.join("kh_openssh");
    agent.write_known_hosts(&kh);
    let mut child = std::process::Command::new("ssh")
        .args(["-p", &agent.addr.port().to_string(), "-i"])
        .arg(&keys.admin)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-F",
            "/dev/null",
            "-s",
            "root@127.0.0.1",
            "openmosix",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ssh");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"hpc.read\",\"params\":{\"path\":\"admin/stay\"}}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"node.status\"}\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ssh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        json!({ "jsonrpc": "2.0", "id": 1, "result": { "path": "admin/stay", "value": 0 } })
    );
    assert_eq!(lines[1]["result"]["status"], json!("up"));
    // A shell is refused.
    let shell = std::process::Command::new("ssh")
        .args(["-p", &agent.addr.port().to_string(), "-i"])
        .arg(&keys.admin)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-F",
            "/dev/null",
            "root@127.0.0.1",
            "id",
        ])
        .output()
        .unwrap();
    assert!(!shell.status.success());
    assert!(!String::from_utf8_lossy(&shell.stdout).contains("uid="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_handshakes_time_out_and_one_address_holds_few_of_them() {
    use tokio::io::AsyncReadExt;
    let keys = Keys::generate(base());
    let mut agent = TestAgent::standalone(base(), &keys);
    agent.extra_args = [
        "--max-unauthenticated-per-source",
        "3",
        "--login-grace-secs",
        "2",
    ]
    .map(String::from)
    .to_vec();
    agent.restart();
    // Three silent connections take every waiting slot of this address.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tokio::net::TcpStream::connect(agent.addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A fourth is admitted, and closes the oldest at once (early drop).
    let fourth = tokio::net::TcpStream::connect(agent.addr).await.unwrap();
    let mut oldest = idle.remove(0);
    let mut got = Vec::new();
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(2), oldest.read_to_end(&mut got)).await;
    assert!(
        r.is_ok() && started.elapsed() < Duration::from_millis(1500),
        "the oldest waiting connection was not closed for the newcomer"
    );
    idle.push(fourth);
    // The others are closed when the login grace time ends.
    let started = std::time::Instant::now();
    for mut s in idle {
        let mut got = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
        assert!(r.is_ok(), "idle connection still open after 10 s");
        assert!(String::from_utf8_lossy(&got).starts_with("SSH-2.0-openmosixd"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
    // A real client gets in.
    let c = agent.client(&keys.admin).await;
    assert_eq!(read(&c, "admin/mospe").await, json!(1));
    assert!(agent.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cantmove_names_why_a_process_cannot_move() {
    let keys = Keys::generate(base());
    let agent = TestAgent::standalone(base(), &keys);
    let c = agent.client(&keys.admin).await;
    let mut locked_mem = std::process::Command::new("python3")
        .args([
            "-c",
            "import ctypes,time\nassert ctypes.CDLL(None).mlockall(3)==0\ntime.sleep(60)",
        ])
        .spawn()
        .unwrap();
    let pid = locked_mem.id() as i32;
    let plain = Victim::sleep(60);
    let rt = std::process::Command::new("chrt")
        .args(["-f", "5", "sleep", "60"])
        .spawn()
        .unwrap();
    let rt = Victim(rt);
    let row = |pid: i32| {
        let c = &c;
        async move {
            c.call::<_, ProcessInfo>(methods::PROC_GET, json!({ "pid": pid }))
                .await
                .ok()
        }
    };
    // On demand: proc.get and proc.read classify in depth.
    let r = wait_for(Duration::from_secs(5), || async {
        row(pid).await.filter(|r| !r.cantmove.is_empty())
    })
    .await
    .expect("listed");
    assert!(r.cantmove.starts_with("mem_lock"), "{}", r.cantmove);
    let v = c
        .call_value(
            methods::PROC_READ,
            json!({ "pid": pid, "field": "cantmove" }),
        )
        .await
        .unwrap();
    assert!(v["value"].as_str().unwrap().starts_with("mem_lock"));
    assert_eq!(
        wait_for(Duration::from_secs(5), || row(plain.pid()))
            .await
            .unwrap()
            .cantmove,
        ""
    );
    // chrt sets the policy, then becomes sleep: a row of it as chrt may
    // come before the policy.
    let r = wait_for(Duration::from_secs(5), || async {
        row(rt.pid()).await.filter(|r| r.cmdline == "sleep 60")
    })
    .await
    .expect("chrt became sleep");
    assert_eq!(r.cantmove, "rt_sched: real-time scheduling policy");
    // In the list: cheap reasons always; deep ones once a process is unlocked.
    c.call_value(
        methods::PROC_WRITE,
        json!({ "pid": pid, "field": "lock", "value": 0 }),
    )
    .await
    .unwrap();
    let listed = wait_for(Duration::from_secs(10), || async {
        let rows: Vec<ProcessInfo> = c
            .call(
                methods::PROC_LIST,
                json!({ "filter": { "pids": [pid, rt.pid()] } }),
            )
            .await
            .ok()?;
        (rows.len() == 2 && rows.iter().all(|r| !r.cantmove.is_empty())).then_some(rows)
    })
    .await
    .expect("both reasons in the list");
    assert!(listed.iter().any(|r| r.cantmove.starts_with("mem_lock")));
    let movable: Vec<ProcessInfo> = c
        .call(
            methods::PROC_LIST,
            json!({ "filter": { "movable": true, "pids": [pid] } }),
        )
        .await
        .unwrap();
    assert!(
        movable.is_empty(),
        "an unlocked process with a cantmove reason is not movable"
    );
    // A process in a mount namespace of its own (a container's) is named
    // once unlocked.
    let contained = Victim(
        std::process::Command::new("unshare")
            .args(["--mount", "sleep", "60"])
            .spawn()
            .unwrap(),
    );
    wait_for(Duration::from_secs(5), || async {
        row(contained.pid())
            .await
            .filter(|r| r.cmdline == "sleep 60")
    })
    .await
    .expect("unshare became sleep");
    c.call_value(
        methods::PROC_WRITE,
        json!({ "pid": contained.pid(), "field": "lock", "value": 0 }),
    )
    .await
    .unwrap();
    let r = wait_for(Duration::from_secs(10), || async {
        let rows: Vec<ProcessInfo> = c
            .call(
                methods::PROC_LIST,
                json!({ "filter": { "pids": [contained.pid()] } }),
            )
            .await
            .ok()?;
        rows.into_iter().find(|r| !r.cantmove.is_empty())
    })
    .await
    .expect("a reason for the contained process");
    assert!(r.cantmove.starts_with("container"), "{}", r.cantmove);
    let _ = locked_mem.kill();
    let _ = locked_mem.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_availability_is_reported_with_its_reason() {
    let keys = Keys::generate(base());
    let mut agent = TestAgent::standalone(base(), &keys);
    let c = agent.client(&keys.admin).await;
    let st: NodeStatus = c.call(methods::NODE_STATUS, json!({})).await.unwrap();
    assert!(
        st.migration.starts_with("migration available: CRIU 4."),
        "{}",
        st.migration
    );
    drop(c);
    // A node without a usable CRIU still runs and says why, in its status and in every refusal.
    agent.extra_args = vec!["--criu".into(), "/nonexistent/criu".into()];
    agent.restart();
    let c = agent.client(&keys.admin).await;
    let st: NodeStatus = c.call(methods::NODE_STATUS, json!({})).await.unwrap();
    assert_eq!(
        st.migration,
        "migration unavailable: CRIU not found at /nonexistent/criu"
    );
    let v = Victim::sleep(60);
    wait_for(Duration::from_secs(5), || async {
        c.call_value(methods::PROC_GET, json!({ "pid": v.pid() }))
            .await
            .ok()
    })
    .await
    .unwrap();
    for (method, params) in [
        (
            methods::PROC_WRITE,
            json!({ "pid": v.pid(), "field": "goto", "value": 2 }),
        ),
        (
            methods::HPC_WRITE,
            json!({ "path": "admin/expel", "value": 1 }),
        ),
    ] {
        let (k, m) = rpc_err(&c, method, params).await;
        assert_eq!(k, codes::UNAVAILABLE);
        assert!(
            m.ends_with("migration unavailable: CRIU not found at /nonexistent/criu"),
            "{m}"
        );
    }
}
