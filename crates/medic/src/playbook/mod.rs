//! Playbooks: repairs of the configured targets written as YAML data instead of compiled Rust.
//!
//! A playbook names a target and the issue code it handles (raised by the target's check, or by the playbook's own
//! `condition` over the target's readings held for `sustain`), the checks that must pass first, ordered steps from
//! the action library (`run`, `webhook`, `wait`, `check`, `restart`, and for a postgres target `pg_cancel_backend`,
//! `pg_terminate_backend`, `pg_vacuum_analyze`, `pg_reindex_concurrently`, `run_restart_command`; each with a
//! timeout), the verification, the rollback steps, its safety limits and `dry_run`. Loading is all-or-nothing: every
//! error is reported as `file:line: reason` and a daemon refuses to start on any ([`load_dir`]).
//!
//! | module | owns |
//! |---|---|
//! | `model` | the YAML shape (`serde`, unknown keys refused) and durations |
//! | `parse` | reading a directory's files within their limits, YAML errors with their line |
//! | `condition` | the trigger condition grammar and its evaluation |
//! | `validate` | a parsed file against the configured targets → [`Playbook`] |
//! | `actions` | running one action of the library |
//! | `runner` | [`PlaybookStrategy`]: a playbook as a `heal::RepairStrategy` |
//! | `defaults` | the store's built-in strategies rendered as playbooks, for reading; the postgres targets' defaults |

pub mod actions;
pub mod condition;
pub mod defaults;
pub mod model;
pub mod parse;
pub mod runner;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use condition::Condition;
pub use runner::PlaybookStrategy;
pub use validate::{Action, Playbook, TargetCatalog};

/// Why a playbook was refused: the file, the line (0 when the problem is the file or directory as a whole) and the
/// reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {reason}", file.display())]
pub struct PlaybookError {
    /// The file (or directory).
    pub file: PathBuf,
    /// 1-based line, 0 when none applies.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

impl PlaybookError {
    /// An error at `file:line`.
    pub fn new(file: &Path, line: u64, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line,
            reason: reason.into(),
        }
    }
}

/// Every playbook of `dir` checked against `catalog`; all errors of all files when any is invalid (names must be
/// unique across the directory).
pub fn load_dir(dir: &Path, catalog: &TargetCatalog) -> Result<Vec<Playbook>, Vec<PlaybookError>> {
    let files = parse::files(dir).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut playbooks = Vec::new();
    for file in files {
        let compiled = parse::read(&file)
            .and_then(|text| parse::parse(&text, &file))
            .map_err(|e| vec![e])
            .and_then(|raw| validate::compile(raw, &file, catalog));
        match compiled {
            Ok(p) => playbooks.push(p),
            Err(mut e) => errors.append(&mut e),
        }
    }
    let mut names: BTreeMap<&str, &Path> = BTreeMap::new();
    for p in &playbooks {
        if let Some(first) = names.insert(&p.name, &p.file) {
            errors.push(PlaybookError::new(
                &p.file,
                p.name_line,
                format!(
                    "playbook name {:?} is already used by {}",
                    p.name,
                    first.display()
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(playbooks)
    } else {
        Err(errors)
    }
}

/// The targets that have a playbook for `code`, by target name.
pub fn handled(playbooks: &[Playbook]) -> BTreeSet<(String, String)> {
    playbooks
        .iter()
        .map(|p| (p.target.clone(), p.code.clone()))
        .collect()
}
