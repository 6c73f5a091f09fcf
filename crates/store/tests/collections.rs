//! Named collections at the store's API: settings written through the log, the same id in two collections as two
//! documents, a dimension per collection, drops through the log (and finished after a crash mid-drop), derived
//! indexes fed per collection, and the in-place upgrade of a version-1 data directory with a kill between the two
//! manifest copies (a child process, this test binary re-executed, aborts right after MANIFEST-A is replaced).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use store::collection::{CollectionState, Settings};
use store::derived::DerivedError;
use store::{
    Agreement, Change, Created, DerivedIndex, Document, Store, StoreConfig, StoreError, Truth,
};

const CHILD_ENV: &str = "MEDIC_UPGRADE_CHILD";

fn cfg() -> StoreConfig {
    common::small()
}

fn vdoc(text: &str, dim: usize, seed: f32) -> Document {
    Document {
        text: text.into(),
        vector: Some((0..dim).map(|i| seed + i as f32).collect()),
        meta: None,
    }
}

fn settings(v: serde_json::Value) -> Settings {
    Settings::from_json(&v, 4096).unwrap()
}

#[test]
fn same_id_in_two_collections_are_two_documents() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), cfg()).unwrap();
    assert!(matches!(
        s.create_collection("wide", settings(json!({"dimension": 8, "metric": "l2"}))),
        Ok(Created::New { .. })
    ));
    // Identical settings: nothing to do; other settings: a conflict.
    assert_eq!(
        s.create_collection("wide", settings(json!({"metric": "l2"})))
            .unwrap(),
        Created::Existed
    );
    assert!(matches!(
        s.create_collection("wide", settings(json!({"metric": "dot"}))),
        Err(StoreError::CollectionConflict(_))
    ));
    assert!(matches!(
        s.create_collection("Bad", Settings::default()),
        Err(StoreError::InvalidInput(_))
    ));
    s.put("a", vdoc("default a", 3, 1.0)).unwrap();
    s.put_in("wide", "a", vdoc("wide a", 8, 2.0)).unwrap();
    assert_eq!(s.get("a").unwrap().unwrap().text, "default a");
    assert_eq!(s.get_in("default", "a").unwrap().unwrap().text, "default a");
    assert_eq!(s.get_in("wide", "a").unwrap().unwrap().text, "wide a");
    // Each scan and count sees its own collection only; medic's settings documents are never listed.
    let ids = |c: &str| -> Vec<String> {
        s.scan_in(c, None, 100)
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    };
    assert_eq!(ids("default"), vec!["a"]);
    assert_eq!(ids("wide"), vec!["a"]);
    assert_eq!(s.scan(None, 100).unwrap().len(), 1);
    assert_eq!((s.count_in("default"), s.count_in("wide")), (1, 1));
    let listed: Vec<(String, u64)> = s
        .collections()
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.documents))
        .collect();
    assert_eq!(listed, vec![("default".into(), 1), ("wide".into(), 1)]);
    assert!(s.delete_in("wide", "a").unwrap().is_some());
    assert_eq!(s.get("a").unwrap().unwrap().text, "default a");
    assert!(s.get_in("wide", "a").unwrap().is_none());
    assert!(matches!(
        s.get_in("nope", "a"),
        Err(StoreError::UnknownCollection(_))
    ));
    assert!(matches!(
        s.put_in("nope", "a", vdoc("x", 3, 0.0)),
        Err(StoreError::UnknownCollection(_))
    ));
    s.close().unwrap();
}

