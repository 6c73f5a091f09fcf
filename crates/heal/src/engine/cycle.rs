//! The phases of one healing cycle ([`Engine::run_cycle`] calls them in order): observe, diagnose, decide and
//! act, close what is over, set the escalation level and the hold on writes, notify. Each takes the cycle's
//! summary to record what it did.

use std::collections::BTreeSet;

use super::*;

impl Engine {
    /// Observe: the due checks (a failed check whose every issue is a hiccup runs once more at once), the judged
    /// samples, the subject's own issues; bounded by `cycle_issues_max`, each issue's text bounded.
    pub(super) fn observe(&mut self, now: Timestamp, s: &mut CycleSummary) -> Vec<Issue> {
        let mut issues = std::mem::take(&mut self.pending_issues);
        issues.extend(self.run_due_checks(s));
        issues.extend(self.judge_samples(now, s));
        issues.extend(self.subject.drain_issues());
        if issues.len() > self.config.cycle_issues_max {
            self.metrics.issues_dropped += (issues.len() - self.config.cycle_issues_max) as u64;
            s.errors.push(format!(
                "{} issues this cycle, kept the first {} (cycle_issues_max)",
                issues.len(),
                self.config.cycle_issues_max
            ));
            issues.truncate(self.config.cycle_issues_max);
        }
        for issue in &mut issues {
            bound_issue(issue);
        }
        s.issues = issues.len() as u32;
        self.metrics.issues += issues.len() as u64;
        issues
    }

    /// The checks that are due, with the HICCUP retry: a failed check whose every issue is a hiccup (an overrun, a
    /// transient error) runs once more at once; only what the retry still finds goes on.
    pub(super) fn run_due_checks(&mut self, s: &mut CycleSummary) -> Vec<Issue> {
        let checks = self.subject.checks();
        let mut results = self.scheduler.run_due(&checks, self.clock.as_ref());
        for r in results.iter_mut().filter(|r| {
            !r.passed
                && r.issues
                    .iter()
                    .all(|i| classify(i, &self.config.composite.cutoffs).0 == CrisisLevel::Hiccup)
        }) {
            if let Some(check) = checks.iter().find(|c| c.name() == r.name) {
                self.metrics.hiccups_retried += 1;
                *r = self.scheduler.run_one(check.as_ref(), self.clock.as_ref());
                if r.passed {
                    self.metrics.hiccups_cleared += 1;
                }
            }
        }
        self.count_checks(&results);
        s.checks_run = results.len() as u32;
        s.checks_failed = results.iter().filter(|r| !r.passed).count() as u32;
        results.into_iter().flat_map(|r| r.issues).collect()
    }

    /// The subject's samples, each judged by its kind: constraints and trend rules on every sample; a gauge through
    /// its detector (not its first step out of a flat run, nor a latency below `latency_floor_us`); a counter
    /// through its rate (constraints too); states and sizes never by detectors. Keeps what was seen (with derived
    /// rates) as `last_samples`.
    pub(super) fn judge_samples(&mut self, now: Timestamp, s: &mut CycleSummary) -> Vec<Issue> {
        let mut issues = Vec::new();
        let samples = self.subject.sample(now);
        let mut seen = Vec::with_capacity(samples.len() + samples.len() / 2);
        for sample in samples {
            s.samples += 1;
            issues.extend(self.constrain(&sample));
            issues.extend(self.trend(&sample));
            let judged = match sample.kind {
                MetricKind::State | MetricKind::Size => None,
                MetricKind::Gauge => {
                    let flat_step = !self.flat_gate(&sample);
                    let unnoticeable =
                        is_latency(&sample.metric) && sample.value < self.config.latency_floor_us;
                    Some((sample.clone(), !flat_step && !unnoticeable))
                }
                MetricKind::Counter => self.rate(&sample).map(|(rate, judged)| {
                    let derived = Sample::gauge(rate_name(&sample.metric), rate, sample.at);
                    (derived, judged)
                }),
            };
            let counter = sample.kind == MetricKind::Counter;
            seen.push(sample);
            let Some((series, judged)) = judged else {
                continue;
            };
            if counter {
                issues.extend(self.constrain(&series));
            }
            if let Some(issue) = self.detect(&series.metric, series.at, series.value, judged) {
                s.anomalies += 1;
                issues.push(issue);
            }
            if counter {
                seen.push(series);
            }
        }
        self.last_samples = seen;
        issues
    }

