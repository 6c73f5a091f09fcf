//! Human and JSON output of the CLI: one JSON object as the last line of stdout with `--json`, short text without.
//! Colour only when stdout is a terminal and `NO_COLOR` is unset or empty (<https://no-color.org>). ANSI codes are
//! written by hand: four colours do not need a dependency.

use std::io::IsTerminal;

use serde_json::Value;

/// How the CLI prints.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// Print one JSON object instead of text.
    pub json: bool,
    /// ANSI colours allowed.
    pub color: bool,
}

impl Out {
    /// Decides from `--json`, `NO_COLOR` and whether stdout is a terminal.
    pub fn new(json: bool) -> Out {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Out {
            json,
            color: !no_color && std::io::stdout().is_terminal(),
        }
    }

    /// Prints `value` as one JSON line.
    pub fn json_line(&self, value: &Value) {
        println!(
            "{}",
            serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
        );
    }

    /// `text` in the colour of a health state (green healthy, yellow degraded, red worse).
    pub fn state(&self, state: &str) -> String {
        let code = match state.to_ascii_uppercase().as_str() {
            "HEALTHY" | "OK" | "PASS" | "PASSED" => "32",
            "DEGRADED" => "33",
            _ => "31",
        };
        self.paint(code, state)
    }

    /// Bold text.
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    /// A search snippet for the terminal: the matched terms the server marks with `<mark>…</mark>` shown bold and
    /// underlined in colour, `[between brackets]` without.
    pub fn snippet(&self, text: &str) -> String {
        let (pre, post) = if self.color {
            ("\x1b[1;4m", "\x1b[0m")
        } else {
            ("[", "]")
        };
        text.replace("<mark>", pre).replace("</mark>", post)
    }

    /// Dim text.
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// `n` with its noun, singular for one: `1 document`, `3 documents`, `0 documents`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A scalar as short text; objects and arrays as compact JSON.
pub fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Prints an object's fields as aligned `key: value` lines, nested objects indented; arrays of scalars inline, other
/// arrays as one indented entry per element (at most `ARRAY_ITEMS_SHOWN`).
pub fn print_fields(out: &Out, value: &Value, indent: usize) {
    const ARRAY_ITEMS_SHOWN: usize = 20;
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            let width = map.keys().map(|k| k.len()).max().unwrap_or(0);
            for (k, v) in map {
                match v {
                    Value::Object(inner) if !inner.is_empty() => {
                        println!("{pad}{}:", out.bold(k));
                        print_fields(out, v, indent + 2);
                    }
                    Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
                        println!("{pad}{}: ({} items)", out.bold(k), items.len());
                        for item in items.iter().take(ARRAY_ITEMS_SHOWN) {
                            println!("{pad}  - {}", one_line(item));
                        }
                        if items.len() > ARRAY_ITEMS_SHOWN {
                            println!("{pad}  … {} more", items.len() - ARRAY_ITEMS_SHOWN);
                        }
                    }
                    _ => {
                        let text = if k == "state" {
                            out.state(&scalar(v))
                        } else {
                            field_text(k, v, now_us())
                        };
                        println!("{pad}{:width$}  {text}", format!("{k}:"), width = width + 1);
                    }
                }
            }
        }
        other => println!("{pad}{}", scalar(other)),
    }
}

/// A field's value for people: a time (a key ending in `_at`, `_at_us`, `_since` or `_us` holding µs since the
/// epoch, i.e. at least 10^15 — durations never get that large) as RFC 3339 with its age at `now`, anything else as
/// [`scalar`].
pub fn field_text(key: &str, v: &Value, now: u64) -> String {
    let time_key = ["_at", "_at_us", "_since", "_us"]
        .iter()
        .any(|s| key.ends_with(s))
        || key == "at";
    match v.as_u64() {
        Some(us) if time_key && us >= 1_000_000_000_000_000 => {
            heal::clock::rfc3339_with_age(us, now)
        }
        _ => scalar(v),
    }
}

/// Now, µs since the epoch.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// An object as `k=v k=v` on one line (nested values as compact JSON).
pub fn one_line(v: &Value) -> String {
    match v {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", field_text(k, v, now_us())))
            .collect::<Vec<_>>()
            .join(" "),
        other => scalar(other),
    }
}

