//! The Google target against the Google Calendar emulator of `edusync-testkit`.

use std::sync::Arc;
use std::time::Duration;

use edusync_core::render::RenderedEvent;
use edusync_core::timetable::EventStatus;
use edusync_testkit::google::{self, GoogleEmulator, GoogleEmulatorConfig, RateLimit};
use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::{CalendarHint, CalendarOp, Listing, OpKind, Outcome, Prior, RemoteItem};

const CAL: &str = "Timetable";

fn settings(emu: &GoogleEmulator) -> GoogleSettings {
    let key = ServiceAccountKey::from_json(&emu.key_file_json(), "the test key").unwrap();
    GoogleSettings {
        token_url: emu.token_url(),
        api_url: emu.api_url(),
        calendar: CAL.into(),
        key: Arc::new(key),
    }
}

fn fast() -> GoogleClientOptions {
    GoogleClientOptions {
        backoff_base: Duration::from_millis(450),
        backoff_max: Duration::from_secs(2),
        max_attempts: 12,
        request_timeout: Duration::from_secs(20),
        ..GoogleClientOptions::default()
    }
}

fn target(emu: &GoogleEmulator, opts: GoogleClientOptions) -> GoogleTarget {
    GoogleTarget::new("google", GoogleClient::with_options(settings(emu), opts))
}

fn t0() -> Timestamp {
    "2026-03-02T09:00:00Z".parse().unwrap()
}

fn ev(person: &str, i: usize, subject: &str) -> RenderedEvent {
    let start = t0() + SignedDuration::from_hours(i as i64);
    RenderedEvent {
        uid: format!("e{i}@edusync"),
        marker: format!("teaching/e{i}"),
        profile: "teaching".into(),
        event_id: format!("e{i}"),
        person_id: person.into(),
        subject: subject.into(),
        location: "Room 101".into(),
        body: "Bring notes".into(),
        categories: vec![],
        start,
        end: start + SignedDuration::from_mins(50),
        timezone: "Europe/London".into(),
        status: EventStatus::Confirmed,
        busy: true,
        geo: None,
    }
}

fn op(kind: OpKind, user: &str, i: usize, subject: &str, prior: Option<Prior>) -> CalendarOp {
    CalendarOp {
        kind,
        profile: "teaching".into(),
        person_id: format!("P-{user}"),
        event_id: format!("e{i}"),
        calendar: user.into(),
        event: (kind != OpKind::Delete).then(|| ev(&format!("P-{user}"), i, subject)),
        prior,
    }
}

fn creates(user: &str, n: usize) -> Vec<CalendarOp> {
    (0..n)
        .map(|i| op(OpKind::Create, user, i, &format!("Lecture {i}"), None))
        .collect()
}

fn prior_of(user: &str, o: &Outcome) -> Prior {
    let Outcome::Written {
        remote_id, etag, ..
    } = o
    else {
        panic!("not written: {o:?}")
    };
    Prior {
        calendar: user.into(),
        remote_id: Some(remote_id.clone()),
        etag: etag.clone(),
        sequence: 0,
    }
}

fn marked(emu: &GoogleEmulator, user: &str) -> Vec<google::EmulatedEvent> {
    emu.events(user, Some(CAL))
        .into_iter()
        .filter(|e| e.private.contains_key(MARKER_KEY))
        .collect()
}

