//! The Graph client against the Graph emulator of `edusync-testkit`.

use std::time::Duration;

use edusync_testkit::graph::{self, GraphEmulator, GraphEmulatorConfig, MailboxState, RateLimit};
use jiff::{SignedDuration, Timestamp};

use super::*;

fn settings(emu: &GraphEmulator) -> GraphSettings {
    let c = emu.config();
    GraphSettings {
        authority_url: emu.authority_url(),
        graph_url: emu.url(),
        tenant_id: c.tenant_id.clone(),
        client_id: c.client_id.clone(),
        credential: GraphCredential::Secret(c.client_secret.clone()),
        calendar: "Timetable".into(),
    }
}

fn fast() -> GraphClientOptions {
    GraphClientOptions {
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        max_attempts: 12,
        request_timeout: Duration::from_secs(20),
        ..GraphClientOptions::default()
    }
}

fn client(emu: &GraphEmulator) -> GraphClient {
    GraphClient::with_options(settings(emu), fast())
}

fn t0() -> Timestamp {
    "2026-03-02T09:00:00Z".parse().unwrap()
}

fn ev(i: usize) -> GraphEvent {
    let start = t0() + SignedDuration::from_hours(i as i64);
    GraphEvent {
        subject: format!("Lecture {i}"),
        body_text: "Bring notes".into(),
        location: "Room 101".into(),
        start_utc: start,
        end_utc: start + SignedDuration::from_mins(50),
        categories: vec!["Timetable".into()],
        show_as_busy: true,
        reminder: false,
        cancelled: false,
    }
}

fn creates(range: std::ops::Range<usize>) -> Vec<GraphOp> {
    range
        .map(|i| GraphOp::Create {
            key: format!("teaching/e{i}"),
            generation: 0,
            event: ev(i),
        })
        .collect()
}

fn ids(results: &[GraphOpResult]) -> Vec<String> {
    results
        .iter()
        .map(|r| match &r.outcome {
            Ok(GraphApplied::Created { id, .. } | GraphApplied::Updated { id, .. }) => id.clone(),
            other => panic!("{}: {other:?}", r.key),
        })
        .collect()
}

fn window() -> std::ops::Range<Timestamp> {
    (t0() - SignedDuration::from_hours(24))..(t0() + SignedDuration::from_hours(24 * 30))
}

