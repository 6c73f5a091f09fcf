//! The operator's views of the running daemon, black-box: the metric history over HTTP and through `medic history`,
//! the dashboard page rendered by a real headless Chromium after an incident was caused and repaired, and the
//! daily report route.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{Daemon, wait_for};

/// Checks every 100 ms and small segments, so metrics are recorded within a second and segments seal quickly.
const FAST: &str = "[checks]\nshallow_interval_ms = 100\ndeep_interval_ms = 200\ncomprehensive_interval_ms = 400\n\n\
                    [constraints]\nwal_bytes_max = 2097152\nsegment_bytes_max = 65536\n";

fn start(tmp: &Path) -> Daemon {
    let cfg = tmp.join("medic.toml");
    std::fs::write(&cfg, FAST).unwrap();
    Daemon::start_with(
        &tmp.join("data"),
        tmp,
        &["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()],
    )
}

fn medic_cli(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn history_lists_metrics_and_answers_points_with_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    let d = start(tmp.path());
    // A few cycles record the engine's samples.
    let names = wait_for(
        "metric names in the history",
        Duration::from_secs(30),
        || {
            let (s, v) = d.json("GET", "/v1/history", None);
            assert_eq!(s, 200, "{v}");
            let names: Vec<String> = v["metrics"]
                .as_array()?
                .iter()
                .filter(|m| m["points"].as_u64().unwrap_or(0) >= 3)
                .filter_map(|m| m["name"].as_str().map(String::from))
                .collect();
            names.iter().any(|n| n == "docs").then_some(names)
        },
    );
    assert!(names.len() > 3, "{names:?}");

    let (s, v) = d.json("GET", "/v1/history?metric=docs&since=-1h", None);
    assert_eq!(s, 200, "{v}");
    let points = v["points"].as_array().unwrap();
    assert!(points.len() >= 3, "{v}");
    let ats: Vec<u64> = points.iter().map(|p| p["at"].as_u64().unwrap()).collect();
    assert!(
        ats.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {ats:?}"
    );
    assert!(
        ats[0] >= v["since"].as_u64().unwrap()
            && *ats.last().unwrap() <= v["until"].as_u64().unwrap()
    );
    assert_eq!(
        points[0]["value"].as_f64(),
        Some(0.0),
        "an empty store has 0 docs"
    );
    assert_eq!(v["points_max"], 10_000);

    // Buckets: fewer points, each with its count.
    let (s, b) = d.json("GET", "/v1/history?metric=docs&since=-1h&step=1h", None);
    assert_eq!(s, 200, "{b}");
    let buckets = b["points"].as_array().unwrap();
    assert!(!buckets.is_empty() && buckets.len() <= 2, "{b}");
    let counted: u64 = buckets.iter().map(|x| x["count"].as_u64().unwrap()).sum();
    assert!(counted >= points.len() as u64, "{b}");

    // An RFC 3339 range in the future holds nothing.
    let (s, f) = d.json(
        "GET",
        "/v1/history?metric=docs&since=2999-01-01T00:00:00Z&until=2999-01-02",
        None,
    );
    assert_eq!(s, 200, "{f}");
    assert_eq!(f["points"].as_array().map(Vec::len), Some(0));

    // Bad input: a 400 naming what and the limit.
    for (q, want) in [
        ("metric=docs&since=yesterday", "since = \"yesterday\""),
        (
            "metric=docs&since=-1h&step=1ms",
            "history_points_max = 10000",
        ),
        ("metric=docs&step=fast", "step:"),
        ("metric=docs&since=now&until=-1h", "empty range"),
        ("metric=docs&colour=red", "unknown field"),
    ] {
        let (s, e) = d.json("GET", &format!("/v1/history?{q}"), None);
        assert_eq!(s, 400, "{q}: {e}");
        let msg = e["error"].as_str().unwrap();
        assert!(msg.contains(want), "{q}: {msg}");
    }

    // The CLI through the daemon: JSON data, and a sparkline for people.
    let (code, out, err) = medic_cli(&[
        "history", "docs", "--since", "-1h", "--json", "--server", &d.url,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["metric"], "docs");
    assert!(v["points"].as_array().unwrap().len() >= 3, "{v}");
    let (code, out, err) = medic_cli(&["history", "docs", "--server", &d.url]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("docs from") && out.contains('▄'), "{out}");
    let (code, out, err) = medic_cli(&["history", "--server", &d.url]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("METRIC") && out.contains("docs"), "{out}");
    let (code, out, err) = medic_cli(&["history", "docs", "--since", "soon", "--server", &d.url]);
    assert_eq!(code, 2, "a bad time is a usage error: {out}{err}");
    assert!(err.contains("since = \"soon\""), "{err}");
    d.stop();

    // Offline, on the stopped daemon's data directory: the same answer shape.
    let data = tmp.path().join("data");
    let (code, out, err) = medic_cli(&[
        "history",
        "docs",
        "--since",
        "-1d",
        "--json",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert!(v["points"].as_array().unwrap().len() >= 3, "{v}");
}
