//! The PostgreSQL target against a real server, through the real `medic serve` process and its default playbooks: a
//! session left idle in a transaction past the threshold is terminated by `pg-terminate-idle.db` and its incident
//! closes repaired; a statement running past the threshold is cancelled by `pg-cancel-long-query.db`; a table with half
//! its tuples dead is vacuumed by `pg-vacuum.db`; the deep amcheck check skips without the extension and verifies the
//! indexes with it; an index failing `bt_index_check` is rebuilt by `pg-reindex.db`; a stopped server is `pg_down` and
//! is started again by the target's `restart_command`. A streaming standby (`pg_basebackup -R`) whose replay is paused
//! while its primary writes is reported as `pg_replication_lag`. On a server of 20 connections, a pool's idle sessions
//! past `connections_used_max` are ended by a playbook's rule (`idle_over`, `application_name`, `backends_max`); the
//! README's PostgreSQL example loads and probes a real server as written.
//!
//! The server is a fresh `initdb` in a temporary directory (as the `postgres` user, or `nobody`, when the test runs as
//! root: initdb and postgres refuse root), on a free loopback port with its socket in that directory. Without
//! PostgreSQL's binaries the test is skipped with a printed reason, or fails when `MEDIC_REQUIRE_POSTGRES=1`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use serde_json::Value;
use support::{Daemon, incident_with, playbooks_check_ok, wait_for};

/// The directory holding `initdb` and `pg_ctl`: `PATH`, `/usr/local/bin`, then Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest).
fn postgres_bin() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/local/bin".into());
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    debian.sort();
    dirs.extend(debian.into_iter().rev().map(|(_, d)| d));
    dirs.into_iter()
        .find(|d| has(d))
        .map(|d| d.canonicalize().unwrap_or(d))
        .map(|d| {
            // /usr/local/bin/initdb may be a link into Debian's directory: use the real one.
            std::fs::canonicalize(d.join("initdb"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or(d)
        })
}

/// The user the server runs as when the test runs as root.
fn server_user() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let user = if passwd.lines().any(|l| l.starts_with("postgres:")) {
        "postgres"
    } else {
        "nobody"
    };
    Some(user.to_string())
}

/// A throw-away PostgreSQL cluster; stopped (immediately) on drop.
struct Cluster {
    bin: PathBuf,
    user: Option<String>,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    port: u16,
}

