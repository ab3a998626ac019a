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
        "{:>6} {:<28} {:>7} {:>6} {:>6} {:>7} {:>6} {:>10} {:>8} {:>6}",
        "nodes",
        "strategy",
        "procs",
        "mean",
        "p95",
        "progs",
        "forked",
        "moves/proc",
        "MiB/proc",
        "wall s"
    );
    let mut bars = Vec::new();
    let mut names = Vec::new();
    // `-- 64` runs only the sizes given (cargo adds `--bench`, skipped); the
    // chart is drawn only for the full run.
    let only: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if only.is_empty() {
        vec![4, 64, 1000]
    } else {
        only.clone()
    };
    for nodes in sizes {
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
                "balancer (gossip, probes)",
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
                "{:>6} {:<28} {:>7} {:>6.2} {:>6.2} {:>7.2} {:>6.2} {:>10.3} {:>8.1} {:>6.1}",
                nodes,
                name,
                r.processes,
                r.mean,
                r.p95,
                r.mean_programs,
                r.mean_forked,
                r.moves_per_process,
                r.mib_per_process,
                t.elapsed().as_secs_f64()
            );
        }
    }
    if !only.is_empty() {
        return;
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
