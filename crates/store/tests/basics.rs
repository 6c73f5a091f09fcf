//! The store's basic promises through its public API: documents survive reopen exactly, compaction bounds the log,
//! bad input gets clear errors naming the limit, group commit shares flushes, batches are all or nothing, and a model
//! check against a `BTreeMap` across reopen, compaction and damage.

use std::collections::BTreeMap;
use std::sync::Arc;

use heal::{Subject, SystemClock, Tier};
use proptest::prelude::*;
use store::{Document, Store, StoreConfig, StoreError, StoreSubject};

mod common;
use common::*;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..20, any::<u16>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..20).prop_map(Op::Delete),
        1 => Just(Op::Reopen),
        1 => Just(Op::Compact),
        1 => (any::<u16>(), any::<u32>()).prop_map(|(f, o)| Op::DamageAndReopen(f, o)),
    ]
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

#[test]
fn put_batch_over_commit_batch_bytes_max_is_refused_whole_naming_the_limit_and_size() {
    let batch =
        || -> Vec<(String, Document)> { (0..10).map(|i| (format!("b{i}"), doc(i))).collect() };
    // The batch's size as queued for the WAL: what it grows the log by, less the batch mark of each record.
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    let before = s.open_segment().1;
    s.put_batch(batch()).unwrap();
    let size = s.open_segment().1 - before - 10 * store::codec::BATCH_MARK_BYTES as u64;
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

/// A store of 1 MiB segments holding one put, with its config, fault handle and open segment's id.
fn one_segment_store(
    dir: &std::path::Path,
) -> (StoreConfig, std::sync::Arc<store::IoFaults>, Store, u64) {
    let cfg = StoreConfig {
        segment_bytes_max: 1 << 20,
        wal_bytes_max: 8 << 20,
        ..small()
    };
    let io = cfg.io.clone();
    let s = Store::open(dir, cfg.clone()).unwrap();
    s.put("first", doc(0)).unwrap();
    let (id, _) = s.open_segment();
    (cfg, io, s, id)
}

/// With the mirror on, commits go into zero-filled space past the records: on a filesystem whose one flush covers
/// both copies (ext4, XFS; same device), one flush per commit instead of two. What a crash leaves (zero-filled space
/// past the last record, in both copies) reopens with every record, no torn tail and no mirror damage, and a clean
/// close cuts the copies back to their records.
#[test]
fn commits_into_zero_filled_space_take_one_flush_each_and_reopen_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, io, s, id) = one_segment_store(dir.path());
    let seg = dir.path().join(format!("wal/{id:016}.seg"));
    let mir = dir.path().join(format!("wal/{id:016}.mir"));
    let one = store::io::one_flush_covers_both(
        &std::fs::File::open(&seg).unwrap(),
        &std::fs::File::open(&mir).unwrap(),
    );
    let before = io.fsyncs();
    for i in 1..=50 {
        s.put(&format!("a{i}"), doc(i)).unwrap();
    }
    let flushes = io.fsyncs() - before;
    let (_, len) = s.open_segment();
    if one {
        assert!(flushes < 75, "{flushes} flushes for 50 commits");
        for p in [&seg, &mir] {
            assert!(
                std::fs::metadata(p).unwrap().len() > len,
                "zero-filled room"
            );
        }
    } else {
        assert!(flushes >= 100, "{flushes} flushes for 50 commits");
    }
    assert_eq!(s.tail_excess_bytes(), 0, "zero-filled space is not a tail");
    assert!(s.torn_tail_now().is_none());
    drop(s); // as a crash leaves the files
    let s = Store::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(s.count(), 51);
    let r = s.recovery_report();
    assert!(r.torn_tail.is_none() && !r.mirror_rewritten, "{r:?}");
    for i in 1..=50 {
        assert_eq!(s.get(&format!("a{i}")).unwrap(), Some(doc(i)));
    }
    s.put("after", doc(51)).unwrap();
    let (_, len) = s.open_segment();
    s.close().unwrap();
    for p in [&seg, &mir] {
        assert_eq!(
            std::fs::metadata(p).unwrap().len(),
            len,
            "cut to its records"
        );
    }
    let s = Store::open(dir.path(), cfg).unwrap();
    assert_eq!(s.count(), 52);
}

