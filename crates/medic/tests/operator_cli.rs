//! The operator's command line, black-box: configuration errors found before anything is created and naming the
//! file, the wording of what `medic` prints to people. Each test states what README.md promises.

mod support;

use support::{free_port, medic_cli};

/// A configuration error is exit 2 before anything is created (README.md "Command line": a usage error is exit 2;
/// "Supervising other services": a malformed playbook stops the start). A `[playbooks] dir` that does not exist
/// was found only after the store had been created, and exited 1.
#[test]
fn a_missing_playbooks_dir_refuses_the_start_before_the_store_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("np.toml");
    let missing = tmp.path().join("nonexistent");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n[playbooks]\ndir = {:?}\n",
            free_port(),
            missing.display().to_string()
        ),
    )
    .unwrap();
    let data = tmp.path().join("s3");
    let (code, out, err) = medic_cli(&[
        "--config",
        cfg.to_str().unwrap(),
        "serve",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "a configuration error is exit 2: {out}{err}");
    assert!(
        err.contains(&missing.display().to_string()) && err.contains("[playbooks] dir"),
        "the error names the directory and the key: {err}"
    );
    assert!(
        !data.exists(),
        "nothing is created for a daemon that does not start: {}",
        data.display()
    );
}

/// A value out of range names the file and the line it is on, as a parse error does (it named only the key).
#[test]
fn a_value_out_of_range_names_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("range.toml");
    std::fs::write(&cfg, "# checks\n\n[checks]\nshallow_interval_ms = 5\n").unwrap();
    let (code, out, err) = medic_cli(&["--config", cfg.to_str().unwrap(), "config"]);
    assert_eq!(code, 2, "{out}{err}");
    let want = format!("{}:4:", cfg.display());
    assert!(
        err.contains(&want) && err.contains("checks.shallow_interval_ms = 5"),
        "the error names `{want}` and the key: {err}"
    );
    // An [engine] value the same way.
    std::fs::write(&cfg, "[engine]\napproval_risk_max = 1.5\n").unwrap();
    let (code, _, err) = medic_cli(&["--config", cfg.to_str().unwrap(), "config"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{}:2:", cfg.display())),
        "the error names the file and line: {err}"
    );
}

/// An escalation level naming a receiver when none is configured says so, not `(the receivers are: )`.
#[test]
fn an_unknown_receiver_with_none_configured_says_none_are() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("esc.toml");
    std::fs::write(
        &cfg,
        "[[escalation.policies]]\nname = \"all\"\n\n[[escalation.policies.levels]]\ndelay_ms = \"15m\"\nreceivers = [\"x\"]\n",
    )
    .unwrap();
    let (code, out, err) = medic_cli(&["--config", cfg.to_str().unwrap(), "config"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("unknown receiver \"x\"") && err.contains("no receiver is configured"),
        "{err}"
    );
    assert!(!err.contains("the receivers are: )"), "{err}");
}

/// Offline `medic status` opens the store for reading only and says so once (it printed `read-only:    read-only:
/// DIR was opened ...`).
#[test]
fn offline_status_says_read_only_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (code, _, err) = support::medic(&data, &["put", "a", "--text", "x"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, err) = support::medic(&data, &["status"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("read-only:"))
        .unwrap_or_else(|| panic!("no read-only line: {out}{err}"));
    assert_eq!(line.matches("read-only").count(), 1, "said once: {line}");
    assert!(line.contains("was opened for reading only"), "{line}");
}

/// A usage error's usage line lists what the command needs: `--token` is not required, and MEDIC_TOKEN being set
/// does not make it look so. The token from MEDIC_TOKEN is still sent (a 401 otherwise).
#[test]
fn medic_token_in_the_environment_is_not_listed_as_a_required_flag() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["silence", "add", "--match", "code=x"])
        .env("MEDIC_TOKEN", "some-token-0123456789")
        .env_remove("MEDIC_SERVER")
        .env_remove("MEDIC_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let usage = err
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap_or_else(|| panic!("no usage line: {err}"));
    assert!(usage.contains("--comment"), "{usage}");
    assert!(!usage.contains("--token"), "{usage}");
}

/// MEDIC_TOKEN is the token sent when `--token` is not given (README.md "Command line").
#[test]
fn medic_token_from_the_environment_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let d = support::start_with_config(
        &tmp.path().join("data"),
        tmp.path(),
        "[server]\ntoken = \"env-token-0123456789\"\n",
    );
    let put = |token: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_medic"));
        c.args(["--server", d.url.as_str(), "put", "a", "--text", "x"])
            .env_remove("MEDIC_SERVER")
            .env_remove("MEDIC_CONFIG")
            .env_remove("MEDIC_TOKEN");
        if let Some(t) = token {
            c.env("MEDIC_TOKEN", t);
        }
        let o = c.output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = put(Some("env-token-0123456789"));
    assert_eq!(code, 0, "MEDIC_TOKEN sent: {err}");
    let (code, err) = put(None);
    assert_eq!(code, 2, "no token: a 401, exit 2: {err}");
    assert!(err.contains("401"), "{err}");
    d.stop();
}
