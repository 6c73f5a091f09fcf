//! Bearer-token authentication. When a token is configured, every request that changes data (`PUT`, `POST`,
//! `DELETE`, `PATCH`) must carry `Authorization: Bearer <token>` — except `POST /v1/search`, a read with a body.
//! Reads stay open, as the interface clients rely on says; `GET /v1/health` at the deep or full tier (the default
//! tier is deep), which scrubs the store, is answered without the token but logs a deprecation warning: a later
//! release will ask for it there. `serve` refuses to listen on a non-loopback address without a token, so only
//! loopback listeners ever run without this gate.
//!
//! Operators' tokens (`[http.operators]`, name → token) are accepted wherever `server.token` is, and name who acts:
//! the middleware puts an [`Operator`] on every request — the operator's name, `server-token` for `server.token`,
//! or `local` when no token is configured at all. With operators configured, their actions (approve, deny, ack,
//! resolve, reopen, annotate, false-positive, breaker resets, silences) need a token even without `server.token`.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The configured tokens: `server.token` and the operators'.
#[derive(Clone, Debug)]
pub struct Auth {
    token: Option<String>,
    operators: Vec<(String, String)>,
}

impl Auth {
    /// A gate requiring `token` on mutating requests; `None` lets every request through.
    pub fn new(token: Option<String>) -> Self {
        Self {
            token,
            operators: Vec::new(),
        }
    }

    /// Also accepts each operator's token (name, token), naming the operator.
    pub fn with_operators(
        mut self,
        operators: &std::collections::BTreeMap<String, String>,
    ) -> Self {
        self.operators = operators
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        self
    }

    /// Who `given` (a bearer token) names: an operator, `server-token`, or nobody.
    fn who(&self, given: &str) -> Option<String> {
        let given = given.trim().as_bytes();
        // Every token compared, so the time taken does not say which one matched.
        let mut found = None;
        for (name, token) in &self.operators {
            if constant_time_eq(given, token.as_bytes()) && found.is_none() {
                found = Some(name.clone());
            }
        }
        let server = self
            .token
            .as_deref()
            .is_some_and(|t| constant_time_eq(given, t.as_bytes()));
        found.or_else(|| server.then(|| SERVER_TOKEN.to_string()))
    }
}

/// Who acted with `server.token`.
pub const SERVER_TOKEN: &str = "server-token";

/// Who made a request: an operator's name, [`SERVER_TOKEN`], or `local` (no token configured). Put on every
/// request by [`require_token`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator(pub String);

/// Whether `path` is an operator's action (which needs a token whenever operators are configured).
fn is_operator_route(path: &str) -> bool {
    path.starts_with("/v1/incidents/")
        || path.starts_with("/v1/breakers/")
        || path.starts_with("/v1/silences")
        || path == "/v1/accept-loss"
}

fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Why a request needs the token, or `None` when it is open to anyone.
fn needs_token(method: &Method, path: &str) -> Option<&'static str> {
    if *method == Method::POST
        && (path == "/v1/search"
            || path
                .strip_prefix("/v1/collections/")
                .and_then(|rest| rest.strip_suffix("/search"))
                .is_some_and(|c| !c.contains('/')))
    {
        // A search reads; it only carries its query in a body.
        return None;
    }
    if is_mutating(method) {
        return Some(
            "this request changes data: send `Authorization: Bearer <token>` (server.token in the config)",
        );
    }
    None
}

/// Whether an open read is one that a later release will guard: `/v1/health` at the deep or full tier.
fn will_need_token(path: &str, query: Option<&str>) -> bool {
    path == "/v1/health" && !is_cheap_tier(query)
}

/// Whether `/v1/health`'s query asks for the shallow tier only (exactly one `tier=shallow` or `tier=quick`); any
/// other query — the default (deep), `deep`, `full`, or something unreadable — counts as expensive.
fn is_cheap_tier(query: Option<&str>) -> bool {
    let tiers: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("tier="))
        .collect();
    matches!(tiers.as_slice(), ["shallow" | "quick"])
}

/// Compares in time independent of where the first difference is, so the token cannot be guessed byte by byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware: 401 `{"error"}` for a mutating request without the right bearer token; every request passed on
/// carries its [`Operator`].
pub async fn require_token(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let who = given.as_deref().and_then(|g| auth.who(g));
    let configured = auth.token.is_some() || !auth.operators.is_empty();
    req.extensions_mut().insert(Operator(
        who.clone()
            .unwrap_or_else(|| crate::operators::LOCAL.to_string()),
    ));
    if !configured {
        return next.run(req).await;
    }
    let operator_action = is_mutating(req.method()) && is_operator_route(req.uri().path());
    if auth.token.is_none() && !operator_action {
        return next.run(req).await;
    }
    let given = given.as_deref();
    let why = needs_token(req.method(), req.uri().path()).map(|why| {
        if auth.token.is_none() {
            "this is an operator's action: send `Authorization: Bearer <token>` with your token from \
             [http.operators] (medic: --token or MEDIC_TOKEN)"
        } else {
            why
        }
    });
    let Some(why) = why else {
        if given.is_none() && will_need_token(req.uri().path(), req.uri().query()) {
            tracing::warn!(
                uri = %req.uri(),
                "deprecated: a deep or full health check without the bearer token; a later release will require it"
            );
        }
        return next.run(req).await;
    };
    let message = match (given, who) {
        (Some(_), Some(_)) => return next.run(req).await,
        (Some(_), None) => "the bearer token is wrong",
        (None, _) => why,
    };
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn search_and_reads_are_open_deep_checks_are_flagged_for_later() {
        assert_eq!(needs_token(&Method::POST, "/v1/search"), None);
        assert_eq!(
            needs_token(&Method::POST, "/v1/collections/wide/search"),
            None
        );
        assert!(needs_token(&Method::POST, "/v1/collections/wide/docs").is_some());
        assert!(needs_token(&Method::PUT, "/v1/collections/wide").is_some());
        assert!(needs_token(&Method::DELETE, "/v1/collections/wide").is_some());
        assert_eq!(needs_token(&Method::GET, "/v1/docs/a"), None);
        assert_eq!(needs_token(&Method::GET, "/v1/status"), None);
        assert_eq!(needs_token(&Method::GET, "/health"), None);
        assert_eq!(needs_token(&Method::GET, "/v1/health"), None);
        assert!(!will_need_token("/v1/health", Some("tier=shallow")));
        assert!(!will_need_token("/v1/health", Some("tier=quick")));
        assert!(!will_need_token("/v1/status", None));
        for q in [
            None,
            Some("tier=deep"),
            Some("tier=full"),
            Some("tier=comprehensive"),
            Some("tier=f%75ll"),
            Some("tier=quick&tier=full"),
        ] {
            assert!(will_need_token("/v1/health", q), "{q:?}");
        }
        for (m, p) in [
            (Method::POST, "/v1/heal"),
            (Method::POST, "/v1/accept-loss"),
            (Method::POST, "/v1/incidents/1/false-positive"),
            (Method::PUT, "/v1/docs/a"),
            (Method::DELETE, "/v1/docs/a"),
        ] {
            assert!(needs_token(&m, p).is_some(), "{m} {p}");
        }
    }

    #[test]
    fn only_reads_are_exempt() {
        assert!(!is_mutating(&Method::GET));
        assert!(!is_mutating(&Method::HEAD));
        assert!(is_mutating(&Method::PUT));
        assert!(is_mutating(&Method::POST));
        assert!(is_mutating(&Method::DELETE));
    }
}
