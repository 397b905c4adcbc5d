//! The emulator's state: users, calendars, events, tokens, quota logs,
//! violations; and the service's rules on them. No HTTP here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Faults, GoogleEmulatorConfig, RateLimit};

/// What a client did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ViolationKind {
    /// A request for a user sooner after a rate-limit answer than any backoff allows.
    IgnoredBackoff,
    /// More requests than a quota allows (per user or per project).
    QuotaOverrun,
    /// A write to a usage-limited (read-only) calendar after the client was told.
    WriteWhileUsageLimited,
    /// A missing, unknown or expired access token.
    BadToken,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub kind: ViolationKind,
    pub user: String,
    pub detail: String,
}

/// Counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    pub requests: u64,
    /// The most API requests of one user answered at the same time.
    pub max_user_in_flight: u32,
    pub tokens_issued: u64,
    pub inserts: u64,
    pub patches: u64,
    pub deletes: u64,
    pub lists: u64,
    pub conflicts: u64,
    pub rate_limited: u64,
    pub usage_limited: u64,
    pub injected_errors: u64,
    pub dropped: u64,
}

/// An event as the tests see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmulatedEvent {
    pub id: String,
    pub calendar: String,
    pub summary: String,
    pub start: String,
    pub end: String,
    pub etag: String,
    pub status: String,
    /// `extendedProperties.private`.
    pub private: BTreeMap<String, String>,
    pub json: Value,
}

pub(crate) struct Ev {
    pub value: Value,
    pub seq: u64,
    pub deleted: bool,
}

pub(crate) struct Calendar {
    pub summary: String,
    pub primary: bool,
    pub events: BTreeMap<String, Ev>,
}

#[derive(Default)]
pub(crate) struct User {
    pub email: String,
    pub calendars: BTreeMap<String, Calendar>,
    pub log: VecDeque<Instant>,
    pub creates: VecDeque<Instant>,
    /// When the last rate-limit answer was sent.
    pub limited_at: Option<Instant>,
    pub read_only: bool,
    /// When the client was first told the calendar is read-only.
    pub told_read_only: Option<Instant>,
    /// API requests of this user being answered now.
    pub in_flight: u32,
}

pub(crate) struct World {
    pub users: HashMap<String, User>,
    pub tokens: HashMap<String, (String, Instant)>,
    pub project_log: VecDeque<Instant>,
    pub violations: Vec<Violation>,
    pub stats: Stats,
    pub faults: Faults,
    pub drop_next_writes: u32,
    pub seq: u64,
    /// Sync tokens below this sequence are expired.
    pub sync_floor: u64,
    pub rng: SmallRng,
    auto_users: bool,
    calendar_counter: u64,
}

pub(crate) struct Shared {
    pub config: GoogleEmulatorConfig,
    pub base_url: String,
    pub public_key: Vec<u8>,
    world: Mutex<World>,
}

/// An API answer.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    /// The request changed something (for dropped connections).
    pub wrote: bool,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            body: Some(body),
            wrote: false,
        }
    }
    pub fn written(status: u16, body: Option<Value>) -> Reply {
        Reply {
            status,
            body,
            wrote: true,
        }
    }
}

/// Google's error body.
pub(crate) fn error(status: u16, domain: &str, reason: &str, message: &str) -> Reply {
    Reply {
        status,
        body: Some(json!({
            "error": {
                "errors": [{ "domain": domain, "reason": reason, "message": message }],
                "code": status,
                "message": message,
            }
        })),
        wrote: false,
    }
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    STANDARD
        .decode(body)
        .expect("google emulator: key PEM is base64")
}

