//! `openmosixview`, the desktop app: the main node view, node configuration,
//! advanced execution, the process box with the migrator and the remote
//! processes window. Network work runs on a tokio runtime in [`net`]; the UI
//! reads [`state::ClusterState`] and sends [`net::Command`]s.

pub mod app;
pub mod balance;
pub mod context;
pub mod net;
pub mod screenshot;
pub mod settings;
pub mod state;
pub mod views;

pub use app::OpenMosixView;
