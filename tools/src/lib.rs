//! The openMosix userland tools, rebuilt as clients of `openmosixd`: `mosctl`,
//! and `openmosix-lab` (an N-node cluster on one machine); `migrate`, `mosrun`
//! and its wrappers join with the migration engine. This library holds what the
//! tools share: connection options, exit codes and text rendering.

pub mod connect;
pub mod render;
