//! Escalation: the progressive [`EscalationLevel`] (normal → watch → warn → escalate, stepping down after quiet
//! periods), alert rules with count-in-window, dedup and cooldown ([`AlertManager`]), the [`Notifier`] trait the
//! program implements (webhook, log), and the human-readable [`EscalationReport`] as Markdown and JSON.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::check::HealthState;
use crate::clock::Timestamp;
use crate::issue::{CrisisLevel, Issue, Severity};
use crate::learn::AttemptRecord;

/// How loudly the engine is calling for attention.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum EscalationLevel {
    /// Nothing open.
    #[default]
    Normal,
    /// Something is open; the engine handles it.
    Watch,
    /// Several incidents, or a serious one.
    Warn,
    /// A human is needed.
    Escalate,
}

impl EscalationLevel {
    fn up(self) -> Self {
        match self {
            Self::Normal => Self::Watch,
            Self::Watch => Self::Warn,
            Self::Warn | Self::Escalate => Self::Escalate,
        }
    }

    fn down(self) -> Self {
        match self {
            Self::Normal | Self::Watch => Self::Normal,
            Self::Warn => Self::Watch,
            Self::Escalate => Self::Warn,
        }
    }
}

/// The progressive escalation state: rises one level per cycle towards its target (at once when a human is needed)
/// and steps down one level per quiet period without new issues.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Escalator {
    level: EscalationLevel,
    last_activity: Timestamp,
}

impl Escalator {
    /// The current level.
    pub fn level(&self) -> EscalationLevel {
        self.level
    }

    /// Updates the level from this cycle's `target`; `activity` says whether new issues arrived; `immediate` jumps
    /// straight to the target. Returns the new level when it changed.
    pub fn update(
        &mut self,
        now: Timestamp,
        target: EscalationLevel,
        activity: bool,
        immediate: bool,
        quiet_us: u64,
    ) -> Option<EscalationLevel> {
        let before = self.level;
        if activity {
            self.last_activity = now;
        }
        if target > self.level {
            self.level = if immediate { target } else { self.level.up() };
            self.last_activity = now;
        } else if target < self.level && now.saturating_sub(self.last_activity) >= quiet_us {
            self.level = self.level.down();
            self.last_activity = now;
        }
        (self.level != before).then_some(self.level)
    }
}

/// An alert rule: fires when `count` matching issues on one resource arrive within `window_us`; repeats of the
/// same alert (rule and resource) within `cooldown_us` are suppressed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// A name, part of the dedup key.
    pub name: String,
    /// The issue code it matches, or `*` for any.
    pub code: String,
    /// It matches issues of this severity or worse.
    pub severity_max: Severity,
    /// Matching issues needed within the window.
    pub count: u32,
    /// The window, µs.
    pub window_us: u64,
    /// Quiet time after firing, µs.
    pub cooldown_us: u64,
}

impl AlertRule {
    /// The rules medic uses by default.
    pub fn defaults() -> Vec<AlertRule> {
        vec![
            AlertRule {
                name: "data_at_risk".into(),
                code: "*".into(),
                severity_max: Severity::Sev0,
                count: 1,
                window_us: 60_000_000,
                cooldown_us: 900_000_000,
            },
            AlertRule {
                name: "repeated_serious_issue".into(),
                code: "*".into(),
                severity_max: Severity::Sev1,
                count: 3,
                window_us: 600_000_000,
                cooldown_us: 1_800_000_000,
            },
        ]
    }
}

/// One alert to a human.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The dedup key (`rule:resource` or `incident:resource:code`).
    pub key: String,
    /// The rule that fired, or `escalation`.
    pub rule: String,
    /// The escalation level when it fired.
    pub level: EscalationLevel,
    /// Severity.
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// The resource concerned.
    pub resource: String,
    /// The issue code concerned (the incident's root issue), empty when unknown.
    #[serde(default)]
    pub code: String,
    /// The incident, when there is one.
    pub incident_id: Option<u64>,
    /// When.
    pub at: Timestamp,
    /// The escalation report, for escalations.
    pub report: Option<EscalationReport>,
}

