//! The store's behaviour through its public API: durability across reopen, limits, the lock, recovery from torn
//! tails and damaged files, group commit, disk space, fsync failure, the health checks and repair strategies, a
//! model check against a `BTreeMap`, and degraded open after damage beyond every redundancy.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use heal::{Subject, SystemClock, Tier};
use proptest::prelude::*;
use store::{Document, ReadOnly, Store, StoreConfig, StoreError, StoreSubject};

mod common;
use common::*;

fn flip(path: &Path, offset: u64, len: usize) {
    let mut b = std::fs::read(path).unwrap();
    for x in &mut b[offset as usize..offset as usize + len] {
        *x ^= 0x5a;
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn documents_survive_reopen_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    assert!(s.recovery_report().created);
    for i in 0..300 {
        assert_eq!(s.put(&format!("d{i:03}"), doc(i)).unwrap(), i as u64 + 1);
    }
    assert_eq!(s.delete("d007").unwrap(), Some(301));
    assert_eq!(s.delete("nope").unwrap(), None);
    assert!(s.stats().rotations > 0, "segments rotated: {:?}", s.stats());
    s.close().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    let r = s.recovery_report();
    assert!(!r.created && !r.previous_holder_crashed, "{r:?}");
    assert_eq!(s.count(), 299);
    assert_eq!(s.get("d042").unwrap(), Some(doc(42)));
    assert_eq!(s.get("d007").unwrap(), None);
    let page = s.scan(Some("d005"), 3).unwrap();
    let ids: Vec<&str> = page.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["d006", "d008", "d009"]);
    assert_eq!(s.put("z", Document::text("t")).unwrap(), 302);
}

#[test]
fn compaction_bounds_the_log_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    for i in 0..1500 {
        s.put(&format!("k{}", i % 200), doc(i)).unwrap();
    }
    let st = s.stats();
    assert!(st.compactions > 0 && st.snapshot_lsn.is_some(), "{st:?}");
    assert!(
        st.wal_bytes <= small().wal_bytes_max + small().segment_bytes_max,
        "{st:?}"
    );
    drop(s);
    let s = Store::open(dir.path(), small()).unwrap();
    assert!(s.recovery_report().previous_holder_crashed);
    assert_eq!(s.count(), 200);
    for k in 0..200 {
        let last = (0..1500).filter(|i| i % 200 == k).max().unwrap();
        assert_eq!(s.get(&format!("k{k}")).unwrap(), Some(doc(last)));
    }
}

#[test]
fn bad_input_gets_clear_user_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    let e = s.put(&"a".repeat(257), Document::text("x")).unwrap_err();
    assert!(
        e.is_user_error() && e.to_string().contains("id_bytes_max = 256"),
        "{e}"
    );
    let e = s.put("", Document::text("x")).unwrap_err();
    assert!(matches!(e, StoreError::InvalidInput(_)), "{e}");
    let e = s
        .put(
            "a",
            Document {
                vector: Some(vec![f32::INFINITY]),
                ..Document::text("x")
            },
        )
        .unwrap_err();
    assert!(
        matches!(e, StoreError::InvalidInput(ref m) if m.contains("finite")),
        "{e}"
    );
    s.put(
        "a",
        Document {
            vector: Some(vec![1.0, 2.0]),
            ..Document::text("x")
        },
    )
    .unwrap();
    let e = s
        .put(
            "b",
            Document {
                vector: Some(vec![1.0]),
                ..Document::text("x")
            },
        )
        .unwrap_err();
    assert!(
        e.is_user_error() && e.to_string().contains("dimension"),
        "{e}"
    );
    let big = "y".repeat(StoreConfig::default().limits.text_bytes_max as usize + 1);
    let e = s.put("c", Document::text(big)).unwrap_err();
    assert!(
        matches!(e, StoreError::TooLarge { what: "text", .. }),
        "{e}"
    );
    assert_eq!(s.count(), 1);
}

#[test]
fn a_second_opener_is_told_who_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    match Store::open(dir.path(), small()) {
        Err(StoreError::Locked { holder }) => {
            assert!(
                holder.contains(&format!("pid {}", std::process::id())),
                "{holder}"
            )
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(s);
    Store::open(dir.path(), small()).unwrap();
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
        b.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 5]);
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
fn concurrent_writers_share_fsyncs_and_all_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        disk_low_bytes_floor: 0,
        disk_critical_bytes_floor: 0,
        ..StoreConfig::default()
    };
    cfg.io.set_latency_us(500);
    let s = Arc::new(Store::open(dir.path(), cfg).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    s.put(&format!("t{t}-{i}"), doc(i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = s.stats();
    assert_eq!(st.records_committed, 320);
    assert!(st.commits < 320, "group commit shares fsyncs: {st:?}");
    drop(Arc::into_inner(s).unwrap());
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(s.count(), 320);
}

#[test]
fn out_of_space_turns_read_only_and_resumes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        disk_low_bytes_floor: 0,
        disk_critical_bytes_floor: 0,
        ..small()
    };
    let io = cfg.io.clone();
    let s = Store::open(dir.path(), cfg).unwrap();
    s.put("a", doc(1)).unwrap();
    io.set_quota_bytes(Some(20));
    let e = s.put("b", doc(2)).unwrap_err();
    assert!(
        matches!(e, StoreError::ReadOnly(ReadOnly::DiskSpace(ref d)) if d.refused.is_some() || d.free.is_some())
            && e.to_string().starts_with("read-only: disk space"),
        "{e}"
    );
    assert!(s.stats().read_only.is_some());
    assert_eq!(s.stats().read_only_cause.as_deref(), Some("disk_space"));
    assert_eq!(s.get("a").unwrap(), Some(doc(1)), "reads continue");
    io.set_quota_bytes(None);
    s.free_bytes();
    s.put("c", doc(3)).unwrap();
    drop(s);
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!((s.count(), s.get("b").unwrap()), (2, None));
}

#[test]
fn below_the_critical_floor_writes_are_refused_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        disk_low_bytes_floor: 1 << 20,
        disk_critical_bytes_floor: 1 << 19,
        ..small()
    };
    let io = cfg.io.clone();
    let s = Arc::new(Store::open(dir.path(), cfg).unwrap());
    io.set_quota_bytes(Some(1000));
    let e = s.put("a", doc(1)).unwrap_err();
    assert!(e.to_string().contains("disk_critical_bytes_floor"), "{e}");
    let subject = StoreSubject::new(s.clone());
    let out = run_check(&subject, Tier::Shallow);
    assert!(
        out.issues.iter().any(|i| i.code == "disk_space_critical"),
        "{out:?}"
    );
    io.set_quota_bytes(Some(800 << 10));
    let out = run_check(&subject, Tier::Shallow);
    assert!(
        out.issues.iter().any(|i| i.code == "disk_space_low"),
        "{out:?}"
    );
    s.put("a", doc(1)).unwrap();
}

