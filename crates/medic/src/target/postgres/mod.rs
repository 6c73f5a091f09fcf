//! The PostgreSQL target: a server medic watches over a connection string (`url`, libpq `key=value` pairs or a
//! `postgres://` URL; its password is redacted wherever it is shown) and repairs through the playbook actions
//! `pg_cancel_backend`, `pg_terminate_backend`, `pg_vacuum_analyze`, `pg_reindex_concurrently` and
//! `run_restart_command`.
//!
//! | module | owns |
//! |---|---|
//! | `session` | one bounded conversation (connect + work under one timeout), password redaction, identifier quoting |
//! | `probe` | the checks `target.<name>.probe` (shallow) and `target.<name>.amcheck` (deep) and their readings |
//!
//! Every conversation, a probe's or an action's, connects anew and is bounded by its timeout, so a stopped server
//! costs the cycle at most that long. medic's own sessions (`application_name = medic`) are never reported or acted
//! on. An action takes what it acts on from the issue's evidence (pids, a table, an index) or, for cancel and
//! terminate, from a rule written in the step (`idle_in_transaction_over`, `query_over`).

pub mod probe;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use heal::clock::Timestamp;
use heal::issue::Issue;
use heal::{HealthCheck, RepairStrategy, Sample, Subject};

use self::probe::{PgAmcheck, PgProbe};
use self::session::{qualified, query_error, redact_url};
use super::{ConditionTrigger, TargetConfig};

/// The most backend pids an issue's evidence names.
pub const PIDS_MAX: usize = 32;
/// The most bytes of a statement's text kept in evidence.
pub const QUERY_TEXT_BYTES_MAX: usize = 200;
/// The most backends one cancel or terminate by rule may signal (`backends_max` is 1..= this).
pub const SIGNAL_BACKENDS_MAX: u32 = 1_000;
/// The backends one cancel or terminate by rule signals when its step names no `backends_max`.
pub const SIGNAL_BACKENDS_DEFAULT: u32 = 10;
/// The longest role or application name a rule names, bytes (PostgreSQL cuts names at 63).
pub const RULE_NAME_BYTES_MAX: usize = 63;

/// The issue codes of a PostgreSQL target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Nothing answered (refused, reset, timed out), `failures_before_down` probes in a row.
    Down,
    /// The server answered each probe with an error of its own (a refused login, starting up, a failed
    /// statement), `failures_before_down` probes in a row: it is up, but could not be probed.
    Refused,
    /// Client connections at or over `connections_used_max` of `max_connections`, or the server refusing a
    /// connection with SQLSTATE 53300 (too many clients: every connection taken).
    ConnectionsExhausted,
    /// A session idle in a transaction for `idle_in_transaction_s_max` or longer.
    IdleInTransaction,
    /// A statement running for `query_s_max` or longer.
    LongQuery,
    /// A table's dead tuples at or over `dead_tuple_ratio_max` of its tuples.
    Bloat,
    /// A replica replaying `replication_lag_s_max` or more behind.
    ReplicationLag,
    /// An index failing `bt_index_check`.
    IndexCorrupt,
}

impl Code {
    /// Every code.
    pub const ALL: [Code; 8] = [
        Code::Down,
        Code::Refused,
        Code::ConnectionsExhausted,
        Code::IdleInTransaction,
        Code::LongQuery,
        Code::Bloat,
        Code::ReplicationLag,
        Code::IndexCorrupt,
    ];

    /// The code as issues carry it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::Down => "pg_down",
            Code::Refused => "pg_refused",
            Code::ConnectionsExhausted => "pg_connections_exhausted",
            Code::IdleInTransaction => "pg_idle_in_transaction",
            Code::LongQuery => "pg_long_query",
            Code::Bloat => "pg_bloat",
            Code::ReplicationLag => "pg_replication_lag",
            Code::IndexCorrupt => "pg_index_corrupt",
        }
    }
}

/// The codes as strings, for the target catalog.
pub const CODES: [&str; 8] = [
    Code::Down.as_str(),
    Code::Refused.as_str(),
    Code::ConnectionsExhausted.as_str(),
    Code::IdleInTransaction.as_str(),
    Code::LongQuery.as_str(),
    Code::Bloat.as_str(),
    Code::ReplicationLag.as_str(),
    Code::IndexCorrupt.as_str(),
];

