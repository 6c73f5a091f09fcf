//! The Prometheus target: medic reads a fleet's metrics from a Prometheus server. Every `interval_ms` each PromQL
//! query of `queries` (reading name → query) is evaluated through the HTTP API (`GET /api/v1/query`, within
//! `timeout_ms` for all of them), and each value becomes a gauge sample `target.<name>.<reading>` that the engine's
//! detectors judge like medic's own metrics. A scalar is its value; an instant vector its largest element (the worst
//! instance), and an empty vector no sample. `prometheus_down` is reported after `failures_before_down` probes in a
//! row the server did not answer; a query the server refuses (a bad query, a range vector) is `promql_failed`, naming
//! the reading and Prometheus's error. A playbook condition over its readings (`target.<name>.<reading> > 0.05`) is
//! judged after every answered probe and raises the playbook's code on the playbook's target.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heal::check::{CheckContext, CheckOutcome, Tier};
use heal::clock::{Timestamp, US_PER_MS};
use heal::issue::{Issue, IssueKind};
use heal::{HealthCheck, RepairStrategy, Sample, Subject};
use serde_json::Value;

use super::{ConditionTrigger, TargetConfig, resource};

/// The issue codes of a Prometheus target.
pub const CODES: [&str; 2] = ["prometheus_down", "promql_failed"];
/// The most queries one target evaluates.
pub const QUERIES_MAX: usize = 32;
/// The longest query, bytes.
pub const QUERY_BYTES_MAX: usize = 4_096;
/// The most bytes of one answer read.
pub const ANSWER_BYTES_MAX: u64 = 1024 * 1024;

#[derive(Default)]
struct State {
    consecutive_failures: u32,
    /// The values of the last probe, not yet handed to the engine.
    fresh: Option<BTreeMap<String, f64>>,
}

/// What one query gave.
enum Answer {
    Value(f64),
    Empty,
    /// The server answered, and refused the query.
    Refused(String),
    /// No usable answer.
    Unreachable(String),
}

/// The probe and its state: the target's check.
pub struct PromProbe {
    config: TargetConfig,
    check_name: String,
    agent: ureq::Agent,
    triggers: Vec<ConditionTrigger>,
    state: Mutex<State>,
}

fn number(v: &Value) -> Option<f64> {
    // [<unix time>, "<value>"]
    v.get(1)?.as_str()?.parse::<f64>().ok()
}

impl PromProbe {
    fn query(&self, q: &str, deadline: Instant) -> Answer {
        let url = format!(
            "{}/api/v1/query",
            self.config
                .url
                .as_deref()
                .unwrap_or("")
                .trim_end_matches('/')
        );
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Answer::Unreachable(format!(
                "no time left of timeout_ms = {}",
                self.config.timeout_ms
            ));
        }
        let resp = self
            .agent
            .get(&url)
            .query("query", q)
            .config()
            .timeout_global(Some(left))
            .build()
            .call();
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => return Answer::Unreachable(format!("GET {url}: {e}")),
        };
        let status = resp.status().as_u16();
        let body: Value = match resp
            .body_mut()
            .with_config()
            .limit(ANSWER_BYTES_MAX)
            .read_json()
        {
            Ok(v) => v,
            Err(e) if status >= 500 => {
                return Answer::Unreachable(format!("GET {url}: status {status}: {e}"));
            }
            Err(e) => {
                return Answer::Unreachable(format!(
                    "GET {url}: status {status}, not Prometheus's JSON: {e}"
                ));
            }
        };
        if body["status"] != "success" {
            let why = body["error"].as_str().unwrap_or("no error given");
            return if status >= 500 {
                Answer::Unreachable(format!("GET {url}: status {status}: {why}"))
            } else {
                Answer::Refused(format!(
                    "{}: {why}",
                    body["errorType"].as_str().unwrap_or("error")
                ))
            };
        }
        let data = &body["data"];
        match data["resultType"].as_str() {
            Some("scalar") => number(&data["result"]).map_or(Answer::Empty, Answer::Value),
            Some("vector") => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| number(&s["value"]))
                .filter(|v| v.is_finite())
                .reduce(f64::max)
                .map_or(Answer::Empty, Answer::Value),
            other => Answer::Refused(format!(
                "result type {}: accepted a scalar or an instant vector",
                other.unwrap_or("none")
            )),
        }
    }
}

