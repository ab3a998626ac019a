//! `openmosixd`, the openMosix node agent: samples the node from `/proc`, keeps
//! the openMosix admin state, gossips load with its peers and serves the
//! `/proc/hpc` view and actions as JSON-RPC over SSH. See `ARCHITECTURE.md`.

pub mod accept;
pub mod admission;
pub mod arrivals;
pub mod balancing;
pub mod classify;
pub mod cluster;
pub mod connection;
pub mod context;
pub mod criu;
pub mod deputy;
pub mod discovery;
pub mod fork_watch;
pub mod gossip_transport;
pub mod helpers;
pub mod image_space;
pub mod jobs;
pub mod keys;
pub mod load;
pub mod local_socket;
pub mod metrics;
pub mod migration;
pub mod move_log;
pub mod peers;
pub mod rpc;
pub mod sampler;
pub mod sampling;
pub mod server;
pub mod signals;
pub mod speed;
pub mod startup;
pub mod store;
pub mod users;