impl Shared {
    pub fn new(config: GoogleEmulatorConfig, base_url: String) -> Self {
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&pem_der(&config.key_pem))
            .expect("google emulator: the key PEM is a PKCS#8 RSA key");
        let public_key = pair.public().as_ref().to_vec();
        let mut world = World {
            users: HashMap::new(),
            tokens: HashMap::new(),
            project_log: VecDeque::new(),
            violations: Vec::new(),
            stats: Stats::default(),
            faults: Faults::default(),
            drop_next_writes: 0,
            seq: 1,
            sync_floor: 0,
            rng: SmallRng::seed_from_u64(config.seed),
            auto_users: config.auto_users,
            calendar_counter: 0,
        };
        for u in &config.users {
            world.user_mut(u);
        }
        Self {
            config,
            base_url,
            public_key,
            world: Mutex::new(world),
        }
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The JWT grant: `Ok(user)` or the OAuth error `(status, error, description)`.
    pub fn verify_assertion(
        &self,
        jwt: &str,
        now_secs: u64,
    ) -> Result<String, (u16, &'static str, String)> {
        let bad = |d: &str| (400, "invalid_grant", d.to_string());
        let parts: Vec<&str> = jwt.split('.').collect();
        if parts.len() != 3 {
            return Err(bad(
                "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe",
            ));
        }
        let decode = |s: &str| -> Option<Value> {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()
        };
        let (Some(header), Some(claims)) = (decode(parts[0]), decode(parts[1])) else {
            return Err(bad("Invalid JWT: not base64url JSON"));
        };
        if header["alg"] != "RS256" {
            return Err(bad("Invalid JWT: alg must be RS256"));
        }
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap_or_default();
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &self.public_key,
        );
        if key
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .is_err()
        {
            return Err(bad("Invalid JWT Signature."));
        }
        if claims["iss"].as_str() != Some(self.config.client_email.as_str()) {
            return Err((
                401,
                "invalid_client",
                "The OAuth client was not found.".into(),
            ));
        }
        if claims["aud"].as_str() != Some(format!("{}/token", self.base_url).as_str()) {
            return Err(bad("Invalid JWT: aud is not this token endpoint"));
        }
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap_or(0),
            claims["exp"].as_u64().unwrap_or(0),
        );
        if exp <= now_secs || iat > now_secs + 60 || exp.saturating_sub(iat) > 3600 {
            return Err(bad(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            ));
        }
        let scope = claims["scope"].as_str().unwrap_or("");
        if !scope
            .split(' ')
            .any(|s| s == "https://www.googleapis.com/auth/calendar")
        {
            return Err((
                400,
                "invalid_scope",
                "Bad Request: scope must include https://www.googleapis.com/auth/calendar".into(),
            ));
        }
        if !self.config.delegation {
            return Err((
                401,
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.".into(),
            ));
        }
        let sub = claims["sub"].as_str().unwrap_or("").to_lowercase();
        let mut w = self.world();
        if !(w.users.contains_key(&sub) || w.auto_users && sub.contains('@')) {
            return Err(bad("Invalid email or User ID"));
        }
        w.user_mut(&sub);
        Ok(sub)
    }
}

fn prune(log: &mut VecDeque<Instant>, window: Duration, now: Instant) {
    while log
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        log.pop_front();
    }
}

fn random_id(rng: &mut SmallRng, len: usize) -> String {
    const A: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    (0..len).map(|_| A[rng.gen_range(0..32)] as char).collect()
}

fn valid_id(id: &str) -> bool {
    (5..=1024).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
}

