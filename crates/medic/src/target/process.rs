//! The process target: a command medic starts (no shell, stdin and output to `/dev/null`) and supervises. Its
//! check `target.<name>.alive` reaps the child and reports `process_dead` once it exited; its readings (resident
//! memory, CPU seconds, descriptors, threads, from `/proc/<pid>`) are samples. The built-in [`RestartStrategy`]
//! restarts it after a backoff doubling with each restart in `restart_window_ms` (at most [`BACKOFF_MS_MAX`]), and
//! stops offering itself after `restarts_max` restarts in the window, so the engine escalates.
//!
//! The children are stopped when the daemon stops ([`ProcessTarget::stop`], also on drop).

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

#[derive(Default)]
struct State {
    child: Option<Child>,
    pid: Option<u32>,
    /// How the last child ended, once it did.
    exit: Option<String>,
    restarts: VecDeque<Instant>,
    last_start: Option<Instant>,
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
        let alive = self.alive(&mut state);
        self.prune_restarts(&mut state);
        let mut readings = alive
            .then(|| state.pid.and_then(Self::read_proc))
            .flatten()
            .unwrap_or_default();
        readings.insert("up", f64::from(u8::from(alive)));
        readings.insert("restarts", state.restarts.len() as f64);
        state.readings = readings.clone();
        state.fresh = true;
        let pid = state.pid;
        let exit = state.exit.clone();
        drop(state);
        let mut issues = Vec::new();
        if !alive {
            let how = exit.unwrap_or_else(|| "never started".into());
            let mut issue = Issue::new(
                IssueKind::CheckFailed,
                "process_dead",
                resource(name),
                format!(
                    "target {name}: process {} exited ({how})",
                    pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
                ),
                &self.check_name,
                now,
            );
            issue.score = 1.0;
            issue.evidence = vec![
                ("command".into(), format!("{:?}", self.config.command)),
                ("exit".into(), how),
            ];
            issues.push(issue);
        }
        for t in &self.triggers {
            issues.extend(t.judge(name, &readings, &self.check_name, now));
        }
        if issues.is_empty() {
            CheckOutcome::pass(format!(
                "pid {} runs",
                pid.map(|p| p.to_string()).unwrap_or_default()
            ))
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

    /// Starts the process.
    pub fn start(&self) -> Result<u32, String> {
        let mut state = self.watch.lock();
        self.watch.spawn(&mut state)
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
        let alive = self.watch.alive(&mut state);
        self.watch.prune_restarts(&mut state);
        serde_json::json!({
            "pid": state.pid,
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
