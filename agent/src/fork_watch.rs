//! Sees the workers a job forks, within a tenth of a second, and hands each
//! to the balancer for placement (a program forking its workers, as the
//! seed's multifibo does, would otherwise run them all here until the next
//! balancing pass finds them old enough to move). While unlocked jobs run
//! here, every tenth of a second it reads the last PID the kernel handed out
//! (`/proc/loadavg`; a fork in a job's PID namespace takes one in the
//! agent's too) and, only if it changed, the `children` files of the jobs'
//! processes. With no such job it waits for the next sampling pass instead
//! (`proc.spawn` asks for one at once), so an idle agent is not woken ten
//! times a second. Processes that are no job's are left to the balancing
//! passes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::balancing::Newborn;
use crate::context::AgentContext;

/// How often the jobs' processes are looked at.
const EVERY: Duration = Duration::from_millis(100);

/// A job seen for the first time this soon after it started has its
/// processes counted as newborn (it may have forked before the first look).
const YOUNG_JOB_S: u64 = 2;

/// Most processes of one job looked at.
const MOST: usize = 4096;

/// Watches for as long as the agent runs (balancing on).
pub async fn watch(ctx: Arc<AgentContext>) {
    let mut known: HashMap<i32, HashSet<i32>> = HashMap::new();
    let loadavg = std::fs::File::open("/proc/loadavg").ok();
    let mut last_pid = None;
    let mut snapshots = ctx.snapshot.clone();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        if known.is_empty() {
            // No job to watch: the next pass (or the one a spawn asks for).
            if snapshots.changed().await.is_err() {
                return;
            }
        } else {
            tick.tick().await;
            let now_pid = loadavg.as_ref().and_then(last_pid_handed_out);
            if now_pid.is_some() && now_pid == last_pid {
                continue;
            }
            last_pid = now_pid;
        }
        let jobs: Vec<_> = ctx
            .jobs
            .all()
            .into_iter()
            .filter(|j| {
                j.info.where_ == ctx.node_id
                    && j.info.exit.is_none()
                    && !j.info.lock
                    && !j.info.single
            })
            .collect();
        if jobs.is_empty() {
            known.clear();
            continue;
        }
        let now = hpc::clock::now_ms() / 1000;
        let mut still = HashMap::with_capacity(jobs.len());
        for job in jobs {
            let command = job.info.pid;
            let tree = descendants(command);
            let young =
                job.info.nmigs == 0 && now.saturating_sub(job.info.start_time) <= YOUNG_JOB_S;
            let seen = known.remove(&command);
            let fresh: Vec<i32> = match &seen {
                Some(seen) => tree.iter().filter(|p| !seen.contains(p)).copied().collect(),
                None if young => tree.clone(),
                None => Vec::new(),
            };
            for pid in fresh {
                let _ = ctx.newborns.send(Newborn::Worker { pid, job: command });
            }
            still.insert(command, tree.into_iter().collect());
        }
        known = still;
    }
}

/// The last PID the kernel handed out in this PID namespace (the last
/// field of `/proc/loadavg`, read again through the open `file`).
fn last_pid_handed_out(file: &std::fs::File) -> Option<i32> {
    let mut buf = [0u8; 128];
    let n = std::os::unix::fs::FileExt::read_at(file, &mut buf, 0).ok()?;
    std::str::from_utf8(buf.get(..n)?)
        .ok()?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// The processes below `pid` (not itself), at most [`MOST`].
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut next = vec![pid];
    while let Some(p) = next.pop() {
        for c in crate::jobs::children(p) {
            if out.len() >= MOST {
                return out;
            }
            out.push(c);
            next.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fork_changes_the_last_pid_handed_out() {
        let file = std::fs::File::open("/proc/loadavg").unwrap();
        let before = last_pid_handed_out(&file).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        let after = last_pid_handed_out(&file).unwrap();
        assert_ne!(before, after);
        assert!(
            after >= child.id() as i32 || after < before,
            "{before} {after}"
        );
    }

    #[test]
    fn descendants_are_the_whole_tree_below() {
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & (sleep 30 & wait) & wait"])
            .spawn()
            .unwrap();
        let pid = sh.id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut tree = descendants(pid);
        // Two sleeps, the subshell.
        while tree.len() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            tree = descendants(pid);
        }
        for p in &tree {
            kill9(*p);
        }
        let _ = sh.kill();
        let _ = sh.wait();
        assert_eq!(tree.len(), 3, "{tree:?}");
        assert!(!tree.contains(&pid));
    }

    fn kill9(pid: i32) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
}