/// A mirror deleted while running is recreated from the held data without zero-filled space: the next commit must
/// not take it for zero-filled (a commit there changes the recreated file's size, which one flush of the main copy
/// would not make durable), so it zero-fills both copies anew first (flushing both) and only then commits with one
/// flush.
#[test]
fn a_recreated_mirror_is_zero_filled_anew_before_one_flush_commits_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, io, s, id) = one_segment_store(dir.path());
    let mir = dir.path().join(format!("wal/{id:016}.mir"));
    std::fs::remove_file(&mir).unwrap();
    let actions = s.repair_open_segment().unwrap();
    assert!(
        actions.iter().any(|a| a.contains("recreated")),
        "{actions:?}"
    );
    let (_, len) = s.open_segment();
    assert_eq!(std::fs::metadata(&mir).unwrap().len(), len);
    let before = io.fsyncs();
    s.put("second", doc(1)).unwrap();
    assert!(
        io.fsyncs() - before >= 2,
        "both copies flushed before the commit relies on one flush"
    );
    let (_, len) = s.open_segment();
    assert!(std::fs::metadata(&mir).unwrap().len() >= len);
    drop(s);
    let s = Store::open(dir.path(), cfg).unwrap();
    assert_eq!(s.count(), 2);
    assert!(!s.recovery_report().mirror_rewritten);
}

/// The zero-fill helper keeps the zero-filled space ahead of the commits: after the first commit into a segment
/// (which finds nothing zero-filled yet and fills one chunk itself), a long run of commits never zero-fills on the
/// commit path, the copies stay zero-filled past the records, and everything reopens.
#[test]
fn a_long_run_of_commits_zero_fills_ahead_off_the_commit_path() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        segment_bytes_max: 16 << 20,
        wal_bytes_max: 64 << 20,
        ..small()
    };
    let s = Store::open(dir.path(), cfg.clone()).unwrap();
    let big = |i: usize| Document {
        text: format!("{i} {}", "z".repeat(2000)),
        ..doc(i)
    };
    s.put("first", big(0)).unwrap();
    let (id, _) = s.open_segment();
    let seg = dir.path().join(format!("wal/{id:016}.seg"));
    let mir = dir.path().join(format!("wal/{id:016}.mir"));
    let one = store::io::one_flush_covers_both(
        &std::fs::File::open(&seg).unwrap(),
        &std::fs::File::open(&mir).unwrap(),
    );
    let inline_first = s.stats().zero_fills_inline;
    // About 5 MiB in 2 KiB commits: past the first chunk many times over, and past the first request's 4 MiB.
    for i in 1..=2_500 {
        s.put(&format!("d{i}"), big(i)).unwrap();
    }
    let st = s.stats();
    let (id_after, len) = s.open_segment();
    assert_eq!(id_after, id, "no rotation in this run");
    if one {
        assert_eq!(
            inline_first, 1,
            "the first commit found nothing zero-filled"
        );
        assert_eq!(
            st.zero_fills_inline, inline_first,
            "the helper kept up: no commit zero-filled after the first"
        );
        for p in [&seg, &mir] {
            assert!(
                std::fs::metadata(p).unwrap().len() > len,
                "zero-filled room"
            );
        }
    } else {
        assert_eq!(st.zero_fills_inline, 0, "no zero-filling without one flush");
    }
    assert_eq!(s.tail_excess_bytes(), 0);
    drop(s); // as a crash leaves the files
    let s = Store::open(dir.path(), cfg).unwrap();
    assert_eq!(s.count(), 2_501);
    let r = s.recovery_report();
    assert!(r.torn_tail.is_none() && !r.mirror_rewritten, "{r:?}");
    assert_eq!(s.get("d2500").unwrap(), Some(big(2500)));
}

