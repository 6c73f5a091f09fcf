//! Simulation of the whole healing loop: a fake subject whose problems the test injects over simulated hours
//! (SimClock), driving detection, diagnosis, decisions, the recovery cascade with rollback, the circuit breaker,
//! escalation with a report, dry-run, the approval gate, rate limit and cooldown, false positives, and KPIs computed
//! from the records.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use heal::check::{CheckContext, CheckOutcome, HealthCheck, HealthState, Tier};
use heal::clock::{SimClock, US_PER_S};
use heal::config::EngineConfig;
use heal::decide::{Action, BreakerState};
use heal::engine::{
    CycleSummary, Engine, IncidentStatus, RepairHold, RepairInFlight, RepairRequest,
    RepairsInFlight,
};
use heal::escalate::{Alert, EscalationLevel, Notifier};
use heal::issue::{Issue, IssueKind, Location};
use heal::learn::{AttemptOutcome, KnowledgeBase, MemoryKnowledgeBase, Resolution};
use heal::repair::{
    Backup, DataLoss, Estimate, RepairCost, RepairError, RepairReport, RepairStrategy,
};
use heal::subject::{Sample, Subject};

const START: u64 = 1_800_000_000 * US_PER_S;
const CYCLE_US: u64 = 5 * US_PER_S;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Works,
    /// Repair and validation say it worked; the fault is still there.
    Lies,
    ValidateFails,
    RepairFails,
    Unrecoverable,
}

#[derive(Default)]
struct World {
    metrics: BTreeMap<String, f64>,
    faults: BTreeMap<String, Issue>,
    pending: Vec<Issue>,
    modes: HashMap<String, Mode>,
    calls: Vec<String>,
    liveness_fails: bool,
    /// The liveness check's next run overruns its timeout (once).
    slow_once: bool,
    /// Whether the `scrub` check reports the faults it finds (off: it always passes).
    scrub_reports: bool,
    /// Whether writes are held (the subject's side of `stop_writes`).
    writes_stopped: bool,
    slow_check_us: u64,
    /// The engine's repairs-in-flight handle, and what it showed while each repair ran.
    in_flight: Option<RepairsInFlight>,
    in_flight_seen: Vec<Vec<RepairInFlight>>,
}

struct Liveness {
    world: Arc<Mutex<World>>,
    clock: SimClock,
}

impl HealthCheck for Liveness {
    fn name(&self) -> &str {
        "liveness"
    }
    fn tier(&self) -> Tier {
        Tier::Shallow
    }
    fn run(&self, _ctx: &CheckContext<'_>) -> CheckOutcome {
        let mut w = self.world.lock().unwrap();
        self.clock.advance(w.slow_check_us);
        if std::mem::take(&mut w.slow_once) {
            self.clock.advance(200_000);
        }
        if w.liveness_fails {
            CheckOutcome::fail("not answering", Vec::new())
        } else {
            CheckOutcome::pass("answering")
        }
    }
}

/// A deep integrity check that, when `scrub_reports` is on, reports every fault still present (source `scrub`). It is
/// due once a day, so it runs in the first cycle and whenever the engine re-checks after a repair.
struct Scrub {
    world: Arc<Mutex<World>>,
}

impl HealthCheck for Scrub {
    fn name(&self) -> &str {
        "scrub"
    }
    fn tier(&self) -> Tier {
        Tier::Deep
    }
    fn interval_us(&self) -> u64 {
        86_400 * US_PER_S
    }
    fn run(&self, _ctx: &CheckContext<'_>) -> CheckOutcome {
        let w = self.world.lock().unwrap();
        let found: Vec<Issue> = if w.scrub_reports {
            w.faults
                .values()
                .cloned()
                .map(|mut i| {
                    i.source = "scrub".into();
                    i
                })
                .collect()
        } else {
            Vec::new()
        };
        if found.is_empty() {
            CheckOutcome::pass("every block verifies")
        } else {
            CheckOutcome::fail(format!("{} damaged", found.len()), found)
        }
    }
}

struct FakeStrategy {
    name: &'static str,
    cost: RepairCost,
    codes: &'static [&'static str],
    risk: f64,
    duration_us: u64,
    world: Arc<Mutex<World>>,
    clock: SimClock,
}

impl FakeStrategy {
    fn call(&self, what: &str, issue: &Issue) {
        self.world
            .lock()
            .unwrap()
            .calls
            .push(format!("{}:{what}:{}", self.name, issue.resource));
    }
    fn mode(&self) -> Mode {
        *self
            .world
            .lock()
            .unwrap()
            .modes
            .get(self.name)
            .unwrap_or(&Mode::Works)
    }
}

impl RepairStrategy for FakeStrategy {
    fn name(&self) -> &str {
        self.name
    }
    fn cost(&self) -> RepairCost {
        self.cost
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        self.codes.contains(&issue.code.as_str())
    }
    fn estimate(&self, _issue: &Issue) -> Estimate {
        Estimate {
            duration_us: self.duration_us,
            data_loss: DataLoss::None,
            risk: self.risk,
        }
    }
    fn backup(&self, issue: &Issue) -> Result<Backup, RepairError> {
        self.call("backup", issue);
        Ok(Backup {
            location: format!("mem:{}", issue.resource),
            bytes: 4096,
        })
    }
    fn repair(&self, issue: &Issue) -> Result<RepairReport, RepairError> {
        self.call("repair", issue);
        {
            let mut w = self.world.lock().unwrap();
            if let Some(h) = w.in_flight.clone() {
                w.in_flight_seen.push(h.list());
            }
        }
        self.clock.advance(self.duration_us);
        match self.mode() {
            Mode::Works => {
                self.world.lock().unwrap().faults.remove(&issue.resource);
                Ok(RepairReport {
                    actions: vec![format!("{} fixed {}", self.name, issue.resource)],
                    data_loss: DataLoss::None,
                })
            }
            Mode::Lies => Ok(RepairReport {
                actions: vec![format!("{} claims it fixed {}", self.name, issue.resource)],
                data_loss: DataLoss::None,
            }),
            Mode::ValidateFails => Ok(RepairReport {
                actions: vec![format!("{} rewrote {}", self.name, issue.resource)],
                data_loss: DataLoss::None,
            }),
            Mode::RepairFails => Err(RepairError::Io("write refused".into())),
            Mode::Unrecoverable => Err(RepairError::Unrecoverable(
                "parity shards damaged too".into(),
            )),
        }
    }
    fn validate(&self, issue: &Issue) -> Result<(), RepairError> {
        self.call("validate", issue);
        if self.mode() == Mode::Lies {
            return Ok(());
        }
        if self
            .world
            .lock()
            .unwrap()
            .faults
            .contains_key(&issue.resource)
        {
            Err(RepairError::Validation(format!(
                "{} still damaged",
                issue.resource
            )))
        } else {
            Ok(())
        }
    }
    fn rollback(&self, issue: &Issue, _backup: &Backup) -> Result<(), RepairError> {
        self.call("rollback", issue);
        Ok(())
    }
}

struct FakeSubject {
    world: Arc<Mutex<World>>,
    checks: Vec<Arc<dyn HealthCheck>>,
    strategies: Vec<Arc<dyn RepairStrategy>>,
}

