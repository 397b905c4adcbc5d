//! `edusync check` on a `caldav` target through the built binary, before any
//! calendar exists: with a `{person_id}` template it proves the service
//! account's rights by making a person's calendar, writing and removing a
//! probe event and removing the calendar again; when Radicale refuses, it
//! fails saying which rights to grant.

mod caldav_common;

use caldav_common::*;
use edusync_testkit::dav::Rights;

fn check(env: &Env) -> (bool, String) {
    let out = env.run(&["check", "--config", "edusync.toml"]);
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), describe(&out)),
    )
}

#[test]
fn check_proves_rights_before_any_calendar_exists() {
    let env = Env::new(DavKind::Radicale, 2, 1);
    env.set_calendar_url("/{person_id}/timetable/");
    let (ok, out) = check(&env);
    assert!(ok, "{out}");
    assert!(
        out.contains("can create people's calendars")
            && out.contains(&format!("{}/P0/timetable/", env.server.url()))
            && out.contains("all good"),
        "{out}"
    );
    // Nothing left behind on the server.
    assert!(env.server.ics_files().is_empty());
    assert!(
        !env.server.storage().join("collection-root/P0").exists(),
        "{out}"
    );

    // After a sync the calendar exists, and the check writes into it.
    let r = env.sync();
    assert_eq!(r["create"].as_u64(), Some(2), "{r}");
    let (ok, out) = check(&env);
    assert!(ok && out.contains("can write into"), "{out}");
    assert_eq!(env.server.ics_files().len(), 2);
}

#[test]
fn check_explains_rights_when_radicale_refuses() {
    let env = Env::with_server(
        DavServer::start_with(DavKind::Radicale, Rights::OwnerOnly),
        2,
        1,
    );
    env.set_calendar_url("/{person_id}/timetable/");
    let (ok, out) = check(&env);
    assert!(!ok, "{out}");
    assert!(
        out.contains("✗ profile teaching: target")
            && out.contains("rights file")
            && out.contains("user: edusync")
            && out.contains("Nextcloud")
            && out.contains("1 problem(s) found"),
        "{out}"
    );
    assert!(env.server.ics_files().is_empty());
}
