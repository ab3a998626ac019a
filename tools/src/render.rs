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

/// One migration, as `migrate` prints it.
pub fn migration_line(r: &hpc::protocol::MigrationReport) -> String {
    let pulled = if r.mode == hpc::protocol::MigrationMode::Postcopy {
        format!(
            "; {:.1} MiB pulled {} after it resumed, source released after {} ms",
            r.pulled_bytes as f64 / (1024.0 * 1024.0),
            r.memory_path.label(),
            r.released_ms
        )
    } else if r.streamed_bytes > 0 {
        format!(
            "; {:.1} MiB streamed {} during the checkpoint",
            r.streamed_bytes as f64 / (1024.0 * 1024.0),
            r.memory_path.label()
        )
    } else {
        String::new()
    };
    format!(
        "process {}:{} moved from node {} to node {} (pid {} there) in {} ms, {}: {:.1} MiB in {} files; dump {} ms, transfer {} ms, restore {} ms; frozen {} ms{}",
        r.home,
        r.home_pid,
        r.from,
        r.to,
        r.pid,
        r.total_ms,
        r.mode,
        r.bytes as f64 / (1024.0 * 1024.0),
        r.files,
        r.dump_ms,
        r.transfer_ms,
        r.restore_ms,
        r.freeze_ms,
        pulled
    )
}
