//! Filters over a document's meta fields: parsed from JSON ([`Filter::parse`]), turned into a tantivy query for the
//! text index, and evaluated directly on a meta object ([`Filter::matches`], for vector search and scans).
//!
//! The JSON shape (every object is the `and` of its entries):
//! ```json
//! {"lang": "en"}                               equality (string, number or bool)
//! {"lang": {"in": ["en", "fr"]}}               one of (an array value means the same)
//! {"year": {"gte": 2020, "lt": 2024}}          numeric range: gt, gte, lt, lte (and eq)
//! {"draft": false}                             bool
//! {"and": [F, F]}  {"or": [F, F]}  {"not": F}  combinations
//! {"field": "and", "eq": 1}                    explicit form, for a field named and/or/not/field
//! ```
//! A dotted name (`author.name`) reaches into nested objects. A meta value that is an array matches when one of
//! its elements does. Errors name where in the filter they are (`filter.and[1].year.gte`).

use std::ops::Bound;

use serde_json::{Map, Value};
use tantivy::Term;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};

use crate::QueryError;
use crate::settings::{FILTER_DEPTH_MAX, FILTER_NODES_MAX, FieldKind, TextSettings};

/// A value compared for equality.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// A string (keyword).
    Str(String),
    /// A number.
    Num(Number),
    /// A bool.
    Bool(bool),
}

/// A number as given: whole numbers stay exact.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    /// A whole number.
    Int(i64),
    /// Any other number.
    Float(f64),
}

impl Number {
    fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    fn of(v: &serde_json::Number) -> Option<Number> {
        if let Some(i) = v.as_i64() {
            return Some(Number::Int(i));
        }
        v.as_f64().filter(|f| f.is_finite()).map(Number::Float)
    }

    fn cmp(self, other: Number) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Every one.
    And(Vec<Filter>),
    /// At least one.
    Or(Vec<Filter>),
    /// Not this one.
    Not(Box<Filter>),
    /// `field` equals one of `values` (one value: equality).
    In { field: String, values: Vec<Scalar> },
    /// `field` is a number within the bounds.
    Range {
        field: String,
        lower: Bound<Number>,
        upper: Bound<Number>,
    },
}

struct Parser<'a> {
    settings: &'a TextSettings,
    nodes: usize,
}

fn err(path: &str, message: impl Into<String>) -> QueryError {
    QueryError::Filter {
        path: path.to_string(),
        message: message.into(),
    }
}

const OPS: &str = "eq, in, gt, gte, lt, lte";

impl Filter {
    /// Parses a filter (see the module doc), checking field names and value types against the declared fields.
    pub fn parse(value: &Value, settings: &TextSettings) -> Result<Filter, QueryError> {
        let mut p = Parser { settings, nodes: 0 };
        p.filter(value, "filter", 0)
    }

    /// Whether a document with this meta satisfies the filter (a document without meta has no fields).
    pub fn matches(&self, meta: Option<&Map<String, Value>>) -> bool {
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches(meta)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(meta)),
            Filter::Not(f) => !f.matches(meta),
            Filter::In { field, values } => {
                leaves(meta, field).any(|v| values.iter().any(|want| scalar_eq(want, v)))
            }
            Filter::Range {
                field,
                lower,
                upper,
            } => leaves(meta, field).any(|v| match v {
                Value::Number(n) => Number::of(n).is_some_and(|n| in_bounds(n, lower, upper)),
                _ => false,
            }),
        }
    }

    /// The filter as a tantivy query over the JSON field `meta` (strings and bools through its terms, numbers
    /// through its fast columns, which compare integers and floats alike).
    pub(crate) fn to_query(&self, meta: Field) -> Box<dyn Query> {
        match self {
            Filter::And(fs) => Box::new(BooleanQuery::new(
                fs.iter().map(|f| (Occur::Must, f.to_query(meta))).collect(),
            )),
            Filter::Or(fs) => Box::new(BooleanQuery::new(
                fs.iter()
                    .map(|f| (Occur::Should, f.to_query(meta)))
                    .collect(),
            )),
            Filter::Not(f) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery) as Box<dyn Query>),
                (Occur::MustNot, f.to_query(meta)),
            ])),
            Filter::In { field, values } => {
                let mut qs: Vec<(Occur, Box<dyn Query>)> = values
                    .iter()
                    .map(|v| (Occur::Should, eq_query(meta, field, v)))
                    .collect();
                if qs.len() == 1 {
                    return qs
                        .pop()
                        .map(|(_, q)| q)
                        .unwrap_or_else(|| Box::new(AllQuery));
                }
                Box::new(BooleanQuery::new(qs))
            }
            Filter::Range {
                field,
                lower,
                upper,
            } => {
                let t = |n: &Number| num_term(meta, field, *n);
                Box::new(RangeQuery::new(map_bound(lower, t), map_bound(upper, t)))
            }
        }
    }
}

