//! The HNSW index at crate level, fed with `Change` values built here: recall against brute force, deletes, updates,
//! persistence and damage, health and repairs, compaction, filtered search, the `DerivedIndex` contract.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use index_vector::synth::{Clustered, gaussian_vectors};
use index_vector::{GraphFault, HealthOptions, HnswIndex, HnswParams, Metric, recall};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng, rngs::StdRng};
use store::codec::Document;
use store::derived::{Change, DEFAULT_COLLECTION, DerivedError, DerivedIndex, Truth};
use store::io::IoFaults;

fn doc(v: Option<Vec<f32>>) -> Arc<Document> {
    Arc::new(Document {
        text: String::new(),
        vector: v,
        meta: None,
    })
}

fn put(lsn: u64, id: &str, v: Vec<f32>) -> Change {
    Change {
        lsn,
        collection: Arc::from(DEFAULT_COLLECTION),
        id: Arc::from(id),
        doc: Some(doc(Some(v))),
    }
}

fn del(lsn: u64, id: &str) -> Change {
    Change {
        lsn,
        collection: Arc::from(DEFAULT_COLLECTION),
        id: Arc::from(id),
        doc: None,
    }
}

fn open(dir: &Path, params: HnswParams) -> HnswIndex {
    HnswIndex::open(dir, DEFAULT_COLLECTION, params, Arc::new(IoFaults::new())).unwrap()
}

fn id(i: usize) -> String {
    format!("doc-{i:06}")
}

/// Applies `vectors` as ids `doc-i` at LSNs 1.., in batches; returns the last LSN.
fn load(idx: &HnswIndex, vectors: &[Vec<f32>]) -> u64 {
    let changes: Vec<Change> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| put(i as u64 + 1, &id(i), v.clone()))
        .collect();
    for batch in changes.chunks(500) {
        idx.apply(batch).unwrap();
    }
    vectors.len() as u64
}

/// Mean recall@k of the index's search against its exact search over `queries`.
fn mean_recall(idx: &HnswIndex, queries: &[Vec<f32>], k: usize, ef: Option<usize>) -> f64 {
    let sum: f64 = queries
        .iter()
        .map(|q| {
            let exact = idx.exact(q, k, None).unwrap();
            let approx = idx.search(q, k, ef, None).unwrap();
            recall(&exact, &approx)
        })
        .sum();
    sum / queries.len() as f64
}

fn l2() -> HnswParams {
    HnswParams::with_metric(Metric::L2)
}

#[test]
fn recall_at_10_on_clustered_data_is_at_least_0_95_for_every_metric() {
    let (data, queries) = Clustered::new(5_000, 32, 11).generate(200);
    for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
        let dir = tempfile::tempdir().unwrap();
        let idx = open(dir.path(), HnswParams::with_metric(metric));
        load(&idx, &data);
        let r = mean_recall(&idx, &queries, 10, None);
        eprintln!("{metric:?}: recall@10 = {r:.4}");
        assert!(r >= 0.95, "{metric:?}: recall@10 = {r:.4} < 0.95");
        let h = idx.health(&HealthOptions::default());
        assert_eq!(h.live, 5_000);
        assert!(h.recall_at_10.unwrap() >= 0.95, "{h:?}");
    }
}

#[test]
fn deleted_documents_are_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path(), l2());
    let (data, _) = Clustered::new(2_000, 16, 3).generate(0);
    let mut lsn = load(&idx, &data);
    let mut rng = StdRng::seed_from_u64(5);
    let gone: Vec<usize> = sample(&mut rng, data.len(), 600).into_vec();
    let deletes: Vec<Change> = gone
        .iter()
        .map(|&i| {
            lsn += 1;
            del(lsn, &id(i))
        })
        .collect();
    idx.apply(&deletes).unwrap();
    let gone_ids: std::collections::HashSet<String> = gone.iter().map(|&i| id(i)).collect();
    for &i in &gone {
        for hit in idx.search(&data[i], 50, Some(100), None).unwrap() {
            assert!(!gone_ids.contains(&*hit.id), "deleted {} returned", hit.id);
        }
        for hit in idx.exact(&data[i], 20, None).unwrap() {
            assert!(
                !gone_ids.contains(&*hit.id),
                "deleted {} returned by exact",
                hit.id
            );
        }
    }
    let h = idx.health(&HealthOptions::default());
    assert_eq!((h.live, h.tombstones), (1_400, 600));
    assert!(h.compaction_due);
    // Deleting every document leaves nothing to return, yet the graph still answers.
    let rest: Vec<Change> = (0..data.len())
        .filter(|i| !gone_ids.contains(&id(*i)))
        .map(|i| {
            lsn += 1;
            del(lsn, &id(i))
        })
        .collect();
    idx.apply(&rest).unwrap();
    assert!(idx.search(&data[0], 10, None, None).unwrap().is_empty());
    assert!(idx.is_empty());
}

