//! A parsed playbook checked against the configured targets and turned into a [`Playbook`]: every error is kept
//! (not only the first) with the line of the value it is about. An unknown action, a condition that does not
//! parse, a step or playbook naming a target that is not configured, the built-in `store` as a target: errors,
//! never skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::PlaybookError;
use super::condition::Condition;
use super::model::{RawPlaybook, RawStep, parse_duration_ms};
use crate::target::TargetKind;
use crate::target::postgres::{
    BackendFilter, BackendSelect, RULE_NAME_BYTES_MAX, SIGNAL_BACKENDS_MAX, Signal,
};

/// The configured targets a playbook may name: name → kind, and the readings of those whose readings are
/// configured (a prometheus target's query names).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetCatalog {
    kinds: BTreeMap<String, TargetKind>,
    readings: BTreeMap<String, Vec<String>>,
    /// Targets configured without a `restart_command`: a `run_restart_command` step naming one is refused.
    no_restart_command: std::collections::BTreeSet<String>,
}

impl<const N: usize> From<[(String, TargetKind); N]> for TargetCatalog {
    fn from(kinds: [(String, TargetKind); N]) -> Self {
        Self {
            kinds: BTreeMap::from(kinds),
            readings: BTreeMap::new(),
            no_restart_command: Default::default(),
        }
    }
}

impl TargetCatalog {
    /// Adds target `name` of `kind`, with its configured `readings` (empty: the kind's own).
    pub fn insert(&mut self, name: &str, kind: TargetKind, readings: Vec<String>) {
        self.kinds.insert(name.to_string(), kind);
        if !readings.is_empty() {
            self.readings.insert(name.to_string(), readings);
        }
    }

    /// Records that target `name` has no `restart_command` in its `[[targets]]` entry.
    pub fn without_restart_command(&mut self, name: &str) {
        self.no_restart_command.insert(name.to_string());
    }

    /// The kind of target `name`.
    pub fn get(&self, name: &str) -> Option<&TargetKind> {
        self.kinds.get(name)
    }

    /// Whether no target is configured.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// The names of the configured targets.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.kinds.keys()
    }

    /// The readings a condition may name of target `name` (of kind `kind`).
    pub fn readings(&self, name: &str, kind: TargetKind) -> Vec<&str> {
        match self.readings.get(name) {
            Some(r) => r.iter().map(String::as_str).collect(),
            None => kind.readings().to_vec(),
        }
    }
}

/// The most steps in `steps`, `rollback` or `preconditions`.
pub const STEPS_MAX: usize = 32;
/// The most arguments of a `run` step.
pub const RUN_ARGS_MAX: usize = 64;
/// The longest argument or environment value, bytes.
pub const ARG_BYTES_MAX: usize = 4096;
/// The most environment variables of a `run` step.
pub const RUN_ENV_MAX: usize = 32;
/// The longest step timeout or wait, ms (ten minutes).
pub const STEP_TIMEOUT_MS_MAX: u64 = 10 * 60 * 1_000;
/// A step's timeout when none is written, ms.
pub const STEP_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// The most verification retries.
pub const VERIFY_RETRIES_MAX: u32 = 20;
/// The most attempts `safety.max_attempts` may allow.
pub const ATTEMPTS_MAX: u32 = 100;
/// The longest playbook name or issue code, bytes.
pub const NAME_BYTES_MAX: usize = 64;
/// The longest `safety.escalation.message`, bytes.
pub const ESCALATION_MESSAGE_BYTES_MAX: usize = 1024;

/// One action of the library, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run a command (no shell): its exit status decides, its output goes into the attempt's record.
    Run {
        /// Program and arguments.
        argv: Vec<String>,
        /// Extra environment.
        env: BTreeMap<String, String>,
        /// Killed after this long, ms.
        timeout_ms: u64,
    },
    /// POST the issue as JSON; a 2xx answer is success.
    Webhook {
        /// `http://` or `https://` URL.
        url: String,
        /// Time limit, ms.
        timeout_ms: u64,
    },
    /// Wait.
    Wait {
        /// How long, ms.
        ms: u64,
    },
    /// Run a target's check; fails when the check fails.
    Check {
        /// The target.
        target: String,
    },
    /// Restart a process target.
    Restart {
        /// The process target.
        target: String,
        /// Time limit for the start, ms.
        timeout_ms: u64,
    },
    /// Cancel or terminate backends of a postgres target.
    PgSignal {
        /// The postgres target.
        target: String,
        /// Cancel or terminate.
        signal: Signal,
        /// Which backends.
        select: BackendSelect,
        /// Only a role's or an application's, and how many at most.
        filter: BackendFilter,
        /// Time limit, ms.
        timeout_ms: u64,
    },
    /// `VACUUM (ANALYZE)` the table of the evidence.
    PgVacuumAnalyze {
        /// The postgres target.
        target: String,
        /// Time limit (also the statement timeout), ms.
        timeout_ms: u64,
    },
    /// `REINDEX INDEX CONCURRENTLY` the index of the evidence.
    PgReindexConcurrently {
        /// The postgres target.
        target: String,
        /// Time limit (also the statement timeout), ms.
        timeout_ms: u64,
    },
    /// Run a postgres target's `restart_command`.
    RunRestartCommand {
        /// The postgres target.
        target: String,
        /// Killed after this long, ms.
        timeout_ms: u64,
    },
}

