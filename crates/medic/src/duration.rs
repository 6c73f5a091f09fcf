//! Durations in the configuration file. A key whose name ends in `_ms`, `_us` or `_secs` takes an integer in that
//! unit, as always, or a string with units: `"250ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`, and sums of them such as
//! `"1h30m"` (`us` for microseconds). The strings are converted to the key's unit in the text itself, on the same
//! line, before the file is parsed: a later error still names its line, and the keys stay plain integers for every
//! reader of the configuration.

/// What one unit is worth, in microseconds.
const UNITS: [(&str, u128); 6] = [
    ("us", 1),
    ("ms", 1_000),
    ("s", 1_000_000),
    ("m", 60_000_000),
    ("h", 3_600_000_000),
    ("d", 86_400_000_000),
];

/// The unit a key's name asks for (microseconds per unit), if it names one.
fn key_unit(key: &str) -> Option<(&'static str, u128)> {
    [
        ("_us", ("microseconds", 1)),
        ("_ms", ("milliseconds", 1_000)),
        ("_secs", ("seconds", 1_000_000)),
    ]
    .into_iter()
    .find(|(suffix, _)| key.ends_with(suffix))
    .map(|(_, u)| u)
}

/// Parses `"1h30m"` into microseconds.
pub fn parse_us(s: &str) -> Result<u128, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("an empty duration".into());
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("{:?} is too large", &rest[..digits]))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        let per = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, per)| *per)
            .ok_or_else(|| {
                if unit.is_empty() {
                    format!("{n} needs a unit")
                } else {
                    format!("unknown unit {unit:?}")
                }
            })?;
        total = n
            .checked_mul(per)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| "too large".to_string())?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// `text` with every duration string under a `_ms`, `_us` or `_secs` key replaced by the integer in that unit.
/// Text that does not parse as TOML is returned unchanged (the parser then names the line that is wrong).
pub fn rewrite(text: &str) -> Result<String, String> {
    let Ok(table) = toml::de::DeTable::parse(text) else {
        return Ok(text.to_string());
    };
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    walk(text, "", table.get_ref(), &mut edits)?;
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = text.to_string();
    for (r, with) in edits {
        out.replace_range(r, &with);
    }
    Ok(out)
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

fn walk(
    text: &str,
    path: &str,
    table: &toml::de::DeTable<'_>,
    edits: &mut Vec<(std::ops::Range<usize>, String)>,
) -> Result<(), String> {
    for (k, v) in table {
        let key = k.get_ref().as_ref();
        let full = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        };
        value(text, &full, key, v, edits)?;
    }
    Ok(())
}

fn value(
    text: &str,
    full: &str,
    key: &str,
    v: &toml::Spanned<toml::de::DeValue<'_>>,
    edits: &mut Vec<(std::ops::Range<usize>, String)>,
) -> Result<(), String> {
    match v.get_ref() {
        toml::de::DeValue::Table(t) => walk(text, full, t, edits),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                value(text, &format!("{full}[{i}]"), key, item, edits)?;
            }
            Ok(())
        }
        toml::de::DeValue::String(s) => {
            let Some((unit, per)) = key_unit(key) else {
                return Ok(());
            };
            let line = line_of(text, v.span().start);
            let us = parse_us(s).map_err(|e| {
                format!(
                    "line {line}: {full} = {s:?} is not a duration ({e}): give {unit} as an integer, or a string such \
                     as \"250ms\", \"30s\", \"5m\", \"2h\", \"1d\" or \"1h30m\""
                )
            })?;
            if us % per != 0 {
                return Err(format!(
                    "line {line}: {full} = {s:?} is not a whole number of {unit}"
                ));
            }
            let n = u64::try_from(us / per)
                .map_err(|_| format!("line {line}: {full} = {s:?} is too large"))?;
            edits.push((v.span(), n.to_string()));
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_sums_parse() {
        assert_eq!(parse_us("250ms"), Ok(250_000));
        assert_eq!(parse_us("30s"), Ok(30_000_000));
        assert_eq!(parse_us("1h30m"), Ok(5_400_000_000));
        assert_eq!(parse_us("1d"), Ok(86_400_000_000));
        assert!(parse_us("30").unwrap_err().contains("needs a unit"));
        assert!(parse_us("3 weeks").unwrap_err().contains("unknown unit"));
        assert!(parse_us("").is_err());
    }

    #[test]
    fn duration_strings_become_integers_in_the_key_s_unit_on_the_same_line() {
        let text = "[checks]\nshallow_interval_ms = \"5s\"\n\n[engine]\nx_us = \"2ms\"\ny_secs = \"1h\"\nname = \"30s\"\n";
        let out = rewrite(text).unwrap();
        assert_eq!(
            out,
            "[checks]\nshallow_interval_ms = 5000\n\n[engine]\nx_us = 2000\ny_secs = 3600\nname = \"30s\"\n"
        );
        let e = rewrite("[a]\n\nb_ms = \"5 parsecs\"\n").unwrap_err();
        assert!(
            e.starts_with("line 3: a.b_ms") && e.contains("unknown unit"),
            "{e}"
        );
        let e = rewrite("b_secs = \"1500ms\"\n").unwrap_err();
        assert!(e.contains("not a whole number of seconds"), "{e}");
        // Not TOML: unchanged, for the parser to name the line.
        assert_eq!(rewrite("a = [\n").unwrap(), "a = [\n");
        // Arrays of tables.
        let out = rewrite("[[t]]\nwait_ms = \"1s\"\n[[t]]\nwait_ms = 7\n").unwrap();
        assert_eq!(out, "[[t]]\nwait_ms = 1000\n[[t]]\nwait_ms = 7\n");
    }
}