#[test]
fn an_update_moves_the_vector() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path(), l2());
    let (data, _) = Clustered::new(3_000, 16, 8).generate(0);
    let lsn = load(&idx, &data);
    // doc-0 takes a vector far from everything, then a second update puts it next to doc-1.
    let far: Vec<f32> = vec![50.0; 16];
    idx.apply(&[put(lsn + 1, &id(0), far.clone())]).unwrap();
    let hits = idx.search(&far, 1, None, None).unwrap();
    assert_eq!((&*hits[0].id, hits[0].lsn), (id(0).as_str(), lsn + 1));
    assert!(hits[0].distance < 1e-4);
    for hit in idx.search(&data[0], 10, None, None).unwrap() {
        assert_ne!(&*hit.id, id(0), "the old vector of doc-0 is still found");
    }
    let mut near1 = data[1].clone();
    near1[0] += 1e-3;
    idx.apply(&[put(lsn + 2, &id(0), near1.clone())]).unwrap();
    let hits = idx.search(&near1, 2, None, None).unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| &*h.id).collect();
    assert_eq!(ids, vec![id(0).as_str(), id(1).as_str()]);
    assert!(idx.search(&far, 1, None, None).unwrap()[0].id.as_ref() != id(0));
    let h = idx.health(&HealthOptions::default());
    assert_eq!((h.live, h.tombstones), (3_000, 2));
}

#[test]
fn persist_and_reopen_give_identical_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (data, queries) = Clustered::new(3_000, 24, 21).generate(50);
    let idx = open(dir.path(), HnswParams::default());
    assert!(!idx.open_report().loaded);
    let mut lsn = load(&idx, &data);
    let deletes: Vec<Change> = (0..3_000)
        .step_by(7)
        .map(|i| {
            lsn += 1;
            del(lsn, &id(i))
        })
        .collect();
    idx.apply(&deletes).unwrap();
    assert_eq!(idx.persist().unwrap(), lsn);
    let again = open(dir.path(), HnswParams::default());
    assert!(again.open_report().loaded, "{:?}", again.open_report());
    assert_eq!(again.applied_lsn(), lsn);
    assert_eq!(again.persisted_lsn(), lsn);
    for q in &queries {
        assert_eq!(
            idx.search(q, 10, None, None).unwrap(),
            again.search(q, 10, None, None).unwrap()
        );
    }
    let opts = HealthOptions::default();
    let (mut a, mut b) = (idx.health(&opts), again.health(&opts));
    // Time and allocator capacities differ; every other figure is the same.
    (a.scan_ms, b.scan_ms, a.memory_bytes, b.memory_bytes) = (0.0, 0.0, 0, 0);
    assert_eq!(a, b);
    // Other structural parameters: the file is not used.
    let other = open(
        dir.path(),
        HnswParams {
            m: 8,
            m0: 16,
            ..HnswParams::default()
        },
    );
    assert!(!other.open_report().loaded);
    assert_eq!(other.applied_lsn(), 0);
    assert!(
        other
            .open_report()
            .reason
            .as_deref()
            .unwrap()
            .contains("built with")
    );
    // A run-time parameter may change.
    let faster = open(
        dir.path(),
        HnswParams {
            ef_search: 16,
            ..HnswParams::default()
        },
    );
    assert!(faster.open_report().loaded);
}

