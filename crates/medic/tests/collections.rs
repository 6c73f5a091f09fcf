//! Named collections through the real `medic serve` process: two collections of other dimensions than `default`'s,
//! documents (one by one and in bulk) and searches (text and vector) that see only their own collection, a SIGKILL
//! and restart after which every acknowledged document reads back the same, a drop (404 after it, `idx/<c>/`
//! gone), bad settings named in a 400 and unknown collections in a 404; a drop cut short by a crash (in the store,
//! or a SIGKILL of the daemon mid-drop) is finished at start, never half visible; the CLI's `--collection`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Daemon, wait_for};

/// A vector of `dim` values exact in `f32`, distinct per `i`.
fn vector(i: usize, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|j| {
            if j == 0 {
                i as f32 * 0.25 + 0.5
            } else {
                ((i * 7 + j * 3) % 17) as f32 * 0.25 + 0.5
            }
        })
        .collect()
}

/// The documents acknowledged, by `(collection, id)`.
type Acked = BTreeMap<(String, String), Value>;

fn put(d: &Daemon, acked: &mut Acked, c: &str, id: &str, doc: Value) {
    let path = if c == "default" {
        format!("/v1/docs/{id}")
    } else {
        format!("/v1/collections/{c}/docs/{id}")
    };
    let (s, v) = d.json("PUT", &path, Some(&doc));
    assert_eq!(s, 200, "PUT {path}: {v}");
    acked.insert((c.into(), id.into()), doc);
}

fn search(d: &Daemon, c: &str, body: Value) -> Vec<String> {
    let (s, v) = d.json("POST", &format!("/v1/collections/{c}/search"), Some(&body));
    assert_eq!(s, 200, "search {c} {body}: {v}");
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect()
}

fn assert_acked_readable(d: &Daemon, acked: &Acked, what: &str) {
    for ((c, id), want) in acked {
        let (s, got) = d.json("GET", &format!("/v1/collections/{c}/docs/{id}"), None);
        assert_eq!(s, 200, "{what}: {c}/{id}: {got}");
        let mut got = got;
        got.as_object_mut().unwrap().remove("id");
        assert_eq!(
            got.to_string(),
            want.to_string(),
            "{what}: {c}/{id} byte for byte"
        );
    }
}

