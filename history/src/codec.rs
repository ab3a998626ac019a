//! The two binary encodings of samples.
//!
//! - A **tick** holds every node's sample of one instant. The collector writes one
//!   per tick (a single row, so a tick costs one insert however large the cluster).
//! - A **block** holds one node's samples over [`crate::store::BLOCK_TICKS`] ticks,
//!   column by column: each column is its first value followed by the differences
//!   between neighbours (differences of differences for the time column), as
//!   zig-zag varints, and runs of zero differences collapse into one token. A
//!   figure that does not change (CPUs, speed, total memory, a steady clock) costs
//!   about one byte per block, not per sample.

use std::collections::BTreeMap;

use crate::sample::{NodeSample, Sample};
use crate::summary::{MinMaxSum, Summary};
use hpc::model::NodeId;

/// Format tag of both encodings.
const VERSION: u8 = 1;
/// Columns of a block, in order.
const COLUMNS: usize = 9;

/// A blob that is not a valid tick or block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt sample data: {0}")]
pub struct CodecError(&'static str);

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A cursor over an encoded blob.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        let b = *self.data.get(self.pos).ok_or(CodecError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError("varint too long"))
    }

    fn done(&self) -> bool {
        self.pos == self.data.len()
    }
}

fn columns(s: &Sample) -> [i64; COLUMNS] {
    [
        s.t_ms,
        i64::from(s.up),
        i64::from(s.cpus),
        i64::from(s.speed),
        i64::from(s.load),
        i64::from(s.util),
        s.mem_kib as i64,
        s.rmem_kib as i64,
        s.tmem_kib as i64,
    ]
}

fn from_columns(c: [i64; COLUMNS]) -> Result<Sample, CodecError> {
    let u32_of = |v: i64| u32::try_from(v).map_err(|_| CodecError("value out of range"));
    let u64_of = |v: i64| u64::try_from(v).map_err(|_| CodecError("value out of range"));
    Ok(Sample {
        t_ms: c[0],
        up: c[1] != 0,
        cpus: u32_of(c[2])?,
        speed: u32_of(c[3])?,
        load: u32_of(c[4])?,
        util: u32_of(c[5])?,
        mem_kib: u64_of(c[6])?,
        rmem_kib: u64_of(c[7])?,
        tmem_kib: u64_of(c[8])?,
    })
}

/// Encodes one tick: every node's sample at `t_ms` (the samples' own times are
/// not stored; they are all `t_ms`).
pub fn encode_tick(samples: &[NodeSample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + samples.len() * 20);
    out.push(VERSION);
    put_varint(&mut out, samples.len() as u64);
    for ns in samples {
        put_varint(&mut out, u64::from(ns.node));
        for v in &columns(&ns.sample)[1..] {
            put_varint(&mut out, *v as u64);
        }
    }
    out
}

/// Decodes a tick written at `t_ms`.
pub fn decode_tick(t_ms: i64, data: &[u8]) -> Result<Vec<NodeSample>, CodecError> {
    let mut r = Reader::new(data);
    if r.byte()? != VERSION {
        return Err(CodecError("unknown tick version"));
    }
    let n = r.varint()?;
    let mut out = Vec::with_capacity(n.min(1 << 16) as usize);
    for _ in 0..n {
        let node = NodeId::try_from(r.varint()?).map_err(|_| CodecError("node id"))?;
        let mut c = [0i64; COLUMNS];
        c[0] = t_ms;
        for v in &mut c[1..] {
            *v = i64::try_from(r.varint()?).map_err(|_| CodecError("value out of range"))?;
        }
        out.push(NodeSample {
            node,
            sample: from_columns(c)?,
        });
    }
    if !r.done() {
        return Err(CodecError("trailing bytes"));
    }
    Ok(out)
}

/// Writes one column's differences, collapsing runs of zeros.
fn put_diffs(out: &mut Vec<u8>, diffs: impl Iterator<Item = i64>) {
    let mut zeros: u64 = 0;
    for d in diffs {
        if d == 0 {
            zeros += 1;
            continue;
        }
        if zeros > 0 {
            put_varint(out, (zeros << 1) | 1);
            zeros = 0;
        }
        put_varint(out, zigzag(d) << 1);
    }
    if zeros > 0 {
        put_varint(out, (zeros << 1) | 1);
    }
}

