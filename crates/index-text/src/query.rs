//! The query language, parsed with tantivy's grammar and built into tantivy queries here (so that a single-term
//! prefix, per-field meta terms and every error's column work as documented):
//!
//! - `word` — a term of the text (lower-cased as the text was); terms side by side are **all required**;
//! - `"two words"` — a phrase (`"two words"~2`: up to 2 positions apart); `"two wo"*` — a phrase whose last term
//!   is a prefix;
//! - `+word` — required (the default), `-word` — excluded; `a OR b` — either; `a AND b` — both; `( )` groups;
//! - `wor*` — every term starting with `wor`;
//! - `field:value` — a meta field (`lang:en`, `year:2021`, `draft:false`, `year:[2020 TO 2022}`,
//!   `lang: IN [en fr]`); `text:word` is the text itself;
//! - `*` — every document (to page through a filter's matches).
//!
//! Ranking is BM25 over the text; meta-field clauses only select.
//!
//! A phrase without slop also requires the buckets of its adjacent pairs (`tokens`' pairs field, a constant score of
//! 0): tantivy's intersection then drives from the shortest of those postings and checks positions only where every
//! pair's bucket holds the document. Hits, scores and `total` are the phrase's own.

use tantivy::Term;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, PhrasePrefixQuery,
    PhraseQuery, Query, TermQuery,
};
use tantivy::query_grammar::{
    Delimiter, UserInputAst, UserInputBound, UserInputLeaf, UserInputLiteral, parse_query,
    parse_query_lenient,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::tokenizer::TokenStream;

use crate::QueryError;
use crate::filter::{Filter, Number, Scalar, eq_query};
use crate::schema::Fields;
use crate::settings::{FieldKind, QUERY_BYTES_MAX, QUERY_DEPTH_MAX, TextSettings};
use crate::tokens::{self, PREFIX_CHARS_MAX};

/// A term of the text that a hit may contain, for highlighting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Highlight {
    /// An exact term.
    Term(String),
    /// Every term with this prefix.
    Prefix(String),
}

/// A query built from the user's string.
pub(crate) struct Built {
    pub(crate) query: Box<dyn Query>,
    pub(crate) highlight: Vec<Highlight>,
}

struct Builder<'a> {
    source: &'a str,
    text: Field,
    meta: Field,
    /// Token prefixes (`tokens::PREFIXES`): `wor*` of at most [`PREFIX_CHARS_MAX`] characters.
    prefixes: Field,
    /// Adjacent-token pair buckets (`tokens::PAIRS`): a phrase's candidates.
    pairs: Field,
    analyzer: TextAnalyzer,
    settings: &'a TextSettings,
    highlight: Vec<Highlight>,
}

/// The 1-based character column of byte offset `pos` in `s`.
pub(crate) fn column_of(s: &str, pos: usize) -> usize {
    let mut pos = pos.min(s.len());
    while !s.is_char_boundary(pos) {
        pos -= 1;
    }
    s[..pos].chars().count() + 1
}

