//! The program's notifiers (`heal::escalate::Notifier`): every alert the engine fires goes to the log and, when
//! `notify.webhook_url` is set, to a webhook as one JSON POST (`http://`, or `https://` verified against Mozilla's
//! roots or the CAs of `notify.webhook_ca_file`).
//!
//! The engine calls notifiers inside its cycle, so the webhook never blocks it: alerts go into a bounded queue
//! (`WEBHOOK_QUEUE_MAX`) that one delivery thread drains, each POST bounded by `notify.webhook_timeout_ms`. A full
//! queue refuses the alert with an error naming the limit (the engine counts it in `notify_failures`); a failed
//! delivery is logged with the alert's key and the reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use heal::escalate::{Alert, Notifier};

/// Alerts waiting for webhook delivery at most.
pub const WEBHOOK_QUEUE_MAX: usize = 256;

/// Writes every alert to the log (stderr), as a warning.
#[derive(Debug, Default)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn name(&self) -> &str {
        "log"
    }

    fn notify(&self, alert: &Alert) -> Result<(), String> {
        tracing::warn!(
            key = %alert.key,
            rule = %alert.rule,
            severity = ?alert.severity,
            incident = ?alert.incident_id,
            "alert: {}",
            alert.title
        );
        Ok(())
    }
}

/// Counters of a webhook notifier.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Alerts the webhook answered with a 2xx.
    pub delivered: AtomicU64,
    /// Alerts whose POST failed or got a non-2xx answer.
    pub failed: AtomicU64,
}

/// POSTs every alert as JSON to a URL, from a delivery thread.
#[derive(Debug)]
pub struct WebhookNotifier {
    url: String,
    queue: SyncSender<Alert>,
    stats: Arc<WebhookStats>,
}

impl WebhookNotifier {
    /// A notifier posting to `url` (`http://` or `https://`), each request bounded by `timeout`; an `https://`
    /// server's certificate must chain to Mozilla's roots, or to one of `ca_pem`'s certificates when given (PEM,
    /// from `notify.webhook_ca_file`). Starts its delivery thread, which ends when the notifier is dropped.
    pub fn new(
        url: &str,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> anyhow::Result<WebhookNotifier> {
        let (queue, rx) = sync_channel::<Alert>(WEBHOOK_QUEUE_MAX);
        let stats = Arc::new(WebhookStats::default());
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(pem) = ca_pem {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&ca_certificates(pem)?));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .new_agent();
        let (target, counters) = (url.to_string(), stats.clone());
        std::thread::Builder::new()
            .name("medic-webhook".into())
            .spawn(move || {
                for alert in rx {
                    match agent.post(&target).send_json(&alert) {
                        Ok(resp) if resp.status().is_success() => {
                            counters.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(resp) => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(key = %alert.key, url = %target, "webhook answered {}", resp.status());
                        }
                        Err(e) => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(key = %alert.key, url = %target, "webhook delivery failed: {e}");
                        }
                    }
                }
            })?;
        Ok(WebhookNotifier {
            url: url.to_string(),
            queue,
            stats,
        })
    }

    /// Its delivery counters.
    pub fn stats(&self) -> Arc<WebhookStats> {
        self.stats.clone()
    }
}

/// Every certificate of a PEM text; none, or a PEM block that does not parse, is an error saying so.
fn ca_certificates(pem: &[u8]) -> anyhow::Result<Vec<ureq::tls::Certificate<'static>>> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => anyhow::bail!("a PEM block does not parse: {e}"),
        }
    }
    anyhow::ensure!(
        !certs.is_empty(),
        "no certificate in it (expected PEM blocks `-----BEGIN CERTIFICATE-----`)"
    );
    Ok(certs)
}

impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        "webhook"
    }

    fn notify(&self, alert: &Alert) -> Result<(), String> {
        match self.queue.try_send(alert.clone()) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(format!(
                "webhook {}: {WEBHOOK_QUEUE_MAX} alerts already waiting (WEBHOOK_QUEUE_MAX); alert {} dropped",
                self.url, alert.key
            )),
            Err(TrySendError::Disconnected(_)) => Err(format!(
                "webhook {}: the delivery thread has stopped; alert {} dropped",
                self.url, alert.key
            )),
        }
    }
}
