//! The engine's configuration: every knob (cut-offs, gates, windows, limits) in one serde struct that the program's
//! TOML config embeds, with [`EngineConfig::validate`] naming the key, the value and the accepted range of anything
//! out of bounds. Metric bounds are [`Constraint`]s (see [`crate::constraint`]).

use serde::{Deserialize, Serialize};

use crate::clock::US_PER_S;
use crate::constraint::Constraint;
use crate::detect::{CompositeConfig, DETECTOR_NAMES};
use crate::diagnose::CausePair;
use crate::escalate::AlertRule;
use crate::trend::TrendRule;

/// Every engine setting. Times are µs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Decide and record, but change nothing.
    pub dry_run: bool,
    /// The detector per metric: one of `heal::detect::DETECTOR_NAMES`.
    pub detector: String,
    /// Settings of the composite detector (used when `detector = "composite"`).
    pub composite: CompositeConfig,
    /// A detector score at or above this raises an anomaly issue. (0, 1].
    pub anomaly_cutoff: f64,
    /// A false positive silences anomalies of every metric it marked for this long after it was marked (and
    /// raises their cut-offs, below). [1 s, 30 days].
    pub false_positive_silence_us: u64,
    /// A counter's rate is judged only when the count over a cycle differs from what the rate's baseline predicts
    /// by at least this many (events, records, µs of CPU...): a handful of events is no evidence of a change of
    /// rate (one write after an idle hour is not an anomaly). [0, 1e9].
    pub rate_events_min: f64,
    /// A gauge that held one value for at least this many samples in a row is flat: its first different value is a
    /// step of a constant, which no detector can scale, and is not judged (the detectors still learn it). 0: off.
    /// [0, 1000000].
    pub flat_samples_min: u32,
    /// A series raises an anomaly only once this many of its samples in a row scored at or above the cut-off and
    /// were judged: one window's blip (a scheduler stall in one cycle) is a hiccup, not an incident; a problem that
    /// lasts is seen one cycle later. [1, 100].
    pub anomaly_for_samples: u32,
    /// A latency gauge (a metric whose name holds `latency` and ends in `_us`) below this many µs is not judged: a
    /// blip no client can notice (a scheduler hiccup in a sub-millisecond operation) is not an incident. 0: off.
    /// [0, 3.6e9].
    pub latency_floor_us: f64,
    /// Sustained-growth rules (slow leaks), e.g. resident memory growing over 5%/hour for an hour.
    pub trends: Vec<TrendRule>,
    /// A false positive multiplies that metric's cut-off by this. [1, 2].
    pub false_positive_factor: f64,
    /// The most a metric's cut-off can be raised to by false positives. [anomaly_cutoff, 1].
    pub anomaly_cutoff_max: f64,
    /// Bounds on metrics; a value at `Warning` or `Critical` raises a `ConstraintBreach` issue.
    pub constraints: Vec<Constraint>,
    /// Known cause pairs for correlation.
    pub known_causes: Vec<CausePair>,
    /// Issues this close to an incident's latest issue may join it. [1 s, 1 day].
    pub correlation_window_us: u64,
    /// An incident with no new issue for this long is closed (self-resolved when nothing was done). [1 s, 7 days].
    pub quiet_period_us: u64,
    /// An escalated incident's checks are re-run this often; once none of them finds its problems any more (a
    /// compaction replaced the damaged file, an operator restored it), it closes and its hold on writes ends.
    /// [100 ms, 1 day].
    pub escalated_recheck_us: u64,
    /// A resource problem no strategy can fix (a full disk, a slow device) is watched this long after it was
    /// detected, for the environment to recover by itself, before it escalates. [0, 1 day].
    pub environment_grace_us: u64,
    /// A strategy above this risk needs an operator's approval. [0, 1].
    pub approval_risk_max: f64,
    /// An incident waiting this long for approval (`medic approve ID`) without an answer escalates. [1 s, 7 days].
    pub approval_expiry_us: u64,
    /// A repair step (backup and repair of one strategy) running longer than this is failed as overrun and rolled
    /// back; the cascade goes on with the next strategy. [1 s, 1 day].
    pub repair_timeout_us: u64,
    /// An escalated incident nobody acknowledged (`medic ack ID`) is notified again this often; 0: never again.
    /// [0, 7 days].
    pub renotify_interval_us: u64,
    /// Repairs started in one cycle at most. [1, 64].
    pub max_concurrent_repairs: u32,
    /// Attempts of one strategy per window at most. [1, 10000].
    pub strategy_rate_max: u32,
    /// The rate-limit window. [1 s, 7 days].
    pub strategy_rate_window_us: u64,
    /// After a failed attempt a strategy rests this long. [0, 1 day].
    pub strategy_cooldown_us: u64,
    /// Consecutive failures that open a strategy's circuit breaker. [1, 100].
    pub breaker_failures_max: u32,
    /// How long an open breaker stays open before a half-open trial. [1 s, 7 days].
    pub breaker_cooldown_us: u64,
    /// Failed repairs of the same problem (resource and code) before escalating instead. [1, 100].
    pub same_problem_failures_max: u32,
    /// Successful automatic repairs of one problem (resource and code) within `recurring_window_us` after which it
    /// is escalated as recurring, with its history; 0: never. [0, 1000].
    pub recurring_repairs_max: u32,
    /// The breakage cap: at least this many resources failing at once, and more than `breakage_share_max` of the
    /// watched ones, stop automatic repair and escalate; 0 (the default): never — a store's few files can all be
    /// damaged at once by one fault its redundancy undoes, so the operator sets it for the size of what is watched.
    /// [0, 100000].
    pub breakage_resources_min: u32,
    /// The breakage cap's share of the watched resources. (0, 1].
    pub breakage_share_max: f64,
    /// The window of `recurring_repairs_max`, and the least time between two recurring alerts of one problem.
    /// [1 min, 30 days].
    pub recurring_window_us: u64,
    /// Strategies whose posterior success rate is below this are skipped. [0, 1).
    pub success_rate_min: f64,
    /// Beta prior successes of every strategy. (0, 1000].
    pub prior_successes: f64,
    /// Beta prior failures of every strategy. (0, 1000].
    pub prior_failures: f64,
    /// Escalation rises to WARN with this many open incidents. [1, 1000].
    pub warn_incidents_min: u32,
    /// Escalation steps down one level after this long without a new issue. [1 s, 7 days].
    pub deescalate_quiet_us: u64,
    /// Alert rules over issues.
    pub alert_rules: Vec<AlertRule>,
    /// An incident's escalation alert is not repeated for the same problem within this. [0, 7 days].
    pub escalation_alert_cooldown_us: u64,
    /// Open incidents kept at most; issues that would open more are counted and dropped. [1, 100000].
    pub incidents_active_max: usize,
    /// Issues kept per incident at most; later ones are counted only. [1, 10000].
    pub issues_per_incident_max: usize,
    /// Issues taken per cycle at most (checks, detectors, constraints and the subject together). [1, 1000000].
    pub cycle_issues_max: usize,
    /// Metrics with a detector at most; samples of further metrics are ignored. [1, 100000].
    pub metrics_max: usize,
    /// Recent anomalies kept for reports. [1, 10000].
    pub recent_anomalies_max: usize,
    /// Records read from the knowledge base for KPIs and at start-up. [1, 10000000].
    pub kb_records_max: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            dry_run: false,
            detector: "composite".to_string(),
            composite: CompositeConfig::default(),
            anomaly_cutoff: 0.75,
            false_positive_silence_us: DAY_US,
            rate_events_min: 10.0,
            flat_samples_min: 10,
            latency_floor_us: 1_000.0,
            anomaly_for_samples: 2,
            trends: TrendRule::defaults(),
            false_positive_factor: 1.1,
            anomaly_cutoff_max: 0.99,
            constraints: Vec::new(),
            known_causes: CausePair::defaults(),
            correlation_window_us: 60 * US_PER_S,
            quiet_period_us: 300 * US_PER_S,
            escalated_recheck_us: 30 * US_PER_S,
            environment_grace_us: 600 * US_PER_S,
            approval_risk_max: 0.5,
            approval_expiry_us: 3_600 * US_PER_S,
            repair_timeout_us: 600 * US_PER_S,
            renotify_interval_us: 900 * US_PER_S,
            max_concurrent_repairs: 2,
            strategy_rate_max: 6,
            strategy_rate_window_us: 3_600 * US_PER_S,
            strategy_cooldown_us: 60 * US_PER_S,
            breaker_failures_max: 3,
            breaker_cooldown_us: 1_800 * US_PER_S,
            same_problem_failures_max: 3,
            recurring_repairs_max: 3,
            breakage_resources_min: 0,
            breakage_share_max: 0.5,
            recurring_window_us: DAY_US,
            success_rate_min: 0.1,
            prior_successes: 1.0,
            prior_failures: 1.0,
            warn_incidents_min: 3,
            deescalate_quiet_us: 600 * US_PER_S,
            alert_rules: AlertRule::defaults(),
            escalation_alert_cooldown_us: 900 * US_PER_S,
            incidents_active_max: 1_000,
            issues_per_incident_max: 100,
            cycle_issues_max: 10_000,
            metrics_max: 1_000,
            recent_anomalies_max: 50,
            kb_records_max: 10_000,
        }
    }
}

