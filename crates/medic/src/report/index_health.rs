//! Index health over time: the daemon records each derived index's health figures in the metric history
//! ([`samples`], at most once per [`SAMPLE_INTERVAL_US`], after a healing cycle), and the report's section "Index
//! health trends" reads them back per collection, index and figure ([`load`]): first, last, smallest and largest
//! value in the period, for counters the increase, whether the figure moved the wrong way, and a sparkline (SVG in
//! the HTML page).
//!
//! Series are named `index.<collection>.<index>.<figure>` (collection names hold no dot), so `medic history` and
//! `GET /v1/history` read them like any metric. Recorded per index: `lag_records`, the counters `rebuilds` and
//! `catch_ups` (since the index was attached: a restart starts them again at 0), `damaged` (0/1), and the structure
//! figures of [`TRACKED_FIGURES`] the index reports once its structure was measured (the deep tier).

use std::fmt::Write as _;

use heal::learn::KbError;
use heal::{Sample, Timestamp};
use serde::{Deserialize, Serialize};
use store::derived::{IndexState, IndexStatus};

use crate::kb::SqliteKb;

/// The prefix of every index health series in the metric history.
pub const METRIC_PREFIX: &str = "index.";
/// Index health is recorded at most this often (µs).
pub const SAMPLE_INTERVAL_US: Timestamp = 60 * 1_000_000;
/// Most series one report reads (the first by name).
pub const INDEX_SERIES_MAX: usize = 200;
/// Most points read of one series in one period (the oldest).
pub const SERIES_POINTS_MAX: usize = 50_000;
/// Points of a sparkline (bucket means over the period).
pub const SPARK_POINTS: usize = 48;
/// Most metric names looked through for index series.
const METRIC_NAMES_MAX: usize = 100_000;

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Larger is better (reachability, recall).
    Higher,
    /// Smaller is better (lag, orphans, imbalance...).
    Lower,
}

/// The structure figures recorded (when an index reports them), and which way each is better: HNSW reachability,
/// orphans, unreachable nodes and tombstones; IVF balance, drift and empty lists; recall of either; text segments,
/// deleted documents and files out of place.
pub const TRACKED_FIGURES: &[(&str, Better)] = &[
    ("reachable_fraction", Better::Higher),
    ("recall_at_10", Better::Higher),
    ("orphans", Better::Lower),
    ("unreachable", Better::Lower),
    ("tombstone_fraction", Better::Lower),
    ("imbalance", Better::Lower),
    ("drift", Better::Lower),
    ("empty_lists", Better::Lower),
    ("segments", Better::Lower),
    ("deleted_documents", Better::Lower),
    ("orphan_files", Better::Lower),
    ("missing_files", Better::Lower),
];

/// The figures every index has, from the driver's status: lag, damaged, and the counters.
const STATUS_FIGURES: &[(&str, Better)] = &[
    ("lag_records", Better::Lower),
    ("damaged", Better::Lower),
    ("rebuilds", Better::Lower),
    ("catch_ups", Better::Lower),
];

/// Counters since attach: reported by their increase.
const COUNTERS: &[&str] = &["rebuilds", "catch_ups"];

fn better_of(figure: &str) -> Option<Better> {
    TRACKED_FIGURES
        .iter()
        .chain(STATUS_FIGURES)
        .find(|(f, _)| *f == figure)
        .map(|(_, b)| *b)
}

/// `index.<collection>.<index>.<figure>`.
pub fn metric_name(collection: &str, index: &str, figure: &str) -> String {
    format!("{METRIC_PREFIX}{collection}.{index}.{figure}")
}

/// `index.<collection>.<index>.<figure>` → its parts; `None` for any other name.
pub fn parse(metric: &str) -> Option<(&str, &str, &str)> {
    let rest = metric.strip_prefix(METRIC_PREFIX)?;
    let (rest, figure) = rest.rsplit_once('.')?;
    let (collection, index) = rest.rsplit_once('.')?;
    (!collection.is_empty() && !index.is_empty() && !figure.is_empty())
        .then_some((collection, index, figure))
}

