//! The process target: a command medic starts (no shell, stdin and output to `/dev/null`) and supervises. Its
//! check `target.<name>.alive` reaps the child and reports `process_dead` once it exited; its readings (resident
//! memory, CPU seconds, descriptors, threads, from `/proc/<pid>`) are samples. The built-in [`RestartStrategy`]
//! restarts it after a backoff doubling with each restart in `restart_window_ms` (at most [`BACKOFF_MS_MAX`]), and
//! stops offering itself after `restarts_max` restarts in the window, so the engine escalates.
//!
//! The children are stopped when the daemon stops ([`ProcessTarget::stop`], also on drop).
//!
//! With `pid = N` or `pidfile = "path"` instead of a `command`, medic watches a process it did not start: the same
//! readings, `process_dead` once the pid it saw running is gone (or its pid belongs to another process: the start
//! time changed), and for a pidfile `pidfile_missing`, `pidfile_invalid` (not one pid in its first
//! [`PIDFILE_BYTES_MAX`] bytes) and `pidfile_stale` (a pid that does not run and that medic never saw running). The
//! pidfile is read anew every check, so a restart writing a new pid is followed. There is no built-in restart: a
//! playbook runs the target's `restart_command` (`run_restart_command`).

use std::collections::{BTreeMap, VecDeque};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heal::check::{CheckContext, CheckOutcome, Tier};
use heal::clock::{Timestamp, US_PER_MS};
use heal::issue::{Issue, IssueKind};
use heal::repair::{Backup, DataLoss, Estimate, RepairCost, RepairError, RepairReport};
use heal::{HealthCheck, RepairStrategy, Sample, Subject};

use super::{ConditionTrigger, TargetConfig, resource};

/// The longest wait before a restart, ms.
pub const BACKOFF_MS_MAX: u64 = 60_000;
/// How long a restarted process must stay up for the restart to count as done, ms.
pub const START_GRACE_MS: u64 = 300;
/// The most bytes of a pidfile read.
pub const PIDFILE_BYTES_MAX: u64 = 64;
/// The largest pid (Linux's `PID_MAX_LIMIT`).
pub const PID_MAX: u32 = 4_194_304;
/// The issue codes of a process target.
pub const CODES: [&str; 4] = [
    "process_dead",
    "pidfile_missing",
    "pidfile_invalid",
    "pidfile_stale",
];

/// What a check saw of the process.
enum Seen {
    /// It runs as this pid.
    Alive(u32),
    /// It ran (as this pid, if known) and is gone: how.
    Dead(Option<u32>, String),
    /// A pidfile problem: code and why.
    Pidfile(&'static str, String),
}

/// The pid of a pidfile: one decimal number in its first [`PIDFILE_BYTES_MAX`] bytes, whitespace around it.
fn read_pidfile(path: &std::path::Path) -> Result<u32, (&'static str, String)> {
    use std::io::Read as _;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            "pidfile_missing"
        } else {
            "pidfile_invalid"
        };
        (code, format!("pidfile {shown}: cannot open: {e}"))
    })?;
    let mut bytes = Vec::new();
    file.take(PIDFILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            (
                "pidfile_invalid",
                format!("pidfile {shown}: cannot read: {e}"),
            )
        })?;
    let text = String::from_utf8_lossy(&bytes);
    let pid = text
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|p| (1..=PID_MAX).contains(p));
    match pid {
        Some(pid) if bytes.len() as u64 <= PIDFILE_BYTES_MAX => Ok(pid),
        _ => Err((
            "pidfile_invalid",
            format!(
                "pidfile {shown}: {:?} is not one pid (1..={PID_MAX}) within pidfile_bytes_max = {PIDFILE_BYTES_MAX}",
                text.chars()
                    .take(PIDFILE_BYTES_MAX as usize)
                    .collect::<String>()
            ),
        )),
    }
}

/// When `pid` started (clock ticks after boot), if it runs (a zombie does not).
fn start_time(pid: u32) -> Option<u64> {
    let p = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
    let stat = p.stat().ok()?;
    (stat.state != 'Z' && stat.state != 'X').then_some(stat.starttime)
}

#[derive(Default)]
struct State {
    child: Option<Child>,
    pid: Option<u32>,
    /// How the last child ended, once it did.
    exit: Option<String>,
    restarts: VecDeque<Instant>,
    last_start: Option<Instant>,
    /// A watched process (pid, pidfile): the start time of `pid` when medic saw it running.
    watched_start: Option<u64>,
    readings: BTreeMap<&'static str, f64>,
    fresh: bool,
    stopped: bool,
}

