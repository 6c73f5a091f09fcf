//! Damage to the store's files — torn tails, flipped bytes, deleted files, damaged sidecars, the open segment and its
//! mirror — found by open or the checks, located precisely, and repaired from redundancy or the verified table.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use heal::{Subject, SystemClock, Tier};
use store::{Store, StoreConfig, StoreError, StoreSubject};

mod common;
use common::*;

fn issue_of<'a>(issues: &'a [heal::Issue], code: &str, file: &str) -> &'a heal::Issue {
    issues
        .iter()
        .find(|i| i.code == code && i.location.file.as_deref() == Some(file))
        .unwrap_or_else(|| panic!("no {code} in {file}: {issues:?}"))
}

fn a_full_open_segment_damaged_in_both_copies_does_not_wedge_writes_(same: bool) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    fill(&s, 10);
    let (id, _) = s.open_segment();
    damage_record_in_both_copies(dir.path(), id, 3, same);
    // Keep writing well past segment_bytes_max: the damaged segment must not be sealed, and no write may fail.
    for i in 10..120 {
        s.put(&format!("f{i:04}"), doc(i))
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
    }
    assert_ne!(s.open_segment().0, id, "the damaged segment was replaced");
    assert!(
        !dir.path().join(format!("wal/{id:016}.seg")).exists(),
        "the damaged segment is gone, not sealed with parity over its damage"
    );
    all_there(&s, 120);
    let scrub = run_check(&StoreSubject::new(Arc::new(s)), Tier::Comprehensive);
    assert!(scrub.passed, "{:?}", scrub.issues);
    let s = Store::open(dir.path(), small()).unwrap();
    assert!(
        s.recovery_report().lost.is_empty(),
        "{:?}",
        s.recovery_report()
    );
    assert_eq!(s.count(), 120);
    all_there(&s, 120);
}

/// Flips a byte inside record `k` (0-based) of the open segment, in both the main copy and the mirror (the same
/// byte if `same`, so both copies still agree; else different bytes). Returns the record's offset.
fn damage_record_in_both_copies(dir: &Path, id: u64, k: usize, same: bool) -> u64 {
    let seg = dir.join(format!("wal/{id:016}.seg"));
    let at = record_offsets(&std::fs::read(&seg).unwrap());
    for (e, d) in [("seg", 12), ("mir", if same { 12 } else { 14 })] {
        flip(&dir.join(format!("wal/{id:016}.{e}")), at[k] as u64 + d, 1);
    }
    at[k] as u64
}

/// 20 documents in the open segment; copy `torn` is cut in the middle of record 10 and copy `flipped` has a byte of
/// record 10 flipped. Records 11..=20 are intact in `flipped`: they were acknowledged and must survive; record 10 is
/// damaged in both copies with valid records after it, so it is acknowledged data lost and must be reported as such.
fn torn_copy_and_damaged_twin_keep_the_later_records(torn: &str, flipped: &str) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    fill(&s, 20);
    let (id, _) = s.open_segment();
    assert!(s.immutable_files().is_empty(), "all in the open segment");
    s.close().unwrap();
    let path = |e: &str| dir.path().join(format!("wal/{id:016}.{e}"));
    let at = record_offsets(&std::fs::read(path("seg")).unwrap());
    assert_eq!(at.len(), 20);
    let r10 = at[9] as u64;
    let mut b = std::fs::read(path(torn)).unwrap();
    b.truncate(r10 as usize + 5);
    std::fs::write(path(torn), b).unwrap();
    flip(&path(flipped), r10 + 12, 1);
    let before: Vec<Vec<u8>> = ["seg", "mir"]
        .iter()
        .map(|e| std::fs::read(path(e)).unwrap())
        .collect();

    let s = Store::open(dir.path(), small()).unwrap();
    let r = s.recovery_report();
    assert!(
        r.torn_tail.is_none(),
        "acknowledged records passed off as a torn tail: {r:?}"
    );
    assert_eq!(r.lost.len(), 1, "{r:?}");
    let l = &r.lost[0];
    assert_eq!(l.file, format!("wal/{id:016}.seg"));
    assert_eq!(l.offset, Some(r10));
    assert_eq!(l.lsn_range, (10, 10));
    // The segment's identity journal names the one document the lost record wrote.
    assert_eq!(l.ids, Some(vec!["f0009".to_string()]), "{l:?}");
    assert_eq!(s.lost().len(), 1);
    assert_eq!(s.count(), 19);
    for i in 10..20 {
        assert_eq!(
            s.get(&format!("f{i:04}")).unwrap(),
            Some(doc(i)),
            "f{i:04} is intact in one copy"
        );
    }
    for i in 0..9 {
        assert_eq!(
            s.get(&format!("f{i:04}")).unwrap(),
            Some(doc(i)),
            "f{i:04}: no lost record touched it"
        );
    }
    let g = s.get("f0009");
    assert!(matches!(g, Err(StoreError::MayBeStale { .. })), "{g:?}");
    assert!(matches!(s.put("new", doc(1)), Err(StoreError::ReadOnly(_))));
    let issues = StoreSubject::new(Arc::new(s)).drain_issues();
    assert!(
        issues
            .iter()
            .any(|i| i.code == "acknowledged_data_lost" && i.location.lsn_range == Some((10, 10))),
        "{issues:?}"
    );
    assert!(!issues.iter().any(|i| i.code == "torn_tail"), "{issues:?}");
    // Neither copy was cut or rewritten: both stay as evidence.
    for (e, b) in ["seg", "mir"].iter().zip(&before) {
        assert_eq!(&std::fs::read(path(e)).unwrap(), b, "{e} changed");
    }
    // Accepting the loss keeps the 19 survivors, byte-identical, across a reopen.
    let s = Store::open(dir.path(), small()).unwrap();
    s.accept_loss().unwrap();
    drop(s);
    let s = Store::open(dir.path(), small()).unwrap();
    assert!(s.recovery_report().lost.is_empty());
    assert_eq!(s.count(), 19);
    for i in (0..20).filter(|&i| i != 9) {
        assert_eq!(s.get(&format!("f{i:04}")).unwrap(), Some(doc(i)));
    }
}

