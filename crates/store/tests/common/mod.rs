//! Helpers shared by the store's integration tests: a small configuration (tiny segments and parity groups, so
//! every file kind appears after a few hundred documents), a document per number, and running one check or one
//! repair through a `StoreSubject` the way the engine would.
#![allow(dead_code)]

use heal::check::CheckContext;
use heal::{Clock, Subject, SystemClock, Tier};
use std::path::Path;
use std::sync::Arc;

use store::{Document, Store, StoreConfig, StoreSubject};

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

pub fn flip(path: &Path, offset: u64, len: usize) {
    let mut b = std::fs::read(path).unwrap();
    for x in &mut b[offset as usize..offset as usize + len] {
        *x ^= 0x5a;
    }
    std::fs::write(path, b).unwrap();
}

pub fn fill(s: &Store, n: usize) {
    for i in 0..n {
        s.put(&format!("f{i:04}"), doc(i)).unwrap();
    }
}

pub fn all_there(s: &Store, n: usize) {
    for i in 0..n {
        assert_eq!(s.get(&format!("f{i:04}")).unwrap(), Some(doc(i)), "f{i:04}");
    }
}

pub fn engine_over(subject: Arc<dyn Subject>) -> (heal::engine::Engine, heal::SimClock) {
    use heal::Clock;
    let clock = heal::SimClock::new(SystemClock::new().now());
    let engine = heal::engine::Engine::new(
        subject,
        Arc::new(heal::learn::MemoryKnowledgeBase::new()),
        Arc::new(clock.clone()),
        heal::config::EngineConfig::default(),
    )
    .unwrap();
    (engine, clock)
}
