//! Daily and weekly reports from the knowledge base: what happened in a period and how self-healing did — incidents
//! by severity and kind, what was repaired automatically and how fast, what was escalated and what is still open at
//! the period's end, the KPIs against the targets of `[report]`, the top recurring problems, the strategies whose
//! success rate fell against the window before (`strategies`) and how each derived index's health figures moved
//! (`index_health`). One [`Report`]
//! (JSON, what `GET /v1/reports/{daily|weekly}` answers) rendered as Markdown ([`Report::markdown`]) or as one
//! self-contained HTML page with an inline SVG chart ([`Report::html`]).
//!
//! Periods are UTC days: a daily report covers `[DATE 00:00Z, DATE+1 00:00Z)`, a weekly one the seven days ending
//! with DATE. Without a date, today (the day so far).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use heal::Timestamp;
use heal::kpi::Kpis;
use heal::learn::{AttemptOutcome, IncidentRecord, Resolution};
use serde::{Deserialize, Serialize};

use crate::history::{days_from_civil, rfc3339};
use crate::kb::SqliteKb;

pub mod escalation;
pub mod incident;
pub mod index_health;
pub mod schedule;
pub mod strategies;
pub mod trend;

/// Most incidents one report reads from its period (a busier period is reported on its first ones, `truncated`).
pub const REPORT_INCIDENTS_MAX: usize = 10_000;
/// Most incidents one report lists by name in each list (counts cover them all).
pub const REPORT_ITEMS_MAX: usize = 50;
/// How many recurring problems are listed.
pub const TOP_RECURRING: usize = 10;

const US_PER_DAY: u64 = 86_400 * 1_000_000;

/// `[report]`: the targets the KPIs are held against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Mean time to detect, at most this many milliseconds.
    pub mttd_ms_max: f64,
    /// Mean time to repair (automatic repairs), at most this many milliseconds.
    pub mttr_ms_max: f64,
    /// Share of incidents needing action that were repaired without a human, at least this.
    pub auto_remediation_rate_min: f64,
    /// Share of incidents that were false positives, at most this.
    pub false_positive_rate_max: f64,
    /// Local time `HH:MM` (in `zone`) at which the daily report of the day before is written to `dir`; unset: no
    /// scheduled reports (`schedule`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_at: Option<String>,
    /// The weekday (`monday`..`sunday`) on which, at `daily_at`, the weekly report of the seven days before is
    /// written too; unset: no weekly report on a schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weekly_day: Option<String>,
    /// The IANA time zone (`Europe/Berlin`) of `daily_at` and of the days scheduled reports cover.
    pub zone: String,
    /// Where scheduled reports are written (default `<data dir>/reports`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<std::path::PathBuf>,
    /// Scheduled reports covering days more than this many days ago are removed (0: never); the newest of each
    /// period is always kept.
    pub keep_days: u32,
    /// At most this many scheduled reports of each period are kept, the newest (0: no limit).
    pub keep_count: u32,
    /// Each scheduled report is also sent through the notifiers of `[notify]`: a summary and the files' paths.
    pub deliver: bool,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            mttd_ms_max: 60_000.0,
            mttr_ms_max: 300_000.0,
            auto_remediation_rate_min: 0.9,
            false_positive_rate_max: 0.1,
            daily_at: None,
            weekly_day: None,
            zone: "UTC".to_string(),
            dir: None,
            keep_days: 30,
            keep_count: 0,
            deliver: false,
        }
    }
}

impl ReportConfig {
    /// Every target within its range; the error names the key, the value and the range.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        let check = |key: &'static str, v: f64, max: f64| {
            if v.is_finite() && (0.0..=max).contains(&v) {
                Ok(())
            } else {
                Err(crate::config::ConfigError::Invalid {
                    key,
                    value: v.to_string(),
                    accepted: format!("0..={max}"),
                })
            }
        };
        check("report.mttd_ms_max", self.mttd_ms_max, 86_400_000.0)?;
        check("report.mttr_ms_max", self.mttr_ms_max, 86_400_000.0)?;
        check(
            "report.auto_remediation_rate_min",
            self.auto_remediation_rate_min,
            1.0,
        )?;
        check(
            "report.false_positive_rate_max",
            self.false_positive_rate_max,
            1.0,
        )?;
        schedule::Plan::from_config(self, std::path::Path::new(".")).map(|_| ())
    }
}

/// A report's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// One UTC day.
    Daily,
    /// The seven UTC days ending with the date.
    Weekly,
}

impl Period {
    /// `daily` or `weekly`.
    pub fn name(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
        }
    }

    /// From a route segment.
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "daily" => Some(Period::Daily),
            "weekly" => Some(Period::Weekly),
            _ => None,
        }
    }

    /// `[from, until)` for the UTC day `date` (`YYYY-MM-DD`; `None`: today at `now`). The error names the date.
    pub fn range(
        self,
        date: Option<&str>,
        now: Timestamp,
    ) -> Result<(Timestamp, Timestamp), String> {
        let day_start = match date.map(str::trim).filter(|d| !d.is_empty()) {
            None => now - now % US_PER_DAY,
            Some(d) => {
                if d.len() != 10 {
                    return Err(format!("date = {d:?}: write a UTC day as YYYY-MM-DD"));
                }
                crate::history::parse_rfc3339(d)
                    .map_err(|e| format!("date = {d:?}: {e}; write a UTC day as YYYY-MM-DD"))?
            }
        };
        let until = day_start + US_PER_DAY;
        let from = match self {
            Period::Daily => day_start,
            Period::Weekly => until.saturating_sub(7 * US_PER_DAY),
        };
        Ok((from, until))
    }
}

