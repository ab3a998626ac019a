//! Logging set-up shared by every binary: `tracing` to stderr (the journal under
//! systemd) or to a log file, filtered by `$OPENMOSIX_LOG` (e.g. `debug`,
//! `agent=trace`).

use tracing_subscriber::EnvFilter;

fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env("OPENMOSIX_LOG").unwrap_or_else(|_| EnvFilter::new(default))
}

/// Installs the stderr subscriber; `default` is the filter when `$OPENMOSIX_LOG` is unset.
pub fn init(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(filter(default))
        .with_writer(std::io::stderr)
        .init();
}

/// Installs a subscriber that appends to `file` (no colours); `default` is the
/// filter when `$OPENMOSIX_LOG` is unset. For daemons that left their terminal.
pub fn init_file(default: &str, file: std::fs::File) {
    tracing_subscriber::fmt()
        .with_env_filter(filter(default))
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .init();
}
