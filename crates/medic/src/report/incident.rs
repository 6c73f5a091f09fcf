//! What one incident's report tells people to act on, computed when it is read (`GET /v1/incidents/{id}`,
//! `medic report ID`): the documents named lost or at risk (by id, from the loss's evidence: the identity sidecar of
//! the damaged file), the backups its repairs kept — still there or not — with the files each holds and the steps
//! that put them back, and its times as RFC 3339 with their age. The escalation report written when it escalated
//! stays as it was; this part is added below it.

use std::path::Path;

use heal::Timestamp;
use heal::clock::{human_duration_us, rfc3339_with_age};
use heal::learn::IncidentRecord;
use serde::Serialize;

/// Document ids listed at most (the rest are counted).
pub const LOST_IDS_LISTED_MAX: usize = 100;
/// Backups listed at most.
pub const BACKUPS_LISTED_MAX: usize = 16;
/// Files of one backup listed at most.
pub const BACKUP_FILES_LISTED_MAX: usize = 32;

/// Documents lost or at risk.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LostDocuments {
    /// Their ids (at most [`LOST_IDS_LISTED_MAX`]).
    pub ids: Vec<String>,
    /// How many more were named than listed.
    pub more: usize,
    /// Losses whose documents are not known (no intact identity sidecar covers them), each `file LSN a..=b`.
    pub unknown: Vec<String>,
}

/// A backup a repair of the incident kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeptBackup {
    /// The strategy whose attempt took it.
    pub strategy: String,
    /// When that attempt started (RFC 3339 with age).
    pub taken: String,
    /// Where, relative to the data directory.
    pub location: String,
    /// Bytes saved.
    pub bytes: u64,
    /// Whether it is still there (only the newest few are kept).
    pub present: bool,
    /// Its files and where each goes back to.
    pub files: Vec<store::BackupFile>,
    /// What to run to restore from it.
    pub restore: Vec<String>,
}

/// The actionable part of an incident's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Actionable {
    /// When this was computed.
    pub as_of: String,
    /// Its times: first observed, detected, resolved, each RFC 3339 with its age.
    pub times: Vec<(String, String)>,
    /// How long it took to detect and (if closed) to close, for people.
    pub durations: Vec<(String, String)>,
    /// Documents lost or at risk.
    pub lost_documents: LostDocuments,
    /// Backups its repairs kept.
    pub backups: Vec<KeptBackup>,
}

/// The actionable part of `r`'s report at `now`, its backups looked up under `data_dir`.
pub fn actionable(r: &IncidentRecord, data_dir: &Path, now: Timestamp) -> Actionable {
    let mut times = vec![
        (
            "first observed".to_string(),
            rfc3339_with_age(r.started_at, now),
        ),
        ("detected".to_string(), rfc3339_with_age(r.detected_at, now)),
    ];
    let mut durations = vec![(
        "time to detect".to_string(),
        human_duration_us(r.time_to_detect_us()),
    )];
    match r.resolved_at {
        Some(at) => {
            times.push(("resolved".to_string(), rfc3339_with_age(at, now)));
            durations.push((
                "open for".to_string(),
                human_duration_us(at.saturating_sub(r.detected_at)),
            ));
        }
        None => durations.push((
            "open for".to_string(),
            format!(
                "{} so far",
                human_duration_us(now.saturating_sub(r.detected_at))
            ),
        )),
    }
    Actionable {
        as_of: heal::clock::rfc3339(now),
        times,
        durations,
        lost_documents: lost_documents(r),
        backups: backups(r, data_dir, now),
    }
}

/// The documents the incident's issues name lost or at risk (their `documents` evidence).
fn lost_documents(r: &IncidentRecord) -> LostDocuments {
    let mut out = LostDocuments::default();
    let mut seen = std::collections::BTreeSet::new();
    for i in r.issues.iter().filter(|i| i.data_at_risk) {
        let Some((_, docs)) = i.evidence.iter().find(|(k, _)| k == "documents") else {
            continue;
        };
        if docs == "unknown" {
            let lsns = i
                .location
                .lsn_range
                .map(|(a, b)| format!(" LSN {a}..={b}"))
                .unwrap_or_default();
            out.unknown.push(format!(
                "{}{lsns}",
                i.location.file.as_deref().unwrap_or(&i.resource)
            ));
            continue;
        }
        for id in docs.split(", ").filter(|d| !d.is_empty()) {
            if !seen.insert(id.to_string()) {
                continue;
            }
            if out.ids.len() < LOST_IDS_LISTED_MAX {
                out.ids.push(id.to_string());
            } else {
                out.more += 1;
            }
        }
    }
    out
}

