//! `mps [ps options]`: `ps` with a `NODE` column, the node each process runs
//! on, as openMosix's mps(1). It lists a node's processes as its agent sees
//! them: those that run there, and those started there that run elsewhere
//! (under their home PID). `mps aux`, `mps -ef`, `mps -p PID`, `mps -u USER`;
//! `--json` prints the selected rows as the agent gives them.

use std::process::ExitCode;

use clap::Parser;
use hpc::model::{NodeStatus, ProcessInfo};
use hpc::protocol::{NoParams, ProcListParams, methods};
use tools::connect::{EXIT_FAILED, NodeArgs, exit_code};
use tools::ps_args::PsArgs;
use tools::ps_table::{Invoker, render, select};

/// `mps`'s own options; the `ps` options are read apart (see [`split`]).
#[derive(Parser, Debug)]
#[command(
    name = "mps",
    version,
    about = "ps with a NODE column: where each process of an openMosix node runs",
    after_help = "ps options: aux, ax, u, x, -e, -A, -f, -p PID[,PID], -u USER[,USER] (e.g. `mps aux`, `mps -ef`)"
)]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
    /// Print the selected processes as JSON (the agent's rows).
    #[arg(long)]
    json: bool,
}

/// `mps`'s long options that take a value.
const WITH_VALUE: [&str; 4] = ["--node", "--socket", "--key", "--known-hosts"];

/// Splits the command line into `mps`'s own `--` options (for clap, with
/// the program name) and the `ps` options.
fn split(args: Vec<String>) -> (Vec<String>, Vec<String>) {
    let mut it = args.into_iter();
    let mut own: Vec<String> = it.next().into_iter().collect();
    let mut ps = Vec::new();
    while let Some(a) = it.next() {
        if a.starts_with("--") {
            let takes_value = WITH_VALUE.contains(&a.as_str());
            own.push(a);
            if takes_value && let Some(v) = it.next() {
                own.push(v);
            }
        } else {
            ps.push(a);
        }
    }
    (own, ps)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    hpc::logging::init("warn");
    let (own, ps) = split(std::env::args().collect());
    let cli = Cli::parse_from(own);
    let args = match PsArgs::parse(&ps) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mps: {e}");
            return ExitCode::from(EXIT_FAILED as u8);
        }
    };
    let client = match cli.node.connect().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mps: {e}");
            return ExitCode::from(exit_code(&e) as u8);
        }
    };
    let listed = client
        .call::<_, Vec<ProcessInfo>>(methods::PROC_LIST, ProcListParams::default())
        .await;
    let status = client
        .call::<_, NodeStatus>(methods::NODE_STATUS, NoParams {})
        .await;
    let (rows, status) = match (listed, status) {
        (Ok(r), Ok(s)) => (r, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("mps: {e}");
            return ExitCode::from(exit_code(&e).max(EXIT_FAILED) as u8);
        }
    };
    let me = Invoker {
        // SAFETY: geteuid has no preconditions and cannot fail.
        uid: unsafe { libc::geteuid() },
        tty: hpc::tty::own(),
    };
    let chosen = select(&rows, &args.selection, &me);
    if cli.json {
        match serde_json::to_string_pretty(&chosen) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("mps: {e}");
                return ExitCode::from(EXIT_FAILED as u8);
            }
        }
    } else {
        println!(
            "{}",
            render(&chosen, args.format, status.tmem, chrono::Local::now())
        );
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn own_options_and_their_values_are_told_from_ps_options() {
        let args = [
            "mps", "--node", "10.0.0.1", "aux", "--json", "-p", "3", "--key=/k",
        ];
        let (own, ps) = split(args.iter().map(|s| s.to_string()).collect());
        assert_eq!(own, ["mps", "--node", "10.0.0.1", "--json", "--key=/k"]);
        assert_eq!(ps, ["aux", "-p", "3"]);
    }
}
