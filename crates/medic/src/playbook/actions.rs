//! The action library: running one step of a playbook. Every action is bounded by its timeout and returns one line
//! for the attempt's record (a command's exit status and the tail of its output, at most [`OUTPUT_BYTES_MAX`] of
//! each stream), or why it failed.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heal::HealthCheck;
use heal::check::CheckContext;
use heal::clock::{Clock as _, SystemClock};
use heal::issue::Issue;

use super::validate::Action;
use crate::target::postgres::PostgresTarget;
use crate::target::process::ProcessTarget;

/// The most bytes of a command's stdout, and of its stderr, kept for the record.
pub const OUTPUT_BYTES_MAX: usize = 2048;

/// What the actions act on: the targets' checks, the process targets and the postgres targets.
pub struct Tools {
    /// Each target's check, by target name.
    pub checks: BTreeMap<String, Arc<dyn HealthCheck>>,
    /// The process targets, by name.
    pub processes: BTreeMap<String, Arc<ProcessTarget>>,
    /// The postgres targets, by name.
    pub postgres: BTreeMap<String, Arc<PostgresTarget>>,
}

impl Tools {
    /// The postgres target `name`.
    fn pg(&self, name: &str) -> Result<&PostgresTarget, String> {
        self.postgres
            .get(name)
            .map(|t| t.as_ref())
            .ok_or_else(|| format!("no postgres target {name:?}"))
    }

    /// Runs target `name`'s check now: `Ok(message)` when it passes having looked (a run that could not look —
    /// its server unreachable — confirms nothing and is an `Err`).
    pub fn check(&self, name: &str) -> Result<String, String> {
        let check = self
            .checks
            .get(name)
            .ok_or_else(|| format!("no target {name:?}"))?;
        let clock = SystemClock::new();
        let out = check.run(&CheckContext {
            clock: &clock,
            deadline: clock.now() + check.timeout_us(),
        });
        if out.passed && !out.inconclusive {
            Ok(out.message)
        } else if out.passed {
            Err(format!("could not look: {}", out.message))
        } else {
            Err(out.message)
        }
    }
}

/// Runs `action` for `issue` (playbook `playbook`); the line for the record either way.
pub fn run(
    action: &Action,
    tools: &Tools,
    playbook: &str,
    issue: &Issue,
) -> Result<String, String> {
    match action {
        Action::Run {
            argv,
            env,
            timeout_ms,
        } => run_command(argv, env, Duration::from_millis(*timeout_ms)),
        Action::Webhook { url, timeout_ms } => webhook(url, *timeout_ms, playbook, issue),
        Action::Wait { ms } => {
            std::thread::sleep(Duration::from_millis(*ms));
            Ok(format!("waited {ms} ms"))
        }
        Action::Check { target } => tools
            .check(target)
            .map(|m| format!("check {target}: passed: {m}"))
            .map_err(|m| format!("check {target}: failed: {m}")),
        Action::Restart { target, .. } => {
            let p = tools
                .processes
                .get(target)
                .ok_or_else(|| format!("restart {target}: no process target {target:?}"))?;
            p.restart()
                .map(|pid| format!("restart {target}: runs as pid {pid}"))
                .map_err(|e| format!("restart {target}: {e}"))
        }
        Action::PgSignal {
            target,
            signal,
            select,
            filter,
            timeout_ms,
        } => tools.pg(target)?.signal_backends(
            *signal,
            *select,
            filter,
            issue,
            Duration::from_millis(*timeout_ms),
        ),
        Action::PgVacuumAnalyze { target, timeout_ms } => tools
            .pg(target)?
            .vacuum_analyze(issue, Duration::from_millis(*timeout_ms)),
        Action::PgReindexConcurrently { target, timeout_ms } => tools
            .pg(target)?
            .reindex_concurrently(issue, Duration::from_millis(*timeout_ms)),
        Action::RunRestartCommand { target, timeout_ms } => {
            let argv = match (tools.postgres.get(target), tools.processes.get(target)) {
                (Some(pg), _) => pg.restart_command(),
                (None, Some(p)) => p.restart_command(),
                (None, None) => {
                    return Err(format!(
                        "run_restart_command {target}: no postgres or watched process target {target:?}"
                    ));
                }
            };
            if argv.is_empty() {
                return Err(format!(
                    "run_restart_command {target}: the target has no restart_command"
                ));
            }
            run_command(argv, &BTreeMap::new(), Duration::from_millis(*timeout_ms))
                .map(|line| format!("run_restart_command {target}: {line}"))
                .map_err(|line| format!("run_restart_command {target}: {line}"))
        }
    }
}