#[tokio::test]
async fn create_update_delete_and_list() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["ada@x.edu"])).await;
    let c = client(&emu);
    let cal = c.ensure_calendar("ada@x.edu").await.unwrap();
    assert_eq!(c.ensure_calendar("ada@x.edu").await.unwrap(), cal);
    // A new client finds the calendar rather than making another.
    assert_eq!(
        client(&emu).ensure_calendar("ada@x.edu").await.unwrap(),
        cal
    );
    assert_eq!(emu.calendars("ada@x.edu"), vec!["Calendar", "Timetable"]);

    let created = ids(&c.apply("ada@x.edu", &cal, creates(0..3)).await);
    let held = emu.calendar_events("ada@x.edu", "Timetable");
    assert_eq!(held.len(), 3);
    let e0 = held.iter().find(|e| e.id == created[0]).unwrap();
    assert_eq!(e0.subject, "Lecture 0");
    assert_eq!(e0.location, "Room 101");
    assert_eq!(e0.body, "Bring notes");
    assert_eq!(e0.categories, vec!["Timetable"]);
    assert_eq!(e0.show_as, "busy");
    assert!(!e0.is_reminder_on);
    assert_eq!(e0.start, t0());
    assert_eq!(
        e0.extended_property(MARKER_PROPERTY_ID),
        Some("teaching/e0")
    );
    assert_eq!(
        e0.transaction_id.as_deref(),
        Some(transaction_id("teaching/e0", 0).as_str())
    );

    // A person's own event is never listed.
    emu.add_personal_event(
        "ada@x.edu",
        Some("Timetable"),
        "Dentist",
        t0(),
        t0() + SignedDuration::from_hours(1),
    )
    .unwrap();

    let mut changed = ev(1);
    changed.subject = "Moved lecture".into();
    changed.cancelled = true;
    let r = c
        .apply(
            "ada@x.edu",
            &cal,
            vec![
                GraphOp::Update {
                    key: "teaching/e1".into(),
                    remote_id: created[1].clone(),
                    event: changed,
                },
                GraphOp::Delete {
                    key: "teaching/e2".into(),
                    remote_id: created[2].clone(),
                },
            ],
        )
        .await;
    assert!(
        matches!(r[0].outcome, Ok(GraphApplied::Updated { .. })),
        "{r:?}"
    );
    assert!(matches!(r[1].outcome, Ok(GraphApplied::Deleted)), "{r:?}");
    let held = emu.calendar_events("ada@x.edu", "Timetable");
    assert_eq!(held.len(), 3);
    let e1 = held.iter().find(|e| e.id == created[1]).unwrap();
    assert_eq!(e1.subject, "Cancelled: Moved lecture");
    assert_eq!(e1.show_as, "free");

    let mut listed = c.list_marked("ada@x.edu", &cal, window()).await.unwrap();
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].key, "teaching/e0");
    assert_eq!(listed[0].id, created[0]);
    assert_eq!(listed[0].start, t0());
    assert!(listed[0].change_key.is_some());
    assert_eq!(listed[1].subject, "Cancelled: Moved lecture");
    assert_eq!(c.list_marked_all("ada@x.edu", &cal).await.unwrap().len(), 2);

    // Deleting what is gone is done; updating it says it must be created again.
    let r = c
        .apply(
            "ada@x.edu",
            &cal,
            vec![
                GraphOp::Delete {
                    key: "teaching/e2".into(),
                    remote_id: created[2].clone(),
                },
                GraphOp::Update {
                    key: "teaching/e2".into(),
                    remote_id: created[2].clone(),
                    event: ev(2),
                },
            ],
        )
        .await;
    assert!(matches!(r[0].outcome, Ok(GraphApplied::Deleted)));
    match &r[1].outcome {
        Err(e @ GraphError::NotFound { .. }) => assert!(!e.is_retryable()),
        other => panic!("{other:?}"),
    }
    emu.assert_no_violations();
}

#[tokio::test]
async fn batches_of_twenty_keep_four_in_flight() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["ada@x.edu"])).await;
    let c = client(&emu);
    let cal = c.ensure_calendar("ada@x.edu").await.unwrap();
    emu.set_latency(Duration::from_millis(10));
    let before = emu.stats().batches;
    let r = c.apply("ada@x.edu", &cal, creates(0..45)).await;
    assert_eq!(ids(&r).len(), 45);
    let s = emu.stats();
    assert_eq!(s.batches - before, 3);
    assert_eq!(s.mailboxes["ada@x.edu"].max_concurrent, 4);
    assert_eq!(emu.calendar_events("ada@x.edu", "Timetable").len(), 45);
    emu.assert_no_violations();
}

#[tokio::test]
async fn list_marked_follows_pages() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["ada@x.edu"])).await;
    let c = GraphClient::with_options(
        settings(&emu),
        GraphClientOptions {
            page_size: 10,
            ..fast()
        },
    );
    let cal = c.ensure_calendar("ada@x.edu").await.unwrap();
    ids(&c.apply("ada@x.edu", &cal, creates(0..25)).await);
    let listed = c.list_marked("ada@x.edu", &cal, window()).await.unwrap();
    assert_eq!(listed.len(), 25);
    assert_eq!(
        c.list_marked_all("ada@x.edu", &cal).await.unwrap().len(),
        25
    );
}

