//! The command line: parses arguments (clap 4 derive) and runs the commands.
//!
//! A command that touches data runs against a daemon when `--server` (or `MEDIC_SERVER`) is given, or when the data
//! directory is locked by a live process (then the URL the daemon wrote to `<data>/medic.url` and the listen address
//! from the configuration are tried); otherwise it opens the data directory itself. When neither works the error says what was tried and why each failed.
//!
//! Exit codes scripts rely on: 0 healthy / done, 1 degraded, unhealthy or failed, 2 usage error (clap's and ours),
//! 3 escalation needed. `--json` prints exactly one JSON object as the last line of stdout.

pub mod backend;
pub mod load;
pub mod offline;
pub mod operate;
pub mod render;
pub mod sql;
pub mod views;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgGroup, Args, CommandFactory as _, Parser, Subcommand};
use serde_json::{Map, Value, json};

use crate::config::Config;
use backend::{Backend, Daemon, TierArg};
use render::Out;

/// Exit code: healthy, or the command did what was asked.
pub const EXIT_OK: u8 = 0;
/// Exit code: degraded or unhealthy, or the command failed.
pub const EXIT_UNHEALTHY: u8 = 1;
/// Exit code: usage error (bad arguments or input).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: an incident needs a human.
pub const EXIT_ESCALATION: u8 = 3;