/// Keeps at most [`OUTPUT_BYTES_MAX`] bytes of a stream (reading on to its end so the child never blocks on a full
/// pipe).
fn drain(mut r: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let out = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            let mut b = out.lock().unwrap_or_else(|p| p.into_inner());
            let room = OUTPUT_BYTES_MAX.saturating_sub(b.len());
            b.extend_from_slice(&chunk[..n.min(room)]);
        }
    });
    buf
}

/// Bytes for one line of a record: lossy UTF-8, control characters as spaces, trimmed.
fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    let b = buf.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&b)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

fn run_command(
    argv: &[String],
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<String, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("run: no program".into());
    };
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run {argv:?}: cannot start: {e}"))?;
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if started.elapsed() >= timeout => {
                let _killed = child.kill();
                let _reaped = child.wait();
                break Err(format!(
                    "killed after its timeout of {} ms",
                    timeout.as_millis()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => break Err(format!("cannot wait for it: {e}")),
        }
    };
    // A child that left a grandchild holding the pipes: give the readers a moment, then take what they have.
    std::thread::sleep(Duration::from_millis(20));
    let output = |name: &str, b: &Option<Arc<Mutex<Vec<u8>>>>| {
        let t = b.as_ref().map(text).unwrap_or_default();
        if t.is_empty() {
            String::new()
        } else {
            format!("; {name}: {t}")
        }
    };
    let tail = format!("{}{}", output("stdout", &stdout), output("stderr", &stderr));
    let ms = started.elapsed().as_millis();
    match status {
        Ok(s) if s.success() => Ok(format!("run {argv:?}: exit 0 in {ms} ms{tail}")),
        Ok(s) => Err(format!("run {argv:?}: {s} in {ms} ms{tail}")),
        Err(why) => Err(format!("run {argv:?}: {why}{tail}")),
    }
}

fn webhook(url: &str, timeout_ms: u64, playbook: &str, issue: &Issue) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(timeout_ms)))
        .build()
        .into();
    let body = serde_json::json!({
        "playbook": playbook,
        "code": issue.code,
        "resource": issue.resource,
        "summary": issue.summary,
    });
    let resp = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .map_err(|e| format!("webhook {url}: {e}"))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        Ok(format!("webhook {url}: status {status}"))
    } else {
        Err(format!("webhook {url}: status {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_bounded_and_its_output_kept() {
        let env = BTreeMap::from([("GREETING".to_string(), "hello".to_string())]);
        let ok = run_command(
            &[
                "sh".into(),
                "-c".into(),
                "echo $GREETING; echo oops >&2".into(),
            ],
            &env,
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(
            ok.contains("exit 0") && ok.contains("stdout: hello") && ok.contains("stderr: oops"),
            "{ok}"
        );
        let fail = run_command(
            &["sh".into(), "-c".into(), "exit 3".into()],
            &env,
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(fail.contains("exit status: 3"), "{fail}");
        let slow = run_command(
            &["sleep".into(), "10".into()],
            &env,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(
            slow.contains("killed after its timeout of 200 ms"),
            "{slow}"
        );
        let big = run_command(
            &[
                "sh".into(),
                "-c".into(),
                "head -c 100000 /dev/zero | tr '\\0' x".into(),
            ],
            &env,
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(big.len() < OUTPUT_BYTES_MAX + 200, "{}", big.len());
        let missing =
            run_command(&["/no/such/program".into()], &env, Duration::from_secs(1)).unwrap_err();
        assert!(missing.contains("cannot start"), "{missing}");
    }
}
