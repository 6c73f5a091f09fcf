//! Targets: services around medic that its engine watches beside the store, configured as `[[targets]]`.
//!
//! Each target is a `heal::Subject` of its own ([`http::HttpTarget`], [`process::ProcessTarget`],
//! [`postgres::PostgresTarget`], [`prometheus::PrometheusTarget`]); [`Targets`]
//! joins them, with the playbooks' strategies, into the one subject the daemon adds to the store's. Their issues
//! are on the resource `target.<name>` and their readings are samples named `target.<name>.<reading>`. A target
//! issue no playbook (nor a process target's built-in restart, nor a PostgreSQL target's default playbooks) repairs
//! has no strategy, so the engine escalates it.
//!
//! The engine's seams are all a new kind needs: a check reporting issue codes, samples, strategies. A Kubernetes
//! target (rollout restart, scale, undo of a Deployment) would be one more kind here and one more action in the
//! playbook library; nothing in `heal` changes.

pub mod http;
pub mod postgres;
pub mod process;
pub mod prometheus;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use heal::clock::Timestamp;
use heal::issue::{Issue, IssueKind};
use heal::{HealthCheck, RepairStrategy, Sample, Subject};
use serde::{Deserialize, Serialize};

use crate::playbook::{Condition, Playbook, PlaybookStrategy, TargetCatalog};

/// The most targets configured.
pub const TARGETS_MAX: usize = 64;
/// The longest interval or timeout of a target, ms (one hour).
pub const TARGET_MS_MAX: u64 = 3_600_000;
/// The longest probe timeout, ms: a probe runs inside the engine's cycle and holds it at most this long.
pub const PROBE_TIMEOUT_MS_MAX: u64 = 10_000;
/// The longest name of a postgres target, bytes.
pub const POSTGRES_NAME_BYTES_MAX: usize = 40;
/// The longest interval between two amcheck runs of a postgres target, ms (a week).
pub const AMCHECK_INTERVAL_MS_MAX: u64 = 7 * 24 * 3_600_000;
/// The longest amcheck run, ms (ten minutes: a deep check holds the cycle while it runs).
pub const AMCHECK_TIMEOUT_MS_MAX: u64 = 600_000;

/// What a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// An HTTP(S) endpoint probed on a schedule.
    #[default]
    Http,
    /// A command medic starts and supervises.
    Process,
    /// A PostgreSQL server reached over a connection string.
    Postgres,
    /// A Prometheus server whose PromQL queries are read as samples.
    Prometheus,
}

impl TargetKind {
    /// Its name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Http => "http",
            TargetKind::Process => "process",
            TargetKind::Postgres => "postgres",
            TargetKind::Prometheus => "prometheus",
        }
    }

    /// The issue codes its check reports.
    pub fn codes(self) -> &'static [&'static str] {
        match self {
            TargetKind::Http => &["endpoint_down"],
            TargetKind::Process => &process::CODES,
            TargetKind::Postgres => &postgres::CODES,
            TargetKind::Prometheus => &prometheus::CODES,
        }
    }

    /// The readings a trigger condition may name (samples `target.<name>.<reading>`).
    pub fn readings(self) -> &'static [&'static str] {
        match self {
            TargetKind::Http => &["latency_ms", "status", "up", "consecutive_failures"],
            TargetKind::Process => &[
                "up",
                "rss_bytes",
                "cpu_seconds",
                "fds",
                "threads",
                "restarts",
            ],
            TargetKind::Postgres => postgres::READINGS,
            // Its readings are the names of its queries, configured per target (`catalog`).
            TargetKind::Prometheus => &[],
        }
    }
}

