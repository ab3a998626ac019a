//! The cluster history as a library: one node's figures at one instant
//! ([`sample`]), what a tick adds ([`events`]), the compact encoding of both
//! ([`codec`]), the store that writes a history into SQLite or PostgreSQL and
//! closes it into archives ([`store`]), and the query library the analyzer and
//! the process history read ([`query`]). The collector daemon writes through
//! it; the app reads through it without compiling the daemon.

pub mod codec;
pub mod events;
pub mod overview;
pub mod query;
pub mod remote;
pub mod sample;
pub mod store;
pub mod summary;
