//! Search served by the derived indexes, against the real `medic serve`: full-text search (query language, filters,
//! stored fields, snippets, paging, bad input named with its column) from the `text` index, hybrid search fused by
//! reciprocal rank, and vector search from the `hnsw` index (recall against the exact `flat` answer over HTTP).
//! Every index is deleted under the running daemon or between restarts and answers the same once rebuilt.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Daemon, wait_for};

fn put(d: &Daemon, id: &str, doc: &Value) {
    let (s, v) = d.json("PUT", &format!("/v1/docs/{id}"), Some(doc));
    assert_eq!(s, 200, "{v}");
}

fn search_at(d: &Daemon, path: &str, body: &Value) -> Value {
    let (s, v) = d.json("POST", path, Some(body));
    assert_eq!(s, 200, "{body}: {v}");
    v
}

/// A strong text search's hit ids, in order.
fn text_ids(d: &Daemon, q: &str) -> Vec<String> {
    support::hit_ids(&search_at(
        d,
        "/v1/search",
        &json!({"text": q, "k": 50, "consistency": "strong"}),
    ))
}

fn set(ids: &[String]) -> BTreeSet<&str> {
    ids.iter().map(String::as_str).collect()
}

fn index_status(d: &Daemon, name: &str) -> Value {
    let (_, st) = d.json("GET", "/v1/status", None);
    st["derived"]["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} index in {}", st["derived"]))
}

const CORPUS: &[(&str, &str, &str, i64)] = &[
    (
        "a",
        "the quick brown fox jumps over the lazy dog",
        "en",
        2020,
    ),
    ("b", "a quick brown cat sleeps in the sun", "en", 2022),
    ("c", "le renard brun rapide saute", "fr", 2021),
    ("d", "a lazy afternoon with a brown dog", "en", 2019),
    ("e", "foxes and hounds run through the forest", "en", 2023),
    ("f", "quick thinking saves the day", "en", 2018),
];

/// The queries whose answers must not change across deletions of the index and restarts.
const QUERIES: &[&str] = &[
    "quick brown",
    "\"brown fox\"",
    "brown -quick",
    "fox*",
    "quick OR renard",
    "lazy dog",
    "*",
];

fn answers(d: &Daemon) -> BTreeMap<&'static str, Vec<String>> {
    QUERIES
        .iter()
        .map(|q| (*q, normal(q, text_ids(d, q))))
        .collect()
}

/// `*` scores every document alike: its order among equal scores is the index's, which a rebuild may change, so it
/// is compared as a set.
fn normal(q: &str, mut ids: Vec<String>) -> Vec<String> {
    if q == "*" {
        ids.sort();
    }
    ids
}

