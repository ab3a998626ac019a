//! migmon's frame cost at 64 nodes and 2,000 processes, beside a baseline
//! measured in the same run (`cargo bench -p migmon --bench frame`): CPU time
//! to build and tessellate a frame (egui, headless, as eframe does before the
//! GPU) with the pointer moving over the picture, as when someone looks for
//! a process to drag.
//!
//! - ours: the layout is kept until the process lists change (here once a
//!   second at 60 frames a second, as the agents push them);
//! - baseline: the naive layout, recomputed every frame.
//!
//! Node 1 is the main node: half of its 2,000 processes run at home, the
//! other half on the 63 other nodes. Target: ≤ 4 ms a frame.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use hpc::model::{
    AdminState, ClusterMask, DecayClass, Liveness, NodeStatus, ProcessDelta, ProcessInfo, Role,
};
use migmon::Migmon;
use testkit::thread_cpu;
use viewer::ViewerContext;
use viewer::net::{Event, LinkState};
use viewer::state::ClusterState;

const NODES: u32 = 64;
const PROCESSES: i32 = 2000;
const SIZE: (f32, f32) = (900.0, 860.0);

fn node(id: u32) -> NodeStatus {
    NodeStatus {
        id,
        name: format!("node{id:02}"),
        addr: format!("10.0.0.{id}:4660"),
        status: if id.is_multiple_of(17) {
            Liveness::Down
        } else {
            Liveness::Up
        },
        cpus: 8,
        load: (id * 37) % 160,
        speed: 9000,
        util: 100,
        mem: 8 << 30,
        rmem: 4 << 30,
        tmem: 32 << 30,
        accepts: !id.is_multiple_of(11),
        age_ms: 300,
        reason: None,
        migration: String::new(),
        host_key: String::new(),
    }
}

fn process(pid: i32, home_pid: i32, where_: u32) -> ProcessInfo {
    ProcessInfo {
        pid,
        ppid: 1,
        user: format!("user{}", home_pid % 7),
        uid: 1000,
        state: 'R',
        nice: 0,
        cpu: 50.0,
        rss: 64 << 20,
        threads: 1,
        start_time: 0,
        cmdline: format!("/usr/bin/worker --task {home_pid}"),
        home: 1,
        home_pid,
        where_,
        lock: home_pid % 13 == 0,
        cantmove: String::new(),
        nmigs: u32::from(where_ != 0),
        decay: DecayClass::Slow,
        mask: ClusterMask::default(),
        ps: Default::default(),
    }
}

fn cluster() -> ClusterState {
    let mut s = ClusterState::default();
    s.apply(Event::Nodes {
        via: "10.0.0.1:4660".into(),
        nodes: (1..=NODES).map(node).collect(),
    });
    let mut lists: Vec<Vec<ProcessInfo>> = vec![Vec::new(); NODES as usize + 1];
    for i in 0..PROCESSES {
        let home_pid = 10_000 + i;
        if i % 2 == 0 {
            lists[1].push(process(home_pid, home_pid, 0));
        } else {
            let to = 2 + (i as u32 % (NODES - 1));
            lists[1].push(process(home_pid, home_pid, to));
            lists[to as usize].push(process(50_000 + i, home_pid, 0));
        }
    }
    for id in 1..=NODES {
        s.apply(Event::Admin {
            node: id,
            admin: AdminState::default(),
        });
        s.apply(Event::Link {
            node: id,
            state: LinkState::Connected(Role::Admin),
        });
        s.apply(Event::Processes {
            node: id,
            delta: ProcessDelta {
                added: std::mem::take(&mut lists[id as usize]),
                ..ProcessDelta::default()
            },
            reset: true,
        });
    }
    s
}

struct Stats {
    mean_ms: f64,
    p95_ms: f64,
}

/// 600 frames (10 s at 60 fps) with the pointer wandering over the picture.
fn measure(cache: bool) -> (Stats, usize) {
    let mut cx = ViewerContext::detached(cluster(), None);
    let mut mig = Migmon::new(1);
    mig.cache_layout = cache;
    let ctx = egui::Context::default();
    let mut squares = 0;
    let mut times = Vec::new();
    for f in 0..620u32 {
        if f % 60 == 0 {
            // New process lists, once a second.
            cx.state.processes_version += 1;
        }
        let a = f as f32 * 0.05;
        let pointer = egui::pos2(450.0 + 300.0 * a.cos(), 450.0 + 300.0 * a.sin());
        let input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(SIZE.0, SIZE.1),
            )),
            events: vec![egui::Event::PointerMoved(pointer)],
            ..Default::default()
        };
        let start = thread_cpu();
        let out = ctx.run_ui(input, |ui| {
            egui::CentralPanel::default().show(ui, |ui| mig.migmon_ui(ui, &mut cx));
        });
        let prims = ctx.tessellate(out.shapes, out.pixels_per_point);
        std::hint::black_box(prims);
        let took: Duration = thread_cpu() - start;
        if f >= 20 {
            times.push(took.as_secs_f64() * 1e3);
        }
        squares = mig.layout().squares.len();
    }
    times.sort_by(f64::total_cmp);
    let mean_ms = times.iter().sum::<f64>() / times.len() as f64;
    let p95_ms = times[times.len() * 95 / 100];
    (Stats { mean_ms, p95_ms }, squares)
}

fn main() {
    let (ours, drawn) = measure(true);
    let (base, _) = measure(false);
    assert_eq!(drawn, PROCESSES as usize, "every process is drawn");
    println!(
        "migmon, {NODES} nodes x {PROCESSES} processes: ours {:.2} ms/frame (p95 {:.2}), \
         baseline (layout recomputed every frame) {:.2} ms/frame (p95 {:.2}), {:.1}x; target <= 4 ms",
        ours.mean_ms,
        ours.p95_ms,
        base.mean_ms,
        base.p95_ms,
        base.mean_ms / ours.mean_ms
    );
}
