//! Operators in control: the human actions on incidents (approve or deny a waiting repair, acknowledge, resolve with
//! a note, reopen, annotate, mark a false positive), circuit-breaker resets and silences — each recorded in the
//! knowledge base with who and when — and the start-up warnings of a configuration under which repairs always wait
//! for approval or never run.
//!
//! Who acted is the operator's name from `[http.operators]` (the bearer token names them), `server-token` for the
//! shared `server.token`, or `local` when no token is configured. The engine keeps what changes its decisions
//! (approved, denied, acknowledged); this module keeps the record.
//!
//! Silences mute notifications: an alert whose incident matches an active silence's every matcher (issue `code`,
//! `resource`, `severity`, alert `rule`, `incident` id; `*` matches any run of characters) is recorded as usual —
//! the incident, its decisions, its repairs — but reaches no notifier. A silence with `repair = false` also holds
//! the automatic repair of every incident it matches (`crate::maintenance::Holds`; a matcher on `rule` never
//! matches a repair). They end at their end time or when expired
//! (`DELETE /v1/silences/{id}`), and live in the knowledge base, so they survive a restart.

use std::sync::{Arc, RwLock};

use heal::Timestamp;
use heal::clock::US_PER_S;
use heal::engine::{EngineError, IncidentStatus};
use heal::escalate::{Alert, Notifier};
use heal::learn::Resolution;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::app::App;

/// The longest note or comment accepted, in bytes.
pub const NOTE_BYTES_MAX: usize = 4_096;
/// The most matchers one silence may have.
pub const MATCHERS_MAX: usize = 16;
/// The longest matcher value, in bytes.
pub const MATCHER_VALUE_BYTES_MAX: usize = 1_024;
/// The most silences active at once.
pub const SILENCES_ACTIVE_MAX: usize = 1_000;
/// The longest a silence may last.
pub const SILENCE_DURATION_MAX_US: u64 = 90 * 86_400 * US_PER_S;
/// Actions listed with an incident at most (the newest).
pub const INCIDENT_ACTIONS_MAX: usize = 1_000;

/// What a matcher may look at.
pub const MATCHER_NAMES: &[&str] = &["code", "resource", "severity", "rule", "incident"];

/// Who acted when no token names anyone.
pub const LOCAL: &str = "local";

/// An action on one incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentAction {
    /// Approve the risky repair it waits for.
    Approve,
    /// Refuse that repair.
    Deny,
    /// Someone is on it: no more reminders.
    Ack,
    /// Close it, resolved by hand (a note is required).
    Resolve,
    /// Open a closed incident again.
    Reopen,
    /// Add a note (required).
    Annotate,
    /// Not a real problem.
    FalsePositive,
}

impl IncidentAction {
    /// Every action, by its name in routes (`POST /v1/incidents/{id}/<name>`) and commands.
    pub const ALL: &[(&str, IncidentAction)] = &[
        ("approve", IncidentAction::Approve),
        ("deny", IncidentAction::Deny),
        ("ack", IncidentAction::Ack),
        ("resolve", IncidentAction::Resolve),
        ("reopen", IncidentAction::Reopen),
        ("annotate", IncidentAction::Annotate),
        ("false-positive", IncidentAction::FalsePositive),
    ];

    /// The action named `name` in a route.
    pub fn from_route(name: &str) -> Option<IncidentAction> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }

    /// Its name as recorded in the knowledge base.
    pub fn recorded(self) -> &'static str {
        match self {
            IncidentAction::Approve => "approve",
            IncidentAction::Deny => "deny",
            IncidentAction::Ack => "ack",
            IncidentAction::Resolve => "resolve",
            IncidentAction::Reopen => "reopen",
            IncidentAction::Annotate => "annotate",
            IncidentAction::FalsePositive => "false_positive",
        }
    }

    fn command(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// Why an operator's request was refused; the daemon maps it to a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// 400: bad input (a missing note, a bad matcher).
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such incident, strategy or silence.
    #[error("{0}")]
    NotFound(String),
    /// 409: the incident (or breaker) is not in a state the action applies to.
    #[error("{0}")]
    Conflict(String),
    /// 500: the knowledge base or the engine failed.
    #[error("{0}")]
    Internal(String),
}

fn status_name(s: IncidentStatus) -> String {
    match serde_json::to_value(s) {
        Ok(Value::String(s)) => s.replace('_', " "),
        _ => format!("{s:?}"),
    }
}

