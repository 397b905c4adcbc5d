//! The store's behaviour, run against every backend: SQLite and PostgreSQL
//! (a throwaway database on the local server; see `edusync_db::testing`).

use std::collections::BTreeMap;
use std::time::Duration;

use edusync_db::testing::PgTestDb;
use proptest::prelude::*;

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::*;

/// Where a store lives, so a test can "crash" (drop) and reopen it.
enum Backend {
    Sqlite(tempfile::TempDir),
    Pg(PgTestDb),
}

impl Backend {
    fn all() -> Vec<Backend> {
        vec![
            Backend::Sqlite(tempfile::tempdir().unwrap()),
            Backend::Pg(PgTestDb::create()),
        ]
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Pg(_) => "postgres",
        }
    }

    fn open(&self) -> Box<dyn Store> {
        match self {
            Backend::Sqlite(dir) => {
                Box::new(SqliteStore::open(&dir.path().join("state.db")).unwrap())
            }
            Backend::Pg(db) => Box::new(PgStore::open(&db.url).unwrap()),
        }
    }

    /// Empties every table (between proptest cases on one database).
    fn wipe(&self) {
        match self {
            Backend::Sqlite(dir) => {
                let c = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
                c.execute_batch("DELETE FROM ledger; DELETE FROM outbox; DELETE FROM runs;")
                    .unwrap();
            }
            Backend::Pg(db) => db.execute("TRUNCATE ledger, outbox, runs"),
        }
    }
}

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

fn op(p: &str, kind: OpKind, state: OpState, fp: u64) -> OutboxOp {
    OutboxOp {
        person_id: p.into(),
        event_id: "E".into(),
        kind,
        state,
        fingerprint: fp,
    }
}

#[test]
fn ledger_scans_in_byte_order_and_survives_reopen() {
    for b in Backend::all() {
        {
            let s = b.open();
            s.ack(
                "t",
                "vdir",
                &[
                    Ack::Written(entry("b", "2", 1)),
                    Ack::Written(entry("B", "1", 2)),
                    Ack::Written(entry("a", "10", 3)),
                    Ack::Written(entry("a", "9", u64::MAX)),
                    Ack::Written(entry("é", "1", 4)),
                    Ack::Written(entry("z", "1", 5)),
                ],
            )
            .unwrap();
        }
        let s = b.open();
        assert_eq!(
            scan(&*s),
            vec![
                ("B".into(), "1".into(), 2),
                ("a".into(), "10".into(), 3),
                ("a".into(), "9".into(), u64::MAX),
                ("b".into(), "2".into(), 1),
                ("z".into(), "1".into(), 5),
                ("é".into(), "1".into(), 4),
            ],
            "{}",
            b.name()
        );
        assert_eq!(s.ledger_count("t").unwrap(), 6);
        let got = s
            .ledger_entries(
                "t",
                "vdir",
                &[
                    ("a".into(), "9".into()),
                    ("x".into(), "1".into()),
                    ("b".into(), "2".into()),
                ],
            )
            .unwrap();
        assert_eq!(
            got,
            vec![
                Some(entry("a", "9", u64::MAX)),
                None,
                Some(entry("b", "2", 1))
            ],
            "{}",
            b.name()
        );
        s.reconcile_ledger("t", "vdir", &[("b".into(), "2".into(), None)])
            .unwrap();
        assert_eq!(s.ledger_all("t", "vdir").unwrap().len(), 5);
        assert_eq!(s.ledger_for_person("t", "a").unwrap().len(), 2);
    }
}