#[test]
fn a_failed_fsync_poisons_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small();
    let io = cfg.io.clone();
    let s = Store::open(dir.path(), cfg).unwrap();
    s.put("a", doc(1)).unwrap();
    io.set_fail_fsync(true);
    assert!(matches!(s.put("b", doc(2)), Err(StoreError::Poisoned(_))));
    io.set_fail_fsync(false);
    assert!(
        matches!(s.put("c", doc(3)), Err(StoreError::Poisoned(_))),
        "stays stopped"
    );
    assert_eq!(s.get("a").unwrap(), Some(doc(1)));
    drop(s);
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(s.get("a").unwrap(), Some(doc(1)));
    s.put("c", doc(3)).unwrap();
}

/// A poisoned store is brought back without a restart once its disk works again: the verified table is written out
/// anew (the engine's `compact` strategy for `store_poisoned`), writes resume, and a reopen finds every acknowledged
/// document and none of the failed one. While the disk still fails, the recovery fails and the store stays stopped.
#[test]
fn a_poisoned_store_recovers_by_writing_the_table_out_anew_once_the_disk_works() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small();
    let io = cfg.io.clone();
    let s = Arc::new(Store::open(dir.path(), cfg).unwrap());
    for i in 0..50 {
        s.put(&format!("k{i}"), doc(i)).unwrap();
    }
    io.set_fail_fsync(true);
    assert!(matches!(
        s.put("failed", doc(99)),
        Err(StoreError::Poisoned(_))
    ));
    let subject = StoreSubject::new(s.clone());
    let poisoned = run_check(&subject, Tier::Shallow)
        .issues
        .into_iter()
        .find(|i| i.code == "store_poisoned")
        .expect("the quick check reports the poisoned store");
    assert!(repair(&subject, &poisoned).is_err(), "the disk still fails");
    assert!(matches!(s.put("c", doc(3)), Err(StoreError::Poisoned(_))));
    io.set_fail_fsync(false);
    repair(&subject, &poisoned).unwrap();
    s.put("after", doc(7)).unwrap();
    assert!(run_check(&subject, Tier::Comprehensive).passed);
    drop(subject);
    Arc::into_inner(s).unwrap().close().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    for i in 0..50 {
        assert_eq!(s.get(&format!("k{i}")).unwrap(), Some(doc(i)));
    }
    assert_eq!(s.get("after").unwrap(), Some(doc(7)));
    assert_eq!(s.get("failed").unwrap(), None, "never acknowledged");
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

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u16),
    Delete(u8),
    Reopen,
    Compact,
    /// Flip one byte of one live file (chosen by the two numbers), then reopen and let the strategies repair.
    DamageAndReopen(u16, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..20, any::<u16>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..20).prop_map(Op::Delete),
        1 => Just(Op::Reopen),
        1 => Just(Op::Compact),
        1 => (any::<u16>(), any::<u32>()).prop_map(|(f, o)| Op::DamageAndReopen(f, o)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn behaves_like_a_btreemap_across_reopen(ops in proptest::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = || StoreConfig { segment_bytes_max: 4096, wal_bytes_max: 16 << 10, ..small() };
        let mut s = Store::open(dir.path(), cfg()).unwrap();
        let mut model: BTreeMap<String, Document> = BTreeMap::new();
        for o in ops {
            match o {
                Op::Put(k, v) => {
                    let d = Document { text: format!("{v}").repeat(v as usize % 40), vector: None, meta: None };
                    s.put(&format!("k{k:02}"), d.clone()).unwrap();
                    model.insert(format!("k{k:02}"), d);
                }
                Op::Delete(k) => {
                    let had = s.delete(&format!("k{k:02}")).unwrap().is_some();
                    prop_assert_eq!(had, model.remove(&format!("k{k:02}")).is_some());
                }
                Op::Reopen => {
                    drop(s);
                    s = Store::open(dir.path(), cfg()).unwrap();
                }
                Op::Compact => s.compact().unwrap(),
                Op::DamageAndReopen(f, o) => {
                    let files: Vec<_> = s.data_files().into_iter().filter(|d| d.kind != store::layout::FileKind::Lock).collect();
                    let target = &files[f as usize % files.len()];
                    let path = dir.path().join(&target.rel);
                    let len = std::fs::metadata(&path).unwrap().len();
                    if len > 0 {
                        flip(&path, o as u64 % len, 1);
                    }
                    drop(s);
                    let reopened = Arc::new(Store::open(dir.path(), cfg()).unwrap_or_else(|e| panic!("{} damaged: {e}", target.rel)));
                    let subject = StoreSubject::new(reopened.clone());
                    let mut issues = subject.drain_issues();
                    issues.extend(run_check(&subject, Tier::Comprehensive).issues);
                    for i in &issues {
                        if i.code == "stale_lock" {
                            continue;
                        }
                        repair(&subject, i).unwrap_or_else(|e| panic!("{} after damage to {}: {e}", i.code, target.rel));
                    }
                    let after = run_check(&subject, Tier::Comprehensive);
                    prop_assert!(after.passed, "{} still damaged: {:?}", target.rel, after);
                    drop(subject);
                    s = Arc::into_inner(reopened).unwrap();
                }
            }
            prop_assert_eq!(s.count(), model.len());
        }
        let all = s.scan(None, usize::MAX).unwrap();
        let want: Vec<(String, Document)> = model.into_iter().collect();
        prop_assert_eq!(all, want);
    }
}

fn fill(s: &Store, n: usize) {
    for i in 0..n {
        s.put(&format!("f{i:04}"), doc(i)).unwrap();
    }
}

fn all_there(s: &Store, n: usize) {
    for i in 0..n {
        assert_eq!(s.get(&format!("f{i:04}")).unwrap(), Some(doc(i)), "f{i:04}");
    }
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
fn a_crash_while_creating_a_store_leaves_it_creatable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("wal")).unwrap();
    std::fs::write(dir.path().join("wal/0000000000000001.seg"), [0u8; 10]).unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    assert!(s.recovery_report().created);
    s.put("a", doc(0)).unwrap();
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
fn samples_carry_latency_quantiles_and_write_failures_become_issues() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small();
    let io = cfg.io.clone();
    let s = Arc::new(Store::open(dir.path(), cfg).unwrap());
    let subject = StoreSubject::new(s.clone());
    s.put("a", doc(1)).unwrap();
    let samples = subject.sample(heal::Clock::now(&SystemClock::new()));
    let p99 = samples
        .iter()
        .find(|x| x.metric == "put_latency_p99_us")
        .expect("put p99 sampled");
    assert!(p99.value >= 1.0, "{p99:?}");
    assert!(
        samples
            .iter()
            .any(|x| x.metric == "wal_bytes" && x.value > 0.0)
    );
    io.set_fail_fsync(true);
    assert!(s.put("b", doc(2)).is_err());
    let issues = subject.drain_issues();
    let i = issues
        .iter()
        .find(|i| i.code == "store_poisoned")
        .expect("queued");
    assert_eq!(i.location.lsn_range, Some((2, 2)));
}