impl Subject for FakeSubject {
    fn name(&self) -> &str {
        "fake-store"
    }
    fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        self.checks.clone()
    }
    fn strategies(&self) -> Vec<Arc<dyn RepairStrategy>> {
        self.strategies.clone()
    }
    fn sample(&self, now: u64) -> Vec<Sample> {
        let w = self.world.lock().unwrap();
        w.metrics
            .iter()
            .map(|(m, &v)| Sample {
                kind: heal::MetricKind::Gauge,
                metric: m.clone(),
                value: v,
                at: now,
            })
            .collect()
    }
    fn drain_issues(&self) -> Vec<Issue> {
        std::mem::take(&mut self.world.lock().unwrap().pending)
    }
    fn stop_writes(&self, reason: Option<&str>) -> Result<(), String> {
        let mut w = self.world.lock().unwrap();
        match reason {
            Some(r) => {
                w.calls.push(format!("stop_writes: {r}"));
                w.writes_stopped = true;
            }
            // Like a store: lifting a hold that is not there does nothing.
            None if std::mem::take(&mut w.writes_stopped) => {
                w.calls.push("resume_writes".to_string())
            }
            None => {}
        }
        Ok(())
    }
}

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Alert>>>);

impl Notifier for Collect {
    fn notify(&self, alert: &Alert) -> Result<(), String> {
        self.0.lock().unwrap().push(alert.clone());
        Ok(())
    }
}

struct Sim {
    clock: SimClock,
    world: Arc<Mutex<World>>,
    kb: Arc<MemoryKnowledgeBase>,
    engine: Engine,
    alerts: Collect,
    rng: u64,
}

fn strategy(
    name: &'static str,
    cost: RepairCost,
    codes: &'static [&'static str],
    risk: f64,
    duration_s: u64,
    world: &Arc<Mutex<World>>,
    clock: &SimClock,
) -> Arc<dyn RepairStrategy> {
    Arc::new(FakeStrategy {
        name,
        cost,
        codes,
        risk,
        duration_us: duration_s * US_PER_S,
        world: world.clone(),
        clock: clock.clone(),
    })
}

impl Sim {
    fn new(config: EngineConfig) -> Self {
        Self::with_kb(config, Arc::new(MemoryKnowledgeBase::new()))
    }

    fn with_kb(config: EngineConfig, kb: Arc<MemoryKnowledgeBase>) -> Self {
        let clock = SimClock::new(START);
        let world = Arc::new(Mutex::new(World::default()));
        let strategies = vec![
            strategy(
                "compact_index",
                RepairCost::InPlace,
                &["index_fragmentation"],
                0.1,
                2,
                &world,
                &clock,
            ),
            strategy(
                "retry_block",
                RepairCost::InPlace,
                &["block_checksum"],
                0.05,
                1,
                &world,
                &clock,
            ),
            strategy(
                "rebuild_from_parity",
                RepairCost::Redundancy,
                &["block_checksum"],
                0.2,
                4,
                &world,
                &clock,
            ),
            strategy(
                "rebuild_manifest",
                RepairCost::Rebuild,
                &["manifest_damaged"],
                0.8,
                3,
                &world,
                &clock,
            ),
        ];
        let checks: Vec<Arc<dyn HealthCheck>> = vec![
            Arc::new(Liveness {
                world: world.clone(),
                clock: clock.clone(),
            }),
            Arc::new(Scrub {
                world: world.clone(),
            }),
        ];
        let subject = Arc::new(FakeSubject {
            world: world.clone(),
            checks,
            strategies,
        });
        let mut engine = Engine::new(subject, kb.clone(), Arc::new(clock.clone()), config)
            .expect("valid engine");
        let alerts = Collect::default();
        engine.add_notifier(Box::new(alerts.clone()));
        Self {
            clock,
            world,
            kb,
            engine,
            alerts,
            rng: 42,
        }
    }

    fn noise(&mut self) -> f64 {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.rng >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    }

    /// Advances one cycle with normal metrics (plus overrides) and runs the engine.
    fn cycle_with(&mut self, overrides: &[(&str, f64)]) -> CycleSummary {
        self.clock.advance(CYCLE_US);
        let search = 1_000.0 + 40.0 * self.noise();
        let put = 500.0 + 20.0 * self.noise();
        {
            let mut w = self.world.lock().unwrap();
            w.metrics.insert("search_latency_p99_us".into(), search);
            w.metrics.insert("put_latency_p99_us".into(), put);
            for &(m, v) in overrides {
                w.metrics.insert(m.into(), v);
            }
        }
        self.engine.run_cycle()
    }

    fn cycle(&mut self) -> CycleSummary {
        self.cycle_with(&[])
    }

    /// Runs quiet cycles for `seconds`, asserting nothing happens.
    fn quiet(&mut self, seconds: u64) {
        for _ in 0..seconds * US_PER_S / CYCLE_US {
            let s = self.cycle();
            assert!(
                s.incidents_opened.is_empty(),
                "no incident while quiet: {s:#?}"
            );
        }
    }

    fn inject(&mut self, issue: Issue) {
        let mut w = self.world.lock().unwrap();
        w.faults.insert(issue.resource.clone(), issue.clone());
        w.pending.push(issue);
    }

    fn block_fault(&self, file: &str) -> Issue {
        Issue::new(
            IssueKind::Integrity,
            "block_checksum",
            file,
            format!("block at 4096 in {file} fails its checksum"),
            "read_path",
            self.now(),
        )
        .at(Location {
            file: Some(file.to_string()),
            offset: Some(4096),
            len: Some(4096),
            lsn_range: Some((100, 131)),
        })
    }

    fn now(&self) -> u64 {
        heal::clock::Clock::now(&self.clock)
    }

    fn set_mode(&self, strategy: &str, mode: Mode) {
        self.world
            .lock()
            .unwrap()
            .modes
            .insert(strategy.into(), mode);
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut self.world.lock().unwrap().calls)
    }
}

fn warm_up(sim: &mut Sim) {
    // Ten simulated minutes of normal traffic: the detectors learn the baseline and nothing fires.
    sim.quiet(600);
    assert_eq!(sim.engine.health_state(), HealthState::Healthy);
    assert_eq!(sim.engine.metrics().incidents, 0);
}

