//! The analyzer's costs, each beside a baseline measured in the same run
//! (`cargo bench -p analyzer --bench overview`; `BENCH_QUICK=1` shortens it):
//!
//! 1. **Frame cost** of the load overview of 256 nodes × 12 h at 1 Hz: CPU time
//!    to build and tessellate a frame (egui + egui_plot, headless, as eframe
//!    does before the GPU) drawing our min/max buckets, against plotting every
//!    sample (target ≤ 8 ms).
//! 2. **First paint** of the 12-h overview of 64 nodes: wall time from opening
//!    the history to the first frame of both charts, reading the blocks'
//!    summaries, against decoding every sample (target ≤ 300 ms).
//! 3. **A year-long SQLite history** (generated at 1 Hz): opening it on the
//!    whole year, then panning at every zoom level (year to an hour), each
//!    step a query plus the charts' points: the longest wait, against decoding
//!    every sample of the span where that is feasible (target: no wait over
//!    100 ms).
//!
//! Histories are written with `Store::import` (the store's own block writer,
//! summaries and rollups) under the target directory and removed at the end.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::thread_cpu;

use analyzer::chart::{ChartCache, ChartData, Kind, chart_ui};
use egui_plot::{Line, Plot, PlotPoint, PlotPoints};
use history::overview::{Level, Overview};
use history::query::History;
use history::sample::Sample;
use history::store::{HistoryRef, Location, Store};

const COLUMNS: usize = 1200;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn scratch() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/bench-analyzer")
        .join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A node's figures as a random walk, second by second.
struct Walk {
    s: Sample,
    rng: u64,
}

impl Walk {
    fn new(n: u32, t0: i64) -> Self {
        Self {
            s: Sample {
                t_ms: t0,
                up: true,
                cpus: 4,
                speed: 10_000,
                load: (n * 37) % 150,
                util: 100,
                mem_kib: 8_000_000,
                rmem_kib: 6_000_000,
                tmem_kib: 16_000_000,
            },
            rng: (u64::from(n) * 0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    fn next(&mut self, t: i64) -> Sample {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let r = self.rng;
        self.s.load = (i64::from(self.s.load) + (r % 21) as i64 - 10).clamp(0, 400) as u32;
        self.s.mem_kib = (self.s.mem_kib as i64 + ((r >> 8) % 129) as i64 - 64)
            .clamp(1_000_000, 15_000_000) as u64;
        self.s.t_ms = t;
        self.s
    }
}

/// Writes `nodes` nodes × `secs` seconds at 1 Hz from `t0`, a day of a node at a time.
async fn generate(path: &Path, nodes: u32, t0: i64, secs: i64) -> HistoryRef {
    let mut store = Store::open(Location::Sqlite(path.to_path_buf()), t0)
        .await
        .unwrap();
    for n in 1..=nodes {
        let mut w = Walk::new(n, t0);
        let mut i = 0;
        while i < secs {
            let end = (i + 86_400).min(secs);
            let chunk: Vec<Sample> = (i..end).map(|k| w.next(t0 + k * 1000)).collect();
            store.import(&BTreeMap::from([(n, chunk)])).await.unwrap();
            i = end;
        }
    }
    let h = store.history();
    store.close().await;
    h
}

fn input(w: f32, h: f32) -> egui::RawInput {
    egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(w, h),
        )),
        ..Default::default()
    }
}

