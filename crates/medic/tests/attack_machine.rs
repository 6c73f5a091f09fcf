//! Eyes on the machine, black-box through `medic serve`: the process's memory, CPU, files and threads and the
//! search latency per query kind in `/v1/status` and `/metrics`; memory pressure (a small `server.memory_limit_bytes`)
//! refuses large writes with a 503 naming the limit while small writes and reads go on, and loses nothing; the
//! synthetic probe's reserved ids are refused to clients and never listed.

mod support;

use serde_json::json;
use support::{Daemon, Writers, assert_all_acked_readable};

fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("medic.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{extra}\n[checks]\nprobe_interval_ms = 5000\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn memory_pressure_refuses_large_writes_naming_the_limit_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // One MiB: any running daemon holds more, so memory is "above the limit" from the start.
    let cfg = config(
        tmp.path(),
        "memory_limit_bytes = 1048576\nlarge_write_bytes_min = 100",
    );
    let d = Daemon::start_with(&data, tmp.path(), &["--config", cfg.to_str().unwrap()]);
    let writers = Writers::start(&d.url, "w", 2, 40, false);
    writers.wait_acked(20, std::time::Duration::from_secs(60));
    let log = writers.finish();
    let acked = log.acked().len();
    let refusals = log.refusals();
    assert!(acked > 0, "small writes go on: {}", log.summary());
    let (n, body) = refusals
        .get(&503)
        .unwrap_or_else(|| panic!("large writes are refused: {}", log.summary()));
    assert!(*n > 0);
    assert!(
        body.contains("server.memory_limit_bytes = 1048576"),
        "the 503 names the limit: {body}"
    );
    assert_eq!(refusals.len(), 1, "nothing but 503: {}", log.summary());

    let (code, status) = d.json("GET", "/v1/status", None);
    assert_eq!(code, 200);
    let p = &status["process"];
    assert!(p["resident_bytes"].as_u64().unwrap() > 1 << 20, "{p}");
    assert_eq!(p["memory_limit_bytes"], 1_048_576);
    assert_eq!(p["memory_pressure"], true);
    assert!(
        p["writes_refused_for_memory"].as_u64().unwrap() >= *n as u64,
        "{p}"
    );
    let (_, _, text) = d.request("GET", "/metrics", None);
    assert!(text.contains("medic_memory_pressure 1\n"), "{text}");
    assert!(text.contains("medic_memory_limit_bytes 1048576"), "{text}");

    // Nothing acknowledged is lost: every acked document reads back byte for byte, live and after a restart.
    assert_all_acked_readable(&d, &log, "under memory pressure");
    d.stop();
    let d = Daemon::start(&data, tmp.path());
    assert_all_acked_readable(&d, &log, "after a restart without the limit");
    d.stop();
}

#[test]
fn process_and_search_latency_are_in_status_metrics_and_the_probe_hides_its_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path(), "");
    let d = Daemon::start_with(&data, tmp.path(), &["--config", cfg.to_str().unwrap()]);
    for i in 0..5 {
        let (code, _) = d.json("PUT", &format!("/v1/docs/d{i}"), Some(&support::doc(i)));
        assert_eq!(code, 200);
    }
    for _ in 0..3 {
        let (code, v) = d.json(
            "POST",
            "/v1/search",
            Some(&json!({"vector": [1.0, 1.0, 0.0], "k": 10})),
        );
        assert_eq!(code, 200, "{v}");
        let ids: Vec<&str> = v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap())
            .collect();
        assert!(ids.iter().all(|id| !id.starts_with(".medic/")), "{ids:?}");
    }
    // A healing cycle runs the probe (put, get, search, delete of `.medic/probe`).
    let (code, cycle) = d.json("POST", "/v1/heal", None);
    assert_eq!(code, 200, "{cycle}");
    let (_, status) = d.json("GET", "/v1/status", None);
    let p = &status["process"];
    for key in ["resident_bytes", "open_fds", "threads"] {
        assert!(p[key].as_u64().unwrap() > 0, "{key}: {p}");
    }
    // CPU time is counted in clock ticks (10 ms): a daemon this idle may not have used one yet.
    assert!(
        p["cpu_seconds_total"].as_f64().is_some_and(|c| c >= 0.0),
        "{p}"
    );
    assert_eq!(
        status["search"]["vector"]["count"], 3,
        "{}",
        status["search"]
    );
    let steps: Vec<&str> = status["probe"]
        .as_array()
        .unwrap_or_else(|| panic!("probe steps: {status}"))
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["put", "get", "search", "delete"]);
    assert_eq!(status["store"]["docs"], 5, "the probe's document is gone");
    let (_, _, text) = d.request("GET", "/metrics", None);
    for family in [
        "medic_process_resident_bytes ",
        "medic_process_cpu_seconds ",
        "medic_process_open_fds ",
        "medic_process_threads ",
        "medic_search_duration_seconds_count{kind=\"vector\"} 3",
    ] {
        assert!(text.contains(family), "{family}: {text}");
    }
    let (code, reserved) = d.json(
        "PUT",
        "/v1/docs/.medic%2Fprobe",
        Some(&json!({"text": "x"})),
    );
    assert_eq!(code, 400, "{reserved}");
    assert!(
        reserved["error"].as_str().unwrap().contains("reserved"),
        "{reserved}"
    );
    d.stop();
}
