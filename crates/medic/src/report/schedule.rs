//! Reports on a schedule (`[report]`: `daily_at`, `weekly_day`, `zone`, `dir`, `keep_days`, `keep_count`,
//! `deliver`): the daemon asks [`Plan::due`] now and then which reports are due and missing from the directory,
//! writes each as Markdown and HTML ([`write`]), removes those past retention ([`Plan::prune`]) and, with `deliver`,
//! sends a summary naming the files through the notifiers ([`alert`]).
//!
//! A report is due once its scheduled instant passed: the daily report of local day `D-1` at `daily_at` on day `D`,
//! the weekly report of the seven local days before `W` at `daily_at` on day `W` (the configured weekday). Only the
//! latest due report of each period is written, and only if its file is not there yet — so a daemon that was down
//! at the scheduled time writes it when it starts, and writes it once. Files are named by the (last) local day
//! covered: `daily-YYYY-MM-DD.md`/`.html`, `weekly-YYYY-MM-DD.md`/`.html`; nothing else in the directory is touched.
//! Times and zones through `jiff` (the system's tz database, `/usr/share/zoneinfo`).

use std::path::{Path, PathBuf};

use heal::Timestamp;
use heal::escalate::{Alert, EscalationLevel};
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;

use super::{Period, REPORT_INCIDENTS_MAX, REPORT_ITEMS_MAX, ReportConfig, from_records};
use crate::config::ConfigError;
use crate::kb::SqliteKb;

/// Most files of the reports directory looked at when pruning.
pub const REPORT_DIR_ENTRIES_MAX: usize = 100_000;

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Monday),
    ("tuesday", Weekday::Tuesday),
    ("wednesday", Weekday::Wednesday),
    ("thursday", Weekday::Thursday),
    ("friday", Weekday::Friday),
    ("saturday", Weekday::Saturday),
    ("sunday", Weekday::Sunday),
];

/// The schedule `[report]` asks for, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    hour: i8,
    minute: i8,
    weekly: Option<Weekday>,
    zone: TimeZone,
    zone_name: String,
    /// Where reports are written.
    pub dir: PathBuf,
    keep_days: u32,
    keep_count: u32,
    /// Whether reports are sent through the notifiers.
    pub deliver: bool,
}

/// A report due: its period, range and file stem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Daily or weekly.
    pub period: Period,
    /// Start of its first local day, µs since the epoch.
    pub from: Timestamp,
    /// Start of the local day after its last, µs since the epoch.
    pub until: Timestamp,
    /// `daily-YYYY-MM-DD` or `weekly-YYYY-MM-DD` (the last local day covered).
    pub stem: String,
}

fn invalid(key: &'static str, value: &str, accepted: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: format!("{value:?}"),
        accepted: accepted.to_string(),
    }
}

/// `HH:MM` → (hour, minute).
fn parse_time(s: &str) -> Option<(i8, i8)> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m) = (h.parse::<i8>().ok()?, m.parse::<i8>().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some((h, m))
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    let s = s.trim().to_ascii_lowercase();
    WEEKDAYS
        .iter()
        .find(|(name, _)| *name == s || (s.len() == 3 && name.starts_with(&s)))
        .map(|(_, d)| *d)
}

fn to_jiff(at: Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_microsecond(i64::try_from(at).unwrap_or(i64::MAX))
        .unwrap_or(jiff::Timestamp::MAX)
}

fn to_us(t: jiff::Timestamp) -> Timestamp {
    u64::try_from(t.as_microsecond()).unwrap_or(0)
}

/// The zone named `name`: `UTC` without a tz database (a minimal container has none), any other from it.
fn zone_of(name: &str) -> Result<TimeZone, jiff::Error> {
    if name.eq_ignore_ascii_case("UTC") {
        Ok(TimeZone::UTC)
    } else {
        TimeZone::get(name)
    }
}

/// The local date (`YYYY-MM-DD`) of `at` in the IANA zone `zone` (UTC when the zone is unknown).
pub fn local_date(at: Timestamp, zone: &str) -> String {
    let tz = zone_of(zone).unwrap_or(TimeZone::UTC);
    to_jiff(at).to_zoned_datetime(tz).date().to_string()
}