#[test]
fn whole_path_over_simulated_hours() {
    // One spiking sample is raised at once (the default waits for two in a row; this path is about what follows).
    let mut sim = Sim::new(EngineConfig {
        anomaly_for_samples: 1,
        ..EngineConfig::default()
    });
    warm_up(&mut sim);

    // 1. A latency spike and index fragmentation: one incident, root cause the fragmentation, compacted.
    let frag = Issue::new(
        IssueKind::StaleDerived,
        "index_fragmentation",
        "text_index",
        "text index 62% fragmented",
        "index_stats",
        sim.now() + CYCLE_US - 3 * US_PER_S,
    )
    .evidence("fragmentation", "0.62");
    sim.inject(frag);
    let s = sim.cycle_with(&[("search_latency_p99_us", 25_000.0)]);
    assert_eq!(s.anomalies, 1, "the injected spike is detected: {s:#?}");
    assert_eq!(
        s.incidents_opened.len(),
        1,
        "symptom and cause correlate into one incident"
    );
    let first = s.incidents_opened[0];
    assert_eq!(s.decisions.len(), 1);
    let d = &s.decisions[0].decision;
    assert_eq!(d.action, Action::Repair);
    assert_eq!(d.strategy.as_deref(), Some("compact_index"));
    assert!(
        (d.confidence - 0.5).abs() < 1e-12,
        "prior mean with no history"
    );
    assert_eq!(d.estimated_duration_us, 2 * US_PER_S);
    assert_eq!(s.incidents_closed, [(first, Resolution::AutoRepaired)]);
    let rec = sim.engine.incident(first).unwrap().unwrap();
    assert!(
        rec.root_cause.contains("a fragmented index slows queries"),
        "{}",
        rec.root_cause
    );
    assert!(
        rec.issues
            .iter()
            .any(|i| i.kind == IssueKind::Anomaly && i.resource == "search_latency_p99_us")
    );
    assert_eq!(rec.attempts.len(), 1);
    assert_eq!(rec.attempts[0].outcome, AttemptOutcome::Succeeded);
    assert_eq!(
        sim.calls(),
        [
            "compact_index:backup:text_index",
            "compact_index:repair:text_index",
            "compact_index:validate:text_index"
        ]
    );
    sim.quiet(120);

    // 2. A damaged block: the in-place retry fails validation and is rolled back, parity repairs it.
    sim.set_mode("retry_block", Mode::ValidateFails);
    let f = sim.block_fault("wal/00000003.seg");
    sim.inject(f);
    let s = sim.cycle();
    let id = s.incidents_opened[0];
    assert_eq!(
        s.decisions[0].decision.cascade,
        ["retry_block", "rebuild_from_parity"]
    );
    let outcomes: Vec<_> = s
        .attempts
        .iter()
        .map(|a| (a.attempt.strategy.as_str(), a.attempt.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("retry_block", AttemptOutcome::RolledBack),
            ("rebuild_from_parity", AttemptOutcome::Succeeded)
        ]
    );
    assert_eq!(
        sim.calls(),
        [
            "retry_block:backup:wal/00000003.seg",
            "retry_block:repair:wal/00000003.seg",
            "retry_block:validate:wal/00000003.seg",
            "retry_block:rollback:wal/00000003.seg",
            "rebuild_from_parity:backup:wal/00000003.seg",
            "rebuild_from_parity:repair:wal/00000003.seg",
            "rebuild_from_parity:validate:wal/00000003.seg",
        ]
    );
    assert_eq!(s.incidents_closed, [(id, Resolution::AutoRepaired)]);
    sim.quiet(120);

    // 3. Two more damaged blocks where the retry's repair step fails: with the rollback above that is three
    //    consecutive failures of the retry, and its circuit breaker opens.
    sim.set_mode("retry_block", Mode::RepairFails);
    let cooldown = EngineConfig::default().breaker_cooldown_us;
    for n in 4..=5 {
        let f = sim.block_fault(&format!("wal/0000000{n}.seg"));
        sim.inject(f);
        let s = sim.cycle();
        let outcomes: Vec<_> = s.attempts.iter().map(|a| a.attempt.outcome).collect();
        assert_eq!(
            outcomes,
            [AttemptOutcome::Failed, AttemptOutcome::Succeeded],
            "block {n}"
        );
        let breakers = sim.engine.breakers();
        let (_, retry) = breakers.iter().find(|(n, _)| n == "retry_block").unwrap();
        assert_eq!(retry.consecutive_failures, n - 2);
        assert_eq!(
            matches!(retry.state(sim.now(), cooldown), BreakerState::Open { .. }),
            n == 5,
            "open only after the third failure in a row"
        );
        sim.quiet(120);
    }
    sim.calls();
    let f = sim.block_fault("wal/00000006.seg");
    sim.inject(f);
    let s = sim.cycle();
    let d = &s.decisions[0].decision;
    assert_eq!(
        d.cascade,
        ["rebuild_from_parity"],
        "the open breaker keeps the retry out"
    );
    assert!(
        d.reasons
            .iter()
            .any(|r| r.contains("retry_block: circuit breaker open")),
        "{:?}",
        d.reasons
    );
    assert!(sim.calls().iter().all(|c| !c.starts_with("retry_block")));
    assert_eq!(s.incidents_closed.len(), 1);
    sim.quiet(120);

    // 4. Damage beyond redundancy: parity cannot undo it; escalated with a report.
    sim.set_mode("rebuild_from_parity", Mode::Unrecoverable);
    let f = sim.block_fault("wal/00000009.seg");
    sim.inject(f);
    let s = sim.cycle();
    let id = s.incidents_opened[0];
    assert_eq!(s.escalations, [id]);
    assert_eq!(sim.engine.escalation_level(), EscalationLevel::Escalate);
    let alerts = sim.alerts.0.lock().unwrap().clone();
    let alert = alerts
        .iter()
        .find(|a| a.incident_id == Some(id))
        .expect("escalation alert sent");
    let report = alert.report.as_ref().expect("alert carries the report");
    assert!(
        report
            .data_at_risk
            .iter()
            .any(|l| l.contains("parity shards damaged too")),
        "{:?}",
        report.data_at_risk
    );
    let rec = sim.engine.incident(id).unwrap().unwrap();
    assert_eq!(rec.resolution, Resolution::Escalated);
    let md = rec.report_markdown.expect("report saved in the record");
    for needle in [
        "`block_checksum` on `wal/00000009.seg`",
        "| rebuild_from_parity | failed |",
        "unrecoverable: rebuild_from_parity: parity shards damaged too",
        "LSN 100..=131",
        "circuit breaker of retry_block is open",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in\n{md}");
    }
    let active = sim.engine.active_incidents();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].status, IncidentStatus::Escalated);
    sim.set_mode("rebuild_from_parity", Mode::Works);

    // Quiet for the quiet period: the escalated incident leaves the active set, the level steps down.
    sim.quiet(1_300);
    assert!(sim.engine.active_incidents().is_empty());
    assert!(sim.engine.escalation_level() < EscalationLevel::Escalate);

    // 5. A lone spike on put latency: watched, then marked a false positive, which raises that metric's cut-off.
    let s = sim.cycle_with(&[("put_latency_p99_us", 9_000.0)]);
    assert_eq!(s.anomalies, 1);
    let fp = s.incidents_opened[0];
    assert_eq!(s.decisions[0].decision.action, Action::Watch);
    let before = sim.engine.anomaly_cutoff("put_latency_p99_us");
    let raised = sim.engine.mark_false_positive(fp).unwrap();
    assert_eq!(raised.len(), 1);
    assert!((raised[0].1 - before * 1.1).abs() < 1e-12);
    assert_eq!(
        sim.kb.get(fp).unwrap().unwrap().resolution,
        Resolution::FalsePositive
    );
    assert_eq!(
        sim.engine.anomaly_cutoff("search_latency_p99_us"),
        before,
        "other metrics keep theirs"
    );
    sim.quiet(60);

    // KPIs from the records: exact values from the scenario.
    let k = sim.engine.kpis().unwrap();
    assert_eq!(k.incidents, 7);
    assert_eq!(
        (k.auto_repaired, k.escalated, k.false_positives, k.open),
        (5, 1, 1, 0)
    );
    assert_eq!(
        (k.attempts, k.attempts_succeeded, k.attempts_rolled_back),
        (9, 5, 1)
    );
    assert_eq!(k.repair_success_rate, Some(5.0 / 9.0));
    assert_eq!(k.rollback_rate, Some(1.0 / 9.0));
    assert_eq!(k.auto_remediation_rate, Some(5.0 / 6.0));
    assert_eq!(k.false_positive_rate, Some(1.0 / 7.0));
    // Detection: the fragmentation was first seen 3 s before the cycle that took it in; each damaged block was met on
    // the read path one cycle (5 s) before the engine's next cycle took it in (five of them).
    assert_eq!(k.mttd_us, Some((3.0 + 5.0 * 5.0) * US_PER_S as f64 / 6.0));
    // Repair: compact 2 s; retry 1 s + parity 4 s (three times); parity alone 4 s.
    assert_eq!(
        k.mttr_us,
        Some((2.0 + 3.0 * 5.0 + 4.0) / 5.0 * US_PER_S as f64)
    );
    let m = sim.engine.metrics();
    assert_eq!(
        (
            m.repairs_initiated,
            m.repairs_succeeded,
            m.repairs_failed,
            m.repairs_rolled_back
        ),
        (6, 5, 3, 1)
    );
    assert_eq!(m.escalations, 1);
    assert_eq!(m.repair_time_us_total, (2 + 3 * 5 + 4 + 4) * US_PER_S);
    let json: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
    assert_eq!(json["escalations"], 1);

    // Then six quiet hours (every hour of the day's seasonal bucket meets its first points, range novelty judges
    // on every point): noise alone opens nothing.
    sim.quiet(6 * 3600);
    assert_eq!(sim.engine.kpis().unwrap().incidents, 7);
}