/// Prints rows as a left-aligned table with a header; cells are cut at `CELL_CHARS_MAX` characters.
pub fn print_table(out: &Out, header: &[&str], rows: &[Vec<String>]) {
    const CELL_CHARS_MAX: usize = 60;
    let cut = |s: &str| -> String {
        if s.chars().count() > CELL_CHARS_MAX {
            let mut t: String = s.chars().take(CELL_CHARS_MAX - 1).collect();
            t.push('…');
            t
        } else {
            s.to_string()
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        let n = cells.len();
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == n {
                    c
                } else {
                    let fill = widths[i].saturating_sub(c.chars().count());
                    format!("{c}{}", " ".repeat(fill))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!(
        "{}",
        out.bold(&line(header.iter().map(|h| h.to_string()).collect()))
    );
    for r in rows {
        println!("{}", line(r));
    }
}

/// The health state named in an answer (`state`, or `health.state`), upper-case.
pub fn state_of(v: &Value) -> Option<String> {
    let s = v
        .get("state")
        .or_else(|| v.get("health").and_then(|h| h.get("state")))
        .or_else(|| v.get("health"))?;
    s.as_str().map(|s| s.to_ascii_uppercase())
}

/// Whether an answer reports an escalation: an incident resolved `escalated`, or a positive/true/non-empty
/// `escalated` / `escalations` field anywhere in it.
pub fn has_escalation(v: &Value) -> bool {
    match v {
        Value::Object(map) => map.iter().any(|(k, val)| {
            let flagged = match k.as_str() {
                "resolution" => val.as_str() == Some("escalated"),
                // Acknowledged data lost beyond every redundancy: only an operator can end it.
                "code" => val.as_str() == Some("acknowledged_data_lost"),
                "escalated" | "escalations" => match val {
                    Value::Bool(b) => *b,
                    Value::Number(n) => n.as_f64().is_some_and(|x| x > 0.0),
                    Value::Array(a) => !a.is_empty(),
                    _ => false,
                },
                _ => false,
            };
            flagged || has_escalation(val)
        }),
        Value::Array(items) => items.iter().any(has_escalation),
        _ => false,
    }
}

fn at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    v.pointer(pointer).filter(|x| !x.is_null())
}

fn show(v: &Value, pointer: &str) -> String {
    at(v, pointer).map(scalar).unwrap_or_else(|| "-".into())
}

fn ms(v: &Value, pointer: &str) -> String {
    at(v, pointer)
        .and_then(Value::as_f64)
        .map(|x| format!("{x:.1} ms"))
        .unwrap_or_else(|| "-".into())
}

fn ratio(v: &Value, pointer: &str) -> String {
    at(v, pointer)
        .and_then(Value::as_f64)
        .map(|x| format!("{:.0}%", x * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// `status`: the state and the few figures worth a glance (`--json` has everything).
pub fn print_status(out: &Out, v: &Value) {
    let state = state_of(v).unwrap_or_else(|| "UNKNOWN".into());
    println!("state:        {}", out.state(&state));
    println!("documents:    {}", show(v, "/store/docs"));
    println!("last lsn:     {}", show(v, "/store/last_lsn"));
    println!("wal bytes:    {}", show(v, "/store/wal_bytes"));
    if let Some(r) = at(v, "/store/read_only") {
        // The store's reason starts with `read-only: ` itself; the label says it once.
        let reason = scalar(r);
        let reason = reason.strip_prefix("read-only: ").unwrap_or(&reason);
        println!("read-only:    {}", out.state(reason));
    }
    if let Some(p) = at(v, "/store/poisoned") {
        println!("poisoned:     {}", out.state(&scalar(p)));
    }
    let active = at(v, "/active_incidents")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    println!(
        "incidents:    {active} active, escalation level {}",
        show(v, "/escalation_level")
    );
    println!(
        "kpis:         MTTD {}, MTTR {}, auto-remediation {}, repair success {}",
        ms(v, "/kpis/mttd_ms"),
        ms(v, "/kpis/mttr_ms"),
        ratio(v, "/kpis/auto_remediation_rate"),
        ratio(v, "/kpis/repair_success_rate"),
    );
    if let Some(r) = at(v, "/knowledge_base/recreated") {
        println!(
            "knowledge base: {} was damaged and moved to {}; a fresh one was started",
            show(r, "/damaged_file"),
            show(r, "/moved_to")
        );
    } else if let Some(copies) = at(v, "/knowledge_base/damaged_copies").and_then(Value::as_array)
        && !copies.is_empty()
    {
        println!(
            "knowledge base: {} damaged cop{} kept aside ({})",
            copies.len(),
            if copies.len() == 1 { "y" } else { "ies" },
            copies.iter().map(scalar).collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(issues) = at(v, "/recovery/issues").and_then(Value::as_array)
        && !issues.is_empty()
    {
        println!("found at open:");
        for i in issues {
            println!("  [{}] {}", show(i, "/code"), show(i, "/summary"));
        }
    }
}

fn print_checks(out: &Out, checks: &[Value]) {
    for c in checks {
        let passed = c.get("passed").and_then(Value::as_bool).unwrap_or(false);
        let mark = if passed {
            out.state("ok")
        } else {
            out.state("FAIL")
        };
        println!(
            "  {mark:4}  {:20}  {}",
            show(c, "/name"),
            show(c, "/message")
        );
        for i in c
            .get("issues")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            println!(
                "          [{}] {}: {}",
                show(i, "/code"),
                show(i, "/resource"),
                show(i, "/summary")
            );
        }
    }
}

/// `check`: the state, then one line per check and one per issue found.
pub fn print_check(out: &Out, v: &Value) {
    let state = state_of(v).unwrap_or_else(|| "UNKNOWN".into());
    println!("state: {}", out.state(&state));
    if let Some(checks) = v.get("checks").and_then(Value::as_array) {
        print_checks(out, checks);
    }
    // What else holds the state where it is: checks of other tiers still failing, incidents still open.
    for c in at(v, "/failing_from_earlier_runs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!(
            "still failing since {} ({} tier, not run now): {}: {}",
            show(c, "/at"),
            show(c, "/tier"),
            show(c, "/check"),
            show(c, "/message")
        );
    }
    for i in at(v, "/open_incidents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!(
            "open incident {} ({}, {}): {}",
            show(i, "/id"),
            show(i, "/severity"),
            show(i, "/status"),
            show(i, "/summary")
        );
    }
}

/// `heal`: the state after the cycle, what was opened and closed, each attempt, escalations and errors.
pub fn print_heal(out: &Out, v: &Value) {
    let state = state_of(v).unwrap_or_else(|| "UNKNOWN".into());
    println!("state: {}", out.state(&state));
    for t in v
        .get("tiers_run")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!("{} checks:", show(t, "/tier"));
        if let Some(checks) = t.get("checks").and_then(Value::as_array) {
            print_checks(out, checks);
        }
    }
    println!(
        "issues: {}, incidents opened: {}, closed: {}",
        show(v, "/issues"),
        show(v, "/incidents_opened"),
        show(v, "/incidents_closed")
    );
    for d in v
        .get("decisions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!(
            "  incident {}: {} {} ({})",
            show(d, "/incident_id"),
            show(d, "/decision/action"),
            show(d, "/decision/strategy"),
            at(d, "/decision/reasons")
                .and_then(Value::as_array)
                .and_then(|r| r.first())
                .map(scalar)
                .unwrap_or_default()
        );
    }
    for a in v
        .get("attempts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!(
            "  incident {}: {} -> {}",
            show(a, "/incident_id"),
            show(a, "/attempt/strategy"),
            out.state(&show(a, "/attempt/outcome").replace("succeeded", "ok"))
        );
    }
    if has_escalation(v) {
        println!("{} {}", out.state("escalated:"), show(v, "/escalations"));
    }
    for e in v
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!("{} {}", out.state("error:"), scalar(e));
    }
}