impl Plan {
    /// The schedule of `c` (`None`: `daily_at` unset), its directory relative to `data_dir` by default. Every key
    /// is checked even without a schedule; an error names the key, the value and what is accepted.
    pub fn from_config(c: &ReportConfig, data_dir: &Path) -> Result<Option<Plan>, ConfigError> {
        let zone = zone_of(c.zone.trim()).map_err(|e| {
            invalid(
                "report.zone",
                &c.zone,
                &format!("an IANA time zone name such as \"UTC\" or \"Europe/Berlin\" ({e})"),
            )
        })?;
        let weekly = match &c.weekly_day {
            None => None,
            Some(d) => Some(parse_weekday(d).ok_or_else(|| {
                invalid(
                    "report.weekly_day",
                    d,
                    "a weekday: monday, tuesday, wednesday, thursday, friday, saturday or sunday",
                )
            })?),
        };
        let at = match &c.daily_at {
            None => None,
            Some(t) => Some(parse_time(t).ok_or_else(|| {
                invalid("report.daily_at", t, "a local time HH:MM, 00:00..=23:59")
            })?),
        };
        if let Some(dir) = &c.dir
            && dir.as_os_str().is_empty()
        {
            return Err(invalid("report.dir", "", "a directory path"));
        }
        let Some((hour, minute)) = at else {
            if let Some(d) = &c.weekly_day {
                return Err(invalid(
                    "report.weekly_day",
                    d,
                    "only with report.daily_at, the time of day reports are written",
                ));
            }
            return Ok(None);
        };
        Ok(Some(Plan {
            hour,
            minute,
            weekly,
            zone,
            zone_name: c.zone.trim().to_string(),
            dir: c.dir.clone().unwrap_or_else(|| data_dir.join("reports")),
            keep_days: c.keep_days,
            keep_count: c.keep_count,
            deliver: c.deliver,
        }))
    }

    /// The zone's name.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    fn start_of(&self, d: Date) -> Timestamp {
        d.to_zoned_datetime(self.zone.clone())
            .map(|z| to_us(z.timestamp()))
            .unwrap_or(0)
    }

    fn scheduled_on(&self, d: Date) -> Timestamp {
        d.at(self.hour, self.minute, 0, 0)
            .to_zoned_datetime(self.zone.clone())
            .map(|z| to_us(z.timestamp()))
            .unwrap_or(Timestamp::MAX)
    }

    /// The latest report of each period whose scheduled instant is at or before `now`, whether written or not.
    pub fn latest(&self, now: Timestamp) -> Vec<Due> {
        let today = to_jiff(now).to_zoned_datetime(self.zone.clone()).date();
        let day = if self.scheduled_on(today) <= now {
            today
        } else {
            today.yesterday().unwrap_or(today)
        };
        let back = |d: Date, n: i64| d.checked_sub(jiff::Span::new().days(n)).unwrap_or(d);
        let mut out = vec![Due {
            period: Period::Daily,
            from: self.start_of(back(day, 1)),
            until: self.start_of(day),
            stem: format!("daily-{}", back(day, 1)),
        }];
        if let Some(weekday) = self.weekly {
            let mut w = day;
            for _ in 0..7 {
                if w.weekday() == weekday {
                    break;
                }
                w = back(w, 1);
            }
            out.push(Due {
                period: Period::Weekly,
                from: self.start_of(back(w, 7)),
                until: self.start_of(w),
                stem: format!("weekly-{}", back(w, 1)),
            });
        }
        out
    }

    /// The first scheduled instant after `now` (daily and weekly reports are both written at `daily_at`).
    pub fn next_after(&self, now: Timestamp) -> Timestamp {
        let mut day = to_jiff(now).to_zoned_datetime(self.zone.clone()).date();
        for _ in 0..3 {
            let at = self.scheduled_on(day);
            if at > now {
                return at;
            }
            day = day.tomorrow().unwrap_or(day);
        }
        Timestamp::MAX
    }

    /// The reports due at `now` that are not in the directory yet.
    pub fn due(&self, now: Timestamp) -> Vec<Due> {
        self.latest(now)
            .into_iter()
            .filter(|d| !self.dir.join(format!("{}.md", d.stem)).exists())
            .collect()
    }

    /// Removes the reports past retention at `now`: those covering days more than `keep_days` before today
    /// (local), and past the newest `keep_count` of their period; the newest of each period stays. Returns the
    /// files removed.
    pub fn prune(&self, now: Timestamp) -> std::io::Result<Vec<PathBuf>> {
        let today = to_jiff(now).to_zoned_datetime(self.zone.clone()).date();
        let oldest_kept = (self.keep_days > 0).then(|| {
            today
                .checked_sub(jiff::Span::new().days(i64::from(self.keep_days)))
                .unwrap_or(Date::MIN)
        });
        let mut reports: Vec<(String, Date, PathBuf)> = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        for entry in entries.take(REPORT_DIR_ENTRIES_MAX) {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some((period, day)) = report_file(name) {
                reports.push((period.to_string(), day, path));
            }
        }
        let mut removed = Vec::new();
        for period in ["daily", "weekly"] {
            let mut days: Vec<Date> = reports
                .iter()
                .filter(|(p, _, _)| p == period)
                .map(|(_, d, _)| *d)
                .collect();
            days.sort_unstable_by(|a, b| b.cmp(a));
            days.dedup();
            for (rank, day) in days.iter().enumerate().skip(1) {
                let too_old = oldest_kept.is_some_and(|o| *day < o);
                let too_many = self.keep_count > 0 && rank >= self.keep_count as usize;
                if !(too_old || too_many) {
                    continue;
                }
                for (_, _, path) in reports.iter().filter(|(p, d, _)| p == period && d == day) {
                    std::fs::remove_file(path)?;
                    removed.push(path.clone());
                }
            }
        }
        Ok(removed)
    }
}

