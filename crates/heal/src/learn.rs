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

impl AttemptOutcome {
    /// Its name as the API, the webhooks and `repair_history` write it: `succeeded`, `failed`, `rolled_back`,
    /// `dry_run`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::RolledBack => "rolled_back",
            AttemptOutcome::DryRun => "dry_run",
        }
    }
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
    /// Closed by an operator (`medic resolve ID --note ...`): fixed by hand, or judged done.
    Resolved,
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

    /// Time to repair, µs, when repaired without a human: resolution minus detection.
    pub fn time_to_repair_us(&self) -> Option<u64> {
        if self.repaired_without_a_human() {
            self.resolved_at.map(|r| r.saturating_sub(self.detected_at))
        } else {
            None
        }
    }

    /// True when a human was asked for or acted: the incident was escalated or awaited an approval at some point
    /// (its escalation report is kept, whatever it closed as later), or an operator closed it. A false positive
    /// is not counted: an operator judged it no problem.
    pub fn needed_a_human(&self) -> bool {
        match self.resolution {
            Resolution::FalsePositive => false,
            Resolution::Escalated | Resolution::Resolved => true,
            Resolution::Open | Resolution::AutoRepaired | Resolution::SelfResolved => {
                self.report_markdown.is_some()
            }
        }
    }

    /// True when the engine repaired it and no human was asked for on the way (no escalation, no approval).
    pub fn repaired_without_a_human(&self) -> bool {
        self.resolution == Resolution::AutoRepaired && !self.needed_a_human()
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
    /// Replaces the saved follow-ups of notified escalations with `followups` (all of them), so a restart goes on
    /// reminding where it stopped. A knowledge base that keeps none forgets them at restart.
    fn save_followups(&self, _followups: &[crate::engine::SavedFollowUp]) -> Result<(), KbError> {
        Ok(())
    }
    /// The follow-ups last saved.
    fn followups(&self) -> Result<Vec<crate::engine::SavedFollowUp>, KbError> {
        Ok(Vec::new())
    }
    /// Replaces the saved alert times (each alert key with when it last fired, all of them), so an alert still in
    /// its cooldown is not sent again after a restart. A knowledge base that keeps none forgets them at restart.
    fn save_alert_times(&self, _times: &[(String, Timestamp)]) -> Result<(), KbError> {
        Ok(())
    }
    /// The alert times last saved.
    fn alert_times(&self) -> Result<Vec<(String, Timestamp)>, KbError> {
        Ok(Vec::new())
    }
}

/// A knowledge base in memory, for tests and for running without persistence. Lost on restart.
#[derive(Debug, Default)]
pub struct MemoryKnowledgeBase {
    records: std::sync::Mutex<std::collections::BTreeMap<u64, IncidentRecord>>,
    stats: std::sync::Mutex<std::collections::HashMap<(String, String), StrategyStats>>,
    followups: std::sync::Mutex<Vec<crate::engine::SavedFollowUp>>,
    alert_times: std::sync::Mutex<Vec<(String, Timestamp)>>,
}

impl MemoryKnowledgeBase {
    /// An empty knowledge base.
    pub fn new() -> Self {
        Self::default()
    }

    fn poisoned() -> KbError {
        KbError("memory knowledge base lock poisoned by a panic elsewhere".to_string())
    }
}

impl KnowledgeBase for MemoryKnowledgeBase {
    fn save(&self, record: &IncidentRecord) -> Result<(), KbError> {
        self.records
            .lock()
            .map_err(|_| Self::poisoned())?
            .insert(record.id, record.clone());
        Ok(())
    }

    fn get(&self, id: u64) -> Result<Option<IncidentRecord>, KbError> {
        Ok(self
            .records
            .lock()
            .map_err(|_| Self::poisoned())?
            .get(&id)
            .cloned())
    }

    fn recent(&self, limit: usize) -> Result<Vec<IncidentRecord>, KbError> {
        Ok(self
            .records
            .lock()
            .map_err(|_| Self::poisoned())?
            .values()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }

    fn max_id(&self) -> Result<u64, KbError> {
        Ok(self
            .records
            .lock()
            .map_err(|_| Self::poisoned())?
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0))
    }

