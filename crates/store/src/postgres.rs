//! The shared store: PostgreSQL, for several edusync processes at once.
//!
//! Same tables and behaviour as [`crate::sqlite`], with three differences:
//! the ledger's id columns are `COLLATE "C"` so the primary key index gives
//! plan order (bytes) with no sort; acknowledgements and plans are written
//! in bulk (`unnest` of arrays, one statement per batch); and several
//! workers coordinate through it (see [`crate::outbox`]): a session
//! advisory lock per profile for the cycle, a second one per profile taken
//! exclusively while planning and shared while claiming, and leases on
//! outbox rows owned by the claiming connection's backend pid, so a worker
//! that dies loses its claims as soon as PostgreSQL notices its connection
//! closed (or, at the latest, when the lease runs out).
//!
//! One connection per process, behind a mutex: a statement from another
//! thread never lands inside someone else's transaction, and the advisory
//! locks (session-scoped) belong to the process.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use edusync_core::plan::{Counts, LedgerRow};
use edusync_db::{block_on, pg};
use futures_util::StreamExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::console::{AuditEntry, ConsoleUser, FeedTokenRecord, SessionRecord};
use crate::outbox::{Ack, OpKind, OpState, OutboxOp, OutboxRow};
use crate::{
    now, LedgerEntry, OpError, QuarantineRecord, Result, Run, RunId, RunKind, RunOutcome,
    RunStatus, Store, StoreError,
};

/// Versioned schema migrations; each runs once, in order, in a transaction
/// holding an advisory lock (two processes starting together migrate once).
/// Never edit a released migration: add a new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: ledger, outbox, runs (as SQLite's first schema)
    r#"
    CREATE TABLE ledger (
        profile     TEXT NOT NULL,
        target      TEXT NOT NULL,
        person_id   TEXT COLLATE "C" NOT NULL,
        event_id    TEXT COLLATE "C" NOT NULL,
        fingerprint BIGINT NOT NULL,
        starts_at   BIGINT NOT NULL,
        calendar    TEXT NOT NULL,
        remote_id   TEXT,
        etag        TEXT,
        sequence    INTEGER NOT NULL DEFAULT 0,
        gone        BOOLEAN NOT NULL DEFAULT FALSE,
        updated_at  BIGINT NOT NULL,
        PRIMARY KEY (profile, target, person_id, event_id)
    );
    CREATE INDEX ledger_person ON ledger (profile, person_id);
    CREATE TABLE outbox (
        profile     TEXT NOT NULL,
        target      TEXT NOT NULL,
        person_id   TEXT COLLATE "C" NOT NULL,
        event_id    TEXT COLLATE "C" NOT NULL,
        run_id      BIGINT NOT NULL,
        kind        TEXT NOT NULL,
        state       TEXT NOT NULL,
        fingerprint BIGINT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        last_error  TEXT,
        PRIMARY KEY (profile, target, person_id, event_id)
    );
    CREATE INDEX outbox_run ON outbox (run_id, state);
    CREATE TABLE runs (
        run_id      BIGSERIAL PRIMARY KEY,
        profile     TEXT NOT NULL,
        kind        TEXT NOT NULL,
        status      TEXT NOT NULL,
        started_at  BIGINT NOT NULL,
        finished_at BIGINT,
        n_create    BIGINT NOT NULL DEFAULT 0,
        n_update    BIGINT NOT NULL DEFAULT 0,
        n_delete    BIGINT NOT NULL DEFAULT 0,
        n_unchanged BIGINT NOT NULL DEFAULT 0,
        n_left_alone BIGINT NOT NULL DEFAULT 0,
        quarantined BIGINT NOT NULL DEFAULT 0,
        failed_ops  BIGINT NOT NULL DEFAULT 0,
        hold_reason TEXT,
        message     TEXT
    );
    CREATE INDEX runs_profile ON runs (profile, run_id);
    CREATE TABLE run_quarantine (
        id     BIGSERIAL PRIMARY KEY,
        run_id BIGINT NOT NULL,
        view   TEXT NOT NULL,
        row    TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX run_quarantine_run ON run_quarantine (run_id);
    CREATE TABLE op_errors (
        id        BIGSERIAL PRIMARY KEY,
        run_id    BIGINT NOT NULL,
        profile   TEXT NOT NULL,
        target    TEXT NOT NULL,
        person_id TEXT NOT NULL,
        event_id  TEXT NOT NULL,
        kind      TEXT NOT NULL,
        permanent BOOLEAN NOT NULL,
        message   TEXT NOT NULL,
        at        BIGINT NOT NULL
    );
    CREATE INDEX op_errors_run ON op_errors (run_id);
    CREATE INDEX op_errors_person ON op_errors (profile, person_id);
    "#,
    // 2: leases on outbox rows, so several workers split delivery (outbox.rs)
    r#"
    ALTER TABLE outbox ADD COLUMN lease_owner INTEGER;
    ALTER TABLE outbox ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
    CREATE INDEX outbox_claim ON outbox (profile, target, state, person_id, event_id) WHERE state = 'pending';
    "#,
    // 3: console accounts, sessions, audit log, feed tokens (see console.rs)
    r#"
    CREATE TABLE console_users (
        name          TEXT COLLATE "C" PRIMARY KEY,
        role          TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at    BIGINT NOT NULL
    );
    CREATE TABLE console_sessions (
        id_hash    TEXT PRIMARY KEY,
        user_name  TEXT NOT NULL,
        csrf       TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
    CREATE TABLE console_audit (
        id        BIGSERIAL PRIMARY KEY,
        at        BIGINT NOT NULL,
        user_name TEXT NOT NULL,
        action    TEXT NOT NULL,
        target    TEXT NOT NULL,
        detail    TEXT NOT NULL
    );
    CREATE TABLE feed_tokens (
        person_id  TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL
    );
    "#,
    // 4: each calendar's change marker (ctag / sync-token) after its last check
    r#"
    CREATE TABLE calendar_markers (
        profile    TEXT NOT NULL,
        target     TEXT NOT NULL,
        calendar   TEXT NOT NULL,
        marker     TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (profile, target, calendar)
    );
    "#,
];

/// Outbox rows written at once from which its statistics are refreshed.
const ANALYZE_AFTER: usize = 1_000;

/// Advisory lock keys: (hashtext(profile), CYCLE | PLAN).
const CYCLE: i32 = 1;
const PLAN: i32 = 2;
/// Advisory lock key (hashtext(profile/target), CLAIM): one claim at a time per target.
const CLAIM: i32 = 3;

/// SQL: outbox row `o` may be claimed at time `$3` (its lease ran out, or its
/// owner is another worker whose connection is gone).
fn claimable(o: &str) -> String {
    format!(
        "{o}.lease_until <= $3 OR ({o}.lease_owner IS NOT NULL AND {o}.lease_owner <> pg_backend_pid() \
         AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = {o}.lease_owner))"
    )
}

/// Serialises migrations across processes.
const MIGRATION_LOCK: i64 = 0x0065_6475_7379_6e63;

pub struct PgStore {
    client: Mutex<pg::Client>,
    location: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.location)
    }
}

