//! Key performance indicators of the healing engine, computed from [`IncidentRecord`]s: MTTD, MTTR,
//! auto-remediation rate, repair success rate, rollback rate and false-positive rate. A rate whose denominator is
//! zero is `None` (serialised as `null`), not a made-up 0.

use serde::{Deserialize, Serialize};

use crate::learn::{AttemptOutcome, IncidentRecord, Resolution};

/// KPIs over a set of incident records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Kpis {
    /// Records counted.
    pub incidents: u64,
    /// Still open.
    pub open: u64,
    /// Repaired without a human: auto-repaired, never escalated, no approval asked for.
    pub auto_repaired: u64,
    /// Handed to a human: escalated or awaiting an approval at some point, or closed by an operator, whatever they
    /// closed as later (a false positive excepted).
    pub escalated: u64,
    /// Went away by themselves, never escalated.
    pub self_resolved: u64,
    /// Marked false positives.
    pub false_positives: u64,
    /// Repair attempts that changed something (dry runs excluded).
    pub attempts: u64,
    /// Attempts that repaired and validated.
    pub attempts_succeeded: u64,
    /// Attempts whose validation failed and were rolled back.
    pub attempts_rolled_back: u64,
    /// Mean time to detect over records that are not false positives, µs.
    pub mttd_us: Option<f64>,
    /// Mean time to repair over the records repaired without a human, µs (detection to resolution).
    pub mttr_us: Option<f64>,
    /// auto-repaired / (auto-repaired + escalated): the share of incidents needing action that needed no human.
    pub auto_remediation_rate: Option<f64>,
    /// Succeeded attempts / attempts.
    pub repair_success_rate: Option<f64>,
    /// Rolled-back attempts / attempts.
    pub rollback_rate: Option<f64>,
    /// False positives / incidents.
    pub false_positive_rate: Option<f64>,
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