/// The supervised process and its state: the target's check.
pub struct ProcessWatch {
    config: TargetConfig,
    check_name: String,
    triggers: Vec<ConditionTrigger>,
    state: Mutex<State>,
}

impl ProcessWatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn(&self, state: &mut State) -> Result<u32, String> {
        let argv = &self.config.command;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(&self.config.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(dir) = &self.config.dir {
            cmd.current_dir(dir);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {argv:?}: {e}"))?;
        let pid = child.id();
        state.child = Some(child);
        state.pid = Some(pid);
        state.exit = None;
        state.last_start = Some(Instant::now());
        Ok(pid)
    }

    /// Whether medic watches a process it did not start (`pid` or `pidfile`).
    fn watched(&self) -> bool {
        self.config.command.is_empty()
    }

    /// What the check sees: the child (reaped when it exited) or the watched pid.
    fn see(&self, state: &mut State) -> Seen {
        if !self.watched() {
            return if self.alive(state) {
                Seen::Alive(state.pid.unwrap_or(0))
            } else {
                let how = state.exit.clone().unwrap_or_else(|| "never started".into());
                Seen::Dead(state.pid, format!("exited ({how})"))
            };
        }
        let pid = match (self.config.pid, &self.config.pidfile) {
            (Some(pid), _) => pid,
            (None, Some(path)) => match read_pidfile(path) {
                Ok(pid) => pid,
                Err((code, why)) => return Seen::Pidfile(code, why),
            },
            (None, None) => return Seen::Pidfile("pidfile_missing", "no pid or pidfile".into()),
        };
        let seen_before = state.pid == Some(pid) && state.watched_start.is_some();
        match start_time(pid) {
            Some(start) if seen_before && state.watched_start != Some(start) => Seen::Dead(
                Some(pid),
                "exited (its pid now belongs to another process)".into(),
            ),
            Some(start) => {
                state.pid = Some(pid);
                state.watched_start = Some(start);
                Seen::Alive(pid)
            }
            None if seen_before || self.config.pidfile.is_none() => {
                Seen::Dead(Some(pid), "no longer runs".into())
            }
            None => Seen::Pidfile(
                "pidfile_stale",
                format!(
                    "pidfile {} names pid {pid}, which does not run",
                    self.config
                        .pidfile
                        .as_deref()
                        .unwrap_or(std::path::Path::new(""))
                        .display()
                ),
            ),
        }
    }

    /// Whether the child runs; reaps it when it exited.
    fn alive(&self, state: &mut State) -> bool {
        let Some(child) = state.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                state.exit = Some(status.to_string());
                state.child = None;
                false
            }
            Err(e) => {
                state.exit = Some(format!("cannot wait for it: {e}"));
                false
            }
        }
    }

    fn kill(state: &mut State) {
        if let Some(mut child) = state.child.take() {
            // Already gone is fine: the wait reaps it either way.
            if child.kill().is_ok() || child.try_wait().is_ok() {
                let _reaped = child.wait();
            }
        }
    }

    fn prune_restarts(&self, state: &mut State) {
        let window = Duration::from_millis(self.config.restart_window_ms);
        while state.restarts.front().is_some_and(|t| t.elapsed() > window) {
            state.restarts.pop_front();
        }
    }

    /// The wait before the next restart: `backoff_ms` doubled per restart in the window.
    fn backoff(&self, restarts: usize) -> Duration {
        let shift = u32::try_from(restarts).unwrap_or(u32::MAX).min(16);
        let ms = self.config.backoff_ms.saturating_mul(1u64 << shift) / 2;
        Duration::from_millis(ms.clamp(self.config.backoff_ms.min(BACKOFF_MS_MAX), BACKOFF_MS_MAX))
    }

    fn read_proc(pid: u32) -> Option<BTreeMap<&'static str, f64>> {
        let p = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
        let stat = p.stat().ok()?;
        let ticks = procfs::ticks_per_second().max(1) as f64;
        let fds = p.fd_count().ok()? as f64;
        Some(BTreeMap::from([
            (
                "rss_bytes",
                stat.rss.saturating_mul(procfs::page_size()) as f64,
            ),
            ("cpu_seconds", (stat.utime + stat.stime) as f64 / ticks),
            ("fds", fds),
            ("threads", stat.num_threads as f64),
        ]))
    }
}