/// Where alerts go. The program implements webhook and log notifiers.
pub trait Notifier: Send + Sync {
    /// A name for logs and errors.
    fn name(&self) -> &str {
        "notifier"
    }
    /// Delivers one alert.
    fn notify(&self, alert: &Alert) -> Result<(), String>;
}

/// Counts issues per rule and resource, and fires, dedups and suppresses alerts.
#[derive(Debug, Clone, Default)]
pub struct AlertManager {
    seen: HashMap<String, VecDeque<Timestamp>>,
    last_fired: HashMap<String, Timestamp>,
    suppressed: u64,
}

impl AlertManager {
    /// Alerts suppressed by dedup or cooldown so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// Feeds one issue of `severity`; returns the alerts it fires.
    pub fn observe(
        &mut self,
        rules: &[AlertRule],
        issue: &Issue,
        severity: Severity,
        level: EscalationLevel,
        now: Timestamp,
    ) -> Vec<Alert> {
        let mut fired = Vec::new();
        for rule in rules {
            if !(rule.code == "*" || rule.code == issue.code) || severity > rule.severity_max {
                continue;
            }
            let key = format!("{}:{}", rule.name, issue.resource);
            let q = self.seen.entry(key.clone()).or_default();
            q.push_back(now);
            while q
                .front()
                .is_some_and(|&t| now.saturating_sub(t) >= rule.window_us)
                || q.len() > rule.count as usize
            {
                q.pop_front();
            }
            if q.len() < rule.count as usize {
                continue;
            }
            let alert = Alert {
                key: key.clone(),
                rule: rule.name.clone(),
                level,
                severity,
                title: format!(
                    "{}: {} matching issue(s) on {} within {} s: {}",
                    rule.name,
                    rule.count,
                    issue.resource,
                    rule.window_us / 1_000_000,
                    issue.summary
                ),
                resource: issue.resource.clone(),
                code: issue.code.clone(),
                incident_id: None,
                at: now,
                report: None,
            };
            if let Some(a) = self.fire(alert, rule.cooldown_us) {
                fired.push(a);
            }
        }
        fired
    }

    /// Every alert key with when it last fired, for those fired within `horizon_us` before `now`, sorted by key
    /// (what a restart needs to keep the cooldowns).
    pub fn fired_within(&self, now: Timestamp, horizon_us: u64) -> Vec<(String, Timestamp)> {
        let mut out: Vec<(String, Timestamp)> = self
            .last_fired
            .iter()
            .filter(|(_, t)| now.saturating_sub(**t) < horizon_us)
            .map(|(k, t)| (k.clone(), *t))
            .collect();
        out.sort();
        out
    }

    /// Takes back when `key` last fired (saved before a restart); a later time already known wins.
    pub fn remember_fired(&mut self, key: String, at: Timestamp) {
        let t = self.last_fired.entry(key).or_insert(at);
        *t = (*t).max(at);
    }

    /// Fires `alert` unless one with its key fired within `cooldown_us`.
    pub fn fire(&mut self, alert: Alert, cooldown_us: u64) -> Option<Alert> {
        if let Some(&t) = self.last_fired.get(&alert.key)
            && alert.at.saturating_sub(t) < cooldown_us
        {
            self.suppressed += 1;
            return None;
        }
        self.last_fired.insert(alert.key.clone(), alert.at);
        Some(alert)
    }
}

/// What a human needs to act on an escalated incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationReport {
    /// The incident.
    pub incident_id: u64,
    /// The subject's name.
    pub subject: String,
    /// When the report was made.
    pub generated_at: Timestamp,
    /// One line.
    pub title: String,
    /// The subject's health.
    pub health: HealthState,
    /// The escalation level.
    pub level: EscalationLevel,
    /// Crisis level.
    pub crisis: CrisisLevel,
    /// Severity.
    pub severity: Severity,
    /// The root-cause hypothesis.
    pub root_cause: String,
    /// The current issue (the root issue).
    pub current_issue: Issue,
    /// Every issue in the incident, one line each.
    pub issues: Vec<String>,
    /// The evidence for the diagnosis.
    pub evidence: Vec<String>,
    /// What is affected.
    pub blast_radius: Vec<String>,
    /// Recent anomalies across all metrics, one line each.
    pub recent_anomalies: Vec<String>,
    /// The repairs tried and their results.
    pub attempts: Vec<AttemptRecord>,
    /// What is lost or at risk, and where.
    pub data_at_risk: Vec<String>,
    /// Why the engine escalated.
    pub reasons: Vec<String>,
    /// What a human could do next.
    pub suggestions: Vec<String>,
}

