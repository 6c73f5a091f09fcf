//! The environment failing the store: disk space running out (at any byte), a failed fsync that poisons the store
//! and its recovery, and the engine's CRISIS hold — reads go on, writes resume when the cause is gone.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use heal::{Subject, Tier};
use store::{ReadOnly, Store, StoreConfig, StoreError, StoreSubject};

mod common;
use common::*;

fn wal_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
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

/// Free space (the I/O quota) between `disk_critical_bytes_floor` and `disk_low_bytes_floor`: the quick check
/// reports `disk_space_low`, the engine compacts (there is room for the snapshot), the covered segments are removed
/// and their space given back, and every document reads back identical, live and after reopen.
#[test]
fn low_disk_space_is_healed_by_compaction_which_frees_the_covered_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        wal_bytes_max: 4 << 20, // no compaction of its own accord
        // Just above the 1 MiB quota set below: low before the compaction, above the floor once it freed the log.
        disk_low_bytes_floor: (1 << 20) + (32 << 10),
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
