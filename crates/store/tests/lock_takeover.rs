//! The data directory's lock: a second opener is told who holds it, a lock left by a dead process (or a reused pid,
//! or a silent host) is taken over and reported, a live holder's is not, and the heartbeat is kept fresh.

use std::path::Path;
use std::sync::Arc;

use heal::{Subject, Tier};
use store::{Store, StoreError, StoreSubject};

mod common;
use common::*;

fn now_us() -> u64 {
    store::lock::now_us()
}

/// Writes a LOCK naming `pid` on `host`, not closed, taken at `started_us`; returns its text.
fn fake_lock(dir: &Path, pid: u32, host: &str, started_us: u64, closed: bool) -> String {
    let text = format!(
        "pid={pid} host={host} started_us={started_us} heartbeat_us={started_us} closed={closed}\n"
    );
    std::fs::write(dir.join("LOCK"), &text).unwrap();
    text
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
