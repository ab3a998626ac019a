//! migmon against a real lab (network namespaces, real agents, real CRIU):
//! gestures are real pointer events through egui_kittest, their effects are
//! read back from the agents. Nothing is mocked.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::{Event, Modifiers, PointerButton, Pos2};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use hpc::client::Client;
use hpc::protocol::{JobInfo, SignalParams, methods};
use migmon::Migmon;
use migmon::layout::Square;
use serde_json::json;
use testkit::{TestLab, bin};
use viewer::ViewerContext;
use viewer::net::{Backend, BackendConfig, Command, LinkSettings};

struct View {
    cx: ViewerContext,
    mig: Migmon,
}

type H = Harness<'static, View>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// migmon on node 1 of `lab`, as the admin, every node's processes watched.
fn migmon(lab: &TestLab) -> H {
    let config = BackendConfig {
        seeds: vec![lab.addr(1)],
        links: LinkSettings {
            key: Some(lab.admin_key()),
            known_hosts: lab.known_hosts(),
            connect_timeout: Duration::from_secs(5),
        },
        poll: Duration::from_millis(300),
        collector_program: "openmosixcollector".into(),
        collector_start_args: Vec::new(),
    };
    let backend = Backend::start(config, Arc::new(|| {})).expect("backend");
    let view = View {
        cx: ViewerContext::new(backend),
        mig: Migmon::new(1),
    };
    Harness::builder()
        .with_size([900.0, 800.0])
        .with_step_dt(1.0 / 60.0)
        .build_ui_state(
            |ui, v: &mut View| {
                v.cx.drain_events();
                let nodes: Vec<u32> = v.cx.state.nodes.keys().copied().collect();
                if v.cx.state.processes.len() < nodes.len() {
                    v.cx.send(Command::WatchProcesses(nodes));
                }
                v.mig.migmon_ui(ui, &mut v.cx);
            },
            view,
        )
}

/// Steps frames (about real time) until `ok` holds, 60 s at most.
fn wait(h: &mut H, what: &str, mut ok: impl FnMut(&H) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        h.step();
        if ok(h) {
            return;
        }
        if Instant::now() >= deadline {
            let notices: Vec<String> = h
                .state()
                .cx
                .state
                .notices
                .iter()
                .map(viewer::notices::line)
                .collect();
            panic!(
                "timed out waiting for {what}; notices:\n{}",
                notices.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(16));
    }
}

fn square(h: &H, home_pid: i32) -> Option<Square> {
    h.state().mig.layout().square((1, home_pid)).cloned()
}

fn penguin(h: &H, node: u32) -> Pos2 {
    h.state()
        .mig
        .layout()
        .penguin(node)
        .expect("the penguin")
        .at
}

fn pointer(h: &mut H, button: PointerButton, at: Pos2, pressed: bool) {
    h.input_mut().events.push(Event::PointerButton {
        pos: at,
        button,
        pressed,
        modifiers: Modifiers::default(),
    });
    h.step();
}

fn move_to(h: &mut H, at: Pos2) {
    h.input_mut().events.push(Event::PointerMoved(at));
    h.step();
}

/// Presses on the job's square, drags it in steps onto `node`'s penguin and
/// lets go.
fn drag_onto(h: &mut H, home_pid: i32, node: u32) {
    let from = square(h, home_pid).expect("the square").rect.center();
    let to = penguin(h, node);
    move_to(h, from);
    pointer(h, PointerButton::Primary, from, true);
    for i in 1..=12 {
        move_to(h, from.lerp(to, i as f32 / 12.0));
    }
    pointer(h, PointerButton::Primary, to, false);
}

fn job(rt: &tokio::runtime::Runtime, home: &Client, home_pid: i32) -> JobInfo {
    rt.block_on(home.call(methods::JOB_STATUS, json!({ "pid": home_pid })))
        .expect("job.status")
}

