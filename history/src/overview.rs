//! What the analyzer draws and reports, computed from a history: the load and
//! memory overview of every node and of the cluster, downsampled to min/max
//! buckets so a chart never draws more than about two points per pixel
//! column, and the "find out" statistics of each node and the cluster.

use std::collections::BTreeMap;

use hpc::model::NodeId;

use crate::events::{Checkpoint, NodeChange};
use crate::query::{Bucket, History, NodeStats, Stat, downsample, node_stats};
use crate::sample::{Metric, Sample};
use crate::store::StoreError;

/// One node's (or the cluster's) lines of the overview.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lines {
    /// openMosix load per bucket.
    pub load: Vec<Bucket>,
    /// Used memory in percent per bucket.
    pub mem: Vec<Bucket>,
}

/// An interval in which a node was down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// The node.
    pub node: NodeId,
    /// From (ms).
    pub from_ms: i64,
    /// Until (ms; the end of the range when it is still down).
    pub to_ms: i64,
    /// Why.
    pub reason: String,
}

/// The analyzer's overview of `[from_ms, to_ms]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overview {
    /// Start of the range (ms).
    pub from_ms: i64,
    /// End of the range (ms).
    pub to_ms: i64,
    /// Bucket width (ms).
    pub bucket_ms: i64,
    /// Each node's lines.
    pub nodes: BTreeMap<NodeId, Lines>,
    /// The cluster's lines: mean load of the up nodes, memory used of all.
    pub cluster: Lines,
    /// Checkpoints in the range.
    pub checkpoints: Vec<Checkpoint>,
    /// Times nodes were down.
    pub outages: Vec<Outage>,
    /// First and last sample of the whole history.
    pub span: Option<(i64, i64)>,
}

impl History {
    /// The overview of `[from, to]` in `columns` buckets.
    pub async fn overview(
        &self,
        from: i64,
        to: i64,
        columns: usize,
    ) -> Result<Overview, StoreError> {
        let per_node = self.samples_by_node(None, from, to).await?;
        let metrics = [Metric::Load, Metric::UsedPercent];
        let mut nodes = BTreeMap::new();
        let mut bucket_ms = 1;
        for (node, samples) in &per_node {
            let mut series = downsample(samples, &metrics, from, to, columns).into_iter();
            let (Some(load), Some(mem)) = (series.next(), series.next()) else {
                continue;
            };
            bucket_ms = load.bucket_ms;
            nodes.insert(
                *node,
                Lines {
                    load: load.buckets,
                    mem: mem.buckets,
                },
            );
        }
        let cluster = cluster_lines(&per_node, from, to, columns);
        let changes = self.node_events(None, i64::MIN, to).await?;
        Ok(Overview {
            from_ms: from,
            to_ms: to,
            bucket_ms,
            nodes,
            cluster,
            checkpoints: self.checkpoints(from, to).await?,
            outages: outages(&changes, from, to),
            span: self.span().await?,
        })
    }

    /// The "find out" statistics over `[from, to]`: each node's and the
    /// cluster's load and memory, time up and down, processes started and
    /// moves in and out.
    pub async fn report(&self, from: i64, to: i64) -> Result<Report, StoreError> {
        let per_node = self.samples_by_node(None, from, to).await?;
        let h = self.history().id;
        let count = |sql: &'static str| async move {
            let rows = self.rows(sql, &[h, from, to]).await?;
            let mut out: BTreeMap<NodeId, u64> = BTreeMap::new();
            for r in &rows {
                let node = crate::store::sql::int(r, 0).map_err(|e| self.err(e))? as NodeId;
                let n = crate::store::sql::int(r, 1).map_err(|e| self.err(e))?;
                out.insert(node, u64::try_from(n).unwrap_or(0));
            }
            Ok::<_, StoreError>(out)
        };
        let started = count(
            "SELECT node, COUNT(*) FROM processes WHERE history = $1 \
             AND started_ms >= $2 AND started_ms <= $3 GROUP BY node",
        )
        .await?;
        let moves_in = count(
            "SELECT to_node, COUNT(*) FROM moves WHERE history = $1 \
             AND t >= $2 AND t <= $3 GROUP BY to_node",
        )
        .await?;
        let moves_out = count(
            "SELECT from_node, COUNT(*) FROM moves WHERE history = $1 \
             AND t >= $2 AND t <= $3 GROUP BY from_node",
        )
        .await?;
        let mut nodes = Vec::new();
        let mut all = Vec::new();
        for (node, samples) in &per_node {
            all.extend_from_slice(samples);
            let get = |m: &BTreeMap<NodeId, u64>| m.get(node).copied().unwrap_or(0);
            nodes.push(NodeReport {
                stats: node_stats(*node, samples),
                down_ms: down_ms(samples),
                started: get(&started),
                moves_in: get(&moves_in),
                moves_out: get(&moves_out),
                mem_percent: stat_of(samples, Metric::UsedPercent),
            });
        }
        let covered = all
            .iter()
            .map(|s| s.t_ms)
            .min()
            .zip(all.iter().map(|s| s.t_ms).max());
        let cluster = NodeReport {
            stats: {
                let mut s = node_stats(0, &[]);
                s.samples = nodes.iter().map(|n| n.stats.samples).sum();
                s.up_samples = nodes.iter().map(|n| n.stats.up_samples).sum();
                s.up_ms = nodes.iter().map(|n| n.stats.up_ms).sum();
                s.load = stat_of(&all, Metric::Load);
                s.used_mem_kib = stat_of(&all, Metric::UsedMem);
                s.mem_kib = stat_of(&all, Metric::Mem);
                s
            },
            down_ms: nodes.iter().map(|n| n.down_ms).sum(),
            started: started.values().sum(),
            moves_in: moves_in.values().sum(),
            moves_out: moves_out.values().sum(),
            mem_percent: stat_of(&all, Metric::UsedPercent),
        };
        Ok(Report {
            from_ms: from,
            to_ms: to,
            covered,
            nodes,
            cluster,
        })
    }
}