fn record_offsets(b: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 32;
    // Up to the zero-filled space past the last record (no record has length 0).
    while pos + 8 <= b.len() && b[pos..pos + 4] != [0; 4] {
        out.push(pos);
        pos += 8 + u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap()) as usize;
    }
    out
}

/// Writes `bytes` at the log's durable end `len` of a copy's bytes `b`, where a commit cut short by a crash leaves
/// them: over the zero-filled space past the records, or appended when there is none.
fn write_at_end(b: &mut Vec<u8>, len: u64, bytes: &[u8]) {
    let at = len as usize;
    if b.len() < at + bytes.len() {
        b.resize(at + bytes.len(), 0);
    }
    b[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Offsets of the records of an open segment's bytes (walking the length fields of an intact copy).
/// One copy (`seg` or `mir`) of `s`'s open segment: its path relative to `dir`, its path, and its records' offsets.
fn open_copy(s: &Store, dir: &Path, ext: &str) -> (String, std::path::PathBuf, Vec<usize>) {
    let (id, _) = s.open_segment();
    let rel = format!("wal/{id:016}.{ext}");
    let path = dir.join(&rel);
    let at = record_offsets(&std::fs::read(&path).unwrap());
    (rel, path, at)
}

#[test]
fn torn_tail_is_cut_and_reported_and_acknowledged_data_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    for i in 0..5 {
        s.put(&format!("a{i}"), doc(i)).unwrap();
    }
    let (id, len) = s.open_segment();
    drop(s);
    let seg = dir.path().join(format!("wal/{id:016}.seg"));
    let mir = dir.path().join(format!("wal/{id:016}.mir"));
    // A half-written record in both copies, as a crash mid-commit leaves.
    for p in [&seg, &mir] {
        let mut b = std::fs::read(p).unwrap();
        write_at_end(&mut b, len, &[200, 0, 0, 0, 1, 2, 3, 4, 5]);
        std::fs::write(p, b).unwrap();
    }
    let s = Store::open(dir.path(), small()).unwrap();
    let r = s.recovery_report();
    let t = r.torn_tail.clone().expect("torn tail reported");
    assert_eq!((t.offset, t.bytes), (len, 9));
    assert_eq!(s.count(), 5);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len);
    let subject = StoreSubject::new(Arc::new(s));
    let issues = subject.drain_issues();
    assert!(
        issues
            .iter()
            .any(|i| i.code == "torn_tail" && i.location.offset == Some(len)),
        "{issues:?}"
    );
}

#[test]
fn damage_to_the_open_segment_is_repaired_from_its_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    for i in 0..5 {
        s.put(&format!("a{i}"), doc(i)).unwrap();
    }
    let (id, _) = s.open_segment();
    let seg = dir.path().join(format!("wal/{id:016}.seg"));
    flip(&seg, 60, 4);
    let subject = StoreSubject::new(s.clone());
    let out = run_check(&subject, Tier::Deep);
    assert!(!out.passed);
    let i = out
        .issues
        .iter()
        .find(|i| i.code == "wal_record_damaged")
        .expect("damage found");
    assert_eq!(
        i.location.file.as_deref(),
        Some(format!("wal/{id:016}.seg").as_str())
    );
    repair(&subject, i).unwrap();
    assert!(run_check(&subject, Tier::Comprehensive).passed);
    drop(subject);
    let s = Arc::into_inner(s).unwrap();
    drop(s);
    // Damage met on open is undone on open too.
    flip(&seg, 60, 4);
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(s.recovery_report().records_from_mirror, 1);
    assert_eq!(s.get("a0").unwrap(), Some(doc(0)));
}

