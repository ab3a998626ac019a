//! Deputies on real processes (root: ptrace): a 256 MiB process stopped as
//! CRIU leaves it, adopted, holds no memory; the signals sent to it are
//! caught and reported; it ends the way it is told and its parent's `wait()`
//! sees exactly that. The parent is a real Perl program that forks the
//! process and prints the status `waitpid` gave it.
// Test code: a failed unwrap, expect or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::deputy::{Deputies, DeputyEvent, End, rss_of};

const PARENT: &str = r#"
$| = 1;
my $pid = fork();
if ($pid == 0) {
    $SIG{TERM} = sub { print STDERR "handler ran\n"; } if $ENV{HANDLER};
    my $x = "a" x (256 << 20);
    while (1) { sleep 1; }
}
print "$pid\n";
waitpid($pid, 0);
my $s = $?;
if ($s & 127) { print "signal ", ($s & 127), "\n"; } else { print "exit ", ($s >> 8), "\n"; }
"#;

struct Family {
    parent: Child,
    out: BufReader<std::process::ChildStdout>,
    child: i32,
}

impl Drop for Family {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; the PIDs are ours.
        unsafe { libc::kill(self.child, libc::SIGKILL) };
        let _ = self.parent.kill();
        let _ = self.parent.wait();
    }
}

/// A Perl parent and its 256 MiB child, the child stopped (as CRIU leaves it).
fn family(handler: bool) -> Family {
    let mut parent = Command::new("/usr/bin/perl")
        .args(["-e", PARENT])
        .env("HANDLER", if handler { "1" } else { "" })
        .stdout(Stdio::piped())
        .spawn()
        .expect("perl");
    let mut out = BufReader::new(parent.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let child: i32 = line.trim().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while rss_of(child) < 256 << 20 {
        assert!(
            Instant::now() < deadline,
            "the child did not fill its memory"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::kill(child, libc::SIGSTOP) };
    while state(child) != 'T' {
        std::thread::sleep(Duration::from_millis(10));
    }
    Family { parent, out, child }
}

fn state(pid: i32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
        .unwrap_or('?')
}

/// User plus system CPU ticks of a process.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(") ").unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of stat, 12 and 13 after the name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// What the parent's `waitpid` said.
fn parent_saw(f: &mut Family) -> String {
    let mut line = String::new();
    f.out.read_line(&mut line).unwrap();
    line.trim().to_string()
}

fn next_event(rx: &mut tokio::sync::mpsc::UnboundedReceiver<DeputyEvent>) -> DeputyEvent {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(e) = rx.try_recv() {
            return e;
        }
        assert!(Instant::now() < deadline, "no deputy event");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_deputy_holds_no_memory_catches_signals_and_exits_with_the_remote_code() {
    let (deputies, mut events) = Deputies::start().unwrap();
    let mut f = family(false);
    let adopted = deputies.adopt(f.child).unwrap();
    assert!(adopted.rss_before >= 256 << 20, "{adopted:?}");
    assert!(adopted.rss_after <= 1 << 20, "deputy RSS: {adopted:?}");
    assert!(rss_of(f.child) <= 1 << 20);

    // SAFETY: a signal to our own child.
    unsafe { libc::kill(f.child, libc::SIGTERM) };
    assert_eq!(
        next_event(&mut events),
        DeputyEvent::Signal {
            pid: f.child,
            signal: libc::SIGTERM
        }
    );
    // SAFETY: as above.
    unsafe { libc::kill(f.child, libc::SIGCONT) };
    assert_eq!(
        next_event(&mut events),
        DeputyEvent::Signal {
            pid: f.child,
            signal: libc::SIGCONT
        }
    );
    // Neither signal ran anything: the deputy waits, using no CPU.
    let cpu = cpu_ticks(f.child);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        matches!(state(f.child), 'S' | 't' | 'T'),
        "waiting: {}",
        state(f.child)
    );
    assert_eq!(cpu_ticks(f.child), cpu);

    deputies.end(f.child, End::Exit(7)).unwrap();
    assert_eq!(parent_saw(&mut f), "exit 7");
}

#[test]
fn a_deputy_dies_by_the_remote_signal_even_with_a_handler() {
    let (deputies, _events) = Deputies::start().unwrap();
    let mut f = family(true);
    deputies.adopt(f.child).unwrap();
    deputies.end(f.child, End::Signal(libc::SIGTERM)).unwrap();
    assert_eq!(parent_saw(&mut f), "signal 15");
}

#[test]
fn a_deputy_killed_at_home_is_reported_gone() {
    let (deputies, mut events) = Deputies::start().unwrap();
    let mut f = family(false);
    deputies.adopt(f.child).unwrap();
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(f.child, libc::SIGKILL) };
    assert_eq!(
        next_event(&mut events),
        DeputyEvent::Gone {
            pid: f.child,
            end: End::Signal(libc::SIGKILL)
        }
    );
    assert_eq!(parent_saw(&mut f), "signal 9");
    assert_eq!(
        deputies.end(f.child, End::Exit(0)),
        Err(agent::deputy::DeputyError::Unknown(f.child))
    );
}
