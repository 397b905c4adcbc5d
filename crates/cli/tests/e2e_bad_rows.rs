//! Every bad-row kind of the source contract is set aside with a reason that
//! names the view and the row, and every good event still syncs.

mod util;

use std::collections::BTreeSet;

use serde_json::Value;
use util::{days_from_now, wall, Env, Ev, ProfileConf};

fn ev(id: Option<&str>, title: Option<&str>, start: Option<String>, end: Option<String>) -> Ev {
    Ev {
        id: id.map(String::from),
        title: title.map(String::from),
        starts_at: start,
        ends_at: end,
        ..Default::default()
    }
}

/// `(view, row, reason fragment)` of every quarantine entry expected.
fn expected() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("tt_people", "person_id=P-NOMAIL", "email is missing"),
        ("tt_people", "person_id=P-BADMAIL", "not a usable address"),
        (
            "tt_group_members",
            "group_id=G, person_id=P-GHOST",
            "person P-GHOST does not exist",
        ),
        ("tt_events", "#2", "event_id is missing"),
        ("tt_events", "event_id=E-NOTITLE", "title is missing"),
        (
            "tt_events",
            "event_id=E-BADTIME",
            "starts_at \"next tuesday\" is not a time",
        ),
        ("tt_events", "event_id=E-NOTIME", "starts_at is missing"),
        ("tt_events", "event_id=E-BACKWARDS", "is before starts_at"),
        ("tt_events", "event_id=E-BADTZ", "Mars/Olympus"),
        ("tt_events", "event_id=E-DUP", "used by 2 rows"),
        ("tt_events", "event_id=E-DUP", "used by 2 rows"),
        ("tt_events", "event_id=E-LONG", "max_event_hours"),
        (
            "tt_event_groups",
            "event_id=E-GHOST, group_id=G",
            "event E-GHOST does not exist",
        ),
        (
            "tt_event_groups",
            "event_id=E-GOOD2, group_id=G-GHOST",
            "group G-GHOST does not exist",
        ),
        (
            "tt_event_people",
            "event_id=E-GOOD1, person_id=P-GHOST",
            "person P-GHOST does not exist",
        ),
        (
            "tt_event_locations",
            "event_id=E-GOOD1, location_id=L-GHOST",
            "location L-GHOST does not exist",
        ),
    ]
}