#[test]
fn a_zeroed_block_of_a_sealed_segment_is_rebuilt_from_parity() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    for i in 0..100 {
        s.put(&format!("b{i:03}"), doc(i)).unwrap();
    }
    let files = s.immutable_files();
    let f = files
        .iter()
        .find(|f| f.rel.ends_with(".seg"))
        .expect("a sealed segment")
        .clone();
    drop(s);
    let path = dir.path().join(&f.rel);
    let mut b = std::fs::read(&path).unwrap();
    b[512..1024].fill(0);
    std::fs::write(&path, &b).unwrap();
    // Open rebuilds it in memory and queues the issue; every document reads back exactly.
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let r = s.recovery_report();
    assert_eq!(r.blocks_rebuilt, vec![(f.rel.clone(), 1)]);
    for i in 0..100 {
        assert_eq!(s.get(&format!("b{i:03}")).unwrap(), Some(doc(i)));
    }
    let subject = StoreSubject::new(s.clone());
    let issues = subject.drain_issues();
    let i = issues
        .iter()
        .find(|i| i.code == "block_checksum")
        .expect("queued");
    assert_eq!(i.location.file.as_deref(), Some(f.rel.as_str()));
    assert_eq!(i.location.offset, Some(512));
    // The scrub sees it too, and the strategy repairs the disk copy.
    assert!(!run_check(&subject, Tier::Comprehensive).passed);
    repair(&subject, i).unwrap();
    assert!(run_check(&subject, Tier::Comprehensive).passed);
    assert_ne!(std::fs::read(&path).unwrap()[512..1024], [0u8; 512]);
}

#[test]
fn a_damaged_manifest_copy_is_restored_from_its_twin() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    for i in 0..50 {
        s.put(&format!("m{i}"), doc(i)).unwrap();
    }
    flip(&dir.path().join("MANIFEST-B"), 10, 3);
    let subject = StoreSubject::new(s.clone());
    let out = run_check(&subject, Tier::Shallow);
    let i = out
        .issues
        .iter()
        .find(|i| i.code == "manifest_copy_damaged")
        .expect("found");
    assert_eq!(i.resource, "MANIFEST-B");
    repair(&subject, i).unwrap();
    assert!(
        run_check(&subject, Tier::Shallow).passed,
        "{:?}",
        run_check(&subject, Tier::Shallow)
    );
    drop(subject);
    drop(Arc::into_inner(s).unwrap());
    // On open, a damaged copy is restored from the other.
    std::fs::write(dir.path().join("MANIFEST-A"), b"garbage").unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(
        s.recovery_report().manifest_copies_restored,
        vec!["MANIFEST-A".to_string()]
    );
    assert_eq!(s.count(), 50);
}

#[test]
fn a_damaged_snapshot_block_is_rebuilt_and_a_damaged_sidecar_regenerated() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    for i in 0..800 {
        s.put(&format!("s{}", i % 150), doc(i)).unwrap();
    }
    s.compact().unwrap();
    let snap = s
        .immutable_files()
        .into_iter()
        .find(|f| f.rel.ends_with(".snap"))
        .expect("snapshot");
    drop(s);
    flip(&dir.path().join(&snap.rel), 700, 20);
    flip(&dir.path().join(&snap.par_rel), 5, 1);
    // Sidecar header damaged too: the snapshot's own entry checksums catch the damaged entry, and open is degraded
    // (the snapshot's documents refused as possibly stale, never served wrong), leaving the files as they are.
    let s = Store::open(dir.path(), small()).unwrap();
    let lost = s.recovery_report().lost;
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].file, snap.rel);
    assert!(matches!(s.get("s1"), Err(StoreError::MayBeStale { .. })));
    drop(s);
    // Once the redundancy is back (here: the sidecar), a reopen recovers everything.
    flip(&dir.path().join(&snap.par_rel), 5, 1);
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    assert_eq!(s.recovery_report().blocks_rebuilt.len(), 1);
    let subject = StoreSubject::new(s.clone());
    let i = subject
        .drain_issues()
        .into_iter()
        .find(|i| i.code == "block_checksum")
        .unwrap();
    repair(&subject, &i).unwrap();
    flip(&dir.path().join(&snap.par_rel), 5, 1);
    let out = run_check(&subject, Tier::Comprehensive);
    let i = out
        .issues
        .iter()
        .find(|i| i.code == "parity_damaged")
        .expect("found");
    repair(&subject, i).unwrap();
    assert!(run_check(&subject, Tier::Comprehensive).passed);
}