fn check_shape(q: &str) -> Result<(), QueryError> {
    if q.len() > QUERY_BYTES_MAX {
        return Err(QueryError::TooLong {
            bytes: q.len(),
            max: QUERY_BYTES_MAX,
        });
    }
    if q.trim().is_empty() {
        return Err(QueryError::Empty);
    }
    let mut depth = 0usize;
    let mut quoted = false;
    for (i, c) in q.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => {
                depth += 1;
                if depth > QUERY_DEPTH_MAX {
                    return Err(QueryError::TooDeep {
                        column: column_of(q, i),
                        max: QUERY_DEPTH_MAX,
                    });
                }
            }
            ')' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// One piece of a query as [`diagnose`] sees it, with its byte offset.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    Open,
    Close,
    /// A word, a phrase, a range or a `field:` (with its text).
    Term(&'a str),
    /// `AND` or `OR`.
    Operator(&'a str),
}

/// What is wrong with a query the strict grammar refused, and at which column: an unbalanced parenthesis, quote or
/// range bracket, an operator (`AND`, `OR`, `+`, `-`) without its term, a `field:` without its value. `None` when
/// none of these is found.
fn diagnose(q: &str) -> Option<(usize, String)> {
    let col = |i: usize| column_of(q, i);
    let bytes = q.as_bytes();
    let mut pieces: Vec<(usize, Piece<'_>)> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                open.push(i);
                pieces.push((i, Piece::Open));
                i += 1;
            }
            b')' => {
                if open.pop().is_none() {
                    return Some((
                        col(i),
                        "')' closes a group that was never opened".to_string(),
                    ));
                }
                if let Some(&(at, Piece::Open)) = pieces.last() {
                    return Some((
                        col(at),
                        "'()' is an empty group: put a term inside".to_string(),
                    ));
                }
                pieces.push((i, Piece::Close));
                i += 1;
            }
            b'"' => {
                let Some(end) = q[i + 1..].find('"') else {
                    return Some((
                        col(i),
                        "'\"' opens a phrase that is never closed".to_string(),
                    ));
                };
                pieces.push((i, Piece::Term(&q[i..i + end + 2])));
                i += end + 2;
            }
            b'[' | b'{' => {
                let Some(end) = q[i + 1..].find([']', '}']) else {
                    return Some((
                        col(i),
                        format!("'{}' opens a range that is never closed", c as char),
                    ));
                };
                pieces.push((i, Piece::Term(&q[i..i + end + 2])));
                i += end + 2;
            }
            _ => {
                let start = i;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i += 2,
                        b' ' | b'\t' | b'\n' | b'\r' | b'(' | b')' | b'"' | b'[' | b'{' => break,
                        _ => i += 1,
                    }
                }
                let i_end = i.min(bytes.len());
                i = i_end;
                let word = &q[start..i_end];
                match word {
                    "AND" | "OR" => pieces.push((start, Piece::Operator(word))),
                    "+" | "-" => {
                        return Some((
                            col(start),
                            format!("'{word}' needs a term right after it, with no space"),
                        ));
                    }
                    _ => pieces.push((start, Piece::Term(word))),
                }
            }
        }
    }
    if let Some(&at) = open.last() {
        return Some((
            col(at),
            "'(' opens a group that is never closed".to_string(),
        ));
    }
    for (k, &(at, piece)) in pieces.iter().enumerate() {
        let before = k.checked_sub(1).map(|j| pieces[j].1);
        let after = pieces.get(k + 1).map(|p| p.1);
        match piece {
            Piece::Operator(op) => {
                if !matches!(after, Some(Piece::Term(_) | Piece::Open)) {
                    return Some((col(at), format!("{op} needs a term after it")));
                }
                if !matches!(before, Some(Piece::Term(_) | Piece::Close)) {
                    return Some((col(at), format!("{op} needs a term before it")));
                }
            }
            Piece::Term(t)
                if t.ends_with(':')
                    && !t.ends_with("\\:")
                    && !matches!(after, Some(Piece::Term(_) | Piece::Open)) =>
            {
                return Some((col(at), format!("'{t}' needs a value after it")));
            }
            _ => {}
        }
    }
    None
}

/// Parses `q` into a tantivy query over the fields `text` and `meta`.
pub(crate) fn build(
    q: &str,
    fields: &Fields,
    analyzer: TextAnalyzer,
    settings: &TextSettings,
) -> Result<Built, QueryError> {
    check_shape(q)?;
    let (_recovered, errors) = parse_query_lenient(q);
    if let Some(e) = errors.first() {
        return Err(QueryError::Syntax {
            column: column_of(q, e.pos),
            message: e.message.clone(),
        });
    }
    // The lenient parser recovers silently from a few shapes the strict one refuses: trust only what both accept.
    // The strict one says no more than that it failed: what is wrong and where is worked out here.
    let ast = parse_query(q).map_err(|_| {
        let (column, message) = diagnose(q).unwrap_or_else(|| {
            (
                1,
                "the query does not parse (check its parentheses, quotes and AND/OR)".to_string(),
            )
        });
        QueryError::Syntax { column, message }
    })?;
    let mut b = Builder {
        source: q,
        text: fields.text,
        meta: fields.meta,
        prefixes: fields.prefixes,
        pairs: fields.pairs,
        analyzer,
        settings,
        highlight: Vec::new(),
    };
    let query = b.ast(&ast)?.ok_or(QueryError::Empty)?;
    Ok(Built {
        query,
        highlight: b.highlight,
    })
}

