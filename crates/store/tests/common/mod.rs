//! Helpers shared by the store's integration tests: a small configuration (tiny segments and parity groups, so
//! every file kind appears after a few hundred documents), a document per number, and running one check or one
//! repair through a `StoreSubject` the way the engine would.
#![allow(dead_code)]

use heal::check::CheckContext;
use heal::{Clock, Subject, SystemClock, Tier};
use store::{Document, StoreConfig, StoreSubject};

pub fn small() -> StoreConfig {
    StoreConfig {
        segment_bytes_max: 8 << 10,
        wal_bytes_max: 64 << 10,
        block_bytes: 512,
        parity_data_blocks: 4,
        parity_blocks: 2,
        disk_low_bytes_floor: 0,
        disk_critical_bytes_floor: 0,
        ..StoreConfig::default()
    }
}

/// Document number `i`: text, a 3-dimensional vector and meta, all derived from `i`.
pub fn doc(i: usize) -> Document {
    let mut meta = serde_json::Map::new();
    meta.insert("i".into(), serde_json::json!(i));
    Document {
        text: format!("document number {i} {}", "x".repeat(i % 50)),
        vector: Some(vec![i as f32, 0.5, -1.0]),
        meta: Some(meta),
    }
}

/// Runs the check of `tier` once, as the engine would.
pub fn run_check(subject: &StoreSubject, tier: Tier) -> heal::CheckOutcome {
    let clock = SystemClock::new();
    let check = subject
        .checks()
        .into_iter()
        .find(|c| c.tier() == tier)
        .expect("a check of each tier");
    let ctx = CheckContext {
        clock: &clock,
        deadline: clock.now() + 60_000_000,
    };
    check.run(&ctx)
}

/// The first strategy that can repair `issue`: backup, repair, validate, rolled back if validation fails.
pub fn repair(subject: &StoreSubject, issue: &heal::Issue) -> Result<(), heal::RepairError> {
    let s = subject
        .strategies()
        .into_iter()
        .find(|s| s.can_repair(issue))
        .unwrap_or_else(|| panic!("no strategy for {}", issue.code));
    let b = s.backup(issue)?;
    s.repair(issue)?;
    s.validate(issue).inspect_err(|_| {
        let _ = s.rollback(issue, &b);
    })
}
