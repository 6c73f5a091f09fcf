//! The check `derived.attached` (shallow) and its repair `derived_attach`: every index the daemon keeps — `default`'s
//! `flat`, `hnsw` and `text`, each ready named collection's declared ones — must be attached to the store, or it
//! follows no write and every search it would answer is a scan. An index found detached (an attach that failed:
//! its directory locked, a refused drop) is an issue `derived_detached` (kind `stale_derived`, resource the index
//! directory, evidence `collection` and `index`), repaired by attaching it again ([`App::reattach_index`]: the
//! instance the daemon holds, or the index opened anew), after which the store's driver catches it up from the log
//! or rebuilds it. Offline commands keep no indexes attached and are never judged.

use std::sync::{Arc, Weak};

use heal::check::CheckContext;
use heal::repair::{Backup, RepairReport};
use heal::{
    CheckOutcome, DataLoss, Estimate, HealthCheck, Issue, IssueKind, Location, RepairCost,
    RepairError, RepairStrategy, Tier,
};

use crate::app::App;

/// The check's name.
pub const CHECK_NAME: &str = "derived.attached";
/// The issue code of a kept index that is not attached.
pub const DERIVED_DETACHED: &str = "derived_detached";
/// The strategy's name.
pub const STRATEGY_NAME: &str = "derived_attach";

/// The check and the strategy, over the daemon's [`App`] (weak: the app owns the engine that holds this).
pub struct AttachWatch(pub Weak<App>);

impl AttachWatch {
    fn app(&self) -> Result<Arc<App>, RepairError> {
        self.0
            .upgrade()
            .ok_or_else(|| RepairError::Other("the daemon is stopping".into()))
    }
}

impl HealthCheck for AttachWatch {
    fn name(&self) -> &str {
        CHECK_NAME
    }
    fn tier(&self) -> Tier {
        Tier::Shallow
    }
    fn run(&self, ctx: &CheckContext<'_>) -> CheckOutcome {
        let Some(app) = self.0.upgrade() else {
            return CheckOutcome::pass("skipped: the daemon is stopping");
        };
        let missing = app.unattached_indexes();
        if missing.is_empty() {
            return CheckOutcome::pass("every kept index is attached");
        }
        let now = ctx.clock.now();
        let issues: Vec<Issue> = missing
            .iter()
            .map(|(c, n)| {
                let dir = store::derived::index_dir_rel(c, n);
                Issue::new(
                    IssueKind::StaleDerived,
                    DERIVED_DETACHED,
                    &dir,
                    format!(
                        "the {n} index of collection {c:?} is not attached: it follows no write and its searches \
                         are answered from a scan"
                    ),
                    CHECK_NAME,
                    now,
                )
                .at(Location {
                    file: Some(dir.clone()),
                    ..Location::default()
                })
                .evidence("collection", c)
                .evidence("index", n)
            })
            .collect();
        let names: Vec<String> = missing.iter().map(|(c, n)| format!("{c}/{n}")).collect();
        CheckOutcome::fail(format!("not attached: {}", names.join(", ")), issues)
    }
}

impl RepairStrategy for AttachWatch {
    fn name(&self) -> &str {
        STRATEGY_NAME
    }
    fn cost(&self) -> RepairCost {
        RepairCost::InPlace
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        issue.code == DERIVED_DETACHED && store::derived::health::target(issue).is_some()
    }
    fn estimate(&self, _issue: &Issue) -> Estimate {
        Estimate {
            duration_us: 50_000,
            data_loss: DataLoss::None,
            risk: 0.02,
        }
    }
    fn backup(&self, _issue: &Issue) -> Result<Backup, RepairError> {
        Ok(Backup {
            location: "none needed (an index is derived from the log)".into(),
            bytes: 0,
        })
    }
    fn repair(&self, issue: &Issue) -> Result<RepairReport, RepairError> {
        let (c, n) = store::derived::health::target(issue)
            .ok_or_else(|| RepairError::NotApplicable("no index named".into()))?;
        let done = self.app()?.reattach_index(&c, &n).map_err(|e| {
            // Another holder of the index directory is the environment, not a failure of this strategy: the
            // attempt counts as blocked and is tried again once the cooldown passed.
            let held = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<index_text::OpenError>(),
                    Some(index_text::OpenError::Locked { .. })
                )
            });
            if held {
                RepairError::Environment(format!("{e:#}"))
            } else {
                RepairError::Other(format!("{e:#}"))
            }
        })?;
        Ok(RepairReport {
            actions: vec![done],
            data_loss: DataLoss::None,
        })
    }
    fn validate(&self, issue: &Issue) -> Result<(), RepairError> {
        let (c, n) = store::derived::health::target(issue)
            .ok_or_else(|| RepairError::NotApplicable("no index named".into()))?;
        if self
            .app()?
            .unattached_indexes()
            .iter()
            .any(|(mc, mn)| *mc == c && *mn == n)
        {
            return Err(RepairError::Validation(format!(
                "index {c}/{n} is still not attached"
            )));
        }
        Ok(())
    }
    fn rollback(&self, _issue: &Issue, _backup: &Backup) -> Result<(), RepairError> {
        Ok(())
    }
}