    fn strategy_stats(&self, strategy: &str, code: &str) -> Result<StrategyStats, KbError> {
        Ok(self
            .stats
            .lock()
            .map_err(|_| Self::poisoned())?
            .get(&(strategy.to_string(), code.to_string()))
            .copied()
            .unwrap_or_default())
    }

    fn record_outcome(&self, strategy: &str, code: &str, success: bool) -> Result<(), KbError> {
        let mut stats = self.stats.lock().map_err(|_| Self::poisoned())?;
        let entry = stats
            .entry((strategy.to_string(), code.to_string()))
            .or_default();
        if success {
            entry.successes += 1;
        } else {
            entry.failures += 1;
        }
        Ok(())
    }

    fn save_followups(&self, followups: &[crate::engine::SavedFollowUp]) -> Result<(), KbError> {
        *self.followups.lock().map_err(|_| Self::poisoned())? = followups.to_vec();
        Ok(())
    }

    fn followups(&self) -> Result<Vec<crate::engine::SavedFollowUp>, KbError> {
        Ok(self.followups.lock().map_err(|_| Self::poisoned())?.clone())
    }

    fn save_alert_times(&self, times: &[(String, Timestamp)]) -> Result<(), KbError> {
        *self.alert_times.lock().map_err(|_| Self::poisoned())? = times.to_vec();
        Ok(())
    }

    fn alert_times(&self) -> Result<Vec<(String, Timestamp)>, KbError> {
        Ok(self
            .alert_times
            .lock()
            .map_err(|_| Self::poisoned())?
            .clone())
    }
}

impl StrategyStats {
    /// The mean of the Beta posterior of the success rate, with a Beta(`prior_successes`, `prior_failures`) prior:
    /// `(s + a) / (s + f + a + b)`. With no history it is the prior mean.
    pub fn posterior_success_rate(&self, prior_successes: f64, prior_failures: f64) -> f64 {
        let a = self.successes as f64 + prior_successes.max(0.0);
        let b = self.failures as f64 + prior_failures.max(0.0);
        if a + b <= 0.0 { 0.5 } else { a / (a + b) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{CrisisLevel, Severity};

    fn record(id: u64) -> IncidentRecord {
        IncidentRecord {
            id,
            started_at: 10,
            detected_at: 15,
            resolved_at: Some(40),
            issues: Vec::new(),
            crisis: CrisisLevel::Obstacle,
            severity: Severity::Sev2,
            root_cause: String::new(),
            blast_radius: Vec::new(),
            decision: String::new(),
            attempts: Vec::new(),
            resolution: Resolution::AutoRepaired,
            report_markdown: None,
        }
    }

    #[test]
    fn memory_kb_keeps_records_newest_first_and_max_id() {
        let kb = MemoryKnowledgeBase::new();
        assert_eq!(kb.max_id().unwrap(), 0);
        for id in [3, 1, 7] {
            kb.save(&record(id)).unwrap();
        }
        let mut r = record(3);
        r.root_cause = "replaced".into();
        kb.save(&r).unwrap();
        assert_eq!(kb.max_id().unwrap(), 7);
        let ids: Vec<u64> = kb.recent(2).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, [7, 3]);
        assert_eq!(kb.get(3).unwrap().unwrap().root_cause, "replaced");
        assert!(kb.get(4).unwrap().is_none());
        assert_eq!(record(1).time_to_detect_us(), 5);
        assert_eq!(record(1).time_to_repair_us(), Some(25));
    }

    #[test]
    fn strategy_stats_count_and_posterior() {
        let kb = MemoryKnowledgeBase::new();
        kb.record_outcome("a", "x", true).unwrap();
        kb.record_outcome("a", "x", true).unwrap();
        kb.record_outcome("a", "x", false).unwrap();
        kb.record_outcome("a", "y", false).unwrap();
        let s = kb.strategy_stats("a", "x").unwrap();
        assert_eq!((s.successes, s.failures), (2, 1));
        assert!((s.posterior_success_rate(1.0, 1.0) - 0.6).abs() < 1e-12);
        let none = kb.strategy_stats("b", "x").unwrap();
        assert!((none.posterior_success_rate(1.0, 1.0) - 0.5).abs() < 1e-12);
    }
}
