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
/// with no decay is the mean of all its passes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// The remembered demand (CPUs).
    pub value: f64,
    samples: u32,
}

impl Demand {
    /// The demand first seen.
    pub fn first(now: f64) -> Self {
        Self {
            value: now.max(0.0),
            samples: 1,
        }
    }

    /// Takes in the demand seen now: `keep` is the share kept per decay
    /// interval (`None`: no decay, every pass weighs alike) and `steps` the
    /// decay intervals since the last pass.
    pub fn update(&mut self, now: f64, keep: Option<f64>, steps: f64) {
        let now = now.max(0.0);
        self.samples = self.samples.saturating_add(1);
        self.value = match keep {
            Some(k) => {
                let kept = k.clamp(0.0, 1.0).powf(steps.max(0.0));
                kept * self.value + (1.0 - kept) * now
            }
            None => self.value + (now - self.value) / f64::from(self.samples),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_classes_remember_as_long_as_they_say() {
        // A process busy for a while, then idle for 10 s.
        let run = |keep: Option<f64>| {
            let mut d = Demand::first(1.0);
            for _ in 0..9 {
                d.update(1.0, keep, 1.0);
            }
            for _ in 0..10 {
                d.update(0.0, keep, 1.0);
            }
            d.value
        };
        let (slow, fast, none) = (run(Some(0.975)), run(Some(0.926)), run(None));
        assert!((slow - 0.975f64.powi(10)).abs() < 1e-9, "{slow}");
        assert!((fast - 0.926f64.powi(10)).abs() < 1e-9, "{fast}");
        assert!((none - 0.5).abs() < 1e-9, "{none}");
        assert!(slow > none && none > fast);
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