impl Builder<'_> {
    /// Where `field:` first appears in the query (1 when it cannot be found).
    fn column_of_field(&self, field: &str) -> usize {
        self.source
            .find(&format!("{field}:"))
            .map_or(1, |i| column_of(self.source, i))
    }

    fn column_of_word(&self, word: &str) -> usize {
        self.source
            .find(word)
            .map_or(1, |i| column_of(self.source, i))
    }

    fn ast(&mut self, ast: &UserInputAst) -> Result<Option<Box<dyn Query>>, QueryError> {
        match ast {
            UserInputAst::Clause(clauses) => {
                let mut parts: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(clauses.len());
                for (occur, sub) in clauses {
                    if let Some(q) = self.ast(sub)? {
                        parts.push((occur.unwrap_or(Occur::Must), q));
                    }
                }
                if parts.is_empty() {
                    return Ok(None);
                }
                if parts.iter().all(|(o, _)| *o == Occur::MustNot) {
                    let column = self
                        .source
                        .find('-')
                        .map_or(1, |i| column_of(self.source, i));
                    return Err(QueryError::OnlyExcluded { column });
                }
                if parts.len() == 1 && parts[0].0 != Occur::MustNot {
                    return Ok(parts.pop().map(|(_, q)| q));
                }
                Ok(Some(Box::new(BooleanQuery::new(parts))))
            }
            UserInputAst::Boost(sub, boost) => Ok(self.ast(sub)?.map(|q| {
                Box::new(BoostQuery::new(q, boost.into_inner() as f32)) as Box<dyn Query>
            })),
            UserInputAst::Leaf(leaf) => self.leaf(leaf),
        }
    }

    fn leaf(&mut self, leaf: &UserInputLeaf) -> Result<Option<Box<dyn Query>>, QueryError> {
        match leaf {
            UserInputLeaf::All => Ok(Some(Box::new(AllQuery))),
            UserInputLeaf::Literal(lit) => {
                let lit = self.wildcard(lit)?;
                match lit.field_name.as_deref() {
                    None | Some("text") => Ok(self.text_literal(&lit)),
                    Some(field) => self.meta_literal(field, &lit).map(Some),
                }
            }
            UserInputLeaf::Range {
                field,
                lower,
                upper,
            } => {
                let Some(field) = field.as_deref().filter(|f| *f != "text") else {
                    return Err(QueryError::Field {
                        column: self.column_of_word("TO"),
                        field: "text".to_string(),
                        message: "a range needs a numeric meta field (year:[2000 TO 2010])"
                            .to_string(),
                    });
                };
                self.meta_range(field, lower, upper).map(Some)
            }
            UserInputLeaf::Set { field, elements } => {
                let field = field.as_deref().unwrap_or("text");
                if field == "text" {
                    return Err(QueryError::Field {
                        column: self.column_of_word("IN"),
                        field: "text".to_string(),
                        message: "IN [...] needs a meta field (lang: IN [en fr])".to_string(),
                    });
                }
                let kind = self.kind(field)?;
                let values = elements
                    .iter()
                    .map(|e| self.scalar(field, kind, e))
                    .collect::<Result<Vec<_>, _>>()?;
                let f = Filter::In {
                    field: field.to_string(),
                    values,
                };
                Ok(Some(Box::new(ConstScoreQuery::new(
                    f.to_query(self.meta),
                    1.0,
                ))))
            }
            UserInputLeaf::Exists { field } => Err(QueryError::Field {
                column: self.column_of_field(field),
                field: field.clone(),
                message: "field:* (exists) is not supported; use a filter".to_string(),
            }),
            UserInputLeaf::Regex { field, .. } => {
                let field = field.clone().unwrap_or_else(|| "text".to_string());
                Err(QueryError::Field {
                    column: self
                        .source
                        .find('/')
                        .map_or(1, |i| column_of(self.source, i)),
                    field,
                    message: "regular expressions are not supported".to_string(),
                })
            }
        }
    }

    /// An unquoted `word*` is a prefix (the grammar keeps the `*` in the word); other wildcards are refused.
    fn wildcard(&self, lit: &UserInputLiteral) -> Result<UserInputLiteral, QueryError> {
        let mut lit = lit.clone();
        if lit.delimiter != Delimiter::None || !lit.phrase.contains('*') {
            return Ok(lit);
        }
        let stem = lit.phrase.strip_suffix('*').unwrap_or(&lit.phrase);
        if stem.is_empty() || stem.contains('*') || !lit.phrase.ends_with('*') {
            return Err(QueryError::Field {
                column: self.column_of_word(&lit.phrase),
                field: lit.field_name.clone().unwrap_or_else(|| "text".to_string()),
                message: format!("{:?}: only a trailing * (prefix) is supported", lit.phrase),
            });
        }
        lit.phrase = stem.to_string();
        lit.prefix = true;
        Ok(lit)
    }

    fn tokens(&mut self, s: &str) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let mut stream = self.analyzer.token_stream(s);
        while stream.advance() {
            let t = stream.token();
            out.push((t.position, t.text.clone()));
        }
        out
    }

    fn text_literal(&mut self, lit: &UserInputLiteral) -> Option<Box<dyn Query>> {
        let tokens = self.tokens(&lit.phrase);
        let term = |t: &str| Term::from_field_text(self.text, t);
        match tokens.len() {
            0 => None,
            1 => {
                let t = &tokens[0].1;
                if lit.prefix {
                    self.highlight.push(Highlight::Prefix(t.clone()));
                    if t.chars().count() <= PREFIX_CHARS_MAX {
                        // One indexed prefix term: BM25 over the prefix's occurrences, exact total from its postings.
                        Some(Box::new(TermQuery::new(
                            Term::from_field_text(self.prefixes, t),
                            IndexRecordOption::WithFreqs,
                        )))
                    } else {
                        Some(Box::new(FuzzyTermQuery::new_prefix(term(t), 0, true)))
                    }
                } else {
                    self.highlight.push(Highlight::Term(t.clone()));
                    Some(Box::new(TermQuery::new(
                        term(t),
                        IndexRecordOption::WithFreqs,
                    )))
                }
            }
            n => {
                let terms: Vec<(usize, Term)> = tokens.iter().map(|(p, t)| (*p, term(t))).collect();
                for (i, (_, t)) in tokens.iter().enumerate() {
                    self.highlight.push(if lit.prefix && i == n - 1 {
                        Highlight::Prefix(t.clone())
                    } else {
                        Highlight::Term(t.clone())
                    });
                }
                if lit.prefix {
                    // The last token is a prefix: only the pairs before it are whole.
                    let whole = &tokens[..n - 1];
                    let phrase = Box::new(PhrasePrefixQuery::new_with_offset(terms));
                    Some(self.with_pairs(phrase, whole))
                } else if lit.slop == 0 {
                    let phrase = Box::new(PhraseQuery::new_with_offset(terms));
                    Some(self.with_pairs(phrase, &tokens))
                } else {
                    Some(Box::new(PhraseQuery::new_with_offset_and_slop(
                        terms, lit.slop,
                    )))
                }
            }
        }
    }

    /// `phrase` (exact adjacency) intersected with the bucket of each adjacent pair of `tokens` (position and text,
    /// as the analysis gave them), each at a constant score of 0 so the score stays the phrase's. Pairs across a
    /// position gap (a token the analysis dropped) are not indexed and not required.
    fn with_pairs(&self, phrase: Box<dyn Query>, tokens: &[(usize, String)]) -> Box<dyn Query> {
        let mut buckets: Vec<String> = tokens
            .windows(2)
            .filter(|w| w[0].0 + 1 == w[1].0)
            .map(|w| tokens::pair_term(&w[0].1, &w[1].1))
            .collect();
        buckets.sort_unstable();
        buckets.dedup();
        if buckets.is_empty() {
            return phrase;
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(buckets.len() + 1);
        clauses.push((Occur::Must, phrase));
        for b in buckets {
            let term = TermQuery::new(
                Term::from_field_text(self.pairs, &b),
                IndexRecordOption::Basic,
            );
            clauses.push((
                Occur::Must,
                Box::new(ConstScoreQuery::new(Box::new(term), 0.0)),
            ));
        }
        Box::new(BooleanQuery::new(clauses))
    }

    fn kind(&self, field: &str) -> Result<Option<FieldKind>, QueryError> {
        self.settings
            .kind_of(field)
            .map_err(|()| QueryError::UnknownField {
                column: self.column_of_field(field),
                field: field.to_string(),
                declared: self.settings.declared(),
            })
    }

    /// A value of a meta field written in the query: typed by the declaration, or guessed (number, bool, string).
    fn scalar(&self, field: &str, kind: Option<FieldKind>, s: &str) -> Result<Scalar, QueryError> {
        let bad = |what: &str| QueryError::Field {
            column: self.column_of_field(field),
            field: field.to_string(),
            message: format!("{s:?} is not {what}"),
        };
        Ok(match kind {
            Some(FieldKind::Keyword) => Scalar::Str(s.to_string()),
            Some(FieldKind::Integer) => {
                Scalar::Num(Number::Int(s.parse().map_err(|_| bad("an integer"))?))
            }
            Some(FieldKind::Float) => Scalar::Num(float(s).ok_or_else(|| bad("a number"))?),
            Some(FieldKind::Bool) => Scalar::Bool(s.parse().map_err(|_| bad("true or false"))?),
            None => {
                if let Ok(b) = s.parse::<bool>() {
                    Scalar::Bool(b)
                } else if let Some(n) = float(s) {
                    Scalar::Num(n)
                } else {
                    Scalar::Str(s.to_string())
                }
            }
        })
    }

    fn meta_literal(
        &mut self,
        field: &str,
        lit: &UserInputLiteral,
    ) -> Result<Box<dyn Query>, QueryError> {
        let kind = self.kind(field)?;
        if lit.prefix || lit.slop > 0 {
            return Err(QueryError::Field {
                column: self.column_of_field(field),
                field: field.to_string(),
                message: "prefix (*) and slop (~) apply to the text only".to_string(),
            });
        }
        // A quoted value is always a string.
        let value = if lit.delimiter == Delimiter::None {
            self.scalar(field, kind, &lit.phrase)?
        } else {
            match kind {
                None | Some(FieldKind::Keyword) => Scalar::Str(lit.phrase.clone()),
                Some(_) => self.scalar(field, kind, &lit.phrase)?,
            }
        };
        Ok(Box::new(ConstScoreQuery::new(
            eq_query(self.meta, field, &value),
            1.0,
        )))
    }

    fn meta_range(
        &self,
        field: &str,
        lower: &UserInputBound,
        upper: &UserInputBound,
    ) -> Result<Box<dyn Query>, QueryError> {
        let kind = self.kind(field)?;
        if matches!(kind, Some(FieldKind::Keyword | FieldKind::Bool)) {
            return Err(QueryError::Field {
                column: self.column_of_field(field),
                field: field.to_string(),
                message: "a range needs a numeric field".to_string(),
            });
        }
        let bound = |b: &UserInputBound| -> Result<std::ops::Bound<Number>, QueryError> {
            let num = |s: &str| {
                float(s).ok_or_else(|| QueryError::Field {
                    column: self.column_of_field(field),
                    field: field.to_string(),
                    message: format!("range bound {s:?} is not a number"),
                })
            };
            Ok(match b {
                UserInputBound::Inclusive(s) => std::ops::Bound::Included(num(s)?),
                UserInputBound::Exclusive(s) => std::ops::Bound::Excluded(num(s)?),
                UserInputBound::Unbounded => std::ops::Bound::Unbounded,
            })
        };
        let f = Filter::range(field, kind, bound(lower)?, bound(upper)?);
        Ok(Box::new(ConstScoreQuery::new(f.to_query(self.meta), 1.0)))
    }
}

