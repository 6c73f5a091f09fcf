//! An IVF collection against the real `medic serve`: created with `"index": "ivf"`, bulk-loaded over NDJSON with
//! clustered vectors, searched (answered from an exact scan, and said so, until there are enough vectors to train;
//! then from the lists, with a filter and a per-query `probes`); then a new cluster far from everything trained on
//! is inserted — drift — and the engine's deep tier names it (`derived_structure`, problem `ivf_retrain`) and
//! retrains, and the sampled recall is back.

mod support;

use std::time::Duration;

use index_vector::synth::Clustered;
use serde_json::{Value, json};
use support::{Daemon, incidents_about, index_rebuilds, index_status, wait_for};

const DIM: usize = 16;

/// Bulk-loads `vectors` as `{prefix}-{i}` with meta `{"group": prefix, "i": i}` into the collection `c`.
fn load(d: &Daemon, c: &str, prefix: &str, vectors: &[Vec<f32>]) {
    let body: String = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{}\n",
                json!({"id": format!("{prefix}-{i}"), "text": format!("{prefix} {i}"), "vector": v, "meta": {"group": prefix, "i": i}})
            )
        })
        .collect();
    let (s, v) = d.post_ndjson(&format!("/v1/collections/{c}/docs"), &body);
    assert_eq!(s, 200, "{v}");
}

fn search(d: &Daemon, c: &str, body: Value) -> Value {
    let (s, v) = d.json("POST", &format!("/v1/collections/{c}/search"), Some(&body));
    assert_eq!(s, 200, "{body} → {v}");
    v
}

/// Waits until the deep tier measured the IVF index trained, with `live` vectors and no problem; its figures.
fn settled(d: &Daemon, c: &str, live: f64, what: &str) -> Value {
    wait_for(what, Duration::from_secs(120), || {
        let st = index_status(d, c, "ivf")["structure"].clone();
        let f = &st["figures"];
        (f["live"].as_f64() == Some(live)
            && f["trained"].as_f64() == Some(1.0)
            && f["inserted_since_training"].as_f64() == Some(0.0)
            && st["problems"] == json!([]))
        .then(|| f.clone())
    })
}

#[test]
fn an_ivf_collection_serves_exact_until_trained_filters_and_is_retrained_after_drift() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = support::checks_config(tmp.path(), 400);
    let d = Daemon::start_with(
        &data,
        tmp.path(),
        &["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()],
    );
    let settings = json!({
        "dimension": DIM, "metric": "l2", "index": "ivf", "ivf": {"lists": 8, "probes": 3},
        "recall_floor": 0.7, "fields": {"group": "keyword"}
    });
    let (s, v) = d.json("PUT", "/v1/collections/clus", Some(&settings));
    assert!(s == 200 || s == 201, "{v}");
    let (s, v) = d.json("GET", "/v1/collections/clus", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["settings"]["indexes"],
        json!(["flat", "ivf", "text"]),
        "{v}"
    );
    // A bad parameter is named with its range.
    let (s, v) = d.json(
        "PUT",
        "/v1/collections/bad",
        Some(&json!({"index": "ivf", "ivf": {"lists": 4, "probes": 9}})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("ivf.probes"), "{v}");

    let (base, queries) = Clustered::new(1_000, DIM, 5).generate(5);
    // 200 vectors for 8 lists (training needs 320): an exact scan, and the answer says why.
    load(&d, "clus", "a", &base[..200]);
    let v = search(
        &d,
        "clus",
        json!({"vector": queries[0], "k": 5, "consistency": "strong"}),
    );
    assert_eq!(
        (v["index"].as_str(), v["exact"].as_bool()),
        (Some("scan"), Some(true)),
        "{v}"
    );
    assert!(
        v["reason"].as_str().unwrap().contains("training needs 320"),
        "{v}"
    );

    load(&d, "clus", "b", &base[200..]);
    let before = settled(&d, "clus", 1_000.0, "the ivf index trained on 1000 vectors");
    let recall_before = before["recall_at_10"].as_f64().unwrap();
    assert!(recall_before >= 0.7, "{before}");
    assert_eq!(before["lists"].as_f64(), Some(8.0), "{before}");
    assert!(before["imbalance"].as_f64().unwrap() >= 1.0, "{before}");

    // From the lists now: a filter, stored fields back, a per-query probes.
    let v = search(
        &d,
        "clus",
        json!({"vector": queries[1], "k": 5, "filter": {"group": "b"}, "include": ["meta"], "probes": 8}),
    );
    assert_eq!(
        (v["index"].as_str(), v["exact"].as_bool()),
        (Some("ivf"), Some(false)),
        "{v}"
    );
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 5, "{v}");
    assert!(hits.iter().all(|h| h["meta"]["group"] == "b"), "{v}");
    let (s, v) = d.json(
        "POST",
        "/v1/collections/clus/search",
        Some(&json!({"vector": queries[1], "k": 5, "probes": 0})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("probes"), "{v}");

    // Drift: a cluster far from every centroid, inserted after training.
    let rebuilds_before = index_rebuilds(&d, "clus", "ivf");
    let far: Vec<Vec<f32>> = Clustered::new(600, DIM, 77)
        .generate(0)
        .0
        .into_iter()
        .map(|v| v.into_iter().map(|x| x + 12.0).collect())
        .collect();
    load(&d, "clus", "far", &far);
    let after = settled(&d, "clus", 1_600.0, "the ivf index retrained by the engine");
    let recall_after = after["recall_at_10"].as_f64().unwrap();
    assert!(
        recall_after >= recall_before - 0.01,
        "recall {recall_before} before the drift, {recall_after} after the retraining"
    );
    // Retrained in place by derived_restructure: the incident names the strategy, which succeeded, no rebuild
    // from the table was attempted, and the daemon's rebuild count of the index did not move.
    let rec = wait_for(
        "the drift incident, auto-repaired",
        Duration::from_secs(60),
        || {
            incidents_about(&d, "lists no longer fit")
                .into_iter()
                .map(|i| i["incident"].clone())
                .find(|rec| rec["resolution"] == "auto_repaired")
        },
    );
    let text = rec.to_string();
    assert!(text.contains("derived_structure"), "{text}");
    assert!(text.contains("ivf_retrain"), "{text}");
    let attempts = rec["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        attempts
            .iter()
            .any(|a| a["strategy"] == "derived_restructure" && a["outcome"] == "succeeded"),
        "{text}"
    );
    assert!(
        attempts.iter().all(|a| a["strategy"] != "derived_rebuild"),
        "{text}"
    );
    assert_eq!(index_rebuilds(&d, "clus", "ivf"), rebuilds_before);
    let (_, _, metrics) = d.request("GET", "/metrics", None);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("medic_index_structure{")
                && l.contains("index=\"ivf\"")
                && l.contains("figure=\"recall_at_10\"")),
        "{metrics}"
    );
    // The far cluster is found from the lists.
    let v = search(&d, "clus", json!({"vector": far[3], "k": 3}));
    assert_eq!(v["hits"][0]["id"], "far-3", "{v}");
    d.stop();
}
