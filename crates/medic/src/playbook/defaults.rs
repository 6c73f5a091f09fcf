//! The default playbooks, as `medic playbooks --print-default` shows them.
//!
//! The store's built-in repair strategies rendered as playbooks, for reading: which issue codes each handles, how
//! deep it goes and what it does. They stay compiled Rust (`store::subject`): a playbook directory cannot name the
//! target `store`.
//!
//! A PostgreSQL target's default playbooks ([`postgres`]) are real playbooks: compiled and checked like a
//! directory's ([`postgres_playbooks`]) and run for every postgres target, except for a code a playbook of the
//! directory handles on that target. `pg_connections_exhausted` and `pg_replication_lag` have none (an operator
//! decides: they escalate), and `pg_down` has one only when the target has a `restart_command`.

use std::path::Path;

use crate::target::TargetConfig;

use super::Playbook;

/// One built-in strategy: name, the codes it handles, its cost in the cascade, what it does.
const BUILTIN: &[(&str, &[&str], &str, &str)] = &[
    (
        "truncate_torn_tail",
        &["torn_tail"],
        "in_place",
        "cut the log's torn tail (bytes never acknowledged) at the last whole record",
    ),
    (
        "break_stale_lock",
        &["stale_lock", "lock_file_damaged"],
        "in_place",
        "take over a LOCK whose holder is provably gone, write the holder text back",
    ),
    (
        "compact",
        &[
            "disk_space_low",
            "disk_space_critical",
            "wal_over_bound",
            "compaction_failed",
            "store_poisoned",
            "file_unreadable",
            "snapshot_log_disagree",
        ],
        "in_place",
        "write a snapshot of the table and drop the log it covers (not while acknowledged data is lost); also the last resort for damage parity or the mirror cannot undo",
    ),
    (
        "rebuild_from_parity",
        &["block_checksum", "parity_damaged", "parity_mismatch"],
        "redundancy",
        "rebuild the damaged blocks from the Reed-Solomon sidecar, verify, replace atomically",
    ),
    (
        "restore_manifest_from_twin",
        &["manifest_copy_damaged"],
        "redundancy",
        "rewrite the damaged manifest copy from the copy that verifies",
    ),
    (
        "repair_from_mirror",
        &["wal_record_damaged", "mirror_damaged"],
        "redundancy",
        "copy the damaged log records from the segment's mirror where that copy verifies",
    ),
    (
        "restore_snapshot_and_replay",
        &["memory_table_mismatch"],
        "replay_log",
        "reload the in-memory table from the newest snapshot and replay the log",
    ),
];

/// The default playbooks of postgres target `target`: (file name, YAML). `pg_down`'s only with a restart command.
pub fn postgres(target: &str, restart_command: bool) -> Vec<(String, String)> {
    let mut out = vec![
        (
            format!("pg-terminate-idle.{target}.yaml"),
            format!(
                "# Ends the sessions idle in a transaction past idle_in_transaction_s_max (their transactions roll back):\n\
                 # the pids of the issue's evidence, if they are still idle in a transaction.\n\
                 name: pg-terminate-idle.{target}\n\
                 target: {target}\n\
                 trigger:\n  code: pg_idle_in_transaction\n\
                 steps:\n  - pg_terminate_backend: {target}\n    timeout: 10s\n\
                 verify:\n  wait: 500ms\n  retries: 10\n\
                 safety:\n  max_attempts: 3\n"
            ),
        ),
        (
            format!("pg-cancel-long-query.{target}.yaml"),
            format!(
                "# Cancels the statement running past query_s_max (the session stays).\n\
                 name: pg-cancel-long-query.{target}\n\
                 target: {target}\n\
                 trigger:\n  code: pg_long_query\n\
                 steps:\n  - pg_cancel_backend: {target}\n    timeout: 10s\n\
                 verify:\n  wait: 1s\n  retries: 5\n\
                 safety:\n  max_attempts: 2\n"
            ),
        ),
        (
            format!("pg-vacuum.{target}.yaml"),
            format!(
                "# VACUUM (ANALYZE) of the table whose dead tuples passed dead_tuple_ratio_max (named in the evidence).\n\
                 name: pg-vacuum.{target}\n\
                 target: {target}\n\
                 trigger:\n  code: pg_bloat\n\
                 steps:\n  - pg_vacuum_analyze: {target}\n    timeout: 10m\n\
                 verify:\n  wait: 1s\n  retries: 5\n\
                 safety:\n  max_attempts: 2\n  cooldown: 10m\n"
            ),
        ),
        (
            format!("pg-reindex.{target}.yaml"),
            format!(
                "# REINDEX INDEX CONCURRENTLY of the index bt_index_check reported corrupted (named in the evidence);\n\
                 # the amcheck check that reported it runs again to confirm.\n\
                 name: pg-reindex.{target}\n\
                 target: {target}\n\
                 trigger:\n  code: pg_index_corrupt\n\
                 steps:\n  - pg_reindex_concurrently: {target}\n    timeout: 10m\n\
                 safety:\n  max_attempts: 2\n"
            ),
        ),
    ];
    if restart_command {
        out.push((
            format!("pg-restart.{target}.yaml"),
            format!(
                "# Runs the target's restart_command when the server does not answer, then waits for it to answer.\n\
                 name: pg-restart.{target}\n\
                 target: {target}\n\
                 trigger:\n  code: pg_down\n\
                 steps:\n  - run_restart_command: {target}\n    timeout: 60s\n\
                 verify:\n  wait: 1s\n  retries: 20\n\
                 safety:\n  max_attempts: 3\n  cooldown: 30s\n"
            ),
        ));
    }
    out
}

