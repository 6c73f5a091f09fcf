//! Where a CLI command runs: against a daemon over HTTP ([`Daemon`]) or on the data directory opened in this process
//! ([`Offline`], through `medic::app::App`). Both answer in the daemon's JSON shapes, so output and exit codes do not
//! depend on which one was used.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::client::{Client, ClientError};

use super::UsageError;

/// The checks a `check` runs, by cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TierArg {
    /// The shallow tier: headers, liveness, a sample of blocks.
    Quick,
    /// Shallow and deep: blocks written since the last check, index agreement.
    Deep,
    /// Every tier, including a full scrub.
    Full,
}

impl TierArg {
    /// The name used on the wire (`/v1/health?tier=`).
    pub fn name(self) -> &'static str {
        match self {
            TierArg::Quick => "quick",
            TierArg::Deep => "deep",
            TierArg::Full => "full",
        }
    }

    /// The engine's tier.
    pub fn tier(self) -> heal::Tier {
        match self {
            TierArg::Quick => heal::Tier::Shallow,
            TierArg::Deep => heal::Tier::Deep,
            TierArg::Full => heal::Tier::Comprehensive,
        }
    }
}

/// What every command needs from where it runs. Answers are JSON in the daemon's HTTP shapes.
pub trait Backend {
    /// Where commands run, for messages (`daemon at http://…`, `data directory ./medic-data`).
    fn describe(&self) -> String;
    /// Stores a document `{"text", "vector"?, "meta"?}`; answers `{"id", "lsn"}` once durable.
    fn put(&self, collection: &str, id: &str, doc: &Value) -> anyhow::Result<Value>;
    /// Stores several documents `(line_no, id, body)` in one commit: all, or (on bad input, a [`UsageError`])
    /// none. `None` when this backend has no batches (then callers put one by one).
    fn put_batch(
        &self,
        collection: &str,
        docs: &[(u64, String, Value)],
    ) -> Option<anyhow::Result<()>> {
        let _ = (collection, docs);
        None
    }
    /// A document `{"id", "text", "vector"?, "meta"?}`, or `None`.
    fn get(&self, collection: &str, id: &str) -> anyhow::Result<Option<Value>>;
    /// Deletes a document; `None` if it did not exist.
    fn delete(&self, collection: &str, id: &str) -> anyhow::Result<Option<Value>>;
    /// `{"text", "k"}` or `{"vector", "k"}` → `{"hits": [{"id", "score"}]}`.
    fn search(&self, collection: &str, query: &Value) -> anyhow::Result<Value>;
    /// `{"collections": [description...]}` as `GET /v1/collections` answers.
    fn collections(&self) -> anyhow::Result<Value>;
    /// Creates a collection with `settings` (JSON as `PUT /v1/collections/{name}` takes); its description.
    fn create_collection(&self, name: &str, settings: &Value) -> anyhow::Result<Value>;
    /// Drops a collection; `{"collection","dropped","documents_deleted"}`.
    fn drop_collection(&self, name: &str) -> anyhow::Result<Value>;
    /// State, store statistics, engine KPIs.
    fn status(&self) -> anyhow::Result<Value>;
    /// Runs the checks up to `tier` now; the answer names the state.
    fn check(&self, tier: TierArg) -> anyhow::Result<Value>;
    /// Runs one healing cycle now: `Some(d)` overrides the configured dry-run mode for this cycle, `None` keeps it.
    fn heal(&self, dry_run: Option<bool>) -> anyhow::Result<Value>;
    /// Recent incidents, newest first: at most `limit`, those `query`'s filters let through.
    fn incidents(
        &self,
        limit: usize,
        query: &crate::incident_filter::IncidentQuery,
    ) -> anyhow::Result<Value>;
    /// One incident.
    fn incident(&self, id: u64) -> anyhow::Result<Option<Value>>;
    /// One incident's diagnostic bundle (`GET /v1/incidents/{id}/bundle`); `None` when none is kept.
    fn bundle(&self, id: u64) -> anyhow::Result<Option<Value>>;
    /// Accepts acknowledged data lost beyond every redundancy; `{"accepted": {...}}`.
    fn accept_loss(&self) -> anyhow::Result<Value>;
    /// Metric history (`GET /v1/history`): the names, or one metric's points.
    fn history(&self, q: &crate::history::HistoryQuery) -> anyhow::Result<Value>;
    /// The daily or weekly report for a UTC day (`GET /v1/reports/{period}?date=`), as JSON.
    fn period_report(
        &self,
        period: crate::report::Period,
        date: Option<&str>,
    ) -> anyhow::Result<Value>;
    /// An operator's request to the running daemon (`POST /v1/incidents/3/approve`, `GET /v1/approvals`...):
    /// operators act on the incidents the daemon's engine holds, so only a daemon answers these.
    fn operate(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let _ = (method, body);
        Err(UsageError(format!(
            "{path}: operators' commands act on the running daemon, and {} is not one: start `medic serve` on \
             this data directory, or pass --server URL",
            self.describe()
        ))
        .into())
    }
}