#[test]
fn quick_check_samples_blocks_and_finds_damage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        quick_check_sample_blocks: 10_000,
        ..small()
    };
    let s = Arc::new(Store::open(dir.path(), cfg).unwrap());
    for i in 0..200 {
        s.put(&format!("q{i:03}"), doc(i)).unwrap();
    }
    let subject = StoreSubject::new(s.clone());
    let first = run_check(&subject, Tier::Shallow);
    assert!(
        first.passed && !first.message.contains(" 0 sampled"),
        "{first:?} {:?}",
        s.stats()
    );
    let f = s
        .immutable_files()
        .into_iter()
        .find(|f| f.rel.ends_with(".seg"))
        .unwrap();
    assert!(
        run_check(&subject, Tier::Shallow)
            .message
            .contains("sampled")
    );
    flip(&dir.path().join(&f.rel), 1030, 1);
    let out = run_check(&subject, Tier::Shallow);
    let i = out
        .issues
        .iter()
        .find(|i| i.code == "block_checksum")
        .unwrap_or_else(|| panic!("{out:?}"));
    assert_eq!(i.location.offset, Some(1024));
}

#[test]
fn a_deleted_open_segment_or_mirror_is_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    fill(&s, 30);
    let (id, _) = s.open_segment();
    drop(s);
    std::fs::remove_file(dir.path().join(format!("wal/{id:016}.seg"))).unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(s.count(), 30);
    all_there(&s, 30);
    drop(s);
    std::fs::remove_file(dir.path().join(format!("wal/{id:016}.mir"))).unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    assert!(s.recovery_report().mirror_rewritten);
    s.put("more", doc(1)).unwrap();
    drop(s);
    // The mirror rewritten on open is complete: losing the main copy again loses nothing.
    std::fs::remove_file(dir.path().join(format!("wal/{id:016}.seg"))).unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(s.count(), 31);
}

#[test]
fn files_deleted_while_running_are_found_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    fill(&s, 120);
    let subject = StoreSubject::new(s.clone());
    let (id, _) = s.open_segment();
    let sealed = s
        .immutable_files()
        .into_iter()
        .find(|f| f.rel.ends_with(".seg"))
        .unwrap();
    std::fs::remove_file(dir.path().join(format!("wal/{id:016}.seg"))).unwrap();
    std::fs::remove_file(dir.path().join(&sealed.rel)).unwrap();
    std::fs::remove_file(dir.path().join("LOCK")).unwrap();
    let out = run_check(&subject, Tier::Comprehensive);
    assert!(!out.passed);
    for i in &out.issues {
        repair(&subject, i).unwrap_or_else(|e| panic!("{}: {e}", i.code));
    }
    let out = run_check(&subject, Tier::Comprehensive);
    assert!(out.passed, "{out:?}");
    let out = run_check(&subject, Tier::Shallow);
    let i = out
        .issues
        .iter()
        .find(|i| i.code == "lock_file_damaged")
        .expect("LOCK loss found");
    repair(&subject, i).unwrap();
    assert!(run_check(&subject, Tier::Shallow).passed);
    // The LOCK at the path is held again: a second opener is refused.
    assert!(matches!(
        Store::open(dir.path(), small()),
        Err(StoreError::Locked { .. })
    ));
    s.put("after", doc(0)).unwrap();
    drop(subject);
    drop(Arc::into_inner(s).unwrap());
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(s.count(), 121);
    all_there(&s, 120);
}

#[test]
fn both_manifest_copies_lost_are_rebuilt_from_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    fill(&s, 150);
    s.compact().unwrap();
    for i in 150..200 {
        s.put(&format!("f{i:04}"), doc(i)).unwrap();
    }
    drop(s);
    std::fs::remove_file(dir.path().join("MANIFEST-A")).unwrap();
    std::fs::write(dir.path().join("MANIFEST-B"), b"junk").unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(s.recovery_report().manifest_copies_restored.len(), 2);
    assert_eq!(s.count(), 200);
    all_there(&s, 200);
}

#[test]
fn leftovers_of_an_interrupted_compaction_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    fill(&s, 40);
    drop(s);
    std::fs::write(
        dir.path().join("snap/0000000000000040.snap"),
        b"half a snapshot",
    )
    .unwrap();
    std::fs::write(dir.path().join("wal/0000000000000099.seg"), b"x").unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    let r = s.recovery_report();
    assert_eq!(r.orphans_removed.len(), 2, "{r:?}");
    assert_eq!(s.count(), 40);
    all_there(&s, 40);
}

#[test]
fn damage_beyond_parity_while_running_is_repaired_from_the_verified_table() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    fill(&s, 120);
    let f = s
        .immutable_files()
        .into_iter()
        .find(|f| f.rel.ends_with(".seg"))
        .unwrap();
    flip(&dir.path().join(&f.rel), 0, 512 * 3 + 10); // 4 blocks of one group: 2 recovery blocks cannot undo it
    let subject = StoreSubject::new(s.clone());
    let out = run_check(&subject, Tier::Comprehensive);
    let i = out
        .issues
        .iter()
        .find(|i| i.code == "block_checksum")
        .expect("found");
    assert!(
        i.evidence
            .contains(&("rebuildable".to_string(), "false".to_string())),
        "{i:?}"
    );
    let chosen: Vec<String> = subject
        .strategies()
        .iter()
        .filter(|st| st.can_repair(i))
        .map(|st| st.name().to_string())
        .collect();
    assert_eq!(chosen, ["compact"]);
    repair(&subject, i).unwrap();
    assert!(run_check(&subject, Tier::Comprehensive).passed);
    drop(subject);
    drop(Arc::into_inner(s).unwrap());
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(s.count(), 120);
    all_there(&s, 120);
}

