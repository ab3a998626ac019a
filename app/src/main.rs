//! `openmosixview [--node HOST[:PORT]]... [--key FILE] [--known-hosts FILE]
//! [--history DB] [--screenshot FILE]`: the openMosix cluster view.
//! `openmosixview --analyzer [HISTORY]` (or the link `openmosixanalyzer
//! [HISTORY]`): the analyzer on its own; `--process-history [HISTORY]` the
//! process history on its own. `openmosixview --migmon [--main-node N]` (or
//! the link `openmosixmigmon`): the migration monitor as the main window.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use openmosixview::OpenMosixView;
use openmosixview::settings::{self, Settings};
use openmosixview::standalone::AnalyzerApp;
use viewer::ViewerContext;
use viewer::net::{Backend, LinkSettings};
use viewer::screenshot;

/// openmosixview: watch and steer an openMosix cluster.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Agent to find the cluster through, HOST[:PORT] (repeat for fallbacks;
    /// default: the saved configuration, else the local agent).
    #[arg(long)]
    node: Vec<String>,
    /// Private key (default: ssh-agent, then ~/.ssh/id_*).
    #[arg(long)]
    key: Option<PathBuf>,
    /// known_hosts file for the agents' host keys (default: ~/.ssh/known_hosts).
    #[arg(long)]
    known_hosts: Option<PathBuf>,
    /// Configuration file (default: $XDG_CONFIG_HOME/openmosixview/config.json).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Arguments the Collector → start menu adds to `openmosixcollector -d` (repeatable).
    #[arg(long = "collector-arg", allow_hyphen_values = true)]
    collector_args: Vec<String>,
    /// Write the first complete frame to this PNG file, then quit.
    #[arg(long)]
    screenshot: Option<PathBuf>,
    /// The history the analyzer reads: a SQLite file or a postgres:// URL
    /// (default: the saved one, else /var/lib/openmosix/history/current.db).
    #[arg(long)]
    history: Option<String>,
    /// Open only the analyzer (of HISTORY, when given).
    #[arg(long)]
    analyzer: bool,
    /// Open the migration monitor (openMosixmigmon) as the main window.
    #[arg(long)]
    migmon: bool,
    /// With --migmon: the node in the middle (default: the first node).
    #[arg(long, value_name = "NODE")]
    main_node: Option<u32>,
    /// Open only the process history (openMosixhistory) of HISTORY.
    #[arg(long)]
    process_history: bool,
    /// With --process-history: the instant to show ("2026-12-02 10:30:00",
    /// local time, or milliseconds since the Unix epoch).
    #[arg(long, value_parser = parse_instant)]
    at: Option<i64>,
    /// With --process-history: the process to select, HOME:PID.
    #[arg(long, value_parser = parse_identity)]
    process: Option<(u32, i32)>,
    /// The history to analyze with --analyzer (as --history).
    #[arg(value_name = "HISTORY")]
    history_arg: Option<String>,
}