#[test]
fn each_collection_has_its_dimension() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), cfg()).unwrap();
    s.put("d", vdoc("three", 3, 0.0)).unwrap();
    s.create_collection("wide", settings(json!({"dimension": 8})))
        .unwrap();
    s.create_collection("open", Settings::default()).unwrap();
    s.put_in("wide", "w", vdoc("eight", 8, 0.0)).unwrap();
    // The first vector of `open` fixes its dimension, persisted in its settings.
    s.put_batch_in(
        "open",
        vec![
            ("o1".into(), vdoc("five", 5, 0.0)),
            ("o2".into(), vdoc("five", 5, 1.0)),
        ],
    )
    .unwrap();
    assert_eq!(
        s.collection("open").unwrap().unwrap().settings.dimension,
        Some(5)
    );
    let e = s.put("x", vdoc("eight", 8, 0.0)).unwrap_err().to_string();
    assert!(
        e.contains("vector has 8 dimensions, the store's vectors have 3"),
        "{e}"
    );
    assert!(
        e.contains("PUT /v1/collections/<name> {\"dimension\": 8}"),
        "{e}"
    );
    let e = s
        .put_in("wide", "x", vdoc("three", 3, 0.0))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the collection \"wide\" holds vectors of 8"),
        "{e}"
    );
    let e = s
        .put_in("open", "x", vdoc("three", 3, 0.0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds vectors of 5"), "{e}");
    s.close().unwrap();
    let s = Store::open(dir.path(), cfg()).unwrap();
    assert_eq!(
        s.collection("open").unwrap().unwrap().settings.dimension,
        Some(5)
    );
    assert!(s.put_in("open", "y", vdoc("three", 3, 0.0)).is_err());
    assert_eq!(
        s.collection("default").unwrap().unwrap().settings.dimension,
        Some(3)
    );
    s.close().unwrap();
}

/// Two batches of different dimensions put at once into a collection whose dimension is open: one fixes it and the
/// other is refused, however their commits overlap (the second is validated against the first while that one is
/// still being flushed). Many rounds, each a new collection.
#[test]
fn batches_of_two_dimensions_racing_into_an_open_collection_never_both_land() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), cfg()).unwrap());
    for round in 0..40 {
        let c = format!("race{round}");
        s.create_collection(&c, Settings::default()).unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let results: Vec<(usize, Result<Vec<u64>, StoreError>)> = [3usize, 5]
            .into_iter()
            .map(|dim| {
                let (s, c, barrier) = (s.clone(), c.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let docs = (0..8)
                        .map(|i| (format!("d{dim}-{i}"), vdoc("x", dim, i as f32)))
                        .collect();
                    barrier.wait();
                    (dim, s.put_batch_in(&c, docs))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let landed: Vec<usize> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(d, _)| *d)
            .collect();
        let fixed = s.collection(&c).unwrap().unwrap().settings.dimension;
        assert_eq!(
            landed.len(),
            1,
            "round {round}: {results:?}, dimension {fixed:?}"
        );
        assert_eq!(fixed, Some(landed[0] as u32), "round {round}");
        let other = if landed[0] == 3 { 5 } else { 3 };
        assert!(
            s.get_in(&c, &format!("d{other}-0")).unwrap().is_none(),
            "round {round}: the refused batch is not stored"
        );
    }
}

/// Every document of every collection, as `(collection, id) -> document JSON`.
fn everything(s: &Store) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for c in s.collections().unwrap() {
        if c.state != CollectionState::Ready {
            continue;
        }
        for (id, d) in s.scan_in(&c.name, None, usize::MAX).unwrap() {
            out.insert((c.name.clone(), id), serde_json::to_string(&d).unwrap());
        }
    }
    out
}

#[test]
fn collections_survive_reopen_and_compaction_and_a_drop_goes_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), cfg()).unwrap();
    s.create_collection("a", Settings::default()).unwrap();
    s.create_collection("b", settings(json!({"dimension": 3, "indexes": ["text"]})))
        .unwrap();
    for i in 0..300 {
        s.put(&format!("d{i}"), common::doc(i)).unwrap();
        s.put_in("a", &format!("d{i}"), common::doc(i + 1)).unwrap();
        s.put_in("b", &format!("b{i}"), common::doc(i + 2)).unwrap();
    }
    let before = everything(&s);
    assert_eq!(before.len(), 900);
    s.compact().unwrap();
    assert_eq!(everything(&s), before);
    s.close().unwrap();
    let s = Store::open(dir.path(), cfg()).unwrap();
    assert_eq!(everything(&s), before);
    assert_eq!(
        s.collection("b").unwrap().unwrap().settings,
        settings(json!({"dimension": 3, "indexes": ["text"]}))
    );
    assert_eq!(s.drop_collection("a").unwrap(), 300);
    assert!(s.collection("a").unwrap().is_none());
    assert!(matches!(
        s.drop_collection("a"),
        Err(StoreError::UnknownCollection(_))
    ));
    assert!(matches!(
        s.drop_collection("default"),
        Err(StoreError::InvalidInput(_))
    ));
    let after: BTreeMap<_, _> = before
        .iter()
        .filter(|((c, _), _)| c != "a")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(everything(&s), after);
    // Dropped by the log: a reopen replays the deletes.
    drop(s);
    let s = Store::open(dir.path(), cfg()).unwrap();
    assert_eq!(everything(&s), after);
    assert_eq!(s.count_in("a"), 0);
    // The name can be used again, empty.
    s.create_collection("a", Settings::default()).unwrap();
    assert_eq!(s.count_in("a"), 0);
    s.close().unwrap();
}