/// One incident as a report lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Its id.
    pub id: u64,
    /// `Sev0`..`Sev3`.
    pub severity: String,
    /// Its first issue's code.
    pub code: String,
    /// Its first issue's resource.
    pub resource: String,
    /// How it stands or ended.
    pub resolution: String,
    /// When detected, µs since the epoch.
    pub detected_at: Timestamp,
    /// The root cause line.
    pub root_cause: String,
    /// The strategy that repaired it, for automatic repairs.
    pub strategy: Option<String>,
    /// Detection to repair, ms, for automatic repairs.
    pub time_to_repair_ms: Option<f64>,
}

/// Automatic repairs of the period.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Repaired {
    /// How many.
    pub count: u64,
    /// Mean detection-to-repair time, ms.
    pub mean_ms: Option<f64>,
    /// The fastest, ms.
    pub fastest_ms: Option<f64>,
    /// The slowest, ms.
    pub slowest_ms: Option<f64>,
    /// The first [`REPORT_ITEMS_MAX`].
    pub incidents: Vec<Item>,
}

/// One KPI against its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiTarget {
    /// `mttd_ms`, `mttr_ms`, `auto_remediation_rate`, `false_positive_rate`.
    pub name: String,
    /// Its value over the period (`None`: nothing to measure).
    pub value: Option<f64>,
    /// `at_most` or `at_least`.
    pub bound: String,
    /// The target from `[report]`.
    pub target: f64,
    /// Whether it was met (`None` when there was nothing to measure).
    pub met: Option<bool>,
}

/// A recurring problem: one issue code on one resource, in several incidents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recurring {
    /// The issue code.
    pub code: String,
    /// The resource.
    pub resource: String,
    /// Incidents it started.
    pub incidents: u64,
    /// How many of those were repaired automatically.
    pub auto_repaired: u64,
}

/// A daily or weekly report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `daily` or `weekly`.
    pub period: Period,
    /// Start (inclusive), µs since the epoch.
    pub from: Timestamp,
    /// End (exclusive), µs since the epoch.
    pub until: Timestamp,
    /// When it was made.
    pub generated_at: Timestamp,
    /// Incidents detected in the period.
    pub incidents: u64,
    /// More than [`REPORT_INCIDENTS_MAX`] were detected: only the first ones are counted.
    pub truncated: bool,
    /// By severity (`Sev0`..`Sev3`).
    pub by_severity: BTreeMap<String, u64>,
    /// By the first issue's kind (`integrity`, `anomaly`...).
    pub by_kind: BTreeMap<String, u64>,
    /// By resolution (`auto_repaired`, `escalated`...).
    pub by_resolution: BTreeMap<String, u64>,
    /// Repaired without a human, and how fast.
    pub repaired_automatically: Repaired,
    /// Escalated to a human in the period.
    pub escalated: Vec<Item>,
    /// Detected by the period's end and not resolved then (whenever they were detected).
    pub still_open: Vec<Item>,
    /// The KPIs over the period's incidents.
    pub kpis: Kpis,
    /// The KPIs against `[report]`'s targets.
    pub targets: Vec<KpiTarget>,
    /// The most frequent problems (code and resource), most incidents first, at most [`TOP_RECURRING`], only those
    /// in at least two incidents.
    pub top_recurring: Vec<Recurring>,
    /// The IANA zone whose days the period covers (scheduled reports); absent: UTC days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Strategies whose success rate fell against the window before the period, and the rule applied.
    #[serde(default)]
    pub strategies: strategies::StrategyFalls,
    /// How each derived index's health figures moved over the period.
    #[serde(default)]
    pub index_trends: index_health::IndexTrends,
}

fn name_of<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn item(r: &IncidentRecord) -> Item {
    let first = r.issues.first();
    let strategy = (r.resolution == Resolution::AutoRepaired)
        .then(|| {
            r.attempts
                .iter()
                .rev()
                .find(|a| a.outcome == AttemptOutcome::Succeeded)
                .map(|a| a.strategy.clone())
        })
        .flatten();
    Item {
        id: r.id,
        severity: name_of(&r.severity),
        code: first.map(|i| i.code.clone()).unwrap_or_default(),
        resource: first.map(|i| i.resource.clone()).unwrap_or_default(),
        resolution: name_of(&r.resolution),
        detected_at: r.detected_at,
        root_cause: r.root_cause.clone(),
        strategy,
        time_to_repair_ms: r.time_to_repair_us().map(|us| us as f64 / 1_000.0),
    }
}

/// Builds the report of `period` for `date` (`None`: today) from the knowledge base, at `now`.
pub fn build(
    kb: &SqliteKb,
    period: Period,
    date: Option<&str>,
    now: Timestamp,
    targets: &ReportConfig,
) -> Result<Report, BuildError> {
    let (from, until) = period.range(date, now).map_err(BuildError::BadDate)?;
    let records = kb.incidents_detected_between(from, until, REPORT_INCIDENTS_MAX + 1)?;
    let open = kb.incidents_unresolved_at(until, REPORT_ITEMS_MAX)?;
    let mut report = from_records(period, from, until, now, &records, &open, targets);
    add_history(kb, &mut report, &records)?;
    Ok(report)
}

