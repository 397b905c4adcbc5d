//! `edusync serve` over plain HTTP: nothing is shown without signing in,
//! sign-in sets a hardened session cookie, CSRF and roles are enforced,
//! failed sign-ins are rate limited, feeds answer 304 to conditional
//! requests, `/metrics` has the documented series, and SIGTERM stops cleanly.

mod serve_common;

use serve_common::*;

#[test]
fn console_requires_sign_in_roles_csrf_and_limits_guessing() {
    let mut s = Serve::start(20, "1h");
    let gets = [
        "/console",
        "/console/",
        "/console/runs",
        "/console/runs/1",
        "/console/people",
        "/console/people?q=x",
        "/console/config",
        "/console/audit",
        "/console/accounts",
        "/console/logout",
        "/console/sites",
        "/console/sites/x",
        "/metrics",
    ];
    for path in gets {
        let (code, _, body) = get(s.addr, path, &[]).unwrap();
        assert_eq!(code, 401, "GET {path} without signing in");
        assert!(
            body.contains("id=\"login\""),
            "GET {path} shows the sign-in form"
        );
        assert!(!body.contains("teaching"), "GET {path} reveals nothing");
    }
    let posts = [
        "/console/profiles/teaching/run",
        "/console/profiles/teaching/pause",
        "/console/profiles/teaching/resume",
        "/console/runs/1/approve",
        "/console/runs/1/reject",
        "/console/people/x/feed",
        "/console/people/x/feed/revoke",
        "/console/accounts",
        "/console/logout",
    ];
    for path in posts {
        let (code, _, _) = request(s.addr, "POST", path, &[], "csrf=x").unwrap();
        assert_eq!(code, 401, "POST {path} without signing in");
    }
    // A wrong bearer token is refused; the right one reads, but cannot act.
    let (code, _, _) = get(s.addr, "/console", &[("Authorization", "Bearer nope")]).unwrap();
    assert_eq!(code, 401);
    let (code, _, _) = get(
        s.addr,
        "/console",
        &[("Authorization", "Bearer test-bearer-token")],
    )
    .unwrap();
    assert_eq!(code, 200);
    let (code, _, _) = request(
        s.addr,
        "POST",
        "/console/profiles/teaching/pause",
        &[("Authorization", "Bearer test-bearer-token")],
        "csrf=",
    )
    .unwrap();
    assert_eq!(code, 401);

    // Roles and CSRF.
    let (viewer, vcsrf) = sign_in(&s, "viewer");
    let (code, _, _) = request(
        s.addr,
        "POST",
        "/console/profiles/teaching/pause",
        &[("Cookie", &viewer)],
        &format!("csrf={vcsrf}"),
    )
    .unwrap();
    assert_eq!(code, 403, "a viewer cannot pause");
    let (op, ocsrf) = sign_in(&s, "operator");
    let (code, _, _) = request(
        s.addr,
        "POST",
        "/console/profiles/teaching/pause",
        &[("Cookie", &op)],
        "csrf=forged",
    )
    .unwrap();
    assert_eq!(code, 403, "a forged CSRF token is refused");
    let (code, _, _) = request(
        s.addr,
        "POST",
        "/console/profiles/teaching/pause",
        &[("Cookie", &op)],
        &format!("csrf={ocsrf}"),
    )
    .unwrap();
    assert_eq!(code, 303);
    let (_, _, dash) = get(s.addr, "/console", &[("Cookie", &op)]).unwrap();
    assert!(dash.contains("paused"), "{dash}");
    let (code, _, _) = request(
        s.addr,
        "POST",
        "/console/people/x/feed",
        &[("Cookie", &op)],
        &format!("csrf={ocsrf}"),
    )
    .unwrap();
    assert_eq!(code, 403, "feed links are for admins");
    let (code, _, _) = request(
        s.addr,
        "POST",
        "/console/profiles/teaching/resume",
        &[("Cookie", &op)],
        &format!("csrf={ocsrf}"),
    )
    .unwrap();
    assert_eq!(code, 303);
    let (_, _, audit) = get(s.addr, "/console/audit", &[("Cookie", &viewer)]).unwrap();
    assert!(
        audit.contains("pause") && audit.contains("resume") && audit.contains("operator"),
        "{audit}"
    );

    // Sign-out ends the session.
    let (code, _, _) = request(
        s.addr,
        "POST",
        "/console/logout",
        &[("Cookie", &viewer)],
        &format!("csrf={vcsrf}"),
    )
    .unwrap();
    assert_eq!(code, 303);
    let (code, _, _) = get(s.addr, "/console", &[("Cookie", &viewer)]).unwrap();
    assert_eq!(code, 401);

    // Guessing passwords: the sixth wrong try for an account is refused outright.
    let mut last = 0;
    for _ in 0..6 {
        let (_, hs, page) = get(s.addr, "/console/login", &[]).unwrap();
        let c = header(&hs, "set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let csrf = form_value(&page, "csrf");
        last = request(
            s.addr,
            "POST",
            "/console/login",
            &[("Cookie", &c)],
            &format!("csrf={csrf}&next=&user=admin&password=wrong"),
        )
        .unwrap()
        .0;
    }
    assert_eq!(last, 429, "sign-in attempts are rate limited");

    // Metrics (bearer token for scrapers).
    let (code, _, m) = get(
        s.addr,
        "/metrics",
        &[("Authorization", "Bearer test-bearer-token")],
    )
    .unwrap();
    assert_eq!(code, 200);
    for series in [
        "edusync_cycle_duration_seconds_bucket{profile=\"teaching\"",
        "edusync_ops_total{profile=\"teaching\",kind=\"create\",outcome=\"applied\"}",
        "edusync_queue_depth{profile=\"teaching\",state=\"pending\"} 0",
        "edusync_quarantined_rows{profile=\"teaching\"}",
        "edusync_last_success_timestamp_seconds{profile=\"teaching\"}",
    ] {
        assert!(m.contains(series), "{series} missing from:\n{m}");
    }
    let (code, _, _) = get(s.addr, "/healthz", &[]).unwrap();
    assert_eq!(code, 200);

    let status = s.stop();
    assert!(
        status.success(),
        "serve exits 0 on SIGTERM: {status}; log:\n{}",
        s.log()
    );
}

#[test]
fn feeds_are_private_cached_and_revocable() {
    let s = Serve::start(20, "1h");
    let student = s.a_student();
    let (admin, csrf) = sign_in(&s, "admin");
    let (code, _, page) = request(
        s.addr,
        "POST",
        &format!("/console/people/{student}/feed"),
        &[("Cookie", &admin)],
        &format!("csrf={csrf}"),
    )
    .unwrap();
    assert_eq!(code, 200, "{page}");
    let i = page
        .find("id=\"feed-url\" href=\"")
        .expect("the new feed link")
        + 20;
    let url = page[i..].split('"').next().unwrap().to_string();
    let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
    let token = path
        .trim_start_matches("/feeds/p/")
        .trim_end_matches(".ics")
        .to_string();
    assert!(token.len() >= 32, "at least 128 bits: {token}");

    let (code, hs, body) = get(s.addr, &path, &[]).unwrap();
    assert_eq!(code, 200);
    assert!(header(&hs, "content-type")
        .unwrap()
        .starts_with("text/calendar"));
    assert!(body.starts_with("BEGIN:VCALENDAR\r\n") && body.contains("BEGIN:VEVENT"));
    assert!(body.contains(&format!("X-EDUSYNC-PERSON:{student}")));
    let etag = header(&hs, "etag").unwrap().to_string();
    let lm = header(&hs, "last-modified").unwrap().to_string();
    let (code, _, body) = get(s.addr, &path, &[("If-None-Match", &etag)]).unwrap();
    assert_eq!((code, body.as_str()), (304, ""));
    let (code, _, _) = get(s.addr, &path, &[("If-Modified-Since", &lm)]).unwrap();
    assert_eq!(code, 304);
    let (code, _, my) = get(s.addr, &format!("/my/{token}"), &[]).unwrap();
    assert_eq!(code, 200);
    assert!(my.contains("<h1>My timetable") && my.contains("webcal://"));

    // A guessed token, then the revoked one: 404.
    let (code, _, _) = get(s.addr, &format!("/feeds/p/{}.ics", "0".repeat(40)), &[]).unwrap();
    assert_eq!(code, 404);
    let (code, _, _) = request(
        s.addr,
        "POST",
        &format!("/console/people/{student}/feed/revoke"),
        &[("Cookie", &admin)],
        &format!("csrf={csrf}"),
    )
    .unwrap();
    assert_eq!(code, 303);
    let (code, _, _) = get(s.addr, &path, &[]).unwrap();
    assert_eq!(code, 404, "a revoked link stops working at once");
    let (code, _, _) = get(s.addr, &format!("/my/{token}"), &[]).unwrap();
    assert_eq!(code, 404);
}
