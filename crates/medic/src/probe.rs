//! What the engine watches in the program: [`MedicSubject`] is the store's subject plus the process's own readings
//! ([`crate::machine`]) and the synthetic probe check.
//!
//! The synthetic probe ([`SyntheticProbe`], shallow tier, at most once per `checks.probe_interval_ms`) puts, gets,
//! searches and deletes one document under the reserved id prefix [`store::RESERVED_ID_PREFIX`] (`.medic/probe`),
//! each step against `checks.probe_step_ms_max`: a client's-eye view of the whole path. A step that fails or is
//! slower than its bound is an issue like any other (`probe_failed`, `probe_slow`). The reserved ids never appear in
//! a listing or a search (the store's scan skips them) and the HTTP API refuses them to clients. While the store
//! refuses writes (read-only, a CRISIS hold) the probe writes nothing and passes: the refusal is reported by the
//! store's own checks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heal::check::{CheckContext, CheckOutcome, HealthCheck, Tier};
use heal::clock::{Timestamp, US_PER_MS};
use heal::{Issue, IssueKind, RepairStrategy, Sample, Subject};
use store::{Document, Store, StoreSubject};

use crate::machine::ProcessProbe;

/// The probe document's id.
pub fn probe_id() -> String {
    format!("{}probe", store::RESERVED_ID_PREFIX)
}

/// Steps of one probe run: put, get, search, delete.
const PROBE_STEPS: u64 = 4;

/// Put, get, search and delete of one reserved document, each against a latency bound.
pub struct SyntheticProbe {
    store: Arc<Store>,
    step_max: Duration,
    interval_us: u64,
    last: Mutex<Vec<(String, u64)>>,
}

impl std::fmt::Debug for SyntheticProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyntheticProbe")
            .field("step_max", &self.step_max)
            .finish_non_exhaustive()
    }
}

impl SyntheticProbe {
    /// A probe of `store`, each step bounded by `step_max`, run at most every `interval_ms`.
    pub fn new(store: Arc<Store>, step_max: Duration, interval_ms: u64) -> Self {
        Self {
            store,
            step_max,
            interval_us: interval_ms.saturating_mul(US_PER_MS),
            last: Mutex::new(Vec::new()),
        }
    }

    /// The latest run's steps and their latencies, µs.
    pub fn last_steps(&self) -> Vec<(String, u64)> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn step<T>(
        &self,
        name: &str,
        at: Timestamp,
        steps: &mut Vec<(String, u64)>,
        f: impl FnOnce() -> Result<T, String>,
    ) -> Result<T, Box<Issue>> {
        let t0 = Instant::now();
        let out = f();
        let took = t0.elapsed();
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        steps.push((name.to_string(), us));
        let v = out.map_err(|e| {
            Box::new(
                Issue::new(
                    IssueKind::OperationError,
                    "probe_failed",
                    format!("probe_{name}"),
                    format!("the synthetic probe's {name} of {} failed: {e}", probe_id()),
                    "medic.probe",
                    at,
                )
                .evidence("step", name)
                .evidence("error", e),
            )
        })?;
        if took > self.step_max {
            return Err(Box::new(Issue::new(
                IssueKind::Resource,
                "probe_slow",
                format!("probe_{name}"),
                format!(
                    "the synthetic probe's {name} took {} ms, over checks.probe_step_ms_max = {} ms",
                    took.as_millis(),
                    self.step_max.as_millis()
                ),
                "medic.probe",
                at,
            )
            .evidence("step", name)
            .evidence("latency_us", us.to_string())
            .evidence("bound_ms", self.step_max.as_millis().to_string())));
        }
        Ok(v)
    }

    fn run_steps(&self, at: Timestamp, steps: &mut Vec<(String, u64)>) -> Result<(), Box<Issue>> {
        let id = probe_id();
        let doc = Document {
            text: "medic synthetic probe".into(),
            vector: None,
            meta: None,
        };
        self.step("put", at, steps, || {
            self.store.put(&id, doc.clone()).map_err(|e| e.to_string())
        })?;
        self.step("get", at, steps, || match self.store.get(&id) {
            Ok(Some(d)) if d == doc => Ok(()),
            Ok(Some(_)) => Err("read back a different document".to_string()),
            Ok(None) => Err("the document just put is missing".to_string()),
            Err(e) => Err(e.to_string()),
        })?;
        let dim = self.store.stats().vector_dim.unwrap_or(1).max(1) as usize;
        self.step("search", at, steps, || {
            let query = vec![1.0f32; dim];
            index_vector::scan::search_store(
                &self.store,
                store::collection::DEFAULT,
                &query,
                1,
                index_vector::Metric::Cosine,
                &|_| true,
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        })?;
        self.step("delete", at, steps, || match self.store.delete(&id) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err("the document just put was not there to delete".to_string()),
            Err(e) => Err(e.to_string()),
        })
    }
}

