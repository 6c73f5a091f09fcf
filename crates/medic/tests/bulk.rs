//! Bulk ingest against the real `medic serve`: `POST /v1/docs` with NDJSON and `medic load` through a daemon.
//! A bad line writes nothing and is named; duplicates and unknown fields are handled as documented; the body limit
//! is named; four concurrent bulk loads cut by SIGKILL lose no acknowledged document.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Daemon, agent, doc};

/// `doc(i)` as an NDJSON line with id `<prefix>-<i>`.
fn line(prefix: &str, i: usize) -> String {
    let mut v = doc(i);
    v["id"] = json!(format!("{prefix}-{i}"));
    format!("{v}\n")
}

fn post_ndjson(d: &Daemon, body: &str) -> (u16, Value) {
    d.post_ndjson("/v1/docs", body)
}

fn docs_count(d: &Daemon) -> u64 {
    let (_, st) = d.json("GET", "/v1/status", None);
    st["store"]["docs"].as_u64().unwrap()
}

fn read_back(d: &Daemon, prefix: &str, i: usize) -> Result<(), String> {
    let (s, _, text) = d.request("GET", &format!("/v1/docs/{prefix}-{i}"), None);
    if s != 200 {
        return Err(format!("{prefix}-{i}: {s} {text}"));
    }
    let mut v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    v.as_object_mut().unwrap().remove("id");
    if v == doc(i) {
        Ok(())
    } else {
        Err(format!("{prefix}-{i}: differs: {v}"))
    }
}

#[test]
fn a_bulk_body_is_written_whole_or_not_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), tmp.path());

    let body: String = (0..1000).map(|i| line("b", i)).collect();
    let (s, a) = post_ndjson(&d, &body);
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["written"], 1000, "{a}");
    assert_eq!(a["lines"], 1000, "{a}");
    let (first, last) = (
        a["first_lsn"].as_u64().unwrap(),
        a["last_lsn"].as_u64().unwrap(),
    );
    assert_eq!(last - first, 999, "{a}");
    for i in [0, 1, 499, 998, 999] {
        read_back(&d, "b", i).unwrap();
    }
    let n = docs_count(&d);

    // A bad line in the middle: 400 naming it, and not one document of the body written.
    let mut body: String = (0..600).map(|i| line("c", i)).collect();
    body.push_str("{\"id\":\"c-bad\",\"text\":42}\n");
    body.extend((600..700).map(|i| line("c", i)));
    let (s, a) = post_ndjson(&d, &body);
    assert_eq!(s, 400, "{a}");
    let msg = a["error"].as_str().unwrap();
    assert!(
        msg.contains("line 601") && msg.contains("nothing was written"),
        "{msg}"
    );
    assert_eq!(docs_count(&d), n, "a refused body wrote documents");
    let (s, _, _) = d.request("GET", "/v1/docs/c-0", None);
    assert_eq!(s, 404);

    // A vector of another dimension than the store's is named with its line.
    let body = format!(
        "{}{{\"id\":\"v\",\"text\":\"t\",\"vector\":[1,2]}}\n",
        line("c", 0)
    );
    let (s, a) = post_ndjson(&d, &body);
    assert_eq!(s, 400, "{a}");
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("line 2: vector has 2 dimensions, the store's vectors have 3"),
        "{a}"
    );

    // Unknown fields are ignored with a warning; an id given twice is written once, with its last line.
    let body = "{\"id\":\"u\",\"text\":\"first\",\"colour\":\"red\"}\n{\"id\":\"u\",\"text\":\"second\"}\n";
    let (s, a) = post_ndjson(&d, body);
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        (a["written"].as_u64(), a["duplicates"].as_u64()),
        (Some(1), Some(1)),
        "{a}"
    );
    assert!(
        a["warnings"][0].as_str().unwrap().contains("\"colour\""),
        "{a}"
    );
    let (_, u) = d.json("GET", "/v1/docs/u", None);
    assert_eq!(u["text"], "second");
    d.stop();
}

#[test]
fn the_bulk_body_limit_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("medic.toml");
    std::fs::write(
        &cfg,
        "[http]\nbulk_body_bytes_max = 4096\nbulk_docs_max = 3\n",
    )
    .unwrap();
    let d = Daemon::start_with(
        &tmp.path().join("data"),
        tmp.path(),
        &["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()],
    );
    let body: String = (0..100).map(|i| line("l", i)).collect();
    let (s, a) = post_ndjson(&d, &body);
    assert_eq!(s, 413, "{a}");
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("http.bulk_body_bytes_max = 4096"),
        "{a}"
    );
    let body: String = (0..4).map(|i| line("l", i)).collect();
    let (s, a) = post_ndjson(&d, &body);
    assert_eq!(s, 400, "{a}");
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("http.bulk_docs_max = 3"),
        "{a}"
    );
    // The single-document limit still holds for every other route.
    assert_eq!(docs_count(&d), 0);
    d.stop();
}

