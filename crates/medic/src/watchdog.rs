//! The repair watchdog: a repair that hangs (a device that never answers) must not hold the healing engine — and
//! with it every later cycle — forever. Each strategy's repair step runs on a thread of its own and is waited for
//! at most `engine.repair_timeout_us`; past that it is abandoned as failed, logged as an error, and the cascade goes
//! on. The engine itself runs no threads (it also fails a repair that returned late, on its clock); this is the
//! program's half.
//!
//! An abandoned repair may still be running: until it returns, its resource is held — no strategy is offered for it
//! (`can_repair` is false) and its rollback is refused, which stops the cascade and escalates the incident ("rollback
//! failed, state unknown"), so nothing works on top of a repair still in progress.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use heal::Issue;
use heal::repair::{Backup, Estimate, RepairCost, RepairError, RepairReport, RepairStrategy};

/// Resources whose abandoned repair has not returned yet, shared by every wrapped strategy.
#[derive(Debug, Clone, Default)]
pub struct Abandoned(Arc<Mutex<BTreeSet<String>>>);

impl Abandoned {
    /// Whether a repair of `resource` was abandoned and still runs.
    pub fn holds(&self, resource: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(resource)
    }

    fn set(&self, resource: &str, held: bool) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if held {
            s.insert(resource.to_string());
        } else {
            s.remove(resource);
        }
    }
}

/// A strategy whose repair step is bounded by a timeout.
pub struct Watchdog {
    inner: Arc<dyn RepairStrategy>,
    timeout: Duration,
    abandoned: Abandoned,
}

impl Watchdog {
    /// `inner`, its repairs waited for at most `timeout`.
    pub fn new(inner: Arc<dyn RepairStrategy>, timeout: Duration, abandoned: Abandoned) -> Self {
        Self {
            inner,
            timeout,
            abandoned,
        }
    }
}

impl RepairStrategy for Watchdog {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn cost(&self) -> RepairCost {
        self.inner.cost()
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        !self.abandoned.holds(&issue.resource) && self.inner.can_repair(issue)
    }
    fn estimate(&self, issue: &Issue) -> Estimate {
        self.inner.estimate(issue)
    }
    fn backup(&self, issue: &Issue) -> Result<Backup, RepairError> {
        self.inner.backup(issue)
    }
    fn repair(&self, issue: &Issue) -> Result<RepairReport, RepairError> {
        let (tx, rx) = mpsc::channel();
        let inner = self.inner.clone();
        let owned = issue.clone();
        let abandoned = self.abandoned.clone();
        let resource = issue.resource.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("repair {}", self.inner.name()))
            .spawn(move || {
                let out = inner.repair(&owned);
                // Whoever waited has gone if this fails; either way the resource is free again.
                let _ = tx.send(out);
                abandoned.set(&owned.resource, false);
            });
        if let Err(e) = spawned {
            return Err(RepairError::Other(format!(
                "cannot start the repair thread: {e}"
            )));
        }
        match rx.recv_timeout(self.timeout) {
            Ok(out) => out,
            Err(_) => {
                self.abandoned.set(&resource, true);
                let us = self.timeout.as_micros();
                tracing::error!(
                    strategy = self.inner.name(),
                    resource = %resource,
                    "repair overran repair_timeout_us = {us}: abandoned as failed; it may still be running, so \
                     nothing else touches {resource} until it returns"
                );
                Err(RepairError::Other(format!(
                    "overran repair_timeout_us = {us}: abandoned (it may still be running; {resource} is held \
                     until it returns)"
                )))
            }
        }
    }
    fn validate(&self, issue: &Issue) -> Result<(), RepairError> {
        self.inner.validate(issue)
    }
    fn rollback(&self, issue: &Issue, backup: &Backup) -> Result<(), RepairError> {
        if self.abandoned.holds(&issue.resource) {
            return Err(RepairError::Other(format!(
                "not rolled back: the abandoned repair of {} may still be running",
                issue.resource
            )));
        }
        self.inner.rollback(issue, backup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heal::repair::DataLoss;

    /// Repairs after `takes`; blocks until told when `takes` is `None`.
    struct Slow {
        gate: Mutex<Option<mpsc::Receiver<()>>>,
    }

    impl RepairStrategy for Slow {
        fn name(&self) -> &str {
            "slow"
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
            Ok(Backup {
                location: "memory".into(),
                bytes: 0,
            })
        }
        fn repair(&self, _: &Issue) -> Result<RepairReport, RepairError> {
            let gate = self.gate.lock().unwrap().take();
            if let Some(rx) = gate {
                let _ = rx.recv();
            }
            Ok(RepairReport {
                actions: vec!["done".into()],
                data_loss: DataLoss::None,
            })
        }
        fn validate(&self, _: &Issue) -> Result<(), RepairError> {
            Ok(())
        }
        fn rollback(&self, _: &Issue, _: &Backup) -> Result<(), RepairError> {
            Ok(())
        }
    }

    #[test]
    fn a_hung_repair_is_abandoned_and_holds_its_resource_until_it_returns() {
        let (release, gate) = mpsc::channel();
        let abandoned = Abandoned::default();
        let w = Watchdog::new(
            Arc::new(Slow {
                gate: Mutex::new(Some(gate)),
            }),
            Duration::from_millis(50),
            abandoned.clone(),
        );
        let issue = Issue::new(
            heal::IssueKind::Integrity,
            "block_checksum",
            "wal/1.seg",
            "bad",
            "t",
            0,
        );
        let e = w.repair(&issue).unwrap_err().to_string();
        assert!(e.contains("overran repair_timeout_us = 50000"), "{e}");
        assert!(!w.can_repair(&issue), "held while the repair may run");
        let backup = w.backup(&issue).unwrap();
        assert!(w.rollback(&issue, &backup).is_err());
        // The hung repair returns: the resource is free, the next repair (not gated) completes in time.
        release.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while abandoned.holds("wal/1.seg") {
            assert!(std::time::Instant::now() < deadline, "never released");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(w.can_repair(&issue));
        assert!(w.repair(&issue).is_ok());
    }
}