impl Cluster {
    /// `program args...` as the server's user.
    fn argv(&self, program: &str, args: &[&str]) -> Vec<String> {
        let mut argv = Vec::new();
        if let Some(u) = &self.user {
            argv.extend(["runuser".to_string(), "-u".into(), u.clone(), "--".into()]);
        }
        argv.push(self.bin.join(program).display().to_string());
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    fn run(&self, program: &str, args: &[&str]) {
        let argv = self.argv(program, args);
        let out = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "{argv:?}: {}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// `pg_ctl start` (waits until the server accepts connections): also medic's `restart_command`.
    fn start_argv(&self) -> Vec<String> {
        let options = format!(
            // Autovacuum off: the bloat the test makes is medic's to clean up.
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c autovacuum=off",
            self.port,
            self.socket_dir.display()
        );
        self.argv(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                self.log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        )
    }

    fn init(tmp: &Path, bin: PathBuf) -> Cluster {
        let c = Self::layout(tmp, "pg", bin);
        c.run(
            "initdb",
            &[
                "-D",
                c.data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--locale=C",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        c
    }

    /// A streaming standby of `primary`, copied with `pg_basebackup -R`.
    fn standby_of(primary: &Cluster, tmp: &Path) -> Cluster {
        let c = Self::layout(tmp, "standby", primary.bin.clone());
        let port = primary.port.to_string();
        c.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                c.data.to_str().unwrap(),
                "-R",
                "--no-sync",
            ],
        );
        c
    }

    /// The directories and a free port of a cluster under `tmp/name`.
    fn layout(tmp: &Path, name: &str, bin: PathBuf) -> Cluster {
        let user = server_user();
        let root = tmp.join(name);
        std::fs::create_dir(&root).unwrap();
        if let Some(u) = &user {
            // The server's user must reach its directory inside the (root-owned) temporary directory.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
            let st = Command::new("chown").arg(u).arg(&root).status().unwrap();
            assert!(st.success(), "chown {u} {}", root.display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Cluster {
            bin,
            user,
            data: root.join("data"),
            socket_dir: root.clone(),
            log: root.join("server.log"),
            port,
        }
    }

    fn start(&self) {
        let argv = self.start_argv();
        let out = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "{argv:?}: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn stop(&self, mode: &str) {
        self.run(
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-m", mode, "-w", "stop"],
        );
    }

    /// The URL medic is given (the password is ignored by `trust`; it is there to be redacted).
    fn url(&self) -> String {
        self.url_of("postgres")
    }

    fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres:s3cret-pw@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let argv = self.argv(
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
        let _ = Command::new(&argv[0]).args(&argv[1..]).output();
    }
}

/// A client session of the test's own.
struct Session {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Session {
    fn connect(url: &str) -> Result<Session, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            Ok::<_, String>(client)
        })?;
        Ok(Session { rt, client })
    }

    fn execute(&self, sql: &str) -> Result<(), String> {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .map_err(|e| e.to_string())
    }

    fn count(&self, sql: &str, pid: i32) -> i64 {
        self.rt
            .block_on(self.client.query_one(sql, &[&pid]))
            .unwrap()
            .get(0)
    }

    fn pid(&self) -> i32 {
        self.rt
            .block_on(self.client.query_one("SELECT pg_backend_pid()", &[]))
            .unwrap()
            .get(0)
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

/// Writes the default playbooks `medic playbooks --print-default` shows for target `db` into `dir`, one file each.
fn write_default_playbooks(config: &str, dir: &Path) -> usize {
    let out = medic(&["--config", config, "playbooks", "--print-default"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    std::fs::create_dir(dir).unwrap();
    let mut n = 0;
    for doc in text.split("---\n") {
        if !doc.contains("\ntarget: db\n") {
            continue;
        }
        let file = doc
            .lines()
            .find_map(|l| l.strip_prefix("# file: "))
            .expect("each default playbook names its file");
        std::fs::write(dir.join(file), doc).unwrap();
        n += 1;
    }
    n
}

#[test]
fn a_real_postgres_is_healed_by_the_default_playbooks() {
    let Some(bin) = postgres_bin() else {
        let why = "PostgreSQL's initdb and pg_ctl were not found (PATH, /usr/local/bin, /usr/lib/postgresql/*/bin)";
        assert!(
            std::env::var("MEDIC_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "MEDIC_REQUIRE_POSTGRES=1: {why}"
        );
        eprintln!("skipping: {why}");
        return;
    };
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let pg = Cluster::init(tmp.path(), bin);
    pg.start();
    eprintln!("initdb and start: {:?}", started.elapsed());
    let url = pg.url();

    let restart: Vec<String> = pg.start_argv();
    let config = tmp.path().join("medic.toml");
    let playbooks = tmp.path().join("playbooks");
    std::fs::write(
        &config,
        format!(
            r#"
[checks]
shallow_interval_ms = 200

[playbooks]
dir = "{}"

[[targets]]
name = "db"
kind = "postgres"
url = "{url}"
interval_ms = 300
timeout_ms = 2000
failures_before_down = 2
idle_in_transaction_s_max = 2
query_s_max = 2
dead_tuple_ratio_max = 0.3
bloat_rows_min = 1000
restart_command = {}
"#,
            playbooks.display(),
            serde_json::to_string(&restart).unwrap()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();

    // The password never leaves through `medic config`.
    let shown = medic(&["--config", cfg, "config"]);
    let shown_text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{shown_text}");
    assert!(
        !shown_text.contains("s3cret-pw") && shown_text.contains("postgres:<redacted>@127.0.0.1"),
        "{shown_text}"
    );

    // The default playbooks, as shown, are valid playbooks.
    assert_eq!(write_default_playbooks(cfg, &playbooks), 5);
    let check_text = playbooks_check_ok(cfg, &playbooks);
    assert!(check_text.contains("pg-terminate-idle.db"), "{check_text}");

    let data = tmp.path().join("data");
    let d = Daemon::start_with(
        &data,
        tmp.path(),
        &["--listen", "127.0.0.1:0", "--config", cfg],
    );

    let (_, status) = d.json("GET", "/v1/status", None);
    let db = &status["targets"]["postgres"]["db"];
    assert_eq!(
        db["url"],
        format!(
            "postgres://postgres:<redacted>@127.0.0.1:{}/postgres",
            pg.port
        ),
        "{status}"
    );

    // (1) A session idle in a transaction past idle_in_transaction_s_max is terminated.
    let observer = Session::connect(&url).unwrap();
    let idle = Session::connect(&url).unwrap();
    let pid = idle.pid();
    idle.execute("BEGIN; SELECT 1").unwrap();
    let t0 = Instant::now();
    let incident = wait_for(
        "the pg_idle_in_transaction incident closed as repaired",
        Duration::from_secs(60),
        || repaired(&d, "pg_idle_in_transaction"),
    );
    eprintln!("idle in transaction: repaired after {:?}", t0.elapsed());
    assert_eq!(incident["issues"][0]["resource"], "target.db", "{incident}");
    let gone = observer.count("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid);
    assert_eq!(gone, 0, "backend {pid} is gone from pg_stat_activity");
    assert!(
        idle.execute("SELECT 1").is_err(),
        "the idle session was ended"
    );
    let id = incident["id"].as_u64().unwrap();
    let (_, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    let text = detail.to_string();
    assert!(
        text.contains("pg-terminate-idle.db") && text.contains("pg_terminate_backend"),
        "the playbook and its action are recorded: {detail}"
    );
    assert!(text.contains(&format!("pid {pid}")), "{detail}");
    drop(idle);

    // (1b) A statement running past query_s_max is cancelled; its session stays.
    let sleeper_url = url.clone();
    let sleeper = std::thread::spawn(move || {
        let s = Session::connect(&sleeper_url).unwrap();
        let outcome = s.execute("SELECT pg_sleep(120)");
        (outcome, s.execute("SELECT 1"))
    });
    let t0 = Instant::now();
    let incident = wait_for(
        "the pg_long_query incident closed as repaired",
        Duration::from_secs(60),
        || repaired(&d, "pg_long_query"),
    );
    eprintln!("long query: repaired after {:?}", t0.elapsed());
    let (outcome, after) = sleeper.join().unwrap();
    let why = outcome.expect_err("the statement was cancelled");
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "cancelled, not finished"
    );
    assert!(
        after.is_ok(),
        "the session stays after a cancel: {after:?} ({why})"
    );
    let id = incident["id"].as_u64().unwrap();
    let (_, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    let text = detail.to_string();
    assert!(
        text.contains("pg-cancel-long-query.db") && text.contains("pg_cancel_backend"),
        "{detail}"
    );

    // (2) A table (its name needs quoting) with half its tuples dead is vacuumed.
    let table = r#""Order ""lines"" 2""#;
    observer
        .execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, v text); \
             INSERT INTO {table} SELECT g, 'x' FROM generate_series(1, 4000) g; \
             DELETE FROM {table} WHERE id % 2 = 0"
        ))
        .unwrap();
    let t0 = Instant::now();
    let incident = wait_for(
        "the pg_bloat incident closed as repaired",
        Duration::from_secs(60),
        || repaired(&d, "pg_bloat"),
    );
    eprintln!("bloat: repaired after {:?}", t0.elapsed());
    let id = incident["id"].as_u64().unwrap();
    let (_, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    let text = detail.to_string();
    assert!(
        text.contains("pg-vacuum.db") && text.contains("VACUUM (ANALYZE)"),
        "{detail}"
    );
    let dead = observer.count(
        "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'Order \"lines\" 2' AND $1::int4 = 0",
        0,
    );
    assert_eq!(dead, 0, "the table was vacuumed");

    // (3) amcheck: skipped with its reason without the extension, then every B-tree index verified.
    let amcheck = |d: &Daemon| -> String {
        let (_, v) = d.json("GET", "/v1/health?tier=deep", None);
        v["checks"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == "target.db.amcheck"))
            .map(|c| c.to_string())
            .unwrap_or_else(|| panic!("no target.db.amcheck in {v}"))
    };
    let skipped = amcheck(&d);
    assert!(
        skipped.contains("the amcheck extension is not installed"),
        "{skipped}"
    );
    observer.execute("CREATE EXTENSION amcheck").unwrap();
    let verified = amcheck(&d);
    assert!(
        verified.contains("bt_index_check passed on 1 index"),
        "{verified}"
    );

    // (4) An index whose order no longer agrees with its operator class (its comparison function changed under
    // it) fails bt_index_check: pg_index_corrupt, and REINDEX INDEX CONCURRENTLY rebuilds it.
    observer
        .execute(
            r#"CREATE FUNCTION ledger_cmp(a int4, b int4) RETURNS int4 LANGUAGE sql IMMUTABLE AS 'SELECT btint4cmp(a, b)';
               CREATE OPERATOR CLASS ledger_ops FOR TYPE int4 USING btree AS
                 OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >, FUNCTION 1 ledger_cmp(int4, int4);
               CREATE TABLE "Ledger" (n int4);
               INSERT INTO "Ledger" SELECT g FROM generate_series(1, 2000) g;
               CREATE INDEX "Ledger n" ON "Ledger" (n ledger_ops);
               CREATE OR REPLACE FUNCTION ledger_cmp(a int4, b int4) RETURNS int4 LANGUAGE sql IMMUTABLE AS 'SELECT btint4cmp(b, a)';"#,
        )
        .unwrap();
    let corrupt = amcheck(&d);
    assert!(corrupt.contains("Ledger n"), "{corrupt}");
    let t0 = Instant::now();
    let incident = wait_for(
        "the pg_index_corrupt incident closed as repaired",
        Duration::from_secs(60),
        || repaired(&d, "pg_index_corrupt"),
    );
    eprintln!("index corruption: repaired after {:?}", t0.elapsed());
    let id = incident["id"].as_u64().unwrap();
    let (_, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    let text = detail.to_string();
    assert!(
        text.contains("pg-reindex.db") && text.contains("REINDEX INDEX CONCURRENTLY"),
        "{detail}"
    );
    let after = amcheck(&d);
    assert!(
        after.contains("bt_index_check passed on 2 index"),
        "{after}"
    );
    drop(observer);

    // (5) The server stops: pg_down, and the restart_command brings it back.
    pg.stop("fast");
    let t1 = Instant::now();
    let incident = wait_for(
        "the pg_down incident closed as repaired",
        Duration::from_secs(90),
        || repaired(&d, "pg_down"),
    );
    eprintln!("pg_down: repaired after {:?}", t1.elapsed());
    let id = incident["id"].as_u64().unwrap();
    let (_, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    let text = detail.to_string();
    assert!(
        text.contains("pg-restart.db") && text.contains("run_restart_command"),
        "{detail}"
    );
    assert!(
        !text.contains("s3cret-pw"),
        "the password is redacted: {detail}"
    );
    let back = Session::connect(&url).expect("the server answers again");
    back.execute("SELECT 1").unwrap();
    assert!(
        !d.stderr().contains("s3cret-pw"),
        "the password never reaches the log"
    );
    d.stop();
    eprintln!("total: {:?}", started.elapsed());
}

#[test]
fn a_replica_replaying_behind_its_primary_is_reported() {
    let Some(bin) = postgres_bin() else {
        let why = "PostgreSQL's initdb and pg_ctl were not found (PATH, /usr/local/bin, /usr/lib/postgresql/*/bin)";
        assert!(
            std::env::var("MEDIC_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "MEDIC_REQUIRE_POSTGRES=1: {why}"
        );
        eprintln!("skipping: {why}");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let primary = Cluster::init(tmp.path(), bin);
    primary.start();
    let standby = Cluster::standby_of(&primary, tmp.path());
    standby.start();
    let config = tmp.path().join("medic.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[checks]
shallow_interval_ms = 200

[[targets]]
name = "replica"
kind = "postgres"
url = "{}"
interval_ms = 300
replication_lag_s_max = 2
"#,
            standby.url()
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
    let replica = Session::connect(&standby.url()).unwrap();
    let writer = Session::connect(&primary.url()).unwrap();
    writer
        .execute("CREATE TABLE ticks (at timestamptz); INSERT INTO ticks VALUES (now())")
        .unwrap();
    // Caught up: the standby reads as in recovery, without lag.
    wait_for(
        "the standby to replay the table",
        Duration::from_secs(30),
        || replica.execute("SELECT * FROM ticks").ok(),
    );
    let (_, status) = d.json("GET", "/v1/status", None);
    let readings = &status["targets"]["postgres"]["replica"]["readings"];
    assert_eq!(readings["in_recovery"], 1.0, "{status}");
    assert!(incident_with(&d, "pg_replication_lag").is_none());

    // Replay paused while the primary writes: the standby receives WAL it does not apply.
    replica.execute("SELECT pg_wal_replay_pause()").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    writer.execute("INSERT INTO ticks VALUES (now())").unwrap();
    let incident = wait_for(
        "a pg_replication_lag incident",
        Duration::from_secs(60),
        || incident_with(&d, "pg_replication_lag"),
    );
    let issue = &incident["issues"][0];
    assert_eq!(issue["resource"], "target.replica", "{incident}");
    assert!(
        issue["summary"]
            .as_str()
            .unwrap_or("")
            .contains("behind its primary"),
        "{incident}"
    );
    replica.execute("SELECT pg_wal_replay_resume()").unwrap();
    d.stop();
}

/// Skips (or fails with `MEDIC_REQUIRE_POSTGRES=1`) without PostgreSQL's binaries.
fn postgres_or_skip() -> Option<PathBuf> {
    let bin = postgres_bin();
    if bin.is_none() {
        let why = "PostgreSQL's initdb and pg_ctl were not found (PATH, /usr/local/bin, /usr/lib/postgresql/*/bin)";
        assert!(
            std::env::var("MEDIC_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "MEDIC_REQUIRE_POSTGRES=1: {why}"
        );
        eprintln!("skipping: {why}");
    }
    bin
}

/// A connection pool's sessions (`application_name = pool`), idle, held by the test (its runtime keeps reading them,
/// so a session the server ends shows as closed).
fn idle_pool(url: &str, n: usize) -> (tokio::runtime::Runtime, Vec<tokio_postgres::Client>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = format!("{url}?application_name=pool");
    let clients = rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..n {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            clients.push(client);
        }
        clients
    });
    (rt, clients)
}

#[test]
fn exhausted_connections_are_freed_by_terminating_idle_pool_sessions_within_backends_max() {
    let Some(bin) = postgres_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let pg = Cluster::init(tmp.path(), bin);
    // A small server: 20 connections, 3 of them reserved for superusers.
    let conf = pg.data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("\nmax_connections = 20\n");
    std::fs::write(&conf, text).unwrap();
    pg.start();
    let url = pg.url();
    let playbooks = tmp.path().join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    std::fs::write(
        playbooks.join("free-idle-pool.yaml"),
        "name: free-idle-pool\n\
         target: db\n\
         trigger:\n  code: pg_connections_exhausted\n\
         steps:\n  - pg_terminate_backend: db\n    idle_over: 1s\n    application_name: pool\n    backends_max: 8\n    timeout: 10s\n\
         verify:\n  wait: 500ms\n  retries: 10\n\
         safety:\n  max_attempts: 2\n",
    )
    .unwrap();
    let config = tmp.path().join("medic.toml");
    std::fs::write(
        &config,
        format!(
            "[checks]\nshallow_interval_ms = 200\n\n[playbooks]\ndir = \"{}\"\n\n[[targets]]\nname = \"db\"\n\
             kind = \"postgres\"\nurl = \"{url}\"\ninterval_ms = 300\nconnections_used_max = 0.7\n",
            playbooks.display()
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
    let observer = Session::connect(&url).unwrap();
    let pool_sessions =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pool' AND $1::int4 = 0";
    // Ten pool sessions idle for 2 s (12 of 20 in use with the observer and medic's probe: under 70%), then four
    // new ones: 16 of 20, over connections_used_max = 70%. The rule (idle 1 s or more, application pool, at most
    // eight, the oldest first) ends eight of the old ones and leaves the new.
    let (_rt, clients) = idle_pool(&url, 10);
    std::thread::sleep(Duration::from_secs(2));
    assert!(incident_with(&d, "pg_connections_exhausted").is_none());
    let (_rt2, fresh) = idle_pool(&url, 4);
    assert_eq!(observer.count(pool_sessions, 0), 14);
    let t0 = Instant::now();
    let incident = wait_for(
        "the pg_connections_exhausted incident closed as repaired",
        Duration::from_secs(60),
        || repaired(&d, "pg_connections_exhausted"),
    );
    eprintln!("connections exhausted: repaired after {:?}", t0.elapsed());
    // Eight terminated (backends_max), six left: 8 of 20 in use.
    assert_eq!(observer.count(pool_sessions, 0), 6, "{incident}");
    let ended = clients.iter().filter(|c| c.is_closed()).count();
    assert_eq!(ended, 8, "eight of the old sessions ended");
    assert!(fresh.iter().all(|c| !c.is_closed()), "the new ones stay");
    let id = incident["id"].as_u64().unwrap();
    let (_, detail) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    let text = detail.to_string();
    assert!(
        text.contains("free-idle-pool")
            && text.contains("8 signalled")
            && text.contains("stopped at backends_max = 8"),
        "{detail}"
    );
    let (_, status) = d.json("GET", "/v1/status", None);
    let used = status["targets"]["postgres"]["db"]["readings"]["connections_used"]
        .as_f64()
        .unwrap();
    assert!(used < 0.7, "{status}");
    d.stop();
}

/// The fenced blocks of `lang` in the README's section starting at `heading` (up to the next heading of its level).
fn readme_blocks(heading: &str, lang: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme.find(heading).expect("the README has the section");
    let rest = &readme[start + heading.len()..];
    let section = &rest[..rest.find("\n### ").unwrap_or(rest.len())];
    let fence = format!("```{lang}\n");
    section
        .split(&fence)
        .skip(1)
        .map(|b| b[..b.find("```").unwrap()].to_string())
        .collect()
}

/// The README's PostgreSQL example (its medic.toml, with this server's URL, restart command and the test's playbook
/// directory, `interval_ms` and the keys of `overrides` changed; its playbooks copied as written) in `tmp`, checked by
/// `medic playbooks check`: the configuration's path.
fn readme_example(tmp: &Path, pg: &Cluster, overrides: &[(&str, &str)]) -> PathBuf {
    let playbooks = tmp.join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    let toml = readme_blocks("### Healing PostgreSQL", "toml");
    assert_eq!(toml.len(), 1, "one medic.toml in the section");
    let config: String = toml[0]
        .lines()
        .map(|l| {
            if let Some((key, value)) = overrides
                .iter()
                .find(|(k, _)| l.starts_with(&format!("{k} = ")))
            {
                format!("{key} = {value}")
            } else if l.starts_with("url = ") {
                format!("url = \"{}\"", pg.url())
            } else if l.starts_with("dir = ") {
                format!("dir = \"{}\"", playbooks.display())
            } else if l.starts_with("restart_command = ") {
                format!(
                    "restart_command = {}",
                    serde_json::to_string(&pg.start_argv()).unwrap()
                )
            } else if l.starts_with("interval_ms = ") {
                "interval_ms = 300".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config_path = tmp.join("medic.toml");
    std::fs::write(
        &config_path,
        format!("[checks]\nshallow_interval_ms = 200\n\n{config}\n"),
    )
    .unwrap();
    let yaml = readme_blocks("### Healing PostgreSQL", "yaml");
    assert!(yaml.len() >= 2, "db-idle and db-pool");
    for doc in &yaml {
        let name = doc
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# /etc/medic/playbooks/"))
            .and_then(|l| l.split(':').next())
            .expect("each playbook names its file");
        std::fs::write(playbooks.join(name), doc).unwrap();
    }
    let text = playbooks_check_ok(config_path.to_str().unwrap(), &playbooks);
    assert!(
        text.contains("db-idle") && text.contains("db-pool"),
        "{text}"
    );
    config_path
}

#[test]
fn the_readme_postgres_example_loads_and_probes_a_real_server() {
    let Some(bin) = postgres_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let pg = Cluster::init(tmp.path(), bin);
    pg.start();
    let config_path = readme_example(tmp.path(), &pg, &[]);
    let cfg = config_path.to_str().unwrap();
    let d = Daemon::start_with(
        &tmp.path().join("data"),
        tmp.path(),
        &["--listen", "127.0.0.1:0", "--config", cfg],
    );
    let readings = wait_for("the db target's readings", Duration::from_secs(30), || {
        let (_, status) = d.json("GET", "/v1/status", None);
        let r = status["targets"]["postgres"]["db"]["readings"].clone();
        (r["up"] == 1.0).then_some(r)
    });
    assert!(
        readings["max_connections"].as_f64().unwrap() > 0.0,
        "{readings}"
    );
    d.stop();
}

/// README.md's `db-idle.yaml`, copied as written, ends a session idle in a transaction (with the example's
/// `idle_in_transaction_s_max` lowered to 1 s so the test takes seconds): the incident closes repaired by db-idle,
/// the session is gone and the record names the pid it terminated.
#[test]
fn the_readme_idle_playbook_ends_an_idle_transaction() {
    let Some(bin) = postgres_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let pg = Cluster::init(tmp.path(), bin);
    pg.start();
    let config_path = readme_example(tmp.path(), &pg, &[("idle_in_transaction_s_max", "1")]);
    let cfg = config_path.to_str().unwrap();
    let d = Daemon::start_with(
        &tmp.path().join("data"),
        tmp.path(),
        &["--listen", "127.0.0.1:0", "--config", cfg],
    );
    let idle = Session::connect(&pg.url()).unwrap();
    let pid = idle.pid();
    idle.execute("BEGIN; SELECT txid_current();").unwrap();
    let incident = wait_for(
        "the pg_idle_in_transaction incident closed as repaired",
        Duration::from_secs(60),
        || repaired(&d, "pg_idle_in_transaction"),
    );
    let text = incident["attempts"].to_string();
    assert!(
        text.contains("db-idle") && text.contains(&format!("pid {pid} (idle in transaction)")),
        "{incident}"
    );
    assert!(idle.client.is_closed(), "the idle session was ended");
    d.stop();
}

/// Stopping the server while an incident of an idle transaction is escalated: the probe cannot connect, so it has
/// not seen the problem go — the incident stays escalated (no `cause gone`) while the server is down, past many
/// re-checks and quiet periods; once the server is back and a probe reads it (the stop ended the session), it
/// closes as self-resolved.
#[test]
fn an_unreachable_server_keeps_its_open_incident_until_a_probe_reads_it() {
    let Some(bin) = postgres_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let pg = Cluster::init(tmp.path(), bin);
    pg.start();
    let playbooks = tmp.path().join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    // A playbook that cannot end the session: the incident escalates and stays open.
    std::fs::write(
        playbooks.join("db-idle.yaml"),
        "name: db-idle\ntarget: db\ntrigger:\n  code: pg_idle_in_transaction\nsteps:\n  - run: [\"false\"]\n\
         safety:\n  max_attempts: 1\n",
    )
    .unwrap();
    let config = tmp.path().join("medic.toml");
    std::fs::write(
        &config,
        format!(
            "[checks]\nshallow_interval_ms = 200\n\n[engine]\nescalated_recheck_us = 300000\n\
             quiet_period_us = 1000000\n\n[playbooks]\ndir = \"{}\"\n\n[[targets]]\nname = \"db\"\n\
             kind = \"postgres\"\nurl = \"{}\"\ninterval_ms = 300\ntimeout_ms = 1000\nfailures_before_down = 2\n\
             idle_in_transaction_s_max = 1\n",
            playbooks.display(),
            pg.url()
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
    let idle = Session::connect(&pg.url()).unwrap();
    idle.execute("BEGIN; SELECT txid_current();").unwrap();
    let incident = wait_for(
        "the pg_idle_in_transaction incident escalated",
        Duration::from_secs(60),
        || incident_with(&d, "pg_idle_in_transaction").filter(|i| i["resolution"] == "escalated"),
    );
    let id = incident["id"].as_u64().unwrap();
    pg.stop("fast");
    // Down for 5 s: over ten re-checks and five quiet periods.
    std::thread::sleep(Duration::from_secs(5));
    let (_, v) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    let inc = &v["incident"];
    assert_eq!(inc["resolution"], "escalated", "{v}");
    assert!(
        !inc["decision"].to_string().contains("cause gone"),
        "closed while the server was unreachable: {v}"
    );
    let (_, status) = d.json("GET", "/v1/status", None);
    assert_eq!(
        status["targets"]["postgres"]["db"]["readings"]["up"], 0.0,
        "{status}"
    );
    // Back up: the stop ended the session, and a probe that reads the server no longer finds it.
    pg.start();
    let closed = wait_for(
        "the incident closed once a probe reads the server",
        Duration::from_secs(30),
        || {
            let (_, v) = d.json("GET", &format!("/v1/incidents/{id}"), None);
            (v["incident"]["resolution"] == "self_resolved").then_some(v)
        },
    );
    assert!(
        closed["incident"]["decision"]
            .to_string()
            .contains("cause gone: target.db.probe"),
        "{closed}"
    );
    d.stop();
}
