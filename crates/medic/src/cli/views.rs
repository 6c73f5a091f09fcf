//! `medic history` and `medic report --daily|--weekly`: read-only views of the knowledge base, answered by the
//! daemon (`GET /v1/history`, `GET /v1/reports/{period}`) or, offline, from the data directory's knowledge base in
//! the same JSON shapes.

use clap::Args;
use serde_json::Value;

use super::backend::Backend;
use super::render::{self, Out};
use super::{EXIT_OK, UsageError};
use crate::history::HistoryQuery;

/// Widest sparkline `medic history` prints.
const SPARKLINE_WIDTH: usize = 60;

/// `medic history [METRIC]`.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// The metric (without it: every metric the history holds).
    pub metric: Option<String>,
    /// From when: RFC 3339, a date, `-1h` (back from now), `now`, or µs since the epoch.
    #[arg(long, default_value = crate::history::DEFAULT_SINCE, allow_hyphen_values = true)]
    pub since: String,
    /// Until when (same forms) [default: now].
    #[arg(long, allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Average the points over buckets of this width (`30s`, `5m`).
    #[arg(long)]
    pub step: Option<String>,
}

impl HistoryArgs {
    /// The query these arguments ask.
    pub fn query(&self) -> HistoryQuery {
        HistoryQuery {
            metric: self.metric.clone(),
            since: Some(self.since.clone()),
            until: self.until.clone(),
            step: self.step.clone(),
        }
    }
}

/// The query string of `q` (values percent-encoded).
pub fn history_query_string(q: &HistoryQuery) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("metric", &q.metric),
        ("since", &q.since),
        ("until", &q.until),
        ("step", &q.step),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={}", crate::client::encode_segment(v)));
        }
    }
    parts.join("&")
}

/// Maps a history error to the CLI's: bad input is a usage error (exit 2).
pub fn lift_history(e: crate::history::HistoryError) -> anyhow::Error {
    match e {
        crate::history::HistoryError::BadQuery(m) => UsageError(m).into(),
        other => other.into(),
    }
}