#[tokio::test]
async fn retry_after_dropped_connection_makes_no_duplicate() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["ada@x.edu"])).await;
    let c = client(&emu);
    let cal = c.ensure_calendar("ada@x.edu").await.unwrap();
    emu.drop_next_writes(1);
    let created = ids(&c.apply("ada@x.edu", &cal, creates(0..5)).await);
    let s = emu.stats();
    assert_eq!(s.dropped_connections, 1);
    // The retried batch found every create by its transactionId.
    assert_eq!(s.transaction_id_repeats, 5, "{s:?}");
    let held = emu.calendar_events("ada@x.edu", "Timetable");
    assert_eq!(held.len(), 5);
    for id in &created {
        assert!(held.iter().any(|e| e.id == *id));
    }

    // A mixed batch whose answer is lost: update, delete and create all land once.
    emu.drop_next_writes(1);
    let mut moved = ev(0);
    moved.subject = "Moved".into();
    let mut ops = vec![
        GraphOp::Update {
            key: "teaching/e0".into(),
            remote_id: created[0].clone(),
            event: moved,
        },
        GraphOp::Delete {
            key: "teaching/e1".into(),
            remote_id: created[1].clone(),
        },
    ];
    ops.extend(creates(5..7));
    let r = c.apply("ada@x.edu", &cal, ops).await;
    assert!(r.iter().all(|r| r.outcome.is_ok()), "{r:?}");
    assert_eq!(emu.stats().dropped_connections, 2);
    let held = emu.calendar_events("ada@x.edu", "Timetable");
    assert_eq!(held.len(), 6);
    assert_eq!(
        held.iter().find(|e| e.id == created[0]).unwrap().subject,
        "Moved"
    );
    assert!(!held.iter().any(|e| e.id == created[1]));
    emu.assert_no_violations();
}

#[tokio::test]
async fn throttling_is_ridden_out_without_violations() {
    let emu = graph::spawn(GraphEmulatorConfig {
        mailbox_rate: RateLimit {
            requests: 25,
            window: Duration::from_secs(1),
        },
        ..GraphEmulatorConfig::with_users(["ada@x.edu", "bob@x.edu"])
    })
    .await;
    emu.set_latency(Duration::from_millis(5));
    let c = client(&emu);
    let mut tasks = tokio::task::JoinSet::new();
    for m in ["ada@x.edu", "bob@x.edu"] {
        let c = c.clone();
        tasks.spawn(async move {
            let cal = c.ensure_calendar(m).await.unwrap();
            // Two concurrent callers on the same mailbox share its limits.
            let (a, b) = tokio::join!(
                c.apply(m, &cal, creates(0..40)),
                c.apply(m, &cal, creates(40..70))
            );
            (ids(&a).len() + ids(&b).len(), m)
        });
    }
    let started = std::time::Instant::now();
    while let Some(r) = tasks.join_next().await {
        let (n, m) = r.unwrap();
        assert_eq!(n, 70);
        assert_eq!(emu.calendar_events(m, "Timetable").len(), 70);
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    let s = emu.stats();
    assert!(
        s.throttled > 0,
        "the test should have been throttled: {s:?}"
    );
    assert!(s.mailboxes["ada@x.edu"].max_concurrent <= 4);
    emu.assert_no_violations();
}

#[tokio::test]
async fn server_errors_are_retried_without_duplicates() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["ada@x.edu"])).await;
    let c = client(&emu);
    let cal = c.ensure_calendar("ada@x.edu").await.unwrap();
    emu.set_error_rate(0.3);
    ids(&c.apply("ada@x.edu", &cal, creates(0..30)).await);
    assert!(emu.stats().injected_errors > 0);
    emu.set_error_rate(0.0);
    assert_eq!(emu.calendar_events("ada@x.edu", "Timetable").len(), 30);
    emu.assert_no_violations();
}

