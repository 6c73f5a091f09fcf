//! The daemon's scheduled reports (`[report]` `daily_at`...; `crate::report::schedule`), the diagnostic bundles'
//! housekeeping (`crate::diagnostics`) and the index health samples of the metric history
//! (`crate::report::index_health`).
//!
//! Reports and bundles are looked at at start, every [`REPORT_CHECK_INTERVAL`], and at each scheduled instant (the
//! loop sleeps until the next `daily_at` when it comes sooner, so a report is written when it becomes due); each due
//! report is written on a blocking thread, then retention is applied, and with `report.deliver` a summary naming the
//! files goes out through the notifiers of `[notify]` (built once for this loop, without the escalation policies: a
//! report is not an incident). A failure is logged and tried again at the next check.
//!
//! Both take "now" from one clock, [`housekeeping_now`]: the app's clock, moved by [`CLOCK_OFFSET_ENV`]
//! (`MEDIC_CLOCK_OFFSET_MS`, read once at start, logged when set) — the way a test makes a scheduled instant pass
//! while a daemon runs. The engine, incidents and the metric history keep the app's clock.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use heal::Timestamp;
use heal::escalate::Notifier;

use crate::app::App;
use crate::report::index_health;
use crate::report::schedule::{self, Plan};

/// How often the schedule is looked at (at least; also at each scheduled instant).
pub const REPORT_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// The environment variable that moves the housekeeping clock by this many milliseconds (negative: back). For tests
/// only: it makes a scheduled report due while the daemon runs, without waiting for the wall clock.
pub const CLOCK_OFFSET_ENV: &str = "MEDIC_CLOCK_OFFSET_MS";

/// Most the housekeeping clock can be moved: 100 years, in ms.
const CLOCK_OFFSET_MS_MAX: i64 = 100 * 366 * 86_400 * 1_000;

static CLOCK_OFFSET_US: OnceLock<i64> = OnceLock::new();

/// `MEDIC_CLOCK_OFFSET_MS`'s value → µs; the error names the variable, the value and what is accepted.
fn parse_offset(value: &str) -> Result<i64, String> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|ms| ms.abs() <= CLOCK_OFFSET_MS_MAX)
        .map(|ms| ms * 1_000)
        .ok_or_else(|| {
            format!(
                "{CLOCK_OFFSET_ENV} = {value:?}: write whole milliseconds, at most {CLOCK_OFFSET_MS_MAX} either way"
            )
        })
}

/// The offset of the housekeeping clock, µs: read from the environment on first use (at the daemon's start) and kept.
fn offset_us() -> i64 {
    *CLOCK_OFFSET_US.get_or_init(|| match std::env::var(CLOCK_OFFSET_ENV) {
        Err(_) => 0,
        Ok(v) => match parse_offset(&v) {
            Ok(us) => {
                tracing::warn!(
                    "{CLOCK_OFFSET_ENV} = {v}: scheduled reports and bundle retention run on a clock {} ms off the \
                     system's",
                    us / 1_000
                );
                us
            }
            Err(e) => {
                tracing::warn!("{e}; the housekeeping clock is not moved");
                0
            }
        },
    })
}

/// "Now" for scheduled reports and bundle housekeeping: the app's clock moved by [`CLOCK_OFFSET_ENV`].
pub fn housekeeping_now(app: &App) -> Timestamp {
    let now = app.now();
    match offset_us() {
        d if d >= 0 => now.saturating_add(d.unsigned_abs()),
        d => now.saturating_sub(d.unsigned_abs()),
    }
}

/// Records each derived index's health figures in the metric history after a healing cycle, at most once per
/// [`index_health::SAMPLE_INTERVAL_US`] on the app's clock (the metric history's).
#[derive(Debug, Default)]
pub struct IndexHealthSampler {
    last_us: Option<Timestamp>,
}

impl IndexHealthSampler {
    /// Records the figures if the interval passed since the last time; a failure is logged.
    pub async fn after_cycle(&mut self, app: &Arc<App>) {
        let now = app.now();
        if self
            .last_us
            .is_some_and(|l| now.saturating_sub(l) < index_health::SAMPLE_INTERVAL_US)
        {
            return;
        }
        self.last_us = Some(now);
        let app = app.clone();
        let work = tokio::task::spawn_blocking(move || {
            let status = app.store().derived().status();
            let samples = index_health::samples(&status.indexes, now);
            if samples.is_empty() {
                return Ok(0);
            }
            app.kb().record_metrics(now, &samples)
        });
        match work.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("recording index health: {e}"),
            Err(e) => tracing::warn!("recording index health: {e}"),
        }
    }
}

