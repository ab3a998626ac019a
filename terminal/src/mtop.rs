//! `mtop`: a live top-like table of a node's processes with the openMosix
//! columns (the node each runs on, its home, locked, `cantmove`, migrations)
//! and actions on the selected one: `m` migrate, `h` home, `k` kill (a
//! signal), `r` renice. `P`/`M`/`N`/`T`/`W` sort by CPU, memory, PID, CPU
//! time or node; arrows select; `/` finds a PID or command; `q` quits.

use hpc::model::{Liveness, NodeStatus, ProcessInfo};
use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Paragraph, Row, Table};
use tools::ps_table::{cpu_time_full, printable};

use crate::feed::{Action, Update};
use crate::screen::{Flow, Screen};

/// The order of the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// CPU use, busiest first (`P`).
    Cpu,
    /// Resident memory, largest first (`M`).
    Memory,
    /// PID (`N`).
    Pid,
    /// CPU time used, most first (`T`).
    Time,
    /// The node it runs on, then CPU (`W`).
    Node,
}

/// A question on the bottom line, waiting for its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// `m`: where to move this PID.
    Migrate(i32),
    /// `k`: which signal to send this PID.
    Signal(i32),
    /// `r`: the new nice value of this PID.
    Renice(i32),
    /// `/`: a PID or text of a command to select.
    Find,
}

impl Prompt {
    fn question(&self) -> String {
        match self {
            Prompt::Migrate(pid) => format!("migrate {pid} to (node id, home, balance): "),
            Prompt::Signal(pid) => format!("signal to send {pid} [TERM]: "),
            Prompt::Renice(pid) => format!("renice {pid} to (-20..19): "),
            Prompt::Find => "find (PID or command): ".into(),
        }
    }
}

/// `mtop`'s state.
#[derive(Debug, Clone)]
pub struct Mtop {
    /// The row order.
    pub sort: SortBy,
    rows: Vec<ProcessInfo>,
    nodes: Vec<NodeStatus>,
    /// The node whose processes these are.
    me: u32,
    /// The selected process, by its [`Identity`]: it stays selected as rows
    /// move, and when it comes home under a new PID.
    selected: Option<Identity>,
    prompt: Option<(Prompt, String)>,
    notice: Option<String>,
    trouble: Option<String>,
}

impl Default for Mtop {
    fn default() -> Self {
        Self {
            sort: SortBy::Cpu,
            rows: Vec::new(),
            nodes: Vec::new(),
            me: 0,
            selected: None,
            prompt: None,
            notice: None,
            trouble: None,
        }
    }
}

/// A process's identity: its home node, its PID there, and its command
/// (hashed): a job's init and its command share the job's home PID.
type Identity = (u32, i32, u64);

fn identity(p: &ProcessInfo) -> Identity {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    p.cmdline.hash(&mut h);
    let home_pid = if p.home_pid > 0 { p.home_pid } else { p.pid };
    (p.home, home_pid, h.finish())
}

/// The columns: title, width (0: the rest).
const COLUMNS: [(&str, u16); 13] = [
    ("PID", 7),
    ("USER", 8),
    ("NODE", 4),
    ("HOME", 4),
    ("LCK", 3),
    ("NMIG", 4),
    ("NI", 3),
    ("%CPU", 5),
    ("RES MiB", 7),
    ("S", 1),
    ("TIME", 8),
    ("CANTMOVE", 14),
    ("COMMAND", 0),
];

const KEYS: &str = "m migrate  h home  k kill  r renice  / find  P M N T W sort  ↑↓ select  q quit";

