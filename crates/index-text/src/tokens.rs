//! Terms derived from the text's tokens at index time: [`PREFIXES`], the first 1..=[`PREFIX_CHARS_MAX`] characters
//! of every token. A prefix `wor*` of at most that many characters is then one term (its document frequency is the
//! exact `total`, its postings prune by block-max WAND), not the union of the postings of every term of the
//! dictionary that starts with it (Elasticsearch's `index_prefixes` is the same idea). It starts from the text's
//! own analysis ([`base_analyzer`], tantivy's `default`: split on non-alphanumerics, tokens over 40 bytes dropped,
//! lower case), so a query's prefix is the same characters as the text's tokens.
//!
//! Pairs of adjacent tokens (a two-word phrase as one term) were measured too and left out: at 20,000 documents
//! they made bulk indexing 3.8× slower and the index 2.3× larger (tantivy's term dictionary of millions of
//! distinct pairs), which would miss the rebuild target of 50,000 documents/s (BENCHMARKS.md, full-text section).

use tantivy::Index;
use tantivy::tokenizer::{
    LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// The tokenizer name of the prefixes field.
pub(crate) const PREFIXES: &str = "medic_prefixes";
/// Prefixes of at most this many characters are indexed; a longer `word*` expands over the term dictionary.
pub const PREFIX_CHARS_MAX: usize = 4;

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
}

/// The tokenizer of the prefixes field: each base token's first 1..=[`PREFIX_CHARS_MAX`] characters.
#[derive(Clone)]
pub(crate) struct Prefixes {
    base: TextAnalyzer,
    out: Vec<Token>,
    n_out: usize,
}

impl Prefixes {
    fn new() -> Prefixes {
        Prefixes {
            base: base_analyzer(),
            out: Vec::new(),
            n_out: 0,
        }
    }

    /// The prefixes of the tokens of `text`, in position order, into `out[..n_out]` (the tokens and their strings
    /// reused from one text to the next: no allocation per token once warm).
    fn derive(&mut self, text: &str) {
        self.n_out = 0;
        let mut stream = self.base.token_stream(text);
        while stream.advance() {
            let t = stream.token();
            for (end, c) in t.text.char_indices().take(PREFIX_CHARS_MAX) {
                if self.n_out == self.out.len() {
                    self.out.push(Token::default());
                }
                let o = &mut self.out[self.n_out];
                o.offset_from = t.offset_from;
                o.offset_to = t.offset_to;
                o.position = t.position;
                o.position_length = 1;
                o.text.clear();
                o.text.push_str(&t.text[..end + c.len_utf8()]);
                self.n_out += 1;
            }
        }
    }
}

impl Tokenizer for Prefixes {
    type TokenStream<'a> = PrefixStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> PrefixStream<'a> {
        self.derive(text);
        PrefixStream {
            tokens: &mut self.out[..self.n_out],
            next: 0,
        }
    }
}

/// The prefix tokens of one text.
pub(crate) struct PrefixStream<'a> {
    tokens: &'a mut [Token],
    next: usize,
}

impl TokenStream for PrefixStream<'_> {
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

    fn terms(mut t: Prefixes, text: &str) -> Vec<(usize, String)> {
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
}
