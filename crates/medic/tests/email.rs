//! Mail through the real `medic serve`, to a local SMTP sink speaking the protocol over a TCP listener (EHLO, MAIL,
//! RCPT, DATA, QUIT): an escalated SEV0 arrives as one mail whose subject and body name the incident and the
//! command that acknowledges it. An SMTP server that refuses connections is retried and the failure logged; one that
//! accepts and never answers is given up after the receiver's `timeout_ms`; neither holds up the engine, whose
//! reminders keep reaching a webhook beside them.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{alert_receiver, start_with_config, wait_for};

/// One mail as the sink received it.
#[derive(Debug, Clone)]
struct Mail {
    from: String,
    to: Vec<String>,
    /// Headers and body as sent, dot-stuffing undone.
    data: String,
}

impl Mail {
    /// A header's value, unfolded, its RFC 2047 encoded words decoded.
    fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut()
                && (line.starts_with(' ') || line.starts_with('\t'))
            {
                v.push_str(line);
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_string());
            }
        }
        value.map(|v| decode_words(&v))
    }

    /// The body, its transfer encoding (7bit, 8bit, quoted-printable or base64) undone.
    fn body(&self) -> String {
        let body = self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let encoding = self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        match encoding.as_str() {
            "quoted-printable" => quoted_printable(&body.replace("=\r\n", "")),
            "base64" => String::from_utf8_lossy(&base64(body)).into_owned(),
            _ => body.to_string(),
        }
    }
}

fn quoted_printable(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// `=?utf-8?b?...?=` and `=?utf-8?q?...?=` words decoded (the space between two of them dropped).
fn decode_words(v: &str) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(start) = rest.find("=?") {
        let Some(end) = rest[start + 2..].find("?=").map(|e| start + 2 + e) else {
            break;
        };
        let word = &rest[start + 2..end];
        let parts: Vec<&str> = word.splitn(3, '?').collect();
        let decoded = match parts.as_slice() {
            [_, b, t] if b.eq_ignore_ascii_case("b") => {
                String::from_utf8_lossy(&base64(t)).into_owned()
            }
            [_, q, t] if q.eq_ignore_ascii_case("q") => quoted_printable(&t.replace('_', " ")),
            _ => rest[start..end + 2].to_string(),
        };
        let between = &rest[..start];
        // Whitespace between two encoded words is not part of the text (RFC 2047).
        let between_words = between.trim().is_empty() && !out.is_empty();
        if !between_words {
            out.push_str(between);
        }
        out.push_str(&decoded);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Speaks SMTP on one connection until QUIT, adding every mail to `got`.
fn converse(conn: TcpStream, got: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut lines = BufReader::new(conn);
    out.write_all(b"220 localhost ESMTP sink\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let answer: &[u8] = if upper.starts_with("EHLO") {
            b"250 localhost\r\n"
        } else if upper.starts_with("HELO")
            || upper.starts_with("RSET")
            || upper.starts_with("NOOP")
        {
            b"250 OK\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = line[10..].trim().to_string();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(line[8..].trim().to_string());
            b"250 OK\r\n"
        } else if upper.starts_with("DATA") {
            out.write_all(b"354 end with <CR><LF>.<CR><LF>\r\n")?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if lines.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            got.lock().unwrap().push(Mail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
            });
            b"250 OK queued\r\n"
        } else if upper.starts_with("QUIT") {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            b"502 not implemented\r\n"
        };
        out.write_all(answer)?;
    }
}

/// A local SMTP sink: its port and the mails it received.
fn smtp_sink() -> (u16, Arc<Mutex<Vec<Mail>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<Mail>>> = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let g = g.clone();
            std::thread::spawn(move || converse(conn, &g));
        }
    });
    (port, got)
}

/// A listener that accepts connections and never says a word: its port, and the connections it holds.
fn silent_server() -> (u16, Arc<Mutex<Vec<TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let h = held.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            h.lock().unwrap().push(conn);
        }
    });
    (port, held)
}

/// A loopback port nothing listens on (connections are refused).
fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// 40 documents written through a first daemon, then the same bytes flipped in every WAL file of at least 600 bytes
/// (the open segment and its mirror): the next start finds acknowledged records lost from every copy, a SEV0.
fn store_with_a_loss(data: &Path, logs: &Path, config: &str) {
    let d = start_with_config(data, logs, config);
    for i in 0..40 {
        let (s, _) = d.json("PUT", &format!("/v1/docs/doc-{i}"), Some(&support::doc(i)));
        assert_eq!(s, 200);
    }
    d.stop();
    support::damage_every_wal_copy(data);
}

fn email_receiver(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[[escalation.receivers]]\nname = \"{name}\"\nkind = \"email\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         tls = \"none\"\nfrom = \"medic <medic@example.com>\"\nto = [\"oncall@example.com\", \"Second <second@example.com>\"]\n{extra}\n"
    )
}

