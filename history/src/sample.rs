//! One node's figures at one instant, as the history keeps them.

use hpc::model::{Liveness, NodeId, NodeStatus};

/// One node-sample: what `/proc/hpc/nodes/<id>/*` showed at `t_ms`.
/// Memory is kept in KiB (what `/proc/meminfo` gives, so nothing is lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// When (ms since the Unix epoch; the collector's tick time).
    pub t_ms: i64,
    /// Whether the node answered.
    pub up: bool,
    /// Online CPUs.
    pub cpus: u32,
    /// openMosix speed.
    pub speed: u32,
    /// openMosix load (100 = one busy standard CPU).
    pub load: u32,
    /// Utilisation, percent.
    pub util: u32,
    /// Logical free memory, KiB.
    pub mem_kib: u64,
    /// Physical free memory, KiB.
    pub rmem_kib: u64,
    /// Total memory, KiB.
    pub tmem_kib: u64,
}

impl Sample {
    /// The sample of a node that answered with `status`, taken at `t_ms`.
    pub fn from_status(t_ms: i64, status: &NodeStatus) -> Self {
        Self {
            t_ms,
            up: status.status == Liveness::Up,
            cpus: status.cpus,
            speed: status.speed,
            load: status.load,
            util: status.util,
            mem_kib: status.mem / 1024,
            rmem_kib: status.rmem / 1024,
            tmem_kib: status.tmem / 1024,
        }
    }

    /// The sample of a node that did not answer at `t_ms`: down, no figures.
    pub fn down(t_ms: i64) -> Self {
        Self {
            t_ms,
            ..Self::default()
        }
    }

    /// Used memory in KiB (total minus logical free).
    pub fn used_kib(&self) -> u64 {
        self.tmem_kib.saturating_sub(self.mem_kib)
    }

    /// The value of `metric` (None when the node was down: a down node has no figures).
    pub fn value(&self, metric: Metric) -> Option<f64> {
        if !self.up {
            return None;
        }
        Some(match metric {
            Metric::Load => f64::from(self.load),
            Metric::Util => f64::from(self.util),
            Metric::Cpus => f64::from(self.cpus),
            Metric::Speed => f64::from(self.speed),
            Metric::Mem => self.mem_kib as f64,
            Metric::Rmem => self.rmem_kib as f64,
            Metric::Tmem => self.tmem_kib as f64,
            Metric::UsedMem => self.used_kib() as f64,
            Metric::UsedPercent if self.tmem_kib == 0 => 0.0,
            Metric::UsedPercent => self.used_kib() as f64 * 100.0 / self.tmem_kib as f64,
        })
    }
}

/// A node sample tagged with its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSample {
    /// The node.
    pub node: NodeId,
    /// Its sample.
    pub sample: Sample,
}

/// A per-node series the query library can draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// openMosix load.
    Load,
    /// Utilisation, percent.
    Util,
    /// Online CPUs.
    Cpus,
    /// openMosix speed.
    Speed,
    /// Logical free memory, KiB.
    Mem,
    /// Physical free memory, KiB.
    Rmem,
    /// Total memory, KiB.
    Tmem,
    /// Used memory (tmem - mem), KiB.
    UsedMem,
    /// Used memory in percent of the total.
    UsedPercent,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 9] = [
        Metric::Load,
        Metric::Util,
        Metric::Cpus,
        Metric::Speed,
        Metric::Mem,
        Metric::Rmem,
        Metric::Tmem,
        Metric::UsedMem,
        Metric::UsedPercent,
    ];

    /// The name used on the command line and in charts.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Load => "load",
            Metric::Util => "util",
            Metric::Cpus => "cpus",
            Metric::Speed => "speed",
            Metric::Mem => "mem",
            Metric::Rmem => "rmem",
            Metric::Tmem => "tmem",
            Metric::UsedMem => "used",
            Metric::UsedPercent => "used%",
        }
    }
}
