//! What the analyzer draws and reports, computed from a history: the load and
//! memory overview of every node and of the cluster, downsampled to min/max
//! buckets so a chart never draws more than about two points per pixel
//! column, and the "find out" statistics of each node and the cluster.

use std::collections::BTreeMap;

use hpc::model::NodeId;

use sqlx::Row;

use crate::codec;
use crate::events::{Checkpoint, NodeChange};
use crate::query::{Bucket, History, Stat, downsample};
use crate::sample::{Metric, Sample};
use crate::store::StoreError;
use crate::store::sql::int;
use crate::store::summaries;
use crate::summary::{DAY_MS, HOUR_MS, MINUTE_MS, Summary};

/// One node's (or the cluster's) lines of the overview.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lines {
    /// openMosix load per bucket.
    pub load: Vec<Bucket>,
    /// Used memory in percent per bucket.
    pub mem: Vec<Bucket>,
}

/// An interval in which a node was down.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// Where the figures came from.
    pub level: Option<Level>,
}

/// Where an overview's figures come from, by the span it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Level {
    /// Every sample (spans up to about 4 samples per bucket).
    Raw,
    /// The minute series.
    Minutes,
    /// The series of this span (ms): an hour or a day.
    Rollup(i64),
}

impl Level {
    /// The coarsest level that still gives about four values per bucket.
    pub fn for_span(span_ms: i64, columns: usize) -> Level {
        let limit = 4 * columns.max(1) as i64;
        if span_ms / 1000 <= limit {
            Level::Raw
        } else if span_ms / 60_000 <= limit {
            Level::Minutes
        } else if span_ms / HOUR_MS <= limit {
            Level::Rollup(HOUR_MS)
        } else {
            Level::Rollup(DAY_MS)
        }
    }
}

/// A node's summary over `[t0, t1]`.
type Piece = (NodeId, i64, i64, Summary);

impl History {
    /// The overview of `[from, to]` in `columns` buckets, from every sample
    /// for short spans and from the stored summaries for long ones.
    pub async fn overview(
        &self,
        from: i64,
        to: i64,
        columns: usize,
    ) -> Result<Overview, StoreError> {
        self.overview_at(Level::for_span(to - from, columns), from, to, columns)
            .await
    }

    /// [`History::overview`] from the figures of `level` (the benchmarks
    /// compare the levels).
    pub async fn overview_at(
        &self,
        level: Level,
        from: i64,
        to: i64,
        columns: usize,
    ) -> Result<Overview, StoreError> {
        let (nodes, cluster, bucket_ms, level) = match level {
            Level::Raw => {
                let (n, c, b) = self.raw_lines(from, to, columns).await?;
                (n, c, b, level)
            }
            _ => {
                let pieces = self.summaries(level, from, to).await?;
                if pieces.is_empty() && self.has_blocks(from, to).await? {
                    // A history written before the series existed: decode.
                    let (n, c, b) = self.raw_lines(from, to, columns).await?;
                    (n, c, b, Level::Raw)
                } else {
                    let (n, c, b) = summary_lines(&pieces, from, to, columns);
                    (n, c, b, level)
                }
            }
        };
        let changes = self.node_events(None, i64::MIN, to).await?;
        Ok(Overview {
            from_ms: from,
            to_ms: to,
            bucket_ms,
            level: Some(level),
            nodes,
            cluster,
            checkpoints: self.checkpoints(from, to).await?,
            outages: outages(&changes, from, to),
            span: self.span().await?,
        })
    }

