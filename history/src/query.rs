//! The query library the analyzer and the process history read: per-node series
//! downsampled to min/max/avg buckets, checkpoints, the processes of a node at
//! any instant, the moves of a process, and statistics for a node or the cluster.
//! Works the same on a current history and on archives, SQLite or PostgreSQL.

use std::collections::BTreeMap;

use hpc::model::NodeId;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::codec;
use crate::events::{Checkpoint, NodeChange, ProcMove, ProcStart};
use crate::sample::{Metric, Sample};
use crate::store::location;
use crate::store::sql::{int, query};
use crate::store::{HistoryRef, START_COLUMNS, START_WIDTH, StoreError, latest_move, read_start};

/// A node the history has seen.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeRow {
    /// openMosix id.
    pub id: NodeId,
    /// Host name.
    pub name: String,
    /// Agent address.
    pub addr: String,
    /// First seen (ms).
    pub first_ms: i64,
}

/// min/max/avg of one metric over some samples.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stat {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Mean.
    pub avg: f64,
}

/// A running min/max/sum.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    min: f64,
    max: f64,
    sum: f64,
    n: u64,
}

impl Acc {
    fn add(&mut self, v: f64) {
        if self.n == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.sum += v;
        self.n += 1;
    }

    fn stat(&self) -> Option<Stat> {
        (self.n > 0).then(|| Stat {
            min: self.min,
            max: self.max,
            avg: self.sum / self.n as f64,
        })
    }
}

/// Load, used and free memory of the up samples seen so far.
#[derive(Debug, Clone, Copy, Default)]
struct UpFigures {
    load: Acc,
    used: Acc,
    mem: Acc,
}

impl UpFigures {
    /// Adds a sample (a down sample has no figures and adds nothing).
    fn add(&mut self, s: &Sample) {
        if s.up {
            self.load.add(f64::from(s.load));
            self.used.add(s.used_kib() as f64);
            self.mem.add(s.mem_kib as f64);
        }
    }
}

/// One bucket of a downsampled series.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bucket {
    /// Bucket start (ms).
    pub t_ms: i64,
    /// Samples of an up node in it.
    pub samples: u64,
    /// min/max/avg over them.
    pub stat: Stat,
}

/// A downsampled series of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The metric.
    pub metric: Metric,
    /// Bucket width (ms).
    pub bucket_ms: i64,
    /// The buckets that hold samples of an up node, in time order (gaps are
    /// times the node was down or not recorded).
    pub buckets: Vec<Bucket>,
}

/// A process as the history knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessRecord {
    /// How it was first recorded: number, identity, first node and PID, command, owner, start.
    pub start: ProcStart,
    /// End (ms), None while running (or running when the history closed).
    pub ended_ms: Option<i64>,
    /// Why it ended ("exited", ...).
    pub end_reason: Option<String>,
    /// Exit code, when known.
    pub exit_code: Option<i32>,
}

/// A process at one instant: where it was and under which PID.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessAt {
    /// The process.
    pub process: ProcessRecord,
    /// Node it ran on at that instant.
    pub node: NodeId,
    /// Its PID there.
    pub pid: i32,
}

/// Statistics of one node over a range.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeStats {
    /// The node.
    pub node: NodeId,
    /// Samples in the range (up or down).
    pub samples: u64,
    /// Samples while up.
    pub up_samples: u64,
    /// Time up (ms): each up sample counts until the next sample, at most two
    /// sampling steps (so collector downtime is not counted).
    pub up_ms: i64,
    /// Load while up.
    pub load: Option<Stat>,
    /// Used memory (KiB) while up.
    pub used_mem_kib: Option<Stat>,
    /// Logical free memory (KiB) while up.
    pub mem_kib: Option<Stat>,
}

/// Statistics of the whole cluster over a range.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClusterStats {
    /// Each node's statistics.
    pub nodes: Vec<NodeStats>,
    /// Samples of all nodes.
    pub samples: u64,
    /// Samples of up nodes.
    pub up_samples: u64,
    /// Node-time up, summed (ms).
    pub up_ms: i64,
    /// Load over every up sample of every node.
    pub load: Option<Stat>,
    /// Used memory (KiB) over every up sample.
    pub used_mem_kib: Option<Stat>,
    /// Logical free memory (KiB) over every up sample.
    pub mem_kib: Option<Stat>,
}

/// An open history, for reading.
pub struct History {
    pool: AnyPool,
    history: HistoryRef,
}

impl History {
    /// Opens `history` read-only.
    pub async fn open(history: &HistoryRef) -> Result<Self, StoreError> {
        let pool = location::connect(&history.location, false).await?;
        Ok(Self {
            pool,
            history: history.clone(),
        })
    }

