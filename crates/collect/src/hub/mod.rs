//! The hub: receives site files inside `edusync serve`.
//!
//! Design constraints (see also [`disk`]):
//! - Every request is authenticated: the site named in the path must exist
//!   and the bearer token's BLAKE3 hash must equal the one stored for it. A
//!   site can only ever write under `root/<its id>/`.
//! - A chunk is acknowledged only after it was decompressed, checked against
//!   the BLAKE3 hash the agent sent, written, synced and recorded. A file is
//!   acknowledged (`complete`) only after its whole content hashed to the
//!   announced BLAKE3 and it was atomically put in place and entered in the
//!   manifest (`hub_files`).
//! - One upload is worked on by one request at a time, so a retried request
//!   racing a stale one cannot interleave writes: a per-upload lock in the
//!   process, then an exclusive `flock` on `root/.partial/<id>.lock`, so
//!   several `serve` processes sharing the root and the state (PostgreSQL)
//!   hold to it too, whichever of them a site's requests reach.
//! - A crash between publishing a file and recording it is repaired by the
//!   next `complete`: the partial file is gone but the published file hashes
//!   right, so it is recorded then.
//! - A full disk answers 507 (retry later) and corrupts nothing: the partial
//!   file is cut back to its last recorded chunk on the next write.

pub mod disk;
pub mod http;
pub mod store;
pub mod store_pg;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngCore;

use crate::protocol::{
    check_relative_path, is_valid_name, total_chunks, upload_id, BeginUpload, Heartbeat,
    UploadStatus, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE,
};
use disk::{is_disk_full, partial_path, Disk, FsDisk, QuotaDisk};
use store::{FileEntry, HubStore, SqliteHubStore, StoreError, UploadRow};
use store_pg::PgHubStore;