    /// Diagnose: every issue through the alert rules and into an incident (correlation); each incident that
    /// changed is diagnosed again (crisis, severity, root cause, blast radius, priority). Returns the rules' alerts.
    pub(super) fn diagnose_issues(
        &mut self,
        issues: Vec<Issue>,
        now: Timestamp,
        s: &mut CycleSummary,
    ) -> Vec<Alert> {
        let mut alerts = Vec::new();
        for issue in issues {
            let (_, severity) = classify(&issue, &self.config.composite.cutoffs);
            alerts.extend(self.alerts.observe(
                &self.config.alert_rules,
                &issue,
                severity,
                self.escalator.level(),
                now,
            ));
            self.correlate(issue, now, s);
        }
        for inc in self.active.values_mut().filter(|i| i.dirty) {
            let d = diagnose(
                &inc.record.issues,
                &self.config.known_causes,
                &self.config.composite.cutoffs,
            );
            inc.record.crisis = d.crisis;
            inc.record.severity = d.severity;
            inc.record.root_cause = d.root_cause;
            inc.record.blast_radius = d.blast_radius;
            inc.priority = d.priority;
            inc.root_issue = d.root_issue;
            inc.evidence = d.evidence;
        }
        alerts
    }

    /// Decide and act on the open, deferred and changed watched incidents, highest priority first, behind the
    /// breakage cap; saves each. Returns whether any is now escalated or awaiting approval.
    pub(super) fn decide_and_act(&mut self, s: &mut CycleSummary, alerts: &mut Vec<Alert>) -> bool {
        let mut order: Vec<(f64, u64)> = self
            .active
            .values()
            .filter(|i| match i.status {
                IncidentStatus::Open | IncidentStatus::Deferred => true,
                IncidentStatus::Watching => i.dirty,
                _ => false,
            })
            .map(|i| (i.priority, i.record.id))
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        self.breakage_hold = self.breakage(&order, alerts);
        let strategies = self.subject.strategies();
        let mut busy: BTreeSet<String> = BTreeSet::new();
        let mut repairs_started = 0u32;
        let mut escalated_now = false;
        for (_, id) in order {
            let Some(mut inc) = self.active.remove(&id) else {
                continue;
            };
            let budget = act::CycleBudget {
                busy: &mut busy,
                repairs_started: &mut repairs_started,
            };
            let closed = self.handle(&mut inc, &strategies, budget, s, alerts);
            escalated_now |= inc.status == IncidentStatus::Escalated
                || inc.status == IncidentStatus::AwaitingApproval;
            let record = inc.record.clone();
            self.save(&record, &mut s.errors);
            if let Some(resolution) = closed {
                s.incidents_closed.push((id, resolution));
            } else {
                self.active.insert(id, inc);
            }
        }
        escalated_now
    }

