//! CSV sources (`csv://FOLDER`): one file `<prefix><view>.csv` per view,
//! UTF-8 (a byte-order mark is allowed), with a header row naming the
//! columns. Extra columns are ignored, columns may come in any order, and an
//! empty field is NULL.
//!
//! Files have no transactions, so consistency is checked instead: the size
//! and modification time of every file are noted before reading and compared
//! after; if an export job changed one meanwhile, everything is read again
//! (a few times, then it is an error).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use edusync_core::model::{columns, RawSnapshot, VIEWS};

use crate::{column_kind, Probe, SourceError};

const ATTEMPTS: usize = 3;

fn source_name(dir: &Path) -> String {
    format!("csv://{}", dir.display())
}

fn file_of(dir: &Path, prefix: &str, base: &str) -> PathBuf {
    dir.join(format!("{prefix}{base}.csv"))
}

type Stamp = Vec<Option<(u64, SystemTime)>>;

fn stamps(dir: &Path, prefix: &str) -> Stamp {
    VIEWS
        .iter()
        .map(|b| {
            std::fs::metadata(file_of(dir, prefix, b))
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)))
        })
        .collect()
}

/// Opens one view's file and maps the contract columns to field positions.
fn open_view(
    dir: &Path,
    prefix: &str,
    base: &str,
) -> Result<(csv::Reader<BufReader<File>>, Vec<usize>), SourceError> {
    let view = format!("{prefix}{base}");
    let path = file_of(dir, prefix, base);
    let file = File::open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            SourceError::MissingFile {
                source_name: source_name(dir),
                view: view.clone(),
                file: path.display().to_string(),
            }
        } else {
            SourceError::Read {
                source_name: source_name(dir),
                view: view.clone(),
                detail: format!("{}: {e}", path.display()),
            }
        }
    })?;
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 16, file));
    let header: Vec<String> = rd
        .byte_headers()
        .map_err(|e| read_err(dir, &view, &path, e))?
        .iter()
        .map(|h| {
            let h = String::from_utf8_lossy(h);
            h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase()
        })
        .collect();
    let mut idx = Vec::new();
    for col in columns(base) {
        match header.iter().position(|h| h == col) {
            Some(i) => idx.push(i),
            None => {
                return Err(SourceError::MissingColumn {
                    source_name: source_name(dir),
                    view,
                    column: col.to_string(),
                    kind: column_kind(col),
                })
            }
        }
    }
    Ok((rd, idx))
}

fn read_err(dir: &Path, view: &str, path: &Path, e: csv::Error) -> SourceError {
    let at = e
        .position()
        .map(|p| format!(" line {}", p.line()))
        .unwrap_or_default();
    SourceError::Read {
        source_name: source_name(dir),
        view: view.to_string(),
        detail: format!("{}{at}: {e}", path.display()),
    }
}

fn read_once(dir: &Path, prefix: &str) -> Result<RawSnapshot, SourceError> {
    let mut snap = RawSnapshot {
        prefix: prefix.to_string(),
        ..Default::default()
    };
    for base in VIEWS {
        let view = format!("{prefix}{base}");
        let path = file_of(dir, prefix, base);
        let (mut rd, idx) = open_view(dir, prefix, base)?;
        let mut rec = csv::ByteRecord::new();
        while rd
            .read_byte_record(&mut rec)
            .map_err(|e| read_err(dir, &view, &path, e))?
        {
            let mut vals = Vec::with_capacity(idx.len());
            for &i in &idx {
                let v = match rec.get(i) {
                    None | Some(b"") => None,
                    Some(b) => match std::str::from_utf8(b) {
                        Ok(s) => Some(s.to_string()),
                        Err(_) => {
                            let line = rec.position().map(|p| p.line()).unwrap_or(0);
                            return Err(SourceError::Read {
                                source_name: source_name(dir),
                                view,
                                detail: format!(
                                    "{} line {line}: column {} is not UTF-8; export the file as UTF-8",
                                    path.display(),
                                    columns(base)[vals.len()]
                                ),
                            });
                        }
                    },
                };
                vals.push(v);
            }
            snap.push_row(base, vals);
        }
    }
    Ok(snap)
}

pub fn read(dir: &Path, prefix: &str) -> Result<RawSnapshot, SourceError> {
    check_dir(dir)?;
    for _ in 0..ATTEMPTS {
        let before = stamps(dir, prefix);
        let snap = read_once(dir, prefix)?;
        if stamps(dir, prefix) == before {
            return Ok(snap);
        }
    }
    Err(SourceError::Read {
        source_name: source_name(dir),
        view: "(all)".into(),
        detail: format!("the files changed while they were read, {ATTEMPTS} times in a row; let the export finish (write to a temporary name and rename) and sync again"),
    })
}

fn check_dir(dir: &Path) -> Result<(), SourceError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(SourceError::Open {
            source_name: source_name(dir),
            detail: "the folder does not exist".into(),
        })
    }
}

pub fn probe(dir: &Path, prefix: &str) -> Result<Probe, SourceError> {
    check_dir(dir)?;
    let mut probe = Probe::default();
    for base in VIEWS {
        let view = format!("{prefix}{base}");
        let path = file_of(dir, prefix, base);
        let (mut rd, _) = open_view(dir, prefix, base)?;
        let mut rec = csv::ByteRecord::new();
        let mut n = 0u64;
        while rd
            .read_byte_record(&mut rec)
            .map_err(|e| read_err(dir, &view, &path, e))?
        {
            n += 1;
        }
        probe.rows.push((view, n));
    }
    Ok(probe)
}
