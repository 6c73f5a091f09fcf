//! Bearer-token authentication of mutating requests (`PUT`, `POST`, `DELETE`, `PATCH`). When a token is configured
//! every mutating request must carry `Authorization: Bearer <token>`; reads stay open. `serve` refuses to listen on
//! a non-loopback address without a token, so only loopback listeners ever run without this gate.

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
    if !is_mutating(req.method()) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let message = match given {
        Some(g) if constant_time_eq(g.trim().as_bytes(), token.as_bytes()) => {
            return next.run(req).await;
        }
        Some(_) => "the bearer token is wrong",
        None => {
            "this request changes data: send `Authorization: Bearer <token>` (server.token in the config)"
        }
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
    fn only_reads_are_exempt() {
        assert!(!is_mutating(&Method::GET));
        assert!(!is_mutating(&Method::HEAD));
        assert!(is_mutating(&Method::PUT));
        assert!(is_mutating(&Method::POST));
        assert!(is_mutating(&Method::DELETE));
    }
}