impl Mtop {
    /// The rows in their order.
    pub fn sorted(&self) -> Vec<&ProcessInfo> {
        let mut v: Vec<&ProcessInfo> = self.rows.iter().collect();
        match self.sort {
            SortBy::Cpu => v.sort_by(|a, b| b.cpu.total_cmp(&a.cpu).then(a.pid.cmp(&b.pid))),
            SortBy::Memory => v.sort_by(|a, b| b.rss.cmp(&a.rss).then(a.pid.cmp(&b.pid))),
            SortBy::Pid => v.sort_by_key(|p| p.pid),
            SortBy::Time => v.sort_by(|a, b| b.ps.cpu_ms.cmp(&a.ps.cpu_ms).then(a.pid.cmp(&b.pid))),
            SortBy::Node => v.sort_by(|a, b| {
                a.where_
                    .cmp(&b.where_)
                    .then(b.cpu.total_cmp(&a.cpu))
                    .then(a.pid.cmp(&b.pid))
            }),
        }
        v
    }

    /// The selected row's PID (as this node lists it).
    pub fn selected(&self) -> Option<i32> {
        let rows = self.sorted();
        let at = self
            .selected
            .and_then(|id| rows.iter().position(|p| identity(p) == id))?;
        rows.get(at).map(|p| p.pid)
    }

    fn index_of_selected(&self, rows: &[&ProcessInfo]) -> usize {
        self.selected
            .and_then(|id| rows.iter().position(|p| identity(p) == id))
            .unwrap_or(0)
    }

    fn select_at(&mut self, i: usize) {
        let rows = self.sorted();
        self.selected = rows
            .get(i.min(rows.len().saturating_sub(1)))
            .map(|p| identity(p));
    }

    fn step(&mut self, by: isize) {
        let rows = self.sorted();
        let at = self.index_of_selected(&rows);
        let to = at.saturating_add_signed(by);
        self.select_at(to);
    }

    fn find(&mut self, what: &str) {
        let what = what.trim();
        let rows = self.sorted();
        let hit = rows
            .iter()
            .find(|p| p.pid.to_string() == what)
            .or_else(|| {
                // A job back home, by the PID it was started with.
                rows.iter().find(|p| {
                    p.home_pid.to_string() == what && !p.cmdline.contains("openmosix-jobinit")
                })
            })
            .or_else(|| {
                rows.iter()
                    .find(|p| !what.is_empty() && p.cmdline.contains(what))
            })
            .map(|p| identity(p));
        match hit {
            Some(id) => self.selected = Some(id),
            None => self.notice = Some(format!("no process matches `{what}`")),
        }
    }

    /// Answers the open prompt with `answer`.
    fn answer(&mut self, prompt: Prompt, answer: String) -> Flow {
        let answer = answer.trim().to_string();
        match prompt {
            Prompt::Find => {
                self.find(&answer);
                Flow::Continue
            }
            Prompt::Migrate(pid) if !answer.is_empty() => {
                self.notice = Some(format!("migrating {pid} to {answer}…"));
                Flow::Act(Action::Migrate { pid, to: answer })
            }
            Prompt::Signal(pid) => {
                let signal = if answer.is_empty() {
                    "TERM".to_string()
                } else {
                    let upper = answer.to_ascii_uppercase();
                    upper.trim_start_matches("SIG").to_string()
                };
                Flow::Act(Action::Signal { pid, signal })
            }
            Prompt::Renice(pid) => match answer.parse::<i32>() {
                Ok(nice) if (-20..=19).contains(&nice) => Flow::Act(Action::Renice { pid, nice }),
                _ => {
                    self.notice = Some(format!("`{answer}` is not a nice value (-20..19)"));
                    Flow::Continue
                }
            },
            Prompt::Migrate(_) => Flow::Continue,
        }
    }

    fn header(&self) -> String {
        let me = self.me;
        let here = self
            .rows
            .iter()
            .filter(|p| p.where_ == me && p.home == me)
            .count();
        let away = self.rows.iter().filter(|p| p.where_ != me).count();
        let guests = self
            .rows
            .iter()
            .filter(|p| p.where_ == me && p.home != me)
            .count();
        let up = self
            .nodes
            .iter()
            .filter(|n| n.status == Liveness::Up)
            .count();
        let load = self.nodes.iter().find(|n| n.id == me).map_or(0, |n| n.load);
        format!(
            "mtop: node {me} load {load}  |  {} processes: {here} at home, {away} away, {guests} guests  |  {up} of {} nodes up",
            self.rows.len(),
            self.nodes.len()
        )
    }

