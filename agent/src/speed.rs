//! Node speed calibration.
//!
//! The yardstick: speed 10000 is a CPU core that runs [`calibration_loop`] at
//! [`REFERENCE_RATE`] iterations per second. The loop is a dependent chain of
//! integer multiply, xor and shift steps (no memory traffic), so it measures
//! single-core integer throughput, like openMosix's relative speed. The agent
//! calibrates once at first start (about a quarter of a second), persists the
//! figure, and `setspeed` overrides it.

use std::time::{Duration, Instant};

use hpc::model::STANDARD_SPEED;

/// Iterations per second of [`calibration_loop`] on the reference CPU (speed 10000).
pub const REFERENCE_RATE: f64 = 250_000_000.0;

/// Runs `iterations` steps of the calibration chain and returns its final state.
pub fn calibration_loop(iterations: u64) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..iterations {
        x ^= x << 13;
        x ^= x >> 7;
        x = x.wrapping_mul(0x2545_F491_4F6C_DD1D).wrapping_add(i);
    }
    x
}

/// Measures this machine's speed relative to the yardstick, spending about `budget`.
pub fn calibrate(budget: Duration) -> u32 {
    // Warm up, then time chunks until the budget is spent.
    std::hint::black_box(calibration_loop(1_000_000));
    let chunk = 2_000_000u64;
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < budget {
        std::hint::black_box(calibration_loop(std::hint::black_box(chunk)));
        done += chunk;
    }
    let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-9);
    let speed = f64::from(STANDARD_SPEED) * rate / REFERENCE_RATE;
    speed.round().clamp(1.0, 1_000_000.0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_gives_a_positive_plausible_speed() {
        let s = calibrate(Duration::from_millis(50));
        assert!((100..=1_000_000).contains(&s), "speed {s}");
    }
}
