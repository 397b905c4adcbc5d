//! [`HubStore`] on the PostgreSQL state database, so several `edusync serve`
//! processes sharing one state (`state = "postgres://…"`) share the hub's
//! sites, tokens, uploads, manifest and heartbeats.
//!
//! Same tables and behaviour as the SQLite implementation in
//! [`super::store`] (the `hub_` prefix, their own `hub_schema_version`),
//! with three differences: site and dataset ids sort as bytes (`COLLATE "C"`,
//! as SQLite compares them); migrations run under a transaction-scoped advisory
//! lock, so two processes starting together migrate once; and sums are cast
//! back to `BIGINT` (PostgreSQL sums `BIGINT` into `NUMERIC`).
//!
//! One connection per store behind a mutex; the hub calls it from
//! `spawn_blocking`, and [`edusync_db::block_on`] needs no runtime.
//!
//! What several processes share: every row here; received files land under
//! `[hub] root`, so processes serving one hub need the same `root` (a shared
//! file system), where the lock file per upload ([`super::Hub`]) keeps an
//! upload to one request at a time across them.

use std::sync::{Mutex, MutexGuard};

use edusync_db::{block_on, pg};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::store::{FileEntry, HubStore, MonthlyBytes, SiteOverview, StoreError, UploadRow};
use crate::protocol::Heartbeat;

/// Migrations, in order; `hub_schema_version` holds how many have run.
/// Never edit a released migration: add a new one.
const MIGRATIONS: &[&str] = &["CREATE TABLE hub_sites (
        site_id TEXT COLLATE \"C\" PRIMARY KEY,
        token_hash TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        last_heartbeat_ms BIGINT,
        last_heartbeat_json TEXT
    );
    CREATE TABLE hub_heartbeats (
        site_id TEXT NOT NULL,
        received_ms BIGINT NOT NULL,
        json TEXT NOT NULL
    );
    CREATE INDEX hub_heartbeats_site ON hub_heartbeats (site_id, received_ms);
    CREATE TABLE hub_uploads (
        upload_id TEXT PRIMARY KEY,
        site_id TEXT NOT NULL,
        dataset TEXT NOT NULL,
        path TEXT NOT NULL,
        size BIGINT NOT NULL,
        blake3 TEXT NOT NULL,
        chunk_size BIGINT NOT NULL,
        total_chunks BIGINT NOT NULL,
        next_chunk BIGINT NOT NULL,
        modified TEXT,
        started_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL
    );
    CREATE INDEX hub_uploads_site ON hub_uploads (site_id, started_ms);
    CREATE INDEX hub_uploads_updated ON hub_uploads (updated_ms);
    CREATE TABLE hub_files (
        id BIGSERIAL PRIMARY KEY,
        site_id TEXT COLLATE \"C\" NOT NULL,
        dataset TEXT COLLATE \"C\" NOT NULL,
        path TEXT NOT NULL,
        size BIGINT NOT NULL,
        blake3 TEXT NOT NULL,
        modified TEXT,
        received_ms BIGINT NOT NULL
    );
    CREATE INDEX hub_files_site_time ON hub_files (site_id, received_ms);
    CREATE INDEX hub_files_path ON hub_files (site_id, dataset, path, id);"];

/// Serialises hub migrations across processes (distinct from the state store's).
const MIGRATION_LOCK: i64 = 0x0068_7562_5f6d_6967;

/// [`HubStore`] on a PostgreSQL state database.
pub struct PgHubStore {
    client: Mutex<pg::Client>,
    location: String,
}

impl std::fmt::Debug for PgHubStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgHubStore({})", self.location)
    }
}

type PgResult<T> = std::result::Result<T, tokio_postgres::Error>;

impl PgHubStore {
    /// Connects to the state database at `url` (`password`, when given,
    /// replaces the URL's) and brings the `hub_` tables up to date.
    pub fn open(url: &str, password: Option<&str>) -> Result<PgHubStore, StoreError> {
        let location = pg::describe(url);
        let client = pg::connect(url, password, "edusync hub")
            .map_err(|e| StoreError::Db(format!("cannot open the hub's state: {e}")))?;
        let store = PgHubStore {
            client: Mutex::new(client),
            location,
        };
        store.migrate()?;
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, pg::Client> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, e: tokio_postgres::Error) -> StoreError {
        StoreError::Db(format!("{}: {}", self.location, pg::message(&e)))
    }

    fn at<T>(&self, r: PgResult<T>) -> Result<T, StoreError> {
        r.map_err(|e| self.err(e))
    }

    fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let c = self.lock();
        self.at(block_on(c.execute(sql, params)))
    }

    fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        let c = self.lock();
        self.at(block_on(c.query(sql, params)))
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.lock();
        let r: PgResult<Result<(), StoreError>> = block_on(async {
            let tx = c.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS hub_schema_version (version INTEGER NOT NULL)",
            )
            .await?;
            let version: Option<i32> = tx
                .query_opt("SELECT version FROM hub_schema_version", &[])
                .await?
                .map(|r| r.get(0));
            let version = match version {
                Some(v) => v as usize,
                None => {
                    tx.execute("INSERT INTO hub_schema_version (version) VALUES (0)", &[])
                        .await?;
                    0
                }
            };
            if version > MIGRATIONS.len() {
                return Ok(Err(StoreError::Db(format!(
                    "{}: the hub tables are at schema version {version}, newer than this edusync knows ({}); upgrade edusync",
                    self.location,
                    MIGRATIONS.len()
                ))));
            }
            for m in &MIGRATIONS[version..] {
                tx.batch_execute(m).await?;
            }
            tx.execute(
                "UPDATE hub_schema_version SET version = $1",
                &[&(MIGRATIONS.len() as i32)],
            )
            .await?;
            tx.commit().await?;
            Ok(Ok(()))
        });
        drop(c);
        self.at(r)?
    }
}

const UPLOAD_COLS: &str = "upload_id, site_id, dataset, path, size, blake3, chunk_size, total_chunks, next_chunk, modified, started_ms, updated_ms";
const FILE_COLS: &str = "site_id, dataset, path, size, blake3, modified, received_ms";

fn upload_row(r: &Row) -> UploadRow {
    UploadRow {
        upload_id: r.get(0),
        site: r.get(1),
        dataset: r.get(2),
        path: r.get(3),
        size: r.get::<_, i64>(4) as u64,
        blake3: r.get(5),
        chunk_size: r.get::<_, i64>(6) as u64,
        total_chunks: r.get::<_, i64>(7) as u64,
        next_chunk: r.get::<_, i64>(8) as u64,
        modified: r.get(9),
        started_ms: r.get(10),
        updated_ms: r.get(11),
    }
}

fn file_row(r: &Row) -> FileEntry {
    FileEntry {
        site: r.get(0),
        dataset: r.get(1),
        path: r.get(2),
        size: r.get::<_, i64>(3) as u64,
        blake3: r.get(4),
        modified: r.get(5),
        received_ms: r.get(6),
    }
}