/// Fills the sections that read more of the knowledge base than the period's incidents: the strategies' success
/// rates against the window before, and the index health trends from the metric history.
pub fn add_history(
    kb: &SqliteKb,
    report: &mut Report,
    records: &[IncidentRecord],
) -> Result<(), heal::learn::KbError> {
    let records = &records[..records.len().min(REPORT_INCIDENTS_MAX)];
    report.strategies = strategies::load(kb, report.period, report.from, report.until, records)?;
    report.index_trends = index_health::load(kb, report.from, report.until)?;
    Ok(())
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The date asked for (a 400).
    #[error("{0}")]
    BadDate(String),
    /// The knowledge base failed.
    #[error(transparent)]
    Kb(#[from] heal::learn::KbError),
}

/// The report over `records` (incidents detected in `[from, until)`) and `open` (unresolved at `until`).
pub fn from_records(
    period: Period,
    from: Timestamp,
    until: Timestamp,
    now: Timestamp,
    records: &[IncidentRecord],
    open: &[IncidentRecord],
    targets: &ReportConfig,
) -> Report {
    let truncated = records.len() > REPORT_INCIDENTS_MAX;
    let records = &records[..records.len().min(REPORT_INCIDENTS_MAX)];
    let mut by_severity = BTreeMap::new();
    let mut by_kind = BTreeMap::new();
    let mut by_resolution = BTreeMap::new();
    let mut recurring: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let mut repaired = Repaired::default();
    let mut ttr = Vec::new();
    let mut escalated = Vec::new();
    for r in records {
        *by_severity.entry(name_of(&r.severity)).or_insert(0) += 1;
        *by_resolution.entry(name_of(&r.resolution)).or_insert(0) += 1;
        if let Some(first) = r.issues.first() {
            *by_kind.entry(name_of(&first.kind)).or_insert(0) += 1;
            let e = recurring
                .entry((first.code.clone(), first.resource.clone()))
                .or_insert((0, 0));
            e.0 += 1;
            e.1 += u64::from(r.repaired_without_a_human());
        }
        // The same rules as the KPIs': an approved repair or one of an incident escalated before is not
        // "repaired automatically", an escalated incident stays escalated whatever it closed as.
        if r.repaired_without_a_human() {
            repaired.count += 1;
            if let Some(us) = r.time_to_repair_us() {
                ttr.push(us as f64 / 1_000.0);
            }
            if repaired.incidents.len() < REPORT_ITEMS_MAX {
                repaired.incidents.push(item(r));
            }
        }
        if r.needed_a_human() && escalated.len() < REPORT_ITEMS_MAX {
            escalated.push(item(r));
        }
    }
    if !ttr.is_empty() {
        repaired.mean_ms = Some(ttr.iter().sum::<f64>() / ttr.len() as f64);
        repaired.fastest_ms = ttr.iter().copied().reduce(f64::min);
        repaired.slowest_ms = ttr.iter().copied().reduce(f64::max);
    }
    let kpis = Kpis::from_records(records);
    let target = |name: &str, value: Option<f64>, at_most: bool, t: f64| KpiTarget {
        name: name.to_string(),
        value,
        bound: if at_most { "at_most" } else { "at_least" }.to_string(),
        target: t,
        met: value.map(|v| if at_most { v <= t } else { v >= t }),
    };
    let targets = vec![
        target(
            "mttd_ms",
            kpis.mttd_us.map(|v| v / 1_000.0),
            true,
            targets.mttd_ms_max,
        ),
        target(
            "mttr_ms",
            kpis.mttr_us.map(|v| v / 1_000.0),
            true,
            targets.mttr_ms_max,
        ),
        target(
            "auto_remediation_rate",
            kpis.auto_remediation_rate,
            false,
            targets.auto_remediation_rate_min,
        ),
        target(
            "false_positive_rate",
            kpis.false_positive_rate,
            true,
            targets.false_positive_rate_max,
        ),
    ];
    let mut top: Vec<Recurring> = recurring
        .into_iter()
        .filter(|(_, (n, _))| *n >= 2)
        .map(|((code, resource), (incidents, auto_repaired))| Recurring {
            code,
            resource,
            incidents,
            auto_repaired,
        })
        .collect();
    top.sort_by_key(|t| std::cmp::Reverse(t.incidents));
    top.truncate(TOP_RECURRING);
    Report {
        period,
        from,
        until,
        generated_at: now,
        incidents: records.len() as u64,
        truncated,
        by_severity,
        by_kind,
        by_resolution,
        repaired_automatically: repaired,
        escalated,
        still_open: open.iter().take(REPORT_ITEMS_MAX).map(item).collect(),
        kpis,
        targets,
        top_recurring: top,
        zone: None,
        strategies: strategies::compare(records, &[], from, until, strategies::before_days(period)),
        index_trends: index_health::IndexTrends::default(),
    }
}

fn opt_ms(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(ms) if ms < 1_000.0 => format!("{ms:.1} ms"),
        Some(ms) => format!("{:.2} s", ms / 1_000.0),
    }
}

fn fmt_kpi(t: &KpiTarget, v: Option<f64>) -> String {
    match (t.name.ends_with("_ms"), v) {
        (_, None) => "–".into(),
        (true, v) => opt_ms(v),
        (false, Some(r)) => format!("{:.0} %", r * 100.0),
    }
}

fn met(t: &KpiTarget) -> &'static str {
    match t.met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "no data",
    }
}

/// `33 % (2 of 6)`.
fn rate(r: f64, succeeded: u64, attempts: u64) -> String {
    format!("{:.0} % ({succeeded} of {attempts})", r * 100.0)
}

/// `−57 points`.
fn fall(f: &strategies::StrategyRate) -> String {
    format!("−{:.0} points", (f.before_rate - f.rate) * 100.0)
}

fn truncated_note(truncated: bool) -> &'static str {
    if truncated {
        " (the window before held more incidents than a report reads: only the first ones counted)"
    } else {
        ""
    }
}