fn err(location: &str, e: tokio_postgres::Error) -> StoreError {
    StoreError::Postgres {
        location: location.to_string(),
        detail: pg::message(&e),
    }
}

type PgResult<T> = std::result::Result<T, tokio_postgres::Error>;

impl PgStore {
    /// Connects to, and migrates, the state database at `url`.
    pub fn open(url: &str) -> Result<PgStore> {
        Self::open_at(url, MIGRATIONS.len(), None)
    }

    /// As [`PgStore::open`], with `password` (from `state_password_env`)
    /// replacing the URL's.
    pub fn open_with_password(url: &str, password: Option<&str>) -> Result<PgStore> {
        Self::open_at(url, MIGRATIONS.len(), password)
    }

    /// Opens with only the first `version` migrations applied (upgrade tests).
    pub fn open_at(url: &str, version: usize, password: Option<&str>) -> Result<PgStore> {
        let location = pg::describe(url);
        let client =
            pg::connect(url, password, "edusync state").map_err(|e| StoreError::Postgres {
                location: location.clone(),
                detail: e.to_string(),
            })?;
        migrate(&client, &location, version)?;
        Ok(PgStore {
            client: Mutex::new(client),
            location,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, pg::Client> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn at<T>(&self, r: PgResult<T>) -> Result<T> {
        r.map_err(|e| err(&self.location, e))
    }

    /// Runs one statement.
    fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let c = self.lock();
        self.at(block_on(c.execute(sql, params)))
    }

    fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let c = self.lock();
        self.at(block_on(c.query(sql, params)))
    }

    fn flag(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<bool> {
        let c = self.lock();
        let row = self.at(block_on(c.query_one(sql, params)))?;
        Ok(row.get::<_, Option<bool>>(0).unwrap_or(false))
    }

    /// Outbox rows claimed by other live workers for `profile`.
    fn live_foreign_claims(&self, profile: &str) -> Result<i64> {
        let c = self.lock();
        let row = self.at(block_on(c.query_one(
            "SELECT count(*) FROM outbox o WHERE o.profile = $1 AND o.lease_owner IS NOT NULL \
             AND o.lease_owner <> pg_backend_pid() AND o.lease_until > $2 \
             AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = o.lease_owner)",
            &[&profile, &now()],
        )))?;
        Ok(row.get(0))
    }
}

/// Applies every migration up to `version` newer than the database's.
fn migrate(c: &pg::Client, location: &str, version: usize) -> Result<()> {
    block_on(async {
        c.batch_execute("BEGIN").await?;
        c.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        c.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .await?;
        let current: i32 = c
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await?
            .get(0);
        let known = MIGRATIONS.len() as i32;
        if current > known {
            c.batch_execute("ROLLBACK").await?;
            return Ok(Err(StoreError::TooNew {
                location: location.to_string(),
                found: current as i64,
                known: known as i64,
            }));
        }
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .take(version)
            .skip(current as usize)
        {
            c.batch_execute(sql).await?;
            c.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&(i as i32 + 1)],
            )
            .await?;
        }
        c.batch_execute("COMMIT").await?;
        Ok(Ok(()))
    })
    .map_err(|e| err(location, e))?
}

