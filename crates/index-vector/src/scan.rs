//! The reference vector search: a full scan of one collection's documents in the store's table, under the
//! collection's metric. It answers when no vector index is attached (an offline command, a collection that keeps
//! none) and is what index tests compare against. Pages of [`PAGE_DOCS`] documents are read at a time, so memory stays
//! bounded by `k` and one page; arithmetic is in `f64`, so a score is never lost to overflow.

use serde_json::{Map, Value};
use store::{Store, StoreError};

use crate::Metric;

/// Documents read from the table per page.
pub const PAGE_DOCS: usize = 1024;

/// One document found by the scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanHit {
    /// The document's id (within its collection).
    pub id: String,
    /// Higher is closer: cosine similarity in `[-1, 1]` for cosine, `a·b` for dot, minus the Euclidean distance
    /// for L2 (the scores the daemon answers for the same metric).
    pub score: f64,
}

/// Why a scan could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The store refused the scan (e.g. degraded by an anonymous loss).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The query's dimension differs from the stored vectors'.
    #[error("query vector has dimension {got}, stored vectors have dimension {expected}")]
    Dimension { expected: usize, got: usize },
    /// A zero (or non-finite) query under cosine.
    #[error("vector has zero length: cosine similarity is undefined")]
    Zero,
}

impl ScanError {
    /// True when the query was at fault (answer 4xx).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, ScanError::Store(e) if !e.is_user_error())
    }
}

/// A test on a document's meta (a search filter).
pub type MetaPredicate<'a> = dyn Fn(Option<&Map<String, Value>>) -> bool + 'a;

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

fn l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = f64::from(x) - f64::from(y);
            d * d
        })
        .sum::<f64>()
        .sqrt()
}

/// The `k` documents of collection `c` whose vectors are closest to `query` under `metric`, among those whose meta
/// `accept` takes; highest score first, ties by id.
pub fn search_store(
    store: &Store,
    c: &str,
    query: &[f32],
    k: usize,
    metric: Metric,
    accept: &MetaPredicate<'_>,
) -> Result<Vec<ScanHit>, ScanError> {
    let qn = norm(query);
    if metric == Metric::Cosine && (qn == 0.0 || !qn.is_finite()) {
        return Err(ScanError::Zero);
    }
    let order =
        |a: &ScanHit, b: &ScanHit| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id));
    let mut hits: Vec<ScanHit> = Vec::with_capacity(2 * k + 1);
    let mut after: Option<String> = None;
    loop {
        let page = store.scan_in(c, after.as_deref(), PAGE_DOCS)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let page_len = page.len();
        for (id, doc) in page {
            let Some(v) = doc.vector else { continue };
            if !accept(doc.meta.as_ref()) {
                continue;
            }
            if v.len() != query.len() {
                return Err(ScanError::Dimension {
                    expected: v.len(),
                    got: query.len(),
                });
            }
            let score = match metric {
                Metric::Cosine => {
                    let vn = norm(&v);
                    if vn == 0.0 || !vn.is_finite() {
                        continue;
                    }
                    // Divided one norm at a time: the product of two large norms could overflow.
                    (dot(&v, query) / vn / qn).clamp(-1.0, 1.0)
                }
                Metric::Dot => dot(&v, query),
                Metric::L2 => -l2(&v, query),
            };
            if !score.is_finite() {
                continue;
            }
            hits.push(ScanHit { id, score });
            if hits.len() > 2 * k {
                hits.sort_by(order);
                hits.truncate(k);
            }
        }
        if page_len < PAGE_DOCS {
            break;
        }
    }
    hits.sort_by(order);
    hits.truncate(k);
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{Document, StoreConfig};

    fn store_with(vectors: &[(&str, [f32; 2])]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), StoreConfig::default()).unwrap();
        for (id, v) in vectors {
            s.put(
                id,
                Document {
                    text: String::new(),
                    vector: Some(v.to_vec()),
                    meta: None,
                },
            )
            .unwrap();
        }
        (dir, s)
    }

    #[test]
    fn each_metric_ranks_by_its_own_measure() {
        let (_d, s) = store_with(&[
            ("near", [1.0, 0.0]),
            ("long", [10.0, 1.0]),
            ("far", [-1.0, 0.0]),
        ]);
        let ids = |m: Metric| -> Vec<String> {
            search_store(&s, store::collection::DEFAULT, &[1.0, 0.0], 3, m, &|_| true)
                .unwrap()
                .into_iter()
                .map(|h| h.id)
                .collect()
        };
        assert_eq!(ids(Metric::Cosine), ["near", "long", "far"]);
        assert_eq!(
            ids(Metric::Dot),
            ["long", "near", "far"],
            "length counts for dot"
        );
        assert_eq!(
            ids(Metric::L2),
            ["near", "far", "long"],
            "distance, not direction, for l2"
        );
        let l2 = search_store(
            &s,
            store::collection::DEFAULT,
            &[1.0, 0.0],
            1,
            Metric::L2,
            &|_| true,
        )
        .unwrap();
        assert_eq!(l2[0].score, 0.0);
    }

    #[test]
    fn bad_queries_are_the_caller_s_fault() {
        let (_d, s) = store_with(&[("a", [1.0, 0.0])]);
        let e = search_store(
            &s,
            store::collection::DEFAULT,
            &[0.0, 0.0],
            1,
            Metric::Cosine,
            &|_| true,
        )
        .unwrap_err();
        assert!(matches!(e, ScanError::Zero) && e.is_user_error());
        let e = search_store(
            &s,
            store::collection::DEFAULT,
            &[1.0, 0.0, 0.0],
            1,
            Metric::Dot,
            &|_| true,
        )
        .unwrap_err();
        assert!(
            e.is_user_error() && e.to_string().contains("dimension 3"),
            "{e}"
        );
        // A zero query is fine for dot and l2.
        assert_eq!(
            search_store(
                &s,
                store::collection::DEFAULT,
                &[0.0, 0.0],
                1,
                Metric::L2,
                &|_| true
            )
            .unwrap()
            .len(),
            1
        );
    }
}
