//! A seeded synthetic corpus for tests and the benchmark: short documents (10–30 words) drawn from a Zipf
//! vocabulary of pronounceable words, with a little meta (`year`, `lang`, `draft`); the benchmark's query classes
//! over it, shared by `benches/fts.rs` and the `prof` example so both time the same queries.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use store::Document;
use store::derived::Change;

const SYLLABLES: [&str; 24] = [
    "ka", "to", "ri", "mu", "ne", "sa", "lo", "pi", "da", "ve", "zu", "ho", "ga", "fi", "be", "no",
    "ru", "ta", "me", "si", "ko", "la", "di", "po",
];

/// The word of rank `r` (0 is the most frequent): distinct for every rank, two or more syllables.
pub fn word(r: usize) -> String {
    let mut n = r + SYLLABLES.len();
    let mut parts = Vec::new();
    while n > 0 {
        parts.push(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
    }
    parts.reverse();
    parts.concat()
}

/// A corpus generator.
pub struct Corpus {
    cumulative: Vec<f64>,
    rng: StdRng,
    n_made: usize,
}

/// One generated document.
#[derive(Clone, Debug)]
pub struct SynthDoc {
    /// `d<number>`.
    pub id: String,
    /// 10–30 words.
    pub text: String,
    /// `{"year": 2000..2024, "lang": "en"|"fr"|"de", "draft": bool}`.
    pub meta: Map<String, Value>,
}

impl Corpus {
    /// A corpus over `vocabulary` words with Zipf exponent `s` (1.0 is the classic), seeded.
    pub fn new(vocabulary: usize, s: f64, seed: u64) -> Corpus {
        let mut cumulative = Vec::with_capacity(vocabulary);
        let mut sum = 0.0;
        for r in 1..=vocabulary.max(1) {
            sum += 1.0 / (r as f64).powf(s);
            cumulative.push(sum);
        }
        Corpus {
            cumulative,
            rng: StdRng::seed_from_u64(seed),
            n_made: 0,
        }
    }

    /// The rank of a word drawn from the Zipf distribution.
    pub fn draw_rank(&mut self) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let u = self.rng.random::<f64>() * total;
        self.cumulative.partition_point(|c| *c < u)
    }

    /// The next document.
    pub fn next_doc(&mut self) -> SynthDoc {
        let n_words = self.rng.random_range(10..=30);
        let words: Vec<String> = (0..n_words).map(|_| word(self.draw_rank())).collect();
        let i = self.n_made;
        self.n_made += 1;
        let lang = ["en", "fr", "de"][self.rng.random_range(0..3)];
        let meta = json!({
            "year": 2000 + (i % 25) as i64,
            "lang": lang,
            "draft": i.is_multiple_of(7),
        });
        SynthDoc {
            id: format!("d{i}"),
            text: words.join(" "),
            meta: meta.as_object().cloned().unwrap_or_default(),
        }
    }

    /// `n` documents.
    pub fn docs(&mut self, n: usize) -> Vec<SynthDoc> {
        (0..n).map(|_| self.next_doc()).collect()
    }
}

impl SynthDoc {
    /// The document as the log's put of `id` at `lsn` in the collection `default`.
    pub fn change(&self, lsn: u64, id: &str) -> Change {
        Change {
            lsn,
            collection: Arc::from("default"),
            id: Arc::from(id),
            doc: Some(Arc::new(Document {
                text: self.text.clone(),
                vector: None,
                meta: Some(self.meta.clone()),
            })),
        }
    }
}

/// One class of the benchmark's queries: medic's query strings and the same queries in FTS5's syntax.
pub struct QueryClass {
    /// As the benchmark's table prints it, e.g. `two-term AND`.
    pub name: &'static str,
    /// A short name to pick the class by, e.g. `and`.
    pub key: &'static str,
    pub ours: Vec<String>,
    pub fts5: Vec<String>,
}

/// `n` queries of each class (rare, mid-frequency and common term, two-term AND and OR, phrase, prefix), chosen by
/// word rank so that each class has the document frequency its name says over a [`Corpus`] with `s` = 1.0.
pub fn query_classes(n: usize) -> Vec<QueryClass> {
    let pick = |lo: usize, hi: usize, i: usize| lo + (i * 7919) % (hi - lo);
    let mut out = Vec::new();
    let mut class = |name, key, f: &dyn Fn(usize) -> (String, String)| {
        let (ours, fts5) = (0..n).map(f).unzip();
        out.push(QueryClass {
            name,
            key,
            ours,
            fts5,
        });
    };
    let same = |q: String| (q.clone(), q);
    class("rare term", "rare", &|i| same(word(pick(5_000, 20_000, i))));
    class("mid-frequency term", "mid", &|i| {
        same(word(pick(100, 400, i)))
    });
    class("common term (>20% of docs)", "common", &|i| {
        same(word(i % 3))
    });
    class("two-term AND", "and", &|i| {
        let (a, b) = (word(pick(0, 30, i)), word(pick(50, 300, i + 1)));
        (format!("{a} {b}"), format!("{a} AND {b}"))
    });
    class("two-term OR", "or", &|i| {
        let (a, b) = (word(pick(20, 200, i)), word(pick(200, 2000, i + 3)));
        same(format!("{a} OR {b}"))
    });
    class("phrase", "phrase", &|i| {
        let (a, b) = (word(pick(0, 10, i)), word(pick(0, 40, i + 5)));
        same(format!("\"{a} {b}\""))
    });
    class("prefix", "prefix", &|i| {
        same(format!("{}*", &word(pick(30, 600, i))[..3]))
    });
    out
}

/// The value at quantile `p` (0..=1) of ascending `sorted`, by nearest rank; NaN when it is empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_distinct_and_the_corpus_is_seeded() {
        let words: std::collections::HashSet<String> = (0..5000).map(word).collect();
        assert_eq!(words.len(), 5000);
        let a = Corpus::new(1000, 1.0, 7).docs(20);
        let b = Corpus::new(1000, 1.0, 7).docs(20);
        assert_eq!(
            a.iter().map(|d| &d.text).collect::<Vec<_>>(),
            b.iter().map(|d| &d.text).collect::<Vec<_>>()
        );
        assert!(
            a.iter()
                .all(|d| (10..=30).contains(&d.text.split(' ').count()))
        );
    }
}
