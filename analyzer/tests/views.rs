//! The analyzer and the process history, driven through egui_kittest, on a
//! real SQLite history written by the history library's writer (the store the
//! collector uses): three nodes over ten minutes with a load spike above 75,
//! an outage, two checkpoints, a process that moves and ends, and one that
//! keeps running. Nothing is mocked; the queries run on a real runtime.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use analyzer::{Analyzer, ProcessHistory, Source};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use history::events::{
    Checkpoint, NodeChange, NodeMeta, ProcEnd, ProcEvent, ProcMove, ProcStart, TickBatch,
};
use history::sample::{NodeSample, Sample};
use history::store::{Location, Store};
use viewer::tasks::Tasks;
use viewer::{ViewerContext, Window};

const TICKS: i64 = 600;

fn t0() -> i64 {
    (hpc::clock::now_ms() as i64 / 1000 - TICKS) * 1000
}

fn sample(t0: i64, n: u32, i: i64) -> Sample {
    let t = t0 + i * 1000;
    if n == 3 && (300..360).contains(&i) {
        return Sample::down(t);
    }
    Sample {
        t_ms: t,
        up: true,
        cpus: 1,
        speed: 10_000,
        load: if n == 2 && (100..150).contains(&i) {
            120
        } else {
            (10 + (i % 40) + i64::from(n)) as u32
        },
        util: 50,
        mem_kib: 1_000_000 + u64::from(n) * 1000,
        rmem_kib: 900_000,
        tmem_kib: 2_000_000,
    }
}

fn batch(t0: i64, i: i64) -> TickBatch {
    let t = t0 + i * 1000;
    let mut b = TickBatch {
        t_ms: t,
        samples: (1..=3)
            .map(|n| NodeSample {
                node: n,
                sample: sample(t0, n, i),
            })
            .collect(),
        ..TickBatch::default()
    };
    let start = |id, node, pid| {
        ProcEvent::Start(ProcStart {
            id,
            home: node,
            home_pid: pid,
            node,
            pid,
            cmd: format!("job{id} --work"),
            owner: "alice".into(),
            started_ms: t,
        })
    };
    match i {
        0 => {
            b.nodes = (1..=3)
                .map(|n| NodeMeta {
                    id: n,
                    name: format!("node{n}"),
                    addr: format!("10.0.0.{n}:4660"),
                })
                .collect();
            b.node_changes = (1..=3)
                .map(|n| NodeChange {
                    node: n,
                    t_ms: t,
                    up: true,
                    reason: String::new(),
                })
                .collect();
        }
        10 => b.procs.push(start(1, 1, 500)),
        20 => b.procs.push(start(2, 3, 700)),
        50 => b.checkpoints.push(Checkpoint {
            t_ms: t,
            label: "alpha".into(),
        }),
        200 => b.procs.push(ProcEvent::Move(ProcMove {
            id: 1,
            t_ms: t,
            from: 1,
            to: 2,
            pid: 901,
            duration_ms: Some(240),
            freeze_ms: Some(85),
            bytes: Some(8 << 20),
            why: Some("asked for".into()),
            mode: Some(hpc::protocol::MigrationMode::Postcopy),
            released_ms: Some(400),
            pulled_bytes: Some(64 << 20),
        })),
        300 => b.node_changes.push(NodeChange {
            node: 3,
            t_ms: t,
            up: false,
            reason: "connection refused".into(),
        }),
        360 => b.node_changes.push(NodeChange {
            node: 3,
            t_ms: t,
            up: true,
            reason: String::new(),
        }),
        400 => b.checkpoints.push(Checkpoint {
            t_ms: t,
            label: "beta".into(),
        }),
        500 => b.procs.push(ProcEvent::End(ProcEnd {
            id: 1,
            t_ms: t,
            reason: "exited".into(),
            exit_code: Some(0),
        })),
        _ => {}
    }
    b
}

fn scratch() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "analyzer-{}-{}",
        std::process::id(),
        hpc::clock::now_ms()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the history; returns its location and its first tick.
