//! The Debian package (issue 17): `scripts/build-deb.sh` builds it; it
//! installs on a clean Debian chroot (debootstrap, minbase and systemd),
//! starts nothing and makes no key unless asked, its units pass
//! `systemd-analyze verify`, the agent it installs runs, and removing it
//! stops that agent: no process of it is left.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    std::fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).unwrap()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The processes whose root directory is `dir` (they run in the chroot).
fn processes_in(dir: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == dir))
        .collect()
}

/// A Debian chroot made for this test, taken down (its processes killed,
/// `/proc` unmounted, the tree removed) however the test ends.
struct Chroot {
    dir: PathBuf,
}

impl Chroot {
    fn bootstrap() -> Self {
        let dir = repo()
            .join("target")
            .join(format!("package-chroot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let chroot = Self { dir };
        // The host's mirror (Debian's own by default).
        let mirror = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("URIs: ").map(|u| u.trim().to_string()))
            })
            .unwrap_or_else(|| "http://deb.debian.org/debian".into());
        run(Command::new("debootstrap")
            .args(["--variant=minbase", "--include=systemd", "bookworm"])
            .arg(&chroot.dir)
            .arg(&mirror));
        chroot
    }

    fn cmd(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("chroot");
        c.arg(&self.dir)
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        c
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p.trim_start_matches('/'))
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        for pid in processes_in(&self.dir) {
            // SAFETY: kill has no memory-safety preconditions; these run in
            // this test's chroot.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.path("/proc"))
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_deb_installs_on_a_clean_debian_runs_its_agent_and_leaves_nothing_running_once_removed() {
    // The package, from the debug binaries the tests use.
    let out_dir = repo()
        .join("target")
        .join(format!("debian-test-{}", std::process::id()));
    let built = run(Command::new("bash")
        .arg(repo().join("scripts/build-deb.sh"))
        .args(["--profile", "debug", "--out"])
        .arg(&out_dir));
    let deb = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim().to_string());
    let deb = if deb.is_absolute() {
        deb
    } else {
        repo().join(deb)
    };
    let contents =
        String::from_utf8_lossy(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)).stdout)
            .into_owned();
    for f in [
        "./usr/sbin/openmosixd",
        "./usr/sbin/openmosix-jobinit",
        "./usr/sbin/openmosixcollector",
        "./usr/bin/mosctl",
        "./usr/bin/mps",
        "./usr/bin/mosmon",
        "./usr/bin/mtop",
        "./usr/bin/runon -> mosrun",
        "./lib/systemd/system/openmosixd.service",
        "./etc/default/openmosixd",
    ] {
        assert!(
            contents.contains(f),
            "{f} is not in the package:\n{contents}"
        );
    }

    let root = Chroot::bootstrap();
    std::fs::copy(&deb, root.path("/openmosix.deb")).unwrap();
    let _ = std::fs::remove_dir_all(&out_dir);

    // Installed as it comes: no key, so nothing starts and nothing is made.
    let first = run(&mut root.cmd(&["dpkg", "-i", "/openmosix.deb"]));
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("no cluster key in /etc/openmosix yet")
    );
    assert!(!root.path("/etc/openmosix/cluster_key").exists());
    let mode = std::fs::metadata(root.path("/etc/openmosix"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    // Enabled (a link to the unit; absolute, so read in the chroot's terms).
    let wants = root.path("/etc/systemd/system/multi-user.target.wants/openmosixd.service");
    assert_eq!(
        std::fs::read_link(&wants).unwrap(),
        Path::new("/lib/systemd/system/openmosixd.service")
    );
    for unit in ["openmosixd.service", "openmosixcollector.service"] {
        let verify = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.dir.display()))
            .arg(format!("/lib/systemd/system/{unit}"))
            .output()
            .unwrap();
        assert!(
            verify.status.success() && verify.stderr.is_empty(),
            "{unit}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
    }

    // Asked for a new cluster's key, it makes one (and never replaces it).
    let mut again = root.cmd(&["dpkg", "-i", "/openmosix.deb"]);
    again.env("OPENMOSIX_NEW_CLUSTER_KEY", "1");
    let asked = run(&mut again);
    assert!(String::from_utf8_lossy(&asked.stdout).contains("copy it to every node"));
    let key = root.path("/etc/openmosix/cluster_key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let first_key = std::fs::read(&key).unwrap();
    let mut third = root.cmd(&["dpkg", "-i", "/openmosix.deb"]);
    third.env("OPENMOSIX_NEW_CLUSTER_KEY", "1");
    run(&mut third);
    assert_eq!(
        std::fs::read(&key).unwrap(),
        first_key,
        "the key was replaced"
    );

    // Its agent runs there (in a network namespace of its own) and answers.
    run(Command::new("mount")
        .args(["-t", "proc", "proc"])
        .arg(root.path("/proc")));
    let mut agent = Command::new("unshare")
        .args(["--net", "--", "sh", "-c"])
        .arg(format!(
            "ip link set lo up && exec chroot {} /usr/sbin/openmosixd --listen 127.0.0.1:4660 --discovery off --balance off",
            root.dir.display()
        ))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = agent.stdout.take().unwrap();
    let ready = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.starts_with("openmosixd ready"))
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        ready.is_finished() && ready.join().unwrap(),
        "the packaged agent did not start"
    );
    let status = run(&mut root.cmd(&["/usr/bin/mosctl", "status"]));
    assert!(!status.stdout.is_empty());
    assert!(!processes_in(&root.dir).is_empty());

    // Removed: its prerm stops the agent; no process is left in the chroot.
    let removed = run(&mut root.cmd(&["dpkg", "-r", "openmosix"]));
    let ended = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        matches!(agent.try_wait(), Ok(Some(_)))
    });
    assert!(
        ended,
        "the agent still runs after dpkg -r: {}",
        String::from_utf8_lossy(&removed.stdout)
    );
    assert_eq!(
        processes_in(&root.dir),
        Vec::<i32>::new(),
        "processes left in the chroot"
    );
    assert!(!root.path("/usr/sbin/openmosixd").exists());
    assert!(key.exists(), "remove keeps the configuration");
    run(&mut root.cmd(&["dpkg", "--purge", "openmosix"]));
    assert!(
        !root.path("/etc/openmosix").exists(),
        "purge removes the keys"
    );
    assert!(!root.path("/var/lib/openmosix").exists());
}