#[test]
fn put_batch_is_one_commit_and_all_or_nothing_on_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    let lsns = s
        .put_batch((0..50).map(|i| (format!("p{i}"), doc(i))).collect())
        .unwrap();
    assert_eq!(lsns, (1..=50).collect::<Vec<u64>>());
    assert_eq!(s.stats().commits, 1);
    let bad = vec![("ok".to_string(), doc(1)), (String::new(), doc(2))];
    assert!(s.put_batch(bad).unwrap_err().is_user_error());
    assert_eq!(s.get("ok").unwrap(), None);
    assert!(s.heartbeat().unwrap());
    drop(s);
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(s.count(), 50);
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
fn running_out_of_space_at_any_byte_loses_no_acknowledged_write() {
    for quota in (0..6000u64).step_by(233) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            segment_bytes_max: 4096,
            wal_bytes_max: 12 << 10,
            ..small()
        };
        let io = cfg.io.clone();
        let s = Store::open(dir.path(), cfg.clone()).unwrap();
        let mut acked = BTreeMap::new();
        for i in 0..20 {
            acked.insert(
                format!("a{i}"),
                s.put(&format!("a{i}"), doc(i)).map(|_| doc(i)).unwrap(),
            );
        }
        io.set_quota_bytes(Some(quota));
        for i in 20..80 {
            match s.put(&format!("a{i}"), doc(i)) {
                Ok(_) => {
                    acked.insert(format!("a{i}"), doc(i));
                }
                Err(StoreError::ReadOnly(_)) | Err(StoreError::Io { .. }) => {}
                Err(StoreError::Poisoned(_)) => break,
                Err(e) => panic!("quota {quota}: unexpected {e}"),
            }
        }
        io.set_quota_bytes(None);
        s.free_bytes();
        let resumed = s.put("after", doc(0)).is_ok();
        if resumed {
            acked.insert("after".into(), doc(0));
        }
        drop(s);
        let s = Store::open(
            dir.path(),
            StoreConfig {
                io: Arc::new(store::IoFaults::new()),
                ..cfg
            },
        )
        .unwrap();
        for (id, d) in &acked {
            assert_eq!(
                s.get(id).unwrap().as_ref(),
                Some(d),
                "quota {quota}: {id} lost"
            );
        }
        assert_eq!(
            s.count(),
            acked.len(),
            "quota {quota}: unacknowledged documents appeared"
        );
    }
}

#[test]
fn a_lock_left_by_a_dead_process_is_taken_over_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), small()).unwrap());
    let host = std::fs::read_to_string(dir.path().join("LOCK")).unwrap();
    let host = host
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("host="))
        .unwrap()
        .to_string();
    std::fs::write(
        dir.path().join("LOCK"),
        format!("pid=4194303 host={host} started_us=1 heartbeat_us=2 closed=false\n"),
    )
    .unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let r = s.recovery_report();
    assert!(r.previous_holder_crashed);
    assert!(
        r.previous_holder
            .as_deref()
            .unwrap()
            .contains("pid 4194303")
            && r.previous_holder.unwrap().contains("gone")
    );
    let subject = StoreSubject::new(s.clone());
    let i = subject
        .drain_issues()
        .into_iter()
        .find(|i| i.code == "stale_lock")
        .expect("reported");
    repair(&subject, &i).unwrap();
    assert!(s.lock_file_ok(false).unwrap());
}

#[test]
fn checks_pass_while_writers_run() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let subject = StoreSubject::new(s.clone());
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    s.put(&format!("c{t}-{}", i % 40), doc(i)).unwrap();
                }
            })
        })
        .collect();
    let mut runs = 0;
    while !writers.iter().all(|w| w.is_finished()) || runs < 3 {
        for tier in [Tier::Shallow, Tier::Deep, Tier::Comprehensive] {
            let out = run_check(&subject, tier);
            assert!(
                out.passed,
                "{tier:?} failed under concurrent writes: {out:?}"
            );
        }
        runs += 1;
    }
    for w in writers {
        w.join().unwrap();
    }
    assert!(
        s.stats().rotations > 0 && s.stats().compactions > 0,
        "{:?}",
        s.stats()
    );
    assert_eq!(s.count(), 160);
}

// ---- Damage beyond every redundancy, found on open: degraded open ----

