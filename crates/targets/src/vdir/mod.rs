//! The vdir target: a local folder with one subfolder per person, named by
//! email, holding one RFC 5545 `.ics` file per event — the format khal and
//! vdirsyncer read.
//!
//! - File names are deterministic (`edusync-<profile>-<hash>.ics`), so a
//!   replayed create overwrites instead of duplicating.
//! - Writes go to a temporary file in the same folder, then are renamed
//!   over the target: a reader never sees half a file. A process killed
//!   mid-write can leave that file (`.<name>.tmp`) behind; it is never read
//!   as an event, the next write of the event replaces it, and deleting the
//!   event or a cleardown removes it. Files are not
//!   fsynced one by one (that would cost more than the write); a power cut
//!   can lose the newest files, and the ledger commit after them, so the
//!   next cycle writes them again.
//! - A file is changed or removed only if it carries this profile's
//!   marker; anything else in the folder is never touched.
//! - The ETag of a file is its modification time and size, as vdirsyncer
//!   uses, so an edit by hand is noticed (drift).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use edusync_core::ics::{self, Revision};
use edusync_core::keys;

use crate::{CalendarOp, OpKind, Outcome, RemoteItem, TargetError};

#[derive(Debug, Clone)]
pub struct VdirTarget {
    root: PathBuf,
    name: String,
}

impl VdirTarget {
    pub fn new(name: &str, root: PathBuf) -> VdirTarget {
        VdirTarget {
            root,
            name: name.to_string(),
        }
    }

    fn dir(&self, calendar: &str) -> PathBuf {
        self.root.join(calendar)
    }

    fn fail(&self, message: String) -> TargetError {
        TargetError::Failed {
            target: format!("vdir target {} ({})", self.name, self.root.display()),
            message,
        }
    }

    pub fn apply(&self, calendar: &str, ops: &[CalendarOp]) -> Vec<Outcome> {
        ops.iter().map(|op| self.apply_one(calendar, op)).collect()
    }

    fn apply_one(&self, calendar: &str, op: &CalendarOp) -> Outcome {
        let result = match op.kind {
            OpKind::Delete => self.delete(op),
            OpKind::Create | OpKind::Update => self.write(calendar, op),
        };
        result.unwrap_or_else(|(retryable, message)| Outcome::Failed { retryable, message })
    }

    fn file_name(profile: &str, event_id: &str) -> String {
        format!("{}.ics", keys::resource_name(profile, event_id))
    }

    /// The temporary file a write of `name` goes through.
    fn tmp_name(name: &str) -> String {
        format!(".{name}.tmp")
    }

