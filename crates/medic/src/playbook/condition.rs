//! Trigger conditions: `latency_ms > 500`, `rss_bytes >= 1000000000 and fds > 900`, `status != 200 or up == 0`,
//! `target.fleet.error_rate > 0.05` (a reading of another target, e.g. a prometheus target's query, by its sample
//! name `target.<name>.<reading>`; one condition reads one target).
//!
//! A tiny grammar of our own, no arbitrary code: comparisons of one of the target's readings with a number, joined
//! by `and` (binds tighter) and `or`; no parentheses. Bounded: at most [`CONDITION_BYTES_MAX`] bytes and
//! [`CONDITION_TERMS_MAX`] comparisons. A reading the target does not have is refused when the playbook loads.

/// The longest condition accepted, bytes.
pub const CONDITION_BYTES_MAX: usize = 256;
/// The most comparisons in one condition.
pub const CONDITION_TERMS_MAX: usize = 8;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// One comparison: `metric op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The reading's name, e.g. `latency_ms`.
    pub metric: String,
    /// The operator.
    pub op: Op,
    /// The number compared with.
    pub value: f64,
}

/// A parsed condition: any of the groups holds when all of its comparisons hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// `or` of `and`s.
    pub any_of: Vec<Vec<Comparison>>,
    /// The text as written.
    pub text: String,
}

impl Condition {
    /// Parses `text`; the error says what was expected and where (word number).
    pub fn parse(text: &str) -> Result<Condition, String> {
        if text.len() > CONDITION_BYTES_MAX {
            return Err(format!(
                "condition of {} bytes is over condition_bytes_max = {CONDITION_BYTES_MAX}",
                text.len()
            ));
        }
        let words = tokens(text)?;
        if words.is_empty() {
            return Err("condition is empty; write e.g. \"latency_ms > 500\"".into());
        }
        let mut any_of = vec![Vec::new()];
        let mut i = 0;
        let mut terms = 0;
        loop {
            let (Some(metric), Some(op), Some(value)) =
                (words.get(i), words.get(i + 1), words.get(i + 2))
            else {
                return Err(format!(
                    "condition {text:?}: expected `METRIC OP NUMBER` at word {}",
                    i + 1
                ));
            };
            if !metric_ok(metric) {
                return Err(format!(
                    "condition {text:?}: {metric:?} is not a metric name"
                ));
            }
            let op = match op.as_str() {
                ">" => Op::Gt,
                ">=" => Op::Ge,
                "<" => Op::Lt,
                "<=" => Op::Le,
                "==" => Op::Eq,
                "!=" => Op::Ne,
                other => {
                    return Err(format!(
                        "condition {text:?}: unknown operator {other:?}; use >, >=, <, <=, == or !="
                    ));
                }
            };
            let value: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| format!("condition {text:?}: {value:?} is not a number"))?;
            terms += 1;
            if terms > CONDITION_TERMS_MAX {
                return Err(format!(
                    "condition {text:?}: more than condition_terms_max = {CONDITION_TERMS_MAX} comparisons"
                ));
            }
            if let Some(group) = any_of.last_mut() {
                group.push(Comparison {
                    metric: metric.clone(),
                    op,
                    value,
                });
            }
            i += 3;
            match words.get(i).map(String::as_str) {
                None => break,
                Some("and") => {}
                Some("or") => any_of.push(Vec::new()),
                Some(other) => {
                    return Err(format!(
                        "condition {text:?}: expected `and` or `or`, found {other:?}"
                    ));
                }
            }
            i += 1;
        }
        Ok(Condition {
            any_of,
            text: text.to_string(),
        })
    }

    /// Every metric named.
    pub fn metrics(&self) -> impl Iterator<Item = &str> {
        self.any_of.iter().flatten().map(|c| c.metric.as_str())
    }

    /// Whether it holds over `reading` (a reading not available makes its comparison false).
    pub fn holds(&self, reading: &dyn Fn(&str) -> Option<f64>) -> bool {
        self.any_of.iter().any(|group| {
            group.iter().all(|c| {
                let Some(v) = reading(&c.metric) else {
                    return false;
                };
                match c.op {
                    Op::Gt => v > c.value,
                    Op::Ge => v >= c.value,
                    Op::Lt => v < c.value,
                    Op::Le => v <= c.value,
                    Op::Eq => v == c.value,
                    Op::Ne => v != c.value,
                }
            })
        })
    }
}