/// The seed of a degraded-open test: `MEDIC_DEGRADED_SEED` or a fixed default; printed so a failure replays.
fn degraded_seed(default: u64) -> u64 {
    let seed = std::env::var("MEDIC_DEGRADED_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    eprintln!("seed={seed} (replay: MEDIC_DEGRADED_SEED={seed})");
    seed
}

/// A store of 200 documents (`f0000`.. at LSN i+1) over several sealed segments, then, in the open segment, an
/// update of `f0001` and a delete of `f0002`. Returns the sealed segments.
fn degraded_fixture(dir: &Path) -> Vec<store::ImmutableFile> {
    let s = Store::open(dir, small()).unwrap();
    fill(&s, 200);
    s.put("f0001", doc(1001)).unwrap();
    s.delete("f0002").unwrap().unwrap();
    let sealed: Vec<_> = s
        .immutable_files()
        .into_iter()
        .filter(|f| f.rel.ends_with(".seg"))
        .collect();
    assert!(sealed.len() >= 2, "{sealed:?}");
    s.close().unwrap();
    sealed
}

/// Everything a degraded store must do while the loss `lost` (in `file`, ending at LSN `end`) is unacknowledged:
/// serve what is certainly current byte-identical, refuse what a lost record may have changed naming the range,
/// never serve wrong bytes, refuse writes naming the loss, and report the loss to the engine.
///
/// `named`: the file's identity sidecar survived, so the loss names the documents it may have changed (`f(a-1)` to
/// `f(b-1)` of the fixture): every other document is served, never-written ids are certainly absent, and a scan
/// lists everything but those. Otherwise the loss is anonymous: everything older than it is refused, scans too.
fn assert_degraded(s: &Arc<Store>, file: &str, named: bool) -> store::LostRange {
    let r = s.recovery_report();
    assert_eq!(r.lost.len(), 1, "{:?}", r.lost);
    let lost = r.lost[0].clone();
    assert_eq!(lost.file, file);
    let (a, b) = lost.lsn_range;
    assert!(a <= b, "{lost:?}");
    // In the fixture, LSN n wrote f(n-1) (n <= 200); 201 and 202 rewrote f0001 and deleted f0002.
    let touched = |i: usize| {
        (a..=b).contains(&(i as u64 + 1))
            || (i == 1 && (a..=b).contains(&201))
            || (i == 2 && (a..=b).contains(&202))
    };
    if named {
        let want: Vec<String> = (0..200usize)
            .filter(|&i| touched(i))
            .map(|i| format!("f{i:04}"))
            .collect();
        assert_eq!(lost.ids.as_ref(), Some(&want), "{lost:?}");
    } else {
        assert_eq!(lost.ids, None, "{lost:?}");
    }
    assert_eq!(s.stats().lost, r.lost);
    let stale_msg = format!("may be stale: records LSN {a}..={b} of {file} were lost");
    let is_stale = |e: &StoreError| {
        matches!(e, StoreError::MayBeStale { file: f, lsn_range, .. } if f == file && *lsn_range == (a, b))
            && e.to_string().contains(&stale_msg)
            && !e.is_user_error()
    };
    let (mut served, mut refused) = (0, 0);
    for i in 0..200usize {
        let id = format!("f{i:04}");
        let lsn = i as u64 + 1;
        let want = match i {
            1 => Some(doc(1001)),
            2 => None,
            _ => Some(doc(i)),
        };
        match s.get(&id) {
            Ok(got) => {
                // Served only when certainly current, and then byte-identical.
                assert!(
                    lsn > b || i <= 2 || (named && !touched(i)),
                    "{id} (LSN {lsn}) served despite the loss of {a}..={b}"
                );
                assert_eq!(got, want, "{id}: wrong data served");
                served += 1;
            }
            Err(e) => {
                assert!(is_stale(&e), "{id}: {e}");
                assert!(
                    lsn <= b,
                    "{id} (LSN {lsn}) refused though newer than the loss: {e}"
                );
                assert!(
                    !named || touched(i),
                    "{id} refused though the loss names other documents: {e}"
                );
                refused += 1;
            }
        }
    }
    assert!(
        served > 0 && refused > 0,
        "served {served}, refused {refused}"
    );
    let version = |i: usize| if i == 1 { 201 } else { i as u64 + 1 };
    let survivors: Vec<String> = (0..200usize)
        .filter(|&i| i != 2 && !(named && touched(i) && version(i) <= b))
        .map(|i| format!("f{i:04}"))
        .collect();
    if named {
        // An id never written: no lost record created it.
        assert_eq!(s.get("never-written").unwrap(), None);
        // A scan lists every document no lost record touched, byte-identical, and leaves out the rest.
        let listed = s.scan(None, usize::MAX).unwrap();
        let ids: Vec<String> = listed.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(ids, survivors);
        for (id, d) in listed {
            let i: usize = id[1..].parse().unwrap();
            assert_eq!(d, if i == 1 { doc(1001) } else { doc(i) }, "{id}");
        }
        assert!(
            lost.describe().contains("may have changed"),
            "{}",
            lost.describe()
        );
    } else {
        // An id never written: a lost record may have created it.
        assert!(is_stale(&s.get("never-written").unwrap_err()));
        assert!(lost.describe().contains("unknown"), "{}", lost.describe());
    }
    // The update and the delete came after every lost record: certain.
    assert_eq!(s.get("f0001").unwrap(), Some(doc(1001)));
    assert_eq!(s.get("f0002").unwrap(), None);
    // Without names a scan could be incomplete or stale: refused.
    if !named {
        assert!(is_stale(&s.scan(None, 10).unwrap_err()));
    }
    // Writes are refused, naming the loss and what to do; free space does not lift it.
    for e in [
        s.put("new", doc(7)).unwrap_err(),
        s.delete("f0199").unwrap_err(),
        s.delete("never-written").unwrap_err(),
        s.put_batch(vec![("n2".into(), doc(8))]).unwrap_err(),
        s.compact().unwrap_err(),
    ] {
        match &e {
            StoreError::ReadOnly(r @ ReadOnly::Lost(ranges)) => {
                assert!(!ranges.is_empty(), "{r}");
                let m = r.to_string();
                assert!(
                    m.contains(file) && m.contains(&format!("LSN {a}..={b}")),
                    "{m}"
                );
                assert!(m.contains("accept the loss"), "{m}");
            }
            other => panic!("expected ReadOnly naming the loss, got {other:?}"),
        }
    }
    let _ = s.free_bytes();
    assert!(s.put("new", doc(7)).is_err());
    assert!(s.stats().read_only.is_some());
    assert_eq!(s.stats().read_only_cause.as_deref(), Some("lost"));
    // The engine is told, precisely, and the quick check keeps telling it.
    let subject = StoreSubject::new(s.clone());
    let queued = subject.drain_issues();
    let check_issue = |i: &heal::Issue| {
        i.code == "acknowledged_data_lost"
            && i.data_at_risk
            && i.location.file.as_deref() == Some(file)
            && i.location.lsn_range == Some((a, b))
            && i.location.offset == lost.offset
    };
    assert!(queued.iter().any(check_issue), "{queued:?}");
    for _ in 0..2 {
        let out = run_check(&subject, Tier::Shallow);
        assert!(!out.passed);
        assert!(out.issues.iter().any(check_issue), "{out:?}");
    }
    // No strategy offers to paper over it.
    let i = queued.iter().find(|i| check_issue(i)).unwrap();
    assert!(subject.strategies().iter().all(|st| !st.can_repair(i)));
    lost
}

/// After the loss is accepted: writes work, every surviving document is served, and a reopen is clean.
fn assert_accepted(dir: &Path, s: Arc<Store>, lost: &store::LostRange) {
    let acc = s.accept_loss().unwrap();
    assert_eq!(acc.ranges, vec![lost.clone()]);
    assert!(acc.snapshot_lsn.is_some());
    assert!(s.lost().is_empty());
    assert_eq!(s.stats().losses_accepted, vec![lost.clone()]);
    assert_eq!(s.stats().read_only, None);
    s.put("after-accept", doc(9)).unwrap();
    assert_eq!(s.get("after-accept").unwrap(), Some(doc(9)));
    let survivors = s.scan(None, usize::MAX).unwrap();
    assert_eq!(survivors.len(), s.count());
    let subject = StoreSubject::new(s.clone());
    assert!(
        !subject
            .drain_issues()
            .iter()
            .any(|i| i.code == "acknowledged_data_lost")
    );
    let out = run_check(&subject, Tier::Comprehensive);
    assert!(out.passed, "{out:?}");
    drop(subject);
    Arc::into_inner(s).unwrap().close().unwrap();
    let s = Store::open(dir, small()).unwrap();
    let r = s.recovery_report();
    assert!(r.lost.is_empty() && r.issues.is_empty(), "{r:?}");
    assert_eq!(s.scan(None, usize::MAX).unwrap(), survivors);
    s.put("after-reopen", doc(10)).unwrap();
}

#[test]
fn a_lost_sealed_segment_opens_degraded_serving_only_what_is_certainly_current() {
    let seed = degraded_seed(0xDE9_0001);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let sealed = degraded_fixture(dir.path());
    let f = &sealed[rand::Rng::random_range(&mut rng, 0..sealed.len())];
    eprintln!("deleting {} (LSN {:?})", f.rel, f.lsn_range);
    std::fs::remove_file(dir.path().join(&f.rel)).unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let lost = assert_degraded(&s, &f.rel, true);
    // The whole file is gone: every LSN it held, exactly.
    assert_eq!(lost.offset, None);
    assert_eq!(lost.lsn_range, f.lsn_range);
    assert_accepted(dir.path(), s, &lost);
}

#[test]
fn a_lost_sealed_segment_and_its_identity_sidecar_open_degraded_refusing_everything_older() {
    let seed = degraded_seed(0xDE9_0004);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let sealed = degraded_fixture(dir.path());
    let f = &sealed[rand::Rng::random_range(&mut rng, 0..sealed.len())];
    eprintln!(
        "deleting {} and {}.ids (LSN {:?})",
        f.rel, f.rel, f.lsn_range
    );
    std::fs::remove_file(dir.path().join(&f.rel)).unwrap();
    std::fs::remove_file(dir.path().join(format!("{}.ids", f.rel))).unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let lost = assert_degraded(&s, &f.rel, false);
    assert_eq!(lost.lsn_range, f.lsn_range);
    assert_accepted(dir.path(), s, &lost);
}

#[test]
fn a_sealed_segment_damaged_beyond_parity_opens_degraded_serving_only_what_is_certainly_current() {
    let seed = degraded_seed(0xDE9_0002);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let sealed = degraded_fixture(dir.path());
    let cfg = small();
    let (k, m, bs) = (
        cfg.parity_data_blocks as usize,
        cfg.parity_blocks as usize,
        cfg.block_bytes as usize,
    );
    let f = &sealed[rand::Rng::random_range(&mut rng, 0..sealed.len())];
    // One more block of one group than its recovery blocks can rebuild.
    let n_blocks = (f.len as usize).div_ceil(bs);
    let full_groups = n_blocks / k;
    let g = rand::Rng::random_range(&mut rng, 0..full_groups);
    let mut blocks: Vec<usize> = (g * k..g * k + k).collect();
    while blocks.len() > m + 1 {
        blocks.remove(rand::Rng::random_range(&mut rng, 0..blocks.len()));
    }
    eprintln!(
        "zeroing blocks {blocks:?} of {} (LSN {:?})",
        f.rel, f.lsn_range
    );
    let path = dir.path().join(&f.rel);
    let mut b = std::fs::read(&path).unwrap();
    for &blk in &blocks {
        let end = ((blk + 1) * bs).min(b.len());
        b[blk * bs..end].fill(0);
    }
    std::fs::write(&path, &b).unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let lost = assert_degraded(&s, &f.rel, true);
    // Lost from the first record the damage reaches to the segment's end; records before it are replayed.
    let off = lost.offset.expect("an offset");
    assert!(off <= (blocks[0] * bs) as u64, "{lost:?}");
    assert!(
        lost.lsn_range.0 >= f.lsn_range.0 && lost.lsn_range.1 == f.lsn_range.1,
        "{lost:?}"
    );
    assert_accepted(dir.path(), s, &lost);
}

#[test]
fn a_snapshot_beyond_parity_opens_degraded_with_what_the_log_holds_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    fill(&s, 60);
    s.compact().unwrap();
    let snap = s.manifest().snapshot_lsn.unwrap();
    for i in 60..80 {
        s.put(&format!("f{i:04}"), doc(i)).unwrap();
    }
    s.close().unwrap();
    let rel = format!("snap/{snap:016}.snap");
    let path = dir.path().join(&rel);
    let mut b = std::fs::read(&path).unwrap();
    b[..512 * 3].fill(0);
    std::fs::write(&path, &b).unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    let lost = &s.recovery_report().lost;
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(
        (lost[0].file.as_str(), lost[0].lsn_range),
        (rel.as_str(), (1, snap))
    );
    // The snapshot's identity sidecar names the 60 documents it held.
    let named: Vec<String> = (0..60).map(|i| format!("f{i:04}")).collect();
    assert_eq!(lost[0].ids.as_ref(), Some(&named));
    for i in 0..80 {
        let r = s.get(&format!("f{i:04}"));
        if i < 60 {
            assert!(
                matches!(r, Err(StoreError::MayBeStale { .. })),
                "{i}: {r:?}"
            );
        } else {
            assert_eq!(r.unwrap(), Some(doc(i)));
        }
    }
    s.accept_loss().unwrap();
    assert_eq!(s.count(), 20);
    s.put("x", doc(1)).unwrap();
}