/// Markdown escaping for table cells: `|`, backslash, backticks, `<`/`>` (no inline HTML) and line breaks.
fn md(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('`', "\\`")
        .replace(['\n', '\r'], " ")
}

/// HTML escaping of text and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl Report {
    /// The title: `medic daily report 2026-12-05` or `medic weekly report 2026-11-29 – 2026-12-05`.
    pub fn title(&self) -> String {
        let day = |at: Timestamp| match &self.zone {
            Some(zone) => schedule::local_date(at, zone),
            None => rfc3339(at)[..10].to_string(),
        };
        let last_day = day(self.until.saturating_sub(1));
        let zone = match &self.zone {
            Some(z) if z != "UTC" => format!(" ({z})"),
            _ => String::new(),
        };
        match self.period {
            Period::Daily => format!("medic daily report {last_day}{zone}"),
            Period::Weekly => format!("medic weekly report {} – {last_day}{zone}", day(self.from)),
        }
    }

    /// "still open at the end of the period", or "still open" while the period is not over (a report of today).
    fn still_open_words(&self) -> &'static str {
        if self.generated_at < self.until {
            "still open"
        } else {
            "still open at the end of the period"
        }
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# {}\n", self.title());
        let _ = writeln!(
            o,
            "From {} to {} (UTC), generated {}.\n",
            rfc3339(self.from),
            rfc3339(self.until),
            rfc3339(self.generated_at)
        );
        let _ = writeln!(
            o,
            "**{} incidents**, {} repaired automatically, {} escalated, {} {}.{}\n",
            self.incidents,
            self.repaired_automatically.count,
            self.kpis.escalated,
            self.still_open.len(),
            self.still_open_words(),
            if self.truncated {
                format!(" (only the first {REPORT_INCIDENTS_MAX} counted)")
            } else {
                String::new()
            }
        );
        let counts = |o: &mut String, title: &str, m: &BTreeMap<String, u64>| {
            let _ = writeln!(o, "## {title}\n");
            if m.is_empty() {
                let _ = writeln!(o, "None.\n");
                return;
            }
            let _ = writeln!(o, "| | incidents |\n|---|---:|");
            for (k, v) in m {
                let _ = writeln!(o, "| {} | {v} |", md(k));
            }
            o.push('\n');
        };
        counts(&mut o, "By severity", &self.by_severity);
        counts(&mut o, "By kind", &self.by_kind);
        let r = &self.repaired_automatically;
        let _ = writeln!(o, "## Repaired automatically\n");
        let _ = writeln!(
            o,
            "{} incidents; detection to repair: mean {}, fastest {}, slowest {}.\n",
            r.count,
            opt_ms(r.mean_ms),
            opt_ms(r.fastest_ms),
            opt_ms(r.slowest_ms)
        );
        if !r.incidents.is_empty() {
            let _ = writeln!(
                o,
                "| id | severity | problem | strategy | time to repair |\n|---:|---|---|---|---:|"
            );
            for i in &r.incidents {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} {} | {} | {} |",
                    i.id,
                    md(&i.severity),
                    md(&i.code),
                    md(&i.resource),
                    md(i.strategy.as_deref().unwrap_or("–")),
                    opt_ms(i.time_to_repair_ms)
                );
            }
            o.push('\n');
        }
        let list = |o: &mut String, title: &str, items: &[Item]| {
            let _ = writeln!(o, "## {title}\n");
            if items.is_empty() {
                let _ = writeln!(o, "None.\n");
                return;
            }
            let _ = writeln!(
                o,
                "| id | severity | problem | status | detected | root cause |\n|---:|---|---|---|---|---|"
            );
            for i in items {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} {} | {} | {} | {} |",
                    i.id,
                    md(&i.severity),
                    md(&i.code),
                    md(&i.resource),
                    md(&i.resolution),
                    rfc3339(i.detected_at),
                    md(&i.root_cause)
                );
            }
            o.push('\n');
        };
        list(&mut o, "Escalated", &self.escalated);
        list(&mut o, "Still open", &self.still_open);
        let _ = writeln!(
            o,
            "## KPIs against targets\n\n| KPI | value | target | |\n|---|---:|---:|---|"
        );
        for t in &self.targets {
            let bound = if t.bound == "at_most" { "≤" } else { "≥" };
            let _ = writeln!(
                o,
                "| {} | {} | {bound} {} | {} |",
                t.name,
                fmt_kpi(t, t.value),
                fmt_kpi(t, Some(t.target)),
                met(t)
            );
        }
        let _ = writeln!(o, "\n## Top recurring problems\n");
        if self.top_recurring.is_empty() {
            let _ = writeln!(o, "None (no problem started two incidents).");
        } else {
            let _ = writeln!(
                o,
                "| problem | incidents | repaired automatically |\n|---|---:|---:|"
            );
            for t in &self.top_recurring {
                let _ = writeln!(
                    o,
                    "| {} {} | {} | {} |",
                    md(&t.code),
                    md(&t.resource),
                    t.incidents,
                    t.auto_repaired
                );
            }
        }
        self.markdown_history(&mut o);
        o
    }

    /// The sections "Strategies whose success rate fell" and "Index health trends" in Markdown.
    fn markdown_history(&self, o: &mut String) {
        let s = &self.strategies;
        let _ = writeln!(
            o,
            "\n## Strategies whose success rate fell\n\nAgainst the {} days before the period (from {}); rule: {}.\n",
            s.before_days,
            rfc3339(s.before_from),
            s.rule()
        );
        if s.fell.is_empty() {
            let _ = writeln!(
                o,
                "No strategy fell ({} compared).{}",
                s.compared,
                truncated_note(s.truncated)
            );
        } else {
            let _ = writeln!(
                o,
                "| strategy | period | before | change |\n|---|---:|---:|---:|"
            );
            for f in &s.fell {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} |",
                    md(&f.strategy),
                    rate(f.rate, f.succeeded, f.attempts),
                    rate(f.before_rate, f.before_succeeded, f.before_attempts),
                    fall(f)
                );
            }
            let _ = writeln!(
                o,
                "\n{} compared.{}",
                s.compared,
                truncated_note(s.truncated)
            );
        }
        let t = &self.index_trends;
        let _ = writeln!(o, "\n## Index health trends\n");
        if t.series.is_empty() {
            let _ = writeln!(o, "No index health was recorded in the period.");
            return;
        }
        let _ = writeln!(
            o,
            "Recorded at most every {} s from each index's status. A counter's change is its increase.\n\n\
             | collection | index | figure | first | last | min | max | change |\n|---|---|---|---:|---:|---:|---:|---|",
            index_health::SAMPLE_INTERVAL_US / 1_000_000
        );
        for s in &t.series {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                md(&s.collection),
                md(&s.index),
                md(&s.figure),
                index_health::fmt_value(s.first),
                index_health::fmt_value(s.last),
                index_health::fmt_value(s.min),
                index_health::fmt_value(s.max),
                index_health::movement(s)
            );
        }
        if t.truncated {
            let _ = writeln!(o, "\nOnly the first series or points were read (limits).");
        }
    }

    /// The sections "Strategies whose success rate fell" and "Index health trends" in HTML, each string escaped.
    fn html_history(&self, o: &mut String) {
        let e = html_escape;
        let s = &self.strategies;
        let _ = write!(
            o,
            "<h2>Strategies whose success rate fell</h2><p>Against the {} days before the period (from {}); rule: \
             {}.</p>",
            s.before_days,
            rfc3339(s.before_from),
            e(&s.rule())
        );
        if s.fell.is_empty() {
            let _ = writeln!(
                o,
                "<p>No strategy fell ({} compared).{}</p>",
                s.compared,
                truncated_note(s.truncated)
            );
        } else {
            o.push_str(
                "<table><tr><th>strategy</th><th>period</th><th>before</th><th>change</th></tr>",
            );
            for f in &s.fell {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"missed\">{}</td></tr>",
                    e(&f.strategy),
                    rate(f.rate, f.succeeded, f.attempts),
                    rate(f.before_rate, f.before_succeeded, f.before_attempts),
                    fall(f)
                );
            }
            let _ = writeln!(
                o,
                "</table><p>{} compared.{}</p>",
                s.compared,
                truncated_note(s.truncated)
            );
        }
        let t = &self.index_trends;
        o.push_str("<h2>Index health trends</h2>");
        if t.series.is_empty() {
            o.push_str("<p>No index health was recorded in the period.</p>\n");
            return;
        }
        o.push_str(
            "<table><tr><th>collection</th><th>index</th><th>figure</th><th>first</th><th>last</th><th>min</th>\
             <th>max</th><th>change</th><th>over the period</th></tr>",
        );
        for s in &t.series {
            let class = if s.worsened { " class=\"missed\"" } else { "" };
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{class}>{}</td>\
                 <td>{}</td></tr>",
                e(&s.collection),
                e(&s.index),
                e(&s.figure),
                index_health::fmt_value(s.first),
                index_health::fmt_value(s.last),
                index_health::fmt_value(s.min),
                index_health::fmt_value(s.max),
                e(&index_health::movement(s)),
                index_health::sparkline_svg(&s.spark, s.worsened)
            );
        }
        o.push_str("</table>\n");
        if t.truncated {
            o.push_str("<p>Only the first series or points were read (limits).</p>\n");
        }
    }

    /// The report as one self-contained HTML page (inline style, an inline SVG bar chart of incidents by severity
    /// and by resolution; no script, nothing loaded from elsewhere). Every string is escaped.
    pub fn html(&self) -> String {
        let e = html_escape;
        let mut o = String::new();
        let _ = write!(
            o,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
             body{{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1d232a}}\
             table{{border-collapse:collapse;margin:.5rem 0 1.2rem}}th,td{{border-bottom:1px solid #dde1e6;\
             padding:.25rem .6rem;text-align:left}}.met{{color:#1a7f37}}.missed{{color:#cf222e;font-weight:700}}\
             svg text{{font-size:11px;fill:#1d232a}}</style></head><body>\n<h1>{}</h1>\n",
            e(&self.title()),
            e(&self.title())
        );
        let _ = writeln!(
            o,
            "<p>From {} to {} (UTC), generated {}.</p>\n<p><b>{} incidents</b>, {} repaired automatically, {} \
             escalated, {} {}.</p>",
            rfc3339(self.from),
            rfc3339(self.until),
            rfc3339(self.generated_at),
            self.incidents,
            self.repaired_automatically.count,
            self.kpis.escalated,
            self.still_open.len(),
            self.still_open_words()
        );
        o.push_str(&bar_chart("Incidents by severity", &self.by_severity));
        o.push_str(&bar_chart("Incidents by resolution", &self.by_resolution));
        let counts = |o: &mut String, title: &str, m: &BTreeMap<String, u64>| {
            let _ = write!(
                o,
                "<h2>{}</h2><table><tr><th></th><th>incidents</th></tr>",
                e(title)
            );
            for (k, v) in m {
                let _ = write!(o, "<tr><td>{}</td><td>{v}</td></tr>", e(k));
            }
            o.push_str("</table>\n");
        };
        counts(&mut o, "By severity", &self.by_severity);
        counts(&mut o, "By kind", &self.by_kind);
        let r = &self.repaired_automatically;
        let _ = write!(
            o,
            "<h2>Repaired automatically</h2><p>{} incidents; detection to repair: mean {}, fastest {}, slowest {}.</p>\
             <table><tr><th>id</th><th>severity</th><th>problem</th><th>strategy</th><th>time to repair</th></tr>",
            r.count,
            opt_ms(r.mean_ms),
            opt_ms(r.fastest_ms),
            opt_ms(r.slowest_ms)
        );
        for i in &r.incidents {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td></tr>",
                i.id,
                e(&i.severity),
                e(&i.code),
                e(&i.resource),
                e(i.strategy.as_deref().unwrap_or("–")),
                opt_ms(i.time_to_repair_ms)
            );
        }
        o.push_str("</table>\n");
        let list = |o: &mut String, title: &str, items: &[Item]| {
            let _ = write!(
                o,
                "<h2>{}</h2><table><tr><th>id</th><th>severity</th><th>problem</th><th>status</th><th>detected</th>\
                 <th>root cause</th></tr>",
                e(title)
            );
            for i in items {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    i.id,
                    e(&i.severity),
                    e(&i.code),
                    e(&i.resource),
                    e(&i.resolution),
                    rfc3339(i.detected_at),
                    e(&i.root_cause)
                );
            }
            o.push_str("</table>\n");
        };
        list(&mut o, "Escalated", &self.escalated);
        list(&mut o, "Still open", &self.still_open);
        o.push_str("<h2>KPIs against targets</h2><table><tr><th>KPI</th><th>value</th><th>target</th><th></th></tr>");
        for t in &self.targets {
            let bound = if t.bound == "at_most" { "≤" } else { "≥" };
            let class = match t.met {
                Some(true) => "met",
                Some(false) => "missed",
                None => "",
            };
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{bound} {}</td><td class=\"{class}\">{}</td></tr>",
                e(&t.name),
                fmt_kpi(t, t.value),
                fmt_kpi(t, Some(t.target)),
                met(t)
            );
        }
        o.push_str(
            "</table>\n<h2>Top recurring problems</h2><table><tr><th>problem</th><th>incidents</th>\
                    <th>repaired automatically</th></tr>",
        );
        for t in &self.top_recurring {
            let _ = write!(
                o,
                "<tr><td>{} {}</td><td>{}</td><td>{}</td></tr>",
                e(&t.code),
                e(&t.resource),
                t.incidents,
                t.auto_repaired
            );
        }
        o.push_str("</table>\n");
        self.html_history(&mut o);
        o.push_str("</body></html>\n");
        o
    }
}

