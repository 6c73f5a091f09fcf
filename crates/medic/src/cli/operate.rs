//! Operators' commands, run through the daemon holding the data directory (found as every command finds it, or
//! named with `--server`): `medic approve|deny|ack|resolve|reopen|annotate|false-positive ID [--note]`,
//! `medic approvals`, `medic breaker list|reset NAME`, `medic silence add|list|expire`. Who acted is the operator
//! the token (`--token`, `MEDIC_TOKEN`) names in the daemon's `[http.operators]`, or `local`.

use clap::Subcommand;
use serde_json::{Value, json};

use super::backend::Backend;
use super::render::{self, Out};
use super::{Cli, DataArg, EXIT_OK, UsageError, with_existing};

/// The operators' commands (flattened into the top level).
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Approve the risky repair an incident waits for (see `medic approvals`): it runs in the next cycle.
    Approve {
        #[command(flatten)]
        data: DataArg,
        /// The incident id.
        id: u64,
        /// Why, recorded with the approval.
        #[arg(long)]
        note: Option<String>,
    },
    /// Refuse the risky repair an incident waits for: it stays escalated, left to a human.
    Deny {
        #[command(flatten)]
        data: DataArg,
        /// The incident id.
        id: u64,
        /// Why, recorded with the denial.
        #[arg(long)]
        note: Option<String>,
    },
    /// Acknowledge an open incident: someone is on it, so it is not notified again.
    Ack {
        #[command(flatten)]
        data: DataArg,
        /// The incident id.
        id: u64,
        /// A note, recorded with the acknowledgement.
        #[arg(long)]
        note: Option<String>,
    },
    /// Close an incident as resolved by hand, saying what was done.
    Resolve {
        #[command(flatten)]
        data: DataArg,
        /// The incident id.
        id: u64,
        /// What was done (required).
        #[arg(long)]
        note: String,
    },
    /// Open a closed incident again: it is decided again in the next cycle.
    Reopen {
        #[command(flatten)]
        data: DataArg,
        /// The incident id.
        id: u64,
        /// Why.
        #[arg(long)]
        note: Option<String>,
    },
    /// Add a note to an incident's record.
    Annotate {
        #[command(flatten)]
        data: DataArg,
        /// The incident id.
        id: u64,
        /// The note (required).
        #[arg(long)]
        note: String,
    },
    /// Mark an incident a false positive: it closes, and its metrics' anomalies are silenced for a while.
    FalsePositive {
        #[command(flatten)]
        data: DataArg,
        /// The incident id.
        id: u64,
        /// Why.
        #[arg(long)]
        note: Option<String>,
    },
    /// List the incidents waiting for an operator's approval.
    Approvals {
        #[command(flatten)]
        data: DataArg,
    },
    /// Repair strategies' circuit breakers.
    Breaker {
        #[command(subcommand)]
        command: BreakerCommand,
    },
    /// Silences: matching incidents are still recorded and handled, but notify no one until the silence ends (and,
    /// with `--no-repair`, are not repaired automatically either).
    Silence {
        #[command(subcommand)]
        command: SilenceCommand,
    },
}

/// `medic breaker ...`.
#[derive(Debug, Subcommand)]
pub enum BreakerCommand {
    /// List the circuit breakers that have seen a failure.
    List {
        #[command(flatten)]
        data: DataArg,
    },
    /// Close a strategy's circuit breaker once its cause is fixed.
    Reset {
        #[command(flatten)]
        data: DataArg,
        /// The strategy, e.g. rebuild_from_parity.
        name: String,
        /// What was fixed.
        #[arg(long)]
        note: Option<String>,
    },
}

/// `medic silence ...`.
#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Silence matching incidents for a while.
    Add {
        #[command(flatten)]
        data: DataArg,
        /// NAME=VALUE, every one must match (names: code, resource, severity, rule, incident; `*` matches any
        /// run of characters). Repeat for several.
        #[arg(long = "match", value_name = "NAME=VALUE", required = true)]
        matchers: Vec<String>,
        /// How long: 90s, 15m, 2h, 1d...
        #[arg(long = "for", value_name = "DURATION", default_value = "1h")]
        duration: String,
        /// Why (required).
        #[arg(long)]
        comment: String,
        /// Matching incidents are not repaired automatically either while the silence lasts (they are still
        /// recorded and decided; the repair runs once the silence ends or is expired).
        #[arg(long)]
        no_repair: bool,
    },
    /// List the silences in force.
    List {
        #[command(flatten)]
        data: DataArg,
        /// Also those ended within the last day.
        #[arg(long)]
        all: bool,
    },
    /// End a silence now.
    Expire {
        #[command(flatten)]
        data: DataArg,
        /// The silence id.
        id: u64,
    },
}

