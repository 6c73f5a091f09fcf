//! The derived-data contract made live: the change feed, the `medic-derived` driver, catch-up through the log,
//! rebuild from the table, the engine's checks and strategies — driven with a model index (`MapIndex`: id → version,
//! persisted as a small JSON file) so every assertion compares against the table exactly.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{doc, small};
use store::derived::{IndexState, IndexStatus, index_dir_rel};
use store::{Agreement, Change, DerivedError, DerivedIndex, Document, Store, StoreConfig, Truth};

/// A model index: every change in order, the current version of each id, persisted as JSON under
/// `idx/default/map/state.json`. A file it persisted that is gone makes `persist` report damage (as real indexes
/// do: a deleted index directory forces a rebuild).
struct MapIndex {
    dir: PathBuf,
    docs: Mutex<BTreeMap<String, u64>>,
    /// Every LSN applied, in order (to assert the feed's order).
    order: Mutex<Vec<u64>>,
    applied: AtomicU64,
    persisted: AtomicU64,
    rebuilt: AtomicU64,
    /// While closed, `apply` waits (a stuck index).
    gate: Arc<(Mutex<bool>, Condvar)>,
    /// While set, `persist` fails and drops the unpersisted changes (back to what `state.json` holds), as the
    /// text index does when its directory cannot be written.
    persist_fails: AtomicBool,
}

