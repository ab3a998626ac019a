//! The Prometheus text exposition format (version 0.0.4) of a node's
//! figures: the latest sampling pass, the admin switches, the cluster as
//! gossip sees it, and the [`Metrics`] counters.

use std::fmt::Write;

use hpc::model::{AdminState, Liveness, NodeId, NodeStatus, ProcessInfo};

use super::{Decision, FREEZE_BUCKETS, Metrics, MoveCause};

/// The media type of what [`render`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything the exposition shows of a node.
pub struct NodeFigures<'a> {
    /// The node's own status from its latest pass.
    pub status: &'a NodeStatus,
    /// That pass's process table.
    pub processes: &'a [ProcessInfo],
    /// The admin switches.
    pub admin: &'a AdminState,
    /// Every node of the cluster as this one sees it (itself included).
    pub cluster: &'a [NodeStatus],
    /// Arrivals since the agent started: landed, failed
    /// ([`crate::arrivals::Arrivals::totals`]).
    pub arrivals: (u64, u64),
    /// SSH sessions opened to other agents
    /// ([`crate::peers::Peers::sessions_opened`]).
    pub peer_sessions: u64,
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "gauge", help);
        self.sample(name, "", value);
    }
}

/// Where a process of `node`'s table runs, as the `where` label says it.
fn place(p: &ProcessInfo, node: NodeId) -> &'static str {
    if p.where_ != node {
        "away"
    } else if p.home != node {
        "guest"
    } else {
        "here"
    }
}

