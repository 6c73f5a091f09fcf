//! Deciding: per incident a [`RepairDecision`] (repair, escalate, watch or defer), behind safety gates — dry-run,
//! approval above a risk bound, max concurrent repairs, a per-strategy rate limit and cooldown, a per-strategy
//! [`CircuitBreaker`], and "the same problem failed N repairs → escalate". Strategy choice combines the cascade's
//! cost order with each strategy's Beta-posterior success rate on this issue code.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::config::EngineConfig;
use crate::issue::CrisisLevel;
use crate::repair::{DataLoss, Estimate, RepairCost};

/// What to do about an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Run the recovery cascade.
    Repair,
    /// Hand to a human.
    Escalate,
    /// Transient and nothing applies: watch until it goes quiet.
    Watch,
    /// A temporary gate blocks every strategy (rate limit, cooldown, concurrency, busy resource): try next cycle.
    Defer,
}

/// The decision for one incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepairDecision {
    /// What to do.
    pub action: Action,
    /// The strategy tried first, when repairing.
    pub strategy: Option<String>,
    /// Every strategy the cascade may try, in order.
    pub cascade: Vec<String>,
    /// Confidence the repair succeeds: the chosen strategy's posterior success rate.
    pub confidence: f64,
    /// The chosen strategy's estimated duration, µs.
    pub estimated_duration_us: u64,
    /// The chosen strategy's estimated data loss.
    pub estimated_data_loss: DataLoss,
    /// The chosen strategy's risk.
    pub risk: f64,
    /// Whether an operator must approve before the repair runs.
    pub needs_approval: bool,
    /// Whether this is a dry run (the decision is recorded, nothing is changed).
    pub dry_run: bool,
    /// Why, one line each (including each gate that excluded a strategy).
    pub reasons: Vec<String>,
}

impl RepairDecision {
    fn new(action: Action, reasons: Vec<String>, dry_run: bool) -> Self {
        Self {
            action,
            strategy: None,
            cascade: Vec::new(),
            confidence: 0.0,
            estimated_duration_us: 0,
            estimated_data_loss: DataLoss::None,
            risk: 0.0,
            needs_approval: false,
            dry_run,
            reasons,
        }
    }

    /// The decision in one line, for records.
    pub fn one_line(&self) -> String {
        match self.action {
            Action::Repair => format!(
                "{}repair with {} (confidence {:.2})",
                if self.dry_run { "dry run: " } else { "" },
                self.strategy.as_deref().unwrap_or("?"),
                self.confidence
            ),
            Action::Escalate => format!(
                "escalate: {}",
                self.reasons.last().map(String::as_str).unwrap_or("")
            ),
            Action::Watch => format!(
                "watch: {}",
                self.reasons.last().map(String::as_str).unwrap_or("")
            ),
            Action::Defer => format!(
                "defer: {}",
                self.reasons.last().map(String::as_str).unwrap_or("")
            ),
        }
    }
}

/// A strategy that can repair the incident's root issue, as the decision sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Strategy name.
    pub name: String,
    /// Its cascade cost.
    pub cost: RepairCost,
    /// Its estimate for the issue.
    pub estimate: Estimate,
    /// Beta-posterior success rate on this issue code.
    pub success_rate: f64,
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum BreakerState {
    /// Attempts allowed.
    Closed,
    /// Attempts refused since `since` until the cooldown passes or an operator resets it.
    Open {
        /// When it opened.
        since: Timestamp,
    },
    /// The cooldown passed: one trial attempt is allowed; success closes it, failure opens it again.
    HalfOpen,
}

/// One strategy's circuit breaker: opens after N consecutive failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreaker {
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// When it opened, if it is open or half-open.
    pub opened_at: Option<Timestamp>,
}

impl CircuitBreaker {
    /// The state at `now` with the given cooldown.
    pub fn state(&self, now: Timestamp, cooldown_us: u64) -> BreakerState {
        match self.opened_at {
            None => BreakerState::Closed,
            Some(since) if now.saturating_sub(since) < cooldown_us => BreakerState::Open { since },
            Some(_) => BreakerState::HalfOpen,
        }
    }

    fn record(&mut self, now: Timestamp, success: bool, failures_max: u32) {
        if success {
            self.consecutive_failures = 0;
            self.opened_at = None;
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            // A failed half-open trial re-opens at once; a closed breaker opens at the threshold.
            if self.opened_at.is_some() || self.consecutive_failures >= failures_max {
                self.opened_at = Some(now);
            }
        }
    }
}

