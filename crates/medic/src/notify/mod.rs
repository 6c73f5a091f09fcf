//! The program's notifiers (`heal::escalate::Notifier`): every alert the engine fires goes to the log, to a JSON
//! Lines file when `notify.file` is set ([`file`]), and, when `notify.webhook_url` is set, to a webhook as one POST
//! (`http://`, or `https://` verified against Mozilla's roots or the CAs of `notify.webhook_ca_file`) whose body
//! is shaped by `notify.webhook_format` ([`payload`]: medic's JSON, Slack, PagerDuty Events v2), with the
//! configured `notify.webhook_headers` (e.g. an `Authorization` header).
//!
//! The engine calls notifiers inside its cycle, so the webhook never blocks it: alerts go into a bounded queue
//! (`WEBHOOK_QUEUE_MAX`) that one delivery thread drains, each POST bounded by `notify.webhook_timeout_ms`. A
//! connection failure, a 429 or a 5xx is retried up to `notify.webhook_retries` times with a doubling backoff from
//! `WEBHOOK_BACKOFF_FIRST_MS`; another answer is final. A full queue refuses the alert with an error naming the limit
//! (the engine counts it in `notify_failures`); a failed delivery is logged with the alert's key and the reason.

pub mod email;
pub mod file;
pub mod payload;
pub mod route;

pub use file::FileNotifier;
pub use payload::WebhookFormat;
pub use route::{EscalationConfig, Router};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use heal::escalate::{Alert, Notifier};

/// Alerts waiting for webhook delivery at most.
pub const WEBHOOK_QUEUE_MAX: usize = 256;
/// The wait before the first retry of a webhook POST; each further retry waits twice as long.
pub const WEBHOOK_BACKOFF_FIRST_MS: u64 = 500;

/// How a webhook is reached and what it receives.
#[derive(Debug, Clone, Default)]
pub struct WebhookOptions {
    /// One POST may take this long.
    pub timeout: Duration,
    /// PEM of the CAs an `https://` server's certificate must chain to, instead of Mozilla's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The body's shape.
    pub format: WebhookFormat,
    /// Headers sent with every POST (name, value).
    pub headers: Vec<(String, String)>,
    /// PagerDuty's routing key (`format` PagerDuty).
    pub routing_key: Option<String>,
    /// Retries of a POST that failed to connect or got a 429 or 5xx.
    pub retries: u32,
}

/// A webhook notifier posting to `url` as `options` say, its CAs read from the file of `ca` (the key that names it,
/// and its path) when one is given; an error names the URL, the key and the file.
pub fn webhook(
    url: &str,
    ca: Option<(&str, &std::path::Path)>,
    mut options: WebhookOptions,
) -> anyhow::Result<WebhookNotifier> {
    use anyhow::Context as _;
    if let Some((key, path)) = ca {
        options.ca_pem = Some(
            std::fs::read(path)
                .with_context(|| format!("{key}: cannot read {}", path.display()))?,
        );
    }
    WebhookNotifier::new(url, options).with_context(|| match ca {
        Some((key, path)) => format!(
            "starting the webhook notifier for {url} ({key} {})",
            path.display()
        ),
        None => format!("starting the webhook notifier for {url}"),
    })
}

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
    /// Alerts whose POST failed or got a non-2xx answer (after every retry).
    pub failed: AtomicU64,
    /// POSTs retried.
    pub retried: AtomicU64,
}

/// POSTs every alert as JSON to a URL, from a delivery thread.
#[derive(Debug)]
pub struct WebhookNotifier {
    url: String,
    queue: SyncSender<Alert>,
    stats: Arc<WebhookStats>,
}

impl WebhookNotifier {
    /// A notifier posting to `url` (`http://` or `https://`) as `options` say. Starts its delivery thread, which
    /// ends when the notifier is dropped.
    pub fn new(url: &str, options: WebhookOptions) -> anyhow::Result<WebhookNotifier> {
        let (queue, rx) = sync_channel::<Alert>(WEBHOOK_QUEUE_MAX);
        let stats = Arc::new(WebhookStats::default());
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(pem) = &options.ca_pem {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&ca_certificates(pem)?));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(options.timeout))
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .new_agent();
        let (target, counters) = (url.to_string(), stats.clone());
        std::thread::Builder::new()
            .name("medic-webhook".into())
            .spawn(move || {
                for alert in rx {
                    deliver(&agent, &target, &options, &counters, &alert);
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

/// POSTs one alert, retrying what may pass later (no answer, 429, 5xx) with a doubling backoff.
fn deliver(
    agent: &ureq::Agent,
    url: &str,
    options: &WebhookOptions,
    counters: &WebhookStats,
    alert: &Alert,
) {
    let body = payload::body(options.format, alert, options.routing_key.as_deref());
    let mut wait = Duration::from_millis(WEBHOOK_BACKOFF_FIRST_MS);
    for attempt in 0..=options.retries {
        if attempt > 0 {
            counters.retried.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(wait);
            wait = wait.saturating_mul(2);
        }
        let mut request = agent.post(url);
        for (name, value) in &options.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let why = match request.send_json(&body) {
            Ok(resp) if resp.status().is_success() => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(resp) => {
                let status = resp.status();
                if !(status.as_u16() == 429 || status.is_server_error()) {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(key = %alert.key, url, "webhook answered {status}: not retried");
                    return;
                }
                format!("answered {status}")
            }
            Err(e) => e.to_string(),
        };
        if attempt == options.retries {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                key = %alert.key,
                url,
                "webhook delivery failed after {} attempt(s): {why}",
                attempt + 1
            );
        }
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