/// The exposition of `f` and `m`.
pub fn render(f: &NodeFigures<'_>, m: &Metrics) -> String {
    let s = f.status;
    let mut o = Out(String::with_capacity(4096));
    o.family(
        "openmosix_node_info",
        "gauge",
        "This node: its openMosix id and name.",
    );
    o.sample(
        "openmosix_node_info",
        &format!("node=\"{}\",name=\"{}\"", s.id, label(&s.name)),
        1,
    );
    o.gauge("openmosix_load", "The node's openMosix load (100 = one CPU's worth of work at the cluster's reference speed).", s.load);
    o.gauge(
        "openmosix_speed",
        "The node's speed (openMosix units).",
        s.speed,
    );
    o.gauge("openmosix_cpus", "CPUs.", s.cpus);
    o.gauge(
        "openmosix_utilization_percent",
        "Share of the time not stalled on memory (100 - PSI memory some avg10).",
        s.util,
    );
    o.gauge("openmosix_memory_total_bytes", "Memory in all.", s.tmem);
    o.gauge(
        "openmosix_memory_available_bytes",
        "Memory available to new work.",
        s.mem,
    );
    o.gauge(
        "openmosix_memory_free_bytes",
        "Memory not used at all.",
        s.rmem,
    );
    o.family("openmosix_processes", "gauge", "Processes by where they run: here (started here), away (started here, running on another node), guest (started elsewhere, running here).");
    for w in ["here", "away", "guest"] {
        let n = f.processes.iter().filter(|p| place(p, s.id) == w).count();
        o.sample("openmosix_processes", &format!("where=\"{w}\""), n);
    }
    o.family(
        "openmosix_admin",
        "gauge",
        "The openMosix admin switches (1 = on).",
    );
    let a = f.admin;
    for (name, on) in [
        ("stay", a.stay),
        ("lstay", a.lstay),
        ("block", a.block),
        ("quiet", a.quiet),
    ] {
        o.sample(
            "openmosix_admin",
            &format!("switch=\"{name}\""),
            u8::from(on),
        );
    }
    o.family(
        "openmosix_cluster_nodes",
        "gauge",
        "Nodes of the cluster as this node sees them, by state.",
    );
    let up = f
        .cluster
        .iter()
        .filter(|n| n.status == Liveness::Up)
        .count();
    o.sample("openmosix_cluster_nodes", "state=\"up\"", up);
    o.sample(
        "openmosix_cluster_nodes",
        "state=\"down\"",
        f.cluster.len() - up,
    );

    o.family(
        "openmosix_migrations_out_total",
        "counter",
        "Migrations this node carried out, by cause and result.",
    );
    for cause in MoveCause::ALL {
        for (r, result) in ["ok", "failed"].iter().enumerate() {
            let v = m
                .out
                .get(cause as usize)
                .and_then(|row| row.get(r))
                .map_or(0, Metrics::read);
            o.sample(
                "openmosix_migrations_out_total",
                &format!("cause=\"{}\",result=\"{result}\"", cause.label()),
                v,
            );
        }
    }
    o.family(
        "openmosix_migration_out_bytes_total",
        "counter",
        "Bytes of the migrations this node carried out (images and memory).",
    );
    o.sample(
        "openmosix_migration_out_bytes_total",
        "",
        Metrics::read(&m.out_bytes),
    );
    o.family(
        "openmosix_migration_freeze_seconds",
        "histogram",
        "How long each migration this node carried out kept its process frozen.",
    );
    let mut cumulative = 0;
    for (i, le) in FREEZE_BUCKETS.iter().enumerate() {
        cumulative += m.freeze.get(i).map_or(0, Metrics::read);
        o.sample(
            "openmosix_migration_freeze_seconds_bucket",
            &format!("le=\"{le}\""),
            cumulative,
        );
    }
    cumulative += m.freeze.get(FREEZE_BUCKETS.len()).map_or(0, Metrics::read);
    o.sample(
        "openmosix_migration_freeze_seconds_bucket",
        "le=\"+Inf\"",
        cumulative,
    );
    o.sample(
        "openmosix_migration_freeze_seconds_sum",
        "",
        Metrics::read(&m.freeze_sum_us) as f64 / 1e6,
    );
    o.sample("openmosix_migration_freeze_seconds_count", "", cumulative);
    o.family(
        "openmosix_migrations_in_total",
        "counter",
        "Processes that arrived here (landed) or whose arrival failed.",
    );
    let (landed, failed) = f.arrivals;
    for (result, v) in [("landed", landed), ("failed", failed)] {
        o.sample(
            "openmosix_migrations_in_total",
            &format!("result=\"{result}\""),
            v,
        );
    }
    o.family(
        "openmosix_peer_sessions_total",
        "counter",
        "SSH sessions this agent opened to other agents (one per peer is kept open for calls and moves; more mean sessions that broke or were refused).",
    );
    o.sample("openmosix_peer_sessions_total", "", f.peer_sessions);
    o.family("openmosix_balancer_decisions_total", "counter", "The balancer's decisions: move a busy process, place a new one, usher one out of full memory.");
    for d in Decision::ALL {
        let v = m.decisions.get(d as usize).map_or(0, Metrics::read);
        o.sample(
            "openmosix_balancer_decisions_total",
            &format!("decision=\"{}\"", d.label()),
            v,
        );
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: NodeId, up: bool) -> NodeStatus {
        NodeStatus {
            id,
            name: format!("n\"{id}"),
            addr: format!("10.0.0.{id}:4660"),
            status: if up { Liveness::Up } else { Liveness::Down },
            cpus: 2,
            load: 150,
            speed: 5000,
            util: 100,
            mem: 1 << 29,
            rmem: 1 << 28,
            tmem: 1 << 30,
            accepts: true,
            age_ms: 0,
            reason: None,
            migration: String::new(),
            host_key: String::new(),
        }
    }

    /// The series names a PromQL expression refers to (`openmosix_…`).
    fn series_in(expr: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = expr;
        while let Some(at) = rest.find("openmosix_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            out.push(tail[..end].to_string());
            rest = &tail[end..];
        }
        out
    }

    #[test]
    fn the_grafana_dashboard_asks_only_for_series_the_agent_exports() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../assets/grafana/openmosix.json")).unwrap();
        let me = node(1, true);
        let text = render(
            &NodeFigures {
                status: &me,
                processes: &[],
                admin: &AdminState::default(),
                cluster: std::slice::from_ref(&me),
                arrivals: (0, 0),
                peer_sessions: 0,
            },
            &Metrics::default(),
        );
        let exported: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let panels = dashboard["panels"].as_array().unwrap();
        assert!(panels.len() >= 8);
        let mut asked = 0;
        for panel in panels {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for series in series_in(expr) {
                    assert!(
                        exported.contains(&series.as_str()),
                        "{series} (in {expr}) is not exported"
                    );
                    asked += 1;
                }
            }
        }
        assert!(asked >= 12);
    }

    #[test]
    fn the_exposition_holds_every_family_with_its_samples() {
        let me = node(1, true);
        let cluster = [me.clone(), node(2, true), node(3, false)];
        let m = std::sync::Arc::new(Metrics::default());
        m.moved(MoveCause::Balance, Some((80, 4096)));
        m.moved(MoveCause::Asked, Some((20, 1)));
        m.decided(Decision::Move);
        let text = render(
            &NodeFigures {
                status: &me,
                processes: &[],
                admin: &AdminState {
                    block: true,
                    ..AdminState::default()
                },
                cluster: &cluster,
                arrivals: (3, 1),
                peer_sessions: 2,
            },
            &m,
        );
        for line in [
            "openmosix_node_info{node=\"1\",name=\"n\\\"1\"} 1",
            "openmosix_load 150",
            "openmosix_memory_total_bytes 1073741824",
            "openmosix_admin{switch=\"block\"} 1",
            "openmosix_cluster_nodes{state=\"down\"} 1",
            "openmosix_migrations_out_total{cause=\"balance\",result=\"ok\"} 1",
            "openmosix_migration_out_bytes_total 4097",
            "openmosix_migration_freeze_seconds_bucket{le=\"0.025\"} 1",
            "openmosix_migration_freeze_seconds_bucket{le=\"0.1\"} 2",
            "openmosix_migration_freeze_seconds_bucket{le=\"+Inf\"} 2",
            "openmosix_migration_freeze_seconds_sum 0.1",
            "openmosix_migration_freeze_seconds_count 2",
            "openmosix_balancer_decisions_total{decision=\"move\"} 1",
            "openmosix_migrations_in_total{result=\"landed\"} 3",
            "openmosix_migrations_in_total{result=\"failed\"} 1",
            "openmosix_peer_sessions_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        // Every sample belongs to a family announced before it.
        let mut families = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                families.push(rest.split(' ').next().unwrap().to_string());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(
                    families.iter().any(|f| name == f
                        || name
                            .strip_prefix(f.as_str())
                            .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))),
                    "{name} has no family"
                );
            }
        }
    }
}