#[test]
fn a_damaged_file_opens_empty_and_check_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = Clustered::new(1_000, 8, 4).generate(0);
    let idx = open(dir.path(), HnswParams::default());
    let lsn = load(&idx, &data);
    idx.persist().unwrap();
    let path = idx.file_path();
    let good = std::fs::read(&path).unwrap();
    let truth = Truth {
        lsn,
        count: 1_000,
        sample: vec![(id(3), Some(4))],
    };
    assert!(idx.check(&truth).unwrap().agrees());
    let seed: u64 = std::env::var("MEDIC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    eprintln!("byte flips with seed={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    for round in 0..24 {
        let at = rng.random_range(0..good.len());
        let mut bad = good.clone();
        bad[at] ^= 1 << rng.random_range(0..8);
        std::fs::write(&path, &bad).unwrap();
        let reopened = open(dir.path(), HnswParams::default());
        let report = reopened.open_report();
        assert!(
            !report.loaded,
            "seed={seed} round {round}: flip at byte {at} was not noticed"
        );
        assert_eq!(reopened.applied_lsn(), 0, "seed={seed}");
        assert!(
            report.reason.as_deref().unwrap().contains("damaged"),
            "{report:?}"
        );
        let a = idx.check(&truth).unwrap();
        assert!(
            !a.damage.is_empty() && !a.agrees(),
            "seed={seed} round {round}: check missed the flip at {at}"
        );
    }
    // Cut short, extended, missing.
    std::fs::write(&path, &good[..good.len() - 3]).unwrap();
    assert!(!open(dir.path(), HnswParams::default()).open_report().loaded);
    let mut longer = good.clone();
    longer.extend_from_slice(b"junk");
    std::fs::write(&path, &longer).unwrap();
    assert!(!open(dir.path(), HnswParams::default()).open_report().loaded);
    std::fs::remove_file(&path).unwrap();
    let missing = open(dir.path(), HnswParams::default());
    assert!(!missing.open_report().loaded && missing.applied_lsn() == 0);
    let a = idx.check(&truth).unwrap();
    assert!(a.damage.iter().any(|d| d.contains("missing")), "{a:?}");
    // A persist writes it anew, and the check agrees again.
    std::fs::write(&path, &good).unwrap();
    assert!(idx.check(&truth).unwrap().agrees());
}

/// An index directory replaced by a link to another collection's: never read through (open empty, the check names
/// the link), never written through (a persist moves the link aside and writes a directory of its own; the other
/// collection's file is byte for byte as it was).
#[test]
fn a_directory_linked_to_another_collections_index_is_never_read_or_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let faults = || Arc::new(IoFaults::new());
    let (data, _) = Clustered::new(300, 8, 4).generate(1);
    let other = HnswIndex::open(dir.path(), "other", HnswParams::default(), faults()).unwrap();
    let changes: Vec<Change> = data
        .iter()
        .enumerate()
        .map(|(i, v)| Change {
            collection: Arc::from("other"),
            ..put(i as u64 + 1, &id(i), v.clone())
        })
        .collect();
    other.apply(&changes).unwrap();
    other.persist().unwrap();
    let others_file = std::fs::read(other.file_path()).unwrap();

    let idx = open(dir.path(), HnswParams::default());
    let lsn = load(&idx, &data[..100]);
    idx.persist().unwrap();
    let own_dir = idx.file_path().parent().unwrap().to_path_buf();
    std::fs::remove_dir_all(&own_dir).unwrap();
    std::os::unix::fs::symlink(other.file_path().parent().unwrap(), &own_dir).unwrap();

    let truth = Truth {
        lsn,
        count: 100,
        sample: vec![(id(3), Some(4))],
    };
    let a = idx.check(&truth).unwrap();
    assert!(
        a.damage.iter().any(|d| d.contains("is a link")),
        "the link is damage: {a:?}"
    );
    let reopened = open(dir.path(), HnswParams::default());
    assert!(
        !reopened.open_report().loaded,
        "{:?}",
        reopened.open_report()
    );
    assert_eq!(reopened.applied_lsn(), 0, "nothing read through the link");

    // Applied and persisted again (the in-memory graph is unchanged): written into a directory of its own.
    idx.apply(&[put(lsn + 1, &id(100), data[100].clone())])
        .unwrap();
    idx.persist().unwrap();
    assert!(
        std::fs::symlink_metadata(&own_dir).unwrap().is_dir(),
        "the link was moved aside"
    );
    assert_eq!(
        std::fs::read(other.file_path()).unwrap(),
        others_file,
        "the other collection's file is untouched"
    );
    let reopened = open(dir.path(), HnswParams::default());
    assert!(reopened.open_report().loaded);
    assert_eq!(reopened.applied_lsn(), lsn + 1);
    assert!(idx.check(&truth).unwrap().damage.is_empty());
}

