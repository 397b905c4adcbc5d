//! A site offline for a "month" (30 days of data written while the link is
//! down) flushes its whole backlog when the link comes back; heartbeats and
//! the Sites console show it.

mod collect_common;

use std::time::Duration;

use collect_common::*;
use edusync_testkit::proxy::{FaultProxy, ProxyOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_offline_for_a_month_flushes_its_backlog() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = HubProc::start(&tmp.path().join("hub"), "");
    let token = hub.site_add("school-month");
    let proxy = FaultProxy::start(hub.addr(), ProxyOptions::default())
        .await
        .unwrap();
    let mut agent = AgentProc::new(
        &tmp.path().join("site"),
        "school-month",
        &token,
        proxy.addr(),
        FAST,
    );
    let mut rng = Rng::new(11);
    write_day(&agent.data, 0, 100, &mut rng);
    agent.spawn();
    let first = expected(&agent.data);
    wait_until(
        "day 0 at the hub",
        Duration::from_secs(30),
        || hub.manifest("school-month") == first,
        || agent.log_tail(),
    )
    .await;

    // The link goes down for a "month".
    proxy.set_offline(true);
    for day in 1..=30 {
        write_day(&agent.data, day, 100, &mut rng);
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.assert_running();
    assert_eq!(
        hub.manifest("school-month"),
        first,
        "data arrived while offline?"
    );

    proxy.set_offline(false);
    let want = expected(&agent.data);
    wait_until(
        "the month's backlog at the hub",
        Duration::from_secs(60),
        || hub.manifest("school-month") == want,
        || agent.log_tail(),
    )
    .await;
    assert_complete(&hub, "school-month", &agent.data);
    wait_until(
        "a heartbeat reporting an empty backlog",
        Duration::from_secs(20),
        || {
            hub.last_heartbeat("school-month")
                .is_some_and(|h| h["backlog_files"] == 0)
        },
        || format!("{:?}", hub.last_heartbeat("school-month")),
    )
    .await;

    // The console answers "who sent what".
    let (code, _) = http_get(hub.addr(), "/console/sites").unwrap();
    assert_eq!(code, 401, "the console must require login");
    let (code, page) = http_get_auth(hub.addr(), "/console/sites", Some(CONSOLE_TOKEN)).unwrap();
    assert_eq!(code, 200);
    assert!(
        page.contains("data-site=\"school-month\"") && page.contains("class=\"ok\""),
        "{page}"
    );
    let (code, page) = http_get_auth(
        hub.addr(),
        "/console/sites/school-month",
        Some(CONSOLE_TOKEN),
    )
    .unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("day030.csv"), "recent files missing: {page}");
    let (code, ics) = http_get(hub.addr(), "/feeds/server-days.ics").unwrap();
    assert_eq!(code, 200);
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\n") && ics.contains("DTSTART;VALUE=DATE:"));
}
