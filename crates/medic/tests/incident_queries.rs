//! Asking the knowledge base what happened, through the real `medic serve` and the CLI: incidents filtered by time,
//! severity, kind, status and resource (`GET /v1/incidents?...`, `medic incidents --...`, through the daemon and
//! offline), bad filter values named in a 400 / exit 2; and `medic sql`, read-only SQL over the views
//! `healing_status`, `detected_issues` and `repair_history`, refusing anything but one SELECT.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Daemon, medic, wait_for};

const CONFIG: &str =
    "[checks]\nshallow_interval_ms = 200\n\n[engine]\nescalated_recheck_us = 200000\n";

fn start(data: &Path, logs: &Path) -> Daemon {
    support::start_with_config(data, logs, CONFIG)
}

fn alert(name: &str, instance: &str, severity: &str) -> Value {
    json!({
        "status": "firing",
        "labels": {"alertname": name, "instance": instance, "severity": severity},
        "annotations": {"summary": format!("{name} on {instance}")},
        "startsAt": "2026-12-06T06:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": format!("{name}-{instance}")
    })
}

fn incidents(d: &Daemon, query: &str) -> (u16, Value) {
    d.json("GET", &format!("/v1/incidents?limit=100{query}"), None)
}

fn ids(v: &Value) -> Vec<u64> {
    v["incidents"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect()
}

/// The ids of `all` that `keep` lets through, in the same order.
fn expected(all: &Value, keep: impl Fn(&Value) -> bool) -> Vec<u64> {
    all["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| keep(i))
        .map(|i| i["id"].as_u64().unwrap())
        .collect()
}

fn has_resource(i: &Value, prefix: &str) -> bool {
    i["issues"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["resource"].as_str().unwrap().starts_with(prefix))
}

/// The last line of stdout as JSON.
fn last_json(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn incidents_filter_by_time_severity_kind_status_and_resource_and_sql_reads_the_views() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = start(&data, tmp.path());
    let payload = json!({"version": "4", "status": "firing", "receiver": "medic", "alerts": [
        alert("DiskFull", "web-1:9100", "critical"),
        alert("SlowQueries", "db-2:5432", "warning"),
    ]});
    let (s, v) = d.json("POST", "/v1/alertmanager", Some(&payload));
    assert_eq!(s, 200, "{v}");
    let all = wait_for("two escalated incidents", Duration::from_secs(60), || {
        let (_, v) = incidents(&d, "");
        let escalated = v["incidents"]
            .as_array()?
            .iter()
            .filter(|i| i["resolution"] == "escalated")
            .count();
        (escalated >= 2).then_some(v)
    });
    let n = ids(&all).len();

    // Each filter answers exactly what the unfiltered list holds that matches it.
    let cases: Vec<(&str, Vec<u64>)> = vec![
        (
            "&resource=alert.web-1*",
            expected(&all, |i| has_resource(i, "alert.web-1")),
        ),
        (
            "&resource=ALERT.DB-2:5432",
            expected(&all, |i| has_resource(i, "alert.db-2:5432")),
        ),
        (
            "&kind=operation_error",
            expected(&all, |i| {
                i["issues"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["kind"] == "operation_error")
            }),
        ),
        ("&kind=integrity", vec![]),
        (
            "&status=escalated",
            expected(&all, |i| i["resolution"] == "escalated"),
        ),
        (
            "&status=closed",
            expected(&all, |i| !i["resolved_at"].is_null()),
        ),
        (
            "&status=active,auto_repaired",
            expected(&all, |i| {
                i["resolved_at"].is_null() || i["resolution"] == "auto_repaired"
            }),
        ),
        ("&since=-1h&until=now", ids(&all)),
        ("&until=2020-01-01", vec![]),
        (
            "&since=-1d&status=escalated&resource=alert.*",
            expected(&all, |i| {
                i["resolution"] == "escalated" && has_resource(i, "alert.")
            }),
        ),
    ];
    for (query, want) in &cases {
        let (s, v) = incidents(&d, query);
        assert_eq!(s, 200, "{query}: {v}");
        assert_eq!(&ids(&v), want, "{query}");
    }
    let web = &cases[0].1;
    assert_eq!(web.len(), 1, "one incident on web-1: {all}");
    assert!(
        n >= 2 && web.len() < n,
        "the resource filter narrowed: {all}"
    );
    // Severity: every severity present in the list, one at a time, partitions it.
    let mut by_severity = 0;
    for sev in ["sev0", "sev1", "sev2", "sev3"] {
        let (s, v) = incidents(&d, &format!("&severity={}", sev.to_uppercase()));
        assert_eq!(s, 200, "{v}");
        let want = expected(&all, |i| {
            i["severity"].as_str().unwrap().eq_ignore_ascii_case(sev)
        });
        assert_eq!(ids(&v), want, "severity={sev}");
        by_severity += want.len();
    }
    assert_eq!(by_severity, n);

    // Bad values: a 400 naming the key and the value.
    for (query, words) in [
        ("&severity=high", &["severity", "high", "sev0"][..]),
        ("&kind=corruption", &["kind", "corruption", "integrity"]),
        ("&status=done", &["status", "done", "escalated"]),
        ("&since=last-tuesday", &["since", "last-tuesday"]),
        ("&since=-1h&until=-2h", &["since", "after until"]),
        ("&sevrity=sev1", &["sevrity"]),
    ] {
        let (s, v) = incidents(&d, query);
        assert_eq!(s, 400, "{query}: {v}");
        let e = v["error"].as_str().unwrap();
        for w in words {
            assert!(e.contains(w), "{query}: {e:?} lacks {w:?}");
        }
    }

    // The CLI through the daemon: the same filter, and a bad value is a usage error.
    let (code, out, err) = medic(
        &data,
        &["incidents", "--resource", "alert.web-1*", "--json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(&ids(&last_json(&out)), web);
    let (code, out, err) = medic(&data, &["incidents", "--severity", "high", "--json"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        last_json(&out)["error"]
            .as_str()
            .unwrap()
            .contains("severity"),
        "{out}"
    );

    // SQL beside the running daemon.
    let (code, out, err) = medic(
        &data,
        &[
            "sql",
            "SELECT incident, state, resolution FROM healing_status ORDER BY incident",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let rows = last_json(&out);
    assert_eq!(
        rows["columns"],
        json!(["incident", "state", "resolution"]),
        "{rows}"
    );
    let mut sql_ids: Vec<u64> = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_u64().unwrap())
        .collect();
    let mut all_ids = ids(&all);
    sql_ids.sort_unstable();
    all_ids.sort_unstable();
    assert_eq!(sql_ids, all_ids, "{rows}");
    d.stop();

    // Offline (no daemon): the filter through the data directory, read-only.
    let (code, out, err) = medic(
        &data,
        &[
            "incidents",
            "--resource",
            "alert.web-1*",
            "--status",
            "escalated",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(&ids(&last_json(&out)), web);
    let (code, out, err) = medic(&data, &["incidents", "--kind", "nonsense"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("kind") && err.contains("nonsense"), "{err}");

    // The views name what happened.
    let (code, out, err) = medic(
        &data,
        &[
            "sql",
            "SELECT code, resource, kind FROM detected_issues WHERE code LIKE 'alert_%' ORDER BY code",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let rows = last_json(&out);
    assert_eq!(
        rows["rows"],
        json!([
            ["alert_diskfull", "alert.web-1:9100", "check_failed"],
            ["alert_slowqueries", "alert.db-2:5432", "check_failed"]
        ]),
        "{rows}"
    );
    let (code, out, err) = medic(
        &data,
        &[
            "sql",
            "WITH r AS (SELECT * FROM repair_history) SELECT COUNT(*) AS n FROM r",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(last_json(&out)["rows"][0][0].as_u64().is_some(), "{out}");
    // The row limit: cut and said so.
    let (code, out, err) = medic(
        &data,
        &[
            "sql",
            "SELECT * FROM healing_status",
            "--limit",
            "1",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let rows = last_json(&out);
    assert_eq!(rows["row_count"], 1, "{rows}");
    assert_eq!(rows["truncated"], true, "{rows}");
    assert!(err.contains("cut at 1 rows"), "{err}");
    let (code, _, err) = medic(&data, &["sql", "SELECT 1", "--limit", "10001"]);
    assert_eq!(code, 2, "{err}");

    // Anything but one read-only SELECT is refused, and nothing changes.
    let kb = data.join("medic.sqlite3");
    let before = std::fs::read(&kb).unwrap();
    for (statement, words) in [
        ("DELETE FROM incidents", &["SELECT", "DELETE"][..]),
        ("SELECT 1; DELETE FROM incidents", &["one statement"]),
        ("WITH x AS (SELECT 1) DELETE FROM incidents", &["read-only"]),
        ("UPDATE incidents SET severity = 'Sev3'", &["UPDATE"]),
        ("CREATE TABLE x (a)", &["CREATE"]),
        ("SELECT * FROM no_such_view", &["no_such_view"]),
    ] {
        let (code, out, err) = medic(&data, &["sql", statement]);
        assert_eq!(code, 2, "{statement}: {out}{err}");
        for w in words {
            assert!(err.contains(w), "{statement}: {err:?} lacks {w:?}");
        }
    }
    assert!(
        std::fs::read(&kb).unwrap() == before,
        "medic sql changed the knowledge base"
    );
    let (code, out, err) = medic(&data, &["sql", "SELECT COUNT(*) FROM incidents", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(last_json(&out)["rows"][0][0].as_u64(), Some(n as u64));
}
