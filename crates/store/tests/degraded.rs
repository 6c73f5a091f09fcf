//! Damage beyond every redundancy, found on open: the store opens degraded, refuses writes and every read a lost
//! record may have changed, names what was lost, and the engine escalates it; accepting the loss ends it.

use std::path::Path;
use std::sync::Arc;

use heal::{Subject, SystemClock, Tier};
use store::{ReadOnly, Store, StoreError, StoreSubject};

mod common;
use common::*;

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

/// Large enough that a `put_batch` of a few documents stays in one open segment, never rotated or compacted.
fn roomy() -> store::StoreConfig {
    store::StoreConfig {
        segment_bytes_max: 1 << 20,
        wal_bytes_max: 4 << 20,
        ..small()
    }
}

/// Document `i` of the big batch: about 3 KiB, so four of them span several 4 KiB pages.
fn big(i: usize) -> store::Document {
    store::Document::text(format!("big {i} {}", "y".repeat(3000 + i)))
}

/// Three one-document commits (`f0000`..`f0002`), one `put_batch` of four big documents (`b0`..`b3`) and `later`
/// one-document commits (`l0`..), the store then dropped without a clean close: the directory, the open segment's
/// id and the big batch's LSNs. The open segment carries zero-filled space past its records (added here where the
/// filesystem does not get it).
fn batch_then_crash(later: usize) -> (tempfile::TempDir, u64, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), roomy()).unwrap();
    fill(&s, 3);
    let lsns = s
        .put_batch((0..4).map(|i| (format!("b{i}"), big(i))).collect())
        .unwrap();
    for i in 0..later {
        s.put(&format!("l{i}"), doc(100 + i)).unwrap();
    }
    let (id, len) = s.open_segment();
    drop(s);
    for e in ["seg", "mir"] {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join(format!("wal/{id:016}.{e}")))
            .unwrap();
        if f.metadata().unwrap().len() == len {
            f.set_len(len + (64 << 10)).unwrap();
        }
    }
    (dir, id, lsns)
}

#[test]
fn a_power_loss_mid_batch_opens_healthy_with_the_torn_batch_cut_and_every_acknowledged_record() {
    let seed = degraded_seed(0xBA7C);
    let mut past_the_hole = 0;
    for round in 0..8 {
        let (dir, id, lsns) = batch_then_crash(0);
        let starts =
            record_offsets(&std::fs::read(dir.path().join(format!("wal/{id:016}.seg"))).unwrap());
        // An earlier page of the last batch still zero in both copies, a later page of it durable.
        let f = store::fault::Injector::new(seed + round)
            .hole_in_batch(dir.path(), 0)
            .unwrap();
        let ctx = format!("seed={} {f:?}", seed + round);
        // Whether a whole record of the batch lies past the hole (else the hole reaches into the last record and
        // this is a torn tail without the batch rule).
        let hole_end = (f.offset.unwrap() + f.len.unwrap()) as usize;
        let resumes = starts.iter().any(|&(at, _)| at >= hole_end);
        let s = Arc::new(Store::open(dir.path(), roomy()).unwrap());
        let r = s.recovery_report();
        assert!(r.lost.is_empty(), "{ctx}: {:?}", r.lost);
        assert!(
            !r.issues.iter().any(|i| i.code == "acknowledged_data_lost"),
            "{ctx}"
        );
        assert!(r.issues.iter().any(|i| i.code == "torn_tail"), "{ctx}");
        assert_eq!(s.stats().read_only, None, "{ctx}");
        // Every acknowledged record of the earlier commits, byte for byte; of the torn batch a prefix at most.
        all_there(&s, 3);
        let kept = (0..4)
            .take_while(|&i| s.get(&format!("b{i}")).unwrap() == Some(big(i)))
            .count();
        assert!(kept < 4, "{ctx}: the hole's record cannot survive");
        for i in kept..4 {
            assert_eq!(s.get(&format!("b{i}")).unwrap(), None, "{ctx}: b{i}");
        }
        let t = r.torn_tail.clone().expect("a torn tail");
        assert_eq!(t.file, format!("wal/{id:016}.seg"), "{ctx}");
        assert!(t.offset <= f.offset.unwrap(), "{ctx}: {t:?}");
        assert_eq!(
            t.reason.contains("batch in flight"),
            resumes,
            "{ctx}: {t:?}"
        );
        if resumes {
            past_the_hole += 1;
            assert_eq!(t.lsn_range, (lsns[kept], lsns[3]), "{ctx}: {t:?}");
        } else {
            assert_eq!(t.lsn_range.0, lsns[kept], "{ctx}: {t:?}");
            assert!(t.lsn_range.1 < lsns[3], "{ctx}: {t:?}");
        }
        // Healthy: writable, the checks pass, and a reopen is clean.
        s.put("after", doc(50)).unwrap();
        let subject = StoreSubject::new(s.clone());
        subject.drain_issues();
        let out = run_check(&subject, Tier::Comprehensive);
        assert!(out.passed, "{ctx}: {out:?}");
        drop(subject);
        Arc::into_inner(s).unwrap().close().unwrap();
        let s = Store::open(dir.path(), roomy()).unwrap();
        let r = s.recovery_report();
        assert!(r.lost.is_empty() && r.torn_tail.is_none(), "{ctx}: {r:?}");
        all_there(&s, 3);
        assert_eq!(s.get("after").unwrap(), Some(doc(50)));
        for i in 0..4 {
            let want = (i < kept).then(|| big(i));
            assert_eq!(s.get(&format!("b{i}")).unwrap(), want, "{ctx}: b{i}");
        }
    }
    // The seeded pages put valid records of the batch past the hole (the batch rule at work) in most rounds.
    assert!(
        past_the_hole > 0,
        "seed={seed}: no round left a record past the hole"
    );
}

