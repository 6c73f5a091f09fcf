//! The real `medic serve` process, driven over HTTP with `ureq`: documents, health tiers, status, incidents and the
//! metrics format; damage made to the data directory while the daemon is stopped is healed after a restart with
//! every document identical and the incident visible; and every write acknowledged with 200 survives SIGKILL.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use serde_json::{Value, json};
use support::{Daemon, Outcome, agent, doc, wait_for};

#[test]
fn serves_documents_health_status_incidents_and_metrics_and_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = Daemon::start(&data, tmp.path());

    for i in 0..20 {
        let (s, v) = d.json("PUT", &format!("/v1/docs/doc-{i}"), Some(&doc(i)));
        assert_eq!(s, 200, "{v}");
        assert!(v["lsn"].as_u64().is_some());
    }
    let (s, v) = d.json("GET", "/v1/docs/doc-3", None);
    assert_eq!(s, 200);
    let mut expected = doc(3);
    expected["id"] = json!("doc-3");
    assert_eq!(v, expected);
    let (s, _) = d.json("DELETE", "/v1/docs/doc-19", None);
    assert_eq!(s, 200);
    let (s, _) = d.json("GET", "/v1/docs/doc-19", None);
    assert_eq!(s, 404);
    let (s, v) = d.json(
        "POST",
        "/v1/search",
        Some(&json!({"vector": [18.0, 1.0, 0.0], "k": 2, "consistency": "strong"})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["hits"][0]["id"], "doc-18", "{v}");
    // The default is eventual: the index answers from its last commit, which is never ahead of the log.
    let (s, v) = d.json(
        "POST",
        "/v1/search",
        Some(&json!({"vector": [18.0, 1.0, 0.0], "k": 2})),
    );
    assert_eq!(s, 200, "{v}");
    assert!(v["hits"].as_array().is_some_and(|h| h.len() <= 2), "{v}");
    let (s, v) = d.json("PUT", "/v1/docs/bad", Some(&json!({"text": 1})));
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].is_string());

    let (s, v) = d.json("GET", "/health", None);
    assert_eq!((s, v["serving"].as_bool()), (200, Some(true)), "{v}");
    // It says who it is: the holder its data directory's LOCK names, so a command finding it through that
    // directory can tell it from another daemon.
    let lock = store::lock::read_holder(&data).expect("LOCK names the daemon");
    assert_eq!(v["holder"]["pid"], d.child.id(), "{v}");
    assert_eq!(lock.pid, d.child.id());
    assert_eq!(v["holder"]["host"], lock.host.as_str(), "{v}");
    assert_eq!(
        v["holder"]["host"],
        store::lock::host_name().as_str(),
        "{v}"
    );
    assert_eq!(v["holder"]["started_us"], lock.started_us, "{v}");
    for tier in ["deep", "full"] {
        let (s, v) = d.json("GET", &format!("/v1/health?tier={tier}"), None);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["passed"], true, "fresh store passes every check: {v}");
    }
    let (s, v) = d.json("GET", "/v1/status", None);
    assert_eq!(s, 200);
    assert_eq!(v["store"]["docs"], 19, "{v}");
    assert!(
        v["kpis"].is_object() && v["active_incidents"].is_array(),
        "{v}"
    );
    let (s, v) = d.json("GET", "/v1/incidents", None);
    assert_eq!(s, 200);
    assert_eq!(
        v["incidents"],
        json!([]),
        "no incident on a fresh store: {v}"
    );
    let (s, v) = d.json("POST", "/v1/heal?dry_run=true", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["dry_run"], true, "{v}");

    let (s, ct, text) = d.request("GET", "/metrics", None);
    assert_eq!(s, 200);
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert!(!text.contains("# EOF"), "{text}");
    assert!(text.contains("medic_documents 19\n"), "{text}");
    assert!(
        text.contains("# TYPE medic_operation_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("medic_operation_duration_seconds_count{operation=\"put\"} 20\n"),
        "{text}"
    );
    assert!(
        text.contains("medic_health_state{state=\"HEALTHY\"} 1\n"),
        "{text}"
    );

    d.stop();
    // Stopped cleanly: the lock is released and everything is still there.
    let d = Daemon::start(&data, tmp.path());
    let (s, v) = d.json("GET", "/v1/docs/doc-18", None);
    assert_eq!(s, 200);
    assert_eq!(v["meta"]["i"], 18);
    let (_, v) = d.json("GET", "/v1/status", None);
    assert_eq!(v["recovery"]["previous_holder_crashed"], false, "{v}");
    d.stop();
}

