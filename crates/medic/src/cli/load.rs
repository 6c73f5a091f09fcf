//! `medic load FILE.jsonl`: bulk loading, one `{"id", "text", "vector"?, "meta"?}` per line.
//!
//! Two passes. The first reads every line and checks it (JSON, fields, types, finite vectors of one dimension, sizes)
//! without writing anything, so a malformed line anywhere stops the load before the first write and names its line
//! number. The second writes in batches of up to [`LOAD_BATCH_DOCS_MAX`] documents, each all or nothing; if the
//! store refuses one (a limit such as `text_bytes_max`, a dimension that disagrees with documents already stored),
//! the load stops there, names the line, and says how many documents before its batch were written: nothing of that
//! batch or after it is written, nothing is half-written. A file of one batch is written whole or not at all.
//!
//! Through a daemon each batch is one `POST /v1/docs` (NDJSON), which the daemon validates whole and writes in group
//! commits. `medic load -` reads standard input, spooled to a temporary file so it can be checked before anything is
//! written. Fields other than id, text, vector and meta are ignored, with one warning naming them.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::UsageError;
use super::backend::Backend;

/// The longest line accepted (one document as JSON).
pub const LOAD_LINE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The longest document id accepted (the store's own limit is the same).
pub const LOAD_ID_BYTES_MAX: usize = 256;

/// One line of a load file.
#[derive(Debug, Deserialize)]
struct Line {
    id: String,
    text: String,
    #[serde(default)]
    vector: Option<Vec<f32>>,
    #[serde(default)]
    meta: Option<Map<String, Value>>,
    /// Any other field: ignored, named once in a warning.
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// What is loaded: a file, or standard input spooled to a temporary file (removed when this drops).
pub struct Input {
    path: std::path::PathBuf,
    name: String,
    _spool: Option<tempfile::NamedTempFile>,
}

impl Input {
    /// `-` is standard input, anything else a file path.
    pub fn open(arg: &Path) -> anyhow::Result<Input> {
        if arg != Path::new("-") {
            return Ok(Input {
                path: arg.to_path_buf(),
                name: arg.display().to_string(),
                _spool: None,
            });
        }
        let mut spool = tempfile::NamedTempFile::new()
            .context("creating a temporary file to hold standard input")?;
        std::io::copy(&mut std::io::stdin().lock(), spool.as_file_mut())
            .context("reading standard input")?;
        Ok(Input {
            path: spool.path().to_path_buf(),
            name: "<stdin>".into(),
            _spool: Some(spool),
        })
    }

    /// How messages name it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Line {
    fn body(self) -> (String, Value) {
        let mut doc = Map::new();
        doc.insert("text".into(), Value::String(self.text));
        if let Some(v) = self.vector {
            doc.insert(
                "vector".into(),
                Value::Array(v.into_iter().map(Value::from).collect()),
            );
        }
        if let Some(m) = self.meta {
            doc.insert("meta".into(), Value::Object(m));
        }
        (self.id, Value::Object(doc))
    }
}

/// What a load did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LoadSummary {
    /// Documents written.
    pub written: u64,
    /// Blank lines skipped.
    pub blank: u64,
}

/// Reads the input line by line, calling `f(line_no, id, body)` for every non-blank line (1-based line numbers) and
/// `on_extra(line_no, fields)` for a line with fields other than the four.
fn each_line(
    input: &Input,
    mut on_extra: impl FnMut(u64, serde_json::map::Keys<'_>),
    mut f: impl FnMut(u64, String, Value) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let path = &input.path;
    let shown = &input.name;
    // A file that is not there, not readable or not a file is the caller's mistake: exit 2, naming the path.
    let not_loadable = |why: String| UsageError(format!("cannot load {shown}: {why}"));
    let file = File::open(path).map_err(|e| not_loadable(e.to_string()))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(not_loadable("it is a directory, not a JSON Lines file".into()).into());
    }
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut blank = 0u64;
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(LOAD_LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("{shown}: reading line {}", line_no + 1))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.len() > LOAD_LINE_BYTES_MAX && buf.last() != Some(&b'\n') {
            return Err(UsageError(format!(
                "{}:{line_no}: line is over load_line_bytes_max = {LOAD_LINE_BYTES_MAX} bytes; nothing was written",
                shown
            ))
            .into());
        }
        let text = std::str::from_utf8(&buf).map_err(|e| {
            UsageError(format!(
                "{}:{line_no}: not UTF-8 (at byte {}); nothing was written",
                shown,
                e.valid_up_to()
            ))
        })?;
        let text = text.trim();
        if text.is_empty() {
            blank += 1;
            continue;
        }
        let line: Line = serde_json::from_str(text).map_err(|e| {
            UsageError(format!(
                "{}:{line_no}: not a document line ({e}); expected {{\"id\", \"text\", \"vector\"?, \"meta\"?}}; \
                 nothing was written",
                shown
            ))
        })?;
        if !line.extra.is_empty() {
            on_extra(line_no, line.extra.keys());
        }
        let (id, body) = line.body();
        f(line_no, id, body)?;
    }
    Ok(blank)
}

