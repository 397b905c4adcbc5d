//! generate | plan | sync: a hand-made timetable comes out in the vdir
//! exactly as the source contract says, read back with Python's icalendar.

mod util;

use std::collections::{BTreeMap, BTreeSet};

use util::{next_date, only_event, parse_ics_dir, wall, Env, Ev, ProfileConf};

/// Expected copies: (email, event id).
fn expected() -> BTreeSet<(String, String)> {
    [
        ("alice@uni.example", "E-JUL"),
        ("bob@uni.example", "E-JUL"),
        ("x.prof@uni.example", "E-JUL"),
        ("alice@uni.example", "E-DEC"),
        ("bob@uni.example", "E-DEC"),
        ("carol@uni.example", "E-DEC"),
        ("x.prof@uni.example", "E-DEC"),
        ("alice@uni.example", "E-EXAM"),
        ("bob@uni.example", "E-EXAM"),
        ("carol@uni.example", "E-NY"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

#[test]
fn hand_made_timetable_is_synced_exactly() {
    let env = Env::new();
    env.write_config(&[ProfileConf::default()]);
    let jul = next_date(7, 15, 1, 358);
    let dec = next_date(12, 15, 1, 358);
    let exam_day = util::days_from_now(10, 0).date();
    let src = env.source();
    src.person(
        "S1",
        "student",
        Some("Alice@Uni.example"),
        Some("Alice Adams"),
    );
    src.person("S2", "student", Some("bob@uni.example"), None);
    src.person("S3", "student", Some("carol@uni.example"), None);
    src.person("S4", "student", Some("dave@uni.example"), None); // attends nothing
    src.person(
        "L1",
        "staff",
        Some("x.prof@uni.example"),
        Some("Prof. Xavier"),
    );
    src.group("G-A", "CHEM1 Group A", &["S1", "S2"]);
    src.group("G-B", "CHEM1 Group B", &["S3"]);
    src.location("R1", "Room 1.14", Some("Chemistry Building"));
    src.location("R2", "Lab 2", Some("Chemistry Building"));

    // Wall-clock 09:00 in the profile zone, in summer time: 08:00Z.
    let mut e = Ev::new(
        "E-JUL",
        "Organic Chemistry",
        &wall(jul.at(9, 0, 0, 0)),
        &wall(jul.at(10, 0, 0, 0)),
    );
    e.module_code = Some("CHEM1014".into());
    e.event_type = Some("Lecture".into());
    src.event(&e);
    src.event_group("E-JUL", "G-A");
    src.event_person("E-JUL", "S1", None, None); // alice reaches it twice
    src.event_person("E-JUL", "L1", Some("host"), None);
    src.event_location("E-JUL", "R1");

    // The same wall-clock time in winter: 09:00Z; two groups, two rooms.
    let mut e = Ev::new(
        "E-DEC",
        "Organic Chemistry",
        &wall(dec.at(9, 0, 0, 0)),
        &wall(dec.at(11, 0, 0, 0)),
    );
    e.module_code = Some("CHEM1014".into());
    e.event_type = Some("Workshop".into());
    src.event(&e);
    src.event_group("E-DEC", "G-A");
    src.event_group("E-DEC", "G-B");
    src.event_person("E-DEC", "L1", Some("host"), None);
    src.event_location("E-DEC", "R1");
    src.event_location("E-DEC", "R2");

    // An explicit offset: 10:00+02:00 is 08:00Z whatever the zones say.
    let mut e = Ev::new(
        "E-EXAM",
        "CHEM1014 Exam",
        &format!("{exam_day}T10:00:00+02:00"),
        &format!("{exam_day}T12:00:00+02:00"),
    );
    e.module_code = Some("CHEM1014".into());
    e.event_type = Some("Exam".into());
    src.event(&e);
    src.event_person("E-EXAM", "S1", None, Some("Seat 12"));
    src.event_person("E-EXAM", "S2", None, None);
    src.event_location("E-EXAM", "R2");

    // A row time zone: 09:00 in New York in December is 14:00Z.
    let mut e = Ev::new(
        "E-NY",
        "Field trip briefing",
        &wall(dec.at(9, 0, 0, 0)),
        &wall(dec.at(9, 30, 0, 0)),
    );
    e.timezone = Some("America/New_York".into());
    src.event(&e);
    src.event_group("E-NY", "G-B");
    drop(src);

    let c = env.config_arg();
    env.ok(&["check", "--config", &c]);
    let before = env.plan("teaching");
    assert_eq!(before["create"], 10, "{before}");
    assert_eq!(before["update"], 0, "{before}");
    assert_eq!(before["delete"], 0, "{before}");
    assert_eq!(before["unchanged"], 0, "{before}");
    assert_eq!(before["quarantined"], 0, "{before}");
    assert!(
        env.files().is_empty(),
        "plan is a dry run: it must write no calendar"
    );

    let report = env.sync("teaching");
    assert_eq!(report["profile"], "teaching");
    assert_eq!(report["create"], 10, "{report}");
    assert!(report["run_id"].as_i64().is_some(), "{report}");

    assert_eq!(env.calendars("teaching"), expected());
    assert!(env.stray_files().is_empty(), "{:?}", env.stray_files());
    let folders: BTreeSet<String> = env.files().keys().map(|(f, _)| f.clone()).collect();
    assert!(
        !folders.contains("dave@uni.example"),
        "dave attends nothing: {folders:?}"
    );

    // Read everything back with an independent iCalendar parser.
    let parsed = parse_ics_dir(&env.cal());
    assert_eq!(parsed.len(), 10, "{:?}", parsed.keys());
    let mut by_copy: BTreeMap<(String, String), serde_json::Value> = BTreeMap::new();
    for (key, f) in &parsed {
        assert_eq!(f["version"], "2.0", "{key}");
        let ev = only_event(&parsed, key);
        let folder = key.split('/').next().unwrap().to_string();
        let marker = ev["marker"]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: no X-EDUSYNC-MARKER"));
        let event_id = marker
            .strip_prefix("teaching/")
            .unwrap_or_else(|| panic!("{key}: marker {marker}"));
        by_copy.insert((folder, event_id.to_string()), ev);
    }
    let ev = |who: &str, id: &str| by_copy[&(who.to_string(), id.to_string())].clone();

    // Times: DST right, explicit offsets and row zones honoured.
    for who in ["alice@uni.example", "bob@uni.example", "x.prof@uni.example"] {
        let e = ev(who, "E-JUL");
        assert_eq!(
            e["dtstart"],
            format!("{jul}T08:00:00Z"),
            "{who} E-JUL: 09:00 London in July is 08:00Z"
        );
        assert_eq!(e["dtend"], format!("{jul}T09:00:00Z"));
        assert_eq!(e["summary"], "CHEM1014 Organic Chemistry");
        assert_eq!(e["location"], "Room 1.14, Chemistry Building");
        let d = e["description"].as_str().unwrap_or_default();
        assert!(d.contains("Staff: Prof. Xavier"), "{who}: {d}");
        assert!(d.contains("Groups: CHEM1 Group A"), "{who}: {d}");
        assert_eq!(e["status"], "CONFIRMED");
        assert_eq!(e["sequence"], 0);
    }
    for who in [
        "alice@uni.example",
        "bob@uni.example",
        "carol@uni.example",
        "x.prof@uni.example",
    ] {
        let e = ev(who, "E-DEC");
        assert_eq!(
            e["dtstart"],
            format!("{dec}T09:00:00Z"),
            "{who} E-DEC: 09:00 London in December is 09:00Z"
        );
        assert_eq!(e["dtend"], format!("{dec}T11:00:00Z"));
        assert_eq!(
            e["location"],
            "Room 1.14, Chemistry Building; Lab 2, Chemistry Building"
        );
    }
    let exam_alice = ev("alice@uni.example", "E-EXAM");
    let exam_bob = ev("bob@uni.example", "E-EXAM");
    for e in [&exam_alice, &exam_bob] {
        assert_eq!(e["dtstart"], format!("{exam_day}T08:00:00Z"));
        assert_eq!(e["dtend"], format!("{exam_day}T10:00:00Z"));
        assert_eq!(
            e["summary"], "CHEM1014 Exam",
            "the title already holds the module code"
        );
        assert_eq!(e["location"], "Lab 2, Chemistry Building");
    }
    assert!(
        exam_alice["description"]
            .as_str()
            .unwrap_or_default()
            .contains("Seat 12"),
        "alice's exam seat: {exam_alice}"
    );
    assert!(
        !exam_bob["description"]
            .as_str()
            .unwrap_or_default()
            .contains("Seat"),
        "bob has no seat note, and must not see alice's: {exam_bob}"
    );
    let ny = ev("carol@uni.example", "E-NY");
    assert_eq!(
        ny["dtstart"],
        format!("{dec}T14:00:00Z"),
        "09:00 New York in December"
    );
    assert_eq!(ny["summary"], "Field trip briefing");
    assert!(ny["location"].is_null(), "no room, no LOCATION: {ny}");

    // UIDs: one per event, the same in every copy, distinct across events;
    // each copy names its person.
    let mut uids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ((who, id), e) in &by_copy {
        uids.entry(id.clone())
            .or_default()
            .insert(e["uid"].as_str().unwrap().to_string());
        assert!(e["person"].is_string(), "{who} {id}: X-EDUSYNC-PERSON");
    }
    for (id, set) in &uids {
        assert_eq!(set.len(), 1, "{id}: one UID in every copy: {set:?}");
    }
    let distinct: BTreeSet<_> = uids.values().flatten().collect();
    assert_eq!(distinct.len(), 4);
    assert_eq!(ev("alice@uni.example", "E-JUL")["person"], "S1");

    // A second look: nothing left to do, and a second sync rewrites nothing.
    let after = env.plan("teaching");
    for k in ["create", "update", "delete"] {
        assert_eq!(after[k], 0, "{k} after sync: {after}");
    }
    assert_eq!(after["unchanged"], 10, "{after}");
    let files = env.files();
    let again = env.sync("teaching");
    assert_eq!(again["unchanged"], 10, "{again}");
    assert_eq!(again["create"], 0, "{again}");
    assert_eq!(env.files(), files, "an idle sync must not rewrite any file");
    let reparsed = parse_ics_dir(&env.cal());
    for (key, f) in &reparsed {
        assert_eq!(
            f["events"][0]["uid"], parsed[key]["events"][0]["uid"],
            "{key}: UID stable"
        );
    }
}

#[test]
fn generated_timetable_syncs_and_settles() {
    let env = Env::new();
    let out = env.ok(&[
        "generate",
        "--out",
        "tt.db",
        "--students",
        "40",
        "--seed",
        "7",
    ]);
    assert!(out.stdout.contains("wrote"), "{}", out.describe());
    env.write_config(&[
        ProfileConf::default(),
        ProfileConf {
            name: "exams".into(),
            prefix: "ex_".into(),
            ..Default::default()
        },
    ]);
    let c = env.config_arg();
    env.ok(&["check", "--config", &c]);
    let plan = env.plan("teaching");
    let create = plan["create"].as_u64().unwrap();
    let quarantined = plan["quarantined"].as_u64().unwrap();
    assert!(
        create > 1000,
        "40 students make thousands of entries: {plan}"
    );
    assert!(quarantined > 0, "generate plants bad rows: {plan}");
    for q in plan["quarantine"].as_array().unwrap() {
        assert!(q["view"].as_str().unwrap().starts_with("tt_"), "{q}");
        assert!(!q["row"].as_str().unwrap().is_empty(), "{q}");
        assert!(!q["reason"].as_str().unwrap().is_empty(), "{q}");
    }
    let exams = env.plan("exams");
    let exam_create = exams["create"].as_u64().unwrap();
    assert!(exam_create > 0, "{exams}");

    // Every profile in one `sync`: one JSON line each.
    let out = env.ok(&["sync", "--config", &c, "--format", "json"]);
    let reports = out.json_lines();
    assert_eq!(reports.len(), 2, "{}", out.describe());
    assert_eq!(reports[0]["profile"], "teaching");
    assert_eq!(reports[0]["create"].as_u64(), Some(create));
    assert_eq!(reports[0]["quarantined"].as_u64(), Some(quarantined));
    assert_eq!(reports[1]["profile"], "exams");
    assert_eq!(reports[1]["create"].as_u64(), Some(exam_create));
    for r in &reports {
        assert_eq!(r["status"], "applied", "{r}");
    }
    let files = env.files();
    let teaching = util::calendars_in(&files, "teaching");
    assert_eq!(teaching.len() as u64, create);
    assert_eq!(
        util::calendars_in(&files, "exams").len() as u64,
        exam_create
    );
    assert_eq!(
        files.len() as u64,
        create + exam_create,
        "one file per copy, nothing else"
    );
    drop(files);
    for (folder, _) in &teaching {
        assert!(
            folder.contains('@') && folder == &folder.to_ascii_lowercase(),
            "{folder}"
        );
    }
    for profile in ["teaching", "exams"] {
        let p = env.plan(profile);
        for k in ["create", "update", "delete"] {
            assert_eq!(p[k], 0, "{profile} {k}: {p}");
        }
    }

    // Deterministic for a given seed: the same plan from a fresh copy.
    let other = Env::new();
    other.ok(&[
        "generate",
        "--out",
        "tt.db",
        "--students",
        "40",
        "--seed",
        "7",
    ]);
    other.write_config(&[ProfileConf::default()]);
    let p2 = other.plan("teaching");
    assert_eq!(p2["create"], plan["create"]);
    assert_eq!(p2["quarantine"], plan["quarantine"]);
    assert_eq!(p2["source"], plan["source"]);
}