    fn cells(p: &ProcessInfo) -> Vec<String> {
        vec![
            p.pid.to_string(),
            printable(&p.user),
            p.where_.to_string(),
            p.home.to_string(),
            if p.lock { "1" } else { "0" }.into(),
            p.nmigs.to_string(),
            p.nice.to_string(),
            format!("{:.1}", p.cpu),
            (p.rss >> 20).to_string(),
            p.state.to_string(),
            cpu_time_full(p.ps.cpu_ms),
            printable(&p.cantmove),
            printable(&p.cmdline),
        ]
    }

    fn bottom_line(&self) -> String {
        if let Some((p, typed)) = &self.prompt {
            return format!("{}{typed}", p.question());
        }
        if let Some(t) = &self.trouble {
            return format!("{t} (last figures shown)");
        }
        self.notice.clone().unwrap_or_else(|| KEYS.to_string())
    }
}

impl Screen for Mtop {
    fn apply(&mut self, update: Update) {
        match update {
            Update::Figures {
                me,
                nodes,
                processes,
            } => {
                self.me = me;
                self.nodes = nodes;
                if let Some(rows) = processes {
                    self.rows = rows;
                }
                self.trouble = None;
                let rows = self.sorted();
                if self
                    .selected
                    .is_none_or(|id| rows.iter().all(|p| identity(p) != id))
                {
                    self.selected = rows.first().map(|p| identity(p));
                }
            }
            Update::Trouble(t) => self.trouble = Some(t),
            Update::Notice(n) => self.notice = Some(printable(&n)),
        }
    }

