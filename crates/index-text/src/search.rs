//! Searching a [`TextIndex`]: the request ([`SearchRequest`]), its bounds, the answer ([`SearchAnswer`]) with
//! stored fields and highlight snippets.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};
use tantivy::collector::{Collector, Count, TopDocs};
use tantivy::columnar::StrColumn;
use tantivy::index::SegmentId;
use tantivy::query::{BooleanQuery, ConstScoreQuery, EnableScoring, Occur, Query, TermQuery};
use tantivy::schema::Value as _;
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, Index, Searcher, TantivyDocument};

use crate::filter::Filter;
use crate::index::TextIndex;
use crate::query::{self, Highlight};
use crate::schema::Fields;
use crate::settings::TextSettings;
use crate::settings::{HIGHLIGHT_CHARS_MAX, K_MAX, OFFSET_MAX, PREFIX_HIGHLIGHT_TERMS_MAX};
use crate::{QueryError, schema};

/// What a hit carries besides id and score.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Include {
    /// The document's text.
    pub text: bool,
    /// The document's meta, exactly as put.
    pub meta: bool,
}

/// How snippets are made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HighlightOptions {
    /// Characters of the snippet at most (1..=[`HIGHLIGHT_CHARS_MAX`]).
    pub chars: usize,
    /// Put before each matched term.
    pub pre: String,
    /// Put after each matched term.
    pub post: String,
}

impl Default for HighlightOptions {
    fn default() -> Self {
        HighlightOptions {
            chars: 150,
            pre: "<mark>".to_string(),
            post: "</mark>".to_string(),
        }
    }
}

/// A search.
#[derive(Clone, Debug, Default)]
pub struct SearchRequest {
    /// The query (see [`crate::query`] for the language).
    pub query: String,
    /// Hits to return (1..=[`K_MAX`]).
    pub k: usize,
    /// Hits to skip first (0..=[`OFFSET_MAX`]).
    pub offset: usize,
    /// A filter over meta fields (the JSON shape of [`crate::filter`]).
    pub filter: Option<Value>,
    /// Stored fields to return with the hits.
    pub include: Include,
    /// Snippets of the text with the matched terms marked.
    pub highlight: Option<HighlightOptions>,
}

/// One hit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    /// The document's id.
    pub id: String,
    /// BM25 score (higher is better).
    pub score: f32,
    /// The text, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The meta, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
    /// Snippets (plain text, not HTML-escaped) with matched terms between the markers, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highlights: Option<Vec<String>>,
}

/// The answer to a search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchAnswer {
    /// Hits, best first.
    pub hits: Vec<Hit>,
    /// Every document the query (and filter) matches.
    pub total: u64,
    /// Time spent in the index, ms.
    pub took_ms: f64,
    /// The LSN the answer is as of (every change up to it is visible).
    pub lsn: u64,
}

impl SearchRequest {
    /// A request for the `k` best hits of `query`.
    pub fn new(query: impl Into<String>, k: usize) -> SearchRequest {
        SearchRequest {
            query: query.into(),
            k,
            ..SearchRequest::default()
        }
    }

    /// Checks the bounds (`k`, `offset`, highlight).
    pub fn validate(&self) -> Result<(), QueryError> {
        if !(1..=K_MAX).contains(&self.k) {
            return Err(QueryError::K {
                k: self.k,
                max: K_MAX,
            });
        }
        if self.offset > OFFSET_MAX {
            return Err(QueryError::Offset {
                offset: self.offset,
                max: OFFSET_MAX,
            });
        }
        if let Some(h) = &self.highlight {
            if !(1..=HIGHLIGHT_CHARS_MAX).contains(&h.chars) {
                return Err(QueryError::Highlight {
                    message: format!("chars: {} is outside 1..={HIGHLIGHT_CHARS_MAX}", h.chars),
                });
            }
            if h.pre.len() > 64 || h.post.len() > 64 {
                return Err(QueryError::Highlight {
                    message: "pre/post: markers longer than 64 bytes".to_string(),
                });
            }
        }
        Ok(())
    }
}