/// `medic history`.
pub fn history(out: &Out, b: &dyn Backend, args: &HistoryArgs) -> anyhow::Result<u8> {
    let v = b.history(&args.query())?;
    // No point of a metric the history has never held: a mistyped name, said so (exit 2), not "0 points".
    if let Some(metric) = &args.metric
        && v["points"].as_array().is_some_and(Vec::is_empty)
    {
        let all = b.history(&HistoryQuery::default())?;
        let known: Vec<&str> = all["metrics"]
            .as_array()
            .map(|l| l.iter().filter_map(|m| m["name"].as_str()).collect())
            .unwrap_or_default();
        if !known.contains(&metric.as_str()) {
            const SHOWN: usize = 8;
            let some = if known.is_empty() {
                "the history holds no metric yet".to_string()
            } else {
                format!(
                    "known: {}{} (`medic history` lists them all)",
                    known[..known.len().min(SHOWN)].join(", "),
                    if known.len() > SHOWN { ", ..." } else { "" }
                )
            };
            return Err(
                UsageError(format!("no metric named {metric:?} in the history; {some}")).into(),
            );
        }
    }
    if out.json {
        out.json_line(&v);
        return Ok(EXIT_OK);
    }
    if let Some(list) = v.get("metrics").and_then(Value::as_array) {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|m| {
                vec![
                    m["name"].as_str().unwrap_or_default().to_string(),
                    render::scalar(&m["points"]),
                    m["first_at"].as_u64().map(render::utc).unwrap_or_default(),
                    m["last_at"].as_u64().map(render::utc).unwrap_or_default(),
                ]
            })
            .collect();
        if rows.is_empty() {
            println!("no metric history recorded yet");
        } else {
            render::print_table(
                out,
                &["METRIC", "POINTS", "FIRST (UTC)", "LAST (UTC)"],
                &rows,
            );
        }
        return Ok(EXIT_OK);
    }
    let points = v
        .get("points")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let values: Vec<f64> = points.iter().filter_map(|p| p["value"].as_f64()).collect();
    let metric = v["metric"].as_str().unwrap_or_default();
    // With --step each point is a bucket: its mean, and the min, max and count of the points it holds.
    let bucketed = v["step_us"].as_u64().is_some();
    let counted = if bucketed {
        let n: u64 = points.iter().filter_map(|p| p["count"].as_u64()).sum();
        format!(
            "{} of {}",
            render::count(values.len() as u64, "bucket", "buckets"),
            render::count(n, "point", "points")
        )
    } else {
        render::count(values.len() as u64, "point", "points")
    };
    println!(
        "{} from {} to {} UTC: {counted}",
        out.bold(metric),
        v["since"].as_u64().map(render::utc).unwrap_or_default(),
        v["until"].as_u64().map(render::utc).unwrap_or_default(),
    );
    if values.is_empty() {
        return Ok(EXIT_OK);
    }
    let field = |p: &Value, name: &str| p[name].as_f64().or_else(|| p["value"].as_f64());
    let min = points
        .iter()
        .filter_map(|p| field(p, "min"))
        .fold(f64::INFINITY, f64::min);
    let max = points
        .iter()
        .filter_map(|p| field(p, "max"))
        .fold(f64::NEG_INFINITY, f64::max);
    let last = values.last().copied().unwrap_or_default();
    println!("{}", crate::history::sparkline(&values, SPARKLINE_WIDTH));
    if bucketed {
        // The extremes are the metric's own; a bucket's mean is no value it took, so the last is named as one.
        println!("min {min}  max {max}  last bucket mean {last}");
    } else {
        println!("min {min}  max {max}  last {last}");
    }
    if let Some(a) = v
        .get("anomalies")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        println!("{}:", render::count(a.len() as u64, "anomaly", "anomalies"));
        for x in a {
            println!(
                "  {} incident {}: {}",
                x["at"].as_u64().map(render::utc).unwrap_or_default(),
                render::scalar(&x["incident"]),
                x["summary"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(EXIT_OK)
}

/// How `medic report --daily|--weekly` prints the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Markdown.
    Md,
    /// One self-contained HTML page.
    Html,
    /// The JSON the daemon answers.
    Json,
}

/// `medic report --daily|--weekly [--format md|html|json] [--at DATE]`.
#[derive(Debug, Clone, Default, Args)]
pub struct ReportArgs {
    /// The daily report: one UTC day.
    #[arg(long, conflicts_with = "weekly")]
    pub daily: bool,
    /// The weekly report: the seven UTC days ending with the date.
    #[arg(long)]
    pub weekly: bool,
    /// How to print it [default: md; json under --json].
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// The UTC day (YYYY-MM-DD; a weekly report's last day) [default: today].
    #[arg(long, value_name = "DATE")]
    pub at: Option<String>,
}

impl ReportArgs {
    /// Whether any period option was given.
    pub fn is_set(&self) -> bool {
        self.daily || self.weekly || self.format.is_some() || self.at.is_some()
    }
}

/// `medic report --daily|--weekly`.
pub fn report(out: &Out, b: &dyn Backend, args: &ReportArgs) -> anyhow::Result<u8> {
    let period = match (args.daily, args.weekly) {
        (true, _) => crate::report::Period::Daily,
        (false, true) => crate::report::Period::Weekly,
        (false, false) => {
            return Err(UsageError(
                "give --daily or --weekly (or an incident id for one incident's report)".into(),
            )
            .into());
        }
    };
    let v = b.period_report(period, args.at.as_deref())?;
    let format = args.format.unwrap_or(if out.json {
        ReportFormat::Json
    } else {
        ReportFormat::Md
    });
    if format == ReportFormat::Json || out.json {
        out.json_line(&v);
        return Ok(EXIT_OK);
    }
    let r: crate::report::Report = serde_json::from_value(v)
        .map_err(|e| anyhow::anyhow!("the report answered does not parse: {e}"))?;
    match format {
        ReportFormat::Html => print!("{}", r.html()),
        _ => print!("{}", r.markdown()),
    }
    Ok(EXIT_OK)
}
