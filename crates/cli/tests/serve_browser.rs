//! The console and a student's page in a real browser (headless Chromium
//! through chromedriver): sign in, the dashboard shows the finished run,
//! person lookup and a feed link, a held run approved (its deletes then
//! apply), and the student's page on a phone-sized screen. Screenshots go
//! to `target/test-artifacts/`.

mod serve_common;

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serve_common::*;

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(artifacts().join(format!("serve-{name}.png")), png).unwrap();
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
        .text()
        .await
        .unwrap()
}

/// Reloads until `css` matches (bounded).
async fn wait_for(c: &Client, css: &str, limit: Duration) {
    let t = Instant::now();
    loop {
        if c.find(Locator::Css(css)).await.is_ok() {
            return;
        }
        assert!(
            t.elapsed() < limit,
            "{css} did not appear within {limit:?}:\n{}",
            c.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.refresh().await.unwrap();
    }
}

#[test]
fn console_and_student_page_in_chromium() {
    let Some((chromedriver, chromium)) = browser_tools() else {
        return;
    };
    let s = Serve::start(40, "1h");
    let driver = Driver::start(&chromedriver);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Duration::from_secs(240);
    let result = rt.block_on(async {
        tokio::time::timeout(deadline, async {
            let c = driver.client(&chromium).await;
            let r = scenario(&c, &s).await;
            let _ = c.close().await;
            r
        })
        .await
    });
    match result {
        Ok(()) => {}
        Err(_) => panic!(
            "the browser scenario took longer than {deadline:?}; serve log:\n{}",
            s.log()
        ),
    }
}

async fn scenario(c: &Client, s: &Serve) {
    // Signing in from a console link comes back to it.
    c.goto(&s.url("/console")).await.unwrap();
    c.find(Locator::Id("user"))
        .await
        .unwrap()
        .send_keys("admin")
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    shot(c, "1-sign-in").await;
    c.find(Locator::Css("#login button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        c,
        "tr[data-profile=teaching][data-status=applied]",
        Duration::from_secs(30),
    )
    .await;
    let row = text(c, "tr[data-profile=teaching]").await;
    assert!(
        row.contains("applied") && row.contains("run 1"),
        "dashboard row: {row}"
    );
    shot(c, "2-dashboard").await;

    // Person lookup, and a feed link for them.
    let student = s.a_student();
    c.goto(&s.url("/console/people")).await.unwrap();
    c.find(Locator::Id("q"))
        .await
        .unwrap()
        .send_keys(&student)
        .await
        .unwrap();
    c.find(Locator::Css("form[role=search] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(c, "section.profile table.desired", Duration::from_secs(10)).await;
    let section = text(c, "section.profile").await;
    assert!(
        section.contains("What their calendar should hold"),
        "{section}"
    );
    assert!(
        section.contains("in sync"),
        "the ledger agrees with the timetable: {section}"
    );
    c.find(Locator::Css("#feed button.go"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(c, "#my-url", Duration::from_secs(10)).await;
    let my_url = c
        .find(Locator::Id("my-url"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    shot(c, "3-person").await;

    // Half the timetable disappears: the next cycle is held by the deletion guard.
    let before = s.calendar_files();
    {
        let db = rusqlite::Connection::open(s.path("timetable.db")).unwrap();
        db.execute("DELETE FROM tt_events WHERE rowid % 2 = 0", [])
            .unwrap();
    }
    c.goto(&s.url("/console")).await.unwrap();
    c.find(Locator::Css(
        "form[action='/console/profiles/teaching/run'] button",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_for(
        c,
        "tr[data-profile=teaching][data-status=held]",
        Duration::from_secs(60),
    )
    .await;
    shot(c, "4-held").await;
    assert_eq!(s.calendar_files(), before, "held deletes are not applied");

    c.goto(&s.url("/console/runs")).await.unwrap();
    let held = c.find(Locator::Css("tr[data-status=held]")).await.unwrap();
    let run = held.attr("data-run").await.unwrap().unwrap();
    held.find(Locator::Css("form[action$='/approve'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(c, "#run-status .st-approved", Duration::from_secs(60)).await;
    shot(c, "5-approved").await;
    let after = s.calendar_files();
    assert!(
        after < before,
        "approved deletes apply: {before} files before, {after} after"
    );
    c.goto(&s.url("/console/audit")).await.unwrap();
    let audit = text(c, "#audit").await;
    assert!(
        audit.contains("approve") && audit.contains(&format!("run {run}")),
        "{audit}"
    );

    // The student's own page on a phone.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&my_url).await.unwrap();
    let h1 = text(c, "h1").await;
    assert!(h1.starts_with("My timetable"), "{h1}");
    assert!(c
        .find(Locator::Css("section[aria-labelledby=today] h2"))
        .await
        .is_ok());
    let fits = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        fits,
        serde_json::Value::Bool(true),
        "no sideways scrolling on a phone"
    );
    let lang = c
        .execute("return document.documentElement.lang;", vec![])
        .await
        .unwrap();
    assert_eq!(lang, serde_json::json!("en"));
    shot(c, "6-student-phone").await;
}