fn write_history(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> (Location, i64) {
    let loc = Location::Sqlite(dir.join("current.db"));
    let t0 = t0();
    rt.block_on(async {
        let mut store = Store::open(loc.clone(), t0).await.unwrap();
        for chunk in (0..TICKS).collect::<Vec<_>>().chunks(100) {
            let batches: Vec<TickBatch> = chunk.iter().map(|i| batch(t0, *i)).collect();
            for b in &batches {
                store.write(std::slice::from_ref(b)).await.unwrap();
            }
        }
        store.fold().await.unwrap();
        store.close().await;
    });
    (loc, t0)
}

struct Views {
    cx: ViewerContext,
    analyzer: Analyzer,
    history: Option<ProcessHistory>,
}

fn harness(source: Source) -> Harness<'static, Views> {
    let tasks = Tasks::start(Arc::new(|| {})).unwrap();
    let views = Views {
        cx: ViewerContext::detached(Default::default(), Some(tasks)),
        analyzer: Analyzer::new(source),
        history: None,
    };
    Harness::builder()
        .with_size([1200.0, 900.0])
        .build_ui_state(
            |ui, v: &mut Views| {
                v.analyzer.ui(ui, &mut v.cx);
                if let Some(h) = &mut v.history {
                    egui::Window::new("history").show(ui.ctx(), |ui| h.ui(ui, &mut v.cx));
                }
            },
            views,
        )
}

fn wait(h: &mut Harness<'static, Views>, what: &str, ok: impl Fn(&Views) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.step();
}

