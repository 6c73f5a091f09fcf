//! Attacks on the real `medic serve` process from its clients: idle connections beyond the descriptor limit while
//! writers write, a stop with half-sent requests open, clients that send nothing or dribble their request head, a
//! body announced larger than the limit, and meta numbers beyond `f64`. The daemon bounds its connections and its
//! stop, so clients can neither take the descriptors the store needs nor hold a stop up; every acknowledged
//! document reads back byte for byte after a clean restart.
//!
//! The descriptor-limit tests run the daemon under `prlimit` (util-linux).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod support;

use serde_json::Value;
use support::{Daemon, Outcome, START_TIMEOUT, Writers, agent, wait_for};

/// Writes `text` as `medic.toml` in `dir` and returns its path.
fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("medic.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `prlimit --nofile=SOFT:HARD medic serve --data DATA --listen 127.0.0.1:0 --config CONFIG`: `prlimit`
/// sets the limit and executes the daemon, so the child is the daemon itself.
fn start_limited(data: &Path, logs: &Path, soft: u64, hard: u64, config: &Path) -> Daemon {
    let stderr_path = logs.join(format!("stderr-limited-{soft}-{hard}.log"));
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={soft}:{hard}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_medic"))
        .args(["serve", "--data"])
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("prlimit (util-linux) runs medic");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for _ in lines {}
    });
    let url = match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) => line.trim().to_string(),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "medic serve under prlimit printed no URL; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
    };
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    Daemon {
        child,
        url,
        stderr_path,
        agent: agent(),
    }
}

fn addr(d: &Daemon) -> SocketAddr {
    d.url.trim_start_matches("http://").parse().unwrap()
}

/// Descriptors the process holds now.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Reads what the daemon sent on `s` within `wait` (until it closes, or the wait ends).
fn read_answer(s: &mut TcpStream, wait: Duration) -> String {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if answer_complete(&out) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `raw` holds a whole answer (head and a `content-length` body).
fn answer_complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .is_some_and(|n| body.len() >= n)
}

