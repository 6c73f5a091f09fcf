//! medic reads a fleet's metrics from a real Prometheus (Debian's `prometheus`, installed by `.ci/run`): the server
//! scrapes the medic daemon's own `/metrics`, and that daemon's `[[targets]] kind = "prometheus"` queries it back.
//! The values reach the engine as samples (`target.prom.<reading>`, kept in the metric history); a query Prometheus
//! refuses is a `promql_failed` incident naming it; a stopped Prometheus is `prometheus_down`.
//! A playbook condition over a query's value (`target.fleet.error_rate > 0.05`, sustained) runs the playbook when a
//! scraped exporter's value crosses it. `MEDIC_REQUIRE_PROMETHEUS=1` makes a missing binary a failure.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{Daemon, Killed, doc, free_port, wait_for};

/// The latest value of `metric` in the daemon's history, once there is one.
fn history_value(d: &Daemon, metric: &str) -> f64 {
    wait_for(
        &format!("a sample of {metric}"),
        Duration::from_secs(60),
        || {
            let (_, v) = d.json(
                "GET",
                &format!("/v1/history?metric={metric}&since=-1h"),
                None,
            );
            v["points"].as_array()?.last()?["value"].as_f64()
        },
    )
}

/// A Prometheus scraping `127.0.0.1:scraped/metrics` every second as job `job`; stopped on drop.
fn start_prometheus(bin: &Path, tmp: &Path, job: &str, scraped: u16) -> (Killed, u16) {
    let port = free_port();
    let prom_config = tmp.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: {job}\n    \
             static_configs:\n      - targets: [\"127.0.0.1:{scraped}\"]\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(tmp.join("prometheus.log")).unwrap();
    let prom = Killed(
        Command::new(bin)
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    (prom, port)
}

/// The prometheus binary, or `None` (skipped; a failure with `MEDIC_REQUIRE_PROMETHEUS=1`).
fn prometheus_or_skip() -> Option<PathBuf> {
    let bin = support::binary_on_path(&["prometheus"]);
    if bin.is_none() {
        assert!(
            std::env::var("MEDIC_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
            "MEDIC_REQUIRE_PROMETHEUS=1 but no prometheus on PATH"
        );
        eprintln!("skipped: no prometheus on PATH");
    }
    bin
}

fn incident(d: &Daemon, code: &str) -> Value {
    wait_for(
        &format!("a {code} incident"),
        Duration::from_secs(60),
        || support::incident_with(d, code),
    )
}

#[test]
fn queries_of_a_real_prometheus_become_samples_and_its_failures_incidents() {
    let Some(bin) = prometheus_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let medic_port = free_port();
    let (prom, prom_port) = start_prometheus(&bin, tmp.path(), "medic", medic_port);
    let config = tmp.path().join("medic.toml");
    std::fs::write(
        &config,
        format!(
            "[checks]\nshallow_interval_ms = 200\n\n[[targets]]\nname = \"prom\"\nkind = \"prometheus\"\n\
             url = \"http://127.0.0.1:{prom_port}\"\ninterval_ms = 500\ntimeout_ms = 2000\nfailures_before_down = 2\n\
             [targets.queries]\nup = 'max(up{{job=\"medic\"}})'\ndocs = 'max(medic_documents)'\n\
             broken = 'rate(up[1m]'\n"
        ),
    )
    .unwrap();
    let d = Daemon::start_with(
        &tmp.path().join("data"),
        tmp.path(),
        &[
            "--listen",
            &format!("127.0.0.1:{medic_port}"),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    for i in 0..7 {
        let (s, _) = d.json("PUT", &format!("/v1/docs/d{i}"), Some(&doc(i)));
        assert_eq!(s, 200);
    }
    // Prometheus scraped the daemon, and the daemon read it back.
    assert_eq!(history_value(&d, "target.prom.up"), 1.0);
    wait_for(
        "7 documents through Prometheus",
        Duration::from_secs(60),
        || (history_value(&d, "target.prom.docs") == 7.0).then_some(()),
    );
    let bad = incident(&d, "promql_failed");
    let text = bad.to_string();
    assert!(
        text.contains("query broken refused by Prometheus") && text.contains("rate(up[1m]"),
        "{text}"
    );

    // Prometheus stops: after two failed probes, prometheus_down.
    drop(prom);
    let down = incident(&d, "prometheus_down");
    assert_eq!(down["issues"][0]["resource"], "target.prom", "{down}");
    d.stop();
}

#[test]
fn a_playbook_condition_on_a_prometheus_reading_runs_its_playbook() {
    let Some(bin) = prometheus_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // The fleet's exporter: a file served over HTTP, its error ratio over the threshold.
    let exporter = tmp.path().join("exporter");
    std::fs::create_dir(&exporter).unwrap();
    std::fs::write(exporter.join("metrics"), "fleet_errors_ratio 0.2\n").unwrap();
    let exporter_port = free_port();
    let _exporter = Killed(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &exporter_port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(&exporter)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 serves the exporter"),
    );
    let (_prom, prom_port) = start_prometheus(&bin, tmp.path(), "fleet", exporter_port);
    let config = tmp.path().join("medic.toml");
    let playbooks = tmp.path().join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    std::fs::write(
        &config,
        format!(
            "[checks]\nshallow_interval_ms = 200\n\n[playbooks]\ndir = \"{}\"\n\n[[targets]]\nname = \"fleet\"\n\
             kind = \"prometheus\"\nurl = \"http://127.0.0.1:{prom_port}\"\ninterval_ms = 500\n\
             [targets.queries]\nerror_rate = 'max(fleet_errors_ratio)'\n",
            playbooks.display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    // A reading the target does not have is refused with file and line.
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(
        bad.join("typo.yaml"),
        "name: typo\ntarget: fleet\ntrigger:\n  code: fleet_errors_high\n  condition: target.fleet.eror_rate > 0.05\nsteps:\n  - wait: 1s\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["--config", cfg, "playbooks", "check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("typo.yaml:5: condition: prometheus target \"fleet\" has no reading \"eror_rate\"; it has error_rate"),
        "{stdout}"
    );
    // The playbook: the step marks that it ran and brings the exporter's ratio down.
    let marker = tmp.path().join("ran");
    let fix = format!(
        "echo ran > {} && printf 'fleet_errors_ratio 0.01\\n' > {}",
        marker.display(),
        exporter.join("metrics").display()
    );
    std::fs::write(
        playbooks.join("shed-errors.yaml"),
        format!(
            "name: shed-errors\ntarget: fleet\ntrigger:\n  code: fleet_errors_high\n  condition: target.fleet.error_rate > 0.05\n  sustain: 1s\n\
             steps:\n  - run: [sh, -c, {}]\n    timeout: 10s\nverify:\n  wait: 1s\n  retries: 20\n",
            serde_json::to_string(&fix).unwrap()
        ),
    )
    .unwrap();
    let d = Daemon::start_with(
        &tmp.path().join("data"),
        tmp.path(),
        &["--listen", "127.0.0.1:0", "--config", cfg],
    );
    let found = incident(&d, "fleet_errors_high");
    let id = found["id"].as_u64().unwrap();
    let detail = wait_for(
        "the fleet_errors_high incident closed as repaired",
        Duration::from_secs(60),
        || {
            let (_, v) = d.json("GET", &format!("/v1/incidents/{id}"), None);
            (v["incident"]["resolution"] == "auto_repaired" || v["resolution"] == "auto_repaired")
                .then_some(v)
        },
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n");
    let attempt = detail["timeline"]
        .as_array()
        .and_then(|t| t.iter().find(|e| e["event"] == "repair_attempt"))
        .unwrap_or_else(|| panic!("a repair attempt in the timeline: {detail}"))
        .to_string();
    assert!(
        attempt.contains("shed-errors") && attempt.contains("exit 0"),
        "{attempt}"
    );
    let issue = detail["timeline"]
        .as_array()
        .and_then(|t| t.iter().find(|e| e["event"] == "issue"))
        .unwrap()
        .to_string();
    assert!(
        issue.contains("target.fleet") && issue.contains("target.fleet.error_rate > 0.05"),
        "{issue}"
    );
    d.stop();
}
