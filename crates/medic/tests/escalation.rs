//! Escalation policies through the real `medic serve`, with two local HTTP receivers as two levels: a SEV0 loss
//! (the open WAL segment and its mirror damaged alike) is notified to level 1 at once, as one message listing the
//! event's alerts; reminded until `medic ack`; stepped up to level 2 when nobody acknowledges within level 1's
//! delay; `medic ack` stops the reminders, and the `resolved` notification reaches both levels. A policy naming an
//! unknown receiver is refused, naming the key. An escalation that reached level 2 is still at level 2 after a restart
//! (SIGTERM): its reminders reach both levels, numbered on, and an acknowledgement given before the restart holds.

mod support;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{alert_receiver, medic, start_with_config, wait_for};

/// The alerts `got` holds about incident `id`, as (rule, title).
fn about(got: &Mutex<Vec<Value>>, id: u64) -> Vec<(String, String)> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|a| a["incident_id"] == id)
        .map(|a| {
            (
                a["rule"].as_str().unwrap_or("").to_string(),
                a["title"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn count(got: &Mutex<Vec<Value>>, id: u64, rule: &str) -> usize {
    about(got, id).iter().filter(|(r, _)| r == rule).count()
}

#[test]
fn a_sev0_escalation_climbs_the_levels_until_acknowledged_and_its_resolution_reaches_both() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (first_url, first) = alert_receiver();
    let (second_url, second) = alert_receiver();
    // Reminders every second; level 2 is called when level 1 has not acknowledged within 4 s.
    let config = format!(
        "[checks]\nshallow_interval_ms = 200\n\n[engine]\nrenotify_interval_us = \"1s\"\n\n\
         [[escalation.receivers]]\nname = \"first-line\"\nkind = \"webhook\"\nurl = \"{first_url}\"\n\n\
         [[escalation.receivers]]\nname = \"second-line\"\nkind = \"webhook\"\nurl = \"{second_url}\"\n\n\
         [[escalation.policies]]\nname = \"data\"\nseverity_max = \"Sev0\"\n\n\
         [[escalation.policies.levels]]\ndelay_ms = \"4s\"\nreceivers = [\"first-line\"]\n\n\
         [[escalation.policies.levels]]\ndelay_ms = \"1m\"\nreceivers = [\"second-line\"]\n"
    );
    let d = start_with_config(&data, tmp.path(), &config);
    for i in 0..40 {
        let (s, _) = d.json("PUT", &format!("/v1/docs/doc-{i}"), Some(&support::doc(i)));
        assert_eq!(s, 200);
    }
    d.stop();
    support::damage_every_wal_copy(&data);

    let d = start_with_config(&data, tmp.path(), &config);
    let t0 = Instant::now();
    // Level 1 hears of the SEV0 at once, in one message for the event.
    let escalation = wait_for("level 1 notified", Duration::from_secs(30), || {
        first
            .lock()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == "escalation")
            .cloned()
    });
    let id = escalation["incident_id"].as_u64().unwrap();
    assert_eq!(escalation["severity"], "Sev0", "{escalation}");
    wait_for("a reminder to level 1", Duration::from_secs(20), || {
        (count(&first, id, "escalation_repeat") >= 1).then_some(())
    });
    // The event — the loss's escalation and the rules its issues fired — was one message, listing them.
    let before_reminder: Vec<Value> = {
        let got = first.lock().unwrap();
        let n = got
            .iter()
            .position(|a| a["rule"] == "escalation_repeat")
            .unwrap();
        got[..n].to_vec()
    };
    assert_eq!(before_reminder.len(), 1, "{before_reminder:#?}");
    let title = escalation["title"].as_str().unwrap();
    assert!(
        title.starts_with(&format!("3 alerts for incident {id}: "))
            && title.contains("[data_at_risk]")
            && title.contains("[escalation] acknowledged_data_lost"),
        "{title}"
    );
    if t0.elapsed() < Duration::from_secs(3) {
        assert!(
            about(&second, id).is_empty(),
            "level 2 called before level 1's delay: {:?}",
            about(&second, id)
        );
    }
    // Nobody acknowledged within 4 s: level 2 is called, and reminded too.
    let step = wait_for("level 2 notified", Duration::from_secs(20), || {
        about(&second, id)
            .into_iter()
            .find(|(r, _)| r == "escalation_step")
    });
    assert!(t0.elapsed() >= Duration::from_secs(4), "{:?}", t0.elapsed());
    assert!(
        step.1.contains("level 2 of policy data") && step.1.contains(&format!("medic ack {id}")),
        "{step:?}"
    );
    wait_for("a reminder to level 2", Duration::from_secs(20), || {
        (count(&second, id, "escalation_repeat") >= 1).then_some(())
    });

    // `medic ack` stops the reminders at both levels; both hear of the acknowledgement once.
    let (code, _, err) = medic(&data, &["ack", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    wait_for(
        "the acknowledgement at both",
        Duration::from_secs(10),
        || {
            (count(&first, id, "acknowledged") == 1 && count(&second, id, "acknowledged") == 1)
                .then_some(())
        },
    );
    let (n1, n2) = (about(&first, id).len(), about(&second, id).len());
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(about(&first, id).len(), n1, "{:?}", about(&first, id));
    assert_eq!(about(&second, id).len(), n2, "{:?}", about(&second, id));

    // Resolved: every receiver that was notified hears of it.
    let (code, _, err) = medic(&data, &["resolve", &id.to_string(), "--note", "restored"]);
    assert_eq!(code, 0, "{err}");
    wait_for("resolved at both levels", Duration::from_secs(20), || {
        (count(&first, id, "resolved") == 1 && count(&second, id, "resolved") == 1).then_some(())
    });
    d.stop();
}

#[test]
fn a_level_naming_an_unknown_receiver_is_refused_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("medic.toml");
    std::fs::write(
        &path,
        "[[escalation.receivers]]\nname = \"a\"\nkind = \"file\"\npath = \"/tmp/a.jsonl\"\n\n\
         [[escalation.policies]]\nname = \"p\"\n\n\
         [[escalation.policies.levels]]\ndelay_ms = \"5m\"\nreceivers = [\"a\"]\n\n\
         [[escalation.policies.levels]]\ndelay_ms = \"5m\"\nreceivers = [\"a\", \"x\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["config", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("escalation.policies[0].levels[1].receivers: unknown receiver \"x\""),
        "{err}"
    );
}

#[test]
fn an_escalation_goes_on_at_the_level_it_had_reached_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (first_url, first) = alert_receiver();
    let (second_url, second) = alert_receiver();
    // Reminders every second; level 2 is called when level 1 has not acknowledged within 2 s.
    let config = format!(
        "[checks]\nshallow_interval_ms = 200\n\n[engine]\nrenotify_interval_us = \"1s\"\n\n\
         [[escalation.receivers]]\nname = \"first-line\"\nkind = \"webhook\"\nurl = \"{first_url}\"\n\n\
         [[escalation.receivers]]\nname = \"second-line\"\nkind = \"webhook\"\nurl = \"{second_url}\"\n\n\
         [[escalation.policies]]\nname = \"data\"\nseverity_max = \"Sev0\"\n\n\
         [[escalation.policies.levels]]\ndelay_ms = \"2s\"\nreceivers = [\"first-line\"]\n\n\
         [[escalation.policies.levels]]\ndelay_ms = \"1m\"\nreceivers = [\"second-line\"]\n"
    );
    let d = start_with_config(&data, tmp.path(), &config);
    for i in 0..40 {
        let (s, _) = d.json("PUT", &format!("/v1/docs/doc-{i}"), Some(&support::doc(i)));
        assert_eq!(s, 200);
    }
    d.stop();
    support::damage_every_wal_copy(&data);

    let d = start_with_config(&data, tmp.path(), &config);
    let escalation = wait_for("level 1 notified", Duration::from_secs(30), || {
        first
            .lock()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == "escalation")
            .cloned()
    });
    let id = escalation["incident_id"].as_u64().unwrap();
    wait_for("level 2 notified", Duration::from_secs(20), || {
        (count(&second, id, "escalation_step") == 1).then_some(())
    });
    let reminders_before = count(&first, id, "escalation_repeat");
    d.stop();
    let (n1, n2) = (first.lock().unwrap().len(), second.lock().unwrap().len());

    // After the restart the incident is still at level 2: its reminders reach both levels, numbered on, and
    // nothing starts over at level 1.
    let d = start_with_config(&data, tmp.path(), &config);
    let next = wait_for(
        "a reminder at level 2 after the restart",
        Duration::from_secs(30),
        || {
            second.lock().unwrap()[n2..]
                .iter()
                .find(|a| a["incident_id"] == id)
                .cloned()
        },
    );
    // A reminder numbered on from before the restart.
    let title = next["title"].as_str().unwrap();
    let n: usize = title
        .split("reminder ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no reminder in {next}"));
    assert!(
        n > reminders_before,
        "{title} (before the restart: {reminders_before})"
    );
    wait_for(
        "the reminder at level 1 too",
        Duration::from_secs(10),
        || {
            first.lock().unwrap()[n1..]
                .iter()
                .any(|a| a["incident_id"] == id && a["rule"] == "escalation_repeat")
                .then_some(())
        },
    );
    let after: Vec<Value> = first.lock().unwrap()[n1..].to_vec();
    assert!(
        after
            .iter()
            .all(|a| a["rule"] != "escalation" && a["rule"] != "escalation_step"),
        "started over after the restart: {after:#?}"
    );
    // The loss is found again at the start, but its `data_at_risk` alert is still in its cooldown (kept in the
    // knowledge base): not sent again.
    assert!(
        after.iter().all(|a| a["rule"] != "data_at_risk"
            && !a["title"].as_str().unwrap_or("").contains("[data_at_risk]")),
        "the loss's alert sent again after the restart: {after:#?}"
    );

    // Acknowledged, restarted: still quiet.
    let (code, _, err) = medic(&data, &["ack", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    wait_for("the acknowledgement", Duration::from_secs(10), || {
        (count(&second, id, "acknowledged") == 1).then_some(())
    });
    d.stop();
    // Nothing at all: no reminder, and not the loss's alert either.
    let (n1, n2) = (first.lock().unwrap().len(), second.lock().unwrap().len());
    let d = start_with_config(&data, tmp.path(), &config);
    std::thread::sleep(Duration::from_secs(4));
    let (after1, after2) = (
        first.lock().unwrap()[n1..].to_vec(),
        second.lock().unwrap()[n2..].to_vec(),
    );
    assert!(after1.is_empty(), "{after1:#?}");
    assert!(after2.is_empty(), "{after2:#?}");
    d.stop();
}
