//! Queryable metric history: what `GET /v1/history` and `medic history` answer, from the knowledge base's
//! `metric_history` rows (the engine's samples of every cycle, kept `metrics.history_retention_hours`).
//!
//! Times are RFC 3339 (`2026-12-05T12:00:00Z`, an offset or fractional seconds allowed), a date (`2026-12-05`,
//! midnight UTC), `now`, a duration back from now (`-1h`, `-90m`, `-2d`), or µs since the epoch. A query answers
//! at most [`HISTORY_POINTS_MAX`] points: more raw points in the range, or more steps, is a 400 naming the limit.
//! Anomalies the engine raised on the metric (anomaly issues of the incidents detected in the range, whose resource
//! is the metric) come with the points, so a chart can mark them.

use heal::Timestamp;
use heal::issue::IssueKind;
use serde_json::{Value, json};

use crate::kb::SqliteKb;
use crate::operators::parse_duration;

/// Most points (raw or buckets) one history query answers.
pub const HISTORY_POINTS_MAX: u64 = 10_000;
/// Most metric names `GET /v1/history` lists.
pub const HISTORY_METRICS_MAX: usize = 10_000;
/// Most incidents read for a query's anomaly marks.
pub const HISTORY_INCIDENTS_MAX: usize = 10_000;
/// The range when no `since` is given: the last hour.
pub const DEFAULT_SINCE: &str = "-1h";

const US_PER_S: u64 = 1_000_000;

/// Why a history query was refused (bad input, a 400) or failed (the knowledge base, a 500).
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The query itself: a 400.
    #[error("{0}")]
    BadQuery(String),
    /// The knowledge base failed.
    #[error(transparent)]
    Kb(#[from] heal::learn::KbError),
}

/// A history query, as given (strings from the URL or the command line).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// The metric.
    pub metric: Option<String>,
    /// From when (default `-1h`).
    pub since: Option<String>,
    /// Until when (default `now`).
    pub until: Option<String>,
    /// Bucket width (a duration: `1m`, `30s`); without it, raw points.
    pub step: Option<String>,
}

/// Parses a time as the module doc describes, relative to `now`; the error names `key` and the accepted forms.
pub fn parse_time(key: &str, text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let t = text.trim();
    let bad = |why: &str| {
        format!(
            "{key} = {text:?}: {why}; write RFC 3339 (2026-12-05T12:00:00Z), a date (2026-12-05), now, a duration \
             back from now (-1h, -30m, -2d) or µs since the epoch"
        )
    };
    if t == "now" {
        return Ok(now);
    }
    if let Some(d) = t.strip_prefix('-') {
        let us = parse_duration(d).map_err(|e| bad(&e))?;
        return Ok(now.saturating_sub(us));
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<u64>().map_err(|_| bad("too large"));
    }
    parse_rfc3339(t).map_err(|why| bad(&why))
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (a space may stand for `T`) → µs since the epoch.
pub fn parse_rfc3339(t: &str) -> Result<Timestamp, String> {
    let b = t.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let s = t
            .get(from..from + len)
            .ok_or_else(|| "too short".to_string())?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("{s:?} is not a number"));
        }
        s.parse::<i64>().map_err(|e| e.to_string())
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err("not a date".into());
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return Err("no such date".into());
    }
    let mut secs = days_from_civil(y, mo, d) * 86_400;
    let mut frac_us: i64 = 0;
    if b.len() > 10 {
        if !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
            || b.len() < 19
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err("a time must be HH:MM:SS after a T".into());
        }
        let (h, mi, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
        if h > 23 || mi > 59 || s > 60 {
            return Err("no such time of day".into());
        }
        secs += h * 3_600 + mi * 60 + s.min(59);
        let mut i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &t[start..i];
            if digits.is_empty() {
                return Err("no digits after the decimal point".into());
            }
            let six: String = digits
                .chars()
                .chain(std::iter::repeat('0'))
                .take(6)
                .collect();
            frac_us = six.parse::<i64>().map_err(|e| e.to_string())?;
        }
        match &t[i..] {
            "Z" | "z" => {}
            off if off.len() == 6
                && (off.starts_with('+') || off.starts_with('-'))
                && &off[3..4] == ":" =>
            {
                let oh = num(i + 1, 2)?;
                let om = num(i + 4, 2)?;
                if oh > 23 || om > 59 {
                    return Err("no such offset".into());
                }
                let off_s = oh * 3_600 + om * 60;
                secs -= if off.starts_with('+') { off_s } else { -off_s };
            }
            "" => return Err("a time needs a zone: Z or ±HH:MM".into()),
            other => return Err(format!("{other:?} is not a zone (Z or ±HH:MM)")),
        }
    }
    if secs < 0 {
        return Err("before 1970".into());
    }
    Ok(secs as u64 * US_PER_S + frac_us as u64)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// µs since the epoch as RFC 3339 UTC to the second (`2026-12-05T12:00:00Z`).