/// `daily-YYYY-MM-DD.md` → (`daily`, the day); `None` for any other name.
fn report_file(name: &str) -> Option<(&'static str, Date)> {
    let stem = name
        .strip_suffix(".md")
        .or_else(|| name.strip_suffix(".html"))?;
    let (period, day) = if let Some(d) = stem.strip_prefix("daily-") {
        ("daily", d)
    } else {
        ("weekly", stem.strip_prefix("weekly-")?)
    };
    (day.len() == 10)
        .then(|| day.parse::<Date>().ok())
        .flatten()
        .map(|d| (period, d))
}

/// A scheduled report written.
#[derive(Debug, Clone)]
pub struct Written {
    /// Daily or weekly.
    pub period: Period,
    /// The Markdown file.
    pub markdown: PathBuf,
    /// The HTML file.
    pub html: PathBuf,
    /// One line: title and counts.
    pub summary: String,
}

/// Writes the report `due` from the knowledge base at `now` as `<stem>.md` and `<stem>.html` in the plan's
/// directory (each written to a temporary name, then renamed), creating the directory.
pub fn write(
    kb: &SqliteKb,
    plan: &Plan,
    due: &Due,
    now: Timestamp,
    targets: &ReportConfig,
) -> anyhow::Result<Written> {
    use anyhow::Context as _;
    let records = kb.incidents_detected_between(due.from, due.until, REPORT_INCIDENTS_MAX + 1)?;
    let open = kb.incidents_unresolved_at(due.until, REPORT_ITEMS_MAX)?;
    let mut report = from_records(
        due.period, due.from, due.until, now, &records, &open, targets,
    );
    super::add_history(kb, &mut report, &records)?;
    report.zone = Some(plan.zone_name.clone());
    std::fs::create_dir_all(&plan.dir)
        .with_context(|| format!("creating report.dir {}", plan.dir.display()))?;
    let put = |ext: &str, text: String| -> anyhow::Result<PathBuf> {
        let path = plan.dir.join(format!("{}.{ext}", due.stem));
        let tmp = plan.dir.join(format!(".{}.{ext}.tmp", due.stem));
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(path)
    };
    // The HTML first: a Markdown file present means the report was written.
    let html = put("html", report.html())?;
    let markdown = put("md", report.markdown())?;
    let summary = format!(
        "{}: {} incidents, {} repaired automatically, {} escalated, {} still open",
        report.title(),
        report.incidents,
        report.repaired_automatically.count,
        report.escalated.len(),
        report.still_open.len()
    );
    Ok(Written {
        period: due.period,
        markdown,
        html,
        summary,
    })
}