#[test]
fn dry_run_decides_but_changes_nothing_until_switched_off() {
    let mut sim = Sim::new(EngineConfig {
        dry_run: true,
        ..EngineConfig::default()
    });
    let f = sim.block_fault("wal/00000003.seg");
    sim.inject(f);
    let s = sim.cycle();
    assert!(s.dry_run);
    let json = serde_json::to_value(&s).expect("the summary is JSON");
    assert_eq!(json["decisions"][0]["decision"]["action"], "repair");
    assert_eq!(json["attempts"][0]["attempt"]["outcome"], "dry_run");
    let id = s.incidents_opened[0];
    let d = &s.decisions[0].decision;
    assert_eq!((d.action, d.dry_run), (Action::Repair, true));
    assert_eq!(s.attempts.len(), 1);
    assert_eq!(s.attempts[0].attempt.outcome, AttemptOutcome::DryRun);
    assert!(sim.calls().is_empty(), "no strategy step ran");
    assert!(
        sim.world
            .lock()
            .unwrap()
            .faults
            .contains_key("wal/00000003.seg"),
        "the damage is still there"
    );
    assert_eq!(sim.engine.metrics().repairs_initiated, 0);
    assert_eq!(
        sim.engine.active_incidents()[0].status,
        IncidentStatus::DryRun
    );
    let s = sim.cycle();
    assert!(
        s.decisions.is_empty(),
        "a dry-run decision is not repeated every cycle"
    );

    sim.engine.set_dry_run(false);
    let s = sim.cycle();
    assert_eq!(s.incidents_closed, [(id, Resolution::AutoRepaired)]);
    assert!(
        !sim.world
            .lock()
            .unwrap()
            .faults
            .contains_key("wal/00000003.seg")
    );
    let rec = sim.kb.get(id).unwrap().unwrap();
    let outcomes: Vec<_> = rec.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::DryRun, AttemptOutcome::Succeeded]
    );
}

#[test]
fn a_running_repair_is_visible_in_flight_and_gone_after() {
    let mut sim = Sim::new(EngineConfig::default());
    let handle = sim.engine.repairs_in_flight();
    sim.world.lock().unwrap().in_flight = Some(handle.clone());
    let f = sim.block_fault("wal/00000003.seg");
    sim.inject(f);
    let s = sim.cycle();
    let id = s.incidents_opened[0];
    let seen = std::mem::take(&mut sim.world.lock().unwrap().in_flight_seen);
    assert!(!seen.is_empty(), "a repair ran");
    assert_eq!(seen[0].len(), 1, "{seen:?}");
    assert_eq!(seen[0][0].incident_id, id);
    assert_eq!(seen[0][0].resource, "wal/00000003.seg");
    assert!(!seen[0][0].cascade.is_empty());
    assert_eq!(handle.count(), 0, "nothing in flight after the cycle");
}

#[test]
fn risky_repair_waits_for_approval() {
    let mut sim = Sim::new(EngineConfig::default());
    let manifest = Issue::new(
        IssueKind::Integrity,
        "manifest_damaged",
        "MANIFEST",
        "both copies",
        "open",
        sim.now(),
    );
    sim.inject(manifest);
    let s = sim.cycle();
    let id = s.incidents_opened[0];
    let d = &s.decisions[0].decision;
    assert_eq!(d.action, Action::Escalate);
    assert!(d.needs_approval);
    assert!(
        d.reasons
            .iter()
            .any(|r| r.contains("risk 0.80 above approval_risk_max 0.50")),
        "{:?}",
        d.reasons
    );
    assert!(sim.calls().is_empty());
    assert_eq!(
        sim.engine.active_incidents()[0].status,
        IncidentStatus::AwaitingApproval
    );
    assert_eq!(s.alerts.len(), 1);
    assert_eq!(s.alerts[0].rule, "approval_required");
    assert!(
        s.alerts[0].report.as_ref().unwrap().suggestions[0]
            .contains(&format!("medic approve {id}"))
    );
    let s = sim.cycle();
    assert!(s.decisions.is_empty(), "still waiting");
    assert!(sim.engine.approve(id + 100).is_err());

    sim.engine.approve(id).unwrap();
    let s = sim.cycle();
    assert_eq!(
        s.decisions[0].decision.strategy.as_deref(),
        Some("rebuild_manifest")
    );
    assert_eq!(s.incidents_closed, [(id, Resolution::AutoRepaired)]);
    assert!(
        sim.engine.approve(id).is_err(),
        "closed incidents need no approval"
    );
}

#[test]
fn rate_limit_defers_and_cooldown_skips_a_failed_strategy() {
    let mut sim = Sim::new(EngineConfig {
        strategy_rate_max: 2,
        strategy_rate_window_us: 600 * US_PER_S,
        strategy_cooldown_us: 60 * US_PER_S,
        ..EngineConfig::default()
    });
    // Cooldown: the retry fails once; a block damaged 20 s later goes straight to parity.
    sim.set_mode("retry_block", Mode::RepairFails);
    let f = sim.block_fault("wal/1.seg");
    sim.inject(f);
    let s = sim.cycle();
    assert_eq!(s.attempts.len(), 2);
    sim.set_mode("retry_block", Mode::Works);
    for _ in 0..3 {
        sim.cycle();
    }
    let f = sim.block_fault("wal/2.seg");
    sim.inject(f);
    let s = sim.cycle();
    let d = &s.decisions[0].decision;
    assert_eq!(d.cascade, ["rebuild_from_parity"]);
    assert!(
        d.reasons
            .iter()
            .any(|r| r.starts_with("retry_block: cooling down")),
        "{:?}",
        d.reasons
    );

    // Rate limit, per resource: damage to one file, repaired over and over, uses up each strategy's attempts on
    // that file within the 10-minute window (retry twice, then parity twice), and the next repair there waits —
    // while the same strategies still repair damage to any other file at once.
    sim.quiet(60);
    let mut used = Vec::new();
    for _ in 0..4 {
        let f = sim.block_fault("wal/3.seg");
        sim.inject(f);
        let s = sim.cycle();
        assert_eq!(s.attempts.len(), 1, "{:?}", s.decisions);
        used.push(s.attempts[0].attempt.strategy.clone());
        sim.quiet(1);
    }
    assert_eq!(
        used,
        [
            "retry_block",
            "retry_block",
            "rebuild_from_parity",
            "rebuild_from_parity"
        ]
    );
    let f = sim.block_fault("wal/3.seg");
    sim.inject(f);
    let s = sim.cycle();
    let id = s.incidents_opened[0];
    let d = &s.decisions[0].decision;
    assert_eq!(d.action, Action::Defer, "{:?}", d.reasons);
    assert!(d.reasons.iter().any(|r| r.contains("rate limit")));
    assert!(s.attempts.is_empty());
    assert_eq!(
        sim.engine.active_incidents()[0].status,
        IncidentStatus::Deferred
    );
    let f = sim.block_fault("wal/4.seg");
    sim.inject(f);
    let s = sim.cycle();
    assert_eq!(s.attempts.len(), 1, "another file is repaired at once");
    // Deferred incidents are decided again each cycle and repaired once the window frees a slot.
    let mut closed = None;
    for _ in 0..(600 * US_PER_S / CYCLE_US) {
        let s = sim.cycle();
        if let Some(&(cid, r)) = s.incidents_closed.iter().find(|(cid, _)| *cid == id) {
            closed = Some((cid, r, sim.now()));
            break;
        }
    }
    let (cid, r, _) = closed.expect("repaired once the rate window moved on");
    assert_eq!((cid, r), (id, Resolution::AutoRepaired));
}

