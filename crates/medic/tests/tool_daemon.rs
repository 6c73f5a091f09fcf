//! The real `medic serve` process as a service manager runs it: JSON log lines on stderr (`--log-format json`), the
//! access log at debug level (never a token), and SIGHUP reloading the configuration file instead of ending the
//! daemon.

use std::process::Command;
use std::time::Duration;

mod support;

use serde_json::Value;
use support::{Daemon, wait_for};

const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

fn hangup(d: &Daemon) {
    let st = Command::new("kill")
        .args(["-HUP", &d.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn dry_run(d: &Daemon) -> Option<bool> {
    let (s, v) = d.json("GET", "/v1/status", None);
    assert_eq!(s, 200, "{v}");
    v["dry_run"].as_bool()
}

fn healthy(d: &Daemon) {
    let (s, v) = d.json("GET", "/health", None);
    assert_eq!(s, 200, "{v}; stderr:\n{}", d.stderr());
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(
        &tmp.path().join("data"),
        tmp.path(),
        &["--listen", "127.0.0.1:0", "--log-format", "json"],
    );
    healthy(&d);
    let log = wait_for("the \"medic serving\" log line", RELOAD_TIMEOUT, || {
        let log = d.stderr();
        log.contains("medic serving").then_some(log)
    });
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\nstderr:\n{log}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["timestamp"].is_string(), "{line}");
    }
    let serving: Value =
        serde_json::from_str(lines.iter().find(|l| l.contains("medic serving")).unwrap()).unwrap();
    assert_eq!(serving["fields"]["message"], "medic serving");
    assert_eq!(serving["level"], "INFO");
    d.stop();
}

#[test]
fn sighup_reloads_what_can_change_and_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("medic.toml");
    std::fs::write(&config, "[engine]\ndry_run = false\n").unwrap();
    let d = Daemon::start_with(
        &tmp.path().join("data"),
        tmp.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert_eq!(dry_run(&d), Some(false));

    // A live key takes effect; one that needs a restart is named, and the daemon goes on.
    std::fs::write(
        &config,
        "[server]\nshutdown_grace_ms = 5000\n\n[engine]\ndry_run = true\n\n[notify]\nlog = true\nwebhook_timeout_ms = 1000\n",
    )
    .unwrap();
    hangup(&d);
    wait_for("engine.dry_run = true after SIGHUP", RELOAD_TIMEOUT, || {
        (dry_run(&d) == Some(true)).then_some(())
    });
    let log = wait_for("the reload's log lines", RELOAD_TIMEOUT, || {
        let log = d.stderr();
        log.contains("configuration reloaded").then_some(log)
    });
    assert!(
        log.contains("needs a restart: server.shutdown_grace_ms"),
        "{log}"
    );
    assert!(!log.contains("needs a restart: engine.dry_run"), "{log}");
    assert!(!log.contains("needs a restart: notify."), "{log}");
    healthy(&d);

    // A bad file changes nothing: the error is logged and the configuration in force stays.
    std::fs::write(&config, "[engine]\ndry_run = \"sometimes\"\n").unwrap();
    hangup(&d);
    wait_for("the refused reload's log line", RELOAD_TIMEOUT, || {
        d.stderr()
            .contains("configuration not reloaded, the one in force stays")
            .then_some(())
    });
    healthy(&d);
    assert_eq!(dry_run(&d), Some(true));

    // Out of range, likewise refused; then a good file applies again.
    std::fs::write(&config, "[http]\nsearch_k_max = 0\n").unwrap();
    hangup(&d);
    wait_for("the second refused reload", RELOAD_TIMEOUT, || {
        (d.stderr()
            .matches("configuration not reloaded, the one in force stays")
            .count()
            == 2)
            .then_some(())
    });
    healthy(&d);
    std::fs::write(&config, "[engine]\ndry_run = false\n").unwrap();
    hangup(&d);
    wait_for(
        "engine.dry_run = false after SIGHUP",
        RELOAD_TIMEOUT,
        || (dry_run(&d) == Some(false)).then_some(()),
    );
    healthy(&d);
    d.stop();
}

/// The access-log lines (target `medic::access`) of a JSON log.
fn access_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "medic::access")
        .collect()
}

fn access_entry<'a>(lines: &'a [Value], method: &str, path: &str, code: u16) -> Option<&'a Value> {
    lines.iter().find(|v| {
        v["fields"]["method"] == method
            && v["fields"]["path"] == path
            && v["fields"]["code"] == code
    })
}

#[test]
fn access_log_at_debug_names_method_path_code_duration_and_bytes_never_the_token() {
    const TOKEN: &str = "s3cret-access-log-token";
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start_with_env(
        &tmp.path().join("data"),
        tmp.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--token",
            TOKEN,
        ],
        &[("RUST_LOG", "info,medic::access=debug")],
    );
    healthy(&d);
    let put = |token: Option<&str>| {
        let mut req = d
            .agent
            .put(format!("{}/v1/docs/logged?token={TOKEN}", d.url))
            .header("Content-Type", "application/json");
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = req.send(r#"{"text":"in the access log"}"#).unwrap();
        let body = resp.body_mut().read_to_string().unwrap();
        (resp.status().as_u16(), body)
    };
    let (code, body) = put(Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    let (code, body) = put(None);
    assert_eq!(code, 401, "{body}");
    let (code, body) = put(Some("wrong-token"));
    assert_eq!(code, 401, "{body}");
    let (code, _, _) = d.request("GET", "/v1/docs/nowhere", None);
    assert_eq!(code, 404);

    let log = wait_for("the access log's lines", RELOAD_TIMEOUT, || {
        let log = d.stderr();
        let lines = access_lines(&log);
        access_entry(&lines, "GET", "/v1/docs/nowhere", 404)
            .is_some()
            .then_some(log)
    });
    let lines = access_lines(&log);
    let ok = access_entry(&lines, "PUT", "/v1/docs/logged", 200).unwrap_or_else(|| panic!("{log}"));
    assert_eq!(ok["level"], "DEBUG", "{ok}");
    assert!(ok["fields"]["duration_us"].as_u64().is_some(), "{ok}");
    let bytes = ok["fields"]["bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("{ok}"));
    assert!(bytes > 10, "an answer {{\"id\",\"lsn\"}} has bytes: {ok}");
    let refused: Vec<_> = lines
        .iter()
        .filter(|v| v["fields"]["path"] == "/v1/docs/logged" && v["fields"]["code"] == 401)
        .collect();
    assert_eq!(refused.len(), 2, "both refusals logged: {log}");
    assert!(
        access_entry(&lines, "GET", "/health", 200).is_some(),
        "{log}"
    );
    // Neither the token (header or query string) nor a wrong one reaches the log.
    assert!(!log.contains(TOKEN), "the token is in the log:\n{log}");
    assert!(!log.contains("wrong-token"), "{log}");
    d.stop();

    // At the default level (info) there is no access log.
    let d = Daemon::start_with_env(
        &tmp.path().join("data2"),
        tmp.path(),
        &["--listen", "127.0.0.1:0", "--log-format", "json"],
        &[("RUST_LOG", "info")],
    );
    healthy(&d);
    let (code, _, _) = d.request("GET", "/v1/docs/nowhere", None);
    assert_eq!(code, 404);
    let log = d.stderr();
    assert!(log.contains("medic serving"), "{log}");
    assert!(access_lines(&log).is_empty(), "{log}");
    d.stop();
}
