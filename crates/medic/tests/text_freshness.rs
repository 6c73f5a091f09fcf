//! How fresh a text search is, against the real `medic serve`: a write acknowledged is seen at once by a search with
//! `"consistency": "strong"`; by default a search sees it once the index commits (at most every 250 ms or 1,000
//! documents); a strong search whose wait runs past its bound (`timeout_ms`) is answered an error naming the lag.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Daemon, wait_for};

fn bulk(d: &Daemon, lines: impl Iterator<Item = Value>) {
    d.bulk(lines);
}

#[test]
fn strong_sees_every_acknowledged_write_default_within_the_commit_interval_and_a_timeout_names_the_lag()
 {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = Daemon::start(&data, tmp.path());
    bulk(
        &d,
        (0..200)
            .map(|i| json!({"id": format!("base{i}"), "text": format!("base document number{i}")})),
    );
    wait_for("the text index answering", Duration::from_secs(60), || {
        let (s, v) = d.json(
            "POST",
            "/v1/search",
            Some(&json!({"text": "base", "k": 1, "consistency": "strong"})),
        );
        (s == 200 && v["index"] == "text").then_some(())
    });

    // Strong: every write acknowledged is in the very next search's hits, from the index (not a scan).
    for i in 0..40 {
        let word = format!("strongword{i}");
        let (s, v) = d.json(
            "PUT",
            &format!("/v1/docs/s{i}"),
            Some(&json!({"text": format!("fresh {word}")})),
        );
        assert_eq!(s, 200, "{v}");
        let (s, v) = d.json(
            "POST",
            "/v1/search",
            Some(&json!({"text": word, "k": 5, "consistency": "strong"})),
        );
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            support::hit_ids(&v),
            [format!("s{i}")],
            "write {i} not seen by a strong search: {v}"
        );
        assert_eq!(v["index"], "text", "{v}");
    }

    // Default: seen once the index commits, at most every 250 ms (plus the time to apply and commit).
    let mut visible_after = Vec::new();
    for i in 0..20 {
        let word = format!("eventualword{i}");
        let (s, v) = d.json(
            "PUT",
            &format!("/v1/docs/e{i}"),
            Some(&json!({"text": format!("fresh {word}")})),
        );
        assert_eq!(s, 200, "{v}");
        let t0 = Instant::now();
        loop {
            let (s, v) = d.json("POST", "/v1/search", Some(&json!({"text": word, "k": 5})));
            assert_eq!(s, 200, "{v}");
            if support::hit_ids(&v) == [format!("e{i}")] {
                visible_after.push(t0.elapsed());
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "write {i} not visible to a default search after 5 s: {v}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        // Writes land at different points of the commit interval.
        std::thread::sleep(Duration::from_millis(37 * (i % 7)));
    }
    visible_after.sort();
    let p50 = visible_after[visible_after.len() / 2];
    let max = *visible_after.last().unwrap();
    eprintln!("default search: a write visible after p50 {p50:?}, max {max:?}");
    assert!(
        p50 <= Duration::from_millis(400) && max <= Duration::from_millis(1_500),
        "a default search saw writes after p50 {p50:?}, max {max:?}: beyond the 250 ms commit interval"
    );

    // A strong search that cannot wait long enough: an error naming the index and its lag (never stale hits).
    let mut named = None;
    for round in 0..20 {
        bulk(
            &d,
            (0..5_000).map(
                |i| json!({"id": format!("lag{round}-{i}"), "text": format!("lagging word{i}")}),
            ),
        );
        let (s, v) = d.json(
            "POST",
            "/v1/search",
            Some(&json!({"text": "lagging", "k": 1, "consistency": "strong", "timeout_ms": 1})),
        );
        if s == 200 {
            // The index caught up within 1 ms: the answer holds every document written.
            assert_eq!(v["total"], 5_000 * (round + 1), "{v}");
            continue;
        }
        assert_eq!(s, 503, "{v}");
        named = Some(v["error"].as_str().unwrap().to_string());
        eprintln!("round {round}: {}", named.as_deref().unwrap_or(""));
        break;
    }
    let e =
        named.expect("a strong search with timeout_ms 1 right after 5,000 writes never timed out");
    assert!(e.contains("default/text") || e.contains("default/"), "{e}");
    assert!(e.contains("behind LSN"), "{e}");
    assert!(e.contains("within 1 ms"), "{e}");

    // The bound is checked.
    for (body, says) in [
        (
            json!({"text": "x", "k": 1, "consistency": "strong", "timeout_ms": 0}),
            "timeout_ms: 0",
        ),
        (
            json!({"text": "x", "k": 1, "consistency": "strong", "timeout_ms": 60_000}),
            "timeout_ms: 60000",
        ),
        (json!({"text": "x", "k": 1, "timeout_ms": 10}), "timeout_ms"),
    ] {
        let (s, v) = d.json("POST", "/v1/search", Some(&body));
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    d.stop();
}

/// README: an offline text search "builds or catches up the text index ... first": right after an offline `medic
/// load` into a store no daemon holds, the first offline search is answered from the index, not a scan.
#[test]
fn an_offline_search_right_after_an_offline_load_is_answered_from_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let file = tmp.path().join("big.jsonl");
    let mut lines = String::new();
    for i in 0..20_000 {
        lines.push_str(
            &json!({"id": format!("d{i}"), "text": format!("document number{i} about lemons")})
                .to_string(),
        );
        lines.push('\n');
    }
    std::fs::write(&file, lines).unwrap();
    let (code, out, err) = support::medic(&data, &["load", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = support::medic(&data, &["--json", "search", "--text", "number777"]);
    assert_eq!(code, 0, "{out}{err}");
    let last = out.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_ne!(v["degraded"], json!(true), "answered from a scan: {v}");
    assert_eq!(support::hit_ids(&v), ["d777"], "{v}");
    assert!(!out.contains("behind at"), "{out}");
}
