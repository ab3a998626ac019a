//! `mosmon`: every node of the cluster as a vertical bar, live, with the
//! keys of openMosix's mosmon: `l` load, `s` speed (and CPUs), `m` memory
//! in use, `r` raw memory (not free at all), `u` utilisation, `t` the
//! cluster's totals, `d` dead nodes shown or hidden, arrows to scroll, `q`
//! to quit.

use hpc::model::{LOAD_UNIT, Liveness, NodeStatus};
use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Paragraph};

use crate::feed::Update;
use crate::screen::{Flow, Screen};

/// What the bars show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// openMosix load (100 = one standard CPU's worth of work).
    Load,
    /// Speed, with the CPU count.
    Speed,
    /// Memory in use (not available to new work), of the total.
    Memory,
    /// Memory not free at all (caches included), of the total.
    RawMemory,
    /// Utilisation: the share of time not stalled on memory.
    Util,
}

impl View {
    /// The view's name in the title.
    pub fn name(self) -> &'static str {
        match self {
            View::Load => "load",
            View::Speed => "speed",
            View::Memory => "memory in use",
            View::RawMemory => "raw memory in use",
            View::Util => "utilisation",
        }
    }
}

/// Width of one bar, in columns, and the gap after it.
const BAR_WIDTH: u16 = 8;
const BAR_GAP: u16 = 1;

/// `mosmon`'s state.
#[derive(Debug, Clone)]
pub struct Mosmon {
    /// What the bars show.
    pub view: View,
    /// Whether down nodes are shown (marked DOWN).
    pub show_dead: bool,
    /// Whether the totals line is shown.
    pub totals: bool,
    /// The first node shown (scrolled with the arrows).
    pub first: usize,
    nodes: Vec<NodeStatus>,
    trouble: Option<String>,
    waiting: bool,
}

impl Default for Mosmon {
    fn default() -> Self {
        Self {
            view: View::Load,
            show_dead: true,
            totals: false,
            first: 0,
            nodes: Vec::new(),
            trouble: None,
            waiting: true,
        }
    }
}

/// One bar: its node, its value on the view's scale, the text on it.
#[derive(Debug, Clone, PartialEq)]
pub struct BarFigure {
    /// Node id.
    pub node: u32,
    /// Whether the node is down.
    pub down: bool,
    /// Value (the bars share one scale).
    pub value: u64,
    /// The text on the bar.
    pub text: String,
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

impl Mosmon {
    /// The nodes shown, in id order.
    fn shown(&self) -> Vec<&NodeStatus> {
        let mut v: Vec<&NodeStatus> = self
            .nodes
            .iter()
            .filter(|n| self.show_dead || n.status == Liveness::Up)
            .collect();
        v.sort_by_key(|n| n.id);
        v
    }

    /// The bars of the nodes shown from [`Mosmon::first`] on, and the
    /// scale's top.
    pub fn bars(&self) -> (Vec<BarFigure>, u64) {
        let shown = self.shown();
        let figures: Vec<BarFigure> = shown
            .iter()
            .skip(self.first)
            .map(|n| {
                let down = n.status != Liveness::Up;
                let used = |free: u64| n.tmem.saturating_sub(free);
                let percent = |part: u64| part.saturating_mul(100).checked_div(n.tmem).unwrap_or(0);
                let (value, text) = match self.view {
                    View::Load => (u64::from(n.load), n.load.to_string()),
                    View::Speed if n.cpus > 1 => {
                        (u64::from(n.speed), format!("{}x{}", n.speed, n.cpus))
                    }
                    View::Speed => (u64::from(n.speed), n.speed.to_string()),
                    View::Memory => (percent(used(n.mem)), format!("{}M", mib(used(n.mem)))),
                    View::RawMemory => (percent(used(n.rmem)), format!("{}M", mib(used(n.rmem)))),
                    View::Util => (u64::from(n.util), format!("{}%", n.util)),
                };
                if down {
                    BarFigure {
                        node: n.id,
                        down,
                        value: 0,
                        text: "DOWN".into(),
                    }
                } else {
                    BarFigure {
                        node: n.id,
                        down,
                        value,
                        text,
                    }
                }
            })
            .collect();
        let top = match self.view {
            View::Load => figures
                .iter()
                .map(|b| b.value)
                .max()
                .unwrap_or(0)
                .max(u64::from(LOAD_UNIT)),
            View::Speed => figures.iter().map(|b| b.value).max().unwrap_or(1).max(1),
            View::Memory | View::RawMemory | View::Util => 100,
        };
        (figures, top)
    }