/// A horizontal bar chart of `counts` as inline SVG.
fn bar_chart(title: &str, counts: &BTreeMap<String, u64>) -> String {
    let max = counts.values().copied().max().unwrap_or(0).max(1);
    let row = 22;
    let height = 24 + row * counts.len().max(1);
    let mut o = format!(
        "<figure><svg width=\"420\" height=\"{height}\" role=\"img\" aria-label=\"{t}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><text x=\"0\" y=\"14\">{t}</text>",
        t = html_escape(title)
    );
    for (i, (k, v)) in counts.iter().enumerate() {
        let y = 22 + i * row;
        let w = 260 * v / max;
        let _ = write!(
            o,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"120\" y=\"{y}\" width=\"{w}\" height=\"16\" fill=\"#0969da\"/>\
             <text x=\"{}\" y=\"{}\">{v}</text>",
            y + 12,
            html_escape(k),
            124 + w,
            y + 12
        );
    }
    if counts.is_empty() {
        o.push_str("<text x=\"0\" y=\"36\">no incident</text>");
    }
    o.push_str("</svg></figure>\n");
    o
}

/// The day `us` falls on, `YYYY-MM-DD` UTC.
pub fn day_of(us: Timestamp) -> String {
    rfc3339(us)[..10].to_string()
}