impl HealthCheck for PromProbe {
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
        let name = &self.config.name;
        let deadline = Instant::now() + Duration::from_millis(self.config.timeout_ms);
        let mut values = BTreeMap::new();
        let mut refused = Vec::new();
        let mut unreachable = None;
        for (reading, q) in &self.config.queries {
            match self.query(q, deadline) {
                Answer::Value(v) => {
                    values.insert(reading.clone(), v);
                }
                Answer::Empty => {}
                Answer::Refused(why) => refused.push((reading.clone(), why)),
                Answer::Unreachable(why) => {
                    unreachable = Some(why);
                    break;
                }
            }
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.consecutive_failures = match unreachable {
            Some(_) => state.consecutive_failures.saturating_add(1),
            None => 0,
        };
        let failures = state.consecutive_failures;
        if unreachable.is_none() {
            state.fresh = Some(values.clone());
        }
        drop(state);
        let mut issues = Vec::new();
        if let Some(why) = &unreachable
            && failures >= self.config.failures_before_down
        {
            let mut issue = Issue::new(
                IssueKind::CheckFailed,
                "prometheus_down",
                resource(name),
                format!("target {name}: {why} ({failures} failed probes in a row)"),
                &self.check_name,
                now,
            );
            issue.score = 1.0;
            issue.evidence = vec![
                ("url".into(), self.config.url.clone().unwrap_or_default()),
                ("failure".into(), why.clone()),
            ];
            issues.push(issue);
        }
        for (reading, why) in &refused {
            let mut issue = Issue::new(
                IssueKind::CheckFailed,
                "promql_failed",
                resource(name),
                format!("target {name}: query {reading} refused by Prometheus: {why}"),
                &self.check_name,
                now,
            );
            issue.score = 0.9;
            issue.evidence = vec![
                ("reading".into(), reading.clone()),
                (
                    "query".into(),
                    self.config
                        .queries
                        .get(reading)
                        .cloned()
                        .unwrap_or_default(),
                ),
                ("error".into(), why.clone()),
            ];
            issues.push(issue);
        }
        if unreachable.is_none() {
            for t in &self.triggers {
                issues.extend(t.judge(name, &values, &self.check_name, now));
            }
        }
        if let Some(first) = issues.first() {
            return CheckOutcome::fail(first.summary.clone(), issues);
        }
        match unreachable {
            Some(why) => CheckOutcome::pass(format!(
                "{why} ({failures} of {} failures before prometheus_down)",
                self.config.failures_before_down
            )),
            None => CheckOutcome::pass(format!(
                "{} of {} queries gave a value",
                values.len(),
                self.config.queries.len()
            )),
        }
    }
}

/// A Prometheus server whose queries medic watches.
pub struct PrometheusTarget {
    probe: Arc<PromProbe>,
}

