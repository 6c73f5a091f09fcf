//! The operators' side of the engine: approve or deny a waiting repair, acknowledge, resolve with a note, reopen;
//! the approvals waiting and when they expire; unanswered approvals escalating after `approval_expiry_us`; and the
//! follow-up of every escalation that reached the notifiers — repeated every `renotify_interval_us` until someone
//! acknowledges it (an `acknowledged` alert tells the receivers once), and a `resolved` alert when it closes,
//! however it closes. The alerts of one cycle are grouped ([`group_alerts`]): one event — an incident and the
//! alerts its issues fired in that cycle — is one message listing them, instead of one message per alert.
//!
//! Who did what is the program's to record (its knowledge base keeps the operators' actions); the engine keeps only
//! what changes its own decisions.

use super::*;
use crate::clock::US_PER_S;

/// One incident waiting for an operator's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingApproval {
    /// The incident.
    pub incident_id: u64,
    /// Its severity.
    pub severity: Severity,
    /// Its root issue's code.
    pub code: String,
    /// Its root issue's resource.
    pub resource: String,
    /// Its root issue's summary.
    pub summary: String,
    /// Why it waits: each strategy above `approval_risk_max`, with its risk.
    pub reasons: Vec<String>,
    /// Since when it waits.
    pub waiting_since: Timestamp,
    /// When it escalates if nobody answers (`approval_expiry_us` after `waiting_since`).
    pub expires_at: Timestamp,
    /// The command that approves it.
    pub approve: String,
    /// The command that denies it.
    pub deny: String,
}

/// An incident whose escalation (or request for approval) reached the notifiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUp {
    /// When it was first notified.
    pub first_at: Timestamp,
    /// When it was last notified.
    pub last_at: Timestamp,
    /// Reminders sent since.
    pub repeats: u32,
    /// The first alert's title.
    pub title: String,
    /// The first alert's resource.
    pub resource: String,
    /// The first alert's issue code.
    pub code: String,
    /// The first alert's severity.
    pub severity: Severity,
}

/// A follow-up as the knowledge base keeps it, so a restart goes on where it stopped: the reminders keep their count
/// and their rhythm, and an acknowledgement stays given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedFollowUp {
    /// The incident.
    pub incident_id: u64,
    /// Its follow-up.
    pub follow_up: FollowUp,
    /// Who acknowledged it and when, if someone did.
    pub acknowledged: Option<(String, Timestamp)>,
}

/// A duration for people: `45 s`, `15 min`, `1 h`, `1 h 30 min`, `2 d 3 h`.
pub fn human_duration(us: u64) -> String {
    let s = us / US_PER_S;
    if us < US_PER_S {
        return format!("{} ms", us / 1_000);
    }
    let (d, h, m, sec) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "min"), (sec, "s")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .take(2)
        .map(|(n, unit)| format!("{n} {unit}"))
        .collect();
    parts.join(" ")
}

impl Engine {
    pub(super) fn active_mut(&mut self, id: u64, why: &str) -> Result<&mut Incident, EngineError> {
        if self.active.contains_key(&id) {
            return Ok(self.active.get_mut(&id).expect("checked"));
        }
        match self.kb.get(id)? {
            Some(r) => Err(EngineError::Closed {
                id,
                resolution: r.resolution,
                why: why.to_string(),
            }),
            None => Err(EngineError::UnknownIncident(id)),
        }
    }

    /// Refuses a risky repair an incident waits for: it stays open, escalated to the operator who denied it
    /// (acknowledged by them, so not notified again), and is not repaired automatically.
    pub fn deny(&mut self, id: u64, who: &str) -> Result<(), EngineError> {
        let now = self.clock.now();
        let inc = self.active_mut(id, "only an incident awaiting approval can be denied")?;
        if inc.status != IncidentStatus::AwaitingApproval {
            return Err(EngineError::WrongState {
                id,
                status: inc.status,
                why: "only an incident awaiting approval can be denied".into(),
            });
        }
        inc.status = IncidentStatus::Escalated;
        inc.denied = true;
        inc.awaiting_since = None;
        inc.acknowledged = Some((who.to_string(), now));
        inc.record.resolution = Resolution::Escalated;
        inc.record.decision = format!(
            "{}; approval denied by {who}: left to a human",
            inc.record.decision
        );
        let record = inc.record.clone();
        self.metrics.escalations += 1;
        self.kb.save(&record)?;
        self.persist_followups()?;
        Ok(())
    }

