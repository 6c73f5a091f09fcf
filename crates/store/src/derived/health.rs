//! The engine's view of derived data, for any attached index: checks `derived.lag` (shallow: applied LSN behind
//! the log beyond [`LAG_RECORDS_MAX`] records, or an LSN the log held not applied for [`LAG_FOR_MS_MAX`] →
//! `stale_derived`), `derived.agreement` (deep: the index against a truth sampled from the table,
//! [`AGREEMENT_SAMPLE`] ids) and `derived.agreement.scrub` (comprehensive: [`SCRUB_SAMPLE`] ids) → `derived_damaged`;
//! strategies `derived_catch_up` (replay the log from the index's LSN) and `derived_rebuild` (rebuild from the
//! table, refused while the store is degraded). `derived.structure` (deep) measures each index's own structure
//! ([`super::DerivedIndex::structure`]: an HNSW graph's reachability, orphans, entry point, tombstones) and reports
//! each problem as `derived_structure` (evidence `problem`: the index's code), repaired in place by
//! `derived_restructure` (validated by measuring again) and, when that fails, by `derived_rebuild` (validated by the
//! agreement and, for a structural problem, by measuring again too). The issue's resource is the index directory
//! (`idx/<collection>/<name>`), its evidence names `collection` and `index`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use heal::check::CheckContext;
use heal::repair::{Backup, RepairReport};
use heal::{
    CheckOutcome, DataLoss, Estimate, HealthCheck, Issue, IssueKind, Location, RepairCost,
    RepairError, RepairStrategy, Tier,
};

use super::index_dir_rel;
use crate::issues::Code;
use crate::lock::now_us;
use crate::store::Store;

/// An index further behind the log than this many records is stale.
pub const LAG_RECORDS_MAX: u64 = 100_000;
/// An LSN the log held and the index has not applied after this long makes the index stale.
pub const LAG_FOR_MS_MAX: u64 = 10_000;
/// Ids sampled by the deep tier's agreement check.
pub const AGREEMENT_SAMPLE: usize = 64;
/// Ids sampled by the full scrub's agreement check.
pub const SCRUB_SAMPLE: usize = 4_096;
/// How long a catch-up's validation waits for the index to reach the log.
const VALIDATE_WAIT_MS: u64 = 5_000;

/// The issue code of an index behind the log.
pub const STALE_DERIVED: &str = Code::StaleDerived.as_str();
/// The issue code of a structural problem of an index (evidence `problem` names which).
pub const DERIVED_STRUCTURE: &str = Code::DerivedStructure.as_str();
/// The issue code of an index that disagrees with the table or whose files are damaged.
pub const DERIVED_DAMAGED: &str = Code::DerivedDamaged.as_str();

fn index_issue(
    kind: IssueKind,
    code: &str,
    collection: &str,
    name: &str,
    summary: String,
    source: &str,
) -> Issue {
    let dir = index_dir_rel(collection, name);
    Issue::new(kind, code, &dir, summary, source, now_us())
        .at(Location {
            file: Some(dir.clone()),
            ..Location::default()
        })
        .evidence("collection", collection)
        .evidence("index", name)
}

