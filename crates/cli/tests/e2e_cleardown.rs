//! People's own events are never touched; cleardown removes exactly
//! edusync's events, and can be run again.

mod util;

use util::{days_from_now, wall, Env, Ev, ProfileConf};

const DENTIST: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//me//khal//EN\r\nBEGIN:VEVENT\r\n\
UID:dentist-1@example\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260101T090000Z\r\nDTEND:20260101T100000Z\r\n\
SUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

/// A personal event whose name looks like edusync's but that has no marker
/// (a copy made by a calendar client, say): still not edusync's.
const LOOKALIKE: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//me//x//EN\r\nBEGIN:VEVENT\r\n\
UID:copy@example\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260101T090000Z\r\nDTEND:20260101T100000Z\r\n\
SUMMARY:My copy\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

#[test]
fn personal_files_survive_sync_and_cleardown_which_removes_exactly_edusyncs_events() {
    let env = Env::new();
    env.write_config(&[ProfileConf::default()]);
    let src = env.source();
    let a = src.student("A1");
    let b = src.student("B1");
    src.group("G", "Group", &["A1", "B1"]);
    for i in 0..5 {
        let id = format!("E{i}");
        src.event(&Ev::new(
            &id,
            "Seminar",
            &wall(days_from_now(i + 1, 9)),
            &wall(days_from_now(i + 1, 10)),
        ));
        src.event_group(&id, "G");
    }
    drop(src);

    // Personal files, there before edusync ever ran.
    let personal = [
        (format!("{a}/dentist.ics"), DENTIST),
        (
            format!("{a}/edusync-teaching-0123456789abcdef0123456789abcdef.ics"),
            LOOKALIKE,
        ),
        (format!("{b}/notes.txt"), "not a calendar\n"),
        ("nobody@uni.example/dentist.ics".to_string(), DENTIST),
    ];
    for (path, text) in &personal {
        let p = env.cal().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
    }
    let check_personal = |when: &str| {
        for (path, text) in &personal {
            let got = std::fs::read_to_string(env.cal().join(path))
                .unwrap_or_else(|e| panic!("{when}: personal file {path} is gone: {e}"));
            assert_eq!(&got, text, "{when}: personal file {path} was changed");
        }
    };

    let plan = env.plan("teaching");
    assert_eq!(plan["create"], 10, "{plan}");
    let r = env.sync("teaching");
    assert_eq!(r["create"], 10, "{r}");
    assert_eq!(r["failed_ops"], 0, "{r}");
    check_personal("after sync");
    assert_eq!(env.calendars("teaching").len(), 10);

    // Changes and deletions around them leave them alone too.
    env.source()
        .exec("UPDATE {p}events SET title = 'Seminar (room change)' WHERE event_id = 'E1'");
    env.source()
        .exec("DELETE FROM {p}events WHERE event_id = 'E2'");
    let r = env.sync("teaching");
    assert_eq!(
        (r["update"].as_u64(), r["delete"].as_u64()),
        (Some(2), Some(2)),
        "{r}"
    );
    check_personal("after updates and deletes");

    let c = env.config_arg();
    let out = env.expect(1, &["cleardown", "--config", &c, "--profile", "teaching"]);
    assert!(
        out.stderr.contains("--yes"),
        "without --yes, cleardown says how to confirm{}",
        out.describe()
    );
    assert_eq!(
        env.calendars("teaching").len(),
        8,
        "nothing removed without --yes"
    );

    let out = env.ok(&[
        "cleardown",
        "--config",
        &c,
        "--profile",
        "teaching",
        "--yes",
    ]);
    assert!(
        out.stdout.contains("removed 8 events"),
        "{}",
        out.describe()
    );
    assert!(
        env.calendars("teaching").is_empty(),
        "{:?}",
        env.calendars("teaching")
    );
    check_personal("after cleardown");
    let left: Vec<_> = env
        .files()
        .into_keys()
        .map(|(f, n)| format!("{f}/{n}"))
        .collect();
    let mut want: Vec<_> = personal.iter().map(|(p, _)| p.clone()).collect();
    want.sort();
    assert_eq!(left, want, "only the personal files remain");

    // Resumable: again is fine, and removes nothing more.
    let out = env.ok(&[
        "cleardown",
        "--config",
        &c,
        "--profile",
        "teaching",
        "--yes",
    ]);
    assert!(
        out.stdout.contains("removed 0 events"),
        "{}",
        out.describe()
    );
    check_personal("after a second cleardown");

    // The ledger was forgotten too: a new sync writes everything again.
    let plan = env.plan("teaching");
    assert_eq!(
        (plan["create"].as_u64(), plan["delete"].as_u64()),
        (Some(8), Some(0)),
        "{plan}"
    );
    env.sync("teaching");
    assert_eq!(env.calendars("teaching").len(), 8);
    check_personal("after syncing again");
}

#[test]
fn cleardown_of_one_profile_leaves_another_profiles_events() {
    let env = Env::new();
    env.write_config(&[
        ProfileConf::default(),
        ProfileConf {
            name: "exams".into(),
            prefix: "ex_".into(),
            ..Default::default()
        },
    ]);
    for prefix in ["tt_", "ex_"] {
        let src = util::Source::open_prefixed(&env.source_path(), prefix);
        src.student("A1");
        src.event(&Ev::new(
            "E1",
            prefix,
            &wall(days_from_now(2, 9)),
            &wall(days_from_now(2, 10)),
        ));
        src.event_person("E1", "A1", None, None);
    }
    let c = env.config_arg();
    env.ok(&["sync", "--config", &c]);
    assert_eq!(env.calendars("teaching").len(), 1);
    assert_eq!(env.calendars("exams").len(), 1);
    env.ok(&["cleardown", "--config", &c, "--profile", "exams", "--yes"]);
    assert_eq!(env.calendars("teaching").len(), 1, "teaching's event stays");
    assert!(env.calendars("exams").is_empty());
}
