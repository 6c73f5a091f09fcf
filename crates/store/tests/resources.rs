//! Resource errors are never taken for damage: the engine runs over a `StoreSubject` while every open of a data file
//! fails with EMFILE (injected through `io::IoFaults`, seeded), as when clients hold all of the process's descriptors.
//! No integrity issue, nothing "at risk", no CRISIS; the store tells what it cannot open and why, and comes back by
//! itself once descriptors are free again: writes resume, every acknowledged document reads back, a reopen finds
//! nothing lost.

use std::collections::BTreeMap;
use std::sync::Arc;

use heal::{Clock, IssueKind, Subject, SystemClock};
use store::io::ErrnoFault;
use store::{Store, StoreSubject};

mod common;
use common::*;

fn engine_over(subject: Arc<dyn Subject>) -> (heal::engine::Engine, heal::SimClock) {
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

/// The seed of the injected errors: `MEDIC_SEED` if set, else a fixed one; printed so a failure can be replayed.
fn seed() -> u64 {
    let seed = std::env::var("MEDIC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x005e_ed16);
    eprintln!("seed {seed} (MEDIC_SEED={seed} replays this run)");
    seed
}

/// Every issue of every incident the engine opened, and whether any cycle stopped writes.
fn run(
    engine: &mut heal::engine::Engine,
    clock: &heal::SimClock,
    cycles: usize,
    seen: &mut Vec<heal::Issue>,
) -> bool {
    let mut stopped = false;
    for _ in 0..cycles {
        clock.advance(12_000_000);
        let c = engine.run_cycle();
        stopped |= c.stop_writes;
        for id in c.incidents_opened.iter().chain(c.escalations.iter()) {
            if let Ok(Some(rec)) = engine.incident(*id) {
                seen.extend(rec.issues);
            }
        }
        for d in &c.decisions {
            if let Ok(Some(rec)) = engine.incident(d.incident_id) {
                seen.extend(rec.issues);
            }
        }
    }
    stopped
}

#[test]
fn descriptor_exhaustion_is_an_environment_issue_and_the_store_comes_back_by_itself() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let cfg = small();
    let io = cfg.io.clone();
    let s = Arc::new(Store::open(dir.path(), cfg.clone()).unwrap());
    let mut model = BTreeMap::new();
    for i in 0..400 {
        let id = format!("k{:03}", i % 150);
        s.put(&id, doc(i)).unwrap();
        model.insert(id, doc(i));
        if i == 200 {
            s.compact().unwrap();
        }
    }
    let st = s.stats();
    assert!(st.snapshot_lsn.is_some() && st.segments > 1, "{st:?}");
    let subject = StoreSubject::new(s.clone());
    let (mut engine, clock) = engine_over(Arc::new(subject));
    let mut seen = Vec::new();
    assert!(!run(&mut engine, &clock, 2, &mut seen));
    assert!(seen.is_empty(), "healthy before: {seen:?}");

    // Every open fails with EMFILE (each retry draws again: 1000 ‰ fails them all), then 700 ‰: the store is
    // short of descriptors for four minutes of engine time (under environment_grace_us), every tier of checks runs,
    // writers keep writing.
    let mut stopped = false;
    let mut refused = 0;
    let mut acked = 0;
    for (per_mille, cycles) in [(1000, 10), (700, 10)] {
        io.set_open_errors(Some(ErrnoFault {
            errno: libc::EMFILE,
            per_mille,
            seed,
        }));
        for c in 0..cycles {
            for j in 0..20 {
                let i = 1000 + c * 20 + j;
                let id = format!("k{:03}", i % 150);
                match s.put(&id, doc(i)) {
                    Ok(_) => {
                        acked += 1;
                        model.insert(id, doc(i));
                    }
                    Err(e) => {
                        refused += 1;
                        assert!(
                            !e.is_user_error() && !e.to_string().contains("corrupt"),
                            "{e}"
                        );
                    }
                }
            }
            stopped |= run(&mut engine, &clock, 1, &mut seen);
            for r in engine.run_tier(heal::Tier::Comprehensive) {
                seen.extend(r.issues);
            }
        }
    }
    assert!(io.errors_injected() > 0);
    eprintln!(
        "{} opens failed by injection; {acked} writes acknowledged, {refused} refused meanwhile",
        io.errors_injected()
    );
    assert!(!stopped, "no CRISIS: {seen:?}");
    let mut env = 0;
    for i in &seen {
        assert!(
            !i.data_at_risk && i.kind != IssueKind::Integrity,
            "a resource error taken for damage: {i:?}"
        );
        if i.code == "resource_exhausted" {
            env += 1;
            assert!(i.summary.contains("too many open files"), "{i:?}");
        }
    }
    assert!(env > 0, "the environment issue is reported: {seen:?}");
    let named = seen
        .iter()
        .find(|i| i.code == "resource_exhausted")
        .unwrap();
    assert!(named.summary.starts_with("cannot "), "{named:?}");

    // Descriptors are back: writes resume by themselves, the checks pass, nothing needed a human.
    io.set_open_errors(None);
    for i in 5000..5100 {
        let id = format!("k{:03}", i % 150);
        s.put(&id, doc(i)).unwrap();
        model.insert(id, doc(i));
    }
    let mut after = Vec::new();
    assert!(!run(&mut engine, &clock, 3, &mut after));
    for r in engine.run_tier(heal::Tier::Comprehensive) {
        assert!(r.passed, "{r:?}");
    }
    let st = s.stats();
    assert!(st.read_only.is_none() && st.poisoned.is_none(), "{st:?}");
    for (id, d) in &model {
        assert_eq!(s.get(id).unwrap().as_ref(), Some(d), "{id}");
    }
    drop(engine);
    drop(Arc::into_inner(s).unwrap());
    let s = Store::open(dir.path(), cfg).unwrap();
    let r = s.recovery_report();
    assert!(r.lost.is_empty(), "{r:?}");
    assert_eq!(s.count(), model.len());
    for (id, d) in &model {
        assert_eq!(s.get(id).unwrap().as_ref(), Some(d), "{id}");
    }
}

/// Open itself short of descriptors fails with an I/O error naming what it could not read — never a degraded open,
/// a rebuilt manifest or a loss — and succeeds unchanged once descriptors are back.
#[test]
fn an_open_without_descriptors_fails_plainly_and_concludes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small();
    let s = Store::open(dir.path(), cfg.clone()).unwrap();
    for i in 0..300 {
        s.put(&format!("d{i:03}"), doc(i)).unwrap();
    }
    s.close().unwrap();
    let before: Vec<(String, Vec<u8>)> = files(dir.path());
    let io = cfg.io.clone();
    io.set_open_errors(Some(ErrnoFault {
        errno: libc::EMFILE,
        per_mille: 1000,
        seed: seed(),
    }));
    let e = Store::open(dir.path(), cfg.clone()).unwrap_err();
    assert!(e.is_resource(), "{e}");
    assert!(
        e.to_string().contains("too many open files")
            || e.to_string().contains("Too many open files"),
        "{e}"
    );
    io.set_open_errors(None);
    assert_eq!(files(dir.path()), before, "nothing rewritten");
    let s = Store::open(dir.path(), cfg).unwrap();
    let r = s.recovery_report();
    assert!(
        r.lost.is_empty() && r.manifest_copies_restored.is_empty(),
        "{r:?}"
    );
    assert_eq!(s.count(), 300);
}

/// Every data file and its bytes (not `LOCK`, whose heartbeat moves).
fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "wal", "snap"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap().flatten() {
            let name = format!("{sub}/{}", e.file_name().to_string_lossy());
            if e.file_type().unwrap().is_file() && !name.ends_with("LOCK") {
                out.push((name, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A stopping process interrupts the full scrub between files, so a stop is bounded by one file's verification and
/// not by the store's size; the interrupted scrub says how far it got.
#[test]
fn a_stopping_process_interrupts_the_full_scrub() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), small()).unwrap());
    for i in 0..400 {
        store.put(&format!("d{i}"), doc(i)).unwrap();
    }
    let subject = StoreSubject::new(store.clone());
    let full = run_check(&subject, heal::Tier::Comprehensive);
    assert!(full.passed, "{}", full.message);
    assert!(!full.message.contains("interrupted"), "{}", full.message);
    let files = store.immutable_files().len();
    assert!(files > 1, "the test needs several files, has {files}");
    store.interrupt_checks();
    let cut = run_check(&subject, heal::Tier::Comprehensive);
    assert!(
        cut.message
            .contains(&format!("interrupted after 0 of {files} files")),
        "{}",
        cut.message
    );
}