impl Action {
    /// One line for records: `run ["systemctl", "restart", "web"]`.
    pub fn describe(&self) -> String {
        match self {
            Action::Run { argv, .. } => format!("run {argv:?}"),
            Action::Webhook { url, .. } => format!("webhook {url}"),
            Action::Wait { ms } => format!("wait {ms} ms"),
            Action::Check { target } => format!("check {target}"),
            Action::Restart { target, .. } => format!("restart {target}"),
            Action::PgSignal {
                target,
                signal,
                select,
                filter,
                ..
            } => {
                let whom = match select {
                    BackendSelect::Evidence => "the issue's backends".to_string(),
                    BackendSelect::IdleInTransactionOver { ms } => {
                        format!("sessions idle in a transaction for {ms} ms or more")
                    }
                    BackendSelect::QueryOver { ms } => {
                        format!("statements running for {ms} ms or more")
                    }
                    BackendSelect::IdleOver { ms } => {
                        format!("sessions idle for {ms} ms or more")
                    }
                };
                format!(
                    "{} {target} ({whom}{})",
                    signal.function(),
                    filter.describe()
                )
            }
            Action::PgVacuumAnalyze { target, .. } => format!("pg_vacuum_analyze {target}"),
            Action::PgReindexConcurrently { target, .. } => {
                format!("pg_reindex_concurrently {target}")
            }
            Action::RunRestartCommand { target, .. } => format!("run_restart_command {target}"),
        }
    }

    /// The target it acts on (changes), if any: `run` and `webhook` act on the playbook's own target, `wait` and
    /// `check` on none.
    pub fn acts_on<'a>(&'a self, own: &'a str) -> Option<&'a str> {
        match self {
            Action::Run { .. } | Action::Webhook { .. } => Some(own),
            Action::Wait { .. } | Action::Check { .. } => None,
            Action::Restart { target, .. }
            | Action::PgSignal { target, .. }
            | Action::PgVacuumAnalyze { target, .. }
            | Action::PgReindexConcurrently { target, .. }
            | Action::RunRestartCommand { target, .. } => Some(target),
        }
    }

    /// Its time limit, ms.
    pub fn timeout_ms(&self) -> u64 {
        match self {
            Action::Run { timeout_ms, .. }
            | Action::Webhook { timeout_ms, .. }
            | Action::Restart { timeout_ms, .. }
            | Action::PgSignal { timeout_ms, .. }
            | Action::PgVacuumAnalyze { timeout_ms, .. }
            | Action::PgReindexConcurrently { timeout_ms, .. }
            | Action::RunRestartCommand { timeout_ms, .. } => *timeout_ms,
            Action::Wait { ms } => *ms,
            Action::Check { .. } => 1_000,
        }
    }
}

/// A checked playbook.
#[derive(Debug, Clone, PartialEq)]
pub struct Playbook {
    /// Its name: the strategy's name.
    pub name: String,
    /// The line of `name:`.
    pub name_line: u64,
    /// The file it came from.
    pub file: PathBuf,
    /// The target it repairs.
    pub target: String,
    /// The issue code it handles.
    pub code: String,
    /// The condition raising `code`, when the playbook has one.
    pub condition: Option<Condition>,
    /// The target whose readings the condition reads (its check judges it): the playbook's target, or the one its
    /// `target.<name>.<reading>` names.
    pub condition_target: Option<String>,
    /// How long the condition must hold, ms.
    pub sustain_ms: u64,
    /// Targets whose checks must pass before the steps run.
    pub preconditions: Vec<String>,
    /// The repair.
    pub steps: Vec<Action>,
    /// Targets whose checks confirm the repair (the playbook's target when none is written).
    pub verify_checks: Vec<String>,
    /// Wait before each verification try, ms.
    pub verify_wait_ms: u64,
    /// Verification tries after the first.
    pub verify_retries: u32,
    /// Run when the steps or verification fail.
    pub rollback: Vec<Action>,
    /// Runs allowed before the playbook stops offering itself (the incident then escalates).
    pub max_attempts: u32,
    /// Whether every run needs an operator's approval.
    pub approval_required: bool,
    /// The least time between two runs, ms.
    pub cooldown_ms: u64,
    /// Record what would run, run nothing.
    pub dry_run: bool,
    /// `safety.blast_radius.targets`: the scope (empty: none declared).
    pub blast_targets: Vec<String>,
    /// `safety.blast_radius.failing_max`: the most targets of the scope failing at once for a run.
    pub blast_failing_max: u32,
    /// `safety.escalation.message`.
    pub escalation_message: Option<String>,
}

struct Errors<'a> {
    file: &'a Path,
    list: Vec<PlaybookError>,
}

impl Errors<'_> {
    fn at(&mut self, line: u64, reason: impl Into<String>) {
        self.list.push(PlaybookError::new(self.file, line, reason));
    }
}

