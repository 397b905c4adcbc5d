//! Where the hub's received bytes go: the file system under `[hub] root`.
//!
//! Design constraints:
//! - Chunks are written to `root/.partial/<upload id>.part`, never to the
//!   final path. A chunk is written at its offset after truncating anything
//!   past that offset (bytes left by a crash or a failed write), then synced;
//!   only then is the upload's progress recorded, so the database never
//!   claims a chunk that is not durably on disk.
//! - A finished file is hashed in full, synced, and renamed over
//!   `root/site/dataset/path` (atomic on one file system), and the folder is
//!   synced. A reader never sees a half-written or unverified file.
//! - Any write error (a full disk included) leaves the previous final file
//!   untouched and the partial file at most one chunk longer than recorded.
//!
//! [`Disk`] is a trait so tests (and the `quota_bytes` knob) can make writes
//! fail the way a full disk does.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub trait Disk: Send + Sync + 'static {
    /// Writes `data` at `offset` of `path` (creating it), dropping anything
    /// after `offset` first, and syncs.
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Size and hex BLAKE3 of a file.
    fn hash(&self, path: &Path) -> io::Result<(u64, String)>;
    /// Atomically moves a finished file into place (creating parent folders) and syncs.
    fn publish(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file; a missing file is not an error.
    fn remove(&self, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default)]
pub struct FsDisk;

impl Disk for FsDisk {
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        f.set_len(offset)?;
        f.seek(SeekFrom::Start(offset))?;
        f.write_all(data)?;
        f.sync_data()
    }

    fn hash(&self, path: &Path) -> io::Result<(u64, String)> {
        let mut f = File::open(path)?;
        let mut h = blake3::Hasher::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut n = 0u64;
        loop {
            let k = f.read(&mut buf)?;
            if k == 0 {
                break;
            }
            n += k as u64;
            h.update(&buf[..k]);
        }
        Ok((n, h.finalize().to_hex().to_string()))
    }

    fn publish(&self, from: &Path, to: &Path) -> io::Result<()> {
        let dir = to.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        File::open(from)?.sync_all()?;
        std::fs::rename(from, to)?;
        File::open(dir)?.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
}

/// A disk of `quota` bytes under `root`: a write that would take the total
/// past it writes what fits and then fails with ENOSPC, exactly like a full
/// disk. Used for `[hub] quota_bytes` and for fault-injection tests.
pub struct QuotaDisk {
    inner: FsDisk,
    quota: u64,
    used: Mutex<u64>,
}

impl QuotaDisk {
    /// Counts what is already under `root`.
    pub fn new(root: &Path, quota: u64) -> io::Result<QuotaDisk> {
        Ok(QuotaDisk {
            inner: FsDisk,
            quota,
            used: Mutex::new(du(root)?),
        })
    }

    fn used(&self) -> std::sync::MutexGuard<'_, u64> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn du(p: &Path) -> io::Result<u64> {
    let mut total = 0;
    let rd = match std::fs::read_dir(p) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let m = e.metadata()?;
        if m.is_dir() {
            total += du(&e.path())?;
        } else {
            total += m.len();
        }
    }
    Ok(total)
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The error a full disk gives.
pub fn disk_full() -> io::Error {
    io::Error::from_raw_os_error(28) // ENOSPC
}

impl Disk for QuotaDisk {
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut used = self.used();
        let old = file_len(path);
        let base = used.saturating_sub(old.saturating_sub(offset.min(old)));
        // `base` is usage without this file's tail past `offset`; the new
        // bytes must fit in what is left.
        let free = self.quota.saturating_sub(base);
        if (data.len() as u64) <= free {
            self.inner.write_at(path, offset, data)?;
            *used = base + data.len() as u64;
            Ok(())
        } else {
            // Write what fits, as a real full disk would, then fail.
            let fit = free as usize;
            self.inner.write_at(path, offset, &data[..fit])?;
            *used = base + fit as u64;
            Err(disk_full())
        }
    }

    fn hash(&self, path: &Path) -> io::Result<(u64, String)> {
        self.inner.hash(path)
    }

    fn publish(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut used = self.used();
        let replaced = file_len(to);
        self.inner.publish(from, to)?;
        *used = used.saturating_sub(replaced);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut used = self.used();
        let len = file_len(path);
        self.inner.remove(path)?;
        *used = used.saturating_sub(len);
        Ok(())
    }
}

/// Is this error a full disk (or quota)?
pub fn is_disk_full(e: &io::Error) -> bool {
    e.raw_os_error() == Some(28)
        || e.raw_os_error() == Some(122)
        || e.kind() == io::ErrorKind::StorageFull
}

/// `root/.partial/<id>.part`
pub fn partial_path(root: &Path, upload_id: &str) -> PathBuf {
    root.join(".partial").join(format!("{upload_id}.part"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_fails_like_a_full_disk_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let d = QuotaDisk::new(dir.path(), 10).unwrap();
        let p = dir.path().join("a");
        d.write_at(&p, 0, b"12345").unwrap();
        let e = d.write_at(&p, 5, b"6789012").unwrap_err();
        assert!(is_disk_full(&e));
        assert_eq!(std::fs::read(&p).unwrap(), b"1234567890");
        // Rewriting from the recorded offset reuses the space.
        d.write_at(&p, 5, b"abcde").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"12345abcde");
        d.remove(&p).unwrap();
        d.write_at(&p, 0, b"0123456789").unwrap();
    }
}
