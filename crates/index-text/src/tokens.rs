//! Terms derived from the text's tokens at index time, both starting from the text's own analysis
//! ([`base_analyzer`], tantivy's `default`: split on non-alphanumerics, tokens over 40 bytes dropped, lower case), so
//! a query's tokens are the same characters as the text's:
//!
//! - [`PREFIXES`]: the first 1..=[`PREFIX_CHARS_MAX`] characters of every token. A prefix `wor*` of at most that
//!   many characters is then one term (its document frequency is the exact `total`, its postings prune by block-max
//!   WAND), not the union of the postings of every term of the dictionary that starts with it (Elasticsearch's
//!   `index_prefixes` is the same idea).
//! - [`PAIRS`]: every two adjacent tokens hashed into one of [`PAIR_BUCKETS`] buckets, a bucket one term (indexed
//!   with document ids only: no frequencies, positions or norms). A phrase is answered by its own postings and
//!   positions as before, intersected first with the buckets of its adjacent pairs: the positions check then runs
//!   on the documents that hold each pair or a pair hashed to the same bucket, not on every document that holds all
//!   the phrase's words. A bucket's postings are a superset of the pair's documents, so answers and scores do not
//!   change.
//!
//! A term per distinct pair (Elasticsearch's `index_phrases`) was measured and left out: at 20,000 documents it made
//! bulk indexing 3.8× slower and the index 2.3× larger (tantivy's term dictionary of millions of distinct pairs),
//! which would miss the rebuild target of 50,000 documents/s (BENCHMARKS.md, full-text section). Hashing bounds the
//! dictionary at [`PAIR_BUCKETS`] terms.

use tantivy::Index;
use tantivy::tokenizer::{
    LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// The tokenizer name of the prefixes field.
pub(crate) const PREFIXES: &str = "medic_prefixes";
/// Prefixes of at most this many characters are indexed; a longer `word*` expands over the term dictionary.
pub const PREFIX_CHARS_MAX: usize = 4;
/// The tokenizer name of the pairs field. It names the hashing: a change of [`bucket`] or [`PAIR_BUCKETS`] takes a
/// new name, so an index written with the old one no longer matches the schema and is rebuilt (its phrases would
/// otherwise miss documents).
pub(crate) const PAIRS: &str = "medic_pairs_fnv1a_12";
/// Adjacent-token pairs are hashed into this many buckets (a power of two; four hex digits name one). Few buckets
/// keep indexing cheap (each new pair a cache miss in tantivy's term table): over a whole benchmark run at 50,000
/// documents 65,536 buckets took about 1.5× the CPU of none, 4,096 about 1.1×; at 1M documents bulk indexing with
/// 4,096 is still about 1.4× slower than without pairs. A second hash into another 4,096 (a phrase's candidates in
/// both of its pair's buckets) made bulk indexing about 1.3× slower again and phrases no faster (BENCHMARKS.md). The price is
/// sharing: at 1M documents of about 20 words a bucket also holds some 4,600 documents of other pairs, each one
/// positions check more for a phrase hashed there.
pub const PAIR_BUCKETS: u32 = 1 << 12;

/// The text field's analysis (tantivy's `default` tokenizer, rebuilt here so the derived fields share it).
pub(crate) fn base_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .build()
}

/// Registers the derived tokenizers on `index` (every index of this schema, before it is written or searched).
pub(crate) fn register(index: &Index) {
    index.tokenizers().register(PREFIXES, Prefixes::new());
    index.tokenizers().register(PAIRS, Pairs::new());
}

/// The bucket of the adjacent tokens `left`, `right` (as the text's analysis produced them): FNV-1a over `left`,
/// a 0xFF byte (never in UTF-8), `right`, folded to [`PAIR_BUCKETS`]. Fixed across builds and machines: the index
/// stores it.
fn bucket(left: &str, right: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in left.bytes().chain([0xFF]).chain(right.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((h ^ (h >> 32)) as u32) & (PAIR_BUCKETS - 1)
}

/// Writes the term of `bucket` (four lower-case hex digits) into `out`.
fn push_bucket_term(out: &mut String, bucket: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in [12, 8, 4, 0] {
        out.push(char::from(HEX[((bucket >> shift) & 0xF) as usize]));
    }
}

/// The term of the pairs field for the adjacent tokens `left`, `right`.
pub(crate) fn pair_term(left: &str, right: &str) -> String {
    let mut s = String::with_capacity(4);
    push_bucket_term(&mut s, bucket(left, right));
    s
}

/// Tokens reused from one text to the next: no allocation per token once warm.
#[derive(Clone, Default)]
struct Out {
    tokens: Vec<Token>,
    n: usize,
}

impl Out {
    /// The next token to fill, its text cleared.
    fn next(&mut self) -> &mut Token {
        if self.n == self.tokens.len() {
            self.tokens.push(Token::default());
        }
        let t = &mut self.tokens[self.n];
        self.n += 1;
        t.text.clear();
        t.position_length = 1;
        t
    }

    fn stream(&mut self) -> DerivedStream<'_> {
        DerivedStream {
            tokens: &mut self.tokens[..self.n],
            next: 0,
        }
    }
}

