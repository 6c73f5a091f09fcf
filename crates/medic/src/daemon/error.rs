//! [`ApiError`]: the one place that decides what HTTP clients see when a request fails. Every failure is JSON
//! `{"error": "..."}` saying what was wrong; axum's own rejections (plain text by default) are mapped here, and only
//! the daemon's or the store's own trouble is a 5xx — bad input never is.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A failed request: a status and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What was wrong, for the client.
    pub message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is malformed or a value is out of range.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500: the daemon's own failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 503: the service cannot do this now (read-only, stopped writing, busy).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// The 413 answer for a body over `request_body_bytes_max`.
    pub fn body_too_large(limit: u64) -> Self {
        Self::body_over("http.request_body_bytes_max", limit)
    }

    /// The 413 answer for a body over the limit `key` = `limit`.
    pub fn body_over(key: &str, limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is over {key} = {limit} bytes"),
        )
    }

    /// The 413 answer for a request whose `Content-Length` declares more than `request_body_bytes_max`, given
    /// before any of the body is read.
    pub fn declared_body_too_large(key: &str, limit: u64, declared: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body of {declared} bytes (Content-Length) is over {key} = {limit} bytes"
            ),
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, error = %self.message, "request failed");
        }
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match &r {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                r.status(),
                "expected a JSON body with `Content-Type: application/json`",
            ),
            // A body that is not JSON, or JSON of the wrong shape: always a 400 naming the field, what was
            // expected and where (the documented status of a bad request; never axum's 422 for a type error).
            JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
                if let Some(e) = find_in_chain::<serde_path_to_error::Error<serde_json::Error>>(&r)
                {
                    Self::bad_request(json_body_message(Some(e.path()), e.inner()))
                } else if let Some(e) = find_in_chain::<serde_json::Error>(&r) {
                    // Characters after the JSON value: serde_json's own error, without a path.
                    Self::bad_request(json_body_message(None, e))
                } else {
                    Self::bad_request(format!("invalid JSON body: {}", r.body_text()))
                }
            }
            // A body that could not be read (over its limit, cut off): its own status, never a 5xx.
            _ => {
                let status = if r.status().is_server_error() {
                    StatusCode::BAD_REQUEST
                } else {
                    r.status()
                };
                Self::new(status, format!("invalid JSON body: {}", r.body_text()))
            }
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(format!("invalid path: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        match find_in_chain::<serde_path_to_error::Error<serde::de::value::Error>>(&r) {
            Some(e) => {
                let field = field_of(e.path());
                let what = plain_serde_message(&e.inner().to_string());
                match field {
                    Some(f) => Self::bad_request(format!("{f}: {what} (in the query string)")),
                    None => Self::bad_request(format!("query string: {what}")),
                }
            }
            None => Self::bad_request(format!("invalid query string: {}", r.body_text())),
        }
    }
}

/// A request body that must be a JSON object. serde reads a struct from a JSON array too (its elements taken as the
/// fields in order: `["ok"]` as `{"note": "ok"}`); every body medic takes is an object, so `Object<T>` reads `T` only
/// from one, and anything else is the error "expected a JSON object".
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Only<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Only<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Only(std::marker::PhantomData))
            .map(Object)
    }
}

/// `body` read as JSON into `T`; an error in the words of a rejected body (400 naming the field, what was expected
/// and where), `context` put first when given (`invalid silence: ...`).
pub fn parse_json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    context: Option<&str>,
) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = match serde_path_to_error::deserialize(&mut de).map(|Object(v)| v) {
        Ok(v) => de
            .end()
            .map(|()| v)
            .map_err(|e| json_body_message(None, &e)),
        Err(e) => Err(json_body_message(Some(e.path()), e.inner())),
    };
    parsed.map_err(|m| {
        ApiError::bad_request(match context {
            Some(c) => format!("{c}: {m}"),
            None => m,
        })
    })
}

/// The first error of type `T` in `e`'s chain of sources (axum keeps the deserializer's error there).
fn find_in_chain<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<T>() {
            return Some(t);
        }
        cur = c.source();
    }
    None
}

/// The field a path names (`k`, `filter.and[1].year`), or `None` for the body as a whole.
fn field_of(path: &serde_path_to_error::Path) -> Option<String> {
    let p = path.to_string();
    (p != "." && p != "?" && !p.is_empty()).then_some(p)
}

