//! Constraints: named bounds on metrics (free disk above a floor, WAL size below a ceiling, latency inside a band),
//! evaluated into a level (`Ok`, `Warning`, `Critical`) and a utilisation that says how close the value is to
//! breaking the bound.
//!
//! # Utilisation, precisely
//! Utilisation `u` is 0 far inside the bounds, exactly 1 at a bound, above 1 beyond it:
//! - **Upper bound only** (`value ≤ upper`): `u = 1 - (upper - value) / headroom`, floored at 0.
//! - **Lower bound only** (`value ≥ lower`): `u = 1 - (value - lower) / headroom`, floored at 0.
//!   `headroom` is the distance from the bound at which utilisation reaches 0; it defaults to `|bound|` (or 1 when
//!   the bound is 0). So with an upper bound of 100 and the default headroom, `u = value / 100`; with a lower bound
//!   of 1 GiB of free disk, `u` is 0 at 2 GiB free, 0.5 at 1.5 GiB, 1 at 1 GiB.
//! - **Both bounds** (`lower ≤ value ≤ upper`): `u = |value - mid| / half`, where `mid` is the middle of the band
//!   and `half` its half-width (`headroom` is not used). For a zero-width band (`lower == upper`) `u` is 1 at the
//!   bound and the value is breached anywhere else.
//!
//! `u` is capped at [`UTILIZATION_MAX`] so that it is always finite.
//!
//! # Level
//! - `Critical` when the value is outside the bounds (a bound itself is inside), or `u ≥ critical_fraction`.
//! - `Warning` when `u ≥ warning_fraction`, or the value is NaN (it cannot be checked), or the constraint itself is
//!   invalid (see [`Constraint::validate`]).
//! - `Ok` otherwise.
//!
//! With the usual fractions (≤ 1) a value exactly at a bound is therefore `Critical` but not breached.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::issue::{Issue, IssueKind};

/// The largest utilisation reported (a value far beyond a bound, or any value off a zero-width band).
pub const UTILIZATION_MAX: f64 = 1e6;
/// Longest constraint or metric name, in bytes.
pub const CONSTRAINT_NAME_BYTES_MAX: usize = 128;

/// A named bound on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraint {
    /// A stable name, e.g. `disk_free_floor`.
    pub name: String,
    /// The metric it watches, e.g. `disk_free_bytes`.
    pub metric: String,
    /// The value must stay at or above this.
    #[serde(default)]
    pub lower: Option<f64>,
    /// The value must stay at or below this.
    #[serde(default)]
    pub upper: Option<f64>,
    /// Utilisation at which the level becomes `Warning`, in (0, critical_fraction].
    #[serde(default = "default_warning_fraction")]
    pub warning_fraction: f64,
    /// Utilisation at which the level becomes `Critical`, in [warning_fraction, 1].
    #[serde(default = "default_critical_fraction")]
    pub critical_fraction: f64,
    /// Distance from a one-sided bound at which utilisation is 0; `None` means `|bound|` (1 for a bound of 0).
    #[serde(default)]
    pub headroom: Option<f64>,
    /// Whether a repair strategy may fix a breach without a human. When false (the default) the engine tries no
    /// strategy on a breach of this constraint and escalates it.
    #[serde(default)]
    pub auto_fix_available: bool,
}

fn default_warning_fraction() -> f64 {
    0.8
}

fn default_critical_fraction() -> f64 {
    0.95
}

/// How a constraint stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintLevel {
    /// Comfortably inside the bounds.
    Ok,
    /// Getting close, or cannot be checked.
    Warning,
    /// At or beyond a bound, or very close.
    Critical,
}

/// The outcome of evaluating a constraint on one value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConstraintStatus {
    /// The level.
    pub level: ConstraintLevel,
    /// How close to the bound: 0 far inside, 1 at a bound, above 1 beyond (finite, at most [`UTILIZATION_MAX`]).
    pub utilization: f64,
    /// Whether the value is outside the bounds.
    pub breached: bool,
    /// One line for a human: name, metric, value, bounds, utilisation.
    pub message: String,
}