const DAY_US: u64 = 86_400 * US_PER_S;

/// `engine.<key> = v` within `lo..=hi` (`(lo, hi]` when `lo_open`), or an error naming key, value and range.
pub(crate) fn range_f(key: &str, v: f64, lo: f64, hi: f64, lo_open: bool) -> Result<(), String> {
    let ok = v.is_finite() && (if lo_open { v > lo } else { v >= lo }) && v <= hi;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "engine.{key} = {v} is out of range: accepted {}{lo}, {hi}]",
            if lo_open { "(" } else { "[" }
        ))
    }
}

/// `engine.<key> = v` within `lo..=hi`, or an error naming key, value and range.
pub(crate) fn range_u(key: &str, v: u64, lo: u64, hi: u64) -> Result<(), String> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!(
            "engine.{key} = {v} is out of range: accepted [{lo}, {hi}]"
        ))
    }
}

impl EngineConfig {
    /// Checks every bound; the error names the key, the value and the accepted range. In order: detection,
    /// repair gates, escalation, size limits, constraints and alert rules.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_detection()?;
        self.validate_repair_gates()?;
        self.validate_escalation()?;
        self.validate_limits()?;
        self.validate_rules()
    }

    /// The detector, its cut-offs and what it is fed.
    fn validate_detection(&self) -> Result<(), String> {
        if !DETECTOR_NAMES.contains(&self.detector.as_str()) {
            return Err(format!(
                "engine.detector = {:?} is unknown: accepted one of {DETECTOR_NAMES:?}",
                self.detector
            ));
        }
        self.composite.validate()?;
        range_f("anomaly_cutoff", self.anomaly_cutoff, 0.0, 1.0, true)?;
        range_f("rate_events_min", self.rate_events_min, 0.0, 1e9, false)?;
        range_f("latency_floor_us", self.latency_floor_us, 0.0, 3.6e9, false)?;
        range_f(
            "false_positive_factor",
            self.false_positive_factor,
            1.0,
            2.0,
            false,
        )?;
        let cutoff = self.anomaly_cutoff;
        range_f(
            "anomaly_cutoff_max",
            self.anomaly_cutoff_max,
            cutoff,
            1.0,
            false,
        )?;
        for (i, t) in self.trends.iter().enumerate() {
            t.validate(&format!("trends[{i}]"))?;
        }
        let unsigned: [(&str, u64, u64, u64); 5] = [
            (
                "false_positive_silence_us",
                self.false_positive_silence_us,
                US_PER_S,
                30 * DAY_US,
            ),
            (
                "flat_samples_min",
                self.flat_samples_min.into(),
                0,
                1_000_000,
            ),
            (
                "anomaly_for_samples",
                self.anomaly_for_samples.into(),
                1,
                100,
            ),
            (
                "correlation_window_us",
                self.correlation_window_us,
                US_PER_S,
                DAY_US,
            ),
            (
                "quiet_period_us",
                self.quiet_period_us,
                US_PER_S,
                7 * DAY_US,
            ),
        ];
        unsigned
            .iter()
            .try_for_each(|&(k, v, lo, hi)| range_u(k, v, lo, hi))
    }

    /// What a repair must pass: timeouts, concurrency, rate limits, cooldowns, breakers, learned success.
    fn validate_repair_gates(&self) -> Result<(), String> {
        let unsigned: [(&str, u64, u64, u64); 12] = [
            ("environment_grace_us", self.environment_grace_us, 0, DAY_US),
            (
                "repair_timeout_us",
                self.repair_timeout_us,
                US_PER_S,
                DAY_US,
            ),
            (
                "max_concurrent_repairs",
                self.max_concurrent_repairs.into(),
                1,
                64,
            ),
            (
                "strategy_rate_max",
                self.strategy_rate_max.into(),
                1,
                10_000,
            ),
            (
                "strategy_rate_window_us",
                self.strategy_rate_window_us,
                US_PER_S,
                7 * DAY_US,
            ),
            ("strategy_cooldown_us", self.strategy_cooldown_us, 0, DAY_US),
            (
                "breaker_failures_max",
                self.breaker_failures_max.into(),
                1,
                100,
            ),
            (
                "breaker_cooldown_us",
                self.breaker_cooldown_us,
                US_PER_S,
                7 * DAY_US,
            ),
            (
                "same_problem_failures_max",
                self.same_problem_failures_max.into(),
                1,
                100,
            ),
            (
                "recurring_repairs_max",
                self.recurring_repairs_max.into(),
                0,
                1000,
            ),
            (
                "breakage_resources_min",
                self.breakage_resources_min.into(),
                0,
                100_000,
            ),
            (
                "recurring_window_us",
                self.recurring_window_us,
                60 * US_PER_S,
                30 * DAY_US,
            ),
        ];
        unsigned
            .iter()
            .try_for_each(|&(k, v, lo, hi)| range_u(k, v, lo, hi))?;
        range_f("approval_risk_max", self.approval_risk_max, 0.0, 1.0, false)?;
        range_f(
            "breakage_share_max",
            self.breakage_share_max,
            0.0,
            1.0,
            true,
        )?;
        if !(self.success_rate_min.is_finite() && (0.0..1.0).contains(&self.success_rate_min)) {
            return Err(format!(
                "engine.success_rate_min = {} is out of range: accepted [0, 1)",
                self.success_rate_min
            ));
        }
        range_f("prior_successes", self.prior_successes, 0.0, 1000.0, true)?;
        range_f("prior_failures", self.prior_failures, 0.0, 1000.0, true)
    }

    /// When people are told, reminded and answered.
    fn validate_escalation(&self) -> Result<(), String> {
        let unsigned: [(&str, u64, u64, u64); 6] = [
            (
                "escalated_recheck_us",
                self.escalated_recheck_us,
                US_PER_S / 10,
                DAY_US,
            ),
            (
                "approval_expiry_us",
                self.approval_expiry_us,
                US_PER_S,
                7 * DAY_US,
            ),
            (
                "renotify_interval_us",
                self.renotify_interval_us,
                0,
                7 * DAY_US,
            ),
            (
                "warn_incidents_min",
                self.warn_incidents_min.into(),
                1,
                1000,
            ),
            (
                "deescalate_quiet_us",
                self.deescalate_quiet_us,
                US_PER_S,
                7 * DAY_US,
            ),
            (
                "escalation_alert_cooldown_us",
                self.escalation_alert_cooldown_us,
                0,
                7 * DAY_US,
            ),
        ];
        unsigned
            .iter()
            .try_for_each(|&(k, v, lo, hi)| range_u(k, v, lo, hi))
    }

    /// How much the engine keeps in memory and in the knowledge base.
    fn validate_limits(&self) -> Result<(), String> {
        let unsigned: [(&str, usize, u64, u64); 6] = [
            (
                "incidents_active_max",
                self.incidents_active_max,
                1,
                100_000,
            ),
            (
                "issues_per_incident_max",
                self.issues_per_incident_max,
                1,
                10_000,
            ),
            ("cycle_issues_max", self.cycle_issues_max, 1, 1_000_000),
            ("metrics_max", self.metrics_max, 1, 100_000),
            ("recent_anomalies_max", self.recent_anomalies_max, 1, 10_000),
            ("kb_records_max", self.kb_records_max, 1, 10_000_000),
        ];
        unsigned
            .iter()
            .try_for_each(|&(k, v, lo, hi)| range_u(k, v as u64, lo, hi))
    }

    /// The declared constraints and the alert rules.
    fn validate_rules(&self) -> Result<(), String> {
        for (i, c) in self.constraints.iter().enumerate() {
            c.validate()
                .map_err(|e| format!("engine.constraints[{i}]: {e}"))?;
        }
        for (i, r) in self.alert_rules.iter().enumerate() {
            if r.name.is_empty() {
                return Err(format!("engine.alert_rules[{i}].name must not be empty"));
            }
            range_u(
                &format!("alert_rules[{i}].count"),
                r.count.into(),
                1,
                1_000_000,
            )?;
            range_u(
                &format!("alert_rules[{i}].window_us"),
                r.window_us,
                1,
                7 * DAY_US,
            )?;
            range_u(
                &format!("alert_rules[{i}].cooldown_us"),
                r.cooldown_us,
                0,
                7 * DAY_US,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips_through_json() {
        let c = EngineConfig::default();
        c.validate().unwrap();
        let text = serde_json::to_string(&c).unwrap();
        let back: EngineConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
        let partial: EngineConfig = serde_json::from_str(r#"{"dry_run": true}"#).unwrap();
        assert!(partial.dry_run);
        assert!(serde_json::from_str::<EngineConfig>(r#"{"dry_runn": true}"#).is_err());
    }

    #[test]
    fn validate_names_key_value_and_range() {
        let c = EngineConfig {
            anomaly_cutoff: 1.5,
            ..EngineConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err(),
            "engine.anomaly_cutoff = 1.5 is out of range: accepted (0, 1]"
        );
        let c = EngineConfig {
            max_concurrent_repairs: 0,
            ..EngineConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err(),
            "engine.max_concurrent_repairs = 0 is out of range: accepted [1, 64]"
        );
        let c = EngineConfig {
            detector: "nope".into(),
            ..EngineConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .contains("engine.detector = \"nope\"")
        );
        let c = EngineConfig {
            constraints: vec![Constraint::new(
                "disk_free_floor",
                "disk_free_bytes",
                None,
                None,
            )],
            ..EngineConfig::default()
        };
        let err = c.validate().unwrap_err();
        assert!(err.starts_with("engine.constraints[0]: "), "{err}");
        assert!(err.contains("neither a lower nor an upper bound"), "{err}");
    }

    /// Settings of the composite and its detectors are checked too: each bad value is refused naming its key.
    #[test]
    fn validate_checks_every_composite_setting() {
        let bad = |json: &str| -> String {
            let composite: CompositeConfig = serde_json::from_str(json).unwrap();
            EngineConfig {
                composite,
                ..EngineConfig::default()
            }
            .validate()
            .unwrap_err()
        };
        assert_eq!(
            bad(r#"{"weights": {"zscore": -5.0}}"#),
            "engine.composite.weights.zscore = -5 is out of range: accepted [0, 1000000]"
        );
        let zero = r#"{"weights": {"zscore": 0, "mad": 0, "ewma": 0, "iqr": 0, "roc": 0, "seasonal": 0,
            "variance": 0, "range": 0}}"#;
        assert!(bad(zero).contains("every weight is 0"), "{}", bad(zero));
        assert!(bad(r#"{"lead": ["seasonl"]}"#).contains("\"seasonl\""));
        assert_eq!(
            bad(r#"{"ewma": {"alpha": 7.0}}"#),
            "engine.composite.ewma.alpha = 7 is out of range: accepted (0, 1]"
        );
        assert!(
            bad(r#"{"combine_power": -50}"#).starts_with("engine.composite.combine_power = -50")
        );
        assert!(
            bad(r#"{"zscore": {"window": 0}}"#).starts_with("engine.composite.zscore.window = 0")
        );
        assert!(
            bad(r#"{"variance": {"short_window": 0}}"#)
                .starts_with("engine.composite.variance.short_window = 0")
        );
        assert!(bad(r#"{"iqr": {"fence": -1}}"#).starts_with("engine.composite.iqr.fence = -1"));
        assert!(bad(r#"{"range": {"scale": 0}}"#).starts_with("engine.composite.range.scale = 0"));
        // Cut-offs must not decrease from info to critical.
        assert_eq!(
            bad(r#"{"cutoffs": {"high": 0.4}}"#),
            "engine.composite.cutoffs.high = 0.4 is out of range: accepted [0.5, 1]"
        );
        // The composite's default and the other detectors' own defaults pass.
        CompositeConfig::default().validate().unwrap();
    }
}
