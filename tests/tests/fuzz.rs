//! Hostile input at a real agent, in the normal test run: more than 100,000
//! random and mutated frames (JSON-RPC lines on the local socket and over
//! SSH, and migration-wire messages on the migration subsystem), in bounded
//! time. The agent must not crash or hang: afterwards it answers a valid
//! request on the connections that took the abuse and on new ones.
//!
//! The frames are made from a seeded generator (`OPENMOSIX_FUZZ_SEED` picks
//! another seed; the seed is printed). For longer, coverage-guided runs of
//! the same parsers see `fuzz/` (`cargo fuzz`).
//!
//! The JSON-RPC callers are a monitor key and an unprivileged user: random
//! requests must never be able to act on this machine's processes.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::{Duration, Instant};

use hpc::client::connect_subsystem;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use testkit::{Keys, TestAgent, TestUser};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

fn base() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// Valid requests of every method, to mutate.
fn corpus() -> Vec<Value> {
    let r = |id: u64, method: &str, params: Value| json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
    vec![
        r(1, "hpc.read", json!({ "path": "admin/block" })),
        r(2, "hpc.list", json!({ "path": "nodes" })),
        r(3, "hpc.write", json!({ "path": "admin/speed", "value": 5 })),
        r(4, "node.status", json!({})),
        r(5, "cluster.nodes", json!({})),
        r(
            6,
            "proc.list",
            json!({ "filter": { "limit": 2, "user": "root" } }),
        ),
        r(7, "proc.get", json!({ "pid": 1 })),
        r(8, "proc.read", json!({ "pid": 1, "field": "where" })),
        r(
            9,
            "proc.write",
            json!({ "pid": 1, "field": "lock", "value": 1 }),
        ),
        r(
            10,
            "proc.signal",
            json!({ "pid": 1, "signal": "CONT", "start_time": 1 }),
        ),
        r(11, "proc.renice", json!({ "pid": 1, "nice": 3 })),
        r(
            12,
            "subscribe",
            json!({ "interval_ms": 250, "status": true }),
        ),
        r(13, "unsubscribe", json!({ "subscription": 1 })),
        r(14, "agent.whoami", json!({})),
        r(15, "proc.migrate", json!({ "pid": 1, "to": "balance" })),
        r(16, "job.status", json!({ "pid": 1 })),
        r(17, "job.list", json!({})),
        r(
            18,
            "job.moved",
            json!({ "home": 1, "home_pid": 1, "where": 2 }),
        ),
        r(
            19,
            "job.exited",
            json!({ "home_pid": 1, "node": 2, "code": 0 }),
        ),
        r(20, "cluster.forget_host_key", json!({ "node": 3 })),
        r(21, "cluster.gossip_stats", json!({})),
    ]
}

/// A random JSON value of bounded depth.
fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth == 0 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>() * 1e300),
        4 => json!(random_string(rng)),
        5 => json!(u64::MAX),
        6 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..4))
                .map(|_| (random_string(rng), random_value(rng, depth - 1)))
                .collect(),
        ),
    }
}

fn random_string(rng: &mut StdRng) -> String {
    const PIECES: &[&str] = &[
        "",
        "pid",
        "path",
        "admin/",
        "../",
        "\u{0}",
        "nodes/1/load",
        "🐧",
        "\"",
        "\\",
        "9999999999",
        "-1",
        "KILL",
        "home",
        "balance",
        "%s",
        "\u{202e}",
    ];
    (0..rng.random_range(0..4))
        .map(|_| PIECES[rng.random_range(0..PIECES.len())])
        .collect()
}