#[test]
fn open_segment_records_damaged_in_both_copies_open_degraded_and_later_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    fill(&s, 20);
    let (id, len) = s.open_segment();
    assert_eq!(s.immutable_files().len(), 0, "all in the open segment");
    s.close().unwrap();
    // Damage the same bytes, in the middle of the log, in both copies.
    let mid = len / 2;
    for rel in [format!("wal/{id:016}.seg"), format!("wal/{id:016}.mir")] {
        flip(&dir.path().join(rel), mid, 4);
    }
    let before: Vec<Vec<u8>> = ["seg", "mir"]
        .iter()
        .map(|e| std::fs::read(dir.path().join(format!("wal/{id:016}.{e}"))).unwrap())
        .collect();
    let s = Store::open(dir.path(), small()).unwrap();
    let lost = s.recovery_report().lost;
    assert_eq!(lost.len(), 1, "{lost:?}");
    let (a, b) = lost[0].lsn_range;
    assert_eq!(lost[0].file, format!("wal/{id:016}.seg"));
    assert!(a == b && (1..20).contains(&a), "one record lost: {lost:?}");
    // Record LSN a wrote document a - 1: the identity journal names it, and only it may be stale.
    let gone = format!("f{:04}", a - 1);
    assert_eq!(lost[0].ids, Some(vec![gone.clone()]), "{lost:?}");
    assert!(lost[0].describe().contains(&gone), "{}", lost[0].describe());
    for i in 0..20usize {
        let r = s.get(&format!("f{i:04}"));
        if i as u64 + 1 != a {
            assert_eq!(
                r.unwrap(),
                Some(doc(i)),
                "records no lost record touched survive"
            );
        } else {
            assert!(
                matches!(r, Err(StoreError::MayBeStale { .. })),
                "{i}: {r:?}"
            );
        }
    }
    // Both copies are left exactly as they were while degraded.
    drop(s);
    for (e, b) in ["seg", "mir"].iter().zip(&before) {
        assert_eq!(
            &std::fs::read(dir.path().join(format!("wal/{id:016}.{e}"))).unwrap(),
            b
        );
    }
    let s = Store::open(dir.path(), small()).unwrap();
    s.accept_loss().unwrap();
    assert_eq!(s.count(), 19);
    s.put("x", doc(1)).unwrap();
    drop(s);
    assert!(
        Store::open(dir.path(), small())
            .unwrap()
            .recovery_report()
            .lost
            .is_empty()
    );
}