fn evidence(issue: &Issue, key: &str) -> Option<String> {
    issue
        .evidence
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// The `(collection, index)` an index's issue names in its evidence (`collection`, `index`).
pub fn target(issue: &Issue) -> Option<(String, String)> {
    Some((evidence(issue, "collection")?, evidence(issue, "index")?))
}

fn outcome(name: &str, issues: Vec<Issue>, what: String) -> CheckOutcome {
    if issues.is_empty() {
        CheckOutcome::pass(format!("{name}: {what}"))
    } else {
        CheckOutcome::fail(
            format!("{name}: {} problem(s) in {what}", issues.len()),
            issues,
        )
    }
}

/// `derived.lag`: see the module doc.
pub struct LagCheck {
    pub(crate) store: Arc<Store>,
}

impl HealthCheck for LagCheck {
    fn name(&self) -> &str {
        "derived.lag"
    }
    fn tier(&self) -> Tier {
        Tier::Shallow
    }
    fn run(&self, _ctx: &CheckContext<'_>) -> CheckOutcome {
        if self.store.degraded() {
            // Nothing derived is caught up past a loss nor rebuilt meanwhile; the loss is the incident.
            return CheckOutcome::pass("derived.lag: skipped while the store is degraded");
        }
        let log = self.store.stats().last_lsn;
        let lags = self.store.derived().lag(log);
        let mut issues = Vec::new();
        for l in &lags {
            let records = l.log_lsn.saturating_sub(l.applied);
            let ms = l.behind_for.as_millis() as u64;
            if records > LAG_RECORDS_MAX || ms > LAG_FOR_MS_MAX {
                issues.push(
                    index_issue(
                        IssueKind::StaleDerived,
                        STALE_DERIVED,
                        &l.collection,
                        &l.name,
                        format!(
                            "index {}/{} has applied LSN {}, {records} record(s) behind the log (LSN {}), an LSN \
                             waiting {ms} ms (bounds: {LAG_RECORDS_MAX} records, {LAG_FOR_MS_MAX} ms){}",
                            l.collection,
                            l.name,
                            l.applied,
                            l.log_lsn,
                            l.last_error
                                .as_ref()
                                .map_or(String::new(), |e| format!("; {e}"))
                        ),
                        "derived.lag",
                    )
                    .evidence("lag_records", records.to_string())
                    .evidence("lag_ms", ms.to_string()),
                );
            }
        }
        outcome("derived.lag", issues, format!("{} index(es)", lags.len()))
    }
}

/// `derived.agreement` (deep) and `derived.agreement.scrub` (comprehensive): see the module doc.
pub struct AgreementCheck {
    pub(crate) store: Arc<Store>,
    pub(crate) scrub: bool,
    pub(crate) runs: AtomicU64,
}

impl AgreementCheck {
    fn check_name(&self) -> &'static str {
        if self.scrub {
            "derived.agreement.scrub"
        } else {
            "derived.agreement"
        }
    }
}

impl HealthCheck for AgreementCheck {
    fn name(&self) -> &str {
        self.check_name()
    }
    fn tier(&self) -> Tier {
        if self.scrub {
            Tier::Comprehensive
        } else {
            Tier::Deep
        }
    }
    fn run(&self, _ctx: &CheckContext<'_>) -> CheckOutcome {
        let name = self.check_name();
        if self.store.degraded() {
            return CheckOutcome::pass(format!(
                "{name}: skipped while the store is degraded (the table is not the whole truth)"
            ));
        }
        let sample = if self.scrub {
            SCRUB_SAMPLE
        } else {
            AGREEMENT_SAMPLE
        };
        let seed = self
            .runs
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let derived = self.store.derived();
        let mut issues = Vec::new();
        let names = derived.names();
        for full in &names {
            let Some((collection, index)) = full.split_once('/') else {
                continue;
            };
            match derived.check(&self.store, collection, index, sample, seed) {
                Ok((truth, a)) if !a.agrees() => {
                    let mut what: Vec<String> = a.damage.clone();
                    what.extend(a.disagreements.iter().take(8).cloned());
                    issues.push(
                        index_issue(
                            IssueKind::StaleDerived,
                            DERIVED_DAMAGED,
                            collection,
                            index,
                            format!(
                                "index {collection}/{index} disagrees with the table at LSN {} ({} sampled ids, {} \
                                 documents): {}",
                                truth.lsn,
                                truth.sample.len(),
                                truth.count,
                                what.join("; ")
                            ),
                            name,
                        )
                        .evidence("damage", a.damage.len().to_string())
                        .evidence("disagreements", a.disagreements.len().to_string()),
                    );
                }
                Ok(_) => {}
                Err(e) => issues.push(index_issue(
                    IssueKind::StaleDerived,
                    DERIVED_DAMAGED,
                    collection,
                    index,
                    format!("index {collection}/{index} could not be checked: {e}"),
                    name,
                )),
            }
        }
        outcome(
            name,
            issues,
            format!("{} index(es), {sample} sampled ids each", names.len()),
        )
    }
}

/// `derived.structure`: see the module doc.
pub struct StructureCheck {
    pub(crate) store: Arc<Store>,
}

impl HealthCheck for StructureCheck {
    fn name(&self) -> &str {
        "derived.structure"
    }
    fn tier(&self) -> Tier {
        Tier::Deep
    }
    fn run(&self, _ctx: &CheckContext<'_>) -> CheckOutcome {
        let derived = self.store.derived();
        let names = derived.names();
        let mut issues = Vec::new();
        let mut measured = 0usize;
        for full in &names {
            let Some((collection, index)) = full.split_once('/') else {
                continue;
            };
            let problems = match derived.structure(collection, index) {
                Ok(Some(s)) => {
                    measured += 1;
                    s.problems
                }
                // Not structured, or detached meanwhile.
                Ok(None) | Err(_) => continue,
            };
            for p in problems {
                issues.push(
                    index_issue(
                        IssueKind::StaleDerived,
                        DERIVED_STRUCTURE,
                        collection,
                        index,
                        format!("index {collection}/{index}: {}", p.summary),
                        "derived.structure",
                    )
                    .evidence("problem", p.code),
                );
            }
        }
        outcome(
            "derived.structure",
            issues,
            format!("{measured} index structure(s)"),
        )
    }
}

