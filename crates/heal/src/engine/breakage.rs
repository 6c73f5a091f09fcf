//! The breakage cap: when many resources fail at once, something bigger than any one of them is wrong (a failing
//! controller, a full array, a bad deploy), and repairing each in turn can make it worse. Before deciding, each cycle
//! counts the distinct root resources of the incidents waiting for a decision; when there are at least
//! `breakage_resources_min` of them and they are more than `breakage_share_max` of the resources the subject watches
//! ([`Subject::resources`], which always include the failing ones), no automatic repair starts this cycle: every
//! such incident is deferred with the reason, and one `breakage` alert (ESCALATE, cooldown
//! `escalation_alert_cooldown_us`) asks a person to look. Repairs resume by themselves once fewer resources fail.

use super::*;

impl Engine {
    /// The breakage cap's verdict for this cycle over the incidents of `order`: the reason when it holds repairs.
    pub(super) fn breakage(
        &mut self,
        order: &[(f64, u64)],
        alerts: &mut Vec<Alert>,
    ) -> Option<String> {
        let min = self.config.breakage_resources_min;
        if min == 0 {
            return None;
        }
        let failing: BTreeSet<String> = order
            .iter()
            .filter_map(|(_, id)| self.active.get(id))
            .filter_map(|i| i.record.issues.get(i.root_issue))
            .map(|root| root.resource.clone())
            .collect();
        if (failing.len() as u64) < u64::from(min) {
            return None;
        }
        let mut watched: BTreeSet<String> = self.subject.resources().into_iter().collect();
        watched.extend(failing.iter().cloned());
        let share = failing.len() as f64 / watched.len() as f64;
        if share <= self.config.breakage_share_max {
            return None;
        }
        let shown: Vec<&str> = failing.iter().take(10).map(String::as_str).collect();
        let reason = format!(
            "breakage cap: {} of {} watched resources failing at once ({:.0}% > breakage_share_max {:.0}%): automatic \
             repair stopped until fewer fail — something bigger than one resource is wrong ({}{})",
            failing.len(),
            watched.len(),
            share * 100.0,
            self.config.breakage_share_max * 100.0,
            shown.join(", "),
            if failing.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        );
        self.metrics.breakage_holds += 1;
        let now = self.clock.now();
        let alert = Alert {
            key: "breakage".to_string(),
            rule: "breakage".to_string(),
            level: EscalationLevel::Escalate,
            severity: Severity::Sev1,
            title: reason.clone(),
            resource: "*".to_string(),
            code: "breakage".to_string(),
            incident_id: None,
            at: now,
            report: None,
        };
        if let Some(a) = self
            .alerts
            .fire(alert, self.config.escalation_alert_cooldown_us)
        {
            alerts.push(a);
        }
        Some(reason)
    }
}
