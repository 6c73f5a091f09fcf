//! Repairs: the [`RepairStrategy`] trait that subjects implement, and what a strategy tells the engine about
//! itself so the engine can choose the cheapest adequate one (the recovery cascade).

use serde::{Deserialize, Serialize};

use crate::issue::Issue;

/// How deep a strategy goes; the cascade tries cheaper ones first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairCost {
    /// Fix in place (retry, truncate a torn tail, drop a stale lock).
    InPlace,
    /// Rebuild from redundancy (parity, the manifest's twin, a mirror).
    Redundancy,
    /// Restore a snapshot and replay the log.
    ReplayLog,
    /// Rebuild everything derived from scratch.
    Rebuild,
}

/// What a repair may lose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "amount")]
pub enum DataLoss {
    /// Nothing.
    None,
    /// Only bytes never acknowledged (a torn tail).
    UnacknowledgedOnly,
    /// This many acknowledged records may be lost.
    Records(u64),
    /// Unknown.
    Unknown,
}

/// A strategy's estimate for one issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Expected duration, µs.
    pub duration_us: u64,
    /// What it may lose.
    pub data_loss: DataLoss,
    /// Risk in [0, 1]: how likely the repair makes things worse. Above the configured bound, approval is required.
    pub risk: f64,
}

/// Why a repair step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RepairError {
    /// The strategy does not apply to this issue.
    #[error("not applicable: {0}")]
    NotApplicable(String),
    /// The problem is beyond what redundancy can undo.
    #[error("unrecoverable: {0}")]
    Unrecoverable(String),
    /// An I/O error while repairing.
    #[error("i/o: {0}")]
    Io(String),
    /// The environment refused (no space left, too many open files, out of memory): nothing is wrong with the
    /// strategy or the data, so the attempt counts as blocked (as a failed backup does) and is tried again later.
    #[error("environment: {0}")]
    Environment(String),
    /// The repair ran but validation found the problem still there or something else broken.
    #[error("validation failed: {0}")]
    Validation(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// What a backup taken before a repair is; the strategy gives it back to [`RepairStrategy::rollback`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// Where the backup lives, for the record (a path, a memory slot).
    pub location: String,
    /// Bytes saved.
    pub bytes: u64,
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairReport {
    /// The actions taken, one line each.
    pub actions: Vec<String>,
    /// What was lost.
    pub data_loss: DataLoss,
}

/// A way to fix a kind of problem. Implemented by subjects; the engine drives it:
/// `backup → repair → validate`, and `rollback` when repair or validation fails.
pub trait RepairStrategy: Send + Sync {
    /// A stable name, e.g. `rebuild_from_parity`.
    fn name(&self) -> &str;
    /// How deep it goes.
    fn cost(&self) -> RepairCost;
    /// Whether it can repair this issue.
    fn can_repair(&self, issue: &Issue) -> bool;
    /// Its estimate for this issue.
    fn estimate(&self, issue: &Issue) -> Estimate;
    /// Saves what the repair will change.
    fn backup(&self, issue: &Issue) -> Result<Backup, RepairError>;
    /// Repairs.
    fn repair(&self, issue: &Issue) -> Result<RepairReport, RepairError>;
    /// Checks the problem is gone and nothing else broke.
    fn validate(&self, issue: &Issue) -> Result<(), RepairError>;
    /// Puts back what `backup` saved.
    fn rollback(&self, issue: &Issue, backup: &Backup) -> Result<(), RepairError>;
}