/// The largest file `put --file` reads.
pub const PUT_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// A usage error found after parsing (bad JSON in `--vector`, a bad load line, a daemon's 4xx): exits 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// medic: an embedded search database that heals itself.
#[derive(Debug, Parser)]
#[command(name = "medic", version = crate::LONG_VERSION, about, long_about = None)]
pub struct Cli {
    /// The data directory [default: ./medic-data, or server.data_dir from --config].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Configuration file (TOML; see `medic config --print-default`).
    #[arg(long, global = true, value_name = "FILE", env = "MEDIC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Talk to the daemon at this URL (http://HOST:PORT) instead of opening the data directory.
    #[arg(long, global = true, value_name = "URL", env = "MEDIC_SERVER")]
    pub server: Option<String>,
    /// Print one JSON object as the last line of stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Bearer token for the daemon [env: MEDIC_TOKEN] [default: server.token from --config].
    // MEDIC_TOKEN is read after parsing (`token_from_env`), not by clap: clap lists an argument taken from the
    // environment in every usage line it prints, as if the command needed it.
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Seconds one request to the daemon may take.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// What to do [default: serve].
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `--data` on a subcommand (also accepted before it).
#[derive(Debug, Clone, Default, Args)]
pub struct DataArg {
    /// The data directory [default: ./medic-data, or server.data_dir from --config].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: HTTP API, metrics and the healing loop (the default).
    Serve {
        #[command(flatten)]
        data: DataArg,
        /// IP:PORT to listen on [default: 127.0.0.1:7878, or server.listen from --config]; port 0 picks one.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// How the log on stderr is written: text, or one JSON object per line [default: server.log_format from
        /// --config, else text].
        #[arg(long, value_enum, value_name = "FORMAT")]
        log_format: Option<crate::config::LogFormat>,
    },
    /// Show health, store statistics and engine KPIs. Exit 0 healthy, 1 otherwise.
    Status {
        #[command(flatten)]
        data: DataArg,
    },
    /// Run health checks now. Exit 0 healthy, 1 otherwise, 3 when an incident was escalated.
    Check {
        #[command(flatten)]
        data: DataArg,
        /// How deep: quick (shallow tier), deep, or full (every tier, including a full scrub).
        #[arg(long, value_enum, default_value = "quick")]
        tier: TierArg,
    },
    /// Run one healing cycle now. Exit 0 healthy, 1 otherwise, 3 when an incident was escalated.
    Heal {
        #[command(flatten)]
        data: DataArg,
        /// Plan repairs but change nothing (whatever `engine.dry_run` says).
        #[arg(long, conflicts_with = "no_dry_run")]
        dry_run: bool,
        /// Repair for real this once even when `engine.dry_run = true` is configured. Without either flag the
        /// configured mode holds.
        #[arg(long)]
        no_dry_run: bool,
    },
    /// Accept acknowledged data lost beyond every redundancy (listed by `medic status` under store.lost): keep what
    /// survived, drop the lost records for good, take writes again. Needs --yes.
    AcceptLoss {
        #[command(flatten)]
        data: DataArg,
        /// Confirm: the lost records are gone for good.
        #[arg(long)]
        yes: bool,
    },
    /// List recent incidents, newest first.
    Incidents {
        #[command(flatten)]
        data: DataArg,
        /// How many, up to http.incidents_listed_max (of the daemon's configuration, or --config offline).
        #[arg(long, default_value_t = 20)]
        limit: u64,
        #[command(flatten)]
        filter: IncidentsFilterArgs,
    },
    /// Metric history: every metric recorded, or one metric's points (a sparkline; `--json` for the data).
    History {
        #[command(flatten)]
        data: DataArg,
        #[command(flatten)]
        args: views::HistoryArgs,
    },
    /// Show one incident's report, or the daily or weekly report (`--daily`, `--weekly`).
    #[command(group(ArgGroup::new("which").args(["id", "daily", "weekly"]).required(true)))]
    Report {
        #[command(flatten)]
        data: DataArg,
        /// The incident id.
        id: Option<u64>,
        #[command(flatten)]
        period: views::ReportArgs,
    },
    /// Show one incident's diagnostic bundle (JSON): the event, the metrics judged, the state then, suggestions.
    Bundle {
        #[command(flatten)]
        data: DataArg,
        /// The incident id.
        id: u64,
    },
    /// Store a document.
    #[command(group(ArgGroup::new("body").args(["text", "file", "vector"]).multiple(true).required(true)))]
    Put {
        #[command(flatten)]
        data: DataArg,
        /// The document id.
        id: String,
        /// The text.
        #[arg(long, conflicts_with = "file")]
        text: Option<String>,
        /// Read the text from this file (UTF-8).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// The vector, as a JSON array of numbers.
        #[arg(long, value_name = "JSON")]
        vector: Option<String>,
        /// Metadata, as a JSON object.
        #[arg(long, value_name = "JSON")]
        meta: Option<String>,
        /// The collection.
        #[arg(long, value_name = "NAME", default_value = "default")]
        collection: String,
    },
    /// Print a document.
    Get {
        #[command(flatten)]
        data: DataArg,
        /// The document id.
        id: String,
        /// The collection.
        #[arg(long, value_name = "NAME", default_value = "default")]
        collection: String,
    },
    /// Delete a document.
    Delete {
        #[command(flatten)]
        data: DataArg,
        /// The document id.
        id: String,
        /// The collection.
        #[arg(long, value_name = "NAME", default_value = "default")]
        collection: String,
    },
    /// Search by text, by vector, or by both (fused by reciprocal rank).
    #[command(group(ArgGroup::new("query").args(["text", "vector"]).required(true).multiple(true)))]
    Search {
        #[command(flatten)]
        data: DataArg,
        /// Full-text query.
        #[arg(long)]
        text: Option<String>,
        /// Nearest neighbours of this vector (a JSON array of numbers).
        #[arg(long, value_name = "JSON")]
        vector: Option<String>,
        /// How many hits, up to http.search_k_max (of the daemon's configuration, or --config offline).
        #[arg(long, default_value_t = 10)]
        k: u64,
        /// Hits to skip first (paging).
        #[arg(long)]
        offset: Option<u64>,
        /// A filter over meta fields, as JSON (`{"lang": "en", "year": {"gte": 2020}}`).
        #[arg(long, value_name = "JSON")]
        filter: Option<String>,
        /// Stored fields to show with each hit: `text`, `meta` or `text,meta`.
        #[arg(long, value_name = "FIELDS")]
        include: Option<String>,
        /// Snippets of the text with the matched terms marked: bold in colour, [between brackets] without; `<mark>`
        /// tags with --json (with --text).
        #[arg(long)]
        highlight: bool,
        /// The exact nearest vectors (the flat index) instead of HNSW's (with --vector).
        #[arg(long)]
        exact: bool,
        /// The collection.
        #[arg(long, value_name = "NAME", default_value = "default")]
        collection: String,
    },
    /// Load documents from a JSON Lines file: one {"id", "text", "vector"?, "meta"?} per line.
    Load {
        #[command(flatten)]
        data: DataArg,
        /// The file; `-` reads standard input.
        file: PathBuf,
        /// The collection.
        #[arg(long, value_name = "NAME", default_value = "default")]
        collection: String,
    },
    /// Named collections: list them (the default), `create NAME [--dimension N] [--metric M] [--indexes I,I]`,
    /// `drop NAME`.
    Collections {
        #[command(flatten)]
        data: DataArg,
        #[command(subcommand)]
        action: Option<CollectionsCommand>,
    },
    /// Inject faults into a scratch store and measure detection and repair.
    Chaos {
        #[command(flatten)]
        data: DataArg,
        /// The seed every choice derives from (replays a run).
        #[arg(long)]
        seed: u64,
        /// Faults to inject, one per round.
        #[arg(long)]
        rounds: u32,
        /// Fault kinds to draw from, comma-separated (default: all).
        #[arg(long, value_name = "KIND,KIND")]
        faults: Option<String>,
        /// Documents in the store before the first round.
        #[arg(long)]
        docs: Option<u32>,
    },
    /// Reproducible evaluation suites.
    Bench {
        #[command(subcommand)]
        suite: BenchCommand,
    },
    /// Show the effective configuration (file, defaults and flags together); tokens are shown as "<redacted>".
    /// Local only: --server is refused (a daemon's configuration is the file it was started with).
    Config {
        /// Print the documented default configuration.
        #[arg(long)]
        print_default: bool,
    },
    /// Print a shell completion script on stdout (`medic completions bash > ~/.local/share/bash-completion/completions/medic`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout (`medic man > ~/.local/share/man/man1/medic.1`), or write it and one
    /// page per subcommand (`medic-serve.1`, ...) into a directory (`medic man --dir ~/.local/share/man/man1`).
    Man {
        /// Write medic.1 and every medic-<subcommand>.1 into this directory (made if missing) instead of printing.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Playbooks (YAML repairs of the [[targets]]): `check DIR` validates a directory against the targets of
    /// --config without running anything (each error as `file:line: reason`; exit 2 when any is invalid);
    /// `--print-default` prints the store's built-in repairs as playbooks, for reading, and the default playbooks
    /// of the postgres targets of --config.
    #[command(args_conflicts_with_subcommands = true)]
    Playbooks {
        /// Print the store's built-in repair strategies rendered as playbooks, and the postgres targets' defaults.
        #[arg(long)]
        print_default: bool,
        #[command(subcommand)]
        action: Option<PlaybooksCommand>,
    },
    #[command(flatten)]
    Operator(operate::OperatorCommand),
    /// Read-only SQL over the knowledge base (`<data>/medic.sqlite3`): one SELECT or WITH statement, e.g.
    /// `medic sql "SELECT * FROM healing_status WHERE state = 'active'"`. Views: healing_status, detected_issues,
    /// repair_history (README's "History and reports"). Reads the file directly, beside a running daemon or not.
    Sql {
        #[command(flatten)]
        data: DataArg,
        /// The statement.
        statement: String,
        /// Print at most this many rows (more are cut and said so on stderr).
        #[arg(long, default_value_t = sql::SQL_ROWS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=sql::SQL_ROWS_MAX))]
        limit: u64,
    },
}

/// `medic collections ...`.
#[derive(Debug, Subcommand)]
pub enum CollectionsCommand {
    /// List every collection with its settings and documents.
    List {
        #[command(flatten)]
        data: DataArg,
    },
    /// Create a collection.
    Create {
        #[command(flatten)]
        data: DataArg,
        /// Its name: 1 to 64 of a-z, 0-9, '_' and '-'.
        name: String,
        /// The vector dimension [default: fixed by its first vector].
        #[arg(long)]
        dimension: Option<u32>,
        /// The vector metric: cosine, dot or l2 [default: cosine].
        #[arg(long)]
        metric: Option<String>,
        /// The indexes it keeps, comma-separated, of flat, hnsw, ivf, text [default: flat,hnsw,text].
        #[arg(long, value_name = "INDEX,INDEX")]
        indexes: Option<String>,
    },
    /// Drop a collection: its documents deleted, its indexes removed.
    Drop {
        #[command(flatten)]
        data: DataArg,
        /// Its name.
        name: String,
    },
}

/// `medic playbooks ...`.
#[derive(Debug, Subcommand)]
pub enum PlaybooksCommand {
    /// Validate every playbook of DIR (`*.yaml`, `*.yml`) against the configured targets; runs nothing.
    Check {
        /// The directory.
        dir: PathBuf,
    },
}

/// `medic bench` suites.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The Numenta Anomaly Benchmark through medic's detectors.
    Nab {
        /// NAB's directory (data/, labels/combined_windows.json, config/profiles.json).
        #[arg(long, value_name = "NAB_DIR")]
        data: PathBuf,
        /// Where NAB's results layout is written.
        #[arg(long, value_name = "RESULTS_DIR")]
        out: PathBuf,
        /// Which detector [default: the engine's, the composite — its default kind `surprise` —, with
        /// `[engine.composite]` of `--config` when given]; another name scores that detector alone.
        #[arg(long)]
        detector: Option<String>,
    },
    /// Leave-one-category-out cross-validation on a NAB corpus: parameters and thresholds chosen on the other
    /// categories, each category scored held out; printed beside the in-sample scores.
    NabCv {
        /// NAB's directory (data/, labels/combined_windows.json, config/profiles.json).
        #[arg(long, value_name = "NAB_DIR")]
        data: PathBuf,
        /// Candidate parameter sets: `default` (the configured composite alone: only the thresholds are chosen per
        /// fold), or the configured detector (surprise when `kind = "surprise"`, else likelihood) around its
        /// configured settings, `pairs` (each tuned parameter at ×0.5 and ×2, alone and in pairs: 51 sets for
        /// surprise, 99 for likelihood) or `full` (every combination: 243 / 2,187).
        #[arg(long, default_value = "default", value_parser = ["default", "pairs", "full"])]
        grid: String,
    },
    /// Healthy operational series (Gaussian, AR(1), Poisson, log-normal, daily load, random walk; fixed seeds):
    /// alarms per 10,000 points after the warm-up at the engine's anomaly cut-off, and ns per point.
    Quiet {
        /// Points per series.
        #[arg(long, default_value_t = 50_000)]
        points: usize,
        /// Seeds, comma-separated.
        #[arg(long, default_value = "1,2")]
        seeds: String,
        /// Which detector (a `heal::detect::DETECTOR_NAMES` name; default: the configured composite).
        #[arg(long)]
        detector: Option<String>,
        /// Print why each alarm scored (at most this many per series).
        #[arg(long, default_value_t = 0)]
        explain: usize,
    },
    /// The likelihood detector's parameters each at ×0.75 and ×1.25 of the configured value, NAB in-sample scores.
    NabPlateau {
        /// NAB's directory.
        #[arg(long, value_name = "NAB_DIR")]
        data: PathBuf,
    },
}

/// Parses the process arguments, runs the command and returns its exit code. Errors go to stderr.
/// `--token`, or else `MEDIC_TOKEN` when set and not empty.
fn token_from_env(cli: &mut Cli) {
    if cli.token.is_none() {
        cli.token = std::env::var("MEDIC_TOKEN").ok().filter(|t| !t.is_empty());
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(mut cli) => {
            token_from_env(&mut cli);
            cli
        }
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2 — and, under `--json`, also as the
            // one JSON line on stdout every `--json` command ends with.
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::from(EXIT_OK);
            }
            if json_requested(std::env::args_os().skip(1)) {
                Out::new(true)
                    .json_line(&json!({"error": clap_message(&e), "exit_code": EXIT_USAGE}));
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let out = Out::new(cli.json);
    match run(&cli, &out) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = error_code(&e);
            let msg = for_the_command_line(&format!("{e:#}"));
            eprintln!("error: {msg}");
            if code == EXIT_ESCALATION {
                eprintln!(
                    "the store found damage it could not undo: a human is needed (see the location above)"
                );
            }
            if out.json {
                out.json_line(&json!({"error": msg, "exit_code": code}));
            }
            ExitCode::from(code)
        }
    }
}

