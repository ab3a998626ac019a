//! Writing and reading the summaries of blocks and rollups
//! ([`crate::summary::Summary`]).

use std::collections::BTreeMap;

use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::sql::{Val, insert_rows_then};
use crate::summary::{DAY_MS, HOUR_MS, MinMaxSum, Summary};

/// The summary columns, in the order [`values`] gives and [`read`] reads.
pub const COLUMNS: &str =
    "n, n_up, up_ms, down_ms, load_min, load_max, load_sum, used_min, used_max, used_sum, tmem_sum";
/// How many columns [`COLUMNS`] is.
pub const WIDTH: usize = 11;

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

/// Reads a summary from the [`WIDTH`] columns of `row` starting at `at`;
/// None when the row has none (a block written before summaries existed).
pub fn read(row: &AnyRow, at: usize) -> Result<Option<Summary>, sqlx::Error> {
    let opt = |i: usize| sqlx::Row::try_get::<Option<i64>, _>(row, at + i);
    let Some(n) = opt(0)? else {
        return Ok(None);
    };
    let req = |i: usize| opt(i).map(|v| v.unwrap_or(0));
    Ok(Some(Summary {
        n,
        n_up: req(1)?,
        up_ms: req(2)?,
        down_ms: req(3)?,
        load: MinMaxSum {
            min: opt(4)?,
            max: opt(5)?,
            sum: req(6)?,
        },
        used: MinMaxSum {
            min: opt(7)?,
            max: opt(8)?,
            sum: req(9)?,
        },
        tmem_sum: req(10)?,
    }))
}

/// Adds block summaries (node, block start, summary) to the hour and day
/// rollups, merging with what is there, in the caller's transaction.
pub async fn add_to_rollups(
    conn: &mut AnyConnection,
    history: i64,
    blocks: &[(u32, i64, Summary)],
) -> Result<(), sqlx::Error> {
    let mut merged: BTreeMap<(i64, i64, u32), Summary> = BTreeMap::new();
    for (node, t0, s) in blocks {
        for span in [HOUR_MS, DAY_MS] {
            merged
                .entry((span, t0.div_euclid(span) * span, *node))
                .or_default()
                .merge(s);
        }
    }
    let rows = merged
        .into_iter()
        .map(|((span, t0, node), s)| {
            let mut row = vec![
                Val::Int(history),
                Val::Int(span),
                Val::Int(t0),
                Val::Int(node.into()),
            ];
            row.extend(values(&s));
            row
        })
        .collect();
    let keep_min = |c: &str| {
        format!(
            "{c} = CASE WHEN rollups.{c} IS NULL OR excluded.{c} < rollups.{c} \
             THEN excluded.{c} ELSE rollups.{c} END"
        )
    };
    let keep_max = |c: &str| {
        format!(
            "{c} = CASE WHEN rollups.{c} IS NULL OR excluded.{c} > rollups.{c} \
             THEN excluded.{c} ELSE rollups.{c} END"
        )
    };
    let add = |c: &str| format!("{c} = rollups.{c} + excluded.{c}");
    let set = [
        add("n"),
        add("n_up"),
        add("up_ms"),
        add("down_ms"),
        keep_min("load_min"),
        keep_max("load_max"),
        add("load_sum"),
        keep_min("used_min"),
        keep_max("used_max"),
        add("used_sum"),
        add("tmem_sum"),
    ]
    .join(", ");
    insert_rows_then(
        conn,
        &format!("rollups (history, span_ms, t0, node, {COLUMNS})"),
        rows,
        &format!(" ON CONFLICT (history, span_ms, t0, node) DO UPDATE SET {set}"),
    )
    .await
}