#[tokio::test]
async fn writes_are_idempotent_and_personal_events_untouched() {
    let u = "ada@uni.example";
    let emu = google::spawn(GoogleEmulatorConfig::with_users([u])).await;
    let t = target(&emu, fast());
    let out = t.apply(u, &creates(u, 5)).await;
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Written { .. })),
        "{out:?}"
    );
    let ids: Vec<String> = out
        .iter()
        .map(|o| prior_of(u, o).remote_id.unwrap())
        .collect();
    assert!(ids.iter().all(|id| mapping::valid_event_id(id)));
    assert_eq!(emu.calendars(u), vec![u.to_string(), CAL.to_string()]);
    emu.add_personal_event(
        u,
        Some(CAL),
        "Dentist",
        t0(),
        t0() + SignedDuration::from_hours(1),
    )
    .unwrap();
    emu.add_personal_event(u, None, "Gym", t0(), t0() + SignedDuration::from_hours(1))
        .unwrap();

    // A replay of every create (a crash before the acknowledgement): 409, taken over, no duplicate.
    let again = t.apply(u, &creates(u, 5)).await;
    assert_eq!(
        again
            .iter()
            .map(|o| prior_of(u, o).remote_id.unwrap())
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(marked(&emu, u).len(), 5);
    assert_eq!(emu.stats().conflicts, 5);

    // Update, then delete twice (the second is already gone).
    let upd = op(
        OpKind::Update,
        u,
        0,
        "Moved lecture",
        Some(prior_of(u, &out[0])),
    );
    let o = t.apply(u, &[upd]).await;
    assert!(matches!(o[0], Outcome::Written { .. }), "{o:?}");
    let e0 = marked(&emu, u)
        .into_iter()
        .find(|e| e.id == ids[0])
        .unwrap();
    assert_eq!(e0.summary, "Moved lecture");
    let del = op(OpKind::Delete, u, 1, "", Some(prior_of(u, &out[1])));
    assert_eq!(
        t.apply(u, std::slice::from_ref(&del)).await,
        vec![Outcome::Deleted]
    );
    assert_eq!(t.apply(u, &[del]).await, vec![Outcome::Deleted]);
    assert_eq!(marked(&emu, u).len(), 4);

    // Deleted by hand, then updated: brought back under the same id.
    emu.user_delete_event(u, CAL, &ids[2]).unwrap();
    let upd = op(
        OpKind::Update,
        u,
        2,
        "Lecture 2",
        Some(prior_of(u, &out[2])),
    );
    let o = t.apply(u, &[upd]).await;
    assert_eq!(prior_of(u, &o[0]).remote_id.unwrap(), ids[2]);
    assert_eq!(marked(&emu, u).len(), 4);

    // Listing finds exactly edusync's events; cleardown removes only them.
    let listed = t.list(u, "teaching").await.unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(t.list(u, "exams").await.unwrap().len(), 0);
    assert_eq!(t.cleardown("teaching", &[u.to_string()]).await.unwrap(), 4);
    assert!(marked(&emu, u).is_empty());
    assert_eq!(emu.events(u, Some(CAL)).len(), 1);
    assert_eq!(emu.events(u, None).len(), 1);
    emu.assert_no_violations();
}

/// What the ledger would hold after `out`, with the marker of the last listing.
fn hint_of(user: &str, out: &[Outcome], marker: Option<String>) -> CalendarHint {
    let mut hint = CalendarHint {
        marker,
        ..CalendarHint::default()
    };
    for (i, o) in out.iter().enumerate() {
        let p = prior_of(user, o);
        let id = p.remote_id.unwrap();
        hint.items.insert(id.clone(), format!("e{i}"));
        hint.etags.insert(id, p.etag.unwrap());
    }
    hint
}

fn by_event(l: &Listing) -> std::collections::BTreeMap<String, Option<String>> {
    l.items
        .iter()
        .map(|r| (r.event_id.clone(), r.etag.clone()))
        .collect()
}

