//! The PostgreSQL target's two checks.
//!
//! `target.<name>.probe` (shallow, every `interval_ms`, one conversation within `timeout_ms`): `SELECT 1`, client
//! connections against `max_connections`, the longest running statement, the sessions idle in a transaction, the
//! database's size, the worst dead-tuple ratio of a user table (of at least `bloat_rows_min` rows), and the replay
//! lag when `pg_is_in_recovery()`. Each probe's readings become samples; each threshold crossed is an issue whose
//! evidence names what to act on (backend pids, the table).
//!
//! `target.<name>.amcheck` (deep, every `amcheck_interval_ms`): `bt_index_check` on up to `amcheck_indexes_max`
//! B-tree indexes (smallest first) when the `amcheck` extension is installed in the target's database; an index
//! reported corrupted (SQLSTATE `XX002`) is `pg_index_corrupt`. Without the extension the check passes with the
//! reason it skipped, logged once.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use heal::check::{CheckContext, CheckOutcome, Tier};
use heal::clock::{Timestamp, US_PER_MS};
use heal::issue::{Issue, IssueKind};
use heal::{HealthCheck, Sample};
use tokio_postgres::Client;

use super::session::{self, SessionError, TOO_MANY_CONNECTIONS, query_error, redact_url};
use super::{Code, PIDS_MAX, QUERY_TEXT_BYTES_MAX};
use crate::target::{ConditionTrigger, TargetConfig, resource};

/// The most backends one probe reads from `pg_stat_activity`.
pub const BACKENDS_READ_MAX: i64 = 1_000;

/// One backend of interest: a running statement or a session idle in a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// Its pid.
    pub pid: i32,
    /// Seconds running (active) or idle in its transaction.
    pub seconds: f64,
    /// Its user.
    pub user: String,
    /// Its database.
    pub database: String,
    /// The start of its statement (at most [`QUERY_TEXT_BYTES_MAX`] bytes).
    pub query: String,
}

/// The table with the largest share of dead tuples.
#[derive(Debug, Clone, PartialEq)]
pub struct Bloat {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub table: String,
    /// Dead tuples.
    pub dead: i64,
    /// Live tuples.
    pub live: i64,
    /// dead / (dead + live).
    pub ratio: f64,
}

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Client backends.
    pub connections: i64,
    /// `max_connections`.
    pub max_connections: i64,
    /// The longest running statement (not medic's).
    pub longest: Option<Backend>,
    /// Sessions idle in a transaction, oldest first (at most [`BACKENDS_READ_MAX`]).
    pub idle_in_transaction: Vec<Backend>,
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// Seconds behind the primary (a replica only).
    pub replication_lag_s: f64,
    /// `pg_database_size(current_database())`.
    pub database_bytes: i64,
    /// The worst table, if any is large enough.
    pub bloat: Option<Bloat>,
}

impl Snapshot {
    /// The readings a condition may name.
    pub fn readings(&self) -> BTreeMap<&'static str, f64> {
        let oldest = self
            .idle_in_transaction
            .first()
            .map(|b| b.seconds)
            .unwrap_or(0.0);
        let mut r = BTreeMap::from([
            ("connections", self.connections as f64),
            ("max_connections", self.max_connections as f64),
            (
                "connections_used",
                self.connections as f64 / self.max_connections.max(1) as f64,
            ),
            (
                "longest_query_s",
                self.longest.as_ref().map(|b| b.seconds).unwrap_or(0.0),
            ),
            ("idle_in_transaction", self.idle_in_transaction.len() as f64),
            ("idle_in_transaction_oldest_s", oldest),
            ("database_bytes", self.database_bytes as f64),
            (
                "dead_tuple_ratio",
                self.bloat.as_ref().map(|b| b.ratio).unwrap_or(0.0),
            ),
            ("in_recovery", f64::from(u8::from(self.in_recovery))),
        ]);
        if self.in_recovery {
            r.insert("replication_lag_s", self.replication_lag_s);
        }
        r
    }
}

const SUMMARY_SQL: &str = "SELECT current_setting('max_connections')::int8, \
     (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), \
     pg_is_in_recovery(), pg_database_size(current_database())";

const BACKENDS_SQL: &str = "SELECT pid, state, \
     extract(epoch FROM now() - coalesce(CASE WHEN state = 'active' THEN query_start ELSE state_change END, now()))::float8 AS seconds, \
     coalesce(usename::text, ''), coalesce(datname::text, ''), coalesce(left(query, 200), '') \
     FROM pg_stat_activity \
     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name <> 'medic' \
     AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)') \
     ORDER BY seconds DESC LIMIT $1";

