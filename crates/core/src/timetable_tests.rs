use super::*;
use crate::expand::Attendance;
use crate::model::*;

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn rules() -> Rules {
    Rules {
        timezone: TimeZone::get("Europe/London").unwrap(),
        max_event_hours: 24,
    }
}

fn person(id: &str, email: Option<&str>) -> RawPerson {
    RawPerson {
        person_id: s(id),
        kind: s("student"),
        email: email.map(str::to_string),
        display_name: s(id),
    }
}

fn event(id: &str, start: &str, end: &str) -> RawEvent {
    RawEvent {
        event_id: s(id),
        title: s("Lecture"),
        starts_at: s(start),
        ends_at: s(end),
        ..Default::default()
    }
}

fn base() -> RawSnapshot {
    RawSnapshot {
        prefix: "tt_".into(),
        people: vec![
            person("P1", Some("p1@example.ac.uk")),
            person("P2", Some("P2@Example.ac.uk")),
            person("S1", Some("s1@example.ac.uk")),
        ],
        groups: vec![RawGroup {
            group_id: s("G1"),
            name: s("Chem Year 2"),
            kind: None,
        }],
        group_members: vec![
            RawGroupMember {
                group_id: s("G1"),
                person_id: s("P1"),
            },
            RawGroupMember {
                group_id: s("G1"),
                person_id: s("P2"),
            },
        ],
        events: vec![event("E1", "2026-07-01 09:00:00", "2026-07-01 10:00:00")],
        event_groups: vec![RawEventGroup {
            event_id: s("E1"),
            group_id: s("G1"),
        }],
        event_people: vec![
            RawEventPerson {
                event_id: s("E1"),
                person_id: s("P1"),
                role: None,
                note: s("Seat 12"),
            },
            RawEventPerson {
                event_id: s("E1"),
                person_id: s("S1"),
                role: s("host"),
                note: None,
            },
        ],
        ..Default::default()
    }
}