#[test]
fn a_drop_cut_short_by_a_crash_stays_invisible_and_is_finished_by_dropping_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), cfg()).unwrap();
    s.create_collection("big", Settings::default()).unwrap();
    for chunk in 0..5 {
        let docs = (0..500)
            .map(|i| (format!("d{chunk}-{i}"), Document::text(format!("doc {i}"))))
            .collect();
        s.put_batch_in("big", docs).unwrap();
    }
    s.put("keep", Document::text("default")).unwrap();
    // One commit of deletes, then a crash (no clean close).
    assert_eq!(
        s.drop_collection_partly("big", 1).unwrap(),
        store::store::DROP_BATCH_DOCS as u64
    );
    drop(s);
    let s = Store::open(dir.path(), cfg()).unwrap();
    let c = s.collection("big").unwrap().unwrap();
    assert_eq!(c.state, CollectionState::Dropping);
    assert_eq!(c.documents, 2_500 - store::store::DROP_BATCH_DOCS as u64);
    // Half-dropped is not half-visible: nothing reads or writes it, and it cannot be created anew meanwhile.
    assert!(matches!(
        s.get_in("big", "d4-1"),
        Err(StoreError::UnknownCollection(_))
    ));
    assert!(matches!(
        s.scan_in("big", None, 10),
        Err(StoreError::UnknownCollection(_))
    ));
    assert!(matches!(
        s.put_in("big", "x", Document::text("x")),
        Err(StoreError::UnknownCollection(_))
    ));
    assert!(matches!(
        s.create_collection("big", Settings::default()),
        Err(StoreError::CollectionConflict(_))
    ));
    assert_eq!(s.drop_collection("big").unwrap(), 1_500);
    assert!(s.collection("big").unwrap().is_none());
    drop(s);
    let s = Store::open(dir.path(), cfg()).unwrap();
    assert!(s.collection("big").unwrap().is_none());
    assert_eq!(s.count_in("default"), 1);
    assert_eq!(s.count(), 1);
    s.close().unwrap();
}

/// A model index of one collection: the ids it holds.
struct SetIndex {
    collection: String,
    ids: Mutex<BTreeSet<String>>,
    applied: std::sync::atomic::AtomicU64,
}

impl SetIndex {
    fn new(c: &str) -> Arc<SetIndex> {
        Arc::new(SetIndex {
            collection: c.into(),
            ids: Mutex::new(BTreeSet::new()),
            applied: 0.into(),
        })
    }
    fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().iter().cloned().collect()
    }
}