/// The offset and LSN of every record of a segment's bytes, in order, up to the first that does not verify.
fn record_offsets(seg: &[u8]) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    let mut pos = 32;
    while let store::codec::Decoded::Ok(r, n) = store::codec::decode_record(&seg[pos..], 1 << 24) {
        out.push((pos, r.lsn));
        pos += n;
    }
    out
}

#[test]
fn a_hole_in_a_batch_followed_by_a_later_batch_is_still_a_loss() {
    let seed = degraded_seed(0xBA7D);
    // The big batch followed by one more commit (it was durable before that one was written), and an older big
    // batch followed by two more.
    for (later, round) in [(1, 0), (2, 1), (1, 2)] {
        let (dir, id, lsns) = batch_then_crash(later);
        let f = store::fault::Injector::new(seed + round)
            .hole_in_batch(dir.path(), later)
            .unwrap();
        let ctx = format!("seed={} {f:?}", seed + round);
        let s = Store::open(dir.path(), roomy()).unwrap();
        let r = s.recovery_report();
        assert_eq!(r.lost.len(), 1, "{ctx}: {r:?}");
        assert_eq!(r.lost[0].file, format!("wal/{id:016}.seg"), "{ctx}");
        assert!(lsns.contains(&r.lost[0].lsn_range.0), "{ctx}: {:?}", r.lost);
        assert!(r.torn_tail.is_none(), "{ctx}: {r:?}");
        assert!(
            matches!(
                s.put("x", doc(1)),
                Err(StoreError::ReadOnly(ReadOnly::Lost(_)))
            ),
            "{ctx}"
        );
        all_there(&s, 3);
        // The later commits survive the hole.
        for i in 0..later {
            assert_eq!(
                s.get(&format!("l{i}")).unwrap(),
                Some(doc(100 + i)),
                "{ctx}"
            );
        }
    }
}