fn float(s: &str) -> Option<Number> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Number::Int(i));
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Number::Float)
}

#[cfg(test)]
mod tests {
    use tantivy::Index;
    use tantivy::collector::{Count, TopDocs};

    use super::*;
    use crate::schema;
    use crate::synth::{Corpus, word};

    /// A query the strict grammar refuses is explained: what is wrong, at which column.
    #[test]
    fn a_query_that_does_not_parse_says_what_and_where() {
        for (q, column, says) in [
            ("hello(", 6, "'(' opens a group that is never closed"),
            ("(brown fox", 1, "'(' opens a group that is never closed"),
            ("brown)", 6, "')' closes a group that was never opened"),
            ("fox AND", 5, "AND needs a term after it"),
            ("(fox OR )", 6, "OR needs a term after it"),
            ("AND fox", 1, "AND needs a term before it"),
            (
                "\"unclosed phrase",
                1,
                "'\"' opens a phrase that is never closed",
            ),
            ("year:[1 TO", 6, "'[' opens a range that is never closed"),
            ("fox - dog", 5, "'-' needs a term right after it"),
            ("a () b", 3, "'()' is an empty group"),
        ] {
            let (c, m) = diagnose(q).unwrap_or_else(|| panic!("{q:?} not diagnosed"));
            assert_eq!(c, column, "{q:?}: {m}");
            assert!(m.starts_with(says), "{q:?}: {m}");
        }
        // The two a user met: refused by the grammar, and through `build` the message says what and where.
        for (q, says) in [
            ("hello(", "column 6: '(' opens a group that is never closed"),
            ("fox AND", "column 5: AND needs a term after it"),
        ] {
            assert!(parse_query(q).is_err(), "{q:?} is refused by the grammar");
            let index = Index::create_in_ram(schema::schema());
            tokens::register(&index);
            let fields = schema::fields_of(&index.schema()).unwrap();
            let settings = TextSettings::default();
            let analyzer = index.tokenizer_for_field(fields.text).unwrap();
            let e = build(q, &fields, analyzer, &settings)
                .err()
                .unwrap_or_else(|| panic!("{q:?} was accepted"));
            assert_eq!(e.to_string(), format!("query: {says}"), "{q:?}");
        }
        // Columns count characters, not bytes.
        assert_eq!(diagnose("été AND").map(|d| d.0), Some(5));
    }

