//! A seeded synthetic corpus for tests and the benchmark: short documents (10–30 words) drawn from a Zipf
//! vocabulary of pronounceable words, with a little meta (`year`, `lang`, `draft`).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

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
