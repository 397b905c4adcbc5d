//! The Graph emulator, exercised over HTTP as a client would.

use std::time::Duration;

use edusync_testkit::graph::{
    self, GraphEmulator, GraphEmulatorConfig, MailboxState, OutageMode, RateLimit, ViolationKind,
};
use serde_json::{json, Value};

const MARKER: &str = "String {6f1c2b8e-3d4a-4c55-9a7e-0e5d1c2b3a40} Name edusync-key";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn token(emu: &GraphEmulator) -> String {
    let cfg = emu.config();
    let r = http()
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            emu.authority_url(),
            cfg.tenant_id
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", cfg.client_id.as_str()),
            ("client_secret", cfg.client_secret.as_str()),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    v["access_token"].as_str().unwrap().to_string()
}

fn event(subject: &str, start: &str, end: &str) -> Value {
    json!({
        "subject": subject,
        "start": {"dateTime": start, "timeZone": "UTC"},
        "end": {"dateTime": end, "timeZone": "UTC"},
    })
}

async fn calendar_id(emu: &GraphEmulator, tok: &str, upn: &str) -> String {
    let r = http()
        .post(format!("{}/v1.0/users/{upn}/calendars", emu.url()))
        .bearer_auth(tok)
        .json(&json!({"name": "Timetable"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn token_endpoint_accepts_the_secret_and_rejects_others() {
    let emu = graph::spawn(GraphEmulatorConfig::default()).await;
    let _ = token(&emu).await;
    let r = http()
        .post(format!(
            "{}/contoso.onmicrosoft.com/oauth2/v2.0/token",
            emu.url()
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", emu.config().client_id.as_str()),
            ("client_secret", "wrong"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_client");
    assert_eq!(v["error_codes"][0], 7000215);
    assert!(v["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS7000215"));
    // A Graph call without a token is a violation.
    let r = http()
        .get(format!("{}/v1.0/users/x@y", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(emu.violations()[0].kind, ViolationKind::InvalidToken);
}

#[tokio::test]
async fn expired_token_is_rejected_and_recorded() {
    let emu = graph::spawn(GraphEmulatorConfig {
        token_lifetime: Duration::from_millis(300),
        ..GraphEmulatorConfig::with_users(["a@x.edu"])
    })
    .await;
    let tok = token(&emu).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = http()
        .get(format!("{}/v1.0/users/a@x.edu/calendars", emu.url()))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(emu.violations()[0].kind, ViolationKind::ExpiredToken);
}

#[tokio::test]
async fn unknown_and_unlicensed_mailboxes() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["a@x.edu"])).await;
    emu.set_mailbox_state("nolicence@x.edu", MailboxState::Unlicensed);
    let tok = token(&emu).await;
    let get = |u: &str| {
        http()
            .get(format!("{}/v1.0/users/{u}/calendars", emu.url()))
            .bearer_auth(&tok)
            .send()
    };
    let r = get("nobody@x.edu").await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "ResourceNotFound"
    );
    let r = get("nolicence@x.edu").await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "MailboxNotEnabledForRESTAPI"
    );
    let r = get("A@X.EDU").await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["value"][0]["name"], "Calendar");
    emu.assert_no_violations();
}

#[tokio::test]
async fn calendars_create_and_filter_by_name() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["a@x.edu"])).await;
    let tok = token(&emu).await;
    let id = calendar_id(&emu, &tok, "a@x.edu").await;
    let r = http()
        .get(format!("{}/v1.0/users/a@x.edu/calendars", emu.url()))
        .query(&[("$filter", "name eq 'Timetable'")])
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    assert_eq!(v["value"][0]["id"], id);
    // A second calendar of the same name is refused.
    let r = http()
        .post(format!("{}/v1.0/users/a@x.edu/calendars", emu.url()))
        .bearer_auth(&tok)
        .json(&json!({"name": "timetable"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

#[tokio::test]
async fn transaction_id_deduplicates_creates() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["a@x.edu"])).await;
    let tok = token(&emu).await;
    let cal = calendar_id(&emu, &tok, "a@x.edu").await;
    let mut body = event("Maths", "2026-01-05T09:00:00", "2026-01-05T10:00:00");
    body["transactionId"] = json!("tx-1");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = http()
            .post(format!(
                "{}/v1.0/users/a@x.edu/calendars/{cal}/events",
                emu.url()
            ))
            .bearer_auth(&tok)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert!(ids.iter().all(|i| *i == ids[0]));
    let evs = emu.calendar_events("a@x.edu", "Timetable");
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].transaction_id.as_deref(), Some("tx-1"));
    assert_eq!(emu.stats().transaction_id_repeats, 2);
}

