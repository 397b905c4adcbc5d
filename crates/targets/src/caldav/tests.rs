//! The CalDAV target against real servers (Radicale and Xandikos, started
//! per test on 127.0.0.1 by `edusync_testkit::dav`).

use super::*;
use crate::Prior;
use edusync_core::keys;
use edusync_core::render::RenderedEvent;
use edusync_core::timetable::EventStatus;
use edusync_testkit::dav::{DavKind, DavServer, Rights};

const CAL: &str = "p1@example.ac.uk";

fn ev(id: &str, subject: &str) -> RenderedEvent {
    RenderedEvent {
        uid: keys::event_uid("teaching", id),
        marker: keys::marker_value("teaching", id),
        profile: "teaching".into(),
        event_id: id.into(),
        person_id: "P1".into(),
        subject: subject.into(),
        location: "Room 1".into(),
        body: String::new(),
        categories: vec!["Timetable".into()],
        start: "2026-10-01T08:00:00Z".parse().unwrap(),
        end: "2026-10-01T09:00:00Z".parse().unwrap(),
        timezone: "Europe/London".into(),
        status: EventStatus::Confirmed,
        busy: true,
        geo: None,
    }
}

fn op(kind: OpKind, id: &str, subject: Option<&str>, prior: Option<Prior>) -> CalendarOp {
    CalendarOp {
        kind,
        profile: "teaching".into(),
        person_id: "P1".into(),
        event_id: id.into(),
        calendar: CAL.into(),
        event: subject.map(|s| ev(id, s)),
        prior,
    }
}

fn prior(o: &Outcome) -> Prior {
    match o {
        Outcome::Written {
            remote_id,
            etag,
            sequence,
        } => Prior {
            calendar: CAL.into(),
            remote_id: Some(remote_id.clone()),
            etag: etag.clone(),
            sequence: *sequence,
        },
        other => panic!("expected Written, got {other:?}"),
    }
}

fn target(server: &DavServer) -> CaldavTarget {
    target_at(server, "/{email}/timetable/")
}

/// A target whose `calendar_url` is the server's URL followed by `path`.
fn target_at(server: &DavServer, path: &str) -> CaldavTarget {
    CaldavTarget::with_client(
        "caldav",
        CaldavSettings {
            calendar_url: format!("{}{path}", server.url()),
            username: Some("edusync".into()),
            password: Some("secret".into()),
        },
        ClientSettings {
            attempts: 2,
            backoff: std::time::Duration::from_millis(50),
            ..Default::default()
        },
    )
    .unwrap()
}

/// A raw client for doing things "by hand" on the server.
fn raw() -> DavClient {
    DavClient::new(ClientSettings {
        username: Some("alice".into()),
        password: Some(Password("pw".into())),
        ..Default::default()
    })
    .unwrap()
}

const PERSONAL: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//me//EN\r\nBEGIN:VEVENT\r\nUID:dentist-1\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20261002T080000Z\r\nDTEND:20261002T090000Z\r\nSUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