#[tokio::test]
async fn a_stored_sync_token_lists_only_changes_and_resyncs_after_410() {
    let u = "bo@uni.example";
    let emu = google::spawn(GoogleEmulatorConfig::with_users([u])).await;
    let t = target(&emu, fast());
    let out = t.apply(u, &creates(u, 3)).await;
    let first = t
        .list_checked(u, "teaching", &CalendarHint::default())
        .await
        .unwrap();
    assert_eq!(first.items.len(), 3);
    let marker = first
        .marker
        .clone()
        .expect("a full listing hands back a marker");
    let hint = hint_of(u, &out, Some(marker));
    assert_eq!(
        by_event(&first),
        by_event(&Listing {
            items: hint
                .items
                .iter()
                .map(|(r, e)| RemoteItem {
                    event_id: e.clone(),
                    remote_id: r.clone(),
                    etag: hint.etags.get(r).cloned(),
                })
                .collect(),
            marker: None,
        })
    );

    // The next run (a new process: nothing cached) with the stored marker
    // and nothing changed: one small request, answered from the ledger.
    let t = target(&emu, fast());
    let (requests, lists) = (emu.stats().requests, emu.stats().lists);
    let same = t.list_checked(u, "teaching", &hint).await.unwrap();
    assert_eq!(
        emu.stats().requests,
        requests + 1,
        "one request, no calendar lookup"
    );
    assert_eq!(by_event(&same), by_event(&first));
    assert!(same.marker.is_some());

    // Changes by hand, a personal event and an event of another profile:
    // only edusync's of this profile count.
    let e0 = prior_of(u, &out[0]).remote_id.unwrap();
    emu.user_edit_event(u, CAL, &e0, serde_json::json!({"summary": "edited"}))
        .unwrap();
    emu.user_delete_event(u, CAL, &prior_of(u, &out[1]).remote_id.unwrap())
        .unwrap();
    emu.add_personal_event(
        u,
        Some(CAL),
        "Revision",
        t0(),
        t0() + SignedDuration::from_hours(1),
    )
    .unwrap();
    let mut exams = op(OpKind::Create, u, 7, "Exam", None);
    exams.profile = "exams".into();
    exams.event.as_mut().unwrap().marker = "exams/e7".into();
    assert!(matches!(
        t.apply(u, &[exams]).await[0],
        Outcome::Written { .. }
    ));
    let hint = CalendarHint {
        marker: same.marker.clone(),
        ..hint
    };
    let lists = lists + 1;
    let second = t.list_checked(u, "teaching", &hint).await.unwrap();
    assert_eq!(emu.stats().lists, lists + 1);
    let second = by_event(&second);
    assert_eq!(second.keys().collect::<Vec<_>>(), ["e0", "e2"]);
    assert_ne!(second["e0"], prior_of(u, &out[0]).etag, "the edit shows");
    assert_eq!(second["e2"], prior_of(u, &out[2]).etag);

    // An expired sync token: 410, then a full listing with a new marker.
    emu.expire_sync_tokens();
    let third = t.list_checked(u, "teaching", &hint).await.unwrap();
    assert_eq!(by_event(&third), second);
    assert_eq!(emu.stats().lists, lists + 3);
    assert!(third.marker.is_some() && third.marker != hint.marker);

    // A marker of a calendar that is gone: listed in full (found by name).
    let gone = CalendarHint {
        marker: Some(format!("gone@group.calendar.google.com sync-1 {CAL}")),
        ..hint
    };
    let t = target(&emu, fast());
    let fourth = t.list_checked(u, "teaching", &gone).await.unwrap();
    assert_eq!(by_event(&fourth), second);
    assert_eq!(fourth.marker, third.marker);

    // A marker made for another calendar name (the setting has changed
    // since) is not used: the calendar of the new name is looked up, and
    // there is none yet.
    let mut renamed = settings(&emu);
    renamed.calendar = "Lectures".into();
    let t = GoogleTarget::new("google", GoogleClient::with_options(renamed, fast()));
    let hint = CalendarHint {
        marker: fourth.marker.clone(),
        ..gone
    };
    let other = t.list_checked(u, "teaching", &hint).await.unwrap();
    assert!(
        other.items.is_empty() && other.marker.is_none(),
        "{other:?}"
    );
    emu.assert_no_violations();
}

#[tokio::test]
async fn keeps_the_quota_and_rides_out_rate_limit_storms() {
    let users = ["a@uni.example", "b@uni.example"];
    let mut cfg = GoogleEmulatorConfig::with_users(users);
    // A small quota so the test binds on it: 30 requests per 2 s per user.
    cfg.user_rate = RateLimit {
        requests: 30,
        window: Duration::from_secs(2),
    };
    let emu = google::spawn(cfg).await;
    emu.set_faults(google::Faults {
        rate_limit_rate: 0.1,
        error_rate: 0.05,
        latency_ms: 5,
        ..Default::default()
    });
    let opts = GoogleClientOptions {
        user_rate: Some(RequestRate {
            requests: 30,
            window: Duration::from_secs(2),
        }),
        ..fast()
    };
    let t = target(&emu, opts);
    let (ops_a, ops_b) = (creates(users[0], 60), creates(users[1], 60));
    let (a, b) = tokio::join!(t.apply(users[0], &ops_a), t.apply(users[1], &ops_b));
    for o in a.iter().chain(&b) {
        assert!(matches!(o, Outcome::Written { .. }), "{o:?}");
    }
    assert_eq!(marked(&emu, users[0]).len(), 60);
    assert!(emu.stats().rate_limited > 0, "the storm hit");
    // The storm shrank the person's limit on requests in flight, which never
    // went above Google's ceiling.
    let limits = [users[0], users[1]].map(|u| t.client().user_limit(u));
    assert!(
        limits.iter().any(|l| l.decreases > 0 && l.min_limit < 4.0),
        "{limits:?}"
    );
    assert!(emu.stats().max_user_in_flight <= 4, "{:?}", emu.stats());
    emu.assert_no_violations();
}

#[tokio::test]
async fn a_person_has_up_to_four_requests_in_flight() {
    let u = "cy@uni.example";
    let emu = google::spawn(GoogleEmulatorConfig::with_users([u])).await;
    emu.set_latency(Duration::from_millis(30));
    let t = target(&emu, fast());
    let out = t.apply(u, &creates(u, 24)).await;
    assert!(out.iter().all(|o| matches!(o, Outcome::Written { .. })));
    assert_eq!(emu.stats().max_user_in_flight, 4, "{:?}", emu.stats());
    emu.assert_no_violations();
}

