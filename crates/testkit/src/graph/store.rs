//! The emulator's state: mailboxes, calendars, events, tokens, limits,
//! faults, counters and recorded violations, all behind one mutex that is
//! never held across an `.await`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::odata::{self, Filter};
use super::{Faults, GraphEmulatorConfig, RateLimit, UserSpec};

/// Whether a mailbox can be used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxState {
    /// Licensed, with an Exchange Online mailbox.
    #[default]
    Ok,
    /// The user exists but has no Exchange Online mailbox: `404 MailboxNotEnabledForRESTAPI`.
    Unlicensed,
    /// No such user: `404 ResourceNotFound`.
    Unknown,
}

/// How an outage looks to clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutageMode {
    /// Every request is answered `503 Service Unavailable` with `Retry-After`.
    #[default]
    Unavailable,
    /// Connections are reset without an answer.
    Refuse,
}

/// What the client did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// A request for a mailbox before the `Retry-After` it was given had elapsed.
    IgnoredRetryAfter,
    /// More than the allowed concurrent requests for one mailbox.
    TooManyConcurrent,
    /// A `$batch` of more than 20 requests.
    OversizeBatch,
    /// A Graph request without a token, or with one the emulator never issued.
    InvalidToken,
    /// A Graph request with an expired token.
    ExpiredToken,
}

/// One recorded client violation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Violation {
    /// What rule was broken.
    pub kind: ViolationKind,
    /// The mailbox concerned, when there is one.
    pub mailbox: Option<String>,
    /// `METHOD /path` of the offending request.
    pub request: String,
    /// Details for the failure message.
    pub detail: String,
    /// Milliseconds since the emulator started.
    pub at_ms: u64,
}

/// Per-mailbox counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MailboxStats {
    /// Requests admitted (each request inside a batch counts one).
    pub requests: u64,
    /// Requests answered 429.
    pub throttled: u64,
    /// Highest number of concurrent admitted requests seen.
    pub max_concurrent: usize,
    /// Events currently in the mailbox.
    pub events: usize,
}

/// Counters over the emulator's life.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// HTTP requests received (a batch counts one here).
    pub http_requests: u64,
    /// Graph requests handled, counting each request inside a batch.
    pub graph_requests: u64,
    /// `$batch` requests received.
    pub batches: u64,
    /// Requests answered 429 (top level or inside a batch).
    pub throttled: u64,
    /// 503/504 injected by [`super::Faults::error_rate`] or an outage.
    pub injected_errors: u64,
    /// Connections reset after a write was applied.
    pub dropped_connections: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Events created (not counting `transactionId` repeats).
    pub events_created: u64,
    /// Creates answered with the existing event because of `transactionId`.
    pub transaction_id_repeats: u64,
    /// Per mailbox, by UPN (lowercase).
    pub mailboxes: BTreeMap<String, MailboxStats>,
}

/// An event as stored, for tests to inspect.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatedEvent {
    /// Graph id.
    pub id: String,
    /// Name of its calendar.
    pub calendar: String,
    /// Subject.
    pub subject: String,
    /// Start (UTC).
    pub start: Timestamp,
    /// End (UTC).
    pub end: Timestamp,
    /// Body text.
    pub body: String,
    /// Location display name.
    pub location: String,
    /// Categories.
    pub categories: Vec<String>,
    /// `showAs`.
    pub show_as: String,
    /// `isReminderOn`.
    pub is_reminder_on: bool,
    /// `transactionId` given at create.
    pub transaction_id: Option<String>,
    /// Single-value extended properties `(id, value)`.
    pub extended_properties: Vec<(String, String)>,
    /// Current change key.
    pub change_key: String,
    /// The event as Graph would return it (with all extended properties).
    pub json: Value,
}

impl EmulatedEvent {
    /// The value of the extended property with this id (compared as Graph does).
    pub fn extended_property(&self, id: &str) -> Option<&str> {
        let want = odata::normalize_ext_id(id);
        self.extended_properties
            .iter()
            .find(|(k, _)| odata::normalize_ext_id(k) == want)
            .map(|(_, v)| v.as_str())
    }
}

/// One answer: to an HTTP request or to a request inside a batch.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    /// Something was written (for the drop-after-write fault).
    pub wrote: bool,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Some(body),
            wrote: false,
        }
    }
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
            wrote: false,
        }
    }
    pub fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    pub fn wrote(mut self) -> Self {
        self.wrote = true;
        self
    }
}

pub(crate) fn new_guid(rng: &mut StdRng) -> String {
    let b: [u8; 16] = rng.gen();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn random_id(rng: &mut StdRng, prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::from(prefix);
    for _ in 0..len {
        s.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    s
}

/// A Graph error reply: `{"error":{"code","message","innerError":{…}}}`.
pub(crate) fn graph_error(rng: &mut StdRng, status: u16, code: &str, message: &str) -> Reply {
    let request_id = new_guid(rng);
    Reply::json(
        status,
        json!({
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S").to_string(),
                    "request-id": request_id,
                    "client-request-id": request_id,
                }
            }
        }),
    )
    .header("request-id", request_id.clone())
}

/// Event properties a client may set; anything else is rejected as Graph does.
const SETTABLE: &[&str] = &[
    "subject",
    "body",
    "start",
    "end",
    "location",
    "locations",
    "categories",
    "showAs",
    "isReminderOn",
    "reminderMinutesBeforeStart",
    "importance",
    "sensitivity",
    "isAllDay",
    "attendees",
    "responseRequested",
    "allowNewTimeProposals",
    "hideAttendees",
    "isOnlineMeeting",
    "onlineMeetingProvider",
    "transactionId",
    "singleValueExtendedProperties",
    "multiValueExtendedProperties",
    "@odata.type",
];

