//! A client for a running daemon, used by the CLI when a daemon holds the data directory.
//!
//! Small and blocking (`ureq` 3, no TLS: the daemon speaks plain HTTP on a trusted network or loopback). Every request
//! has a timeout, every answer body is read up to [`RESPONSE_BYTES_MAX`], and the bearer token is sent when given.
//! Answers are returned as JSON values in the daemon's own shape, so the CLI prints the same thing whether it talked
//! to a daemon or opened the data directory itself.

use std::time::Duration;

use serde_json::Value;

/// The largest answer body read from the daemon.
pub const RESPONSE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// The default time limit of one request (a full scrub through `/v1/health?tier=full` can take a while).
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(120);
/// The time limit for establishing a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a request to the daemon failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server URL is not `http://HOST:PORT[/prefix]`.
    #[error("server URL {url:?} is not valid: {reason}")]
    InvalidUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection could be made, or it broke, or it timed out.
    #[error("{method} {url}: {reason}")]
    Transport {
        /// The method.
        method: &'static str,
        /// The full URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The daemon answered with an error status.
    #[error("{method} {url}: the daemon answered {status}: {message}")]
    Status {
        /// The method.
        method: &'static str,
        /// The full URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The daemon's `error` field, or the body.
        message: String,
    },
    /// The answer is not the JSON expected.
    #[error("{method} {url}: unreadable answer: {reason}")]
    BadResponse {
        /// The method.
        method: &'static str,
        /// The full URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ClientError {
    /// True when the daemon could not be reached at all (nothing listening, refused, timed out).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Transport { .. })
    }

    /// The HTTP status when the daemon answered with an error, so callers can tell bad input (4xx) from trouble.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An answer: its status and JSON body (`Value::Null` when empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

/// A blocking client for one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the daemon at `base` (`http://HOST:PORT`, optionally with a path prefix), sending `token` as a
    /// bearer token when given. Every request is bounded by `timeout`.
    pub fn new(
        base: &str,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let trimmed = base.trim().trim_end_matches('/');
        let invalid = |reason: &str| ClientError::InvalidUrl {
            url: base.to_string(),
            reason: reason.to_string(),
        };
        let rest = trimmed
            .strip_prefix("http://")
            .ok_or_else(|| invalid("only http:// URLs are supported"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid("no host"));
        }
        if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("contains whitespace"));
        }
        if let Err(e) = trimmed.parse::<ureq::http::Uri>() {
            return Err(invalid(&format!("not a URL ({e})")));
        }
        if let Some(t) = &token
            && (t.is_empty() || t.chars().any(|c| c.is_control() || c == ' '))
        {
            return Err(invalid(
                "the token is empty or contains spaces or control characters",
            ));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Ok(Client {
            base: trimmed.to_string(),
            token,
            agent,
        })
    }

    /// The daemon's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One request; any status is returned as long as the transport worked and the body, if any, is JSON.
    pub fn request(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ClientError> {
        self.send(method, path, body.map_or(Payload::None, Payload::Json))
    }

    /// `POST /v1/docs` (or `/v1/collections/{c}/docs`) with an NDJSON body (one document a line):
    /// `{"written","first_lsn","last_lsn",...}` once durable.
    pub fn bulk(&self, collection: &str, ndjson: &[u8]) -> Result<Value, ClientError> {
        let path = docs_path(collection);
        let a = self.send("POST", &path, Payload::Ndjson(ndjson))?;
        if (200..300).contains(&a.status) {
            Ok(a.body)
        } else {
            Err(self.status_error("POST", &path, a))
        }
    }

    /// `GET /v1/collections`.
    pub fn collections(&self) -> Result<Value, ClientError> {
        self.expect_ok("GET", "/v1/collections", None)
    }

    /// `PUT /v1/collections/{name}` with the settings: the description (created, or existing with them).
    pub fn create_collection(&self, name: &str, settings: &Value) -> Result<Value, ClientError> {
        self.expect_ok(
            "PUT",
            &format!("/v1/collections/{}", encode_segment(name)),
            Some(settings),
        )
    }

    /// `DELETE /v1/collections/{name}`.
    pub fn drop_collection(&self, name: &str) -> Result<Value, ClientError> {
        self.expect_ok(
            "DELETE",
            &format!("/v1/collections/{}", encode_segment(name)),
            None,
        )
    }

    fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Payload<'_>,
    ) -> Result<Answer, ClientError> {
        let url = self.url(path);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let result = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            ("DELETE", _) => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (m, b) => {
                let mut r = if m == "PUT" {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                match b {
                    Payload::Json(v) => r.send_json(v),
                    Payload::Ndjson(bytes) => {
                        r.header("Content-Type", "application/x-ndjson").send(bytes)
                    }
                    Payload::None => r.send_empty(),
                }
            }
        };
        let response = result.map_err(|e| ClientError::Transport {
            method,
            url: url.clone(),
            reason: transport_reason(&e),
        })?;
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .into_with_config()
            .limit(RESPONSE_BYTES_MAX)
            .read_to_string()
            .map_err(|e| ClientError::BadResponse {
                method,
                url: url.clone(),
                reason: format!(
                    "{e} (answers are read up to response_bytes_max = {RESPONSE_BYTES_MAX})"
                ),
            })?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(_) if !(200..300).contains(&status) => Value::Object(
                    [("error".to_string(), Value::String(text))]
                        .into_iter()
                        .collect(),
                ),
                Err(e) => {
                    return Err(ClientError::BadResponse {
                        method,
                        url,
                        reason: format!("not JSON: {e}"),
                    });
                }
            }
        };
        Ok(Answer { status, body })
    }

    /// A request whose answer must be 2xx; any other status becomes [`ClientError::Status`].
    fn expect_ok(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let a = self.request(method, path, body)?;
        if (200..300).contains(&a.status) {
            Ok(a.body)
        } else {
            Err(self.status_error(method, path, a))
        }
    }

    fn status_error(&self, method: &'static str, path: &str, a: Answer) -> ClientError {
        let message = match &a.body {
            Value::Object(m) => match m.get("error") {
                Some(Value::String(s)) => s.clone(),
                _ => a.body.to_string(),
            },
            Value::Null => String::from("(no body)"),
            other => other.to_string(),
        };
        ClientError::Status {
            method,
            url: self.url(path),
            status: a.status,
            message,
        }
    }

    /// `GET /health`: 200 when serving, 503 otherwise; both carry JSON with the state.
    /// `method path` with an optional JSON body; the answer's JSON on a 2xx, else the daemon's error.
    pub fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        self.expect_ok(method, path, body)
    }

    pub fn health(&self) -> Result<Answer, ClientError> {
        self.request("GET", "/health", None)
    }

    /// `PUT /v1/docs/{id}` with `{"text", "vector"?, "meta"?}`; answers `{"id", "lsn"}` once durable.
    pub fn put_doc(&self, collection: &str, id: &str, doc: &Value) -> Result<Value, ClientError> {
        self.expect_ok(
            "PUT",
            &format!("{}/{}", docs_path(collection), encode_segment(id)),
            Some(doc),
        )
    }

    /// `GET /v1/docs/{id}`: the document, or `None` on 404.
    pub fn get_doc(&self, collection: &str, id: &str) -> Result<Option<Value>, ClientError> {
        let path = format!("{}/{}", docs_path(collection), encode_segment(id));
        let a = self.request("GET", &path, None)?;
        match a.status {
            200..=299 => Ok(Some(a.body)),
            404 if !unknown_collection(&a.body) => Ok(None),
            _ => Err(self.status_error("GET", &path, a)),
        }
    }

    /// `DELETE /v1/docs/{id}`: the answer body when it existed, `None` on 404.
    pub fn delete_doc(&self, collection: &str, id: &str) -> Result<Option<Value>, ClientError> {
        let path = format!("{}/{}", docs_path(collection), encode_segment(id));
        let a = self.request("DELETE", &path, None)?;
        match a.status {
            200..=299 => Ok(Some(a.body)),
            404 if !unknown_collection(&a.body) => Ok(None),
            _ => Err(self.status_error("DELETE", &path, a)),
        }
    }

    /// `POST /v1/search` with `{"text", "k"}` or `{"vector", "k"}`; answers `{"hits": [{"id", "score"}]}`.
    pub fn search(&self, collection: &str, query: &Value) -> Result<Value, ClientError> {
        if collection == store::collection::DEFAULT {
            self.expect_ok("POST", "/v1/search", Some(query))
        } else {
            let path = format!("/v1/collections/{}/search", encode_segment(collection));
            self.expect_ok("POST", &path, Some(query))
        }
    }

    /// `GET /v1/health?tier=`: runs checks up to `tier` (`quick`, `deep`, `full`); any status with a JSON body is
    /// an answer (an unhealthy store may answer 503).
    pub fn check(&self, tier: &str) -> Result<Answer, ClientError> {
        self.request(
            "GET",
            &format!("/v1/health?tier={}", encode_segment(tier)),
            None,
        )
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<Value, ClientError> {
        self.expect_ok("GET", "/v1/status", None)
    }

    /// `GET /v1/incidents?limit=&...`: the newest `limit` incidents `query`'s filters let through, newest first.
    pub fn incidents(
        &self,
        limit: usize,
        query: &crate::incident_filter::IncidentQuery,
    ) -> Result<Value, ClientError> {
        let query = crate::incident_filter::IncidentQuery {
            limit: Some(u64::try_from(limit).unwrap_or(u64::MAX)),
            ..query.clone()
        };
        self.expect_ok(
            "GET",
            &format!("/v1/incidents?{}", query.to_query_string()),
            None,
        )
    }

    /// `GET /v1/incidents/{id}`, `None` on 404.
    pub fn incident(&self, id: u64) -> Result<Option<Value>, ClientError> {
        let path = format!("/v1/incidents/{id}");
        let a = self.request("GET", &path, None)?;
        match a.status {
            200..=299 => Ok(Some(a.body)),
            404 => Ok(None),
            _ => Err(self.status_error("GET", &path, a)),
        }
    }

    /// `POST /v1/accept-loss` `{"confirm": true}`: accept acknowledged data lost beyond every redundancy.
    pub fn accept_loss(&self) -> Result<Value, ClientError> {
        self.expect_ok(
            "POST",
            "/v1/accept-loss",
            Some(&serde_json::json!({"confirm": true})),
        )
    }

    /// `POST /v1/heal[?dry_run=]`: one healing cycle now. `None` leaves the parameter out, so the daemon's
    /// configured `engine.dry_run` holds; `Some(d)` overrides it for this cycle.
    pub fn heal(&self, dry_run: Option<bool>) -> Result<Value, ClientError> {
        let path = match dry_run {
            Some(d) => format!("/v1/heal?dry_run={d}"),
            None => "/v1/heal".to_string(),
        };
        self.expect_ok("POST", &path, None)
    }
}

