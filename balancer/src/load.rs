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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_busy_standard_cpu_is_one_unit_of_load() {
        assert_eq!(units(1.0, STANDARD_SPEED, 1), 100.0);
        assert_eq!(units(2.0, STANDARD_SPEED, 2), 100.0);
        assert_eq!(units(1.0, 2 * STANDARD_SPEED, 1), 50.0);
        assert_eq!(units(-1.0, STANDARD_SPEED, 1), 0.0);
        assert!((demand(units(1.5, 3800, 2), 3800, 2) - 1.5).abs() < 1e-9);
    }
}