/// Rewrites the open segment `id` and its mirror as a medic before batch marks wrote them (header version 1, every
/// record unmarked, zero-filled space after), and both manifest copies as version 2.
fn as_written_before_batch_marks(dir: &Path, id: u64) {
    let with_crc = |b: &mut Vec<u8>, at: usize| {
        let crc = crc32c::crc32c(&b[..at]);
        b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    };
    for e in ["seg", "mir"] {
        let path = dir.join(format!("wal/{id:016}.{e}"));
        let marked = std::fs::read(&path).unwrap();
        let mut old = marked[..32].to_vec();
        old[8..12].copy_from_slice(&1u32.to_le_bytes());
        with_crc(&mut old, 28);
        for (at, _) in record_offsets(&marked) {
            let store::codec::Decoded::Ok(r, _) =
                store::codec::decode_record(&marked[at..], 1 << 24)
            else {
                unreachable!("record_offsets lists valid records")
            };
            assert!(r.batch.is_some());
            store::codec::encode_record(r.lsn, r.kind, &r.id, &r.doc, &mut old);
        }
        old.resize(old.len() + (64 << 10), 0);
        std::fs::write(&path, old).unwrap();
    }
    for copy in ["MANIFEST-A", "MANIFEST-B"] {
        let path = dir.join(copy);
        let mut b = std::fs::read(&path).unwrap();
        b[8..12].copy_from_slice(&2u32.to_le_bytes());
        let n = b.len() - 4;
        with_crc(&mut b, n);
        std::fs::write(&path, b).unwrap();
    }
}

/// Whether the first record of a segment file carries a batch mark.
fn first_record_marked(path: &Path) -> bool {
    let b = std::fs::read(path).unwrap();
    match store::codec::decode_record(&b[32..], 1 << 24) {
        store::codec::Decoded::Ok(r, _) => r.batch.is_some(),
        other => panic!("{}: {other:?}", path.display()),
    }
}

#[test]
fn a_segment_written_before_batch_marks_keeps_the_old_rule_and_the_next_segment_has_marks() {
    // The power-loss image in a segment without marks: a hole from the last batch's start to the end of its page.
    let (dir, id, lsns) = batch_then_crash(0);
    as_written_before_batch_marks(dir.path(), id);
    let seg = std::fs::read(dir.path().join(format!("wal/{id:016}.seg"))).unwrap();
    let (b0, _) = *record_offsets(&seg)
        .iter()
        .find(|(_, l)| *l == lsns[0])
        .unwrap();
    for e in ["seg", "mir"] {
        let path = dir.path().join(format!("wal/{id:016}.{e}"));
        let mut b = std::fs::read(&path).unwrap();
        b[b0..(b0 / 4096 + 1) * 4096].fill(0);
        std::fs::write(&path, b).unwrap();
    }
    let s = Store::open(dir.path(), roomy()).unwrap();
    let r = s.recovery_report();
    assert_eq!(r.manifest_upgraded_from, Some(2));
    assert_eq!(r.lost.len(), 1, "{r:?}");
    assert_eq!(r.lost[0].lsn_range.0, lsns[0], "{r:?}");
    assert!(r.torn_tail.is_none(), "{r:?}");
    drop(s);

    // Without the hole: it opens whole, and the first batch seals it (a power loss could tear a batch into its
    // zero-filled space, which only marks tell from damage): the segment keeps exactly its unmarked records, the
    // batch goes to a new segment with marks.
    let (dir, id, lsns) = batch_then_crash(0);
    as_written_before_batch_marks(dir.path(), id);
    let s = Store::open(dir.path(), roomy()).unwrap();
    let r = s.recovery_report();
    assert!(r.lost.is_empty() && r.torn_tail.is_none(), "{r:?}");
    assert_eq!(r.manifest_upgraded_from, Some(2));
    s.put("old-format", doc(60)).unwrap();
    let (new_id, _) = s.open_segment();
    assert_ne!(new_id, id);
    assert!(first_record_marked(
        &dir.path().join(format!("wal/{new_id:016}.seg"))
    ));
    let seg = std::fs::read(dir.path().join(format!("wal/{id:016}.seg"))).unwrap();
    let records = record_offsets(&seg);
    assert_eq!(
        records.len(),
        3 + lsns.len(),
        "every record kept, none appended"
    );
    for (at, _) in records {
        assert!(
            matches!(store::codec::decode_record(&seg[at..], 1 << 24), store::codec::Decoded::Ok(ref r, _) if r.batch.is_none())
        );
    }
    s.put("new-format", doc(61)).unwrap();
    assert_eq!(s.open_segment().0, new_id);
    s.close().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    let r = s.recovery_report();
    assert!(
        r.lost.is_empty() && r.torn_tail.is_none() && r.manifest_upgraded_from.is_none(),
        "{r:?}"
    );
    all_there(&s, 3);
    for i in 0..4 {
        assert_eq!(s.get(&format!("b{i}")).unwrap(), Some(big(i)));
    }
    assert_eq!(s.get("old-format").unwrap(), Some(doc(60)));
    assert_eq!(s.get("new-format").unwrap(), Some(doc(61)));
}

