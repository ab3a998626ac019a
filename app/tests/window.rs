//! A real window: `openmosixview` under Xvfb against a lab, writing its first
//! complete frame with `--screenshot`; the picture must show the nodes. Then
//! the same binary as `openmosixmigmon`: penguins and a migrated job.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hpc::model::{Liveness, NodeStatus};
use hpc::protocol::methods;
use serde_json::json;
use testkit::{TestLab, bin, unique_dir};

/// An Xvfb server on a display it picked itself, stopped by PID when dropped.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Self {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x1024x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Xvfb (scripts/install-deps.sh installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("Xvfb stdout"))
            .read_line(&mut line)
            .expect("Xvfb display number");
        Self {
            display: format!(":{}", line.trim()),
            child,
        }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until node 1 sees every node up (the gossip has settled).
fn wait_until_settled(lab: &TestLab, nodes: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = lab.client(1).await;
        let up = testkit::wait_for(Duration::from_secs(60), || async {
            let list: Vec<NodeStatus> = c.call(methods::CLUSTER_NODES, json!({})).await.ok()?;
            (list.iter().filter(|n| n.status == Liveness::Up).count() == nodes).then_some(())
        })
        .await;
        assert!(up.is_some(), "the lab's nodes did not all come up");
    });
}

/// Waits for the app to write its screenshot and quit (120 s at most).
fn wait_for_exit(app: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(s) = app.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = app.kill();
            panic!("the app did not write its screenshot and quit within 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `program` (openmosixview, or a link to it) against `lab` on the
/// display of `x` with `--screenshot shot` and its configuration in `dir`;
/// its exit status and what it logged.
fn screenshot(
    program: &Path,
    lab: &TestLab,
    x: &Xvfb,
    dir: &Path,
    shot: &Path,
) -> (std::process::ExitStatus, String) {
    let mut app = Command::new(program)
        .args(["--node", &lab.addr(1), "--key"])
        .arg(lab.admin_key())
        .arg("--known-hosts")
        .arg(lab.known_hosts())
        .arg("--config")
        .arg(dir.join("config.json"))
        .arg("--screenshot")
        .arg(shot)
        .env("DISPLAY", &x.display)
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
    let status = wait_for_exit(&mut app);
    let mut log = String::new();
    if let Some(mut e) = app.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut log);
    }
    (status, log)
}

/// How many pixels of an RGBA image have exactly this colour.
fn count(rgba: &[u8], want: [u8; 3]) -> usize {
    rgba.chunks_exact(4)
        .filter(|p| p[0] == want[0] && p[1] == want[1] && p[2] == want[2])
        .count()
}

fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).expect("open png"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    buf.truncate(info.buffer_size());
    assert_eq!(info.color_type, png::ColorType::Rgba);
    (info.width, info.height, buf)
}

#[test]
fn the_window_shows_the_lab_and_writes_its_screenshot() {
    let lab = TestLab::up("gw", 86, 3);
    wait_until_settled(&lab, 3);
    let x = Xvfb::start();
    let dir = unique_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), "window");
    let shot = dir.join("openmosixview.png");
    let (status, log) = screenshot(&bin("openmosixview"), &lab, &x, &dir, &shot);
    assert!(status.success(), "openmosixview failed: {status}\n{log}");
    assert!(log.contains("screenshot written"), "{log}");

    // The picture: the window's size, and three green lamps (up nodes), no red error text.
    let (w, h, rgba) = decode(&shot);
    assert!(w >= 800 && h >= 400, "{w}x{h}");
    let green = count(&rgba, [40, 180, 60]);
    let red = count(&rgba, [210, 40, 40]);
    assert!(
        green >= 3 * 20,
        "expected three green lamps, found {green} green pixels"
    );
    assert!(red < 20, "error text on screen ({red} red pixels)\n{log}");
    // The saved configuration remembers the node for the next start.
    let config = std::fs::read_to_string(dir.join("config.json")).expect("config saved");
    assert!(config.contains(&lab.addr(1)), "{config}");

    // The migration monitor under its own name, with a job of node 1 on node 2.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let home = rt.block_on(lab.client(1));
    let job = rt.block_on(testkit::spawn_sleep(&home, 3591));
    rt.block_on(home.call_value(
        methods::PROC_MIGRATE,
        json!({ "pid": job.home_pid, "to": "2" }),
    ))
    .expect("migrate");
    let link = dir.join("openmosixmigmon");
    std::os::unix::fs::symlink(bin("openmosixview"), &link).expect("link");
    let shot = dir.join("migmon.png");
    let (status, log) = screenshot(&link, &lab, &x, &dir, &shot);
    assert!(status.success(), "openmosixmigmon failed: {status}\n{log}");
    let (_, _, rgba) = decode(&shot);
    // Three penguins' white bellies, and the job's green square at node 2.
    let bellies = count(&rgba, [245, 245, 240]);
    assert!(bellies >= 3 * 200, "three penguins: {bellies} belly pixels");
    let green = count(&rgba, [40, 180, 60]);
    assert!(green >= 40, "a green square: {green} green pixels");
    rt.block_on(home.call_value(
        methods::PROC_SIGNAL,
        json!({ "pid": job.home_pid, "signal": "KILL" }),
    ))
    .ok();
    std::fs::remove_dir_all(&dir).ok();
}