    /// Which history this is.
    pub fn history(&self) -> &HistoryRef {
        &self.history
    }

    pub(crate) fn err(&self, e: sqlx::Error) -> StoreError {
        StoreError::db(&self.history.location, e)
    }

    pub(crate) async fn rows(&self, sql: &str, binds: &[i64]) -> Result<Vec<AnyRow>, StoreError> {
        let mut q = query(sql.to_string());
        for b in binds {
            q = q.bind(*b);
        }
        q.fetch_all(&self.pool).await.map_err(|e| self.err(e))
    }

    /// The nodes it has seen.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let rows = self
            .rows(
                "SELECT id, name, addr, first_ms FROM nodes WHERE history = $1 ORDER BY id",
                &[self.history.id],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeRow {
                    id: int(r, 0)? as NodeId,
                    name: r.try_get(1)?,
                    addr: r.try_get(2)?,
                    first_ms: int(r, 3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.err(e))
    }

    /// The first and last sample times, if any.
    pub async fn span(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let h = self.history.id;
        // Each bound its own subquery, so each is one step down an index
        // (a year of blocks is not scanned).
        let rows = self
            .rows(
                "SELECT (SELECT t0 FROM blocks WHERE history = $1 ORDER BY t1 LIMIT 1), \
                 (SELECT MAX(t1) FROM blocks WHERE history = $2) \
                 UNION ALL SELECT (SELECT MIN(t) FROM ticks WHERE history = $3), \
                 (SELECT MAX(t) FROM ticks WHERE history = $4)",
                &[h, h, h, h],
            )
            .await?;
        let mut span: Option<(i64, i64)> = None;
        for r in &rows {
            let (a, b) = (
                r.try_get::<Option<i64>, _>(0).map_err(|e| self.err(e))?,
                r.try_get::<Option<i64>, _>(1).map_err(|e| self.err(e))?,
            );
            if let (Some(a), Some(b)) = (a, b) {
                span = Some(span.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
            }
        }
        Ok(span)
    }

    /// Every sample of every node (or of `node`) in `[from, to]`, per node in time order.
    pub async fn samples_by_node(
        &self,
        node: Option<NodeId>,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<NodeId, Vec<Sample>>, StoreError> {
        let h = self.history.id;
        let blocks = match node {
            Some(n) => {
                self.rows(
                    "SELECT node, data FROM blocks WHERE history = $1 AND node = $2 \
                     AND t1 >= $3 AND t0 <= $4 ORDER BY t0",
                    &[h, n.into(), from, to],
                )
                .await?
            }
            None => {
                self.rows(
                    "SELECT node, data FROM blocks WHERE history = $1 \
                     AND t1 >= $2 AND t0 <= $3 ORDER BY t0",
                    &[h, from, to],
                )
                .await?
            }
        };
        let mut out: BTreeMap<NodeId, Vec<Sample>> = BTreeMap::new();
        let in_range = |s: &Sample| s.t_ms >= from && s.t_ms <= to;
        for r in &blocks {
            let n = int(r, 0).map_err(|e| self.err(e))? as NodeId;
            let data: Vec<u8> = r.try_get(1).map_err(|e| self.err(e))?;
            let samples = codec::decode_block(&data)?;
            out.entry(n)
                .or_default()
                .extend(samples.into_iter().filter(in_range));
        }
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
                if node.is_none_or(|n| n == ns.node) {
                    out.entry(ns.node).or_default().push(ns.sample);
                }
            }
        }
        for v in out.values_mut() {
            v.sort_by_key(|s| s.t_ms);
        }
        Ok(out)
    }

    /// One node's samples in `[from, to]`, in time order.
    pub async fn samples(
        &self,
        node: NodeId,
        from: i64,
        to: i64,
    ) -> Result<Vec<Sample>, StoreError> {
        Ok(self
            .samples_by_node(Some(node), from, to)
            .await?
            .remove(&node)
            .unwrap_or_default())
    }

    /// `metrics` of `node` over `[from, to]`, downsampled to `buckets` equal
    /// buckets with min/max/avg each, so spikes survive.
    pub async fn series(
        &self,
        node: NodeId,
        metrics: &[Metric],
        from: i64,
        to: i64,
        buckets: usize,
    ) -> Result<Vec<Series>, StoreError> {
        let samples = self.samples(node, from, to).await?;
        Ok(downsample(&samples, metrics, from, to, buckets))
    }

    /// When nodes went up or down in `[from, to]` (all nodes, or `node`), in time order.
    pub async fn node_events(
        &self,
        node: Option<NodeId>,
        from: i64,
        to: i64,
    ) -> Result<Vec<NodeChange>, StoreError> {
        let rows = self
            .rows(
                "SELECT node, t, up, reason FROM node_events WHERE history = $1 \
                 AND t >= $2 AND t <= $3 ORDER BY t, node",
                &[self.history.id, from, to],
            )
            .await?;
        let all = rows
            .iter()
            .map(|r| {
                Ok(NodeChange {
                    node: int(r, 0)? as NodeId,
                    t_ms: int(r, 1)?,
                    up: int(r, 2)? != 0,
                    reason: r.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(|e| self.err(e))?;
        Ok(all
            .into_iter()
            .filter(|c| node.is_none_or(|n| n == c.node))
            .collect())
    }

    /// Checkpoints in `[from, to]`.
    pub async fn checkpoints(&self, from: i64, to: i64) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = self
            .rows(
                "SELECT t, label FROM checkpoints WHERE history = $1 AND t >= $2 AND t <= $3 ORDER BY t",
                &[self.history.id, from, to],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    t_ms: int(r, 0)?,
                    label: r.try_get(1)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.err(e))
    }

    /// The processes running at `t_ms` (on `node`, or anywhere), with the node
    /// and PID each had at that instant.
    pub async fn processes_at(
        &self,
        node: Option<NodeId>,
        t_ms: i64,
    ) -> Result<Vec<ProcessAt>, StoreError> {
        let h = self.history.id;
        let rows = self
            .rows(
                &format!(
                    "SELECT {START_COLUMNS}, {END_COLUMNS}, {}, {} \
                     FROM processes p WHERE p.history = $1 AND p.started_ms <= $4 \
                     AND (p.ended_ms IS NULL OR p.ended_ms > $5) ORDER BY p.id",
                    latest_move("to_node", Some("$2")),
                    latest_move("pid", Some("$3"))
                ),
                &[h, t_ms, t_ms, t_ms, t_ms],
            )
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let process = process_record(r).map_err(|e| self.err(e))?;
            let moved_to = r
                .try_get::<Option<i64>, _>(PROCESS_WIDTH)
                .map_err(|e| self.err(e))?;
            let moved_pid = r
                .try_get::<Option<i64>, _>(PROCESS_WIDTH + 1)
                .map_err(|e| self.err(e))?;
            let at = ProcessAt {
                node: moved_to.map_or(process.start.node, |n| n as NodeId),
                pid: moved_pid.map_or(process.start.pid, |p| p as i32),
                process,
            };
            if node.is_none_or(|n| n == at.node) {
                out.push(at);
            }
        }
        Ok(out)
    }

    /// The processes whose identity is `home`/`home_pid` (several when the PID
    /// was reused), oldest first.
    pub async fn find_process(
        &self,
        home: NodeId,
        home_pid: i32,
    ) -> Result<Vec<ProcessRecord>, StoreError> {
        let rows = self
            .rows(
                &format!(
                    "SELECT {START_COLUMNS}, {END_COLUMNS} FROM processes p WHERE p.history = $1 \
                     AND p.home = $2 AND p.home_pid = $3 ORDER BY p.started_ms"
                ),
                &[self.history.id, home.into(), home_pid.into()],
            )
            .await?;
        rows.iter()
            .map(process_record)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.err(e))
    }

    /// The moves of process `id`, in time order.
    pub async fn moves(&self, id: i64) -> Result<Vec<ProcMove>, StoreError> {
        let rows = self
            .rows(
                "SELECT t, from_node, to_node, pid, duration_ms, freeze_ms, bytes, why, mode, \
                 released_ms, pulled_bytes FROM moves \
                 WHERE history = $1 AND process = $2 ORDER BY t",
                &[self.history.id, id],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ProcMove {
                    id,
                    t_ms: int(r, 0)?,
                    from: int(r, 1)? as NodeId,
                    to: int(r, 2)? as NodeId,
                    pid: int(r, 3)? as i32,
                    duration_ms: r.try_get(4)?,
                    freeze_ms: r.try_get(5)?,
                    bytes: r.try_get(6)?,
                    why: r.try_get(7)?,
                    mode: r
                        .try_get::<Option<String>, _>(8)?
                        .and_then(|m| m.parse().ok()),
                    released_ms: r.try_get(9)?,
                    pulled_bytes: r.try_get(10)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.err(e))
    }

    /// Statistics of `node` over `[from, to]`.
    pub async fn node_stats(
        &self,
        node: NodeId,
        from: i64,
        to: i64,
    ) -> Result<NodeStats, StoreError> {
        let samples = self.samples(node, from, to).await?;
        Ok(node_stats(node, &samples))
    }

    /// Statistics of the whole cluster over `[from, to]`.
    pub async fn cluster_stats(&self, from: i64, to: i64) -> Result<ClusterStats, StoreError> {
        let per_node = self.samples_by_node(None, from, to).await?;
        let mut all = UpFigures::default();
        let mut nodes = Vec::new();
        for (node, samples) in &per_node {
            samples.iter().for_each(|s| all.add(s));
            nodes.push(node_stats(*node, samples));
        }
        Ok(ClusterStats {
            samples: nodes.iter().map(|n| n.samples).sum(),
            up_samples: nodes.iter().map(|n| n.up_samples).sum(),
            up_ms: nodes.iter().map(|n| n.up_ms).sum(),
            load: all.load.stat(),
            used_mem_kib: all.used.stat(),
            mem_kib: all.mem.stat(),
            nodes,
        })
    }

    /// Closes the connections.
    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// The `processes p` columns [`process_record`] reads after [`START_COLUMNS`].
const END_COLUMNS: &str = "p.ended_ms, p.end_reason, p.exit_code";
/// How many columns [`START_COLUMNS`] and [`END_COLUMNS`] are.
const PROCESS_WIDTH: usize = START_WIDTH + 3;

fn process_record(r: &AnyRow) -> Result<ProcessRecord, sqlx::Error> {
    Ok(ProcessRecord {
        start: read_start(r)?,
        ended_ms: r.try_get(START_WIDTH)?,
        end_reason: r.try_get(START_WIDTH + 1)?,
        exit_code: r
            .try_get::<Option<i64>, _>(START_WIDTH + 2)?
            .map(|c| c as i32),
    })
}

/// Downsamples `samples` (one node, time order) over `[from, to]` into `buckets`
/// equal buckets per metric; down samples carry no figures and are skipped.
pub fn downsample(
    samples: &[Sample],
    metrics: &[Metric],
    from: i64,
    to: i64,
    buckets: usize,
) -> Vec<Series> {
    let buckets = buckets.max(1);
    let width = ((to - from).max(1) + buckets as i64 - 1) / buckets as i64;
    let width = width.max(1);
    metrics
        .iter()
        .map(|&metric| {
            let mut accs: BTreeMap<i64, Acc> = BTreeMap::new();
            for s in samples {
                if let Some(v) = s.value(metric) {
                    let b = ((s.t_ms - from) / width).clamp(0, buckets as i64 - 1);
                    accs.entry(b).or_default().add(v);
                }
            }
            Series {
                metric,
                bucket_ms: width,
                buckets: accs
                    .into_iter()
                    .filter_map(|(b, acc)| {
                        Some(Bucket {
                            t_ms: from + b * width,
                            samples: acc.n,
                            stat: acc.stat()?,
                        })
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Statistics of one node's samples (time order).
pub fn node_stats(node: NodeId, samples: &[Sample]) -> NodeStats {
    let step = crate::summary::median_step(samples);
    let mut figures = UpFigures::default();
    let mut up_ms = 0;
    for (i, s) in samples.iter().enumerate() {
        if !s.up {
            continue;
        }
        figures.add(s);
        up_ms += samples
            .get(i + 1)
            .map_or(step, |next| (next.t_ms - s.t_ms).min(2 * step));
    }
    NodeStats {
        node,
        samples: samples.len() as u64,
        up_samples: figures.load.n,
        up_ms,
        load: figures.load.stat(),
        used_mem_kib: figures.used.stat(),
        mem_kib: figures.mem.stat(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: i64, up: bool, load: u32) -> Sample {
        Sample {
            t_ms: t,
            up,
            load,
            tmem_kib: 100,
            mem_kib: 40,
            ..Sample::default()
        }
    }

    #[test]
    fn downsampling_keeps_spikes_and_skips_down_samples() {
        let samples: Vec<Sample> = (0..100)
            .map(|i| s(i * 1000, i != 50, if i == 17 { 999 } else { 10 }))
            .collect();
        let series = downsample(&samples, &[Metric::Load], 0, 100_000, 10);
        let b = &series[0].buckets;
        assert_eq!(b.len(), 10);
        assert_eq!(b[1].stat.max, 999.0);
        assert_eq!(b[1].stat.min, 10.0);
        assert!((b[1].stat.avg - (9.0 * 10.0 + 999.0) / 10.0).abs() < 1e-9);
        assert_eq!(b[5].samples, 9, "the down sample carries no figures");
    }

    #[test]
    fn up_time_counts_up_samples_only_and_caps_gaps() {
        let mut samples: Vec<Sample> = (0..10).map(|i| s(i * 1000, i < 5, 1)).collect();
        samples.push(s(100_000, true, 1));
        let st = node_stats(3, &samples);
        assert_eq!(st.up_samples, 6);
        assert_eq!(st.up_ms, 5 * 1000 + 1000);
        assert_eq!(st.used_mem_kib.unwrap().avg, 60.0);
    }
}
