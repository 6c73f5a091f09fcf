//! The KPIs over time, for the dashboard's charts (`GET /v1/kpis/history?days=N&step=day|hour`): per UTC day or
//! hour, the incidents detected, their MTTD and MTTR (`heal::kpi::Kpis` over that bucket's incidents), the
//! incidents by resolution, and the repair attempts by outcome.
//!
//! An incident counts in the bucket it was detected in; a repair attempt in the bucket it started in, among the
//! attempts of the incidents detected in the range (an attempt on an incident detected before the range is not
//! counted). Bounded: at most [`KPI_HISTORY_DAYS_MAX`] days (hours: [`KPI_HISTORY_HOURLY_DAYS_MAX`]) and
//! `REPORT_INCIDENTS_MAX` incidents read (`truncated` says so).

use std::collections::BTreeMap;

use heal::Timestamp;
use heal::kpi::Kpis;
use heal::learn::{AttemptOutcome, IncidentRecord};
use serde::{Deserialize, Serialize};

use super::{REPORT_INCIDENTS_MAX, name_of};
use crate::kb::SqliteKb;

/// Most days one answer covers.
pub const KPI_HISTORY_DAYS_MAX: u32 = 90;
/// Most days one answer covers by the hour.
pub const KPI_HISTORY_HOURLY_DAYS_MAX: u32 = 14;
/// Days covered without `days`.
pub const KPI_HISTORY_DAYS_DEFAULT: u32 = 7;

const US_PER_HOUR: u64 = 3_600 * 1_000_000;
const US_PER_DAY: u64 = 24 * US_PER_HOUR;

/// The query of `GET /v1/kpis/history`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiHistoryQuery {
    /// Days back from now, 1..=[`KPI_HISTORY_DAYS_MAX`] (default [`KPI_HISTORY_DAYS_DEFAULT`]).
    pub days: Option<String>,
    /// `day` or `hour` (default `hour` for up to two days, else `day`).
    pub step: Option<String>,
}

/// One bucket of the KPI history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Start (inclusive), µs since the epoch.
    pub from: Timestamp,
    /// End (exclusive), µs since the epoch.
    pub until: Timestamp,
    /// Incidents detected in the bucket.
    pub incidents: u64,
    /// Mean time to detect of those incidents, ms (`None`: nothing to measure).
    pub mttd_ms: Option<f64>,
    /// Mean time to repair of those repaired automatically, ms.
    pub mttr_ms: Option<f64>,
    /// Those incidents by resolution (`auto_repaired`, `escalated`, `open`...).
    pub by_resolution: BTreeMap<String, u64>,
    /// Repair attempts started in the bucket, by outcome (`succeeded`, `failed`, `rolled_back`, `dry_run`).
    pub repairs: BTreeMap<String, u64>,
}

/// The KPI history of a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiHistory {
    /// Start (inclusive), µs since the epoch: a UTC day or hour boundary.
    pub since: Timestamp,
    /// End (exclusive), µs since the epoch: the end of the current day or hour.
    pub until: Timestamp,
    /// `day` or `hour`.
    pub step: String,
    /// The step in µs.
    pub step_us: u64,
    /// More than `REPORT_INCIDENTS_MAX` incidents were detected in the range: only the first ones are counted.
    pub truncated: bool,
    /// Oldest first, one per step, empty ones included.
    pub buckets: Vec<Bucket>,
}

/// Why the KPI history could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TrendError {
    /// The query (a 400), naming the parameter and what is accepted.
    #[error("{0}")]
    BadQuery(String),
    /// The knowledge base failed.
    #[error(transparent)]
    Kb(#[from] heal::learn::KbError),
}

