//! The recovery cascade: runs strategies cheapest first, each as backup → repair → validate, rolling back and moving
//! to the next strategy when the repair errs or validation fails, and records every attempt as an
//! [`AttemptRecord`]. It stops at the first validated repair, or when a rollback itself fails (the state is then
//! unknown and only a human should touch it). An attempt whose backup could not be taken changed nothing: it is
//! `blocked` (the environment refused — no room, no directory), not a failure of the strategy, and the engine
//! retries it later without holding it against the strategy.

use std::sync::Arc;

use crate::clock::Clock;
use crate::issue::Issue;
use crate::learn::{AttemptOutcome, AttemptRecord};
use crate::repair::{Backup, DataLoss, RepairError, RepairStrategy};

/// How a cascade ended.
#[derive(Debug, Clone, PartialEq)]
pub struct CascadeOutcome {
    /// Every attempt, in order.
    pub attempts: Vec<AttemptRecord>,
    /// The strategy whose repair validated, if any.
    pub repaired_by: Option<String>,
    /// Strategies that called the problem unrecoverable, with their reasons.
    pub unrecoverable: Vec<String>,
    /// Set when a rollback failed: the cascade stopped there.
    pub rollback_failed: Option<String>,
    /// Strategies whose backup could not be taken, so they changed nothing (their attempts are `Failed` with the
    /// reason in the notes); `on_attempt` is not called for them.
    pub blocked: Vec<String>,
    /// Strategies whose backup and repair overran the repair timeout: failed (whatever they returned) and rolled
    /// back, each with how long it ran, µs.
    pub timed_out: Vec<(String, u64)>,
}

impl CascadeOutcome {
    /// Every attempt was blocked before it changed anything: the environment, not the strategies, failed.
    pub fn only_blocked(&self) -> bool {
        self.repaired_by.is_none()
            && !self.attempts.is_empty()
            && self.blocked.len() == self.attempts.len()
    }
}

/// Runs `strategies` in the given order on `issue` until one repairs and validates. `on_attempt(strategy, success)`
/// is called after each attempt so gates and statistics see it at once.
pub fn run_cascade(
    strategies: &[Arc<dyn RepairStrategy>],
    issue: &Issue,
    clock: &dyn Clock,
    on_attempt: impl FnMut(&str, bool),
) -> CascadeOutcome {
    run_cascade_within(strategies, issue, clock, u64::MAX, on_attempt)
}

/// [`run_cascade`] where each strategy's backup and repair together get at most `timeout_us` (measured on the
/// `clock`): one that overran is failed whatever it returned — its repair is not trusted, it is rolled back — and the
/// cascade goes on with the next strategy. (Interrupting a repair that never returns is the caller's job: the engine
/// runs no threads; the program wraps its strategies in a watchdog.)
pub fn run_cascade_within(
    strategies: &[Arc<dyn RepairStrategy>],
    issue: &Issue,
    clock: &dyn Clock,
    timeout_us: u64,
    mut on_attempt: impl FnMut(&str, bool),
) -> CascadeOutcome {
    let mut out = CascadeOutcome {
        attempts: Vec::new(),
        repaired_by: None,
        unrecoverable: Vec::new(),
        rollback_failed: None,
        blocked: Vec::new(),
        timed_out: Vec::new(),
    };
    for strategy in strategies {
        let name = strategy.name().to_string();
        let started_at = clock.now();
        let mut notes = Vec::new();
        let (outcome, data_loss, blocked) = attempt(
            strategy.as_ref(),
            issue,
            clock,
            timeout_us,
            &mut notes,
            &mut out,
        );
        let record = AttemptRecord {
            strategy: name.clone(),
            started_at,
            duration_us: clock.now().saturating_sub(started_at),
            outcome,
            notes,
            data_loss,
        };
        let success = outcome == AttemptOutcome::Succeeded;
        if blocked {
            out.blocked.push(name.clone());
        } else {
            on_attempt(&name, success);
        }
        out.attempts.push(record);
        if success {
            out.repaired_by = Some(name);
            break;
        }
        if out.rollback_failed.is_some() {
            break;
        }
    }
    out
}

