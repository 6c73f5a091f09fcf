//! Deciding and acting on one incident ([`Engine::handle`]): the candidates → the decision (gates, holds) → the
//! action. A repair runs its cascade → learns from each attempt → verifies by re-running the checks that reported
//! the incident → closes the incident or escalates it.

use std::collections::{BTreeSet, HashMap};

use super::*;
use crate::cascade::CascadeOutcome;
use crate::decide::Candidate;

/// What one cycle's repairs have used so far: the resources being repaired and how many repairs started.
pub(super) struct CycleBudget<'a> {
    pub busy: &'a mut BTreeSet<String>,
    pub repairs_started: &'a mut u32,
}

impl Engine {
    /// Decides and acts on one incident; returns its resolution when it closed.
    pub(super) fn handle(
        &mut self,
        inc: &mut Incident,
        strategies: &[Arc<dyn RepairStrategy>],
        budget: CycleBudget<'_>,
        s: &mut CycleSummary,
        alerts: &mut Vec<Alert>,
    ) -> Option<Resolution> {
        let now = self.clock.now();
        let root = inc.record.issues.get(inc.root_issue).cloned()?;
        let no_auto_fix = declared_without_auto_fix(&root);
        let candidates = if no_auto_fix {
            Vec::new()
        } else {
            self.candidates(&root, strategies, s)
        };
        let decision = self.decide_on(inc, &root, candidates, no_auto_fix, &budget, now);
        inc.record.decision = decision.one_line();
        inc.last_decision = Some(decision.clone());
        s.decisions.push(DecisionEntry {
            incident_id: inc.record.id,
            decision: decision.clone(),
        });
        match decision.action {
            Action::Watch => {
                inc.status = IncidentStatus::Watching;
                None
            }
            Action::Defer => {
                inc.status = IncidentStatus::Deferred;
                None
            }
            Action::Escalate => {
                let reasons = decision.reasons.clone();
                self.escalate(inc, reasons, decision.needs_approval, Vec::new(), s, alerts);
                None
            }
            Action::Repair if decision.dry_run => {
                record_dry_run(inc, &decision, now, s);
                None
            }
            Action::Repair => {
                budget.busy.insert(root.resource.clone());
                *budget.repairs_started += 1;
                self.metrics.repairs_initiated += 1;
                let out = self.run_repair(inc, &root, &decision, strategies, now, s);
                let still_failing = self.learn_from_repair(inc, &root, &out, s);
                self.conclude_repair(inc, &root, &decision, out, still_failing, s, alerts)
            }
        }
    }

    /// The strategies that claim the root issue, each with its estimate and its learned success rate.
    fn candidates(
        &mut self,
        root: &Issue,
        strategies: &[Arc<dyn RepairStrategy>],
        s: &mut CycleSummary,
    ) -> Vec<Candidate> {
        let mut candidates = Vec::new();
        for st in strategies.iter().filter(|st| st.can_repair(root)) {
            let stats = match self.kb.strategy_stats(st.name(), &root.code) {
                Ok(stats) => stats,
                Err(e) => {
                    self.metrics.kb_errors += 1;
                    s.errors
                        .push(format!("strategy stats of {}: {e}", st.name()));
                    Default::default()
                }
            };
            candidates.push(Candidate {
                name: st.name().to_string(),
                cost: st.cost(),
                estimate: st.estimate(root),
                success_rate: stats.posterior_success_rate(
                    self.config.prior_successes,
                    self.config.prior_failures,
                ),
            });
        }
        candidates
    }

    /// The decision: an obstacle nothing can adapt to becomes a wall, then the gates decide, then the operators'
    /// holds apply.
    fn decide_on(
        &mut self,
        inc: &mut Incident,
        root: &Issue,
        candidates: Vec<Candidate>,
        no_auto_fix: bool,
        budget: &CycleBudget<'_>,
        now: Timestamp,
    ) -> RepairDecision {
        let environmental = root.kind == IssueKind::Resource;
        let age_us = now.saturating_sub(inc.record.detected_at);
        let waiting = environmental && age_us < self.config.environment_grace_us;
        if candidates.is_empty() && inc.record.crisis == CrisisLevel::Obstacle && !waiting {
            // An obstacle no strategy can adapt to is a wall: only a human can move it (a problem of the
            // environment gets `environment_grace_us` to go away by itself first).
            inc.record.crisis = CrisisLevel::Wall;
        }
        let mut decision = decide(
            DecideInput {
                crisis: inc.record.crisis,
                resource: &root.resource,
                code: &root.code,
                candidates,
                approved: inc.approved,
                repairs_started: *budget.repairs_started,
                resource_busy: budget.busy.contains(&root.resource),
                environmental,
                age_us,
                now,
            },
            &self.gates,
            &self.config,
        );
        self.apply_holds(inc, root, &mut decision);
        if no_auto_fix {
            decision.reasons.insert(
                0,
                format!(
                    "{}: the constraint is declared with auto_fix_available = false, so no repair is tried",
                    root.code
                ),
            );
        }
        decision
    }

