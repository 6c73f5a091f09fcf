//! Bearer-token authentication. When a token is configured, every request that changes data (`PUT`, `POST`,
//! `DELETE`, `PATCH`) must carry `Authorization: Bearer <token>` — except `POST /v1/search`, a read with a body.
//! Reads stay open, as the interface clients rely on says; `GET /v1/health` at the deep or full tier (the default
//! tier is deep), which scrubs the store, is answered without the token but logs a deprecation warning: a later
//! release will ask for it there. `serve` refuses to listen on a non-loopback address without a token, so only
//! loopback listeners ever run without this gate.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The configured token, if any.
#[derive(Clone, Debug)]
pub struct Auth {
    token: Option<String>,
}

impl Auth {
    /// A gate requiring `token` on mutating requests; `None` lets every request through.
    pub fn new(token: Option<String>) -> Self {
        Self { token }
    }
}

fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Why a request needs the token, or `None` when it is open to anyone.
fn needs_token(method: &Method, path: &str) -> Option<&'static str> {
    if *method == Method::POST && path == "/v1/search" {
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

/// The middleware: 401 `{"error"}` for a mutating request without the right bearer token.
pub async fn require_token(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    let Some(token) = auth.token.as_deref() else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(why) = needs_token(req.method(), req.uri().path()) else {
        if given.is_none() && will_need_token(req.uri().path(), req.uri().query()) {
            tracing::warn!(
                uri = %req.uri(),
                "deprecated: a deep or full health check without the bearer token; a later release will require it"
            );
        }
        return next.run(req).await;
    };
    let message = match given {
        Some(g) if constant_time_eq(g.trim().as_bytes(), token.as_bytes()) => {
            return next.run(req).await;
        }
        Some(_) => "the bearer token is wrong",
        None => why,
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
