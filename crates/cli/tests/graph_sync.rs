//! The `graph` target end to end: the built binary syncs a hand-made
//! timetable into an emulated Microsoft 365 tenant — exact events per
//! mailbox, changes, removals, cancellations, people's own events left
//! alone, an unknown and an unlicensed mailbox skipped while everyone else
//! syncs, hand edits and deletes repaired, and `cleardown`.

mod graph_common;
mod util;

use std::collections::BTreeSet;

use edusync_testkit::graph::MailboxState;
use graph_common::{expect, GraphEnv, CALENDAR};
use util::api::{chemistry_timetable, ALICE, ALL, BOB, CAROL, PROF};
use util::{days_from_now, instant, london, wall};

#[test]
fn timetable_reaches_each_mailbox_exactly_and_follows_every_change() {
    let g = GraphEnv::new(&ALL);
    g.write_config("cancelled = \"mark\"");
    chemistry_timetable(&g.source());
    // People's own appointments, before and after edusync arrives.
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
        check.stdout.contains("mailbox") && check.stdout.contains("readable"),
        "{}",
        check.describe()
    );

    let r = g.sync();
    assert_eq!(r["create"], 9, "{r}");
    let want = expect(&[
        (ALICE, &["E1", "E2", "E4"]),
        (BOB, &["E1", "E2", "E4"]),
        (CAROL, &["E2", "E3"]),
        (PROF, &["E1"]),
    ]);
    assert_eq!(g.holdings(&ALL), want);

    // Content, as Outlook would show it.
    let e1 = &g.synced(ALICE)["E1"];
    assert_eq!(e1.calendar, CALENDAR);
    assert_eq!(e1.subject, "CHEM1014 Organic Chemistry");
    assert_eq!(e1.location, "Room 1.14, Chemistry Building");
    assert!(e1.body.contains("Staff: Prof. Xavier"), "{}", e1.body);
    assert_eq!(e1.start, instant(days_from_now(3, 9), &london()));
    assert_eq!(e1.end, instant(days_from_now(3, 10), &london()));
    assert_eq!(e1.categories, vec!["Timetable".to_string()]);
    assert_eq!(e1.show_as, "busy");
    assert!(!e1.is_reminder_on);
    assert!(e1.transaction_id.is_some());

    // A second cycle with nothing changed writes nothing.
    let created = g.emu.stats().events_created;
    let requests = g.emu.stats().graph_requests;
    let r = g.sync();
    assert_eq!(
        (r["create"].as_u64(), r["update"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    assert_eq!(r["unchanged"], 9, "{r}");
    assert_eq!(g.emu.stats().events_created, created);
    let reads = g.emu.stats().graph_requests - requests;
    assert!(
        reads <= 8,
        "an idle cycle only lists calendars: {reads} requests"
    );

    // A personal event inside the edusync calendar too.
    g.emu
        .add_personal_event(BOB, Some(CALENDAR), "Study group", t0, t0 + util::hours(2))
        .unwrap();

    // Change: a new title and a moved slot, updated in place.
    let alice_e1_id = g.synced(ALICE)["E1"].id.clone();
    let src = g.source();
    src.exec("UPDATE {p}events SET title = 'Organic Chemistry II' WHERE event_id = 'E1'");
    src.exec(&format!(
        "UPDATE {{p}}events SET starts_at = '{}', ends_at = '{}' WHERE event_id = 'E2'",
        wall(days_from_now(4, 14)),
        wall(days_from_now(4, 16))
    ));
    let r = g.sync();
    assert_eq!(r["update"], 6, "{r}");
    assert_eq!(r["create"], 0, "{r}");
    assert_eq!(g.holdings(&ALL), want);
    let e1 = &g.synced(ALICE)["E1"];
    assert_eq!(e1.id, alice_e1_id, "updated in place, not re-created");
    assert_eq!(e1.subject, "CHEM1014 Organic Chemistry II");
    let e2 = &g.synced(CAROL)["E2"];
    assert_eq!(e2.start, instant(days_from_now(4, 14), &london()));
    assert_eq!(e2.end, instant(days_from_now(4, 16), &london()));

    // Removal: Bob leaves group A, E3 is dropped from the timetable.
    src.exec("DELETE FROM {p}group_members WHERE person_id = 'S2'");
    src.exec("DELETE FROM {p}events WHERE event_id = 'E3'");
    src.exec("DELETE FROM {p}event_groups WHERE event_id = 'E3'");
    src.exec("DELETE FROM {p}event_locations WHERE event_id = 'E3'");
    let r = g.sync();
    assert_eq!(r["delete"], 4, "{r}");
    let want = expect(&[
        (ALICE, &["E1", "E2", "E4"]),
        (BOB, &[]),
        (CAROL, &["E2"]),
        (PROF, &["E1"]),
    ]);
    assert_eq!(g.holdings(&ALL), want);

    // Cancellation (kept and marked, as configured).
    src.exec("UPDATE {p}events SET status = 'cancelled' WHERE event_id = 'E4'");
    let r = g.sync();
    assert_eq!(r["update"], 1, "{r}");
    let e4 = &g.synced(ALICE)["E4"];
    assert_eq!(e4.subject, "Cancelled: CHEM1014 Tutorial");
    assert_eq!(e4.show_as, "free");
    assert_eq!(g.holdings(&ALL), want);

    // People's own events were never touched.
    assert_eq!(
        g.personal(ALICE),
        BTreeSet::from([("Calendar".to_string(), "Dentist".to_string())])
    );
    assert_eq!(
        g.personal(CAROL),
        BTreeSet::from([("Calendar".to_string(), "Gym".to_string())])
    );
    assert_eq!(
        g.personal(BOB),
        BTreeSet::from([(CALENDAR.to_string(), "Study group".to_string())])
    );
    g.emu.assert_no_violations();
}

#[test]
fn unknown_and_unlicensed_mailboxes_are_reported_and_everyone_else_syncs() {
    let g = GraphEnv::new(&ALL);
    chemistry_timetable(&g.source());
    g.emu.set_mailbox_state(CAROL, MailboxState::Unknown);
    g.emu.set_mailbox_state(PROF, MailboxState::Unlicensed);

    let r = g.env.sync_expect("teaching", 0);
    assert_eq!(
        r["status"], "applied",
        "permanent failures do not fail the run: {r}"
    );
    assert_eq!(r["failed_ops"], 3, "carol's two and the prof's one: {r}");
    let errors = r["errors"].to_string();
    assert!(errors.contains(CAROL), "{r}");
    assert!(errors.contains(PROF), "{r}");
    assert!(
        errors.contains("licence"),
        "the message says what to check: {r}"
    );
    let holdings = g.holdings(&[ALICE, BOB]);
    assert_eq!(
        holdings,
        expect(&[(ALICE, &["E1", "E2", "E4"]), (BOB, &["E1", "E2", "E4"])])
    );

    // Once the mailboxes are fixed, the next cycle fills them.
    g.emu.set_mailbox_state(CAROL, MailboxState::Ok);
    g.emu.set_mailbox_state(PROF, MailboxState::Ok);
    let r = g.sync();
    assert_eq!(r["create"], 3, "{r}");
    assert_eq!(g.synced(CAROL).len(), 2);
    assert_eq!(g.synced(PROF).len(), 1);
    g.emu.assert_no_violations();
}

#[test]
fn hand_edits_and_deletes_are_repaired_and_cleardown_leaves_only_personal_events() {
    let g = GraphEnv::new(&ALL);
    chemistry_timetable(&g.source());
    let t0 = instant(days_from_now(3, 12), &london());
    g.emu
        .add_personal_event(ALICE, None, "Dentist", t0, t0 + util::hours(1))
        .unwrap();
    g.sync();
    g.emu
        .add_personal_event(ALICE, Some(CALENDAR), "Revision", t0, t0 + util::hours(1))
        .unwrap();
    let want = g.holdings(&ALL);

    // Alice renames her copy of E1; Bob deletes his copy of E2, twice over cycles.
    let a1 = g.synced(ALICE)["E1"].clone();
    g.emu
        .user_edit_event(
            ALICE,
            &a1.id,
            serde_json::json!({ "subject": "Skipping this" }),
        )
        .unwrap();
    let b2 = g.synced(BOB)["E2"].clone();
    g.emu.user_delete_event(BOB, &b2.id).unwrap();
    g.sync();
    assert_eq!(g.holdings(&ALL), want);
    assert_eq!(g.synced(ALICE)["E1"].subject, a1.subject, "edit put back");
    let b2_again = g.synced(BOB)["E2"].clone();
    assert_ne!(b2_again.id, b2.id, "re-created");
    assert_ne!(
        b2_again.transaction_id, b2.transaction_id,
        "a re-create is a new generation, not a replay of the deleted event"
    );
    g.emu.user_delete_event(BOB, &b2_again.id).unwrap();
    g.sync();
    assert_eq!(g.holdings(&ALL), want);
    let b2_third = g.synced(BOB)["E2"].clone();
    assert!(b2_third.transaction_id != b2_again.transaction_id);
    // Repaired: the next cycle finds nothing to do.
    let r = g.sync();
    assert_eq!(
        (r["create"].as_u64(), r["update"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );

    let c = g.env.config_arg();
    let out = g.env.ok(&[
        "cleardown",
        "--config",
        &c,
        "--profile",
        "teaching",
        "--yes",
    ]);
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
            ("Calendar".to_string(), "Dentist".to_string()),
            (CALENDAR.to_string(), "Revision".to_string()),
        ])
    );
    // Resumable and idempotent.
    let out = g.env.ok(&[
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
    g.emu.assert_no_violations();
}
