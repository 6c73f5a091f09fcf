//! Escalation policies: named receivers (`[[escalation.receivers]]`: a webhook, Slack, PagerDuty, a JSON Lines
//! file or email over SMTP, each with its own settings) and policies (`[[escalation.policies]]`) of ordered levels, each with a delay
//! and one or more receivers.
//!
//! The [`Router`] is one more notifier. An escalated incident (or one waiting for approval) whose severity a policy
//! covers (`severity_max`, the first policy that covers it wins) is notified to the policy's first level at once;
//! the engine's reminders (every `engine.renotify_interval_us` until someone acknowledges) go to every receiver
//! notified so far; when nobody acknowledges within a level's `delay_ms`, the next level is notified (an
//! `escalation_step` alert, sent by the router's own timer thread, so the step does not wait for a reminder). The
//! `acknowledged` and `resolved` alerts go to every receiver that was notified. Any other alert goes to the first
//! level of the policy covering its severity.
//!
//! Without policies nothing changes: the `[notify]` notifiers (log, `webhook_url`, `file`) receive every alert, as
//! they always did, and keep doing so beside the policies (the default policy). What the router tracks — each
//! incident's policy, level, since when, receivers notified, acknowledgement — is saved as it changes to a
//! [`LevelMemory`] (the knowledge base) and taken back at start ([`Router::remember`]) for the incidents the engine
//! still follows: after a restart an incident at level 2 stays at level 2, its reminders reach every receiver
//! notified before the stop, and the next level is called when the level's delay has passed since it was reached,
//! counting the time the program was down.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver as Rx, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heal::Timestamp;
use heal::clock::{Clock, SystemClock};
use heal::escalate::{Alert, Notifier};
use heal::issue::Severity;
use serde::{Deserialize, Serialize};

use super::WebhookFormat;

/// Receivers at most.
pub const RECEIVERS_MAX: usize = 32;
/// Policies at most.
pub const POLICIES_MAX: usize = 16;
/// Levels of one policy at most.
pub const LEVELS_MAX: usize = 8;
/// Receivers of one level at most.
pub const LEVEL_RECEIVERS_MAX: usize = 16;
/// Incidents one router follows at once at most; past it, the oldest is forgotten (its next alert starts at level 1).
pub const TRACKED_MAX: usize = 4096;
/// The shortest and longest `delay_ms` of a level.
pub const DELAY_MS_RANGE: (u64, u64) = (100, 7 * 24 * 3_600_000);
/// How often the router's timer looks for levels to step up.
const TICK: Duration = Duration::from_millis(100);

/// `[escalation]`: named receivers and the policies that route escalations to them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationConfig {
    /// `[[escalation.receivers]]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub receivers: Vec<ReceiverConfig>,
    /// `[[escalation.policies]]`, the first covering an alert's severity routes it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyConfig>,
}

/// What a receiver is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    /// A webhook receiving medic's JSON alert (`url`).
    Webhook,
    /// A Slack incoming webhook (`url`).
    Slack,
    /// PagerDuty Events API v2 (`url`, `routing_key`).
    Pagerduty,
    /// A JSON Lines file (`path`).
    File,
    /// Mail over SMTP (`host`, `port`, `tls`, `username`, `password`, `from`, `to`).
    Email,
}

/// `[[escalation.receivers]]`: one named receiver and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// The name levels refer to.
    pub name: String,
    /// `webhook`, `slack`, `pagerduty` or `file`.
    pub kind: ReceiverKind,
    /// The URL POSTed to (webhook, slack, pagerduty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// PEM of the CAs an `https://` URL's certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Headers sent with every POST (values are secrets: redacted by `medic config`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// One POST may take this long.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries of a POST that failed to connect or got a 429 or 5xx.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// PagerDuty's routing key (pagerduty; redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    /// The JSON Lines file (file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The file is rotated to `<path>.1` past this.
    #[serde(default = "default_bytes_max")]
    pub bytes_max: u64,
    /// The SMTP server (email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Its port (email; default 587).
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `none`, `starttls` (default) or `tls` (email).
    #[serde(default)]
    pub tls: super::email::TlsMode,
    /// The SMTP user (email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The SMTP password (email; redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The sender (email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The recipients (email).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
}

