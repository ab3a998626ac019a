//! The store and query library on a known history, run the same on SQLite and
//! on a real PostgreSQL server.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{Backend, TestDb};
use history::events::{
    Checkpoint, NodeChange, NodeMeta, ProcEnd, ProcEvent, ProcMove, ProcStart, TickBatch,
};
use history::overview::Level;
use history::query::History;
use history::sample::{Metric, NodeSample, Sample};
use history::store::{self, BLOCK_TICKS, Store};
use history::summary::{self, HOUR_MS};

const T0: i64 = 1_800_000_000_000;
const TICKS: i64 = 150;
const NODES: u32 = 3;

fn t(i: i64) -> i64 {
    T0 + i * 1000
}

/// Node `n`'s sample at tick `i`: node 3 is down for ticks 40..50, loads vary,
/// node 1 has a spike at tick 77.
fn sample(n: u32, i: i64) -> Sample {
    if n == 3 && (40..50).contains(&i) {
        return Sample::down(t(i));
    }
    Sample {
        t_ms: t(i),
        up: true,
        cpus: n,
        speed: 10_000 * n,
        load: if n == 1 && i == 77 {
            5000
        } else {
            ((i * 13 + i64::from(n) * 7) % 300) as u32
        },
        util: 100,
        mem_kib: 1_000_000 - (i as u64) * 10,
        rmem_kib: 900_000,
        tmem_kib: 2_000_000,
    }
}

fn start(id: i64, node: u32, pid: i32, at: i64) -> ProcEvent {
    ProcEvent::Start(ProcStart {
        id,
        home: node,
        home_pid: pid,
        node,
        pid,
        cmd: format!("job {id}"),
        owner: "alice".into(),
        started_ms: at,
    })
}

/// The known history: 150 ticks of 3 nodes; process 1 starts on node 1 at tick
/// 5, moves to node 2 at tick 70 (PID 900, 250 ms, 80 ms frozen), ends at tick
/// 120; process 2 runs on node 3 from tick 0 on; checkpoints at ticks 10 and 100.
fn batch(i: i64) -> TickBatch {
    let mut b = TickBatch {
        t_ms: t(i),
        samples: (1..=NODES)
            .map(|n| NodeSample {
                node: n,
                sample: sample(n, i),
            })
            .collect(),
        ..TickBatch::default()
    };
    match i {
        0 => {
            b.nodes = (1..=NODES)
                .map(|n| NodeMeta {
                    id: n,
                    name: format!("node{n}"),
                    addr: format!("10.0.0.{n}:4660"),
                })
                .collect();
            b.procs.push(start(2, 3, 300, t(0) - 5000));
        }
        5 => b.procs.push(start(1, 1, 100, t(5))),
        10 | 100 => b.checkpoints.push(Checkpoint {
            t_ms: t(i),
            label: format!("cp{i}"),
        }),
        40 => b.node_changes.push(NodeChange {
            node: 3,
            t_ms: t(40),
            up: false,
            reason: "connection refused".into(),
        }),
        70 => b.procs.push(ProcEvent::Move(ProcMove {
            id: 1,
            t_ms: t(70),
            from: 1,
            to: 2,
            pid: 900,
            duration_ms: Some(250),
            freeze_ms: Some(80),
            bytes: Some(4 << 20),
            why: Some("balance: load 200 here, node 2 at 0 would reach 100".into()),
            mode: Some(hpc::protocol::MigrationMode::Postcopy),
            released_ms: Some(600),
            pulled_bytes: Some(64 << 20),
        })),
        120 => b.procs.push(ProcEvent::End(ProcEnd {
            id: 1,
            t_ms: t(120),
            reason: "exited".into(),
            exit_code: Some(3),
        })),
        _ => {}
    }
    b
}

