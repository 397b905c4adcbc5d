//! The `google` target end to end: the built binary syncs a hand-made
//! timetable into an emulated Google Workspace domain — exact events per
//! person, changes, removals, people's own events left alone, a calendar
//! made read-only by Google's usage limits reported while everyone else
//! syncs, hand edits and deletes repaired, and `cleardown`. Zero client
//! violations in each.

mod google_common;
mod util;

use std::collections::BTreeSet;

use google_common::{GoogleEnv, CALENDAR};
use util::api::{chemistry_timetable, expect, ALICE, ALL, BOB, CAROL, PROF};
use util::{days_from_now, instant, london, wall};

fn timetable(g: &GoogleEnv) {
    chemistry_timetable(&g.source());
}

fn full() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    expect(&[
        (ALICE, &["E1", "E2", "E4"]),
        (BOB, &["E1", "E2", "E4"]),
        (CAROL, &["E2", "E3"]),
        (PROF, &["E1"]),
    ])
}

#[test]
fn timetable_reaches_each_calendar_exactly_and_follows_every_change() {
    let g = GoogleEnv::new(&ALL);
    timetable(&g);
    let t0 = instant(days_from_now(3, 12), &london());
    g.emu
        .add_personal_event(ALICE, None, "Dentist", t0, t0 + util::hours(1))
        .unwrap();
    g.emu
        .add_personal_event(CAROL, None, "Gym", t0, t0 + util::hours(1))
        .unwrap();

    let c = g.env.config_arg();
    let check = g.env.ok(&["check", "--config", &c]);
    assert!(
        check.stdout.contains("domain-wide delegation"),
        "{}",
        check.describe()
    );

    let r = g.sync();
    assert_eq!(r["create"], 9, "{r}");
    assert_eq!(g.holdings(&ALL), full());
    let e1 = &g.synced(ALICE)["E1"];
    assert_eq!(e1.calendar, CALENDAR);
    assert_eq!(e1.summary, "CHEM1014 Organic Chemistry");
    assert_eq!(e1.json["location"], "Room 1.14, Chemistry Building");
    assert!(
        e1.json["description"]
            .as_str()
            .unwrap()
            .contains("Staff: Prof. Xavier"),
        "{}",
        e1.json
    );
    assert_eq!(
        e1.start,
        instant(days_from_now(3, 9), &london()).to_string()
    );
    assert_eq!(e1.json["transparency"], "opaque");
    assert_eq!(e1.private["edusyncProfile"], "teaching");

    // Nothing changed: nothing written, and the drift check asks each
    // calendar only for the changes since its stored sync token (the
    // calendars were checked again after the first cycle's writes): one
    // request per calendar, no listing in full, no calendar lookup.
    let (inserts, requests) = (g.emu.stats().inserts, g.emu.stats().requests);
    let r = g.sync();
    assert_eq!(r["unchanged"], 9, "{r}");
    assert_eq!(g.emu.stats().inserts, inserts);
    assert_eq!(g.emu.stats().patches, 0);
    assert_eq!(
        g.emu.stats().requests - requests,
        ALL.len() as u64,
        "one request per calendar in a cycle with nothing to do"
    );

    // A personal event inside the edusync calendar too.
    g.emu
        .add_personal_event(BOB, Some(CALENDAR), "Study group", t0, t0 + util::hours(2))
        .unwrap();

    // Change: a new title and a moved slot, patched in place.
    let alice_e1 = g.synced(ALICE)["E1"].id.clone();
    let src = g.source();
    src.exec("UPDATE {p}events SET title = 'Organic Chemistry II' WHERE event_id = 'E1'");
    src.exec(&format!(
        "UPDATE {{p}}events SET starts_at = '{}', ends_at = '{}' WHERE event_id = 'E2'",
        wall(days_from_now(4, 14)),
        wall(days_from_now(4, 16))
    ));
    let r = g.sync();
    assert_eq!(
        (r["update"].as_u64(), r["create"].as_u64()),
        (Some(6), Some(0)),
        "{r}"
    );
    assert_eq!(g.holdings(&ALL), full());
    let e1 = &g.synced(ALICE)["E1"];
    assert_eq!(e1.id, alice_e1, "patched in place");
    assert_eq!(e1.summary, "CHEM1014 Organic Chemistry II");
    assert_eq!(
        g.synced(CAROL)["E2"].end,
        instant(days_from_now(4, 16), &london()).to_string()
    );

    // Removal: Bob leaves group A, E3 is dropped.
    src.exec("DELETE FROM {p}group_members WHERE person_id = 'S2'");
    src.exec("DELETE FROM {p}events WHERE event_id = 'E3'");
    src.exec("DELETE FROM {p}event_groups WHERE event_id = 'E3'");
    src.exec("DELETE FROM {p}event_locations WHERE event_id = 'E3'");
    let r = g.sync();
    assert_eq!(r["delete"], 4, "{r}");
    assert_eq!(
        g.holdings(&ALL),
        expect(&[
            (ALICE, &["E1", "E2", "E4"]),
            (BOB, &[]),
            (CAROL, &["E2"]),
            (PROF, &["E1"]),
        ])
    );

    // People's own events were never touched.
    assert_eq!(
        g.personal(ALICE),
        BTreeSet::from([(ALICE.to_string(), "Dentist".to_string())])
    );
    assert_eq!(
        g.personal(CAROL),
        BTreeSet::from([(CAROL.to_string(), "Gym".to_string())])
    );
    assert_eq!(
        g.personal(BOB),
        BTreeSet::from([(CALENDAR.to_string(), "Study group".to_string())])
    );
    g.emu.assert_no_violations();
}

