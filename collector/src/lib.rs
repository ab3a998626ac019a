//! `openmosixcollector`, the cluster history daemon (`-d|-k|-n|-r`), and its
//! store: every node's load, memory and status per tick plus the process
//! history of every node, kept in SQLite by default or PostgreSQL for large
//! sites, and the query library the analyzer and history views read.
//!
//! Data flow: [`poller`] asks every agent for its status and process list each
//! tick → [`tracker`] turns process lists into start/move/end events →
//! [`daemon`] assembles a [`events::TickBatch`] → [`store::Store`] writes it in
//! one transaction ([`codec`] keeps it small) → [`query::History`] reads it back.
//! [`control`] and [`pidfile`] serve the `-k`/`-n`/`-r` command line.

pub mod codec;
pub mod control;
pub mod daemon;
pub mod events;
pub mod pidfile;
pub mod poller;
pub mod query;
pub mod sample;
pub mod store;
pub mod tracker;
