//! Operators in control, through the real `medic serve`: a repair above `engine.approval_risk_max` waits until an
//! operator approves it over HTTP or the CLI, is denied, acknowledged, resolved, reopened; every action is recorded
//! with who did it (the operator a token names, or `local`) in the knowledge base and shown with the incident;
//! wrong states are 409 naming the incident and its state; silences mute notifications and survive a restart;
//! an unacknowledged escalation is repeated until `medic ack`, and its resolution is notified.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Daemon, doc, medic, start_with_config, wait_for};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789ab";

/// Cycles every 200 ms; every repair needs approval.
const BASE: &str = "[checks]\nshallow_interval_ms = 200\n\n[engine]\napproval_risk_max = 0.0\n";

/// Writes 40 documents through a daemon, stops it and flips 64 bytes in the middle of the open WAL segment: the
/// next daemon finds the damage at open and must repair it from the mirror (risk 0.05).
fn damaged_store(data: &Path, logs: &Path, config: &str) {
    let d = start_with_config(data, logs, config);
    put_docs(&d);
    d.stop();
    damage_open_segment(data);
}

/// Writes the 40 documents `doc-0`..`doc-39` (`support::doc`), each acknowledged.
fn put_docs(d: &Daemon) {
    for i in 0..40 {
        let (s, _) = d.json("PUT", &format!("/v1/docs/doc-{i}"), Some(&doc(i)));
        assert_eq!(s, 200);
    }
}

/// Every one of the 40 documents of [`put_docs`] reads back exactly as written.
fn assert_docs_read_back(d: &Daemon) {
    for i in 0..40 {
        let (s, mut v) = d.json("GET", &format!("/v1/docs/doc-{i}"), None);
        assert_eq!(s, 200, "doc-{i}: {v}");
        v.as_object_mut().unwrap().remove("id");
        assert_eq!(v, doc(i), "doc-{i}");
    }
}

fn damage_open_segment(data: &Path) {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let seg = segs.pop().expect("a WAL segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xA5;
    }
    std::fs::write(&seg, &bytes).unwrap();
}

/// The one incident waiting for approval.
fn wait_pending(d: &Daemon) -> Value {
    wait_for(
        "an incident waiting for approval",
        Duration::from_secs(30),
        || {
            let (s, v) = d.json("GET", "/v1/approvals", None);
            assert_eq!(s, 200, "{v}");
            v["approvals"].as_array().unwrap().first().cloned()
        },
    )
}

