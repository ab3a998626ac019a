//! openMosixhistory as a window: a time slider over a history; at the chosen
//! instant, per node, the processes that ran there (PID, command, user, home
//! node; migrated ones marked); selecting one shows its journey (start, every
//! move with its freeze time and bytes, end and exit code), with jumps to
//! checkpoints and to a process's moves.

use std::collections::BTreeMap;

use egui::{Color32, Id, Ui};
use history::events::{Checkpoint, ProcMove};
use history::query::{ProcessAt, ProcessRecord};
use hpc::model::NodeId;
use viewer::tasks::{Pending, Tasks};
use viewer::{Open, ViewerContext, Window};

use crate::source::{Source, take};
use crate::time::{datetime, duration};

/// A process's journey: its record and its moves.
#[derive(Debug, Clone, PartialEq)]
pub struct Journey {
    /// The process.
    pub process: ProcessRecord,
    /// Its moves, in order.
    pub moves: Vec<ProcMove>,
}

/// The span and checkpoints of the history.
type Frame = (Option<(i64, i64)>, Vec<Checkpoint>);

/// The process history of one history.
pub struct ProcessHistory {
    source: Source,
    span: Option<(i64, i64)>,
    checkpoints: Vec<Checkpoint>,
    pending_frame: Option<Pending<Result<Frame, String>>>,
    /// The instant shown (ms).
    pub at_ms: i64,
    asked_at: Option<i64>,
    processes: Vec<ProcessAt>,
    pending_at: Option<Pending<Result<Vec<ProcessAt>, String>>>,
    selected: Option<i64>,
    /// A process to select once the list shows it: (home, PID at home).
    wanted: Option<(NodeId, i32)>,
    journey: Option<Journey>,
    pending_journey: Option<Pending<Result<Journey, String>>>,
    error: Option<String>,
}

impl ProcessHistory {
    /// The process history of `source`, at its end once read.
    pub fn new(source: Source) -> Self {
        Self {
            source,
            span: None,
            checkpoints: Vec::new(),
            pending_frame: None,
            at_ms: 0,
            asked_at: None,
            processes: Vec::new(),
            pending_at: None,
            selected: None,
            wanted: None,
            journey: None,
            pending_journey: None,
            error: None,
        }
    }

    /// The processes listed at the chosen instant (once read).
    pub fn processes(&self) -> &[ProcessAt] {
        &self.processes
    }

    /// The instant those processes were read for.
    pub fn listed_at(&self) -> Option<i64> {
        self.asked_at.filter(|_| self.pending_at.is_none())
    }

    /// Whether a process is selected (or wanted) whose journey is not read yet.
    pub fn waiting_for_journey(&self) -> bool {
        (self.wanted.is_some() && self.listed_at().is_none())
            || (self.selected.is_some() && self.journey.is_none() && self.error.is_none())
    }

    /// The selected process's journey (once read).
    pub fn journey(&self) -> Option<&Journey> {
        self.journey.as_ref()
    }

    /// Shows the instant `t_ms` (instead of the history's end).
    pub fn at(mut self, t_ms: i64) -> Self {
        self.at_ms = t_ms;
        self
    }

    /// Selects the process `home`/`home_pid` once the list shows it.
    pub fn select_identity(mut self, home: NodeId, home_pid: i32) -> Self {
        self.wanted = Some((home, home_pid));
        self
    }

    /// Selects process number `id` (its journey is read).
    pub fn select(&mut self, id: i64) {
        self.selected = Some(id);
        self.journey = None;
        self.pending_journey = None;
    }

