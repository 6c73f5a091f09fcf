//! The black-box harness shared by the tests that run the real `medic serve` process: start it (on a free
//! loopback port, stderr kept in a file), drive it over HTTP, stop it with a signal or SIGKILL; writers that record
//! every acknowledged document; and a read-back that compares every acknowledged document byte for byte.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const START_TIMEOUT: Duration = Duration::from_secs(60);
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `medic serve`; killed on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub url: String,
    pub stderr_path: PathBuf,
    pub agent: ureq::Agent,
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

impl Daemon {
    pub fn start(data: &Path, logs: &Path) -> Daemon {
        Self::start_with(data, logs, &["--listen", "127.0.0.1:0"])
    }

    /// The URL the daemon prints first; panics with its stderr as soon as it exits without one (or after
    /// [`START_TIMEOUT`]).
    fn await_url(
        child: &mut std::process::Child,
        rx: &mpsc::Receiver<String>,
        stderr_path: &Path,
    ) -> String {
        let stderr = || std::fs::read_to_string(stderr_path).unwrap_or_default();
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => return line.trim().to_string(),
                Err(mpsc::RecvTimeoutError::Timeout) if std::time::Instant::now() < deadline => {}
                // Its stdout closed: it is exiting; its status is waited for a little.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    for _ in 0..50 {
                        if let Ok(Some(status)) = child.try_wait() {
                            panic!(
                                "medic serve exited ({status}) before printing its URL; stderr:\n{}",
                                stderr()
                            );
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    let _ = child.kill();
                    panic!(
                        "medic serve closed its stdout without a URL; stderr:\n{}",
                        stderr()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!(
                        "medic serve printed no URL within {START_TIMEOUT:?}; stderr:\n{}",
                        stderr()
                    );
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "medic serve exited ({status}) before printing its URL; stderr:\n{}",
                    stderr()
                );
            }
        }
    }

    /// Starts `medic serve --data DATA EXTRA...`; a URL printed for `0.0.0.0` is reached through 127.0.0.1, so
    /// the test's traffic stays on loopback.
    pub fn start_with(data: &Path, logs: &Path, extra: &[&str]) -> Daemon {
        Self::start_with_env(data, logs, extra, &[])
    }

    /// As [`Daemon::start_with`], with `envs` set in the daemon's environment (e.g. `RUST_LOG`).
    pub fn start_with_env(
        data: &Path,
        logs: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Daemon {
        let stderr_path = logs.join(format!(
            "stderr-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_medic"))
            .args(["serve", "--data"])
            .arg(data)
            .args(extra)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("medic starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {} // keep draining so the daemon never blocks on stdout
        });
        let url = Self::await_url(&mut child, &rx, &stderr_path);
        let url = url.replacen("http://0.0.0.0:", "http://127.0.0.1:", 1);
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert!(
            !url.ends_with(":0"),
            "port 0 must print the real port: {url}"
        );
        Daemon {
            child,
            url,
            stderr_path,
            agent: agent(),
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, String, String) {
        let url = format!("{}{path}", self.url);
        let resp = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            ("PUT", Some(b)) => self
                .agent
                .put(&url)
                .header("Content-Type", "application/json")
                .send(b.to_string()),
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(b.to_string()),
            ("POST", None) => self.agent.post(&url).send_empty(),
            _ => panic!("unsupported {method}"),
        };
        let mut resp =
            resp.unwrap_or_else(|e| panic!("{method} {path}: {e}; stderr:\n{}", self.stderr()));
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp.body_mut().read_to_string().unwrap();
        (status, ct, text)
    }

    pub fn json(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (status, ct, text) = self.request(method, path, body);
        assert!(
            ct.starts_with("application/json"),
            "{method} {path}: content-type {ct:?}: {text}"
        );
        (status, serde_json::from_str(&text).unwrap())
    }

    /// POSTs an NDJSON body to `path` (a bulk load): the status and the JSON answer (`{"raw": text}` when not JSON).
    pub fn post_ndjson(&self, path: &str, body: &str) -> (u16, Value) {
        let mut resp = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("Content-Type", "application/x-ndjson")
            .send(body.as_bytes())
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({ "raw": text })),
        )
    }

    /// Bulk-loads `lines` (one JSON document each, with its `id`) into `default` and asserts it was acknowledged.
    pub fn bulk(&self, lines: impl IntoIterator<Item = Value>) -> Value {
        let body: String = lines.into_iter().map(|l| format!("{l}\n")).collect();
        let (status, v) = self.post_ndjson("/v1/docs", &body);
        assert_eq!(status, 200, "{v}");
        v
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(self) {
        self.stop_with("-TERM");
    }

    /// Sends `signal` (`-TERM`, `-INT`), then waits for a clean exit.
    pub fn stop_with(mut self, signal: &str) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(st.success());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "exit after SIGTERM: {status}; stderr:\n{}",
                    self.stderr()
                );
                return;
            }
            if Instant::now() >= deadline {
                // Where it hangs: every thread's stack when a debugger is at hand, and what the daemon logged.
                let stacks = Command::new("gdb")
                    .args(["-p", &pid, "-batch", "-ex", "thread apply all bt"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                panic!(
                    "no exit {STOP_TIMEOUT:?} after {signal}; threads:\n{stacks}\nstderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first incident (of the last 50, in any state) with an issue of `code`.
pub fn incident_with(d: &Daemon, code: &str) -> Option<Value> {
    let (_, v) = d.json("GET", "/v1/incidents?limit=50", None);
    v["incidents"]
        .as_array()?
        .iter()
        .find(|i| {
            i["issues"]
                .as_array()
                .is_some_and(|is| is.iter().any(|x| x["code"] == code))
        })
        .cloned()
}

/// `medic --config CONFIG playbooks check DIR`, asserted to accept every playbook; its stdout.
pub fn playbooks_check_ok(config: &str, dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["--config", config, "playbooks", "check"])
        .arg(dir)
        .output()
        .expect("medic runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    text
}

/// The document the writers put under number `i`: text, a 3-dimensional vector and meta, all derived from `i`.
pub fn doc(i: usize) -> Value {
    json!({
        "text": format!("document number {i} ").repeat(1 + i % 7),
        "vector": [i as f32, 1.0, (i % 3) as f32],
        "meta": {"i": i, "even": i.is_multiple_of(2)},
    })
}

/// What a client saw for one write.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// 200: acknowledged, so it must survive anything.
    Acked,
    /// An HTTP error answer (status, body).
    Refused(u16, String),
    /// No answer at all (connection refused or reset, timeout).
    NoAnswer,
}

/// Writer threads putting `<prefix>-<i>` = `doc(i)` until stopped, recording every outcome. Each document is put
/// once, so the acknowledged set is exactly what must read back.
pub struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    outcomes: Arc<Mutex<Vec<(usize, Outcome)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub prefix: String,
}

impl Writers {
    /// Starts `n` writers against `url`; each stops after `max_each` puts, on `stop`, or (when `end_on_no_answer`)
    /// at the first unanswered request.
    pub fn start(
        url: &str,
        prefix: &str,
        n: usize,
        max_each: usize,
        end_on_no_answer: bool,
    ) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let outcomes: Arc<Mutex<Vec<(usize, Outcome)>>> = Arc::default();
        let threads = (0..n)
            .map(|w| {
                let (url, prefix) = (url.to_string(), prefix.to_string());
                let (stop, acked, outcomes) = (stop.clone(), acked.clone(), outcomes.clone());
                std::thread::spawn(move || {
                    let agent = agent();
                    for k in 0..max_each {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let i = k * n + w;
                        let r = agent
                            .put(&format!("{url}/v1/docs/{prefix}-{i}"))
                            .header("Content-Type", "application/json")
                            .send(doc(i).to_string());
                        let outcome = match r {
                            Ok(mut resp) if resp.status() == 200 => {
                                let _ = resp.body_mut().read_to_string();
                                acked.fetch_add(1, Ordering::Relaxed);
                                Outcome::Acked
                            }
                            Ok(mut resp) => Outcome::Refused(
                                resp.status().as_u16(),
                                resp.body_mut().read_to_string().unwrap_or_default(),
                            ),
                            Err(_) => Outcome::NoAnswer,
                        };
                        let end = end_on_no_answer && matches!(outcome, Outcome::NoAnswer);
                        let refused = matches!(outcome, Outcome::Refused(..));
                        outcomes.lock().unwrap().push((i, outcome));
                        if end {
                            return;
                        }
                        if refused {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                })
            })
            .collect();
        Writers {
            stop,
            acked,
            outcomes,
            threads,
            prefix: prefix.to_string(),
        }
    }

    /// Acknowledged writes so far.
    pub fn acked_count(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` writes were acknowledged (panics after `timeout`).
    pub fn wait_acked(&self, n: usize, timeout: Duration) {
        wait_for(&format!("{n} acknowledged writes"), timeout, || {
            (self.acked_count() >= n).then_some(())
        });
    }

    /// Stops the writers and returns every outcome.
    pub fn finish(mut self) -> WriteLog {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        WriteLog {
            prefix: self.prefix.clone(),
            outcomes: std::mem::take(&mut *self.outcomes.lock().unwrap()),
        }
    }
}

/// Every outcome the writers saw.
pub struct WriteLog {
    pub prefix: String,
    pub outcomes: Vec<(usize, Outcome)>,
}

impl WriteLog {
    /// The numbers of the acknowledged documents.
    pub fn acked(&self) -> Vec<usize> {
        self.outcomes
            .iter()
            .filter_map(|(i, o)| matches!(o, Outcome::Acked).then_some(*i))
            .collect()
    }

    /// Refusals by status, with one example body each.
    pub fn refusals(&self) -> BTreeMap<u16, (usize, String)> {
        let mut m: BTreeMap<u16, (usize, String)> = BTreeMap::new();
        for (_, o) in &self.outcomes {
            if let Outcome::Refused(s, body) = o {
                let e = m.entry(*s).or_insert((0, body.clone()));
                e.0 += 1;
            }
        }
        m
    }

    /// A one-line summary for test output.
    pub fn summary(&self) -> String {
        format!(
            "{} puts: {} acknowledged, refused {:?}, {} unanswered",
            self.outcomes.len(),
            self.acked().len(),
            self.refusals()
                .iter()
                .map(|(s, (n, _))| (*s, *n))
                .collect::<Vec<_>>(),
            self.outcomes
                .iter()
                .filter(|(_, o)| matches!(o, Outcome::NoAnswer))
                .count()
        )
    }

    /// Reads every acknowledged document back through `d` and returns what differs (empty when every one is
    /// there, byte for byte as put). Four readers share the list, in the order of the document numbers.
    pub fn missing_or_different(&self, d: &Daemon) -> Vec<String> {
        const READERS: usize = 4;
        let acked = self.acked();
        let chunk = acked.len().div_ceil(READERS).max(1);
        std::thread::scope(|s| {
            let readers: Vec<_> = acked
                .chunks(chunk)
                .map(|part| s.spawn(move || self.check_docs(d, part)))
                .collect();
            readers
                .into_iter()
                .flat_map(|r| r.join().expect("a reader panicked"))
                .collect()
        })
    }

    /// What differs among documents `numbers` read back through `d`.
    fn check_docs(&self, d: &Daemon, numbers: &[usize]) -> Vec<String> {
        let mut bad = Vec::new();
        for &i in numbers {
            let id = format!("{}-{i}", self.prefix);
            let (s, _, text) = d.request("GET", &format!("/v1/docs/{id}"), None);
            if s != 200 {
                bad.push(format!("{id}: {s} {text}"));
                continue;
            }
            let mut v: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    bad.push(format!("{id}: not JSON ({e}): {text}"));
                    continue;
                }
            };
            if let Some(o) = v.as_object_mut() {
                o.remove("id");
            }
            if v != doc(i) {
                bad.push(format!("{id}: differs: {v}"));
            }
        }
        bad
    }
}

/// Asserts that every acknowledged document of `log` reads back identical through `d`, naming the first few that
/// do not.
pub fn assert_all_acked_readable(d: &Daemon, log: &WriteLog, what: &str) {
    let bad = log.missing_or_different(d);
    assert!(
        bad.is_empty(),
        "{what}: {} of {} acknowledged documents missing or different, e.g. {:?}; stderr:\n{}",
        bad.len(),
        log.acked().len(),
        &bad[..bad.len().min(10)],
        d.stderr()
    );
}

/// The first of `names` found as a file on `PATH`: a real server a test runs beside medic.
pub fn binary_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// A loopback port free now (for a server whose address must be written into another's configuration first).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed and reaped on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A local HTTP listener that answers 200 and records the JSON body of every POST it gets: its URL and the bodies.
pub fn alert_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            g.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
        }
    });
    (url, got)
}

/// `medic ARGS --data DATA` run as a one-off command (no daemon token, server or config from the environment):
/// exit code, stdout, stderr.
pub fn medic(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .arg("--data")
        .arg(data)
        .env_remove("MEDIC_TOKEN")
        .env_remove("MEDIC_SERVER")
        .env_remove("MEDIC_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The incidents (with their detail, `GET /v1/incidents/{id}`) whose text mentions `what`.
pub fn incidents_about(d: &Daemon, what: &str) -> Vec<Value> {
    let (s, list) = d.json("GET", "/v1/incidents", None);
    assert_eq!(s, 200, "{list}");
    list.as_array()
        .cloned()
        .or_else(|| list["incidents"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| {
            let id = i["id"].as_u64()?;
            let (_, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
            detail.to_string().contains(what).then_some(detail)
        })
        .collect()
}

/// The derived index `name` of collection `c` as `GET /v1/collections/{c}` shows it.
pub fn index_status(d: &Daemon, c: &str, name: &str) -> Value {
    let (s, v) = d.json("GET", &format!("/v1/collections/{c}"), None);
    assert_eq!(s, 200, "{v}");
    v["indexes"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no {name} index in {v}"))
}

/// How many times the daemon rebuilt collection `c`'s index `name` from the table (`/v1/status`).
pub fn index_rebuilds(d: &Daemon, c: &str, name: &str) -> u64 {
    let (s, st) = d.json("GET", "/v1/status", None);
    assert_eq!(s, 200, "{st}");
    st["derived"]["indexes"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == name && i["collection"] == c))
        .and_then(|i| i["rebuilds"].as_u64())
        .unwrap_or_else(|| panic!("no {name} index of {c} in {st}"))
}

/// A daemon on a free port with `config` written to `<logs>/medic.toml` and passed as `--config`.
pub fn start_with_config(data: &Path, logs: &Path, config: &str) -> Daemon {
    let path = logs.join("medic.toml");
    std::fs::write(&path, config).unwrap();
    start_with_config_file(data, logs, &path)
}

/// A daemon on a free port with the configuration file `cfg`.
pub fn start_with_config_file(data: &Path, logs: &Path, cfg: &Path) -> Daemon {
    Daemon::start_with(
        data,
        logs,
        &["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()],
    )
}

/// An attack's seed: `MEDIC_ATTACK_SEED` when set (a failing run prints the seed it used), else `default`.
pub fn attack_seed(default: u64) -> u64 {
    std::env::var("MEDIC_ATTACK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// An attack's number of rounds: `MEDIC_ATTACK_ROUNDS` when set (a soak), else `default`.
pub fn attack_rounds(default: u64) -> u64 {
    std::env::var("MEDIC_ATTACK_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// An attack's generator: xorshift64* seeded through splitmix64; small, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(splitmix(seed))
    }

    pub fn next(&mut self) -> u64 {
        xorshift(&mut self.0)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// [`Rng::below`] for an index or a count: a number in `0..n` (0 when `n` is 0).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.index(100) < percent
    }

    /// One of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }
}

/// A generator's first state for `seed` (splitmix64, so that neighbouring seeds start far apart; never 0).
pub fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

/// xorshift64*: small, seeded, reproducible. `rng` must not be 0.
pub fn xorshift(rng: &mut u64) -> u64 {
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// The files in `dir` whose names end with `suffix`, sorted (none when `dir` is gone).
pub fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The last `lines` lines of `s`.
pub fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// The same bytes (300..340) flipped in every WAL file of at least 600 bytes — the open segment and its mirror —
/// so the acknowledged records there are gone from every copy.
pub fn damage_every_wal_copy(data: &Path) {
    let mut damaged = 0;
    for entry in std::fs::read_dir(data.join("wal")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        if bytes.len() < 600 {
            continue;
        }
        for b in &mut bytes[300..340] {
            *b ^= 0xff;
        }
        std::fs::write(&path, bytes).unwrap();
        damaged += 1;
    }
    assert!(damaged >= 1, "no WAL file to damage");
}

/// A `medic.toml` in `dir` running the shallow tier every 200 ms and the deep one every `deep_interval_ms`.
pub fn checks_config(dir: &Path, deep_interval_ms: u64) -> PathBuf {
    let path = dir.join("medic.toml");
    let text =
        format!("[checks]\nshallow_interval_ms = 200\ndeep_interval_ms = {deep_interval_ms}\n");
    std::fs::write(&path, text).unwrap();
    path
}

/// The ids of a search answer's hits, in order.
pub fn hit_ids(v: &Value) -> Vec<String> {
    v["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {v}"))
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect()
}

/// `medic ARGS` run as it is written (no `--data` added, `NO_COLOR` set): exit code, stdout, stderr.
pub fn medic_cli(args: &[&str]) -> (i32, String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
