//! An HNSW collection whose graph answers badly although it looks whole, against the real `medic serve`: a graph
//! of clustered vectors is loaded and measured (sampled recall@10 above the collection's `recall_floor`); with the
//! daemon stopped, every link of the graph is scrambled in the index file, which is written back with good
//! checksums (so the daemon loads it rather than rebuilding it) and still has every node reachable — only the
//! sampled recall shows the damage. The restarted daemon's deep tier raises `derived_structure` with the problem
//! `recall_below_floor`, `derived_restructure` rebuilds the graph in place, and the recall is back above the floor.

mod support;

use std::sync::Arc;
use std::time::Duration;

use index_vector::synth::Clustered;
use index_vector::{GraphFault, HealthOptions, HnswIndex, HnswParams, Metric};
use serde_json::{Value, json};
use support::{Daemon, incidents_about, index_rebuilds, index_status, wait_for};

const DIM: usize = 16;
const DOCS: usize = 3_000;
const FLOOR: f64 = 0.9;

fn start(data: &std::path::Path, logs: &std::path::Path, cfg: &std::path::Path) -> Daemon {
    Daemon::start_with(
        data,
        logs,
        &["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()],
    )
}

/// Waits until the deep tier measured `c`'s graph with every document and no problem; its figures.
fn healthy(d: &Daemon, c: &str, what: &str) -> Value {
    wait_for(what, Duration::from_secs(120), || {
        let st = index_status(d, c, "hnsw")["structure"].clone();
        let f = &st["figures"];
        (f["live"].as_f64() == Some(DOCS as f64)
            && f["recall_at_10"].as_f64().is_some()
            && st["problems"] == json!([]))
        .then(|| f.clone())
    })
}

#[test]
fn a_graph_that_answers_badly_is_found_by_its_sampled_recall_and_rebuilt_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = support::checks_config(tmp.path(), 400);
    let d = start(&data, tmp.path(), &cfg);
    let settings = json!({
        "dimension": DIM, "metric": "l2", "index": "hnsw", "recall_floor": FLOOR,
    });
    let (s, v) = d.json("PUT", "/v1/collections/vec", Some(&settings));
    assert!(s == 200 || s == 201, "{v}");
    let (base, _) = Clustered::new(DOCS, DIM, 21).generate(0);
    let body: String = base
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{}\n",
                json!({"id": format!("v{i}"), "text": format!("v {i}"), "vector": v})
            )
        })
        .collect();
    let (s, v) = d.post_ndjson("/v1/collections/vec/docs", &body);
    assert_eq!(s, 200, "{v}");
    let before = healthy(&d, "vec", "the graph measured healthy");
    let recall_before = before["recall_at_10"].as_f64().unwrap();
    assert!(recall_before >= FLOOR, "{before}");
    d.stop();

    // The file rewritten with every link scrambled: good checksums, every node reachable, recall gone.
    let params = HnswParams {
        metric: Metric::L2,
        recall_floor: FLOOR,
        ..HnswParams::default()
    };
    let io = Arc::new(store::io::IoFaults::default());
    let idx = HnswIndex::open(&data, "vec", params.clone(), io.clone()).unwrap();
    assert_eq!(idx.open_report().reason, None, "{:?}", idx.open_report());
    assert_eq!(idx.health(&HealthOptions::default()).live, DOCS as u64);
    idx.inject(&GraphFault::ScrambledLinks { seed: 9 });
    idx.write_now().unwrap();
    drop(idx);
    let hurt = HnswIndex::open(&data, "vec", params, io).unwrap();
    assert_eq!(hurt.open_report().reason, None, "{:?}", hurt.open_report());
    let h = hurt.health(&HealthOptions::default());
    assert!(h.connected(), "{h:?}");
    let recall_hurt = h.recall_at_10.unwrap();
    assert!(recall_hurt < FLOOR, "{h:?}");
    drop(hurt);

    let d = start(&data, tmp.path(), &cfg);
    let rebuilds_before = index_rebuilds(&d, "vec", "hnsw");
    let found = wait_for(
        "an incident naming recall_below_floor, repaired",
        Duration::from_secs(120),
        || {
            incidents_about(&d, "recall_below_floor")
                .into_iter()
                .map(|i| i["incident"].clone())
                .find(|rec| rec["resolution"] == "auto_repaired")
        },
    );
    let text = found.to_string();
    assert!(text.contains("idx/vec/hnsw"), "{text}");
    let attempts = found["attempts"]
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
    let after = healthy(&d, "vec", "the graph measured healthy again");
    let recall_after = after["recall_at_10"].as_f64().unwrap();
    eprintln!(
        "recall@10 {recall_before:.3} before, {recall_hurt:.3} with scrambled links, {recall_after:.3} after the repair"
    );
    assert!(
        recall_after >= FLOOR && recall_after >= recall_before - 0.01,
        "recall {recall_before} before, {recall_after} after"
    );
    assert_eq!(index_rebuilds(&d, "vec", "hnsw"), rebuilds_before);
    // Searches are led to the query again: a stored vector finds itself.
    let (s, v) = d.json(
        "POST",
        "/v1/collections/vec/search",
        Some(&json!({"vector": base[17], "k": 1})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["hits"][0]["id"], "v17", "{v}");
    d.stop();
}