#[test]
fn damage_while_stopped_is_healed_after_restart_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = Daemon::start(&data, tmp.path());
    let n = 40;
    for i in 0..n {
        let (s, _) = d.json("PUT", &format!("/v1/docs/doc-{i}"), Some(&doc(i)));
        assert_eq!(s, 200);
    }
    d.stop();

    // Flip 64 bytes in the middle of the open WAL segment.
    let seg = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a WAL segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xA5;
    }
    std::fs::write(&seg, &bytes).unwrap();

    let d = Daemon::start(&data, tmp.path());
    // The healing loop runs its first cycle at start: the damage found at open becomes an incident and is repaired.
    let incident = wait_for("an auto-repaired incident", Duration::from_secs(30), || {
        let (_, v) = d.json("GET", "/v1/incidents", None);
        v["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["resolution"] == "auto_repaired")
            .cloned()
    });
    let id = incident["id"].as_u64().unwrap();
    assert!(
        incident["issues"][0]["resource"]
            .as_str()
            .unwrap()
            .starts_with("wal/"),
        "{incident}"
    );
    let (s, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    assert_eq!(s, 200);
    let events: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"repair_attempt") && events.contains(&"resolved"),
        "{detail}"
    );
    assert!(
        detail["report"]["json"]["root_cause"].is_string(),
        "{detail}"
    );
    let md = detail["report"]["markdown"].as_str().unwrap();
    assert!(
        md.starts_with(&format!("# Incident {id}")) && md.contains("- resolution: auto-repaired"),
        "{md}"
    );

    for i in 0..n {
        let (s, mut v) = d.json("GET", &format!("/v1/docs/doc-{i}"), None);
        assert_eq!(s, 200, "doc-{i} after repair");
        v.as_object_mut().unwrap().remove("id");
        assert_eq!(v, doc(i), "doc-{i} identical after repair");
    }
    let (_, v) = d.json("GET", "/v1/health?tier=full", None);
    assert_eq!(v["passed"], true, "healed: every check passes: {v}");
    assert_eq!(v["state"], "HEALTHY", "{v}");

    let (_, _, text) = d.request("GET", "/metrics", None);
    let incidents: u64 = text
        .lines()
        .filter(|l| l.starts_with("medic_incidents_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(incidents >= 1, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("medic_repairs_total{") && l.contains("outcome=\"succeeded\"")),
        "{text}"
    );

    // An operator disagrees: the incident is closed as a false positive, persisted in the knowledge base.
    let (s, v) = d.json("POST", &format!("/v1/incidents/{id}/false-positive"), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["incident"]["resolution"], "false_positive", "{v}");
    d.stop_with("-INT");
    let d = Daemon::start(&data, tmp.path());
    let (_, v) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    assert_eq!(
        v["incident"]["resolution"], "false_positive",
        "kept across restarts: {v}"
    );
    d.stop();
}

