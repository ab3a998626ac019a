//! A summary of some samples of one node: how many, time up and down, and
//! min/max/sum of the load and of the used memory. Each block of the store
//! carries one, and the `series` table holds them per minute, hour and day, so
//! overviews and statistics of long spans read a few integers per node and
//! minute, hour or day instead of decoding every sample; two summaries merge
//! exactly.

use crate::sample::Sample;

/// Minute series' span (ms).
pub const MINUTE_MS: i64 = 60_000;
/// Hour series' span (ms).
pub const HOUR_MS: i64 = 3_600_000;
/// Day series' span (ms).
pub const DAY_MS: i64 = 86_400_000;

/// min/max/sum of one figure over the up samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct MinMaxSum {
    /// Smallest (None when no sample was up).
    pub min: Option<i64>,
    /// Largest.
    pub max: Option<i64>,
    /// Sum.
    pub sum: i64,
}

impl MinMaxSum {
    fn add(&mut self, v: i64) {
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
        self.sum = self.sum.saturating_add(v);
    }

    fn merge(&mut self, o: &MinMaxSum) {
        self.min = match (self.min, o.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, o.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.sum = self.sum.saturating_add(o.sum);
    }
}

/// The summary of some samples of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// First sample's time (ms; 0 when there is none).
    pub first_ms: i64,
    /// Last sample's time (ms).
    pub last_ms: i64,
    /// Samples.
    pub n: i64,
    /// Samples while up.
    pub n_up: i64,
    /// Time up (ms): each up sample counts until the next sample, at most two
    /// sampling steps; the last one counts one step.
    pub up_ms: i64,
    /// Time down (ms), counted the same way.
    pub down_ms: i64,
    /// openMosix load while up.
    pub load: MinMaxSum,
    /// Used memory (KiB) while up.
    pub used: MinMaxSum,
    /// Total memory (KiB) summed over the up samples (used / total = used %).
    pub tmem_sum: i64,
}

impl Summary {
    /// The summary of `samples` (one node, time order), whose sampling step is
    /// `step_ms` (gaps count at most two steps).
    pub fn of(samples: &[Sample], step_ms: i64) -> Self {
        let step = step_ms.max(1);
        let mut s = Summary {
            first_ms: samples.first().map_or(0, |x| x.t_ms),
            last_ms: samples.last().map_or(0, |x| x.t_ms),
            ..Summary::default()
        };
        for (i, x) in samples.iter().enumerate() {
            let dt = samples
                .get(i + 1)
                .map_or(step, |next| (next.t_ms - x.t_ms).clamp(0, 2 * step));
            s.n += 1;
            if x.up {
                s.n_up += 1;
                s.up_ms += dt;
                s.load.add(i64::from(x.load));
                s.used.add(x.used_kib() as i64);
                s.tmem_sum = s.tmem_sum.saturating_add(x.tmem_kib as i64);
            } else {
                s.down_ms += dt;
            }
        }
        s
    }

    /// Adds `o` (samples of the same node from another span).
    pub fn merge(&mut self, o: &Summary) {
        if o.n > 0 {
            if self.n == 0 {
                (self.first_ms, self.last_ms) = (o.first_ms, o.last_ms);
            } else {
                self.first_ms = self.first_ms.min(o.first_ms);
                self.last_ms = self.last_ms.max(o.last_ms);
            }
        }
        self.n += o.n;
        self.n_up += o.n_up;
        self.up_ms += o.up_ms;
        self.down_ms += o.down_ms;
        self.load.merge(&o.load);
        self.used.merge(&o.used);
        self.tmem_sum = self.tmem_sum.saturating_add(o.tmem_sum);
    }

    /// Mean load while up.
    pub fn load_avg(&self) -> Option<f64> {
        (self.n_up > 0).then(|| self.load.sum as f64 / self.n_up as f64)
    }

    /// Used memory in percent of the total: (mean, at the least used, at the most).
    pub fn mem_percent(&self) -> Option<(f64, f64, f64)> {
        if self.n_up == 0 || self.tmem_sum <= 0 {
            return None;
        }
        let total = self.tmem_sum as f64 / self.n_up as f64;
        let pct = |v: i64| v as f64 * 100.0 / total;
        Some((
            self.used.sum as f64 * 100.0 / self.tmem_sum as f64,
            pct(self.used.min?),
            pct(self.used.max?),
        ))
    }
}

/// The median gap between consecutive times (None for fewer than two).
pub fn median_gap(times: impl Iterator<Item = i64>) -> Option<i64> {
    let times: Vec<i64> = times.collect();
    let mut gaps: Vec<i64> = times
        .windows(2)
        .filter_map(|w| match w {
            [a, b] => Some(b - a),
            _ => None,
        })
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied()
}

/// The median step between samples (1 s when there are fewer than two).
pub fn median_step(samples: &[Sample]) -> i64 {
    median_gap(samples.iter().map(|s| s.t_ms))
        .unwrap_or(1000)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: i64, up: bool, load: u32) -> Sample {
        Sample {
            t_ms: t,
            up,
            load,
            tmem_kib: 1000,
            mem_kib: 400,
            ..Sample::default()
        }
    }

    #[test]
    fn summaries_merge_exactly_and_count_time_up_and_down() {
        let all: Vec<Sample> = (0..120)
            .map(|i| s(i * 1000, i % 10 != 3, i as u32))
            .collect();
        let whole = Summary::of(&all, 1000);
        let (a, b) = all.split_at(60);
        let mut merged = Summary::of(a, 1000);
        merged.merge(&Summary::of(b, 1000));
        assert_eq!(whole, merged);
        assert_eq!((whole.n, whole.n_up), (120, 108));
        assert_eq!((whole.up_ms, whole.down_ms), (108_000, 12_000));
        assert_eq!((whole.load.min, whole.load.max), (Some(0), Some(119)));
        let (avg, lo, hi) = whole.mem_percent().unwrap();
        assert!((avg - 60.0).abs() < 1e-9 && (lo - 60.0).abs() < 1e-9 && (hi - 60.0).abs() < 1e-9);
        let down_only = Summary::of(&[s(0, false, 0)], 1000);
        assert_eq!(down_only.load_avg(), None);
        assert_eq!(down_only.load.min, None);
    }
}