#[test]
fn same_problem_failing_three_repairs_escalates_without_trying_again() {
    let mut sim = Sim::new(EngineConfig {
        breaker_failures_max: 10,
        quiet_period_us: 60 * US_PER_S,
        ..EngineConfig::default()
    });
    sim.set_mode("retry_block", Mode::RepairFails);
    sim.set_mode("rebuild_from_parity", Mode::RepairFails);
    let f = sim.block_fault("wal/7.seg");
    sim.inject(f.clone());
    let s = sim.cycle();
    assert_eq!(s.attempts.len(), 2);
    assert_eq!(s.escalations.len(), 1);
    sim.quiet(120);
    sim.inject(f.clone());
    let s = sim.cycle();
    assert_eq!(
        s.attempts.len(),
        2,
        "1 failed repair so far (of 2 attempts), below the limit of 3: tried again"
    );
    sim.quiet(120);
    sim.inject(f.clone());
    let s = sim.cycle();
    assert_eq!(s.attempts.len(), 2, "2 failed repairs so far: tried again");
    sim.quiet(120);
    sim.calls();
    sim.inject(f);
    let s = sim.cycle();
    let d = &s.decisions[0].decision;
    assert_eq!(d.action, Action::Escalate);
    assert_eq!(
        d.reasons[0],
        "block_checksum on wal/7.seg failed 3 repairs (same_problem_failures_max = 3)"
    );
    assert!(s.attempts.is_empty() && sim.calls().is_empty());
}

#[test]
fn ids_and_false_positive_cutoffs_survive_a_restart() {
    let kb = Arc::new(MemoryKnowledgeBase::new());
    let config = EngineConfig {
        anomaly_for_samples: 1,
        ..EngineConfig::default()
    };
    let mut sim = Sim::with_kb(config.clone(), kb.clone());
    warm_up(&mut sim);
    let s = sim.cycle_with(&[("put_latency_p99_us", 9_000.0)]);
    let fp = s.incidents_opened[0];
    sim.engine.mark_false_positive(fp).unwrap();
    let raised = sim.engine.anomaly_cutoff("put_latency_p99_us");
    assert!(raised > EngineConfig::default().anomaly_cutoff);
    let f = sim.block_fault("wal/1.seg");
    sim.inject(f);
    let last = sim.cycle().incidents_opened[0];
    drop(sim);

    let mut sim = Sim::with_kb(config, kb.clone());
    assert_eq!(
        sim.engine.anomaly_cutoff("put_latency_p99_us"),
        raised,
        "restored from the record's resolution"
    );
    let f = sim.block_fault("wal/2.seg");
    sim.inject(f);
    assert_eq!(sim.cycle().incidents_opened, [last + 1]);
    assert_eq!(kb.max_id().unwrap(), last + 1);
}

#[test]
fn failing_and_overrunning_checks_set_health_and_open_incidents() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.cycle();
    assert_eq!(sim.engine.health_state(), HealthState::Healthy);
    sim.world.lock().unwrap().slow_check_us = 200_000;
    // One overrun of a check that completes is noted, not a failure (a busy machine); the second in a row is.
    let s = sim.cycle();
    assert_eq!((s.checks_run, s.checks_failed), (1, 0));
    assert!(s.incidents_opened.is_empty());
    assert_eq!(s.health, HealthState::Healthy);
    let s = sim.cycle();
    assert_eq!((s.checks_run, s.checks_failed), (1, 1));
    assert_eq!(s.health, HealthState::Degraded);
    let rec = sim.engine.incident(s.incidents_opened[0]).unwrap().unwrap();
    assert_eq!(rec.issues[0].code, "check_timeout");
    assert_eq!(
        s.decisions[0].decision.action,
        Action::Watch,
        "a timeout is a hiccup with no strategy"
    );

    sim.world.lock().unwrap().slow_check_us = 0;
    sim.world.lock().unwrap().liveness_fails = true;
    let results = sim.engine.run_tier(Tier::Deep);
    assert_eq!(results.len(), 2, "the shallow and the deep check");
    let liveness = |r: &Vec<heal::check::CheckResult>| {
        r.iter()
            .find(|r| r.name == "liveness")
            .cloned()
            .expect("liveness ran")
    };
    assert!(!liveness(&results).passed);
    assert_eq!(
        liveness(&sim.engine.last_check_results()).message,
        "not answering"
    );
    let s = sim.cycle();
    assert!(
        s.issues >= 1,
        "issues of the on-demand run are handled in the next cycle"
    );
    let active = sim.engine.active_incidents();
    assert!(
        active
            .iter()
            .any(|i| i.record.issues.iter().any(|x| x.code == "check_failed"))
    );
    // A failed check with no strategy is an obstacle nobody can fix: escalated.
    assert_eq!(sim.engine.escalation_level(), EscalationLevel::Escalate);
}

#[test]
fn past_outcomes_in_the_knowledge_base_steer_the_choice() {
    let kb = Arc::new(MemoryKnowledgeBase::new());
    // The in-place retry has a bad record on damaged blocks: 1 success in 21 → posterior 2/23 ≈ 0.087, below the
    // 0.1 floor, so parity goes first although it is deeper. On another code its record does not count.
    kb.record_outcome("retry_block", "block_checksum", true)
        .unwrap();
    for _ in 0..20 {
        kb.record_outcome("retry_block", "block_checksum", false)
            .unwrap();
    }
    let mut sim = Sim::with_kb(EngineConfig::default(), kb.clone());
    let f = sim.block_fault("wal/1.seg");
    sim.inject(f);
    let s = sim.cycle();
    let d = &s.decisions[0].decision;
    assert_eq!(d.cascade, ["rebuild_from_parity"]);
    assert!(
        d.reasons
            .iter()
            .any(|r| r == "retry_block: success rate 0.09 below success_rate_min 0.10"),
        "{:?}",
        d.reasons
    );
    assert!((d.confidence - 0.5).abs() < 1e-12);
    // The outcome is learnt: parity now has one success on this code.
    let stats = kb
        .strategy_stats("rebuild_from_parity", "block_checksum")
        .unwrap();
    assert_eq!((stats.successes, stats.failures), (1, 0));
    let f = sim.block_fault("wal/2.seg");
    sim.inject(f);
    let s = sim.cycle();
    assert!((s.decisions[0].decision.confidence - 2.0 / 3.0).abs() < 1e-12);
}

