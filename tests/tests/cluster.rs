//! Several agents sharing a map gossip their figures; a stopped node shows down;
//! a node with another cluster key cannot inject figures.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::{Duration, Instant};

use hpc::client::Client;
use hpc::model::{Liveness, NodeStatus};
use hpc::protocol::{PathValue, methods};
use serde_json::json;
use testkit::{Keys, TestAgent, TestCluster, loopback_addrs, map_for, wait_for};

fn base() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

async fn nodes(c: &Client) -> Vec<NodeStatus> {
    c.call(methods::CLUSTER_NODES, json!({}))
        .await
        .expect("cluster.nodes")
}

fn up(ns: &[NodeStatus], id: u32) -> bool {
    ns.iter()
        .any(|n| n.id == id && n.status == Liveness::Up && n.speed > 0 && n.cpus > 0 && n.tmem > 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_see_each_other_and_a_stopped_one_goes_down() {
    let mut cluster = TestCluster::start(base(), 3);
    let admin = cluster.keys.admin.clone();
    let clients = [
        cluster.agents[0].client(&admin).await,
        cluster.agents[1].client(&admin).await,
        cluster.agents[2].client(&admin).await,
    ];
    // Everyone sees everyone up, with real figures.
    for c in &clients {
        let all = wait_for(Duration::from_secs(20), || async {
            let ns = nodes(c).await;
            (ns.len() == 3 && (1..=3).all(|id| up(&ns, id))).then_some(ns)
        })
        .await;
        assert!(
            all.is_some(),
            "{} does not see all three nodes up: {:?}",
            c.addr(),
            nodes(c).await
        );
    }
    // A changed figure on node 2 reaches node 1 (setspeed steers the others' view).
    clients[1]
        .call_value(
            methods::HPC_WRITE,
            json!({ "path": "admin/speed", "value": 777 }),
        )
        .await
        .unwrap();
    let seen = wait_for(Duration::from_secs(10), || async {
        let r: PathValue = clients[0]
            .call(methods::HPC_READ, json!({ "path": "nodes/2/speed" }))
            .await
            .ok()?;
        (r.value == json!(777)).then_some(())
    })
    .await;
    assert!(seen.is_some(), "node 1 never saw node 2's new speed");
    let r: PathValue = clients[0]
        .call(methods::HPC_READ, json!({ "path": "nodes/3/load" }))
        .await
        .unwrap();
    assert!(r.value.is_u64());

    // Stop node 3: the others show it down within a few seconds.
    let stopped = Instant::now();
    cluster.agents[2].stop();
    for c in &clients[..2] {
        let down = wait_for(Duration::from_secs(20), || async {
            let ns = nodes(c).await;
            let n3 = ns.iter().find(|n| n.id == 3)?;
            (n3.status == Liveness::Down).then(|| n3.clone())
        })
        .await
        .unwrap_or_else(|| panic!("{} still shows node 3 up", c.addr()));
        assert!(down.reason.unwrap().contains("stopped answering"));
        let r: PathValue = c
            .call(methods::HPC_READ, json!({ "path": "nodes/3/status" }))
            .await
            .unwrap();
        assert_eq!(r.value, json!("down"));
        let r: PathValue = c
            .call(methods::HPC_READ, json!({ "path": "nodes/3/CPUs" }))
            .await
            .unwrap();
        assert_eq!(
            r.value,
            json!(-101),
            "openMosix's CPUs value of a down node"
        );
    }
    eprintln!(
        "node 3 shown down {:.1} s after it stopped",
        stopped.elapsed().as_secs_f64()
    );
    assert!(up(&nodes(&clients[0]).await, 2), "node 2 stays up");

    // It comes back.
    cluster.agents[2].restart();
    let back = wait_for(Duration::from_secs(20), || async {
        up(&nodes(&clients[0]).await, 3).then_some(())
    })
    .await;
    assert!(back.is_some(), "node 3 did not come back up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_from_outside_the_cluster_is_ignored() {
    // Nodes 1 and 2 share a cluster key; their map also names node 3, whose
    // address an intruder with its own cluster key holds, so they gossip to it.
    let keys = Keys::generate(base());
    let outsider_keys = Keys::generate(base());
    let addrs = loopback_addrs(3);
    let map = map_for(&addrs);
    let a1 = TestAgent::start(base(), &keys, 1, addrs[0], &map);
    let _a2 = TestAgent::start(base(), &keys, 2, addrs[1], &map);
    let intruder = TestAgent::start(base(), &outsider_keys, 3, addrs[2], &map);
    let c = a1.client(&keys.admin).await;
    wait_for(Duration::from_secs(20), || async {
        up(&nodes(&c).await, 2).then_some(())
    })
    .await
    .expect("node 2 up");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ns = nodes(&c).await;
    let n3 = ns.iter().find(|n| n.id == 3).expect("node 3 is in the map");
    assert_eq!(
        n3.status,
        Liveness::Down,
        "the intruder must not be accepted: {n3:?}"
    );
    assert_eq!((n3.speed, n3.tmem), (0, 0), "no figures from the intruder");
    // And the intruder learns nothing about the cluster.
    let ic = intruder.client(&outsider_keys.admin).await;
    let seen = nodes(&ic).await;
    assert!(!up(&seen, 1) && !up(&seen, 2), "{seen:?}");
}