/// An error the store or the daemon words for an HTTP client, reworded for a person at the command line: the
/// command that creates a missing collection instead of the request that would.
fn for_the_command_line(msg: &str) -> String {
    const HTTP: &str = "create it with PUT /v1/collections/";
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(at) = rest.find(HTTP) {
        out.push_str(&rest[..at]);
        let after = &rest[at + HTTP.len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'))
            .unwrap_or(after.len());
        let name = &after[..end];
        out.push_str(&format!("create it with `medic collections create {name}`"));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Writes `bytes` to stdout and flushes.
fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// Whether `--json` is among arguments clap refused (before a `--` that ends the options).
fn json_requested(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    args.take_while(|a| a != "--").any(|a| a == "--json")
}

/// The first line of a clap error, without its `error: ` prefix (the usage hint stays on stderr).
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("usage error");
    first
        .strip_prefix("error: ")
        .unwrap_or(first)
        .trim()
        .to_string()
}

/// The exit code for a failed command: 2 for usage errors, 3 for damage the store could not undo (a human is
/// needed), 1 for the rest.
fn error_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.downcast_ref::<UsageError>().is_some()) {
        EXIT_USAGE
    } else if e.chain().any(|c| {
        matches!(
            c.downcast_ref::<store::StoreError>(),
            Some(store::StoreError::Corrupt { .. })
        )
    }) {
        EXIT_ESCALATION
    } else {
        EXIT_UNHEALTHY
    }
}

/// The configuration from `--config`, or the defaults.
fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    match &cli.config {
        Some(path) => {
            let (config, warnings) = Config::load(path).map_err(|e| UsageError(e.to_string()))?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            Ok(config)
        }
        None => Ok(Config::default()),
    }
}

/// The configuration with `--data` applied (a subcommand's `--data` wins over one before it).
fn effective_config(cli: &Cli, data: Option<&DataArg>) -> anyhow::Result<Config> {
    let mut config = load_config(cli)?;
    if let Some(dir) = data
        .and_then(|d| d.data.clone())
        .or_else(|| cli.data.clone())
    {
        config.server.data_dir = dir;
    }
    if cli.token.is_some() {
        config.server.token = cli.token.clone();
    }
    Ok(config)
}

/// `[playbooks] dir` checked before the daemon opens anything: a missing directory or an invalid playbook is a
/// configuration error (exit 2), found before a data directory is created or recovered. The daemon loads them again
/// when it attaches the targets.
fn playbooks_before_start(config: &Config) -> anyhow::Result<()> {
    let Some(dir) = &config.playbooks.dir else {
        return Ok(());
    };
    let catalog = crate::target::catalog(&config.targets);
    let errors = match crate::playbook::load_dir(dir, &catalog) {
        Ok(p) => match crate::target::check_restart_commands(&config.targets, &p) {
            Ok(()) => return Ok(()),
            Err(reason) => vec![reason],
        },
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    };
    Err(UsageError(format!(
        "refusing to start: {} invalid playbook{} in {} ([playbooks] dir):\n{}",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" },
        dir.display(),
        errors.join("\n")
    ))
    .into())
}

/// `medic playbooks check DIR`: every error on its own line as `file:line: reason` (stdout, or one JSON object with
/// `--json`), exit 2 when any playbook is invalid, 0 when all are valid.
fn playbooks_check(out: &Out, config: &Config, dir: &std::path::Path) -> anyhow::Result<u8> {
    let catalog = crate::target::catalog(&config.targets);
    let result = crate::playbook::load_dir(dir, &catalog).and_then(|p| {
        crate::target::check_restart_commands(&config.targets, &p)
            .map(|()| p)
            .map_err(|reason| vec![crate::playbook::PlaybookError::new(dir, 0, reason)])
    });
    let (valid, errors) = match &result {
        Ok(p) => (
            p.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
            Vec::new(),
        ),
        Err(e) => (Vec::new(), e.clone()),
    };
    if out.json {
        out.json_line(&serde_json::json!({
            "valid": errors.is_empty(),
            "playbooks": valid,
            "errors": errors.iter().map(|e| serde_json::json!({
                "file": e.file.display().to_string(),
                "line": e.line,
                "reason": e.reason,
            })).collect::<Vec<_>>(),
        }));
    } else if errors.is_empty() {
        println!(
            "{} playbook{} valid in {}",
            valid.len(),
            if valid.len() == 1 { "" } else { "s" },
            dir.display()
        );
        for name in &valid {
            println!("  {name}");
        }
    } else {
        for e in &errors {
            println!("{e}");
        }
        eprintln!(
            "{} error{} in {}: nothing is loaded until every playbook is valid",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            dir.display()
        );
    }
    Ok(if errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_USAGE
    })
}