async fn full_cycle(kind: DavKind) {
    let server = DavServer::start(kind);
    let t = target(&server);
    let url = t.calendar_url(CAL, "P1");

    // Creates make the calendar, then write; a replayed create does not duplicate.
    let out = t
        .apply(
            CAL,
            &[
                op(OpKind::Create, "E1", Some("One"), None),
                op(OpKind::Create, "E2", Some("Two"), None),
            ],
        )
        .await;
    let p1 = prior(&out[0]);
    let p2 = prior(&out[1]);
    let again = t
        .apply(CAL, &[op(OpKind::Create, "E1", Some("One"), None)])
        .await;
    assert!(matches!(again[0], Outcome::Written { .. }), "{again:?}");
    let p1 = Prior {
        etag: prior(&again[0]).etag,
        ..p1
    };

    // A personal event in the same calendar.
    let r = raw()
        .put(
            &format!("{url}dentist.ics"),
            PERSONAL.into(),
            Precondition::Absent,
        )
        .await
        .unwrap();
    assert!(r.status.is_success(), "{r:?}");

    // Listing: with the ledger's hint, and from scratch (reads markers).
    let mut hint = CalendarHint {
        person_id: Some("P1".into()),
        ..Default::default()
    };
    hint.items
        .insert(p1.remote_id.clone().unwrap(), "E1".into());
    hint.items
        .insert(p2.remote_id.clone().unwrap(), "E2".into());
    let mut listed = t.list(CAL, "teaching", &hint).await.unwrap();
    listed.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0].etag, p1.etag);
    let fresh = target(&server);
    let mut listed2 = fresh
        .list(CAL, "teaching", &CalendarHint::default())
        .await
        .unwrap();
    listed2.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    assert_eq!(listed, listed2);
    assert!(t
        .list(CAL, "exams", &CalendarHint::default())
        .await
        .unwrap()
        .is_empty());

    // Someone edits E1 by hand (keeping the marker): the stale update still lands.
    let res1 = format!("{url}{}", p1.remote_id.as_deref().unwrap());
    let body = raw()
        .get(&res1)
        .await
        .unwrap()
        .body
        .replace("SUMMARY:One", "SUMMARY:Edited by hand");
    raw().put(&res1, body, Precondition::None).await.unwrap();
    let listed = t.list(CAL, "teaching", &hint).await.unwrap();
    let e1 = listed.iter().find(|i| i.event_id == "E1").unwrap();
    assert_ne!(e1.etag, p1.etag, "a changed ETag shows drift");
    let out = t
        .apply(
            CAL,
            &[op(OpKind::Update, "E1", Some("One v2"), Some(p1.clone()))],
        )
        .await;
    let p1b = prior(&out[0]);
    assert_eq!(p1b.sequence, 1);
    assert!(raw()
        .get(&res1)
        .await
        .unwrap()
        .body
        .contains("SUMMARY:One v2"));

    // Deleted by hand, then updated: created again.
    raw().delete(&res1, Precondition::None).await.unwrap();
    let out = t
        .apply(
            CAL,
            &[op(OpKind::Update, "E1", Some("One v3"), Some(p1b.clone()))],
        )
        .await;
    assert!(matches!(out[0], Outcome::Written { .. }), "{out:?}");

    // An object without our marker at our name is never touched.
    let res3 = format!("{url}{}", mapping::resource_file("teaching", "E3"));
    raw()
        .put(
            &res3,
            PERSONAL.replace("dentist-1", "squatter"),
            Precondition::Absent,
        )
        .await
        .unwrap();
    let out = t
        .apply(CAL, &[op(OpKind::Create, "E3", Some("Three"), None)])
        .await;
    match &out[0] {
        Outcome::Failed {
            retryable: false,
            message,
        } => assert!(message.contains("marker"), "{message}"),
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert!(raw().get(&res3).await.unwrap().body.contains("squatter"));

    // Delete with a stale ETag, and a delete of something already gone.
    let out = t
        .apply(
            CAL,
            &[
                op(
                    OpKind::Delete,
                    "E2",
                    None,
                    Some(Prior {
                        etag: Some("\"stale\"".into()),
                        ..p2.clone()
                    }),
                ),
                op(OpKind::Delete, "E9", None, None),
            ],
        )
        .await;
    assert_eq!(out, vec![Outcome::Deleted, Outcome::Deleted]);

    // Cleardown removes ours only; the personal event and the squatter stay.
    let removed = target(&server)
        .cleardown("teaching", &[CAL.to_string()])
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let left = server.ics_files();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(raw()
        .get(&format!("{url}dentist.ics"))
        .await
        .unwrap()
        .status
        .is_success());

    // The write check passes here.
    let msg = t.check(Some(CAL), Some("P1")).await.unwrap();
    assert!(msg.contains("can write"), "{msg}");
}

#[tokio::test]
async fn radicale_full_cycle() {
    full_cycle(DavKind::Radicale).await;
}

#[tokio::test]
async fn xandikos_full_cycle() {
    full_cycle(DavKind::Xandikos).await;
}

#[tokio::test]
async fn check_explains_rights_when_refused() {
    let server = DavServer::start_with(DavKind::Radicale, Rights::OwnerOnly);
    let t = target(&server);
    let err = t
        .check(Some(CAL), Some("P1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rights file") && err.contains("Nextcloud") && err.contains("SOGo"),
        "{err}"
    );
    assert!(
        err.contains("calendar_url = "),
        "discovery suggests a template: {err}"
    );
    // Writes are refused permanently, per person.
    let out = t
        .apply(CAL, &[op(OpKind::Create, "E1", Some("One"), None)])
        .await;
    assert!(
        matches!(
            out[0],
            Outcome::Failed {
                retryable: false,
                ..
            }
        ),
        "{out:?}"
    );
}

#[tokio::test]
async fn server_down_is_retryable() {
    let mut server = DavServer::start(DavKind::Radicale);
    let t = target(&server);
    server.kill();
    let out = t
        .apply(CAL, &[op(OpKind::Create, "E1", Some("One"), None)])
        .await;
    assert!(
        matches!(
            out[0],
            Outcome::Failed {
                retryable: true,
                ..
            }
        ),
        "{out:?}"
    );
    server.restart();
    let out = t
        .apply(CAL, &[op(OpKind::Create, "E1", Some("One"), None)])
        .await;
    assert!(matches!(out[0], Outcome::Written { .. }), "{out:?}");
}

