//! A Microsoft Graph emulator for tests and demos: the Microsoft identity
//! platform token endpoint (client credentials), users, calendars, events,
//! calendarView, JSON `$batch`, paging, single-value extended properties,
//! `transactionId` de-duplication and the documented Outlook limits.
//!
//! Written from Microsoft's published documentation:
//!
//! * JSON batching: at most 20 requests per `$batch`; each has `id`,
//!   `method`, `url`, optional `headers`, `body` and `dependsOn`; responses
//!   carry `id`, `status`, `headers`, `body`. Graph dispatches at most four
//!   requests of one batch to Outlook at a time.
//! * Outlook service limits, per app and mailbox: 10,000 requests per 10
//!   minutes and 4 concurrent requests; over either, `429 Too Many Requests`
//!   with `Retry-After` (seconds). Requests inside a batch count one each.
//! * `transactionId` on event create: a retry of the same create returns the
//!   event created the first time. Microsoft does not publish how long the
//!   de-duplication lasts; [`GraphEmulatorConfig::transaction_id_window`].
//! * `$filter=singleValueExtendedProperties/Any(ep: ep/id eq '…' and ep/value eq '…')`
//!   and `$expand=singleValueExtendedProperties($filter=id eq '…')`: the
//!   `Name` part of the id is case-sensitive, the value is not.
//! * Paging with `$top` and an absolute `@odata.nextLink`.
//! * Certificate credentials: the client assertion (RFC 7523) is verified
//!   like the identity platform does (RS256 signature with the key of a
//!   registered certificate named by `x5t#S256` or `x5t`, `aud` = the token
//!   endpoint, `iss` = `sub` = the client id, `nbf`/`exp`), and refused with
//!   the AADSTS error the service gives (700027, 700021, 700023, 700024,
//!   50027).
//!
//! On top of the service it records every *violation* by the client (a
//! request before `Retry-After` elapsed, more than four concurrent requests
//! for one mailbox, an oversize batch, a missing, invalid or expired token)
//! so tests can assert there were none, and it injects faults: latency,
//! random 503/504, a dropped connection after a write was applied, outages,
//! unknown and unlicensed mailboxes.
//!
//! Everything is reachable from Rust through [`GraphEmulator`] and over HTTP
//! under `/_emulator/` (see [`server`] for the admin routes).

mod assertion;
mod odata;
pub mod server;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use store::{EmulatedEvent, MailboxState, OutageMode, Stats, Violation, ViolationKind};

/// A mailbox known to the emulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserSpec {
    /// The user principal name, e.g. `ada@contoso.edu`; addressed case-insensitively.
    pub upn: String,
    /// The directory object id; a GUID is made up when `None`.
    #[serde(default)]
    pub id: Option<String>,
    /// `Unlicensed` answers `404 MailboxNotEnabledForRESTAPI`.
    #[serde(default)]
    pub state: MailboxState,
}

impl UserSpec {
    /// A licensed user with a made-up id.
    pub fn new(upn: impl Into<String>) -> Self {
        Self {
            upn: upn.into(),
            id: None,
            state: MailboxState::Ok,
        }
    }
}

/// A request-rate limit: at most `requests` in any sliding `window`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub requests: u32,
    /// The window length.
    pub window: Duration,
}