    fn poll(&mut self, tasks: &Tasks) {
        if self.span.is_none() && self.pending_frame.is_none() && self.error.is_none() {
            let source = self.source.clone();
            self.pending_frame = Some(tasks.run(async move {
                let h = source.open().await?;
                let span = h.span().await?;
                let cps = h.checkpoints(i64::MIN, i64::MAX).await?;
                h.close().await;
                Ok((span, cps))
            }));
        }
        if let Some(r) = take(&mut self.pending_frame) {
            match r {
                Ok((span, cps)) => {
                    self.span = span;
                    self.checkpoints = cps;
                    if let Some((_, end)) = span
                        && self.at_ms == 0
                    {
                        self.at_ms = end;
                    }
                }
                Err(e) => self.error = Some(e),
            }
        }
        if let Some(r) = take(&mut self.pending_at) {
            match r {
                Ok(list) => {
                    self.processes = list;
                    if let Some((home, pid)) = self.wanted
                        && let Some(p) = self.processes.iter().find(|p| {
                            (p.process.start.home, p.process.start.home_pid) == (home, pid)
                        })
                    {
                        let id = p.process.start.id;
                        self.wanted = None;
                        self.select(id);
                    }
                }
                Err(e) => self.error = Some(e),
            }
        }
        if self.span.is_some() && self.asked_at != Some(self.at_ms) && self.pending_at.is_none() {
            let (source, t) = (self.source.clone(), self.at_ms);
            self.asked_at = Some(t);
            self.pending_at = Some(tasks.run(async move {
                let h = source.open().await?;
                let r = h.processes_at(t).await;
                h.close().await;
                r
            }));
        }
        if let Some(r) = take(&mut self.pending_journey) {
            match r {
                Ok(j) => self.journey = Some(j),
                Err(e) => self.error = Some(e),
            }
        }
        if let Some(id) = self.selected
            && self
                .journey
                .as_ref()
                .is_none_or(|j| j.process.start.id != id)
            && self.pending_journey.is_none()
        {
            let source = self.source.clone();
            let known = self
                .processes
                .iter()
                .find(|p| p.process.start.id == id)
                .map(|p| (p.process.start.home, p.process.start.home_pid));
            self.pending_journey = Some(tasks.run(async move {
                let h = source.open().await?;
                let (home, home_pid) = known.ok_or("the process is not listed at this instant")?;
                let records = h.find_process(home, home_pid).await?;
                let process = records
                    .into_iter()
                    .find(|r| r.start.id == id)
                    .ok_or("the process is not in this history")?;
                let moves = h.moves(id).await?;
                h.close().await;
                Ok(Journey { process, moves })
            }));
        }
    }

    fn slider_ui(&mut self, ui: &mut Ui) {
        let Some((a, b)) = self.span else {
            ui.spinner();
            return;
        };
        ui.horizontal(|ui| {
            let prev = self.checkpoints.iter().rev().find(|c| c.t_ms < self.at_ms);
            let next = self.checkpoints.iter().find(|c| c.t_ms > self.at_ms);
            if ui
                .add_enabled(prev.is_some(), egui::Button::new("◀ checkpoint"))
                .on_hover_text(prev.map_or(String::new(), |c| c.label.clone()))
                .clicked()
                && let Some(c) = prev
            {
                self.at_ms = c.t_ms;
            }
            let mut secs = self.at_ms as f64 / 1000.0;
            let w = ui.available_width() - 160.0;
            ui.spacing_mut().slider_width = w.max(100.0);
            let slider = egui::Slider::new(&mut secs, a as f64 / 1000.0..=b as f64 / 1000.0)
                .show_value(false)
                .text("time");
            if ui.add(slider).changed() {
                self.at_ms = (secs * 1000.0) as i64;
            }
            if ui
                .add_enabled(next.is_some(), egui::Button::new("checkpoint ▶"))
                .on_hover_text(next.map_or(String::new(), |c| c.label.clone()))
                .clicked()
                && let Some(c) = next
            {
                self.at_ms = c.t_ms;
            }
        });
        ui.horizontal(|ui| {
            ui.label(format!("at {}", datetime(self.at_ms)));
            if self.pending_at.is_some() {
                ui.spinner();
            }
            if let Some(c) = self.checkpoints.iter().find(|c| c.t_ms == self.at_ms) {
                ui.colored_label(
                    crate::chart::CHECKPOINT_BLUE,
                    format!("checkpoint: {}", c.label),
                );
            }
        });
    }

    fn table_ui(&mut self, ui: &mut Ui) {
        let mut by_node: BTreeMap<NodeId, Vec<&ProcessAt>> = BTreeMap::new();
        for p in &self.processes {
            by_node.entry(p.node).or_default().push(p);
        }
        let mut clicked = None;
        egui::ScrollArea::vertical()
            .id_salt("processes")
            .max_height(ui.available_height() * 0.55)
            .show(ui, |ui| {
                for (node, list) in &by_node {
                    egui::CollapsingHeader::new(format!("node {node}: {} processes", list.len()))
                        .id_salt(("node", *node))
                        .default_open(true)
                        .show(ui, |ui| {
                            egui::Grid::new(("procs", *node))
                                .striped(true)
                                .show(ui, |ui| {
                                    for h in ["PID", "command", "user", "home", ""] {
                                        ui.strong(h);
                                    }
                                    ui.end_row();
                                    for p in list {
                                        let s = &p.process.start;
                                        let migrated = p.node != s.home;
                                        let selected = self.selected == Some(s.id);
                                        if ui
                                            .selectable_label(selected, p.pid.to_string())
                                            .clicked()
                                        {
                                            clicked = Some(s.id);
                                        }
                                        ui.label(short(&s.cmd)).on_hover_text(&s.cmd);
                                        ui.label(&s.owner);
                                        ui.label(format!("node {} (PID {})", s.home, s.home_pid));
                                        if migrated {
                                            ui.colored_label(
                                                Color32::from_rgb(30, 150, 50),
                                                "migrated",
                                            );
                                        } else {
                                            ui.label("");
                                        }
                                        ui.end_row();
                                    }
                                });
                        });
                }
                if by_node.is_empty() && self.pending_at.is_none() {
                    ui.label("no process ran at this instant");
                }
            });
        if let Some(id) = clicked {
            self.select(id);
        }
    }

