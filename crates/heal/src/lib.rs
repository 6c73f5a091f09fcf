//! # heal — medic's self-healing engine
//!
//! Pure logic behind traits: the engine observes a [`Subject`](subject::Subject), detects anomalies and failed
//! checks, diagnoses them into incidents, decides (repair or escalate, behind safety gates), repairs through
//! [`RepairStrategy`](repair::RepairStrategy) implementations (backup → repair → validate → roll back), escalates
//! to a human with a report, and learns from every incident through a
//! [`KnowledgeBase`](learn::KnowledgeBase).
//!
//! Architecture invariant: this crate opens no file or socket, spawns no thread and never sleeps. Time comes only
//! from a [`Clock`](clock::Clock), so every behaviour runs deterministically under [`SimClock`](clock::SimClock).

pub mod cascade;
pub mod check;
pub mod clock;
pub mod config;
pub mod constraint;
pub mod decide;
pub mod detect;
pub mod diagnose;
pub mod engine;
pub mod escalate;
pub mod issue;
pub mod kpi;
pub mod learn;
pub mod observe;
pub mod repair;
pub mod schedule;
pub mod subject;
pub mod trend;

pub use check::{CheckOutcome, HealthCheck, HealthState, Tier};
pub use clock::{Clock, SimClock, SystemClock, Timestamp};
pub use detect::Detector;
pub use issue::{CrisisLevel, Issue, IssueKind, Location, Severity};
pub use learn::{IncidentRecord, KnowledgeBase};
pub use repair::{DataLoss, Estimate, RepairCost, RepairError, RepairStrategy};
pub use subject::{MetricKind, Sample, Subject};
