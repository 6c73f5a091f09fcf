//! The healing loop. [`Engine::run_cycle`] runs the due health checks, samples metrics into one detector per metric
//! (created lazily) by their [`MetricKind`] — a gauge as it is, a counter through its rate per second (a decrease is a
//! restart, not an anomaly; a rate is judged only on `rate_events_min` events of evidence), a state or a size never
//! (rules and trend rules judge those); a gauge's first step out of a flat run is not judged, nor a latency below
//! `latency_floor_us`; a series raises an anomaly only after `anomaly_for_samples` judged scores in a row at or
//! above the cut-off —, evaluates
//! constraints and trend rules, drains the subject's own issues, correlates everything into incidents,
//! diagnoses and prioritises them, decides behind the safety gates, runs the recovery cascade (backup → repair →
//! validate → roll back), escalates what it cannot fix with a report, records every incident in the
//! [`KnowledgeBase`], notifies, and returns a serde [`CycleSummary`]. The engine is a synchronous state machine: no
//! files, sockets, threads or sleeps; time only through the [`Clock`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cascade::run_cascade_within;
use crate::check::{CheckResult, HealthCheck, HealthState, Tier};
use crate::clock::{Clock, Timestamp};
use crate::config::EngineConfig;
use crate::decide::{Action, CircuitBreaker, DecideInput, Gates, RepairDecision, decide};
use crate::detect::{Composite, Detector, by_name};
use crate::diagnose::{classify, correlates, diagnose};
use crate::escalate::{
    Alert, AlertManager, EscalationLevel, EscalationReport, Escalator, Notifier,
};
use crate::issue::{CrisisLevel, Issue, IssueKind, Severity};
use crate::kpi::Kpis;
use crate::learn::{
    AttemptOutcome, AttemptRecord, IncidentRecord, KbError, KnowledgeBase, Resolution,
};
use crate::repair::{DataLoss, RepairStrategy};
use crate::schedule::Scheduler;
use crate::subject::{MetricKind, Sample, Subject, rate_name};
use crate::trend::TrendTracker;

mod act;
mod breakage;
mod cycle;
mod escalation;
mod hold;
mod operator;
mod recurring;
mod resume;
pub use hold::{RepairHold, RepairRequest};
pub use operator::{FollowUp, PendingApproval, SavedFollowUp, human_duration};
pub use recurring::RecurringRepairs;

/// Longest issue summary, resource, code or evidence value kept, in bytes; longer text is cut at a character
/// boundary and marked as cut.
pub const ISSUE_TEXT_BYTES_MAX: usize = 4_096;
/// Most evidence entries kept per issue; further ones are dropped and counted in one last entry.
pub const ISSUE_EVIDENCE_MAX: usize = 32;

fn cut(text: &mut String) -> bool {
    if text.len() <= ISSUE_TEXT_BYTES_MAX {
        return false;
    }
    let mut at = ISSUE_TEXT_BYTES_MAX;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text.truncate(at);
    text.push_str(" … (cut at issue_text_bytes_max = 4096)");
    true
}

/// Bounds the text an issue carries (it may come from anywhere); returns whether anything was cut.
pub fn bound_issue(issue: &mut Issue) -> bool {
    let mut any = cut(&mut issue.summary)
        | cut(&mut issue.resource)
        | cut(&mut issue.code)
        | cut(&mut issue.source);
    if issue.evidence.len() > ISSUE_EVIDENCE_MAX {
        let dropped = issue.evidence.len() - (ISSUE_EVIDENCE_MAX - 1);
        issue.evidence.truncate(ISSUE_EVIDENCE_MAX - 1);
        issue.evidence.push((
            "evidence_dropped".to_string(),
            format!("{dropped} entries (issue_evidence_max = {ISSUE_EVIDENCE_MAX})"),
        ));
        any = true;
    }
    for (k, v) in &mut issue.evidence {
        any |= cut(k) | cut(v);
    }
    any
}

/// Makes the detector for one metric (given its name).
pub type DetectorFactory = Arc<dyn Fn(&str) -> Box<dyn Detector> + Send + Sync>;

/// Why an engine call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The configuration is out of bounds.
    #[error("engine configuration: {0}")]
    Config(String),
    /// The knowledge base failed.
    #[error(transparent)]
    Kb(#[from] KbError),
    /// No incident has this id.
    #[error("no incident with id {0}")]
    UnknownIncident(u64),
    /// The incident is closed, and what was asked needs an open one.
    #[error("incident {id} is closed ({resolution:?}): {why}")]
    Closed {
        /// The incident.
        id: u64,
        /// How it ended.
        resolution: Resolution,
        /// What was expected.
        why: String,
    },
    /// The incident is not waiting for what was asked (e.g. approval).
    #[error("incident {id} is {status:?}: {why}")]
    WrongState {
        /// The incident.
        id: u64,
        /// Its status.
        status: IncidentStatus,
        /// What was expected.
        why: String,
    },
}

/// Where an open incident stands in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// New or changed: decided this cycle.
    Open,
    /// Transient with nothing to do: closes as self-resolved after a quiet period.
    Watching,
    /// A temporary gate blocked it: decided again next cycle.
    Deferred,
    /// A repair needs an operator's approval (`medic approve ID`, [`Engine::approve`]).
    AwaitingApproval,
    /// Decided in dry-run mode; nothing was changed.
    DryRun,
    /// Handed to a human; leaves the active set after a quiet period.
    Escalated,
}

/// An open incident: its record plus what the engine needs to handle it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Incident {
    /// The record saved to the knowledge base.
    pub record: IncidentRecord,
    /// Where it stands.
    pub status: IncidentStatus,
    /// Handling order, higher first.
    pub priority: f64,
    /// Index in `record.issues` of the root-cause issue.
    pub root_issue: usize,
    /// The evidence for the diagnosis.
    pub evidence: Vec<String>,
    /// When its latest issue was seen.
    pub last_issue_at: Timestamp,
    /// The latest decision.
    pub last_decision: Option<RepairDecision>,
    /// Whether an operator approved risky repairs.
    pub approved: bool,
    /// Issues not kept because of `issues_per_incident_max`.
    pub issues_dropped: u64,
    /// Who acknowledged it and when (`medic ack ID`): an acknowledged incident is not notified again.
    #[serde(default)]
    pub acknowledged: Option<(String, Timestamp)>,
    /// Since when it waits for an operator's approval; past `approval_expiry_us` it escalates.
    #[serde(default)]
    pub awaiting_since: Option<Timestamp>,
    /// An operator denied its risky repair (`medic deny ID`): it is not repaired automatically.
    #[serde(default)]
    pub denied: bool,
    /// Taken back from the knowledge base at start (unresolved when the engine last stopped).
    #[serde(default)]
    pub resumed: bool,
    #[serde(skip)]
    dirty: bool,
    /// When an escalated incident's checks were last re-run (`escalated_recheck_us`).
    #[serde(skip)]
    rechecked_at: Timestamp,
}

impl Incident {
    /// `record` taken into the active set with `status`, its latest issue at `last_issue_at`, last re-checked at
    /// `rechecked_at`; decided in the next cycle (`dirty`), nothing approved, acknowledged or denied yet.
    fn taken_in(
        record: IncidentRecord,
        status: IncidentStatus,
        last_issue_at: Timestamp,
        rechecked_at: Timestamp,
    ) -> Incident {
        Incident {
            record,
            status,
            priority: 0.0,
            root_issue: 0,
            evidence: Vec::new(),
            last_issue_at,
            last_decision: None,
            approved: false,
            issues_dropped: 0,
            acknowledged: None,
            awaiting_since: None,
            denied: false,
            resumed: false,
            dirty: true,
            rechecked_at,
        }
    }
}

