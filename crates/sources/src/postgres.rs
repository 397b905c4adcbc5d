//! PostgreSQL sources (`postgres://`).
//!
//! The eight views are read inside `BEGIN ISOLATION LEVEL REPEATABLE READ
//! READ ONLY`, so they all come from one snapshot however long the read
//! takes. Each column is converted to text by the server (timestamps with
//! `to_char` to ISO-8601, `timestamptz` in UTC with `Z`), and rows are
//! streamed from the socket into the snapshot one at a time.

use edusync_core::model::{columns, RawSnapshot, VIEWS};
use edusync_db::pg::{self, Client};
use edusync_db::{block_on, DbError};
use futures_util::StreamExt;
use tokio_postgres::types::{Kind, Type};

use crate::{accepts, column_kind, Family, Probe, SourceError};

struct Source {
    client: Client,
    name: String,
}

fn open(url: &str, password: Option<&str>) -> Result<Source, SourceError> {
    let name = edusync_config::redact_url(url);
    let client =
        pg::connect(url, password, "edusync source").map_err(|e: DbError| SourceError::Open {
            source_name: name.clone(),
            detail: e.to_string(),
        })?;
    Ok(Source { client, name })
}

fn family(t: &Type) -> Family {
    if let Kind::Domain(inner) = t.kind() {
        return family(inner);
    }
    if let Kind::Enum(_) = t.kind() {
        return Family::Text;
    }
    match t.name() {
        "text" | "varchar" | "bpchar" | "char" | "name" | "citext" | "uuid" | "unknown" => {
            Family::Text
        }
        "int2" | "int4" | "int8" | "oid" => Family::Integer,
        "numeric" | "float4" | "float8" => Family::Decimal,
        "timestamp" => Family::Timestamp,
        "timestamptz" => Family::TimestampTz,
        _ => Family::Other,
    }
}

impl Source {
    fn err(&self, view: &str, e: &tokio_postgres::Error) -> SourceError {
        match pg::sqlstate(e) {
            Some("42P01") | Some("3F000") => SourceError::MissingView {
                source_name: self.name.clone(),
                view: view.to_string(),
            },
            Some("42501") => SourceError::Permission {
                source_name: self.name.clone(),
                view: view.to_string(),
                detail: pg::message(e),
            },
            _ => SourceError::Read {
                source_name: self.name.clone(),
                view: view.to_string(),
                detail: pg::message(e),
            },
        }
    }

    /// The select list reading `base`'s contract columns as text, after
    /// checking that each exists and has a usable type.
    fn select_list(&self, view: &str, base: &str) -> Result<String, SourceError> {
        let st = block_on(
            self.client
                .prepare(&format!("SELECT * FROM {} LIMIT 0", pg::quote_ident(view))),
        )
        .map_err(|e| self.err(view, &e))?;
        let mut list = Vec::new();
        for col in columns(base) {
            let Some(c) = st
                .columns()
                .iter()
                .find(|c| c.name().eq_ignore_ascii_case(col))
            else {
                return Err(SourceError::MissingColumn {
                    source_name: self.name.clone(),
                    view: view.to_string(),
                    column: col.to_string(),
                    kind: column_kind(col),
                });
            };
            let fam = family(c.type_());
            if !accepts(col, fam) {
                return Err(SourceError::MistypedColumn {
                    source_name: self.name.clone(),
                    view: view.to_string(),
                    column: col.to_string(),
                    found: c.type_().name().to_string(),
                    kind: column_kind(col),
                });
            }
            let q = pg::quote_ident(c.name());
            list.push(match fam {
                Family::Timestamp => format!("to_char({q}, 'YYYY-MM-DD\"T\"HH24:MI:SS')"),
                Family::TimestampTz => {
                    format!("to_char({q} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
                }
                _ => format!("{q}::text"),
            });
        }
        Ok(list.join(", "))
    }
}

pub fn read(url: &str, prefix: &str, password: Option<&str>) -> Result<RawSnapshot, SourceError> {
    let src = open(url, password)?;
    block_on(
        src.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
    )
    .map_err(|e| src.err("(transaction)", &e))?;
    let mut snap = RawSnapshot {
        prefix: prefix.to_string(),
        ..Default::default()
    };
    for base in VIEWS {
        let view = format!("{prefix}{base}");
        let list = src.select_list(&view, base)?;
        let n = columns(base).len();
        let sql = format!("SELECT {list} FROM {}", pg::quote_ident(&view));
        let rows = block_on(src.client.query_raw(&sql, std::iter::empty::<&str>()))
            .map_err(|e| src.err(&view, &e))?;
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = block_on(rows.next()) {
            let row = row.map_err(|e| src.err(&view, &e))?;
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                let v: Option<&str> = row.try_get(i).map_err(|e| src.err(&view, &e))?;
                vals.push(v.map(str::to_string));
            }
            snap.push_row(base, vals);
        }
    }
    block_on(src.client.batch_execute("COMMIT")).map_err(|e| src.err("(transaction)", &e))?;
    Ok(snap)
}

pub fn probe(url: &str, prefix: &str, password: Option<&str>) -> Result<Probe, SourceError> {
    let src = open(url, password)?;
    block_on(
        src.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
    )
    .map_err(|e| src.err("(transaction)", &e))?;
    let mut probe = Probe::default();
    for base in VIEWS {
        let view = format!("{prefix}{base}");
        src.select_list(&view, base)?;
        let row = block_on(src.client.query_one(
            &format!("SELECT count(*) FROM {}", pg::quote_ident(&view)),
            &[],
        ))
        .map_err(|e| src.err(&view, &e))?;
        let n: i64 = row.get(0);
        probe.rows.push((view, n as u64));
    }
    let _ = block_on(src.client.batch_execute("COMMIT"));
    Ok(probe)
}
