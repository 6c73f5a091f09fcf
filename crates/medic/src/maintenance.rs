//! What makes an automatic repair wait, as the program decides it: operators' silences that say `repair = false`
//! (the incident is recorded, nobody is notified, nothing is repaired until the silence ends or is expired), and
//! recurring maintenance windows from `[[maintenance]]` (a cron schedule in UTC and a duration) during which
//! repairs above the window's `risk_max` wait. [`Holds`] is the engine's [`RepairHold`]; the engine defers a held
//! incident and decides it again every cycle, so the repair runs as soon as the hold is gone.
//!
//! The cron schedules are parsed by `croner` (five fields, minute first, POSIX semantics, UTC).

use std::str::FromStr as _;

use chrono::{DateTime, Utc};
use heal::Timestamp;
use heal::engine::{RepairHold, RepairRequest};
use serde::{Deserialize, Serialize};

use crate::operators::{SilenceSet, parse_duration};

/// The most `[[maintenance]]` windows.
pub const WINDOWS_MAX: usize = 64;
/// The longest a window may last (`maintenance_duration_max`): a week.
pub const WINDOW_DURATION_MAX_US: u64 = 7 * 86_400 * 1_000_000;

/// `[[maintenance]]`: a recurring window during which risky repairs wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Its name, for the decisions and the log.
    pub name: String,
    /// When it starts: a cron schedule in UTC, five fields (`minute hour day-of-month month day-of-week`), e.g.
    /// `"0 2 * * SUN"` for Sundays at 02:00.
    pub cron: String,
    /// How long it lasts from each start, e.g. `"2h"`.
    pub duration: String,
    /// Repairs whose estimated risk is above this wait while the window is open; 0 holds every repair. [0, 1].
    #[serde(default = "default_risk_max")]
    pub risk_max: f64,
}

fn default_risk_max() -> f64 {
    0.2
}

/// A window ready to be asked.
#[derive(Debug, Clone)]
pub struct Window {
    name: String,
    pattern: String,
    cron: croner::Cron,
    duration_us: u64,
    risk_max: f64,
}

impl Window {
    /// Checks and compiles `[[maintenance]]` entry `index`; the error names the entry, the key and what is accepted.
    pub fn compile(index: usize, c: &MaintenanceConfig) -> Result<Window, String> {
        let at = |key: &str| format!("maintenance[{index}] ({:?}).{key}", c.name);
        if c.name.trim().is_empty() || c.name.len() > 128 {
            return Err(format!(
                "maintenance[{index}].name: {} bytes: accepted 1..=128",
                c.name.len()
            ));
        }
        let cron = croner::Cron::from_str(&c.cron).map_err(|e| {
            format!(
                "{} = {:?} is not a cron schedule ({e}): write five fields, minute hour day-of-month month \
                 day-of-week, e.g. \"0 2 * * SUN\"",
                at("cron"),
                c.cron
            )
        })?;
        let duration_us =
            parse_duration(&c.duration).map_err(|e| format!("{}: {e}", at("duration")))?;
        if duration_us == 0 || duration_us > WINDOW_DURATION_MAX_US {
            return Err(format!(
                "{} = {:?}: accepted more than 0 and at most 7d (maintenance_duration_max)",
                at("duration"),
                c.duration
            ));
        }
        if !(c.risk_max.is_finite() && (0.0..=1.0).contains(&c.risk_max)) {
            return Err(format!(
                "{} = {}: accepted [0, 1]",
                at("risk_max"),
                c.risk_max
            ));
        }
        Ok(Window {
            name: c.name.clone(),
            pattern: c.cron.clone(),
            cron,
            duration_us,
            risk_max: c.risk_max,
        })
    }

    /// The end of the occurrence open at `now`, if one is: the latest start `s` with `now - duration < s <= now`.
    pub fn open_until(&self, now: Timestamp) -> Option<Timestamp> {
        let now_t = utc(now)?;
        let start = self.cron.find_previous_occurrence(&now_t, true).ok()?;
        let start_us = u64::try_from(start.timestamp_micros()).ok()?;
        let end = start_us.saturating_add(self.duration_us);
        (start_us <= now && now < end).then_some(end)
    }
}

