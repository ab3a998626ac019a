//! openMosixanalyzer as a window: the load overview and the memory overview of
//! a history (12 h by default; pan and zoom to any span), its checkpoints and
//! outages, the File menu of archives, live following of the current history
//! and the "find out" statistics.
//!
//! Queries run on the app's runtime; the window keeps drawing what it has and
//! shows a spinner while a query runs. While it follows the current history, a
//! watcher task looks at the history's end every second and the window is
//! repainted only when new samples arrived.

use std::sync::mpsc;
use std::time::Duration;

use egui::{Id, Ui};
use history::overview::{Overview, Report};
use history::store::{HistoryInfo, Location};
use viewer::tasks::{Pending, Tasks};
use viewer::{Open, ViewerContext, Window};

use crate::chart::{ChartCache, ChartData, Kind, chart_ui};
use crate::source::{Source, take};
use crate::time::{datetime, duration};

/// The default window: the last 12 hours.
pub const DEFAULT_SPAN_MS: i64 = 12 * 3600 * 1000;
/// Buckets per chart (about one per pixel column of a wide window).
pub const COLUMNS: usize = 1200;

/// The analyzer of one history.
pub struct Analyzer {
    source: Source,
    overview: Option<Overview>,
    load: ChartData,
    memory: ChartData,
    load_cache: ChartCache,
    memory_cache: ChartCache,
    /// The range asked for last (ms).
    asked: Option<(i64, i64)>,
    /// The range the charts show (ms), as the user left it.
    shown: Option<(i64, i64)>,
    reset: Option<(i64, i64)>,
    pending: Option<Pending<Result<Overview, String>>>,
    follow: bool,
    watcher: Option<Watcher>,
    archives: Option<Vec<HistoryInfo>>,
    pending_archives: Option<Pending<Result<Vec<HistoryInfo>, String>>>,
    report: Option<Report>,
    pending_report: Option<Pending<Result<Report, String>>>,
    show_report: bool,
    other: String,
    error: Option<String>,
}