#[tokio::test]
async fn sync_token_follows_changes() {
    let server = DavServer::start(DavKind::Radicale);
    let t = target(&server);
    let ops: Vec<CalendarOp> = (0..5)
        .map(|i| op(OpKind::Create, &format!("E{i}"), Some("x"), None))
        .collect();
    t.apply(CAL, &ops).await;
    assert_eq!(
        t.list(CAL, "teaching", &CalendarHint::default())
            .await
            .unwrap()
            .len(),
        5
    );
    let url = t.calendar_url(CAL, "P1");
    assert!(
        t.with_state(&url, |s| s.token.is_some()),
        "Radicale offers sync-collection"
    );
    // A change made elsewhere shows through the token.
    raw()
        .delete(
            &format!("{url}{}", mapping::resource_file("teaching", "E0")),
            Precondition::None,
        )
        .await
        .unwrap();
    assert_eq!(
        t.list(CAL, "teaching", &CalendarHint::default())
            .await
            .unwrap()
            .len(),
        4
    );
    // An invalid token falls back to a full listing.
    t.with_state(&url, |s| {
        s.token = Some("http://radicale.org/ns/sync/0000".into())
    });
    assert_eq!(
        t.list(CAL, "teaching", &CalendarHint::default())
            .await
            .unwrap()
            .len(),
        4
    );
}

/// The ledger's view of written events: a hint as drift repair builds it.
fn ledger_hint(written: &[(&str, &Outcome)], marker: Option<String>) -> CalendarHint {
    let mut hint = CalendarHint {
        person_id: Some("P1".into()),
        marker,
        ..Default::default()
    };
    for (event_id, o) in written {
        let p = prior(o);
        let name = p.remote_id.unwrap();
        hint.items.insert(name.clone(), event_id.to_string());
        hint.etags.insert(name, p.etag.unwrap());
    }
    hint
}

fn by_event(items: &[RemoteItem]) -> Vec<(String, Option<String>)> {
    let mut v: Vec<_> = items
        .iter()
        .map(|i| (i.event_id.clone(), i.etag.clone()))
        .collect();
    v.sort();
    v
}

async fn change_markers(kind: DavKind) {
    let server = DavServer::start(kind);
    let t = target(&server);
    let url = t.calendar_url(CAL, "P1");
    let ops: Vec<CalendarOp> = (0..4)
        .map(|i| op(OpKind::Create, &format!("E{i}"), Some("x"), None))
        .collect();
    let out = t.apply(CAL, &ops).await;
    let ids = ["E0", "E1", "E2", "E3"];
    let written: Vec<(&str, &Outcome)> = ids.iter().copied().zip(out.iter()).collect();

    // A first check lists, and hands back a marker.
    let first = target(&server)
        .list_checked(CAL, "teaching", &ledger_hint(&written, None))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 4);
    let m1 = first.marker.clone().expect("the server has a change tag");
    assert!(mapping::Marker::parse(&m1).ctag.is_some(), "{m1}");

    // Nothing changed: answered from the ledger, nothing listed.
    let quiet = target(&server);
    let again = quiet
        .list_checked(CAL, "teaching", &ledger_hint(&written, Some(m1.clone())))
        .await
        .unwrap();
    assert_eq!(again.marker.as_deref(), Some(m1.as_str()));
    assert_eq!(by_event(&again.items), by_event(&first.items));
    assert!(
        quiet.with_state(&url, |s| s.items.is_empty() && s.token.is_none()),
        "an unchanged calendar is not listed"
    );

    // Edited, deleted and added by hand: the tag changes and the listing shows it.
    let name = |e: &str| mapping::resource_file("teaching", e);
    let res1 = format!("{url}{}", name("E1"));
    let body = raw()
        .get(&res1)
        .await
        .unwrap()
        .body
        .replace("SUMMARY:x", "SUMMARY:by hand");
    raw().put(&res1, body, Precondition::None).await.unwrap();
    raw()
        .delete(&format!("{url}{}", name("E2")), Precondition::None)
        .await
        .unwrap();
    raw()
        .put(
            &format!("{url}dentist.ics"),
            PERSONAL.into(),
            Precondition::Absent,
        )
        .await
        .unwrap();
    let seeded = target(&server);
    let changed = seeded
        .list_checked(CAL, "teaching", &ledger_hint(&written, Some(m1.clone())))
        .await
        .unwrap();
    let m2 = changed.marker.clone().unwrap();
    assert_ne!(m2, m1);
    let got = by_event(&changed.items);
    let ledger = by_event(&first.items);
    assert_eq!(
        got.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(),
        vec!["E0", "E1", "E3"]
    );
    assert_eq!(got[0], ledger[0]);
    assert_ne!(got[1].1, ledger[1].1, "the edit shows as a new ETag");
    assert_eq!(got[2], ledger[3]);

    // Once the ledger agrees (drift repair recorded it), the new marker skips again.
    let mut agreed = ledger_hint(&written, Some(m2.clone()));
    agreed.items.remove(&name("E2"));
    agreed.etags.remove(&name("E2"));
    agreed.etags.insert(name("E1"), got[1].1.clone().unwrap());
    let skip = target(&server)
        .list_checked(CAL, "teaching", &agreed)
        .await
        .unwrap();
    assert_eq!(skip.marker.as_deref(), Some(m2.as_str()));
    assert_eq!(by_event(&skip.items), got);

    // A stale tag with a token the server does not know: a full listing.
    let bogus = mapping::Marker {
        ctag: Some("getctag:\"old\"".into()),
        token: Some("http://radicale.org/ns/sync/0000".into()),
    }
    .encode();
    let full = target(&server)
        .list_checked(CAL, "teaching", &ledger_hint(&written, Some(bogus)))
        .await
        .unwrap();
    assert_eq!(by_event(&full.items), got);

    // A map seeded from the ledger is never what cleardown works from.
    let removed = seeded
        .cleardown("teaching", &[CAL.to_string()])
        .await
        .unwrap();
    assert_eq!(removed, 3);
    let left = raw().get(&format!("{url}dentist.ics")).await.unwrap();
    assert!(left.status.is_success());

    // A calendar that is gone lists as empty, with no marker.
    let gone = target(&server)
        .list_checked("nobody@example.ac.uk", "teaching", &CalendarHint::default())
        .await
        .unwrap();
    assert_eq!(gone, Listing::default());
}

