//! A receiver for a fleet's Prometheus Alertmanager: `POST /v1/alertmanager` takes Alertmanager's webhook payload
//! (version 4: `{"status", "alerts": [{"status", "labels", "annotations", "startsAt", "endsAt", "fingerprint"}]}`)
//! and turns each firing alert into an issue the engine watches like its own.
//!
//! [`AlertInbox`] keeps the alerts firing now, by fingerprint; a `resolved` alert leaves it, and so does one whose
//! `endsAt` has passed (Alertmanager's own end of an alert it stopped hearing about). Its check,
//! `alertmanager.firing` (shallow tier), fails with one issue per firing alert — kind `check_failed`, code
//! `alert_<alertname>` (lowercase, `[a-z0-9_]`), resource `alert.<instance | job | alertname>` — so an incident
//! opens while the alert fires and, escalated, closes once the check no longer finds it. A playbook may match the
//! code; otherwise no strategy applies and the engine hands the incident to a person. The inbox is kept in the
//! knowledge base after every notification and taken back at start, so a restart forgets no alert still firing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use heal::check::{CheckContext, CheckOutcome, HealthCheck, Tier};
use heal::clock::Timestamp;
use heal::issue::{Issue, IssueKind};
use serde::{Deserialize, Serialize};

/// Alerts one payload may carry.
pub const ALERTS_PER_PAYLOAD_MAX: usize = 1_000;
/// Alerts firing at once that the inbox keeps; a payload that would go past it is refused.
pub const FIRING_MAX: usize = 10_000;
/// Labels or annotations one alert may carry.
pub const LABELS_MAX: usize = 64;
/// Bytes of one label or annotation value.
pub const LABEL_BYTES_MAX: usize = 4_096;

/// Alertmanager's webhook payload (the fields medic reads; others are ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// `4`.
    #[serde(default)]
    pub version: Option<String>,
    /// The alerts of one notification.
    pub alerts: Vec<AmAlert>,
}

/// One alert as Alertmanager sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmAlert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Its labels (`alertname`, `severity`, `instance`, `job`, ...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its annotations (`summary`, `description`, ...).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When it started firing, RFC 3339.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// When Alertmanager considers it over, RFC 3339 (year 1 while it has no end).
    #[serde(default)]
    pub ends_at: Option<String>,
    /// Alertmanager's identity of the alert (its labels' hash).
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// One alert firing now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    /// `alertname`.
    pub name: String,
    /// The issue code: `alert_<alertname>`.
    pub code: String,
    /// The issue resource: `alert.<instance | job | alertname>`.
    pub resource: String,
    /// `summary`, else `description`, else the alert's name.
    pub summary: String,
    /// `severity` label, if any.
    pub severity: Option<String>,
    /// Every label.
    pub labels: BTreeMap<String, String>,
    /// When it ends unless renewed, µs since the epoch (none: until resolved).
    pub ends_at: Option<Timestamp>,
}

/// What one payload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Received {
    /// Alerts now firing that the payload carried.
    pub firing: usize,
    /// Alerts the payload resolved.
    pub resolved: usize,
    /// Alerts firing in the inbox after it.
    pub firing_now: usize,
}

/// The alerts firing now, shared by the HTTP route and the engine's check.
#[derive(Debug, Default)]
pub struct AlertInbox {
    firing: Mutex<HashMap<String, Firing>>,
}

fn code_of(name: &str) -> String {
    let mut code: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    code.truncate(96);
    format!("alert_{code}")
}

fn time_us(text: Option<&str>) -> Option<Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(text?).ok()?;
    u64::try_from(t.timestamp_micros())
        .ok()
        .filter(|us| *us > 0)
}