impl HubStore for PgHubStore {
    fn add_site(&self, site: &str, token_hash: &str, now_ms: i64) -> Result<(), StoreError> {
        let c = self.lock();
        match block_on(c.execute(
            "INSERT INTO hub_sites (site_id, token_hash, created_ms) VALUES ($1, $2, $3)",
            &[&site, &token_hash, &now_ms],
        )) {
            Ok(_) => Ok(()),
            Err(e) if pg::sqlstate(&e) == Some("23505") => {
                Err(StoreError::SiteExists(site.to_string()))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    fn site_token_hash(&self, site: &str) -> Result<Option<String>, StoreError> {
        let rows = self.rows(
            "SELECT token_hash FROM hub_sites WHERE site_id = $1",
            &[&site],
        )?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn record_heartbeat(&self, site: &str, hb: &Heartbeat, now_ms: i64) -> Result<(), StoreError> {
        let json = serde_json::to_string(hb).map_err(|e| StoreError::Db(e.to_string()))?;
        let mut c = self.lock();
        let r: PgResult<()> = block_on(async {
            let tx = c.transaction().await?;
            tx.execute(
                "UPDATE hub_sites SET last_heartbeat_ms = $2, last_heartbeat_json = $3 WHERE site_id = $1",
                &[&site, &now_ms, &json],
            )
            .await?;
            tx.execute(
                "INSERT INTO hub_heartbeats (site_id, received_ms, json) VALUES ($1, $2, $3)",
                &[&site, &now_ms, &json],
            )
            .await?;
            // Keep 90 days of heartbeat history.
            tx.execute(
                "DELETE FROM hub_heartbeats WHERE site_id = $1 AND received_ms < $2",
                &[&site, &(now_ms - 90 * 86_400_000)],
            )
            .await?;
            tx.commit().await
        });
        drop(c);
        self.at(r)
    }

    fn upload(&self, upload_id: &str) -> Result<Option<UploadRow>, StoreError> {
        let rows = self.rows(
            &format!("SELECT {UPLOAD_COLS} FROM hub_uploads WHERE upload_id = $1"),
            &[&upload_id],
        )?;
        Ok(rows.first().map(upload_row))
    }

    fn create_upload(&self, u: &UploadRow) -> Result<(), StoreError> {
        self.exec(
            &format!("INSERT INTO hub_uploads ({UPLOAD_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"),
            &[
                &u.upload_id,
                &u.site,
                &u.dataset,
                &u.path,
                &(u.size as i64),
                &u.blake3,
                &(u.chunk_size as i64),
                &(u.total_chunks as i64),
                &(u.next_chunk as i64),
                &u.modified,
                &u.started_ms,
                &u.updated_ms,
            ],
        )
        .map(|_| ())
    }

    fn set_upload_progress(
        &self,
        upload_id: &str,
        next_chunk: u64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "UPDATE hub_uploads SET next_chunk = $2, updated_ms = $3 WHERE upload_id = $1",
            &[&upload_id, &(next_chunk as i64), &now_ms],
        )
        .map(|_| ())
    }

    fn delete_upload(&self, upload_id: &str) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM hub_uploads WHERE upload_id = $1",
            &[&upload_id],
        )
        .map(|_| ())
    }

    fn complete_upload(&self, upload_id: &str, f: &FileEntry) -> Result<(), StoreError> {
        let mut c = self.lock();
        let r: PgResult<()> = block_on(async {
            let tx = c.transaction().await?;
            tx.execute(
                &format!("INSERT INTO hub_files ({FILE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                &[
                    &f.site,
                    &f.dataset,
                    &f.path,
                    &(f.size as i64),
                    &f.blake3,
                    &f.modified,
                    &f.received_ms,
                ],
            )
            .await?;
            tx.execute(
                "DELETE FROM hub_uploads WHERE upload_id = $1",
                &[&upload_id],
            )
            .await?;
            tx.commit().await
        });
        drop(c);
        self.at(r)
    }

    fn latest_file(
        &self,
        site: &str,
        dataset: &str,
        path: &str,
    ) -> Result<Option<FileEntry>, StoreError> {
        let rows = self.rows(
            &format!("SELECT {FILE_COLS} FROM hub_files WHERE site_id = $1 AND dataset = $2 AND path = $3 ORDER BY id DESC LIMIT 1"),
            &[&site, &dataset, &path],
        )?;
        Ok(rows.first().map(file_row))
    }

    fn stale_uploads(&self, before_ms: i64) -> Result<Vec<UploadRow>, StoreError> {
        let rows = self.rows(
            &format!("SELECT {UPLOAD_COLS} FROM hub_uploads WHERE updated_ms < $1"),
            &[&before_ms],
        )?;
        Ok(rows.iter().map(upload_row).collect())
    }

    fn sites(&self) -> Result<Vec<SiteOverview>, StoreError> {
        let rows = self.rows(
            "SELECT s.site_id, s.created_ms, s.last_heartbeat_ms, s.last_heartbeat_json,
                    f.last_ms, COALESCE(f.n, 0), COALESCE(f.bytes, 0)
             FROM hub_sites s
             LEFT JOIN (SELECT site_id, MAX(received_ms) AS last_ms, COUNT(*) AS n, SUM(size)::BIGINT AS bytes
                        FROM hub_files GROUP BY site_id) f ON f.site_id = s.site_id
             ORDER BY s.site_id",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let json: Option<String> = r.get(3);
                SiteOverview {
                    site: r.get(0),
                    created_ms: r.get(1),
                    last_heartbeat_ms: r.get(2),
                    last_heartbeat: json.and_then(|j| serde_json::from_str(&j).ok()),
                    last_data_ms: r.get(4),
                    files_total: r.get::<_, i64>(5) as u64,
                    bytes_total: r.get::<_, i64>(6) as u64,
                }
            })
            .collect())
    }

    fn monthly_bytes(&self, site: Option<&str>) -> Result<Vec<MonthlyBytes>, StoreError> {
        let rows = self.rows(
            "SELECT site_id, dataset,
                    to_char(to_timestamp(received_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM') AS month,
                    COUNT(*), SUM(size)::BIGINT
             FROM hub_files WHERE ($1::text IS NULL OR site_id = $1)
             GROUP BY site_id, dataset, month ORDER BY site_id, month DESC, dataset",
            &[&site],
        )?;
        Ok(rows
            .iter()
            .map(|r| MonthlyBytes {
                site: r.get(0),
                dataset: r.get(1),
                month: r.get(2),
                files: r.get::<_, i64>(3) as u64,
                bytes: r.get::<_, i64>(4) as u64,
            })
            .collect())
    }

    fn received_since(&self, since_ms: i64) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let rows = self.rows(
            "SELECT site_id, COUNT(*), SUM(size)::BIGINT FROM hub_files WHERE received_ms >= $1 \
             GROUP BY site_id ORDER BY site_id",
            &[&since_ms],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get::<_, i64>(1) as u64,
                    r.get::<_, i64>(2) as u64,
                )
            })
            .collect())
    }

    fn recent_files(&self, site: &str, limit: u32) -> Result<Vec<FileEntry>, StoreError> {
        let rows = self.rows(
            &format!(
                "SELECT {FILE_COLS} FROM hub_files WHERE site_id = $1 ORDER BY id DESC LIMIT $2"
            ),
            &[&site, &(limit as i64)],
        )?;
        Ok(rows.iter().map(file_row).collect())
    }

    fn open_uploads(&self, site: &str) -> Result<Vec<UploadRow>, StoreError> {
        let rows = self.rows(
            &format!(
                "SELECT {UPLOAD_COLS} FROM hub_uploads WHERE site_id = $1 ORDER BY started_ms"
            ),
            &[&site],
        )?;
        Ok(rows.iter().map(upload_row).collect())
    }
}