#[tokio::test]
async fn unknown_property_is_rejected() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["a@x.edu"])).await;
    let tok = token(&emu).await;
    let mut body = event("Maths", "2026-01-05T09:00:00", "2026-01-05T10:00:00");
    body["subjcet"] = json!("typo");
    let r = http()
        .post(format!("{}/v1.0/users/a@x.edu/events", emu.url()))
        .bearer_auth(&tok)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn marker_filter_and_expand() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["a@x.edu"])).await;
    let tok = token(&emu).await;
    let cal = calendar_id(&emu, &tok, "a@x.edu").await;
    for i in 0..3 {
        let mut body = event(
            &format!("E{i}"),
            "2026-01-05T09:00:00",
            "2026-01-05T10:00:00",
        );
        body["singleValueExtendedProperties"] =
            json!([{"id": MARKER, "value": format!("teaching/e{i}")}]);
        let r = http()
            .post(format!(
                "{}/v1.0/users/a@x.edu/calendars/{cal}/events",
                emu.url()
            ))
            .bearer_auth(&tok)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let t0: jiff::Timestamp = "2026-01-05T11:00:00Z".parse().unwrap();
    emu.add_personal_event(
        "a@x.edu",
        Some("Timetable"),
        "Dentist",
        t0,
        t0 + jiff::SignedDuration::from_hours(1),
    )
    .unwrap();

    let filter = format!(
        "singleValueExtendedProperties/Any(ep: ep/id eq '{MARKER}' and ep/value eq 'teaching/e1')"
    );
    let expand = format!("singleValueExtendedProperties($filter=id eq '{MARKER}')");
    let r = http()
        .get(format!(
            "{}/v1.0/users/a@x.edu/calendars/{cal}/events",
            emu.url()
        ))
        .query(&[("$filter", filter.as_str()), ("$expand", expand.as_str())])
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let items = v["value"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["subject"], "E1");
    assert_eq!(
        items[0]["singleValueExtendedProperties"][0]["value"],
        "teaching/e1"
    );

    // Every marked event, none of the person's own.
    let filter = format!("singleValueExtendedProperties/Any(ep: ep/id eq '{MARKER}')");
    let r = http()
        .get(format!(
            "{}/v1.0/users/a@x.edu/calendars/{cal}/events",
            emu.url()
        ))
        .query(&[("$filter", filter.as_str())])
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["value"].as_array().unwrap().len(), 3);
    assert!(v["value"][0].get("singleValueExtendedProperties").is_none());
}

