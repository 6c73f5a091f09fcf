//! `POST /v1/docs`: bulk ingest of an NDJSON body, one `{"id", "text", "vector"?, "meta"?}` a line.
//!
//! Two steps:
//! 1. **Validate the whole body** ([`parse`]): every line is JSON of the document shape, its id and document pass
//!    the store's own checks (sizes, finite vectors) and every vector has the dimension of the others and of the
//!    store's. A bad line answers 400 naming its line number, and nothing is written. Fields other than the four are
//!    ignored (named once in the answer's `warnings`, never refused); an id given on several lines is written once,
//!    with its last line.
//! 2. **Write in commits** ([`write`]): the documents go to the store in batches of at most
//!    `commit_batch_bytes_max` record bytes, each one group commit; the answer
//!    `{"written", "first_lsn", "last_lsn", "lines", "duplicates", "warnings"}` comes once every batch is durable.
//!    If the store refuses a batch for its own trouble (space, a loss, a crisis), the answer is that error and says
//!    how many documents were already durable and up to which LSN: those stay, nothing after them was written.
//!
//! Limits: the body is bounded by `http.bulk_body_bytes_max` (a `Content-Length` over it is answered 413 before the
//! body is read), the documents by `http.bulk_docs_max`.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};
use store::{Document, Limits};

/// A document of the body with the line it came from.
pub struct Line {
    /// 1-based line number in the body.
    pub line: u64,
    /// The document's id.
    pub id: String,
    /// The document.
    pub doc: Document,
    /// Record bytes it takes in a commit (the bound of `commit_batch_bytes_max`).
    pub record_bytes: u64,
}

/// A validated body.
pub struct Parsed {
    /// The documents to write, one per id (its last line), in the order of those lines.
    pub docs: Vec<Line>,
    /// Non-blank lines read.
    pub lines: u64,
    /// Lines whose id a later line gave again (only the last is written).
    pub duplicates: u64,
    /// Fields other than id, text, vector, meta, with the first line each was seen on.
    pub ignored: Vec<(String, u64)>,
}

/// The four fields of a document line.
const FIELDS: [&str; 4] = ["id", "text", "vector", "meta"];

/// Fields outside the four named in `warnings` at most (the rest counted).
const IGNORED_NAMED_MAX: usize = 16;

/// Validates `body` against the store's `limits` and the vector dimension `store_dim` of the collection
/// `collection`; at most `docs_max` documents. `Err` names the line and what is wrong with it (a dimension in the
/// collection's words, as a single put says it).
pub fn parse(
    body: &[u8],
    limits: &Limits,
    collection: &str,
    store_dim: Option<u32>,
    docs_max: u64,
) -> Result<Parsed, String> {
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut docs: Vec<Option<Line>> = Vec::new();
    let mut lines = 0u64;
    let mut duplicates = 0u64;
    let mut ignored: Vec<(String, u64)> = Vec::new();
    let mut seen_ignored: BTreeSet<String> = BTreeSet::new();
    // The dimension every vector must have: the store's, else the first vector's (with its line).
    let mut dim: Option<(u32, Option<u64>)> = store_dim.map(|d| (d, None));
    for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
        let line_no = i as u64 + 1;
        let text = std::str::from_utf8(raw)
            .map_err(|e| format!("line {line_no}: not UTF-8 (at byte {})", e.valid_up_to()))?;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        lines += 1;
        if lines > docs_max {
            return Err(format!(
                "line {line_no}: more than http.bulk_docs_max = {docs_max} documents in one body; split it"
            ));
        }
        let value: Value = serde_json::from_str(text).map_err(|e| {
            format!(
                "line {line_no}: not JSON ({}); expected {{\"id\", \"text\", \"vector\"?, \"meta\"?}}",
                super::error::plain_words(&e.to_string())
            )
        })?;
        let Value::Object(mut obj) = value else {
            return Err(format!(
                "line {line_no}: not a JSON object; expected {{\"id\", \"text\", \"vector\"?, \"meta\"?}}"
            ));
        };
        for k in obj.keys() {
            if !FIELDS.contains(&k.as_str()) && seen_ignored.insert(k.clone()) {
                ignored.push((k.clone(), line_no));
            }
        }
        let (id, doc) = document(&mut obj).map_err(|e| format!("line {line_no}: {e}"))?;
        let meta = check(&id, &doc, limits).map_err(|e| format!("line {line_no}: {e}"))?;
        if let Some(v) = &doc.vector {
            let n = v.len() as u32;
            match dim {
                None => dim = Some((n, Some(line_no))),
                Some((d, first)) if d != n => {
                    return Err(match first {
                        Some(l) => {
                            format!("line {line_no}: vector has {n} dimensions, line {l}'s has {d}")
                        }
                        None => format!(
                            "line {line_no}: {}",
                            store::collection::wrong_dimension(collection, n as usize, d)
                        ),
                    });
                }
                _ => {}
            }
        }
        // A record: length + crc, the fixed fields, the id, the encoded document (text, vector, meta with their
        // u32 lengths).
        let record_bytes = (store::codec::RECORD_HEADER_BYTES
            + store::codec::RECORD_FIXED_BYTES
            + id.len()
            + 12
            + doc.text.len()
            + 4 * doc.vector.as_ref().map_or(0, Vec::len)
            + meta.map_or(0, |m| m.len())) as u64;
        let line = Line {
            line: line_no,
            id: id.clone(),
            doc,
            record_bytes,
        };
        match by_id.get(&id) {
            Some(&at) => {
                duplicates += 1;
                docs[at] = None;
                by_id.insert(id, docs.len());
            }
            None => {
                by_id.insert(id, docs.len());
            }
        }
        docs.push(Some(line));
    }
    Ok(Parsed {
        docs: docs.into_iter().flatten().collect(),
        lines,
        duplicates,
        ignored,
    })
}

