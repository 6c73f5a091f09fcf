//! Learning: every incident becomes an [`IncidentRecord`], stored in a [`KnowledgeBase`]. Strategy choice uses
//! past outcomes; KPIs are computed from the records.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::issue::{CrisisLevel, Issue, Severity};
use crate::repair::DataLoss;

/// How one repair attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Repaired and validated.
    Succeeded,
    /// The repair step failed; rolled back.
    Failed,
    /// Repaired but validation failed; rolled back.
    RolledBack,
    /// Dry run: nothing was changed.
    DryRun,
}

/// One repair attempt within an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The strategy used.
    pub strategy: String,
    /// When it started.
    pub started_at: Timestamp,
    /// How long it took, µs.
    pub duration_us: u64,
    /// How it went.
    pub outcome: AttemptOutcome,
    /// What it did or why it failed, one line each.
    pub notes: Vec<String>,
    /// What it lost.
    pub data_loss: DataLoss,
}

/// How an incident ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Still open.
    Open,
    /// Repaired without a human.
    AutoRepaired,
    /// Handed to a human.
    Escalated,
    /// Went away by itself.
    SelfResolved,
    /// Marked a false positive by an operator.
    FalsePositive,
}

/// Everything known about one incident, from detection to resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentRecord {
    /// Unique id.
    pub id: u64,
    /// When the first issue was observed (from the issue itself).
    pub started_at: Timestamp,
    /// When the engine detected it.
    pub detected_at: Timestamp,
    /// When it was resolved, if it is.
    pub resolved_at: Option<Timestamp>,
    /// The issues correlated into it.
    pub issues: Vec<Issue>,
    /// Crisis level.
    pub crisis: CrisisLevel,
    /// Severity.
    pub severity: Severity,
    /// The diagnosed root cause, one line.
    pub root_cause: String,
    /// What was affected (resources, and how many records if known).
    pub blast_radius: Vec<String>,
    /// The decision, one line (e.g. `repair with rebuild_from_parity (confidence 0.92)` or `escalate: ...`).
    pub decision: String,
    /// Each repair attempt, in order.
    pub attempts: Vec<AttemptRecord>,
    /// How it ended.
    pub resolution: Resolution,
    /// The escalation report as Markdown, when escalated.
    pub report_markdown: Option<String>,
}

impl IncidentRecord {
    /// Time to detect, µs: detection minus first observation.
    pub fn time_to_detect_us(&self) -> u64 {
        self.detected_at.saturating_sub(self.started_at)
    }

    /// Time to repair, µs, when auto-repaired: resolution minus detection.
    pub fn time_to_repair_us(&self) -> Option<u64> {
        match self.resolution {
            Resolution::AutoRepaired => {
                self.resolved_at.map(|r| r.saturating_sub(self.detected_at))
            }
            _ => None,
        }
    }
}

/// Success and failure counts of one strategy on one kind of issue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrategyStats {
    /// Attempts that succeeded.
    pub successes: u64,
    /// Attempts that failed or were rolled back.
    pub failures: u64,
}

/// Why the knowledge base failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("knowledge base: {0}")]
pub struct KbError(pub String);

/// Where incident records are kept. An in-memory one lives here for tests; the SQLite one lives in the program.
pub trait KnowledgeBase: Send + Sync {
    /// Inserts or replaces the record with this id.
    fn save(&self, record: &IncidentRecord) -> Result<(), KbError>;
    /// One record.
    fn get(&self, id: u64) -> Result<Option<IncidentRecord>, KbError>;
    /// The newest `limit` records, newest first.
    fn recent(&self, limit: usize) -> Result<Vec<IncidentRecord>, KbError>;
    /// The highest incident id stored, so ids keep growing across restarts.
    fn max_id(&self) -> Result<u64, KbError>;
    /// Past outcomes of `strategy` on issues with this `code`.
    fn strategy_stats(&self, strategy: &str, code: &str) -> Result<StrategyStats, KbError>;
    /// Adds one outcome to the statistics.
    fn record_outcome(&self, strategy: &str, code: &str, success: bool) -> Result<(), KbError>;
}
