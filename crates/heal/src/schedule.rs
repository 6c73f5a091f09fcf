//! The check scheduler: runs each health check when its interval is due (or a whole tier on demand), gives it its
//! deadline, measures the run on the [`Clock`] and fails a run that overran its timeout whatever it returned. It
//! keeps the latest result of every check, from which the [`HealthState`] follows.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::check::{
    CheckContext, CheckResult, HealthCheck, HealthState, Tier, health_from_results,
};
use crate::clock::{Clock, Timestamp};
use crate::issue::{Issue, IssueKind};

/// The time limits of the checks that keep their tier's default ([`Tier::default_timeout_us`]), and how many
/// overruns in a row make a `check_timeout` issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckTimeouts {
    /// The shallow tier's limit, µs.
    pub shallow_us: u64,
    /// The deep tier's limit, µs.
    pub deep_us: u64,
    /// The comprehensive tier's limit, µs.
    pub comprehensive_us: u64,
    /// Runs in a row of one check past its limit before the overrun is a `check_timeout` issue (at least 1). An
    /// overrun before that is noted in the result (`timed_out`) but the check's own verdict stands: a busy machine
    /// that slows one run of a check that then completes is not a problem of the subject.
    pub overruns_before_issue: u32,
}

impl Default for CheckTimeouts {
    fn default() -> Self {
        Self {
            shallow_us: Tier::Shallow.default_timeout_us(),
            deep_us: Tier::Deep.default_timeout_us(),
            comprehensive_us: Tier::Comprehensive.default_timeout_us(),
            overruns_before_issue: 2,
        }
    }
}

impl CheckTimeouts {
    /// The limit of `check`: its own when it sets one, else its tier's.
    pub fn of(&self, check: &dyn HealthCheck) -> u64 {
        let tier = check.tier();
        let own = check.timeout_us();
        if own != tier.default_timeout_us() {
            return own;
        }
        match tier {
            Tier::Shallow => self.shallow_us,
            Tier::Deep => self.deep_us,
            Tier::Comprehensive => self.comprehensive_us,
        }
    }
}

/// Runs checks on their intervals and remembers their latest results.
#[derive(Debug, Default)]
pub struct Scheduler {
    last_run: HashMap<String, Timestamp>,
    latest: BTreeMap<String, CheckResult>,
    /// Overruns in a row, by check.
    overruns: HashMap<String, u32>,
    timeouts: CheckTimeouts,
}

impl Scheduler {
    /// A scheduler that has run nothing yet (every check is due).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the tiers' time limits and the overruns in a row that make an issue.
    pub fn set_timeouts(&mut self, timeouts: CheckTimeouts) {
        self.timeouts = timeouts;
    }

    /// The tiers' time limits in force.
    pub fn timeouts(&self) -> CheckTimeouts {
        self.timeouts
    }

    /// Runs every check whose interval has passed since its last run (or that never ran), in the given order.
    pub fn run_due(
        &mut self,
        checks: &[Arc<dyn HealthCheck>],
        clock: &dyn Clock,
    ) -> Vec<CheckResult> {
        let mut results = Vec::new();
        for check in checks {
            let now = clock.now();
            let due = match self.last_run.get(check.name()) {
                None => true,
                Some(&last) => now.saturating_sub(last) >= check.interval_us(),
            };
            if due {
                results.push(self.run_one(check.as_ref(), clock));
            }
        }
        results
    }

    /// Runs every check of `tier` and of the cheaper tiers now, due or not (`Deep` runs shallow and deep checks,
    /// `Comprehensive` runs all), so the health state answers for that depth.
    pub fn run_tier(
        &mut self,
        checks: &[Arc<dyn HealthCheck>],
        tier: Tier,
        clock: &dyn Clock,
    ) -> Vec<CheckResult> {
        checks
            .iter()
            .filter(|c| c.tier() <= tier)
            .map(|c| self.run_one(c.as_ref(), clock))
            .collect()
    }

