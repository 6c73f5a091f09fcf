//! What was lost beyond every redundancy and what an operator accepted: [`LostRange`] (file, offset, LSNs, reason and
//! — from the identity sidecars — the documents it may have changed), its issue and its refusal
//! ([`StoreError::MayBeStale`]), and [`LossAcceptance`]. The store keeps the unaccepted ranges in its state; while
//! any is there, writes are refused (`ReadOnly::Lost`) and a read answers only a document no lost record may have
//! changed ([`LostRange::may_have_changed`]).

use heal::{Issue, IssueKind, Location};
use serde::{Deserialize, Serialize};

use crate::collection;
use crate::error::StoreError;
use crate::issues::Code;
use crate::store::{RESERVED_ID_PREFIX, issue};

/// Acknowledged records lost beyond every redundancy, found on open: a sealed segment missing or damaged beyond what
/// its parity rebuilds, a snapshot beyond parity (no log covers its documents), or open-segment records damaged in
/// both the main copy and the mirror. While any is unacknowledged the store is degraded: writes are refused and reads
/// answer only what is certainly current (see [`Store::accept_loss`](crate::Store::accept_loss)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostRange {
    /// The file whose records were lost (relative to the data directory).
    pub file: String,
    /// Where in it the lost records start; `None` when the whole file is gone.
    pub offset: Option<u64>,
    /// The LSNs lost, inclusive. For a snapshot: every LSN it covered (`1..=snapshot LSN`).
    pub lsn_range: (u64, u64),
    /// Why they are lost.
    pub reason: String,
    /// The table keys (ids, namespaced for a named collection) of every record in `lsn_range`, read from the
    /// file's identity sidecar ([`crate::identity`]); `None` when no intact sidecar covers the whole range. When
    /// known, only these documents may be stale: every other one is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
}

impl LostRange {
    /// Whether a lost record may have changed the document under `key`, whose surviving version is `version` (0
    /// when it has none): the range ends above that version and names the key, or names no keys at all.
    pub fn may_have_changed(&self, key: &str, version: u64) -> bool {
        self.lsn_range.1 > version
            && self
                .ids
                .as_ref()
                .is_none_or(|ids| ids.binary_search_by(|k| k.as_str().cmp(key)).is_ok())
    }

    /// The documents it may have changed, as users name them (`id`, or `collection/id` outside `default`); `None`
    /// when unknown.
    pub fn documents(&self) -> Option<Vec<String>> {
        self.ids.as_ref().map(|ids| {
            ids.iter()
                .filter(|k| !k.starts_with(RESERVED_ID_PREFIX))
                .map(|k| match collection::split(k) {
                    (collection::DEFAULT, id) => id.to_owned(),
                    (c, id) => format!("{c}/{id}"),
                })
                .collect()
        })
    }

    /// One line: `records LSN a..=b of FILE (from offset N): reason`.
    pub fn describe(&self) -> String {
        format!(
            "records LSN {}..={} of {}{}: {}",
            self.lsn_range.0,
            self.lsn_range.1,
            self.file,
            self.offset
                .map_or(String::new(), |o| format!(" (from offset {o})")),
            self.reason
        ) + &match self.documents() {
            None => "; which documents they changed is unknown".to_owned(),
            Some(d) if d.is_empty() => "; they changed no document".to_owned(),
            Some(d) => {
                const SHOWN: usize = 20;
                let more = d.len().saturating_sub(SHOWN);
                format!(
                    "; they may have changed {} document(s): {}{}",
                    d.len(),
                    d.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", "),
                    if more > 0 {
                        format!(" and {more} more (store.lost in /v1/status lists all)")
                    } else {
                        String::new()
                    }
                )
            }
        }
    }

    /// The issue the engine sees for it: `acknowledged_data_lost`, data at risk, located by file, offset and LSNs.
    /// No strategy repairs it; it escalates until an operator restores the file or accepts the loss.
    pub fn issue(&self, source: &str) -> Issue {
        issue(
            IssueKind::Integrity,
            Code::AcknowledgedDataLost,
            &self.file,
            format!(
                "acknowledged {} lost beyond every redundancy; writes refused and possibly stale reads refused until \
                 the file is restored or the loss accepted",
                self.describe()
            ),
            source,
        )
        .at(Location {
            file: Some(self.file.clone()),
            offset: self.offset,
            len: None,
            lsn_range: Some(self.lsn_range),
        })
        .data_at_risk()
        .evidence("lsn_range", format!("{}..={}", self.lsn_range.0, self.lsn_range.1))
        .evidence("reason", self.reason.clone())
        .evidence(
            "documents",
            self.documents()
                .map_or_else(|| "unknown".to_owned(), |d| d.join(", ")),
        )
        .evidence(
            "action",
            "restore the file from a backup and restart medic, or accept the loss: `medic accept-loss --yes`",
        )
    }

    pub(crate) fn stale(&self, what: String) -> StoreError {
        StoreError::MayBeStale {
            what,
            file: self.file.clone(),
            offset: self.offset,
            lsn_range: self.lsn_range,
            reason: self.reason.clone(),
        }
    }
}

/// What [`Store::accept_loss`](crate::Store::accept_loss) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossAcceptance {
    /// The lost ranges accepted (now dropped for good).
    pub ranges: Vec<LostRange>,
    /// The snapshot written of what survived (`None` if there was nothing to accept).
    pub snapshot_lsn: Option<u64>,
    /// Documents in it.
    pub docs: usize,
    /// When, µs since the UNIX epoch.
    pub accepted_at_us: u64,
}
