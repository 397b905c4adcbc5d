//! The CalDAV target: each person's calendar is a CalDAV collection at
//! `calendar_url` (a template with `{email}` and/or `{person_id}`, each
//! percent-encoded into one path segment), created with `MKCALENDAR` (and
//! its parent with `MKCOL`) the first time a write finds it missing.
//!
//! # Writes: idempotent by construction
//!
//! - Every event of a profile has one resource name in every calendar,
//!   `edusync_core::keys::resource_name(profile, event_id)` + `.ics`, and one
//!   UID (`keys::event_uid`), so a replay addresses the same resource.
//! - A create is `PUT` with `If-None-Match: *`; an update or delete carries
//!   `If-Match: <etag from the ledger>`. A `412` means the resource is not
//!   as the ledger says: on a create it already exists (a replay after a
//!   crash), on an update someone changed or removed it. Either way it is
//!   fetched, its `X-EDUSYNC-MARKER` is read, and only if it carries this
//!   event's marker is it overwritten (or deleted) with `If-Match` of the
//!   version just read; a missing one is created again. A resource without
//!   the marker is never changed: the op fails permanently, saying so.
//!
//! # Listing (drift repair, cleardown) without downloading events
//!
//! `list` needs, per calendar, each edusync resource's event id and ETag.
//! ETags come from one request per calendar: `sync-collection` (RFC 6578)
//! when the server offers it, else `PROPFIND Depth: 1` of `getetag`. Event
//! ids cannot be read off resource names (they are a one-way hash), so they
//! come, in this order, from: what this process wrote or listed before; the
//! caller's [`CalendarHint`] (the ledger's `remote_id → event_id` for the
//! calendar, which drift repair passes); and only for the rest — resources
//! with this profile's name shape that nobody knows — a `calendar-multiget`
//! of their bodies, whose marker proves (or disproves) they are ours.
//! Resources whose names lack the `edusync-<profile>-<hash>.ics` shape are
//! people's own and are never read. The ETag is compared with the ledger's
//! by the engine (`drift.rs`); a changed ETag makes the next plan rewrite
//! the event, and the write path above checks the marker before it does.
//!
//! # Cycles with nothing to do: one small request per calendar
//!
//! Drift repair calls [`CaldavTarget::list_checked`] with the calendar's
//! [`mapping::Marker`] that the engine stored (`Store::calendar_markers`)
//! after the last listing the ledger was compared with: the collection's
//! change tag (`CS:getctag`, else the `DAV:sync-token` property), read
//! *before* that listing, and the `sync-collection` token it ended with.
//! One `PROPFIND Depth: 0` reads the tag now; equal means nothing in the
//! calendar changed since the ledger last agreed with it, so the ledger's
//! own `remote_id`/ETag rows are the answer — no listing, no event bodies.
//! A different tag (a hand edit, or edusync's own writes) means "list and
//! compare": `sync-collection` from the stored token, applied on top of
//! what the ledger says, or a full ETag listing without one. Because the
//! tag is read before the listing, a change made during or after it
//! changes the tag again and is listed next time. The engine stores a
//! marker only after the comparison's ledger changes are committed, and
//! re-checks the calendars it wrote to after applying, so the cycle after
//! a push skips them too.
//!
//! The item map and sync token are also kept in memory for the life of the
//! target (one `edusync serve` process, or one CLI command). A map seeded
//! from the ledger is marked `partial` and is never used for cleardown,
//! which lists in full. An invalid or expired token (`403`/`409`/`412`
//! `valid-sync-token`) falls back to a full listing; truncated answers
//! (`507` on the collection) are followed with the token they carry.
//!
//! # Politeness and speed
//!
//! One `reqwest::Client` for the target (connections kept alive and reused),
//! at most [`ClientSettings::per_server`] requests in flight per server
//! across all calendars, one op at a time within a calendar (see
//! `PER_CALENDAR`), retries with
//! jittered backoff on connection errors, timeouts, `429` and `5xx`
//! (honouring `Retry-After`); what still fails is `Failed { retryable: true
//! }` and stays pending. Other `4xx` are permanent and reported per person.
//!
//! # Check and discovery
//!
//! [`CaldavTarget::check`] checks the template's shape, then works in a
//! sample person's calendar (from the source: `{email}` and `{person_id}`
//! both expand): it must be a calendar collection if it exists; if it does
//! not exist yet, the check makes it (`MKCALENDAR`, and the parent with
//! `MKCOL` when the server wants one) as a sync would, writes and removes a
//! probe event, then removes what it made, so rights are proven before any
//! calendar exists and nothing is left behind. When refused it says which
//! server-side rights to grant (Radicale `rights` file, Nextcloud sharing,
//! SOGo delegation) and what RFC 6764 discovery ([`CaldavTarget::discover`])
//! found, to suggest the right `calendar_url`.

pub mod client;
pub mod mapping;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;

use futures_util::stream::{self, StreamExt};
use reqwest::StatusCode;

use edusync_core::ics::{self, Revision};

use crate::{CalendarHint, CalendarOp, Listing, OpKind, Outcome, RemoteItem, TargetError};
use client::unexpected;
pub use client::{ClientSettings, DavClient, DavError, Password, Precondition};
use mapping::UrlTemplate;

/// Ops of one calendar written at once. One: Xandikos (a git repository
/// per collection) loses some of several concurrent writes into one
/// collection while answering success, and Radicale serialises writes
/// anyway; calendars still run concurrently (`calendar_concurrency`).
const PER_CALENDAR: usize = 1;
/// Hrefs per `calendar-multiget`.
const MULTIGET: usize = 100;