#[test]
fn held_runs_are_superseded_by_a_newer_plan_and_can_be_released() {
    for b in Backend::all() {
        let s = b.open();
        let r1 = s.start_run("t", RunKind::Sync).unwrap();
        let del = |p: &str| op(p, OpKind::Delete, OpState::Held, 0);
        s.replace_outbox(r1, "t", "vdir", &mut vec![del("a"), del("b")].into_iter())
            .unwrap();
        s.finish_run(r1, RunStatus::Held, &RunOutcome::default())
            .unwrap();
        assert_eq!(s.outbox_counts("t").unwrap(), (0, 2));
        let r2 = s.start_run("t", RunKind::Sync).unwrap();
        s.replace_outbox(r2, "t", "vdir", &mut vec![del("a")].into_iter())
            .unwrap();
        assert_eq!(
            s.run(r1).unwrap().status,
            RunStatus::Superseded,
            "{}",
            b.name()
        );
        assert_eq!(s.release_held(r1).unwrap(), 0);
        assert_eq!(s.release_held(r2).unwrap(), 1);
        assert_eq!(
            s.outbox("t", "vdir", OpState::Pending, Some(r2))
                .unwrap()
                .len(),
            1
        );
        s.record_failures(
            "t",
            &[OpError {
                run_id: r2,
                target: "vdir".into(),
                person_id: "a".into(),
                event_id: "E".into(),
                kind: "delete".into(),
                permanent: false,
                message: "503".into(),
                at: 5,
            }],
        )
        .unwrap();
        let row = &s.outbox("t", "vdir", OpState::Pending, None).unwrap()[0];
        assert_eq!(
            (row.attempts, row.last_error.as_deref()),
            (1, Some("503")),
            "{}",
            b.name()
        );
        assert_eq!(s.op_errors(r2, 10).unwrap().len(), 1);
        assert_eq!(s.op_errors_for_person("t", "a", 10).unwrap().len(), 1);
        s.record_quarantine(
            r2,
            &[QuarantineRecord {
                view: "tt_events".into(),
                row: "event_id=E".into(),
                reason: "bad".into(),
            }],
        )
        .unwrap();
        assert_eq!(s.quarantine(r2, 10).unwrap()[0].reason, "bad");
        assert_eq!(s.runs(Some("t"), 10).unwrap().len(), 2);
        assert!(matches!(s.run(999), Err(StoreError::NoSuchRun(999))));
    }
}

#[test]
fn console_tables_keep_their_contracts_on_every_backend() {
    for b in Backend::all() {
        console_contracts(&*b.open(), b.name());
    }
}

fn console_contracts(s: &dyn Store, backend: &str) {
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
    assert_eq!(
        (got.role.as_str(), got.created_at),
        ("admin", 10),
        "{backend}"
    );
    assert!(
        s.user("Ada").unwrap().is_none(),
        "{backend}: names are case-sensitive"
    );
    assert_eq!(s.users().unwrap().len(), 1);

    let sess = SessionRecord {
        user: "ada".into(),
        csrf: "c".into(),
        created_at: 100,
        expires_at: 200,
    };
    s.put_session("h1", &sess).unwrap();
    assert_eq!(s.session("h1", 150).unwrap(), Some(sess.clone()));
    assert_eq!(
        s.session("h1", 200).unwrap(),
        None,
        "{backend}: expired at expires_at"
    );
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
    assert_eq!(log[0].detail, "n2", "{backend}: newest first");

    s.set_feed_token("p1", "t1", 5).unwrap();
    assert_eq!(s.feed_token_person("t1").unwrap().as_deref(), Some("p1"));
    s.set_feed_token("p1", "t2", 6).unwrap();
    assert_eq!(
        s.feed_token_person("t1").unwrap(),
        None,
        "{backend}: rotation invalidates"
    );
    assert_eq!(s.feed_token_of("p1").unwrap().unwrap().token_hash, "t2");
    assert!(s.revoke_feed_token("p1").unwrap());
    assert!(!s.revoke_feed_token("p1").unwrap());
    assert_eq!(s.feed_token_person("t2").unwrap(), None);
}

