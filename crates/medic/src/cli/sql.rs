//! `medic sql "SELECT ..."`: read-only SQL over the knowledge base (`<data>/medic.sqlite3`), for the views
//! `healing_status`, `detected_issues` and `repair_history` ([`crate::kb::views`]) and the tables under them.
//!
//! Read-only three times over: the file is opened with `SQLITE_OPEN_READ_ONLY` and `PRAGMA query_only`, the text
//! must be one statement starting with `SELECT` or `WITH`, and SQLite must judge the prepared statement read-only.
//! Bounded: the text by [`SQL_BYTES_MAX`], the rows printed by `--limit` (at most [`SQL_ROWS_MAX`]; more are cut and
//! said so), the run by [`SQL_TIME_MS_MAX`] (then interrupted). It reads the file directly, so it works beside a
//! running daemon (SQLite's WAL lets readers in) and without one.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};

use super::render::{self, Out};
use super::{EXIT_OK, UsageError};

/// The longest statement accepted.
pub const SQL_BYTES_MAX: usize = 16 * 1024;
/// The most rows one statement prints (`--limit`'s upper bound).
pub const SQL_ROWS_MAX: u64 = 10_000;
/// The rows printed when `--limit` is not given.
pub const SQL_ROWS_DEFAULT: u64 = 1_000;
/// How long one statement may run before it is interrupted.
pub const SQL_TIME_MS_MAX: u64 = 10_000;

/// The statement's text after leading white space and comments.
fn skip_comments(mut sql: &str) -> &str {
    loop {
        let t = sql.trim_start();
        if let Some(rest) = t.strip_prefix("--") {
            sql = rest.find('\n').map_or("", |i| &rest[i + 1..]);
        } else if let Some(rest) = t.strip_prefix("/*") {
            sql = rest.find("*/").map_or("", |i| &rest[i + 2..]);
        } else {
            return t;
        }
    }
}

/// Refuses what is not one `SELECT`/`WITH` statement within [`SQL_BYTES_MAX`], naming why.
pub fn check_text(sql: &str) -> Result<(), String> {
    if sql.len() > SQL_BYTES_MAX {
        return Err(format!(
            "the statement is {} bytes, over sql_bytes_max = {SQL_BYTES_MAX}",
            sql.len()
        ));
    }
    let body = skip_comments(sql);
    let word: String = body
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    if body.is_empty() {
        return Err(
            "no statement given; write one SELECT, e.g. medic sql \"SELECT * FROM healing_status\""
                .into(),
        );
    }
    if !(word.eq_ignore_ascii_case("select") || word.eq_ignore_ascii_case("with")) {
        let shown = if word.is_empty() {
            body.chars().take(20).collect()
        } else {
            word.to_ascii_uppercase()
        };
        return Err(format!(
            "medic sql runs one SELECT (or WITH ... SELECT) statement only; this one starts with {shown:?}"
        ));
    }
    Ok(())
}

/// A cell as JSON: integers and reals as numbers (a non-finite real as null), text as text, a blob as `x'HEX'`.
fn cell(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(format!(
            "x'{}'",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )),
    }
}

/// What one statement answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The column names.
    pub columns: Vec<String>,
    /// At most the limit's rows.
    pub rows: Vec<Vec<Value>>,
    /// More rows were there than the limit.
    pub truncated: bool,
}

/// Runs `sql` on the knowledge base at `path`, read-only; at most `limit` rows. Bad statements are usage errors.
pub fn run(path: &Path, sql: &str, limit: u64) -> anyhow::Result<Answer> {
    check_text(sql).map_err(UsageError)?;
    if !path.is_file() {
        return Err(UsageError(format!(
            "no knowledge base at {} (medic writes it when it first runs on that data directory; a mistyped --data?)",
            path.display()
        ))
        .into());
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| anyhow::anyhow!("{}: cannot open read-only: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "query_only", true)?;
    let mut stmt = conn.prepare(sql).map_err(|e| match e {
        rusqlite::Error::MultipleStatement => {
            UsageError("medic sql runs one statement; remove what follows the first `;`".into())
        }
        e => UsageError(format!("the statement does not run: {e}")),
    })?;
    if !stmt.readonly() {
        return Err(UsageError("medic sql runs read-only statements only".into()).into());
    }
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    // The time bound: a watchdog thread interrupts the statement unless told it finished.
    let interrupt = conn.get_interrupt_handle();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) =
            done_rx.recv_timeout(Duration::from_millis(SQL_TIME_MS_MAX))
        {
            interrupt.interrupt();
        }
    });
    let result = (|| {
        let mut rows = Vec::new();
        let mut truncated = false;
        let mut cursor = stmt.query([])?;
        while let Some(row) = cursor.next()? {
            if rows.len() as u64 >= limit {
                truncated = true;
                break;
            }
            rows.push(
                (0..columns.len())
                    .map(|i| row.get_ref(i).map(cell))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok::<_, rusqlite::Error>((rows, truncated))
    })();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    let (rows, truncated) = result.map_err(|e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::OperationInterrupted) => UsageError(format!(
            "the statement ran longer than sql_time_ms_max = {SQL_TIME_MS_MAX} ms and was interrupted"
        )),
        _ => UsageError(format!("the statement failed: {e}")),
    })?;
    Ok(Answer {
        columns,
        rows,
        truncated,
    })
}

/// `medic sql`: prints the answer as a table, or `{"columns","rows","row_count","truncated","limit"}` with `--json`.
pub fn print(out: &Out, answer: &Answer, limit: u64) -> u8 {
    if out.json {
        out.json_line(&json!({
            "columns": answer.columns,
            "rows": answer.rows,
            "row_count": answer.rows.len(),
            "truncated": answer.truncated,
            "limit": limit,
        }));
    } else {
        let header: Vec<&str> = answer.columns.iter().map(String::as_str).collect();
        let rows: Vec<Vec<String>> = answer
            .rows
            .iter()
            .map(|r| r.iter().map(render::scalar).collect())
            .collect();
        render::print_table(out, &header, &rows);
        println!("{} rows", answer.rows.len());
    }
    if answer.truncated {
        eprintln!(
            "cut at {limit} rows (--limit; at most sql_rows_max = {SQL_ROWS_MAX}): narrow the statement or raise --limit"
        );
    }
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_select_or_with_passes_the_text_check() {
        for ok in [
            "SELECT 1",
            "  select * from healing_status",
            "-- a comment\nWITH x AS (SELECT 1) SELECT * FROM x",
            "/* c */ SELECT 2",
        ] {
            assert_eq!(check_text(ok), Ok(()), "{ok}");
        }
        for (bad, word) in [
            ("DELETE FROM incidents", "DELETE"),
            ("drop table incidents", "DROP"),
            ("PRAGMA writable_schema = 1", "PRAGMA"),
            ("ATTACH 'x' AS y", "ATTACH"),
            ("-- only a comment", "no statement"),
            ("(SELECT 1)", "(SELECT 1)"),
        ] {
            let e = check_text(bad).unwrap_err();
            assert!(e.contains(word), "{bad}: {e}");
        }
        let long = format!("SELECT '{}'", "x".repeat(SQL_BYTES_MAX));
        assert!(check_text(&long).unwrap_err().contains("sql_bytes_max"));
    }
}