#[test]
fn health_finds_dropped_links_and_the_repair_reconnects_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path(), l2());
    let (data, queries) = Clustered::new(4_000, 16, 31).generate(100);
    load(&idx, &data);
    let fresh = idx.repair_connectivity(usize::MAX);
    assert!(fresh.after.connected(), "{:?}", fresh.after);
    let opts = HealthOptions::default();

    // Orphans: every link into 40 nodes removed.
    let before = mean_recall(&idx, &queries, 10, None);
    let hit = idx.inject(&GraphFault::Orphans { nodes: 40, seed: 1 });
    assert_eq!(hit.ids.len(), 40);
    let h = idx.health(&opts);
    assert!(
        h.orphans >= 40 && h.unreachable >= 40 && h.reachable_fraction < 1.0,
        "{h:?}"
    );
    for id in &hit.ids {
        assert!(
            idx.search(&idx.vector_of(id).unwrap(), 10, None, None)
                .unwrap()
                .iter()
                .all(|x| x.id != *id)
        );
    }
    // A small budget leaves work for the next call.
    let part = idx.repair_connectivity(5);
    assert_eq!(part.relinked.relinked, 5);
    assert!(
        part.after.unreachable > 0 && part.relinked.left > 0,
        "{part:?}"
    );
    let rest = idx.repair_connectivity(1_000);
    assert_eq!(
        (rest.after.unreachable, rest.after.orphans),
        (0, 0),
        "{rest:?}"
    );
    for id in &hit.ids {
        let found = idx
            .search(&idx.vector_of(id).unwrap(), 10, None, None)
            .unwrap();
        assert!(
            found.iter().any(|x| x.id == *id),
            "{id} still not found after the repair"
        );
    }
    let after = mean_recall(&idx, &queries, 10, None);
    assert!(
        after >= before - 0.01,
        "recall {before} before the orphans, {after} after their repair"
    );

    // A region of 300 nodes cut off from the rest.
    let cut = idx.inject(&GraphFault::CutRegion {
        nodes: 300,
        seed: 2,
    });
    assert_eq!(cut.ids.len(), 300);
    let h = idx.health(&opts);
    assert!(h.unreachable >= 300, "{h:?}");
    let r = idx.repair_connectivity(1_000);
    assert_eq!((r.after.unreachable, r.after.orphans), (0, 0), "{r:?}");
    assert!(mean_recall(&idx, &queries, 10, None) >= 0.95);

    // A wrong entry point.
    idx.inject(&GraphFault::WrongEntry { seed: 3 });
    let h = idx.health(&opts);
    assert!(h.entry_level < h.top_live_level && !h.connected(), "{h:?}");
    let r = idx.repair_connectivity(1_000);
    assert!(r.relinked.entry_reset && r.after.connected(), "{r:?}");
    assert!(mean_recall(&idx, &queries, 10, None) >= 0.95);
}

#[test]
fn gaussian_data_unreachable_nodes_are_reported_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let params = HnswParams {
        m: 8,
        m0: 16,
        ef_construction: 40,
        ..l2()
    };
    let idx = open(dir.path(), params);
    load(&idx, &gaussian_vectors(5_000, 32, 77));
    let h = idx.health(&HealthOptions::default());
    eprintln!(
        "i.i.d. Gaussian 5000 x 32, m 8: unreachable {} ({:.4} reachable), orphans {}, recall@10 {:?}",
        h.unreachable, h.reachable_fraction, h.orphans, h.recall_at_10
    );
    let r = idx.repair_connectivity(5_000);
    assert_eq!((r.after.unreachable, r.after.orphans), (0, 0), "{r:?}");
    assert_eq!(r.before.unreachable, h.unreachable);
}

/// A small `ef`, so recall is below 1 and a worse graph shows.
const EF_LOW: usize = 10;

#[test]
fn compaction_after_30_percent_deletes_keeps_recall_of_a_fresh_build() {
    let (data, queries) = Clustered::new(5_000, 32, 41).generate(200);
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path(), l2());
    let mut lsn = load(&idx, &data);
    let not_due = idx.compact();
    assert!(!not_due.applied && not_due.reason.is_some());
    let mut rng = StdRng::seed_from_u64(9);
    let mut gone: Vec<usize> = sample(&mut rng, data.len(), 1_500).into_vec();
    gone.sort_unstable();
    let deletes: Vec<Change> = gone
        .iter()
        .map(|&i| {
            lsn += 1;
            del(lsn, &id(i))
        })
        .collect();
    idx.apply(&deletes).unwrap();
    let with_tombstones = mean_recall(&idx, &queries, 10, Some(EF_LOW));
    let r = idx.compact();
    assert!(r.applied, "{r:?}");
    assert_eq!((r.before.tombstones, r.after.tombstones), (1_500, 0));
    assert_eq!((r.after.live, r.after.unreachable), (3_500, 0));
    let compacted = mean_recall(&idx, &queries, 10, Some(EF_LOW));

    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open(fresh_dir.path(), l2());
    let keep: Vec<Change> = (0..data.len())
        .filter(|i| gone.binary_search(i).is_err())
        .map(|i| put(i as u64 + 1, &id(i), data[i].clone()))
        .collect();
    fresh.apply(&keep).unwrap();
    let fresh_recall = mean_recall(&fresh, &queries, 10, Some(EF_LOW));
    eprintln!(
        "recall@10: with tombstones {with_tombstones:.4}, compacted {compacted:.4}, fresh {fresh_recall:.4}"
    );
    assert!(
        (compacted - fresh_recall).abs() <= 0.01,
        "{compacted} vs {fresh_recall}"
    );
    // Versions survive the compaction.
    let hit = &idx.search(&data[gone[0] + 1], 1, None, None).unwrap()[0];
    assert!(hit.lsn <= data.len() as u64);
}

