//! The real widgets (egui_kittest) driven against real agents: on loopback for
//! the views and errors, and in a lab (network namespaces, CRIU) for starting
//! and moving jobs. Nothing is mocked.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::accesskit::{Role, Toggled};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use hpc::client::Client;
use hpc::protocol::{JobInfo, PathValue, methods};
use openmosixview::OpenMosixView;
use serde_json::{Value, json};
use testkit::{Keys, TestAgent, TestCluster, TestLab, Victim, free_port, unique_dir};
use viewer::ViewerContext;
use viewer::net::{Backend, BackendConfig, LinkSettings};

fn base() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The app, connected through `seed` with `key`, checking `known_hosts`.
fn gui(seed: &str, key: &Path, known_hosts: &Path) -> Harness<'static, OpenMosixView> {
    let config = BackendConfig {
        seeds: vec![seed.to_string()],
        links: LinkSettings {
            key: Some(key.to_path_buf()),
            known_hosts: known_hosts.to_path_buf(),
            connect_timeout: Duration::from_secs(5),
        },
        poll: Duration::from_millis(300),
        collector_program: "openmosixcollector".into(),
        collector_start_args: Vec::new(),
    };
    let backend = Backend::start(config, Arc::new(|| {})).expect("backend");
    let app = OpenMosixView::new(ViewerContext::new(backend));
    Harness::builder()
        .with_size([1200.0, 900.0])
        .build_ui_state(
            |ui, app: &mut OpenMosixView| {
                app.logic();
                app.ui(ui);
            },
            app,
        )
}