/// The gates' memory: breakers, recent attempts, last failures, and failures per problem.
#[derive(Debug, Clone, Default)]
pub struct Gates {
    breakers: HashMap<String, CircuitBreaker>,
    /// Recent attempts per (strategy, resource): the rate limit holds back a strategy thrashing on one resource,
    /// never the repair of independent damage elsewhere.
    attempts: HashMap<(String, String), VecDeque<Timestamp>>,
    last_failure: HashMap<String, Timestamp>,
    problem_failures: HashMap<(String, String), u32>,
    /// Repairs per (resource, code) blocked by the environment before they changed anything.
    problem_blocked: HashMap<(String, String), u32>,
}

/// Repairs blocked by the environment (see [`Gates::record_blocked_repair`]) that count as one failed repair.
pub const BLOCKED_PER_FAILURE: u32 = 10;

impl Gates {
    /// Gates that have seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The breaker of `strategy`.
    pub fn breaker(&self, strategy: &str) -> CircuitBreaker {
        self.breakers.get(strategy).copied().unwrap_or_default()
    }

    /// Every breaker that has seen a failure, by strategy.
    pub fn breakers(&self) -> Vec<(String, CircuitBreaker)> {
        let mut v: Vec<_> = self.breakers.iter().map(|(k, b)| (k.clone(), *b)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Closes the breaker of `strategy` (an operator's reset).
    pub fn reset_breaker(&mut self, strategy: &str) {
        self.breakers.remove(strategy);
    }

    /// How many repairs of `code` on `resource` failed since the last success.
    pub fn problem_failures(&self, resource: &str, code: &str) -> u32 {
        self.problem_failures
            .get(&(resource.to_string(), code.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Records one attempt's outcome: `strategy` tried on `resource`.
    pub fn record_attempt(
        &mut self,
        strategy: &str,
        resource: &str,
        now: Timestamp,
        success: bool,
        cfg: &EngineConfig,
    ) {
        self.breakers
            .entry(strategy.to_string())
            .or_default()
            .record(now, success, cfg.breaker_failures_max);
        let q = self
            .attempts
            .entry((strategy.to_string(), resource.to_string()))
            .or_default();
        q.push_back(now);
        while q.len() > cfg.strategy_rate_max as usize + 1 {
            q.pop_front();
        }
        if success {
            self.last_failure.remove(strategy);
        } else {
            self.last_failure.insert(strategy.to_string(), now);
        }
    }

    /// Records how one repair of a problem (a whole cascade, however many strategies it tried) ended: a failure
    /// counts towards `same_problem_failures_max`, a success clears the count.
    pub fn record_repair(&mut self, resource: &str, code: &str, repaired: bool) {
        let key = (resource.to_string(), code.to_string());
        if repaired {
            self.problem_failures.remove(&key);
            self.problem_blocked.remove(&key);
        } else {
            *self.problem_failures.entry(key).or_default() += 1;
        }
    }

    /// Records a repair of a problem that changed nothing because the environment refused every strategy's backup
    /// (no room, no usable directory): not a failed repair, so it is tried again once the cooldown has passed —
    /// but every [`BLOCKED_PER_FAILURE`] of them count as one failed repair, so an environment that never recovers
    /// ends in an escalation that stays for a human.
    pub fn record_blocked_repair(&mut self, resource: &str, code: &str) {
        let key = (resource.to_string(), code.to_string());
        let n = self.problem_blocked.entry(key.clone()).or_default();
        *n += 1;
        if (*n).is_multiple_of(BLOCKED_PER_FAILURE) {
            *self.problem_failures.entry(key).or_default() += 1;
        }
    }

    /// Records an attempt of `strategy` on `resource` that was blocked before it changed anything: it spaces the
    /// next try (cooldown, rate limit) but is not a failure of the strategy (its circuit breaker does not count it).
    pub fn record_blocked_attempt(
        &mut self,
        strategy: &str,
        resource: &str,
        now: Timestamp,
        cfg: &EngineConfig,
    ) {
        let q = self
            .attempts
            .entry((strategy.to_string(), resource.to_string()))
            .or_default();
        q.push_back(now);
        while q.len() > cfg.strategy_rate_max as usize + 1 {
            q.pop_front();
        }
        self.last_failure.insert(strategy.to_string(), now);
    }

    fn attempts_in_window(
        &self,
        strategy: &str,
        resource: &str,
        now: Timestamp,
        window_us: u64,
    ) -> usize {
        self.attempts
            .get(&(strategy.to_string(), resource.to_string()))
            .map(|q| {
                q.iter()
                    .filter(|&&t| now.saturating_sub(t) < window_us)
                    .count()
            })
            .unwrap_or(0)
    }
}

/// What the decision needs to know about one incident.
#[derive(Debug, Clone)]
pub struct DecideInput<'a> {
    /// The incident's crisis level.
    pub crisis: CrisisLevel,
    /// The root issue's resource.
    pub resource: &'a str,
    /// The root issue's code.
    pub code: &'a str,
    /// Strategies that can repair the root issue (any order).
    pub candidates: Vec<Candidate>,
    /// Whether an operator approved risky repairs for this incident.
    pub approved: bool,
    /// Repairs already started this cycle.
    pub repairs_started: u32,
    /// Whether another repair already holds the resource.
    pub resource_busy: bool,
    /// Whether the root issue is a problem of the environment (disk space, device speed) that can go away by itself.
    pub environmental: bool,
    /// How long ago the incident was detected (µs).
    pub age_us: u64,
    /// Now.
    pub now: Timestamp,
}

/// Decides what to do about one incident.
pub fn decide(mut input: DecideInput<'_>, gates: &Gates, cfg: &EngineConfig) -> RepairDecision {
    let dry = cfg.dry_run;
    let mut reasons = Vec::new();
    if let Some(action) = before_the_gates(&input, gates, cfg, &mut reasons) {
        return RepairDecision::new(action, reasons, dry);
    }
    let candidates = std::mem::take(&mut input.candidates);
    let gated = through_the_gates(candidates, &input, gates, cfg, &mut reasons);
    let Some(first) = gated.allowed.first() else {
        return nothing_allowed(&gated, reasons, dry);
    };
    if input.resource_busy {
        reasons.push(format!("another repair holds {}", input.resource));
        return RepairDecision::new(Action::Defer, reasons, dry);
    }
    if input.repairs_started >= cfg.max_concurrent_repairs {
        reasons.push(format!(
            "{} repairs already running (max_concurrent_repairs = {})",
            input.repairs_started, cfg.max_concurrent_repairs
        ));
        return RepairDecision::new(Action::Defer, reasons, dry);
    }
    reasons.push(format!(
        "{} is the cheapest adequate strategy ({:?}, success rate {:.2})",
        first.name, first.cost, first.success_rate
    ));
    if dry {
        reasons.push("dry run: nothing is changed".to_string());
    }
    RepairDecision {
        action: Action::Repair,
        strategy: Some(first.name.clone()),
        cascade: gated.allowed.iter().map(|c| c.name.clone()).collect(),
        confidence: first.success_rate,
        estimated_duration_us: first.estimate.duration_us,
        estimated_data_loss: first.estimate.data_loss.clone(),
        risk: first.estimate.risk,
        needs_approval: false,
        dry_run: dry,
        reasons,
    }
}

/// What is decided before any strategy is gated: a wall escalates, a problem that failed
/// `same_problem_failures_max` repairs escalates, and with no candidate the environment gets its grace, a hiccup
/// is watched and anything else escalates. `None`: the candidates go to the gates.
fn before_the_gates(
    input: &DecideInput<'_>,
    gates: &Gates,
    cfg: &EngineConfig,
    reasons: &mut Vec<String>,
) -> Option<Action> {
    if input.crisis == CrisisLevel::Wall {
        reasons.push("crisis level WALL: needs a human".to_string());
        return Some(Action::Escalate);
    }
    if input.crisis == CrisisLevel::Crisis {
        reasons.push("crisis level CRISIS: writes should stop and state be preserved".to_string());
    }
    let failed = gates.problem_failures(input.resource, input.code);
    if failed >= cfg.same_problem_failures_max {
        reasons.push(format!(
            "{} on {} failed {failed} repairs (same_problem_failures_max = {})",
            input.code, input.resource, cfg.same_problem_failures_max
        ));
        return Some(Action::Escalate);
    }
    if !input.candidates.is_empty() {
        return None;
    }
    if input.environmental && input.age_us < cfg.environment_grace_us {
        reasons.push(format!(
            "no strategy repairs {} on {}; waiting for the environment to recover ({} s of environment_grace_us = {} s left)",
            input.code,
            input.resource,
            (cfg.environment_grace_us - input.age_us) / 1_000_000,
            cfg.environment_grace_us / 1_000_000
        ));
        return Some(Action::Watch);
    }
    if input.crisis == CrisisLevel::Hiccup {
        reasons.push(format!(
            "no strategy repairs {}; transient, watching",
            input.code
        ));
        return Some(Action::Watch);
    }
    reasons.push(format!(
        "no strategy can repair {} on {}",
        input.code, input.resource
    ));
    Some(Action::Escalate)
}

/// The candidates that passed the gates, cheapest and most successful first, and how many were held back by an
/// approval or only for now (a rate limit, a cooldown).
struct Gated {
    allowed: Vec<Candidate>,
    need_approval: usize,
    temporary: usize,
}

/// Why a gate held a candidate back.
enum HeldBack {
    /// For good this time (an open breaker, a low success rate).
    Refused,
    /// For now: a rate limit or a cooldown.
    ForNow,
    /// Until an operator approves its risk.
    NeedsApproval,
}

/// Every candidate, cheapest first (then the most successful, then by name), through the gates: breaker, success
/// rate, rate limit, cooldown, risk.
fn through_the_gates(
    mut candidates: Vec<Candidate>,
    input: &DecideInput<'_>,
    gates: &Gates,
    cfg: &EngineConfig,
    reasons: &mut Vec<String>,
) -> Gated {
    candidates.sort_by(|a, b| {
        a.cost
            .cmp(&b.cost)
            .then(b.success_rate.total_cmp(&a.success_rate))
            .then(a.name.cmp(&b.name))
    });
    let mut gated = Gated {
        allowed: Vec::new(),
        need_approval: 0,
        temporary: 0,
    };
    for c in candidates {
        match gate(&c, input, gates, cfg, reasons) {
            Ok(()) => gated.allowed.push(c),
            Err(HeldBack::Refused) => {}
            Err(HeldBack::ForNow) => gated.temporary += 1,
            Err(HeldBack::NeedsApproval) => gated.need_approval += 1,
        }
    }
    gated
}

/// One candidate through the gates; each gate that holds it back says why in `reasons`.
fn gate(
    c: &Candidate,
    input: &DecideInput<'_>,
    gates: &Gates,
    cfg: &EngineConfig,
    reasons: &mut Vec<String>,
) -> Result<(), HeldBack> {
    match gates
        .breaker(&c.name)
        .state(input.now, cfg.breaker_cooldown_us)
    {
        BreakerState::Open { since } => {
            reasons.push(format!(
                "{}: circuit breaker open since {}",
                c.name,
                crate::clock::rfc3339_with_age(since, input.now)
            ));
            return Err(HeldBack::Refused);
        }
        BreakerState::HalfOpen => {
            reasons.push(format!("{}: circuit breaker half-open, one trial", c.name))
        }
        BreakerState::Closed => {}
    }
    if c.success_rate < cfg.success_rate_min {
        reasons.push(format!(
            "{}: success rate {:.2} below success_rate_min {:.2}",
            c.name, c.success_rate, cfg.success_rate_min
        ));
        return Err(HeldBack::Refused);
    }
    let recent = gates.attempts_in_window(
        &c.name,
        input.resource,
        input.now,
        cfg.strategy_rate_window_us,
    );
    if recent >= cfg.strategy_rate_max as usize {
        reasons.push(format!(
            "{}: rate limit, {recent} attempts on {} in the last {} (strategy_rate_window_us = {}, \
             strategy_rate_max = {})",
            c.name,
            input.resource,
            crate::clock::human_duration_us(cfg.strategy_rate_window_us),
            cfg.strategy_rate_window_us,
            cfg.strategy_rate_max
        ));
        return Err(HeldBack::ForNow);
    }
    if let Some(&t) = gates.last_failure.get(&c.name)
        && input.now.saturating_sub(t) < cfg.strategy_cooldown_us
    {
        reasons.push(format!(
            "{}: cooling down after a failure at {} (strategy_cooldown_us = {}, {})",
            c.name,
            crate::clock::rfc3339_with_age(t, input.now),
            cfg.strategy_cooldown_us,
            crate::clock::human_duration_us(cfg.strategy_cooldown_us)
        ));
        return Err(HeldBack::ForNow);
    }
    if c.estimate.risk > cfg.approval_risk_max && !input.approved {
        reasons.push(format!(
            "{}: risk {:.2} above approval_risk_max {:.2}, needs approval",
            c.name, c.estimate.risk, cfg.approval_risk_max
        ));
        return Err(HeldBack::NeedsApproval);
    }
    Ok(())
}

/// No candidate passed: an approval asked for, a deferral when only rate limits and cooldowns held them back, or
/// an escalation.
fn nothing_allowed(gated: &Gated, mut reasons: Vec<String>, dry: bool) -> RepairDecision {
    if gated.need_approval > 0 {
        reasons.push("every usable strategy needs an operator's approval".to_string());
        let mut d = RepairDecision::new(Action::Escalate, reasons, dry);
        d.needs_approval = true;
        return d;
    }
    if gated.temporary > 0 {
        reasons.push("every usable strategy is rate-limited or cooling down".to_string());
        return RepairDecision::new(Action::Defer, reasons, dry);
    }
    reasons.push("no strategy passes the gates".to_string());
    RepairDecision::new(Action::Escalate, reasons, dry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, cost: RepairCost, risk: f64, rate: f64) -> Candidate {
        Candidate {
            name: name.into(),
            cost,
            estimate: Estimate {
                duration_us: 1_000,
                data_loss: DataLoss::None,
                risk,
            },
            success_rate: rate,
        }
    }

    fn input(candidates: Vec<Candidate>) -> DecideInput<'static> {
        DecideInput {
            crisis: CrisisLevel::Obstacle,
            resource: "r",
            code: "c",
            candidates,
            approved: false,
            repairs_started: 0,
            resource_busy: false,
            environmental: false,
            age_us: 0,
            now: 1_000_000,
        }
    }

    #[test]
    fn cheapest_first_then_best_posterior() {
        let cfg = EngineConfig::default();
        let d = decide(
            input(vec![
                cand("rebuild", RepairCost::Rebuild, 0.1, 0.9),
                cand("inplace_a", RepairCost::InPlace, 0.1, 0.5),
                cand("inplace_b", RepairCost::InPlace, 0.1, 0.8),
            ]),
            &Gates::new(),
            &cfg,
        );
        assert_eq!(d.action, Action::Repair);
        assert_eq!(d.cascade, ["inplace_b", "inplace_a", "rebuild"]);
        assert!((d.confidence - 0.8).abs() < 1e-12);
    }

    #[test]
    fn breaker_opens_after_three_failures_then_half_opens() {
        let cfg = EngineConfig::default();
        let mut g = Gates::new();
        for _ in 0..3 {
            g.record_attempt("s", "r", 10, false, &cfg);
        }
        assert_eq!(
            g.breaker("s").state(10, cfg.breaker_cooldown_us),
            BreakerState::Open { since: 10 }
        );
        let far = 10 + cfg.breaker_cooldown_us;
        assert_eq!(
            g.breaker("s").state(far, cfg.breaker_cooldown_us),
            BreakerState::HalfOpen
        );
        g.record_attempt("s", "r", far, false, &cfg);
        assert_eq!(
            g.breaker("s").state(far, cfg.breaker_cooldown_us),
            BreakerState::Open { since: far }
        );
        g.record_attempt("s", "r", far + cfg.breaker_cooldown_us, true, &cfg);
        assert_eq!(
            g.breaker("s")
                .state(far + cfg.breaker_cooldown_us, cfg.breaker_cooldown_us),
            BreakerState::Closed
        );
        g.record_attempt("s", "r", 0, false, &cfg);
        g.reset_breaker("s");
        assert_eq!(g.breaker("s").consecutive_failures, 0);
    }

    #[test]
    fn approval_gate_and_approved_override() {
        let cfg = EngineConfig::default();
        let risky = vec![cand("risky", RepairCost::Rebuild, 0.9, 0.9)];
        let d = decide(input(risky.clone()), &Gates::new(), &cfg);
        assert_eq!(d.action, Action::Escalate);
        assert!(d.needs_approval);
        let mut i = input(risky);
        i.approved = true;
        assert_eq!(decide(i, &Gates::new(), &cfg).action, Action::Repair);
    }

    #[test]
    fn same_problem_failing_escalates_and_rate_limit_defers() {
        let cfg = EngineConfig::default();
        let mut g = Gates::new();
        // Failed attempts of one cascade are not failed repairs; failed cascades are.
        for _ in 0..cfg.same_problem_failures_max {
            g.record_attempt("other", "r", 0, false, &cfg);
        }
        let d = decide(
            input(vec![cand("s", RepairCost::InPlace, 0.0, 0.9)]),
            &g,
            &cfg,
        );
        assert_eq!(d.action, Action::Repair, "{:?}", d.reasons);
        for _ in 0..cfg.same_problem_failures_max {
            g.record_repair("r", "c", false);
        }
        let d = decide(
            input(vec![cand("s", RepairCost::InPlace, 0.0, 0.9)]),
            &g,
            &cfg,
        );
        assert_eq!(d.action, Action::Escalate);
        assert!(d.reasons[0].contains("failed 3 repairs"), "{:?}", d.reasons);

        let mut g = Gates::new();
        for _ in 0..cfg.strategy_rate_max {
            g.record_attempt("s", "r", 999_999, true, &cfg);
        }
        let d = decide(
            input(vec![cand("s", RepairCost::InPlace, 0.0, 0.9)]),
            &g,
            &cfg,
        );
        assert_eq!(d.action, Action::Defer, "{:?}", d.reasons);
        assert!(d.reasons[0].contains("rate limit"));
        // The limit is per resource: the same strategy still repairs independent damage elsewhere.
        let mut elsewhere = input(vec![cand("s", RepairCost::InPlace, 0.0, 0.9)]);
        elsewhere.resource = "another file";
        assert_eq!(decide(elsewhere, &g, &cfg).action, Action::Repair);
    }

    #[test]
    fn hiccup_without_strategy_is_watched_and_wall_escalates() {
        let cfg = EngineConfig::default();
        let mut i = input(Vec::new());
        i.crisis = CrisisLevel::Hiccup;
        assert_eq!(decide(i, &Gates::new(), &cfg).action, Action::Watch);
        assert_eq!(
            decide(input(Vec::new()), &Gates::new(), &cfg).action,
            Action::Escalate
        );
        let mut i = input(vec![cand("s", RepairCost::InPlace, 0.0, 0.9)]);
        i.crisis = CrisisLevel::Wall;
        assert_eq!(decide(i, &Gates::new(), &cfg).action, Action::Escalate);
    }

    #[test]
    fn concurrency_and_busy_resource_defer() {
        let cfg = EngineConfig::default();
        let mut i = input(vec![cand("s", RepairCost::InPlace, 0.0, 0.9)]);
        i.repairs_started = cfg.max_concurrent_repairs;
        assert_eq!(decide(i, &Gates::new(), &cfg).action, Action::Defer);
        let mut i = input(vec![cand("s", RepairCost::InPlace, 0.0, 0.9)]);
        i.resource_busy = true;
        assert_eq!(decide(i, &Gates::new(), &cfg).action, Action::Defer);
    }

    #[test]
    fn environment_problem_is_watched_for_its_grace_then_escalates() {
        let cfg = EngineConfig::default();
        let mut i = input(Vec::new());
        i.environmental = true;
        i.age_us = cfg.environment_grace_us - 1;
        let d = decide(i.clone(), &Gates::new(), &cfg);
        assert_eq!(d.action, Action::Watch, "{:?}", d.reasons);
        assert!(
            d.reasons[0].contains("environment_grace_us"),
            "{:?}",
            d.reasons
        );
        i.age_us = cfg.environment_grace_us;
        assert_eq!(decide(i, &Gates::new(), &cfg).action, Action::Escalate);
    }

    #[test]
    fn repairs_blocked_by_the_environment_are_retried_but_bounded() {
        let cfg = EngineConfig::default();
        let mut g = Gates::new();
        for _ in 0..BLOCKED_PER_FAILURE - 1 {
            g.record_blocked_repair("wal/1.seg", "block_checksum");
        }
        assert_eq!(g.problem_failures("wal/1.seg", "block_checksum"), 0);
        g.record_blocked_repair("wal/1.seg", "block_checksum");
        assert_eq!(g.problem_failures("wal/1.seg", "block_checksum"), 1);
        for _ in 0..BLOCKED_PER_FAILURE * (cfg.same_problem_failures_max - 1) {
            g.record_blocked_repair("wal/1.seg", "block_checksum");
        }
        assert_eq!(
            g.problem_failures("wal/1.seg", "block_checksum"),
            cfg.same_problem_failures_max,
            "an environment that never recovers ends in an escalation for a human"
        );
        // A blocked attempt spaces the next try but does not count against the strategy's breaker.
        for t in 0..10 {
            g.record_blocked_attempt("rebuild_from_parity", "wal/1.seg", t, &cfg);
        }
        assert_eq!(g.breaker("rebuild_from_parity"), CircuitBreaker::default());
        g.record_repair("wal/1.seg", "block_checksum", true);
        assert_eq!(g.problem_failures("wal/1.seg", "block_checksum"), 0);
    }
}