    /// Closes watched, escalated and dry-run incidents quiet for `quiet_period_us` (an escalated one keeps its
    /// resolution, a human's; the others self-resolved) — not while the latest run of a check that reported one
    /// was inconclusive —, and marks every incident seen.
    pub(super) fn close_quiet(&mut self, now_end: Timestamp, s: &mut CycleSummary) {
        let quiet: Vec<u64> = self
            .active
            .values()
            .filter(|i| now_end.saturating_sub(i.last_issue_at) >= self.config.quiet_period_us)
            .filter(|i| {
                matches!(
                    i.status,
                    IncidentStatus::Watching | IncidentStatus::Escalated | IncidentStatus::DryRun
                )
            })
            // Not quiet while a check that reported it could not look at its last run (its server unreachable).
            .filter(|i| {
                !i.record
                    .issues
                    .iter()
                    .any(|x| self.scheduler.latest_inconclusive(&x.source))
            })
            .map(|i| i.record.id)
            .collect();
        for id in quiet {
            let Some(mut inc) = self.active.remove(&id) else {
                continue;
            };
            // An escalated incident keeps its resolution (a human's); it is closed when its problem went quiet.
            if inc.status != IncidentStatus::Escalated {
                inc.record.resolution = Resolution::SelfResolved;
            }
            inc.record.resolved_at = Some(now_end);
            let record = inc.record.clone();
            self.save(&record, &mut s.errors);
            s.incidents_closed.push((id, inc.record.resolution));
        }
        for inc in self.active.values_mut() {
            inc.dirty = false;
        }
    }

    /// The escalation level the open incidents call for, and the hold on writes: the subject is told when the set
    /// of CRISIS incidents changes (a new one re-asserts the hold even if an operator lifted it for another); in dry
    /// run nothing changes, writes included.
    pub(super) fn set_escalation_level(
        &mut self,
        now_end: Timestamp,
        activity: bool,
        escalated_now: bool,
        s: &mut CycleSummary,
    ) {
        let any = |f: &dyn Fn(&Incident) -> bool| self.active.values().any(f);
        let target = if any(&|i| {
            matches!(
                i.status,
                IncidentStatus::Escalated | IncidentStatus::AwaitingApproval
            )
        }) {
            EscalationLevel::Escalate
        } else if self.active.len() >= self.config.warn_incidents_min as usize
            || any(&|i| i.record.severity <= Severity::Sev1)
        {
            EscalationLevel::Warn
        } else if !self.active.is_empty() {
            EscalationLevel::Watch
        } else {
            EscalationLevel::Normal
        };
        s.stop_writes = any(&|i| i.record.crisis == CrisisLevel::Crisis);
        // Tell the subject when the set of CRISIS incidents changes (a new one re-asserts the hold even if an
        // operator lifted it for another). In dry run nothing changes, writes included.
        let crises: Vec<u64> = self
            .active
            .values()
            .filter(|i| i.record.crisis == CrisisLevel::Crisis)
            .map(|i| i.record.id)
            .collect();
        if self.writes_stopped_for.as_ref() != Some(&crises)
            && !(s.stop_writes && self.config.dry_run)
        {
            let reason = s.stop_writes.then(|| {
                let crises: Vec<String> = self
                    .active
                    .values()
                    .filter(|i| i.record.crisis == CrisisLevel::Crisis)
                    .map(|i| format!("incident {}: {}", i.record.id, i.record.root_cause))
                    .collect();
                format!("CRISIS, acknowledged data at risk: {}", crises.join("; "))
            });
            match self.subject.stop_writes(reason.as_deref()) {
                Ok(()) => self.writes_stopped_for = Some(crises),
                Err(e) => s.errors.push(format!(
                    "{} writes: {e}",
                    if s.stop_writes {
                        "stopping"
                    } else {
                        "resuming"
                    }
                )),
            }
        }
        self.escalator.update(
            now_end,
            target,
            activity,
            escalated_now || s.stop_writes,
            self.config.deescalate_quiet_us,
        );
    }

    /// Sends every alert of the cycle to every notifier (a failure counted and recorded, never stopping the others).
    pub(super) fn notify(&mut self, alerts: Vec<Alert>, s: &mut CycleSummary) {
        for alert in alerts {
            self.metrics.alerts_sent += 1;
            for n in &self.notifiers {
                if let Err(e) = n.notify(&alert) {
                    self.metrics.notify_failures += 1;
                    s.errors.push(format!("notifier {}: {e}", n.name()));
                }
            }
            s.alerts.push(alert);
        }
    }
}