#[test]
fn a_filter_applies_during_the_search_and_still_fills_k() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path(), HnswParams::default());
    let (data, queries) = Clustered::new(5_000, 32, 51).generate(50);
    load(&idx, &data);
    let every_tenth = |s: &str| s.ends_with('3');
    let mut sum = 0.0;
    for q in &queries {
        let hits = idx.search(q, 10, None, Some(&every_tenth)).unwrap();
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| every_tenth(&h.id)), "{hits:?}");
        sum += recall(&idx.exact(q, 10, Some(&every_tenth)).unwrap(), &hits);
    }
    let r = sum / queries.len() as f64;
    eprintln!("filtered (10%) recall@10 = {r:.4}");
    assert!(r >= 0.9, "filtered recall {r}");
    // Only five documents pass: all five come back, whatever k.
    let five = |s: &str| {
        [
            "doc-000007",
            "doc-001234",
            "doc-002000",
            "doc-003333",
            "doc-004999",
        ]
        .contains(&s)
    };
    let hits = idx.search(&queries[0], 10, None, Some(&five)).unwrap();
    assert_eq!(hits.len(), 5, "{hits:?}");
    let none = |_: &str| false;
    assert!(
        idx.search(&queries[0], 10, None, Some(&none))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_derived_index_contract_holds() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path(), HnswParams::default());
    let (data, _) = Clustered::new(300, 8, 61).generate(0);
    let mut model: BTreeMap<String, u64> = BTreeMap::new();
    let mut changes = Vec::new();
    for (i, v) in data.iter().enumerate() {
        changes.push(put(i as u64 + 1, &id(i), v.clone()));
        model.insert(id(i), i as u64 + 1);
    }
    // A document without a vector is held (counted), one of another dimension refused but recorded.
    changes.push(Change {
        lsn: 301,
        collection: Arc::from(DEFAULT_COLLECTION),
        id: Arc::from("text-only"),
        doc: Some(doc(None)),
    });
    model.insert("text-only".into(), 301);
    changes.push(put(302, "wrong-dim", vec![1.0; 3]));
    model.insert("wrong-dim".into(), 302);
    changes.push(put(303, &id(5), data[6].clone()));
    model.insert(id(5), 303);
    let e = idx.apply(&changes).unwrap_err();
    assert!(
        matches!(&e, DerivedError::Refused { id, lsn: 302, .. } if id == "wrong-dim"),
        "{e}"
    );
    assert_eq!(idx.applied_lsn(), 303);
    // Replaying old LSNs changes nothing.
    idx.apply(&changes).unwrap();
    assert_eq!(idx.applied_lsn(), 303);
    idx.apply(&[del(304, &id(9))]).unwrap();
    model.remove(&id(9));

    let truth = |lsn: u64, model: &BTreeMap<String, u64>, extra: &[&str]| Truth {
        lsn,
        count: model.len() as u64,
        sample: model
            .iter()
            .step_by(17)
            .map(|(k, v)| (k.clone(), Some(*v)))
            .chain(
                extra
                    .iter()
                    .map(|k| (k.to_string(), model.get(*k).copied())),
            )
            .collect(),
    };
    let t = truth(304, &model, &[&id(9), "text-only", "wrong-dim", &id(5)]);
    let a = idx.check(&t).unwrap();
    assert!(a.agrees(), "{a:?}");
    assert_eq!(a.count, 301);
    // A wrong version and a wrong count are found.
    let mut lie = t.clone();
    lie.sample.push((id(5), Some(6)));
    lie.count += 1;
    let a = idx.check(&lie).unwrap();
    assert_eq!(a.disagreements.len(), 2, "{a:?}");
    // The index lost documents (a fault): the check sees it.
    idx.inject(&GraphFault::Tombstones {
        fraction: 0.5,
        seed: 4,
    });
    assert!(!idx.check(&t).unwrap().agrees());

    // Rebuild: reproducible to the byte, and it agrees with the table it was built from.
    let docs: Vec<(Arc<str>, Arc<Document>)> = model
        .keys()
        .map(|k| {
            let v = if k == "text-only" {
                None
            } else if k == "wrong-dim" {
                Some(vec![1.0; 3])
            } else {
                let i: usize = k[4..].parse().unwrap();
                Some(if i == 5 {
                    data[6].clone()
                } else {
                    data[i].clone()
                })
            };
            (Arc::from(k.as_str()), doc(v))
        })
        .collect();
    idx.rebuild(&mut docs.clone().into_iter(), 304).unwrap();
    assert_eq!((idx.applied_lsn(), idx.persisted_lsn()), (304, 304));
    assert!(
        idx.check(&t).unwrap().agrees(),
        "{:?}",
        idx.check(&t).unwrap()
    );
    let bytes = std::fs::read(idx.file_path()).unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let twin = open(dir2.path(), HnswParams::default());
    twin.rebuild(&mut docs.into_iter(), 304).unwrap();
    assert!(
        bytes == std::fs::read(twin.file_path()).unwrap(),
        "a rebuild is not reproducible"
    );
    // After the rebuild, changes apply on top and the check still tells versions apart.
    idx.apply(&[put(305, &id(1), data[2].clone())]).unwrap();
    model.insert(id(1), 305);
    assert!(idx.check(&truth(305, &model, &[&id(1)])).unwrap().agrees());
    // A change of another collection is refused, the index moves on.
    let other = Change {
        collection: Arc::from("other"),
        ..put(306, "x", vec![1.0; 8])
    };
    assert!(matches!(
        idx.apply(&[other]),
        Err(DerivedError::Refused { .. })
    ));
    assert_eq!(idx.applied_lsn(), 306);
}

