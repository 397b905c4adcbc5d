//! Changes in the source reach the calendars as updates, removals and
//! cancellations — exactly the affected copies, nothing else.

mod util;

use std::collections::BTreeMap;

use util::{days_from_now, props, wall, Env, Ev, ProfileConf, Source};

/// S1..S3 in group G-A with lecturer L1 on E1; four events in the next weeks.
fn base(src: &Source) {
    for s in ["S1", "S2", "S3", "S4"] {
        src.student(s);
    }
    src.person("L1", "staff", Some("l1@uni.example"), Some("Dr Lee"));
    src.group("G-A", "Group A", &["S1", "S2", "S3"]);
    src.location("R1", "Room 1", Some("Main Building"));
    src.location("R2", "Room 2", Some("Main Building"));
    for (i, id) in ["E1", "E2", "E3", "E4"].into_iter().enumerate() {
        let day = days_from_now(3 + i as i64, 10);
        let end = days_from_now(3 + i as i64, 11);
        src.event(&Ev::new(
            id,
            &format!("Lecture {id}"),
            &wall(day),
            &wall(end),
        ));
        src.event_group(id, "G-A");
        src.event_location(id, "R1");
    }
    src.event_person("E1", "L1", Some("host"), None);
    src.event_person("E3", "S4", None, None);
}

use util::Files;

/// Which copies (folder, event id) differ between two snapshots of the vdir.
fn changed(a: &Files, b: &Files) -> Vec<(String, String)> {
    let by_marker = |f: &Files| -> BTreeMap<(String, String), String> {
        f.iter()
            .filter_map(|((folder, _), text)| {
                let m = props(text).get("X-EDUSYNC-MARKER")?.clone();
                Some((
                    (
                        folder.clone(),
                        m.trim_start_matches("teaching/").to_string(),
                    ),
                    text.clone(),
                ))
            })
            .collect()
    };
    let (a, b) = (by_marker(a), by_marker(b));
    let mut keys: Vec<_> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| a.get(k) != b.get(k)).collect()
}

fn key(folder: &str, event: &str) -> (String, String) {
    (folder.to_string(), event.to_string())
}

