//! The process box (openMosixprocs): the processes of one node or of the
//! whole cluster, sortable by any column, filtered as you type, optionally as a
//! tree; only the visible rows are laid out, so 10,000 rows stay smooth.

use std::cmp::Ordering;
use std::collections::HashMap;

use egui::{Color32, RichText, Sense, Ui};
use hpc::model::{NodeId, ProcessInfo};

use viewer::ViewerContext;
use viewer::state::{ClusterState, identity, runs_on};
use viewer::widgets::bytes;
use viewer::{Needs, Open, Scope, Window};

/// Row height.
const ROW_HEIGHT: f32 = 20.0;

/// A column of the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// PID on the node that lists it.
    Pid,
    /// Where it runs ("local" when at home).
    Node,
    /// Owner.
    User,
    /// Scheduler state.
    State,
    /// CPU percent.
    Cpu,
    /// Resident memory.
    Mem,
    /// Nice value.
    Nice,
    /// Migrations so far.
    Migrations,
    /// Command line.
    Command,
}

impl Column {
    /// Every column, in display order.
    pub const ALL: [Column; 9] = [
        Column::Pid,
        Column::Node,
        Column::User,
        Column::State,
        Column::Cpu,
        Column::Mem,
        Column::Nice,
        Column::Migrations,
        Column::Command,
    ];

    /// Header text.
    pub fn title(self) -> &'static str {
        match self {
            Column::Pid => "PID",
            Column::Node => "node",
            Column::User => "user",
            Column::State => "state",
            Column::Cpu => "CPU %",
            Column::Mem => "memory",
            Column::Nice => "nice",
            Column::Migrations => "migs",
            Column::Command => "command",
        }
    }

    /// Numbers read right-aligned, words left-aligned (as in htop).
    fn numeric(self) -> bool {
        matches!(
            self,
            Column::Pid | Column::Cpu | Column::Mem | Column::Nice | Column::Migrations
        )
    }

    fn width(self) -> f32 {
        match self {
            Column::Pid => 70.0,
            Column::Node => 50.0,
            Column::User => 80.0,
            Column::State => 40.0,
            Column::Cpu => 55.0,
            Column::Mem => 75.0,
            Column::Nice => 40.0,
            Column::Migrations => 40.0,
            Column::Command => 300.0,
        }
    }

    fn compare(self, a: &Row, b: &Row, pa: &ProcessInfo, pb: &ProcessInfo) -> Ordering {
        match self {
            Column::Pid => pa.pid.cmp(&pb.pid),
            Column::Node => a.node.cmp(&b.node),
            Column::User => pa.user.cmp(&pb.user),
            Column::State => pa.state.cmp(&pb.state),
            Column::Cpu => pa.cpu.total_cmp(&pb.cpu),
            Column::Mem => pa.rss.cmp(&pb.rss),
            Column::Nice => pa.nice.cmp(&pb.nice),
            Column::Migrations => pa.nmigs.cmp(&pb.nmigs),
            Column::Command => pa.cmdline.cmp(&pb.cmdline),
        }
    }
}

/// Opens the process box of `scope`: the main window's Processes tab for the
/// whole cluster, a window for one node.
pub fn open(scope: Scope) -> Open {
    match scope {
        Scope::All => Open::ClusterProcesses,
        Scope::Node(_) => Open::window(ProcessBox::new(scope)),
    }
}

impl Window for ProcessBox {
    fn key(&self) -> egui::Id {
        egui::Id::unique(("process-box", self.scope))
    }

    fn title(&self) -> String {
        format!("process box: {}", self.scope.label())
    }

    fn frame<'a>(&self, window: egui::Window<'a>) -> egui::Window<'a> {
        window.default_size([900.0, 500.0])
    }

    fn ui(&mut self, ui: &mut Ui, vc: &mut ViewerContext) -> Vec<Open> {
        self.box_ui(ui, vc)
    }

    fn needs(&self, _vc: &ViewerContext) -> Needs {
        match self.scope {
            Scope::All => Needs::all_processes(),
            Scope::Node(n) => Needs::processes_of([n]),
        }
    }
}

