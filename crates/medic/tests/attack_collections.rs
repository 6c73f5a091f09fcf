//! Collections, bulk loads and the derived indexes attacked black-box through the real `medic serve`, the way a
//! careless operator or a failing machine would while it runs:
//!
//! - **bulk bodies at and past their limits** (`http.bulk_docs_max`, `http.bulk_body_bytes_max`), a bad line in the
//!   middle of a body, odd but maybe-valid lines (blank, CRLF, unknown fields), an id on several lines: what is
//!   acknowledged must be exactly what is stored, and a refused body must leave nothing;
//! - **bulk puts racing deletes of the same ids**, and **two bulks of different dimensions racing into a collection
//!   whose dimension is not fixed yet**: the newest acknowledged write (by LSN) wins, one dimension only;
//! - **a collection dropped and recreated with another dimension** while bulks load it and three other collections
//!   of other dimensions, SIGKILL mid-way: every acknowledged document of every collection is there byte for byte,
//!   nothing of a dropped incarnation leaks into the next (documents, counts, text and vector searches);
//! - **an index directory damaged while searches and writes run** (deleted, files truncated, overwritten with
//!   garbage, made immutable, replaced by a file, replaced by a symlink to another collection's index): every answer
//!   is correct or says it is degraded, the other collections keep answering correctly, the damaged one is rebuilt
//!   within a bound, and again after a SIGKILL and a restart;
//! - **filters, offsets and `k` at their edges** against a collection whose indexes are being rebuilt.
//!
//! Expected answers are computed here from the acknowledged documents: exact-term matches and totals for text,
//! nearest neighbours by brute force for vectors (a vector reads back in its shortest f32 form, so vectors are
//! compared as f32). Seeds are printed; `MEDIC_ATTACK_SEED=N` replays one.
//!
//! Seven tests broke the promise or a contract when this file was written; all are fixed and now regression
//! tests: two bulks of different dimensions both acknowledged into a new collection (the batch in flight was
//! invisible to the next write's validation); a recreated collection refusing vector searches of its new dimension
//! (its index caught up through the dropped incarnation); a file in place of a text index directory never rebuilt,
//! and a text index directory symlinked to another collection's stopping the daemon from starting (both now moved
//! aside and rebuilt); unflagged wrong text answers after text index files were truncated or overwritten under the
//! running daemon (the index now reads its segment files into memory, checked against their CRC32, and looks at
//! them on disk every 200 ms),
//! and a strong search answered 200 unflagged without an acknowledged document while the text index directory was
//! immutable (a failed persist now leaves the index behind). The soak
//! (more seeds, every damage kind) runs with
//! `MEDIC_ATTACK_ROUNDS=5 cargo test -p medic --test attack_collections -- --ignored soak`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Daemon, Rng, agent, wait_for};

// ---------------------------------------------------------------------------------------------------------------
// Seeds, randomness, configuration, HTTP.
// ---------------------------------------------------------------------------------------------------------------

fn seed(default: u64) -> u64 {
    support::attack_seed(default)
}

fn rounds(default: u64) -> u64 {
    support::attack_rounds(default)
}

/// A component exactly representable as f32 (a multiple of 1/256 in (0, 8]): it reads back bit for bit.
fn component(rng: &mut Rng) -> f64 {
    (1 + rng.below(2048)) as f64 / 256.0
}

/// Checks fast enough for a test: shallow every 100 ms, deep every 300 ms, repairs retried after a second.
const FAST: &str = "[checks]\nshallow_interval_ms = 100\ndeep_interval_ms = 300\n\
                    comprehensive_interval_ms = 1000\n\n[engine]\nescalated_recheck_us = 1000000\n\
                    strategy_cooldown_us = 1000000\n";

fn start(data: &Path, logs: &Path, extra_config: &str) -> Daemon {
    let path = logs.join("medic.toml");
    std::fs::write(&path, format!("{FAST}\n{extra_config}")).unwrap();
    Daemon::start_with(
        data,
        logs,
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            path.to_str().unwrap(),
        ],
    )
}

/// An answer: status, body (JSON when it parses, else `{"raw"}`), the `Medic-Lsn` header.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
    lsn: Option<u64>,
}

/// A client usable from any thread; `None` when the request got no answer at all.
#[derive(Clone)]
struct Client {
    url: String,
    agent: ureq::Agent,
}

impl Client {
    fn new(d: &Daemon) -> Client {
        Client {
            url: d.url.clone(),
            agent: agent(),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<(&str, String)>) -> Option<Answer> {
        let url = format!("{}{path}", self.url);
        let r = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            ("PUT", Some((ct, b))) => self.agent.put(&url).header("Content-Type", ct).send(b),
            ("POST", Some((ct, b))) => self.agent.post(&url).header("Content-Type", ct).send(b),
            _ => panic!("unsupported {method}"),
        };
        let mut resp = r.ok()?;
        let status = resp.status().as_u16();
        let lsn = resp
            .headers()
            .get("medic-lsn")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let text = resp.body_mut().read_to_string().ok()?;
        let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
        Some(Answer { status, body, lsn })
    }

    fn json(&self, method: &str, path: &str, body: &Value) -> Option<Answer> {
        self.call(method, path, Some(("application/json", body.to_string())))
    }

    fn get(&self, path: &str) -> Option<Answer> {
        self.call("GET", path, None)
    }

    fn bulk(&self, c: &str, body: String) -> Option<Answer> {
        self.call(
            "POST",
            &format!("/v1/collections/{c}/docs"),
            Some(("application/x-ndjson", body)),
        )
    }

    /// The document `id` of `c` as stored (without its `id`), or `None` for a 404; panics on anything else.
    fn doc(&self, c: &str, id: &str) -> (Option<Value>, Option<u64>) {
        let a = self
            .get(&format!("/v1/collections/{c}/docs/{id}"))
            .unwrap_or_else(|| panic!("GET {c}/{id}: no answer"));
        match a.status {
            200 => {
                let mut v = a.body;
                v.as_object_mut().unwrap().remove("id");
                (Some(as_f32(v)), a.lsn)
            }
            404 => (None, None),
            s => panic!("GET {c}/{id}: {s} {}", a.body),
        }
    }

    fn search(&self, c: &str, q: &Value) -> Option<Answer> {
        self.json("POST", &format!("/v1/collections/{c}/search"), q)
    }

    fn create(&self, c: &str, settings: &Value) -> Value {
        let a = self
            .json("PUT", &format!("/v1/collections/{c}"), settings)
            .unwrap();
        assert!(
            a.status == 200 || a.status == 201,
            "create {c}: {} {}",
            a.status,
            a.body
        );
        a.body
    }
}

/// A document with its vector's components as the f32 values they denote: a vector is stored as f32 and read
/// back in its shortest f32 form (`2.5585938` for the `2.55859375` put), the same f32 in other digits.
fn as_f32(mut doc: Value) -> Value {
    if let Some(v) = doc.get_mut("vector").and_then(Value::as_array_mut) {
        for x in v {
            if let Some(f) = x.as_f64() {
                *x = json!(f as f32 as f64);
            }
        }
    }
    doc
}

