//! The load-balancing efficiency shown at the top of the main view.
//!
//! With the openMosix loads `l₁..lₙ` of the `n` up nodes (already normalised
//! by speed and CPU count) and their mean `m`:
//!
//! `efficiency = 100 % × (1 − Σ|lᵢ − m| / (2·m·(n − 1)))`
//!
//! The fraction is the mean absolute deviation scaled by its largest possible
//! value (all the load on one node), so 100 % means every node carries the
//! same load and 0 % means one node carries all of it. An idle cluster, or a
//! cluster of one, is perfectly balanced (100 %).

/// The efficiency in percent (0..=100) of these loads.
pub fn efficiency(loads: &[u32]) -> f32 {
    let n = loads.len();
    if n < 2 {
        return 100.0;
    }
    let total: f64 = loads.iter().map(|&l| f64::from(l)).sum();
    if total <= 0.0 {
        return 100.0;
    }
    let mean = total / n as f64;
    let deviation: f64 = loads.iter().map(|&l| (f64::from(l) - mean).abs()).sum();
    let worst = 2.0 * mean * (n as f64 - 1.0);
    (100.0 * (1.0 - deviation / worst)).clamp(0.0, 100.0) as f32
}

#[cfg(test)]
mod tests {
    use super::efficiency;

    #[test]
    fn equal_loads_are_perfect_and_one_busy_node_is_worst() {
        assert_eq!(efficiency(&[]), 100.0);
        assert_eq!(efficiency(&[70]), 100.0);
        assert_eq!(efficiency(&[0, 0, 0]), 100.0);
        assert_eq!(efficiency(&[50, 50, 50, 50]), 100.0);
        assert_eq!(efficiency(&[400, 0, 0, 0]), 0.0);
        assert_eq!(efficiency(&[100, 0]), 0.0);
        // Half of two nodes' worth shifted: mean 50, deviation 50, worst 100.
        assert_eq!(efficiency(&[75, 25]), 50.0);
        let e = efficiency(&[100, 90, 110, 100]);
        assert!(e > 90.0 && e < 100.0, "{e}");
    }
}
