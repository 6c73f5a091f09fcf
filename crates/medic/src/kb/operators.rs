//! Operators' actions and silences in the knowledge base (schema 3): who did what to which incident, when, with
//! which note; and the silences, so they survive a restart.

use heal::Timestamp;
use heal::learn::KbError;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{SqliteKb, from_i64, to_i64};
use crate::operators::{Matcher, Silence};

/// Most actions one listing returns.
pub const ACTIONS_LISTED_MAX: usize = 10_000;

/// One operator's action, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorAction {
    /// Its row id.
    pub id: u64,
    /// The incident it concerned, if any.
    pub incident: Option<u64>,
    /// What: `approve`, `deny`, `ack`, `resolve`, `reopen`, `annotate`, `false_positive`, `breaker_reset`,
    /// `silence`, `silence_expire`.
    pub action: String,
    /// Who: the operator's name from `[http.operators]`, `server-token`, or `local`.
    pub who: String,
    /// When, µs since the epoch.
    pub at: Timestamp,
    /// Their note (may be empty).
    pub note: String,
    /// What else it concerned: a strategy (breaker reset), a silence id.
    pub target: Option<String>,
}

impl SqliteKb {
    /// Records one action; returns it with its id.
    pub fn record_action(
        &self,
        incident: Option<u64>,
        action: &str,
        who: &str,
        at: Timestamp,
        note: &str,
        target: Option<&str>,
    ) -> Result<OperatorAction, KbError> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO operator_actions (incident, action, who, at, note, target) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![incident.map(to_i64), action, who, to_i64(at), note, target],
        )
        .map_err(|e| self.err(&format!("recording {action} by {who}"), e))?;
        Ok(OperatorAction {
            id: from_i64(conn.last_insert_rowid()),
            incident,
            action: action.to_string(),
            who: who.to_string(),
            at,
            note: note.to_string(),
            target: target.map(str::to_string),
        })
    }

    /// The actions on one incident (`Some`), or every action (`None`), oldest first, at most `limit` (the newest).
    pub fn actions(
        &self,
        incident: Option<u64>,
        limit: usize,
    ) -> Result<Vec<OperatorAction>, KbError> {
        let limit = to_i64(limit.min(ACTIONS_LISTED_MAX) as u64);
        let conn = self.conn()?;
        let row = |r: &rusqlite::Row<'_>| {
            Ok(OperatorAction {
                id: from_i64(r.get(0)?),
                incident: r.get::<_, Option<i64>>(1)?.map(from_i64),
                action: r.get(2)?,
                who: r.get(3)?,
                at: from_i64(r.get(4)?),
                note: r.get(5)?,
                target: r.get(6)?,
            })
        };
        let cols = "SELECT id, incident, action, who, at, note, target FROM operator_actions";
        let mut out = match incident {
            Some(id) => {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "{cols} WHERE incident = ?1 ORDER BY id DESC LIMIT ?2"
                    ))
                    .map_err(|e| self.err("reading operators' actions", e))?;
                stmt.query_map(params![to_i64(id), limit], row)
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| self.err("reading operators' actions", e))?
            }
            None => {
                let mut stmt = conn
                    .prepare_cached(&format!("{cols} ORDER BY id DESC LIMIT ?1"))
                    .map_err(|e| self.err("reading operators' actions", e))?;
                stmt.query_map(params![limit], row)
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| self.err("reading operators' actions", e))?
            }
        };
        out.reverse();
        Ok(out)
    }

    /// Stores a new silence; returns its id.
    pub fn insert_silence(&self, s: &Silence) -> Result<u64, KbError> {
        let matchers = serde_json::to_string(&s.matchers)
            .map_err(|e| self.err("encoding a silence's matchers", e))?;
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO silences (matchers, starts_at, ends_at, comment, created_by, repair) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                matchers,
                to_i64(s.starts_at),
                to_i64(s.ends_at),
                s.comment,
                s.created_by,
                s.repair
            ],
        )
        .map_err(|e| self.err("recording a silence", e))?;
        Ok(from_i64(conn.last_insert_rowid()))
    }

    /// The silences ending after `since`, oldest first, at most `limit` (the newest).
    pub fn silences(&self, since: Timestamp, limit: usize) -> Result<Vec<Silence>, KbError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, matchers, starts_at, ends_at, comment, created_by, expired_by, repair FROM silences \
                 WHERE ends_at > ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(|e| self.err("reading silences", e))?;
        let rows = stmt
            .query_map(
                params![to_i64(since), to_i64(limit.min(ACTIONS_LISTED_MAX) as u64)],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, bool>(7)?,
                    ))
                },
            )
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err("reading silences", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, matchers, starts_at, ends_at, comment, created_by, expired_by, repair) in rows {
            let matchers: Vec<Matcher> = serde_json::from_str(&matchers).map_err(|e| {
                KbError(format!(
                    "{}: silence {id}: stored matchers do not parse: {e}",
                    self.path.display()
                ))
            })?;
            out.push(Silence {
                id: from_i64(id),
                matchers,
                starts_at: from_i64(starts_at),
                ends_at: from_i64(ends_at),
                comment,
                created_by,
                expired_by,
                repair,
            });
        }
        out.reverse();
        Ok(out)
    }

    /// Ends a silence at `at` (if it had not ended); returns whether a silence with this id exists.
    pub fn expire_silence(&self, id: u64, at: Timestamp, who: &str) -> Result<bool, KbError> {
        let conn = self.conn()?;
        let exists: Option<i64> = conn
            .query_row(
                "SELECT ends_at FROM silences WHERE id = ?1",
                params![to_i64(id)],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(&format!("reading silence {id}"), e))?;
        if exists.is_none() {
            return Ok(false);
        }
        conn.execute(
            "UPDATE silences SET ends_at = MIN(ends_at, ?2), expired_by = COALESCE(expired_by, ?3) \
             WHERE id = ?1",
            params![to_i64(id), to_i64(at), who],
        )
        .map_err(|e| self.err(&format!("expiring silence {id}"), e))?;
        Ok(true)
    }
}