#[tokio::test]
async fn unknown_mailbox_fails_only_that_mailbox() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["ada@x.edu"])).await;
    emu.set_mailbox_state("nolicence@x.edu", MailboxState::Unlicensed);
    let c = client(&emu);
    let cal = c.ensure_calendar("ada@x.edu").await.unwrap();

    let err = c.ensure_calendar("nobody@x.edu").await.unwrap_err();
    assert!(
        matches!(err, GraphError::MailboxUnavailable { .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let err = c.ensure_calendar("nolicence@x.edu").await.unwrap_err();
    match &err {
        GraphError::MailboxUnavailable { code, .. } => {
            assert_eq!(code, "MailboxNotEnabledForRESTAPI")
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("nolicence@x.edu"));

    let (bad, good) = tokio::join!(
        c.apply("nobody@x.edu", "some-calendar", creates(0..25)),
        c.apply("ada@x.edu", &cal, creates(0..25)),
    );
    assert!(bad
        .iter()
        .all(|r| matches!(&r.outcome, Err(e @ GraphError::MailboxUnavailable { .. }) if !e.is_retryable())));
    assert_eq!(ids(&good).len(), 25);
    emu.assert_no_violations();
}

#[tokio::test]
async fn token_is_refreshed_before_it_expires() {
    let emu = graph::spawn(GraphEmulatorConfig {
        token_lifetime: Duration::from_secs(1),
        ..GraphEmulatorConfig::with_users(["ada@x.edu"])
    })
    .await;
    let c = client(&emu);
    let cal = c.ensure_calendar("ada@x.edu").await.unwrap();
    for round in 0..5 {
        ids(&c
            .apply("ada@x.edu", &cal, creates(round * 2..round * 2 + 2))
            .await);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(emu.stats().tokens_issued >= 2);
    emu.assert_no_violations();
}

#[tokio::test]
async fn wrong_secret_is_a_permanent_auth_error() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["ada@x.edu"])).await;
    let mut s = settings(&emu);
    s.credential = GraphCredential::Secret("wrong".into());
    assert!(!format!("{s:?}").contains("wrong"));
    let c = GraphClient::with_options(s, fast());
    let err = c.ensure_calendar("ada@x.edu").await.unwrap_err();
    assert!(
        matches!(
            err,
            GraphError::Auth {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("invalid_client"), "{err}");
    let r = c.apply("ada@x.edu", "cal", creates(0..2)).await;
    assert!(r
        .iter()
        .all(|r| r.outcome.as_ref().is_err_and(|e| !e.is_retryable())));
}

#[tokio::test]
async fn deleted_calendar_is_reported_and_recreated() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["ada@x.edu"])).await;
    let c = client(&emu);
    let cal = c.ensure_calendar("ada@x.edu").await.unwrap();
    let r = c
        .apply("ada@x.edu", "no-such-calendar", creates(0..1))
        .await;
    assert!(
        matches!(r[0].outcome, Err(GraphError::CalendarNotFound { .. })),
        "{r:?}"
    );
    // The cache was dropped; the calendar is found again by name.
    assert_eq!(c.ensure_calendar("ada@x.edu").await.unwrap(), cal);
}

#[tokio::test]
async fn adaptive_limit_backs_off_under_throttling_without_violations() {
    let emu = graph::spawn(GraphEmulatorConfig {
        mailbox_rate: RateLimit {
            requests: 30,
            window: Duration::from_secs(1),
        },
        ..GraphEmulatorConfig::with_users(["ada@x.edu"])
    })
    .await;
    emu.set_latency(Duration::from_millis(5));
    let c = client(&emu);
    let cal = c.ensure_calendar("ada@x.edu").await.unwrap();
    assert_eq!(c.mailbox_limit("ada@x.edu").limit, 4.0);
    let r = c.apply("ada@x.edu", &cal, creates(0..150)).await;
    assert_eq!(ids(&r).len(), 150);
    assert_eq!(emu.calendar_events("ada@x.edu", "Timetable").len(), 150);
    assert!(
        emu.stats().throttled > 0,
        "the load must run into the limit"
    );
    let l = c.mailbox_limit("ada@x.edu");
    assert!(l.decreases >= 1, "{l:?}");
    assert!(l.min_limit < 4.0, "{l:?}");
    assert!(emu.stats().mailboxes["ada@x.edu"].max_concurrent <= 4);
    emu.assert_no_violations();
}