/// Writes the reports due and tidies the diagnostic bundles (`crate::diagnostics::housekeeping`) until told to
/// stop.
pub async fn report_loop(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let plan = match Plan::from_config(&app.config().report, &app.config().server.data_dir) {
        Ok(p) => p.map(Arc::new),
        Err(e) => {
            tracing::warn!("scheduled reports are off: {e}");
            None
        }
    };
    let deliver = plan.as_ref().is_some_and(|p| p.deliver);
    let notifiers: Arc<Vec<Box<dyn Notifier>>> = Arc::new(if deliver {
        crate::app::notifiers(
            &app.config().notify,
            &crate::notify::EscalationConfig::default(),
            app.silence_set(),
            None,
        )
        .unwrap_or_else(|e| {
            tracing::warn!(
                "scheduled reports are not delivered: the notifiers cannot be built: {e:#}"
            );
            Vec::new()
        })
    } else {
        Vec::new()
    });
    if let Some(plan) = &plan {
        tracing::info!(
            dir = %plan.dir.display(),
            zone = plan.zone_name(),
            deliver = plan.deliver,
            "scheduled reports on"
        );
    }
    // Read the clock's offset now, so a moved clock is logged at start.
    housekeeping_now(&app);
    loop {
        let (app2, plan2, notifiers) = (app.clone(), plan.clone(), notifiers.clone());
        let work = tokio::task::spawn_blocking(move || {
            let now = housekeeping_now(&app2);
            if let Some(plan) = &plan2 {
                write_due(&app2, plan, &notifiers, now);
            }
            crate::diagnostics::housekeeping(&app2, now);
        });
        if let Err(e) = work.await {
            tracing::warn!("scheduled reports: {e}");
        }
        let wait = next_wait(plan.as_deref(), housekeeping_now(&app));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// How long to sleep at `now`: until the next scheduled instant when it comes before [`REPORT_CHECK_INTERVAL`], at
/// least a few milliseconds.
fn next_wait(plan: Option<&Plan>, now: Timestamp) -> Duration {
    let until_next = plan.map_or(REPORT_CHECK_INTERVAL, |p| {
        Duration::from_micros(p.next_after(now).saturating_sub(now))
    });
    until_next
        .min(REPORT_CHECK_INTERVAL)
        .max(Duration::from_millis(10))
}

/// Writes every report due at `now`, prunes, delivers.
fn write_due(app: &App, plan: &Plan, notifiers: &[Box<dyn Notifier>], now: Timestamp) {
    for due in plan.due(now) {
        match schedule::write(app.kb(), plan, &due, now, &app.config().report) {
            Ok(w) => {
                tracing::info!(markdown = %w.markdown.display(), html = %w.html.display(), "{}", w.summary);
                let alert = schedule::alert(&w, now);
                for n in notifiers {
                    if let Err(e) = n.notify(&alert) {
                        tracing::warn!(
                            "delivering {} through {}: {e}",
                            w.markdown.display(),
                            n.name()
                        );
                    }
                }
            }
            Err(e) => tracing::warn!("writing the scheduled report {}: {e:#}", due.stem),
        }
    }
    match plan.prune(now) {
        Ok(removed) => {
            for p in removed {
                tracing::info!(file = %p.display(), "report past retention removed");
            }
        }
        Err(e) => tracing::warn!("pruning {}: {e}", plan.dir.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_offset_is_whole_milliseconds_within_bounds() {
        assert_eq!(parse_offset("1500"), Ok(1_500_000));
        assert_eq!(parse_offset(" -60000 "), Ok(-60_000_000));
        for bad in ["1.5", "soon", "", "99999999999999999"] {
            let e = parse_offset(bad).unwrap_err();
            assert!(
                e.contains(CLOCK_OFFSET_ENV) && e.contains("milliseconds"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_loop_wakes_at_the_next_scheduled_instant() {
        let c = crate::report::ReportConfig {
            daily_at: Some("00:00".into()),
            ..Default::default()
        };
        let plan = Plan::from_config(&c, std::path::Path::new("/d"))
            .unwrap()
            .unwrap();
        let midnight = crate::report::midnight(2026, 12, 7);
        assert_eq!(
            next_wait(Some(&plan), midnight - 2_000_000),
            Duration::from_secs(2)
        );
        assert_eq!(
            next_wait(Some(&plan), midnight),
            REPORT_CHECK_INTERVAL,
            "the next is a day away"
        );
        assert_eq!(next_wait(None, midnight), REPORT_CHECK_INTERVAL);
        assert_eq!(
            next_wait(Some(&plan), midnight - 1),
            Duration::from_millis(10),
            "never a busy loop"
        );
    }
}