/// `chaos`: the totals, then one row per fault kind, then the rounds worth a look.
pub fn print_chaos(out: &Out, v: &Value) {
    println!(
        "seed {}: {} rounds on {} documents in {} s ({} engine cycles)",
        show(v, "/seed"),
        show(v, "/rounds"),
        show(v, "/docs"),
        at(v, "/seconds")
            .and_then(Value::as_f64)
            .map(|x| format!("{x:.1}"))
            .unwrap_or_else(|| "-".into()),
        show(v, "/cycles")
    );
    let lost = at(v, "/acked_writes_lost")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let silent = at(v, "/silent_corruptions")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mark = |n: u64| {
        if n == 0 {
            out.state("HEALTHY").replace("HEALTHY", "0")
        } else {
            out.state(&format!("{n} (CRITICAL)"))
        }
    };
    println!(
        "injected {}, detected {}, repaired {}, escalated {}",
        show(v, "/injected"),
        show(v, "/detected"),
        show(v, "/repaired"),
        show(v, "/escalated")
    );
    println!(
        "acknowledged writes lost: {}, silent corruptions: {}",
        mark(lost),
        mark(silent)
    );
    println!(
        "MTTD p50 {}, p99 {}, MTTR p50 {}, MTTR p99 {}",
        ms(v, "/mttd_ms_p50"),
        ms(v, "/mttd_ms_p99"),
        ms(v, "/mttr_ms_p50"),
        ms(v, "/mttr_ms_p99")
    );
    if let Some(basis) = at(v, "/mttd_basis").and_then(Value::as_str) {
        println!("MTTD measured on {basis}");
    }
    if let Some(by) = v.get("by_fault").and_then(Value::as_object)
        && !by.is_empty()
    {
        let rows: Vec<Vec<String>> = by
            .iter()
            .map(|(kind, f)| {
                let mut row = vec![kind.clone()];
                for k in [
                    "injected",
                    "detected",
                    "repaired",
                    "escalated",
                    "acked_writes_lost",
                    "silent_corruptions",
                ] {
                    row.push(show(f, &format!("/{k}")));
                }
                row.push(ms(f, "/mttd_ms_p50"));
                row.push(ms(f, "/mttr_ms_p50"));
                row
            })
            .collect();
        print_table(
            out,
            &[
                "FAULT",
                "INJECTED",
                "DETECTED",
                "REPAIRED",
                "ESCALATED",
                "LOST",
                "SILENT",
                "MTTD P50",
                "MTTR P50",
            ],
            &rows,
        );
    }
    for n in v
        .get("notes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!(
            "  round {} {}: {} -> {}",
            show(n, "/round"),
            show(n, "/fault"),
            show(n, "/injected"),
            show(n, "/outcome")
        );
    }
}