#[test]
fn bad_rows_are_quarantined_exactly_and_good_events_sync() {
    let env = Env::new();
    env.write_config(&[ProfileConf::default()]);
    let src = env.source();
    src.student("S1");
    src.student("S2");
    src.person("P-NOMAIL", "student", None, None);
    src.person("P-BADMAIL", "student", Some("not-an-email"), None);
    // Members whose person row was set aside cost nothing more.
    src.group(
        "G",
        "Group",
        &["S1", "S2", "P-NOMAIL", "P-BADMAIL", "P-GHOST"],
    );
    src.location("L1", "Room 1", None);

    let t = |d: i64, h: i8| Some(wall(days_from_now(d, h)));
    src.event(&ev(Some("E-GOOD1"), Some("Good one"), t(2, 9), t(2, 10)));
    src.event(&ev(None, Some("No id"), t(2, 9), t(2, 10)));
    src.event(&ev(Some("E-NOTITLE"), None, t(2, 9), t(2, 10)));
    src.event(&ev(
        Some("E-BADTIME"),
        Some("Bad time"),
        Some("next tuesday".into()),
        t(2, 10),
    ));
    src.event(&ev(Some("E-NOTIME"), Some("No time"), None, t(2, 10)));
    src.event(&ev(
        Some("E-BACKWARDS"),
        Some("Backwards"),
        t(2, 11),
        t(2, 10),
    ));
    let mut tz = ev(Some("E-BADTZ"), Some("Bad zone"), t(2, 9), t(2, 10));
    tz.timezone = Some("Mars/Olympus".into());
    src.event(&tz);
    src.event(&ev(Some("E-DUP"), Some("Dup A"), t(3, 9), t(3, 10)));
    src.event(&ev(Some("E-DUP"), Some("Dup B"), t(3, 9), t(3, 10)));
    src.event(&ev(Some("E-LONG"), Some("Marathon"), t(4, 9), t(5, 15)));
    src.event(&ev(Some("E-GOOD2"), Some("Good two"), t(4, 9), t(4, 17)));
    for e in [
        "E-GOOD1",
        "E-GOOD2",
        "E-NOTITLE",
        "E-BADTIME",
        "E-NOTIME",
        "E-BACKWARDS",
        "E-BADTZ",
        "E-DUP",
        "E-LONG",
    ] {
        src.event_group(e, "G");
    }
    src.event_group("E-GHOST", "G");
    src.event_group("E-GOOD2", "G-GHOST");
    src.event_person("E-GOOD1", "P-GHOST", None, None);
    src.event_person(
        "E-GOOD2",
        "P-NOMAIL",
        None,
        Some("no calendar, no complaint"),
    );
    src.event_location("E-GOOD1", "L1");
    src.event_location("E-GOOD1", "L-GHOST");
    drop(src);

    let plan = env.plan("teaching");
    let want = expected();
    assert_eq!(
        plan["quarantined"].as_u64(),
        Some(want.len() as u64),
        "{plan:#}"
    );
    let got: Vec<Value> = plan["quarantine"].as_array().unwrap().clone();
    assert_eq!(got.len(), want.len(), "{plan:#}");
    let mut unmatched: Vec<Value> = got.clone();
    for (view, row, reason) in &want {
        let i = unmatched
            .iter()
            .position(|q| {
                q["view"] == *view
                    && q["row"] == *row
                    && q["reason"].as_str().unwrap_or("").contains(reason)
            })
            .unwrap_or_else(|| {
                panic!(
                    "no quarantine entry {view} {row} {reason:?} in {:#}",
                    Value::from(unmatched.clone())
                )
            });
        unmatched.remove(i);
    }
    assert!(unmatched.is_empty(), "unexpected entries: {unmatched:?}");
    assert_eq!(
        plan["create"], 4,
        "two good events for two usable students: {plan}"
    );

    // Text output: each message names the view and the row.
    let c = env.config_arg();
    let out = env.ok(&["plan", "--config", &c, "--profile", "teaching"]);
    assert!(
        out.stdout
            .contains("source view tt_events: row event_id=E-BACKWARDS: ends_at"),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout.contains("16 rows quarantined"),
        "{}",
        out.describe()
    );

    let r = env.sync("teaching");
    assert_eq!(r["quarantined"], 16, "{r}");
    assert_eq!(r["create"], 4, "{r}");
    let want_cal: BTreeSet<(String, String)> = [
        ("s1@uni.example", "E-GOOD1"),
        ("s2@uni.example", "E-GOOD1"),
        ("s1@uni.example", "E-GOOD2"),
        ("s2@uni.example", "E-GOOD2"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(env.calendars("teaching"), want_cal);
    let (_, good1) = env
        .event_file("teaching", "s1@uni.example", "E-GOOD1")
        .unwrap();
    assert_eq!(
        util::props(&good1)["LOCATION"],
        "Room 1",
        "a bad link row costs only that link"
    );

    // Fixing a row brings its event in; a good event that turns bad is left alone, not deleted.
    let src = env.source();
    src.exec("UPDATE {p}events SET starts_at = ends_at WHERE event_id = 'E-BADTIME'");
    src.exec("UPDATE {p}events SET timezone = 'Atlantis/Lost' WHERE event_id = 'E-GOOD2'");
    drop(src);
    let plan = env.plan("teaching");
    assert_eq!(
        (plan["create"].as_u64(), plan["delete"].as_u64()),
        (Some(2), Some(0)),
        "{plan}"
    );
    assert_eq!(plan["left_alone"], 2, "{plan}");
    env.sync("teaching");
    let cal = env.calendars("teaching");
    assert_eq!(cal.len(), 6, "{cal:?}");
    assert!(cal.contains(&("s1@uni.example".to_string(), "E-GOOD2".to_string())));
}

#[test]
fn max_event_hours_is_the_profiles() {
    let env = Env::new();
    env.write_config(&[ProfileConf {
        extra: "max_event_hours = 2".into(),
        ..Default::default()
    }]);
    let src = env.source();
    src.student("S1");
    src.event(&ev(
        Some("E-3H"),
        Some("Three hours"),
        Some(wall(days_from_now(2, 9))),
        Some(wall(days_from_now(2, 12))),
    ));
    src.event(&ev(
        Some("E-2H"),
        Some("Two hours"),
        Some(wall(days_from_now(2, 13))),
        Some(wall(days_from_now(2, 15))),
    ));
    src.event_person("E-3H", "S1", None, None);
    src.event_person("E-2H", "S1", None, None);
    drop(src);
    let plan = env.plan("teaching");
    assert_eq!(plan["quarantined"], 1, "{plan}");
    assert_eq!(plan["quarantine"][0]["row"], "event_id=E-3H", "{plan}");
    assert!(
        plan["quarantine"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("max_event_hours = 2"),
        "{plan}"
    );
    assert_eq!(plan["create"], 1, "{plan}");
}