/// Runs the parsed command; returns the exit code.
pub fn run(cli: &Cli, out: &Out) -> anyhow::Result<u8> {
    let default = Command::Serve {
        data: DataArg::default(),
        listen: None,
        log_format: None,
    };
    let command = cli.command.as_ref().unwrap_or(&default);
    match command {
        Command::Serve {
            data,
            listen,
            log_format,
        } => {
            // Read the same way again at every SIGHUP: the file, then the command line's values over it.
            let source = crate::daemon::reload::ConfigSource {
                path: cli.config.clone(),
                overrides: crate::daemon::reload::Overrides {
                    data_dir: data.data.clone().or_else(|| cli.data.clone()),
                    listen: listen.clone(),
                    token: cli.token.clone(),
                    log_format: *log_format,
                },
            };
            let (config, _warnings) = source.load().map_err(|e| UsageError(e.to_string()))?;
            playbooks_before_start(&config)?;
            crate::daemon::serve(config, source)?;
            Ok(EXIT_OK)
        }
        Command::Playbooks {
            print_default,
            action,
        } => match action {
            Some(PlaybooksCommand::Check { dir }) => {
                let config = load_config(cli)?;
                config.validate().map_err(|e| UsageError(e.to_string()))?;
                playbooks_check(out, &config, dir)
            }
            None if *print_default => {
                let config = load_config(cli)?;
                print!("{}", crate::playbook::defaults::render(&config.targets));
                Ok(EXIT_OK)
            }
            None => Err(UsageError(
                "medic playbooks: give `check DIR` or `--print-default`".into(),
            )
            .into()),
        },
        Command::Config { print_default } => {
            // No daemon tells its configuration over HTTP: showing this machine's defaults under --server would
            // pass them off as the daemon's.
            if let Some(url) = &cli.server {
                return Err(UsageError(format!(
                    "medic config shows the configuration read here (--config, the defaults and the flags), not a \
                     daemon's: --server {url} (or MEDIC_SERVER) does not apply. The daemon at {url} runs with the \
                     file it was started with (its --config); run `medic config --config FILE` with that file"
                ))
                .into());
            }
            if *print_default {
                print!("{}", crate::config::default_toml());
            } else {
                let config = effective_config(cli, None)?;
                config.validate().map_err(|e| UsageError(e.to_string()))?;
                // Tokens never leave through this command: it is what people paste into issues.
                let config = config.redacted();
                if out.json {
                    out.json_line(&serde_json::to_value(&config)?);
                } else {
                    print!(
                        "{}",
                        toml::to_string(&config).context("printing the configuration")?
                    );
                }
            }
            Ok(EXIT_OK)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "medic", &mut script);
            write_stdout(&script).context("writing the completion script")?;
            Ok(EXIT_OK)
        }
        Command::Sql {
            data,
            statement,
            limit,
        } => {
            if cli.server.is_some() {
                return Err(UsageError(
                    "medic sql reads the knowledge base file of --data; --server does not apply"
                        .into(),
                )
                .into());
            }
            let dir = effective_config(cli, Some(data))?.server.data_dir;
            let answer = sql::run(&dir.join(crate::app::KB_FILE), statement, *limit)?;
            Ok(sql::print(out, &answer, *limit))
        }
        Command::Man { dir: Some(dir) } => {
            std::fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("writing the manual pages into {}", dir.display()))?;
            let pages = std::fs::read_dir(dir)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| e.file_name().to_string_lossy().starts_with("medic"))
                        .count()
                })
                .unwrap_or(0);
            if out.json {
                out.json_line(&serde_json::json!({"dir": dir, "pages": pages}));
            } else {
                println!("wrote {pages} manual pages into {}", dir.display());
            }
            Ok(EXIT_OK)
        }
        Command::Man { dir: None } => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .context("rendering the man page")?;
            write_stdout(&page).context("writing the man page")?;
            Ok(EXIT_OK)
        }
        Command::Chaos {
            data,
            seed,
            rounds,
            faults,
            docs,
        } => {
            let config = effective_config(cli, Some(data))?;
            chaos(out, &config, *seed, *rounds, faults.as_deref(), *docs)
        }
        Command::Bench {
            suite:
                BenchCommand::Nab {
                    data,
                    out: results,
                    detector,
                },
        } => {
            let args = crate::bench::nab::NabArgs {
                data: data.clone(),
                out: results.clone(),
                detector: detector.clone(),
                composite: load_config(cli)?.engine.composite,
            };
            let summary = crate::bench::nab::run(&args)?;
            let v = serde_json::to_value(&summary)?;
            if out.json {
                out.json_line(&v);
            } else {
                render::print_fields(out, &v, 0);
            }
            Ok(EXIT_OK)
        }
        Command::Bench {
            suite: BenchCommand::NabCv { data, grid },
        } => {
            use crate::bench::nab::cv;
            let composite = load_config(cli)?.engine.composite;
            let candidates = cv::candidates(&composite, grid)?;
            let corpus = cv::Corpus::read(data)?;
            let report = cv::cross_validate(&corpus, &candidates)?;
            let v = serde_json::to_value(&report)?;
            if out.json {
                out.json_line(&v);
            } else {
                render::print_fields(out, &v, 0);
            }
            Ok(EXIT_OK)
        }
        Command::Bench {
            suite: BenchCommand::NabPlateau { data },
        } => {
            use crate::bench::nab::cv;
            let composite = load_config(cli)?.engine.composite;
            let corpus = cv::Corpus::read(data)?;
            let rows = cv::plateau(&corpus, &composite)?;
            let v = serde_json::json!({ "rows": rows, "profiles": crate::bench::nab::corpus::PROFILE_NAMES });
            if out.json {
                out.json_line(&v);
            } else {
                render::print_fields(out, &v, 0);
            }
            Ok(EXIT_OK)
        }
        Command::Bench {
            suite:
                BenchCommand::Quiet {
                    points,
                    seeds,
                    detector,
                    explain,
                },
        } => {
            let config = load_config(cli)?.engine;
            let seeds: Vec<u64> = seeds
                .split(',')
                .map(|s| s.trim().parse())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("--seeds {seeds:?}: {e}"))?;
            let factory = |name: &Option<String>| -> anyhow::Result<Box<dyn heal::Detector>> {
                match name.as_deref() {
                    None | Some("composite") => Ok(Box::new(heal::detect::Composite::new(
                        config.composite.clone(),
                    ))),
                    Some(n) => heal::detect::by_name(n).ok_or_else(|| {
                        anyhow::anyhow!(
                            "unknown detector {n:?}; known: {}",
                            heal::detect::DETECTOR_NAMES.join(", ")
                        )
                    }),
                }
            };
            let skip = config.composite.likelihood.warm_up;
            let cutoff = config.anomaly_cutoff;
            let mut rows = Vec::new();
            let (mut total_alarms, mut total_points, mut total_ns) = (0usize, 0usize, 0u128);
            for &seed in &seeds {
                for s in heal::detect::quiet::suite(*points, seed) {
                    let mut d = factory(detector)?;
                    let started = std::time::Instant::now();
                    let mut alarms = 0usize;
                    let mut explained = 0usize;
                    for (i, &v) in s.values.iter().enumerate() {
                        let at =
                            heal::detect::quiet::START_US + i as u64 * heal::detect::quiet::STEP_US;
                        if d.update(at, v) >= cutoff && i >= skip {
                            alarms += 1;
                            if explained < *explain {
                                explained += 1;
                                eprintln!("seed {seed} {} point {i}: {}", s.name, d.explain());
                            }
                        }
                    }
                    let ns = started.elapsed().as_nanos();
                    let judged = s.values.len().saturating_sub(skip).max(1);
                    total_alarms += alarms;
                    total_points += judged;
                    total_ns += ns;
                    rows.push(serde_json::json!({
                        "seed": seed, "series": s.name, "alarms": alarms,
                        "per_10k": alarms as f64 * 10_000.0 / judged as f64,
                        "ns_per_point": ns as f64 / s.values.len().max(1) as f64,
                    }));
                }
            }
            // Every series of every seed streams `points` points.
            let streamed = (rows.len() * points).max(1);
            let v = serde_json::json!({
                "cutoff": cutoff, "points": points, "warm_up": skip, "series": rows,
                "alarms": total_alarms,
                "per_10k": total_alarms as f64 * 10_000.0 / total_points.max(1) as f64,
                "ns_per_point": total_ns as f64 / streamed as f64,
            });
            if out.json {
                out.json_line(&v);
            } else {
                render::print_fields(out, &v, 0);
            }
            Ok(EXIT_OK)
        }
        Command::Operator(c) => operate::run(cli, out, c),
        Command::Status { data } => with_read_only(cli, data, |b| status(out, b)),
        Command::Check { data, tier } => with_read_only(cli, data, |b| check(out, b, *tier)),
        Command::Heal {
            data,
            dry_run,
            no_dry_run,
        } => {
            // Neither flag: the configured `engine.dry_run` holds (the daemon's or this process's).
            let mode = match (*dry_run, *no_dry_run) {
                (true, _) => Some(true),
                (false, true) => Some(false),
                (false, false) => None,
            };
            // A dry run (asked for, or configured and not overridden) changes nothing: read-only offline.
            let dry = mode.unwrap_or(effective_config(cli, Some(data))?.engine.dry_run);
            if dry {
                with_read_only(cli, data, |b| heal(out, b, mode))
            } else {
                with_existing(cli, data, |b| heal(out, b, mode))
            }
        }
        Command::AcceptLoss { data, yes } => {
            if !*yes {
                return Err(UsageError(
                    "accept-loss drops the lost records (medic status: store.lost) for good; run it again with --yes"
                        .into(),
                )
                .into());
            }
            with_existing(cli, data, |b| accept_loss(out, b))
        }
        Command::Incidents {
            data,
            limit,
            filter,
        } => {
            let limit = usize::try_from(*limit).unwrap_or(usize::MAX);
            let query = filter.query();
            with_read_only(cli, data, |b| incidents(out, b, limit, &query))
        }
        Command::History { data, args } => {
            with_read_only(cli, data, |b| views::history(out, b, args))
        }
        Command::Report { data, id, period } => match id {
            Some(id) if !period.is_set() => with_read_only(cli, data, |b| report(out, b, *id)),
            Some(_) => Err(UsageError(
                "--format and --at go with --daily or --weekly, not with an incident id".into(),
            )
            .into()),
            None => with_read_only(cli, data, |b| views::report(out, b, period)),
        },
        Command::Bundle { data, id } => with_read_only(cli, data, |b| match b.bundle(*id)? {
            Some(v) if out.json => {
                out.json_line(&v);
                Ok(EXIT_OK)
            }
            Some(v) => {
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(EXIT_OK)
            }
            None => not_found(out, "diagnostic bundle of incident", &id.to_string()),
        }),
        Command::Put {
            data,
            id,
            text,
            file,
            vector,
            meta,
            collection,
        } => {
            let doc = document_body(
                text.as_deref(),
                file.as_deref(),
                vector.as_deref(),
                meta.as_deref(),
            )?;
            with_backend(cli, data, |b| {
                let answer = b.put(collection, id, &doc)?;
                if out.json {
                    out.json_line(&answer);
                } else {
                    let lsn = answer.get("lsn").map(render::scalar).unwrap_or_default();
                    println!("put {id} (lsn {lsn})");
                }
                Ok(EXIT_OK)
            })
        }
        Command::Get {
            data,
            id,
            collection,
        } => with_read_only(cli, data, |b| match b.get(collection, id)? {
            Some(doc) => {
                if out.json {
                    out.json_line(&doc);
                } else {
                    print_doc(out, &doc);
                }
                Ok(EXIT_OK)
            }
            None => not_found(out, "document", id),
        }),
        Command::Delete {
            data,
            id,
            collection,
        } => with_existing(cli, data, |b| match b.delete(collection, id)? {
            Some(answer) => {
                if out.json {
                    let mut v = json!({"id": id, "deleted": true});
                    if let (Some(m), Some(lsn)) = (v.as_object_mut(), answer.get("lsn")) {
                        m.insert("lsn".into(), lsn.clone());
                    }
                    out.json_line(&v);
                } else {
                    println!("deleted {id}");
                }
                Ok(EXIT_OK)
            }
            None => not_found(out, "document", id),
        }),
        Command::Search {
            data,
            text,
            vector,
            k,
            offset,
            filter,
            include,
            highlight,
            exact,
            collection,
        } => {
            // `k`'s upper bound is http.search_k_max, checked where the search runs (the daemon, or offline with the
            // same key of --config), so one limit holds both ways.
            let query = search_query(
                text.as_deref(),
                vector.as_deref(),
                *k,
                *offset,
                filter.as_deref(),
                include.as_deref(),
                *highlight,
                *exact,
            )?;
            // Offline, a text search builds or catches up the text index under idx/ (derived data), so it opens the
            // store as writers do; a vector search changes nothing and opens it read-only.
            if text.is_some() {
                with_existing(cli, data, |b| search(out, b, collection, &query))
            } else {
                with_read_only(cli, data, |b| search(out, b, collection, &query))
            }
        }
        Command::Collections { data, action } => collections(cli, out, data, action.as_ref()),
        Command::Load {
            data,
            file,
            collection,
        } => {
            let input = load::Input::open(file)?;
            let total = load::validate(&input)?;
            with_backend(cli, data, |b| {
                let summary = load::write(b, collection, &input, total)?;
                if out.json {
                    out.json_line(&serde_json::to_value(summary)?);
                } else {
                    println!(
                        "loaded {} from {}",
                        render::count(summary.written, "document", "documents"),
                        input.name()
                    );
                }
                Ok(EXIT_OK)
            })
        }
    }
}

