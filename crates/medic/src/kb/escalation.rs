//! What escalation had reached (schema 5), so a restart goes on from there instead of starting over: the engine's
//! follow-ups of notified incidents (`followups`: reminders sent, when the last went out, who acknowledged) and the
//! level of its escalation policy each incident reached (`escalation_levels`, written by `notify::route::Router`).
//! Both are small JSON rows keyed by incident, bounded by the engine's `incidents_active_max` and the router's
//! `TRACKED_MAX`; a row that no longer decodes is skipped with a warning, never fatal. Since schema 6 the engine's
//! alert times (`alert_times`: each alert key and when it last fired, within the longest cooldown) are kept too, so
//! an alert still in its cooldown is not sent again after a restart.

use heal::Timestamp;
use heal::engine::SavedFollowUp;
use heal::learn::KbError;
use rusqlite::params;

use super::{INCIDENT_RECORD_BYTES_MAX, SqliteKb, from_i64, to_i64};
use crate::notify::route::{LevelMemory, SavedLevel};

/// Rows one read returns at most.
pub const ESCALATION_ROWS_MAX: usize = 10_000;

/// The longest alert key kept across a restart (a key is a rule or kind, a resource and an issue code).
pub const ALERT_KEY_BYTES_MAX: usize = 1_024;

impl SqliteKb {
    /// Replaces every saved follow-up with `followups`.
    pub fn replace_followups(&self, followups: &[SavedFollowUp]) -> Result<(), KbError> {
        let what = "saving the follow-ups of escalations";
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(|e| self.err(what, e))?;
        tx.execute("DELETE FROM followups", [])
            .map_err(|e| self.err(what, e))?;
        for f in followups.iter().take(ESCALATION_ROWS_MAX) {
            let json = self.bounded_json(f.incident_id, f)?;
            tx.execute(
                "INSERT INTO followups (incident, state) VALUES (?1, ?2)",
                params![to_i64(f.incident_id), json],
            )
            .map_err(|e| self.err(what, e))?;
        }
        tx.commit().map_err(|e| self.err(what, e))
    }

    /// The follow-ups last saved, by incident.
    pub fn saved_followups(&self) -> Result<Vec<SavedFollowUp>, KbError> {
        Ok(self
            .rows("followups")?
            .into_iter()
            .filter_map(|(id, json)| decode(id, "follow-up", &json))
            .collect())
    }

    /// Replaces every saved alert time with `times` (at most [`ESCALATION_ROWS_MAX`], keys of at most
    /// [`ALERT_KEY_BYTES_MAX`] bytes; longer ones are not kept).
    pub fn replace_alert_times(&self, times: &[(String, Timestamp)]) -> Result<(), KbError> {
        let what = "saving the alert times";
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(|e| self.err(what, e))?;
        tx.execute("DELETE FROM alert_times", [])
            .map_err(|e| self.err(what, e))?;
        for (key, at) in times
            .iter()
            .filter(|(k, _)| k.len() <= ALERT_KEY_BYTES_MAX)
            .take(ESCALATION_ROWS_MAX)
        {
            tx.execute(
                "INSERT INTO alert_times (key, fired_at) VALUES (?1, ?2)",
                params![key, to_i64(*at)],
            )
            .map_err(|e| self.err(what, e))?;
        }
        tx.commit().map_err(|e| self.err(what, e))
    }

    /// The alert times last saved.
    pub fn saved_alert_times(&self) -> Result<Vec<(String, Timestamp)>, KbError> {
        let what = "reading the alert times";
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT key, fired_at FROM alert_times ORDER BY key LIMIT {ESCALATION_ROWS_MAX}"
            ))
            .map_err(|e| self.err(what, e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, from_i64(r.get(1)?))))
            .map_err(|e| self.err(what, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(what, e))?;
        Ok(rows)
    }

    /// One incident's escalation level (`None`: forgotten).
    pub fn save_level(&self, incident: u64, level: Option<&SavedLevel>) -> Result<(), KbError> {
        let what = format!("saving the escalation level of incident {incident}");
        let conn = self.conn()?;
        match level {
            Some(l) => {
                let json = self.bounded_json(incident, l)?;
                conn.execute(
                    "INSERT INTO escalation_levels (incident, state) VALUES (?1, ?2) \
                     ON CONFLICT (incident) DO UPDATE SET state = excluded.state",
                    params![to_i64(incident), json],
                )
            }
            None => conn.execute(
                "DELETE FROM escalation_levels WHERE incident = ?1",
                params![to_i64(incident)],
            ),
        }
        .map_err(|e| self.err(&what, e))?;
        Ok(())
    }

    /// The escalation levels saved, by incident.
    pub fn saved_levels(&self) -> Result<Vec<(u64, SavedLevel)>, KbError> {
        Ok(self
            .rows("escalation_levels")?
            .into_iter()
            .filter_map(|(id, json)| decode(id, "escalation level", &json).map(|l| (id, l)))
            .collect())
    }

    fn bounded_json(&self, incident: u64, v: &impl serde::Serialize) -> Result<String, KbError> {
        let json = serde_json::to_string(v)
            .map_err(|e| self.err(&format!("incident {incident}: cannot serialize"), e))?;
        if json.len() > INCIDENT_RECORD_BYTES_MAX {
            return Err(KbError(format!(
                "{}: the escalation state of incident {incident} is {} bytes as JSON, over \
                 incident_record_bytes_max = {INCIDENT_RECORD_BYTES_MAX}",
                self.path.display(),
                json.len()
            )));
        }
        Ok(json)
    }

    /// `(incident, state)` of a table of this module, by incident.
    fn rows(&self, table: &'static str) -> Result<Vec<(u64, String)>, KbError> {
        let what = format!("reading {table}");
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT incident, state FROM {table} ORDER BY incident LIMIT {ESCALATION_ROWS_MAX}"
            ))
            .map_err(|e| self.err(&what, e))?;
        let rows = stmt
            .query_map([], |r| Ok((from_i64(r.get(0)?), r.get(1)?)))
            .map_err(|e| self.err(&what, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(&what, e))?;
        Ok(rows)
    }
}

fn decode<T: serde::de::DeserializeOwned>(incident: u64, what: &str, json: &str) -> Option<T> {
    serde_json::from_str(json)
        .map_err(|e| tracing::warn!(incident, "the saved {what} does not decode, skipped: {e}"))
        .ok()
}

impl LevelMemory for SqliteKb {
    fn load_levels(&self) -> Result<Vec<(u64, SavedLevel)>, String> {
        self.saved_levels().map_err(|e| e.to_string())
    }

    fn store_level(&self, incident: u64, level: Option<&SavedLevel>) -> Result<(), String> {
        self.save_level(incident, level).map_err(|e| e.to_string())
    }
}