impl PrometheusTarget {
    /// The target of `config` (kind `prometheus`, validated), judging `triggers` (playbook conditions over its
    /// readings) after each probe the server answered.
    pub fn new(config: TargetConfig, triggers: Vec<ConditionTrigger>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
            .build()
            .into();
        Self {
            probe: Arc::new(PromProbe {
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

impl Subject for PrometheusTarget {
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
        let Some(values) = state.fresh.take() else {
            return Vec::new();
        };
        let name = &self.probe.config.name;
        values
            .into_iter()
            .map(|(reading, v)| Sample::gauge(format!("target.{name}.{reading}"), v, now))
            .collect()
    }
    fn drain_issues(&self) -> Vec<Issue> {
        Vec::new()
    }
}

/// A Prometheus target's own fields: an http(s) URL, 1..=32 queries named `[a-z0-9_]`, a probe timeout.
pub fn validate(t: &TargetConfig) -> Result<(), String> {
    let n = &t.name;
    let bad = |key: &str, value: String, accepted: &str| {
        Err(format!(
            "targets[{n:?}].{key} = {value}: accepted {accepted}"
        ))
    };
    let url = t.url.as_deref().unwrap_or("");
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 4096 {
        return bad(
            "url",
            format!("{url:?}"),
            "the Prometheus server's http:// or https:// base URL, e.g. \"http://prometheus:9090\"",
        );
    }
    if t.queries.is_empty() || t.queries.len() > QUERIES_MAX {
        return bad(
            "queries",
            format!("{} queries", t.queries.len()),
            &format!("1..={QUERIES_MAX} of reading = \"PromQL\" (queries_max)"),
        );
    }
    for (reading, q) in &t.queries {
        if reading.is_empty()
            || reading.len() > 64
            || !reading
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return bad(
                "queries",
                format!("{reading:?}"),
                "reading names of 1..=64 of a-z, 0-9, `_`",
            );
        }
        if q.trim().is_empty() || q.len() > QUERY_BYTES_MAX {
            return bad(
                &format!("queries.{reading}"),
                format!("<{} bytes>", q.len()),
                &format!("a PromQL query of 1..={QUERY_BYTES_MAX} bytes (query_bytes_max)"),
            );
        }
    }
    if !(1..=super::PROBE_TIMEOUT_MS_MAX).contains(&t.timeout_ms) {
        return bad(
            "timeout_ms",
            t.timeout_ms.to_string(),
            &format!("1..={} (probe_timeout_ms_max)", super::PROBE_TIMEOUT_MS_MAX),
        );
    }
    if !(1..=100).contains(&t.failures_before_down) {
        return bad(
            "failures_before_down",
            t.failures_before_down.to_string(),
            "1..=100",
        );
    }
    if !t.command.is_empty() || t.dir.is_some() || !t.env.is_empty() || t.body_match.is_some() {
        return bad(
            "command",
            format!("{:?}", t.command),
            "nothing for a prometheus target (command, env, dir are for kind = \"process\", body_match for \"http\")",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{TargetKind, validate as validate_all};
    use super::*;

    #[test]
    fn a_prometheus_target_is_validated_naming_the_field() {
        let good = TargetConfig {
            name: "prom".into(),
            kind: TargetKind::Prometheus,
            url: Some("http://127.0.0.1:9090".into()),
            queries: BTreeMap::from([("up".to_string(), "max(up)".to_string())]),
            ..TargetConfig::default()
        };
        assert_eq!(validate_all(std::slice::from_ref(&good)), Ok(()));
        let err = |edit: &dyn Fn(&mut TargetConfig)| {
            let mut t = good.clone();
            edit(&mut t);
            validate_all(&[t]).unwrap_err()
        };
        assert!(err(&|t| t.queries.clear()).contains("targets[\"prom\"].queries = 0 queries"));
        assert!(
            err(&|t| {
                t.queries.insert("Error-Rate".into(), "1".into());
            })
            .contains("queries = \"Error-Rate\"")
        );
        assert!(
            err(&|t| {
                t.queries.insert("x".into(), " ".into());
            })
            .contains("targets[\"prom\"].queries.x")
        );
        assert!(err(&|t| t.url = Some("prometheus:9090".into())).contains(".url"));
        // Queries belong to a prometheus target only.
        let mut http = good.clone();
        http.kind = TargetKind::Http;
        assert!(
            validate_all(&[http])
                .unwrap_err()
                .contains("queries are for kind = \"prometheus\"")
        );
    }
}