#[tokio::test]
async fn calendar_view_pages_with_next_link() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["a@x.edu"])).await;
    let tok = token(&emu).await;
    let cal = calendar_id(&emu, &tok, "a@x.edu").await;
    for i in 0..25 {
        let start = format!("2026-02-{:02}T09:00:00", i + 1);
        let end = format!("2026-02-{:02}T10:00:00", i + 1);
        let r = http()
            .post(format!(
                "{}/v1.0/users/a@x.edu/calendars/{cal}/events",
                emu.url()
            ))
            .bearer_auth(&tok)
            .json(&event(&format!("E{i}"), &start, &end))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let mut url = format!(
        "{}/v1.0/users/a@x.edu/calendars/{cal}/calendarView?startDateTime=2026-02-03T00:00:00Z&endDateTime=2026-03-01T00:00:00Z&$top=10",
        emu.url()
    );
    let mut subjects = Vec::new();
    let mut pages = 0;
    loop {
        let v: Value = http()
            .get(&url)
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        for e in v["value"].as_array().unwrap() {
            subjects.push(e["subject"].as_str().unwrap().to_string());
        }
        match v["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(subjects.len(), 23);
    assert_eq!(subjects[0], "E2");
    assert_eq!(subjects[22], "E24");
}

#[tokio::test]
async fn batch_over_twenty_is_rejected_and_recorded() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["a@x.edu"])).await;
    let tok = token(&emu).await;
    let reqs: Vec<Value> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users/a@x.edu/calendars"}))
        .collect();
    let r = http()
        .post(format!("{}/v1.0/$batch", emu.url()))
        .bearer_auth(&tok)
        .json(&json!({"requests": reqs}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v = emu.violations();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].kind, ViolationKind::OversizeBatch);
}

#[tokio::test]
async fn batch_runs_four_at_a_time_per_mailbox() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["a@x.edu", "b@x.edu"])).await;
    let tok = token(&emu).await;
    emu.set_latency(Duration::from_millis(50));
    let mut reqs: Vec<Value> = (0..10)
        .map(|i| {
            json!({"id": format!("c{i}"), "method": "POST", "url": "/users/a@x.edu/events",
                   "headers": {"Content-Type": "application/json"},
                   "body": event(&format!("E{i}"), "2026-01-05T09:00:00", "2026-01-05T10:00:00")})
        })
        .collect();
    reqs.push(json!({"id": "g", "method": "GET", "url": "/users/b@x.edu/calendars?$top=1"}));
    reqs.push(json!({"id": "missing", "method": "GET", "url": "/users/a@x.edu/events/nope"}));
    let t = std::time::Instant::now();
    let r = http()
        .post(format!("{}/v1.0/$batch", emu.url()))
        .bearer_auth(&tok)
        .json(&json!({"requests": reqs}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let resp = v["responses"].as_array().unwrap();
    assert_eq!(resp.len(), 12);
    let by_id = |id: &str| resp.iter().find(|x| x["id"] == id).unwrap().clone();
    assert_eq!(by_id("c3")["status"], 201);
    assert_eq!(by_id("g")["status"], 200);
    assert_eq!(by_id("missing")["status"], 404);
    assert_eq!(
        by_id("missing")["body"]["error"]["code"],
        "ErrorItemNotFound"
    );
    // 11 requests to a@ at 4 at a time and 50 ms each: at least 3 rounds.
    assert!(t.elapsed() >= Duration::from_millis(150));
    let s = emu.stats();
    assert_eq!(s.mailboxes["a@x.edu"].max_concurrent, 4);
    assert_eq!(s.mailboxes["a@x.edu"].requests, 11);
    assert_eq!(emu.events("a@x.edu").len(), 10);
    emu.assert_no_violations();
}

#[tokio::test]
async fn more_than_four_concurrent_requests_are_throttled_and_recorded() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["a@x.edu"])).await;
    let tok = token(&emu).await;
    emu.set_latency(Duration::from_millis(300));
    let client = http();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let (c, url, tok) = (
            client.clone(),
            format!("{}/v1.0/users/a@x.edu/calendars", emu.url()),
            tok.clone(),
        );
        set.spawn(async move { c.get(url).bearer_auth(tok).send().await.unwrap() });
    }
    let mut statuses = Vec::new();
    let mut retry_after = None;
    while let Some(r) = set.join_next().await {
        let r = r.unwrap();
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|h| h.to_str().unwrap().to_string());
            let v: Value = r.json().await.unwrap();
            assert!(v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("MailboxConcurrency"));
            statuses.push(429);
        } else {
            statuses.push(r.status().as_u16());
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1);
    assert_eq!(retry_after.as_deref(), Some("1"));
    let v = emu.violations();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].kind, ViolationKind::TooManyConcurrent);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_and_records_ignoring_it() {
    let emu = graph::spawn(GraphEmulatorConfig {
        mailbox_rate: RateLimit {
            requests: 5,
            window: Duration::from_secs(1),
        },
        ..GraphEmulatorConfig::with_users(["a@x.edu", "b@x.edu"])
    })
    .await;
    let tok = token(&emu).await;
    let get = |u: &str| {
        http()
            .get(format!("{}/v1.0/users/{u}", emu.url()))
            .bearer_auth(&tok)
            .send()
    };
    for _ in 0..5 {
        assert_eq!(get("a@x.edu").await.unwrap().status(), 200);
    }
    let r = get("a@x.edu").await.unwrap();
    assert_eq!(r.status(), 429);
    let secs: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1).contains(&secs));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "ApplicationThrottled");
    // Another mailbox is not held.
    assert_eq!(get("b@x.edu").await.unwrap().status(), 200);
    emu.assert_no_violations();
    // Ignoring Retry-After is recorded (after the grace period).
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get("a@x.edu").await.unwrap().status(), 429);
    let v = emu.violations();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].kind, ViolationKind::IgnoredRetryAfter);
    assert_eq!(v[0].mailbox.as_deref(), Some("a@x.edu"));
    // Honouring it works.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get("a@x.edu").await.unwrap().status(), 200);
    assert!(emu.stats().throttled >= 2);
}