/// The samples to record for `indexes` (the derived set's status) at `now`.
pub fn samples(indexes: &[IndexStatus], now: Timestamp) -> Vec<Sample> {
    let mut out = Vec::new();
    for i in indexes {
        let name = |figure: &str| metric_name(&i.collection, &i.name, figure);
        out.push(Sample::gauge(
            name("lag_records"),
            i.lag_records as f64,
            now,
        ));
        out.push(Sample::state(
            name("damaged"),
            i.state == IndexState::Damaged,
            now,
        ));
        out.push(Sample::counter(name("rebuilds"), i.rebuilds as f64, now));
        out.push(Sample::counter(name("catch_ups"), i.catch_ups as f64, now));
        for (figure, v) in i.structure.iter().flat_map(|s| &s.figures) {
            if TRACKED_FIGURES.iter().any(|(f, _)| f == figure) && v.is_finite() {
                out.push(Sample::gauge(name(figure), *v, now));
            }
        }
    }
    out
}

/// How one figure of one index moved over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexTrend {
    /// The collection.
    pub collection: String,
    /// The index (`text`, `hnsw`, `ivf`, `flat`).
    pub index: String,
    /// The figure (`lag_records`, `reachable_fraction`...).
    pub figure: String,
    /// Points recorded in the period.
    pub points: u64,
    /// The first value in the period.
    pub first: f64,
    /// The last value in the period.
    pub last: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// For a counter (`rebuilds`, `catch_ups`): how much it grew in the period (a restart's reset counted from 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub increase: Option<f64>,
    /// Which way is better.
    pub better: Better,
    /// The figure ended the period worse than it started (a counter: it grew).
    pub worsened: bool,
    /// Up to [`SPARK_POINTS`] values over the period (the mean of each equal slice with points), for a sparkline.
    pub spark: Vec<f64>,
}

/// The section: every index health series with points in the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexTrends {
    /// Per collection, index and figure, in that order.
    pub series: Vec<IndexTrend>,
    /// More than [`INDEX_SERIES_MAX`] series (only the first by name read), or a series over
    /// [`SERIES_POINTS_MAX`] points (its oldest read).
    pub truncated: bool,
}

/// The trend of one series from its points (oldest first) over `[from, until)`; `None` without points.
pub fn trend(
    collection: &str,
    index: &str,
    figure: &str,
    points: &[(Timestamp, f64)],
    from: Timestamp,
    until: Timestamp,
) -> Option<IndexTrend> {
    let (&(_, first), &(_, last)) = (points.first()?, points.last()?);
    let min = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let max = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let better = better_of(figure).unwrap_or(Better::Lower);
    let increase = COUNTERS.contains(&figure).then(|| {
        points
            .windows(2)
            .map(|w| {
                let d = w[1].1 - w[0].1;
                // A counter that went down was reset (the index attached again): it counted from 0.
                if d >= 0.0 { d } else { w[1].1 }
            })
            .sum::<f64>()
    });
    let tolerance = 1e-9 * first.abs().max(last.abs()).max(1.0);
    let worsened = match (increase, better) {
        (Some(inc), _) => inc > 0.0,
        (None, Better::Higher) => last < first - tolerance,
        (None, Better::Lower) => last > first + tolerance,
    };
    let slices = SPARK_POINTS as u64;
    let span = until.saturating_sub(from).max(1);
    let mut sums = vec![(0.0_f64, 0_u32); SPARK_POINTS];
    for &(at, v) in points {
        let slice = (u128::from(at.saturating_sub(from)) * u128::from(slices) / u128::from(span))
            .min(u128::from(slices - 1)) as usize;
        sums[slice].0 += v;
        sums[slice].1 += 1;
    }
    let spark = sums
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| s / f64::from(n))
        .collect();
    Some(IndexTrend {
        collection: collection.to_string(),
        index: index.to_string(),
        figure: figure.to_string(),
        points: points.len() as u64,
        first,
        last,
        min,
        max,
        increase,
        better,
        worsened,
        spark,
    })
}

