//! `openmosix-lab` as root: a real N-node cluster in network namespaces on one
//! machine; each node sees only its own processes; `down` removes everything;
//! a failed `up` leaves nothing behind. Lab names and subnets are unique per
//! test process so runs can overlap.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hpc::model::{Liveness, NodeStatus, ProcessInfo};
use hpc::protocol::methods;
use serde_json::json;
use testkit::{TestLab, run_lab as lab, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_up_status_scoping_and_down() {
    let l = TestLab::up("t", 88, 3);
    let subnet = l.subnet.clone();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(l.dir.join("lab.json")).unwrap()).unwrap();
    let pids: Vec<u32> = state["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(pids.len(), 3);

    // Every node sees the three nodes up, over the bridge, with real figures.
    let c1 = l.client(1).await;
    let c2 = l.client(2).await;
    let all_up = wait_for(Duration::from_secs(20), || async {
        let ns: Vec<NodeStatus> = c2.call(methods::CLUSTER_NODES, json!({})).await.ok()?;
        (ns.len() == 3 && ns.iter().all(|n| n.status == Liveness::Up && n.speed > 0)).then_some(ns)
    })
    .await;
    assert!(all_up.is_some(), "node 2 does not see three nodes up");
    let status = lab(&["status", "--name", &l.name, "--json"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        st["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["running"] == json!(true))
    );
    let text = lab(&["status", "--name", &l.name]);
    assert!(String::from_utf8_lossy(&text.stdout).contains(&format!("{subnet}.3")));

    // A process started in node 2's namespace belongs to node 2 only.
    let mut job = Command::new("nsenter")
        .arg(format!("--net=/run/netns/om-{}-2", l.name))
        .args(["sleep", "120"])
        .spawn()
        .unwrap();
    let pid = job.id() as i32;
    let on2 = wait_for(Duration::from_secs(5), || async {
        let rows: Vec<ProcessInfo> = c2.call(methods::PROC_LIST, json!({})).await.ok()?;
        rows.iter().any(|p| p.pid == pid).then_some(rows)
    })
    .await
    .expect("node 2 lists the job");
    assert!(
        on2.iter().all(|p| !p.cmdline.starts_with('[')),
        "no kernel threads on a lab node"
    );
    let on1: Vec<ProcessInfo> = c1.call(methods::PROC_LIST, json!({})).await.unwrap();
    assert!(
        !on1.iter().any(|p| p.pid == pid),
        "node 1 must not list node 2's process"
    );
    assert_eq!(on1.len(), 1, "node 1 runs only its agent: {on1:?}");
    let _ = job.kill();
    let _ = job.wait();

    // A second lab of the same name is refused.
    let again = lab(&[
        "up", "--name", &l.name, "--nodes", "1", "--subnet", "10.90.0",
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    // Down removes everything it made and stops the agents.
    drop((c1, c2));
    let down = lab(&["down", "--name", &l.name]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(!l.dir.exists());
    for i in 1..=3 {
        assert!(!Path::new(&format!("/run/netns/om-{}-{i}", l.name)).exists());
        assert!(!Path::new(&format!("/sys/class/net/om{}-{i}", l.name)).exists());
    }
    assert!(!Path::new(&format!("/sys/class/net/omb-{}", l.name)).exists());
    for pid in pids {
        let gone = wait_for(Duration::from_secs(5), || async {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            (stat.is_empty() || stat.contains(") Z")).then_some(())
        })
        .await;
        assert!(gone.is_some(), "agent {pid} still runs");
    }
}

#[test]
fn a_failed_up_leaves_nothing_behind() {
    let n = std::process::id() % 200;
    let name = format!("f{n}");
    // An agent binary that does not start: the first node fails after the network was built.
    let out = lab(&[
        "up",
        "--name",
        &name,
        "--nodes",
        "2",
        "--subnet",
        &format!("10.91.{n}"),
        "--agent",
        "/bin/false",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exited") && err.contains("everything made so far was removed"),
        "{err}"
    );
    assert!(!Path::new("/var/lib/openmosix/lab").join(&name).exists());
    for i in 1..=2 {
        assert!(!Path::new(&format!("/run/netns/om-{name}-{i}")).exists());
    }
    assert!(!Path::new(&format!("/sys/class/net/omb-{name}")).exists());
    // Bad arguments are refused before anything is made.
    let bad = lab(&["up", "--name", "Bad_Name", "--nodes", "2"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("lower-case"));
    let none = lab(&["down", "--name", &format!("none{n}")]);
    assert!(String::from_utf8_lossy(&none.stderr).contains("no lab named"));
}