async fn write_known(db: &TestDb) -> Store {
    let mut s = Store::open(db.location.clone(), T0)
        .await
        .expect("open store");
    for i in 0..TICKS {
        s.write(&[batch(i)]).await.expect("write tick");
    }
    s
}

async fn known_history_answers_every_query(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = write_known(&db).await;
    let h = History::open(&store.history()).await.expect("open history");

    assert_eq!(h.span().await.unwrap(), Some((t(0), t(TICKS - 1))));
    let nodes = h.nodes().await.unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[1].name, "node2");

    // Samples come back exactly, across folded blocks and staged ticks.
    let expect: Vec<Sample> = (0..TICKS).map(|i| sample(1, i)).collect();
    assert_eq!(h.samples(1, t(0), t(TICKS)).await.unwrap(), expect);
    assert!(
        TICKS as usize > 2 * BLOCK_TICKS,
        "the history spans folded blocks"
    );
    let mid = h.samples(3, t(45), t(65)).await.unwrap();
    assert_eq!(mid, (45..=65).map(|i| sample(3, i)).collect::<Vec<_>>());

    // Downsampled: 15 buckets of 10 s; min/max/avg match a direct computation,
    // the spike survives, the down samples carry no figures.
    let series = h
        .series(1, &[Metric::Load, Metric::Mem], t(0), t(TICKS), 15)
        .await
        .unwrap();
    assert_eq!(series[0].buckets.len(), 15);
    for (k, b) in series[0].buckets.iter().enumerate() {
        let vals: Vec<f64> = (k as i64 * 10..k as i64 * 10 + 10)
            .map(|i| f64::from(sample(1, i).load))
            .collect();
        assert_eq!(b.t_ms, t(k as i64 * 10));
        assert_eq!(b.samples, 10);
        assert_eq!(b.stat.min, vals.iter().cloned().fold(f64::MAX, f64::min));
        assert_eq!(b.stat.max, vals.iter().cloned().fold(f64::MIN, f64::max));
        assert!((b.stat.avg - vals.iter().sum::<f64>() / 10.0).abs() < 1e-9);
    }
    assert_eq!(series[0].buckets[7].stat.max, 5000.0);
    let s3 = h
        .series(3, &[Metric::Load], t(0), t(TICKS), 15)
        .await
        .unwrap();
    assert_eq!(s3[0].buckets.len(), 14, "bucket 40..50 was all down");

    let events = h.node_events(Some(3), t(0), t(TICKS)).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].t_ms, events[0].up, events[0].reason.as_str()),
        (t(40), false, "connection refused")
    );

    // Checkpoints.
    let cps = h.checkpoints(t(0), t(TICKS)).await.unwrap();
    assert_eq!(
        cps.iter()
            .map(|c| (c.t_ms, c.label.as_str()))
            .collect::<Vec<_>>(),
        [(t(10), "cp10"), (t(100), "cp100")]
    );

    // Processes alive at T, across the migration.
    let on = |node, at| {
        let h = &h;
        async move {
            h.processes_at(Some(node), at)
                .await
                .unwrap()
                .iter()
                .map(|p| (p.process.start.id, p.pid))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(on(1, t(3)).await, []);
    assert_eq!(on(1, t(50)).await, [(1, 100)]);
    assert_eq!(on(2, t(50)).await, []);
    assert_eq!(on(1, t(80)).await, []);
    assert_eq!(on(2, t(80)).await, [(1, 900)]);
    assert_eq!(on(2, t(130)).await, []);
    assert_eq!(on(3, t(130)).await, [(2, 300)]);
    let all = h.processes_at(None, t(90)).await.unwrap();
    assert_eq!(all.len(), 2);

    // The moves of a process, found by its identity.
    let found = h.find_process(1, 100).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].ended_ms, Some(t(120)));
    assert_eq!(found[0].exit_code, Some(3));
    let moves = h.moves(found[0].start.id).await.unwrap();
    assert_eq!(moves.len(), 1);
    assert_eq!(
        (
            moves[0].from,
            moves[0].to,
            moves[0].pid,
            moves[0].duration_ms,
            moves[0].freeze_ms,
            moves[0].why.as_deref(),
            moves[0].mode,
            moves[0].released_ms,
            moves[0].pulled_bytes,
        ),
        (
            1,
            2,
            900,
            Some(250),
            Some(80),
            Some("balance: load 200 here, node 2 at 0 would reach 100"),
            Some(hpc::protocol::MigrationMode::Postcopy),
            Some(600),
            Some(64 << 20),
        )
    );

    // Statistics.
    let st = h.node_stats(3, t(0), t(TICKS)).await.unwrap();
    assert_eq!((st.samples, st.up_samples), (150, 140));
    assert_eq!(st.up_ms, 140 * 1000);
    let loads: Vec<f64> = (0..TICKS)
        .filter(|i| !(40..50).contains(i))
        .map(|i| f64::from(sample(3, i).load))
        .collect();
    let load = st.load.unwrap();
    assert!((load.avg - loads.iter().sum::<f64>() / loads.len() as f64).abs() < 1e-9);
    assert_eq!(st.used_mem_kib.unwrap().min, 1_000_000.0);
    let cl = h.cluster_stats(t(0), t(TICKS)).await.unwrap();
    assert_eq!((cl.samples, cl.up_samples), (450, 440));
    assert_eq!(cl.load.unwrap().max, 5000.0);
    assert_eq!(cl.nodes.len(), 3);
    h.close().await;

    // After a restart the writer resumes: process 2 still runs on node 3.
    store.close().await;
    let store = Store::open(db.location.clone(), t(TICKS)).await.unwrap();
    let open = store.open_processes().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].start.id, open[0].node, open[0].pid), (2, 3, 300));
    assert_eq!(store.next_process_id().await.unwrap(), 3);
    store.close().await;
}