/// A reading's name (`[A-Za-z_][A-Za-z0-9_]*`), or `target.<name>.<reading>` with a target's name
/// (`[a-z0-9_-]`).
fn metric_ok(metric: &str) -> bool {
    let reading_ok = |r: &str| {
        !r.is_empty()
            && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !r.starts_with(|c: char| c.is_ascii_digit())
    };
    match split_metric(metric) {
        (Some(target), reading) => {
            !target.is_empty()
                && target
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
                && reading_ok(reading)
        }
        (None, reading) => reading_ok(reading),
    }
}

/// `target.<name>.<reading>` → (`Some(name)`, `reading`); a bare reading → (`None`, it).
pub fn split_metric(metric: &str) -> (Option<&str>, &str) {
    match metric
        .strip_prefix("target.")
        .and_then(|rest| rest.split_once('.'))
    {
        Some((target, reading)) => (Some(target), reading),
        None => (None, metric),
    }
}

/// Splits into words, operators standing alone even when written without spaces (`latency_ms>500`).
fn tokens(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
        } else if matches!(c, '<' | '>' | '=' | '!') {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            let mut op = c.to_string();
            if chars.peek() == Some(&'=') {
                op.push('=');
                chars.next();
            }
            out.push(op);
        } else if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '+') {
            word.push(c);
        } else {
            return Err(format!("condition {text:?}: unexpected character {c:?}"));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_and_evaluate() {
        let c = Condition::parse("latency_ms > 500").unwrap();
        assert!(c.holds(&|m| (m == "latency_ms").then_some(600.0)));
        assert!(!c.holds(&|m| (m == "latency_ms").then_some(400.0)));
        assert!(!c.holds(&|_| None), "no reading: false");
        let c = Condition::parse("latency_ms>=5 and up == 1 or status != 200").unwrap();
        assert_eq!(c.any_of.len(), 2);
        assert_eq!(
            c.metrics().collect::<Vec<_>>(),
            ["latency_ms", "up", "status"]
        );
        assert!(c.holds(&|m| match m {
            "status" => Some(500.0),
            _ => Some(0.0),
        }));
        let c = Condition::parse("target.fleet-eu.error_rate > 0.05").unwrap();
        assert_eq!(
            split_metric(c.metrics().next().unwrap()),
            (Some("fleet-eu"), "error_rate")
        );
        assert_eq!(split_metric("latency_ms"), (None, "latency_ms"));
    }

    #[test]
    fn bad_conditions_name_what_is_wrong() {
        for (text, expected) in [
            ("", "empty"),
            ("latency_ms >", "METRIC OP NUMBER"),
            ("latency_ms => 5", "unknown operator"),
            ("latency_ms > fast", "not a number"),
            ("latency_ms > 5 but up == 1", "expected `and` or `or`"),
            ("rm(-rf) > 1", "unexpected character"),
            ("1x > 1", "not a metric name"),
            ("target.Fleet.x > 1", "not a metric name"),
            ("target.fleet. > 1", "not a metric name"),
        ] {
            let e = Condition::parse(text).unwrap_err();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
        let long = "a > 1 and ".repeat(30);
        assert!(
            Condition::parse(&long)
                .unwrap_err()
                .contains("condition_bytes_max")
        );
        let many = ["a > 1"; 9].join(" and ");
        assert!(
            Condition::parse(&many)
                .unwrap_err()
                .contains("condition_terms_max")
        );
    }
}
