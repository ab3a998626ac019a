//! Times as the views show them: local date and time from milliseconds since
//! the Unix epoch.

use chrono::{Local, TimeZone};

/// `2026-12-02 03:04:05` (local time).
pub fn datetime(ms: i64) -> String {
    match Local.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.format("%Y-%m-%d %H:%M:%S").to_string()
        }
        chrono::LocalResult::None => format!("{ms} ms"),
    }
}

/// A chart's axis label: the time of day, with the date when the span shown
/// is longer than a day.
pub fn axis_label(ms: i64, span_ms: i64) -> String {
    let fmt = if span_ms > 2 * 86_400_000 {
        "%m-%d"
    } else if span_ms > 86_400_000 {
        "%m-%d %H:%M"
    } else if span_ms > 600_000 {
        "%H:%M"
    } else {
        "%H:%M:%S"
    };
    match Local.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.format(fmt).to_string()
        }
        chrono::LocalResult::None => String::new(),
    }
}

/// A duration for a person: `3 h 12 min`, `45 s`, `820 ms`.
pub fn duration(ms: i64) -> String {
    let s = ms / 1000;
    if ms < 1000 {
        format!("{ms} ms")
    } else if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min {} s", s / 60, s % 60)
    } else if s < 172_800 {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    } else {
        format!("{} d {} h", s / 86_400, (s % 86_400) / 3600)
    }
}
