//! medic reads a fleet's metrics from a real Prometheus (Debian's `prometheus`, installed by `.ci/run`): the server
//! scrapes the medic daemon's own `/metrics`, and that daemon's `[[targets]] kind = "prometheus"` queries it back.
//! The values reach the engine as samples (`target.prom.<reading>`, kept in the metric history); a query Prometheus
//! refuses is a `promql_failed` incident naming it; a stopped Prometheus is `prometheus_down`.
//! `MEDIC_REQUIRE_PROMETHEUS=1` makes a missing binary a failure.

mod support;

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

fn incident(d: &Daemon, code: &str) -> Value {
    wait_for(
        &format!("a {code} incident"),
        Duration::from_secs(60),
        || {
            let (_, v) = d.json("GET", "/v1/incidents", None);
            v["incidents"]
                .as_array()?
                .iter()
                .find(|i| {
                    i["issues"]
                        .as_array()
                        .is_some_and(|is| is.iter().any(|x| x["code"] == code))
                })
                .cloned()
        },
    )
}

#[test]
fn queries_of_a_real_prometheus_become_samples_and_its_failures_incidents() {
    let Some(bin) = support::binary_on_path(&["prometheus"]) else {
        assert!(
            std::env::var("MEDIC_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
            "MEDIC_REQUIRE_PROMETHEUS=1 but no prometheus on PATH"
        );
        eprintln!("skipped: no prometheus on PATH");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (medic_port, prom_port) = (free_port(), free_port());
    let prom_config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: medic\n    \
             static_configs:\n      - targets: [\"127.0.0.1:{medic_port}\"]\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(tmp.path().join("prometheus.log")).unwrap();
    let prom = Killed(
        Command::new(&bin)
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
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
