//! Derived data: what is computed from the log and can always be rebuilt from it — the full-text index, vector
//! indexes, the brute-force vector reader. This module owns the contract every such index implements
//! ([`DerivedIndex`]) and the types that cross it ([`Change`], [`Truth`], [`Agreement`], [`DerivedError`]).
//!
//! The log and snapshots are the truth; an index is a cache of it that may be behind, damaged or deleted at any
//! moment, and is then caught up or rebuilt. Invariants (FORMAT.md states them too; tests assert them):
//! - An index never holds an LSN that is not durable in the log: a change is handed to an index only after the
//!   commit that wrote it was fsynced (the commit leader fills the change feed after `write_batch` succeeded).
//! - An index error never fails or delays a write: the feed is bounded; an index that cannot keep up or fails is
//!   marked behind and catches up later (through the one replay of the log from its applied LSN, or a rebuild from
//!   the table when the log no longer covers that LSN).
//! - Index files live under `idx/<collection>/<name>/` and may be deleted at any time: a missing or damaged index is
//!   rebuilt, never trusted.
//! - Nothing is rebuilt while the store is degraded (acknowledged records lost): a rebuild would bake the loss in.
//! - `applied_lsn` only grows except through `rebuild`, and after `persist` a reopened index reports at least the
//!   LSN persisted.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::codec::Document;

pub mod driver;
pub mod feed;
pub mod health;

pub use driver::{DerivedSet, DerivedStatus, IndexState, IndexStatus, Lag, LagError, LogCover};
pub use feed::{FEED_RECORDS_MAX, Feed, FeedItem};

/// The collection of every document put without one (`/v1/docs`); named collections are in [`crate::collection`].
pub const DEFAULT_COLLECTION: &str = "default";

/// Where the index files of one index live, relative to the data directory: `idx/<collection>/<name>`.
pub fn index_dir_rel(collection: &str, name: &str) -> String {
    format!("idx/{collection}/{name}")
}

/// Every document of a collection as a rebuild takes it: `(id, document)`.
pub type TableDocs = Vec<(Arc<str>, Arc<Document>)>;

/// One change of the log, as an index applies it. LSNs handed to one index strictly increase.
#[derive(Clone, Debug)]
pub struct Change {
    /// The LSN of the record that made the change (durable in the log).
    pub lsn: u64,
    /// The collection of the document.
    pub collection: Arc<str>,
    /// The document's id.
    pub id: Arc<str>,
    /// The document as of this change; `None` for a delete.
    pub doc: Option<Arc<Document>>,
}

/// What the index is checked against: the table's version (LSN of the record that wrote it) of some documents, as
/// of LSN `lsn`, and how many documents the collection had then. An index whose applied LSN equals `lsn` must hold
/// exactly those versions (`None`: absent) and `count` documents.
#[derive(Clone, Debug)]
pub struct Truth {
    /// The LSN the table was read at.
    pub lsn: u64,
    /// Documents of the collection at `lsn`.
    pub count: u64,
    /// Sampled ids with the LSN of their current version (`None`: the id is absent at `lsn`).
    pub sample: Vec<(String, Option<u64>)>,
}

impl Truth {
    /// Whether an index's version `vi` of a document (the index at applied LSN `applied`, rebuilt at `rebuilt`;
    /// `None`: it holds none) agrees with the table's `vt` at this truth's LSN `t`, as far as the two LSNs let one
    /// tell. Every index's [`DerivedIndex::check`] judges its sampled ids by this one rule.
    pub fn versions_agree(
        vi: Option<u64>,
        applied: u64,
        rebuilt: u64,
        vt: Option<u64>,
        t: u64,
    ) -> bool {
        // A version recorded as the rebuild's LSN is "at most that LSN".
        let same = |b: u64, a: u64| a == b || (rebuilt != 0 && b == rebuilt && a <= b);
        if applied == t {
            return match (vi, vt) {
                (None, None) => true,
                (Some(b), Some(a)) => same(b, a),
                _ => false,
            };
        }
        if applied < t {
            // Changes in (applied, t] are unknown to the index: only a table version at or below `applied` tells.
            return match vt {
                Some(a) if a <= applied => vi.is_some_and(|b| same(b, a)),
                _ => true,
            };
        }
        // applied > t: only an index version at or below `t` tells.
        match vi {
            Some(b) if b <= t => vt.is_some_and(|a| same(b, a)),
            _ => true,
        }
    }
}

/// The outcome of [`DerivedIndex::check`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Agreement {
    /// Documents the index holds.
    pub count: u64,
    /// Each disagreement with the truth, described (id, what the table says, what the index says).
    pub disagreements: Vec<String>,
    /// Damage found in the index's own files (checksums), described with the file.
    pub damage: Vec<String>,
}

impl Agreement {
    /// Nothing wrong.
    pub fn agrees(&self) -> bool {
        self.disagreements.is_empty() && self.damage.is_empty()
    }
}

/// A problem of an index's own structure that a targeted repair fixes without a rebuild (an HNSW node no search
/// reaches, an entry point that is not on the top layer, tombstones past the compaction threshold).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StructureProblem {
    /// A code the index's [`DerivedIndex::repair_structure`] takes (e.g. `unreachable_nodes`).
    pub code: String,
    /// What is wrong, with the figures that show it.
    pub summary: String,
}