/// The index health trends of `[from, until)` from the knowledge base's metric history.
pub fn load(kb: &SqliteKb, from: Timestamp, until: Timestamp) -> Result<IndexTrends, KbError> {
    let mut out = IndexTrends::default();
    let names: Vec<_> = kb
        .metric_series(METRIC_NAMES_MAX)?
        .into_iter()
        .filter(|s| s.name.starts_with(METRIC_PREFIX) && s.last_at >= from && s.first_at < until)
        .collect();
    if names.len() > INDEX_SERIES_MAX {
        out.truncated = true;
    }
    let last_us = until.saturating_sub(1);
    for s in names.iter().take(INDEX_SERIES_MAX) {
        let Some((collection, index, figure)) = parse(&s.name) else {
            continue;
        };
        let points = kb.metric_points(&s.name, from, last_us, SERIES_POINTS_MAX + 1)?;
        if points.len() > SERIES_POINTS_MAX {
            out.truncated = true;
        }
        let points = &points[..points.len().min(SERIES_POINTS_MAX)];
        if let Some(t) = trend(collection, index, figure, points, from, until) {
            out.series.push(t);
        }
    }
    out.series.sort_by(|a, b| {
        (&a.collection, &a.index, &a.figure).cmp(&(&b.collection, &b.index, &b.figure))
    });
    Ok(out)
}

/// A figure's value for people: integers plain, fractions with three decimals.
pub fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// How the series moved, in words: `+3` (`0` when it did not move, `-2` when it went down) for a counter, else
/// `worse`, `better` or `steady`.
pub fn movement(t: &IndexTrend) -> String {
    match t.increase {
        // -0.0 too: no sign on nothing.
        Some(0.0) => "0".to_string(),
        Some(inc) if inc > 0.0 => format!("+{}", fmt_value(inc)),
        Some(inc) => fmt_value(inc),
        None if t.worsened => "worse".to_string(),
        None if t.first == t.last => "steady".to_string(),
        None => "better".to_string(),
    }
}

