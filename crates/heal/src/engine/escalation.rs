//! Escalating an incident to people ([`Engine::escalate`]): its status, the escalation report (what is at risk,
//! why, what an operator can do) and the alert, subject to the alert cooldown.

use super::*;

impl Engine {
    pub(super) fn escalate(
        &mut self,
        inc: &mut Incident,
        reasons: Vec<String>,
        needs_approval: bool,
        lost: Vec<String>,
        s: &mut CycleSummary,
        alerts: &mut Vec<Alert>,
    ) {
        let now = self.clock.now();
        let level = if needs_approval {
            EscalationLevel::Warn
        } else {
            EscalationLevel::Escalate
        };
        let report = self.report(inc, reasons, needs_approval, lost, level, now);
        inc.record.report_markdown = Some(report.to_markdown());
        if needs_approval {
            inc.status = IncidentStatus::AwaitingApproval;
            inc.awaiting_since = Some(now);
        } else {
            inc.status = IncidentStatus::Escalated;
            inc.record.resolution = Resolution::Escalated;
            self.metrics.escalations += 1;
            s.escalations.push(inc.record.id);
        }
        let root = &report.current_issue;
        let alert = Alert {
            key: format!(
                "{}:{}:{}",
                if needs_approval {
                    "approval"
                } else {
                    "incident"
                },
                root.resource,
                root.code
            ),
            rule: if needs_approval {
                "approval_required"
            } else {
                "escalation"
            }
            .to_string(),
            level,
            severity: inc.record.severity,
            title: report.title.clone(),
            resource: root.resource.clone(),
            code: root.code.clone(),
            incident_id: Some(inc.record.id),
            at: now,
            report: Some(report),
        };
        if let Some(a) = self
            .alerts
            .fire(alert, self.config.escalation_alert_cooldown_us)
        {
            alerts.push(a);
        }
    }

    /// The escalation report: the root issue, what is at risk, why, and what an operator can do.
    fn report(
        &self,
        inc: &Incident,
        reasons: Vec<String>,
        needs_approval: bool,
        lost: Vec<String>,
        level: EscalationLevel,
        now: Timestamp,
    ) -> EscalationReport {
        let r = &inc.record;
        let root = r.issues.get(inc.root_issue).cloned().unwrap_or_else(|| {
            Issue::new(
                IssueKind::OperationError,
                "unknown",
                "unknown",
                "no issue",
                "engine",
                now,
            )
        });
        let lost = at_risk(r, lost);
        let suggestions = self.suggestions(r, &root, needs_approval, !lost.is_empty());
        EscalationReport {
            incident_id: r.id,
            subject: self.subject.name().to_string(),
            generated_at: now,
            title: format!("{} on {}: {}", root.code, root.resource, root.summary),
            health: self.scheduler.health(),
            level,
            crisis: r.crisis,
            severity: r.severity,
            root_cause: r.root_cause.clone(),
            issues: r
                .issues
                .iter()
                .map(|i| {
                    format!(
                        "{:?} {} on {} at {}: {}",
                        i.kind,
                        i.code,
                        i.resource,
                        crate::clock::rfc3339(i.detected_at),
                        i.summary
                    )
                })
                .collect(),
            current_issue: root,
            evidence: inc.evidence.clone(),
            blast_radius: r.blast_radius.clone(),
            recent_anomalies: self.recent_anomalies.iter().cloned().collect(),
            attempts: r.attempts.clone(),
            data_at_risk: lost,
            reasons,
            suggestions,
        }
    }

    /// What an operator can do, most specific first: approve or deny, protect the data, reset an open breaker,
    /// inspect by hand, restore, mark a false positive, acknowledge.
    fn suggestions(
        &self,
        r: &IncidentRecord,
        root: &Issue,
        needs_approval: bool,
        anything_lost: bool,
    ) -> Vec<String> {
        let mut suggestions = Vec::new();
        if needs_approval {
            suggestions.push(format!(
                "if the risk is acceptable, approve it: `medic approve {id}` (POST /v1/incidents/{id}/approve) and it \
                 is repaired in the next cycle; otherwise `medic deny {id}`. Unanswered, it escalates after {}",
                operator::human_duration(self.config.approval_expiry_us),
                id = r.id
            ));
        }
        if r.issues.iter().any(|i| i.data_at_risk) {
            suggestions.push(
                "stop writes and copy the data directory before any manual repair".to_string(),
            );
        }
        for (name, b) in self.gates.breakers() {
            if b.opened_at.is_some() {
                suggestions.push(format!(
                    "the circuit breaker of {name} is open after {} failures in a row: fix the cause, then reset it \
                     with `medic breaker reset {name}`",
                    b.consecutive_failures
                ));
            }
        }
        if r.attempts
            .iter()
            .any(|a| a.outcome == AttemptOutcome::RolledBack)
        {
            suggestions.push(format!(
                "repairs ran but validation kept failing: inspect {} by hand",
                describe_location(root)
            ));
        }
        if anything_lost && !needs_approval {
            suggestions.push("restore the affected range from a backup or a replica".to_string());
        }
        suggestions.push(format!(
            "inspect {} ({})",
            root.resource,
            describe_location(root)
        ));
        suggestions.push(format!(
            "if this is not a real problem: `medic false-positive {}`",
            r.id
        ));
        if !needs_approval {
            suggestions.push(format!(
                "acknowledge it to stop the reminders: `medic ack {id}`; once fixed by hand: `medic resolve {id} \
                 --note \"what was done\"`",
                id = r.id
            ));
        }
        suggestions
    }
}

/// What is at risk: what the caller names lost, every issue with data at risk or an LSN range, and every attempt
/// that estimated a loss.
fn at_risk(r: &IncidentRecord, mut lost: Vec<String>) -> Vec<String> {
    for i in r
        .issues
        .iter()
        .filter(|i| i.data_at_risk || i.location.lsn_range.is_some())
    {
        lost.push(format!("{} at risk: {}", i.code, describe_location(i)));
    }
    for a in r
        .attempts
        .iter()
        .filter(|a| !matches!(a.data_loss, DataLoss::None))
    {
        lost.push(format!("{} lost {:?}", a.strategy, a.data_loss));
    }
    lost
}