fn resolution_name(r: Resolution) -> String {
    match serde_json::to_value(r) {
        Ok(Value::String(s)) => s,
        _ => format!("{r:?}"),
    }
}

fn engine_error(action: IncidentAction, e: EngineError) -> OpError {
    match e {
        EngineError::UnknownIncident(id) => OpError::NotFound(format!("no incident with id {id}")),
        EngineError::WrongState { id, status, why } => OpError::Conflict(format!(
            "cannot {} incident {id}: it is {} ({why})",
            action.command(),
            status_name(status)
        )),
        EngineError::Closed {
            id,
            resolution,
            why,
        } => OpError::Conflict(format!(
            "cannot {} incident {id}: it is closed as {} ({why})",
            action.command(),
            resolution_name(resolution)
        )),
        EngineError::Config(m) => OpError::Conflict(m),
        other => OpError::Internal(other.to_string()),
    }
}

fn kb_error(e: heal::learn::KbError) -> OpError {
    OpError::Internal(e.to_string())
}

/// Checks a note's size; `required` names what needs one. `field` is the request's name for it (`note`, or a
/// silence's `comment`), also the command line's flag.
pub fn check_note(note: &str, required: Option<&str>, field: &str) -> Result<(), OpError> {
    if note.len() > NOTE_BYTES_MAX {
        return Err(OpError::BadRequest(format!(
            "{field} of {} bytes is over note_bytes_max = {NOTE_BYTES_MAX}",
            note.len()
        )));
    }
    if let Some(what) = required
        && note.trim().is_empty()
    {
        return Err(OpError::BadRequest(format!(
            "{what} needs a {field}: {{\"{field}\": \"...\"}} (medic: --{field} \"...\")"
        )));
    }
    Ok(())
}

/// One condition of a silence: `name` (one of [`MATCHER_NAMES`]) equals `value`, where `*` in `value` matches any
/// run of characters. Written `name=value` or `{"name": ..., "value": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matcher {
    /// What it looks at.
    pub name: String,
    /// What it must be.
    pub value: String,
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Pair { name: String, value: String },
        }
        let m = match Form::deserialize(d)? {
            Form::Text(t) => Matcher::parse(&t).map_err(serde::de::Error::custom)?,
            Form::Pair { name, value } => Matcher { name, value },
        };
        m.check().map_err(serde::de::Error::custom)?;
        Ok(m)
    }
}

impl Matcher {
    /// `name=value`.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let (name, value) = text.split_once('=').ok_or_else(|| {
            format!(
                "matcher {text:?} is not NAME=VALUE (NAME one of {})",
                MATCHER_NAMES.join(", ")
            )
        })?;
        let m = Matcher {
            name: name.trim().to_string(),
            value: value.trim().to_string(),
        };
        m.check()?;
        Ok(m)
    }

    fn check(&self) -> Result<(), String> {
        if !MATCHER_NAMES.contains(&self.name.as_str()) {
            return Err(format!(
                "matcher name {:?} is unknown: accepted {}",
                self.name,
                MATCHER_NAMES.join(", ")
            ));
        }
        if self.value.is_empty() || self.value.len() > MATCHER_VALUE_BYTES_MAX {
            return Err(format!(
                "matcher {}: value of {} bytes: accepted 1..={MATCHER_VALUE_BYTES_MAX} (matcher_value_bytes_max)",
                self.name,
                self.value.len()
            ));
        }
        Ok(())
    }

    fn matches(&self, alert: &Alert) -> bool {
        self.matches_fields(
            &alert.code,
            &alert.resource,
            alert.severity,
            Some(&alert.rule),
            alert.incident_id,
        )
    }

    /// Whether it matches a repair the engine is about to start (no alert rule: a `rule` matcher does not match).
    fn matches_repair(&self, r: &heal::engine::RepairRequest<'_>) -> bool {
        self.matches_fields(
            &r.issue.code,
            &r.issue.resource,
            r.severity,
            None,
            Some(r.incident_id),
        )
    }

    fn matches_fields(
        &self,
        code: &str,
        resource: &str,
        severity: heal::Severity,
        rule: Option<&str>,
        incident: Option<u64>,
    ) -> bool {
        let field = match self.name.as_str() {
            "code" => code.to_string(),
            "resource" => resource.to_string(),
            "severity" => format!("{severity:?}"),
            "rule" => match rule {
                Some(r) => r.to_string(),
                None => return false,
            },
            "incident" => incident.map(|i| i.to_string()).unwrap_or_default(),
            _ => return false,
        };
        glob(
            &self.value.to_ascii_lowercase(),
            &field.to_ascii_lowercase(),
        )
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (case already folded).
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// A silence: while active, alerts matching every matcher reach no notifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Its id.
    pub id: u64,
    /// Every one must match.
    pub matchers: Vec<Matcher>,
    /// When it started, µs since the epoch.
    pub starts_at: Timestamp,
    /// When it ends (or ended), µs since the epoch.
    pub ends_at: Timestamp,
    /// Why.
    pub comment: String,
    /// Who made it.
    pub created_by: String,
    /// Who ended it early, if someone did.
    pub expired_by: Option<String>,
    /// Whether matching incidents are still repaired automatically (false: their repair waits for its end).
    #[serde(default = "yes")]
    pub repair: bool,
}