/// Counters of what the engine did since it started, exportable as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealingMetrics {
    /// Cycles run.
    pub cycles: u64,
    /// Health checks run.
    pub checks_run: u64,
    /// Health checks failed (including overruns).
    pub checks_failed: u64,
    /// Issues taken in.
    pub issues: u64,
    /// Issues dropped by a limit (`cycle_issues_max`, `incidents_active_max`, `issues_per_incident_max`).
    pub issues_dropped: u64,
    /// Anomalies detected on metrics.
    pub anomalies: u64,
    /// Scores at or above the cut-off that were not judged: a counter's rate on fewer than `rate_events_min`
    /// events of evidence, or a gauge's first step out of a flat run.
    pub anomalies_gated: u64,
    /// Scores at or above the cut-off not (yet) raised: fewer than `anomaly_for_samples` in a row.
    pub anomalies_pending: u64,
    /// Anomalies of a metric an operator marked a false positive, inside its silence.
    pub anomalies_silenced: u64,
    /// Counter readings below the previous one (the counting process restarted): the rate starts over.
    pub counter_resets: u64,
    /// Trend rules found breached (one per rule and cycle).
    pub trend_breaches: u64,
    /// Incidents opened.
    pub incidents: u64,
    /// Cascades started.
    pub repairs_initiated: u64,
    /// Attempts that repaired and validated.
    pub repairs_succeeded: u64,
    /// Attempts whose repair step failed.
    pub repairs_failed: u64,
    /// Attempts rolled back after failed validation.
    pub repairs_rolled_back: u64,
    /// Repairs whose strategy reported success but whose incident's checks, run again, still found the problem.
    pub repairs_unverified: u64,
    /// Failed checks retried at once because every issue they raised was a hiccup.
    pub hiccups_retried: u64,
    /// Of those, the retries that passed (nothing raised).
    pub hiccups_cleared: u64,
    /// Incidents escalated to a human.
    pub escalations: u64,
    /// Approvals that expired unanswered (`approval_expiry_us`) and escalated.
    #[serde(default)]
    pub approvals_expired: u64,
    /// Repair steps failed for overrunning `repair_timeout_us`.
    #[serde(default)]
    pub repairs_timed_out: u64,
    /// Cycles in which the breakage cap held every repair.
    #[serde(default)]
    pub breakage_holds: u64,
    /// Unresolved incidents taken back into the active set at start.
    #[serde(default)]
    pub incidents_resumed: u64,
    /// Automatic repairs a hold made wait (a silence without repair, a maintenance window), counted per cycle.
    #[serde(default)]
    pub repairs_held: u64,
    /// Problems escalated as recurring: repaired `recurring_repairs_max` times within `recurring_window_us`.
    #[serde(default)]
    pub recurring_escalations: u64,
    /// Notifications repeated for escalated incidents nobody acknowledged (`renotify_interval_us`).
    #[serde(default)]
    pub renotifications: u64,
    /// Alerts delivered to the notifiers.
    pub alerts_sent: u64,
    /// Alerts suppressed by dedup or cooldown.
    pub alerts_suppressed: u64,
    /// Notifier calls that failed.
    pub notify_failures: u64,
    /// Knowledge-base calls that failed.
    pub kb_errors: u64,
    /// Time spent in repair attempts, µs.
    pub repair_time_us_total: u64,
}

impl HealingMetrics {
    /// The counters as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"error\":\"metrics not serialisable: {e}\"}}"))
    }
}

/// One decision in a cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEntry {
    /// The incident.
    pub incident_id: u64,
    /// The decision.
    pub decision: RepairDecision,
}

/// One repair attempt in a cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptEntry {
    /// The incident.
    pub incident_id: u64,
    /// The attempt.
    pub attempt: AttemptRecord,
}

/// What one cycle did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleSummary {
    /// When the cycle started.
    pub at: Timestamp,
    /// Health after the cycle.
    pub health: HealthState,
    /// Escalation level after the cycle.
    pub escalation_level: EscalationLevel,
    /// Whether the engine is in dry-run mode.
    pub dry_run: bool,
    /// Whether an open incident is a CRISIS: writes stop (through `Subject::stop_writes`, except in dry run) and the
    /// state is preserved until no such incident is open.
    pub stop_writes: bool,
    /// Checks run.
    pub checks_run: u32,
    /// Checks failed.
    pub checks_failed: u32,
    /// Metric samples taken.
    pub samples: u32,
    /// Anomaly issues raised by detectors.
    pub anomalies: u32,
    /// Issues taken in (checks, detectors, constraints, subject).
    pub issues: u32,
    /// Incidents opened.
    pub incidents_opened: Vec<u64>,
    /// Incidents closed, with how.
    pub incidents_closed: Vec<(u64, Resolution)>,
    /// Decisions made.
    pub decisions: Vec<DecisionEntry>,
    /// Repair attempts made (dry-run attempts included).
    pub attempts: Vec<AttemptEntry>,
    /// Incidents escalated.
    pub escalations: Vec<u64>,
    /// Alerts delivered.
    pub alerts: Vec<Alert>,
    /// Errors met (knowledge base, notifiers); the cycle carried on.
    pub errors: Vec<String>,
}

