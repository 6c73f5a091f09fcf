//! Diagnosis: classifies each [`Issue`] into a [`CrisisLevel`] and a [`Severity`], correlates issues that share a
//! cause (same resource within a window, a known cause pair such as a latency spike and index fragmentation, or
//! metric anomalies within one window: the detectors see symptoms, and symptoms that appear together most likely
//! share a cause — a write burst moves the commit, record and operation rates at once) into one incident, names a root-cause hypothesis with the evidence for it, estimates the blast radius and
//! computes the priority incidents are handled in.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::detect::SeverityCutoffs;
use crate::issue::{CrisisLevel, Issue, IssueKind, Severity};

/// A known causal link between two issue codes: when both are seen within the correlation window they form one
/// incident whose root cause is the `cause` issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CausePair {
    /// The code of the symptom, e.g. `latency_anomaly`.
    pub effect: String,
    /// The code of the cause, e.g. `index_fragmentation`.
    pub cause: String,
    /// The hypothesis in one line, e.g. `a fragmented index slows queries`.
    pub hypothesis: String,
}

impl CausePair {
    /// A pair.
    pub fn new(effect: &str, cause: &str, hypothesis: &str) -> Self {
        Self {
            effect: effect.to_string(),
            cause: cause.to_string(),
            hypothesis: hypothesis.to_string(),
        }
    }

    /// The pairs medic knows by default.
    pub fn defaults() -> Vec<CausePair> {
        vec![
            CausePair::new(
                "latency_anomaly",
                "index_fragmentation",
                "a fragmented index slows queries",
            ),
            CausePair::new(
                "latency_anomaly",
                "disk_space_low",
                "a nearly full disk slows writes",
            ),
            CausePair::new(
                "latency_anomaly",
                "index_stale",
                "a stale index forces slower fallbacks",
            ),
            CausePair::new(
                "check_failed",
                "block_checksum",
                "a damaged block fails the check that reads it",
            ),
            CausePair::new(
                "operation_error",
                "disk_space_low",
                "writes fail because the disk is full",
            ),
        ]
    }

    fn links(&self, a: &str, b: &str) -> bool {
        (self.effect == a && self.cause == b) || (self.effect == b && self.cause == a)
    }
}

/// How one issue should be handled and how bad it is, before correlation. An anomaly's severity comes from its score
/// through the configured cut-offs ([`AnomalyLevel::severity`]).
pub fn classify(issue: &Issue, cutoffs: &SeverityCutoffs) -> (CrisisLevel, Severity) {
    if issue.data_at_risk {
        return (CrisisLevel::Crisis, Severity::Sev0);
    }
    match issue.kind {
        IssueKind::Integrity => (CrisisLevel::Obstacle, Severity::Sev1),
        IssueKind::Resource => (CrisisLevel::Obstacle, Severity::Sev2),
        IssueKind::ConstraintBreach if issue.score >= 1.0 => {
            (CrisisLevel::Obstacle, Severity::Sev1)
        }
        IssueKind::ConstraintBreach => (CrisisLevel::Obstacle, Severity::Sev2),
        IssueKind::StaleDerived => (CrisisLevel::Obstacle, Severity::Sev2),
        IssueKind::CheckFailed if issue.code == "check_timeout" => {
            (CrisisLevel::Hiccup, Severity::Sev3)
        }
        IssueKind::CheckFailed => (CrisisLevel::Obstacle, Severity::Sev2),
        IssueKind::OperationError => (CrisisLevel::Hiccup, Severity::Sev3),
        IssueKind::Anomaly => (
            CrisisLevel::Hiccup,
            cutoffs
                .level(issue.score)
                .severity()
                .unwrap_or(Severity::Sev3),
        ),
    }
}