    /// A phrase required with its pair buckets answers exactly what the phrase alone answers: the same hits in the
    /// same order with the same scores, and the same total.
    #[test]
    fn pair_buckets_change_no_phrase_answer() {
        let index = Index::create_in_ram(schema::schema());
        tokens::register(&index);
        let fields = schema::fields_of(&index.schema()).unwrap();
        let mut w = index.writer_with_num_threads(1, 15_000_000).unwrap();
        let long = "x".repeat(41);
        let mut texts: Vec<String> = Corpus::new(300, 1.0, 9)
            .docs(4000)
            .into_iter()
            .map(|d| d.text)
            .collect();
        texts.push(format!("alpha {long} beta gamma"));
        for (i, text) in texts.iter().enumerate() {
            let d = schema::document(&fields, &format!("d{i}"), text, None, i as u64 + 1);
            w.add_document(d).unwrap();
            if i == 2000 {
                w.commit().unwrap(); // two segments
            }
        }
        w.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let settings = TextSettings::default();
        let text_term = |t: &str| Term::from_field_text(fields.text, t);
        let collector = (TopDocs::with_limit(50).order_by_score(), Count);
        let mut matched = 0;
        let check = |q: String, alone: &dyn Query| {
            let analyzer = index.tokenizer_for_field(fields.text).unwrap();
            let built = build(&q, &fields, analyzer, &settings).unwrap();
            let (top_b, n_b) = searcher.search(&*built.query, &collector).unwrap();
            let (top_a, n_a) = searcher.search(alone, &collector).unwrap();
            assert_eq!(n_b, n_a, "{q}: total");
            assert_eq!(top_b, top_a, "{q}: hits and scores");
            (built, n_a)
        };
        for (a, b, c) in [(0, 1, 2), (3, 0, 0), (5, 17, 40), (0, 0, 0), (120, 7, 1)] {
            let (a, b, c) = (word(a), word(b), word(c));
            let pair = vec![(0, text_term(&a)), (1, text_term(&b))];
            let (built, n) = check(
                format!("\"{a} {b}\""),
                &PhraseQuery::new_with_offset_and_slop(pair.clone(), 0),
            );
            matched += n;
            assert!(
                built.query.downcast_ref::<BooleanQuery>().is_some(),
                "a phrase requires its pair's bucket"
            );
            let three = vec![(0, text_term(&a)), (1, text_term(&b)), (2, text_term(&c))];
            matched += check(
                format!("\"{a} {b} {c}\""),
                &PhraseQuery::new_with_offset_and_slop(three, 0),
            )
            .1;
            matched += check(
                format!("\"{a} {b} {}\"*", &c[..2]),
                &PhrasePrefixQuery::new_with_offset(vec![
                    (0, text_term(&a)),
                    (1, text_term(&b)),
                    (2, text_term(&c[..2])),
                ]),
            )
            .1;
            let (built, _) = check(
                format!("\"{a} {b}\"~1"),
                &PhraseQuery::new_with_offset_and_slop(pair, 1),
            );
            assert!(
                built.query.downcast_ref::<PhraseQuery>().is_some(),
                "a phrase with slop has no pairs to require"
            );
        }
        assert!(matched > 1000, "the phrases match documents: {matched}");
        // A token the analysis dropped leaves a gap: the pair across it is not required, the one after it is.
        let q = format!("\"alpha {long} beta gamma\"");
        let gap = vec![
            (0, text_term("alpha")),
            (2, text_term("beta")),
            (3, text_term("gamma")),
        ];
        let (_, n) = check(q, &PhraseQuery::new_with_offset_and_slop(gap, 0));
        assert_eq!(n, 1);
    }
}
