//! The Alertmanager alerts firing (schema 7), so a restart does not forget an alert that has neither been resolved
//! nor reached its `endsAt`: one row per alert, keyed by its fingerprint, its state as JSON (written and read by
//! [`crate::alertmanager::AlertInbox`]). Replaced whole after every notification that changed the inbox, bounded by
//! the inbox's `FIRING_MAX`.

use heal::learn::KbError;
use rusqlite::params;

use super::SqliteKb;

/// Rows one read returns at most (the inbox keeps at most `alertmanager::FIRING_MAX` alerts).
pub const ALERT_ROWS_MAX: usize = 10_000;

impl SqliteKb {
    /// Replaces every saved firing alert with `alerts` (key, JSON state).
    pub fn replace_alerts_firing(&self, alerts: &[(String, String)]) -> Result<(), KbError> {
        let what = "saving the Alertmanager alerts firing";
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(|e| self.err(what, e))?;
        tx.execute("DELETE FROM alertmanager_firing", [])
            .map_err(|e| self.err(what, e))?;
        for (key, state) in alerts.iter().take(ALERT_ROWS_MAX) {
            tx.execute(
                "INSERT INTO alertmanager_firing (key, state) VALUES (?1, ?2)",
                params![key, state],
            )
            .map_err(|e| self.err(what, e))?;
        }
        tx.commit().map_err(|e| self.err(what, e))
    }

    /// The firing alerts last saved (key, JSON state).
    pub fn saved_alerts_firing(&self) -> Result<Vec<(String, String)>, KbError> {
        let what = "reading the Alertmanager alerts firing";
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT key, state FROM alertmanager_firing ORDER BY key LIMIT {ALERT_ROWS_MAX}"
            ))
            .map_err(|e| self.err(what, e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(what, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(what, e))?;
        Ok(rows)
    }
}
