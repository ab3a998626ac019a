//! openMosixmigmon as a window of openmosixview, on the [`viewer`] core: the
//! main node's penguin in the middle and the other nodes as penguins on a
//! circle around it ([`penguin`]); the main node's processes as squares on
//! rings around the penguin that runs them, green with a line home when away
//! ([`layout`]); moves glide, whoever made them ([`motion`]); drag a square
//! onto a penguin to migrate it, double-click a remote one to send it home,
//! right-click for the rest ([`window`]). Every action is a
//! [`viewer::actions::ProcessAction`], sent as the migrator sends it.

pub mod layout;
pub mod motion;
pub mod paint;
pub mod penguin;
pub mod picture;
pub mod window;

pub use window::Migmon;