/// The default playbooks of postgres target `target`, compiled against `targets` (an error is a defect of medic's,
/// reported, never skipped).
pub fn postgres_playbooks(
    targets: &[TargetConfig],
    target: &TargetConfig,
) -> anyhow::Result<Vec<Playbook>> {
    let catalog = crate::target::catalog(targets);
    let mut out = Vec::new();
    for (file, text) in postgres(&target.name, !target.restart_command.is_empty()) {
        let path = Path::new("<default>").join(&file);
        let raw = super::parse::parse(&text, &path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let p = super::validate::compile(raw, &path, &catalog).map_err(|errors| {
            anyhow::anyhow!(
                "default playbook {file}: {}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        out.push(p);
    }
    Ok(out)
}

/// The default playbooks of every postgres target of `targets`, or of an example target `db` when none is configured.
fn render_postgres(targets: &[TargetConfig]) -> String {
    let configured: Vec<&TargetConfig> = targets
        .iter()
        .filter(|t| t.kind == crate::target::TargetKind::Postgres)
        .collect();
    let mut out = String::from(
        "# PostgreSQL targets ([[targets]] kind = \"postgres\"): the playbooks medic runs by default, one file each.\n\
         # A playbook of [playbooks] dir for the same target and trigger code replaces the default one.\n",
    );
    let shown: Vec<(String, bool)> = if configured.is_empty() {
        out.push_str(
            "# No postgres target is configured (--config): shown for a target named db with a restart_command.\n\
             # `medic playbooks check` accepts them against a configuration naming that target, e.g. a medic.toml with\n\
             #   [[targets]]\n\
             #   name = \"db\"\n\
             #   kind = \"postgres\"\n\
             #   url = \"postgres://medic@127.0.0.1:5432/app\"\n\
             #   restart_command = [\"systemctl\", \"restart\", \"postgresql\"]\n\
             # and `medic --config medic.toml playbooks check DIR` (one file each, named by its `# file:` line).\n",
        );
        vec![("db".to_string(), true)]
    } else {
        configured
            .iter()
            .map(|t| (t.name.clone(), !t.restart_command.is_empty()))
            .collect()
    };
    for (name, restart) in shown {
        for (file, text) in postgres(&name, restart) {
            out.push_str(&format!("---\n# file: {file}\n{text}"));
        }
    }
    out
}

/// The built-in strategies and the postgres targets' default playbooks as a multi-document YAML stream.
pub fn render(targets: &[TargetConfig]) -> String {
    let mut out = String::from(
        "# The store's built-in repairs, shown as playbooks for reading (`medic playbooks --print-default`).\n\
         # They are compiled into medic and run through the same engine, cascade (cheapest first: in_place,\n\
         # redundancy, replay_log, rebuild) and safety gates ([engine]) as playbooks. A playbook directory cannot\n\
         # name the target `store`; `builtin` is not an action of the library.\n",
    );
    for (name, codes, cost, what) in BUILTIN {
        for code in *codes {
            out.push_str(&format!(
                "---\nname: {name}\ntarget: store\ntrigger:\n  code: {code}\n# cost: {cost}\nsteps:\n  - builtin: {name}   # {what}\nverify:\n  checks: [store]   # the checks that reported the issue run again\n"
            ));
        }
    }
    out.push_str(&render_postgres(targets));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_defaults_are_yaml_naming_every_strategy() {
        let text = super::render(&[]);
        let docs: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(&text).unwrap();
        assert_eq!(docs.len(), 17 + 5);
        assert_eq!(docs.iter().filter(|d| d["target"] == "store").count(), 17);
        assert_eq!(docs.iter().filter(|d| d["target"] == "db").count(), 5);
        assert!(docs.iter().any(
            |d| d["name"] == "rebuild_from_parity" && d["trigger"]["code"] == "parity_mismatch"
        ));
    }

    #[test]
    fn the_postgres_defaults_compile_and_pg_down_needs_a_restart_command() {
        let mut db = crate::target::TargetConfig {
            name: "db".into(),
            kind: crate::target::TargetKind::Postgres,
            url: Some("host=/tmp dbname=x".into()),
            ..Default::default()
        };
        let without = super::postgres_playbooks(std::slice::from_ref(&db), &db).unwrap();
        assert_eq!(without.len(), 4);
        assert!(without.iter().all(|p| p.code != "pg_down"));
        db.restart_command = vec!["true".into()];
        let with = super::postgres_playbooks(std::slice::from_ref(&db), &db).unwrap();
        let codes: Vec<&str> = with.iter().map(|p| p.code.as_str()).collect();
        assert_eq!(
            codes,
            [
                "pg_idle_in_transaction",
                "pg_long_query",
                "pg_bloat",
                "pg_index_corrupt",
                "pg_down"
            ]
        );
    }
}