fn est(duration_us: u64) -> Estimate {
    Estimate {
        duration_us,
        data_loss: DataLoss::None,
        risk: 0.05,
    }
}

fn repair_err(e: crate::StoreError) -> RepairError {
    match &e {
        crate::StoreError::Io { source, .. } if crate::io::is_resource(source) => {
            RepairError::Environment(e.to_string())
        }
        _ => RepairError::Other(e.to_string()),
    }
}

/// `derived_catch_up`: replays the log from the index's applied LSN (a rebuild when the log no longer covers it).
pub struct CatchUp {
    pub(crate) store: Arc<Store>,
}

impl RepairStrategy for CatchUp {
    fn name(&self) -> &str {
        "derived_catch_up"
    }
    fn cost(&self) -> RepairCost {
        RepairCost::ReplayLog
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        issue.code == STALE_DERIVED && target(issue).is_some()
    }
    fn estimate(&self, _issue: &Issue) -> Estimate {
        est(50_000 + self.store.wal_bytes() / 200)
    }
    fn backup(&self, _issue: &Issue) -> Result<Backup, RepairError> {
        Ok(Backup {
            location: "none needed (an index is derived from the log)".into(),
            bytes: 0,
        })
    }
    fn repair(&self, issue: &Issue) -> Result<RepairReport, RepairError> {
        let (c, n) =
            target(issue).ok_or_else(|| RepairError::NotApplicable("no index named".into()))?;
        let lsn = self
            .store
            .derived()
            .catch_up(&self.store, &c, &n)
            .map_err(repair_err)?;
        Ok(RepairReport {
            actions: vec![format!("caught index {c}/{n} up to LSN {lsn}")],
            data_loss: DataLoss::None,
        })
    }
    fn validate(&self, _issue: &Issue) -> Result<(), RepairError> {
        let log = self.store.stats().last_lsn;
        self.store
            .derived()
            .wait_applied(log, Duration::from_millis(VALIDATE_WAIT_MS))
            .map_err(|e| RepairError::Validation(e.to_string()))
    }
    fn rollback(&self, _issue: &Issue, _backup: &Backup) -> Result<(), RepairError> {
        Ok(())
    }
}

/// Measures index `c`/`n`'s structure again (what `derived.structure` reports): an error naming the problem `p`
/// when it is still there.
fn structure_holds(store: &Store, c: &str, n: &str, p: &str) -> Result<(), RepairError> {
    let structure = store.derived().structure(c, n).map_err(repair_err)?;
    match structure
        .into_iter()
        .flat_map(|s| s.problems)
        .find(|q| q.code == p)
    {
        None => Ok(()),
        Some(q) => Err(RepairError::Validation(format!(
            "index {c}/{n} still has {p}: {}",
            q.summary
        ))),
    }
}

/// `derived_restructure`: repairs an index's structural problem in place (an HNSW graph re-linked, its tombstones
/// compacted); validated by measuring the structure again.
pub struct Restructure {
    pub(crate) store: Arc<Store>,
}

impl Restructure {
    fn what(issue: &Issue) -> Result<(String, String, String), RepairError> {
        let (c, n) =
            target(issue).ok_or_else(|| RepairError::NotApplicable("no index named".into()))?;
        let p = evidence(issue, "problem")
            .ok_or_else(|| RepairError::NotApplicable("no structural problem named".into()))?;
        Ok((c, n, p))
    }
}

