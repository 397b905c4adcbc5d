//! What the admin console keeps in the state store: accounts, sessions, the
//! audit log of operator actions, and per-person feed tokens.
//!
//! Contracts every [`crate::Store`] implementation keeps (SQLite in
//! `sqlite.rs`, migration 2; PostgreSQL in `postgres.rs`, migration 3):
//! - secrets are never stored: a password is stored as its argon2id PHC
//!   string, a session id and a feed token only as a hash the server computes
//!   (`blake3` hex) — the store compares hashes with `=`, nothing more;
//! - every method is one short transaction;
//! - names, hashes and person ids are compared exactly (case-sensitive).

use serde::Serialize;

/// A console account. `role` is `viewer`, `operator` or `admin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsoleUser {
    pub name: String,
    pub role: String,
    /// argon2id PHC string (`$argon2id$v=19$…`). Never shown.
    #[serde(skip)]
    pub password_hash: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A signed-in browser session, found by the hash of its cookie value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub user: String,
    /// The session's CSRF token (sent back in every form).
    pub csrf: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; a session is valid while `now < expires_at`.
    pub expires_at: i64,
}

/// One operator action, as the console's audit page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: i64,
    /// Account name (or `cli` for command-line actions).
    pub user: String,
    /// `login`, `login-failed`, `run-now`, `pause`, `resume`, `approve`, `reject`,
    /// `feed-token-rotate`, `feed-token-revoke`, `user-add`, `logout`.
    pub action: String,
    /// What it acted on: a profile, `run 42`, a person id, an account.
    pub target: String,
    /// Outcome in a few words.
    pub detail: String,
}

/// A person's feed token (only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedTokenRecord {
    pub person_id: String,
    pub token_hash: String,
    /// Unix seconds.
    pub created_at: i64,
}
