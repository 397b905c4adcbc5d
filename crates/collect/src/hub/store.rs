//! Hub persistence: registered sites, heartbeats, uploads in progress and
//! the manifest of received files.
//!
//! [`HubStore`] is synchronous on purpose: the SQLite implementation is, and
//! the hub calls it from `spawn_blocking`. The PostgreSQL implementation
//! ([`super::store_pg::PgHubStore`]) blocks on the async client's futures
//! behind the same trait; the types crossing it are plain data, timestamps
//! are Unix milliseconds.
//!
//! Both implementations share the state database with the rest of edusync,
//! so they touch only tables prefixed `hub_` and version their schema in
//! their own `hub_schema_version` table.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::protocol::Heartbeat;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "site {0:?} is already registered; pick another id (a site's token cannot be shown again)"
    )]
    SiteExists(String),
    #[error("hub state database: {0}")]
    Db(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

/// An upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    pub upload_id: String,
    pub site: String,
    pub dataset: String,
    pub path: String,
    pub size: u64,
    pub blake3: String,
    pub chunk_size: u64,
    pub total_chunks: u64,
    /// Chunks written, synced and recorded.
    pub next_chunk: u64,
    pub modified: Option<String>,
    pub started_ms: i64,
    pub updated_ms: i64,
}

/// One received file version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub site: String,
    pub dataset: String,
    pub path: String,
    pub size: u64,
    pub blake3: String,
    pub modified: Option<String>,
    pub received_ms: i64,
}

/// What the Sites page shows for one site.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SiteOverview {
    pub site: String,
    pub created_ms: i64,
    pub last_heartbeat_ms: Option<i64>,
    pub last_heartbeat: Option<Heartbeat>,
    pub last_data_ms: Option<i64>,
    pub files_total: u64,
    pub bytes_total: u64,
}

/// Bytes received for one (site, dataset, month).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthlyBytes {
    pub site: String,
    pub dataset: String,
    /// `YYYY-MM` (UTC).
    pub month: String,
    pub files: u64,
    pub bytes: u64,
}

pub trait HubStore: Send + Sync + 'static {
    fn add_site(&self, site: &str, token_hash: &str, now_ms: i64) -> Result<(), StoreError>;
    fn site_token_hash(&self, site: &str) -> Result<Option<String>, StoreError>;
    fn record_heartbeat(&self, site: &str, hb: &Heartbeat, now_ms: i64) -> Result<(), StoreError>;
    fn upload(&self, upload_id: &str) -> Result<Option<UploadRow>, StoreError>;
    fn create_upload(&self, row: &UploadRow) -> Result<(), StoreError>;
    fn set_upload_progress(
        &self,
        upload_id: &str,
        next_chunk: u64,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    fn delete_upload(&self, upload_id: &str) -> Result<(), StoreError>;
    /// Records the file and forgets the upload, in one transaction.
    fn complete_upload(&self, upload_id: &str, file: &FileEntry) -> Result<(), StoreError>;
    /// The newest received version of a path.
    fn latest_file(
        &self,
        site: &str,
        dataset: &str,
        path: &str,
    ) -> Result<Option<FileEntry>, StoreError>;
    /// Uploads not touched since `before_ms` (abandoned; their partial files can go).
    fn stale_uploads(&self, before_ms: i64) -> Result<Vec<UploadRow>, StoreError>;
    fn sites(&self) -> Result<Vec<SiteOverview>, StoreError>;
    fn monthly_bytes(&self, site: Option<&str>) -> Result<Vec<MonthlyBytes>, StoreError>;
    /// Files received since `since_ms`, per site: (site, files, bytes).
    fn received_since(&self, since_ms: i64) -> Result<Vec<(String, u64, u64)>, StoreError>;
    fn recent_files(&self, site: &str, limit: u32) -> Result<Vec<FileEntry>, StoreError>;
    /// Uploads in progress for a site.
    fn open_uploads(&self, site: &str) -> Result<Vec<UploadRow>, StoreError>;
}