const LEDGER_COLS: &str =
    "person_id, event_id, fingerprint, starts_at, calendar, remote_id, etag, sequence, gone, updated_at";

fn ledger_entry(r: &Row, o: usize) -> LedgerEntry {
    LedgerEntry {
        person_id: r.get(o),
        event_id: r.get(o + 1),
        fingerprint: r.get::<_, i64>(o + 2) as u64,
        starts_at: r.get(o + 3),
        calendar: r.get(o + 4),
        remote_id: r.get(o + 5),
        etag: r.get(o + 6),
        sequence: r.get::<_, i32>(o + 7) as u32,
        gone: r.get(o + 8),
        updated_at: r.get(o + 9),
    }
}

const RUN_COLS: &str = "run_id, profile, kind, status, started_at, finished_at, n_create, n_update, n_delete, n_unchanged, n_left_alone, quarantined, failed_ops, hold_reason, message";

fn run_row(r: &Row) -> Run {
    let kind: String = r.get(2);
    let status: String = r.get(3);
    Run {
        run_id: r.get(0),
        profile: r.get(1),
        kind: match kind.as_str() {
            "cleardown" => RunKind::Cleardown,
            "approve" => RunKind::Approve,
            _ => RunKind::Sync,
        },
        status: RunStatus::parse(&status),
        started_at: r.get(4),
        finished_at: r.get(5),
        counts: Counts {
            create: r.get::<_, i64>(6) as u64,
            update: r.get::<_, i64>(7) as u64,
            delete: r.get::<_, i64>(8) as u64,
            unchanged: r.get::<_, i64>(9) as u64,
            left_alone: r.get::<_, i64>(10) as u64,
        },
        quarantined: r.get::<_, i64>(11) as u64,
        failed_ops: r.get::<_, i64>(12) as u64,
        hold_reason: r.get(13),
        message: r.get(14),
    }
}

fn op_error_row(r: &Row) -> OpError {
    OpError {
        run_id: r.get(0),
        target: r.get(1),
        person_id: r.get(2),
        event_id: r.get(3),
        kind: r.get(4),
        permanent: r.get(5),
        message: r.get(6),
        at: r.get(7),
    }
}

fn outbox_row(r: &Row, state: OpState) -> OutboxRow {
    let kind: String = r.get(3);
    OutboxRow {
        run_id: r.get(0),
        person_id: r.get(1),
        event_id: r.get(2),
        kind: OpKind::parse(&kind).unwrap_or(OpKind::Update),
        state,
        fingerprint: r.get::<_, i64>(4) as u64,
        attempts: r.get::<_, i32>(5) as u32,
        last_error: r.get(6),
    }
}

/// Ledger rows as column arrays, for one `unnest` upsert.
#[derive(Default)]
struct LedgerColumns {
    person: Vec<String>,
    event: Vec<String>,
    fingerprint: Vec<i64>,
    starts_at: Vec<i64>,
    calendar: Vec<String>,
    remote_id: Vec<Option<String>>,
    etag: Vec<Option<String>>,
    sequence: Vec<i32>,
    gone: Vec<bool>,
    updated_at: Vec<i64>,
}

impl LedgerColumns {
    fn push(&mut self, e: &LedgerEntry) {
        self.person.push(e.person_id.clone());
        self.event.push(e.event_id.clone());
        self.fingerprint.push(e.fingerprint as i64);
        self.starts_at.push(e.starts_at);
        self.calendar.push(e.calendar.clone());
        self.remote_id.push(e.remote_id.clone());
        self.etag.push(e.etag.clone());
        self.sequence.push(e.sequence as i32);
        self.gone.push(e.gone);
        self.updated_at.push(e.updated_at);
    }
}

const UPSERT_LEDGER: &str = "INSERT INTO ledger (profile, target, person_id, event_id, fingerprint, starts_at, calendar, remote_id, etag, sequence, gone, updated_at) \
     SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::int8[], $6::int8[], $7::text[], $8::text[], $9::text[], $10::int4[], $11::bool[], $12::int8[]) \
     ON CONFLICT (profile, target, person_id, event_id) DO UPDATE SET \
     fingerprint = excluded.fingerprint, starts_at = excluded.starts_at, calendar = excluded.calendar, \
     remote_id = excluded.remote_id, etag = excluded.etag, sequence = excluded.sequence, \
     gone = excluded.gone, updated_at = excluded.updated_at";

