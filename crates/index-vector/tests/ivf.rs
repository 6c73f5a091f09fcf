//! The IVF index as a derived index, fed with `Change` values built here: training refused below the minimum (exact
//! answers, said so), trained by `apply` once there are enough, probes, deletes, persistence and damage, the health
//! figures, and drift (a new cluster after training) detected by `structure` and repaired by a retraining.

use std::sync::Arc;

use index_vector::synth::Clustered;
use index_vector::{IvfIndex, IvfParams, Metric, RETRAIN, recall};
use store::codec::Document;
use store::derived::{Change, DEFAULT_COLLECTION, DerivedIndex, Truth};
use store::io::IoFaults;

fn put(lsn: u64, id: &str, v: Vec<f32>) -> Change {
    Change {
        lsn,
        collection: Arc::from(DEFAULT_COLLECTION),
        id: Arc::from(id),
        doc: Some(Arc::new(Document {
            text: String::new(),
            vector: Some(v),
            meta: None,
        })),
    }
}

fn params() -> IvfParams {
    IvfParams {
        metric: Metric::L2,
        lists: 20,
        probes: 4,
        ..IvfParams::default()
    }
}

fn open(dir: &std::path::Path) -> IvfIndex {
    IvfIndex::open(dir, DEFAULT_COLLECTION, params(), Arc::new(IoFaults::new())).unwrap()
}

fn apply(idx: &IvfIndex, first_lsn: u64, prefix: &str, vectors: &[Vec<f32>]) -> u64 {
    let changes: Vec<Change> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| put(first_lsn + i as u64, &format!("{prefix}-{i}"), v.clone()))
        .collect();
    for batch in changes.chunks(250) {
        idx.apply(batch).unwrap();
    }
    first_lsn + vectors.len() as u64 - 1
}

#[test]
fn ivf_serves_exact_until_trained_then_probes_lists_persists_and_refuses_a_damaged_file() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    let (data, queries) = Clustered::new(2_000, 16, 81).generate(20);
    // 700 vectors for 20 lists: 35 per list, below 40: every search is an exact scan, and says so.
    let lsn = apply(&idx, 1, "a", &data[..700]);
    let h = idx.health();
    assert!(!h.trained && h.recall_at_10 == Some(1.0), "{h:?}");
    let ans = idx.search(&queries[0], 10, None, None).unwrap();
    assert!(
        ans.untrained.as_deref().unwrap().contains("needs 800"),
        "{ans:?}"
    );
    assert_eq!(ans.hits, idx.exact(&queries[0], 10, None).unwrap());
    // Enough vectors: the next apply trains.
    let lsn = apply(&idx, lsn + 1, "b", &data[700..]);
    let h = idx.health();
    assert!(h.trained && h.lists == 20 && h.live == 2_000, "{h:?}");
    assert!(h.imbalance >= 1.0 && h.imbalance < 3.0, "{h:?}");
    assert!(h.recall_at_10.unwrap() >= 0.9, "{h:?}");
    let ans = idx.search(&queries[0], 10, None, None).unwrap();
    assert!(ans.untrained.is_none());
    // Every list probed is exact; one list is at most as good.
    let exact = idx.exact(&queries[0], 10, None).unwrap();
    let all = idx.search(&queries[0], 10, Some(20), None).unwrap().hits;
    assert_eq!(recall(&exact, &all), 1.0);
    assert!(idx.search(&queries[0], 10, Some(0), None).is_err());
    // A delete is never returned; a filter is honoured.
    let gone = exact[0].id.clone();
    idx.apply(&[Change {
        lsn: lsn + 1,
        collection: Arc::from(DEFAULT_COLLECTION),
        id: gone.clone(),
        doc: None,
    }])
    .unwrap();
    let only_b = |id: &str| id.starts_with("b-");
    let hits = idx
        .search(&queries[0], 10, None, Some(&only_b))
        .unwrap()
        .hits;
    assert!(hits.iter().all(|h| h.id != gone && h.id.starts_with("b-")));
    // Persisted whole and reopened trained, with the same answers.
    assert_eq!(idx.persist().unwrap(), lsn + 1);
    let again = open(tmp.path());
    assert!(again.open_report().loaded, "{:?}", again.open_report());
    assert_eq!(again.applied_lsn(), lsn + 1);
    assert_eq!(
        again.search(&queries[1], 10, None, None).unwrap(),
        idx.search(&queries[1], 10, None, None).unwrap()
    );
    // A flipped byte: the check names the damage, a reopen starts empty (and is rebuilt by the driver).
    let path = idx.file_path();
    let mut b = std::fs::read(&path).unwrap();
    let n = b.len();
    b[n / 2] ^= 0x10;
    std::fs::write(&path, b).unwrap();
    let truth = Truth {
        lsn: lsn + 1,
        count: 1_999,
        sample: vec![],
    };
    assert!(!idx.check(&truth).unwrap().damage.is_empty());
    let damaged = open(tmp.path());
    assert!(!damaged.open_report().loaded);
    assert_eq!(damaged.applied_lsn(), 0);
}

#[test]
fn a_new_cluster_after_training_is_drift_the_structure_names_and_a_retraining_repairs() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    let (data, _) = Clustered::new(2_000, 16, 7).generate(0);
    let lsn = apply(&idx, 1, "a", &data);
    let before = idx.structure().unwrap();
    assert!(before.problems.is_empty(), "{before:?}");
    let recall_before = before.figures["recall_at_10"];
    // A cluster far from everything trained on: inserted into the nearest (wrong) lists.
    let far: Vec<Vec<f32>> = Clustered::new(1_200, 16, 99)
        .generate(0)
        .0
        .into_iter()
        .map(|v| v.into_iter().map(|x| x + 12.0).collect())
        .collect();
    apply(&idx, lsn + 1, "far", &far);
    let s = idx.structure().unwrap();
    let p = s.problems.iter().find(|p| p.code == RETRAIN);
    assert!(p.is_some(), "{s:?}");
    assert!(s.figures["drift"] > 1.5, "{s:?}");
    let done = idx.repair_structure(RETRAIN).unwrap();
    assert!(done.contains("retrained 20 lists"), "{done}");
    let after = idx.structure().unwrap();
    assert!(after.problems.is_empty(), "{after:?}");
    assert_eq!(after.figures["inserted_since_training"], 0.0);
    assert!(
        after.figures["recall_at_10"] >= recall_before - 0.01,
        "{recall_before} → {after:?}"
    );
    // The retrained lists were persisted at once: a reopen finds them.
    let again = open(tmp.path());
    assert!(again.open_report().loaded);
    assert_eq!(again.health().inserted_since_training, 0);
}