    /// The totals line (`t`).
    pub fn totals_line(&self) -> String {
        let up: Vec<&NodeStatus> = self
            .nodes
            .iter()
            .filter(|n| n.status == Liveness::Up)
            .collect();
        let cpus: u32 = up.iter().map(|n| n.cpus).sum();
        let load: u64 = up.iter().map(|n| u64::from(n.load)).sum();
        let free: u64 = up.iter().map(|n| n.mem).sum();
        let total: u64 = up.iter().map(|n| n.tmem).sum();
        format!(
            "{} of {} nodes up, {cpus} CPUs, total load {load}, memory {} of {} MiB available",
            up.len(),
            self.nodes.len(),
            mib(free),
            mib(total)
        )
    }

    fn title(&self) -> String {
        let scale = match self.view {
            View::Load => " (100 = one standard CPU busy)",
            View::Speed => " (10000 = the standard CPU)",
            _ => " (% of the node's)",
        };
        format!("mosmon: {}{scale}", self.view.name())
    }

    fn status_line(&self) -> Option<String> {
        if let Some(t) = &self.trouble {
            return Some(format!("{t} (last figures shown)"));
        }
        self.waiting.then(|| "asking the agent…".to_string())
    }
}

/// The keys, on the bottom line.
const KEYS: &str = "l load  s speed  m memory  r raw  u util  t totals  d dead  ←→ scroll  q quit";

impl Screen for Mosmon {
    fn apply(&mut self, update: Update) {
        match update {
            Update::Figures { nodes, .. } => {
                self.nodes = nodes;
                self.trouble = None;
                self.waiting = false;
                let n = self.shown().len();
                self.first = self.first.min(n.saturating_sub(1));
            }
            Update::Trouble(t) => {
                self.trouble = Some(t);
                self.waiting = false;
            }
            Update::Notice(_) => {}
        }
    }

    fn on_key(&mut self, key: KeyEvent) -> Flow {
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Flow::Quit,
            KeyCode::Char('l') => self.view = View::Load,
            KeyCode::Char('s') => self.view = View::Speed,
            KeyCode::Char('m') => self.view = View::Memory,
            KeyCode::Char('r') => self.view = View::RawMemory,
            KeyCode::Char('u') => self.view = View::Util,
            KeyCode::Char('t') => self.totals = !self.totals,
            KeyCode::Char('d') => {
                self.show_dead = !self.show_dead;
                self.first = 0;
            }
            KeyCode::Right | KeyCode::Down if self.first + 1 < self.shown().len() => {
                self.first += 1;
            }
            KeyCode::Left | KeyCode::Up => self.first = self.first.saturating_sub(1),
            KeyCode::Home => self.first = 0,
            _ => {}
        }
        Flow::Continue
    }

