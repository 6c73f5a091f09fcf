//! The `medic` binary, run as a user would: exit codes, JSON output, usage errors, bulk load, the daemon client.

use std::path::Path;
use std::process::{Command, Output};

fn medic(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .current_dir(cwd)
        .env_remove("MEDIC_SERVER")
        .env_remove("MEDIC_TOKEN")
        .env_remove("MEDIC_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run medic")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The last line of stdout, parsed as a JSON object.
fn last_json(o: &Output) -> serde_json::Value {
    let out = stdout(o);
    let line = out.lines().last().unwrap_or_else(|| {
        panic!("no stdout; stderr: {}", stderr(o));
    });
    let v: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {line}"));
    assert!(v.is_object(), "one JSON object: {line}");
    v
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["frobnicate"][..],
        &["check", "--tier", "bogus"],
        &["search", "--k", "3"],
        &["put", "only-an-id"],
        &["report", "not-a-number"],
        &["put", "x", "--text", "a", "--file", "f"],
    ] {
        let o = medic(args, dir.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty(), "{args:?} explains itself");
    }
}

#[test]
fn bad_json_arguments_are_usage_errors_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let o = medic(
        &["put", "a", "--text", "t", "--vector", "[1, oops]"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--vector"), "{}", stderr(&o));
    let o = medic(&["put", "a", "--text", "t", "--meta", "[1]"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--meta must be a JSON object"),
        "{}",
        stderr(&o)
    );
    let o = medic(&["search", "--text", "x", "--k", "0"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("search_k_max"), "{}", stderr(&o));
}

#[test]
fn help_and_version_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let o = medic(&["--help"], dir.path());
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("serve"));
    let o = medic(&["--version"], dir.path());
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("medic "));
}

#[test]
fn print_default_config_parses_as_toml() {
    let dir = tempfile::tempdir().unwrap();
    let o = medic(&["config", "--print-default"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let parsed: toml::Table = toml::from_str(&text).expect("valid TOML");
    assert!(parsed.contains_key("server"), "{text}");
    // And medic reads it back: write it, use it.
    let path = dir.path().join("medic.toml");
    std::fs::write(&path, &text).unwrap();
    let o = medic(
        &["config", "--config", path.to_str().unwrap(), "--json"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    assert_eq!(v["server"]["listen"], "127.0.0.1:7878");
}

#[test]
fn bad_config_file_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nlisten = 5\nnope = 1\n").unwrap();
    let o = medic(&["status", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("bad.toml"), "{}", stderr(&o));
}

#[test]
fn load_with_a_bad_line_names_it_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docs.jsonl");
    std::fs::write(
        &file,
        concat!(
            "{\"id\": \"a\", \"text\": \"alpha\"}\n",
            "\n",
            "{\"id\": \"b\", \"text\": \"beta\", \"vector\": [1, 2]}\n",
            "{\"id\": \"c\", \"txt\": \"gamma\"}\n",
            "{\"id\": \"d\", \"text\": \"delta\"}\n",
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let o = medic(
        &[
            "load",
            file.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("docs.jsonl:4"), "names the line: {err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!data.exists(), "the data directory was not even opened");

    std::fs::write(
        &file,
        concat!(
            "{\"id\": \"a\", \"text\": \"alpha\", \"vector\": [1, 2, 3]}\n",
            "{\"id\": \"b\", \"text\": \"beta\", \"vector\": [1, 2]}\n",
        ),
    )
    .unwrap();
    let o = medic(&["load", file.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("docs.jsonl:2"), "{}", stderr(&o));
    assert!(stderr(&o).contains("line 1 has 3"), "{}", stderr(&o));
}

#[test]
fn unreachable_server_says_where_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", closed_port());
    let o = medic(&["status", "--server", &url], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&url), "{err}");
    assert!(
        err.contains("refused") || err.contains("timed out"),
        "{err}"
    );
    let o = medic(&["status", "--server", "ftp://x"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