    /// Acknowledges an open incident: someone is on it, so its escalation is not notified again.
    pub fn acknowledge(&mut self, id: u64, who: &str) -> Result<(), EngineError> {
        let now = self.clock.now();
        let inc = self.active_mut(id, "only an open incident can be acknowledged")?;
        let first = inc.acknowledged.is_none();
        inc.acknowledged = Some((who.to_string(), now));
        // A notified incident's receivers hear of it once (a pager stops paging).
        if let (true, Some(f)) = (first, self.followups.get(&id)) {
            let alert = Alert {
                key: format!("acknowledged:{id}"),
                rule: "acknowledged".to_string(),
                level: EscalationLevel::Warn,
                severity: f.severity,
                title: format!("acknowledged by {who}: {}", f.title),
                resource: f.resource.clone(),
                code: f.code.clone(),
                incident_id: Some(id),
                at: now,
                report: None,
            };
            self.send(&alert);
        }
        self.persist_followups()?;
        Ok(())
    }

    /// Closes an incident as resolved by an operator (open, or escalated by an earlier run of the program and never
    /// closed). A notified incident gets its `resolved` alert.
    pub fn resolve(
        &mut self,
        id: u64,
        who: &str,
        note: &str,
    ) -> Result<IncidentRecord, EngineError> {
        let now = self.clock.now();
        let mut record = match self.active.get(&id) {
            Some(inc) => inc.record.clone(),
            None => {
                let r = self.kb.get(id)?.ok_or(EngineError::UnknownIncident(id))?;
                if r.resolved_at.is_some()
                    || !matches!(r.resolution, Resolution::Open | Resolution::Escalated)
                {
                    return Err(EngineError::Closed {
                        id,
                        resolution: r.resolution,
                        why: format!("nothing to resolve (reopen it first: `medic reopen {id}`)"),
                    });
                }
                r
            }
        };
        record.resolution = Resolution::Resolved;
        record.resolved_at = Some(now);
        record.decision = if note.is_empty() {
            format!("{}; resolved by {who}", record.decision)
        } else {
            format!("{}; resolved by {who}: {note}", record.decision)
        };
        self.kb.save(&record)?;
        self.active.remove(&id);
        if let Some(alert) = self.resolved_alert(id, now, &format!("resolved by {who}")) {
            self.send(&alert);
        }
        self.persist_followups()?;
        Ok(record)
    }

    /// Opens a closed incident again: it is decided again in the next cycle. A false positive's silence on its
    /// metrics ends (its raised cut-offs stay).
    pub fn reopen(&mut self, id: u64, who: &str) -> Result<(), EngineError> {
        if let Some(inc) = self.active.get(&id) {
            return Err(EngineError::WrongState {
                id,
                status: inc.status,
                why: "it is open: only a closed incident can be reopened".into(),
            });
        }
        let mut record = self.kb.get(id)?.ok_or(EngineError::UnknownIncident(id))?;
        if self.active.len() >= self.config.incidents_active_max {
            return Err(EngineError::Config(format!(
                "incident {id} cannot be reopened: {} incidents are open (incidents_active_max)",
                self.active.len()
            )));
        }
        let now = self.clock.now();
        if record.resolution == Resolution::FalsePositive {
            for i in record
                .issues
                .iter()
                .filter(|i| i.kind == IssueKind::Anomaly)
            {
                self.silenced.remove(&i.resource);
            }
        }
        record.decision = format!("{}; reopened by {who}", record.decision);
        record.resolution = Resolution::Open;
        record.resolved_at = None;
        self.kb.save(&record)?;
        self.active.insert(
            id,
            Incident::taken_in(record, IncidentStatus::Open, now, now),
        );
        Ok(())
    }