async fn rotation_archives_the_history(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut store = Store::open(db.location.clone(), T0).await.unwrap();
    for i in 0..20 {
        store.write(&[batch(i)]).await.unwrap();
    }
    let (mut store, archived) = store.rotate(t(20)).await.expect("rotate");
    for i in 20..30 {
        store.write(&[batch(i)]).await.unwrap();
    }
    let list = store::list_histories(&db.location).await.unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0].history, archived);
    assert_eq!((list[0].started_ms, list[0].ended_ms), (T0, Some(t(20))));
    assert_eq!(list[1].ended_ms, None);

    let old = History::open(&archived).await.unwrap();
    assert_eq!(old.span().await.unwrap(), Some((t(0), t(19))));
    assert_eq!(old.checkpoints(0, i64::MAX).await.unwrap()[0].label, "cp10");
    assert_eq!(old.processes_at(None, t(15)).await.unwrap().len(), 2);
    old.close().await;
    let new = History::open(&store.history()).await.unwrap();
    assert_eq!(new.span().await.unwrap(), Some((t(20), t(29))));
    assert!(new.checkpoints(0, i64::MAX).await.unwrap().is_empty());
    new.close().await;
    store.close().await;
}

/// Node `n`'s sample at second `i` of a three-day import: a spike of 9000 on
/// node 2 at hour 30, node 1 down for hour 50.
fn long_sample(n: u32, i: i64) -> Sample {
    let t = T0 + i * 1000;
    if n == 1 && (50 * 3600..51 * 3600).contains(&i) {
        return Sample::down(t);
    }
    Sample {
        t_ms: t,
        up: true,
        cpus: 2,
        speed: 10_000,
        load: if n == 2 && i == 30 * 3600 + 17 {
            9000
        } else {
            ((i / 60 + i64::from(n)) % 200) as u32
        },
        util: 100,
        mem_kib: 500_000,
        rmem_kib: 400_000,
        tmem_kib: 1_000_000,
    }
}