/// Checks every line without writing anything; returns the number of documents.
pub fn validate(input: &Input) -> anyhow::Result<u64> {
    let shown = input.name();
    let mut docs = 0u64;
    let mut dim: Option<(usize, u64)> = None;
    let mut extra: Vec<(String, u64)> = Vec::new();
    each_line(
        input,
        |line_no, keys| {
            for k in keys {
                if !extra.iter().any(|(e, _)| e == k) {
                    extra.push((k.clone(), line_no));
                }
            }
        },
        |line_no, id, body| {
            let bad = |what: String| -> anyhow::Error {
                UsageError(format!("{shown}:{line_no}: {what}; nothing was written")).into()
            };
            if id.is_empty() {
                return Err(bad("empty id".into()));
            }
            if id.len() > LOAD_ID_BYTES_MAX {
                return Err(bad(format!(
                    "id is {} bytes, over id_bytes_max = {LOAD_ID_BYTES_MAX}",
                    id.len()
                )));
            }
            if let Some(v) = body.get("vector").and_then(Value::as_array) {
                // serde_json turns a non-finite f32 into null, so a finite check is on the parsed floats: an overflowing
                // literal such as 1e999 does not parse as f32 and is refused above.
                if v.iter().any(|x| x.as_f64().is_none_or(|f| !f.is_finite())) {
                    return Err(bad("vector has a non-finite value".into()));
                }
                match dim {
                    None => dim = Some((v.len(), line_no)),
                    Some((d, first)) if d != v.len() => {
                        return Err(bad(format!(
                            "vector has {} dimensions, line {first} has {d}",
                            v.len()
                        )));
                    }
                    _ => {}
                }
            }
            docs += 1;
            Ok(())
        },
    )?;
    if !extra.is_empty() {
        let named: Vec<String> = extra
            .iter()
            .map(|(k, l)| format!("{k:?} (first on line {l})"))
            .collect();
        eprintln!(
            "warning: {shown}: ignoring fields that are not document fields (id, text, vector, meta): {}",
            named.join(", ")
        );
    }
    Ok(docs)
}

/// Documents written in one batch (one commit) when the backend supports batches.
pub const LOAD_BATCH_DOCS_MAX: usize = 256;
/// Bytes of JSON bodies gathered into one batch at most.
pub const LOAD_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Lines gathered for one batch: `(line_no, id, body)`.
type Pending = Vec<(u64, String, Value)>;

