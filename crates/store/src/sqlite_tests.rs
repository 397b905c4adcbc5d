use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn entry(p: &str, e: &str, fp: u64) -> LedgerEntry {
    LedgerEntry {
        person_id: p.into(),
        event_id: e.into(),
        fingerprint: fp,
        starts_at: 100,
        calendar: format!("{p}@example.ac.uk"),
        remote_id: Some(format!("{p}-{e}")),
        etag: None,
        sequence: 0,
        gone: false,
        updated_at: 1,
    }
}

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

#[test]
fn ledger_scans_in_byte_order_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.ack(
            "t",
            "vdir",
            &[
                Ack::Written(entry("b", "2", 1)),
                Ack::Written(entry("B", "1", 2)),
                Ack::Written(entry("a", "10", 3)),
                Ack::Written(entry("a", "9", u64::MAX)),
            ],
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(
        scan(&s),
        vec![
            ("B".into(), "1".into(), 2),
            ("a".into(), "10".into(), 3),
            ("a".into(), "9".into(), u64::MAX),
            ("b".into(), "2".into(), 1)
        ]
    );
    assert_eq!(s.ledger_count("t").unwrap(), 4);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(&path).unwrap());
    let c = Connection::open(&path).unwrap();
    c.execute("INSERT INTO schema_version (version) VALUES (999)", [])
        .unwrap();
    drop(c);
    let err = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(err.contains("newer edusync"), "{err}");
}

#[test]
fn held_runs_are_superseded_by_a_newer_plan_and_can_be_released() {
    let s = SqliteStore::in_memory().unwrap();
    let r1 = s.start_run("t", RunKind::Sync).unwrap();
    let del = |p: &str| OutboxOp {
        person_id: p.into(),
        event_id: "E".into(),
        kind: OpKind::Delete,
        state: OpState::Held,
        fingerprint: 0,
    };
    s.replace_outbox(r1, "t", "vdir", &mut vec![del("a"), del("b")].into_iter())
        .unwrap();
    s.finish_run(r1, RunStatus::Held, &RunOutcome::default())
        .unwrap();
    assert_eq!(s.outbox_counts("t").unwrap(), (0, 2));
    let r2 = s.start_run("t", RunKind::Sync).unwrap();
    s.replace_outbox(r2, "t", "vdir", &mut vec![del("a")].into_iter())
        .unwrap();
    assert_eq!(s.run(r1).unwrap().status, RunStatus::Superseded);
    assert_eq!(s.release_held(r1).unwrap(), 0);
    assert_eq!(s.release_held(r2).unwrap(), 1);
    assert_eq!(
        s.outbox("t", "vdir", OpState::Pending, Some(r2))
            .unwrap()
            .len(),
        1
    );
}

#[derive(Debug, Clone)]
enum Step {
    /// Plan: replace the outbox with ops over these (person, fingerprint) keys; fp 0 = delete.
    Plan(Vec<(u8, u8)>),
    /// The target acknowledges the first n pending ops.
    Ack(usize),
    /// The process dies and the store is reopened.
    Crash,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        proptest::collection::vec((0u8..6, 0u8..4), 0..6).prop_map(Step::Plan),
        (0usize..6).prop_map(Step::Ack),
        Just(Step::Crash),
    ]
}

proptest! {
    /// The store against a model: the ledger changes only by acknowledged ops,
    /// the outbox holds exactly the latest plan minus what was acknowledged,
    /// and a crash (reopen) changes nothing.
    #[test]
    fn outbox_and_ledger_follow_the_model(steps in proptest::collection::vec(step(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut s = SqliteStore::open(&path).unwrap();
        let mut ledger: BTreeMap<String, u64> = BTreeMap::new();
        let mut outbox: BTreeMap<String, u64> = BTreeMap::new();
        for st in steps {
            match st {
                Step::Plan(ops) => {
                    let run = s.start_run("t", RunKind::Sync).unwrap();
                    let mut seen = BTreeMap::new();
                    for (p, fp) in ops { seen.insert(format!("p{p}"), fp as u64); }
                    outbox = seen.clone();
                    let mut it = seen.into_iter().map(|(p, fp)| OutboxOp {
                        person_id: p, event_id: "E".into(),
                        kind: if fp == 0 { OpKind::Delete } else { OpKind::Create },
                        state: OpState::Pending, fingerprint: fp,
                    });
                    s.replace_outbox(run, "t", "vdir", &mut it).unwrap();
                }
                Step::Ack(n) => {
                    let pending = s.outbox("t", "vdir", OpState::Pending, None).unwrap();
                    let acks: Vec<Ack> = pending.iter().take(n).map(|o| if o.kind == OpKind::Delete {
                        Ack::Deleted { person_id: o.person_id.clone(), event_id: o.event_id.clone() }
                    } else {
                        Ack::Written(entry(&o.person_id, &o.event_id, o.fingerprint))
                    }).collect();
                    s.ack("t", "vdir", &acks).unwrap();
                    for o in pending.iter().take(n) {
                        outbox.remove(&o.person_id);
                        if o.kind == OpKind::Delete { ledger.remove(&o.person_id); } else { ledger.insert(o.person_id.clone(), o.fingerprint); }
                    }
                }
                Step::Crash => {
                    drop(s);
                    s = SqliteStore::open(&path).unwrap();
                }
            }
            let got_ledger: BTreeMap<String, u64> = scan(&s).into_iter().map(|(p, _, fp)| (p, fp)).collect();
            prop_assert_eq!(&got_ledger, &ledger);
            let got_outbox: BTreeMap<String, u64> = s.outbox("t", "vdir", OpState::Pending, None).unwrap()
                .into_iter().map(|o| (o.person_id, o.fingerprint)).collect();
            prop_assert_eq!(&got_outbox, &outbox);
        }
    }
}

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