impl EscalationReport {
    /// The report as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\":\"report not serialisable: {e}\"}}"))
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let list = |s: &mut String, items: &[String]| {
            if items.is_empty() {
                s.push_str("- none\n");
            }
            for i in items {
                let _ = writeln!(s, "- {i}");
            }
        };
        let _ = writeln!(s, "# Incident {}: {}\n", self.incident_id, self.title);
        let _ = writeln!(
            s,
            "Subject **{}**, health **{:?}**, escalation **{:?}**, crisis **{:?}**, severity **{:?}**, at {}.\n",
            self.subject,
            self.health,
            self.level,
            self.crisis,
            self.severity,
            crate::clock::rfc3339(self.generated_at)
        );
        let i = &self.current_issue;
        let _ = writeln!(
            s,
            "## Current issue\n\n`{}` on `{}`: {}",
            i.code, i.resource, i.summary
        );
        if i.location.file.is_some() {
            let _ = writeln!(s, "\nLocation: {}", i.location);
        }
        let _ = writeln!(s, "\n## Root cause\n\n{}\n", self.root_cause);
        s.push_str("## Evidence\n\n");
        list(&mut s, &self.evidence);
        s.push_str("\n## Issues\n\n");
        list(&mut s, &self.issues);
        s.push_str("\n## Blast radius\n\n");
        list(&mut s, &self.blast_radius);
        s.push_str("\n## Data lost or at risk\n\n");
        list(&mut s, &self.data_at_risk);
        s.push_str("\n## Repairs tried\n\n");
        if self.attempts.is_empty() {
            s.push_str("- none\n");
        } else {
            s.push_str("| strategy | outcome | duration | notes |\n|---|---|---|---|\n");
            for a in &self.attempts {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    a.strategy,
                    a.outcome.as_str(),
                    crate::clock::human_duration_us(a.duration_us),
                    a.notes.join("; ").replace('|', "/")
                );
            }
        }
        s.push_str("\n## Recent anomalies\n\n");
        list(&mut s, &self.recent_anomalies);
        s.push_str("\n## Why escalated\n\n");
        list(&mut s, &self.reasons);
        s.push_str("\n## Suggestions\n\n");
        list(&mut s, &self.suggestions);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::IssueKind;

    #[test]
    fn escalation_rises_one_step_per_cycle_and_falls_after_quiet() {
        let mut e = Escalator::default();
        assert_eq!(
            e.update(0, EscalationLevel::Escalate, true, false, 100),
            Some(EscalationLevel::Watch)
        );
        assert_eq!(
            e.update(1, EscalationLevel::Escalate, true, false, 100),
            Some(EscalationLevel::Warn)
        );
        assert_eq!(
            e.update(2, EscalationLevel::Escalate, false, false, 100),
            Some(EscalationLevel::Escalate)
        );
        assert_eq!(
            e.update(50, EscalationLevel::Normal, false, false, 100),
            None,
            "not quiet long enough"
        );
        assert_eq!(
            e.update(102, EscalationLevel::Normal, false, false, 100),
            Some(EscalationLevel::Warn)
        );
        assert_eq!(
            e.update(150, EscalationLevel::Normal, false, false, 100),
            None
        );
        assert_eq!(
            e.update(202, EscalationLevel::Normal, false, false, 100),
            Some(EscalationLevel::Watch)
        );
        assert_eq!(
            e.update(302, EscalationLevel::Normal, false, false, 100),
            Some(EscalationLevel::Normal)
        );
        assert_eq!(
            e.update(303, EscalationLevel::Escalate, true, true, 100),
            Some(EscalationLevel::Escalate)
        );
    }

    #[test]
    fn alert_rule_counts_in_window_dedups_and_cools_down() {
        let rules = vec![AlertRule {
            name: "r".into(),
            code: "block_checksum".into(),
            severity_max: Severity::Sev1,
            count: 2,
            window_us: 100,
            cooldown_us: 1_000,
        }];
        let issue = Issue::new(
            IssueKind::Integrity,
            "block_checksum",
            "wal",
            "bad block",
            "t",
            0,
        );
        let other = Issue::new(IssueKind::Integrity, "torn_tail", "wal", "torn", "t", 0);
        let mut m = AlertManager::default();
        let lvl = EscalationLevel::Watch;
        assert!(
            m.observe(&rules, &issue, Severity::Sev1, lvl, 0).is_empty(),
            "one is not enough"
        );
        assert!(
            m.observe(&rules, &other, Severity::Sev1, lvl, 10)
                .is_empty(),
            "other code"
        );
        assert!(
            m.observe(&rules, &issue, Severity::Sev2, lvl, 20)
                .is_empty(),
            "not severe enough"
        );
        assert!(
            m.observe(&rules, &issue, Severity::Sev1, lvl, 200)
                .is_empty(),
            "first fell out of the window"
        );
        let fired = m.observe(&rules, &issue, Severity::Sev1, lvl, 250);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].key, "r:wal");
        assert!(
            m.observe(&rules, &issue, Severity::Sev1, lvl, 260)
                .is_empty(),
            "cooldown"
        );
        assert_eq!(m.suppressed(), 1);
        assert!(
            m.observe(&rules, &issue, Severity::Sev1, lvl, 1_300)
                .is_empty()
        );
        assert_eq!(
            m.observe(&rules, &issue, Severity::Sev1, lvl, 1_310).len(),
            1,
            "after the cooldown"
        );
    }

    #[test]
    fn report_markdown_names_issue_attempts_and_suggestions() {
        let issue = Issue::new(
            IssueKind::Integrity,
            "block_checksum",
            "wal/3.seg",
            "block 7 damaged",
            "scrub",
            5,
        );
        let r = EscalationReport {
            incident_id: 9,
            subject: "store".into(),
            generated_at: 10,
            title: "block_checksum on wal/3.seg".into(),
            health: HealthState::Unhealthy,
            level: EscalationLevel::Escalate,
            crisis: CrisisLevel::Obstacle,
            severity: Severity::Sev1,
            root_cause: "damaged block".into(),
            current_issue: issue,
            issues: vec!["block_checksum on wal/3.seg".into()],
            evidence: vec![],
            blast_radius: vec!["resource wal/3.seg".into()],
            recent_anomalies: vec![],
            attempts: vec![AttemptRecord {
                strategy: "rebuild_from_parity".into(),
                started_at: 6,
                duration_us: 3,
                outcome: crate::learn::AttemptOutcome::RolledBack,
                notes: vec!["validation failed: still bad".into()],
                data_loss: crate::repair::DataLoss::None,
            }],
            data_at_risk: vec!["records LSN 1..=4 in wal/3.seg".into()],
            reasons: vec!["no strategy passes the gates".into()],
            suggestions: vec!["restore from a backup".into()],
        };
        let md = r.to_markdown();
        for needle in [
            "# Incident 9",
            "`block_checksum` on `wal/3.seg`",
            "| rebuild_from_parity | rolled_back | 3 µs |",
            "restore from a backup",
            "LSN 1..=4",
            "at 1970-01-01T00:00:00Z.",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in\n{md}");
        }
        assert!(!md.contains("Some(") && !md.contains("None"), "{md}");
        // A located issue reads as a byte range, never as options.
        let mut located = r.clone();
        located.current_issue.location = crate::issue::Location {
            file: Some("wal/3.seg".into()),
            offset: Some(6_999_790),
            len: Some(4096),
            lsn_range: None,
        };
        let md = located.to_markdown();
        assert!(
            md.contains("Location: `wal/3.seg` bytes 6999790..+4096"),
            "{md}"
        );
        let back: EscalationReport = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
    }
}
