//! Small widgets shared by the views: the node lamp, percent bars and a
//! move's progress bar.

use egui::{Color32, Response, RichText, Sense, Ui, Vec2};
use hpc::protocol::{MigrationMode, MigrationReport, MovePhase, MoveProgress};

/// Red: frozen (the process runs nowhere).
const FROZEN: Color32 = Color32::from_rgb(200, 70, 50);
/// Amber: its memory still on the way (post-copy: it runs at the target).
const PULLING: Color32 = Color32::from_rgb(220, 160, 30);
/// Green: moved, the source released.
const RELEASED: Color32 = Color32::from_rgb(40, 170, 70);

/// The text and fill of a move under way (`elapsed_ms` since it was asked):
/// preparing, frozen (how long, memory streamed), pulling (memory pulled).
pub fn move_progress_text(p: &MoveProgress, elapsed_ms: u64) -> (String, f32, Color32) {
    let share = p.share().unwrap_or(0.0) as f32;
    let of = format!("{} of {}", bytes(p.moved_bytes), bytes(p.expected_bytes));
    match p.phase {
        MovePhase::Preparing => (
            format!("preparing the move to node {} ({elapsed_ms} ms)", p.to),
            0.0,
            PULLING,
        ),
        MovePhase::Frozen if p.moved_bytes > 0 => (
            format!("frozen {} ms: {of} streamed to node {}", p.frozen_ms, p.to),
            share,
            FROZEN,
        ),
        MovePhase::Frozen => (
            format!("frozen {} ms: moving to node {}", p.frozen_ms, p.to),
            0.0,
            FROZEN,
        ),
        MovePhase::Pulling => (
            format!(
                "runs on node {} (frozen {} ms); {of} pulled",
                p.to, p.frozen_ms
            ),
            share,
            PULLING,
        ),
    }
}

/// The text of a finished move: how it moved, the freeze, the memory that
/// followed and when the source was released.
pub fn move_done_text(r: &MigrationReport) -> String {
    match r.mode {
        MigrationMode::Postcopy => format!(
            "moved {} to node {}: frozen {} ms, {} pulled, source released after {} ms",
            r.mode.label(),
            r.to,
            r.freeze_ms,
            bytes(r.pulled_bytes),
            r.released_ms
        ),
        _ if r.streamed_bytes > 0 => format!(
            "moved {} to node {}: frozen {} ms, {} streamed",
            r.mode.label(),
            r.to,
            r.freeze_ms,
            bytes(r.streamed_bytes)
        ),
        _ => format!(
            "moved {} to node {}: frozen {} ms, {}",
            r.mode.label(),
            r.to,
            r.freeze_ms,
            bytes(r.bytes)
        ),
    }
}

/// A move under way as a bar: red while frozen, amber while its memory is
/// pulled, filled by the memory gone so far.
pub fn move_progress_bar(ui: &mut Ui, p: &MoveProgress, elapsed_ms: u64) -> Response {
    let (text, share, fill) = move_progress_text(p, elapsed_ms);
    ui.add(
        egui::ProgressBar::new(share)
            .fill(fill)
            .text(text)
            .animate(true),
    )
}

/// A finished move as a full green bar with its figures.
pub fn move_done_bar(ui: &mut Ui, r: &MigrationReport) -> Response {
    ui.add(
        egui::ProgressBar::new(1.0)
            .fill(RELEASED)
            .text(move_done_text(r)),
    )
}

/// Green for up, red for down.
pub fn status_color(up: bool) -> Color32 {
    if up {
        Color32::from_rgb(40, 180, 60)
    } else {
        Color32::from_rgb(210, 40, 40)
    }
}

/// The original's lamp: a coloured disc with the node id beside it.
pub fn lamp(ui: &mut Ui, id: &str, up: bool) -> Response {
    ui.horizontal(|ui| {
        let (rect, _) = ui.allocate_exact_size(Vec2::splat(14.0), Sense::hover());
        ui.painter()
            .circle_filled(rect.center(), 6.0, status_color(up));
        ui.label(RichText::new(id).strong().color(status_color(up)))
    })
    .inner
    .on_hover_text(if up { "up" } else { "down" })
}

/// A bar filled to `percent` (clamped to 0..=100 for the fill), with the
/// percentage written on it.
pub fn percent_bar(ui: &mut Ui, percent: f32, width: f32, hot_above: f32) -> Response {
    let fill = if percent > hot_above {
        Color32::from_rgb(200, 70, 50)
    } else {
        Color32::from_rgb(60, 120, 200)
    };
    ui.add(
        egui::ProgressBar::new((percent / 100.0).clamp(0.0, 1.0))
            .desired_width(width)
            .fill(fill)
            .text(format!("{percent:.0} %")),
    )
}

/// Bytes as KiB/MiB/GiB.
pub fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f >= K * K * K {
        format!("{:.1} GiB", f / (K * K * K))
    } else if f >= K * K {
        format!("{:.0} MiB", f / (K * K))
    } else {
        format!("{:.0} KiB", f / K)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn a_move_under_way_reads_as_its_phase_with_the_memory_gone() {
        let mut p = MoveProgress {
            to: 3,
            mode: MigrationMode::Postcopy,
            phase: MovePhase::Preparing,
            frozen_ms: 0,
            moved_bytes: 0,
            expected_bytes: 256 << 20,
        };
        assert_eq!(
            move_progress_text(&p, 12).0,
            "preparing the move to node 3 (12 ms)"
        );
        p.phase = MovePhase::Frozen;
        p.frozen_ms = 40;
        let (text, share, fill) = move_progress_text(&p, 60);
        assert_eq!(
            (text.as_str(), share, fill),
            ("frozen 40 ms: moving to node 3", 0.0, FROZEN)
        );
        p.phase = MovePhase::Pulling;
        p.frozen_ms = 71;
        p.moved_bytes = 64 << 20;
        let (text, share, fill) = move_progress_text(&p, 300);
        assert_eq!(
            text,
            "runs on node 3 (frozen 71 ms); 64 MiB of 256 MiB pulled"
        );
        assert!((share - 0.25).abs() < 1e-6 && fill == PULLING);
    }
}
