//! A discrete-event simulation of an openMosix cluster: nodes of differing
//! speeds and CPU counts share their CPUs among their processes (processor
//! sharing); processes arrive unevenly across the nodes with heavy-tailed
//! (Pareto) CPU demands, some forking workers at once (multifibo-like); a
//! migration freezes a process for a time that grows with its size. The
//! balancer's own policy ([`balancer::Policy`]) decides the moves, from
//! gossip that is up to a second old, against baselines run on the same
//! workload: no balancing, placement only, and a global least-loaded choice
//! with fresh information.
//!
//! - [`workload`]: the nodes and the arrivals, from a seed;
//! - [`sim`]: the event loop and the strategies;
//! - [`report`]: slowdowns and migration counts;
//! - [`chart`]: the bench's figures as a bar chart (PNG).

pub mod chart;
pub mod report;
pub mod sim;
pub mod workload;

pub use report::Report;
pub use sim::{Strategy, run};
pub use workload::{Workload, WorkloadConfig};