impl Kpis {
    /// Computes the KPIs of `records`.
    pub fn from_records(records: &[IncidentRecord]) -> Self {
        let mut k = Kpis::default();
        let (mut ttd_sum, mut ttd_n, mut ttr_sum, mut ttr_n) = (0f64, 0u64, 0f64, 0u64);
        for r in records {
            k.incidents += 1;
            // Whatever it closed as, an incident a human was asked for (an escalation, an approval) or that an
            // operator closed counts as escalated: the auto-remediation rate is the share repaired without one.
            if r.needed_a_human() {
                k.escalated += 1;
            } else {
                match r.resolution {
                    Resolution::Open => k.open += 1,
                    Resolution::AutoRepaired => k.auto_repaired += 1,
                    Resolution::SelfResolved => k.self_resolved += 1,
                    Resolution::FalsePositive => k.false_positives += 1,
                    Resolution::Escalated | Resolution::Resolved => k.escalated += 1,
                }
            }
            if r.resolution != Resolution::FalsePositive {
                ttd_sum += r.time_to_detect_us() as f64;
                ttd_n += 1;
            }
            if let Some(t) = r.time_to_repair_us() {
                ttr_sum += t as f64;
                ttr_n += 1;
            }
            for a in &r.attempts {
                match a.outcome {
                    AttemptOutcome::DryRun => continue,
                    AttemptOutcome::Succeeded => k.attempts_succeeded += 1,
                    AttemptOutcome::RolledBack => k.attempts_rolled_back += 1,
                    AttemptOutcome::Failed => {}
                }
                k.attempts += 1;
            }
        }
        k.mttd_us = (ttd_n > 0).then(|| ttd_sum / ttd_n as f64);
        k.mttr_us = (ttr_n > 0).then(|| ttr_sum / ttr_n as f64);
        k.auto_remediation_rate = ratio(k.auto_repaired, k.auto_repaired + k.escalated);
        k.repair_success_rate = ratio(k.attempts_succeeded, k.attempts);
        k.rollback_rate = ratio(k.attempts_rolled_back, k.attempts);
        k.false_positive_rate = ratio(k.false_positives, k.incidents);
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{CrisisLevel, Severity};
    use crate::learn::AttemptRecord;
    use crate::repair::DataLoss;

    fn rec(
        resolution: Resolution,
        started: u64,
        detected: u64,
        resolved: Option<u64>,
        outcomes: &[AttemptOutcome],
    ) -> IncidentRecord {
        IncidentRecord {
            id: 1,
            started_at: started,
            detected_at: detected,
            resolved_at: resolved,
            issues: Vec::new(),
            crisis: CrisisLevel::Obstacle,
            severity: Severity::Sev2,
            root_cause: String::new(),
            blast_radius: Vec::new(),
            decision: String::new(),
            attempts: outcomes
                .iter()
                .map(|&outcome| AttemptRecord {
                    strategy: "s".into(),
                    started_at: 0,
                    duration_us: 0,
                    outcome,
                    notes: Vec::new(),
                    data_loss: DataLoss::None,
                })
                .collect(),
            resolution,
            report_markdown: None,
        }
    }

    /// An incident escalated to a human that later closed by itself, and a repair an operator approved, are not
    /// remediated automatically: both count as escalated, and the rate and MTTR leave them out.
    #[test]
    fn an_incident_that_needed_a_human_is_not_auto_remediated() {
        use AttemptOutcome::*;
        let report = Some("escalated".to_string());
        let mut escalated_then_gone = rec(Resolution::SelfResolved, 0, 10, Some(1_000), &[]);
        escalated_then_gone.report_markdown = report.clone();
        let mut approved = rec(Resolution::AutoRepaired, 0, 10, Some(5_010), &[Succeeded]);
        approved.report_markdown = report.clone();
        let mut awaiting = rec(Resolution::Open, 0, 10, None, &[]);
        awaiting.report_markdown = report.clone();
        let mut judged_false = rec(Resolution::FalsePositive, 0, 10, Some(20), &[]);
        judged_false.report_markdown = report;
        let records = vec![
            rec(Resolution::AutoRepaired, 0, 10, Some(110), &[Succeeded]),
            rec(Resolution::SelfResolved, 0, 10, Some(50), &[]),
            escalated_then_gone,
            approved,
            awaiting,
            judged_false,
        ];
        let k = Kpis::from_records(&records);
        assert_eq!(
            (
                k.auto_repaired,
                k.escalated,
                k.self_resolved,
                k.open,
                k.false_positives
            ),
            (1, 3, 1, 0, 1)
        );
        assert_eq!(
            k.open + k.auto_repaired + k.escalated + k.self_resolved + k.false_positives,
            k.incidents,
            "every incident counted once"
        );
        assert_eq!(k.auto_remediation_rate, Some(0.25));
        assert_eq!(
            k.mttr_us,
            Some(100.0),
            "the approved repair's wait is not MTTR"
        );
    }

    #[test]
    fn kpis_from_records() {
        use AttemptOutcome::*;
        let records = vec![
            rec(Resolution::AutoRepaired, 0, 10, Some(110), &[Succeeded]),
            rec(
                Resolution::AutoRepaired,
                0,
                30,
                Some(330),
                &[RolledBack, Succeeded],
            ),
            rec(Resolution::Escalated, 0, 20, None, &[Failed, RolledBack]),
            rec(Resolution::FalsePositive, 0, 1_000, Some(2_000), &[DryRun]),
        ];
        let k = Kpis::from_records(&records);
        assert_eq!(
            (k.incidents, k.auto_repaired, k.escalated, k.false_positives),
            (4, 2, 1, 1)
        );
        assert_eq!(k.mttd_us, Some(20.0));
        assert_eq!(k.mttr_us, Some(200.0));
        assert_eq!(k.auto_remediation_rate, Some(2.0 / 3.0));
        assert_eq!(k.attempts, 5);
        assert_eq!(k.repair_success_rate, Some(0.4));
        assert_eq!(k.rollback_rate, Some(0.4));
        assert_eq!(k.false_positive_rate, Some(0.25));
        let empty = Kpis::from_records(&[]);
        assert_eq!(empty.mttr_us, None);
        assert_eq!(
            serde_json::to_value(&empty).unwrap()["repair_success_rate"],
            serde_json::Value::Null
        );
    }
}