impl DerivedIndex for SetIndex {
    fn name(&self) -> &str {
        "set"
    }
    fn collection(&self) -> &str {
        &self.collection
    }
    fn applied_lsn(&self) -> u64 {
        self.applied.load(std::sync::atomic::Ordering::Acquire)
    }
    fn persisted_lsn(&self) -> u64 {
        self.applied_lsn()
    }
    fn apply(&self, changes: &[Change]) -> Result<(), DerivedError> {
        let mut ids = self.ids.lock().unwrap();
        for c in changes {
            assert_eq!(&*c.collection, self.collection);
            match c.doc {
                Some(_) => ids.insert(c.id.to_string()),
                None => ids.remove(&*c.id),
            };
            self.applied
                .store(c.lsn, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }
    fn persist(&self) -> Result<u64, DerivedError> {
        Ok(self.applied_lsn())
    }
    fn check(&self, truth: &Truth) -> Result<Agreement, DerivedError> {
        let ids = self.ids.lock().unwrap();
        let mut a = Agreement {
            count: ids.len() as u64,
            ..Agreement::default()
        };
        if a.count != truth.count {
            a.disagreements
                .push(format!("count {} vs {}", a.count, truth.count));
        }
        for (id, v) in &truth.sample {
            if ids.contains(id) != v.is_some() {
                a.disagreements.push(id.clone());
            }
        }
        Ok(a)
    }
    fn rebuild(
        &self,
        docs: &mut dyn Iterator<Item = (Arc<str>, Arc<Document>)>,
        lsn: u64,
    ) -> Result<(), DerivedError> {
        *self.ids.lock().unwrap() = docs.map(|(id, _)| id.to_string()).collect();
        self.applied
            .store(lsn, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}

#[test]
fn an_index_sees_only_its_collection_with_plain_ids() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), cfg()).unwrap());
    s.create_collection("c", Settings::default()).unwrap();
    s.put("d1", Document::text("default")).unwrap();
    s.put_in("c", "c1", Document::text("c")).unwrap();
    // Attached after writes: caught up from the log.
    let (def, c) = (SetIndex::new("default"), SetIndex::new("c"));
    s.attach_derived(def.clone()).unwrap();
    s.attach_derived(c.clone()).unwrap();
    assert!(matches!(
        s.attach_derived(SetIndex::new("nope")),
        Err(StoreError::UnknownCollection(_))
    ));
    // Then fed.
    s.put("d2", Document::text("default")).unwrap();
    let lsn = s.put_in("c", "c2", Document::text("c")).unwrap();
    s.delete_in("c", "c1").unwrap();
    s.derived()
        .wait_applied(lsn + 1, Duration::from_secs(10))
        .unwrap();
    assert_eq!(def.ids(), vec!["d1", "d2"]);
    assert_eq!(c.ids(), vec!["c2"]);
    for (coll, name) in [("default", "set"), ("c", "set")] {
        let a = s.derived().check(&s, coll, name, 64, 1).unwrap();
        assert!(a.1.agrees(), "{coll}: {a:?}");
    }
    // Rebuilt from the table: the same.
    s.derived().rebuild(&s, "c", "set").unwrap();
    assert_eq!(c.ids(), vec!["c2"]);
    s.derived().rebuild(&s, "default", "set").unwrap();
    assert_eq!(def.ids(), vec!["d1", "d2"]);
    assert!(s.derived().detach("c", "set").is_some());
    assert!(s.derived().index("c", "set").is_none());
    s.derived().stop();
}

/// An index attached to a collection created again after a drop is built from the table, not caught up through
/// the log: a replay would take it through the dropped incarnation (whose vectors fixed another dimension).
#[test]
fn an_index_of_a_collection_created_again_is_built_from_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), cfg()).unwrap());
    s.create_collection("re", Settings::default()).unwrap();
    s.put_in("re", "old", vdoc("old", 4, 0.0)).unwrap();
    s.drop_collection("re").unwrap();
    s.create_collection("re", settings(json!({"dimension": 7})))
        .unwrap();
    let lsn = s.put_in("re", "new", vdoc("new", 7, 0.0)).unwrap();
    let (ids, counts) = attach_and_count(&s, "re", lsn);
    assert_eq!(ids, vec!["new"]);
    assert_eq!(counts, (1, 0), "rebuilds, catch-ups");
    // A collection never dropped is caught up from the log as before.
    s.create_collection("fresh", Settings::default()).unwrap();
    let lsn = s.put_in("fresh", "f", vdoc("f", 3, 0.0)).unwrap();
    let (ids, counts) = attach_and_count(&s, "fresh", lsn);
    assert_eq!(ids, vec!["f"]);
    assert_eq!(counts, (0, 1), "rebuilds, catch-ups");
    s.derived().stop();
}

/// Attaches a model index to `collection` and waits for it to reach `lsn`: the ids it holds, and its (rebuilds,
/// catch-ups).
fn attach_and_count(s: &Arc<Store>, collection: &str, lsn: u64) -> (Vec<String>, (u64, u64)) {
    let index = SetIndex::new(collection);
    s.attach_derived(index.clone()).unwrap();
    s.derived()
        .wait_applied(lsn, Duration::from_secs(10))
        .unwrap();
    let st = s.derived().status();
    let slot = st
        .indexes
        .iter()
        .find(|i| i.collection == collection)
        .unwrap();
    (index.ids(), (slot.rebuilds, slot.catch_ups))
}

/// The manifest version this medic writes.
const VERSION: u32 = store::manifest::VERSION;

fn manifest_version(dir: &Path, copy: &str) -> u32 {
    let b = std::fs::read(dir.join(copy)).unwrap();
    u32::from_le_bytes(b[8..12].try_into().unwrap())
}