/// Encodes one node's samples (in time order) as a block.
pub fn encode_block(samples: &[Sample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + samples.len() * 6);
    out.push(VERSION);
    put_varint(&mut out, samples.len() as u64);
    let rows: Vec<[i64; COLUMNS]> = samples.iter().map(columns).collect();
    for col in 0..COLUMNS {
        let Some(first) = rows.first() else { break };
        let cell = |r: &[i64; COLUMNS]| r.get(col).copied().unwrap_or_default();
        put_varint(&mut out, zigzag(cell(first)));
        let values = rows.iter().map(cell);
        let diffs: Vec<i64> = values
            .clone()
            .zip(values.skip(1))
            .map(|(a, b)| b.wrapping_sub(a))
            .collect();
        if col == 0 {
            // Time: the step between ticks is steady, so store its changes.
            let mut prev = 0i64;
            put_diffs(
                &mut out,
                diffs.iter().map(|d| {
                    let dd = d.wrapping_sub(prev);
                    prev = *d;
                    dd
                }),
            );
        } else {
            put_diffs(&mut out, diffs.into_iter());
        }
    }
    out
}

/// Reads `n - 1` differences of one column.
fn read_diffs(r: &mut Reader<'_>, n: usize) -> Result<Vec<i64>, CodecError> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let token = r.varint()?;
        if token & 1 == 1 {
            let run = usize::try_from(token >> 1).map_err(|_| CodecError("run"))?;
            if run == 0 || out.len() + run > n {
                return Err(CodecError("zero run overflows the block"));
            }
            out.resize(out.len() + run, 0);
        } else {
            out.push(unzigzag(token >> 1));
        }
    }
    Ok(out)
}

/// Decodes a block.
pub fn decode_block(data: &[u8]) -> Result<Vec<Sample>, CodecError> {
    let mut r = Reader::new(data);
    if r.byte()? != VERSION {
        return Err(CodecError("unknown block version"));
    }
    let n = usize::try_from(r.varint()?).map_err(|_| CodecError("count"))?;
    if n > data.len() * 64 {
        return Err(CodecError("sample count larger than the data allows"));
    }
    let mut rows = vec![[0i64; COLUMNS]; n];
    if n == 0 {
        return if r.done() {
            Ok(Vec::new())
        } else {
            Err(CodecError("trailing bytes"))
        };
    }
    for col in 0..COLUMNS {
        let mut value = unzigzag(r.varint()?);
        let diffs = read_diffs(&mut r, n - 1)?;
        let mut step = 0i64;
        for (row, d) in rows
            .iter_mut()
            .zip(std::iter::once(None).chain(diffs.into_iter().map(Some)))
        {
            if let Some(d) = d {
                if col == 0 {
                    step = step.wrapping_add(d);
                    value = value.wrapping_add(step);
                } else {
                    value = value.wrapping_add(d);
                }
            }
            if let Some(slot) = row.get_mut(col) {
                *slot = value;
            }
        }
    }
    if !r.done() {
        return Err(CodecError("trailing bytes"));
    }
    rows.into_iter().map(from_columns).collect()
}

/// Encodes a row of packed summaries: each entry's slot (its place in the
/// row's period, in units of the row's span) and its summary.
pub fn encode_summaries(entries: &BTreeMap<u32, Summary>) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 24);
    put_varint(&mut out, entries.len() as u64);
    for (slot, s) in entries {
        put_varint(&mut out, u64::from(*slot));
        let flags = u8::from(s.load.min.is_some()) | (u8::from(s.used.min.is_some()) << 1);
        out.push(flags);
        for v in [
            s.first_ms,
            s.last_ms - s.first_ms,
            s.n,
            s.n_up,
            s.up_ms,
            s.down_ms,
        ] {
            put_varint(&mut out, zigzag(v));
        }
        if let (Some(a), Some(b)) = (s.load.min, s.load.max) {
            put_varint(&mut out, zigzag(a));
            put_varint(&mut out, zigzag(b));
        }
        put_varint(&mut out, zigzag(s.load.sum));
        if let (Some(a), Some(b)) = (s.used.min, s.used.max) {
            put_varint(&mut out, zigzag(a));
            put_varint(&mut out, zigzag(b));
        }
        put_varint(&mut out, zigzag(s.used.sum));
        put_varint(&mut out, zigzag(s.tmem_sum));
    }
    out
}