#[test]
fn searches_run_while_changes_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path(), l2());
    let (data, queries) = Clustered::new(4_000, 16, 71).generate(20);
    load(&idx, &data[..1_000]);
    let done = std::sync::atomic::AtomicBool::new(false);
    let searched = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    for q in &queries {
                        let hits = idx.search(q, 10, None, None).unwrap();
                        assert_eq!(hits.len(), 10);
                        assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
                        searched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        for (n, chunk) in data[1_000..].chunks(100).enumerate() {
            let base = 1_000 + n * 100;
            let changes: Vec<Change> = chunk
                .iter()
                .enumerate()
                .map(|(j, v)| put((base + j) as u64 + 1, &id(base + j), v.clone()))
                .collect();
            idx.apply(&changes).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Release);
    });
    assert!(searched.into_inner() > 0);
    assert_eq!(idx.len(), 4_000);
    assert!(mean_recall(&idx, &queries, 10, None) >= 0.95);
}

#[test]
fn bad_queries_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path(), HnswParams::default());
    assert!(idx.search(&[1.0, 2.0], 10, None, None).unwrap().is_empty());
    load(&idx, &gaussian_vectors(50, 4, 1));
    let e = idx.search(&[1.0, 2.0], 10, None, None).unwrap_err();
    assert!(e.to_string().contains("dimension 2"), "{e}");
    assert!(
        idx.search(&[0.0; 4], 10, None, None)
            .unwrap_err()
            .to_string()
            .contains("zero vector")
    );
    assert!(
        idx.search(&[f32::NAN, 0.0, 0.0, 1.0], 10, None, None)
            .is_err()
    );
    assert!(idx.search(&[1.0; 4], 0, None, None).is_err());
    assert!(idx.search(&[1.0; 4], 10, Some(1_000_000), None).is_err());
    assert!(
        HnswIndex::open(
            dir.path(),
            "../x",
            HnswParams::default(),
            Arc::new(IoFaults::new())
        )
        .is_err()
    );
}

/// Near-duplicate directions (`[i, 1, i % 3]` under cosine: for large `i` all nearly the same) are where re-linking
/// one node evicts the link that kept another reachable. A rebuild re-links every node; it must end, and leave every
/// live node reachable or reported.
#[test]
fn a_rebuild_over_near_duplicate_vectors_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = Arc::new(open(tmp.path(), HnswParams::default()));
    let vectors: Vec<Vec<f32>> = (0..1_700)
        .map(|i| vec![i as f32, 1.0, (i % 3) as f32])
        .collect();
    let last = load(&idx, &vectors);
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = idx.clone();
    std::thread::spawn(move || {
        let mut docs = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (Arc::<str>::from(id(i)), doc(Some(v.clone()))));
        let rebuilt = worker.rebuild(&mut docs, last);
        let repaired = worker.rebuild_graph();
        let _ = tx.send((rebuilt.is_ok(), repaired));
    });
    let (rebuilt, repaired) = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the rebuild did not end within 120 s");
    assert!(rebuilt);
    assert_eq!(idx.len(), 1_700);
    assert_eq!(
        repaired.before.unreachable, 0,
        "after the rebuild: {:?}",
        repaired.before
    );
    assert!(repaired.applied, "rebuild_graph refused: {repaired:?}");
    assert_eq!(repaired.after.unreachable, 0);
}