/// Rewrites a manifest copy as format version 1 (the same frame; the checksum recomputed), as a medic of version 1
/// wrote it.
fn as_version_1(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    b[8..12].copy_from_slice(&1u32.to_le_bytes());
    let n = b.len() - 4;
    let crc = crc32c::crc32c(&b[..n]);
    b[n..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_version_1_directory_is_upgraded_in_place_even_when_killed_between_the_manifest_copies() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        // The child: opening upgrades the manifest; the process aborts right after MANIFEST-A is replaced.
        let c = cfg();
        c.io.set_abort_after_replacing(Some("MANIFEST-A".into()));
        let _ = Store::open(&dir, c);
        unreachable!("the upgrade did not write MANIFEST-A");
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), cfg()).unwrap();
    for i in 0..400 {
        s.put(&format!("id{i}"), common::doc(i)).unwrap();
    }
    for i in (0..400).step_by(7) {
        s.delete(&format!("id{i}")).unwrap();
    }
    let before = everything(&s);
    s.close().unwrap();
    for copy in ["MANIFEST-A", "MANIFEST-B"] {
        as_version_1(&dir.path().join(copy));
        assert_eq!(manifest_version(dir.path(), copy), 1);
    }
    let gen_before = store::manifest::load(&store::IoFaults::new(), dir.path())
        .manifest
        .unwrap()
        .generation;
    // A read-only open reads version 1 and writes nothing.
    let ro = Store::open_read_only(dir.path(), cfg()).unwrap();
    assert_eq!(everything(&ro), before);
    drop(ro);
    assert_eq!(manifest_version(dir.path(), "MANIFEST-A"), 1);

    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_version_1_directory_is_upgraded_in_place_even_when_killed_between_the_manifest_copies",
            "--nocapture",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child was to be killed mid-upgrade");
    // Killed between the copies: A is the current version at the next generation, B still version 1.
    assert_eq!(manifest_version(dir.path(), "MANIFEST-A"), VERSION);
    assert_eq!(manifest_version(dir.path(), "MANIFEST-B"), 1);

    let s = Store::open(dir.path(), cfg()).unwrap();
    let r = s.recovery_report();
    assert_eq!(r.manifest_generation, gen_before + 1);
    assert_eq!(r.manifest_copies_restored, vec!["MANIFEST-B".to_string()]);
    assert_eq!(everything(&s), before, "every document byte for byte");
    for (k, v) in &before {
        let d = s.get(&k.1).unwrap().unwrap();
        assert_eq!(&serde_json::to_string(&d).unwrap(), v);
    }
    s.close().unwrap();
    assert_eq!(manifest_version(dir.path(), "MANIFEST-A"), VERSION);
    assert_eq!(manifest_version(dir.path(), "MANIFEST-B"), VERSION);
    assert_eq!(
        std::fs::read(dir.path().join("MANIFEST-A")).unwrap(),
        std::fs::read(dir.path().join("MANIFEST-B")).unwrap(),
        "both copies agree after the repair"
    );
    // Collections work on the upgraded directory.
    let s = Store::open(dir.path(), cfg()).unwrap();
    assert!(s.recovery_report().manifest_upgraded_from.is_none());
    s.create_collection("new", Settings::default()).unwrap();
    s.put_in("new", "id1", Document::text("x")).unwrap();
    assert_eq!(
        s.get("id1")
            .unwrap()
            .map(|d| serde_json::to_string(&d).unwrap())
            .as_ref(),
        before.get(&("default".into(), "id1".into()))
    );
    s.close().unwrap();
}

#[test]
fn an_uninterrupted_upgrade_reports_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), cfg()).unwrap();
    s.put("a", Document::text("a")).unwrap();
    s.close().unwrap();
    for copy in ["MANIFEST-A", "MANIFEST-B"] {
        as_version_1(&dir.path().join(copy));
    }
    let s = Store::open(dir.path(), cfg()).unwrap();
    assert_eq!(s.recovery_report().manifest_upgraded_from, Some(1));
    assert!(s.recovery_report().manifest_copies_restored.is_empty());
    assert_eq!(s.get("a").unwrap().unwrap().text, "a");
    s.close().unwrap();
    assert_eq!(manifest_version(dir.path(), "MANIFEST-B"), VERSION);
}
