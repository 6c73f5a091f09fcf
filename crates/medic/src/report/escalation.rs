//! The latest escalation, for the dashboard's panel (`GET /v1/escalations/latest`): the newest incident handed to a
//! human (resolution `escalated`, or one with an escalation report), the level it reached (its escalation policy's
//! level from the knowledge base when `[escalation]` routes it, and the engine's escalation level), who was
//! notified (the policy's receivers reached, else the configured notifiers), whether someone acknowledged it, and
//! its escalation report.

use heal::learn::{IncidentRecord, Resolution};
use serde_json::{Value, json};

use crate::app::App;

/// How many of the newest incidents are looked through for the latest escalation.
pub const ESCALATIONS_SCANNED_MAX: usize = 500;

/// Whether `r` was handed to a human.
pub fn was_escalated(r: &IncidentRecord) -> bool {
    r.resolution == Resolution::Escalated || r.report_markdown.is_some()
}

/// The configured notifiers by name (`log`, `webhook <host>`, `file <path>`): who hears of an escalation when no
/// escalation policy routes it. A webhook is named by its host only (its path may hold a token).
pub fn notifier_names(app: &App) -> Vec<String> {
    let n = &app.config().notify;
    let mut out = Vec::new();
    if n.log {
        out.push("log".to_string());
    }
    if let Some(url) = &n.webhook_url {
        let host = url
            .split_once("://")
            .map_or(url.as_str(), |(_, rest)| rest)
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default();
        let host = host.rsplit('@').next().unwrap_or(host);
        out.push(format!("webhook {host}"));
    }
    if let Some(f) = &n.file {
        out.push(format!("file {}", f.display()));
    }
    out
}

/// `{"escalation": null}` when nothing was escalated among the newest [`ESCALATIONS_SCANNED_MAX`] incidents, else
/// `{"escalation": {...}}`.
pub fn latest(app: &App) -> anyhow::Result<Value> {
    let records = app.incidents(ESCALATIONS_SCANNED_MAX)?;
    let Some(record) = records.iter().find(|r| was_escalated(r)) else {
        return Ok(json!({ "escalation": null }));
    };
    let id = record.id;
    let detail = app.incident_detail(id)?.unwrap_or(Value::Null);
    let level = app
        .kb()
        .saved_levels()?
        .into_iter()
        .find(|(i, _)| *i == id)
        .map(|(_, l)| l);
    let followup = app
        .kb()
        .saved_followups()?
        .into_iter()
        .find(|f| f.incident_id == id);
    let (notified, notified_by) = match &level {
        Some(l) => (l.notified.clone(), "escalation_policy"),
        None => (notifier_names(app), "notifiers"),
    };
    let ack_active = detail["operators"]["acknowledged"].clone();
    let acknowledged = if ack_active.is_object() {
        ack_active
    } else if let Some((by, at)) = followup.as_ref().and_then(|f| f.acknowledged.clone()) {
        json!({ "by": by, "at": at })
    } else if level.as_ref().is_some_and(|l| l.acknowledged) {
        json!({ "by": null, "at": null })
    } else {
        Value::Null
    };
    let first = record.issues.first();
    Ok(json!({
        "escalation": {
            "incident": id,
            "severity": record.severity,
            "crisis": record.crisis,
            "code": first.map(|i| i.code.clone()),
            "resource": first.map(|i| i.resource.clone()),
            "title": first.map(|i| i.summary.clone()),
            "root_cause": record.root_cause,
            "decision": record.decision,
            "detected_at": record.detected_at,
            "resolved_at": record.resolved_at,
            "resolution": record.resolution,
            "status": detail["status"].clone(),
            "policy": level.as_ref().map(|l| json!({
                "name": l.policy,
                "level": l.level,
                "level_since": l.level_since,
            })),
            "engine_escalation_level": app.engine().escalation_level(),
            "notified": notified,
            "notified_by": notified_by,
            "reminders": followup.as_ref().map(|f| f.follow_up.repeats),
            "last_notified_at": followup.as_ref().map(|f| f.follow_up.last_at),
            "acknowledged": acknowledged,
            "report_markdown": detail["report"]["markdown"].clone(),
        }
    }))
}
