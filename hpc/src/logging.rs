//! Logging set-up shared by every binary: `tracing` to stderr (the journal under
//! systemd), filtered by `$OPENMOSIX_LOG` (e.g. `debug`, `agent=trace`).

/// Installs the stderr subscriber; `default` is the filter when `$OPENMOSIX_LOG` is unset.
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPENMOSIX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