/// The readings a condition may name (samples `target.<name>.<reading>`; `replication_lag_s` on a replica only).
pub const READINGS: &[&str] = &[
    "up",
    "consecutive_failures",
    "connections",
    "max_connections",
    "connections_used",
    "longest_query_s",
    "idle_in_transaction",
    "idle_in_transaction_oldest_s",
    "database_bytes",
    "dead_tuple_ratio",
    "in_recovery",
    "replication_lag_s",
];

/// How a backend is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `pg_cancel_backend`: its current statement is cancelled, the session stays.
    Cancel,
    /// `pg_terminate_backend`: the session ends (its transaction rolls back).
    Terminate,
}

impl Signal {
    /// The server function.
    pub fn function(self) -> &'static str {
        match self {
            Signal::Cancel => "pg_cancel_backend",
            Signal::Terminate => "pg_terminate_backend",
        }
    }
}

/// Which backends a cancel or terminate acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendSelect {
    /// The pids of the issue's evidence (`pids`, else `pid`), if they are still in the state the issue saw.
    Evidence,
    /// Every session idle in a transaction for at least this long, ms.
    IdleInTransactionOver {
        /// The least idle time, ms.
        ms: u64,
    },
    /// Every statement running for at least this long, ms.
    QueryOver {
        /// The least running time, ms.
        ms: u64,
    },
    /// Every session idle (no transaction open) for at least this long, ms: connections a pool holds and does not
    /// use.
    IdleOver {
        /// The least idle time, ms.
        ms: u64,
    },
}

/// Which of the backends a rule selects are signalled: only a role's, only an application's, and at most
/// `backends_max` of them (the longest in their state first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendFilter {
    /// Only backends of this role (`usename`).
    pub role: Option<String>,
    /// Only backends of this `application_name`.
    pub application_name: Option<String>,
    /// The most backends signalled in one run, 1..=[`SIGNAL_BACKENDS_MAX`].
    pub backends_max: u32,
}

impl Default for BackendFilter {
    fn default() -> Self {
        Self {
            role: None,
            application_name: None,
            backends_max: SIGNAL_BACKENDS_DEFAULT,
        }
    }
}

impl BackendFilter {
    /// ` of role r, application a, at most n` for records.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(r) = &self.role {
            out.push_str(&format!(" of role {r:?}"));
        }
        if let Some(a) = &self.application_name {
            out.push_str(&format!(" of application {a:?}"));
        }
        out.push_str(&format!(", at most {}", self.backends_max));
        out
    }
}

/// A PostgreSQL server medic watches.
pub struct PostgresTarget {
    config: TargetConfig,
    probe: Arc<PgProbe>,
    amcheck: Arc<PgAmcheck>,
}

/// The client backends medic may act on, by the filter appended.
const ACT_ON: &str = "FROM pg_stat_activity WHERE backend_type = 'client backend' \
     AND pid <> pg_backend_pid() AND application_name <> 'medic'";

impl PostgresTarget {
    /// The target of `config` (kind `postgres`, validated), judging `triggers` after each probe.
    pub fn new(config: TargetConfig, triggers: Vec<ConditionTrigger>) -> Self {
        Self {
            probe: Arc::new(PgProbe::new(config.clone(), triggers)),
            amcheck: Arc::new(PgAmcheck::new(config.clone())),
            config,
        }
    }

    /// Its name.
    pub fn target_name(&self) -> &str {
        &self.config.name
    }

    /// Its connection string with the password redacted.
    pub fn shown_url(&self) -> String {
        redact_url(self.url())
    }

    fn url(&self) -> &str {
        self.config.url.as_deref().unwrap_or("")
    }

    /// Its shallow check, `target.<name>.probe` (what a playbook's `check:` and verification run).
    pub fn check(&self) -> Arc<dyn HealthCheck> {
        self.probe.clone()
    }

