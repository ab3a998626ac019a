//! The window trait every view implements, in the spirit of egui_demo_lib's
//! `Demo`/`View`: a window names itself ([`Window::key`], [`Window::title`]),
//! draws its contents ([`Window::ui`]) and says what data it needs
//! ([`Window::needs`]). The app keeps the open ones in [`OpenWindows`]; what
//! the network side fetches is the fold of their needs, so a new view plugs in
//! without touching a central switch.

use std::collections::BTreeSet;

use egui::{Context, Id, Ui};
use hpc::model::NodeId;

use crate::context::ViewerContext;

/// Which nodes a dialog or view applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every node of the cluster.
    All,
    /// One node.
    Node(NodeId),
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

/// The data a view needs kept current.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// The process lists of every node.
    pub all_process_lists: bool,
    /// The process lists of these nodes.
    pub process_lists: BTreeSet<NodeId>,
}

impl Needs {
    /// Nothing beyond the cluster's figures, which everyone gets.
    pub fn nothing() -> Self {
        Self::default()
    }

    /// Every node's process list.
    pub fn all_processes() -> Self {
        Self {
            all_process_lists: true,
            ..Self::default()
        }
    }

    /// The process lists of `nodes`.
    pub fn processes_of(nodes: impl IntoIterator<Item = NodeId>) -> Self {
        Self {
            process_lists: nodes.into_iter().collect(),
            ..Self::default()
        }
    }

    /// What both need.
    pub fn union(mut self, other: Needs) -> Self {
        self.all_process_lists |= other.all_process_lists;
        self.process_lists.extend(other.process_lists);
        self
    }

    /// The nodes whose process lists are needed, given every known node.
    pub fn process_nodes(&self, known: impl IntoIterator<Item = NodeId>) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = if self.all_process_lists {
            known.into_iter().collect()
        } else {
            self.process_lists.iter().copied().collect()
        };
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }
}

/// A window of the app: a dialog, a process box, the analyzer...
pub trait Window {
    /// Its identity: opening a window whose key is already open brings that
    /// one to the front instead of opening a second.
    fn key(&self) -> Id;

    /// The title bar's text.
    fn title(&self) -> String;

    /// Size, position and resizability of its egui window.
    fn frame<'a>(&self, window: egui::Window<'a>) -> egui::Window<'a> {
        window
    }

    /// Draws its contents; returns what the user asked to open.
    fn ui(&mut self, ui: &mut Ui, vc: &mut ViewerContext) -> Vec<Open>;

    /// The data it needs kept current while open.
    fn needs(&self, _vc: &ViewerContext) -> Needs {
        Needs::nothing()
    }

    /// False once the window has finished its job and should close.
    fn keep_open(&self) -> bool {
        true
    }
}

/// What a view asks the app to open.
pub enum Open {
    /// A window (or the one with the same key, brought to the front).
    Window(Box<dyn Window>),
    /// The process box of the whole cluster (the main window's Processes tab).
    ClusterProcesses,
}

impl Open {
    /// Opens `window`.
    pub fn window(window: impl Window + 'static) -> Self {
        Open::Window(Box::new(window))
    }

    /// The key of the window it opens, if it opens one.
    pub fn key(&self) -> Option<Id> {
        match self {
            Open::Window(w) => Some(w.key()),
            Open::ClusterProcesses => None,
        }
    }
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Open::Window(w) => write!(f, "Open::Window({:?})", w.title()),
            Open::ClusterProcesses => write!(f, "Open::ClusterProcesses"),
        }
    }
}

/// The open windows, in the order they were opened.
#[derive(Default)]
pub struct OpenWindows {
    list: Vec<Box<dyn Window>>,
    /// Keys to bring to the front on the next frame.
    raise: Vec<Id>,
}

impl OpenWindows {
    /// Opens `window`, or brings the open one with its key to the front.
    pub fn open(&mut self, window: Box<dyn Window>) {
        let key = window.key();
        if !self.is_open(key) {
            self.list.push(window);
        }
        self.raise.push(key);
    }

    /// Whether a window with this key is open.
    pub fn is_open(&self, key: Id) -> bool {
        self.list.iter().any(|w| w.key() == key)
    }

    /// Closes the window with this key (if open).
    pub fn close(&mut self, key: Id) {
        self.list.retain(|w| w.key() != key);
    }

    /// Closes every window.
    pub fn close_all(&mut self) {
        self.list.clear();
    }

    /// The titles of the open windows, in opening order.
    pub fn titles(&self) -> Vec<String> {
        self.list.iter().map(|w| w.title()).collect()
    }

    /// How many are open.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Draws every open window; closes those the user closed; returns what
    /// they asked to open.
    pub fn show(&mut self, ctx: &Context, vc: &mut ViewerContext) -> Vec<Open> {
        let mut asked = Vec::new();
        for key in self.raise.drain(..) {
            ctx.move_to_top(egui::LayerId::new(egui::Order::Middle, key));
        }
        self.list.retain_mut(|w| {
            let mut open = true;
            let frame = egui::Window::new(w.title()).id(w.key()).open(&mut open);
            w.frame(frame).show(ctx, |ui| asked.extend(w.ui(ui, vc)));
            open && w.keep_open()
        });
        asked
    }

    /// What the open windows need, folded.
    pub fn needs(&self, vc: &ViewerContext) -> Needs {
        self.list
            .iter()
            .fold(Needs::nothing(), |all, w| all.union(w.needs(vc)))
    }
}
