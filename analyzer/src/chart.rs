//! One overview chart (load or memory): a line per node and one for the
//! cluster, red where the load is above [`HOT_LOAD`], checkpoints as blue
//! vertical lines, outages as shaded spans. The points are built once when
//! data arrives ([`ChartData::build`]), two per bucket (its min and max), so a
//! frame draws at most about two points per pixel column whatever the span.

use egui::{Color32, Id, Ui};
use egui_plot::{HoverPosition, Legend, Line, Plot, PlotPoint, PlotPoints, Span, VLine};
use history::overview::{Lines, Overview};
use history::query::Bucket;
use hpc::model::NodeId;

/// Load above which the original analyzer drew its lines red.
pub const HOT_LOAD: f64 = 75.0;
/// Checkpoints are blue.
pub const CHECKPOINT_BLUE: Color32 = Color32::from_rgb(40, 90, 230);
/// Red, for load above [`HOT_LOAD`].
pub const HOT_RED: Color32 = Color32::from_rgb(230, 30, 30);

/// Which chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// openMosix load.
    Load,
    /// Used memory in percent.
    Memory,
}

impl Kind {
    /// The chart's title.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Load => "load overview",
            Kind::Memory => "memory overview (used %)",
        }
    }

    fn buckets(self, l: &Lines) -> &[Bucket] {
        match self {
            Kind::Load => &l.load,
            Kind::Memory => &l.mem,
        }
    }
}

/// One line: its points and, for load, the runs above [`HOT_LOAD`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// The node (0 for the cluster).
    pub node: NodeId,
    /// Two points per bucket (min, max) at the bucket's middle; x in seconds.
    pub points: Vec<PlotPoint>,
    /// Contiguous runs of points above [`HOT_LOAD`] (drawn red over the line).
    pub hot: Vec<Vec<PlotPoint>>,
}

/// What one chart draws, built when data arrives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChartData {
    /// Which chart.
    pub kind: Option<Kind>,
    /// One per node, in node order.
    pub nodes: Vec<Series>,
    /// The cluster's line.
    pub cluster: Series,
    /// Checkpoints: (x in seconds, label).
    pub checkpoints: Vec<(f64, String)>,
    /// Outages: (node, from s, to s, reason).
    pub outages: Vec<(NodeId, f64, f64, String)>,
}