const LAG_SQL: &str = "SELECT (CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
     ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END)::float8";

const BLOAT_SQL: &str = "SELECT schemaname::text, relname::text, n_dead_tup, n_live_tup, \
     n_dead_tup::float8 / (n_dead_tup + n_live_tup) AS ratio \
     FROM pg_stat_user_tables WHERE n_dead_tup + n_live_tup >= greatest($1::int8, 1) \
     ORDER BY ratio DESC, n_dead_tup DESC LIMIT 1";

/// Reads a [`Snapshot`] over `client`.
pub async fn snapshot(client: Client, bloat_rows_min: i64) -> Result<Snapshot, SessionError> {
    client
        .simple_query("SELECT 1")
        .await
        .map_err(query_error("SELECT 1"))?;
    let row = client
        .query_one(SUMMARY_SQL, &[])
        .await
        .map_err(query_error("reading connections and size"))?;
    let mut s = Snapshot {
        max_connections: row.get(0),
        connections: row.get(1),
        in_recovery: row.get(2),
        database_bytes: row.get(3),
        ..Snapshot::default()
    };
    let rows = client
        .query(BACKENDS_SQL, &[&BACKENDS_READ_MAX])
        .await
        .map_err(query_error("reading pg_stat_activity"))?;
    for row in rows {
        let state: String = row.get(1);
        let b = Backend {
            pid: row.get(0),
            seconds: row.get::<_, f64>(2).max(0.0),
            user: row.get(3),
            database: row.get(4),
            query: truncate(row.get(5), QUERY_TEXT_BYTES_MAX),
        };
        if state == "active" {
            if s.longest.is_none() {
                s.longest = Some(b);
            }
        } else {
            s.idle_in_transaction.push(b);
        }
    }
    if s.in_recovery {
        let row = client
            .query_one(LAG_SQL, &[])
            .await
            .map_err(query_error("reading the replay lag"))?;
        s.replication_lag_s = row.get::<_, f64>(0).max(0.0);
    }
    let rows = client
        .query(BLOAT_SQL, &[&bloat_rows_min])
        .await
        .map_err(query_error("reading pg_stat_user_tables"))?;
    s.bloat = rows.first().map(|row| Bloat {
        schema: row.get(0),
        table: row.get(1),
        dead: row.get(2),
        live: row.get(3),
        ratio: row.get(4),
    });
    Ok(s)
}

