//! The simulated cluster and what arrives on it.

use balancer::Rng;
use hpc::model::STANDARD_SPEED;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadConfig {
    /// Nodes.
    pub nodes: usize,
    /// The share of the cluster's CPU capacity the arrivals ask for.
    pub utilisation: f64,
    /// Seconds over which processes arrive.
    pub seconds: f64,
    /// Shortest and longest CPU demand (seconds on a reference CPU).
    pub work: (f64, f64),
    /// Pareto shape of the demands (1: Harchol-Balter and Downey's lifetimes).
    pub alpha: f64,
    /// Share of arrivals that fork workers, and how many.
    pub forkers: (f64, usize),
    /// The seed.
    pub seed: u64,
}

impl WorkloadConfig {
    /// The workload of the figures: 70 % utilisation over 300 s, demands
    /// from 0.5 s to 300 s with shape 1, a tenth of arrivals forking 4.
    pub fn standard(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            utilisation: 0.7,
            seconds: 300.0,
            work: (0.5, 300.0),
            alpha: 1.0,
            forkers: (0.1, 4),
            seed,
        }
    }
}

/// A simulated node.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Its speed (the reference is [`STANDARD_SPEED`]).
    pub speed: u32,
    /// Its CPUs.
    pub cpus: u32,
}

impl Node {
    /// How much faster than a reference CPU one of its CPUs is.
    pub fn factor(&self) -> f64 {
        f64::from(self.speed) / f64::from(STANDARD_SPEED)
    }
}

/// A process arriving.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// When (s).
    pub at: f64,
    /// On which node.
    pub node: usize,
    /// Its CPU demand (s on a reference CPU).
    pub work: f64,
    /// Its size (bytes a move transfers).
    pub bytes: u64,
    /// Forked by a process already running there (it cannot be started
    /// elsewhere, only moved).
    pub forked: bool,
}

/// Nodes and arrivals, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The arrivals, in time order.
    pub arrivals: Vec<Arrival>,
}

/// The mean of a Pareto distribution of shape `alpha` bounded to [lo, hi].
fn bounded_pareto_mean(alpha: f64, lo: f64, hi: f64) -> f64 {
    if (alpha - 1.0).abs() < 1e-9 {
        return hi * lo / (hi - lo) * (hi / lo).ln();
    }
    let la = lo.powf(alpha);
    la / (1.0 - (lo / hi).powf(alpha)) * alpha / (alpha - 1.0)
        * (1.0 / lo.powf(alpha - 1.0) - 1.0 / hi.powf(alpha - 1.0))
}

/// A draw from that distribution (inverse transform).
fn bounded_pareto(rng: &mut Rng, alpha: f64, lo: f64, hi: f64) -> f64 {
    let u = rng.unit();
    let ratio = (lo / hi).powf(alpha);
    lo / (1.0 - u * (1.0 - ratio)).powf(1.0 / alpha)
}

impl Workload {
    /// Generates nodes (speeds from 0.5 to 1.5 times the reference, one or
    /// two CPUs) and arrivals (each node's rate drawn from 0 to twice the
    /// mean, so some nodes get far more than their share).
    pub fn generate(c: &WorkloadConfig) -> Self {
        let mut rng = Rng::new(c.seed);
        let nodes: Vec<Node> = (0..c.nodes)
            .map(|_| Node {
                speed: (f64::from(STANDARD_SPEED) * (0.5 + rng.unit())) as u32,
                cpus: 1 + (rng.unit() < 0.5) as u32,
            })
            .collect();
        let capacity: f64 = nodes.iter().map(|n| n.factor() * f64::from(n.cpus)).sum();
        let mean_work = bounded_pareto_mean(c.alpha, c.work.0, c.work.1);
        let (fork_share, fork_n) = c.forkers;
        let per_arrival = mean_work * (1.0 - fork_share + fork_share * fork_n as f64);
        let rate = c.utilisation * capacity / per_arrival;
        let weights: Vec<f64> = (0..c.nodes).map(|_| 2.0 * rng.unit()).collect();
        let total: f64 = weights.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        let mut arrivals = Vec::new();
        for (node, w) in weights.iter().enumerate() {
            let node_rate = rate * w / total;
            if node_rate <= 0.0 {
                continue;
            }
            let mut t = 0.0;
            loop {
                t += -(1.0 - rng.unit()).ln() / node_rate;
                if t >= c.seconds {
                    break;
                }
                let n = if rng.unit() < fork_share { fork_n } else { 1 };
                for _ in 0..n {
                    let forked = n > 1;
                    arrivals.push(Arrival {
                        at: t,
                        node,
                        work: bounded_pareto(&mut rng, c.alpha, c.work.0, c.work.1),
                        // 1 MiB to 256 MiB, log-uniform.
                        bytes: (f64::from(1u32 << 20) * 256f64.powf(rng.unit())) as u64,
                        forked,
                    });
                }
            }
        }
        arrivals.sort_by(|a, b| a.at.total_cmp(&b.at));
        Self { nodes, arrivals }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_draws_stay_in_bounds_and_match_their_mean() {
        let mut rng = Rng::new(5);
        let n = 200_000;
        let sum: f64 = (0..n)
            .map(|_| {
                let x = bounded_pareto(&mut rng, 1.0, 0.5, 300.0);
                assert!((0.5..=300.0).contains(&x), "{x}");
                x
            })
            .sum();
        let mean = bounded_pareto_mean(1.0, 0.5, 300.0);
        assert!(
            (sum / n as f64 - mean).abs() / mean < 0.05,
            "{} vs {mean}",
            sum / n as f64
        );
        let m2 = bounded_pareto_mean(1.5, 1.0, 100.0);
        assert!(m2 > 1.0 && m2 < 3.0, "{m2}");
    }

    #[test]
    fn arrivals_ask_for_the_utilisation() {
        let c = WorkloadConfig::standard(16, 9);
        let w = Workload::generate(&c);
        let capacity: f64 = w.nodes.iter().map(|n| n.factor() * f64::from(n.cpus)).sum();
        let asked: f64 = w.arrivals.iter().map(|a| a.work).sum::<f64>() / c.seconds;
        let u = asked / capacity;
        // Heavy tails: a generous band.
        assert!((0.45..1.0).contains(&u), "{u}");
        assert!(w.arrivals.windows(2).all(|p| p[0].at <= p[1].at));
    }
}