/// The `caldav` target's settings (from the config).
#[derive(Debug, Clone)]
pub struct CaldavSettings {
    pub calendar_url: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Unknown,
    Ours(String),
    Foreign,
}

#[derive(Debug, Clone)]
struct Item {
    etag: Option<String>,
    owner: Owner,
}

#[derive(Debug, Default)]
struct CalState {
    exists: bool,
    token: Option<String>,
    items: HashMap<String, Item>,
    /// Seeded from the ledger and brought up to date from a stored token:
    /// complete for the ledger's items, not for anything else.
    partial: bool,
}

/// How a server tells a collection's change tag (`CaldavTarget::change_tag`).
const TAG_CTAG: u8 = 0;
const TAG_SYNC_TOKEN: u8 = 1;
const TAG_NONE: u8 = 2;

/// What `check` found or made at a person's calendar URL.
enum Probed {
    Existing,
    /// Made by the check (and removed again), with the parents it made.
    Made {
        parents: Vec<String>,
    },
}

/// What `make_calendar` created.
struct Made {
    created: bool,
    /// Parent collections made for it, outermost first.
    parents: Vec<String>,
}

/// What a discovery (RFC 6764, RFC 5397, RFC 4791 §6.2.1) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub principal: String,
    pub calendar_home: Option<String>,
    /// A `calendar_url` to suggest, when the home set has a recognisable shape.
    pub suggestion: Option<String>,
}

#[derive(Debug)]
pub struct CaldavTarget {
    name: String,
    template: UrlTemplate,
    client: DavClient,
    state: Mutex<HashMap<String, CalState>>,
    /// Serialises creating calendars, so concurrent writes make each once.
    creating: tokio::sync::Mutex<()>,
    no_sync_collection: AtomicBool,
    /// `TAG_CTAG`, `TAG_SYNC_TOKEN` or `TAG_NONE`: learnt from the first answers.
    change_tag: AtomicU8,
}

/// What a fetch before a conditional write found.
enum Fetched {
    Gone,
    Ours(Option<String>),
}

fn failed(e: DavError) -> Outcome {
    Outcome::Failed {
        retryable: e.retryable,
        message: e.message,
    }
}

impl CaldavTarget {
    pub fn new(name: &str, settings: CaldavSettings) -> Result<CaldavTarget, TargetError> {
        CaldavTarget::with_client(name, settings, ClientSettings::default())
    }

    pub fn with_client(
        name: &str,
        settings: CaldavSettings,
        mut client: ClientSettings,
    ) -> Result<CaldavTarget, TargetError> {
        let fail = |message: String| TargetError::Failed {
            target: format!("caldav target {name}"),
            message,
        };
        let template = UrlTemplate::parse(&settings.calendar_url).map_err(fail)?;
        client.username = settings.username;
        client.password = settings.password.map(Password);
        let client = DavClient::new(client).map_err(|e| fail(e.message))?;
        Ok(CaldavTarget {
            name: name.to_string(),
            template,
            client,
            state: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            no_sync_collection: AtomicBool::new(false),
            change_tag: AtomicU8::new(TAG_CTAG),
        })
    }

    fn fail(&self, message: String) -> TargetError {
        TargetError::Failed {
            target: format!("caldav target {} ({})", self.name, self.template.as_str()),
            message,
        }
    }

    /// The collection URL of a person's calendar.
    pub fn calendar_url(&self, email: &str, person_id: &str) -> String {
        self.template.expand(email, person_id)
    }

    fn with_state<R>(&self, url: &str, f: impl FnOnce(&mut CalState) -> R) -> R {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(s.entry(url.to_string()).or_default())
    }

    fn remember(&self, url: &str, name: &str, etag: Option<String>, event_id: &str) {
        self.with_state(url, |s| {
            s.exists = true;
            s.items.insert(
                name.to_string(),
                Item {
                    etag,
                    owner: Owner::Ours(event_id.to_string()),
                },
            );
        });
    }

    fn forget(&self, url: &str, name: &str) {
        self.with_state(url, |s| {
            s.items.remove(name);
        });
    }

    // ---- writes -------------------------------------------------------