/// Writes acknowledgements to the ledger, and removes their outbox rows when `outbox`.
async fn write_acks(
    c: &tokio_postgres::Transaction<'_>,
    profile: &str,
    target: &str,
    acks: &[Ack],
    outbox: bool,
) -> PgResult<()> {
    let mut up = LedgerColumns::default();
    let (mut del_p, mut del_e) = (Vec::new(), Vec::new());
    let (mut done_p, mut done_e) = (Vec::new(), Vec::new());
    for a in acks {
        match a {
            Ack::Written(e) => {
                up.push(e);
                done_p.push(e.person_id.clone());
                done_e.push(e.event_id.clone());
            }
            Ack::Deleted {
                person_id,
                event_id,
            } => {
                del_p.push(person_id.clone());
                del_e.push(event_id.clone());
                done_p.push(person_id.clone());
                done_e.push(event_id.clone());
            }
        }
    }
    if !up.person.is_empty() {
        c.execute(
            UPSERT_LEDGER,
            &[
                &profile,
                &target,
                &up.person,
                &up.event,
                &up.fingerprint,
                &up.starts_at,
                &up.calendar,
                &up.remote_id,
                &up.etag,
                &up.sequence,
                &up.gone,
                &up.updated_at,
            ],
        )
        .await?;
    }
    if !del_p.is_empty() {
        c.execute(
            "DELETE FROM ledger l USING unnest($3::text[], $4::text[]) AS k(p, e) \
             WHERE l.profile = $1 AND l.target = $2 AND l.person_id = k.p AND l.event_id = k.e",
            &[&profile, &target, &del_p, &del_e],
        )
        .await?;
    }
    if outbox && !done_p.is_empty() {
        c.execute(
            "DELETE FROM outbox o USING unnest($3::text[], $4::text[]) AS k(p, e) \
             WHERE o.profile = $1 AND o.target = $2 AND o.person_id = k.p AND o.event_id = k.e",
            &[&profile, &target, &done_p, &done_e],
        )
        .await?;
    }
    Ok(())
}