/// One mutation of a valid request, or random bytes.
fn json_frame(rng: &mut StdRng, corpus: &[Value]) -> Vec<u8> {
    let mut v = corpus[rng.random_range(0..corpus.len())].clone();
    match rng.random_range(0..10) {
        // Change a param, or the method, or the envelope.
        0..=3 => {
            if let Some(p) = v.get_mut("params").and_then(Value::as_object_mut) {
                let keys: Vec<String> = p.keys().cloned().collect();
                let key = if keys.is_empty() || rng.random_bool(0.2) {
                    random_string(rng)
                } else {
                    keys[rng.random_range(0..keys.len())].clone()
                };
                p.insert(key, random_value(rng, 2));
            }
        }
        4 => v["method"] = random_value(rng, 1),
        5 => v["id"] = random_value(rng, 1),
        6 => v["params"] = random_value(rng, 3),
        7 => {
            let o = v.as_object_mut().unwrap();
            let k: Vec<String> = o.keys().cloned().collect();
            o.remove(&k[rng.random_range(0..k.len())]);
        }
        // Bytes: truncated, flipped, or noise.
        8 => {
            let mut b = serde_json::to_vec(&v).unwrap();
            let at = rng.random_range(0..b.len());
            if rng.random_bool(0.5) {
                b.truncate(at);
            } else {
                b[at] ^= 1 << rng.random_range(0..8);
            }
            b.retain(|c| *c != b'\n');
            return b;
        }
        _ => {
            let n = rng.random_range(0..200);
            return (0..n)
                .map(|_| rng.random::<u8>())
                .filter(|c| *c != b'\n')
                .collect();
        }
    }
    serde_json::to_vec(&v).unwrap()
}

/// Writes `frames` lines while reading whatever comes back, then asks
/// `agent.whoami` and waits for its answer. Returns the number of frames.
async fn hammer<R, W>(read: R, mut write: W, frames: Vec<Vec<u8>>) -> usize
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let n = frames.len();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("\"id\":\"fuzz-end\"") {
                return Some(l);
            }
        }
        None
    });
    let mut batch = Vec::with_capacity(1 << 16);
    for f in frames {
        batch.extend_from_slice(&f);
        batch.push(b'\n');
        if batch.len() > 1 << 15 {
            write
                .write_all(&batch)
                .await
                .expect("the agent keeps reading");
            batch.clear();
        }
    }
    batch.extend_from_slice(br#"{"jsonrpc":"2.0","id":"fuzz-end","method":"agent.whoami"}"#);
    batch.push(b'\n');
    write
        .write_all(&batch)
        .await
        .expect("the agent keeps reading");
    let answer = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("the agent answers after the abuse")
        .unwrap()
        .expect("the connection stays open");
    assert!(answer.contains("\"result\""), "{answer}");
    n
}

/// A migration-wire frame: a mutated offer or resolve, a message out of
/// turn, or noise.
fn wire_frame(rng: &mut StdRng) -> Vec<u8> {
    let id = if rng.random_bool(0.5) {
        format!("{:032x}", rng.random::<u128>())
    } else {
        random_string(rng)
    };
    let mut v = match rng.random_range(0..6) {
        0 => json!({ "type": "offer", "id": id, "from": rng.random::<u32>(),
                     "estimate": rng.random::<u64>(), "job": { "home": 1, "home_pid": rng.random::<i32>() } }),
        1 => json!({ "type": "resolve", "id": id }),
        2 => {
            json!({ "type": "files", "files": [{ "name": random_string(rng), "size": rng.random::<u64>() }] })
        }
        3 => json!({ "type": "commit" }),
        4 => json!({ "type": random_string(rng) }),
        _ => {
            let n = rng.random_range(0..120);
            let mut b: Vec<u8> = (0..n).map(|_| rng.random::<u8>()).collect();
            b.retain(|c| *c != b'\n');
            return b;
        }
    };
    if rng.random_bool(0.3)
        && let Some(o) = v.as_object_mut()
    {
        o.insert(random_string(rng), random_value(rng, 2));
    }
    serde_json::to_vec(&v).unwrap()
}