#[test]
fn the_engine_escalates_a_loss_found_on_open_naming_file_and_lsns() {
    use heal::Clock;
    let seed = degraded_seed(0xDE9_0003);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let sealed = degraded_fixture(dir.path());
    let f = &sealed[rand::Rng::random_range(&mut rng, 0..sealed.len())];
    std::fs::remove_file(dir.path().join(&f.rel)).unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let subject: Arc<dyn Subject> = Arc::new(StoreSubject::new(s.clone()));
    let kb = Arc::new(heal::learn::MemoryKnowledgeBase::new());
    let clock = heal::SimClock::new(SystemClock::new().now());
    let mut engine = heal::engine::Engine::new(
        subject,
        kb.clone(),
        Arc::new(clock.clone()),
        heal::config::EngineConfig::default(),
    )
    .unwrap();
    let mut opened = Vec::new();
    let mut escalated = Vec::new();
    for _ in 0..5 {
        clock.advance(60_000_000);
        let sum = engine.run_cycle();
        assert!(sum.attempts.is_empty(), "nothing may be repaired: {sum:?}");
        opened.extend(sum.incidents_opened);
        escalated.extend(sum.escalations);
    }
    let rec = escalated
        .iter()
        .filter_map(|id| engine.incident(*id).unwrap())
        .find(|r| r.issues.iter().any(|i| i.code == "acknowledged_data_lost"))
        .unwrap_or_else(|| panic!("no escalated loss incident among {opened:?}"));
    assert_eq!(
        rec.resolution,
        heal::learn::Resolution::Escalated,
        "{rec:?}"
    );
    assert_eq!(rec.crisis, heal::CrisisLevel::Crisis, "{rec:?}");
    let i = rec
        .issues
        .iter()
        .find(|i| i.code == "acknowledged_data_lost")
        .unwrap();
    assert_eq!(i.location.file.as_deref(), Some(f.rel.as_str()));
    assert_eq!(i.location.lsn_range, Some(f.lsn_range));
    let report = rec.report_markdown.clone().unwrap_or_default();
    assert!(report.contains(&f.rel), "{report}");
    // Nothing was touched: the store is still degraded and says so.
    assert_eq!(s.lost().len(), 1);
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

fn record_offsets(b: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 32;
    while pos + 8 <= b.len() {
        out.push(pos);
        pos += 8 + u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap()) as usize;
    }
    out
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

#[test]
fn recovery_does_not_cut_records_intact_in_the_mirror_as_a_torn_tail_of_the_main_copy() {
    torn_copy_and_damaged_twin_keep_the_later_records("seg", "mir");
}

#[test]
fn recovery_does_not_cut_records_intact_in_the_main_copy_as_a_torn_tail_of_the_mirror() {
    torn_copy_and_damaged_twin_keep_the_later_records("mir", "seg");
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

#[test]
fn the_quick_check_refreshes_the_lock_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let before = store::lock::read_holder(dir.path()).unwrap();
    assert_eq!(before.pid, std::process::id());
    let subject = StoreSubject::new(s.clone());
    let mut last = before.heartbeat_us;
    for _ in 0..2 {
        std::thread::sleep(std::time::Duration::from_millis(5));
        let out = run_check(&subject, Tier::Shallow);
        assert!(out.passed, "{:?}", out.issues);
        let now = store::lock::read_holder(dir.path()).unwrap();
        assert!(
            now.heartbeat_us > last,
            "heartbeat did not move: {last} -> {}",
            now.heartbeat_us
        );
        assert_eq!(
            (now.pid, &now.host, now.started_us, now.closed),
            (before.pid, &before.host, before.started_us, false)
        );
        last = now.heartbeat_us;
    }
}

/// Writes keep the heartbeat fresh without the engine: at most every sixth of `lock_stale_after_ms` (5 s), so a
/// store written to by a long offline command is never judged gone by another host.
#[test]
fn writes_refresh_the_lock_heartbeat_every_few_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    let at_open = store::lock::read_holder(dir.path()).unwrap().heartbeat_us;
    s.put("a", doc(1)).unwrap();
    assert_eq!(
        store::lock::read_holder(dir.path()).unwrap().heartbeat_us,
        at_open,
        "not before the interval"
    );
    std::thread::sleep(std::time::Duration::from_millis(5_100));
    s.put("b", doc(2)).unwrap();
    let after = store::lock::read_holder(dir.path()).unwrap();
    assert!(after.heartbeat_us > at_open + 5_000_000, "{after:?}");
    assert_eq!(after.pid, std::process::id());
}

/// Writes a LOCK naming `pid` on `host`, not closed, taken at `started_us`; returns its text.
fn fake_lock(dir: &Path, pid: u32, host: &str, started_us: u64, closed: bool) -> String {
    let text = format!(
        "pid={pid} host={host} started_us={started_us} heartbeat_us={started_us} closed={closed}\n"
    );
    std::fs::write(dir.join("LOCK"), &text).unwrap();
    text
}

fn now_us() -> u64 {
    store::lock::now_us()
}