#[tokio::test]
async fn inner_429_in_a_batch_carries_retry_after() {
    let emu = graph::spawn(GraphEmulatorConfig {
        mailbox_rate: RateLimit {
            requests: 3,
            window: Duration::from_secs(1),
        },
        ..GraphEmulatorConfig::with_users(["a@x.edu"])
    })
    .await;
    let tok = token(&emu).await;
    let reqs: Vec<Value> = (0..5)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users/a@x.edu/calendars"}))
        .collect();
    let r = http()
        .post(format!("{}/v1.0/$batch", emu.url()))
        .bearer_auth(&tok)
        .json(&json!({"requests": reqs}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let resp = v["responses"].as_array().unwrap();
    let throttled: Vec<&Value> = resp.iter().filter(|x| x["status"] == 429).collect();
    assert_eq!(throttled.len(), 2);
    assert_eq!(throttled[0]["headers"]["Retry-After"], "1");
    // The batch's own requests after the first 429 are not violations.
    emu.assert_no_violations();
}

#[tokio::test]
async fn depends_on_runs_in_order_and_fails_dependents() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["a@x.edu"])).await;
    let tok = token(&emu).await;
    let reqs = json!([
        {"id": "1", "method": "GET", "url": "/users/a@x.edu/events/none"},
        {"id": "2", "method": "GET", "url": "/users/a@x.edu/calendars", "dependsOn": ["1"]},
    ]);
    let r = http()
        .post(format!("{}/v1.0/$batch", emu.url()))
        .bearer_auth(&tok)
        .json(&json!({"requests": reqs}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["responses"][0]["status"], 404);
    assert_eq!(v["responses"][1]["status"], 424);
}

