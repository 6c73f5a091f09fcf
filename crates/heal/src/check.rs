//! Health checks in three tiers, and the health state derived from their results.
//!
//! The engine has no threads, so it cannot pre-empt a check: a check receives its deadline in [`CheckContext`] and
//! should stop by it; the scheduler measures each run on the [`Clock`] and reports a run that
//! overran its timeout as failed, whatever it returned.

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, Timestamp, US_PER_MS, US_PER_S};
use crate::issue::Issue;

/// How expensive a check is, and so how often it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Under 100 ms, every few seconds (headers, liveness, a sample of blocks).
    Shallow,
    /// Under 5 s (blocks written since the last check, index agreement).
    Deep,
    /// Under 30 s (full scrub).
    Comprehensive,
}

impl Tier {
    /// The default time limit of a check of this tier, µs.
    pub fn default_timeout_us(self) -> u64 {
        match self {
            Tier::Shallow => 100 * US_PER_MS,
            Tier::Deep => 5 * US_PER_S,
            Tier::Comprehensive => 30 * US_PER_S,
        }
    }

    /// The default interval between runs of a check of this tier, µs.
    pub fn default_interval_us(self) -> u64 {
        match self {
            Tier::Shallow => 5 * US_PER_S,
            Tier::Deep => 60 * US_PER_S,
            Tier::Comprehensive => 3_600 * US_PER_S,
        }
    }
}

/// The health of a subject, from its latest check results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthState {
    /// Every check passes.
    Healthy,
    /// One or two shallow checks fail.
    Degraded,
    /// Three or more shallow checks, or any deep check, fail.
    Unhealthy,
    /// A comprehensive check fails.
    Critical,
}

/// What a check gets when it runs.
pub struct CheckContext<'a> {
    /// The engine's clock.
    pub clock: &'a dyn Clock,
    /// When the check must have returned.
    pub deadline: Timestamp,
}

/// What a check run found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// Whether the check passed.
    pub passed: bool,
    /// One line for a human.
    pub message: String,
    /// The problems found, precisely located. A failed check with no issue gets a generic `check_failed` issue.
    pub issues: Vec<Issue>,
    /// The check could not look at what it watches (a server that did not answer, or refused it): the issues it
    /// reports stand, but a problem it does not report is not shown gone. An incident of such a problem is kept as
    /// it was until a run that could look says otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inconclusive: bool,
}

impl CheckOutcome {
    /// A passing outcome.
    pub fn pass(message: impl Into<String>) -> Self {
        Self {
            passed: true,
            message: message.into(),
            issues: Vec::new(),
            inconclusive: false,
        }
    }

    /// A failing outcome with the issues found.
    pub fn fail(message: impl Into<String>, issues: Vec<Issue>) -> Self {
        Self {
            passed: false,
            message: message.into(),
            issues,
            inconclusive: false,
        }
    }

    /// This outcome, marked as from a run that could not look ([`CheckOutcome::inconclusive`]).
    pub fn inconclusive(mut self) -> Self {
        self.inconclusive = true;
        self
    }
}

/// A health check of a subject.
pub trait HealthCheck: Send + Sync {
    /// A stable name, unique within a subject.
    fn name(&self) -> &str;
    /// Its tier.
    fn tier(&self) -> Tier;
    /// Its time limit, µs.
    fn timeout_us(&self) -> u64 {
        self.tier().default_timeout_us()
    }
    /// How often it runs, µs.
    fn interval_us(&self) -> u64 {
        self.tier().default_interval_us()
    }
    /// Runs the check once.
    fn run(&self, ctx: &CheckContext<'_>) -> CheckOutcome;
    /// Whether its latest run reached a verdict. A check that needs several runs before it reports a problem (a
    /// probe counting failed probes in a row before it calls a target down) has not while it is part-way there:
    /// its passing run then says nothing about whether the problem is gone, so an incident it reported is not
    /// closed on it. Default: every run is a verdict.
    fn decided(&self) -> bool {
        true
    }
}

/// One run of one check, as the scheduler saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// Its tier.
    pub tier: Tier,
    /// Whether it passed (false when it overran its timeout, whatever it returned).
    pub passed: bool,
    /// Whether it overran its timeout.
    pub timed_out: bool,
    /// The check's message, or why the scheduler failed it.
    pub message: String,
    /// When it started.
    pub started_at: Timestamp,
    /// How long it ran, µs, measured on the engine's clock.
    pub duration_us: u64,
    /// The issues it reported (a failed check with none gets a generic `check_failed` one; an overrun gets
    /// `check_timeout`).
    pub issues: Vec<Issue>,
    /// The run could not look at what the check watches ([`CheckOutcome::inconclusive`]): a problem it does not
    /// report is unknown, not gone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inconclusive: bool,
}

/// The health state from the latest result of each check: all pass = HEALTHY; 1–2 shallow failures = DEGRADED;
/// 3+ shallow or any deep failure = UNHEALTHY; any comprehensive failure = CRITICAL.
pub fn health_from_results<'a>(results: impl IntoIterator<Item = &'a CheckResult>) -> HealthState {
    let (mut shallow, mut deep, mut comprehensive) = (0u32, 0u32, 0u32);
    for r in results.into_iter().filter(|r| !r.passed) {
        match r.tier {
            Tier::Shallow => shallow += 1,
            Tier::Deep => deep += 1,
            Tier::Comprehensive => comprehensive += 1,
        }
    }
    if comprehensive > 0 {
        HealthState::Critical
    } else if deep > 0 || shallow >= 3 {
        HealthState::Unhealthy
    } else if shallow > 0 {
        HealthState::Degraded
    } else {
        HealthState::Healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(tier: Tier, passed: bool) -> CheckResult {
        CheckResult {
            name: format!("{tier:?}"),
            tier,
            passed,
            timed_out: false,
            message: String::new(),
            started_at: 0,
            duration_us: 0,
            issues: Vec::new(),
            inconclusive: false,
        }
    }

    #[test]
    fn health_state_follows_failures_by_tier() {
        use HealthState::*;
        use Tier::*;
        let cases: &[(&[(Tier, bool)], HealthState)] = &[
            (&[], Healthy),
            (
                &[(Shallow, true), (Deep, true), (Comprehensive, true)],
                Healthy,
            ),
            (&[(Shallow, false), (Shallow, true)], Degraded),
            (&[(Shallow, false), (Shallow, false)], Degraded),
            (
                &[(Shallow, false), (Shallow, false), (Shallow, false)],
                Unhealthy,
            ),
            (&[(Deep, false)], Unhealthy),
            (&[(Shallow, false), (Comprehensive, false)], Critical),
        ];
        for (input, expected) in cases {
            let results: Vec<CheckResult> = input.iter().map(|&(t, p)| result(t, p)).collect();
            assert_eq!(health_from_results(&results), *expected, "{input:?}");
        }
    }
}