impl HealthCheck for SyntheticProbe {
    fn name(&self) -> &str {
        "medic.probe"
    }
    fn tier(&self) -> Tier {
        Tier::Shallow
    }
    fn interval_us(&self) -> u64 {
        self.interval_us
    }
    /// The four steps' bounds together: each step is judged against `checks.probe_step_ms_max` on its own (a
    /// `probe_slow` issue names the step), so the check as a whole must not be cut off sooner. The shallow tier's
    /// default (100 ms) is shorter than two fsyncs on a busy disk and made an idle daemon open `check_timeout`
    /// incidents for a probe whose every step was within its bound.
    fn timeout_us(&self) -> u64 {
        u64::try_from(self.step_max.as_micros())
            .unwrap_or(u64::MAX)
            .saturating_mul(PROBE_STEPS)
            .max(Tier::Shallow.default_timeout_us())
    }
    fn run(&self, ctx: &CheckContext<'_>) -> CheckOutcome {
        let st = self.store.stats();
        if let Some(why) = st.read_only.or(st.poisoned) {
            return CheckOutcome::pass(format!("skipped: the store refuses writes ({why})"));
        }
        let mut steps = Vec::new();
        let out = self.run_steps(ctx.clock.now(), &mut steps);
        let line: Vec<String> = steps.iter().map(|(s, us)| format!("{s} {us} µs")).collect();
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = steps;
        match out {
            Ok(()) => CheckOutcome::pass(format!("put, get, search, delete: {}", line.join(", "))),
            Err(issue) => {
                // A failed step may leave the document behind: take it away (best effort; the next run retries).
                let _ = self.store.delete(&probe_id());
                CheckOutcome::fail(issue.summary.clone(), vec![*issue])
            }
        }
    }
}

/// The store's subject, the process's readings and the synthetic probe.
pub struct MedicSubject {
    inner: Arc<StoreSubject>,
    process: Arc<dyn ProcessProbe>,
    probe: Option<Arc<SyntheticProbe>>,
    /// Each repair step bounded by this (the repair watchdog), when set.
    watchdog: Option<(std::time::Duration, crate::watchdog::Abandoned)>,
    /// The configured targets and their playbooks, once the daemon attached them.
    targets: std::sync::OnceLock<Arc<crate::target::Targets>>,
    /// The alerts a fleet's Alertmanager reports firing (`POST /v1/alertmanager`), checked every shallow cycle.
    alerts: Arc<crate::alertmanager::AlertInbox>,
    /// The `derived.attached` check and its repair, once the daemon attached its indexes.
    attach_watch: std::sync::OnceLock<Arc<crate::attached::AttachWatch>>,
}

impl MedicSubject {
    /// Bounds every strategy's repair step by `timeout` ([`crate::watchdog`]).
    pub fn with_repair_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.watchdog = Some((timeout, crate::watchdog::Abandoned::default()));
        self
    }

    /// `inner` plus `process`'s readings, and `probe` among the checks when given.
    pub fn new(
        inner: Arc<StoreSubject>,
        process: Arc<dyn ProcessProbe>,
        probe: Option<Arc<SyntheticProbe>>,
    ) -> Self {
        Self {
            inner,
            process,
            probe,
            watchdog: None,
            targets: std::sync::OnceLock::new(),
            alerts: Arc::default(),
            attach_watch: std::sync::OnceLock::new(),
        }
    }

    /// The Alertmanager inbox.
    pub fn alert_inbox(&self) -> &Arc<crate::alertmanager::AlertInbox> {
        &self.alerts
    }

    /// Adds the targets (their checks, samples and strategies) to what the engine watches; once.
    pub fn attach_targets(&self, targets: Arc<crate::target::Targets>) -> Result<(), String> {
        self.targets
            .set(targets)
            .map_err(|_| "targets are already attached".to_string())
    }

    /// Adds the `derived.attached` check and its `derived_attach` repair (the daemon, once its indexes are
    /// attached); once.
    pub fn watch_attachments(&self, watch: Arc<crate::attached::AttachWatch>) {
        let _once = self.attach_watch.set(watch);
    }

    /// The attached targets, if any.
    pub fn targets(&self) -> Option<&Arc<crate::target::Targets>> {
        self.targets.get()
    }
}