#[test]
fn collections_over_http_keep_their_documents_apart_and_survive_a_kill() {
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let d = Daemon::start(data.path(), logs.path());

    // Settings checked, a bad one named.
    for (name, body, field) in [
        ("bad", json!({"metric": "cos"}), "metric"),
        ("bad", json!({"dimension": 0}), "dimension"),
        ("bad", json!({"indexes": ["btree"]}), "indexes"),
        ("bad", json!({"fields": {"n": "date"}}), "fields"),
        ("bad", json!({"dims": 3}), "dims"),
        ("Bad", json!({}), "collection name"),
    ] {
        let (s, v) = d.json("PUT", &format!("/v1/collections/{name}"), Some(&body));
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(field), "{body}: {v}");
    }
    let wide = json!({"dimension": 8, "fields": {"n": "integer"}});
    let (s, v) = d.json("PUT", "/v1/collections/wide", Some(&wide));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["settings"]["dimension"], 8, "{v}");
    assert_eq!(
        v["settings"]["indexes"],
        json!(["flat", "hnsw", "text"]),
        "{v}"
    );
    let (s, v) = d.json("PUT", "/v1/collections/wide", Some(&wide));
    assert_eq!(s, 200, "the same settings again: {v}");
    let (s, v) = d.json(
        "PUT",
        "/v1/collections/wide",
        Some(&json!({"metric": "dot"})),
    );
    assert_eq!(s, 409, "{v}");
    let (s, v) = d.json(
        "PUT",
        "/v1/collections/small",
        Some(&json!({"metric": "l2", "indexes": ["hnsw", "text"]})),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["settings"]["dimension"], Value::Null, "{v}");

    // Documents: default 3-d, wide 8-d, small fixed to 5-d by its first vector; one id in all three.
    let mut acked = Acked::new();
    for i in 0..30 {
        put(
            &d,
            &mut acked,
            "default",
            &format!("d{i}"),
            json!({"text": format!("apple {i}"), "vector": vector(i, 3)}),
        );
        put(
            &d,
            &mut acked,
            "wide",
            &format!("w{i}"),
            json!({"text": format!("banana {i}"), "vector": vector(i, 8), "meta": {"n": i}}),
        );
    }
    put(
        &d,
        &mut acked,
        "default",
        "shared",
        json!({"text": "shared apple", "vector": [1.0, 2.0, 3.0]}),
    );
    put(
        &d,
        &mut acked,
        "wide",
        "shared",
        json!({"text": "shared banana", "vector": vector(99, 8)}),
    );
    let mut ndjson = String::new();
    for i in 0..20 {
        let doc = json!({"text": format!("cherry {i}"), "vector": vector(i, 5)});
        acked.insert(("small".into(), format!("s{i}")), doc.clone());
        let mut line = doc;
        line["id"] = json!(format!("s{i}"));
        ndjson.push_str(&line.to_string());
        ndjson.push('\n');
    }
    let (status, v) = d.post_ndjson("/v1/collections/small/docs", &ndjson);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["written"], 20, "{v}");

    // A wrong dimension is refused, the default's error saying how to make a collection of another.
    let (s, v) = d.json(
        "PUT",
        "/v1/docs/x",
        Some(&json!({"text": "x", "vector": vector(0, 8)})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("PUT /v1/collections/<name> {\"dimension\": 8}"),
        "{v}"
    );
    let (s, v) = d.json(
        "PUT",
        "/v1/collections/small/docs/x",
        Some(&json!({"text": "x", "vector": vector(0, 3)})),
    );
    assert_eq!(s, 400, "{v}");

    // Each search sees its own collection only.
    let strong = |body: Value| {
        let mut b = body;
        b["consistency"] = json!("strong");
        b["k"] = json!(100);
        b
    };
    let hits = search(&d, "wide", strong(json!({"text": "banana"})));
    assert_eq!(hits.len(), 31, "{hits:?}");
    assert!(
        hits.iter().all(|h| h.starts_with('w') || h == "shared"),
        "{hits:?}"
    );
    assert!(search(&d, "wide", strong(json!({"text": "apple"}))).is_empty());
    let hits = search(&d, "default", strong(json!({"text": "apple"})));
    assert_eq!(hits.len(), 31, "{hits:?}");
    assert!(
        hits.iter().all(|h| h.starts_with('d') || h == "shared"),
        "{hits:?}"
    );
    let hits = search(
        &d,
        "wide",
        strong(json!({"vector": vector(3, 8), "exact": true})),
    );
    assert_eq!(hits.first().map(String::as_str), Some("w3"), "{hits:?}");
    assert!(
        hits.iter().all(|h| h.starts_with('w') || h == "shared"),
        "{hits:?}"
    );
    let hits = search(
        &d,
        "wide",
        strong(json!({"vector": vector(3, 8), "filter": {"n": {"gte": 25}}})),
    );
    assert_eq!(hits.len(), 5, "{hits:?}");
    let hits = search(&d, "small", strong(json!({"vector": vector(4, 5)})));
    assert_eq!(hits.first().map(String::as_str), Some("s4"), "{hits:?}");
    assert!(hits.iter().all(|h| h.starts_with('s')), "{hits:?}");
    let (s, v) = d.json(
        "POST",
        "/v1/search",
        Some(&strong(json!({"vector": [1.0, 2.0, 3.0], "exact": true}))),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["hits"][0]["id"], "shared", "{v}");
    assert!(
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| !h["id"].as_str().unwrap().starts_with('w')),
        "{v}"
    );

    // Listing and describing, with counts and index health.
    let (s, v) = d.json("GET", "/v1/collections", None);
    assert_eq!(s, 200, "{v}");
    let counts: Vec<(String, u64)> = v["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["collection"].as_str().unwrap().to_string(),
                c["documents"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            ("default".into(), 31),
            ("small".into(), 20),
            ("wide".into(), 31)
        ]
    );
    let (s, v) = d.json("GET", "/v1/collections/small", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["settings"]["dimension"], 5, "{v}");
    let names: Vec<&str> = v["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{v}");

    // Unknown collections are a 404 naming them.
    for (m, p, b) in [
        ("GET", "/v1/collections/nope", None),
        ("GET", "/v1/collections/nope/docs/a", None),
        (
            "PUT",
            "/v1/collections/nope/docs/a",
            Some(json!({"text": "a"})),
        ),
        (
            "POST",
            "/v1/collections/nope/search",
            Some(json!({"text": "a"})),
        ),
        ("DELETE", "/v1/collections/nope", None),
    ] {
        let (s, v) = d.json(m, p, b.as_ref());
        assert_eq!(s, 404, "{m} {p}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("nope"),
            "{m} {p}: {v}"
        );
    }

    // SIGKILL, restart: every acknowledged document of every collection, byte for byte; searches still apart.
    d.kill9();
    let d = Daemon::start(data.path(), logs.path());
    assert_acked_readable(&d, &acked, "after SIGKILL and restart");
    let hits = search(&d, "wide", strong(json!({"text": "banana"})));
    assert_eq!(hits.len(), 31, "{hits:?}");
    let hits = search(&d, "small", strong(json!({"text": "cherry"})));
    assert_eq!(hits.len(), 20, "{hits:?}");

    // Drop: gone (404), its index directory removed, the others untouched.
    assert!(data.path().join("idx/wide").is_dir());
    let (s, v) = d.json("DELETE", "/v1/collections/default", None);
    assert_eq!(s, 400, "{v}");
    let (s, v) = d.json("DELETE", "/v1/collections/wide", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["documents_deleted"], 31, "{v}");
    let (s, _) = d.json("GET", "/v1/collections/wide", None);
    assert_eq!(s, 404);
    let (s, _) = d.json("GET", "/v1/collections/wide/docs/w1", None);
    assert_eq!(s, 404);
    assert!(
        !data.path().join("idx/wide").exists(),
        "idx/wide/ is removed"
    );
    let (s, _, text) = d.request("GET", "/metrics", None);
    assert_eq!(s, 200);
    assert!(
        text.contains("medic_collection_documents{collection=\"small\"} 20"),
        "{text}"
    );
    assert!(
        !text.contains("collection=\"wide\""),
        "a dropped collection's series are removed: {text}"
    );
    acked.retain(|(c, _), _| c != "wide");
    assert_acked_readable(&d, &acked, "after the drop");
    d.stop();

    // After a clean restart the drop holds.
    let d = Daemon::start(data.path(), logs.path());
    let (s, _) = d.json("GET", "/v1/collections/wide", None);
    assert_eq!(s, 404);
    assert_acked_readable(&d, &acked, "after the drop and a restart");
    wait_for(
        "the small collection's indexes",
        Duration::from_secs(30),
        || {
            let (_, v) = d.json("GET", "/v1/collections/small", None);
            v["indexes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["state"] == "current")
                .then_some(())
        },
    );
    d.stop();
}

