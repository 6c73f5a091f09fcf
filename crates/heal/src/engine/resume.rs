//! Incidents unresolved when the engine stopped go on after a restart instead of staying "open" in the knowledge
//! base forever. Each unresolved record (resolution `open`, or `escalated` without a resolution time) is taken back
//! into the active set: an escalated one stays escalated (its checks are re-run and it closes once they no longer find
//! its problems, as before the restart); any other is watched — the problem's issues found again within
//! `correlation_window_us` of the start join it and it is decided anew under the same id, and one whose problem is
//! gone closes as self-resolved after `quiet_period_us`. Approvals are not carried over: a repair that waited for one
//! asks again. At most `incidents_active_max` are resumed, newest first.
//!
//! The follow-ups of notified escalations are saved in the knowledge base as they change, and taken back for the
//! incidents resumed: reminders go on with their count and rhythm (the next one `renotify_interval_us` after the
//! last one sent before the stop), an acknowledgement stays given, and the `resolved` alert still goes out when the
//! incident closes. A saved follow-up of an incident not resumed is dropped.

use super::*;

impl Engine {
    /// Takes the unresolved records among `records` (oldest first) back into the active set.
    pub(super) fn resume_unresolved(&mut self, records: &[IncidentRecord]) {
        let now = self.clock.now();
        let unresolved: Vec<&IncidentRecord> = records
            .iter()
            .filter(|r| {
                r.resolved_at.is_none()
                    && matches!(r.resolution, Resolution::Open | Resolution::Escalated)
            })
            .collect();
        let skip = unresolved
            .len()
            .saturating_sub(self.config.incidents_active_max);
        for r in unresolved.into_iter().skip(skip) {
            if r.issues.is_empty() {
                continue;
            }
            let d = diagnose(
                &r.issues,
                &self.config.known_causes,
                &self.config.composite.cutoffs,
            );
            let escalated = r.resolution == Resolution::Escalated;
            let mut record = r.clone();
            if !escalated {
                record.decision = format!(
                    "{}; resumed after a restart: watched until its problem is found again or goes quiet",
                    record.decision
                );
            }
            let status = if escalated {
                IncidentStatus::Escalated
            } else {
                IncidentStatus::Watching
            };
            // Re-checked in the first cycle; not decided until its problem is found again.
            let mut inc = Incident::taken_in(record, status, now, 0);
            inc.priority = d.priority;
            inc.root_issue = d.root_issue;
            inc.evidence = d.evidence;
            inc.resumed = true;
            inc.dirty = false;
            self.metrics.incidents_resumed += 1;
            self.active.insert(r.id, inc);
        }
    }

    /// Takes back the saved follow-ups of the incidents resumed (and their acknowledgements).
    pub(super) fn resume_followups(&mut self) -> Result<(), EngineError> {
        let saved = self.kb.followups()?;
        for f in &saved {
            let Some(inc) = self.active.get_mut(&f.incident_id) else {
                continue;
            };
            if inc.acknowledged.is_none() {
                inc.acknowledged = f.acknowledged.clone();
            }
            self.followups.insert(f.incident_id, f.follow_up.clone());
        }
        self.followups_saved = saved;
        Ok(())
    }
}