/// `medic collections [list | create NAME ... | drop NAME]`, offline or through the daemon.
fn collections(
    cli: &Cli,
    out: &Out,
    data: &DataArg,
    action: Option<&CollectionsCommand>,
) -> anyhow::Result<u8> {
    let show = |v: &Value| {
        if out.json {
            out.json_line(v);
            return;
        }
        let one = |c: &Value| {
            // A dimension not fixed yet (no vector stored) is said so, not `null`.
            let dimension = match c["settings"]["dimension"].as_u64() {
                Some(d) => format!("dimension {d}"),
                None => "dimension not fixed yet".to_string(),
            };
            let indexes = match c["settings"]["indexes"].as_array() {
                Some(list) => list
                    .iter()
                    .map(render::scalar)
                    .collect::<Vec<_>>()
                    .join(","),
                None => render::scalar(&c["settings"]["indexes"]),
            };
            println!(
                "{}  {}  {dimension}  metric {}  indexes {indexes}{}",
                c["collection"].as_str().unwrap_or("?"),
                render::count(
                    c["documents"].as_u64().unwrap_or(0),
                    "document",
                    "documents"
                ),
                c["settings"]["metric"].as_str().unwrap_or("?"),
                if c["state"] == "dropping" {
                    "  (dropping)"
                } else {
                    ""
                }
            );
        };
        match v.get("collections").and_then(Value::as_array) {
            Some(all) => all.iter().for_each(one),
            None => one(v),
        }
    };
    // `--data` given after the action wins over one given before it.
    let inner = match action {
        Some(
            CollectionsCommand::List { data: d }
            | CollectionsCommand::Create { data: d, .. }
            | CollectionsCommand::Drop { data: d, .. },
        ) if d.data.is_some() => d,
        _ => data,
    };
    let data = inner;
    match action {
        None | Some(CollectionsCommand::List { .. }) => with_read_only(cli, data, |b| {
            show(&b.collections()?);
            Ok(EXIT_OK)
        }),
        Some(CollectionsCommand::Create {
            data: _,
            name,
            dimension,
            metric,
            indexes,
        }) => {
            let mut settings = serde_json::Map::new();
            if let Some(d) = dimension {
                settings.insert("dimension".into(), json!(d));
            }
            if let Some(m) = metric {
                settings.insert("metric".into(), json!(m));
            }
            if let Some(i) = indexes {
                let list: Vec<&str> = i
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                settings.insert("indexes".into(), json!(list));
            }
            let settings = Value::Object(settings);
            with_backend(cli, data, |b| {
                show(&b.create_collection(name, &settings)?);
                Ok(EXIT_OK)
            })
        }
        Some(CollectionsCommand::Drop { name, .. }) => with_existing(cli, data, |b| {
            let v = b.drop_collection(name)?;
            if out.json {
                out.json_line(&v);
            } else {
                println!(
                    "dropped {name} ({} deleted)",
                    render::count(
                        v["documents_deleted"].as_u64().unwrap_or(0),
                        "document",
                        "documents"
                    )
                );
            }
            Ok(EXIT_OK)
        }),
    }
}

fn not_found(out: &Out, what: &str, id: &str) -> anyhow::Result<u8> {
    if out.json {
        out.json_line(&json!({"id": id, "found": false}));
    }
    eprintln!("{what} {id:?} not found");
    Ok(EXIT_UNHEALTHY)
}

/// [`with_backend`] for a command that needs an existing data directory: every command but those that write a
/// document (`put`, `load`). A missing directory, or one holding no store, is a usage error naming it, never a new
/// empty store reported healthy (a mistyped `--data`). With `--server` the daemon's directory is used and nothing is
/// checked here.
fn with_existing(
    cli: &Cli,
    data: &DataArg,
    f: impl FnOnce(&dyn Backend) -> anyhow::Result<u8>,
) -> anyhow::Result<u8> {
    check_existing(cli, data)?;
    with_backend_mode(cli, data, false, f)
}

/// [`with_existing`] for a command that changes nothing (`status`, `check`, `heal --dry-run`, `get`, `search`,
/// `incidents`, `report`): offline, the data directory is opened read-only ([`App::open_read_only`]) and not a byte
/// of it changes — damage is reported, never repaired.
///
/// [`App::open_read_only`]: crate::app::App::open_read_only
fn with_read_only(
    cli: &Cli,
    data: &DataArg,
    f: impl FnOnce(&dyn Backend) -> anyhow::Result<u8>,
) -> anyhow::Result<u8> {
    check_existing(cli, data)?;
    with_backend_mode(cli, data, true, f)
}

/// Without `--server`: the data directory must exist and hold a store (a usage error naming it otherwise).
fn check_existing(cli: &Cli, data: &DataArg) -> anyhow::Result<()> {
    if cli.server.is_some() {
        return Ok(());
    }
    let dir = effective_config(cli, Some(data))?.server.data_dir;
    if !dir.exists() {
        return Err(UsageError(format!(
            "data directory {} does not exist (a mistyped --data?); only `medic put`, `medic load` and `medic \
             serve` create one",
            dir.display()
        ))
        .into());
    }
    if !store::store::holds_a_store(&dir) {
        return Err(UsageError(format!(
            "no medic store at {} (no MANIFEST-A, MANIFEST-B or wal/ in it; a mistyped --data?); `medic serve --data \
             {}` creates one",
            dir.display(),
            dir.display()
        ))
        .into());
    }
    Ok(())
}

/// Chooses where the command runs and runs it.
fn with_backend(
    cli: &Cli,
    data: &DataArg,
    f: impl FnOnce(&dyn Backend) -> anyhow::Result<u8>,
) -> anyhow::Result<u8> {
    with_backend_mode(cli, data, false, f)
}

/// [`with_backend`], offline read-only when `read_only`.
fn with_backend_mode(
    cli: &Cli,
    data: &DataArg,
    read_only: bool,
    f: impl FnOnce(&dyn Backend) -> anyhow::Result<u8>,
) -> anyhow::Result<u8> {
    let config = effective_config(cli, Some(data))?;
    let timeout = Duration::from_secs(cli.timeout);
    if let Some(url) = &cli.server {
        let daemon = Daemon::new(url, config.server.token.clone(), timeout)?;
        return f(&daemon);
    }
    let offline = offline::open(&config, read_only);
    match offline {
        Ok(app) => {
            let result = f(&app);
            let closed = app.close();
            let code = result?;
            closed?;
            Ok(code)
        }
        Err(offline::OpenError::Locked { holder }) => {
            let dir = &config.server.data_dir;
            let mut tried = vec![format!(
                "opening data directory {} failed: it is locked by {holder}",
                dir.display()
            )];
            for (url, from) in daemon_candidates(&config, &mut tried) {
                let daemon = Daemon::new(&url, config.server.token.clone(), timeout);
                // Only the daemon holding this very directory may act on it: a daemon answering at a stale URL or
                // at `server.listen` may hold another store (another host's daemon with the same pid on a shared
                // volume, another local daemon on the configured port).
                match daemon.and_then(|d| Ok((d.identify()?, d))) {
                    Ok((answered, d)) => {
                        let lock = store::lock::read_holder(dir);
                        match backend::holder_mismatch(&url, &answered, dir, lock.as_ref()) {
                            None => return f(&d),
                            Some(why) => tried.push(format!("{why} ({from})")),
                        }
                    }
                    Err(e) => tried.push(format!(
                        "the daemon at {url} ({from}) did not answer: {e:#}"
                    )),
                }
            }
            let tried: Vec<String> = tried
                .iter()
                .enumerate()
                .map(|(i, t)| format!("({}) {t}", i + 1))
                .collect();
            anyhow::bail!(
                "no way to reach the data: {}. Pass --server URL (or MEDIC_SERVER) to name the daemon holding it",
                tried.join("; ")
            )
        }
        Err(offline::OpenError::Other(e)) => Err(e.context(format!(
            "cannot open data directory {}",
            config.server.data_dir.display()
        ))),
    }
}