    fn draw(&self, frame: &mut Frame<'_>, color: bool) {
        let [head, chart, foot] = Layout::vertical([
            Constraint::Length(u16::from(self.totals || self.status_line().is_some())),
            Constraint::Min(4),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        let mut head_text = Vec::new();
        if self.totals {
            head_text.push(self.totals_line());
        }
        if let Some(s) = self.status_line() {
            head_text.push(s);
        }
        frame.render_widget(Paragraph::new(head_text.join("  |  ")), head);
        let (figures, top) = self.bars();
        let style_of = |b: &BarFigure| -> Style {
            match (color, b.down) {
                (true, true) => Style::new().fg(Color::Red),
                (true, false) if self.view == View::Load && b.value > u64::from(LOAD_UNIT) => {
                    Style::new().fg(Color::Yellow)
                }
                (true, false) => Style::new().fg(Color::Green),
                (false, true) => Style::new().add_modifier(Modifier::REVERSED),
                (false, false) => Style::new(),
            }
        };
        let bars: Vec<Bar> = figures
            .iter()
            .map(|b| {
                Bar::default()
                    .value(b.value)
                    // (A bar of 0 shows no text: a down node says so under it.)
                    .label(Line::from(if b.down {
                        format!("{} DOWN", b.node)
                    } else {
                        b.node.to_string()
                    }))
                    .text_value(b.text.clone())
                    .style(style_of(b))
                    .value_style(style_of(b).add_modifier(Modifier::REVERSED))
            })
            .collect();
        let shown = self.shown().len();
        let more = if self.first > 0 || figures.len() < shown {
            format!(" — nodes from {} of {shown} (←→)", self.first + 1)
        } else {
            String::new()
        };
        let chart_widget = BarChart::default()
            .block(Block::bordered().title(format!("{}{more}", self.title())))
            .data(BarGroup::default().bars(&bars))
            .bar_width(BAR_WIDTH)
            .bar_gap(BAR_GAP)
            .max(top);
        frame.render_widget(chart_widget, chart);
        frame.render_widget(Paragraph::new(KEYS), foot);
    }

    fn plain(&self) -> String {
        let (figures, top) = self.bars();
        let mut out = self.title();
        if let Some(s) = self.status_line() {
            out.push_str(&format!("\n{s}"));
        }
        if self.totals {
            out.push_str(&format!("\n{}", self.totals_line()));
        }
        const WIDTH: u64 = 40;
        for b in &figures {
            let filled = if b.down {
                0
            } else {
                (b.value.min(top) * WIDTH).checked_div(top).unwrap_or(0)
            };
            let bar: String = (0..WIDTH)
                .map(|i| if i < filled { '#' } else { '.' })
                .collect();
            out.push_str(&format!("\nnode {:>4} [{bar}] {}", b.node, b.text));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyModifiers;

    fn node(id: u32, up: bool, load: u32) -> NodeStatus {
        NodeStatus {
            id,
            name: format!("node{id}"),
            addr: String::new(),
            status: if up { Liveness::Up } else { Liveness::Down },
            cpus: 2,
            load,
            speed: 5000,
            util: 90,
            mem: 3 << 30,
            rmem: 1 << 30,
            tmem: 4 << 30,
            accepts: true,
            age_ms: 0,
            reason: None,
            migration: String::new(),
            host_key: String::new(),
        }
    }

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    fn with(nodes: Vec<NodeStatus>) -> Mosmon {
        let mut m = Mosmon::default();
        m.apply(Update::Figures {
            me: 1,
            nodes,
            processes: None,
        });
        m
    }

    #[test]
    fn keys_switch_the_view_and_down_nodes_are_marked_or_hidden() {
        let mut m = with(vec![
            node(2, true, 250),
            node(1, true, 40),
            node(3, false, 0),
        ]);
        let (bars, top) = m.bars();
        assert_eq!(bars.iter().map(|b| b.node).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!((bars[1].value, top), (250, 250));
        assert_eq!((bars[2].down, bars[2].text.as_str()), (true, "DOWN"));
        m.on_key(key('s'));
        assert_eq!(m.bars().0[0].text, "5000x2");
        m.on_key(key('m'));
        assert_eq!(
            (m.bars().0[0].value, m.bars().0[0].text.as_str()),
            (25, "1024M")
        );
        m.on_key(key('r'));
        assert_eq!(m.bars().0[0].value, 75);
        m.on_key(key('u'));
        assert_eq!(m.bars().0[0].text, "90%");
        m.on_key(key('d'));
        assert_eq!(m.bars().0.len(), 2, "dead nodes hidden");
        m.on_key(key('t'));
        assert!(
            m.plain().contains("2 of 3 nodes up, 4 CPUs"),
            "{}",
            m.plain()
        );
        assert_eq!(m.on_key(key('q')), Flow::Quit);
    }

    #[test]
    fn arrows_scroll_within_the_nodes_and_plain_text_draws_bars() {
        let mut m = with((1..=5).map(|i| node(i, true, i * 50)).collect());
        for _ in 0..9 {
            m.on_key(KeyEvent::new(KeyCode::Right, KeyModifiers::NONE));
        }
        assert_eq!(m.first, 4);
        assert_eq!(m.bars().0.len(), 1);
        m.on_key(KeyEvent::new(KeyCode::Left, KeyModifiers::NONE));
        assert_eq!(m.bars().0[0].node, 4);
        m.first = 0;
        let text = m.plain();
        // 250 is the top: node 5 full, node 1 a fifth.
        assert!(
            text.contains(&format!("node    5 [{}] 250", "#".repeat(40))),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "node    1 [{}{}] 50",
                "#".repeat(8),
                ".".repeat(32)
            )),
            "{text}"
        );
    }

    #[test]
    fn the_screen_draws_every_node_and_the_keys() {
        let m = with(vec![node(1, true, 40), node(2, false, 0)]);
        let text = crate::screen::drawn(&m, 80, 14);
        assert!(text.contains("mosmon: load"));
        assert!(text.contains("DOWN"));
        assert!(text.contains("2 DOWN"));
        assert!(text.contains("q quit"));
    }
}
