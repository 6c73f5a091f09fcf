//! Alerts reach a webhook: a real HTTP listener (and a real TLS one, with a private CA) receives the engine's alert
//! as one JSON POST.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use medic::app::App;
use medic::config::Config;
use serde_json::{Value, json};

/// Reads one HTTP request from `conn` and answers 200: the request line and the body (JSON, or null).
fn one_request(conn: &mut (impl Read + Write)) -> std::io::Result<(String, Value)> {
    let mut reader = BufReader::new(&mut *conn);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    drop(reader);
    conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")?;
    conn.flush()?;
    Ok((
        request_line,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    ))
}

/// Accepts connections and sends each request's body (JSON) down the channel; answers 200.
fn webhook_listener() -> (String, mpsc::Receiver<(String, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let Ok(got) = one_request(&mut conn) else {
                continue;
            };
            if tx.send(got).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

/// A TLS webhook on `localhost` whose certificate a fresh private CA signed: its URL, the CA's PEM, and what it
/// received. A connection whose handshake fails sends `("handshake failed: ...", null)`.
fn https_webhook_listener() -> (String, String, mpsc::Receiver<(String, Value)>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    // The ring provider, as the client's (ureq's rustls feature) uses.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let server = Arc::new(server);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://localhost:{}/alerts",
        listener.local_addr().unwrap().port()
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(tcp) = conn else { return };
            let tls = rustls::ServerConnection::new(server.clone()).unwrap();
            let mut stream = rustls::StreamOwned::new(tls, tcp);
            let got = one_request(&mut stream)
                .unwrap_or_else(|e| (format!("handshake failed: {e}"), Value::Null));
            if tx.send(got).is_err() {
                return;
            }
        }
    });
    (url, ca.pem(), rx)
}

/// An app on a fresh store notifying `url`, with 20 documents, whose open segment's mirror is then deleted: the next
/// cycle fires alerts. Returns the app (kept alive while the webhook delivers) and the cycle's summary.
fn app_with_an_alert(dir: &std::path::Path, config: &mut Config) -> (App, Value) {
    config.server.data_dir = dir.join("data");
    config.validate().unwrap();
    let app = App::open(config).unwrap();
    for i in 0..20 {
        app.store()
            .put(
                &format!("d{i}"),
                store::Document {
                    text: "t".into(),
                    vector: None,
                    meta: None,
                },
            )
            .unwrap();
    }
    let wal = config.server.data_dir.join("wal");
    let mirror = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "mir"))
        .unwrap();
    std::fs::remove_file(&mirror).unwrap();
    let cycle = app.run_cycle(Some(false)).unwrap();
    assert!(
        cycle["alerts"].as_array().is_some_and(|a| !a.is_empty()),
        "the cycle fired no alert: {cycle}"
    );
    (app, cycle)
}

#[test]
fn an_alert_reaches_an_https_webhook_whose_certificate_chains_to_the_configured_ca() {
    let (url, ca_pem, received) = https_webhook_listener();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let mut config = Config::default();
    config.notify.webhook_url = Some(url.clone());
    config.notify.webhook_ca_file = Some(ca_file);
    let (_app, cycle) = app_with_an_alert(dir.path(), &mut config);
    let (line, body) = received
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("no POST reached {url}: {e}; cycle: {cycle}"));
    assert!(line.starts_with("POST /alerts "), "{line}");
    assert_eq!(body["key"], cycle["alerts"][0]["key"], "{body}");
}

#[test]
fn an_https_webhook_with_an_unknown_issuer_gets_nothing() {
    // Without the private CA the certificate is not trusted (Mozilla's roots): the handshake fails and no alert
    // is delivered, never posted in the clear.
    let (url, _ca_pem, received) = https_webhook_listener();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.notify.webhook_url = Some(url);
    let (_app, _cycle) = app_with_an_alert(dir.path(), &mut config);
    let (line, body) = received.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(line.starts_with("handshake failed"), "{line} {body}");
    assert_eq!(body, Value::Null);
}

#[test]
fn a_webhook_ca_file_that_holds_no_certificate_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, "not a certificate\n").unwrap();
    let mut config = Config::default();
    config.server.data_dir = dir.path().join("data");
    config.notify.webhook_url = Some("https://localhost:9/alerts".into());
    config.notify.webhook_ca_file = Some(ca_file);
    config.validate().unwrap();
    let err = format!("{:#}", App::open(&config).err().unwrap());
    assert!(
        err.contains("notify.webhook_ca_file") && err.contains("no certificate"),
        "{err}"
    );
}