#[derive(Debug, Clone)]
struct Calendar {
    id: String,
    name: String,
    change_key: String,
    is_default: bool,
}

#[derive(Debug, Clone)]
struct Event {
    id: String,
    calendar_id: String,
    fields: Map<String, Value>,
    ext: Vec<(String, String)>,
    transaction_id: Option<String>,
    created: Timestamp,
    modified: Timestamp,
    change_key: String,
    start: Timestamp,
    end: Timestamp,
    seq: u64,
}

#[derive(Debug, Default)]
struct Limits {
    in_flight: usize,
    max_in_flight: usize,
    window: VecDeque<Instant>,
    throttled_until: Option<Instant>,
    throttle_issued: Option<Instant>,
    requests: u64,
    throttled: u64,
}

#[derive(Debug)]
struct User {
    id: String,
    upn: String,
    state: MailboxState,
    calendars: Vec<Calendar>,
    events: BTreeMap<String, Event>,
    tx_index: HashMap<String, (String, Instant)>,
    limits: Limits,
}

pub(crate) struct Shared {
    pub config: GraphEmulatorConfig,
    pub base_url: String,
    pub shutdown: AtomicBool,
    world: Mutex<World>,
}

impl Shared {
    pub fn new(config: GraphEmulatorConfig, base_url: String) -> Self {
        let mut world = World {
            cfg: config.clone(),
            base_url: base_url.clone(),
            started: Instant::now(),
            users: Vec::new(),
            index: HashMap::new(),
            tokens: HashMap::new(),
            violations: Vec::new(),
            faults: Faults::default(),
            drop_next_writes: 0,
            outage: None,
            rng: StdRng::seed_from_u64(config.seed),
            app_window: VecDeque::new(),
            counters: Stats::default(),
            seq: 0,
        };
        for u in &config.users {
            world.add_user(u);
        }
        Self {
            config,
            base_url,
            shutdown: AtomicBool::new(false),
            world: Mutex::new(world),
        }
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    pub fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Admits a request for mailbox `user` under the Outlook limits, or
    /// answers 429. `received` is when the HTTP request carrying it arrived.
    pub fn admit(
        self: &Arc<Self>,
        user: usize,
        received: Instant,
        request: &str,
    ) -> Result<Slot, Reply> {
        self.world().admit(user, received, request)?;
        Ok(Slot {
            shared: self.clone(),
            user,
        })
    }
}

/// A held mailbox concurrency slot; released on drop.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    user: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut w = self.shared.world();
        let l = &mut w.users[self.user].limits;
        l.in_flight = l.in_flight.saturating_sub(1);
    }
}

pub(crate) struct World {
    cfg: GraphEmulatorConfig,
    base_url: String,
    started: Instant,
    users: Vec<User>,
    /// lowercase UPN and lowercase id -> index
    index: HashMap<String, usize>,
    tokens: HashMap<String, Instant>,
    pub violations: Vec<Violation>,
    pub faults: Faults,
    pub drop_next_writes: u32,
    pub outage: Option<(Instant, OutageMode)>,
    pub rng: StdRng,
    app_window: VecDeque<Instant>,
    pub counters: Stats,
    seq: u64,
}

fn retry_secs(d: Duration) -> u64 {
    (d.as_millis().div_ceil(1000) as u64).max(1)
}

fn prune(window: &mut VecDeque<Instant>, now: Instant, len: Duration) {
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= len)
    {
        window.pop_front();
    }
}

impl World {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn violation(
        &mut self,
        kind: ViolationKind,
        mailbox: Option<String>,
        request: &str,
        detail: String,
    ) {
        let at_ms = self.now_ms();
        tracing::warn!(
            ?kind,
            ?mailbox,
            request,
            detail,
            "graph emulator: client violation"
        );
        self.violations.push(Violation {
            kind,
            mailbox,
            request: request.to_string(),
            detail,
            at_ms,
        });
    }

    pub fn violations_push(&mut self, kind: ViolationKind, detail: String) {
        self.violation(kind, None, "POST /v1.0/$batch", detail);
    }

    pub fn error(&mut self, status: u16, code: &str, message: &str) -> Reply {
        graph_error(&mut self.rng, status, code, message)
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.counters.clone();
        for u in &self.users {
            s.mailboxes.insert(
                u.upn.to_lowercase(),
                MailboxStats {
                    requests: u.limits.requests,
                    throttled: u.limits.throttled,
                    max_concurrent: u.limits.max_in_flight,
                    events: u.events.len(),
                },
            );
        }
        s
    }

    pub fn add_user(&mut self, spec: &UserSpec) -> String {
        if let Some(&i) = self.index.get(&spec.upn.to_lowercase()) {
            self.users[i].state = spec.state;
            return self.users[i].id.clone();
        }
        let id = spec.id.clone().unwrap_or_else(|| new_guid(&mut self.rng));
        let cal = Calendar {
            id: random_id(&mut self.rng, "AAMkAGCal", 32),
            name: "Calendar".into(),
            change_key: random_id(&mut self.rng, "", 16),
            is_default: true,
        };
        let i = self.users.len();
        self.users.push(User {
            id: id.clone(),
            upn: spec.upn.clone(),
            state: spec.state,
            calendars: vec![cal],
            events: BTreeMap::new(),
            tx_index: HashMap::new(),
            limits: Limits::default(),
        });
        self.index.insert(spec.upn.to_lowercase(), i);
        self.index.insert(id.to_lowercase(), i);
        id
    }

    pub fn set_mailbox_state(&mut self, upn: &str, state: MailboxState) {
        let spec = UserSpec {
            upn: upn.to_string(),
            id: None,
            state,
        };
        self.add_user(&spec);
    }

