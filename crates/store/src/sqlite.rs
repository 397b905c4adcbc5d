//! The embedded default store: one SQLite file in WAL mode.
//!
//! The ledger is a `WITHOUT ROWID` table clustered on
//! `(profile, target, person_id, event_id)`, so reading one target's ledger
//! in plan order is a sequential scan with no sort. Writes commit with
//! `synchronous = NORMAL`: a process crash loses nothing committed; a power
//! cut may lose the last commits, which the outbox constraints make harmless
//! (the work is planned again and replayed idempotently).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use edusync_core::plan::{Counts, LedgerRow};
use rusqlite::{params, Connection, OptionalExtension};

use crate::console::{AuditEntry, ConsoleUser, FeedTokenRecord, SessionRecord};
use crate::outbox::{Ack, OpKind, OpState, OutboxOp, OutboxRow};
use crate::{
    now, LedgerEntry, OpError, QuarantineRecord, Result, Run, RunId, RunKind, RunOutcome,
    RunStatus, Store, StoreError,
};

/// Versioned schema migrations; each runs once, in order, in a transaction.
/// Never edit a released migration: add a new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: ledger, outbox, runs
    r#"
    CREATE TABLE ledger (
        profile     TEXT NOT NULL,
        target      TEXT NOT NULL,
        person_id   TEXT NOT NULL,
        event_id    TEXT NOT NULL,
        fingerprint INTEGER NOT NULL,
        starts_at   INTEGER NOT NULL,
        calendar    TEXT NOT NULL,
        remote_id   TEXT,
        etag        TEXT,
        sequence    INTEGER NOT NULL DEFAULT 0,
        gone        INTEGER NOT NULL DEFAULT 0,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (profile, target, person_id, event_id)
    ) WITHOUT ROWID;
    CREATE TABLE outbox (
        profile     TEXT NOT NULL,
        target      TEXT NOT NULL,
        person_id   TEXT NOT NULL,
        event_id    TEXT NOT NULL,
        run_id      INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        state       TEXT NOT NULL,
        fingerprint INTEGER NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        last_error  TEXT,
        PRIMARY KEY (profile, target, person_id, event_id)
    ) WITHOUT ROWID;
    CREATE INDEX outbox_run ON outbox (run_id, state);
    CREATE TABLE runs (
        run_id      INTEGER PRIMARY KEY AUTOINCREMENT,
        profile     TEXT NOT NULL,
        kind        TEXT NOT NULL,
        status      TEXT NOT NULL,
        started_at  INTEGER NOT NULL,
        finished_at INTEGER,
        n_create    INTEGER NOT NULL DEFAULT 0,
        n_update    INTEGER NOT NULL DEFAULT 0,
        n_delete    INTEGER NOT NULL DEFAULT 0,
        n_unchanged INTEGER NOT NULL DEFAULT 0,
        n_left_alone INTEGER NOT NULL DEFAULT 0,
        quarantined INTEGER NOT NULL DEFAULT 0,
        failed_ops  INTEGER NOT NULL DEFAULT 0,
        hold_reason TEXT,
        message     TEXT
    );
    CREATE INDEX runs_profile ON runs (profile, run_id);
    CREATE TABLE run_quarantine (
        run_id INTEGER NOT NULL,
        view   TEXT NOT NULL,
        row    TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX run_quarantine_run ON run_quarantine (run_id);
    CREATE TABLE op_errors (
        run_id    INTEGER NOT NULL,
        profile   TEXT NOT NULL,
        target    TEXT NOT NULL,
        person_id TEXT NOT NULL,
        event_id  TEXT NOT NULL,
        kind      TEXT NOT NULL,
        permanent INTEGER NOT NULL,
        message   TEXT NOT NULL,
        at        INTEGER NOT NULL
    );
    CREATE INDEX op_errors_run ON op_errors (run_id);
    CREATE INDEX op_errors_person ON op_errors (profile, person_id);
    "#,
    // 2: console accounts, sessions, audit log, feed tokens (see console.rs)
    r#"
    CREATE TABLE console_users (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at    INTEGER NOT NULL
    );
    CREATE TABLE console_sessions (
        id_hash    TEXT PRIMARY KEY,
        user_name  TEXT NOT NULL,
        csrf       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
    CREATE TABLE console_audit (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        at     INTEGER NOT NULL,
        user_name TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE feed_tokens (
        person_id  TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    "#,
    // 3: per-person lookup (console, `plan --person`) without scanning the profile's ledger
    r#"
    CREATE INDEX ledger_person ON ledger (profile, person_id);
    "#,
    // 4: each calendar's change marker (ctag / sync-token) after its last check
    r#"
    CREATE TABLE calendar_markers (
        profile    TEXT NOT NULL,
        target     TEXT NOT NULL,
        calendar   TEXT NOT NULL,
        marker     TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (profile, target, calendar)
    ) WITHOUT ROWID;
    "#,
];

pub struct SqliteStore {
    conn: Mutex<Connection>,
    location: String,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteStore({})", self.location)
    }
}

trait Ctx<T> {
    fn at(self, location: &str) -> Result<T>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn at(self, location: &str) -> Result<T> {
        self.map_err(|source| StoreError::Sqlite {
            location: location.to_string(),
            source,
        })
    }
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the state database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let location = path.display().to_string();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Invalid(format!(
                        "cannot create the folder {} for the state database: {e}",
                        dir.display()
                    ))
                })?;
            }
        }
        let conn = Connection::open(path).at(&location)?;
        Self::configure(&conn, &location)?;
        migrate(&conn, &location)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            location,
        })
    }

    /// An in-memory store (tests).
    pub fn in_memory() -> Result<SqliteStore> {
        let conn = Connection::open_in_memory().at("memory")?;
        migrate(&conn, "memory")?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            location: "memory".into(),
        })
    }

    fn configure(conn: &Connection, location: &str) -> Result<()> {
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .at(location)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .at(location)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .at(location)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .at(location)?;
        conn.pragma_update(None, "cache_size", -65536)
            .at(location)?;
        Ok(())
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.location)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).at(&self.location)
    }
}