    /// Cancels or terminates the backends `select` names (for `issue`), narrowed by `filter` (at most its
    /// `backends_max`, the longest in their state first); one line naming each, or why it failed. A backend the
    /// signal does not reach is an error; pids of the evidence that are gone already are named.
    pub fn signal_backends(
        &self,
        signal: Signal,
        select: BackendSelect,
        filter: &BackendFilter,
        issue: &Issue,
        timeout: Duration,
    ) -> Result<String, String> {
        let f = signal.function();
        let over = |state: &str, since: &str, ms: u64| {
            (
                format!(" AND {state} AND now() - {since} >= make_interval(secs => $2::float8)"),
                Vec::new(),
                ms as f64 / 1_000.0,
            )
        };
        let (filter_sql, pids, over_s) = match select {
            BackendSelect::Evidence => {
                let pids = evidence_pids(issue).ok_or_else(|| {
                    format!(
                        "{f}: the issue ({}) names no backend pid in its evidence; give the step idle_over, idle_in_transaction_over or query_over",
                        issue.code
                    )
                })?;
                let state = if issue.code == Code::IdleInTransaction.as_str() {
                    " AND state LIKE 'idle in transaction%'"
                } else if issue.code == Code::LongQuery.as_str() {
                    " AND state = 'active'"
                } else {
                    ""
                };
                (format!("{state} AND pid = ANY($1::int4[])"), pids, 0.0)
            }
            BackendSelect::IdleInTransactionOver { ms } => {
                over("state LIKE 'idle in transaction%'", "state_change", ms)
            }
            BackendSelect::QueryOver { ms } => over("state = 'active'", "query_start", ms),
            BackendSelect::IdleOver { ms } => over("state = 'idle'", "state_change", ms),
        };
        // A cancel reaches only a running statement: a backend running none (idle, idle in a transaction) is not
        // signalled (the server would accept the signal and do nothing) and the record says so.
        let call = match signal {
            Signal::Cancel => format!("CASE WHEN state = 'active' THEN {f}(pid) END"),
            Signal::Terminate => format!("{f}(pid)"),
        };
        // Every parameter is always bound (an unused one is typed by the cast in a comparison that holds).
        let sql = format!(
            "WITH chosen AS (SELECT pid, state {ACT_ON}{filter_sql} \
             AND ($1::int4[] IS NOT NULL OR $2::float8 IS NOT NULL) \
             AND ($3::text IS NULL OR usename = $3::text) AND ($4::text IS NULL OR application_name = $4::text) \
             ORDER BY coalesce(state_change, now()) LIMIT $5::int8) \
             SELECT pid, state, {call} FROM chosen ORDER BY pid"
        );
        let (role, app, limit) = (
            filter.role.clone(),
            filter.application_name.clone(),
            i64::from(filter.backends_max),
        );
        let wanted = pids.clone();
        let rows = session::with_client(self.url(), timeout, |client| async move {
            client
                .query(&sql, &[&pids, &over_s, &role, &app, &limit])
                .await
                .map_err(query_error(f))
        })
        .map_err(|e| format!("{f} on {}: {e}", self.config.name))?;
        let mut done = Vec::new();
        let mut failed = Vec::new();
        let mut idle = Vec::new();
        for row in &rows {
            let (pid, state, ok): (i32, Option<String>, Option<bool>) =
                (row.get(0), row.get(1), row.get(2));
            let line = format!("pid {pid} ({})", state.unwrap_or_default());
            match ok {
                Some(true) => done.push(line),
                Some(false) => failed.push(line),
                None => idle.push(line),
            }
        }
        let gone: Vec<String> = wanted
            .iter()
            .filter(|p| !rows.iter().any(|r| r.get::<_, i32>(0) == **p))
            .map(|p| p.to_string())
            .collect();
        let mut text = format!(
            "{f} on {}: {} signalled [{}]",
            self.config.name,
            done.len(),
            done.join(", ")
        );
        if !idle.is_empty() {
            text.push_str(&format!(
                "; not signalled, running no statement to cancel (pg_terminate_backend ends such a session): {}",
                idle.join(", ")
            ));
        }
        if !gone.is_empty() {
            text.push_str(&format!(
                "; pid(s) {} no longer in that state",
                gone.join(", ")
            ));
        }
        if rows.is_empty() && wanted.is_empty() {
            text.push_str("; no backend matched the rule");
        }
        if wanted.is_empty() && rows.len() as u64 >= u64::from(filter.backends_max) {
            text.push_str(&format!(
                "; stopped at backends_max = {}",
                filter.backends_max
            ));
        }
        if failed.is_empty() {
            Ok(text)
        } else {
            Err(format!(
                "{text}; the server refused to signal {}",
                failed.join(", ")
            ))
        }
    }