impl HealthCheck for ProcessWatch {
    fn name(&self) -> &str {
        &self.check_name
    }
    fn tier(&self) -> Tier {
        Tier::Shallow
    }
    fn timeout_us(&self) -> u64 {
        1_000 * US_PER_MS
    }
    fn interval_us(&self) -> u64 {
        self.config.interval_ms * US_PER_MS
    }
    fn run(&self, ctx: &CheckContext<'_>) -> CheckOutcome {
        let now = ctx.clock.now();
        let name = &self.config.name;
        let mut state = self.lock();
        let seen = self.see(&mut state);
        self.prune_restarts(&mut state);
        let alive = matches!(seen, Seen::Alive(_));
        let mut readings = match seen {
            Seen::Alive(pid) => Self::read_proc(pid).unwrap_or_default(),
            _ => BTreeMap::new(),
        };
        readings.insert("up", f64::from(u8::from(alive)));
        readings.insert("restarts", state.restarts.len() as f64);
        state.readings = readings.clone();
        state.fresh = true;
        drop(state);
        let what = if self.watched() {
            match (&self.config.pidfile, self.config.pid) {
                (Some(f), _) => format!("pidfile {}", f.display()),
                (None, pid) => format!("pid {}", pid.unwrap_or(0)),
            }
        } else {
            format!("{:?}", self.config.command)
        };
        let mut issues = Vec::new();
        let problem = match &seen {
            Seen::Alive(_) => None,
            Seen::Dead(pid, how) => Some((
                "process_dead",
                format!(
                    "target {name}: process {} {how}",
                    pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
                ),
                pid.map(|p| p.to_string()).unwrap_or_default(),
                how.clone(),
            )),
            Seen::Pidfile(code, why) => Some((
                *code,
                format!("target {name}: {why}"),
                String::new(),
                why.clone(),
            )),
        };
        if let Some((code, summary, pid, how)) = problem {
            let mut issue = Issue::new(
                IssueKind::CheckFailed,
                code,
                resource(name),
                summary,
                &self.check_name,
                now,
            );
            issue.score = 1.0;
            let key = if self.watched() {
                "watching"
            } else {
                "command"
            };
            issue.evidence = vec![
                (key.into(), what),
                ("pid".into(), pid),
                ("exit".into(), how),
            ];
            issues.push(issue);
        }
        for t in &self.triggers {
            issues.extend(t.judge(name, &readings, &self.check_name, now));
        }
        if issues.is_empty() {
            let pid = match seen {
                Seen::Alive(pid) => pid,
                _ => 0,
            };
            CheckOutcome::pass(format!("pid {pid} runs"))
        } else {
            CheckOutcome::fail(issues[0].summary.clone(), issues)
        }
    }
}

/// A command medic starts and supervises.
pub struct ProcessTarget {
    watch: Arc<ProcessWatch>,
}

