//! The knowledge base's SQL views, for `medic sql` and for anyone reading `medic.sqlite3` with `sqlite3`. Times are
//! kept as µs since the UNIX epoch (`*_us`) and also given as RFC 3339 text in UTC; durations in milliseconds.
//!
//! - `healing_status`: one row per incident — `incident`, `detected`, `detected_us`, `severity` (`Sev0`..`Sev3`),
//!   `crisis`, `resolution` (`open`, `auto_repaired`, `escalated`, `self_resolved`, `false_positive`,
//!   `resolved`), `state` (`active` or `closed`), `resolved`, `resolved_us`, `ttd_ms` (detection minus first
//!   observation), `ttr_ms` (resolution minus detection, once closed), `attempts`, `last_strategy`,
//!   `last_outcome`, `root_cause`.
//! - `detected_issues`: one row per issue of each incident — `incident`, `seq`, `detected`, `detected_us`, `kind`,
//!   `code`, `resource`, `summary`, `source`, `score`, `data_at_risk` (0/1), `file` (its location's file, if any).
//! - `repair_history`: one row per repair attempt — `incident`, `seq`, `strategy`, `started`, `started_us`,
//!   `duration_ms`, `outcome` (`succeeded`, `failed`, `rolled_back`, ...), `code` and `resource` (the incident's
//!   first issue), `severity`, `resolution`.
//!
//! The views are derived: dropped and created again at every open (no schema version of their own), so they always
//! match the tables of this build.

use rusqlite::Connection;

/// The views' names, as `medic sql` documents them.
pub const VIEWS: [&str; 3] = ["healing_status", "detected_issues", "repair_history"];

/// RFC 3339 in UTC of a µs column.
macro_rules! iso {
    ($col:literal) => {
        concat!(
            "strftime('%Y-%m-%dT%H:%M:%fZ', ",
            $col,
            " / 1000000.0, 'unixepoch')"
        )
    };
}

const CREATE: &str = concat!(
    "DROP VIEW IF EXISTS healing_status;
     DROP VIEW IF EXISTS detected_issues;
     DROP VIEW IF EXISTS repair_history;
     CREATE VIEW healing_status AS
     SELECT i.id AS incident, ",
    iso!("i.detected_at"),
    " AS detected, i.detected_at AS detected_us, i.severity, i.crisis, i.resolution,
            CASE WHEN i.resolved_at IS NULL THEN 'active' ELSE 'closed' END AS state, ",
    iso!("i.resolved_at"),
    " AS resolved, i.resolved_at AS resolved_us,
            (i.detected_at - i.started_at) / 1000 AS ttd_ms,
            CASE WHEN i.resolved_at IS NOT NULL THEN (i.resolved_at - i.detected_at) / 1000 END AS ttr_ms,
            (SELECT COUNT(*) FROM repair_attempts a WHERE a.incident_id = i.id) AS attempts,
            (SELECT a.strategy FROM repair_attempts a WHERE a.incident_id = i.id ORDER BY a.seq DESC LIMIT 1)
              AS last_strategy,
            (SELECT a.outcome FROM repair_attempts a WHERE a.incident_id = i.id ORDER BY a.seq DESC LIMIT 1)
              AS last_outcome,
            i.root_cause
     FROM incidents i;
     CREATE VIEW detected_issues AS
     SELECT i.id AS incident, CAST(j.key AS INTEGER) AS seq, ",
    iso!("json_extract(j.value, '$.detected_at')"),
    " AS detected,
            json_extract(j.value, '$.detected_at') AS detected_us,
            json_extract(j.value, '$.kind') AS kind,
            json_extract(j.value, '$.code') AS code,
            json_extract(j.value, '$.resource') AS resource,
            json_extract(j.value, '$.summary') AS summary,
            json_extract(j.value, '$.source') AS source,
            json_extract(j.value, '$.score') AS score,
            COALESCE(json_extract(j.value, '$.data_at_risk'), 0) AS data_at_risk,
            json_extract(j.value, '$.location.file') AS file
     FROM incidents i, json_each(i.record, '$.issues') j;
     CREATE VIEW repair_history AS
     SELECT a.incident_id AS incident, a.seq, a.strategy, ",
    iso!("a.started_at"),
    " AS started, a.started_at AS started_us,
            a.duration_us / 1000.0 AS duration_ms, a.outcome,
            json_extract(i.record, '$.issues[0].code') AS code,
            json_extract(i.record, '$.issues[0].resource') AS resource,
            i.severity, i.resolution
     FROM repair_attempts a JOIN incidents i ON i.id = a.incident_id;"
);

/// Drops and creates the views in one transaction.
pub fn ensure(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute_batch(CREATE)?;
    tx.commit()
}