#[test]
fn an_escalated_sev0_arrives_by_mail_naming_the_incident_and_the_command_that_acknowledges_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (port, mails) = smtp_sink();
    let config = format!(
        "[checks]\nshallow_interval_ms = 200\n\n[engine]\nrenotify_interval_us = \"1h\"\n\n{}\n\
         [[escalation.policies]]\nname = \"data\"\nseverity_max = \"Sev0\"\n\n\
         [[escalation.policies.levels]]\ndelay_ms = \"1h\"\nreceivers = [\"mail\"]\n",
        email_receiver("mail", port, "")
    );
    store_with_a_loss(&data, tmp.path(), &config);
    let d = start_with_config(&data, tmp.path(), &config);
    let mail = wait_for("the escalation's mail", Duration::from_secs(30), || {
        mails
            .lock()
            .unwrap()
            .iter()
            .find(|m| m.header("Subject").is_some_and(|s| s.starts_with("[SEV0]")))
            .cloned()
    });
    let (status, incidents) = d.json("GET", "/v1/incidents", None);
    assert_eq!(status, 200);
    let id = incidents
        .as_array()
        .or_else(|| incidents["incidents"].as_array())
        .unwrap()
        .iter()
        .find(|i| i["severity"] == "Sev0")
        .unwrap_or_else(|| panic!("no SEV0 incident: {incidents}"))["id"]
        .as_u64()
        .unwrap();
    let subject = mail.header("Subject").unwrap();
    assert!(
        subject.starts_with(&format!("[SEV0] medic incident {id} (escalation): ")),
        "{subject}"
    );
    assert_eq!(mail.from, "<medic@example.com>", "{mail:?}");
    assert_eq!(
        mail.to,
        ["<oncall@example.com>", "<second@example.com>"],
        "{mail:?}"
    );
    assert!(
        mail.header("From")
            .is_some_and(|f| f.contains("medic@example.com")),
        "{mail:?}"
    );
    let body = mail.body();
    for want in [
        format!("Incident: {id}"),
        format!("medic ack {id}"),
        "acknowledged_data_lost".to_string(),
        "Severity: SEV0".to_string(),
    ] {
        assert!(body.contains(&want), "{want:?} not in the body:\n{body}");
    }
    // One mail for the event (its issues' alerts listed in it), not one per alert.
    let sev0 = mails
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.header("Subject").is_some_and(|s| s.starts_with("[SEV0]")))
        .count();
    assert_eq!(sev0, 1);
    d.stop();
}

#[test]
fn an_smtp_server_that_refuses_or_never_answers_is_retried_and_reported_and_never_holds_up_the_engine()
 {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (silent_port, held) = silent_server();
    let refused = refused_port();
    let (hook_url, hook) = alert_receiver();
    // Reminders every second; the silent server holds each exchange up to 2 s, twice (one retry).
    let config = format!(
        "[checks]\nshallow_interval_ms = 200\n\n[engine]\nrenotify_interval_us = \"1s\"\n\n{}{}\
         [[escalation.receivers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{hook_url}\"\n\n\
         [[escalation.policies]]\nname = \"data\"\nseverity_max = \"Sev0\"\n\n\
         [[escalation.policies.levels]]\ndelay_ms = \"1h\"\nreceivers = [\"silent\", \"down\", \"hook\"]\n",
        email_receiver("silent", silent_port, "timeout_ms = 2000\nretries = 1"),
        email_receiver("down", refused, "timeout_ms = 2000\nretries = 1"),
    );
    store_with_a_loss(&data, tmp.path(), &config);
    let d = start_with_config(&data, tmp.path(), &config);
    let t0 = Instant::now();
    // The webhook beside the mail hears of the escalation and of a reminder every second, while the silent server
    // holds a mail for seconds.
    wait_for(
        "the escalation at the webhook",
        Duration::from_secs(30),
        || {
            hook.lock()
                .unwrap()
                .iter()
                .any(|a| a["rule"] == "escalation")
                .then_some(())
        },
    );
    wait_for(
        "three reminders at the webhook",
        Duration::from_secs(30),
        || {
            (hook
                .lock()
                .unwrap()
                .iter()
                .filter(|a| a["rule"] == "escalation_repeat")
                .count()
                >= 3)
                .then_some(())
        },
    );
    assert!(
        !held.lock().unwrap().is_empty(),
        "the silent server was never called"
    );
    // The API answers at once meanwhile.
    let asked = Instant::now();
    let (status, _) = d.json("GET", "/v1/status", None);
    assert_eq!(status, 200);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    // Both failures are reported, each after its retry, naming the server.
    for port in [refused, silent_port] {
        let failed = format!("email delivery failed after 2 attempt(s) through 127.0.0.1:{port}");
        wait_for(&failed, Duration::from_secs(30), || {
            d.stderr().contains(&failed).then_some(())
        });
    }
    assert!(t0.elapsed() < Duration::from_secs(60));
    d.stop();
}