/// Applies every migration newer than the database's version.
pub fn migrate(conn: &Connection, location: &str) -> Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .at(location)?;
    let current: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .at(location)?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::TooNew {
            location: location.to_string(),
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.unchecked_transaction().at(location)?;
        tx.execute_batch(sql).at(location)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [i as i64 + 1],
        )
        .at(location)?;
        tx.commit().at(location)?;
    }
    Ok(())
}

const LEDGER_COLS: &str =
    "person_id, event_id, fingerprint, starts_at, calendar, remote_id, etag, sequence, gone, updated_at";

/// One person's ledger rows. Without statistics SQLite prefers the primary
/// key's `profile` prefix, a scan of the profile's whole ledger, so the
/// person index is named.
fn ledger_for_person_sql() -> String {
    format!(
        "SELECT target, {LEDGER_COLS} FROM ledger INDEXED BY ledger_person \
         WHERE profile = ?1 AND person_id = ?2 ORDER BY starts_at"
    )
}

fn ledger_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerEntry> {
    Ok(LedgerEntry {
        person_id: r.get(0)?,
        event_id: r.get(1)?,
        fingerprint: r.get::<_, i64>(2)? as u64,
        starts_at: r.get(3)?,
        calendar: r.get(4)?,
        remote_id: r.get(5)?,
        etag: r.get(6)?,
        sequence: r.get::<_, i64>(7)? as u32,
        gone: r.get::<_, i64>(8)? != 0,
        updated_at: r.get(9)?,
    })
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let kind: String = r.get(2)?;
    let status: String = r.get(3)?;
    Ok(Run {
        run_id: r.get(0)?,
        profile: r.get(1)?,
        kind: match kind.as_str() {
            "cleardown" => RunKind::Cleardown,
            "approve" => RunKind::Approve,
            _ => RunKind::Sync,
        },
        status: RunStatus::parse(&status),
        started_at: r.get(4)?,
        finished_at: r.get(5)?,
        counts: Counts {
            create: r.get::<_, i64>(6)? as u64,
            update: r.get::<_, i64>(7)? as u64,
            delete: r.get::<_, i64>(8)? as u64,
            unchanged: r.get::<_, i64>(9)? as u64,
            left_alone: r.get::<_, i64>(10)? as u64,
        },
        quarantined: r.get::<_, i64>(11)? as u64,
        failed_ops: r.get::<_, i64>(12)? as u64,
        hold_reason: r.get(13)?,
        message: r.get(14)?,
    })
}

const RUN_COLS: &str = "run_id, profile, kind, status, started_at, finished_at, n_create, n_update, n_delete, n_unchanged, n_left_alone, quarantined, failed_ops, hold_reason, message";

