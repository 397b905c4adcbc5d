//! The Google Calendar client: per-person gates (requests in flight,
//! rate-limit backoff, usage-limit pause), the quotas kept client-side,
//! calendar lookup, idempotent event writes and marker listings.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};

use super::auth::TokenCache;
use super::mapping::{self, error_parts, is_rate_limit, is_usage_limit, marker_of};
use super::{GoogleClientOptions, GoogleError, GoogleSettings, RemoteEvent, MARKER_PROFILE};
use crate::adaptive::{AdaptiveConfig, AdaptiveLimit, Feedback, LimitStats};
use crate::lock;
use crate::percent_encode as enc;
use crate::rate::{take_all, Hold, SlidingWindow};

/// A Google Calendar client. Cheap to clone; clones share calendars found
/// and each person's gate, and every client of the process with the same
/// token endpoint and key shares tokens.
#[derive(Clone)]
pub struct GoogleClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GoogleClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleClient")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

struct Inner {
    settings: GoogleSettings,
    opts: GoogleClientOptions,
    http: reqwest::Client,
    tokens: Arc<TokenCache>,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    calendars: Mutex<HashMap<String, String>>,
    project_rate: Option<SlidingWindow>,
}

/// One person's gate: requests in flight (the adaptive limit shared with
/// Graph's mailboxes, capped at `user_concurrency`), the backoff after a
/// rate-limit answer, the usage-limit pause, and their share of the quota.
struct Gate {
    limit: AdaptiveLimit,
    held: Hold,
    /// Rate-limit answers since the last success: the backoff's exponent.
    strikes: AtomicU32,
    paused: Mutex<Option<String>>,
    rate: Option<SlidingWindow>,
    /// One calendar lookup or creation at a time.
    calendar: tokio::sync::Mutex<()>,
}

/// What came back for one request (other than a retryable failure).
pub(crate) struct Answer {
    pub status: u16,
    pub body: Value,
}

/// A written event: its id and etag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub id: String,
    pub etag: Option<String>,
}

/// What changed in a calendar since a sync token.
#[derive(Debug, Default)]
pub struct Changes {
    /// Events of the profile that are live now (new or changed).
    pub live: Vec<RemoteEvent>,
    /// Ids of events that are deleted now, or no longer the profile's.
    pub gone: Vec<String>,
    /// The token to ask with next time.
    pub next: Option<String>,
}

impl GoogleClient {
    pub fn new(settings: GoogleSettings) -> Self {
        Self::with_options(settings, GoogleClientOptions::default())
    }

    pub fn with_options(settings: GoogleSettings, opts: GoogleClientOptions) -> Self {
        let http = reqwest::Client::builder()
            .timeout(opts.request_timeout)
            .connect_timeout(Duration::from_secs(10).min(opts.request_timeout))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let project_rate = opts.project_rate.map(SlidingWindow::new);
        Self {
            inner: Arc::new(Inner {
                tokens: TokenCache::shared(&settings.token_url, &settings.key),
                settings,
                opts,
                http,
                gates: Mutex::new(HashMap::new()),
                calendars: Mutex::new(HashMap::new()),
                project_rate,
            }),
        }
    }

    pub fn settings(&self) -> &GoogleSettings {
        &self.inner.settings
    }

    pub fn options(&self) -> &GoogleClientOptions {
        &self.inner.opts
    }

