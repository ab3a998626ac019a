//! The balancer in simulation: the same workload (Pareto demands, uneven
//! arrivals, a tenth forking 4 workers, 70 % utilisation) at 4, 64 and
//! 1,000 nodes, under the balancer's policy and the baselines, in one run.
//! `cargo bench -p simulator --bench balancing`.

use std::time::Instant;

use balancer::Policy;
use simulator::{Strategy, Workload, WorkloadConfig, run};

fn main() {
    println!(
        "{:>6} {:<28} {:>9} {:>9} {:>9} {:>11} {:>9} {:>8}",
        "nodes", "strategy", "procs", "mean", "p95", "moves/proc", "MiB/proc", "wall s"
    );
    for nodes in [4, 64, 1000] {
        let w = Workload::generate(&WorkloadConfig::standard(nodes, 42));
        let strategies = [
            ("no balancing", Strategy::None),
            ("placement only, fresh", Strategy::Placement { fresh: true }),
            (
                "placement only, gossip",
                Strategy::Placement { fresh: false },
            ),
            (
                "global least-loaded, fresh",
                Strategy::GlobalFresh(Policy::default()),
            ),
            (
                "balancer (2 choices, gossip)",
                Strategy::Balancer(Policy::default()),
            ),
        ];
        for (name, s) in strategies {
            let t = Instant::now();
            let r = run(&w, s, 7);
            println!(
                "{:>6} {:<28} {:>9} {:>9.2} {:>9.2} {:>11.3} {:>9.1} {:>8.1}",
                nodes,
                name,
                r.processes,
                r.mean,
                r.p95,
                r.moves_per_process,
                r.mib_per_process,
                t.elapsed().as_secs_f64()
            );
        }
    }
}