/// Connects to a Unix socket as `uid`:`gid` (the agent reads the caller's
/// effective ids with SO_PEERCRED): only the connecting thread changes its
/// ids, with raw system calls, and changes them back.
async fn connect_as(uid: u32, gid: u32, path: std::path::PathBuf) -> tokio::net::UnixStream {
    let std_stream = tokio::task::spawn_blocking(move || {
        let keep = u32::MAX; // -1: leave unchanged
        // SAFETY: setresgid/setresuid on this thread only (raw syscalls, not
        // glibc's process-wide wrappers); the saved ids stay root's, so the
        // effective ids can be set back below.
        unsafe {
            assert_eq!(libc::syscall(libc::SYS_setresgid, keep, gid, keep), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, keep, uid, keep), 0);
        }
        let s = std::os::unix::net::UnixStream::connect(&path);
        // SAFETY: as above, back to root.
        unsafe {
            assert_eq!(libc::syscall(libc::SYS_setresuid, keep, 0, keep), 0);
            assert_eq!(libc::syscall(libc::SYS_setresgid, keep, 0, keep), 0);
        }
        s.expect("connect to the agent's socket as the user")
    })
    .await
    .unwrap();
    std_stream.set_nonblocking(true).unwrap();
    tokio::net::UnixStream::from_std(std_stream).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_hostile_frames_leave_the_agent_answering() {
    let seed: u64 = std::env::var("OPENMOSIX_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("fuzz seed {seed} (OPENMOSIX_FUZZ_SEED={seed} repeats this run)");
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = Keys::generate(base());
    let mut agent = TestAgent::standalone(base(), &keys);
    let started = Instant::now();
    let corpus = corpus();
    let mut sent = 0;

    // 1. The local socket, as an unprivileged user (the socket's directory
    //    is opened to it for the test).
    let user = TestUser::create("fz");
    for d in [agent.dir.clone(), agent.dir.join("run")] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let stream = connect_as(user.uid, user.gid, agent.socket()).await;
    let (read, write) = stream.into_split();
    let frames: Vec<Vec<u8>> = (0..60_000).map(|_| json_frame(&mut rng, &corpus)).collect();
    sent += hammer(read, write, frames).await;

    // 2. Over SSH, as a monitor.
    let raw =
        hpc::client::connect_raw(&agent.addr.to_string(), &agent.client_config(&keys.monitor))
            .await
            .unwrap();
    let (read, write) = tokio::io::split(raw.stream);
    let frames: Vec<Vec<u8>> = (0..30_000).map(|_| json_frame(&mut rng, &corpus)).collect();
    sent += hammer(read, write, frames).await;

    // 3. The migration subsystem, with the cluster key, in one session: a
    //    channel per one to three frames (the agent ends a migration channel
    //    at the first message it cannot take).
    let first = connect_subsystem(
        &agent.addr.to_string(),
        &agent.client_config(&keys.cluster_key_file()),
        hpc::paths::MIGRATION_SUBSYSTEM,
    )
    .await
    .expect("the migration subsystem opens");
    drop(first.stream);
    let session = first.session;
    let mut wire = 0;
    while wire < 10_000 {
        let ch = session.channel_open_session().await.expect("a channel");
        ch.request_subsystem(true, hpc::paths::MIGRATION_SUBSYSTEM)
            .await
            .unwrap();
        let (mut r, mut w) = tokio::io::split(ch.into_stream());
        let mut batch = Vec::new();
        for _ in 0..rng.random_range(1..4) {
            batch.extend_from_slice(&wire_frame(&mut rng));
            batch.push(b'\n');
            wire += 1;
        }
        let _ = w.write_all(&batch).await;
        let _ = w.shutdown().await;
        let mut answer = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut answer)).await;
        assert!(ended.is_ok(), "a migration channel was left hanging");
    }
    sent += wire;
    let took = started.elapsed();
    println!("{sent} frames in {took:?}");
    assert!(sent >= 100_000, "{sent} frames");
    assert!(agent.is_running(), "the agent survived");
    // A fresh connection is answered, and the agent still works.
    let c = agent.client(&keys.admin).await;
    let v: Value = c
        .call_value("hpc.read", json!({ "path": "admin/mospe" }))
        .await
        .unwrap();
    assert_eq!(v["value"], json!(1));
}