/// Checks every `[[maintenance]]` entry.
pub fn compile_all(windows: &[MaintenanceConfig]) -> Result<Vec<Window>, String> {
    if windows.len() > WINDOWS_MAX {
        return Err(format!(
            "{} [[maintenance]] windows: at most maintenance_windows_max = {WINDOWS_MAX}",
            windows.len()
        ));
    }
    windows
        .iter()
        .enumerate()
        .map(|(i, w)| Window::compile(i, w))
        .collect()
}

fn utc(us: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_micros(i64::try_from(us).ok()?)
}

/// A time for people: RFC 3339, UTC, to the second.
pub fn rfc3339(us: Timestamp) -> String {
    utc(us).map_or_else(
        || format!("{us} µs"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// The holds the engine asks before every automatic repair: silences without repair, then maintenance windows.
pub struct Holds {
    silences: SilenceSet,
    windows: Vec<Window>,
}

impl Holds {
    /// Holds from the operators' silences and the configured windows.
    pub fn new(silences: SilenceSet, windows: Vec<Window>) -> Holds {
        Holds { silences, windows }
    }
}

impl RepairHold for Holds {
    fn hold(&self, r: &RepairRequest<'_>) -> Option<String> {
        if let Some(s) = self.silences.holding_repair(r) {
            return Some(format!(
                "held by silence {} until {} ({}): no automatic repair while it lasts; `medic silence expire {}` \
                 lifts it",
                s.id,
                rfc3339(s.ends_at),
                s.comment,
                s.id
            ));
        }
        self.windows.iter().find_map(|w| {
            if r.risk <= w.risk_max {
                return None;
            }
            let end = w.open_until(r.now)?;
            Some(format!(
                "maintenance window {:?} ({}, {}) is open until {}: {} (risk {:.2}) is above its risk_max {:.2} and \
                 waits",
                w.name,
                w.pattern,
                heal::engine::human_duration(w.duration_us),
                rfc3339(end),
                r.strategy,
                r.risk,
                w.risk_max
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600 * 1_000_000;

    fn window(cron: &str, duration: &str) -> Window {
        Window::compile(
            0,
            &MaintenanceConfig {
                name: "nightly".into(),
                cron: cron.into(),
                duration: duration.into(),
                risk_max: 0.2,
            },
        )
        .unwrap()
    }

    fn at(text: &str) -> Timestamp {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_micros() as u64
    }

    #[test]
    fn a_window_is_open_from_each_start_for_its_duration() {
        let w = window("0 2 * * SUN", "2h");
        // 2026-12-06 is a Sunday.
        assert_eq!(w.open_until(at("2026-12-06T01:59:59Z")), None);
        assert_eq!(
            w.open_until(at("2026-12-06T02:00:00Z")),
            Some(at("2026-12-06T04:00:00Z"))
        );
        assert_eq!(
            w.open_until(at("2026-12-06T03:59:59Z")),
            Some(at("2026-12-06T04:00:00Z"))
        );
        assert_eq!(w.open_until(at("2026-12-06T04:00:00Z")), None);
        assert_eq!(w.open_until(at("2026-12-07T02:30:00Z")), None, "a Monday");
        let daily = window("30 23 * * *", "1h");
        assert_eq!(
            daily.open_until(at("2026-12-07T00:10:00Z")),
            Some(at("2026-12-07T00:30:00Z")),
            "a window runs past midnight"
        );
        assert!(daily.open_until(4 * H).is_none());
    }

    #[test]
    fn a_bad_window_is_refused_naming_the_entry_and_key() {
        let bad = |cron: &str, duration: &str, risk_max: f64| {
            Window::compile(
                3,
                &MaintenanceConfig {
                    name: "backup".into(),
                    cron: cron.into(),
                    duration: duration.into(),
                    risk_max,
                },
            )
            .unwrap_err()
        };
        let e = bad("0 25 * * *", "1h", 0.2);
        assert!(
            e.starts_with("maintenance[3] (\"backup\").cron = \"0 25 * * *\""),
            "{e}"
        );
        let e = bad("0 2 * * *", "soon", 0.2);
        assert!(e.starts_with("maintenance[3] (\"backup\").duration"), "{e}");
        let e = bad("0 2 * * *", "8d", 0.2);
        assert!(e.contains("at most 7d"), "{e}");
        let e = bad("0 2 * * *", "1h", 1.5);
        assert!(e.contains("risk_max = 1.5: accepted [0, 1]"), "{e}");
    }
}
