//! The history views of openMosixview: the load and memory overviews with
//! checkpoints and per-node statistics (openMosixanalyzer), and the process
//! history with its time slider (openMosixhistory), drawn with egui_plot from
//! the collector's query library.
//!
//! Not built yet: this crate is a placeholder until the analyzer issue lands.