/// The tokenizer of the prefixes field: each base token's first 1..=[`PREFIX_CHARS_MAX`] characters.
#[derive(Clone)]
pub(crate) struct Prefixes {
    base: TextAnalyzer,
    out: Out,
}

impl Prefixes {
    fn new() -> Prefixes {
        Prefixes {
            base: base_analyzer(),
            out: Out::default(),
        }
    }

    /// The prefixes of the tokens of `text`, in position order.
    fn derive(&mut self, text: &str) {
        self.out.n = 0;
        let mut stream = self.base.token_stream(text);
        while stream.advance() {
            let t = stream.token();
            for (end, c) in t.text.char_indices().take(PREFIX_CHARS_MAX) {
                let o = self.out.next();
                o.offset_from = t.offset_from;
                o.offset_to = t.offset_to;
                o.position = t.position;
                o.text.push_str(&t.text[..end + c.len_utf8()]);
            }
        }
    }
}

impl Tokenizer for Prefixes {
    type TokenStream<'a> = DerivedStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> DerivedStream<'a> {
        self.derive(text);
        self.out.stream()
    }
}

/// The tokenizer of the pairs field: the bucket term of every two base tokens at adjacent positions (a token the
/// analysis dropped leaves a gap no phrase spans, so no pair is made across it).
#[derive(Clone)]
pub(crate) struct Pairs {
    base: TextAnalyzer,
    out: Out,
    /// The previous token's text.
    left: String,
}

impl Pairs {
    fn new() -> Pairs {
        Pairs {
            base: base_analyzer(),
            out: Out::default(),
            left: String::new(),
        }
    }

    /// The pair terms of `text`, in position order.
    fn derive(&mut self, text: &str) {
        self.out.n = 0;
        let mut left_at: Option<(usize, usize)> = None; // (position, offset_from) of the previous token
        let mut stream = self.base.token_stream(text);
        while stream.advance() {
            let t = stream.token();
            if let Some((position, offset_from)) = left_at
                && position + 1 == t.position
            {
                let b = bucket(&self.left, &t.text);
                let o = self.out.next();
                o.offset_from = offset_from;
                o.offset_to = t.offset_to;
                o.position = position;
                push_bucket_term(&mut o.text, b);
            }
            self.left.clear();
            self.left.push_str(&t.text);
            left_at = Some((t.position, t.offset_from));
        }
    }
}

impl Tokenizer for Pairs {
    type TokenStream<'a> = DerivedStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> DerivedStream<'a> {
        self.derive(text);
        self.out.stream()
    }
}

/// The derived tokens of one text.
pub(crate) struct DerivedStream<'a> {
    tokens: &'a mut [Token],
    next: usize,
}

impl TokenStream for DerivedStream<'_> {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms<T: Tokenizer>(mut t: T, text: &str) -> Vec<(usize, String)> {
        let mut s = t.token_stream(text);
        let mut out = Vec::new();
        while s.advance() {
            out.push((s.token().position, s.token().text.clone()));
        }
        out
    }

    #[test]
    fn prefixes_are_the_first_characters_up_to_the_maximum() {
        assert_eq!(
            terms(Prefixes::new(), "Hello ab é漢字x"),
            vec![
                (0, "h".to_string()),
                (0, "he".to_string()),
                (0, "hel".to_string()),
                (0, "hell".to_string()),
                (1, "a".to_string()),
                (1, "ab".to_string()),
                (2, "é".to_string()),
                (2, "é漢".to_string()),
                (2, "é漢字".to_string()),
                (2, "é漢字x".to_string()),
            ]
        );
    }

    #[test]
    fn pairs_are_the_buckets_of_adjacent_lower_cased_tokens() {
        let long = "x".repeat(41);
        let text = format!("The cat, THE dog {long} bird");
        assert_eq!(
            terms(Pairs::new(), &text),
            [(0, "the", "cat"), (1, "cat", "the"), (2, "the", "dog")]
                .iter()
                .map(|(p, l, r)| (*p, pair_term(l, r)))
                .collect::<Vec<_>>(),
            // "dog" and "bird" are not adjacent: the long token between them was dropped.
        );
        assert!(terms(Pairs::new(), "one").is_empty());
        assert!(terms(Pairs::new(), "").is_empty());
    }

    #[test]
    fn buckets_are_fixed_four_hex_digits_and_order_matters() {
        // Pinned: the index stores these terms, so a change of hashing must come with a new tokenizer name (PAIRS).
        assert_eq!(pair_term("the", "cat"), "0f37");
        assert_eq!(PAIRS, "medic_pairs_fnv1a_12");
        assert!(bucket("the", "cat") < PAIR_BUCKETS);
        assert_ne!(bucket("the", "cat"), bucket("cat", "the"));
        assert_ne!(bucket("ab", "c"), bucket("a", "bc"));
        // Spread: as many distinct pairs as buckets land in 1 - 1/e (63%) of them when hashing is uniform.
        let n = PAIR_BUCKETS as usize;
        let distinct: std::collections::HashSet<u32> = (0..n)
            .map(|i| bucket(&format!("w{}", i % 64), &format!("w{}", i / 64)))
            .collect();
        assert!(distinct.len() * 100 > n * 60, "{} of {n}", distinct.len());
    }
}
