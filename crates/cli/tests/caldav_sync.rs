//! The `caldav` target end to end, through the built binary, against real
//! Radicale and Xandikos servers: initial sync, a no-change cycle, a change,
//! a removal, drift repaired (also once the calendars' change markers are
//! stored), cleardown — with a person's own event in the same calendar never
//! touched.

mod caldav_common;

use caldav_common::*;

fn lifecycle(kind: DavKind) {
    let env = Env::new(kind, 3, 4);
    let r = env.sync();
    assert_eq!(
        (r["status"].as_str(), r["create"].as_u64()),
        (Some("applied"), Some(12)),
        "{r}"
    );
    for p in 0..3 {
        check_calendar(&env.calendar(p), &titles(4, ""));
    }
    // Each calendar written to was checked again after the push, so the next
    // cycle can skip the unchanged ones with one small request each.
    let markers: i64 = rusqlite::Connection::open(env.path("state.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM calendar_markers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(markers, 3);
    env.by_hand(0, "dentist.ics", Some(PERSONAL));

    // Nothing changed: nothing written.
    let r = env.sync();
    assert_eq!(
        (
            r["create"].as_u64(),
            r["update"].as_u64(),
            r["unchanged"].as_u64()
        ),
        (Some(0), Some(0), Some(12)),
        "{r}"
    );

    // A change to every event.
    env.write_source(3, 4, " (moved)");
    let r = env.sync();
    assert_eq!(
        (r["update"].as_u64(), r["failed_ops"].as_u64()),
        (Some(12), Some(0)),
        "{r}"
    );
    for p in 0..3 {
        let personal = check_calendar(&env.calendar(p), &titles(4, " (moved)"));
        assert_eq!(personal.len(), usize::from(p == 0));
    }

    // An event removed from the timetable.
    env.write_source(3, 3, " (moved)");
    let r = env.sync();
    assert_eq!(r["delete"].as_u64(), Some(3), "{r}");
    for p in 0..3 {
        check_calendar(&env.calendar(p), &titles(3, " (moved)"));
    }

    // Drift: one event edited by hand, another deleted by hand; the next cycle puts them back.
    let cal1 = env.calendar(1);
    let (name, body) = cal1
        .iter()
        .find(|(_, b)| b.contains("SUMMARY:M1 Lecture 0 (moved)"))
        .unwrap();
    env.by_hand(
        1,
        name,
        Some(&body.replace("SUMMARY:M1 Lecture 0 (moved)", "SUMMARY:Edited by hand")),
    );
    let cal2 = env.calendar(2);
    let (gone, _) = cal2
        .iter()
        .find(|(_, b)| b.contains("SUMMARY:M1 Lecture 1 (moved)"))
        .unwrap();
    env.by_hand(2, gone, None);
    assert_eq!(env.calendar(2).len(), 2);
    let r = env.sync();
    assert_eq!(r["status"].as_str(), Some("applied"), "{r}");
    for p in 0..3 {
        check_calendar(&env.calendar(p), &titles(3, " (moved)"));
    }

    // Cleardown: every edusync event goes, the person's own stays.
    let out = env.run(&[
        "cleardown",
        "--config",
        "edusync.toml",
        "--profile",
        "teaching",
        "--yes",
    ]);
    assert!(out.status.success(), "cleardown failed{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("removed 9 events"),
        "{}",
        describe(&out)
    );
    let left = env.calendar(0);
    assert_eq!(left.keys().collect::<Vec<_>>(), vec!["dentist.ics"]);
    assert!(
        left["dentist.ics"].contains("UID:dentist-1")
            && left["dentist.ics"].contains("SUMMARY:Dentist")
    );
    for p in 1..3 {
        assert!(env.calendar(p).is_empty());
    }
}

#[test]
fn radicale_lifecycle() {
    lifecycle(DavKind::Radicale);
}

#[test]
fn xandikos_lifecycle() {
    lifecycle(DavKind::Xandikos);
}
