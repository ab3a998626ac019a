//! `mosrun`: starts a program as a migratable openMosix job (in its own PID
//! namespace, through the local agent) and waits for it like the shell would,
//! exiting with its status. Also answers to the names of the openMosix wrappers
//! (`nomig`, `runhome`, `runon`, `cpujob`, `iojob`, `nodecay`, `slowdecay`,
//! `fastdecay`) when installed as links to it. See `tools::mosrun_args`.

use std::process::ExitCode;
use std::time::Duration;

use hpc::client::{Client, ClientError};
use hpc::protocol::{
    JobInfo, MigrateParams, MigrationReport, PidParams, SignalParams, SpawnParams, methods,
};
use tools::connect::{EXIT_FAILED, exit_code};
use tools::mosrun_args::{Placement, RunOptions, parse};

fn program_name() -> String {
    std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "mosrun".into())
}

/// Where the job's output goes: the caller's stdout when it is a regular file
/// (`mosrun cmd > out`), else `mosrun.out` in the working directory (like nohup).
fn default_output(cwd: &std::path::Path) -> (String, bool) {
    if let Ok(target) = std::fs::read_link("/proc/self/fd/1")
        && target.is_file()
    {
        return (target.display().to_string(), false);
    }
    (cwd.join("mosrun.out").display().to_string(), true)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    hpc::logging::init("warn");
    let name = program_name();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&name, &args) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{name}: {msg}");
            return ExitCode::from(EXIT_FAILED as u8);
        }
    };
    let client = match opts.node.connect().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(exit_code(&e) as u8);
        }
    };
    match run(&client, &opts, &name).await {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::from(exit_code(&e).max(EXIT_FAILED) as u8)
        }
    }
}

async fn run(c: &Client, o: &RunOptions, name: &str) -> Result<i32, ClientError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let (stdout, told) = match &o.stdout {
        Some(f) => (cwd.join(f).display().to_string(), false),
        None => default_output(&cwd),
    };
    if told && !o.detach {
        eprintln!("{name}: the job's output goes to {stdout}");
    }
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let spawn = SpawnParams {
        argv: o.argv.clone(),
        cwd: cwd.display().to_string(),
        env: std::env::vars().collect(),
        uid,
        gid,
        stdout: Some(stdout),
        stderr: o.stderr.as_ref().map(|f| cwd.join(f).display().to_string()),
        lock: o.lock,
        decay: o.decay,
    };
    let job: JobInfo = c.call(methods::PROC_SPAWN, &spawn).await?;
    if let Some(target) = pick_node(&o.placement) {
        let to = MigrateParams {
            pid: job.home_pid,
            to: target.to_string(),
            force: true,
            mode: hpc::protocol::MigrationMode::Auto,
        };
        let moved = c
            .call_within::<_, MigrationReport>(
                methods::PROC_MIGRATE,
                &to,
                Duration::from_secs(3600),
            )
            .await;
        if let Err(e) = moved {
            if o.fallback {
                eprintln!("{name}: node {target} cannot take the job ({e}); running it here (-F)");
            } else {
                let _ = c
                    .call_value(methods::PROC_SIGNAL, signal(job.home_pid, "KILL"))
                    .await;
                return Err(e);
            }
        }
    }
    if o.detach {
        println!("{}", job.home_pid);
        return Ok(0);
    }
    wait(c, job.home_pid).await
}

/// `proc.signal` params for `pid`.
fn signal(pid: i32, name: &str) -> serde_json::Value {
    serde_json::to_value(SignalParams {
        pid,
        signal: name.into(),
        start_time: None,
    })
    .unwrap_or_default()
}

/// The node a placement names (`None` = stay home).
fn pick_node(p: &Placement) -> Option<u32> {
    match p {
        Placement::Anywhere | Placement::Home => None,
        Placement::Node(n) => Some(*n),
        Placement::OneOf(list) => {
            let pick = (std::process::id() as usize
                + std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos() as usize)
                    .unwrap_or(0))
                % list.len().max(1);
            list.get(pick).copied()
        }
    }
}

/// Waits for the job to end, wherever it runs; Ctrl-C is passed on to it.
async fn wait(c: &Client, pid: i32) -> Result<i32, ClientError> {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let j: JobInfo = c.call(methods::JOB_STATUS, PidParams { pid }).await?;
                if let Some(code) = j.exit {
                    return Ok(code);
                }
            }
            _ = tokio::signal::ctrl_c() => {
                c.call_value(methods::PROC_SIGNAL, signal(pid, "INT")).await?;
            }
        }
    }
}