pub fn rfc3339(us: Timestamp) -> String {
    let mut s = crate::cli::render::utc(us);
    s.replace_range(10..11, "T");
    s.push('Z');
    s
}

/// `GET /v1/history` without a metric: every metric name with its point count and time span.
pub fn list(kb: &SqliteKb) -> Result<Value, HistoryError> {
    let series = kb.metric_series(HISTORY_METRICS_MAX)?;
    Ok(json!({
        "metrics": series,
        "metrics_max": HISTORY_METRICS_MAX,
    }))
}

/// Answers one history query at `now`: `{"metric","since","until","step_us","points":[{"at","value"(,"min","max",
/// "count")}],"anomalies":[{"at","score","incident","summary"}],"points_max"}`.
pub fn query(kb: &SqliteKb, q: &HistoryQuery, now: Timestamp) -> Result<Value, HistoryError> {
    let bad = HistoryError::BadQuery;
    let Some(metric) = q.metric.as_deref().map(str::trim).filter(|m| !m.is_empty()) else {
        return list(kb);
    };
    if metric.len() > crate::kb::METRIC_NAME_BYTES_MAX {
        return Err(bad(format!(
            "metric: {} bytes, over metric_name_bytes_max = {}",
            metric.len(),
            crate::kb::METRIC_NAME_BYTES_MAX
        )));
    }
    let since =
        parse_time("since", q.since.as_deref().unwrap_or(DEFAULT_SINCE), now).map_err(bad)?;
    let until = match q.until.as_deref() {
        Some(u) => parse_time("until", u, now).map_err(bad)?,
        None => now,
    };
    if since > until {
        return Err(bad(format!(
            "since ({}) is after until ({}): an empty range",
            rfc3339(since),
            rfc3339(until)
        )));
    }
    let step_us = match q.step.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => {
            let us = parse_duration(s).map_err(|e| bad(format!("step: {e}")))?;
            if us == 0 {
                return Err(bad("step: must be longer than 0".into()));
            }
            Some(us)
        }
        None => None,
    };
    let points: Vec<Value> = match step_us {
        Some(step) => {
            let steps = (until - since) / step + 1;
            if steps > HISTORY_POINTS_MAX {
                return Err(bad(format!(
                    "{steps} steps of {} from {} to {}, over history_points_max = {HISTORY_POINTS_MAX}: take a \
                     longer step or a shorter range",
                    q.step.as_deref().unwrap_or_default(),
                    rfc3339(since),
                    rfc3339(until)
                )));
            }
            kb.metric_buckets(metric, since, until, step)?
                .into_iter()
                .map(|b| json!(b))
                .collect()
        }
        None => {
            let n = kb.metric_count(metric, since, until)?;
            if n > HISTORY_POINTS_MAX {
                return Err(bad(format!(
                    "{n} points of {metric} from {} to {}, over history_points_max = {HISTORY_POINTS_MAX}: pass a \
                     step (e.g. step=1m) or a shorter range",
                    rfc3339(since),
                    rfc3339(until)
                )));
            }
            kb.metric_points(metric, since, until, HISTORY_POINTS_MAX as usize)?
                .into_iter()
                .map(|(at, value)| json!({"at": at, "value": value}))
                .collect()
        }
    };
    Ok(json!({
        "metric": metric,
        "since": since,
        "until": until,
        "since_rfc3339": rfc3339(since),
        "until_rfc3339": rfc3339(until),
        "step_us": step_us,
        "points": points,
        "anomalies": anomalies(kb, metric, since, until)?,
        "points_max": HISTORY_POINTS_MAX,
    }))
}

