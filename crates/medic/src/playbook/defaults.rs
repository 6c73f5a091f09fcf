//! The store's built-in repair strategies rendered as playbooks (`medic playbooks --print-default`), for reading:
//! which issue codes each handles, how deep it goes and what it does. They stay compiled Rust (`store::subject`):
//! a playbook directory cannot name the target `store`.

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

/// The built-in strategies as a multi-document YAML stream.
pub fn render() -> String {
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
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_defaults_are_yaml_naming_every_strategy() {
        let text = super::render();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(&text).unwrap();
        assert_eq!(docs.len(), 17);
        assert!(docs.iter().all(|d| d["target"] == "store"));
        assert!(docs.iter().any(
            |d| d["name"] == "rebuild_from_parity" && d["trigger"]["code"] == "parity_mismatch"
        ));
    }
}
