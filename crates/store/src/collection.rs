//! Named collections: how a collection's documents are keyed in the one table, log and snapshot, and what a
//! collection's settings are.
//!
//! Key namespacing (the only place the format is written): a document `id` of the collection `c` is stored under
//! `id` itself when `c` is `default`, else under `"\u{1c}" + c + "\u{1f}" + id`. User ids never contain a control
//! character (`codec::validate_id`) and collection names are `[a-z0-9_-]`, so the two never collide and the keys
//! of one collection are one contiguous range of the table ([`range`]). A version-1 data directory holds only
//! `default` documents, under their plain ids: it needs no record rewritten.
//!
//! A collection's settings are a reserved document, `.medic/collection/<name>` ([`settings_key`]), whose meta is
//! `{"settings": {...}, "state": "ready"|"dropping"}`: written through the log like every document, so the WAL,
//! snapshots, parity and replay carry them.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::StoreError;

/// The collection of every document put without one; it exists in every store and cannot be dropped.
pub const DEFAULT: &str = crate::derived::DEFAULT_COLLECTION;
/// Longest collection name, characters.
pub const NAME_CHARS_MAX: usize = 64;
/// Most declared meta fields of one collection.
pub const FIELDS_MAX: usize = 256;
/// Longest declared field name, bytes.
pub const FIELD_NAME_BYTES_MAX: usize = 256;
/// Bytes a namespaced key adds to an id, at most: the two separators and the name.
pub const KEY_EXTRA_BYTES_MAX: u64 = 2 + NAME_CHARS_MAX as u64;

const NS: char = '\u{1c}';
const SEP: char = '\u{1f}';
/// Where the settings documents live: `.medic/collection/<name>`.
const SETTINGS_PREFIX: &str = ".medic/collection/";

/// The table key of `id` in `collection`.
pub fn key(collection: &str, id: &str) -> String {
    if collection == DEFAULT {
        id.to_owned()
    } else {
        format!("{NS}{collection}{SEP}{id}")
    }
}

/// `(collection, id)` of a table key (the inverse of [`key`]).
pub fn split(key: &str) -> (&str, &str) {
    key.strip_prefix(NS)
        .and_then(|rest| rest.split_once(SEP))
        .unwrap_or((DEFAULT, key))
}

/// Whether a table key belongs to a collection other than `default`.
pub fn is_namespaced(key: &str) -> bool {
    key.starts_with(NS)
}

/// The table range holding every key of `collection` (for `default`: every key not namespaced, medic's own
/// `.medic/` documents included — callers leave those out).
pub fn range(collection: &str) -> (Bound<String>, Bound<String>) {
    if collection == DEFAULT {
        // Namespaced keys start with NS (0x1c); every user id starts at 0x20 or above.
        (
            Bound::Included(char::from(NS as u8 + 1).to_string()),
            Bound::Unbounded,
        )
    } else {
        (
            Bound::Included(format!("{NS}{collection}{SEP}")),
            Bound::Excluded(format!("{NS}{collection}{}", char::from(SEP as u8 + 1))),
        )
    }
}

/// The range of every namespaced key (every collection but `default`).
pub fn namespaced_range() -> (Bound<String>, Bound<String>) {
    (
        Bound::Included(NS.to_string()),
        Bound::Excluded(char::from(NS as u8 + 1).to_string()),
    )
}

/// The key of `name`'s settings document.
pub fn settings_key(name: &str) -> String {
    format!("{SETTINGS_PREFIX}{name}")
}

/// The collection a settings document's key names, if it is one.
pub fn settings_name(key: &str) -> Option<&str> {
    key.strip_prefix(SETTINGS_PREFIX)
}

/// The range of every settings document.
pub fn settings_range() -> (Bound<String>, Bound<String>) {
    (
        Bound::Included(SETTINGS_PREFIX.to_owned()),
        Bound::Unbounded,
    )
}