    fn gate(&self, user: &str) -> Arc<Gate> {
        let o = &self.inner.opts;
        let max = o.user_concurrency.clamp(1, u32::MAX as usize) as u32;
        lock(&self.inner.gates)
            .entry(user.to_lowercase())
            .or_insert_with(|| {
                Arc::new(Gate {
                    limit: AdaptiveLimit::new(AdaptiveConfig {
                        max,
                        initial: o.adaptive.initial.min(max),
                        ..o.adaptive
                    }),
                    held: Hold::default(),
                    strikes: AtomicU32::new(0),
                    paused: Mutex::new(None),
                    rate: o.user_rate.map(SlidingWindow::new),
                    calendar: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// The adaptive limit on `user`'s requests in flight as it stands (tests, logs).
    pub fn user_limit(&self, user: &str) -> LimitStats {
        self.gate(user).limit.stats()
    }

    /// Why `user` is paused for the rest of the run (Google's calendar usage limit), if they are.
    pub fn paused(&self, user: &str) -> Option<String> {
        lock(&self.gate(user).paused).clone()
    }

    /// A token for `user` (proves the delegation works for them).
    pub async fn token(&self, user: &str) -> Result<String, GoogleError> {
        self.inner.tokens.get(&self.inner.http, user).await
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let o = &self.inner.opts;
        let exp = o
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(o.backoff_max);
        // Never shorter than the step itself: jitter only adds (Google's
        // advice: 2^n seconds plus a random part).
        let jitter = rand::thread_rng().gen_range(0.0..=exp.as_secs_f64() / 2.0);
        (exp + Duration::from_secs_f64(jitter)).min(o.backoff_max.max(o.backoff_base))
    }

    fn retryable(user: &str, status: Option<u16>, message: String) -> GoogleError {
        GoogleError::Retryable {
            user: user.to_string(),
            status,
            message,
        }
    }

    /// One request as `user`, inside their gate, paced by the quotas,
    /// retried on rate limits (holding the person), 5xx and transport
    /// failures. Other answers are returned as they are.
    pub(crate) async fn request(
        &self,
        user: &str,
        method: Method,
        url: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Answer, GoogleError> {
        let gate = self.gate(user);
        let opts = &self.inner.opts;
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            if let Some(message) = lock(&gate.paused).clone() {
                return Err(GoogleError::UsageLimited {
                    user: user.to_string(),
                    message,
                });
            }
            gate.held.wait().await;
            let permit = gate.limit.acquire(1).await;
            let token = self.inner.tokens.get(&self.inner.http, user).await?;
            let windows: Vec<&SlidingWindow> =
                [gate.rate.as_ref(), self.inner.project_rate.as_ref()]
                    .into_iter()
                    .flatten()
                    .collect();
            take_all(&windows, 1).await;
            // A rate-limit answer came in while this one waited for its slot:
            // wait out the backoff and count the request again when it goes.
            if gate.held.held_for().is_some() {
                gate.held.wait().await;
                take_all(&windows, 1).await;
            }
            if lock(&gate.paused).is_some() {
                continue;
            }
            let mut rb = self
                .inner
                .http
                .request(method.clone(), url)
                .bearer_auth(&token);
            if let Some(b) = body {
                rb = rb.json(b);
            }
            if let Some(m) = if_match {
                rb = rb.header("If-Match", m);
            }
            let sent_at = Instant::now();
            let sent = rb.send().await;
            let answer = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match resp.bytes().await {
                        Ok(bytes) => Ok((
                            status,
                            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
                        )),
                        Err(e) => Err((
                            format!("reading the answer to {method} failed: {e}"),
                            e.is_timeout(),
                        )),
                    }
                }
                Err(e) => Err((format!("{method} request failed: {e}"), e.is_timeout())),
            };
            // Rate limits, 503/504 and timeouts shrink the person's limit;
            // quick answers grow it back up to the cap.
            permit.done(match &answer {
                Ok((status, _)) if (200..300).contains(status) => Feedback::Ok(sent_at.elapsed()),
                Ok((503 | 504, _)) => Feedback::Backoff,
                Ok((status, body)) if is_rate_limit(*status, &error_parts(body).0) => {
                    Feedback::Backoff
                }
                Err((_, true)) => Feedback::Backoff,
                _ => Feedback::Neutral,
            });
            let err = match answer {
                Ok((status, body)) if (200..300).contains(&status) => {
                    gate.strikes.store(0, Ordering::Relaxed);
                    return Ok(Answer { status, body });
                }
                Ok((401, _)) if !renewed => {
                    renewed = true;
                    self.inner.tokens.invalidate(user).await;
                    continue;
                }
                Ok((status, body)) => {
                    let (reason, message) = error_parts(&body);
                    if is_usage_limit(status, &reason, &message) {
                        let mut p = lock(&gate.paused);
                        p.get_or_insert_with(|| format!("HTTP {status} {reason}: {message}"));
                        tracing::warn!(user, "google: calendar usage limits exceeded; person paused for the rest of the run");
                        return Err(GoogleError::UsageLimited {
                            user: user.to_string(),
                            message: format!("HTTP {status} {reason}: {message}"),
                        });
                    }
                    if is_rate_limit(status, &reason) {
                        let strikes = gate.strikes.fetch_add(1, Ordering::Relaxed);
                        let wait = self.backoff(strikes);
                        tracing::debug!(
                            user,
                            status,
                            reason,
                            wait_ms = wait.as_millis() as u64,
                            "google: rate limited, backing off"
                        );
                        gate.held.hold(wait);
                        Self::retryable(
                            user,
                            Some(status),
                            format!("HTTP {status} {reason}: {message}"),
                        )
                    } else if status >= 500 {
                        tokio::time::sleep(self.backoff(attempt - 1)).await;
                        Self::retryable(
                            user,
                            Some(status),
                            format!("HTTP {status} {reason}: {message}"),
                        )
                    } else {
                        return Ok(Answer { status, body });
                    }
                }
                Err((message, _)) => {
                    tokio::time::sleep(self.backoff(attempt - 1)).await;
                    Self::retryable(user, None, message)
                }
            };
            if attempt >= opts.max_attempts {
                return Err(err);
            }
        }
    }

    fn rejected(user: &str, a: &Answer) -> GoogleError {
        let (reason, message) = error_parts(&a.body);
        GoogleError::Rejected {
            user: user.to_string(),
            status: a.status,
            reason,
            message,
        }
    }

    fn api(&self) -> &str {
        self.inner.settings.api_url.trim_end_matches('/')
    }

    fn events_url(&self, calendar_id: &str) -> String {
        format!("{}/calendars/{}/events", self.api(), enc(calendar_id))
    }

    /// The id of the edusync calendar in `user`'s calendar list, created when missing.
    pub async fn ensure_calendar(&self, user: &str) -> Result<String, GoogleError> {
        self.calendar(user, true)
            .await
            .map(|c| c.expect("created when missing"))
    }

    /// The id of the edusync calendar in `user`'s calendar list, if there is one.
    pub async fn find_calendar(&self, user: &str) -> Result<Option<String>, GoogleError> {
        self.calendar(user, false).await
    }

    /// Records `calendar_id` as `user`'s edusync calendar (read from a
    /// stored change marker and proven by a listing), sparing the lookup.
    pub fn remember_calendar(&self, user: &str, calendar_id: &str) {
        lock(&self.inner.calendars).insert(user.to_lowercase(), calendar_id.to_string());
    }

    /// Forgets the calendar found for `user` (it was deleted).
    pub fn forget_calendar(&self, user: &str) {
        lock(&self.inner.calendars).remove(&user.to_lowercase());
    }

    async fn calendar(&self, user: &str, create: bool) -> Result<Option<String>, GoogleError> {
        let key = user.to_lowercase();
        if let Some(id) = lock(&self.inner.calendars).get(&key) {
            return Ok(Some(id.clone()));
        }
        let gate = self.gate(user);
        let _one = gate.calendar.lock().await;
        if let Some(id) = lock(&self.inner.calendars).get(&key) {
            return Ok(Some(id.clone()));
        }
        let name = &self.inner.settings.calendar;
        let mut found: Vec<String> = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/users/me/calendarList?minAccessRole=owner&maxResults=250",
                self.api()
            );
            if let Some(p) = &page {
                url.push_str(&format!("&pageToken={}", enc(p)));
            }
            let a = self.request(user, Method::GET, &url, None, None).await?;
            if a.status != 200 {
                return Err(Self::rejected(user, &a));
            }
            for c in a.body["items"].as_array().into_iter().flatten() {
                if c["summary"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(name))
                {
                    if let Some(id) = c["id"].as_str() {
                        found.push(id.to_string());
                    }
                }
            }
            match a.body["nextPageToken"].as_str() {
                Some(p) => page = Some(p.to_string()),
                None => break,
            }
        }
        // Two of the same name (made by hand?): always the same one.
        found.sort();
        if let Some(id) = found.into_iter().next() {
            lock(&self.inner.calendars).insert(key, id.clone());
            return Ok(Some(id));
        }
        if !create {
            return Ok(None);
        }
        let url = format!("{}/calendars", self.api());
        let a = self
            .request(
                user,
                Method::POST,
                &url,
                Some(&json!({ "summary": name, "timeZone": "UTC" })),
                None,
            )
            .await?;
        if a.status != 200 {
            return Err(Self::rejected(user, &a));
        }
        let id = a.body["id"]
            .as_str()
            .ok_or_else(|| GoogleError::Protocol {
                user: user.to_string(),
                message: "the created calendar has no id".into(),
            })?
            .to_string();
        tracing::info!(user, calendar = %id, "google: created the edusync calendar");
        lock(&self.inner.calendars).insert(key, id.clone());
        Ok(Some(id))
    }

    /// How many calendars `user` has (the `check` probe).
    pub async fn probe(&self, user: &str) -> Result<usize, GoogleError> {
        let url = format!("{}/users/me/calendarList?maxResults=250", self.api());
        let a = self.request(user, Method::GET, &url, None, None).await?;
        if a.status != 200 {
            return Err(Self::rejected(user, &a));
        }
        Ok(a.body["items"].as_array().map_or(0, Vec::len))
    }

    fn written(user: &str, body: &Value) -> Result<Written, GoogleError> {
        let id = body["id"].as_str().ok_or_else(|| GoogleError::Protocol {
            user: user.to_string(),
            message: "the event in the answer has no id".into(),
        })?;
        Ok(Written {
            id: id.to_string(),
            etag: body["etag"].as_str().map(str::to_string),
        })
    }

    /// Inserts `body` (which carries its id) into `calendar_id`. An id that
    /// exists already (409: a retry, or an event deleted by hand) is proven
    /// to carry marker `key` and patched to `body`; one without it is refused.
    pub async fn insert(
        &self,
        user: &str,
        calendar_id: &str,
        key: &str,
        body: &Value,
    ) -> Result<Written, GoogleError> {
        let url = self.events_url(calendar_id);
        let a = self
            .request(user, Method::POST, &url, Some(body), None)
            .await?;
        match a.status {
            200 | 201 => Self::written(user, &a.body),
            404 => Err(GoogleError::CalendarNotFound {
                user: user.to_string(),
                calendar_id: calendar_id.to_string(),
            }),
            409 => {
                let id = body["id"].as_str().unwrap_or_default();
                self.take_over(user, calendar_id, id, key, body).await
            }
            _ => Err(Self::rejected(user, &a)),
        }
    }

    /// The 409 path: read the event, prove the marker, patch it with `If-Match`.
    async fn take_over(
        &self,
        user: &str,
        calendar_id: &str,
        id: &str,
        key: &str,
        body: &Value,
    ) -> Result<Written, GoogleError> {
        let url = format!("{}/{}", self.events_url(calendar_id), enc(id));
        for _ in 0..3 {
            let got = self.request(user, Method::GET, &url, None, None).await?;
            if got.status != 200 {
                return Err(Self::rejected(user, &got));
            }
            if marker_of(&got.body) != Some(key) {
                return Err(GoogleError::Rejected {
                    user: user.to_string(),
                    status: 409,
                    reason: "duplicate".into(),
                    message: format!(
                        "event id {id} is taken by an event without edusync's marker {key}; edusync leaves it alone"
                    ),
                });
            }
            let mut patch = body.clone();
            if let Value::Object(m) = &mut patch {
                m.remove("id");
            }
            let etag = got.body["etag"].as_str();
            let a = self
                .request(user, Method::PATCH, &url, Some(&patch), etag)
                .await?;
            match a.status {
                200 => return Self::written(user, &a.body),
                // Changed between the read and the patch: read again.
                412 => continue,
                _ => return Err(Self::rejected(user, &a)),
            }
        }
        Err(Self::retryable(
            user,
            Some(412),
            format!("event {id} kept changing while edusync rewrote it"),
        ))
    }

    /// Rewrites event `id` with `body`. `NotFound` when there is no such event.
    pub async fn patch(
        &self,
        user: &str,
        calendar_id: &str,
        id: &str,
        body: &Value,
    ) -> Result<Written, GoogleError> {
        let url = format!("{}/{}", self.events_url(calendar_id), enc(id));
        let a = self
            .request(user, Method::PATCH, &url, Some(body), None)
            .await?;
        match a.status {
            200 => Self::written(user, &a.body),
            404 | 410 => Err(GoogleError::NotFound {
                user: user.to_string(),
                status: a.status,
                what: format!("event {id}"),
            }),
            _ => Err(Self::rejected(user, &a)),
        }
    }

    /// Deletes event `id`; one already gone (404, 410) counts as deleted.
    pub async fn delete(&self, user: &str, calendar_id: &str, id: &str) -> Result<(), GoogleError> {
        let url = format!("{}/{}", self.events_url(calendar_id), enc(id));
        let a = self.request(user, Method::DELETE, &url, None, None).await?;
        match a.status {
            200 | 204 | 404 | 410 => Ok(()),
            _ => Err(Self::rejected(user, &a)),
        }
    }

    /// Every page of `events.list` on `calendar_id` with `query`; returns
    /// the events and the last page's `nextSyncToken`.
    async fn list_pages(
        &self,
        user: &str,
        calendar_id: &str,
        query: &str,
    ) -> Result<(Vec<Value>, Option<String>), GoogleError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut url = format!(
                "{}?maxResults={}&{query}",
                self.events_url(calendar_id),
                self.inner.opts.page_size
            );
            if let Some(p) = &page {
                url.push_str(&format!("&pageToken={}", enc(p)));
            }
            let a = self.request(user, Method::GET, &url, None, None).await?;
            match a.status {
                200 => {}
                404 => {
                    return Err(GoogleError::CalendarNotFound {
                        user: user.to_string(),
                        calendar_id: calendar_id.to_string(),
                    })
                }
                410 => {
                    return Err(GoogleError::NotFound {
                        user: user.to_string(),
                        status: 410,
                        what: "sync token".into(),
                    })
                }
                _ => return Err(Self::rejected(user, &a)),
            }
            if let Some(items) = a.body["items"].as_array() {
                out.extend(items.iter().cloned());
            }
            match a.body["nextPageToken"].as_str() {
                Some(p) => page = Some(p.to_string()),
                None => return Ok((out, a.body["nextSyncToken"].as_str().map(String::from))),
            }
        }
    }

    fn remote(profile: &str, e: &Value) -> Option<RemoteEvent> {
        let key = marker_of(e)?;
        let prefix_ok = key
            .strip_prefix(profile)
            .is_some_and(|r| r.starts_with('/'));
        if !prefix_ok || e["status"].as_str() == Some("cancelled") {
            return None;
        }
        Some(RemoteEvent {
            id: e["id"].as_str()?.to_string(),
            key: key.to_string(),
            etag: e["etag"].as_str().map(str::to_string),
        })
    }

    /// The live events of `profile` in `calendar_id`, filtered on the
    /// marker, all pages, and the sync token Google hands back with the
    /// last page (for [`GoogleClient::list_since`]).
    pub async fn list_profile(
        &self,
        user: &str,
        calendar_id: &str,
        profile: &str,
    ) -> Result<(Vec<RemoteEvent>, Option<String>), GoogleError> {
        let query = format!(
            "privateExtendedProperty={}",
            enc(&format!("{MARKER_PROFILE}={profile}"))
        );
        let (items, next) = self.list_pages(user, calendar_id, &query).await?;
        let events = items
            .iter()
            .filter_map(|e| Self::remote(profile, e))
            .collect();
        Ok((events, next))
    }

    /// What changed in `calendar_id` since sync `token` (every page):
    /// Google does not filter changes on the marker, so that is done here.
    /// An expired token is `NotFound` with status 410 (list in full then);
    /// a calendar that is gone is `CalendarNotFound`.
    pub async fn list_since(
        &self,
        user: &str,
        calendar_id: &str,
        profile: &str,
        token: &str,
    ) -> Result<Changes, GoogleError> {
        let query = format!("syncToken={}", enc(token));
        let (items, next) = self.list_pages(user, calendar_id, &query).await?;
        let mut changes = Changes {
            next,
            ..Changes::default()
        };
        for e in &items {
            match (Self::remote(profile, e), e["id"].as_str()) {
                (Some(r), _) => changes.live.push(r),
                (None, Some(id)) => changes.gone.push(id.to_string()),
                (None, None) => {}
            }
        }
        Ok(changes)
    }

    /// The event body edusync writes (see [`mapping::event_body`]).
    pub fn body(
        &self,
        id: Option<&str>,
        profile: &str,
        ev: &edusync_core::render::RenderedEvent,
    ) -> Value {
        mapping::event_body(id, profile, ev)
    }
}