impl Store for PgStore {
    fn scan_ledger(
        &self,
        profile: &str,
        target: &str,
        f: &mut dyn FnMut(LedgerRow<'_>),
    ) -> Result<()> {
        let c = self.lock();
        let r: PgResult<()> = block_on(async {
            let params: [&(dyn ToSql + Sync); 2] = [&profile, &target];
            let rows = c
                .query_raw(
                    "SELECT person_id, event_id, fingerprint, starts_at, gone FROM ledger \
                     WHERE profile = $1 AND target = $2 ORDER BY person_id, event_id",
                    params,
                )
                .await?;
            let mut rows = std::pin::pin!(rows);
            while let Some(r) = rows.next().await {
                let r = r?;
                f(LedgerRow {
                    person_id: r.try_get(0)?,
                    event_id: r.try_get(1)?,
                    fingerprint: r.try_get::<_, i64>(2)? as u64,
                    starts_at: r.try_get(3)?,
                    gone: r.try_get(4)?,
                });
            }
            Ok(())
        });
        self.at(r)
    }

    fn ledger_count(&self, profile: &str) -> Result<u64> {
        let rows = self.rows(
            "SELECT count(*) FROM ledger WHERE profile = $1",
            &[&profile],
        )?;
        Ok(rows[0].get::<_, i64>(0) as u64)
    }

    fn ledger_for_person(
        &self,
        profile: &str,
        person_id: &str,
    ) -> Result<Vec<(String, LedgerEntry)>> {
        let rows = self.rows(
            &format!("SELECT target, {LEDGER_COLS} FROM ledger WHERE profile = $1 AND person_id = $2 ORDER BY starts_at"),
            &[&profile, &person_id],
        )?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), ledger_entry(r, 1)))
            .collect())
    }

    fn ledger_entries(
        &self,
        profile: &str,
        target: &str,
        keys: &[(String, String)],
    ) -> Result<Vec<Option<LedgerEntry>>> {
        let ps: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        let es: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
        let rows = self.rows(
            &format!(
                "SELECT k.i, l.{} FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS k(p, e, i) \
                 JOIN ledger l ON l.profile = $1 AND l.target = $2 AND l.person_id = k.p AND l.event_id = k.e",
                LEDGER_COLS.replace(", ", ", l.")
            ),
            &[&profile, &target, &ps, &es],
        )?;
        let mut out = vec![None; keys.len()];
        for r in &rows {
            let i: i64 = r.get(0);
            out[i as usize - 1] = Some(ledger_entry(r, 1));
        }
        Ok(out)
    }

    fn ledger_all(&self, profile: &str, target: &str) -> Result<Vec<LedgerEntry>> {
        let rows = self.rows(
            &format!("SELECT {LEDGER_COLS} FROM ledger WHERE profile = $1 AND target = $2 ORDER BY person_id, event_id"),
            &[&profile, &target],
        )?;
        Ok(rows.iter().map(|r| ledger_entry(r, 0)).collect())
    }

    fn start_run(&self, profile: &str, kind: RunKind) -> Result<RunId> {
        let rows = self.rows(
            "INSERT INTO runs (profile, kind, status, started_at) VALUES ($1, $2, 'running', $3) RETURNING run_id",
            &[&profile, &kind.as_str(), &now()],
        )?;
        Ok(rows[0].get(0))
    }

    fn replace_outbox(
        &self,
        run: RunId,
        profile: &str,
        target: &str,
        ops: &mut dyn Iterator<Item = OutboxOp>,
    ) -> Result<()> {
        let mut c = self.lock();
        let r: PgResult<()> = block_on(async {
            let tx = c.transaction().await?;
            tx.execute(
                "UPDATE runs SET status = 'superseded' WHERE status = 'held' AND profile = $1 AND run_id <> $2 \
                 AND run_id IN (SELECT DISTINCT run_id FROM outbox WHERE profile = $1 AND target = $3 AND state = 'held')",
                &[&profile, &run, &target],
            )
            .await?;
            tx.execute(
                "DELETE FROM outbox WHERE profile = $1 AND target = $2",
                &[&profile, &target],
            )
            .await?;
            let ins = "INSERT INTO outbox (profile, target, person_id, event_id, run_id, kind, state, fingerprint) \
                       SELECT $1, $2, p, e, $3, k, s, f FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::int8[]) AS t(p, e, k, s, f)";
            let mut written = 0;
            loop {
                let (mut p, mut e, mut k, mut s, mut f) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for op in (&mut *ops).take(20_000) {
                    p.push(op.person_id);
                    e.push(op.event_id);
                    k.push(op.kind.as_str());
                    s.push(op.state.as_str());
                    f.push(op.fingerprint as i64);
                }
                if p.is_empty() {
                    break;
                }
                written += p.len();
                tx.execute(ins, &[&profile, &target, &run, &p, &e, &k, &s, &f])
                    .await?;
            }
            tx.commit().await?;
            // The outbox was just rewritten and is claimed and acknowledged
            // at once, long before autovacuum would look: without fresh
            // statistics the planner takes it for nearly empty and picks
            // plans that scan it per claim and per acknowledgement.
            if written >= ANALYZE_AFTER {
                c.batch_execute("ANALYZE outbox").await?;
            }
            Ok(())
        });
        self.at(r)
    }

    fn outbox(
        &self,
        profile: &str,
        target: &str,
        state: OpState,
        run: Option<RunId>,
    ) -> Result<Vec<OutboxRow>> {
        let rows = self.rows(
            "SELECT run_id, person_id, event_id, kind, fingerprint, attempts, last_error FROM outbox \
             WHERE profile = $1 AND target = $2 AND state = $3 AND ($4::int8 IS NULL OR run_id = $4) \
             ORDER BY person_id, event_id",
            &[&profile, &target, &state.as_str(), &run],
        )?;
        Ok(rows.iter().map(|r| outbox_row(r, state)).collect())
    }

    fn outbox_counts(&self, profile: &str) -> Result<(u64, u64)> {
        let rows = self.rows(
            "SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'held') FROM outbox WHERE profile = $1",
            &[&profile],
        )?;
        Ok((
            rows[0].get::<_, i64>(0) as u64,
            rows[0].get::<_, i64>(1) as u64,
        ))
    }

    fn ack(&self, profile: &str, target: &str, acks: &[Ack]) -> Result<()> {
        if acks.is_empty() {
            return Ok(());
        }
        let mut c = self.lock();
        let r: PgResult<()> = block_on(async {
            let tx = c.transaction().await?;
            write_acks(&tx, profile, target, acks, true).await?;
            tx.commit().await
        });
        self.at(r)
    }

    fn record_failures(&self, profile: &str, errors: &[OpError]) -> Result<()> {
        if errors.is_empty() {
            return Ok(());
        }
        let mut c = self.lock();
        let r: PgResult<()> = block_on(async {
            let tx = c.transaction().await?;
            for e in errors {
                tx.execute(
                    "INSERT INTO op_errors (run_id, profile, target, person_id, event_id, kind, permanent, message, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[&e.run_id, &profile, &e.target, &e.person_id, &e.event_id, &e.kind, &e.permanent, &e.message, &e.at],
                )
                .await?;
                tx.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $5 \
                     WHERE profile = $1 AND target = $2 AND person_id = $3 AND event_id = $4",
                    &[&profile, &e.target, &e.person_id, &e.event_id, &e.message],
                )
                .await?;
            }
            tx.commit().await
        });
        self.at(r)
    }

    fn release_held(&self, run: RunId) -> Result<u64> {
        self.exec(
            "UPDATE outbox SET state = 'pending' WHERE run_id = $1 AND state = 'held'",
            &[&run],
        )
    }

    fn drop_held(&self, run: RunId) -> Result<u64> {
        self.exec(
            "DELETE FROM outbox WHERE run_id = $1 AND state = 'held'",
            &[&run],
        )
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
        let mut c = self.lock();
        let r: PgResult<()> = block_on(async {
            let tx = c.transaction().await?;
            write_acks(&tx, profile, target, &acks, false).await?;
            tx.commit().await
        });
        self.at(r)
    }

    fn calendar_markers(&self, profile: &str, target: &str) -> Result<Vec<(String, String)>> {
        let rows = self.rows(
            "SELECT calendar, marker FROM calendar_markers WHERE profile = $1 AND target = $2",
            &[&profile, &target],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn set_calendar_markers(
        &self,
        profile: &str,
        target: &str,
        markers: &[(String, Option<String>)],
    ) -> Result<()> {
        let (put, gone): (Vec<_>, Vec<_>) = markers.iter().partition(|(_, m)| m.is_some());
        let put_cal: Vec<&str> = put.iter().map(|(c, _)| c.as_str()).collect();
        let put_marker: Vec<&str> = put.iter().filter_map(|(_, m)| m.as_deref()).collect();
        let gone: Vec<&str> = gone.iter().map(|(c, _)| c.as_str()).collect();
        let mut c = self.lock();
        let r: PgResult<()> = block_on(async {
            let tx = c.transaction().await?;
            tx.execute(
                "DELETE FROM calendar_markers WHERE profile = $1 AND target = $2 AND calendar = ANY($3)",
                &[&profile, &target, &gone],
            )
            .await?;
            tx.execute(
                "INSERT INTO calendar_markers (profile, target, calendar, marker, updated_at) \
                 SELECT $1, $2, c, m, $5 FROM unnest($3::text[], $4::text[]) AS t(c, m) \
                 ON CONFLICT (profile, target, calendar) DO UPDATE SET marker = excluded.marker, updated_at = excluded.updated_at",
                &[&profile, &target, &put_cal, &put_marker, &now()],
            )
            .await?;
            tx.commit().await
        });
        self.at(r)
    }

    fn finish_run(&self, run: RunId, status: RunStatus, o: &RunOutcome) -> Result<()> {
        self.exec(
            "UPDATE runs SET status = $2, finished_at = $3, n_create = $4, n_update = $5, n_delete = $6, \
             n_unchanged = $7, n_left_alone = $8, quarantined = $9, failed_ops = $10, hold_reason = $11, message = $12 \
             WHERE run_id = $1",
            &[
                &run,
                &status.as_str(),
                &now(),
                &(o.counts.create as i64),
                &(o.counts.update as i64),
                &(o.counts.delete as i64),
                &(o.counts.unchanged as i64),
                &(o.counts.left_alone as i64),
                &(o.quarantined as i64),
                &(o.failed_ops as i64),
                &o.hold_reason,
                &o.message,
            ],
        )
        .map(|_| ())
    }

    fn set_run_status(&self, run: RunId, status: RunStatus) -> Result<()> {
        let n = self.exec(
            "UPDATE runs SET status = $2 WHERE run_id = $1",
            &[&run, &status.as_str()],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchRun(run));
        }
        Ok(())
    }

    fn run(&self, run: RunId) -> Result<Run> {
        let rows = self.rows(
            &format!("SELECT {RUN_COLS} FROM runs WHERE run_id = $1"),
            &[&run],
        )?;
        rows.first().map(run_row).ok_or(StoreError::NoSuchRun(run))
    }

    fn runs(&self, profile: Option<&str>, limit: u32) -> Result<Vec<Run>> {
        let rows = self.rows(
            &format!("SELECT {RUN_COLS} FROM runs WHERE ($1::text IS NULL OR profile = $1) ORDER BY run_id DESC LIMIT $2"),
            &[&profile, &(limit as i64)],
        )?;
        Ok(rows.iter().map(run_row).collect())
    }

    fn record_quarantine(&self, run: RunId, rows: &[QuarantineRecord]) -> Result<()> {
        let v: Vec<&str> = rows.iter().map(|q| q.view.as_str()).collect();
        let r: Vec<&str> = rows.iter().map(|q| q.row.as_str()).collect();
        let why: Vec<&str> = rows.iter().map(|q| q.reason.as_str()).collect();
        self.exec(
            "INSERT INTO run_quarantine (run_id, view, row, reason) SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[])",
            &[&run, &v, &r, &why],
        )
        .map(|_| ())
    }

    fn quarantine(&self, run: RunId, limit: u32) -> Result<Vec<QuarantineRecord>> {
        let rows = self.rows(
            "SELECT view, row, reason FROM run_quarantine WHERE run_id = $1 ORDER BY id LIMIT $2",
            &[&run, &(limit as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|r| QuarantineRecord {
                view: r.get(0),
                row: r.get(1),
                reason: r.get(2),
            })
            .collect())
    }

    fn op_errors(&self, run: RunId, limit: u32) -> Result<Vec<OpError>> {
        let rows = self.rows(
            "SELECT run_id, target, person_id, event_id, kind, permanent, message, at FROM op_errors \
             WHERE run_id = $1 ORDER BY id LIMIT $2",
            &[&run, &(limit as i64)],
        )?;
        Ok(rows.iter().map(op_error_row).collect())
    }

    fn op_errors_for_person(
        &self,
        profile: &str,
        person_id: &str,
        limit: u32,
    ) -> Result<Vec<OpError>> {
        let rows = self.rows(
            "SELECT run_id, target, person_id, event_id, kind, permanent, message, at FROM op_errors \
             WHERE profile = $1 AND person_id = $2 ORDER BY id DESC LIMIT $3",
            &[&profile, &person_id, &(limit as i64)],
        )?;
        Ok(rows.iter().map(op_error_row).collect())
    }

    fn shared(&self) -> bool {
        true
    }

    fn try_lock_profile(&self, profile: &str) -> Result<bool> {
        self.flag(
            "SELECT pg_try_advisory_lock(hashtext($1), $2)",
            &[&profile, &CYCLE],
        )
    }

    fn unlock_profile(&self, profile: &str) -> Result<()> {
        self.flag(
            "SELECT pg_advisory_unlock(hashtext($1), $2)",
            &[&profile, &CYCLE],
        )
        .map(|_| ())
    }

    fn begin_planning(&self, profile: &str, wait: Duration) -> Result<()> {
        self.flag(
            "SELECT pg_advisory_lock(hashtext($1), $2) IS NULL",
            &[&profile, &PLAN],
        )?;
        // Claims made before the lock was ours finish (or their workers die) first.
        let deadline = Instant::now() + wait;
        while self.live_foreign_claims(profile)? > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn end_planning(&self, profile: &str) -> Result<()> {
        self.flag(
            "SELECT pg_advisory_unlock(hashtext($1), $2)",
            &[&profile, &PLAN],
        )
        .map(|_| ())
    }

    fn claim(
        &self,
        profile: &str,
        target: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxRow>> {
        let mut c = self.lock();
        let t = now();
        let until = t + lease.as_secs().max(1) as i64;
        let r: PgResult<Vec<Row>> = block_on(async {
            let tx = c.transaction().await?;
            let free: bool = tx
                .query_one(
                    "SELECT pg_try_advisory_xact_lock_shared(hashtext($1), $2)",
                    &[&profile, &PLAN],
                )
                .await?
                .get(0);
            if !free {
                // Someone is planning this profile: its new outbox is not written yet.
                return Ok(Vec::new());
            }
            // Claims of one target are taken one at a time, so two workers
            // never split a person between them (see below).
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2), $3)",
                &[&profile, &target, &CLAIM],
            )
            .await?;
            // Whole people only: none whose ops another live worker holds,
            // and the last person's remaining ops join the batch. A calendar
            // (mailbox) is then written by one worker at a time, so a
            // target's per-calendar limits (concurrency, Retry-After) hold
            // across workers, not only within one process.
            //
            // The live workers and the people they hold are gathered once
            // (`live`, `busy`), not per candidate row: a per-row check is
            // quadratic in the outbox while the planner's statistics still
            // see the table as it was before the plan was written, which
            // made each claim of a 15,000-op outbox take seconds. For the
            // same reason the rows are updated by their (locked) ctid, a
            // TID scan, not by a join the planner may make a nested loop.
            let mut rows = tx
                .query(
                    "WITH live AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()), \
                     busy AS MATERIALIZED (SELECT DISTINCT b.person_id FROM outbox b \
                       WHERE b.profile = $1 AND b.target = $2 AND b.state = 'pending' \
                       AND b.lease_owner IN (SELECT pid FROM live) AND b.lease_until > $3), \
                     c AS (SELECT o.ctid FROM outbox o \
                       WHERE o.profile = $1 AND o.target = $2 AND o.state = 'pending' \
                       AND (o.lease_until <= $3 OR (o.lease_owner IS NOT NULL AND o.lease_owner <> pg_backend_pid() \
                            AND o.lease_owner NOT IN (SELECT pid FROM live))) \
                       AND o.person_id NOT IN (SELECT person_id FROM busy) \
                       ORDER BY o.person_id, o.event_id LIMIT $4 FOR UPDATE OF o SKIP LOCKED) \
                     UPDATE outbox o SET lease_owner = pg_backend_pid(), lease_until = $5 \
                     WHERE o.ctid = ANY(ARRAY(SELECT ctid FROM c)) AND o.profile = $1 AND o.target = $2 \
                     RETURNING o.run_id, o.person_id, o.event_id, o.kind, o.fingerprint, o.attempts, o.last_error",
                    &[&profile, &target, &t, &(limit as i64), &until],
                )
                .await?;
            let last = rows.iter().map(|r| r.get::<_, String>(1)).max();
            if let (Some(last), true) = (last, rows.len() as u32 >= limit) {
                let rest = tx
                    .query(
                        &"UPDATE outbox o SET lease_owner = pg_backend_pid(), lease_until = $5 \
                         WHERE o.profile = $1 AND o.target = $2 AND o.person_id = $4 AND o.state = 'pending' AND (CLAIMABLE) \
                         RETURNING o.run_id, o.person_id, o.event_id, o.kind, o.fingerprint, o.attempts, o.last_error"
                            .replace("CLAIMABLE", &claimable("o")),
                        &[&profile, &target, &t, &last, &until],
                    )
                    .await?;
                rows.extend(rest);
            }
            tx.commit().await?;
            Ok(rows)
        });
        let mut rows: Vec<OutboxRow> = self
            .at(r)?
            .iter()
            .map(|r| outbox_row(r, OpState::Pending))
            .collect();
        rows.sort_by(|a, b| (&a.person_id, &a.event_id).cmp(&(&b.person_id, &b.event_id)));
        Ok(rows)
    }

    fn release_claims(&self, profile: &str, target: &str, retry_after: Duration) -> Result<u64> {
        self.exec(
            "UPDATE outbox SET lease_owner = NULL, lease_until = $3 \
             WHERE profile = $1 AND target = $2 AND lease_owner = pg_backend_pid()",
            &[&profile, &target, &(now() + retry_after.as_secs() as i64)],
        )
    }

    fn release_claims_of(
        &self,
        profile: &str,
        target: &str,
        people: &[String],
        retry_after: Duration,
    ) -> Result<Vec<(String, String)>> {
        if people.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.rows(
            "UPDATE outbox SET lease_owner = NULL, lease_until = $4 \
             WHERE profile = $1 AND target = $2 AND person_id = ANY($3) AND lease_owner = pg_backend_pid() \
             RETURNING person_id, event_id",
            &[&profile, &target, &people, &(now() + retry_after.as_secs() as i64)],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn renew_claims(&self, profile: &str, target: &str, lease: Duration) -> Result<u64> {
        self.exec(
            "UPDATE outbox SET lease_until = $3 \
             WHERE profile = $1 AND target = $2 AND lease_owner = pg_backend_pid()",
            &[&profile, &target, &(now() + lease.as_secs().max(1) as i64)],
        )
    }

    fn put_user(&self, u: &ConsoleUser) -> Result<()> {
        self.exec(
            "INSERT INTO console_users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash",
            &[&u.name, &u.role, &u.password_hash, &u.created_at],
        )
        .map(|_| ())
    }

    fn user(&self, name: &str) -> Result<Option<ConsoleUser>> {
        let rows = self.rows(
            "SELECT name, role, password_hash, created_at FROM console_users WHERE name = $1",
            &[&name],
        )?;
        Ok(rows.first().map(user_row))
    }

    fn users(&self) -> Result<Vec<ConsoleUser>> {
        let rows = self.rows(
            "SELECT name, role, password_hash, created_at FROM console_users ORDER BY name",
            &[],
        )?;
        Ok(rows.iter().map(user_row).collect())
    }

    fn put_session(&self, id_hash: &str, s: &SessionRecord) -> Result<()> {
        self.exec(
            "INSERT INTO console_sessions (id_hash, user_name, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id_hash) DO UPDATE SET user_name = excluded.user_name, csrf = excluded.csrf, \
             created_at = excluded.created_at, expires_at = excluded.expires_at",
            &[&id_hash, &s.user, &s.csrf, &s.created_at, &s.expires_at],
        )
        .map(|_| ())
    }

    fn session(&self, id_hash: &str, now: i64) -> Result<Option<SessionRecord>> {
        let rows = self.rows(
            "SELECT user_name, csrf, created_at, expires_at FROM console_sessions \
             WHERE id_hash = $1 AND expires_at > $2",
            &[&id_hash, &now],
        )?;
        Ok(rows.first().map(|r| SessionRecord {
            user: r.get(0),
            csrf: r.get(1),
            created_at: r.get(2),
            expires_at: r.get(3),
        }))
    }

    fn delete_session(&self, id_hash: &str) -> Result<()> {
        self.exec(
            "DELETE FROM console_sessions WHERE id_hash = $1",
            &[&id_hash],
        )
        .map(|_| ())
    }

    fn purge_sessions(&self, now: i64) -> Result<u64> {
        self.exec(
            "DELETE FROM console_sessions WHERE expires_at <= $1",
            &[&now],
        )
    }

    fn record_audit(&self, e: &AuditEntry) -> Result<()> {
        self.exec(
            "INSERT INTO console_audit (at, user_name, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
            &[&e.at, &e.user, &e.action, &e.target, &e.detail],
        )
        .map(|_| ())
    }

    fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows = self.rows(
            "SELECT at, user_name, action, target, detail FROM console_audit ORDER BY id DESC LIMIT $1",
            &[&(limit as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                at: r.get(0),
                user: r.get(1),
                action: r.get(2),
                target: r.get(3),
                detail: r.get(4),
            })
            .collect())
    }

    fn set_feed_token(&self, person_id: &str, token_hash: &str, now: i64) -> Result<()> {
        self.exec(
            "INSERT INTO feed_tokens (person_id, token_hash, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (person_id) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at",
            &[&person_id, &token_hash, &now],
        )
        .map(|_| ())
    }

    fn feed_token_of(&self, person_id: &str) -> Result<Option<FeedTokenRecord>> {
        let rows = self.rows(
            "SELECT person_id, token_hash, created_at FROM feed_tokens WHERE person_id = $1",
            &[&person_id],
        )?;
        Ok(rows.first().map(|r| FeedTokenRecord {
            person_id: r.get(0),
            token_hash: r.get(1),
            created_at: r.get(2),
        }))
    }

    fn feed_token_person(&self, token_hash: &str) -> Result<Option<String>> {
        let rows = self.rows(
            "SELECT person_id FROM feed_tokens WHERE token_hash = $1",
            &[&token_hash],
        )?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn revoke_feed_token(&self, person_id: &str) -> Result<bool> {
        self.exec(
            "DELETE FROM feed_tokens WHERE person_id = $1",
            &[&person_id],
        )
        .map(|n| n > 0)
    }
}

fn user_row(r: &Row) -> ConsoleUser {
    ConsoleUser {
        name: r.get(0),
        role: r.get(1),
        password_hash: r.get(2),
        created_at: r.get(3),
    }
}
