//! Reading playbook files: one YAML document per file, `*.yaml` or `*.yml` in a directory, each within
//! [`PLAYBOOK_FILE_BYTES_MAX`], at most [`PLAYBOOK_FILES_MAX`] files. YAML errors keep their line
//! (`serde-saphyr` reports it; its budgets refuse alias bombs).

use std::path::{Path, PathBuf};

use super::PlaybookError;
use super::model::RawPlaybook;

/// The largest playbook file accepted, bytes.
pub const PLAYBOOK_FILE_BYTES_MAX: u64 = 64 * 1024;
/// The most playbook files in one directory.
pub const PLAYBOOK_FILES_MAX: usize = 256;

/// The playbook files of `dir` (`*.yaml`, `*.yml`), sorted by name.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, PlaybookError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| PlaybookError::new(dir, 0, format!("cannot read the directory: {e}")))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PlaybookError::new(dir, 0, format!("cannot list: {e}")))?;
        let path = entry.path();
        let yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if yaml && path.is_file() {
            out.push(path);
        }
        if out.len() > PLAYBOOK_FILES_MAX {
            return Err(PlaybookError::new(
                dir,
                0,
                format!("more than playbook_files_max = {PLAYBOOK_FILES_MAX} playbook files"),
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads `path` within [`PLAYBOOK_FILE_BYTES_MAX`] as UTF-8.
pub fn read(path: &Path) -> Result<String, PlaybookError> {
    let len = std::fs::metadata(path)
        .map_err(|e| PlaybookError::new(path, 0, format!("cannot read: {e}")))?
        .len();
    if len > PLAYBOOK_FILE_BYTES_MAX {
        return Err(PlaybookError::new(
            path,
            0,
            format!("{len} bytes is over playbook_file_bytes_max = {PLAYBOOK_FILE_BYTES_MAX}"),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| PlaybookError::new(path, 0, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        PlaybookError::new(
            path,
            0,
            format!("not UTF-8 (at byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

/// Parses one playbook's YAML; the error names the line (1 when the parser knew none). Document markers (`---`)
/// around the one document are allowed (a document cut from `medic playbooks --print-default` keeps them); a second
/// document is refused at its first line.
pub fn parse(text: &str, file: &Path) -> Result<RawPlaybook, PlaybookError> {
    let text = one_document(text, file)?;
    serde_saphyr::from_str::<RawPlaybook>(&text).map_err(|e| {
        let line = e.location().map(|l| l.line()).unwrap_or(0).max(1);
        PlaybookError::new(file, line, reason(&e))
    })
}

/// `text` with its `---` document-start lines blanked (line numbers kept), when it holds one document with content;
/// an error at the first content line of a second document.
fn one_document(text: &str, file: &Path) -> Result<String, PlaybookError> {
    let mut documents = 0usize;
    let mut in_content = false;
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.lines().enumerate() {
        let marker = line.starts_with("---") && line[3..].trim().is_empty();
        let content = !marker && !line.trim().is_empty() && !line.trim_start().starts_with('#');
        if marker {
            in_content = false;
            out.push('\n');
            continue;
        }
        if content && !in_content {
            in_content = true;
            documents += 1;
            if documents > 1 {
                return Err(PlaybookError::new(
                    file,
                    i as u64 + 1,
                    "a second YAML document (after a `---` line): a playbook file holds one playbook; put each in a \
                     file of its own"
                        .to_string(),
                ));
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// The parser's message without its own location and snippet (the error prints `file:line:` itself), unknown
/// step keys named as actions.
fn reason(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let mut first = full.lines().next().unwrap_or("invalid YAML").trim();
    first = first.strip_prefix("error: ").unwrap_or(first);
    // "line 10 column 5: ..." (the file:line prefix says it already).
    if first.starts_with("line ")
        && let Some(colon) = first.find(": ")
    {
        first = &first[colon + 2..];
    }
    if let Some(at) = first.find(" at line ") {
        first = &first[..at];
    }
    if first.contains("unknown field") && first.contains("expected one of run") {
        let name = first.split('`').nth(1).unwrap_or("?");
        return format!(
            "unknown action or option `{name}`; actions: {}; options: timeout, env, idle_in_transaction_over, query_over, idle_over, role, application_name, backends_max",
            super::validate::ACTIONS.join(", ")
        );
    }
    first.to_string()
}