async fn summaries_and_series_answer_long_spans(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut store = Store::open(db.location.clone(), T0).await.unwrap();
    let secs = 3 * 86_400;
    // Imported a day at a time, as a generator or an import would.
    for day in 0..3 {
        let mut chunk = std::collections::BTreeMap::new();
        for n in 1..=2u32 {
            let s: Vec<Sample> = (day * 86_400..(day + 1) * 86_400)
                .map(|i| long_sample(n, i))
                .collect();
            chunk.insert(n, s);
        }
        store.import(&chunk).await.unwrap();
    }
    let h = History::open(&store.history()).await.unwrap();
    let end = T0 + (secs - 1) * 1000;
    // Every level keeps the spike and the outage, whatever the span.
    for (span_ms, columns, level) in [
        (3_600_000, 1200, Level::Raw),
        (86_400_000, 1200, Level::Minutes),
        (3 * 86_400_000 - 1000, 600, Level::Rollup(HOUR_MS)),
    ] {
        let from = end - span_ms;
        let ov = h.overview(from, end, columns).await.unwrap();
        assert_eq!(ov.level, Some(level), "{span_ms}");
        assert_eq!(ov.nodes.len(), 2);
        let max2 = ov.nodes[&2]
            .load
            .iter()
            .map(|b| b.stat.max)
            .fold(0.0, f64::max);
        let spike_in = from <= T0 + (30 * 3600 + 17) * 1000;
        assert_eq!(max2 == 9000.0, spike_in, "{level:?}");
        assert!(
            ov.nodes[&1]
                .mem
                .iter()
                .all(|b| (b.stat.avg - 50.0).abs() < 1e-9)
        );
    }
    assert_eq!(
        Level::for_span(365 * 86_400_000, 1200),
        Level::Rollup(summary::DAY_MS)
    );
    let year = h.overview(end - 365 * 86_400_000, end, 1200).await.unwrap();
    let days = end.div_euclid(summary::DAY_MS) - T0.div_euclid(summary::DAY_MS) + 1;
    assert_eq!(
        year.nodes[&2].load.len() as i64,
        days,
        "a day summary per calendar day"
    );
    assert_eq!(
        year.nodes[&2]
            .load
            .iter()
            .map(|b| b.stat.max)
            .fold(0.0, f64::max),
        9000.0
    );

    // The report equals the figures of the samples, and SQL over the blocks.
    let r = h.report(T0, end).await.unwrap();
    let n1 = r.nodes.iter().find(|n| n.node == 1).unwrap();
    assert_eq!(n1.summary.n, secs);
    assert_eq!(n1.summary.n_up, secs - 3600);
    assert_eq!(
        (n1.summary.up_ms, n1.summary.down_ms),
        ((secs - 3600) * 1000, 3600 * 1000)
    );
    let loads: Vec<i64> = (0..secs)
        .map(|i| long_sample(2, i))
        .map(|s| i64::from(s.load))
        .collect();
    let n2 = r.nodes.iter().find(|n| n.node == 2).unwrap();
    let avg = loads.iter().sum::<i64>() as f64 / loads.len() as f64;
    let got = n2.load.unwrap();
    assert_eq!(got.max, 9000.0);
    assert!((got.avg - avg).abs() < 1e-9);
    // Read from the hour series; the span is the samples'.
    assert_eq!(r.covered, Some((T0, end)));
    let pool = history::store::location::connect(&db.location, false)
        .await
        .unwrap();
    let row = history::store::sql::query(
        "SELECT COUNT(*), CAST(SUM(load_sum) AS BIGINT), CAST(SUM(n_up) AS BIGINT), \
         MAX(load_max) FROM blocks WHERE node = 2"
            .into(),
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let get = |i| history::store::sql::int(&row, i).unwrap();
    assert_eq!(get(0), secs / 60, "a block per minute");
    assert_eq!(get(1), loads.iter().sum::<i64>());
    assert_eq!(get(2), secs);
    assert_eq!(get(3), 9000);
    // The hour series: 64 hours to a row.
    let rows = history::store::sql::query(
        "SELECT COUNT(*) FROM series WHERE span_ms = $1 AND node = 2".into(),
    )
    .bind(HOUR_MS)
    .fetch_one(&pool)
    .await
    .unwrap();
    let first = history::store::summaries::slot_of(HOUR_MS, T0).0;
    let last = history::store::summaries::slot_of(HOUR_MS, end).0;
    let expected = (last - first) / (64 * HOUR_MS) + 1;
    assert_eq!(history::store::sql::int(&rows, 0).unwrap(), expected);
    pool.close().await;
    h.close().await;
    store.close().await;
}

macro_rules! on_both_backends {
    ($($name:ident),*) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Backend::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Backend::Postgres).await
            })*
        }
    };
}