/// Microseconds since the UNIX epoch as `YYYY-MM-DD HH:MM:SS` UTC (Howard Hinnant's civil-from-days; a date crate
/// for one format is not worth it).
pub fn utc(us: u64) -> String {
    let secs = us / 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escalation_is_found_in_nested_incidents_and_counters() {
        assert!(has_escalation(
            &json!({"incidents": [{"id": 1, "resolution": "escalated"}]})
        ));
        assert!(has_escalation(&json!({"summary": {"escalated": 2}})));
        assert!(!has_escalation(
            &json!({"incidents": [{"resolution": "auto_repaired"}], "escalated": 0})
        ));
        assert!(!has_escalation(&json!({"escalated": []})));
    }

    #[test]
    fn epoch_microseconds_render_as_rfc3339_with_age() {
        let now = 1_700_000_180_000_000;
        assert_eq!(
            field_text("started_at_us", &json!(1_700_000_000_000_000u64), now),
            "2023-11-14T22:13:20Z (3 min 0 s ago)"
        );
        assert_eq!(
            field_text("detected_at", &json!(1_700_000_000_000_000u64), now),
            "2023-11-14T22:13:20Z (3 min 0 s ago)"
        );
        // A duration or a count stays a number.
        assert_eq!(field_text("duration_us", &json!(1500), now), "1500");
        assert_eq!(
            field_text("docs", &json!(1_700_000_000_000_000u64), now),
            "1700000000000000"
        );
        assert!(
            one_line(&json!({"at": 1_700_000_000_000_000u64}))
                .starts_with("at=2023-11-14T22:13:20Z ("),
            "{}",
            one_line(&json!({"at": 1_700_000_000_000_000u64}))
        );
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000_123_456), "2023-11-14 22:13:20");
    }

    #[test]
    fn state_is_read_from_top_or_health() {
        assert_eq!(
            state_of(&json!({"state": "Healthy"})).as_deref(),
            Some("HEALTHY")
        );
        assert_eq!(
            state_of(&json!({"health": {"state": "DEGRADED"}})).as_deref(),
            Some("DEGRADED")
        );
        assert_eq!(state_of(&json!({"x": 1})), None);
    }

    #[test]
    fn no_colour_without_a_terminal_flag() {
        let out = Out {
            json: false,
            color: false,
        };
        assert_eq!(out.state("HEALTHY"), "HEALTHY");
        let out = Out {
            json: false,
            color: true,
        };
        assert!(out.state("CRITICAL").contains("\x1b[31m"));
    }
}
