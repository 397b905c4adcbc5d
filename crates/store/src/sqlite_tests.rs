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
// outbox model, the console tables) is tested in store_tests.rs; these are SQLite's own.

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

/// Person lookup and the drift check read one person's rows by index, not
/// the profile's whole ledger.
#[test]
fn one_persons_ledger_is_read_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let plan: Vec<String> = s
        .with(|c| {
            let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {}", ledger_for_person_sql()))?;
            let rows = st.query_map(params!["t", "P1"], |r| r.get::<_, String>(3))?;
            rows.collect()
        })
        .unwrap();
    assert!(
        plan.iter()
            .any(|p| p.contains("USING INDEX ledger_person (profile=? AND person_id=?)")),
        "{plan:?}"
    );
}
