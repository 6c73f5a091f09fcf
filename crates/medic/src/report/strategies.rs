//! The report's section "Strategies whose success rate fell": per repair strategy (a playbook is one too, under its
//! strategy name), its success rate over the report's period against the window before it — the 7 days before a
//! daily report, the 28 days before a weekly one — from the knowledge base's repair history.
//!
//! The rule, named in the report ([`StrategyFalls::rule`]): a strategy is listed when it was attempted at least
//! [`STRATEGY_ATTEMPTS_MIN`] times in the period **and** in the window before, and its success rate fell by at least
//! [`STRATEGY_FALL_MIN`] (10 percentage points). One failure among two attempts is no fall.
//!
//! An attempt counts in the window its start falls in; succeeded is a success, failed and rolled back are failures,
//! dry runs are not attempts. Attempts are read from the incidents detected in each window (an attempt of an incident
//! detected before the earlier window is not counted).

use std::collections::BTreeMap;

use heal::Timestamp;
use heal::learn::{AttemptOutcome, IncidentRecord, KbError};
use serde::{Deserialize, Serialize};

use super::{Period, REPORT_INCIDENTS_MAX, US_PER_DAY};
use crate::kb::SqliteKb;

/// Fewest attempts, in the period and in the window before, for a strategy's rates to be compared.
pub const STRATEGY_ATTEMPTS_MIN: u64 = 5;
/// Smallest fall of the success rate (a fraction: 0.10 is 10 percentage points) that is listed.
pub const STRATEGY_FALL_MIN: f64 = 0.10;
/// Most strategies listed (the largest falls first).
pub const STRATEGIES_LISTED_MAX: usize = 20;

/// One strategy's attempts in the period and in the window before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyRate {
    /// The strategy (or playbook) name.
    pub strategy: String,
    /// Attempts started in the period.
    pub attempts: u64,
    /// Of those, succeeded.
    pub succeeded: u64,
    /// `succeeded / attempts`.
    pub rate: f64,
    /// Attempts started in the window before.
    pub before_attempts: u64,
    /// Of those, succeeded.
    pub before_succeeded: u64,
    /// `before_succeeded / before_attempts`.
    pub before_rate: f64,
}

/// The section: the windows compared, the rule and the strategies that fell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyFalls {
    /// Start of the window before (inclusive), µs since the epoch; it ends where the period starts.
    pub before_from: Timestamp,
    /// Days in the window before.
    pub before_days: u64,
    /// [`STRATEGY_ATTEMPTS_MIN`] as applied.
    pub attempts_min: u64,
    /// [`STRATEGY_FALL_MIN`] as applied.
    pub fall_min: f64,
    /// Strategies attempted often enough in both windows to be compared.
    pub compared: u64,
    /// Those whose rate fell by at least `fall_min`, the largest fall first, at most [`STRATEGIES_LISTED_MAX`].
    pub fell: Vec<StrategyRate>,
    /// The window before held more than [`REPORT_INCIDENTS_MAX`] incidents: only the first ones were read.
    pub truncated: bool,
}

impl Default for StrategyFalls {
    fn default() -> Self {
        Self {
            before_from: 0,
            before_days: 0,
            attempts_min: STRATEGY_ATTEMPTS_MIN,
            fall_min: STRATEGY_FALL_MIN,
            compared: 0,
            fell: Vec::new(),
            truncated: false,
        }
    }
}

impl StrategyFalls {
    /// The rule in words, as the report prints it.
    pub fn rule(&self) -> String {
        format!(
            "a strategy is listed when it was attempted at least {n} times in the period and at least {n} times in \
             the {d} days before, and its success rate fell by at least {p:.0} percentage points",
            n = self.attempts_min,
            d = self.before_days,
            p = self.fall_min * 100.0
        )
    }
}

/// Days in the window a period is compared with: 7 before a daily report, 28 before a weekly one.
pub fn before_days(period: Period) -> u64 {
    match period {
        Period::Daily => 7,
        Period::Weekly => 28,
    }
}

/// (attempts, succeeded) per strategy of the attempts in `records` started in `[from, until)`.
fn tally<'a>(
    records: impl IntoIterator<Item = &'a IncidentRecord>,
    from: Timestamp,
    until: Timestamp,
) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for a in records.into_iter().flat_map(|r| &r.attempts) {
        if a.outcome == AttemptOutcome::DryRun || a.started_at < from || a.started_at >= until {
            continue;
        }
        let e = out.entry(a.strategy.clone()).or_insert((0, 0));
        e.0 += 1;
        e.1 += u64::from(a.outcome == AttemptOutcome::Succeeded);
    }
    out
}

