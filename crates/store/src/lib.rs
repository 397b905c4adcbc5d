//! edusync's state: the ledger of what each target holds, the outbox of
//! planned operations, and the run history.
//!
//! [`Store`] is the one interface the engine and the server use; SQLite
//! ([`sqlite::SqliteStore`], the embedded default) implements it, and a
//! PostgreSQL store implements the same trait. The ledger is read in
//! `(person_id, event_id)` byte order, which [`edusync_core::plan`] relies on.

use edusync_core::plan::{Counts, LedgerRow};
use serde::Serialize;

pub mod console;
pub mod outbox;
pub mod postgres;
pub mod sqlite;

pub use console::{AuditEntry, ConsoleUser, FeedTokenRecord, SessionRecord};

pub use outbox::{Ack, OpKind, OpState, OutboxOp, OutboxRow};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {location}: {source}")]
    Sqlite {
        location: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state database {location}: {detail}")]
    Postgres { location: String, detail: String },
    #[error("state database {location} was written by a newer edusync (schema version {found}, this build knows up to {known}); upgrade edusync")]
    TooNew {
        location: String,
        found: i64,
        known: i64,
    },
    #[error("run {0} does not exist")]
    NoSuchRun(i64),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What the ledger knows about one person's copy of one event on one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub person_id: String,
    pub event_id: String,
    pub fingerprint: u64,
    pub starts_at: i64,
    /// The calendar it was written to (email).
    pub calendar: String,
    /// The target's id for it (Graph event id, CalDAV href, file name).
    pub remote_id: Option<String>,
    /// The target's version tag when written (ETag, change key, mtime).
    pub etag: Option<String>,
    pub sequence: u32,
    pub gone: bool,
    pub updated_at: i64,
}

pub type RunId = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Sync,
    Cleardown,
    Approve,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Sync => "sync",
            RunKind::Cleardown => "cleardown",
            RunKind::Approve => "approve",
        }
    }
}

/// The life of a run: `running`, then one of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    /// Everything planned was applied (permanent per-person errors are reported, not retried).
    Applied,
    /// Creates and updates applied; deletes held by the guard.
    Held,
    Failed,
    /// A held run whose deletes an operator approved and that were then applied.
    Approved,
    /// A held run an operator rejected: its deletes were dropped.
    Rejected,
    /// A held run whose deletes a later run re-planned.
    Superseded,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Applied => "applied",
            RunStatus::Held => "held",
            RunStatus::Failed => "failed",
            RunStatus::Approved => "approved",
            RunStatus::Rejected => "rejected",
            RunStatus::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> RunStatus {
        match s {
            "applied" => RunStatus::Applied,
            "held" => RunStatus::Held,
            "failed" => RunStatus::Failed,
            "approved" => RunStatus::Approved,
            "rejected" => RunStatus::Rejected,
            "superseded" => RunStatus::Superseded,
            _ => RunStatus::Running,
        }
    }
}

/// One run as the history shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub run_id: RunId,
    pub profile: String,
    pub kind: RunKind,
    pub status: RunStatus,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub counts: Counts,
    pub quarantined: u64,
    /// Operations that failed (after retries) in this run.
    pub failed_ops: u64,
    pub hold_reason: Option<String>,
    pub message: Option<String>,
}

/// What a finished run records.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    pub counts: Counts,
    pub quarantined: u64,
    pub failed_ops: u64,
    pub hold_reason: Option<String>,
    pub message: Option<String>,
}

/// A per-operation error, kept for the console and the CLI summary.
#[derive(Debug, Clone, Serialize)]
pub struct OpError {
    pub run_id: RunId,
    pub target: String,
    pub person_id: String,
    pub event_id: String,
    pub kind: String,
    pub permanent: bool,
    pub message: String,
    pub at: i64,
}

/// A quarantined source row, as recorded with its run.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineRecord {
    pub view: String,
    pub row: String,
    pub reason: String,
}