#[test]
fn calendar_markers_are_kept_per_profile_and_target_and_survive_reopen() {
    for b in Backend::all() {
        let s = b.open();
        assert!(s.calendar_markers("t", "dav").unwrap().is_empty());
        s.set_calendar_markers(
            "t",
            "dav",
            &[
                ("a@x".into(), Some("ctag-1\ntok-1".into())),
                ("b@x".into(), Some("ctag-2".into())),
            ],
        )
        .unwrap();
        s.set_calendar_markers("t", "other", &[("a@x".into(), Some("o".into()))])
            .unwrap();
        s.set_calendar_markers("u", "dav", &[("a@x".into(), Some("u".into()))])
            .unwrap();
        // Replaced, removed, and removing a missing one is no error.
        s.set_calendar_markers(
            "t",
            "dav",
            &[
                ("a@x".into(), Some("ctag-3\ntok-3".into())),
                ("b@x".into(), None),
                ("c@x".into(), None),
            ],
        )
        .unwrap();
        drop(s);
        let s = b.open();
        let mut got = s.calendar_markers("t", "dav").unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![("a@x".to_string(), "ctag-3\ntok-3".to_string())],
            "{}",
            b.name()
        );
        assert_eq!(
            s.calendar_markers("t", "other").unwrap(),
            vec![("a@x".to_string(), "o".to_string())],
            "{}",
            b.name()
        );
        assert_eq!(
            s.calendar_markers("u", "dav").unwrap(),
            vec![("a@x".to_string(), "u".to_string())],
            "{}",
            b.name()
        );
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let b = Backend::Pg(PgTestDb::create());
    drop(b.open());
    let Backend::Pg(db) = &b else { unreachable!() };
    db.execute("INSERT INTO schema_version (version) VALUES (999)");
    let err = PgStore::open(&db.url).unwrap_err().to_string();
    assert!(err.contains("newer edusync (schema version 999"), "{err}");
}

#[test]
fn a_postgres_state_of_schema_1_is_upgraded_with_its_outbox_claimable() {
    let db = PgTestDb::create();
    {
        let s = PgStore::open_at(&db.url, 1, None).unwrap();
        let run = s.start_run("t", RunKind::Sync).unwrap();
        s.replace_outbox(
            run,
            "t",
            "vdir",
            &mut vec![op("a", OpKind::Create, OpState::Pending, 7)].into_iter(),
        )
        .unwrap();
        s.ack("t", "vdir", &[Ack::Written(entry("z", "E", 1))])
            .unwrap();
    }
    let s = PgStore::open(&db.url).unwrap();
    let c = s.lock();
    let v: i32 = block_on(c.query_one("SELECT max(version) FROM schema_version", &[]))
        .unwrap()
        .get(0);
    drop(c);
    assert_eq!(v as usize, crate::postgres::MIGRATIONS.len());
    let got = s.claim("t", "vdir", 10, Duration::from_secs(60)).unwrap();
    assert_eq!((got.len(), got[0].fingerprint), (1, 7));
    assert_eq!(scan(&s), vec![("z".into(), "E".into(), 1)]);
}

use edusync_db::block_on;