/// µs since the epoch of midnight UTC of `y-m-d` (for tests and callers that build dates).
pub fn midnight(y: i64, m: i64, d: i64) -> Timestamp {
    (days_from_civil(y, m, d).max(0) as u64) * US_PER_DAY
}

#[cfg(test)]
mod tests {
    use super::*;
    use heal::issue::{CrisisLevel, Issue, IssueKind, Severity};
    use heal::learn::{AttemptRecord, KnowledgeBase};

    const MS: u64 = 1_000;

    #[allow(clippy::too_many_arguments)]
    fn record(
        id: u64,
        detected_at: Timestamp,
        severity: Severity,
        kind: IssueKind,
        code: &str,
        resource: &str,
        resolution: Resolution,
        repair_ms: Option<u64>,
    ) -> IncidentRecord {
        let issue = Issue::new(
            kind,
            code,
            resource,
            format!("{code} on {resource}"),
            "test",
            detected_at - 2 * MS,
        );
        let resolved_at = match resolution {
            Resolution::Open => None,
            _ => Some(detected_at + repair_ms.unwrap_or(1_000) * MS),
        };
        let attempts = repair_ms
            .map(|ms| {
                vec![AttemptRecord {
                    strategy: "rebuild_from_parity".into(),
                    started_at: detected_at,
                    duration_us: ms * MS,
                    outcome: if resolution == Resolution::AutoRepaired {
                        AttemptOutcome::Succeeded
                    } else {
                        AttemptOutcome::Failed
                    },
                    notes: vec![],
                    data_loss: heal::repair::DataLoss::None,
                }]
            })
            .unwrap_or_default();
        IncidentRecord {
            id,
            started_at: detected_at - 2 * MS,
            detected_at,
            resolved_at,
            issues: vec![issue],
            crisis: CrisisLevel::Obstacle,
            severity,
            root_cause: format!("<b>{code}</b> | {resource}"),
            blast_radius: vec![],
            decision: String::new(),
            attempts,
            resolution,
            report_markdown: None,
        }
    }

