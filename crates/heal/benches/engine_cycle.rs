//! The cost of one engine cycle, measured: a quiet cycle (checks due, 20 metrics through their composite detectors
//! and one constraint each, nothing wrong) against a cycle that also correlates, diagnoses, decides, repairs and
//! records one incident (repair steps themselves are free here, so this is the engine's own overhead).
//!
//! Run: `cargo bench -p heal --bench engine_cycle -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::{Arc, Mutex};

use criterion::{Criterion, criterion_group, criterion_main};
use heal::check::{CheckContext, CheckOutcome, HealthCheck, Tier};
use heal::clock::{SimClock, US_PER_S};
use heal::config::EngineConfig;
use heal::constraint::Constraint;
use heal::engine::Engine;
use heal::issue::{Issue, IssueKind};
use heal::learn::MemoryKnowledgeBase;
use heal::repair::{
    Backup, DataLoss, Estimate, RepairCost, RepairError, RepairReport, RepairStrategy,
};
use heal::subject::{Sample, Subject};

const METRICS: usize = 20;

struct Pass(String, Tier);

impl HealthCheck for Pass {
    fn name(&self) -> &str {
        &self.0
    }
    fn tier(&self) -> Tier {
        self.1
    }
    fn interval_us(&self) -> u64 {
        0
    }
    fn run(&self, _ctx: &CheckContext<'_>) -> CheckOutcome {
        CheckOutcome::pass("ok")
    }
}

struct Fix;

impl RepairStrategy for Fix {
    fn name(&self) -> &str {
        "fix"
    }
    fn cost(&self) -> RepairCost {
        RepairCost::InPlace
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        issue.code == "block_checksum"
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
            location: "mem".into(),
            bytes: 0,
        })
    }
    fn repair(&self, _: &Issue) -> Result<RepairReport, RepairError> {
        Ok(RepairReport {
            actions: vec!["fixed".into()],
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

struct Bench {
    checks: Vec<Arc<dyn HealthCheck>>,
    strategies: Vec<Arc<dyn RepairStrategy>>,
    pending: Mutex<Vec<Issue>>,
    tick: Mutex<u64>,
}

impl Subject for Bench {
    fn name(&self) -> &str {
        "bench"
    }
    fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        self.checks.clone()
    }
    fn strategies(&self) -> Vec<Arc<dyn RepairStrategy>> {
        self.strategies.clone()
    }
    fn sample(&self, now: u64) -> Vec<Sample> {
        let mut t = self.tick.lock().expect("tick");
        *t = t.wrapping_add(1);
        (0..METRICS)
            .map(|m| {
                Sample::gauge(
                    format!("metric_{m}"),
                    1_000.0 + ((*t * 7 + m as u64 * 13) % 17) as f64,
                    now,
                )
            })
            .collect()
    }
    fn drain_issues(&self) -> Vec<Issue> {
        std::mem::take(&mut *self.pending.lock().expect("pending"))
    }
}

fn setup() -> (Engine, Arc<Bench>, SimClock) {
    let clock = SimClock::new(1_000 * US_PER_S);
    let subject = Arc::new(Bench {
        checks: vec![
            Arc::new(Pass("a".into(), Tier::Shallow)),
            Arc::new(Pass("b".into(), Tier::Shallow)),
            Arc::new(Pass("c".into(), Tier::Deep)),
        ],
        strategies: vec![Arc::new(Fix)],
        pending: Mutex::new(Vec::new()),
        tick: Mutex::new(0),
    });
    let config = EngineConfig {
        constraints: (0..METRICS)
            .map(|m| {
                Constraint::new(
                    format!("ceiling_{m}"),
                    format!("metric_{m}"),
                    None,
                    Some(1e9),
                )
            })
            .collect(),
        // The repair runs every iteration: lift the per-strategy rate limit out of the way.
        strategy_rate_max: 10_000,
        strategy_rate_window_us: US_PER_S,
        ..EngineConfig::default()
    };
    let engine = Engine::new(
        subject.clone(),
        Arc::new(MemoryKnowledgeBase::new()),
        Arc::new(clock.clone()),
        config,
    )
    .expect("valid config");
    (engine, subject, clock)
}

fn cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_cycle");
    let (mut engine, _, clock) = setup();
    for _ in 0..500 {
        clock.advance(US_PER_S);
        engine.run_cycle();
    }
    g.bench_function("quiet_20_metrics_3_checks", |b| {
        b.iter(|| {
            clock.advance(US_PER_S);
            black_box(engine.run_cycle())
        })
    });
    let (mut engine, subject, clock) = setup();
    for _ in 0..500 {
        clock.advance(US_PER_S);
        engine.run_cycle();
    }
    let mut n = 0u64;
    g.bench_function("one_incident_repaired_20_metrics_3_checks", |b| {
        b.iter(|| {
            n += 1;
            clock.advance(US_PER_S);
            subject.pending.lock().expect("pending").push(Issue::new(
                IssueKind::Integrity,
                "block_checksum",
                format!("wal/{n}.seg"),
                "bad block",
                "bench",
                heal::clock::Clock::now(&clock),
            ));
            let s = engine.run_cycle();
            assert_eq!(
                s.incidents_closed.len(),
                1,
                "the incident is repaired in the cycle"
            );
            black_box(s)
        })
    });
    g.finish();
}

criterion_group!(benches, cycle);
criterion_main!(benches);