impl TextIndex {
    /// Answers a search from the persisted state (everything up to [`TextIndex::visible_lsn`]).
    pub fn search(&self, req: &SearchRequest) -> Result<SearchAnswer, QueryError> {
        let start = Instant::now();
        let g = self.current();
        let lsn = self.visible_lsn();
        let view = View {
            fields: &self.fields,
            settings: &self.settings,
            index: &g.index,
            ids: &g.ids,
        };
        let prepared = view.prepare(req)?;
        // The searcher reads only bytes its directory read into memory and checked when each segment was opened
        // (`directory`): a file changed on disk since cannot change the answer, so nothing is looked at here (the
        // driver's quick check finds the change and the index is rebuilt: `watch`).
        let searcher = g.reader.searcher();
        view.answer(&searcher, &prepared, req, lsn, start)
    }
}

/// A query built and combined with its filter, ready to run.
pub(crate) struct Prepared {
    query: Box<dyn Query>,
    highlight: Vec<Highlight>,
}

/// What a search runs against: an index of this schema (a generation, or a scan's index in memory).
pub(crate) struct View<'a> {
    pub(crate) fields: &'a Fields,
    pub(crate) settings: &'a TextSettings,
    pub(crate) index: &'a Index,
    /// The id columns of its segments, opened once each.
    pub(crate) ids: &'a IdColumns,
}

/// The `id` fast column of each segment, opened on a segment's first hit and kept while the segment is searched.
/// Opening the column reads the header of every block of its values (about 2,000 per million documents): opened per
/// hit, it was a third of a phrase search's time at 1M documents and most of a rare term's.
#[derive(Default)]
pub(crate) struct IdColumns(Mutex<HashMap<SegmentId, StrColumn>>);

impl IdColumns {
    /// The id column of segment `ord` of `searcher`.
    fn get(&self, searcher: &Searcher, ord: u32) -> Result<StrColumn, QueryError> {
        let seg = searcher.segment_reader(ord);
        let key = seg.segment_id();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(col) = map.get(&key) {
            return Ok(col.clone());
        }
        let col = seg
            .fast_fields()
            .str(schema::ID)?
            .ok_or_else(|| QueryError::Index("no id column".to_string()))?;
        // Segments merged away are forgotten once the map holds more than the searcher's segments.
        let live = searcher.segment_readers();
        if map.len() >= live.len() {
            map.retain(|id, _| live.iter().any(|s| s.segment_id() == *id));
        }
        map.insert(key, col.clone());
        Ok(col)
    }
}