    /// Applies one calendar's ops, a few at a time, answering in order.
    pub async fn apply(&self, _calendar: &str, ops: &[CalendarOp]) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(ops.len());
        let mut rest = ops;
        // The first write into a calendar not yet seen goes alone, so that a
        // missing calendar is created once, before the others write.
        if let Some(first) = ops.first() {
            let url = self.calendar_url(&first.calendar, &first.person_id);
            if ops.len() > 1 && !self.with_state(&url, |s| s.exists) {
                let outcome = self.apply_one(first).await;
                rest = &ops[1..];
                // Could not reach or make the calendar even after retries:
                // the others would only pay the same retries to fail the same way.
                if let Outcome::Failed {
                    retryable: true,
                    message,
                } = &outcome
                {
                    let message = format!(
                        "not attempted: the first write to this calendar failed ({message})"
                    );
                    out.push(outcome.clone());
                    out.extend(rest.iter().map(|_| Outcome::Failed {
                        retryable: true,
                        message: message.clone(),
                    }));
                    return out;
                }
                out.push(outcome);
            }
        }
        let mut more: Vec<Outcome> = stream::iter(rest)
            .map(|op| self.apply_one(op))
            .buffered(PER_CALENDAR)
            .collect()
            .await;
        out.append(&mut more);
        out
    }

    #[tracing::instrument(skip_all, fields(target = %self.name, kind = ?op.kind, event = %op.event_id, person = %op.person_id))]
    async fn apply_one(&self, op: &CalendarOp) -> Outcome {
        match op.kind {
            OpKind::Delete => match self.delete_op(op).await {
                Ok(()) => Outcome::Deleted,
                Err(e) => failed(e),
            },
            OpKind::Create | OpKind::Update => self.write_op(op).await.unwrap_or_else(failed),
        }
    }

    async fn write_op(&self, op: &CalendarOp) -> Result<Outcome, DavError> {
        let ev = op
            .event
            .as_ref()
            .ok_or_else(|| DavError::permanent("internal: a write without an event"))?;
        let url = self.calendar_url(&op.calendar, &op.person_id);
        let name = mapping::resource_file(&op.profile, &op.event_id);
        let mut etag: Option<String> = None;
        if let Some(prior) = &op.prior {
            let old = self.calendar_url(&prior.calendar, &op.person_id);
            if old != url {
                // Moved to another calendar (the person's email changed).
                let old_name = prior.remote_id.clone().unwrap_or_else(|| name.clone());
                self.delete_resource(
                    &old,
                    &old_name,
                    &op.profile,
                    &op.event_id,
                    prior.etag.clone(),
                )
                .await?;
            } else {
                etag = prior.etag.clone();
            }
        }
        let sequence = op.prior.as_ref().map(|p| p.sequence + 1).unwrap_or(0);
        let body = ics::event_object(
            ev,
            Revision {
                sequence,
                stamp: jiff::Timestamp::now(),
            },
        );
        let res = format!("{url}{name}");
        // `None` with `known_absent` false means: nothing known, fetch first.
        let mut known_absent = op.prior.is_none() || etag.is_none();
        if op.prior.is_some() && etag.is_none() {
            // An update with no ETag on record: prove the marker first.
            match self.fetch_owned(&res, &op.profile, &op.event_id).await? {
                Fetched::Gone => known_absent = true,
                Fetched::Ours(e) => {
                    known_absent = false;
                    etag = e;
                }
            }
        }
        let mut made_calendar = false;
        for _ in 0..5 {
            let pre = match (&etag, known_absent) {
                (Some(e), _) => Precondition::Matches(e),
                (None, true) => Precondition::Absent,
                // Ours, but the server gives no ETag: the marker was just checked.
                (None, false) => Precondition::None,
            };
            let reply = self.client.put(&res, body.clone(), pre).await?;
            match reply.status.as_u16() {
                200..=299 => {
                    let etag = match reply.etag {
                        Some(e) => Some(e),
                        None => self.etag_of(&res).await?,
                    };
                    self.remember(&url, &name, etag.clone(), &op.event_id);
                    return Ok(Outcome::Written {
                        remote_id: name,
                        etag,
                        sequence,
                    });
                }
                404 | 409 if !made_calendar => {
                    made_calendar = true;
                    self.make_calendar(&url).await?;
                }
                412 => match self.fetch_owned(&res, &op.profile, &op.event_id).await? {
                    Fetched::Gone => {
                        etag = None;
                        known_absent = true;
                    }
                    Fetched::Ours(e) => {
                        known_absent = false;
                        etag = e;
                    }
                },
                _ => return Err(unexpected("PUT", &res, &reply)),
            }
        }
        Err(DavError {
            retryable: true,
            status: Some(412),
            message: format!("PUT {res}: the resource kept changing while edusync wrote it; it will be tried again"),
        })
    }

    async fn delete_op(&self, op: &CalendarOp) -> Result<(), DavError> {
        let prior = op.prior.as_ref();
        let calendar = prior
            .map(|p| p.calendar.as_str())
            .unwrap_or(op.calendar.as_str());
        let url = self.calendar_url(calendar, &op.person_id);
        let name = prior
            .and_then(|p| p.remote_id.clone())
            .unwrap_or_else(|| mapping::resource_file(&op.profile, &op.event_id));
        self.delete_resource(
            &url,
            &name,
            &op.profile,
            &op.event_id,
            prior.and_then(|p| p.etag.clone()),
        )
        .await
    }

    /// Deletes `url/name` if it carries the marker of `profile/event_id`;
    /// gone already is success.
    async fn delete_resource(
        &self,
        url: &str,
        name: &str,
        profile: &str,
        event_id: &str,
        mut etag: Option<String>,
    ) -> Result<(), DavError> {
        let res = format!("{url}{name}");
        for _ in 0..5 {
            if etag.is_none() {
                match self.fetch_owned(&res, profile, event_id).await? {
                    Fetched::Gone => {
                        self.forget(url, name);
                        return Ok(());
                    }
                    // Proven ours; without an ETag from the server the delete is unconditional.
                    Fetched::Ours(e) => etag = e,
                }
            }
            let pre = etag
                .as_deref()
                .map(Precondition::Matches)
                .unwrap_or(Precondition::None);
            let reply = self.client.delete(&res, pre).await?;
            match reply.status.as_u16() {
                200..=299 | 404 | 410 => {
                    self.forget(url, name);
                    return Ok(());
                }
                412 => etag = None,
                _ => return Err(unexpected("DELETE", &res, &reply)),
            }
        }
        Err(DavError {
            retryable: true,
            status: Some(412),
            message: format!("DELETE {res}: the resource kept changing; it will be tried again"),
        })
    }

    /// Reads a resource and proves it is this event's.
    async fn fetch_owned(
        &self,
        res: &str,
        profile: &str,
        event_id: &str,
    ) -> Result<Fetched, DavError> {
        let reply = self.client.get(res).await?;
        match reply.status.as_u16() {
            404 | 410 => Ok(Fetched::Gone),
            200..=299 => match ics::read_marker(&reply.body) {
                Some((p, e)) if p == profile && e == event_id => Ok(Fetched::Ours(reply.etag)),
                _ => Err(DavError::permanent(format!(
                    "{res} exists but does not carry the edusync marker of {profile}/{event_id}; it was left untouched \
                     (remove or rename it on the server if it is not wanted)"
                ))),
            },
            _ => Err(unexpected("GET", res, &reply)),
        }
    }

    /// The ETag of one resource (servers that do not send it on `PUT`).
    async fn etag_of(&self, res: &str) -> Result<Option<String>, DavError> {
        let reply = self
            .client
            .xml(
                "PROPFIND",
                res,
                Some("0"),
                mapping::propfind("<d:getetag/>"),
            )
            .await?;
        if reply.status.as_u16() != 207 {
            return Ok(None);
        }
        let ms = mapping::parse_multistatus(&reply.body).map_err(DavError::permanent)?;
        Ok(ms.responses.first().and_then(|r| r.etag()))
    }

    /// Creates a person's calendar (and its parent collection when the
    /// server does not make it itself).
    async fn make_calendar(&self, url: &str) -> Result<Made, DavError> {
        let _one = self.creating.lock().await;
        let mut made = Made {
            created: false,
            parents: Vec::new(),
        };
        if self.with_state(url, |s| s.exists) {
            return Ok(made);
        }
        let body = mapping::mkcalendar(&self.template.display_name());
        let mut tried_parent = false;
        loop {
            let reply = self
                .client
                .xml("MKCALENDAR", url, None, body.clone())
                .await?;
            match reply.status.as_u16() {
                200..=299 => {
                    made.created = true;
                    break;
                }
                405 => break,
                409 if !tried_parent => {
                    tried_parent = true;
                    made.parents = self.make_parents(url).await?;
                }
                403 => {
                    return Err(DavError {
                        retryable: false,
                        status: Some(403),
                        message: format!(
                            "MKCALENDAR {url}: the server refused to create the calendar as {}. {}",
                            self.client.username(),
                            rights_advice(self.client.username())
                        ),
                    })
                }
                _ => return Err(unexpected("MKCALENDAR", url, &reply)),
            }
        }
        tracing::info!(target = %self.name, url, "calendar created");
        self.with_state(url, |s| s.exists = true);
        Ok(made)
    }

    /// Makes the missing collections above `url` with `MKCOL` (servers
    /// like Radicale answer `409` while a parent is missing); returns those
    /// made, outermost first.
    async fn make_parents(&self, url: &str) -> Result<Vec<String>, DavError> {
        // Upwards until a MKCOL is not refused for a missing parent of its own.
        let mut missing: Vec<String> = Vec::new();
        let mut at = mapping::parent(url);
        while let Some(p) = at {
            let r = self
                .client
                .send(client::method("MKCOL"), &p, &[], Precondition::None, None)
                .await?;
            match r.status.as_u16() {
                200..=299 => {
                    let mut made = vec![p];
                    // Then back down the ones that could not be made before.
                    for q in missing.into_iter().rev() {
                        let r = self
                            .client
                            .send(client::method("MKCOL"), &q, &[], Precondition::None, None)
                            .await?;
                        if !(r.status.is_success() || r.status == StatusCode::METHOD_NOT_ALLOWED) {
                            return Err(unexpected("MKCOL", &q, &r));
                        }
                        made.push(q);
                    }
                    return Ok(made);
                }
                405 => return Ok(Vec::new()),
                409 if missing.len() < 8 => {
                    at = mapping::parent(&p);
                    missing.push(p);
                }
                403 => {
                    return Err(DavError {
                        retryable: false,
                        status: Some(403),
                        message: format!(
                            "MKCOL {p}: the server refused to create this collection above a person's calendar as {}. {}",
                            self.client.username(),
                            rights_advice(self.client.username())
                        ),
                    })
                }
                _ => return Err(unexpected("MKCOL", &p, &r)),
            }
        }
        Ok(Vec::new())
    }

    // ---- listing ------------------------------------------------------

    /// Brings the item map of a calendar up to date (ETags only). Returns
    /// false when the calendar does not exist.
    async fn refresh(&self, url: &str) -> Result<bool, DavError> {
        if !self.no_sync_collection.load(Ordering::Relaxed) {
            match self.refresh_sync(url).await? {
                Some(exists) => return Ok(exists),
                None => self.no_sync_collection.store(true, Ordering::Relaxed),
            }
        }
        self.refresh_propfind(url).await
    }

    /// `sync-collection`; `None` when the server does not offer it.
    async fn refresh_sync(&self, url: &str) -> Result<Option<bool>, DavError> {
        let start = self.with_state(url, |s| s.token.clone());
        let full = start.is_none();
        let mut token = start;
        let mut fresh: HashMap<String, Option<String>> = HashMap::new();
        let mut removed: Vec<String> = Vec::new();
        let path = mapping::url_path(url).to_string();
        for _page in 0..10_000 {
            let reply = self
                .client
                .xml(
                    "REPORT",
                    url,
                    None,
                    mapping::sync_collection(token.as_deref()),
                )
                .await?;
            match reply.status.as_u16() {
                207 => {}
                404 | 410 => {
                    self.with_state(url, |s| *s = CalState::default());
                    return Ok(Some(false));
                }
                400 | 403 | 409 | 412 if token.is_some() => {
                    // Invalid or expired token: start again with a full listing.
                    tracing::debug!(url, "sync token refused; listing the whole calendar");
                    self.with_state(url, |s| s.token = None);
                    return Box::pin(self.refresh_sync(url)).await;
                }
                400 | 403 | 405 | 415 | 422 | 501 => return Ok(None),
                _ => return Err(unexpected("REPORT sync-collection", url, &reply)),
            }
            let ms = mapping::parse_multistatus(&reply.body)
                .map_err(|e| DavError::permanent(format!("REPORT {url}: {e}")))?;
            let mut truncated = false;
            for r in ms.responses {
                if r.href.trim_end_matches('/') == path.trim_end_matches('/')
                    || r.href.ends_with('/')
                {
                    truncated |= r.status == Some(507);
                    continue;
                }
                let name = mapping::href_name(&r.href);
                if matches!(r.status, Some(404) | Some(410)) {
                    fresh.remove(&name);
                    removed.push(name);
                } else {
                    fresh.insert(name, r.etag());
                }
            }
            token = ms.sync_token.or(token);
            if !truncated {
                break;
            }
        }
        self.merge(url, full, fresh, removed, token);
        Ok(Some(true))
    }

    async fn refresh_propfind(&self, url: &str) -> Result<bool, DavError> {
        let reply = self
            .client
            .xml("PROPFIND", url, Some("1"), mapping::propfind_etags())
            .await?;
        match reply.status.as_u16() {
            207 => {}
            404 | 410 => {
                self.with_state(url, |s| *s = CalState::default());
                return Ok(false);
            }
            _ => return Err(unexpected("PROPFIND", url, &reply)),
        }
        let ms = mapping::parse_multistatus(&reply.body)
            .map_err(|e| DavError::permanent(format!("PROPFIND {url}: {e}")))?;
        let path = mapping::url_path(url).to_string();
        let mut fresh = HashMap::new();
        for r in ms.responses {
            if r.href.trim_end_matches('/') == path.trim_end_matches('/') {
                if matches!(r.status, Some(404) | Some(410)) {
                    self.with_state(url, |s| *s = CalState::default());
                    return Ok(false);
                }
                continue;
            }
            if r.is_collection()
                || r.href.ends_with('/')
                || matches!(r.status, Some(404) | Some(410))
            {
                continue;
            }
            fresh.insert(mapping::href_name(&r.href), r.etag());
        }
        self.merge(url, true, fresh, Vec::new(), None);
        Ok(true)
    }

    fn merge(
        &self,
        url: &str,
        full: bool,
        fresh: HashMap<String, Option<String>>,
        removed: Vec<String>,
        token: Option<String>,
    ) {
        self.with_state(url, |s| {
            s.exists = true;
            s.token = token;
            if full {
                s.partial = false;
            }
            let mut old = if full {
                std::mem::take(&mut s.items)
            } else {
                HashMap::new()
            };
            for name in removed {
                s.items.remove(&name);
            }
            for (name, etag) in fresh {
                let prev = old.remove(&name).or_else(|| s.items.remove(&name));
                let owner = match prev {
                    // A name is the hash of one event id: once ours, always that event.
                    Some(Item {
                        owner: Owner::Ours(e),
                        ..
                    }) => Owner::Ours(e),
                    Some(Item {
                        owner: Owner::Foreign,
                        etag: was,
                    }) if was == etag => Owner::Foreign,
                    _ => Owner::Unknown,
                };
                s.items.insert(name, Item { etag, owner });
            }
        });
    }

    /// The edusync events of `profile` in a calendar; see the module doc.
    pub async fn list(
        &self,
        calendar: &str,
        profile: &str,
        hint: &CalendarHint,
    ) -> Result<Vec<RemoteItem>, TargetError> {
        let url = self.calendar_url(calendar, hint.person_id.as_deref().unwrap_or_default());
        self.list_url(&url, profile, hint)
            .await
            .map_err(|e| self.fail(e.message))
    }

    /// [`CaldavTarget::list`] for drift repair: nothing but one `PROPFIND
    /// Depth: 0` when the calendar's change tag is the one in `hint.marker`
    /// (see the module doc), else a listing of what changed since.
    pub async fn list_checked(
        &self,
        calendar: &str,
        profile: &str,
        hint: &CalendarHint,
    ) -> Result<Listing, TargetError> {
        let url = self.calendar_url(calendar, hint.person_id.as_deref().unwrap_or_default());
        self.list_checked_url(&url, profile, hint)
            .await
            .map_err(|e| self.fail(e.message))
    }

    async fn list_checked_url(
        &self,
        url: &str,
        profile: &str,
        hint: &CalendarHint,
    ) -> Result<Listing, DavError> {
        let stored = hint
            .marker
            .as_deref()
            .map(mapping::Marker::parse)
            .unwrap_or_default();
        // Read before listing: any change from now on changes it again.
        let Some(ctag) = self.change_tag(url).await? else {
            self.with_state(url, |s| *s = CalState::default());
            return Ok(Listing::default());
        };
        if ctag.is_some() && ctag == stored.ctag {
            let items = hint
                .items
                .iter()
                .filter(|(name, _)| mapping::is_profile_resource(name, profile))
                .map(|(name, event_id)| RemoteItem {
                    event_id: event_id.clone(),
                    remote_id: name.clone(),
                    etag: hint.etags.get(name).cloned(),
                })
                .collect();
            return Ok(Listing {
                items,
                marker: hint.marker.clone(),
            });
        }
        if let Some(token) = &stored.token {
            // Nothing in memory yet: what the ledger says, plus what changed
            // since the stored token (a refused token lists in full).
            self.with_state(url, |s| {
                if s.token.is_none() {
                    s.exists = true;
                    s.partial = true;
                    s.token = Some(token.clone());
                    for (name, event_id) in &hint.items {
                        s.items.insert(
                            name.clone(),
                            Item {
                                etag: hint.etags.get(name).cloned(),
                                owner: Owner::Ours(event_id.clone()),
                            },
                        );
                    }
                }
            });
        }
        let items = self.list_url(url, profile, hint).await?;
        let token = self.with_state(url, |s| s.token.clone());
        Ok(Listing {
            items,
            marker: Some(mapping::Marker { ctag, token }.encode()),
        })
    }

    /// The collection's change tag: `None` when the calendar does not
    /// exist, `Some(None)` when the server offers none.
    async fn change_tag(&self, url: &str) -> Result<Option<Option<String>>, DavError> {
        loop {
            let how = self.change_tag.load(Ordering::Relaxed);
            if how == TAG_NONE {
                // Still tell a missing calendar from an existing one.
                return Ok(self.collection_kind(url).await?.map(|_| None));
            }
            let Some(r) = self
                .propfind_one(url, mapping::propfind_change_tag(how == TAG_SYNC_TOKEN))
                .await?
            else {
                return Ok(None);
            };
            let prop = if how == TAG_CTAG {
                "getctag"
            } else {
                "sync-token"
            };
            match r
                .props
                .get(prop)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
            {
                Some(v) => return Ok(Some(Some(format!("{prop}:{v}")))),
                None => {
                    let next = if how == TAG_CTAG {
                        TAG_SYNC_TOKEN
                    } else {
                        TAG_NONE
                    };
                    tracing::debug!(url, prop, "the server gives no change tag of this kind");
                    self.change_tag.store(next, Ordering::Relaxed);
                }
            }
        }
    }

    /// `Some(is a calendar)` when something exists at `url`, `None` when not.
    async fn collection_kind(&self, url: &str) -> Result<Option<bool>, DavError> {
        Ok(self
            .propfind_one(url, mapping::propfind("<d:resourcetype/>"))
            .await?
            .map(|r| r.flags.iter().any(|f| f == "resourcetype:calendar")))
    }

    /// `PROPFIND Depth: 0` of `url`: its one response, `None` when nothing
    /// is there.
    async fn propfind_one(
        &self,
        url: &str,
        body: String,
    ) -> Result<Option<mapping::DavResponse>, DavError> {
        let reply = self.client.xml("PROPFIND", url, Some("0"), body).await?;
        match reply.status.as_u16() {
            207 => {}
            404 | 410 => return Ok(None),
            _ => return Err(unexpected("PROPFIND", url, &reply)),
        }
        let ms = mapping::parse_multistatus(&reply.body)
            .map_err(|e| DavError::permanent(format!("PROPFIND {url}: {e}")))?;
        Ok(ms
            .responses
            .into_iter()
            .next()
            .filter(|r| !matches!(r.status, Some(404) | Some(410))))
    }

    async fn list_url(
        &self,
        url: &str,
        profile: &str,
        hint: &CalendarHint,
    ) -> Result<Vec<RemoteItem>, DavError> {
        if hint.marker.is_none() && self.with_state(url, |s| s.partial) {
            // A map seeded from the ledger is not the whole calendar.
            self.with_state(url, |s| *s = CalState::default());
        }
        if !self.refresh(url).await? {
            return Ok(Vec::new());
        }
        // Resolve owners from the hint; what stays unknown is fetched.
        let unknown: Vec<String> = self.with_state(url, |s| {
            let mut unknown = Vec::new();
            for (name, item) in s.items.iter_mut() {
                if !mapping::is_profile_resource(name, profile) || item.owner != Owner::Unknown {
                    continue;
                }
                match hint.items.get(name) {
                    Some(event_id) => item.owner = Owner::Ours(event_id.clone()),
                    None => unknown.push(name.clone()),
                }
            }
            unknown
        });
        if !unknown.is_empty() {
            self.identify(url, profile, &unknown).await?;
        }
        Ok(self.with_state(url, |s| {
            s.items
                .iter()
                .filter(|(name, _)| mapping::is_profile_resource(name, profile))
                .filter_map(|(name, item)| match &item.owner {
                    Owner::Ours(event_id) => Some(RemoteItem {
                        event_id: event_id.clone(),
                        remote_id: name.clone(),
                        etag: item.etag.clone(),
                    }),
                    _ => None,
                })
                .collect()
        }))
    }

    /// Reads the markers of resources nobody has identified yet.
    async fn identify(&self, url: &str, profile: &str, names: &[String]) -> Result<(), DavError> {
        let path = mapping::url_path(url).to_string();
        for chunk in names.chunks(MULTIGET) {
            let hrefs: Vec<String> = chunk.iter().map(|n| format!("{path}{n}")).collect();
            let reply = self
                .client
                .xml(
                    "REPORT",
                    url,
                    Some("1"),
                    mapping::multiget(hrefs.iter().map(String::as_str)),
                )
                .await?;
            if reply.status.as_u16() != 207 {
                return Err(unexpected("REPORT calendar-multiget", url, &reply));
            }
            let ms = mapping::parse_multistatus(&reply.body)
                .map_err(|e| DavError::permanent(format!("REPORT {url}: {e}")))?;
            self.with_state(url, |s| {
                for r in ms.responses {
                    let name = mapping::href_name(&r.href);
                    let Some(data) = r.props.get("calendar-data") else {
                        continue;
                    };
                    let owner = match ics::read_marker(data) {
                        Some((p, e))
                            if p == profile && mapping::resource_file(profile, &e) == name =>
                        {
                            Owner::Ours(e)
                        }
                        _ => Owner::Foreign,
                    };
                    if let Some(item) = s.items.get_mut(&name) {
                        item.owner = owner;
                        if let Some(e) = r.etag() {
                            item.etag = Some(e);
                        }
                    }
                }
            });
        }
        Ok(())
    }

    // ---- cleardown ------------------------------------------------------

    /// Removes every event of `profile`, proven by marker, from the calendars
    /// of `calendars` (emails: the ledger's calendars plus everyone in the
    /// source). With a `{person_id}` template, whose URLs emails cannot give,
    /// the collection above the `{person_id}` segment is listed instead and
    /// every person's calendar under it is cleared.
    pub async fn cleardown(&self, profile: &str, calendars: &[String]) -> Result<u64, TargetError> {
        let mut urls: Vec<String> = if !self.template.has_placeholders() {
            vec![self.template.as_str().to_string()]
        } else if self.template.uses_person_id() {
            self.person_calendars()
                .await
                .map_err(|e| self.fail(e.message))?
        } else {
            calendars.iter().map(|c| self.calendar_url(c, "")).collect()
        };
        let mut seen = HashSet::new();
        urls.retain(|u| seen.insert(u.clone()));
        let results: Vec<Result<u64, DavError>> = stream::iter(urls)
            .map(|url| async move {
                let items = self
                    .list_url(&url, profile, &CalendarHint::default())
                    .await?;
                let done: Vec<Result<(), DavError>> = stream::iter(items)
                    .map(|it| {
                        let url = url.clone();
                        async move {
                            self.delete_resource(
                                &url,
                                &it.remote_id,
                                profile,
                                &it.event_id,
                                it.etag,
                            )
                            .await
                        }
                    })
                    .buffer_unordered(PER_CALENDAR)
                    .collect()
                    .await;
                let mut n = 0;
                for d in done {
                    d?;
                    n += 1;
                }
                Ok(n)
            })
            .buffer_unordered(self.calendar_concurrency())
            .collect()
            .await;
        let mut removed = 0;
        let mut errors = Vec::new();
        for r in results {
            match r {
                Ok(n) => removed += n,
                Err(e) => errors.push(e.message),
            }
        }
        if let Some(first) = errors.first() {
            return Err(self.fail(format!(
                "removed {removed} events, but {} calendars could not be cleared (run cleardown again to finish): {first}",
                errors.len()
            )));
        }
        Ok(removed)
    }

    pub fn calendar_concurrency(&self) -> usize {
        16
    }

    /// The calendars of everybody under a `{person_id}` template: the
    /// children of the collection above the `{person_id}` segment.
    async fn person_calendars(&self) -> Result<Vec<String>, DavError> {
        self.template.check_shape().map_err(DavError::permanent)?;
        let t = self.template.as_str();
        let at = t.find("{person_id}").unwrap_or(t.len());
        let (base, rest) = (&t[..at], t[at..].trim_start_matches("{person_id}"));
        let reply = self
            .client
            .xml("PROPFIND", base, Some("1"), mapping::propfind_etags())
            .await?;
        if reply.status.as_u16() != 207 {
            return Err(unexpected("PROPFIND", base, &reply));
        }
        let ms = mapping::parse_multistatus(&reply.body).map_err(DavError::permanent)?;
        let root = mapping::authority(base);
        let base_path = mapping::url_path(base).trim_end_matches('/').to_string();
        Ok(ms
            .responses
            .iter()
            .filter(|r| r.is_collection() && r.href.trim_end_matches('/') != base_path)
            .map(|r| {
                format!(
                    "{}{}",
                    absolute(&root, r.href.trim_end_matches('/')),
                    if rest.is_empty() { "/" } else { rest }
                )
            })
            .collect())
    }

    // ---- check and discovery -------------------------------------------

    /// Checks `calendar_url` and the service account's rights in a sample
    /// person's calendar (`email` and `person_id` of one person in the
    /// source): see the module doc.
    pub async fn check(
        &self,
        email: Option<&str>,
        person_id: Option<&str>,
    ) -> Result<String, TargetError> {
        self.template.check_shape().map_err(|e| self.fail(e))?;
        let t = self.template.as_str();
        let url = match (email, person_id) {
            (None, _) if t.contains("{email}") => {
                return Err(self.fail(
                    "no person to probe with (the source has nobody with an email, and calendar_url needs {email}); the write check needs one person's calendar".into(),
                ))
            }
            (_, None) if self.template.uses_person_id() => {
                return Err(self.fail(
                    "no person to probe with (the source has nobody, and calendar_url needs {person_id}); the write check needs one person's calendar".into(),
                ))
            }
            _ => self.calendar_url(email.unwrap_or_default(), person_id.unwrap_or_default()),
        };
        match self.probe(&url).await {
            Ok(Probed::Existing) => Ok(format!(
                "caldav target {}: {} can write into {url}",
                self.name,
                self.client.username(),
            )),
            Ok(Probed::Made { parents }) => Ok(format!(
                "caldav target {}: {} can create people's calendars: {url} did not exist yet, so the check made it{}, wrote and removed a probe event in it, and removed it again (the first sync makes it for good)",
                self.name,
                self.client.username(),
                if parents.is_empty() {
                    String::new()
                } else {
                    format!(" (and {})", parents.join(", "))
                }
            )),
            Err(e) => {
                let mut message = e.message;
                if matches!(e.status, Some(401) | Some(403)) && !message.contains("rights file") {
                    message.push_str(&format!(" {}", rights_advice(self.client.username())));
                }
                if let Ok(d) = self.discover(&mapping::authority(&url)).await {
                    message.push_str(&format!(
                        "\n  discovery: principal {}, calendar home {}",
                        d.principal,
                        d.calendar_home.as_deref().unwrap_or("(not given)")
                    ));
                    if let Some(s) = d.suggestion {
                        message.push_str(&format!(
                            "; people's calendars are probably at calendar_url = {s:?}"
                        ));
                    }
                }
                Err(self.fail(message))
            }
        }
    }

    /// Proves the service account can write at `url` (see `check`).
    async fn probe(&self, url: &str) -> Result<Probed, DavError> {
        let made = match self.collection_kind(url).await? {
            Some(true) => None,
            Some(false) => {
                return Err(DavError::permanent(format!(
                    "{url} exists but is not a calendar collection: calendar_url must name each person's calendar (one edusync may create with MKCALENDAR), not their home or principal; e.g. \"…/{{email}}/timetable/\""
                )))
            }
            None => Some(self.make_calendar(url).await?),
        };
        let wrote = self.probe_write(url).await;
        if let Some(m) = &made {
            // Leave nothing behind: the calendar (and parent) just made are empty.
            let mut undo = Vec::new();
            if m.created {
                undo.push(url.to_string());
            }
            undo.extend(m.parents.iter().rev().cloned());
            self.with_state(url, |s| *s = CalState::default());
            for u in undo {
                let del = self.client.delete(&u, Precondition::None).await?;
                if !(del.status.is_success() || del.status == StatusCode::NOT_FOUND) {
                    return Err(DavError {
                        retryable: false,
                        status: Some(del.status.as_u16()),
                        message: format!(
                            "DELETE {u}: the server answered {}: the check made this collection to prove write access but cannot remove it; remove it by hand (a sync would make it again). {}",
                            del.status,
                            rights_advice(self.client.username())
                        ),
                    });
                }
            }
        }
        wrote?;
        Ok(match made {
            Some(Made {
                created: true,
                parents,
            }) => Probed::Made { parents },
            _ => Probed::Existing,
        })
    }

    /// Writes and removes a probe event in an existing calendar.
    async fn probe_write(&self, url: &str) -> Result<(), DavError> {
        let uid = format!("edusync-check-{:x}", jiff::Timestamp::now().as_nanosecond());
        let res = format!("{url}{uid}.ics");
        let reply = self
            .client
            .put(&res, mapping::probe_object(&uid), Precondition::Absent)
            .await?;
        match reply.status.as_u16() {
            200..=299 => {}
            401 | 403 => {
                return Err(DavError {
                    retryable: false,
                    status: Some(reply.status.as_u16()),
                    message: format!(
                    "PUT {res}: the server answered {}: {} may not write into this calendar. {}",
                    reply.status,
                    self.client.username(),
                    rights_advice(self.client.username())
                ),
                })
            }
            _ => return Err(unexpected("PUT", &res, &reply)),
        }
        let pre = reply
            .etag
            .as_deref()
            .map(Precondition::Matches)
            .unwrap_or(Precondition::None);
        let del = self.client.delete(&res, pre).await?;
        if !(del.status.is_success() || del.status == StatusCode::NOT_FOUND) {
            return Err(DavError {
                retryable: false,
                status: Some(del.status.as_u16()),
                message: format!(
                    "DELETE {res}: the server answered {}: {} can create events but not remove them (the probe event is still there; remove it by hand). {}",
                    del.status,
                    self.client.username(),
                    rights_advice(self.client.username())
                ),
            });
        }
        Ok(())
    }

    /// RFC 6764 discovery from a server's root (`scheme://host:port`):
    /// `/.well-known/caldav`, then `current-user-principal` (RFC 5397), then
    /// `calendar-home-set` (RFC 4791 §6.2.1).
    pub async fn discover(&self, root: &str) -> Result<Discovery, DavError> {
        let root = root.trim_end_matches('/');
        let body = mapping::propfind("<d:current-user-principal/>");
        let mut principal = None;
        for start in [format!("{root}/.well-known/caldav"), format!("{root}/")] {
            let reply = self
                .client
                .xml("PROPFIND", &start, Some("0"), body.clone())
                .await?;
            if reply.status.as_u16() != 207 {
                continue;
            }
            if let Ok(ms) = mapping::parse_multistatus(&reply.body) {
                principal = ms
                    .responses
                    .iter()
                    .find_map(|r| r.props.get("current-user-principal/href").cloned())
                    .filter(|h| !h.is_empty());
            }
            if principal.is_some() {
                break;
            }
        }
        let principal = principal.ok_or_else(|| {
            DavError::permanent(format!("{root}: no current-user-principal found"))
        })?;
        let purl = absolute(root, &principal);
        let reply = self
            .client
            .xml(
                "PROPFIND",
                &purl,
                Some("0"),
                mapping::propfind("<c:calendar-home-set/>"),
            )
            .await?;
        let home = if reply.status.as_u16() == 207 {
            mapping::parse_multistatus(&reply.body).ok().and_then(|ms| {
                ms.responses
                    .iter()
                    .find_map(|r| r.props.get("calendar-home-set/href").cloned())
            })
        } else {
            None
        };
        let suggestion = home.as_ref().and_then(|h| {
            let user = self.client.username();
            let abs = absolute(root, h);
            let needle = format!("/{user}/");
            abs.rfind(&needle).map(|i| {
                format!(
                    "{}/{{email}}/{}timetable/",
                    &abs[..i],
                    &abs[i + needle.len()..]
                )
            })
        });
        Ok(Discovery {
            principal,
            calendar_home: home,
            suggestion,
        })
    }
}

fn absolute(root: &str, href: &str) -> String {
    if href.starts_with("http://") || href.starts_with("https://") {
        href.to_string()
    } else {
        format!("{root}{href}")
    }
}

/// What to grant on common servers so a service account can write into
/// everybody's calendars.
pub fn rights_advice(user: &str) -> String {
    format!(
        "Grant the service account `{user}` read and write access to every person's calendar: \
         Radicale — set `[rights] type = from_file` and add to the rights file a section like \
         `[edusync] user: {user} collection: .* permissions: RrWw` (before any owner-only rule); \
         Nextcloud — share each person's calendar (or let people share theirs) with `{user}` \
         with \"can edit\", as Nextcloud has no server-wide delegation; \
         SOGo — give `{user}` delegation rights to create, modify and delete events in each \
         calendar (calendar sharing in the web interface, or `sogo-tool manage-acl`)."
    )
}