/// Why a constraint is not well formed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConstraintError {
    /// Neither bound is set.
    #[error("constraint {name:?} has neither a lower nor an upper bound")]
    NoBound {
        /// The constraint.
        name: String,
    },
    /// A bound or the headroom is NaN or infinite.
    #[error("constraint {name:?}: {field} is {value}, which is not a finite number")]
    NotFinite {
        /// The constraint.
        name: String,
        /// Which field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// `lower > upper`.
    #[error("constraint {name:?}: lower bound {lower} is above upper bound {upper}")]
    Inverted {
        /// The constraint.
        name: String,
        /// Lower bound.
        lower: f64,
        /// Upper bound.
        upper: f64,
    },
    /// The fractions are not `0 < warning_fraction ≤ critical_fraction ≤ 1`.
    #[error(
        "constraint {name:?}: need 0 < warning_fraction ({warning}) <= critical_fraction ({critical}) <= 1"
    )]
    Fractions {
        /// The constraint.
        name: String,
        /// warning_fraction.
        warning: f64,
        /// critical_fraction.
        critical: f64,
    },
    /// The headroom is not positive.
    #[error("constraint {name:?}: headroom {headroom} must be above 0")]
    Headroom {
        /// The constraint.
        name: String,
        /// The headroom.
        headroom: f64,
    },
    /// The name or metric is empty or longer than [`CONSTRAINT_NAME_BYTES_MAX`].
    #[error(
        "constraint {name:?}: {field} must be 1..={max} bytes (constraint_name_bytes_max), is {len}"
    )]
    NameLength {
        /// The constraint (cut to the limit).
        name: String,
        /// `name` or `metric`.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl Constraint {
    /// A constraint with the default fractions (warning 0.8, critical 0.95), default headroom, no auto-fix.
    pub fn new(
        name: impl Into<String>,
        metric: impl Into<String>,
        lower: Option<f64>,
        upper: Option<f64>,
    ) -> Self {
        Self {
            name: name.into(),
            metric: metric.into(),
            lower,
            upper,
            warning_fraction: default_warning_fraction(),
            critical_fraction: default_critical_fraction(),
            headroom: None,
            auto_fix_available: false,
        }
    }

    /// Checks that the constraint is well formed. Call it when loading configuration.
    pub fn validate(&self) -> Result<(), ConstraintError> {
        let name = || {
            let mut cut = self.name.len().min(CONSTRAINT_NAME_BYTES_MAX);
            while !self.name.is_char_boundary(cut) {
                cut -= 1;
            }
            self.name[..cut].to_string()
        };
        for (field, text) in [("name", &self.name), ("metric", &self.metric)] {
            if text.is_empty() || text.len() > CONSTRAINT_NAME_BYTES_MAX {
                return Err(ConstraintError::NameLength {
                    name: name(),
                    field,
                    len: text.len(),
                    max: CONSTRAINT_NAME_BYTES_MAX,
                });
            }
        }
        if self.lower.is_none() && self.upper.is_none() {
            return Err(ConstraintError::NoBound { name: name() });
        }
        for (field, value) in [
            ("lower", self.lower),
            ("upper", self.upper),
            ("headroom", self.headroom),
        ] {
            if let Some(v) = value
                && !v.is_finite()
            {
                return Err(ConstraintError::NotFinite {
                    name: name(),
                    field,
                    value: v,
                });
            }
        }
        if let (Some(lower), Some(upper)) = (self.lower, self.upper)
            && lower > upper
        {
            return Err(ConstraintError::Inverted {
                name: name(),
                lower,
                upper,
            });
        }
        let (w, c) = (self.warning_fraction, self.critical_fraction);
        if !(w > 0.0 && w <= c && c <= 1.0) {
            return Err(ConstraintError::Fractions {
                name: name(),
                warning: w,
                critical: c,
            });
        }
        if let Some(h) = self.headroom
            && h <= 0.0
        {
            return Err(ConstraintError::Headroom {
                name: name(),
                headroom: h,
            });
        }
        Ok(())
    }

    fn headroom_for(&self, bound: f64) -> f64 {
        match self.headroom {
            Some(h) => h,
            None if bound == 0.0 => 1.0,
            None => bound.abs(),
        }
    }

    /// Utilisation and whether the value is outside the bounds; assumes a valid constraint and a non-NaN value.
    fn utilization(&self, value: f64) -> (f64, bool) {
        let (u, breached) = match (self.lower, self.upper) {
            (Some(lower), Some(upper)) => {
                let breached = value < lower || value > upper;
                let half = upper / 2.0 - lower / 2.0;
                if half == 0.0 {
                    (if breached { UTILIZATION_MAX } else { 1.0 }, breached)
                } else {
                    let mid = lower / 2.0 + upper / 2.0;
                    ((value - mid).abs() / half, breached)
                }
            }
            (None, Some(upper)) => (
                1.0 - (upper - value) / self.headroom_for(upper),
                value > upper,
            ),
            (Some(lower), None) => (
                1.0 - (value - lower) / self.headroom_for(lower),
                value < lower,
            ),
            (None, None) => (0.0, false),
        };
        let u = if u.is_nan() {
            if breached { UTILIZATION_MAX } else { 0.0 }
        } else {
            u.clamp(0.0, UTILIZATION_MAX)
        };
        (u, breached)
    }

    fn bounds_text(&self) -> String {
        match (self.lower, self.upper) {
            (Some(l), Some(u)) => format!("[{l}, {u}]"),
            (Some(l), None) => format!(">= {l}"),
            (None, Some(u)) => format!("<= {u}"),
            (None, None) => "no bounds".to_string(),
        }
    }

    /// Evaluates the constraint on one value (see the module docs for the exact rules).
    pub fn evaluate(&self, value: f64) -> ConstraintStatus {
        if let Err(e) = self.validate() {
            return ConstraintStatus {
                level: ConstraintLevel::Warning,
                utilization: 0.0,
                breached: false,
                message: format!("cannot evaluate: {e}"),
            };
        }
        if value.is_nan() {
            return ConstraintStatus {
                level: ConstraintLevel::Warning,
                utilization: 0.0,
                breached: false,
                message: format!(
                    "{}: {} is NaN; cannot check it against {}",
                    self.name,
                    self.metric,
                    self.bounds_text()
                ),
            };
        }
        let (utilization, breached) = self.utilization(value);
        let level = if breached || utilization >= self.critical_fraction {
            ConstraintLevel::Critical
        } else if utilization >= self.warning_fraction {
            ConstraintLevel::Warning
        } else {
            ConstraintLevel::Ok
        };
        let state = if breached {
            "breached"
        } else {
            match level {
                ConstraintLevel::Ok => "ok",
                ConstraintLevel::Warning => "warning",
                ConstraintLevel::Critical => "critical",
            }
        };
        ConstraintStatus {
            level,
            utilization,
            breached,
            message: format!(
                "{}: {} = {value} against {} ({state}, utilisation {:.3})",
                self.name,
                self.metric,
                self.bounds_text(),
                utilization
            ),
        }
    }

    /// An issue for a `Warning` or `Critical` status (kind `ConstraintBreach`, code `constraint_<name>`, resource
    /// the metric, score the utilisation capped at 1); `None` when the value is `Ok`.
    pub fn issue(&self, value: f64, at: Timestamp) -> Option<Issue> {
        let status = self.evaluate(value);
        if status.level == ConstraintLevel::Ok {
            return None;
        }
        Some(
            Issue::new(
                IssueKind::ConstraintBreach,
                format!("constraint_{}", self.name),
                self.metric.clone(),
                status.message.clone(),
                format!("constraint:{}", self.name),
                at,
            )
            .with_score(status.utilization.min(1.0))
            .evidence("level", format!("{:?}", status.level))
            .evidence("value", value.to_string())
            .evidence("bounds", self.bounds_text())
            .evidence("utilization", format!("{:.3}", status.utilization))
            .evidence("breached", status.breached.to_string())
            .evidence("auto_fix_available", self.auto_fix_available.to_string()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

    fn check(c: &Constraint, value: f64, level: ConstraintLevel, utilization: f64) {
        let s = c.evaluate(value);
        assert_eq!(s.level, level, "value {value}: {}", s.message);
        assert!(
            (s.utilization - utilization).abs() < 1e-9,
            "value {value}: utilisation {} != {utilization}",
            s.utilization
        );
        assert!(s.utilization.is_finite());
    }

    #[test]
    fn lower_bound_disk_free() {
        let c = Constraint::new("disk_free_floor", "disk_free_bytes", Some(GIB), None);
        check(&c, 10.0 * GIB, ConstraintLevel::Ok, 0.0);
        check(&c, 2.0 * GIB, ConstraintLevel::Ok, 0.0);
        check(&c, 1.5 * GIB, ConstraintLevel::Ok, 0.5);
        check(&c, 1.2 * GIB, ConstraintLevel::Warning, 0.8);
        check(&c, 1.05 * GIB, ConstraintLevel::Critical, 0.95);
        // Exactly at the bound: inside, but critical.
        let at = c.evaluate(GIB);
        assert_eq!(at.level, ConstraintLevel::Critical);
        assert!(!at.breached);
        assert_eq!(at.utilization, 1.0);
        let below = c.evaluate(0.5 * GIB);
        assert!(below.breached && below.level == ConstraintLevel::Critical);
        assert!((below.utilization - 1.5).abs() < 1e-9);
        assert!(c.evaluate(f64::INFINITY).level == ConstraintLevel::Ok);
        let neg_inf = c.evaluate(f64::NEG_INFINITY);
        assert!(neg_inf.breached && neg_inf.utilization == UTILIZATION_MAX);
    }

    #[test]
    fn upper_bound_and_headroom() {
        let c = Constraint::new("wal_ceiling", "wal_bytes", None, Some(100.0));
        check(&c, 0.0, ConstraintLevel::Ok, 0.0);
        check(&c, 50.0, ConstraintLevel::Ok, 0.5);
        check(&c, 80.0, ConstraintLevel::Warning, 0.8);
        check(&c, 100.0, ConstraintLevel::Critical, 1.0);
        assert!(!c.evaluate(100.0).breached);
        assert!(c.evaluate(100.000001).breached);
        check(&c, -50.0, ConstraintLevel::Ok, 0.0);
        let narrow = Constraint {
            headroom: Some(10.0),
            ..c.clone()
        };
        check(&narrow, 80.0, ConstraintLevel::Ok, 0.0);
        check(&narrow, 95.0, ConstraintLevel::Ok, 0.5);
        check(&narrow, 99.5, ConstraintLevel::Critical, 0.95);
        let zero = Constraint::new("no_errors", "errors", None, Some(0.0));
        check(&zero, 0.0, ConstraintLevel::Critical, 1.0);
        check(&zero, -1.0, ConstraintLevel::Ok, 0.0);
        check(&zero, 0.5, ConstraintLevel::Critical, 1.5);
    }

    #[test]
    fn band_and_zero_width_band() {
        let c = Constraint::new("temp", "temp_c", Some(10.0), Some(30.0));
        check(&c, 20.0, ConstraintLevel::Ok, 0.0);
        check(&c, 28.0, ConstraintLevel::Warning, 0.8);
        check(&c, 12.0, ConstraintLevel::Warning, 0.8);
        check(&c, 10.0, ConstraintLevel::Critical, 1.0);
        check(&c, 30.0, ConstraintLevel::Critical, 1.0);
        assert!(c.evaluate(35.0).breached);
        let z = Constraint::new("exact", "replicas", Some(3.0), Some(3.0));
        check(&z, 3.0, ConstraintLevel::Critical, 1.0);
        assert!(!z.evaluate(3.0).breached);
        let off = z.evaluate(3.5);
        assert!(off.breached && off.utilization == UTILIZATION_MAX);
        let huge = Constraint::new("huge", "x", Some(-f64::MAX), Some(f64::MAX));
        check(&huge, 0.0, ConstraintLevel::Ok, 0.0);
        assert!(huge.evaluate(f64::INFINITY).breached);
    }

    #[test]
    fn nan_and_invalid_constraints_warn_with_a_reason() {
        let c = Constraint::new("disk_free_floor", "disk_free_bytes", Some(GIB), None);
        let s = c.evaluate(f64::NAN);
        assert_eq!(s.level, ConstraintLevel::Warning);
        assert!(s.message.contains("NaN"), "{}", s.message);

        let none = Constraint::new("x", "m", None, None);
        assert!(matches!(
            none.validate(),
            Err(ConstraintError::NoBound { .. })
        ));
        assert_eq!(none.evaluate(1.0).level, ConstraintLevel::Warning);
        let inv = Constraint::new("x", "m", Some(2.0), Some(1.0));
        assert!(matches!(
            inv.validate(),
            Err(ConstraintError::Inverted { .. })
        ));
        let nan_bound = Constraint::new("x", "m", Some(f64::NAN), None);
        let e = nan_bound.validate().unwrap_err();
        assert!(e.to_string().contains("lower"), "{e}");
        let fr = Constraint {
            warning_fraction: 0.9,
            critical_fraction: 0.5,
            ..Constraint::new("x", "m", None, Some(1.0))
        };
        assert!(matches!(
            fr.validate(),
            Err(ConstraintError::Fractions { .. })
        ));
        let long = Constraint::new("x".repeat(200), "m", None, Some(1.0));
        let e = long.validate().unwrap_err();
        assert!(e.to_string().contains("constraint_name_bytes_max"), "{e}");
        let h = Constraint {
            headroom: Some(0.0),
            ..Constraint::new("x", "m", None, Some(1.0))
        };
        assert!(matches!(
            h.validate(),
            Err(ConstraintError::Headroom { .. })
        ));
    }

    #[test]
    fn issue_only_when_not_ok_and_serde_round_trips() {
        let c = Constraint {
            auto_fix_available: true,
            ..Constraint::new("disk_free_floor", "disk_free_bytes", Some(GIB), None)
        };
        assert!(c.issue(10.0 * GIB, 5).is_none());
        let issue = c.issue(0.5 * GIB, 5).expect("breach raises an issue");
        assert_eq!(issue.kind, IssueKind::ConstraintBreach);
        assert_eq!(issue.code, "constraint_disk_free_floor");
        assert_eq!(issue.resource, "disk_free_bytes");
        assert_eq!(issue.score, 1.0);
        assert!(
            issue
                .evidence
                .contains(&("auto_fix_available".into(), "true".into()))
        );

        let json = r#"{"name":"wal","metric":"wal_bytes","upper":1000.0}"#;
        let parsed: Constraint = serde_json::from_str(json).unwrap();
        assert_eq!(parsed.warning_fraction, 0.8);
        assert_eq!(parsed.critical_fraction, 0.95);
        assert_eq!(
            parsed,
            Constraint::new("wal", "wal_bytes", None, Some(1000.0))
        );
        let back: Constraint = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