/// A collection name: 1–[`NAME_CHARS_MAX`] characters of `[a-z0-9_-]`, not starting with `-`.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if name.is_empty() || name.len() > NAME_CHARS_MAX || !ok_chars || name.starts_with('-') {
        let len = name.chars().count();
        return Err(StoreError::InvalidInput(format!(
            "collection name {name:?} ({len} character{}): 1 to {NAME_CHARS_MAX} characters of a-z, 0-9, '_' and \
             '-', not starting with '-'",
            if len == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}

/// The distance a collection's vector indexes rank by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// `1 − cos(a, b)`.
    #[default]
    Cosine,
    /// `−a·b`.
    Dot,
    /// Euclidean.
    L2,
}

/// A derived index a collection keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// Exact vector search.
    Flat,
    /// Approximate vector search (a graph).
    Hnsw,
    /// Approximate vector search (k-means lists).
    Ivf,
    /// Full-text search.
    Text,
}

/// Most IVF lists of a collection.
pub const IVF_LISTS_MAX: u32 = 65_536;

/// A collection's IVF parameters (used when it keeps an `ivf` index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IvfSettings {
    /// Lists (k-means centroids), 1..=[`IVF_LISTS_MAX`].
    pub lists: u32,
    /// Lists a search scans unless it names its own, 1..=lists.
    pub probes: u32,
}

impl Default for IvfSettings {
    fn default() -> Self {
        IvfSettings {
            lists: 256,
            probes: 16,
        }
    }
}

/// The type of a declared (filterable) meta field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// A string compared exactly.
    Keyword,
    /// A whole number.
    Integer,
    /// A number.
    Float,
    /// `true` or `false`.
    Bool,
}

impl FieldKind {
    /// Its name in settings.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldKind::Keyword => "keyword",
            FieldKind::Integer => "integer",
            FieldKind::Float => "float",
            FieldKind::Bool => "bool",
        }
    }

    /// Whether `v` is a value of this kind (`null` is no value: it fits every kind, as an absent field does).
    fn fits(self, v: &Value) -> bool {
        match (self, v) {
            (_, Value::Null) => true,
            (FieldKind::Keyword, Value::String(_)) | (FieldKind::Bool, Value::Bool(_)) => true,
            (FieldKind::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (FieldKind::Float, Value::Number(_)) => true,
            _ => false,
        }
    }
}

/// The scalar values at a dotted path of a document's meta, as the text index indexes them: array elements
/// flattened, objects entered by the path's next segment; a key may itself contain dots only when nothing shorter
/// matches (the longest first segment that exists is tried first).
pub fn field_leaves<'a>(meta: &'a Map<String, Value>, path: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    collect(meta, path, &mut out);
    out
}

fn collect<'a>(m: &'a Map<String, Value>, path: &str, out: &mut Vec<&'a Value>) {
    if let Some(v) = m.get(path) {
        flatten(v, "", out);
        return;
    }
    let mut start = 0;
    while let Some(i) = path[start..].find('.') {
        let (head, rest) = (&path[..start + i], &path[start + i + 1..]);
        if let Some(v) = m.get(head) {
            flatten(v, rest, out);
            return;
        }
        start += i + 1;
    }
}

fn flatten<'a>(v: &'a Value, rest: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, rest, out)),
        Value::Object(m) if !rest.is_empty() => collect(m, rest, out),
        Value::Object(_) => {}
        other if rest.is_empty() => out.push(other),
        _ => {}
    }
}