/// A body's JSON error in plain words: `k: expected a whole number from 0 to 18446744073709551615, got the string
/// "5" (line 1, column 27)`, `invalid JSON at line 1, column 2: key must be a string`.
fn json_body_message(
    path: Option<&serde_path_to_error::Path>,
    inner: &serde_json::Error,
) -> String {
    let (line, column) = (inner.line(), inner.column());
    let text = inner.to_string();
    let suffix = format!(" at line {line} column {column}");
    let bare = text.strip_suffix(&suffix).unwrap_or(&text);
    // serde_json places an error about the body as a whole (a list where an object belongs) at column 0.
    let at = if line == 0 || column == 0 {
        String::new()
    } else {
        format!(" (line {line}, column {column})")
    };
    if inner.is_syntax() || inner.is_eof() || inner.is_io() {
        let what = match bare {
            "EOF while parsing a value"
            | "EOF while parsing an object"
            | "EOF while parsing a list"
            | "EOF while parsing a string" => "the body ends before the JSON value does",
            "expected value" => "expected a JSON value",
            other => other,
        };
        return format!("invalid JSON{at}: {}", plain_words(what));
    }
    let what = plain_serde_message(bare);
    match path.and_then(field_of) {
        Some(f) => format!("{f}: {what}{at}"),
        None => format!("{what}{at}"),
    }
}

/// How deeply JSON may nest: objects and arrays inside one another, the body's own outermost one counted (the
/// parser's recursion limit, 128, refuses the 128th level).
pub const JSON_DEPTH_MAX: usize = 127;

/// Rust's type names and serde's phrasing replaced by plain words; backquotes by double quotes; the parser's
/// recursion limit named as the nesting limit it is.
pub(crate) fn plain_words(s: &str) -> String {
    let s = s.replace('`', "\"");
    match s.strip_prefix("recursion limit exceeded") {
        Some(rest) => format!(
            "nested too deeply: objects and arrays nest at most {JSON_DEPTH_MAX} levels{rest}"
        ),
        None => s,
    }
}