fn yes() -> bool {
    true
}

impl Silence {
    /// Whether it is in force at `now`.
    pub fn active(&self, now: Timestamp) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    /// Whether it mutes `alert` at `now`.
    pub fn mutes(&self, alert: &Alert, now: Timestamp) -> bool {
        self.active(now) && self.matchers.iter().all(|m| m.matches(alert))
    }
}

/// The silences in force, shared by the daemon's handlers and the notifiers.
#[derive(Debug, Clone, Default)]
pub struct SilenceSet(Arc<RwLock<Vec<Silence>>>);

impl SilenceSet {
    /// The silences as given (ended ones are ignored when matching).
    pub fn replace(&self, silences: Vec<Silence>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = silences;
    }

    /// The silence muting `alert` at `now`, if any.
    pub fn muting(&self, alert: &Alert, now: Timestamp) -> Option<u64> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|s| s.mutes(alert, now))
            .map(|s| s.id)
    }

    /// The silence in force that holds the repair `r` (`repair = false` and every matcher matches), if any.
    pub fn holding_repair(&self, r: &heal::engine::RepairRequest<'_>) -> Option<Silence> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|s| {
                !s.repair && s.active(r.now) && s.matchers.iter().all(|m| m.matches_repair(r))
            })
            .cloned()
    }

    /// How many are in force at `now`.
    pub fn active_count(&self, now: Timestamp) -> usize {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| s.active(now))
            .count()
    }
}

/// A notifier that drops what an active silence mutes and passes the rest on.
pub struct Silenced {
    inner: Box<dyn Notifier>,
    silences: SilenceSet,
}

impl Silenced {
    /// `inner`, muted by `silences`.
    pub fn new(inner: Box<dyn Notifier>, silences: SilenceSet) -> Silenced {
        Silenced { inner, silences }
    }
}

impl Notifier for Silenced {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn notify(&self, alert: &Alert) -> Result<(), String> {
        if let Some(id) = self.silences.muting(alert, alert.at) {
            tracing::info!(
                silence = id,
                incident = ?alert.incident_id,
                rule = %alert.rule,
                notifier = self.inner.name(),
                "alert muted by silence {id}: {}",
                alert.title
            );
            return Ok(());
        }
        self.inner.notify(alert)
    }
}

/// A duration such as `90s`, `15m`, `1h`, `2h30m`, `1d`, `500ms` (units ms, s, m or min, h, d), in µs.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "duration {text:?} is not understood: write e.g. 90s, 15m, 1h, 2h30m, 1d (units ms, s, m, h, d)"
        )
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let per: u64 = match unit {
            "ms" => 1_000,
            "s" | "sec" => US_PER_S,
            "m" | "min" => 60 * US_PER_S,
            "h" => 3_600 * US_PER_S,
            "d" => 86_400 * US_PER_S,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(per)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// The body of `POST /v1/silences`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    /// Every one must match (`"code=slow_io"` or `{"name", "value"}`).
    pub matchers: Vec<Matcher>,
    /// How long, e.g. `"2h"` (alias `for`); default 1 h.
    #[serde(default, alias = "for")]
    pub duration: Option<String>,
    /// Why (required).
    #[serde(default)]
    pub comment: String,
    /// false: matching incidents are not repaired automatically while the silence lasts; default true.
    #[serde(default = "yes")]
    pub repair: bool,
}