    /// A knowledge base with known incidents on 2026-12-04 and 2026-12-05 and one the day before the week.
    fn kb_with_incidents(dir: &std::path::Path) -> SqliteKb {
        let kb = SqliteKb::open(&dir.join("kb.sqlite3")).unwrap();
        let d4 = midnight(2026, 12, 4);
        let d5 = midnight(2026, 12, 5);
        let h = 3_600 * 1_000 * MS;
        use IssueKind::*;
        use Resolution::*;
        use Severity::*;
        for r in [
            // 2026-12-05: three parity repairs of one segment (recurring), one escalation still open, one
            // anomaly self-resolved, one false positive.
            record(
                1,
                d5 + h,
                Sev2,
                Integrity,
                "block_checksum",
                "wal/1.seg",
                AutoRepaired,
                Some(20),
            ),
            record(
                2,
                d5 + 2 * h,
                Sev2,
                Integrity,
                "block_checksum",
                "wal/1.seg",
                AutoRepaired,
                Some(40),
            ),
            record(
                3,
                d5 + 3 * h,
                Sev1,
                Integrity,
                "block_checksum",
                "wal/1.seg",
                AutoRepaired,
                Some(60),
            ),
            record(
                4,
                d5 + 4 * h,
                Sev0,
                Resource,
                "disk_full",
                "data",
                Escalated,
                None,
            ),
            record(
                5,
                d5 + 5 * h,
                Sev3,
                Anomaly,
                "anomaly_put_p99_us",
                "put_p99_us",
                SelfResolved,
                None,
            ),
            record(
                6,
                d5 + 6 * h,
                Sev3,
                Anomaly,
                "anomaly_get_p99_us",
                "get_p99_us",
                FalsePositive,
                None,
            ),
            // 2026-12-04: one repaired, one still open.
            record(
                7,
                d4 + h,
                Sev2,
                Integrity,
                "parity_damaged",
                "wal/2.seg.par",
                AutoRepaired,
                Some(1_000),
            ),
            record(
                8,
                d4 + 2 * h,
                Sev1,
                CheckFailed,
                "probe_failed",
                "probe",
                Open,
                None,
            ),
            // 2026-11-28: outside the week ending 2026-12-05.
            record(
                9,
                midnight(2026, 11, 28) + h,
                Sev2,
                Integrity,
                "block_checksum",
                "wal/0.seg",
                AutoRepaired,
                Some(5),
            ),
        ] {
            kb.save(&r).unwrap();
        }
        // Escalated but later resolved by hand: no longer open.
        let mut r = record(
            10,
            d4 + 3 * h,
            Sev1,
            Integrity,
            "manifest_copy_damaged",
            "MANIFEST-A",
            Resolved,
            None,
        );
        r.resolved_at = Some(d5 + 30 * 60 * 1_000 * MS);
        kb.save(&r).unwrap();
        // The escalation of incident 4 is never closed.
        let mut r4 = kb.get(4).unwrap().unwrap();
        r4.resolved_at = None;
        kb.save(&r4).unwrap();
        kb
    }