impl MapIndex {
    fn open(data: &Path) -> MapIndex {
        let dir = data.join(index_dir_rel("default", "map"));
        let (docs, applied) = std::fs::read(dir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<(BTreeMap<String, u64>, u64)>(&b).ok())
            .unwrap_or_default();
        MapIndex {
            dir,
            docs: Mutex::new(docs),
            order: Mutex::new(Vec::new()),
            applied: AtomicU64::new(applied),
            persisted: AtomicU64::new(applied),
            rebuilt: AtomicU64::new(0),
            gate: Arc::new((Mutex::new(true), Condvar::new())),
            persist_fails: AtomicBool::new(false),
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.docs.lock().unwrap().clone()
    }
}

impl DerivedIndex for MapIndex {
    fn name(&self) -> &str {
        "map"
    }
    fn collection(&self) -> &str {
        "default"
    }
    fn applied_lsn(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }
    fn persisted_lsn(&self) -> u64 {
        self.persisted.load(Ordering::Acquire)
    }
    fn apply(&self, changes: &[Change]) -> Result<(), DerivedError> {
        {
            let (open, cv) = &*self.gate;
            let mut g = open.lock().unwrap();
            while !*g {
                g = cv.wait(g).unwrap();
            }
        }
        let mut docs = self.docs.lock().unwrap();
        let mut order = self.order.lock().unwrap();
        for c in changes {
            assert!(
                c.lsn > self.applied_lsn(),
                "LSN {} after {}",
                c.lsn,
                self.applied_lsn()
            );
            order.push(c.lsn);
            match &c.doc {
                Some(_) => docs.insert(c.id.to_string(), c.lsn),
                None => docs.remove(&*c.id),
            };
            self.applied.store(c.lsn, Ordering::Release);
        }
        Ok(())
    }
    fn persist(&self) -> Result<u64, DerivedError> {
        let persisted = self.persisted_lsn();
        if persisted > 0 && !self.file().exists() {
            return Err(DerivedError::Damaged {
                index: "map".into(),
                reason: format!("{} was removed", self.file().display()),
            });
        }
        if self.persist_fails.load(Ordering::Acquire) {
            let kept = std::fs::read(self.file())
                .ok()
                .and_then(|b| serde_json::from_slice::<(BTreeMap<String, u64>, u64)>(&b).ok())
                .map(|(docs, _)| docs)
                .unwrap_or_default();
            *self.docs.lock().unwrap() = kept;
            self.applied.store(persisted, Ordering::Release);
            return Err(DerivedError::Io {
                index: "map".into(),
                context: "persist".into(),
                source: std::io::Error::from_raw_os_error(1),
            });
        }
        let applied = self.applied_lsn();
        let bytes = serde_json::to_vec(&(self.snapshot(), applied)).unwrap();
        std::fs::create_dir_all(&self.dir).unwrap();
        std::fs::write(self.file(), bytes).unwrap();
        self.persisted.store(applied, Ordering::Release);
        Ok(applied)
    }
    fn check(&self, truth: &Truth) -> Result<Agreement, DerivedError> {
        let docs = self.docs.lock().unwrap();
        let mut a = Agreement {
            count: docs.len() as u64,
            ..Agreement::default()
        };
        if self.applied_lsn() == truth.lsn && a.count != truth.count {
            a.disagreements
                .push(format!("count {} vs {}", a.count, truth.count));
        }
        let rebuilt = self.rebuilt.load(Ordering::Acquire);
        for (id, v) in &truth.sample {
            let mine = docs.get(id).copied();
            let same = mine == *v
                || (rebuilt > 0 && mine == Some(rebuilt) && v.is_some_and(|v| v <= rebuilt));
            if !same && v.is_some_and(|v| v <= self.applied_lsn()) {
                a.disagreements.push(format!("{id}: {v:?} vs {mine:?}"));
            }
        }
        if self.persisted_lsn() > 0 && !self.file().exists() {
            a.damage.push(format!("{} missing", self.file().display()));
        }
        Ok(a)
    }
    fn rebuild(
        &self,
        docs: &mut dyn Iterator<Item = (Arc<str>, Arc<Document>)>,
        lsn: u64,
    ) -> Result<(), DerivedError> {
        let fresh: BTreeMap<String, u64> = docs.map(|(id, _)| (id.to_string(), lsn)).collect();
        *self.docs.lock().unwrap() = fresh;
        self.applied.store(lsn, Ordering::Release);
        self.rebuilt.store(lsn, Ordering::Release);
        self.persisted.store(0, Ordering::Release);
        self.persist().map(|_| ())
    }
}

/// The table's ids (medic's own left out), to compare with an index's.
fn table_ids(s: &Store) -> Vec<String> {
    s.scan(None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

fn status(s: &Store) -> IndexStatus {
    s.derived()
        .status()
        .indexes
        .into_iter()
        .next()
        .expect("one index attached")
}

/// Polls `cond` until it holds (at most 30 s: a hang, not a timing claim).
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn close(s: Arc<Store>) {
    s.derived().stop();
    Arc::try_unwrap(s).expect("sole owner").close().unwrap();
}

fn wait_all(s: &Store) {
    s.derived()
        .wait_applied(s.stats().last_lsn, Duration::from_secs(30))
        .unwrap();
}

#[test]
fn the_feed_hands_every_durable_change_in_lsn_order_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let idx = Arc::new(MapIndex::open(dir.path()));
    s.attach_derived(idx.clone()).unwrap();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..150 {
                    let id = format!("w{t}-{}", i % 50);
                    if i % 7 == 3 {
                        s.delete(&id).unwrap();
                    } else {
                        s.put(&id, doc(i)).unwrap();
                    }
                }
                s.put(&format!(".medic/probe{t}"), doc(t)).unwrap();
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    wait_all(&s);
    let order = idx.order.lock().unwrap().clone();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order: {order:?}"
    );
    let ids: Vec<String> = idx.snapshot().into_keys().collect();
    assert_eq!(
        ids,
        table_ids(&s),
        "medic's own documents are never indexed"
    );
    for (id, v) in idx.snapshot() {
        assert_eq!(
            Some(v),
            s.get_with_lsn(&id).unwrap().map(|(_, l)| l),
            "{id}"
        );
    }
    let st = status(&s);
    assert_eq!(st.state, IndexState::Current);
    assert_eq!(st.applied_lsn, s.stats().last_lsn);
    assert_eq!(st.rebuilds, 0);
    close(s);
}

#[test]
fn a_reopened_index_is_caught_up_from_the_log_from_its_persisted_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || StoreConfig {
        wal_bytes_max: 64 << 20,
        ..small()
    };
    let s = Arc::new(Store::open(dir.path(), cfg()).unwrap());
    s.attach_derived(Arc::new(MapIndex::open(dir.path())))
        .unwrap();
    for i in 0..100 {
        s.put(&format!("d{i:03}"), doc(i)).unwrap();
    }
    wait_all(&s);
    close(s);
    // Written while no index is attached: only the log has them.
    let s = Arc::new(Store::open(dir.path(), cfg()).unwrap());
    for i in 50..160 {
        s.put(&format!("d{i:03}"), doc(i + 1)).unwrap();
    }
    s.delete("d007").unwrap();
    close(s);
    let s = Arc::new(Store::open(dir.path(), cfg()).unwrap());
    let idx = Arc::new(MapIndex::open(dir.path()));
    let persisted = idx.applied_lsn();
    assert!(persisted >= 100, "persisted at close: {persisted}");
    s.attach_derived(idx.clone()).unwrap();
    wait_all(&s);
    let st = status(&s);
    assert_eq!((st.catch_ups, st.rebuilds), (1, 0), "{st:?}");
    assert!(idx.order.lock().unwrap().iter().all(|l| *l > persisted));
    let ids: Vec<String> = idx.snapshot().into_keys().collect();
    assert_eq!(ids, table_ids(&s));
    assert!(!ids.contains(&"d007".to_string()));
    close(s);
}

