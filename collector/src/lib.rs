//! `openmosixcollector`, the cluster history daemon (`-d|-k|-n|-r`), and its
//! store: every node's load, memory and status per tick plus the process
//! history of every node, kept in SQLite by default or PostgreSQL for large
//! sites, and the query library the analyzer and history views read.
//!
//! Not built yet: this crate is a placeholder until the collector issue lands.