/// One visible row: where to find the process, and its tree depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Node that lists it.
    pub node: NodeId,
    /// PID there.
    pub pid: i32,
    /// Depth in the tree view (0 otherwise).
    pub depth: u16,
}

/// The inputs the row list was built from.
#[derive(Debug, Clone, PartialEq)]
struct CacheKey {
    version: u64,
    sort: Column,
    descending: bool,
    filter: String,
    tree: bool,
}

/// The process box of one node or of the cluster.
pub struct ProcessBox {
    /// Which processes it lists.
    pub scope: Scope,
    /// Sort column.
    pub sort: Column,
    /// Sort order.
    pub descending: bool,
    /// Filter text (matches PID, user or command).
    pub filter: String,
    /// Tree view.
    pub tree: bool,
    selected: Option<(NodeId, i32)>,
    rows: Vec<Row>,
    key: Option<CacheKey>,
}

impl ProcessBox {
    /// A box for `scope`, sorted by CPU, busiest first.
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            sort: Column::Cpu,
            descending: true,
            filter: String::new(),
            tree: false,
            selected: None,
            rows: Vec::new(),
            key: None,
        }
    }

    /// The rows in display order (rebuilt only when data, sort or filter changed).
    pub fn rows(&mut self, state: &ClusterState) -> &[Row] {
        let key = CacheKey {
            version: state.processes_version,
            sort: self.sort,
            descending: self.descending,
            filter: self.filter.clone(),
            tree: self.tree,
        };
        if self.key.as_ref() != Some(&key) {
            self.rows = build_rows(state, self.scope, &key);
            self.key = Some(key);
        }
        &self.rows
    }

    /// Draws the box; returns what the user asked to open.
    pub fn box_ui(&mut self, ui: &mut Ui, cx: &mut ViewerContext) -> Vec<Open> {
        let mut open = Vec::new();
        ui.horizontal(|ui| {
            let l = ui.label("filter");
            ui.add(egui::TextEdit::singleline(&mut self.filter).hint_text("PID, user or command"))
                .labelled_by(l.id);
            ui.checkbox(&mut self.tree, "tree view");
            let selected = self.selected.and_then(|(node, pid)| {
                let p = cx.state.processes.get(&node)?.get(&pid)?;
                Some(identity(node, p))
            });
            if ui
                .add_enabled(selected.is_some(), egui::Button::new("migrator"))
                .on_hover_text("manage the selected process (or double-click it)")
                .clicked()
                && let Some((home, home_pid)) = selected
            {
                open.push(Open::window(super::migrator::Migrator::new(home, home_pid)));
            }
            if let Scope::Node(n) = self.scope
                && ui.button("manage procs from remote").clicked()
            {
                open.push(Open::window(super::remote_procs::RemoteProcs::new(n)));
            }
        });
        let watched = match self.scope {
            Scope::All => !cx.state.processes.is_empty(),
            Scope::Node(n) => cx.state.processes.contains_key(&n),
        };
        let count = self.rows(&cx.state).len();
        ui.label(if watched {
            format!("{count} processes")
        } else {
            "loading the process list…".to_string()
        });
        self.header_ui(ui);
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show_rows(ui, ROW_HEIGHT, count, |ui, range| {
                let visible = self.rows.get(range).unwrap_or_default().to_vec();
                for row in &visible {
                    if let Some(p) = cx
                        .state
                        .processes
                        .get(&row.node)
                        .and_then(|t| t.get(&row.pid))
                    {
                        self.row_ui(ui, *row, p, &mut open);
                    }
                }
            });
        open
    }

    fn header_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.add_space(22.0);
            for c in Column::ALL {
                let arrow = match (self.sort == c, self.descending) {
                    (true, true) => " ⬇",
                    (true, false) => " ⬆",
                    _ => "",
                };
                let text = RichText::new(format!("{}{arrow}", c.title())).strong();
                if ui
                    .add_sized(
                        [c.width(), ROW_HEIGHT],
                        egui::Button::new(text).frame(false),
                    )
                    .on_hover_text("sort by this column")
                    .clicked()
                {
                    if self.sort == c {
                        self.descending = !self.descending;
                    } else {
                        self.sort = c;
                        self.descending =
                            matches!(c, Column::Cpu | Column::Mem | Column::Migrations);
                    }
                }
            }
        });
    }

    fn row_ui(&mut self, ui: &mut Ui, row: Row, p: &ProcessInfo, open: &mut Vec<Open>) {
        let (home, home_pid) = identity(row.node, p);
        let node_now = runs_on(row.node, p);
        let migrated = home != node_now;
        let selected = self.selected == Some((row.node, row.pid));
        let inner = ui.horizontal(|ui| {
            ui.set_min_height(ROW_HEIGHT);
            let (icon, color, tip) = if p.lock || !p.cantmove.is_empty() {
                let why = if p.cantmove.is_empty() {
                    "locked (lock = 1)".to_string()
                } else {
                    p.cantmove.clone()
                };
                ("🔒", Color32::from_rgb(180, 140, 20), why)
            } else if migrated {
                (
                    "⚫",
                    Color32::from_rgb(40, 180, 60),
                    format!("migrated from node {home}"),
                )
            } else {
                ("⚫", Color32::GRAY, "at home, movable".to_string())
            };
            ui.add_sized(
                [18.0, ROW_HEIGHT],
                egui::Label::new(RichText::new(icon).color(color)),
            )
            .on_hover_text(tip);
            let node = if migrated {
                node_now.to_string()
            } else {
                "local".to_string()
            };
            let indent = "  ".repeat(usize::from(row.depth));
            let cells = [
                (Column::Pid, p.pid.to_string()),
                (Column::Node, node),
                (Column::User, p.user.clone()),
                (Column::State, p.state.to_string()),
                (Column::Cpu, format!("{:.1}", p.cpu)),
                (Column::Mem, bytes(p.rss)),
                (Column::Nice, p.nice.to_string()),
                (Column::Migrations, p.nmigs.to_string()),
                (Column::Command, format!("{indent}{}", p.cmdline)),
            ];
            let mut clicks: Option<egui::Response> = None;
            for (c, text) in cells {
                let mut t = RichText::new(text);
                if migrated {
                    t = t.color(Color32::from_rgb(40, 160, 60));
                }
                let layout = if c.numeric() {
                    egui::Layout::right_to_left(egui::Align::Center)
                } else {
                    egui::Layout::left_to_right(egui::Align::Center)
                };
                let size = egui::vec2(c.width(), ROW_HEIGHT);
                let cell = ui
                    .allocate_ui_with_layout(size, layout, |ui| {
                        ui.set_min_size(size);
                        ui.add(
                            egui::Label::new(t)
                                .truncate()
                                .selectable(false)
                                .sense(Sense::click()),
                        )
                    })
                    .inner;
                clicks = Some(match clicks {
                    Some(r) => r.union(cell),
                    None => cell,
                });
            }
            clicks
        });
        let rect = inner.response.rect;
        if selected {
            ui.painter().rect_filled(
                rect,
                2.0,
                ui.visuals().selection.bg_fill.gamma_multiply(0.3),
            );
        }
        let Some(response) = inner.inner else {
            return;
        };
        if response.clicked() {
            self.selected = Some((row.node, row.pid));
        }
        if response.double_clicked() {
            open.push(Open::window(super::migrator::Migrator::new(home, home_pid)));
        }
    }
}