    fn journey_ui(&mut self, ui: &mut Ui) {
        let Some(j) = &self.journey else {
            if self.pending_journey.is_some() {
                ui.spinner();
            } else {
                ui.label("select a process to see its journey");
            }
            return;
        };
        let s = &j.process.start;
        ui.strong(format!(
            "journey of {} (node {}, PID {})",
            short(&s.cmd),
            s.home,
            s.home_pid
        ));
        // (when, what happened, the instant its "go" button shows)
        let mut events = vec![(
            s.started_ms,
            format!("started on node {} as PID {} by {}", s.node, s.pid, s.owner),
            s.started_ms,
        )];
        for m in &j.moves {
            let mode = m
                .mode
                .filter(|x| !x.is_auto())
                .map_or(String::new(), |x| format!(", {}", x.label()));
            let figures = match (m.freeze_ms, m.bytes) {
                (Some(f), Some(b)) => format!(", frozen {f} ms, {} KiB", b / 1024),
                (Some(f), None) => format!(", frozen {f} ms"),
                _ => String::new(),
            };
            let pull = match (m.pulled_bytes, m.released_ms) {
                (Some(p), Some(r)) => {
                    format!(", {} KiB pulled, source released after {r} ms", p / 1024)
                }
                _ => String::new(),
            };
            let why = m.why.as_ref().map_or(String::new(), |w| format!("; {w}"));
            events.push((
                m.t_ms,
                format!(
                    "moved node {} -> node {} (PID {}){mode}{figures}{pull}{why}",
                    m.from, m.to, m.pid
                ),
                m.t_ms,
            ));
        }
        if let Some(end) = j.process.ended_ms {
            let code = j
                .process
                .exit_code
                .map_or(String::new(), |c| format!(", exit code {c}"));
            events.push((
                end,
                format!(
                    "ended ({}{code}) after {}",
                    j.process.end_reason.clone().unwrap_or_default(),
                    duration(end - s.started_ms)
                ),
                end - 1,
            ));
        }
        let mut jump = None;
        egui::Grid::new("journey").striped(true).show(ui, |ui| {
            for (t, what, go) in &events {
                ui.label(datetime(*t));
                ui.label(what);
                if ui.small_button("go").clicked() {
                    jump = Some(*go);
                }
                ui.end_row();
            }
        });
        if let Some(t) = jump {
            self.at_ms = t;
        }
    }
}

/// A command line cut to fit a table column (the whole one on hover).
fn short(cmd: &str) -> String {
    const MAX: usize = 60;
    if cmd.chars().count() <= MAX {
        cmd.to_string()
    } else {
        let cut: String = cmd.chars().take(MAX - 1).collect();
        format!("{cut}…")
    }
}

impl Window for ProcessHistory {
    fn key(&self) -> Id {
        Id::unique(("process-history", self.source.name()))
    }

    fn title(&self) -> String {
        format!("openMosixhistory: {}", self.source.name())
    }

    fn frame<'a>(&self, window: egui::Window<'a>) -> egui::Window<'a> {
        window.default_size([860.0, 640.0])
    }

    fn ui(&mut self, ui: &mut Ui, vc: &mut ViewerContext) -> Vec<Open> {
        let Some(tasks) = vc.tasks().cloned() else {
            ui.label("no runtime to read the history with");
            return Vec::new();
        };
        self.poll(&tasks);
        if let Some(e) = &self.error {
            ui.colored_label(Color32::from_rgb(210, 40, 40), e);
        }
        self.slider_ui(ui);
        ui.separator();
        self.table_ui(ui);
        ui.separator();
        self.journey_ui(ui);
        Vec::new()
    }
}