/// Checks a document's meta against the collection's declared fields: every value at a declared field's path is of
/// its kind (a keyword a string, an integer a whole number, a float any number, a bool `true` or `false`; arrays of
/// them and `null` fit). Undeclared keys are not checked. The error names the field, its kind and the value.
pub fn check_fields(
    collection: &str,
    fields: &BTreeMap<String, FieldKind>,
    meta: Option<&Map<String, Value>>,
) -> Result<(), String> {
    let Some(meta) = meta else { return Ok(()) };
    for (name, kind) in fields {
        if let Some(bad) = field_leaves(meta, name).into_iter().find(|v| !kind.fits(v)) {
            let mut shown = bad.to_string();
            if shown.len() > 64 {
                let cut = (0..=64)
                    .rev()
                    .find(|&i| shown.is_char_boundary(i))
                    .unwrap_or(0);
                shown.truncate(cut);
                shown.push('…');
            }
            return Err(format!(
                "meta.{name}: the collection {collection:?} declares the field {}; got {shown}",
                kind.as_str()
            ));
        }
    }
    Ok(())
}

/// A collection's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The vector dimension; `None` until the collection's first vector fixes it.
    pub dimension: Option<u32>,
    /// The vector indexes' metric.
    pub metric: Metric,
    /// The derived indexes kept, sorted, without repeats.
    pub indexes: Vec<IndexKind>,
    /// Meta fields declared filterable.
    pub fields: BTreeMap<String, FieldKind>,
    /// The IVF index's parameters.
    #[serde(default)]
    pub ivf: IvfSettings,
    /// Sampled recall@10 of the approximate vector index below which the engine repairs it (0..=1).
    #[serde(default = "recall_floor_default")]
    pub recall_floor: f64,
}

/// The default [`Settings::recall_floor`].
pub const RECALL_FLOOR_DEFAULT: f64 = 0.8;

fn recall_floor_default() -> f64 {
    RECALL_FLOOR_DEFAULT
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dimension: None,
            metric: Metric::Cosine,
            indexes: vec![IndexKind::Flat, IndexKind::Hnsw, IndexKind::Text],
            fields: BTreeMap::new(),
            ivf: IvfSettings::default(),
            recall_floor: RECALL_FLOOR_DEFAULT,
        }
    }
}

impl Settings {
    /// Reads settings from a request's JSON object, each key checked and a bad one named:
    /// `{"dimension"?: 1..=dim_max, "metric"?: "cosine"|"dot"|"l2", "indexes"?: ["flat","hnsw","ivf","text"],
    /// "index"?: "hnsw"|"ivf"|"flat", "ivf"?: {"lists"?, "probes"?}, "recall_floor"?: 0..=1,
    /// "fields"?: {"name": "keyword"|"integer"|"float"|"bool"}}`. `"index"` names the approximate vector index
    /// kept (`"flat"`: none, searches exact): the indexes are then `flat`, that one and `text` (with `"indexes"`
    /// too, it must be among them).
    pub fn from_json(v: &Value, dim_max: u32) -> Result<Settings, StoreError> {
        let Some(o) = v.as_object() else {
            return Err(StoreError::InvalidInput(
                "collection settings must be a JSON object".into(),
            ));
        };
        let mut s = Settings::default();
        let mut index = None;
        for (k, v) in o {
            match k.as_str() {
                "dimension" => s.dimension = Some(dimension_of(v, dim_max)?),
                "metric" => {
                    s.metric = serde_json::from_value(v.clone()).map_err(|_| {
                        bad(k, format!("{v} is not one of \"cosine\", \"dot\", \"l2\""))
                    })?;
                }
                "indexes" => s.indexes = indexes_of(v)?,
                "fields" => s.fields = fields_of(v)?,
                "index" => index = Some(vector_index_of(v)?),
                "ivf" => s.ivf = ivf_of(v)?,
                "recall_floor" => {
                    s.recall_floor = v
                        .as_f64()
                        .filter(|f| (0.0..=1.0).contains(f))
                        .ok_or_else(|| bad(k, format!("{v} is not a number in 0..=1")))?;
                }
                other => {
                    return Err(StoreError::InvalidInput(format!(
                        "setting {other}: unknown (known: dimension, metric, indexes, index, ivf, recall_floor, \
                         fields)"
                    )));
                }
            }
        }
        if let Some(kind) = index {
            s.keep_vector_index(kind, o.contains_key("indexes"))?;
        }
        Ok(s)
    }