/// `[[targets]]`: one service medic watches. Fields apply by kind (the others must stay unset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    /// A unique name (`[a-z0-9_-]`, not `store`): issues are on `target.<name>`.
    pub name: String,
    /// `http`, `process` or `postgres`.
    pub kind: TargetKind,
    /// How often the check runs, ms.
    pub interval_ms: u64,
    /// http: the URL probed with GET. postgres: the connection string (`postgres://user:password@host:port/db` or
    /// libpq `key=value` pairs); its password is redacted wherever it is shown.
    pub url: Option<String>,
    /// http, postgres: the probe's time limit, ms (at most 10 000: the probe holds the engine's cycle).
    pub timeout_ms: u64,
    /// http: the status a healthy answer has.
    pub expect_status: u16,
    /// http: text a healthy answer's body contains (the first 64 KiB are read).
    pub body_match: Option<String>,
    /// http, postgres: consecutive failed probes before `endpoint_down` (`pg_down`) is reported.
    pub failures_before_down: u32,
    /// process: the program and its arguments (no shell); or instead `pid` or `pidfile`.
    pub command: Vec<String>,
    /// process: the pid of a process medic watches but did not start.
    pub pid: Option<u32>,
    /// process: the pidfile of a process medic watches but did not start (read anew every check).
    pub pidfile: Option<PathBuf>,
    /// process: extra environment.
    pub env: BTreeMap<String, String>,
    /// process: its working directory.
    pub dir: Option<PathBuf>,
    /// process: restarts allowed within `restart_window_ms`; one more and medic gives up and escalates.
    pub restarts_max: u32,
    /// process: the window restarts are counted in, ms.
    pub restart_window_ms: u64,
    /// process: the wait before a restart, doubled for each restart in the window (at most a minute), ms.
    pub backoff_ms: u64,
    /// postgres: `pg_connections_exhausted` at this fraction of `max_connections` in use, (0, 1].
    pub connections_used_max: f64,
    /// postgres: `pg_idle_in_transaction` for a session idle in a transaction this long, s.
    pub idle_in_transaction_s_max: u64,
    /// postgres: `pg_long_query` for a statement running this long, s.
    pub query_s_max: u64,
    /// postgres: `pg_bloat` for a table whose dead tuples are this fraction of its tuples, (0, 1].
    pub dead_tuple_ratio_max: f64,
    /// postgres: tables with fewer tuples (live + dead) are not judged for bloat.
    pub bloat_rows_min: u64,
    /// postgres: `pg_replication_lag` for a replica replaying this far behind, s.
    pub replication_lag_s_max: u64,
    /// postgres: how often `bt_index_check` runs over the B-tree indexes (deep tier), ms.
    pub amcheck_interval_ms: u64,
    /// postgres: the amcheck run's time limit, ms.
    pub amcheck_timeout_ms: u64,
    /// postgres: the most indexes one amcheck run verifies (smallest first).
    pub amcheck_indexes_max: u32,
    /// postgres: the program and arguments (no shell) `run_restart_command` runs, e.g.
    /// `["systemctl", "restart", "postgresql"]`; none: no restart (a `pg_down` is escalated).
    pub restart_command: Vec<String>,
    /// prometheus: reading name → PromQL query, each value a sample `target.<name>.<reading>`.
    pub queries: BTreeMap<String, String>,
}

impl TargetConfig {
    /// Whether a probe with `failures` failed probes in a row has reached its verdict: none failed (up), or
    /// `failures_before_down` did (down). Part-way (after a start, say) it has not decided whether the target is down.
    pub fn probe_decided(&self, failures: u32) -> bool {
        failures == 0 || failures >= self.failures_before_down
    }
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            kind: TargetKind::Http,
            interval_ms: 5_000,
            url: None,
            timeout_ms: 2_000,
            expect_status: 200,
            body_match: None,
            failures_before_down: 3,
            command: Vec::new(),
            pid: None,
            pidfile: None,
            env: BTreeMap::new(),
            dir: None,
            restarts_max: 5,
            restart_window_ms: 600_000,
            backoff_ms: 1_000,
            connections_used_max: 0.9,
            idle_in_transaction_s_max: 300,
            query_s_max: 300,
            dead_tuple_ratio_max: 0.2,
            bloat_rows_min: 1_000,
            replication_lag_s_max: 60,
            amcheck_interval_ms: 3_600_000,
            amcheck_timeout_ms: 30_000,
            amcheck_indexes_max: 100,
            restart_command: Vec::new(),
            queries: BTreeMap::new(),
        }
    }
}

