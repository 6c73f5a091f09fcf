//! The email notifier (an `email` receiver of `[[escalation.receivers]]`): every alert one plain-text mail over
//! SMTP (`lettre`), in clear, with STARTTLS or over implicit TLS (rustls, Mozilla's roots), with credentials when
//! given. The subject names the severity, the incident and the alert; the body adds the resource, the issue, the
//! command that acknowledges the incident and, for an escalation, its report.
//!
//! Like the webhook, mail never holds up the healing cycle: alerts go into a bounded queue ([`EMAIL_QUEUE_MAX`])
//! that one delivery thread drains, each exchange bounded by `timeout_ms`; a failure that may pass (no connection,
//! a 4xx answer) is retried `retries` times with a doubling backoff from `WEBHOOK_BACKOFF_FIRST_MS`.

use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use heal::escalate::{Alert, Notifier};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use serde::{Deserialize, Serialize};

use super::payload::severity_label;

/// Alerts waiting for delivery at most.
pub const EMAIL_QUEUE_MAX: usize = 256;
/// A subject is cut to this many bytes.
pub const SUBJECT_BYTES_MAX: usize = 200;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// In clear (a relay on the same host or a private network).
    None,
    /// STARTTLS, required (port 587).
    #[default]
    Starttls,
    /// Implicit TLS from the first byte (port 465).
    Tls,
}

/// Where and how mail is sent.
#[derive(Debug, Clone)]
pub struct EmailOptions {
    /// The SMTP server.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// How the connection is protected.
    pub tls: TlsMode,
    /// User name and password, if the server wants them.
    pub credentials: Option<(String, String)>,
    /// The sender, `medic <medic@example.com>` or an address.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// One exchange may take this long.
    pub timeout: Duration,
    /// Retries of a delivery that may pass later.
    pub retries: u32,
}

/// Mails every alert, from a delivery thread.
#[derive(Debug)]
pub struct EmailNotifier {
    host: String,
    queue: SyncSender<Alert>,
}

impl EmailNotifier {
    /// A notifier sending as `options` say; an address that does not parse is an error naming it.
    pub fn new(options: EmailOptions) -> anyhow::Result<EmailNotifier> {
        let from: Mailbox = options
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("from {:?} is not an address: {e}", options.from))?;
        let to = options
            .to
            .iter()
            .map(|t| {
                t.parse::<Mailbox>()
                    .map_err(|e| anyhow::anyhow!("to {t:?} is not an address: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tls = match options.tls {
            TlsMode::None => Tls::None,
            TlsMode::Starttls => Tls::Required(TlsParameters::new(options.host.clone())?),
            TlsMode::Tls => Tls::Wrapper(TlsParameters::new(options.host.clone())?),
        };
        let mut builder = SmtpTransport::builder_dangerous(&options.host)
            .port(options.port)
            .tls(tls)
            .timeout(Some(options.timeout));
        if let Some((user, password)) = &options.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let transport = builder.build();
        let (queue, rx) = sync_channel::<Alert>(EMAIL_QUEUE_MAX);
        let retries = options.retries;
        let server = format!("{}:{}", options.host, options.port);
        std::thread::Builder::new()
            .name("medic-email".into())
            .spawn(move || {
                for alert in rx {
                    deliver(&transport, &server, &from, &to, retries, &alert);
                }
            })?;
        Ok(EmailNotifier {
            host: options.host,
            queue,
        })
    }
}

/// The mail of one alert: subject and body.
pub fn mail(alert: &Alert) -> (String, String) {
    let incident = alert
        .incident_id
        .map(|i| format!("incident {i} "))
        .unwrap_or_default();
    let mut subject = format!(
        "[{}] medic {incident}({}): {}",
        severity_label(alert.severity),
        alert.rule,
        alert.title
    );
    if subject.len() > SUBJECT_BYTES_MAX {
        let mut end = SUBJECT_BYTES_MAX - 3;
        while !subject.is_char_boundary(end) {
            end -= 1;
        }
        subject.truncate(end);
        subject.push_str("...");
    }
    let mut body = format!(
        "{}\n\nSeverity: {}\nRule: {}\nResource: {}\nIssue: {}\n",
        alert.title,
        severity_label(alert.severity),
        alert.rule,
        alert.resource,
        alert.code
    );
    if let Some(id) = alert.incident_id {
        body.push_str(&format!(
            "Incident: {id}\n\nAcknowledge it (stops the reminders): medic ack {id}\nIts report: medic report {id}\n"
        ));
    }
    if let Some(report) = &alert.report {
        body.push('\n');
        body.push_str(&report.to_markdown());
    }
    (subject, body)
}

/// Sends one alert's mail through `server` (`host:port`, for the log), retrying what may pass later with a doubling
/// backoff; a failure is logged naming the server, the alert and the reason.
fn deliver(
    transport: &SmtpTransport,
    server: &str,
    from: &Mailbox,
    to: &[Mailbox],
    retries: u32,
    alert: &Alert,
) {
    let (subject, body) = mail(alert);
    let mut message = Message::builder().from(from.clone()).subject(subject);
    for t in to {
        message = message.to(t.clone());
    }
    let message = match message.header(ContentType::TEXT_PLAIN).body(body) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(key = %alert.key, server, "email: the mail cannot be built: {e}");
            return;
        }
    };
    let mut wait = Duration::from_millis(super::WEBHOOK_BACKOFF_FIRST_MS);
    for attempt in 0..=retries {
        if attempt > 0 {
            std::thread::sleep(wait);
            wait = wait.saturating_mul(2);
        }
        match transport.send(&message) {
            Ok(_) => return,
            Err(e) if e.is_permanent() => {
                tracing::warn!(key = %alert.key, server, "email refused by {server}: {e}; not retried");
                return;
            }
            Err(e) if attempt == retries => {
                tracing::warn!(
                    key = %alert.key,
                    server,
                    "email delivery failed after {} attempt(s) through {server}: {e}",
                    attempt + 1
                );
            }
            Err(_) => {}
        }
    }
}

impl Notifier for EmailNotifier {
    fn name(&self) -> &str {
        "email"
    }

    fn notify(&self, alert: &Alert) -> Result<(), String> {
        match self.queue.try_send(alert.clone()) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(format!(
                "email via {}: {EMAIL_QUEUE_MAX} alerts already waiting (EMAIL_QUEUE_MAX); alert {} dropped",
                self.host, alert.key
            )),
            Err(TrySendError::Disconnected(_)) => Err(format!(
                "email via {}: the delivery thread has stopped; alert {} dropped",
                self.host, alert.key
            )),
        }
    }
}