/// A refused or failed hub request. [`HubError::status`] gives its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("no site token given; send `Authorization: Bearer <token>` with the token `edusync site add` printed")]
    MissingToken,
    #[error(
        "unknown site {0:?}; register it on the hub with `edusync site add --config FILE {0}`"
    )]
    UnknownSite(String),
    #[error("the token does not belong to site {0:?}; use the token `edusync site add` printed for this site")]
    BadToken(String),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("file {dataset}/{path} is {size} bytes, more than this hub accepts ({max} bytes, [hub] max_file_bytes)")]
    TooLarge {
        dataset: String,
        path: String,
        size: u64,
        max: u64,
    },
    #[error("no upload {0} is in progress for this site; begin it again")]
    UnknownUpload(String),
    #[error("chunk {got} arrived but the hub expects chunk {}; carry on from there", .status.next_chunk)]
    OutOfOrder { got: u64, status: UploadStatus },
    #[error("upload {} is not complete: the hub holds {} of {} chunks", .0.upload_id, .0.next_chunk, .0.total_chunks)]
    Incomplete(UploadStatus),
    #[error(
        "chunk {0} does not match its BLAKE3 hash or length (damaged in transit); send it again"
    )]
    ChunkCorrupt(u64),
    #[error("file {0} does not match its announced BLAKE3 hash (it changed while being sent?); the upload was dropped, send it again")]
    HashMismatch(String),
    #[error("the hub's disk is full; nothing was lost, try again later")]
    DiskFull,
    #[error("hub storage error: {0}")]
    Io(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HubError {
    pub fn status(&self) -> u16 {
        match self {
            HubError::MissingToken | HubError::UnknownSite(_) | HubError::BadToken(_) => 401,
            HubError::BadRequest { .. } => 400,
            HubError::TooLarge { .. } => 413,
            HubError::UnknownUpload(_) => 404,
            HubError::OutOfOrder { .. } | HubError::Incomplete(_) => 409,
            HubError::ChunkCorrupt(_) | HubError::HashMismatch(_) => 422,
            HubError::DiskFull => 507,
            HubError::Io(_) | HubError::Store(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            HubError::MissingToken => "missing_token",
            HubError::UnknownSite(_) => "unknown_site",
            HubError::BadToken(_) => "bad_token",
            HubError::BadRequest { code, .. } => code,
            HubError::TooLarge { .. } => "too_large",
            HubError::UnknownUpload(_) => "unknown_upload",
            HubError::OutOfOrder { .. } => "out_of_order",
            HubError::Incomplete(_) => "incomplete",
            HubError::ChunkCorrupt(_) => "chunk_corrupt",
            HubError::HashMismatch(_) => "hash_mismatch",
            HubError::DiskFull => "disk_full",
            HubError::Io(_) => "io",
            HubError::Store(_) => "store",
        }
    }

    fn io(e: std::io::Error, what: &str) -> HubError {
        if is_disk_full(&e) {
            HubError::DiskFull
        } else {
            HubError::Io(format!("{what}: {e}"))
        }
    }
}

fn bad(code: &'static str, message: impl Into<String>) -> HubError {
    HubError::BadRequest {
        code,
        message: message.into(),
    }
}

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A new site token: 256 random bits, shown once.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("edst_{hex}")
}

/// What the hub stores instead of the token.
pub fn hash_token(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// Registers `site` and returns its token (the only time it exists in clear).
pub fn add_site(store: &dyn HubStore, site: &str) -> Result<String, HubError> {
    if !is_valid_name(site) {
        return Err(bad(
            "bad_site_id",
            format!("site id {site:?}: use 1–64 letters, digits, '.', '-' or '_' (not starting with '.')"),
        ));
    }
    let token = new_token();
    store.add_site(site, &hash_token(&token), now_ms())?;
    Ok(token)
}

/// Hub settings (from `[hub]` in the edusync config).
#[derive(Debug, Clone)]
pub struct HubSettings {
    pub root: PathBuf,
    pub max_file_bytes: u64,
}

/// The hub: authentication, uploads, heartbeats. Served by `edusync-server`
/// through [`http::routes`].
pub struct Hub {
    store: Arc<dyn HubStore>,
    disk: Arc<dyn Disk>,
    settings: HubSettings,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while one request works on one upload: the process's lock and the
/// lock file's `flock` (released when the file is closed).
struct UploadGuard {
    _file: std::fs::File,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

/// `root/.partial/<id>.lock`, beside the partial file.
fn lock_path(root: &Path, upload_id: &str) -> PathBuf {
    root.join(".partial").join(format!("{upload_id}.lock"))
}

#[derive(Debug, thiserror::Error)]
pub enum HubOpenError {
    #[error("{0}")]
    Config(#[from] edusync_config::ConfigError),
    #[error("cannot open the hub's state: {0}")]
    Store(#[from] StoreError),
    #[error("cannot use hub root {path}: {source} (check [hub] root exists or can be created, and is writable)")]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Opens the hub's store from the edusync config: the `hub_` tables of the
/// state database, SQLite or PostgreSQL (shared by every `serve` on it).
pub fn open_store(config: &edusync_config::Config) -> Result<Arc<dyn HubStore>, HubOpenError> {
    match &config.state {
        edusync_config::StateUrl::Sqlite(p) => Ok(Arc::new(SqliteHubStore::open(p)?)),
        edusync_config::StateUrl::Postgres(url) => {
            let password = config.state_password()?;
            Ok(Arc::new(PgHubStore::open(url, password.as_deref())?))
        }
    }
}

impl Hub {
    pub fn new(store: Arc<dyn HubStore>, disk: Arc<dyn Disk>, settings: HubSettings) -> Hub {
        Hub {
            store,
            disk,
            settings,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The hub as `edusync serve` runs it.
    pub fn open(config: &edusync_config::Config) -> Result<Hub, HubOpenError> {
        let store = open_store(config)?;
        let root = config.hub.root.clone();
        std::fs::create_dir_all(root.join(".partial")).map_err(|source| HubOpenError::Root {
            path: root.clone(),
            source,
        })?;
        let disk: Arc<dyn Disk> = match config.hub.quota_bytes {
            Some(q) => Arc::new(
                QuotaDisk::new(&root, q).map_err(|source| HubOpenError::Root {
                    path: root.clone(),
                    source,
                })?,
            ),
            None => Arc::new(FsDisk),
        };
        Ok(Hub::new(
            store,
            disk,
            HubSettings {
                root,
                max_file_bytes: config.hub.max_file_bytes,
            },
        ))
    }

    pub fn store(&self) -> &Arc<dyn HubStore> {
        &self.store
    }

    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn HubStore, &dyn Disk) -> Result<T, HubError> + Send + 'static,
    ) -> Result<T, HubError> {
        let store = self.store.clone();
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || f(&*store, &*disk))
            .await
            .map_err(|e| HubError::Io(format!("worker failed: {e}")))?
    }

    /// Checks that `token` belongs to `site`.
    pub async fn authenticate(&self, site: &str, token: Option<&str>) -> Result<(), HubError> {
        let token = token.ok_or(HubError::MissingToken)?;
        let presented =
            blake3::Hash::from_hex(hash_token(token)).map_err(|e| HubError::Io(e.to_string()))?;
        let s = site.to_string();
        let stored = self
            .blocking(move |st, _| Ok(st.site_token_hash(&s)?))
            .await?;
        let Some(stored) = stored else {
            return Err(HubError::UnknownSite(site.to_string()));
        };
        let stored = blake3::Hash::from_hex(stored).map_err(|e| HubError::Io(e.to_string()))?;
        // blake3::Hash equality is constant-time.
        if stored == presented {
            Ok(())
        } else {
            Err(HubError::BadToken(site.to_string()))
        }
    }

    pub async fn heartbeat(&self, site: &str, hb: Heartbeat) -> Result<(), HubError> {
        let s = site.to_string();
        tracing::debug!(site, backlog_files = hb.backlog_files, "heartbeat");
        self.blocking(move |st, _| Ok(st.record_heartbeat(&s, &hb, now_ms())?))
            .await
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 10_000 {
            m.retain(|_, v| Arc::strong_count(v) > 1);
        }
        m.entry(id.to_string()).or_default().clone()
    }

    /// Waits until this request alone works on upload `id` (see the module doc).
    async fn guard(&self, id: &str) -> Result<UploadGuard, HubError> {
        // The id names a file here: only what `upload_id` makes is taken.
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(HubError::UnknownUpload(id.to_string()));
        }
        let local = self.lock_for(id).lock_owned().await;
        let path = lock_path(&self.settings.root, id);
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let open = || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
            };
            let file = match open() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    open()?
                }
                r => r?,
            };
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
            Ok(file)
        })
        .await
        .map_err(|e| HubError::Io(format!("worker failed: {e}")))?
        .map_err(|e| HubError::io(e, "locking the upload"))?;
        Ok(UploadGuard {
            _file: file,
            _local: local,
        })
    }

    fn final_path(&self, site: &str, dataset: &str, path: &str) -> PathBuf {
        let mut p = self.settings.root.join(site).join(dataset);
        for c in path.split('/') {
            p.push(c);
        }
        p
    }

    /// Starts or finds the upload of one file version.
    pub async fn begin(&self, site: &str, req: BeginUpload) -> Result<UploadStatus, HubError> {
        if !is_valid_name(&req.dataset) {
            return Err(bad("bad_dataset", format!("dataset name {:?}: use 1–64 letters, digits, '.', '-' or '_' (not starting with '.')", req.dataset)));
        }
        if let Err(why) = check_relative_path(&req.path) {
            return Err(bad(
                "path_rejected",
                format!("path {:?} refused: {why}", req.path),
            ));
        }
        if req.size > self.settings.max_file_bytes {
            return Err(HubError::TooLarge {
                dataset: req.dataset,
                path: req.path,
                size: req.size,
                max: self.settings.max_file_bytes,
            });
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&req.chunk_size) {
            return Err(bad(
                "bad_chunk_size",
                format!(
                    "chunk_size {} must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}",
                    req.chunk_size
                ),
            ));
        }
        if blake3::Hash::from_hex(&req.blake3).is_err() {
            return Err(bad("bad_hash", "blake3 must be 64 hex digits"));
        }
        let id = upload_id(site, &req);
        let _g = self.guard(&id).await?;
        let site = site.to_string();
        self.blocking(move |st, _| {
            let total = total_chunks(req.size, req.chunk_size);
            if let Some(u) = st.upload(&id)? {
                return Ok(UploadStatus {
                    upload_id: id,
                    next_chunk: u.next_chunk,
                    total_chunks: u.total_chunks,
                    complete: false,
                });
            }
            if let Some(f) = st.latest_file(&site, &req.dataset, &req.path)? {
                if f.blake3 == req.blake3 && f.size == req.size {
                    return Ok(UploadStatus {
                        upload_id: id,
                        next_chunk: total,
                        total_chunks: total,
                        complete: true,
                    });
                }
            }
            let now = now_ms();
            st.create_upload(&UploadRow {
                upload_id: id.clone(),
                site,
                dataset: req.dataset,
                path: req.path,
                size: req.size,
                blake3: req.blake3,
                chunk_size: req.chunk_size,
                total_chunks: total,
                next_chunk: 0,
                modified: req.modified,
                started_ms: now,
                updated_ms: now,
            })?;
            Ok(UploadStatus {
                upload_id: id,
                next_chunk: 0,
                total_chunks: total,
                complete: false,
            })
        })
        .await
    }

    async fn upload_of(&self, site: &str, id: &str) -> Result<UploadRow, HubError> {
        let i = id.to_string();
        let row = self.blocking(move |st, _| Ok(st.upload(&i)?)).await?;
        match row {
            Some(u) if u.site == site => Ok(u),
            _ => Err(HubError::UnknownUpload(id.to_string())),
        }
    }

    /// Stores chunk `n` (zstd-compressed `body`) of upload `id`.
    pub async fn put_chunk(
        &self,
        site: &str,
        id: &str,
        n: u64,
        chunk_hash: &str,
        body: Vec<u8>,
    ) -> Result<UploadStatus, HubError> {
        let _g = self.guard(id).await?;
        let u = self.upload_of(site, id).await?;
        let status = |next| UploadStatus {
            upload_id: id.to_string(),
            next_chunk: next,
            total_chunks: u.total_chunks,
            complete: false,
        };
        if n < u.next_chunk {
            return Ok(status(u.next_chunk)); // already held: acknowledge again
        }
        if n > u.next_chunk || n >= u.total_chunks {
            return Err(HubError::OutOfOrder {
                got: n,
                status: status(u.next_chunk),
            });
        }
        let Ok(want) = blake3::Hash::from_hex(chunk_hash) else {
            return Err(bad(
                "bad_hash",
                format!(
                    "the {} header must be 64 hex digits",
                    crate::protocol::CHUNK_HASH_HEADER
                ),
            ));
        };
        let offset = n * u.chunk_size;
        let len = (u.size - offset).min(u.chunk_size);
        let part = partial_path(&self.settings.root, id);
        let idc = id.to_string();
        self.blocking(move |st, disk| {
            use std::io::Read;
            let mut data = Vec::with_capacity(len as usize);
            zstd::stream::read::Decoder::new(&body[..])
                .and_then(|d| d.take(len + 1).read_to_end(&mut data))
                .map_err(|_| HubError::ChunkCorrupt(n))?;
            if data.len() as u64 != len || blake3::hash(&data) != want {
                return Err(HubError::ChunkCorrupt(n));
            }
            disk.write_at(&part, offset, &data)
                .map_err(|e| HubError::io(e, "writing chunk"))?;
            st.set_upload_progress(&idc, n + 1, now_ms())?;
            Ok(())
        })
        .await?;
        Ok(status(n + 1))
    }

    /// Verifies and publishes a fully received upload.
    pub async fn complete(&self, site: &str, id: &str) -> Result<UploadStatus, HubError> {
        let _g = self.guard(id).await?;
        let u = self.upload_of(site, id).await?;
        let status = UploadStatus {
            upload_id: id.to_string(),
            next_chunk: u.next_chunk,
            total_chunks: u.total_chunks,
            complete: false,
        };
        if u.next_chunk < u.total_chunks {
            return Err(HubError::Incomplete(status));
        }
        let part = partial_path(&self.settings.root, id);
        let dest = self.final_path(&u.site, &u.dataset, &u.path);
        let r = self
            .blocking(move |st, disk| {
                let file = FileEntry {
                    site: u.site.clone(),
                    dataset: u.dataset.clone(),
                    path: u.path.clone(),
                    size: u.size,
                    blake3: u.blake3.clone(),
                    modified: u.modified.clone(),
                    received_ms: now_ms(),
                };
                if !part.exists() {
                    // Published before a crash, not yet recorded?
                    return match disk.hash(&dest) {
                        Ok((size, h)) if size == u.size && h == u.blake3 => {
                            st.complete_upload(&u.upload_id, &file)?;
                            Ok(())
                        }
                        _ => {
                            st.delete_upload(&u.upload_id)?;
                            Err(HubError::UnknownUpload(u.upload_id.clone()))
                        }
                    };
                }
                let (size, h) = disk.hash(&part).map_err(|e| HubError::io(e, "reading partial file"))?;
                if size != u.size || h != u.blake3 {
                    disk.remove(&part).map_err(|e| HubError::io(e, "removing partial file"))?;
                    st.delete_upload(&u.upload_id)?;
                    return Err(HubError::HashMismatch(format!("{}/{}", u.dataset, u.path)));
                }
                disk.publish(&part, &dest).map_err(|e| HubError::io(e, "publishing file"))?;
                st.complete_upload(&u.upload_id, &file)?;
                tracing::info!(site = %u.site, dataset = %u.dataset, path = %u.path, bytes = u.size, "file received");
                Ok(())
            })
            .await;
        if matches!(
            r,
            Ok(()) | Err(HubError::HashMismatch(_) | HubError::UnknownUpload(_))
        ) {
            // The upload is over: its lock file goes (still held, so a request
            // waiting on it finds the upload gone and says so).
            let _ = std::fs::remove_file(lock_path(&self.settings.root, id));
        }
        r?;
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(UploadStatus {
            complete: true,
            next_chunk: status.total_chunks,
            ..status
        })
    }

    /// Drops uploads untouched for `older_than` and their partial files.
    pub async fn cleanup_stale(&self, older_than: Duration) -> Result<usize, HubError> {
        let root = self.settings.root.clone();
        let before = now_ms() - older_than.as_millis() as i64;
        self.blocking(move |st, disk| {
            let stale = st.stale_uploads(before)?;
            for u in &stale {
                disk.remove(&partial_path(&root, &u.upload_id))
                    .map_err(|e| HubError::io(e, "removing partial file"))?;
                st.delete_upload(&u.upload_id)?;
                let _ = std::fs::remove_file(lock_path(&root, &u.upload_id));
            }
            Ok(stale.len())
        })
        .await
    }

    pub fn root(&self) -> &Path {
        &self.settings.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two hubs (two `serve` processes) on one root and one state: while one
    /// works on an upload, the other's request for it waits for the lock
    /// file, and then goes ahead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hubs_sharing_a_root_work_on_an_upload_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn HubStore> =
            Arc::new(SqliteHubStore::open(&dir.path().join("state.db")).unwrap());
        store.add_site("s1", "unused", 0).unwrap();
        let settings = || HubSettings {
            root: dir.path().join("root"),
            max_file_bytes: 1 << 20,
        };
        let a = Hub::new(store.clone(), Arc::new(FsDisk), settings());
        let b = Hub::new(store, Arc::new(FsDisk), settings());
        let data = vec![7u8; MIN_CHUNK_SIZE as usize];
        let st = a
            .begin(
                "s1",
                BeginUpload {
                    dataset: "progress".into(),
                    path: "a.csv".into(),
                    size: data.len() as u64,
                    blake3: blake3::hash(&data).to_hex().to_string(),
                    chunk_size: MIN_CHUNK_SIZE,
                    modified: None,
                },
            )
            .await
            .unwrap();
        let id = st.upload_id.clone();

        let held = a.guard(&id).await.unwrap();
        let body = zstd::bulk::compress(&data, 3).unwrap();
        let hash = blake3::hash(&data).to_hex().to_string();
        let b = Arc::new(b);
        let put = {
            let (b, id) = (b.clone(), id.clone());
            tokio::spawn(async move { b.put_chunk("s1", &id, 0, &hash, body).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !put.is_finished(),
            "the other hub did not wait for the lock"
        );
        drop(held);
        let st = tokio::time::timeout(Duration::from_secs(10), put)
            .await
            .expect("the other hub went ahead once the lock was free")
            .unwrap()
            .unwrap();
        assert_eq!(st.next_chunk, 1);
        let done = b.complete("s1", &id).await.unwrap();
        assert!(done.complete);
        assert!(!lock_path(&dir.path().join("root"), &id).exists());
        // Ids that are not ours never name a file.
        assert!(matches!(
            a.guard("../../etc/passwd").await,
            Err(HubError::UnknownUpload(_))
        ));
    }
}