    /// The incidents waiting for an operator's approval, oldest first.
    pub fn pending_approvals(&self) -> Vec<PendingApproval> {
        let mut v: Vec<PendingApproval> = self
            .active
            .values()
            .filter(|i| i.status == IncidentStatus::AwaitingApproval)
            .map(|i| {
                let root = i.record.issues.get(i.root_issue);
                let since = i.awaiting_since.unwrap_or(i.record.detected_at);
                let id = i.record.id;
                PendingApproval {
                    incident_id: id,
                    severity: i.record.severity,
                    code: root.map(|r| r.code.clone()).unwrap_or_default(),
                    resource: root.map(|r| r.resource.clone()).unwrap_or_default(),
                    summary: root.map(|r| r.summary.clone()).unwrap_or_default(),
                    reasons: i
                        .last_decision
                        .as_ref()
                        .map(|d| {
                            d.reasons
                                .iter()
                                .filter(|r| r.contains("needs approval"))
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default(),
                    waiting_since: since,
                    expires_at: since.saturating_add(self.config.approval_expiry_us),
                    approve: format!("medic approve {id}"),
                    deny: format!("medic deny {id}"),
                }
            })
            .collect();
        v.sort_by_key(|p| (p.waiting_since, p.incident_id));
        v
    }

    /// The escalations followed up now: incident → follow-up.
    pub fn followups(&self) -> &BTreeMap<u64, FollowUp> {
        &self.followups
    }

    /// Escalates every approval nobody answered within `approval_expiry_us`.
    pub(super) fn expire_approvals(&mut self, s: &mut CycleSummary, alerts: &mut Vec<Alert>) {
        let now = self.clock.now();
        let expiry = self.config.approval_expiry_us;
        let due: Vec<u64> = self
            .active
            .values()
            .filter(|i| i.status == IncidentStatus::AwaitingApproval)
            .filter(|i| {
                now.saturating_sub(i.awaiting_since.unwrap_or(i.record.detected_at)) >= expiry
            })
            .map(|i| i.record.id)
            .collect();
        for id in due {
            let Some(mut inc) = self.active.remove(&id) else {
                continue;
            };
            self.metrics.approvals_expired += 1;
            let mut reasons = inc
                .last_decision
                .as_ref()
                .map(|d| d.reasons.clone())
                .unwrap_or_default();
            reasons.push(format!(
                "nobody approved or denied the repair within approval_expiry_us ({}): escalated",
                human_duration(expiry)
            ));
            inc.record.decision = format!(
                "{}; approval expired after {}",
                inc.record.decision,
                human_duration(expiry)
            );
            inc.awaiting_since = None;
            self.escalate(&mut inc, reasons, false, Vec::new(), s, alerts);
            let record = inc.record.clone();
            self.save(&record, &mut s.errors);
            self.active.insert(id, inc);
        }
    }

    /// Records the escalations this cycle's alerts carry, repeats those nobody acknowledged every
    /// `renotify_interval_us`, and adds a `resolved` alert for each followed-up incident that closed.
    pub(super) fn follow_up(&mut self, s: &mut CycleSummary, alerts: &mut Vec<Alert>) {
        let now = self.clock.now();
        for a in alerts.iter() {
            if let (Some(id), "escalation" | "approval_required") = (a.incident_id, a.rule.as_str())
            {
                let f = self.followups.entry(id).or_insert_with(|| FollowUp {
                    first_at: now,
                    last_at: now,
                    repeats: 0,
                    title: a.title.clone(),
                    resource: a.resource.clone(),
                    code: a.code.clone(),
                    severity: a.severity,
                });
                f.last_at = now;
            }
        }
        for (id, resolution) in s.incidents_closed.clone() {
            if let Some(alert) =
                self.resolved_alert(id, now, &format!("closed: {}", enum_text(&resolution)))
            {
                alerts.push(alert);
            }
        }
        // Followed-up incidents gone some other way (an operator's false positive): dropped quietly.
        let gone: Vec<u64> = self
            .followups
            .keys()
            .filter(|id| !self.active.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            self.followups.remove(&id);
        }
        self.remind(alerts);
        *alerts = group_alerts(std::mem::take(alerts));
        if let Err(e) = self.persist_followups() {
            self.metrics.kb_errors += 1;
            s.errors
                .push(format!("saving the follow-ups of escalations: {e}"));
        }
        if let Err(e) = self.persist_alert_times() {
            self.metrics.kb_errors += 1;
            s.errors.push(format!("saving the alert times: {e}"));
        }
    }

    /// How long an alert's time matters: the longest cooldown of any alert (rules, escalations, recurring repairs).
    fn alert_horizon_us(&self) -> u64 {
        let c = &self.config;
        c.alert_rules
            .iter()
            .map(|r| r.cooldown_us)
            .chain([c.escalation_alert_cooldown_us, c.recurring_window_us])
            .max()
            .unwrap_or(0)
    }

    /// Saves when each alert last fired (those still within the longest cooldown) when that changed since last
    /// saved, so a restart does not send again an alert still in its cooldown.
    pub(super) fn persist_alert_times(&mut self) -> Result<(), KbError> {
        let now = self
            .alerts
            .fired_within(self.clock.now(), self.alert_horizon_us());
        if now != self.alert_times_saved {
            self.kb.save_alert_times(&now)?;
            self.alert_times_saved = now;
        }
        Ok(())
    }

    /// Takes back the saved alert times, so their cooldowns go on across a restart.
    pub(super) fn resume_alert_times(&mut self) -> Result<(), EngineError> {
        let saved = self.kb.alert_times()?;
        for (key, at) in &saved {
            self.alerts.remember_fired(key.clone(), *at);
        }
        self.alert_times_saved = saved;
        Ok(())
    }

    /// Saves the follow-ups (with their incidents' acknowledgements) when they changed since last saved.
    pub(super) fn persist_followups(&mut self) -> Result<(), KbError> {
        let now: Vec<SavedFollowUp> = self
            .followups
            .iter()
            .map(|(id, f)| SavedFollowUp {
                incident_id: *id,
                follow_up: f.clone(),
                acknowledged: self.active.get(id).and_then(|i| i.acknowledged.clone()),
            })
            .collect();
        if now != self.followups_saved {
            self.kb.save_followups(&now)?;
            self.followups_saved = now;
        }
        Ok(())
    }

    /// Adds a reminder for each followed-up incident nobody answered within `renotify_interval_us`.
    fn remind(&mut self, alerts: &mut Vec<Alert>) {
        let now = self.clock.now();
        let every = self.config.renotify_interval_us;
        if every == 0 {
            return;
        }
        for (id, f) in self.followups.iter_mut() {
            let Some(inc) = self.active.get(id) else {
                continue;
            };
            let waiting = matches!(
                inc.status,
                IncidentStatus::Escalated | IncidentStatus::AwaitingApproval
            );
            if !waiting || inc.acknowledged.is_some() || now.saturating_sub(f.last_at) < every {
                continue;
            }
            f.last_at = now;
            f.repeats += 1;
            self.metrics.renotifications += 1;
            let ask = if inc.status == IncidentStatus::AwaitingApproval {
                format!("`medic approve {id}` or `medic deny {id}`")
            } else {
                format!("`medic ack {id}`")
            };
            alerts.push(Alert {
                key: format!("repeat:{id}:{}", f.repeats),
                rule: "escalation_repeat".to_string(),
                level: EscalationLevel::Escalate,
                severity: inc.record.severity,
                title: format!(
                    "reminder {} (unanswered for {}): {}; answer with {ask}",
                    f.repeats,
                    human_duration(now.saturating_sub(f.first_at)),
                    f.title
                ),
                resource: f.resource.clone(),
                code: f.code.clone(),
                incident_id: Some(*id),
                at: now,
                report: None,
            });
        }
    }

    /// The `resolved` alert of a followed-up incident (and the end of its follow-up); `None` if it was never notified.
    fn resolved_alert(&mut self, id: u64, now: Timestamp, how: &str) -> Option<Alert> {
        let f = self.followups.remove(&id)?;
        Some(Alert {
            key: format!("resolved:{id}"),
            rule: "resolved".to_string(),
            level: EscalationLevel::Normal,
            severity: f.severity,
            title: format!(
                "resolved after {} ({how}): {}",
                human_duration(now.saturating_sub(f.first_at)),
                f.title
            ),
            resource: f.resource,
            code: f.code,
            incident_id: Some(id),
            at: now,
            report: None,
        })
    }

    /// Delivers one alert outside a cycle (an operator's action), counting failures.
    fn send(&mut self, alert: &Alert) {
        self.metrics.alerts_sent += 1;
        for n in &self.notifiers {
            if n.notify(alert).is_err() {
                self.metrics.notify_failures += 1;
            }
        }
    }
}

/// Alerts of one group at most; more are counted in the message, not listed.
pub const GROUP_LISTED_MAX: usize = 20;

/// Groups one cycle's alerts into one message per event: the alerts of one incident, with those of no incident on
/// one of its resources (a `data_at_risk` rule fired by its issue), become one alert led by the incident's own
/// (its escalation or request for approval, else the worst) whose title lists every alert; alerts of no incident
/// on one resource become one too. `acknowledged` and `resolved` alerts stay as they are. The order of first
/// appearance is kept.
pub fn group_alerts(alerts: Vec<Alert>) -> Vec<Alert> {
    let alone = |a: &Alert| matches!(a.rule.as_str(), "acknowledged" | "resolved");
    // Which incident each resource belongs to this cycle.
    let mut owner: BTreeMap<&str, u64> = BTreeMap::new();
    for a in alerts.iter().filter(|a| !alone(a)) {
        if let Some(id) = a.incident_id {
            owner.entry(a.resource.as_str()).or_insert(id);
        }
    }
    let group_of = |a: &Alert| -> Option<String> {
        if alone(a) {
            return None;
        }
        Some(
            match a
                .incident_id
                .or_else(|| owner.get(a.resource.as_str()).copied())
            {
                Some(id) => format!("incident:{id}"),
                None => format!("resource:{}", a.resource),
            },
        )
    };
    let mut order: Vec<(Option<String>, Vec<Alert>)> = Vec::new();
    for a in alerts.iter() {
        let g = group_of(a);
        match order.iter_mut().find(|(k, _)| g.is_some() && *k == g) {
            Some((_, members)) => members.push(a.clone()),
            None => order.push((g, vec![a.clone()])),
        }
    }
    order
        .into_iter()
        .map(|(_, members)| merge(members))
        .collect()
}

/// One alert for a group: its lead with the worst severity, and a title listing every member.
fn merge(mut members: Vec<Alert>) -> Alert {
    if members.len() == 1 {
        return members.remove(0);
    }
    let lead = members
        .iter()
        .position(|a| {
            a.incident_id.is_some() && matches!(a.rule.as_str(), "escalation" | "approval_required")
        })
        .or_else(|| {
            members
                .iter()
                .enumerate()
                .min_by_key(|(_, a)| a.severity)
                .map(|(i, _)| i)
        })
        .unwrap_or(0);
    let mut out = members[lead].clone();
    out.severity = members
        .iter()
        .map(|a| a.severity)
        .min()
        .unwrap_or(out.severity);
    out.level = members.iter().map(|a| a.level).max().unwrap_or(out.level);
    out.incident_id = members.iter().find_map(|a| a.incident_id);
    if out.report.is_none() {
        out.report = members.iter().find_map(|a| a.report.clone());
    }
    let listed: Vec<String> = members
        .iter()
        .take(GROUP_LISTED_MAX)
        .map(|a| format!("[{}] {}", a.rule, a.title))
        .collect();
    let more = members.len().saturating_sub(GROUP_LISTED_MAX);
    let what = out
        .incident_id
        .map_or_else(|| out.resource.clone(), |id| format!("incident {id}"));
    out.title = format!(
        "{} alerts for {what}: {}{}",
        members.len(),
        listed.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    );
    out
}

/// A serde enum's wire name (`auto_repaired`).
fn enum_text<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::HealthCheck;
    use crate::clock::SimClock;
    use crate::learn::MemoryKnowledgeBase;
    use crate::repair::{Backup, Estimate, RepairCost, RepairError, RepairReport};
    use std::sync::Mutex;

    /// A subject whose issues are pushed by the test and whose one strategy has `risk` and takes `takes_us` of the
    /// simulated clock.
    struct Subj {
        issues: Mutex<Vec<Issue>>,
        strategy: Arc<Risky>,
    }

    struct Risky {
        risk: f64,
        takes_us: u64,
        clock: SimClock,
        repairs: Mutex<u32>,
    }

    impl RepairStrategy for Risky {
        fn name(&self) -> &str {
            "risky"
        }
        fn cost(&self) -> RepairCost {
            RepairCost::Rebuild
        }
        fn can_repair(&self, _: &Issue) -> bool {
            true
        }
        fn estimate(&self, _: &Issue) -> Estimate {
            Estimate {
                duration_us: 1,
                data_loss: DataLoss::None,
                risk: self.risk,
            }
        }
        fn backup(&self, _: &Issue) -> Result<Backup, RepairError> {
            Ok(Backup {
                location: "memory".into(),
                bytes: 0,
            })
        }
        fn repair(&self, _: &Issue) -> Result<RepairReport, RepairError> {
            *self.repairs.lock().unwrap() += 1;
            self.clock.advance(self.takes_us);
            Ok(RepairReport {
                actions: vec!["rebuilt".into()],
                data_loss: DataLoss::None,
            })
        }
        fn validate(&self, _: &Issue) -> Result<(), RepairError> {
            Ok(())
        }
        fn rollback(&self, _: &Issue, _: &Backup) -> Result<(), RepairError> {
            Ok(())
        }
    }

    impl Subject for Subj {
        fn name(&self) -> &str {
            "subj"
        }
        fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
            Vec::new()
        }
        fn strategies(&self) -> Vec<Arc<dyn RepairStrategy>> {
            vec![self.strategy.clone()]
        }
        fn sample(&self, _: Timestamp) -> Vec<Sample> {
            Vec::new()
        }
        fn drain_issues(&self) -> Vec<Issue> {
            std::mem::take(&mut self.issues.lock().unwrap())
        }
    }

