//! The agent's ledger: which file versions the hub has acknowledged.
//!
//! Design constraints:
//! - A row is written only after the hub answered `complete` for that exact
//!   version (size + BLAKE3); a crash before that leaves no row, and the next
//!   run asks the hub, which resumes from its last synced chunk, so nothing
//!   acknowledged is sent twice.
//! - `size` + `mtime_ns` let a restart skip unchanged files without reading
//!   them; a file whose stat changed is hashed and compared with `blake3`
//!   before anything is sent.
//! - A version the hub refused for good (too big, bad path) is remembered in
//!   `rejected` and retried only when the file changes.
//! - Pruning deletes a file only if its stat still equals the acknowledged
//!   version and the retention period has passed since `acked_at`.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, thiserror::Error)]
#[error("agent ledger {path}: {source} (the ledger is the agent's record of what the hub acknowledged; check the state_dir is writable)")]
pub struct LedgerError {
    path: String,
    #[source]
    source: rusqlite::Error,
}

/// A version the hub acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub size: u64,
    pub mtime_ns: i64,
    pub blake3: String,
    pub acked_at_ms: i64,
    pub pruned: bool,
}

pub struct Ledger {
    conn: Connection,
    path: String,
}

impl Ledger {
    pub fn open(state_dir: &Path) -> Result<Ledger, LedgerError> {
        let path = state_dir.join("ledger.db");
        let p = path.display().to_string();
        let wrap = |source| LedgerError {
            path: p.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(wrap)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS acked (
                dataset TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL, blake3 TEXT NOT NULL, acked_at_ms INTEGER NOT NULL,
                pruned INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (dataset, path));
             CREATE TABLE IF NOT EXISTS rejected (
                dataset TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL, reason TEXT NOT NULL,
                PRIMARY KEY (dataset, path));",
        )
        .map_err(wrap)?;
        Ok(Ledger { conn, path: p })
    }

    fn wrap(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError {
            path: self.path.clone(),
            source,
        }
    }

    pub fn acked(&self, dataset: &str, path: &str) -> Result<Option<Acked>, LedgerError> {
        self.conn
            .query_row(
                "SELECT size, mtime_ns, blake3, acked_at_ms, pruned FROM acked WHERE dataset = ?1 AND path = ?2",
                params![dataset, path],
                |r| {
                    Ok(Acked {
                        size: r.get::<_, i64>(0)? as u64,
                        mtime_ns: r.get(1)?,
                        blake3: r.get(2)?,
                        acked_at_ms: r.get(3)?,
                        pruned: r.get::<_, i64>(4)? != 0,
                    })
                },
            )
            .optional()
            .map_err(|e| self.wrap(e))
    }

    pub fn record_acked(&self, dataset: &str, path: &str, a: &Acked) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT INTO acked (dataset, path, size, mtime_ns, blake3, acked_at_ms, pruned)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (dataset, path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
                   blake3 = excluded.blake3, acked_at_ms = excluded.acked_at_ms, pruned = excluded.pruned",
                params![dataset, path, a.size as i64, a.mtime_ns, a.blake3, a.acked_at_ms, a.pruned as i64],
            )
            .map_err(|e| self.wrap(e))?;
        self.conn
            .execute(
                "DELETE FROM rejected WHERE dataset = ?1 AND path = ?2",
                params![dataset, path],
            )
            .map_err(|e| self.wrap(e))?;
        Ok(())
    }

    pub fn mark_pruned(&self, dataset: &str, path: &str) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "UPDATE acked SET pruned = 1 WHERE dataset = ?1 AND path = ?2",
                params![dataset, path],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// Is this exact stat remembered as refused for good? Returns the reason.
    pub fn rejected(
        &self,
        dataset: &str,
        path: &str,
        size: u64,
        mtime_ns: i64,
    ) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row(
                "SELECT reason FROM rejected WHERE dataset = ?1 AND path = ?2 AND size = ?3 AND mtime_ns = ?4",
                params![dataset, path, size as i64, mtime_ns],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.wrap(e))
    }

    pub fn record_rejected(
        &self,
        dataset: &str,
        path: &str,
        size: u64,
        mtime_ns: i64,
        reason: &str,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO rejected (dataset, path, size, mtime_ns, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![dataset, path, size as i64, mtime_ns, reason],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// Acknowledged, not yet pruned files of a dataset acknowledged before `before_ms`.
    pub fn prunable(
        &self,
        dataset: &str,
        before_ms: i64,
    ) -> Result<Vec<(String, Acked)>, LedgerError> {
        let mut st = self
            .conn
            .prepare("SELECT path, size, mtime_ns, blake3, acked_at_ms FROM acked WHERE dataset = ?1 AND pruned = 0 AND acked_at_ms < ?2")
            .map_err(|e| self.wrap(e))?;
        let rows = st
            .query_map(params![dataset, before_ms], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Acked {
                        size: r.get::<_, i64>(1)? as u64,
                        mtime_ns: r.get(2)?,
                        blake3: r.get(3)?,
                        acked_at_ms: r.get(4)?,
                        pruned: false,
                    },
                ))
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.wrap(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path()).unwrap();
        assert_eq!(l.acked("d", "a.csv").unwrap(), None);
        l.record_rejected("d", "a.csv", 5, 7, "too big").unwrap();
        assert_eq!(
            l.rejected("d", "a.csv", 5, 7).unwrap().as_deref(),
            Some("too big")
        );
        assert_eq!(l.rejected("d", "a.csv", 6, 7).unwrap(), None);
        let a = Acked {
            size: 5,
            mtime_ns: 7,
            blake3: "h".into(),
            acked_at_ms: 100,
            pruned: false,
        };
        l.record_acked("d", "a.csv", &a).unwrap();
        assert_eq!(l.rejected("d", "a.csv", 5, 7).unwrap(), None);
        drop(l);
        let l = Ledger::open(dir.path()).unwrap();
        assert_eq!(l.acked("d", "a.csv").unwrap(), Some(a));
        assert_eq!(l.prunable("d", 101).unwrap().len(), 1);
        l.mark_pruned("d", "a.csv").unwrap();
        assert_eq!(l.prunable("d", 101).unwrap().len(), 0);
    }
}
