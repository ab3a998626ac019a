//! Text rendering shared by the tools.

use hpc::model::{Liveness, NodeStatus};

/// The cluster as a table: one row per node, down nodes with their reason.
pub fn nodes_table(nodes: &[NodeStatus]) -> String {
    let mut out = format!(
        "{:>5}  {:<22} {:<5} {:>6} {:>7} {:>4} {:>10} {:>10}",
        "ID", "NODE", "UP", "LOAD", "SPEED", "CPUS", "FREE MiB", "TOTAL MiB"
    );
    for n in nodes {
        let up = n.status == Liveness::Up;
        out.push_str(&format!(
            "\n{:>5}  {:<22} {:<5} {:>6} {:>7} {:>4} {:>10} {:>10}",
            n.id,
            n.name,
            if up { "yes" } else { "no" },
            n.load,
            n.speed,
            n.cpus,
            n.mem >> 20,
            n.tmem >> 20
        ));
        if let (false, Some(r)) = (up, &n.reason) {
            out.push_str(&format!("  ({r})"));
        }
    }
    out
}