#[tokio::test]
async fn a_usage_limited_calendar_pauses_that_person_only() {
    let (ro, ok) = ("ro@uni.example", "ok@uni.example");
    let emu = google::spawn(GoogleEmulatorConfig::with_users([ro, ok])).await;
    let t = target(&emu, fast());
    t.apply(ro, &creates(ro, 2)).await;
    emu.set_read_only(ro, true);
    let more: Vec<CalendarOp> = (2..40)
        .map(|i| op(OpKind::Create, ro, i, "x", None))
        .collect();
    let out = t.apply(ro, &more).await;
    for o in &out {
        let Outcome::Failed { retryable, message } = o else {
            panic!("{o:?}")
        };
        assert!(!retryable);
        assert!(message.contains("usage limits"), "{message}");
    }
    // Paused: nothing more is sent for this person in this run.
    let usage = emu.stats().usage_limited;
    assert!(usage <= 4, "{usage} writes reached the read-only calendar");
    assert!(matches!(
        t.apply(ro, &creates(ro, 1)).await[0],
        Outcome::Failed { .. }
    ));
    assert_eq!(emu.stats().usage_limited, usage);
    let out = t.apply(ok, &creates(ok, 3)).await;
    assert!(out.iter().all(|o| matches!(o, Outcome::Written { .. })));
    emu.assert_no_violations();
}

#[tokio::test]
async fn a_dropped_answer_to_an_insert_makes_no_duplicate() {
    let u = "cy@uni.example";
    let emu = google::spawn(GoogleEmulatorConfig::with_users([u])).await;
    let t = target(&emu, fast());
    t.apply(u, &creates(u, 1)).await;
    emu.drop_next_writes(3);
    let out = t
        .apply(
            u,
            &(1..4)
                .map(|i| op(OpKind::Create, u, i, "x", None))
                .collect::<Vec<_>>(),
        )
        .await;
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Written { .. })),
        "{out:?}"
    );
    assert_eq!(marked(&emu, u).len(), 4);
    assert_eq!(emu.stats().dropped, 3);
    emu.assert_no_violations();
}