fn default_smtp_port() -> u16 {
    587
}

/// Recipients of one email receiver at most.
pub const EMAIL_TO_MAX: usize = 32;

fn default_timeout_ms() -> u64 {
    5_000
}
fn default_retries() -> u32 {
    3
}
fn default_bytes_max() -> u64 {
    64 * 1024 * 1024
}

/// `[[escalation.policies]]`: ordered levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A name, for logs.
    pub name: String,
    /// The policy covers alerts of this severity or worse (`Sev0`..`Sev3`); none: every severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity_max: Option<Severity>,
    /// `[[escalation.policies.levels]]`, level 1 first.
    pub levels: Vec<LevelConfig>,
}

/// One level of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelConfig {
    /// Unacknowledged this long after this level was notified, the next level is (`"5m"` or ms); the last level's
    /// delay is not used.
    pub delay_ms: u64,
    /// The receivers notified, by name.
    pub receivers: Vec<String>,
}

/// Whether `url` is an `http://` or `https://HOST[:PORT]/PATH` of at most 2048 bytes without spaces.
pub fn url_ok(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or_default();
    let host = rest.split('/').next().unwrap_or_default();
    url.len() <= 2048
        && !host.is_empty()
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// What is wrong with one webhook header, if anything.
pub fn header_problem(name: &str, value: &str) -> Option<&'static str> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || name.len() > 256 || !name.chars().all(token) {
        return Some("header names of 1..=256 token characters (letters, digits, !#$%&'*+-.^_`|~)");
    }
    if value.len() > 8192 || value.chars().any(|c| c.is_control()) {
        return Some("values of at most 8192 bytes without control characters (no line breaks)");
    }
    None
}