/// The open segment's identity journal as it is, to put back after a fault that cut it.
fn journal_of(dir: &Path, id: u64) -> (std::path::PathBuf, Vec<u8>) {
    let p = dir.join(format!("wal/{id:016}.seg.ids"));
    let b = std::fs::read(&p).unwrap();
    (p, b)
}

/// Opened with the acknowledged big batch's records gone from both copies and its identity frame intact: a loss
/// naming the batch's documents (writes refused), never a torn tail cut silently; the earlier commits all there.
fn assert_batch_lost(dir: &Path, id: u64, lsns: &[u64], ctx: &str) {
    let s = Store::open(dir, roomy()).unwrap();
    let r = s.recovery_report();
    assert!(r.torn_tail.is_none(), "{ctx}: {r:?}");
    assert_eq!(r.lost.len(), 1, "{ctx}: {r:?}");
    let l = &r.lost[0];
    assert_eq!(l.file, format!("wal/{id:016}.seg"), "{ctx}");
    assert!(lsns.contains(&l.lsn_range.0), "{ctx}: {l:?}");
    assert!(lsns.contains(&l.lsn_range.1), "{ctx}: {l:?}");
    let ids = l.ids.clone().expect("the journal names the lost documents");
    assert!(
        ids.iter().all(|k| k.starts_with('b')) && !ids.is_empty(),
        "{ctx}: {ids:?}"
    );
    assert!(
        matches!(
            s.put("x", doc(1)),
            Err(StoreError::ReadOnly(ReadOnly::Lost(_)))
        ),
        "{ctx}"
    );
    all_there(&s, 3);
}

#[test]
fn an_acknowledged_last_batch_zeroed_in_both_copies_is_a_loss_its_identity_frame_names() {
    let seed = degraded_seed(0xBA7E);
    for round in 0..4 {
        let (dir, id, lsns) = batch_then_crash(0);
        // The batch was acknowledged (put_batch returned), so its identity frame is in the journal; damage zeroes a
        // page of it in both copies afterwards, which looks like a power loss mid-batch to the batch rule alone.
        let (journal, frames) = journal_of(dir.path(), id);
        let f = store::fault::Injector::new(seed + round)
            .hole_in_batch(dir.path(), 0)
            .unwrap();
        std::fs::write(&journal, &frames).unwrap();
        assert_batch_lost(
            dir.path(),
            id,
            &lsns,
            &format!("seed={} {f:?}", seed + round),
        );
    }
}

