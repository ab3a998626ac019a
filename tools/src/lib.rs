//! The openMosix userland tools, rebuilt as clients of `openmosixd`: `mosctl`,
//! `migrate`, `mosrun` (and its wrappers, as links to it), `mps` and
//! `openmosix-lab` (an N-node cluster on one machine). This library holds what
//! the tools share: connection options, exit codes, `mosrun`'s and `mps`'s
//! command lines and text rendering.

pub mod connect;
pub mod mosrun_args;
pub mod ps_args;
pub mod ps_table;
pub mod render;