/// `method path` with a bearer token (or none) and a JSON body (or none): status and JSON answer.
fn call(
    d: &Daemon,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", d.url);
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match method {
        "GET" => {
            let mut r = d.agent.get(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        "DELETE" => {
            let mut r = d.agent.delete(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        _ => {
            let mut r = d.agent.post(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            match body {
                Some(b) => r
                    .header("Content-Type", "application/json")
                    .send(b.to_string()),
                None => r.send_empty(),
            }
        }
    };
    let mut resp = resp.unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn last_json(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap_or(Value::Null)
}

/// The operators' actions recorded in the knowledge base: (incident, action, who, note).
fn kb_actions(data: &Path) -> Vec<(Option<i64>, String, String, String)> {
    let conn = rusqlite::Connection::open_with_flags(
        data.join("medic.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = conn
        .prepare("SELECT incident, action, who, note FROM operator_actions ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[test]
fn an_approved_repair_runs_and_the_approval_is_recorded_wrong_states_are_409() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    damaged_store(&data, tmp.path(), BASE);
    let d = start_with_config(&data, tmp.path(), BASE);
    let pending = wait_pending(&d);
    let id = pending["incident_id"].as_u64().unwrap();
    assert_eq!(
        pending["approve"],
        format!("medic approve {id}"),
        "{pending}"
    );
    assert!(
        pending["expires_at"].as_u64().unwrap() > pending["waiting_since"].as_u64().unwrap(),
        "{pending}"
    );
    // The start warned that every repair waits for approval.
    assert!(
        d.stderr()
            .contains("is below the risk of every repair strategy"),
        "{}",
        d.stderr()
    );
    // The report names commands, not functions; it stays waiting (no repair) until approved.
    let (_, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    assert_eq!(detail["status"], "awaiting_approval", "{detail}");
    let md = detail["report"]["markdown"].as_str().unwrap();
    assert!(
        md.contains(&format!("`medic approve {id}`")) && !md.contains("Engine::"),
        "{md}"
    );
    assert_eq!(detail["incident"]["attempts"], json!([]), "{detail}");

    // Bad requests: an unknown action, a missing note, a bad body, an unknown incident.
    let (s, v) = call(
        &d,
        "POST",
        &format!("/v1/incidents/{id}/frobnicate"),
        None,
        None,
    );
    assert_eq!(s, 404, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("approve, deny, ack"),
        "{v}"
    );
    let (s, v) = call(
        &d,
        "POST",
        &format!("/v1/incidents/{id}/annotate"),
        None,
        None,
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("needs a note"), "{v}");
    let (s, v) = call(
        &d,
        "POST",
        &format!("/v1/incidents/{id}/approve"),
        None,
        Some(json!({"note": 5})),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = call(&d, "POST", "/v1/incidents/99999/approve", None, None);
    assert_eq!(s, 404, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no incident with id 99999"),
        "{v}"
    );
    // Resolving an incident that waits: the wrong state is named, with the incident.
    let (s, v) = call(
        &d,
        "POST",
        &format!("/v1/incidents/{id}/reopen"),
        None,
        None,
    );
    assert_eq!(s, 409, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains(&format!("incident {id}")) && e.contains("awaiting approval"),
        "{e}"
    );

    // Approved over HTTP: repaired in the next cycles.
    let (s, v) = call(
        &d,
        "POST",
        &format!("/v1/incidents/{id}/approve"),
        None,
        Some(json!({"note": "the mirror is fine, go ahead"})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["action"]["who"], "local", "{v}");
    assert_eq!(v["action"]["action"], "approve", "{v}");
    let detail = wait_for("the approved repair", Duration::from_secs(30), || {
        let (_, v) = d.json("GET", &format!("/v1/incidents/{id}"), None);
        (v["incident"]["resolution"] == "auto_repaired").then_some(v)
    });
    assert!(
        detail["incident"]["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["outcome"] == "succeeded"),
        "{detail}"
    );
    let actions = detail["operators"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{detail}");
    assert_eq!(actions[0]["who"], "local");
    assert_eq!(actions[0]["note"], "the mirror is fine, go ahead");
    assert_eq!(
        kb_actions(&data),
        [(
            Some(id as i64),
            "approve".to_string(),
            "local".to_string(),
            "the mirror is fine, go ahead".to_string()
        )]
    );
    // Approving again: 409 naming the incident and how it closed.
    let (s, v) = call(
        &d,
        "POST",
        &format!("/v1/incidents/{id}/approve"),
        None,
        None,
    );
    assert_eq!(s, 409, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains(&format!("cannot approve incident {id}"))
            && e.contains("closed as auto_repaired"),
        "{e}"
    );
    let (_, v) = d.json("GET", "/v1/approvals", None);
    assert_eq!(v["approvals"], json!([]), "{v}");
    assert_docs_read_back(&d);
    d.stop();
}

#[test]
fn operators_named_by_their_tokens_deny_ack_resolve_and_reopen_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = format!("{BASE}\n[http.operators]\nalice = \"{ALICE}\"\nbob = \"{BOB}\"\n");
    damaged_store(&data, tmp.path(), &config);
    let d = start_with_config(&data, tmp.path(), &config);
    let id = wait_pending(&d)["incident_id"].as_u64().unwrap();
    let ids = id.to_string();

    // With operators configured an action needs a token; a wrong one is refused; reads stay open.
    let (s, v) = call(
        &d,
        "POST",
        &format!("/v1/incidents/{id}/approve"),
        None,
        None,
    );
    assert_eq!(s, 401, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("[http.operators]"),
        "{v}"
    );
    let (s, _) = call(
        &d,
        "POST",
        &format!("/v1/incidents/{id}/approve"),
        Some("not-a-token"),
        None,
    );
    assert_eq!(s, 401);

    // The CLI finds the daemon through the data directory.
    let (code, out, err) = medic(&data, &["approvals", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(last_json(&out)["approvals"][0]["incident_id"], id, "{out}");
    let (code, out, err) = medic(&data, &["approvals"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("medic approve {id}")), "{out}");

    let (code, out, err) = medic(
        &data,
        &[
            "deny",
            &ids,
            "--note",
            "not during the sale",
            "--token",
            BOB,
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v = last_json(&out);
    assert_eq!(v["action"]["who"], "bob", "{v}");
    assert_eq!(v["status"], "escalated", "{v}");
    assert_eq!(v["operators"]["acknowledged"]["by"], "bob", "{v}");
    // Denied: approving is now the wrong state (exit 2, the incident and its state named).
    let (code, _, err) = medic(&data, &["approve", &ids, "--token", ALICE]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("cannot approve incident {id}")) && err.contains("escalated"),
        "{err}"
    );
    let (code, out, err) = medic(&data, &["ack", &ids, "--token", ALICE]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("incident {id} acknowledged")) && out.contains("alice"),
        "{out}"
    );
    let (code, _, err) = medic(&data, &["resolve", &ids, "--token", ALICE]);
    assert_eq!(code, 2, "--note is required: {err}");
    let (code, out, err) = medic(
        &data,
        &[
            "resolve",
            &ids,
            "--note",
            "restored the segment by hand",
            "--token",
            ALICE,
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v = last_json(&out);
    assert_eq!(v["incident"]["resolution"], "resolved", "{v}");
    assert_eq!(v["status"], "closed", "{v}");
    let (code, out, err) = medic(
        &data,
        &["annotate", &ids, "--note", "see ticket 42", "--token", BOB],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("annotated"), "{out}");
    let (code, _, err) = medic(&data, &["reopen", &ids, "--token", ALICE]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = medic(&data, &["reopen", &ids, "--token", ALICE]);
    assert_eq!(code, 2, "reopening an open incident: {err}");
    assert!(err.contains(&format!("incident {id}")), "{err}");
    let (code, _, err) = medic(&data, &["ack", "99999", "--token", ALICE]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no incident with id 99999"), "{err}");

    // Every action, with who and the note, in the knowledge base and with the incident.
    let rows: Vec<(String, String, String)> = kb_actions(&data)
        .into_iter()
        .map(|(inc, a, w, n)| {
            assert_eq!(inc, Some(id as i64));
            (a, w, n)
        })
        .collect();
    let expect = |a: &str, w: &str, n: &str| (a.to_string(), w.to_string(), n.to_string());
    assert_eq!(
        rows,
        [
            expect("deny", "bob", "not during the sale"),
            expect("ack", "alice", ""),
            expect("resolve", "alice", "restored the segment by hand"),
            expect("annotate", "bob", "see ticket 42"),
            expect("reopen", "alice", ""),
        ]
    );
    let (_, v) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    assert_eq!(
        v["operators"]["actions"].as_array().unwrap().len(),
        5,
        "{v}"
    );
    // Reopened, it waits for approval again; alice approves and it is repaired.
    wait_for(
        "the reopened incident waits again",
        Duration::from_secs(30),
        || {
            let (_, v) = d.json("GET", &format!("/v1/incidents/{id}"), None);
            (v["status"] == "awaiting_approval").then_some(())
        },
    );
    let (code, out, err) = medic(&data, &["approve", &ids, "--token", ALICE]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("approved"), "{out}");
    wait_for("repaired after approval", Duration::from_secs(30), || {
        let (_, v) = d.json("GET", &format!("/v1/incidents/{id}"), None);
        (v["incident"]["resolution"] == "auto_repaired").then_some(())
    });

    // Breakers: an unknown strategy is 404, one without failures 409.
    let (code, _, err) = medic(&data, &["breaker", "reset", "no_such", "--token", ALICE]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no repair strategy named \"no_such\""),
        "{err}"
    );
    let (code, _, err) = medic(&data, &["breaker", "reset", "compact", "--token", ALICE]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nothing to reset"), "{err}");
    d.stop();

    // Without a daemon, operators' commands say so instead of opening the directory.
    let (code, _, err) = medic(&data, &["approvals"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no daemon holds"), "{err}");
}

fn rules_for(got: &Mutex<Vec<Value>>, id: u64) -> Vec<String> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|a| a["incident_id"] == id)
        .map(|a| a["rule"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_silence_survives_a_restart_mutes_reminders_until_it_ends_and_ack_stops_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (url, got) = support::alert_receiver();
    // Reminders every second; approvals never expire during the test.
    let config =
        format!("{BASE}renotify_interval_us = 1000000\n\n[notify]\nwebhook_url = \"{url}\"\n");
    let d = start_with_config(&data, tmp.path(), &config);
    put_docs(&d);
    // Silence the log's damage before it happens (a maintenance window), with the CLI.
    let (code, out, err) = medic(
        &data,
        &[
            "silence",
            "add",
            "--match",
            "resource=wal/*",
            "--for",
            "2h",
            "--comment",
            "disk swap",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let silence = last_json(&out)["silence"].clone();
    let sid = silence["id"].as_u64().unwrap();
    assert_eq!(silence["created_by"], "local", "{silence}");
    // Bad silences are refused, naming what is wrong.
    let (s, v) = call(
        &d,
        "POST",
        "/v1/silences",
        None,
        Some(json!({"matchers": ["colour=red"], "for": "1h", "comment": "x"})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("colour"), "{v}");
    let (s, v) = call(
        &d,
        "POST",
        "/v1/silences",
        None,
        Some(json!({"matchers": ["code=x"], "duration": "soon", "comment": "x"})),
    );
    assert_eq!(s, 400, "{v}");
    let (code, _, err) = medic(
        &data,
        &["silence", "add", "--match", "code", "--comment", "x"],
    );
    assert_eq!(code, 2, "{err}");
    d.stop();
    damage_open_segment(&data);

    // After a restart the silence still holds: the incident is recorded and waits, but nobody is told.
    let d = start_with_config(&data, tmp.path(), &config);
    let (_, v) = d.json("GET", "/v1/silences", None);
    assert_eq!(v["silences"][0]["id"], sid, "{v}");
    assert_eq!(v["silences"][0]["active"], true, "{v}");
    let id = wait_pending(&d)["incident_id"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(
        rules_for(&got, id),
        Vec::<String>::new(),
        "muted by the silence"
    );
    assert!(
        d.stderr()
            .contains(&format!("alert muted by silence {sid}")),
        "{}",
        d.stderr()
    );

    // The silence ends: the reminders reach the webhook, every second, until someone acknowledges.
    let (code, out, err) = medic(&data, &["silence", "expire", &sid.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("silence {sid} ended")), "{out}");
    let (s, v) = call(&d, "DELETE", "/v1/silences/99999", None, None);
    assert_eq!(s, 404, "{v}");
    wait_for("two reminders", Duration::from_secs(20), || {
        let r = rules_for(&got, id);
        (r.iter().filter(|r| *r == "escalation_repeat").count() >= 2).then_some(())
    });
    let (code, _, err) = medic(&data, &["ack", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_millis(300));
    let after_ack = rules_for(&got, id).len();
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(
        rules_for(&got, id).len(),
        after_ack,
        "{:?}",
        rules_for(&got, id)
    );
    // Resolved by hand: the webhook hears the end of it.
    let (code, _, err) = medic(
        &data,
        &["resolve", &id.to_string(), "--note", "mirror checked"],
    );
    assert_eq!(code, 0, "{err}");
    wait_for("the resolved notification", Duration::from_secs(20), || {
        rules_for(&got, id)
            .iter()
            .any(|r| r == "resolved")
            .then_some(())
    });
    let (_, v) = d.json("GET", "/v1/silences?all=true", None);
    assert_eq!(v["silences"][0]["active"], false, "{v}");
    assert_eq!(v["silences"][0]["expired_by"], "local", "{v}");
    d.stop();
}

/// A silence with `--no-repair` holds the automatic repair of what it matches across a restart: the damage found at
/// open is recorded and decided, every cycle deferred with the silence named, no file touched; `medic silence
/// expire` lifts it and the repair runs; every acknowledged document reads back byte for byte.
#[test]
fn a_silence_without_repair_holds_the_repair_until_it_is_expired() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = "[checks]\nshallow_interval_ms = 200\n";
    let d = start_with_config(&data, tmp.path(), config);
    put_docs(&d);
    let (code, out, err) = medic(
        &data,
        &[
            "silence",
            "add",
            "--match",
            "resource=wal/*",
            "--for",
            "2h",
            "--comment",
            "disk swap tonight, repair by hand",
            "--no-repair",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let silence = last_json(&out)["silence"].clone();
    let sid = silence["id"].as_u64().unwrap();
    assert_eq!(silence["repair"], false, "{silence}");
    d.stop();
    damage_open_segment(&data);

    let d = start_with_config(&data, tmp.path(), config);
    let held = incident_deciding(
        &d,
        "the repair held by the silence",
        &format!("held by silence {sid}"),
    );
    let id = held["id"].as_u64().unwrap();
    let segments_before = wal_bytes(&data);
    // Several cycles later it is still held, nothing was attempted and no WAL byte changed.
    std::thread::sleep(Duration::from_millis(1_500));
    let (_, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    assert_eq!(detail["status"], "deferred", "{detail}");
    assert_eq!(detail["incident"]["attempts"], json!([]), "{detail}");
    assert!(
        detail["incident"]["decision"]
            .as_str()
            .unwrap()
            .contains("`medic silence expire"),
        "{detail}"
    );
    assert_eq!(
        wal_bytes(&data),
        segments_before,
        "a held repair changes nothing"
    );

    let (code, out, err) = medic(&data, &["silence", "expire", &sid.to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for(
        "the repair once the silence ended",
        Duration::from_secs(30),
        || {
            let (_, v) = d.json("GET", &format!("/v1/incidents/{id}"), None);
            (v["incident"]["resolution"] == "auto_repaired").then_some(())
        },
    );
    assert_docs_read_back(&d);
}

/// The first incident whose decision contains `text`, waited for up to 30 s.
fn incident_deciding(d: &Daemon, what: &str, text: &str) -> Value {
    wait_for(what, Duration::from_secs(30), || {
        let (_, v) = d.json("GET", "/v1/incidents", None);
        v["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["decision"].as_str().is_some_and(|t| t.contains(text)))
            .cloned()
    })
}

/// Every WAL file's bytes, by name.
/// Each log file's bytes up to its last non-zero one: the zero-filled space past the open segment's records is
/// extended in the background and holds no data.
fn wal_bytes(data: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let mut bytes = std::fs::read(&p).unwrap();
            bytes.truncate(bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1));
            (p.file_name().unwrap().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    out.sort();
    out
}

/// A maintenance window open now holds repairs above its `risk_max` (the open-segment repair's risk is 0.05), with
/// the window, its end and the risk named in the decision, and nothing attempted. A window that does not parse stops `medic serve` at start, naming the entry.
#[test]
fn a_maintenance_window_holds_risky_repairs_while_it_is_open() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let plain = "[checks]\nshallow_interval_ms = 200\n";
    let window = format!(
        "{plain}\n[[maintenance]]\nname = \"always\"\ncron = \"* * * * *\"\nduration = \"1h\"\nrisk_max = 0.01\n"
    );
    damaged_store(&data, tmp.path(), plain);
    let d = start_with_config(&data, tmp.path(), &window);
    let held = incident_deciding(
        &d,
        "the repair held by the window",
        "maintenance window \"always\"",
    );
    let id = held["id"].as_u64().unwrap();
    let decision = held["decision"].as_str().unwrap();
    assert!(
        decision.contains("is above its risk_max 0.01 and waits"),
        "{decision}"
    );
    let (_, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    assert_eq!(detail["incident"]["attempts"], json!([]), "{detail}");
    d.stop();

    // The store restored the damaged records from the mirror when it opened (recovery is not held: the store
    // must open to serve); what waited is the engine's repair. Without the window every document reads back.
    let d = start_with_config(&data, tmp.path(), plain);
    assert_docs_read_back(&d);
    d.stop();

    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[maintenance]]\nname = \"backup\"\ncron = \"0 25 * * *\"\nduration = \"1h\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["serve", "--data"])
        .arg(tmp.path().join("other"))
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("maintenance[0] (\"backup\").cron = \"0 25 * * *\" is not a cron schedule"),
        "{err}"
    );
}