#[test]
fn every_acknowledged_write_survives_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = Daemon::start(&data, tmp.path());
    let url = d.url.clone();
    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (url, acked, stop) = (url.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let r = agent
                        .put(&format!("{url}/v1/docs/k-{i}"))
                        .header("Content-Type", "application/json")
                        .send(doc(i).to_string());
                    match r {
                        Ok(resp) if resp.status() == 200 => acked.lock().unwrap().push(i),
                        Ok(_) => {}
                        Err(_) => break, // the daemon died mid-request: not acknowledged
                    }
                    i += 4;
                }
            })
        })
        .collect();
    wait_for("some acknowledged writes", Duration::from_secs(30), || {
        (acked.lock().unwrap().len() >= 200).then_some(())
    });
    d.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let d = Daemon::start(&data, tmp.path());
    for &i in &acked {
        let (s, mut v) = d.json("GET", &format!("/v1/docs/k-{i}"), None);
        assert_eq!(s, 200, "acknowledged k-{i} lost after SIGKILL");
        v.as_object_mut().unwrap().remove("id");
        assert_eq!(v, doc(i), "k-{i} identical after SIGKILL");
    }
    let (_, v) = d.json("GET", "/v1/status", None);
    assert_eq!(v["recovery"]["previous_holder_crashed"], true, "{v}");
    // Not on a terminal: start-up work is told in plain log lines, the recovery summarised.
    let log = d.stderr();
    assert!(
        log.contains("opening: verifying and replaying the log"),
        "{log}"
    );
    let replayed = v["recovery"]["records_replayed"].as_u64().unwrap();
    assert!(replayed >= acked.len() as u64, "{v}");
    assert!(
        log.contains(&format!("records_replayed={replayed}")),
        "{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "no terminal escapes on a pipe: {log}"
    );
    d.stop();
}

#[test]
fn refuses_a_non_loopback_listener_without_a_token_and_a_second_daemon_on_one_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.token"), "{stderr}");
    assert!(out.stdout.is_empty(), "never listened");

    let d = Daemon::start(&data, tmp.path());
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a second daemon on one directory must not start"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("locked"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", d.child.id())),
        "names the holder: {stderr}"
    );
    let (s, _) = d.json("GET", "/health", None);
    assert_eq!(s, 200, "the first daemon keeps serving");
    d.stop();
}

/// A port already in use is refused before the data directory is touched: nothing is created there.
#[test]
fn a_port_in_use_is_refused_before_the_data_directory_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--listen", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a port in use must not be served");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&addr), "names the address: {stderr}");
    assert!(out.stdout.is_empty(), "never listened");
    assert!(!data.exists(), "nothing created at {}", data.display());
}

/// Sum of every sample of a metric family in an OpenMetrics text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn the_healing_loop_runs_on_its_schedule_and_heals_damage_while_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("medic.toml");
    std::fs::write(
        &config,
        "[checks]\nshallow_interval_ms = 100\ndeep_interval_ms = 200\ncomprehensive_interval_ms = 400\n",
    )
    .unwrap();
    let stderr_path = tmp.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_medic"))
        .arg("--config")
        .arg(&config)
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let d = Daemon {
        child,
        url: first.trim().to_string(),
        stderr_path,
        agent: agent(),
    };
    for i in 0..10 {
        let (s, _) = d.json("PUT", &format!("/v1/docs/doc-{i}"), Some(&doc(i)));
        assert_eq!(s, 200);
    }
    wait_for("three scheduled cycles", Duration::from_secs(30), || {
        let (_, _, text) = d.request("GET", "/metrics", None);
        (metric_sum(&text, "medic_heal_cycles_total") >= 3.0).then_some(())
    });

    // Damage one manifest copy under the running daemon: the scheduled checks find it, the engine restores it.
    let copy = data.join("MANIFEST-B");
    let good = std::fs::read(&copy).unwrap();
    let mut bad = good.clone();
    bad[12] ^= 0xFF;
    std::fs::write(&copy, &bad).unwrap();
    let incident = wait_for(
        "the damaged manifest copy repaired",
        Duration::from_secs(30),
        || {
            let (_, v) = d.json("GET", "/v1/incidents", None);
            v["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| {
                    i["resolution"] == "auto_repaired" && i["issues"][0]["resource"] == "MANIFEST-B"
                })
                .cloned()
        },
    );
    assert_eq!(
        incident["issues"][0]["code"], "manifest_copy_damaged",
        "{incident}"
    );
    assert_ne!(std::fs::read(&copy).unwrap(), bad, "rewritten on disk");
    let (_, v) = d.json("GET", "/v1/health?tier=full", None);
    assert_eq!(v["passed"], true, "{v}");
    for i in 0..10 {
        let (s, _) = d.json("GET", &format!("/v1/docs/doc-{i}"), None);
        assert_eq!(s, 200);
    }
    let (_, _, text) = d.request("GET", "/metrics", None);
    assert!(metric_sum(&text, "medic_incidents_total") >= 1.0, "{text}");
    d.stop();
}

