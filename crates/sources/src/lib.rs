//! Reading the timetable source contract: the eight views, in one snapshot.
//!
//! Every reader returns the same [`RawSnapshot`] of optional text columns;
//! validation and quarantine happen once, in `edusync_core::timetable`.
//! Each reader reads inside one read-only transaction (CSV: checks that no
//! file changed while it was read) and streams rows straight into the
//! snapshot, so the only copy of the source in memory is the snapshot.
//!
//! Column types are checked against the contract's loose kinds
//! ([`column_kind`]): any text, integer or decimal type is text; times are
//! timestamps or text; a timestamp without a time zone is read as ISO-8601
//! wall-clock time and one with a time zone as an instant in UTC (`…Z`).

use edusync_config::{SourceConfig, SourceUrl};
use edusync_core::model::RawSnapshot;

pub mod csv;
pub mod mysql;
pub mod postgres;
pub mod sqlite;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {source_name}: cannot open: {detail} (check profiles.source.url)")]
    Open { source_name: String, detail: String },
    #[error("source {source_name}: view {view} does not exist; create it as described in the source contract (or fix profiles.source.prefix)")]
    MissingView { source_name: String, view: String },
    #[error("source {source_name}: file {file} (view {view}) does not exist; export the view there as UTF-8 CSV with a header row (or fix profiles.source.prefix)")]
    MissingFile {
        source_name: String,
        view: String,
        file: String,
    },
    #[error("source {source_name}: view {view} has no column {column} ({kind}); the source contract requires it")]
    MissingColumn {
        source_name: String,
        view: String,
        column: String,
        kind: &'static str,
    },
    #[error("source {source_name}: view {view} column {column} is of type {found}, which cannot be read as {kind}; change the view to give it a {kind} type")]
    MistypedColumn {
        source_name: String,
        view: String,
        column: String,
        found: String,
        kind: &'static str,
    },
    #[error("source {source_name}: no permission to read view {view} ({detail}); grant SELECT on it to the user edusync connects as")]
    Permission {
        source_name: String,
        view: String,
        detail: String,
    },
    #[error("source {source_name}: reading view {view} failed: {detail}")]
    Read {
        source_name: String,
        view: String,
        detail: String,
    },
    #[error("source {0}: this kind of source is not available in this build")]
    Unsupported(String),
}

/// Row counts per view, for `check`.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub rows: Vec<(String, u64)>,
}

/// Reads all eight views of a profile's source in one read transaction,
/// with the password named by `password_env` when there is one.
pub fn read_source(source: &SourceConfig) -> Result<RawSnapshot, SourceError> {
    let password = password(source)?;
    read_with(&source.url, &source.prefix, password.as_deref())
}

/// Checks that every view and column of a profile's source exists and counts rows.
pub fn probe_source(source: &SourceConfig) -> Result<Probe, SourceError> {
    let password = password(source)?;
    probe_with(&source.url, &source.prefix, password.as_deref())
}

/// Reads all eight views of `url` with `prefix` in one read transaction.
pub fn read(url: &SourceUrl, prefix: &str) -> Result<RawSnapshot, SourceError> {
    read_with(url, prefix, None)
}

/// Checks that every view and column exists and counts rows.
pub fn probe(url: &SourceUrl, prefix: &str) -> Result<Probe, SourceError> {
    probe_with(url, prefix, None)
}

/// [`read`] with a password that replaces the URL's.
pub fn read_with(
    url: &SourceUrl,
    prefix: &str,
    password: Option<&str>,
) -> Result<RawSnapshot, SourceError> {
    match url {
        SourceUrl::Sqlite(path) => sqlite::read(path, prefix),
        SourceUrl::Postgres(u) => postgres::read(u, prefix, password),
        SourceUrl::Mysql(u) => mysql::read(u, prefix, password),
        SourceUrl::Csv(dir) => csv::read(dir, prefix),
    }
}

/// [`probe`] with a password that replaces the URL's.
pub fn probe_with(
    url: &SourceUrl,
    prefix: &str,
    password: Option<&str>,
) -> Result<Probe, SourceError> {
    match url {
        SourceUrl::Sqlite(path) => sqlite::probe(path, prefix),
        SourceUrl::Postgres(u) => postgres::probe(u, prefix, password),
        SourceUrl::Mysql(u) => mysql::probe(u, prefix, password),
        SourceUrl::Csv(dir) => csv::probe(dir, prefix),
    }
}

fn password(source: &SourceConfig) -> Result<Option<String>, SourceError> {
    let Some(env) = &source.password_env else {
        return Ok(None);
    };
    env.read().map(Some).map_err(|e| SourceError::Open {
        source_name: source.url.redacted(),
        detail: format!("{e} (it holds the database password)"),
    })
}

/// The expected kind of each column, for error messages.
pub fn column_kind(column: &str) -> &'static str {
    match column {
        "starts_at" | "ends_at" => "timestamp or ISO-8601 text",
        "latitude" | "longitude" => "number",
        _ => "text",
    }
}

/// What a database column type is, as far as the contract cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Text,
    Integer,
    Decimal,
    /// Wall-clock date and time, no zone (SQL `TIMESTAMP`, MariaDB `DATETIME`).
    Timestamp,
    /// An instant (PostgreSQL `TIMESTAMPTZ`, MariaDB `TIMESTAMP`).
    TimestampTz,
    Other,
}

/// Whether a column of `family` can be read as contract column `column`.
pub(crate) fn accepts(column: &str, family: Family) -> bool {
    match column_kind(column) {
        "timestamp or ISO-8601 text" => matches!(
            family,
            Family::Text | Family::Timestamp | Family::TimestampTz
        ),
        _ => matches!(family, Family::Text | Family::Integer | Family::Decimal),
    }
}
