//! SQLite sources (the embedded default and `edusync generate`'s output).
//!
//! The file is opened read-only; the eight views are read inside one
//! `BEGIN … COMMIT`, so in WAL mode they all see one snapshot even while a
//! refresh job writes.

use std::path::Path;

use edusync_core::model::{columns, RawSnapshot, VIEWS};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::{column_kind, Probe, SourceError};

fn open(path: &Path) -> Result<(Connection, String), SourceError> {
    let name = format!("sqlite://{}", path.display());
    if !path.exists() {
        return Err(SourceError::Open {
            source_name: name,
            detail: "the file does not exist".into(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| SourceError::Open {
        source_name: name.clone(),
        detail: e.to_string(),
    })?;
    let _ = conn.busy_timeout(std::time::Duration::from_secs(30));
    Ok((conn, name))
}

/// Which contract columns `view` lacks (`Err` if the view does not exist).
fn check_columns(conn: &Connection, name: &str, view: &str, base: &str) -> Result<(), SourceError> {
    let st = conn
        .prepare(&format!("SELECT * FROM \"{view}\" LIMIT 0"))
        .map_err(|e| {
            if e.to_string().contains("no such table") {
                SourceError::MissingView {
                    source_name: name.to_string(),
                    view: view.to_string(),
                }
            } else {
                SourceError::Read {
                    source_name: name.to_string(),
                    view: view.to_string(),
                    detail: e.to_string(),
                }
            }
        })?;
    let have: Vec<String> = st
        .column_names()
        .iter()
        .map(|c| c.to_ascii_lowercase())
        .collect();
    st.finalize().ok();
    for col in columns(base) {
        if !have.iter().any(|h| h == col) {
            return Err(SourceError::MissingColumn {
                source_name: name.to_string(),
                view: view.to_string(),
                column: col.to_string(),
                kind: column_kind(col),
            });
        }
    }
    Ok(())
}

fn text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
    }
}

pub fn read(path: &Path, prefix: &str) -> Result<RawSnapshot, SourceError> {
    let (conn, name) = open(path)?;
    let err = |view: &str, e: rusqlite::Error| SourceError::Read {
        source_name: name.clone(),
        view: view.to_string(),
        detail: e.to_string(),
    };
    conn.execute_batch("BEGIN")
        .map_err(|e| err("(transaction)", e))?;
    let mut snap = RawSnapshot {
        prefix: prefix.to_string(),
        ..Default::default()
    };
    for base in VIEWS {
        let view = format!("{prefix}{base}");
        check_columns(&conn, &name, &view, base)?;
        let cols = columns(base);
        let sql = format!(
            "SELECT {} FROM \"{view}\"",
            cols.iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut st = conn.prepare(&sql).map_err(|e| err(&view, e))?;
        let mut rows = st.query([]).map_err(|e| err(&view, e))?;
        while let Some(r) = rows.next().map_err(|e| err(&view, e))? {
            let mut vals = Vec::with_capacity(cols.len());
            for i in 0..cols.len() {
                vals.push(text(r.get_ref(i).map_err(|e| err(&view, e))?));
            }
            snap.push_row(base, vals);
        }
    }
    conn.execute_batch("COMMIT")
        .map_err(|e| err("(transaction)", e))?;
    Ok(snap)
}

pub fn probe(path: &Path, prefix: &str) -> Result<Probe, SourceError> {
    let (conn, name) = open(path)?;
    let mut probe = Probe::default();
    for base in VIEWS {
        let view = format!("{prefix}{base}");
        check_columns(&conn, &name, &view, base)?;
        let n: i64 = conn
            .query_row(&format!("SELECT COUNT(*) FROM \"{view}\""), [], |r| {
                r.get(0)
            })
            .map_err(|e| SourceError::Read {
                source_name: name.clone(),
                view: view.clone(),
                detail: e.to_string(),
            })?;
        probe.rows.push((view, n as u64));
    }
    Ok(probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(
        dir: &Path,
        skip_view: Option<&str>,
        skip_col: Option<(&str, &str)>,
    ) -> std::path::PathBuf {
        let path = dir.join("tt.db");
        let c = Connection::open(&path).unwrap();
        for base in VIEWS {
            if Some(base) == skip_view {
                continue;
            }
            let cols: Vec<String> = columns(base)
                .iter()
                .filter(|c| skip_col != Some((base, c)))
                .map(|c| format!("{c} TEXT"))
                .collect();
            c.execute_batch(&format!(
                "CREATE TABLE tt_{base} ({}, extra TEXT)",
                cols.join(", ")
            ))
            .unwrap();
        }
        path
    }

    #[test]
    fn reads_all_views_with_any_column_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = make(dir.path(), None, None);
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "INSERT INTO tt_people VALUES (42, 'student', 'a@b.ac.uk', NULL, 'x');
             INSERT INTO tt_locations VALUES ('R1', 'Room', NULL, NULL, 51.5, -0.25, NULL);",
        )
        .unwrap();
        let snap = read(&path, "tt_").unwrap();
        assert_eq!(snap.people[0].person_id.as_deref(), Some("42"));
        assert_eq!(snap.people[0].display_name, None);
        assert_eq!(snap.locations[0].longitude.as_deref(), Some("-0.25"));
    }

    #[test]
    fn missing_view_and_column_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = make(dir.path(), Some("event_locations"), None);
        let e = read(&path, "tt_").unwrap_err().to_string();
        assert!(e.ends_with("view tt_event_locations does not exist; create it as described in the source contract (or fix profiles.source.prefix)"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = make(dir.path(), None, Some(("events", "ends_at")));
        let e = read(&path, "tt_").unwrap_err().to_string();
        assert!(e.ends_with("view tt_events has no column ends_at (timestamp or ISO-8601 text); the source contract requires it"), "{e}");
        let e = read(&dir.path().join("nope.db"), "tt_")
            .unwrap_err()
            .to_string();
        assert!(e.contains("the file does not exist"), "{e}");
    }
}
