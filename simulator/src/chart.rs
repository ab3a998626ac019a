//! The bench's figures as a grouped bar chart, drawn into an RGB buffer
//! with the Hack font egui ships (rasterised by fontdue) and written as a
//! PNG: one group per cluster size, one bar per strategy, the mean slowdown
//! on a linear axis (bars beyond it are cut and carry their value), and the
//! target as a dashed line.

use std::io::Write;

/// One bar: its group (cluster size), series (strategy) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// The group's label.
    pub group: String,
    /// The series' index (colour, legend order).
    pub series: usize,
    /// The value.
    pub value: f64,
}

/// What to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Title line.
    pub title: String,
    /// Axis label.
    pub axis: String,
    /// The series' names, in legend order.
    pub series: Vec<String>,
    /// The bars, grouped in the order their groups first appear.
    pub bars: Vec<Bar>,
    /// Top of the axis.
    pub max: f64,
    /// A dashed reference line and its label.
    pub target: Option<(f64, String)>,
}

const W: usize = 1160;
const H: usize = 600;
const COLOURS: [[u8; 3]; 6] = [
    [150, 150, 150],
    [230, 159, 0],
    [240, 210, 120],
    [86, 180, 233],
    [0, 114, 178],
    [0, 158, 115],
];

/// Why a chart could not be written.
#[derive(Debug)]
pub enum ChartError {
    /// The font would not load.
    Font(&'static str),
    /// Encoding or writing the PNG failed.
    Png(String),
}

impl std::fmt::Display for ChartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Font(e) => write!(f, "font: {e}"),
            Self::Png(e) => write!(f, "png: {e}"),
        }
    }
}

impl std::error::Error for ChartError {}

struct Canvas {
    px: Vec<u8>,
    font: fontdue::Font,
}