on_both_backends!(
    summaries_and_series_answer_long_spans,
    known_history_answers_every_query,
    rotation_archives_the_history
);

/// A tmpfs of `kib` KiB mounted on a fresh directory; unmounted and removed on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn new(kib: u32) -> Self {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("fulldisk_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let st = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0755"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .expect("mount (the test needs root)");
        assert!(st.success(), "mount tmpfs (the test needs root)");
        Self(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A full disk: the write fails with SQLite's "full" error, nothing is
/// corrupted, everything written before is still there, and the same ticks
/// are written once space is freed (what the daemon's retry queue relies on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_is_a_clear_error_and_no_corruption() {
    let disk = SmallDisk::new(768);
    let db = disk.0.join("current.db");
    let ballast = disk.0.join("ballast");
    std::fs::write(&ballast, vec![0u8; 200 << 10]).unwrap();
    let mut s = Store::open(store::Location::Sqlite(db.clone()), T0)
        .await
        .unwrap();
    let mut written = 0;
    let err = loop {
        // Big, incompressible ticks fill the disk quickly.
        let mut b = batch(written);
        for k in 0..300u32 {
            b.samples.push(NodeSample {
                node: 100 + k,
                sample: Sample {
                    load: (written as u32)
                        .wrapping_mul(2_654_435_761)
                        .wrapping_add(k * 7919)
                        % 100_000,
                    mem_kib: u64::from(k) * 1_000_003 + written as u64,
                    ..sample(1, written)
                },
            });
        }
        match s.write(std::slice::from_ref(&b)).await {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 10_000, "the disk never filled");
    };
    let msg = err.to_string();
    eprintln!("full disk after {written} ticks: {msg}");
    assert!(msg.contains("full"), "clear error: {msg}");
    assert!(written > 0);
    s.close().await;
    assert_eq!(store::integrity_check(&db).await.unwrap(), "ok");
    let h = History::open(&store::HistoryRef {
        location: store::Location::Sqlite(db.clone()),
        id: 1,
    })
    .await
    .unwrap();
    let got = h.samples(1, 0, i64::MAX).await.unwrap();
    assert_eq!(got.len() as i64, written, "every committed tick is there");
    h.close().await;

    // Space comes back: the failed tick is written, and more after it.
    std::fs::remove_file(&ballast).unwrap();
    let mut s = Store::open(store::Location::Sqlite(db.clone()), T0)
        .await
        .unwrap();
    s.write(&[batch(written), batch(written + 1)])
        .await
        .expect("write after space freed");
    s.close().await;
    assert_eq!(store::integrity_check(&db).await.unwrap(), "ok");
}

/// A history directory others can write to is refused (the original
/// collector's /tmp symlink hole, CVE-2005-0894).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_world_writable_history_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = db.dir().unwrap().clone();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = match Store::open(db.location.clone(), T0).await {
        Ok(_) => panic!("opened a history in a world-writable directory"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("refusing"), "{err}");
    assert!(!dir.join("current.db").exists());
}
