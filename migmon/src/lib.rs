//! openMosixmigmon: nodes drawn as penguins in a circle, each node's processes
//! as squares around it, migrated ones green with a line home; drag a process
//! onto a penguin to migrate it, double-click to send it home.
//!
//! Not built yet: this crate is a placeholder until the migration monitor issue lands.
