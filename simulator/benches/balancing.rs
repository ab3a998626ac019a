//! The balancer in simulation: the same workload (Pareto demands, uneven
//! arrivals, a tenth forking 4 workers, 70 % utilisation) at 4, 64 and
//! 1,000 nodes, under the balancer's policy and the baselines, in one run.
//! `cargo bench -p simulator --bench balancing`. Also draws the figures as
//! `docs/balancing-simulation.png` (the README shows it).

use std::time::Instant;

use balancer::Policy;
use simulator::chart::{Bar, Chart, write_png};
use simulator::{Strategy, Workload, WorkloadConfig, run};

fn main() {
    println!(
        "{:>6} {:<28} {:>9} {:>9} {:>9} {:>11} {:>9} {:>8}",
        "nodes", "strategy", "procs", "mean", "p95", "moves/proc", "MiB/proc", "wall s"
    );
    let mut bars = Vec::new();
    let mut names = Vec::new();
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
        for (series, (name, s)) in strategies.into_iter().enumerate() {
            let t = Instant::now();
            let r = run(&w, s, 7);
            if !names.contains(&name.to_string()) {
                names.push(name.to_string());
            }
            bars.push(Bar {
                group: format!("{nodes} nodes"),
                series,
                value: r.mean,
            });
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
    let chart = Chart {
        title: "Mean slowdown against running alone (lower is better): Pareto demands, 70 % load"
            .into(),
        axis: "slowdown".into(),
        series: names,
        bars,
        max: 4.0,
        target: Some((1.15, "target 1.15".into())),
    };
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/balancing-simulation.png"
    );
    match std::fs::File::create(path)
        .map_err(|e| e.to_string())
        .and_then(|f| write_png(&chart, std::io::BufWriter::new(f)).map_err(|e| e.to_string()))
    {
        Ok(()) => println!("chart: {path}"),
        Err(e) => eprintln!("cannot write the chart {path}: {e}"),
    }
}