impl EscalationConfig {
    /// Refuses what cannot work, naming the key (`escalation.policies[0].levels[1].receivers`), the value and what
    /// is accepted.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |key: String, value: String, accepted: &str| {
            Err(format!("{key} = {value} is invalid: accepted {accepted}"))
        };
        if self.receivers.len() > RECEIVERS_MAX {
            return bad(
                "escalation.receivers".into(),
                format!("{} receivers", self.receivers.len()),
                &format!("at most {RECEIVERS_MAX} (receivers_max)"),
            );
        }
        let mut names = BTreeSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            let key = |k: &str| format!("escalation.receivers[{i}].{k}");
            if r.name.is_empty()
                || r.name.len() > 64
                || !r
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return bad(
                    key("name"),
                    format!("{:?}", r.name),
                    "1..=64 letters, digits, '.', '_' or '-'",
                );
            }
            if !names.insert(r.name.as_str()) {
                return bad(
                    key("name"),
                    format!("{:?}", r.name),
                    "a name no other receiver has",
                );
            }
            if r.kind == ReceiverKind::File {
                if r.path.is_none() {
                    return bad(
                        key("path"),
                        "none".into(),
                        "the JSON Lines file of a file receiver",
                    );
                }
                if !(4096..=1 << 40).contains(&r.bytes_max) {
                    return bad(
                        key("bytes_max"),
                        r.bytes_max.to_string(),
                        "4096..=1099511627776 bytes",
                    );
                }
                continue;
            }
            if r.kind == ReceiverKind::Email {
                email_problem(r, &key)?;
                continue;
            }
            match &r.url {
                None => {
                    return bad(
                        key("url"),
                        "none".into(),
                        "the URL of a webhook, slack or pagerduty receiver",
                    );
                }
                Some(u) if !url_ok(u) => {
                    return bad(
                        key("url"),
                        u.clone(),
                        "an http:// or https://HOST[:PORT]/PATH URL of at most 2048 bytes without spaces",
                    );
                }
                Some(_) => {}
            }
            if !(100..=60_000).contains(&r.timeout_ms) {
                return bad(
                    key("timeout_ms"),
                    r.timeout_ms.to_string(),
                    "100..=60000 ms",
                );
            }
            if r.retries > 10 {
                return bad(key("retries"), r.retries.to_string(), "0..=10");
            }
            if r.headers.len() > crate::config::WEBHOOK_HEADERS_MAX {
                return bad(
                    key("headers"),
                    format!("{} headers", r.headers.len()),
                    &format!("at most {}", crate::config::WEBHOOK_HEADERS_MAX),
                );
            }
            for (n, v) in &r.headers {
                if let Some(accepted) = header_problem(n, v) {
                    return bad(
                        key("headers"),
                        format!("{n:?} = <{} bytes>", v.len()),
                        accepted,
                    );
                }
            }
            let key_ok = r.routing_key.as_deref().is_some_and(|k| {
                !k.is_empty() && k.len() <= 256 && !k.chars().any(|c| c.is_control())
            });
            if r.kind == ReceiverKind::Pagerduty && !key_ok {
                return bad(
                    key("routing_key"),
                    "<missing or malformed>".into(),
                    "the 1..=256 byte integration key of a PagerDuty Events API v2 service",
                );
            }
        }
        if self.policies.len() > POLICIES_MAX {
            return bad(
                "escalation.policies".into(),
                format!("{} policies", self.policies.len()),
                &format!("at most {POLICIES_MAX} (policies_max)"),
            );
        }
        for (p, policy) in self.policies.iter().enumerate() {
            if policy.levels.is_empty() || policy.levels.len() > LEVELS_MAX {
                return bad(
                    format!("escalation.policies[{p}].levels"),
                    format!("{} levels", policy.levels.len()),
                    &format!("1..={LEVELS_MAX} levels (levels_max)"),
                );
            }
            for (l, level) in policy.levels.iter().enumerate() {
                let key = |k: &str| format!("escalation.policies[{p}].levels[{l}].{k}");
                let (lo, hi) = DELAY_MS_RANGE;
                if !(lo..=hi).contains(&level.delay_ms) {
                    return bad(
                        key("delay_ms"),
                        level.delay_ms.to_string(),
                        &format!("{lo}..={hi} ms"),
                    );
                }
                if level.receivers.is_empty() || level.receivers.len() > LEVEL_RECEIVERS_MAX {
                    return bad(
                        key("receivers"),
                        format!("{} receivers", level.receivers.len()),
                        &format!("1..={LEVEL_RECEIVERS_MAX} receiver names"),
                    );
                }
                if let Some(unknown) = level.receivers.iter().find(|n| !names.contains(n.as_str()))
                {
                    let known = if names.is_empty() {
                        "no receiver is configured: declare it under [[escalation.receivers]]"
                            .to_string()
                    } else {
                        format!(
                            "the receivers are: {}",
                            names.iter().copied().collect::<Vec<_>>().join(", ")
                        )
                    };
                    return Err(format!(
                        "{}: unknown receiver {unknown:?} ({known})",
                        key("receivers")
                    ));
                }
            }
        }
        Ok(())
    }

    /// Receivers no policy uses (worth a warning).
    pub fn unused_receivers(&self) -> Vec<&str> {
        self.receivers
            .iter()
            .map(|r| r.name.as_str())
            .filter(|n| {
                !self
                    .policies
                    .iter()
                    .flat_map(|p| &p.levels)
                    .any(|l| l.receivers.iter().any(|r| r == n))
            })
            .collect()
    }

    /// This configuration with its secrets (header values, routing keys) replaced by `shown`.
    pub fn redact(&mut self, shown: &str) {
        for r in &mut self.receivers {
            for v in r.headers.values_mut() {
                *v = shown.to_string();
            }
            if r.routing_key.is_some() {
                r.routing_key = Some(shown.to_string());
            }
            if r.password.is_some() {
                r.password = Some(shown.to_string());
            }
        }
    }
}

