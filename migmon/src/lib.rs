//! openMosixmigmon as a window of openmosixview, on the [`viewer`] core: the
//! nodes as penguins sitting in a circle ([`penguin`]), the main node's
//! processes as squares around it and the processes that left it as green
//! squares around the penguin they run on, a line back home ([`layout`]);
//! drag a square onto a penguin to migrate the process there, double-click a
//! remote one to send it home ([`window`]). Every action goes through the
//! same [`viewer::net::Command`]s as the migrator.

pub mod layout;
pub mod penguin;
pub mod window;

pub use window::Migmon;