/// What a number of this Rust type may be.
fn plain_expected(expected: &str) -> String {
    match expected {
        "u8" => "a whole number from 0 to 255".to_string(),
        "u16" => "a whole number from 0 to 65535".to_string(),
        "u32" => "a whole number from 0 to 4294967295".to_string(),
        "u64" | "usize" => "a whole number from 0 to 18446744073709551615".to_string(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "a boolean" => "true or false".to_string(),
        "a sequence" => "a list".to_string(),
        "a map" => "an object".to_string(),
        "a borrowed string" => "a string".to_string(),
        e if e.starts_with("struct ") || e.starts_with("a map") => "an object".to_string(),
        e if e.starts_with("a sequence") || e.starts_with("a tuple") => "a list".to_string(),
        e => plain_words(e),
    }
}

/// What was given, as the client wrote it: `the string "5"`, `the number 1e+20`, `true`.
fn plain_unexpected(got: &str) -> String {
    if let Some(s) = got.strip_prefix("string ") {
        return format!("the string {s}");
    }
    for p in ["floating point ", "integer "] {
        if let Some(n) = got.strip_prefix(p) {
            return format!("the number {}", n.trim_matches('`'));
        }
    }
    if let Some(b) = got.strip_prefix("boolean ") {
        return b.trim_matches('`').to_string();
    }
    match got {
        "sequence" => "a list".to_string(),
        "map" => "an object".to_string(),
        "unit value" => "null".to_string(),
        "null" => "null".to_string(),
        g => plain_words(g),
    }
}

/// serde's and the standard library's parse messages in plain words, saying what was expected and what came.
fn plain_serde_message(msg: &str) -> String {
    for (prefix, invalid_value) in [("invalid type: ", false), ("invalid value: ", true)] {
        if let Some(rest) = msg.strip_prefix(prefix)
            && let Some((got, expected)) = rest.rsplit_once(", expected ")
        {
            let got = plain_unexpected(got);
            let expected = plain_expected(expected);
            // A whole number JSON wrote beyond u64 arrives as a float (`1e+20`): say it is out of range.
            let integral_float = rest.starts_with("floating point ")
                && got
                    .strip_prefix("the number ")
                    .and_then(|n| n.parse::<f64>().ok())
                    .is_some_and(|n| n.fract() == 0.0 && n.abs() >= 1.8e19);
            if (invalid_value || integral_float) && expected.starts_with("a whole number") {
                let n = got.strip_prefix("the number ").unwrap_or(&got);
                return format!("{n} is out of range: expected {expected}");
            }
            return format!("expected {expected}, got {got}");
        }
    }
    if let Some(f) = msg.strip_prefix("duplicate field ") {
        return format!(
            "{} is given twice (under its own name or another accepted name for it); give it once",
            plain_words(f)
        );
    }
    match msg {
        "invalid digit found in string" => "expected a whole number".to_string(),
        "number too large to fit in target type" | "number too small to fit in target type" => {
            "the number is out of range".to_string()
        }
        "cannot parse integer from empty string" => {
            "expected a whole number, got nothing".to_string()
        }
        "invalid float literal" => "expected a number".to_string(),
        "provided string was not `true` or `false`" => "expected true or false".to_string(),
        m => plain_words(m),
    }
}

impl From<heal::learn::KbError> for ApiError {
    fn from(e: heal::learn::KbError) -> Self {
        Self::internal(e.to_string())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(format!("request task failed: {e}"))
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        use store::StoreError as E;
        let status = match &e {
            E::InvalidInput(_) => StatusCode::BAD_REQUEST,
            E::UnknownCollection(_) => StatusCode::NOT_FOUND,
            E::CollectionConflict(_) => StatusCode::CONFLICT,
            E::TooLarge { what: "id", .. } => StatusCode::BAD_REQUEST,
            E::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            // Everything else is the store's own trouble (I/O, damage found, read-only, a loss): 503 with the
            // store's reason, never a 500 — the request was fine, and the engine is already on it.
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        // A user error must never surface as a 5xx, whatever variant the store adds later.
        let status = if e.is_user_error() && status.is_server_error() {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        Self::new(status, e.to_string())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(format!("{e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        k: u64,
        #[serde(default)]
        vector: Option<Vec<f32>>,
        #[serde(default, alias = "for")]
        duration: Option<String>,
    }

    fn message(body: &str) -> String {
        parse_json_body::<Body>(body.as_bytes(), None)
            .unwrap_err()
            .message
    }

    #[test]
    fn a_body_is_an_object_never_a_list_standing_for_one() {
        for body in ["[5]", "[5, null, null]", "5", "\"k\"", "null"] {
            let m = message(body);
            assert!(m.contains("expected a JSON object"), "{body}: {m}");
        }
        let b = parse_json_body::<Body>(br#"{"k": 5, "vector": [1.0]}"#, None).unwrap();
        assert_eq!((b.k, b.vector), (5, Some(vec![1.0])));
        assert!(
            message(r#"{"k": 5, "x": 1}"#).contains('x'),
            "unknown fields still named"
        );
    }

    #[test]
    fn a_body_error_names_the_field_what_was_expected_what_came_and_where() {
        assert_eq!(
            message(r#"{"k":"5"}"#),
            "k: expected a whole number from 0 to 18446744073709551615, got the string \"5\" (line 1, column 8)"
        );
        let m = message(r#"{"k":99999999999999999999}"#);
        assert!(
            m.starts_with("k: 1e20 is out of range") || m.starts_with("k: 1e+20 is out of range"),
            "{m}"
        );
        assert_eq!(
            message(r#"{"k":-1}"#),
            "k: -1 is out of range: expected a whole number from 0 to 18446744073709551615 (line 1, column 7)"
        );
        assert!(
            message(r#"{"k":1,"vector":[1,"x"]}"#)
                .starts_with("vector[1]: expected a number, got the string \"x\"")
        );
        assert!(
            message(r#"{"k":1,"duration":"1h","for":"2h"}"#)
                .contains("\"duration\" is given twice")
        );
        assert!(
            message("{not json")
                .starts_with("invalid JSON (line 1, column 2): key must be a string")
        );
        assert!(
            message(r#"{"k":1} x"#)
                .starts_with("invalid JSON (line 1, column 9): trailing characters")
        );
        assert!(message(r#"{}"#).starts_with("missing field \"k\""));
        for body in [
            r#"{"k":"5"}"#,
            r#"{"k":1.5}"#,
            r#"{"k":true}"#,
            r#"{"k":1,"x":1}"#,
        ] {
            let m = message(body);
            assert!(!m.contains('`') && !m.contains("u64"), "{body}: {m}");
        }
    }
}
