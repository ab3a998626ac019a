//! One overview chart (load or memory): a line per node and one for the
//! cluster, red where the load is above [`HOT_LOAD`], checkpoints as blue
//! vertical lines, outages as shaded spans. The points are built once when
//! data arrives ([`ChartData::build`]), two per bucket (its min and max), so a
//! frame draws at most about two points per pixel column whatever the span.
//!
//! With many nodes (more than [`DIRECT_POINTS`] points) the node lines are
//! drawn into an image once per view (span, size or data) and each frame
//! shows that image ([`ChartCache`]), so a frame's cost does not grow with the
//! number of nodes either; the cluster line, checkpoints and outages stay
//! plot items.

use std::sync::atomic::{AtomicU64, Ordering};

use egui::{Color32, ColorImage, Id, Pos2, Ui, Vec2};
use egui_plot::{
    HoverPosition, Legend, Line, Plot, PlotImage, PlotPoint, PlotPoints, PlotTransform, Span, VLine,
};
use history::overview::{Lines, Overview};
use history::query::Bucket;
use hpc::model::NodeId;

/// Load above which the original analyzer drew its lines red.
pub const HOT_LOAD: f64 = 75.0;
/// Checkpoints are blue.
pub const CHECKPOINT_BLUE: Color32 = Color32::from_rgb(40, 90, 230);
/// Red, for load above [`HOT_LOAD`].
pub const HOT_RED: Color32 = Color32::from_rgb(230, 30, 30);
/// Above this many points the node lines are drawn into an image.
pub const DIRECT_POINTS: usize = 40_000;

/// Numbers each [`ChartData`], so an image of an older one is not reused.
static VERSIONS: AtomicU64 = AtomicU64::new(1);

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
    /// Where a gap in the data starts a new piece (indices into `points`).
    pub breaks: Vec<usize>,
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
    /// Which data this is (for [`ChartCache`]).
    pub version: u64,
    /// The largest value drawn.
    pub y_max: f64,
    /// Points of every node line together.
    pub node_points: usize,
}

fn series(node: NodeId, buckets: &[Bucket], bucket_ms: i64, hot: bool) -> Series {
    let mut points = Vec::with_capacity(buckets.len() * 2);
    let mut breaks = Vec::new();
    let mut runs: Vec<Vec<PlotPoint>> = Vec::new();
    let mut run: Vec<PlotPoint> = Vec::new();
    // A gap of three usual steps (the node was down, or nothing recorded)
    // breaks the line rather than drawing across it.
    let usual = history::summary::median_gap(buckets.iter().map(|b| b.t_ms)).unwrap_or(bucket_ms);
    let gap = 3 * usual.max(bucket_ms);
    let mut last_t: Option<i64> = None;
    for b in buckets {
        if last_t.is_some_and(|t| b.t_ms - t > gap) {
            breaks.push(points.len());
            if !run.is_empty() {
                runs.push(std::mem::take(&mut run));
            }
        }
        last_t = Some(b.t_ms);
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
        breaks,
        hot: runs,
    }
}

impl Series {
    /// The points in pieces, split where the data has a gap.
    pub fn pieces(&self) -> impl Iterator<Item = &[PlotPoint]> {
        let mut bounds = vec![0];
        bounds.extend(self.breaks.iter().copied());
        bounds.push(self.points.len());
        let pts = &self.points;
        (0..bounds.len().saturating_sub(1)).filter_map(move |i| {
            let (a, b) = (*bounds.get(i)?, *bounds.get(i + 1)?);
            pts.get(a..b)
        })
    }
}

