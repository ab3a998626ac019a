//! migmon's gestures through egui_kittest, on a cluster state fed with the
//! network side's own events (no agents: the lab test of issue 13 drives real
//! migrations; this one checks what a drag and a double-click send).
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use egui::{Event, Modifiers, PointerButton, Pos2};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
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
        ps: Default::default(),
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
    button(h, PointerButton::Primary, at, pressed);
}

fn button(h: &mut Harness<'_, View>, button: PointerButton, at: Pos2, pressed: bool) {
    h.input_mut().events.push(Event::PointerButton {
        pos: at,
        button,
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
    let mut h = harness(detached());
    h.run_steps(2);
    let lay = h.state().mig.layout().clone();
    assert_eq!(lay.penguins.len(), 2);
    let home_job = lay.squares.iter().find(|s| s.id.1 == 100).unwrap();
    let away_job = lay.squares.iter().find(|s| s.id.1 == 200).unwrap();
    assert!(!home_job.migrated());
    assert!(away_job.migrated() && away_job.runs_on == 2 && away_job.pid == 777);
    let (from, to) = (home_job.rect.center(), lay.penguin(2).unwrap().at);

    // Press on job 100, drag it in steps onto node 2's penguin, release.
    move_to(&mut h, from);
    press(&mut h, from, true);
    for i in 1..=10 {
        move_to(&mut h, from.lerp(to, i as f32 / 10.0));
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

/// migmon over `view`, frames 1/60 s apart as on a screen (the default
/// quarter second puts the two clicks of a double-click too far apart).
fn harness(view: View) -> Harness<'static, View> {
    Harness::builder()
        .with_size([800.0, 700.0])
        .with_step_dt(1.0 / 60.0)
        .build_ui_state(|ui, v: &mut View| v.mig.migmon_ui(ui, &mut v.cx), view)
}

fn detached() -> View {
    View {
        cx: ViewerContext::detached(state(), None),
        mig: Migmon::default(),
    }
}

#[test]
fn the_right_click_menu_sends_the_migrators_commands() {
    let mut h = harness(detached());
    h.run_steps(2);
    let at = h
        .state()
        .mig
        .layout()
        .square((1, 100))
        .unwrap()
        .rect
        .center();
    move_to(&mut h, at);
    for pressed in [true, false] {
        button(&mut h, PointerButton::Secondary, at, pressed);
    }
    h.run_steps(2);
    h.get_by_label("lock").click();
    h.run_steps(2);
    let sent: Vec<_> = h.state_mut().cx.outbox.drain(..).collect();
    assert!(
        matches!(&sent[..], [Command::ProcWrite { node: 1, pid: 100, field, value }]
            if field == "lock" && value == &serde_json::json!(1)),
        "{sent:?}"
    );
    assert!(h.query_by_label("lock").is_none(), "the menu closed");
}

#[test]
fn a_move_seen_in_the_lists_glides_and_a_refusal_is_told_on_the_square() {
    let mut h = harness(detached());
    h.run_steps(2);
    let lay = h.state().mig.layout().clone();
    let from = lay.square((1, 100)).unwrap().rect.center();
    // Job 100 moves to node 2 (as `migrate` on a command line would).
    let moved = |s: &mut ClusterState| {
        s.apply(NetEvent::Processes {
            node: 1,
            delta: ProcessDelta {
                changed: vec![process(100, 1, 100, 2)],
                ..ProcessDelta::default()
            },
            reset: false,
        });
        s.apply(NetEvent::Processes {
            node: 2,
            delta: ProcessDelta {
                added: vec![process(888, 1, 100, 0)],
                ..ProcessDelta::default()
            },
            reset: false,
        });
    };
    moved(&mut h.state_mut().cx.state);
    h.step();
    let to = h
        .state()
        .mig
        .layout()
        .square((1, 100))
        .unwrap()
        .rect
        .center();
    assert!(to.distance(from) > 50.0);
    let mut midway = Vec::new();
    for _ in 0..200 {
        h.step();
        midway.extend(h.state().mig.gliding().iter().map(|(_, p)| *p));
        std::thread::sleep(std::time::Duration::from_millis(10));
        if h.state().mig.gliding().is_empty() && !midway.is_empty() {
            break;
        }
    }
    assert!(
        midway
            .iter()
            .any(|p| p.distance(from) > 10.0 && p.distance(to) > 10.0),
        "the square glides from node 1 to node 2: {midway:?}"
    );
    assert!(h.state().mig.gliding().is_empty(), "the glide ends");

    // A refused move of the job is told on its square's tooltip.
    h.state_mut()
        .cx
        .act(2, 888, viewer::actions::ProcessAction::MoveTo(1));
    h.state_mut().cx.state.apply(NetEvent::Migrated {
        node: 2,
        pid: 888,
        to: "1".into(),
        result: Err("process 888 is locked".into()),
    });
    move_to(&mut h, to);
    // A tooltip waits for the pointer to rest.
    h.run_steps(90);
    assert!(
        h.query_all_by_label_contains("not moved to 1: process 888 is locked")
            .next()
            .is_some()
    );
}