/// Runs through the daemon for `data`: a directory no running process holds is refused before anything is opened.
fn through_daemon(
    cli: &Cli,
    data: &DataArg,
    f: impl FnOnce(&dyn Backend) -> anyhow::Result<u8>,
) -> anyhow::Result<u8> {
    if cli.server.is_none() {
        let dir = super::effective_config(cli, Some(data))?.server.data_dir;
        if dir.exists() && store::lock::read_holder(&dir).is_none_or(|h| h.closed) {
            return Err(UsageError(format!(
                "no daemon holds {}: operators' commands act on the running daemon; start `medic serve --data {}` \
                 or pass --server URL",
                dir.display(),
                dir.display()
            ))
            .into());
        }
    }
    with_existing(cli, data, f)
}

fn body(note: Option<&str>) -> Option<Value> {
    note.map(|n| json!({ "note": n }))
}

/// Runs an operator's command.
pub fn run(cli: &Cli, out: &Out, command: &OperatorCommand) -> anyhow::Result<u8> {
    use OperatorCommand as C;
    let incident = |data: &DataArg, id: u64, action: &'static str, note: Option<&str>| {
        through_daemon(cli, data, |b| {
            let v = b.operate(
                "POST",
                &format!("/v1/incidents/{id}/{action}"),
                body(note).as_ref(),
            )?;
            if out.json {
                out.json_line(&v);
            } else {
                print_action(&v, id, action);
            }
            Ok(EXIT_OK)
        })
    };
    match command {
        C::Approve { data, id, note } => incident(data, *id, "approve", note.as_deref()),
        C::Deny { data, id, note } => incident(data, *id, "deny", note.as_deref()),
        C::Ack { data, id, note } => incident(data, *id, "ack", note.as_deref()),
        C::Resolve { data, id, note } => incident(data, *id, "resolve", Some(note)),
        C::Reopen { data, id, note } => incident(data, *id, "reopen", note.as_deref()),
        C::Annotate { data, id, note } => incident(data, *id, "annotate", Some(note)),
        C::FalsePositive { data, id, note } => {
            incident(data, *id, "false-positive", note.as_deref())
        }
        C::Approvals { data } => through_daemon(cli, data, |b| {
            let v = b.operate("GET", "/v1/approvals", None)?;
            if out.json {
                out.json_line(&v);
            } else {
                print_approvals(out, &v);
            }
            Ok(EXIT_OK)
        }),
        C::Breaker {
            command: BreakerCommand::List { data },
        } => through_daemon(cli, data, |b| {
            let v = b.operate("GET", "/v1/breakers", None)?;
            if out.json {
                out.json_line(&v);
                return Ok(EXIT_OK);
            }
            let rows: Vec<Vec<String>> = list(&v, "breakers")
                .iter()
                .map(|r| {
                    vec![
                        render::scalar(&r["strategy"]),
                        // For people: "half-open", not the API's "half_open".
                        render::scalar(&r["state"]).replace('_', "-"),
                        render::scalar(&r["consecutive_failures"]),
                        render::scalar(&r["reset"]),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("no circuit breaker has seen a failure");
            } else {
                render::print_table(out, &["STRATEGY", "STATE", "FAILURES", "RESET WITH"], &rows);
            }
            Ok(EXIT_OK)
        }),
        C::Breaker {
            command: BreakerCommand::Reset { data, name, note },
        } => through_daemon(cli, data, |b| {
            let v = b.operate(
                "POST",
                &format!("/v1/breakers/{}/reset", crate::client::encode_segment(name)),
                body(note.as_deref()).as_ref(),
            )?;
            if out.json {
                out.json_line(&v);
            } else {
                println!(
                    "circuit breaker of {name} reset by {} (it had {} failures in a row)",
                    render::scalar(&v["action"]["who"]),
                    render::scalar(&v["was"]["consecutive_failures"])
                );
            }
            Ok(EXIT_OK)
        }),
        C::Silence {
            command:
                SilenceCommand::Add {
                    data,
                    matchers,
                    duration,
                    comment,
                    no_repair,
                },
        } => {
            for m in matchers {
                crate::operators::Matcher::parse(m)
                    .map_err(|e| UsageError(format!("--match: {e}")))?;
            }
            crate::operators::parse_duration(duration)
                .map_err(|e| UsageError(format!("--for: {e}")))?;
            through_daemon(cli, data, |b| {
                let v = b.operate(
                    "POST",
                    "/v1/silences",
                    Some(&json!({
                        "matchers": matchers,
                        "for": duration,
                        "comment": comment,
                        "repair": !no_repair,
                    })),
                )?;
                if out.json {
                    out.json_line(&v);
                } else {
                    let s = &v["silence"];
                    println!(
                        "silence {} until {} UTC: {}{}",
                        render::scalar(&s["id"]),
                        s["ends_at"].as_u64().map(render::utc).unwrap_or_default(),
                        matchers.join(", "),
                        if *no_repair {
                            " (no automatic repair)"
                        } else {
                            ""
                        }
                    );
                }
                Ok(EXIT_OK)
            })
        }
        C::Silence {
            command: SilenceCommand::List { data, all },
        } => through_daemon(cli, data, |b| {
            let path = if *all {
                "/v1/silences?all=true"
            } else {
                "/v1/silences"
            };
            let v = b.operate("GET", path, None)?;
            if out.json {
                out.json_line(&v);
                return Ok(EXIT_OK);
            }
            let rows: Vec<Vec<String>> = list(&v, "silences")
                .iter()
                .map(|s| {
                    let matchers: Vec<String> = s["matchers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|m| {
                            format!(
                                "{}={}",
                                render::scalar(&m["name"]),
                                render::scalar(&m["value"])
                            )
                        })
                        .collect();
                    vec![
                        render::scalar(&s["id"]),
                        matchers.join(","),
                        s["ends_at"].as_u64().map(render::utc).unwrap_or_default(),
                        if s["active"] == true {
                            "active"
                        } else {
                            "ended"
                        }
                        .to_string(),
                        render::scalar(&s["created_by"]),
                        render::scalar(&s["comment"]),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("no silences");
            } else {
                render::print_table(
                    out,
                    &["ID", "MATCHERS", "ENDS (UTC)", "STATE", "BY", "COMMENT"],
                    &rows,
                );
            }
            Ok(EXIT_OK)
        }),
        C::Silence {
            command: SilenceCommand::Expire { data, id },
        } => through_daemon(cli, data, |b| {
            let v = b.operate("DELETE", &format!("/v1/silences/{id}"), None)?;
            if out.json {
                out.json_line(&v);
            } else {
                println!("silence {id} ended");
            }
            Ok(EXIT_OK)
        }),
    }
}

fn list(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn print_action(v: &Value, id: u64, action: &str) {
    let who = render::scalar(&v["action"]["who"]);
    let status = render::scalar(&v["status"]);
    let what = match action {
        "approve" => "approved: its repair runs in the next healing cycle".to_string(),
        "deny" => "denied: its repair will not run; it stays escalated for a human".to_string(),
        "ack" => "acknowledged: no more reminders".to_string(),
        "resolve" => "resolved".to_string(),
        "reopen" => "reopened: it is decided again in the next cycle".to_string(),
        "annotate" => "annotated".to_string(),
        _ => "marked a false positive".to_string(),
    };
    println!("incident {id} {what} (by {who}; now {status})");
}

fn print_approvals(out: &Out, v: &Value) {
    let rows: Vec<Vec<String>> = list(v, "approvals")
        .iter()
        .map(|a| {
            vec![
                render::scalar(&a["incident_id"]),
                render::scalar(&a["severity"]),
                a["waiting_since"]
                    .as_u64()
                    .map(render::utc)
                    .unwrap_or_default(),
                a["expires_at"]
                    .as_u64()
                    .map(render::utc)
                    .unwrap_or_default(),
                format!(
                    "{} on {}",
                    render::scalar(&a["code"]),
                    render::scalar(&a["resource"])
                ),
                render::scalar(&a["approve"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no incident waits for approval");
        return;
    }
    render::print_table(
        out,
        &[
            "ID",
            "SEVERITY",
            "WAITING SINCE (UTC)",
            "ESCALATES AT (UTC)",
            "PROBLEM",
            "APPROVE WITH",
        ],
        &rows,
    );
}