#[test]
fn recovery_does_not_cut_records_intact_in_the_mirror_as_a_torn_tail_of_the_main_copy() {
    torn_copy_and_damaged_twin_keep_the_later_records("seg", "mir");
}

#[test]
fn recovery_does_not_cut_records_intact_in_the_main_copy_as_a_torn_tail_of_the_mirror() {
    torn_copy_and_damaged_twin_keep_the_later_records("mir", "seg");
}

#[test]
fn a_record_damaged_in_both_open_segment_copies_while_running_is_repaired_from_the_verified_table()
{
    use heal::Clock;
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    fill(&s, 12);
    let (id, _) = s.open_segment();
    assert!(s.immutable_files().is_empty(), "all in the open segment");
    let off = damage_record_in_both_copies(dir.path(), id, 5, false);

    let subject = StoreSubject::new(s.clone());
    // The scrub finds it and says no copy holds it.
    let out = run_check(&subject, Tier::Comprehensive);
    let found = out
        .issues
        .iter()
        .find(|i| i.code == "wal_record_damaged")
        .unwrap_or_else(|| panic!("{:?}", out.issues));
    assert_eq!(found.location.offset, Some(off));
    // No file holds it any more, but the verified table does: damage to repair, not data at risk.
    assert!(!found.data_at_risk, "{found:?}");
    assert!(
        found.evidence.contains(&(
            "held_by".to_string(),
            "the verified in-memory table".to_string()
        )),
        "{found:?}"
    );
    let chosen: Vec<String> = subject
        .strategies()
        .iter()
        .filter(|st| st.can_repair(found))
        .map(|st| st.name().to_string())
        .collect();
    assert_eq!(chosen, ["compact"]);

    let subject: Arc<dyn Subject> = Arc::new(subject);
    let clock = heal::SimClock::new(SystemClock::new().now());
    let mut engine = heal::engine::Engine::new(
        subject.clone(),
        Arc::new(heal::learn::MemoryKnowledgeBase::new()),
        Arc::new(clock.clone()),
        heal::config::EngineConfig::default(),
    )
    .unwrap();
    engine.run_tier(Tier::Comprehensive);
    let mut attempts = Vec::new();
    let mut escalated = Vec::new();
    for _ in 0..3 {
        clock.advance(60_000_000);
        let sum = engine.run_cycle();
        attempts.extend(sum.attempts);
        escalated.extend(sum.escalations);
    }
    assert!(escalated.is_empty(), "escalated: {escalated:?}");
    assert!(
        attempts.iter().any(|a| a.attempt.strategy == "compact"
            && a.attempt.outcome == heal::learn::AttemptOutcome::Succeeded),
        "{attempts:?}"
    );
    assert!(
        attempts
            .iter()
            .all(|a| a.attempt.outcome == heal::learn::AttemptOutcome::Succeeded),
        "{attempts:?}"
    );
    assert!(engine.active_incidents().is_empty());
    let scrub = run_check(&StoreSubject::new(s.clone()), Tier::Comprehensive);
    assert!(scrub.passed, "{:?}", scrub.issues);
    assert_eq!(s.count(), 12);
    all_there(&s, 12);
    s.put("after", doc(99)).unwrap();
    drop(engine);
    drop(subject);
    drop(Arc::into_inner(s).unwrap());

    let s = Store::open(dir.path(), small()).unwrap();
    let r = s.recovery_report();
    assert!(r.lost.is_empty() && r.torn_tail.is_none(), "{r:?}");
    assert_eq!(s.count(), 13);
    all_there(&s, 12);
    assert_eq!(s.get("after").unwrap(), Some(doc(99)));
}

#[test]
fn a_full_open_segment_damaged_in_both_copies_does_not_wedge_writes() {
    for same in [false, true] {
        a_full_open_segment_damaged_in_both_copies_does_not_wedge_writes_(same);
    }
}