/// The section over `records` (incidents detected in the period `[from, until)`) and `before` (incidents detected in
/// the `before_days` days before `from`).
pub fn compare(
    records: &[IncidentRecord],
    before: &[IncidentRecord],
    from: Timestamp,
    until: Timestamp,
    before_days: u64,
) -> StrategyFalls {
    let before_from = from.saturating_sub(before_days * US_PER_DAY);
    let now = tally(records, from, until);
    let then = tally(before.iter().chain(records), before_from, from);
    let mut compared = 0;
    let mut fell = Vec::new();
    for (strategy, &(attempts, succeeded)) in &now {
        let Some(&(before_attempts, before_succeeded)) = then.get(strategy) else {
            continue;
        };
        if attempts < STRATEGY_ATTEMPTS_MIN || before_attempts < STRATEGY_ATTEMPTS_MIN {
            continue;
        }
        compared += 1;
        let rate = succeeded as f64 / attempts as f64;
        let before_rate = before_succeeded as f64 / before_attempts as f64;
        // A small tolerance so a fall of exactly the minimum (0.9 → 0.8) is not lost to rounding.
        if before_rate - rate >= STRATEGY_FALL_MIN - 1e-9 {
            fell.push(StrategyRate {
                strategy: strategy.clone(),
                attempts,
                succeeded,
                rate,
                before_attempts,
                before_succeeded,
                before_rate,
            });
        }
    }
    fell.sort_by(|a, b| {
        (b.before_rate - b.rate)
            .total_cmp(&(a.before_rate - a.rate))
            .then_with(|| a.strategy.cmp(&b.strategy))
    });
    fell.truncate(STRATEGIES_LISTED_MAX);
    StrategyFalls {
        before_from,
        before_days,
        attempts_min: STRATEGY_ATTEMPTS_MIN,
        fall_min: STRATEGY_FALL_MIN,
        compared,
        fell,
        truncated: false,
    }
}