/// What is wrong with an email receiver's settings, naming the key (`key("host")`).
fn email_problem(r: &ReceiverConfig, key: &dyn Fn(&str) -> String) -> Result<(), String> {
    let bad = |k: &str, value: String, accepted: &str| {
        Err(format!(
            "{} = {value} is invalid: accepted {accepted}",
            key(k)
        ))
    };
    let host_ok = r.host.as_deref().is_some_and(|h| {
        !h.is_empty() && h.len() <= 253 && !h.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if !host_ok {
        return bad(
            "host",
            format!("{:?}", r.host),
            "the SMTP server's host name or address",
        );
    }
    if r.port == 0 {
        return bad("port", "0".into(), "1..=65535");
    }
    if r.to.is_empty() || r.to.len() > EMAIL_TO_MAX {
        return bad(
            "to",
            format!("{} addresses", r.to.len()),
            &format!("1..={EMAIL_TO_MAX} recipients"),
        );
    }
    if r.username.is_some() != r.password.is_some() {
        return bad(
            "password",
            "<half the credentials>".into(),
            "both username and password, or neither",
        );
    }
    let Some(from) = &r.from else {
        return bad("from", "none".into(), "the sender's address");
    };
    for (k, a) in std::iter::once(("from", from)).chain(r.to.iter().map(|t| ("to", t))) {
        if let Err(e) = a.parse::<lettre::message::Mailbox>() {
            return bad(k, format!("{a:?}"), &format!("an email address ({e})"));
        }
    }
    if !(100..=60_000).contains(&r.timeout_ms) {
        return bad("timeout_ms", r.timeout_ms.to_string(), "100..=60000 ms");
    }
    if r.retries > 10 {
        return bad("retries", r.retries.to_string(), "0..=10");
    }
    Ok(())
}

/// Builds the notifier of one receiver (the `i`th).
fn build(i: usize, r: &ReceiverConfig) -> anyhow::Result<Box<dyn Notifier>> {
    let format = match r.kind {
        ReceiverKind::File => {
            let path = r.path.clone().unwrap_or_default();
            return Ok(Box::new(super::FileNotifier::new(&path, r.bytes_max)?));
        }
        ReceiverKind::Email => {
            let options = super::email::EmailOptions {
                host: r.host.clone().unwrap_or_default(),
                port: r.port,
                tls: r.tls,
                credentials: r.username.clone().zip(r.password.clone()),
                from: r.from.clone().unwrap_or_default(),
                to: r.to.clone(),
                timeout: Duration::from_millis(r.timeout_ms),
                retries: r.retries,
            };
            return Ok(Box::new(super::email::EmailNotifier::new(options)?));
        }
        ReceiverKind::Webhook => WebhookFormat::Json,
        ReceiverKind::Slack => WebhookFormat::Slack,
        ReceiverKind::Pagerduty => WebhookFormat::Pagerduty,
    };
    let url = r.url.clone().unwrap_or_default();
    let ca_key = format!("escalation.receivers[{i}].ca_file");
    let webhook = super::webhook(
        &url,
        r.ca_file.as_deref().map(|p| (ca_key.as_str(), p)),
        super::WebhookOptions {
            timeout: Duration::from_millis(r.timeout_ms),
            ca_pem: None,
            format,
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            routing_key: r.routing_key.clone(),
            retries: r.retries,
        },
    )?;
    Ok(Box::new(webhook))
}

/// An incident's escalation as saved: enough to go on after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedLevel {
    /// The policy's name.
    pub policy: String,
    /// The level reached, 1 for the first.
    pub level: usize,
    /// When it was reached, µs since the epoch.
    pub level_since: Timestamp,
    /// The receivers notified so far, by name.
    pub notified: Vec<String>,
    /// Whether someone acknowledged it.
    pub acknowledged: bool,
    /// The alert that started it (step-up messages repeat its title).
    pub first: Alert,
}

/// Where the router saves each incident's escalation as it changes (the knowledge base).
pub trait LevelMemory: Send + Sync {
    /// Every escalation saved.
    fn load_levels(&self) -> Result<Vec<(u64, SavedLevel)>, String>;
    /// Saves one incident's escalation, or forgets it (`None`).
    fn store_level(&self, incident: u64, level: Option<&SavedLevel>) -> Result<(), String>;
}

struct Level {
    delay: Duration,
    receivers: Vec<usize>,
}

struct Policy {
    name: String,
    severity_max: Severity,
    levels: Vec<Level>,
}

/// One incident the router follows.
struct Tracked {
    policy: usize,
    level: usize,
    level_since: Instant,
    notified: BTreeSet<usize>,
    acknowledged: bool,
    first: Alert,
}

struct Shared {
    names: Vec<String>,
    receivers: Vec<Box<dyn Notifier>>,
    policies: Vec<Policy>,
    tracked: Mutex<BTreeMap<u64, Tracked>>,
    /// Where changes are saved, once [`Router::remember`] gave it.
    memory: std::sync::OnceLock<Arc<dyn LevelMemory>>,
}

/// Routes alerts to receivers by the escalation policies, stepping an unacknowledged incident up a level at a
/// time.
pub struct Router {
    shared: Arc<Shared>,
    /// Dropping it ends the timer thread.
    _stop: Sender<()>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("receivers", &self.shared.names)
            .finish()
    }
}