#[tokio::test]
async fn adaptive_limit_shrinks_when_latency_rises_and_grows_back() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["ada@x.edu"])).await;
    emu.set_latency(Duration::from_millis(10));
    let c = client(&emu);
    let cal = c.ensure_calendar("ada@x.edu").await.unwrap();
    ids(&c.apply("ada@x.edu", &cal, creates(0..100)).await);
    assert_eq!(c.mailbox_limit("ada@x.edu").decreases, 0);

    // The mailbox slows down ten times: the limit halves.
    emu.set_latency(Duration::from_millis(100));
    ids(&c.apply("ada@x.edu", &cal, creates(100..140)).await);
    let slow = c.mailbox_limit("ada@x.edu");
    assert!(slow.decreases >= 1, "{slow:?}");
    assert!(slow.min_limit <= 2.0, "{slow:?}");

    // Healthy again: back to Outlook's 4, one step per round trip.
    emu.set_latency(Duration::from_millis(10));
    ids(&c.apply("ada@x.edu", &cal, creates(140..240)).await);
    assert_eq!(c.mailbox_limit("ada@x.edu").limit, 4.0);
    assert_eq!(emu.calendar_events("ada@x.edu", "Timetable").len(), 240);
    emu.assert_no_violations();
}

/// A token request with a hand-made client assertion, as the client would send it.
async fn token_with(emu: &GraphEmulator, assertion: &str) -> (u16, serde_json::Value) {
    let c = emu.config();
    let url = format!("{}/{}/oauth2/v2.0/token", emu.authority_url(), c.tenant_id);
    let scope = format!("{}/.default", emu.url());
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", c.client_id.as_str()),
        ("scope", scope.as_str()),
        ("client_assertion_type", auth::JWT_BEARER),
        ("client_assertion", assertion),
    ];
    let r = reqwest::Client::new()
        .post(url)
        .form(&form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn cert_signer() -> crate::jwt::RsaSigner {
    crate::jwt::RsaSigner::from_pem(&format!(
        "{}\n{}",
        edusync_testkit::TEST_RSA_KEY_PEM,
        edusync_testkit::TEST_CERT_PEM
    ))
    .unwrap()
}

#[tokio::test]
async fn certificate_credential_writes_and_bad_assertions_are_refused() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["ada@x.edu"])).await;
    let pem = format!(
        "{}\n{}",
        edusync_testkit::TEST_RSA_KEY_PEM,
        edusync_testkit::TEST_CERT_PEM
    );
    let mut s = settings(&emu);
    s.credential = GraphCredential::certificate_from_pem(&pem).unwrap();
    assert!(!format!("{s:?}").contains("PRIVATE"));
    let c = GraphClient::with_options(s, fast());
    let cal = c.ensure_calendar("ada@x.edu").await.unwrap();
    ids(&c.apply("ada@x.edu", &cal, creates(0..3)).await);
    assert_eq!(emu.stats().tokens_issued, 1);

    // What the service checks, one fault at a time.
    let signer = cert_signer();
    let cfg = emu.config();
    let aud = format!(
        "{}/{}/oauth2/v2.0/token",
        emu.authority_url(),
        cfg.tenant_id
    );
    let thumb = crate::jwt::b64url(
        ring::digest::digest(&ring::digest::SHA256, signer.certificate().unwrap()).as_ref(),
    );
    let now = jiff::Timestamp::now().as_second();
    let claims = |aud: &str, iss: &str, exp: i64| serde_json::json!({ "aud": aud, "iss": iss, "sub": iss, "jti": "j1", "nbf": now - 10, "exp": exp });
    let header = serde_json::json!({ "x5t#S256": thumb });
    let good = signer.sign(&header, &claims(&aud, &cfg.client_id, now + 600));
    assert_eq!(token_with(&emu, &good).await.0, 200);

    let code = |v: &serde_json::Value| v["error_codes"][0].as_u64().unwrap_or(0);
    let (status, v) = token_with(
        &emu,
        &signer.sign(
            &header,
            &claims("https://elsewhere/token", &cfg.client_id, now + 600),
        ),
    )
    .await;
    assert_eq!((status, code(&v)), (401, 700023), "{v}");
    let (status, v) = token_with(
        &emu,
        &signer.sign(&header, &claims(&aud, "someone-else", now + 600)),
    )
    .await;
    assert_eq!((status, code(&v)), (401, 700021), "{v}");
    let (status, v) = token_with(
        &emu,
        &signer.sign(&header, &claims(&aud, &cfg.client_id, now - 3600)),
    )
    .await;
    assert_eq!((status, code(&v)), (401, 700024), "{v}");
    let (status, v) = token_with(
        &emu,
        &signer.sign(
            &serde_json::json!({ "x5t#S256": "bm90LXRoaXMtY2VydA" }),
            &claims(&aud, &cfg.client_id, now + 600),
        ),
    )
    .await;
    assert_eq!((status, code(&v)), (401, 700027), "{v}");
    assert!(v["error_description"]
        .as_str()
        .unwrap()
        .contains("The key was not found"));
    // A signature that does not match the content.
    let mut parts: Vec<&str> = good.split('.').collect();
    let other = signer.sign(&header, &claims(&aud, &cfg.client_id, now + 601));
    parts[2] = other.rsplit('.').next().unwrap();
    let (status, v) = token_with(&emu, &parts.join(".")).await;
    assert_eq!((status, code(&v)), (401, 700027), "{v}");
    let (status, v) = token_with(&emu, "not-a-jwt").await;
    assert_eq!((status, code(&v)), (400, 50027), "{v}");
    emu.assert_no_violations();
}

