//! MariaDB and MySQL sources (`mysql://`, `mariadb://`).
//!
//! The eight views are read inside `START TRANSACTION WITH CONSISTENT
//! SNAPSHOT, READ ONLY` at `REPEATABLE READ`, so InnoDB serves them all from
//! one snapshot. Rows come over the text protocol (every value is text on
//! the wire) and are streamed into the snapshot one at a time; `DATETIME`
//! is formatted as ISO-8601 wall-clock time and `TIMESTAMP` (an instant) in
//! UTC with `Z`, the session's time zone being UTC.

use edusync_core::model::{columns, RawSnapshot, VIEWS};
use edusync_db::my;
use mysql::consts::ColumnType;
use mysql::prelude::Queryable;
use mysql::{Conn, Value};

use crate::{accepts, column_kind, Family, Probe, SourceError};

struct Source {
    conn: Conn,
    name: String,
}

fn open(url: &str, password: Option<&str>) -> Result<Source, SourceError> {
    let name = edusync_config::redact_url(url);
    let conn = my::connect(url, password).map_err(|e| SourceError::Open {
        source_name: name.clone(),
        detail: e.to_string(),
    })?;
    Ok(Source { conn, name })
}

fn family(t: ColumnType) -> Family {
    use ColumnType::*;
    match t {
        MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_SET => Family::Text,
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_LONGLONG
        | MYSQL_TYPE_INT24 | MYSQL_TYPE_YEAR => Family::Integer,
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => {
            Family::Decimal
        }
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => Family::Timestamp,
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => Family::TimestampTz,
        _ => Family::Other,
    }
}

fn type_name(t: ColumnType) -> String {
    let s = format!("{t:?}");
    s.strip_prefix("MYSQL_TYPE_").unwrap_or(&s).to_string()
}

fn error(name: &str, view: &str, e: &mysql::Error) -> SourceError {
    match my::code(e) {
        // No such table; unknown database (a schema prefix).
        Some(1146) | Some(1049) => SourceError::MissingView {
            source_name: name.to_string(),
            view: view.to_string(),
        },
        // SELECT command denied; access denied to the database.
        Some(1142) | Some(1143) | Some(1044) => SourceError::Permission {
            source_name: name.to_string(),
            view: view.to_string(),
            detail: e.to_string(),
        },
        _ => SourceError::Read {
            source_name: name.to_string(),
            view: view.to_string(),
            detail: e.to_string(),
        },
    }
}

impl Source {
    fn err(&self, view: &str, e: &mysql::Error) -> SourceError {
        error(&self.name, view, e)
    }
    fn select_list(&mut self, view: &str, base: &str) -> Result<String, SourceError> {
        let sql = format!("SELECT * FROM {} LIMIT 0", my::quote_ident(view));
        let cols: Vec<(String, ColumnType)> = match self.conn.query_iter(&sql) {
            Ok(res) => res
                .columns()
                .as_ref()
                .iter()
                .map(|c| (c.name_str().to_string(), c.column_type()))
                .collect(),
            Err(e) => return Err(error(&self.name, view, &e)),
        };
        let mut list = Vec::new();
        for col in columns(base) {
            let Some((name, t)) = cols.iter().find(|(n, _)| n.eq_ignore_ascii_case(col)) else {
                return Err(SourceError::MissingColumn {
                    source_name: self.name.clone(),
                    view: view.to_string(),
                    column: col.to_string(),
                    kind: column_kind(col),
                });
            };
            let fam = family(*t);
            if !accepts(col, fam) {
                return Err(SourceError::MistypedColumn {
                    source_name: self.name.clone(),
                    view: view.to_string(),
                    column: col.to_string(),
                    found: type_name(*t),
                    kind: column_kind(col),
                });
            }
            let q = my::quote_ident(name);
            list.push(match fam {
                Family::Timestamp => format!("DATE_FORMAT({q}, '%Y-%m-%dT%H:%i:%s')"),
                Family::TimestampTz => format!("DATE_FORMAT({q}, '%Y-%m-%dT%H:%i:%sZ')"),
                _ => q,
            });
        }
        Ok(list.join(", "))
    }

    fn begin(&mut self) -> Result<(), SourceError> {
        for sql in [
            "SET SESSION time_zone = '+00:00'",
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
        ] {
            if let Err(e) = self.conn.query_drop(sql) {
                return Err(self.err("(transaction)", &e));
            }
        }
        Ok(())
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(f) => Some(f.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

pub fn read(url: &str, prefix: &str, password: Option<&str>) -> Result<RawSnapshot, SourceError> {
    let mut src = open(url, password)?;
    src.begin()?;
    let mut snap = RawSnapshot {
        prefix: prefix.to_string(),
        ..Default::default()
    };
    for base in VIEWS {
        let view = format!("{prefix}{base}");
        let list = src.select_list(&view, base)?;
        let n = columns(base).len();
        let sql = format!("SELECT {list} FROM {}", my::quote_ident(&view));
        let mut failure = None;
        match src.conn.query_iter(&sql) {
            Ok(rows) => {
                for row in rows {
                    match row {
                        Ok(row) => {
                            let vals = (0..n).map(|i| row.as_ref(i).and_then(text)).collect();
                            snap.push_row(base, vals);
                        }
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
            }
            Err(e) => failure = Some(e),
        }
        if let Some(e) = failure {
            return Err(src.err(&view, &e));
        }
    }
    if let Err(e) = src.conn.query_drop("COMMIT") {
        return Err(src.err("(transaction)", &e));
    }
    Ok(snap)
}

pub fn probe(url: &str, prefix: &str, password: Option<&str>) -> Result<Probe, SourceError> {
    let mut src = open(url, password)?;
    src.begin()?;
    let mut probe = Probe::default();
    for base in VIEWS {
        let view = format!("{prefix}{base}");
        src.select_list(&view, base)?;
        let n: Option<u64> = match src
            .conn
            .query_first(format!("SELECT COUNT(*) FROM {}", my::quote_ident(&view)))
        {
            Ok(n) => n,
            Err(e) => return Err(src.err(&view, &e)),
        };
        probe.rows.push((view, n.unwrap_or(0)));
    }
    let _ = src.conn.query_drop("COMMIT");
    Ok(probe)
}
