//! A playbook as a `heal::RepairStrategy`: the engine's cascade drives it (backup → repair → validate, rollback on
//! failure) behind its safety gates; the playbook adds its own. `backup` enforces the cooldown and the
//! preconditions (either refusing is "blocked": the environment, tried again later, not a failure of the playbook);
//! `repair` runs the steps in order, stopping at the first that fails; `validate` waits and re-runs the verify
//! checks up to `retries` more times; `rollback` runs the rollback steps. Each step's line (a command's output
//! included) goes into the attempt's record. After `max_attempts` runs without a verified repair the playbook no
//! longer offers itself, so the engine escalates; `approval_required` gives it a risk of 1 (above any
//! `engine.approval_risk_max` < 1); `dry_run` records the plan and runs nothing (blocked, so the incident ends
//! escalated with the plan in its record). `safety.blast_radius` is checked in `backup`, before anything runs: more
//! targets of its scope failing than `failing_max` is a shared cause, so the playbook refuses (nothing changed) and the
//! incident escalates with that reason; `safety.escalation.message` is added to the record when it refuses or its
//! last allowed attempt fails.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heal::RepairStrategy;
use heal::clock::US_PER_MS;
use heal::issue::Issue;
use heal::repair::{Backup, DataLoss, Estimate, RepairCost, RepairError, RepairReport};

use super::actions::{self, Tools};
use super::validate::{Action, Playbook};
use crate::target::resource;

#[derive(Default)]
struct Runs {
    /// Runs since the last verified repair.
    attempts: u32,
    last_run: Option<Instant>,
}

/// A playbook the engine can run.
pub struct PlaybookStrategy {
    playbook: Playbook,
    tools: Arc<Tools>,
    runs: Mutex<Runs>,
}

impl PlaybookStrategy {
    /// `playbook` acting through `tools`.
    pub fn new(playbook: Playbook, tools: Arc<Tools>) -> Self {
        Self {
            playbook,
            tools,
            runs: Mutex::new(Runs::default()),
        }
    }

    /// `; escalation: MESSAGE` when the playbook has one.
    fn escalation_note(&self) -> String {
        self.playbook
            .escalation_message
            .as_ref()
            .map(|m| format!("; escalation: {m}"))
            .unwrap_or_default()
    }

    /// The escalation note when this was the last attempt allowed.
    fn last_attempt_note(&self) -> String {
        if self.runs().attempts >= self.playbook.max_attempts {
            format!(
                "; gives up after safety.max_attempts = {}{}",
                self.playbook.max_attempts,
                self.escalation_note()
            )
        } else {
            String::new()
        }
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, Runs> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run_steps(
        &self,
        steps: &[Action],
        issue: &Issue,
    ) -> Result<Vec<String>, (Vec<String>, String)> {
        let mut lines = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            match actions::run(step, &self.tools, &self.playbook.name, issue) {
                Ok(line) => lines.push(line),
                Err(why) => {
                    let msg = format!("step {} of {}: {why}", i + 1, steps.len());
                    lines.push(msg.clone());
                    return Err((lines, msg));
                }
            }
        }
        Ok(lines)
    }
}

