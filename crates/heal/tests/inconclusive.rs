//! A check whose run could not look (`CheckOutcome::inconclusive`: its server did not answer) has not seen a problem
//! go: the incident it reported stays as it was — not closed by the escalated re-check, not by the quiet period —
//! until a run that could look no longer finds it; and it never confirms a repair.

use std::sync::{Arc, Mutex};

use heal::check::{CheckContext, CheckOutcome, HealthCheck, Tier};
use heal::clock::{SimClock, US_PER_S};
use heal::config::EngineConfig;
use heal::engine::{Engine, IncidentStatus};
use heal::issue::{Issue, IssueKind};
use heal::learn::{AttemptOutcome, MemoryKnowledgeBase, Resolution};
use heal::repair::{
    Backup, DataLoss, Estimate, RepairCost, RepairError, RepairReport, RepairStrategy,
};
use heal::subject::{Sample, Subject};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    /// The probe looked and finds the problem.
    Problem,
    /// The probe could not look (and says so).
    Unreachable,
    /// The probe looked and finds nothing.
    Clear,
}

struct Probe(Arc<Mutex<Seen>>);

impl HealthCheck for Probe {
    fn name(&self) -> &str {
        "target.db.probe"
    }
    fn tier(&self) -> Tier {
        Tier::Shallow
    }
    fn run(&self, ctx: &CheckContext<'_>) -> CheckOutcome {
        match *self.0.lock().unwrap() {
            Seen::Problem => {
                let issue = Issue::new(
                    IssueKind::CheckFailed,
                    "pg_idle_in_transaction",
                    "target.db",
                    "a session idle in a transaction",
                    "target.db.probe",
                    ctx.clock.now(),
                );
                CheckOutcome::fail("idle in transaction", vec![issue])
            }
            Seen::Unreachable => {
                CheckOutcome::pass("cannot connect (1 of 3 failures)").inconclusive()
            }
            Seen::Clear => CheckOutcome::pass("up"),
        }
    }
}

/// Claims the problem; its steps succeed, and leave the probe seeing `after`.
struct Terminate {
    seen: Arc<Mutex<Seen>>,
    after: Seen,
}

impl RepairStrategy for Terminate {
    fn name(&self) -> &str {
        "terminate"
    }
    fn cost(&self) -> RepairCost {
        RepairCost::InPlace
    }
    fn can_repair(&self, _: &Issue) -> bool {
        true
    }
    fn estimate(&self, _: &Issue) -> Estimate {
        Estimate {
            duration_us: 1,
            data_loss: DataLoss::None,
            risk: 0.0,
        }
    }
    fn backup(&self, _: &Issue) -> Result<Backup, RepairError> {
        Ok(Backup {
            location: "none".into(),
            bytes: 0,
        })
    }
    fn repair(&self, _: &Issue) -> Result<RepairReport, RepairError> {
        *self.seen.lock().unwrap() = self.after;
        Ok(RepairReport {
            actions: vec!["terminated".into()],
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

struct Target {
    seen: Arc<Mutex<Seen>>,
    /// The repair, and what the probe sees after it.
    repairs: Option<Seen>,
}

impl Subject for Target {
    fn name(&self) -> &str {
        "db"
    }
    fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        vec![Arc::new(Probe(self.seen.clone()))]
    }
    fn strategies(&self) -> Vec<Arc<dyn RepairStrategy>> {
        match self.repairs {
            Some(after) => vec![Arc::new(Terminate {
                seen: self.seen.clone(),
                after,
            })],
            None => Vec::new(),
        }
    }
    fn sample(&self, _: u64) -> Vec<Sample> {
        Vec::new()
    }
    fn drain_issues(&self) -> Vec<Issue> {
        Vec::new()
    }
}

fn engine(repairs: Option<Seen>) -> (Engine, Arc<Mutex<Seen>>, SimClock) {
    let clock = SimClock::new(1_800_000_000 * US_PER_S);
    let seen = Arc::new(Mutex::new(Seen::Problem));
    let e = Engine::new(
        Arc::new(Target {
            seen: seen.clone(),
            repairs,
        }),
        Arc::new(MemoryKnowledgeBase::new()),
        Arc::new(clock.clone()),
        EngineConfig::default(),
    )
    .unwrap();
    (e, seen, clock)
}

#[test]
fn an_unreachable_server_does_not_close_an_escalated_incident() {
    let (mut e, seen, clock) = engine(None);
    let s = e.run_cycle();
    assert_eq!(s.escalations.len(), 1, "{s:?}");
    let id = s.escalations[0];
    *seen.lock().unwrap() = Seen::Unreachable;
    let config = EngineConfig::default();
    // Past the escalated re-check and the quiet period, many times over: kept as it was.
    for _ in 0..40 {
        clock.advance(config.escalated_recheck_us.max(config.quiet_period_us / 4));
        let s = e.run_cycle();
        assert!(s.incidents_closed.is_empty(), "{:?}", s.incidents_closed);
    }
    let active = e.active_incidents();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].record.id, id);
    assert_eq!(active[0].status, IncidentStatus::Escalated);
    // A run that looks and no longer finds it closes it.
    *seen.lock().unwrap() = Seen::Clear;
    clock.advance(config.escalated_recheck_us);
    let s = e.run_cycle();
    assert_eq!(s.incidents_closed, [(id, Resolution::SelfResolved)]);
    let record = e.incident(id).unwrap().unwrap();
    assert!(
        record.decision.contains("cause gone: target.db.probe"),
        "{}",
        record.decision
    );
}

#[test]
fn a_run_that_could_not_look_confirms_no_repair() {
    // The control: the repair's re-check looks and no longer finds the problem.
    let (mut e, _, _) = engine(Some(Seen::Clear));
    let s = e.run_cycle();
    let id = s.incidents_opened[0];
    assert_eq!(
        e.incident(id).unwrap().unwrap().resolution,
        Resolution::AutoRepaired
    );
    // The server stops answering during the repair: its re-check cannot look, and the success is not confirmed.
    let (mut e, _, _) = engine(Some(Seen::Unreachable));
    let s = e.run_cycle();
    let id = s.incidents_opened[0];
    let record = e.incident(id).unwrap().unwrap();
    assert_ne!(record.resolution, Resolution::AutoRepaired, "{record:?}");
    let attempt = &record.attempts[0];
    assert_eq!(attempt.outcome, AttemptOutcome::Failed, "{attempt:?}");
    assert!(
        attempt
            .notes
            .iter()
            .any(|n| n.contains("could not look for pg_idle_in_transaction")),
        "{:?}",
        attempt.notes
    );
}