    #[test]
    fn daily_report_counts_known_incidents() {
        let tmp = tempfile::tempdir().unwrap();
        let kb = kb_with_incidents(tmp.path());
        let now = midnight(2026, 12, 6);
        let r = build(
            &kb,
            Period::Daily,
            Some("2026-12-05"),
            now,
            &ReportConfig::default(),
        )
        .unwrap();
        assert_eq!(
            (r.from, r.until),
            (midnight(2026, 12, 5), midnight(2026, 12, 6))
        );
        assert_eq!(r.incidents, 6);
        assert_eq!(
            r.by_severity,
            BTreeMap::from([
                ("Sev0".into(), 1),
                ("Sev1".into(), 1),
                ("Sev2".into(), 2),
                ("Sev3".into(), 2)
            ])
        );
        assert_eq!(
            r.by_kind,
            BTreeMap::from([
                ("anomaly".into(), 2),
                ("integrity".into(), 3),
                ("resource".into(), 1)
            ])
        );
        let rep = &r.repaired_automatically;
        assert_eq!(rep.count, 3);
        assert_eq!(rep.mean_ms, Some(40.0));
        assert_eq!((rep.fastest_ms, rep.slowest_ms), (Some(20.0), Some(60.0)));
        assert_eq!(
            rep.incidents.iter().map(|i| i.id).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(
            rep.incidents[0].strategy.as_deref(),
            Some("rebuild_from_parity")
        );
        assert_eq!(r.escalated.iter().map(|i| i.id).collect::<Vec<_>>(), [4]);
        // Still open at the day's end: 8 (open since the 4th) and 4 (escalated, never closed); 10 was resolved.
        let mut open: Vec<u64> = r.still_open.iter().map(|i| i.id).collect();
        open.sort_unstable();
        assert_eq!(open, [4, 8]);
        assert_eq!(r.top_recurring.len(), 1);
        assert_eq!(
            (
                r.top_recurring[0].code.as_str(),
                r.top_recurring[0].resource.as_str()
            ),
            ("block_checksum", "wal/1.seg")
        );
        assert_eq!(
            (
                r.top_recurring[0].incidents,
                r.top_recurring[0].auto_repaired
            ),
            (3, 3)
        );
        // KPIs: 3 auto-repaired of 4 needing action; 1 false positive of 6; MTTR 40 ms within 5 min.
        let t = |n: &str| r.targets.iter().find(|t| t.name == n).unwrap().clone();
        assert_eq!(t("auto_remediation_rate").value, Some(0.75));
        assert_eq!(t("auto_remediation_rate").met, Some(false));
        assert_eq!(t("mttr_ms").value, Some(40.0));
        assert_eq!(t("mttr_ms").met, Some(true));
        assert_eq!(t("false_positive_rate").met, Some(false));
        assert_eq!(t("mttd_ms").value, Some(2.0));

        let md = r.markdown();
        assert!(md.starts_with("# medic daily report 2026-12-05\n"), "{md}");
        assert!(
            md.contains("**6 incidents**, 3 repaired automatically, 1 escalated, 2 still open"),
            "{md}"
        );
        assert!(
            md.contains("| auto_remediation_rate | 75 % | ≥ 90 % | MISSED |"),
            "{md}"
        );
        assert!(md.contains("| block_checksum wal/1.seg | 3 | 3 |"), "{md}");
        assert!(
            md.contains("&lt;b&gt;disk_full&lt;/b&gt; \\| data"),
            "cells escaped: {md}"
        );
        let html = r.html();
        assert!(html.contains("&lt;b&gt;disk_full&lt;/b&gt;"), "escaped");
        assert!(!html.contains("<b>disk_full"), "never raw");
        assert!(
            html.contains("<svg") && !html.contains("<script"),
            "self-contained, no script"
        );
        // JSON round trip: what the daemon answers is what the CLI renders.
        let back: Report = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    /// An incident escalated to a human that later closed by itself, and a repair an operator approved, are
    /// escalated in the lists, the counts and the KPIs alike; only the repair nobody was asked about is automatic.
    #[test]
    fn an_incident_that_needed_a_human_is_escalated_in_every_count() {
        use IssueKind::*;
        use Resolution::*;
        let d = midnight(2026, 12, 4);
        let h = 3_600 * 1_000 * MS;
        let alone = record(
            1,
            d + h,
            Severity::Sev2,
            Integrity,
            "x",
            "a",
            AutoRepaired,
            Some(20),
        );
        let mut approved = record(
            2,
            d + 2 * h,
            Severity::Sev2,
            Integrity,
            "y",
            "b",
            AutoRepaired,
            Some(40),
        );
        approved.report_markdown = Some("approval asked".into());
        let mut gone = record(
            3,
            d + 3 * h,
            Severity::Sev1,
            Resource,
            "z",
            "c",
            SelfResolved,
            None,
        );
        gone.report_markdown = Some("escalated".into());
        let records = vec![alone, approved, gone];
        let r = from_records(
            Period::Daily,
            d,
            d + 24 * h,
            d + 24 * h,
            &records,
            &[],
            &ReportConfig::default(),
        );
        assert_eq!(
            r.repaired_automatically
                .incidents
                .iter()
                .map(|i| i.id)
                .collect::<Vec<_>>(),
            [1]
        );
        assert_eq!(r.repaired_automatically.count, 1);
        assert_eq!(r.escalated.iter().map(|i| i.id).collect::<Vec<_>>(), [2, 3]);
        assert_eq!((r.kpis.auto_repaired, r.kpis.escalated), (1, 2));
        assert_eq!(r.kpis.auto_remediation_rate, Some(1.0 / 3.0));
        let md = r.markdown();
        assert!(
            md.contains("**3 incidents**, 1 repaired automatically, 2 escalated"),
            "{md}"
        );
        assert!(
            md.contains("0 still open at the end of the period."),
            "{md}"
        );
        // A report of a day not over yet does not speak of its end.
        let today = from_records(
            Period::Daily,
            d,
            d + 24 * h,
            d + 12 * h,
            &records,
            &[],
            &ReportConfig::default(),
        );
        for text in [today.markdown(), today.html()] {
            assert!(text.contains("0 still open."), "{text}");
            assert!(!text.contains("end of the period"), "{text}");
        }
    }

    #[test]
    fn weekly_report_covers_seven_days_and_dates_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let kb = kb_with_incidents(tmp.path());
        let r = build(
            &kb,
            Period::Weekly,
            Some("2026-12-05"),
            midnight(2026, 12, 6),
            &ReportConfig::default(),
        )
        .unwrap();
        assert_eq!(
            (r.from, r.until),
            (midnight(2026, 11, 29), midnight(2026, 12, 6))
        );
        assert_eq!(r.incidents, 9, "everything but incident 9 of 2026-11-28");
        assert_eq!(r.repaired_automatically.count, 4);
        assert_eq!(
            r.escalated.iter().map(|i| i.id).collect::<Vec<_>>(),
            [10, 4]
        );
        assert_eq!(r.title(), "medic weekly report 2026-11-29 – 2026-12-05");
        // Today, by default.
        let now = midnight(2026, 12, 5) + 1;
        let today = build(&kb, Period::Daily, None, now, &ReportConfig::default()).unwrap();
        assert_eq!(today.from, midnight(2026, 12, 5));
        assert_eq!(today.incidents, 6);
        for bad in ["2026-13-01", "yesterday", "2026-12-05T00:00:00Z"] {
            let e =
                build(&kb, Period::Daily, Some(bad), now, &ReportConfig::default()).unwrap_err();
            assert!(matches!(e, BuildError::BadDate(_)), "{bad}");
            assert!(e.to_string().contains("date = "), "{e}");
        }
        assert!(
            ReportConfig {
                auto_remediation_rate_min: 1.5,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}