fn series(node: NodeId, buckets: &[Bucket], bucket_ms: i64, hot: bool) -> Series {
    let mut points = Vec::with_capacity(buckets.len() * 2);
    let mut runs: Vec<Vec<PlotPoint>> = Vec::new();
    let mut run: Vec<PlotPoint> = Vec::new();
    for b in buckets {
        let x = (b.t_ms + bucket_ms / 2) as f64 / 1000.0;
        let pair = [PlotPoint::new(x, b.stat.min), PlotPoint::new(x, b.stat.max)];
        let n = if b.stat.min == b.stat.max { 1 } else { 2 };
        points.extend_from_slice(pair.get(..n).unwrap_or(&[]));
        if hot && b.stat.max > HOT_LOAD {
            run.extend(pair.iter().take(n).filter(|p| p.y > HOT_LOAD).copied());
        } else if !run.is_empty() {
            runs.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    Series {
        node,
        points,
        hot: runs,
    }
}

impl ChartData {
    /// The chart of `kind` over `ov`.
    pub fn build(ov: &Overview, kind: Kind) -> Self {
        let hot = kind == Kind::Load;
        Self {
            kind: Some(kind),
            nodes: ov
                .nodes
                .iter()
                .map(|(n, l)| series(*n, kind.buckets(l), ov.bucket_ms, hot))
                .collect(),
            cluster: series(0, kind.buckets(&ov.cluster), ov.bucket_ms, hot),
            checkpoints: ov
                .checkpoints
                .iter()
                .map(|c| (c.t_ms as f64 / 1000.0, c.label.clone()))
                .collect(),
            outages: ov
                .outages
                .iter()
                .map(|o| {
                    (
                        o.node,
                        o.from_ms as f64 / 1000.0,
                        o.to_ms as f64 / 1000.0,
                        o.reason.clone(),
                    )
                })
                .collect(),
        }
    }
}

/// A node's colour: a fixed palette, so a node keeps its colour in every chart.
pub fn node_color(node: NodeId) -> Color32 {
    const PALETTE: [Color32; 8] = [
        Color32::from_rgb(31, 119, 180),
        Color32::from_rgb(44, 160, 44),
        Color32::from_rgb(148, 103, 189),
        Color32::from_rgb(255, 127, 14),
        Color32::from_rgb(23, 190, 207),
        Color32::from_rgb(140, 86, 75),
        Color32::from_rgb(188, 189, 34),
        Color32::from_rgb(227, 119, 194),
    ];
    PALETTE
        .get(node as usize % PALETTE.len())
        .copied()
        .unwrap_or(Color32::GRAY)
}

/// What the user did to a chart this frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shown {
    /// The x range shown (ms).
    pub x_ms: (i64, i64),
    /// Whether the user dragged, zoomed or reset it.
    pub moved: bool,
}

/// Draws `data`; `reset` sets the x range to `range_ms` (new data of another
/// span). Charts of the same `link` group pan and zoom together.
pub fn chart_ui(
    ui: &mut Ui,
    data: &ChartData,
    link: Id,
    height: f32,
    reset: Option<(i64, i64)>,
) -> Shown {
    let kind = data.kind.unwrap_or(Kind::Load);
    let id = ui.scope_id().with(kind.title());
    let mut plot = Plot::new(id)
        .height(height)
        .legend(Legend::default())
        .link_axis(link, [true, false])
        .link_cursor(link, [true, false])
        .allow_scroll([true, false])
        .allow_zoom([true, false])
        .allow_drag([true, false])
        .include_y(0.0)
        .x_axis_formatter(|mark, range| {
            let span = ((range.end() - range.start()) * 1000.0) as i64;
            crate::time::axis_label((mark.value * 1000.0) as i64, span)
        })
        .label_formatter(|hover| {
            let (name, at) = match hover {
                HoverPosition::NearDataPoint {
                    plot_name,
                    position,
                    ..
                } => (*plot_name, position),
                HoverPosition::Elsewhere { position } => ("", position),
            };
            let t = crate::time::datetime((at.x * 1000.0) as i64);
            Some(if name.is_empty() {
                format!("{t}\n{:.1}", at.y)
            } else {
                format!("{name}\n{t}\n{:.1}", at.y)
            })
        });
    if kind == Kind::Memory {
        plot = plot.include_y(100.0);
    }
    let response = plot.show(ui, |p| {
        if let Some((a, b)) = reset {
            p.set_plot_bounds_x(a as f64 / 1000.0..=b as f64 / 1000.0);
        }
        for (node, from, to, reason) in &data.outages {
            p.span(
                Span::new(format!("node {node} down: {reason}"), *from..=*to)
                    .fill(Color32::from_rgba_unmultiplied(200, 60, 60, 24)),
            );
        }
        for s in &data.nodes {
            p.line(
                Line::new(format!("node {}", s.node), PlotPoints::Borrowed(&s.points))
                    .color(node_color(s.node)),
            );
        }
        p.line(
            Line::new("cluster", PlotPoints::Borrowed(&data.cluster.points))
                .color(Color32::from_gray(60))
                .width(2.0),
        );
        for s in data.nodes.iter().chain(std::iter::once(&data.cluster)) {
            for run in &s.hot {
                p.line(
                    Line::new("load above 75", PlotPoints::Borrowed(run))
                        .color(HOT_RED)
                        .width(2.0),
                );
            }
        }
        for (x, label) in &data.checkpoints {
            p.vline(
                VLine::new(format!("checkpoint: {label}"), *x)
                    .color(CHECKPOINT_BLUE)
                    .width(1.5),
            );
        }
        p.plot_bounds()
    });
    let bounds = response.inner;
    let r = &response.response;
    Shown {
        x_ms: (
            (bounds.min()[0] * 1000.0) as i64,
            (bounds.max()[0] * 1000.0) as i64,
        ),
        moved: r.dragged()
            || r.double_clicked()
            || (r.hovered()
                && ui
                    .input(|i| i.smooth_scroll_delta != egui::Vec2::ZERO || i.zoom_delta() != 1.0)),
    }
}