    /// Whether any block overlaps `[from, to]`.
    async fn has_blocks(&self, from: i64, to: i64) -> Result<bool, StoreError> {
        let rows = self
            .rows(
                "SELECT t0 FROM blocks WHERE history = $1 AND t1 >= $2 AND t0 <= $3 LIMIT 1",
                &[self.history().id, from, to],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn raw_lines(
        &self,
        from: i64,
        to: i64,
        columns: usize,
    ) -> Result<(BTreeMap<NodeId, Lines>, Lines, i64), StoreError> {
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
        Ok((
            nodes,
            cluster_lines(&per_node, from, to, columns),
            bucket_ms,
        ))
    }

    /// Every node's summaries at `level` that overlap `[from, to]` (the
    /// minute series for [`Level::Raw`] and [`Level::Minutes`]), with the
    /// staged ticks (not folded yet) at the minute level.
    pub async fn summaries(
        &self,
        level: Level,
        from: i64,
        to: i64,
    ) -> Result<Vec<Piece>, StoreError> {
        let h = self.history().id;
        let span = match level {
            Level::Rollup(span) => span,
            Level::Raw | Level::Minutes => MINUTE_MS,
        };
        let row = span * summaries::SLOTS;
        let rows = self
            .rows(
                "SELECT node, t0, data FROM series WHERE history = $1 AND span_ms = $2 \
                 AND t0 <= $3 AND t0 > $4",
                &[h, span, to, from - row],
            )
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let (node, t0) = (
                int(r, 0).map_err(|e| self.err(e))? as NodeId,
                int(r, 1).map_err(|e| self.err(e))?,
            );
            let data: Vec<u8> = r.try_get(2).map_err(|e| self.err(e))?;
            for (slot, s) in codec::decode_summaries(&data)? {
                let a = t0 + i64::from(slot) * span;
                let b = a + span - 1;
                if b >= from && a <= to {
                    out.push((node, a, b, s));
                }
            }
        }
        if span == MINUTE_MS {
            let ticks = self
                .rows(
                    "SELECT t, data FROM ticks WHERE history = $1 AND t >= $2 AND t <= $3 ORDER BY t",
                    &[h, from, to],
                )
                .await?;
            for r in &ticks {
                let t = int(r, 0).map_err(|e| self.err(e))?;
                let data: Vec<u8> = r.try_get(1).map_err(|e| self.err(e))?;
                for ns in codec::decode_tick(t, &data)? {
                    out.push((ns.node, t, t, Summary::of(&[ns.sample], 1000)));
                }
            }
        }
        Ok(out)
    }

    /// The "find out" statistics over `[from, to]`: each node's and the
    /// cluster's load and memory, time up and down, processes started and
    /// moves in and out. The figures come from the stored summaries (whole
    /// minutes, or hours or days for long spans): [`Report::covered`] says
    /// which span they cover.
    pub async fn report(&self, from: i64, to: i64) -> Result<Report, StoreError> {
        let level = match Level::for_span(to - from, 200) {
            Level::Raw => Level::Minutes,
            l => l,
        };
        let pieces = self.summaries(level, from, to).await?;
        let h = self.history().id;
        let count = |sql: &'static str| async move {
            let rows = self.rows(sql, &[h, from, to]).await?;
            let mut out: BTreeMap<NodeId, u64> = BTreeMap::new();
            for r in &rows {
                let node = int(r, 0).map_err(|e| self.err(e))? as NodeId;
                let n = int(r, 1).map_err(|e| self.err(e))?;
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
        let mut per_node: BTreeMap<NodeId, Summary> = BTreeMap::new();
        let mut all = Summary::default();
        for (node, _, _, s) in &pieces {
            per_node.entry(*node).or_default().merge(s);
            all.merge(s);
        }
        let covered = (all.n > 0).then_some((all.first_ms, all.last_ms));
        let get = |m: &BTreeMap<NodeId, u64>, n: NodeId| m.get(&n).copied().unwrap_or(0);
        let nodes = per_node
            .iter()
            .map(|(n, s)| {
                NodeReport::of(
                    *n,
                    s,
                    get(&started, *n),
                    get(&moves_in, *n),
                    get(&moves_out, *n),
                )
            })
            .collect();
        let cluster = NodeReport::of(
            0,
            &all,
            started.values().sum(),
            moves_in.values().sum(),
            moves_out.values().sum(),
        );
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeReport {
    /// The node (0: the cluster).
    pub node: NodeId,
    /// What the figures are made of (samples, time up and down, min/max/sum).
    pub summary: Summary,
    /// Load while up.
    pub load: Option<Stat>,
    /// Used memory in percent while up.
    pub mem_percent: Option<Stat>,
    /// Processes first seen on it.
    pub started: u64,
    /// Moves that arrived.
    pub moves_in: u64,
    /// Moves that left.
    pub moves_out: u64,
}

impl NodeReport {
    fn of(node: NodeId, s: &Summary, started: u64, moves_in: u64, moves_out: u64) -> Self {
        let load = match (s.load.min, s.load.max, s.load_avg()) {
            (Some(min), Some(max), Some(avg)) => Some(Stat {
                min: min as f64,
                max: max as f64,
                avg,
            }),
            _ => None,
        };
        Self {
            node,
            summary: *s,
            load,
            mem_percent: s
                .mem_percent()
                .map(|(avg, min, max)| Stat { min, max, avg }),
            started,
            moves_in,
            moves_out,
        }
    }
}

/// The "find out" statistics of a range.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// The range asked for (ms).
    pub from_ms: i64,
    /// Its end.
    pub to_ms: i64,
    /// The span the figures cover: the first and the last sample summarised
    /// (whole minutes, hours or days around the range asked for).
    pub covered: Option<(i64, i64)>,
    /// Per node.
    pub nodes: Vec<NodeReport>,
    /// The whole cluster (every node's samples together; counts summed).
    pub cluster: NodeReport,
}

/// Buckets from summaries: per node min/max/mean load and used memory %; the
/// cluster's mean load and memory used of all in percent of their total.
fn summary_lines(
    pieces: &[Piece],
    from: i64,
    to: i64,
    columns: usize,
) -> (BTreeMap<NodeId, Lines>, Lines, i64) {
    let columns = columns.max(1) as i64;
    let width = (((to - from).max(1) + columns - 1) / columns).max(1);
    let mut per: BTreeMap<NodeId, BTreeMap<i64, Summary>> = BTreeMap::new();
    let mut all: BTreeMap<i64, Summary> = BTreeMap::new();
    for (node, t0, t1, s) in pieces {
        let (a, b) = if s.n > 0 {
            (s.first_ms, s.last_ms)
        } else {
            (*t0, *t1)
        };
        let mid = a + (b - a) / 2;
        let b = ((mid - from) / width).clamp(0, columns - 1);
        per.entry(*node).or_default().entry(b).or_default().merge(s);
        all.entry(b).or_default().merge(s);
    }
    let lines = |m: &BTreeMap<i64, Summary>, band: bool| {
        let mut l = Lines::default();
        for (b, s) in m {
            let t_ms = from + b * width;
            if let (Some(avg), Some(min), Some(max)) = (s.load_avg(), s.load.min, s.load.max) {
                let (min, max) = if band {
                    (min as f64, max as f64)
                } else {
                    (avg, avg)
                };
                l.load.push(Bucket {
                    t_ms,
                    samples: s.n_up as u64,
                    stat: Stat { min, max, avg },
                });
            }
            if let Some((avg, min, max)) = s.mem_percent() {
                let (min, max) = if band { (min, max) } else { (avg, avg) };
                l.mem.push(Bucket {
                    t_ms,
                    samples: s.n_up as u64,
                    stat: Stat { min, max, avg },
                });
            }
        }
        l
    };
    (
        per.iter().map(|(n, m)| (*n, lines(m, true))).collect(),
        lines(&all, false),
        width,
    )
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