/// The note an attempt's record carries about the backup it took: `backup at LOCATION (N bytes)`.
pub fn backup_note(b: &Backup) -> String {
    format!("backup at {} ({} bytes)", b.location, b.bytes)
}

/// The backup a note written by [`backup_note`] names, if it is one.
pub fn backup_in_note(note: &str) -> Option<Backup> {
    let rest = note.strip_prefix("backup at ")?.strip_suffix(" bytes)")?;
    let (location, bytes) = rest.rsplit_once(" (")?;
    Some(Backup {
        location: location.to_string(),
        bytes: bytes.parse().ok()?,
    })
}

fn attempt(
    strategy: &dyn RepairStrategy,
    issue: &Issue,
    clock: &dyn Clock,
    timeout_us: u64,
    notes: &mut Vec<String>,
    out: &mut CascadeOutcome,
) -> (AttemptOutcome, DataLoss, bool) {
    let name = strategy.name();
    let started = clock.now();
    let backup = match strategy.backup(issue) {
        Ok(b) => {
            notes.push(backup_note(&b));
            b
        }
        Err(e) => {
            notes.push(format!("backup failed, nothing changed: {e}"));
            return (AttemptOutcome::Failed, DataLoss::None, true);
        }
    };
    let repaired = strategy.repair(issue);
    let ran_us = clock.now().saturating_sub(started);
    let repaired = if ran_us > timeout_us {
        out.timed_out.push((name.to_string(), ran_us));
        if let Ok(report) = &repaired {
            notes.extend(report.actions.iter().cloned());
        }
        Err(RepairError::Other(format!(
            "overran repair_timeout_us = {timeout_us} (backup and repair ran {ran_us} µs): abandoned as failed"
        )))
    } else {
        repaired
    };
    let (failed_outcome, error) = match repaired {
        Ok(report) => {
            notes.extend(report.actions.iter().cloned());
            match strategy.validate(issue) {
                Ok(()) => {
                    notes.push("validated".to_string());
                    return (AttemptOutcome::Succeeded, report.data_loss, false);
                }
                Err(e) => (AttemptOutcome::RolledBack, e),
            }
        }
        Err(e) => (AttemptOutcome::Failed, e),
    };
    notes.push(match (failed_outcome, &error) {
        // The error says "validation failed: ..." itself.
        (AttemptOutcome::RolledBack, RepairError::Validation(_)) => error.to_string(),
        (AttemptOutcome::RolledBack, _) => format!("validation failed: {error}"),
        _ => format!("repair failed: {error}"),
    });
    if let RepairError::Unrecoverable(why) = &error {
        out.unrecoverable.push(format!("{name}: {why}"));
    }
    let rolled_back = match strategy.rollback(issue, &backup) {
        Ok(()) => {
            notes.push(format!("rolled back from {}", backup.location));
            true
        }
        Err(e) => {
            let msg = format!("{name}: rollback from {} failed: {e}", backup.location);
            notes.push(msg.clone());
            out.rollback_failed = Some(msg);
            false
        }
    };
    // Refused by the environment and undone: blocked, like a backup that could not be taken.
    let blocked = rolled_back && matches!(error, RepairError::Environment(_));
    (failed_outcome, DataLoss::None, blocked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;
    use crate::issue::IssueKind;
    use crate::repair::{Backup, Estimate, RepairCost, RepairReport};
    use std::sync::Mutex;

    #[derive(Clone, Copy)]
    enum Mode {
        Works,
        BackupErr,
        RepairErr,
        RepairNoSpace,
        ValidateErr,
        RollbackErr,
    }

    struct S {
        name: &'static str,
        mode: Mode,
        log: Arc<Mutex<Vec<String>>>,
        clock: SimClock,
    }

    impl RepairStrategy for S {
        fn name(&self) -> &str {
            self.name
        }
        fn cost(&self) -> RepairCost {
            RepairCost::InPlace
        }
        fn can_repair(&self, _: &Issue) -> bool {
            true
        }
        fn estimate(&self, _: &Issue) -> Estimate {
            Estimate {
                duration_us: 1,
                data_loss: DataLoss::None,
                risk: 0.0,
            }
        }
        fn backup(&self, _: &Issue) -> Result<Backup, RepairError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("{}:backup", self.name));
            if matches!(self.mode, Mode::BackupErr) {
                return Err(RepairError::Io(
                    "No space left on device (os error 28)".into(),
                ));
            }
            Ok(Backup {
                location: format!("mem:{}", self.name),
                bytes: 8,
            })
        }
        fn repair(&self, _: &Issue) -> Result<RepairReport, RepairError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("{}:repair", self.name));
            self.clock.advance(5);
            match self.mode {
                Mode::RepairErr | Mode::RollbackErr => {
                    Err(RepairError::Unrecoverable("parity gone".into()))
                }
                Mode::RepairNoSpace => Err(RepairError::Environment(
                    "No space left on device (os error 28)".into(),
                )),
                _ => Ok(RepairReport {
                    actions: vec!["rewrote block".into()],
                    data_loss: DataLoss::None,
                }),
            }
        }
        fn validate(&self, _: &Issue) -> Result<(), RepairError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("{}:validate", self.name));
            match self.mode {
                Mode::ValidateErr => Err(RepairError::Validation("still bad".into())),
                _ => Ok(()),
            }
        }
        fn rollback(&self, _: &Issue, _: &Backup) -> Result<(), RepairError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("{}:rollback", self.name));
            match self.mode {
                Mode::RollbackErr => Err(RepairError::Io("disk gone".into())),
                _ => Ok(()),
            }
        }
    }

    fn run(modes: &[(&'static str, Mode)]) -> (CascadeOutcome, Vec<String>, Vec<(String, bool)>) {
        let clock = SimClock::new(100);
        let log = Arc::new(Mutex::new(Vec::new()));
        let strategies: Vec<Arc<dyn RepairStrategy>> = modes
            .iter()
            .map(|&(name, mode)| {
                Arc::new(S {
                    name,
                    mode,
                    log: log.clone(),
                    clock: clock.clone(),
                }) as Arc<dyn RepairStrategy>
            })
            .collect();
        let issue = Issue::new(IssueKind::Integrity, "block_checksum", "wal", "bad", "t", 0);
        let mut seen = Vec::new();
        let out = run_cascade(&strategies, &issue, &clock, |n, ok| {
            seen.push((n.to_string(), ok))
        });
        let log = log.lock().unwrap().clone();
        (out, log, seen)
    }

    #[test]
    fn validation_failure_rolls_back_and_the_next_strategy_repairs() {
        let (out, log, seen) = run(&[
            ("a", Mode::ValidateErr),
            ("b", Mode::Works),
            ("c", Mode::Works),
        ]);
        assert_eq!(
            log,
            [
                "a:backup",
                "a:repair",
                "a:validate",
                "a:rollback",
                "b:backup",
                "b:repair",
                "b:validate"
            ]
        );
        assert_eq!(out.repaired_by.as_deref(), Some("b"));
        assert_eq!(out.attempts[0].outcome, AttemptOutcome::RolledBack);
        assert_eq!(out.attempts[0].duration_us, 5);
        // Said once: the validation error already starts with its words.
        assert!(
            out.attempts[0]
                .notes
                .iter()
                .any(|n| n == "validation failed: still bad"),
            "{:?}",
            out.attempts[0].notes
        );
        assert!(
            out.attempts[0]
                .notes
                .iter()
                .any(|n| n.contains("still bad"))
        );
        assert_eq!(out.attempts[1].outcome, AttemptOutcome::Succeeded);
        assert_eq!(seen, [("a".to_string(), false), ("b".to_string(), true)]);
    }

    #[test]
    fn a_repair_overrunning_the_timeout_is_failed_rolled_back_and_the_next_one_tried() {
        let clock = SimClock::new(100);
        let log = Arc::new(Mutex::new(Vec::new()));
        let strategies: Vec<Arc<dyn RepairStrategy>> = ["slow", "quick"]
            .into_iter()
            .map(|name| {
                Arc::new(S {
                    name,
                    mode: Mode::Works,
                    log: log.clone(),
                    clock: clock.clone(),
                }) as Arc<dyn RepairStrategy>
            })
            .collect();
        let issue = Issue::new(IssueKind::Integrity, "block_checksum", "wal", "bad", "t", 0);
        // Each repair advances the clock 5 µs: a timeout of 4 µs fails both, 5 µs lets both through.
        let out = run_cascade_within(&strategies, &issue, &clock, 4, |_, _| {});
        assert_eq!(out.repaired_by, None);
        assert_eq!(
            out.timed_out,
            [("slow".to_string(), 5), ("quick".to_string(), 5)]
        );
        assert_eq!(out.attempts[0].outcome, AttemptOutcome::Failed);
        assert!(
            out.attempts[0]
                .notes
                .iter()
                .any(|n| n.contains("overran repair_timeout_us = 4")),
            "{:?}",
            out.attempts[0].notes
        );
        assert_eq!(
            log.lock().unwrap().as_slice(),
            [
                "slow:backup",
                "slow:repair",
                "slow:rollback",
                "quick:backup",
                "quick:repair",
                "quick:rollback"
            ]
        );
        let out = run_cascade_within(&strategies, &issue, &clock, 5, |_, _| {});
        assert_eq!(out.repaired_by.as_deref(), Some("slow"));
        assert!(out.timed_out.is_empty());
    }

    #[test]
    fn repair_error_is_rolled_back_and_unrecoverable_is_reported() {
        let (out, log, _) = run(&[("a", Mode::RepairErr)]);
        assert_eq!(log, ["a:backup", "a:repair", "a:rollback"]);
        assert_eq!(out.repaired_by, None);
        assert_eq!(out.attempts[0].outcome, AttemptOutcome::Failed);
        assert_eq!(out.unrecoverable, ["a: parity gone"]);
    }

    #[test]
    fn failed_rollback_stops_the_cascade() {
        let (out, log, _) = run(&[("a", Mode::RollbackErr), ("b", Mode::Works)]);
        assert_eq!(log, ["a:backup", "a:repair", "a:rollback"]);
        assert!(out.rollback_failed.unwrap().contains("disk gone"));
        assert_eq!(out.attempts.len(), 1);
    }

    #[test]
    fn a_backup_refused_by_the_environment_blocks_the_attempt_without_failing_the_strategy() {
        let (out, log, seen) = run(&[("a", Mode::BackupErr), ("b", Mode::BackupErr)]);
        assert_eq!(
            log,
            ["a:backup", "b:backup"],
            "nothing repaired without a backup"
        );
        assert_eq!(out.blocked, ["a", "b"]);
        assert!(out.only_blocked());
        assert!(
            seen.is_empty(),
            "a blocked attempt is no outcome of its strategy: {seen:?}"
        );
        assert!(out.attempts[0].notes[0].contains("backup failed, nothing changed"));

        let (out, _, seen) = run(&[("a", Mode::BackupErr), ("b", Mode::RepairErr)]);
        assert_eq!(out.blocked, ["a"]);
        assert!(!out.only_blocked(), "b tried and failed");
        assert_eq!(seen, [("b".to_string(), false)]);
    }

    #[test]
    fn a_repair_refused_by_the_environment_is_rolled_back_and_blocked() {
        let (out, log, seen) = run(&[("a", Mode::RepairNoSpace)]);
        assert_eq!(log, ["a:backup", "a:repair", "a:rollback"]);
        assert_eq!(out.blocked, ["a"]);
        assert!(out.only_blocked());
        assert!(seen.is_empty(), "no outcome of its strategy: {seen:?}");
        assert!(out.unrecoverable.is_empty());
    }
}
