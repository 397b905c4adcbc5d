//! A Google Calendar API (v3) emulator for tests and demos: the OAuth
//! token endpoint for service accounts (the JWT grant, RS256 signatures
//! verified), `calendarList`, `calendars.insert`, events
//! `insert`/`get`/`patch`/`delete`/`list`, and Google's quotas and errors.
//!
//! Written from Google's published documentation:
//!
//! * Event ids chosen by the client: base32hex characters (`a–v`, `0–9`),
//!   5–1024 long, unique per calendar; an insert at an id that exists —
//!   also one deleted, whose id Google keeps — answers `409 duplicate`
//!   ("The requested identifier already exists.").
//! * Deleting a deleted event answers `410 deleted`; an unknown one `404
//!   notFound`. `events.get` still returns a deleted event, `status:
//!   cancelled`; a patch that sets `status: confirmed` brings it back.
//! * `If-Match` with a stale etag answers `412 conditionNotMet`.
//! * `events.list`: `maxResults` (default 250, at most 2500), `pageToken`,
//!   `showDeleted`, `privateExtendedProperty=name=value` (all must match),
//!   `nextSyncToken` on the last page; `syncToken` returns every change
//!   since, deleted events included, and may not be combined with
//!   `privateExtendedProperty`, `timeMin`, `timeMax`, `q`, `iCalUID`,
//!   `orderBy`, `sharedExtendedProperty` or `updatedMin` (400); an expired
//!   token answers `410 fullSyncRequired`.
//! * Quotas, sliding windows of a minute: per user per project (600) →
//!   `403 userRateLimitExceeded`; per project (10,000) → `429
//!   rateLimitExceeded`; the operational limit on writing one calendar in
//!   quick succession → `403 rateLimitExceeded` (injected as storms).
//! * Calendar usage limits: a user who creates too many events in a short
//!   time (Google: about 10,000) gets a read-only calendar: writes answer
//!   `403 quotaExceeded` "Calendar usage limits exceeded." (domain
//!   `usageLimits`). Configurable per user ([`GoogleEmulator::set_read_only`]).
//! * Service accounts: `POST /token` with `grant_type=urn:ietf:params:oauth:
//!   grant-type:jwt-bearer` and an RS256 `assertion` whose `iss` is the
//!   service account, `sub` the user, `scope` the calendar scope and `aud`
//!   the token URL; an unknown `sub` is `400 invalid_grant`, a service
//!   account without domain-wide delegation `401 unauthorized_client`.
//!
//! On top of the service it records **violations** — a request for a user
//! while that user should be backing off after a rate-limit answer, any
//! quota overrun (a client that keeps the quotas itself never has one), a
//! write to a usage-limited calendar after it was told, an invalid or
//! expired token — counts the most requests of one user answered at once
//! (`Stats::max_user_in_flight`), and injects faults: latency, 5xx, rate-limit storms,
//! connections dropped after a write was applied.
//!
//! Routes: the token endpoint at `{url}/token`, the API under
//! `{url}/calendar/v3`; admin routes under `/_emulator/` (see `server.rs`).

mod server;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use store::{EmulatedEvent, Stats, Violation, ViolationKind};

/// The service account the emulator trusts, with the key of
/// [`crate::TEST_RSA_KEY_PEM`].
pub const TEST_CLIENT_EMAIL: &str = "edusync@edusync-test.iam.gserviceaccount.com";

/// At most `requests` in any sliding `window`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub window: Duration,
}

/// How the emulator behaves. `Default` is Google's documented service.
#[derive(Debug, Clone)]
pub struct GoogleEmulatorConfig {
    /// Where to listen; `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
    /// The service account accepted as `iss`.
    pub client_email: String,
    /// Its public key, PEM of the private key (the public half is taken).
    pub key_pem: String,
    /// Whether domain-wide delegation is granted (else `401 unauthorized_client`).
    pub delegation: bool,
    /// Users of the domain (emails); case-insensitive.
    pub users: Vec<String>,
    /// When true, any `sub` containing `@` is a user.
    pub auto_users: bool,
    /// Lifetime of access tokens (Google: an hour).
    pub token_lifetime: Duration,
    /// Requests per user per window (Google: 600 a minute).
    pub user_rate: RateLimit,
    /// Requests of the project per window (Google: 10,000 a minute); `None` for no limit.
    pub project_rate: Option<RateLimit>,
    /// Events a user may create per window before their calendar turns
    /// read-only (Google: about 10,000 in a short time); `None` for never.
    pub usage_limit: Option<RateLimit>,
    /// Shortest wait after a rate-limit answer a polite client keeps (the
    /// first step of its exponential backoff); a request sooner is a violation.
    pub min_backoff: Duration,
    /// Requests arriving within this long after an answer may have been
    /// sent before the client saw it: not violations.
    pub violation_grace: Duration,
    /// `maxResults` when absent (Google: 250).
    pub default_page_size: usize,
    /// Largest `maxResults` (Google: 2500).
    pub max_page_size: usize,
    /// Seed of the fault-injection random generator.
    pub seed: u64,
}

