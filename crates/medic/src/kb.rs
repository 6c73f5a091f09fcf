//! The SQLite knowledge base: incidents, repair attempts, strategy statistics, metric history.
//!
//! One file (`<data>/medic.sqlite3` when opened by `App`) in WAL journal mode, opened through `rusqlite` (bundled SQLite, the one
//! SQL driver of the workspace). The schema is versioned with SQLite's `user_version` and a list of migrations
//! applied in order inside one transaction each, so an older file is upgraded on open and a file written by a newer
//! medic is refused rather than misread. Written by hand rather than with `rusqlite_migration`: the list is a few
//! statements and this keeps the error messages (which name the file) under our control.
//!
//! Every incident is stored whole as JSON (the source of truth for [`KnowledgeBase::get`]) plus indexed columns
//! (times, resolution, severity, root cause) for queries; repair attempts get a row each; strategy statistics are
//! counters keyed by (strategy, issue code); metric history is `(at, metric, value)` rows with retention through
//! [`SqliteKb::prune`]. The connection sits behind a `Mutex` because [`KnowledgeBase`] must be `Sync`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use heal::Timestamp;
use heal::learn::{IncidentRecord, KbError, KnowledgeBase, StrategyStats};
use heal::subject::Sample;
use rusqlite::{Connection, OptionalExtension, params};

mod alerts;
mod escalation;
mod history;
mod operators;
pub mod views;
pub use history::{Bucket, MetricSeries};
pub use operators::OperatorAction;

/// Largest incident record accepted, as serialized JSON.
pub const INCIDENT_RECORD_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most metric samples accepted in one [`SqliteKb::record_metrics`] call.
pub const METRIC_SAMPLES_MAX: usize = 100_000;
/// Longest metric name accepted.
pub const METRIC_NAME_BYTES_MAX: usize = 256;
/// Most records one [`KnowledgeBase::recent`] call returns, whatever is asked.
pub const RECENT_RECORDS_MAX: usize = 10_000;
/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, one migration per entry; entry `i` moves `user_version` from `i` to `i + 1`. Only append.
const MIGRATIONS: &[&str] = &[
    // 1: incidents, attempts, strategy statistics, metric history.
    "CREATE TABLE incidents (
         id          INTEGER PRIMARY KEY,
         started_at  INTEGER NOT NULL,
         detected_at INTEGER NOT NULL,
         resolved_at INTEGER,
         resolution  TEXT NOT NULL,
         severity    TEXT NOT NULL,
         crisis      TEXT NOT NULL,
         root_cause  TEXT NOT NULL,
         record      TEXT NOT NULL
     );
     CREATE INDEX incidents_detected_at ON incidents (detected_at);
     CREATE INDEX incidents_resolution ON incidents (resolution);
     CREATE INDEX incidents_severity ON incidents (severity);
     CREATE TABLE repair_attempts (
         incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
         seq         INTEGER NOT NULL,
         strategy    TEXT NOT NULL,
         started_at  INTEGER NOT NULL,
         duration_us INTEGER NOT NULL,
         outcome     TEXT NOT NULL,
         PRIMARY KEY (incident_id, seq)
     );
     CREATE INDEX repair_attempts_strategy ON repair_attempts (strategy);
     CREATE TABLE strategy_stats (
         strategy  TEXT NOT NULL,
         code      TEXT NOT NULL,
         successes INTEGER NOT NULL DEFAULT 0,
         failures  INTEGER NOT NULL DEFAULT 0,
         PRIMARY KEY (strategy, code)
     );
     CREATE TABLE metric_history (
         at     INTEGER NOT NULL,
         metric TEXT NOT NULL,
         value  REAL NOT NULL
     );
     CREATE INDEX metric_history_metric_at ON metric_history (metric, at);
     CREATE INDEX metric_history_at ON metric_history (at);",
    // 2: an operator's acceptance of acknowledged data lost beyond every redundancy (the audit trail).
    "CREATE TABLE loss_acceptances (
         accepted_at INTEGER NOT NULL,
         acceptance  TEXT NOT NULL
     );",
    // 3: operators' actions (approve, deny, ack, resolve, reopen, annotate, false positive, breaker reset, silences:
    // who, when, a note) and silences (matchers, start, end; expired early by `expired_by`).
    "CREATE TABLE operator_actions (
         id       INTEGER PRIMARY KEY,
         incident INTEGER,
         action   TEXT NOT NULL,
         who      TEXT NOT NULL,
         at       INTEGER NOT NULL,
         note     TEXT NOT NULL DEFAULT '',
         target   TEXT
     );
     CREATE INDEX operator_actions_incident ON operator_actions (incident, at);
     CREATE TABLE silences (
         id         INTEGER PRIMARY KEY,
         matchers   TEXT NOT NULL,
         starts_at  INTEGER NOT NULL,
         ends_at    INTEGER NOT NULL,
         comment    TEXT NOT NULL,
         created_by TEXT NOT NULL,
         expired_by TEXT
     );
     CREATE INDEX silences_ends_at ON silences (ends_at);",
    // 4: a silence may also hold automatic repair of what it matches (`repair` 0).
    "ALTER TABLE silences ADD COLUMN repair INTEGER NOT NULL DEFAULT 1;",
    // 5: what escalation had reached when the program stopped: the engine's follow-ups (reminders, acknowledgement)
    // and the escalation policies' level per incident, each as JSON.
    "CREATE TABLE followups (
         incident INTEGER PRIMARY KEY,
         state    TEXT NOT NULL
     );
     CREATE TABLE escalation_levels (
         incident INTEGER PRIMARY KEY,
         state    TEXT NOT NULL
     );",
    // 6: when each alert last fired (within the longest cooldown), so a restart keeps the cooldowns.
    "CREATE TABLE alert_times (
         key      TEXT PRIMARY KEY,
         fired_at INTEGER NOT NULL
     );",
    // 7: the Alertmanager alerts firing (by fingerprint, each as JSON), so a restart does not forget one that has
    // neither been resolved nor reached its `endsAt`.
    "CREATE TABLE alertmanager_firing (
         key   TEXT PRIMARY KEY,
         state TEXT NOT NULL
     );",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// One strategy's statistics on one issue code, as listed by [`SqliteKb::all_strategy_stats`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StrategyStatsRow {
    /// The strategy.
    pub strategy: String,
    /// The issue code.
    pub code: String,
    /// Its counts.
    pub stats: StrategyStats,
}