#[test]
fn a_loss_beyond_every_copy_is_reported_precisely_while_the_rest_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = Daemon::start(&data, tmp.path());
    for i in 0..60 {
        let (s, _) = d.json("PUT", &format!("/v1/docs/d{i}"), Some(&doc(i)));
        assert_eq!(s, 200);
    }
    d.stop();
    // The same bytes of the open segment and of its mirror destroyed while stopped: those records are in no copy.
    let mut damaged = 0;
    for entry in std::fs::read_dir(data.join("wal")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        if bytes.len() < 4096 {
            continue;
        }
        let at = bytes.len() / 3;
        for b in &mut bytes[at..at + 64] {
            *b ^= 0xa5;
        }
        std::fs::write(&path, bytes).unwrap();
        damaged += 1;
    }
    assert_eq!(damaged, 2, "the open segment and its mirror");

    let d = Daemon::start(&data, tmp.path());
    let (_, status) = d.json("GET", "/v1/status", None);
    let lost = status["store"]["lost"][0].clone();
    assert!(
        lost["file"].as_str().unwrap().starts_with("wal/"),
        "{status}"
    );
    let (first, last) = (
        lost["lsn_range"][0].as_u64().unwrap(),
        lost["lsn_range"][1].as_u64().unwrap(),
    );
    assert!(first >= 1 && last >= first && last < 60, "{lost}");
    // Why writes are refused is said for machines too, in the status and in the cheap health answer.
    assert_eq!(status["store"]["read_only_cause"], "lost", "{status}");
    let (_, health) = d.json("GET", "/health", None);
    assert_eq!(health["read_only_cause"], "lost", "{health}");
    assert!(
        health["read_only"]
            .as_str()
            .is_some_and(|m| m.contains("accept-loss")),
        "{health}"
    );
    // Every document either reads back identical (written after the loss) or is refused naming it; never wrong.
    // The segment's identity journal names the documents the lost records wrote: only those are refused.
    let named: Vec<String> = serde_json::from_value(lost["ids"].clone())
        .unwrap_or_else(|e| panic!("the loss names its documents ({e}): {lost}"));
    assert_eq!(
        named.len() as u64,
        last - first + 1,
        "one document per lost record: {lost}"
    );
    let (mut served, mut refused) = (0, Vec::new());
    for i in 0..60 {
        let (s, v) = d.json("GET", &format!("/v1/docs/d{i}"), None);
        match s {
            200 => {
                let mut v = v;
                v.as_object_mut().unwrap().remove("id");
                assert_eq!(v, doc(i), "d{i} served identical");
                served += 1;
            }
            503 => {
                let e = v["error"].as_str().unwrap();
                assert!(
                    e.contains("may be stale") && e.contains(&format!("LSN {first}")),
                    "{e}"
                );
                refused.push(format!("d{i}"));
            }
            other => panic!("d{i}: {other} {v}"),
        }
    }
    refused.sort();
    // The daemon's synthetic probe writes `.medic/probe` between the puts, so a lost record may be one of its own.
    let named_docs: Vec<String> = named
        .iter()
        .filter(|n| !n.starts_with(".medic/"))
        .cloned()
        .collect();
    assert_eq!(
        refused, named_docs,
        "refused exactly the documents the loss names; served {served}"
    );
    assert!(served > 0, "served {served}, refused {refused:?}");
    // Searches go on over every other document, and never answer a document the loss names.
    let (s, v) = d.json(
        "POST",
        "/v1/search",
        Some(&json!({"vector": [30.0, 1.0, 0.0], "k": 60, "exact": true})),
    );
    assert_eq!(s, 200, "{v}");
    let hits: Vec<String> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hits.len(), 60 - named_docs.len(), "{v}");
    assert!(hits.iter().all(|h| !named.contains(h)), "{v}");
    let withheld: Vec<String> = serde_json::from_value(v["withheld"].clone()).unwrap();
    assert_eq!(
        withheld.iter().collect::<std::collections::BTreeSet<_>>(),
        named_docs.iter().collect(),
        "{v}"
    );
    // The CLI says so too (through the daemon holding the directory), on stderr beside the table.
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args([
            "search",
            "--data",
            data.to_str().unwrap(),
            "--vector",
            "[30,1,0]",
            "--k",
            "60",
        ])
        .env_remove("MEDIC_SERVER")
        .env_remove("MEDIC_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("withheld") && named_docs.iter().all(|id| err.contains(id.as_str())),
        "{err}"
    );
    let (s, v) = d.json("PUT", "/v1/docs/new", Some(&doc(1)));
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("acknowledged data lost"),
        "{v}"
    );
    // The engine escalates: no strategy can bring the records back.
    let (s, cycle) = d.json("POST", "/v1/heal?dry_run=false", None);
    assert_eq!(s, 200, "{cycle}");
    let (_, list) = d.json("GET", "/v1/incidents", None);
    let escalated = list["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["resolution"] == "escalated"
                && i["issues"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["code"] == "acknowledged_data_lost")
        })
        .unwrap_or_else(|| panic!("an escalated incident for the loss: {list}"));
    let id = escalated["id"].as_u64().unwrap();
    let (_, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    let report = detail["report"]["markdown"].as_str().unwrap_or_default();
    assert!(
        report.contains(lost["file"].as_str().unwrap()),
        "the report names the file: {report}"
    );
    assert!(
        named_docs.iter().all(|id| report.contains(id.as_str())),
        "the report names the documents: {report}"
    );

    // An operator accepts the loss: what survived stays, writes resume.
    let (s, v) = d.json("POST", "/v1/accept-loss", Some(&json!({"confirm": true})));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["accepted"]["ranges"][0]["lsn_range"], lost["lsn_range"],
        "{v}"
    );
    let (s, v) = d.json("PUT", "/v1/docs/new", Some(&doc(1)));
    assert_eq!(s, 200, "{v}");
    // The next cycle's checks find the store whole again.
    let (s, cycle) = d.json("POST", "/v1/heal?dry_run=false", None);
    assert_eq!(s, 200, "{cycle}");
    let (s, v) = d.json("GET", "/health", None);
    assert_eq!(s, 200, "{v}; last cycle: {cycle}");
    d.stop();
}

