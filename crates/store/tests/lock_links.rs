//! Two writers never share a data directory, whatever is done to `LOCK`; and no data file is ever reached through a
//! symbolic link — one planted before open is refused naming it and its target, one planted while running is found
//! by the checks and replaced by a real file, never written through.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use heal::{Subject, Tier};
use store::lock::{LockCheck, WriterDoubt};
use store::{Store, StoreError, StoreSubject};

mod common;
use common::*;

fn holder_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("LOCK")).unwrap_or_default()
}

/// The LOCK removed under a live store: a second opener is refused (the kernel lock on the directory itself
/// stands) naming the live holder, the heartbeat writes LOCK back, and both writers never interleave.
#[test]
fn a_removed_lock_never_lets_a_second_opener_in_and_is_written_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    for i in 0..20 {
        s.put(&format!("a{i}"), doc(i)).unwrap();
    }
    std::fs::remove_file(dir.path().join("LOCK")).unwrap();
    match Store::open(dir.path(), small()) {
        Err(StoreError::Locked { holder }) => assert!(
            holder.contains(&format!("pid {}", std::process::id())),
            "the live holder is named even without LOCK: {holder}"
        ),
        other => panic!("a second writer opened the directory: {other:?}"),
    }
    assert!(
        !dir.path().join("LOCK").exists(),
        "the refused opener wrote nothing"
    );
    match s.check_lock().unwrap() {
        LockCheck::Restored(found) => assert!(found.contains("missing"), "{found}"),
        other => panic!("{other:?}"),
    }
    let h = store::lock::read_holder(dir.path()).expect("LOCK written back");
    assert_eq!(h.pid, std::process::id());
    assert!(!h.closed);
    assert_eq!(s.check_lock().unwrap(), LockCheck::Fresh);
    match Store::open(dir.path(), small()) {
        Err(StoreError::Locked { holder }) => {
            assert!(holder.contains(&format!("pid {}", std::process::id())))
        }
        other => panic!("{other:?}"),
    }
    s.put("after", doc(99)).unwrap();
    s.close().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    assert!(!s.recovery_report().previous_holder_crashed);
    assert_eq!(s.count(), 21);
}

/// Writes refresh (and so check) LOCK at most every 5 s: a LOCK removed under a store that is only written to is
/// written back by a write within that time.
#[test]
fn writes_write_a_removed_lock_back_within_a_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    s.put("a", doc(1)).unwrap();
    std::fs::remove_file(dir.path().join("LOCK")).unwrap();
    let t0 = std::time::Instant::now();
    let mut i = 0;
    while !dir.path().join("LOCK").exists() {
        assert!(
            t0.elapsed() < std::time::Duration::from_millis(6_000),
            "not written back"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
        s.put(&format!("w{i}"), doc(i)).unwrap();
        i += 1;
    }
    let h = store::lock::read_holder(dir.path()).unwrap();
    assert_eq!(h.pid, std::process::id());
}