#[test]
fn an_index_the_log_no_longer_covers_is_rebuilt_from_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    for i in 0..100 {
        s.put(&format!("d{i:03}"), doc(i)).unwrap();
    }
    s.compact().unwrap();
    s.put("d200", doc(200)).unwrap();
    let idx = Arc::new(MapIndex::open(dir.path()));
    s.attach_derived(idx.clone()).unwrap();
    wait_all(&s);
    let st = status(&s);
    assert_eq!((st.rebuilds, st.catch_ups), (1, 0), "{st:?}");
    let ids: Vec<String> = idx.snapshot().into_keys().collect();
    assert_eq!(ids, table_ids(&s));
    close(s);
}

#[test]
fn deleting_the_index_directory_under_a_running_store_forces_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let idx = Arc::new(MapIndex::open(dir.path()));
    s.attach_derived(idx.clone()).unwrap();
    for i in 0..50 {
        s.put(&format!("d{i:03}"), doc(i)).unwrap();
    }
    eventually("persisted", || {
        status(&s).persisted_lsn == s.stats().last_lsn
    });
    std::fs::remove_dir_all(dir.path().join("idx")).unwrap();
    for i in 50..120 {
        s.put(&format!("d{i:03}"), doc(i)).unwrap();
    }
    eventually("rebuilt", || status(&s).rebuilds >= 1);
    wait_all(&s);
    eventually("persisted again", || idx.file().exists());
    let ids: Vec<String> = idx.snapshot().into_keys().collect();
    assert_eq!(ids, table_ids(&s));
    close(s);
}

#[test]
fn the_engine_finds_a_deleted_index_file_and_rebuilds_it() {
    use heal::{Clock, HealthCheck, Subject, SystemClock};
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let idx = Arc::new(MapIndex::open(dir.path()));
    s.attach_derived(idx.clone()).unwrap();
    for i in 0..30 {
        s.put(&format!("d{i:03}"), doc(i)).unwrap();
    }
    eventually("persisted", || {
        status(&s).persisted_lsn == s.stats().last_lsn
    });
    std::fs::remove_dir_all(dir.path().join("idx")).unwrap();
    let subject = store::StoreSubject::new(s.clone());
    let check: Arc<dyn HealthCheck> = subject
        .checks()
        .into_iter()
        .find(|c| c.name() == "derived.agreement")
        .unwrap();
    let clock = SystemClock::new();
    let ctx = heal::check::CheckContext {
        clock: &clock,
        deadline: clock.now() + 60_000_000,
    };
    let out = check.run(&ctx);
    assert!(!out.passed, "{out:?}");
    let issue = &out.issues[0];
    assert_eq!(issue.code, "derived_damaged");
    assert_eq!(issue.resource, "idx/default/map");
    common::repair(&subject, issue).unwrap();
    assert!(idx.file().exists());
    assert!(status(&s).rebuilds >= 1);
    assert!(check.run(&ctx).passed);
    drop(check);
    drop(subject);
    close(s);
}

#[test]
fn nothing_is_rebuilt_while_the_store_is_degraded() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path(), small()).unwrap();
        for i in 0..200 {
            s.put(&format!("f{i:04}"), doc(i)).unwrap();
        }
        s.close().unwrap();
    }
    let sealed: Vec<_> = {
        let s = Store::open(dir.path(), small()).unwrap();
        let f = s.immutable_files();
        s.close().unwrap();
        f.into_iter().filter(|f| f.rel.ends_with(".seg")).collect()
    };
    assert!(!sealed.is_empty());
    std::fs::remove_file(dir.path().join(&sealed[0].rel)).unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    assert!(s.degraded(), "{:?}", s.recovery_report().lost);
    let idx = Arc::new(MapIndex::open(dir.path()));
    s.attach_derived(idx.clone()).unwrap();
    eventually("tried", || {
        status(&s)
            .last_error
            .is_some_and(|e| !e.starts_with("attached"))
    });
    std::thread::sleep(Duration::from_millis(200));
    let st = status(&s);
    assert_eq!(st.rebuilds, 0, "{st:?}");
    assert_ne!(st.state, IndexState::Current, "{st:?}");
    assert!(
        s.derived()
            .rebuild(&s, "default", "map")
            .unwrap_err()
            .to_string()
            .contains("lost")
    );
    assert_eq!(status(&s).rebuilds, 0);
    // The engine's rebuild refuses too (its backup step), naming why.
    let subject = store::StoreSubject::new(s.clone());
    let issue = heal::Issue::new(
        heal::IssueKind::StaleDerived,
        "derived_damaged",
        "idx/default/map",
        "test".to_string(),
        "test",
        0,
    )
    .evidence("collection", "default")
    .evidence("index", "map");
    let err = common::repair(&subject, &issue).unwrap_err();
    assert!(err.to_string().contains("degraded"), "{err}");
    assert_eq!(status(&s).rebuilds, 0);
    s.derived().stop();
}