#[tokio::test]
async fn dropped_connection_after_write_keeps_the_write() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["a@x.edu"])).await;
    let tok = token(&emu).await;
    emu.drop_next_writes(1);
    let r = http()
        .post(format!("{}/v1.0/users/a@x.edu/events", emu.url()))
        .bearer_auth(&tok)
        .json(&event(
            "Maths",
            "2026-01-05T09:00:00",
            "2026-01-05T10:00:00",
        ))
        .send()
        .await;
    assert!(r.is_err(), "expected a connection error, got {r:?}");
    assert_eq!(emu.events("a@x.edu").len(), 1);
    assert_eq!(emu.stats().dropped_connections, 1);
    // The next request is answered normally.
    let r = http()
        .get(format!("{}/v1.0/users/a@x.edu/events", emu.url()))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn outage_and_error_rate() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["a@x.edu"])).await;
    let tok = token(&emu).await;
    emu.outage(Duration::from_millis(300), OutageMode::Unavailable);
    let url = format!("{}/v1.0/users/a@x.edu/events", emu.url());
    let r = http().get(&url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    emu.outage(Duration::from_millis(300), OutageMode::Refuse);
    assert!(http().get(&url).bearer_auth(&tok).send().await.is_err());
    emu.end_outage();
    assert_eq!(
        http()
            .get(&url)
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    emu.set_error_rate(1.0);
    let s = http()
        .get(&url)
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .status();
    assert!(s == 503 || s == 504);
}

#[tokio::test]
async fn admin_endpoint_inspects_and_edits() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["a@x.edu"])).await;
    let c = http();
    let r = c
        .post(format!("{}/_emulator/mailboxes/a@x.edu/events", emu.url()))
        .json(&json!({"subject": "Lunch", "start": "2026-01-05T12:00:00Z", "end": "2026-01-05T13:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .patch(format!(
            "{}/_emulator/mailboxes/a@x.edu/events/{id}",
            emu.url()
        ))
        .json(&json!({"subject": "Long lunch"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(emu.events("a@x.edu")[0].subject, "Long lunch");
    let r = c
        .put(format!("{}/_emulator/faults", emu.url()))
        .json(&json!({"latency_ms": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(emu.faults().latency_ms, 5);
    let v: Value = c
        .get(format!("{}/_emulator/stats", emu.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["mailboxes"]["a@x.edu"]["events"], 1);
    let r = c
        .delete(format!(
            "{}/_emulator/mailboxes/a@x.edu/events/{id}",
            emu.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(emu.events("a@x.edu").is_empty());
}

#[tokio::test]
async fn patch_and_delete_events() {
    let emu = graph::spawn(GraphEmulatorConfig::with_users(["a@x.edu"])).await;
    let tok = token(&emu).await;
    let r = http()
        .post(format!("{}/v1.0/users/a@x.edu/events", emu.url()))
        .bearer_auth(&tok)
        .json(&event(
            "Maths",
            "2026-01-05T09:00:00",
            "2026-01-05T10:00:00",
        ))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let etag = v["@odata.etag"].as_str().unwrap().to_string();
    let r = http()
        .patch(format!("{}/v1.0/users/a@x.edu/events/{id}", emu.url()))
        .bearer_auth(&tok)
        .header("If-Match", &etag)
        .json(
            &json!({"subject": "Physics", "categories": ["Timetable"], "showAs": "free",
                      "singleValueExtendedProperties": [{"id": MARKER, "value": "p/k"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = &emu.events("a@x.edu")[0];
    assert_eq!(e.subject, "Physics");
    assert_eq!(e.categories, vec!["Timetable"]);
    assert_eq!(e.show_as, "free");
    assert_eq!(e.extended_property(MARKER), Some("p/k"));
    // A stale etag is refused.
    let r = http()
        .delete(format!("{}/v1.0/users/a@x.edu/events/{id}", emu.url()))
        .bearer_auth(&tok)
        .header("If-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let r = http()
        .delete(format!("{}/v1.0/users/a@x.edu/events/{id}", emu.url()))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(emu.events("a@x.edu").is_empty());
    let r = http()
        .delete(format!("{}/v1.0/users/a@x.edu/events/{id}", emu.url()))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn auto_users_creates_mailboxes_on_first_use() {
    let emu = graph::spawn(GraphEmulatorConfig {
        auto_users: true,
        ..GraphEmulatorConfig::default()
    })
    .await;
    let tok = token(&emu).await;
    let r = http()
        .get(format!("{}/v1.0/users/new@x.edu/calendars", emu.url()))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(emu.calendars("new@x.edu"), vec!["Calendar"]);
}