impl AlertInbox {
    /// Checks a whole payload, then applies it; a bad alert is an error naming its index and what is wrong, and
    /// changes nothing.
    pub fn receive(&self, payload: Payload) -> Result<Received, String> {
        if payload.alerts.len() > ALERTS_PER_PAYLOAD_MAX {
            return Err(format!(
                "{} alerts in one payload: at most alerts_per_payload_max = {ALERTS_PER_PAYLOAD_MAX}",
                payload.alerts.len()
            ));
        }
        let mut changes = Vec::with_capacity(payload.alerts.len());
        for (i, a) in payload.alerts.iter().enumerate() {
            let firing = match a.status.as_str() {
                "firing" => true,
                "resolved" => false,
                other => {
                    return Err(format!(
                        "alerts[{i}].status = {other:?}: accepted \"firing\" or \"resolved\""
                    ));
                }
            };
            let Some(name) = a.labels.get("alertname").filter(|n| !n.is_empty()) else {
                return Err(format!("alerts[{i}].labels.alertname is missing"));
            };
            for (what, map) in [("labels", &a.labels), ("annotations", &a.annotations)] {
                if map.len() > LABELS_MAX {
                    return Err(format!(
                        "alerts[{i}].{what}: {} entries, at most {LABELS_MAX} (labels_max)",
                        map.len()
                    ));
                }
                if let Some((k, v)) = map
                    .iter()
                    .find(|(k, v)| k.len() > LABEL_BYTES_MAX || v.len() > LABEL_BYTES_MAX)
                {
                    return Err(format!(
                        "alerts[{i}].{what}.{}: over label_bytes_max = {LABEL_BYTES_MAX} ({} bytes)",
                        k.chars().take(64).collect::<String>(),
                        k.len().max(v.len())
                    ));
                }
            }
            let key = a
                .fingerprint
                .clone()
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| format!("{:?}", a.labels));
            let at = ["instance", "job", "alertname"]
                .iter()
                .find_map(|l| a.labels.get(*l).filter(|v| !v.is_empty()))
                .cloned()
                .unwrap_or_else(|| name.clone());
            let summary = ["summary", "description"]
                .iter()
                .find_map(|k| a.annotations.get(*k).filter(|v| !v.is_empty()))
                .cloned()
                .unwrap_or_else(|| name.clone());
            changes.push((
                key,
                firing.then(|| Firing {
                    name: name.clone(),
                    code: code_of(name),
                    resource: format!("alert.{at}"),
                    summary,
                    severity: a.labels.get("severity").cloned(),
                    labels: a.labels.clone(),
                    ends_at: time_us(a.ends_at.as_deref()),
                }),
            ));
        }
        let mut map = self.firing.lock().unwrap_or_else(|p| p.into_inner());
        let new = changes
            .iter()
            .filter(|(k, f)| f.is_some() && !map.contains_key(k))
            .count();
        if map.len() + new > FIRING_MAX {
            return Err(format!(
                "{} alerts would fire at once: at most firing_max = {FIRING_MAX}",
                map.len() + new
            ));
        }
        let mut r = Received::default();
        for (key, firing) in changes {
            match firing {
                Some(f) => {
                    r.firing += 1;
                    map.insert(key, f);
                }
                None => {
                    r.resolved += 1;
                    map.remove(&key);
                }
            }
        }
        r.firing_now = map.len();
        Ok(r)
    }

    /// Every alert held, by key, each as JSON: what the knowledge base keeps across a restart
    /// ([`crate::kb::SqliteKb::replace_alerts_firing`]).
    pub fn saved(&self) -> Vec<(String, String)> {
        let map = self.firing.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, String)> = map
            .iter()
            .filter_map(|(k, f)| serde_json::to_string(f).ok().map(|j| (k.clone(), j)))
            .collect();
        out.sort();
        out
    }

    /// Takes back the alerts [`AlertInbox::saved`] gave (at start, before any notification): an alert firing
    /// before a restart fires on until it is resolved or its `endsAt` passes. A row that does not decode is skipped
    /// with a warning; returns how many were taken.
    pub fn restore(&self, saved: Vec<(String, String)>) -> usize {
        let mut map = self.firing.lock().unwrap_or_else(|p| p.into_inner());
        for (key, json) in saved.into_iter().take(FIRING_MAX) {
            match serde_json::from_str::<Firing>(&json) {
                Ok(f) => {
                    map.insert(key, f);
                }
                Err(e) => tracing::warn!(
                    key,
                    "a saved Alertmanager alert does not decode, skipped: {e}"
                ),
            }
        }
        map.len()
    }

    /// The alerts firing at `now` (those whose `endsAt` passed are dropped), by code then resource.
    pub fn firing(&self, now: Timestamp) -> Vec<Firing> {
        let mut map = self.firing.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, f| f.ends_at.is_none_or(|end| now < end));
        let mut out: Vec<Firing> = map.values().cloned().collect();
        out.sort_by(|a, b| (&a.code, &a.resource).cmp(&(&b.code, &b.resource)));
        out
    }
}

/// The name of the check, and the source of its issues.
pub const CHECK_NAME: &str = "alertmanager.firing";

/// The check `alertmanager.firing`: one issue per alert firing now.
pub struct FiringCheck(pub Arc<AlertInbox>);