fn truncate(mut text: String, bytes: usize) -> String {
    if text.len() > bytes {
        let mut cut = bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[derive(Default)]
struct ProbeState {
    /// Probes in a row that no server answered (refused, reset, timed out): `pg_down` at `failures_before_down`.
    consecutive_failures: u32,
    /// Probes in a row the server answered with an error (other than too many clients): `pg_refused` at
    /// `failures_before_down`.
    consecutive_refusals: u32,
    readings: BTreeMap<&'static str, f64>,
    /// Readings not yet handed to the engine as samples.
    fresh: bool,
}

/// `target.<name>.probe`.
pub struct PgProbe {
    config: TargetConfig,
    check_name: String,
    triggers: Vec<ConditionTrigger>,
    state: Mutex<ProbeState>,
}

impl PgProbe {
    /// The probe of `config` (kind `postgres`, validated), judging `triggers` after each probe.
    pub fn new(config: TargetConfig, triggers: Vec<ConditionTrigger>) -> Self {
        Self {
            check_name: format!("target.{}.probe", config.name),
            config,
            triggers,
            state: Mutex::new(ProbeState::default()),
        }
    }

    fn url(&self) -> &str {
        self.config.url.as_deref().unwrap_or("")
    }

    fn issue(&self, code: Code, summary: String, now: Timestamp) -> Issue {
        let mut issue = Issue::new(
            IssueKind::CheckFailed,
            code.as_str(),
            resource(&self.config.name),
            format!("target {}: {summary}", self.config.name),
            &self.check_name,
            now,
        );
        issue.score = 1.0;
        issue
    }

    /// The issues of the thresholds `s` crosses.
    fn judge(&self, s: &Snapshot, now: Timestamp) -> Vec<Issue> {
        let c = &self.config;
        let mut issues = Vec::new();
        let used = s.connections as f64 / s.max_connections.max(1) as f64;
        if used >= c.connections_used_max {
            let mut i = self.issue(
                Code::ConnectionsExhausted,
                format!(
                    "{} of max_connections = {} in use ({:.0}% >= connections_used_max {:.0}%)",
                    s.connections,
                    s.max_connections,
                    used * 100.0,
                    c.connections_used_max * 100.0
                ),
                now,
            );
            i.evidence = vec![
                ("connections".into(), s.connections.to_string()),
                ("max_connections".into(), s.max_connections.to_string()),
            ];
            issues.push(i);
        }
        let idle_over: Vec<&Backend> = s
            .idle_in_transaction
            .iter()
            .filter(|b| b.seconds >= c.idle_in_transaction_s_max as f64)
            .collect();
        if let Some(oldest) = idle_over.first() {
            let mut i = self.issue(
                Code::IdleInTransaction,
                format!(
                    "{} session(s) idle in a transaction for at least idle_in_transaction_s_max = {} s; the oldest, pid {} ({}@{}), for {:.0} s",
                    idle_over.len(),
                    c.idle_in_transaction_s_max,
                    oldest.pid,
                    oldest.user,
                    oldest.database,
                    oldest.seconds
                ),
                now,
            );
            i.evidence = backend_evidence(oldest, &idle_over);
            issues.push(i);
        }
        if let Some(b) = &s.longest
            && b.seconds >= c.query_s_max as f64
        {
            let mut i = self.issue(
                Code::LongQuery,
                format!(
                    "pid {} ({}@{}) runs one statement for {:.0} s (query_s_max = {} s)",
                    b.pid, b.user, b.database, b.seconds, c.query_s_max
                ),
                now,
            );
            i.evidence = backend_evidence(b, &[b]);
            i.evidence.push(("query".into(), b.query.clone()));
            issues.push(i);
        }
        if let Some(b) = &s.bloat
            && b.ratio >= c.dead_tuple_ratio_max
        {
            let mut i = self.issue(
                Code::Bloat,
                format!(
                    "table {}.{}: {:.0}% dead tuples ({} dead, {} live; dead_tuple_ratio_max {:.0}%)",
                    b.schema,
                    b.table,
                    b.ratio * 100.0,
                    b.dead,
                    b.live,
                    c.dead_tuple_ratio_max * 100.0
                ),
                now,
            );
            i.evidence = vec![
                ("schema".into(), b.schema.clone()),
                ("table".into(), b.table.clone()),
                ("dead_tuple_ratio".into(), format!("{:.4}", b.ratio)),
                ("dead_tuples".into(), b.dead.to_string()),
                ("live_tuples".into(), b.live.to_string()),
            ];
            issues.push(i);
        }
        if s.in_recovery && s.replication_lag_s >= c.replication_lag_s_max as f64 {
            let mut i = self.issue(
                Code::ReplicationLag,
                format!(
                    "the replica replays {:.0} s behind its primary (replication_lag_s_max = {} s)",
                    s.replication_lag_s, c.replication_lag_s_max
                ),
                now,
            );
            i.evidence = vec![(
                "replication_lag_s".into(),
                format!("{:.1}", s.replication_lag_s),
            )];
            issues.push(i);
        }
        issues
    }

    /// The last probe's readings.
    pub fn readings(&self) -> BTreeMap<&'static str, f64> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .readings
            .clone()
    }

    /// The readings for samples: taken once by the engine after each probe.
    pub fn take_samples(&self, now: Timestamp) -> Vec<Sample> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !std::mem::take(&mut state.fresh) {
            return Vec::new();
        }
        let name = &self.config.name;
        state
            .readings
            .iter()
            .filter(|(k, _)| !matches!(**k, "connections" | "max_connections"))
            .map(|(k, v)| {
                let metric = format!("target.{name}.{k}");
                match *k {
                    "up" | "in_recovery" => Sample::state(metric, *v > 0.0, now),
                    "database_bytes" => Sample::size(metric, *v, now),
                    _ => Sample::gauge(metric, *v, now),
                }
            })
            .collect()
    }
}

/// Evidence naming the backends to act on: `pid` (the first) and `pids` (all, at most [`PIDS_MAX`]).
fn backend_evidence(first: &Backend, all: &[&Backend]) -> Vec<(String, String)> {
    let pids: Vec<String> = all
        .iter()
        .take(PIDS_MAX)
        .map(|b| b.pid.to_string())
        .collect();
    vec![
        ("pid".into(), first.pid.to_string()),
        ("pids".into(), pids.join(",")),
        ("seconds".into(), format!("{:.1}", first.seconds)),
        ("user".into(), first.user.clone()),
        ("database".into(), first.database.clone()),
    ]
}