impl Subject for MedicSubject {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        let mut checks = self.inner.checks();
        if let Some(p) = &self.probe {
            checks.push(p.clone());
        }
        if let Some(t) = self.targets.get() {
            checks.extend(t.checks());
        }
        if let Some(w) = self.attach_watch.get() {
            checks.push(w.clone());
        }
        checks.push(Arc::new(crate::alertmanager::FiringCheck(
            self.alerts.clone(),
        )));
        checks
    }
    fn strategies(&self) -> Vec<Arc<dyn RepairStrategy>> {
        let mut strategies = self.inner.strategies();
        if let Some(t) = self.targets.get() {
            strategies.extend(t.strategies());
        }
        if let Some(w) = self.attach_watch.get() {
            strategies.push(w.clone());
        }
        let Some((timeout, abandoned)) = &self.watchdog else {
            return strategies;
        };
        strategies
            .into_iter()
            .map(|s| {
                Arc::new(crate::watchdog::Watchdog::new(
                    s,
                    *timeout,
                    abandoned.clone(),
                )) as Arc<dyn RepairStrategy>
            })
            .collect()
    }
    fn sample(&self, now: Timestamp) -> Vec<Sample> {
        let mut out = self.inner.sample(now);
        match self.process.read() {
            Ok(r) => out.extend(r.samples(now)),
            Err(e) => tracing::debug!("process readings unavailable: {e}"),
        }
        if let Some(t) = self.targets.get() {
            out.extend(t.sample(now));
        }
        out
    }
    fn drain_issues(&self) -> Vec<Issue> {
        let mut issues = self.inner.drain_issues();
        if let Some(t) = self.targets.get() {
            issues.extend(t.drain_issues());
        }
        issues
    }
    fn stop_writes(&self, reason: Option<&str>) -> Result<(), String> {
        self.inner.stop_writes(reason)
    }
    /// The store's files and disk, each target, and each alert firing.
    fn resources(&self) -> Vec<String> {
        let mut out = self.inner.resources();
        if let Some(t) = self.targets.get() {
            out.extend(t.resources());
        }
        let now = heal::Clock::now(&heal::SystemClock::new());
        out.extend(self.alerts.firing(now).into_iter().map(|f| f.resource));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heal::Clock as _;

    fn run(probe: &SyntheticProbe) -> CheckOutcome {
        let clock = heal::SystemClock::new();
        probe.run(&CheckContext {
            clock: &clock,
            deadline: clock.now() + 60_000_000,
        })
    }

    #[test]
    fn a_step_over_its_bound_is_an_issue_and_leaves_no_document() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), store::StoreConfig::default()).unwrap());
        let ok = SyntheticProbe::new(store.clone(), Duration::from_secs(60), 1_000);
        assert!(run(&ok).passed);
        let steps: Vec<String> = ok.last_steps().into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, ["put", "get", "search", "delete"]);
        // No step is quicker than zero: the put is over its bound.
        let strict = SyntheticProbe::new(store.clone(), Duration::ZERO, 1_000);
        let out = run(&strict);
        assert!(!out.passed);
        assert_eq!(out.issues[0].code, "probe_slow");
        assert_eq!(out.issues[0].resource, "probe_put");
        assert!(
            out.issues[0]
                .summary
                .contains("over checks.probe_step_ms_max = 0 ms"),
            "{}",
            out.issues[0].summary
        );
        assert_eq!(store.get(&probe_id()).unwrap(), None, "taken away again");
        // The check as a whole is cut off only after every step's bound, never sooner than the shallow tier's.
        assert_eq!(ok.timeout_us(), 4 * 60 * 1_000_000);
        assert_eq!(strict.timeout_us(), Tier::Shallow.default_timeout_us());
        assert!(store.scan(None, 10).unwrap().is_empty(), "never listed");
    }
}
