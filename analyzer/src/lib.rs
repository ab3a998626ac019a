//! The history views of openmosixview, on the [`viewer`] core: the load and
//! memory overviews with checkpoints, outages and the "find out" statistics
//! (openMosixanalyzer, [`analyzer_window`]), and the process history with its
//! time slider and each process's journey (openMosixhistory,
//! [`history_window`]). Every query runs on the app's runtime through
//! [`viewer::tasks::Tasks`]; the windows draw what has arrived.

pub mod analyzer_window;
pub mod chart;
pub mod history_window;
pub mod source;
pub mod time;

pub use analyzer_window::Analyzer;
pub use history_window::ProcessHistory;
pub use source::Source;
