//! The openMosix load-balancing policy, with no I/O: given what a node knows
//! (its own load, its peers' gossiped loads, its migratable processes and
//! what its past moves cost), it decides whether to move one process and
//! where. The agent drives it with its snapshots and gossip; the simulator
//! drives the very same code with simulated nodes.
//!
//! - [`load`]: the speed-normalised load figure and what one process adds;
//! - [`cost`]: the migration cost, learnt from the node's own moves;
//! - [`policy`]: the decision (age gate, two random choices, stability
//!   margin, one move at a time);
//! - [`placement`]: where a new process starts (a few peers asked for their
//!   load now, the fastest if it gains more than the move costs);
//! - [`memory`]: memory ushering (a node short of memory moves a process
//!   out to a node with room before the kernel's OOM killer acts);
//! - [`sent`]: what this node sent since its gossip was fresh;
//! - [`rng`]: a small seeded random source, so that runs can be replayed.

pub mod cost;
pub mod load;
pub mod memory;
pub mod placement;
pub mod policy;
pub mod rng;
pub mod sent;

pub use cost::CostModel;
pub use placement::Placement;
pub use policy::{Candidate, Decision, NodeView, Policy, Settings};
pub use rng::Rng;
pub use sent::Sent;
