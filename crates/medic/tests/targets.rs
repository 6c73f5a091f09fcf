//! Targets and playbooks against real components, through the real `medic serve` process: a supervised child killed
//! with SIGKILL is restarted and its incident closes repaired; a local HTTP service that stops answering is brought
//! back by a playbook's `run` step; `medic playbooks check` refuses each kind of malformed playbook with file and
//! line, and `medic serve` refuses to start on one; postgres actions are checked against their target's kind and
//! `restart_command`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod support;

use serde_json::Value;
use support::{Daemon, incident_with, playbooks_check_ok, wait_for};

fn alive(pid: u32) -> bool {
    // A zombie (killed, not yet reaped) is not alive.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn kill9(pid: u32) {
    let st = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -9 {pid}");
}

/// Kills the pid in its file when the test ends, however it ends.
struct KillOnDrop(PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = read_pid(&self.0) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// The incident of `code` closed as automatically repaired, if there is one.
fn repaired(d: &Daemon, code: &str) -> Option<Value> {
    let (_, v) = d.json("GET", "/v1/incidents?limit=50", None);
    v["incidents"]
        .as_array()?
        .iter()
        .find(|i| {
            i["resolution"] == "auto_repaired"
                && i["issues"]
                    .as_array()
                    .is_some_and(|is| is.iter().any(|x| x["code"] == code))
        })
        .cloned()
}

fn medic(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .output()
        .expect("medic runs")
}

#[test]
fn a_killed_process_target_is_restarted_and_its_incident_closes_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let pidfile = tmp.path().join("worker.pid");
    let _cleanup = KillOnDrop(pidfile.clone());
    let config = tmp.path().join("medic.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[checks]
shallow_interval_ms = 200

[[targets]]
name = "worker"
kind = "process"
command = ["sh", "-c", "echo $$ > {}; exec sleep 600"]
interval_ms = 200
restarts_max = 3
backoff_ms = 100
"#,
            pidfile.display()
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
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
    let first = wait_for("the worker's pid", Duration::from_secs(20), || {
        read_pid(&pidfile).filter(|p| alive(*p))
    });
    let (_, status) = d.json("GET", "/v1/status", None);
    assert_eq!(
        status["targets"]["processes"]["worker"]["pid"], first,
        "{status}"
    );

    kill9(first);
    let second = wait_for("a new worker", Duration::from_secs(30), || {
        read_pid(&pidfile).filter(|p| *p != first && alive(*p))
    });
    let incident = wait_for(
        "the process_dead incident closed as repaired",
        Duration::from_secs(30),
        || repaired(&d, "process_dead"),
    );
    assert_eq!(
        incident["issues"][0]["resource"], "target.worker",
        "{incident}"
    );
    let id = incident["id"].as_u64().unwrap();
    let (_, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    assert!(
        detail.to_string().contains("restart_process.worker"),
        "the strategy is named: {detail}"
    );
    assert!(alive(second));

    d.stop();
    wait_for(
        "the worker stopped with medic",
        Duration::from_secs(10),
        || (!alive(second)).then_some(()),
    );
}

#[test]
fn a_failing_http_service_is_restarted_by_a_playbook() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 not found: skipping the HTTP service test");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("web");
    std::fs::create_dir(&web).unwrap();
    std::fs::write(web.join("health"), "ok\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pidfile = tmp.path().join("web.pid");
    let _cleanup = KillOnDrop(pidfile.clone());
    // The service's start script: what an operator's playbook would run (here, a real python3 web server).
    let script = tmp.path().join("start-web.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nnohup python3 -m http.server {port} --bind 127.0.0.1 --directory {} >/dev/null 2>&1 &\necho $! > {}\n",
            web.display(),
            pidfile.display()
        ),
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{port}/health");
    let up = || {
        support::agent()
            .get(&url)
            .call()
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    };
    assert!(Command::new("sh").arg(&script).status().unwrap().success());
    wait_for("the web service", Duration::from_secs(20), up);

    let playbooks = tmp.path().join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    std::fs::write(
        playbooks.join("restart-web.yaml"),
        format!(
            r#"name: restart-web
target: web
trigger:
  code: endpoint_down
steps:
  - run: [sh, {}]
    timeout: 10s
  - wait: 500ms
verify:
  wait: 500ms
  retries: 20
safety:
  max_attempts: 3
"#,
            script.display()
        ),
    )
    .unwrap();
    let config = tmp.path().join("medic.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[checks]
shallow_interval_ms = 200

[playbooks]
dir = "{}"

[[targets]]
name = "web"
kind = "http"
url = "{url}"
interval_ms = 200
timeout_ms = 1000
body_match = "ok"
failures_before_down = 2
"#,
            playbooks.display()
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
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
    let first = read_pid(&pidfile).unwrap();
    // The service fails: it stops answering.
    kill9(first);
    let incident = wait_for(
        "the endpoint_down incident closed as repaired",
        Duration::from_secs(60),
        || repaired(&d, "endpoint_down"),
    );
    assert_eq!(
        incident["issues"][0]["resource"], "target.web",
        "{incident}"
    );
    let second = read_pid(&pidfile).unwrap();
    assert_ne!(first, second, "the playbook started a new service");
    assert!(up().is_some(), "the service answers again");
    let id = incident["id"].as_u64().unwrap();
    let (_, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    let text = detail.to_string();
    assert!(
        text.contains("restart-web"),
        "the playbook is named: {detail}"
    );
    assert!(
        text.contains("exit 0"),
        "the command's result is recorded: {detail}"
    );
    d.stop();
}

const CONFIG_WITH_TARGETS: &str = r#"
[[targets]]
name = "web"
kind = "http"
url = "http://127.0.0.1:9/health"

[[targets]]
name = "worker"
kind = "process"
command = ["sleep", "600"]
"#;

const GOOD: &str = "name: restart-worker
target: worker
trigger:
  code: process_dead
steps:
  - restart: worker
";

#[test]
fn playbooks_check_names_file_and_line_of_each_malformed_playbook() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("medic.toml");
    std::fs::write(&config, CONFIG_WITH_TARGETS).unwrap();
    let dir = tmp.path().join("playbooks");
    std::fs::create_dir(&dir).unwrap();
    let files = [
        (
            "bad_yaml.yaml",
            "name: x\ntarget: [web\n",
            "bad_yaml.yaml:2:",
        ),
        (
            "unknown_action.yaml",
            "name: a\ntarget: web\ntrigger:\n  code: endpoint_down\nsteps:\n  - reboot: now\n",
            "unknown_action.yaml:6: unknown action or option `reboot`",
        ),
        (
            "unknown_target.yaml",
            "name: b\ntarget: nginx\ntrigger:\n  code: endpoint_down\nsteps:\n  - wait: 1s\n",
            "unknown_target.yaml:2: unknown target \"nginx\"",
        ),
        (
            "bad_condition.yaml",
            "name: c\ntarget: web\ntrigger:\n  code: slow\n  condition: latency_ms >>> 5\nsteps:\n  - wait: 1s\n",
            "bad_condition.yaml:5: condition",
        ),
        (
            "step_target.yaml",
            "name: d\ntarget: web\ntrigger:\n  code: endpoint_down\nsteps:\n  - wait: 1s\n  - check: db\n",
            "step_target.yaml:7: unknown target \"db\"",
        ),
        (
            "store.yaml",
            "name: e\ntarget: store\ntrigger:\n  code: torn_tail\nsteps:\n  - wait: 1s\n",
            "store.yaml:2: target \"store\": the store's healing is built in",
        ),
        ("good.yaml", GOOD, ""),
    ];
    for (name, text, _) in &files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let cfg = config.to_str().unwrap();
    let out = medic(&["--config", cfg, "playbooks", "check", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    for (name, _, expected) in &files {
        if expected.is_empty() {
            assert!(!stdout.contains(name), "{name} is valid: {stdout}");
            continue;
        }
        let want = format!("{}/{expected}", dir.display());
        assert!(
            stdout.lines().any(|l| l.starts_with(&want)),
            "expected a line starting {want:?} in:\n{stdout}"
        );
    }

    // The daemon refuses to start on the same directory, naming file and line.
    std::fs::write(
        &config,
        format!(
            "[playbooks]\ndir = \"{}\"\n{CONFIG_WITH_TARGETS}",
            dir.display()
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let serve = medic(&[
        "--config",
        cfg,
        "serve",
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(!serve.status.success(), "{stderr}");
    assert!(
        stderr.contains("unknown_target.yaml:2: unknown target"),
        "{stderr}"
    );

    // A directory of valid playbooks: exit 0, each named.
    let good = tmp.path().join("good");
    std::fs::create_dir(&good).unwrap();
    std::fs::write(good.join("good.yaml"), GOOD).unwrap();
    let out = medic(&[
        "--config",
        cfg,
        "playbooks",
        "check",
        good.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("restart-worker"), "{stdout}");

    // The store's built-in repairs, as playbooks.
    let out = medic(&["playbooks", "--print-default"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("name: rebuild_from_parity") && text.contains("target: store"),
        "{text}"
    );
}

#[test]
fn postgres_playbook_actions_are_checked_against_their_target() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("medic.toml");
    std::fs::write(
        &config,
        format!(
            "{CONFIG_WITH_TARGETS}\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\nurl = \"postgres://medic:hunter2@127.0.0.1:9/app\"\n"
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let dir = tmp.path().join("playbooks");
    std::fs::create_dir(&dir).unwrap();
    let check = |file: &str, text: &str| {
        for old in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(old.unwrap().path()).unwrap();
        }
        std::fs::write(dir.join(file), text).unwrap();
        let out = medic(&["--config", cfg, "playbooks", "check", dir.to_str().unwrap()]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, text) = check(
        "vacuum-web.yaml",
        "name: v\ntarget: web\ntrigger:\n  code: endpoint_down\nsteps:\n  - pg_vacuum_analyze: web\n",
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(
            "vacuum-web.yaml:6: pg_vacuum_analyze \"web\": acts on a postgres target only"
        ),
        "{text}"
    );
    let (code, text) = check(
        "restart-db.yaml",
        "name: r\ntarget: db\ntrigger:\n  code: pg_down\nsteps:\n  - run_restart_command: db\n",
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("run_restart_command: target \"db\" has no restart_command"),
        "{text}"
    );
    let (code, text) = check(
        "idle-db.yaml",
        "name: i\ntarget: db\ntrigger:\n  code: pg_idle_in_transaction\nsteps:\n  - pg_terminate_backend: db\n    idle_in_transaction_over: 10m\n    timeout: 10s\n",
    );
    assert_eq!(code, Some(0), "{text}");
    // A document cut from `--print-default` with its `---` lines around it is one playbook; a second is named.
    let (code, text) = check(
        "idle-db.yaml",
        "---\n# file: idle-db.yaml\nname: i\ntarget: db\ntrigger:\n  code: pg_idle_in_transaction\nsteps:\n  - pg_terminate_backend: db\n---\n",
    );
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = check(
        "two.yaml",
        "name: i\ntarget: db\ntrigger:\n  code: pg_idle_in_transaction\nsteps:\n  - pg_terminate_backend: db\n---\n# next\nname: j\n",
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("two.yaml:9: a second YAML document"),
        "{text}"
    );

    // Without a restart_command, the defaults shown have no pg_down playbook; the password is never printed.
    let out = medic(&["--config", cfg, "playbooks", "--print-default"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("name: pg-terminate-idle.db"), "{text}");
    assert!(!text.contains("pg-restart.db"), "{text}");
    let out = medic(&["--config", cfg, "config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("hunter2") && text.contains("medic:<redacted>@127.0.0.1:9/app"),
        "{text}"
    );
}

#[test]
fn a_watched_pidfile_process_is_restarted_by_its_restart_command_and_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let pidfile = tmp.path().join("svc.pid");
    let _cleanup = KillOnDrop(pidfile.clone());
    // The service's own start script: a daemon writing its pidfile (atomically), as init scripts do.
    let script = tmp.path().join("start-svc.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsleep 1000 </dev/null >/dev/null 2>&1 &\necho $! > {0}.tmp && mv {0}.tmp {0}\n",
            pidfile.display()
        ),
    )
    .unwrap();
    let start = Command::new("sh").arg(&script).status().unwrap();
    assert!(start.success());
    let first = read_pid(&pidfile).unwrap();
    assert!(alive(first));
    let playbooks = tmp.path().join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    std::fs::write(
        playbooks.join("restart-svc.yaml"),
        "name: restart-svc\ntarget: svc\ntrigger:\n  code: process_dead\nsteps:\n  - run_restart_command: svc\n    timeout: 10s\n\
         verify:\n  wait: 300ms\n  retries: 10\nsafety:\n  max_attempts: 2\n",
    )
    .unwrap();
    let config = tmp.path().join("medic.toml");
    std::fs::write(
        &config,
        format!(
            "[checks]\nshallow_interval_ms = 200\n\n[playbooks]\ndir = \"{}\"\n\n[[targets]]\nname = \"svc\"\n\
             kind = \"process\"\npidfile = \"{}\"\ninterval_ms = 200\nrestart_command = [\"sh\", \"{}\"]\n",
            playbooks.display(),
            pidfile.display(),
            script.display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    playbooks_check_ok(cfg, &playbooks);
    let d = Daemon::start_with(
        &tmp.path().join("data"),
        tmp.path(),
        &["--listen", "127.0.0.1:0", "--config", cfg],
    );
    let watched = |d: &Daemon| -> Value {
        let (_, status) = d.json("GET", "/v1/status", None);
        status["targets"]["processes"]["svc"].clone()
    };
    let svc = watched(&d);
    assert_eq!(
        (
            svc["pid"].as_u64(),
            svc["running"].as_bool(),
            svc["watched"].as_bool()
        ),
        (Some(u64::from(first)), Some(true), Some(true)),
        "{svc}"
    );
    // Its readings are samples like a child's.
    wait_for("a sample of its RSS", Duration::from_secs(20), || {
        let (_, v) = d.json(
            "GET",
            "/v1/history?metric=target.svc.rss_bytes&since=-1h",
            None,
        );
        v["points"].as_array()?.last()?["value"]
            .as_f64()
            .filter(|b| *b > 0.0)
    });

    // It dies: process_dead, and the playbook's restart command starts a new one, which medic then watches.
    kill9(first);
    let incident = wait_for(
        "the process_dead incident closed as repaired",
        Duration::from_secs(30),
        || repaired(&d, "process_dead"),
    );
    let second = read_pid(&pidfile).unwrap();
    assert!(second != first && alive(second));
    let id = incident["id"].as_u64().unwrap();
    let (_, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    let text = detail.to_string();
    assert!(
        text.contains("restart-svc") && text.contains("run_restart_command svc: run"),
        "{detail}"
    );
    assert!(
        text.contains(&format!("process {first} no longer runs")),
        "{detail}"
    );
    let svc = watched(&d);
    assert_eq!(svc["pid"].as_u64(), Some(u64::from(second)), "{svc}");

    // The pidfile's own failures, each with its code.
    std::fs::write(&pidfile, "not a pid\n").unwrap();
    let bad = wait_for("pidfile_invalid", Duration::from_secs(20), || {
        incident_with(&d, "pidfile_invalid")
    });
    assert!(bad.to_string().contains("is not one pid"), "{bad}");
    let mut gone = Command::new("true").spawn().unwrap();
    let free_pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(&pidfile, format!("{free_pid}\n")).unwrap();
    let stale = wait_for("pidfile_stale", Duration::from_secs(20), || {
        incident_with(&d, "pidfile_stale")
    });
    assert!(
        stale
            .to_string()
            .contains(&format!("names pid {free_pid}, which does not run")),
        "{stale}"
    );
    std::fs::remove_file(&pidfile).unwrap();
    wait_for("pidfile_missing", Duration::from_secs(20), || {
        incident_with(&d, "pidfile_missing")
    });
    d.stop();
    kill9(second);
}

#[test]
fn a_playbook_over_its_blast_radius_is_not_run_and_the_incident_escalates() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("ran");
    let playbooks = tmp.path().join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    // web and api are both down (nothing listens on their ports): a shared cause, not web's.
    std::fs::write(
        playbooks.join("restart-web.yaml"),
        format!(
            "name: restart-web\ntarget: web\ntrigger:\n  code: endpoint_down\nsteps:\n  - run: [touch, {}]\n\
             safety:\n  blast_radius:\n    targets: [web, api]\n    failing_max: 1\n  escalation:\n    message: both down, check the network\n",
            marker.display()
        ),
    )
    .unwrap();
    let config = tmp.path().join("medic.toml");
    std::fs::write(
        &config,
        format!(
            "[checks]\nshallow_interval_ms = 200\n\n[playbooks]\ndir = \"{}\"\n\n\
             [[targets]]\nname = \"web\"\nurl = \"http://127.0.0.1:{}/\"\ninterval_ms = 200\nfailures_before_down = 1\n\n\
             [[targets]]\nname = \"api\"\nurl = \"http://127.0.0.1:{}/\"\ninterval_ms = 200\nfailures_before_down = 1\n",
            playbooks.display(),
            support::free_port(),
            support::free_port()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    // A step acting outside the declared scope is refused at load, with its line.
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(
        bad.join("wide.yaml"),
        "name: wide\ntarget: web\ntrigger:\n  code: endpoint_down\nsteps:\n  - run: [\"true\"]\n\
         safety:\n  blast_radius:\n    targets: [api]\n",
    )
    .unwrap();
    let out = medic(&["--config", cfg, "playbooks", "check", bad.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("wide.yaml:9: safety.blast_radius.targets: step `run [\"true\"]` acts on \"web\", outside the declared scope [api]"),
        "{stdout}"
    );

    let d = Daemon::start_with(
        &tmp.path().join("data"),
        tmp.path(),
        &["--listen", "127.0.0.1:0", "--config", cfg],
    );
    let incident = wait_for(
        "the web incident escalated",
        Duration::from_secs(30),
        || {
            let (_, v) = d.json("GET", "/v1/incidents?limit=50", None);
            v["incidents"]
                .as_array()?
                .iter()
                .find(|i| {
                    i["resolution"] == "escalated"
                        && i["issues"]
                            .as_array()
                            .is_some_and(|is| is.iter().any(|x| x["resource"] == "target.web"))
                })
                .cloned()
        },
    );
    let text = incident.to_string();
    assert!(
        text.contains("restart-web: not run: blast radius exceeded: 2 of 2 targets in its scope fail (web, api) > safety.blast_radius.failing_max = 1")
            && text.contains("escalation: both down, check the network"),
        "{incident}"
    );
    assert!(!marker.exists(), "the playbook's step did not run");
    d.stop();
}