impl Router {
    /// The router of `config`'s policies, each receiver wrapped by `wrap` (the operators' silences); none when
    /// there are no policies.
    pub fn new(
        config: &EscalationConfig,
        wrap: impl Fn(Box<dyn Notifier>) -> Box<dyn Notifier>,
    ) -> anyhow::Result<Option<Router>> {
        if config.policies.is_empty() {
            return Ok(None);
        }
        let mut names = Vec::new();
        let mut receivers = Vec::new();
        for (i, r) in config.receivers.iter().enumerate() {
            let n = build(i, r)
                .map_err(|e| anyhow::anyhow!("escalation.receivers[{i}] ({}): {e:#}", r.name))?;
            names.push(r.name.clone());
            receivers.push(wrap(n));
        }
        let index = |n: &String| names.iter().position(|x| x == n);
        let policies = config
            .policies
            .iter()
            .map(|p| Policy {
                name: p.name.clone(),
                severity_max: p.severity_max.unwrap_or(Severity::Sev3),
                levels: p
                    .levels
                    .iter()
                    .map(|l| Level {
                        delay: Duration::from_millis(l.delay_ms),
                        receivers: l.receivers.iter().filter_map(index).collect(),
                    })
                    .collect(),
            })
            .collect();
        let shared = Arc::new(Shared {
            names,
            receivers,
            policies,
            tracked: Mutex::new(BTreeMap::new()),
            memory: std::sync::OnceLock::new(),
        });
        let (stop, stopped) = channel();
        let timer = shared.clone();
        std::thread::Builder::new()
            .name("medic-escalation".into())
            .spawn(move || step_up_until_stopped(&timer, &stopped))?;
        Ok(Some(Router {
            shared,
            _stop: stop,
        }))
    }
}

impl Router {
    /// Takes back the escalations `memory` saved for the incidents `keep` accepts (those the engine still follows)
    /// and saves every later change there; the others are forgotten. A saved policy that no longer exists is
    /// forgotten too, and a level past the policy's last is its last. Returns how many were taken back.
    pub fn remember(&self, memory: Arc<dyn LevelMemory>, keep: impl Fn(u64) -> bool) -> usize {
        let s = &self.shared;
        let saved = memory.load_levels().unwrap_or_else(|e| {
            tracing::warn!(
                "reading the saved escalation levels: {e}; every incident starts again at level 1"
            );
            Vec::new()
        });
        let (now, wall) = (Instant::now(), SystemClock::new().now());
        let mut tracked = s.tracked.lock().unwrap_or_else(|p| p.into_inner());
        let mut taken = 0;
        for (id, l) in saved {
            let policy = s.policies.iter().position(|p| p.name == l.policy);
            let Some(policy) = policy.filter(|_| keep(id) && l.level >= 1) else {
                if let Err(e) = memory.store_level(id, None) {
                    tracing::warn!(incident = id, "forgetting its escalation level: {e}");
                }
                continue;
            };
            let level = (l.level - 1).min(s.policies[policy].levels.len() - 1);
            let ago = Duration::from_micros(wall.saturating_sub(l.level_since));
            tracked.insert(
                id,
                Tracked {
                    policy,
                    level,
                    level_since: now.checked_sub(ago).unwrap_or(now),
                    notified: l
                        .notified
                        .iter()
                        .filter_map(|n| s.names.iter().position(|x| x == n))
                        .collect(),
                    acknowledged: l.acknowledged,
                    first: l.first,
                },
            );
            taken += 1;
        }
        drop(tracked);
        if s.memory.set(memory).is_err() {
            tracing::debug!("the router already saves its levels: the first memory given stays");
        }
        taken
    }
}

fn step_up_until_stopped(shared: &Shared, stopped: &Rx<()>) {
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
        shared.step_up(Instant::now());
    }
}