#[test]
fn a_usage_limited_calendar_is_reported_while_everyone_else_syncs() {
    let g = GoogleEnv::new(&ALL);
    timetable(&g);
    // Google made Carol's calendar read-only (too many events created lately).
    g.emu.set_read_only(CAROL, true);
    let r = g.env.sync_expect("teaching", 0);
    assert_eq!(r["status"], "applied", "{r}");
    assert_eq!(r["failed_ops"], 2, "carol's two: {r}");
    let errors = r["errors"].to_string();
    assert!(errors.contains(CAROL), "{r}");
    assert!(
        errors.contains("usage limits") && errors.contains("next run"),
        "the message says what happened and what comes next: {r}"
    );
    let mut want = full();
    want.insert(CAROL.into(), BTreeSet::new());
    assert_eq!(g.holdings(&ALL), want);

    // Hours later Google lifts it; the next run fills her calendar.
    g.emu.set_read_only(CAROL, false);
    let r = g.sync();
    assert_eq!(r["create"], 2, "{r}");
    assert_eq!(g.holdings(&ALL), full());
    g.emu.assert_no_violations();
}

#[test]
fn hand_edits_and_deletes_are_repaired_and_cleardown_leaves_only_personal_events() {
    let g = GoogleEnv::new(&ALL);
    timetable(&g);
    let t0 = instant(days_from_now(3, 12), &london());
    g.emu
        .add_personal_event(ALICE, None, "Dentist", t0, t0 + util::hours(1))
        .unwrap();
    g.sync();
    g.emu
        .add_personal_event(ALICE, Some(CALENDAR), "Revision", t0, t0 + util::hours(1))
        .unwrap();
    let want = g.holdings(&ALL);

    // Alice renames her copy of E1; Bob deletes his copy of E2.
    let a1 = g.synced(ALICE)["E1"].clone();
    g.emu
        .user_edit_event(
            ALICE,
            CALENDAR,
            &a1.id,
            serde_json::json!({ "summary": "Skipping this" }),
        )
        .unwrap();
    let b2 = g.synced(BOB)["E2"].clone();
    g.emu.user_delete_event(BOB, CALENDAR, &b2.id).unwrap();
    g.sync();
    assert_eq!(g.holdings(&ALL), want);
    assert_eq!(g.synced(ALICE)["E1"].summary, a1.summary, "edit put back");
    assert_eq!(g.synced(BOB)["E2"].id, b2.id, "brought back under its id");
    // Again, in the same way: still exactly one event.
    g.emu.user_delete_event(BOB, CALENDAR, &b2.id).unwrap();
    g.sync();
    assert_eq!(g.holdings(&ALL), want);
    // Repaired: the next cycle finds nothing to do.
    let r = g.sync();
    assert_eq!(
        (r["create"].as_u64(), r["update"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );

    let c = g.env.config_arg();
    let clear = [
        "cleardown",
        "--config",
        &c,
        "--profile",
        "teaching",
        "--yes",
    ];
    let out = g.env.ok(&clear);
    assert!(
        out.stdout.contains("removed 9 events"),
        "{}",
        out.describe()
    );
    for u in ALL {
        assert!(g.synced(u).is_empty(), "{u} still holds edusync events");
    }
    assert_eq!(
        g.personal(ALICE),
        BTreeSet::from([
            (ALICE.to_string(), "Dentist".to_string()),
            (CALENDAR.to_string(), "Revision".to_string()),
        ])
    );
    let out = g.env.ok(&clear);
    assert!(
        out.stdout.contains("removed 0 events"),
        "{}",
        out.describe()
    );
    g.emu.assert_no_violations();
}

#[test]
fn a_missing_or_unusable_key_file_is_explained() {
    let g = GoogleEnv::new(&ALL);
    timetable(&g);
    let c = g.env.config_arg();
    let write_env = |var: &str| {
        g.write_config("");
        let text = std::fs::read_to_string(&g.env.config).unwrap();
        g.env.write_config_text(&text.replace(
            &format!("credentials_file_env = \"{}\"", google_common::KEY_ENV),
            &format!("credentials_file_env = \"{var}\""),
        ));
    };
    write_env("EDUSYNC_GOOGLE_KEY_NOT_SET");
    let out = g.env.expect(1, &["check", "--config", &c]);
    assert!(
        out.stdout.contains("EDUSYNC_GOOGLE_KEY_NOT_SET") && out.stdout.contains("JSON key file"),
        "{}",
        out.describe()
    );
    // The variable names a file that is not a service account key.
    let bad = g.env.path("not-a-key.json");
    std::fs::write(&bad, r#"{"type": "authorized_user", "client_id": "x"}"#).unwrap();
    std::env::set_var("EDUSYNC_GOOGLE_KEY_BAD", &bad);
    write_env("EDUSYNC_GOOGLE_KEY_BAD");
    let out = g.env.expect(1, &["check", "--config", &c]);
    assert!(
        out.stdout.contains("not-a-key.json")
            && out.stdout.contains("$EDUSYNC_GOOGLE_KEY_BAD")
            && out.stdout.contains("not a service account key"),
        "{}",
        out.describe()
    );
    assert_eq!(g.emu.stats().requests, 0);
}
