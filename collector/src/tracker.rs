//! Turns each tick's process lists of every node into process-history events:
//! a process started, moved (it appears on another node under the same home
//! identity), or ended.
//!
//! A process is known by its identity (home node, PID at home), which a
//! migrated job keeps. A node that did not answer tells nothing: its processes
//! are neither ended nor moved. A process is taken as ended only after it is
//! missing from every answer for [`GRACE_TICKS`] ticks in a row (a migration's
//! hand-over can hide it for one), and its end time is the first tick it was
//! missing.
//!
//! Moves come from the agents' move logs ([`Tracker::apply_moves`]): every
//! move, with its figures, however fast they follow each other. A process
//! seen on another node than the logs say is taken as moved there only after
//! [`INFER_TICKS`] ticks with no logged move explaining it (an agent that died
//! before logging its move, or an agent too old to log).

use std::collections::{HashMap, HashSet};

use hpc::model::{NodeId, ProcessInfo};

use history::events::{ProcEnd, ProcEvent, ProcMove, ProcStart};
use history::store::OpenProcess;
use hpc::protocol::MoveRecord;

/// Ticks a process must be missing before it is taken as ended.
pub const GRACE_TICKS: u32 = 2;

/// Ticks a process must be seen on another node, with no logged move
/// explaining it, before that move is recorded from the sighting.
pub const INFER_TICKS: u32 = 3;

/// A post-copy move's release time and pulled bytes (None for pre-copy).
pub fn move_figures(r: &hpc::protocol::MigrationReport) -> (Option<i64>, Option<i64>) {
    if r.mode == hpc::protocol::MigrationMode::Postcopy {
        (
            i64::try_from(r.released_ms).ok(),
            i64::try_from(r.pulled_bytes).ok(),
        )
    } else {
        (None, None)
    }
}

/// Ended processes remembered for late moves from logs that could not be read
/// at the time (their source agent was unreachable).
const ENDED_MEMORY: usize = 4096;

/// Our own job-namespace init: listed with its job's identity, but the job's
/// command is the process that history is about.
const JOBINIT: &str = "openmosix-jobinit";

/// A process's identity: (home node, PID at home).
pub type Identity = (NodeId, i32);

#[derive(Debug, Clone)]
struct Tracked {
    id: i64,
    /// As first recorded (command, owner, start).
    start: ProcStart,
    node: NodeId,
    pid: i32,
    /// Started through an agent (it has a job record at its home).
    job: bool,
    missing_since: Option<i64>,
    missing_ticks: u32,
    /// Seen on another node than recorded: (node, PID there, since, ticks).
    elsewhere: Option<(NodeId, i32, i64, u32)>,
}

impl Tracked {
    /// Whether a logged move with this start time (seconds) is about this
    /// process rather than an earlier one with the same identity.
    fn same_start(&self, start_time: u64) -> bool {
        (self.start.started_ms / 1000 - start_time as i64).abs() <= 2
    }
}

/// One node's answer for a tick.
#[derive(Debug, Clone)]
pub enum NodeProcs {
    /// The node answered with this process list.
    Listed(Vec<ProcessInfo>),
    /// The node did not answer: nothing is known about its processes.
    Unknown,
}

/// The process tracker.
#[derive(Debug, Default)]
pub struct Tracker {
    alive: HashMap<Identity, Tracked>,
    next_id: i64,
    /// Identities of the jobs the last update ended.
    ended_jobs: HashMap<i64, Identity>,
    /// Recently ended processes: (identity, number, start ms), oldest first.
    ended: std::collections::VecDeque<(Identity, i64, i64)>,
}

/// Whether a row is a kernel thread (no user-space command line).
fn is_kernel_thread(p: &ProcessInfo) -> bool {
    p.cmdline.starts_with('[') || p.ppid == 2 || p.pid == 2
}

impl Tracker {
    /// A tracker resuming from the history's running processes; new processes
    /// are numbered from `next_id`.
    pub fn resume(open: Vec<OpenProcess>, next_id: i64) -> Self {
        let alive = open
            .into_iter()
            .map(|p| {
                (
                    (p.start.home, p.start.home_pid),
                    Tracked {
                        id: p.start.id,
                        node: p.node,
                        pid: p.pid,
                        start: p.start,
                        // Learnt again at its next sighting.
                        job: false,
                        missing_since: None,
                        missing_ticks: 0,
                        elsewhere: None,
                    },
                )
            })
            .collect();
        Self {
            alive,
            next_id: next_id.max(1),
            ended_jobs: HashMap::new(),
            ended: Default::default(),
        }
    }

