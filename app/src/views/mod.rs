//! The app's own windows, one module per view or dialog. Each implements
//! [`viewer::Window`] (the main view and the cluster's process box are drawn
//! in the main window's tabs); views read [`viewer::ViewerContext`] and send
//! commands through it; the app keeps the list of open windows.

pub mod exec_dialog;
pub mod file_picker;
pub mod host_keys;
pub mod main_view;
pub mod migrator;
pub mod node_config;
pub mod process_box;
pub mod remote_procs;