#[test]
fn a_crisis_no_strategy_repairs_stops_writes_until_it_closes() {
    let mut sim = Sim::new(EngineConfig {
        quiet_period_us: 60 * US_PER_S,
        ..EngineConfig::default()
    });
    warm_up(&mut sim);
    sim.calls();
    sim.set_mode("retry_block", Mode::RepairFails);
    sim.set_mode("rebuild_from_parity", Mode::Unrecoverable);
    // Acknowledged data at risk (both copies of a record damaged): a CRISIS.
    let crisis = sim.block_fault("wal/00000012.seg").data_at_risk();
    sim.inject(crisis.clone());
    let s = sim.cycle();
    let id = s.incidents_opened[0];
    assert_eq!(s.escalations, [id], "{s:#?}");
    assert!(s.stop_writes);
    let stops: Vec<String> = sim
        .calls()
        .into_iter()
        .filter(|c| c.contains("writes"))
        .collect();
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert!(
        stops[0].starts_with(&format!("stop_writes: CRISIS, acknowledged data at risk: incident {id}: block_checksum on wal/00000012.seg")),
        "{stops:?}"
    );
    // Told once, not every cycle.
    let s = sim.cycle();
    assert!(s.stop_writes);
    assert!(!sim.calls().iter().any(|c| c.contains("writes")));
    // An operator restores the file: the issue stops recurring, the incident closes after the quiet period, and
    // writes resume.
    sim.world.lock().unwrap().faults.clear();
    let mut resumed = false;
    for _ in 0..(120 * US_PER_S / CYCLE_US) {
        let s = sim.cycle();
        if sim.calls().iter().any(|c| c == "resume_writes") {
            assert!(!s.stop_writes);
            resumed = true;
            break;
        }
    }
    assert!(resumed, "writes resumed once the crisis closed");
    let rec = sim.engine.incident(id).unwrap().unwrap();
    assert_eq!(
        rec.resolution,
        Resolution::Escalated,
        "a human's to resolve"
    );
    assert!(
        rec.resolved_at.is_some_and(|t| t > rec.detected_at),
        "closed when it went quiet: {rec:?}"
    );

    // A new engine over a subject whose writes an earlier engine held lifts the hold in its first cycle.
    let mut sim = Sim::new(EngineConfig::default());
    sim.world.lock().unwrap().writes_stopped = true;
    sim.cycle();
    assert_eq!(sim.calls(), ["resume_writes"]);

    // In dry run the engine records the crisis but does not stop writes.
    let mut sim = Sim::new(EngineConfig {
        dry_run: true,
        ..EngineConfig::default()
    });
    warm_up(&mut sim);
    sim.calls();
    sim.inject(crisis);
    let s = sim.cycle();
    assert!(s.stop_writes);
    assert!(!sim.calls().iter().any(|c| c.contains("writes")));
}

#[test]
fn a_repair_the_checks_do_not_confirm_is_not_closed_and_is_tried_again() {
    let mut sim = Sim::new(EngineConfig::default());
    warm_up(&mut sim);
    sim.world.lock().unwrap().scrub_reports = true;
    sim.set_mode("retry_block", Mode::Lies);
    let mut f = sim.block_fault("wal/00000021.seg");
    f.source = "scrub".into();
    sim.inject(f);
    let s = sim.cycle();
    let id = s.incidents_opened[0];
    assert_eq!(s.attempts.len(), 1, "{s:#?}");
    assert!(s.incidents_closed.is_empty(), "{s:#?}");
    assert!(
        s.errors.iter().any(|e| e
            == &format!("incident {id}: retry_block reported success but check scrub still finds block_checksum on wal/00000021.seg")),
        "{:?}",
        s.errors
    );
    assert_eq!(sim.engine.metrics().repairs_unverified, 1);
    // The attempt is recorded as failed, with the re-check's finding, never as a success.
    let a = &s.attempts[0].attempt;
    assert_eq!(a.outcome, heal::learn::AttemptOutcome::Failed, "{a:?}");
    assert!(
        a.notes
            .iter()
            .any(|n| n.contains("re-check") && n.contains("still finds block_checksum")),
        "{a:?}"
    );
    assert_eq!(sim.engine.metrics().repairs_succeeded, 0);
    assert_eq!(
        sim.engine.health_state(),
        HealthState::Unhealthy,
        "the re-check's failure counts"
    );
    // What is learned is the verified outcome, not the strategy's word: a failure of retry_block, which now rests
    // (cooldown) and ranks lower.
    let stats = sim
        .kb
        .strategy_stats("retry_block", "block_checksum")
        .unwrap();
    assert_eq!((stats.successes, stats.failures), (0, 1));
    // The next cycle decides again and the next strategy repairs it; the re-check confirms it.
    let s = sim.cycle();
    assert_eq!(
        s.incidents_closed,
        [(id, Resolution::AutoRepaired)],
        "{s:#?}"
    );
    assert_eq!(sim.engine.health_state(), HealthState::Healthy);
    let rec = sim.engine.incident(id).unwrap().unwrap();
    assert!(
        rec.decision.contains("repaired by rebuild_from_parity"),
        "{}",
        rec.decision
    );
    let stats = sim
        .kb
        .strategy_stats("rebuild_from_parity", "block_checksum")
        .unwrap();
    assert_eq!((stats.successes, stats.failures), (1, 0));
}

#[test]
fn a_hiccup_is_retried_at_once_and_raises_nothing_when_the_retry_passes() {
    let mut sim = Sim::new(EngineConfig::default());
    // Every overrun fails its check here (by default only the second in a row does), so the retry is exercised.
    sim.engine
        .set_check_timeouts(heal::schedule::CheckTimeouts {
            overruns_before_issue: 1,
            ..heal::schedule::CheckTimeouts::default()
        });
    warm_up(&mut sim);
    // One overrun: the retry passes, nothing is opened, health stays green.
    sim.world.lock().unwrap().slow_once = true;
    let s = sim.cycle();
    assert!(s.incidents_opened.is_empty(), "{s:#?}");
    assert_eq!(s.checks_failed, 0);
    assert_eq!(sim.engine.health_state(), HealthState::Healthy);
    assert_eq!(
        (
            sim.engine.metrics().hiccups_retried,
            sim.engine.metrics().hiccups_cleared
        ),
        (1, 1)
    );
    // A check that keeps overrunning is retried once per cycle and then reported.
    sim.world.lock().unwrap().slow_check_us = 200_000;
    let s = sim.cycle();
    assert_eq!(s.checks_failed, 1);
    assert_eq!(s.incidents_opened.len(), 1);
    assert_eq!(
        (
            sim.engine.metrics().hiccups_retried,
            sim.engine.metrics().hiccups_cleared
        ),
        (2, 1)
    );
    // A failure that is not a hiccup (the check says the service is down) is not retried.
    sim.world.lock().unwrap().slow_check_us = 0;
    sim.world.lock().unwrap().liveness_fails = true;
    sim.cycle();
    assert_eq!(sim.engine.metrics().hiccups_retried, 2);
}

/// A hold the test switches on and off, remembering what it was asked.
#[derive(Default)]
struct Switch {
    on: Mutex<Option<String>>,
    asked: Mutex<Vec<(u64, String, String, f64)>>,
}

impl RepairHold for Switch {
    fn hold(&self, r: &RepairRequest<'_>) -> Option<String> {
        self.asked.lock().unwrap().push((
            r.incident_id,
            r.issue.code.clone(),
            r.strategy.to_string(),
            r.risk,
        ));
        self.on.lock().unwrap().clone()
    }
}

#[test]
fn a_hold_defers_the_repair_until_it_is_lifted() {
    let mut sim = Sim::new(EngineConfig::default());
    let hold = Arc::new(Switch::default());
    *hold.on.lock().unwrap() = Some("held by silence 7: no automatic repair".into());
    sim.engine.set_repair_holds(vec![hold.clone()]);
    let f = sim.block_fault("wal/00000004.seg");
    sim.inject(f);
    let s = sim.cycle();
    let id = s.incidents_opened[0];
    let d = &s.decisions[0].decision;
    assert_eq!(d.action, Action::Defer, "{d:?}");
    assert_eq!(
        d.reasons.last().map(String::as_str),
        Some("held by silence 7: no automatic repair")
    );
    assert!(sim.calls().is_empty(), "nothing was touched while held");
    assert_eq!(
        sim.engine.active_incidents()[0].status,
        IncidentStatus::Deferred
    );
    assert_eq!(
        hold.asked.lock().unwrap()[0],
        (id, "block_checksum".into(), "retry_block".into(), 0.05)
    );
    // Still held a cycle later: decided again, deferred again.
    let s = sim.cycle();
    assert_eq!(s.decisions[0].decision.action, Action::Defer);
    assert_eq!(sim.engine.metrics().repairs_held, 2);
    assert!(s.incidents_closed.is_empty());

    *hold.on.lock().unwrap() = None;
    let s = sim.cycle();
    assert_eq!(s.incidents_closed, [(id, Resolution::AutoRepaired)]);
    assert_eq!(sim.calls()[1], "retry_block:repair:wal/00000004.seg");
}

