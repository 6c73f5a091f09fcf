//! Which incidents a listing shows (`GET /v1/incidents?since=&until=&severity=&kind=&status=&resource=`,
//! `medic incidents --since ... --severity ...`): [`IncidentQuery`] is the request as written, [`IncidentFilter`]
//! the checked filter. Every bad value is refused naming its key, the value and what is accepted.
//!
//! - `since`, `until`: when the incident was detected, inclusive (times as [`crate::history::parse_time`] reads them).
//! - `severity`: `sev0`..`sev3`, a comma-separated list (any of them).
//! - `kind`: an issue kind (`anomaly`, `check_failed`, `integrity`, ...), a list: an incident with an issue of one.
//! - `status`: a resolution (`open`, `auto_repaired`, `escalated`, `self_resolved`, `false_positive`, `resolved`),
//!   or `active` (not closed) and `closed`; a list.
//! - `resource`: an issue's resource, `*` matching any run of characters (`wal/*`).
//!
//! A filtered listing looks at the newest [`INCIDENTS_SCANNED_MAX`] incidents.

use heal::learn::Resolution;
use heal::{IncidentRecord, IssueKind, Severity, Timestamp};
use serde::{Deserialize, Serialize};

/// How many of the newest incidents a filtered listing looks at.
pub const INCIDENTS_SCANNED_MAX: usize = crate::kb::RECENT_RECORDS_MAX;
/// The longest `resource` pattern accepted.
pub const RESOURCE_PATTERN_BYTES_MAX: usize = 256;

/// The listing's query as written (strings, as they come in a URL).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentQuery {
    /// At most this many, newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Detected at or after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Detected at or before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Severities, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Issue kinds, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Statuses, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// A resource pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

impl IncidentQuery {
    /// The query string of a `GET /v1/incidents` asking for this (values percent-encoded).
    pub fn to_query_string(&self) -> String {
        let pairs = [
            ("limit", self.limit.map(|l| l.to_string())),
            ("since", self.since.clone()),
            ("until", self.until.clone()),
            ("severity", self.severity.clone()),
            ("kind", self.kind.clone()),
            ("status", self.status.clone()),
            ("resource", self.resource.clone()),
        ];
        pairs
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", crate::client::encode_segment(&v))))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// A status an incident can be filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Exactly this resolution.
    Is(Resolution),
    /// Not closed yet (no resolution time).
    Active,
    /// Closed (a resolution time).
    Closed,
}

const STATUSES: [(&str, StatusFilter); 8] = [
    ("open", StatusFilter::Is(Resolution::Open)),
    ("auto_repaired", StatusFilter::Is(Resolution::AutoRepaired)),
    ("escalated", StatusFilter::Is(Resolution::Escalated)),
    ("self_resolved", StatusFilter::Is(Resolution::SelfResolved)),
    (
        "false_positive",
        StatusFilter::Is(Resolution::FalsePositive),
    ),
    ("resolved", StatusFilter::Is(Resolution::Resolved)),
    ("active", StatusFilter::Active),
    ("closed", StatusFilter::Closed),
];

const SEVERITIES: [(&str, Severity); 4] = [
    ("sev0", Severity::Sev0),
    ("sev1", Severity::Sev1),
    ("sev2", Severity::Sev2),
    ("sev3", Severity::Sev3),
];

const KINDS: [(&str, IssueKind); 7] = [
    ("anomaly", IssueKind::Anomaly),
    ("check_failed", IssueKind::CheckFailed),
    ("integrity", IssueKind::Integrity),
    ("constraint_breach", IssueKind::ConstraintBreach),
    ("stale_derived", IssueKind::StaleDerived),
    ("operation_error", IssueKind::OperationError),
    ("resource", IssueKind::Resource),
];

/// The checked filter; an empty one lets every incident through.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentFilter {
    /// Detected at or after (µs).
    pub since: Option<Timestamp>,
    /// Detected at or before (µs).
    pub until: Option<Timestamp>,
    /// Any of these severities.
    pub severities: Vec<Severity>,
    /// An issue of any of these kinds.
    pub kinds: Vec<IssueKind>,
    /// Any of these statuses.
    pub statuses: Vec<StatusFilter>,
    /// An issue whose resource matches (lower case; `*` any run of characters).
    pub resource: Option<String>,
}

/// One comma-separated list of names from `table`, or an error naming the key, the bad name and the accepted ones.
fn names<T: Copy>(key: &str, text: &str, table: &[(&str, T)]) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim) {
        let folded = name.to_ascii_lowercase();
        match table.iter().find(|(n, _)| *n == folded) {
            Some((_, v)) => out.push(*v),
            None => {
                let known: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "{key} = {name:?} is not one of {} (a comma-separated list)",
                    known.join(", ")
                ));
            }
        }
    }
    Ok(out)
}

