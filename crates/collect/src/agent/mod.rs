//! `edusync agent`: ships a site's data files to the hub whenever it can.
//!
//! Design constraints:
//! - The hub is the authority on what it holds: every upload starts with
//!   `begin`, which says from which chunk to carry on. The agent never
//!   assumes a chunk arrived until the hub answered for it, and never resends
//!   one the hub acknowledged (bytes on the wire after a crash: at most the
//!   one chunk that was in flight).
//! - A file is sent only once it has settled (same size and mtime for
//!   `settle`, or last modified longer ago than that), and is watched while
//!   being sent: if it changes, the upload stops and the new version is sent
//!   once it settles again.
//! - The local [`ledger`] is written only after the hub acknowledged a whole
//!   file, so a restart (even `kill -9`) resends nothing already acknowledged.
//! - Pruning (`prune_after`, off by default) deletes a file only after the
//!   hub acknowledged that exact version and the retention period passed.
//! - Unreachable hub: exponential back-off with jitter up to `retry_max`;
//!   nothing is dropped, the backlog just waits.

pub mod config;
pub mod ledger;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use crate::protocol::{
    total_chunks, BeginUpload, ErrorBody, Heartbeat, UploadStatus, CHUNK_HASH_HEADER,
};
pub use config::{AgentConfig, AgentConfigError, DatasetConfig};
use ledger::{Acked, Ledger, LedgerError};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] AgentConfigError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot create the agent's state_dir {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set up the HTTP client: {0} (check `proxy` in the agent config)")]
    Client(String),
}

/// Why sending one file stopped.
#[derive(Debug)]
enum SendError {
    /// Worth trying again later (network, hub busy, disk full at the hub, …).
    Retry(String),
    /// The hub refused this version for good (too big, bad path).
    Refused(String),
    /// The file changed while being sent; it will be sent when it settles.
    Changed,
    /// The hub no longer has the upload or the hash did not match: forget the cached hash.
    Rehash(String),
}

/// (dataset, path) -> (size, mtime, blake3) of files hashed but not yet acknowledged.
type HashCache = HashMap<(usize, String), (u64, i64, String)>;

/// One file found by a scan.
#[derive(Debug, Clone)]
struct Candidate {
    dataset: usize,
    rel: String,
    abs: PathBuf,
    size: u64,
    mtime_ns: i64,
}

/// A token bucket pacing the bytes put on the wire.
struct Throttle {
    rate: u64,
    next: tokio::sync::Mutex<Instant>,
}