impl ChartData {
    /// The chart of `kind` over `ov`.
    pub fn build(ov: &Overview, kind: Kind) -> Self {
        let hot = kind == Kind::Load;
        let nodes: Vec<Series> = ov
            .nodes
            .iter()
            .map(|(n, l)| series(*n, kind.buckets(l), ov.bucket_ms, hot))
            .collect();
        let y_max = nodes
            .iter()
            .flat_map(|s| s.points.iter())
            .map(|p| p.y)
            .fold(0.0, f64::max);
        Self {
            kind: Some(kind),
            version: VERSIONS.fetch_add(1, Ordering::Relaxed),
            y_max,
            node_points: nodes.iter().map(|s| s.points.len()).sum(),
            nodes,
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

/// What a chart keeps between frames: the image of its node lines.
#[derive(Default)]
pub struct ChartCache {
    key: Option<RasterKey>,
    texture: Option<egui::TextureHandle>,
    /// How often the node lines were drawn into the image.
    pub redraws: u64,
}

/// The view an image was drawn for.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RasterKey {
    bounds: [f64; 4],
    size: [usize; 2],
    version: u64,
}

/// Draws `data`; `reset` sets the x range to `range_ms` (new data of another
/// span). Charts of the same `link` group pan and zoom together.
pub fn chart_ui(
    ui: &mut Ui,
    data: &ChartData,
    cache: &mut ChartCache,
    link: Id,
    height: f32,
    reset: Option<(i64, i64)>,
) -> Shown {
    let raster = data.node_points > DIRECT_POINTS;
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
            // The image of the lines is drawn for the bounds a frame shows:
            // the next frame has the new ones.
            p.ctx().request_repaint();
        }
        for (node, from, to, reason) in &data.outages {
            p.span(
                Span::new(format!("node {node} down: {reason}"), *from..=*to)
                    .fill(Color32::from_rgba_unmultiplied(200, 60, 60, 24)),
            );
        }
        if raster {
            p.set_plot_bounds_y(0.0..=(data.y_max * 1.05).max(1.0));
            raster_ui(p, data, cache);
        } else {
            for s in &data.nodes {
                for piece in s.pieces() {
                    p.line(
                        Line::new(format!("node {}", s.node), PlotPoints::Borrowed(piece))
                            .color(node_color(s.node)),
                    );
                }
            }
        }
        for piece in data.cluster.pieces() {
            p.line(
                Line::new("cluster", PlotPoints::Borrowed(piece))
                    .color(Color32::from_gray(60))
                    .width(2.0),
            );
        }
        let direct: &[Series] = if raster { &[] } else { &data.nodes };
        for s in direct.iter().chain(std::iter::once(&data.cluster)) {
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

/// Shows the node lines as an image, drawn again when the view changed.
fn raster_ui(p: &mut egui_plot::PlotUi<'_>, data: &ChartData, cache: &mut ChartCache) {
    let t = *p.transform();
    let frame = *t.frame();
    let b = t.bounds();
    let (min, max) = (b.min(), b.max());
    let ppp = p.ctx().pixels_per_point();
    let size = [
        (frame.width() * ppp).round().max(0.0) as usize,
        (frame.height() * ppp).round().max(0.0) as usize,
    ];
    let valid = size[0] > 0
        && size[1] > 0
        && min.iter().chain(max.iter()).all(|v| v.is_finite())
        && max[0] > min[0]
        && max[1] > min[1];
    if !valid {
        return;
    }
    let key = RasterKey {
        bounds: [min[0], min[1], max[0], max[1]],
        size,
        version: data.version,
    };
    // While the user drags, the image drawn for the old view moves with the
    // plot; it is drawn again for the new view once the drag ends.
    let dragging = p.response().dragged() && cache.texture.is_some();
    if cache.key != Some(key) && !dragging {
        let image = rasterize(data, &t, frame.min, size, ppp);
        match &mut cache.texture {
            Some(tex) => tex.set(image, egui::TextureOptions::LINEAR),
            None => {
                cache.texture = Some(p.ctx().load_texture(
                    "overview-lines",
                    image,
                    egui::TextureOptions::LINEAR,
                ))
            }
        }
        cache.key = Some(key);
        cache.redraws += 1;
    }
    if let (Some(tex), Some(drawn)) = (&cache.texture, cache.key) {
        let [x0, y0, x1, y1] = drawn.bounds;
        let center = PlotPoint::new((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        let size = Vec2::new((x1 - x0) as f32, (y1 - y0) as f32);
        p.image(
            PlotImage::new(
                format!("{} nodes", data.nodes.len()),
                tex.id(),
                center,
                size,
            )
            .allow_hover(false),
        );
    }
}

/// The node lines (and their runs above [`HOT_LOAD`]) drawn into an image of
/// `size` pixels covering the plot's frame.
fn rasterize(
    data: &ChartData,
    t: &PlotTransform,
    origin: Pos2,
    size: [usize; 2],
    ppp: f32,
) -> ColorImage {
    let [w, h] = size;
    let to_px = |pt: &PlotPoint| {
        let s = t.position_from_point(pt);
        ((s.x - origin.x) * ppp, (s.y - origin.y) * ppp)
    };
    let line = |pixels: &mut [Color32], pts: &[PlotPoint], color: Color32, thick: usize| {
        let mut prev: Option<(f32, f32)> = None;
        for pt in pts {
            let cur = to_px(pt);
            let from = prev.unwrap_or(cur);
            prev = Some(cur);
            // Only the part inside the image is drawn.
            if let Some((a, b)) = clip(from, cur, w as f32 - 0.001, h as f32 - 0.001) {
                segment(pixels, w, h, a, b, color, thick);
            }
        }
    };
    // The nodes in two halves on two threads, each into its own image; the
    // second half is laid over the first.
    let draw = |nodes: &[Series]| {
        let mut pixels = vec![Color32::TRANSPARENT; w * h];
        for s in nodes {
            for piece in s.pieces() {
                line(&mut pixels, piece, node_color(s.node), 1);
            }
        }
        pixels
    };
    let (first, second) = data.nodes.split_at(data.nodes.len() / 2);
    let (mut pixels, over) = std::thread::scope(|scope| {
        let other = scope.spawn(|| draw(second));
        let mine = draw(first);
        (mine, other.join().ok())
    });
    // Should the helper thread have panicked (a bug), its half is drawn here.
    let over = over.unwrap_or_else(|| draw(second));
    for (px, o) in pixels.iter_mut().zip(over) {
        if o != Color32::TRANSPARENT {
            *px = o;
        }
    }
    for s in &data.nodes {
        for run in &s.hot {
            line(&mut pixels, run, HOT_RED, 2);
        }
    }
    ColorImage::new(size, pixels)
}

/// Fills the pixels the segment `a`–`b` crosses, column by column (each
/// column from the segment's height at its left edge to its height at its
/// right edge, `thick` pixels down), so a steep segment costs its pixels and
/// no more.
fn segment(
    pixels: &mut [Color32],
    w: usize,
    h: usize,
    a: (f32, f32),
    b: (f32, f32),
    color: Color32,
    thick: usize,
) {
    let (a, b) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    let dx = b.0 - a.0;
    let y_at = |x: f32| {
        if dx < 1e-6 {
            a.1
        } else {
            a.1 + (x - a.0) / dx * (b.1 - a.1)
        }
    };
    let (first, last) = (a.0.max(0.0) as usize, (b.0.max(0.0) as usize).min(w - 1));
    for x in first..=last {
        let (l, r) = ((x as f32).max(a.0), ((x + 1) as f32).min(b.0));
        let (ya, yb) = if dx < 1e-6 {
            (a.1, b.1)
        } else {
            (y_at(l), y_at(r))
        };
        let top = ya.min(yb).max(0.0) as usize;
        let bottom = ((ya.max(yb).max(0.0) as usize) + thick - 1).min(h - 1);
        for y in top..=bottom {
            if let Some(px) = pixels.get_mut(y * w + x) {
                *px = color;
            }
        }
    }
}

/// The part of the segment `a`–`b` inside `[0, w] × [0, h]` (Liang–Barsky),
/// or None when it is all outside.
fn clip(a: (f32, f32), b: (f32, f32), w: f32, h: f32) -> Option<((f32, f32), (f32, f32))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f32, 1.0f32);
    for (p, q) in [(-dx, a.0), (dx, w - a.0), (-dy, a.1), (dy, h - a.1)] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    (t0 <= t1 && t0.is_finite() && t1.is_finite()).then_some((
        (a.0 + t0 * dx, a.1 + t0 * dy),
        (a.0 + t1 * dx, a.1 + t1 * dy),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_clipped_to_the_image() {
        assert_eq!(
            clip((-10.0, 5.0), (10.0, 5.0), 4.0, 8.0),
            Some(((0.0, 5.0), (4.0, 5.0)))
        );
        assert_eq!(clip((-1e12, 1.0), (-1e11, 2.0), 100.0, 100.0), None);
        assert_eq!(
            clip((1.0, 1.0), (2.0, 2.0), 4.0, 4.0),
            Some(((1.0, 1.0), (2.0, 2.0)))
        );
    }

    #[test]
    fn hot_runs_hold_only_points_above_75() {
        let b = |t, min, max| Bucket {
            t_ms: t,
            samples: 1,
            stat: history::query::Stat {
                min,
                max,
                avg: (min + max) / 2.0,
            },
        };
        let s = series(
            1,
            &[
                b(0, 10.0, 20.0),
                b(1000, 50.0, 90.0),
                b(2000, 80.0, 95.0),
                b(3000, 1.0, 2.0),
            ],
            1000,
            true,
        );
        assert_eq!(s.hot.len(), 1);
        assert!(s.hot[0].iter().all(|p| p.y > HOT_LOAD));
        assert_eq!(s.hot[0].len(), 3);
    }

    #[test]
    fn a_gap_in_the_data_breaks_the_line() {
        let b = |t| Bucket {
            t_ms: t,
            samples: 1,
            stat: history::query::Stat {
                min: 1.0,
                max: 1.0,
                avg: 1.0,
            },
        };
        let buckets: Vec<Bucket> = [0, 1000, 2000, 3000, 60_000, 61_000, 62_000]
            .into_iter()
            .map(b)
            .collect();
        let s = series(1, &buckets, 1000, false);
        let pieces: Vec<usize> = s.pieces().map(<[PlotPoint]>::len).collect();
        assert_eq!(pieces, [4, 3]);
    }
}
