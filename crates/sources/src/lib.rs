//! Reading the timetable source contract: the eight views, in one snapshot.
//!
//! Every reader returns the same [`RawSnapshot`] of optional text columns;
//! validation and quarantine happen once, in `edusync_core::timetable`.

use edusync_config::SourceUrl;
use edusync_core::model::RawSnapshot;

pub mod sqlite;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {source_name}: cannot open: {detail} (check profiles.source.url)")]
    Open { source_name: String, detail: String },
    #[error("source {source_name}: view {view} does not exist; create it as described in the source contract (or fix profiles.source.prefix)")]
    MissingView { source_name: String, view: String },
    #[error("source {source_name}: view {view} has no column {column} ({kind}); the source contract requires it")]
    MissingColumn {
        source_name: String,
        view: String,
        column: String,
        kind: &'static str,
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

/// Reads all eight views of `url` with `prefix` in one read transaction.
pub fn read(url: &SourceUrl, prefix: &str) -> Result<RawSnapshot, SourceError> {
    match url {
        SourceUrl::Sqlite(path) => sqlite::read(path, prefix),
        other => Err(SourceError::Unsupported(other.redacted())),
    }
}

/// Checks that every view and column exists and counts rows.
pub fn probe(url: &SourceUrl, prefix: &str) -> Result<Probe, SourceError> {
    match url {
        SourceUrl::Sqlite(path) => sqlite::probe(path, prefix),
        other => Err(SourceError::Unsupported(other.redacted())),
    }
}

/// The expected kind of each column, for error messages.
pub fn column_kind(column: &str) -> &'static str {
    match column {
        "starts_at" | "ends_at" => "timestamp or ISO-8601 text",
        "latitude" | "longitude" => "number",
        _ => "text",
    }
}
