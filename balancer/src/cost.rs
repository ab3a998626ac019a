//! What a migration costs the process (its freeze time), as a line in its
//! size, fitted to the node's own past moves: recent moves weigh more, and
//! until there are moves the figures measured on this project's lab stand
//! (about 90 ms plus 3.3 ms per MiB).

use std::time::Duration;

/// The weight the fit keeps of what it knew, per new move.
const KEEP: f64 = 0.9;

/// The learnt cost of moving a process of a given size.
#[derive(Debug, Clone, PartialEq)]
pub struct CostModel {
    // Decayed sums for a least-squares line ms = a + b·MiB.
    n: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
}

impl Default for CostModel {
    fn default() -> Self {
        let mut m = Self {
            n: 0.0,
            sx: 0.0,
            sy: 0.0,
            sxx: 0.0,
            sxy: 0.0,
        };
        // Two remembered points on the lab's line, soon outweighed.
        m.observe(16 << 20, Duration::from_millis(143));
        m.observe(256 << 20, Duration::from_millis(931));
        m
    }
}

impl CostModel {
    /// Learns from one move of `bytes` that froze the process for `freeze`.
    pub fn observe(&mut self, bytes: u64, freeze: Duration) {
        let x = bytes as f64 / f64::from(1u32 << 20);
        let y = freeze.as_secs_f64() * 1000.0;
        self.n = self.n * KEEP + 1.0;
        self.sx = self.sx * KEEP + x;
        self.sy = self.sy * KEEP + y;
        self.sxx = self.sxx * KEEP + x * x;
        self.sxy = self.sxy * KEEP + x * y;
    }

    /// The freeze time expected for moving `bytes`.
    pub fn estimate(&self, bytes: u64) -> Duration {
        let x = bytes as f64 / f64::from(1u32 << 20);
        let mean_x = self.sx / self.n.max(f64::MIN_POSITIVE);
        let mean_y = self.sy / self.n.max(f64::MIN_POSITIVE);
        let var = self.sxx / self.n.max(f64::MIN_POSITIVE) - mean_x * mean_x;
        let slope = if var > 1e-9 {
            ((self.sxy / self.n - mean_x * mean_y) / var).max(0.0)
        } else {
            0.0
        };
        let ms = (mean_y + slope * (x - mean_x)).max(1.0);
        Duration::from_secs_f64(ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_from_the_lab_figures_and_learns_the_node() {
        let m = CostModel::default();
        let ms = m.estimate(64 << 20).as_millis();
        assert!((250..320).contains(&ms), "{ms}");
        // A node whose moves cost twice as much soon says so.
        let mut slow = m.clone();
        for _ in 0..30 {
            slow.observe(16 << 20, Duration::from_millis(286));
            slow.observe(256 << 20, Duration::from_millis(1862));
        }
        let ms = slow.estimate(64 << 20).as_millis();
        assert!((560..640).contains(&ms), "{ms}");
        // Never below a millisecond, never negative.
        assert!(slow.estimate(0) >= Duration::from_millis(1));
    }
}
