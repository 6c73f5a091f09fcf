//! Answering a search without the index: [`scan`] reads every document of the collection (the table, the truth)
//! into an index of this schema in memory and runs the search there, so a scan answers exactly what an index
//! rebuilt from those documents would — the same query language, filter, BM25 statistics, snippets and `total` —,
//! only slower. The daemon answers from it while no usable index exists (deleted, quarantined, rebuilding) and flags
//! the answer degraded.

use std::sync::Mutex;
use std::time::Instant;

use store::Document;
use tantivy::{Index, IndexReader, ReloadPolicy};

use crate::QueryError;
use crate::index::TextIndex;
use crate::index::WRITER_MEMORY_MIN_BYTES;
use crate::schema::{self, Fields};
use crate::search::{IdColumns, SearchAnswer, SearchRequest, View};
use crate::settings::TextSettings;

/// How much of the table a bounded scan read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scanned {
    /// Documents read into the scan's index (what the answer covers).
    pub docs: u64,
    /// `true`: the table held more than `docs_max` documents; the answer covers only the first `docs`.
    pub truncated: bool,
}

/// Answers `req` over `docs` (every live document of the collection, as of at least LSN `lsn`) by a scan. User
/// errors (the query, the filter, the bounds) are found before any document is read.
pub fn scan(
    settings: &TextSettings,
    req: &SearchRequest,
    docs: &mut dyn Iterator<Item = (String, Document)>,
    lsn: u64,
) -> Result<SearchAnswer, QueryError> {
    scan_bounded(settings, req, docs, lsn, usize::MAX).map(|(answer, _)| answer)
}

/// [`scan`] reading at most `docs_max` documents: the answer covers those only when [`Scanned::truncated`].
pub fn scan_bounded(
    settings: &TextSettings,
    req: &SearchRequest,
    docs: &mut dyn Iterator<Item = (String, Document)>,
    lsn: u64,
    docs_max: usize,
) -> Result<(SearchAnswer, Scanned), QueryError> {
    let start = Instant::now();
    let built = Built::empty()?;
    built.view(settings).prepare(req)?;
    let built = built.fill(docs, lsn, docs_max)?;
    let view = built.view(settings);
    let prepared = view.prepare(req)?;
    let answer = view.answer(&built.reader()?, &prepared, req, lsn, start)?;
    Ok((answer, built.scanned))
}

/// A scan's in-memory index.
struct Built {
    index: Index,
    fields: Fields,
    reader: Option<IndexReader>,
    /// What it holds of the table, and the bound it was read with.
    scanned: Scanned,
    docs_max: usize,
    ids: IdColumns,
}

impl Built {
    fn empty() -> Result<Built, QueryError> {
        let index = Index::create_in_ram(schema::schema());
        crate::tokens::register(&index);
        let fields = schema::fields_of(&index.schema()).map_err(QueryError::Index)?;
        Ok(Built {
            index,
            fields,
            reader: None,
            scanned: Scanned {
                docs: 0,
                truncated: false,
            },
            docs_max: usize::MAX,
            ids: IdColumns::default(),
        })
    }

    fn view<'a>(&'a self, settings: &'a TextSettings) -> View<'a> {
        View {
            fields: &self.fields,
            settings,
            index: &self.index,
            ids: &self.ids,
        }
    }

    /// Adds the documents (at most `docs_max`) and commits.
    fn fill(
        mut self,
        docs: &mut dyn Iterator<Item = (String, Document)>,
        lsn: u64,
        docs_max: usize,
    ) -> Result<Built, QueryError> {
        let mut writer = self
            .index
            .writer_with_num_threads(1, WRITER_MEMORY_MIN_BYTES)
            .map_err(QueryError::from)?;
        self.docs_max = docs_max;
        let mut n_docs = 0usize;
        for (id, doc) in &mut *docs {
            if n_docs == docs_max {
                // One document more than the bound: the table is larger, and nothing more is read.
                self.scanned.truncated = true;
                break;
            }
            n_docs += 1;
            writer.add_document(schema::document(
                &self.fields,
                &id,
                &doc.text,
                doc.meta.as_ref(),
                lsn,
            ))?;
        }
        self.scanned.docs = n_docs as u64;
        writer.commit()?;
        drop(writer);
        self.reader = Some(
            self.index
                .reader_builder()
                .reload_policy(ReloadPolicy::Manual)
                .try_into()
                .map_err(QueryError::from)?,
        );
        Ok(self)
    }

    fn reader(&self) -> Result<tantivy::Searcher, QueryError> {
        self.reader
            .as_ref()
            .map(IndexReader::searcher)
            .ok_or_else(|| QueryError::Index("the scan's index was not filled".to_string()))
    }
}

/// The last scan's in-memory index of one collection, kept for the next scan at the same LSN: while an index is
/// rebuilt, searches ask the same table again and again. Scans of one collection run one at a time (one such
/// index in memory at most); the index is dropped once searches are answered by the text index again.
#[derive(Default)]
pub(crate) struct ScanCache {
    last: Mutex<Option<(u64, Built)>>,
}

impl TextIndex {
    /// [`scan()`] with this index's settings, reusing the previous scan's documents when the table is at the same
    /// LSN (then `docs` is not read at all).
    pub fn scan(
        &self,
        req: &SearchRequest,
        docs: &mut dyn Iterator<Item = (String, Document)>,
        lsn: u64,
    ) -> Result<SearchAnswer, QueryError> {
        self.scan_bounded(req, docs, lsn, usize::MAX)
            .map(|(answer, _)| answer)
    }

    /// [`scan_bounded`] with this index's settings, reusing the previous scan's documents when the table is at the
    /// same LSN and that scan covers the same documents (it read the whole table within this bound, or was cut at
    /// this same bound).
    pub fn scan_bounded(
        &self,
        req: &SearchRequest,
        docs: &mut dyn Iterator<Item = (String, Document)>,
        lsn: u64,
        docs_max: usize,
    ) -> Result<(SearchAnswer, Scanned), QueryError> {
        let start = Instant::now();
        let mut last = self
            .scan_cache
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let built = match last.take() {
            Some((at, built))
                if at == lsn
                    && if built.scanned.truncated {
                        built.docs_max == docs_max
                    } else {
                        built.scanned.docs <= docs_max as u64
                    } =>
            {
                built
            }
            _ => {
                let empty = Built::empty()?;
                // Bad input is refused before the table is read.
                empty.view(&self.settings).prepare(req)?;
                empty.fill(docs, lsn, docs_max)?
            }
        };
        let view = built.view(&self.settings);
        let scanned = built.scanned;
        let answer = view
            .prepare(req)
            .and_then(|prepared| view.answer(&built.reader()?, &prepared, req, lsn, start));
        *last = Some((lsn, built));
        answer.map(|a| (a, scanned))
    }

    /// Forgets the last scan's in-memory index (the text index answers again).
    pub fn drop_scan(&self) {
        if let Ok(mut last) = self.scan_cache.last.try_lock() {
            *last = None;
        }
    }
}