impl Throttle {
    async fn take(&self, n: usize) {
        let wait = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            // Allow a quarter second of burst after an idle spell.
            let floor = now.checked_sub(Duration::from_millis(250)).unwrap_or(now);
            let start = (*next).max(floor);
            *next = start + Duration::from_secs_f64(n as f64 / self.rate as f64);
            next.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Counters, readable while the agent runs (tests, logs).
#[derive(Debug, Default, Clone)]
pub struct AgentStats {
    pub files_sent: u64,
    pub chunks_sent: u64,
    pub wire_bytes: u64,
}

pub struct Agent {
    cfg: AgentConfig,
    token: SecretString,
    client: reqwest::Client,
    ledger: Mutex<Ledger>,
    throttle: Option<Arc<Throttle>>,
    started: Instant,
    /// (dataset, path) -> (size, mtime, first seen with this stat)
    settling: HashMap<(usize, String), (u64, i64, Instant)>,
    /// (dataset, path) -> (size, mtime, blake3)
    hashes: Mutex<HashCache>,
    stats: Arc<Mutex<AgentStats>>,
}

fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn hash_file(p: &Path) -> std::io::Result<(u64, String)> {
    crate::hub::disk::Disk::hash(&crate::hub::disk::FsDisk, p)
}

impl Agent {
    pub fn new(cfg: AgentConfig) -> Result<Agent, AgentError> {
        let token = cfg.token()?;
        std::fs::create_dir_all(&cfg.state_dir).map_err(|source| AgentError::StateDir {
            path: cfg.state_dir.clone(),
            source,
        })?;
        let ledger = Ledger::open(&cfg.state_dir)?;
        let mut b = reqwest::Client::builder()
            .user_agent(format!("edusync-agent/{VERSION}"))
            .connect_timeout(Duration::from_secs(10).min(cfg.request_timeout))
            .timeout(cfg.request_timeout)
            .pool_idle_timeout(Duration::from_secs(30));
        b = match &cfg.proxy {
            Some(p) => {
                b.proxy(reqwest::Proxy::all(p).map_err(|e| AgentError::Client(e.to_string()))?)
            }
            None => b.no_proxy(),
        };
        let client = b.build().map_err(|e| AgentError::Client(e.to_string()))?;
        let throttle = (cfg.max_bytes_per_second > 0).then(|| {
            Arc::new(Throttle {
                rate: cfg.max_bytes_per_second,
                next: tokio::sync::Mutex::new(Instant::now()),
            })
        });
        Ok(Agent {
            cfg,
            token,
            client,
            ledger: Mutex::new(ledger),
            throttle,
            started: Instant::now(),
            settling: HashMap::new(),
            hashes: Mutex::default(),
            stats: Arc::default(),
        })
    }

    pub fn stats(&self) -> Arc<Mutex<AgentStats>> {
        self.stats.clone()
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs until `shutdown` completes (or a fatal local error).
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), AgentError> {
        tracing::info!(site = %self.cfg.site, hub = %self.cfg.hub, datasets = self.cfg.datasets.len(), "agent started");
        tokio::select! {
            r = self.main_loop() => r,
            _ = shutdown => {
                tracing::info!("agent stopping");
                Ok(())
            }
        }
    }

    async fn main_loop(&mut self) -> Result<(), AgentError> {
        let initial = Duration::from_millis(500).min(self.cfg.retry_max);
        let mut backoff = initial;
        let mut next_heartbeat = Instant::now();
        let mut last_backlog = 0u64;
        loop {
            let (ready, backlog_files, backlog_bytes, settling) = self.scan().await?;
            let heartbeat_due =
                Instant::now() >= next_heartbeat || (last_backlog > 0 && backlog_files == 0);
            last_backlog = backlog_files;
            if heartbeat_due {
                match self.heartbeat(backlog_files, backlog_bytes).await {
                    Ok(()) => next_heartbeat = Instant::now() + self.cfg.heartbeat_interval,
                    Err(e) => {
                        tracing::warn!(error = %e, "heartbeat not delivered; will retry");
                        next_heartbeat = Instant::now() + backoff.min(self.cfg.heartbeat_interval);
                    }
                }
            }
            let mut failed = false;
            let mut sent_any = false;
            // Up to `parallel_uploads` files at once (hides round trips and the
            // hub's syncs); after the first retryable failure no new file starts.
            let stop = std::sync::atomic::AtomicBool::new(false);
            let this = &*self;
            let results: Vec<(Candidate, Option<Result<(), SendError>>)> =
                futures_util::stream::iter(ready)
                    .map(|c| {
                        let stop = &stop;
                        async move {
                            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                                return (c, None);
                            }
                            let r = this.send(&c).await;
                            if matches!(r, Err(SendError::Retry(_) | SendError::Rehash(_))) {
                                stop.store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                            (c, Some(r))
                        }
                    })
                    .buffered(self.cfg.parallel_uploads)
                    .collect()
                    .await;
            for (c, r) in results {
                let Some(r) = r else { continue };
                match r {
                    Ok(()) => {
                        backoff = initial;
                        sent_any = true;
                    }
                    Err(SendError::Changed) => {
                        tracing::info!(path = %c.abs.display(), "file changed while being sent; will send it once it settles");
                        self.settling.remove(&(c.dataset, c.rel.clone()));
                    }
                    Err(SendError::Refused(why)) => {
                        tracing::error!(path = %c.abs.display(), reason = %why, "hub refused this file; it will be sent again only if it changes");
                        self.ledger().record_rejected(
                            &self.cfg.datasets[c.dataset].name,
                            &c.rel,
                            c.size,
                            c.mtime_ns,
                            &why,
                        )?;
                    }
                    Err(SendError::Rehash(why)) => {
                        tracing::warn!(path = %c.abs.display(), reason = %why, "upload restarted");
                        self.hashes().remove(&(c.dataset, c.rel.clone()));
                        failed = true;
                    }
                    Err(SendError::Retry(why)) => {
                        tracing::warn!(path = %c.abs.display(), reason = %why, retry_in = ?backoff, "hub not reachable or busy; will retry");
                        failed = true;
                    }
                }
            }
            self.prune()?;
            let wait = if failed {
                let jitter = rand::thread_rng().gen_range(0.8..1.2);
                let w = backoff.mul_f64(jitter);
                backoff = (backoff * 2).min(self.cfg.retry_max);
                w
            } else if sent_any {
                Duration::ZERO
            } else if settling {
                self.cfg
                    .scan_interval
                    .min(self.cfg.settle / 2)
                    .max(Duration::from_millis(50))
            } else {
                self.cfg.scan_interval
            };
            let until_hb = next_heartbeat.saturating_duration_since(Instant::now());
            tokio::time::sleep(wait.min(until_hb.max(Duration::from_millis(50)))).await;
        }
    }

    /// Walks the datasets. Returns the files ready to send (oldest first),
    /// the backlog (files and bytes not yet acknowledged), and whether some
    /// files are still settling.
    async fn scan(&mut self) -> Result<(Vec<Candidate>, u64, u64, bool), AgentError> {
        let datasets = self.cfg.datasets.clone();
        let found = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for (i, d) in datasets.iter().enumerate() {
                walk(&d.path, "", &mut |rel, abs, m| {
                    if d.glob.matches(rel) {
                        out.push(Candidate {
                            dataset: i,
                            rel: rel.to_string(),
                            abs: abs.to_path_buf(),
                            size: m.len(),
                            mtime_ns: mtime_ns(m),
                        });
                    }
                });
            }
            out
        })
        .await
        .unwrap_or_default();

        let now = Instant::now();
        let wall_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let settle = self.cfg.settle;
        let mut ready = Vec::new();
        let (mut bfiles, mut bbytes, mut settling) = (0u64, 0u64, false);
        let mut seen = std::collections::HashSet::new();
        for c in found {
            let ds = &self.cfg.datasets[c.dataset].name;
            let key = (c.dataset, c.rel.clone());
            seen.insert(key.clone());
            {
                let l = self.ledger();
                if let Some(a) = l.acked(ds, &c.rel)? {
                    if a.size == c.size && a.mtime_ns == c.mtime_ns {
                        continue;
                    }
                }
                if l.rejected(ds, &c.rel, c.size, c.mtime_ns)?.is_some() {
                    continue;
                }
            }
            bfiles += 1;
            bbytes += c.size;
            let entry = self
                .settling
                .entry(key)
                .or_insert((c.size, c.mtime_ns, now));
            if entry.0 != c.size || entry.1 != c.mtime_ns {
                *entry = (c.size, c.mtime_ns, now);
            }
            let stable_here = now.duration_since(entry.2) >= settle;
            let old_enough = wall_ns - c.mtime_ns >= settle.as_nanos() as i64;
            if stable_here || old_enough {
                ready.push(c);
            } else {
                settling = true;
            }
        }
        self.settling.retain(|k, _| seen.contains(k));
        self.hashes
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| seen.contains(k));
        ready.sort_by_key(|c| (c.mtime_ns, c.dataset, c.rel.clone()));
        Ok((ready, bfiles, bbytes, settling))
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/hub/v1/sites/{}{}", self.cfg.hub, self.cfg.site, rest)
    }

    async fn heartbeat(&self, backlog_files: u64, backlog_bytes: u64) -> Result<(), String> {
        let hb = Heartbeat {
            agent_version: VERSION.to_string(),
            agent_uptime_secs: self.started.elapsed().as_secs(),
            host_uptime_secs: host_uptime(),
            disk_free_bytes: disk_free(&self.cfg.state_dir),
            backlog_files,
            backlog_bytes,
            sent_at: jiff::Timestamp::now().to_string(),
        };
        let r = self
            .client
            .post(self.url("/heartbeat"))
            .bearer_auth(self.token.expose_secret())
            .json(&hb)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        if r.status().is_success() {
            tracing::debug!(backlog_files, "heartbeat delivered");
            Ok(())
        } else {
            Err(error_text(r).await.1)
        }
    }

    fn hashes(&self) -> std::sync::MutexGuard<'_, HashCache> {
        self.hashes.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send(&self, c: &Candidate) -> Result<(), SendError> {
        let ds = self.cfg.datasets[c.dataset].name.clone();
        let key = (c.dataset, c.rel.clone());
        let cached = self.hashes().get(&key).cloned();
        let hash = match cached {
            Some((s, m, h)) if s == c.size && m == c.mtime_ns => h,
            _ => {
                let p = c.abs.clone();
                let (size, h) = tokio::task::spawn_blocking(move || hash_file(&p))
                    .await
                    .map_err(|e| SendError::Retry(e.to_string()))?
                    .map_err(|_| SendError::Changed)?;
                if size != c.size || !same_stat(&c.abs, c.size, c.mtime_ns) {
                    return Err(SendError::Changed);
                }
                self.hashes()
                    .insert(key.clone(), (c.size, c.mtime_ns, h.clone()));
                h
            }
        };
        // Same content as the acknowledged version (only touched): nothing to send.
        let prev = self
            .ledger()
            .acked(&ds, &c.rel)
            .map_err(|e| SendError::Retry(e.to_string()))?;
        if let Some(a) = &prev {
            if a.blake3 == hash && a.size == c.size {
                self.ledger()
                    .record_acked(
                        &ds,
                        &c.rel,
                        &Acked {
                            mtime_ns: c.mtime_ns,
                            ..a.clone()
                        },
                    )
                    .map_err(|e| SendError::Retry(e.to_string()))?;
                return Ok(());
            }
        }
        let modified = jiff::Timestamp::from_nanosecond(c.mtime_ns as i128)
            .ok()
            .map(|t| t.to_string());
        let begin = BeginUpload {
            dataset: ds.clone(),
            path: c.rel.clone(),
            size: c.size,
            blake3: hash.clone(),
            chunk_size: self.cfg.chunk_size,
            modified,
        };
        let r = self
            .client
            .post(self.url("/uploads"))
            .bearer_auth(self.token.expose_secret())
            .json(&begin)
            .send()
            .await;
        let mut status: UploadStatus = self.answer(r).await?;
        let total = total_chunks(c.size, self.cfg.chunk_size);
        while !status.complete && status.next_chunk < total {
            let n = status.next_chunk;
            let (abs, size, mtime, cs, level) = (
                c.abs.clone(),
                c.size,
                c.mtime_ns,
                self.cfg.chunk_size,
                self.cfg.compression_level,
            );
            let (raw_hash, body) =
                tokio::task::spawn_blocking(move || read_chunk(&abs, size, mtime, cs, n, level))
                    .await
                    .map_err(|e| SendError::Retry(e.to_string()))??;
            let wire = body.len() as u64;
            let req = self
                .client
                .put(self.url(&format!("/uploads/{}/chunks/{n}", status.upload_id)))
                .bearer_auth(self.token.expose_secret())
                .header(CHUNK_HASH_HEADER, raw_hash)
                .header(reqwest::header::CONTENT_TYPE, "application/zstd");
            let req = match &self.throttle {
                None => req.body(body),
                Some(t) => {
                    let t = t.clone();
                    let pieces: Vec<Vec<u8>> = body.chunks(8 << 10).map(<[u8]>::to_vec).collect();
                    let s = futures_util::stream::iter(pieces).then(move |p| {
                        let t = t.clone();
                        async move {
                            t.take(p.len()).await;
                            Ok::<_, std::io::Error>(p)
                        }
                    });
                    req.header(reqwest::header::CONTENT_LENGTH, wire)
                        .body(reqwest::Body::wrap_stream(s))
                }
            };
            status = self.answer(req.send().await).await?;
            let mut st = self.stats.lock().unwrap_or_else(|p| p.into_inner());
            st.chunks_sent += 1;
            st.wire_bytes += wire;
        }
        if !status.complete {
            let r = self
                .client
                .post(self.url(&format!("/uploads/{}/complete", status.upload_id)))
                .bearer_auth(self.token.expose_secret())
                .send()
                .await;
            status = self.answer(r).await?;
        }
        if !status.complete {
            return Err(SendError::Retry("the hub did not confirm the file".into()));
        }
        self.ledger()
            .record_acked(
                &ds,
                &c.rel,
                &Acked {
                    size: c.size,
                    mtime_ns: c.mtime_ns,
                    blake3: hash,
                    acked_at_ms: crate::hub::now_ms(),
                    pruned: false,
                },
            )
            .map_err(|e| SendError::Retry(e.to_string()))?;
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .files_sent += 1;
        tracing::info!(dataset = %ds, path = %c.rel, bytes = c.size, "file acknowledged by the hub");
        Ok(())
    }

    async fn answer(
        &self,
        r: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<UploadStatus, SendError> {
        let r = r.map_err(|e| SendError::Retry(describe(&e)))?;
        let code = r.status().as_u16();
        if r.status().is_success() {
            return r.json().await.map_err(|e| SendError::Retry(describe(&e)));
        }
        let (ecode, msg) = error_text(r).await;
        Err(match code {
            409 if ecode == "out_of_order" || ecode == "incomplete" => SendError::Retry(msg),
            404 | 422 => SendError::Rehash(msg),
            400 | 413 => SendError::Refused(msg),
            401 | 403 => {
                tracing::error!(site = %self.cfg.site, "{msg}");
                SendError::Retry(msg)
            }
            _ => SendError::Retry(format!("hub answered {code}: {msg}")),
        })
    }

    fn prune(&self) -> Result<(), AgentError> {
        let now = crate::hub::now_ms();
        for d in &self.cfg.datasets {
            let Some(keep) = d.prune_after else { continue };
            let l = self.ledger();
            for (rel, a) in l.prunable(&d.name, now - keep.as_millis() as i64)? {
                let abs = d.path.join(&rel);
                if same_stat(&abs, a.size, a.mtime_ns) {
                    match std::fs::remove_file(&abs) {
                        Ok(()) => {
                            tracing::info!(dataset = %d.name, path = %rel, "pruned (acknowledged by the hub, retention passed)")
                        }
                        Err(e) => {
                            tracing::warn!(path = %abs.display(), error = %e, "cannot prune");
                            continue;
                        }
                    }
                }
                l.mark_pruned(&d.name, &rel)?;
            }
        }
        Ok(())
    }
}