impl RepairStrategy for Restructure {
    fn name(&self) -> &str {
        "derived_restructure"
    }
    fn cost(&self) -> RepairCost {
        RepairCost::InPlace
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        issue.code == DERIVED_STRUCTURE && Self::what(issue).is_ok()
    }
    fn estimate(&self, _issue: &Issue) -> Estimate {
        est(20_000 + self.store.count() as u64 * 2)
    }
    fn backup(&self, _issue: &Issue) -> Result<Backup, RepairError> {
        Ok(Backup {
            location: "none needed (an index is derived from the table; a failed repair is followed by a rebuild)"
                .into(),
            bytes: 0,
        })
    }
    fn repair(&self, issue: &Issue) -> Result<RepairReport, RepairError> {
        let (c, n, p) = Self::what(issue)?;
        let (done, _) = self
            .store
            .derived()
            .repair_structure(&c, &n, &p)
            .map_err(repair_err)?;
        Ok(RepairReport {
            actions: vec![format!("index {c}/{n}, {p}: {done}")],
            data_loss: DataLoss::None,
        })
    }
    fn validate(&self, issue: &Issue) -> Result<(), RepairError> {
        let (c, n, p) = Self::what(issue)?;
        structure_holds(&self.store, &c, &n, &p)
    }
    fn rollback(&self, _issue: &Issue, _backup: &Backup) -> Result<(), RepairError> {
        Ok(())
    }
}

/// `derived_rebuild`: rebuilds the index from the table (beside the old state: the index swaps in the new one when
/// it is complete); refused while the store is degraded.
pub struct Rebuild {
    pub(crate) store: Arc<Store>,
}

impl RepairStrategy for Rebuild {
    fn name(&self) -> &str {
        "derived_rebuild"
    }
    fn cost(&self) -> RepairCost {
        RepairCost::Rebuild
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        [DERIVED_DAMAGED, STALE_DERIVED, DERIVED_STRUCTURE].contains(&issue.code.as_str())
            && target(issue).is_some()
    }
    fn estimate(&self, _issue: &Issue) -> Estimate {
        est(100_000 + self.store.count() as u64 * 20)
    }
    fn backup(&self, _issue: &Issue) -> Result<Backup, RepairError> {
        if self.store.degraded() {
            return Err(RepairError::Unrecoverable(
                "not rebuilt while the store is degraded (acknowledged records lost): a rebuild would bake the \
                 loss in"
                    .into(),
            ));
        }
        Ok(Backup {
            location: "none needed (an index is derived from the table)".into(),
            bytes: 0,
        })
    }
    fn repair(&self, issue: &Issue) -> Result<RepairReport, RepairError> {
        let (c, n) =
            target(issue).ok_or_else(|| RepairError::NotApplicable("no index named".into()))?;
        let lsn = self
            .store
            .derived()
            .rebuild(&self.store, &c, &n)
            .map_err(repair_err)?;
        Ok(RepairReport {
            actions: vec![format!("rebuilt index {c}/{n} from the table at LSN {lsn}")],
            data_loss: DataLoss::None,
        })
    }
    fn validate(&self, issue: &Issue) -> Result<(), RepairError> {
        let (c, n) =
            target(issue).ok_or_else(|| RepairError::NotApplicable("no index named".into()))?;
        let (truth, a) = self
            .store
            .derived()
            .check(&self.store, &c, &n, AGREEMENT_SAMPLE, now_us())
            .map_err(repair_err)?;
        if a.agrees() {
            // A structural problem is repaired only if the structure check no longer finds it: a rebuild that
            // reproduces the same graph agrees with the table and still leaves the problem there.
            match (issue.code == DERIVED_STRUCTURE, evidence(issue, "problem")) {
                (true, Some(p)) => structure_holds(&self.store, &c, &n, &p),
                _ => Ok(()),
            }
        } else {
            Err(RepairError::Validation(format!(
                "index {c}/{n} still disagrees with the table at LSN {}: {}",
                truth.lsn,
                a.damage
                    .iter()
                    .chain(&a.disagreements)
                    .take(4)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )))
        }
    }
    fn rollback(&self, _issue: &Issue, _backup: &Backup) -> Result<(), RepairError> {
        Ok(())
    }
}

/// The checks for the store's subject.
pub fn checks(store: &Arc<Store>) -> Vec<Arc<dyn HealthCheck>> {
    vec![
        Arc::new(LagCheck {
            store: store.clone(),
        }),
        Arc::new(AgreementCheck {
            store: store.clone(),
            scrub: false,
            runs: AtomicU64::new(0),
        }),
        Arc::new(AgreementCheck {
            store: store.clone(),
            scrub: true,
            runs: AtomicU64::new(0),
        }),
        Arc::new(StructureCheck {
            store: store.clone(),
        }),
    ]
}

/// The strategies for the store's subject.
pub fn strategies(store: &Arc<Store>) -> Vec<Arc<dyn RepairStrategy>> {
    vec![
        Arc::new(CatchUp {
            store: store.clone(),
        }),
        Arc::new(Restructure {
            store: store.clone(),
        }),
        Arc::new(Rebuild {
            store: store.clone(),
        }),
    ]
}
