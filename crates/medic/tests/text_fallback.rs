//! While no usable text index exists — its directory deleted under the running daemon, a damaged generation
//! quarantined at start, a rebuild under way — a text search is answered from a scan of the table, flagged
//! `"degraded": true`: never a wrong hit, never a 5xx. Black-box, against the real `medic serve`.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Daemon, wait_for};

const WORDS: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
];

/// Document `i`: 3 to 19 words drawn by a hash of `i` and the position.
fn doc(i: usize) -> Value {
    let n = 3 + i % 17;
    let text: Vec<&str> = (0..n)
        .map(|j| {
            let h = ((i * 1_000 + j) as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            WORDS[(h >> 59) as usize % WORDS.len()]
        })
        .collect();
    json!({"text": text.join(" "), "meta": {"n": i, "odd": i % 2 == 1}})
}

const QUERIES: &[&str] = &[
    "alpha",
    "bravo delta",
    "\"hotel foxtrot\"",
    "golf OR juliet",
    "hotel -india",
    "char*",
];

fn bulk(d: &Daemon, docs: impl Iterator<Item = (String, Value)>) {
    d.bulk(docs.map(|(id, mut v)| {
        v["id"] = json!(id);
        v
    }));
}

fn body(q: &str, strong: bool) -> Value {
    let mut b = json!({"text": q, "k": 20, "filter": {"odd": true}});
    if strong {
        b["consistency"] = json!("strong");
    }
    b
}

/// Every query's hits from a healthy index (strong, not degraded), once the index answers.
fn answers(d: &Daemon) -> BTreeMap<&'static str, (Vec<String>, u64)> {
    wait_for("the text index answering", Duration::from_secs(60), || {
        let (s, v) = d.json("POST", "/v1/search", Some(&body(QUERIES[0], true)));
        (s == 200 && v["index"] == "text").then_some(())
    });
    QUERIES
        .iter()
        .map(|q| {
            let (s, v) = d.json("POST", "/v1/search", Some(&body(q, true)));
            assert_eq!(s, 200, "{q}: {v}");
            assert_ne!(v["degraded"], true, "{q}: {v}");
            assert_eq!(v["index"], "text", "{q}: {v}");
            (*q, (support::hit_ids(&v), v["total"].as_u64().unwrap()))
        })
        .collect()
}

