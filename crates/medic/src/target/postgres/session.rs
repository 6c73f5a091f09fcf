//! One bounded conversation with a PostgreSQL server: [`with_client`] connects (libpq-style connection string or
//! URL, `application_name = medic`) and runs a piece of work on a current-thread runtime, the connection and the
//! work together under one `tokio::time::timeout`, so a dead, stopped or hanging server never holds the engine's
//! cycle past the limit. The server is also asked to give up a statement at the same limit (`statement_timeout`).
//!
//! Also here: [`redact_url`] (a password never leaves through a log, an issue or `medic config`) and
//! [`quote_ident`] (identifiers taken from issue evidence are quoted, never spliced raw into SQL).

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

/// The `application_name` of medic's sessions: its own backends are never cancelled or terminated by it.
pub const APPLICATION_NAME: &str = "medic";

/// Why a conversation failed: connecting, a statement, or the time limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The connection string does not parse.
    #[error("connection string: {0}")]
    Config(String),
    /// The runtime could not be built (out of threads or descriptors).
    #[error("cannot start the client runtime: {0}")]
    Runtime(String),
    /// No connection: refused, reset, unreachable (nothing answered as a PostgreSQL server).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// A statement failed without an answer of the server's (the connection broke).
    #[error("{0}")]
    Query(String),
    /// The server answered with an error (SQLSTATE `sqlstate`): it is up, whatever it refused — a connection
    /// (`53300` too many clients, `57P03` starting up, a login) or a statement.
    #[error("{what}: {message} ({sqlstate})")]
    Server {
        /// What was refused: `the server refused the connection`, or the statement's purpose.
        what: String,
        /// The server's message.
        message: String,
        /// Its SQLSTATE.
        sqlstate: String,
    },
    /// The limit passed.
    #[error("no answer within {0} ms")]
    Timeout(u64),
}

/// Parses `url` (a `postgres://` URL or `key=value` pairs) for a connection within `timeout`.
pub fn config(url: &str, timeout: Duration) -> Result<Config, SessionError> {
    let mut c = Config::from_str(url).map_err(|e| SessionError::Config(e.to_string()))?;
    c.connect_timeout(timeout)
        .application_name(APPLICATION_NAME)
        .options(format!("-c statement_timeout={}", timeout.as_millis()));
    Ok(c)
}

/// Connects to `url` and runs `work` on the client; connecting and the work together take at most `timeout`.
pub fn with_client<T, F, Fut>(url: &str, timeout: Duration, work: F) -> Result<T, SessionError>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<T, SessionError>>,
{
    let cfg = config(url, timeout)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SessionError::Runtime(e.to_string()))?;
    let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    rt.block_on(async move {
        let conversation = async move {
            let (client, connection) = cfg.connect(NoTls).await.map_err(connect_error)?;
            // The connection is driven while the work runs. Once the work (and with it the client) is done, it says
            // goodbye to the server (no "unexpected EOF" in the server's log) and ends, within the same limit.
            let driver = tokio::spawn(connection);
            let out = work(client).await;
            let _closed = driver.await;
            out
        };
        tokio::time::timeout(timeout, conversation)
            .await
            .unwrap_or(Err(SessionError::Timeout(ms)))
    })
}

/// A postgres error with its server message and SQLSTATE when there is one.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

impl SessionError {
    /// Whether the server itself answered (with an error): it is up.
    pub fn answered(&self) -> bool {
        matches!(self, SessionError::Server { .. })
    }

    /// The SQLSTATE of the server's answer, if it answered.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            SessionError::Server { sqlstate, .. } => Some(sqlstate),
            _ => None,
        }
    }
}

/// The SQLSTATE of "sorry, too many clients already": every connection the server allows is taken.
pub const TOO_MANY_CONNECTIONS: &str = "53300";

/// Maps an error of connecting: the server's own answer ([`SessionError::Server`]) or no connection.
fn connect_error(e: tokio_postgres::Error) -> SessionError {
    match e.as_db_error() {
        Some(db) => SessionError::Server {
            what: "the server refused the connection".into(),
            message: db.message().to_string(),
            sqlstate: db.code().code().to_string(),
        },
        None => SessionError::Connect(error_text(&e)),
    }
}

