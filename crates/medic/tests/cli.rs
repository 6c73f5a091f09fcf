//! The `medic` binary, run as a user would: exit codes, JSON output, usage errors, bulk load, the daemon client.

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
    let o = medic(&["put", "a", "--text", "t"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
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
fn config_durations_take_units_and_a_bad_one_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = config_file(
        dir.path(),
        "units.toml",
        "[checks]\nshallow_interval_ms = \"2s\"\ndeep_interval_ms = \"1m30s\"\ncomprehensive_interval_ms = 3600000\n",
    );
    let o = medic(&["config", "--config", &good, "--json"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    let checks = if v["checks"].is_null() {
        &v["config"]["checks"]
    } else {
        &v["checks"]
    };
    assert_eq!(checks["shallow_interval_ms"], 2000, "{v}");
    assert_eq!(checks["deep_interval_ms"], 90000, "{v}");
    assert_eq!(checks["comprehensive_interval_ms"], 3600000, "{v}");
    let bad = config_file(
        dir.path(),
        "bad-units.toml",
        "[checks]\n\nshallow_interval_ms = \"5 fortnights\"\n",
    );
    let o = medic(&["status", "--config", &bad], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("bad-units.toml")
            && e.contains("line 3")
            && e.contains("checks.shallow_interval_ms"),
        "{e}"
    );
    // A type error after a converted duration still names its own line.
    let mixed = config_file(
        dir.path(),
        "mixed.toml",
        "[checks]\nshallow_interval_ms = \"5s\"\n\n[server]\nlisten = 5\n",
    );
    let o = medic(&["status", "--config", &mixed], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("line 5"), "{}", stderr(&o));
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

/// Writes `text` to `dir/name` (a config file) and returns its path as a string for `--config`.
fn config_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn data_args<'a>(data: &'a Path, args: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = args.to_vec();
    v.push("--data");
    v.push(data.to_str().unwrap());
    v
}

#[test]
fn put_get_delete_round_trip_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = medic(
        &data_args(
            &data,
            &[
                "put",
                "doc 1/é",
                "--text",
                "hello world",
                "--vector",
                "[0.1, -1.25, 0.7]",
                "--meta",
                "{\"lang\": \"en\", \"n\": 3}",
                "--json",
            ],
        ),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let put = last_json(&o);
    assert_eq!(put["id"], "doc 1/é");
    assert!(put["lsn"].as_u64().unwrap() >= 1);

    let o = medic(&data_args(&data, &["get", "doc 1/é", "--json"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc = last_json(&o);
    assert_eq!(
        doc,
        serde_json::json!({"id": "doc 1/é", "text": "hello world", "vector": [0.1, -1.25, 0.7],
                           "meta": {"lang": "en", "n": 3}})
    );
    let o = medic(&data_args(&data, &["get", "doc 1/é"]), dir.path());
    assert!(stdout(&o).starts_with("hello world\n"), "{}", stdout(&o));
    assert!(stdout(&o).contains("[0.1,-1.25,0.7]"), "{}", stdout(&o));

    // Text from a file.
    let f = dir.path().join("body.txt");
    std::fs::write(&f, "from a file").unwrap();
    let o = medic(
        &data_args(&data, &["put", "f", "--file", f.to_str().unwrap()]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = medic(&data_args(&data, &["get", "f", "--json"]), dir.path());
    assert_eq!(last_json(&o)["text"], "from a file");

    let o = medic(&data_args(&data, &["delete", "doc 1/é"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = medic(&data_args(&data, &["get", "doc 1/é"]), dir.path());
    assert_eq!(o.status.code(), Some(1), "missing document exits 1");
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    let o = medic(&data_args(&data, &["delete", "doc 1/é"]), dir.path());
    assert_eq!(o.status.code(), Some(1), "deleting twice exits 1");

    // A wrong vector dimension is the user's error.
    let o = medic(
        &data_args(&data, &["put", "g", "--text", "x", "--vector", "[1, 2]"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// A mistyped `--data` is an error for every command that does not write a document, and creates nothing.
#[test]
fn commands_that_do_not_write_refuse_a_missing_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("no-such-data");
    for args in [
        &["status"][..],
        &["check"],
        &["get", "a"],
        &["delete", "a"],
        &["search", "--text", "x"],
        &["incidents"],
        &["heal", "--dry-run"],
        &["heal"],
    ] {
        let o = medic(&data_args(&data, args), dir.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("does not exist") && stderr(&o).contains("no-such-data"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
    // A first write creates it.
    let o = medic(&data_args(&data, &["put", "a", "--text", "x"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = medic(&data_args(&data, &["status"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// A new, empty store in `data` (created by a write: a put, then its delete).
fn empty_store(data: &Path, cwd: &Path) {
    for args in [&["put", "a", "--text", "x"][..], &["delete", "a"]] {
        let o = medic(&data_args(data, args), cwd);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn status_json_on_a_fresh_store_is_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // An empty directory holds no store: status says so (a mistyped --data), never HEALTHY.
    let o = medic(&data_args(&data, &["status", "--json"]), dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no medic store"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
    empty_store(&data, dir.path());
    let o = medic(&data_args(&data, &["status", "--json"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    assert_eq!(v["state"], "HEALTHY", "{v}");
    assert_eq!(v["store"]["docs"], 0, "{v}");
    // Opening and closing cleanly leaves no stale lock for the next command to find.
    let o = medic(&data_args(&data, &["status", "--json"]), dir.path());
    let v = last_json(&o);
    let issues = v["recovery"]["issues"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !issues.iter().any(|i| i["code"] == "stale_lock"),
        "{issues:?}"
    );
}

#[test]
fn check_full_is_healthy_then_escalates_after_damage_to_every_copy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("docs.jsonl");
    let lines: String = (0..40)
        .map(|i| format!("{{\"id\": \"d{i}\", \"text\": \"document number {i}\"}}\n"))
        .collect();
    std::fs::write(&file, lines).unwrap();
    let o = medic(
        &data_args(&data, &["load", file.to_str().unwrap(), "--json"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(last_json(&o)["written"], 40);

    let o = medic(
        &data_args(&data, &["check", "--tier", "full", "--json"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    assert_eq!(v["state"], "HEALTHY");
    assert_eq!(v["passed"], true);

    // Flip the same bytes in the open log segment and its mirror: the acknowledged records there are gone from
    // every copy, which no repair can undo.
    let wal = data.join("wal");
    let mut damaged = 0;
    for entry in std::fs::read_dir(&wal).unwrap() {
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
    assert!(
        damaged >= 1,
        "found log files to damage in {}",
        wal.display()
    );
    let o = medic(
        &data_args(&data, &["check", "--tier", "full", "--json"]),
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "a loss needs a human: exit 3; {}",
        stderr(&o)
    );
    // The store opens degraded and the checks report the loss precisely: file and LSN range, data at risk.
    let v = last_json(&o);
    assert_eq!(v["passed"], false, "{v}");
    let lost = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["issues"].as_array().unwrap().iter())
        .find(|i| i["code"] == "acknowledged_data_lost")
        .unwrap_or_else(|| panic!("loss reported: {v}"));
    assert!(
        lost["location"]["file"]
            .as_str()
            .unwrap()
            .starts_with("wal/"),
        "names the damaged file: {lost}"
    );
    assert!(lost["location"]["lsn_range"].is_array(), "{lost}");
    assert_eq!(lost["data_at_risk"], true);

    // Status says so too, with exit 3; writes are refused naming the loss.
    let o = medic(&data_args(&data, &["status", "--json"]), dir.path());
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let listed = last_json(&o)["store"]["lost"].clone();
    assert!(listed.as_array().is_some_and(|l| !l.is_empty()), "{listed}");
    let o = medic(
        &data_args(&data, &["put", "new", "--text", "after the loss"]),
        dir.path(),
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("acknowledged data lost"),
        "{}",
        stderr(&o)
    );

    // Accepting the loss needs --yes; then writes resume and the store is healthy again.
    let o = medic(&data_args(&data, &["accept-loss"]), dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    let o = medic(
        &data_args(&data, &["accept-loss", "--yes", "--json"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let accepted = last_json(&o);
    assert_eq!(accepted["accepted"]["ranges"], listed, "{accepted}");
    let o = medic(
        &data_args(&data, &["put", "new", "--text", "after the loss"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = medic(
        &data_args(&data, &["check", "--tier", "full", "--json"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = medic(&data_args(&data, &["status", "--json"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The acceptance is on record in the knowledge base.
    let kb = medic::kb::SqliteKb::open(&data.join("medic.sqlite3")).unwrap();
    let records = kb.loss_acceptances().unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].contains("wal/"), "{}", records[0]);
}

#[test]
fn load_of_one_batch_with_a_refused_line_writes_nothing_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = medic(
        &data_args(
            &data,
            &["put", "first", "--text", "x", "--vector", "[1, 2]"],
        ),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let file = dir.path().join("more.jsonl");
    std::fs::write(
        &file,
        concat!(
            "{\"id\": \"a\", \"text\": \"alpha\", \"meta\": {\"k\": 1}}\n",
            "{\"id\": \"b\", \"text\": \"beta\", \"vector\": [1, 2, 3]}\n",
            "{\"id\": \"c\", \"text\": \"gamma\"}\n",
        ),
    )
    .unwrap();
    let o = medic(
        &data_args(&data, &["load", file.to_str().unwrap()]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("more.jsonl:2"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    let get = |id: &str| {
        medic(&data_args(&data, &["get", id]), dir.path())
            .status
            .code()
    };
    // One batch, refused whole: the file is written whole or not at all.
    assert_eq!(get("a"), Some(1), "line 1 is of the refused batch");
    assert_eq!(get("b"), Some(1), "line 2 was refused");
    assert_eq!(get("c"), Some(1), "nothing after it");
}

#[test]
fn heal_dry_run_and_incidents_on_a_healthy_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    empty_store(&data, dir.path());
    let o = medic(
        &data_args(&data, &["heal", "--dry-run", "--json"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    assert_eq!(v["dry_run"], true, "{v}");
    let o = medic(&data_args(&data, &["incidents", "--json"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(last_json(&o)["incidents"].is_array());
    let o = medic(&data_args(&data, &["report", "999"]), dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("999"), "{}", stderr(&o));
}

#[test]
fn time_arguments_take_a_leading_minus() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    empty_store(&data, dir.path());
    for args in [
        &[
            "incidents",
            "--since",
            "-1d",
            "--severity",
            "sev0,sev1",
            "--json",
        ][..],
        &["incidents", "--since", "-2h", "--until", "-1h", "--json"],
        &[
            "incidents",
            "--until",
            "-30m",
            "--status",
            "active",
            "--json",
        ],
    ] {
        let o = medic(&data_args(&data, args), dir.path());
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(last_json(&o)["incidents"].is_array(), "{args:?}");
    }
    // A value that is not a time is still refused, naming the option.
    let o = medic(
        &data_args(&data, &["incidents", "--since", "-bogus"]),
        dir.path(),
    );
    assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stderr(&o).contains("since"), "{}", stderr(&o));
}

#[test]
fn messages_speak_to_the_person_at_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    empty_store(&data, dir.path());

    // A flag's bad value is named as the flag, with why.
    let o = medic(
        &data_args(&data, &["serve", "--listen", "localhost:0"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("--listen \"localhost:0\" is invalid"), "{err}");
    assert!(err.contains("not an IP address"), "{err}");
    assert!(!err.contains("server.listen"), "{err}");

    // `config` never passes the local configuration off as a daemon's.
    let url = format!("http://127.0.0.1:{}", closed_port());
    let o = medic(&["config", "--server", &url], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert!(stderr(&o).contains("does not apply"), "{}", stderr(&o));

    // An unknown collection: the command that creates it, not the HTTP request.
    let o = medic(
        &data_args(
            &data,
            &["put", "x", "--text", "t", "--collection", "nosuch"],
        ),
        dir.path(),
    );
    assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("medic collections create nosuch"), "{err}");
    assert!(!err.contains("PUT /v1/collections"), "{err}");

    // A metric the history never held is named unknown (exit 2), not "0 points".
    let o = medic(&data_args(&data, &["history", "nosuchmetric"]), dir.path());
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("no metric named \"nosuchmetric\""),
        "{}",
        stderr(&o)
    );

    // Counts in words: one document, no vector yet.
    let o = medic(
        &data_args(&data, &["collections", "create", "c1"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = medic(
        &data_args(&data, &["put", "one", "--text", "t", "--collection", "c1"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = medic(&data_args(&data, &["collections"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let listing = stdout(&o);
    let c1 = listing
        .lines()
        .find(|l| l.starts_with("c1 "))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(c1.contains(" 1 document "), "{c1}");
    assert!(c1.contains("dimension not fixed yet"), "{c1}");
    assert!(!listing.contains("null"), "{listing}");
}

#[test]
fn help_says_each_default_once_and_lists_what_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["put", "get", "delete", "search", "load"] {
        let o = medic(&[cmd, "--help"], dir.path());
        assert_eq!(o.status.code(), Some(0), "{cmd}");
        let help = stdout(&o);
        let line = help
            .lines()
            .skip_while(|l| !l.contains("--collection"))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            line.matches("[default: default]").count(),
            1,
            "{cmd}: {line}"
        );
    }
    let o = medic(&["collections", "create", "--help"], dir.path());
    assert!(
        stdout(&o).contains("flat, hnsw, ivf, text"),
        "{}",
        stdout(&o)
    );
    let o = medic(&["bench", "nab", "--help"], dir.path());
    assert!(stdout(&o).contains("surprise"), "{}", stdout(&o));
}

/// A daemon on a free port, stopped with SIGTERM when dropped.
struct Daemon {
    child: std::process::Child,
    url: String,
}

impl Daemon {
    fn start(data: &Path, cwd: &Path) -> Daemon {
        Self::start_with(data, cwd, &[])
    }

    fn start_with(data: &Path, cwd: &Path, extra: &[&str]) -> Daemon {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_medic"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .current_dir(cwd)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start medic serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().to_string();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "serve printed {url:?}"
        );
        Daemon { child, url }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn talks_to_a_running_daemon_and_explains_when_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let daemon = Daemon::start(&data, dir.path());
    let url = daemon.url.as_str();

    let o = medic(
        &[
            "put",
            "a",
            "--text",
            "via daemon",
            "--vector",
            "[1, 0]",
            "--server",
            url,
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(last_json(&o)["lsn"].as_u64().is_some());
    let o = medic(&["get", "a", "--server", url, "--json"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(last_json(&o)["text"], "via daemon");
    let o = medic(
        &[
            "search", "--vector", "[1, 0.1]", "--k", "1", "--server", url, "--json",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(last_json(&o)["hits"][0]["id"], "a");
    let o = medic(&["status", "--server", url, "--json"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(last_json(&o)["store"]["docs"], 1);
    let o = medic(
        &["check", "--tier", "full", "--server", url, "--json"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(last_json(&o)["state"], "HEALTHY");
    let o = medic(&["get", "nope", "--server", url], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let o = medic(
        &["heal", "--dry-run", "--server", url, "--json"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(last_json(&o)["dry_run"], true);
    let o = medic(&["incidents", "--server", url, "--json"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(last_json(&o)["incidents"].is_array());
    let o = medic(&["report", "4242", "--server", url], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = medic(&["delete", "a", "--server", url], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = medic(&["get", "a", "--server", url], dir.path());
    assert_eq!(o.status.code(), Some(1), "deleted through the daemon");
    let o = medic(
        &["put", "a", "--text", "via daemon", "--server", url],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // Without --server, the locked directory sends the CLI to the daemon named by the configuration.
    let port = url.rsplit(':').next().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, format!("[server]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
    let o = medic(
        &data_args(
            &data,
            &["get", "a", "--json", "--config", good.to_str().unwrap()],
        ),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(last_json(&o)["text"], "via daemon");

    // And when neither the address the daemon wrote to <data>/medic.url nor the configured one answers, the error
    // says what was tried and why each failed.
    std::fs::write(
        data.join("medic.url"),
        format!(
            "http://127.0.0.1:{}\npid={}\n",
            closed_port(),
            daemon.child.id()
        ),
    )
    .unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!("[server]\nlisten = \"127.0.0.1:{}\"\n", closed_port()),
    )
    .unwrap();
    let o = medic(
        &data_args(&data, &["status", "--config", bad.to_str().unwrap()]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("locked by"), "{err}");
    // The holder's times for people: RFC 3339 with an age, not µs since the epoch.
    assert!(err.contains(" ago)"), "{err}");
    assert!(!err.contains(" µs"), "{err}");
    assert_eq!(err.matches("did not answer").count(), 2, "{err}");
    assert!(err.contains("medic.url"), "{err}");
    assert!(err.contains("server.listen"), "{err}");
    assert!(err.contains("--server"), "{err}");
}

#[test]
fn bearer_token_is_sent_from_the_flag_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("token.toml");
    std::fs::write(&config, "[server]\ntoken = \"s3cret-token\"\n").unwrap();
    let daemon = Daemon::start_with(&data, dir.path(), &["--config", config.to_str().unwrap()]);
    let url = daemon.url.as_str();
    let put = ["put", "a", "--text", "t", "--server", url];

    let o = medic(&put, dir.path());
    // README.md "Command line": a daemon's 4xx is a usage error, exit 2; a 401 too.
    assert_eq!(o.status.code(), Some(2), "refused without a token");
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    // Said for the command line: the flag and the variable, not the HTTP header.
    assert!(stderr(&o).contains("--token"), "{}", stderr(&o));
    assert!(stderr(&o).contains("MEDIC_TOKEN"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("Authorization"), "{}", stderr(&o));

    let mut with_flag = put.to_vec();
    with_flag.extend(["--token", "s3cret-token"]);
    let o = medic(&with_flag, dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let o = medic_env(&put, dir.path(), &[("MEDIC_TOKEN", "s3cret-token")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let o = medic_env(&["get", "a"], dir.path(), &[("MEDIC_SERVER", url)]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "MEDIC_SERVER names the daemon: {}",
        stderr(&o)
    );
}

#[test]
fn load_in_batches_keeps_the_batches_before_a_refused_one_and_nothing_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("big.jsonl");
    // An id over the limit is found before anything is written.
    let lines: String = (1..=600)
        .map(|n| {
            let id = if n == 550 {
                "x".repeat(300)
            } else {
                format!("d{n}")
            };
            format!("{{\"id\": \"{id}\", \"text\": \"t{n}\"}}\n")
        })
        .collect();
    std::fs::write(&file, lines).unwrap();
    let o = medic(
        &data_args(&data, &["load", file.to_str().unwrap()]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("big.jsonl:550"), "{}", stderr(&o));
    assert!(stderr(&o).contains("id_bytes_max"), "{}", stderr(&o));
    assert!(!data.exists(), "nothing written");

    // A line only the store refuses (meta over its meta_bytes_max), in the third batch of 256.
    let big = "m".repeat(70 * 1024);
    let lines: String = (1..=600)
        .map(|n| {
            let meta = if n == 550 {
                format!(", \"meta\": {{\"blob\": \"{big}\"}}")
            } else {
                String::new()
            };
            format!("{{\"id\": \"d{n}\", \"text\": \"t{n}\"{meta}}}\n")
        })
        .collect();
    std::fs::write(&file, lines).unwrap();
    let o = medic(
        &data_args(&data, &["load", file.to_str().unwrap()]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("big.jsonl:550"), "{err}");
    assert!(err.contains("meta"), "{err}");
    // The third batch (lines 513..=768) is refused whole; the two before it were written.
    assert!(
        err.contains("the 512 documents before line 513 were written"),
        "{err}"
    );
    let o = medic(&data_args(&data, &["status", "--json"]), dir.path());
    assert_eq!(last_json(&o)["store"]["docs"], 512, "lines 1..=512");
    let get = |id: &str| {
        medic(&data_args(&data, &["get", id]), dir.path())
            .status
            .code()
    };
    assert_eq!(get("d512"), Some(0));
    assert_eq!(get("d513"), Some(1));
    assert_eq!(get("d549"), Some(1));
    assert_eq!(get("d550"), Some(1));
}

#[test]
fn no_subcommand_serves() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, "[server]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["--config", config.to_str().unwrap()])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let daemon = Daemon {
        child,
        url: line.trim().to_string(),
    };
    assert!(daemon.url.starts_with("http://127.0.0.1:"), "{line:?}");
    assert!(
        dir.path().join("medic-data").is_dir(),
        "serves ./medic-data by default"
    );
    let o = medic(&["status", "--server", &daemon.url, "--json"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// `medic chaos` never stages its scratch stores inside a data directory that holds a store: a usage error naming
/// it, and nothing is created there.
#[test]
fn chaos_refuses_a_data_directory_that_holds_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = medic(
        &data_args(&data, &["put", "d1", "--text", "kept"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let o = medic(
        &data_args(&data, &["chaos", "--seed", "1", "--rounds", "1"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("holds a medic store"), "{}", stderr(&o));
    let after: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "nothing created in the store's directory");
}

#[test]
fn chaos_refuses_unknown_fault_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("chaos");
    let o = medic(
        &data_args(
            &data,
            &[
                "chaos",
                "--seed",
                "1",
                "--rounds",
                "2",
                "--faults",
                "bit_flip,gremlins",
            ],
        ),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("gremlins"), "{}", stderr(&o));
}

#[test]
fn no_ansi_when_stdout_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    empty_store(&data, dir.path());
    // NO_COLOR unset: colour still stays off because stdout is a pipe here.
    let o = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["status", "--data", data.to_str().unwrap()])
        .current_dir(dir.path())
        .env_remove("NO_COLOR")
        .env_remove("MEDIC_SERVER")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("HEALTHY"), "{}", stdout(&o));
    assert!(!stdout(&o).contains('\u{1b}'), "{:?}", stdout(&o));
}

#[test]
fn heal_repairs_a_deleted_mirror_and_the_record_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("docs.jsonl");
    let lines: String = (0..30)
        .map(|i| format!("{{\"id\": \"d{i}\", \"text\": \"doc {i}\"}}\n"))
        .collect();
    std::fs::write(&file, lines).unwrap();
    let o = medic(
        &data_args(&data, &["load", file.to_str().unwrap()]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut removed = 0;
    for entry in std::fs::read_dir(data.join("wal")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "mir") {
            std::fs::remove_file(&path).unwrap();
            removed += 1;
        }
    }
    assert_eq!(removed, 1, "the open segment has one mirror");

    let o = medic(&data_args(&data, &["heal", "--json"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    assert_eq!(v["health"], "HEALTHY", "{v}");
    assert_eq!(v["escalations"], serde_json::json!([]), "{v}");

    // Each command is a new process: the incident and the KPIs come back from the knowledge base.
    let o = medic(&data_args(&data, &["incidents", "--json"]), dir.path());
    let list = last_json(&o)["incidents"].as_array().cloned().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["resolution"], "auto_repaired");
    let id = list[0]["id"].as_u64().unwrap().to_string();
    let o = medic(&data_args(&data, &["report", &id]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("wal/"),
        "the report names the file: {}",
        stdout(&o)
    );
    let o = medic(&data_args(&data, &["status", "--json"]), dir.path());
    let v = last_json(&o);
    assert_eq!(v["kpis"]["auto_remediation_rate"], 1.0, "{v}");
    assert_eq!(v["store"]["docs"], 30);
    let o = medic(&data_args(&data, &["get", "d29"]), dir.path());
    assert_eq!(stdout(&o), "doc 29\n");
}

#[test]
fn chaos_json_reports_the_agreed_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("chaos");
    let o = medic(
        &data_args(
            &data,
            &[
                "chaos",
                "--seed",
                "7",
                "--rounds",
                "3",
                "--docs",
                "50",
                "--faults",
                "bit_flip,torn_write",
                "--json",
            ],
        ),
        dir.path(),
    );
    // A small seeded run of faults redundancy can undo: nothing acknowledged may be lost or silently corrupted, and
    // the exit code says so (1 would mean a lost or corrupted write).
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    for key in [
        "rounds",
        "injected",
        "detected",
        "repaired",
        "escalated",
        "acked_writes_lost",
        "silent_corruptions",
        "mttd_ms_p50",
        "mttr_ms_p50",
        "mttr_ms_p99",
        "by_fault",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["rounds"], 3);
    assert_eq!(v["injected"], 3);
    let kinds: Vec<&String> = v["by_fault"].as_object().unwrap().keys().collect();
    assert!(
        kinds.iter().all(|k| *k == "bit_flip" || *k == "torn_write"),
        "{kinds:?}"
    );
    assert_eq!(v["acked_writes_lost"], 0, "{v}");
    assert_eq!(v["silent_corruptions"], 0, "{v}");
    assert_eq!(v["detected"], 3, "every injected fault detected: {v}");
}

/// Loads `n` documents, then deletes the open segment's mirror: damage a repair undoes.
fn store_missing_its_mirror(dir: &Path, data: &Path, n: usize) {
    let file = dir.join("docs.jsonl");
    let lines: String = (0..n)
        .map(|i| format!("{{\"id\": \"d{i}\", \"text\": \"doc {i}\"}}\n"))
        .collect();
    std::fs::write(&file, lines).unwrap();
    let o = medic(&data_args(data, &["load", file.to_str().unwrap()]), dir);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    delete_mirror(data);
}

/// Deletes the open segment's mirror.
fn delete_mirror(data: &Path) {
    let mut removed = 0;
    for entry in std::fs::read_dir(data.join("wal")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "mir") {
            std::fs::remove_file(&path).unwrap();
            removed += 1;
        }
    }
    assert_eq!(removed, 1, "the open segment has one mirror");
}

/// The outcomes of the repair attempts in a cycle summary.
fn attempt_outcomes(v: &serde_json::Value) -> Vec<String> {
    v["attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| a["attempt"]["outcome"].as_str().unwrap_or("-").to_string())
        .collect()
}

/// The resolutions of every recorded incident.
fn resolutions(data: &Path, cwd: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["incidents", "--json"];
    args.extend_from_slice(extra);
    let o = medic(&data_args(data, &args), cwd);
    last_json(&o)["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|i| i["resolution"].as_str().unwrap_or("-").to_string())
        .collect()
}

#[test]
fn heal_keeps_a_configured_dry_run_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config_file(dir.path(), "dry.toml", "[engine]\ndry_run = true\n");
    let config = config.as_str();
    store_missing_its_mirror(dir.path(), &data, 10);

    // Offline: plain `heal` honours engine.dry_run = true and changes nothing.
    let o = medic(
        &data_args(&data, &["heal", "--json", "--config", config]),
        dir.path(),
    );
    let v = last_json(&o);
    assert_eq!(v["dry_run"], true, "configured dry run holds: {v}");
    assert_eq!(attempt_outcomes(&v), ["dry_run"], "{v}");
    let o = medic(&data_args(&data, &["heal", "--config", config]), dir.path());
    assert!(stdout(&o).contains("dry run"), "{}", stdout(&o));
    assert!(
        !resolutions(&data, dir.path(), &[]).contains(&"auto_repaired".to_string()),
        "nothing repaired in a dry run"
    );

    // The same through a daemon: the CLI sends no dry_run, so the daemon's configuration holds.
    {
        let daemon = Daemon::start_with(&data, dir.path(), &["--config", config]);
        let o = medic(
            &[
                "heal",
                "--json",
                "--server",
                &daemon.url,
                "--config",
                config,
            ],
            dir.path(),
        );
        let v = last_json(&o);
        assert_eq!(v["dry_run"], true, "the daemon's dry run holds: {v}");
        assert!(attempt_outcomes(&v).iter().all(|o| o == "dry_run"), "{v}");
        let o = medic(
            &["incidents", "--json", "--server", &daemon.url],
            dir.path(),
        );
        let list = last_json(&o);
        assert!(
            !list.to_string().contains("auto_repaired"),
            "nothing repaired through the daemon: {list}"
        );
    }

    // `--dry-run` and `--no-dry-run` together are a usage error.
    let o = medic(
        &data_args(&data, &["heal", "--dry-run", "--no-dry-run"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // `--no-dry-run` repairs for real this once.
    delete_mirror(&data);
    let o = medic(
        &data_args(
            &data,
            &["heal", "--no-dry-run", "--json", "--config", config],
        ),
        dir.path(),
    );
    let v = last_json(&o);
    assert_eq!(v["dry_run"], false, "{v}");
    assert_eq!(o.status.code(), Some(0), "{}: {v}", stderr(&o));
    assert_eq!(attempt_outcomes(&v), ["succeeded"], "{v}");
}

#[test]
fn offline_status_runs_the_quick_checks_and_exits_3_for_an_escalated_incident() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Any real disk is below this floor: the quick check's space probe fails.
    let low = config_file(
        dir.path(),
        "low.toml",
        "[constraints]\ndisk_free_bytes_min = 1000000000000000\n",
    );
    let low = low.as_str();
    let o = medic(&data_args(&data, &["put", "a", "--text", "x"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let o = medic(
        &data_args(&data, &["check", "--json", "--config", low]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(last_json(&o)["state"], "DEGRADED");
    // status agrees with check: it runs the quick checks first.
    let o = medic(
        &data_args(&data, &["status", "--json", "--config", low]),
        dir.path(),
    );
    let v = last_json(&o);
    assert_eq!(v["state"], "DEGRADED", "{v}");
    assert_eq!(o.status.code(), Some(1), "{v}");
    // Without the low floor the store is healthy.
    let o = medic(&data_args(&data, &["status", "--json"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // An incident an earlier process escalated about this very problem: status needs a human, exit 3.
    let o = medic(&data_args(&data, &["heal", "--config", low]), dir.path());
    assert_ne!(o.status.code(), Some(2), "{}", stderr(&o));
    {
        use heal::learn::KnowledgeBase as _;
        let kb = medic::kb::SqliteKb::open(&data.join("medic.sqlite3")).unwrap();
        let mut r = kb
            .recent(10)
            .unwrap()
            .into_iter()
            .next()
            .expect("an incident");
        assert!(r.issues.iter().any(|i| i.code == "disk_space_low"), "{r:?}");
        r.resolution = heal::learn::Resolution::Escalated;
        r.resolved_at = None;
        kb.save(&r).unwrap();
    }
    let o = medic(
        &data_args(&data, &["status", "--json", "--config", low]),
        dir.path(),
    );
    let v = last_json(&o);
    assert_eq!(o.status.code(), Some(3), "{v}");
    assert_eq!(
        v["escalated_incidents"].as_array().map(Vec::len),
        Some(1),
        "{v}"
    );
    // Once the checks no longer see that problem, the old escalation is history: exit 0.
    let o = medic(&data_args(&data, &["status", "--json"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", last_json(&o));
}

#[test]
fn a_damaged_knowledge_base_does_not_keep_documents_from_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = medic(
        &data_args(&data, &["put", "a", "--text", "kept"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let kb = data.join("medic.sqlite3");
    let mut bytes = std::fs::read(&kb).unwrap();
    for b in &mut bytes[100..4000] {
        *b ^= 0xff;
    }
    std::fs::write(&kb, &bytes).unwrap();

    // A command that changes nothing reads through a fresh copy and leaves the damaged file as found.
    let o = medic(&data_args(&data, &["get", "a"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "kept\n");
    let err = stderr(&o);
    assert!(
        err.contains("is damaged") && err.contains("left as found"),
        "{err}"
    );
    assert_eq!(std::fs::read(&kb).unwrap(), bytes);
    // A command that writes moves it aside.
    let o = medic(&data_args(&data, &["put", "b", "--text", "x"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("was damaged") && err.contains(".corrupt-"),
        "{err}"
    );
    // Later commands find a healthy knowledge base and list the copy kept aside.
    let o = medic(&data_args(&data, &["status", "--json"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    let copies = v["knowledge_base"]["damaged_copies"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(copies.len(), 1, "{v}");
    assert_eq!(
        std::fs::read(copies[0].as_str().unwrap()).unwrap(),
        bytes,
        "the damaged file is kept as it was"
    );
    let o = medic(&data_args(&data, &["status"]), dir.path());
    assert!(stdout(&o).contains("kept aside"), "{}", stdout(&o));
}

#[test]
fn check_and_status_through_a_daemon_exit_1_when_not_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The quick check's space probe fails on any real disk; nothing is lost. One cycle at start, then none for an
    // hour, so no repeated failed repair turns the incident into an escalation during the test.
    let low = dir.path().join("low.toml");
    std::fs::write(
        &low,
        "[constraints]\ndisk_free_bytes_min = 1000000000000000\n\
         [checks]\nshallow_interval_ms = 3600000\ndeep_interval_ms = 3600000\n\
         comprehensive_interval_ms = 3600000\n",
    )
    .unwrap();
    let daemon = Daemon::start_with(&data, dir.path(), &["--config", low.to_str().unwrap()]);
    let o = medic(
        &["put", "a", "--text", "x", "--server", &daemon.url],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for tier in ["quick", "deep"] {
        let o = medic(
            &["check", "--tier", tier, "--json", "--server", &daemon.url],
            dir.path(),
        );
        let v = last_json(&o);
        // DEGRADED, or CRITICAL once the daemon's first cycle opened an incident about it: not healthy either way.
        assert!(
            matches!(v["state"].as_str(), Some("DEGRADED" | "CRITICAL")),
            "{tier}: {v}"
        );
        assert_eq!(v["passed"], false, "{tier}: {v}");
        assert_eq!(o.status.code(), Some(1), "{tier}: {v}");
    }
    let o = medic(&["status", "--json", "--server", &daemon.url], dir.path());
    let v = last_json(&o);
    assert!(
        matches!(v["state"].as_str(), Some("DEGRADED" | "CRITICAL")),
        "{v}"
    );
    assert_eq!(o.status.code(), Some(1), "{v}");
    // Human output, same exit code.
    let o = medic(&["status", "--server", &daemon.url], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("DEGRADED") || text.contains("CRITICAL"),
        "{text}"
    );
    // The documents are untouched.
    let o = medic(&["get", "a", "--server", &daemon.url], dir.path());
    assert_eq!(stdout(&o), "x\n");
}

#[test]
fn usage_errors_under_json_end_with_one_json_line() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["status", "--bogus", "--json"][..],
        &["--json", "frobnicate"],
        &["check", "--tier", "bogus", "--json"],
        &["search", "--json", "--k", "3"],
        &["incidents", "--limit", "many", "--json"],
    ] {
        let o = medic(args, dir.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("error:"), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o).lines().count(), 1, "{args:?}: {}", stdout(&o));
        let v = last_json(&o);
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{args:?}: {v}"
        );
        assert_eq!(v["exit_code"], 2, "{args:?}: {v}");
    }
    // Without --json (or with it only after `--`, as a value) stdout stays empty.
    for args in [&["status", "--bogus"][..], &["put", "x", "--", "--json"]] {
        let o = medic(args, dir.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
    }
    // Help under --json is still help, exit 0.
    let o = medic(&["status", "--help", "--json"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn load_of_a_missing_file_or_a_directory_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let missing = dir.path().join("nonexistent.jsonl");
    let missing = missing.to_str().unwrap();
    let o = medic(&data_args(&data, &["load", missing]), dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(missing), "{}", stderr(&o));
    let o = medic(&data_args(&data, &["load", missing, "--json"]), dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let v = last_json(&o);
    assert!(v["error"].as_str().unwrap().contains(missing), "{v}");
    let d = dir.path().to_str().unwrap();
    let o = medic(&data_args(&data, &["load", d]), dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("directory"), "{}", stderr(&o));
}

#[test]
fn text_search_and_search_limits_agree_offline_and_through_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let wide = config_file(
        dir.path(),
        "wide.toml",
        "[http]\nsearch_k_max = 5000\nincidents_listed_max = 5000\n",
    );
    let wide = wide.as_str();
    let o = medic(
        &data_args(&data, &["put", "a", "--text", "x", "--vector", "[1, 0]"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // Offline: the limits are http.search_k_max / http.incidents_listed_max of the configuration (default 1000).
    let o = medic(
        &data_args(&data, &["search", "--text", "x", "--json"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(last_json(&o)["hits"][0]["id"], "a");
    let o = medic(
        &data_args(&data, &["search", "--text", "(x", "--json"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("query: column"), "{}", stderr(&o));
    assert!(last_json(&o)["error"].is_string());
    for (args, key) in [
        (
            &["search", "--vector", "[1, 0]", "--k", "1001"][..],
            "http.search_k_max",
        ),
        (
            &["search", "--vector", "[1, 0]", "--k", "0"],
            "http.search_k_max",
        ),
        (
            &["incidents", "--limit", "1001"],
            "http.incidents_listed_max",
        ),
        (&["incidents", "--limit", "0"], "http.incidents_listed_max"),
    ] {
        let o = medic(&data_args(&data, args), dir.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(key), "{args:?}: {}", stderr(&o));
    }
    for args in [
        &["search", "--vector", "[1, 0]", "--k", "1000"][..],
        &["incidents", "--limit", "1000"],
    ] {
        let o = medic(&data_args(&data, args), dir.path());
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    }
    for args in [
        &[
            "search", "--vector", "[1, 0]", "--k", "5000", "--config", wide,
        ][..],
        &["incidents", "--limit", "5000", "--config", wide],
    ] {
        let o = medic(&data_args(&data, args), dir.path());
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    }

    // Through a daemon: the same exit codes, and the daemon's configured limits (not a cap of the CLI's own).
    for (config, k_ok, k_bad) in [(None, "1000", "1001"), (Some(wide), "5000", "5001")] {
        let extra: Vec<&str> = config.map(|c| vec!["--config", c]).unwrap_or_default();
        let daemon = Daemon::start_with(&data, dir.path(), &extra);
        let url = daemon.url.as_str();
        let o = medic(
            &["search", "--text", "x", "--json", "--server", url],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(last_json(&o)["hits"].is_array(), "{}", stdout(&o));
        let o = medic(
            &["search", "--text", "(x", "--json", "--server", url],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("query: column"), "{}", stderr(&o));
        assert!(last_json(&o)["error"].is_string());
        for (k, code) in [(k_ok, 0), (k_bad, 2), ("0", 2)] {
            let o = medic(
                &["search", "--vector", "[1, 0]", "--k", k, "--server", url],
                dir.path(),
            );
            assert_eq!(o.status.code(), Some(code), "k {k}: {}", stderr(&o));
            let o = medic(&["incidents", "--limit", k, "--server", url], dir.path());
            assert_eq!(o.status.code(), Some(code), "limit {k}: {}", stderr(&o));
        }
    }
}

#[test]
fn commands_given_only_data_find_a_daemon_on_any_port_through_its_url_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url_file = data.join("medic.url");
    // The configured server.listen answers nothing: only <data>/medic.url can lead to the daemon.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!("[server]\nlisten = \"127.0.0.1:{}\"\n", closed_port()),
    )
    .unwrap();
    let bad = bad.to_str().unwrap();
    {
        let daemon = Daemon::start(&data, dir.path());
        let written = std::fs::read_to_string(&url_file).expect("serve writes <data>/medic.url");
        assert_eq!(
            written,
            format!("{}\npid={}\n", daemon.url, daemon.child.id()),
            "the URL it printed and its pid"
        );
        let o = medic(
            &data_args(&data, &["put", "a", "--text", "found", "--config", bad]),
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = medic(&data_args(&data, &["get", "a", "--json"]), dir.path());
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(last_json(&o)["text"], "found");
        let o = medic(&data_args(&data, &["status"]), dir.path());
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            stdout(&o).contains(&format!("daemon at {}", daemon.url)),
            "says it used the daemon: {}",
            stdout(&o)
        );

        // A file naming another pid than the LOCK holder is stale: not tried, and the error says so.
        std::fs::write(&url_file, format!("{}\npid=1\n", daemon.url)).unwrap();
        let o = medic(
            &data_args(&data, &["get", "a", "--config", bad]),
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("stale"), "{err}");
        assert!(err.contains("server.listen"), "{err}");
        // Garbage in the file is ignored, not a crash.
        std::fs::write(&url_file, "\u{0}not a url\n").unwrap();
        let o = medic(
            &data_args(&data, &["get", "a", "--config", bad]),
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("did not answer"), "{}", stderr(&o));
        // Put back, then stop the daemon (SIGTERM on drop).
        std::fs::write(
            &url_file,
            format!("{}\npid={}\n", daemon.url, daemon.child.id()),
        )
        .unwrap();
    }
    assert!(!url_file.exists(), "a clean stop removes <data>/medic.url");
    // With the daemon gone the directory opens offline.
    let o = medic(&data_args(&data, &["get", "a"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "found\n");
}

#[test]
fn commands_given_only_data_never_use_a_daemon_holding_another_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("mine");
    let other = dir.path().join("other");
    // `other` is a real store, with a document of its own, made offline.
    let o = medic(
        &data_args(&other, &["put", "o", "--text", "other store"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let daemon = Daemon::start(&mine, dir.path());
    let pid = daemon.child.id();
    let host = store::lock::host_name();
    let o = medic(
        &[
            "put",
            "a",
            "--text",
            "mine",
            "--server",
            &daemon.url,
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Both the URL file and server.listen of `other` lead to the daemon holding `mine`.
    let port = daemon.url.rsplit(':').next().unwrap();
    let config = config_file(
        dir.path(),
        "listen.toml",
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let config = config.as_str();
    let other_s = other.to_str().unwrap();

    // `other` is held by another host's daemon with the same pid (a shared volume), then by another live local
    // process (this test); each time medic.url names that pid, so it does not look stale.
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    for (holder_pid, holder_host) in [(pid, "some-other-host"), (sleeper.id(), host.as_str())] {
        let started_us = store::lock::now_us();
        std::fs::write(
            other.join("LOCK"),
            format!(
                "pid={holder_pid} host={holder_host} started_us={started_us} heartbeat_us={started_us} closed=false\n"
            ),
        )
        .unwrap();
        std::fs::write(
            other.join("medic.url"),
            format!("{}\npid={holder_pid}\n", daemon.url),
        )
        .unwrap();
        let expected = format!(
            "{} answers for pid {pid} on host {host}, but {other_s} is held by pid {holder_pid} on host {holder_host}",
            daemon.url
        );
        for args in [
            &["put", "b", "--text", "wrong store", "--config", config][..],
            &["delete", "a", "--config", config],
            &["accept-loss", "--yes", "--config", config],
            &["get", "a", "--config", config],
        ] {
            let o = medic(&data_args(&other, args), dir.path());
            assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
            let err = stderr(&o);
            assert!(err.contains(&expected), "{args:?}: {err}");
            assert!(err.contains("medic.url"), "{args:?}: {err}");
            assert!(err.contains("--server"), "{args:?}: {err}");
        }
        // Without the URL file, server.listen leads to the same daemon: refused the same way.
        std::fs::remove_file(other.join("medic.url")).unwrap();
        let o = medic(
            &data_args(
                &other,
                &["put", "b", "--text", "wrong store", "--config", config],
            ),
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(&expected), "{err}");
        assert!(err.contains("server.listen"), "{err}");
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    // The daemon's store was not touched.
    let o = medic(&["get", "b", "--server", &daemon.url], dir.path());
    assert_eq!(o.status.code(), Some(1), "nothing put: {}", stderr(&o));
    let o = medic(&["get", "a", "--server", &daemon.url], dir.path());
    assert_eq!(o.status.code(), Some(0), "not deleted: {}", stderr(&o));
    assert_eq!(stdout(&o), "mine\n");
    // Its own directory, through medic.url or server.listen, still leads to it.
    let o = medic(&data_args(&mine, &["get", "a"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "mine\n");
    std::fs::remove_file(mine.join("medic.url")).unwrap();
    let o = medic(
        &data_args(&mine, &["get", "a", "--config", config]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "mine\n");
    drop(daemon);

    // With its LOCK released, `other` opens offline and holds only its own document.
    std::fs::write(
        other.join("LOCK"),
        format!("pid=1 host={host} started_us=1 heartbeat_us=1 closed=true\n"),
    )
    .unwrap();
    let o = medic(&data_args(&other, &["get", "b"]), dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = medic(&data_args(&other, &["get", "o"]), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// `medic search --highlight` in a terminal without colour shows the matched terms [between brackets], never the
/// server's `<mark>` tags (which `--json` keeps).
#[test]
fn highlighted_snippets_are_marked_for_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = medic(
        &data_args(&data, &["put", "d1", "--text", "hello brave world"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = medic(
        &data_args(&data, &["search", "--text", "brave", "--highlight"]),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("hello [brave] world"), "{text}");
    assert!(!text.contains("<mark>"), "{text}");
    let o = medic(
        &data_args(
            &data,
            &["search", "--text", "brave", "--highlight", "--json"],
        ),
        dir.path(),
    );
    assert!(stdout(&o).contains("<mark>brave</mark>"), "{}", stdout(&o));
}
