//! `edusync serve` on a PostgreSQL state (a throwaway database on the local
//! server): accounts made with `edusync user add`, sign-in, person lookup,
//! feeds and the audit log live in PostgreSQL, and so do the hub's sites; a
//! second `serve` on the same state sees the same sessions, feed links and
//! sites. The state's password comes from `state_password_env`.

mod serve_common;

use std::process::{Command, Stdio};
use std::time::Duration;

use edusync_db::testing::PgTestDb;
use serve_common::*;

const PW_VAR: &str = "EDUSYNC_TEST_STATE_PASSWORD";

#[test]
fn console_feeds_and_sites_live_in_a_shared_postgres_state() {
    let db = PgTestDb::create();
    let state = format!("state = \"{}\"\nstate_password_env = \"{PW_VAR}\"", db.url);
    // The local server trusts loopback, so any password is accepted; what is
    // tested is that the variable is read (and required) for the state.
    let mut s = Serve::start_on(20, "1h", &state, &[(PW_VAR, "state-password")]);

    // The state's password variable is required by every command that opens the state.
    let out = Command::new(BIN)
        .args(["plan", "--config", "edusync.toml", "--profile", "teaching"])
        .current_dir(s.dir.path())
        .env_remove(PW_VAR)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(&format!(
                "environment variable {PW_VAR} is not set (named by `state_password_env` in"
            )),
        "plan without {PW_VAR}: {}\n{err}",
        out.status
    );

    // Accounts were written to PostgreSQL by `edusync user add`; sign-in works.
    let (admin, csrf) = sign_in(&s, "admin");
    let student = s.a_student();
    let (code, _, page) = get(
        s.addr,
        &format!("/console/people?q={student}"),
        &[("Cookie", &admin)],
    )
    .unwrap();
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("What target vdir (vdir) holds, by the ledger:") && page.contains("in sync"),
        "the person page shows the PostgreSQL ledger:\n{page}"
    );

    // A feed link, issued and stored in PostgreSQL.
    let (code, _, page) = request(
        s.addr,
        "POST",
        &format!("/console/people/{student}/feed"),
        &[("Cookie", &admin)],
        &format!("csrf={csrf}"),
    )
    .unwrap();
    assert_eq!(code, 200, "{page}");
    let i = page.find("id=\"feed-url\" href=\"").expect("the feed link") + 20;
    let url = page[i..].split('"').next().unwrap().to_string();
    let feed = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
    let (code, hs, body) = get(s.addr, &feed, &[]).unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("BEGIN:VEVENT") && body.contains(&format!("X-EDUSYNC-PERSON:{student}")));
    let etag = header(&hs, "etag").unwrap().to_string();
    let (code, _, _) = get(s.addr, &feed, &[("If-None-Match", &etag)]).unwrap();
    assert_eq!(code, 304);

    // A site registered with the hub on the shared state.
    let token = edusync(
        s.dir.path(),
        &["site", "add", "--config", "edusync.toml", "school-017"],
        &[(PW_VAR, "state-password")],
    );
    assert!(token.trim().starts_with("edst_"), "{token}");

    // A second `serve` on the same state: same session, feed link, site and audit log.
    let port = free_port();
    let conf = std::fs::read_to_string(s.path("edusync.toml"))
        .unwrap()
        .replace(&s.addr.to_string(), &format!("127.0.0.1:{port}"));
    std::fs::write(s.path("second.toml"), conf).unwrap();
    let mut second = Serve {
        dir: tempfile::tempdir().unwrap(),
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        child: None,
        env: vec![(PW_VAR.into(), "state-password".into())],
    };
    std::fs::copy(s.path("second.toml"), second.path("edusync.toml")).unwrap();
    std::fs::copy(s.path("timetable.db"), second.path("timetable.db")).unwrap();
    second.spawn();
    let (code, _, page) = get(second.addr, "/console/sites", &[("Cookie", &admin)]).unwrap();
    assert_eq!(
        code, 200,
        "the first serve's session is valid on the second"
    );
    assert!(page.contains("school-017"), "{page}");
    let (code, _, _) = get(second.addr, &feed, &[("If-None-Match", &etag)]).unwrap();
    assert!(
        code == 304 || code == 200,
        "the feed link works on the second serve: {code}"
    );
    let (code, _, audit) = get(second.addr, "/console/audit", &[("Cookie", &admin)]).unwrap();
    assert_eq!(code, 200);
    assert!(
        audit.contains("feed-token-rotate") && audit.contains("user-add"),
        "{audit}"
    );

    // The hub on the second serve accepts the site's token (a heartbeat).
    let (code, _, body) = request_json(
        second.addr,
        "/hub/v1/sites/school-017/heartbeat",
        token.trim(),
        r#"{"agent_version":"t","agent_uptime_secs":1,"host_uptime_secs":null,"disk_free_bytes":null,"backlog_files":2,"backlog_bytes":5,"sent_at":"2026-01-01T00:00:00Z"}"#,
    );
    assert!((200..300).contains(&code), "heartbeat: {code} {body}");

    let status = second.stop();
    assert!(status.success(), "{}", second.log());
    let status = s.stop();
    assert!(status.success(), "{}", s.log());
    std::thread::sleep(Duration::from_millis(100));
}

/// A JSON POST with a bearer token (the agent's shape).
fn request_json(addr: std::net::SocketAddr, path: &str, token: &str, body: &str) -> Reply {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        c,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = String::new();
    c.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, Vec::new(), body.to_string())
}