impl ProcessTarget {
    /// The target of `config` (kind `process`, validated); not started yet.
    pub fn new(config: TargetConfig, triggers: Vec<ConditionTrigger>) -> Self {
        Self {
            watch: Arc::new(ProcessWatch {
                check_name: format!("target.{}.alive", config.name),
                config,
                triggers,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Starts the process (nothing for a watched one: it runs already, or its check says why not).
    pub fn start(&self) -> Result<u32, String> {
        if self.watch.watched() {
            return Ok(0);
        }
        let mut state = self.watch.lock();
        self.watch.spawn(&mut state)
    }

    /// Whether medic watches a process it did not start (`pid` or `pidfile`): no built-in restart.
    pub fn watched(&self) -> bool {
        self.watch.watched()
    }

    /// The configured `restart_command` of a watched process (empty when none is).
    pub fn restart_command(&self) -> &[String] {
        &self.watch.config.restart_command
    }

    /// Its name.
    pub fn target_name(&self) -> &str {
        &self.watch.config.name
    }

    /// Its check, `target.<name>.alive`.
    pub fn check(&self) -> Arc<dyn HealthCheck> {
        self.watch.clone()
    }

    /// Stops the process for good (the daemon stops).
    pub fn stop(&self) {
        let mut state = self.watch.lock();
        state.stopped = true;
        ProcessWatch::kill(&mut state);
    }

    /// Kills the process if it runs and starts it again, counting a restart; returns the new pid. Refused once
    /// stopped.
    pub fn restart(&self) -> Result<u32, String> {
        if self.watch.watched() {
            return Err(format!(
                "medic did not start {} (it watches a pid or pidfile): restart it with run_restart_command",
                self.target_name()
            ));
        }
        let mut state = self.watch.lock();
        if state.stopped {
            return Err("the daemon is stopping".into());
        }
        ProcessWatch::kill(&mut state);
        state.restarts.push_back(Instant::now());
        let pid = self.watch.spawn(&mut state)?;
        drop(state);
        std::thread::sleep(Duration::from_millis(START_GRACE_MS));
        let mut state = self.watch.lock();
        if self.watch.alive(&mut state) {
            Ok(pid)
        } else {
            Err(format!(
                "pid {pid} exited within {START_GRACE_MS} ms ({})",
                state.exit.clone().unwrap_or_default()
            ))
        }
    }

    /// Its state for `/v1/status`: pid, whether it runs, restarts in the window.
    pub fn status(&self) -> serde_json::Value {
        let mut state = self.watch.lock();
        let alive = matches!(self.watch.see(&mut state), Seen::Alive(_));
        self.watch.prune_restarts(&mut state);
        serde_json::json!({
            "pid": state.pid,
            "watched": self.watch.watched(),
            "running": alive,
            "last_exit": state.exit,
            "restarts_in_window": state.restarts.len(),
            "restarts_max": self.watch.config.restarts_max,
        })
    }
}

impl Drop for ProcessTarget {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Subject for ProcessTarget {
    fn name(&self) -> &str {
        self.target_name()
    }
    fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        vec![self.check()]
    }
    fn strategies(&self) -> Vec<Arc<dyn RepairStrategy>> {
        Vec::new()
    }
    fn sample(&self, now: Timestamp) -> Vec<Sample> {
        let mut state = self.watch.lock();
        if !std::mem::take(&mut state.fresh) {
            return Vec::new();
        }
        let name = self.target_name();
        state
            .readings
            .iter()
            .map(|(k, v)| {
                let metric = format!("target.{name}.{k}");
                match *k {
                    "up" => Sample::state(metric, *v > 0.0, now),
                    "cpu_seconds" | "restarts" => Sample::counter(metric, *v, now),
                    "rss_bytes" => Sample::size(metric, *v, now),
                    _ => Sample::gauge(metric, *v, now),
                }
            })
            .collect()
    }
    fn drain_issues(&self) -> Vec<Issue> {
        Vec::new()
    }
}

/// The built-in repair of `process_dead`: restart after the backoff; none offered past `restarts_max` restarts in
/// the window (the engine escalates). A playbook for `process_dead` on the target replaces it.
pub struct RestartStrategy {
    target: Arc<ProcessTarget>,
    name: String,
}

impl RestartStrategy {
    /// The restart of `target`.
    pub fn new(target: Arc<ProcessTarget>) -> Self {
        let name = format!("restart_process.{}", target.target_name());
        Self { target, name }
    }
}

impl RepairStrategy for RestartStrategy {
    fn name(&self) -> &str {
        &self.name
    }
    fn cost(&self) -> RepairCost {
        RepairCost::InPlace
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        if issue.code != "process_dead" || issue.resource != resource(self.target.target_name()) {
            return false;
        }
        let w = &self.target.watch;
        let mut state = w.lock();
        w.prune_restarts(&mut state);
        state.restarts.len() < w.config.restarts_max as usize
    }
    fn estimate(&self, _issue: &Issue) -> Estimate {
        Estimate {
            duration_us: START_GRACE_MS * US_PER_MS,
            data_loss: DataLoss::None,
            risk: 0.05,
        }
    }
    fn backup(&self, _issue: &Issue) -> Result<Backup, RepairError> {
        // Nothing to save; the backoff is enforced here, so a restart too soon is "blocked" and tried again.
        let w = &self.target.watch;
        let mut state = w.lock();
        w.prune_restarts(&mut state);
        let wait = w.backoff(state.restarts.len());
        let since = state.last_start.map(|t| t.elapsed()).unwrap_or(wait);
        if !state.restarts.is_empty() && since < wait {
            return Err(RepairError::Environment(format!(
                "backoff: the next restart of {} in {} ms ({} restarts in the window)",
                w.config.name,
                (wait - since).as_millis(),
                state.restarts.len()
            )));
        }
        Ok(Backup {
            location: "nothing saved: a restart changes no data".into(),
            bytes: 0,
        })
    }
    fn repair(&self, _issue: &Issue) -> Result<RepairReport, RepairError> {
        let pid = self.target.restart().map_err(RepairError::Other)?;
        let w = &self.target.watch;
        let n = w.lock().restarts.len();
        Ok(RepairReport {
            actions: vec![format!(
                "restarted {:?} as pid {pid} (restart {n} of {} in {} ms)",
                w.config.command, w.config.restarts_max, w.config.restart_window_ms
            )],
            data_loss: DataLoss::None,
        })
    }
    fn validate(&self, _issue: &Issue) -> Result<(), RepairError> {
        let w = &self.target.watch;
        let mut state = w.lock();
        if w.alive(&mut state) {
            Ok(())
        } else {
            Err(RepairError::Validation(format!(
                "{} exited again ({})",
                w.config.name,
                state.exit.clone().unwrap_or_default()
            )))
        }
    }
    fn rollback(&self, _issue: &Issue, _backup: &Backup) -> Result<(), RepairError> {
        Ok(())
    }
}