#[test]
fn a_lock_whose_holder_is_alive_or_on_another_host_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), small()).unwrap());
    let host = store::lock::host_name();

    // A live process on this host, which took the lock after it started: its claim stands.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let text = fake_lock(dir.path(), child.id(), &host, now_us(), false);
    match Store::open(dir.path(), small()) {
        Err(StoreError::Locked { holder }) => {
            assert!(holder.contains(&format!("pid {}", child.id())), "{holder}");
            assert!(holder.contains("alive"), "{holder}");
        }
        other => panic!("a live holder's lock was taken over: {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("LOCK")).unwrap(),
        text
    );

    // Another host with a fresh heartbeat: nothing here can prove it gone; the refusal names the bound.
    let text = fake_lock(dir.path(), 1, "some-other-host", now_us(), false);
    match Store::open(dir.path(), small()) {
        Err(StoreError::Locked { holder }) => {
            assert!(holder.contains("some-other-host"), "{holder}");
            assert!(holder.contains("across hosts"), "{holder}");
            assert!(
                holder.contains("under lock_stale_after_ms = 30000: refusing"),
                "{holder}"
            );
        }
        other => panic!("another host's lock was taken over: {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("LOCK")).unwrap(),
        text
    );
    // ... unless it closed cleanly.
    fake_lock(dir.path(), 1, "some-other-host", now_us(), true);
    let s = Store::open(dir.path(), small()).unwrap();
    assert!(!s.recovery_report().previous_holder_crashed);
    drop(s);

    // The live holder dies: now it is provably gone and the lock is taken over, reported as a crash.
    fake_lock(dir.path(), child.id(), &host, now_us(), false);
    child.kill().unwrap();
    child.wait().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    let r = s.recovery_report();
    assert!(r.previous_holder_crashed);
    assert!(r.previous_holder.unwrap().contains("gone"));
    assert_eq!(
        store::lock::read_holder(dir.path()).unwrap().pid,
        std::process::id()
    );
}

#[test]
fn a_lock_on_another_host_is_taken_over_once_its_heartbeat_is_older_than_lock_stale_after_ms() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), small()).unwrap());
    let bound_us = store::lock::LOCK_STALE_AFTER_MS * 1_000;
    assert_eq!(store::lock::LOCK_STALE_AFTER_MS, 30_000);

    // Just inside the bound (a container restarted after an OOM kill, 5 s short of the bound): refused.
    let text = fake_lock(
        dir.path(),
        1,
        "old-container",
        now_us() - (bound_us - 5_000_000),
        false,
    );
    match Store::open(dir.path(), small()) {
        Err(StoreError::Locked { holder }) => {
            assert!(
                holder.contains("held by pid 1 on host old-container"),
                "{holder}"
            );
            assert!(
                holder.contains("under lock_stale_after_ms = 30000: refusing"),
                "{holder}"
            );
            assert!(
                holder.contains("taken over once its heartbeat is older"),
                "{holder}"
            );
        }
        other => panic!("a fresh heartbeat on another host was taken over: {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("LOCK")).unwrap(),
        text
    );

    // A heartbeat in the future (clock skew) counts as fresh.
    let text = fake_lock(
        dir.path(),
        1,
        "old-container",
        now_us() + 3_600_000_000,
        false,
    );
    match Store::open(dir.path(), small()) {
        Err(StoreError::Locked { holder }) => {
            assert!(holder.contains("in the future"), "{holder}");
            assert!(holder.contains("refusing"), "{holder}");
        }
        other => panic!("a heartbeat in the future was taken over: {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("LOCK")).unwrap(),
        text
    );

    // Older than the bound: taken over, reported as a crash naming why it was judged gone.
    fake_lock(
        dir.path(),
        1,
        "old-container",
        now_us() - (bound_us + 10_000_000),
        false,
    );
    let s = Arc::new(
        Store::open(dir.path(), small()).expect("a stale heartbeat on another host is taken over"),
    );
    let r = s.recovery_report();
    assert!(r.previous_holder_crashed);
    let prev = r.previous_holder.unwrap();
    assert!(prev.contains("old-container"), "{prev}");
    assert!(
        prev.contains("older than lock_stale_after_ms = 30000"),
        "{prev}"
    );
    let me = store::lock::read_holder(dir.path()).unwrap();
    assert_eq!(
        (me.pid, me.host.as_str(), me.closed),
        (std::process::id(), store::lock::host_name().as_str(), false)
    );
    let i = StoreSubject::new(s.clone())
        .drain_issues()
        .into_iter()
        .find(|i| i.code == "stale_lock")
        .expect("the takeover is reported as a stale_lock issue");
    assert!(i.summary.contains("old-container"), "{}", i.summary);
}

#[test]
fn a_lock_whose_pid_was_reused_or_is_a_zombie_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), small()).unwrap());
    let host = store::lock::host_name();
    // The pid is alive, but that process started long after the holder took the lock: another process.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    fake_lock(dir.path(), child.id(), &host, 1_000_000, false);
    let s = Store::open(dir.path(), small());
    child.kill().unwrap();
    child.wait().unwrap();
    let s = s.expect("a reused pid is not the holder");
    assert!(s.recovery_report().previous_holder_crashed);
    drop(s);
    // A zombie (exited, not yet reaped) holds no files.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    fake_lock(dir.path(), child.id(), &host, now_us(), false);
    let s = Store::open(dir.path(), small());
    child.wait().unwrap();
    assert!(
        s.expect("a zombie holds nothing")
            .recovery_report()
            .previous_holder_crashed
    );
}

#[test]
fn put_batch_over_commit_batch_bytes_max_is_refused_whole_naming_the_limit_and_size() {
    let batch =
        || -> Vec<(String, Document)> { (0..10).map(|i| (format!("b{i}"), doc(i))).collect() };
    // The batch's size as written to the WAL.
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    let before = s.open_segment().1;
    s.put_batch(batch()).unwrap();
    let size = s.open_segment().1 - before;
    drop(s);

    // A limit of exactly that size admits it.
    let cfg = |limit| StoreConfig {
        commit_batch_bytes_max: limit,
        ..small()
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), cfg(size)).unwrap();
    assert_eq!(s.put_batch(batch()).unwrap().len(), 10);
    drop(s);

    // One byte less: refused, clearly, and nothing written (no record, no LSN used).
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), cfg(size - 1)).unwrap();
    let len = s.open_segment().1;
    let e = s.put_batch(batch()).unwrap_err();
    assert!(e.is_user_error(), "{e:?}");
    assert!(
        matches!(e, StoreError::TooLarge { what: "commit_batch", limit, actual } if limit == size - 1 && actual == size),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("commit_batch_bytes_max") && msg.contains(&size.to_string()),
        "{msg}"
    );
    assert_eq!(s.count(), 0);
    assert_eq!(s.open_segment().1, len);
    assert_eq!(s.get("b0").unwrap(), None);
    // Smaller batches and single puts still go through.
    assert_eq!(s.put("single", doc(3)).unwrap(), 1);
    assert_eq!(
        s.put_batch(batch()[..5].to_vec()).unwrap(),
        vec![2, 3, 4, 5, 6]
    );
    drop(s);
    let s = Store::open(dir.path(), cfg(size - 1)).unwrap();
    assert_eq!(s.count(), 6);
    assert_eq!(s.get("b9").unwrap(), None);
}

#[test]
fn a_crisis_hold_from_the_engine_refuses_writes_naming_it_and_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    for i in 0..20 {
        s.put(&format!("d{i:02}"), doc(i)).unwrap();
    }
    let subject = StoreSubject::new(s.clone());
    subject
        .stop_writes(Some(
            "CRISIS, acknowledged data at risk: incident 4: file_unreadable on wal/x.seg",
        ))
        .unwrap();
    let err = s.put("new", doc(99)).unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly(_)), "{err:?}");
    assert!(
        err.to_string().contains("incident 4: file_unreadable"),
        "{err}"
    );
    assert!(s.delete("d01").is_err());
    assert!(s.put_batch(vec![("b".to_string(), doc(1))]).is_err());
    assert_eq!(s.get("d03").unwrap(), Some(doc(3)), "reads go on");
    assert!(
        s.stats().read_only.is_some_and(|r| r.contains("CRISIS")),
        "{:?}",
        s.stats().read_only
    );
    subject.stop_writes(None).unwrap();
    assert_eq!(s.put("new", doc(99)).unwrap(), 21);
    assert_eq!(s.stats().read_only, None);
}

fn issue_of<'a>(issues: &'a [heal::Issue], code: &str, file: &str) -> &'a heal::Issue {
    issues
        .iter()
        .find(|i| i.code == code && i.location.file.as_deref() == Some(file))
        .unwrap_or_else(|| panic!("no {code} in {file}: {issues:?}"))
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
    with.extend_from_slice(&partial);
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
    m.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 5]);
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