/// A daemon reached over HTTP.
pub struct Daemon {
    client: Client,
}

impl Daemon {
    /// A backend talking to the daemon at `url`.
    pub fn new(url: &str, token: Option<String>, timeout: Duration) -> anyhow::Result<Daemon> {
        let client = Client::new(url, token, timeout).map_err(|e| UsageError(e.to_string()))?;
        Ok(Daemon { client })
    }

    /// Checks the daemon answers (`GET /health`, any status with JSON) and says who it is: the `holder` object of
    /// its answer (`{"pid", "host", "started_us"}`), `Value::Null` when it names none.
    pub fn identify(&self) -> Result<Value, ClientError> {
        self.client
            .health()
            .map(|a| a.body.get("holder").cloned().unwrap_or(Value::Null))
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Why the daemon at `url`, which says it is `answered` (the `holder` of its `GET /health`), is not the one holding
/// the data directory `dir` whose `LOCK` names `lock` (`None`: names no holder); `None` when it is: same pid, host
/// and lock start time.
pub fn holder_mismatch(
    url: &str,
    answered: &Value,
    dir: &std::path::Path,
    lock: Option<&store::lock::Holder>,
) -> Option<String> {
    let pid = answered.get("pid").and_then(Value::as_u64);
    let host = answered.get("host").and_then(Value::as_str);
    let started_us = answered.get("started_us").and_then(Value::as_u64);
    let (Some(pid), Some(host)) = (pid, host) else {
        return Some(format!(
            "{url} answers but does not say which process it is (a medic older than this one?), so it cannot be \
             checked against the holder of {}: not used",
            dir.display()
        ));
    };
    let Some(lock) = lock else {
        return Some(format!(
            "{url} answers for pid {pid} on host {host}, but the LOCK of {} names no holder to check it against: \
             not used",
            dir.display()
        ));
    };
    if u64::from(lock.pid) == pid && lock.host == host && started_us == Some(lock.started_us) {
        return None;
    }
    let since = |s: Option<u64>| match s {
        Some(s) => format!(
            " since {}",
            heal::clock::rfc3339_with_age(
                s,
                heal::clock::Clock::now(&heal::clock::SystemClock::new())
            )
        ),
        None => " (whose own LOCK does not name it)".to_string(),
    };
    let same_process = u64::from(lock.pid) == pid && lock.host == host;
    Some(format!(
        "{url} answers for pid {pid} on host {host}{}, but {} is held by pid {} on host {}{}: another daemon, not \
         used",
        if same_process {
            since(started_us)
        } else {
            String::new()
        },
        dir.display(),
        lock.pid,
        lock.host,
        if same_process {
            since(Some(lock.started_us))
        } else {
            String::new()
        },
    ))
}

/// A daemon's 4xx is the user's input: exit 2 like any usage error (README.md "Command line"), a 401 or 403 for a
/// missing or wrong token too: the command is right, what it was sent with is not. So is a 501: the daemon does not do what was
/// asked (full-text search before the text index lands), which no retry or repair changes — the same exit 2 the
/// offline command gives. The rest is the daemon's trouble.
fn lift(e: ClientError) -> anyhow::Error {
    // The daemon tells an HTTP client which header to send; a person at the command line passes a flag.
    if let ClientError::Status {
        method,
        url,
        status: 401,
        message,
    } = &e
    {
        let message = message
            .replace(
                "send `Authorization: Bearer <token>` (server.token in the config)",
                "it needs a token",
            )
            .replace(" (server.token in the config)", "");
        return UsageError(format!(
            "{method} {url}: the daemon answered 401: {message}; pass the daemon's token with --token TOKEN \
             or MEDIC_TOKEN=TOKEN (the token in its configuration's server.token, or an operator's own)"
        ))
        .into();
    }
    match e.status() {
        Some(s) if (400..500).contains(&s) && s != 404 => UsageError(e.to_string()).into(),
        Some(501) => UsageError(e.to_string()).into(),
        // An unknown collection is bad input, as offline (a missing document stays a plain 404).
        Some(404) if e.to_string().contains("no collection") => UsageError(e.to_string()).into(),
        _ => e.into(),
    }
}

impl Backend for Daemon {
    fn describe(&self) -> String {
        format!("daemon at {}", self.client.base())
    }

    fn put(&self, collection: &str, id: &str, doc: &Value) -> anyhow::Result<Value> {
        self.client.put_doc(collection, id, doc).map_err(lift)
    }

    /// One `POST /v1/docs` (NDJSON): the daemon validates the whole body before writing any of it.
    fn put_batch(
        &self,
        collection: &str,
        docs: &[(u64, String, Value)],
    ) -> Option<anyhow::Result<()>> {
        let mut body = Vec::new();
        for (_, id, doc) in docs {
            let mut line = doc.clone();
            if let Some(m) = line.as_object_mut() {
                m.insert("id".into(), Value::String(id.clone()));
            }
            if let Err(e) = serde_json::to_writer(&mut body, &line) {
                return Some(Err(e.into()));
            }
            body.push(b'\n');
        }
        Some(
            self.client
                .bulk(collection, &body)
                .map(|_| ())
                .map_err(lift),
        )
    }

    fn get(&self, collection: &str, id: &str) -> anyhow::Result<Option<Value>> {
        self.client.get_doc(collection, id).map_err(lift)
    }

    fn delete(&self, collection: &str, id: &str) -> anyhow::Result<Option<Value>> {
        self.client.delete_doc(collection, id).map_err(lift)
    }

    fn search(&self, collection: &str, query: &Value) -> anyhow::Result<Value> {
        self.client.search(collection, query).map_err(lift)
    }

    fn collections(&self) -> anyhow::Result<Value> {
        self.client.collections().map_err(lift)
    }

    fn create_collection(&self, name: &str, settings: &Value) -> anyhow::Result<Value> {
        self.client.create_collection(name, settings).map_err(lift)
    }

    fn drop_collection(&self, name: &str) -> anyhow::Result<Value> {
        self.client.drop_collection(name).map_err(lift)
    }

    fn status(&self) -> anyhow::Result<Value> {
        self.client.status().map_err(lift)
    }

    fn check(&self, tier: TierArg) -> anyhow::Result<Value> {
        let a = self.client.check(tier.name()).map_err(lift)?;
        if a.status >= 400 && super::render::state_of(&a.body).is_none() {
            anyhow::bail!(
                "GET {}/v1/health?tier={}: the daemon answered {}: {}",
                self.client.base(),
                tier.name(),
                a.status,
                a.body
            );
        }
        Ok(a.body)
    }

    fn heal(&self, dry_run: Option<bool>) -> anyhow::Result<Value> {
        self.client.heal(dry_run).map_err(lift)
    }

    fn accept_loss(&self) -> anyhow::Result<Value> {
        self.client.accept_loss().map_err(lift)
    }

    fn history(&self, q: &crate::history::HistoryQuery) -> anyhow::Result<Value> {
        let path = format!("/v1/history?{}", super::views::history_query_string(q));
        self.client.call("GET", &path, None).map_err(lift)
    }

    fn period_report(
        &self,
        period: crate::report::Period,
        date: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut path = format!("/v1/reports/{}", period.name());
        if let Some(d) = date {
            path.push_str(&format!("?date={}", crate::client::encode_segment(d)));
        }
        self.client.call("GET", &path, None).map_err(lift)
    }

    fn operate(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        self.client
            .call(method, path, body)
            .map_err(|e| match e.status() {
                // A wrong state (409) or an unknown incident (404) is the operator's input: exit 2.
                Some(404 | 409) => UsageError(e.to_string()).into(),
                _ => lift(e),
            })
    }

    fn incidents(
        &self,
        limit: usize,
        query: &crate::incident_filter::IncidentQuery,
    ) -> anyhow::Result<Value> {
        let mut v = self.client.incidents(limit, query).map_err(lift)?;
        // Cut to what was asked, whatever the daemon sent.
        if let Some(list) = v.get_mut("incidents").and_then(Value::as_array_mut) {
            list.truncate(limit);
        } else if let Some(list) = v.as_array_mut() {
            list.truncate(limit);
        }
        Ok(v)
    }

    fn incident(&self, id: u64) -> anyhow::Result<Option<Value>> {
        self.client
            .incident(id)
            .map_err(lift)
            .with_context(|| format!("reading incident {id}"))
    }

    fn bundle(&self, id: u64) -> anyhow::Result<Option<Value>> {
        match self
            .client
            .call("GET", &format!("/v1/incidents/{id}/bundle"), None)
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(lift(e)).with_context(|| format!("reading the bundle of incident {id}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holder(pid: u32, host: &str, started_us: u64) -> store::lock::Holder {
        store::lock::Holder {
            pid,
            host: host.into(),
            started_us,
            heartbeat_us: started_us,
            closed: false,
        }
    }

    #[test]
    fn a_daemon_is_used_only_when_it_is_the_lock_holder() {
        let dir = std::path::Path::new("/d");
        let url = "http://127.0.0.1:9";
        let me = json!({"pid": 7, "host": "h", "started_us": 100});
        assert_eq!(
            holder_mismatch(url, &me, dir, Some(&holder(7, "h", 100))),
            None
        );
        let why = holder_mismatch(url, &me, dir, Some(&holder(8, "r", 100))).unwrap();
        assert!(
            why.contains(
                "http://127.0.0.1:9 answers for pid 7 on host h, but /d is held by pid 8 on host r"
            ),
            "{why}"
        );
        // Same pid on another host (a shared volume).
        let why = holder_mismatch(url, &me, dir, Some(&holder(7, "r", 100))).unwrap();
        assert!(why.contains("held by pid 7 on host r"), "{why}");
        // Same pid and host, another lock (a restarted process reusing the pid, or a replaced LOCK).
        let why = holder_mismatch(url, &me, dir, Some(&holder(7, "h", 200))).unwrap();
        // Times as RFC 3339 with their age, never raw µs.
        assert_eq!(
            why.matches("since 1970-01-01T00:00:00Z (").count(),
            2,
            "{why}"
        );
        assert!(!why.contains("µs"), "{why}");
        let unnamed = json!({"pid": 7, "host": "h", "started_us": null});
        let why = holder_mismatch(url, &unnamed, dir, Some(&holder(7, "h", 100))).unwrap();
        assert!(why.contains("does not name it"), "{why}");
        // Nothing to compare: not used.
        assert!(holder_mismatch(url, &Value::Null, dir, Some(&holder(7, "h", 100))).is_some());
        assert!(holder_mismatch(url, &me, dir, None).is_some());
    }
}
