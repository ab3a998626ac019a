//! The context every view gets: the cluster state to read and the way to ask
//! the network side for something.

use crate::net::{Backend, Command};
use crate::state::ClusterState;

/// Shared by all views.
pub struct AppContext {
    /// What is known about the cluster.
    pub state: ClusterState,
    backend: Option<Backend>,
    /// Commands issued while no backend is attached (benchmarks, offline views).
    pub outbox: Vec<Command>,
}

impl AppContext {
    /// A context talking to `backend`.
    pub fn new(backend: Backend) -> Self {
        Self {
            state: ClusterState::default(),
            backend: Some(backend),
            outbox: Vec::new(),
        }
    }

    /// A context with no network side: commands collect in [`AppContext::outbox`].
    pub fn detached(state: ClusterState) -> Self {
        Self {
            state,
            backend: None,
            outbox: Vec::new(),
        }
    }

    /// Asks the network side for something (never blocks).
    pub fn send(&mut self, command: Command) {
        match &self.backend {
            Some(b) => b.send(command),
            None => self.outbox.push(command),
        }
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