fn line<T>(s: &Spanned<T>) -> u64 {
    s.referenced.line()
}

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= NAME_BYTES_MAX
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Checks `raw` (from `file`) against `catalog`.
pub fn compile(
    raw: RawPlaybook,
    file: &Path,
    catalog: &TargetCatalog,
) -> Result<Playbook, Vec<PlaybookError>> {
    let mut e = Errors {
        file,
        list: Vec::new(),
    };
    if !name_ok(&raw.name.value) {
        e.at(
            line(&raw.name),
            format!(
                "name {:?}: 1..={NAME_BYTES_MAX} letters, digits, `_`, `-` or `.`",
                raw.name.value
            ),
        );
    }
    let target = raw.target.value.clone();
    let kind = target_kind(&mut e, &target, line(&raw.target), catalog);

    // The trigger.
    let code = raw.trigger.code.value.clone();
    let code_ok = name_ok(&code) && !code.contains(['-', '.']);
    if !code_ok {
        e.at(
            line(&raw.trigger.code),
            format!("trigger.code {code:?}: 1..={NAME_BYTES_MAX} letters, digits or `_`"),
        );
    }
    let mut condition_target = None;
    let condition = match &raw.trigger.condition {
        Some(c) => match Condition::parse(&c.value) {
            Ok(parsed) => {
                condition_target = condition_readings(&mut e, &parsed, line(c), &target, catalog);
                Some(parsed)
            }
            Err(reason) => {
                e.at(line(c), reason);
                None
            }
        },
        None => {
            if let Some(kind) = kind
                && code_ok
                && !kind.codes().contains(&code.as_str())
            {
                e.at(
                    line(&raw.trigger.code),
                    format!(
                        "trigger.code {code:?}: a {} target never reports it (it reports {}); give the trigger a condition to raise it",
                        kind.as_str(),
                        kind.codes().join(", ")
                    ),
                );
            }
            None
        }
    };
    let sustain_ms = match &raw.trigger.sustain {
        Some(s) if raw.trigger.condition.is_none() => {
            e.at(line(s), "trigger.sustain needs a trigger.condition");
            0
        }
        Some(s) => duration(&mut e, s, "trigger.sustain"),
        None => 0,
    };

    // Preconditions, steps, rollback.
    let mut preconditions = Vec::new();
    limit_steps(&mut e, &raw.preconditions, "preconditions");
    for step in &raw.preconditions {
        match action(&mut e, step, catalog) {
            Some(Action::Check { target }) => preconditions.push(target),
            Some(_) => e.at(line(step), "a precondition is a `check: TARGET` step"),
            None => {}
        }
    }
    if raw.steps.is_empty() {
        e.at(line(&raw.name), "steps: a playbook needs at least one step");
    }
    limit_steps(&mut e, &raw.steps, "steps");
    let steps: Vec<Action> = raw
        .steps
        .iter()
        .filter_map(|s| action(&mut e, s, catalog))
        .collect();
    // A cancel of the evidence's pids of a session idle in a transaction reaches nothing: it runs no statement.
    if code == "pg_idle_in_transaction" {
        for step in raw.steps.iter().chain(&raw.rollback) {
            let s = &step.value;
            if s.pg_cancel_backend.is_some()
                && s.idle_in_transaction_over.is_none()
                && s.query_over.is_none()
                && s.idle_over.is_none()
            {
                e.at(
                    line(step),
                    "pg_cancel_backend on pg_idle_in_transaction: a cancel ends a running statement, and a session idle in a transaction runs none; use pg_terminate_backend (its transaction rolls back)",
                );
            }
        }
    }
    limit_steps(&mut e, &raw.rollback, "rollback");
    let rollback: Vec<Action> = raw
        .rollback
        .iter()
        .filter_map(|s| action(&mut e, s, catalog))
        .collect();

    // Verification and safety.
    let (mut verify_checks, mut verify_wait_ms, mut verify_retries) = (Vec::new(), 1_000, 2);
    if let Some(v) = &raw.verify {
        for c in &v.checks {
            if target_kind(&mut e, &c.value, line(c), catalog).is_some() {
                verify_checks.push(c.value.clone());
            }
        }
        if let Some(w) = &v.wait {
            verify_wait_ms = duration(&mut e, w, "verify.wait");
        }
        if let Some(r) = v.retries {
            if r > VERIFY_RETRIES_MAX {
                e.at(
                    line(&raw.name),
                    format!(
                        "verify.retries = {r} is over verify_retries_max = {VERIFY_RETRIES_MAX}"
                    ),
                );
            }
            verify_retries = r.min(VERIFY_RETRIES_MAX);
        }
    }
    if verify_checks.is_empty() && kind.is_some() {
        verify_checks.push(target.clone());
        // The condition's target too: the repair is confirmed when the condition no longer holds.
        if let Some(t) = &condition_target
            && *t != target
        {
            verify_checks.push(t.clone());
        }
    }
    let max_attempts = raw.safety.max_attempts.unwrap_or(3);
    if !(1..=ATTEMPTS_MAX).contains(&max_attempts) {
        e.at(
            line(&raw.name),
            format!("safety.max_attempts = {max_attempts}: accepted 1..={ATTEMPTS_MAX}"),
        );
    }
    let cooldown_ms = raw
        .safety
        .cooldown
        .as_ref()
        .map(|c| duration(&mut e, c, "safety.cooldown"))
        .unwrap_or(0);

    let (blast_targets, blast_failing_max) = match &raw.safety.blast_radius {
        Some(b) => blast_radius(
            &mut e,
            b,
            &target,
            &steps,
            &rollback,
            line(&raw.name),
            catalog,
        ),
        None => (Vec::new(), 0),
    };
    let escalation_message = raw.safety.escalation.as_ref().map(|x| {
        let m = &x.message;
        if m.value.trim().is_empty() || m.value.len() > ESCALATION_MESSAGE_BYTES_MAX {
            e.at(
                line(m),
                format!(
                    "safety.escalation.message: 1..={ESCALATION_MESSAGE_BYTES_MAX} bytes (escalation_message_bytes_max), not blank"
                ),
            );
        }
        m.value.clone()
    });

    if !e.list.is_empty() {
        return Err(e.list);
    }
    Ok(Playbook {
        name: raw.name.value,
        name_line: raw.name.referenced.line(),
        file: file.to_path_buf(),
        target,
        code,
        condition,
        condition_target,
        sustain_ms,
        preconditions,
        steps,
        verify_checks,
        verify_wait_ms,
        verify_retries,
        rollback,
        max_attempts,
        approval_required: raw.safety.approval_required,
        cooldown_ms,
        dry_run: raw.dry_run,
        blast_targets,
        blast_failing_max,
        escalation_message,
    })
}

