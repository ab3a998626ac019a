//! The openMosix userland tools, rebuilt as clients of `openmosixd`: `mosctl`,
//! `migrate`, `mosrun` (and its wrappers, as links to it) and `openmosix-lab`
//! (an N-node cluster on one machine). This library holds what the tools share:
//! connection options, exit codes, `mosrun`'s command line and text rendering.

pub mod connect;
pub mod mosrun_args;
pub mod render;