    pub fn set_outage(&mut self, d: Duration, mode: OutageMode) {
        self.outage = Some((Instant::now() + d, mode));
    }

    /// The outage in force, with the time left.
    pub fn outage_now(&mut self) -> Option<(OutageMode, Duration)> {
        let (until, mode) = self.outage?;
        let now = Instant::now();
        if now >= until {
            self.outage = None;
            return None;
        }
        Some((mode, until - now))
    }

    // ---------- tokens ----------

    pub fn issue_token(&mut self) -> (String, u64) {
        let token = random_id(&mut self.rng, "emu.", 48);
        let lifetime = self.cfg.token_lifetime;
        self.tokens.insert(token.clone(), Instant::now() + lifetime);
        self.counters.tokens_issued += 1;
        (token, lifetime.as_secs().max(1))
    }

    /// Checks `Authorization: Bearer …`; records a violation and answers 401 when wrong.
    pub fn check_token(&mut self, authorization: Option<&str>, request: &str) -> Result<(), Reply> {
        let token = authorization.and_then(|h| {
            let (scheme, rest) = h.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_string())
        });
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            self.violation(
                ViolationKind::InvalidToken,
                None,
                request,
                "no bearer token".into(),
            );
            return Err(self.error(401, "InvalidAuthenticationToken", "Access token is empty."));
        };
        match self.tokens.get(&token) {
            None => {
                self.violation(
                    ViolationKind::InvalidToken,
                    None,
                    request,
                    "token was never issued".into(),
                );
                Err(self.error(
                    401,
                    "InvalidAuthenticationToken",
                    "Access token validation failure. Invalid audience.",
                ))
            }
            Some(exp) if Instant::now() >= *exp => {
                let ago = Instant::now().duration_since(*exp);
                self.violation(
                    ViolationKind::ExpiredToken,
                    None,
                    request,
                    format!("token expired {} ms before the request", ago.as_millis()),
                );
                Err(self.error(
                    401,
                    "InvalidAuthenticationToken",
                    "Lifetime validation failed, the token is expired.",
                ))
            }
            Some(_) => Ok(()),
        }
    }

    // ---------- users and limits ----------

    /// Finds the mailbox addressed by `/users/{key}`.
    pub fn resolve_user(&mut self, key: &str) -> Result<usize, Reply> {
        let lower = key.to_lowercase();
        let idx = match self.index.get(&lower) {
            Some(&i) => Some(i),
            None if self.cfg.auto_users && key.contains('@') => Some(self.add_user_index(key)),
            None => None,
        };
        match idx.map(|i| (i, self.users[i].state)) {
            Some((i, MailboxState::Ok)) => Ok(i),
            Some((_, MailboxState::Unlicensed)) => Err(self.error(
                404,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            )),
            Some((_, MailboxState::Unknown)) | None => Err(self.error(
                404,
                "ResourceNotFound",
                &format!("Resource '{key}' does not exist or one of its queried reference-property objects are not present."),
            )),
        }
    }

    fn add_user_index(&mut self, upn: &str) -> usize {
        self.add_user(&UserSpec::new(upn));
        self.index[&upn.to_lowercase()]
    }

    fn throttle(&mut self, user: usize, retry: Duration, code: &str, message: &str) -> Reply {
        let now = Instant::now();
        let secs = retry_secs(retry);
        let l = &mut self.users[user].limits;
        let until = now + Duration::from_secs(secs);
        l.throttled_until = Some(l.throttled_until.map_or(until, |u| u.max(until)));
        l.throttle_issued = Some(now);
        l.throttled += 1;
        self.counters.throttled += 1;
        self.error(429, code, message)
            .header("Retry-After", secs.to_string())
    }

    fn admit(&mut self, user: usize, received: Instant, request: &str) -> Result<(), Reply> {
        let now = Instant::now();
        let grace = self.cfg.violation_grace;
        let upn = |w: &Self| w.users[user].upn.to_lowercase();
        // 1. Still under a Retry-After?
        let l = &self.users[user].limits;
        if let Some(until) = l.throttled_until.filter(|u| now < *u) {
            let issued = l.throttle_issued.unwrap_or(now);
            if received > issued + grace {
                self.violation(
                    ViolationKind::IgnoredRetryAfter,
                    Some(upn(self)),
                    request,
                    format!(
                        "sent {} ms before Retry-After elapsed",
                        (until - now).as_millis()
                    ),
                );
            }
            let secs = retry_secs(until - now);
            let l = &mut self.users[user].limits;
            l.throttled += 1;
            self.counters.throttled += 1;
            return Err(self
                .error(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxRequestLimit.",
                )
                .header("Retry-After", secs.to_string()));
        }
        // 2. Concurrency.
        let limit = self.cfg.mailbox_concurrency;
        if l.in_flight >= limit {
            let n = l.in_flight + 1;
            self.violation(
                ViolationKind::TooManyConcurrent,
                Some(upn(self)),
                request,
                format!("{n} concurrent requests (limit {limit})"),
            );
            return Err(self.throttle(
                user,
                Duration::from_secs(1),
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
            ));
        }
        // 3. The global per-app limit.
        if let Some(RateLimit { requests, window }) = self.cfg.app_rate {
            prune(&mut self.app_window, now, window);
            if self.app_window.len() >= requests as usize {
                let oldest = self.app_window.front().copied().unwrap_or(now);
                let retry = (oldest + window).saturating_duration_since(now);
                return Err(self.throttle(
                    user,
                    retry,
                    "TooManyRequests",
                    "Too many requests from this application.",
                ));
            }
        }
        // 4. Requests per mailbox per window.
        let RateLimit { requests, window } = self.cfg.mailbox_rate;
        let l = &mut self.users[user].limits;
        prune(&mut l.window, now, window);
        if l.window.len() >= requests as usize {
            let oldest = l.window.front().copied().unwrap_or(now);
            let retry = (oldest + window).saturating_duration_since(now);
            return Err(self.throttle(
                user,
                retry,
                "ApplicationThrottled",
                "Application is over its MailboxRequestLimit.",
            ));
        }
        l.window.push_back(now);
        l.in_flight += 1;
        l.max_in_flight = l.max_in_flight.max(l.in_flight);
        l.requests += 1;
        if self.cfg.app_rate.is_some() {
            self.app_window.push_back(now);
        }
        self.counters.graph_requests += 1;
        Ok(())
    }

    /// A random 503/504 when [`Faults::error_rate`] says so.
    pub fn maybe_inject_error(&mut self) -> Option<Reply> {
        let p = self.faults.error_rate;
        if p <= 0.0 || !self.rng.gen_bool(p.min(1.0)) {
            return None;
        }
        self.counters.injected_errors += 1;
        if self.rng.gen_bool(0.5) {
            let r = self.error(503, "ServiceNotAvailable", "Service Unavailable");
            Some(if self.rng.gen_bool(0.5) {
                r.header("Retry-After", "1")
            } else {
                r
            })
        } else {
            Some(self.error(504, "GatewayTimeout", "Gateway Timeout"))
        }
    }

    /// Whether to reset the connection of a request that wrote something.
    pub fn should_drop_after_write(&mut self) -> bool {
        let drop = if self.drop_next_writes > 0 {
            self.drop_next_writes -= 1;
            true
        } else {
            let p = self.faults.drop_after_write_rate;
            p > 0.0 && self.rng.gen_bool(p.min(1.0))
        };
        if drop {
            self.counters.dropped_connections += 1;
        }
        drop
    }

    // ---------- rendering ----------

    fn calendar_json(&self, user: usize, c: &Calendar) -> Value {
        let u = &self.users[user];
        json!({
            "@odata.id": format!("{}/v1.0/users/{}/calendars/{}", self.base_url, u.id, c.id),
            "id": c.id,
            "name": c.name,
            "color": "auto",
            "isDefaultCalendar": c.is_default,
            "changeKey": c.change_key,
            "canShare": true,
            "canViewPrivateItems": true,
            "canEdit": true,
            "owner": { "name": u.upn, "address": u.upn },
        })
    }

    fn event_json(&self, user: usize, e: &Event, all_ext: bool) -> Value {
        let u = &self.users[user];
        let mut v = json!({
            "@odata.etag": format!("W/\"{}\"", e.change_key),
            "id": e.id,
            "createdDateTime": e.created.to_string(),
            "lastModifiedDateTime": e.modified.to_string(),
            "changeKey": e.change_key,
            "categories": [],
            "transactionId": e.transaction_id,
            "originalStartTimeZone": "UTC",
            "originalEndTimeZone": "UTC",
            "iCalUId": format!("040000008200E00074C5B7101A82E008{:016X}", e.seq),
            "reminderMinutesBeforeStart": 15,
            "isReminderOn": true,
            "hasAttachments": false,
            "subject": "",
            "importance": "normal",
            "sensitivity": "normal",
            "isAllDay": false,
            "isCancelled": false,
            "isOrganizer": true,
            "responseRequested": true,
            "showAs": "busy",
            "type": "singleInstance",
            "body": { "contentType": "text", "content": "" },
            "location": { "displayName": "", "locationType": "default" },
            "locations": [],
            "attendees": [],
            "organizer": { "emailAddress": { "name": u.upn, "address": u.upn } },
        });
        let obj = v.as_object_mut().expect("object");
        for (k, val) in &e.fields {
            if k != "singleValueExtendedProperties" && k != "multiValueExtendedProperties" {
                obj.insert(k.clone(), val.clone());
            }
        }
        obj.insert("start".into(), odata::date_time_tz(e.start));
        obj.insert("end".into(), odata::date_time_tz(e.end));
        let preview: String = obj
            .get("body")
            .and_then(|b| b.get("content"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(255)
            .collect();
        obj.insert("bodyPreview".into(), Value::String(preview));
        if obj
            .get("locations")
            .is_some_and(|l| l.as_array().is_some_and(Vec::is_empty))
        {
            if let Some(name) = obj
                .get("location")
                .and_then(|l| l.get("displayName"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                obj.insert(
                    "locations".into(),
                    json!([{ "displayName": name, "locationType": "default" }]),
                );
            }
        }
        if all_ext {
            obj.insert(
                "singleValueExtendedProperties".into(),
                Value::Array(
                    e.ext
                        .iter()
                        .map(|(i, v)| json!({"id": i, "value": v}))
                        .collect(),
                ),
            );
        }
        v
    }

    fn emulated(&self, user: usize, e: &Event) -> EmulatedEvent {
        let v = self.event_json(user, e, true);
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        EmulatedEvent {
            id: e.id.clone(),
            calendar: self.users[user]
                .calendars
                .iter()
                .find(|c| c.id == e.calendar_id)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            subject: s("/subject"),
            start: e.start,
            end: e.end,
            body: s("/body/content"),
            location: s("/location/displayName"),
            categories: v["categories"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            show_as: s("/showAs"),
            is_reminder_on: v["isReminderOn"].as_bool().unwrap_or(true),
            transaction_id: e.transaction_id.clone(),
            extended_properties: e.ext.clone(),
            change_key: e.change_key.clone(),
            json: v,
        }
    }

    // ---------- inspection and personal edits ----------

    fn user_by_upn(&self, upn: &str) -> Result<usize, String> {
        self.index
            .get(&upn.to_lowercase())
            .copied()
            .ok_or_else(|| format!("graph emulator: no mailbox {upn}"))
    }

    pub fn inspect_events(&self, upn: &str, calendar: Option<&str>) -> Vec<EmulatedEvent> {
        let Ok(u) = self.user_by_upn(upn) else {
            return Vec::new();
        };
        let cal_id = calendar.map(|name| {
            self.users[u]
                .calendars
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(name))
                .map(|c| c.id.clone())
                .unwrap_or_default()
        });
        let mut evs: Vec<&Event> = self.users[u]
            .events
            .values()
            .filter(|e| cal_id.as_ref().is_none_or(|c| *c == e.calendar_id))
            .collect();
        evs.sort_by_key(|e| e.seq);
        evs.into_iter().map(|e| self.emulated(u, e)).collect()
    }

    pub fn calendar_names(&self, upn: &str) -> Vec<String> {
        self.user_by_upn(upn)
            .map(|u| {
                self.users[u]
                    .calendars
                    .iter()
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn add_personal_event(
        &mut self,
        upn: &str,
        calendar: Option<&str>,
        subject: &str,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<String, String> {
        let u = self.user_by_upn(upn)?;
        let cal = self.users[u]
            .calendars
            .iter()
            .find(|c| calendar.map_or(c.is_default, |n| c.name.eq_ignore_ascii_case(n)))
            .map(|c| c.id.clone())
            .ok_or_else(|| format!("graph emulator: {upn} has no calendar {calendar:?}"))?;
        let body = json!({
            "subject": subject,
            "start": odata::date_time_tz(start),
            "end": odata::date_time_tz(end),
        });
        let r = self.create_event(u, &cal, &body);
        match r
            .body
            .as_ref()
            .and_then(|b| b.get("id"))
            .and_then(Value::as_str)
        {
            Some(id) if r.status == 201 => Ok(id.to_string()),
            _ => Err(format!("graph emulator: cannot add event: {:?}", r.body)),
        }
    }

    pub fn user_edit_event(&mut self, upn: &str, id: &str, patch: Value) -> Result<(), String> {
        let u = self.user_by_upn(upn)?;
        let r = self.patch_event(u, None, id, None, &patch);
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!("graph emulator: edit failed: {:?}", r.body))
        }
    }

    pub fn user_delete_event(&mut self, upn: &str, id: &str) -> Result<(), String> {
        let u = self.user_by_upn(upn)?;
        self.users[u]
            .events
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| format!("graph emulator: {upn} has no event {id}"))
    }

    // ---------- Graph operations ----------

    fn find_calendar(&self, user: usize, cal: &str) -> Option<String> {
        let u = &self.users[user];
        u.calendars
            .iter()
            .find(|c| c.id == cal || (cal == "\u{0}default" && c.is_default))
            .map(|c| c.id.clone())
    }

    /// Executes one Graph request addressed to `/users/{user}/{rest…}`.
    pub fn execute(&mut self, user: usize, req: &ResourceRequest<'_>) -> Reply {
        let m = req.method;
        let rest: Vec<&str> = req.rest.iter().map(String::as_str).collect();
        let default = "\u{0}default";
        match (m, rest.as_slice()) {
            ("GET", []) => {
                let u = &self.users[user];
                Reply::json(
                    200,
                    json!({
                        "id": u.id, "userPrincipalName": u.upn, "mail": u.upn,
                        "displayName": u.upn.split('@').next().unwrap_or(""),
                    }),
                )
            }
            ("GET", ["calendars"]) => self.list_calendars(user, req),
            ("POST", ["calendars"]) => self.create_calendar(user, req.body),
            ("GET", ["calendars", c]) => self.get_calendar(user, c),
            ("GET", ["calendar"]) => self.get_calendar(user, default),
            ("DELETE", ["calendars", c]) => {
                let u = &mut self.users[user];
                match u.calendars.iter().position(|x| x.id == *c && !x.is_default) {
                    Some(i) => {
                        let id = u.calendars.remove(i).id;
                        u.events.retain(|_, e| e.calendar_id != id);
                        Reply::empty(204).wrote()
                    }
                    None => self.not_found(),
                }
            }
            ("GET", ["calendars", c, "events"]) => self.list_events(user, Some(c), false, req),
            ("GET", ["calendar", "events"]) => self.list_events(user, Some(default), false, req),
            ("GET", ["events"]) => self.list_events(user, None, false, req),
            ("GET", ["calendars", c, "calendarView"]) => self.list_events(user, Some(c), true, req),
            ("GET", ["calendar", "calendarView"]) | ("GET", ["calendarView"]) => {
                self.list_events(user, Some(default), true, req)
            }
            ("POST", ["calendars", c, "events"]) => self.create_event_checked(user, c, req.body),
            ("POST", ["calendar", "events"]) | ("POST", ["events"]) => {
                self.create_event_checked(user, default, req.body)
            }
            ("GET", ["calendars", c, "events", e]) => self.get_event(user, Some(c), e, req),
            ("GET", ["events", e]) | ("GET", ["calendar", "events", e]) => {
                self.get_event(user, None, e, req)
            }
            ("PATCH", ["calendars", c, "events", e]) => self.patch_event(
                user,
                Some(c),
                e,
                req.if_match,
                req.body.unwrap_or(&Value::Null),
            ),
            ("PATCH", ["events", e]) | ("PATCH", ["calendar", "events", e]) => self.patch_event(
                user,
                None,
                e,
                req.if_match,
                req.body.unwrap_or(&Value::Null),
            ),
            ("DELETE", ["calendars", c, "events", e]) => {
                self.delete_event(user, Some(c), e, req.if_match)
            }
            ("DELETE", ["events", e]) | ("DELETE", ["calendar", "events", e]) => {
                self.delete_event(user, None, e, req.if_match)
            }
            (_, [first, ..])
                if !matches!(*first, "calendars" | "calendar" | "events" | "calendarView") =>
            {
                self.error(
                    400,
                    "BadRequest",
                    &format!("Resource not found for the segment '{first}'."),
                )
            }
            _ => self.error(
                405,
                "ErrorInvalidRequest",
                &format!("The OData request is not supported: {m} on this resource."),
            ),
        }
    }

    fn get_calendar(&mut self, user: usize, cid: &str) -> Reply {
        let found = self.find_calendar(user, cid).and_then(|id| {
            self.users[user]
                .calendars
                .iter()
                .find(|x| x.id == id)
                .cloned()
        });
        match found {
            Some(cal) => Reply::json(200, self.calendar_json(user, &cal)),
            None => self.not_found(),
        }
    }

    fn not_found(&mut self) -> Reply {
        self.error(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        )
    }

    fn bad_filter(&mut self, msg: &str) -> Reply {
        self.error(
            400,
            "ErrorInvalidUrlQueryFilter",
            &format!("Invalid filter clause: {msg}"),
        )
    }

    fn page(&mut self, items: Vec<Value>, req: &ResourceRequest<'_>, context: &str) -> Reply {
        let top = match req.param("$top").map(|t| t.parse::<usize>()) {
            None => self.cfg.default_page_size,
            Some(Ok(t)) if t >= 1 => t.min(self.cfg.max_page_size),
            Some(_) => return self.error(400, "BadRequest", "Invalid $top value."),
        };
        let skip = req
            .param("$skiptoken")
            .or_else(|| req.param("$skip"))
            .and_then(|s| s.trim_start_matches("emu-").parse::<usize>().ok())
            .unwrap_or(0);
        let total = items.len();
        let page: Vec<Value> = items.into_iter().skip(skip).take(top).collect();
        let mut body = json!({
            "@odata.context": format!("{}/v1.0/$metadata#{}", self.base_url, context),
            "value": page,
        });
        if skip + top < total {
            let kept: Vec<&str> = req
                .raw_query
                .split('&')
                .filter(|p| {
                    !p.is_empty() && {
                        let k = odata::percent_decode(p.split('=').next().unwrap_or(""), true);
                        k != "$skiptoken" && k != "$skip"
                    }
                })
                .collect();
            let mut q = kept.join("&");
            if !q.is_empty() {
                q.push('&');
            }
            q.push_str(&format!("%24skiptoken=emu-{}", skip + top));
            body["@odata.nextLink"] =
                Value::String(format!("{}/v1.0/{}?{}", self.base_url, req.raw_path, q));
        }
        Reply::json(200, body)
    }

    fn list_calendars(&mut self, user: usize, req: &ResourceRequest<'_>) -> Reply {
        let filter = match req.param("$filter").map(odata::parse_filter) {
            Some(Err(e)) => return self.bad_filter(&e),
            Some(Ok(f)) => Some(f),
            None => None,
        };
        let items: Vec<Value> = self.users[user]
            .calendars
            .iter()
            .map(|c| self.calendar_json(user, c))
            .filter(|v| filter.as_ref().is_none_or(|f| odata::eval(f, v)))
            .collect();
        self.page(items, req, "users('x')/calendars")
    }

    fn create_calendar(&mut self, user: usize, body: Option<&Value>) -> Reply {
        let Some(name) = body
            .and_then(|b| b.get("name"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from)
        else {
            return self.error(400, "ErrorInvalidRequest", "The calendar name is missing.");
        };
        if self.users[user]
            .calendars
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(&name))
        {
            return self.error(
                409,
                "ErrorFolderExists",
                "A folder with the specified name already exists.",
            );
        }
        let cal = Calendar {
            id: random_id(&mut self.rng, "AAMkAGCal", 32),
            name,
            change_key: random_id(&mut self.rng, "", 16),
            is_default: false,
        };
        let v = self.calendar_json(user, &cal);
        self.users[user].calendars.push(cal);
        Reply::json(201, v).wrote()
    }

    fn expand_filter(
        &mut self,
        req: &ResourceRequest<'_>,
    ) -> Result<Option<Option<Filter>>, Reply> {
        let Some(exp) = req.param("$expand") else {
            return Ok(None);
        };
        let lower = exp.to_ascii_lowercase();
        let Some(pos) = lower.find("singlevalueextendedproperties") else {
            return Ok(None);
        };
        let after = &exp[pos + "singlevalueextendedproperties".len()..];
        if !after.starts_with('(') {
            return Ok(Some(None));
        }
        let inner = after[1..].rsplit_once(')').map(|(a, _)| a).unwrap_or("");
        let inner = inner.trim();
        let Some(f) = inner
            .strip_prefix("$filter=")
            .or_else(|| inner.strip_prefix("$filter ="))
        else {
            return Err(self.error(
                400,
                "BadRequest",
                "Only $filter is supported inside $expand.",
            ));
        };
        match odata::parse_filter(f) {
            Ok(f) => Ok(Some(Some(f))),
            Err(e) => Err(self.bad_filter(&e)),
        }
    }

    /// The event as returned to a request: `$expand` and `$select` applied.
    fn render_for(
        &self,
        user: usize,
        e: &Event,
        expand: &Option<Option<Filter>>,
        select: Option<&str>,
    ) -> Value {
        let mut v = self.event_json(user, e, false);
        if let Some(f) = expand {
            let props: Vec<Value> = e
                .ext
                .iter()
                .map(|(i, val)| json!({"id": i, "value": val}))
                .filter(|p| f.as_ref().is_none_or(|f| odata::eval(f, p)))
                .collect();
            if !props.is_empty() {
                v["singleValueExtendedProperties"] = Value::Array(props);
            }
        }
        if let Some(sel) = select {
            let keep: Vec<String> = sel.split(',').map(|s| s.trim().to_lowercase()).collect();
            if let Some(obj) = v.as_object_mut() {
                obj.retain(|k, _| {
                    k == "id"
                        || k == "@odata.etag"
                        || k == "singleValueExtendedProperties"
                        || keep.contains(&k.to_lowercase())
                });
            }
        }
        v
    }

    fn list_events(
        &mut self,
        user: usize,
        cal: Option<&str>,
        view: bool,
        req: &ResourceRequest<'_>,
    ) -> Reply {
        let cal_id = match cal {
            Some(c) => match self.find_calendar(user, c) {
                Some(id) => Some(id),
                None => return self.not_found(),
            },
            None => None,
        };
        let range = if view {
            let (Some(s), Some(e)) = (req.param("startDateTime"), req.param("endDateTime")) else {
                return self.error(
                    400,
                    "ErrorInvalidParameter",
                    "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.",
                );
            };
            match (odata::parse_query_instant(s), odata::parse_query_instant(e)) {
                (Ok(s), Ok(e)) => Some((s, e)),
                (Err(m), _) | (_, Err(m)) => return self.error(400, "ErrorInvalidParameter", &m),
            }
        } else {
            None
        };
        let filter = match req.param("$filter").map(odata::parse_filter) {
            Some(Err(e)) => return self.bad_filter(&e),
            Some(Ok(f)) => Some(f),
            None => None,
        };
        let expand = match self.expand_filter(req) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let mut evs: Vec<&Event> = self.users[user]
            .events
            .values()
            .filter(|e| cal_id.as_ref().is_none_or(|c| *c == e.calendar_id))
            .filter(|e| match range {
                Some((s, end)) => {
                    if e.start == e.end {
                        e.start >= s && e.start < end
                    } else {
                        e.start < end && e.end > s
                    }
                }
                None => true,
            })
            .filter(|e| {
                filter
                    .as_ref()
                    .is_none_or(|f| odata::eval(f, &self.event_json(user, e, true)))
            })
            .collect();
        if view {
            evs.sort_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
        } else {
            evs.sort_by_key(|e| e.seq);
        }
        let items: Vec<Value> = evs
            .iter()
            .map(|e| self.render_for(user, e, &expand, req.param("$select")))
            .collect();
        self.page(items, req, "users('x')/events")
    }

    fn locate_event(&self, user: usize, cal: Option<&str>, id: &str) -> Option<String> {
        let e = self.users[user].events.get(id)?;
        match cal {
            Some(c) if self.find_calendar(user, c).as_deref() != Some(e.calendar_id.as_str()) => {
                None
            }
            _ => Some(e.id.clone()),
        }
    }

    fn get_event(
        &mut self,
        user: usize,
        cal: Option<&str>,
        id: &str,
        req: &ResourceRequest<'_>,
    ) -> Reply {
        let Some(id) = self.locate_event(user, cal, id) else {
            return self.not_found();
        };
        let expand = match self.expand_filter(req) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let e = &self.users[user].events[&id];
        Reply::json(200, self.render_for(user, e, &expand, req.param("$select")))
    }

    /// Checks the JSON of a create or update; returns the fields to store.
    fn validate_event_body(&mut self, body: &Value) -> Result<EventBody, Reply> {
        let Some(obj) = body.as_object() else {
            return Err(self.error(
                400,
                "RequestBodyRead",
                "The request body must be a JSON object.",
            ));
        };
        let mut fields = Map::new();
        let mut ext = Vec::new();
        for (k, v) in obj {
            if !SETTABLE.contains(&k.as_str()) {
                return Err(self.error(
                    400,
                    "RequestBodyRead",
                    &format!("The property '{k}' does not exist on type 'microsoft.graph.event'. Make sure to only use property names that are defined by the type or mark the type as open type."),
                ));
            }
            if k == "singleValueExtendedProperties" {
                let Some(items) = v.as_array() else {
                    return Err(self.error(
                        400,
                        "RequestBodyRead",
                        "singleValueExtendedProperties must be an array.",
                    ));
                };
                for it in items {
                    let (Some(id), Some(val)) = (
                        it.get("id").and_then(Value::as_str),
                        it.get("value").and_then(Value::as_str),
                    ) else {
                        return Err(self.error(
                            400,
                            "ErrorInvalidExtendedProperty",
                            "An extended property needs a string id and a string value.",
                        ));
                    };
                    let parts: Vec<&str> = id.split_whitespace().collect();
                    let named = parts.len() >= 4
                        && parts[1].starts_with('{')
                        && parts[2].eq_ignore_ascii_case("name");
                    let tagged =
                        parts.len() == 2 && parts[1].to_ascii_lowercase().starts_with("0x");
                    if !(named || tagged) {
                        return Err(self.error(
                            400,
                            "ErrorInvalidExtendedProperty",
                            &format!("The extended property id '{id}' is not valid."),
                        ));
                    }
                    ext.push((id.to_string(), val.to_string()));
                }
                continue;
            }
            if (k == "start" || k == "end") && !v.is_null() {
                if let Err(m) = odata::parse_date_time_tz(v) {
                    return Err(self.error(400, "ErrorInvalidRequest", &format!("{k}: {m}")));
                }
            }
            fields.insert(k.clone(), v.clone());
        }
        Ok((fields, ext))
    }

    fn create_event_checked(&mut self, user: usize, cal: &str, body: Option<&Value>) -> Reply {
        let Some(cal_id) = self.find_calendar(user, cal) else {
            return self.not_found();
        };
        self.create_event(user, &cal_id, body.unwrap_or(&Value::Null))
    }

    fn create_event(&mut self, user: usize, cal_id: &str, body: &Value) -> Reply {
        let (mut fields, ext) = match self.validate_event_body(body) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let tx = fields
            .remove("transactionId")
            .and_then(|v| v.as_str().map(String::from));
        if let Some(tx) = &tx {
            let window = self.cfg.transaction_id_window;
            let hit = self.users[user]
                .tx_index
                .get(tx)
                .filter(|(_, at)| at.elapsed() < window)
                .map(|(id, _)| id.clone());
            if let Some(id) = hit {
                if let Some(e) = self.users[user].events.get(&id) {
                    self.counters.transaction_id_repeats += 1;
                    return Reply::json(201, self.event_json(user, e, false));
                }
            }
        }
        let (Some(start), Some(end)) = (fields.remove("start"), fields.remove("end")) else {
            return self.error(400, "ErrorInvalidRequest", "An event needs start and end.");
        };
        let (start, end) = match (
            odata::parse_date_time_tz(&start),
            odata::parse_date_time_tz(&end),
        ) {
            (Ok(s), Ok(e)) => (s, e),
            (Err(m), _) | (_, Err(m)) => return self.error(400, "ErrorInvalidRequest", &m),
        };
        if end < start {
            return self.error(
                400,
                "ErrorInvalidRequest",
                "The end time of the event must be after its start time.",
            );
        }
        self.seq += 1;
        let now = Timestamp::now();
        let e = Event {
            id: random_id(&mut self.rng, "AAMkAGEvt", 40),
            calendar_id: cal_id.to_string(),
            fields,
            ext,
            transaction_id: tx.clone(),
            created: now,
            modified: now,
            change_key: random_id(&mut self.rng, "", 20),
            start,
            end,
            seq: self.seq,
        };
        let v = self.event_json(user, &e, false);
        let u = &mut self.users[user];
        if let Some(tx) = tx {
            u.tx_index.insert(tx, (e.id.clone(), Instant::now()));
        }
        u.events.insert(e.id.clone(), e);
        self.counters.events_created += 1;
        Reply::json(201, v).wrote()
    }

    fn patch_event(
        &mut self,
        user: usize,
        cal: Option<&str>,
        id: &str,
        if_match: Option<&str>,
        body: &Value,
    ) -> Reply {
        let Some(id) = self.locate_event(user, cal, id) else {
            return self.not_found();
        };
        let (mut fields, ext) = match self.validate_event_body(body) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let current = self.users[user].events[&id].clone();
        if let Some(m) = if_match {
            if m != "*" && m != format!("W/\"{}\"", current.change_key) {
                return self.error(
                    412,
                    "ErrorIrresolvableConflict",
                    "The send or update operation could not be performed because the change key passed in the request does not match the current change key for the item.",
                );
            }
        }
        if let Some(tx) = fields.remove("transactionId") {
            if tx.as_str() != current.transaction_id.as_deref() {
                return self.error(
                    400,
                    "ErrorInvalidRequest",
                    "transactionId cannot be changed after create.",
                );
            }
        }
        let mut e = current;
        if let Some(s) = fields.remove("start") {
            e.start = odata::parse_date_time_tz(&s).unwrap_or(e.start);
        }
        if let Some(s) = fields.remove("end") {
            e.end = odata::parse_date_time_tz(&s).unwrap_or(e.end);
        }
        if e.end < e.start {
            return self.error(
                400,
                "ErrorInvalidRequest",
                "The end time of the event must be after its start time.",
            );
        }
        for (k, v) in fields {
            e.fields.insert(k, v);
        }
        for (pid, val) in ext {
            let n = odata::normalize_ext_id(&pid);
            match e
                .ext
                .iter_mut()
                .find(|(k, _)| odata::normalize_ext_id(k) == n)
            {
                Some(slot) => slot.1 = val,
                None => e.ext.push((pid, val)),
            }
        }
        e.modified = Timestamp::now();
        e.change_key = random_id(&mut self.rng, "", 20);
        let v = self.event_json(user, &e, false);
        self.users[user].events.insert(id, e);
        Reply::json(200, v).wrote()
    }

    fn delete_event(
        &mut self,
        user: usize,
        cal: Option<&str>,
        id: &str,
        if_match: Option<&str>,
    ) -> Reply {
        let Some(id) = self.locate_event(user, cal, id) else {
            return self.not_found();
        };
        if let Some(m) = if_match {
            let ck = &self.users[user].events[&id].change_key;
            if m != "*" && m != format!("W/\"{ck}\"") {
                return self.error(
                    412,
                    "ErrorIrresolvableConflict",
                    "The change key passed in the request does not match the current change key for the item.",
                );
            }
        }
        self.users[user].events.remove(&id);
        Reply::empty(204).wrote()
    }
}

/// Settable fields and extended properties of an event body.
type EventBody = (Map<String, Value>, Vec<(String, String)>);

/// One Graph request after `/v1.0/users/{user}`.
pub(crate) struct ResourceRequest<'a> {
    pub method: &'a str,
    /// Path segments after the user, decoded.
    pub rest: Vec<String>,
    /// The path after `/v1.0/`, as received (for `@odata.nextLink`).
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub query: Vec<(String, String)>,
    pub if_match: Option<&'a str>,
    pub body: Option<&'a Value>,
}

impl ResourceRequest<'_> {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