/// The id and document of one line's object.
fn document(obj: &mut Map<String, Value>) -> Result<(String, Document), String> {
    let id = match obj.remove("id") {
        Some(Value::String(s)) => s,
        Some(other) => return Err(format!("\"id\" must be a string, not {}", kind(&other))),
        None => return Err("no \"id\"".into()),
    };
    if id.starts_with(store::RESERVED_ID_PREFIX) {
        return Err(format!(
            "document id {id:?}: ids starting with {:?} are reserved for medic's own probe",
            store::RESERVED_ID_PREFIX
        ));
    }
    let text = match obj.remove("text") {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(format!(
                "document {id:?}: \"text\" must be a string, not {}",
                kind(&other)
            ));
        }
        None => return Err(format!("document {id:?}: no \"text\"")),
    };
    let vector = match obj.remove("vector") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => {
            let mut v = Vec::with_capacity(a.len());
            for (i, x) in a.iter().enumerate() {
                let f = x
                    .as_f64()
                    .map(|f| f as f32)
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| {
                        format!(
                            "document {id:?}: vector[{i}] is {x}, not a finite number (in f32 range)"
                        )
                    })?;
                v.push(f);
            }
            Some(v)
        }
        Some(other) => {
            return Err(format!(
                "document {id:?}: \"vector\" must be an array of numbers, not {}",
                kind(&other)
            ));
        }
    };
    let meta = match obj.remove("meta") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(other) => {
            return Err(format!(
                "document {id:?}: \"meta\" must be an object, not {}",
                kind(&other)
            ));
        }
    };
    Ok((id, Document { text, vector, meta }))
}

