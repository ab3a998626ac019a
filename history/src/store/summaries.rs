//! Writing and reading summaries ([`crate::summary::Summary`]): each block's
//! own (columns of `blocks`, for SQL), and the minute, hour and day series
//! (`series`, 64 packed to a row) the overviews read.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::AnyConnection;

use super::sql::{Val, insert_rows_then, int, query};
use crate::codec;
use crate::summary::{DAY_MS, HOUR_MS, MINUTE_MS, Summary};

/// The summary columns of `blocks`, in the order [`values`] gives.
pub const COLUMNS: &str =
    "n, n_up, up_ms, down_ms, load_min, load_max, load_sum, used_min, used_max, used_sum, tmem_sum";
/// A summary's column values.
pub fn values(s: &Summary) -> Vec<Val> {
    vec![
        Val::Int(s.n),
        Val::Int(s.n_up),
        Val::Int(s.up_ms),
        Val::Int(s.down_ms),
        Val::OptInt(s.load.min),
        Val::OptInt(s.load.max),
        Val::Int(s.load.sum),
        Val::OptInt(s.used.min),
        Val::OptInt(s.used.max),
        Val::Int(s.used.sum),
        Val::Int(s.tmem_sum),
    ]
}

/// Summaries packed in one `series` row.
pub const SLOTS: i64 = 64;

/// The row start and slot of the entry of span `span` holding time `t`.
pub fn slot_of(span: i64, t: i64) -> (i64, u32) {
    let row = span * SLOTS;
    let t0 = t.div_euclid(row) * row;
    (t0, ((t - t0) / span) as u32)
}

/// Adds block summaries (node, block start, summary) to the minute, hour and
/// day series, merging with what is stored, in the caller's transaction.
pub async fn add_to_series(
    conn: &mut AnyConnection,
    history: i64,
    blocks: &[(u32, i64, Summary)],
) -> Result<(), sqlx::Error> {
    let mut fresh: BTreeMap<(i64, i64, u32), BTreeMap<u32, Summary>> = BTreeMap::new();
    for (node, t, s) in blocks {
        for span in [MINUTE_MS, HOUR_MS, DAY_MS] {
            let (t0, slot) = slot_of(span, *t);
            fresh
                .entry((span, t0, *node))
                .or_default()
                .entry(slot)
                .or_default()
                .merge(s);
        }
    }
    // What the touched rows hold already.
    let keys: BTreeSet<(i64, i64)> = fresh.keys().map(|(s, t, _)| (*s, *t)).collect();
    for (span, t0) in keys {
        let rows = query(
            "SELECT node, data FROM series WHERE history = $1 AND span_ms = $2 AND t0 = $3".into(),
        )
        .bind(history)
        .bind(span)
        .bind(t0)
        .fetch_all(&mut *conn)
        .await?;
        for r in &rows {
            let node = int(r, 0)? as u32;
            let Some(entries) = fresh.get_mut(&(span, t0, node)) else {
                continue;
            };
            let data: Vec<u8> = sqlx::Row::try_get(r, 1)?;
            match codec::decode_summaries(&data) {
                Ok(stored) => {
                    for (slot, s) in stored {
                        entries.entry(slot).or_default().merge(&s);
                    }
                }
                Err(e) => {
                    tracing::error!(span, t0, node, error = %e, "replacing an undecodable series row")
                }
            }
        }
    }
    let rows = fresh
        .into_iter()
        .map(|((span, t0, node), entries)| {
            vec![
                Val::Int(history),
                Val::Int(span),
                Val::Int(t0),
                Val::Int(node.into()),
                Val::Bytes(codec::encode_summaries(&entries)),
            ]
        })
        .collect();
    insert_rows_then(
        conn,
        "series (history, span_ms, t0, node, data)",
        rows,
        " ON CONFLICT (history, span_ms, t0, node) DO UPDATE SET data = excluded.data",
    )
    .await
}
