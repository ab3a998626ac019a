//! What a full-screen tool is to the loop that runs it (egui's demo idea of
//! a small window trait), and the loop itself: figures in over a channel,
//! keys in from the terminal, actions out over a channel. Terminals without
//! cursor control (or output that is not a terminal) get plain text frames.

use std::io::IsTerminal;
use std::sync::mpsc::{Receiver, RecvTimeoutError};

use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::feed::{self, Action, Update, Want};

/// What a key asks of the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Carry out this action (its outcome comes back as a notice).
    Act(Action),
    /// Leave.
    Quit,
}

/// A full-screen tool's state and views.
pub trait Screen {
    /// Takes in what the collection task sent.
    fn apply(&mut self, update: Update);
    /// Reacts to a key.
    fn on_key(&mut self, key: KeyEvent) -> Flow;
    /// Draws the whole screen; `color` is false on monochrome terminals.
    fn draw(&self, frame: &mut Frame<'_>, color: bool);
    /// The screen as plain text, for terminals without cursor control.
    fn plain(&self) -> String;
}

/// How the tool can show itself here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Full screen, with colours or without.
    Full { color: bool },
    /// Plain text frames, one after the other.
    Plain,
}

impl Display {
    /// Full screen on a terminal that moves its cursor (colours unless it
    /// has fewer than 8 or `NO_COLOR` is set); plain text otherwise.
    pub fn detect() -> Self {
        let term = std::env::var("TERM").unwrap_or_default();
        if !std::io::stdout().is_terminal() || term.is_empty() || term == "dumb" {
            return Self::Plain;
        }
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let colors = ratatui::crossterm::style::available_color_count();
        Self::Full {
            color: !no_color && colors >= 8,
        }
    }
}

/// Ctrl-C, as a key (raw mode delivers it as one).
fn interrupted(key: &KeyEvent) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c')
}

/// Runs `screen` full screen until it quits; the terminal is restored
/// however the loop ends (ratatui's hook restores it on a panic too).
pub fn run_full<S: Screen>(
    screen: &mut S,
    updates: &Receiver<Update>,
    actions: &UnboundedSender<Action>,
    color: bool,
) -> anyhow::Result<()> {
    let mut terminal = ratatui::init();
    let result = (|| -> anyhow::Result<()> {
        let mut dirty = true;
        loop {
            while let Ok(u) = updates.try_recv() {
                screen.apply(u);
                dirty = true;
            }
            if dirty {
                terminal.draw(|f| screen.draw(f, color))?;
                dirty = false;
            }
            if !event::poll(Duration::from_millis(100))? {
                continue;
            }
            match event::read()? {
                Event::Key(k) if k.kind == KeyEventKind::Press => {
                    if interrupted(&k) {
                        return Ok(());
                    }
                    match screen.on_key(k) {
                        Flow::Quit => return Ok(()),
                        Flow::Act(a) => {
                            let _ = actions.send(a);
                        }
                        Flow::Continue => {}
                    }
                    dirty = true;
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
    })();
    ratatui::restore();
    result
}

/// Prints `screen` as text after each update; `frames` of them (`None`:
/// until the agent's task ends or the output closes).
pub fn run_plain<S: Screen>(
    screen: &mut S,
    updates: &Receiver<Update>,
    frames: Option<u32>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut printed = 0;
    let mut out = std::io::stdout().lock();
    loop {
        match updates.recv_timeout(Duration::from_secs(30)) {
            Ok(u) => {
                let figures = matches!(u, Update::Figures { .. } | Update::Trouble(_));
                screen.apply(u);
                if !figures {
                    continue;
                }
            }
            Err(RecvTimeoutError::Timeout) => anyhow::bail!("no answer from the agent for 30 s"),
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        if printed > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{}", screen.plain())?;
        out.flush()?;
        printed += 1;
        if frames.is_some_and(|n| printed >= n) {
            return Ok(());
        }
    }
}

/// The seconds between updates asked for with `flag`, at least 0.1.
fn interval(secs: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| *d >= Duration::from_millis(100))
        .ok_or_else(|| anyhow::anyhow!("{flag} must be at least 0.1 seconds"))
}

/// How a tool was asked to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The agent to ask.
    pub node: tools::connect::NodeArgs,
    /// What to ask it for.
    pub want: Want,
    /// Seconds between updates, and the flag that set them (for errors).
    pub every: (f64, &'static str),
    /// Plain text frames even on a terminal.
    pub plain: bool,
    /// Plain text frames, this many, then exit.
    pub frames: Option<u32>,
}

/// Runs a tool: the collection task on a runtime of its own, and `screen`
/// full screen where the terminal can, else as plain text frames.
pub fn run<S: Screen>(screen: &mut S, o: RunOptions) -> anyhow::Result<()> {
    let every = interval(o.every.0, o.every.1)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (updates_tx, updates) = std::sync::mpsc::channel();
    // (A tokio channel: the UI thread sends without a runtime.)
    let (actions, actions_rx) = tokio::sync::mpsc::unbounded_channel();
    feed::start(&rt, o.node, o.want, every, updates_tx, actions_rx);
    match (o.plain || o.frames.is_some(), Display::detect()) {
        (false, Display::Full { color }) => run_full(screen, &updates, &actions, color),
        _ => run_plain(screen, &updates, o.frames),
    }
}

/// `screen` drawn on a `width` × `height` test terminal, as text.
#[cfg(test)]
pub(crate) fn drawn<S: Screen>(screen: &S, width: u16, height: u16) -> String {
    let backend = ratatui::backend::TestBackend::new(width, height);
    let mut terminal = ratatui::Terminal::new(backend).unwrap();
    terminal.draw(|f| screen.draw(f, true)).unwrap();
    terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect()
}