    /// `"index": kind` names the approximate vector index kept: with `"indexes"` too it must be among them;
    /// alone, the indexes become `flat`, that one and `text`.
    fn keep_vector_index(
        &mut self,
        kind: IndexKind,
        indexes_given: bool,
    ) -> Result<(), StoreError> {
        if indexes_given {
            if !self.keeps(kind) {
                return Err(bad(
                    "index",
                    format!("{kind:?} is not among \"indexes\" {:?}", self.indexes).to_lowercase(),
                ));
            }
        } else {
            self.indexes = vec![IndexKind::Flat, kind, IndexKind::Text];
            self.indexes.sort();
            self.indexes.dedup();
        }
        Ok(())
    }

    /// The settings as the API shows them.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Whether a request for `asked` is met by these settings (a dimension `asked` leaves open matches any).
    pub fn satisfies(&self, asked: &Settings) -> bool {
        (asked.dimension.is_none() || asked.dimension == self.dimension)
            && asked.metric == self.metric
            && asked.indexes == self.indexes
            && asked.fields == self.fields
            && asked.ivf == self.ivf
            && asked.recall_floor == self.recall_floor
    }

    /// Whether the collection keeps the index `kind`.
    pub fn keeps(&self, kind: IndexKind) -> bool {
        self.indexes.contains(&kind)
    }
}

/// A bad setting, named.
fn bad(key: &str, why: String) -> StoreError {
    StoreError::InvalidInput(format!("setting {key}: {why}"))
}

/// `"dimension"`: a whole number in 1..=`dim_max`.
fn dimension_of(v: &Value, dim_max: u32) -> Result<u32, StoreError> {
    v.as_u64()
        .filter(|d| (1..=u64::from(dim_max)).contains(d))
        .map(|d| d as u32)
        .ok_or_else(|| {
            bad(
                "dimension",
                format!("{v} is not a whole number in 1..={dim_max}"),
            )
        })
}

/// `"indexes"`: a list of index kinds, kept sorted without repeats.
fn indexes_of(v: &Value) -> Result<Vec<IndexKind>, StoreError> {
    let mut kinds: Vec<IndexKind> = serde_json::from_value(v.clone()).map_err(|_| {
        bad(
            "indexes",
            format!("{v} is not a list of \"flat\", \"hnsw\", \"ivf\", \"text\""),
        )
    })?;
    kinds.sort();
    kinds.dedup();
    Ok(kinds)
}

/// `"fields"`: at most [`FIELDS_MAX`] declared meta fields, each name 1 to [`FIELD_NAME_BYTES_MAX`] bytes
/// without control characters.
fn fields_of(v: &Value) -> Result<BTreeMap<String, FieldKind>, StoreError> {
    let fields: BTreeMap<String, FieldKind> = serde_json::from_value(v.clone()).map_err(|_| {
        bad(
            "fields",
            format!(
                "{v} is not an object of field name to \"keyword\", \"integer\", \"float\" or \"bool\""
            ),
        )
    })?;
    if fields.len() > FIELDS_MAX {
        return Err(bad(
            "fields",
            format!("{} fields, over the limit {FIELDS_MAX}", fields.len()),
        ));
    }
    if let Some(n) = fields
        .keys()
        .find(|n| n.is_empty() || n.len() > FIELD_NAME_BYTES_MAX || n.chars().any(char::is_control))
    {
        return Err(bad(
            "fields",
            format!(
                "field name {n:?}: 1 to {FIELD_NAME_BYTES_MAX} bytes without control characters"
            ),
        ));
    }
    Ok(fields)
}