/// Steps frames until `ok` holds (30 s at most).
fn wait(
    h: &mut Harness<'static, OpenMosixView>,
    what: &str,
    mut ok: impl FnMut(&Harness<'static, OpenMosixView>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
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
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn shows(h: &Harness<'static, OpenMosixView>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

fn toggled(h: &Harness<'static, OpenMosixView>, label: &str) -> Option<bool> {
    h.query_by_label(label)
        .and_then(|n| n.accesskit_node().toggled())
        .map(|t| t == Toggled::True)
}

async fn read(c: &Client, path: &str) -> Value {
    let v: PathValue = c
        .call(methods::HPC_READ, json!({ "path": path }))
        .await
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
    v.value
}

fn known_hosts_of(agent: &TestAgent, dir: &Path) -> PathBuf {
    let path = dir.join("known_hosts");
    agent.write_known_hosts(&path);
    path
}

#[test]
fn main_view_lists_nodes_and_the_config_dialog_shows_and_changes_real_state() {
    let rt = runtime();
    let cluster = TestCluster::start(base(), 3);
    let dir = unique_dir(base(), "gui-main");
    let kh = known_hosts_of(&cluster.agents[0], &dir);
    let third = rt.block_on(cluster.agents[2].client(&cluster.keys.admin));
    rt.block_on(third.call_value(
        methods::HPC_WRITE,
        json!({ "path": "admin/lstay", "value": 1 }),
    ))
    .expect("set lstay on node 3");

    let mut h = gui(
        &cluster.agents[0].addr.to_string(),
        &cluster.keys.admin,
        &kh,
    );
    wait(&mut h, "a row per node with its figures", |h| {
        let s = &h.state().cx.state;
        s.nodes.len() == 3
            && s.nodes
                .values()
                .all(|n| n.status.cpus > 0 && n.status.tmem > 0)
            && cluster.agents.iter().all(|a| shows(h, &a.addr.to_string()))
            && shows(h, "3/3 up")
    });
    let cpus = h.state().cx.state.nodes[&1].status.cpus;
    assert!(h.query_all_by_label(&format!("{cpus} CPUs")).count() >= 1);
    assert!(shows(&h, "load-balancing efficiency"));

    // Node 3's dialog shows its real state (lstay set behind the app's back).
    h.get_by_label_contains(&cluster.agents[2].addr.to_string())
        .click();
    wait(&mut h, "node 3's dialog with its state", |h| {
        shows(h, "node 3 configuration") && toggled(h, "local processes stay (lstay)") == Some(true)
    });
    assert_eq!(toggled(&h, "block arriving guests (block)"), Some(false));
    assert_eq!(toggled(&h, "automigration"), Some(true));

    // Changing it changes the agent, and the dialog follows.
    h.get_by_label("block arriving guests (block)").click();
    wait(&mut h, "block set on the agent", |_| {
        rt.block_on(read(&third, "admin/block")) == json!(1)
    });
    wait(&mut h, "the block checkbox to follow the agent", |h| {
        toggled(h, "block arriving guests (block)") == Some(true)
    });

    // The "all nodes" dialog applies to every node.
    h.state_mut().windows.close_all();
    h.get_by_label("all nodes").click();
    wait(&mut h, "the all-nodes dialog", |h| {
        shows(h, "all nodes configuration")
            && h.query_by_label("quiet (stop announcing load)").is_some()
    });
    h.get_by_label("quiet (stop announcing load)").click();
    let clients: Vec<Client> = cluster
        .agents
        .iter()
        .map(|a| rt.block_on(a.client(&cluster.keys.admin)))
        .collect();
    wait(&mut h, "quiet on every node", |_| {
        clients
            .iter()
            .all(|c| rt.block_on(read(c, "admin/quiet")) == json!(1))
    });
    wait(&mut h, "the dialog to follow", |h| {
        toggled(h, "quiet (stop announcing load)") == Some(true) && shows(h, "on for 3 of 3")
    });
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn errors_appear_in_the_ui() {
    let rt = runtime();
    let keys = Keys::generate(base());
    let agent = TestAgent::standalone(base(), &keys);
    let dir = unique_dir(base(), "gui-errors");
    let kh = known_hosts_of(&agent, &dir);
    let addr = agent.addr.to_string();

    // Unreachable node.
    let dead = format!("127.0.0.1:{}", free_port());
    let mut h = gui(&dead, &keys.admin, &kh);
    wait(&mut h, "the unreachable cluster", |h| {
        shows(h, "Cannot reach the cluster") && shows(h, &dead)
    });
    drop(h);

    // Refused key.
    let mut h = gui(&addr, &keys.stranger, &kh);
    wait(&mut h, "the refused key", |h| {
        shows(h, "authentication refused")
    });
    drop(h);

    // Changed host key: refused with a warning.
    let other = keys.dir.join("other_host_key");
    let changed = dir.join("changed_known_hosts");
    let key = testkit::new_key(&other)
        .public_key()
        .to_openssh()
        .expect("encode");
    std::fs::write(
        &changed,
        format!("[127.0.0.1]:{} {key}\n", agent.addr.port()),
    )
    .expect("write");
    let mut h = gui(&addr, &keys.admin, &changed);
    wait(&mut h, "the changed-key warning", |h| {
        shows(h, "HOST KEY CHANGED")
    });
    drop(h);

    // Unknown host key: asked, and recorded once trusted.
    let empty = dir.join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    let mut h = gui(&addr, &keys.admin, &empty);
    wait(&mut h, "the host key prompt", |h| {
        shows(h, "Unknown host key")
    });
    h.get_by_label("trust and connect").click();
    wait(&mut h, "the node after trusting its key", |h| {
        h.state().cx.state.nodes.len() == 1
    });
    let recorded = std::fs::read_to_string(&empty).expect("read");
    assert!(
        recorded.contains(&format!("[127.0.0.1]:{}", agent.addr.port())),
        "{recorded}"
    );
    drop(h);

    // A refused action (monitor key): the agent's refusal is shown.
    let mut h = gui(&addr, &keys.monitor, &kh);
    wait(&mut h, "the node row", |h| shows(h, &addr));
    h.get_by_label_contains(&addr).click();
    wait(&mut h, "the dialog with the node's state", |h| {
        toggled(h, "block arriving guests (block)").is_some()
            && h.state().cx.state.nodes[&1].admin.is_some()
    });
    h.get_by_label("block arriving guests (block)").click();
    wait(&mut h, "the refusal", |h| {
        shows(h, "FAILED: permission denied")
    });
    let c = rt.block_on(agent.client(&keys.admin));
    assert_eq!(rt.block_on(read(&c, "admin/block")), json!(0));
    std::fs::remove_dir_all(&dir).ok();
}

fn label_y(h: &Harness<'static, OpenMosixView>, text: &str) -> f32 {
    h.get_by_label(text).rect().center().y
}

#[test]
fn process_box_sorts_filters_and_its_migrator_reaches_the_agent() {
    let keys = Keys::generate(base());
    let agent = TestAgent::standalone(base(), &keys);
    let dir = unique_dir(base(), "gui-procs");
    let kh = known_hosts_of(&agent, &dir);
    let mut first = Victim::sleep(3597);
    let second = Victim::sleep(3598);
    let (p1, p2) = (first.pid().to_string(), second.pid().to_string());

    let mut h = gui(&agent.addr.to_string(), &keys.admin, &kh);
    wait(&mut h, "the node", |h| h.state().cx.state.nodes.len() == 1);
    h.get_by_label("Processes").click();
    wait(&mut h, "the process list", |h| {
        shows(h, " processes") && !h.state().cx.state.processes.is_empty()
    });
    h.get_by_label("filter").focus();
    h.step();
    h.get_by_label("filter").type_text("sleep 359");
    wait(&mut h, "the two sleeps only", |h| {
        shows(h, "2 processes") && shows(h, "sleep 3597") && shows(h, "sleep 3598")
    });

    h.get_by_label("PID").click();
    wait(&mut h, "ascending PIDs", |h| shows(h, "PID ⬆"));
    let ascending = label_y(&h, &p1) < label_y(&h, &p2);
    h.get_by_label("PID ⬆").click();
    wait(&mut h, "descending PIDs", |h| shows(h, "PID ⬇"));
    let descending = label_y(&h, &p1) < label_y(&h, &p2);
    assert_ne!(
        ascending, descending,
        "the order flips with the sort direction"
    );
    assert_eq!(ascending, first.pid() < second.pid());

    // A row selected, the migrator opens (a double-click does the same).
    h.get_by_label(&p1).click();
    h.step();
    h.get_by_label("migrator").click();
    let title = format!("migrator: process {p1} of node 1");
    wait(&mut h, "the migrator", |h| {
        shows(h, &title) && shows(h, "runs at home")
    });

    h.get_by_label("SIGSTOP").click();
    wait_for_stat(&mut h, &first, 0, "T");
    h.get_by_label("SIGCONT").click();
    wait_for_stat(&mut h, &first, 0, "S");
    h.get_by_role(Role::Slider).focus();
    h.step();
    h.key_press(egui::Key::ArrowRight);
    wait_for_stat(&mut h, &first, 16, "1");
    h.get_by_label("kill").click();
    wait(&mut h, "the process to die", |_| {
        matches!(first.0.try_wait(), Ok(Some(_)))
    });
    wait(&mut h, "the notice", |h| {
        shows(h, &format!("SIGKILL to process {p1}"))
    });
    std::fs::remove_dir_all(&dir).ok();
}

fn wait_for_stat(h: &mut Harness<'static, OpenMosixView>, v: &Victim, field: usize, want: &str) {
    wait(h, &format!("stat field {field} = {want}"), |_| {
        v.stat().get(field).map(String::as_str) == Some(want)
    });
}

#[test]
fn execution_dialog_starts_a_job_and_the_migrator_moves_it_in_a_lab() {
    let lab = TestLab::up("gx", 87, 2);
    let rt = runtime();
    let mut h = gui(&lab.addr(1), &lab.admin_key(), &lab.known_hosts());
    wait(&mut h, "both nodes up with their state", |h| {
        let s = &h.state().cx.state;
        s.up_nodes().len() == 2 && s.nodes.values().all(|n| n.admin.is_some())
    });
    h.get_by_label("Run").click();
    wait(&mut h, "the Run menu", |h| {
        h.query_by_label("advanced execution…").is_some()
    });
    h.get_by_label("advanced execution…").click();
    wait(&mut h, "the dialog", |h| {
        shows(h, "host-chooser") || shows(h, "starts at its home node")
    });
    h.get_by_label("program").focus();
    h.step();
    h.get_by_label("program").type_text("/bin/sleep");
    h.get_by_label("arguments").focus();
    h.step();
    h.get_by_label("arguments").type_text("3577");
    h.get_by_label("working directory").focus();
    h.step();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.get_by_label("working directory")
        .type_text(&lab.dir.display().to_string());
    h.run_steps(3);
    h.get_by_label("run on").click();
    wait(&mut h, "the host-chooser", |h| shows(h, "host-chooser"));
    h.get_by_label("▶").click();
    wait(&mut h, "node 2 chosen", |h| {
        shows(h, "= runon 2 /bin/sleep 3577")
    });
    h.run_steps(3);
    // Through accesskit: under the harness a pointer click on this button is
    // not delivered (the widget is the same; its Click action runs its code).
    h.get_by_label("execute").click_accesskit();
    wait(&mut h, "the job on node 2", |h| {
        h.state()
            .cx
            .state
            .notices
            .iter()
            .any(|n| matches!(&n.result, Ok(r) if r.contains("on node 2")))
    });
    let home_pid = h
        .state()
        .cx
        .state
        .notices
        .iter()
        .rev()
        .find_map(|n| {
            let r = n.result.as_ref().ok()?;
            r.strip_prefix("started PID ")?
                .split(' ')
                .next()?
                .parse::<i32>()
                .ok()
        })
        .expect("the started job's PID");
    wait(&mut h, "the job in the process box", |h| {
        h.query_all_by_label("/bin/sleep 3577").next().is_some()
    });
    let home = rt.block_on(lab.client(1));
    let job: JobInfo = rt
        .block_on(home.call(methods::JOB_STATUS, json!({ "pid": home_pid })))
        .expect("job.status");
    assert_eq!((job.where_, job.lock), (2, true));

    // The migrator: refused while locked, moved home once unlocked.
    // Closed, as a user would, so that it does not cover the process box.
    h.state_mut()
        .windows
        .close(openmosixview::views::exec_dialog::key());
    h.step();
    h.get_by_label("/bin/sleep 3577").click();
    h.step();
    h.get_by_label("migrator").click();
    wait(&mut h, "the migrator", |h| {
        shows(h, &format!("migrator: process {home_pid} of node 1")) && shows(h, "runs on node 2")
    });
    h.get_by_label("home").click();
    wait(&mut h, "the refusal", |h| shows(h, "FAILED: process"));
    h.get_by_label("locked (no migration)").click();
    wait(&mut h, "the unlock", |h| {
        toggled(h, "locked (no migration)") == Some(false)
    });
    h.get_by_label("home").click();
    wait(&mut h, "the job at home", |h| {
        shows(h, "runs at home (node 1)")
    });
    // Its move as a bar, with the figures of its last move: a job moves
    // post-copy by default.
    wait(&mut h, "the move's bar", |h| {
        shows(h, "moved post-copy to node 1: frozen ") && shows(h, "source released after")
    });
    let job: JobInfo = rt
        .block_on(home.call(methods::JOB_STATUS, json!({ "pid": home_pid })))
        .expect("job.status");
    assert_eq!(job.where_, 1);
    // Through accesskit, like "execute": the bar above the buttons and the
    // lists refreshed after the move may shift them between two frames.
    h.get_by_label("kill").click_accesskit();
    wait(&mut h, "the kill's answer", |h| {
        h.state()
            .cx
            .state
            .notices
            .iter()
            .any(|n| n.what.starts_with("SIGKILL to process"))
    });
    wait(&mut h, "the job's end", |_| {
        rt.block_on(home.call::<_, JobInfo>(methods::JOB_STATUS, json!({ "pid": home_pid })))
            .is_ok_and(|j| j.exit.is_some())
    });
}