    /// `VACUUM (ANALYZE)` of the table the issue's evidence names (`schema`, `table`).
    pub fn vacuum_analyze(&self, issue: &Issue, timeout: Duration) -> Result<String, String> {
        let (schema, table) = (evidence(issue, "schema"), evidence(issue, "table"));
        let (Some(schema), Some(table)) = (schema, table) else {
            return Err(format!(
                "pg_vacuum_analyze: the issue ({}) names no table (evidence schema and table)",
                issue.code
            ));
        };
        let name = qualified(schema, table).map_err(|e| format!("pg_vacuum_analyze: {e}"))?;
        self.execute(
            "pg_vacuum_analyze",
            format!("VACUUM (ANALYZE) {name}"),
            timeout,
        )
    }

    /// `REINDEX INDEX CONCURRENTLY` of the index the issue's evidence names (`schema`, `index`).
    pub fn reindex_concurrently(&self, issue: &Issue, timeout: Duration) -> Result<String, String> {
        let (schema, index) = (evidence(issue, "schema"), evidence(issue, "index"));
        let (Some(schema), Some(index)) = (schema, index) else {
            return Err(format!(
                "pg_reindex_concurrently: the issue ({}) names no index (evidence schema and index)",
                issue.code
            ));
        };
        let name = qualified(schema, index).map_err(|e| format!("pg_reindex_concurrently: {e}"))?;
        self.execute(
            "pg_reindex_concurrently",
            format!("REINDEX INDEX CONCURRENTLY {name}"),
            timeout,
        )
    }

    fn execute(&self, action: &str, sql: String, timeout: Duration) -> Result<String, String> {
        let started = std::time::Instant::now();
        let shown = sql.clone();
        session::with_client(self.url(), timeout, |client| async move {
            client
                .batch_execute(&sql)
                .await
                .map_err(query_error(action))
        })
        .map(|()| {
            format!(
                "{action} on {}: {shown} done in {} ms",
                self.config.name,
                started.elapsed().as_millis()
            )
        })
        .map_err(|e| format!("{action} on {}: {shown}: {e}", self.config.name))
    }

    /// Its state for `/v1/status`: the connection string (redacted), the last probe's readings, the restart command.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "url": self.shown_url(),
            "readings": self.probe.readings(),
            "restart_command": self.config.restart_command,
        })
    }

    /// The configured `restart_command` (empty when none is).
    pub fn restart_command(&self) -> &[String] {
        &self.config.restart_command
    }
}

/// A value of the issue's evidence.
fn evidence<'a>(issue: &'a Issue, key: &str) -> Option<&'a str> {
    issue
        .evidence
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The backend pids of the issue's evidence: `pids` (comma-separated), else `pid`; at most [`PIDS_MAX`].
fn evidence_pids(issue: &Issue) -> Option<Vec<i32>> {
    let text = evidence(issue, "pids").or_else(|| evidence(issue, "pid"))?;
    let pids: Vec<i32> = text
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .filter(|p| *p > 0)
        .take(PIDS_MAX)
        .collect();
    (!pids.is_empty()).then_some(pids)
}

impl Subject for PostgresTarget {
    fn name(&self) -> &str {
        self.target_name()
    }
    fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        vec![self.probe.clone(), self.amcheck.clone()]
    }
    fn strategies(&self) -> Vec<Arc<dyn RepairStrategy>> {
        Vec::new()
    }
    fn sample(&self, now: Timestamp) -> Vec<Sample> {
        self.probe.take_samples(now)
    }
    fn drain_issues(&self) -> Vec<Issue> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heal::issue::IssueKind;

    #[test]
    fn pids_come_from_the_evidence() {
        let mut i = Issue::new(
            IssueKind::CheckFailed,
            "pg_idle_in_transaction",
            "target.db",
            "x",
            "c",
            0,
        );
        assert_eq!(evidence_pids(&i), None);
        i.evidence = vec![("pid".into(), "42".into())];
        assert_eq!(evidence_pids(&i), Some(vec![42]));
        i.evidence.push(("pids".into(), "42, 43,x,-1".into()));
        assert_eq!(evidence_pids(&i), Some(vec![42, 43]));
    }
}
