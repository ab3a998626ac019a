//! `mps`'s output: the processes `ps` options select, in `ps`'s columns plus
//! `NODE`, the node each one runs on.

use chrono::{DateTime, Datelike, Local, TimeZone};
use hpc::model::ProcessInfo;

use crate::ps_args::{Format, Selection};

/// Who runs `mps`: what `ps` selects by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoker {
    /// Effective uid.
    pub uid: u32,
    /// Controlling terminal (`pts/0`), empty without one.
    pub tty: String,
}

/// The rows `sel` selects, by PID.
pub fn select<'a>(rows: &'a [ProcessInfo], sel: &Selection, me: &Invoker) -> Vec<&'a ProcessInfo> {
    let mut out: Vec<&ProcessInfo> = rows
        .iter()
        .filter(|p| {
            if sel.every {
                true
            } else if !sel.pids.is_empty() || !sel.users.is_empty() {
                sel.pids.contains(&p.pid)
                    || sel
                        .users
                        .iter()
                        .any(|u| *u == p.user || u.parse::<u32>().is_ok_and(|id| id == p.uid))
            } else if sel.bsd {
                (sel.all_users || p.uid == me.uid) && (sel.no_tty_too || !p.ps.tty.is_empty())
            } else {
                p.uid == me.uid && p.ps.tty == me.tty
            }
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

/// How a column is aligned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// `rows` as `ps` prints them in `format`; `mem_total` (bytes) is the
/// node's memory for `%MEM`, `now` the time `START` is relative to.
pub fn render(
    rows: &[&ProcessInfo],
    format: Format,
    mem_total: u64,
    now: DateTime<Local>,
) -> String {
    use Align::{Left, Right};
    let header: &[(&str, Align)] = match format {
        Format::Default => &[
            ("PID", Right),
            ("NODE", Right),
            ("TTY", Left),
            ("TIME", Right),
            ("CMD", Left),
        ],
        Format::Full => &[
            ("UID", Left),
            ("PID", Right),
            ("PPID", Right),
            ("NODE", Right),
            ("C", Right),
            ("STIME", Left),
            ("TTY", Left),
            ("TIME", Right),
            ("CMD", Left),
        ],
        Format::User => &[
            ("USER", Left),
            ("PID", Right),
            ("NODE", Right),
            ("%CPU", Right),
            ("%MEM", Right),
            ("VSZ", Right),
            ("RSS", Right),
            ("TTY", Left),
            ("STAT", Left),
            ("START", Left),
            ("TIME", Right),
            ("COMMAND", Left),
        ],
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|p| row(p, format, mem_total, now))
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|(h, _)| h.len()).collect();
    for r in &cells {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let last = header.len().saturating_sub(1);
    let line = |cols: Vec<&str>| {
        let mut s = String::new();
        for (i, ((c, (_, align)), w)) in cols.iter().zip(header).zip(&widths).enumerate() {
            if i > 0 {
                s.push(' ');
            }
            if i == last {
                s.push_str(c);
            } else if *align == Right {
                s.push_str(&format!("{c:>w$}"));
            } else {
                s.push_str(&format!("{c:<w$}"));
            }
        }
        s
    };
    let mut out = line(header.iter().map(|(h, _)| *h).collect());
    for r in &cells {
        out.push('\n');
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// `text` with control characters shown as `?`, as `ps` does: a process
/// cannot write escape sequences to the terminal of whoever lists it.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn row(p: &ProcessInfo, format: Format, mem_total: u64, now: DateTime<Local>) -> Vec<String> {
    let tty = if p.ps.tty.is_empty() {
        "?".to_string()
    } else {
        p.ps.tty.clone()
    };
    let started = Local
        .timestamp_opt(p.start_time as i64, 0)
        .single()
        .unwrap_or(now);
    match format {
        Format::Default => vec![
            p.pid.to_string(),
            p.where_.to_string(),
            tty,
            cpu_time_full(p.ps.cpu_ms),
            printable(&comm(p)),
        ],
        Format::Full => vec![
            user_column(&printable(&p.user)),
            p.pid.to_string(),
            p.ppid.to_string(),
            p.where_.to_string(),
            format!("{}", p.cpu.round() as i64),
            start_column(started, now),
            tty,
            cpu_time_full(p.ps.cpu_ms),
            printable(&p.cmdline),
        ],
        Format::User => vec![
            user_column(&printable(&p.user)),
            p.pid.to_string(),
            p.where_.to_string(),
            format!("{:.1}", p.cpu),
            format!("{:.1}", percent(p.rss, mem_total)),
            (p.ps.vsize / 1024).to_string(),
            (p.rss / 1024).to_string(),
            tty,
            format!("{}{}", p.state, p.ps.flags),
            start_column(started, now),
            cpu_time_bsd(p.ps.cpu_ms),
            printable(&p.cmdline),
        ],
    }
}

/// The program's name, as plain `ps` shows it (`CMD` is `comm` there).
fn comm(p: &ProcessInfo) -> String {
    if let Some(inner) = p
        .cmdline
        .strip_prefix('[')
        .and_then(|c| c.strip_suffix(']'))
    {
        return inner.to_string();
    }
    let first = p.cmdline.split(' ').next().unwrap_or("");
    let name = first.rsplit('/').next().unwrap_or(first);
    name.chars().take(15).collect()
}

/// `part` of `whole` in percent, cut (not rounded) to a tenth, as `ps` does.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / whole as f64).floor() / 10.0
    }
}

/// A user name in 8 columns, cut with `+` as `ps` does.
fn user_column(user: &str) -> String {
    if user.chars().count() > 8 {
        let mut s: String = user.chars().take(7).collect();
        s.push('+');
        s
    } else {
        user.to_string()
    }
}

/// `START`/`STIME`: the time today, the day this year, else the year.
fn start_column(started: DateTime<Local>, now: DateTime<Local>) -> String {
    if (now - started).num_hours() < 24 {
        started.format("%H:%M").to_string()
    } else if started.year() == now.year() {
        started.format("%b%d").to_string()
    } else {
        started.format("%Y").to_string()
    }
}

/// `[DD-]HH:MM:SS`, as `ps -f` prints CPU time.
pub fn cpu_time_full(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// `M:SS`, as `ps u` prints CPU time.
pub fn cpu_time_bsd(ms: u64) -> String {
    let s = ms / 1000;
    format!("{}:{:02}", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpc::model::{ClusterMask, DecayClass, PsFields};

    fn proc(pid: i32, uid: u32, user: &str, tty: &str, cmd: &str) -> ProcessInfo {
        ProcessInfo {
            pid,
            ppid: 1,
            user: user.into(),
            uid,
            state: 'S',
            nice: 0,
            cpu: 12.34,
            rss: 2048 * 1024,
            threads: 1,
            start_time: 1_700_000_000,
            cmdline: cmd.into(),
            home: 1,
            home_pid: pid,
            where_: 2,
            lock: false,
            cantmove: String::new(),
            nmigs: 1,
            decay: DecayClass::Slow,
            mask: ClusterMask::default(),
            ps: PsFields {
                vsize: 8192 * 1024,
                cpu_ms: 3_723_000,
                tty: tty.into(),
                flags: "s+".into(),
            },
        }
    }

    fn me() -> Invoker {
        Invoker {
            uid: 1000,
            tty: "pts/1".into(),
        }
    }

    #[test]
    fn selections_follow_ps() {
        let rows = vec![
            proc(30, 1000, "ann", "pts/1", "vim"),
            proc(10, 0, "root", "", "[kworker]"),
            proc(20, 1000, "ann", "", "daemon"),
            proc(40, 1001, "bob", "pts/2", "top"),
            proc(50, 1000, "ann", "pts/3", "less"),
        ];
        let pids = |sel: Selection| -> Vec<i32> {
            select(&rows, &sel, &me()).iter().map(|p| p.pid).collect()
        };
        assert_eq!(pids(Selection::default()), vec![30]);
        let every = Selection {
            every: true,
            ..Default::default()
        };
        assert_eq!(pids(every), vec![10, 20, 30, 40, 50]);
        let bsd = Selection {
            bsd: true,
            ..Default::default()
        };
        assert_eq!(pids(bsd.clone()), vec![30, 50]);
        assert_eq!(
            pids(Selection {
                no_tty_too: true,
                ..bsd.clone()
            }),
            vec![20, 30, 50]
        );
        assert_eq!(
            pids(Selection {
                all_users: true,
                ..bsd
            }),
            vec![30, 40, 50]
        );
        let by = Selection {
            pids: vec![40],
            users: vec!["0".into()],
            ..Default::default()
        };
        assert_eq!(pids(by), vec![10, 40]);
    }

    #[test]
    fn columns_are_those_of_ps_with_the_node() {
        let p = proc(
            4242,
            1000,
            "averylongname",
            "pts/1",
            "/usr/bin/python3 job.py --n 3",
        );
        let now = Local
            .timestamp_opt(1_700_000_000 + 3600, 0)
            .single()
            .unwrap();
        let aux = render(&[&p], Format::User, 4096 * 1024 * 100, now);
        let mut lines = aux.lines();
        let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            head,
            [
                "USER", "PID", "NODE", "%CPU", "%MEM", "VSZ", "RSS", "TTY", "STAT", "START",
                "TIME", "COMMAND"
            ]
        );
        let cols: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        let start = Local
            .timestamp_opt(1_700_000_000, 0)
            .single()
            .unwrap()
            .format("%H:%M")
            .to_string();
        assert_eq!(
            cols,
            [
                "averylo+",
                "4242",
                "2",
                "12.3",
                "0.5",
                "8192",
                "2048",
                "pts/1",
                "Ss+",
                start.as_str(),
                "62:03",
                "/usr/bin/python3",
                "job.py",
                "--n",
                "3"
            ]
        );
        let ef = render(&[&p], Format::Full, 0, now);
        let cols: Vec<&str> = ef.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            cols[..8],
            [
                "averylo+",
                "4242",
                "1",
                "2",
                "12",
                start.as_str(),
                "pts/1",
                "01:02:03"
            ]
        );
        let plain = render(&[&p], Format::Default, 0, now);
        assert_eq!(
            plain
                .lines()
                .nth(1)
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["4242", "2", "pts/1", "01:02:03", "python3"]
        );
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let p = proc(7, 0, "root", "", "evil \u{1b}]0;owned\u{7} x\ny");
        let now = Local::now();
        for format in [Format::Default, Format::Full, Format::User] {
            let out = render(&[&p], format, 1, now);
            assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
            assert_eq!(out.lines().count(), 2, "{out:?}");
        }
    }

    #[test]
    fn cpu_times_and_old_starts_read_as_in_ps() {
        assert_eq!(cpu_time_full(90_061_000), "1-01:01:01");
        assert_eq!(cpu_time_bsd(59_999), "0:59");
        let now = Local
            .with_ymd_and_hms(2026, 12, 3, 12, 0, 0)
            .single()
            .unwrap();
        let march = Local
            .with_ymd_and_hms(2026, 3, 7, 9, 0, 0)
            .single()
            .unwrap();
        let old = Local
            .with_ymd_and_hms(2024, 3, 7, 9, 0, 0)
            .single()
            .unwrap();
        assert_eq!(start_column(march, now), "Mar07");
        assert_eq!(start_column(old, now), "2024");
    }
}