fn op_error_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OpError> {
    Ok(OpError {
        run_id: r.get(0)?,
        target: r.get(1)?,
        person_id: r.get(2)?,
        event_id: r.get(3)?,
        kind: r.get(4)?,
        permanent: r.get::<_, i64>(5)? != 0,
        message: r.get(6)?,
        at: r.get(7)?,
    })
}

impl Store for SqliteStore {
    fn scan_ledger(
        &self,
        profile: &str,
        target: &str,
        f: &mut dyn FnMut(LedgerRow<'_>),
    ) -> Result<()> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT person_id, event_id, fingerprint, starts_at, gone FROM ledger \
                 WHERE profile = ?1 AND target = ?2 ORDER BY person_id, event_id",
            )?;
            let mut rows = st.query(params![profile, target])?;
            while let Some(r) = rows.next()? {
                let person_id = r.get_ref(0)?.as_str()?;
                let event_id = r.get_ref(1)?.as_str()?;
                f(LedgerRow {
                    person_id,
                    event_id,
                    fingerprint: r.get::<_, i64>(2)? as u64,
                    starts_at: r.get(3)?,
                    gone: r.get::<_, i64>(4)? != 0,
                });
            }
            Ok(())
        })
    }

    fn ledger_count(&self, profile: &str) -> Result<u64> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM ledger WHERE profile = ?1",
                [profile],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        })
    }

    fn ledger_for_person(
        &self,
        profile: &str,
        person_id: &str,
    ) -> Result<Vec<(String, LedgerEntry)>> {
        self.with(|c| {
            let mut st = c.prepare_cached(&ledger_for_person_sql())?;
            let rows = st.query_map(params![profile, person_id], |r| {
                let target: String = r.get(0)?;
                // Shift by one column: reuse the decoder on a view of the row.
                Ok((
                    target,
                    LedgerEntry {
                        person_id: r.get(1)?,
                        event_id: r.get(2)?,
                        fingerprint: r.get::<_, i64>(3)? as u64,
                        starts_at: r.get(4)?,
                        calendar: r.get(5)?,
                        remote_id: r.get(6)?,
                        etag: r.get(7)?,
                        sequence: r.get::<_, i64>(8)? as u32,
                        gone: r.get::<_, i64>(9)? != 0,
                        updated_at: r.get(10)?,
                    },
                ))
            })?;
            rows.collect()
        })
    }

    fn ledger_entries(
        &self,
        profile: &str,
        target: &str,
        keys: &[(String, String)],
    ) -> Result<Vec<Option<LedgerEntry>>> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {LEDGER_COLS} FROM ledger WHERE profile = ?1 AND target = ?2 AND person_id = ?3 AND event_id = ?4"
            ))?;
            keys.iter()
                .map(|(p, e)| {
                    st.query_row(params![profile, target, p, e], ledger_entry)
                        .optional()
                })
                .collect()
        })
    }

    fn ledger_all(&self, profile: &str, target: &str) -> Result<Vec<LedgerEntry>> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {LEDGER_COLS} FROM ledger WHERE profile = ?1 AND target = ?2 ORDER BY person_id, event_id"
            ))?;
            let rows = st.query_map(params![profile, target], ledger_entry)?;
            rows.collect()
        })
    }

    fn start_run(&self, profile: &str, kind: RunKind) -> Result<RunId> {
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (profile, kind, status, started_at) VALUES (?1, ?2, 'running', ?3)",
                params![profile, kind.as_str(), now()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    fn replace_outbox(
        &self,
        run: RunId,
        profile: &str,
        target: &str,
        ops: &mut dyn Iterator<Item = OutboxOp>,
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            // Earlier held runs whose deletes this plan replaces.
            tx.execute(
                "UPDATE runs SET status = 'superseded' WHERE status = 'held' AND profile = ?1 AND run_id <> ?2 \
                 AND run_id IN (SELECT DISTINCT run_id FROM outbox WHERE profile = ?1 AND target = ?3 AND state = 'held')",
                params![profile, run, target],
            )?;
            tx.execute(
                "DELETE FROM outbox WHERE profile = ?1 AND target = ?2",
                params![profile, target],
            )?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO outbox (profile, target, person_id, event_id, run_id, kind, state, fingerprint) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for op in ops {
                    st.execute(params![
                        profile,
                        target,
                        op.person_id,
                        op.event_id,
                        run,
                        op.kind.as_str(),
                        op.state.as_str(),
                        op.fingerprint as i64
                    ])?;
                }
            }
            tx.commit()
        })
    }

    fn outbox(
        &self,
        profile: &str,
        target: &str,
        state: OpState,
        run: Option<RunId>,
    ) -> Result<Vec<OutboxRow>> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT run_id, person_id, event_id, kind, fingerprint, attempts, last_error FROM outbox \
                 WHERE profile = ?1 AND target = ?2 AND state = ?3 AND (?4 IS NULL OR run_id = ?4) \
                 ORDER BY person_id, event_id",
            )?;
            let rows = st.query_map(params![profile, target, state.as_str(), run], |r| {
                let kind: String = r.get(3)?;
                Ok(OutboxRow {
                    run_id: r.get(0)?,
                    person_id: r.get(1)?,
                    event_id: r.get(2)?,
                    kind: OpKind::parse(&kind).unwrap_or(OpKind::Update),
                    state,
                    fingerprint: r.get::<_, i64>(4)? as u64,
                    attempts: r.get::<_, i64>(5)? as u32,
                    last_error: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    fn outbox_counts(&self, profile: &str) -> Result<(u64, u64)> {
        self.with(|c| {
            c.query_row(
                "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'held'), 0) FROM outbox WHERE profile = ?1",
                [profile],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
        })
    }

    fn ack(&self, profile: &str, target: &str, acks: &[Ack]) -> Result<()> {
        if acks.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.transaction()?;
            write_ledger(&tx, profile, target, acks, true)?;
            tx.commit()
        })
    }

    fn record_failures(&self, profile: &str, errors: &[OpError]) -> Result<()> {
        if errors.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO op_errors (run_id, profile, target, person_id, event_id, kind, permanent, message, at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?;
                let mut bump = tx.prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?5 \
                     WHERE profile = ?1 AND target = ?2 AND person_id = ?3 AND event_id = ?4",
                )?;
                for e in errors {
                    ins.execute(params![
                        e.run_id,
                        profile,
                        e.target,
                        e.person_id,
                        e.event_id,
                        e.kind,
                        e.permanent as i64,
                        e.message,
                        e.at
                    ])?;
                    bump.execute(params![profile, e.target, e.person_id, e.event_id, e.message])?;
                }
            }
            tx.commit()
        })
    }

    fn release_held(&self, run: RunId) -> Result<u64> {
        self.with(|c| {
            c.execute(
                "UPDATE outbox SET state = 'pending' WHERE run_id = ?1 AND state = 'held'",
                [run],
            )
            .map(|n| n as u64)
        })
    }

    fn drop_held(&self, run: RunId) -> Result<u64> {
        self.with(|c| {
            c.execute(
                "DELETE FROM outbox WHERE run_id = ?1 AND state = 'held'",
                [run],
            )
            .map(|n| n as u64)
        })
    }

    fn reconcile_ledger(
        &self,
        profile: &str,
        target: &str,
        changes: &[(String, String, Option<LedgerEntry>)],
    ) -> Result<()> {
        let acks: Vec<Ack> = changes
            .iter()
            .map(|(p, e, entry)| match entry {
                Some(entry) => Ack::Written(entry.clone()),
                None => Ack::Deleted {
                    person_id: p.clone(),
                    event_id: e.clone(),
                },
            })
            .collect();
        // Same writes as an acknowledgement, minus touching the outbox.
        self.with(|c| {
            let tx = c.transaction()?;
            write_ledger(&tx, profile, target, &acks, false)?;
            tx.commit()
        })
    }

    fn calendar_markers(&self, profile: &str, target: &str) -> Result<Vec<(String, String)>> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT calendar, marker FROM calendar_markers WHERE profile = ?1 AND target = ?2",
            )?;
            let rows = st.query_map(params![profile, target], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    fn set_calendar_markers(
        &self,
        profile: &str,
        target: &str,
        markers: &[(String, Option<String>)],
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut put = tx.prepare_cached(
                    "INSERT INTO calendar_markers (profile, target, calendar, marker, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (profile, target, calendar) DO UPDATE SET marker = excluded.marker, updated_at = excluded.updated_at",
                )?;
                let mut del = tx.prepare_cached(
                    "DELETE FROM calendar_markers WHERE profile = ?1 AND target = ?2 AND calendar = ?3",
                )?;
                let at = now();
                for (calendar, marker) in markers {
                    match marker {
                        Some(m) => put.execute(params![profile, target, calendar, m, at])?,
                        None => del.execute(params![profile, target, calendar])?,
                    };
                }
            }
            tx.commit()
        })
    }

    fn finish_run(&self, run: RunId, status: RunStatus, o: &RunOutcome) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET status = ?2, finished_at = ?3, n_create = ?4, n_update = ?5, n_delete = ?6, \
                 n_unchanged = ?7, n_left_alone = ?8, quarantined = ?9, failed_ops = ?10, hold_reason = ?11, message = ?12 \
                 WHERE run_id = ?1",
                params![
                    run,
                    status.as_str(),
                    now(),
                    o.counts.create as i64,
                    o.counts.update as i64,
                    o.counts.delete as i64,
                    o.counts.unchanged as i64,
                    o.counts.left_alone as i64,
                    o.quarantined as i64,
                    o.failed_ops as i64,
                    o.hold_reason,
                    o.message
                ],
            )
            .map(|_| ())
        })
    }

    fn set_run_status(&self, run: RunId, status: RunStatus) -> Result<()> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE runs SET status = ?2 WHERE run_id = ?1",
                params![run, status.as_str()],
            )
        })?;
        if n == 0 {
            return Err(StoreError::NoSuchRun(run));
        }
        Ok(())
    }

    fn run(&self, run: RunId) -> Result<Run> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {RUN_COLS} FROM runs WHERE run_id = ?1"),
                [run],
                run_row,
            )
            .optional()
        })?
        .ok_or(StoreError::NoSuchRun(run))
    }

    fn runs(&self, profile: Option<&str>, limit: u32) -> Result<Vec<Run>> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {RUN_COLS} FROM runs WHERE (?1 IS NULL OR profile = ?1) ORDER BY run_id DESC LIMIT ?2"
            ))?;
            let rows = st.query_map(params![profile, limit], run_row)?;
            rows.collect()
        })
    }

    fn record_quarantine(&self, run: RunId, rows: &[QuarantineRecord]) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO run_quarantine (run_id, view, row, reason) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for q in rows {
                    st.execute(params![run, q.view, q.row, q.reason])?;
                }
            }
            tx.commit()
        })
    }

    fn quarantine(&self, run: RunId, limit: u32) -> Result<Vec<QuarantineRecord>> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT view, row, reason FROM run_quarantine WHERE run_id = ?1 ORDER BY rowid LIMIT ?2",
            )?;
            let rows = st.query_map(params![run, limit], |r| {
                Ok(QuarantineRecord {
                    view: r.get(0)?,
                    row: r.get(1)?,
                    reason: r.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    fn op_errors(&self, run: RunId, limit: u32) -> Result<Vec<OpError>> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT run_id, target, person_id, event_id, kind, permanent, message, at FROM op_errors \
                 WHERE run_id = ?1 ORDER BY rowid LIMIT ?2",
            )?;
            let rows = st.query_map(params![run, limit], op_error_row)?;
            rows.collect()
        })
    }

    fn op_errors_for_person(
        &self,
        profile: &str,
        person_id: &str,
        limit: u32,
    ) -> Result<Vec<OpError>> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT run_id, target, person_id, event_id, kind, permanent, message, at FROM op_errors \
                 WHERE profile = ?1 AND person_id = ?2 ORDER BY rowid DESC LIMIT ?3",
            )?;
            let rows = st.query_map(params![profile, person_id, limit], op_error_row)?;
            rows.collect()
        })
    }

    fn put_user(&self, u: &ConsoleUser) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO console_users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (name) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash",
                params![u.name, u.role, u.password_hash, u.created_at],
            )
            .map(|_| ())
        })
    }

    fn user(&self, name: &str) -> Result<Option<ConsoleUser>> {
        self.with(|c| {
            c.query_row(
                "SELECT name, role, password_hash, created_at FROM console_users WHERE name = ?1",
                [name],
                user_row,
            )
            .optional()
        })
    }

    fn users(&self) -> Result<Vec<ConsoleUser>> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT name, role, password_hash, created_at FROM console_users ORDER BY name",
            )?;
            let rows = st.query_map([], user_row)?;
            rows.collect()
        })
    }

    fn put_session(&self, id_hash: &str, s: &SessionRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO console_sessions (id_hash, user_name, csrf, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id_hash, s.user, s.csrf, s.created_at, s.expires_at],
            )
            .map(|_| ())
        })
    }

    fn session(&self, id_hash: &str, now: i64) -> Result<Option<SessionRecord>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT user_name, csrf, created_at, expires_at FROM console_sessions \
                 WHERE id_hash = ?1 AND expires_at > ?2",
            )?
            .query_row(params![id_hash, now], |r| {
                Ok(SessionRecord {
                    user: r.get(0)?,
                    csrf: r.get(1)?,
                    created_at: r.get(2)?,
                    expires_at: r.get(3)?,
                })
            })
            .optional()
        })
    }

    fn delete_session(&self, id_hash: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM console_sessions WHERE id_hash = ?1", [id_hash])
                .map(|_| ())
        })
    }

    fn purge_sessions(&self, now: i64) -> Result<u64> {
        self.with(|c| {
            c.execute("DELETE FROM console_sessions WHERE expires_at <= ?1", [now])
                .map(|n| n as u64)
        })
    }

    fn record_audit(&self, e: &AuditEntry) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO console_audit (at, user_name, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![e.at, e.user, e.action, e.target, e.detail],
            )
            .map(|_| ())
        })
    }

    fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT at, user_name, action, target, detail FROM console_audit ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = st.query_map([limit], |r| {
                Ok(AuditEntry {
                    at: r.get(0)?,
                    user: r.get(1)?,
                    action: r.get(2)?,
                    target: r.get(3)?,
                    detail: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    fn set_feed_token(&self, person_id: &str, token_hash: &str, now: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO feed_tokens (person_id, token_hash, created_at) VALUES (?1, ?2, ?3)",
                params![person_id, token_hash, now],
            )
            .map(|_| ())
        })
    }

    fn feed_token_of(&self, person_id: &str) -> Result<Option<FeedTokenRecord>> {
        self.with(|c| {
            c.query_row(
                "SELECT person_id, token_hash, created_at FROM feed_tokens WHERE person_id = ?1",
                [person_id],
                |r| {
                    Ok(FeedTokenRecord {
                        person_id: r.get(0)?,
                        token_hash: r.get(1)?,
                        created_at: r.get(2)?,
                    })
                },
            )
            .optional()
        })
    }

    fn feed_token_person(&self, token_hash: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.prepare_cached("SELECT person_id FROM feed_tokens WHERE token_hash = ?1")?
                .query_row([token_hash], |r| r.get(0))
                .optional()
        })
    }

    fn revoke_feed_token(&self, person_id: &str) -> Result<bool> {
        self.with(|c| {
            c.execute("DELETE FROM feed_tokens WHERE person_id = ?1", [person_id])
                .map(|n| n > 0)
        })
    }
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConsoleUser> {
    Ok(ConsoleUser {
        name: r.get(0)?,
        role: r.get(1)?,
        password_hash: r.get(2)?,
        created_at: r.get(3)?,
    })
}