#[tokio::test]
async fn explains_bad_keys_and_unknown_people() {
    let e = ServiceAccountKey::from_json("{}", "key.json").unwrap_err();
    assert!(e.contains("client_email"), "{e}");
    let e = ServiceAccountKey::from_json(r#"{"type": "authorized_user"}"#, "key.json").unwrap_err();
    assert!(e.contains("not a service account"), "{e}");
    let e = ServiceAccountKey::from_file(
        std::path::Path::new("/nonexistent/key.json"),
        "EDUSYNC_GOOGLE_KEY",
    )
    .unwrap_err();
    assert!(
        e.contains("$EDUSYNC_GOOGLE_KEY") && e.contains("/nonexistent/key.json"),
        "{e}"
    );

    let emu = google::spawn(GoogleEmulatorConfig::with_users(["ada@uni.example"])).await;
    let t = target(&emu, fast());
    let out = t
        .apply("nobody@uni.example", &creates("nobody@uni.example", 1))
        .await;
    let Outcome::Failed { retryable, message } = &out[0] else {
        panic!("{out:?}")
    };
    assert!(
        !retryable && message.contains("no Google Workspace account"),
        "{message}"
    );
    let ok = t.check(Some("ada@uni.example")).await.unwrap();
    assert!(ok.contains("domain-wide delegation"), "{ok}");

    let mut cfg = GoogleEmulatorConfig::with_users(["ada@uni.example"]);
    cfg.delegation = false;
    let emu = google::spawn(cfg).await;
    let e = target(&emu, fast())
        .check(Some("ada@uni.example"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Domain Wide Delegation") && e.contains(SCOPE),
        "{e}"
    );
    emu.assert_no_violations();
}

/// The zero-violation assertions mean something only if the emulator
/// catches an impolite client: this one ignores backoff, overruns the
/// quota and keeps writing to a read-only calendar.
#[tokio::test]
async fn the_emulator_catches_an_impolite_client() {
    let u = "rude@uni.example";
    let mut cfg = GoogleEmulatorConfig::with_users([u]);
    cfg.user_rate = RateLimit {
        requests: 5,
        window: Duration::from_secs(10),
    };
    let emu = google::spawn(cfg).await;
    let t = target(&emu, fast());
    let token = t.client().token(u).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/users/me/calendarList", emu.api_url());
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
        statuses.push(r.status().as_u16());
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(&statuses[..5], &[200; 5]);
    assert_eq!(&statuses[5..], &[403; 3]);
    let kinds: Vec<google::ViolationKind> = emu.violations().iter().map(|v| v.kind).collect();
    assert!(
        kinds.contains(&google::ViolationKind::QuotaOverrun),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&google::ViolationKind::IgnoredBackoff),
        "{kinds:?}"
    );

    let ro = "ro@uni.example";
    emu.add_user(ro);
    emu.set_read_only(ro, true);
    let token = t.client().token(ro).await.unwrap();
    let url = format!("{}/calendars", emu.api_url());
    for _ in 0..2 {
        let r = http
            .post(&url)
            .bearer_auth(&token)
            .json(&serde_json::json!({"summary": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(emu
        .violations()
        .iter()
        .any(|v| v.kind == google::ViolationKind::WriteWhileUsageLimited));
    let r = http
        .get(format!("{}/users/me/calendarList", emu.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn the_emulator_checks_the_jwt_grant_and_sync_token_rules() {
    let u = "ada@uni.example";
    let emu = google::spawn(GoogleEmulatorConfig::with_users([u])).await;
    let key = ServiceAccountKey::from_json(&emu.key_file_json(), "key").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let http = reqwest::Client::new();
    let grant = |assertion: String| {
        let http = http.clone();
        let url = emu.token_url();
        async move {
            let r = http
                .post(url)
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let good = key.assertion(u, &emu.token_url(), now);
    assert_eq!(grant(good.clone()).await.0, 200);
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (status, body) = grant(tampered).await;
    assert_eq!(status, 400);
    assert!(body.contains("Invalid JWT Signature"), "{body}");
    let (status, body) = grant(key.assertion(u, "https://elsewhere/token", now)).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = grant(key.assertion(u, &emu.token_url(), now - 7200)).await;
    assert_eq!(status, 400, "an expired grant: {body}");
    let (status, body) = grant(key.assertion("eve@elsewhere.example", &emu.token_url(), now)).await;
    assert!(status == 400 && body.contains("Invalid email"), "{body}");

    let t = target(&emu, fast());
    let cal = t.client().ensure_calendar(u).await.unwrap();
    let token = t.client().token(u).await.unwrap();
    let url = format!(
        "{}/calendars/{}/events?syncToken=sync-1&privateExtendedProperty=edusyncProfile%3Dteaching",
        emu.api_url(),
        crate::percent_encode(&cal)
    );
    let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    emu.assert_no_violations();
}

#[tokio::test]
async fn tokens_are_cached_per_person_and_refreshed_before_expiry() {
    let (a, b) = ("a@uni.example", "b@uni.example");
    let mut cfg = GoogleEmulatorConfig::with_users([a, b]);
    cfg.token_lifetime = Duration::from_secs(2);
    let emu = google::spawn(cfg).await;
    let t = target(&emu, fast());
    let start = std::time::Instant::now();
    for i in 0..8 {
        let ops = [
            op(OpKind::Create, a, i, "x", None),
            op(OpKind::Create, b, i, "x", None),
        ];
        let (x, y) = tokio::join!(t.apply(a, &ops[..1]), t.apply(b, &ops[1..]));
        assert!(matches!(x[0], Outcome::Written { .. }) && matches!(y[0], Outcome::Written { .. }));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // One token per person per ~1.5 s of a 2 s life (refreshed a quarter
    // before expiry), not one per request; never an expired one used.
    let (issued, requests) = (emu.stats().tokens_issued, emu.stats().requests);
    let most = 2 * (start.elapsed().as_secs_f64() / 1.5).ceil() as u64 + 2;
    assert!(
        issued >= 4 && issued <= most && issued < requests,
        "{issued} tokens for {requests} requests"
    );
    emu.assert_no_violations();
}

#[tokio::test]
async fn tokens_outlive_the_target_that_fetched_them() {
    // `serve` builds its targets anew each cycle: the next cycle's target
    // (same endpoint, same key, read again) uses the token already fetched.
    let a = "a@uni.example";
    let emu = google::spawn(GoogleEmulatorConfig::with_users([a])).await;
    for i in 0..3 {
        let t = target(&emu, fast());
        let out = t.apply(a, &[op(OpKind::Create, a, i, "x", None)]).await;
        assert!(matches!(out[0], Outcome::Written { .. }), "{out:?}");
    }
    assert_eq!(emu.stats().tokens_issued, 1);
    emu.assert_no_violations();
}
