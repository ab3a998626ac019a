//! The small drawings of migmon besides the penguins: squares, a migration's
//! progress ring, a refusal's mark.

use egui::epaint::PathStroke;
use egui::{Color32, Painter, Pos2, Rect, Shape, Stroke, vec2};

/// A process at home (the original's black squares, lightened for dark themes).
pub const AT_HOME: Color32 = Color32::from_rgb(70, 120, 220);
/// A process away from home.
pub const AWAY: Color32 = Color32::from_rgb(40, 180, 60);
/// A process that may not move.
pub const STUCK: Color32 = Color32::from_gray(125);
/// A refusal.
pub const REFUSED: Color32 = Color32::from_rgb(220, 50, 50);
/// A migration under way.
pub const MOVING: Color32 = Color32::from_rgb(250, 190, 40);

/// A ring around `center`: `fraction` of it (0..1) when the progress is
/// known, else a quarter turning with `t` seconds.
pub fn progress_ring(painter: &Painter, center: Pos2, radius: f32, fraction: Option<f32>, t: f32) {
    let (start, sweep) = match fraction {
        Some(f) => (-std::f32::consts::FRAC_PI_2, f.clamp(0.02, 1.0)),
        None => (t * std::f32::consts::TAU, 0.25),
    };
    let steps = ((sweep * 32.0).ceil() as usize).max(2);
    let points: Vec<Pos2> = (0..=steps)
        .map(|i| {
            let a = start + sweep * std::f32::consts::TAU * i as f32 / steps as f32;
            center + vec2(a.cos(), a.sin()) * radius
        })
        .collect();
    painter.circle_stroke(center, radius, Stroke::new(1.0, Color32::from_gray(90)));
    painter.add(Shape::line(points, PathStroke::new(2.5, MOVING)));
}

/// A red cross over `rect`.
pub fn refused_mark(painter: &Painter, rect: Rect) {
    let r = rect.expand(2.0);
    let stroke = Stroke::new(2.0, REFUSED);
    painter.line_segment([r.left_top(), r.right_bottom()], stroke);
    painter.line_segment([r.right_top(), r.left_bottom()], stroke);
}

/// A short form of `text` for a label on the picture.
pub fn short(text: &str, max: usize) -> String {
    let first = text.lines().next().unwrap_or_default();
    if first.chars().count() <= max {
        return first.to_string();
    }
    let mut s: String = first.chars().take(max.saturating_sub(3)).collect();
    s.push_str("...");
    s
}