impl Default for GoogleEmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            client_email: TEST_CLIENT_EMAIL.into(),
            key_pem: crate::TEST_RSA_KEY_PEM.into(),
            delegation: true,
            users: Vec::new(),
            auto_users: false,
            token_lifetime: Duration::from_secs(3600),
            user_rate: RateLimit {
                requests: 600,
                window: Duration::from_secs(60),
            },
            project_rate: Some(RateLimit {
                requests: 10_000,
                window: Duration::from_secs(60),
            }),
            usage_limit: Some(RateLimit {
                requests: 10_000,
                window: Duration::from_secs(3600),
            }),
            min_backoff: Duration::from_millis(400),
            violation_grace: Duration::from_millis(30),
            default_page_size: 250,
            max_page_size: 2500,
            seed: 0x600d_ca1e,
        }
    }
}

impl GoogleEmulatorConfig {
    /// The default service with these users.
    pub fn with_users<I, S>(users: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            users: users.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// Fault-injection knobs ([`GoogleEmulator::set_faults`] or `PUT /_emulator/faults`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Faults {
    /// Added to every API request.
    pub latency_ms: u64,
    /// Probability (0–1) of a `503 backendError` without effect.
    pub error_rate: f64,
    /// Probability (0–1) of a `403 rateLimitExceeded` (Google's operational
    /// limit on writing one calendar in quick succession): a storm.
    pub rate_limit_rate: f64,
    /// Probability (0–1) that a request which wrote something has its
    /// connection dropped instead of answered (the write stays applied).
    pub drop_after_write_rate: f64,
}

/// A running emulator. Dropping it stops the server.
pub struct GoogleEmulator {
    shared: Arc<store::Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// Starts an emulator.
///
/// # Panics
/// When the address cannot be bound or the key is unusable: a test cannot go on without them.
pub async fn spawn(config: GoogleEmulatorConfig) -> GoogleEmulator {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .unwrap_or_else(|e| panic!("google emulator: cannot listen: {e}"));
    let addr = listener.local_addr().expect("bound address");
    let shared = Arc::new(store::Shared::new(config, format!("http://{addr}")));
    let task = tokio::spawn(server::serve(listener, shared.clone()));
    GoogleEmulator { shared, addr, task }
}

impl GoogleEmulator {
    /// Base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// The target's `token_url`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url())
    }
    /// The target's `api_url`.
    pub fn api_url(&self) -> String {
        format!("{}/calendar/v3", self.url())
    }
    pub fn config(&self) -> &GoogleEmulatorConfig {
        &self.shared.config
    }
    /// A service account key file (JSON) the emulator accepts.
    pub fn key_file_json(&self) -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": "edusync-test",
            "private_key_id": "0123456789abcdef",
            "private_key": self.shared.config.key_pem,
            "client_email": self.shared.config.client_email,
            "client_id": "100000000000000000001",
            "token_uri": self.token_url(),
        })
        .to_string()
    }

    pub fn violations(&self) -> Vec<Violation> {
        self.shared.world().violations.clone()
    }
    /// Panics with the list when any violation was recorded.
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "google emulator recorded {} violation(s): {v:#?}",
            v.len()
        );
    }
    pub fn stats(&self) -> Stats {
        self.shared.world().stats.clone()
    }
    pub fn set_faults(&self, faults: Faults) {
        self.shared.world().faults = faults;
    }
    pub fn set_latency(&self, latency: Duration) {
        self.shared.world().faults.latency_ms = latency.as_millis() as u64;
    }
    /// Drops the connection of the next `n` requests that write, after the write.
    pub fn drop_next_writes(&self, n: u32) {
        self.shared.world().drop_next_writes = n;
    }
    /// Makes `user`'s calendars read-only as Google's usage limits do (or lifts it).
    pub fn set_read_only(&self, user: &str, read_only: bool) {
        self.shared.world().set_read_only(user, read_only);
    }
    /// Expires every sync token issued so far (the next incremental listing answers 410).
    pub fn expire_sync_tokens(&self) {
        self.shared.world().expire_sync_tokens();
    }
    /// Adds a user of the domain.
    pub fn add_user(&self, user: &str) {
        self.shared.world().user_mut(user);
    }
    /// Live events of `user`'s calendar named `calendar` (`None`: the primary one).
    pub fn events(&self, user: &str, calendar: Option<&str>) -> Vec<EmulatedEvent> {
        self.shared.world().inspect(user, calendar)
    }
    /// Summaries of `user`'s calendars.
    pub fn calendars(&self, user: &str) -> Vec<String> {
        self.shared.world().calendar_names(user)
    }
    /// Adds an event as the person would (no marker): in `calendar`, or the primary one.
    pub fn add_personal_event(
        &self,
        user: &str,
        calendar: Option<&str>,
        summary: &str,
        start: jiff::Timestamp,
        end: jiff::Timestamp,
    ) -> Result<String, String> {
        self.shared
            .world()
            .add_personal(user, calendar, summary, start, end)
    }
    /// Edits an event as its owner would (`patch`: top-level fields). Changes its etag.
    pub fn user_edit_event(
        &self,
        user: &str,
        calendar: &str,
        id: &str,
        patch: serde_json::Value,
    ) -> Result<(), String> {
        self.shared.world().user_edit(user, calendar, id, patch)
    }
    /// Deletes an event as its owner would.
    pub fn user_delete_event(&self, user: &str, calendar: &str, id: &str) -> Result<(), String> {
        self.shared.world().user_delete(user, calendar, id)
    }
}

impl Drop for GoogleEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