impl View<'_> {
    /// Parses the query and the filter (every user error found here, before anything is read).
    pub(crate) fn prepare(&self, req: &SearchRequest) -> Result<Prepared, QueryError> {
        req.validate()?;
        let filter = req
            .filter
            .as_ref()
            .map(|f| Filter::parse(f, self.settings))
            .transpose()?;
        let analyzer = self
            .index
            .tokenizer_for_field(self.fields.text)
            .map_err(QueryError::from)?;
        let built = query::build(&req.query, self.fields, analyzer, self.settings)?;
        let query: Box<dyn Query> = match &filter {
            None => built.query,
            Some(f) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, built.query),
                (
                    Occur::Must,
                    Box::new(ConstScoreQuery::new(f.to_query(self.fields.meta), 0.0)),
                ),
            ])),
        };
        Ok(Prepared {
            query,
            highlight: built.highlight,
        })
    }

    /// Runs a prepared search on `searcher`; the answer is as of `lsn`.
    pub(crate) fn answer(
        &self,
        searcher: &Searcher,
        prepared: &Prepared,
        req: &SearchRequest,
        lsn: u64,
        start: Instant,
    ) -> Result<SearchAnswer, QueryError> {
        // Damaged files can make tantivy panic while reading: a failed search, not a failed process.
        let run = catch_unwind(AssertUnwindSafe(|| {
            self.run(searcher, &*prepared.query, &prepared.highlight, req)
        }));
        let (hits, total) = match run {
            Ok(r) => r?,
            Err(_) => {
                return Err(QueryError::Index(
                    "reading the index failed (damaged files?)".to_string(),
                ));
            }
        };
        Ok(SearchAnswer {
            hits,
            total,
            took_ms: start.elapsed().as_secs_f64() * 1e3,
            lsn,
        })
    }

    fn run(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        highlight: &[Highlight],
        req: &SearchRequest,
    ) -> Result<(Vec<Hit>, u64), QueryError> {
        let top = TopDocs::with_limit(req.k)
            .and_offset(req.offset)
            .order_by_score();
        let (top, total) = if counts_apart(query) {
            top_and_count(searcher, query, &top)?
        } else {
            searcher.search(query, &(top, Count))?
        };
        let snippets = match &req.highlight {
            Some(h) => Some(self.snippet_generator(searcher, highlight, h)?),
            None => None,
        };
        let need_doc = req.include.text || req.include.meta || snippets.is_some();
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let id = self.id_of(searcher, addr)?;
            let mut hit = Hit {
                id,
                score,
                text: None,
                meta: None,
                highlights: None,
            };
            if need_doc {
                let doc: TantivyDocument = searcher.doc(addr)?;
                if req.include.text {
                    hit.text = Some(first_str(&doc, self.fields.text));
                }
                if req.include.meta {
                    let src = first_str(&doc, self.fields.meta_src);
                    hit.meta = Some(if src.is_empty() {
                        Map::new()
                    } else {
                        serde_json::from_str(&src).map_err(|e| {
                            QueryError::Index(format!("stored meta of {}: {e}", hit.id))
                        })?
                    });
                }
                if let (Some((generator, opts)), Some(_)) = (&snippets, &req.highlight) {
                    let s = generator.snippet_from_doc(&doc);
                    hit.highlights = Some(vec![mark(&s, opts)]);
                }
            }
            hits.push(hit);
        }
        Ok((hits, total as u64))
    }

    fn id_of(&self, searcher: &Searcher, addr: DocAddress) -> Result<String, QueryError> {
        let col = self.ids.get(searcher, addr.segment_ord)?;
        let mut id = String::new();
        if let Some(ord) = col.term_ords(addr.doc_id).next() {
            col.ord_to_str(ord, &mut id)
                .map_err(|e| QueryError::Index(format!("id column: {e}")))?;
        }
        Ok(id)
    }

    fn snippet_generator<'h>(
        &self,
        searcher: &Searcher,
        highlight: &[Highlight],
        opts: &'h HighlightOptions,
    ) -> Result<(SnippetGenerator, &'h HighlightOptions), QueryError> {
        let mut terms: BTreeMap<String, f32> = BTreeMap::new();
        for h in highlight {
            match h {
                Highlight::Term(t) => {
                    terms.insert(t.clone(), 1.0);
                }
                Highlight::Prefix(p) => {
                    for t in self.expand_prefix(searcher, p)? {
                        terms.insert(t, 1.0);
                    }
                }
            }
        }
        let analyzer = searcher.index().tokenizer_for_field(self.fields.text)?;
        Ok((
            SnippetGenerator::new(terms, analyzer, self.fields.text, opts.chars),
            opts,
        ))
    }

    /// Terms of the text starting with `prefix` (at most [`PREFIX_HIGHLIGHT_TERMS_MAX`]).
    fn expand_prefix(&self, searcher: &Searcher, prefix: &str) -> Result<Vec<String>, QueryError> {
        let mut out = std::collections::BTreeSet::new();
        for seg in searcher.segment_readers() {
            let inv = seg.inverted_index(self.fields.text)?;
            let mut stream = inv
                .terms()
                .range()
                .ge(prefix.as_bytes())
                .into_stream()
                .map_err(|e| QueryError::Index(e.to_string()))?;
            while stream.advance() {
                let k = stream.key();
                if !k.starts_with(prefix.as_bytes()) || out.len() >= PREFIX_HIGHLIGHT_TERMS_MAX {
                    break;
                }
                out.insert(String::from_utf8_lossy(k).to_string());
            }
        }
        Ok(out.into_iter().collect())
    }
}

/// Whether `query` is answered faster by a top-k pass alone (which tantivy prunes with block-max WAND: it skips the
/// blocks that cannot reach the top k) plus a separate count, than by one pass that scores every match to feed
/// [`Count`]: a single term (counted from its document frequency where a segment has no deletes) or an OR of terms
/// (counted without scoring). Phrases, prefixes, AND and filters keep the one pass: counting them costs a second
/// walk of the same postings and positions.
fn counts_apart(query: &dyn Query) -> bool {
    if query.downcast_ref::<TermQuery>().is_some() {
        return true;
    }
    query.downcast_ref::<BooleanQuery>().is_some_and(|b| {
        !b.clauses().is_empty()
            && b.clauses().iter().all(|(occur, q)| {
                *occur == Occur::Should && q.downcast_ref::<TermQuery>().is_some()
            })
    })
}