#[tokio::test]
async fn radicale_change_markers() {
    change_markers(DavKind::Radicale).await;
}

#[tokio::test]
async fn xandikos_change_markers() {
    change_markers(DavKind::Xandikos).await;
}

/// Status of a PROPFIND Depth 0 at `url`, as the service account.
async fn exists(url: &str) -> bool {
    let r = raw()
        .xml(
            "PROPFIND",
            url,
            Some("0"),
            mapping::propfind("<d:resourcetype/>"),
        )
        .await
        .unwrap();
    r.status.as_u16() == 207
}

#[tokio::test]
async fn check_proves_rights_with_person_id_before_any_calendar_exists() {
    let server = DavServer::start(DavKind::Radicale);
    // Radicale keeps calendars two levels down: /<principal>/<calendar>/.
    let t = target_at(&server, "/{person_id}/timetable/");
    let url = t.calendar_url(CAL, "P 1");
    let msg = t.check(Some(CAL), Some("P 1")).await.unwrap();
    assert!(
        msg.contains("can create people's calendars")
            && msg.contains(&url)
            && msg.contains("removed it again"),
        "{msg}"
    );
    // Nothing is left behind, not even the parents the check made.
    assert!(!exists(&url).await);
    assert!(!exists(&format!("{}/P%201/", server.url())).await);
    assert!(server.ics_files().is_empty());

    // Once the calendar exists, the check writes into it and leaves it.
    let mut o = op(OpKind::Create, "E1", Some("One"), None);
    o.person_id = "P 1".into();
    let out = t.apply(CAL, &[o]).await;
    assert!(matches!(out[0], Outcome::Written { .. }), "{out:?}");
    let msg = t.check(Some(CAL), Some("P 1")).await.unwrap();
    assert!(msg.contains(&format!("can write into {url}")), "{msg}");
    assert!(exists(&url).await);
    assert_eq!(server.ics_files().len(), 1);

    // Nobody to probe with, and templates edusync could not work from.
    let err = t.check(Some(CAL), None).await.unwrap_err().to_string();
    assert!(err.contains("no person to probe with"), "{err}");
    let err = target_at(&server, "/p-{person_id}/timetable/")
        .check(Some(CAL), Some("P1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("whole path segment"), "{err}");
    let err = target_at(&server, "/{person_id}/")
        .check(Some(CAL), Some("P 1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a calendar collection"), "{err}");
}

#[tokio::test]
async fn check_explains_rights_with_person_id_before_any_calendar_exists() {
    let server = DavServer::start_with(DavKind::Radicale, Rights::OwnerOnly);
    let t = target_at(&server, "/{person_id}/timetable/");
    let err = t
        .check(Some(CAL), Some("P1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rights file") && err.contains("user: edusync") && err.contains("SOGo"),
        "{err}"
    );
    assert!(server.ics_files().is_empty());
}
