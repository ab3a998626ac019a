//! A penguin drawn with egui shapes (our own drawing, no artwork copied): a
//! black body, a white belly, an orange beak and feet, tinted by the node's
//! state.

use egui::{Color32, Pos2, Shape, Stroke, vec2};

/// How a node is doing, for its penguin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mood {
    /// Up and taking guests.
    Up,
    /// Up but refusing arrivals (`block`).
    Blocking,
    /// Down: drawn grey.
    Down,
}

/// The shapes of a penguin of height `size` centred on `at`, added to
/// `out`; `busy` (0..=1) thickens and reddens a ring around it with the
/// node's load.
pub fn shapes(out: &mut Vec<Shape>, at: Pos2, size: f32, mood: Mood, busy: f32, selected: bool) {
    let (body, belly, beak) = match mood {
        Mood::Down => (
            Color32::from_gray(110),
            Color32::from_gray(170),
            Color32::from_gray(140),
        ),
        _ => (
            Color32::from_rgb(20, 20, 28),
            Color32::from_rgb(245, 245, 240),
            Color32::from_rgb(250, 165, 30),
        ),
    };
    let h = size;
    let w = size * 0.7;
    // Load ring.
    if mood != Mood::Down {
        let ring = Color32::from_rgb(
            (80.0 + 170.0 * busy.clamp(0.0, 1.0)) as u8,
            (180.0 - 120.0 * busy.clamp(0.0, 1.0)) as u8,
            60,
        );
        out.push(Shape::circle_stroke(
            at,
            h * 0.62,
            Stroke::new(2.0 + 3.0 * busy.clamp(0.0, 1.0), ring),
        ));
    }
    if selected {
        out.push(Shape::circle_stroke(
            at,
            h * 0.7,
            Stroke::new(2.0, Color32::from_rgb(60, 140, 255)),
        ));
    }
    // Feet, body, belly, head, eyes, beak.
    for dx in [-0.18, 0.18] {
        out.push(Shape::ellipse_filled(
            at + vec2(w * dx, h * 0.45),
            vec2(w * 0.16, h * 0.06),
            beak,
        ));
    }
    out.push(Shape::ellipse_filled(
        at + vec2(0.0, h * 0.08),
        vec2(w * 0.5, h * 0.4),
        body,
    ));
    out.push(Shape::ellipse_filled(
        at + vec2(0.0, h * 0.14),
        vec2(w * 0.34, h * 0.3),
        belly,
    ));
    out.push(Shape::circle_filled(
        at + vec2(0.0, -h * 0.3),
        w * 0.3,
        body,
    ));
    for dx in [-0.1, 0.1] {
        out.push(Shape::circle_filled(
            at + vec2(w * dx, -h * 0.33),
            w * 0.07,
            Color32::WHITE,
        ));
        out.push(Shape::circle_filled(
            at + vec2(w * dx, -h * 0.33),
            w * 0.035,
            Color32::BLACK,
        ));
    }
    out.push(Shape::convex_polygon(
        vec![
            at + vec2(-w * 0.08, -h * 0.25),
            at + vec2(w * 0.08, -h * 0.25),
            at + vec2(0.0, -h * 0.17),
        ],
        beak,
        Stroke::NONE,
    ));
    if mood == Mood::Blocking {
        out.push(Shape::line_segment(
            [at + vec2(-w * 0.55, -h * 0.5), at + vec2(w * 0.55, h * 0.5)],
            Stroke::new(3.0, Color32::from_rgb(210, 40, 40)),
        ));
    }
}
