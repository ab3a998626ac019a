//! `mosmon`: the load of every node of the cluster as live vertical bars,
//! as openMosix's mosmon(1). Keys: `l` load, `s` speed, `m` memory, `r` raw
//! memory, `u` utilisation, `t` totals, `d` dead nodes, arrows scroll, `q`
//! quits. On a terminal without cursor control (or when the output is not a
//! terminal) it prints plain text frames instead.

use std::process::ExitCode;

use clap::Parser;
use terminal::feed::Want;
use terminal::mosmon::{Mosmon, View};
use terminal::screen::{self, RunOptions};
use tools::connect::NodeArgs;

/// Show the cluster's nodes as live bars.
#[derive(Parser, Debug)]
#[command(
    name = "mosmon",
    version,
    about = "The openMosix cluster's nodes as live bars (load, speed, memory, utilisation)"
)]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
    /// Start with the load (the default; as the original's `-l`).
    #[arg(short = 'l')]
    _load: bool,
    /// Start with the speed (and CPU count).
    #[arg(short = 's')]
    speed: bool,
    /// Start with the memory in use.
    #[arg(short = 'm')]
    memory: bool,
    /// Start with the raw memory in use (caches too).
    #[arg(short = 'r')]
    raw: bool,
    /// Start with the utilisation.
    #[arg(short = 'u')]
    util: bool,
    /// Start with down nodes hidden (`d` toggles).
    #[arg(long)]
    hide_dead: bool,
    /// Start with the totals line (`t` toggles).
    #[arg(short = 't')]
    totals: bool,
    /// Seconds between updates.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Plain text frames even on a terminal.
    #[arg(long)]
    plain: bool,
    /// Print this many frames, then exit (plain text).
    #[arg(long)]
    count: Option<u32>,
}

fn main() -> ExitCode {
    hpc::logging::init("off");
    let cli = Cli::parse();
    let mut screen = Mosmon::default();
    screen.view = if cli.speed {
        View::Speed
    } else if cli.memory {
        View::Memory
    } else if cli.raw {
        View::RawMemory
    } else if cli.util {
        View::Util
    } else {
        View::Load
    };
    screen.show_dead = !cli.hide_dead;
    screen.totals = cli.totals;
    match run(cli, &mut screen) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mosmon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, screen: &mut Mosmon) -> anyhow::Result<()> {
    screen::run(
        screen,
        RunOptions {
            node: cli.node,
            want: Want::Nodes,
            every: (cli.interval, "--interval"),
            plain: cli.plain,
            frames: cli.count,
        },
    )
}
