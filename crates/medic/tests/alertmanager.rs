//! A fleet's Alertmanager reports to medic: a firing alert becomes an incident of the real `medic serve`, handed to
//! a person (no strategy repairs someone else's alert), and closes once the alert is resolved. First with payloads
//! posted by the test, then with a real Alertmanager (Debian's `prometheus-alertmanager`, installed by `.ci/run`)
//! whose webhook receiver is medic; `MEDIC_REQUIRE_ALERTMANAGER=1` makes a missing binary a failure.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Daemon, Killed, free_port, wait_for};

const CONFIG: &str =
    "[checks]\nshallow_interval_ms = 200\n\n[engine]\nescalated_recheck_us = 200000\n";

fn start(data: &Path, logs: &Path) -> Daemon {
    support::start_with_config(data, logs, CONFIG)
}

/// The incident whose root issue has `code`, once it reaches `status` (an active status, or `closed`).
fn incident_with(d: &Daemon, code: &str, status: &str) -> Value {
    wait_for(
        &format!("an incident {code} {status}"),
        Duration::from_secs(60),
        || {
            let (_, v) = d.json("GET", "/v1/incidents", None);
            let id = v["incidents"].as_array()?.iter().find(|i| {
                i["issues"]
                    .as_array()
                    .is_some_and(|is| is.iter().any(|x| x["code"] == code))
            })?["id"]
                .as_u64()?;
            let (_, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
            (detail["status"] == status).then_some(detail)
        },
    )
}

fn alert(status: &str) -> Value {
    json!({"version": "4", "status": status, "receiver": "medic", "alerts": [{
        "status": status,
        "labels": {"alertname": "HighErrorRate", "instance": "web-1:9100", "severity": "critical"},
        "annotations": {"summary": "5xx above 5% for 5 minutes"},
        "startsAt": "2026-12-06T06:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "5b1f9e0c2a7d4e11"
    }]})
}

#[test]
fn a_posted_alert_opens_an_incident_that_closes_when_it_is_resolved() {
    let tmp = tempfile::tempdir().unwrap();
    let d = start(&tmp.path().join("data"), tmp.path());
    let (s, v) = d.json("POST", "/v1/alertmanager", Some(&alert("firing")));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["received"]["firing_now"], 1, "{v}");
    let detail = incident_with(&d, "alert_higherrorrate", "escalated");
    let issue = &detail["incident"]["issues"][0];
    assert_eq!(issue["resource"], "alert.web-1:9100", "{detail}");
    assert!(
        issue["summary"]
            .as_str()
            .unwrap()
            .contains("5xx above 5% for 5 minutes"),
        "{detail}"
    );
    assert_eq!(
        detail["incident"]["attempts"],
        json!([]),
        "nobody repairs it"
    );

    // Bad payloads are refused, naming what is wrong, and change nothing.
    let (s, v) = d.json(
        "POST",
        "/v1/alertmanager",
        Some(&json!({"alerts": [{"status": "pending", "labels": {"alertname": "X"}}]})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("alerts[0].status"),
        "{v}"
    );
    let (s, v) = d.json("POST", "/v1/alertmanager", Some(&json!({"nope": 1})));
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not an Alertmanager webhook payload"),
        "{v}"
    );

    let (s, v) = d.json("POST", "/v1/alertmanager", Some(&alert("resolved")));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["received"]["firing_now"], 0, "{v}");
    incident_with(&d, "alert_higherrorrate", "closed");
    d.stop();
}

#[test]
fn a_real_alertmanager_reports_firing_and_resolved_alerts() {
    let Some(bin) = support::binary_on_path(&["prometheus-alertmanager", "alertmanager"]) else {
        assert!(
            std::env::var("MEDIC_REQUIRE_ALERTMANAGER").as_deref() != Ok("1"),
            "MEDIC_REQUIRE_ALERTMANAGER=1 but no prometheus-alertmanager on PATH"
        );
        eprintln!("skipped: no prometheus-alertmanager on PATH");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = start(&tmp.path().join("data"), tmp.path());
    let config = tmp.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: medic\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: medic\n    webhook_configs:\n      - url: {}/v1/alertmanager\n        \
             send_resolved: true\n",
            d.url
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(tmp.path().join("alertmanager.log")).unwrap();
    let _am = Killed(
        Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                tmp.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let am = format!("http://127.0.0.1:{port}");
    let agent = support::agent();
    let post = |ends_at: Option<&str>| {
        let mut a = json!({
            "labels": {"alertname": "ReplicaLagging", "job": "postgres-replica", "severity": "warning"},
            "annotations": {"summary": "replica 42 s behind"},
        });
        if let Some(t) = ends_at {
            a["endsAt"] = json!(t);
        }
        agent
            .post(&format!("{am}/api/v2/alerts"))
            .header("Content-Type", "application/json")
            .send(json!([a]).to_string())
    };
    wait_for(
        "Alertmanager to take alerts",
        Duration::from_secs(30),
        || post(None).ok().filter(|r| r.status().is_success()),
    );
    let detail = incident_with(&d, "alert_replicalagging", "escalated");
    assert_eq!(
        detail["incident"]["issues"][0]["resource"], "alert.postgres-replica",
        "{detail}"
    );
    // Ended now: Alertmanager sends it resolved, and the incident closes.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let r = post(Some(&now)).unwrap();
    assert!(r.status().is_success());
    incident_with(&d, "alert_replicalagging", "closed");
    d.stop();
}