#[test]
fn a_problem_repaired_again_and_again_is_escalated_as_recurring_with_its_history() {
    let config = EngineConfig {
        recurring_repairs_max: 3,
        recurring_window_us: 86_400 * US_PER_S,
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(config.clone());
    let mut ids = Vec::new();
    for round in 0..3 {
        let f = sim.block_fault("wal/00000009.seg");
        sim.inject(f);
        let s = sim.cycle();
        let id = s.incidents_opened[0];
        ids.push(id);
        assert_eq!(s.incidents_closed, [(id, Resolution::AutoRepaired)]);
        let recurring: Vec<&Alert> = s.alerts.iter().filter(|a| a.rule == "recurring").collect();
        if round < 2 {
            assert!(recurring.is_empty(), "round {round}: {recurring:?}");
        } else {
            assert_eq!(recurring.len(), 1, "{:?}", s.alerts);
            let a = recurring[0];
            assert_eq!(a.resource, "wal/00000009.seg");
            assert_eq!(a.code, "block_checksum");
            assert_eq!(a.level, EscalationLevel::Escalate);
            assert!(
                a.title.contains("repaired automatically 3 times"),
                "{}",
                a.title
            );
            let record = sim.kb.get(id).unwrap().unwrap();
            assert_eq!(record.resolution, Resolution::AutoRepaired);
            for earlier in &ids {
                assert!(
                    record.decision.contains(&format!("incident {earlier}")),
                    "{}",
                    record.decision
                );
            }
        }
        // An hour between the repairs: the incident closes and the quiet detectors stay quiet.
        sim.quiet(3_600);
    }
    assert_eq!(sim.engine.metrics().recurring_escalations, 1);
    // Another resource repaired once is no recurring problem.
    let f = sim.block_fault("wal/00000010.seg");
    sim.inject(f);
    let s = sim.cycle();
    assert!(
        s.alerts.iter().all(|a| a.rule != "recurring"),
        "{:?}",
        s.alerts
    );

    // After a restart the history comes from the knowledge base: the next repair of the same problem is the
    // next within the window and is escalated as recurring, with its history. Its alert went out before the
    // restart and is still in its cooldown (the window; the alert times are kept in the knowledge base), so it is
    // not sent again, as without the restart.
    sim.quiet(600);
    let mut restarted = restart(&sim, config);
    let f = restarted.block_fault("wal/00000009.seg");
    restarted.inject(f);
    let s = restarted.cycle();
    let id = s.incidents_opened[0];
    assert_eq!(restarted.engine.metrics().recurring_escalations, 1);
    let record = restarted.kb.get(id).unwrap().unwrap();
    assert!(
        record.decision.contains("recurring: ") && record.decision.ends_with("escalated"),
        "{}",
        record.decision
    );
    assert!(
        s.alerts.iter().all(|a| a.rule != "recurring"),
        "{:?}",
        s.alerts
    );
}

/// Restarts the engine on `sim`'s knowledge base at `sim`'s time.
fn restart(sim: &Sim, config: EngineConfig) -> Sim {
    let now = sim.now();
    let restarted = Sim::with_kb(config, sim.kb.clone());
    restarted.clock.advance(now - START);
    restarted
}

#[test]
fn incidents_unresolved_at_a_restart_go_on_under_their_ids() {
    let mut sim = Sim::new(EngineConfig::default());
    // One waits for approval, one is deferred by a hold: both unresolved when the engine stops.
    let manifest = Issue::new(
        IssueKind::Integrity,
        "manifest_damaged",
        "MANIFEST",
        "both copies",
        "open",
        sim.now(),
    );
    sim.inject(manifest.clone());
    let hold = Arc::new(Switch::default());
    *hold.on.lock().unwrap() = Some("held".into());
    sim.engine.set_repair_holds(vec![hold]);
    let f = sim.block_fault("wal/00000011.seg");
    sim.inject(f);
    let s = sim.cycle();
    assert_eq!(s.incidents_opened.len(), 2);
    let waiting = sim
        .engine
        .active_incidents()
        .into_iter()
        .find(|i| i.status == IncidentStatus::AwaitingApproval)
        .unwrap()
        .record
        .id;
    let held = sim
        .engine
        .active_incidents()
        .into_iter()
        .find(|i| i.status == IncidentStatus::Deferred)
        .unwrap()
        .record
        .id;

    // The block was fixed by hand while medic was down; the manifest is still damaged.
    sim.world.lock().unwrap().faults.remove("wal/00000011.seg");
    let mut sim = restart(&sim, EngineConfig::default());
    let active: Vec<(u64, IncidentStatus)> = sim
        .engine
        .active_incidents()
        .into_iter()
        .map(|i| (i.record.id, i.status))
        .collect();
    assert_eq!(
        active,
        [
            (waiting.min(held), IncidentStatus::Watching),
            (waiting.max(held), IncidentStatus::Watching)
        ]
    );
    assert_eq!(sim.engine.metrics().incidents_resumed, 2);
    // The manifest's damage, found again at open, joins its incident, which asks for approval again.
    sim.inject(manifest);
    let s = sim.cycle();
    assert!(s.incidents_opened.is_empty(), "{:?}", s.incidents_opened);
    let pending: Vec<u64> = sim
        .engine
        .active_incidents()
        .into_iter()
        .filter(|i| i.status == IncidentStatus::AwaitingApproval)
        .map(|i| i.record.id)
        .collect();
    assert_eq!(pending, [waiting]);
    // The block's incident, whose problem is gone, closes as self-resolved once quiet.
    let mut closed = Vec::new();
    for _ in 0..(400 * US_PER_S / CYCLE_US) {
        closed.extend(sim.cycle().incidents_closed);
    }
    assert_eq!(closed, [(held, Resolution::SelfResolved)]);
    assert_eq!(
        sim.kb.get(held).unwrap().unwrap().resolution,
        Resolution::SelfResolved
    );
}

#[test]
fn many_resources_failing_at_once_stop_automatic_repair_until_fewer_fail() {
    let config = EngineConfig {
        breakage_resources_min: 3,
        breakage_share_max: 0.5,
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(config);
    // Three damaged files at once: the subject names no other resource, so 3 of 3 fail.
    for n in 1..=3 {
        let f = sim.block_fault(&format!("wal/0000002{n}.seg"));
        sim.inject(f);
    }
    let s = sim.cycle();
    assert_eq!(s.incidents_opened.len(), 3, "{s:#?}");
    assert!(sim.calls().is_empty(), "no repair started");
    for d in &s.decisions {
        assert_eq!(d.decision.action, Action::Defer);
        let why = d.decision.reasons.last().unwrap();
        assert!(
            why.starts_with("breakage cap: 3 of 3 watched resources failing at once"),
            "{why}"
        );
    }
    let breakage: Vec<&Alert> = s.alerts.iter().filter(|a| a.rule == "breakage").collect();
    assert_eq!(breakage.len(), 1, "{:?}", s.alerts);
    assert_eq!(breakage[0].level, EscalationLevel::Escalate);
    // Still held next cycle, and not alerted again within the cooldown.
    let s = sim.cycle();
    assert!(s.alerts.iter().all(|a| a.rule != "breakage"));
    assert!(sim.calls().is_empty());
    // An operator fixes one by hand; its incident is resolved: two fail, below the minimum, and both are repaired.
    let first = sim.engine.active_incidents()[0].record.id;
    sim.world.lock().unwrap().faults.remove("wal/00000021.seg");
    sim.engine
        .resolve(first, "alice", "replaced by hand")
        .unwrap();
    let s = sim.cycle();
    assert_eq!(s.incidents_closed.len(), 2, "{s:#?}");
    assert!(
        s.incidents_closed
            .iter()
            .all(|(_, r)| *r == Resolution::AutoRepaired)
    );
    assert_eq!(sim.engine.metrics().breakage_holds, 2);
}

#[test]
fn engine_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Engine>();
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Block(u8, Mode, Mode),
        Spike(bool),
        Frag,
        Manifest,
        Approve,
        FalsePositive,
        Quiet(u16),
        DryRun(bool),
    }

    fn mode() -> impl Strategy<Value = Mode> {
        prop_oneof![
            Just(Mode::Works),
            Just(Mode::ValidateFails),
            Just(Mode::RepairFails),
            Just(Mode::Unrecoverable)
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..4, mode(), mode()).prop_map(|(r, a, b)| Step::Block(r, a, b)),
            2 => any::<bool>().prop_map(Step::Spike),
            1 => Just(Step::Frag),
            1 => Just(Step::Manifest),
            1 => Just(Step::Approve),
            1 => Just(Step::FalsePositive),
            3 => (1u16..400).prop_map(Step::Quiet),
            1 => any::<bool>().prop_map(Step::DryRun),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Whatever happens, in any order: ids only grow, the active set stays bounded, every incident reaches the
        /// knowledge base, closed incidents are really closed there, attempts add up in the counters, and an
        /// escalated record carries its report.
        #[test]
        fn engine_invariants_hold_under_random_faults(steps in proptest::collection::vec(step(), 1..40)) {
            let mut sim = Sim::new(EngineConfig { incidents_active_max: 8, ..EngineConfig::default() });
            let mut last_id = 0;
            let mut attempts = 0u64;
            for step in steps {
                let mut overrides = Vec::new();
                match step {
                    Step::Block(r, a, b) => {
                        sim.set_mode("retry_block", a);
                        sim.set_mode("rebuild_from_parity", b);
                        let f = sim.block_fault(&format!("wal/{r}.seg"));
                        sim.inject(f);
                    }
                    Step::Spike(search) => overrides.push((
                        if search { "search_latency_p99_us" } else { "put_latency_p99_us" },
                        50_000.0,
                    )),
                    Step::Frag => sim.inject(Issue::new(
                        IssueKind::StaleDerived, "index_fragmentation", "text_index", "fragmented", "t", sim.now(),
                    )),
                    Step::Manifest => sim.inject(Issue::new(
                        IssueKind::Integrity, "manifest_damaged", "MANIFEST", "damaged", "t", sim.now(),
                    )),
                    Step::Approve => {
                        let waiting: Vec<u64> = sim.engine.active_incidents().iter()
                            .filter(|i| i.status == IncidentStatus::AwaitingApproval)
                            .map(|i| i.record.id).collect();
                        for id in waiting {
                            sim.engine.approve(id).unwrap();
                        }
                    }
                    Step::FalsePositive => {
                        if let Some(i) = sim.engine.active_incidents().first() {
                            sim.engine.mark_false_positive(i.record.id).unwrap();
                        }
                    }
                    Step::Quiet(seconds) => {
                        for _ in 0..(u64::from(seconds) * US_PER_S / CYCLE_US) {
                            let s = sim.cycle();
                            attempts += s.attempts.iter().filter(|a| a.attempt.outcome != AttemptOutcome::DryRun).count() as u64;
                        }
                    }
                    Step::DryRun(on) => sim.engine.set_dry_run(on),
                }
                let s = sim.cycle_with(&overrides);
                attempts += s.attempts.iter().filter(|a| a.attempt.outcome != AttemptOutcome::DryRun).count() as u64;
                for &id in &s.incidents_opened {
                    prop_assert!(id > last_id, "ids grow: {id} after {last_id}");
                    last_id = id;
                }
                prop_assert!(sim.engine.active_incidents().len() <= 8);
                for &(id, resolution) in &s.incidents_closed {
                    let rec = sim.kb.get(id).unwrap().expect("closed incident saved");
                    prop_assert_eq!(rec.resolution, resolution);
                    prop_assert!(resolution != Resolution::Open);
                }
                for inc in sim.engine.active_incidents() {
                    prop_assert!(sim.kb.get(inc.record.id).unwrap().is_some(), "open incident saved");
                }
            }
            let m = sim.engine.metrics();
            prop_assert_eq!(m.repairs_succeeded + m.repairs_failed + m.repairs_rolled_back, attempts);
            prop_assert_eq!(sim.kb.max_id().unwrap(), last_id);
            for rec in sim.kb.recent(1_000).unwrap() {
                if rec.resolution == Resolution::Escalated {
                    prop_assert!(rec.report_markdown.as_deref().is_some_and(|m| m.contains("## Repairs tried")));
                }
                if rec.resolution == Resolution::AutoRepaired {
                    prop_assert_eq!(rec.attempts.last().map(|a| a.outcome), Some(AttemptOutcome::Succeeded));
                }
            }
        }
    }
}