impl HealthCheck for PgProbe {
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
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let rows_min = i64::try_from(self.config.bloat_rows_min).unwrap_or(i64::MAX);
        let result = session::with_client(self.url(), timeout, |client| snapshot(client, rows_min));
        // A server that answers, even with an error of its own (too many clients, starting up, a refused login), is
        // up: only probes nothing answered count towards pg_down.
        let answered = result.as_ref().err().is_none_or(SessionError::answered);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut readings = match &result {
            Ok(s) => {
                state.consecutive_failures = 0;
                state.consecutive_refusals = 0;
                s.readings()
            }
            Err(e) => {
                if e.answered() {
                    state.consecutive_failures = 0;
                    state.consecutive_refusals = state.consecutive_refusals.saturating_add(1);
                } else {
                    state.consecutive_refusals = 0;
                    state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                }
                BTreeMap::new()
            }
        };
        let (failures, refusals) = (state.consecutive_failures, state.consecutive_refusals);
        readings.insert("up", f64::from(u8::from(answered)));
        readings.insert("consecutive_failures", f64::from(failures));
        state.readings = readings.clone();
        state.fresh = true;
        drop(state);
        let name = &self.config.name;
        let shown = redact_url(self.url());
        let mut issues = match &result {
            Ok(s) => self.judge(s, now),
            Err(e) if e.sqlstate() == Some(TOO_MANY_CONNECTIONS) => {
                let mut i = self.issue(
                    Code::ConnectionsExhausted,
                    format!(
                        "{shown}: {e}: every connection the server allows is taken (the server is up)"
                    ),
                    now,
                );
                i.evidence = vec![
                    ("url".into(), shown.clone()),
                    ("sqlstate".into(), TOO_MANY_CONNECTIONS.into()),
                    ("failure".into(), e.to_string()),
                ];
                vec![i]
            }
            Err(e) if e.answered() && refusals >= self.config.failures_before_down => {
                let mut i = self.issue(
                    Code::Refused,
                    format!(
                        "{shown}: {e} ({refusals} probes in a row answered with an error; the server is up)"
                    ),
                    now,
                );
                i.evidence = vec![
                    ("url".into(), shown.clone()),
                    ("sqlstate".into(), e.sqlstate().unwrap_or_default().into()),
                    ("failure".into(), e.to_string()),
                    ("consecutive_refusals".into(), refusals.to_string()),
                ];
                vec![i]
            }
            Err(e) if !e.answered() && failures >= self.config.failures_before_down => {
                let mut i = self.issue(
                    Code::Down,
                    format!("{shown}: {e} ({failures} failed probes in a row)"),
                    now,
                );
                i.evidence = vec![
                    ("url".into(), shown.clone()),
                    ("failure".into(), e.to_string()),
                    ("consecutive_failures".into(), failures.to_string()),
                ];
                vec![i]
            }
            Err(_) => Vec::new(),
        };
        for t in &self.triggers {
            issues.extend(t.judge(name, &readings, &self.check_name, now));
        }
        let outcome = match (&result, issues.is_empty()) {
            (_, false) => CheckOutcome::fail(issues[0].summary.clone(), issues),
            (Err(e), true) if e.answered() => CheckOutcome::pass(format!(
                "up, not probed: {e} ({refusals} of {} refusals before pg_refused)",
                self.config.failures_before_down
            )),
            (Err(e), true) => CheckOutcome::pass(format!(
                "{e} ({failures} of {} failures before pg_down)",
                self.config.failures_before_down
            )),
            (Ok(s), true) => CheckOutcome::pass(format!(
                "up: {} of {} connections, {} idle in transaction",
                s.connections,
                s.max_connections,
                s.idle_in_transaction.len()
            )),
        };
        // A probe that read nothing has not seen the server's other problems go: they are kept as they were.
        if result.is_ok() {
            outcome
        } else {
            outcome.inconclusive()
        }
    }
}

/// `target.<name>.amcheck`.
pub struct PgAmcheck {
    config: TargetConfig,
    check_name: String,
    skip_logged: AtomicBool,
}

/// What one amcheck run found.
struct AmcheckRun {
    installed: bool,
    verified: usize,
    corrupt: Vec<(String, String, String, String)>,
    unverified: Vec<String>,
}