/// Reachability right after insertion, before any repair, on data that stresses the selection heuristic: exact
/// duplicates (distance 0 ties) and vectors that converge on one direction under cosine. The heuristic alone kept
/// 1.8 links per node on the duplicates and left 570 of 3,000 nodes unreachable (1,038 of 3,000 near-duplicates);
/// a new node's degenerate list is now filled with the pruned candidates, a tie goes to the new link and a full
/// list never drops a node's last incoming link (measured after: 0, 101 of 3,000, and 0 of 5,000 Gaussian).
#[test]
fn insertion_keeps_duplicates_and_near_duplicates_reachable() {
    let shapes: Vec<(&str, Metric, Vec<Vec<f32>>, f64)> = vec![
        (
            "3,000 near-duplicates [i, 1, i % 3] (cosine)",
            Metric::Cosine,
            (0..3_000)
                .map(|i| vec![i as f32, 1.0, (i % 3) as f32])
                .collect(),
            index_vector::UNREACHABLE_FRACTION_MAX,
        ),
        (
            "3,000 vectors, 30 exact duplicates each (L2)",
            Metric::L2,
            (0..3_000)
                .map(|i| vec![(i % 100) as f32, ((i % 100) * 7 % 13) as f32, 1.0])
                .collect(),
            0.0,
        ),
        (
            "5,000 i.i.d. Gaussian x 32 (L2)",
            Metric::L2,
            gaussian_vectors(5_000, 32, 77),
            0.0,
        ),
    ];
    for (what, metric, vectors, unreachable_max) in shapes {
        let dir = tempfile::tempdir().unwrap();
        let idx = open(dir.path(), HnswParams::with_metric(metric));
        load(&idx, &vectors);
        let h = idx.health(&HealthOptions {
            recall_queries: 0,
            ..HealthOptions::default()
        });
        eprintln!(
            "{what}: {} of {} unreachable, {} orphans, mean degree {:.1}",
            h.unreachable, h.live, h.orphans, h.mean_degree
        );
        assert!(
            h.unreachable as f64 <= unreachable_max * h.live as f64,
            "{what}: {} of {} unreachable, over {unreachable_max}",
            h.unreachable,
            h.live
        );
        assert!(
            h.mean_degree >= 16.0,
            "{what}: mean degree {}",
            h.mean_degree
        );
    }
}

#[test]
fn each_file_fault_is_found_by_check_and_a_rebuild_writes_a_file_that_loads() {
    use index_vector::{FileFault, IvfIndex, IvfParams};
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = Clustered::new(1_200, 16, 8).generate(0);
    let hnsw = open(dir.path(), HnswParams::default());
    let ivf = IvfIndex::open(
        dir.path(),
        DEFAULT_COLLECTION,
        IvfParams {
            lists: 8,
            probes: 4,
            ..IvfParams::default()
        },
        Arc::new(IoFaults::new()),
    )
    .unwrap();
    let changes: Vec<Change> = data
        .iter()
        .enumerate()
        .map(|(i, v)| put(i as u64 + 1, &id(i), v.clone()))
        .collect();
    let lsn = changes.len() as u64;
    let truth = Truth {
        lsn,
        count: lsn,
        sample: vec![(id(7), Some(8))],
    };
    let indexes: [&dyn DerivedIndex; 2] = [&hnsw, &ivf];
    for idx in indexes {
        idx.apply(&changes).unwrap();
        idx.persist().unwrap();
        assert!(idx.check(&truth).unwrap().agrees(), "{}", idx.name());
    }
    let docs: Vec<(Arc<str>, Arc<Document>)> = changes
        .iter()
        .map(|c| (c.id.clone(), c.doc.clone().unwrap()))
        .collect();
    for (round, fault) in [
        FileFault::BitFlip { seed: 1 },
        FileFault::ZeroRange { seed: 2 },
        FileFault::Deleted,
        FileFault::BitFlip { seed: 3 },
        FileFault::ZeroRange { seed: 4 },
    ]
    .into_iter()
    .enumerate()
    {
        for idx in indexes {
            let name = idx.name().to_string();
            let done = if name == "hnsw" {
                hnsw.inject_file(&fault)
            } else {
                ivf.inject_file(&fault)
            }
            .unwrap();
            let a = idx.check(&truth).unwrap();
            assert!(
                !a.agrees() && !a.damage.is_empty(),
                "round {round} {name}: check missed it ({done})"
            );
            // Searches are still served from memory.
            assert_eq!(
                hnsw.search(&data[5], 1, None, None).unwrap()[0].id.as_ref(),
                id(5)
            );
            idx.rebuild(&mut docs.iter().cloned(), lsn).unwrap();
            assert!(
                idx.check(&truth).unwrap().agrees(),
                "round {round} {name}: still damaged after the rebuild"
            );
        }
        let reopened = open(dir.path(), HnswParams::default());
        assert!(
            reopened.open_report().loaded,
            "{:?}",
            reopened.open_report()
        );
        assert_eq!(reopened.applied_lsn(), lsn);
    }
    // Nothing to damage: named.
    std::fs::remove_file(hnsw.file_path()).unwrap();
    let err = hnsw.inject_file(&FileFault::Deleted).unwrap_err();
    assert!(err.to_string().contains("hnsw.bin"), "{err}");
}

