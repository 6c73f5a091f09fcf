//! What the engine watches: a [`Subject`] lists its health checks and repair strategies, gives metric samples, and
//! hands over problems it found on its own (a damaged block met on a read, an operation that failed).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::check::HealthCheck;
use crate::clock::Timestamp;
use crate::issue::Issue;
use crate::repair::RepairStrategy;

/// One reading of a metric (a gauge value, a latency quantile, a rate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Metric name, e.g. `put_latency_p99_us`, `disk_free_bytes`, `wal_bytes`.
    pub metric: String,
    /// The value. Non-finite values are ignored by detectors.
    pub value: f64,
    /// When it was read.
    pub at: Timestamp,
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
    /// CRISIS handling. `Some(reason)`: an incident that puts acknowledged data at risk is open and was not repaired,
    /// so stop taking writes (reads go on) and preserve the state for a human; `None`: no such incident is open any
    /// more, writes may resume. The engine calls it when the state changes, and again next cycle if it failed. The
    /// default does nothing (a subject that takes no writes).
    fn stop_writes(&self, reason: Option<&str>) -> Result<(), String> {
        let _ = reason;
        Ok(())
    }
}