#[test]
fn attendance_is_union_of_direct_and_group_rows_deduplicated() {
    let tt = Timetable::build(base(), &rules());
    assert!(tt.quarantine.is_empty(), "{:?}", tt.quarantine);
    let a = Attendance::expand(&tt, |_| true);
    let pairs: Vec<(String, String)> = a
        .iter()
        .map(|(p, e)| {
            (
                tt.people[p as usize].id.clone(),
                tt.events[e as usize].id.clone(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("P1".into(), "E1".into()),
            ("P2".into(), "E1".into()),
            ("S1".into(), "E1".into())
        ]
    );
    assert_eq!(
        tt.people[1].email, "p2@example.ac.uk",
        "emails are lower-cased"
    );
}

#[test]
fn wall_clock_times_follow_daylight_saving() {
    let mut raw = base();
    raw.events = vec![
        event("SUMMER", "2026-07-01 09:00:00", "2026-07-01 10:00:00"),
        event("WINTER", "2026-12-01T09:00:00", "2026-12-01T10:00:00"),
        event(
            "OFFSET",
            "2026-07-01T09:00:00+02:00",
            "2026-07-01T10:00:00+02:00",
        ),
        event("ZULU", "2026-07-01T09:00:00Z", "2026-07-01T10:00:00Z"),
        RawEvent {
            timezone: s("Asia/Dubai"),
            ..event("DUBAI", "2026-07-01 09:00:00", "2026-07-01 10:00:00")
        },
        // 01:30 on the spring-forward night does not exist in London: moved forward.
        event("GAP", "2027-03-28 01:30:00", "2027-03-28 03:00:00"),
    ];
    raw.event_groups.clear();
    raw.event_people.clear();
    let tt = Timetable::build(raw, &rules());
    assert!(tt.quarantine.is_empty(), "{:?}", tt.quarantine);
    let start = |id: &str| {
        tt.events[tt.event_index(id).unwrap() as usize]
            .start
            .to_string()
    };
    assert_eq!(start("SUMMER"), "2026-07-01T08:00:00Z");
    assert_eq!(start("WINTER"), "2026-12-01T09:00:00Z");
    assert_eq!(start("OFFSET"), "2026-07-01T07:00:00Z");
    assert_eq!(start("ZULU"), "2026-07-01T09:00:00Z");
    assert_eq!(start("DUBAI"), "2026-07-01T05:00:00Z");
    assert_eq!(start("GAP"), "2027-03-28T01:30:00Z");
}

/// Every bad-row kind of the source contract, with the exact message.
#[test]
fn bad_rows_are_quarantined_with_precise_reasons_and_the_rest_goes_ahead() {
    let mut raw = base();
    raw.people.push(person("NOMAIL", None));
    raw.people.push(person("BADMAIL", Some("not-an-address")));
    raw.people.push(person("DUPP", Some("a@example.ac.uk")));
    raw.people.push(person("DUPP", Some("b@example.ac.uk")));
    raw.people.push(RawPerson::default());
    raw.events.extend([
        RawEvent {
            title: None,
            ..event("NOTITLE", "2026-07-01 09:00", "2026-07-01 10:00")
        },
        event("BADTIME", "31/02/2026 9am", "2026-07-01 10:00"),
        RawEvent {
            starts_at: None,
            ..event("NOTIME", "", "2026-07-01 10:00")
        },
        event("BACKWARDS", "2026-10-01 10:00:00", "2026-10-01 09:00:00"),
        RawEvent {
            timezone: s("Mars/Olympus"),
            ..event("BADTZ", "2026-07-01 09:00", "2026-07-01 10:00")
        },
        event("DUPE", "2026-07-01 09:00", "2026-07-01 10:00"),
        event("DUPE", "2026-07-02 09:00", "2026-07-02 10:00"),
        event("LONG", "2026-07-01 09:00", "2026-07-02 10:00"),
        RawEvent {
            event_id: None,
            ..event("", "2026-07-01 09:00", "2026-07-01 10:00")
        },
    ]);
    raw.event_groups.push(RawEventGroup {
        event_id: s("E1"),
        group_id: s("NOGROUP"),
    });
    raw.event_groups.push(RawEventGroup {
        event_id: s("NOEVENT"),
        group_id: s("G1"),
    });
    raw.event_people.push(RawEventPerson {
        event_id: s("E1"),
        person_id: s("NOPERSON"),
        ..Default::default()
    });
    raw.event_locations.push(RawEventLocation {
        event_id: s("E1"),
        location_id: s("NOROOM"),
    });
    raw.group_members.push(RawGroupMember {
        group_id: s("G1"),
        person_id: s("NOMAIL"),
    });
    let tt = Timetable::build(raw, &rules());
    let got: Vec<String> = tt.quarantine.iter().map(|q| q.to_string()).collect();
    let want = [
        "source view tt_people: row person_id=DUPP: person_id is used by 2 rows; all of them are set aside until it is unique (row set aside)",
        "source view tt_people: row person_id=DUPP: person_id is used by 2 rows; all of them are set aside until it is unique (row set aside)",
        "source view tt_people: row #8: person_id is missing (row set aside)",
        "source view tt_people: row person_id=BADMAIL: email \"not-an-address\" is not a usable address (row set aside)",
        "source view tt_people: row person_id=NOMAIL: email is missing, so there is no calendar to write to (row set aside)",
        "source view tt_events: row event_id=DUPE: event_id is used by 2 rows; all of them are set aside until it is unique (row set aside)",
        "source view tt_events: row event_id=DUPE: event_id is used by 2 rows; all of them are set aside until it is unique (row set aside)",
        "source view tt_events: row #10: event_id is missing (row set aside)",
        "source view tt_events: row event_id=BACKWARDS: ends_at 2026-10-01 09:00 BST is before starts_at 2026-10-01 10:00 BST (row set aside)",
        "source view tt_events: row event_id=BADTIME: starts_at \"31/02/2026 9am\" is not a time (expected ISO 8601, e.g. 2026-10-01 09:00:00 or 2026-10-01T09:00:00+01:00) (row set aside)",
        "source view tt_events: row event_id=BADTZ: timezone \"Mars/Olympus\" is not a known IANA time zone (row set aside)",
        "source view tt_events: row event_id=LONG: event lasts 25.0 hours, longer than max_event_hours = 24 (row set aside)",
        "source view tt_events: row event_id=NOTIME: starts_at is missing (row set aside)",
        "source view tt_events: row event_id=NOTITLE: title is missing (row set aside)",
        "source view tt_event_groups: row event_id=E1, group_id=NOGROUP: group NOGROUP does not exist in tt_groups (row set aside)",
        "source view tt_event_groups: row event_id=NOEVENT, group_id=G1: event NOEVENT does not exist in tt_events (row set aside)",
        "source view tt_event_people: row event_id=E1, person_id=NOPERSON: person NOPERSON does not exist in tt_people (row set aside)",
        "source view tt_event_locations: row event_id=E1, location_id=NOROOM: location NOROOM does not exist in tt_locations (row set aside)",
    ];
    assert_eq!(got, want);
    // The good event still reaches everyone who should have it.
    let a = Attendance::expand(&tt, |_| true);
    assert_eq!(a.len(), 3);
    assert!(tt.quarantined_events.contains("DUPE"));
    assert!(tt.quarantined_people.contains("NOMAIL"));
}

#[test]
fn shared_mailbox_sets_both_people_aside() {
    let mut raw = base();
    raw.people.push(person("P9", Some("p1@example.ac.uk")));
    let tt = Timetable::build(raw, &rules());
    assert_eq!(tt.quarantine.len(), 2, "{:?}", tt.quarantine);
    assert!(tt.person_index("P1").is_none());
    assert!(tt.quarantined_people.contains("P9"));
}
