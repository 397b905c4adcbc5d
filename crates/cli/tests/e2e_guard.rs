//! The deletion guard: an emptied or gutted source holds its deletes for an
//! operator (exit 2), `approve` applies them; a small change goes ahead.

mod util;

use util::{days_from_now, wall, Env, Ev, ProfileConf};

/// Ten students in one group, ten events for the group: 100 copies.
fn ten_by_ten(env: &Env) {
    let src = env.source();
    let ids: Vec<String> = (0..10).map(|i| format!("S{i}")).collect();
    for s in &ids {
        src.student(s);
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    src.group("G", "Everyone", &refs);
    for i in 0..10 {
        let id = format!("E{i}");
        src.event(&Ev::new(
            &id,
            "Lecture",
            &wall(days_from_now(i + 1, 9)),
            &wall(days_from_now(i + 1, 10)),
        ));
        src.event_group(&id, "G");
    }
}

fn guarded(percent: f64) -> Vec<ProfileConf> {
    vec![ProfileConf {
        max_delete_percent: percent,
        ..Default::default()
    }]
}

#[test]
fn an_emptied_events_view_is_held_until_approved() {
    let env = Env::new();
    env.write_config(&guarded(10.0));
    ten_by_ten(&env);
    assert_eq!(env.sync("teaching")["create"], 100);
    let files = env.files();
    assert_eq!(files.len(), 100);

    // A refresh job that failed half-way: the events view is empty.
    env.source().exec("DELETE FROM {p}events");
    let plan = env.plan("teaching");
    assert_eq!(plan["delete"], 100, "{plan}");
    assert_eq!(plan["guard"], "hold", "{plan}");
    let held = env.sync_expect("teaching", 2);
    assert_eq!(held["status"], "held", "{held}");
    assert_eq!(held["held_deletes"], 100, "{held}");
    assert!(
        held["hold_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("no usable events"),
        "{held}"
    );
    assert_eq!(env.files(), files, "a held run deletes nothing");

    // Held again on the next cycle; still nothing deleted.
    let again = env.sync_expect("teaching", 2);
    assert_eq!(again["status"], "held", "{again}");
    assert_eq!(env.files(), files);

    // Text output says how to approve.
    let c = env.config_arg();
    let out = env.expect(2, &["sync", "--config", &c, "--profile", "teaching"]);
    let run = out
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "approve")
        .nth(3)
        .unwrap_or_else(|| {
            panic!(
                "no `edusync approve --config FILE RUN_ID` hint{}",
                out.describe()
            )
        })
        .to_string();
    assert!(out.stdout.contains("HELD"), "{}", out.describe());

    let out = env.ok(&["approve", "--config", &c, &run]);
    assert!(
        out.stdout.contains("100 held deletes applied"),
        "{}",
        out.describe()
    );
    assert!(
        env.calendars("teaching").is_empty(),
        "approved deletes are applied"
    );
    let plan = env.plan("teaching");
    assert_eq!(
        (plan["create"].as_u64(), plan["delete"].as_u64()),
        (Some(0), Some(0)),
        "{plan}"
    );

    // A run that is not held cannot be approved.
    let out = env.expect(1, &["approve", "--config", &c, &run]);
    assert!(out.stderr.contains("not held"), "{}", out.describe());
    // The earlier held runs were superseded by the later plan: not approvable.
    let first = held["run_id"].as_i64().unwrap().to_string();
    let out = env.expect(1, &["approve", "--config", &c, &first]);
    assert!(out.stderr.contains("superseded"), "{}", out.describe());
    assert!(env.calendars("teaching").is_empty());
}

#[test]
fn deleting_more_than_max_delete_percent_is_held_less_is_applied() {
    let env = Env::new();
    env.write_config(&guarded(15.0));
    ten_by_ten(&env);
    env.sync("teaching");

    // Two of ten events go (20 of 100 copies, 20% > 15%), and one is added:
    // the create is applied, the deletes are held.
    let src = env.source();
    src.exec("DELETE FROM {p}events WHERE event_id IN ('E0', 'E1')");
    src.event(&Ev::new(
        "E-NEW",
        "New lecture",
        &wall(days_from_now(20, 9)),
        &wall(days_from_now(20, 10)),
    ));
    src.event_group("E-NEW", "G");
    drop(src);
    let held = env.sync_expect("teaching", 2);
    assert_eq!(held["status"], "held", "{held}");
    assert_eq!(held["create"], 10, "{held}");
    assert_eq!(held["held_deletes"], 20, "{held}");
    let reason = held["hold_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("20 of 100") && reason.contains("max_delete_percent"),
        "{held}"
    );
    let cal = env.calendars("teaching");
    assert_eq!(cal.len(), 110, "creates applied, deletes held");
    assert!(cal.iter().any(|(_, e)| e == "E0"));

    let c = env.config_arg();
    let run = held["run_id"].as_i64().unwrap().to_string();
    env.ok(&["approve", "--config", &c, &run]);
    let cal = env.calendars("teaching");
    assert_eq!(cal.len(), 90);
    assert!(!cal.iter().any(|(_, e)| e == "E0" || e == "E1"));

    // One student leaves: 9 of 90 copies (10% < 15%) — applied at once.
    env.source()
        .exec("DELETE FROM {p}group_members WHERE person_id = 'S3'");
    let plan = env.plan("teaching");
    assert_eq!(plan["guard"], "apply", "{plan}");
    let r = env.sync("teaching");
    assert_eq!(r["delete"], 9, "{r}");
    assert_eq!(env.calendars("teaching").len(), 81);
    assert!(env
        .calendars("teaching")
        .iter()
        .all(|(f, _)| f != "s3@uni.example"));
}