impl Shared {
    /// Saves incident `id`'s escalation (`None`: forgets it) where [`Router::remember`] said; failures are logged.
    fn persist(&self, id: u64, t: Option<&Tracked>) {
        let Some(memory) = self.memory.get() else {
            return;
        };
        let wall = SystemClock::new().now();
        let saved = t.map(|t| SavedLevel {
            policy: self.policies[t.policy].name.clone(),
            level: t.level + 1,
            level_since: wall.saturating_sub(t.level_since.elapsed().as_micros() as u64),
            notified: t.notified.iter().map(|i| self.names[*i].clone()).collect(),
            acknowledged: t.acknowledged,
            first: t.first.clone(),
        });
        if let Err(e) = memory.store_level(id, saved.as_ref()) {
            tracing::warn!(incident = id, "saving its escalation level: {e}");
        }
    }

    fn policy_for(&self, severity: Severity) -> Option<usize> {
        self.policies
            .iter()
            .position(|p| severity <= p.severity_max)
    }

    /// Delivers `alert` to the receivers `to`; failures are logged and returned as one message.
    fn send(&self, to: impl IntoIterator<Item = usize>, alert: &Alert) -> Result<(), String> {
        let mut errors = Vec::new();
        for i in to {
            if let Err(e) = self.receivers[i].notify(alert) {
                tracing::warn!(receiver = %self.names[i], key = %alert.key, "notifying: {e}");
                errors.push(format!("receiver {}: {e}", self.names[i]));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Notifies the next level of every unacknowledged incident whose level's delay passed.
    fn step_up(&self, now: Instant) {
        let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        for (id, t) in tracked.iter_mut() {
            let policy = &self.policies[t.policy];
            let Some(next) = policy.levels.get(t.level + 1) else {
                continue;
            };
            let delay = policy.levels[t.level].delay;
            if t.acknowledged || now.duration_since(t.level_since) < delay {
                continue;
            }
            t.level += 1;
            t.level_since = now;
            let mut alert = t.first.clone();
            alert.key = format!("step:{id}:{}", t.level + 1);
            alert.rule = "escalation_step".into();
            alert.at = heal::clock::Clock::now(&heal::clock::SystemClock::new());
            alert.title = format!(
                "not acknowledged within {}: escalated to level {} of policy {}; answer with `medic ack {id}`: {}",
                heal::engine::human_duration(delay.as_micros() as u64),
                t.level + 1,
                policy.name,
                t.first.title
            );
            t.notified.extend(next.receivers.iter().copied());
            self.persist(*id, Some(&*t));
            let _ = self.send(next.receivers.iter().copied(), &alert);
        }
    }
}

impl Notifier for Router {
    fn name(&self) -> &str {
        "escalation policies"
    }

    fn notify(&self, alert: &Alert) -> Result<(), String> {
        let s = &self.shared;
        let mut tracked = s.tracked.lock().unwrap_or_else(|p| p.into_inner());
        let rule = alert.rule.as_str();
        if let Some(id) = alert.incident_id
            && let Some(t) = tracked.get_mut(&id)
        {
            let to: Vec<usize> = t.notified.iter().copied().collect();
            match rule {
                "resolved" => {
                    tracked.remove(&id);
                    s.persist(id, None);
                }
                "acknowledged" => {
                    t.acknowledged = true;
                    s.persist(id, Some(&*t));
                }
                _ => {}
            }
            return s.send(to, alert);
        }
        let Some(p) = s.policy_for(alert.severity) else {
            return Ok(());
        };
        let first: Vec<usize> = s.policies[p].levels[0].receivers.clone();
        if let (Some(id), "escalation" | "approval_required" | "escalation_repeat") =
            (alert.incident_id, rule)
        {
            if tracked.len() >= TRACKED_MAX
                && let Some(oldest) = tracked.keys().next().copied()
            {
                tracked.remove(&oldest);
                s.persist(oldest, None);
            }
            let t = Tracked {
                policy: p,
                level: 0,
                level_since: Instant::now(),
                notified: first.iter().copied().collect(),
                acknowledged: false,
                first: alert.clone(),
            };
            s.persist(id, Some(&t));
            tracked.insert(id, t);
        }
        s.send(first, alert)
    }
}