/// The order incidents are handled in: higher first. Severity dominates, then crisis level, then the worst score,
/// then the number of issues.
pub fn priority(severity: Severity, crisis: CrisisLevel, score_max: f64, n_issues: usize) -> f64 {
    let sev = match severity {
        Severity::Sev0 => 4000.0,
        Severity::Sev1 => 3000.0,
        Severity::Sev2 => 2000.0,
        Severity::Sev3 => 1000.0,
    };
    let crisis = match crisis {
        CrisisLevel::Hiccup => 0.0,
        CrisisLevel::Obstacle => 100.0,
        CrisisLevel::Wall => 200.0,
        CrisisLevel::Crisis => 300.0,
    };
    sev + crisis + 10.0 * score_max.clamp(0.0, 1.0) + (n_issues.min(9) as f64)
}

/// Whether `new` belongs to an incident holding `issues` whose latest issue was at `last_at`: within `window_us`,
/// and on the same resource, linked by a known cause pair, or both metric anomalies (one cause, several metrics).
pub fn correlates(
    issues: &[Issue],
    last_at: Timestamp,
    new: &Issue,
    window_us: u64,
    known: &[CausePair],
) -> bool {
    if new.detected_at.saturating_sub(last_at) > window_us {
        return false;
    }
    issues.iter().any(|i| {
        i.resource == new.resource
            || known.iter().any(|p| p.links(&i.code, &new.code))
            || same_operation_latency(i, new)
            || (i.kind == IssueKind::Anomaly && new.kind == IssueKind::Anomaly)
    })
}

/// Latency anomalies of one operation (`put_latency_p50_us`, `put_latency_p99_us`, `put_latency_last_us`): its
/// quantiles move together, so they are one problem, not one incident per quantile.
fn same_operation_latency(a: &Issue, b: &Issue) -> bool {
    let op = |i: &Issue| {
        (i.kind == IssueKind::Anomaly)
            .then(|| {
                i.resource
                    .split_once("_latency")
                    .map(|(op, _)| op.to_owned())
            })
            .flatten()
    };
    op(a).is_some_and(|x| Some(x) == op(b))
}

/// The hypothesis for a group made only of anomalies on two or more metrics: one cause moved them together. When
/// every one of them rose and a rate (`*_per_s`) is among them, the cause is most likely a burst of load; when every
/// one fell, a drop of load.
fn anomaly_group(issues: &[Issue]) -> Option<String> {
    if issues.iter().any(|i| i.kind != IssueKind::Anomaly) {
        return None;
    }
    let metrics: BTreeSet<&str> = issues.iter().map(|i| i.resource.as_str()).collect();
    if metrics.len() < 2 {
        return None;
    }
    let all = |d: &str| {
        issues
            .iter()
            .all(|i| i.evidence.iter().any(|(k, v)| k == "direction" && v == d))
    };
    let rate = metrics.iter().any(|m| m.ends_with("_per_s"));
    let list: Vec<&str> = metrics.iter().copied().collect();
    let cause = if rate && all("rose") {
        "a burst of load (every one rose, rates among them: e.g. a write burst after idle)"
    } else if rate && all("fell") {
        "a drop of load (every one fell, rates among them)"
    } else {
        "one cause seen through several metrics"
    };
    Some(format!(
        "{} metrics moved together within the correlation window ({}): {cause}",
        metrics.len(),
        list.join(", ")
    ))
}

/// What diagnosis concluded about a group of correlated issues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The worst crisis level.
    pub crisis: CrisisLevel,
    /// The worst severity, one step worse when three or more resources are affected.
    pub severity: Severity,
    /// Handling order, higher first.
    pub priority: f64,
    /// Index of the issue believed to be the root cause; repairs target it.
    pub root_issue: usize,
    /// The root-cause hypothesis, one line.
    pub root_cause: String,
    /// The evidence for the hypothesis, one line each.
    pub evidence: Vec<String>,
    /// What is affected: resources, files, log ranges.
    pub blast_radius: Vec<String>,
}

fn worse_severity(s: Severity) -> Severity {
    match s {
        Severity::Sev0 | Severity::Sev1 => Severity::Sev0,
        Severity::Sev2 => Severity::Sev1,
        Severity::Sev3 => Severity::Sev2,
    }
}