/// An index's structural health: named figures (for `/v1/collections/{c}`, `/metrics` and the dashboard) and the
/// problems among them. Indexes without a structure worth measuring report none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Structure {
    /// Figure name → value (e.g. `reachable_fraction` → 1.0).
    pub figures: BTreeMap<String, f64>,
    /// What is wrong; empty when healthy.
    pub problems: Vec<StructureProblem>,
}

/// An index's failure. Never fails a write; it makes the index fall behind (and, when it says so, rebuilt).
#[derive(Debug, thiserror::Error)]
pub enum DerivedError {
    /// The index files are damaged or missing: rebuild from the table.
    #[error("index {index} is damaged: {reason}")]
    Damaged { index: String, reason: String },
    /// An I/O error (a full disk, too many open files): retry later, the files are not known to be damaged.
    #[error("index {index}: {context}: {source}")]
    Io {
        index: String,
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A change the index cannot take (e.g. a vector of another dimension): named, the rest applied.
    #[error("index {index}: document {id:?} at LSN {lsn} not indexed: {reason}")]
    Refused {
        index: String,
        id: String,
        lsn: u64,
        reason: String,
    },
    /// Anything else the index reports.
    #[error("index {index}: {reason}")]
    Other { index: String, reason: String },
}

/// Data derived from the log. Implemented by every index (`index-text`, `index-vector`, the brute-force reader);
/// driven by the store's feed: changes in LSN order, persisted now and then, checked against the table, rebuilt.
pub trait DerivedIndex: Send + Sync {
    /// The index's name (`text`, `hnsw`, `ivf`, `flat`): its directory is `idx/<collection>/<name>/`.
    fn name(&self) -> &str;

    /// The collection it indexes.
    fn collection(&self) -> &str;

    /// The highest LSN whose change this index has applied (what a search sees). 0 for an empty index.
    fn applied_lsn(&self) -> u64;

    /// The highest LSN made durable by [`DerivedIndex::persist`] (what a reopen starts from).
    fn persisted_lsn(&self) -> u64;

    /// Applies changes, LSNs strictly increasing and above [`DerivedIndex::applied_lsn`]. A change the index cannot
    /// take is skipped and reported as [`DerivedError::Refused`] after the rest were applied; any other error leaves
    /// `applied_lsn` at the last change applied.
    fn apply(&self, changes: &[Change]) -> Result<(), DerivedError>;

    /// Makes every applied change durable in the index's files (with the applied LSN); returns the persisted LSN.
    /// An index that drops the changes it failed to persist lowers [`DerivedIndex::applied_lsn`] to what it kept;
    /// the driver then applies them again from the log.
    fn persist(&self) -> Result<u64, DerivedError>;

    /// A cheap look (no read of the data: a few `stat` calls at most) at whether the files the index answers from
    /// are still the ones it wrote. The driver asks every [`driver::QUICK_CHECK_MS`] while the index is current;
    /// `Err(Damaged)` has it rebuilt.
    fn quick_check(&self) -> Result<(), DerivedError> {
        Ok(())
    }

    /// Compares the index with the table ([`Truth`]) and verifies its own files' checksums.
    fn check(&self, truth: &Truth) -> Result<Agreement, DerivedError>;

    /// Drops everything and indexes `docs` (every document of the collection at `lsn`), then persists with `lsn` as
    /// the applied LSN.
    fn rebuild(
        &self,
        docs: &mut dyn Iterator<Item = (Arc<str>, Arc<Document>)>,
        lsn: u64,
    ) -> Result<(), DerivedError>;

    /// Measures the index's own structure (`None`: it has none worth measuring). Runs on the engine's deep tier,
    /// with applying held still; it must not take much longer than a scan of the index's links.
    fn structure(&self) -> Option<Structure> {
        None
    }

    /// Fixes the structural problem `code` that [`DerivedIndex::structure`] reported, in place (searches go on),
    /// persists the result and says what was done. An index that cannot fix it answers an error; the engine then
    /// rebuilds it from the table.
    fn repair_structure(&self, code: &str) -> Result<String, DerivedError> {
        Err(DerivedError::Other {
            index: self.name().to_string(),
            reason: format!("no structural repair for {code:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Truth;

    #[test]
    fn versions_agree_only_where_the_lsns_tell() {
        let agree = Truth::versions_agree;
        // Same LSN: exact.
        assert!(agree(Some(5), 10, 0, Some(5), 10));
        assert!(!agree(Some(5), 10, 0, Some(7), 10));
        assert!(!agree(None, 10, 0, Some(7), 10));
        assert!(!agree(Some(5), 10, 0, None, 10));
        // Index behind: a table version at or below the index's LSN must be there.
        assert!(agree(Some(5), 10, 0, Some(12), 20));
        assert!(!agree(Some(3), 10, 0, Some(5), 20));
        assert!(!agree(None, 10, 0, Some(7), 20));
        // Index ahead: an index version at or below the table's LSN must be the table's.
        assert!(agree(Some(25), 30, 0, Some(5), 20));
        assert!(!agree(Some(5), 30, 0, None, 20));
        // Rebuilt at 10: version 10 means "at most 10".
        assert!(agree(Some(10), 10, 10, Some(4), 10));
        assert!(agree(Some(9), 9, 9, Some(3), 9));
        assert!(!agree(Some(10), 12, 10, Some(11), 12));
    }
}