#[test]
fn open_segment_damage_is_located_by_file_offset_record_length_and_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    fill(&s, 12);
    let (id, len) = s.open_segment();
    assert!(s.immutable_files().is_empty(), "all in the open segment");
    let (seg_rel, mir_rel) = (format!("wal/{id:016}.seg"), format!("wal/{id:016}.mir"));
    let seg = dir.path().join(&seg_rel);
    let mir = dir.path().join(&mir_rel);
    let at: Vec<u64> = record_offsets(&std::fs::read(&seg).unwrap())
        .into_iter()
        .map(|o| o as u64)
        .chain([len])
        .collect();
    assert_eq!(at.len(), 13);
    let subject = StoreSubject::new(s.clone());
    let deep = |subject: &StoreSubject| run_check(subject, Tier::Comprehensive).issues;

    // One copy damaged: the record's LSN comes from its intact twin, the length is that record's alone.
    flip(&seg, at[3] + 12, 1);
    flip(&mir, at[7] + 20, 1);
    let issues = deep(&subject);
    let i = issue_of(&issues, "wal_record_damaged", &seg_rel);
    assert_eq!(
        (i.location.offset, i.location.len, i.location.lsn_range),
        (Some(at[3]), Some(at[4] - at[3]), Some((4, 4))),
        "{i:?}"
    );
    assert!(!i.data_at_risk, "the mirror holds it: {i:?}");
    let m = issue_of(&issues, "mirror_damaged", &mir_rel);
    assert_eq!(
        (m.location.offset, m.location.len, m.location.lsn_range),
        (Some(at[7]), Some(at[8] - at[7]), Some((8, 8))),
        "{m:?}"
    );
    repair(&subject, i).unwrap();
    assert!(run_check(&subject, Tier::Comprehensive).passed);

    // Both copies of one record damaged: the LSN lies between its intact neighbours, the length ends at the next
    // record that verifies, not at the segment's end.
    let off = damage_record_in_both_copies(dir.path(), id, 5, false);
    let issues = deep(&subject);
    for f in [&seg_rel, &mir_rel] {
        let code = if f == &seg_rel {
            "wal_record_damaged"
        } else {
            "mirror_damaged"
        };
        let i = issue_of(&issues, code, f);
        assert_eq!(
            (i.location.offset, i.location.len, i.location.lsn_range),
            (Some(off), Some(at[6] - at[5]), Some((6, 6))),
            "{i:?}"
        );
        // Every copy on disk is damaged, but the verified table holds the record: not at risk.
        assert!(
            !i.data_at_risk
                && i.evidence.contains(&(
                    "held_by".to_string(),
                    "the verified in-memory table".to_string()
                ))
                && i.summary.contains("LSN 6"),
            "{i:?}"
        );
    }
    let i = issue_of(&issues, "wal_record_damaged", &seg_rel).clone();
    repair(&subject, &i).unwrap(); // compaction from the verified table
    assert!(run_check(&subject, Tier::Comprehensive).passed);
    all_there(&s, 12);

    // The last record damaged in both copies: the run reaches the durable end, whose LSN the store knows.
    s.put("x1", doc(1)).unwrap();
    let lsn = s.put("x2", doc(2)).unwrap();
    let (id, len) = s.open_segment();
    let seg_rel = format!("wal/{id:016}.seg");
    let at = record_offsets(&std::fs::read(dir.path().join(&seg_rel)).unwrap());
    let last = *at.last().unwrap() as u64;
    for e in ["seg", "mir"] {
        flip(&dir.path().join(format!("wal/{id:016}.{e}")), last + 12, 1);
    }
    let issues = deep(&subject);
    let i = issue_of(&issues, "wal_record_damaged", &seg_rel);
    assert_eq!(
        (i.location.offset, i.location.len, i.location.lsn_range),
        (Some(last), Some(len - last), Some((lsn, lsn))),
        "{i:?}"
    );
}

#[test]
fn the_incremental_check_locates_damage_in_both_copies_from_its_mark() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    fill(&s, 4);
    let subject = StoreSubject::new(s.clone());
    assert!(run_check(&subject, Tier::Deep).passed);
    // New records after the incremental mark; the first of them damaged in both copies.
    for i in 4..8 {
        s.put(&format!("f{i:04}"), doc(i)).unwrap();
    }
    let (id, _) = s.open_segment();
    let at = record_offsets(&std::fs::read(dir.path().join(format!("wal/{id:016}.seg"))).unwrap());
    let off = damage_record_in_both_copies(dir.path(), id, 4, false);
    let out = run_check(&subject, Tier::Deep);
    let i = issue_of(
        &out.issues,
        "wal_record_damaged",
        &format!("wal/{id:016}.seg"),
    );
    assert_eq!(
        (i.location.offset, i.location.len, i.location.lsn_range),
        (Some(off), Some((at[5] - at[4]) as u64), Some((5, 5))),
        "{i:?}"
    );
}