/// The backups the incident's repair attempts took, and how to restore from each.
fn backups(r: &IncidentRecord, data_dir: &Path, now: Timestamp) -> Vec<KeptBackup> {
    let dir = data_dir.display().to_string();
    let mut out = Vec::new();
    for a in &r.attempts {
        for b in a
            .notes
            .iter()
            .filter_map(|n| heal::cascade::backup_in_note(n))
        {
            if out.len() >= BACKUPS_LISTED_MAX {
                return out;
            }
            let files = store::backup_files_of(data_dir, &b.location, BACKUP_FILES_LISTED_MAX);
            let present = files.is_some();
            let files = files.unwrap_or_default();
            let mut restore = Vec::new();
            if !files.is_empty() {
                restore.push(
                    "stop medic: `systemctl stop medic` (or SIGTERM to `medic serve`)".to_string(),
                );
                for f in &files {
                    restore.push(format!(
                        "`cp -p {} {}`",
                        shell_quote(&format!("{dir}/{}", f.copy)),
                        shell_quote(&format!("{dir}/{}", f.restores))
                    ));
                }
                restore.push(format!(
                    "start medic, then verify: `medic check --data {}`",
                    shell_quote(&dir)
                ));
            }
            out.push(KeptBackup {
                strategy: a.strategy.clone(),
                taken: rfc3339_with_age(a.started_at, now),
                location: b.location,
                bytes: b.bytes,
                present,
                files,
                restore,
            });
        }
    }
    out
}

/// `s` quoted for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:+=@%,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl Actionable {
    /// The Markdown section added below an incident's report.
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut s = format!("\n## Where it stands (as of {})\n\n", self.as_of);
        for (k, v) in self.times.iter().chain(&self.durations) {
            let _ = writeln!(s, "- {k}: {v}");
        }
        s.push_str("\n## Documents lost or at risk\n\n");
        let l = &self.lost_documents;
        if l.ids.is_empty() && l.unknown.is_empty() {
            s.push_str("- none named\n");
        }
        if !l.ids.is_empty() {
            let more = if l.more > 0 {
                format!(" and {} more", l.more)
            } else {
                String::new()
            };
            let _ = writeln!(s, "- {}{more}", l.ids.join(", "));
        }
        for u in &l.unknown {
            let _ = writeln!(
                s,
                "- unknown documents in {u}: the identity sidecar does not cover it; any document written there \
                 may be stale"
            );
        }
        s.push_str("\n## Backups medic kept\n\n");
        if self.backups.is_empty() {
            s.push_str("- none (no repair of this incident took one)\n");
        }
        for b in &self.backups {
            // A repair that needs no backup says so in its note's location ("none needed (why)", 0 bytes).
            if let Some(why) = b.location.strip_prefix("none needed") {
                let why = why.trim().trim_start_matches('(').trim_end_matches(')');
                let _ = writeln!(
                    s,
                    "- {} ({}): no backup needed ({why})",
                    b.strategy, b.taken
                );
                continue;
            }
            let _ = writeln!(
                s,
                "- `{}` ({} bytes): the files as they were before {} changed them, taken {}{}",
                b.location,
                b.bytes,
                b.strategy,
                b.taken,
                if b.present {
                    ""
                } else {
                    ": gone (only the newest backups are kept) or not a file backup"
                }
            );
            if !b.restore.is_empty() {
                s.push_str("  To put them back:\n");
                for (i, step) in b.restore.iter().enumerate() {
                    let _ = writeln!(s, "  {}. {step}", i + 1);
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_only_when_a_shell_needs_it() {
        assert_eq!(
            shell_quote("/var/lib/medic/wal/0001.seg"),
            "/var/lib/medic/wal/0001.seg"
        );
        assert_eq!(shell_quote("/tmp/my data/x"), "'/tmp/my data/x'");
        assert_eq!(shell_quote("/tmp/it's"), "'/tmp/it'\\''s'");
    }
}