/// The store's own checks of an id and a document (no dimension: the caller checks it with line numbers); the meta
/// JSON the record will hold.
fn check(id: &str, doc: &Document, limits: &Limits) -> Result<Option<Vec<u8>>, String> {
    store::codec::validate_id(id, limits).map_err(|e| format!("document {id:?}: {e}"))?;
    store::codec::validate_doc(doc, limits, None).map_err(|e| format!("document {id:?}: {e}"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Splits `docs` into commits of at most `batch_bytes_max` record bytes (a document larger than that alone: the
/// store then names the limit).
pub fn batches(docs: Vec<Line>, batch_bytes_max: u64) -> Vec<Vec<Line>> {
    let mut out: Vec<Vec<Line>> = Vec::new();
    let mut bytes = 0u64;
    for d in docs {
        match out.last_mut() {
            Some(b) if !b.is_empty() && bytes + d.record_bytes <= batch_bytes_max => {
                bytes += d.record_bytes;
                b.push(d);
            }
            _ => {
                bytes = d.record_bytes;
                out.push(vec![d]);
            }
        }
    }
    out
}

/// What a bulk write made durable.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Documents durable.
    pub written: u64,
    /// The first LSN written, 0 if none.
    pub first_lsn: u64,
    /// The last LSN written, 0 if none.
    pub last_lsn: u64,
}

/// Writes the batches in order, one group commit each. On a refusal, returns what was durable before it with the
/// error and the line the refused batch started at.
pub fn write(
    store: &store::Store,
    collection: &str,
    batches: Vec<Vec<Line>>,
) -> Result<Written, Box<(Written, u64, store::StoreError)>> {
    let mut w = Written::default();
    for batch in batches {
        let first_line = batch.first().map_or(0, |l| l.line);
        let docs: Vec<(String, Document)> = batch.into_iter().map(|l| (l.id, l.doc)).collect();
        let n = docs.len() as u64;
        match store.put_batch_in(collection, docs) {
            Ok(lsns) => {
                if w.first_lsn == 0 {
                    w.first_lsn = lsns.first().copied().unwrap_or(0);
                }
                w.last_lsn = lsns.last().copied().unwrap_or(w.last_lsn);
                w.written += n;
            }
            Err(e) => return Err(Box::new((w, first_line, e))),
        }
    }
    Ok(w)
}

/// The answer's `warnings`: the ignored fields, each with the first line it was on.
pub fn warnings(ignored: &[(String, u64)]) -> Vec<String> {
    let mut out: Vec<String> = ignored
        .iter()
        .take(IGNORED_NAMED_MAX)
        .map(|(f, l)| {
            format!("field {f:?} (first on line {l}) is not a document field and was ignored")
        })
        .collect();
    if ignored.len() > IGNORED_NAMED_MAX {
        out.push(format!(
            "{} more unknown fields were ignored",
            ignored.len() - IGNORED_NAMED_MAX
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn a_bad_line_is_named_and_nothing_is_parsed() {
        let body = b"{\"id\":\"a\",\"text\":\"x\"}\n\n{\"id\":\"b\",\"text\":7}\n";
        let e = parse(body, &limits(), "default", None, 100).err().unwrap();
        assert!(e.starts_with("line 3: "), "{e}");
        assert!(e.contains("\"text\" must be a string"), "{e}");
        let e = parse(
            b"{\"id\":\"a\",\"text\":\"x\"}\nnot json\n",
            &limits(),
            "default",
            None,
            100,
        )
        .err()
        .unwrap();
        assert!(e.starts_with("line 2: not JSON"), "{e}");
    }

    #[test]
    fn dimensions_must_agree_with_each_other_and_the_store() {
        let body = b"{\"id\":\"a\",\"text\":\"x\",\"vector\":[1,2]}\n{\"id\":\"b\",\"text\":\"y\",\"vector\":[1,2,3]}";
        let e = parse(body, &limits(), "default", None, 100).err().unwrap();
        assert!(
            e.contains("line 2: vector has 3 dimensions, line 1's has 2"),
            "{e}"
        );
        let first = body.split(|b| *b == b'\n').next().unwrap();
        let e = parse(first, &limits(), "default", Some(4), 100)
            .err()
            .unwrap();
        assert!(
            e.contains("line 1: vector has 2 dimensions, the store's vectors have 4"),
            "{e}"
        );
        let e = parse(first, &limits(), "c4", Some(4), 100).err().unwrap();
        assert!(
            e.contains("line 1: vector has 2 dimensions, the collection \"c4\" holds vectors of 4"),
            "{e}"
        );
        let e = parse(
            b"{\"id\":\"a\",\"text\":\"x\",\"vector\":[1e300]}",
            &limits(),
            "default",
            None,
            100,
        )
        .err()
        .unwrap();
        assert!(e.contains("not a finite number"), "{e}");
    }

    #[test]
    fn duplicates_keep_the_last_line_and_unknown_fields_are_named_once() {
        let body = b"{\"id\":\"a\",\"text\":\"1\",\"x\":1}\n{\"id\":\"b\",\"text\":\"2\",\"x\":2}\n{\"id\":\"a\",\"text\":\"3\"}\n";
        let p = parse(body, &limits(), "default", None, 100).unwrap();
        assert_eq!(p.lines, 3);
        assert_eq!(p.duplicates, 1);
        let got: Vec<(&str, &str)> = p
            .docs
            .iter()
            .map(|l| (l.id.as_str(), l.doc.text.as_str()))
            .collect();
        assert_eq!(got, vec![("b", "2"), ("a", "3")]);
        assert_eq!(p.ignored, vec![("x".to_string(), 1)]);
        assert_eq!(warnings(&p.ignored).len(), 1);
    }

    #[test]
    fn limits_are_named() {
        let e = parse(
            b"{\"id\":\"a\",\"text\":\"1\"}\n{\"id\":\"b\",\"text\":\"2\"}",
            &limits(),
            "default",
            None,
            1,
        )
        .err()
        .unwrap();
        assert!(e.contains("http.bulk_docs_max = 1"), "{e}");
        let long = format!("{{\"id\":\"{}\",\"text\":\"1\"}}", "i".repeat(1000));
        let e = parse(long.as_bytes(), &limits(), "default", None, 10)
            .err()
            .unwrap();
        assert!(e.contains("line 1") && e.contains("id"), "{e}");
        let e = parse(
            b"{\"id\":\".medic/probe\",\"text\":\"1\"}",
            &limits(),
            "default",
            None,
            10,
        )
        .err()
        .unwrap();
        assert!(e.contains("reserved"), "{e}");
    }

    #[test]
    fn batches_respect_the_commit_bound() {
        let body: String = (0..10)
            .map(|i| format!("{{\"id\":\"d{i}\",\"text\":\"{}\"}}\n", "t".repeat(100)))
            .collect();
        let p = parse(body.as_bytes(), &limits(), "default", None, 100).unwrap();
        let one = p.docs[0].record_bytes;
        let b = batches(p.docs, one * 3);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
    }
}