/// The section for the report of `period` over `[from, until)` whose incidents are `records`, reading the window
/// before from the knowledge base.
pub fn load(
    kb: &SqliteKb,
    period: Period,
    from: Timestamp,
    until: Timestamp,
    records: &[IncidentRecord],
) -> Result<StrategyFalls, KbError> {
    let days = before_days(period);
    let before_from = from.saturating_sub(days * US_PER_DAY);
    let before = kb.incidents_detected_between(before_from, from, REPORT_INCIDENTS_MAX + 1)?;
    let truncated = before.len() > REPORT_INCIDENTS_MAX;
    let mut falls = compare(
        records,
        &before[..before.len().min(REPORT_INCIDENTS_MAX)],
        from,
        until,
        days,
    );
    falls.truncated = truncated;
    Ok(falls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ReportConfig, build, midnight};
    use heal::issue::{CrisisLevel, Issue, IssueKind, Severity};
    use heal::learn::{AttemptRecord, KnowledgeBase, Resolution};

    const H: u64 = 3_600 * 1_000_000;

    /// One incident at `at` with one attempt of `strategy` per outcome in `outcomes`.
    fn incident(
        id: u64,
        at: Timestamp,
        strategy: &str,
        outcomes: &[AttemptOutcome],
    ) -> IncidentRecord {
        let attempts = outcomes
            .iter()
            .enumerate()
            .map(|(i, &outcome)| AttemptRecord {
                strategy: strategy.into(),
                started_at: at + i as u64 * 1_000,
                duration_us: 500,
                outcome,
                notes: vec![],
                data_loss: heal::repair::DataLoss::None,
            })
            .collect();
        IncidentRecord {
            id,
            started_at: at,
            detected_at: at,
            resolved_at: Some(at + H),
            issues: vec![Issue::new(
                IssueKind::Integrity,
                "block_checksum",
                "wal/1.seg",
                "damage",
                "test",
                at,
            )],
            crisis: CrisisLevel::Obstacle,
            severity: Severity::Sev2,
            root_cause: String::new(),
            blast_radius: vec![],
            decision: String::new(),
            attempts,
            resolution: Resolution::AutoRepaired,
            report_markdown: None,
        }
    }

    use AttemptOutcome::{DryRun, Failed, RolledBack, Succeeded};

    /// The daily report of 2026-12-05 against the seven days before: `rebuild_from_parity` went from 9 of 10 to 2 of
    /// 6 (listed), `compact` from 5 of 5 to 5 of 5 (steady), `restart_process.api` from 5/5 to 1 of 2 (too few
    /// attempts to count), `repair_from_mirror` from 4 of 5 to 3 of 5 (20 points, listed), and attempts outside
    /// both windows or dry runs are not counted.
    #[test]
    fn a_strategy_that_fell_is_listed_and_one_that_did_not_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let kb = SqliteKb::open(&tmp.path().join("kb.sqlite3")).unwrap();
        let day = midnight(2026, 12, 5);
        let before = midnight(2026, 12, 1);
        let mut id = 0;
        let mut save = |at: Timestamp, strategy: &str, outcomes: &[AttemptOutcome]| {
            id += 1;
            kb.save(&incident(id, at, strategy, outcomes)).unwrap();
        };
        // The seven days before.
        save(before, "rebuild_from_parity", &[Succeeded; 5]);
        save(
            before + H,
            "rebuild_from_parity",
            &[Succeeded, Succeeded, Succeeded, Succeeded, Failed],
        );
        save(before + 2 * H, "compact", &[Succeeded; 5]);
        save(before + 3 * H, "restart_process.api", &[Succeeded; 5]);
        save(
            before + 4 * H,
            "repair_from_mirror",
            &[Succeeded, Succeeded, Succeeded, Succeeded, Failed],
        );
        // Eight days before: outside the window, never counted.
        save(day - 8 * 24 * H, "compact", &[Failed; 9]);
        // The day.
        save(
            day + H,
            "rebuild_from_parity",
            &[Succeeded, Failed, RolledBack],
        );
        save(
            day + 2 * H,
            "rebuild_from_parity",
            &[Failed, Succeeded, Failed, DryRun],
        );
        save(day + 3 * H, "compact", &[Succeeded; 5]);
        save(day + 4 * H, "restart_process.api", &[Succeeded, Failed]);
        save(
            day + 5 * H,
            "repair_from_mirror",
            &[Succeeded, Failed, Succeeded, Failed, Succeeded],
        );

        let r = build(
            &kb,
            Period::Daily,
            Some("2026-12-05"),
            midnight(2026, 12, 6),
            &ReportConfig::default(),
        )
        .unwrap();
        let s = &r.strategies;
        assert_eq!(s.before_from, midnight(2026, 11, 28));
        assert_eq!(s.before_days, 7);
        assert_eq!(
            s.compared, 3,
            "restart_process.api has 2 attempts: not compared"
        );
        let fell: Vec<_> = s
            .fell
            .iter()
            .map(|f| {
                (
                    f.strategy.as_str(),
                    f.succeeded,
                    f.attempts,
                    f.before_succeeded,
                    f.before_attempts,
                )
            })
            .collect();
        assert_eq!(
            fell,
            [
                ("rebuild_from_parity", 2, 6, 9, 10),
                ("repair_from_mirror", 3, 5, 4, 5)
            ],
            "the largest fall first; compact did not fall"
        );
        let md = r.markdown();
        assert!(md.contains("## Strategies whose success rate fell"), "{md}");
        assert!(
            md.contains("at least 5 times in the period"),
            "the rule is named: {md}"
        );
        assert!(
            md.contains("| rebuild_from_parity | 33 % (2 of 6) | 90 % (9 of 10) | −57 points |"),
            "{md}"
        );
        assert!(
            !md.lines().any(|l| l.starts_with("| compact |")),
            "compact did not fall: {md}"
        );
        let html = r.html();
        assert!(
            html.contains("<h2>Strategies whose success rate fell</h2>"),
            "{html}"
        );
        assert!(
            html.contains("<td>rebuild_from_parity</td><td>33 % (2 of 6)</td>"),
            "{html}"
        );

        // Weekly: the 28 days before; the week holds both windows' attempts of the day and of the days before.
        let w = build(
            &kb,
            Period::Weekly,
            Some("2026-12-05"),
            midnight(2026, 12, 6),
            &ReportConfig::default(),
        )
        .unwrap();
        assert_eq!(w.strategies.before_days, 28);
        assert!(w.strategies.rule().contains("28 days before"));
        // In the week: compact 10 of 10 against 0 of 9 — it rose; nothing before the week is attempted enough
        // otherwise.
        assert!(w.strategies.fell.is_empty(), "{:?}", w.strategies);
    }

    #[test]
    fn no_comparison_without_attempts_says_so() {
        let r = compare(&[], &[], midnight(2026, 12, 5), midnight(2026, 12, 6), 7);
        assert_eq!(r.compared, 0);
        assert!(r.fell.is_empty());
        let rep = crate::report::from_records(
            Period::Daily,
            midnight(2026, 12, 5),
            midnight(2026, 12, 6),
            midnight(2026, 12, 6),
            &[],
            &[],
            &ReportConfig::default(),
        );
        assert!(
            rep.markdown().contains("No strategy fell"),
            "{}",
            rep.markdown()
        );
    }
}