/// Maps a statement's error: the server's answer ([`SessionError::Server`]) or a broken connection.
pub fn query_error(what: &str) -> impl Fn(tokio_postgres::Error) -> SessionError + '_ {
    move |e| match e.as_db_error() {
        Some(db) => SessionError::Server {
            what: what.to_string(),
            message: db.message().to_string(),
            sqlstate: db.code().code().to_string(),
        },
        None => SessionError::Query(format!("{what}: {}", error_text(&e))),
    }
}

/// `url` with its password replaced by `<redacted>`: the `user:password@` of a URL, a `password=` pair of a
/// connection string (quoted or not), and a `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    const SHOWN: &str = crate::config::REDACTED;
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map(|i| rest_start + i)
            .unwrap_or(out.len());
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let from = rest_start + colon + 1;
                out.replace_range(from..rest_start + at, SHOWN);
            }
        }
    }
    redact_pairs(&out, SHOWN)
}

/// Replaces the value of every `password=` (a key of its own: at the start or after a space, `?` or `&`).
fn redact_pairs(text: &str, shown: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("password=") {
        let key_starts = i == 0 || rest[..i].ends_with([' ', '?', '&', '\t']);
        out.push_str(&rest[..i + "password=".len()]);
        rest = &rest[i + "password=".len()..];
        if !key_starts {
            continue;
        }
        let end = if let Some(quoted) = rest.strip_prefix('\'') {
            // A quoted value: up to the closing quote not escaped by a backslash.
            let mut escaped = false;
            let mut close = quoted.len();
            for (j, c) in quoted.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '\'' if !escaped => {
                        close = j;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            (close + 2).min(rest.len())
        } else {
            rest.find([' ', '&', '\t']).unwrap_or(rest.len())
        };
        out.push_str(shown);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `name` as a quoted SQL identifier (`"my ""odd"" table"`); a NUL is refused.
pub fn quote_ident(name: &str) -> Result<String, String> {
    if name.is_empty() || name.contains('\0') || name.len() > 255 {
        return Err(format!(
            "identifier {name:?}: 1..=255 bytes without NUL expected"
        ));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// `schema.name` with both parts quoted.
pub fn qualified(schema: &str, name: &str) -> Result<String, String> {
    Ok(format!("{}.{}", quote_ident(schema)?, quote_ident(name)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_in_urls_and_connection_strings() {
        let cases = [
            (
                "postgres://app:s3cret@db.internal:5432/shop",
                "postgres://app:<redacted>@db.internal:5432/shop",
            ),
            (
                "postgresql://app@db/shop?password=s3cret&sslmode=disable",
                "postgresql://app@db/shop?password=<redacted>&sslmode=disable",
            ),
            (
                "host=/run/pg user=app password=s3cret dbname=shop",
                "host=/run/pg user=app password=<redacted> dbname=shop",
            ),
            (
                "host=db password='s3cret \\' x' dbname=shop",
                "host=db password=<redacted> dbname=shop",
            ),
            ("postgres://app@db:5432/shop", "postgres://app@db:5432/shop"),
            ("host=db user=nopassword=x", "host=db user=nopassword=x"),
        ];
        for (given, shown) in cases {
            let r = redact_url(given);
            assert!(!r.contains("s3cret"), "{r}");
            assert_eq!(r, shown, "{given}");
        }
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("orders").unwrap(), "\"orders\"");
        assert_eq!(
            qualified("public", "we\"ird; DROP TABLE x").unwrap(),
            "\"public\".\"we\"\"ird; DROP TABLE x\""
        );
        assert!(quote_ident("").is_err());
        assert!(quote_ident("a\0b").is_err());
    }

    #[test]
    fn a_server_that_never_answers_is_bounded_by_the_timeout() {
        // A listener that accepts and says nothing.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let started = std::time::Instant::now();
        let r = with_client(
            &format!("host=127.0.0.1 port={port} user=x dbname=x"),
            Duration::from_millis(300),
            |_c| async { Ok(()) },
        );
        assert!(
            matches!(
                r,
                Err(SessionError::Timeout(300)) | Err(SessionError::Connect(_))
            ),
            "{r:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    }
}