/// The repair strategies whose risk is above `engine.approval_risk_max` (they wait for `medic approve ID`), and
/// whether that is every one of them; a warning per problem of the configuration, for the log at start.
pub fn start_warnings(app: &App) -> Vec<String> {
    let engine = &app.config().engine;
    let mut out = Vec::new();
    if engine.dry_run {
        out.push(
            "engine.dry_run = true: incidents are decided and recorded, but nothing is ever repaired".to_string(),
        );
    }
    let probe = heal::Issue::new(
        heal::IssueKind::Integrity,
        "configuration_check",
        "none",
        "estimating each strategy's risk at start",
        "medic",
        0,
    );
    let risks = app.strategy_risks(&probe);
    let above: Vec<String> = risks
        .iter()
        .filter(|(_, r)| *r > engine.approval_risk_max)
        .map(|(n, r)| format!("{n} (risk {r:.2})"))
        .collect();
    let expiry = heal::engine::human_duration(engine.approval_expiry_us);
    if !risks.is_empty() && above.len() == risks.len() {
        out.push(format!(
            "engine.approval_risk_max = {} is below the risk of every repair strategy ({}): no repair runs \
             unless an operator approves it (`medic approvals`, `medic approve ID`); unanswered, an approval \
             escalates after {expiry}",
            engine.approval_risk_max,
            above.join(", ")
        ));
    } else if !above.is_empty() {
        out.push(format!(
            "engine.approval_risk_max = {}: repairs by {} wait for an operator's approval (`medic approve ID`); \
             unanswered, they escalate after {expiry}",
            engine.approval_risk_max,
            above.join(", ")
        ));
    }
    out
}

impl App {
    /// Applies `action` to incident `id` for `who`, records it, and answers the incident as
    /// `GET /v1/incidents/{id}` shows it, with the action recorded under `action`.
    pub fn incident_action(
        &self,
        id: u64,
        action: IncidentAction,
        who: &str,
        note: &str,
    ) -> Result<Value, OpError> {
        let required = match action {
            IncidentAction::Resolve => Some("resolving an incident"),
            IncidentAction::Annotate => Some("annotating an incident"),
            _ => None,
        };
        check_note(note, required, "note")?;
        let mut extra = Value::Null;
        {
            let mut engine = self.engine();
            let done = match action {
                IncidentAction::Approve => engine.approve(id),
                IncidentAction::Deny => engine.deny(id, who),
                IncidentAction::Ack => engine.acknowledge(id, who),
                IncidentAction::Resolve => engine.resolve(id, who, note).map(|_| ()),
                IncidentAction::Reopen => engine.reopen(id, who),
                IncidentAction::Annotate => match engine.incident(id) {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err(EngineError::UnknownIncident(id)),
                    Err(e) => Err(e),
                },
                IncidentAction::FalsePositive => engine.mark_false_positive(id).map(|raised| {
                    extra = json!(
                        raised
                            .into_iter()
                            .map(|(m, c)| json!({"metric": m, "cutoff": c}))
                            .collect::<Vec<_>>()
                    );
                }),
            };
            done.map_err(|e| engine_error(action, e))?;
        }
        let recorded = self
            .kb()
            .record_action(Some(id), action.recorded(), who, self.now(), note, None)
            .map_err(kb_error)?;
        tracing::info!(
            incident = id,
            who,
            "operator action {}{}",
            action.recorded(),
            if note.is_empty() {
                String::new()
            } else {
                format!(": {note}")
            }
        );
        let mut v = self
            .incident_detail(id)
            .map_err(|e| OpError::Internal(format!("{e:#}")))?
            .unwrap_or_else(|| json!({}));
        v["action"] = serde_json::to_value(&recorded).unwrap_or(Value::Null);
        if action == IncidentAction::FalsePositive {
            v["cutoffs_raised"] = extra;
        }
        Ok(v)
    }

    /// The operators' actions on incident `id`, oldest first, and whether someone acknowledged it (for
    /// `GET /v1/incidents/{id}`).
    pub fn incident_operator_view(&self, id: u64) -> Value {
        let actions = self
            .kb()
            .actions(Some(id), INCIDENT_ACTIONS_MAX)
            .unwrap_or_else(|e| {
                tracing::warn!("reading operators' actions on incident {id}: {e}");
                Vec::new()
            });
        let engine = self.engine();
        let active = engine
            .active_incidents()
            .into_iter()
            .find(|i| i.record.id == id);
        drop(engine);
        json!({
            "actions": actions,
            "acknowledged": active.as_ref().and_then(|a| a.acknowledged.as_ref()).map(|(who, at)| json!({"by": who, "at": at})),
            "denied": active.as_ref().is_some_and(|a| a.denied),
        })
    }

