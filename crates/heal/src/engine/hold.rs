//! Holds on automatic repair that come from outside the engine: an operator's silence that says "record, but do
//! not repair", a maintenance window during which risky repairs wait. The engine asks every hold before it starts a
//! repair; a held incident is deferred — decided again next cycle, the hold's reason in its decision —
//! so the repair runs as soon as no hold applies any more. Dry runs are not held (they change nothing).
//!
//! What a hold matches on and when it is in force is the program's (its silences and its configuration); the
//! engine only asks.

use super::*;

/// What the engine is about to repair, as a hold sees it.
#[derive(Debug, Clone, Copy)]
pub struct RepairRequest<'a> {
    /// The incident.
    pub incident_id: u64,
    /// Its root issue.
    pub issue: &'a Issue,
    /// Its severity.
    pub severity: Severity,
    /// The first strategy of the cascade.
    pub strategy: &'a str,
    /// That strategy's estimated risk, 0 to 1.
    pub risk: f64,
    /// Now.
    pub now: Timestamp,
}

/// Something that can make an automatic repair wait.
pub trait RepairHold: Send + Sync {
    /// Why `request` must wait now, if it must: one line for the incident's decision, naming the hold (e.g.
    /// `held by silence 3 (until 2026-12-06T14:00:00Z): no automatic repair`).
    fn hold(&self, request: &RepairRequest<'_>) -> Option<String>;
}

impl Engine {
    /// Replaces the holds asked before every automatic repair.
    pub fn set_repair_holds(&mut self, holds: Vec<Arc<dyn RepairHold>>) {
        self.holds = holds;
    }

    /// The first hold that makes `decision`'s repair of `inc` wait, if any: the decision becomes a deferral whose
    /// last reason (the one its one-line form shows) is the hold's.
    pub(super) fn apply_holds(
        &mut self,
        inc: &Incident,
        root: &Issue,
        decision: &mut RepairDecision,
    ) {
        if decision.action != Action::Repair || decision.dry_run {
            return;
        }
        if let Some(why) = &self.breakage_hold {
            self.metrics.repairs_held += 1;
            decision.action = Action::Defer;
            decision.reasons.push(why.clone());
            return;
        }
        if self.holds.is_empty() {
            return;
        }
        let strategy = decision.strategy.clone().unwrap_or_default();
        let request = RepairRequest {
            incident_id: inc.record.id,
            issue: root,
            severity: inc.record.severity,
            strategy: &strategy,
            risk: decision.risk,
            now: self.clock.now(),
        };
        if let Some(why) = self.holds.iter().find_map(|h| h.hold(&request)) {
            self.metrics.repairs_held += 1;
            decision.action = Action::Defer;
            decision.reasons.push(why);
        }
    }
}