    /// How many processes are running.
    pub fn running(&self) -> usize {
        self.alive.len()
    }

    /// The running processes, as `Start` events of a new history (after `-r`),
    /// keeping their numbers and start times, placed where they run now.
    pub fn carry_over(&self) -> Vec<ProcEvent> {
        self.alive
            .values()
            .map(|t| {
                ProcEvent::Start(ProcStart {
                    node: t.node,
                    pid: t.pid,
                    ..t.start.clone()
                })
            })
            .collect()
    }

    /// Compares this tick's answers with what was running and returns the events.
    pub fn update(&mut self, t_ms: i64, answers: &[(NodeId, NodeProcs)]) -> Vec<ProcEvent> {
        self.ended_jobs.clear();
        let answered: HashSet<NodeId> = answers
            .iter()
            .filter(|(_, p)| matches!(p, NodeProcs::Listed(_)))
            .map(|(n, _)| *n)
            .collect();
        // Where each identity runs now, identities a home lists as away, and
        // identities seen to be jobs (away from home, or beside their job init).
        let mut here: HashMap<Identity, (NodeId, &ProcessInfo)> = HashMap::new();
        let mut away: HashSet<Identity> = HashSet::new();
        let mut jobs: HashSet<Identity> = HashSet::new();
        for (node, procs) in answers {
            let NodeProcs::Listed(list) = procs else {
                continue;
            };
            for p in list.iter().filter(|p| !is_kernel_thread(p)) {
                let home = if p.home == 0 { *node } else { p.home };
                let home_pid = if p.home_pid == 0 { p.pid } else { p.home_pid };
                let key = (home, home_pid);
                if p.where_ != 0 && p.where_ != *node {
                    away.insert(key);
                    jobs.insert(key);
                    continue;
                }
                if p.cmdline.contains(JOBINIT) {
                    jobs.insert(key);
                }
                match here.get(&key) {
                    None => {
                        here.insert(key, (*node, p));
                    }
                    Some((n, prev)) => {
                        let prefer = if *n == *node {
                            // Same node: the job's command, not its init.
                            prev.cmdline.contains(JOBINIT) && !p.cmdline.contains(JOBINIT)
                        } else {
                            // Two nodes during a hand-over: the new one.
                            self.alive.get(&key).is_some_and(|t| t.node == *n)
                        };
                        if prefer {
                            here.insert(key, (*node, p));
                        }
                    }
                }
            }
        }
        let mut events = Vec::new();
        for (key, (node, p)) in &here {
            match self.alive.get_mut(key) {
                Some(t) => {
                    t.missing_since = None;
                    t.missing_ticks = 0;
                    t.job |= jobs.contains(key);
                    if t.node == *node {
                        t.elsewhere = None;
                        t.pid = p.pid;
                        continue;
                    }
                    let seen = match t.elsewhere {
                        Some((n, _, since, ticks)) if n == *node => (since, ticks + 1),
                        _ => (t_ms, 1),
                    };
                    t.elsewhere = Some((*node, p.pid, seen.0, seen.1));
                    if seen.1 >= INFER_TICKS {
                        // No log explained it: record the move as seen.
                        events.push(ProcEvent::Move(ProcMove {
                            id: t.id,
                            t_ms: seen.0,
                            from: t.node,
                            to: *node,
                            pid: p.pid,
                            duration_ms: None,
                            freeze_ms: None,
                            bytes: None,
                            why: None,
                            mode: None,
                            released_ms: None,
                            pulled_bytes: None,
                        }));
                        t.node = *node;
                        t.pid = p.pid;
                        t.elsewhere = None;
                    }
                }
                None => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let start = ProcStart {
                        id,
                        home: key.0,
                        home_pid: key.1,
                        node: *node,
                        pid: p.pid,
                        cmd: p.cmdline.clone(),
                        owner: p.user.clone(),
                        started_ms: (p.start_time as i64).saturating_mul(1000).min(t_ms),
                    };
                    events.push(ProcEvent::Start(start.clone()));
                    self.alive.insert(
                        *key,
                        Tracked {
                            id,
                            start,
                            node: *node,
                            pid: p.pid,
                            job: jobs.contains(key),
                            missing_since: None,
                            missing_ticks: 0,
                            elsewhere: None,
                        },
                    );
                }
            }
        }
        let mut ended = Vec::new();
        for (key, t) in self.alive.iter_mut() {
            if here.contains_key(key) {
                continue;
            }
            if away.contains(key) || !answered.contains(&t.node) {
                // Its home vouches for it, or its node said nothing.
                t.missing_since = None;
                t.missing_ticks = 0;
                continue;
            }
            let since = *t.missing_since.get_or_insert(t_ms);
            t.missing_ticks += 1;
            if t.missing_ticks >= GRACE_TICKS {
                ended.push(*key);
                events.push(ProcEvent::End(ProcEnd {
                    id: t.id,
                    t_ms: since,
                    reason: "exited".into(),
                    exit_code: None,
                }));
            }
        }
        for key in ended {
            if let Some(t) = self.alive.remove(&key) {
                self.remember_end(key, &t);
                if t.job {
                    self.ended_jobs.insert(t.id, key);
                }
            }
        }
        events
    }

    fn remember_end(&mut self, key: Identity, t: &Tracked) {
        self.ended.push_back((key, t.id, t.start.started_ms));
        while self.ended.len() > ENDED_MEMORY {
            self.ended.pop_front();
        }
    }

    /// Turns moves read from the agents' logs into events, in the order each
    /// process made them. A move of a process never seen (it started and
    /// moved between two ticks) first records its start; a late move of a
    /// process that has since ended is added to that process.
    pub fn apply_moves(&mut self, t_ms: i64, mut moves: Vec<MoveRecord>) -> Vec<ProcEvent> {
        moves.sort_by_key(|m| {
            (
                m.report.home,
                m.report.home_pid,
                m.report.nmigs,
                m.report.at_ms,
            )
        });
        let mut events = Vec::new();
        for m in moves {
            let r = &m.report;
            let key = (r.home, r.home_pid);
            let (released_ms, pulled_bytes) = move_figures(r);
            let mv = |id| {
                ProcEvent::Move(ProcMove {
                    id,
                    t_ms: i64::try_from(r.at_ms).unwrap_or(t_ms),
                    from: r.from,
                    to: r.to,
                    pid: r.pid,
                    duration_ms: Some(r.total_ms as i64),
                    freeze_ms: Some(r.freeze_ms as i64),
                    bytes: i64::try_from(r.bytes).ok(),
                    why: (!r.why.is_empty()).then(|| r.why.clone()),
                    mode: Some(r.mode),
                    released_ms,
                    pulled_bytes,
                })
            };
            if let Some(t) = self
                .alive
                .get_mut(&key)
                .filter(|t| t.same_start(m.start_time))
            {
                events.push(mv(t.id));
                t.node = r.to;
                t.pid = r.pid;
                t.job = true;
                t.elsewhere = None;
                continue;
            }
            let late = self.ended.iter().rev().find(|(k, _, started)| {
                *k == key && (started / 1000 - m.start_time as i64).abs() <= 2
            });
            if let Some((_, id, _)) = late {
                events.push(mv(*id));
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let start = ProcStart {
                id,
                home: r.home,
                home_pid: r.home_pid,
                node: r.from,
                pid: if r.from == r.home { r.home_pid } else { 0 },
                cmd: m.cmdline.clone(),
                owner: m.user.clone(),
                started_ms: (m.start_time as i64).saturating_mul(1000).min(t_ms),
            };
            events.push(ProcEvent::Start(start.clone()));
            events.push(mv(id));
            let fresh = Tracked {
                id,
                start,
                node: r.to,
                pid: r.pid,
                job: true,
                missing_since: None,
                missing_ticks: 0,
                elsewhere: None,
            };
            if let Some(old) = self.alive.insert(key, fresh) {
                // An earlier process with this identity (its PID was reused).
                events.push(ProcEvent::End(ProcEnd {
                    id: old.id,
                    t_ms,
                    reason: "exited".into(),
                    exit_code: None,
                }));
                self.remember_end(key, &old);
            }
        }
        events
    }

    /// Ends every process last seen on `node`, which left the cluster at `t_ms`.
    pub fn node_left(&mut self, node: NodeId, t_ms: i64) -> Vec<ProcEvent> {
        let gone: Vec<Identity> = self
            .alive
            .iter()
            .filter(|(_, t)| t.node == node)
            .map(|(k, _)| *k)
            .collect();
        gone.into_iter()
            .filter_map(|k| self.alive.remove(&k))
            .map(|t| {
                ProcEvent::End(ProcEnd {
                    id: t.id,
                    t_ms,
                    reason: "its node left the cluster".into(),
                    exit_code: None,
                })
            })
            .collect()
    }

    /// The identity of a job (a running one, or one the last update ended) by
    /// its number; None for processes that were not started through an agent,
    /// which have no record at their home to ask about.
    pub fn job_identity(&self, id: i64) -> Option<Identity> {
        self.alive
            .iter()
            .find(|(_, t)| t.id == id && t.job)
            .map(|(k, _)| *k)
            .or_else(|| self.ended_jobs.get(&id).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpc::model::{ClusterMask, DecayClass};

    fn row(pid: i32, home: NodeId, home_pid: i32, where_: NodeId, cmd: &str) -> ProcessInfo {
        ProcessInfo {
            pid,
            ppid: 1,
            user: "root".into(),
            uid: 0,
            state: 'S',
            nice: 0,
            cpu: 0.0,
            rss: 0,
            threads: 1,
            start_time: 1_000,
            cmdline: cmd.into(),
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

    fn kinds(ev: &[ProcEvent]) -> Vec<&'static str> {
        let mut k: Vec<_> = ev
            .iter()
            .map(|e| match e {
                ProcEvent::Start(_) => "start",
                ProcEvent::Move(_) => "move",
                ProcEvent::End(_) => "end",
                ProcEvent::Exit { .. } => "exit",
            })
            .collect();
        k.sort();
        k
    }

    #[test]
    fn start_move_and_end_across_nodes() {
        let mut t = Tracker::resume(Vec::new(), 1);
        let job = |pid, where_| row(pid, 1, 100, where_, "counter");
        let ev = t.update(
            10_000,
            &[
                (
                    1,
                    NodeProcs::Listed(vec![job(100, 1), row(7, 1, 7, 1, "[kthread]")]),
                ),
                (2, NodeProcs::Listed(vec![])),
            ],
        );
        assert_eq!(kinds(&ev), ["start"], "kernel threads are not history");
        // Hand-over: neither node lists it, but the home lists it as away.
        let ev = t.update(
            11_000,
            &[
                (1, NodeProcs::Listed(vec![job(100, 2)])),
                (2, NodeProcs::Listed(vec![])),
            ],
        );
        assert!(ev.is_empty());
        let there = [
            (1, NodeProcs::Listed(vec![job(100, 2)])),
            (
                2,
                NodeProcs::Listed(vec![
                    job(55, 2),
                    row(54, 1, 100, 2, "openmosix-jobinit -- counter"),
                ]),
            ),
        ];
        // No move log explains it: taken as moved once seen there for
        // INFER_TICKS ticks, at the first sighting.
        assert!(t.update(12_000, &there).is_empty());
        assert!(t.update(12_500, &there).is_empty());
        match &t.update(12_800, &there)[..] {
            [ProcEvent::Move(m)] => {
                assert_eq!((m.from, m.to, m.pid, m.t_ms), (1, 2, 55, 12_000));
                assert_eq!(m.freeze_ms, None);
            }
            other => panic!("{other:?}"),
        }
        // Node 2 silent: nothing is concluded.
        let none = [(1, NodeProcs::Listed(vec![])), (2, NodeProcs::Unknown)];
        assert!(t.update(13_000, &none).is_empty());
        assert!(t.update(14_000, &none).is_empty());
        // Gone from node 2 for two ticks: ended at the first.
        let gone = [
            (1, NodeProcs::Listed(vec![])),
            (2, NodeProcs::Listed(vec![])),
        ];
        assert!(t.update(15_000, &gone).is_empty());
        match &t.update(16_000, &gone)[..] {
            [ProcEvent::End(e)] => {
                assert_eq!(e.t_ms, 15_000);
                assert_eq!(
                    t.job_identity(e.id),
                    Some((1, 100)),
                    "known right after its end"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.running(), 0);
    }

    fn logged(seq: u64, from: NodeId, to: NodeId, pid: i32, nmigs: u32) -> MoveRecord {
        MoveRecord {
            seq,
            report: hpc::protocol::MigrationReport {
                home: 1,
                home_pid: 100,
                from,
                to,
                pid,
                bytes: 4096,
                freeze_ms: 90 + u64::from(nmigs),
                total_ms: 150,
                nmigs,
                at_ms: 10_000 + u64::from(nmigs) * 200,
                ..Default::default()
            },
            cmdline: "counter".into(),
            user: "root".into(),
            // As the tracker recorded it (clamped to its first tick, 9 s).
            start_time: 9,
        }
    }

    #[test]
    fn logged_moves_are_recorded_in_order_with_figures_and_never_twice() {
        let mut t = Tracker::resume(Vec::new(), 1);
        let job = |pid, where_| row(pid, 1, 100, where_, "counter");
        let listed = |n1: Vec<ProcessInfo>, n2, n3| {
            [
                (1, NodeProcs::Listed(n1)),
                (2, NodeProcs::Listed(n2)),
                (3, NodeProcs::Listed(n3)),
            ]
        };
        t.update(9_000, &listed(vec![job(100, 1)], vec![], vec![]));
        // Three hops within one tick, logged by three sources, read out of order.
        let ev = t.apply_moves(
            11_000,
            vec![
                logged(7, 3, 1, 100, 3),
                logged(4, 1, 2, 55, 1),
                logged(9, 2, 3, 77, 2),
            ],
        );
        let hops: Vec<(NodeId, NodeId, Option<i64>)> = ev
            .iter()
            .map(|e| match e {
                ProcEvent::Move(m) => (m.from, m.to, m.freeze_ms),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(hops, [(1, 2, Some(91)), (2, 3, Some(92)), (3, 1, Some(93))]);
        // The lists agree with the logs: nothing more is concluded.
        assert!(
            t.update(11_000, &listed(vec![job(100, 1)], vec![], vec![]))
                .is_empty()
        );
        // A list read before the log: the sighting waits, the log explains it.
        let stale = listed(vec![job(100, 2)], vec![job(56, 2)], vec![]);
        assert!(t.update(12_000, &stale).is_empty());
        let ev = t.apply_moves(13_000, vec![logged(5, 1, 2, 56, 4)]);
        assert_eq!(ev.len(), 1);
        for tick in 13_000..13_005 {
            assert!(
                t.update(tick, &stale).is_empty(),
                "no second move from the sighting"
            );
        }
        // A job that started and moved between two ticks: its start comes from the log.
        let mut fresh = Tracker::resume(Vec::new(), 1);
        let ev = fresh.apply_moves(20_000, vec![logged(1, 1, 2, 55, 1)]);
        assert_eq!(kinds(&ev), ["move", "start"]);
        match &ev[0] {
            ProcEvent::Start(s) => assert_eq!((s.node, s.pid, s.cmd.as_str()), (1, 100, "counter")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_node_leaving_ends_its_processes() {
        let mut t = Tracker::resume(Vec::new(), 1);
        t.update(
            1,
            &[
                (1, NodeProcs::Listed(vec![row(5, 1, 5, 1, "a")])),
                (2, NodeProcs::Listed(vec![row(6, 2, 6, 2, "b")])),
            ],
        );
        match &t.node_left(2, 9)[..] {
            [ProcEvent::End(e)] => assert_eq!(
                (e.t_ms, e.reason.as_str()),
                (9, "its node left the cluster")
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.running(), 1);
    }

    #[test]
    fn only_jobs_are_asked_about_at_their_home() {
        let mut t = Tracker::resume(Vec::new(), 1);
        let plain = || NodeProcs::Listed(vec![row(5, 1, 5, 1, "sleep 100")]);
        t.update(1, &[(1, plain())]);
        assert_eq!(
            t.job_identity(1),
            None,
            "a process not started through an agent"
        );
        let job = NodeProcs::Listed(vec![
            row(8, 1, 8, 1, "openmosix-jobinit -- sim"),
            row(9, 1, 8, 1, "sim"),
        ]);
        let ev = t.update(2, &[(1, job)]);
        let id = match &ev[..] {
            [ProcEvent::Start(s)] => s.id,
            other => panic!("{other:?}"),
        };
        assert_eq!(t.job_identity(id), Some((1, 8)));
    }

    #[test]
    fn a_missed_tick_is_not_an_end() {
        let mut t = Tracker::resume(Vec::new(), 1);
        let list = || NodeProcs::Listed(vec![row(5, 1, 5, 1, "sleep 100")]);
        t.update(1, &[(1, list())]);
        assert!(t.update(2, &[(1, NodeProcs::Listed(vec![]))]).is_empty());
        assert!(t.update(3, &[(1, list())]).is_empty());
        assert_eq!(t.running(), 1);
    }

    #[test]
    fn resumed_processes_keep_their_numbers() {
        let open = vec![OpenProcess {
            start: ProcStart {
                id: 7,
                home: 1,
                home_pid: 5,
                node: 1,
                pid: 5,
                cmd: "x".into(),
                owner: "root".into(),
                started_ms: 0,
            },
            node: 1,
            pid: 5,
        }];
        let mut t = Tracker::resume(open, 8);
        let ev = t.update(
            1,
            &[(
                1,
                NodeProcs::Listed(vec![row(5, 1, 5, 1, "x"), row(6, 1, 6, 1, "y")]),
            )],
        );
        match &ev[..] {
            [ProcEvent::Start(s)] => assert_eq!((s.id, s.home_pid), (8, 6)),
            other => panic!("{other:?}"),
        }
    }
}