    /// `GET /v1/approvals`: the incidents waiting for an operator's approval, oldest first.
    pub fn approvals(&self) -> Value {
        let pending = self.engine().pending_approvals();
        json!({ "approvals": pending })
    }

    /// Closes a strategy's circuit breaker (the cause was fixed), recorded for `who`.
    pub fn reset_breaker(&self, strategy: &str, who: &str, note: &str) -> Result<Value, OpError> {
        check_note(note, None, "note")?;
        let known = self.strategy_names();
        if !known.iter().any(|n| n == strategy) {
            return Err(OpError::NotFound(format!(
                "no repair strategy named {strategy:?}; known: {}",
                known.join(", ")
            )));
        }
        let mut engine = self.engine();
        let was = engine
            .breakers()
            .into_iter()
            .find(|(n, _)| n == strategy)
            .map(|(_, b)| b);
        let Some(was) = was.filter(|b| b.opened_at.is_some() || b.consecutive_failures > 0) else {
            return Err(OpError::Conflict(format!(
                "the circuit breaker of {strategy} is closed with no failure recorded: nothing to reset"
            )));
        };
        engine.reset_breaker(strategy);
        drop(engine);
        let recorded = self
            .kb()
            .record_action(None, "breaker_reset", who, self.now(), note, Some(strategy))
            .map_err(kb_error)?;
        tracing::info!(strategy, who, "circuit breaker reset by an operator");
        Ok(json!({"strategy": strategy, "was": was, "action": recorded}))
    }

    /// `GET /v1/breakers`: every strategy's circuit breaker that has seen a failure.
    pub fn breakers_view(&self) -> Value {
        let engine = self.engine();
        let cooldown = engine.config().breaker_cooldown_us;
        let now = self.now();
        let list: Vec<Value> = engine
            .breakers()
            .into_iter()
            .map(|(name, b)| {
                json!({
                    "strategy": name,
                    "consecutive_failures": b.consecutive_failures,
                    "opened_at": b.opened_at,
                    "state": breaker_state_name(&b.state(now, cooldown)),
                    "reset": format!("medic breaker reset {name}"),
                })
            })
            .collect();
        json!({ "breakers": list })
    }

    /// Adds a silence for `who`.
    pub fn add_silence(&self, req: SilenceRequest, who: &str) -> Result<Value, OpError> {
        if req.matchers.is_empty() {
            return Err(OpError::BadRequest(format!(
                "a silence needs at least one matcher, such as \"code=slow_io\" (names: {})",
                MATCHER_NAMES.join(", ")
            )));
        }
        if req.matchers.len() > MATCHERS_MAX {
            return Err(OpError::BadRequest(format!(
                "{} matchers: at most matchers_max = {MATCHERS_MAX}",
                req.matchers.len()
            )));
        }
        check_note(&req.comment, Some("a silence"), "comment")?;
        let duration_us = match &req.duration {
            Some(d) => parse_duration(d).map_err(OpError::BadRequest)?,
            None => 3_600 * US_PER_S,
        };
        if duration_us == 0 || duration_us > SILENCE_DURATION_MAX_US {
            return Err(OpError::BadRequest(format!(
                "duration {}: accepted more than 0 and at most 90d (silence_duration_max)",
                req.duration.as_deref().unwrap_or("")
            )));
        }
        let now = self.now();
        if self.silence_set().active_count(now) >= SILENCES_ACTIVE_MAX {
            return Err(OpError::Conflict(format!(
                "{SILENCES_ACTIVE_MAX} silences are active (silences_active_max): expire one first"
            )));
        }
        let mut silence = Silence {
            id: 0,
            matchers: req.matchers,
            starts_at: now,
            ends_at: now.saturating_add(duration_us),
            comment: req.comment,
            created_by: who.to_string(),
            expired_by: None,
            repair: req.repair,
        };
        silence.id = self.kb().insert_silence(&silence).map_err(kb_error)?;
        let id = silence.id.to_string();
        self.kb()
            .record_action(None, "silence", who, now, &silence.comment, Some(&id))
            .map_err(kb_error)?;
        self.reload_silences()?;
        tracing::info!(
            silence = silence.id,
            who,
            "silence added until {}",
            silence.ends_at
        );
        Ok(json!({ "silence": silence }))
    }