/// A second problem on a resource whose incident is escalated (no strategy for its first problem): the second
/// problem has a strategy of its own, so it opens its own incident and is repaired instead of joining one that
/// would never run that repair; a third issue of the first problem still joins the first incident.
#[test]
fn a_second_problem_with_a_repair_of_its_own_is_not_held_by_an_escalated_incident() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.cycle();
    let unknown = |at| {
        Issue::new(
            IssueKind::Integrity,
            "mystery_damage",
            "text_index",
            "no strategy claims this",
            "read_path",
            at,
        )
    };
    sim.world.lock().unwrap().pending.push(unknown(sim.now()));
    let s = sim.cycle();
    let first = s.incidents_opened[0];
    let rec = sim.engine.incident(first).unwrap().unwrap();
    assert_eq!(rec.resolution, Resolution::Escalated, "{}", rec.decision);
    sim.engine.acknowledge(first, "alice").unwrap();

    let frag = Issue::new(
        IssueKind::StaleDerived,
        "index_fragmentation",
        "text_index",
        "text index 62% fragmented",
        "index_stats",
        sim.now(),
    );
    sim.world.lock().unwrap().pending.push(frag);
    sim.world.lock().unwrap().pending.push(unknown(sim.now()));
    let s = sim.cycle();
    assert_eq!(s.incidents_opened.len(), 1, "{s:#?}");
    let second = s.incidents_opened[0];
    assert_ne!(second, first);
    let calls = sim.world.lock().unwrap().calls.clone();
    assert!(
        calls.contains(&"compact_index:repair:text_index".to_string()),
        "the second problem's strategy ran: {calls:?}"
    );
    let active = sim.engine.active_incidents();
    let held = active
        .iter()
        .find(|i| i.record.id == first)
        .expect("the first incident is still open");
    assert!(
        held.record
            .issues
            .iter()
            .all(|i| i.code == "mystery_damage"),
        "the first incident holds its own problem only: {:?}",
        held.record.issues
    );
    assert_eq!(
        held.record.issues.len(),
        2,
        "the first problem found again joined it"
    );
}
