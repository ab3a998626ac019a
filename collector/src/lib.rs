//! `openmosixcollector`, the cluster history daemon (`-d|-k|-n|-r`): every
//! node's load, memory and status per tick plus the process history of every
//! node, written through the [`history`] library (SQLite by default,
//! PostgreSQL for large sites).
//!
//! Data flow: [`poller`] asks every agent for its status and process list each
//! tick → [`tracker`] turns process lists into start/move/end events →
//! [`daemon`] assembles a [`history::events::TickBatch`] →
//! [`history::store::Store`] writes it in one transaction →
//! [`history::query::History`] reads it back. [`control`] and [`pidfile`]
//! serve the `-k`/`-n`/`-r` command line; [`query_socket`] answers history
//! queries for local users in the reader group.

pub mod control;
pub mod daemon;
pub mod pidfile;
pub mod poller;
pub mod query_socket;
pub mod tracker;
