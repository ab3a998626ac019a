//! `openmosixview`, the desktop app: the main node view, node configuration,
//! advanced execution, the process box with the migrator, and the analyzer,
//! history and migration-monitor views as tabs, talking to agents through the
//! `hpc` client on a tokio runtime.
//!
//! Not built yet: this crate is a placeholder until the app issue lands.