/// Where the daemon holding `config.server.data_dir` may answer, in order: the URL it wrote to `<data>/medic.url`
/// (unless that file names another pid than the `LOCK` holder: stale, noted in `tried`), then `server.listen`.
fn daemon_candidates(config: &Config, tried: &mut Vec<String>) -> Vec<(String, String)> {
    use crate::daemon::url_file;
    let dir = &config.server.data_dir;
    let mut candidates = Vec::new();
    if let Some(a) = url_file::read(dir) {
        let path = dir.join(url_file::URL_FILE);
        let holder_pid = store::lock::read_holder(dir).map(|h| h.pid);
        match (a.pid, holder_pid) {
            (Some(written), Some(holder)) if written != holder => tried.push(format!(
                "{} names {} for pid {written}, but pid {holder} holds the lock: stale, not tried",
                path.display(),
                a.url
            )),
            _ => candidates.push((a.url, format!("from {}", path.display()))),
        }
    }
    let listen = format!("http://{}", config.server.listen);
    if !candidates.iter().any(|(u, _)| *u == listen) {
        candidates.push((listen, "server.listen from the configuration".to_string()));
    }
    candidates
}

/// Parses `--vector` JSON.
fn parse_vector(text: &str) -> anyhow::Result<Vec<f32>> {
    let v: Vec<f32> = serde_json::from_str(text).map_err(|e| {
        UsageError(format!(
            "--vector must be a JSON array of numbers, such as [0.1, 0.2]: {e}"
        ))
    })?;
    if v.iter().any(|x| !x.is_finite()) {
        return Err(UsageError("--vector has a non-finite value".into()).into());
    }
    Ok(v)
}

/// The `{"text", "vector"?, "meta"?}` body of a `put`.
fn document_body(
    text: Option<&str>,
    file: Option<&Path>,
    vector: Option<&str>,
    meta: Option<&str>,
) -> anyhow::Result<Value> {
    let text = match (text, file) {
        (Some(t), _) => t.to_string(),
        (None, Some(path)) => {
            let len = std::fs::metadata(path)
                .map_err(|e| UsageError(format!("--file {}: {e}", path.display())))?
                .len();
            if len > PUT_FILE_BYTES_MAX {
                return Err(UsageError(format!(
                    "--file {}: {len} bytes is over put_file_bytes_max = {PUT_FILE_BYTES_MAX}",
                    path.display()
                ))
                .into());
            }
            let bytes = std::fs::read(path)
                .map_err(|e| UsageError(format!("--file {}: {e}", path.display())))?;
            String::from_utf8(bytes).map_err(|e| {
                UsageError(format!(
                    "--file {}: not UTF-8 (at byte {})",
                    path.display(),
                    e.utf8_error().valid_up_to()
                ))
            })?
        }
        (None, None) => String::new(),
    };
    let mut doc = Map::new();
    doc.insert("text".into(), Value::String(text));
    if let Some(v) = vector {
        doc.insert("vector".into(), json!(parse_vector(v)?));
    }
    if let Some(m) = meta {
        let parsed: Value = serde_json::from_str(m)
            .map_err(|e| UsageError(format!("--meta must be a JSON object: {e}")))?;
        if !parsed.is_object() {
            return Err(UsageError(format!(
                "--meta must be a JSON object such as {{\"lang\": \"en\"}}, got {parsed}"
            ))
            .into());
        }
        doc.insert("meta".into(), parsed);
    }
    Ok(Value::Object(doc))
}

fn print_doc(out: &Out, doc: &Value) {
    if let Some(t) = doc.get("text").and_then(Value::as_str) {
        println!("{t}");
    }
    if let Some(v) = doc.get("vector").filter(|v| !v.is_null()) {
        println!("{} {v}", out.dim("vector:"));
    }
    if let Some(m) = doc.get("meta").filter(|v| !v.is_null()) {
        println!("{} {m}", out.dim("meta:"));
    }
}

/// Exit code from an answer's health state: 0 healthy (or no state named), 1 otherwise.
fn state_code(v: &Value) -> u8 {
    match render::state_of(v).as_deref() {
        None | Some("HEALTHY") => EXIT_OK,
        Some(_) => EXIT_UNHEALTHY,
    }
}

fn status(out: &Out, b: &dyn Backend) -> anyhow::Result<u8> {
    let v = b.status()?;
    if out.json {
        out.json_line(&v);
    } else {
        println!("{}", out.dim(&b.describe()));
        render::print_status(out, &v);
    }
    Ok(status_code(&v))
}

/// The exit code of `status`: 3 when acknowledged data is lost (`store.lost`) or an incident is escalated (listed in
/// `escalated_incidents`; from an older daemon without that list, an active incident with status `escalated`), else
/// 0 healthy / 1 otherwise.
fn status_code(v: &Value) -> u8 {
    let non_empty = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_array)
            .is_some_and(|l| !l.is_empty())
    };
    let escalated_active = v.get("escalated_incidents").is_none()
        && v.get("active_incidents")
            .and_then(Value::as_array)
            .is_some_and(|l| l.iter().any(|i| i["status"] == "escalated"));
    if non_empty("/store/lost") || non_empty("/escalated_incidents") || escalated_active {
        EXIT_ESCALATION
    } else {
        state_code(v)
    }
}

fn check(out: &Out, b: &dyn Backend, tier: TierArg) -> anyhow::Result<u8> {
    let v = b.check(tier)?;
    if out.json {
        out.json_line(&v);
    } else {
        println!(
            "{}",
            out.dim(&format!("{} checks on {}", tier.name(), b.describe()))
        );
        render::print_check(out, &v);
    }
    Ok(if render::has_escalation(&v) {
        EXIT_ESCALATION
    } else {
        state_code(&v)
    })
}

fn heal(out: &Out, b: &dyn Backend, dry_run: Option<bool>) -> anyhow::Result<u8> {
    let v = b.heal(dry_run)?;
    // What the cycle actually did (the configured mode when no flag was given).
    let dry_run = v
        .get("dry_run")
        .and_then(Value::as_bool)
        .unwrap_or(dry_run == Some(true));
    if out.json {
        out.json_line(&v);
    } else {
        println!(
            "{}",
            out.dim(&format!(
                "healing cycle on {}{}",
                b.describe(),
                if dry_run {
                    " (dry run: nothing changed)"
                } else {
                    ""
                }
            ))
        );
        render::print_heal(out, &v);
    }
    Ok(if render::has_escalation(&v) {
        EXIT_ESCALATION
    } else {
        state_code(&v)
    })
}

fn accept_loss(out: &Out, b: &dyn Backend) -> anyhow::Result<u8> {
    let v = b.accept_loss()?;
    if out.json {
        out.json_line(&v);
        return Ok(EXIT_OK);
    }
    let ranges = v
        .pointer("/accepted/ranges")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ranges.is_empty() {
        println!(
            "nothing to accept: no acknowledged data is lost on {}",
            b.describe()
        );
        return Ok(EXIT_OK);
    }
    for r in &ranges {
        println!(
            "accepted loss: {} LSN {}..={} ({})",
            r["file"].as_str().unwrap_or("-"),
            r["lsn_range"][0],
            r["lsn_range"][1],
            r["reason"].as_str().unwrap_or("-")
        );
    }
    println!(
        "kept {} in a new snapshot; writes resume",
        render::count(
            v.pointer("/accepted/docs")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            "document",
            "documents"
        )
    );
    Ok(EXIT_OK)
}