/// An inline SVG sparkline (120 × 24) of `values`; a flat line for one value or a constant series.
pub fn sparkline_svg(values: &[f64], worsened: bool) -> String {
    const W: f64 = 120.0;
    const H: f64 = 24.0;
    let color = if worsened { "#cf222e" } else { "#0969da" };
    let mut o = format!(
        "<svg class=\"spark\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         xmlns=\"http://www.w3.org/2000/svg\">"
    );
    if !values.is_empty() {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let range = max - min;
        let n = values.len();
        let mut pts = String::new();
        for (i, v) in values.iter().enumerate() {
            let x = if n == 1 {
                W / 2.0
            } else {
                i as f64 * W / (n - 1) as f64
            };
            let y = if range > 0.0 {
                2.0 + (H - 4.0) * (1.0 - (v - min) / range)
            } else {
                H / 2.0
            };
            let _ = write!(pts, "{}{x:.1},{y:.1}", if i == 0 { "" } else { " " });
        }
        if n == 1 {
            let _ = write!(
                o,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"{color}\"/>",
                W / 2.0,
                H / 2.0
            );
        } else {
            let _ = write!(
                o,
                "<polyline points=\"{pts}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"/>"
            );
        }
    }
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Period, ReportConfig, build, midnight};
    use store::derived::Structure;

    const MIN: u64 = 60 * 1_000_000;

    fn status(
        collection: &str,
        name: &str,
        lag: u64,
        rebuilds: u64,
        figures: &[(&str, f64)],
    ) -> IndexStatus {
        IndexStatus {
            collection: collection.into(),
            name: name.into(),
            dir: format!("idx/{collection}/{name}"),
            applied_lsn: 0,
            persisted_lsn: 0,
            log_lsn: lag,
            lag_records: lag,
            state: IndexState::Current,
            last_error: None,
            catch_ups: 0,
            rebuilds,
            persists: 0,
            unpersisted_changes: 0,
            refused: 0,
            structure: (!figures.is_empty()).then(|| Structure {
                figures: figures.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                problems: vec![],
            }),
        }
    }

    #[test]
    fn names_round_trip_and_only_tracked_figures_are_recorded() {
        assert_eq!(
            parse("index.docs.hnsw.recall_at_10"),
            Some(("docs", "hnsw", "recall_at_10"))
        );
        assert_eq!(
            parse("index.my-c_1.text.segments"),
            Some(("my-c_1", "text", "segments"))
        );
        assert_eq!(parse("index.hnsw.lag"), None);
        assert_eq!(parse("put_latency_p99_us"), None);
        let s = samples(
            &[status(
                "docs",
                "hnsw",
                3,
                1,
                &[
                    ("reachable_fraction", 0.98),
                    ("scan_ms", 4.0),
                    ("nodes", 9.0),
                ],
            )],
            7,
        );
        let names: Vec<&str> = s.iter().map(|s| s.metric.as_str()).collect();
        assert_eq!(
            names,
            [
                "index.docs.hnsw.lag_records",
                "index.docs.hnsw.damaged",
                "index.docs.hnsw.rebuilds",
                "index.docs.hnsw.catch_ups",
                "index.docs.hnsw.reachable_fraction"
            ]
        );
        assert!(s.iter().all(|s| s.at == 7));
    }

    /// A day of recorded samples: the HNSW index's reachability fell from 1.0 to 0.9 and back up to 0.95 (worse),
    /// it was rebuilt three times across a restart, the text index's lag went up and came back to 0 (steady), and
    /// samples outside the day are not read.
    #[test]
    fn the_daily_report_shows_how_each_index_figure_moved() {
        let tmp = tempfile::tempdir().unwrap();
        let kb = SqliteKb::open(&tmp.path().join("kb.sqlite3")).unwrap();
        let day = midnight(2026, 12, 5);
        let record = |at: Timestamp, st: Vec<IndexStatus>| {
            kb.record_metrics(at, &samples(&st, at)).unwrap();
        };
        // The day before and the day after: not in the report.
        record(
            day - MIN,
            vec![status(
                "docs",
                "hnsw",
                500,
                0,
                &[("reachable_fraction", 0.1)],
            )],
        );
        record(
            day + 24 * 60 * MIN,
            vec![status(
                "docs",
                "hnsw",
                500,
                9,
                &[("reachable_fraction", 0.1)],
            )],
        );
        // After the fourth sample the daemon restarted: the rebuild counter started again and counted one.
        let hnsw = [(1.0, 0), (0.99, 0), (0.9, 1), (0.97, 2), (0.95, 1)];
        for (i, (reach, rebuilds)) in hnsw.into_iter().enumerate() {
            let at = day + (i as u64 + 1) * 60 * MIN;
            record(
                at,
                vec![
                    status(
                        "docs",
                        "hnsw",
                        0,
                        rebuilds,
                        &[("reachable_fraction", reach)],
                    ),
                    status(
                        "default",
                        "text",
                        [0, 40, 12, 3, 0][i],
                        0,
                        &[("segments", 4.0)],
                    ),
                ],
            );
        }
        let r = build(
            &kb,
            Period::Daily,
            Some("2026-12-05"),
            day + 24 * 60 * MIN,
            &ReportConfig::default(),
        )
        .unwrap();
        let t = &r.index_trends;
        assert!(!t.truncated);
        let find = |c: &str, i: &str, f: &str| {
            t.series
                .iter()
                .find(|s| (s.collection.as_str(), s.index.as_str(), s.figure.as_str()) == (c, i, f))
                .unwrap_or_else(|| panic!("{c}/{i}/{f} in {t:?}"))
        };
        let reach = find("docs", "hnsw", "reachable_fraction");
        assert_eq!(reach.points, 5);
        assert_eq!(
            (reach.first, reach.last, reach.min, reach.max),
            (1.0, 0.95, 0.9, 1.0)
        );
        assert!(reach.worsened);
        assert_eq!(reach.spark.len(), 5, "one point per slice here");
        let rebuilds = find("docs", "hnsw", "rebuilds");
        assert_eq!(
            rebuilds.increase,
            Some(3.0),
            "0→1→2, then a reset to 1 counts 1"
        );
        let lag = find("default", "text", "lag_records");
        assert_eq!((lag.first, lag.last, lag.max), (0.0, 0.0, 40.0));
        assert!(!lag.worsened);
        assert_eq!(movement(lag), "steady");
        assert_eq!(movement(rebuilds), "+3");
        for (inc, said) in [(0.0, "0"), (-0.0, "0"), (-2.0, "-2")] {
            let t = IndexTrend {
                increase: Some(inc),
                ..rebuilds.clone()
            };
            assert_eq!(movement(&t), said, "{inc}");
        }
        assert_eq!(
            r.index_trends.series.first().unwrap().collection,
            "default",
            "sorted by collection"
        );

        let md = r.markdown();
        assert!(md.contains("## Index health trends"), "{md}");
        assert!(
            md.contains("| docs | hnsw | reachable_fraction | 1 | 0.950 | 0.900 | 1 | worse |"),
            "{md}"
        );
        assert!(
            md.contains("| docs | hnsw | rebuilds | 0 | 1 | 0 | 2 | +3 |"),
            "{md}"
        );
        let html = r.html();
        assert!(html.contains("<h2>Index health trends</h2>"), "{html}");
        assert!(
            html.contains("<svg class=\"spark\""),
            "a sparkline per series: {html}"
        );
        assert!(html.contains("<polyline points=\"0.0,2.0 "), "{html}");

        // A day without samples says so.
        let empty = build(
            &kb,
            Period::Daily,
            Some("2026-12-01"),
            day,
            &ReportConfig::default(),
        )
        .unwrap();
        assert!(empty.index_trends.series.is_empty());
        assert!(
            empty
                .markdown()
                .contains("No index health was recorded in the period")
        );
    }

    /// The cost of the section on a full week: 4 indexes × 8 figures sampled every minute (322,560 points).
    /// `cargo test -p medic --lib report::index_health::tests::weekly_trends_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement; run by hand"]
    fn weekly_trends_cost() {
        let tmp = tempfile::tempdir().unwrap();
        let kb = SqliteKb::open(&tmp.path().join("kb.sqlite3")).unwrap();
        let from = midnight(2026, 11, 29);
        let minutes = 7 * 24 * 60;
        let indexes = [
            ("docs", "hnsw"),
            ("docs", "ivf"),
            ("docs", "flat"),
            ("default", "text"),
        ];
        let mut batch = Vec::new();
        let t0 = std::time::Instant::now();
        for m in 0..minutes {
            let at = from + m * MIN;
            for (c, i) in indexes {
                for f in [
                    "lag_records",
                    "damaged",
                    "rebuilds",
                    "catch_ups",
                    "reachable_fraction",
                    "recall_at_10",
                    "orphans",
                    "segments",
                ] {
                    batch.push(Sample::gauge(metric_name(c, i, f), (m % 97) as f64, at));
                }
            }
            if batch.len() >= 50_000 {
                kb.record_metrics(at, &batch).unwrap();
                batch.clear();
            }
        }
        kb.record_metrics(from, &batch).unwrap();
        let seeded = t0.elapsed();
        let t1 = std::time::Instant::now();
        let r = build(
            &kb,
            Period::Weekly,
            Some("2026-12-05"),
            midnight(2026, 12, 6),
            &ReportConfig::default(),
        )
        .unwrap();
        let built = t1.elapsed();
        let t2 = std::time::Instant::now();
        let html = r.html();
        let rendered = t2.elapsed();
        assert_eq!(r.index_trends.series.len(), 32);
        assert!(r.index_trends.series.iter().all(|s| s.points == minutes));
        println!(
            "seeded {} points in {seeded:?}; weekly report built in {built:?}; HTML ({} bytes) in {rendered:?}",
            minutes * 32,
            html.len()
        );
    }

    #[test]
    fn sparklines_handle_one_point_and_flat_series() {
        assert!(sparkline_svg(&[], false).ends_with("</svg>"));
        assert!(sparkline_svg(&[3.0], false).contains("<circle"));
        let flat = sparkline_svg(&[2.0, 2.0, 2.0], false);
        assert!(flat.contains("0.0,12.0 60.0,12.0 120.0,12.0"), "{flat}");
        assert!(sparkline_svg(&[1.0, 0.0], true).contains("#cf222e"));
    }
}
