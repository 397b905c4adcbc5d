use super::*;

fn scan(s: &dyn Store) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    s.scan_ledger("t", "vdir", &mut |r| {
        out.push((
            r.person_id.to_string(),
            r.event_id.to_string(),
            r.fingerprint,
        ))
    })
    .unwrap();
    out
}

// Behaviour shared by every backend (ledger order, schema refusal, held runs, the
// outbox model) is tested in store_tests.rs; these are SQLite's own.

#[test]
fn console_tables_keep_their_contracts() {
    let s = SqliteStore::in_memory().unwrap();
    let u = ConsoleUser {
        name: "ada".into(),
        role: "viewer".into(),
        password_hash: "$argon2id$x".into(),
        created_at: 10,
    };
    s.put_user(&u).unwrap();
    s.put_user(&ConsoleUser {
        role: "admin".into(),
        created_at: 99,
        ..u.clone()
    })
    .unwrap();
    let got = s.user("ada").unwrap().unwrap();
    assert_eq!((got.role.as_str(), got.created_at), ("admin", 10));
    assert!(s.user("Ada").unwrap().is_none());
    assert_eq!(s.users().unwrap().len(), 1);

    let sess = SessionRecord {
        user: "ada".into(),
        csrf: "c".into(),
        created_at: 100,
        expires_at: 200,
    };
    s.put_session("h1", &sess).unwrap();
    assert_eq!(s.session("h1", 150).unwrap(), Some(sess.clone()));
    assert_eq!(s.session("h1", 200).unwrap(), None, "expired at expires_at");
    assert_eq!(s.purge_sessions(200).unwrap(), 1);
    s.put_session("h2", &sess).unwrap();
    s.delete_session("h2").unwrap();
    s.delete_session("h2").unwrap();
    assert_eq!(s.session("h2", 150).unwrap(), None);

    for i in 0..3 {
        s.record_audit(&AuditEntry {
            at: i,
            user: "ada".into(),
            action: "pause".into(),
            target: "teaching".into(),
            detail: format!("n{i}"),
        })
        .unwrap();
    }
    let log = s.audit_log(2).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].detail, "n2", "newest first");

    s.set_feed_token("p1", "t1", 5).unwrap();
    assert_eq!(s.feed_token_person("t1").unwrap().as_deref(), Some("p1"));
    s.set_feed_token("p1", "t2", 6).unwrap();
    assert_eq!(
        s.feed_token_person("t1").unwrap(),
        None,
        "rotation invalidates"
    );
    assert_eq!(s.feed_token_of("p1").unwrap().unwrap().token_hash, "t2");
    assert!(s.revoke_feed_token("p1").unwrap());
    assert!(!s.revoke_feed_token("p1").unwrap());
    assert_eq!(s.feed_token_person("t2").unwrap(), None);
}

/// A state written by the first schema is migrated in place, keeping its data.
#[test]
fn a_state_from_schema_1_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            .unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
        c.execute("INSERT INTO schema_version (version) VALUES (1)", [])
            .unwrap();
        c.execute(
            "INSERT INTO ledger (profile, target, person_id, event_id, fingerprint, starts_at, calendar, updated_at) \
             VALUES ('t', 'vdir', 'P1', 'E1', 7, 100, 'p1@example.ac.uk', 1)",
            [],
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(scan(&s), vec![("P1".into(), "E1".into(), 7)]);
    let version: i64 = s
        .with(|c| c.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    assert_eq!(s.ledger_for_person("t", "P1").unwrap().len(), 1);
}