/// Decodes a row of [`encode_summaries`].
pub fn decode_summaries(data: &[u8]) -> Result<BTreeMap<u32, Summary>, CodecError> {
    let mut r = Reader::new(data);
    let n = r.varint()?;
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let slot = u32::try_from(r.varint()?).map_err(|_| CodecError("slot"))?;
        let flags = r.byte()?;
        let mut next = || r.varint().map(unzigzag);
        let first_ms = next()?;
        let last_ms = first_ms + next()?;
        let (n, n_up, up_ms, down_ms) = (next()?, next()?, next()?, next()?);
        let load_mm = if flags & 1 != 0 {
            (Some(next()?), Some(next()?))
        } else {
            (None, None)
        };
        let load_sum = next()?;
        let used_mm = if flags & 2 != 0 {
            (Some(next()?), Some(next()?))
        } else {
            (None, None)
        };
        let used_sum = next()?;
        let tmem_sum = next()?;
        out.insert(
            slot,
            Summary {
                first_ms,
                last_ms,
                n,
                n_up,
                up_ms,
                down_ms,
                load: MinMaxSum {
                    min: load_mm.0,
                    max: load_mm.1,
                    sum: load_sum,
                },
                used: MinMaxSum {
                    min: used_mm.0,
                    max: used_mm.1,
                    sum: used_sum,
                },
                tmem_sum,
            },
        );
    }
    if !r.done() {
        return Err(CodecError("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: i64) -> Sample {
        Sample {
            t_ms: 1_700_000_000_000 + i * 1000 + if i == 7 { 3 } else { 0 },
            up: i != 5,
            cpus: 4,
            speed: 10_000,
            load: (i * 37 % 400) as u32,
            util: 100,
            mem_kib: 8_000_000 - (i as u64) * 12,
            rmem_kib: 6_000_000 + (i as u64 % 3) * 4,
            tmem_kib: 16_000_000,
        }
    }

    #[test]
    fn block_round_trips_and_is_small() {
        let samples: Vec<Sample> = (0..60).map(sample).collect();
        let blob = encode_block(&samples);
        assert_eq!(decode_block(&blob).unwrap(), samples);
        assert!(
            blob.len() < 60 * 8,
            "block of 60 samples is {} bytes",
            blob.len()
        );
    }

    #[test]
    fn steady_block_costs_bytes_per_block_not_per_sample() {
        let samples: Vec<Sample> = (0..60)
            .map(|i| Sample {
                t_ms: i * 1000,
                up: true,
                cpus: 2,
                ..Sample::default()
            })
            .collect();
        let blob = encode_block(&samples);
        assert_eq!(decode_block(&blob).unwrap(), samples);
        assert!(blob.len() < 30, "{} bytes", blob.len());
    }

    #[test]
    fn tick_round_trips() {
        let ticks: Vec<NodeSample> = (0..5)
            .map(|i| NodeSample {
                node: i as u32 + 1,
                sample: Sample {
                    t_ms: 42,
                    ..sample(i)
                },
            })
            .collect();
        assert_eq!(decode_tick(42, &encode_tick(&ticks)).unwrap(), ticks);
    }

    #[test]
    fn corrupt_blobs_are_errors_not_panics() {
        let blob = encode_block(&(0..10).map(sample).collect::<Vec<_>>());
        for cut in 0..blob.len() {
            assert!(decode_block(&blob[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_block(&[1, 200, 200, 200]).is_err());
        assert!(decode_tick(0, &[9]).is_err());
        let mut long = blob.clone();
        long.push(0);
        assert!(decode_block(&long).is_err());
    }

    #[test]
    fn packed_summaries_round_trip() {
        let samples: Vec<Sample> = (0..60)
            .map(|i| Sample {
                t_ms: i * 1000,
                up: i != 7,
                load: i as u32 * 3,
                tmem_kib: 1000,
                mem_kib: 300,
                ..Sample::default()
            })
            .collect();
        let mut rows = BTreeMap::new();
        rows.insert(0, Summary::of(&samples, 1000));
        rows.insert(63, Summary::of(&[Sample::down(5)], 1000));
        let data = encode_summaries(&rows);
        assert_eq!(decode_summaries(&data).unwrap(), rows);
        assert!(decode_summaries(&data[..data.len() - 1]).is_err());
    }
}