/// Top-level merge, one level into objects (Google's patch semantics for
/// `start`, `end`, `extendedProperties.private`, …).
fn merge(target: &mut Value, patch: &Value) {
    let (Value::Object(t), Value::Object(p)) = (target, patch) else {
        return;
    };
    for (k, v) in p {
        match (t.get_mut(k), v) {
            (Some(old @ Value::Object(_)), Value::Object(_)) if k == "extendedProperties" => {
                for (kk, vv) in v.as_object().into_iter().flatten() {
                    match old.get_mut(kk) {
                        Some(o @ Value::Object(_)) => merge(o, vv),
                        _ => {
                            old[kk] = vv.clone();
                        }
                    }
                }
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

impl World {
    pub fn user_mut(&mut self, email: &str) -> &mut User {
        let key = email.to_lowercase();
        self.users.entry(key.clone()).or_insert_with(|| {
            let mut calendars = BTreeMap::new();
            calendars.insert(
                key.clone(),
                Calendar {
                    summary: key.clone(),
                    primary: true,
                    events: BTreeMap::new(),
                },
            );
            User {
                email: key,
                calendars,
                ..User::default()
            }
        })
    }

    pub fn violation(&mut self, kind: ViolationKind, user: &str, detail: String) {
        self.violations.push(Violation {
            kind,
            user: user.to_string(),
            detail,
        });
    }

    pub fn set_read_only(&mut self, user: &str, read_only: bool) {
        let u = self.user_mut(user);
        u.read_only = read_only;
        if !read_only {
            u.told_read_only = None;
        }
    }

    pub fn expire_sync_tokens(&mut self) {
        self.seq += 1;
        self.sync_floor = self.seq;
    }

    pub fn issue_token(&mut self, user: &str, lifetime: Duration) -> String {
        let token = format!("ya29.{}", random_id(&mut self.rng, 40));
        self.tokens
            .insert(token.clone(), (user.to_string(), Instant::now() + lifetime));
        self.stats.tokens_issued += 1;
        token
    }

    /// The user of a bearer token, or the 401 to answer (recorded as a violation).
    pub fn authenticate(&mut self, bearer: Option<&str>) -> Result<String, Reply> {
        let unauthorized = || error(401, "global", "authError", "Invalid Credentials");
        let Some(token) = bearer else {
            self.violation(
                ViolationKind::BadToken,
                "",
                "request without a token".into(),
            );
            return Err(unauthorized());
        };
        match self.tokens.get(token) {
            Some((user, exp)) if *exp > Instant::now() => Ok(user.clone()),
            Some((user, _)) => {
                let user = user.clone();
                self.violation(
                    ViolationKind::BadToken,
                    &user,
                    "expired token used (refresh before expiry)".into(),
                );
                Err(unauthorized())
            }
            None => {
                self.violation(ViolationKind::BadToken, "", "unknown token".into());
                Err(unauthorized())
            }
        }
    }

    /// Backoff, quotas, storms and 5xx for a request of `user` arriving at
    /// `at`; `Some(reply)` when it is refused before reaching the calendar.
    pub fn admit(
        &mut self,
        cfg: &GoogleEmulatorConfig,
        user: &str,
        at: Instant,
        write: bool,
    ) -> Option<Reply> {
        self.stats.requests += 1;
        let (min_backoff, grace) = (cfg.min_backoff, cfg.violation_grace);
        let u = self.user_mut(user);
        if let Some(t) = u.limited_at {
            if at > t + grace && at < t + min_backoff {
                let ms = at.duration_since(t).as_millis();
                self.violation(
                    ViolationKind::IgnoredBackoff,
                    user,
                    format!("request {ms} ms after a rate-limit answer (a polite client waits at least {} ms)", min_backoff.as_millis()),
                );
            }
        }
        if write {
            let u = self.user_mut(user);
            if u.read_only {
                let told = *u.told_read_only.get_or_insert(at);
                self.stats.usage_limited += 1;
                if at > told + Duration::from_secs(1) {
                    self.violation(
                        ViolationKind::WriteWhileUsageLimited,
                        user,
                        "write to a calendar after Google said its usage limits were exceeded"
                            .into(),
                    );
                }
                return Some(error(
                    403,
                    "usageLimits",
                    "quotaExceeded",
                    "Calendar usage limits exceeded.",
                ));
            }
        }
        let roll: f64 = self.rng.gen();
        if roll < self.faults.error_rate {
            self.stats.injected_errors += 1;
            return Some(error(503, "global", "backendError", "Backend Error"));
        }
        let roll: f64 = self.rng.gen();
        if roll < self.faults.rate_limit_rate {
            self.stats.rate_limited += 1;
            return Some(error(
                403,
                "usageLimits",
                "rateLimitExceeded",
                "Rate Limit Exceeded",
            ));
        }
        let RateLimit { requests, window } = cfg.user_rate;
        let u = self.user_mut(user);
        prune(&mut u.log, window, at);
        if u.log.len() >= requests as usize {
            self.stats.rate_limited += 1;
            self.violation(
                ViolationKind::QuotaOverrun,
                user,
                format!(
                    "more than {requests} requests in {} s for this user",
                    window.as_secs_f64()
                ),
            );
            return Some(error(
                403,
                "usageLimits",
                "userRateLimitExceeded",
                "User Rate Limit Exceeded",
            ));
        }
        if let Some(RateLimit { requests, window }) = cfg.project_rate {
            prune(&mut self.project_log, window, at);
            if self.project_log.len() >= requests as usize {
                self.stats.rate_limited += 1;
                self.violation(
                    ViolationKind::QuotaOverrun,
                    user,
                    format!(
                        "more than {requests} requests in {} s for the project",
                        window.as_secs_f64()
                    ),
                );
                return Some(error(
                    429,
                    "usageLimits",
                    "rateLimitExceeded",
                    "Rate Limit Exceeded",
                ));
            }
            self.project_log.push_back(at);
        }
        self.user_mut(user).log.push_back(at);
        None
    }

    /// A request of `user` arrived (`true`) or was answered (`false`).
    pub fn in_flight(&mut self, user: &str, arrived: bool) {
        let u = self.user_mut(user);
        if arrived {
            u.in_flight += 1;
        } else {
            u.in_flight = u.in_flight.saturating_sub(1);
        }
        let n = u.in_flight;
        self.stats.max_user_in_flight = self.stats.max_user_in_flight.max(n);
    }

    /// Records that a rate-limit answer goes out to `user` now.
    pub fn limited(&mut self, user: &str) {
        self.user_mut(user).limited_at = Some(Instant::now());
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn calendar_id(&mut self, user: &str, name: Option<&str>) -> Option<String> {
        let u = self.users.get(&user.to_lowercase())?;
        match name {
            None => Some(u.email.clone()),
            Some(n) => u
                .calendars
                .iter()
                .find(|(_, c)| c.summary.eq_ignore_ascii_case(n))
                .map(|(id, _)| id.clone()),
        }
    }

    // ---------- the API ----------

    pub fn calendar_list(&mut self, user: &str, query: &HashMap<String, Vec<String>>) -> Reply {
        let u = self.user_mut(user);
        let owner_only = query.contains_key("minAccessRole");
        let _ = owner_only; // every calendar here is the user's own
        let items: Vec<Value> = u
            .calendars
            .iter()
            .map(|(id, c)| {
                let mut v = json!({
                    "kind": "calendar#calendarListEntry",
                    "id": id,
                    "summary": c.summary,
                    "accessRole": "owner",
                    "timeZone": "UTC",
                });
                if c.primary {
                    v["primary"] = json!(true);
                }
                v
            })
            .collect();
        Reply::ok(json!({ "kind": "calendar#calendarList", "items": items }))
    }

    pub fn calendar_insert(&mut self, user: &str, body: &Value) -> Reply {
        let Some(summary) = body["summary"].as_str() else {
            return error(400, "global", "required", "Missing title.");
        };
        self.calendar_counter += 1;
        let id = format!(
            "c_{}{:04}@group.calendar.google.com",
            random_id(&mut self.rng, 20),
            self.calendar_counter
        );
        self.user_mut(user).calendars.insert(
            id.clone(),
            Calendar {
                summary: summary.to_string(),
                primary: false,
                events: BTreeMap::new(),
            },
        );
        Reply::written(
            200,
            Some(
                json!({ "kind": "calendar#calendar", "id": id, "summary": summary, "timeZone": body["timeZone"] }),
            ),
        )
    }

    fn calendar_mut(&mut self, user: &str, cal: &str) -> Result<&mut Calendar, Reply> {
        self.user_mut(user)
            .calendars
            .get_mut(cal)
            .ok_or_else(|| error(404, "global", "notFound", "Not Found"))
    }

    fn stamp(&mut self, v: &mut Value, id: &str, seq: u64) {
        v["id"] = json!(id);
        v["kind"] = json!("calendar#event");
        v["etag"] = json!(format!("\"{seq}\""));
        v["updated"] = json!(jiff::Timestamp::now().to_string());
        if v.get("status").is_none() {
            v["status"] = json!("confirmed");
        }
        if v.get("iCalUID").is_none() {
            v["iCalUID"] = json!(format!("{id}@google.com"));
        }
    }

    pub fn insert(
        &mut self,
        user: &str,
        cal: &str,
        body: &Value,
        at: Instant,
        cfg: &GoogleEmulatorConfig,
    ) -> Reply {
        if body.pointer("/start/dateTime").is_none() && body.pointer("/start/date").is_none() {
            return error(400, "global", "required", "Missing start time.");
        }
        let id = match body["id"].as_str() {
            Some(id) if !valid_id(id) => {
                return error(400, "global", "invalid", "Invalid resource id value.")
            }
            Some(id) => id.to_string(),
            None => random_id(&mut self.rng, 26),
        };
        if let Err(r) = self.calendar_mut(user, cal) {
            return r;
        }
        if self
            .calendar_mut(user, cal)
            .is_ok_and(|c| c.events.contains_key(&id))
        {
            self.stats.conflicts += 1;
            return error(
                409,
                "global",
                "duplicate",
                "The requested identifier already exists.",
            );
        }
        let seq = self.next_seq();
        let mut v = body.clone();
        self.stamp(&mut v, &id, seq);
        self.stats.inserts += 1;
        let out = v.clone();
        if let Ok(c) = self.calendar_mut(user, cal) {
            c.events.insert(
                id,
                Ev {
                    value: v,
                    seq,
                    deleted: false,
                },
            );
        }
        if let Some(limit) = cfg.usage_limit {
            let u = self.user_mut(user);
            prune(&mut u.creates, limit.window, at);
            u.creates.push_back(at);
            if u.creates.len() > limit.requests as usize {
                u.read_only = true;
            }
        }
        Reply::written(200, Some(out))
    }

    pub fn get(&mut self, user: &str, cal: &str, id: &str) -> Reply {
        match self.calendar_mut(user, cal) {
            Err(r) => r,
            Ok(c) => match c.events.get(id) {
                Some(e) => Reply::ok(e.value.clone()),
                None => error(404, "global", "notFound", "Not Found"),
            },
        }
    }

    pub fn patch(
        &mut self,
        user: &str,
        cal: &str,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Reply {
        let seq = self.seq + 1;
        let c = match self.calendar_mut(user, cal) {
            Err(r) => return r,
            Ok(c) => c,
        };
        let Some(e) = c.events.get_mut(id) else {
            return error(404, "global", "notFound", "Not Found");
        };
        if let Some(m) = if_match {
            if m != "*" && e.value["etag"].as_str() != Some(m) {
                return error(412, "global", "conditionNotMet", "Precondition Failed");
            }
        }
        let mut patch = body.clone();
        if let Value::Object(m) = &mut patch {
            for k in ["id", "etag", "kind", "updated", "iCalUID"] {
                m.remove(k);
            }
        }
        merge(&mut e.value, &patch);
        e.deleted = e.value["status"].as_str() == Some("cancelled");
        e.seq = seq;
        let mut v = std::mem::take(&mut e.value);
        self.seq = seq;
        self.stamp(&mut v, id, seq);
        self.stats.patches += 1;
        let out = v.clone();
        if let Ok(c) = self.calendar_mut(user, cal) {
            if let Some(e) = c.events.get_mut(id) {
                e.value = v;
            }
        }
        Reply::written(200, Some(out))
    }

    pub fn delete(&mut self, user: &str, cal: &str, id: &str) -> Reply {
        let seq = self.seq + 1;
        let c = match self.calendar_mut(user, cal) {
            Err(r) => return r,
            Ok(c) => c,
        };
        let Some(e) = c.events.get_mut(id) else {
            return error(404, "global", "notFound", "Not Found");
        };
        if e.deleted {
            return error(410, "global", "deleted", "Resource has been deleted");
        }
        e.deleted = true;
        e.seq = seq;
        e.value["status"] = json!("cancelled");
        e.value["etag"] = json!(format!("\"{seq}\""));
        self.seq = seq;
        self.stats.deletes += 1;
        Reply::written(204, None)
    }

    pub fn list(
        &mut self,
        user: &str,
        cal: &str,
        q: &HashMap<String, Vec<String>>,
        cfg: &GoogleEmulatorConfig,
    ) -> Reply {
        self.stats.lists += 1;
        let one = |k: &str| q.get(k).and_then(|v| v.first()).map(String::as_str);
        let sync = one("syncToken");
        if sync.is_some() {
            const RESTRICTED: [&str; 8] = [
                "iCalUID",
                "orderBy",
                "privateExtendedProperty",
                "q",
                "sharedExtendedProperty",
                "timeMin",
                "timeMax",
                "updatedMin",
            ];
            if RESTRICTED.iter().any(|k| q.contains_key(*k)) {
                return error(
                    400,
                    "global",
                    "invalid",
                    "Sync token cannot be used with other request restrictions.",
                );
            }
        }
        let since = match sync {
            None => None,
            Some(t) => match t.strip_prefix("sync-").and_then(|s| s.parse::<u64>().ok()) {
                Some(s) if s >= self.sync_floor => Some(s),
                _ => {
                    return error(
                        410,
                        "calendar",
                        "fullSyncRequired",
                        "Sync token is no longer valid, a full sync is required.",
                    )
                }
            },
        };
        let (offset, snapshot) = match one("pageToken") {
            None => (0usize, self.seq),
            Some(p) => match p
                .split_once('.')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            {
                Some(v) => v,
                None => return error(400, "global", "invalid", "Invalid page token."),
            },
        };
        let size = one("maxResults")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(cfg.default_page_size)
            .clamp(1, cfg.max_page_size);
        let show_deleted = since.is_some() || one("showDeleted") == Some("true");
        let filters: Vec<(String, String)> = q
            .get("privateExtendedProperty")
            .into_iter()
            .flatten()
            .filter_map(|f| {
                f.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let c = match self.calendar_mut(user, cal) {
            Err(r) => return r,
            Ok(c) => c,
        };
        let matching: Vec<&Ev> = c
            .events
            .values()
            .filter(|e| show_deleted || !e.deleted)
            .filter(|e| since.is_none_or(|s| e.seq > s))
            .filter(|e| {
                filters.iter().all(|(k, v)| {
                    e.value
                        .pointer("/extendedProperties/private")
                        .and_then(|p| p.get(k))
                        .and_then(Value::as_str)
                        == Some(v.as_str())
                })
            })
            .collect();
        let items: Vec<Value> = matching
            .iter()
            .skip(offset)
            .take(size)
            .map(|e| e.value.clone())
            .collect();
        let mut out = json!({ "kind": "calendar#events", "summary": c.summary, "items": items });
        if offset + size < matching.len() {
            out["nextPageToken"] = json!(format!("{}.{snapshot}", offset + size));
        } else {
            out["nextSyncToken"] = json!(format!("sync-{snapshot}"));
        }
        Reply::ok(out)
    }

    // ---------- inspection and the person's own edits ----------

    pub fn inspect(&mut self, user: &str, calendar: Option<&str>) -> Vec<EmulatedEvent> {
        let Some(cal) = self.calendar_id(user, calendar) else {
            return Vec::new();
        };
        let Some(c) = self
            .users
            .get(&user.to_lowercase())
            .and_then(|u| u.calendars.get(&cal))
        else {
            return Vec::new();
        };
        c.events
            .values()
            .filter(|e| !e.deleted)
            .map(|e| {
                let v = &e.value;
                let s = |p: &str| {
                    v.pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                EmulatedEvent {
                    id: s("/id"),
                    calendar: c.summary.clone(),
                    summary: s("/summary"),
                    start: s("/start/dateTime"),
                    end: s("/end/dateTime"),
                    etag: s("/etag"),
                    status: s("/status"),
                    private: v
                        .pointer("/extendedProperties/private")
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    json: v.clone(),
                }
            })
            .collect()
    }

    pub fn calendar_names(&mut self, user: &str) -> Vec<String> {
        self.users
            .get(&user.to_lowercase())
            .map(|u| u.calendars.values().map(|c| c.summary.clone()).collect())
            .unwrap_or_default()
    }

    pub fn add_personal(
        &mut self,
        user: &str,
        calendar: Option<&str>,
        summary: &str,
        start: jiff::Timestamp,
        end: jiff::Timestamp,
    ) -> Result<String, String> {
        let cal = self
            .calendar_id(user, calendar)
            .ok_or_else(|| format!("{user} has no calendar {calendar:?}"))?;
        let id = random_id(&mut self.rng, 26);
        let seq = self.next_seq();
        let mut v = json!({
            "summary": summary,
            "start": { "dateTime": start.to_string() },
            "end": { "dateTime": end.to_string() },
        });
        self.stamp(&mut v, &id, seq);
        let c = self
            .calendar_mut(user, &cal)
            .map_err(|_| "no calendar".to_string())?;
        c.events.insert(
            id.clone(),
            Ev {
                value: v,
                seq,
                deleted: false,
            },
        );
        Ok(id)
    }

    pub fn user_edit(
        &mut self,
        user: &str,
        calendar: &str,
        id: &str,
        patch: Value,
    ) -> Result<(), String> {
        let cal = self
            .calendar_id(user, Some(calendar))
            .ok_or_else(|| format!("{user} has no calendar {calendar}"))?;
        let r = self.patch(user, &cal, id, &patch, None);
        (r.status == 200)
            .then_some(())
            .ok_or(format!("HTTP {}", r.status))
    }

    pub fn user_delete(&mut self, user: &str, calendar: &str, id: &str) -> Result<(), String> {
        let cal = self
            .calendar_id(user, Some(calendar))
            .ok_or_else(|| format!("{user} has no calendar {calendar}"))?;
        let r = self.delete(user, &cal, id);
        (r.status == 204)
            .then_some(())
            .ok_or(format!("HTTP {}", r.status))
    }
}
