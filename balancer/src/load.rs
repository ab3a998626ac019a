//! The openMosix load figure: CPU demand normalised by speed and CPU count,
//! where [`LOAD_UNIT`] (100) is one fully busy CPU of the reference speed
//! ([`STANDARD_SPEED`]).

use hpc::model::{LOAD_UNIT, STANDARD_SPEED};

/// The load units a demand of `cpus_demanded` CPUs makes on a node of
/// `speed` with `cpus` CPUs.
pub fn units(cpus_demanded: f64, speed: u32, cpus: u32) -> f64 {
    let capacity = f64::from(speed.max(1)) * f64::from(cpus.max(1));
    cpus_demanded.max(0.0) * f64::from(LOAD_UNIT) * f64::from(STANDARD_SPEED) / capacity
}

/// The CPUs' worth of demand that `units` of load make on a node of
/// `speed` with `cpus` CPUs (the inverse of [`units`]).
pub fn demand(units: f64, speed: u32, cpus: u32) -> f64 {
    let capacity = f64::from(speed.max(1)) * f64::from(cpus.max(1));
    units.max(0.0) * capacity / (f64::from(LOAD_UNIT) * f64::from(STANDARD_SPEED))
}

/// A process's remembered CPU demand, decayed by its class as openMosix's
/// `mosrun -s/-f/-n` (`slowdecay`, `fastdecay`, `nodecay`; `cpujob` is slow,
/// `iojob` fast) asked: a slow-decay process keeps looking as busy as it was
/// for longer, a fast-decay one soon looks like what it does now, and one
/// with no decay is the mean of all its passes. The decayed mean is
/// corrected for its short history (weights sum to one), so a process just
/// born, whose first pass saw it for a moment only, does not look idle for
/// long.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Demand {
    sum: f64,
    weight: f64,
    samples: u32,
}

impl Demand {
    /// Takes in the demand seen now: `keep` is the share kept per decay
    /// interval (`None`: no decay, every pass weighs alike) and `steps` the
    /// decay intervals since the last pass.
    pub fn update(&mut self, now: f64, keep: Option<f64>, steps: f64) {
        let now = now.max(0.0);
        self.samples = self.samples.saturating_add(1);
        let kept = match keep {
            Some(k) => k.clamp(0.0, 1.0).powf(steps.max(0.0)),
            // Every pass alike: the old ones keep their share of n.
            None => 1.0 - 1.0 / f64::from(self.samples),
        };
        self.sum = kept * self.sum + (1.0 - kept) * now;
        self.weight = kept * self.weight + (1.0 - kept);
    }

    /// Whether no pass was taken in yet.
    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }

    /// The remembered demand (CPUs).
    pub fn value(&self) -> f64 {
        if self.weight > 0.0 {
            self.sum / self.weight
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_classes_remember_as_long_as_they_say() {
        // A process busy for 10 passes, then idle for 10.
        let run = |keep: Option<f64>| {
            let mut d = Demand::default();
            for i in 0..20 {
                d.update(if i < 10 { 1.0 } else { 0.0 }, keep, 1.0);
            }
            d.value()
        };
        let (slow, fast, none) = (run(Some(0.975)), run(Some(0.926)), run(None));
        // No decay: the mean of all passes; slow: close to it; fast: lower.
        assert!((none - 0.5).abs() < 1e-9, "{none}");
        let k = 0.975f64.powi(10);
        assert!((slow - k / (1.0 + k)).abs() < 1e-9, "{slow}");
        assert!(none > slow && slow > fast + 0.1, "{none} {slow} {fast}");
        // A newborn seen for a moment, then busy: busy at the second pass.
        let mut d = Demand::default();
        d.update(0.02, Some(0.975), 1.0);
        d.update(1.0, Some(0.975), 1.0);
        assert!(d.value() > 0.4, "{}", d.value());
    }

    #[test]
    fn one_busy_standard_cpu_is_one_unit_of_load() {
        assert_eq!(units(1.0, STANDARD_SPEED, 1), 100.0);
        assert_eq!(units(2.0, STANDARD_SPEED, 2), 100.0);
        assert_eq!(units(1.0, 2 * STANDARD_SPEED, 1), 50.0);
        assert_eq!(units(-1.0, STANDARD_SPEED, 1), 0.0);
        assert!((demand(units(1.5, 3800, 2), 3800, 2) - 1.5).abs() < 1e-9);
    }
}
