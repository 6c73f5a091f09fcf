//! Bad input, attacked black-box: a seeded, structure-aware fuzzer against the real `medic serve` (raw HTTP over a
//! `TcpStream`), the configuration file and the command line. medic's rule for bad input from disk, network, config
//! or user: a clear error saying what was wrong and where, nothing lost, no panic, every size bounded with the limit
//! named in the error.
//!
//! - **HTTP**: valid requests of every documented endpoint (documents, bulk NDJSON, collections, searches with every
//!   option, incidents and operators' actions, silences, history, reports, health, metrics) are mutated — wrong
//!   types, missing and extra fields, huge numbers, `NaN`/`Infinity` tokens, out-of-range `k`/`offset`/`limit`, JSON
//!   nested 10,000 deep, huge strings and arrays, invalid UTF-8, odd percent-encoding in ids and paths, duplicate
//!   keys, wrong `Content-Type`, truncated bodies, bodies over the limits, absurd headers — and raw protocol oddities
//!   (HTTP/1.0, pipelining, malformed heads) are sent. Every answer must be a non-5xx (a 503 only with a JSON
//!   `error`), every 4xx a JSON `error` (naming the field or limit where the contracts promise it), no complete
//!   request may go unanswered and the daemon must stay up. At the end every acknowledged document reads back
//!   exactly, the full-tier health check passes, and after a restart every document is still there.
//! - **Config**: each key of `medic config --print-default` with a documented range is set just outside it, and keys
//!   are given wrong types, unknown names, garbage and huge files: `medic serve --config` must exit non-zero quickly
//!   naming the key (or line), never panic, hang, or start with a value out of range.
//! - **CLI**: bad arguments and bad stdin (`medic load -` with garbage NDJSON) give non-zero exits and no panic.
//!
//! `MEDIC_ATTACK_SEED=N` replays a run (the seed and every failing input are printed; `MEDIC_ATTACK_TRACE=1` prints
//! every case and its answer); `MEDIC_ATTACK_ROUNDS=N` sets the HTTP rounds of the `#[ignore]`d soak
//! (`cargo test -p medic --test attack_inputs -- --ignored soak`). `the_rules_catch_each_kind_of_break` is the
//! canary: the checker must catch each kind of break.
//!
//! Breaks found when this file was written, each kept as its own `#[ignore]`d test: an integer range filter with a
//! bound outside `i64` panics in the text index (503 blaming damaged files); the HTTP layer's 414 and 431 carry no
//! JSON error naming a limit; a silence without `comment` is told to give `note`; an unparseable `--server` URL
//! exits 1, not 2.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Daemon, Rng};

// ---------------------------------------------------------------------------------------------------------------
// Seeds.
// ---------------------------------------------------------------------------------------------------------------

const DEFAULT_SEED: u64 = 0x5eed_1a55;

fn seed() -> u64 {
    support::attack_seed(DEFAULT_SEED)
}

fn rounds(default: usize) -> usize {
    support::attack_rounds(default as u64) as usize
}

// ---------------------------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client: every byte of the request is ours.
// ---------------------------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn new(method: &str, path: &str) -> Req {
        Req {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    fn json(method: &str, path: &str, body: &Value) -> Req {
        let mut r = Req::new(method, path);
        r.headers
            .push(("Content-Type".into(), "application/json".into()));
        r.body = body.to_string().into_bytes();
        r
    }
    fn ndjson(path: &str, body: String) -> Req {
        let mut r = Req::new("POST", path);
        r.headers
            .push(("Content-Type".into(), "application/x-ndjson".into()));
        r.body = body.into_bytes();
        r
    }
    fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
    }
    /// The bytes on the wire: `Connection: close`, and a `Content-Length` unless a header sets one already (or
    /// chunked encoding).
    fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\n",
            self.method, self.path
        );
        let has = |n: &str| self.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n));
        if !has("connection") {
            out.push_str("Connection: close\r\n");
        }
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        let chunked = self.headers.iter().any(|(h, v)| {
            h.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        if !has("content-length") && !chunked && (!self.body.is_empty() || self.method != "GET") {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if chunked {
            for part in self.body.chunks(4096) {
                bytes.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                bytes.extend_from_slice(part);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
        } else {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
    /// For failure messages: the request with its body cut to 300 bytes.
    fn show(&self) -> String {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned();
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", &v[..v.len().min(80)]))
            .collect();
        let path = &self.path[..self.path.len().min(300)];
        format!(
            "{} {path} {headers:?} body ({} bytes): {body}",
            self.method,
            self.body.len()
        )
    }
}

#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
    /// The `error` of a JSON error body.
    fn error(&self) -> Option<String> {
        Some(self.json()?.get("error")?.as_str()?.to_string())
    }
}

/// Sends `raw` on a new connection (the write from another thread, so an early answer — a 413 before the body —
/// is read while the body is still going out) and reads every answer until the server closes.
fn exchange(addr: &str, raw: Vec<u8>, half_close: bool) -> std::io::Result<Vec<Reply>> {
    let stream = connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(45)))?;
    stream.set_write_timeout(Some(Duration::from_secs(45)))?;
    let mut writer = stream.try_clone()?;
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&raw);
        if half_close {
            let _ = writer.shutdown(Shutdown::Write);
        }
    });
    let mut buf = Vec::new();
    let mut reader = stream;
    let mut chunk = [0u8; 65536];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if buf.is_empty() && e.kind() != std::io::ErrorKind::ConnectionReset => {
                return Err(e);
            }
            Err(_) => break,
        }
    }
    let _ = sender.join();
    Ok(parse_replies(&buf))
}