fn engine_over(subject: Arc<dyn Subject>) -> (heal::engine::Engine, heal::SimClock) {
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

fn wal_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Free space (the I/O quota) between `disk_critical_bytes_floor` and `disk_low_bytes_floor`: the quick check
/// reports `disk_space_low`, the engine compacts (there is room for the snapshot), the covered segments are removed
/// and their space given back, and every document reads back identical, live and after reopen.
#[test]
fn low_disk_space_is_healed_by_compaction_which_frees_the_covered_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        wal_bytes_max: 4 << 20, // no compaction of its own accord
        disk_low_bytes_floor: 2 << 20,
        disk_critical_bytes_floor: 256 << 10,
        ..small()
    };
    let io = cfg.io.clone();
    let s = Arc::new(Store::open(dir.path(), cfg.clone()).unwrap());
    // 100 documents, each overwritten 6 times: the log is far bigger than the table.
    let mut model = BTreeMap::new();
    for i in 0..600 {
        let id = format!("k{:03}", i % 100);
        s.put(&id, doc(i)).unwrap();
        model.insert(id, doc(i));
    }
    let before = s.stats();
    assert!(before.segments > 5 && before.compactions == 0, "{before:?}");
    let files_before = wal_files(dir.path());
    io.set_quota_bytes(Some(1 << 20));
    let free_before = s.free_bytes().unwrap();
    assert!(
        free_before >= s.compaction_bytes_needed(),
        "room for the snapshot"
    );

    let subject = StoreSubject::new(s.clone());
    let quick = run_check(&subject, Tier::Shallow);
    let low = quick
        .issues
        .iter()
        .find(|i| i.code == "disk_space_low")
        .unwrap_or_else(|| panic!("{:?}", quick.issues));
    assert!(low.summary.contains("disk_low_bytes_floor"), "{low:?}");
    s.put("still", doc(1)).unwrap(); // above the critical floor: writes go on
    model.insert("still".into(), doc(1));

    let (mut engine, clock) = engine_over(Arc::new(subject));
    let mut attempts = Vec::new();
    for _ in 0..3 {
        clock.advance(60_000_000);
        attempts.extend(engine.run_cycle().attempts);
        if s.stats().compactions > 0 {
            break;
        }
    }
    let compacted = attempts
        .iter()
        .find(|a| {
            a.attempt.strategy == "compact"
                && a.attempt.outcome == heal::learn::AttemptOutcome::Succeeded
        })
        .unwrap_or_else(|| panic!("{attempts:?}"));
    let rec = engine.incident(compacted.incident_id).unwrap().unwrap();
    assert!(
        rec.issues.iter().any(|i| i.code == "disk_space_low"),
        "compaction ran for the low-space incident: {rec:?}"
    );
    let after = s.stats();
    assert!(
        after.compactions >= 1 && after.snapshot_lsn.is_some(),
        "{after:?}"
    );
    assert!(
        after.wal_bytes < before.wal_bytes / 10 && after.segments == 1,
        "log shrank: {before:?} -> {after:?}"
    );
    let files_after = wal_files(dir.path());
    assert!(
        files_before.iter().all(|f| !files_after.contains(f)),
        "covered segments removed: {files_before:?} -> {files_after:?}"
    );
    let free_after = s.free_bytes().unwrap();
    assert!(free_after > free_before, "{free_before} -> {free_after}");
    let check = |s: &Store| {
        assert_eq!(s.count(), model.len());
        for (id, d) in &model {
            assert_eq!(s.get(id).unwrap().as_ref(), Some(d), "{id}");
        }
    };
    check(&s);
    drop(engine);
    io.set_quota_bytes(None);
    drop(Arc::into_inner(s).unwrap());
    let s = Store::open(dir.path(), cfg).unwrap();
    assert!(s.recovery_report().lost.is_empty());
    check(&s);
}

/// Free space below `disk_critical_bytes_floor`: writes are refused as read-only naming the floor, reads go on,
/// compaction is not offered (no room for its snapshot), and writes resume by themselves once space returns.
#[test]
fn below_the_critical_floor_reads_go_on_and_writes_resume_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        wal_bytes_max: 4 << 20,
        disk_low_bytes_floor: 2 << 20,
        disk_critical_bytes_floor: 256 << 10,
        ..small()
    };
    let io = cfg.io.clone();
    let s = Arc::new(Store::open(dir.path(), cfg).unwrap());
    fill(&s, 50);
    io.set_quota_bytes(Some(10 << 10));
    let e = s.put("new", doc(1)).unwrap_err();
    match &e {
        StoreError::ReadOnly(r @ ReadOnly::DiskSpace(d)) => assert!(
            d.floor == 256 << 10
                && r.to_string().starts_with("read-only: disk space")
                && r.to_string()
                    .contains(&format!("disk_critical_bytes_floor = {}", 256 << 10)),
            "{r}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(s.delete("f0001").is_err() && s.put_batch(vec![("b".into(), doc(2))]).is_err());
    all_there(&s, 50);
    assert_eq!(s.scan(None, 100).unwrap().len(), 50);
    let subject = StoreSubject::new(s.clone());
    let quick = run_check(&subject, Tier::Shallow);
    let crit = quick
        .issues
        .iter()
        .find(|i| i.code == "disk_space_critical")
        .unwrap_or_else(|| panic!("{:?}", quick.issues));
    assert!(
        subject
            .strategies()
            .iter()
            .all(|st| !st.can_repair(crit) || st.name() != "compact"),
        "no room for a snapshot: compaction must not be offered"
    );
    let (mut engine, clock) = engine_over(Arc::new(subject));
    clock.advance(60_000_000);
    engine.run_cycle();
    assert!(s.put("new", doc(1)).is_err(), "still read-only");
    all_there(&s, 50);
    // Space returns: the next write goes through without anyone lifting anything.
    io.set_quota_bytes(None);
    s.put("new", doc(1)).unwrap();
    assert!(s.stats().read_only.is_none());
    assert_eq!(s.get("new").unwrap(), Some(doc(1)));
    all_there(&s, 50);
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

#[test]
fn a_damaged_identity_sidecar_is_found_by_the_scrub_and_rewritten_so_a_later_loss_is_still_named() {
    let seed = degraded_seed(0xDE9_0005);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let sealed = degraded_fixture(dir.path());
    let f = &sealed[rand::Rng::random_range(&mut rng, 0..sealed.len())];
    let ids = dir.path().join(format!("{}.ids", f.rel));
    let len = std::fs::metadata(&ids).unwrap().len();
    let at = rand::Rng::random_range(&mut rng, 0..len);
    eprintln!("flipping byte {at} of {}.ids", f.rel);
    flip(&ids, at, 1);
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let subject = StoreSubject::new(s.clone());
    let out = run_check(&subject, Tier::Comprehensive);
    let issue = out
        .issues
        .iter()
        .find(|i| i.code == "identity_sidecar_damaged")
        .unwrap_or_else(|| panic!("the scrub finds the damaged sidecar: {out:?}"))
        .clone();
    assert_eq!(issue.resource, format!("{}.ids", f.rel));
    assert!(!issue.data_at_risk, "nothing is lost: {issue:?}");
    let strategy = subject
        .strategies()
        .into_iter()
        .find(|st| st.can_repair(&issue))
        .expect("a strategy rewrites it");
    strategy.repair(&issue).unwrap();
    strategy.validate(&issue).unwrap();
    let out = run_check(&subject, Tier::Comprehensive);
    assert!(out.passed, "{out:?}");
    drop((subject, strategy));
    Arc::into_inner(s).unwrap().close().unwrap();
    // The rewritten sidecar names the file's documents when the file is lost.
    std::fs::remove_file(dir.path().join(&f.rel)).unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let lost = assert_degraded(&s, &f.rel, true);
    assert_eq!(lost.lsn_range, f.lsn_range);
}
