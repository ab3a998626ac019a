//! The openMosix load figure, computed the MOSIX way.
//!
//! Every sampling period (1 s) the agent measures the node's CPU *demand* in
//! CPUs: `demand = max(busy, runnable)`, where `busy` is the number of CPUs that
//! were busy over the period (non-idle jiffies / total jiffies × CPUs, from
//! `/proc/stat`) and `runnable` the number of runnable tasks at the end of it
//! (`procs_running`, not counting the sampler itself). It is normalised by speed
//! and CPU count into load units ([`balancer::load::units`]), where `LOAD_UNIT` (100) is one fully busy
//! CPU of the reference speed (10000):
//!
//! `raw = demand × LOAD_UNIT × STANDARD_SPEED / (speed × cpus)`
//!
//! and smoothed twice, as MOSIX did (constants from Kerrighed's "values taken
//! from MOSIX"):
//! - the node's own load (`local`) rises slowly, `local = (5·local + 3·raw) / 8`,
//!   and drops to `raw` at once, so a short burst does not make the node shed work;
//! - the exported load (`exported`, what peers see in `nodes/<id>/load`) rises to
//!   `raw` at once and decays slowly, `exported = (7·exported + raw) / 8`, so peers
//!   do not pile onto a node that was busy a moment ago.

/// Smoothed load of one node.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoadTracker {
    /// Own load: rises slowly, drops at once.
    pub local: u32,
    /// Exported load: rises at once, decays slowly.
    pub exported: u32,
}

/// Normalises a CPU demand (in CPUs) into load units.
pub fn raw_load(demand_cpus: f64, speed: u32, cpus: u32) -> u32 {
    balancer::load::units(demand_cpus, speed, cpus)
        .round()
        .min(f64::from(u32::MAX)) as u32
}

impl LoadTracker {
    /// Feeds one period's raw load.
    pub fn update(&mut self, raw: u32) {
        let raw64 = u64::from(raw);
        self.local = if raw <= self.local {
            raw
        } else {
            (5 * u64::from(self.local) + 3 * raw64).div_ceil(8) as u32
        };
        self.exported = if raw >= self.exported {
            raw
        } else {
            ((7 * u64::from(self.exported) + raw64) / 8) as u32
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_by_speed_and_cpus() {
        assert_eq!(raw_load(1.0, 10_000, 1), 100);
        assert_eq!(raw_load(2.0, 10_000, 2), 100);
        assert_eq!(raw_load(1.0, 20_000, 1), 50);
        assert_eq!(raw_load(1.0, 5_000, 4), 50);
        assert_eq!(raw_load(-1.0, 10_000, 1), 0);
    }

    #[test]
    fn local_rises_slowly_and_drops_at_once_exported_the_opposite() {
        let mut t = LoadTracker::default();
        t.update(800);
        assert_eq!(t.exported, 800);
        assert_eq!(t.local, 300);
        t.update(800);
        assert!(t.local > 300 && t.local < 800);
        t.update(0);
        assert_eq!(t.local, 0);
        assert_eq!(t.exported, 700);
        for _ in 0..60 {
            t.update(0);
        }
        assert_eq!(t.exported, 0);
    }
}