    /// Runs the decision's cascade (bounded by `repair_timeout_us`, shown in the repairs in flight). Failures are
    /// learned at once; a success only once the engine's own re-check confirms it ([`Self::learn_from_repair`]).
    fn run_repair(
        &mut self,
        inc: &Incident,
        root: &Issue,
        decision: &RepairDecision,
        strategies: &[Arc<dyn RepairStrategy>],
        now: Timestamp,
        s: &mut CycleSummary,
    ) -> CascadeOutcome {
        let by_name: HashMap<&str, &Arc<dyn RepairStrategy>> =
            strategies.iter().map(|st| (st.name(), st)).collect();
        let ordered: Vec<Arc<dyn RepairStrategy>> = decision
            .cascade
            .iter()
            .filter_map(|n| by_name.get(n.as_str()).map(|st| Arc::clone(st)))
            .collect();
        let running = self.in_flight.start(RepairInFlight {
            incident_id: inc.record.id,
            resource: root.resource.clone(),
            cascade: decision.cascade.clone(),
            started_at: now,
        });
        let (gates, kb, cfg, metrics) =
            (&mut self.gates, &self.kb, &self.config, &mut self.metrics);
        let clock = self.clock.as_ref();
        let mut kb_errors = Vec::new();
        let out = run_cascade_within(&ordered, root, clock, cfg.repair_timeout_us, |name, ok| {
            if ok {
                return;
            }
            gates.record_attempt(name, &root.resource, clock.now(), false, cfg);
            if let Err(e) = kb.record_outcome(name, &root.code, false) {
                metrics.kb_errors += 1;
                kb_errors.push(format!("recording outcome of {name}: {e}"));
            }
        });
        drop(running);
        s.errors.extend(kb_errors);
        out
    }

    /// What the engine learns from a cascade that ran: overruns, blocked attempts (no failure of their strategy:
    /// the environment refused, and may come back), the re-check of a reported success, the gates' and the
    /// knowledge base's records, the attempts. Returns why the repair did not hold, when the re-check still finds
    /// the root problem.
    fn learn_from_repair(
        &mut self,
        inc: &mut Incident,
        root: &Issue,
        out: &CascadeOutcome,
        s: &mut CycleSummary,
    ) -> Option<String> {
        for (name, ran_us) in &out.timed_out {
            self.metrics.repairs_timed_out += 1;
            s.errors.push(format!(
                "incident {}: repair {name} overran repair_timeout_us = {} (ran {ran_us} µs): abandoned as \
                 failed and rolled back",
                inc.record.id, self.config.repair_timeout_us
            ));
        }
        for name in &out.blocked {
            self.gates
                .record_blocked_attempt(name, &root.resource, self.clock.now(), &self.config);
        }
        // Verify: the strategy validated its own work; the engine also re-runs the checks that reported this
        // incident, and the repair holds only if none of them finds the root problem again.
        let still_failing = match out.repaired_by {
            Some(_) => self.recheck(&inc.record.issues, root),
            None => None,
        };
        if let Some(by) = &out.repaired_by {
            let verified = still_failing.is_none();
            self.gates
                .record_attempt(by, &root.resource, self.clock.now(), verified, &self.config);
            if let Err(e) = self.kb.record_outcome(by, &root.code, verified) {
                self.metrics.kb_errors += 1;
                s.errors.push(format!("recording outcome of {by}: {e}"));
            }
        }
        if out.only_blocked() {
            self.gates.record_blocked_repair(&root.resource, &root.code);
        } else if out
            .attempts
            .iter()
            .any(|a| a.outcome != AttemptOutcome::DryRun)
        {
            self.gates.record_repair(
                &root.resource,
                &root.code,
                out.repaired_by.is_some() && still_failing.is_none(),
            );
        }
        // A success the re-check does not confirm is recorded as what it was: a failed attempt, saying why.
        let mut attempts = out.attempts.clone();
        if let (Some(by), Some(why)) = (&out.repaired_by, &still_failing)
            && let Some(a) = attempts
                .iter_mut()
                .rev()
                .find(|a| &a.strategy == by && a.outcome == AttemptOutcome::Succeeded)
        {
            a.outcome = AttemptOutcome::Failed;
            a.notes.push(format!(
                "reported success, but the engine's re-check: {why}"
            ));
        }
        for a in &attempts {
            self.metrics.repair_time_us_total += a.duration_us;
            match a.outcome {
                AttemptOutcome::Succeeded => self.metrics.repairs_succeeded += 1,
                AttemptOutcome::Failed => self.metrics.repairs_failed += 1,
                AttemptOutcome::RolledBack => self.metrics.repairs_rolled_back += 1,
                AttemptOutcome::DryRun => {}
            }
            s.attempts.push(AttemptEntry {
                incident_id: inc.record.id,
                attempt: a.clone(),
            });
        }
        inc.record.attempts.extend(attempts);
        still_failing
    }

