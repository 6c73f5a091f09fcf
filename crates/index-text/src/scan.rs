//! Answering a search without the index: [`scan`] reads every document of the collection (the table, the truth)
//! into an index of this schema in memory and runs the search there, so a scan answers exactly what an index
//! rebuilt from those documents would — the same query language, filter, BM25 statistics, snippets and `total` —,
//! only slower. The daemon answers from it while no usable index exists (deleted, quarantined, rebuilding) and flags
//! the answer degraded.

use std::time::Instant;

use store::Document;
use tantivy::{Index, ReloadPolicy};

use crate::QueryError;
use crate::index::WRITER_MEMORY_MIN_BYTES;
use crate::schema;
use crate::search::{SearchAnswer, SearchRequest, View};
use crate::settings::TextSettings;

/// Answers `req` over `docs` (every live document of the collection, as of at least LSN `lsn`) by a scan. User
/// errors (the query, the filter, the bounds) are found before any document is read.
pub fn scan(
    settings: &TextSettings,
    req: &SearchRequest,
    docs: &mut dyn Iterator<Item = (String, Document)>,
    lsn: u64,
) -> Result<SearchAnswer, QueryError> {
    let start = Instant::now();
    let index = Index::create_in_ram(schema::schema());
    let fields = schema::fields_of(&index.schema()).map_err(QueryError::Index)?;
    let view = View {
        fields: &fields,
        settings,
        index: &index,
    };
    let prepared = view.prepare(req)?;
    let mut writer = index
        .writer_with_num_threads(1, WRITER_MEMORY_MIN_BYTES)
        .map_err(QueryError::from)?;
    for (id, doc) in docs {
        writer.add_document(schema::document(
            &fields,
            &id,
            &doc.text,
            doc.meta.as_ref(),
            lsn,
        ))?;
    }
    writer.commit()?;
    drop(writer);
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(QueryError::from)?;
    view.answer(&reader.searcher(), &prepared, req, lsn, start)
}