/// The "find out" statistics of one node (or of the cluster, node 0).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeReport {
    /// Load and memory while up, time up.
    pub stats: NodeStats,
    /// Time down (ms), counted as time up is.
    pub down_ms: i64,
    /// Processes first seen on it.
    pub started: u64,
    /// Moves that arrived.
    pub moves_in: u64,
    /// Moves that left.
    pub moves_out: u64,
    /// Used memory in percent while up.
    pub mem_percent: Option<Stat>,
}

/// The "find out" statistics of a range.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The range asked for (ms).
    pub from_ms: i64,
    /// Its end.
    pub to_ms: i64,
    /// First and last sample in it: the span the figures cover.
    pub covered: Option<(i64, i64)>,
    /// Per node.
    pub nodes: Vec<NodeReport>,
    /// The whole cluster (samples of every node together; counts summed).
    pub cluster: NodeReport,
}

/// min/max/avg of `metric` over the up samples.
fn stat_of(samples: &[Sample], metric: Metric) -> Option<Stat> {
    let mut vals = samples.iter().filter_map(|s| s.value(metric));
    let first = vals.next()?;
    let (mut min, mut max, mut sum, mut n) = (first, first, first, 1u64);
    for v in vals {
        min = min.min(v);
        max = max.max(v);
        sum += v;
        n += 1;
    }
    Some(Stat {
        min,
        max,
        avg: sum / n as f64,
    })
}

/// Time down: each down sample counts until the next sample, at most two
/// sampling steps, as [`node_stats`] counts time up.
fn down_ms(samples: &[Sample]) -> i64 {
    let flipped: Vec<Sample> = samples.iter().map(|s| Sample { up: !s.up, ..*s }).collect();
    node_stats(0, &flipped).up_ms
}

/// The cluster's lines: per bucket, the mean of the up nodes' loads and the
/// memory used of all up nodes in percent of their total.
fn cluster_lines(
    per_node: &BTreeMap<NodeId, Vec<Sample>>,
    from: i64,
    to: i64,
    columns: usize,
) -> Lines {
    // Per tick: mean load and summed memory over the nodes sampled then.
    let mut ticks: BTreeMap<i64, (f64, u64, u64, u64)> = BTreeMap::new();
    for s in per_node.values().flatten().filter(|s| s.up) {
        let e = ticks.entry(s.t_ms).or_default();
        e.0 += f64::from(s.load);
        e.1 += 1;
        e.2 += s.used_kib();
        e.3 += s.tmem_kib;
    }
    let merged: Vec<Sample> = ticks
        .into_iter()
        .map(|(t, (load, n, used, total))| Sample {
            t_ms: t,
            up: true,
            load: (load / n.max(1) as f64).round() as u32,
            tmem_kib: total,
            mem_kib: total.saturating_sub(used),
            ..Sample::default()
        })
        .collect();
    let mut series = downsample(
        &merged,
        &[Metric::Load, Metric::UsedPercent],
        from,
        to,
        columns,
    )
    .into_iter();
    Lines {
        load: series.next().map(|s| s.buckets).unwrap_or_default(),
        mem: series.next().map(|s| s.buckets).unwrap_or_default(),
    }
}

/// The intervals in `[from, to]` each node was down, from its up/down changes
/// (all of them up to `to`, so an outage that began earlier is included).
pub fn outages(changes: &[NodeChange], from: i64, to: i64) -> Vec<Outage> {
    let mut down: BTreeMap<NodeId, (i64, String)> = BTreeMap::new();
    let mut out = Vec::new();
    for c in changes {
        if c.up {
            if let Some((since, reason)) = down.remove(&c.node)
                && c.t_ms >= from
            {
                out.push(Outage {
                    node: c.node,
                    from_ms: since.max(from),
                    to_ms: c.t_ms,
                    reason,
                });
            }
        } else {
            down.entry(c.node).or_insert((c.t_ms, c.reason.clone()));
        }
    }
    for (node, (since, reason)) in down {
        out.push(Outage {
            node,
            from_ms: since.max(from),
            to_ms: to,
            reason,
        });
    }
    out.sort_by_key(|o| (o.from_ms, o.node));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(node: NodeId, t: i64, up: bool) -> NodeChange {
        NodeChange {
            node,
            t_ms: t,
            up,
            reason: if up { String::new() } else { "refused".into() },
        }
    }

    #[test]
    fn outages_are_clipped_to_the_range_and_open_ones_run_to_its_end() {
        let ch = [
            change(1, 0, true),
            change(1, 50, false),
            change(2, 120, false),
            change(1, 150, true),
            change(3, 10, false),
            change(3, 20, true),
        ];
        let o = outages(&ch, 100, 200);
        let got: Vec<(NodeId, i64, i64)> = o.iter().map(|o| (o.node, o.from_ms, o.to_ms)).collect();
        assert_eq!(got, [(1, 100, 150), (2, 120, 200)]);
        assert_eq!(o[0].reason, "refused");
    }
}