/// Waits until every query answers `want` (the index being rebuilt meanwhile).
fn wait_answers(d: &Daemon, want: &BTreeMap<&'static str, Vec<String>>, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got: BTreeMap<&'static str, Vec<String>> = QUERIES
            .iter()
            .map(|q| {
                let (s, v) = d.json(
                    "POST",
                    "/v1/search",
                    Some(&json!({"text": q, "k": 50, "consistency": "strong"})),
                );
                (
                    *q,
                    if s == 200 {
                        normal(q, support::hit_ids(&v))
                    } else {
                        Vec::new()
                    },
                )
            })
            .collect();
        if &got == want {
            return;
        }
        if std::time::Instant::now() > deadline {
            let (_, st) = d.json("GET", "/v1/status", None);
            panic!(
                "timed out waiting for {what}: {got:?} vs {want:?}; derived: {}; stderr:\n{}",
                st["derived"],
                d.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn text_search_answers_the_query_language_with_filters_snippets_and_pages_and_survives_losing_its_index()
 {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = support::checks_config(tmp.path(), 400);
    let args = ["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()];
    let d = Daemon::start_with(&data, tmp.path(), &args);
    for (id, text, lang, year) in CORPUS {
        put(
            &d,
            id,
            &json!({"text": text, "meta": {"lang": lang, "year": year, "tags": ["x", id]}}),
        );
    }

    // The query language.
    assert_eq!(
        set(&text_ids(&d, "quick brown")),
        BTreeSet::from(["a", "b"])
    );
    assert_eq!(text_ids(&d, "\"brown fox\""), ["a"]);
    assert_eq!(text_ids(&d, "brown -quick"), ["d"]);
    assert_eq!(set(&text_ids(&d, "fox*")), BTreeSet::from(["a", "e"]));
    assert_eq!(
        set(&text_ids(&d, "quick OR renard")),
        BTreeSet::from(["a", "b", "c", "f"])
    );
    assert_eq!(text_ids(&d, "nothingmatches"), Vec::<String>::new());
    // BM25: the shorter document with both terms ranks first.
    assert_eq!(text_ids(&d, "lazy dog"), ["d", "a"]);

    // Filters, stored fields, snippets, total; the collection route answers the same.
    let v = search_at(
        &d,
        "/v1/collections/default/search",
        &json!({"text": "brown", "k": 10, "filter": {"lang": "en", "year": {"gte": 2020}},
                "include": ["text", "meta"], "highlight": true, "consistency": "strong"}),
    );
    assert_eq!(support::hit_ids(&v), ["b", "a"], "{v}");
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(v["index"], "text", "{v}");
    let a = &v["hits"][1];
    assert_eq!(a["text"], CORPUS[0].1, "{v}");
    assert_eq!(
        a["meta"],
        json!({"lang": "en", "year": 2020, "tags": ["x", "a"]})
    );
    let snip = a["highlights"][0].as_str().unwrap();
    assert!(snip.contains("<mark>brown</mark>"), "{snip}");
    let v = search_at(
        &d,
        "/v1/search",
        &json!({"text": "*", "k": 10, "filter": {"or": [{"lang": "fr"}, {"year": {"lt": 2020}}]}}),
    );
    assert_eq!(
        set(&support::hit_ids(&v)),
        BTreeSet::from(["c", "d", "f"]),
        "{v}"
    );
    // Paging: two pages of two are the first four hits of one page of ten.
    let all = support::hit_ids(&search_at(&d, "/v1/search", &json!({"text": "*", "k": 10})));
    assert_eq!(all.len(), CORPUS.len());
    let p1 = support::hit_ids(&search_at(&d, "/v1/search", &json!({"text": "*", "k": 2})));
    let p2 = support::hit_ids(&search_at(
        &d,
        "/v1/search",
        &json!({"text": "*", "k": 2, "offset": 2}),
    ));
    assert_eq!([p1, p2].concat(), all[..4]);

    // The command line through the daemon: snippets and stored text in the human output, the API's answer as JSON.
    let o = medic(&[
        "search",
        "--text",
        "quick brown",
        "--highlight",
        "--include",
        "text,meta",
        "--server",
        &d.url,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("[quick] [brown]"),
        "the matched terms marked: {out}"
    );
    assert!(out.contains(CORPUS[1].1), "{out}");
    let o = medic(&["search", "--text", "quick (", "--server", &d.url]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("column"));
    let o = medic(&[
        "search",
        "--text",
        "renard OR brown",
        "--filter",
        r#"{"lang": "fr"}"#,
        "--json",
        "--server",
        &d.url,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let last: Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(support::hit_ids(&last), ["c"], "{last}");

    // Bad input: 400 naming what and where.
    for (body, says) in [
        (json!({"text": "quick (brown", "k": 5}), "query: column"),
        (json!({"text": "-quick", "k": 5}), "only excluded"),
        (json!({"text": "", "k": 5}), "nothing to search"),
        (json!({"text": "quick", "k": 0}), "k = 0"),
        (json!({"text": "quick", "k": 5, "offset": 20_000}), "offset"),
        (
            json!({"text": "quick", "k": 5, "filter": {"year": {"between": 1}}}),
            "filter.year",
        ),
        (
            json!({"text": "quick", "k": 5, "include": ["text", "vector"]}),
            "include[1]",
        ),
        (
            json!({"text": "quick", "k": 5, "highlight": {"chars": 0}}),
            "highlight",
        ),
        (
            json!({"text": "quick", "k": 5, "consistency": "now"}),
            "consistency",
        ),
        (json!({"text": "quick", "k": 5, "colour": 1}), "colour"),
    ] {
        let (s, v) = d.json("POST", "/v1/search", Some(&body));
        // An unknown field is refused by the JSON extractor, every value by the search: both 400.
        assert_eq!(s, 400, "{body}: {v}");
        let e = v["error"].as_str().unwrap();
        assert!(e.contains(says), "{body}: {e}");
    }
    let (s, v) = d.json(
        "POST",
        "/v1/collections/other/search",
        Some(&json!({"text": "quick", "k": 5})),
    );
    assert_eq!(s, 404, "{v}");

    // A deleted document is gone from the answers; an updated one is found by its new text only.
    let (s, _, _) = d.request("DELETE", "/v1/docs/a", None);
    assert_eq!(s, 200);
    put(
        &d,
        "f",
        &json!({"text": "slow thinking", "meta": {"lang": "en", "year": 2018}}),
    );
    assert_eq!(text_ids(&d, "\"brown fox\""), Vec::<String>::new());
    assert_eq!(text_ids(&d, "fox*"), ["e"]);
    assert_eq!(text_ids(&d, "quick"), ["b"]);
    assert_eq!(text_ids(&d, "slow"), ["f"]);
    let want = answers(&d);
    let st = index_status(&d, "text");
    assert_eq!(st["dir"], "idx/default/text", "{st}");

    // Deleted while the daemon runs and writes go on: rebuilt, and the same answers.
    wait_for("the text index on disk", Duration::from_secs(30), || {
        data.join("idx/default/text/CURRENT")
            .is_file()
            .then_some(())
    });
    // The daemon may be writing into it (a persist, a merge): a file made while it is being removed is retried.
    wait_for("idx/ removed", Duration::from_secs(10), || {
        std::fs::remove_dir_all(data.join("idx")).ok()
    });
    put(&d, "g", &json!({"text": "zebra crossing"}));
    let (s, _, _) = d.request("DELETE", "/v1/docs/g", None);
    assert_eq!(s, 200);
    wait_for(
        "a rebuild of the text index",
        Duration::from_secs(60),
        || {
            let st = index_status(&d, "text");
            (st["rebuilds"].as_u64() >= Some(1)
                && st["state"] == "current"
                && data.join("idx/default/text/CURRENT").is_file())
            .then_some(())
        },
    );
    wait_answers(&d, &want, "the same answers after idx/ was deleted");
    d.stop();

    // Restarted: the same answers.
    let d = Daemon::start_with(&data, tmp.path(), &args);
    assert_eq!(answers(&d), want, "after a restart");
    d.stop();

    // Deleted between restarts: rebuilt from the store, the same answers.
    std::fs::remove_dir_all(data.join("idx")).unwrap();
    let d = Daemon::start_with(&data, tmp.path(), &args);
    wait_answers(
        &d,
        &want,
        "the same answers after idx/ was deleted between restarts",
    );
    d.stop();

    // Offline (no daemon): the command builds or catches up the text index itself and answers the same.
    std::fs::remove_dir_all(data.join("idx")).unwrap();
    for q in QUERIES {
        let o = medic(&[
            "search",
            "--data",
            data.to_str().unwrap(),
            "--text",
            q,
            "--k",
            "50",
            "--json",
        ]);
        assert!(
            o.status.success(),
            "{q}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let last: Value =
            serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap())
                .unwrap();
        assert_eq!(
            normal(q, support::hit_ids(&last)),
            want[q],
            "offline {q}: {last}"
        );
    }
}

fn medic(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// A seeded pseudo-random vector (xorshift), components in [-1, 1].
fn vector(i: usize, dim: usize, salt: u64) -> Vec<f32> {
    let mut x = (i as u64 + 1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(salt);
    (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x % 20_001) as f32 - 10_000.0) / 10_000.0 + 1e-4
        })
        .collect()
}

fn bulk(d: &Daemon, lines: &[Value]) {
    d.bulk(lines.iter().cloned());
}

#[test]
fn hybrid_search_fuses_the_text_and_vector_rankings_by_reciprocal_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = support::checks_config(tmp.path(), 400);
    let args = ["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()];
    let d = Daemon::start_with(&data, tmp.path(), &args);
    let words = ["apple", "banana", "cherry", "date", "elder"];
    let lines: Vec<Value> = (0..200)
        .map(|i| {
            let text = format!(
                "{} {} {}",
                words[i % 5],
                words[(i / 5) % 5],
                if i % 7 == 0 { "kiwi" } else { "fig" }
            );
            json!({"id": format!("h{i:03}"), "text": text, "vector": vector(i, 8, 3),
                   "meta": {"n": i}})
        })
        .collect();
    bulk(&d, &lines);
    let q = vector(7, 8, 3);

    // The two rankings, each as the API answers it alone (exact vectors, so the test can recompute the fusion).
    let text = search_at(
        &d,
        "/v1/search",
        &json!({"text": "kiwi", "k": 100, "consistency": "strong"}),
    );
    let vec = search_at(
        &d,
        "/v1/search",
        &json!({"vector": q, "k": 100, "exact": true}),
    );
    assert_eq!(vec["index"], "flat", "{vec}");
    let rrf = |wt: f64, wv: f64| -> Vec<(String, f64)> {
        let mut score: BTreeMap<String, f64> = BTreeMap::new();
        for (r, id) in support::hit_ids(&text).into_iter().enumerate() {
            *score.entry(id).or_default() += wt / (60.0 + (r + 1) as f64);
        }
        for (r, id) in support::hit_ids(&vec).into_iter().enumerate() {
            *score.entry(id).or_default() += wv / (60.0 + (r + 1) as f64);
        }
        let mut v: Vec<(String, f64)> = score.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(10);
        v
    };
    for (hybrid, wt, wv) in [
        (Value::Null, 1.0, 1.0),
        (json!({"text_weight": 3.0}), 3.0, 1.0),
        (json!({"text_weight": 0.0}), 0.0, 1.0),
    ] {
        let mut body = json!({"text": "kiwi", "vector": q, "k": 10, "exact": true,
                              "include": ["text"], "highlight": true});
        if !hybrid.is_null() {
            body["hybrid"] = hybrid.clone();
        }
        let v = search_at(&d, "/v1/search", &body);
        assert_eq!(v["fusion"], "rrf", "{v}");
        assert_eq!(v["rrf_k"], 60.0, "{v}");
        assert_eq!(v["index"], "text+flat", "{v}");
        let want = rrf(wt, wv);
        let got: Vec<(String, f64)> = v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["id"].as_str().unwrap().to_string(),
                    h["score"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got.iter().map(|g| &g.0).collect::<Vec<_>>(),
            want.iter().map(|w| &w.0).collect::<Vec<_>>(),
            "{hybrid}: {v}"
        );
        for (g, w) in got.iter().zip(&want) {
            assert!((g.1 - w.1).abs() < 1e-9, "{hybrid}: {g:?} vs {w:?}");
        }
        for h in v["hits"].as_array().unwrap() {
            assert!(h["text"].is_string(), "{h}");
            match h["text_rank"].as_u64() {
                Some(r) => {
                    assert_eq!(
                        support::hit_ids(&text)[r as usize - 1],
                        h["id"].as_str().unwrap()
                    );
                    assert!(
                        h["highlights"][0]
                            .as_str()
                            .unwrap()
                            .contains("<mark>kiwi</mark>")
                    );
                }
                None => assert!(!h["text"].as_str().unwrap().contains("kiwi"), "{h}"),
            }
            if let Some(r) = h["vector_rank"].as_u64() {
                assert_eq!(
                    support::hit_ids(&vec)[r as usize - 1],
                    h["id"].as_str().unwrap()
                );
            }
        }
    }

    // A filter applies to both rankings.
    let v = search_at(
        &d,
        "/v1/search",
        &json!({"text": "kiwi", "vector": q, "k": 10, "filter": {"n": {"lt": 50}}, "include": ["meta"]}),
    );
    assert!(!v["hits"].as_array().unwrap().is_empty(), "{v}");
    for h in v["hits"].as_array().unwrap() {
        assert!(h["meta"]["n"].as_u64().unwrap() < 50, "{h}");
    }

    for (body, says) in [
        (
            json!({"text": "kiwi", "vector": q, "k": 5, "hybrid": {"text_weight": -1}}),
            "hybrid.text_weight",
        ),
        (
            json!({"text": "kiwi", "vector": q, "k": 5, "hybrid": {"text_weight": 0, "vector_weight": 0}}),
            "both 0",
        ),
        (json!({"text": "kiwi", "k": 5, "hybrid": {}}), "hybrid"),
        (
            json!({"text": "kiwi (", "vector": q, "k": 5}),
            "query: column",
        ),
        (
            json!({"text": "kiwi", "vector": [1.0, 2.0], "k": 5}),
            "dimension 2",
        ),
    ] {
        let (s, v) = d.json("POST", "/v1/search", Some(&body));
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    d.stop();
}

/// recall@10 of the HNSW answers against the exact (`flat`) ones over `queries`, both through the HTTP API.
fn hnsw_recall(d: &Daemon, queries: &[Vec<f32>], ef: Option<u64>) -> f64 {
    let mut found = 0usize;
    let mut wanted = 0usize;
    for q in queries {
        let mut body = json!({"vector": q, "k": 10});
        if let Some(ef) = ef {
            body["ef"] = json!(ef);
        }
        let approx = search_at(d, "/v1/search", &body);
        assert_eq!(approx["index"], "hnsw", "{approx}");
        assert_eq!(approx["exact"], false, "{approx}");
        let exact = search_at(
            d,
            "/v1/search",
            &json!({"vector": q, "k": 10, "exact": true}),
        );
        assert_eq!(exact["index"], "flat", "{exact}");
        let want: BTreeSet<String> = support::hit_ids(&exact).into_iter().collect();
        wanted += want.len();
        found += support::hit_ids(&approx)
            .iter()
            .filter(|id| want.contains(*id))
            .count();
    }
    found as f64 / wanted as f64
}

#[test]
fn vector_search_is_served_from_hnsw_with_recall_against_exact_and_rebuilt_after_its_file_is_deleted()
 {
    const DIM: usize = 16;
    const N: usize = 2_000;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = support::checks_config(tmp.path(), 400);
    let args = ["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()];
    let d = Daemon::start_with(&data, tmp.path(), &args);
    let lines: Vec<Value> = (0..N)
        .map(|i| json!({"id": format!("v{i:05}"), "text": format!("vector {i}"), "vector": vector(i, DIM, 11)}))
        .collect();
    for chunk in lines.chunks(500) {
        bulk(&d, chunk);
    }
    let queries: Vec<Vec<f32>> = (0..50).map(|i| vector(100_000 + i, DIM, 13)).collect();
    // Every index has applied every write before recall is measured.
    search_at(
        &d,
        "/v1/search",
        &json!({"vector": queries[0], "k": 1, "consistency": "strong"}),
    );
    let recall = hnsw_recall(&d, &queries, None);
    eprintln!(
        "hnsw recall@10 over HTTP, {N} x {DIM} uniform vectors, 50 queries, default ef: {recall:.3}"
    );
    assert!(recall >= 0.9, "recall@10 {recall}");
    let wide = hnsw_recall(&d, &queries, Some(400));
    eprintln!("hnsw recall@10 with ef 400: {wide:.3}");
    assert!(
        wide >= recall - 1e-9 && wide >= 0.98,
        "ef 400: {wide} vs {recall}"
    );
    // A vector's own nearest neighbour is itself.
    let v = search_at(
        &d,
        "/v1/search",
        &json!({"vector": vector(42, DIM, 11), "k": 1}),
    );
    assert_eq!(support::hit_ids(&v), ["v00042"], "{v}");
    for (body, says) in [
        (json!({"vector": queries[0], "k": 10, "ef": 0}), "ef"),
        (
            json!({"vector": queries[0], "k": 10, "ef": 1_000_000}),
            "ef",
        ),
        (json!({"text": "vector", "k": 10, "ef": 10}), "ef"),
        (
            json!({"vector": vec![0.5_f32; DIM - 1], "k": 10}),
            "dimension",
        ),
    ] {
        let (s, v) = d.json("POST", "/v1/search", Some(&body));
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    let st = index_status(&d, "hnsw");
    assert_eq!(st["dir"], "idx/default/hnsw", "{st}");
    wait_for("the hnsw file", Duration::from_secs(30), || {
        let st = index_status(&d, "hnsw");
        (data.join("idx/default/hnsw/hnsw.bin").is_file() && st["persists"].as_u64() >= Some(1))
            .then_some(())
    });
    d.stop();

    // Its file deleted between restarts: rebuilt from the store, and the same recall.
    std::fs::remove_dir_all(data.join("idx/default/hnsw")).unwrap();
    let d = Daemon::start_with(&data, tmp.path(), &args);
    search_at(
        &d,
        "/v1/search",
        &json!({"vector": queries[0], "k": 1, "consistency": "strong"}),
    );
    let st = index_status(&d, "hnsw");
    assert!(
        st["rebuilds"].as_u64() >= Some(1) || st["catch_ups"].as_u64() >= Some(1),
        "{st}"
    );
    let after = hnsw_recall(&d, &queries, None);
    eprintln!("hnsw recall@10 after the rebuild: {after:.3}");
    assert!(after >= 0.9, "recall@10 after the rebuild {after}");
    wait_for("the hnsw file again", Duration::from_secs(30), || {
        data.join("idx/default/hnsw/hnsw.bin")
            .is_file()
            .then_some(())
    });
    d.stop();
}
