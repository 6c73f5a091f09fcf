//! The checks' time limits, black-box: named in `medic config --print-default`, configurable, refused out of range
//! with the key named, and an idle daemon — on whatever load the machine has — opens no incident against itself (a
//! single slow run of a check that completes is not a `check_timeout` issue; `overruns_before_issue` in a row is).

mod support;

use std::time::Duration;

use support::{medic_cli, start_with_config};

#[test]
fn check_time_limits_are_documented_and_configurable() {
    let (code, out, err) = medic_cli(&["config", "--print-default"]);
    assert_eq!(code, 0, "{err}");
    for key in [
        "shallow_timeout_ms = 100",
        "deep_timeout_ms = 5000",
        "comprehensive_timeout_ms = 30000",
        "overruns_before_issue = 2",
    ] {
        assert!(out.contains(key), "--print-default does not name {key}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("m.toml");
    std::fs::write(
        &cfg,
        "[checks]\nshallow_timeout_ms = 250\noverruns_before_issue = 3\n",
    )
    .unwrap();
    let (code, out, err) = medic_cli(&["--config", cfg.to_str().unwrap(), "config"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("shallow_timeout_ms = 250"), "{out}");
    assert!(out.contains("overruns_before_issue = 3"), "{out}");
    std::fs::write(&cfg, "[checks]\noverruns_before_issue = 0\n").unwrap();
    let (code, _, err) = medic_cli(&["--config", cfg.to_str().unwrap(), "config"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("checks.overruns_before_issue = 0"), "{err}");
    std::fs::write(&cfg, "[checks]\nshallow_timeout_ms = 0\n").unwrap();
    let (code, _, err) = medic_cli(&["--config", cfg.to_str().unwrap(), "config"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("checks.shallow_timeout_ms = 0"), "{err}");
}

#[test]
fn an_idle_daemon_opens_no_incident_against_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Every shallow check every 200 ms, the deep tier every second: 25 cycles in 5 s.
    let d = start_with_config(
        &data,
        tmp.path(),
        "[checks]\nshallow_interval_ms = 200\ndeep_interval_ms = 1000\n",
    );
    std::thread::sleep(Duration::from_secs(5));
    let (s, v) = d.json("GET", "/v1/incidents?limit=50", None);
    assert_eq!(s, 200, "{v}");
    let incidents = v["incidents"].as_array().cloned().unwrap_or_default();
    assert!(
        incidents.is_empty(),
        "an idle daemon opened incidents: {}",
        serde_json::to_string_pretty(&incidents).unwrap()
    );
    d.stop();
}
