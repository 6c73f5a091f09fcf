//! What the engine watches: a [`Subject`] lists its health checks and repair strategies, gives metric samples, and
//! hands over problems it found on its own (a damaged block met on a read, an operation that failed).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::check::HealthCheck;
use crate::clock::Timestamp;
use crate::issue::Issue;
use crate::repair::RepairStrategy;

/// What a metric is, which decides how the engine judges it. Every [`Sample`] says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A value that goes up and down around a level (a latency quantile, an error ratio, open files): the anomaly
    /// detectors judge it as it is.
    #[default]
    Gauge,
    /// A monotonic count since the process started (commits, records, operations, CPU seconds). The engine derives
    /// its rate per second between two samples and the detectors judge the rate (named `<name>_per_s`, a trailing
    /// `_total` dropped), never the raw count. A decrease is a restart of the counting process: the baseline starts
    /// over, it is not an anomaly.
    Counter,
    /// A condition, 0 or 1 (read-only, poisoned): judged by rules (constraints and checks), never by detectors.
    State,
    /// A quantity that follows the data or the machine (documents, log bytes, segments, free disk, resident
    /// memory): growth is what storing data looks like, so detectors do not judge it; constraints (limits) and
    /// trend rules (a sustained slope, a slow leak) do.
    Size,
}

impl MetricKind {
    /// Whether the anomaly detectors judge samples of this kind (counters through their rate).
    pub fn detected(self) -> bool {
        matches!(self, MetricKind::Gauge | MetricKind::Counter)
    }
}

/// One reading of a metric (a gauge value, a latency quantile, a count, a condition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Metric name, e.g. `put_latency_p99_us`, `disk_free_bytes`, `commits_total`.
    pub metric: String,
    /// The value. Non-finite values are ignored by detectors.
    pub value: f64,
    /// When it was read.
    pub at: Timestamp,
    /// What it is: how the engine judges it.
    #[serde(default)]
    pub kind: MetricKind,
}

impl Sample {
    /// A gauge reading.
    pub fn gauge(metric: impl Into<String>, value: f64, at: Timestamp) -> Self {
        Self::new(MetricKind::Gauge, metric, value, at)
    }

    /// A monotonic counter reading.
    pub fn counter(metric: impl Into<String>, value: f64, at: Timestamp) -> Self {
        Self::new(MetricKind::Counter, metric, value, at)
    }

    /// A condition: `true` is 1.
    pub fn state(metric: impl Into<String>, on: bool, at: Timestamp) -> Self {
        Self::new(MetricKind::State, metric, f64::from(u8::from(on)), at)
    }

    /// A size reading.
    pub fn size(metric: impl Into<String>, value: f64, at: Timestamp) -> Self {
        Self::new(MetricKind::Size, metric, value, at)
    }

    /// A reading of `kind`.
    pub fn new(kind: MetricKind, metric: impl Into<String>, value: f64, at: Timestamp) -> Self {
        Self {
            metric: metric.into(),
            value,
            at,
            kind,
        }
    }
}

/// The name of the rate the engine derives from counter `metric`: `commits_total` → `commits_per_s`,
/// `last_lsn` → `last_lsn_per_s`.
pub fn rate_name(metric: &str) -> String {
    format!("{}_per_s", metric.strip_suffix("_total").unwrap_or(metric))
}

/// A system the engine keeps healthy.
pub trait Subject: Send + Sync {
    /// A short name for reports.
    fn name(&self) -> &str;
    /// The health checks of every tier.
    fn checks(&self) -> Vec<Arc<dyn HealthCheck>>;
    /// The repair strategies it offers.
    fn strategies(&self) -> Vec<Arc<dyn RepairStrategy>>;
    /// Current metric readings, fed to the detectors and constraints once per cycle.
    fn sample(&self, now: Timestamp) -> Vec<Sample>;
    /// Problems found since the last call outside any check (read-path damage, operation errors). Drains them.
    fn drain_issues(&self) -> Vec<Issue>;
    /// Every resource it watches (files, targets, ...), the denominator of the breakage cap. The default names none:
    /// then the resources failing are all the engine knows of.
    fn resources(&self) -> Vec<String> {
        Vec::new()
    }
    /// CRISIS handling. `Some(reason)`: an incident that puts acknowledged data at risk is open and was not repaired,
    /// so stop taking writes (reads go on) and preserve the state for a human; `None`: no such incident is open any
    /// more, writes may resume. The engine calls it when the state changes, and again next cycle if it failed. The
    /// default does nothing (a subject that takes no writes).
    fn stop_writes(&self, reason: Option<&str>) -> Result<(), String> {
        let _ = reason;
        Ok(())
    }
}
