//! The viewer core of openmosixview, shared by every view crate (the app's
//! own windows, the analyzer, migmon), in the manner of rerun's viewer
//! context:
//!
//! - [`ViewerContext`]: what every view gets each frame: the
//!   [`state::ClusterState`] to read, [`net::Command`]s to send, and
//!   [`tasks::Tasks`] to run its own slow work (history queries) off the UI
//!   thread.
//! - [`window::Window`]: the small trait a window implements (`key`, `title`,
//!   `ui`, what data it `needs`); the app keeps a list of open windows and
//!   what to fetch is a fold over them.
//! - [`net`]: the network side, a tokio runtime talking to the agents and the
//!   collector; the UI never waits on it.
//! - [`widgets`], [`notices`], [`screenshot`]: pieces the views share.

pub mod actions;
pub mod context;
pub mod moves;
pub mod net;
pub mod notices;
pub mod screenshot;
pub mod state;
pub mod tasks;
pub mod widgets;
pub mod window;

pub use context::ViewerContext;
pub use window::{Needs, Open, Scope, Window};