impl Filter {
    /// A range on `field` (declared `kind`) whose bounds the index can compare: on an integer field each bound
    /// becomes a whole number in `i64` (a fraction rounded inward; beyond `i64` the side is open, or the range is
    /// empty); elsewhere bounds of mixed kinds both become floats. (The index compares terms of one type only.)
    pub(crate) fn range(
        field: &str,
        kind: Option<FieldKind>,
        lower: Bound<Number>,
        upper: Bound<Number>,
    ) -> Filter {
        let (lower, upper) = if kind == Some(FieldKind::Integer) {
            (int_bound(lower, true), int_bound(upper, false))
        } else {
            let int = |b: &Bound<Number>| match b {
                Bound::Included(n) | Bound::Excluded(n) => Some(matches!(n, Number::Int(_))),
                Bound::Unbounded => None,
            };
            let mixed = matches!((int(&lower), int(&upper)), (Some(a), Some(b)) if a != b);
            let float = |b: Bound<Number>| map_bound(&b, |n| Number::Float(n.as_f64()));
            if mixed {
                (float(lower), float(upper))
            } else {
                (lower, upper)
            }
        };
        // Open on both sides (a bound beyond `i64` opened the other): every number of the field's type, closed.
        let (lower, upper) = match (lower, upper) {
            (Bound::Unbounded, Bound::Unbounded) if kind == Some(FieldKind::Integer) => (
                Bound::Included(Number::Int(i64::MIN)),
                Bound::Included(Number::Int(i64::MAX)),
            ),
            (Bound::Unbounded, Bound::Unbounded) => (
                Bound::Included(Number::Float(f64::MIN)),
                Bound::Included(Number::Float(f64::MAX)),
            ),
            other => other,
        };
        Filter::Range {
            field: field.to_string(),
            lower,
            upper,
        }
    }
}

/// A bound on an integer field as a whole number in `i64`: a fraction rounded inward (`gte 2.5` is `gte 3`); a
/// bound beyond `i64` opens that side when every integer passes it, or excludes everything (`gt i64::MAX`, `lt
/// i64::MIN`) when none does.
fn int_bound(b: Bound<Number>, lower: bool) -> Bound<Number> {
    let f = match b {
        Bound::Included(Number::Float(f)) | Bound::Excluded(Number::Float(f)) => f,
        other => return other,
    };
    let included = matches!(b, Bound::Included(_));
    // The nearest whole number on the inside of the bound, and whether it is itself inside.
    let (whole, inside) = match (lower, f.fract() == 0.0) {
        (true, true) => (f, included),
        (true, false) => (f.ceil(), true),
        (false, true) => (f, included),
        (false, false) => (f.floor(), true),
    };
    // i64::MAX as f64 rounds up to 2^63, outside i64.
    let (min, max) = (i64::MIN as f64, i64::MAX as f64);
    if (lower && whole < min) || (!lower && whole >= max) {
        return Bound::Unbounded;
    }
    if lower && whole >= max {
        return Bound::Excluded(Number::Int(i64::MAX));
    }
    if !lower && whole < min {
        return Bound::Excluded(Number::Int(i64::MIN));
    }
    let n = Number::Int(whole as i64);
    if inside {
        Bound::Included(n)
    } else {
        Bound::Excluded(n)
    }
}