/// `"index"`: the approximate vector index kept (`"flat"`: none).
fn vector_index_of(v: &Value) -> Result<IndexKind, StoreError> {
    serde_json::from_value(v.clone())
        .ok()
        .filter(|k| *k != IndexKind::Text)
        .ok_or_else(|| {
            bad(
                "index",
                format!("{v} is not one of \"hnsw\", \"ivf\", \"flat\""),
            )
        })
}

/// `"ivf"`: `lists` in 1..=[`IVF_LISTS_MAX`] and `probes` in 1..=lists.
fn ivf_of(v: &Value) -> Result<IvfSettings, StoreError> {
    let ivf: IvfSettings = serde_json::from_value(v.clone()).map_err(|e| {
        bad(
            "ivf",
            format!("{v} is not an object of \"lists\" and \"probes\" ({e})"),
        )
    })?;
    if !(1..=IVF_LISTS_MAX).contains(&ivf.lists) {
        return Err(bad(
            "ivf.lists",
            format!("{} is outside 1..={IVF_LISTS_MAX}", ivf.lists),
        ));
    }
    if !(1..=ivf.lists).contains(&ivf.probes) {
        return Err(bad(
            "ivf.probes",
            format!("{} is outside 1..=lists ({})", ivf.probes, ivf.lists),
        ));
    }
    Ok(ivf)
}

/// Where a collection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectionState {
    /// Serving.
    Ready,
    /// Being dropped: its documents are being deleted; nothing reads or writes it; the drop is finished by
    /// `Store::drop_collection` (again, after a crash).
    Dropping,
}

/// What a settings document holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// The settings.
    pub settings: Settings,
    /// The state.
    pub state: CollectionState,
}

impl Stored {
    /// As a document's meta object.
    pub fn to_meta(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }

    /// From a settings document's meta.
    pub fn from_meta(meta: Option<&Map<String, Value>>) -> Result<Stored, String> {
        let m = meta.ok_or("a collection's settings document has no meta")?;
        serde_json::from_value(Value::Object(m.clone())).map_err(|e| e.to_string())
    }
}

/// One collection as [`crate::Store::collections`] lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CollectionInfo {
    /// Its name.
    pub name: String,
    /// Its settings.
    pub settings: Settings,
    /// Its state.
    pub state: CollectionState,
    /// Its documents now.
    pub documents: u64,
}

/// What [`crate::Store::create_collection`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// Created by the record at this LSN.
    New { lsn: u64 },
    /// It existed already with settings that satisfy the request.
    Existed,
}