/// How the emulator behaves. `Default` is Microsoft's documented service.
#[derive(Debug, Clone)]
pub struct GraphEmulatorConfig {
    /// Where to listen; `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
    /// The tenant accepted at `/{tenant}/oauth2/v2.0/token`.
    pub tenant_id: String,
    /// The app registration's client id.
    pub client_id: String,
    /// The app registration's secret.
    pub client_secret: String,
    /// Certificates uploaded to the app registration (PEM): a client
    /// assertion signed with one's private key and naming it by thumbprint
    /// is accepted instead of the secret. Default: [`crate::TEST_CERT_PEM`].
    pub client_certificates: Vec<String>,
    /// Lifetime of issued tokens (Microsoft: 60–90 minutes). Short in tests of refresh.
    pub token_lifetime: Duration,
    /// Mailboxes that exist.
    pub users: Vec<UserSpec>,
    /// When true, any UPN containing `@` that is not listed is created on first use.
    pub auto_users: bool,
    /// Concurrent requests per mailbox (Outlook: 4).
    pub mailbox_concurrency: usize,
    /// Requests per mailbox per window (Outlook: 10,000 per 10 minutes).
    pub mailbox_rate: RateLimit,
    /// A global limit over all of the app's requests; `None` for no limit.
    pub app_rate: Option<RateLimit>,
    /// Requests of one batch that one mailbox runs at once (Graph: 4).
    pub batch_parallelism: usize,
    /// Requests per `$batch` (Graph: 20).
    pub max_batch: usize,
    /// How long a `transactionId` de-duplicates creates.
    pub transaction_id_window: Duration,
    /// Page size when `$top` is absent (Graph: 10 for events).
    pub default_page_size: usize,
    /// Largest `$top` honoured.
    pub max_page_size: usize,
    /// A request that arrives within this long after a 429 was issued is not
    /// counted as ignoring `Retry-After` (it may have been sent before the
    /// client could see the 429).
    pub violation_grace: Duration,
    /// Seed of the fault-injection random generator.
    pub seed: u64,
}

impl Default for GraphEmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tenant_id: "contoso.onmicrosoft.com".into(),
            client_id: "00000000-0000-0000-0000-000000000000".into(),
            client_secret: "emulator-secret".into(),
            client_certificates: vec![crate::TEST_CERT_PEM.to_string()],
            token_lifetime: Duration::from_secs(3599),
            users: Vec::new(),
            auto_users: false,
            mailbox_concurrency: 4,
            mailbox_rate: RateLimit {
                requests: 10_000,
                window: Duration::from_secs(600),
            },
            app_rate: None,
            batch_parallelism: 4,
            max_batch: 20,
            transaction_id_window: Duration::from_secs(3600),
            default_page_size: 10,
            max_page_size: 1000,
            violation_grace: Duration::from_millis(20),
            seed: 0x0ed5_c0de,
        }
    }
}

impl GraphEmulatorConfig {
    /// The default service with these licensed users.
    pub fn with_users<I, S>(upns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            users: upns.into_iter().map(UserSpec::new).collect(),
            ..Self::default()
        }
    }
}

/// Fault-injection knobs. Set them with [`GraphEmulator::set_faults`] or
/// `PUT /_emulator/faults` (JSON with these field names; durations in ms).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Faults {
    /// Added to every Graph request, while it holds its mailbox slot.
    pub latency_ms: u64,
    /// Probability (0–1) that a Graph request is answered 503 or 504 without effect.
    pub error_rate: f64,
    /// Probability (0–1) that a request which wrote something has its
    /// connection reset instead of being answered (the write stays applied).
    pub drop_after_write_rate: f64,
}

/// A running emulator. Dropping it stops the server.
pub struct GraphEmulator {
    shared: Arc<store::Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// Starts an emulator on `config.listen` (by default a free port of 127.0.0.1).
///
/// # Panics
/// When the address cannot be bound: a test cannot go on without it.
pub async fn spawn(config: GraphEmulatorConfig) -> GraphEmulator {
    try_spawn(config)
        .await
        .unwrap_or_else(|e| panic!("graph emulator: cannot listen: {e}"))
}

/// Like [`spawn`], returning the bind error.
pub async fn try_spawn(config: GraphEmulatorConfig) -> std::io::Result<GraphEmulator> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(store::Shared::new(config, format!("http://{addr}")));
    let task = tokio::spawn(server::serve(listener, shared.clone()));
    Ok(GraphEmulator { shared, addr, task })
}