    /// `GET /v1/silences`: those in force, or (`all`) also those ended within the last day.
    pub fn silences_view(&self, all: bool) -> Result<Value, OpError> {
        let now = self.now();
        let since = if all {
            now.saturating_sub(86_400 * US_PER_S)
        } else {
            now
        };
        let list = self
            .kb()
            .silences(since, SILENCES_ACTIVE_MAX)
            .map_err(kb_error)?;
        let list: Vec<Value> = list
            .into_iter()
            .map(|s| {
                let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
                v["active"] = json!(s.active(now));
                v
            })
            .collect();
        Ok(json!({ "silences": list }))
    }

    /// Ends silence `id` now, for `who`.
    pub fn expire_silence(&self, id: u64, who: &str) -> Result<Value, OpError> {
        let now = self.now();
        if !self.kb().expire_silence(id, now, who).map_err(kb_error)? {
            return Err(OpError::NotFound(format!("no silence with id {id}")));
        }
        self.kb()
            .record_action(None, "silence_expire", who, now, "", Some(&id.to_string()))
            .map_err(kb_error)?;
        self.reload_silences()?;
        Ok(json!({ "expired": id }))
    }

    /// Reads the silences in force from the knowledge base into the set the notifiers use.
    pub fn reload_silences(&self) -> Result<(), OpError> {
        let list = self
            .kb()
            .silences(self.now(), SILENCES_ACTIVE_MAX)
            .map_err(kb_error)?;
        self.silence_set().replace(list);
        Ok(())
    }
}

/// A circuit breaker's state as `GET /v1/breakers` names it: `closed`, `open` or `half_open`.
pub fn breaker_state_name(state: &heal::decide::BreakerState) -> &'static str {
    use heal::decide::BreakerState;
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open { .. } => "open",
        BreakerState::HalfOpen => "half_open",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_states_are_named_in_words_not_rust_debug() {
        use heal::decide::BreakerState;
        assert_eq!(breaker_state_name(&BreakerState::Closed), "closed");
        assert_eq!(breaker_state_name(&BreakerState::Open { since: 7 }), "open");
        assert_eq!(breaker_state_name(&BreakerState::HalfOpen), "half_open");
    }

    #[test]
    fn durations_parse_and_bad_ones_are_named() {
        assert_eq!(parse_duration("90s").unwrap(), 90 * US_PER_S);
        assert_eq!(parse_duration("2h30m").unwrap(), 9_000 * US_PER_S);
        assert_eq!(parse_duration("1d").unwrap(), 86_400 * US_PER_S);
        assert_eq!(parse_duration("15min").unwrap(), 900 * US_PER_S);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000);
        for bad in ["", "h", "10", "10y", "-1h", "99999999999999999999h"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("not understood"), "{bad}: {e}");
        }
    }

    #[test]
    fn matchers_parse_from_text_or_pairs_and_glob() {
        let m: Vec<Matcher> = serde_json::from_value(
            json!(["code=slow_io", {"name": "resource", "value": "wal/*.seg"}]),
        )
        .unwrap();
        assert_eq!(m[0].name, "code");
        let mut alert = Alert {
            key: "k".into(),
            rule: "escalation".into(),
            level: heal::escalate::EscalationLevel::Escalate,
            severity: heal::Severity::Sev1,
            title: "t".into(),
            resource: "wal/0001.seg".into(),
            code: "slow_io".into(),
            incident_id: Some(4),
            at: 10,
            report: None,
        };
        let s = Silence {
            id: 1,
            matchers: m,
            starts_at: 0,
            ends_at: 100,
            comment: "disk swap".into(),
            created_by: "alice".into(),
            expired_by: None,
            repair: true,
        };
        assert!(s.mutes(&alert, 10));
        assert!(!s.mutes(&alert, 100), "ended");
        alert.resource = "snap/1.snap".into();
        assert!(!s.mutes(&alert, 10));
        let e = serde_json::from_value::<Vec<Matcher>>(json!(["colour=red"])).unwrap_err();
        assert!(
            e.to_string().contains("matcher name \"colour\" is unknown"),
            "{e}"
        );
        assert!(Matcher::parse("code").is_err());
        assert!(
            glob("sev*", "sev1") && glob("*", "") && glob("a*b*c", "axxbyyc") && !glob("a*b", "ba")
        );
    }
}