fn main() -> anyhow::Result<()> {
    hpc::logging::init("openmosixview=info,analyzer=info,warn");
    let args = Args::parse();
    let called = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let called_analyzer = called == "openmosixanalyzer";
    let migmon = args.migmon || called == "openmosixmigmon";
    let config_path = args.config.clone().or_else(settings::default_path);
    let mut s = match &config_path {
        Some(p) => Settings::load(p)?,
        None => Settings::default(),
    };
    let given = !args.node.is_empty() || args.key.is_some() || args.known_hosts.is_some();
    if !args.node.is_empty() {
        s.nodes = args.node.clone();
    }
    if args.key.is_some() {
        s.key = args.key.clone();
    }
    if args.known_hosts.is_some() {
        s.known_hosts = args.known_hosts.clone();
    }
    if !args.collector_args.is_empty() {
        s.collector_start_args = args.collector_args.clone();
    }
    if args.history.is_some() {
        s.history = args.history.clone();
    }
    let history: history::store::Location = args
        .history_arg
        .clone()
        .or_else(|| s.history.clone())
        .unwrap_or_else(|| history::store::DEFAULT_DB.to_string())
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.analyzer || args.process_history || called_analyzer {
        let processes = (args.process_history || args.at.is_some() || args.process.is_some())
            .then_some(ProcessView {
                at: args.at,
                select: args.process,
            });
        return run_analyzer(history, processes, args.screenshot.clone());
    }
    if args.history_arg.is_some() {
        anyhow::bail!("a HISTORY argument goes with --analyzer (or use --history)");
    }
    if given && let Some(p) = &config_path {
        // Remember what was given, so that the next start needs no options.
        if let Err(e) = s.save(p) {
            tracing::warn!(error = %e, "cannot save the configuration");
        }
    }
    if s.nodes.is_empty() {
        s.nodes
            .push(format!("127.0.0.1:{}", hpc::paths::AGENT_PORT));
    }
    let known_hosts = s
        .known_hosts
        .clone()
        .or_else(hpc::paths::default_known_hosts)
        .context("no known_hosts file: give --known-hosts")?;
    let config = viewer::net::BackendConfig {
        seeds: s.nodes.clone(),
        links: LinkSettings {
            key: s.key.clone(),
            known_hosts,
            connect_timeout: Duration::from_secs(5),
        },
        poll: Duration::from_millis(s.refresh_ms.max(250)),
        collector_program: s.collector_program.clone(),
        collector_start_args: s.collector_start_args.clone(),
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(if migmon {
                "openMosixmigmon"
            } else {
                "openMosixview"
            })
            .with_inner_size(if migmon {
                [900.0, 860.0]
            } else {
                [1000.0, 560.0]
            }),
        ..Default::default()
    };
    let shot = args.screenshot.clone();
    let main_node = args.main_node.unwrap_or(0);
    eframe::run_native(
        "openmosixview",
        options,
        Box::new(move |cc| {
            let ctx = cc.egui_ctx.clone();
            let backend = Backend::start(config, Arc::new(move || ctx.request_repaint()))?;
            let mut view = OpenMosixView::new(ViewerContext::new(backend));
            view.history = history;
            if migmon {
                view = view.solo(migmon::Migmon::new(main_node));
            }
            Ok(Box::new(Window {
                view: Mode::Cluster(Box::new(view)),
                shot: shot.map(|path| Shot {
                    path,
                    asked: false,
                    started: Instant::now(),
                }),
            }))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

/// A pending `--screenshot`.
struct Shot {
    path: PathBuf,
    asked: bool,
    started: Instant,
}

/// Runs the analyzer alone.
/// Parses an instant: local date and time, or milliseconds since the epoch.
fn parse_instant(s: &str) -> Result<i64, String> {
    use chrono::TimeZone;
    if let Ok(ms) = s.trim().parse::<i64>() {
        return Ok(ms);
    }
    let naive = chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S")
        .map_err(|e| format!("`{s}`: {e} (give YYYY-MM-DD HH:MM:SS or milliseconds)"))?;
    chrono::Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| format!("`{s}` does not exist in the local time zone"))
}

/// Parses HOME:PID.
fn parse_identity(s: &str) -> Result<(u32, i32), String> {
    let (home, pid) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}`: give HOME:PID, e.g. 1:4242"))?;
    Ok((
        home.parse()
            .map_err(|_| format!("`{home}` is not a node id"))?,
        pid.parse().map_err(|_| format!("`{pid}` is not a PID"))?,
    ))
}

/// What the process history shows first.
struct ProcessView {
    at: Option<i64>,
    select: Option<(u32, i32)>,
}

fn run_analyzer(
    history: history::store::Location,
    processes: Option<ProcessView>,
    shot: Option<PathBuf>,
) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("openMosixanalyzer")
            .with_inner_size([1100.0, 720.0]),
        ..Default::default()
    };
    eframe::run_native(
        "openmosixanalyzer",
        options,
        Box::new(move |cc| {
            let ctx = cc.egui_ctx.clone();
            let mut app = AnalyzerApp::new(history, Arc::new(move || ctx.request_repaint()))?;
            if let Some(view) = processes {
                app.show_processes(view.at, view.select);
            }
            Ok(Box::new(Window {
                view: Mode::Analyzer(Box::new(app)),
                shot: shot.map(|path| Shot {
                    path,
                    asked: false,
                    started: Instant::now(),
                }),
            }))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

/// What the window shows.
enum Mode {
    /// The cluster view with every window.
    Cluster(Box<OpenMosixView>),
    /// The analyzer alone.
    Analyzer(Box<AnalyzerApp>),
}

/// The eframe side: events in `logic`, the frame in `ui`.
struct Window {
    view: Mode,
    shot: Option<Shot>,
}

/// How long `--screenshot` waits for a complete frame before taking what is there.
const SHOT_PATIENCE: Duration = Duration::from_secs(30);

impl eframe::App for Window {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        let complete = match &mut self.view {
            Mode::Cluster(v) => {
                v.logic();
                v.complete()
            }
            Mode::Analyzer(a) => a.complete(),
        };
        if let Some(shot) = &mut self.shot
            && !shot.asked
        {
            if complete || shot.started.elapsed() > SHOT_PATIENCE {
                shot.asked = true;
                let (path, ctx2) = (shot.path.clone(), ctx.clone());
                ctx.request_screenshot(move |image| {
                    match screenshot::write_png(&path, &image) {
                        Ok(()) => tracing::info!(path = %path.display(), "screenshot written"),
                        Err(e) => tracing::error!(error = %e, "cannot write the screenshot"),
                    }
                    ctx2.send_viewport_cmd(egui::ViewportCommand::Close);
                    ctx2.request_repaint();
                });
                ctx.request_repaint();
            } else {
                ctx.request_repaint_after(Duration::from_millis(200));
            }
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        match &mut self.view {
            Mode::Cluster(v) => v.ui(ui),
            Mode::Analyzer(a) => a.ui(ui),
        }
    }
}