/// Diagnoses a non-empty group of correlated issues. An empty group diagnoses as a SEV3 hiccup with no cause.
pub fn diagnose(issues: &[Issue], known: &[CausePair], cutoffs: &SeverityCutoffs) -> Diagnosis {
    let worst = worst_of(issues, cutoffs);
    let mut root_issue = worst.index;
    let mut root_cause = issues
        .get(worst.index)
        .map(|i| format!("{} on {}: {}", i.code, i.resource, i.summary))
        .unwrap_or_else(|| "no issue".to_string());
    let mut evidence = Vec::new();
    if let Some(explained) = known_cause(issues, known) {
        root_issue = explained.index;
        root_cause = explained.root_cause;
        evidence = explained.evidence;
    } else if let Some(group) = anomaly_group(issues) {
        root_cause = group;
    }
    for issue in issues {
        for (k, v) in &issue.evidence {
            evidence.push(format!("{} {}: {k} = {v}", issue.code, issue.resource));
        }
    }
    // Many symptoms of one cause are not a wider problem: only resources named by other issues widen it.
    let affected: BTreeSet<&str> = issues
        .iter()
        .filter(|i| i.kind != IssueKind::Anomaly)
        .map(|i| i.resource.as_str())
        .collect();
    let severity = if affected.len() >= 3 {
        worse_severity(worst.severity)
    } else {
        worst.severity
    };
    Diagnosis {
        crisis: worst.crisis,
        severity,
        priority: priority(severity, worst.crisis, worst.score_max, issues.len()),
        root_issue,
        root_cause,
        evidence,
        blast_radius: blast_radius(issues),
    }
}

/// The issues' worst crisis level, severity and score, and the index of the worst issue (severity first, then
/// crisis level, then score; the first on a tie).
struct Worst {
    index: usize,
    crisis: CrisisLevel,
    severity: Severity,
    score_max: f64,
}

fn worst_of(issues: &[Issue], cutoffs: &SeverityCutoffs) -> Worst {
    let mut w = Worst {
        index: 0,
        crisis: CrisisLevel::Hiccup,
        severity: Severity::Sev3,
        score_max: 0.0,
    };
    let mut worst_key = (Severity::Sev3, CrisisLevel::Hiccup, 0.0f64);
    for (idx, issue) in issues.iter().enumerate() {
        let (c, s) = classify(issue, cutoffs);
        w.crisis = w.crisis.max(c);
        w.severity = w.severity.min(s);
        w.score_max = w.score_max.max(issue.score);
        let better = s < worst_key.0
            || (s == worst_key.0
                && (c > worst_key.1 || (c == worst_key.1 && issue.score > worst_key.2)));
        if idx == 0 || better {
            w.index = idx;
            worst_key = (s, c, issue.score);
        }
    }
    w
}

/// A root cause a known cause pair explains: the cause's index, the hypothesis and the evidence for it.
struct Explained {
    index: usize,
    root_cause: String,
    evidence: Vec<String>,
}

/// The first known pair (in `known`'s order) whose cause and effect are both among the issues.
fn known_cause(issues: &[Issue], known: &[CausePair]) -> Option<Explained> {
    for pair in known {
        let Some(effect) = issues.iter().find(|i| i.code == pair.effect) else {
            continue;
        };
        let Some((ci, cause)) = issues
            .iter()
            .enumerate()
            .find(|(_, i)| i.code == pair.cause)
        else {
            continue;
        };
        return Some(Explained {
            index: ci,
            root_cause: format!(
                "{} ({} on {} explains {} on {})",
                pair.hypothesis, cause.code, cause.resource, effect.code, effect.resource
            ),
            evidence: vec![
                format!(
                    "symptom: {} on {} at {} µs: {}",
                    effect.code, effect.resource, effect.detected_at, effect.summary
                ),
                format!(
                    "cause: {} on {} at {} µs: {}",
                    cause.code, cause.resource, cause.detected_at, cause.summary
                ),
                format!("known cause pair: {} -> {}", pair.cause, pair.effect),
            ],
        });
    }
    None
}

