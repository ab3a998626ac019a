//! The shared core of openMosixview: the cluster data model ([`model`]), the
//! setpe-format cluster map ([`map`]), the newline-delimited JSON-RPC wire
//! protocol spoken on the agent's `openmosix` SSH subsystem ([`protocol`],
//! [`framing`]), well-known paths and ports ([`paths`]), our daemons' Unix
//! sockets ([`unix_socket`]), the user database ([`users`]), terminal names
//! ([`tty`]), CPU affinity
//! ([`affinity`]), memory cgroups ([`memcg`]) and the async client that the
//! CLIs, the collector and the app use to talk to agents ([`client`]).
//!
//! The crate is named after openMosix's `/proc/hpc`, the tree our agent serves.

pub mod affinity;
pub mod client;
pub mod clock;
pub mod framing;
pub mod logging;
pub mod map;
pub mod memcg;
pub mod model;
pub mod paths;
pub mod protocol;
pub mod tty;
pub mod unix_socket;
pub mod users;