/// Applies acknowledgements to the ledger inside `tx`; with `clear_outbox`,
/// also removes their outbox rows (constraint 2 of `outbox.rs`).
fn write_ledger(
    tx: &rusqlite::Transaction<'_>,
    profile: &str,
    target: &str,
    acks: &[Ack],
    clear_outbox: bool,
) -> rusqlite::Result<()> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO ledger (profile, target, person_id, event_id, fingerprint, starts_at, calendar, remote_id, etag, sequence, gone, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
         ON CONFLICT (profile, target, person_id, event_id) DO UPDATE SET \
         fingerprint = excluded.fingerprint, starts_at = excluded.starts_at, calendar = excluded.calendar, \
         remote_id = excluded.remote_id, etag = excluded.etag, sequence = excluded.sequence, \
         gone = excluded.gone, updated_at = excluded.updated_at",
    )?;
    let mut del = tx.prepare_cached(
        "DELETE FROM ledger WHERE profile = ?1 AND target = ?2 AND person_id = ?3 AND event_id = ?4",
    )?;
    let mut done = tx.prepare_cached(
        "DELETE FROM outbox WHERE profile = ?1 AND target = ?2 AND person_id = ?3 AND event_id = ?4",
    )?;
    for a in acks {
        let (person_id, event_id) = match a {
            Ack::Written(e) => {
                upsert.execute(params![
                    profile,
                    target,
                    e.person_id,
                    e.event_id,
                    e.fingerprint as i64,
                    e.starts_at,
                    e.calendar,
                    e.remote_id,
                    e.etag,
                    e.sequence as i64,
                    e.gone as i64,
                    e.updated_at
                ])?;
                (&e.person_id, &e.event_id)
            }
            Ack::Deleted {
                person_id,
                event_id,
            } => {
                del.execute(params![profile, target, person_id, event_id])?;
                (person_id, event_id)
            }
        };
        if clear_outbox {
            done.execute(params![profile, target, person_id, event_id])?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