fn matches(p: &ProcessInfo, needle: &str) -> bool {
    needle.is_empty()
        || p.cmdline.to_lowercase().contains(needle)
        || p.user.to_lowercase().contains(needle)
        || p.pid.to_string() == needle
}

/// Builds the rows of `scope`, filtered and sorted (or as a tree, children
/// under their parents and siblings sorted).
fn build_rows(state: &ClusterState, scope: Scope, key: &CacheKey) -> Vec<Row> {
    let needle = key.filter.trim().to_lowercase();
    let mut rows: Vec<(Row, &ProcessInfo)> = state
        .processes
        .iter()
        .filter(|(node, _)| scope == Scope::All || scope == Scope::Node(**node))
        .flat_map(|(node, table)| {
            table.values().map(|p| {
                (
                    Row {
                        node: *node,
                        pid: p.pid,
                        depth: 0,
                    },
                    p,
                )
            })
        })
        .filter(|(_, p)| matches(p, &needle))
        // The `unshare` and `openmosix-jobinit` around a job are plumbing:
        // the job is its command (the tree view shows everything).
        .filter(|(_, p)| key.tree || !viewer::state::is_plumbing(p))
        // Cluster-wide, a process that runs elsewhere is shown where it runs,
        // not also as its home's record of it.
        .filter(|(r, p)| {
            let on = runs_on(r.node, p);
            scope != Scope::All || on == r.node || !state.processes.contains_key(&on)
        })
        .collect();
    let order = |a: &(Row, &ProcessInfo), b: &(Row, &ProcessInfo)| {
        let o = key
            .sort
            .compare(&a.0, &b.0, a.1, b.1)
            .then(a.0.node.cmp(&b.0.node))
            .then(a.1.pid.cmp(&b.1.pid));
        if key.descending { o.reverse() } else { o }
    };
    rows.sort_by(order);
    if !key.tree {
        return rows.into_iter().map(|(r, _)| r).collect();
    }
    // Tree: children grouped under their parent (on the same node); roots are
    // the processes whose parent is not listed. Siblings keep the sort order.
    let listed: std::collections::HashSet<(NodeId, i32)> =
        rows.iter().map(|(r, _)| (r.node, r.pid)).collect();
    let mut children: HashMap<(NodeId, i32), Vec<Row>> = HashMap::new();
    let mut roots = Vec::new();
    for (r, p) in &rows {
        if listed.contains(&(r.node, p.ppid)) && p.ppid != p.pid {
            children.entry((r.node, p.ppid)).or_default().push(*r);
        } else {
            roots.push(*r);
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut stack: Vec<Row> = roots.into_iter().rev().collect();
    while let Some(r) = stack.pop() {
        out.push(r);
        if let Some(kids) = children.remove(&(r.node, r.pid)) {
            for k in kids.into_iter().rev() {
                stack.push(Row {
                    depth: r.depth.saturating_add(1),
                    ..k
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpc::model::{ClusterMask, DecayClass, ProcessDelta};

    pub(crate) fn proc(pid: i32, ppid: i32, cpu: f32, cmd: &str) -> ProcessInfo {
        ProcessInfo {
            pid,
            ppid,
            user: "root".into(),
            uid: 0,
            state: 'S',
            nice: 0,
            cpu,
            rss: 1 << 20,
            threads: 1,
            start_time: 0,
            cmdline: cmd.into(),
            home: 1,
            home_pid: pid,
            where_: 1,
            lock: false,
            cantmove: String::new(),
            nmigs: 0,
            decay: DecayClass::Slow,
            mask: ClusterMask::default(),
            ps: Default::default(),
        }
    }

    fn state_with(procs: Vec<ProcessInfo>) -> ClusterState {
        let mut s = ClusterState::default();
        s.apply(viewer::net::Event::Processes {
            node: 1,
            delta: ProcessDelta {
                added: procs,
                ..Default::default()
            },
            reset: true,
        });
        s
    }

    #[test]
    fn sorts_filters_and_nests() {
        let s = state_with(vec![
            proc(1, 0, 0.0, "init"),
            proc(10, 1, 50.0, "make -j2"),
            proc(11, 10, 90.0, "cc1 a.c"),
            proc(12, 1, 5.0, "sshd"),
        ]);
        let mut b = ProcessBox::new(Scope::Node(1));
        let pids = |b: &mut ProcessBox| b.rows(&s).iter().map(|r| r.pid).collect::<Vec<_>>();
        assert_eq!(pids(&mut b), [11, 10, 12, 1]);
        b.sort = Column::Pid;
        b.descending = false;
        assert_eq!(pids(&mut b), [1, 10, 11, 12]);
        b.filter = "MAKE".into();
        assert_eq!(pids(&mut b), [10]);
        b.filter.clear();
        b.tree = true;
        b.sort = Column::Cpu;
        b.descending = true;
        assert_eq!(pids(&mut b), [1, 10, 11, 12]);
        let depths: Vec<u16> = b.rows(&s).iter().map(|r| r.depth).collect();
        assert_eq!(depths, [0, 1, 2, 1]);
        let mut other = ProcessBox::new(Scope::Node(2));
        assert!(other.rows(&s).is_empty());
    }
}