    #[derive(Default, Clone)]
    struct Inbox(Arc<Mutex<Vec<Alert>>>);

    impl Notifier for Inbox {
        fn notify(&self, a: &Alert) -> Result<(), String> {
            self.0.lock().unwrap().push(a.clone());
            Ok(())
        }
    }

    impl Inbox {
        fn rules(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|a| a.rule.clone())
                .collect()
        }
    }

    const MIN: u64 = 60 * US_PER_S;

    /// An engine whose approval threshold is below the strategy's risk 0.5 (every repair waits for approval),
    /// approvals expiring after 10 min, reminders every 5 min, repairs timing out after 1 min.
    fn setup(takes_us: u64) -> (Engine, Arc<Subj>, SimClock, Inbox) {
        let clock = SimClock::new(1_000 * US_PER_S);
        let subject = Arc::new(Subj {
            issues: Mutex::new(Vec::new()),
            strategy: Arc::new(Risky {
                risk: 0.5,
                takes_us,
                clock: clock.clone(),
                repairs: Mutex::new(0),
            }),
        });
        let config = EngineConfig {
            approval_risk_max: 0.2,
            approval_expiry_us: 10 * MIN,
            renotify_interval_us: 5 * MIN,
            repair_timeout_us: MIN,
            quiet_period_us: 7 * 86_400 * US_PER_S,
            ..EngineConfig::default()
        };
        let mut e = Engine::new(
            subject.clone(),
            Arc::new(MemoryKnowledgeBase::new()),
            Arc::new(clock.clone()),
            config,
        )
        .unwrap();
        let inbox = Inbox::default();
        e.add_notifier(Box::new(inbox.clone()));
        (e, subject, clock, inbox)
    }

    fn damage(subject: &Subj, clock: &SimClock) {
        subject.issues.lock().unwrap().push(Issue::new(
            IssueKind::Integrity,
            "block_checksum",
            "wal/0001.seg",
            "block 3 fails its checksum",
            "store.scrub",
            clock.now(),
        ));
    }

    fn status(e: &Engine, id: u64) -> Option<IncidentStatus> {
        e.active.get(&id).map(|i| i.status)
    }

    #[test]
    fn an_unanswered_approval_escalates_at_its_expiry_and_is_repeated_until_acknowledged() {
        let (mut e, subject, clock, inbox) = setup(1);
        damage(&subject, &clock);
        let s = e.run_cycle();
        let id = s.incidents_opened[0];
        assert_eq!(status(&e, id), Some(IncidentStatus::AwaitingApproval));
        let pending = e.pending_approvals();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].expires_at, clock.now() + 10 * MIN);
        assert_eq!(pending[0].approve, format!("medic approve {id}"));
        assert!(
            pending[0].reasons[0].contains("risky: risk 0.50 above approval_risk_max 0.20"),
            "{pending:?}"
        );
        let report = e.incident(id).unwrap().unwrap().report_markdown.unwrap();
        assert!(
            report.contains(&format!("`medic approve {id}`")) && !report.contains("Engine::"),
            "{report}"
        );
        assert_eq!(inbox.rules(), ["approval_required"]);
        // Not approved: a reminder after 5 min, escalation at 10 min.
        clock.advance(5 * MIN);
        e.run_cycle();
        assert_eq!(inbox.rules(), ["approval_required", "escalation_repeat"]);
        clock.advance(5 * MIN - 1);
        e.run_cycle();
        assert_eq!(status(&e, id), Some(IncidentStatus::AwaitingApproval));
        clock.advance(1);
        let s = e.run_cycle();
        assert_eq!(s.escalations, [id]);
        assert_eq!(status(&e, id), Some(IncidentStatus::Escalated));
        assert_eq!(e.metrics().approvals_expired, 1);
        assert!(e.pending_approvals().is_empty());
        assert_eq!(
            e.incident(id).unwrap().unwrap().resolution,
            Resolution::Escalated
        );
        assert_eq!(*subject.strategy.repairs.lock().unwrap(), 0);
        assert_eq!(inbox.rules().last().unwrap(), "escalation");
        // Reminded every 5 min until acknowledged, then never again.
        clock.advance(5 * MIN);
        e.run_cycle();
        assert_eq!(inbox.rules().last().unwrap(), "escalation_repeat");
        e.acknowledge(id, "alice").unwrap();
        assert_eq!(inbox.rules().last().unwrap(), "acknowledged", "told once");
        e.acknowledge(id, "bob").unwrap();
        let before = inbox.rules().len();
        for _ in 0..3 {
            clock.advance(5 * MIN);
            e.run_cycle();
        }
        assert_eq!(inbox.rules().len(), before, "{:?}", inbox.rules());
        // Resolved by hand: closed, and the notifiers are told.
        let r = e.resolve(id, "alice", "replaced the disk").unwrap();
        assert_eq!(r.resolution, Resolution::Resolved);
        assert!(
            r.decision.ends_with("resolved by alice: replaced the disk"),
            "{}",
            r.decision
        );
        assert_eq!(inbox.rules().last().unwrap(), "resolved");
        assert!(!e.active.contains_key(&id));
        assert!(matches!(
            e.resolve(id, "alice", ""),
            Err(EngineError::Closed {
                resolution: Resolution::Resolved,
                ..
            })
        ));
    }

    fn alert(rule: &str, incident: Option<u64>, resource: &str, severity: Severity) -> Alert {
        Alert {
            key: format!("{rule}:{resource}"),
            rule: rule.into(),
            level: EscalationLevel::Watch,
            severity,
            title: format!("{rule} on {resource}"),
            resource: resource.into(),
            code: "c".into(),
            incident_id: incident,
            at: 1,
            report: None,
        }
    }

    #[test]
    fn one_event_is_one_message_listing_its_alerts() {
        let grouped = group_alerts(vec![
            alert("data_at_risk", None, "wal/1.seg", Severity::Sev0),
            alert("escalation", Some(7), "wal/1.seg", Severity::Sev1),
            alert("repeated_serious_issue", None, "wal/1.seg", Severity::Sev1),
            alert("data_at_risk", None, "snap/2.snap", Severity::Sev0),
            alert("resolved", Some(7), "wal/1.seg", Severity::Sev1),
            alert("escalation", Some(8), "index", Severity::Sev2),
        ]);
        let rules: Vec<(&str, Option<u64>)> = grouped
            .iter()
            .map(|a| (a.rule.as_str(), a.incident_id))
            .collect();
        assert_eq!(
            rules,
            [
                ("escalation", Some(7)),
                ("data_at_risk", None),
                ("resolved", Some(7)),
                ("escalation", Some(8)),
            ]
        );
        let event = &grouped[0];
        assert_eq!(event.severity, Severity::Sev0, "the worst of the event");
        assert_eq!(event.key, "escalation:wal/1.seg");
        assert_eq!(
            event.title,
            "3 alerts for incident 7: [data_at_risk] data_at_risk on wal/1.seg; [escalation] escalation on \
             wal/1.seg; [repeated_serious_issue] repeated_serious_issue on wal/1.seg"
        );
        assert_eq!(grouped[3].title, "escalation on index", "alone: untouched");
        let many = group_alerts(
            (0..30)
                .map(|_| alert("data_at_risk", None, "wal/1.seg", Severity::Sev0))
                .collect(),
        );
        assert_eq!(many.len(), 1);
        assert!(
            many[0].title.ends_with("; and 10 more"),
            "{}",
            many[0].title
        );
    }

    #[test]
    fn approve_repairs_next_cycle_deny_leaves_it_to_a_human_and_wrong_states_are_refused() {
        let (mut e, subject, clock, inbox) = setup(1);
        damage(&subject, &clock);
        let id = e.run_cycle().incidents_opened[0];
        assert!(matches!(
            e.approve(id + 100),
            Err(EngineError::UnknownIncident(_))
        ));
        e.approve(id).unwrap();
        assert!(matches!(
            e.approve(id),
            Err(EngineError::WrongState {
                status: IncidentStatus::Open,
                ..
            })
        ));
        let s = e.run_cycle();
        assert_eq!(s.incidents_closed, [(id, Resolution::AutoRepaired)]);
        assert_eq!(*subject.strategy.repairs.lock().unwrap(), 1);
        // The approval request was notified: its closing is too.
        assert_eq!(inbox.rules().last().unwrap(), "resolved");
        // Approving or denying a closed incident names its resolution.
        let err = e.deny(id, "bob").unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("incident {id} is closed (AutoRepaired)")),
            "{err}"
        );

        clock.advance(MIN);
        damage(&subject, &clock);
        let id2 = e.run_cycle().incidents_opened[0];
        e.deny(id2, "bob").unwrap();
        assert_eq!(status(&e, id2), Some(IncidentStatus::Escalated));
        let inc = e.active.get(&id2).unwrap();
        assert_eq!(inc.acknowledged.as_ref().unwrap().0, "bob");
        assert!(inc.record.decision.contains("approval denied by bob"));
        // Denied: never repaired, never reminded, never expired into another escalation.
        let alerts = inbox.rules().len();
        for _ in 0..5 {
            clock.advance(5 * MIN);
            e.run_cycle();
        }
        assert_eq!(*subject.strategy.repairs.lock().unwrap(), 1);
        assert_eq!(inbox.rules().len(), alerts, "{:?}", inbox.rules());
        assert!(matches!(
            e.reopen(id2, "bob"),
            Err(EngineError::WrongState { .. })
        ));
        // A closed incident reopens and is decided again: waiting for approval once more.
        e.reopen(id, "carol").unwrap();
        let r = e.incident(id).unwrap().unwrap();
        assert!(r.decision.contains("reopened by carol"), "{}", r.decision);
        assert_eq!((r.resolution, r.resolved_at), (Resolution::Open, None));
        e.run_cycle();
        assert_eq!(status(&e, id), Some(IncidentStatus::AwaitingApproval));
    }

    #[test]
    fn a_repair_overrunning_repair_timeout_is_failed_and_escalated() {
        // The repair takes 2 min of the clock against a 1 min timeout.
        let (mut e, subject, clock, _) = setup(2 * MIN);
        damage(&subject, &clock);
        let id = e.run_cycle().incidents_opened[0];
        e.approve(id).unwrap();
        let s = e.run_cycle();
        assert_eq!(e.metrics().repairs_timed_out, 1);
        assert_eq!(s.attempts[0].attempt.outcome, AttemptOutcome::Failed);
        assert!(
            s.errors
                .iter()
                .any(|m| m.contains("risky overran repair_timeout_us = 60000000")),
            "{:?}",
            s.errors
        );
        assert_eq!(s.escalations, [id]);
        assert_eq!(status(&e, id), Some(IncidentStatus::Escalated));
    }

    /// An engine like `setup`'s over the knowledge base `kb` and the subject `subject`, as after a restart.
    fn restart(
        kb: Arc<MemoryKnowledgeBase>,
        subject: Arc<Subj>,
        clock: &SimClock,
    ) -> (Engine, Inbox) {
        let config = EngineConfig {
            approval_risk_max: 0.2,
            approval_expiry_us: 10 * MIN,
            renotify_interval_us: 5 * MIN,
            repair_timeout_us: MIN,
            quiet_period_us: 7 * 86_400 * US_PER_S,
            ..EngineConfig::default()
        };
        let mut e = Engine::new(subject, kb, Arc::new(clock.clone()), config).unwrap();
        let inbox = Inbox::default();
        e.add_notifier(Box::new(inbox.clone()));
        (e, inbox)
    }

    fn keys(inbox: &Inbox) -> Vec<String> {
        inbox
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.key.clone())
            .collect()
    }

    #[test]
    fn reminders_and_acknowledgements_go_on_after_a_restart() {
        let (_, subject, clock, _) = setup(1);
        let kb = Arc::new(MemoryKnowledgeBase::new());
        let (mut e, inbox) = restart(kb.clone(), subject.clone(), &clock);
        damage(&subject, &clock);
        let id = e.run_cycle().incidents_opened[0];
        clock.advance(10 * MIN);
        e.run_cycle();
        assert_eq!(status(&e, id), Some(IncidentStatus::Escalated));
        clock.advance(5 * MIN);
        e.run_cycle();
        assert_eq!(keys(&inbox).last().unwrap(), &format!("repeat:{id}:1"));
        drop(e);

        // Restarted 2 min after the last reminder: the next comes 5 min after it, numbered on.
        clock.advance(2 * MIN);
        let (mut e, inbox) = restart(kb.clone(), subject.clone(), &clock);
        assert_eq!(e.followups()[&id].repeats, 1);
        e.run_cycle();
        assert!(keys(&inbox).is_empty(), "{:?}", keys(&inbox));
        clock.advance(3 * MIN);
        e.run_cycle();
        assert_eq!(keys(&inbox), [format!("repeat:{id}:2")]);
        e.acknowledge(id, "alice").unwrap();
        drop(e);

        // Acknowledged before the restart: no more reminders, and its resolution still reaches the receivers.
        let (mut e, inbox) = restart(kb.clone(), subject.clone(), &clock);
        for _ in 0..3 {
            clock.advance(5 * MIN);
            e.run_cycle();
        }
        assert!(keys(&inbox).is_empty(), "{:?}", keys(&inbox));
        assert_eq!(e.active[&id].acknowledged.as_ref().unwrap().0, "alice");
        e.resolve(id, "alice", "").unwrap();
        assert_eq!(inbox.rules(), ["resolved"]);
        assert!(kb.followups().unwrap().is_empty());
    }

    #[test]
    fn an_alert_in_its_cooldown_is_not_sent_again_after_a_restart() {
        let (_, subject, clock, _) = setup(1);
        let kb = Arc::new(MemoryKnowledgeBase::new());
        let at_risk = |subject: &Subj, clock: &SimClock| {
            subject.issues.lock().unwrap().push(
                Issue::new(
                    IssueKind::Integrity,
                    "acknowledged_data_lost",
                    "wal/0001.seg",
                    "records 5..=9 lost beyond every copy",
                    "store.open",
                    clock.now(),
                )
                .data_at_risk(),
            );
        };
        // The rule's alert, alone or grouped into its incident's alert (whose title lists it).
        let fired = |inbox: &Inbox| {
            inbox
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|a| a.rule == "data_at_risk" || a.title.contains("data_at_risk"))
                .count()
        };
        let (mut e, inbox) = restart(kb.clone(), subject.clone(), &clock);
        at_risk(&subject, &clock);
        e.run_cycle();
        assert_eq!(fired(&inbox), 1, "{:?}", keys(&inbox));
        drop(e);

        // Restarted within the cooldowns (the rule's 15 min), the loss found again at the start: nothing is sent
        // again, neither the rule's alert nor the approval request.
        clock.advance(2 * MIN);
        let (mut e, inbox) = restart(kb.clone(), subject.clone(), &clock);
        at_risk(&subject, &clock);
        e.run_cycle();
        assert!(keys(&inbox).is_empty(), "{:?}", keys(&inbox));
        drop(e);

        // Past the cooldown it is sent again: the saved time delays it, never silences it.
        clock.advance(14 * MIN);
        let (mut e, inbox) = restart(kb.clone(), subject.clone(), &clock);
        at_risk(&subject, &clock);
        e.run_cycle();
        assert_eq!(fired(&inbox), 1, "{:?}", keys(&inbox));
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(45 * US_PER_S), "45 s");
        assert_eq!(human_duration(3_600 * US_PER_S), "1 h");
        assert_eq!(human_duration(5_400 * US_PER_S), "1 h 30 min");
        assert_eq!(human_duration(90_000 * US_PER_S), "1 d 1 h");
        assert_eq!(human_duration(1_500), "1 ms");
    }
}
