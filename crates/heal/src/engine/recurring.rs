//! Recurring problems: the same issue code on the same resource repaired automatically again and again. Each repair
//! holds, so nothing fails, yet the cause does not go away (a disk corrupting a block every hour): after
//! `recurring_repairs_max` successful automatic repairs within `recurring_window_us` the problem is escalated as
//! recurring, with its history, although the repair that triggered it succeeded. At most once per window and problem
//! (the alert cooldown is the window). The history is rebuilt from the knowledge base at start, so a restart does
//! not reset the count.

use super::*;
use crate::clock::US_PER_S;

/// Successful automatic repairs per problem (code, resource): when and which incident, oldest first.
#[derive(Debug, Default, Clone)]
pub struct RecurringRepairs {
    by_problem: BTreeMap<(String, String), VecDeque<(Timestamp, u64)>>,
}

/// Problems tracked at most; the oldest problem is forgotten first past it.
const PROBLEMS_MAX: usize = 10_000;

impl RecurringRepairs {
    /// Records a successful repair of `code` on `resource` by incident `id` at `at`, forgets those older than
    /// `window_us`, and returns the repairs within the window (oldest first) when they number at least `max`
    /// (`max` 0: never).
    pub fn record(
        &mut self,
        code: &str,
        resource: &str,
        at: Timestamp,
        id: u64,
        window_us: u64,
        max: u32,
    ) -> Option<Vec<(Timestamp, u64)>> {
        if max == 0 {
            return None;
        }
        if self.by_problem.len() >= PROBLEMS_MAX
            && !self
                .by_problem
                .contains_key(&(code.to_string(), resource.to_string()))
        {
            let oldest = self
                .by_problem
                .iter()
                .min_by_key(|(_, q)| q.back().map_or(0, |(t, _)| *t))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.by_problem.remove(&k);
            }
        }
        let q = self
            .by_problem
            .entry((code.to_string(), resource.to_string()))
            .or_default();
        q.push_back((at, id));
        while q
            .front()
            .is_some_and(|(t, _)| at.saturating_sub(*t) > window_us)
        {
            q.pop_front();
        }
        while q.len() > max as usize {
            q.pop_front();
        }
        (q.len() >= max as usize).then(|| q.iter().copied().collect())
    }
}

/// Where to look for the cause of a recurring problem of `kind`: only damaged bytes point at the hardware.
pub(crate) fn recurring_hint(kind: IssueKind) -> &'static str {
    match kind {
        IssueKind::Integrity => "check the hardware or what keeps damaging the files",
        _ => {
            "nothing says the files were damaged: look at what brings it back between the repairs (the writes, \
              the load, the configuration)"
        }
    }
}

impl Engine {
    /// Seeds the recurring-repair history from the knowledge base's auto-repaired incidents (oldest first).
    pub(super) fn seed_recurring(&mut self, records: &[IncidentRecord]) {
        let (window, max) = (
            self.config.recurring_window_us,
            self.config.recurring_repairs_max,
        );
        for r in records
            .iter()
            .filter(|r| r.resolution == Resolution::AutoRepaired)
        {
            let d = diagnose(
                &r.issues,
                &self.config.known_causes,
                &self.config.composite.cutoffs,
            );
            let (Some(at), Some(root)) = (r.resolved_at, r.issues.get(d.root_issue)) else {
                continue;
            };
            self.recurring
                .record(&root.code, &root.resource, at, r.id, window, max);
        }
    }

    /// After `inc` was repaired by `by`: escalates its problem as recurring when it was repaired
    /// `recurring_repairs_max` times within `recurring_window_us`, naming every repair.
    pub(super) fn escalate_if_recurring(
        &mut self,
        inc: &mut Incident,
        root: &Issue,
        by: &str,
        alerts: &mut Vec<Alert>,
    ) {
        let now = self.clock.now();
        let Some(history) = self.recurring.record(
            &root.code,
            &root.resource,
            now,
            inc.record.id,
            self.config.recurring_window_us,
            self.config.recurring_repairs_max,
        ) else {
            return;
        };
        let window = human_duration(self.config.recurring_window_us);
        let first = history.first().map_or(now, |(t, _)| *t);
        let title = format!(
            "{} on {} was repaired automatically {} times in {} (last by {by}): each repair holds, the cause does \
             not go away — {}",
            root.code,
            root.resource,
            history.len(),
            human_duration(now.saturating_sub(first).max(US_PER_S)),
            recurring_hint(root.kind),
        );
        let repairs: Vec<String> = history
            .iter()
            .map(|(t, id)| {
                format!(
                    "incident {id}, {} ago",
                    human_duration(now.saturating_sub(*t).max(US_PER_S))
                )
            })
            .collect();
        inc.record.decision = format!(
            "{}; recurring: {} repairs within {window} ({}), escalated",
            inc.record.decision,
            history.len(),
            repairs.join(", ")
        );
        self.metrics.recurring_escalations += 1;
        let alert = Alert {
            key: format!("recurring:{}:{}", root.resource, root.code),
            rule: "recurring".to_string(),
            level: EscalationLevel::Escalate,
            severity: inc.record.severity,
            title,
            resource: root.resource.clone(),
            code: root.code.clone(),
            incident_id: Some(inc.record.id),
            at: now,
            report: None,
        };
        if let Some(a) = self.alerts.fire(alert, self.config.recurring_window_us) {
            alerts.push(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_damaged_bytes_blame_the_hardware() {
        assert!(recurring_hint(IssueKind::Integrity).contains("hardware"));
        for kind in [
            IssueKind::StaleDerived,
            IssueKind::Resource,
            IssueKind::Anomaly,
            IssueKind::CheckFailed,
            IssueKind::ConstraintBreach,
            IssueKind::OperationError,
        ] {
            let hint = recurring_hint(kind);
            assert!(!hint.contains("hardware"), "{kind:?}: {hint}");
            assert!(!hint.contains("damaging"), "{kind:?}: {hint}");
        }
    }
}