/// The state store. Every method is one short transaction unless it says otherwise.
pub trait Store: Send + Sync {
    /// Calls `f` for every ledger row of `profile`/`target`, ordered by
    /// `(person_id, event_id)` as bytes.
    fn scan_ledger(
        &self,
        profile: &str,
        target: &str,
        f: &mut dyn FnMut(LedgerRow<'_>),
    ) -> Result<()>;

    /// Number of ledger rows of a profile, over all its targets.
    fn ledger_count(&self, profile: &str) -> Result<u64>;

    /// Ledger rows of one person (per-person lookup).
    fn ledger_for_person(
        &self,
        profile: &str,
        person_id: &str,
    ) -> Result<Vec<(String, LedgerEntry)>>;

    /// Ledger rows for the given keys of one target.
    fn ledger_entries(
        &self,
        profile: &str,
        target: &str,
        keys: &[(String, String)],
    ) -> Result<Vec<Option<LedgerEntry>>>;

    /// Every ledger row of a target (reconcile, cleardown).
    fn ledger_all(&self, profile: &str, target: &str) -> Result<Vec<LedgerEntry>>;

    /// Starts a run and returns its id.
    fn start_run(&self, profile: &str, kind: RunKind) -> Result<RunId>;

    /// Records the plan of `run` for one target as its outbox, replacing
    /// every op of an earlier plan of the same profile and target (held ones
    /// too: the newer plan is the truth, and earlier held runs become
    /// `superseded`). One transaction.
    fn replace_outbox(
        &self,
        run: RunId,
        profile: &str,
        target: &str,
        ops: &mut dyn Iterator<Item = OutboxOp>,
    ) -> Result<()>;

    /// Outbox rows of a target in `state`, optionally only those of `run`.
    fn outbox(
        &self,
        profile: &str,
        target: &str,
        state: OpState,
        run: Option<RunId>,
    ) -> Result<Vec<OutboxRow>>;

    /// Pending and held op counts of a profile.
    fn outbox_counts(&self, profile: &str) -> Result<(u64, u64)>;

    /// Records acknowledged operations: updates the ledger and removes their
    /// outbox rows, in one transaction.
    fn ack(&self, profile: &str, target: &str, acks: &[Ack]) -> Result<()>;

    /// Records failed operations (they stay in the outbox for the next cycle).
    fn record_failures(&self, profile: &str, errors: &[OpError]) -> Result<()>;

    /// Marks held ops of `run` as pending (approval).
    fn release_held(&self, run: RunId) -> Result<u64>;

    /// Drops held ops of `run` (rejection).
    fn drop_held(&self, run: RunId) -> Result<u64>;

    /// Changes ledger rows after reconciling with a target: `Some(entry)` replaces,
    /// `None` removes.
    fn reconcile_ledger(
        &self,
        profile: &str,
        target: &str,
        changes: &[(String, String, Option<LedgerEntry>)],
    ) -> Result<()>;

    /// Each calendar's change marker of a target as recorded after its last
    /// successful check against the ledger (`calendar → marker`; CalDAV: the
    /// collection's ctag and sync-token). A target compares it with the
    /// calendar's current one to know whether anything changed since.
    fn calendar_markers(&self, profile: &str, target: &str) -> Result<Vec<(String, String)>>;

    /// Records (`Some`) or forgets (`None`) calendars' change markers. Called
    /// only after the ledger agrees with what the marker describes.
    fn set_calendar_markers(
        &self,
        profile: &str,
        target: &str,
        markers: &[(String, Option<String>)],
    ) -> Result<()>;

    fn finish_run(&self, run: RunId, status: RunStatus, outcome: &RunOutcome) -> Result<()>;
    fn set_run_status(&self, run: RunId, status: RunStatus) -> Result<()>;
    fn run(&self, run: RunId) -> Result<Run>;
    fn runs(&self, profile: Option<&str>, limit: u32) -> Result<Vec<Run>>;
    fn record_quarantine(&self, run: RunId, rows: &[QuarantineRecord]) -> Result<()>;
    fn quarantine(&self, run: RunId, limit: u32) -> Result<Vec<QuarantineRecord>>;
    fn op_errors(&self, run: RunId, limit: u32) -> Result<Vec<OpError>>;
    fn op_errors_for_person(
        &self,
        profile: &str,
        person_id: &str,
        limit: u32,
    ) -> Result<Vec<OpError>>;

    // ---- Several workers sharing one store (see outbox.rs, "Several
    // workers"). The defaults are those of a store one process uses alone
    // (SQLite): the engine then plans and delivers without locks or claims.

    /// Whether several processes may use this store at once.
    fn shared(&self) -> bool {
        false
    }
    /// Takes the cycle lock of `profile` if no other worker holds it.
    fn try_lock_profile(&self, profile: &str) -> Result<bool> {
        let _ = profile;
        Ok(true)
    }
    /// Gives the cycle lock of `profile` back.
    fn unlock_profile(&self, profile: &str) -> Result<()> {
        let _ = profile;
        Ok(())
    }
    /// Stops new claims on `profile`'s outbox and waits (at most `wait`)
    /// until other live workers' claims are acknowledged or released.
    fn begin_planning(&self, profile: &str, wait: std::time::Duration) -> Result<()> {
        let _ = (profile, wait);
        Ok(())
    }
    /// Lets claims on `profile`'s outbox start again.
    fn end_planning(&self, profile: &str) -> Result<()> {
        let _ = profile;
        Ok(())
    }
    /// Leases up to `limit` pending ops of a target that no live worker has
    /// claimed, in (person, event) order, for `lease`, rounded up to whole
    /// people: a person some other live worker holds ops of is skipped, and
    /// the last person's remaining ops are included. Empty while another
    /// worker is planning the profile.
    fn claim(
        &self,
        profile: &str,
        target: &str,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxRow>> {
        let _ = (profile, target, limit, lease);
        Err(StoreError::Invalid(
            "this state store is for one process; it has no claims".into(),
        ))
    }
    /// Ends this worker's leases on a target's ops that are still in the
    /// outbox (failed ones); they can be claimed again after `retry_after`.
    fn release_claims(
        &self,
        profile: &str,
        target: &str,
        retry_after: std::time::Duration,
    ) -> Result<u64> {
        let _ = (profile, target, retry_after);
        Ok(0)
    }
    /// [`Store::release_claims`] for `people` only (a worker with several
    /// claims in flight lets one claim go while the others are delivering);
    /// returns the (person, event) keys it let go.
    fn release_claims_of(
        &self,
        profile: &str,
        target: &str,
        people: &[String],
        retry_after: std::time::Duration,
    ) -> Result<Vec<(String, String)>> {
        let _ = (profile, target, people, retry_after);
        Ok(Vec::new())
    }
    /// Extends this worker's leases on a target's ops it still holds to
    /// `lease` from now (a delivery that outlasts a lease keeps its claims).
    fn renew_claims(&self, profile: &str, target: &str, lease: std::time::Duration) -> Result<u64> {
        let _ = (profile, target, lease);
        Ok(0)
    }

    // ---- Console state (see `console.rs` for the contracts). The defaults
    // answer "not supported" so a store without console tables still syncs.

    /// Creates the account `user.name`, or replaces its role and password hash
    /// (keeping `created_at`) when it exists.
    fn put_user(&self, user: &ConsoleUser) -> Result<()> {
        let _ = user;
        Err(unsupported("console accounts"))
    }
    /// The account named exactly `name`.
    fn user(&self, name: &str) -> Result<Option<ConsoleUser>> {
        let _ = name;
        Err(unsupported("console accounts"))
    }
    /// Every account, by name.
    fn users(&self) -> Result<Vec<ConsoleUser>> {
        Err(unsupported("console accounts"))
    }
    /// Stores a session under the hash of its id (replacing one with the same hash).
    fn put_session(&self, id_hash: &str, session: &SessionRecord) -> Result<()> {
        let _ = (id_hash, session);
        Err(unsupported("console sessions"))
    }
    /// The session stored under `id_hash`, if it exists and `now < expires_at`.
    fn session(&self, id_hash: &str, now: i64) -> Result<Option<SessionRecord>> {
        let _ = (id_hash, now);
        Err(unsupported("console sessions"))
    }
    /// Removes one session (sign-out). Removing a missing one is not an error.
    fn delete_session(&self, id_hash: &str) -> Result<()> {
        let _ = id_hash;
        Err(unsupported("console sessions"))
    }
    /// Removes every session with `expires_at <= now`; returns how many.
    fn purge_sessions(&self, now: i64) -> Result<u64> {
        let _ = now;
        Err(unsupported("console sessions"))
    }
    /// Appends one entry to the audit log (never updated or deleted).
    fn record_audit(&self, entry: &AuditEntry) -> Result<()> {
        let _ = entry;
        Err(unsupported("the audit log"))
    }
    /// The newest `limit` audit entries, newest first.
    fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        let _ = limit;
        Err(unsupported("the audit log"))
    }
    /// Sets `person_id`'s feed token hash, replacing (so invalidating) any earlier one.
    fn set_feed_token(&self, person_id: &str, token_hash: &str, now: i64) -> Result<()> {
        let _ = (person_id, token_hash, now);
        Err(unsupported("feed tokens"))
    }
    /// `person_id`'s current feed token record, if one is issued.
    fn feed_token_of(&self, person_id: &str) -> Result<Option<FeedTokenRecord>> {
        let _ = person_id;
        Err(unsupported("feed tokens"))
    }
    /// The person whose current token hashes to `token_hash`.
    fn feed_token_person(&self, token_hash: &str) -> Result<Option<String>> {
        let _ = token_hash;
        Err(unsupported("feed tokens"))
    }
    /// Revokes `person_id`'s token; returns whether there was one.
    fn revoke_feed_token(&self, person_id: &str) -> Result<bool> {
        let _ = person_id;
        Err(unsupported("feed tokens"))
    }
}

fn unsupported(what: &str) -> StoreError {
    StoreError::Invalid(format!(
        "this state store does not keep {what} yet; use state = \"sqlite://…\" for `edusync serve`'s console"
    ))
}

/// Opens the store a config names: `state`, with the password from
/// `state_password_env` for PostgreSQL when the config names one.
pub fn open(config: &edusync_config::Config) -> Result<Box<dyn Store>> {
    match &config.state {
        edusync_config::StateUrl::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open(path)?)),
        edusync_config::StateUrl::Postgres(url) => {
            let password = config
                .state_password()
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            Ok(Box::new(postgres::PgStore::open_with_password(
                url,
                password.as_deref(),
            )?))
        }
    }
}

pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod store_tests;