fn text_index(d: &Daemon) -> Value {
    let (_, st) = d.json("GET", "/v1/status", None);
    st["derived"]["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "text" && i["collection"] == "default")
        .cloned()
        .unwrap_or_else(|| panic!("no text index in {}", st["derived"]))
}

/// Searches every query until `done` says so (at most 90 s): every answer is a 200 with exactly `want`'s hits,
/// either from the index or from a scan flagged degraded. Returns how many answers were degraded.
fn searched_through(
    d: &Daemon,
    want: &BTreeMap<&'static str, (Vec<String>, u64)>,
    what: &str,
    mut done: impl FnMut(&Daemon) -> bool,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut degraded = 0;
    let mut round = 0usize;
    loop {
        for q in QUERIES {
            let strong = round % 2 == 1;
            let (s, v) = d.json("POST", "/v1/search", Some(&body(q, strong)));
            assert_eq!(s, 200, "{what}: {q} (strong {strong}): {v}");
            assert_eq!(
                support::hit_ids(&v),
                want[q].0,
                "{what}: {q} (strong {strong}): {v}"
            );
            assert_eq!(v["total"], want[q].1, "{what}: {q}: {v}");
            if v["degraded"] == true {
                assert_eq!(v["index"], "scan", "{what}: {q}: {v}");
                assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "{v}");
                degraded += 1;
            } else {
                assert_eq!(v["index"], "text", "{what}: {q}: {v}");
                assert!(v.get("degraded").is_none_or(|x| x == false), "{v}");
            }
        }
        round += 1;
        if done(d) {
            return degraded;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not done within 90 s; text index: {}; stderr:\n{}",
            text_index(d),
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn text_search_without_a_usable_index_answers_from_a_scan_flagged_degraded_never_wrong_never_5xx() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // The engine's deep tier (which finds the deleted files when nothing is written) runs rarely here, so the window
    // without a usable index lasts long enough to be searched in.
    let cfg = support::checks_config(tmp.path(), 3000);
    let args = ["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()];
    let d = Daemon::start_with(&data, tmp.path(), &args);
    bulk(&d, (0..300).map(|i| (format!("d{i:03}"), doc(i))));
    let want = answers(&d);
    assert!(want.values().all(|(ids, _)| !ids.is_empty()), "{want:?}");
    let text_dir = data.join("idx/default/text");
    wait_for("the text index on disk", Duration::from_secs(30), || {
        text_dir.join("CURRENT").is_file().then_some(())
    });
    let rebuilds = text_index(&d)["rebuilds"].as_u64().unwrap();

    // Deleted under the running daemon: searched at once, and until it is rebuilt and answering again.
    wait_for("the directory removed", Duration::from_secs(10), || {
        std::fs::remove_dir_all(&text_dir).ok()
    });
    let mut healthy_after_rebuild = 0;
    let degraded = searched_through(&d, &want, "idx/default/text deleted", |d| {
        let st = text_index(d);
        if st["rebuilds"].as_u64() > Some(rebuilds) && st["state"] == "current" {
            healthy_after_rebuild += 1;
        }
        // Several rounds after the rebuild, so answers from the new index are compared too.
        healthy_after_rebuild >= 3
    });
    assert!(
        degraded > 0,
        "no degraded answer while the index was gone: the index answered though its files were deleted"
    );
    let after = answers(&d);
    assert_eq!(after, want);

    // A write acknowledged while the index is gone is seen by a strong search (the scan reads the table).
    wait_for("the directory removed", Duration::from_secs(10), || {
        std::fs::remove_dir_all(&text_dir).ok()
    });
    let (s, v) = d.json(
        "PUT",
        "/v1/docs/new1",
        Some(&json!({"text": "zulu yankee", "vector": [1.0, 0.0], "meta": {"odd": true}})),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = d.json(
        "POST",
        "/v1/search",
        Some(&json!({"text": "zulu", "k": 5, "consistency": "strong"})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(support::hit_ids(&v), ["new1"], "{v}");
    // Hybrid too: the text side from the scan while the index is unusable, fused the same way.
    let (s, v) = d.json(
        "POST",
        "/v1/search",
        Some(&json!({"text": "zulu", "vector": [1.0, 0.0], "k": 5, "consistency": "strong"})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(support::hit_ids(&v), ["new1"], "{v}");
    assert_eq!(v["hits"][0]["text_rank"], 1, "{v}");
    assert_eq!(v["hits"][0]["vector_rank"], 1, "{v}");
    let index = v["index"].as_str().unwrap();
    if v["degraded"] == true {
        assert!(index.starts_with("scan+"), "{v}");
    } else {
        assert!(index.starts_with("text+"), "{v}");
    }
    let (s, v) = d.json("DELETE", "/v1/docs/new1", None);
    assert_eq!(s, 200, "{v}");
    let (s, v) = d.json(
        "POST",
        "/v1/search",
        Some(&json!({"text": "zulu", "k": 5, "consistency": "strong"})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(support::hit_ids(&v), Vec::<String>::new(), "{v}");
    // Bad input is still the request's fault while degraded: 400 naming the column.
    let (s, v) = d.json(
        "POST",
        "/v1/search",
        Some(&json!({"text": "alpha (", "k": 5})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("column"), "{v}");
    wait_for("the rebuilt index", Duration::from_secs(60), || {
        let (s, v) = d.json("POST", "/v1/search", Some(&body("alpha", true)));
        (s == 200 && v["index"] == "text").then_some(())
    });
    d.stop();

    // A damaged generation found at start is quarantined: until the index is rebuilt, answers come from a scan.
    let current = std::fs::read_to_string(text_dir.join("CURRENT")).unwrap();
    std::fs::write(
        text_dir.join(current.trim()).join("meta.json"),
        b"{ not json",
    )
    .unwrap();
    let d = Daemon::start_with(&data, tmp.path(), &args);
    let q = searched_through(&d, &want, "a quarantined generation", |d| {
        text_index(d)["state"] == "current"
            && d.json("POST", "/v1/search", Some(&body("alpha", false))).1["index"] == "text"
    });
    eprintln!("degraded answers: {degraded} after the deletion, {q} after the quarantine");
    assert!(
        text_dir
            .read_dir()
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("quarantine-")),
        "the damaged generation is kept aside"
    );
    d.stop();
}
