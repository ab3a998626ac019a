//! One module per view or dialog. Views read [`crate::context::AppContext`]
//! and send commands through it; the app decides which windows are open.

pub mod exec_dialog;
pub mod file_picker;
pub mod host_keys;
pub mod main_view;
pub mod migrator;
pub mod node_config;
pub mod notices;
pub mod process_box;
pub mod remote_procs;
pub mod widgets;

/// Which nodes a dialog or view applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every node of the cluster.
    All,
    /// One node.
    Node(hpc::model::NodeId),
}

impl Scope {
    /// "all nodes" or "node N".
    pub fn label(&self) -> String {
        match self {
            Scope::All => "all nodes".into(),
            Scope::Node(n) => format!("node {n}"),
        }
    }
}

/// What a view asks the app to open.
#[derive(Debug, Clone, PartialEq)]
pub enum Open {
    /// The configuration dialog of a node or of all nodes.
    NodeConfig(Scope),
    /// The process box of a node (or of the cluster).
    ProcessBox(Scope),
    /// The migrator of a process, by identity (home node, PID at home).
    Migrator {
        /// Home node.
        home: hpc::model::NodeId,
        /// PID at home.
        home_pid: i32,
    },
    /// The guests running on a node.
    RemoteProcs(hpc::model::NodeId),
}