impl IncidentFilter {
    /// Checks `q` (times relative to `now`).
    pub fn parse(q: &IncidentQuery, now: Timestamp) -> Result<IncidentFilter, String> {
        let time = |key: &str, v: &Option<String>| {
            v.as_deref()
                .map(|t| crate::history::parse_time(key, t, now))
                .transpose()
        };
        let since = time("since", &q.since)?;
        let until = time("until", &q.until)?;
        if let (Some(s), Some(u)) = (since, until)
            && s > u
        {
            return Err(format!(
                "since = {:?} is after until = {:?}",
                q.since.as_deref().unwrap_or_default(),
                q.until.as_deref().unwrap_or_default()
            ));
        }
        let resource = match q.resource.as_deref().map(str::trim) {
            Some("") => {
                return Err("resource is empty; give a resource or a pattern such as wal/*".into());
            }
            Some(r) if r.len() > RESOURCE_PATTERN_BYTES_MAX => {
                return Err(format!(
                    "resource is {} bytes, over resource_pattern_bytes_max = {RESOURCE_PATTERN_BYTES_MAX}",
                    r.len()
                ));
            }
            Some(r) => Some(r.to_ascii_lowercase()),
            None => None,
        };
        Ok(IncidentFilter {
            since,
            until,
            severities: q
                .severity
                .as_deref()
                .map(|t| names("severity", t, &SEVERITIES))
                .transpose()?
                .unwrap_or_default(),
            kinds: q
                .kind
                .as_deref()
                .map(|t| names("kind", t, &KINDS))
                .transpose()?
                .unwrap_or_default(),
            statuses: q
                .status
                .as_deref()
                .map(|t| names("status", t, &STATUSES))
                .transpose()?
                .unwrap_or_default(),
            resource,
        })
    }

    /// Whether the filter lets every incident through.
    pub fn is_empty(&self) -> bool {
        *self == IncidentFilter::default()
    }

    /// Whether `r` passes.
    pub fn matches(&self, r: &IncidentRecord) -> bool {
        self.since.is_none_or(|s| r.detected_at >= s)
            && self.until.is_none_or(|u| r.detected_at <= u)
            && (self.severities.is_empty() || self.severities.contains(&r.severity))
            && (self.kinds.is_empty() || r.issues.iter().any(|i| self.kinds.contains(&i.kind)))
            && (self.statuses.is_empty()
                || self.statuses.iter().any(|s| match s {
                    StatusFilter::Is(res) => r.resolution == *res,
                    StatusFilter::Active => r.resolved_at.is_none(),
                    StatusFilter::Closed => r.resolved_at.is_some(),
                }))
            && self.resource.as_deref().is_none_or(|p| {
                r.issues
                    .iter()
                    .any(|i| crate::operators::glob(p, &i.resource.to_ascii_lowercase()))
            })
    }
}

/// The newest `limit` incidents of `app` that `filter` lets through, newest first (among the newest
/// [`INCIDENTS_SCANNED_MAX`] when filtered).
pub fn list(
    app: &crate::app::App,
    filter: &IncidentFilter,
    limit: usize,
) -> anyhow::Result<Vec<IncidentRecord>> {
    if filter.is_empty() {
        return app.incidents(limit);
    }
    let mut records = app.incidents(INCIDENTS_SCANNED_MAX)?;
    records.retain(|r| filter.matches(r));
    records.truncate(limit);
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = 1_800_000_000_000_000;

    fn q(f: impl FnOnce(&mut IncidentQuery)) -> IncidentQuery {
        let mut q = IncidentQuery::default();
        f(&mut q);
        q
    }

    #[test]
    fn bad_values_are_named_with_what_is_accepted() {
        let cases: [(IncidentQuery, &[&str]); 6] = [
            (
                q(|q| q.severity = Some("sev1,high".into())),
                &["severity", "\"high\"", "sev0"],
            ),
            (
                q(|q| q.kind = Some("corrupt".into())),
                &["kind", "\"corrupt\"", "integrity"],
            ),
            (
                q(|q| q.status = Some("done".into())),
                &["status", "\"done\"", "auto_repaired", "closed"],
            ),
            (
                q(|q| q.since = Some("yesterday-ish".into())),
                &["since", "yesterday-ish", "RFC 3339"],
            ),
            (
                q(|q| {
                    q.since = Some("-1h".into());
                    q.until = Some("-2h".into());
                }),
                &["since", "after until"],
            ),
            (q(|q| q.resource = Some(" ".into())), &["resource is empty"]),
        ];
        for (query, words) in cases {
            let e = IncidentFilter::parse(&query, NOW).unwrap_err();
            for w in words {
                assert!(e.contains(w), "{query:?}: {e:?} lacks {w:?}");
            }
        }
    }

    #[test]
    fn lists_and_case_are_accepted() {
        let f = IncidentFilter::parse(
            &q(|q| {
                q.severity = Some("SEV0, sev2".into());
                q.status = Some("active,auto_repaired".into());
                q.resource = Some("WAL/*".into());
            }),
            NOW,
        )
        .unwrap();
        assert_eq!(f.severities, vec![Severity::Sev0, Severity::Sev2]);
        assert_eq!(f.statuses.len(), 2);
        assert_eq!(f.resource.as_deref(), Some("wal/*"));
        assert!(!f.is_empty());
        assert!(
            IncidentFilter::parse(&IncidentQuery::default(), NOW)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_query_string_encodes_its_values() {
        let s = q(|q| {
            q.limit = Some(5);
            q.resource = Some("wal/*".into());
        })
        .to_query_string();
        assert_eq!(s, "limit=5&resource=wal%2F%2A");
    }
}