#[test]
fn dragging_double_clicking_refusing_and_watching_outside_moves_in_a_lab() {
    let lab = TestLab::up("mm", 100, 2);
    let rt = runtime();
    let home = rt.block_on(lab.client(1));
    let started = rt.block_on(testkit::spawn_sleep(&home, 3583));
    let pid = started.home_pid;
    let mut h = migmon(&lab);

    // The job is a square in node 1's circle.
    wait(&mut h, "the job's square at node 1", |h| {
        h.state().cx.state.up_nodes().len() == 2
            && square(h, pid).is_some_and(|s| s.runs_on == 1 && !s.migrated())
    });

    // Dragged onto node 2's penguin: the real process moves there.
    drag_onto(&mut h, pid, 2);
    assert!(
        h.state().cx.state.moves.in_flight((1, pid)).is_some(),
        "the drop asked node 1 to move the job"
    );
    wait(&mut h, "the square green at node 2", |h| {
        square(h, pid).is_some_and(|s| s.runs_on == 2 && s.migrated())
    });
    // (The restored copy is listed on node 2 a moment before the commit.)
    wait(&mut h, "the agent to say node 2", |_| {
        job(&rt, &home, pid).where_ == 2
    });
    let sq = square(&h, pid).unwrap();
    assert_eq!((sq.home(), sq.listed_on), (1, 2), "a line from node 1");
    assert!(
        h.state()
            .cx
            .state
            .notices
            .iter()
            .any(|n| matches!(&n.result, Ok(r) if r.starts_with("now on node 2"))),
        "the move's report is a notice"
    );

    // Double-clicked on node 2: it goes home.
    wait(&mut h, "the glide to end", |h| {
        h.state().mig.gliding().is_empty()
    });
    let at = square(&h, pid).unwrap().rect.center();
    move_to(&mut h, at);
    for _ in 0..2 {
        pointer(&mut h, PointerButton::Primary, at, true);
        pointer(&mut h, PointerButton::Primary, at, false);
    }
    wait(&mut h, "the square back at node 1", |h| {
        square(h, pid).is_some_and(|s| s.runs_on == 1)
    });
    wait(&mut h, "the agent to say node 1", |_| {
        job(&rt, &home, pid).where_ == 1
    });

    // Locked from the right-click menu, then dropped on node 2: refused, the
    // reason on the square, the job where it was.
    wait(&mut h, "the glide home to end", |h| {
        h.state().mig.gliding().is_empty()
    });
    let at = square(&h, pid).unwrap().rect.center();
    move_to(&mut h, at);
    pointer(&mut h, PointerButton::Secondary, at, true);
    pointer(&mut h, PointerButton::Secondary, at, false);
    h.run_steps(2);
    h.get_by_label("lock").click();
    wait(&mut h, "the lock in the process list", |h| {
        square(h, pid).is_some_and(|s| s.info.lock)
    });
    drag_onto(&mut h, pid, 2);
    wait(&mut h, "the refusal", |h| {
        h.state()
            .cx
            .state
            .moves
            .outcome((1, pid))
            .is_some_and(|o| o.result.is_err())
    });
    let why = h
        .state()
        .cx
        .state
        .moves
        .outcome((1, pid))
        .and_then(|o| o.result.clone().err())
        .unwrap();
    assert!(why.contains("lock"), "the agent's reason: {why}");
    let at = square(&h, pid).unwrap().rect.center();
    move_to(&mut h, at);
    let told = format!("not moved to 2: {why}");
    wait(&mut h, "the reason in the square's tooltip", |h| {
        h.query_all_by_label_contains(&told).next().is_some()
    });
    assert!(
        h.state()
            .cx
            .state
            .notices
            .iter()
            .any(|n| n.result.as_ref().err() == Some(&why)),
        "and in the notices"
    );
    assert_eq!(job(&rt, &home, pid).where_, 1, "still on node 1");
    assert_eq!(square(&h, pid).map(|s| s.runs_on), Some(1));

    // Unlocked, then moved by `migrate` on a command line: the square glides.
    rt.block_on(home.call_value(
        methods::PROC_WRITE,
        json!({ "pid": pid, "field": "lock", "value": 0 }),
    ))
    .expect("unlock");
    let from = square(&h, pid).unwrap().rect.center();
    let mut cli = std::process::Command::new(bin("migrate"))
        .args(["--node", &lab.addr(1), "--key"])
        .arg(lab.admin_key())
        .arg("--known-hosts")
        .arg(lab.known_hosts())
        .args([&pid.to_string(), "2"])
        .env("OPENMOSIX_LOG", "off")
        .spawn()
        .expect("migrate");
    let mut midway = Vec::new();
    wait(&mut h, "the glide to node 2", |h| {
        midway.extend(
            h.state()
                .mig
                .gliding()
                .iter()
                .filter(|(id, _)| *id == (1, pid))
                .map(|(_, p)| *p),
        );
        !midway.is_empty() && h.state().mig.gliding().is_empty()
    });
    assert!(cli.wait().expect("migrate").success());
    let to = square(&h, pid).unwrap().rect.center();
    assert!(
        midway
            .iter()
            .any(|p| p.distance(from) > 5.0 && p.distance(to) > 5.0),
        "drawn between node 1 and node 2 on the way: {midway:?}"
    );
    wait(&mut h, "the move from node 1's log", |h| {
        h.state()
            .cx
            .state
            .moves
            .last_move((1, pid))
            .is_some_and(|m| m.from == 1 && m.to == 2 && m.nmigs == 3)
    });

    let host = rt.block_on(lab.client(2));
    let j = job(&rt, &home, pid);
    rt.block_on(
        host.call_value(
            methods::PROC_SIGNAL,
            serde_json::to_value(SignalParams {
                pid: j.pid,
                signal: "KILL".into(),
                start_time: None,
            })
            .unwrap(),
        ),
    )
    .expect("kill");
}
