//! The tantivy schema of a text index and the conversion of a store document into a tantivy document.
//!
//! | field | options | why |
//! |---|---|---|
//! | `id` | raw, indexed, stored, fast | delete/update by id term; hits read ids from the fast column (no doc-store read) |
//! | `text` | default tokenizer, positions, stored | BM25, phrases, snippets, `include: text` |
//! | `meta` | JSON, raw tokenizer, indexed, fast | filters: strings and bools by term, numbers by fast-column ranges |
//! | `meta_src` | stored | the meta JSON text exactly as put (tantivy's JSON values would round numbers) |
//! | `version` | u64, fast | the LSN of the version indexed, compared with the table by `check` |
//! | `text_prefixes` | token prefixes of 1..=4 characters (`tokens`), freqs | `wor*` as one term |
//! | `text_pairs` | adjacent-token pairs hashed into buckets (`tokens`), document ids only, no norms | a phrase's candidates |
//!
//! An index whose schema differs (an older version's) does not open: it is quarantined and rebuilt from the log.

use serde_json::{Map, Value};
use tantivy::TantivyDocument;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, JsonObjectOptions, OwnedValue, STORED, STRING, Schema,
    TEXT, TextFieldIndexing, TextOptions,
};

use crate::tokens;

/// The fields of the schema.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    pub(crate) id: Field,
    pub(crate) text: Field,
    pub(crate) meta: Field,
    pub(crate) meta_src: Field,
    pub(crate) version: Field,
    pub(crate) prefixes: Field,
    pub(crate) pairs: Field,
}

pub(crate) const ID: &str = "id";
pub(crate) const TEXT_FIELD: &str = "text";
pub(crate) const META: &str = "meta";
pub(crate) const META_SRC: &str = "meta_src";
pub(crate) const VERSION: &str = "version";
pub(crate) const PREFIXES: &str = "text_prefixes";
pub(crate) const PAIRS: &str = "text_pairs";

/// The schema every generation is created with.
pub(crate) fn schema() -> Schema {
    let mut b = Schema::builder();
    b.add_text_field(ID, STRING | STORED | FAST);
    b.add_text_field(TEXT_FIELD, TEXT | STORED);
    let meta = JsonObjectOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("raw")
                .set_index_option(IndexRecordOption::Basic),
        )
        .set_fast("raw");
    b.add_json_field(META, meta);
    b.add_text_field(META_SRC, STORED);
    b.add_u64_field(VERSION, FAST | INDEXED);
    b.add_text_field(
        PREFIXES,
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokens::PREFIXES)
                .set_index_option(IndexRecordOption::WithFreqs),
        ),
    );
    b.add_text_field(
        PAIRS,
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokens::PAIRS)
                .set_index_option(IndexRecordOption::Basic)
                .set_fieldnorms(false),
        ),
    );
    b.build()
}

/// The fields of an opened index's schema; `Err` when it is not this schema (another version's index).
pub(crate) fn fields_of(schema: &Schema) -> Result<Fields, String> {
    if schema != &self::schema() {
        return Err("the index's schema is not this version's".to_string());
    }
    let f = |name: &str| schema.get_field(name).map_err(|e| e.to_string());
    Ok(Fields {
        id: f(ID)?,
        text: f(TEXT_FIELD)?,
        meta: f(META)?,
        meta_src: f(META_SRC)?,
        version: f(VERSION)?,
        prefixes: f(PREFIXES)?,
        pairs: f(PAIRS)?,
    })
}

/// A meta value as tantivy indexes it. Strings stay strings (tantivy would turn a date-like string into a date,
/// which string equality would then miss); a number no `f64` can hold is left out of the index (it is still in
/// `meta_src`).
fn owned(v: &Value) -> Option<OwnedValue> {
    Some(match v {
        Value::Null => OwnedValue::Null,
        Value::Bool(b) => OwnedValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                OwnedValue::I64(i)
            } else if let Some(u) = n.as_u64() {
                OwnedValue::U64(u)
            } else {
                OwnedValue::F64(n.as_f64().filter(|f| f.is_finite())?)
            }
        }
        Value::String(s) => OwnedValue::Str(s.clone()),
        Value::Array(items) => OwnedValue::Array(items.iter().filter_map(owned).collect()),
        Value::Object(m) => OwnedValue::Object(
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), owned(v)?)))
                .collect(),
        ),
    })
}

/// The tantivy document of one store document at version `lsn`.
pub(crate) fn document(
    fields: &Fields,
    id: &str,
    text: &str,
    meta: Option<&Map<String, Value>>,
    lsn: u64,
) -> TantivyDocument {
    let mut d = TantivyDocument::new();
    d.add_text(fields.id, id);
    d.add_text(fields.text, text);
    d.add_text(fields.prefixes, text);
    d.add_text(fields.pairs, text);
    if let Some(m) = meta {
        let o: Vec<(String, OwnedValue)> = m
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), owned(v)?)))
            .collect();
        d.add_field_value(fields.meta, &OwnedValue::Object(o));
        d.add_text(
            fields.meta_src,
            serde_json::to_string(m).unwrap_or_default(),
        );
    }
    d.add_u64(fields.version, lsn);
    d
}