/// CPU time of one headless frame (build + tessellate).
fn frame(ctx: &egui::Context, draw: &mut dyn FnMut(&mut egui::Ui)) -> Duration {
    let start = thread_cpu();
    let mut out = ctx.run_ui(input(1280.0, 720.0), |ui| draw(ui));
    std::hint::black_box(ctx.tessellate(std::mem::take(&mut out.shapes), out.pixels_per_point));
    // No GPU here: the texture uploads are dropped (their cost, the image
    // drawn into pixels, is counted).
    out.textures_delta.clear();
    thread_cpu() - start
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn longest(v: &[f64]) -> f64 {
    v.iter().cloned().fold(0.0, f64::max)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The frame cost: ours, ours right after a pan, every sample (ms), and the
/// points each draws.
async fn frame_cost(dir: &Path, nodes: u32) -> (f64, f64, f64, usize, usize) {
    let secs = 12 * 3600;
    let t0 = 1_800_000_000_000;
    let href = generate(&dir.join("frame.db"), nodes, t0, secs).await;
    let h = History::open(&href).await.unwrap();
    let to = t0 + (secs - 1) * 1000;
    let ov = h.overview(t0, to, COLUMNS).await.unwrap();
    let ours = ChartData::build(&ov, Kind::Load);
    let ours_points: usize = ours.nodes.iter().map(|s| s.points.len()).sum();
    let ctx = egui::Context::default();
    let link = egui::Id::unique("bench");
    let mut cache = ChartCache::default();
    // The first frame sets the span, as the window does when data arrives.
    frame(&ctx, &mut |ui: &mut egui::Ui| {
        chart_ui(ui, &ours, &mut cache, link, 600.0, Some((t0, to)));
    });
    let mut draw = |ui: &mut egui::Ui| {
        chart_ui(ui, &ours, &mut cache, link, 600.0, None);
    };
    // Warm up (fonts, layout caches), then the median of 30 frames.
    for _ in 0..3 {
        frame(&ctx, &mut draw);
    }
    let ours_ms = median((0..30).map(|_| ms(frame(&ctx, &mut draw))).collect());
    // A frame right after a pan or zoom: the lines are drawn again.
    let redraw_ms = median(
        (0..5)
            .map(|_| {
                let mut fresh = ChartCache::default();
                ms(frame(&ctx, &mut |ui: &mut egui::Ui| {
                    chart_ui(ui, &ours, &mut fresh, link, 600.0, Some((t0, to)));
                }))
            })
            .collect(),
    );

    // Baseline: every sample of every node, the points built once as ours are.
    let all = h.samples_by_node(None, t0, to).await.unwrap();
    h.close().await;
    let lines: Vec<Vec<PlotPoint>> = all
        .values()
        .map(|s| {
            s.iter()
                .map(|x| PlotPoint::new(x.t_ms as f64 / 1000.0, f64::from(x.load)))
                .collect()
        })
        .collect();
    drop(all);
    let every_points: usize = lines.iter().map(Vec::len).sum();
    let ctx2 = egui::Context::default();
    let mut draw_all = |ui: &mut egui::Ui| {
        Plot::new("every sample").height(600.0).show(ui, |p| {
            for l in &lines {
                p.line(Line::new("node", PlotPoints::Borrowed(l)));
            }
        });
    };
    frame(&ctx2, &mut draw_all);
    let every_ms = median((0..3).map(|_| ms(frame(&ctx2, &mut draw_all))).collect());
    (ours_ms, redraw_ms, every_ms, ours_points, every_points)
}

/// Wall time from opening the history to the first frame of both charts.
async fn first_paint(href: &HistoryRef, level: Option<Level>, from: i64, to: i64) -> f64 {
    let t = Instant::now();
    let h = History::open(href).await.unwrap();
    let ov: Overview = match level {
        Some(l) => h.overview_at(l, from, to, COLUMNS).await.unwrap(),
        None => h.overview(from, to, COLUMNS).await.unwrap(),
    };
    h.close().await;
    let load = ChartData::build(&ov, Kind::Load);
    let mem = ChartData::build(&ov, Kind::Memory);
    let ctx = egui::Context::default();
    let link = egui::Id::unique("paint");
    let (mut c1, mut c2) = (ChartCache::default(), ChartCache::default());
    // Two frames: the first sets the span, the second draws the lines for it.
    for span in [Some((ov.from_ms, ov.to_ms)), None] {
        frame(&ctx, &mut |ui: &mut egui::Ui| {
            chart_ui(ui, &load, &mut c1, link, 300.0, span);
            chart_ui(ui, &mem, &mut c2, link, 300.0, span);
        });
    }
    ms(t.elapsed())
}

/// One pan step: the query and the charts' points.
async fn step(h: &History, level: Option<Level>, from: i64, to: i64) -> f64 {
    let t = Instant::now();
    let ov = match level {
        Some(l) => h.overview_at(l, from, to, COLUMNS).await.unwrap(),
        None => h.overview(from, to, COLUMNS).await.unwrap(),
    };
    std::hint::black_box((
        ChartData::build(&ov, Kind::Load),
        ChartData::build(&ov, Kind::Memory),
    ));
    ms(t.elapsed())
}

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = scratch();
    rt.block_on(async {
        println!("== analyzer benchmark (SQLite; headless egui frames)");
        let nodes = if quick { 64 } else { 256 };
        let (ours, redraw, every, op, ep) = frame_cost(&dir, nodes).await;
        println!(
            "frame, load overview of {nodes} nodes x 12 h: ours {ours:.2} ms ({op} points; {redraw:.1} ms for the frame after a pan, which draws the lines again), every sample {every:.1} ms ({ep} points)"
        );

        let secs = 12 * 3600;
        let t0 = 1_800_000_000_000;
        let href = generate(&dir.join("paint.db"), 64, t0, secs).await;
        let to = t0 + (secs - 1) * 1000;
        let mut ours_paint = Vec::new();
        for _ in 0..5 {
            ours_paint.push(first_paint(&href, None, t0, to).await);
        }
        let mut raw_paint = Vec::new();
        for _ in 0..3 {
            raw_paint.push(first_paint(&href, Some(Level::Raw), t0, to).await);
        }
        let (ours_paint, raw_paint) = (median(ours_paint), median(raw_paint));
        println!(
            "first paint, 12-h overview of 64 nodes: ours {ours_paint:.1} ms (block summaries), every sample decoded {raw_paint:.1} ms"
        );

        let (ynodes, days) = if quick { (2u32, 60i64) } else { (4u32, 365i64) };
        let ysecs = days * 86_400;
        let yt0 = 1_780_000_000_000;
        let started = Instant::now();
        let yref = generate(&dir.join("year.db"), ynodes, yt0, ysecs).await;
        let size = std::fs::metadata(dir.join("year.db"))
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "generated {days} days x {ynodes} nodes at 1 Hz ({} samples) in {:.0} s, {:.0} MiB",
            i64::from(ynodes) * ysecs,
            started.elapsed().as_secs_f64(),
            size as f64 / 1_048_576.0
        );
        let yend = yt0 + (ysecs - 1) * 1000;
        let open_ms = {
            let t = Instant::now();
            let h = History::open(&yref).await.unwrap();
            let ov = h.overview(yend - days * DAY, yend, COLUMNS).await.unwrap();
            std::hint::black_box(ChartData::build(&ov, Kind::Load));
            h.close().await;
            ms(t.elapsed())
        };
        println!("open on the whole span ({days} days): {open_ms:.1} ms");
        println!();
        println!(
            "| zoom | level | ours: median / longest ms (10 steps) | every sample decoded: median / longest ms (3 steps) |"
        );
        println!("|---|---|---|---|");
        let h = History::open(&yref).await.unwrap();
        let mut worst = open_ms;
        for (name, width) in [
            ("whole span", days * DAY),
            ("90 days", 90 * DAY),
            ("a week", 7 * DAY),
            ("a day", DAY),
            ("12 h", 12 * HOUR),
            ("an hour", HOUR),
        ] {
            let width = width.min(days * DAY);
            let mut ours = Vec::new();
            let mut raw = Vec::new();
            // Ten steps back from the end, a tenth of the width each.
            for k in 0..10 {
                let to = yend - k * width / 10;
                let from = to - width;
                ours.push(step(&h, None, from, to).await);
                if width <= 7 * DAY && k < 3 {
                    raw.push(step(&h, Some(Level::Raw), from, to).await);
                }
            }
            let level = Level::for_span(width, COLUMNS);
            worst = worst.max(longest(&ours));
            let raw_text = if raw.is_empty() {
                format!(
                    "not run ({} samples a step)",
                    i64::from(ynodes) * width / 1000
                )
            } else {
                format!("{:.1} / {:.1}", median(raw.clone()), longest(&raw))
            };
            println!(
                "| {name} | {level:?} | {:.1} / {:.1} | {raw_text} |",
                median(ours.clone()),
                longest(&ours)
            );
        }
        h.close().await;
        println!();
        println!("| figure | ours | baseline | target |");
        println!("|---|---|---|---|");
        println!(
            "| frame, load overview, {nodes} nodes x 12 h | {ours:.2} ms ({redraw:.1} ms after a pan) | {every:.1} ms (every sample) | <= 8 ms |"
        );
        println!(
            "| first paint, 12 h, 64 nodes | {ours_paint:.1} ms | {raw_paint:.1} ms (every sample decoded) | <= 300 ms |"
        );
        println!(
            "| {days} days x {ynodes} nodes: longest wait opening and panning | {worst:.1} ms | see the table | <= 100 ms |"
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}
