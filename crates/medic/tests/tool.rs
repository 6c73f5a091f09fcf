//! medic as an installed tool: what `medic config` shows, output into a closed pipe, completions, the man page, the
//! packaging files in `deploy/`.

use std::path::Path;
use std::process::{Command, Output};

fn medic(args: &[&str], cwd: &Path) -> Output {
    medic_env(args, cwd, &[])
}

fn medic_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .current_dir(cwd)
        .env_remove("MEDIC_SERVER")
        .env_remove("MEDIC_TOKEN")
        .env_remove("MEDIC_CONFIG")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .expect("run medic")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const SERVER_TOKEN: &str = "server-secret-0123456789abcdef";
const OPERATOR_TOKEN: &str = "operator-secret-0123456789abcdef";

#[test]
fn config_never_prints_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("medic.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\ntoken = \"{SERVER_TOKEN}\"\n\n[http.operators]\nalice = \"{OPERATOR_TOKEN}\"\n"
        ),
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let flag_token = "flag-secret-0123456789abcdef";
    for args in [
        vec!["config", "--config", config],
        vec!["config", "--config", config, "--json"],
        vec!["config", "--config", config, "--token", flag_token],
    ] {
        let o = medic(&args, dir.path());
        let (out, err) = (stdout(&o), stderr(&o));
        assert!(o.status.success(), "{args:?}: {err}");
        for secret in [SERVER_TOKEN, OPERATOR_TOKEN, flag_token] {
            assert!(
                !out.contains(secret) && !err.contains(secret),
                "{args:?} printed a token:\n{out}{err}"
            );
        }
        assert!(out.contains("<redacted>"), "{args:?}:\n{out}");
        // The operator's name still shows who may act.
        assert!(out.contains("alice"), "{args:?}:\n{out}");
    }
    // The JSON form says which tokens are set, not what they are.
    let o = medic(&["config", "--config", config, "--json"], dir.path());
    let v: serde_json::Value = serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    assert_eq!(v["server"]["token"], "<redacted>");
    assert_eq!(v["http"]["operators"]["alice"], "<redacted>");
    // No token configured: nothing to redact, and no placeholder pretends there is one.
    let o = medic(&["config", "--json"], dir.path());
    let v: serde_json::Value = serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    assert!(v["server"]["token"].is_null(), "{v}");
}

/// `medic ... | head` where `head` has already exited: the write meets a closed pipe. The process ends quietly
/// (SIGPIPE's default action, or a clean exit), never with a panic message.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt as _;
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["config", "--print-default"][..],
        &["--help"][..],
        &["serve", "--help"][..],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        // The reader is gone before medic writes its first byte.
        drop(reader);
        let o = Command::new(env!("CARGO_BIN_EXE_medic"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("MEDIC_CONFIG")
            .stdout(writer)
            .output()
            .expect("run medic");
        let err = stderr(&o);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert!(
            o.status.success() || o.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?}; stderr: {err}",
            o.status
        );
    }
}

#[test]
fn completions_name_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let o = medic(&["completions", "bash"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let script = stdout(&o);
    for name in ["serve", "status", "search", "completions", "man", "approve"] {
        assert!(script.contains(name), "bash completions lack {name}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let o = medic(&["completions", shell], dir.path());
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        assert!(
            stdout(&o).contains("serve"),
            "{shell} completions lack serve"
        );
    }
    // An unknown shell is a usage error naming the accepted ones.
    let o = medic(&["completions", "tcsh"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bash"), "{}", stderr(&o));
}

#[test]
fn man_page_is_roff_naming_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let o = medic(&["man"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let page = stdout(&o);
    // roff: clap_mangen opens with its quote-string definitions, then the title line.
    assert!(
        page.lines().any(|l| l.starts_with(".TH medic 1")),
        "{}",
        &page[..page.len().min(300)]
    );
    assert!(page.contains("serve"), "{page}");
}

/// `medic man --dir` writes medic.1 and a page for every subcommand the pages name (`medic-serve(1)`, ...): no page
/// points to one that was not written.
#[test]
fn man_pages_written_to_a_directory_include_every_page_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let o = medic(&["man", "--dir", pages.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let written: std::collections::BTreeSet<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for want in [
        "medic.1",
        "medic-serve.1",
        "medic-collections.1",
        "medic-collections-create.1",
    ] {
        assert!(written.contains(want), "{want} missing from {written:?}");
    }
    for name in &written {
        let page = std::fs::read_to_string(pages.join(name)).unwrap();
        // clap_mangen names a subcommand's page as `medic\-serve(1)` in roff.
        for (i, _) in page.match_indices("(1)") {
            let start = page[..i]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '\\' || c == '_'))
                .map_or(0, |p| p + 1);
            let named = page[start..i].replace("\\-", "-");
            if named.starts_with("medic") {
                assert!(
                    written.contains(&format!("{named}.1")),
                    "{name} names {named}(1), not written"
                );
            }
        }
    }
}

fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The words after the binary on the unit's `ExecStart=` line.
fn exec_start_args(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("deploy/medic.service has an ExecStart= line");
    let mut words = line.split_whitespace().map(str::to_string);
    let binary = words.next().expect("ExecStart names the binary");
    assert!(binary.ends_with("/medic"), "{binary}");
    words.collect()
}

#[test]
fn systemd_unit_flags_are_accepted_by_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(repo_root().join("deploy/medic.service")).unwrap();
    let args = exec_start_args(&unit);
    assert_eq!(args.first().map(String::as_str), Some("serve"), "{args:?}");
    for hardening in [
        "DynamicUser=yes",
        "StateDirectory=medic",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(hardening), "the unit lacks {hardening}");
    }
    // The data directory is the one systemd creates (StateDirectory=medic).
    let data = args
        .iter()
        .position(|a| a == "--data")
        .map(|i| &args[i + 1]);
    assert_eq!(data.map(String::as_str), Some("/var/lib/medic"));
    // clap checks every flag and value before it answers `--help`: an unknown flag or a bad value exits 2.
    let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
    with_help.push("--help");
    let o = medic(&with_help, dir.path());
    assert!(
        o.status.success(),
        "ExecStart's flags {args:?} are refused: {}",
        stderr(&o)
    );
    // The check can fail: a flag medic does not know is refused the same way.
    let o = medic(&["serve", "--no-such-flag", "--help"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(repo_root().join("deploy/medic.service")).unwrap();
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("note: systemd-analyze is not installed; deploy/medic.service not verified");
        return;
    }
    // The unit names the installed binary; verify checks that it exists, so the copy points at this build's.
    let dir = tempfile::tempdir().unwrap();
    let installed = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let unit = unit.replace(&installed, env!("CARGO_BIN_EXE_medic"));
    let path = dir.path().join("medic.service");
    std::fs::write(&path, unit).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(
        o.status.success(),
        "systemd-analyze verify: {:?}\n{err}",
        o.status
    );
    // verify exits 0 over unknown keys and values it cannot parse ("ignoring"): any word about the unit fails.
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("medic.service"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify:\n{err}");
}
