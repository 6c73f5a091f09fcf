//! The errors of the text index: [`QueryError`] (a search it cannot answer, mostly the user's input, with the
//! column of the query) and [`OpenError`] (an index directory it cannot open at all).

use std::path::PathBuf;

/// A search the index cannot answer. Every variant but [`QueryError::Index`] is the request's fault
/// ([`QueryError::is_user_error`]): the daemon answers it with a 4xx naming what and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The query string does not parse. `column` counts characters from 1.
    #[error("query: column {column}: {message}")]
    Syntax { column: usize, message: String },
    /// The query string is empty or has nothing to search for.
    #[error("query: nothing to search for (use \"*\" to match every document)")]
    Empty,
    /// The query only excludes (`-term`): there is nothing to rank.
    #[error("query: column {column}: only excluded terms (-term) given; add a term to search for")]
    OnlyExcluded { column: usize },
    /// The query string is longer than the limit.
    #[error("query: {bytes} bytes is more than the limit of {max} bytes")]
    TooLong { bytes: usize, max: usize },
    /// Parentheses nested deeper than the limit.
    #[error("query: column {column}: parentheses nested deeper than {max}")]
    TooDeep { column: usize, max: usize },
    /// A field the query names that the collection does not have.
    #[error("query: column {column}: unknown field {field:?} (fields: text, {declared})")]
    UnknownField {
        column: usize,
        field: String,
        declared: String,
    },
    /// A value the field cannot hold, or an operation the field does not support.
    #[error("query: column {column}: field {field:?}: {message}")]
    Field {
        column: usize,
        field: String,
        message: String,
    },
    /// `k` outside 1..=max.
    #[error("k: {k} is outside 1..={max}")]
    K { k: usize, max: usize },
    /// `offset` above the limit.
    #[error("offset: {offset} is more than the limit of {max}")]
    Offset { offset: usize, max: usize },
    /// A filter that is malformed or names a field it cannot use; `path` is where in the filter (`filter.and[1].year`).
    #[error("{path}: {message}")]
    Filter { path: String, message: String },
    /// A highlight option out of bounds.
    #[error("highlight: {message}")]
    Highlight { message: String },
    /// The index failed (not the request's fault).
    #[error("text index: {0}")]
    Index(String),
}

impl QueryError {
    /// Whether the request is at fault (4xx) rather than the index (5xx or a fallback).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, QueryError::Index(_))
    }

    /// The column of the query the error is at, when it is about the query string.
    pub fn column(&self) -> Option<usize> {
        match self {
            QueryError::Syntax { column, .. }
            | QueryError::OnlyExcluded { column }
            | QueryError::TooDeep { column, .. }
            | QueryError::UnknownField { column, .. }
            | QueryError::Field { column, .. } => Some(*column),
            _ => None,
        }
    }
}

impl From<tantivy::TantivyError> for QueryError {
    fn from(e: tantivy::TantivyError) -> Self {
        QueryError::Index(e.to_string())
    }
}

/// An index directory that cannot be opened at all. Damage is not an open error: a damaged index opens empty (the
/// damaged generation quarantined) and says why in [`crate::OpenReport`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The collection name cannot be a directory name.
    #[error("collection name {0:?} is not usable as a directory name")]
    Collection(String),
    /// Another process (or another open in this one) holds the index directory's lock.
    #[error("text index {path} is locked by another writer")]
    Locked { path: PathBuf },
    /// The directory cannot be created, read or written.
    #[error("text index {path}: {context}: {source}")]
    Io {
        path: PathBuf,
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// tantivy refused to create a fresh index.
    #[error("text index {path}: {reason}")]
    Tantivy { path: PathBuf, reason: String },
}