/// A damaged knowledge base moved aside and replaced by a fresh one ([`SqliteKb::open_or_recreate`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KbRecreated {
    /// The knowledge base's path (now a fresh file).
    pub damaged_file: PathBuf,
    /// Where the damaged file went: `<path>.corrupt-<µs since the epoch>`.
    pub moved_to: PathBuf,
    /// Every file moved (the database and its `-wal` and `-shm`, those that existed).
    pub moved: Vec<PathBuf>,
    /// What SQLite said.
    pub reason: String,
    /// When, µs since the epoch.
    pub at_us: Timestamp,
}

/// Why [`SqliteKb::open_checked`] failed, and whether the file itself is damaged.
struct OpenFailure {
    error: KbError,
    damaged: bool,
}

/// Whether SQLite's error means the file is damaged (or not a database at all).
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// The `user_version` recorded in the header of the SQLite file at `path` (big-endian at byte 60), read without
/// SQLite: `None` when the file is absent, shorter than a header, or not an SQLite file. Read before anything parses
/// the schema, so a file written by a newer medic (whose schema this SQLite may not parse) is recognised as newer,
/// not taken for damage.
fn header_user_version(path: &Path) -> Option<u32> {
    use std::io::Read as _;
    let mut header = [0u8; 100];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    if &header[..16] != b"SQLite format 3\0" {
        return None;
    }
    Some(u32::from_be_bytes([
        header[60], header[61], header[62], header[63],
    ]))
}

/// `<path>.corrupt-<now_us>`, with `-<n>` appended if that name is taken.
fn aside_path(path: &Path, now_us: Timestamp) -> PathBuf {
    let base = format!("{}.corrupt-{now_us}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1u32;
    while candidate.exists() && n < 1_000 {
        candidate = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

/// The damaged knowledge bases kept aside next to `path` (`<file name>.corrupt-*`, not their `-wal`/`-shm`),
/// sorted by name.
pub fn damaged_copies(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{name}.corrupt-");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&prefix) && !n.ends_with("-wal") && !n.ends_with("-shm")
            })
        })
        .collect();
    found.sort();
    found
}