const INDEXES_SQL: &str = "SELECT n.nspname::text, c.relname::text, t.relname::text, c.oid \
     FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid \
     JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam \
     WHERE a.amname = 'btree' AND c.relpersistence <> 't' AND i.indisready AND i.indisvalid \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' \
     ORDER BY pg_relation_size(c.oid), c.oid LIMIT $1";

async fn amcheck(client: Client, indexes_max: i64) -> Result<AmcheckRun, SessionError> {
    let installed = !client
        .query("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'", &[])
        .await
        .map_err(query_error("looking for the amcheck extension"))?
        .is_empty();
    let mut run = AmcheckRun {
        installed,
        verified: 0,
        corrupt: Vec::new(),
        unverified: Vec::new(),
    };
    if !installed {
        return Ok(run);
    }
    let rows = client
        .query(INDEXES_SQL, &[&indexes_max])
        .await
        .map_err(query_error("listing the B-tree indexes"))?;
    for row in rows {
        let (schema, index, table, oid): (String, String, String, u32) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        match client
            .execute("SELECT bt_index_check($1::oid::regclass)", &[&oid])
            .await
        {
            Ok(_) => run.verified += 1,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INDEX_CORRUPTED) => run
                .corrupt
                .push((schema, index, table, session::error_text(&e))),
            Err(e) => run
                .unverified
                .push(format!("{schema}.{index}: {}", session::error_text(&e))),
        }
    }
    Ok(run)
}

impl PgAmcheck {
    /// The amcheck check of `config` (kind `postgres`, validated).
    pub fn new(config: TargetConfig) -> Self {
        Self {
            check_name: format!("target.{}.amcheck", config.name),
            config,
            skip_logged: AtomicBool::new(false),
        }
    }
}

impl HealthCheck for PgAmcheck {
    fn name(&self) -> &str {
        &self.check_name
    }
    fn tier(&self) -> Tier {
        Tier::Deep
    }
    fn timeout_us(&self) -> u64 {
        (self.config.amcheck_timeout_ms + 1_000) * US_PER_MS
    }
    fn interval_us(&self) -> u64 {
        self.config.amcheck_interval_ms * US_PER_MS
    }
    fn run(&self, ctx: &CheckContext<'_>) -> CheckOutcome {
        let now = ctx.clock.now();
        let name = &self.config.name;
        let url = self.config.url.as_deref().unwrap_or("");
        let max = i64::from(self.config.amcheck_indexes_max);
        let timeout = Duration::from_millis(self.config.amcheck_timeout_ms);
        let run = match session::with_client(url, timeout, |c| amcheck(c, max)) {
            Ok(run) => run,
            // The probe reports an unreachable server (pg_down); this check has nothing to add, and has not seen
            // a corrupted index mended.
            Err(e) => return CheckOutcome::pass(format!("skipped: {e}")).inconclusive(),
        };
        if !run.installed {
            let why = "skipped: the amcheck extension is not installed in the target's database (CREATE EXTENSION amcheck)";
            if !self.skip_logged.swap(true, Ordering::Relaxed) {
                tracing::info!(target_name = %name, "{why}");
            }
            return CheckOutcome::pass(why);
        }
        if !run.unverified.is_empty() {
            tracing::warn!(target_name = %name, "amcheck could not verify: {}", run.unverified.join("; "));
        }
        let issues: Vec<Issue> = run
            .corrupt
            .iter()
            .map(|(schema, index, table, error)| {
                let mut i = Issue::new(
                    IssueKind::CheckFailed,
                    Code::IndexCorrupt.as_str(),
                    resource(name),
                    format!("target {name}: index {schema}.{index} on {table} fails bt_index_check: {error}"),
                    &self.check_name,
                    now,
                );
                i.score = 1.0;
                i.evidence = vec![
                    ("schema".into(), schema.clone()),
                    ("index".into(), index.clone()),
                    ("table".into(), table.clone()),
                    ("error".into(), error.clone()),
                ];
                i
            })
            .collect();
        if issues.is_empty() {
            CheckOutcome::pass(format!(
                "bt_index_check passed on {} index(es){}",
                run.verified,
                if run.unverified.is_empty() {
                    String::new()
                } else {
                    format!("; {} not verified", run.unverified.len())
                }
            ))
        } else {
            CheckOutcome::fail(issues[0].summary.clone(), issues)
        }
    }
}
