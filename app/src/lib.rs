//! `openmosixview`, the desktop app: the main node view, node configuration,
//! advanced execution, the process box with the migrator and the remote
//! processes window, on the [`viewer`] core (shared context, cluster state,
//! network side, window trait). The app keeps the list of open windows.

pub mod app;
pub mod balance;
pub mod settings;
pub mod standalone;
pub mod views;

pub use app::OpenMosixView;