#[test]
fn an_acknowledged_last_record_zeroed_in_both_copies_is_a_loss_and_without_its_frame_a_torn_end() {
    let (dir, id, lsns) = batch_then_crash(0);
    let seg = dir.path().join(format!("wal/{id:016}.seg"));
    let offsets = record_offsets(&std::fs::read(&seg).unwrap());
    let (at, lsn) = *offsets.last().unwrap();
    assert_eq!(lsn, lsns[3]);
    let end = {
        let b = std::fs::read(&seg).unwrap();
        let store::codec::Decoded::Ok(_, n) = store::codec::decode_record(&b[at..], 1 << 24) else {
            unreachable!()
        };
        at + n
    };
    let zero = |dir: &Path| {
        for e in ["seg", "mir"] {
            let p = dir.join(format!("wal/{id:016}.{e}"));
            let mut b = std::fs::read(&p).unwrap();
            b[at..end].fill(0);
            std::fs::write(&p, b).unwrap();
        }
    };
    // Nothing in either copy past the last good record: zeros, as if never written. The journal says it was durable.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    zero(dir.path());
    let s = Store::open(dir.path(), roomy()).unwrap();
    let r = s.recovery_report();
    assert_eq!(r.lost.len(), 1, "{r:?}");
    assert_eq!(r.lost[0].lsn_range, (lsns[3], lsns[3]), "{r:?}");
    assert_eq!(r.lost[0].ids, Some(vec!["b3".to_string()]), "{r:?}");
    assert_eq!(s.get("b2").unwrap(), Some(big(2)));
    drop(s);
    // A degraded open leaves the files as found: the next open reports the same loss.
    let s = Store::open(dir.path(), roomy()).unwrap();
    assert_eq!(s.recovery_report().lost.len(), 1);
    assert_eq!(s.recovery_report().lost[0].lsn_range, (lsns[3], lsns[3]));
    drop(s);
    // The same bytes with the journal cut before the record's frame (a power loss before the batch was durable
    // writes no frame): nothing was acknowledged past the good records, so the store opens healthy without it.
    zero(copy.path());
    let (journal, frames) = journal_of(copy.path(), id);
    std::fs::write(&journal, &frames[..frames_below(&frames, lsns[0])]).unwrap();
    let s = Store::open(copy.path(), roomy()).unwrap();
    let r = s.recovery_report();
    assert!(r.lost.is_empty(), "{r:?}");
    assert_eq!(s.stats().read_only, None);
    assert_eq!(s.get("b3").unwrap(), None);
    assert_eq!(s.get("b2").unwrap(), Some(big(2)));
    all_there(&s, 3);
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The length of a journal's leading frames (`MIDF` | len u32 | crc u32 | first u64 | last u64 | ...) whose interval
/// ends below `lsn`.
fn frames_below(b: &[u8], lsn: u64) -> usize {
    let mut pos = 0;
    while pos + 28 <= b.len() && &b[pos..pos + 4] == b"MIDF" {
        let len = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let last = u64::from_le_bytes(b[pos + 20..pos + 28].try_into().unwrap());
        if last >= lsn {
            break;
        }
        pos += 12 + len;
    }
    pos
}

#[test]
fn an_acknowledged_last_record_zeroed_after_earlier_damage_is_a_loss_of_its_own() {
    let (dir, id, lsns) = batch_then_crash(0);
    let seg = std::fs::read(dir.path().join(format!("wal/{id:016}.seg"))).unwrap();
    let offsets = record_offsets(&seg);
    let (a2, l2) = offsets[1];
    let (last_at, last_lsn) = *offsets.last().unwrap();
    assert_eq!(last_lsn, lsns[3]);
    for e in ["seg", "mir"] {
        let p = dir.path().join(format!("wal/{id:016}.{e}"));
        let mut b = std::fs::read(&p).unwrap();
        b[a2 + 20..a2 + 30].iter_mut().for_each(|x| *x ^= 0xff);
        let end = b[last_at..].iter().rposition(|&x| x != 0).unwrap() + last_at + 1;
        b[last_at..end].fill(0);
        std::fs::write(&p, b).unwrap();
    }
    let s = Store::open(dir.path(), roomy()).unwrap();
    let r = s.recovery_report();
    assert!(r.torn_tail.is_none(), "{:?}", r.torn_tail);
    assert_eq!(r.lost.len(), 2, "{:?}", r.lost);
    assert_eq!(r.lost[0].lsn_range, (l2, l2), "{:?}", r.lost);
    assert_eq!(r.lost[1].lsn_range, (lsns[3], lsns[3]), "{:?}", r.lost);
    assert_eq!(r.lost[1].ids, Some(vec!["b3".to_string()]), "{:?}", r.lost);
    assert_eq!(s.get("b2").unwrap(), Some(big(2)));
}