/// Writes the file, already checked by [`validate`] (`total` documents), into `backend`, in batches of up to
/// [`LOAD_BATCH_DOCS_MAX`] documents. A batch the backend refuses as bad input wrote nothing: the load stops there,
/// naming the line the refusal points at (a file of one batch is then written whole or not at all). A backend
/// without batches writes one document at a time.
pub fn write(
    backend: &dyn Backend,
    collection: &str,
    input: &Input,
    total: u64,
) -> anyhow::Result<LoadSummary> {
    let shown = input.name();
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} docs  {per_sec}  eta {eta}")
    {
        bar.set_style(style);
    }
    let mut written = 0u64;
    let mut pending: Pending = Vec::new();
    let mut pending_bytes = 0usize;
    let blank = each_line(
        input,
        |_, _| {},
        |line_no, id, body| {
            pending_bytes +=
                body.get("text").and_then(Value::as_str).map_or(0, str::len) + id.len();
            pending.push((line_no, id, body));
            if pending.len() >= LOAD_BATCH_DOCS_MAX || pending_bytes >= LOAD_BATCH_BYTES_MAX {
                flush(backend, collection, shown, &mut pending, &mut written, &bar)?;
                pending_bytes = 0;
            }
            Ok(())
        },
    )
    .and_then(|blank| {
        flush(backend, collection, shown, &mut pending, &mut written, &bar)?;
        Ok(blank)
    });
    bar.finish_and_clear();
    Ok(LoadSummary {
        written,
        blank: blank?,
    })
}

fn flush(
    backend: &dyn Backend,
    collection: &str,
    shown: &str,
    pending: &mut Pending,
    written: &mut u64,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let batch = std::mem::take(pending);
    let first_line = batch[0].0;
    match backend.put_batch(collection, &batch) {
        None => {} // No batches here: one by one.
        Some(Ok(())) => {
            *written += batch.len() as u64;
            bar.inc(batch.len() as u64);
            return Ok(());
        }
        Some(Err(e)) if e.downcast_ref::<UsageError>().is_none() => {
            return Err(anyhow::anyhow!(
                "{}:{first_line}: writing the batch of lines {first_line}..={} failed: {e:#}; the {written} \
                 documents before line {first_line} were written, the batch was not acknowledged",
                shown,
                batch[batch.len() - 1].0
            ));
        }
        Some(Err(e)) => {
            // Bad input somewhere in the batch, nothing of it written: name the line, write nothing more.
            let last_line = batch[batch.len() - 1].0;
            let (line_no, why) = refused_line(&batch, &format!("{e:#}"));
            let kept = if *written == 0 {
                "nothing was written".to_string()
            } else {
                format!(
                    "the {written} documents before line {first_line} were written (earlier batches), nothing \
                     from line {first_line} on"
                )
            };
            return Err(UsageError(format!(
                "{shown}:{line_no}: {why}; lines {first_line}..={last_line} were one batch; {kept}"
            ))
            .into());
        }
    }
    for (line_no, id, body) in batch {
        backend.put(collection, &id, &body).map_err(|e| {
            let kept = if *written == 0 {
                "nothing was written".to_string()
            } else {
                format!(
                    "the {written} documents before it were written, nothing from line {line_no} on"
                )
            };
            let msg = format!(
                "{}:{line_no}: document {id:?} refused: {e:#}; {kept}",
                shown
            );
            if e.downcast_ref::<UsageError>().is_some() {
                anyhow::Error::from(UsageError(msg))
            } else {
                anyhow::anyhow!(msg)
            }
        })?;
        *written += 1;
        bar.inc(1);
    }
    Ok(())
}

/// The file line a refused batch's error points at, and the error: a daemon names the body's line (`line K: ...`,
/// the batch's K-th document), a store the document (`document "id"` or the id quoted); otherwise the batch's first
/// line.
fn refused_line(batch: &Pending, error: &str) -> (u64, String) {
    let in_body = error
        .find("line ")
        .map(|at| &error[at + 5..])
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|&k| (1..=batch.len()).contains(&k));
    if let Some(k) = in_body {
        let (line_no, id, _) = &batch[k - 1];
        return (*line_no, format!("document {id:?} refused: {error}"));
    }
    match batch
        .iter()
        .find(|(_, id, _)| error.contains(&format!("{id:?}")))
    {
        Some((line_no, id, _)) => (*line_no, format!("document {id:?} refused: {error}")),
        None => (batch[0].0, format!("the batch was refused: {error}")),
    }
}
