//! `openmosixcollector`: logs the cluster's history.
//!
//! ```text
//! openmosixcollector -d          start as a daemon
//! openmosixcollector -k          stop it (the last tick is written)
//! openmosixcollector -n [LABEL]  write a checkpoint into the history
//! openmosixcollector -r          archive the current history, begin a new one
//! openmosixcollector --foreground  run in the foreground (systemd)
//! openmosixcollector             print a short help
//! ```

use std::io::{BufRead, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use collector::control::{self, Request};
use collector::daemon::{Daemon, Settings};
use collector::pidfile::{self, PidFile};
use collector::query_socket;
use history::store::{DEFAULT_DB, Location};
use hpc::client::{ClientConfig, Identity};

/// Default monitor key of the collector.
const DEFAULT_KEY: &str = "/etc/openmosix/collector_key";
/// Default log file of the daemon (`-d`).
const DEFAULT_LOG: &str = "/var/log/openmosix/collector.log";

#[derive(Parser, Debug)]
#[command(
    name = "openmosixcollector",
    version,
    about = "Logs the openMosix cluster's history (load, memory, status and processes of every node)",
    disable_help_flag = true
)]
struct Cli {
    /// Start the collector as a daemon.
    #[arg(short = 'd', group = "action")]
    daemon: bool,
    /// Stop the running collector (its last tick is written first).
    #[arg(short = 'k', group = "action")]
    kill: bool,
    /// Write a checkpoint (drawn as a blue line by the analyzer), with an optional label.
    #[arg(short = 'n', group = "action", num_args = 0..=1, default_missing_value = "")]
    checkpoint: Option<String>,
    /// Archive the current history and start a new one.
    #[arg(short = 'r', group = "action")]
    rotate: bool,
    /// Run in the foreground, logging to stderr (for systemd).
    #[arg(long, group = "action")]
    foreground: bool,
    /// Show what the running collector is doing.
    #[arg(long, group = "action")]
    status: bool,
    /// Print help.
    #[arg(short = 'h', long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,

    /// Agent(s) to learn the cluster from, HOST[:PORT] (repeatable).
    #[arg(
        long = "seed",
        default_value = "127.0.0.1:4660",
        env = "OPENMOSIX_COLLECTOR_SEEDS",
        value_delimiter = ','
    )]
    seeds: Vec<String>,
    /// Sampling interval: 1s, 500ms, 1m...
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Monitor key to authenticate with.
    #[arg(long, default_value = DEFAULT_KEY)]
    key: PathBuf,
    /// known_hosts for the seed agents (other nodes' keys come from the cluster's gossip).
    #[arg(long)]
    known_hosts: Option<PathBuf>,
    /// History database: a SQLite file, or postgres://USER:PASSWORD@HOST/DB.
    #[arg(long, default_value = DEFAULT_DB, env = "OPENMOSIX_COLLECTOR_DB")]
    db: String,
    /// Archive the history and begin a new one this often.
    #[arg(long, default_value = "12h", value_parser = parse_duration)]
    archive_every: Duration,
    /// PID file.
    #[arg(long, default_value = pidfile::DEFAULT_PID_FILE)]
    pid_file: PathBuf,
    /// Control socket of the running collector.
    #[arg(long, default_value = control::DEFAULT_SOCKET)]
    control: PathBuf,
    /// Socket on which the collector answers history queries of local users
    /// in the reader group ("none" to serve none).
    #[arg(long, default_value = history::remote::DEFAULT_QUERY_SOCKET)]
    query_socket: PathBuf,
    /// Group whose members may read the history through the query socket.
    #[arg(long, default_value = history::remote::DEFAULT_READER_GROUP)]
    reader_group: String,
    /// Log file of the daemon (-d).
    #[arg(long, default_value = DEFAULT_LOG)]
    log_file: PathBuf,
}

/// Parses `500ms`, `1s`, `5m`, `12h` (a bare number is seconds).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s}: expected a number with a unit (500ms, 1s, 5m, 12h)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{s}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if d < Duration::from_millis(100) {
        return Err(format!("{s}: must be at least 100ms"));
    }
    Ok(d)
}

const SHORT_HELP: &str = "\
usage: openmosixcollector -d|-k|-n [LABEL]|-r|--foreground|--status [options]
  -d            start the collector as a daemon
  -k            stop the collector
  -n [LABEL]    write a checkpoint to the history
  -r            save the current history and start a new one
  --foreground  run in the foreground (systemd)
  --status      show what the running collector does
  -h, --help    all options (--seed, --interval, --key, --db, ...)";

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("openmosixcollector: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.kill {
        return stop(&cli.pid_file);
    }
    if let Some(label) = &cli.checkpoint {
        return ask(
            &cli.control,
            Request::Checkpoint {
                label: label.clone(),
            },
        );
    }
    if cli.rotate {
        return ask(&cli.control, Request::Rotate);
    }
    if cli.status {
        return ask(&cli.control, Request::Status);
    }
    if !cli.daemon && !cli.foreground {
        println!("{SHORT_HELP}");
        return Ok(());
    }
    let settings = settings(&cli)?;
    if cli.foreground {
        hpc::logging::init("info,russh=warn,sqlx=warn");
        let pid = PidFile::acquire(&cli.pid_file)?;
        let result = serve(settings, &cli, || {});
        drop(pid);
        return result;
    }
    daemonize(&cli, settings)
}