/// The SQLite knowledge base.
pub struct SqliteKb {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteKb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteKb")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteKb {
    /// Opens (creating if absent) the knowledge base at `path`, checks it is a readable SQLite database, and brings
    /// its schema up to date. Every error names the file.
    pub fn open(path: &Path) -> Result<SqliteKb, KbError> {
        Self::open_checked(path).map_err(|f| f.error)
    }

    /// Like [`SqliteKb::open`], but a file SQLite finds damaged (corrupt, not a database, or failing
    /// `PRAGMA quick_check`) is moved aside — to `<path>.corrupt-<µs since the epoch>`, with its `-wal` and `-shm`
    /// — and a fresh knowledge base is started in its place. The knowledge base is derived (incident history,
    /// statistics), never the truth, so a damaged one must not keep the documents from being served. Any other
    /// failure (permissions, a newer schema) is still an error.
    pub fn open_or_recreate(
        path: &Path,
        now_us: Timestamp,
    ) -> Result<(SqliteKb, Option<KbRecreated>), KbError> {
        let failure = match Self::open_checked(path) {
            Ok(kb) => return Ok((kb, None)),
            Err(f) if f.damaged => f,
            Err(f) => return Err(f.error),
        };
        let aside = aside_path(path, now_us);
        let mut moved = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let from = PathBuf::from(format!("{}{suffix}", path.display()));
            let to = PathBuf::from(format!("{}{suffix}", aside.display()));
            if !from.exists() {
                continue;
            }
            std::fs::rename(&from, &to).map_err(|e| {
                KbError(format!(
                    "{}: damaged ({}), and moving it aside to {} failed: {e}",
                    path.display(),
                    failure.error,
                    to.display()
                ))
            })?;
            moved.push(to);
        }
        let kb = Self::open(path).map_err(|e| {
            KbError(format!(
                "{e} (a fresh knowledge base, after the damaged one was moved to {})",
                aside.display()
            ))
        })?;
        Ok((
            kb,
            Some(KbRecreated {
                damaged_file: path.to_path_buf(),
                moved_to: aside,
                moved,
                reason: failure.error.0,
                at_us: now_us,
            }),
        ))
    }

    /// [`SqliteKb::open`], telling damage to the file apart from other failures.
    fn open_checked(path: &Path) -> Result<SqliteKb, OpenFailure> {
        let err = |what: &str, e: rusqlite::Error| OpenFailure {
            damaged: is_damage(&e),
            error: KbError(format!("{}: {what}: {e}", path.display())),
        };
        let other = |error: KbError| OpenFailure {
            error,
            damaged: false,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                other(KbError(format!(
                    "{}: cannot create directory {}: {e}",
                    path.display(),
                    parent.display()
                )))
            })?;
        }
        if let Some(version) = header_user_version(path).filter(|v| *v > SCHEMA_VERSION) {
            return Err(other(KbError(format!(
                "{}: schema version {version} is newer than this medic supports ({SCHEMA_VERSION}); \
                 left as it is: run the medic that wrote it",
                path.display()
            ))));
        }
        let conn = Connection::open(path).map_err(|e| err("cannot open", e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| err("cannot set busy timeout", e))?;
        // The first statement that reads the file: a file that is not SQLite fails here.
        let journal: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| err("not a readable SQLite database", e))?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(other(KbError(format!(
                "{}: cannot switch to WAL journal mode (got {journal})",
                path.display()
            ))));
        }
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(|e| err("cannot enable foreign keys", e))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| err("cannot set synchronous", e))?;
        let check: String = conn
            .pragma_query_value(None, "quick_check", |r| r.get(0))
            .map_err(|e| err("integrity check failed", e))?;
        if check != "ok" {
            return Err(OpenFailure {
                error: KbError(format!(
                    "{}: database is damaged (quick_check: {check})",
                    path.display()
                )),
                damaged: true,
            });
        }
        let mut kb = SqliteKb {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        };
        kb.migrate().map_err(other)?;
        {
            let conn = kb.conn.get_mut().map_err(|_| {
                other(KbError(format!(
                    "{}: connection lock poisoned",
                    path.display()
                )))
            })?;
            views::ensure(conn).map_err(|e| err("creating the views", e))?;
        }
        Ok(kb)
    }

    /// The file this knowledge base lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open file (after migrations: [`SCHEMA_VERSION`]).
    pub fn schema_version(&self) -> Result<u32, KbError> {
        let conn = self.conn()?;
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err("reading schema version", e))
    }

    fn migrate(&mut self) -> Result<(), KbError> {
        let path = self.path.clone();
        let conn = self
            .conn
            .get_mut()
            .map_err(|_| KbError(format!("{}: connection lock poisoned", path.display())))?;
        let err =
            |what: String, e: rusqlite::Error| KbError(format!("{}: {what}: {e}", path.display()));
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| err("reading schema version".into(), e))?;
        if version > SCHEMA_VERSION {
            return Err(KbError(format!(
                "{}: schema version {version} is newer than this medic supports ({SCHEMA_VERSION}); \
                 use a newer medic or another file",
                path.display()
            )));
        }
        for (idx, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let to = idx as u32 + 1;
            let tx = conn
                .transaction()
                .map_err(|e| err(format!("migration to schema {to}"), e))?;
            tx.execute_batch(sql)
                .map_err(|e| err(format!("migration to schema {to}"), e))?;
            tx.pragma_update(None, "user_version", to)
                .map_err(|e| err(format!("migration to schema {to}"), e))?;
            tx.commit()
                .map_err(|e| err(format!("migration to schema {to}"), e))?;
        }
        Ok(())
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>, KbError> {
        self.conn.lock().map_err(|_| {
            KbError(format!(
                "{}: connection lock poisoned by a panic",
                self.path.display()
            ))
        })
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> KbError {
        KbError(format!("{}: {what}: {e}", self.path.display()))
    }

    /// Stores one batch of metric samples (non-finite values are skipped, as detectors skip them). `at` is used for
    /// samples whose own time is 0. Returns how many rows were written.
    pub fn record_metrics(&self, at: Timestamp, samples: &[Sample]) -> Result<usize, KbError> {
        if samples.len() > METRIC_SAMPLES_MAX {
            return Err(KbError(format!(
                "{}: {} metric samples in one batch, over metric_samples_max = {METRIC_SAMPLES_MAX}",
                self.path.display(),
                samples.len()
            )));
        }
        if let Some(s) = samples
            .iter()
            .find(|s| s.metric.len() > METRIC_NAME_BYTES_MAX)
        {
            return Err(KbError(format!(
                "{}: metric name of {} bytes, over metric_name_bytes_max = {METRIC_NAME_BYTES_MAX}",
                self.path.display(),
                s.metric.len()
            )));
        }
        let mut conn = self.conn()?;
        let tx = conn
            .transaction()
            .map_err(|e| self.err("recording metrics", e))?;
        let mut written = 0;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO metric_history (at, metric, value) VALUES (?1, ?2, ?3)",
                )
                .map_err(|e| self.err("recording metrics", e))?;
            for s in samples.iter().filter(|s| s.value.is_finite()) {
                let when = if s.at == 0 { at } else { s.at };
                stmt.execute(params![to_i64(when), s.metric, s.value])
                    .map_err(|e| self.err("recording metrics", e))?;
                written += 1;
            }
        }
        tx.commit().map_err(|e| self.err("recording metrics", e))?;
        Ok(written)
    }

    /// Deletes metric history older than `older_than` (exclusive). Returns how many rows went.
    pub fn prune(&self, older_than: Timestamp) -> Result<usize, KbError> {
        let conn = self.conn()?;
        conn.execute(
            "DELETE FROM metric_history WHERE at < ?1",
            params![to_i64(older_than)],
        )
        .map_err(|e| self.err("pruning metric history", e))
    }

    /// The history of one metric from `since` on (inclusive), oldest first, at most `limit` points (the newest ones
    /// when there are more).
    pub fn metric_history(
        &self,
        metric: &str,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Timestamp, f64)>, KbError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT at, value FROM metric_history WHERE metric = ?1 AND at >= ?2 \
                 ORDER BY at DESC, rowid DESC LIMIT ?3",
            )
            .map_err(|e| self.err("reading metric history", e))?;
        let rows = stmt
            .query_map(params![metric, to_i64(since), to_i64(limit as u64)], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?))
            })
            .map_err(|e| self.err("reading metric history", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (at, value) = row.map_err(|e| self.err("reading metric history", e))?;
            out.push((from_i64(at), value));
        }
        out.reverse();
        Ok(out)
    }

    /// How many metric history rows are stored.
    pub fn metric_rows(&self) -> Result<u64, KbError> {
        let conn = self.conn()?;
        conn.query_row("SELECT COUNT(*) FROM metric_history", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(from_i64)
        .map_err(|e| self.err("counting metric history", e))
    }

    /// Records an operator's acceptance of lost data (`acceptance` is its JSON), kept for good.
    pub fn record_loss_acceptance(&self, at: Timestamp, acceptance: &str) -> Result<(), KbError> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO loss_acceptances (accepted_at, acceptance) VALUES (?1, ?2)",
            rusqlite::params![to_i64(at), acceptance],
        )
        .map(|_| ())
        .map_err(|e| self.err("recording a loss acceptance", e))
    }

    /// Every recorded loss acceptance (JSON), oldest first.
    pub fn loss_acceptances(&self) -> Result<Vec<String>, KbError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare("SELECT acceptance FROM loss_acceptances ORDER BY rowid")
            .map_err(|e| self.err("reading loss acceptances", e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err("reading loss acceptances", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err("reading loss acceptances", e))
    }

    /// How many incidents are stored.
    pub fn incident_count(&self) -> Result<u64, KbError> {
        let conn = self.conn()?;
        conn.query_row("SELECT COUNT(*) FROM incidents", [], |r| r.get::<_, i64>(0))
            .map(from_i64)
            .map_err(|e| self.err("counting incidents", e))
    }

    /// Every strategy's statistics, by strategy then issue code.
    pub fn all_strategy_stats(&self) -> Result<Vec<StrategyStatsRow>, KbError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT strategy, code, successes, failures FROM strategy_stats \
                 ORDER BY strategy, code",
            )
            .map_err(|e| self.err("reading strategy statistics", e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StrategyStatsRow {
                    strategy: r.get(0)?,
                    code: r.get(1)?,
                    stats: StrategyStats {
                        successes: from_i64(r.get(2)?),
                        failures: from_i64(r.get(3)?),
                    },
                })
            })
            .map_err(|e| self.err("reading strategy statistics", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err("reading strategy statistics", e))
    }

    /// The repair attempts recorded for one incident as `(strategy, outcome)`, in order.
    pub fn attempts(&self, incident_id: u64) -> Result<Vec<(String, String)>, KbError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT strategy, outcome FROM repair_attempts WHERE incident_id = ?1 ORDER BY seq",
            )
            .map_err(|e| self.err("reading repair attempts", e))?;
        let rows = stmt
            .query_map(params![to_i64(incident_id)], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err("reading repair attempts", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err("reading repair attempts", e))
    }

    fn decode(&self, id: i64, json: &str) -> Result<IncidentRecord, KbError> {
        serde_json::from_str(json).map_err(|e| {
            KbError(format!(
                "{}: incident {id}: stored record does not parse: {e}",
                self.path.display()
            ))
        })
    }
}

