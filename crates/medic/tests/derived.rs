//! Vector search served from the derived `flat` index, against the real `medic serve`: documents put over HTTP,
//! searched (`"consistency": "strong"`), `idx/` deleted under the running daemon while writes go on and while it is
//! idle — the index is rebuilt without a human —, and after a restart the index is caught up; every answer equals
//! an exact brute force the test computes itself.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Daemon, wait_for};

const DIM: usize = 8;

/// A seeded pseudo-random vector for document `i` (no two equal, none zero).
fn vector(i: usize, salt: u64) -> Vec<f32> {
    let mut x = (i as u64 + 1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(salt);
    (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x % 2001) as f32 - 1000.0) / 1000.0 + 0.001
        })
        .collect()
}

/// The exact cosine top-`k` of `q` over `docs` (score desc, id asc), in f64.
fn brute(docs: &BTreeMap<String, Vec<f32>>, q: &[f32], k: usize) -> Vec<(String, f64)> {
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let qn = norm(q);
    let mut all: Vec<(String, f64)> = docs
        .iter()
        .map(|(id, v)| {
            let d: f64 = v
                .iter()
                .zip(q)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            (id.clone(), d / norm(v) / qn)
        })
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

fn search(d: &Daemon, q: &[f32], k: usize) -> Vec<(String, f64)> {
    let (s, v) = d.json(
        "POST",
        "/v1/search",
        Some(&json!({"vector": q, "k": k, "consistency": "strong", "exact": true})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["index"], "flat", "{v}");
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["id"].as_str().unwrap().to_string(),
                h["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// The daemon's answers equal the brute force: same scores in order (f32 vs f64: within 1e-5), and the same ids
/// wherever the exact scores are not within that of each other.
fn assert_exact(d: &Daemon, docs: &BTreeMap<String, Vec<f32>>, what: &str) {
    for qi in 0..12 {
        let q = vector(10_000 + qi, 7);
        let got = search(d, &q, 10);
        let want = brute(docs, &q, 10);
        assert_eq!(
            got.len(),
            want.len(),
            "{what}: query {qi}: {got:?} vs {want:?}"
        );
        for (i, ((gid, gs), (wid, ws))) in got.iter().zip(&want).enumerate() {
            assert!(
                (gs - ws).abs() < 1e-5,
                "{what}: query {qi} hit {i}: {gid} {gs} vs {wid} {ws}"
            );
            let tie = want
                .iter()
                .any(|(id, s)| id != wid && (s - ws).abs() < 1e-5);
            if !tie {
                assert_eq!(gid, wid, "{what}: query {qi} hit {i}");
            }
        }
    }
}

fn put(d: &Daemon, docs: &mut BTreeMap<String, Vec<f32>>, i: usize, salt: u64) {
    let id = format!("v{i:04}");
    let v = vector(i, salt);
    let (s, body) = d.json(
        "PUT",
        &format!("/v1/docs/{id}"),
        Some(&json!({"text": format!("doc {i}"), "vector": v})),
    );
    assert_eq!(s, 200, "{body}");
    docs.insert(id, v);
}

fn bulk(d: &Daemon, docs: &mut BTreeMap<String, Vec<f32>>, range: std::ops::Range<usize>) {
    let mut lines = Vec::new();
    for i in range {
        let id = format!("v{i:04}");
        let v = vector(i, 1);
        lines.push(json!({"id": id, "text": format!("doc {i}"), "vector": v}));
        docs.insert(id, v);
    }
    d.bulk(lines);
}

fn flat_status(d: &Daemon) -> Value {
    let (_, st) = d.json("GET", "/v1/status", None);
    st["derived"]["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "flat")
        .cloned()
        .unwrap_or_else(|| panic!("no flat index in {}", st["derived"]))
}

/// Removes `dir` as an operator's `rm -rf` would, again while an index still writes a file into it.
fn rm_rf(dir: &std::path::Path) {
    wait_for("the directory removed", Duration::from_secs(10), || {
        std::fs::remove_dir_all(dir).ok()
    });
}

#[test]
fn vector_search_is_served_from_the_flat_index_rebuilt_without_a_human_and_caught_up_after_a_restart()
 {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = support::checks_config(tmp.path(), 400);
    let args = ["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()];
    let d = Daemon::start_with(&data, tmp.path(), &args);
    let mut docs = BTreeMap::new();
    bulk(&d, &mut docs, 0..400);
    for i in 400..420 {
        put(&d, &mut docs, i, 2);
    }
    assert_exact(&d, &docs, "after the first writes");
    let st = flat_status(&d);
    assert_eq!(st["dir"], "idx/default/flat", "{st}");
    wait_for("the index file", Duration::from_secs(30), || {
        data.join("idx/default/flat/flat.bin")
            .is_file()
            .then_some(())
    });

    // Deleted while writes go on: rebuilt, and every write is served.
    rm_rf(&data.join("idx"));
    for i in 420..470 {
        put(&d, &mut docs, i, 3);
    }
    for i in (0..40).step_by(4) {
        let id = format!("v{i:04}");
        let (s, _, _) = d.request("DELETE", &format!("/v1/docs/{id}"), None);
        assert_eq!(s, 200);
        docs.remove(&id);
    }
    for i in 100..110 {
        put(&d, &mut docs, i, 4);
    }
    wait_for("a rebuild", Duration::from_secs(60), || {
        let st = flat_status(&d);
        (st["rebuilds"].as_u64() >= Some(1) && st["state"] == "current").then_some(())
    });
    wait_for("the index file again", Duration::from_secs(30), || {
        data.join("idx/default/flat/flat.bin")
            .is_file()
            .then_some(())
    });
    assert_exact(&d, &docs, "after idx/ was deleted under writes");

    // Deleted while idle: the engine's agreement check finds it and its rebuild writes it back. Idle means no index
    // has changes left to persist (a persist still due would find the directory gone, and the index's own driver
    // would rebuild it before the engine looks).
    wait_for("every index persisted", Duration::from_secs(30), || {
        let (_, st) = d.json("GET", "/v1/status", None);
        st["derived"]["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["unpersisted_changes"] == 0 && i["lag_records"] == 0)
            .then_some(())
    });
    let before = flat_status(&d)["rebuilds"].as_u64().unwrap();
    rm_rf(&data.join("idx"));
    wait_for("a rebuild by the engine", Duration::from_secs(60), || {
        let st = flat_status(&d);
        (st["rebuilds"].as_u64() > Some(before) && data.join("idx/default/flat/flat.bin").is_file())
            .then_some(())
    });
    wait_for(
        "an incident naming the damaged index",
        Duration::from_secs(30),
        || {
            let (_, incidents) = d.json("GET", "/v1/incidents", None);
            incidents
                .to_string()
                .contains("derived_damaged")
                .then_some(())
        },
    );
    assert_exact(&d, &docs, "after idx/ was deleted while idle");

    // Bad input is named.
    let (s, v) = d.json(
        "POST",
        "/v1/search",
        Some(&json!({"vector": vector(1, 1), "k": 3, "consistency": "sometimes"})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("consistency"), "{v}");
    let (s, v) = d.json(
        "POST",
        "/v1/search",
        Some(&json!({"vector": [1.0, 2.0], "k": 3})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("dimension 2"), "{v}");
    d.stop();

    // Restarted: the index opens from its file and is caught up (no rebuild needed).
    let d = Daemon::start_with(&data, tmp.path(), &args);
    for i in 470..480 {
        put(&d, &mut docs, i, 5);
    }
    assert_exact(&d, &docs, "after a restart");
    let st = flat_status(&d);
    assert_eq!(st["rebuilds"], 0, "{st}");
    assert!(st["catch_ups"].as_u64() >= Some(1), "{st}");
    wait_for(
        "the index at the log's head",
        Duration::from_secs(30),
        || {
            let st = flat_status(&d);
            (st["applied_lsn"] == st["log_lsn"]).then_some(())
        },
    );
    d.stop();
}

#[test]
fn a_collection_shows_its_indexes_structure_as_the_deep_tier_measured_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = support::checks_config(tmp.path(), 400);
    let args = ["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()];
    let d = Daemon::start_with(&data, tmp.path(), &args);
    let mut docs = BTreeMap::new();
    bulk(&d, &mut docs, 0..300);
    let hnsw = wait_for(
        "the hnsw structure measured with every document",
        Duration::from_secs(60),
        || {
            let (s, v) = d.json("GET", "/v1/collections/default", None);
            assert_eq!(s, 200, "{v}");
            let h = v["indexes"]
                .as_array()?
                .iter()
                .find(|i| i["name"] == "hnsw")?
                .clone();
            (h["structure"]["figures"]["live"].as_f64() == Some(300.0)).then_some(h)
        },
    );
    let figures = &hnsw["structure"]["figures"];
    assert_eq!(figures["reachable_fraction"].as_f64(), Some(1.0), "{hnsw}");
    assert_eq!(figures["orphans"].as_f64(), Some(0.0), "{hnsw}");
    assert_eq!(figures["entry_live"].as_f64(), Some(1.0), "{hnsw}");
    assert!(figures["mean_degree"].as_f64().unwrap() > 1.0, "{hnsw}");
    assert_eq!(hnsw["structure"]["problems"], json!([]), "{hnsw}");
    assert_eq!(hnsw["dir"], "idx/default/hnsw", "{hnsw}");

    let (_, _, metrics) = d.request("GET", "/metrics", None);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("medic_index_structure{")
                && l.contains("index=\"hnsw\"")
                && l.contains("figure=\"reachable_fraction\"")
                && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) == Some(1.0)),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("medic_index_lag_records{") && l.contains("index=\"text\"")),
        "{metrics}"
    );

    let (s, v) = d.json("GET", "/v1/collections/nope", None);
    assert_eq!(s, 404, "{v}");
    assert!(v.to_string().contains("nope"), "{v}");
    d.stop();
}

/// A tiny store whose few documents are overwritten in place has half its HNSW nodes tombstones after one round:
/// no incident, and `medic check` stays HEALTHY.
#[test]
fn overwriting_a_tiny_store_raises_no_tombstone_incident() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = support::checks_config(tmp.path(), 300);
    let args = ["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()];
    let d = Daemon::start_with(&data, tmp.path(), &args);
    let mut docs = BTreeMap::new();
    for round in 0..3 {
        for i in 0..3 {
            put(&d, &mut docs, i, round);
        }
    }
    // The deep tier measures the graph with its tombstones (3 live nodes, at least as many tombstones).
    wait_for(
        "the hnsw structure measured after the overwrites",
        Duration::from_secs(60),
        || {
            let (s, v) = d.json("GET", "/v1/collections/default", None);
            assert_eq!(s, 200, "{v}");
            let h = v["indexes"]
                .as_array()?
                .iter()
                .find(|i| i["name"] == "hnsw")?
                .clone();
            let f = &h["structure"]["figures"];
            (f["live"].as_f64() == Some(3.0) && f["tombstones"].as_f64() >= Some(3.0)).then_some(h)
        },
    );
    // A few more deep runs.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        support::incident_with(&d, "derived_structure").is_none(),
        "{}",
        d.json("GET", "/v1/incidents", None).1
    );
    let (code, out, err) = support::medic(&data, &["check", "--tier", "quick"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("HEALTHY"), "{out}");
    assert_exact(&d, &docs, "after the overwrites");
    d.stop();
}
