//! The wire protocol between `edusync agent` and the hub inside `edusync serve`.
//!
//! Plain HTTP/1.1 with JSON control messages and binary chunk bodies. Every
//! request carries `Authorization: Bearer <site token>` and names its site in
//! the path; the hub refuses a token that belongs to another site.
//!
//! ```text
//! POST /hub/v1/sites/{site}/heartbeat                 Heartbeat            -> 204
//! POST /hub/v1/sites/{site}/uploads                   BeginUpload          -> UploadStatus
//! PUT  /hub/v1/sites/{site}/uploads/{id}/chunks/{n}   zstd(chunk n)        -> UploadStatus
//! POST /hub/v1/sites/{site}/uploads/{id}/complete     (empty)              -> UploadStatus
//! ```
//!
//! A file is cut into chunks of `chunk_size` bytes (the last one shorter).
//! Each chunk travels zstd-compressed with the BLAKE3 hash of its
//! *uncompressed* bytes in the [`CHUNK_HASH_HEADER`] header; the hub
//! decompresses, checks the hash, writes and syncs the chunk, records it, and
//! only then answers with the number of chunks it holds (`next_chunk`). The
//! upload id is derived from (site, dataset, path, size, hash, chunk size), so
//! after any interruption `BeginUpload` finds the same upload and says where
//! to carry on: nothing acknowledged is ever sent twice. `complete` checks the
//! BLAKE3 hash of the whole file before the hub acknowledges it.
//!
//! Errors are JSON [`ErrorBody`] with an HTTP status; 4xx other than 408/429
//! are permanent for that request, everything else is worth retrying.

use serde::{Deserialize, Serialize};

/// Header carrying the hex BLAKE3 hash of the uncompressed chunk.
pub const CHUNK_HASH_HEADER: &str = "x-edusync-chunk-blake3";
/// Path prefix of every hub ingest route.
pub const API_PREFIX: &str = "/hub/v1";
/// Largest chunk the hub accepts (uncompressed).
pub const MAX_CHUNK_SIZE: u64 = 16 << 20;
/// Smallest chunk size an agent may use (except for a file's last chunk).
pub const MIN_CHUNK_SIZE: u64 = 4 << 10;

/// Sent at agent start-up and then on an interval.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Heartbeat {
    pub agent_version: String,
    /// Seconds since the agent started.
    pub agent_uptime_secs: u64,
    /// Seconds since the site's machine booted, when known.
    pub host_uptime_secs: Option<u64>,
    /// Free bytes on the file system holding the agent's state, when known.
    pub disk_free_bytes: Option<u64>,
    /// Files waiting to be sent (seen, not yet acknowledged).
    pub backlog_files: u64,
    /// Bytes waiting to be sent.
    pub backlog_bytes: u64,
    /// The agent's clock, RFC 3339, so clock skew can be spotted.
    pub sent_at: String,
}

/// Asks the hub to start (or find) the upload of one version of one file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BeginUpload {
    pub dataset: String,
    /// Path relative to the dataset folder, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Hex BLAKE3 of the whole file.
    pub blake3: String,
    pub chunk_size: u64,
    /// Modification time at the site, RFC 3339 (informational).
    pub modified: Option<String>,
}

/// Where an upload stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadStatus {
    pub upload_id: String,
    /// Chunks the hub holds, verified and synced; the agent sends from here.
    pub next_chunk: u64,
    pub total_chunks: u64,
    /// The file is stored, verified and recorded in the manifest.
    pub complete: bool,
}

/// Every error answer from the hub.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `unknown_site`, `path_rejected`.
    pub code: String,
    /// What went wrong and what to do, for people.
    pub message: String,
}

/// Number of chunks of a file of `size` bytes (an empty file has one, empty, chunk).
pub fn total_chunks(size: u64, chunk_size: u64) -> u64 {
    if size == 0 {
        1
    } else {
        size.div_ceil(chunk_size)
    }
}

/// Deterministic upload id: the same file version always maps to the same upload.
pub fn upload_id(site: &str, req: &BeginUpload) -> String {
    let mut h = blake3::Hasher::new();
    for part in [site, &req.dataset, &req.path, &req.blake3] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update(&req.size.to_le_bytes());
    h.update(&req.chunk_size.to_le_bytes());
    h.finalize().to_hex()[..32].to_string()
}

/// Is `s` a usable site or dataset name (`[A-Za-z0-9._-]`, 1–64, not starting with '.')?
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Checks a relative file path sent by a site. Returns why it is refused.
///
/// Refused: empty, absolute, `\`, NUL or control characters, `.`/`..`/empty
/// components, components starting with `.partial`, longer than 1024 bytes.
pub fn check_relative_path(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("the path is empty".into());
    }
    if p.len() > 1024 {
        return Err("the path is longer than 1024 bytes".into());
    }
    if p.starts_with('/') {
        return Err("the path is absolute; send it relative to the dataset folder".into());
    }
    if p.contains('\\') || p.chars().any(|c| c.is_control()) {
        return Err("the path contains a backslash or a control character".into());
    }
    for comp in p.split('/') {
        match comp {
            "" => return Err("the path has an empty component (`//` or a trailing `/`)".into()),
            "." | ".." => return Err("the path contains `.` or `..` (path traversal)".into()),
            c if c.len() > 255 => return Err("a path component is longer than 255 bytes".into()),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in ["a.csv", "2026/03/a.csv", "x y/é.json", "..a", "a..b/c"] {
            assert!(check_relative_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\0b",
            ".",
        ] {
            assert!(check_relative_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chunks() {
        assert_eq!(total_chunks(0, 10), 1);
        assert_eq!(total_chunks(10, 10), 1);
        assert_eq!(total_chunks(11, 10), 2);
    }
}