/// The range and step `q` asks for at `now`: `(since, until, step name, step µs)`.
pub fn range(
    q: &KpiHistoryQuery,
    now: Timestamp,
) -> Result<(Timestamp, Timestamp, &'static str, u64), TrendError> {
    let days = match q.days.as_deref().map(str::trim) {
        None => KPI_HISTORY_DAYS_DEFAULT,
        Some(d) => d
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=KPI_HISTORY_DAYS_MAX).contains(n))
            .ok_or_else(|| {
                TrendError::BadQuery(format!(
                    "days = {d:?}: a whole number of days, 1..={KPI_HISTORY_DAYS_MAX}"
                ))
            })?,
    };
    let (step, step_us) = match q.step.as_deref().map(str::trim) {
        None if days <= 2 => ("hour", US_PER_HOUR),
        None => ("day", US_PER_DAY),
        Some("day") => ("day", US_PER_DAY),
        Some("hour") => ("hour", US_PER_HOUR),
        Some(s) => {
            return Err(TrendError::BadQuery(format!(
                "step = {s:?}: one of day, hour"
            )));
        }
    };
    if step == "hour" && days > KPI_HISTORY_HOURLY_DAYS_MAX {
        return Err(TrendError::BadQuery(format!(
            "days = {days} with step = \"hour\": at most {KPI_HISTORY_HOURLY_DAYS_MAX} days by the hour; \
             use step = \"day\""
        )));
    }
    let until = now - now % step_us + step_us;
    let since = until.saturating_sub(u64::from(days) * US_PER_DAY);
    Ok((since, until, step, step_us))
}

/// The KPI history `q` asks for, from the knowledge base, at `now`.
pub fn build(kb: &SqliteKb, q: &KpiHistoryQuery, now: Timestamp) -> Result<KpiHistory, TrendError> {
    let (since, until, step, step_us) = range(q, now)?;
    let records = kb.incidents_detected_between(since, until, REPORT_INCIDENTS_MAX + 1)?;
    Ok(from_records(&records, since, until, step, step_us))
}

/// The KPI history of `records` (incidents detected in `[since, until)`), one bucket per `step_us`.
pub fn from_records(
    records: &[IncidentRecord],
    since: Timestamp,
    until: Timestamp,
    step: &str,
    step_us: u64,
) -> KpiHistory {
    let truncated = records.len() > REPORT_INCIDENTS_MAX;
    let records = &records[..records.len().min(REPORT_INCIDENTS_MAX)];
    let step_us = step_us.max(1);
    let n = usize::try_from(until.saturating_sub(since).div_ceil(step_us)).unwrap_or(0);
    let index = |at: Timestamp| -> Option<usize> {
        (at >= since && at < until)
            .then(|| usize::try_from((at - since) / step_us).ok())
            .flatten()
            .filter(|i| *i < n)
    };
    let mut grouped: Vec<Vec<IncidentRecord>> = vec![Vec::new(); n];
    let mut repairs: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); n];
    for r in records {
        if let Some(i) = index(r.detected_at) {
            grouped[i].push(r.clone());
        }
        for a in &r.attempts {
            if let Some(i) = index(a.started_at) {
                *repairs[i].entry(outcome_name(a.outcome)).or_insert(0) += 1;
            }
        }
    }
    let buckets = grouped
        .into_iter()
        .zip(repairs)
        .enumerate()
        .map(|(i, (group, repairs))| {
            let from = since + i as u64 * step_us;
            let kpis = Kpis::from_records(&group);
            let mut by_resolution = BTreeMap::new();
            for r in &group {
                *by_resolution.entry(name_of(&r.resolution)).or_insert(0) += 1;
            }
            Bucket {
                from,
                until: (from + step_us).min(until),
                incidents: group.len() as u64,
                mttd_ms: kpis.mttd_us.map(|v| v / 1_000.0),
                mttr_ms: kpis.mttr_us.map(|v| v / 1_000.0),
                by_resolution,
                repairs,
            }
        })
        .collect();
    KpiHistory {
        since,
        until,
        step: step.to_string(),
        step_us,
        truncated,
        buckets,
    }
}