/// Rotations and a close while the zero-fill helper is at work, with writers racing: every sealed segment is exactly
/// its records (its parity verifies), the closed open segment is cut to its records, and a reopen finds everything.
#[test]
fn rotation_and_close_while_the_zero_fill_helper_runs_leave_exact_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        segment_bytes_max: 256 << 10,
        wal_bytes_max: 64 << 20,
        ..small()
    };
    let s = std::sync::Arc::new(Store::open(dir.path(), cfg.clone()).unwrap());
    let big = |i: usize| Document {
        text: format!("{i} {}", "r".repeat(3000)),
        ..doc(i)
    };
    let writers: Vec<_> = (0..4usize)
        .map(|w| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..150 {
                    s.put(&format!("w{w}-{i}"), big(w * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    for h in writers {
        h.join().unwrap();
    }
    assert!(s.stats().rotations >= 5, "{:?}", s.stats());
    s.durable_layout_intact().unwrap();
    for f in s.immutable_files() {
        let v = s.verify_file(&f, None, true);
        assert!(
            v.bad_blocks.is_empty() && v.parity_mismatches.is_empty() && v.rebuildable_or_clean(),
            "{f:?}: {v:?}"
        );
        assert!(v.sidecar_error.is_none(), "{f:?}: {v:?}");
    }
    let (id, len) = s.open_segment();
    std::sync::Arc::into_inner(s).unwrap().close().unwrap();
    for p in [format!("wal/{id:016}.seg"), format!("wal/{id:016}.mir")] {
        assert_eq!(
            std::fs::metadata(dir.path().join(p)).unwrap().len(),
            len,
            "cut to its records on close"
        );
    }
    let s = Store::open(dir.path(), cfg).unwrap();
    assert_eq!(s.count(), 600);
    let r = s.recovery_report();
    assert!(r.torn_tail.is_none() && r.lost.is_empty(), "{r:?}");
    assert_eq!(s.get("w3-149").unwrap(), Some(big(3149)));
}

/// The zero-fill helper writes through the store's fault hooks: when the disk fills while it zero-fills, its chunk
/// fails (it publishes nothing), the next commit finds no space and is refused with nothing acknowledged lost, and once
/// space returns commits zero-fill and succeed again; a reopen holds every acknowledged document.
#[test]
fn the_zero_fill_helper_runs_out_of_space_through_the_fault_hooks_and_commits_recover() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        segment_bytes_max: 64 << 20,
        wal_bytes_max: 256 << 20,
        ..small()
    };
    let io = cfg.io.clone();
    let s = Store::open(dir.path(), cfg.clone()).unwrap();
    let (id, _) = s.open_segment();
    let one = store::io::one_flush_covers_both(
        &std::fs::File::open(dir.path().join(format!("wal/{id:016}.seg"))).unwrap(),
        &std::fs::File::open(dir.path().join(format!("wal/{id:016}.mir"))).unwrap(),
    );
    // Slow writes: the helper, asked by the first commit, is still in its first write when the disk fills.
    io.set_latency_us(200_000);
    s.put("first", doc(0)).unwrap();
    io.set_quota_bytes(Some(4096));
    std::thread::sleep(std::time::Duration::from_millis(600));
    io.set_latency_us(0);
    let refused = s.put("second", doc(1));
    if one {
        assert!(
            matches!(refused, Err(StoreError::ReadOnly(_))),
            "the helper took the last bytes: {refused:?}"
        );
        assert_eq!(s.stats().zero_fills_inline, 1);
    }
    io.set_quota_bytes(None);
    for i in 2..50 {
        s.put(&format!("d{i}"), doc(i)).unwrap();
    }
    assert_eq!(s.tail_excess_bytes(), 0);
    drop(s);
    let s = Store::open(dir.path(), cfg).unwrap();
    let r = s.recovery_report();
    assert!(r.lost.is_empty() && r.torn_tail.is_none(), "{r:?}");
    assert_eq!(s.get("first").unwrap(), Some(doc(0)));
    assert_eq!(s.get("d49").unwrap(), Some(doc(49)));
    assert_eq!(s.count(), 49 + usize::from(refused.is_ok()));
}