/// Migrations, in order; `hub_schema_version` holds how many have run.
const MIGRATIONS: &[&str] = &["CREATE TABLE hub_sites (
        site_id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_heartbeat_ms INTEGER,
        last_heartbeat_json TEXT
    );
    CREATE TABLE hub_heartbeats (
        site_id TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        json TEXT NOT NULL
    );
    CREATE INDEX hub_heartbeats_site ON hub_heartbeats (site_id, received_ms);
    CREATE TABLE hub_uploads (
        upload_id TEXT PRIMARY KEY,
        site_id TEXT NOT NULL,
        dataset TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        blake3 TEXT NOT NULL,
        chunk_size INTEGER NOT NULL,
        total_chunks INTEGER NOT NULL,
        next_chunk INTEGER NOT NULL,
        modified TEXT,
        started_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE hub_files (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        site_id TEXT NOT NULL,
        dataset TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        blake3 TEXT NOT NULL,
        modified TEXT,
        received_ms INTEGER NOT NULL
    );
    CREATE INDEX hub_files_site_time ON hub_files (site_id, received_ms);
    CREATE INDEX hub_files_path ON hub_files (site_id, dataset, path, id);"];

/// [`HubStore`] on the edusync SQLite state database.
pub struct SqliteHubStore {
    conn: Mutex<Connection>,
}

impl SqliteHubStore {
    /// Opens (creating if needed) the state database at `path` and brings the
    /// `hub_` tables up to date.
    pub fn open(path: &Path) -> Result<SqliteHubStore, StoreError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Db(format!(
                        "cannot create folder {} for the state database: {e}",
                        dir.display()
                    ))
                })?;
            }
        }
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Db(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        migrate(&conn)?;
        Ok(SqliteHubStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS hub_schema_version (version INTEGER NOT NULL)")?;
    let tx = conn.unchecked_transaction()?;
    let version: Option<i64> = tx
        .query_row("SELECT version FROM hub_schema_version", [], |r| r.get(0))
        .optional()?;
    let version = match version {
        Some(v) => v as usize,
        None => {
            tx.execute("INSERT INTO hub_schema_version (version) VALUES (0)", [])?;
            0
        }
    };
    if version > MIGRATIONS.len() {
        return Err(StoreError::Db(format!(
            "the hub tables are at schema version {version}, newer than this edusync knows ({}); upgrade edusync",
            MIGRATIONS.len()
        )));
    }
    for m in &MIGRATIONS[version..] {
        tx.execute_batch(m)?;
    }
    tx.execute(
        "UPDATE hub_schema_version SET version = ?1",
        [MIGRATIONS.len() as i64],
    )?;
    tx.commit()?;
    Ok(())
}

fn upload_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UploadRow> {
    Ok(UploadRow {
        upload_id: r.get(0)?,
        site: r.get(1)?,
        dataset: r.get(2)?,
        path: r.get(3)?,
        size: r.get::<_, i64>(4)? as u64,
        blake3: r.get(5)?,
        chunk_size: r.get::<_, i64>(6)? as u64,
        total_chunks: r.get::<_, i64>(7)? as u64,
        next_chunk: r.get::<_, i64>(8)? as u64,
        modified: r.get(9)?,
        started_ms: r.get(10)?,
        updated_ms: r.get(11)?,
    })
}

const UPLOAD_COLS: &str = "upload_id, site_id, dataset, path, size, blake3, chunk_size, total_chunks, next_chunk, modified, started_ms, updated_ms";
const FILE_COLS: &str = "site_id, dataset, path, size, blake3, modified, received_ms";

fn file_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileEntry> {
    Ok(FileEntry {
        site: r.get(0)?,
        dataset: r.get(1)?,
        path: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        blake3: r.get(4)?,
        modified: r.get(5)?,
        received_ms: r.get(6)?,
    })
}

impl HubStore for SqliteHubStore {
    fn add_site(&self, site: &str, token_hash: &str, now_ms: i64) -> Result<(), StoreError> {
        let c = self.conn();
        match c.execute(
            "INSERT INTO hub_sites (site_id, token_hash, created_ms) VALUES (?1, ?2, ?3)",
            params![site, token_hash, now_ms],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::SiteExists(site.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn site_token_hash(&self, site: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT token_hash FROM hub_sites WHERE site_id = ?1",
                [site],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn record_heartbeat(&self, site: &str, hb: &Heartbeat, now_ms: i64) -> Result<(), StoreError> {
        let json = serde_json::to_string(hb).map_err(|e| StoreError::Db(e.to_string()))?;
        let mut c = self.conn();
        let tx = c.transaction()?;
        tx.execute(
            "UPDATE hub_sites SET last_heartbeat_ms = ?2, last_heartbeat_json = ?3 WHERE site_id = ?1",
            params![site, now_ms, json],
        )?;
        tx.execute(
            "INSERT INTO hub_heartbeats (site_id, received_ms, json) VALUES (?1, ?2, ?3)",
            params![site, now_ms, json],
        )?;
        // Keep 90 days of heartbeat history.
        tx.execute(
            "DELETE FROM hub_heartbeats WHERE site_id = ?1 AND received_ms < ?2",
            params![site, now_ms - 90 * 86_400_000],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn upload(&self, upload_id: &str) -> Result<Option<UploadRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {UPLOAD_COLS} FROM hub_uploads WHERE upload_id = ?1"),
                [upload_id],
                upload_from_row,
            )
            .optional()?)
    }

    fn create_upload(&self, u: &UploadRow) -> Result<(), StoreError> {
        self.conn().execute(
            &format!("INSERT INTO hub_uploads ({UPLOAD_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
            params![
                u.upload_id, u.site, u.dataset, u.path, u.size as i64, u.blake3, u.chunk_size as i64,
                u.total_chunks as i64, u.next_chunk as i64, u.modified, u.started_ms, u.updated_ms
            ],
        )?;
        Ok(())
    }

    fn set_upload_progress(
        &self,
        upload_id: &str,
        next_chunk: u64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE hub_uploads SET next_chunk = ?2, updated_ms = ?3 WHERE upload_id = ?1",
            params![upload_id, next_chunk as i64, now_ms],
        )?;
        Ok(())
    }

    fn delete_upload(&self, upload_id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM hub_uploads WHERE upload_id = ?1", [upload_id])?;
        Ok(())
    }

    fn complete_upload(&self, upload_id: &str, f: &FileEntry) -> Result<(), StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        tx.execute(
            &format!("INSERT INTO hub_files ({FILE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
            params![
                f.site,
                f.dataset,
                f.path,
                f.size as i64,
                f.blake3,
                f.modified,
                f.received_ms
            ],
        )?;
        tx.execute("DELETE FROM hub_uploads WHERE upload_id = ?1", [upload_id])?;
        tx.commit()?;
        Ok(())
    }

    fn latest_file(
        &self,
        site: &str,
        dataset: &str,
        path: &str,
    ) -> Result<Option<FileEntry>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {FILE_COLS} FROM hub_files WHERE site_id = ?1 AND dataset = ?2 AND path = ?3 ORDER BY id DESC LIMIT 1"),
                params![site, dataset, path],
                file_from_row,
            )
            .optional()?)
    }

    fn stale_uploads(&self, before_ms: i64) -> Result<Vec<UploadRow>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare(&format!(
            "SELECT {UPLOAD_COLS} FROM hub_uploads WHERE updated_ms < ?1"
        ))?;
        let rows = st.query_map([before_ms], upload_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn sites(&self) -> Result<Vec<SiteOverview>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT s.site_id, s.created_ms, s.last_heartbeat_ms, s.last_heartbeat_json,
                    (SELECT MAX(received_ms) FROM hub_files f WHERE f.site_id = s.site_id),
                    (SELECT COUNT(*) FROM hub_files f WHERE f.site_id = s.site_id),
                    (SELECT COALESCE(SUM(size), 0) FROM hub_files f WHERE f.site_id = s.site_id)
             FROM hub_sites s ORDER BY s.site_id",
        )?;
        let rows = st.query_map([], |r| {
            let json: Option<String> = r.get(3)?;
            Ok(SiteOverview {
                site: r.get(0)?,
                created_ms: r.get(1)?,
                last_heartbeat_ms: r.get(2)?,
                last_heartbeat: json.and_then(|j| serde_json::from_str(&j).ok()),
                last_data_ms: r.get(4)?,
                files_total: r.get::<_, i64>(5)? as u64,
                bytes_total: r.get::<_, i64>(6)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn monthly_bytes(&self, site: Option<&str>) -> Result<Vec<MonthlyBytes>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT site_id, dataset, strftime('%Y-%m', received_ms / 1000, 'unixepoch') AS month,
                    COUNT(*), SUM(size)
             FROM hub_files WHERE (?1 IS NULL OR site_id = ?1)
             GROUP BY site_id, dataset, month ORDER BY site_id, month DESC, dataset",
        )?;
        let rows = st.query_map([site], |r| {
            Ok(MonthlyBytes {
                site: r.get(0)?,
                dataset: r.get(1)?,
                month: r.get(2)?,
                files: r.get::<_, i64>(3)? as u64,
                bytes: r.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn received_since(&self, since_ms: i64) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT site_id, COUNT(*), SUM(size) FROM hub_files WHERE received_ms >= ?1 GROUP BY site_id ORDER BY site_id",
        )?;
        let rows = st.query_map([since_ms], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn recent_files(&self, site: &str, limit: u32) -> Result<Vec<FileEntry>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare(&format!(
            "SELECT {FILE_COLS} FROM hub_files WHERE site_id = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = st.query_map(params![site, limit], file_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn open_uploads(&self, site: &str) -> Result<Vec<UploadRow>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare(&format!(
            "SELECT {UPLOAD_COLS} FROM hub_uploads WHERE site_id = ?1 ORDER BY started_ms"
        ))?;
        let rows = st.query_map([site], upload_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