/// What the daemon already sent on `s` (empty when nothing, also when it closed or reset the connection).
fn waiting_bytes(s: &mut TcpStream) -> String {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    s.set_nonblocking(false).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Whether the daemon closed `s` within `wait` (a read sees the end or a reset).
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// SIGTERM, then how long the daemon took to exit and whether it exited 0; `None` if it is still running after
/// `bound` (then it is killed).
fn sigterm_and_time(d: &mut Daemon, bound: Duration) -> Option<(Duration, bool)> {
    let pid = d.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t0 = Instant::now();
    while t0.elapsed() < bound {
        if let Some(status) = d.child.try_wait().unwrap() {
            return Some((t0.elapsed(), status.success()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = d.child.kill();
    let _ = d.child.wait();
    None
}

fn assert_clean_reopen(d: &Daemon) {
    let (s, v) = d.json("GET", "/v1/status", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["recovery"]["previous_holder_crashed"], false,
        "the stop closed the store cleanly: {v}"
    );
}

/// Incidents that took resource exhaustion for damage: data at risk (CRISIS) or an integrity issue.
fn damage_incidents(d: &Daemon) -> Vec<String> {
    let (s, v) = d.json("GET", "/v1/incidents", None);
    assert_eq!(s, 200, "{v}");
    let mut bad = Vec::new();
    for i in v["incidents"].as_array().unwrap() {
        let issues = i["issues"].as_array().cloned().unwrap_or_default();
        let integrity = issues.iter().any(|x| x["kind"] == "integrity");
        if i["crisis"] == "CRISIS" || integrity {
            bad.push(format!(
                "incident {} ({}): {}",
                i["id"],
                i["crisis"],
                issues
                    .iter()
                    .map(|x| format!("{} {}", x["code"], x["summary"]))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    bad
}

/// The daemon's descriptor limit is 512; clients open 700 connections and keep them open while four writers write
/// and the checks run every 500 ms. Without a bound every descriptor goes to the clients, the store's opens fail
/// with EMFILE and the checks read that as damage (CRISIS, writes refused until a human acts). With
/// `http.connections_max = 64` the writers keep being acknowledged, the excess connections are answered 503 naming
/// the bound, the daemon never holds more than its bound of client descriptors, no damage is reported, and after
/// a clean restart every acknowledged document reads back byte for byte.
#[test]
fn idle_connections_beyond_the_descriptor_limit_neither_stop_writes_nor_pass_for_damage() {
    const NOFILE: u64 = 512;
    const CONNECTIONS_MAX: usize = 64;
    const HELD: usize = 700;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = config_file(
        tmp.path(),
        &format!(
            "[checks]\nshallow_interval_ms = 500\ndeep_interval_ms = 2000\n\n[http]\nconnections_max = \
             {CONNECTIONS_MAX}\nheader_read_timeout_ms = 2000\nidle_timeout_ms = 5000\n"
        ),
    );
    let d = start_limited(&data, tmp.path(), NOFILE, NOFILE, &config);
    let pid = d.child.id();
    let writers = Writers::start(&d.url, "fd", 4, 1_000_000, false);
    writers.wait_acked(100, Duration::from_secs(60));

    let before_hold = writers.acked_count();
    let mut held = Vec::with_capacity(HELD);
    let mut connect_failures = 0;
    let mut peak_fds = descriptors(pid);
    for k in 0..HELD {
        match TcpStream::connect_timeout(&addr(&d), Duration::from_secs(2)) {
            Ok(s) => held.push(s),
            Err(_) => connect_failures += 1,
        }
        if k % 50 == 0 {
            peak_fds = peak_fds.max(descriptors(pid));
        }
    }
    // Several healing cycles run while the connections are held.
    let hold_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < hold_until {
        peak_fds = peak_fds.max(descriptors(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let acked_during_hold = writers.acked_count() - before_hold;
    // Connections over the bound were answered 503 naming it (or closed at once while REFUSALS_MAX refusals were
    // under way); the others were served, then closed by the head timeout.
    let mut refused_with_503 = 0;
    for s in &mut held {
        let answer = waiting_bytes(s);
        if answer.starts_with("HTTP/1.1 503") {
            assert!(
                answer.contains("http.connections_max = 64"),
                "a refusal names the bound: {answer}"
            );
            refused_with_503 += 1;
        } else {
            assert!(answer.is_empty(), "unexpected answer: {answer}");
        }
    }
    // A new client is served once the idle slots time out (http.header_read_timeout_ms), the crowd still open.
    let status = wait_for("a new client served", Duration::from_secs(30), || {
        let (s, _, text) = d.request("GET", "/v1/status", None);
        (s == 200).then_some(text)
    });
    let status: Value = serde_json::from_str(&status).unwrap();
    drop(held);

    let after_release = writers.acked_count();
    writers.wait_acked(after_release + 100, Duration::from_secs(60));
    let log = writers.finish();
    let stderr = d.stderr();
    let damage = damage_incidents(&d);
    println!(
        "held {HELD} connections ({connect_failures} failed to connect): {acked_during_hold} writes acknowledged \
         meanwhile, peak daemon descriptors {peak_fds}, {refused_with_503} answered 503; {}",
        log.summary()
    );
    assert!(
        acked_during_hold >= 20,
        "writes stopped while clients held connections: {acked_during_hold} acknowledged; {}; stderr:\n{stderr}",
        log.summary()
    );
    assert!(
        refused_with_503 > 0,
        "no connection over the bound was answered 503"
    );
    let bound = CONNECTIONS_MAX + store_fd_headroom();
    assert!(
        peak_fds <= bound,
        "the daemon held {peak_fds} descriptors, over connections_max + refusals + its own {bound}"
    );
    for (status, (n, body)) in log.refusals() {
        assert_eq!(status, 503, "{n} writes refused with {status}, e.g. {body}");
        assert!(body.contains("\"error\""), "{body}");
    }
    assert!(
        !stderr.contains("Too many open files"),
        "the daemon ran out of descriptors:\n{stderr}"
    );
    assert!(damage.is_empty(), "reported as damage: {damage:?}");
    assert!(
        status["store"]["read_only"].is_null(),
        "writes refused: {status}"
    );
    d.stop();

    let d = Daemon::start(&data, tmp.path());
    assert_clean_reopen(&d);
    support::assert_all_acked_readable(
        &d,
        &log,
        "after the connections closed and a clean restart",
    );
    assert_eq!(
        log.outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::NoAnswer))
            .count(),
        0,
        "a writer got no answer: {}",
        log.summary()
    );
    d.stop();
}

/// Descriptors besides the client connections the daemon may hold: `REFUSALS_MAX` refusals under way and its own
/// (about 20 at rest: stdio, the runtime, `LOCK`, the open segment and mirror, the knowledge base, a check's file).
fn store_fd_headroom() -> usize {
    usize::try_from(medic::config::REFUSALS_MAX).unwrap() + 48
}

/// A `http.connections_max` the descriptor limit cannot hold besides what the store keeps is refused at start,
/// naming the key, the value, the limit and what medic keeps; with room in the hard limit the soft limit is raised
/// to it.
#[test]
fn connections_max_beyond_the_descriptor_limit_is_refused_and_the_soft_limit_raised() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = config_file(tmp.path(), "[http]\nconnections_max = 200\n");
    let refused_log = tmp.path().join("refused.log");
    let mut child = Command::new("prlimit")
        .args(["--nofile=400:400", "--"])
        .arg(env!("CARGO_BIN_EXE_medic"))
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&refused_log).unwrap())
        .spawn()
        .expect("prlimit (util-linux) runs medic");
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&refused_log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| !s.success()),
        "started anyway ({status:?}): {stderr}"
    );
    for part in [
        "http.connections_max = 200",
        "1..=112",
        "is 400",
        "keeps 256",
    ] {
        assert!(stderr.contains(part), "{part:?} missing from:\n{stderr}");
    }
    assert!(
        !data.join("LOCK").exists(),
        "refused before opening the data directory"
    );

    let config = config_file(tmp.path(), "[http]\nconnections_max = 512\n");
    let d = start_limited(&data, tmp.path(), 300, 2048, &config);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        (fields[3], fields[4]),
        ("2048", "2048"),
        "soft limit raised to the hard one: {line}"
    );
    d.stop();
}

/// Twenty requests have sent their head and part of their body when SIGTERM arrives: the daemon exits 0 within
/// `server.shutdown_grace_ms` (plus the store's close), the store closed cleanly, and a write acknowledged before
/// the stop reads back. Without a bound the stop waits on the bodies for as long as the clients keep them open.
#[test]
fn sigterm_with_half_sent_requests_exits_within_the_grace_period() {
    const GRACE_MS: u64 = 2_000;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = config_file(
        tmp.path(),
        &format!("[server]\nshutdown_grace_ms = {GRACE_MS}\n"),
    );
    let mut d = Daemon::start_with(
        &data,
        tmp.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let (s, v) = d.json("PUT", "/v1/docs/before-stop", Some(&support::doc(7)));
    assert_eq!(s, 200, "{v}");
    let mut half = Vec::new();
    for k in 0..20 {
        let mut s = TcpStream::connect(addr(&d)).unwrap();
        s.write_all(
            format!(
                "PUT /v1/docs/half-{k} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                 content-length: 100\r\n\r\n{{\"text\":"
            )
            .as_bytes(),
        )
        .unwrap();
        half.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let bound = Duration::from_millis(GRACE_MS) + Duration::from_secs(4);
    let exit = sigterm_and_time(&mut d, Duration::from_secs(25));
    let stderr = d.stderr();
    let (took, success) = exit.unwrap_or_else(|| {
        panic!("no exit 25 s after SIGTERM with 20 half-sent requests; stderr:\n{stderr}")
    });
    println!("exited {took:?} after SIGTERM (grace {GRACE_MS} ms)");
    assert!(success, "exit after SIGTERM not 0; stderr:\n{stderr}");
    assert!(
        took <= bound,
        "exit took {took:?}, over the grace period + 4 s; stderr:\n{stderr}"
    );
    assert!(
        closed_within(&mut half[0], Duration::from_secs(1)),
        "a half-sent request's connection is still open"
    );
    drop(half);

    let d = Daemon::start(&data, tmp.path());
    assert_clean_reopen(&d);
    let (s, v) = d.json("GET", "/v1/docs/before-stop", None);
    assert_eq!(s, 200, "{v}");
    let (s, _) = d.json("GET", "/v1/docs/half-0", None);
    assert_eq!(
        s, 404,
        "a write cut before its body arrived was not applied"
    );
    d.stop();
}

/// A client that connects and sends nothing, and one that sends its request head a byte at a time, are
/// disconnected after `http.header_read_timeout_ms`; a kept-alive connection outlives that between requests and
/// is closed after `http.idle_timeout_ms`.
#[test]
fn slow_and_idle_clients_are_disconnected_by_their_timeouts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = config_file(
        tmp.path(),
        "[http]\nheader_read_timeout_ms = 500\nidle_timeout_ms = 2000\n",
    );
    let d = Daemon::start_with(
        &data,
        tmp.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    // Silent from the start.
    let mut silent = TcpStream::connect(addr(&d)).unwrap();
    let t0 = Instant::now();
    assert!(
        closed_within(&mut silent, Duration::from_secs(3)),
        "a silent connection stayed open"
    );
    let silent_after = t0.elapsed();

    // A head dribbled a byte every 100 ms never completes in time.
    let mut slow = TcpStream::connect(addr(&d)).unwrap();
    let head = b"GET /health HTTP/1.1\r\nhost: x\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let t0 = Instant::now();
    let mut cut = false;
    for b in head {
        if slow.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if t0.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let cut = cut || closed_within(&mut slow, Duration::from_millis(200));
    let slow_after = t0.elapsed();
    assert!(
        cut && slow_after < Duration::from_secs(3),
        "a dribbled head was not cut ({slow_after:?})"
    );

    // Kept alive between requests: longer than the head timeout, closed after the idle timeout.
    let mut kept = TcpStream::connect(addr(&d)).unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut kept, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let t0 = Instant::now();
    assert!(
        !closed_within(&mut kept, Duration::from_millis(1_200)),
        "closed between requests after the head timeout, before the idle timeout"
    );
    kept.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut kept, Duration::from_secs(5));
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "kept-alive connection serves a second request: {answer}"
    );
    let t0b = Instant::now();
    assert!(
        closed_within(&mut kept, Duration::from_secs(4)),
        "an idle kept-alive connection stayed open"
    );
    let idle_after = t0b.elapsed();
    println!(
        "silent closed after {silent_after:?}, dribbled head after {slow_after:?}, idle after {idle_after:?} \
         (kept {:?})",
        t0.elapsed()
    );
    assert!(
        silent_after >= Duration::from_millis(400) && silent_after < Duration::from_millis(1_800),
        "{silent_after:?}"
    );
    assert!(
        idle_after >= Duration::from_millis(1_800) && idle_after < Duration::from_millis(3_500),
        "{idle_after:?}"
    );
    d.stop();
}

/// A request announcing a gigabyte (`Content-Length: 1073741824`) and sending ten bytes is answered 413 at once,
/// naming the limit and the announced size, not after the request timeout; the daemon serves on.
#[test]
fn a_declared_length_over_the_body_limit_is_answered_413_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = Daemon::start(&data, tmp.path());
    let mut s = TcpStream::connect(addr(&d)).unwrap();
    let t0 = Instant::now();
    s.write_all(
        b"PUT /v1/docs/big HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 1073741824\r\n\r\n{\"text\":1",
    )
    .unwrap();
    let answer = read_answer(&mut s, Duration::from_secs(5));
    let took = t0.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "after {took:?}: {answer:?}"
    );
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("http.request_body_bytes_max = 16777216") && msg.contains("1073741824"),
        "{msg}"
    );
    let (status, v) = d.json("PUT", "/v1/docs/small", Some(&support::doc(1)));
    assert_eq!(status, 200, "{v}");
    let (status, _) = d.json("GET", "/v1/docs/big", None);
    assert_eq!(status, 404);
    d.stop();
}

/// Meta numbers beyond `u64`, `i64` and `f64` come back with every digit as put, from memory and after a restart
/// (from the log); a `GET` names the LSN of the version it answers in `Medic-Lsn`, the `lsn` its put returned.
#[test]
fn meta_numbers_come_back_with_every_digit_and_get_names_the_version_lsn() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = Daemon::start(&data, tmp.path());
    let numbers = [
        ("above_u64", "18446744073709551617"),
        ("below_i64", "-9223372036854775809"),
        ("long_fraction", "0.1000000000000000000001"),
        ("pi", "3.14159265358979323846264338327950288419716939937510"),
        ("beyond_f64", "1e+400"),
        ("tiny", "-2.5e-400"),
        ("negative_zero", "-0.0"),
        ("plain", "42"),
    ];
    let meta = numbers
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect::<Vec<_>>()
        .join(",");
    let body = format!("{{\"text\":\"numbers\",\"meta\":{{{meta}}}}}");
    let mut resp = d
        .agent
        .put(&format!("{}/v1/docs/numbers", d.url))
        .header("content-type", "application/json")
        .send(body.as_str())
        .unwrap();
    let text = resp.body_mut().read_to_string().unwrap();
    assert_eq!(resp.status(), 200, "{text}");
    let put_lsn = serde_json::from_str::<Value>(&text).unwrap()["lsn"]
        .as_u64()
        .unwrap();
    let get = |d: &Daemon| {
        let mut r = d
            .agent
            .get(&format!("{}/v1/docs/numbers", d.url))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        let lsn = r
            .headers()
            .get("medic-lsn")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        (r.body_mut().read_to_string().unwrap(), lsn)
    };
    let check = |text: &str, when: &str| {
        for (k, v) in numbers {
            assert!(
                text.contains(&format!("\"{k}\":{v}")),
                "{when}: meta.{k} is not {v}: {text}"
            );
        }
    };
    let (text, lsn) = get(&d);
    check(&text, "live");
    assert_eq!(lsn, Some(put_lsn), "Medic-Lsn names the put's LSN");
    // A later version of another document does not change this one's LSN; a new put does.
    let (s, _) = d.json("PUT", "/v1/docs/other", Some(&support::doc(2)));
    assert_eq!(s, 200);
    assert_eq!(get(&d).1, Some(put_lsn));
    d.stop();

    let d = Daemon::start(&data, tmp.path());
    let (text, lsn) = get(&d);
    check(&text, "after a restart");
    assert_eq!(lsn, Some(put_lsn), "the LSN survives a restart");
    d.stop();
}

/// `VmRSS` and `VmHWM` (peak) of process `pid`, in KiB.
fn resident_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// 5,000 connections open at once, each asking `GET /health`, then all closed: the daemon's resident memory stays
/// small at the peak and after (each served connection costs hyper an 8 KiB read buffer, and memory freed after
/// thousands of them stays with the allocator, so only the bound on connections keeps the figure down).
#[test]
fn resident_memory_stays_bounded_through_5000_connections() {
    // This process holds every connection at once: raise its own soft descriptor limit.
    let hard = medic::daemon::listen::raise_descriptor_limit().now;
    let n = hard.map_or(5_000, |h| {
        usize::try_from(h.saturating_sub(200)).unwrap().min(5_000)
    });
    assert!(
        n >= 2_000,
        "this test needs a descriptor limit of 2200 or more, not {hard:?}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), tmp.path());
    let pid = d.child.id();
    let (start_rss, _) = resident_kib(pid);
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr(&d)).unwrap();
        let _ = s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n");
        open.push(s);
    }
    let (mut served, mut refused) = (0, 0);
    for s in &mut open {
        let answer = read_answer(s, Duration::from_secs(5));
        if answer.starts_with("HTTP/1.1 200") {
            served += 1;
        } else if answer.starts_with("HTTP/1.1 503") {
            refused += 1;
        }
    }
    let (open_rss, _) = resident_kib(pid);
    drop(open);
    std::thread::sleep(Duration::from_secs(2));
    let (after_rss, peak) = resident_kib(pid);
    println!(
        "{n} connections ({served} served, {refused} answered 503): VmRSS {start_rss} KiB at start, {open_rss} KiB \
         while open, {after_rss} KiB 2 s after they closed, peak (VmHWM) {peak} KiB"
    );
    assert!(served >= 1, "no connection was served");
    assert!(peak <= 64 * 1024, "peak resident memory {peak} KiB");
    assert!(
        after_rss <= 48 * 1024,
        "resident memory {after_rss} KiB after the connections closed"
    );
    let (s, v) = d.json("GET", "/health", None);
    assert_eq!(s, 200, "{v}");
    d.stop();
}