    /// Runs one check, enforcing its timeout by measurement.
    pub fn run_one(&mut self, check: &dyn HealthCheck, clock: &dyn Clock) -> CheckResult {
        let started_at = clock.now();
        let timeout_us = self.timeouts.of(check);
        let ctx = CheckContext {
            clock,
            deadline: started_at.saturating_add(timeout_us),
        };
        let outcome = check.run(&ctx);
        let duration_us = clock.now().saturating_sub(started_at);
        let name = check.name().to_string();
        let tier = check.tier();
        let timed_out = duration_us > timeout_us;
        let inconclusive = outcome.inconclusive;
        let overruns = if timed_out {
            let n = self.overruns.entry(name.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        } else {
            self.overruns.remove(&name);
            0
        };
        let mut issues = outcome.issues;
        let (passed, message) = if overruns >= self.timeouts.overruns_before_issue.max(1) {
            let message = format!(
                "check {name} overran its timeout: ran {duration_us} µs, timeout {timeout_us} µs, {overruns} run(s) \
                 in a row (it said: {})",
                outcome.message
            );
            issues.push(
                Issue::new(
                    IssueKind::CheckFailed,
                    "check_timeout",
                    &name,
                    &message,
                    &name,
                    started_at,
                )
                .with_score(0.5)
                .evidence("duration_us", duration_us.to_string())
                .evidence("timeout_us", timeout_us.to_string())
                .evidence("overruns_in_a_row", overruns.to_string()),
            );
            (false, message)
        } else {
            let said = if timed_out {
                format!(
                    "{} (ran {duration_us} µs, over its timeout {timeout_us} µs once; an issue after {} in a row)",
                    outcome.message, self.timeouts.overruns_before_issue
                )
            } else {
                outcome.message
            };
            if !outcome.passed && issues.is_empty() {
                issues.push(
                    Issue::new(
                        IssueKind::CheckFailed,
                        "check_failed",
                        &name,
                        format!("check {name} failed: {said}"),
                        &name,
                        started_at,
                    )
                    .evidence("tier", format!("{tier:?}")),
                );
            }
            (outcome.passed, said)
        };
        let result = CheckResult {
            name: name.clone(),
            tier,
            passed,
            timed_out,
            message,
            started_at,
            duration_us,
            issues,
            inconclusive,
        };
        self.last_run.insert(name.clone(), started_at);
        self.latest.insert(name, result.clone());
        result
    }

    /// Whether the latest run of check `name` could not look ([`CheckResult::inconclusive`]).
    pub fn latest_inconclusive(&self, name: &str) -> bool {
        self.latest.get(name).is_some_and(|r| r.inconclusive)
    }

    /// The latest result of every check that has run, by name.
    pub fn latest(&self) -> Vec<CheckResult> {
        self.latest.values().cloned().collect()
    }

    /// The health state from the latest results.
    pub fn health(&self) -> HealthState {
        health_from_results(self.latest.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::CheckOutcome;
    use crate::clock::{SimClock, US_PER_MS, US_PER_S};
    use std::sync::atomic::{AtomicU32, Ordering};

    struct FakeCheck {
        name: &'static str,
        tier: Tier,
        pass: bool,
        takes_us: u64,
        clock: SimClock,
        runs: AtomicU32,
    }

    impl HealthCheck for FakeCheck {
        fn name(&self) -> &str {
            self.name
        }
        fn tier(&self) -> Tier {
            self.tier
        }
        fn run(&self, _ctx: &CheckContext<'_>) -> CheckOutcome {
            self.runs.fetch_add(1, Ordering::SeqCst);
            self.clock.advance(self.takes_us);
            if self.pass {
                CheckOutcome::pass("ok")
            } else {
                CheckOutcome::fail("broken", Vec::new())
            }
        }
    }

    fn check(
        name: &'static str,
        tier: Tier,
        pass: bool,
        takes_us: u64,
        clock: &SimClock,
    ) -> Arc<FakeCheck> {
        Arc::new(FakeCheck {
            name,
            tier,
            pass,
            takes_us,
            clock: clock.clone(),
            runs: AtomicU32::new(0),
        })
    }

    #[test]
    fn runs_only_what_is_due() {
        let clock = SimClock::new(1_000 * US_PER_S);
        let shallow = check("s", Tier::Shallow, true, 0, &clock);
        let deep = check("d", Tier::Deep, true, 0, &clock);
        let checks: Vec<Arc<dyn HealthCheck>> = vec![shallow.clone(), deep.clone()];
        let mut s = Scheduler::new();
        assert_eq!(
            s.run_due(&checks, &clock).len(),
            2,
            "first cycle runs everything"
        );
        clock.advance(US_PER_S);
        assert!(
            s.run_due(&checks, &clock).is_empty(),
            "nothing due after 1 s"
        );
        clock.advance(4 * US_PER_S);
        let r = s.run_due(&checks, &clock);
        assert_eq!(r.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["s"]);
        clock.advance(60 * US_PER_S);
        assert_eq!(s.run_due(&checks, &clock).len(), 2);
        assert_eq!(shallow.runs.load(Ordering::SeqCst), 3);
        assert_eq!(deep.runs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn overruns_in_a_row_are_reported_failed_with_a_timeout_issue() {
        let clock = SimClock::new(0);
        let slow = check("slow", Tier::Shallow, true, 150 * US_PER_MS, &clock);
        let mut s = Scheduler::new();
        // One overrun of a check that passed: noted, not an issue.
        let r = s.run_one(slow.as_ref(), &clock);
        assert!(r.passed && r.timed_out, "{r:?}");
        assert!(r.issues.is_empty(), "{:?}", r.issues);
        assert!(
            r.message.contains("over its timeout 100000 µs once"),
            "{}",
            r.message
        );
        assert_eq!(s.health(), HealthState::Healthy);
        // The second in a row: failed, with the issue.
        let r = s.run_one(slow.as_ref(), &clock);
        assert!(!r.passed && r.timed_out);
        assert_eq!(r.duration_us, 150 * US_PER_MS);
        assert_eq!(r.issues.len(), 1);
        assert_eq!(r.issues[0].code, "check_timeout");
        assert!(r.message.contains("timeout 100000"), "{}", r.message);
        assert!(r.message.contains("2 run(s) in a row"), "{}", r.message);
        assert_eq!(s.health(), HealthState::Degraded);
    }

    #[test]
    fn a_run_within_the_limit_starts_the_overrun_count_again() {
        let clock = SimClock::new(0);
        let slow = check("slow", Tier::Shallow, true, 150 * US_PER_MS, &clock);
        let fast = check("slow", Tier::Shallow, true, 0, &clock);
        let mut s = Scheduler::new();
        for _ in 0..5 {
            assert!(s.run_one(slow.as_ref(), &clock).issues.is_empty());
            assert!(s.run_one(fast.as_ref(), &clock).issues.is_empty());
        }
    }

    #[test]
    fn the_tier_limits_are_configurable_and_a_check_s_own_limit_stands() {
        let clock = SimClock::new(0);
        let slow = check("slow", Tier::Shallow, true, 150 * US_PER_MS, &clock);
        let mut s = Scheduler::new();
        s.set_timeouts(CheckTimeouts {
            shallow_us: 200 * US_PER_MS,
            overruns_before_issue: 1,
            ..CheckTimeouts::default()
        });
        let r = s.run_one(slow.as_ref(), &clock);
        assert!(r.passed && !r.timed_out, "{r:?}");
        s.set_timeouts(CheckTimeouts {
            shallow_us: 120 * US_PER_MS,
            overruns_before_issue: 1,
            ..CheckTimeouts::default()
        });
        let r = s.run_one(slow.as_ref(), &clock);
        assert!(
            !r.passed && r.timed_out,
            "one overrun is an issue at overruns_before_issue = 1"
        );
        assert!(r.message.contains("timeout 120000"), "{}", r.message);

        struct Own(SimClock);
        impl HealthCheck for Own {
            fn name(&self) -> &str {
                "own"
            }
            fn tier(&self) -> Tier {
                Tier::Shallow
            }
            fn timeout_us(&self) -> u64 {
                US_PER_S
            }
            fn run(&self, _ctx: &CheckContext<'_>) -> CheckOutcome {
                self.0.advance(500 * US_PER_MS);
                CheckOutcome::pass("ok")
            }
        }
        let r = s.run_one(&Own(clock.clone()), &clock);
        assert!(
            r.passed && !r.timed_out,
            "its own 1 s limit, not the tier's: {r:?}"
        );
    }

    #[test]
    fn failed_check_without_issues_gets_a_generic_one() {
        let clock = SimClock::new(0);
        let bad = check("bad", Tier::Deep, false, 0, &clock);
        let mut s = Scheduler::new();
        let r = s.run_one(bad.as_ref(), &clock);
        assert!(!r.passed && !r.timed_out);
        assert_eq!(r.issues[0].code, "check_failed");
        assert_eq!(r.issues[0].resource, "bad");
        assert_eq!(s.health(), HealthState::Unhealthy);
    }

    #[test]
    fn run_tier_runs_that_tier_and_cheaper_ones_on_demand() {
        let clock = SimClock::new(0);
        let checks: Vec<Arc<dyn HealthCheck>> = vec![
            check("s", Tier::Shallow, true, 0, &clock),
            check("d", Tier::Deep, true, 0, &clock),
            check("c", Tier::Comprehensive, false, 0, &clock),
        ];
        let mut s = Scheduler::new();
        assert_eq!(s.run_tier(&checks, Tier::Deep, &clock).len(), 2);
        assert_eq!(s.health(), HealthState::Healthy);
        assert_eq!(s.run_tier(&checks, Tier::Comprehensive, &clock).len(), 3);
        assert_eq!(s.health(), HealthState::Critical);
    }
}