#[test]
fn room_and_time_changes_are_updates_of_exactly_the_affected_copies() {
    let env = Env::new();
    env.write_config(&[ProfileConf::default()]);
    base(&env.source());
    let first = env.sync("teaching");
    assert_eq!(first["create"], 14, "{first}");
    let before = env.files();
    let (e1_name, e1_text) = env.event_file("teaching", "s1@uni.example", "E1").unwrap();
    let e1_uid = props(&e1_text)["UID"].clone();

    let src = env.source();
    src.exec("UPDATE {p}event_locations SET location_id = 'R2' WHERE event_id = 'E1'");
    let new_start = days_from_now(4, 14);
    let new_end = days_from_now(4, 15);
    src.exec_params(
        "UPDATE {p}events SET starts_at = ?1, ends_at = ?2 WHERE event_id = 'E2'",
        [wall(new_start), wall(new_end)],
    );
    drop(src);

    let plan = env.plan("teaching");
    assert_eq!(
        (
            plan["create"].as_u64(),
            plan["update"].as_u64(),
            plan["delete"].as_u64()
        ),
        (Some(0), Some(7), Some(0)),
        "{plan}"
    );
    assert_eq!(plan["unchanged"], 7, "{plan}");
    let r = env.sync("teaching");
    assert_eq!(
        (
            r["create"].as_u64(),
            r["update"].as_u64(),
            r["delete"].as_u64()
        ),
        (Some(0), Some(7), Some(0)),
        "{r}"
    );
    let after = env.files();
    let mut expect = vec![
        key("l1@uni.example", "E1"),
        key("s1@uni.example", "E1"),
        key("s1@uni.example", "E2"),
        key("s2@uni.example", "E1"),
        key("s2@uni.example", "E2"),
        key("s3@uni.example", "E1"),
        key("s3@uni.example", "E2"),
    ];
    expect.sort();
    assert_eq!(
        changed(&before, &after),
        expect,
        "only the affected copies change"
    );

    // Same file, same UID, a higher SEQUENCE, the new content.
    let (name, text) = env.event_file("teaching", "s1@uni.example", "E1").unwrap();
    assert_eq!(name, e1_name, "an update rewrites the same file");
    let p = props(&text);
    assert_eq!(p["UID"], e1_uid);
    assert_eq!(p["SEQUENCE"], "1");
    assert_eq!(p["LOCATION"], "Room 2, Main Building");
    assert_eq!(props(&e1_text)["SEQUENCE"], "0");
    let (_, e2) = env.event_file("teaching", "s2@uni.example", "E2").unwrap();
    let p = props(&e2);
    let start = util::instant(new_start, &util::london());
    assert_eq!(p["DTSTART"], start.strftime("%Y%m%dT%H%M%SZ").to_string());
    assert_eq!(p["SEQUENCE"], "1");

    // A second change bumps SEQUENCE again.
    env.source()
        .exec("UPDATE {p}events SET title = 'Lecture E2 (moved)' WHERE event_id = 'E2'");
    let r = env.sync("teaching");
    assert_eq!(r["update"], 3, "{r}");
    let (_, e2) = env.event_file("teaching", "s2@uni.example", "E2").unwrap();
    assert_eq!(props(&e2)["SEQUENCE"], "2");
    assert_eq!(props(&e2)["SUMMARY"], "Lecture E2 (moved)");

    // A member leaves the group: their copies go, nobody else's.
    let before = env.files();
    env.source()
        .exec("DELETE FROM {p}group_members WHERE person_id = 'S3'");
    let plan = env.plan("teaching");
    assert_eq!(plan["delete"], 4, "{plan}");
    let r = env.sync("teaching");
    assert_eq!(
        (r["update"].as_u64(), r["delete"].as_u64()),
        (Some(0), Some(4)),
        "{r}"
    );
    let gone = changed(&before, &env.files());
    assert_eq!(
        gone,
        ["E1", "E2", "E3", "E4"]
            .map(|e| key("s3@uni.example", e))
            .to_vec()
    );
    assert!(env
        .calendars("teaching")
        .iter()
        .all(|(f, _)| f != "s3@uni.example"));

    // Cancelled (default "remove"): removed from every calendar.
    let before = env.files();
    env.source()
        .exec("UPDATE {p}events SET status = 'cancelled' WHERE event_id = 'E4'");
    let r = env.sync("teaching");
    assert_eq!(
        (r["update"].as_u64(), r["delete"].as_u64()),
        (Some(0), Some(2)),
        "{r}"
    );
    assert_eq!(
        changed(&before, &env.files()),
        vec![key("s1@uni.example", "E4"), key("s2@uni.example", "E4")]
    );
    let plan = env.plan("teaching");
    assert_eq!(
        (
            plan["create"].as_u64(),
            plan["update"].as_u64(),
            plan["delete"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{plan}"
    );
}

#[test]
fn cancelled_events_are_kept_and_marked_when_the_profile_says_mark() {
    let env = Env::new();
    env.write_config(&[ProfileConf {
        extra: "cancelled = \"mark\"".into(),
        ..Default::default()
    }]);
    base(&env.source());
    env.sync("teaching");
    let before = env.files();
    env.source()
        .exec("UPDATE {p}events SET status = 'cancelled' WHERE event_id = 'E4'");
    let r = env.sync("teaching");
    assert_eq!(
        (r["update"].as_u64(), r["delete"].as_u64()),
        (Some(3), Some(0)),
        "{r}"
    );
    assert_eq!(
        changed(&before, &env.files()),
        ["s1@uni.example", "s2@uni.example", "s3@uni.example"]
            .map(|s| key(s, "E4"))
            .to_vec()
    );
    for s in ["s1@uni.example", "s2@uni.example", "s3@uni.example"] {
        let (_, text) = env.event_file("teaching", s, "E4").unwrap();
        let p = props(&text);
        assert_eq!(p["STATUS"], "CANCELLED", "{s}: {text}");
        assert!(p["SUMMARY"].starts_with("Cancelled"), "{s}: {text}");
        assert_eq!(p["SEQUENCE"], "1");
    }
    let parsed = util::parse_ics_dir(&env.cal());
    let cancelled = parsed
        .values()
        .filter(|f| f["events"][0]["status"] == "CANCELLED")
        .count();
    assert_eq!(cancelled, 3);
    // Back to confirmed: the copies are un-cancelled in place.
    env.source()
        .exec("UPDATE {p}events SET status = 'confirmed' WHERE event_id = 'E4'");
    let r = env.sync("teaching");
    assert_eq!(r["update"], 3, "{r}");
    let (_, text) = env.event_file("teaching", "s1@uni.example", "E4").unwrap();
    assert_eq!(props(&text)["STATUS"], "CONFIRMED");
}