/// The wrong-dimension message for the collection `c`.
pub fn wrong_dimension(collection: &str, got: usize, want: u32) -> String {
    if collection == DEFAULT {
        format!(
            "vector has {got} dimensions, the store's vectors have {want}; vectors of another dimension go in a \
             collection of their own: PUT /v1/collections/<name> {{\"dimension\": {got}}} (or `medic collections \
             create <name> --dimension {got}`)"
        )
    } else {
        format!(
            "vector has {got} dimensions, the collection {collection:?} holds vectors of {want}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::RangeBounds;

    #[test]
    fn keys_split_back_and_ranges_hold_only_their_collection() {
        for (c, id) in [
            ("default", "a"),
            ("wide", "a"),
            ("w", "x\u{1f}y"),
            ("a-b_1", ".x"),
        ] {
            let k = key(c, id);
            assert_eq!(split(&k), (c, id));
            assert!(range(c).contains(&k));
        }
        assert!(!range("w").contains(&key("wide", "a")));
        assert!(!range("wide").contains(&key("w", "a")));
        assert!(!range("default").contains(&key("w", "a")));
        assert!(range("default").contains(&" ".to_string()));
    }

    #[test]
    fn declared_fields_are_checked_at_their_paths_and_undeclared_keys_are_not() {
        let fields: BTreeMap<String, FieldKind> = [
            ("year", FieldKind::Integer),
            ("price", FieldKind::Float),
            ("tags", FieldKind::Keyword),
            ("a.ok", FieldKind::Bool),
        ]
        .into_iter()
        .map(|(n, k)| (n.to_owned(), k))
        .collect();
        let check = |meta: serde_json::Value| check_fields("c", &fields, meta.as_object());
        check(serde_json::json!({"year": 2024, "price": 3, "tags": ["x", "y"], "a": {"ok": true}, "other": [1, "z"]}))
            .unwrap();
        check(serde_json::json!({"year": null, "price": 2.5, "a": [{"ok": false}, {"ok": null}]}))
            .unwrap();
        check(serde_json::json!({})).unwrap();
        assert!(check_fields("c", &fields, None).is_ok());
        for (meta, field, got) in [
            (serde_json::json!({"year": "abc"}), "year", "\"abc\""),
            (serde_json::json!({"year": 2.5}), "year", "2.5"),
            (serde_json::json!({"price": "3"}), "price", "\"3\""),
            (serde_json::json!({"tags": ["x", 1]}), "tags", "1"),
            (serde_json::json!({"a": {"ok": "yes"}}), "a.ok", "\"yes\""),
            (serde_json::json!({"a.ok": 1}), "a.ok", "1"),
        ] {
            let e = check(meta.clone()).unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "meta.{field}: the collection \"c\" declares the field "
                )) && e.ends_with(got),
                "{meta}: {e}"
            );
        }
        let long = check(serde_json::json!({"year": "y".repeat(500)})).unwrap_err();
        assert!(long.len() < 140 && long.ends_with('…'), "{long}");
    }

    #[test]
    fn names_and_settings_are_checked_naming_the_field() {
        for bad in ["", "A", "-a", "a b", "a/b", &"a".repeat(65), ".x"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        validate_name("wide_8-d").unwrap();
        let e = Settings::from_json(&serde_json::json!({"metric": "cos"}), 4096).unwrap_err();
        assert!(e.to_string().contains("setting metric"), "{e}");
        let e = Settings::from_json(&serde_json::json!({"dimension": 0}), 4096).unwrap_err();
        assert!(e.to_string().contains("setting dimension"), "{e}");
        let e = Settings::from_json(&serde_json::json!({"dims": 3}), 4096).unwrap_err();
        assert!(e.to_string().contains("setting dims"), "{e}");
        let s = Settings::from_json(
            &serde_json::json!({"dimension": 8, "metric": "l2", "indexes": ["text", "flat"], "fields": {"n": "integer"}}),
            4096,
        )
        .unwrap();
        assert_eq!(s.indexes, vec![IndexKind::Flat, IndexKind::Text]);
        let s = Settings::from_json(
            &serde_json::json!({"index": "ivf", "ivf": {"lists": 8, "probes": 2}, "recall_floor": 0.9}),
            4096,
        )
        .unwrap();
        assert_eq!(
            s.indexes,
            vec![IndexKind::Flat, IndexKind::Ivf, IndexKind::Text]
        );
        assert_eq!((s.ivf.lists, s.ivf.probes, s.recall_floor), (8, 2, 0.9));
        for (bad, key) in [
            (
                serde_json::json!({"ivf": {"lists": 4, "probes": 5}}),
                "ivf.probes",
            ),
            (serde_json::json!({"ivf": {"lists": 0}}), "ivf.lists"),
            (serde_json::json!({"recall_floor": 2}), "recall_floor"),
            (serde_json::json!({"index": "text"}), "index"),
            (
                serde_json::json!({"index": "ivf", "indexes": ["flat"]}),
                "index",
            ),
        ] {
            let e = Settings::from_json(&bad, 4096).unwrap_err().to_string();
            assert!(e.contains(&format!("setting {key}")), "{bad}: {e}");
        }
        let st = Stored {
            settings: s.clone(),
            state: CollectionState::Dropping,
        };
        assert_eq!(Stored::from_meta(Some(&st.to_meta())).unwrap(), st);
    }
}