/// Timestamps and counts are `u64`; SQLite integers are `i64`. Values beyond `i64::MAX` (year 294247 in µs) saturate.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Negative values never come from medic; a hand-edited file's are read as 0.
fn from_i64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A serde enum's name as stored in an indexed column (`"auto_repaired"`, `"Sev1"`).
fn enum_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

impl KnowledgeBase for SqliteKb {
    fn save(&self, record: &IncidentRecord) -> Result<(), KbError> {
        let json = serde_json::to_string(record)
            .map_err(|e| self.err(&format!("incident {}: cannot serialize", record.id), e))?;
        if json.len() > INCIDENT_RECORD_BYTES_MAX {
            return Err(KbError(format!(
                "{}: incident {} is {} bytes as JSON, over incident_record_bytes_max = {INCIDENT_RECORD_BYTES_MAX}",
                self.path.display(),
                record.id,
                json.len()
            )));
        }
        let id = i64::try_from(record.id).map_err(|_| {
            KbError(format!(
                "{}: incident id {} does not fit SQLite's integer",
                self.path.display(),
                record.id
            ))
        })?;
        let what = format!("saving incident {}", record.id);
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(|e| self.err(&what, e))?;
        tx.execute(
            "INSERT INTO incidents (id, started_at, detected_at, resolved_at, resolution, severity, crisis, \
             root_cause, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at, \
             detected_at = excluded.detected_at, resolved_at = excluded.resolved_at, \
             resolution = excluded.resolution, severity = excluded.severity, crisis = excluded.crisis, \
             root_cause = excluded.root_cause, record = excluded.record",
            params![
                id,
                to_i64(record.started_at),
                to_i64(record.detected_at),
                record.resolved_at.map(to_i64),
                enum_name(&record.resolution),
                enum_name(&record.severity),
                enum_name(&record.crisis),
                record.root_cause,
                json,
            ],
        )
        .map_err(|e| self.err(&what, e))?;
        tx.execute(
            "DELETE FROM repair_attempts WHERE incident_id = ?1",
            params![id],
        )
        .map_err(|e| self.err(&what, e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO repair_attempts (incident_id, seq, strategy, started_at, duration_us, outcome) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(|e| self.err(&what, e))?;
            for (seq, a) in record.attempts.iter().enumerate() {
                stmt.execute(params![
                    id,
                    seq as i64,
                    a.strategy,
                    to_i64(a.started_at),
                    to_i64(a.duration_us),
                    enum_name(&a.outcome),
                ])
                .map_err(|e| self.err(&what, e))?;
            }
        }
        tx.commit().map_err(|e| self.err(&what, e))
    }

    fn get(&self, id: u64) -> Result<Option<IncidentRecord>, KbError> {
        let Ok(key) = i64::try_from(id) else {
            return Ok(None);
        };
        let json: Option<String> = {
            let conn = self.conn()?;
            conn.query_row(
                "SELECT record FROM incidents WHERE id = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(&format!("reading incident {id}"), e))?
        };
        json.map(|j| self.decode(key, &j)).transpose()
    }

    fn recent(&self, limit: usize) -> Result<Vec<IncidentRecord>, KbError> {
        let limit = limit.min(RECENT_RECORDS_MAX);
        let rows: Vec<(i64, String)> = {
            let conn = self.conn()?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, record FROM incidents ORDER BY detected_at DESC, id DESC LIMIT ?1",
                )
                .map_err(|e| self.err("reading recent incidents", e))?;
            let rows = stmt
                .query_map(params![limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| self.err("reading recent incidents", e))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.err("reading recent incidents", e))?
        };
        rows.iter().map(|(id, j)| self.decode(*id, j)).collect()
    }

    fn max_id(&self) -> Result<u64, KbError> {
        let conn = self.conn()?;
        conn.query_row("SELECT COALESCE(MAX(id), 0) FROM incidents", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(from_i64)
        .map_err(|e| self.err("reading the highest incident id", e))
    }

    fn strategy_stats(&self, strategy: &str, code: &str) -> Result<StrategyStats, KbError> {
        let conn = self.conn()?;
        conn.query_row(
            "SELECT successes, failures FROM strategy_stats WHERE strategy = ?1 AND code = ?2",
            params![strategy, code],
            |r| {
                Ok(StrategyStats {
                    successes: from_i64(r.get(0)?),
                    failures: from_i64(r.get(1)?),
                })
            },
        )
        .optional()
        .map(Option::unwrap_or_default)
        .map_err(|e| self.err(&format!("reading statistics of {strategy} on {code}"), e))
    }

    fn save_followups(&self, followups: &[heal::engine::SavedFollowUp]) -> Result<(), KbError> {
        self.replace_followups(followups)
    }

    fn followups(&self) -> Result<Vec<heal::engine::SavedFollowUp>, KbError> {
        self.saved_followups()
    }

    fn save_alert_times(&self, times: &[(String, Timestamp)]) -> Result<(), KbError> {
        self.replace_alert_times(times)
    }

    fn alert_times(&self) -> Result<Vec<(String, Timestamp)>, KbError> {
        self.saved_alert_times()
    }

    fn record_outcome(&self, strategy: &str, code: &str, success: bool) -> Result<(), KbError> {
        let (s, f) = if success { (1, 0) } else { (0, 1) };
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO strategy_stats (strategy, code, successes, failures) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (strategy, code) DO UPDATE SET successes = successes + excluded.successes, \
             failures = failures + excluded.failures",
            params![strategy, code, s, f],
        )
        .map(|_| ())
        .map_err(|e| self.err(&format!("recording outcome of {strategy} on {code}"), e))
    }
}