    fn on_key(&mut self, key: KeyEvent) -> Flow {
        if let Some((prompt, mut typed)) = self.prompt.take() {
            match key.code {
                KeyCode::Enter => return self.answer(prompt, typed),
                KeyCode::Esc => {}
                KeyCode::Backspace => {
                    typed.pop();
                    self.prompt = Some((prompt, typed));
                }
                KeyCode::Char(c) if typed.len() < 64 => {
                    typed.push(c);
                    self.prompt = Some((prompt, typed));
                }
                _ => self.prompt = Some((prompt, typed)),
            }
            return Flow::Continue;
        }
        let selected = self.selected();
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Flow::Quit,
            KeyCode::Char('P') => self.sort = SortBy::Cpu,
            KeyCode::Char('M') => self.sort = SortBy::Memory,
            KeyCode::Char('N') => self.sort = SortBy::Pid,
            KeyCode::Char('T') => self.sort = SortBy::Time,
            KeyCode::Char('W') => self.sort = SortBy::Node,
            KeyCode::Down => self.step(1),
            KeyCode::Up => self.step(-1),
            KeyCode::PageDown => self.step(20),
            KeyCode::PageUp => self.step(-20),
            KeyCode::Home => self.select_at(0),
            KeyCode::End => self.select_at(usize::MAX),
            KeyCode::Char('/') => self.prompt = Some((Prompt::Find, String::new())),
            KeyCode::Char('m') => {
                if let Some(pid) = selected {
                    self.prompt = Some((Prompt::Migrate(pid), String::new()));
                }
            }
            KeyCode::Char('k') => {
                if let Some(pid) = selected {
                    self.prompt = Some((Prompt::Signal(pid), String::new()));
                }
            }
            KeyCode::Char('r') => {
                if let Some(pid) = selected {
                    self.prompt = Some((Prompt::Renice(pid), String::new()));
                }
            }
            KeyCode::Char('h') => {
                if let Some(pid) = selected {
                    self.notice = Some(format!("sending {pid} home…"));
                    return Flow::Act(Action::Migrate {
                        pid,
                        to: "home".into(),
                    });
                }
            }
            _ => {}
        }
        Flow::Continue
    }

    fn draw(&self, frame: &mut Frame<'_>, color: bool) {
        let [head, table_area, foot] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(2),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        frame.render_widget(Paragraph::new(self.header()), head);
        let rows = self.sorted();
        let visible = usize::from(table_area.height.saturating_sub(1)).max(1);
        let at = self.index_of_selected(&rows);
        let first = at.saturating_sub(visible - 1);
        let selected_style = if color {
            Style::new().bg(Color::Blue).fg(Color::White)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        };
        let body: Vec<Row> = rows
            .iter()
            .enumerate()
            .skip(first)
            .take(visible)
            .map(|(i, p)| {
                let row = Row::new(Self::cells(p));
                if i == at {
                    row.style(selected_style)
                } else if color && p.where_ != p.home {
                    // Away from home, or a guest here: openMosix's business.
                    row.style(Style::new().fg(Color::Cyan))
                } else {
                    row
                }
            })
            .collect();
        let widths: Vec<Constraint> = COLUMNS
            .iter()
            .map(|(_, w)| {
                if *w == 0 {
                    Constraint::Fill(1)
                } else {
                    Constraint::Length(*w)
                }
            })
            .collect();
        let table = Table::new(body, widths)
            .header(
                Row::new(COLUMNS.iter().map(|(t, _)| *t))
                    .style(Style::new().add_modifier(Modifier::BOLD)),
            )
            .column_spacing(1);
        frame.render_widget(table, table_area);
        frame.render_widget(Paragraph::new(self.bottom_line()), foot);
    }

    fn plain(&self) -> String {
        let mut out = self.header();
        out.push('\n');
        let titles: Vec<String> = COLUMNS.iter().map(|(t, _)| t.to_string()).collect();
        let mut lines = vec![titles];
        lines.extend(self.sorted().iter().map(|p| Self::cells(p)));
        for cells in &lines {
            let mut line = String::new();
            for ((cell, (_, w)), i) in cells.iter().zip(COLUMNS.iter()).zip(0..) {
                if i > 0 {
                    line.push(' ');
                }
                if *w == 0 {
                    line.push_str(cell);
                } else {
                    let w = usize::from(*w);
                    let cut: String = cell.chars().take(w).collect();
                    line.push_str(&format!("{cut:<w$}"));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        if let Some(t) = &self.trouble {
            out.push_str(t);
        }
        out.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpc::model::{ClusterMask, DecayClass, PsFields};
    use ratatui::crossterm::event::KeyModifiers;

    fn proc(pid: i32, cpu: f32, rss_mib: u64, where_: u32, cmd: &str) -> ProcessInfo {
        ProcessInfo {
            pid,
            ppid: 1,
            user: "root".into(),
            uid: 0,
            state: 'R',
            nice: 0,
            cpu,
            rss: rss_mib << 20,
            threads: 1,
            start_time: 0,
            cmdline: cmd.into(),
            home: 1,
            home_pid: pid,
            where_,
            lock: false,
            cantmove: String::new(),
            nmigs: u32::from(where_ != 1),
            decay: DecayClass::Slow,
            mask: ClusterMask::default(),
            ps: PsFields::default(),
        }
    }

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    fn code(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn top() -> Mtop {
        let mut t = Mtop::default();
        t.apply(Update::Figures {
            me: 1,
            nodes: Vec::new(),
            processes: Some(vec![
                proc(10, 5.0, 300, 1, "big"),
                proc(20, 90.0, 10, 2, "busy away"),
                proc(30, 40.0, 50, 1, "sim --steps 9"),
            ]),
        });
        t
    }

    fn typed(t: &mut Mtop, text: &str) -> Flow {
        for c in text.chars() {
            t.on_key(key(c));
        }
        t.on_key(code(KeyCode::Enter))
    }

    #[test]
    fn sorting_keys_order_the_rows_and_the_selection_follows_its_process() {
        let mut t = top();
        let pids = |t: &Mtop| t.sorted().iter().map(|p| p.pid).collect::<Vec<_>>();
        assert_eq!(pids(&t), [20, 30, 10]);
        assert_eq!(t.selected(), Some(20));
        t.on_key(code(KeyCode::Down));
        assert_eq!(t.selected(), Some(30));
        t.on_key(key('M'));
        assert_eq!(pids(&t), [10, 30, 20]);
        assert_eq!(t.selected(), Some(30), "the same process stays selected");
        t.on_key(key('N'));
        assert_eq!(pids(&t), [10, 20, 30]);
        t.on_key(key('W'));
        assert_eq!(pids(&t), [30, 10, 20]);
        t.on_key(code(KeyCode::End));
        assert_eq!(t.selected(), Some(20));
    }

    #[test]
    fn a_job_back_home_under_a_new_pid_stays_selected() {
        let mut t = top();
        t.on_key(key('/'));
        typed(&mut t, "20");
        assert_eq!(t.selected(), Some(20));
        // Back home, it runs under PID 77; its identity is still 1:20.
        let mut back = proc(77, 90.0, 10, 1, "busy away");
        back.home_pid = 20;
        t.apply(Update::Figures {
            me: 1,
            nodes: Vec::new(),
            processes: Some(vec![proc(10, 5.0, 300, 1, "big"), back]),
        });
        assert_eq!(t.selected(), Some(77));
        assert_eq!(
            t.on_key(key('h')),
            Flow::Act(Action::Migrate {
                pid: 77,
                to: "home".into()
            })
        );
    }

    #[test]
    fn actions_ask_and_go_to_the_selected_process() {
        let mut t = top();
        t.on_key(key('/'));
        assert_eq!(typed(&mut t, "steps"), Flow::Continue);
        assert_eq!(t.selected(), Some(30));
        t.on_key(key('m'));
        assert_eq!(
            typed(&mut t, "2"),
            Flow::Act(Action::Migrate {
                pid: 30,
                to: "2".into()
            })
        );
        assert_eq!(
            t.on_key(key('h')),
            Flow::Act(Action::Migrate {
                pid: 30,
                to: "home".into()
            })
        );
        t.on_key(key('k'));
        assert_eq!(
            typed(&mut t, ""),
            Flow::Act(Action::Signal {
                pid: 30,
                signal: "TERM".into()
            })
        );
        t.on_key(key('k'));
        assert_eq!(
            typed(&mut t, "sigkill"),
            Flow::Act(Action::Signal {
                pid: 30,
                signal: "KILL".into()
            })
        );
        t.on_key(key('r'));
        assert_eq!(
            typed(&mut t, "5"),
            Flow::Act(Action::Renice { pid: 30, nice: 5 })
        );
        t.on_key(key('r'));
        assert_eq!(typed(&mut t, "99"), Flow::Continue);
        assert!(t.bottom_line().contains("not a nice value"));
        // Esc leaves a question unanswered; q then quits.
        t.on_key(key('m'));
        t.on_key(code(KeyCode::Esc));
        assert_eq!(t.on_key(key('q')), Flow::Quit);
    }

    #[test]
    fn the_table_shows_the_openmosix_columns_and_hostile_commands_stay_text() {
        let mut t = top();
        t.apply(Update::Figures {
            me: 1,
            nodes: Vec::new(),
            processes: Some(vec![proc(40, 1.0, 1, 3, "evil\u{1b}[2J")]),
        });
        let text = t.plain();
        let mut lines = text.lines().skip(1);
        let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(head[..6], ["PID", "USER", "NODE", "HOME", "LCK", "NMIG"]);
        let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(row[..4], ["40", "root", "3", "1"]);
        assert!(!text.contains('\u{1b}'));
        let screen = crate::screen::drawn(&t, 120, 10);
        assert!(
            screen.contains("CANTMOVE") && screen.contains("evil?[2J"),
            "{screen}"
        );
    }
}