/// One line saying why a request did not get an answer.
fn transport_reason(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is a daemon listening there?)".to_string()
        }
        ureq::Error::HostNotFound => "host not found".to_string(),
        other => other.to_string(),
    }
}

/// A request body.
enum Payload<'a> {
    None,
    Json(&'a Value),
    Ndjson(&'a [u8]),
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters. Done by hand: six lines
/// against a dependency.
/// Where the documents of `collection` are: `/v1/docs` for `default`, else `/v1/collections/{c}/docs`.
fn docs_path(collection: &str) -> String {
    if collection == store::collection::DEFAULT {
        "/v1/docs".to_string()
    } else {
        format!("/v1/collections/{}/docs", encode_segment(collection))
    }
}

/// Whether a 404's body says the collection is unknown (not the document).
fn unknown_collection(body: &Value) -> bool {
    body.get("error")
        .and_then(Value::as_str)
        .is_some_and(|e| e.contains("collection"))
}

pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("a b/c%"), "a%20b%2Fc%25");
        assert_eq!(encode_segment("doc-1_x.y~"), "doc-1_x.y~");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        let t = Duration::from_secs(1);
        let e = Client::new("https://x:1", None, t).unwrap_err();
        assert!(e.to_string().contains("only http://"), "{e}");
        assert!(Client::new("http://", None, t).is_err());
        assert!(Client::new("http://h:1", Some("a b".into()), t).is_err());
        let c = Client::new("http://127.0.0.1:9/", None, t).unwrap();
        assert_eq!(c.base(), "http://127.0.0.1:9");
    }

    #[test]
    fn nothing_listening_is_a_transport_error_naming_the_url() {
        // Bind then drop a listener: the port is (almost certainly) closed now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(
            &format!("http://127.0.0.1:{port}"),
            None,
            Duration::from_secs(2),
        )
        .unwrap();
        let e = c.status().unwrap_err();
        assert!(e.is_unreachable(), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("127.0.0.1:{port}/v1/status")),
            "{e}"
        );
    }
}
