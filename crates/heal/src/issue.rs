//! The one model for everything a subject reports: an [`Issue`]. Anomalies, failed checks, integrity violations,
//! constraint breaches, stale derived data and operation errors all arrive as issues; diagnosis classifies them into
//! a [`CrisisLevel`] and a [`Severity`] and correlates them into incidents.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// What kind of problem an issue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// A metric behaves unusually (a detector's score crossed a cut-off).
    Anomaly,
    /// A health check failed or timed out.
    CheckFailed,
    /// Stored bytes do not match their checksum, parity, or the structure around them.
    Integrity,
    /// A metric is outside a named bound (e.g. free disk below its floor).
    ConstraintBreach,
    /// Derived data (an index, a cache) lags or disagrees with the truth it is derived from.
    StaleDerived,
    /// An operation returned an error.
    OperationError,
    /// A resource is held or exhausted (lock, disk space, file handles).
    Resource,
}

/// How an issue should be handled, by kind of response (after the "hiccup / obstacle / wall / crisis" scale).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CrisisLevel {
    /// Transient: retry.
    Hiccup,
    /// Needs adapting: a repair strategy applies.
    Obstacle,
    /// Cannot be solved automatically: needs a human.
    Wall,
    /// Data is at risk: stop writes, preserve state, call a human.
    Crisis,
}

/// Incident severity, SEV0 the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    /// Data loss or total outage.
    Sev0,
    /// Major degradation or data at risk.
    Sev1,
    /// Partial degradation.
    Sev2,
    /// Minor, no user impact yet.
    Sev3,
}

/// Where a problem is: a file, a byte range, an LSN range. Every field optional; the more the better.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Path relative to the subject's root (e.g. `wal/00000003.seg`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Byte offset in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Length in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub len: Option<u64>,
    /// First and last log sequence number affected (inclusive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lsn_range: Option<(u64, u64)>,
}

/// One observed problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    /// What kind of problem.
    pub kind: IssueKind,
    /// A stable machine code naming the exact problem, e.g. `block_checksum`, `torn_tail`, `manifest_copy_damaged`,
    /// `stale_lock`, `disk_space_low`, `latency_anomaly`. Strategies match on it.
    pub code: String,
    /// The resource affected (a file, an index, a metric name). Two repairs never run on one resource at once, and
    /// issues on one resource within a window are correlated into one incident.
    pub resource: String,
    /// One line for a human.
    pub summary: String,
    /// Where, as precisely as known.
    #[serde(default)]
    pub location: Location,
    /// Who reported it: a check, a detector, an operation.
    pub source: String,
    /// When it was observed.
    pub detected_at: Timestamp,
    /// How bad, in [0, 1] (an anomaly score, a constraint's utilisation, 1.0 for certain damage).
    pub score: f64,
    /// Whether acknowledged data may be lost if nothing is done.
    #[serde(default)]
    pub data_at_risk: bool,
    /// Further facts as key/value pairs, shown in reports (evidence for the diagnosis).
    #[serde(default)]
    pub evidence: Vec<(String, String)>,
}

impl Location {
    /// Where, for people: `` `wal/0000000000000002.seg` bytes 6999790..+4096, LSN 17 `` — only the fields known, never
    /// `Some(..)`/`None`; empty when nothing is known.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.file {
            parts.push(format!("`{f}`"));
        }
        match (self.offset, self.len) {
            (Some(o), Some(n)) => parts.push(format!("bytes {o}..+{n}")),
            (Some(o), None) => parts.push(format!("from byte {o}")),
            (None, Some(n)) => parts.push(format!("{n} bytes")),
            (None, None) => {}
        }
        match self.lsn_range {
            Some((a, b)) if a == b => parts.push(format!("LSN {a}")),
            Some((a, b)) => parts.push(format!("LSNs {a}..={b}")),
            None => {}
        }
        parts.join(" ")
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Issue {
    /// A new issue with the required fields; optional ones start empty.
    pub fn new(
        kind: IssueKind,
        code: impl Into<String>,
        resource: impl Into<String>,
        summary: impl Into<String>,
        source: impl Into<String>,
        detected_at: Timestamp,
    ) -> Self {
        Self {
            kind,
            code: code.into(),
            resource: resource.into(),
            summary: summary.into(),
            location: Location::default(),
            source: source.into(),
            detected_at,
            score: 1.0,
            data_at_risk: false,
            evidence: Vec::new(),
        }
    }

    /// Sets where the problem is.
    pub fn at(mut self, location: Location) -> Self {
        self.location = location;
        self
    }

    /// Sets the score, clamped to [0, 1] (NaN becomes 1: unknown badness is treated as bad).
    pub fn with_score(mut self, score: f64) -> Self {
        self.score = if score.is_nan() {
            1.0
        } else {
            score.clamp(0.0, 1.0)
        };
        self
    }

    /// Marks acknowledged data at risk.
    pub fn data_at_risk(mut self) -> Self {
        self.data_at_risk = true;
        self
    }

    /// Adds one piece of evidence.
    pub fn evidence(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.evidence.push((key.into(), value.into()));
        self
    }
}

#[cfg(test)]
mod location_tests {
    use super::*;

    #[test]
    fn a_location_reads_without_options() {
        let l = Location {
            file: Some("wal/0000000000000002.seg".into()),
            offset: Some(6_999_790),
            len: Some(4096),
            lsn_range: Some((17, 17)),
        };
        assert_eq!(
            l.describe(),
            "`wal/0000000000000002.seg` bytes 6999790..+4096 LSN 17"
        );
        let l = Location {
            file: Some("wal/x.seg".into()),
            offset: Some(6_999_790),
            len: None,
            lsn_range: Some((3, 9)),
        };
        assert_eq!(l.to_string(), "`wal/x.seg` from byte 6999790 LSNs 3..=9");
        assert!(!l.to_string().contains("Some") && !l.to_string().contains("None"));
        assert_eq!(Location::default().describe(), "");
    }
}
