//! `mtop`: top with the openMosix columns (the node each process runs on,
//! its home, locked, `cantmove`, migrations), as openMosix's mtop, and the
//! actions `m` migrate, `h` home, `k` kill, `r` renice on the selected
//! process. `-b` (or output that is not a terminal) prints plain tables.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use terminal::feed::{self, Want};
use terminal::mtop::Mtop;
use terminal::screen::{Display, run_full, run_plain};
use tools::connect::NodeArgs;

/// A node's processes, live, with where each runs.
#[derive(Parser, Debug)]
#[command(
    name = "mtop",
    version,
    about = "top for openMosix: a node's processes with the node each runs on, and actions on them"
)]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
    /// Seconds between updates.
    #[arg(short = 'd', long, default_value_t = 1.0)]
    delay: f64,
    /// Batch mode: plain tables, one per update.
    #[arg(short = 'b', long)]
    batch: bool,
    /// Print this many tables, then exit (batch mode).
    #[arg(short = 'n', long)]
    iterations: Option<u32>,
}

fn main() -> ExitCode {
    hpc::logging::init("off");
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtop: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let every = Duration::try_from_secs_f64(cli.delay)
        .ok()
        .filter(|d| *d >= Duration::from_millis(100))
        .ok_or_else(|| anyhow::anyhow!("-d must be at least 0.1 seconds"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (updates_tx, updates) = std::sync::mpsc::channel();
    let (actions, actions_rx) = std::sync::mpsc::channel();
    feed::start(
        &rt,
        cli.node,
        Want::NodesAndProcesses,
        every,
        updates_tx,
        actions_rx,
    );
    let mut screen = Mtop::default();
    match (cli.batch || cli.iterations.is_some(), Display::detect()) {
        (false, Display::Full { color }) => run_full(&mut screen, &updates, &actions, color),
        _ => run_plain(&mut screen, &updates, cli.iterations),
    }
}
