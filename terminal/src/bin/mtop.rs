//! `mtop`: top with the openMosix columns (the node each process runs on,
//! its home, locked, `cantmove`, migrations), as openMosix's mtop, and the
//! actions `m` migrate, `h` home, `k` kill, `r` renice on the selected
//! process. `-b` (or output that is not a terminal) prints plain tables.

use std::process::ExitCode;

use clap::Parser;
use terminal::feed::Want;
use terminal::mtop::Mtop;
use terminal::screen::{self, RunOptions};
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
    screen::run(
        &mut Mtop::default(),
        RunOptions {
            node: cli.node,
            want: Want::NodesAndProcesses,
            every: (cli.delay, "-d"),
            plain: cli.batch,
            frames: cli.iterations,
        },
    )
}
