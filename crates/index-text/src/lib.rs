//! # index-text — medic's full-text index
//!
//! A tantivy index per collection under `idx/<collection>/text/`, derived from the store's log through
//! [`store::derived::DerivedIndex`]: rebuilt whenever it is missing, damaged or behind what the log still covers.
//!
//! - [`TextIndex`] (`index`): generations, the writer lock, apply/persist/check/rebuild;
//! - `search`: [`SearchRequest`] → [`SearchAnswer`] (BM25, `k`/`offset`, filter, include, highlight, total);
//! - [`query`]: the query language, built on tantivy's grammar;
//! - [`filter`]: the meta filter's JSON shape, as a tantivy query and as a predicate on a meta object;
//! - `directory`: the tantivy directory of a generation, held by its descriptor (nothing written through a path),
//!   reading each file whole into memory, checked against its footer's CRC32;
//! - `verify`: checksums of every file with plain reads; `watch`: a stamp (length, time, inode) of each file the
//!   reader uses, looked at by the driver's quick check and before each persist; `schema`: fields and documents;
//! - [`scan()`]: a search answered from the collection's documents without the index (the fallback while no
//!   usable index exists);
//! - [`synth`]: a seeded Zipf corpus for tests and the benchmark.
//!
//! What tantivy does is not redone here: tokenizing, BM25, postings, phrase and prefix matching, snippets,
//! checksummed files, the commit payload. What is written by hand: the generations and their atomic swap, the
//! directory tantivy writes through (held by its descriptor, never a path), the version/LSN bookkeeping the store's
//! contract needs, checks with plain reads, the query builder (for a single-term prefix, meta fields and error
//! columns) and the filter.

pub mod chaos;
mod claim;
mod directory;
pub mod filter;
mod index;
pub mod query;
mod scan;
mod schema;
mod search;
pub mod settings;
pub mod synth;
mod tokens;
mod verify;
mod watch;

mod error;

pub use error::{OpenError, QueryError};
pub use filter::Filter;
pub use index::{
    DIRECTORY_REPLACED, MISSING_FILES, NAME, ORPHAN_AGE_MIN, ORPHAN_FILES, OpenReport, TextIndex,
};
pub use scan::{Scanned, scan, scan_bounded};
pub use search::{HighlightOptions, Hit, Include, SearchAnswer, SearchRequest};
pub use settings::{FieldKind, K_MAX, OFFSET_MAX, TextSettings};
pub use tokens::{PAIR_BUCKETS, PREFIX_CHARS_MAX};