#[test]
fn torn_tails_are_located_with_the_lsns_they_may_carry() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    fill(&s, 5);
    let (id, len) = s.open_segment();
    let seg_rel = format!("wal/{id:016}.seg");
    let seg = dir.path().join(&seg_rel);
    let mir = dir.path().join(format!("wal/{id:016}.mir"));
    // The first 30 bytes of a record LSN 6 (as a write cut by a crash leaves it), in the main copy only, while
    // running: the checks report it, with the LSN its header names.
    let b = std::fs::read(&seg).unwrap();
    let mut partial = b[32..62].to_vec();
    partial[8..16].copy_from_slice(&6u64.to_le_bytes());
    let mut with = b.clone();
    write_at_end(&mut with, len, &partial);
    std::fs::write(&seg, &with).unwrap();
    let s = Arc::new(s);
    let subject = StoreSubject::new(s.clone());
    for tier in [Tier::Shallow, Tier::Deep] {
        let out = run_check(&subject, tier);
        let t = issue_of(&out.issues, "torn_tail", &seg_rel);
        assert_eq!(
            (t.location.offset, t.location.len, t.location.lsn_range),
            (Some(len), Some(30), Some((6, 6))),
            "{tier:?}: {t:?}"
        );
    }
    drop(subject);
    drop(Arc::into_inner(s).unwrap());

    // On open: a header too short to name an LSN still lies above the last durable one.
    let mut m = std::fs::read(&mir).unwrap();
    write_at_end(&mut m, len, &[200, 0, 0, 0, 1, 2, 3, 4, 5]);
    std::fs::write(&mir, m).unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    let t = s.recovery_report().torn_tail.expect("torn tail");
    assert_eq!((t.offset, t.bytes, t.lsn_range), (len, 30, (6, 6)), "{t:?}");
    let issues = StoreSubject::new(Arc::new(s)).drain_issues();
    let i = issue_of(&issues, "torn_tail", &seg_rel);
    assert_eq!(
        (i.location.offset, i.location.len, i.location.lsn_range),
        (Some(len), Some(30), Some((6, 6))),
        "{i:?}"
    );
}

#[test]
fn a_record_restored_from_the_mirror_on_open_is_reported_with_its_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    fill(&s, 6);
    let (seg_rel, seg, at) = open_copy(&s, dir.path(), "seg");
    drop(s);
    flip(&seg, at[2] as u64 + 12, 1);
    let s = Store::open(dir.path(), small()).unwrap();
    let issues = StoreSubject::new(Arc::new(s)).drain_issues();
    let i = issue_of(&issues, "wal_record_damaged", &seg_rel);
    assert_eq!(
        (i.location.offset, i.location.len, i.location.lsn_range),
        (
            Some(at[2] as u64),
            Some((at[3] - at[2]) as u64),
            Some((3, 3))
        ),
        "{i:?}"
    );
}

#[test]
fn without_a_mirror_a_damaged_record_is_located_and_the_check_ends() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        mirror_open_segment: false,
        ..small()
    };
    let s = Arc::new(Store::open(dir.path(), cfg).unwrap());
    fill(&s, 6);
    let (seg_rel, seg, at) = open_copy(&s, dir.path(), "seg");
    flip(&seg, at[2] as u64 + 12, 1);
    // Before the fix this check never returned (a damaged record with no mirror advanced the scan by 0 bytes).
    let out = run_check(&StoreSubject::new(s.clone()), Tier::Comprehensive);
    let i = issue_of(&out.issues, "wal_record_damaged", &seg_rel);
    assert_eq!(
        (i.location.offset, i.location.len, i.location.lsn_range),
        (
            Some(at[2] as u64),
            Some((at[3] - at[2]) as u64),
            Some((3, 3))
        ),
        "{i:?}"
    );
    assert!(
        !i.data_at_risk
            && i.evidence.contains(&(
                "held_by".to_string(),
                "the verified in-memory table".to_string()
            )),
        "no other copy on disk, but the table holds it: {i:?}"
    );
    assert!(!out.issues.iter().any(|i| i.code == "mirror_damaged"));
}

