//! What an index is opened with ([`TextSettings`]: the collection's declared meta fields, the writer's memory) and
//! every limit a search request is held to.

use std::collections::BTreeMap;

/// Hits one search returns at most (`k`).
pub const K_MAX: usize = 1000;
/// Hits a search may skip (`offset`): deep paging costs a heap of `offset + k` entries.
pub const OFFSET_MAX: usize = 10_000;
/// Bytes of a query string.
pub const QUERY_BYTES_MAX: usize = 4096;
/// Nesting of parentheses in a query (the parser recurses once per level).
pub const QUERY_DEPTH_MAX: usize = 32;
/// Nesting of `and`/`or`/`not` in a filter.
pub const FILTER_DEPTH_MAX: usize = 16;
/// Conditions (and values of `in`) in one filter.
pub const FILTER_NODES_MAX: usize = 1024;
/// Characters of one highlight snippet.
pub const HIGHLIGHT_CHARS_MAX: usize = 1000;
/// Terms a prefix (`term*`) is expanded to for highlighting.
pub const PREFIX_HIGHLIGHT_TERMS_MAX: usize = 64;

/// The type of a declared meta field: how filters and per-field queries compare its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// A string compared exactly (case-sensitive).
    Keyword,
    /// A whole number (ranges, equality).
    Integer,
    /// A number (ranges, equality).
    Float,
    /// `true` or `false`.
    Bool,
}

impl FieldKind {
    /// The name used in settings and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldKind::Keyword => "keyword",
            FieldKind::Integer => "integer",
            FieldKind::Float => "float",
            FieldKind::Bool => "bool",
        }
    }
}

/// How a [`crate::TextIndex`] is opened.
#[derive(Clone, Debug)]
pub struct TextSettings {
    /// The collection's declared meta fields. Empty: none declared, and filters and per-field queries may name any
    /// meta field (compared by the type of the value given). Otherwise only these names are accepted.
    pub fields: BTreeMap<String, FieldKind>,
    /// Memory of the index writer's buffer before it flushes a segment (tantivy's minimum is 15 MB).
    pub writer_memory_bytes: usize,
}

impl Default for TextSettings {
    fn default() -> Self {
        TextSettings {
            fields: BTreeMap::new(),
            writer_memory_bytes: 64 << 20,
        }
    }
}

impl TextSettings {
    /// The declared kind of meta field `name`: `Ok(None)` when nothing is declared (any field goes), `Err(())` when
    /// fields are declared and `name` is not one of them.
    pub(crate) fn kind_of(&self, name: &str) -> Result<Option<FieldKind>, ()> {
        if self.fields.is_empty() {
            return Ok(None);
        }
        self.fields.get(name).copied().map(Some).ok_or(())
    }

    /// The declared field names, for error messages.
    pub(crate) fn declared(&self) -> String {
        if self.fields.is_empty() {
            return "none declared".to_string();
        }
        self.fields.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}
