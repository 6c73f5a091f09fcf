//! The daemon's scheduled reports (`[report]` `daily_at`...; `crate::report::schedule`) and the diagnostic bundles'
//! housekeeping (`crate::diagnostics`): checked at start and every [`REPORT_CHECK_INTERVAL`]; each due report is written on a blocking thread, then retention is applied, and with
//! `report.deliver` a summary naming the files goes out through the notifiers of `[notify]` (built once for this
//! loop, without the escalation policies: a report is not an incident). A failure is logged and tried again at the
//! next check.

use std::sync::Arc;
use std::time::Duration;

use heal::escalate::Notifier;

use crate::app::App;
use crate::report::schedule::{self, Plan};

/// How often the schedule is looked at.
pub const REPORT_CHECK_INTERVAL: Duration = Duration::from_secs(30);

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
    let mut every = super::Every::new(REPORT_CHECK_INTERVAL);
    while every.tick(&mut stop).await {
        let (app, plan, notifiers) = (app.clone(), plan.clone(), notifiers.clone());
        let work = tokio::task::spawn_blocking(move || {
            if let Some(plan) = &plan {
                write_due(&app, plan, &notifiers);
            }
            crate::diagnostics::housekeeping(&app);
        });
        if let Err(e) = work.await {
            tracing::warn!("scheduled reports: {e}");
        }
    }
}

/// Writes every report due now, prunes, delivers.
fn write_due(app: &App, plan: &Plan, notifiers: &[Box<dyn Notifier>]) {
    let now = app.now();
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