#[test]
fn a_pem_without_a_certificate_is_explained() {
    let e = GraphCredential::certificate_from_pem(edusync_testkit::TEST_RSA_KEY_PEM).unwrap_err();
    assert!(e.contains("no `-----BEGIN CERTIFICATE-----` block"), "{e}");
    let e = GraphCredential::certificate_file(std::path::Path::new("/nonexistent/x.pem"), "V")
        .unwrap_err();
    assert!(
        e.starts_with("cannot read the certificate file /nonexistent/x.pem (named by $V)"),
        "{e}"
    );
}

#[tokio::test]
async fn drift_listing_keeps_the_calendar_id_as_its_marker() {
    use crate::CalendarHint;
    let u = "ada@x.edu";
    let emu = graph::spawn(GraphEmulatorConfig::with_users([u])).await;
    let t = GraphTarget::new("graph", client(&emu));
    let cal = t.client().ensure_calendar(u).await.unwrap();
    ids(&t.client().apply(u, &cal, creates(0..3)).await);
    let first = t
        .list_checked(u, "teaching", window(), &CalendarHint::default())
        .await
        .unwrap();
    assert_eq!(first.items.len(), 3);
    assert_eq!(first.marker, Some(format!("{cal} Timetable")));

    // The next run (a new client: nothing cached) with the stored marker
    // lists without looking the calendar up: one request.
    let t = GraphTarget::new("graph", client(&emu));
    let hint = CalendarHint {
        marker: first.marker.clone(),
        ..CalendarHint::default()
    };
    let before = emu.stats().graph_requests;
    let again = t
        .list_checked(u, "teaching", window(), &hint)
        .await
        .unwrap();
    assert_eq!(emu.stats().graph_requests, before + 1);
    assert_eq!(again, first);

    // A stale id (that calendar is gone) is looked up again by name.
    let t = GraphTarget::new("graph", client(&emu));
    let stale = CalendarHint {
        marker: Some("AAMkAGone Timetable".into()),
        ..CalendarHint::default()
    };
    assert_eq!(
        t.list_checked(u, "teaching", window(), &stale)
            .await
            .unwrap(),
        first
    );

    // A marker made for another calendar name (the setting has changed
    // since) is not used: the calendar of the new name is found or made.
    let mut renamed = settings(&emu);
    renamed.calendar = "Lectures".into();
    let t = GraphTarget::new("graph", GraphClient::with_options(renamed, fast()));
    let other = t
        .list_checked(u, "teaching", window(), &hint)
        .await
        .unwrap();
    assert!(other.items.is_empty(), "{other:?}");
    assert_ne!(other.marker, first.marker);
    emu.assert_no_violations();
}
