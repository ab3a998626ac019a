//! The Collector menu: runs `openmosixcollector` with `-d`, `-k`, `-n`, `-r`
//! or `--status`, exactly as an admin would in a shell.

use std::time::Duration;

/// One collector action.
#[derive(Debug, Clone, PartialEq)]
pub enum CollectorAction {
    /// `-d` plus the configured start arguments.
    Start,
    /// `-k`.
    Stop,
    /// `-n LABEL`.
    Checkpoint(String),
    /// `-r`.
    NewHistory,
    /// `--status`.
    Status,
}

impl CollectorAction {
    /// The command-line arguments.
    pub fn args(&self, start_args: &[String]) -> Vec<String> {
        match self {
            CollectorAction::Start => {
                let mut a = vec!["-d".to_string()];
                a.extend(start_args.iter().cloned());
                a
            }
            CollectorAction::Stop => vec!["-k".into()],
            CollectorAction::Checkpoint(label) if label.trim().is_empty() => vec!["-n".into()],
            CollectorAction::Checkpoint(label) => vec!["-n".into(), label.trim().to_string()],
            CollectorAction::NewHistory => vec!["-r".into()],
            CollectorAction::Status => vec!["--status".into()],
        }
    }

    /// What it does, for a person.
    pub fn describe(&self) -> &'static str {
        match self {
            CollectorAction::Start => "start the collector",
            CollectorAction::Stop => "stop the collector",
            CollectorAction::Checkpoint(_) => "write a checkpoint",
            CollectorAction::NewHistory => "start a new history",
            CollectorAction::Status => "collector status",
        }
    }
}

/// Runs the collector's command line; Ok with its output, or why it failed.
pub async fn run(program: &str, args: &[String]) -> Result<String, String> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .map_err(|_| format!("{program} did not finish within 60 s"))?
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    if out.status.success() {
        Ok(if stdout.is_empty() {
            "done".into()
        } else {
            stdout
        })
    } else if stderr.is_empty() {
        Err(format!("{program} failed ({})", out.status))
    } else {
        Err(stderr)
    }
}