fn same_stat(p: &Path, size: u64, mtime: i64) -> bool {
    std::fs::symlink_metadata(p)
        .map(|m| m.len() == size && mtime_ns(&m) == mtime)
        .unwrap_or(false)
}

/// Reads, hashes and compresses chunk `n`; fails with `Changed` if the file moved under us.
fn read_chunk(
    p: &Path,
    size: u64,
    mtime: i64,
    chunk_size: u64,
    n: u64,
    level: i32,
) -> Result<(String, Vec<u8>), SendError> {
    use std::io::{Read, Seek, SeekFrom};
    let offset = n * chunk_size;
    let len = size.saturating_sub(offset).min(chunk_size) as usize;
    let mut f = std::fs::File::open(p).map_err(|_| SendError::Changed)?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|_| SendError::Changed)?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).map_err(|_| SendError::Changed)?;
    if !same_stat(p, size, mtime) {
        return Err(SendError::Changed);
    }
    let h = blake3::hash(&buf).to_hex().to_string();
    let z = zstd::bulk::compress(&buf, level)
        .map_err(|e| SendError::Retry(format!("compressing: {e}")))?;
    Ok((h, z))
}

/// Recursively lists regular files (symlinks are not followed).
fn walk(dir: &Path, prefix: &str, f: &mut dyn FnMut(&str, &Path, &std::fs::Metadata)) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            tracing::warn!(path = %e.path().display(), "skipping a file whose name is not UTF-8");
            continue;
        };
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if m.is_dir() {
            walk(&e.path(), &rel, f);
        } else if m.is_file() {
            f(&rel, &e.path(), &m);
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

async fn error_text(r: reqwest::Response) -> (String, String) {
    let code = r.status();
    let text = r.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(b) => (b.code, b.message),
        Err(_) => (
            String::new(),
            format!(
                "HTTP {code}: {}",
                text.chars().take(200).collect::<String>()
            ),
        ),
    }
}

fn host_uptime() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/uptime").ok()?;
    s.split_whitespace()
        .next()?
        .parse::<f64>()
        .ok()
        .map(|f| f as u64)
}

fn disk_free(p: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(p).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}