/// `safety.blast_radius` checked: its targets exist (once each), every target a step or rollback step acts on is one
/// of them, `failing_max` is 1..=their number (1 unless written).
fn blast_radius(
    e: &mut Errors<'_>,
    b: &super::model::RawBlastRadius,
    own: &str,
    steps: &[Action],
    rollback: &[Action],
    name_line: u64,
    catalog: &TargetCatalog,
) -> (Vec<String>, u32) {
    let at = b.targets.first().map(line).unwrap_or(name_line);
    let mut scope: Vec<String> = Vec::new();
    for t in &b.targets {
        if scope.contains(&t.value) {
            e.at(
                line(t),
                format!("safety.blast_radius.targets: {:?} is named twice", t.value),
            );
        } else if target_kind(e, &t.value, line(t), catalog).is_some() {
            scope.push(t.value.clone());
        }
    }
    if b.targets.is_empty() {
        e.at(
            name_line,
            "safety.blast_radius.targets: name the targets the playbook may act on",
        );
    }
    for step in steps.iter().chain(rollback) {
        if let Some(t) = step.acts_on(own)
            && !b.targets.is_empty()
            && !b.targets.iter().any(|x| x.value == t)
        {
            e.at(
                at,
                format!(
                    "safety.blast_radius.targets: step `{}` acts on {t:?}, outside the declared scope [{}]",
                    step.describe(),
                    b.targets
                        .iter()
                        .map(|x| x.value.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    let failing_max = b.failing_max.as_ref().map(|f| f.value).unwrap_or(1);
    if !(1..=b.targets.len().max(1) as u32).contains(&failing_max) {
        let fl = b.failing_max.as_ref().map(line).unwrap_or(at);
        e.at(
            fl,
            format!(
                "safety.blast_radius.failing_max = {failing_max}: accepted 1..={} (the number of targets in scope)",
                b.targets.len()
            ),
        );
    }
    (scope, failing_max)
}

/// The target `condition` reads (every reading of one target: bare names the playbook's `target`'s,
/// `target.<name>.<reading>` another's), each reading checked against what that target has.
fn condition_readings(
    e: &mut Errors<'_>,
    condition: &Condition,
    at: u64,
    target: &str,
    catalog: &TargetCatalog,
) -> Option<String> {
    let mut read: Option<&str> = None;
    let before = e.list.len();
    for m in condition.metrics() {
        let (named, reading) = super::condition::split_metric(m);
        let t = named.unwrap_or(target);
        match read {
            Some(first) if first != t => {
                e.at(
                    at,
                    format!(
                        "condition: reads targets {first:?} and {t:?}; one condition reads one target's readings"
                    ),
                );
                continue;
            }
            _ => read = Some(t),
        }
        let kind = if named.is_some() {
            target_kind(e, t, at, catalog)
        } else {
            catalog.get(t).copied()
        };
        if let Some(kind) = kind {
            let has = catalog.readings(t, kind);
            if !has.contains(&reading) {
                let what = if has.is_empty() {
                    "none".to_string()
                } else {
                    has.join(", ")
                };
                e.at(
                    at,
                    format!(
                        "condition: {} target {t:?} has no reading {reading:?}; it has {what}",
                        kind.as_str()
                    ),
                );
            }
        }
    }
    (e.list.len() == before).then(|| read.unwrap_or(target).to_string())
}

fn limit_steps(e: &mut Errors<'_>, steps: &[Spanned<RawStep>], what: &str) {
    if steps.len() > STEPS_MAX {
        e.at(
            line(&steps[STEPS_MAX]),
            format!("{what}: more than steps_max = {STEPS_MAX} steps"),
        );
    }
}

/// The kind of target `name`, or an error naming the configured ones.
fn target_kind(
    e: &mut Errors<'_>,
    name: &str,
    at: u64,
    catalog: &TargetCatalog,
) -> Option<TargetKind> {
    if let Some(kind) = catalog.get(name) {
        return Some(*kind);
    }
    if name == "store" {
        e.at(
            at,
            "target \"store\": the store's healing is built in (read it with `medic playbooks --print-default`); playbooks repair configured [[targets]] only",
        );
    } else {
        let known = if catalog.is_empty() {
            "none is configured".to_string()
        } else {
            format!(
                "configured: {}",
                catalog.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        e.at(
            at,
            format!("unknown target {name:?}: not in the configuration's [[targets]] ({known})"),
        );
    }
    None
}

fn duration(e: &mut Errors<'_>, s: &Spanned<String>, what: &str) -> u64 {
    match parse_duration_ms(&s.value) {
        Ok(ms) => ms,
        Err(reason) => {
            e.at(line(s), format!("{what}: {reason}"));
            0
        }
    }
}

fn step_duration(e: &mut Errors<'_>, at: u64, text: &str, what: &str) -> u64 {
    match parse_duration_ms(text) {
        Ok(ms) if ms > STEP_TIMEOUT_MS_MAX => {
            e.at(
                at,
                format!("{what} {text:?} is over step_timeout_ms_max = {STEP_TIMEOUT_MS_MAX}"),
            );
            0
        }
        Ok(ms) => ms,
        Err(reason) => {
            e.at(at, format!("{what}: {reason}"));
            0
        }
    }
}

/// The actions of the library, by their step key.
pub const ACTIONS: &[&str] = &[
    "run",
    "webhook",
    "wait",
    "check",
    "restart",
    "pg_cancel_backend",
    "pg_terminate_backend",
    "pg_vacuum_analyze",
    "pg_reindex_concurrently",
    "run_restart_command",
];

/// A step acting on postgres target `t`: it must be configured and of kind postgres.
fn postgres_target(e: &mut Errors<'_>, t: &str, at: u64, catalog: &TargetCatalog, action: &str) {
    if let Some(kind) = target_kind(e, t, at, catalog)
        && kind != TargetKind::Postgres
    {
        e.at(
            at,
            format!(
                "{action} {t:?}: acts on a postgres target only; {t:?} is {}",
                kind.as_str()
            ),
        );
    }
}

/// One step checked: exactly one action, options that belong to it, targets that exist.
fn action(e: &mut Errors<'_>, step: &Spanned<RawStep>, catalog: &TargetCatalog) -> Option<Action> {
    let at = line(step);
    let s = &step.value;
    let named: Vec<&str> = [
        ("run", s.run.is_some()),
        ("webhook", s.webhook.is_some()),
        ("wait", s.wait.is_some()),
        ("check", s.check.is_some()),
        ("restart", s.restart.is_some()),
        ("pg_cancel_backend", s.pg_cancel_backend.is_some()),
        ("pg_terminate_backend", s.pg_terminate_backend.is_some()),
        ("pg_vacuum_analyze", s.pg_vacuum_analyze.is_some()),
        (
            "pg_reindex_concurrently",
            s.pg_reindex_concurrently.is_some(),
        ),
        ("run_restart_command", s.run_restart_command.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, on)| on.then_some(n))
    .collect();
    if named.len() != 1 {
        e.at(
            at,
            format!(
                "a step needs exactly one action ({}); found {}",
                ACTIONS.join(", "),
                if named.is_empty() {
                    "none".to_string()
                } else {
                    named.join(" and ")
                }
            ),
        );
        return None;
    }
    if !s.env.is_empty() && s.run.is_none() {
        e.at(at, "env applies to a `run` step only");
    }
    let signal = s.pg_cancel_backend.is_some() || s.pg_terminate_backend.is_some();
    let rule_options = s.idle_in_transaction_over.is_some()
        || s.query_over.is_some()
        || s.idle_over.is_some()
        || s.role.is_some()
        || s.application_name.is_some()
        || s.backends_max.is_some();
    if rule_options && !signal {
        e.at(
            at,
            "idle_over, idle_in_transaction_over, query_over, role, application_name and backends_max apply to pg_cancel_backend and pg_terminate_backend steps only",
        );
    }
    let timeout_ms = match &s.timeout {
        Some(t) => step_duration(e, at, t, "timeout"),
        None => STEP_TIMEOUT_MS_DEFAULT,
    };
    let before = e.list.len();
    let action = if let Some(argv) = &s.run {
        if argv.is_empty() || argv[0].is_empty() {
            e.at(at, "run: the argument list needs a program");
        }
        if argv.len() > RUN_ARGS_MAX {
            e.at(
                at,
                format!(
                    "run: {} arguments is over run_args_max = {RUN_ARGS_MAX}",
                    argv.len()
                ),
            );
        }
        if s.env.len() > RUN_ENV_MAX {
            e.at(
                at,
                format!(
                    "env: {} variables is over run_env_max = {RUN_ENV_MAX}",
                    s.env.len()
                ),
            );
        }
        let too_long = argv
            .iter()
            .chain(s.env.values())
            .chain(s.env.keys())
            .any(|a| a.len() > ARG_BYTES_MAX || a.contains('\0'));
        if too_long {
            e.at(at, format!("run: an argument or environment entry is over arg_bytes_max = {ARG_BYTES_MAX} bytes or holds a NUL"));
        }
        if s.env.keys().any(|k| k.is_empty() || k.contains('=')) {
            e.at(at, "env: a variable name is empty or holds `=`");
        }
        Action::Run {
            argv: argv.clone(),
            env: s.env.clone(),
            timeout_ms,
        }
    } else if let Some(url) = &s.webhook {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > ARG_BYTES_MAX
        {
            e.at(at, format!("webhook {url:?}: an http:// or https:// URL"));
        }
        Action::Webhook {
            url: url.clone(),
            timeout_ms,
        }
    } else if let Some(w) = &s.wait {
        if s.timeout.is_some() {
            e.at(at, "a `wait` step takes no timeout");
        }
        Action::Wait {
            ms: step_duration(e, at, w, "wait"),
        }
    } else if let Some(t) = &s.check {
        target_kind(e, t, at, catalog);
        Action::Check { target: t.clone() }
    } else if let Some(t) = &s.restart {
        if let Some(kind) = target_kind(e, t, at, catalog)
            && kind != TargetKind::Process
        {
            e.at(
                at,
                format!(
                    "restart {t:?}: only a process target can be restarted; {t:?} is {}",
                    kind.as_str()
                ),
            );
        }
        Action::Restart {
            target: t.clone(),
            timeout_ms,
        }
    } else if let Some((t, signal)) = s
        .pg_cancel_backend
        .as_ref()
        .map(|t| (t, Signal::Cancel))
        .or_else(|| {
            s.pg_terminate_backend
                .as_ref()
                .map(|t| (t, Signal::Terminate))
        })
    {
        postgres_target(e, t, at, catalog, signal.function());
        let rules: Vec<(&str, &String)> = [
            ("idle_in_transaction_over", &s.idle_in_transaction_over),
            ("query_over", &s.query_over),
            ("idle_over", &s.idle_over),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        if signal == Signal::Cancel
            && let Some((key, _)) = rules
                .iter()
                .find(|(k, _)| matches!(*k, "idle_over" | "idle_in_transaction_over"))
        {
            e.at(
                at,
                format!(
                    "pg_cancel_backend with {key}: a cancel ends a running statement, and an idle session (in a transaction or not) runs none; use pg_terminate_backend to end such sessions"
                ),
            );
        }
        let select = match rules.as_slice() {
            [] => BackendSelect::Evidence,
            [(key, d)] => {
                let ms = step_duration(e, at, d, key);
                match *key {
                    "idle_in_transaction_over" => BackendSelect::IdleInTransactionOver { ms },
                    "query_over" => BackendSelect::QueryOver { ms },
                    _ => BackendSelect::IdleOver { ms },
                }
            }
            _ => {
                e.at(
                    at,
                    "give one of idle_over, idle_in_transaction_over or query_over, not several",
                );
                BackendSelect::Evidence
            }
        };
        let mut filter = BackendFilter::default();
        for (key, value, slot) in [
            ("role", &s.role, &mut filter.role),
            (
                "application_name",
                &s.application_name,
                &mut filter.application_name,
            ),
        ] {
            if let Some(v) = value {
                if v.is_empty() || v.len() > RULE_NAME_BYTES_MAX || v.contains('\0') {
                    e.at(
                        at,
                        format!(
                            "{key} {v:?}: 1..={RULE_NAME_BYTES_MAX} bytes (rule_name_bytes_max), no NUL"
                        ),
                    );
                }
                *slot = Some(v.clone());
            }
        }
        if let Some(n) = s.backends_max {
            if !(1..=SIGNAL_BACKENDS_MAX).contains(&n) {
                e.at(
                    at,
                    format!(
                        "backends_max = {n}: accepted 1..={SIGNAL_BACKENDS_MAX} (signal_backends_max)"
                    ),
                );
            }
            filter.backends_max = n;
        }
        Action::PgSignal {
            target: t.clone(),
            signal,
            select,
            filter,
            timeout_ms,
        }
    } else if let Some(t) = &s.pg_vacuum_analyze {
        postgres_target(e, t, at, catalog, "pg_vacuum_analyze");
        Action::PgVacuumAnalyze {
            target: t.clone(),
            timeout_ms,
        }
    } else if let Some(t) = &s.pg_reindex_concurrently {
        postgres_target(e, t, at, catalog, "pg_reindex_concurrently");
        Action::PgReindexConcurrently {
            target: t.clone(),
            timeout_ms,
        }
    } else if let Some(t) = &s.run_restart_command {
        if let Some(kind) = target_kind(e, t, at, catalog)
            && !matches!(kind, TargetKind::Postgres | TargetKind::Process)
        {
            e.at(
                at,
                format!(
                    "run_restart_command {t:?}: acts on a postgres target or a watched process (with a restart_command); {t:?} is {}",
                    kind.as_str()
                ),
            );
        } else if catalog.no_restart_command.contains(t) {
            e.at(
                at,
                format!(
                    "run_restart_command: target {t:?} has no restart_command in its [[targets]] entry"
                ),
            );
        }
        Action::RunRestartCommand {
            target: t.clone(),
            timeout_ms,
        }
    } else {
        return None;
    };
    (e.list.len() == before).then_some(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> TargetCatalog {
        let mut c = TargetCatalog::from([
            ("web".to_string(), TargetKind::Http),
            ("worker".to_string(), TargetKind::Process),
            ("pg".to_string(), TargetKind::Postgres),
        ]);
        c.insert(
            "prom",
            TargetKind::Prometheus,
            vec!["errors".into(), "up".into()],
        );
        c
    }

    #[test]
    fn a_blast_radius_names_the_scope_every_step_acts_in() {
        let with = |safety: &str| {
            GOOD.replacen(
                "  max_attempts: 2\n",
                &format!("  max_attempts: 2\n{safety}"),
                1,
            )
        };
        let p = check(&with(
            "  blast_radius:\n    targets: [web, worker]\n    failing_max: 1\n  escalation:\n    message: call the web team\n",
        ))
        .unwrap();
        assert_eq!(p.blast_targets, ["web", "worker"]);
        assert_eq!(p.blast_failing_max, 1);
        assert_eq!(p.escalation_message.as_deref(), Some("call the web team"));
        for (safety, expected) in [
            (
                "  blast_radius:\n    targets: [web]\n",
                "p.yaml:24: safety.blast_radius.targets: step `restart worker` acts on \"worker\", outside the declared scope [web]",
            ),
            (
                "  blast_radius:\n    targets: [web, worker]\n    failing_max: 3\n",
                "p.yaml:25: safety.blast_radius.failing_max = 3: accepted 1..=2",
            ),
            (
                "  blast_radius:\n    targets: [web, worker, nginx]\n",
                "p.yaml:24: unknown target \"nginx\"",
            ),
            (
                "  escalation:\n    message: \"\"\n",
                "p.yaml:24: safety.escalation.message: 1..=1024 bytes",
            ),
            (
                "  escalation:\n    severity: sev1\n",
                "p.yaml:24: unknown field `severity`",
            ),
        ] {
            let e = first_error(&with(safety));
            assert!(e.starts_with(expected), "{safety:?}: got {e}");
        }
    }

    #[test]
    fn a_condition_reads_a_prometheus_targets_query() {
        let p = check(&GOOD.replacen("latency_ms > 500", "target.prom.errors > 0.05", 1)).unwrap();
        assert_eq!(p.condition_target.as_deref(), Some("prom"));
        assert_eq!(p.verify_checks, ["web", "prom"]);
        let own = check(GOOD).unwrap();
        assert_eq!(own.condition_target.as_deref(), Some("web"));
    }

    #[test]
    fn postgres_actions_compile_and_name_their_target_kind() {
        let base = "name: p\ntarget: pg\ntrigger:\n  code: pg_idle_in_transaction\nsteps:\n";
        let p = check(&format!(
            "{base}  - pg_terminate_backend: pg\n  - pg_cancel_backend: pg\n    query_over: 5m\n    timeout: 5s\n  - pg_vacuum_analyze: pg\n  - pg_reindex_concurrently: pg\n  - run_restart_command: pg\n"
        ))
        .unwrap();
        assert_eq!(
            p.steps[0],
            Action::PgSignal {
                target: "pg".into(),
                signal: Signal::Terminate,
                select: BackendSelect::Evidence,
                filter: BackendFilter::default(),
                timeout_ms: STEP_TIMEOUT_MS_DEFAULT
            }
        );
        let p2 = check(&format!(
            "{base}  - pg_terminate_backend: pg\n    idle_over: 30s\n    role: app\n    application_name: pool\n    backends_max: 25\n"
        ))
        .unwrap();
        assert_eq!(
            p2.steps[0],
            Action::PgSignal {
                target: "pg".into(),
                signal: Signal::Terminate,
                select: BackendSelect::IdleOver { ms: 30_000 },
                filter: BackendFilter {
                    role: Some("app".into()),
                    application_name: Some("pool".into()),
                    backends_max: 25
                },
                timeout_ms: STEP_TIMEOUT_MS_DEFAULT
            }
        );
        assert_eq!(
            p.steps[1],
            Action::PgSignal {
                target: "pg".into(),
                signal: Signal::Cancel,
                select: BackendSelect::QueryOver { ms: 300_000 },
                filter: BackendFilter::default(),
                timeout_ms: 5_000
            }
        );
        let cases = [
            (
                "  - pg_vacuum_analyze: web\n",
                "p.yaml:6: pg_vacuum_analyze \"web\": acts on a postgres target only",
            ),
            (
                "  - pg_terminate_backend: pg\n    idle_in_transaction_over: 1m\n    query_over: 1m\n",
                "p.yaml:6: give one of idle_over, idle_in_transaction_over or query_over, not several",
            ),
            (
                "  - run_restart_command: pg\n    query_over: 1m\n",
                "p.yaml:6: idle_over, idle_in_transaction_over, query_over, role, application_name and backends_max apply to",
            ),
            (
                "  - pg_terminate_backend: pg\n    idle_over: 1m\n    backends_max: 0\n",
                "p.yaml:6: backends_max = 0: accepted 1..=1000 (signal_backends_max)",
            ),
            (
                "  - pg_terminate_backend: pg\n    idle_over: 1m\n    backends_max: 1001\n",
                "p.yaml:6: backends_max = 1001: accepted 1..=1000",
            ),
            (
                "  - pg_terminate_backend: pg\n    idle_over: 1m\n    application_name: \"\"\n",
                "p.yaml:6: application_name \"\": 1..=63 bytes",
            ),
            (
                "  - run: [\"true\"]\n    role: app\n",
                "p.yaml:6: idle_over, idle_in_transaction_over, query_over, role, application_name and backends_max apply to",
            ),
            (
                "  - pg_cancel_backend: nope\n",
                "p.yaml:6: unknown target \"nope\"",
            ),
            (
                "  - pg_cancel_backend: pg\n    idle_in_transaction_over: 1m\n",
                "p.yaml:6: pg_cancel_backend with idle_in_transaction_over: a cancel ends a running statement",
            ),
            (
                "  - pg_cancel_backend: pg\n    idle_over: 1m\n",
                "p.yaml:6: pg_cancel_backend with idle_over: a cancel ends a running statement",
            ),
            (
                "  - pg_cancel_backend: pg\n",
                "p.yaml:6: pg_cancel_backend on pg_idle_in_transaction: a cancel ends a running statement",
            ),
        ];
        for (step, expected) in cases {
            let e = first_error(&format!("{base}{step}"));
            assert!(e.starts_with(expected), "{step:?}: got {e}");
        }
    }

    fn check(text: &str) -> Result<Playbook, Vec<PlaybookError>> {
        let file = Path::new("p.yaml");
        let raw = super::super::parse::parse(text, file).map_err(|e| vec![e])?;
        compile(raw, file, &catalog())
    }

    fn first_error(text: &str) -> String {
        check(text).unwrap_err()[0].to_string()
    }

    const GOOD: &str = "\
name: restart-web
target: web
trigger:
  code: slow_web
  condition: latency_ms > 500
  sustain: 30s
preconditions:
  - check: worker
steps:
  - run: [systemctl, restart, web]
    timeout: 20s
    env: {A: b}
  - wait: 2s
  - restart: worker
  - webhook: http://127.0.0.1:9/hook
verify:
  wait: 1s
  retries: 3
rollback:
  - run: [\"true\"]
safety:
  max_attempts: 2
  cooldown: 5m
dry_run: true
";

    #[test]
    fn a_good_playbook_compiles() {
        let p = check(GOOD).unwrap();
        assert_eq!(p.name, "restart-web");
        assert_eq!(p.code, "slow_web");
        assert_eq!(p.sustain_ms, 30_000);
        assert_eq!(p.preconditions, ["worker"]);
        assert_eq!(p.steps.len(), 4);
        assert!(matches!(
            &p.steps[0],
            Action::Run {
                timeout_ms: 20_000,
                ..
            }
        ));
        assert_eq!(
            p.verify_checks,
            ["web"],
            "the target's own check by default"
        );
        assert_eq!((p.verify_wait_ms, p.verify_retries), (1_000, 3));
        assert_eq!(
            (p.max_attempts, p.cooldown_ms, p.dry_run),
            (2, 300_000, true)
        );
    }

    #[test]
    fn each_kind_of_mistake_is_refused_with_its_line() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "  - run: [systemctl, restart, web]\n",
                "  - reboot: now\n",
                "p.yaml:10: unknown action or option `reboot`",
            ),
            (
                "target: web\n",
                "target: nginx\n",
                "p.yaml:2: unknown target \"nginx\"",
            ),
            (
                "target: web\n",
                "target: store\n",
                "p.yaml:2: target \"store\": the store's healing is built in",
            ),
            (
                "latency_ms > 500",
                "latency_ms >> 500",
                "p.yaml:5: condition",
            ),
            (
                "latency_ms > 500",
                "rss_bytes > 500",
                "p.yaml:5: condition: http target \"web\" has no reading \"rss_bytes\"",
            ),
            (
                "latency_ms > 500",
                "target.prom.error_rate > 0.05",
                "p.yaml:5: condition: prometheus target \"prom\" has no reading \"error_rate\"; it has errors, up",
            ),
            (
                "latency_ms > 500",
                "target.nope.x > 1",
                "p.yaml:5: unknown target \"nope\"",
            ),
            (
                "latency_ms > 500",
                "latency_ms > 500 and target.prom.up == 0",
                "p.yaml:5: condition: reads targets \"web\" and \"prom\"",
            ),
            (
                "  - restart: worker\n",
                "  - restart: web\n",
                "p.yaml:14: restart \"web\": only a process target",
            ),
            (
                "  - wait: 2s\n",
                "  - wait: 2s\n    check: web\n",
                "p.yaml:13: a step needs exactly one action",
            ),
            (
                "  - check: worker\n",
                "  - check: db\n",
                "p.yaml:8: unknown target \"db\"",
            ),
            (
                "    timeout: 20s\n",
                "    timeout: 20 sec\n",
                "p.yaml:10: timeout: duration",
            ),
            ("name: restart-web\n", "name: [a\n", "p.yaml:1:"),
            (
                "  code: slow_web\n  condition: latency_ms > 500\n  sustain: 30s\n",
                "  code: slow_web\n",
                "p.yaml:4: trigger.code \"slow_web\": a http target never reports it",
            ),
        ];
        for (from, to, expected) in cases {
            assert!(GOOD.contains(from), "{from}");
            let text = GOOD.replacen(from, to, 1);
            let e = first_error(&text);
            assert!(e.starts_with(expected), "{to:?}: got {e}");
        }
    }
}