/// The alert that delivers a written report through the notifiers: the summary and the files' paths.
pub fn alert(w: &Written, now: Timestamp) -> Alert {
    Alert {
        key: format!("report:{}", w.markdown.display()),
        rule: format!("{}_report", w.period.name()),
        level: EscalationLevel::Normal,
        severity: heal::Severity::Sev3,
        title: format!(
            "{}; written to {} and {}",
            w.summary,
            w.markdown.display(),
            w.html.display()
        ),
        resource: "reports".to_string(),
        code: "report".to_string(),
        incident_id: None,
        at: now,
        report: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US_PER_S: u64 = 1_000_000;

    fn plan(at: &str, weekly: Option<&str>, zone: &str, dir: &Path) -> Plan {
        let c = ReportConfig {
            daily_at: Some(at.into()),
            weekly_day: weekly.map(String::from),
            zone: zone.into(),
            dir: Some(dir.to_path_buf()),
            ..ReportConfig::default()
        };
        Plan::from_config(&c, Path::new("/data")).unwrap().unwrap()
    }

    fn at(s: &str) -> Timestamp {
        to_us(s.parse::<jiff::Timestamp>().unwrap())
    }

    #[test]
    fn the_latest_due_report_is_the_day_before_the_last_scheduled_instant_in_the_zone() {
        let dir = Path::new("/nonexistent");
        let p = plan("07:00", Some("monday"), "Europe/Berlin", dir);
        // 2026-12-07 is a Monday; 07:00 in Berlin is 06:00Z.
        let before = p.latest(at("2026-12-07T05:59:59Z"));
        assert_eq!(before[0].stem, "daily-2026-12-05");
        assert_eq!(before[1].stem, "weekly-2026-11-29");
        let after = p.latest(at("2026-12-07T06:00:00Z"));
        assert_eq!(after[0].stem, "daily-2026-12-06");
        assert_eq!(
            (after[0].from, after[0].until),
            (at("2026-12-05T23:00:00Z"), at("2026-12-06T23:00:00Z"))
        );
        assert_eq!(after[1].stem, "weekly-2026-12-06");
        assert_eq!(
            (after[1].from, after[1].until),
            (at("2026-11-29T23:00:00Z"), at("2026-12-06T23:00:00Z"))
        );
        // A day across a DST change has 23 hours.
        let p = plan("00:30", None, "Europe/Berlin", dir);
        let spring = p.latest(at("2026-03-30T12:00:00Z"));
        assert_eq!(spring.len(), 1);
        assert_eq!(spring[0].until - spring[0].from, 23 * 3_600 * US_PER_S);
        assert_eq!(
            local_date(at("2026-12-06T23:30:00Z"), "Europe/Berlin"),
            "2026-12-07"
        );
    }

    #[test]
    fn bad_schedule_keys_are_named_with_what_is_accepted() {
        for (daily_at, weekly, zone, key, want) in [
            (Some("7am"), None, "UTC", "report.daily_at", "HH:MM"),
            (Some("24:00"), None, "UTC", "report.daily_at", "23:59"),
            (
                Some("07:00"),
                Some("someday"),
                "UTC",
                "report.weekly_day",
                "monday",
            ),
            (
                None,
                Some("monday"),
                "UTC",
                "report.weekly_day",
                "only with report.daily_at",
            ),
            (Some("07:00"), None, "Mars/Olympus", "report.zone", "IANA"),
        ] {
            let c = ReportConfig {
                daily_at: daily_at.map(String::from),
                weekly_day: weekly.map(String::from),
                zone: zone.into(),
                ..ReportConfig::default()
            };
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(want), "{e}");
        }
        let c = ReportConfig {
            daily_at: Some("06:05".into()),
            weekly_day: Some("Sun".into()),
            ..ReportConfig::default()
        };
        let p = Plan::from_config(&c, Path::new("/data")).unwrap().unwrap();
        assert_eq!(p.dir, Path::new("/data/reports"));
        assert_eq!(p.weekly, Some(Weekday::Sunday));
        assert!(
            Plan::from_config(&ReportConfig::default(), Path::new("/d"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn pruning_keeps_the_newest_of_each_period_and_never_touches_other_files() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = ReportConfig {
            daily_at: Some("00:00".into()),
            dir: Some(tmp.path().to_path_buf()),
            keep_days: 10,
            ..ReportConfig::default()
        };
        let names = [
            "daily-2026-11-01.md",
            "daily-2026-11-01.html",
            "daily-2026-12-01.md",
            "daily-2026-12-01.html",
            "daily-2026-12-05.md",
            "weekly-2026-10-01.md",
            "notes.md",
            "daily-2026-11-xx.md",
        ];
        for n in names {
            std::fs::write(tmp.path().join(n), "x").unwrap();
        }
        let now = at("2026-12-06T12:00:00Z");
        let p = Plan::from_config(&c, Path::new("/d")).unwrap().unwrap();
        let mut removed: Vec<String> = p
            .prune(now)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        removed.sort();
        assert_eq!(removed, ["daily-2026-11-01.html", "daily-2026-11-01.md"]);
        c.keep_count = 1;
        let p = Plan::from_config(&c, Path::new("/d")).unwrap().unwrap();
        let removed = p.prune(now).unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        let mut left: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "daily-2026-11-xx.md",
                "daily-2026-12-05.md",
                "notes.md",
                "weekly-2026-10-01.md"
            ]
        );
    }
}