/// LOCK names a holder on another host (one that judged this process gone and took the directory over): this
/// process can no longer prove it is the only writer — writes are refused with the typed reason, reads go on, and a
/// close leaves the other holder's LOCK alone.
#[test]
fn a_takeover_by_another_host_stops_writes_and_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    for i in 0..10 {
        s.put(&format!("a{i}"), doc(i)).unwrap();
    }
    let now = store::lock::now_us();
    let theirs =
        format!("pid=4242 host=some-other-host started_us={now} heartbeat_us={now} closed=false\n");
    std::fs::write(dir.path().join("LOCK"), &theirs).unwrap();
    match s.check_lock() {
        Err(StoreError::NotSoleWriter(WriterDoubt::TakenOver { holder })) => {
            assert!(holder.contains("some-other-host"), "{holder}")
        }
        other => panic!("{other:?}"),
    }
    match s.put("b", doc(1)) {
        Err(StoreError::NotSoleWriter(d)) => {
            assert!(d.lasts());
            assert!(d.to_string().contains("stopped writing"), "{d}");
        }
        other => panic!("a write after a takeover: {other:?}"),
    }
    assert_eq!(s.get("a3").unwrap(), Some(doc(3)));
    let st = s.stats();
    assert!(matches!(
        st.writer_doubt,
        Some(WriterDoubt::TakenOver { .. })
    ));
    assert!(st.read_only.unwrap().contains("some-other-host"));
    // The quick check reports it, with its reason, as no strategy's business.
    let subject = StoreSubject::new(Arc::new(s));
    let out = run_check(&subject, Tier::Shallow);
    let i = out
        .issues
        .iter()
        .find(|i| i.code == "sole_writer_unproven")
        .unwrap_or_else(|| panic!("{:?}", out.issues));
    assert!(
        i.evidence
            .iter()
            .any(|(k, v)| k == "reason" && v == "taken_over")
    );
    assert!(!subject.strategies().iter().any(|st| st.can_repair(i)));
    let s = Arc::into_inner(subject.store().clone());
    drop(subject);
    if let Some(s) = s {
        s.close().unwrap();
    }
    assert_eq!(
        holder_text(dir.path()),
        theirs,
        "the new holder's LOCK left alone"
    );
}