    /// The incident after its repair: open again when a reported success did not hold (decided again next
    /// cycle), closed as repaired, or escalated with what was lost when every strategy failed.
    #[allow(clippy::too_many_arguments)]
    fn conclude_repair(
        &mut self,
        inc: &mut Incident,
        root: &Issue,
        decision: &RepairDecision,
        out: CascadeOutcome,
        still_failing: Option<String>,
        s: &mut CycleSummary,
        alerts: &mut Vec<Alert>,
    ) -> Option<Resolution> {
        if let (Some(by), Some(why)) = (&out.repaired_by, &still_failing) {
            inc.record.decision =
                format!("{}; {by} reported success but {why}", inc.record.decision);
            inc.status = IncidentStatus::Open;
            inc.dirty = true;
            self.metrics.repairs_unverified += 1;
            s.errors.push(format!(
                "incident {}: {by} reported success but {why}",
                inc.record.id
            ));
            return None;
        }
        if let Some(by) = &out.repaired_by {
            inc.record.resolution = Resolution::AutoRepaired;
            inc.record.resolved_at = Some(self.clock.now());
            inc.record.decision = format!("{}; repaired by {by}", inc.record.decision);
            self.escalate_if_recurring(inc, root, by, alerts);
            return Some(Resolution::AutoRepaired);
        }
        let mut reasons = decision.reasons.clone();
        let mut lost = Vec::new();
        for u in &out.unrecoverable {
            reasons.push(format!("unrecoverable: {u}"));
            lost.push(format!("{u} (at {})", describe_location(root)));
        }
        if let Some(rf) = &out.rollback_failed {
            reasons.push(format!("rollback failed, state unknown: {rf}"));
        }
        reasons.push(format!(
            "every strategy in the cascade failed: {}",
            decision.cascade.join(", ")
        ));
        self.escalate(inc, reasons, false, lost, s, alerts);
        None
    }
}

/// A breached constraint declared without an automatic fix is a human's call: no strategy is tried.
fn declared_without_auto_fix(root: &Issue) -> bool {
    root.kind == IssueKind::ConstraintBreach
        && root
            .evidence
            .iter()
            .any(|(k, v)| k == "auto_fix_available" && v == "false")
}

/// A dry run's repair: the attempt it would have made is recorded, nothing is changed.
fn record_dry_run(
    inc: &mut Incident,
    decision: &RepairDecision,
    now: Timestamp,
    s: &mut CycleSummary,
) {
    let attempt = AttemptRecord {
        strategy: decision.strategy.clone().unwrap_or_default(),
        started_at: now,
        duration_us: 0,
        outcome: AttemptOutcome::DryRun,
        notes: vec![format!(
            "dry run: would run backup → repair → validate with, in order: {}",
            decision.cascade.join(", ")
        )],
        data_loss: decision.estimated_data_loss.clone(),
    };
    s.attempts.push(AttemptEntry {
        incident_id: inc.record.id,
        attempt: attempt.clone(),
    });
    inc.record.attempts.push(attempt);
    inc.status = IncidentStatus::DryRun;
}