impl RepairStrategy for PlaybookStrategy {
    fn name(&self) -> &str {
        &self.playbook.name
    }
    fn cost(&self) -> RepairCost {
        RepairCost::InPlace
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        issue.code == self.playbook.code
            && issue.resource == resource(&self.playbook.target)
            && self.runs().attempts < self.playbook.max_attempts
    }
    fn estimate(&self, _issue: &Issue) -> Estimate {
        let steps_ms: u64 = self.playbook.steps.iter().map(Action::timeout_ms).sum();
        Estimate {
            duration_us: steps_ms.saturating_mul(US_PER_MS),
            data_loss: DataLoss::None,
            risk: if self.playbook.approval_required {
                1.0
            } else {
                0.1
            },
        }
    }
    fn backup(&self, _issue: &Issue) -> Result<Backup, RepairError> {
        let p = &self.playbook;
        if let Some(last) = self.runs().last_run {
            let cooldown = Duration::from_millis(p.cooldown_ms);
            if last.elapsed() < cooldown {
                return Err(RepairError::Environment(format!(
                    "playbook {}: in its cooldown of {} ms for {} ms more",
                    p.name,
                    p.cooldown_ms,
                    (cooldown - last.elapsed()).as_millis()
                )));
            }
        }
        if !p.blast_targets.is_empty() {
            let failing: Vec<&str> = p
                .blast_targets
                .iter()
                .filter(|t| self.tools.check(t).is_err())
                .map(String::as_str)
                .collect();
            if failing.len() > p.blast_failing_max as usize {
                return Err(RepairError::Environment(format!(
                    "playbook {}: not run: blast radius exceeded: {} of {} targets in its scope fail ({}) > safety.blast_radius.failing_max = {} (a shared cause, not this playbook's){}",
                    p.name,
                    failing.len(),
                    p.blast_targets.len(),
                    failing.join(", "),
                    p.blast_failing_max,
                    self.escalation_note()
                )));
            }
        }
        for target in &p.preconditions {
            if let Err(m) = self.tools.check(target) {
                return Err(RepairError::Environment(format!(
                    "playbook {}: precondition check {target} failed: {m}",
                    p.name
                )));
            }
        }
        Ok(Backup {
            location: format!(
                "none kept by playbook {} (its rollback steps undo the repair)",
                p.name
            ),
            bytes: 0,
        })
    }
    fn repair(&self, issue: &Issue) -> Result<RepairReport, RepairError> {
        let p = &self.playbook;
        {
            let mut runs = self.runs();
            runs.attempts += 1;
            runs.last_run = Some(Instant::now());
        }
        if p.dry_run {
            let plan: Vec<String> = p.steps.iter().map(Action::describe).collect();
            tracing::info!(playbook = %p.name, "dry run: would {}", plan.join(", then "));
            return Err(RepairError::Environment(format!(
                "dry run of playbook {} ({}): would {}",
                p.name,
                p.file.display(),
                plan.join(", then ")
            )));
        }
        match self.run_steps(&p.steps, issue) {
            Ok(actions) => {
                tracing::info!(playbook = %p.name, "steps done: {}", actions.join(" | "));
                Ok(RepairReport {
                    actions,
                    data_loss: DataLoss::None,
                })
            }
            Err((lines, why)) => {
                tracing::warn!(playbook = %p.name, "{why}");
                Err(RepairError::Other(format!(
                    "playbook {}: {}{}",
                    p.name,
                    lines.join(" | "),
                    self.last_attempt_note()
                )))
            }
        }
    }
    fn validate(&self, _issue: &Issue) -> Result<(), RepairError> {
        let p = &self.playbook;
        let mut last = String::new();
        for _ in 0..=p.verify_retries {
            std::thread::sleep(Duration::from_millis(p.verify_wait_ms));
            let failed: Vec<String> = p
                .verify_checks
                .iter()
                .filter_map(|t| self.tools.check(t).err().map(|m| format!("{t}: {m}")))
                .collect();
            if failed.is_empty() {
                self.runs().attempts = 0;
                return Ok(());
            }
            last = failed.join("; ");
        }
        Err(RepairError::Validation(format!(
            "playbook {}: after {} tries the checks still fail: {last}{}",
            p.name,
            p.verify_retries + 1,
            self.last_attempt_note()
        )))
    }
    fn rollback(&self, issue: &Issue, _backup: &Backup) -> Result<(), RepairError> {
        let p = &self.playbook;
        if p.rollback.is_empty() || p.dry_run {
            return Ok(());
        }
        match self.run_steps(&p.rollback, issue) {
            Ok(lines) => {
                tracing::info!(playbook = %p.name, "rolled back: {}", lines.join(" | "));
                Ok(())
            }
            Err((lines, _)) => Err(RepairError::Other(format!(
                "playbook {} rollback: {}",
                p.name,
                lines.join(" | ")
            ))),
        }
    }
}