/// Checks every target's fields; the error names the target, key, value and what is accepted.
pub fn validate(targets: &[TargetConfig]) -> Result<(), String> {
    if targets.len() > TARGETS_MAX {
        return Err(format!(
            "targets: {} targets is over targets_max = {TARGETS_MAX}",
            targets.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in targets {
        let n = &t.name;
        let bad = |key: &str, value: String, accepted: &str| {
            Err(format!(
                "targets[{n:?}].{key} = {value}: accepted {accepted}"
            ))
        };
        if n.is_empty()
            || n.len() > 64
            || !n
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            return bad("name", format!("{n:?}"), "1..=64 of a-z, 0-9, `_`, `-`");
        }
        if n == "store" {
            return bad(
                "name",
                "\"store\"".into(),
                "any name but `store` (the store is built in)",
            );
        }
        if !seen.insert(n.clone()) {
            return bad("name", format!("{n:?}"), "a name no other target has");
        }
        if !(100..=TARGET_MS_MAX).contains(&t.interval_ms) {
            return bad(
                "interval_ms",
                t.interval_ms.to_string(),
                &format!("100..={TARGET_MS_MAX}"),
            );
        }
        match t.kind {
            TargetKind::Http => {
                let url = t.url.as_deref().unwrap_or("");
                if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 4096
                {
                    return bad("url", format!("{url:?}"), "an http:// or https:// URL");
                }
                if !(1..=PROBE_TIMEOUT_MS_MAX).contains(&t.timeout_ms) {
                    return bad(
                        "timeout_ms",
                        t.timeout_ms.to_string(),
                        &format!("1..={PROBE_TIMEOUT_MS_MAX} (probe_timeout_ms_max)"),
                    );
                }
                if !(100..=599).contains(&t.expect_status) {
                    return bad("expect_status", t.expect_status.to_string(), "100..=599");
                }
                if !(1..=100).contains(&t.failures_before_down) {
                    return bad(
                        "failures_before_down",
                        t.failures_before_down.to_string(),
                        "1..=100",
                    );
                }
                if !t.command.is_empty() || t.dir.is_some() || !t.env.is_empty() {
                    return bad(
                        "command",
                        format!("{:?}", t.command),
                        "nothing for an http target (command, env, dir are for kind = \"process\")",
                    );
                }
                no_restart_command(t)?;
            }
            TargetKind::Process => {
                let given = [!t.command.is_empty(), t.pid.is_some(), t.pidfile.is_some()];
                if given.iter().filter(|g| **g).count() != 1 {
                    return bad(
                        "command",
                        format!(
                            "{:?} with pid {:?} and pidfile {:?}",
                            t.command, t.pid, t.pidfile
                        ),
                        "exactly one of command (medic starts it), pid or pidfile (medic watches it)",
                    );
                }
                if !t.command.is_empty() && (t.command[0].is_empty() || t.command.len() > 64) {
                    return bad(
                        "command",
                        format!("{:?}", t.command),
                        "a program and up to 63 arguments, e.g. [\"/usr/local/bin/worker\", \"--port\", \"9000\"]",
                    );
                }
                if let Some(pid) = t.pid
                    && !(1..=process::PID_MAX).contains(&pid)
                {
                    return bad("pid", pid.to_string(), &format!("1..={}", process::PID_MAX));
                }
                if let Some(f) = &t.pidfile
                    && (f.as_os_str().is_empty() || f.as_os_str().len() > 4096)
                {
                    return bad("pidfile", format!("{f:?}"), "a path of 1..=4096 bytes");
                }
                if t.command.is_empty() && (t.dir.is_some() || !t.env.is_empty()) {
                    return bad(
                        "env",
                        format!("{:?}", t.env),
                        "nothing for a watched process (env, dir are for a command medic starts)",
                    );
                }
                if t.url.is_some() || t.body_match.is_some() {
                    return bad(
                        "url",
                        format!("{:?}", t.url),
                        "nothing for a process target (url, body_match are for kind = \"http\")",
                    );
                }
                if !(1..=1_000).contains(&t.restarts_max) {
                    return bad("restarts_max", t.restarts_max.to_string(), "1..=1000");
                }
                if !(1_000..=86_400_000).contains(&t.restart_window_ms) {
                    return bad(
                        "restart_window_ms",
                        t.restart_window_ms.to_string(),
                        "1000..=86400000",
                    );
                }
                if t.backoff_ms > 60_000 {
                    return bad("backoff_ms", t.backoff_ms.to_string(), "0..=60000");
                }
                if !t.command.is_empty() {
                    // medic restarts what it started itself.
                    no_restart_command(t)?;
                } else {
                    restart_command_ok(t)?;
                }
            }
            TargetKind::Postgres => validate_postgres(t)?,
            TargetKind::Prometheus => {
                prometheus::validate(t)?;
                no_restart_command(t)?;
            }
        }
        if t.kind != TargetKind::Process && (t.pid.is_some() || t.pidfile.is_some()) {
            return bad(
                "pid",
                format!("{:?} / pidfile {:?}", t.pid, t.pidfile),
                "nothing for this kind (pid and pidfile are for kind = \"process\")",
            );
        }
        if t.kind != TargetKind::Prometheus && !t.queries.is_empty() {
            return bad(
                "queries",
                format!("{} queries", t.queries.len()),
                "nothing for this kind (queries are for kind = \"prometheus\")",
            );
        }
    }
    Ok(())
}

/// `restart_command` is for a postgres target or a watched process only (a process medic starts it restarts itself).
fn no_restart_command(t: &TargetConfig) -> Result<(), String> {
    if t.restart_command.is_empty() {
        return Ok(());
    }
    Err(format!(
        "targets[{:?}].restart_command = {:?}: accepted nothing for a {} target (restart_command is for kind = \"postgres\" or a process with pid or pidfile)",
        t.name,
        t.restart_command,
        t.kind.as_str()
    ))
}

/// A `restart_command`, when given: a program and up to 63 arguments.
fn restart_command_ok(t: &TargetConfig) -> Result<(), String> {
    let rc = &t.restart_command;
    if !rc.is_empty() && (rc[0].is_empty() || rc.len() > 64) {
        return Err(format!(
            "targets[{:?}].restart_command = {rc:?}: accepted a program and up to 63 arguments (no shell), e.g. [\"systemctl\", \"restart\", \"postgresql\"]",
            t.name
        ));
    }
    Ok(())
}

/// A postgres target's fields.
fn validate_postgres(t: &TargetConfig) -> Result<(), String> {
    let n = &t.name;
    let bad = |key: &str, value: String, accepted: &str| {
        Err(format!(
            "targets[{n:?}].{key} = {value}: accepted {accepted}"
        ))
    };
    if n.len() > POSTGRES_NAME_BYTES_MAX {
        return bad(
            "name",
            format!("{n:?}"),
            &format!(
                "at most {POSTGRES_NAME_BYTES_MAX} bytes for a postgres target (its default playbooks are named `pg-<what>.<name>`)"
            ),
        );
    }
    let url = t.url.as_deref().unwrap_or("");
    let shown = postgres::session::redact_url(url);
    if url.is_empty() || url.len() > 4096 {
        return bad(
            "url",
            format!("{shown:?}"),
            "a connection string, e.g. \"postgres://medic@127.0.0.1:5432/app\" or \"host=/run/postgresql dbname=app\"",
        );
    }
    if let Err(e) =
        postgres::session::config(url, std::time::Duration::from_millis(t.timeout_ms.max(1)))
    {
        return bad(
            "url",
            format!("{shown:?}"),
            &format!("a connection string libpq reads ({e})"),
        );
    }
    if !t.command.is_empty() || t.dir.is_some() || !t.env.is_empty() || t.body_match.is_some() {
        return bad(
            "command",
            format!("{:?}", t.command),
            "nothing for a postgres target (command, env, dir are for kind = \"process\", body_match for \"http\")",
        );
    }
    if !(1..=PROBE_TIMEOUT_MS_MAX).contains(&t.timeout_ms) {
        return bad(
            "timeout_ms",
            t.timeout_ms.to_string(),
            &format!("1..={PROBE_TIMEOUT_MS_MAX} (probe_timeout_ms_max)"),
        );
    }
    if !(1..=100).contains(&t.failures_before_down) {
        return bad(
            "failures_before_down",
            t.failures_before_down.to_string(),
            "1..=100",
        );
    }
    for (key, v) in [
        ("connections_used_max", t.connections_used_max),
        ("dead_tuple_ratio_max", t.dead_tuple_ratio_max),
    ] {
        if !(v > 0.0 && v <= 1.0) {
            return bad(key, v.to_string(), "a fraction in (0, 1], e.g. 0.9");
        }
    }
    for (key, v) in [
        ("idle_in_transaction_s_max", t.idle_in_transaction_s_max),
        ("query_s_max", t.query_s_max),
        ("replication_lag_s_max", t.replication_lag_s_max),
    ] {
        if !(1..=86_400).contains(&v) {
            return bad(key, v.to_string(), "1..=86400 (seconds)");
        }
    }
    if t.bloat_rows_min > 1_000_000_000_000 {
        return bad(
            "bloat_rows_min",
            t.bloat_rows_min.to_string(),
            "0..=1000000000000",
        );
    }
    if !(1_000..=AMCHECK_INTERVAL_MS_MAX).contains(&t.amcheck_interval_ms) {
        return bad(
            "amcheck_interval_ms",
            t.amcheck_interval_ms.to_string(),
            &format!("1000..={AMCHECK_INTERVAL_MS_MAX}"),
        );
    }
    if !(100..=AMCHECK_TIMEOUT_MS_MAX).contains(&t.amcheck_timeout_ms) {
        return bad(
            "amcheck_timeout_ms",
            t.amcheck_timeout_ms.to_string(),
            &format!("100..={AMCHECK_TIMEOUT_MS_MAX}"),
        );
    }
    if !(1..=10_000).contains(&t.amcheck_indexes_max) {
        return bad(
            "amcheck_indexes_max",
            t.amcheck_indexes_max.to_string(),
            "1..=10000",
        );
    }
    restart_command_ok(t)
}

/// Refuses a playbook whose `run_restart_command` step names a target without a `restart_command`.
pub fn check_restart_commands(
    targets: &[TargetConfig],
    playbooks: &[Playbook],
) -> Result<(), String> {
    for p in playbooks {
        for step in p.steps.iter().chain(&p.rollback) {
            if let crate::playbook::Action::RunRestartCommand { target, .. } = step
                && targets
                    .iter()
                    .any(|t| &t.name == target && t.restart_command.is_empty())
            {
                return Err(format!(
                    "{}: playbook {}: run_restart_command: target {target:?} has no restart_command in its [[targets]] entry",
                    p.file.display(),
                    p.name
                ));
            }
        }
    }
    Ok(())
}

/// The configured targets by name and kind, for checking playbooks.
pub fn catalog(targets: &[TargetConfig]) -> TargetCatalog {
    let mut c = TargetCatalog::default();
    for t in targets {
        c.insert(&t.name, t.kind, t.queries.keys().cloned().collect());
        if t.restart_command.is_empty() {
            c.without_restart_command(&t.name);
        }
    }
    c
}

/// A condition of a playbook's trigger, evaluated by the check of the target it reads over that target's readings.
pub struct ConditionTrigger {
    /// The playbook's target: the issue is on its resource.
    pub target: String,
    /// The issue code raised.
    pub code: String,
    /// The condition.
    pub condition: Condition,
    /// How long it must hold, ms.
    pub sustain_ms: u64,
    /// Since when it holds.
    since: Mutex<Option<Instant>>,
}

impl ConditionTrigger {
    /// A trigger for `playbook`'s condition, if it has one.
    pub fn of(playbook: &Playbook) -> Option<ConditionTrigger> {
        Some(ConditionTrigger {
            target: playbook.target.clone(),
            code: playbook.code.clone(),
            condition: playbook.condition.clone()?,
            sustain_ms: playbook.sustain_ms,
            since: Mutex::new(None),
        })
    }

    /// The issue when the condition has held for `sustain_ms` over `readings` of target `reads` (a reading named
    /// `target.<reads>.<reading>` or bare).
    pub fn judge<K>(
        &self,
        reads: &str,
        readings: &BTreeMap<K, f64>,
        source: &str,
        now: Timestamp,
    ) -> Option<Issue>
    where
        K: std::borrow::Borrow<str> + Ord + std::fmt::Display,
    {
        let prefix = format!("{}.", resource(reads));
        let holds = self
            .condition
            .holds(&|m| readings.get(m.strip_prefix(&prefix).unwrap_or(m)).copied());
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        if !holds {
            *since = None;
            return None;
        }
        let start = *since.get_or_insert_with(Instant::now);
        let held_ms = start.elapsed().as_millis() as u64;
        if held_ms < self.sustain_ms {
            return None;
        }
        let target = &self.target;
        let mut issue = Issue::new(
            IssueKind::CheckFailed,
            self.code.clone(),
            resource(target),
            format!(
                "target {target}: {} for {held_ms} ms (sustain {} ms)",
                self.condition.text, self.sustain_ms
            ),
            source,
            now,
        );
        issue.score = 1.0;
        issue.evidence = readings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(issue)
    }
}

/// The resource of target `name`'s issues.
pub fn resource(name: &str) -> String {
    format!("target.{name}")
}

/// Every configured target and the playbooks repairing them, as one subject.
pub struct Targets {
    subjects: Vec<Arc<dyn Subject>>,
    processes: BTreeMap<String, Arc<process::ProcessTarget>>,
    postgres: BTreeMap<String, Arc<postgres::PostgresTarget>>,
    strategies: Vec<Arc<dyn RepairStrategy>>,
}

impl Targets {
    /// Builds the targets of `configs` (starting the process targets) with `playbooks` as their repairs.
    pub fn start(configs: &[TargetConfig], playbooks: &[Playbook]) -> anyhow::Result<Targets> {
        // A condition is judged by the check of the target it reads.
        let triggers = |name: &str| -> Vec<ConditionTrigger> {
            playbooks
                .iter()
                .filter(|p| p.condition_target.as_deref() == Some(name))
                .filter_map(ConditionTrigger::of)
                .collect()
        };
        let mut subjects: Vec<Arc<dyn Subject>> = Vec::new();
        let mut checks: BTreeMap<String, Arc<dyn HealthCheck>> = BTreeMap::new();
        let mut processes = BTreeMap::new();
        let mut postgres = BTreeMap::new();
        let mut builtin: Vec<Arc<dyn RepairStrategy>> = Vec::new();
        let mut defaults: Vec<Playbook> = Vec::new();
        for c in configs {
            match c.kind {
                TargetKind::Http => {
                    let t = Arc::new(http::HttpTarget::new(c.clone(), triggers(&c.name)));
                    checks.insert(c.name.clone(), t.check());
                    subjects.push(t);
                }
                TargetKind::Process => {
                    let t = Arc::new(process::ProcessTarget::new(c.clone(), triggers(&c.name)));
                    t.start()
                        .map_err(|e| anyhow::anyhow!("target {}: {e}", c.name))?;
                    checks.insert(c.name.clone(), t.check());
                    // A playbook for `process_dead` replaces the built-in restart; a watched process has none.
                    let overridden = playbooks
                        .iter()
                        .any(|p| p.target == c.name && p.code == "process_dead");
                    if !overridden && !t.watched() {
                        builtin.push(Arc::new(process::RestartStrategy::new(t.clone())));
                    }
                    processes.insert(c.name.clone(), t.clone());
                    subjects.push(t);
                }
                TargetKind::Postgres => {
                    let t = Arc::new(postgres::PostgresTarget::new(c.clone(), triggers(&c.name)));
                    checks.insert(c.name.clone(), t.check());
                    // A playbook of the directory for the same code replaces the default one.
                    for d in crate::playbook::defaults::postgres_playbooks(configs, c)? {
                        if !playbooks
                            .iter()
                            .any(|p| p.target == d.target && p.code == d.code)
                        {
                            defaults.push(d);
                        }
                    }
                    postgres.insert(c.name.clone(), t.clone());
                    subjects.push(t);
                }
                TargetKind::Prometheus => {
                    let t = Arc::new(prometheus::PrometheusTarget::new(
                        c.clone(),
                        triggers(&c.name),
                    ));
                    checks.insert(c.name.clone(), t.check());
                    subjects.push(t);
                }
            }
        }
        check_restart_commands(configs, playbooks).map_err(|e| anyhow::anyhow!(e))?;
        let tools = Arc::new(crate::playbook::actions::Tools {
            checks,
            processes: processes.clone(),
            postgres: postgres.clone(),
        });
        let mut strategies: Vec<Arc<dyn RepairStrategy>> = playbooks
            .iter()
            .chain(&defaults)
            .map(|p| {
                Arc::new(PlaybookStrategy::new(p.clone(), tools.clone())) as Arc<dyn RepairStrategy>
            })
            .collect();
        strategies.extend(builtin);
        Ok(Targets {
            subjects,
            processes,
            postgres,
            strategies,
        })
    }

    /// Stops the supervised processes (at the daemon's stop).
    pub fn stop(&self) {
        for p in self.processes.values() {
            p.stop();
        }
    }

    /// Each target's state for `/v1/status`.
    pub fn status(&self) -> serde_json::Value {
        let processes: serde_json::Map<String, serde_json::Value> = self
            .processes
            .iter()
            .map(|(n, p)| (n.clone(), p.status()))
            .collect();
        let postgres: serde_json::Map<String, serde_json::Value> = self
            .postgres
            .iter()
            .map(|(n, p)| (n.clone(), p.status()))
            .collect();
        serde_json::json!({ "processes": processes, "postgres": postgres })
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Subject for Targets {
    fn name(&self) -> &str {
        "targets"
    }
    fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        self.subjects.iter().flat_map(|s| s.checks()).collect()
    }
    fn strategies(&self) -> Vec<Arc<dyn RepairStrategy>> {
        self.strategies.clone()
    }
    fn sample(&self, now: Timestamp) -> Vec<Sample> {
        self.subjects.iter().flat_map(|s| s.sample(now)).collect()
    }
    fn drain_issues(&self) -> Vec<Issue> {
        self.subjects
            .iter()
            .flat_map(|s| s.drain_issues())
            .collect()
    }
    /// `target.<name>` of each target.
    fn resources(&self) -> Vec<String> {
        self.subjects.iter().map(|s| resource(s.name())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> TargetConfig {
        TargetConfig {
            name: "db".into(),
            kind: TargetKind::Postgres,
            url: Some("postgres://app:s3cret@127.0.0.1:5432/shop".into()),
            ..TargetConfig::default()
        }
    }

    /// An edit of a valid configuration.
    type Edit = Box<dyn Fn(&mut TargetConfig)>;

    #[test]
    fn a_postgres_target_is_validated_field_by_field() {
        assert_eq!(validate(&[db()]), Ok(()));
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|t| t.url = None), "targets[\"db\"].url = \"\""),
            (
                Box::new(|t| t.url = Some("postgres://app:s3cret@h:notaport/x".into())),
                "targets[\"db\"].url = \"postgres://app:<redacted>@h:notaport/x\": accepted a connection string",
            ),
            (
                Box::new(|t| t.connections_used_max = 1.5),
                "targets[\"db\"].connections_used_max = 1.5",
            ),
            (
                Box::new(|t| t.dead_tuple_ratio_max = 0.0),
                "targets[\"db\"].dead_tuple_ratio_max = 0",
            ),
            (
                Box::new(|t| t.idle_in_transaction_s_max = 0),
                "targets[\"db\"].idle_in_transaction_s_max = 0",
            ),
            (
                Box::new(|t| t.query_s_max = 100_000),
                "targets[\"db\"].query_s_max = 100000",
            ),
            (
                Box::new(|t| t.replication_lag_s_max = 0),
                "targets[\"db\"].replication_lag_s_max = 0",
            ),
            (
                Box::new(|t| t.timeout_ms = 20_000),
                "targets[\"db\"].timeout_ms = 20000",
            ),
            (
                Box::new(|t| t.amcheck_interval_ms = 10),
                "targets[\"db\"].amcheck_interval_ms = 10",
            ),
            (
                Box::new(|t| t.restart_command = vec![String::new()]),
                "targets[\"db\"].restart_command = [\"\"]",
            ),
            (
                Box::new(|t| t.command = vec!["sleep".into()]),
                "targets[\"db\"].command",
            ),
            (
                Box::new(|t| t.name = "d".repeat(41)),
                "at most 40 bytes for a postgres target",
            ),
        ];
        for (edit, expected) in cases {
            let mut t = db();
            edit(&mut t);
            let e = validate(&[t]).unwrap_err();
            assert!(e.contains(expected), "expected {expected:?} in {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
        let web = TargetConfig {
            name: "web".into(),
            url: Some("http://127.0.0.1/".into()),
            restart_command: vec!["true".into()],
            ..TargetConfig::default()
        };
        let e = validate(&[web]).unwrap_err();
        assert!(
            e.contains("restart_command") && e.contains("for kind = \"postgres\""),
            "{e}"
        );
    }
}