/// The live watcher: a task that sends the history's new end when it grows.
struct Watcher {
    rx: mpsc::Receiver<i64>,
    task: tokio::task::AbortHandle,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Analyzer {
    /// The analyzer of `source`.
    pub fn new(source: Source) -> Self {
        Self {
            follow: source.current,
            source,
            overview: None,
            load: ChartData::default(),
            memory: ChartData::default(),
            load_cache: ChartCache::default(),
            memory_cache: ChartCache::default(),
            asked: None,
            shown: None,
            reset: None,
            pending: None,
            watcher: None,
            archives: None,
            pending_archives: None,
            report: None,
            pending_report: None,
            show_report: false,
            other: String::new(),
            error: None,
        }
    }

    /// The history it shows.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The overview on screen, once loaded.
    pub fn overview(&self) -> Option<&Overview> {
        self.overview.as_ref()
    }

    /// What the load chart draws.
    pub fn load_chart(&self) -> &ChartData {
        &self.load
    }

    /// What the memory chart draws.
    pub fn memory_chart(&self) -> &ChartData {
        &self.memory
    }

    /// The statistics, once found out.
    pub fn report(&self) -> Option<&Report> {
        self.report.as_ref()
    }

    /// Whether a query is running.
    pub fn busy(&self) -> bool {
        self.pending.is_some() || self.pending_report.is_some() || self.pending_archives.is_some()
    }

    /// Switches to another history.
    pub fn open_source(&mut self, source: Source) {
        *self = Self::new(source);
    }

    /// Asks for the overview of `range` (None: the last 12 h of the history).
    fn query(&mut self, tasks: &Tasks, range: Option<(i64, i64)>) {
        let source = self.source.clone();
        self.asked = range;
        self.pending = Some(tasks.run(async move {
            let h = source.open().await?;
            let (from, to) = match range {
                Some(r) => r,
                // The last 12 h, or the whole history when it is shorter.
                None => match h.span().await? {
                    Some((start, end)) => ((end - DEFAULT_SPAN_MS).max(start), end),
                    None => {
                        let now = hpc::clock::now_ms() as i64;
                        (now - DEFAULT_SPAN_MS, now)
                    }
                },
            };
            let ov = h.overview(from, to, COLUMNS).await;
            h.close().await;
            ov
        }));
    }

    fn watch(&mut self, tasks: &Tasks) {
        let (tx, rx) = mpsc::channel();
        let source = self.source.clone();
        let wake = tasks.waker();
        let task = tasks.handle().spawn(async move {
            let mut last = None;
            loop {
                // Opened anew each time and closed at once: a connection held
                // open would keep the collector from archiving the history
                // (leaving WAL mode needs the only connection).
                if let Ok(h) = source.open().await {
                    if let Ok(Some((_, end))) = h.span().await
                        && last != Some(end)
                    {
                        last = Some(end);
                        if tx.send(end).is_err() {
                            return;
                        }
                        wake();
                    }
                    h.close().await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        self.watcher = Some(Watcher {
            rx,
            task: task.abort_handle(),
        });
    }

    /// Takes what arrived; starts what is due.
    fn poll(&mut self, tasks: &Tasks) {
        if let Some(r) = take(&mut self.pending) {
            match r {
                Ok(ov) => {
                    self.error = None;
                    if self.overview.is_none() || self.asked.is_none() {
                        self.reset = Some((ov.from_ms, ov.to_ms));
                    }
                    self.load = ChartData::build(&ov, Kind::Load);
                    self.memory = ChartData::build(&ov, Kind::Memory);
                    self.overview = Some(ov);
                }
                Err(e) => self.error = Some(e),
            }
        }
        match take(&mut self.pending_report) {
            Some(Ok(r)) => self.report = Some(r),
            Some(Err(e)) => self.error = Some(e),
            None => {}
        }
        match take(&mut self.pending_archives) {
            Some(Ok(list)) => self.archives = Some(list),
            Some(Err(e)) => self.error = Some(e),
            None => {}
        }
        if self.overview.is_none() && self.pending.is_none() && self.error.is_none() {
            self.query(tasks, None);
        }
        if self.follow && self.source.current {
            if self.watcher.is_none() {
                self.watch(tasks);
            }
            let mut newest = None;
            if let Some(w) = &self.watcher {
                while let Ok(end) = w.rx.try_recv() {
                    newest = Some(end);
                }
            }
            if let (Some(end), Some(ov)) = (newest, &self.overview)
                && end > ov.to_ms
                && self.pending.is_none()
            {
                let (a, b) = self.shown.unwrap_or((ov.from_ms, ov.to_ms));
                let width = (b - a).max(1000);
                self.reset = Some((end - width, end));
                self.query(tasks, Some((end - width, end)));
            }
        } else {
            self.watcher = None;
        }
    }

    fn menu_ui(&mut self, ui: &mut Ui, tasks: &Tasks) {
        ui.horizontal(|ui| {
            ui.menu_button("File", |ui| {
                if self.archives.is_none() && self.pending_archives.is_none() {
                    let source = self.source.clone();
                    self.pending_archives = Some(tasks.run(async move { source.list().await }));
                }
                match &self.archives {
                    None => {
                        ui.spinner();
                    }
                    Some(list) => {
                        let mut chosen = None;
                        for info in list.iter().rev() {
                            let s = self.source.listed(info);
                            let label = format!(
                                "{} {} ({} - {})",
                                if info.ended_ms.is_none() {
                                    "current"
                                } else {
                                    "archive"
                                },
                                s.name(),
                                datetime(info.started_ms),
                                info.ended_ms.map_or("now".into(), datetime),
                            );
                            if ui.button(label).clicked() {
                                chosen = Some(s);
                            }
                        }
                        if let Some(s) = chosen {
                            self.open_source(s);
                            ui.close();
                        }
                    }
                }
                ui.separator();
                ui.horizontal(|ui| {
                    ui.add(
                        egui::TextEdit::singleline(&mut self.other)
                            .hint_text("history file or postgres:// URL")
                            .desired_width(260.0),
                    );
                    if ui.button("open").clicked() {
                        match self.other.trim().parse::<Location>() {
                            Ok(loc) => {
                                let socket = self.source.socket.clone();
                                self.open_source(Source::current_of(loc).with_socket(socket));
                                ui.close();
                            }
                            Err(e) => self.error = Some(e.to_string()),
                        }
                    }
                });
            });
            if self.source.current {
                ui.checkbox(&mut self.follow, "refresh (follow live)");
            }
            if ui.button("find out statistics").clicked() {
                self.show_report = true;
                if let Some((a, b)) = self.shown.or(self.asked) {
                    let source = self.source.clone();
                    self.pending_report = Some(tasks.run(async move {
                        let h = source.open().await?;
                        let r = h.report(a, b).await;
                        h.close().await;
                        r
                    }));
                }
            }
            if self.busy() {
                ui.spinner();
            }
        });
    }

    fn report_ui(&mut self, ctx: &egui::Context) {
        let mut open = self.show_report;
        egui::Window::new("find out statistics")
            .id(self.key().with("report"))
            .open(&mut open)
            .default_width(640.0)
            .show(ctx, |ui| match &self.report {
                None => {
                    ui.spinner();
                }
                Some(r) => report_table(ui, r),
            });
        self.show_report = open;
    }
}

fn fig(s: Option<history::query::Stat>, unit: &str) -> [String; 3] {
    match s {
        Some(s) => [
            format!("{:.1}{unit}", s.avg),
            format!("{:.1}{unit}", s.min),
            format!("{:.1}{unit}", s.max),
        ],
        None => ["-".into(), "-".into(), "-".into()],
    }
}

/// The statistics table: one row per node and one for the cluster.
fn report_table(ui: &mut Ui, r: &Report) {
    match r.covered {
        Some((a, b)) => ui.label(format!(
            "covers {} to {} ({})",
            datetime(a),
            datetime(b),
            duration(b - a)
        )),
        None => ui.label("no samples in this span"),
    };
    egui::Grid::new("report").striped(true).show(ui, |ui| {
        for h in [
            "node",
            "load avg",
            "min",
            "max",
            "mem used avg",
            "min",
            "max",
            "up",
            "down",
            "started",
            "moves in",
            "out",
        ] {
            ui.strong(h);
        }
        ui.end_row();
        for (name, n) in r
            .nodes
            .iter()
            .map(|n| (format!("node {}", n.node), n))
            .chain(std::iter::once(("cluster".to_string(), &r.cluster)))
        {
            ui.label(name);
            for v in fig(n.load, "") {
                ui.label(v);
            }
            for v in fig(n.mem_percent, " %") {
                ui.label(v);
            }
            ui.label(duration(n.summary.up_ms));
            ui.label(duration(n.summary.down_ms));
            ui.label(n.started.to_string());
            ui.label(n.moves_in.to_string());
            ui.label(n.moves_out.to_string());
            ui.end_row();
        }
    });
}

impl Window for Analyzer {
    fn key(&self) -> Id {
        Id::unique(("analyzer", self.source.name()))
    }

    fn title(&self) -> String {
        format!("openMosixanalyzer: {}", self.source.name())
    }

    fn frame<'a>(&self, window: egui::Window<'a>) -> egui::Window<'a> {
        window.default_size([900.0, 620.0])
    }

    fn ui(&mut self, ui: &mut Ui, vc: &mut ViewerContext) -> Vec<Open> {
        let Some(tasks) = vc.tasks().cloned() else {
            ui.label("no runtime to read the history with");
            return Vec::new();
        };
        self.poll(&tasks);
        self.menu_ui(ui, &tasks);
        if let Some(e) = &self.error {
            ui.colored_label(egui::Color32::from_rgb(210, 40, 40), e);
        }
        match &self.overview {
            None => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(format!("reading {}", self.source.name()));
                });
            }
            Some(ov) => {
                let (a, b) = self.shown.unwrap_or((ov.from_ms, ov.to_ms));
                ui.label(format!(
                    "from {} to {} ({}){}",
                    datetime(a),
                    datetime(b),
                    duration(b - a),
                    ov.span.map_or(String::new(), |(s, e)| format!(
                        "; the history runs from {} to {}",
                        datetime(s),
                        datetime(e)
                    ))
                ));
                let link = self.key().with("x");
                let height = ((ui.available_height() - 40.0) / 2.0).max(120.0);
                let reset = self.reset.take();
                ui.strong(Kind::Load.title());
                let shown = chart_ui(ui, &self.load, &mut self.load_cache, link, height, reset);
                ui.strong(Kind::Memory.title());
                let shown2 = chart_ui(
                    ui,
                    &self.memory,
                    &mut self.memory_cache,
                    link,
                    height,
                    reset,
                );
                let moved = shown.moved || shown2.moved;
                self.shown = Some(shown.x_ms);
                if moved {
                    // The user panned or zoomed: stop following, fetch that span.
                    self.follow = false;
                }
                let (na, nb) = shown.x_ms;
                let (oa, ob) = (ov.from_ms, ov.to_ms);
                let bucket = ov.bucket_ms.max(1);
                let differs = (na - oa).abs() > bucket || (nb - ob).abs() > bucket;
                if differs && self.pending.is_none() && reset.is_none() {
                    self.query(&tasks, Some((na, nb)));
                }
            }
        }
        if self.show_report {
            self.report_ui(ui.ctx());
        }
        Vec::new()
    }
}