fn medic(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .env_remove("MEDIC_SERVER")
        .env_remove("MEDIC_TOKEN")
        .env_remove("MEDIC_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run medic");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn last_json(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap()
}

#[test]
fn the_cli_takes_a_collection_offline_and_through_the_daemon() {
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    // Offline.
    let (code, out, err) = medic(&[
        "put",
        "--data",
        dir,
        "a",
        "--text",
        "default apple",
        "--vector",
        "[1,2,3]",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = medic(&[
        "collections",
        "create",
        "--data",
        dir,
        "wide",
        "--dimension",
        "4",
        "--metric",
        "l2",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(last_json(&out)["settings"]["metric"], "l2", "{out}");
    let (code, out, err) = medic(&[
        "put",
        "--data",
        dir,
        "--collection",
        "wide",
        "a",
        "--text",
        "wide banana",
        "--vector",
        "[1,2,3,4]",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = medic(&["get", "--data", dir, "--collection", "wide", "a", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(last_json(&out)["text"], "wide banana");
    let (code, out, _) = medic(&["get", "--data", dir, "a", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(last_json(&out)["text"], "default apple");
    let (code, _, err) = medic(&["get", "--data", dir, "--collection", "nope", "a"]);
    assert_eq!(code, 2, "an unknown collection is a usage error: {err}");
    assert!(err.contains("nope"), "{err}");
    // An offline vector search scans the collection under its own metric: by l2, [5,5,5,5] is nearer a = [1,2,3,4]
    // than b = [10,10,10,10] (cosine would put b first).
    let (code, out, err) = medic(&[
        "put",
        "--data",
        dir,
        "--collection",
        "wide",
        "b",
        "--text",
        "wide cherry",
        "--vector",
        "[10,10,10,10]",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = medic(&[
        "search",
        "--data",
        dir,
        "--collection",
        "wide",
        "--vector",
        "[5,5,5,5]",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let hits = last_json(&out);
    assert_eq!(hits["hits"][0]["id"], "a", "{hits}");
    assert_eq!(hits["hits"][1]["id"], "b", "{hits}");
    let d_a = -(16.0f64 + 9.0 + 4.0 + 1.0).sqrt();
    assert!(
        (hits["hits"][0]["score"].as_f64().unwrap() - d_a).abs() < 1e-9,
        "minus the l2 distance: {hits}"
    );
    let (code, out, err) = medic(&["delete", "--data", dir, "--collection", "wide", "b"]);
    assert_eq!(code, 0, "{out}{err}");

    // Through the daemon holding the directory.
    let d = Daemon::start(data.path(), logs.path());
    let (code, out, err) = medic(&["collections", "--data", dir, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let all = last_json(&out);
    assert_eq!(all["collections"][1]["collection"], "wide", "{all}");
    assert_eq!(all["collections"][1]["documents"], 1, "{all}");
    let (code, out, err) = medic(&[
        "search",
        "--data",
        dir,
        "--collection",
        "wide",
        "--text",
        "banana",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let hits = last_json(&out);
    assert_eq!(hits["hits"].as_array().map(Vec::len), Some(1), "{hits}");
    let (code, out, err) = medic(&["collections", "drop", "--data", dir, "wide", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(last_json(&out)["documents_deleted"], 1, "{out}");
    let (code, _, err) = medic(&["get", "--data", dir, "--collection", "wide", "a"]);
    assert_eq!(code, 2, "{err}");
    d.stop();
}

#[test]
fn a_drop_cut_short_by_a_crash_is_finished_when_the_daemon_starts() {
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    {
        let s = store::Store::open(data.path(), store::StoreConfig::default()).unwrap();
        s.create_collection("big", store::CollectionSettings::default())
            .unwrap();
        for chunk in 0..3 {
            let docs = (0..1000)
                .map(|i| {
                    (
                        format!("d{chunk}-{i}"),
                        store::Document::text(format!("doc {i}")),
                    )
                })
                .collect();
            s.put_batch_in("big", docs).unwrap();
        }
        s.put("keep", store::Document::text("kept")).unwrap();
        // One commit of deletes, then a crash: no clean close.
        s.drop_collection_partly("big", 1).unwrap();
        drop(s);
        let s = store::Store::open(data.path(), store::StoreConfig::default()).unwrap();
        let big = s.collection("big").unwrap().unwrap();
        assert_eq!(big.state, store::CollectionState::Dropping);
        assert_eq!(big.documents, 2_000);
        s.close().unwrap();
    }
    let d = Daemon::start(data.path(), logs.path());
    let (s, v) = d.json("GET", "/v1/collections/big", None);
    assert_eq!(s, 404, "finished at start: {v}");
    let (s, v) = d.json("GET", "/v1/collections", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["collections"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["collections"][0]["documents"], 1, "{v}");
    let (s, v) = d.json("GET", "/v1/docs/keep", None);
    assert_eq!(s, 200, "{v}");
    // The name is free again.
    let (s, v) = d.json("PUT", "/v1/collections/big", Some(&json!({})));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["documents"], 0, "{v}");
    d.stop();
}

#[test]
fn a_daemon_killed_during_a_drop_finishes_it_at_restart() {
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let d = Daemon::start(data.path(), logs.path());
    let (s, v) = d.json(
        "PUT",
        "/v1/collections/big",
        Some(&json!({"indexes": ["text"]})),
    );
    assert_eq!(s, 201, "{v}");
    let mut acked = Acked::new();
    for i in 0..20 {
        put(
            &d,
            &mut acked,
            "default",
            &format!("k{i}"),
            json!({"text": format!("kept {i}")}),
        );
    }
    for chunk in 0..6 {
        let mut ndjson = String::new();
        for i in 0..5_000 {
            ndjson.push_str(
                &json!({"id": format!("b{chunk}-{i}"), "text": "to be dropped"}).to_string(),
            );
            ndjson.push('\n');
        }
        let (status, v) = d.post_ndjson("/v1/collections/big/docs", &ndjson);
        assert_eq!(status, 200, "{v}");
    }
    // The drop deletes 30,000 documents in 30 commits; the daemon is killed while it runs (or just after).
    let url = format!("{}/v1/collections/big", d.url);
    let dropper = std::thread::spawn(move || {
        let _ = support::agent().delete(&url).call();
    });
    // Killed once the drop has begun (its settings say `dropping`), or after it, if it was that quick.
    let began = wait_for("the drop to begin", Duration::from_secs(30), || {
        let (s, v) = d.json("GET", "/v1/collections/big", None);
        (s == 404 || v["state"] == "dropping").then_some(v)
    });
    d.kill9();
    eprintln!("killed at: {began}");
    let _ = dropper.join();
    let d = Daemon::start(data.path(), logs.path());
    let (s, v) = d.json("GET", "/v1/collections/big", None);
    assert_eq!(
        s, 404,
        "the drop is finished at start, never half visible: {v}"
    );
    let (s, v) = d.json("GET", "/v1/collections", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["collections"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["collections"][0]["documents"], 20, "{v}");
    assert!(!data.path().join("idx/big").exists(), "idx/big/ is removed");
    assert_acked_readable(&d, &acked, "after a kill during a drop");
    d.stop();
}

/// A text search of collection `c` for `q`: whether it was answered degraded (from a scan), and its hits.
fn text_search(d: &Daemon, c: &str, q: &str) -> (bool, Vec<String>, Value) {
    let (s, v) = d.json(
        "POST",
        &format!("/v1/collections/{c}/search"),
        Some(&json!({"text": q, "k": 10, "consistency": "strong"})),
    );
    assert_eq!(s, 200, "search {c} {q}: {v}");
    let hits = support::hit_ids(&v);
    (v["degraded"] == json!(true), hits, v)
}

/// The `(collection, name)` of every index `/v1/status` lists as attached.
fn attached_indexes(d: &Daemon) -> Vec<(String, String)> {
    let (s, st) = d.json("GET", "/v1/status", None);
    assert_eq!(s, 200, "{st}");
    st["derived"]["indexes"]
        .as_array()
        .unwrap_or_else(|| panic!("no derived.indexes in {st}"))
        .iter()
        .map(|i| {
            (
                i["collection"].as_str().unwrap().to_string(),
                i["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_refused_drop_of_default_leaves_its_indexes_attached() {
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let cfg = support::checks_config(logs.path(), 60_000);
    let d = support::start_with_config_file(data.path(), logs.path(), &cfg);
    let (s, v) = d.json("PUT", "/v1/docs/a", Some(&json!({"text": "apple pie"})));
    assert_eq!(s, 200, "{v}");
    wait_for("the text index answers", Duration::from_secs(30), || {
        let (degraded, hits, _) = text_search(&d, "default", "apple");
        (!degraded && hits == ["a"]).then_some(())
    });
    let (s, v) = d.json("DELETE", "/v1/collections/default", None);
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("cannot be dropped"), "{v}");
    let (code, _, err) = support::medic(data.path(), &["collections", "drop", "default"]);
    assert_ne!(code, 0, "{err}");
    let attached = attached_indexes(&d);
    for name in ["flat", "hnsw", "text"] {
        assert!(
            attached.contains(&("default".into(), name.into())),
            "default/{name} attached after the refused drop: {attached:?}"
        );
    }
    // The index still follows writes: a new document is found from the index, not a scan.
    let (s, v) = d.json("PUT", "/v1/docs/b", Some(&json!({"text": "apple tart"})));
    assert_eq!(s, 200, "{v}");
    let (degraded, mut hits, v) = text_search(&d, "default", "apple");
    hits.sort();
    assert!(
        !degraded,
        "answered from a scan after the refused drop: {v}"
    );
    assert_eq!(hits, ["a", "b"], "{v}");
    let log = d.stderr();
    assert!(!log.contains("is locked by another writer"), "{log}");
    d.stop();
}

#[test]
fn an_index_that_failed_to_attach_is_an_issue_the_daemon_heals() {
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    // A repair blocked by the environment (the directory held) is tried again after the strategy's cooldown.
    let d = support::start_with_config(
        data.path(),
        logs.path(),
        "[checks]\nshallow_interval_ms = 200\ndeep_interval_ms = 60000\n\
         [engine]\nstrategy_cooldown_us = 1000000\n",
    );
    // Another holder of the collection's text index directory: its attach at create fails.
    let dir = data.path().join("idx/held/text");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join("LOCK")).unwrap();
    lock.try_lock().unwrap();
    let (s, v) = d.json(
        "PUT",
        "/v1/collections/held",
        Some(&json!({"indexes": ["text"]})),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = d.json(
        "PUT",
        "/v1/collections/held/docs/x",
        Some(&json!({"text": "quince jam"})),
    );
    assert_eq!(s, 200, "{v}");
    let (degraded, hits, v) = text_search(&d, "held", "quince");
    assert!(degraded, "no text index attached, so a scan: {v}");
    assert_eq!(hits, ["x"], "{v}");
    // The engine sees the index missing ...
    let incident = wait_for(
        "an incident about the unattached index",
        Duration::from_secs(30),
        || support::incident_with(&d, "derived_detached"),
    );
    assert!(incident.to_string().contains("idx/held/text"), "{incident}");
    // `check` names what keeps the state from HEALTHY: the open incident.
    let (_, out, err) = support::medic(data.path(), &["check", "--tier", "quick"]);
    assert!(
        out.contains("open incident") && out.contains("not attached"),
        "{out}{err}"
    );
    // ... and, once the other holder is gone, attaches it again without anyone asking.
    drop(lock);
    wait_for(
        "the text index of held attached and answering",
        Duration::from_secs(90),
        || {
            let (degraded, hits, _) = text_search(&d, "held", "quince");
            (!degraded && hits == ["x"]).then_some(())
        },
    );
    assert!(attached_indexes(&d).contains(&("held".into(), "text".into())));
    d.stop();
}

#[test]
fn every_total_document_count_leaves_collection_settings_out() {
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let d = Daemon::start(data.path(), logs.path());
    let mut acked = Acked::new();
    for (i, c) in ["one", "two", "three"].iter().enumerate() {
        let (s, v) = d.json(
            "PUT",
            &format!("/v1/collections/{c}"),
            Some(&json!({"indexes": ["text"]})),
        );
        assert_eq!(s, 201, "{v}");
        for j in 0..=i {
            put(&d, &mut acked, c, &format!("d{j}"), json!({"text": "x"}));
        }
    }
    put(&d, &mut acked, "default", "a", json!({"text": "y"}));
    let want = acked.len() as u64; // 1 + 2 + 3 + 1 = 7 documents, 3 settings documents beside them
    let (s, v) = d.json("GET", "/v1/collections", None);
    assert_eq!(s, 200, "{v}");
    let listed: u64 = v["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["documents"].as_u64().unwrap())
        .sum();
    assert_eq!(listed, want, "{v}");
    let (s, health) = d.json("GET", "/health", None);
    assert_eq!(s, 200, "{health}");
    assert_eq!(health["documents"], want, "/health: {health}");
    let (s, st) = d.json("GET", "/v1/status", None);
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["store"]["docs"], want, "/v1/status: {st}");
    let (s, _, text) = d.request("GET", "/metrics", None);
    assert_eq!(s, 200);
    assert!(
        text.contains(&format!("\nmedic_documents {want}\n")),
        "/metrics: {text}"
    );
    let (code, out, err) = support::medic(data.path(), &["status", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let last = out.lines().last().unwrap_or_default();
    let cli: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(cli["store"]["docs"], want, "medic status: {out}");
    d.stop();
}

/// A collection's declared fields are checked on every write: a value of another type is a 400 naming the field and
/// the value, and nothing is written (a single put, or a bulk body whose one line is bad); undeclared keys are free.
#[test]
fn declared_fields_refuse_a_value_of_another_type_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = Daemon::start(&data, tmp.path());
    let (s, v) = d.json(
        "PUT",
        "/v1/collections/books",
        Some(&json!({"fields": {"year": "integer", "tags": "keyword"}})),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = d.json(
        "PUT",
        "/v1/collections/books/docs/b1",
        Some(&json!({"text": "a", "meta": {"year": "abc"}})),
    );
    assert_eq!(s, 400, "{v}");
    let e = v["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("meta.year") && e.contains("integer") && e.contains("\"abc\""),
        "names the field, its type and the value: {e}"
    );
    let (s, _) = d.json("GET", "/v1/collections/books/docs/b1", None);
    assert_eq!(s, 404, "nothing written");

    let (s, v) = d.json(
        "PUT",
        "/v1/collections/books/docs/b1",
        Some(&json!({"text": "a", "meta": {"year": 1999, "tags": ["x", "y"], "free": {"any": [1, "z"]}}})),
    );
    assert_eq!(s, 200, "{v}");

    let body = [
        json!({"id": "b2", "text": "b", "meta": {"year": 2001}}),
        json!({"id": "b3", "text": "c", "meta": {"tags": ["x", 7]}}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    let (s, v) = d.post_ndjson("/v1/collections/books/docs", &body);
    assert_eq!(s, 400, "{v}");
    let e = v["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("line 2") && e.contains("meta.tags") && e.contains("keyword"),
        "names the line and the field: {e}"
    );
    let (s, _) = d.json("GET", "/v1/collections/books/docs/b2", None);
    assert_eq!(
        s, 404,
        "a bad line writes nothing, not even the lines before it"
    );
    let (s, v) = d.json(
        "POST",
        "/v1/collections/books/search",
        Some(&json!({"text": "a", "k": 5, "filter": {"year": 1999}})),
    );
    assert_eq!(s, 200, "{v}");
    let hits: Vec<&str> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["id"].as_str())
        .collect();
    assert_eq!(hits, ["b1"], "{v}");
    d.stop();
}