/// What the issues touch: each resource once, then each file range and LSN range once.
fn blast_radius(issues: &[Issue]) -> Vec<String> {
    let mut resources = BTreeSet::new();
    let mut radius = Vec::new();
    for issue in issues {
        if resources.insert(issue.resource.clone()) {
            radius.push(format!("resource {}", issue.resource));
        }
    }
    let mut places = BTreeSet::new();
    for issue in issues {
        let loc = &issue.location;
        if let Some(file) = &loc.file {
            let mut line = format!("file {file}");
            if let (Some(off), Some(len)) = (loc.offset, loc.len) {
                line.push_str(&format!(" bytes {off}..{}", off.saturating_add(len)));
            }
            if places.insert(line.clone()) {
                radius.push(line);
            }
        }
        if let Some((a, b)) = loc.lsn_range {
            let line = format!(
                "records LSN {a}..={b} ({} records)",
                b.saturating_sub(a).saturating_add(1)
            );
            if places.insert(line.clone()) {
                radius.push(line);
            }
        }
    }
    radius
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::Location;

    fn issue(kind: IssueKind, code: &str, resource: &str, at: Timestamp) -> Issue {
        Issue::new(kind, code, resource, format!("{code} seen"), "test", at)
    }

    #[test]
    fn classification_table() {
        let cases = [
            (
                issue(IssueKind::Integrity, "block_checksum", "wal", 0).data_at_risk(),
                CrisisLevel::Crisis,
                Severity::Sev0,
            ),
            (
                issue(IssueKind::Integrity, "block_checksum", "wal", 0),
                CrisisLevel::Obstacle,
                Severity::Sev1,
            ),
            (
                issue(IssueKind::ConstraintBreach, "disk_space_low", "disk", 0).with_score(1.0),
                CrisisLevel::Obstacle,
                Severity::Sev1,
            ),
            (
                issue(IssueKind::ConstraintBreach, "disk_space_low", "disk", 0).with_score(0.8),
                CrisisLevel::Obstacle,
                Severity::Sev2,
            ),
            (
                issue(IssueKind::CheckFailed, "check_timeout", "c", 0),
                CrisisLevel::Hiccup,
                Severity::Sev3,
            ),
            (
                issue(IssueKind::Anomaly, "latency_anomaly", "m", 0).with_score(0.85),
                CrisisLevel::Hiccup,
                Severity::Sev3,
            ),
            (
                issue(IssueKind::Anomaly, "latency_anomaly", "m", 0).with_score(0.9),
                CrisisLevel::Hiccup,
                Severity::Sev2,
            ),
        ];
        for (i, c, s) in cases {
            assert_eq!(classify(&i, &SeverityCutoffs::default()), (c, s), "{i:?}");
        }
        // The anomaly's severity follows the configured cut-offs.
        let strict = SeverityCutoffs {
            critical: 0.99,
            ..SeverityCutoffs::default()
        };
        let anomaly = issue(IssueKind::Anomaly, "latency_anomaly", "m", 0).with_score(0.95);
        assert_eq!(classify(&anomaly, &strict).1, Severity::Sev3);
        assert_eq!(
            classify(&anomaly, &SeverityCutoffs::default()).1,
            Severity::Sev2
        );
    }

    #[test]
    fn priority_orders_by_severity_then_crisis() {
        let a = priority(Severity::Sev1, CrisisLevel::Hiccup, 0.1, 1);
        let b = priority(Severity::Sev2, CrisisLevel::Crisis, 1.0, 9);
        let c = priority(Severity::Sev2, CrisisLevel::Obstacle, 1.0, 9);
        assert!(a > b && b > c);
    }

    #[test]
    fn anomalies_in_one_window_are_one_incident() {
        let existing = vec![issue(
            IssueKind::Anomaly,
            "latency_anomaly",
            "put_latency_p99_us",
            100,
        )];
        let p50 = issue(
            IssueKind::Anomaly,
            "latency_anomaly",
            "put_latency_p50_us",
            120,
        );
        assert!(correlates(&existing, 100, &p50, 60, &[]));
        let get = issue(
            IssueKind::Anomaly,
            "latency_anomaly",
            "get_latency_p99_us",
            120,
        );
        assert!(
            correlates(&existing, 100, &get, 60, &[]),
            "another operation's anomaly in the same window: one cause, several metrics"
        );
        assert!(
            !correlates(&existing, 100, &get, 10, &[]),
            "outside the window"
        );
        let breach = issue(
            IssueKind::ConstraintBreach,
            "bound",
            "put_latency_p50_us_bound",
            120,
        );
        assert!(
            !correlates(&existing, 100, &breach, 60, &[]),
            "not an anomaly"
        );
    }

    #[test]
    fn correlation_by_resource_and_cause_pair_within_window() {
        let known = CausePair::defaults();
        let existing = vec![issue(
            IssueKind::Anomaly,
            "latency_anomaly",
            "search_latency_p99_us",
            100,
        )];
        let frag = issue(
            IssueKind::StaleDerived,
            "index_fragmentation",
            "text_index",
            150,
        );
        assert!(correlates(&existing, 100, &frag, 60, &known));
        assert!(
            !correlates(&existing, 100, &frag, 10, &known),
            "outside the window"
        );
        let other = issue(IssueKind::Integrity, "block_checksum", "wal/1.seg", 150);
        assert!(!correlates(&existing, 100, &other, 60, &known), "unrelated");
        let same = issue(
            IssueKind::Anomaly,
            "latency_anomaly",
            "search_latency_p99_us",
            150,
        );
        assert!(correlates(&existing, 100, &same, 60, &known));
    }

    #[test]
    fn root_cause_from_known_pair_with_evidence() {
        let issues = vec![
            issue(
                IssueKind::Anomaly,
                "latency_anomaly",
                "search_latency_p99_us",
                100,
            )
            .with_score(0.97),
            issue(
                IssueKind::StaleDerived,
                "index_fragmentation",
                "text_index",
                150,
            )
            .evidence("fragmentation", "0.62"),
        ];
        let d = diagnose(&issues, &CausePair::defaults(), &SeverityCutoffs::default());
        assert_eq!(d.root_issue, 1);
        assert!(
            d.root_cause.contains("a fragmented index slows queries"),
            "{}",
            d.root_cause
        );
        assert!(
            d.evidence
                .iter()
                .any(|e| e.contains("symptom: latency_anomaly"))
        );
        assert!(
            d.evidence
                .iter()
                .any(|e| e.contains("fragmentation = 0.62"))
        );
        assert_eq!(d.severity, Severity::Sev2);
        assert_eq!(d.crisis, CrisisLevel::Obstacle);
    }

    #[test]
    fn blast_radius_lists_resources_files_and_records() {
        let issues = vec![
            issue(IssueKind::Integrity, "block_checksum", "wal", 1).at(Location {
                file: Some("wal/00000003.seg".into()),
                offset: Some(4096),
                len: Some(4096),
                lsn_range: Some((10, 19)),
            }),
            issue(IssueKind::StaleDerived, "index_stale", "text_index", 2),
            issue(IssueKind::StaleDerived, "index_stale", "vector_index", 3),
        ];
        let d = diagnose(&issues, &[], &SeverityCutoffs::default());
        assert_eq!(
            d.root_issue, 0,
            "the worst issue is the root without a known pair"
        );
        assert!(
            d.blast_radius
                .contains(&"file wal/00000003.seg bytes 4096..8192".to_string()),
            "{:?}",
            d.blast_radius
        );
        assert!(
            d.blast_radius
                .contains(&"records LSN 10..=19 (10 records)".to_string())
        );
        assert_eq!(
            d.blast_radius
                .iter()
                .filter(|l| l.starts_with("resource"))
                .count(),
            3
        );
        assert_eq!(
            d.severity,
            Severity::Sev0,
            "three resources make a SEV1 one step worse"
        );
    }
}
