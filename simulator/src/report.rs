//! What a run measured.

/// One process that ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finished {
    /// Its time in the system over its time alone on a CPU of the node it
    /// arrived at.
    pub slowdown: f64,
    /// Its migrations.
    pub moves: u32,
    /// Forked beside its parent (not a program started anew).
    pub forked: bool,
}

/// A run's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Processes that ended.
    pub processes: usize,
    /// Mean slowdown.
    pub mean: f64,
    /// Mean slowdown of the programs started anew.
    pub mean_programs: f64,
    /// Mean slowdown of the forked workers.
    pub mean_forked: f64,
    /// 95th percentile slowdown.
    pub p95: f64,
    /// Migrations per process.
    pub moves_per_process: f64,
    /// MiB moved per process.
    pub mib_per_process: f64,
}

impl Report {
    /// Figures from the ended processes and the bytes moved.
    pub fn new(finished: &[Finished], bytes_moved: u64) -> Self {
        let n = finished.len().max(1) as f64;
        let mut s: Vec<f64> = finished.iter().map(|f| f.slowdown).collect();
        s.sort_by(f64::total_cmp);
        let p95 = s
            .get(((s.len() as f64 * 0.95) as usize).min(s.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0);
        let mean_of = |forked: bool| {
            let (sum, count) = finished
                .iter()
                .filter(|f| f.forked == forked)
                .fold((0.0, 0usize), |(s, c), f| (s + f.slowdown, c + 1));
            sum / count.max(1) as f64
        };
        Self {
            processes: finished.len(),
            mean: s.iter().sum::<f64>() / n,
            mean_programs: mean_of(false),
            mean_forked: mean_of(true),
            p95,
            moves_per_process: finished.iter().map(|f| f64::from(f.moves)).sum::<f64>() / n,
            mib_per_process: bytes_moved as f64 / f64::from(1u32 << 20) / n,
        }
    }
}