    /// Whether `name` is a temporary file of one of `profile`'s writes.
    fn is_own_tmp(name: &str, profile: &str) -> bool {
        name.strip_prefix(".edusync-")
            .and_then(|r| r.strip_prefix(profile))
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_suffix(".ics.tmp"))
            .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// Checks an existing file belongs to `profile` before it is replaced or removed.
    fn owned(path: &Path, profile: &str) -> Result<bool, (bool, String)> {
        match fs::read_to_string(path) {
            Ok(text) => match ics::read_marker(&text) {
                Some((p, _)) if p == profile => Ok(true),
                _ => Err((
                    false,
                    format!(
                        "{} exists but does not carry this profile's edusync marker; it was left untouched",
                        path.display()
                    ),
                )),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err((true, format!("cannot read {}: {e}", path.display()))),
        }
    }

    fn write(&self, calendar: &str, op: &CalendarOp) -> Result<Outcome, (bool, String)> {
        let ev = op
            .event
            .as_ref()
            .ok_or((false, "internal: write without an event".to_string()))?;
        // Moved to another calendar (the person's email changed): remove the old copy.
        if let Some(prior) = &op.prior {
            if prior.calendar != calendar {
                let old = self
                    .dir(&prior.calendar)
                    .join(Self::file_name(&ev.profile, &ev.event_id));
                if Self::owned(&old, &ev.profile)? {
                    fs::remove_file(&old)
                        .map_err(|e| (true, format!("cannot remove {}: {e}", old.display())))?;
                }
            }
        }
        let dir = self.dir(calendar);
        fs::create_dir_all(&dir)
            .map_err(|e| (true, format!("cannot create {}: {e}", dir.display())))?;
        let name = Self::file_name(&ev.profile, &ev.event_id);
        let path = dir.join(&name);
        Self::owned(&path, &ev.profile)?;
        let sequence = match (&op.kind, &op.prior) {
            (OpKind::Update, Some(p)) => p.sequence + 1,
            (_, Some(p)) => p.sequence + 1,
            _ => 0,
        };
        let text = ics::event_object(
            ev,
            Revision {
                sequence,
                stamp: jiff::Timestamp::now(),
            },
        );
        let tmp = dir.join(Self::tmp_name(&name));
        let io = |e: std::io::Error| (true, format!("cannot write {}: {e}", path.display()));
        {
            let mut f = fs::File::create(&tmp).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
        }
        fs::rename(&tmp, &path).map_err(io)?;
        Ok(Outcome::Written {
            remote_id: name,
            etag: etag(&path),
            sequence,
        })
    }

    fn delete(&self, op: &CalendarOp) -> Result<Outcome, (bool, String)> {
        let prior = op.prior.as_ref();
        let calendar = prior
            .map(|p| p.calendar.as_str())
            .unwrap_or(op.calendar.as_str());
        let name = prior
            .and_then(|p| p.remote_id.clone())
            .unwrap_or_else(|| Self::file_name(&op.profile, &op.event_id));
        let path = self.dir(calendar).join(&name);
        // A write of this event cut short by a crash may have left its temporary file.
        let _ = fs::remove_file(self.dir(calendar).join(Self::tmp_name(&name)));
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Deleted),
            Err(e) => return Err((true, format!("cannot read {}: {e}", path.display()))),
        };
        match ics::read_marker(&text) {
            Some((_, event_id)) if event_id == op.event_id => {}
            _ => {
                return Err((
                    false,
                    format!(
                        "{} does not carry the edusync marker of event {}; it was left untouched",
                        path.display(),
                        op.event_id
                    ),
                ))
            }
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(Outcome::Deleted),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Outcome::Deleted),
            Err(e) => Err((true, format!("cannot remove {}: {e}", path.display()))),
        }
    }

    pub fn list(&self, calendar: &str, profile: &str) -> Result<Vec<RemoteItem>, TargetError> {
        let dir = self.dir(calendar);
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(self.fail(format!("cannot list {}: {e}", dir.display()))),
        };
        let prefix = format!("edusync-{profile}-");
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".ics") {
                continue;
            }
            let path = entry.path();
            // Our own files are recognised by name first, then proven by marker.
            if name.starts_with(&prefix) {
                if let Ok(text) = fs::read_to_string(&path) {
                    if let Some((p, event_id)) = ics::read_marker(&text) {
                        if p == profile {
                            out.push(RemoteItem {
                                event_id,
                                remote_id: name,
                                etag: etag(&path),
                            });
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    pub fn cleardown(&self, profile: &str) -> Result<u64, TargetError> {
        let mut removed = 0;
        let people = match fs::read_dir(&self.root) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.fail(format!("cannot list {}: {e}", self.root.display()))),
        };
        for person in people.flatten() {
            if !person.path().is_dir() {
                continue;
            }
            let calendar = person.file_name().to_string_lossy().into_owned();
            // Temporary files of writes cut short by a crash (not events: not counted).
            for entry in fs::read_dir(person.path()).into_iter().flatten().flatten() {
                if Self::is_own_tmp(&entry.file_name().to_string_lossy(), profile) {
                    let _ = fs::remove_file(entry.path());
                }
            }
            for item in self.list(&calendar, profile)? {
                let path = person.path().join(&item.remote_id);
                match fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(self.fail(format!("cannot remove {}: {e}", path.display())))
                    }
                }
            }
        }
        Ok(removed)
    }

    pub fn check(&self) -> Result<String, TargetError> {
        fs::create_dir_all(&self.root).map_err(|e| {
            self.fail(format!(
                "cannot create the folder: {e}; check the path and its permissions"
            ))
        })?;
        let probe = self.root.join(".edusync-check");
        fs::write(&probe, b"ok").map_err(|e| {
            self.fail(format!(
                "cannot write into the folder: {e}; check its permissions"
            ))
        })?;
        let _ = fs::remove_file(&probe);
        Ok(format!(
            "vdir target {}: {} is writable",
            self.name,
            self.root.display()
        ))
    }
}

/// `<mtime ns>-<size>` of a file, as vdirsyncer's filesystem storage does.
pub fn etag(path: &Path) -> Option<String> {
    let m = fs::metadata(path).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!("{mtime}-{}", m.len()))
}

#[cfg(test)]
mod tests;
