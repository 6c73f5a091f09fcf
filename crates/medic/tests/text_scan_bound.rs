//! The scan a text search falls back to while no usable text index exists is bounded: at most `scan_docs_max`
//! documents (default `TEXT_SCAN_DOCS_MAX`) are read. A larger collection is answered from its first documents in
//! id order, flagged `"partial": true` with the documents `"scanned"` and the limit named in the reason, or — with
//! `"allow_partial": false` — refused 503 naming the limit. Black-box, against the real `medic serve`.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Daemon, wait_for};

const N_DOCS: usize = 300;
const BOUND: usize = 50;

/// Document `i`: "common" in every one, "even" in every other.
fn doc(i: usize) -> Value {
    let parity = if i.is_multiple_of(2) { "even" } else { "odd" };
    json!({"id": format!("d{i:03}"), "text": format!("common {parity} word{i}")})
}

#[test]
fn a_scan_fallback_reads_at_most_scan_docs_max_and_says_partial_or_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = support::checks_config(tmp.path(), 3000);
    let args = ["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()];
    let d = Daemon::start_with(&data, tmp.path(), &args);
    d.bulk((0..N_DOCS).map(doc));
    let text_dir = data.join("idx/default/text");
    wait_for("the text index on disk", Duration::from_secs(30), || {
        text_dir.join("CURRENT").is_file().then_some(())
    });
    let search = |extra: Value| {
        let mut b = json!({"text": "even", "k": 1000});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        d.json("POST", "/v1/search", Some(&b))
    };
    // Just attached, the index is behind: even then a bound the collection exceeds is a 503 naming it, not a wait.
    let (s, v) = search(json!({"scan_docs_max": BOUND, "allow_partial": false}));
    if s == 503 {
        let e = v["error"].as_str().unwrap();
        assert!(e.contains(&format!("scan_docs_max = {BOUND}")), "{e}");
    }
    // An eventual search sees what the index made visible (its commit comes at most 250 ms after the changes).
    wait_for(
        "the index answering with the load",
        Duration::from_secs(60),
        || {
            let v = search(json!({})).1;
            (v["index"] == "text" && v["total"] == N_DOCS / 2).then_some(())
        },
    );
    // From the index: every match, whatever the bound (it bounds scans only).
    let (s, v) = search(json!({"scan_docs_max": BOUND, "allow_partial": false}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["index"], "text", "{v}");
    assert_eq!(v["total"], N_DOCS / 2, "{v}");

    // Bad bounds are the request's fault.
    for (body, what) in [
        (
            json!({"text": "even", "k": 5, "scan_docs_max": 0}),
            "scan_docs_max: 0",
        ),
        (
            json!({"text": "even", "k": 5, "scan_docs_max": 10_000_001u64}),
            "scan_docs_max: 10000001",
        ),
        (
            json!({"vector": [1.0, 0.0], "k": 5, "allow_partial": false}),
            "allow_partial",
        ),
    ] {
        let (s, v) = d.json("POST", "/v1/search", Some(&body));
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(what), "{v}");
    }

    // The index deleted under the daemon: until it is rebuilt, answers come from bounded scans.
    let first: Vec<String> = (0..BOUND).map(|i| format!("d{i:03}")).collect();
    let (mut partial, mut refused, mut whole) = (0, 0, 0);
    wait_for("the directory removed", Duration::from_secs(10), || {
        std::fs::remove_dir_all(&text_dir).ok()
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        // Cut at BOUND: the even documents among the first BOUND ids, flagged partial.
        let (s, v) = search(json!({"scan_docs_max": BOUND}));
        assert_eq!(s, 200, "{v}");
        if v["degraded"] == true {
            assert_eq!(v["partial"], true, "{v}");
            assert_eq!(v["scanned"], BOUND, "{v}");
            assert_eq!(v["total"], BOUND / 2, "{v}");
            let mut got = support::hit_ids(&v);
            got.sort();
            let want: Vec<String> = first.iter().step_by(2).cloned().collect();
            assert_eq!(got, want, "{v}");
            let reason = v["reason"].as_str().unwrap();
            assert!(
                reason.contains(&format!("scan_docs_max = {BOUND}")),
                "{reason}"
            );
            assert!(reason.contains(&format!("of {N_DOCS}")), "{reason}");
            partial += 1;
        } else {
            assert_eq!(v["index"], "text", "{v}");
            assert!(v.get("partial").is_none(), "{v}");
        }
        // Not allowed partial: a 503 naming the limit, never a partial answer.
        let (s, v) = search(json!({"scan_docs_max": BOUND, "allow_partial": false}));
        if s == 503 {
            let e = v["error"].as_str().unwrap();
            assert!(e.contains(&format!("scan_docs_max = {BOUND}")), "{e}");
            assert!(e.contains(&format!("{N_DOCS} documents")), "{e}");
            refused += 1;
        } else {
            assert_eq!(s, 200, "{v}");
            assert_ne!(v["degraded"], true, "{v}");
            assert_eq!(v["total"], N_DOCS / 2, "{v}");
        }
        // The default bound holds the whole collection: a complete degraded answer, not partial.
        let (s, v) = search(json!({}));
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["total"], N_DOCS / 2, "{v}");
        if v["degraded"] == true {
            assert!(v.get("partial").is_none(), "{v}");
            whole += 1;
        }
        if v["index"] == "text" && partial + refused > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the index not rebuilt within 90 s (partial {partial}, refused {refused}); stderr:\n{}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("degraded answers: {partial} partial, {refused} refused, {whole} whole");
    assert!(partial > 0 || refused > 0);
    d.stop();
}