/// The anomalies raised on `metric` in `[since, until]`: anomaly issues (resource = the metric) of the incidents
/// detected then.
fn anomalies(
    kb: &SqliteKb,
    metric: &str,
    since: Timestamp,
    until: Timestamp,
) -> Result<Vec<Value>, HistoryError> {
    let records =
        kb.incidents_detected_between(since, until.saturating_add(1), HISTORY_INCIDENTS_MAX)?;
    let mut out = Vec::new();
    for r in &records {
        for i in r
            .issues
            .iter()
            .filter(|i| i.kind == IssueKind::Anomaly && i.resource == metric)
        {
            out.push(json!({
                "at": i.detected_at,
                "score": i.score,
                "incident": r.id,
                "summary": i.summary,
            }));
        }
    }
    Ok(out)
}

/// A one-line sparkline of `values` (▁ to █, scaled between their minimum and maximum), at most `width` wide
/// (points averaged down to fit).
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() || width == 0 {
        return String::new();
    }
    let cols = finite.len().min(width);
    let per = finite.len() as f64 / cols as f64;
    let avg: Vec<f64> = (0..cols)
        .map(|c| {
            let from = (c as f64 * per) as usize;
            let to = (((c + 1) as f64 * per) as usize).clamp(from + 1, finite.len());
            finite[from..to].iter().sum::<f64>() / (to - from) as f64
        })
        .collect();
    let lo = avg.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = avg.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    avg.iter()
        .map(|v| {
            if hi > lo {
                BARS[(((v - lo) / (hi - lo)) * 7.0).round().clamp(0.0, 7.0) as usize]
            } else {
                BARS[3]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_form() {
        let now = 1_700_000_000 * US_PER_S;
        assert_eq!(parse_time("since", "now", now), Ok(now));
        assert_eq!(parse_time("since", "-1h", now), Ok(now - 3_600 * US_PER_S));
        assert_eq!(parse_time("since", "42", now), Ok(42));
        assert_eq!(
            parse_time("since", "1970-01-02", now),
            Ok(86_400 * US_PER_S)
        );
        assert_eq!(
            parse_time("since", "2023-11-14T22:13:20Z", now),
            Ok(1_700_000_000 * US_PER_S)
        );
        assert_eq!(
            parse_time("since", "2023-11-14T23:13:20.5+01:00", now),
            Ok(1_700_000_000 * US_PER_S + 500_000)
        );
        assert_eq!(rfc3339(1_700_000_000 * US_PER_S), "2023-11-14T22:13:20Z");
        for bad in [
            "yesterday",
            "2023-13-01",
            "2023-02-30",
            "2023-11-14T22:13:20",
            "-1 fortnight",
            "",
        ] {
            let e = parse_time("since", bad, now).unwrap_err();
            assert!(e.starts_with("since = "), "{bad}: {e}");
        }
    }

    #[test]
    fn sparkline_scales_between_min_and_max() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0, 7.0], 10), "▁▂▃█");
        assert_eq!(sparkline(&[5.0, 5.0], 10), "▄▄");
        assert_eq!(sparkline(&[0.0, 0.0, 7.0, 7.0], 2), "▁█");
        assert_eq!(sparkline(&[], 10), "");
    }
}