/// LOCK replaced by a link to a file elsewhere: the heartbeat removes the link and writes a real LOCK; the file
/// elsewhere is untouched.
#[test]
fn a_lock_replaced_by_a_link_is_written_back_and_its_target_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("precious");
    std::fs::write(&target, b"someone else's file\n").unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    std::fs::remove_file(dir.path().join("LOCK")).unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("LOCK")).unwrap();
    match s.check_lock().unwrap() {
        LockCheck::Restored(found) => {
            assert!(found.contains("symbolic link"), "{found}");
            assert!(found.contains(&target.display().to_string()), "{found}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !std::fs::symlink_metadata(dir.path().join("LOCK"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"someone else's file\n");
    s.put("a", doc(1)).unwrap();
    s.close().unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"someone else's file\n");
}

/// The live files of a closed store with data in every kind of file: a snapshot and its sidecar, sealed segments
/// and their sidecars, the open segment and its mirror, both manifest copies, LOCK.
fn store_with_every_file(dir: &Path) -> Vec<store::DataFile> {
    let s = Store::open(dir, small()).unwrap();
    for i in 0..150 {
        s.put(&format!("d{i:03}"), doc(i)).unwrap();
    }
    s.compact().unwrap();
    for i in 150..260 {
        s.put(&format!("d{i:03}"), doc(i)).unwrap();
    }
    let files = s.data_files();
    s.close().unwrap();
    for kind in [
        "snapshot",
        "parity",
        "segment",
        "open_segment",
        "mirror",
        "manifest",
        "lock",
    ] {
        assert!(
            files.iter().any(|f| f.kind.name() == kind),
            "{kind}: {files:?}"
        );
    }
    files
}

/// Moves `rel` elsewhere and leaves a link to it in its place; returns the target.
fn plant_link(dir: &Path, rel: &str, elsewhere: &Path) -> PathBuf {
    let target = elsewhere.join(rel.replace('/', "__"));
    std::fs::rename(dir.join(rel), &target).unwrap();
    std::os::unix::fs::symlink(&target, dir.join(rel)).unwrap();
    target
}

/// For each kind of data file: the file moved elsewhere and a link left in its place (so following the link would
/// "work"). Open refuses, naming the link and its target, and changes nothing there; with the file put back, the
/// store opens whole.
#[test]
fn a_link_planted_for_any_data_file_is_refused_at_open_naming_link_and_target() {
    let dir = tempfile::tempdir().unwrap();
    let files = store_with_every_file(dir.path());
    let elsewhere = tempfile::tempdir().unwrap();
    let mut kinds_seen = std::collections::BTreeSet::new();
    for f in &files {
        kinds_seen.insert(f.kind);
        let target = plant_link(dir.path(), &f.rel, elsewhere.path());
        let before = std::fs::read(&target).unwrap();
        match Store::open(dir.path(), small()) {
            Err(StoreError::SymlinkRefused(l)) => {
                assert_eq!(l.path, dir.path().join(&f.rel), "{}", f.rel);
                assert_eq!(l.target.as_deref(), Some(target.as_path()));
                let msg = StoreError::SymlinkRefused(l).to_string();
                assert!(
                    msg.contains(&f.rel) && msg.contains(&target.display().to_string()),
                    "{msg}"
                );
            }
            other => panic!("{} as a link: {other:?}", f.rel),
        }
        assert_eq!(
            std::fs::read(&target).unwrap(),
            before,
            "{} target untouched",
            f.rel
        );
        std::fs::remove_file(dir.path().join(&f.rel)).unwrap();
        std::fs::rename(&target, dir.path().join(&f.rel)).unwrap();
    }
    assert_eq!(kinds_seen.len(), 7, "{kinds_seen:?}");
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(s.count(), 260);
    assert!(s.recovery_report().lost.is_empty());
}

/// A link planted for the mirror, the open segment, a manifest copy and a sidecar while the store runs and writes:
/// the quick check names each link and its target, the strategies put a real file in its place, the files
/// elsewhere stay byte for byte as they were, and every document reads back after a reopen.
#[test]
fn links_planted_while_running_are_found_replaced_and_never_written_through() {
    let dir = tempfile::tempdir().unwrap();
    store_with_every_file(dir.path());
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let subject = StoreSubject::new(s.clone());
    let elsewhere = tempfile::tempdir().unwrap();
    let pick = |kind: &str| {
        s.data_files()
            .into_iter()
            .find(|f| f.kind.name() == kind)
            .unwrap()
            .rel
    };
    let mut planted = Vec::new();
    for kind in ["mirror", "open_segment", "manifest", "parity"] {
        let rel = pick(kind);
        // A copy elsewhere (so following the link would look right), the link in the file's place.
        let target = elsewhere.path().join(rel.replace('/', "__"));
        std::fs::copy(dir.path().join(&rel), &target).unwrap();
        std::fs::remove_file(dir.path().join(&rel)).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(&rel)).unwrap();
        planted.push((rel, target.clone(), std::fs::read(&target).unwrap()));
    }
    // The check finds every link first (naming it and its target, never data at risk) and its strategy writes a
    // real file back in its place.
    let out = run_check(&subject, Tier::Shallow);
    for (rel, target, _) in &planted {
        let i = out
            .issues
            .iter()
            .find(|i| i.location.file.as_deref() == Some(rel.as_str()))
            .unwrap_or_else(|| panic!("{rel}: {:?}", out.issues));
        assert!(
            i.summary.contains("symbolic link")
                && i.summary.contains(&target.display().to_string()),
            "{i:?}"
        );
        assert!(!i.data_at_risk, "{i:?}");
        repair(&subject, i).unwrap_or_else(|e| panic!("{rel}: {e}"));
    }
    for i in 0..30 {
        s.put(&format!("live{i}"), doc(i)).unwrap();
    }
    for i in 30..60 {
        s.put(&format!("live{i}"), doc(i)).unwrap();
    }
    for tier in [Tier::Shallow, Tier::Deep, Tier::Comprehensive] {
        let out = run_check(&subject, tier);
        assert!(out.passed, "{tier:?}: {:?}", out.issues);
    }
    for (rel, target, bytes) in &planted {
        // A real file again, or gone with the old layout once writes rotated and compacted past it: never a link.
        if let Ok(m) = std::fs::symlink_metadata(dir.path().join(rel)) {
            assert!(m.file_type().is_file(), "{rel} is a real file again");
        }
        assert_eq!(
            &std::fs::read(target).unwrap(),
            bytes,
            "{rel}: target written through"
        );
    }
    drop(subject);
    drop(Arc::into_inner(s).unwrap());
    let s = Store::open(dir.path(), small()).unwrap();
    assert!(s.recovery_report().lost.is_empty());
    assert_eq!(s.count(), 260 + 60);
    for (rel, target, bytes) in &planted {
        assert_eq!(&std::fs::read(target).unwrap(), bytes, "{rel}");
    }
}
