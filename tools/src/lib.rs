//! The openMosix userland tools, rebuilt as clients of `openmosixd`: `mosctl`
//! now; `migrate`, `mosrun` and its wrappers join with the migration engine.
//! This library holds what the tools share: connection options and exit codes.

pub mod connect;
