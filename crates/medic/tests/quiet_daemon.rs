//! The healer stays quiet and sees the machine, black-box through `medic serve` with a short healing interval:
//! a daemon left idle, then given one write, opens no incident over many healing cycles (cumulative counters
//! used to reach the detectors as gauges and opened a storm of SEV2 incidents — `docs`, `last_lsn`, `wal_bytes`,
//! `commits_total`, ... — at the first write after idle); and the process's memory, CPU time, open files and the
//! search latency reach both `/metrics` and the engine's own samples (the metric history of the knowledge base).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Daemon, wait_for};

/// One healing cycle every 100 ms: a simulated "three idle minutes" of the default 5 s cycle (36 cycles) takes
/// a few seconds.
const CYCLE_MS: u64 = 100;

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("medic.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[checks]\nshallow_interval_ms = {CYCLE_MS}\n\
             probe_interval_ms = 600000\n"
        ),
    )
    .unwrap();
    path
}

fn cycles(d: &Daemon) -> u64 {
    let (code, status) = d.json("GET", "/v1/status", None);
    assert_eq!(code, 200, "{status}");
    status["engine"]["cycles"]
        .as_u64()
        .unwrap_or_else(|| panic!("engine.cycles in {status}"))
}

/// Waits until `n` more healing cycles than now have run.
fn wait_cycles(d: &Daemon, n: u64) {
    let start = cycles(d);
    wait_for(
        &format!("{n} healing cycles"),
        Duration::from_secs(120),
        || (cycles(d) >= start + n).then_some(()),
    );
}

fn incidents(d: &Daemon) -> Vec<Value> {
    let (code, v) = d.json("GET", "/v1/incidents", None);
    assert_eq!(code, 200, "{v}");
    v.as_array()
        .or_else(|| v["incidents"].as_array())
        .unwrap_or_else(|| panic!("an incident list: {v}"))
        .clone()
}

fn describe(found: &[Value]) -> String {
    found
        .iter()
        .map(|i| {
            let resources: Vec<&str> = i["issues"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["resource"].as_str()).collect())
                .unwrap_or_default();
            format!(
                "#{} {} {}: {resources:?}",
                i["id"], i["severity"], i["root_cause"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn idle_then_one_put_opens_no_incident_over_many_healing_cycles() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path());
    let d = Daemon::start_with(&data, tmp.path(), &["--config", cfg.to_str().unwrap()]);
    // Idle for as many cycles as three minutes of the default 5 s cycle.
    wait_cycles(&d, 40);
    let before = incidents(&d);
    assert!(before.is_empty(), "idle: {}", describe(&before));
    let (code, v) = d.json("PUT", "/v1/docs/first", Some(&support::doc(1)));
    assert_eq!(code, 200, "{v}");
    // The write's step is seen by every counter, size and gauge within a cycle; give the detectors many.
    wait_cycles(&d, 30);
    let after = incidents(&d);
    assert!(
        after.is_empty(),
        "one put after idle opened {} incidents:\n{}\nstderr:\n{}",
        after.len(),
        describe(&after),
        d.stderr()
    );
    let (_, status) = d.json("GET", "/v1/status", None);
    assert_eq!(status["state"], "HEALTHY", "{status}");
    assert_eq!(status["engine"]["incidents"], 0, "{}", status["engine"]);
    d.stop();
}

#[test]
fn process_readings_and_search_latency_reach_metrics_and_the_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path());
    let d = Daemon::start_with(&data, tmp.path(), &["--config", cfg.to_str().unwrap()]);
    for i in 0..5 {
        let (code, v) = d.json("PUT", &format!("/v1/docs/d{i}"), Some(&support::doc(i)));
        assert_eq!(code, 200, "{v}");
    }
    let (code, v) = d.json(
        "POST",
        "/v1/search",
        Some(&json!({"vector": [1.0, 1.0, 0.0], "k": 3})),
    );
    assert_eq!(code, 200, "{v}");
    // The search is in the window of the next cycle; two more cycles give the CPU counter a rate.
    wait_cycles(&d, 3);

    let (_, _, text) = d.request("GET", "/metrics", None);
    for family in [
        "medic_process_resident_bytes ",
        "medic_process_cpu_seconds ",
        "medic_process_open_fds ",
        "medic_search_duration_seconds_count{kind=\"vector\"} 1",
    ] {
        assert!(text.contains(family), "{family} in /metrics:\n{text}");
    }
    d.stop();

    // What the engine was given each cycle is what the knowledge base's metric history holds.
    let kb = medic::kb::SqliteKb::open(&data.join("medic.sqlite3")).unwrap();
    let history = |metric: &str| kb.metric_history(metric, 0, 10_000).unwrap();
    let resident = history("process_resident_bytes");
    assert!(
        resident.iter().any(|(_, v)| *v > f64::from(1u32 << 20)),
        "resident memory reached the engine: {resident:?}"
    );
    let fds = history("process_open_fds");
    assert!(
        fds.iter().any(|(_, v)| *v >= 3.0),
        "open descriptors reached the engine: {fds:?}"
    );
    // CPU time is a counter: the engine is given the count and judges its rate.
    let cpu = history("process_cpu_us_total");
    assert!(cpu.len() >= 3, "CPU time reached the engine: {cpu:?}");
    assert!(
        cpu.windows(2).all(|w| w[1].1 >= w[0].1),
        "a counter never falls within one process: {cpu:?}"
    );
    let cpu_rate = history("process_cpu_us_per_s");
    assert!(
        !cpu_rate.is_empty() && cpu_rate.iter().all(|(_, v)| *v >= 0.0),
        "the engine derived the CPU rate: {cpu_rate:?}"
    );
    let search = history("search_vector_latency_p99_us");
    assert_eq!(
        search.len(),
        1,
        "one window with the search reached the engine: {search:?}"
    );
    let searches = history("search_vector_ops_total");
    assert!(
        searches.last().is_some_and(|(_, v)| *v == 1.0),
        "{searches:?}"
    );
}