/// A document's in-memory copy damaged (through the store's fault hook; the files are intact): a read fails naming
/// the damage and never returns other bytes, the issue reaches the engine, `restore_snapshot_and_replay` rebuilds
/// the table from the snapshot and the log, and every document reads back identical.
#[test]
fn a_damaged_in_memory_entry_is_never_served_and_is_rebuilt_from_the_snapshot_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let mut model = BTreeMap::new();
    // Documents that end up only in a snapshot, churn that forces compactions, then documents only in the log.
    for i in 0..50 {
        s.put(&format!("s{i:02}"), doc(i)).unwrap();
        model.insert(format!("s{i:02}"), doc(i));
    }
    for i in 0..1200 {
        let id = format!("k{:02}", i % 40);
        s.put(&id, doc(i)).unwrap();
        model.insert(id, doc(i));
    }
    for i in 0..30 {
        s.put(&format!("n{i:02}"), doc(i + 7)).unwrap();
        model.insert(format!("n{i:02}"), doc(i + 7));
    }
    let st = s.stats();
    let snap = st.snapshot_lsn.expect("a snapshot");
    // s07 (LSN 8) only in the snapshot, n03 (LSN 1254) only in the log.
    assert!(snap > 50 && snap < 1254 && st.last_lsn == 1280, "{st:?}");

    // Damage two entries: one whose version lives only in the snapshot, one only in the open segment.
    for id in ["s07", "n03"] {
        assert!(s.fault_flip_table_byte(id, 5));
        match s.get(id) {
            Err(e @ StoreError::Corrupt { .. }) => {
                let m = e.to_string();
                assert!(m.contains(id) && m.contains("fails its checksum"), "{m}");
            }
            other => panic!("{id}: damaged entry must not be served: {other:?}"),
        }
    }
    assert!(
        s.scan(None, 1000).is_err(),
        "a scan must not serve it either"
    );
    assert!(
        s.compact().is_err(),
        "a snapshot of damaged entries is refused"
    );
    let subject = StoreSubject::new(s.clone());
    let scrub = run_check(&subject, Tier::Comprehensive);
    let mm = scrub
        .issues
        .iter()
        .find(|i| i.code == "memory_table_mismatch")
        .unwrap_or_else(|| panic!("{:?}", scrub.issues));
    assert!(
        mm.data_at_risk && mm.summary.contains("2 document(s)"),
        "{mm:?}"
    );
    let queued = subject.drain_issues();
    let q: Vec<_> = queued
        .iter()
        .filter(|i| i.code == "memory_table_mismatch")
        .collect();
    assert!(
        q.iter()
            .any(|i| i.summary.contains("\"s07\"") && i.location.lsn_range == Some((8, 8))),
        "{q:?}"
    );
    assert!(q.iter().any(|i| i.summary.contains("\"n03\"")), "{q:?}");

    // The reads again queue the issue for the engine, which repairs it.
    assert!(s.get("s07").is_err() && s.get("n03").is_err());
    let (mut engine, clock) = engine_over(Arc::new(subject));
    let mut attempts = Vec::new();
    for _ in 0..3 {
        clock.advance(60_000_000);
        attempts.extend(engine.run_cycle().attempts);
    }
    assert!(
        attempts
            .iter()
            .any(|a| a.attempt.strategy == "restore_snapshot_and_replay"
                && a.attempt.outcome == heal::learn::AttemptOutcome::Succeeded),
        "{attempts:?}"
    );
    assert!(engine.active_incidents().is_empty());
    assert_eq!(s.count(), model.len());
    for (id, d) in &model {
        assert_eq!(s.get(id).unwrap().as_ref(), Some(d), "{id}");
    }
    assert_eq!(s.scan(None, 1000).unwrap().len(), model.len());
    assert!(run_check(&StoreSubject::new(s.clone()), Tier::Comprehensive).passed);
    s.put("after", doc(1)).unwrap();
    s.compact().unwrap();
}

#[test]
fn a_mirror_record_damaged_while_closed_is_reported_with_its_location_when_open_rewrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    fill(&s, 6);
    let (mir_rel, mir, at) = open_copy(&s, dir.path(), "mir");
    drop(s);
    flip(&mir, at[4] as u64 + 20, 1);
    let s = Store::open(dir.path(), small()).unwrap();
    assert!(s.recovery_report().mirror_rewritten);
    let issues = StoreSubject::new(Arc::new(s)).drain_issues();
    let i = issue_of(&issues, "mirror_damaged", &mir_rel);
    assert_eq!(
        (i.location.offset, i.location.len, i.location.lsn_range),
        (
            Some(at[4] as u64),
            Some((at[5] - at[4]) as u64),
            Some((5, 5))
        ),
        "{i:?}"
    );
    assert_eq!(
        issues.iter().filter(|i| i.code == "mirror_damaged").count(),
        1,
        "{issues:?}"
    );
}

/// A sealed segment damaged with its parity sidecar gone: the files no longer hold those records, the table does.
/// A reload of the table from the files must refuse (the replay stops at a record no copy can read) rather than
/// drop them from memory, where a compaction would then write their loss into a snapshot.
#[test]
fn a_reload_from_files_missing_records_refuses_and_the_table_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        wal_bytes_max: 1 << 20,
        ..small()
    };
    let s = Store::open(dir.path(), cfg.clone()).unwrap();
    fill(&s, 300);
    let mut pars: Vec<_> = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".seg.par"))
        .collect();
    pars.sort();
    let par = pars.pop().expect("a sealed segment");
    let sealed =
        std::path::PathBuf::from(par.to_string_lossy().trim_end_matches(".par").to_string());
    std::fs::remove_file(&par).unwrap();
    let len = std::fs::metadata(&sealed).unwrap().len();
    flip(&sealed, len / 2, 64);
    let e = s
        .reload_table()
        .expect_err("a replay over unreadable records refuses");
    assert!(e.to_string().contains("cannot be read in any copy"), "{e}");
    all_there(&s, 300);
    // Compaction writes the table, whole, and drops the damaged file.
    s.compact().unwrap();
    let s = {
        drop(s);
        Store::open(dir.path(), cfg).unwrap()
    };
    assert!(s.recovery_report().lost.is_empty());
    all_there(&s, 300);
}
