//! What a webhook receives for one alert, by `notify.webhook_format`: medic's own JSON (the alert as it is), a Slack
//! incoming-webhook message, or a PagerDuty Events API v2 event (trigger, acknowledge or resolve, deduplicated per
//! incident so the three reach one PagerDuty incident).

use heal::escalate::Alert;
use heal::issue::Severity;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The shape of a webhook's body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The alert as medic's JSON (`key`, `rule`, `level`, `severity`, `title`, `resource`, `code`, `incident_id`,
    /// `at`, `report`).
    #[default]
    Json,
    /// A Slack incoming webhook: `{"text": ...}`, one line naming severity, incident and what to do.
    Slack,
    /// PagerDuty Events API v2 (`https://events.pagerduty.com/v2/enqueue`), with `notify.pagerduty_routing_key`.
    Pagerduty,
}

/// The body for `alert` in `format` (`routing_key` for PagerDuty).
pub fn body(format: WebhookFormat, alert: &Alert, routing_key: Option<&str>) -> Value {
    match format {
        WebhookFormat::Json => serde_json::to_value(alert).unwrap_or(Value::Null),
        WebhookFormat::Slack => slack(alert),
        WebhookFormat::Pagerduty => pagerduty(alert, routing_key.unwrap_or_default()),
    }
}

/// `SEV0`..`SEV3`.
pub fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Sev0 => "SEV0",
        Severity::Sev1 => "SEV1",
        Severity::Sev2 => "SEV2",
        Severity::Sev3 => "SEV3",
    }
}

/// One Slack message: `[SEV1] medic incident 7 (escalation): <title> — wal/x.seg, wal_record_damaged`.
fn slack(a: &Alert) -> Value {
    let incident = a
        .incident_id
        .map(|i| format!("incident {i} "))
        .unwrap_or_default();
    let what = [a.resource.as_str(), a.code.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!(
        "[{}] medic {incident}({}): {}",
        severity_label(a.severity),
        a.rule,
        a.title
    );
    if !what.is_empty() {
        text.push_str(&format!(" — {what}"));
    }
    json!({ "text": text })
}

/// A PagerDuty Events API v2 event: `resolved` resolves, `acknowledged` acknowledges, anything else triggers; the
/// dedup key is the incident's (`medic-incident-7`), or the alert's key when it has no incident.
fn pagerduty(a: &Alert, routing_key: &str) -> Value {
    let action = match a.rule.as_str() {
        "resolved" => "resolve",
        "acknowledged" => "acknowledge",
        _ => "trigger",
    };
    let dedup = a
        .incident_id
        .map_or_else(|| a.key.clone(), |i| format!("medic-incident-{i}"));
    let severity = match a.severity {
        Severity::Sev0 => "critical",
        Severity::Sev1 => "error",
        Severity::Sev2 => "warning",
        Severity::Sev3 => "info",
    };
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup,
    });
    if action == "trigger" {
        event["payload"] = json!({
            "summary": truncate(&a.title, 1024),
            "source": "medic",
            "severity": severity,
            "component": a.resource,
            "group": a.code,
            "class": a.rule,
            "custom_details": {
                "incident_id": a.incident_id,
                "level": a.level,
                "key": a.key,
                "at_us": a.at,
            },
        });
    }
    event
}

/// At most `max` bytes of `s`, cut on a character boundary (PagerDuty's summary is limited to 1024).
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use heal::escalate::EscalationLevel;

    fn alert(rule: &str, incident: Option<u64>) -> Alert {
        Alert {
            key: "incident:wal/1.seg:wal_record_damaged".into(),
            rule: rule.into(),
            level: EscalationLevel::Escalate,
            severity: Severity::Sev1,
            title: "wal_record_damaged on wal/1.seg: every strategy failed".into(),
            resource: "wal/1.seg".into(),
            code: "wal_record_damaged".into(),
            incident_id: incident,
            at: 1_000,
            report: None,
        }
    }

    #[test]
    fn pagerduty_events_trigger_acknowledge_and_resolve_one_incident() {
        let t = body(
            WebhookFormat::Pagerduty,
            &alert("escalation", Some(7)),
            Some("R0UTING"),
        );
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["routing_key"], "R0UTING");
        assert_eq!(t["dedup_key"], "medic-incident-7");
        assert_eq!(t["payload"]["severity"], "error");
        assert_eq!(t["payload"]["source"], "medic");
        assert_eq!(t["payload"]["component"], "wal/1.seg");
        let a = body(
            WebhookFormat::Pagerduty,
            &alert("acknowledged", Some(7)),
            Some("R0UTING"),
        );
        assert_eq!(
            (a["event_action"].as_str(), a["dedup_key"].as_str()),
            (Some("acknowledge"), Some("medic-incident-7"))
        );
        assert!(a.get("payload").is_none());
        let r = body(
            WebhookFormat::Pagerduty,
            &alert("resolved", Some(7)),
            Some("R0UTING"),
        );
        assert_eq!(r["event_action"], "resolve");
        let no_incident = body(
            WebhookFormat::Pagerduty,
            &alert("data_at_risk", None),
            Some("k"),
        );
        assert_eq!(
            no_incident["dedup_key"],
            "incident:wal/1.seg:wal_record_damaged"
        );
        let mut long = alert("escalation", Some(1));
        long.title = "é".repeat(600);
        let l = body(WebhookFormat::Pagerduty, &long, Some("k"));
        assert!(l["payload"]["summary"].as_str().unwrap().len() <= 1024);
    }

    #[test]
    fn a_slack_message_is_one_line_naming_severity_incident_and_resource() {
        let s = body(WebhookFormat::Slack, &alert("escalation", Some(7)), None);
        assert_eq!(
            s["text"],
            "[SEV1] medic incident 7 (escalation): wal_record_damaged on wal/1.seg: every strategy failed — \
             wal/1.seg, wal_record_damaged"
        );
        let j = body(WebhookFormat::Json, &alert("escalation", Some(7)), None);
        assert_eq!(j["incident_id"], 7);
    }
}