/// A connection, the attempt repeated when a signal interrupts it (the test spawns processes).
fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let mut tries = 0;
    loop {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted && tries < 10 => tries += 1,
            other => return other,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Every response in `buf` (skipping `100 Continue`), bodies by `Content-Length`, chunked, or to the end.
fn parse_replies(mut buf: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    while let Some(end) = find(buf, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf = &buf[end + 4..];
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut reply = Reply {
            status,
            head,
            body: Vec::new(),
        };
        if (100..200).contains(&status) {
            continue;
        }
        let chunked = reply
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            while let Some(eol) = find(buf, b"\r\n") {
                let size_text = String::from_utf8_lossy(&buf[..eol]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .unwrap_or(0);
                buf = &buf[eol + 2..];
                if size == 0 {
                    buf = &buf[find(buf, b"\r\n").map_or(buf.len(), |p| p + 2)..];
                    break;
                }
                let take = size.min(buf.len());
                reply.body.extend_from_slice(&buf[..take]);
                buf = &buf[(take + 2).min(buf.len())..];
            }
        } else if let Some(n) = reply.header("content-length").and_then(|v| v.parse().ok()) {
            let n: usize = n;
            reply.body = buf[..n.min(buf.len())].to_vec();
            buf = &buf[n.min(buf.len())..];
        } else {
            reply.body = buf.to_vec();
            buf = &[];
        }
        out.push(reply);
    }
    out
}

/// The body the server reads: its first `Content-Length` bytes when a header sets a shorter one.
fn effective_body(req: &Req) -> &[u8] {
    let declared = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let chunked = req.headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    // With chunked encoding the length header is ignored (RFC 9112, 6.3).
    let declared = declared.filter(|_| !chunked);
    &req.body[..declared.unwrap_or(usize::MAX).min(req.body.len())]
}

/// Percent-encodes every byte outside the unreserved set.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// The model: what was acknowledged, and how it must read back.
// ---------------------------------------------------------------------------------------------------------------

/// A JSON number written canonically (sign, significant digits, exponent), so `1.50`, `15e-1` and `1.5` agree.
fn canon_num(s: &str) -> String {
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(p) => (
            &s[..p],
            s[p + 1..]
                .trim_start_matches('+')
                .parse::<i64>()
                .unwrap_or(0),
        ),
        None => (s, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let digits = format!("{int}{frac}");
    let exp = exp - frac.len() as i64;
    let trimmed_end = digits.trim_end_matches('0');
    let exp = exp + (digits.len() - trimmed_end.len()) as i64;
    let sig = trimmed_end.trim_start_matches('0');
    if sig.is_empty() {
        return "0".into();
    }
    format!("{}{sig}e{exp}", if neg { "-" } else { "" })
}

/// `a` and `b` hold the same JSON, numbers compared by value with every digit.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            canon_num(&x.to_string()) == canon_num(&y.to_string())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// A stored vector is `f32`: each element compared after rounding to `f32`.
fn same_vector(a: &Value, b: &Value) -> bool {
    let f = |v: &Value| -> Option<Vec<f32>> {
        v.as_array()?
            .iter()
            .map(|x| x.to_string().parse::<f64>().ok().map(|f| f as f32))
            .collect()
    };
    match (a, b) {
        (Value::Null, Value::Null) => true,
        _ => f(a).is_some() && f(a) == f(b),
    }
}

/// What a document put as `sent` must read back as (`text`, `vector`, `meta`; `null` as absent).
fn stored_form(sent: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["text", "vector", "meta"] {
        if let Some(v) = sent.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// Why `got` (a `GET` answer) is not `want` (a [`stored_form`]), if it is not.
fn differs(want: &Value, got: &Value) -> Option<String> {
    let field = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    let text_ok = field(want, "text") == field(got, "text");
    let vector_ok = same_vector(&field(want, "vector"), &field(got, "vector"));
    let meta_ok = same_json(&field(want, "meta"), &field(got, "meta"));
    (!(text_ok && vector_ok && meta_ok)).then(|| {
        let cut = |v: Value| v.to_string().chars().take(400).collect::<String>();
        format!("want {} got {}", cut(want.clone()), cut(got.clone()))
    })
}

fn docs_path(coll: &str, id: &str) -> String {
    if coll == "default" {
        format!("/v1/docs/{}", enc(id))
    } else {
        format!("/v1/collections/{coll}/docs/{}", enc(id))
    }
}

/// What a case does to the documents when it is answered 200.
#[derive(Clone, Debug, Default)]
enum Effect {
    #[default]
    None,
    Put(String),
    Bulk(String),
    Delete(String),
}

/// What a case promises beyond the rules every answer keeps.
#[derive(Clone, Debug, Default)]
struct Expect {
    /// A valid request: a 2xx (a 404 too when `missing_ok`).
    ok: bool,
    missing_ok: bool,
    /// Bad input: a 4xx.
    refuse: bool,
    /// A 4xx error must contain one of these (case-insensitive).
    names: Vec<String>,
    /// Malformed HTTP: a 4xx need not carry a JSON body (the HTTP layer answers before any route).
    protocol: bool,
    /// The request is incomplete (the body cut and the connection half-closed): no answer is allowed.
    incomplete: bool,
    effect: Effect,
}

impl Expect {
    fn ok() -> Expect {
        Expect {
            ok: true,
            ..Expect::default()
        }
    }
    fn refuse(names: &[&str]) -> Expect {
        Expect {
            refuse: true,
            names: names.iter().map(|s| s.to_string()).collect(),
            ..Expect::default()
        }
    }
}

struct Case {
    label: String,
    req: Req,
    expect: Expect,
}

// ---------------------------------------------------------------------------------------------------------------
// The run: send, check the rules, keep the model.
// ---------------------------------------------------------------------------------------------------------------

struct Fuzz {
    d: Daemon,
    addr: String,
    seed: u64,
    /// (collection, id) → the last acknowledged state (`None`: deleted).
    model: BTreeMap<(String, String), Option<Value>>,
    violations: Vec<String>,
    statuses: BTreeMap<u16, usize>,
    sent: usize,
}

impl Fuzz {
    fn new(d: Daemon, seed: u64) -> Fuzz {
        let addr = d.url.trim_start_matches("http://").to_string();
        Fuzz {
            d,
            addr,
            seed,
            model: BTreeMap::new(),
            violations: Vec::new(),
            statuses: BTreeMap::new(),
            sent: 0,
        }
    }

    fn violation(&mut self, case: &Case, what: String) {
        let line = format!(
            "seed={} case {:?}: {what}\n    request: {}",
            self.seed,
            case.label,
            case.req.show()
        );
        eprintln!("VIOLATION {line}");
        self.violations.push(line);
    }

    /// Sends one case, checks every rule, applies its effect; the first answer (if any).
    fn run(&mut self, case: &Case) -> Option<Reply> {
        self.sent += 1;
        let half_close = case.expect.incomplete;
        let replies = match exchange(&self.addr, case.req.bytes(), half_close) {
            Ok(r) => r,
            Err(e) => {
                self.violation(case, format!("connection failed: {e}"));
                Vec::new()
            }
        };
        self.check_alive(case);
        let Some(reply) = replies.first().cloned() else {
            if !case.expect.incomplete {
                self.violation(case, "a complete request got no answer".into());
            }
            return None;
        };
        *self.statuses.entry(reply.status).or_default() += 1;
        if std::env::var_os("MEDIC_ATTACK_TRACE").is_some() || reply.status >= 500 {
            let body = reply.text().chars().take(300).collect::<String>();
            let sent = String::from_utf8_lossy(&case.req.body[..case.req.body.len().min(20_000)])
                .into_owned();
            let (method, path) = (&case.req.method, &case.req.path);
            eprintln!(
                "#{} {} {} | {method} {path} | {sent:?} | {body}",
                self.sent, reply.status, case.label
            );
        }
        self.check_reply(case, &reply);
        if reply.status == 200 {
            self.apply(case, &reply);
        }
        Some(reply)
    }

    fn check_alive(&mut self, case: &Case) {
        if let Ok(Some(status)) = self.d.child.try_wait() {
            let tail: String = self.d.stderr().chars().rev().take(3000).collect();
            let tail: String = tail.chars().rev().collect();
            self.violation(
                case,
                format!("the daemon died ({status}); stderr tail:\n{tail}"),
            );
            panic!("{}", self.violations.join("\n"));
        }
    }

    fn check_reply(&mut self, case: &Case, r: &Reply) {
        let e = &case.expect;
        let error = r.error();
        if r.status >= 500 {
            if r.status != 503 || error.as_deref().is_none_or(str::is_empty) {
                self.violation(case, format!("{} {}", r.status, r.text()));
            }
            return;
        }
        if r.status < 100 {
            self.violation(case, format!("unparseable answer: {:?}", r.head));
            return;
        }
        if (400..500).contains(&r.status)
            && !e.protocol
            && error.as_deref().is_none_or(str::is_empty)
        {
            let body = r.text().chars().take(200).collect::<String>();
            self.violation(case, format!("{} without a JSON error: {body:?}", r.status));
        }
        if e.ok && !(200..300).contains(&r.status) && !(e.missing_ok && r.status == 404) {
            self.violation(
                case,
                format!("a valid request got {} {}", r.status, r.text()),
            );
        }
        if e.refuse && !(400..500).contains(&r.status) {
            let body = r.text().chars().take(300).collect::<String>();
            self.violation(case, format!("bad input accepted: {} {body}", r.status));
        }
        // 404 (an unknown collection or id), 415 (the content type) and the HTTP layer's refusals name other things.
        if [400, 413, 422].contains(&r.status) && !e.names.is_empty() {
            let msg = error.unwrap_or_default().to_lowercase();
            if !e.names.iter().any(|n| msg.contains(&n.to_lowercase())) {
                self.violation(
                    case,
                    format!("{} error {msg:?} names none of {:?}", r.status, e.names),
                );
            }
        }
    }

    fn apply(&mut self, case: &Case, r: &Reply) {
        match &case.expect.effect {
            Effect::None => {}
            Effect::Put(coll) => {
                let sent: Option<Value> = serde_json::from_slice(effective_body(&case.req)).ok();
                let id = r.json().and_then(|v| v["id"].as_str().map(String::from));
                match (sent, id) {
                    (Some(sent), Some(id)) if sent.is_object() => {
                        self.model
                            .insert((coll.clone(), id), Some(stored_form(&sent)));
                    }
                    (sent, id) => self.violation(
                        case,
                        format!(
                            "200 for a put whose body or answer is not a document: {sent:?} {id:?}"
                        ),
                    ),
                }
            }
            Effect::Delete(coll) => {
                if let Some(id) = r.json().and_then(|v| v["id"].as_str().map(String::from)) {
                    self.model.insert((coll.clone(), id), None);
                } else {
                    self.violation(case, format!("a delete's 200 names no id: {}", r.text()));
                }
            }
            Effect::Bulk(coll) => self.apply_bulk(case, coll),
        }
    }

    fn apply_bulk(&mut self, case: &Case, coll: &str) {
        let text = String::from_utf8_lossy(effective_body(&case.req)).into_owned();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(v) if v["id"].is_string() => {
                    let id = v["id"].as_str().unwrap().to_string();
                    self.model
                        .insert((coll.to_string(), id), Some(stored_form(&v)));
                }
                other => {
                    let what = format!(
                        "a bulk body was acknowledged with line {}: {other:?}",
                        n + 1
                    );
                    self.violation(case, what);
                }
            }
        }
    }

    /// Every acknowledged document reads back as it was put (a deleted one is a 404); the mismatches.
    fn read_back(&mut self) -> Vec<String> {
        let mut bad = Vec::new();
        let entries: Vec<_> = self
            .model
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for ((coll, id), want) in entries {
            let req = Req::new("GET", &docs_path(&coll, &id));
            let got = exchange(&self.addr, req.bytes(), false)
                .ok()
                .and_then(|r| r.into_iter().next());
            let Some(got) = got else {
                bad.push(format!("{coll}/{id:?}: no answer"));
                continue;
            };
            match (&want, got.status) {
                (None, 404) => {}
                (Some(w), 200) => {
                    if let Some(why) = got.json().and_then(|g| differs(w, &g)) {
                        bad.push(format!("{coll}/{id:?}: {why}"));
                    }
                }
                _ => bad.push(format!(
                    "{coll}/{id:?}: want {want:?}, got {} {}",
                    got.status,
                    got.text()
                )),
            }
        }
        bad
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Valid requests of every documented endpoint.
// ---------------------------------------------------------------------------------------------------------------

/// The named collection the run writes to: IVF (so `probes` is valid), with declared fields.
const COLL: &str = "fzc";
const WORDS: &[&str] = &[
    "alpha", "beta", "gamma", "delta", "river", "stone", "cloud", "night", "medic", "heal",
    "index", "vector",
];

fn coll_settings() -> Value {
    json!({"dimension": 3, "metric": "cosine", "index": "ivf", "ivf": {"lists": 4, "probes": 2},
           "fields": {"lang": "keyword", "year": "integer", "draft": "bool"}})
}

fn words(rng: &mut Rng, n: usize) -> String {
    (0..n)
        .map(|_| *rng.pick(WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Three `f32`-exact components, not all zero.
fn vector(rng: &mut Rng) -> Value {
    let mut v: Vec<f64> = (0..3).map(|_| (rng.index(17) as f64 - 8.0) / 4.0).collect();
    if v.iter().all(|x| *x == 0.0) {
        v[0] = 0.5;
    }
    json!(v)
}

fn meta(rng: &mut Rng) -> Value {
    let mut m = json!({"lang": rng.pick(&["en", "fr", "de"]), "year": 1990 + rng.index(40),
                       "draft": rng.chance(50)});
    if rng.chance(30) {
        m["tags"] = json!([words(rng, 1), words(rng, 1)]);
    }
    if rng.chance(20) {
        m["big"] = serde_json::from_str("123456789012345678901234567890.5").unwrap();
    }
    m
}

fn doc_body(rng: &mut Rng) -> Value {
    let n = 1 + rng.index(12);
    let mut d = json!({"text": words(rng, n)});
    if rng.chance(70) {
        d["vector"] = vector(rng);
    }
    if rng.chance(70) {
        d["meta"] = meta(rng);
    }
    d
}

fn doc_id(rng: &mut Rng) -> String {
    format!("fz-{}", rng.index(40))
}

fn coll_of(rng: &mut Rng) -> String {
    if rng.chance(60) {
        "default".into()
    } else {
        COLL.into()
    }
}

fn case(label: &str, req: Req, expect: Expect) -> Case {
    Case {
        label: label.into(),
        req,
        expect,
    }
}

fn gen_docs(rng: &mut Rng) -> Case {
    let coll = coll_of(rng);
    let id = doc_id(rng);
    match rng.index(4) {
        0 | 1 => {
            let mut e = Expect::ok();
            e.effect = Effect::Put(coll.clone());
            case(
                "put doc",
                Req::json("PUT", &docs_path(&coll, &id), &doc_body(rng)),
                e,
            )
        }
        2 => {
            let e = Expect {
                missing_ok: true,
                ..Expect::ok()
            };
            case("get doc", Req::new("GET", &docs_path(&coll, &id)), e)
        }
        _ => {
            let e = Expect {
                missing_ok: true,
                effect: Effect::Delete(coll.clone()),
                ..Expect::ok()
            };
            case("delete doc", Req::new("DELETE", &docs_path(&coll, &id)), e)
        }
    }
}

fn gen_bulk(rng: &mut Rng) -> Case {
    let coll = coll_of(rng);
    let lines: String = (0..1 + rng.index(15))
        .map(|_| {
            let mut d = doc_body(rng);
            d["id"] = json!(doc_id(rng));
            format!("{d}\n")
        })
        .collect();
    let path = if coll == "default" {
        "/v1/docs".to_string()
    } else {
        format!("/v1/collections/{coll}/docs")
    };
    let e = Expect {
        effect: Effect::Bulk(coll),
        ..Expect::ok()
    };
    case("bulk", Req::ndjson(&path, lines), e)
}

fn search_body(rng: &mut Rng, ivf: bool) -> Value {
    let kind = rng.index(3); // 0 text, 1 vector, 2 hybrid
    let mut b = json!({"k": 1 + rng.index(20)});
    if kind != 1 {
        let q = match rng.index(5) {
            0 => format!("{} OR {}", words(rng, 1), words(rng, 1)),
            1 => format!("\"{}\"", words(rng, 2)),
            2 => format!("{}*", &words(rng, 1)[..3]),
            3 => format!("+{} -{}", words(rng, 1), words(rng, 1)),
            _ => {
                let n = 1 + rng.index(3);
                words(rng, n)
            }
        };
        b["text"] = json!(q);
        if rng.chance(40) {
            b["highlight"] = if rng.chance(50) {
                json!(true)
            } else {
                json!({"chars": 40, "pre": "[", "post": "]"})
            };
        }
        if kind == 0 && rng.chance(30) {
            b["scan_docs_max"] = json!(1 + rng.index(1000));
            b["allow_partial"] = json!(rng.chance(50));
        }
    }
    if kind != 0 {
        b["vector"] = vector(rng);
        if rng.chance(30) {
            b["ef"] = json!(1 + rng.index(200));
        }
        if rng.chance(20) {
            b["exact"] = json!(true);
        }
        if ivf && rng.chance(30) {
            b["probes"] = json!(1 + rng.index(8));
        }
    }
    if kind == 2 && rng.chance(50) {
        b["hybrid"] = json!({"text_weight": rng.index(3) + 1, "vector_weight": rng.index(3)});
    }
    if rng.chance(30) {
        b["offset"] = json!(rng.index(30));
    }
    if rng.chance(40) {
        b["filter"] = match rng.index(4) {
            0 => json!({"lang": "en"}),
            1 => json!({"year": {"gte": 2000, "lt": 2020}}),
            2 => json!({"or": [{"lang": "fr"}, {"not": {"draft": true}}]}),
            _ => json!({"lang": {"in": ["en", "de"]}}),
        };
    }
    if rng.chance(40) {
        b["include"] = json!(["text", "meta"]);
    }
    if rng.chance(30) {
        b["consistency"] = json!("strong");
        b["timeout_ms"] = json!(5000);
    }
    b
}

fn gen_search(rng: &mut Rng) -> Case {
    let coll = coll_of(rng);
    let path = match (coll.as_str(), rng.chance(50)) {
        ("default", true) => "/v1/search".to_string(),
        _ => format!("/v1/collections/{coll}/search"),
    };
    case(
        "search",
        Req::json("POST", &path, &search_body(rng, coll == COLL)),
        Expect::ok(),
    )
}

fn gen_collections(rng: &mut Rng) -> Case {
    let name = format!("s{}", rng.index(4));
    match rng.index(5) {
        0 => {
            let mut s = json!({"dimension": 2 + rng.index(6), "metric": rng.pick(&["cosine", "dot", "l2"])});
            if rng.chance(50) {
                s["index"] = json!(rng.pick(&["hnsw", "ivf", "flat"]));
            }
            if rng.chance(30) {
                s["fields"] = json!({"lang": "keyword"});
            }
            // 409 when it exists with other settings: not an ok, not a refusal of bad input.
            case(
                "create collection",
                Req::json("PUT", &format!("/v1/collections/{name}"), &s),
                Expect::default(),
            )
        }
        1 => {
            let e = Expect {
                missing_ok: true,
                ..Expect::ok()
            };
            case(
                "get collection",
                Req::new("GET", &format!("/v1/collections/{name}")),
                e,
            )
        }
        2 => case(
            "list collections",
            Req::new("GET", "/v1/collections"),
            Expect::ok(),
        ),
        3 => case(
            "get fzc",
            Req::new("GET", &format!("/v1/collections/{COLL}")),
            Expect::ok(),
        ),
        _ => {
            let e = Expect {
                missing_ok: true,
                ..Expect::ok()
            };
            case(
                "drop collection",
                Req::new("DELETE", &format!("/v1/collections/{name}")),
                e,
            )
        }
    }
}

fn gen_operators(rng: &mut Rng) -> Case {
    let id = 1 + rng.index(5);
    let action = *rng.pick(&[
        "approve",
        "deny",
        "ack",
        "resolve",
        "reopen",
        "annotate",
        "false-positive",
    ]);
    match rng.index(7) {
        0 => {
            let q = *rng.pick(&[
                "",
                "?limit=5",
                "?severity=sev1,sev2",
                "?status=active",
                "?kind=anomaly",
                "?since=-1h&until=now",
                "?resource=wal*",
                "?status=closed&limit=1000",
            ]);
            case(
                "incidents",
                Req::new("GET", &format!("/v1/incidents{q}")),
                Expect::ok(),
            )
        }
        1 => {
            let e = Expect {
                missing_ok: true,
                ..Expect::ok()
            };
            case(
                "incident",
                Req::new("GET", &format!("/v1/incidents/{id}")),
                e,
            )
        }
        2 => {
            // 404 (no such incident) or 409 (not in a state the action applies to).
            let body = json!({"note": words(rng, 3)});
            case(
                "incident action",
                Req::json("POST", &format!("/v1/incidents/{id}/{action}"), &body),
                Expect::default(),
            )
        }
        3 => case("approvals", Req::new("GET", "/v1/approvals"), Expect::ok()),
        4 => case("breakers", Req::new("GET", "/v1/breakers"), Expect::ok()),
        5 => {
            let body = json!({"matchers": ["code=slow_io", {"name": "resource", "value": "wal*"}],
                              "duration": rng.pick(&["2h", "30m", "1d"]), "comment": words(rng, 2)});
            case(
                "silence",
                Req::json("POST", "/v1/silences", &body),
                Expect::ok(),
            )
        }
        _ => {
            let q = if rng.chance(50) { "?all=true" } else { "" };
            case(
                "silences",
                Req::new("GET", &format!("/v1/silences{q}")),
                Expect::ok(),
            )
        }
    }
}

fn gen_reads(rng: &mut Rng) -> Case {
    let path = match rng.index(14) {
        0 => "/v1/history".to_string(),
        1 => format!(
            "/v1/history?metric=store.documents&since={}&step={}",
            rng.pick(&["-1h", "-90m", "now", "2026-12-05", "2026-12-05T12:00:00Z"]),
            rng.pick(&["1m", "5m", "1h"])
        ),
        2 => format!(
            "/v1/reports/{}?format={}",
            rng.pick(&["daily", "weekly"]),
            rng.pick(&["json", "md", "html"])
        ),
        3 => "/v1/reports/daily?date=2026-12-01".into(),
        4 => format!(
            "/v1/kpis/history?days={}&step={}",
            1 + rng.index(14),
            rng.pick(&["day", "hour"])
        ),
        5 => "/v1/escalations/latest".into(),
        6 => "/health".into(),
        7 => format!("/v1/health?tier={}", rng.pick(&["shallow", "deep"])),
        8 => "/v1/status".into(),
        9 => "/metrics".into(),
        10 => "/openapi.json".into(),
        11 => "/".into(),
        12 => format!("/v1/incidents/{}/bundle", 1 + rng.index(3)),
        _ => "/v1/breakers".into(),
    };
    let missing_ok = path.ends_with("/bundle");
    let mut req = Req::new("GET", &path);
    if path == "/metrics" && rng.chance(50) {
        req.set_header("Accept", "application/openmetrics-text");
    }
    case(
        "read",
        req,
        Expect {
            missing_ok,
            ..Expect::ok()
        },
    )
}

fn gen_misc(rng: &mut Rng) -> Case {
    if rng.chance(50) {
        let body = json!({"version": "4", "status": "firing", "alerts": [
            {"status": rng.pick(&["firing", "resolved"]), "labels": {"alertname": "FuzzAlert", "instance": "fz"},
             "annotations": {"summary": words(rng, 3)}, "fingerprint": "f1"}]});
        case(
            "alertmanager",
            Req::json("POST", "/v1/alertmanager", &body),
            Expect::ok(),
        )
    } else {
        case(
            "heal dry run",
            Req::new("POST", "/v1/heal?dry_run=true"),
            Expect::ok(),
        )
    }
}

/// A valid request of a seeded endpoint, weighted towards the ones that carry input.
fn generate(rng: &mut Rng) -> Case {
    match rng.index(20) {
        0..=4 => gen_docs(rng),
        5..=7 => gen_bulk(rng),
        8..=11 => gen_search(rng),
        12 | 13 => gen_collections(rng),
        14 | 15 => gen_operators(rng),
        16..=18 => gen_reads(rng),
        _ => gen_misc(rng),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Mutations.
// ---------------------------------------------------------------------------------------------------------------

/// Raw JSON values put in place of a field's (some are not valid JSON: `NaN`, `Infinity`, ...).
fn weird_token(rng: &mut Rng) -> (String, bool) {
    const VALID: &[&str] = &[
        "\"str\"",
        "-1",
        "0",
        "1.5",
        "-0",
        "123456789012345678901234567890",
        "4294967296",
        "18446744073709551616",
        "-9223372036854775809",
        "1e999",
        "1E-400",
        "null",
        "true",
        "[]",
        "{}",
        "[1,2,3]",
        "\"\"",
        "[null]",
        "{\"a\":{\"b\":[]}}",
    ];
    const INVALID: &[&str] = &[
        "NaN",
        "Infinity",
        "-Infinity",
        "0x10",
        "01",
        ".5",
        "+1",
        "'s'",
        "undefined",
    ];
    match rng.index(10) {
        0..=5 => (rng.pick(VALID).to_string(), true),
        6 | 7 => (rng.pick(INVALID).to_string(), false),
        8 => match rng.index(3) {
            // Nested 10,000 deep: valid JSON, deeper than any parser should recurse.
            0 => ("[".repeat(10_000) + &"]".repeat(10_000), true),
            1 => ("{\"a\":".repeat(10_000) + "1" + &"}".repeat(10_000), true),
            _ => (format!("[{}0]", "0,".repeat(20_000)), true),
        },
        _ => {
            let n = *rng.pick(&[4097usize, 30_000, 70_000]);
            (format!("\"{}\"", "w".repeat(n)), true)
        }
    }
}

const RAW: &str = "@@RAW@@";

/// The body with the placeholder string replaced by `token`.
fn with_token(v: &Value, token: &str) -> Vec<u8> {
    v.to_string()
        .replacen(&format!("\"{RAW}\""), token, 1)
        .into_bytes()
}

fn is_search(c: &Case) -> bool {
    c.req.path.contains("/search")
}

fn is_settings(c: &Case) -> bool {
    c.req.method == "PUT"
        && c.req.path.starts_with("/v1/collections/")
        && !c.req.path.contains("/docs/")
}

fn is_doc_put(c: &Case) -> bool {
    c.req.method == "PUT" && c.req.path.contains("/docs/")
}

/// Fragments of the query language, valid and broken, joined at random.
const QUERY_BITS: &[&str] = &[
    "alpha",
    "OR",
    "AND",
    "NOT",
    "+",
    "-",
    "(",
    ")",
    "\"",
    "\"two words\"~",
    "~99999999999",
    "*",
    "**",
    "wor*",
    "*ild",
    "year:[2000 TO",
    "year:[2000 TO 2010}",
    "year:[* TO *]",
    "lang: IN [",
    "lang: IN [en fr]",
    "lang:",
    ":",
    "text:",
    "year:abc",
    "draft:maybe",
    "date:\"2024-13-45\"",
    "\\",
    "/regex/",
    "^2",
    "{",
    "}",
    "\u{0}",
    "\u{202e}",
    "é",
    "ﬁ",
    "year:99999999999999999999999",
    "year:-9223372036854775808",
];

fn garbage_query(rng: &mut Rng) -> String {
    let n = 1 + rng.index(6);
    (0..n)
        .map(|_| *rng.pick(QUERY_BITS))
        .collect::<Vec<_>>()
        .join(if rng.chance(50) { " " } else { "" })
}

/// Replaces, drops or adds one field of a JSON body; the names a 4xx must mention.
fn mutate_field(rng: &mut Rng, c: &mut Case) -> String {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&c.req.body) else {
        return "no json body".into();
    };
    let keys: Vec<String> = obj.keys().cloned().collect();
    c.expect.ok = false;
    match rng.index(5) {
        4 if is_search(c) && obj.contains_key("text") => {
            let q = garbage_query(rng);
            obj.insert("text".into(), json!(q));
            c.req.body = Value::Object(obj).to_string().into_bytes();
            c.expect.names = vec!["query".into(), "text".into(), "filter".into()];
            format!("query {q:?}")
        }
        0 if !keys.is_empty() => {
            let k = rng.pick(&keys).clone();
            obj.remove(&k);
            if k == "text" && is_doc_put(c) {
                c.expect.refuse = true;
            }
            c.req.body = Value::Object(obj).to_string().into_bytes();
            format!("drop {k}")
        }
        1 => {
            obj.insert("zz_extra".into(), json!(1));
            if is_search(c) || is_settings(c) {
                c.expect.refuse = true;
                c.expect.names = vec!["zz_extra".into()];
            } else if is_doc_put(c) {
                c.expect.refuse = true;
            }
            c.req.body = Value::Object(obj).to_string().into_bytes();
            "extra field zz_extra".into()
        }
        _ if !keys.is_empty() => {
            let k = rng.pick(&keys).clone();
            let (token, valid) = weird_token(rng);
            obj.insert(k.clone(), json!(RAW));
            c.req.body = with_token(&Value::Object(obj), &token);
            if is_search(c) {
                c.expect.names = vec![k.clone(), "request_body_bytes_max".into()];
                if k == "text" {
                    c.expect.names.push("query".into()); // the contract's name for errors in the text query
                }
                if !valid {
                    c.expect.names.extend(["column".into(), "line".into()]);
                }
            }
            format!("{k} = {}", &token[..token.len().min(40)])
        }
        _ => "nothing".into(),
    }
}

/// Replaces a value somewhere inside a JSON body (inside `filter`, `meta`, `hybrid`, matchers...).
fn mutate_deep(rng: &mut Rng, c: &mut Case) -> String {
    let Ok(mut v) = serde_json::from_slice::<Value>(&c.req.body) else {
        return "no json body".into();
    };
    let mut path = Vec::new();
    let mut at = &mut v;
    loop {
        let next_key = match at {
            Value::Object(m) if !m.is_empty() => {
                let keys: Vec<String> = m.keys().cloned().collect();
                Some(rng.pick(&keys).clone())
            }
            Value::Array(a) if !a.is_empty() => Some(rng.index(a.len()).to_string()),
            _ => None,
        };
        match next_key {
            Some(k) if path.is_empty() || rng.chance(60) => {
                path.push(k.clone());
                at = match at {
                    Value::Object(m) => m.get_mut(&k).unwrap(),
                    Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
                    _ => unreachable!(),
                };
            }
            _ => break,
        }
    }
    let (mut token, _) = weird_token(rng);
    let beyond_i64 = token.parse::<f64>().is_ok_and(|v| v.abs() >= 9.2e18);
    if path.first().is_some_and(|p| p == "filter") && beyond_i64 {
        // Kept apart in `integer_filter_bounds_outside_i64` (it breaks the rules), so this run stays on.
        token = "\"str\"".into();
    }
    *at = json!(RAW);
    c.req.body = with_token(&v, &token);
    c.expect.ok = false;
    format!("{} = {}", path.join("."), &token[..token.len().min(40)])
}

/// Byte-level damage: truncation, invalid UTF-8, a duplicate key, an empty body.
fn mutate_bytes(rng: &mut Rng, c: &mut Case) -> String {
    if c.req.body.len() < 4 {
        return "body too short".into();
    }
    let ndjson = c.req.headers.iter().any(|(_, v)| v.contains("ndjson"));
    let was_ok = c.expect.ok;
    c.expect.ok = false;
    match rng.index(5) {
        4 if ndjson => {
            // CRLF line ends: JSON whitespace, so the body stays valid.
            c.req.body = String::from_utf8_lossy(&c.req.body)
                .replace('\n', "\r\n")
                .into_bytes();
            c.expect.ok = was_ok;
            "crlf line ends".into()
        }
        4 => {
            c.req.body.splice(0..0, [0xef, 0xbb, 0xbf]);
            c.expect.refuse = true;
            c.expect.names = vec!["column".into()];
            "byte order mark".into()
        }
        0 => {
            let cut = 1 + rng.index(c.req.body.len() - 2);
            c.req.body.truncate(cut);
            let text = String::from_utf8_lossy(&c.req.body).into_owned();
            let bad_line = text
                .lines()
                .position(|l| !l.trim().is_empty() && serde_json::from_str::<Value>(l).is_err());
            if ndjson {
                if let Some(n) = bad_line {
                    c.expect.refuse = true;
                    c.expect.names = vec![format!("line {}", n + 1)];
                }
            } else {
                c.expect.refuse = true;
                c.expect.names = vec!["column".into()];
            }
            format!("truncated at {cut}")
        }
        1 => {
            let quote = c.req.body.iter().position(|b| *b == b'"').unwrap_or(0);
            let at = (quote + 1).min(c.req.body.len());
            c.req.body.splice(at..at, [0xff, 0xfe, 0xc3]);
            c.expect.refuse = true;
            c.expect.names = if ndjson {
                vec!["line 1".into()]
            } else {
                vec!["column".into(), "utf-8".into()]
            };
            format!("invalid UTF-8 at {at}")
        }
        2 if c.req.body.first() == Some(&b'{') => {
            let dup = *rng.pick(&[
                "\"text\":\"dup\",",
                "\"k\":7,",
                "\"id\":\"fz-dup\",",
                "\"dimension\":9,",
            ]);
            c.req.body.splice(1..1, dup.bytes());
            format!("duplicate key {dup}")
        }
        _ => {
            c.req.body.clear();
            if is_doc_put(c) {
                c.expect.refuse = true;
            }
            "empty body".into()
        }
    }
}

/// Odd ids and collection names in the path.
fn mutate_path(rng: &mut Rng, c: &mut Case) -> String {
    const IDS: &[&str] = &[
        "%00",
        "..",
        "%2e%2e",
        "a%2Fb",
        "%2F",
        "%ff",
        "%",
        "%zz",
        "%20",
        "%C3%A9",
        "a%3Fb",
        ".medic%2Fprobe",
        "%E2%80%AE",
        "a%00b",
        "%2e",
        "~",
        "%25",
        "..%2F..%2Fetc%2Fpasswd",
    ];
    const COLLS: &[&str] = &[
        "UP", "-x", "%00", "..", "fzc%00", "a%2Fb", "%C5%BF", "nope", "%ff", "a b",
    ];
    let segs: Vec<&str> = c.req.path.split('?').next().unwrap().split('/').collect();
    c.expect.ok = false;
    if segs.len() >= 4 && segs[segs.len() - 2] == "docs" {
        let id = match rng.index(4) {
            0 => "x".repeat(257),
            1 => "x".repeat(256),
            _ => rng.pick(IDS).to_string(),
        };
        if id.len() == 257 {
            c.expect.refuse = true;
            c.expect.names = vec!["256".into()];
        }
        let mut p = segs[..segs.len() - 1].join("/");
        p.push('/');
        p.push_str(&id);
        c.req.path = p;
        return format!("id {}", &id[..id.len().min(20)]);
    }
    if segs.len() >= 4 && segs[1] == "v1" && segs[2] == "collections" {
        let mut name = match rng.index(3) {
            0 => "a".repeat(65),
            _ => rng.pick(COLLS).to_string(),
        };
        if name == "nope" && is_settings(c) {
            name = "UP".into(); // a valid name to create; elsewhere an unknown collection
        }
        if name.contains(' ') {
            c.expect.protocol = true;
        } else {
            c.expect.refuse = true;
        }
        c.expect.effect = Effect::None;
        let rest = segs[4..].join("/");
        c.req.path = format!(
            "/v1/collections/{name}{}{rest}",
            if rest.is_empty() { "" } else { "/" }
        );
        return format!("collection {}", &name[..name.len().min(20)]);
    }
    "no id in path".into()
}

/// Query parameters: an unknown one, or a known one given garbage.
fn mutate_query(rng: &mut Rng, c: &mut Case) -> String {
    let (base, query) = c.req.path.split_once('?').unwrap_or((&c.req.path, ""));
    let (base, query) = (base.to_string(), query.to_string());
    let strict = base == "/v1/incidents" || (base == "/v1/history" && query.contains("metric="));
    let checked = strict
        || base.starts_with("/v1/kpis")
        || base.starts_with("/v1/reports")
        || base == "/v1/health";
    c.expect.ok = false;
    let params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if params.is_empty() || rng.chance(40) {
        let sep = if query.is_empty() { "?" } else { "&" };
        c.req.path = format!("{}{sep}zz_param=1", c.req.path);
        if strict {
            c.expect.refuse = true;
            c.expect.names = vec!["zz_param".into()];
        }
        return "unknown parameter".into();
    }
    let victim = rng.pick(&params).split('=').next().unwrap().to_string();
    let value = *rng.pick(&[
        "%00",
        "garbage%20value",
        "99999999999999999999999",
        "%ff%fe",
        "NaN",
        "-Infinity",
    ]);
    let rebuilt: Vec<String> = params
        .iter()
        .map(|p| {
            if p.starts_with(&format!("{victim}=")) {
                format!("{victim}={value}")
            } else {
                p.to_string()
            }
        })
        .collect();
    c.req.path = format!("{base}?{}", rebuilt.join("&"));
    let free_text = victim == "resource" || victim == "metric";
    if checked && !(victim == "limit" && value.starts_with('9')) && !free_text {
        c.expect.refuse = true;
        c.expect.names = vec![victim.clone()];
    }
    format!("{victim}={value}")
}

/// Headers: wrong or odd `Content-Type`, chunked encoding, `Expect`, absurd sizes and counts, a short length.
fn mutate_headers(rng: &mut Rng, c: &mut Case) -> String {
    match rng.index(8) {
        0 => {
            let ct = *rng.pick(&[
                "text/plain",
                "application/xml",
                "multipart/form-data; boundary=x",
                "",
                "\u{7f}",
            ]);
            c.req.set_header("Content-Type", ct);
            c.expect.ok = false;
            c.expect.protocol |= ct.contains('\u{7f}'); // not a valid header value: the HTTP layer refuses it
            c.expect.names.clear(); // a 415 names the content type, not a field
            format!("content-type {ct:?}")
        }
        1 => {
            c.req
                .headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
            c.expect.ok = false;
            c.expect.names.clear();
            "no content-type".into()
        }
        2 => {
            c.req.set_header("Transfer-Encoding", "chunked");
            "chunked".into()
        }
        3 => {
            c.req.set_header("Expect", "100-continue");
            "expect 100-continue".into()
        }
        4 => {
            c.req
                .set_header("X-Fuzz", &"h".repeat(60_000 + rng.index(60_000)));
            c.expect.ok = false;
            c.expect.protocol = true;
            "huge header".into()
        }
        5 => {
            for i in 0..150 + rng.index(300) {
                c.req.headers.push((format!("X-F{i}"), "v".into()));
            }
            c.expect.ok = false;
            c.expect.protocol = true;
            "many headers".into()
        }
        6 if c.req.body.len() >= 2 => {
            let short = c.req.body.len() / 2;
            c.req.set_header("Content-Length", &short.to_string());
            c.expect.ok = false;
            let framed_otherwise = c
                .req
                .headers
                .iter()
                .any(|(_, v)| v.contains("ndjson") || v == "chunked");
            c.expect.refuse = !framed_otherwise;
            c.expect.protocol = true;
            format!("content-length {short} of {}", c.req.body.len())
        }
        _ => {
            c.req
                .set_header("Content-Type", "application/json; charset=utf-8");
            "content-type with charset".into()
        }
    }
}

/// One line of an NDJSON body given a weird field, an extra one, or none of its `id`: a bad line is a 4xx naming
/// its number.
fn mutate_line(rng: &mut Rng, c: &mut Case) -> String {
    let text = String::from_utf8_lossy(&c.req.body).into_owned();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    if lines.is_empty() {
        return "no lines".into();
    }
    let n = rng.index(lines.len());
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(&lines[n]) else {
        return "no json line".into();
    };
    let was_ok = c.expect.ok;
    c.expect.ok = false;
    let bad = match rng.index(3) {
        0 => {
            obj.remove("id");
            lines[n] = Value::Object(obj).to_string();
            "no id".to_string()
        }
        1 => {
            obj.insert("zz_extra".into(), json!([1]));
            lines[n] = Value::Object(obj).to_string();
            c.expect.ok = was_ok; // other fields are ignored, named in `warnings`
            String::new()
        }
        _ => {
            let keys: Vec<String> = obj.keys().cloned().collect();
            let k = rng.pick(&keys).clone();
            let (token, valid) = weird_token(rng);
            obj.insert(k.clone(), json!(RAW));
            lines[n] = String::from_utf8(with_token(&Value::Object(obj), &token)).unwrap();
            let not_a_string = !token.starts_with('"');
            let bad_id = k == "id" && (token == "\"\"" || token.len() > 258);
            if !valid || bad_id || ((k == "id" || k == "text") && not_a_string) {
                format!("{k} = {}", &token[..token.len().min(30)])
            } else {
                c.label.push_str(&format!(
                    " / line {} {k} = {}",
                    n + 1,
                    &token[..token.len().min(30)]
                ));
                String::new()
            }
        }
    };
    c.req.body = lines
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .into_bytes();
    if bad.is_empty() {
        return "line field".into();
    }
    c.expect.refuse = true;
    c.expect.names = vec![format!("line {}", n + 1)];
    format!("line {} {bad}", n + 1)
}

/// Zero to two seeded mutations of a valid case.
fn mutate(rng: &mut Rng, c: &mut Case) {
    if rng.chance(25) {
        return;
    }
    let count = 1 + rng.index(2);
    for _ in 0..count {
        let ndjson = c.req.headers.iter().any(|(_, v)| v.contains("ndjson"));
        let what = match rng.index(9) {
            0 | 1 if ndjson => mutate_line(rng, c),
            0 | 1 => mutate_field(rng, c),
            2 => mutate_deep(rng, c),
            3 | 4 => mutate_bytes(rng, c),
            5 => mutate_path(rng, c),
            6 => mutate_query(rng, c),
            _ => mutate_headers(rng, c),
        };
        c.label = format!("{} / {what}", c.label);
        if c.expect.protocol || c.expect.refuse {
            break;
        }
    }
    if count > 1 {
        c.expect.names.clear(); // two faults: the error may name either
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Limits at and just past their documented values, and raw protocol oddities.
// ---------------------------------------------------------------------------------------------------------------

/// Small limits, so that the edges are cheap to reach.
const BODY_MAX: usize = 65_536;
const BULK_BODY_MAX: usize = 262_144;
const BULK_DOCS_MAX: usize = 100;
const K_MAX: usize = 500;
const LIMITS_CONFIG: &str = "[http]\nrequest_body_bytes_max = 65536\nbulk_body_bytes_max = 262144\n\
                             bulk_docs_max = 100\nsearch_k_max = 500\n";

/// A document body of exactly `len` bytes (its text padded).
fn doc_of_len(len: usize) -> Vec<u8> {
    let base = json!({"text": "", "meta": {"pad": true}}).to_string().len();
    json!({"text": "p".repeat(len - base), "meta": {"pad": true}})
        .to_string()
        .into_bytes()
}

fn bulk_of(lines: usize, text_len: usize) -> String {
    (0..lines)
        .map(|i| {
            format!(
                "{}\n",
                json!({"id": format!("lim-{i}"), "text": "b".repeat(text_len)})
            )
        })
        .collect()
}

fn search(body: Value, names: &[&str]) -> Case {
    let label = format!(
        "search {}",
        body.to_string().chars().take(60).collect::<String>()
    );
    case(
        &label,
        Req::json("POST", "/v1/search", &body),
        Expect::refuse(names),
    )
}

fn nested_filter(depth: usize) -> Value {
    (0..depth).fold(json!({"lang": "en"}), |f, _| json!({"not": f}))
}

fn limit_cases_docs() -> Vec<Case> {
    let mut at_limit = Req::new("PUT", "/v1/docs/lim-body");
    at_limit.set_header("Content-Type", "application/json");
    at_limit.body = doc_of_len(BODY_MAX);
    let mut over = at_limit.clone();
    over.body = doc_of_len(BODY_MAX + 1);
    let mut over_chunked = over.clone();
    over_chunked.set_header("Transfer-Encoding", "chunked");
    let put = |id: &str| Req::json("PUT", &docs_path("default", id), &json!({"text": "edge"}));
    let put_ok = Expect {
        effect: Effect::Put("default".into()),
        ..Expect::ok()
    };
    let bulk_ok = Expect {
        effect: Effect::Bulk("default".into()),
        ..Expect::ok()
    };
    let deep_meta = format!(
        "{{\"text\":\"x\",\"meta\":{}1{}}}",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    let mut deep = Req::new("PUT", "/v1/docs/lim-deep");
    deep.set_header("Content-Type", "application/json");
    deep.body = deep_meta.into_bytes();
    vec![
        case("body at request_body_bytes_max", at_limit, put_ok.clone()),
        case(
            "body over request_body_bytes_max",
            over,
            Expect::refuse(&["request_body_bytes_max"]),
        ),
        case(
            "chunked body over request_body_bytes_max",
            over_chunked,
            Expect::refuse(&["request_body_bytes_max"]),
        ),
        case("id of 256 bytes", put(&"i".repeat(256)), put_ok.clone()),
        case(
            "id of 257 bytes",
            put(&"i".repeat(257)),
            Expect::refuse(&["256"]),
        ),
        case("meta nested 10000 deep", deep, Expect::refuse(&[])),
        case(
            "bulk at bulk_docs_max",
            Req::ndjson("/v1/docs", bulk_of(BULK_DOCS_MAX, 10)),
            bulk_ok.clone(),
        ),
        case(
            "bulk over bulk_docs_max",
            Req::ndjson("/v1/docs", bulk_of(BULK_DOCS_MAX + 1, 10)),
            Expect::refuse(&["bulk_docs_max"]),
        ),
        // Over request_body_bytes_max but within bulk_body_bytes_max: the bulk limit governs.
        case(
            "bulk of 200 KB",
            Req::ndjson("/v1/docs", bulk_of(80, 2500)),
            bulk_ok,
        ),
        case(
            "bulk over bulk_body_bytes_max",
            Req::ndjson("/v1/docs", bulk_of(90, BULK_BODY_MAX / 89)),
            Expect::refuse(&["bulk_body_bytes_max"]),
        ),
        case(
            "bulk line without id",
            Req::ndjson(
                "/v1/docs",
                "{\"id\":\"a\",\"text\":\"t\"}\n{\"text\":\"t\"}\n".into(),
            ),
            Expect::refuse(&["line 2"]),
        ),
        case(
            "vector of the wrong dimension",
            Req::json(
                "PUT",
                "/v1/docs/lim-dim",
                &json!({"text": "t", "vector": [1.0, 2.0]}),
            ),
            Expect::refuse(&["dimension"]),
        ),
    ]
}

fn limit_cases_search() -> Vec<Case> {
    let hybrid = |extra: Value| {
        let mut b = json!({"text": "alpha", "vector": [1.0, 0.5, 0.0], "k": 10});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let many: Vec<Value> = (0..1025).map(|i| json!({"year": i})).collect();
    vec![
        search(json!({"text": "alpha", "k": 0}), &["k"]),
        search(json!({"text": "alpha", "k": K_MAX + 1}), &["k"]),
        search(json!({"vector": [1.0, 0.5, 0.0], "k": K_MAX + 1}), &["k"]),
        search(
            json!({"text": "alpha", "k": 5, "offset": 10_001}),
            &["offset"],
        ),
        search(
            json!({"text": "a".repeat(4097), "k": 5}),
            &["4096", "text", "query"],
        ),
        search(
            json!({"text": "alpha", "k": 5, "filter": nested_filter(17)}),
            &["filter", "16", "depth"],
        ),
        search(
            json!({"text": "alpha", "k": 5, "filter": {"or": many}}),
            &["filter", "1024"],
        ),
        search(
            json!({"text": "alpha", "k": 5, "highlight": {"pre": "<".repeat(65)}}),
            &["highlight", "64"],
        ),
        search(
            json!({"text": "alpha", "k": 5, "highlight": {"chars": 0}}),
            &["highlight", "chars"],
        ),
        search(
            hybrid(json!({"k": 500, "offset": 501})),
            &["offset", "1000"],
        ),
        search(
            hybrid(json!({"hybrid": {"text_weight": 0, "vector_weight": 0}})),
            &["hybrid", "weight"],
        ),
        search(
            hybrid(json!({"hybrid": {"text_weight": 1001}})),
            &["hybrid", "text_weight"],
        ),
        search(
            json!({"vector": [1.0, 0.5, 0.0], "k": 5, "ef": 10_001}),
            &["ef"],
        ),
        search(json!({"text": "alpha", "k": 5, "ef": 5}), &["ef", "vector"]),
        search(
            json!({"text": "alpha", "k": 5, "consistency": "strong", "timeout_ms": 10_001}),
            &["timeout_ms"],
        ),
        search(
            json!({"text": "alpha", "k": 5, "timeout_ms": 5}),
            &["timeout_ms", "consistency"],
        ),
        search(
            json!({"text": "alpha", "k": 5, "consistency": "sometimes"}),
            &["consistency"],
        ),
        search(
            json!({"text": "alpha", "k": 5, "scan_docs_max": 0}),
            &["scan_docs_max"],
        ),
        search(
            json!({"text": "alpha", "k": 5, "include": ["text", "secret"]}),
            &["include"],
        ),
        search(
            json!({"vector": [0.0, 0.0, 0.0], "k": 5}),
            &["vector", "zero"],
        ),
        search(json!({"vector": [1.0, 2.0], "k": 5}), &["dimension"]),
        search(json!({"text": "alpha AND (", "k": 5}), &["column", "query"]),
        search(
            json!({"text": format!("{}alpha{}", "(".repeat(40), ")".repeat(40)), "k": 5}),
            &["query", "32", "nest"],
        ),
        search(
            json!({"vector": [1.0, 0.5, 0.0], "k": 5, "probes": 2}),
            &["probes", "ivf"],
        ),
        search(json!({"text": "alpha", "k": 5, "bogus": 1}), &["bogus"]),
        search(json!({"k": 5}), &["text", "vector"]),
    ]
}

/// Query strings out of their documented bounds: (path, the error names one of these).
const QUERY_LIMITS: &[(&str, &[&str])] = &[
    ("/v1/history?metric=x&since=yesterday", &["since"]),
    ("/v1/history?metric=x&step=0s", &["step"]),
    ("/v1/kpis/history?days=91", &["days"]),
    ("/v1/kpis/history?step=minute", &["step"]),
    ("/v1/reports/daily?date=2026-02-30", &["date"]),
    ("/v1/reports/daily?format=pdf", &["format"]),
    ("/v1/incidents?severity=sev9", &["severity"]),
    ("/v1/incidents?status=sleeping", &["status"]),
    ("/v1/incidents?limit=0", &["limit"]),
    ("/v1/incidents/abc/bundle", &["abc", "number", "id"]),
    ("/v1/health?tier=extreme", &["tier"]),
];

/// Collection settings and names out of their documented bounds.
fn limit_cases_collections() -> Vec<Case> {
    let put_coll = |name: &str, body: Value, names: &[&str]| {
        case(
            &format!("collection {name} {body}"),
            Req::json("PUT", &format!("/v1/collections/{name}"), &body),
            Expect::refuse(names),
        )
    };
    vec![
        put_coll("UPPER", json!({}), &["UPPER", "name"]),
        put_coll(&"a".repeat(65), json!({}), &["64", "name"]),
        put_coll("lim-c", json!({"metric": "cos"}), &["metric"]),
        put_coll("lim-c", json!({"dimension": 4097}), &["dimension"]),
        put_coll("lim-c", json!({"dimension": 0}), &["dimension"]),
        put_coll("lim-c", json!({"ivf": {"lists": 0}}), &["lists"]),
        put_coll(
            "lim-c",
            json!({"ivf": {"lists": 4, "probes": 5}}),
            &["probes"],
        ),
        put_coll("lim-c", json!({"recall_floor": 1.5}), &["recall_floor"]),
        put_coll("lim-c", json!({"fields": {"x": "text"}}), &["fields", "x"]),
        put_coll(
            "lim-c",
            json!({"index": "hnsw", "indexes": ["flat", "text"]}),
            &["index"],
        ),
        put_coll("lim-c", json!({"colour": "red"}), &["colour"]),
    ]
}

fn limit_cases_rest() -> Vec<Case> {
    let get = |path: &str, names: &[&str]| case(path, Req::new("GET", path), Expect::refuse(names));
    let matchers: Vec<String> = (0..17).map(|i| format!("code=c{i}")).collect();
    let silence = |body: Value, names: &[&str]| {
        case(
            &format!("silence {body}"),
            Req::json("POST", "/v1/silences", &body),
            Expect::refuse(names),
        )
    };
    let labels: serde_json::Map<String, Value> = (0..65)
        .map(|i| (format!("l{i}"), json!("v")))
        .chain([("alertname".to_string(), json!("A"))])
        .collect();
    let alert =
        |labels: Value| json!({"version": "4", "alerts": [{"status": "firing", "labels": labels}]});
    let alerts: Vec<Value> = (0..1001)
        .map(|i| json!({"status": "firing", "labels": {"alertname": format!("A{i}")}}))
        .collect();
    let mut out: Vec<Case> = QUERY_LIMITS
        .iter()
        .map(|(path, names)| get(path, names))
        .collect();
    out.extend([
        case(
            "alertmanager label of 4097 bytes",
            Req::json("POST", "/v1/alertmanager", &alert(json!({"alertname": "A", "x": "v".repeat(4097)}))),
            Expect::refuse(&["4096", "label_bytes_max"]),
        ),
        case(
            "alertmanager 66 labels",
            Req::json("POST", "/v1/alertmanager", &alert(Value::Object(labels))),
            Expect::refuse(&["64", "labels"]),
        ),
        case(
            "incident note of 4097 bytes",
            Req::json("POST", "/v1/incidents/1/annotate", &json!({"note": "n".repeat(4097)})),
            Expect::refuse(&["note", "4096", "incident"]),
        ),
        case(
            "drop default",
            Req::new("DELETE", "/v1/collections/default"),
            Expect::refuse(&["default"]),
        ),
        case(
            "unknown collection",
            Req::new("GET", "/v1/collections/nope/docs/x"),
            Expect::refuse(&["nope"]),
        ),
        get(
            &format!("/v1/history?metric={}", "m".repeat(257)),
            &["256", "metric"],
        ),
        get(
            "/v1/history?metric=x&since=now&until=-1h",
            &["since", "until"],
        ),
        get(
            "/v1/kpis/history?days=15&step=hour",
            &["days", "14", "hour"],
        ),
        silence(
            json!({"matchers": matchers, "comment": "c"}),
            &["16", "matchers"],
        ),
        silence(
            json!({"matchers": ["code=x"], "duration": "91d", "comment": "c"}),
            &["90", "duration"],
        ),
        silence(
            json!({"matchers": ["colour=x"], "comment": "c"}),
            &["colour", "name"],
        ),
        case(
            "alertmanager 1001 alerts",
            Req::json(
                "POST",
                "/v1/alertmanager",
                &json!({"version": "4", "alerts": alerts}),
            ),
            Expect::refuse(&["1000", "alerts"]),
        ),
        case(
            "alertmanager pending",
            Req::json(
                "POST",
                "/v1/alertmanager",
                &json!({"version": "4", "alerts": [{"status": "pending", "labels": {"alertname": "A"}}]}),
            ),
            Expect::refuse(&["alerts[0].status", "pending"]),
        ),
        case(
            "accept-loss unconfirmed",
            Req::json("POST", "/v1/accept-loss", &json!({"confirm": "yes"})),
            Expect::refuse(&["confirm", "lost", "loss"]),
        ),
    ]);
    out
}

/// Raw bytes on one connection, and how many answers (at least) they must get.
struct Raw {
    label: &'static str,
    bytes: Vec<u8>,
    answers: usize,
    /// Every answer must be 2xx (a well-formed request), else any non-5xx.
    all_ok: bool,
    half_close: bool,
}

fn raw(label: &'static str, bytes: impl Into<Vec<u8>>, answers: usize, all_ok: bool) -> Raw {
    Raw {
        label,
        bytes: bytes.into(),
        answers,
        all_ok,
        half_close: false,
    }
}

/// Malformed or unusual HTTP on a raw connection: (what, bytes, answers at least).
const PROTOCOL: &[(&str, &str, usize)] = &[
    (
        "absolute-form target",
        "GET http://127.0.0.1/health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        1,
    ),
    ("garbage request line", "HELLO\r\n\r\n", 0),
    (
        "lowercase method",
        "get /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        1,
    ),
    (
        "NUL in the path",
        "GET /v1/docs/a\0b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        0,
    ),
    (
        "bad content-length",
        "PUT /v1/docs/x HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\nConnection: close\r\n\r\n{}",
        1,
    ),
    (
        "negative content-length",
        "PUT /v1/docs/x HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\nConnection: close\r\n\r\n{}",
        1,
    ),
    (
        "two content-lengths",
        "PUT /v1/docs/x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{}",
        1,
    ),
    (
        "20-digit content-length",
        "PUT /v1/docs/x HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\nConnection: close\r\n\r\n{}",
        1,
    ),
    (
        "content-length and chunked",
        "PUT /v1/docs/x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        1,
    ),
    (
        "bad chunk size",
        "PUT /v1/docs/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        1,
    ),
    (
        "header without colon",
        "GET /health HTTP/1.1\r\nHost: h\r\nnonsense\r\nConnection: close\r\n\r\n",
        1,
    ),
    ("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0),
    ("HTTP/9.9", "GET /health HTTP/9.9\r\nHost: h\r\n\r\n", 0),
    (
        "OPTIONS *",
        "OPTIONS * HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        1,
    ),
    (
        "unknown method on a route",
        "PATCH /v1/docs/x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        1,
    ),
];

/// [`PROTOCOL`], and HTTP/1.0, pipelining, an oversized URL and a body cut short.
fn protocol_cases() -> Vec<Raw> {
    let doc = json!({"text": "over http one zero", "meta": {"v": 10}}).to_string();
    let put10 = format!(
        "PUT /v1/docs/raw-10 HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{doc}",
        doc.len()
    );
    let pdoc = json!({"text": "pipelined", "vector": [0.25, 0.5, 1.0]}).to_string();
    let pipelined = format!(
        "GET /health HTTP/1.1\r\nHost: h\r\n\r\nPUT /v1/docs/raw-pipe HTTP/1.1\r\nHost: h\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{pdoc}GET /v1/docs/raw-pipe HTTP/1.1\r\n\
         Host: h\r\nConnection: close\r\n\r\n",
        pdoc.len()
    );
    let get = "GET /health HTTP/1.1\r\nHost: h\r\n\r\n";
    let fifty = get.repeat(49) + "GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    let long_url = format!(
        "GET /v1/docs/{} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        "u".repeat(100_000)
    );
    let cut = "PUT /v1/docs/raw-cut HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n\
               Content-Length: 1000\r\n\r\n{\"text\":\"cut";
    let mut truncated = raw("truncated body, half-closed", cut, 0, false);
    truncated.half_close = true;
    let mut out = vec![
        raw("HTTP/1.0 GET", "GET /health HTTP/1.0\r\n\r\n", 1, true),
        raw("HTTP/1.0 PUT", put10, 1, true),
        raw("pipelined put and get", pipelined, 3, true),
        raw("50 pipelined gets", fifty, 50, true),
        raw("100 KB URL", long_url, 1, false),
        truncated,
    ];
    out.extend(PROTOCOL.iter().map(|(label, bytes, answers)| {
        raw(label, *bytes, *answers, *label == "absolute-form target")
    }));
    out
}

impl Fuzz {
    /// Raw bytes: enough answers, no 5xx but a 503 with a reason, JSON errors for well-formed requests.
    fn run_raw(&mut self, r: &Raw) {
        self.sent += 1;
        let c = case(
            r.label,
            Req::new(
                "RAW",
                &String::from_utf8_lossy(&r.bytes[..r.bytes.len().min(200)]),
            ),
            Expect::default(),
        );
        let replies = exchange(&self.addr, r.bytes.clone(), r.half_close).unwrap_or_default();
        self.check_alive(&c);
        if replies.len() < r.answers {
            self.violation(
                &c,
                format!(
                    "{} answers of {} expected: {replies:?}",
                    replies.len(),
                    r.answers
                ),
            );
        }
        // The oversized URL is well-formed too; its answer is checked in `http_layer_limits_are_named`.
        let well_formed = ["lowercase method", "OPTIONS *", "unknown method on a route"];
        for reply in &replies {
            *self.statuses.entry(reply.status).or_default() += 1;
            let expect = Expect {
                protocol: !well_formed.contains(&r.label),
                ok: r.all_ok,
                ..Expect::default()
            };
            self.check_reply(&case(r.label, c.req.clone(), expect), reply);
        }
        let acked = |i: usize| replies.get(i).is_some_and(|x| x.status == 200);
        if r.label == "HTTP/1.0 PUT" && acked(0) {
            let doc = json!({"text": "over http one zero", "meta": {"v": 10}});
            self.model
                .insert(("default".into(), "raw-10".into()), Some(doc));
        }
        if r.label == "pipelined put and get" && acked(1) {
            let doc = json!({"text": "pipelined", "vector": [0.25, 0.5, 1.0]});
            if let Some(why) = replies
                .get(2)
                .and_then(Reply::json)
                .and_then(|g| differs(&doc, &g))
            {
                self.violation(&c, format!("pipelined read-back: {why}"));
            }
            self.model
                .insert(("default".into(), "raw-pipe".into()), Some(doc));
        }
    }

    /// The end of a run: every acknowledged document reads back, the full scrub passes, and so after a restart.
    fn finish(mut self, logs: &Path, data: &Path) -> Vec<String> {
        let bad = self.read_back();
        self.violations.extend(
            bad.into_iter()
                .map(|b| format!("seed={} read-back: {b}", self.seed)),
        );
        let full = self.run(&case(
            "full scrub",
            Req::new("GET", "/v1/health?tier=full"),
            Expect::ok(),
        ));
        let checks = full
            .as_ref()
            .and_then(Reply::json)
            .map(|v| v["checks"].clone())
            .unwrap_or_default();
        for check in checks
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["passed"] != json!(true))
        {
            // The store's and the derived indexes' integrity must hold; other findings (an HNSW graph full of
            // tombstones after the run's deletes, the run's own firing alert) are the engine's work, not a loss.
            let name = check["name"].as_str().unwrap_or("");
            let at_risk = check["issues"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|i| i["data_at_risk"] == json!(true));
            if name.starts_with("store.") || name.starts_with("derived.agreement") || at_risk {
                self.violations
                    .push(format!("seed={} full scrub: {check}", self.seed));
            } else {
                eprintln!(
                    "full scrub, not an integrity check: {name}: {}",
                    check["message"]
                );
            }
        }
        let log = self.d.stderr();
        let panics: Vec<String> = log
            .lines()
            .filter(|l| l.contains("panicked at"))
            .map(|l| l.chars().take(600).collect())
            .collect();
        if !panics.is_empty() {
            self.violations.push(format!(
                "seed={} {} panics in the daemon's log, the first: {}",
                self.seed,
                panics.len(),
                panics[0]
            ));
        }
        eprintln!(
            "seed={} sent {} requests, {} documents in the model, statuses {:?}",
            self.seed,
            self.sent,
            self.model.len(),
            self.statuses
        );
        let Fuzz {
            d,
            model,
            mut violations,
            seed,
            ..
        } = self;
        d.stop();
        let d = support::start_with_config(data, logs, LIMITS_CONFIG);
        let mut again = Fuzz::new(d, seed);
        again.model = model;
        violations.extend(
            again
                .read_back()
                .into_iter()
                .map(|b| format!("seed={seed} after restart: {b}")),
        );
        again.d.stop();
        violations
    }
}

/// Starts a daemon with small limits and the named collection the run writes to.
fn fuzz_daemon(seed: u64, data: &Path, logs: &Path) -> Fuzz {
    let d = support::start_with_config(data, logs, LIMITS_CONFIG);
    let mut f = Fuzz::new(d, seed);
    let setup = [
        case(
            "first vector fixes dimension 3",
            Req::json(
                "PUT",
                "/v1/docs/fz-0",
                &json!({"text": "alpha", "vector": [1.0, 0.0, 0.5]}),
            ),
            Expect {
                effect: Effect::Put("default".into()),
                ..Expect::ok()
            },
        ),
        case(
            "create fzc",
            Req::json("PUT", &format!("/v1/collections/{COLL}"), &coll_settings()),
            Expect::ok(),
        ),
    ];
    for c in &setup {
        f.run(c);
    }
    f
}

/// `rounds` seeded cases (valid requests, most mutated) on a daemon, then the limit and protocol cases.
fn http_attack(seed: u64, rounds: usize, deterministic: bool) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let (data, logs) = (tmp.path().join("data"), tmp.path().to_path_buf());
    eprintln!("http attack: seed={seed} rounds={rounds} (MEDIC_ATTACK_SEED={seed} replays it)");
    let mut f = fuzz_daemon(seed, &data, &logs);
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    for _ in 0..rounds {
        let mut c = generate(&mut rng);
        mutate(&mut rng, &mut c);
        f.run(&c);
    }
    eprintln!("{rounds} fuzzed cases in {:?}", started.elapsed());
    if deterministic {
        let limits = [
            limit_cases_docs(),
            limit_cases_search(),
            limit_cases_collections(),
            limit_cases_rest(),
        ];
        for c in limits.iter().flatten() {
            f.run(c);
        }
        for r in &protocol_cases() {
            f.run_raw(r);
        }
    }
    f.finish(&logs, &data)
}

fn assert_clean(what: &str, seed: u64, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "{what}: {} broken rules (replay with MEDIC_ATTACK_SEED={seed}):\n{}",
        violations.len(),
        violations.join("\n")
    );
}

#[test]
fn http_inputs_fuzzed_against_the_rules() {
    let seed = seed();
    let violations = http_attack(seed, 1200, true);
    assert_clean("http", seed, &violations);
}

#[test]
#[ignore = "soak: MEDIC_ATTACK_ROUNDS rounds (default 3000)"]
fn soak_http_inputs() {
    let seed = seed();
    let violations = http_attack(seed, rounds(3000), false);
    assert_clean("http soak", seed, &violations);
}

// ---------------------------------------------------------------------------------------------------------------
// The configuration file.
// ---------------------------------------------------------------------------------------------------------------

/// How `medic serve --config FILE` took a file.
#[derive(Debug)]
struct Served {
    code: Option<i32>,
    started: bool,
    stderr: String,
    took: Duration,
}

const SERVE_DEADLINE: Duration = Duration::from_secs(20);

/// Runs `medic serve --config FILE` on a scratch data directory until it exits, prints its URL (then it is
/// killed: it started), or the deadline passes (killed too: a hang).
fn serve_config(dir: &Path, n: usize, config: &[u8]) -> Served {
    let path = dir.join(format!("c{n}.toml"));
    std::fs::write(&path, config).unwrap();
    let err_path = dir.join(format!("c{n}.err"));
    let started_at = Instant::now();
    // A file that sets `listen` is served on it (the flag would win over it).
    let listen: &[&str] = if String::from_utf8_lossy(config).contains("listen =") {
        &[]
    } else {
        &["--listen", "127.0.0.1:0"]
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_medic"))
        .arg("serve")
        .args(listen)
        .arg("--data")
        .arg(dir.join(format!("d{n}")))
        .arg("--config")
        .arg(&path)
        .env_remove("MEDIC_CONFIG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    let (code, started) = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break (status.code(), false);
        }
        if rx.try_recv().is_ok_and(|l| l.starts_with("http://")) {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        if started_at.elapsed() > SERVE_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break (None, false);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Served {
        code,
        started,
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        took: started_at.elapsed(),
    }
}

/// A key of the default configuration: its section, name, default value (TOML) and the comment above it.
#[derive(Clone, Debug)]
struct Key {
    section: String,
    name: String,
    default: String,
    comment: String,
}

fn config_keys(default: &str) -> Vec<Key> {
    let (mut section, mut comment, mut keys) = (String::new(), String::new(), Vec::new());
    for line in default.lines() {
        let t = line.trim();
        if let Some(c) = t.strip_prefix('#') {
            comment.push_str(c);
            comment.push(' ');
        } else if t.starts_with("[[") {
            section.clear(); // an array of tables: its entries need fields of their own
            comment.clear();
        } else if t.starts_with('[') {
            section = t.trim_matches(['[', ']']).to_string();
            comment.clear();
        } else if let Some((k, v)) = t.split_once(" = ").filter(|_| !section.is_empty()) {
            keys.push(Key {
                section: section.clone(),
                name: k.into(),
                default: v.into(),
                comment: comment.clone(),
            });
            comment.clear();
        } else {
            comment.clear();
        }
    }
    keys
}

/// A range endpoint: a number (`1e7`, `2^40`) or, for a `_us`/`_ms` key, a duration (`1 s`, `7 days`).
fn endpoint(text: &str, unit_us: f64) -> Option<f64> {
    let t = text.trim();
    if let Some((b, e)) = t.split_once('^') {
        return Some(b.parse::<f64>().ok()?.powf(e.parse().ok()?));
    }
    if let Ok(v) = t.parse::<f64>() {
        return Some(v);
    }
    let (num, unit) = t.split_once(' ')?;
    let us = match unit {
        "ms" => 1e3,
        "s" => 1e6,
        "min" => 60e6,
        "day" | "days" => 86_400e6,
        _ => return None,
    };
    Some(num.parse::<f64>().ok()? * us / unit_us)
}

/// The last documented range in a key's comment: (low, low inclusive, high, high inclusive).
fn documented_range(key: &Key) -> Option<(f64, bool, f64, bool)> {
    let unit_us = if key.name.ends_with("_us") {
        1.0
    } else if key.name.ends_with("_ms") {
        1e3
    } else {
        f64::NAN
    };
    let c = &key.comment;
    let mut found = None;
    for (i, open) in c.char_indices().filter(|(_, ch)| *ch == '(' || *ch == '[') {
        let rest = &c[i + 1..];
        let Some(close) = rest.find([')', ']']) else {
            continue;
        };
        let inner = &rest[..close];
        let high_incl = rest[close..].starts_with(']');
        let parsed = if let Some((a, b)) = inner.split_once("..=") {
            let a = a.rsplit([' ', ',']).next().unwrap_or("");
            let b = b.split([' ', ';', ',']).next().unwrap_or("");
            endpoint(a, unit_us)
                .zip(endpoint(b, unit_us))
                .map(|(a, b)| (a, true, b, true))
        } else if let Some((a, b)) = inner.split_once(", ") {
            endpoint(a, unit_us)
                .zip(endpoint(b, unit_us))
                .map(|(a, b)| (a, open == '[', b, high_incl))
        } else {
            None
        };
        if parsed.is_some() {
            if found.is_some() {
                return None; // several ranges in one comment (shared by several keys): ambiguous
            }
            found = parsed;
        }
    }
    found.filter(|(a, _, b, _)| a.is_finite() && b.is_finite() && a <= b)
}

/// Values just outside a key's documented range, as TOML.
fn out_of_range(key: &Key) -> Vec<String> {
    let Some((lo, lo_incl, hi, hi_incl)) = documented_range(key) else {
        return Vec::new();
    };
    let float = key.default.contains('.');
    let show = |v: f64| {
        if float {
            format!("{v:?}")
        } else {
            format!("{}", v as i64)
        }
    };
    let mut out = Vec::new();
    let above = if hi_incl {
        if float {
            hi + hi.abs().max(1.0) * 0.5
        } else {
            hi + 1.0
        }
    } else {
        hi
    };
    if above < 9.2e18 && (float || above.fract() == 0.0) {
        out.push(show(above));
    }
    let below = if lo_incl { lo - 1.0 } else { lo };
    if float || below.fract() == 0.0 {
        out.push(show(below));
    }
    out
}

/// One configuration file and what it must do.
struct ConfigCase {
    label: String,
    text: Vec<u8>,
    /// Must be refused naming one of these (case-insensitive); empty: must start.
    names: Vec<String>,
}

fn config_case(label: String, text: impl Into<Vec<u8>>, names: &[&str]) -> ConfigCase {
    ConfigCase {
        label,
        text: text.into(),
        names: names.iter().map(|s| s.to_string()).collect(),
    }
}

fn keyed(k: &Key, value: &str) -> String {
    format!("[{}]\n{} = {value}\n", k.section, k.name)
}

/// Every documented range just exceeded, plus seeded wrong types, unknown keys and duplicates.
fn config_cases(rng: &mut Rng, keys: &[Key]) -> Vec<ConfigCase> {
    let mut out = Vec::new();
    for k in keys {
        for v in out_of_range(k) {
            out.push(config_case(
                format!("{}.{} = {v} (out of range)", k.section, k.name),
                keyed(k, &v),
                &[&k.name],
            ));
        }
    }
    for _ in 0..30 {
        let k = rng.pick(keys).clone();
        let quoted = k.default.starts_with('"') || k.default.starts_with('[');
        let wrong = if quoted {
            *rng.pick(&["7", "true", "{ a = 1 }", "-1.5", "[[1], 2]"])
        } else {
            *rng.pick(&[
                "\"zz\"",
                "[1, 2]",
                "{ a = 1 }",
                "nan",
                "inf",
                "-inf",
                "\"\"",
                "1e400",
                "99999999999999999999999",
            ])
        };
        // A duration key takes a string with units too: "zz" and "" stay wrong, "1e400" may not be a type error.
        let names = [k.name.as_str(), "line"];
        out.push(config_case(
            format!("{}.{} = {wrong} (wrong type)", k.section, k.name),
            keyed(&k, wrong),
            &names,
        ));
    }
    let sections: Vec<String> = keys.iter().map(|k| k.section.clone()).collect();
    for _ in 0..6 {
        let s = rng.pick(&sections).clone();
        out.push(config_case(
            format!("[{s}] unknown key"),
            format!("[{s}]\nzz_unknown_key = 1\n"),
            &["zz_unknown_key"],
        ));
    }
    let k = rng.pick(keys).clone();
    let dup = format!(
        "[{}]\n{} = {}\n{} = {}\n",
        k.section, k.name, k.default, k.name, k.default
    );
    out.push(config_case(
        format!("duplicate {}", k.name),
        dup,
        &[&k.name, "line"],
    ));
    out.push(config_case(
        "unknown section".into(),
        "[zz_section]\na = 1\n",
        &["zz_section"],
    ));
    out
}

/// Limits the contracts document outside the comments of `--print-default`: (what, file, names one of these).
const CONFIG_FIXED: &[(&str, &str, &[&str])] = &[
    (
        "report.mttd_ms_max over 86400000",
        "[report]\nmttd_ms_max = 86400001.0\n",
        &["mttd_ms_max"],
    ),
    (
        "report.mttr_ms_max negative",
        "[report]\nmttr_ms_max = -1.0\n",
        &["mttr_ms_max"],
    ),
    (
        "report.auto_remediation_rate_min 1.5",
        "[report]\nauto_remediation_rate_min = 1.5\n",
        &["auto_remediation_rate_min"],
    ),
    (
        "report.false_positive_rate_max -0.5",
        "[report]\nfalse_positive_rate_max = -0.5\n",
        &["false_positive_rate_max"],
    ),
    (
        "diagnostics.keep_days 3661",
        "[diagnostics]\nkeep_days = 3661\n",
        &["keep_days"],
    ),
    (
        "report.daily_at 25:00",
        "[report]\ndaily_at = \"25:00\"\n",
        &["daily_at"],
    ),
    (
        "report.weekly_day",
        "[report]\ndaily_at = \"07:00\"\nweekly_day = \"someday\"\n",
        &["weekly_day"],
    ),
    (
        "report.zone",
        "[report]\nzone = \"Mars/Olympus\"\n",
        &["zone"],
    ),
    (
        "operator named local",
        "[http.operators]\nlocal = \"tok-1\"\n",
        &["local"],
    ),
    (
        "operator name with a space",
        "[http.operators]\n\"a b\" = \"tok-1\"\n",
        &["a b", "operators"],
    ),
    (
        "operators share a token",
        "[http.operators]\na = \"tok-1\"\nb = \"tok-1\"\n",
        &["token", "operators"],
    ),
    (
        "server.listen garbage",
        "[server]\nlisten = \"nowhere:99999\"\n",
        &["listen"],
    ),
    (
        "log_format",
        "[server]\nlog_format = \"xml\"\n",
        &["log_format"],
    ),
    (
        "webhook_format",
        "[notify]\nwebhook_format = \"fax\"\n",
        &["webhook_format"],
    ),
    (
        "detector",
        "[engine]\ndetector = \"crystal_ball\"\n",
        &["detector"],
    ),
    (
        "deep below shallow",
        "[checks]\nshallow_interval_ms = 5000\ndeep_interval_ms = 1000\n",
        &["deep_interval_ms"],
    ),
    (
        "maintenance cron",
        "[[maintenance]]\nname = \"m\"\ncron = \"every day\"\nduration = \"2h\"\n",
        &["maintenance[0]", "cron"],
    ),
    (
        "maintenance duration 8d",
        "[[maintenance]]\nname = \"m\"\ncron = \"0 2 * * SUN\"\nduration = \"8d\"\n",
        &["duration"],
    ),
    (
        "target kind",
        "[[targets]]\nname = \"web\"\nkind = \"ftp\"\n",
        &["kind", "targets"],
    ),
    (
        "http target timeout",
        "[[targets]]\nname = \"web\"\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\ntimeout_ms = 10001\n",
        &["timeout_ms"],
    ),
    ("empty file", "", &[]),
];

/// [`CONFIG_FIXED`], and whole-file damage: garbage, a huge value, a file over and under the size limit.
fn config_cases_fixed(rng: &mut Rng) -> Vec<ConfigCase> {
    let garbage: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    let mut ascii_garbage: Vec<u8> = (0..4096).map(|_| b' ' + (rng.next() % 95) as u8).collect();
    ascii_garbage.insert(0, b'\n');
    let huge_value = format!("[report]\nzone = \"{}\"\n", "Z".repeat(8 << 20));
    let line = "# a comment line that is valid TOML and says nothing at all, repeated\n";
    let huge_comments = line.repeat(120_000);
    let under_limit = line.repeat(1_000_000 / line.len()); // under config_file_bytes_max (1 MiB)
    let mut out: Vec<ConfigCase> = CONFIG_FIXED
        .iter()
        .map(|(label, text, names)| config_case(label.to_string(), *text, names))
        .collect();
    out.extend([
        config_case("binary garbage".into(), garbage, &["line", "byte"]),
        config_case("ascii garbage".into(), ascii_garbage, &["line"]),
        config_case("8 MiB value".into(), huge_value, &["zone", "byte"]),
        config_case(
            "8 MiB of comments".into(),
            huge_comments,
            &["config_file_bytes_max"],
        ),
        config_case("1 MB of comments".into(), under_limit, &[]),
    ]);
    out
}

/// Runs every case: refused quickly naming the key (or line), or — when nothing is wrong — started; never a panic.
fn config_attack(seed: u64) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["config", "--print-default"])
        .output()
        .unwrap();
    let keys = config_keys(&String::from_utf8_lossy(&out.stdout));
    let ranged = keys
        .iter()
        .filter(|k| documented_range(k).is_some())
        .count();
    assert!(
        keys.len() > 100 && ranged > 40,
        "{} keys, {ranged} with a range: --print-default changed?",
        keys.len()
    );
    let mut rng = Rng::new(seed);
    let mut cases = config_cases(&mut rng, &keys);
    cases.extend(config_cases_fixed(&mut rng));
    eprintln!(
        "config attack: seed={seed}, {} keys ({ranged} with a documented range), {} cases",
        keys.len(),
        cases.len()
    );
    let mut violations = Vec::new();
    for (n, c) in cases.iter().enumerate() {
        let s = serve_config(tmp.path(), n, &c.text);
        let shown = String::from_utf8_lossy(&c.text[..c.text.len().min(200)]).into_owned();
        let mut bad = |what: String| {
            violations.push(format!(
                "seed={seed} config {:?}: {what}\n    file: {shown:?}",
                c.label
            ))
        };
        if s.stderr.contains("panicked at") {
            bad(format!("panic: {}", s.stderr));
        }
        if c.names.is_empty() {
            if !s.started {
                bad(format!(
                    "a valid file did not start ({:?}, {:?}): {}",
                    s.code, s.took, s.stderr
                ));
            }
            continue;
        }
        let err = s.stderr.to_lowercase();
        match (s.started, s.code) {
            (true, _) => bad("started: the bad value was accepted".into()),
            (false, None) => bad(format!("no exit within {SERVE_DEADLINE:?}")),
            (false, Some(0)) => bad(format!("exit 0: {}", s.stderr)),
            (false, Some(_)) if !c.names.iter().any(|n| err.contains(&n.to_lowercase())) => bad(
                format!("the error names none of {:?}: {}", c.names, s.stderr.trim()),
            ),
            _ => {}
        }
        if s.took > Duration::from_secs(10) {
            bad(format!("took {:?}", s.took));
        }
    }
    violations
}

#[test]
fn config_files_fuzzed_against_the_rules() {
    let seed = seed();
    let violations = config_attack(seed);
    assert_clean("config", seed, &violations);
}

// ---------------------------------------------------------------------------------------------------------------
// The command line.
// ---------------------------------------------------------------------------------------------------------------

/// `medic ARGS` with `stdin`: exit code, stdout, stderr (killed after 60 s: a hang is a failure).
fn cli(args: &[&str], stdin: &[u8]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("MEDIC_TOKEN")
        .env_remove("MEDIC_SERVER")
        .env_remove("MEDIC_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
        }
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    });
    let out = child.wait_with_output().unwrap();
    let _ = feeder.join();
    drop(watchdog);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Garbage NDJSON for `medic load -`: each must be refused naming where, with nothing written.
fn garbage_ndjson(rng: &mut Rng) -> Vec<(String, Vec<u8>, &'static str)> {
    let binary: Vec<u8> = (0..2048).map(|_| rng.next() as u8).collect();
    let good = |i: usize| format!("{}\n", json!({"id": format!("cli-{i}"), "text": "fine"}));
    let before: String = (0..5).map(good).collect();
    vec![
        ("binary".into(), binary, "<stdin>"),
        (
            "bad 6th line".into(),
            format!("{before}{{\"id\": \"x\", \"text\": \n").into_bytes(),
            "6",
        ),
        (
            "a line without id".into(),
            format!("{before}{{\"text\": \"t\"}}\n").into_bytes(),
            "6",
        ),
        (
            "text not a string".into(),
            format!("{before}{{\"id\":\"y\",\"text\": 5}}\n").into_bytes(),
            "6",
        ),
        (
            "NaN vector".into(),
            format!("{before}{{\"id\":\"y\",\"text\":\"t\",\"vector\":[NaN]}}\n").into_bytes(),
            "6",
        ),
        (
            "nested 10000".into(),
            format!(
                "{before}{{\"id\":\"y\",\"text\":\"t\",\"meta\":{}1{}}}\n",
                "[".repeat(10_000),
                "]".repeat(10_000)
            )
            .into_bytes(),
            "6",
        ),
        (
            "id of 257 bytes".into(),
            format!("{before}{}\n", json!({"id": "i".repeat(257), "text": "t"})).into_bytes(),
            "6",
        ),
    ]
}

/// Bad arguments: a usage error (exit 2) with a message, never a panic.
fn bad_arguments(url: &str) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let via = |v: &[&str]| {
        let mut a = s(&["--server", url]);
        a.extend(s(v));
        a
    };
    vec![
        via(&["search", "--text", "alpha", "--k", "0"]),
        via(&["search", "--text", "alpha", "--k", "-3"]),
        via(&[
            "search",
            "--text",
            "alpha",
            "--k",
            "99999999999999999999999",
        ]),
        via(&["search", "--vector", "[1, NaN]"]),
        via(&["search", "--vector", "not json"]),
        via(&["search", "--text", "alpha", "--filter", "{bad"]),
        via(&["search", "--text", "alpha AND ("]),
        via(&["history", "store.documents", "--since", "yesterday"]),
        via(&["history", "store.documents", "--step", "0"]),
        via(&["report", "--daily", "--at", "2026-13-01"]),
        via(&["collections", "create", "UPPER"]),
        via(&["collections", "create", "ok-name", "--metric", "cos"]),
        via(&["get", &"i".repeat(257)]),
        via(&[
            "silence",
            "add",
            "--match",
            "code=x",
            "--for",
            "1000d",
            "--comment",
            "c",
        ]),
        via(&["load", "/nonexistent/file.ndjson"]),
        via(&["load", "/"]),
        s(&["completions", "tcsh"]),
        s(&["frobnicate"]),
        s(&["--timeout", "-5", "status"]),
        s(&["--server", "ftp://x", "status"]),
    ]
}

#[test]
fn command_line_fuzzed_against_the_rules() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), tmp.path());
    let mut violations = Vec::new();
    for (label, input, names) in garbage_ndjson(&mut rng) {
        for offline in [false, true] {
            let data = tmp.path().join("offline");
            let args: Vec<String> = if offline {
                vec![
                    "load".into(),
                    "-".into(),
                    "--data".into(),
                    data.to_str().unwrap().into(),
                ]
            } else {
                vec!["--server".into(), d.url.clone(), "load".into(), "-".into()]
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, _, err) = cli(&args, &input);
            if code == Some(0)
                || code.is_none()
                || err.contains("panicked at")
                || !err.contains(names)
            {
                violations.push(format!("seed={seed} load - ({label}, offline {offline}): exit {code:?}, stderr {err:?} (should name {names:?})"));
            }
        }
    }
    let (_, health) = d.json("GET", "/health", None);
    if health["documents"] != json!(0) {
        violations.push(format!("refused loads wrote documents: {health}"));
    }
    for args in bad_arguments(&d.url) {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = cli(&argv, b"");
        if code != Some(2)
            || err.contains("panicked at")
            || (err.trim().is_empty() && !out.contains("error"))
        {
            violations.push(format!(
                "seed={seed} medic {args:?}: exit {code:?} (usage error 2 expected), stderr {err:?}"
            ));
        }
    }
    d.stop();
    assert_clean("cli", seed, &violations);
}

/// The HTTP layer's own limits (the request target's length, the number of header fields) answered like every
/// other limit: a 4xx whose JSON `error` names the limit.
#[test]
fn http_layer_limits_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = support::start_with_config(&tmp.path().join("data"), tmp.path(), LIMITS_CONFIG);
    let addr = d.url.trim_start_matches("http://").to_string();
    let long_url = format!(
        "GET /v1/docs/{} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        "u".repeat(100_000)
    );
    let headers: String = (0..400).map(|i| format!("X-F{i}: v\r\n")).collect();
    let many = format!("GET /health HTTP/1.1\r\nHost: h\r\n{headers}Connection: close\r\n\r\n");
    let mut broken = Vec::new();
    for (label, bytes) in [("100 KB URL", long_url), ("400 header fields", many)] {
        let replies = exchange(&addr, bytes.into_bytes(), false).unwrap();
        let r = replies
            .first()
            .unwrap_or_else(|| panic!("{label}: no answer"));
        let error = r.error().unwrap_or_default();
        if !(400..500).contains(&r.status) || !(error.contains("max") || error.contains("limit")) {
            broken.push(format!(
                "{label}: {} {:?} body {:?}",
                r.status,
                r.head.lines().next(),
                r.text()
            ));
        }
    }
    d.stop();
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// A silence without its required `comment`: the error must name `comment` (the field the contract and the answer
/// to an unknown field both name), not another.
#[test]
fn silence_without_comment_names_comment() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), tmp.path());
    let (status, v) = d.json(
        "POST",
        "/v1/silences",
        Some(&json!({"matchers": ["code=x"], "duration": "2h"})),
    );
    assert_eq!(status, 400, "{v}");
    let error = v["error"].as_str().unwrap_or_default().to_string();
    let (status2, v2) = d.json(
        "POST",
        "/v1/silences",
        Some(&json!({"matchers": ["code=x"], "duration": "2h", "note": "n"})),
    );
    d.stop();
    assert!(
        error.contains("comment"),
        "the error names no `comment`: {error:?}; following its advice: {status2} {v2}"
    );
}

/// `--server` with a URL that does not parse is a bad argument: a usage error (exit 2), as the README says of
/// every bad argument.
#[test]
fn unparseable_server_url_is_a_usage_error() {
    let (code, _, err) = cli(&["--server", "http://[::1", "status"], b"");
    assert!(!err.contains("panicked at"), "{err}");
    assert_eq!(code, Some(2), "stderr: {err}");
}

/// A range on a declared integer field with a bound outside `i64` (or huge as a float), in a filter or in the query
/// language: a 400 naming the bound, or an answer; never a panic in the text index, nor a 503 blaming damaged
/// index files.
#[test]
fn integer_filter_bounds_outside_i64() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), tmp.path());
    let settings = json!({"dimension": 3, "fields": {"year": "integer"}});
    let (s, v) = d.json("PUT", "/v1/collections/years", Some(&settings));
    assert_eq!(s, 201, "{v}");
    for i in 0..20 {
        let doc = json!({"text": "medic night", "meta": {"year": 1990 + i}});
        let (s, v) = d.json(
            "PUT",
            &format!("/v1/collections/years/docs/d{i}"),
            Some(&doc),
        );
        assert_eq!(s, 200, "{v}");
    }
    let mut broken = Vec::new();
    for bound in [
        "-9223372036854775809",
        "9223372036854775808",
        "18446744073709551616",
        "-1e300",
        "1e300",
    ] {
        for (op, other) in [
            ("gte", ",\"lt\":2020"),
            ("gte", ""),
            ("lte", ",\"gt\":2000"),
            ("lt", ""),
        ] {
            let body = format!(
                "{{\"text\":\"medic OR night\",\"k\":5,\"consistency\":\"strong\",\"filter\":{{\"year\":{{\"{op}\":{bound}{other}}}}}}}"
            );
            let req = Req {
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: body.into_bytes(),
                ..Req::new("POST", "/v1/collections/years/search")
            };
            let addr = d.url.trim_start_matches("http://").to_string();
            let r = exchange(&addr, req.bytes(), false).unwrap().remove(0);
            if r.status >= 500 {
                broken.push(format!("year.{op} = {bound}: {} {}", r.status, r.text()));
            }
        }
    }
    for q in [
        "year:[2000 TO 99999999999999999999]",
        "year:[-99999999999999999999 TO 2010]",
        "year:>99999999999999999999",
    ] {
        let body = json!({"text": format!("medic {q}"), "k": 5});
        let (status, v) = d.json("POST", "/v1/collections/years/search", Some(&body));
        if status >= 500 {
            broken.push(format!("query {q:?}: {status} {v}"));
        }
    }
    let panics = d
        .stderr()
        .lines()
        .filter(|l| l.contains("panicked at"))
        .count();
    let (_, coll) = d.json("GET", "/v1/collections/years", None);
    let indexes = coll["indexes"].as_array().cloned().unwrap_or_default();
    let text_index = indexes.into_iter().find(|x| x["name"] == "text");
    let after = format!(
        "afterwards the text index: {}",
        text_index.unwrap_or_default()
    );
    d.stop();
    assert!(
        broken.is_empty() && panics == 0,
        "{panics} panics; {}\n{after}",
        broken.join("\n")
    );
}