fn incidents(
    out: &Out,
    b: &dyn Backend,
    limit: usize,
    query: &crate::incident_filter::IncidentQuery,
) -> anyhow::Result<u8> {
    let v = b.incidents(limit, query)?;
    if out.json {
        out.json_line(&v);
        return Ok(EXIT_OK);
    }
    let list = v
        .get("incidents")
        .and_then(Value::as_array)
        .or_else(|| v.as_array())
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        println!("no incidents");
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            ["id", "severity", "resolution", "detected_at", "root_cause"]
                .iter()
                .map(|k| match (*k, i.get(*k)) {
                    ("detected_at", Some(Value::Number(n))) => {
                        n.as_u64().map(render::utc).unwrap_or_else(|| n.to_string())
                    }
                    (_, Some(v)) => render::scalar(v),
                    (_, None) => "-".into(),
                })
                .collect()
        })
        .collect();
    render::print_table(
        out,
        &[
            "ID",
            "SEVERITY",
            "RESOLUTION",
            "DETECTED (UTC)",
            "ROOT CAUSE",
        ],
        &rows,
    );
    Ok(EXIT_OK)
}

fn report(out: &Out, b: &dyn Backend, id: u64) -> anyhow::Result<u8> {
    let Some(v) = b.incident(id)? else {
        return not_found(out, "incident", &id.to_string());
    };
    if out.json {
        out.json_line(&v);
    } else if let Some(md) = v
        .pointer("/report/markdown")
        .or_else(|| v.pointer("/incident/report_markdown"))
        .and_then(Value::as_str)
    {
        println!("{md}");
    } else if let Some(r) = v.pointer("/report/json").filter(|r| r.is_object()) {
        render::print_fields(out, r, 0);
    } else {
        render::print_fields(out, &v, 0);
    }
    let resolution = v
        .pointer("/incident/resolution")
        .or_else(|| v.get("resolution"))
        .and_then(Value::as_str);
    let escalated = resolution == Some("escalated");
    Ok(if escalated { EXIT_ESCALATION } else { EXIT_OK })
}

/// The body of `POST /v1/search` from the command line's flags.
#[allow(clippy::too_many_arguments)]
fn search_query(
    text: Option<&str>,
    vector: Option<&str>,
    k: u64,
    offset: Option<u64>,
    filter: Option<&str>,
    include: Option<&str>,
    highlight: bool,
    exact: bool,
) -> anyhow::Result<Value> {
    let mut q = serde_json::Map::new();
    if let Some(t) = text {
        q.insert("text".into(), json!(t));
    }
    if let Some(v) = vector {
        q.insert("vector".into(), json!(parse_vector(v)?));
    }
    if q.is_empty() {
        return Err(UsageError("give --text or --vector".into()).into());
    }
    q.insert("k".into(), json!(k));
    // Read-your-writes: a `medic put` then `medic search` finds the document (offline searches are always so).
    q.insert("consistency".into(), json!("strong"));
    if let Some(o) = offset {
        q.insert("offset".into(), json!(o));
    }
    if let Some(f) = filter {
        let f: Value = serde_json::from_str(f)
            .map_err(|e| UsageError(format!("--filter is not JSON: {e}")))?;
        q.insert("filter".into(), f);
    }
    if let Some(inc) = include {
        let fields: Vec<&str> = inc
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .collect();
        if let Some(bad) = fields.iter().find(|f| !matches!(**f, "text" | "meta")) {
            return Err(UsageError(format!(
                "--include: {bad:?} is not one of text, meta (comma-separated)"
            ))
            .into());
        }
        q.insert("include".into(), json!(fields));
    }
    if highlight {
        q.insert("highlight".into(), json!(true));
    }
    if exact {
        q.insert("exact".into(), json!(true));
    }
    Ok(Value::Object(q))
}

fn search(out: &Out, b: &dyn Backend, collection: &str, query: &Value) -> anyhow::Result<u8> {
    let v = b.search(collection, query)?;
    if out.json {
        out.json_line(&v);
        return Ok(EXIT_OK);
    }
    // An answer that is not the whole truth says so first (on stderr, so the table stays parseable).
    if v.get("degraded").and_then(Value::as_bool) == Some(true) {
        eprintln!(
            "degraded: answered from a scan of the table ({})",
            v.get("reason")
                .and_then(Value::as_str)
                .unwrap_or("the index cannot answer")
        );
    }
    if let Some(w) = v.get("withheld").and_then(Value::as_array)
        && !w.is_empty()
    {
        eprintln!(
            "withheld: {} document(s) a loss may have changed: {} (medic status: store.lost)",
            w.len(),
            w.iter().map(render::scalar).collect::<Vec<_>>().join(", ")
        );
    }
    let hits = v
        .get("hits")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if hits.is_empty() {
        println!("no hits");
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = hits
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let score = h
                .get("score")
                .and_then(Value::as_f64)
                .map(|s| format!("{s:.4}"))
                .unwrap_or_else(|| "-".into());
            vec![
                (i + 1).to_string(),
                h.get("id").map(render::scalar).unwrap_or_default(),
                score,
            ]
        })
        .collect();
    render::print_table(out, &["#", "ID", "SCORE"], &rows);
    // Snippets, text and meta asked for, hit by hit under the table.
    for (i, h) in hits.iter().enumerate() {
        let mut lines = Vec::new();
        if let Some(snips) = h.get("highlights").and_then(Value::as_array) {
            lines.extend(
                snips
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|s| format!("  {}", out.snippet(s))),
            );
        }
        if let Some(t) = h.get("text").and_then(Value::as_str) {
            lines.push(format!("  text: {t}"));
        }
        if let Some(m) = h.get("meta") {
            lines.push(format!("  meta: {m}"));
        }
        if !lines.is_empty() {
            println!(
                "{} {}",
                i + 1,
                h.get("id").map(render::scalar).unwrap_or_default()
            );
            for l in lines {
                println!("{l}");
            }
        }
    }
    let mut footer = Vec::new();
    if let Some(t) = v.get("total").and_then(Value::as_u64) {
        footer.push(format!("{t} matching"));
    }
    if let Some(ix) = v.get("index").and_then(Value::as_str) {
        footer.push(format!("index {ix}"));
    }
    if v.get("fusion").is_some() {
        footer.push("fused by reciprocal rank".to_string());
    }
    if !footer.is_empty() {
        println!("{}", footer.join(", "));
    }
    Ok(EXIT_OK)
}

fn chaos(
    out: &Out,
    config: &Config,
    seed: u64,
    rounds: u32,
    faults: Option<&str>,
    docs: Option<u32>,
) -> anyhow::Result<u8> {
    refuse_a_store_as_scratch(&config.server.data_dir)?;
    if let Some(list) = faults.filter(|l| l.split(',').any(|f| f.trim().starts_with("text_"))) {
        return chaos_text(out, config, seed, rounds, list, docs);
    }
    let plan = crate::chaos_graph::plan(faults, rounds);
    let faults = match plan.store_faults.as_deref() {
        Some(list) => store::fault::parse_fault_list(list).map_err(|e| {
            UsageError(format!(
                "--faults: {e}; graph faults: {}",
                crate::chaos_graph::GraphKind::ALL
                    .map(|k| k.name())
                    .join(", ")
            ))
        })?,
        None => Vec::new(),
    };
    let mut chaos_config = store::chaos::ChaosConfig {
        data_dir: config.server.data_dir.clone(),
        seed,
        rounds: plan.store_rounds,
        faults,
        // Time to detect on the daemon's own schedule: `medic serve` with this configuration.
        schedule: store::chaos::CheckSchedule {
            shallow_interval_us: config.checks.shallow_interval_ms.saturating_mul(1_000),
            deep_interval_us: config.checks.deep_interval_ms.saturating_mul(1_000),
            comprehensive_interval_us: config
                .checks
                .comprehensive_interval_ms
                .saturating_mul(1_000),
        },
        ..store::chaos::ChaosConfig::default()
    };
    if let Some(d) = docs {
        chaos_config.docs = d;
    }
    let mut report = if plan.store_rounds > 0 || plan.graph_rounds == 0 {
        chaos_run(&chaos_config)?
    } else {
        Value::Null
    };
    if plan.graph_rounds > 0 {
        let graph = crate::chaos_graph::run(&crate::chaos_graph::GraphChaosConfig {
            data_dir: config.server.data_dir.clone(),
            seed,
            rounds: plan.graph_rounds,
            kinds: plan.graph_kinds.clone(),
            docs: chaos_config.docs,
        })
        .map_err(|e| match e {
            crate::chaos_graph::GraphChaosError::Config(m) => {
                anyhow::Error::from(UsageError(format!("chaos: {m}")))
            }
            other => anyhow::Error::from(other),
        })?;
        crate::chaos_graph::merge(&mut report, &graph, seed);
    }
    if out.json {
        out.json_line(&report);
    } else {
        render::print_chaos(out, &report);
    }
    let lost = report
        .get("acked_writes_lost")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let silent = report
        .get("silent_corruptions")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(if lost + silent > 0 {
        EXIT_UNHEALTHY
    } else {
        EXIT_OK
    })
}

