//! migmon's gestures through egui_kittest, on a cluster state fed with the
//! network side's own events (no agents: the lab test of issue 13 drives real
//! migrations; this one checks what a drag and a double-click send).
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use egui::{Event, Modifiers, PointerButton, Pos2};
use egui_kittest::Harness;
use hpc::model::{ClusterMask, DecayClass, Liveness, NodeStatus, ProcessDelta, ProcessInfo};
use migmon::Migmon;
use viewer::ViewerContext;
use viewer::net::{Command, Event as NetEvent};
use viewer::state::ClusterState;

fn node(id: u32) -> NodeStatus {
    NodeStatus {
        id,
        name: format!("node{id}"),
        addr: format!("10.0.0.{id}:4660"),
        status: Liveness::Up,
        cpus: 2,
        load: 40,
        speed: 10_000,
        util: 100,
        mem: 1 << 30,
        rmem: 1 << 30,
        tmem: 2 << 30,
        accepts: true,
        age_ms: 100,
        reason: None,
        migration: String::new(),
        host_key: String::new(),
    }
}

fn process(pid: i32, home: u32, home_pid: i32, where_: u32) -> ProcessInfo {
    ProcessInfo {
        pid,
        ppid: 1,
        user: "alice".into(),
        uid: 1000,
        state: 'R',
        nice: 0,
        cpu: 50.0,
        rss: 1 << 20,
        threads: 1,
        start_time: 1_000,
        cmdline: format!("job{home_pid}"),
        home,
        home_pid,
        where_,
        lock: false,
        cantmove: String::new(),
        nmigs: 0,
        decay: DecayClass::Slow,
        mask: ClusterMask::default(),
    }
}

struct View {
    cx: ViewerContext,
    mig: Migmon,
}

fn state() -> ClusterState {
    let mut s = ClusterState::default();
    s.apply(NetEvent::Nodes {
        via: "test".into(),
        nodes: vec![node(1), node(2)],
    });
    let list = |node, added| NetEvent::Processes {
        node,
        delta: ProcessDelta {
            added,
            ..ProcessDelta::default()
        },
        reset: true,
    };
    // Job 100 runs at home on node 1; job 200 of node 1 runs on node 2.
    s.apply(list(
        1,
        vec![process(100, 1, 100, 0), process(200, 1, 200, 2)],
    ));
    s.apply(list(2, vec![process(777, 1, 200, 0)]));
    s
}

fn press(h: &mut Harness<'_, View>, at: Pos2, pressed: bool) {
    h.input_mut().events.push(Event::PointerButton {
        pos: at,
        button: PointerButton::Primary,
        pressed,
        modifiers: Modifiers::default(),
    });
    h.step();
}

fn move_to(h: &mut Harness<'_, View>, at: Pos2) {
    h.input_mut().events.push(Event::PointerMoved(at));
    h.step();
}

#[test]
fn dragging_a_square_onto_a_penguin_migrates_and_double_clicking_sends_home() {
    let view = View {
        cx: ViewerContext::detached(state(), None),
        mig: Migmon::default(),
    };
    // Frames 1/60 s apart, as on a screen (the default quarter second puts
    // the two clicks of a double-click too far apart).
    let mut h = Harness::builder()
        .with_size([800.0, 700.0])
        .with_step_dt(1.0 / 60.0)
        .build_ui_state(|ui, v: &mut View| v.mig.migmon_ui(ui, &mut v.cx), view);
    h.run_steps(2);
    let lay = h.state().mig.last.clone();
    assert_eq!(lay.penguins.len(), 2);
    let home_job = lay.squares.iter().find(|s| s.home_pid == 100).unwrap();
    let away_job = lay.squares.iter().find(|s| s.home_pid == 200).unwrap();
    assert!(!home_job.migrated());
    assert!(away_job.migrated() && away_job.runs_on == 2 && away_job.pid == 777);
    let (from, to) = (home_job.rect.center(), lay.penguin(2).unwrap());

    // Press on job 100, drag it in steps onto node 2's penguin, release.
    move_to(&mut h, from);
    press(&mut h, from, true);
    for i in 1..=10 {
        move_to(&mut h, migmon::layout::lerp(from, to, i as f32 / 10.0));
    }
    press(&mut h, to, false);
    assert_eq!(
        take(&mut h),
        [("migrate", 1, 100, "2".to_string())],
        "the drop migrates job 100 from node 1 to node 2"
    );

    // Double-click job 200, which runs on node 2: it goes home.
    let at = away_job.rect.center();
    move_to(&mut h, at);
    for _ in 0..2 {
        press(&mut h, at, true);
        press(&mut h, at, false);
    }
    assert_eq!(take(&mut h), [("migrate", 2, 777, "home".to_string())]);
}

/// The commands sent since the last call.
fn take(h: &mut Harness<'_, View>) -> Vec<(&'static str, u32, i32, String)> {
    h.state_mut()
        .cx
        .outbox
        .drain(..)
        .filter_map(|c| match c {
            Command::Migrate { node, pid, to } => Some(("migrate", node, pid, to)),
            _ => None,
        })
        .collect()
}
