//! What a user can do to one process, the same from every view that offers
//! it (the migrator's buttons, migmon's drag, double-click and menu): each
//! action is one [`Command`] to the node that lists the process.

use hpc::model::NodeId;
use serde_json::Value;

use crate::net::Command;

/// One action on a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessAction {
    /// Migrate to this node.
    MoveTo(NodeId),
    /// Migrate home.
    Home,
    /// Migrate to the least loaded node that has room.
    Best,
    /// Lock to its node (`true`) or unlock.
    Lock(bool),
    /// SIGSTOP.
    Stop,
    /// SIGCONT.
    Cont,
    /// SIGKILL.
    Kill,
}

impl ProcessAction {
    /// The words on its button or menu entry.
    pub fn label(&self) -> String {
        match self {
            ProcessAction::MoveTo(n) => format!("migrate to node {n}"),
            ProcessAction::Home => "home".into(),
            ProcessAction::Best => "best".into(),
            ProcessAction::Lock(true) => "lock".into(),
            ProcessAction::Lock(false) => "unlock".into(),
            ProcessAction::Stop => "SIGSTOP".into(),
            ProcessAction::Cont => "SIGCONT".into(),
            ProcessAction::Kill => "kill".into(),
        }
    }

    /// The command that carries it out on the process `pid` of `node`.
    pub fn command(&self, node: NodeId, pid: i32) -> Command {
        let migrate = |to: String| Command::Migrate { node, pid, to };
        let signal = |s: &str| Command::Signal {
            node,
            pid,
            signal: s.into(),
        };
        match self {
            ProcessAction::MoveTo(n) => migrate(n.to_string()),
            ProcessAction::Home => migrate("home".into()),
            ProcessAction::Best => migrate("balance".into()),
            ProcessAction::Lock(on) => Command::ProcWrite {
                node,
                pid,
                field: "lock".into(),
                value: Value::from(u8::from(*on)),
            },
            ProcessAction::Stop => signal("STOP"),
            ProcessAction::Cont => signal("CONT"),
            ProcessAction::Kill => signal("KILL"),
        }
    }
}