#[test]
fn an_alert_is_posted_to_the_webhook_as_json() {
    let (url, received) = webhook_listener();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.data_dir = dir.path().join("data");
    config.notify.webhook_url = Some(url);
    config.validate().unwrap();
    let app = App::open(&config).unwrap();
    for i in 0..20 {
        app.store()
            .put(
                &format!("d{i}"),
                store::Document {
                    text: "t".into(),
                    vector: None,
                    meta: None,
                },
            )
            .unwrap();
    }
    // The open segment's mirror is lost: a serious integrity issue, reported by several checks at once.
    let wal = config.server.data_dir.join("wal");
    let mirror = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "mir"))
        .unwrap();
    std::fs::remove_file(&mirror).unwrap();
    let cycle = app.run_cycle(Some(false)).unwrap();
    let fired = cycle["alerts"].as_array().unwrap();
    assert!(!fired.is_empty(), "the cycle fired no alert: {cycle}");
    let (line, body) = received
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("no POST reached the webhook: {e}; cycle: {cycle}"));
    assert!(line.starts_with("POST /alerts "), "{line}");
    assert_eq!(body["key"], fired[0]["key"], "{body}");
    assert!(
        body["rule"].is_string() && body["title"].is_string(),
        "{body}"
    );
    assert_eq!(
        body["resource"],
        json!(fired[0]["resource"]),
        "the alert names the damaged resource: {body}"
    );
}

#[test]
fn a_bad_webhook_url_is_refused_naming_the_key() {
    let mut config = Config::default();
    config.notify.webhook_url = Some("ftp://example.com/hook".into());
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("notify.webhook_url") && err.contains("ftp://example.com/hook"),
        "{err}"
    );
    config.notify.webhook_url = Some("https://example.com/hook".into());
    config.validate().unwrap();
    config.notify.webhook_url = None;
    config.notify.webhook_timeout_ms = 0;
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("notify.webhook_timeout_ms = 0"), "{err}");
    config.notify.webhook_timeout_ms = 5_000;
    config.notify.log = false;
    let warnings = config.validate().unwrap();
    assert!(
        warnings.iter().any(|w| w.key == "notify.log"),
        "{warnings:?}"
    );
}

/// A listener that records each request's head (request line and headers, lowercased names) and body, and answers
/// the statuses of `answers` in turn (200 once they run out).
fn scripted_listener(answers: Vec<u16>) -> (String, mpsc::Receiver<(Vec<String>, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/enqueue", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut answers = answers.into_iter();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(&mut conn);
            let mut head = Vec::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push(match line.split_once(':') {
                    Some((k, v)) => format!("{}:{}", k.to_ascii_lowercase(), v.trim_end()),
                    None => line.trim_end().to_string(),
                });
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            drop(reader);
            let status = answers.next().unwrap_or(200);
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            if tx
                .send((head, serde_json::from_slice(&body).unwrap_or(Value::Null)))
                .is_err()
            {
                return;
            }
        }
    });
    (url, rx)
}

#[test]
fn a_pagerduty_event_carries_the_headers_and_is_retried_past_a_503() {
    let (url, received) = scripted_listener(vec![503]);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.notify.webhook_url = Some(url);
    config.notify.webhook_format = medic::notify::WebhookFormat::Pagerduty;
    config.notify.pagerduty_routing_key = Some("R0UT1NGKEY".into());
    config
        .notify
        .webhook_headers
        .insert("X-Medic-Auth".into(), "s3cret".into());
    let (_app, cycle) = app_with_an_alert(dir.path(), &mut config);
    let first = cycle["alerts"][0].clone();
    let (head, refused) = received.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(head[0].starts_with("POST /enqueue "), "{head:?}");
    assert!(
        head.contains(&"x-medic-auth: s3cret".to_string()),
        "{head:?}"
    );
    // The 503 is retried after the backoff with the same event.
    let (_, retried) = received.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(retried, refused);
    assert_eq!(retried["routing_key"], "R0UT1NGKEY");
    assert_eq!(retried["event_action"], "trigger");
    assert_eq!(retried["payload"]["source"], "medic");
    assert_eq!(retried["payload"]["component"], first["resource"]);
    let dedup = retried["dedup_key"].as_str().unwrap();
    match first["incident_id"].as_u64() {
        Some(id) => assert_eq!(dedup, format!("medic-incident-{id}")),
        None => assert_eq!(dedup, first["key"].as_str().unwrap()),
    }
    // `medic config` never shows the secrets.
    let shown = toml::to_string(&config.redacted()).unwrap();
    assert!(
        !shown.contains("s3cret") && !shown.contains("R0UT1NGKEY"),
        "{shown}"
    );
    // The routing key is required with the PagerDuty format.
    config.notify.pagerduty_routing_key = None;
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("notify.pagerduty_routing_key"), "{e}");
}

#[test]
fn alerts_are_appended_to_a_json_lines_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    let path = dir.path().join("alerts.jsonl");
    config.notify.file = Some(path.clone());
    let (_app, cycle) = app_with_an_alert(dir.path(), &mut config);
    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fired = cycle["alerts"].as_array().unwrap();
    assert_eq!(lines.len(), fired.len(), "{lines:?}");
    for (line, alert) in lines.iter().zip(fired) {
        assert_eq!(line["key"], alert["key"]);
        assert_eq!(line["title"], alert["title"]);
    }
}