fn settings(cli: &Cli) -> anyhow::Result<Settings> {
    let db: Location = cli.db.parse()?;
    if !cli.key.exists() {
        bail!(
            "{}: no such key (create one with ssh-keygen -t ed25519 and grant it the monitor role in every agent's authorized_keys)",
            cli.key.display()
        );
    }
    let mut client = ClientConfig::from_env();
    client.identity = Identity::KeyFile(cli.key.clone());
    if let Some(kh) = &cli.known_hosts {
        client.known_hosts = kh.clone();
    }
    client.connect_timeout = Duration::from_secs(3);
    Ok(Settings {
        seeds: cli.seeds.clone(),
        client,
        interval: cli.interval,
        db,
        archive_every: cli.archive_every,
    })
}

/// Runs the collector on this thread until SIGTERM/SIGINT; `ready` is called
/// once the history is open and the control socket listens.
fn serve(settings: Settings, cli: &Cli, ready: impl FnOnce()) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let db = settings.db.clone();
        let daemon = Daemon::start(settings).await?;
        let listener = control::bind(&cli.control)?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(control::serve(listener, tx));
        if cli.query_socket != Path::new("none") {
            let queries = query_socket::bind(&cli.query_socket)?;
            let readers = query_socket::Readers::of_group(&cli.reader_group);
            if readers.gid.is_none() {
                tracing::warn!(group = %cli.reader_group, "no such group: only root may read the history through the query socket");
            }
            tokio::spawn(query_socket::serve(queries, db, readers));
        }
        ready();
        let stop = async {
            let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
            match term {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        let result = daemon.run(rx, stop).await;
        let _ = std::fs::remove_file(&cli.control);
        if cli.query_socket != Path::new("none") {
            let _ = std::fs::remove_file(&cli.query_socket);
        }
        result.map_err(anyhow::Error::from)
    })
}

/// `-d`: forks; the child leaves the terminal, takes the PID file and runs; the
/// parent waits until the child is collecting (or says why it could not).
fn daemonize(cli: &Cli, settings: Settings) -> anyhow::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here only.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (the runtime starts in the child).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid > 0 {
        drop(write_end);
        // The child writes "ok PID\n" once it collects (and keeps running), or
        // its error and exits.
        let mut answer = String::new();
        let mut reader = std::io::BufReader::new(std::fs::File::from(read_end));
        let _ = reader.read_line(&mut answer);
        if !answer.starts_with("ok ") {
            let _ = reader.read_to_string(&mut answer);
        }
        return match answer.strip_prefix("ok ") {
            Some(pid) => {
                println!("openmosixcollector started (PID {})", pid.trim());
                Ok(())
            }
            None if answer.is_empty() => bail!(
                "the daemon exited during start-up (see {})",
                cli.log_file.display()
            ),
            None => bail!("{}", answer.trim()),
        };
    }
    drop(read_end);
    let mut report = std::fs::File::from(write_end);
    let result = daemon_child(cli, settings, &mut report);
    if let Err(e) = &result {
        let _ = write!(report, "{e:#}");
    }
    std::process::exit(i32::from(result.is_err()));
}

fn daemon_child(cli: &Cli, settings: Settings, report: &mut std::fs::File) -> anyhow::Result<()> {
    // SAFETY: setsid has no preconditions; we are a fresh child, not a group leader.
    unsafe { libc::setsid() };
    std::env::set_current_dir("/").context("chdir /")?;
    let log = open_log(&cli.log_file)?;
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors of this process.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&devnull), fd) };
    }
    hpc::logging::init_file("info,russh=warn,sqlx=warn", log);
    let pid = PidFile::acquire(&cli.pid_file)?;
    let result = serve(settings, cli, || {
        let _ = writeln!(report, "ok {}", std::process::id());
        let _ = report.flush();
    });
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    drop(pid);
    result
}

/// Opens the daemon's log for appending: 0640, in a directory only root writes.
fn open_log(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// `-k`: SIGTERM to the PID-file holder, then wait until it let go.
fn stop(pid_file: &Path) -> anyhow::Result<()> {
    let Some(pid) = pidfile::running(pid_file) else {
        bail!(
            "openmosixcollector is not running (no live PID in {})",
            pid_file.display()
        );
    };
    // SAFETY: kill has no memory-safety preconditions; the PID holds our PID file's lock.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        bail!("stopping PID {pid}: {}", std::io::Error::last_os_error());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if pidfile::running(pid_file).is_none() && !alive(pid) {
            println!("openmosixcollector stopped (PID {pid})");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("PID {pid} did not stop within 30 s")
}

/// Whether `pid` still runs (a zombie no longer does).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// `-n`, `-r`, `--status`: one request to the running collector.
fn ask(socket: &Path, request: Request) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let reply = rt.block_on(control::send(socket, &request, Duration::from_secs(60)))?;
    if !reply.ok {
        bail!("{}", reply.message);
    }
    println!("{}", reply.message);
    Ok(())
}