#[test]
fn sigterm_while_writers_put_exits_cleanly_and_keeps_every_acknowledged_write() {
    const WRITERS: usize = 4;
    const PUTS_PER_WRITER_MAX: usize = 20_000;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = Daemon::start(&data, tmp.path());
    let url = d.url.clone();
    let outcomes: Arc<Mutex<Vec<(usize, Outcome)>>> = Arc::default();
    let acked_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (url, outcomes, acked_count) = (url.clone(), outcomes.clone(), acked_count.clone());
            std::thread::spawn(move || {
                let agent = agent();
                // Until the daemon stops answering (bounded: it is stopped long before this many puts).
                for n in 0..PUTS_PER_WRITER_MAX {
                    let i = n * WRITERS + w;
                    let r = agent
                        .put(&format!("{url}/v1/docs/t-{i}"))
                        .header("Content-Type", "application/json")
                        .send(doc(i).to_string());
                    let outcome = match r {
                        Ok(mut resp) if resp.status() == 200 => {
                            acked_count.fetch_add(1, Ordering::Relaxed);
                            let _ = resp.body_mut().read_to_string();
                            Outcome::Acked
                        }
                        Ok(mut resp) => Outcome::Refused(
                            resp.status().as_u16(),
                            resp.body_mut().read_to_string().unwrap_or_default(),
                        ),
                        Err(_) => Outcome::NoAnswer,
                    };
                    let done = matches!(outcome, Outcome::NoAnswer);
                    outcomes.lock().unwrap().push((i, outcome));
                    if done {
                        return; // the listener is closed: nothing more will be answered
                    }
                }
            })
        })
        .collect();
    wait_for("some acknowledged writes", Duration::from_secs(60), || {
        (acked_count.load(Ordering::Relaxed) >= 100).then_some(())
    });
    // SIGTERM with every writer mid-stream; the daemon must exit 0 (asserted by `stop`).
    d.stop();
    for w in writers {
        w.join().unwrap();
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let acked: Vec<usize> = outcomes
        .iter()
        .filter_map(|(i, o)| matches!(o, Outcome::Acked).then_some(*i))
        .collect();
    let no_answer = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::NoAnswer))
        .count();
    assert_eq!(
        no_answer, WRITERS,
        "each writer ends on a refused connection once the daemon is gone"
    );
    eprintln!(
        "{} puts: {} acknowledged, {} refused, {no_answer} unanswered",
        outcomes.len(),
        acked.len(),
        outcomes.len() - acked.len() - no_answer
    );
    for (i, o) in &outcomes {
        if let Outcome::Refused(status, body) = o {
            // An answer that is not a 200 must be an error the client can see, never a success.
            assert!(*status >= 400, "t-{i}: {status} {body}");
            let v: Value = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("t-{i}: {status} body not JSON ({e}): {body}"));
            assert!(v["error"].is_string(), "t-{i}: {status} {v}");
        }
    }

    let d = Daemon::start(&data, tmp.path());
    let (_, v) = d.json("GET", "/v1/status", None);
    assert_eq!(
        v["recovery"]["previous_holder_crashed"], false,
        "SIGTERM closed the store cleanly: {v}"
    );
    for &i in &acked {
        let (s, mut v) = d.json("GET", &format!("/v1/docs/t-{i}"), None);
        assert_eq!(
            s, 200,
            "acknowledged t-{i} missing after SIGTERM and restart"
        );
        v.as_object_mut().unwrap().remove("id");
        assert_eq!(v, doc(i), "t-{i} identical after SIGTERM and restart");
    }
    d.stop();
}