fn map_bound<T, U>(b: &Bound<T>, f: impl Fn(&T) -> U) -> Bound<U> {
    match b {
        Bound::Included(v) => Bound::Included(f(v)),
        Bound::Excluded(v) => Bound::Excluded(f(v)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn json_term(meta: Field, path: &str) -> Term {
    Term::from_field_json_path(meta, path, false)
}

fn num_term(meta: Field, path: &str, n: Number) -> Term {
    let mut t = json_term(meta, path);
    match n {
        Number::Int(i) => t.append_type_and_fast_value(i),
        Number::Float(f) => t.append_type_and_fast_value(f),
    }
    t
}

/// Equality on one meta field as a query.
pub(crate) fn eq_query(meta: Field, path: &str, v: &Scalar) -> Box<dyn Query> {
    match v {
        Scalar::Str(s) => {
            let mut t = json_term(meta, path);
            t.append_type_and_str(s);
            Box::new(TermQuery::new(t, IndexRecordOption::Basic))
        }
        Scalar::Bool(b) => {
            let mut t = json_term(meta, path);
            t.append_type_and_fast_value(*b);
            Box::new(TermQuery::new(t, IndexRecordOption::Basic))
        }
        Scalar::Num(n) => {
            let t = num_term(meta, path, *n);
            Box::new(RangeQuery::new(
                Bound::Included(t.clone()),
                Bound::Included(t),
            ))
        }
    }
}

fn in_bounds(n: Number, lower: &Bound<Number>, upper: &Bound<Number>) -> bool {
    use std::cmp::Ordering::*;
    let lo = match lower {
        Bound::Included(l) => matches!(n.cmp(*l), Some(Greater | Equal)),
        Bound::Excluded(l) => matches!(n.cmp(*l), Some(Greater)),
        Bound::Unbounded => true,
    };
    let hi = match upper {
        Bound::Included(u) => matches!(n.cmp(*u), Some(Less | Equal)),
        Bound::Excluded(u) => matches!(n.cmp(*u), Some(Less)),
        Bound::Unbounded => true,
    };
    lo && hi
}

fn scalar_eq(want: &Scalar, v: &Value) -> bool {
    match (want, v) {
        (Scalar::Str(a), Value::String(b)) => a == b,
        (Scalar::Bool(a), Value::Bool(b)) => a == b,
        (Scalar::Num(a), Value::Number(b)) => {
            Number::of(b).is_some_and(|b| a.cmp(b) == Some(std::cmp::Ordering::Equal))
        }
        _ => false,
    }
}

/// The scalar values at a dotted path (array elements flattened, as tantivy indexes them).
fn leaves<'a>(meta: Option<&'a Map<String, Value>>, path: &str) -> impl Iterator<Item = &'a Value> {
    meta.map(|m| store::collection::field_leaves(m, path))
        .unwrap_or_default()
        .into_iter()
}

impl Parser<'_> {
    fn count(&mut self, path: &str) -> Result<(), QueryError> {
        self.nodes += 1;
        if self.nodes > FILTER_NODES_MAX {
            return Err(err(
                path,
                format!("more than {FILTER_NODES_MAX} conditions and values in one filter"),
            ));
        }
        Ok(())
    }

    fn filter(&mut self, v: &Value, path: &str, depth: usize) -> Result<Filter, QueryError> {
        if depth > FILTER_DEPTH_MAX {
            return Err(err(
                path,
                format!("and/or/not nested deeper than {FILTER_DEPTH_MAX}"),
            ));
        }
        let Value::Object(m) = v else {
            return Err(err(path, "expected an object"));
        };
        if m.is_empty() {
            return Err(err(path, "empty filter object"));
        }
        if let Some(field) = m.get("field") {
            let Value::String(name) = field else {
                return Err(err(&format!("{path}.field"), "expected a field name"));
            };
            let mut ops = m.clone();
            ops.remove("field");
            return self.condition(name, &Value::Object(ops), path);
        }
        let mut all = Vec::with_capacity(m.len());
        for (k, v) in m {
            let here = format!("{path}.{k}");
            self.count(&here)?;
            let f = match k.as_str() {
                "and" | "or" => {
                    let Value::Array(items) = v else {
                        return Err(err(&here, "expected an array of filters"));
                    };
                    if items.is_empty() {
                        return Err(err(&here, "empty array"));
                    }
                    let fs = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| self.filter(item, &format!("{here}[{i}]"), depth + 1))
                        .collect::<Result<Vec<_>, _>>()?;
                    if k == "and" {
                        Filter::And(fs)
                    } else {
                        Filter::Or(fs)
                    }
                }
                "not" => Filter::Not(Box::new(self.filter(v, &here, depth + 1)?)),
                field => self.condition(field, v, &here)?,
            };
            all.push(f);
        }
        Ok(if all.len() == 1 {
            all.pop().unwrap_or(Filter::And(Vec::new()))
        } else {
            Filter::And(all)
        })
    }

    fn kind(&self, field: &str, path: &str) -> Result<Option<FieldKind>, QueryError> {
        if field.is_empty() {
            return Err(err(path, "empty field name"));
        }
        self.settings.kind_of(field).map_err(|()| {
            err(
                path,
                format!(
                    "field {field:?} is not a declared meta field (declared: {})",
                    self.settings.declared()
                ),
            )
        })
    }

    fn condition(&mut self, field: &str, v: &Value, path: &str) -> Result<Filter, QueryError> {
        let kind = self.kind(field, path)?;
        match v {
            Value::Object(ops) => {
                if ops.is_empty() {
                    return Err(err(path, format!("no operator (one of {OPS})")));
                }
                let mut parts = Vec::new();
                let (mut lower, mut upper) = (Bound::Unbounded, Bound::Unbounded);
                for (op, arg) in ops {
                    let here = format!("{path}.{op}");
                    match op.as_str() {
                        "eq" => parts.push(Filter::In {
                            field: field.to_string(),
                            values: vec![self.scalar(arg, kind, &here)?],
                        }),
                        "in" => parts.push(self.one_of(field, arg, kind, &here)?),
                        "gt" | "gte" | "lt" | "lte" => {
                            let n = self.number(arg, kind, &here)?;
                            match op.as_str() {
                                "gt" => lower = Bound::Excluded(n),
                                "gte" => lower = Bound::Included(n),
                                "lt" => upper = Bound::Excluded(n),
                                _ => upper = Bound::Included(n),
                            }
                        }
                        _ => {
                            return Err(err(
                                &here,
                                format!("unknown operator {op:?} (one of {OPS})"),
                            ));
                        }
                    }
                }
                if !matches!((&lower, &upper), (Bound::Unbounded, Bound::Unbounded)) {
                    parts.push(Filter::range(field, kind, lower, upper));
                }
                Ok(if parts.len() == 1 {
                    parts.pop().unwrap_or(Filter::And(Vec::new()))
                } else {
                    Filter::And(parts)
                })
            }
            Value::Array(_) => self.one_of(field, v, kind, path),
            scalar => Ok(Filter::In {
                field: field.to_string(),
                values: vec![self.scalar(scalar, kind, path)?],
            }),
        }
    }

    fn one_of(
        &mut self,
        field: &str,
        v: &Value,
        kind: Option<FieldKind>,
        path: &str,
    ) -> Result<Filter, QueryError> {
        let Value::Array(items) = v else {
            return Err(err(path, "expected an array of values"));
        };
        if items.is_empty() {
            return Err(err(path, "empty array of values"));
        }
        let mut values = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let here = format!("{path}[{i}]");
            self.count(&here)?;
            values.push(self.scalar(item, kind, &here)?);
        }
        Ok(Filter::In {
            field: field.to_string(),
            values,
        })
    }

    fn scalar(&self, v: &Value, kind: Option<FieldKind>, path: &str) -> Result<Scalar, QueryError> {
        let s = match v {
            Value::String(s) => Scalar::Str(s.clone()),
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => Scalar::Num(
                Number::of(n).ok_or_else(|| err(path, format!("number {n} is out of range")))?,
            ),
            Value::Null => {
                return Err(err(
                    path,
                    "null is not a value a field can be compared with",
                ));
            }
            _ => return Err(err(path, "expected a string, number or bool")),
        };
        let fits = matches!(
            (kind, &s),
            (None, _)
                | (Some(FieldKind::Keyword), Scalar::Str(_))
                | (Some(FieldKind::Bool), Scalar::Bool(_))
                | (Some(FieldKind::Integer), Scalar::Num(Number::Int(_)))
                | (Some(FieldKind::Float), Scalar::Num(_))
        );
        if !fits {
            let k = kind.map_or("?", FieldKind::as_str);
            return Err(err(path, format!("the field is declared {k}; got {v}")));
        }
        Ok(s)
    }

    fn number(&self, v: &Value, kind: Option<FieldKind>, path: &str) -> Result<Number, QueryError> {
        if let Some(k @ (FieldKind::Keyword | FieldKind::Bool)) = kind {
            return Err(err(
                path,
                format!(
                    "a range needs a numeric field; the field is declared {}",
                    k.as_str()
                ),
            ));
        }
        match v {
            Value::Number(n) => {
                Number::of(n).ok_or_else(|| err(path, format!("number {n} is out of range")))
            }
            _ => Err(err(path, format!("expected a number, got {v}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<Filter, QueryError> {
        Filter::parse(&v, &TextSettings::default())
    }

    #[test]
    fn an_integer_fields_range_bounds_are_whole_numbers_in_i64() {
        use Bound::*;
        use Number::{Float, Int};
        let int = |lo, hi| match Filter::range("y", Some(FieldKind::Integer), lo, hi) {
            Filter::Range { lower, upper, .. } => (lower, upper),
            other => panic!("{other:?}"),
        };
        // Fractions rounded inward; whole floats exact.
        assert_eq!(
            int(Included(Float(2.5)), Included(Float(7.5))),
            (Included(Int(3)), Included(Int(7)))
        );
        assert_eq!(
            int(Excluded(Float(2.0)), Excluded(Float(7.0))),
            (Excluded(Int(2)), Excluded(Int(7)))
        );
        assert_eq!(
            int(Excluded(Float(2.5)), Unbounded),
            (Included(Int(3)), Unbounded)
        );
        // Beyond i64: that side open when every integer passes, nothing when none does.
        assert_eq!(
            int(Included(Float(-1e300)), Excluded(Int(2020))),
            (Unbounded, Excluded(Int(2020)))
        );
        assert_eq!(
            int(Included(Float(9.3e18)), Excluded(Int(2020))),
            (Excluded(Int(i64::MAX)), Excluded(Int(2020)))
        );
        assert_eq!(
            int(Included(Int(0)), Included(Float(1e300))),
            (Included(Int(0)), Unbounded)
        );
        assert_eq!(
            int(Unbounded, Excluded(Float(-1e300))),
            (Unbounded, Excluded(Int(i64::MIN)))
        );
        // Elsewhere, mixed kinds become floats; one kind stays.
        match Filter::range("s", None, Included(Int(1)), Excluded(Float(2.5))) {
            Filter::Range { lower, upper, .. } => {
                assert_eq!((lower, upper), (Included(Float(1.0)), Excluded(Float(2.5))))
            }
            other => panic!("{other:?}"),
        }
        // The matcher agrees with the bounds: nothing is an integer above i64::MAX.
        let f = Filter::range(
            "y",
            Some(FieldKind::Integer),
            Included(Float(9.3e18)),
            Unbounded,
        );
        assert!(!f.matches(json!({"y": i64::MAX}).as_object()));
    }

    #[test]
    fn matches_follows_the_shape() {
        let meta = json!({"lang": "en", "year": 2021, "tags": ["a", "b"], "draft": false, "author": {"name": "x"}});
        let m = meta.as_object();
        let yes = [
            json!({"lang": "en"}),
            json!({"lang": {"in": ["fr", "en"]}}),
            json!({"year": {"gte": 2020, "lt": 2022}}),
            json!({"year": 2021.0}),
            json!({"tags": "b"}),
            json!({"draft": false}),
            json!({"author.name": "x"}),
            json!({"or": [{"lang": "fr"}, {"year": {"gt": 2000}}]}),
            json!({"not": {"lang": "fr"}}),
            json!({"field": "lang", "eq": "en"}),
        ];
        for f in yes {
            assert!(parse(f.clone()).unwrap().matches(m), "{f}");
        }
        let no = [
            json!({"lang": "EN"}),
            json!({"year": {"gt": 2021}}),
            json!({"lang": "en", "draft": true}),
            json!({"missing": 1}),
            json!({"not": {"tags": "a"}}),
        ];
        for f in no {
            assert!(!parse(f.clone()).unwrap().matches(m), "{f}");
        }
    }

    #[test]
    fn bad_filters_name_the_path() {
        let cases = [
            (json!([]), "filter"),
            (json!({}), "filter"),
            (json!({"and": {}}), "filter.and"),
            (json!({"and": [{"x": null}]}), "filter.and[0].x"),
            (json!({"x": {"between": 1}}), "filter.x.between"),
            (json!({"x": {"gt": "a"}}), "filter.x.gt"),
            (json!({"x": {"in": []}}), "filter.x.in"),
        ];
        for (f, path) in cases {
            match parse(f.clone()) {
                Err(QueryError::Filter { path: p, .. }) => assert_eq!(p, path, "{f}"),
                other => panic!("{f}: {other:?}"),
            }
        }
    }

    #[test]
    fn declared_fields_are_enforced() {
        let mut s = TextSettings::default();
        s.fields.insert("lang".into(), FieldKind::Keyword);
        s.fields.insert("year".into(), FieldKind::Integer);
        assert!(Filter::parse(&json!({"lang": "en", "year": {"gte": 1}}), &s).is_ok());
        let e = Filter::parse(&json!({"color": "red"}), &s).unwrap_err();
        assert!(
            e.to_string().contains("color") && e.to_string().contains("lang, year"),
            "{e}"
        );
        let e = Filter::parse(&json!({"year": "x"}), &s).unwrap_err();
        assert!(e.to_string().contains("declared integer"), "{e}");
        let e = Filter::parse(&json!({"lang": {"gt": 1}}), &s).unwrap_err();
        assert!(e.to_string().contains("numeric"), "{e}");
    }

    #[test]
    fn limits_are_named() {
        let mut f = json!({"x": 1});
        for _ in 0..=FILTER_DEPTH_MAX {
            f = json!({ "not": f });
        }
        assert!(parse(f).unwrap_err().to_string().contains("deeper"));
        let many: Vec<Value> = (0..=FILTER_NODES_MAX).map(|i| json!(i)).collect();
        assert!(
            parse(json!({"x": {"in": many}}))
                .unwrap_err()
                .to_string()
                .contains("1024")
        );
    }
}
