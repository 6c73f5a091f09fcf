//! The playbook file as written: the YAML shape (`serde`, unknown keys refused, values that later checks need a
//! line for kept `Spanned`), and the durations it is written in (`500ms`, `30s`, `2m`, `1h`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// The longest duration a playbook may name (a step's timeout, a wait, a cooldown, a sustain), ms: one day.
pub const DURATION_MS_MAX: u64 = 24 * 3_600 * 1_000;

/// One playbook file, as parsed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlaybook {
    /// A unique name: the repair strategy's name in incidents.
    pub name: Spanned<String>,
    /// The configured target it repairs (`[[targets]]` name).
    pub target: Spanned<String>,
    /// What it handles.
    pub trigger: RawTrigger,
    /// Checks of targets that must pass before the steps run (`- check: db`).
    #[serde(default)]
    pub preconditions: Vec<Spanned<RawStep>>,
    /// The repair: actions run in order.
    pub steps: Vec<Spanned<RawStep>>,
    /// How the repair is confirmed.
    #[serde(default)]
    pub verify: Option<RawVerify>,
    /// Run when the steps or the verification fail.
    #[serde(default)]
    pub rollback: Vec<Spanned<RawStep>>,
    /// Limits on automatic runs.
    #[serde(default)]
    pub safety: RawSafety,
    /// Record what would run, run nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `trigger:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    /// The issue code handled (`endpoint_down`, `process_dead`, or a code of the playbook's own raised by its
    /// condition).
    pub code: Spanned<String>,
    /// A condition over the target's readings, e.g. `latency_ms > 500`.
    #[serde(default)]
    pub condition: Option<Spanned<String>>,
    /// How long the condition must hold before the issue is raised.
    #[serde(default)]
    pub sustain: Option<Spanned<String>>,
}

/// One step: exactly one action key, plus its options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Run a command: the argument list (no shell unless you name one).
    #[serde(default)]
    pub run: Option<Vec<String>>,
    /// POST the incident's issue as JSON to this URL.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Wait this long.
    #[serde(default)]
    pub wait: Option<String>,
    /// Run this target's check; the step fails when the check fails.
    #[serde(default)]
    pub check: Option<String>,
    /// Restart this process target.
    #[serde(default)]
    pub restart: Option<String>,
    /// Cancel the statements of backends of this postgres target (the pids, or a rule).
    #[serde(default)]
    pub pg_cancel_backend: Option<String>,
    /// Terminate backends of this postgres target (the pids, or a rule).
    #[serde(default)]
    pub pg_terminate_backend: Option<String>,
    /// `VACUUM (ANALYZE)` the table the issue names on this postgres target.
    #[serde(default)]
    pub pg_vacuum_analyze: Option<String>,
    /// `REINDEX INDEX CONCURRENTLY` the index the issue names on this postgres target.
    #[serde(default)]
    pub pg_reindex_concurrently: Option<String>,
    /// Run this postgres target's `restart_command`.
    #[serde(default)]
    pub run_restart_command: Option<String>,
    /// Cancel/terminate: every session idle in a transaction this long instead of the pids.
    #[serde(default)]
    pub idle_in_transaction_over: Option<String>,
    /// Cancel/terminate: every statement running this long instead of the pids.
    #[serde(default)]
    pub query_over: Option<String>,
    /// Cancel/terminate: every session idle (no transaction open) this long instead of the pids.
    #[serde(default)]
    pub idle_over: Option<String>,
    /// Cancel/terminate by rule: only the backends of this role (`usename`).
    #[serde(default)]
    pub role: Option<String>,
    /// Cancel/terminate by rule: only the backends of this `application_name`.
    #[serde(default)]
    pub application_name: Option<String>,
    /// Cancel/terminate by rule: the most backends one run signals (the oldest first).
    #[serde(default)]
    pub backends_max: Option<u32>,
    /// The step's time limit.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Environment of a `run` step.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// `verify:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    /// Targets whose checks must pass (default: the playbook's target).
    #[serde(default)]
    pub checks: Vec<Spanned<String>>,
    /// Wait before each try.
    #[serde(default)]
    pub wait: Option<Spanned<String>>,
    /// Tries after the first.
    #[serde(default)]
    pub retries: Option<u32>,
}

/// `safety:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSafety {
    /// Runs per incident problem before the playbook stops offering itself (the incident then escalates).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Every run needs an operator's `medic approve ID`.
    #[serde(default)]
    pub approval_required: bool,
    /// The least time between two runs.
    #[serde(default)]
    pub cooldown: Option<Spanned<String>>,
    /// The scope the playbook may act in, checked before every run.
    #[serde(default)]
    pub blast_radius: Option<RawBlastRadius>,
    /// What the incident says when the playbook gives up (refused by its blast radius, or its last attempt failed).
    #[serde(default)]
    pub escalation: Option<RawEscalation>,
}

/// `safety.blast_radius:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBlastRadius {
    /// The targets in scope: every target a step acts on must be one of them.
    pub targets: Vec<Spanned<String>>,
    /// The most targets of the scope whose checks may fail at once for the playbook to run (more: a shared cause;
    /// it refuses and the incident escalates).
    #[serde(default)]
    pub failing_max: Option<Spanned<u32>>,
}

/// `safety.escalation:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEscalation {
    /// A message for the operator, put in the incident's record.
    pub message: Spanned<String>,
}

/// Parses `500ms`, `30s`, `2m`, `1h` (a whole number and a unit) into ms, at most [`DURATION_MS_MAX`].
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("duration {text:?}: expected a whole number and a unit (ms, s, m, h), e.g. \"30s\"")
    })?;
    let factor = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "duration {text:?}: unknown unit {unit:?}; use ms, s, m or h"
            ));
        }
    };
    let ms = n.saturating_mul(factor);
    if ms > DURATION_MS_MAX {
        return Err(format!(
            "duration {text:?} is over duration_ms_max = {DURATION_MS_MAX} (one day)"
        ));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_limits() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert!(
            parse_duration_ms("30")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration_ms("s").unwrap_err().contains("whole number"));
        assert!(
            parse_duration_ms("25h")
                .unwrap_err()
                .contains("duration_ms_max")
        );
    }
}