fn ndjson(docs: &[(String, Value)]) -> String {
    docs.iter()
        .map(|(id, d)| {
            let mut line = d.clone();
            line.as_object_mut().unwrap().insert("id".into(), json!(id));
            format!("{line}\n")
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Documents and what searches must answer about them.
// ---------------------------------------------------------------------------------------------------------------

const VOCAB: [&str; 5] = ["alpha", "bravo", "charlie", "delta", "echo"];

/// A document whose text holds a unique token (`u` + the id without its dashes), a seeded subset of `VOCAB` and
/// `extra`; a vector of `dim` positive components (none when `dim` is 0); meta `{"n", "tag"}`.
fn make_doc(rng: &mut Rng, id: &str, dim: usize, n: u64, extra: &str) -> Value {
    let mut words = vec![unique_token(id)];
    for w in VOCAB {
        if rng.below(3) == 0 {
            words.push(w.to_string());
        }
    }
    words.push(extra.to_string());
    let tag = ["red", "green", "blue"][(n % 3) as usize];
    let mut doc = json!({"text": words.join(" "), "meta": {"n": n, "tag": tag}});
    if dim > 0 {
        let v: Vec<f64> = (0..dim).map(|_| component(rng)).collect();
        doc["vector"] = json!(v);
    }
    doc
}

fn unique_token(id: &str) -> String {
    format!("u{}", id.replace(['-', '_'], "x"))
}

fn vector_of(doc: &Value) -> Option<Vec<f64>> {
    doc["vector"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_f64().unwrap()).collect())
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn has_word(doc: &Value, word: &str) -> bool {
    doc["text"].as_str().unwrap().split(' ').any(|w| w == word)
}

fn hits(v: &Value) -> Vec<(String, f64)> {
    v["hits"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| {
                    (
                        h["id"].as_str().unwrap_or("?").to_string(),
                        h["score"].as_f64().unwrap_or(f64::NAN),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn degraded(v: &Value) -> bool {
    v["degraded"] == true
}

/// What is wrong with a cosine vector answer `got` for `query` over `docs` (the documents the collection holds):
/// a hit that is not a document, a score that is not the document's, hits out of order or repeated, fewer hits
/// than `k` allows; with `exact`, scores that are not the true top-k's. `None` when it is right.
fn judge_vector(
    docs: &BTreeMap<String, Value>,
    query: &[f64],
    k: usize,
    exact: bool,
    got: &Value,
) -> Option<String> {
    let mut truth: Vec<(f64, &String)> = docs
        .iter()
        .filter_map(|(id, d)| vector_of(d).map(|v| (cosine(query, &v), id)))
        .collect();
    truth.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    let h = hits(got);
    if h.len() != k.min(truth.len()) {
        return Some(format!("{} hits, expected {}", h.len(), k.min(truth.len())));
    }
    let mut seen = BTreeSet::new();
    for (i, (id, score)) in h.iter().enumerate() {
        let Some(v) = docs.get(id).and_then(vector_of) else {
            return Some(format!("hit {i} {id:?} is no document of the collection"));
        };
        if !seen.insert(id) {
            return Some(format!("hit {i} {id:?} repeated"));
        }
        let true_score = cosine(query, &v);
        if (true_score - score).abs() > 1e-3 {
            return Some(format!(
                "hit {i} {id:?}: score {score}, its cosine is {true_score}"
            ));
        }
        if i > 0 && *score > h[i - 1].1 + 1e-6 {
            return Some(format!("hit {i} {id:?} out of order"));
        }
        if exact && (truth[i].0 - score).abs() > 1e-3 {
            return Some(format!(
                "hit {i} {id:?} scores {score}; the exact rank {i} is {} at {}",
                truth[i].1, truth[i].0
            ));
        }
    }
    None
}

/// What is wrong with a text answer for `word` over `docs` (the documents whose text must match are those with the
/// word): its total, a hit that does not match, fewer hits than `k` allows. `None` when it is right.
fn judge_text(docs: &BTreeMap<String, Value>, word: &str, k: usize, got: &Value) -> Option<String> {
    let matching: BTreeSet<&String> = docs
        .iter()
        .filter(|(_, d)| has_word(d, word))
        .map(|(id, _)| id)
        .collect();
    if got["total"].as_u64() != Some(matching.len() as u64) {
        return Some(format!(
            "total {} for {word:?}, expected {}",
            got["total"],
            matching.len()
        ));
    }
    let h = hits(got);
    if h.len() != k.min(matching.len()) {
        return Some(format!(
            "{} hits for {word:?}, expected {}",
            h.len(),
            k.min(matching.len())
        ));
    }
    let ids: BTreeSet<&String> = h.iter().map(|(id, _)| id).collect();
    if ids.len() != h.len() {
        return Some(format!("a hit repeated for {word:?}"));
    }
    if let Some(bad) = ids.iter().find(|id| !matching.contains(*id)) {
        return Some(format!("hit {bad:?} does not contain {word:?}"));
    }
    None
}

// ---------------------------------------------------------------------------------------------------------------
// Bulk bodies: limits, bad lines, odd lines, duplicates.
// ---------------------------------------------------------------------------------------------------------------

const BULK_DOCS_MAX: usize = 40;
const BULK_BYTES_MAX: usize = 8192;

/// Every document of `docs` reads back exactly (the last line of an id wins), or none does when `refused`.
fn assert_stored(cl: &Client, c: &str, docs: &[(String, Value)], refused: bool, what: &str) {
    let mut last: BTreeMap<&String, &Value> = BTreeMap::new();
    for (id, d) in docs {
        last.insert(id, d);
    }
    for (id, d) in last {
        let (got, _) = cl.doc(c, id);
        if refused {
            assert_eq!(got, None, "{what}: refused, yet {id} was written");
        } else {
            assert_eq!(
                got.as_ref(),
                Some(d),
                "{what}: {id} acknowledged, reads back otherwise"
            );
        }
    }
}

/// True when `msg` names `n` as a number of its own (the line number of a refused body).
fn names_number(msg: &str, n: usize) -> bool {
    msg.split(|c: char| !c.is_ascii_digit())
        .any(|t| t == n.to_string())
}

fn docs_for(rng: &mut Rng, prefix: &str, count: usize, dim: usize) -> Vec<(String, Value)> {
    (0..count)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            let d = make_doc(rng, &id, dim, i as u64, "bulk");
            (id, d)
        })
        .collect()
}

/// The limits: `bulk_docs_max` documents is accepted, one more is refused whole; a body of exactly
/// `bulk_body_bytes_max` bytes is accepted, one byte more is a 413 and writes nothing.
fn bulk_limits(cl: &Client, rng: &mut Rng) -> usize {
    let at = docs_for(rng, "lim-a", BULK_DOCS_MAX, 3);
    let a = cl.bulk("bk", ndjson(&at)).unwrap();
    assert_eq!(
        a.status, 200,
        "{BULK_DOCS_MAX} documents (the limit): {}",
        a.body
    );
    assert_eq!(a.body["written"], BULK_DOCS_MAX, "{}", a.body);
    assert_stored(cl, "bk", &at, false, "bulk_docs_max documents");
    let over = docs_for(rng, "lim-b", BULK_DOCS_MAX + 1, 3);
    let a = cl.bulk("bk", ndjson(&over)).unwrap();
    assert!(
        (400..500).contains(&a.status),
        "one document over the limit: {} {}",
        a.status,
        a.body
    );
    assert_stored(cl, "bk", &over, true, "bulk_docs_max + 1 documents");
    for (extra, expect_ok) in [(0usize, true), (1, false)] {
        let prefix = format!("lim-c{extra}");
        let mut docs = docs_for(rng, &prefix, 10, 3);
        let size = ndjson(&docs).len();
        let pad = BULK_BYTES_MAX + extra - size;
        let last = docs.last_mut().unwrap();
        let text = format!(
            "{} {}",
            last.1["text"].as_str().unwrap(),
            "p".repeat(pad - 1)
        );
        last.1["text"] = json!(text);
        let body = ndjson(&docs);
        assert_eq!(body.len(), BULK_BYTES_MAX + extra);
        let a = cl.bulk("bk", body).unwrap();
        if expect_ok {
            assert_eq!(
                a.status, 200,
                "a body of exactly bulk_body_bytes_max: {}",
                a.body
            );
        } else {
            assert_eq!(
                a.status, 413,
                "a body one byte over bulk_body_bytes_max: {}",
                a.body
            );
        }
        assert_stored(
            cl,
            "bk",
            &docs,
            !expect_ok,
            &format!("body of limit + {extra} bytes"),
        );
    }
    BULK_DOCS_MAX + 10
}

/// A line that is certainly bad, in the middle of a body: a 400 naming its line number, nothing written.
fn bulk_bad_lines(cl: &Client, rng: &mut Rng) {
    let bad: [(&str, String); 7] = [
        ("truncated JSON", r#"{"id": "x", "text": "#.to_string()),
        ("no id", r#"{"text": "no id here"}"#.to_string()),
        ("empty id", r#"{"id": "", "text": "empty"}"#.to_string()),
        (
            "id over 256 bytes",
            json!({"id": "i".repeat(257), "text": "long"}).to_string(),
        ),
        (
            "wrong dimension",
            r#"{"id": "wd", "text": "t", "vector": [1.0, 2.0]}"#.to_string(),
        ),
        (
            "string in vector",
            r#"{"id": "sv", "text": "t", "vector": [1.0, "2", 3.0]}"#.to_string(),
        ),
        ("a JSON array", r#"["id", "text"]"#.to_string()),
    ];
    for (round, (what, line)) in bad.iter().enumerate() {
        let docs = docs_for(rng, &format!("bad{round}"), 12, 3);
        let at = 1 + rng.below(10) as usize;
        let mut lines: Vec<String> = ndjson(&docs).lines().map(str::to_string).collect();
        lines.insert(at, line.clone());
        let body = lines.join("\n") + "\n";
        let a = cl.bulk("bk", body).unwrap();
        let msg = a.body["error"].as_str().unwrap_or("").to_string();
        assert_eq!(a.status, 400, "{what} on line {}: {}", at + 1, a.body);
        assert!(
            names_number(&msg, at + 1),
            "{what}: the error names line {}: {msg}",
            at + 1
        );
        assert_stored(cl, "bk", &docs, true, what);
    }
}

/// Lines that may or may not be accepted (blank lines, CRLF, unknown fields, a body without its last newline,
/// several lines of one id, a zero vector): when acknowledged, exactly what the lines say is stored (the last line
/// of an id). Returns the documents stored.
fn bulk_odd_lines(cl: &Client, rng: &mut Rng) -> usize {
    let mut stored = 0;
    for variant in 0..6 {
        let mut docs = docs_for(rng, &format!("odd{variant}"), 8, 3);
        let mut body = ndjson(&docs);
        match variant {
            0 => body = body.replacen('\n', "\n\n", 3),
            1 => body = body.replace('\n', "\r\n"),
            2 => {
                let with = r#"{"id": "odd2-x", "text": "extra field", "colour": "red"}"#;
                body.push_str(with);
                body.push('\n');
                docs.push(("odd2-x".into(), json!({"text": "extra field"})));
            }
            3 => {
                body.pop();
            }
            4 => {
                let id = docs[2].0.clone();
                for k in 0..3 {
                    let d = make_doc(rng, &id, 3, 100 + k, &format!("version{k}"));
                    docs.push((id.clone(), d));
                }
                body = ndjson(&docs);
            }
            _ => {
                docs[5].1["vector"] = json!([0.0, 0.0, 0.0]);
                body = ndjson(&docs);
            }
        }
        let a = cl.bulk("bk", body).unwrap();
        assert!(
            a.status == 200 || a.status == 400,
            "odd body {variant}: {} {}",
            a.status,
            a.body
        );
        let distinct: BTreeSet<&String> = docs.iter().map(|(id, _)| id).collect();
        if a.status == 200 {
            assert_eq!(
                a.body["written"],
                distinct.len(),
                "odd body {variant}: {}",
                a.body
            );
            stored += distinct.len();
        }
        eprintln!("  odd body {variant}: {} {}", a.status, a.body);
        assert_stored(
            cl,
            "bk",
            &docs,
            a.status != 200,
            &format!("odd body {variant}: {}", a.body),
        );
    }
    stored
}

#[test]
fn bulk_bodies_at_and_past_their_limits_store_exactly_what_is_acknowledged() {
    let seed = seed(0xB01C_ED6E);
    eprintln!("bulk edges: seed={seed} (replay: MEDIC_ATTACK_SEED={seed})");
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let extra = format!(
        "[http]\nbulk_docs_max = {BULK_DOCS_MAX}\nbulk_body_bytes_max = {BULK_BYTES_MAX}\n"
    );
    let d = start(&tmp.path().join("data"), tmp.path(), &extra);
    let cl = Client::new(&d);
    cl.create("bk", &json!({"dimension": 3}));
    let mut expected = bulk_limits(&cl, &mut rng);
    bulk_bad_lines(&cl, &mut rng);
    expected += bulk_odd_lines(&cl, &mut rng);
    // After all of it, the collection holds exactly the documents acknowledged, and its text index agrees.
    let (_, v) = d.json("GET", "/v1/collections/bk", None);
    assert_eq!(v["documents"], expected, "documents of bk: {v}");
    let q = json!({"text": "*", "k": 1, "consistency": "strong", "timeout_ms": 10_000});
    let a = cl.search("bk", &q).unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["total"], expected,
        "every document matches *: {}",
        a.body
    );
    d.stop();
}

// ---------------------------------------------------------------------------------------------------------------
// Races on the same ids, and on a collection's first dimension.
// ---------------------------------------------------------------------------------------------------------------

/// One acknowledged write of an id: a put of `doc` somewhere in `first..=last` (a bulk's LSN range), or a delete
/// at `first == last`.
#[derive(Debug, Clone)]
struct Acked {
    first: u64,
    last: u64,
    doc: Option<Value>,
}

/// Judges the state an id reads back as against its acknowledged writes: a document must be the content of an
/// acknowledged put whose LSN range holds its `Medic-Lsn`, newer than every acknowledged delete and than the start
/// of every other acknowledged put; a 404 needs an acknowledged delete newer than the start of every put.
fn judge_races(id: &str, writes: &[Acked], got: &(Option<Value>, Option<u64>)) -> Option<String> {
    let deletes = writes.iter().filter(|w| w.doc.is_none());
    let puts: Vec<&Acked> = writes.iter().filter(|w| w.doc.is_some()).collect();
    let newest_delete = deletes.map(|w| w.first).max();
    let newest_put_start = puts.iter().map(|w| w.first).max();
    match got {
        (None, _) => match (newest_delete, newest_put_start) {
            (_, None) => None,
            (Some(del), Some(put)) if del > put => None,
            _ => Some(format!(
                "{id}: 404, but a put was acknowledged after every delete"
            )),
        },
        (Some(doc), lsn) => {
            let lsn = lsn.unwrap_or(0);
            let from = puts
                .iter()
                .find(|w| w.doc.as_ref() == Some(doc) && (w.first..=w.last).contains(&lsn));
            if from.is_none() {
                return Some(format!("{id}: {doc} at LSN {lsn} is no acknowledged put's"));
            }
            if newest_delete.is_some_and(|d| d > lsn) {
                return Some(format!(
                    "{id}: a delete acknowledged after LSN {lsn} is lost"
                ));
            }
            if puts.iter().any(|w| w.first > lsn) {
                return Some(format!("{id}: a put acknowledged after LSN {lsn} is lost"));
            }
            None
        }
    }
}

/// Bulk bodies putting a small set of ids over and over while other threads delete and put the same ids one by
/// one; every acknowledged write is recorded with its LSN.
fn race_same_ids(
    cl: &Client,
    seed: u64,
    ids: &[String],
    millis: u64,
) -> BTreeMap<String, Vec<Acked>> {
    let acked: Arc<Mutex<BTreeMap<String, Vec<Acked>>>> = Arc::default();
    let end = Instant::now() + Duration::from_millis(millis);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (cl, acked, ids) = (cl.clone(), acked.clone(), ids.to_vec());
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (t + 1));
                let mut version = 0;
                while Instant::now() < end {
                    version += 1;
                    race_step(&cl, &mut rng, t, version, &ids, &acked);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

fn race_step(
    cl: &Client,
    rng: &mut Rng,
    t: u64,
    version: u64,
    ids: &[String],
    acked: &Mutex<BTreeMap<String, Vec<Acked>>>,
) {
    let id = &ids[rng.below(ids.len() as u64) as usize];
    if t < 2 {
        // A bulk body of several ids, one of them possibly on several lines.
        let mut docs = Vec::new();
        for k in 0..(2 + rng.below(6)) {
            let id = &ids[rng.below(ids.len() as u64) as usize];
            docs.push((
                id.clone(),
                make_doc(rng, id, 3, k, &format!("t{t}v{version}k{k}")),
            ));
        }
        let Some(a) = cl.bulk("race", ndjson(&docs)) else {
            return;
        };
        assert_eq!(a.status, 200, "bulk: {}", a.body);
        let (first, last) = (
            a.body["first_lsn"].as_u64().unwrap(),
            a.body["last_lsn"].as_u64().unwrap(),
        );
        let mut last_of: BTreeMap<&String, &Value> = BTreeMap::new();
        for (id, d) in &docs {
            last_of.insert(id, d);
        }
        let mut m = acked.lock().unwrap();
        for (id, d) in last_of {
            let doc = Some(d.clone());
            m.entry(id.clone())
                .or_default()
                .push(Acked { first, last, doc });
        }
    } else if rng.below(2) == 0 {
        let Some(a) = cl.call("DELETE", &format!("/v1/collections/race/docs/{id}"), None) else {
            return;
        };
        assert!(
            a.status == 200 || a.status == 404,
            "delete: {} {}",
            a.status,
            a.body
        );
        if a.status == 200 {
            let lsn = a.body["lsn"].as_u64().expect("a delete names its LSN");
            let w = Acked {
                first: lsn,
                last: lsn,
                doc: None,
            };
            acked.lock().unwrap().entry(id.clone()).or_default().push(w);
        }
    } else {
        let d = make_doc(rng, id, 3, version, &format!("single{t}v{version}"));
        let Some(a) = cl.json("PUT", &format!("/v1/collections/race/docs/{id}"), &d) else {
            return;
        };
        assert_eq!(a.status, 200, "put: {}", a.body);
        let lsn = a.body["lsn"].as_u64().unwrap();
        let w = Acked {
            first: lsn,
            last: lsn,
            doc: Some(d),
        };
        acked.lock().unwrap().entry(id.clone()).or_default().push(w);
    }
}

fn judge_all_races(cl: &Client, acked: &BTreeMap<String, Vec<Acked>>, what: &str) -> usize {
    let mut present = 0;
    let mut bad = Vec::new();
    for (id, writes) in acked {
        let got = cl.doc("race", id);
        present += usize::from(got.0.is_some());
        bad.extend(judge_races(id, writes, &got));
    }
    assert!(
        bad.is_empty(),
        "{what}: {} ids wrong, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(8)]
    );
    present
}

#[test]
fn bulk_puts_racing_deletes_of_the_same_ids_keep_the_newest_acknowledged_write() {
    let seed = seed(0x5A3_E1D5);
    eprintln!("same-id races: seed={seed} (replay: MEDIC_ATTACK_SEED={seed})");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = start(&data, tmp.path(), "");
    let cl = Client::new(&d);
    cl.create("race", &json!({"dimension": 3}));
    let ids: Vec<String> = (0..12).map(|i| format!("r-{i}")).collect();
    let acked = race_same_ids(&cl, seed, &ids, 3000);
    let writes: usize = acked.values().map(Vec::len).sum();
    let present = judge_all_races(&cl, &acked, "while running");
    eprintln!(
        "  {writes} acknowledged writes over {} ids; {present} present",
        acked.len()
    );
    // The count and the text index agree with the documents.
    let (_, v) = d.json("GET", "/v1/collections/race", None);
    assert_eq!(v["documents"], present, "{v}");
    let q = json!({"text": "*", "k": 1000, "consistency": "strong", "timeout_ms": 10_000});
    let a = cl.search("race", &q).unwrap();
    assert_eq!(a.body["total"], present, "{}", a.body);
    d.kill9();
    let d = start(&data, tmp.path(), "");
    let cl = Client::new(&d);
    judge_all_races(&cl, &acked, "after SIGKILL and a restart");
    let a = cl.search("race", &q).unwrap();
    assert_eq!(a.body["total"], present, "after the restart: {}", a.body);
    d.stop();
}

/// Two bulk bodies of different dimensions sent at once into a collection whose dimension no vector fixed yet:
/// at most one may be acknowledged, and every stored vector has the dimension the collection then states.
fn first_dimension_race(cl: &Client, rng: &mut Rng, round: u64) {
    let c = format!("dim{round}");
    cl.create(&c, &json!({}));
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let bodies: Vec<(usize, Vec<(String, Value)>)> = [3usize, 5]
        .iter()
        .map(|&dim| {
            let count = 30 + rng.below(90) as usize;
            (dim, docs_for(rng, &format!("d{dim}r{round}"), count, dim))
        })
        .collect();
    let answers: Vec<(usize, Answer)> = std::thread::scope(|s| {
        let hs: Vec<_> = bodies
            .iter()
            .map(|(dim, docs)| {
                let (cl, c, barrier) = (cl.clone(), c.clone(), barrier.clone());
                s.spawn(move || {
                    let body = ndjson(docs);
                    barrier.wait();
                    (*dim, cl.bulk(&c, body).unwrap())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok: Vec<usize> = answers
        .iter()
        .filter(|(_, a)| a.status == 200)
        .map(|(d, _)| *d)
        .collect();
    for (dim, a) in &answers {
        assert!(
            a.status == 200 || a.status == 400,
            "dimension {dim} into {c}: {} {}",
            a.status,
            a.body
        );
    }
    let desc = cl.get(&format!("/v1/collections/{c}")).unwrap().body;
    let stated = desc["settings"]["dimension"].as_u64();
    for (dim, docs) in &bodies {
        let acked = ok.contains(dim);
        for (id, doc) in docs {
            let (got, _) = cl.doc(&c, id);
            if acked {
                assert_eq!(
                    got.as_ref(),
                    Some(doc),
                    "{c}: {id} acknowledged (dimension {dim})"
                );
            } else {
                assert_eq!(
                    got, None,
                    "{c}: {id} of a refused body (dimension {dim}) was written"
                );
            }
        }
    }
    assert!(
        ok.len() <= 1,
        "{c}: bodies of dimensions {ok:?} both acknowledged into one collection; it states {stated:?}: {desc}"
    );
    if let Some(dim) = ok.first() {
        assert_eq!(stated, Some(*dim as u64), "{c}: {desc}");
    }
}

#[test]
fn bulks_of_two_dimensions_racing_into_a_new_collection_never_mix_dimensions() {
    let seed = seed(0xD13E_4510);
    eprintln!("first-dimension race: seed={seed} (replay: MEDIC_ATTACK_SEED={seed})");
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let d = start(&tmp.path().join("data"), tmp.path(), "");
    let cl = Client::new(&d);
    for round in 0..8 {
        first_dimension_race(&cl, &mut rng, round);
    }
    d.stop();
}

// ---------------------------------------------------------------------------------------------------------------
// A collection dropped and recreated with another dimension under concurrent bulks, then SIGKILL.
// ---------------------------------------------------------------------------------------------------------------

/// One bulk body sent: into which collection, with what dimension, when, and its answer's status (`None`: no
/// answer).
#[derive(Debug, Clone)]
struct Sent {
    c: String,
    docs: Vec<(String, Value)>,
    began: Instant,
    ended: Instant,
    status: Option<u16>,
}

/// One drop (`dim` `None`) or create of the victim collection, and its answer's status.
#[derive(Debug, Clone)]
struct Life {
    dim: Option<usize>,
    began: Instant,
    ended: Instant,
    status: Option<u16>,
}

fn loader(cl: Client, c: String, dim: usize, seed: u64, stop: Arc<AtomicBool>) -> Vec<Sent> {
    let mut rng = Rng::new(seed);
    let mut sent = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) && n < 400 {
        // The racer into the victim picks either of its dimensions; the others keep theirs.
        let dim = if dim == 0 {
            [4, 6][rng.below(2) as usize]
        } else {
            dim
        };
        let count = 5 + rng.below(36) as usize;
        let docs: Vec<(String, Value)> = (0..count)
            .map(|i| {
                let id = format!("{c}-{n}-{i}");
                let d = make_doc(&mut rng, &id, dim, i as u64, &format!("dim{dim}"));
                (id, d)
            })
            .collect();
        n += 1;
        let began = Instant::now();
        let status = cl.bulk(&c, ndjson(&docs)).map(|a| a.status);
        sent.push(Sent {
            c: c.clone(),
            docs,
            began,
            ended: Instant::now(),
            status,
        });
        if status.is_none() {
            break;
        }
    }
    sent
}

fn victim(cl: Client, seed: u64, stop: Arc<AtomicBool>) -> Vec<Life> {
    let mut rng = Rng::new(seed);
    let mut lives = Vec::new();
    let mut dim = 4;
    while !stop.load(Ordering::Relaxed) {
        // Load shaping only: the drop lands on a collection the racer has filled for a while.
        std::thread::sleep(Duration::from_millis(100 + rng.below(300)));
        let began = Instant::now();
        let a = cl.call("DELETE", "/v1/collections/vic", None);
        let status = a.as_ref().map(|a| a.status);
        lives.push(Life {
            dim: None,
            began,
            ended: Instant::now(),
            status,
        });
        if a.is_none() {
            break;
        }
        assert!(status == Some(200) || status == Some(503), "drop: {a:?}");
        // A drop answered 503 goes on: wait until it is gone before the next create.
        while cl
            .get("/v1/collections/vic")
            .is_some_and(|a| a.status == 200)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        dim = 10 - dim;
        let began = Instant::now();
        let a = cl.json("PUT", "/v1/collections/vic", &json!({"dimension": dim}));
        let status = a.as_ref().map(|a| a.status);
        lives.push(Life {
            dim: Some(dim),
            began,
            ended: Instant::now(),
            status,
        });
        if a.is_none() {
            break;
        }
        assert_eq!(status, Some(201), "create: {a:?}");
    }
    lives
}

/// What the victim may be after the restart, as its lives allow: the dimensions it may have (`None`: gone), and
/// when its present incarnation began (every bulk acknowledged into it that began later must be there).
fn victim_expected(lives: &[Life], first: Instant) -> (Vec<Option<usize>>, Instant) {
    let created = |before: usize| {
        lives[..before]
            .iter()
            .rev()
            .find(|l| l.dim.is_some())
            .map_or((4, first), |l| (l.dim.unwrap(), l.ended))
    };
    let Some(last) = lives.last() else {
        return (vec![Some(4)], first);
    };
    match (last.dim, last.status) {
        (Some(dim), Some(_)) => (vec![Some(dim)], last.ended),
        (Some(dim), None) => (vec![None, Some(dim)], last.began),
        (None, Some(200)) => (vec![None], last.ended),
        (None, _) => {
            let (dim, began) = created(lives.len() - 1);
            (vec![None, Some(dim)], began)
        }
    }
}

/// Every acknowledged body of `sent` reads back exactly, every refused one (4xx) left nothing, every unanswered
/// one is there or not document by document: the documents present.
fn check_loaded(
    cl: &Client,
    c: &str,
    sent: &[Sent],
    bad: &mut Vec<String>,
) -> BTreeMap<String, Value> {
    let mut present = BTreeMap::new();
    for s in sent {
        for (id, doc) in &s.docs {
            let (got, _) = cl.doc(c, id);
            match (s.status, &got) {
                (Some(200), None) => bad.push(format!("{c}/{id}: acknowledged, missing")),
                (Some(400..500), Some(_)) => {
                    bad.push(format!("{c}/{id}: refused {:?}, yet written", s.status))
                }
                (_, Some(g)) if g != doc => {
                    bad.push(format!("{c}/{id}: reads back as {g}, put {doc}"))
                }
                _ => {}
            }
            if let Some(g) = got {
                present.insert(id.clone(), g);
            }
        }
    }
    present
}

fn strong(q: Value) -> Value {
    let mut q = q;
    q["consistency"] = json!("strong");
    q["timeout_ms"] = json!(10_000);
    q
}

/// The collection's count, text and vector searches agree with `present` (its documents): totals and matches of
/// vocabulary words, each sampled document found by its unique token, exact nearest neighbours by brute force.
fn check_searches(
    cl: &Client,
    c: &str,
    dim: usize,
    present: &BTreeMap<String, Value>,
    rng: &mut Rng,
) {
    let desc = cl.get(&format!("/v1/collections/{c}")).unwrap().body;
    assert_eq!(
        desc["documents"],
        present.len(),
        "{c}: documents counted: {desc}"
    );
    let q = strong(json!({"text": "*", "k": 1}));
    let a = wait_for(
        &format!("a strong search of {c}"),
        Duration::from_secs(60),
        || cl.search(c, &q).filter(|a| a.status == 200),
    );
    assert_eq!(
        a.body["total"],
        present.len(),
        "{c}: every document matches *: {}",
        a.body
    );
    for word in [VOCAB[rng.below(5) as usize], VOCAB[rng.below(5) as usize]] {
        let a = cl
            .search(c, &strong(json!({"text": word, "k": 1000})))
            .unwrap();
        assert_eq!(a.status, 200, "{c}: {}", a.body);
        assert_eq!(
            judge_text(present, word, 1000, &a.body),
            None,
            "{c}: {word}: {}",
            a.body
        );
    }
    let ids: Vec<&String> = present.keys().collect();
    for _ in 0..3.min(ids.len()) {
        let id = ids[rng.below(ids.len() as u64) as usize];
        let a = cl
            .search(c, &strong(json!({"text": unique_token(id), "k": 5})))
            .unwrap();
        assert_eq!(
            hits(&a.body).first().map(|h| &h.0),
            Some(id),
            "{c}: {id} by its token: {}",
            a.body
        );
        assert_eq!(a.body["total"], 1, "{c}: {id} by its token: {}", a.body);
    }
    if dim == 0 || present.is_empty() {
        return;
    }
    for _ in 0..3 {
        let query: Vec<f64> = (0..dim).map(|_| component(rng)).collect();
        for exact in [true, false] {
            let a = cl
                .search(
                    c,
                    &strong(json!({"vector": query, "k": 10, "exact": exact})),
                )
                .unwrap();
            assert_eq!(a.status, 200, "{c}: {}", a.body);
            let wrong = judge_vector(present, &query, 10, exact, &a.body);
            assert_eq!(
                wrong, None,
                "{c}: vector search (exact {exact}) for {query:?}: {}",
                a.body
            );
        }
    }
}

/// The victim after the restart: the state its lives allow, every document present of its dimension and put so,
/// nothing of a body acknowledged before an acknowledged drop, every body acknowledged into the present
/// incarnation there; then its count and searches.
fn check_victim(
    cl: &Client,
    racer: &[Sent],
    lives: &[Life],
    first: Instant,
    rng: &mut Rng,
) -> Option<usize> {
    let desc = wait_for("the victim ready or gone", Duration::from_secs(60), || {
        let a = cl.get("/v1/collections/vic")?;
        (a.status == 404 || a.body["state"] == "ready").then_some(a)
    });
    let (allowed, incarnation) = victim_expected(lives, first);
    let dim = desc.body["settings"]["dimension"]
        .as_u64()
        .map(|d| d as usize);
    let dim = (desc.status == 200).then_some(dim.unwrap_or(0));
    assert!(
        allowed.contains(&dim),
        "victim is {dim:?}, its lives allow {allowed:?}: {}",
        desc.body
    );
    let dim = dim?;
    let drops: Vec<&Life> = lives
        .iter()
        .filter(|l| l.dim.is_none() && l.status == Some(200))
        .collect();
    let mut bad = Vec::new();
    let mut present = BTreeMap::new();
    for s in racer {
        let acked = s.status == Some(200);
        let dropped_after = acked && drops.iter().any(|d| s.ended < d.began);
        for (id, doc) in &s.docs {
            match cl.doc("vic", id).0 {
                Some(g) => {
                    if &g != doc || vector_of(&g).map(|v| v.len()) != Some(dim) {
                        bad.push(format!("vic/{id}: {g}, put {doc} (dimension now {dim})"));
                    } else if dropped_after || matches!(s.status, Some(400..500)) {
                        bad.push(format!(
                            "vic/{id}: of a dropped incarnation or refused ({:?}), leaked",
                            s.status
                        ));
                    }
                    present.insert(id.clone(), g);
                }
                None if acked && s.began > incarnation => {
                    bad.push(format!("vic/{id}: acknowledged, missing"))
                }
                None => {}
            }
        }
    }
    assert!(
        bad.is_empty(),
        "victim: {} wrong, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(8)]
    );
    // Text and counts only: a recreated collection's vector searches are refused with the dropped incarnation's
    // dimension, even after a restart (the ignored test
    // `a_collection_recreated_with_another_dimension_searches_in_its_new_dimension`).
    check_searches(cl, "vic", 0, &present, rng);
    Some(present.len())
}

#[test]
fn a_collection_dropped_and_recreated_under_bulk_loads_then_sigkilled_leaks_nothing_and_loses_nothing()
 {
    let seed = seed(0xD09C_0113);
    eprintln!("drop and recreate: seed={seed} (replay: MEDIC_ATTACK_SEED={seed})");
    drop_recreate_round(seed);
}

fn drop_recreate_round(seed: u64) {
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = start(&data, tmp.path(), "");
    let cl = Client::new(&d);
    let sets = [
        ("c3", 3, json!({"dimension": 3})),
        (
            "c5",
            5,
            json!({"dimension": 5, "index": "flat", "metric": "cosine"}),
        ),
        (
            "c8",
            8,
            json!({"dimension": 8, "index": "ivf", "ivf": {"lists": 4, "probes": 2}}),
        ),
        ("vic", 0, json!({"dimension": 4})),
    ];
    for (c, _, s) in &sets {
        cl.create(c, s);
    }
    let first = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = sets
        .iter()
        .enumerate()
        .map(|(i, (c, dim, _))| {
            let (cl, c, dim, stop) = (cl.clone(), c.to_string(), *dim, stop.clone());
            std::thread::spawn(move || loader(cl, c, dim, seed ^ (i as u64 + 7), stop))
        })
        .collect();
    let vt = {
        let (cl, stop) = (cl.clone(), stop.clone());
        std::thread::spawn(move || victim(cl, seed ^ 99, stop))
    };
    // Load shaping: SIGKILL at a seeded moment of the load.
    std::thread::sleep(Duration::from_millis(300 + rng.below(900)));
    d.kill9();
    stop.store(true, Ordering::Relaxed);
    let sent: Vec<Vec<Sent>> = loaders.into_iter().map(|t| t.join().unwrap()).collect();
    let lives = vt.join().unwrap();
    let summary: Vec<String> = sent
        .iter()
        .map(|s| {
            format!(
                "{}: {} bodies, {} acknowledged",
                s[0].c,
                s.len(),
                s.iter().filter(|s| s.status == Some(200)).count()
            )
        })
        .collect();
    eprintln!(
        "  {summary:?}; victim lives {:?}",
        lives.iter().map(|l| (l.dim, l.status)).collect::<Vec<_>>()
    );
    let d = start(&data, tmp.path(), "");
    let cl = Client::new(&d);
    let mut bad = Vec::new();
    let present: Vec<_> = sent[..3]
        .iter()
        .map(|s| check_loaded(&cl, &s[0].c, s, &mut bad))
        .collect();
    assert!(
        bad.is_empty(),
        "seed {seed}: {} wrong, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(8)]
    );
    for ((c, dim, _), p) in sets.iter().zip(&present) {
        check_searches(&cl, c, *dim, p, &mut rng);
    }
    let kept = check_victim(&cl, &sent[3], &lives, first, &mut rng);
    eprintln!("  victim after the restart: {kept:?} documents");
    recreate_is_empty(&cl, &sent[3]);
    d.stop();
}

/// The victim dropped (when it exists) and created again with a third dimension: none of the documents ever put
/// into it is there, it counts none, and searches find none.
fn recreate_is_empty(cl: &Client, racer: &[Sent]) {
    if cl.get("/v1/collections/vic").unwrap().status == 200 {
        let a = cl.call("DELETE", "/v1/collections/vic", None).unwrap();
        assert_eq!(a.status, 200, "drop: {}", a.body);
    }
    cl.create("vic", &json!({"dimension": 7}));
    for s in racer.iter().step_by(3) {
        for (id, _) in &s.docs {
            assert_eq!(
                cl.doc("vic", id).0,
                None,
                "vic/{id} survived a drop into the next incarnation"
            );
        }
    }
    let a = cl
        .search("vic", &strong(json!({"text": "*", "k": 10})))
        .unwrap();
    assert_eq!(
        (a.status, a.body["total"].as_u64()),
        (200, Some(0)),
        "{}",
        a.body
    );
    let desc = cl.get("/v1/collections/vic").unwrap().body;
    assert_eq!(desc["documents"], 0, "{desc}");
}

// ---------------------------------------------------------------------------------------------------------------
// Index directories damaged while searches and writes run.
// ---------------------------------------------------------------------------------------------------------------

/// How an index directory is damaged.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Damage {
    Deleted,
    Truncated,
    Garbage,
    /// `chattr +i` on the directory and its files (root ignores permission bits): nothing in it can change or go
    /// until it is released.
    Immutable,
    FileInstead,
    /// A symlink to another collection's index of the same name.
    Symlink,
}

const DAMAGES: [Damage; 6] = [
    Damage::Deleted,
    Damage::Truncated,
    Damage::Garbage,
    Damage::Immutable,
    Damage::FileInstead,
    Damage::Symlink,
];

/// The collections of the damage attack: `ta` and `tb` keep `flat`, `hnsw` and `text`, `tc` keeps `flat`, `ivf`
/// and `text`; all of dimension 6, cosine.
const DAMAGED_SET: [&str; 3] = ["ta", "tb", "tc"];
const DIM: usize = 6;

/// Removes the immutable attribute from everything under a directory when dropped, so it can be cleaned up.
struct Mutable(PathBuf);

impl Drop for Mutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr")
            .arg("-R")
            .arg("-i")
            .arg(&self.0)
            .output();
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out
}

/// Removes `path` whatever it is (a daemon may be writing into it: retried).
fn remove_any(path: &Path) {
    for _ in 0..50 {
        let r = match std::fs::symlink_metadata(path) {
            Err(_) => return,
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
            Ok(_) => std::fs::remove_file(path),
        };
        if r.is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("cannot remove {}", path.display());
}

fn garbage(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next() as u8).collect()
}

/// Damages `dir` (an index directory); `other` is another collection's index directory of the same name.
fn damage(kind: Damage, dir: &Path, other: &Path, rng: &mut Rng) -> String {
    let files = files_under(dir);
    match kind {
        Damage::Deleted => remove_any(dir),
        Damage::Truncated => {
            for f in &files {
                if let Ok(m) = std::fs::metadata(f) {
                    let _ = std::fs::OpenOptions::new()
                        .write(true)
                        .open(f)
                        .and_then(|h| h.set_len(m.len() / 2));
                }
            }
        }
        Damage::Garbage => {
            for f in &files {
                if let Ok(m) = std::fs::metadata(f) {
                    let _ = std::fs::write(f, garbage(rng, m.len() as usize));
                }
            }
        }
        Damage::Immutable => {
            let out = Command::new("chattr")
                .arg("-R")
                .arg("+i")
                .arg(dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "chattr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Damage::FileInstead => {
            remove_any(dir);
            std::fs::write(dir, garbage(rng, 4096)).unwrap();
        }
        Damage::Symlink => {
            remove_any(dir);
            std::os::unix::fs::symlink(other, dir).unwrap();
        }
    }
    format!("{kind:?} {} ({} files)", dir.display(), files.len())
}

/// The documents the damage attack preloads: 240 per collection, positive vectors, vocabulary words.
fn preload(cl: &Client, rng: &mut Rng) -> BTreeMap<String, BTreeMap<String, Value>> {
    let mut model = BTreeMap::new();
    for c in DAMAGED_SET {
        let settings = if c == "tc" {
            json!({"dimension": DIM, "index": "ivf", "ivf": {"lists": 2, "probes": 2}})
        } else {
            json!({"dimension": DIM})
        };
        cl.create(c, &settings);
        let docs: Vec<(String, Value)> = (0..240)
            .map(|i| {
                let id = format!("{c}-{i}");
                let d = make_doc(rng, &id, DIM, i, "preloaded");
                (id, d)
            })
            .collect();
        for chunk in docs.chunks(80) {
            let a = cl.bulk(c, ndjson(chunk)).unwrap();
            assert_eq!(a.status, 200, "{}", a.body);
        }
        model.insert(c.to_string(), docs.into_iter().collect());
    }
    model
}

/// What one round of probes saw on one collection.
#[derive(Debug, Default, Clone)]
struct Seen {
    correct: u64,
    degraded: u64,
    unavailable: u64,
    wrong: Vec<String>,
}

/// Probes `c`: a document by its unique token, a vocabulary word's total and matches (text answers must be right
/// even when degraded), the exact and the approximate nearest neighbours (right unless flagged degraded; a 503 is
/// counted as unavailable). True when every answer was right and none degraded.
fn probe(
    cl: &Client,
    c: &str,
    docs: &BTreeMap<String, Value>,
    rng: &mut Rng,
    seen: &mut Seen,
) -> bool {
    let ids: Vec<&String> = docs.keys().collect();
    let id = ids[rng.below(ids.len() as u64) as usize].clone();
    let word = VOCAB[rng.below(5) as usize];
    let query: Vec<f64> = (0..DIM).map(|_| component(rng)).collect();
    let probes = [
        ("token", json!({"text": unique_token(&id), "k": 3})),
        ("word", json!({"text": word, "k": 10})),
        ("exact", json!({"vector": query, "k": 10, "exact": true})),
        ("approximate", json!({"vector": query, "k": 10})),
    ];
    let mut clean = true;
    for (what, q) in probes {
        let Some(a) = cl.search(c, &q) else {
            seen.wrong.push(format!("{c} {what} {q}: no answer"));
            return false;
        };
        let text = what == "token" || what == "word";
        if a.status != 200 {
            clean = false;
            if text || a.status != 503 {
                seen.wrong
                    .push(format!("{c} {what} {q}: {} {}", a.status, a.body));
            } else {
                seen.unavailable += 1;
            }
            continue;
        }
        let verdict = match what {
            "token" => {
                let h = hits(&a.body);
                (h.len() != 1 || h[0].0 != id || a.body["total"] != 1)
                    .then(|| format!("expected exactly {id}"))
            }
            "word" => judge_text(docs, word, 10, &a.body),
            _ if degraded(&a.body) => None,
            _ => judge_vector(docs, &query, 10, what == "exact", &a.body),
        };
        if degraded(&a.body) {
            seen.degraded += 1;
            clean = false;
        }
        match verdict {
            Some(why) => {
                clean = false;
                seen.wrong
                    .push(format!("{c} {what} {q}: {why}: {}", a.body));
            }
            None => seen.correct += 1,
        }
    }
    clean
}

/// A document the writers put during the damage: no vocabulary word, a vector opposite to every query (negative
/// components), so it never changes what the probes expect.
fn writer_doc(rng: &mut Rng, id: &str) -> Value {
    let v: Vec<f64> = (0..DIM).map(|_| -component(rng)).collect();
    json!({"text": format!("{} zulu", unique_token(id)), "vector": v, "meta": {"writer": true}})
}

/// What the damage writers saw: the documents acknowledged, and strong searches that missed one of them.
type WriterLog = (Vec<(String, String, Value)>, Vec<String>);

/// Writers putting documents into every collection until stopped; every fourth acknowledged one is searched for
/// at once by its token with `"consistency": "strong"`, which must find it (or be a 503 naming the lag).
fn damage_writers(
    cl: &Client,
    seed: u64,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<WriterLog> {
    let (cl, stop) = (cl.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut rng = Rng::new(seed);
        let (mut acked, mut missed) = (Vec::new(), Vec::new());
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let c = DAMAGED_SET[n % 3];
            let id = format!("w{c}-{n}");
            let d = writer_doc(&mut rng, &id);
            n += 1;
            let Some(a) = cl.json("PUT", &format!("/v1/collections/{c}/docs/{id}"), &d) else {
                break;
            };
            if a.status != 200 {
                continue;
            }
            let lsn = a.body["lsn"].as_u64().unwrap_or(0);
            acked.push((c.to_string(), id.clone(), d));
            if n % 4 == 0 {
                let q = strong(json!({"text": unique_token(&id), "k": 3}));
                let Some(a) = cl.search(c, &q) else { break };
                let found = hits(&a.body).iter().any(|h| h.0 == id);
                if (a.status == 200 && !found) || (a.status != 200 && a.status != 503) {
                    missed.push(format!(
                        "{c}/{id} acknowledged at LSN {lsn}, a strong search for it: {} {}",
                        a.status, a.body
                    ));
                }
            }
        }
        (acked, missed)
    })
}

/// The index directories a damage round may hit: `(collection, index)`.
fn targets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ta", "text"),
        ("ta", "hnsw"),
        ("ta", "flat"),
        ("tc", "ivf"),
        ("tc", "text"),
    ]
}

/// One damage round: `kind` on `c`'s index `name` while writers run and every collection is probed; every answer
/// must be right or flagged, and the damaged collection must answer right and unflagged, with its indexes
/// current, within `bound`. Returns how long that took.
fn damage_round(
    cl: &Client,
    data: &Path,
    model: &BTreeMap<String, BTreeMap<String, Value>>,
    (c, name): (&str, &str),
    kind: Damage,
    rng: &mut Rng,
    bound: Duration,
) -> Duration {
    let dir = data.join("idx").join(c).join(name);
    let other = data
        .join("idx")
        .join(if c == "tb" { "ta" } else { "tb" })
        .join(if name == "ivf" { "hnsw" } else { name });
    let what = damage(kind, &dir, &other, rng);
    let began = Instant::now();
    let mut seen: BTreeMap<&str, Seen> = BTreeMap::new();
    let mut released = kind != Damage::Immutable;
    let mut clean_rounds = 0;
    let healed = loop {
        let mut all_clean = true;
        for col in DAMAGED_SET {
            let s = seen.entry(col).or_default();
            all_clean &= probe(cl, col, &model[col], rng, s);
        }
        if !released && began.elapsed() > Duration::from_secs(3) {
            drop(Mutable(dir.clone()));
            released = true;
        }
        let current = all_current(cl, c);
        clean_rounds = if all_clean && current && released {
            clean_rounds + 1
        } else {
            0
        };
        if clean_rounds >= 3 {
            break Some(began.elapsed());
        }
        if began.elapsed() > bound {
            break None;
        }
    };
    eprintln!("  {what}: healed after {healed:?}; seen {seen:?}");
    let wrong: Vec<&String> = seen.values().flat_map(|s| &s.wrong).collect();
    assert!(
        wrong.is_empty(),
        "{what}: {} wrong answers, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    healed.unwrap_or_else(|| {
        let desc = cl.get(&format!("/v1/collections/{c}")).map(|a| a.body);
        panic!(
            "{what}: not answering right and unflagged, indexes current, within {bound:?}: {desc:?}"
        )
    })
}

/// Every index of `c` is `current` (`GET /v1/collections/{c}`).
fn all_current(cl: &Client, c: &str) -> bool {
    cl.get(&format!("/v1/collections/{c}"))
        .and_then(|a| a.body["indexes"].as_array().cloned())
        .is_some_and(|ix| !ix.is_empty() && ix.iter().all(|i| i["state"] == "current"))
}

/// `rounds` damage rounds (seeded kinds and targets) with writers running, then a SIGKILL and a restart: every
/// preloaded and every acknowledged document is there and found, every index answers right, unflagged.
fn damage_attack(seed: u64, kinds: &[(Damage, (&'static str, &'static str))]) {
    eprintln!("index damage: seed={seed} (replay: MEDIC_ATTACK_SEED={seed}); {kinds:?}");
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let _mutable = Mutable(tmp.path().to_path_buf());
    let data = tmp.path().join("data");
    let mut d = start(&data, tmp.path(), "");
    let model = preload(&Client::new(&d), &mut rng);
    let mut full = model.clone();
    for (round, (kind, target)) in kinds.iter().enumerate() {
        let cl = Client::new(&d);
        for c in DAMAGED_SET {
            check_searches(&cl, c, DIM, &full[c], &mut rng);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writers = damage_writers(&cl, seed ^ round as u64, &stop);
        let bound = Duration::from_secs(45);
        damage_round(&cl, &data, &model, *target, *kind, &mut rng, bound);
        stop.store(true, Ordering::Relaxed);
        let (acked, missed) = writers.join().unwrap();
        assert!(
            missed.is_empty(),
            "seed {seed}: {kind:?} {target:?}: strong searches missed acknowledged documents: {missed:#?}"
        );
        for (c, id, doc) in acked {
            full.get_mut(&c).unwrap().insert(id, doc);
        }
        // SIGKILL and a restart with the damage's consequences on disk: everything there and found.
        d.kill9();
        d = start(&data, tmp.path(), "");
        let cl = Client::new(&d);
        for c in DAMAGED_SET {
            for (id, doc) in &full[c] {
                let got = cl.doc(c, id).0;
                assert_eq!(
                    got.as_ref(),
                    Some(doc),
                    "seed {seed}: {c}/{id} after {kind:?} and a restart"
                );
            }
            check_searches(&cl, c, DIM, &full[c], &mut rng);
        }
    }
    d.stop();
}

/// `n` seeded draws among `candidates` (a damage kind and its target).
fn seeded_kinds(
    seed: u64,
    n: usize,
    candidates: &[(Damage, (&'static str, &'static str))],
) -> Vec<(Damage, (&'static str, &'static str))> {
    let mut rng = Rng::new(seed ^ 0xDA);
    (0..n)
        .map(|_| candidates[rng.below(candidates.len() as u64) as usize])
        .collect()
}

#[test]
fn index_directories_damaged_while_serving_never_answer_wrong_and_are_rebuilt() {
    let seed = seed(0x1DA_4A6E);
    // A deleted directory anywhere, garbage in a vector index's file. The other kinds have their own tests
    // below.
    let mut candidates: Vec<_> = targets()
        .into_iter()
        .map(|t| (Damage::Deleted, t))
        .collect();
    for t in [("ta", "hnsw"), ("ta", "flat"), ("tc", "ivf")] {
        candidates.push((Damage::Garbage, t));
    }
    damage_attack(seed, &seeded_kinds(seed, 3, &candidates));
}

#[test]
fn index_directory_deleted_while_serving() {
    damage_attack(
        seed(0xDE1),
        &[
            (Damage::Deleted, ("ta", "text")),
            (Damage::Deleted, ("tc", "ivf")),
        ],
    );
}

#[test]
fn index_files_truncated_while_serving() {
    damage_attack(
        seed(0x7C),
        &[
            (Damage::Truncated, ("ta", "text")),
            (Damage::Truncated, ("ta", "hnsw")),
        ],
    );
}

#[test]
fn index_files_overwritten_with_garbage_while_serving() {
    damage_attack(
        seed(0x6A),
        &[
            (Damage::Garbage, ("ta", "text")),
            (Damage::Garbage, ("tc", "ivf")),
        ],
    );
}

#[test]
fn index_directory_made_immutable_while_serving() {
    damage_attack(
        seed(31083118),
        &[
            (Damage::Immutable, ("tc", "text")),
            (Damage::Immutable, ("ta", "hnsw")),
        ],
    );
}

#[test]
fn index_directory_replaced_by_a_file_while_serving() {
    damage_attack(
        seed(0xF1),
        &[
            (Damage::FileInstead, ("ta", "text")),
            (Damage::FileInstead, ("ta", "flat")),
        ],
    );
}

#[test]
fn index_directory_replaced_by_a_symlink_to_another_collections_index() {
    damage_attack(seed(0x5_1A4C), &[(Damage::Symlink, ("ta", "text"))]);
}

#[test]
fn vector_index_symlinked_to_another_collections_index() {
    damage_attack(seed(0x5_1A4D), &[(Damage::Symlink, ("ta", "hnsw"))]);
}

/// A collection dropped and created again with another dimension: a vector search of the new dimension is
/// answered (no hits), not refused with the dropped incarnation's dimension.
#[test]
fn a_collection_recreated_with_another_dimension_searches_in_its_new_dimension() {
    let mut rng = Rng::new(seed(0x4ED));
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = start(&data, tmp.path(), "");
    let cl = Client::new(&d);
    cl.create("re", &json!({"dimension": 4}));
    let docs = docs_for(&mut rng, "re", 20, 4);
    assert_eq!(cl.bulk("re", ndjson(&docs)).unwrap().status, 200);
    let a = cl
        .search(
            "re",
            &strong(json!({"vector": [1.0, 2.0, 3.0, 4.0], "k": 5})),
        )
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        cl.call("DELETE", "/v1/collections/re", None)
            .unwrap()
            .status,
        200
    );
    cl.create("re", &json!({"dimension": 7}));
    for exact in [false, true] {
        let q = strong(json!({"vector": vec![1.0; 7], "k": 5, "exact": exact}));
        let a = cl.search("re", &q).unwrap();
        assert_eq!(
            (a.status, hits(&a.body)),
            (200, vec![]),
            "exact {exact}: {}",
            a.body
        );
    }
    let d7 = docs_for(&mut rng, "re7", 20, 7);
    let a = cl.bulk("re", ndjson(&d7)).unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let present: BTreeMap<String, Value> = d7.into_iter().collect();
    check_searches(&cl, "re", 7, &present, &mut rng);
    d.stop();
    let d = start(&data, tmp.path(), "");
    check_searches(&Client::new(&d), "re", 7, &present, &mut rng);
    d.stop();
}

#[test]
#[ignore = "soak: every damage kind on every target, MEDIC_ATTACK_ROUNDS seeds"]
fn soak_index_damage() {
    let base = seed(0x50AC);
    for r in 0..rounds(2) {
        let kinds: Vec<_> = DAMAGES
            .iter()
            .flat_map(|k| targets().into_iter().map(move |t| (*k, t)))
            .collect();
        damage_attack(base.wrapping_add(r), &kinds);
    }
}

#[test]
#[ignore = "soak: drop and recreate under bulk loads, MEDIC_ATTACK_ROUNDS seeds"]
fn soak_drop_recreate() {
    let base = seed(0xD09C_0113);
    for r in 0..rounds(5) {
        eprintln!("drop and recreate: seed={}", base.wrapping_add(r));
        drop_recreate_round(base.wrapping_add(r));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Filters, offsets and k at their edges against a collection being rebuilt.
// ---------------------------------------------------------------------------------------------------------------

fn ids_where(docs: &BTreeMap<String, Value>, f: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    docs.iter()
        .filter(|(_, d)| f(&d["meta"]))
        .map(|(id, _)| id.clone())
        .collect()
}

/// One text search expected to match exactly `expected` (all of them, `k` 1000): its answer's problems.
fn text_set(cl: &Client, q: Value, expected: &BTreeSet<String>, bad: &mut Vec<String>) -> bool {
    let Some(a) = cl.search("f", &q) else {
        bad.push(format!("{q}: no answer"));
        return false;
    };
    let got: BTreeSet<String> = hits(&a.body).into_iter().map(|h| h.0).collect();
    if a.status != 200 || a.body["total"] != expected.len() || &got != expected {
        bad.push(format!(
            "{q}: {} expected {} ids {:?}: {}",
            a.status,
            expected.len(),
            expected.iter().take(5).collect::<Vec<_>>(),
            a.body
        ));
    }
    !degraded(&a.body)
}

/// Pages of `k` = 7 through a filter: together exactly the matching documents, none twice; an offset at the
/// total is empty, at 10,000 empty, at 10,001 refused.
fn paging(cl: &Client, filter: &Value, expected: &BTreeSet<String>, bad: &mut Vec<String>) {
    let mut got = Vec::new();
    let mut sources = BTreeSet::new();
    for offset in (0..=expected.len()).step_by(7) {
        let q = json!({"text": "*", "k": 7, "offset": offset, "filter": filter});
        let a = cl.search("f", &q).unwrap();
        sources.insert(a.body["index"].to_string());
        if a.status != 200 || a.body["total"] != expected.len() {
            bad.push(format!("page at {offset}: {} {}", a.status, a.body));
            return;
        }
        got.extend(hits(&a.body).into_iter().map(|h| h.0));
    }
    let set: BTreeSet<String> = got.iter().cloned().collect();
    if set.len() != got.len() || &set != expected {
        bad.push(format!(
            "pages through {filter} (answered by {sources:?}): {} hits, {} distinct, {} expected; missing {:?}",
            got.len(),
            set.len(),
            expected.len(),
            expected.difference(&set).take(5).collect::<Vec<_>>()
        ));
    }
    for (offset, status, n) in [(10_000, 200, 0), (10_001, 400, 0)] {
        let a = cl
            .search(
                "f",
                &json!({"text": "*", "k": 5, "offset": offset, "filter": filter}),
            )
            .unwrap();
        if a.status != status || (status == 200 && !hits(&a.body).is_empty()) {
            bad.push(format!(
                "offset {offset}: {} {}, expected {status} with {n} hits",
                a.status, a.body
            ));
        }
    }
}

/// Bounds that must be refused with a 400 whatever state the indexes are in.
fn refused_edges(cl: &Client, bad: &mut Vec<String>) {
    let qs = [
        json!({"text": "*", "k": 0}),
        json!({"text": "*", "k": 1001}),
        json!({"vector": [1.0, 1.0, 1.0, 1.0], "k": 1001}),
        json!({"text": "alpha", "vector": [1.0, 1.0, 1.0, 1.0], "k": 500, "offset": 501}),
        json!({"text": "*", "k": 5, "filter": {"colour": "red"}}),
        json!({"text": "*", "k": 5, "filter": {"n": "seven"}}),
        json!({"vector": [0.0, 0.0, 0.0, 0.0], "k": 5}),
        json!({"vector": [1.0, 1.0, 1.0], "k": 5}),
    ];
    for q in qs {
        let a = cl.search("f", &q).unwrap();
        if a.status != 400 || !a.body["error"].is_string() {
            bad.push(format!(
                "{q}: expected a 400 naming the problem, got {} {}",
                a.status, a.body
            ));
        }
    }
}

/// Vector searches with filters: the exact one is the brute-force top-k among the matching documents; with fewer
/// matching documents than `k` the approximate one returns only matching documents, the exact one all of them.
fn filtered_vectors(
    cl: &Client,
    docs: &BTreeMap<String, Value>,
    rng: &mut Rng,
    bad: &mut Vec<String>,
) -> bool {
    let query: Vec<f64> = (0..4).map(|_| component(rng)).collect();
    let mut clean = true;
    for (filter, exact) in [
        (json!({"tag": "blue"}), true),
        (json!({"n": {"lt": 3}}), true),
        (json!({"n": {"lt": 3}}), false),
        (json!({"or": [{"tag": "red"}, {"n": {"gte": 290}}]}), false),
    ] {
        let a = cl
            .search(
                "f",
                &json!({"vector": query, "k": 10, "exact": exact, "filter": filter}),
            )
            .unwrap();
        let sub: BTreeMap<String, Value> = docs
            .iter()
            .filter(|(_, d)| meta_matches(&d["meta"], &filter))
            .map(|(id, d)| (id.clone(), d.clone()))
            .collect();
        clean &= a.status == 200 && !degraded(&a.body);
        if a.status != 200 {
            bad.push(format!("vector {filter}: {} {}", a.status, a.body));
        } else if !degraded(&a.body)
            && let Some(why) = judge_vector(&sub, &query, 10, exact, &a.body)
            && (exact || hits(&a.body).iter().any(|h| !sub.contains_key(&h.0)))
        {
            bad.push(format!("vector {filter} exact {exact}: {why}: {}", a.body));
        }
    }
    clean
}

/// The filters `filtered_vectors` uses, evaluated here.
fn meta_matches(meta: &Value, f: &Value) -> bool {
    if let Some(or) = f["or"].as_array() {
        return or.iter().any(|g| meta_matches(meta, g));
    }
    f.as_object().unwrap().iter().all(|(k, cond)| match cond {
        Value::Object(o) => {
            let n = meta[k].as_f64().unwrap();
            o.iter().all(|(op, v)| {
                let v = v.as_f64().unwrap();
                match op.as_str() {
                    "lt" => n < v,
                    "gte" => n >= v,
                    _ => unreachable!(),
                }
            })
        }
        v => &meta[k] == v,
    })
}

/// One pass of edge cases over `f`: problems found, and whether every answer came unflagged.
fn edge_pass(
    cl: &Client,
    docs: &BTreeMap<String, Value>,
    rng: &mut Rng,
    bad: &mut Vec<String>,
) -> bool {
    let red_mid = ids_where(docs, |m| {
        m["tag"] == "red" && (50..200).contains(&m["n"].as_u64().unwrap())
    });
    let filter = json!({"tag": "red", "n": {"gte": 50, "lt": 200}});
    let mut clean = text_set(
        cl,
        json!({"text": "*", "k": 1000, "filter": filter}),
        &red_mid,
        bad,
    );
    paging(cl, &filter, &red_mid, bad);
    let range = ids_where(docs, |m| (10..20).contains(&m["n"].as_u64().unwrap()));
    clean &= text_set(cl, json!({"text": "n:[10 TO 20}", "k": 1000}), &range, bad);
    let red_blue = ids_where(docs, |m| m["tag"] == "red" || m["tag"] == "blue");
    clean &= text_set(
        cl,
        json!({"text": "tag: IN [red blue]", "k": 1000}),
        &red_blue,
        bad,
    );
    let none = BTreeSet::new();
    clean &= text_set(
        cl,
        json!({"text": "alpha", "k": 1000, "filter": {"n": {"gt": 100_000}}}),
        &none,
        bad,
    );
    let last = json!({"text": "*", "k": 1, "offset": red_mid.len() - 1, "filter": filter});
    let a = cl.search("f", &last).unwrap();
    if a.status != 200 || hits(&a.body).len() != 1 {
        bad.push(format!("the last page of one hit: {} {}", a.status, a.body));
    }
    let a = cl
        .search(
            "f",
            &json!({"text": "alpha", "vector": [1.0, 2.0, 3.0, 4.0], "k": 500, "offset": 500}),
        )
        .unwrap();
    if a.status != 200 {
        bad.push(format!("hybrid k + offset = 1000: {} {}", a.status, a.body));
    }
    refused_edges(cl, bad);
    clean & filtered_vectors(cl, docs, rng, bad)
}

#[test]
fn filters_offsets_and_k_at_their_edges_stay_right_while_the_indexes_are_rebuilt() {
    let seed = seed(0xF1_17E5);
    eprintln!("edges under rebuild: seed={seed} (replay: MEDIC_ATTACK_SEED={seed})");
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = start(&data, tmp.path(), "");
    let cl = Client::new(&d);
    cl.create(
        "f",
        &json!({"dimension": 4, "fields": {"n": "integer", "tag": "keyword"}}),
    );
    let docs: Vec<(String, Value)> = (0..300)
        .map(|i| {
            let id = format!("f-{i:03}");
            let d = make_doc(&mut rng, &id, 4, i, "edge");
            (id, d)
        })
        .collect();
    assert_eq!(cl.bulk("f", ndjson(&docs)).unwrap().status, 200);
    let docs: BTreeMap<String, Value> = docs.into_iter().collect();
    check_searches(&cl, "f", 4, &docs, &mut rng);
    let mut bad = Vec::new();
    edge_pass(&cl, &docs, &mut rng, &mut bad);
    assert!(bad.is_empty(), "before any damage: {bad:#?}");
    remove_any(&data.join("idx").join("f"));
    let began = Instant::now();
    let mut passes = 0;
    let healed = loop {
        passes += 1;
        let clean = edge_pass(&cl, &docs, &mut rng, &mut bad);
        assert!(
            bad.is_empty(),
            "seed {seed}: pass {passes} after idx/f was deleted: {bad:#?}"
        );
        if clean && all_current(&cl, "f") {
            break began.elapsed();
        }
        assert!(
            began.elapsed() < Duration::from_secs(45),
            "idx/f not rebuilt within 45 s"
        );
    };
    eprintln!("  idx/f deleted: {passes} passes, right and unflagged after {healed:?}");
    d.stop();
    let d = start(&data, tmp.path(), "");
    let cl = Client::new(&d);
    check_searches(&cl, "f", 4, &docs, &mut rng);
    edge_pass(&cl, &docs, &mut rng, &mut bad);
    assert!(bad.is_empty(), "seed {seed}: after a restart: {bad:#?}");
    d.stop();
}

// ---------------------------------------------------------------------------------------------------------------
// Collection names at their edges, and names that try to leave idx/.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn collection_names_at_their_edges_and_escaping_names_touch_nothing_else() {
    let seed = seed(0x4_A3E5);
    eprintln!("names: seed={seed} (replay: MEDIC_ATTACK_SEED={seed})");
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = start(&data, tmp.path(), "");
    let cl = Client::new(&d);
    let docs = docs_for(&mut rng, "keep", 30, 3);
    let a = cl
        .call(
            "POST",
            "/v1/docs",
            Some(("application/x-ndjson", ndjson(&docs))),
        )
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let longest = "a".repeat(64);
    assert_eq!(
        cl.json("PUT", &format!("/v1/collections/{longest}"), &json!({}))
            .unwrap()
            .status,
        201
    );
    let bad = [
        "a".repeat(65),
        "-lead".to_string(),
        "Upper".to_string(),
        "a.b".to_string(),
        "%2e%2e".to_string(),
        "%2E%2E%2Fwal".to_string(),
        "..%2f..%2fdata".to_string(),
        "a%2fb".to_string(),
        "%00".to_string(),
        "a%20b".to_string(),
    ];
    for name in &bad {
        let a = cl
            .json(
                "PUT",
                &format!("/v1/collections/{name}"),
                &json!({"dimension": 3}),
            )
            .unwrap();
        assert!(
            (400..500).contains(&a.status),
            "PUT collection {name:?}: {} {}",
            a.status,
            a.body
        );
        let a = cl
            .json(
                "PUT",
                &format!("/v1/collections/{name}/docs/x"),
                &json!({"text": "t"}),
            )
            .unwrap();
        assert!(
            (400..500).contains(&a.status),
            "PUT a document into {name:?}: {} {}",
            a.status,
            a.body
        );
        let a = cl
            .call("DELETE", &format!("/v1/collections/{name}"), None)
            .unwrap();
        assert!(
            (400..500).contains(&a.status),
            "DELETE collection {name:?}: {} {}",
            a.status,
            a.body
        );
    }
    let a = cl.call("DELETE", "/v1/collections/default", None).unwrap();
    assert_eq!(a.status, 400, "dropping default: {}", a.body);
    let a = cl
        .call("DELETE", &format!("/v1/collections/{longest}"), None)
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(data.join("wal").is_dir(), "wal/ is gone");
    assert_stored(
        &cl,
        "default",
        &docs,
        false,
        "the default collection after the bad names",
    );
    d.stop();
    let d = start(&data, tmp.path(), "");
    assert_stored(&Client::new(&d), "default", &docs, false, "after a restart");
    let (_, list) = d.json("GET", "/v1/collections", None);
    let names: Vec<&str> = list["collections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["collection"].as_str())
        .collect();
    assert_eq!(names, ["default"], "{list}");
    d.stop();
}