impl CycleSummary {
    /// A cycle starting at `at`, nothing done yet.
    fn starting(at: Timestamp, escalation_level: EscalationLevel, dry_run: bool) -> CycleSummary {
        CycleSummary {
            at,
            health: HealthState::Healthy,
            escalation_level,
            dry_run,
            stop_writes: false,
            checks_run: 0,
            checks_failed: 0,
            samples: 0,
            anomalies: 0,
            issues: 0,
            incidents_opened: Vec::new(),
            incidents_closed: Vec::new(),
            decisions: Vec::new(),
            attempts: Vec::new(),
            escalations: Vec::new(),
            alerts: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// The healing engine for one subject.
pub struct Engine {
    subject: Arc<dyn Subject>,
    kb: Arc<dyn KnowledgeBase>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    factory: DetectorFactory,
    detectors: BTreeMap<String, Watched>,
    /// Per sampled metric: what judging its next sample needs (bounded by `metrics_max`).
    series: BTreeMap<String, Series>,
    trends: Vec<TrendTracker>,
    /// Metric → the end of the silence a false positive put on its anomalies.
    silenced: BTreeMap<String, Timestamp>,
    /// The samples of the latest cycle, with the rates derived from counters.
    last_samples: Vec<Sample>,
    cutoffs: HashMap<String, f64>,
    scheduler: Scheduler,
    gates: Gates,
    alerts: AlertManager,
    escalator: Escalator,
    /// The CRISIS incidents the subject was last told to stop writes for (empty: told writes may go on; `None`:
    /// told nothing yet, so the first cycle lifts a hold an earlier engine may have left).
    writes_stopped_for: Option<Vec<u64>>,
    notifiers: Vec<Box<dyn Notifier>>,
    /// Asked before every automatic repair ([`RepairHold`]).
    holds: Vec<Arc<dyn RepairHold>>,
    /// This cycle's breakage cap, when it holds every repair.
    breakage_hold: Option<String>,
    /// Successful automatic repairs per problem, for recurring-problem escalation.
    recurring: RecurringRepairs,
    active: BTreeMap<u64, Incident>,
    next_id: u64,
    metrics: HealingMetrics,
    recent_anomalies: VecDeque<String>,
    pending_issues: Vec<Issue>,
    in_flight: RepairsInFlight,
    /// Incidents whose escalation reached the notifiers: repeated until acknowledged, "resolved" when they close.
    followups: BTreeMap<u64, FollowUp>,
    /// The follow-ups as last saved to the knowledge base (written again only when they change).
    followups_saved: Vec<SavedFollowUp>,
    /// The alert times as last saved to the knowledge base.
    alert_times_saved: Vec<(String, Timestamp)>,
}

/// One detected series: its detector and the value it saw last.
struct Watched {
    detector: Box<dyn Detector>,
    previous: Option<f64>,
    /// Judged samples in a row that scored at or above the cut-off or kept the excursion that first did.
    streak: u32,
    /// The excursion being watched: the value before it and its first value.
    excursion: Option<(f64, f64)>,
    /// The highest score within the excursion: the one that raised it, when later samples only kept it (a
    /// detector used to the new level scores them low).
    peak: f64,
}

/// Whether `value` keeps the excursion from `before` to `first`: on the same side, at least half as far.
fn holds(before: f64, first: f64, value: f64) -> bool {
    let step = first - before;
    let now = value - before;
    step != 0.0 && now.signum() == step.signum() && now.abs() >= step.abs() / 2.0
}

/// What the engine remembers of one sampled metric between cycles.
#[derive(Debug, Clone, Default)]
struct Series {
    /// Counters: the previous reading.
    last: Option<(Timestamp, f64)>,
    /// Counters: the rate's baseline per second (an exponentially weighted mean of the rates seen).
    rate_baseline: Option<f64>,
    /// Gauges: the value of the current run of equal values, and the run's length.
    run_value: f64,
    run_len: u32,
}

/// Weight of the newest rate in a counter's rate baseline.
const RATE_BASELINE_WEIGHT: f64 = 0.1;

/// The end of each silence a false positive put on a metric, µs since the epoch.
pub type Silences = Vec<(String, Timestamp)>;

/// The repairs running now, readable from another thread while a cycle holds the engine (a status page must answer
/// during a long repair, not wait for it). Cloning shares the same counter.
#[derive(Debug, Clone, Default)]
pub struct RepairsInFlight(Arc<std::sync::Mutex<Vec<RepairInFlight>>>);

/// One repair running now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepairInFlight {
    /// The incident it repairs.
    pub incident_id: u64,
    /// The resource it holds.
    pub resource: String,
    /// The strategies it will try, in order.
    pub cascade: Vec<String>,
    /// When it started.
    pub started_at: Timestamp,
}

impl RepairsInFlight {
    /// The repairs running now.
    pub fn list(&self) -> Vec<RepairInFlight> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many repairs are running now.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn start(&self, r: RepairInFlight) -> InFlightGuard {
        let id = r.incident_id;
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        InFlightGuard {
            set: self.clone(),
            id,
        }
    }
}

/// Removes its repair from the set when dropped, even if the repair panicked.
struct InFlightGuard {
    set: RepairsInFlight,
    id: u64,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut v = self.set.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = v.iter().position(|r| r.incident_id == self.id) {
            v.remove(i);
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("subject", &self.subject.name())
            .field("active", &self.active.len())
            .field("next_id", &self.next_id)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

/// The detector factory for a configuration: `config.detector` by name, the composite with `config.composite`.
pub fn default_detector_factory(config: &EngineConfig) -> DetectorFactory {
    let name = config.detector.clone();
    let composite = config.composite.clone();
    Arc::new(move |_metric: &str| -> Box<dyn Detector> {
        if name == "composite" {
            return Box::new(Composite::new(composite.clone()));
        }
        by_name(&name).unwrap_or_else(|| Box::new(Composite::new(composite.clone())))
    })
}

/// Whether `metric` is a latency in µs (`put_latency_p99_us`, `wal_sync_latency_max_us`).
fn is_latency(metric: &str) -> bool {
    metric.contains("latency") && metric.ends_with("_us")
}

fn anomaly_code(metric: &str) -> &'static str {
    if metric.contains("latency") {
        "latency_anomaly"
    } else {
        "metric_anomaly"
    }
}

impl Engine {
    /// An engine for `subject`. Validates `config`, continues incident ids after `kb.max_id()`, and re-applies the
    /// cut-off raises of false positives recorded in the knowledge base.
    pub fn new(
        subject: Arc<dyn Subject>,
        kb: Arc<dyn KnowledgeBase>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        config.validate().map_err(EngineError::Config)?;
        let next_id = kb.max_id()?.saturating_add(1);
        let factory = default_detector_factory(&config);
        let mut engine = Self {
            subject,
            kb,
            clock,
            config,
            factory,
            detectors: BTreeMap::new(),
            series: BTreeMap::new(),
            trends: Vec::new(),
            silenced: BTreeMap::new(),
            last_samples: Vec::new(),
            cutoffs: HashMap::new(),
            scheduler: Scheduler::new(),
            gates: Gates::new(),
            alerts: AlertManager::default(),
            escalator: Escalator::default(),
            writes_stopped_for: None,
            notifiers: Vec::new(),
            holds: Vec::new(),
            breakage_hold: None,
            recurring: RecurringRepairs::default(),
            active: BTreeMap::new(),
            next_id,
            metrics: HealingMetrics::default(),
            recent_anomalies: VecDeque::new(),
            pending_issues: Vec::new(),
            in_flight: RepairsInFlight::default(),
            followups: BTreeMap::new(),
            followups_saved: Vec::new(),
            alert_times_saved: Vec::new(),
        };
        engine.trends = engine
            .config
            .trends
            .iter()
            .cloned()
            .map(TrendTracker::new)
            .collect();
        let mut records = engine.kb.recent(engine.config.kb_records_max)?;
        records.reverse();
        for r in records
            .iter()
            .filter(|r| r.resolution == Resolution::FalsePositive)
        {
            engine.raise_cutoffs(r);
            engine.silence(r);
        }
        engine.seed_recurring(&records);
        engine.resume_unresolved(&records);
        engine.resume_followups()?;
        engine.resume_alert_times()?;
        Ok(engine)
    }

    /// Replaces the detector factory (used for metrics that have no detector yet).
    pub fn set_detector_factory(&mut self, factory: DetectorFactory) {
        self.factory = factory;
    }

    /// Switches dry-run mode. Leaving it reopens incidents decided in dry run so they are decided for real.
    pub fn set_dry_run(&mut self, dry_run: bool) {
        self.config.dry_run = dry_run;
        if !dry_run {
            for inc in self
                .active
                .values_mut()
                .filter(|i| i.status == IncidentStatus::DryRun)
            {
                inc.status = IncidentStatus::Open;
                inc.dirty = true;
            }
        }
    }

    /// Adds a notifier; every alert goes to every notifier.
    pub fn add_notifier(&mut self, notifier: Box<dyn Notifier>) {
        self.notifiers.push(notifier);
    }

    /// Replaces every notifier (the program's configuration was reloaded); later alerts go to these only.
    pub fn set_notifiers(&mut self, notifiers: Vec<Box<dyn Notifier>>) {
        self.notifiers = notifiers;
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The health state from the latest check results.
    pub fn health_state(&self) -> HealthState {
        self.scheduler.health()
    }

    /// The latest result of every check.
    pub fn last_check_results(&self) -> Vec<CheckResult> {
        self.scheduler.latest()
    }

    /// Runs every check of `tier` and the cheaper tiers now; the issues found are handled in the next cycle.
    pub fn run_tier(&mut self, tier: Tier) -> Vec<CheckResult> {
        let results = self
            .scheduler
            .run_tier(&self.subject.checks(), tier, self.clock.as_ref());
        self.count_checks(&results);
        for r in &results {
            for issue in &r.issues {
                if self.pending_issues.len() < self.config.cycle_issues_max {
                    self.pending_issues.push(issue.clone());
                } else {
                    self.metrics.issues_dropped += 1;
                }
            }
        }
        results
    }

    /// Open incidents, highest priority first.
    pub fn active_incidents(&self) -> Vec<Incident> {
        let mut v: Vec<Incident> = self.active.values().cloned().collect();
        v.sort_by(|a, b| {
            b.priority
                .total_cmp(&a.priority)
                .then(a.record.id.cmp(&b.record.id))
        });
        v
    }

    /// One incident: the open one, or else the knowledge base's record.
    pub fn incident(&self, id: u64) -> Result<Option<IncidentRecord>, EngineError> {
        if let Some(inc) = self.active.get(&id) {
            return Ok(Some(inc.record.clone()));
        }
        Ok(self.kb.get(id)?)
    }

    /// KPIs over the newest `kb_records_max` records.
    pub fn kpis(&self) -> Result<Kpis, EngineError> {
        Ok(Kpis::from_records(
            &self.kb.recent(self.config.kb_records_max)?,
        ))
    }

    /// The counters.
    pub fn metrics(&self) -> &HealingMetrics {
        &self.metrics
    }

    /// A handle on the repairs running now, to read from another thread while a cycle runs.
    pub fn repairs_in_flight(&self) -> RepairsInFlight {
        self.in_flight.clone()
    }

    /// The escalation level.
    pub fn escalation_level(&self) -> EscalationLevel {
        self.escalator.level()
    }

    /// Every circuit breaker that has seen a failure.
    pub fn breakers(&self) -> Vec<(String, CircuitBreaker)> {
        self.gates.breakers()
    }

    /// Closes a strategy's circuit breaker (an operator fixed the cause).
    pub fn reset_breaker(&mut self, strategy: &str) {
        self.gates.reset_breaker(strategy);
    }

    /// The anomaly cut-off in force for `metric` (raised by false positives).
    pub fn anomaly_cutoff(&self, metric: &str) -> f64 {
        self.cutoffs
            .get(metric)
            .copied()
            .unwrap_or(self.config.anomaly_cutoff)
    }

    /// The samples of the latest cycle as the subject gave them, each counter followed by the rate derived from it
    /// (a gauge named `<name>_per_s`).
    pub fn last_samples(&self) -> &[Sample] {
        &self.last_samples
    }

    /// The silences false positives put on metrics and have not ended at `now`: metric and end.
    pub fn silences(&self, now: Timestamp) -> Silences {
        self.silenced
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(m, &until)| (m.clone(), until))
            .collect()
    }

    /// Approves risky repairs of an incident waiting for approval; it is decided again in the next cycle.
    pub fn approve(&mut self, id: u64) -> Result<(), EngineError> {
        let inc = self.active_mut(id, "only an incident awaiting approval can be approved")?;
        if inc.status != IncidentStatus::AwaitingApproval {
            return Err(EngineError::WrongState {
                id,
                status: inc.status,
                why: "only an incident awaiting approval can be approved".into(),
            });
        }
        inc.approved = true;
        inc.awaiting_since = None;
        inc.status = IncidentStatus::Open;
        inc.dirty = true;
        Ok(())
    }

    /// Marks an incident a false positive: closes it as such (persisted in the record's resolution, from which a new
    /// engine restores both effects), silences anomalies of every metric whose anomaly it contained for
    /// `false_positive_silence_us` from now — however high they score, so a score of 1.0 is silenced too — and
    /// raises those metrics' cut-offs by `false_positive_factor`, up to `anomaly_cutoff_max`, for after the silence.
    /// Returns the metrics and their new cut-offs.
    pub fn mark_false_positive(&mut self, id: u64) -> Result<Vec<(String, f64)>, EngineError> {
        let mut record = match self.active.get(&id) {
            Some(inc) => inc.record.clone(),
            None => self.kb.get(id)?.ok_or(EngineError::UnknownIncident(id))?,
        };
        if record.resolution == Resolution::FalsePositive {
            return Ok(Vec::new());
        }
        record.resolution = Resolution::FalsePositive;
        record.resolved_at = Some(self.clock.now());
        self.kb.save(&record)?;
        self.active.remove(&id);
        self.silence(&record);
        Ok(self.raise_cutoffs(&record))
    }

    /// Silences the anomalies of a false positive's metrics until `false_positive_silence_us` after it was marked.
    fn silence(&mut self, record: &IncidentRecord) {
        let Some(at) = record.resolved_at else {
            return;
        };
        let until = at.saturating_add(self.config.false_positive_silence_us);
        for i in record
            .issues
            .iter()
            .filter(|i| i.kind == IssueKind::Anomaly)
        {
            let end = self.silenced.entry(i.resource.clone()).or_insert(until);
            *end = (*end).max(until);
        }
    }

    fn raise_cutoffs(&mut self, record: &IncidentRecord) -> Vec<(String, f64)> {
        let metrics: BTreeSet<&str> = record
            .issues
            .iter()
            .filter(|i| i.kind == IssueKind::Anomaly)
            .map(|i| i.resource.as_str())
            .collect();
        let mut out = Vec::new();
        for metric in metrics {
            let raised = (self.anomaly_cutoff(metric) * self.config.false_positive_factor)
                .min(self.config.anomaly_cutoff_max);
            self.cutoffs.insert(metric.to_string(), raised);
            out.push((metric.to_string(), raised));
        }
        out
    }

    fn count_checks(&mut self, results: &[CheckResult]) {
        self.metrics.checks_run += results.len() as u64;
        self.metrics.checks_failed += results.iter().filter(|r| !r.passed).count() as u64;
    }

    fn save(&mut self, record: &IncidentRecord, errors: &mut Vec<String>) {
        if let Err(e) = self.kb.save(record) {
            self.metrics.kb_errors += 1;
            errors.push(format!("saving incident {}: {e}", record.id));
        }
    }

    /// Sets the checks' time limits by tier and the overruns in a row that make a `check_timeout` issue.
    pub fn set_check_timeouts(&mut self, timeouts: crate::schedule::CheckTimeouts) {
        self.scheduler.set_timeouts(timeouts);
    }

    /// Runs one cycle of the loop, as its phases: observe (due checks with their hiccup retry, judged samples, the
    /// subject's own issues), diagnose (alert rules, correlation into incidents, each changed incident diagnosed),
    /// decide and act (highest priority first, behind the gates), expire approvals, close what is over (escalated
    /// incidents whose cause is gone, quiet ones), set the escalation level and the hold on writes, follow up, notify.
    pub fn run_cycle(&mut self) -> CycleSummary {
        let now = self.clock.now();
        self.metrics.cycles += 1;
        let mut s = CycleSummary::starting(now, self.escalator.level(), self.config.dry_run);
        let issues = self.observe(now, &mut s);
        let activity = !issues.is_empty();
        let mut alerts = self.diagnose_issues(issues, now, &mut s);
        let escalated_now = self.decide_and_act(&mut s, &mut alerts);
        self.expire_approvals(&mut s, &mut alerts);
        self.close_escalated_whose_cause_is_gone(&mut s);
        let now_end = self.clock.now();
        self.close_quiet(now_end, &mut s);
        self.set_escalation_level(now_end, activity, escalated_now, &mut s);
        self.follow_up(&mut s, &mut alerts);
        self.notify(alerts, &mut s);
        self.metrics.alerts_suppressed = self.alerts.suppressed();
        s.health = self.scheduler.health();
        s.escalation_level = self.escalator.level();
        s
    }

    /// Re-runs the subject's checks that reported any of `issues` (by the issue's source) and returns what still
    /// reports `root`'s problem (same code on the same resource), if anything. The results update health.
    /// Re-runs (at most every `escalated_recheck_us`) the checks that reported each escalated incident; one whose
    /// checks no longer find any of its problems closes as self-resolved — a compaction replaced the damaged file,
    /// an operator restored it — so its hold on writes ends with its cause; a check whose run could not look
    /// (`inconclusive`: its server unreachable) has not seen it go, and it is kept as it was. One still found, escalated after its
    /// repairs failed and below `same_problem_failures_max` failed repairs, is decided again (what failed may have
    /// been the environment's, since recovered). An incident none of whose issues came from a check (found on
    /// open, say) stays for a human. Not in dry run.
    fn close_escalated_whose_cause_is_gone(&mut self, s: &mut CycleSummary) {
        if self.config.dry_run {
            return;
        }
        let now = self.clock.now();
        let due: Vec<u64> = self
            .active
            .values()
            .filter(|i| i.status == IncidentStatus::Escalated)
            .filter(|i| now.saturating_sub(i.rechecked_at) >= self.config.escalated_recheck_us)
            .map(|i| i.record.id)
            .collect();
        for id in due {
            let Some(issues) = self.active.get_mut(&id).map(|i| {
                i.rechecked_at = now;
                i.record.issues.clone()
            }) else {
                continue;
            };
            let checks = self.checks_that_reported(&issues);
            let problems: BTreeSet<(&str, &str)> = issues
                .iter()
                .map(|i| (i.code.as_str(), i.resource.as_str()))
                .collect();
            // With no check to ask (issues found on a read or at open) nothing can be shown: left for a human.
            if checks.is_empty() {
                continue;
            }
            let mut gone = true;
            let mut unseen = false;
            let mut undecided = false;
            for check in &checks {
                let result = self.scheduler.run_one(check.as_ref(), self.clock.as_ref());
                if result
                    .issues
                    .iter()
                    .any(|i| problems.contains(&(i.code.as_str(), i.resource.as_str())))
                {
                    gone = false;
                    break;
                }
                unseen |= result.inconclusive;
                // A check part-way to its verdict (a probe after a start, counting failures in a row again)
                // does not show the problem gone: asked again at the next re-check.
                undecided |= !check.decided();
            }
            // A check that could not look (its server unreachable) has not seen the problem go: kept as it was.
            if gone && unseen {
                continue;
            }
            if gone && undecided {
                if let Some(inc) = self.active.get_mut(&id) {
                    // Sooner than `escalated_recheck_us`: the check decides within a few of its runs.
                    inc.rechecked_at = now.saturating_sub(self.config.escalated_recheck_us);
                }
                continue;
            }
            if !gone {
                // Still there. If it was escalated because its repairs failed (a resource of the environment
                // missing at the time, say an unwritable directory) and its problem has not yet failed
                // `same_problem_failures_max` repairs, it is decided again: the gates (cooldown, breaker, rate)
                // space the retries, and the failure count bounds them.
                let strategies = self.subject.strategies();
                if let Some(inc) = self.active.get_mut(&id)
                    && let Some(root) = inc.record.issues.get(inc.root_issue)
                    && !inc.denied
                    && !inc.record.attempts.is_empty()
                    && strategies.iter().any(|st| st.can_repair(root))
                    && self.gates.problem_failures(&root.resource, &root.code)
                        < self.config.same_problem_failures_max
                {
                    inc.status = IncidentStatus::Open;
                    inc.dirty = true;
                }
                continue;
            }
            let Some(mut inc) = self.active.remove(&id) else {
                continue;
            };
            let names: Vec<&str> = checks.iter().map(|c| c.name()).collect();
            inc.record.resolution = Resolution::SelfResolved;
            inc.record.resolved_at = Some(self.clock.now());
            inc.record.decision = format!(
                "{}; cause gone: {} no longer find(s) it",
                inc.record.decision,
                names.join(", ")
            );
            let record = inc.record.clone();
            self.save(&record, &mut s.errors);
            s.incidents_closed.push((id, Resolution::SelfResolved));
        }
    }

    /// The subject's checks that reported any of `issues` (issues found outside a check have none).
    fn checks_that_reported(&self, issues: &[Issue]) -> Vec<Arc<dyn HealthCheck>> {
        let sources: BTreeSet<&str> = issues.iter().map(|i| i.source.as_str()).collect();
        self.subject
            .checks()
            .into_iter()
            .filter(|c| sources.contains(c.name()))
            .collect()
    }

    /// Re-runs the checks that reported `issues`: what still finds `root`'s problem, or a run that could not look
    /// for it (inconclusive confirms nothing); `None` when the checks looked and no longer find it.
    fn recheck(&mut self, issues: &[Issue], root: &Issue) -> Option<String> {
        let checks = self.checks_that_reported(issues);
        let mut still = None;
        let mut unseen = None;
        for check in &checks {
            let result = self.scheduler.run_one(check.as_ref(), self.clock.as_ref());
            if still.is_none()
                && result
                    .issues
                    .iter()
                    .any(|i| i.code == root.code && i.resource == root.resource)
            {
                still = Some(format!(
                    "check {} still finds {} on {}",
                    check.name(),
                    root.code,
                    root.resource
                ));
            } else if unseen.is_none() && result.inconclusive {
                // A run that could not look confirms nothing.
                unseen = Some(format!(
                    "check {} could not look for {} on {}: {}",
                    check.name(),
                    root.code,
                    root.resource,
                    result.message
                ));
            }
        }
        still.or(unseen)
    }

    /// The constraint issues of one sample (a counter's rate is a sample of its own).
    fn constrain(&self, sample: &Sample) -> Vec<Issue> {
        self.config
            .constraints
            .iter()
            .filter(|c| c.metric == sample.metric)
            .filter_map(|c| c.issue(sample.value, sample.at))
            .collect()
    }

    /// Feeds the trend rules of the sample's metric; a breach is a resource issue.
    fn trend(&mut self, sample: &Sample) -> Vec<Issue> {
        let mut out = Vec::new();
        for t in self
            .trends
            .iter_mut()
            .filter(|t| t.rule().metric == sample.metric)
        {
            let Some(b) = t.update(sample.at, sample.value) else {
                continue;
            };
            self.metrics.trend_breaches += 1;
            let rule = t.rule();
            let minutes = b.span_us / (60 * crate::clock::US_PER_S);
            out.push(
                Issue::new(
                    IssueKind::Resource,
                    "resource_growth",
                    &sample.metric,
                    format!(
                        "{} grew {:.1}%/hour over the last {minutes} min, sustained (trend rule: at most {:.1}%/hour):                          a slow leak?",
                        sample.metric,
                        100.0 * b.growth_per_hour,
                        100.0 * rule.growth_per_hour_max
                    ),
                    "engine:trend",
                    sample.at,
                )
                .with_score((b.growth_per_hour / rule.growth_per_hour_max / 2.0).min(1.0))
                .evidence("value", b.value.to_string())
                .evidence("baseline", b.baseline.to_string())
                .evidence("growth_per_hour", format!("{:.4}", b.growth_per_hour))
                .evidence(
                    "growth_per_hour_max",
                    rule.growth_per_hour_max.to_string(),
                ),
            );
        }
        out
    }

    /// The series state of `metric`, created on first use while fewer than `metrics_max` are kept.
    fn series(&mut self, metric: &str) -> Option<&mut Series> {
        if !self.series.contains_key(metric) {
            if self.series.len() >= self.config.metrics_max {
                return None;
            }
            self.series.insert(metric.to_string(), Series::default());
        }
        self.series.get_mut(metric)
    }

    /// Whether a gauge's sample is judged: not when it is the first step out of a run of at least
    /// `flat_samples_min` equal values (a constant has no scale to judge a step by).
    fn flat_gate(&mut self, sample: &Sample) -> bool {
        let min = self.config.flat_samples_min;
        if !sample.value.is_finite() {
            return true;
        }
        let Some(st) = self.series(&sample.metric) else {
            return true;
        };
        if st.run_len > 0 && st.run_value == sample.value {
            st.run_len = st.run_len.saturating_add(1);
            return true;
        }
        let flat = min > 0 && st.run_len >= min;
        st.run_value = sample.value;
        st.run_len = 1;
        !flat
    }

    /// The rate per second of a counter since its previous reading, and whether it is judged (its count differs from
    /// what the rate's baseline predicts by at least `rate_events_min`). `None` for the first reading, a reading
    /// not later than the previous one, a non-finite value, and a decrease (a restart: counted, the rate starts
    /// over).
    fn rate(&mut self, sample: &Sample) -> Option<(f64, bool)> {
        if !sample.value.is_finite() {
            return None;
        }
        let events_min = self.config.rate_events_min;
        let st = self.series(&sample.metric)?;
        let (t0, v0) = match st.last {
            Some((t0, _)) if sample.at <= t0 => return None,
            prev => {
                st.last = Some((sample.at, sample.value));
                prev?
            }
        };
        if sample.value < v0 {
            self.metrics.counter_resets += 1;
            return None;
        }
        let dt_s = (sample.at - t0) as f64 / crate::clock::US_PER_S as f64;
        let delta = sample.value - v0;
        let rate = delta / dt_s;
        let judged = st
            .rate_baseline
            .is_some_and(|b| (delta - b * dt_s).abs() >= events_min);
        st.rate_baseline = Some(match st.rate_baseline {
            Some(b) => b + RATE_BASELINE_WEIGHT * (rate - b),
            None => rate,
        });
        Some((rate, judged))
    }

    /// Starts watching `metric` with a new detector unless it is watched already; `false` when `metrics_max`
    /// metrics are watched and it is not one of them.
    fn watch(&mut self, metric: &str) -> bool {
        if self.detectors.contains_key(metric) {
            return true;
        }
        if self.detectors.len() >= self.config.metrics_max {
            return false;
        }
        let detector = (self.factory)(metric);
        self.detectors.insert(
            metric.to_string(),
            Watched {
                detector,
                previous: None,
                streak: 0,
                excursion: None,
                peak: 0.0,
            },
        );
        true
    }

    fn detect(&mut self, metric: &str, at: Timestamp, value: f64, judged: bool) -> Option<Issue> {
        if !self.watch(metric) {
            return None;
        }
        let watched = self.detectors.get_mut(metric)?;
        let previous = watched.previous;
        if value.is_finite() {
            watched.previous = Some(value);
        }
        let detector = &mut watched.detector;
        let score = detector.update(at, value);
        let cutoff = self
            .cutoffs
            .get(metric)
            .copied()
            .unwrap_or(self.config.anomaly_cutoff);
        // A detector adapts to an excursion within a point or two; whether it lasts is judged by the values: a
        // sample on the same side, at least half as far from the value before it as its first sample, keeps it.
        let kept = watched
            .excursion
            .is_some_and(|(before, first)| holds(before, first, value));
        let anomalous = !score.is_nan() && score >= cutoff;
        if !judged || !(anomalous || kept) {
            if anomalous {
                self.metrics.anomalies_gated += 1;
            }
            watched.streak = 0;
            watched.excursion = None;
            watched.peak = 0.0;
            return None;
        }
        if watched.excursion.is_none() {
            watched.excursion = Some((previous.unwrap_or(value), value));
            watched.peak = 0.0;
        }
        if !score.is_nan() {
            watched.peak = watched.peak.max(score);
        }
        // The score stated is the one that raised the anomaly; the current sample's may be lower.
        let raised = watched.peak;
        watched.streak = watched.streak.saturating_add(1);
        if watched.streak < self.config.anomaly_for_samples {
            self.metrics.anomalies_pending += 1;
            return None;
        }
        if self.silenced.get(metric).is_some_and(|&until| at < until) {
            self.metrics.anomalies_silenced += 1;
            return None;
        }
        self.metrics.anomalies += 1;
        let why = detector.explain();
        let line = format!(
            "{metric} = {value} at {at} µs scored {raised:.3} (cut-off {cutoff:.3}, this sample {score:.3}): {why}"
        );
        if self.recent_anomalies.len() >= self.config.recent_anomalies_max {
            self.recent_anomalies.pop_front();
        }
        self.recent_anomalies.push_back(line);
        Some(
            Issue::new(
                IssueKind::Anomaly,
                anomaly_code(metric),
                metric,
                format!(
                    "{metric} = {value} is anomalous (score {raised:.3} ≥ cut-off {cutoff:.3})"
                ),
                format!("detector:{}", detector.name()),
                at,
            )
            .with_score(raised)
            .evidence("value", value.to_string())
            .evidence("score", format!("{raised:.3}"))
            .evidence("sample_score", format!("{score:.3}"))
            .evidence("cutoff", format!("{cutoff:.3}"))
            .evidence(
                "previous",
                previous.map_or_else(|| "none".to_string(), |p| p.to_string()),
            )
            .evidence(
                "direction",
                match previous {
                    Some(p) if value > p => "rose",
                    Some(p) if value < p => "fell",
                    _ => "level",
                },
            )
            .evidence("why", why),
        )
    }

    fn correlate(&mut self, issue: Issue, now: Timestamp, s: &mut CycleSummary) {
        let window = self.config.correlation_window_us;
        let known = &self.config.known_causes;
        let candidates: Vec<u64> = self
            .active
            .values()
            .filter(|i| correlates(&i.record.issues, i.last_issue_at, &issue, window, known))
            .map(|i| i.record.id)
            .collect();
        // The incident whose root is this very problem takes it first; otherwise the first that does not leave it
        // unrepaired (`keeps_apart`). When every one would, it opens an incident of its own.
        let found = candidates
            .iter()
            .copied()
            .find(|id| {
                self.active.get(id).is_some_and(|i| {
                    i.record
                        .issues
                        .get(i.root_issue)
                        .is_some_and(|r| r.code == issue.code && r.resource == issue.resource)
                })
            })
            .or_else(|| {
                let strategies = self.subject.strategies();
                candidates.iter().copied().find(|id| {
                    self.active
                        .get(id)
                        .is_some_and(|i| !keeps_apart(i, &issue, &strategies))
                })
            });
        if let Some(id) = found
            && let Some(inc) = self.active.get_mut(&id)
        {
            inc.last_issue_at = inc.last_issue_at.max(issue.detected_at).max(now);
            inc.record.started_at = inc.record.started_at.min(issue.detected_at);
            // A metric still anomalous a cycle later is the same anomaly: listed once, at its highest score.
            if let Some(same) = inc.record.issues.iter_mut().find(|i| {
                issue.kind == IssueKind::Anomaly
                    && i.kind == IssueKind::Anomaly
                    && i.resource == issue.resource
                    && i.code == issue.code
            }) {
                if issue.score > same.score {
                    same.score = issue.score;
                    inc.dirty = true;
                }
                return;
            }
            if inc.record.issues.len() < self.config.issues_per_incident_max {
                inc.record.issues.push(issue);
                inc.dirty = true;
            } else {
                inc.issues_dropped += 1;
                self.metrics.issues_dropped += 1;
            }
            return;
        }
        if self.active.len() >= self.config.incidents_active_max {
            self.metrics.issues_dropped += 1;
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.metrics.incidents += 1;
        s.incidents_opened.push(id);
        let (crisis, severity) = classify(&issue, &self.config.composite.cutoffs);
        let record = IncidentRecord {
            id,
            started_at: issue.detected_at.min(now),
            detected_at: now,
            resolved_at: None,
            crisis,
            severity,
            root_cause: String::new(),
            blast_radius: Vec::new(),
            decision: String::new(),
            attempts: Vec::new(),
            resolution: Resolution::Open,
            report_markdown: None,
            issues: Vec::new(),
        };
        // When the engine took it in: an issue found long ago must not count as quiet already.
        let last_issue_at = issue.detected_at.max(now);
        let mut inc = Incident::taken_in(record, IncidentStatus::Open, last_issue_at, now);
        inc.record.issues.push(issue);
        self.active.insert(id, inc);
    }
}

/// Whether `issue` must not join `inc`, though it correlates with it: a problem with a repair of its own (a strategy
/// claims it, none of which claims the incident's root) whose incident would not run that repair — escalated,
/// deferred, awaiting approval or acknowledged (its root's repair in a cooldown, or a person's). Joined, its repair
/// would never be tried and, in an acknowledged incident, nobody would be told; apart, it is decided, repaired and
/// notified as an incident of its own. Anomalies of metrics always join (one cause seen through several metrics).
fn keeps_apart(inc: &Incident, issue: &Issue, strategies: &[Arc<dyn RepairStrategy>]) -> bool {
    if issue.kind == IssueKind::Anomaly {
        return false;
    }
    let held = inc.acknowledged.is_some()
        || matches!(
            inc.status,
            IncidentStatus::Escalated | IncidentStatus::Deferred | IncidentStatus::AwaitingApproval
        );
    if !held {
        return false;
    }
    let Some(root) = inc.record.issues.get(inc.root_issue) else {
        return false;
    };
    if root.code == issue.code && root.resource == issue.resource {
        return false;
    }
    let own: Vec<&Arc<dyn RepairStrategy>> =
        strategies.iter().filter(|s| s.can_repair(issue)).collect();
    !own.is_empty() && !own.iter().any(|s| s.can_repair(root))
}

fn describe_location(issue: &Issue) -> String {
    let l = &issue.location;
    let mut parts = vec![format!("resource {}", issue.resource)];
    if let Some(f) = &l.file {
        parts.push(format!("file {f}"));
    }
    if let (Some(o), Some(n)) = (l.offset, l.len) {
        parts.push(format!("bytes {o}..{}", o.saturating_add(n)));
    } else if let Some(o) = l.offset {
        parts.push(format!("offset {o}"));
    }
    if let Some((a, b)) = l.lsn_range {
        parts.push(format!("LSN {a}..={b}"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{CheckContext, CheckOutcome, HealthCheck};
    use crate::clock::{SimClock, US_PER_S};
    use crate::learn::{MemoryKnowledgeBase, StrategyStats};
    use crate::subject::Sample;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Bare {
        issues: Mutex<Vec<Issue>>,
        metrics: Mutex<Vec<(String, f64)>>,
        typed: Mutex<Vec<Sample>>,
        strategies: Mutex<Vec<Arc<dyn RepairStrategy>>>,
    }

    /// A strategy that claims every issue and whose every step succeeds.
    struct FixesAnything;

    impl RepairStrategy for FixesAnything {
        fn name(&self) -> &str {
            "fixes_anything"
        }
        fn cost(&self) -> crate::repair::RepairCost {
            crate::repair::RepairCost::InPlace
        }
        fn can_repair(&self, _: &Issue) -> bool {
            true
        }
        fn estimate(&self, _: &Issue) -> crate::repair::Estimate {
            crate::repair::Estimate {
                duration_us: 1,
                data_loss: crate::repair::DataLoss::None,
                risk: 0.0,
            }
        }
        fn backup(&self, _: &Issue) -> Result<crate::repair::Backup, crate::repair::RepairError> {
            Ok(crate::repair::Backup {
                location: "memory".into(),
                bytes: 0,
            })
        }
        fn repair(
            &self,
            _: &Issue,
        ) -> Result<crate::repair::RepairReport, crate::repair::RepairError> {
            Ok(crate::repair::RepairReport {
                actions: vec!["fixed".into()],
                data_loss: crate::repair::DataLoss::None,
            })
        }
        fn validate(&self, _: &Issue) -> Result<(), crate::repair::RepairError> {
            Ok(())
        }
        fn rollback(
            &self,
            _: &Issue,
            _: &crate::repair::Backup,
        ) -> Result<(), crate::repair::RepairError> {
            Ok(())
        }
    }

    impl Subject for Bare {
        fn name(&self) -> &str {
            "bare"
        }
        fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
            vec![Arc::new(Failing)]
        }
        fn strategies(&self) -> Vec<Arc<dyn RepairStrategy>> {
            self.strategies.lock().unwrap().clone()
        }
        fn sample(&self, now: Timestamp) -> Vec<Sample> {
            let m = self.metrics.lock().unwrap();
            let mut out: Vec<Sample> = m
                .iter()
                .map(|(metric, value)| Sample::gauge(metric.clone(), *value, now))
                .collect();
            out.extend(self.typed.lock().unwrap().iter().map(|t| Sample {
                at: now,
                ..t.clone()
            }));
            out
        }
        fn drain_issues(&self) -> Vec<Issue> {
            std::mem::take(&mut self.issues.lock().unwrap())
        }
    }

    struct Failing;

    impl HealthCheck for Failing {
        fn name(&self) -> &str {
            "disk_writable"
        }
        fn tier(&self) -> Tier {
            Tier::Deep
        }
        fn run(&self, _ctx: &CheckContext<'_>) -> CheckOutcome {
            CheckOutcome::fail("read-only file system", Vec::new())
        }
    }

    struct BrokenKb;

    impl KnowledgeBase for BrokenKb {
        fn save(&self, _: &IncidentRecord) -> Result<(), KbError> {
            Err(KbError("disk full".into()))
        }
        fn get(&self, _: u64) -> Result<Option<IncidentRecord>, KbError> {
            Err(KbError("disk full".into()))
        }
        fn recent(&self, _: usize) -> Result<Vec<IncidentRecord>, KbError> {
            Ok(Vec::new())
        }
        fn max_id(&self) -> Result<u64, KbError> {
            Ok(41)
        }
        fn strategy_stats(&self, _: &str, _: &str) -> Result<StrategyStats, KbError> {
            Err(KbError("disk full".into()))
        }
        fn record_outcome(&self, _: &str, _: &str, _: bool) -> Result<(), KbError> {
            Err(KbError("disk full".into()))
        }
    }

    struct Refusing;

    impl Notifier for Refusing {
        fn name(&self) -> &str {
            "webhook"
        }
        fn notify(&self, _: &Alert) -> Result<(), String> {
            Err("connection refused".into())
        }
    }

    fn engine(kb: Arc<dyn KnowledgeBase>, config: EngineConfig) -> (Engine, Arc<Bare>, SimClock) {
        let clock = SimClock::new(1_000 * US_PER_S);
        let subject = Arc::new(Bare::default());
        let e = Engine::new(subject.clone(), kb, Arc::new(clock.clone()), config).unwrap();
        (e, subject, clock)
    }

    #[test]
    fn new_rejects_a_bad_config_by_key() {
        let clock = SimClock::new(0);
        let err = Engine::new(
            Arc::new(Bare::default()),
            Arc::new(MemoryKnowledgeBase::new()),
            Arc::new(clock),
            EngineConfig {
                quiet_period_us: 0,
                ..EngineConfig::default()
            },
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("engine.quiet_period_us = 0"),
            "{err}"
        );
    }

    #[test]
    fn unfixable_failed_check_is_a_wall_and_escalates_even_when_kb_and_notifier_fail() {
        let (mut e, _, _) = engine(Arc::new(BrokenKb), EngineConfig::default());
        e.add_notifier(Box::new(Refusing));
        let s = e.run_cycle();
        assert_eq!(
            s.incidents_opened,
            [42],
            "ids continue after the knowledge base's max id"
        );
        assert_eq!(s.health, HealthState::Unhealthy);
        assert_eq!(s.escalations, [42]);
        let d = &s.decisions[0].decision;
        assert_eq!(d.reasons[0], "crisis level WALL: needs a human");
        assert_eq!(e.active_incidents()[0].record.crisis, CrisisLevel::Wall);
        assert!(
            s.errors
                .iter()
                .any(|x| x == "saving incident 42: knowledge base: disk full"),
            "{:?}",
            s.errors
        );
        assert!(
            s.errors
                .iter()
                .any(|x| x == "notifier webhook: connection refused"),
            "{:?}",
            s.errors
        );
        assert_eq!(e.metrics().notify_failures, 1);
        assert!(e.metrics().kb_errors >= 1);
        assert_eq!(
            e.incident(42).unwrap().unwrap().id,
            42,
            "open incidents answer from memory"
        );
        assert!(
            e.incident(7).is_err(),
            "the knowledge base's error is passed on"
        );
    }

    #[test]
    fn limits_drop_and_count_instead_of_growing() {
        let config = EngineConfig {
            incidents_active_max: 2,
            cycle_issues_max: 4,
            metrics_max: 1,
            ..EngineConfig::default()
        };
        let (mut e, subject, _) = engine(Arc::new(MemoryKnowledgeBase::new()), config);
        {
            let mut issues = subject.issues.lock().unwrap();
            for n in 0..5 {
                issues.push(Issue::new(
                    IssueKind::OperationError,
                    "put_failed",
                    format!("r{n}"),
                    "x",
                    "t",
                    0,
                ));
            }
            let mut m = subject.metrics.lock().unwrap();
            m.push(("a".into(), 1.0));
            m.push(("b".into(), 1.0));
        }
        let s = e.run_cycle();
        assert_eq!(s.issues, 4, "1 check issue + 3 of 5 subject issues");
        assert!(s.errors[0].contains("cycle_issues_max"), "{:?}", s.errors);
        assert_eq!(e.active_incidents().len(), 2);
        assert_eq!(e.metrics().issues_dropped, 2 + 2);
        assert_eq!(e.detectors.len(), 1, "metrics_max");
    }

    #[test]
    fn constraint_breach_on_a_sample_opens_an_incident() {
        let config = EngineConfig {
            constraints: vec![crate::constraint::Constraint::new(
                "disk_free_floor",
                "disk_free_bytes",
                Some(1_000.0),
                None,
            )],
            ..EngineConfig::default()
        };
        let (mut e, subject, _) = engine(Arc::new(MemoryKnowledgeBase::new()), config);
        subject
            .metrics
            .lock()
            .unwrap()
            .push(("disk_free_bytes".into(), 500.0));
        let s = e.run_cycle();
        assert_eq!(s.samples, 1);
        let breach = e
            .active_incidents()
            .into_iter()
            .flat_map(|i| i.record.issues)
            .find(|i| i.kind == IssueKind::ConstraintBreach)
            .expect("a constraint-breach issue");
        assert_eq!(breach.resource, "disk_free_bytes");
        assert_eq!(breach.code, "constraint_disk_free_floor");
        assert_eq!(breach.score, 1.0);
    }

    #[test]
    fn a_constraint_without_auto_fix_is_never_repaired_one_with_it_is() {
        for auto_fix in [false, true] {
            let mut constraint = crate::constraint::Constraint::new(
                "queue_depth_ceiling",
                "queue_depth",
                None,
                Some(100.0),
            );
            constraint.auto_fix_available = auto_fix;
            let config = EngineConfig {
                constraints: vec![constraint],
                ..EngineConfig::default()
            };
            let (mut e, subject, _) = engine(Arc::new(MemoryKnowledgeBase::new()), config);
            subject
                .strategies
                .lock()
                .unwrap()
                .push(Arc::new(FixesAnything));
            subject
                .metrics
                .lock()
                .unwrap()
                .push(("queue_depth".into(), 500.0));
            let s = e.run_cycle();
            let breach_incident = s
                .incidents_opened
                .iter()
                .copied()
                .find(|id| {
                    e.incident(*id)
                        .unwrap()
                        .unwrap()
                        .issues
                        .iter()
                        .any(|i| i.resource == "queue_depth")
                })
                .expect("an incident about the breach");
            let d = &s
                .decisions
                .iter()
                .find(|d| d.incident_id == breach_incident)
                .expect("a decision about the breach")
                .decision;
            if auto_fix {
                assert_eq!(d.action, Action::Repair, "{:?}", d.reasons);
            } else {
                assert_eq!(d.action, Action::Escalate, "{:?}", d.reasons);
                assert!(
                    d.reasons[0].contains("auto_fix_available = false"),
                    "{:?}",
                    d.reasons
                );
                assert!(
                    !s.attempts.iter().any(|a| a.incident_id == breach_incident),
                    "{:?}",
                    s.attempts
                );
            }
        }
    }

    #[test]
    fn oversized_issue_text_is_cut_at_its_limit() {
        let mut i = Issue::new(
            IssueKind::OperationError,
            "c",
            "r",
            "é".repeat(3_000),
            "t",
            0,
        );
        for n in 0..40 {
            i = i.evidence(format!("k{n}"), "v");
        }
        assert!(bound_issue(&mut i));
        assert!(i.summary.len() <= ISSUE_TEXT_BYTES_MAX + 64);
        assert!(i.summary.ends_with("(cut at issue_text_bytes_max = 4096)"));
        assert_eq!(i.evidence.len(), ISSUE_EVIDENCE_MAX);
        assert_eq!(
            i.evidence.last().unwrap().1,
            "9 entries (issue_evidence_max = 32)"
        );
        let mut small = Issue::new(IssueKind::OperationError, "c", "r", "short", "t", 0);
        assert!(!bound_issue(&mut small));
    }

    #[test]
    fn false_positive_raises_the_cutoff_bounded() {
        let config = EngineConfig {
            anomaly_cutoff: 0.9,
            false_positive_factor: 1.1,
            anomaly_cutoff_max: 0.95,
            ..EngineConfig::default()
        };
        let (mut e, subject, _) = engine(Arc::new(MemoryKnowledgeBase::new()), config);
        for _ in 0..2 {
            subject.issues.lock().unwrap().push(Issue::new(
                IssueKind::Anomaly,
                "latency_anomaly",
                "get_latency_p99_us",
                "slow",
                "detector",
                0,
            ));
            let s = e.run_cycle();
            let id = *s
                .incidents_opened
                .iter()
                .find(|&&id| {
                    e.active
                        .get(&id)
                        .is_some_and(|i| i.record.issues[0].kind == IssueKind::Anomaly)
                })
                .unwrap();
            e.mark_false_positive(id).unwrap();
        }
        assert_eq!(
            e.anomaly_cutoff("get_latency_p99_us"),
            0.95,
            "0.9 × 1.1 capped at anomaly_cutoff_max"
        );
        assert!(matches!(
            e.mark_false_positive(999),
            Err(EngineError::UnknownIncident(999))
        ));
    }

    /// A detector that records every value it is fed and scores each at `score` (with `on_change`, only a value
    /// it never saw before, once it saw one: against a flat baseline any new value is infinitely unlikely).
    struct Recording {
        seen: Arc<Mutex<Vec<(String, f64)>>>,
        metric: String,
        score: f64,
        on_change: bool,
        known: Vec<f64>,
    }

    impl Detector for Recording {
        fn name(&self) -> &str {
            "recording"
        }
        fn update(&mut self, _: Timestamp, value: f64) -> f64 {
            self.seen.lock().unwrap().push((self.metric.clone(), value));
            let changed = !self.known.is_empty() && !self.known.contains(&value);
            if !self.known.contains(&value) {
                self.known.push(value);
            }
            if !self.on_change || changed {
                self.score
            } else {
                0.0
            }
        }
        fn explain(&self) -> String {
            "always".into()
        }
    }

    fn recording(e: &mut Engine, score: f64) -> Arc<Mutex<Vec<(String, f64)>>> {
        recording_with(e, score, false)
    }

    fn recording_with(
        e: &mut Engine,
        score: f64,
        on_change: bool,
    ) -> Arc<Mutex<Vec<(String, f64)>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        e.set_detector_factory(Arc::new(move |metric: &str| -> Box<dyn Detector> {
            Box::new(Recording {
                seen: s2.clone(),
                metric: metric.to_string(),
                score,
                on_change,
                known: Vec::new(),
            })
        }));
        seen
    }

    fn set_typed(subject: &Bare, samples: &[(MetricKind, &str, f64)]) {
        *subject.typed.lock().unwrap() = samples
            .iter()
            .map(|&(kind, m, v)| Sample::new(kind, m, v, 0))
            .collect();
    }

    #[test]
    fn detectors_see_rates_of_counters_never_raw_counts_states_or_sizes() {
        let (mut e, subject, clock) = engine(
            Arc::new(MemoryKnowledgeBase::new()),
            EngineConfig::default(),
        );
        let seen = recording(&mut e, 0.0);
        for (i, commits) in [100.0, 150.0, 250.0, 3.0, 13.0].into_iter().enumerate() {
            set_typed(
                &subject,
                &[
                    (MetricKind::Counter, "commits_total", commits),
                    (MetricKind::State, "read_only", (i % 2) as f64),
                    (MetricKind::Size, "docs", 1e6 * i as f64),
                    (MetricKind::Gauge, "put_latency_p99_us", 900.0),
                ],
            );
            e.run_cycle();
            clock.advance(5 * US_PER_S);
        }
        let seen = seen.lock().unwrap().clone();
        let rates: Vec<f64> = seen
            .iter()
            .filter(|(m, _)| m == "commits_per_s")
            .map(|(_, v)| *v)
            .collect();
        // 100 → 150 → 250 in 5 s steps: 10/s, 20/s; 250 → 3 is a restart (no rate); 3 → 13: 2/s.
        assert_eq!(rates, [10.0, 20.0, 2.0]);
        assert_eq!(e.metrics().counter_resets, 1);
        for raw in ["commits_total", "read_only", "docs"] {
            assert!(
                !seen.iter().any(|(m, _)| m == raw),
                "{raw} reached a detector"
            );
        }
        assert_eq!(
            seen.iter()
                .filter(|(m, _)| m == "put_latency_p99_us")
                .count(),
            5
        );
        // The cycle's samples carry each counter's rate after it, for the history.
        let last: Vec<&str> = e.last_samples().iter().map(|s| s.metric.as_str()).collect();
        assert!(
            last.contains(&"commits_total") && last.contains(&"commits_per_s"),
            "{last:?}"
        );
    }

    #[test]
    fn a_few_events_and_a_step_out_of_a_flat_gauge_open_no_incident() {
        let (mut e, subject, clock) = engine(
            Arc::new(MemoryKnowledgeBase::new()),
            EngineConfig {
                anomaly_for_samples: 1,
                ..EngineConfig::default()
            },
        );
        // Every change scores 1.0 (as any step of a flat series does): only the gates stand between it and an
        // incident.
        recording_with(&mut e, 1.0, true);
        let mut commits = 0.0;
        let mut opened = Vec::new();
        for cycle in 0..40 {
            // Idle, then one commit at cycle 36.
            if cycle == 36 {
                commits += 1.0;
            }
            set_typed(
                &subject,
                &[
                    (MetricKind::Counter, "commits_total", commits),
                    (MetricKind::Gauge, "issues_queued", f64::from(cycle == 36)),
                ],
            );
            opened.extend(e.run_cycle().incidents_opened);
            clock.advance(5 * US_PER_S);
        }
        let anomalies: Vec<_> = opened
            .iter()
            .filter_map(|id| e.incident(*id).unwrap())
            .filter(|r| r.issues.iter().any(|i| i.kind == IssueKind::Anomaly))
            .collect();
        assert!(anomalies.is_empty(), "{anomalies:?}");
        assert!(e.metrics().anomalies_gated >= 2, "{:?}", e.metrics());
        // A burst of a thousand commits is evidence enough: the gate lets the detector judge it.
        commits += 1_000.0;
        set_typed(&subject, &[(MetricKind::Counter, "commits_total", commits)]);
        let s = e.run_cycle();
        assert_eq!(s.anomalies, 1, "{s:?}");
    }

    #[test]
    fn anomalies_of_several_metrics_in_one_window_are_one_incident_named_for_the_burst() {
        let (mut e, subject, clock) = engine(
            Arc::new(MemoryKnowledgeBase::new()),
            EngineConfig {
                anomaly_for_samples: 1,
                ..EngineConfig::default()
            },
        );
        recording(&mut e, 0.0);
        let names = ["commits_total", "records_committed_total", "put_ops_total"];
        for cycle in 0..14u32 {
            let v = f64::from(cycle) * 50.0 + if cycle >= 11 { 5_000.0 } else { 0.0 };
            let samples: Vec<_> = names.iter().map(|n| (MetricKind::Counter, *n, v)).collect();
            set_typed(&subject, &samples);
            if cycle == 11 {
                recording(&mut e, 0.0);
                // Fresh detectors would warm up: score every existing series at 1.0 instead.
                for w in e.detectors.values_mut() {
                    w.detector = Box::new(Recording {
                        seen: Arc::new(Mutex::new(Vec::new())),
                        metric: String::new(),
                        score: 1.0,
                        on_change: false,
                        known: Vec::new(),
                    });
                }
            }
            let s = e.run_cycle();
            if cycle == 11 {
                assert_eq!(s.anomalies, 3, "{s:?}");
                let anomaly_incidents: Vec<_> = e
                    .active_incidents()
                    .into_iter()
                    .filter(|i| i.record.issues.iter().all(|x| x.kind == IssueKind::Anomaly))
                    .collect();
                assert_eq!(anomaly_incidents.len(), 1, "{anomaly_incidents:?}");
                let r = &anomaly_incidents[0].record;
                assert_eq!(r.issues.len(), 3);
                assert!(r.root_cause.contains("burst of load"), "{}", r.root_cause);
                assert_eq!(
                    r.severity,
                    Severity::Sev2,
                    "no wider than its worst symptom"
                );
            }
            if cycle > 11 {
                // Still anomalous cycles later: the same incident, each metric listed once.
                assert_eq!(s.anomalies, 3, "{s:?}");
                assert!(s.incidents_opened.is_empty(), "{s:?}");
                let active: Vec<_> = e
                    .active_incidents()
                    .into_iter()
                    .filter(|i| i.record.issues.iter().all(|x| x.kind == IssueKind::Anomaly))
                    .collect();
                assert_eq!(active.len(), 1, "{active:?}");
                let listed: Vec<&str> = active[0]
                    .record
                    .issues
                    .iter()
                    .map(|i| i.resource.as_str())
                    .collect();
                assert_eq!(listed.len(), 3, "{listed:?}");
            }
            clock.advance(5 * US_PER_S);
        }
    }

    #[test]
    fn a_false_positive_silences_even_a_score_of_one_until_its_end_across_restarts() {
        let kb: Arc<dyn KnowledgeBase> = Arc::new(MemoryKnowledgeBase::new());
        let config = EngineConfig {
            false_positive_silence_us: 3_600 * US_PER_S,
            anomaly_for_samples: 1,
            ..EngineConfig::default()
        };
        let (mut e, subject, clock) = engine(kb.clone(), config.clone());
        recording(&mut e, 1.0);
        set_typed(&subject, &[(MetricKind::Gauge, "put_error_ratio", 0.5)]);
        let s = e.run_cycle();
        assert_eq!(s.anomalies, 1);
        let id = *s
            .incidents_opened
            .iter()
            .find(|id| {
                e.incident(**id)
                    .unwrap()
                    .unwrap()
                    .issues
                    .iter()
                    .any(|i| i.kind == IssueKind::Anomaly)
            })
            .unwrap();
        e.mark_false_positive(id).unwrap();
        let marked_at = clock.now();
        assert_eq!(
            e.silences(marked_at),
            [("put_error_ratio".to_string(), marked_at + 3_600 * US_PER_S)]
        );
        clock.advance(60 * US_PER_S);
        assert_eq!(e.run_cycle().anomalies, 0, "silenced, though it scores 1.0");
        assert_eq!(e.metrics().anomalies_silenced, 1);
        // A new engine on the same knowledge base keeps the silence.
        let mut e2 =
            Engine::new(subject.clone(), kb.clone(), Arc::new(clock.clone()), config).unwrap();
        recording(&mut e2, 1.0);
        assert_eq!(e2.run_cycle().anomalies, 0, "silenced after a restart");
        // After its end the metric is judged again.
        clock.advance(3_600 * US_PER_S);
        assert_eq!(e2.run_cycle().anomalies, 1, "the silence ended");
        assert!(e2.silences(clock.now()).is_empty());
    }

    #[test]
    fn resident_memory_growing_over_five_percent_an_hour_for_an_hour_is_a_slow_leak() {
        for (growth_per_hour, leak) in [(0.08, true), (0.02, false)] {
            let (mut e, subject, clock) = engine(
                Arc::new(MemoryKnowledgeBase::new()),
                EngineConfig::default(),
            );
            let mut first = None;
            for cycle in 0..(2 * 720u64) {
                let hours = cycle as f64 * 5.0 / 3_600.0;
                set_typed(
                    &subject,
                    &[(
                        MetricKind::Size,
                        "process_resident_bytes",
                        1e9 * (1.0 + growth_per_hour * hours),
                    )],
                );
                let s = e.run_cycle();
                if first.is_none() && s.issues > 1 {
                    first = Some(hours);
                }
                clock.advance(5 * US_PER_S);
            }
            let found: Vec<_> = e
                .active_incidents()
                .into_iter()
                .flat_map(|i| i.record.issues)
                .filter(|i| i.code == "resource_growth")
                .collect();
            assert_eq!(!found.is_empty(), leak, "{growth_per_hour}: {found:?}");
            if leak {
                let at = first.unwrap();
                assert!((1.0..1.1).contains(&at), "judged after an hour: {at}");
                assert_eq!(found[0].resource, "process_resident_bytes");
                assert!(
                    found[0].summary.contains("8.0%/hour"),
                    "{}",
                    found[0].summary
                );
            }
        }
    }

    #[test]
    fn a_one_cycle_blip_is_not_raised_two_in_a_row_are() {
        let (mut e, subject, clock) = engine(
            Arc::new(MemoryKnowledgeBase::new()),
            EngineConfig::default(),
        );
        recording_with(&mut e, 1.0, true);
        let mut raised = Vec::new();
        // A latency well above the floor: 2 ms, one blip of 9 ms, 2 ms again, then 30 ms twice (the second time
        // the detector, used to it, would not score it: the excursion holding is enough).
        for v in [2e3, 2e3, 2e3, 9e3, 2e3, 3e4, 3e4] {
            set_typed(&subject, &[(MetricKind::Gauge, "put_latency_p99_us", v)]);
            raised.push(e.run_cycle().anomalies);
            clock.advance(5 * US_PER_S);
        }
        assert_eq!(raised, [0, 0, 0, 0, 0, 0, 1]);
        // The anomaly states the score that raised it (the first slow cycle's), not the second sample's, which
        // the detector used to the new level scores below the cut-off.
        let issue = e
            .active_incidents()
            .into_iter()
            .flat_map(|i| i.record.issues)
            .find(|i| i.resource == "put_latency_p99_us")
            .expect("the anomaly is in an incident");
        let cutoff = EngineConfig::default().anomaly_cutoff;
        assert!(issue.score >= cutoff, "score {} < {cutoff}", issue.score);
        assert!(
            issue
                .summary
                .contains(&format!("(score {:.3} ≥ cut-off", issue.score)),
            "{}",
            issue.summary
        );
        // Back to normal ends it.
        set_typed(&subject, &[(MetricKind::Gauge, "put_latency_p99_us", 2e3)]);
        assert_eq!(e.run_cycle().anomalies, 0);
        assert_eq!(
            e.metrics().anomalies_pending,
            2,
            "the blip and the first slow cycle"
        );
        // Below the latency floor nothing is judged, however it scores.
        for v in [100.0, 900.0, 950.0] {
            set_typed(&subject, &[(MetricKind::Gauge, "get_latency_p99_us", v)]);
            assert_eq!(e.run_cycle().anomalies, 0);
            clock.advance(5 * US_PER_S);
        }
    }
}