/// The checker itself: a 500, a 503 without a reason, a 4xx without a JSON error, one naming the wrong field, an
/// accepted bad input and a valid request refused are each caught.
#[test]
fn the_rules_catch_each_kind_of_break() {
    let tmp = tempfile::tempdir().unwrap();
    let mut f = Fuzz::new(Daemon::start(&tmp.path().join("data"), tmp.path()), seed());
    let reply = |status: u16, body: &str| Reply {
        status,
        head: format!("HTTP/1.1 {status} X"),
        body: body.into(),
    };
    let c = case("canary", Req::new("GET", "/health"), Expect::default());
    let named = case("canary", Req::new("GET", "/health"), Expect::refuse(&["k"]));
    let valid = case("canary", Req::new("GET", "/health"), Expect::ok());
    f.check_reply(&c, &reply(500, r#"{"error":"boom"}"#));
    f.check_reply(&c, &reply(503, ""));
    f.check_reply(&c, &reply(400, "bad"));
    f.check_reply(&named, &reply(400, r#"{"error":"offset: too large"}"#));
    f.check_reply(&named, &reply(200, "{}"));
    f.check_reply(&valid, &reply(422, r#"{"error":"no"}"#));
    assert_eq!(f.violations.len(), 6, "{:#?}", f.violations);
    f.check_reply(
        &c,
        &reply(
            503,
            r#"{"error":"request took longer than http.request_timeout_ms"}"#,
        ),
    );
    f.check_reply(&named, &reply(400, r#"{"error":"k = 0 is out of range"}"#));
    assert_eq!(f.violations.len(), 6, "{:#?}", f.violations);
    f.d.stop();
}
