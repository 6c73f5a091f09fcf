//! Reading the knowledge base back: metric history by name and time range (raw points or buckets of a step), the
//! names recorded, and incidents by time (for the history's anomaly marks and the daily and weekly reports).

use heal::Timestamp;
use heal::learn::{IncidentRecord, KbError};
use rusqlite::params;
use serde::Serialize;

use super::{SqliteKb, from_i64, to_i64};

/// One metric the history holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricSeries {
    /// Its name.
    pub name: String,
    /// How many points are stored.
    pub points: u64,
    /// The oldest point, µs since the epoch.
    pub first_at: Timestamp,
    /// The newest point, µs since the epoch.
    pub last_at: Timestamp,
}

/// The points of one metric within one step of time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// The bucket's start, µs since the epoch.
    pub at: Timestamp,
    /// The mean of its points.
    pub value: f64,
    /// The smallest point.
    pub min: f64,
    /// The largest point.
    pub max: f64,
    /// How many points fell in it.
    pub count: u64,
}

impl SqliteKb {
    /// Every metric name in the history (at most `limit`, by name) with its point count and time span.
    pub fn metric_series(&self, limit: usize) -> Result<Vec<MetricSeries>, KbError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT metric, COUNT(*), MIN(at), MAX(at) FROM metric_history GROUP BY metric \
                 ORDER BY metric LIMIT ?1",
            )
            .map_err(|e| self.err("listing metric names", e))?;
        let rows = stmt
            .query_map(params![to_i64(limit as u64)], |r| {
                Ok(MetricSeries {
                    name: r.get(0)?,
                    points: from_i64(r.get(1)?),
                    first_at: from_i64(r.get(2)?),
                    last_at: from_i64(r.get(3)?),
                })
            })
            .map_err(|e| self.err("listing metric names", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err("listing metric names", e))
    }

    /// How many points of `metric` lie in `[since, until]`.
    pub fn metric_count(
        &self,
        metric: &str,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<u64, KbError> {
        let conn = self.conn()?;
        conn.query_row(
            "SELECT COUNT(*) FROM metric_history WHERE metric = ?1 AND at >= ?2 AND at <= ?3",
            params![metric, to_i64(since), to_i64(until)],
            |r| r.get::<_, i64>(0),
        )
        .map(from_i64)
        .map_err(|e| self.err("counting metric history", e))
    }

    /// The points of `metric` in `[since, until]`, oldest first, at most `limit` (the oldest ones).
    pub fn metric_points(
        &self,
        metric: &str,
        since: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Timestamp, f64)>, KbError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT at, value FROM metric_history WHERE metric = ?1 AND at >= ?2 AND at <= ?3 \
                 ORDER BY at, rowid LIMIT ?4",
            )
            .map_err(|e| self.err("reading metric history", e))?;
        let rows = stmt
            .query_map(
                params![metric, to_i64(since), to_i64(until), to_i64(limit as u64)],
                |r| Ok((from_i64(r.get(0)?), r.get::<_, f64>(1)?)),
            )
            .map_err(|e| self.err("reading metric history", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err("reading metric history", e))
    }

    /// The points of `metric` in `[since, until]` grouped in buckets of `step_us` from `since` (only buckets with
    /// points), oldest first. `step_us` must not be 0.
    pub fn metric_buckets(
        &self,
        metric: &str,
        since: Timestamp,
        until: Timestamp,
        step_us: u64,
    ) -> Result<Vec<Bucket>, KbError> {
        let step = to_i64(step_us.max(1));
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT (at - ?2) / ?4, AVG(value), MIN(value), MAX(value), COUNT(*) FROM metric_history \
                 WHERE metric = ?1 AND at >= ?2 AND at <= ?3 GROUP BY (at - ?2) / ?4 ORDER BY 1",
            )
            .map_err(|e| self.err("reading metric history", e))?;
        let rows = stmt
            .query_map(params![metric, to_i64(since), to_i64(until), step], |r| {
                let n: i64 = r.get(0)?;
                Ok(Bucket {
                    at: since.saturating_add(from_i64(n).saturating_mul(step_us)),
                    value: r.get(1)?,
                    min: r.get(2)?,
                    max: r.get(3)?,
                    count: from_i64(r.get(4)?),
                })
            })
            .map_err(|e| self.err("reading metric history", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err("reading metric history", e))
    }

    /// Incidents detected in `[from, until)`, oldest first, at most `limit`.
    pub fn incidents_detected_between(
        &self,
        from: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<IncidentRecord>, KbError> {
        self.incidents_where("detected_at >= ?1 AND detected_at < ?2", from, until, limit)
    }

    /// Incidents detected before `until` and not resolved by then (open, or escalated and never closed), oldest
    /// first, at most `limit`.
    pub fn incidents_unresolved_at(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<IncidentRecord>, KbError> {
        self.incidents_where(
            "detected_at < ?2 AND ?1 <= ?2 AND (resolved_at IS NULL OR resolved_at >= ?2)",
            0,
            until,
            limit,
        )
    }

    fn incidents_where(
        &self,
        condition: &str,
        a: Timestamp,
        b: Timestamp,
        limit: usize,
    ) -> Result<Vec<IncidentRecord>, KbError> {
        let sql = format!(
            "SELECT id, record FROM incidents WHERE {condition} ORDER BY detected_at, id LIMIT ?3"
        );
        let rows: Vec<(i64, String)> = {
            let conn = self.conn()?;
            let mut stmt = conn
                .prepare_cached(&sql)
                .map_err(|e| self.err("reading incidents", e))?;
            let rows = stmt
                .query_map(params![to_i64(a), to_i64(b), to_i64(limit as u64)], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(|e| self.err("reading incidents", e))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.err("reading incidents", e))?
        };
        rows.iter().map(|(id, j)| self.decode(*id, j)).collect()
    }
}