#[test]
fn a_full_feed_never_blocks_or_fails_a_write_and_the_index_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        derived_feed_records_max: 4,
        wal_bytes_max: 64 << 20,
        ..small()
    };
    let s = Arc::new(Store::open(dir.path(), cfg).unwrap());
    let idx = Arc::new(MapIndex::open(dir.path()));
    s.attach_derived(idx.clone()).unwrap();
    wait_all(&s);
    // The index is stuck: nothing drains the feed.
    *idx.gate.0.lock().unwrap() = false;
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let s = s.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            for i in 0..300 {
                s.put(&format!("d{i:03}"), doc(i)).unwrap();
            }
            done.store(true, Ordering::Release);
            tx.send(()).unwrap();
        });
    }
    rx.recv_timeout(Duration::from_secs(60))
        .expect("writes went on while the index was stuck");
    assert!(done.load(Ordering::Acquire));
    assert!(s.derived().status().feed_dropped_batches > 0);
    assert!(s.derived().status().feed_records <= 4);
    let err = s
        .derived()
        .wait_applied(s.stats().last_lsn, Duration::from_millis(50))
        .unwrap_err();
    assert!(err.to_string().contains("default/map"), "{err}");
    // A wait for other indexes only is not held up by the stuck one; a wait that picks it is.
    let lsn = s.stats().last_lsn;
    let short = Duration::from_millis(50);
    s.derived()
        .wait_applied_by(lsn, short, |_, name| name != "map")
        .expect("no picked index lags");
    let err = s
        .derived()
        .wait_applied_by(lsn, short, |c, name| c == "default" && name == "map")
        .unwrap_err();
    assert!(err.to_string().contains("default/map"), "{err}");
    {
        let (open, cv) = &*idx.gate;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
    wait_all(&s);
    let ids: Vec<String> = idx.snapshot().into_keys().collect();
    assert_eq!(ids, table_ids(&s));
    assert!(status(&s).catch_ups >= 1);
    close(s);
}

/// A persist that fails and drops the unpersisted changes leaves the index behind: the driver's applied LSN goes
/// down to what the index kept, so a wait for the log (a strong search) waits instead of passing on what was lost;
/// once persists succeed again the index is caught up from the log and holds every document.
#[test]
fn a_failed_persist_that_drops_changes_leaves_the_index_behind_until_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), small()).unwrap());
    let idx = Arc::new(MapIndex::open(dir.path()));
    s.attach_derived(idx.clone()).unwrap();
    for i in 0..20 {
        s.put(&format!("d{i:03}"), doc(i)).unwrap();
    }
    wait_all(&s);
    eventually("the first documents persisted", || {
        idx.persisted_lsn() == s.stats().last_lsn
    });
    idx.persist_fails.store(true, Ordering::Release);
    for i in 20..40 {
        s.put(&format!("d{i:03}"), doc(i)).unwrap();
    }
    let last = s.stats().last_lsn;
    eventually("behind after the failed persist", || {
        status(&s).state == IndexState::Behind
    });
    let st = status(&s);
    assert!(st.applied_lsn < last, "{st:?}");
    assert!(
        s.derived()
            .wait_applied(last, Duration::from_millis(300))
            .is_err(),
        "a wait for the log passed on changes the index dropped"
    );
    idx.persist_fails.store(false, Ordering::Release);
    wait_all(&s);
    eventually("current again", || status(&s).state == IndexState::Current);
    let ids: Vec<String> = idx.snapshot().into_keys().collect();
    assert_eq!(ids, table_ids(&s));
    assert!(status(&s).catch_ups >= 1);
    close(s);
}