/// `medic chaos` builds its scratch stores under `--data`; a directory that holds a store of its own (a manifest at
/// its top) is refused, so faults are never staged beside documents someone keeps there.
fn refuse_a_store_as_scratch(dir: &std::path::Path) -> anyhow::Result<()> {
    if let Some(m) = ["MANIFEST-A", "MANIFEST-B"]
        .iter()
        .map(|m| dir.join(m))
        .find(|m| m.exists())
    {
        return Err(UsageError(format!(
            "--data {}: it holds a medic store ({} exists); chaos injects faults into scratch stores it creates under \
             --data, so give it a directory of its own (new or empty), e.g. --data /tmp/medic-chaos",
            dir.display(),
            m.display()
        ))
        .into());
    }
    Ok(())
}

/// `medic chaos --faults text_...`: the text index's faults (every listed kind must be one), see
/// [`index_text::chaos`]. Exits unhealthy when a search was answered wrongly after a repair or a fault was not repaired.
fn chaos_text(
    out: &Out,
    config: &Config,
    seed: u64,
    rounds: u32,
    list: &str,
    docs: Option<u32>,
) -> anyhow::Result<u8> {
    let mut faults = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match index_text::chaos::TextFault::parse(name) {
            Some(f) => faults.push(f),
            None => {
                let known: Vec<&str> = index_text::chaos::TextFault::ALL
                    .iter()
                    .map(|f| f.name())
                    .collect();
                return Err(UsageError(format!(
                    "--faults: {name:?} is not a text fault ({}); text faults are run apart from the store's",
                    known.join(", ")
                ))
                .into());
            }
        }
    }
    let cfg = index_text::chaos::TextChaosConfig {
        data_dir: config.server.data_dir.clone(),
        seed,
        rounds,
        faults,
        docs: docs.unwrap_or(2_000),
    };
    let report = index_text::chaos::run(&cfg).map_err(|e| match e.strip_prefix("config: ") {
        Some(m) => anyhow::Error::from(UsageError(format!("chaos: {m}"))),
        None => anyhow::anyhow!("text chaos: {e}"),
    })?;
    if out.json {
        out.json_line(&serde_json::to_value(&report).context("encoding the text chaos report")?);
    } else {
        println!(
            "seed {}: {} text-index fault(s) on {} documents: {} detected, {} repaired, {} absorbed (the damaged file merged away unread), {} wrong search(es) after repair",
            report.seed,
            report.injected,
            report.docs,
            report.detected,
            report.repaired,
            report.absorbed,
            report.wrong_searches
        );
        for (kind, t) in &report.by_fault {
            let ms = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.0}"));
            println!(
                "  {kind}: {} round(s), detect p50 {} ms (max {}), repair p50 {} ms (max {})",
                t.rounds,
                ms(t.detect_ms_p50),
                ms(t.detect_ms_max),
                ms(t.repair_ms_p50),
                ms(t.repair_ms_max)
            );
        }
        for r in report.rounds.iter().filter(|r| !r.repaired && !r.absorbed) {
            println!(
                "  round {} ({}): not repaired: {} {:?} {:?}",
                r.round,
                r.fault.name(),
                r.detail,
                r.wrong_searches,
                r.scrub_failures
            );
        }
    }
    Ok(
        if report.repaired + report.absorbed < report.injected || report.wrong_searches > 0 {
            EXIT_UNHEALTHY
        } else {
            EXIT_OK
        },
    )
}

/// Runs the chaos harness; its report as JSON.
fn chaos_run(config: &store::chaos::ChaosConfig) -> anyhow::Result<Value> {
    let report = store::chaos::run(config).map_err(|e| match e {
        store::chaos::ChaosError::Config(m) => {
            anyhow::Error::from(UsageError(format!("chaos: {m}")))
        }
        other => anyhow::Error::from(other),
    })?;
    serde_json::to_value(&report).context("encoding the chaos report")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_collection_is_created_with_the_command_not_the_request() {
        assert_eq!(
            for_the_command_line(
                "no collection \"nosuch\": create it with PUT /v1/collections/nosuch"
            ),
            "no collection \"nosuch\": create it with `medic collections create nosuch`"
        );
        assert_eq!(
            for_the_command_line("x: create it with PUT /v1/collections/a-b_1; then retry"),
            "x: create it with `medic collections create a-b_1`; then retry"
        );
        assert_eq!(
            for_the_command_line("nothing to change"),
            "nothing to change"
        );
    }

    #[test]
    fn json_is_seen_among_refused_arguments_only_before_a_double_dash() {
        let args = |l: &[&str]| {
            l.iter()
                .map(std::ffi::OsString::from)
                .collect::<Vec<_>>()
                .into_iter()
        };
        assert!(json_requested(args(&["status", "--bogus", "--json"])));
        assert!(json_requested(args(&["--json", "frob"])));
        assert!(!json_requested(args(&["status", "--bogus"])));
        assert!(!json_requested(args(&["put", "x", "--", "--json"])));
        assert!(!json_requested(args(&["put", "x", "--text", "--jsonl"])));
    }

    #[test]
    fn status_exits_3_for_a_loss_or_an_escalated_incident() {
        assert_eq!(status_code(&json!({"state": "HEALTHY"})), EXIT_OK);
        assert_eq!(status_code(&json!({"state": "DEGRADED"})), EXIT_UNHEALTHY);
        assert_eq!(
            status_code(&json!({"state": "HEALTHY", "store": {"lost": [{"file": "wal/x"}]}})),
            EXIT_ESCALATION
        );
        assert_eq!(
            status_code(&json!({"state": "DEGRADED", "escalated_incidents": [4]})),
            EXIT_ESCALATION
        );
        // An older daemon without `escalated_incidents`: the active incident's own status.
        assert_eq!(
            status_code(&json!({"state": "DEGRADED",
                "active_incidents": [{"status": "watching"}, {"status": "escalated"}]})),
            EXIT_ESCALATION
        );
        assert_eq!(
            status_code(&json!({"state": "DEGRADED", "escalated_incidents": [],
                "active_incidents": [{"status": "open"}]})),
            EXIT_UNHEALTHY
        );
    }
}

/// The filters of `medic incidents` (`GET /v1/incidents`'s, `crate::incident_filter`).
#[derive(Debug, Clone, Default, Args)]
pub struct IncidentsFilterArgs {
    /// Detected at or after: RFC 3339, a date, `-6h` (back from now) or µs.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Detected at or before (as --since).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Severities: sev0, sev1, sev2, sev3 (comma-separated).
    #[arg(long, value_name = "SEV")]
    pub severity: Option<String>,
    /// Issue kinds: anomaly, check_failed, integrity, constraint_breach, stale_derived, operation_error, resource.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Statuses: open, auto_repaired, escalated, self_resolved, false_positive, resolved, active, closed.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// An issue's resource; `*` matches any run of characters (`'wal/*'`).
    #[arg(long, value_name = "PATTERN")]
    pub resource: Option<String>,
}

impl IncidentsFilterArgs {
    /// The listing's query.
    pub fn query(&self) -> crate::incident_filter::IncidentQuery {
        crate::incident_filter::IncidentQuery {
            limit: None,
            since: self.since.clone(),
            until: self.until.clone(),
            severity: self.severity.clone(),
            kind: self.kind.clone(),
            status: self.status.clone(),
            resource: self.resource.clone(),
        }
    }
}