fn outcome_name(o: AttemptOutcome) -> String {
    name_of(&o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use heal::learn::{AttemptRecord, Resolution};

    fn q(days: Option<&str>, step: Option<&str>) -> KpiHistoryQuery {
        KpiHistoryQuery {
            days: days.map(String::from),
            step: step.map(String::from),
        }
    }

    #[test]
    fn the_range_ends_with_the_current_step_and_bad_queries_name_the_parameter() {
        let now = 10 * US_PER_DAY + 5 * US_PER_HOUR + 17;
        let (since, until, step, _) = range(&q(None, None), now).unwrap();
        assert_eq!(
            (since, until, step),
            (4 * US_PER_DAY, 11 * US_PER_DAY, "day")
        );
        let (since, until, step, _) = range(&q(Some("1"), None), now).unwrap();
        assert_eq!(
            (since, until, step),
            (
                10 * US_PER_DAY + 6 * US_PER_HOUR - US_PER_DAY,
                10 * US_PER_DAY + 6 * US_PER_HOUR,
                "hour"
            )
        );
        for (days, step, want) in [
            (Some("0"), None, "days = \"0\""),
            (Some("91"), None, "1..=90"),
            (Some("week"), None, "days = \"week\""),
            (Some("3"), Some("minute"), "one of day, hour"),
            (Some("30"), Some("hour"), "at most 14 days by the hour"),
        ] {
            let e = range(&q(days, step), now).unwrap_err().to_string();
            assert!(e.contains(want), "{days:?} {step:?}: {e}");
        }
    }

    #[test]
    fn incidents_and_attempts_fall_in_their_buckets() {
        let record = |id: u64, detected_at: Timestamp, resolution| IncidentRecord {
            id,
            started_at: detected_at,
            detected_at,
            resolved_at: None,
            issues: vec![],
            crisis: heal::CrisisLevel::Obstacle,
            severity: heal::Severity::Sev2,
            root_cause: String::new(),
            blast_radius: vec![],
            decision: String::new(),
            attempts: vec![],
            resolution,
            report_markdown: None,
        };
        let attempt = |outcome, started_at| AttemptRecord {
            strategy: "s".into(),
            started_at,
            duration_us: 1,
            outcome,
            notes: Vec::new(),
            data_loss: heal::repair::DataLoss::None,
        };
        let mut repaired = record(1, US_PER_DAY + 10, Resolution::AutoRepaired);
        repaired.resolved_at = Some(US_PER_DAY + 10 + 2_000_000);
        repaired.attempts = vec![
            attempt(AttemptOutcome::Failed, US_PER_DAY + 20),
            // Started the next day: counted there.
            attempt(AttemptOutcome::Succeeded, 2 * US_PER_DAY + 1),
        ];
        let escalated = record(2, 3 * US_PER_DAY - 1, Resolution::Escalated);
        // Outside the range: not counted.
        let later = record(3, 5 * US_PER_DAY, Resolution::Open);
        let h = from_records(
            &[repaired, escalated, later],
            US_PER_DAY,
            4 * US_PER_DAY,
            "day",
            US_PER_DAY,
        );
        assert_eq!(h.buckets.len(), 3);
        let b = &h.buckets;
        assert_eq!(b.iter().map(|b| b.incidents).collect::<Vec<_>>(), [1, 1, 0]);
        assert_eq!(b[0].by_resolution.get("auto_repaired"), Some(&1));
        assert_eq!(b[0].mttr_ms, Some(2_000.0));
        assert_eq!(b[0].repairs.get("failed"), Some(&1));
        assert_eq!(b[1].repairs.get("succeeded"), Some(&1));
        assert_eq!(b[1].by_resolution.get("escalated"), Some(&1));
        assert_eq!(b[1].mttr_ms, None);
        assert!(b[2].repairs.is_empty() && b[2].by_resolution.is_empty());
        assert_eq!((b[2].from, b[2].until), (3 * US_PER_DAY, 4 * US_PER_DAY));
    }
}
