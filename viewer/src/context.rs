//! The context every view gets each frame: the cluster state to read, the way
//! to ask the network side for something, and the task runner for a view's
//! own slow work.

use crate::actions::ProcessAction;
use crate::net::{Backend, Command};
use crate::state::{ClusterState, identity};
use crate::tasks::Tasks;

/// Shared by all views.
pub struct ViewerContext {
    /// What is known about the cluster.
    pub state: ClusterState,
    backend: Option<Backend>,
    tasks: Option<Tasks>,
    /// Commands issued while no backend is attached (benchmarks, offline views).
    pub outbox: Vec<Command>,
}

impl ViewerContext {
    /// A context talking to `backend`; views' work runs on its runtime.
    pub fn new(backend: Backend) -> Self {
        let tasks = Some(backend.tasks());
        Self {
            state: ClusterState::default(),
            backend: Some(backend),
            tasks,
            outbox: Vec::new(),
        }
    }

    /// A context with no network side: commands collect in
    /// [`ViewerContext::outbox`]; views' work runs on `tasks`, if given.
    pub fn detached(state: ClusterState, tasks: Option<Tasks>) -> Self {
        Self {
            state,
            backend: None,
            tasks,
            outbox: Vec::new(),
        }
    }

    /// Asks the network side for something (never blocks).
    pub fn send(&mut self, command: Command) {
        if let Command::Migrate { node, pid, to } = &command {
            let (identity, bytes) = self
                .state
                .processes
                .get(node)
                .and_then(|t| t.get(pid))
                .map_or(((*node, *pid), 0), |p| (identity(*node, p), p.rss));
            self.state.moves.begin(*node, *pid, identity, to, bytes);
        }
        match &self.backend {
            Some(b) => b.send(command),
            None => self.outbox.push(command),
        }
    }

    /// Carries out `action` on the process `pid` that `node` lists.
    pub fn act(&mut self, node: hpc::model::NodeId, pid: i32, action: ProcessAction) {
        self.send(action.command(node, pid));
    }

    /// The runner for views' slow work (None in a context built without one).
    pub fn tasks(&self) -> Option<&Tasks> {
        self.tasks.as_ref()
    }

    /// Applies every queued event; true when something arrived.
    pub fn drain_events(&mut self) -> bool {
        let Some(backend) = &self.backend else {
            return false;
        };
        let mut any = false;
        while let Some(event) = backend.try_recv() {
            self.state.apply(event);
            any = true;
        }
        any
    }
}