#[test]
fn a_wrong_dimension_in_a_collection_is_named_as_a_single_put_names_it_with_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), tmp.path());
    let (s, v) = d.json("PUT", "/v1/collections/c4", Some(&json!({"dimension": 3})));
    assert_eq!(s, 201, "{v}");
    let (s, put) = d.json(
        "PUT",
        "/v1/collections/c4/docs/one",
        Some(&json!({"text": "x", "vector": [1.0, 2.0]})),
    );
    assert_eq!(s, 400, "{put}");
    let put = put["error"].as_str().unwrap().to_string();
    assert!(
        put.contains("the collection \"c4\" holds vectors of 3"),
        "{put}"
    );
    let body = "{\"id\":\"a\",\"text\":\"x\",\"vector\":[1,2,3]}\n{\"id\":\"b\",\"text\":\"y\",\"vector\":[1,2]}\n";
    let (s, v) = d.post_ndjson("/v1/collections/c4/docs", body);
    assert_eq!(s, 400, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(
        e.starts_with("line 2: vector has 2 dimensions, the collection \"c4\" holds vectors of 3"),
        "{e}"
    );
    assert!(!e.contains("the store's"), "{e}");
    assert!(e.contains("nothing was written"), "{e}");
    d.stop();
}

/// A bulk body answered 200: its loader's id prefix and its document numbers.
type AckedBody = (String, Vec<usize>);

#[test]
fn four_concurrent_bulk_loads_cut_by_sigkill_lose_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = Daemon::start(&data, tmp.path());
    let stop = Arc::new(AtomicBool::new(false));
    // Per body answered 200: its loader's prefix and document numbers.
    let acked: Arc<Mutex<Vec<AckedBody>>> = Arc::default();
    let mut threads = Vec::new();
    for t in 0..4 {
        let (url, stop, acked) = (d.url.clone(), stop.clone(), acked.clone());
        threads.push(std::thread::spawn(move || {
            let agent = agent();
            let prefix = format!("k{t}");
            let mut next = 0usize;
            while !stop.load(Ordering::Relaxed) && next < 200_000 {
                let nums: Vec<usize> = (next..next + 200).collect();
                next += 200;
                let body: String = nums.iter().map(|&i| line(&prefix, i)).collect();
                let resp = agent
                    .post(format!("{url}/v1/docs"))
                    .header("Content-Type", "application/x-ndjson")
                    .send(body.as_bytes());
                match resp {
                    Ok(r) if r.status().as_u16() == 200 => {
                        acked.lock().unwrap().push((prefix.clone(), nums));
                    }
                    _ => break, // refused or cut: nothing more from this loader
                }
            }
        }));
    }
    support::wait_for("bulk loads under way", Duration::from_secs(60), || {
        (acked.lock().unwrap().len() >= 20).then_some(())
    });
    d.kill9();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let d = Daemon::start(&data, tmp.path());
    let acked = acked.lock().unwrap().clone();
    let total: usize = acked.iter().map(|(_, n)| n.len()).sum();
    let mut bad = Vec::new();
    for (prefix, nums) in &acked {
        for &i in nums {
            if let Err(e) = read_back(&d, prefix, i) {
                bad.push(e);
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {total} acknowledged documents missing or different after SIGKILL, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    eprintln!(
        "{total} documents acknowledged in {} bulk bodies, all read back",
        acked.len()
    );
    d.stop();
}

#[test]
fn medic_load_goes_through_the_daemon_and_reads_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = Daemon::start(&data, tmp.path());
    let file = tmp.path().join("docs.jsonl");
    let mut text: String = (0..700).map(|i| line("f", i)).collect();
    text.push_str("{\"id\":\"f-extra\",\"text\":\"x\",\"tags\":[1]}\n");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["load", "--server", &d.url, "--json"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("\"tags\" (first on line 701)"), "{stderr}");
    let last: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["written"], 701, "{last}");
    for i in [0, 350, 699] {
        read_back(&d, "f", i).unwrap();
    }

    // `-`: standard input, checked whole before anything is written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["load", "--server", &d.url, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let body: String = (0..300).map(|i| line("s", i)).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("loaded 300 documents from <stdin>"));
    read_back(&d, "s", 299).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["load", "--server", &d.url, "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let body = format!("{}not json\n", line("t", 0));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("<stdin>:2:") && stderr.contains("nothing was written"),
        "{stderr}"
    );
    let (s, _, _) = d.request("GET", "/v1/docs/t-0", None);
    assert_eq!(s, 404);
    d.stop();
}