/// Every id in `all` is reachable and comes back from a search for its own vector among the `k` nearest (`k` the
/// size of the largest group of equal vectors, and more): names those that do not.
fn unfound_by_own_vector(idx: &HnswIndex, all: &[(String, Vec<f32>)], k: usize) -> Vec<String> {
    all.iter()
        .filter(|(id, v)| {
            !idx.search(v, k, None, None)
                .unwrap()
                .iter()
                .any(|h| &*h.id == id.as_str())
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// Many equal vectors (1,100 of 15 distinct values, as ids `d0`.. in the table's order): the selection heuristic
/// used to keep one link per list among duplicates, so groups lost their way in and out — 537 nodes unreachable
/// after insertion and 15 after a rebuild, which then came back the same at every rebuild. Every live node must be
/// reachable and found by its own vector after insertion, after a rebuild from the table and after a graph
/// rebuild, for L2 and cosine.
#[test]
fn many_equal_vectors_stay_reachable_and_searchable_by_their_own_vector() {
    let vectors: Vec<Vec<f32>> = (0..1_100)
        .map(|i| vec![(i % 5) as f32 / 5.0, (i % 3) as f32 / 3.0 + 0.1, 0.5])
        .collect();
    let mut all: Vec<(String, Vec<f32>)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("d{i}"), v.clone()))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let no_recall = HealthOptions {
        recall_queries: 0,
        ..HealthOptions::default()
    };
    for metric in [Metric::Cosine, Metric::L2] {
        let tmp = tempfile::tempdir().unwrap();
        let idx = open(tmp.path(), HnswParams::with_metric(metric));
        let changes: Vec<Change> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| put(i as u64 + 1, &format!("d{i}"), v.clone()))
            .collect();
        for batch in changes.chunks(100) {
            idx.apply(batch).unwrap();
        }
        let inserted = idx.health(&no_recall);
        let unfound = unfound_by_own_vector(&idx, &all, 100);
        eprintln!(
            "{metric:?}, inserted: {} of {} unreachable, {} orphans, mean degree {:.1}, {} not found",
            inserted.unreachable,
            inserted.live,
            inserted.orphans,
            inserted.mean_degree,
            unfound.len()
        );
        assert_eq!(
            inserted.unreachable, 0,
            "{metric:?}, inserted: {inserted:?}"
        );
        assert!(
            unfound.is_empty(),
            "{metric:?}, inserted: not found {unfound:?}"
        );

        let mut docs = all
            .iter()
            .map(|(id, v)| (Arc::<str>::from(id.as_str()), doc(Some(v.clone()))));
        idx.rebuild(&mut docs, 1_100).unwrap();
        let rebuilt = idx.health(&no_recall);
        let unfound = unfound_by_own_vector(&idx, &all, 100);
        eprintln!(
            "{metric:?}, rebuilt: {} of {} unreachable, {} orphans, mean degree {:.1}, {} not found",
            rebuilt.unreachable,
            rebuilt.live,
            rebuilt.orphans,
            rebuilt.mean_degree,
            unfound.len()
        );
        assert_eq!(rebuilt.unreachable, 0, "{metric:?}, rebuilt: {rebuilt:?}");
        assert!(
            unfound.is_empty(),
            "{metric:?}, rebuilt: not found {unfound:?}"
        );

        let graph = idx.rebuild_graph();
        assert!(graph.applied, "{metric:?}: {graph:?}");
        assert_eq!(graph.after.unreachable, 0, "{metric:?}: {graph:?}");
        let unfound = unfound_by_own_vector(&idx, &all, 100);
        assert!(
            unfound.is_empty(),
            "{metric:?}, graph rebuilt: not found {unfound:?}"
        );
    }
}