impl Canvas {
    fn blend(&mut self, x: i64, y: i64, c: [u8; 3], a: f32) {
        if x < 0 || y < 0 || x >= W as i64 || y >= H as i64 {
            return;
        }
        let i = (y as usize * W + x as usize) * 3;
        if let Some(p) = self.px.get_mut(i..i + 3) {
            for (d, s) in p.iter_mut().zip(c) {
                *d = (f32::from(*d) * (1.0 - a) + f32::from(s) * a).round() as u8;
            }
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0.min(y1)..y0.max(y1) {
            for x in x0.min(x1)..x0.max(x1) {
                self.blend(x, y, c, 1.0);
            }
        }
    }

    /// Text with its left end at `x` and its baseline at `y`; returns its width.
    fn text(&mut self, x: i64, y: i64, size: f32, s: &str, c: [u8; 3]) -> i64 {
        let mut pen = x as f32;
        for ch in s.chars() {
            let (m, bitmap) = self.font.rasterize(ch, size);
            let left = pen as i64 + i64::from(m.xmin);
            let top = y - i64::from(m.height as i32 + m.ymin);
            for (i, a) in bitmap.iter().enumerate() {
                let (bx, by) = ((i % m.width.max(1)) as i64, (i / m.width.max(1)) as i64);
                self.blend(left + bx, top + by, c, f32::from(*a) / 255.0);
            }
            pen += m.advance_width;
        }
        (pen - x as f32).round() as i64
    }

    fn text_width(&self, size: f32, s: &str) -> i64 {
        s.chars()
            .map(|ch| self.font.metrics(ch, size).advance_width)
            .sum::<f32>()
            .round() as i64
    }
}

/// Draws `chart` and writes it to `out` as a PNG.
pub fn write_png(chart: &Chart, out: impl Write) -> Result<(), ChartError> {
    let font = fontdue::Font::from_bytes(
        epaint_default_fonts::HACK_REGULAR,
        fontdue::FontSettings::default(),
    )
    .map_err(ChartError::Font)?;
    let mut cv = Canvas {
        px: vec![255; W * H * 3],
        font,
    };
    let ink = [30, 30, 30];
    let grid = [225, 225, 225];
    let (left, right, top, bottom) = (80i64, W as i64 - 250, 60i64, H as i64 - 70);
    cv.text(left, 32, 18.0, &chart.title, ink);
    let y_of = |v: f64| bottom - ((v.min(chart.max) / chart.max) * (bottom - top) as f64) as i64;
    // Grid and axis numbers.
    let step = if chart.max > 6.0 { 1.0 } else { 0.5 };
    let mut v = 0.0;
    while v <= chart.max + 1e-9 {
        let y = y_of(v);
        cv.rect(left, y, right, y + 1, grid);
        let label = format!("{v:.1}");
        let w = cv.text_width(13.0, &label);
        cv.text(left - 8 - w, y + 5, 13.0, &label, ink);
        v += step;
    }
    cv.rect(left, top, left + 1, bottom, ink);
    cv.rect(left, bottom, right, bottom + 1, ink);
    cv.text(10, top - 14, 13.0, &chart.axis, ink);
    // Groups.
    let mut groups: Vec<&str> = Vec::new();
    for b in &chart.bars {
        if !groups.contains(&b.group.as_str()) {
            groups.push(&b.group);
        }
    }
    let n = chart.series.len().max(1) as i64;
    let group_w = (right - left) / groups.len().max(1) as i64;
    let bar_w = (group_w - 40) / n;
    for (gi, g) in groups.iter().enumerate() {
        let gx = left + gi as i64 * group_w + 20;
        for b in chart.bars.iter().filter(|b| b.group == *g) {
            let x = gx + b.series as i64 * bar_w;
            let c = COLOURS
                .get(b.series % COLOURS.len())
                .copied()
                .unwrap_or(ink);
            let y = y_of(b.value);
            cv.rect(x + 2, y, x + bar_w - 2, bottom, c);
            let label = if b.value > chart.max {
                format!("{:.0}", b.value)
            } else {
                format!("{:.2}", b.value)
            };
            let w = cv.text_width(11.0, &label);
            cv.text(x + (bar_w - w) / 2, y - 4, 11.0, &label, ink);
        }
        let w = cv.text_width(15.0, g);
        cv.text(gx + (group_w - 40 - w) / 2, bottom + 24, 15.0, g, ink);
    }
    if let Some((t, label)) = &chart.target {
        let y = y_of(*t);
        let mut x = left;
        while x < right {
            cv.rect(x, y, (x + 8).min(right), y + 2, [200, 0, 0]);
            x += 14;
        }
        cv.text(right + 8, y + 5, 13.0, label, [200, 0, 0]);
    }
    // Legend.
    for (i, name) in chart.series.iter().enumerate() {
        let y = top + 20 + i as i64 * 26;
        let c = COLOURS.get(i % COLOURS.len()).copied().unwrap_or(ink);
        cv.rect(right + 10, y - 12, right + 26, y + 2, c);
        cv.text(right + 32, y, 13.0, name, ink);
    }
    let mut enc = png::Encoder::new(out, W as u32, H as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc
        .write_header()
        .map_err(|e| ChartError::Png(e.to_string()))?;
    w.write_image_data(&cv.px)
        .map_err(|e| ChartError::Png(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_a_png_of_its_size() {
        let chart = Chart {
            title: "t".into(),
            axis: "a".into(),
            series: vec!["one".into(), "two".into()],
            bars: vec![
                Bar {
                    group: "4".into(),
                    series: 0,
                    value: 1.5,
                },
                Bar {
                    group: "4".into(),
                    series: 1,
                    value: 9.0,
                },
            ],
            max: 4.0,
            target: Some((1.15, "target".into())),
        };
        let mut out = Vec::new();
        write_png(&chart, &mut out).unwrap();
        let info = png::Decoder::new(std::io::Cursor::new(out))
            .read_info()
            .unwrap()
            .info()
            .clone();
        assert_eq!((info.width, info.height), (W as u32, H as u32));
    }
}