impl HealthCheck for FiringCheck {
    fn name(&self) -> &str {
        CHECK_NAME
    }
    fn tier(&self) -> Tier {
        Tier::Shallow
    }
    fn run(&self, ctx: &CheckContext<'_>) -> CheckOutcome {
        let now = ctx.clock.now();
        let firing = self.0.firing(now);
        if firing.is_empty() {
            return CheckOutcome::pass("no alert firing");
        }
        let issues: Vec<Issue> = firing
            .iter()
            .map(|f| {
                let mut issue = Issue::new(
                    IssueKind::CheckFailed,
                    &f.code,
                    &f.resource,
                    format!("Alertmanager: {} firing: {}", f.name, f.summary),
                    // The check's own name: the engine re-runs it to see an escalated alert's incident end.
                    CHECK_NAME,
                    now,
                )
                .with_score(if f.severity.as_deref() == Some("critical") {
                    1.0
                } else {
                    0.9
                });
                for (k, v) in f.labels.iter().take(16) {
                    issue = issue.evidence(format!("label.{k}"), v.clone());
                }
                issue
            })
            .collect();
        CheckOutcome::fail(format!("{} alert(s) firing", issues.len()), issues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(v: serde_json::Value) -> Payload {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn firing_alerts_are_kept_until_resolved_or_ended_and_bad_ones_change_nothing() {
        let inbox = AlertInbox::default();
        let r = inbox
            .receive(payload(serde_json::json!({"version": "4", "status": "firing", "alerts": [
                {"status": "firing", "fingerprint": "a1",
                 "labels": {"alertname": "HighErrorRate", "instance": "web-1:9100", "severity": "critical"},
                 "annotations": {"summary": "5xx above 5%"}, "endsAt": "0001-01-01T00:00:00Z"},
                {"status": "firing", "fingerprint": "b2", "labels": {"alertname": "DiskFull", "job": "node"},
                 "endsAt": "2026-12-06T10:00:00Z"}
            ]})))
            .unwrap();
        assert_eq!((r.firing, r.resolved, r.firing_now), (2, 0, 2));
        let before_end = chrono::DateTime::parse_from_rfc3339("2026-12-06T09:00:00Z")
            .unwrap()
            .timestamp_micros() as u64;
        let f = inbox.firing(before_end);
        assert_eq!(f[0].code, "alert_diskfull");
        assert_eq!(f[0].resource, "alert.node");
        assert_eq!(f[1].code, "alert_higherrorrate");
        assert_eq!(f[1].resource, "alert.web-1:9100");
        assert_eq!(f[1].summary, "5xx above 5%");
        // A bad alert anywhere in the payload: refused, naming it, nothing changed.
        let e = inbox
            .receive(payload(serde_json::json!({"alerts": [
                {"status": "resolved", "fingerprint": "a1", "labels": {"alertname": "HighErrorRate"}},
                {"status": "pending", "labels": {"alertname": "X"}}
            ]})))
            .unwrap_err();
        assert!(e.contains("alerts[1].status = \"pending\""), "{e}");
        assert_eq!(inbox.firing(before_end).len(), 2);
        let e = inbox
            .receive(payload(
                serde_json::json!({"alerts": [{"status": "firing", "labels": {}}]}),
            ))
            .unwrap_err();
        assert!(e.contains("alerts[0].labels.alertname is missing"), "{e}");
        // Resolved leaves; past its endsAt an alert leaves too.
        inbox
            .receive(payload(serde_json::json!({"alerts": [
                {"status": "resolved", "fingerprint": "a1", "labels": {"alertname": "HighErrorRate"}}
            ]})))
            .unwrap();
        assert_eq!(inbox.firing(before_end).len(), 1);
        assert!(inbox.firing(before_end + 2 * 3_600_000_000).is_empty());
    }

    #[test]
    fn saved_alerts_come_back_whole_and_a_bad_row_is_skipped() {
        let inbox = AlertInbox::default();
        inbox
            .receive(payload(serde_json::json!({"alerts": [
                {"status": "firing", "fingerprint": "f1",
                 "labels": {"alertname": "DiskFull", "instance": "web1:9100", "severity": "critical"},
                 "annotations": {"summary": "disk full"}, "endsAt": "2099-01-01T00:00:00Z"}
            ]})))
            .unwrap();
        let saved = inbox.saved();
        assert_eq!(saved.len(), 1);
        let back = AlertInbox::default();
        let mut rows = saved.clone();
        rows.push(("bad".into(), "{not json".into()));
        assert_eq!(back.restore(rows), 1);
        assert_eq!(back.firing(1), inbox.firing(1));
        assert_eq!(back.firing(1)[0].resource, "alert.web1:9100");
        // Resolving the restored alert by its fingerprint ends it.
        back.receive(payload(serde_json::json!({"alerts": [
            {"status": "resolved", "fingerprint": "f1", "labels": {"alertname": "DiskFull"}}
        ]})))
        .unwrap();
        assert!(back.firing(1).is_empty());
    }
}