#[test]
fn charts_statistics_archives_and_process_history_show_the_stored_history() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = scratch();
    let (loc, t0) = write_history(&rt, &dir);
    let mut h = harness(Source::current_of(loc.clone()));
    wait(&mut h, "the overview", |v| v.analyzer.overview().is_some());

    // Every node and the cluster; node 2's spike is red, nothing else is.
    let load = h.state().analyzer.load_chart().clone();
    let nodes: Vec<u32> = load.nodes.iter().map(|s| s.node).collect();
    assert_eq!(nodes, [1, 2, 3]);
    assert!(!load.cluster.points.is_empty());
    for s in &load.nodes {
        assert_eq!(!s.hot.is_empty(), s.node == 2, "node {}", s.node);
        for run in &s.hot {
            assert!(run.iter().all(|p| p.y > analyzer::chart::HOT_LOAD));
        }
    }
    let red_secs: Vec<f64> = load.nodes[1].hot.iter().flatten().map(|p| p.x).collect();
    let (a, b) = (
        (t0 + 100_000) as f64 / 1000.0,
        (t0 + 150_000) as f64 / 1000.0,
    );
    assert!(red_secs.iter().all(|x| *x >= a - 60.0 && *x <= b + 60.0));
    // Each checkpoint is a blue line with its label, in both charts.
    for chart in [load.clone(), h.state().analyzer.memory_chart().clone()] {
        let labels: Vec<&str> = chart.checkpoints.iter().map(|c| c.1.as_str()).collect();
        assert_eq!(labels, ["alpha", "beta"]);
        assert_eq!(chart.outages.len(), 1);
        assert_eq!(chart.outages[0].0, 3);
    }
    // The memory lines are percentages of the total.
    let mem = h.state().analyzer.memory_chart().clone();
    assert!(mem.nodes[0].points.iter().all(|p| (p.y - 50.0).abs() < 0.1));

    // Find out statistics: the figures equal the same figures computed by SQL
    // over the stored data (the blocks' summaries, the processes and moves),
    // and the samples written.
    h.get_by_label("find out statistics").click();
    wait(&mut h, "the statistics", |v| v.analyzer.report().is_some());
    let report = h.state().analyzer.report().unwrap().clone();
    let (sql_started, sql_in, sql_out, sql_load, sql_down): (i64, i64, i64, (i64, i64, f64), i64) =
        rt.block_on(async {
            let Location::Sqlite(path) = &loc else {
                unreachable!()
            };
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", path.display()))
                .await
                .unwrap();
            let one = |sql: &'static str| {
                let pool = pool.clone();
                async move {
                    sqlx::query_scalar::<_, i64>(sql)
                        .fetch_one(&pool)
                        .await
                        .unwrap()
                }
            };
            let load: (i64, i64, f64) = sqlx::query_as(
                "SELECT MIN(load_min), MAX(load_max), SUM(load_sum) * 1.0 / SUM(n_up) \
             FROM blocks WHERE node = 2",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            (
                one("SELECT COUNT(*) FROM processes WHERE node = 1").await,
                one("SELECT COUNT(*) FROM moves WHERE to_node = 2").await,
                one("SELECT COUNT(*) FROM moves WHERE from_node = 1").await,
                load,
                one("SELECT SUM(down_ms) FROM blocks WHERE node = 3").await,
            )
        });
    let n1 = report.nodes.iter().find(|n| n.node == 1).unwrap();
    let n2 = report.nodes.iter().find(|n| n.node == 2).unwrap();
    let n3 = report.nodes.iter().find(|n| n.node == 3).unwrap();
    assert_eq!(n1.started as i64, sql_started);
    assert_eq!(n2.moves_in as i64, sql_in);
    assert_eq!(n1.moves_out as i64, sql_out);
    let written: Vec<Sample> = (0..TICKS).map(|i| sample(t0, 2, i)).collect();
    let max = written.iter().map(|s| s.load).max().unwrap();
    let min = written.iter().map(|s| s.load).min().unwrap();
    let avg = written.iter().map(|s| f64::from(s.load)).sum::<f64>() / TICKS as f64;
    let got = n2.load.unwrap();
    assert_eq!((got.min, got.max), (f64::from(min), f64::from(max)));
    assert!((got.avg - avg).abs() < 1e-9, "{} vs {avg}", got.avg);
    assert_eq!((got.min as i64, got.max as i64), (sql_load.0, sql_load.1));
    assert!((got.avg - sql_load.2).abs() < 1e-9);
    assert_eq!(n3.summary.down_ms, 60_000, "node 3 was down for 60 samples");
    assert_eq!(n3.summary.down_ms, sql_down);
    assert_eq!(report.covered, Some((t0, t0 + (TICKS - 1) * 1000)));
    assert_eq!(report.cluster.moves_in, 1);
    assert_eq!(report.cluster.started, 2);

    // The process history at tick 250: process 1 on node 2 (migrated),
    // process 2 on node 3; selecting process 1 shows its move.
    h.state_mut().history = Some(ProcessHistory::new(Source::current_of(loc.clone())));
    wait(&mut h, "the history's span", |v| {
        v.history.as_ref().unwrap().listed_at().is_some()
    });
    h.state_mut().history.as_mut().unwrap().at_ms = t0 + 250_000;
    wait(&mut h, "the processes at tick 250", |v| {
        v.history.as_ref().unwrap().listed_at() == Some(t0 + 250_000)
    });
    let listed: Vec<(u32, i64, u32)> = h
        .state()
        .history
        .as_ref()
        .unwrap()
        .processes()
        .iter()
        .map(|p| (p.node, p.process.start.id, p.process.start.home))
        .collect();
    assert_eq!(listed, [(2, 1, 1), (3, 2, 3)]);
    // Exactly what the store says ran then.
    let stored: Vec<(u32, i64, u32)> = rt.block_on(async {
        let h = history::query::History::open(&history::store::HistoryRef {
            location: loc.clone(),
            id: 1,
        })
        .await
        .unwrap();
        let at = h.processes_at(None, t0 + 250_000).await.unwrap();
        h.close().await;
        at.iter()
            .map(|p| (p.node, p.process.start.id, p.process.start.home))
            .collect()
    });
    assert_eq!(listed, stored);
    assert!(h.query_by_label("migrated").is_some());
    h.get_by_label("901").click();
    wait(&mut h, "the journey", |v| {
        v.history.as_ref().unwrap().journey().is_some()
    });
    let j = h
        .state()
        .history
        .as_ref()
        .unwrap()
        .journey()
        .unwrap()
        .clone();
    assert_eq!(j.moves.len(), 1);
    assert_eq!(
        (j.moves[0].from, j.moves[0].to, j.moves[0].freeze_ms),
        (1, 2, Some(85))
    );
    assert_eq!(j.process.exit_code, Some(0));
    // The journey says why it moved.
    h.run();
    assert!(
        h.query_by_label_contains(
            "moved node 1 -> node 2 (PID 901), post-copy, frozen 85 ms, 8192 KiB, 65536 KiB pulled, source released after 400 ms; asked for"
        )
        .is_some(),
        "the journey's move line with its reason"
    );

    // Archive it; the archive opens read-only from the list of histories.
    let archive = rt.block_on(async {
        let store = Store::open(loc.clone(), t0).await.unwrap();
        let (next, archived) = store.rotate(hpc::clock::now_ms() as i64).await.unwrap();
        next.close().await;
        archived
    });
    let current = Source::current_of(loc.clone());
    let list = rt.block_on(current.list()).unwrap();
    let info = list
        .iter()
        .find(|i| i.history == archive)
        .expect("archive listed");
    let mut h2 = harness(current.listed(info));
    wait(&mut h2, "the archive's overview", |v| {
        v.analyzer.overview().is_some()
    });
    assert_eq!(h2.state().analyzer.load_chart().nodes.len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With many nodes the lines are drawn into an image once per view: frames
/// that change nothing reuse it, a new span draws it again.
#[test]
fn many_node_lines_are_drawn_once_per_view() {
    use analyzer::chart::{ChartCache, ChartData, DIRECT_POINTS, Kind, chart_ui};
    use history::overview::{Lines, Overview};
    use history::query::{Bucket, Stat};
    let t0 = 1_800_000_000_000i64;
    let bucket = |i: i64, v: f64| Bucket {
        t_ms: t0 + i * 60_000,
        samples: 60,
        stat: Stat {
            min: v,
            max: v + 30.0,
            avg: v + 10.0,
        },
    };
    let nodes = (1..=64u32)
        .map(|n| {
            let load: Vec<Bucket> = (0..720).map(|i| bucket(i, f64::from(n % 90))).collect();
            (
                n,
                Lines {
                    mem: load.clone(),
                    load,
                },
            )
        })
        .collect();
    let ov = Overview {
        from_ms: t0,
        to_ms: t0 + 720 * 60_000,
        bucket_ms: 60_000,
        nodes,
        ..Overview::default()
    };
    let data = ChartData::build(&ov, Kind::Load);
    assert!(data.node_points > DIRECT_POINTS);
    assert!(data.nodes.iter().any(|s| !s.hot.is_empty()));
    let ctx = egui::Context::default();
    let mut cache = ChartCache::default();
    let link = egui::Id::unique("test");
    let run = |cache: &mut ChartCache, reset| {
        let mut out = ctx.run_ui(
            egui::RawInput {
                screen_rect: Some(egui::Rect::from_min_size(
                    egui::Pos2::ZERO,
                    egui::vec2(1000.0, 600.0),
                )),
                ..Default::default()
            },
            |ui| {
                chart_ui(ui, &data, cache, link, 400.0, reset);
            },
        );
        ctx.tessellate(std::mem::take(&mut out.shapes), out.pixels_per_point);
        // No GPU here: the texture uploads are dropped.
        out.textures_delta.clear();
    };
    run(&mut cache, Some((ov.from_ms, ov.to_ms)));
    // The new span settles within three frames (x, then y bounds)...
    for _ in 0..3 {
        run(&mut cache, None);
    }
    let drawn = cache.redraws;
    assert!((1..=3).contains(&drawn), "{drawn}");
    // ...then frames that change nothing reuse the image.
    for _ in 0..5 {
        run(&mut cache, None);
    }
    assert_eq!(cache.redraws, drawn, "nothing changed: the image is reused");
    run(&mut cache, Some((ov.from_ms + 3_600_000, ov.to_ms)));
    run(&mut cache, None);
    assert!(cache.redraws > drawn, "a new span draws the lines again");
}
