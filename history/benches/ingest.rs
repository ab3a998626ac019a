//! History store benchmark, ours against the naive layout (one row per metric
//! sample: `(node, metric, t) → value`), measured in the same run on SQLite:
//!
//! 1. sustained ingest of 1,000 simulated nodes at 1 Hz: CPU time per simulated
//!    second, as % of one core (target < 10 %);
//! 2. bytes on disk per node-sample after an hour of simulated data (target < 24 B);
//! 3. a 12-hour query of one node's load downsampled to 2,000 min/max/avg
//!    buckets (target < 50 ms).
//!
//! Simulated time runs as fast as the store takes it; CPU is the process's
//! user+system time (the SQLite worker thread included). Run with
//! `cargo bench -p history --bench ingest`; `BENCH_QUICK=1` shortens it.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use history::events::TickBatch;
use history::query::History;
use history::sample::{Metric, NodeSample, Sample};
use history::store::sql::{Val, insert_rows, int, query};
use history::store::{Location, Store};
use sqlx::AnyPool;

const T0: i64 = 1_800_000_000_000;

/// A node's figures as a random walk (load, memory drift; CPUs, speed, total constant).
#[derive(Clone)]
struct SimNode {
    id: u32,
    s: Sample,
    rng: u64,
}

impl SimNode {
    fn new(id: u32) -> Self {
        Self {
            id,
            s: Sample {
                t_ms: T0,
                up: true,
                cpus: 1 + id % 16,
                speed: 8_000 + (id % 7) * 1_000,
                load: (id * 37) % 400,
                util: 100,
                mem_kib: 8_000_000 + u64::from(id) * 1000,
                rmem_kib: 6_000_000,
                tmem_kib: 16_384_000,
            },
            rng: (u64::from(id) * 0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    fn next_rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn step(&mut self, t_ms: i64) -> Sample {
        let r = self.next_rand();
        let delta = (r % 41) as i64 - 20;
        self.s.load = (i64::from(self.s.load) + delta).clamp(0, 1600) as u32;
        self.s.util = if r.is_multiple_of(50) {
            90 + (r % 10) as u32
        } else {
            100
        };
        let mem_delta = ((r >> 8) % 129) as i64 - 64;
        self.s.mem_kib = (self.s.mem_kib as i64 + mem_delta).clamp(0, 16_000_000) as u64;
        let rmem_delta = ((r >> 20) % 65) as i64 - 32;
        self.s.rmem_kib = (self.s.rmem_kib as i64 + rmem_delta).clamp(0, 16_000_000) as u64;
        self.s.t_ms = t_ms;
        self.s
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn disk_bytes(path: &std::path::Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", path.display())).ok())
        .map(|m| m.len())
        .sum()
}

/// The bench's scratch directory (under the target dir, removed at the end).
fn scratch() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/bench-collector")
        .join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

struct Ingest {
    cpu_pct: f64,
    bytes_per_sample: f64,
    wall: Duration,
}

/// Our layout: Store::write per tick.
async fn ingest_ours(path: &std::path::Path, nodes: u32, ticks: i64) -> Ingest {
    let mut store = Store::open(Location::Sqlite(path.to_path_buf()), T0)
        .await
        .expect("open");
    let mut sim: Vec<SimNode> = (1..=nodes).map(SimNode::new).collect();
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    for i in 0..ticks {
        let t = T0 + i * 1000;
        let batch = TickBatch {
            t_ms: t,
            samples: sim
                .iter_mut()
                .map(|n| NodeSample {
                    node: n.id,
                    sample: n.step(t),
                })
                .collect(),
            ..TickBatch::default()
        };
        store
            .write(std::slice::from_ref(&batch))
            .await
            .expect("write");
    }
    let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed());
    store.close().await;
    checkpoint(path).await;
    Ingest {
        cpu_pct: cpu / ticks as f64 * 100.0,
        bytes_per_sample: disk_bytes(path) as f64 / (f64::from(nodes) * ticks as f64),
        wall,
    }
}

async fn checkpoint(path: &std::path::Path) {
    let pool = naive_pool(path).await;
    let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_optional(&pool)
        .await;
    pool.close().await;
}

async fn naive_pool(path: &std::path::Path) -> AnyPool {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .expect("open naive");
    for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL"] {
        sqlx::query(pragma)
            .fetch_optional(&pool)
            .await
            .expect(pragma);
    }
    pool
}

/// The naive layout: one row per metric sample, one transaction per tick.
async fn ingest_naive(path: &std::path::Path, nodes: u32, ticks: i64) -> Ingest {
    let pool = naive_pool(path).await;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS samples (node INTEGER NOT NULL, metric INTEGER NOT NULL, \
         t INTEGER NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (node, metric, t)) WITHOUT ROWID",
    )
    .execute(&pool)
    .await
    .expect("create naive");
    let mut sim: Vec<SimNode> = (1..=nodes).map(SimNode::new).collect();
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    for i in 0..ticks {
        let t = T0 + i * 1000;
        let mut rows = Vec::with_capacity(nodes as usize * 8);
        for n in sim.iter_mut() {
            let s = n.step(t);
            for (m, metric) in Metric::ALL.iter().enumerate() {
                let v = s.value(*metric).unwrap_or(0.0) as i64;
                rows.push(vec![
                    Val::Int(n.id.into()),
                    Val::Int(m as i64),
                    Val::Int(t),
                    Val::Int(v),
                ]);
            }
        }
        let mut tx = pool.begin().await.expect("begin");
        insert_rows(&mut tx, "samples (node, metric, t, value)", rows)
            .await
            .expect("insert naive");
        tx.commit().await.expect("commit");
    }
    let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed());
    pool.close().await;
    checkpoint(path).await;
    Ingest {
        cpu_pct: cpu / ticks as f64 * 100.0,
        bytes_per_sample: disk_bytes(path) as f64 / (f64::from(nodes) * ticks as f64),
        wall,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median ms of `runs` runs of our 12-hour query (node 1, load, 2000 buckets).
async fn query_ours(path: &std::path::Path, ticks: i64, runs: usize) -> (f64, usize) {
    let h = History::open(&history::store::HistoryRef {
        location: Location::Sqlite(path.to_path_buf()),
        id: 1,
    })
    .await
    .expect("open history");
    let mut times = Vec::new();
    let mut n = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let s = h
            .series(1, &[Metric::Load], T0, T0 + ticks * 1000, 2000)
            .await
            .expect("series");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        n = s[0].buckets.len();
    }
    h.close().await;
    (median(times), n)
}

/// The same query on the naive layout, aggregated by SQL.
async fn query_naive(path: &std::path::Path, ticks: i64, runs: usize) -> (f64, usize) {
    let pool = naive_pool(path).await;
    let width = (ticks * 1000 + 1999) / 2000;
    let mut times = Vec::new();
    let mut n = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let rows = query(
            "SELECT (t - $1) / $2 AS b, MIN(value), MAX(value), AVG(value), COUNT(*) FROM samples \
             WHERE node = 1 AND metric = 0 AND t >= $3 AND t <= $4 GROUP BY b ORDER BY b"
                .into(),
        )
        .bind(T0)
        .bind(width)
        .bind(T0)
        .bind(T0 + ticks * 1000)
        .fetch_all(&pool)
        .await
        .expect("naive query");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        n = rows.len();
        let _ = rows.first().map(|r| int(r, 0));
    }
    pool.close().await;
    (median(times), n)
}

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (nodes, hour) = (1000u32, if quick { 600 } else { 3600 });
    let naive_nodes = if quick { 100 } else { 1000 };
    let naive_ticks = 120;
    let (q_nodes, q_ticks) = (5u32, 12 * 3600i64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = scratch();
    rt.block_on(async {
        println!("== collector store benchmark (SQLite, WAL, synchronous=NORMAL)");
        let ours = ingest_ours(&dir.join("ours.db"), nodes, hour).await;
        println!(
            "ingest ours:  {nodes} nodes x {hour} s simulated in {:.1} s: CPU {:.2} % of one core at 1 Hz; {:.2} B per node-sample on disk",
            ours.wall.as_secs_f64(),
            ours.cpu_pct,
            ours.bytes_per_sample
        );
        let naive = ingest_naive(&dir.join("naive.db"), naive_nodes, naive_ticks).await;
        println!(
            "ingest naive: {naive_nodes} nodes x {naive_ticks} s simulated in {:.1} s: CPU {:.2} % of one core at 1 Hz{}; {:.2} B per node-sample (8 metric rows)",
            naive.wall.as_secs_f64(),
            naive.cpu_pct * f64::from(nodes) / f64::from(naive_nodes),
            if naive_nodes == nodes { String::new() } else { format!(" (scaled from {naive_nodes} nodes)") },
            naive.bytes_per_sample
        );
        let naive_hour = ingest_naive(&dir.join("naive-hour.db"), 100, hour).await;
        println!(
            "naive, an hour of 100 nodes: {:.2} B per node-sample on disk",
            naive_hour.bytes_per_sample
        );

        let qo = dir.join("q-ours.db");
        let qn = dir.join("q-naive.db");
        ingest_ours(&qo, q_nodes, q_ticks).await;
        ingest_naive(&qn, q_nodes, q_ticks).await;
        let (ours_ms, ob) = query_ours(&qo, q_ticks, 21).await;
        let (naive_ms, nb) = query_naive(&qn, q_ticks, 21).await;
        println!(
            "12-h query, one node's load in 2000 buckets ({q_nodes} nodes stored): ours {ours_ms:.2} ms ({ob} buckets), naive {naive_ms:.2} ms ({nb} buckets); median of 21"
        );
        println!();
        println!("| figure | ours | naive | target |");
        println!("|---|---|---|---|");
        println!(
            "| ingest CPU, 1000 nodes @ 1 Hz | {:.2} % | {:.2} % | < 10 % |",
            ours.cpu_pct,
            naive.cpu_pct * f64::from(nodes) / f64::from(naive_nodes)
        );
        println!(
            "| bytes per node-sample after an hour | {:.2} | {:.2} | < 24 |",
            ours.bytes_per_sample, naive_hour.bytes_per_sample
        );
        println!("| 12-h one-node query, 2000 buckets | {ours_ms:.2} ms | {naive_ms:.2} ms | < 50 ms |");
    });
    let _ = std::fs::remove_dir_all(&dir);
}