/// The top hits (pruned) and the count of every match, per segment with one weight.
fn top_and_count<C>(
    searcher: &Searcher,
    query: &dyn Query,
    top: &C,
) -> tantivy::Result<(Vec<(f32, DocAddress)>, usize)>
where
    C: Collector<Fruit = Vec<(f32, DocAddress)>>,
{
    let weight = query.weight(EnableScoring::enabled_from_searcher(searcher))?;
    let mut fruits = Vec::with_capacity(searcher.segment_readers().len());
    let mut total = 0usize;
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        fruits.push(top.collect_segment(weight.as_ref(), ord as u32, reader)?);
        total += weight.count(reader)? as usize;
    }
    Ok((top.merge_fruits(fruits)?, total))
}

fn first_str(doc: &TantivyDocument, field: tantivy::schema::Field) -> String {
    doc.get_first(field)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The snippet's fragment with every highlighted range between the markers (plain text, no escaping).
fn mark(s: &tantivy::snippet::Snippet, opts: &HighlightOptions) -> String {
    let fragment = s.fragment();
    let mut out = String::with_capacity(fragment.len() + 16);
    let mut at = 0;
    for r in s.highlighted() {
        if r.start < at || r.end > fragment.len() {
            continue;
        }
        out.push_str(&fragment[at..r.start]);
        out.push_str(&opts.pre);
        out.push_str(&fragment[r.start..r.end]);
        out.push_str(&opts.post);
        at = r.end;
    }
    out.push_str(&fragment[at..]);
    out
}

#[cfg(test)]
mod tests {
    use tantivy::index::SegmentId;

    use super::*;
    use crate::tokens;

    /// Hits carry their own documents' ids whichever segment they come from, before and after the segments are
    /// merged, and the id columns of merged-away segments are forgotten.
    #[test]
    fn hits_read_ids_from_each_segments_cached_column() {
        let index = Index::create_in_ram(schema::schema());
        tokens::register(&index);
        let fields = schema::fields_of(&index.schema()).unwrap();
        let settings = TextSettings::default();
        let mut w = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for seg in 0..3 {
            for i in 0..50 {
                let text = format!("common s{seg} n{i} {}", "pad ".repeat(i % 7));
                let d = schema::document(&fields, &format!("s{seg}-{i}"), &text, None, 1);
                w.add_document(d).unwrap();
            }
            w.commit().unwrap();
        }
        let reader = index.reader().unwrap();
        let ids = IdColumns::default();
        let view = View {
            fields: &fields,
            settings: &settings,
            index: &index,
            ids: &ids,
        };
        let search = |searcher: &Searcher, q: &str, k: usize| {
            let req = SearchRequest::new(q, k);
            let prepared = view.prepare(&req).unwrap();
            view.answer(searcher, &prepared, &req, 1, Instant::now())
                .unwrap()
        };
        let check = |searcher: &Searcher| {
            for seg in 0..3 {
                for i in [0, 17, 49] {
                    let a = search(searcher, &format!("s{seg} n{i}"), 5);
                    assert_eq!(a.total, 1, "s{seg} n{i}");
                    assert_eq!(a.hits[0].id, format!("s{seg}-{i}"));
                }
            }
            let all = search(searcher, "common", 200);
            assert_eq!(all.total, 150);
            let mut got: Vec<String> = all.hits.into_iter().map(|h| h.id).collect();
            got.sort();
            let mut want: Vec<String> = (0..3)
                .flat_map(|s| (0..50).map(move |i| format!("s{s}-{i}")))
                .collect();
            want.sort();
            assert_eq!(got, want);
        };
        let searcher = reader.searcher();
        assert_eq!(searcher.segment_readers().len(), 3);
        check(&searcher);
        assert_eq!(ids.0.lock().unwrap().len(), 3, "one column per segment");
        let segs: Vec<SegmentId> = index.searchable_segment_ids().unwrap();
        w.merge(&segs).wait().unwrap();
        reader.reload().unwrap();
        let searcher = reader.searcher();
        assert_eq!(searcher.segment_readers().len(), 1);
        check(&searcher);
        let cached = ids.0.lock().unwrap();
        assert_eq!(cached.len(), 1, "merged-away segments forgotten");
        assert!(cached.contains_key(&searcher.segment_readers()[0].segment_id()));
    }
}