#[test]
fn two_workers_split_claims_and_a_dead_workers_claims_return_at_once() {
    let db = PgTestDb::create();
    let a = PgStore::open(&db.url).unwrap();
    let b = PgStore::open(&db.url).unwrap();
    let run = a.start_run("t", RunKind::Sync).unwrap();
    let ops: Vec<OutboxOp> = (0..10)
        .map(|i| op(&format!("p{i}"), OpKind::Create, OpState::Pending, 1))
        .collect();
    a.replace_outbox(run, "t", "vdir", &mut ops.into_iter())
        .unwrap();
    let lease = Duration::from_secs(300);
    let ca = a.claim("t", "vdir", 4, lease).unwrap();
    let cb = b.claim("t", "vdir", 100, lease).unwrap();
    assert_eq!((ca.len(), cb.len()), (4, 6));
    assert!(ca
        .iter()
        .all(|x| cb.iter().all(|y| x.person_id != y.person_id)));
    assert!(a.claim("t", "vdir", 100, lease).unwrap().is_empty());

    // Only one cycle lock per profile; it goes with its connection.
    assert!(a.try_lock_profile("t").unwrap());
    assert!(!b.try_lock_profile("t").unwrap());
    // While `a` plans, nobody claims.
    b.release_claims("t", "vdir", Duration::ZERO).unwrap();
    a.release_claims("t", "vdir", Duration::ZERO).unwrap();
    a.begin_planning("t", Duration::from_secs(5)).unwrap();
    assert!(b.claim("t", "vdir", 100, lease).unwrap().is_empty());
    a.end_planning("t").unwrap();
    let cb = b.claim("t", "vdir", 100, lease).unwrap();
    assert_eq!(cb.len(), 10);
    // `b` dies: its claims (a 300 s lease) and nothing else are free again at once.
    b.ack("t", "vdir", &[Ack::Written(entry("p0", "E", 1))])
        .unwrap();
    drop(b);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let again = loop {
        let got = a.claim("t", "vdir", 100, lease).unwrap();
        if !got.is_empty() || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(again.len(), 9);
    let c = PgStore::open(&db.url).unwrap();
    assert!(!c.try_lock_profile("t").unwrap());
    a.unlock_profile("t").unwrap();
    assert!(c.try_lock_profile("t").unwrap());
}

#[test]
fn claims_take_whole_people_so_a_calendar_has_one_worker_at_a_time() {
    let db = PgTestDb::create();
    let a = PgStore::open(&db.url).unwrap();
    let b = PgStore::open(&db.url).unwrap();
    let run = a.start_run("t", RunKind::Sync).unwrap();
    let mut ops = Vec::new();
    for (p, n) in [("p1", 3), ("p2", 5), ("p3", 2)] {
        for e in 0..n {
            ops.push(OutboxOp {
                person_id: p.into(),
                event_id: format!("E{e}"),
                kind: OpKind::Create,
                state: OpState::Pending,
                fingerprint: 1,
            });
        }
    }
    a.replace_outbox(run, "t", "vdir", &mut ops.into_iter())
        .unwrap();
    let lease = Duration::from_secs(300);
    let people = |rows: &[OutboxRow]| {
        let mut p: Vec<String> = rows.iter().map(|r| r.person_id.clone()).collect();
        p.dedup();
        p
    };
    // A limit of 4 ends inside p2: the rest of p2 comes too (8 ops, not 4).
    let ca = a.claim("t", "vdir", 4, lease).unwrap();
    assert_eq!((ca.len(), people(&ca)), (8, vec!["p1".into(), "p2".into()]));
    let cb = b.claim("t", "vdir", 100, lease).unwrap();
    assert_eq!((cb.len(), people(&cb)), (2, vec!["p3".to_string()]));
    // `a` acknowledges part of p2 and lets the rest go (failed): while it is
    // released, `b` may take p2; while `a` still held some of p2, it may not.
    a.ack(
        "t",
        "vdir",
        &[
            Ack::Written(entry("p2", "E0", 1)),
            Ack::Written(entry("p1", "E0", 1)),
        ],
    )
    .unwrap();
    assert!(
        b.claim("t", "vdir", 100, lease).unwrap().is_empty(),
        "p1, p2 are a's"
    );
    a.release_claims("t", "vdir", Duration::ZERO).unwrap();
    let again = b.claim("t", "vdir", 100, lease).unwrap();
    assert_eq!(
        (again.len(), people(&again)),
        (6, vec!["p1".into(), "p2".into()])
    );
}

#[test]
fn a_worker_lets_one_of_its_claims_go_and_keeps_the_others_alive() {
    let db = PgTestDb::create();
    let a = PgStore::open(&db.url).unwrap();
    let b = PgStore::open(&db.url).unwrap();
    let run = a.start_run("t", RunKind::Sync).unwrap();
    let mut ops = Vec::new();
    for p in ["p1", "p2", "p3"] {
        for e in 0..2 {
            ops.push(OutboxOp {
                person_id: p.into(),
                event_id: format!("E{e}"),
                kind: OpKind::Create,
                state: OpState::Pending,
                fingerprint: 1,
            });
        }
    }
    a.replace_outbox(run, "t", "vdir", &mut ops.into_iter())
        .unwrap();
    // Two claims in flight: p1, then p2 with a lease of one second.
    let first = a.claim("t", "vdir", 2, Duration::from_secs(300)).unwrap();
    let second = a.claim("t", "vdir", 2, Duration::from_secs(1)).unwrap();
    assert_eq!(
        (first[0].person_id.as_str(), second[0].person_id.as_str()),
        ("p1", "p2")
    );
    // The first claim ends: one op acknowledged, the other let go; the
    // second claim is untouched.
    a.ack("t", "vdir", &[Ack::Written(entry("p1", "E0", 1))])
        .unwrap();
    let gone = a
        .release_claims_of("t", "vdir", &["p1".to_string()], Duration::ZERO)
        .unwrap();
    assert_eq!(gone, vec![("p1".to_string(), "E1".to_string())]);
    // The second claim outlives its first lease because it is renewed.
    assert_eq!(
        a.renew_claims("t", "vdir", Duration::from_secs(300))
            .unwrap(),
        2
    );
    std::thread::sleep(Duration::from_millis(2100));
    let got = b.claim("t", "vdir", 100, Duration::from_secs(300)).unwrap();
    let mut people: Vec<&str> = got.iter().map(|r| r.person_id.as_str()).collect();
    people.dedup();
    assert_eq!(people, vec!["p1", "p3"], "p2 is still a's");
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

/// The store against a model: the ledger changes only by acknowledged ops,
/// the outbox holds exactly the latest plan minus what was acknowledged,
/// and a crash (reopen) changes nothing.
fn follows_the_model(b: &Backend, steps: Vec<Step>) -> std::result::Result<(), TestCaseError> {
    let mut s = b.open();
    b.wipe();
    let mut ledger: BTreeMap<String, u64> = BTreeMap::new();
    let mut outbox: BTreeMap<String, u64> = BTreeMap::new();
    for st in steps {
        match st {
            Step::Plan(ops) => {
                let run = s.start_run("t", RunKind::Sync).unwrap();
                let mut seen = BTreeMap::new();
                for (p, fp) in ops {
                    seen.insert(format!("p{p}"), fp as u64);
                }
                outbox = seen.clone();
                let mut it = seen.into_iter().map(|(p, fp)| {
                    op(
                        &p,
                        if fp == 0 {
                            OpKind::Delete
                        } else {
                            OpKind::Create
                        },
                        OpState::Pending,
                        fp,
                    )
                });
                s.replace_outbox(run, "t", "vdir", &mut it).unwrap();
            }
            Step::Ack(n) => {
                let pending = s.outbox("t", "vdir", OpState::Pending, None).unwrap();
                let acks: Vec<Ack> = pending
                    .iter()
                    .take(n)
                    .map(|o| {
                        if o.kind == OpKind::Delete {
                            Ack::Deleted {
                                person_id: o.person_id.clone(),
                                event_id: o.event_id.clone(),
                            }
                        } else {
                            Ack::Written(entry(&o.person_id, &o.event_id, o.fingerprint))
                        }
                    })
                    .collect();
                s.ack("t", "vdir", &acks).unwrap();
                for o in pending.iter().take(n) {
                    outbox.remove(&o.person_id);
                    if o.kind == OpKind::Delete {
                        ledger.remove(&o.person_id);
                    } else {
                        ledger.insert(o.person_id.clone(), o.fingerprint);
                    }
                }
            }
            Step::Crash => {
                drop(s);
                s = b.open();
            }
        }
        let got_ledger: BTreeMap<String, u64> =
            scan(&*s).into_iter().map(|(p, _, fp)| (p, fp)).collect();
        prop_assert_eq!(&got_ledger, &ledger, "{}", b.name());
        let got_outbox: BTreeMap<String, u64> = s
            .outbox("t", "vdir", OpState::Pending, None)
            .unwrap()
            .into_iter()
            .map(|o| (o.person_id, o.fingerprint))
            .collect();
        prop_assert_eq!(&got_outbox, &outbox, "{}", b.name());
    }
    Ok(())
}

#[test]
fn outbox_and_ledger_follow_the_model_on_every_backend() {
    for b in Backend::all() {
        let cases = if matches!(b, Backend::Pg(_)) { 32 } else { 64 };
        proptest::test_runner::TestRunner::new(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::with_cases(cases)
        })
        .run(&proptest::collection::vec(step(), 1..25), |steps| {
            follows_the_model(&b, steps)
        })
        .unwrap_or_else(|e| panic!("{}: {e}", b.name()));
    }
}
