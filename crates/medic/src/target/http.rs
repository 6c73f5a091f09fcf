//! The HTTP(S) endpoint target: a GET every `interval_ms` within `timeout_ms` (at most
//! [`super::PROBE_TIMEOUT_MS_MAX`], since the probe runs inside the engine's cycle), judged by its status and,
//! when configured, a text its body must contain (the first [`BODY_BYTES_MAX`] bytes are read). Its latency is a
//! gauge the detectors judge, `up` a state; `endpoint_down` is reported after `failures_before_down` failed probes
//! in a row, and each playbook condition over its readings is judged after every probe.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heal::check::{CheckContext, CheckOutcome, Tier};
use heal::clock::{Timestamp, US_PER_MS};
use heal::issue::{Issue, IssueKind};
use heal::{HealthCheck, RepairStrategy, Sample, Subject};

use super::{ConditionTrigger, TargetConfig, resource};

/// The most body bytes a probe reads.
pub const BODY_BYTES_MAX: u64 = 64 * 1024;

#[derive(Default)]
struct State {
    consecutive_failures: u32,
    readings: BTreeMap<&'static str, f64>,
    /// Readings not yet handed to the engine as samples.
    fresh: bool,
}

/// The probe and its state: the target's check.
pub struct HttpProbe {
    config: TargetConfig,
    check_name: String,
    agent: ureq::Agent,
    triggers: Vec<ConditionTrigger>,
    state: Mutex<State>,
}

/// One probe's result: the status (when an answer came) and why it failed, if it did.
struct ProbeResult {
    status: Option<u16>,
    latency_ms: f64,
    failure: Option<String>,
}

impl HttpProbe {
    fn probe(&self) -> ProbeResult {
        let url = self.config.url.as_deref().unwrap_or("");
        let started = Instant::now();
        let result = self.agent.get(url).call();
        let mut out = ProbeResult {
            status: None,
            latency_ms: 0.0,
            failure: None,
        };
        match result {
            Err(e) => out.failure = Some(format!("GET {url}: {e}")),
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                out.status = Some(status);
                let mut body = Vec::new();
                let read = resp
                    .body_mut()
                    .as_reader()
                    .take(BODY_BYTES_MAX)
                    .read_to_end(&mut body);
                if status != self.config.expect_status {
                    out.failure = Some(format!(
                        "GET {url}: status {status}, expected {}",
                        self.config.expect_status
                    ));
                } else if let Err(e) = read {
                    out.failure = Some(format!("GET {url}: reading the body: {e}"));
                } else if let Some(m) = &self.config.body_match
                    && !String::from_utf8_lossy(&body).contains(m.as_str())
                {
                    out.failure = Some(format!(
                        "GET {url}: the body's first {BODY_BYTES_MAX} bytes do not contain {m:?}"
                    ));
                }
            }
        }
        out.latency_ms = started.elapsed().as_secs_f64() * 1_000.0;
        out
    }
}

impl HealthCheck for HttpProbe {
    fn name(&self) -> &str {
        &self.check_name
    }
    /// [`TargetConfig::probe_decided`] on the failed probes in a row.
    fn decided(&self) -> bool {
        let failures = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .consecutive_failures;
        self.config.probe_decided(failures)
    }
    fn tier(&self) -> Tier {
        Tier::Shallow
    }
    fn timeout_us(&self) -> u64 {
        (self.config.timeout_ms + 1_000) * US_PER_MS
    }
    fn interval_us(&self) -> u64 {
        self.config.interval_ms * US_PER_MS
    }
    fn run(&self, ctx: &CheckContext<'_>) -> CheckOutcome {
        let now = ctx.clock.now();
        let r = self.probe();
        let name = &self.config.name;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if r.failure.is_some() {
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        } else {
            state.consecutive_failures = 0;
        }
        let failures = state.consecutive_failures;
        state.readings = BTreeMap::from([
            ("latency_ms", r.latency_ms),
            ("status", f64::from(r.status.unwrap_or(0))),
            ("up", f64::from(u8::from(r.failure.is_none()))),
            ("consecutive_failures", f64::from(failures)),
        ]);
        state.fresh = true;
        let readings = state.readings.clone();
        drop(state);
        let mut issues = Vec::new();
        if let Some(why) = &r.failure
            && failures >= self.config.failures_before_down
        {
            let mut issue = Issue::new(
                IssueKind::CheckFailed,
                "endpoint_down",
                resource(name),
                format!("target {name}: {why} ({failures} failed probes in a row)"),
                &self.check_name,
                now,
            );
            issue.score = 1.0;
            issue.evidence = vec![
                ("url".into(), self.config.url.clone().unwrap_or_default()),
                ("failure".into(), why.clone()),
                ("consecutive_failures".into(), failures.to_string()),
            ];
            issues.push(issue);
        }
        for t in &self.triggers {
            issues.extend(t.judge(name, &readings, &self.check_name, now));
        }
        match (&r.failure, issues.is_empty()) {
            (_, false) => CheckOutcome::fail(issues[0].summary.clone(), issues),
            (Some(why), true) => CheckOutcome::pass(format!(
                "{why} ({failures} of {} failures before endpoint_down)",
                self.config.failures_before_down
            )),
            (None, true) => CheckOutcome::pass(format!(
                "status {} in {:.1} ms",
                r.status.unwrap_or(0),
                r.latency_ms
            )),
        }
    }
}

/// An HTTP(S) endpoint medic probes.
pub struct HttpTarget {
    probe: Arc<HttpProbe>,
}

impl HttpTarget {
    /// The target of `config` (kind `http`, validated), judging `triggers` after each probe.
    pub fn new(config: TargetConfig, triggers: Vec<ConditionTrigger>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
            .build()
            .into();
        Self {
            probe: Arc::new(HttpProbe {
                check_name: format!("target.{}.probe", config.name),
                config,
                agent,
                triggers,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Its check, `target.<name>.probe`.
    pub fn check(&self) -> Arc<dyn HealthCheck> {
        self.probe.clone()
    }
}

impl Subject for HttpTarget {
    fn name(&self) -> &str {
        &self.probe.config.name
    }
    fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        vec![self.check()]
    }
    fn strategies(&self) -> Vec<Arc<dyn RepairStrategy>> {
        Vec::new()
    }
    fn sample(&self, now: Timestamp) -> Vec<Sample> {
        let mut state = self.probe.state.lock().unwrap_or_else(|p| p.into_inner());
        if !std::mem::take(&mut state.fresh) {
            return Vec::new();
        }
        let name = &self.probe.config.name;
        let r = &state.readings;
        let get = |k: &str| r.get(k).copied().unwrap_or(0.0);
        vec![
            Sample::gauge(format!("target.{name}.latency_ms"), get("latency_ms"), now),
            Sample::state(format!("target.{name}.up"), get("up") > 0.0, now),
        ]
    }
    fn drain_issues(&self) -> Vec<Issue> {
        Vec::new()
    }
}