#[test]
fn a_non_loopback_daemon_needs_its_token_for_writes() {
    const TOKEN: &str = "a-test-token-0123456789";
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("medic.toml");
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"0.0.0.0:0\"\ntoken = \"{TOKEN}\"\n"),
    )
    .unwrap();
    let d = Daemon::start_with(&data, tmp.path(), &["--config", config.to_str().unwrap()]);
    let put = |token: Option<&str>, id: &str| {
        let mut req = d
            .agent
            .put(&format!("{}/v1/docs/{id}", d.url))
            .header("Content-Type", "application/json");
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req.send(doc(1).to_string()).unwrap();
        let status = resp.status().as_u16();
        let body: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        (status, body)
    };
    // The URL it leaves for commands given only --data is the loopback one.
    let advertised = std::fs::read_to_string(data.join("medic.url")).unwrap();
    assert_eq!(
        advertised.lines().next(),
        Some(d.url.as_str()),
        "{advertised}"
    );
    let (s, v) = put(None, "no-token");
    assert_eq!(s, 401, "{v}");
    assert!(v["error"].is_string(), "{v}");
    let (s, v) = put(Some("wrong-token-0123456789"), "wrong-token");
    assert_eq!(s, 401, "{v}");
    let (s, v) = put(Some(TOKEN), "with-token");
    assert_eq!(s, 200, "{v}");
    assert!(v["lsn"].as_u64().is_some(), "{v}");
    // Refused writes wrote nothing; reads need no token.
    let (s, _) = d.json("GET", "/v1/docs/no-token", None);
    assert_eq!(s, 404);
    let (s, _) = d.json("GET", "/v1/docs/wrong-token", None);
    assert_eq!(s, 404);
    let (s, _) = d.json("GET", "/v1/docs/with-token", None);
    assert_eq!(s, 200);
    let (s, v) = d.json("DELETE", "/v1/docs/with-token", None);
    assert_eq!(s, 401, "a delete needs the token too: {v}");
    d.stop();
}
