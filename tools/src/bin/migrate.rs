//! `migrate PID {NODE|home|balance}`: moves a process, as openMosix's migrate(1).
//! PID is a process of the node asked (`--node`, default the local agent) or the
//! home PID of one of its jobs that runs elsewhere.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hpc::protocol::{MigrateParams, MigrationMode, MigrationReport, methods};
use serde_json::json;
use tools::connect::{EXIT_FAILED, NodeArgs, exit_code};

/// Move a process to another node.
#[derive(Parser, Debug)]
#[command(
    name = "migrate",
    version,
    about = "Move a process to another openMosix node"
)]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
    /// Print the migration report as JSON.
    #[arg(long)]
    json: bool,
    /// How the memory moves: `postcopy` (the process runs on the target at
    /// once, its memory follows), `precopy` (all of it while frozen) or
    /// `auto` (post-copy where both nodes can).
    #[arg(long, default_value = "auto")]
    mode: MigrationMode,
    /// The process.
    pid: i32,
    /// A node id, `home` or `balance` (the best node by load, speed, CPUs and free memory).
    to: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    hpc::logging::init("warn");
    let cli = Cli::parse();
    let client = match cli.node.connect().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("migrate: {e}");
            return ExitCode::from(exit_code(&e) as u8);
        }
    };
    let params = MigrateParams {
        pid: cli.pid,
        to: cli.to.clone(),
        force: false,
        mode: cli.mode,
    };
    let result = client
        .call_within::<_, MigrationReport>(
            methods::PROC_MIGRATE,
            &params,
            Duration::from_secs(3600),
        )
        .await;
    match result {
        Ok(r) if cli.json => {
            println!("{}", json!(r));
            ExitCode::SUCCESS
        }
        Ok(r) => {
            println!("{}", tools::render::migration_line(&r));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("migrate: {e}");
            ExitCode::from(exit_code(&e).max(EXIT_FAILED) as u8)
        }
    }
}