impl GraphEmulator {
    /// Base URL, the `graph_url` of the target config (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// The `authority_url` of the target config (same server).
    pub fn authority_url(&self) -> String {
        self.url()
    }
    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The configuration in force.
    pub fn config(&self) -> &GraphEmulatorConfig {
        &self.shared.config
    }

    /// Every violation recorded so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.shared.world().violations.clone()
    }
    /// Forgets recorded violations.
    pub fn clear_violations(&self) {
        self.shared.world().violations.clear();
    }
    /// Panics with the list when any violation was recorded.
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "graph emulator recorded {} violation(s): {v:#?}",
            v.len()
        );
    }
    /// Counters.
    pub fn stats(&self) -> Stats {
        self.shared.world().stats()
    }

    /// Replaces the fault knobs.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.world().faults = faults;
    }
    /// Current fault knobs.
    pub fn faults(&self) -> Faults {
        self.shared.world().faults.clone()
    }
    /// Sets per-request latency.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.world().faults.latency_ms = latency.as_millis() as u64;
    }
    /// Sets the probability of a 503/504.
    pub fn set_error_rate(&self, p: f64) {
        self.shared.world().faults.error_rate = p;
    }
    /// Resets the connection of the next `n` requests that write, after the write.
    pub fn drop_next_writes(&self, n: u32) {
        self.shared.world().drop_next_writes = n;
    }
    /// Every request fails for `duration`: 503 with `Retry-After`, or refused connections.
    pub fn outage(&self, duration: Duration, mode: OutageMode) {
        self.shared.world().set_outage(duration, mode);
    }
    /// Ends an outage early.
    pub fn end_outage(&self) {
        self.shared.world().outage = None;
    }
    /// Makes a mailbox known, unknown (404) or unlicensed (404 MailboxNotEnabledForRESTAPI).
    pub fn set_mailbox_state(&self, upn: &str, state: MailboxState) {
        self.shared.world().set_mailbox_state(upn, state);
    }
    /// Adds a licensed mailbox.
    pub fn add_user(&self, upn: &str) -> String {
        self.shared.world().add_user(&UserSpec::new(upn))
    }

    /// Every event in the mailbox, all calendars, in creation order.
    pub fn events(&self, upn: &str) -> Vec<EmulatedEvent> {
        self.shared.world().inspect_events(upn, None)
    }
    /// Events of the calendar with this name.
    pub fn calendar_events(&self, upn: &str, calendar_name: &str) -> Vec<EmulatedEvent> {
        self.shared.world().inspect_events(upn, Some(calendar_name))
    }
    /// Names of the mailbox's calendars.
    pub fn calendars(&self, upn: &str) -> Vec<String> {
        self.shared.world().calendar_names(upn)
    }
    /// Adds an event as the person would in Outlook (no marker, no transactionId);
    /// in the named calendar, or the default one. Returns its id.
    pub fn add_personal_event(
        &self,
        upn: &str,
        calendar_name: Option<&str>,
        subject: &str,
        start: jiff::Timestamp,
        end: jiff::Timestamp,
    ) -> Result<String, String> {
        self.shared
            .world()
            .add_personal_event(upn, calendar_name, subject, start, end)
    }
    /// Edits an event as its owner would: `patch` is a Graph event JSON
    /// fragment (`subject`, `start`, …). Bumps its change key.
    pub fn user_edit_event(
        &self,
        upn: &str,
        event_id: &str,
        patch: serde_json::Value,
    ) -> Result<(), String> {
        self.shared.world().user_edit_event(upn, event_id, patch)
    }
    /// Deletes an event as its owner would.
    pub fn user_delete_event(&self, upn: &str, event_id: &str) -> Result<(), String> {
        self.shared.world().user_delete_event(upn, event_id)
    }
}

impl Drop for GraphEmulator {
    fn drop(&mut self) {
        self.shared.shutdown();
        self.task.abort();
    }
}
