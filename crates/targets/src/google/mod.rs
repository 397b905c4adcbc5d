//! Google Workspace calendars through the Google Calendar API (v3).
//!
//! * **Auth** (`auth.rs`): a service account with domain-wide delegation.
//!   Per person, the client signs a JWT (RS256, [`crate::jwt`]) with the key
//!   file's private key — `iss` the service account, `sub` the person,
//!   scope `https://www.googleapis.com/auth/calendar`, `aud` the token
//!   URL — and exchanges it at the token endpoint (RFC 7523). Tokens are
//!   cached per subject and refreshed five minutes (or a quarter of their
//!   life) before they expire.
//! * **Calendar per person**: the secondary calendar named by `calendar`
//!   in the person's calendar list, created when missing.
//! * **Writes** (`target.rs`): `events.insert` with a client-chosen id —
//!   base32hex of the entry's 128-bit stable key ([`event_id`]) — so a
//!   retried insert is answered `409 duplicate`: the client then reads the
//!   event, proves it carries edusync's marker, and patches it (with
//!   `If-Match`) so its content is what was meant; an id held by an event
//!   without the marker is never touched. Updates are `events.patch` of the
//!   whole content with `status: confirmed` (Google keeps a deleted event's
//!   id, so that also brings back an event deleted by hand); deletes
//!   answered 404 or 410 are done. The marker is two
//!   `extendedProperties.private` keys: [`MARKER_PROFILE`] (the listing
//!   filter) and [`MARKER_KEY`] (`<profile>/<event id>`).
//! * **Quotas** (`client.rs`, [`crate::rate`]): the client keeps Google's
//!   per-user (600 a minute) and per-project (10,000 a minute) request
//!   quotas itself with sliding windows, a request taking its slot in both
//!   at once, and at most 4 requests in flight per person under the
//!   adaptive limit of [`crate::adaptive`] (halved on rate limits, 503/504,
//!   timeouts and rising latency, as Graph's mailboxes are).
//!   A `403`/`429` `rateLimitExceeded` / `userRateLimitExceeded` holds that
//!   person's requests for an exponential backoff with jitter (1 s, 2 s, …
//!   32 s) and tries again; nobody else waits. Google's calendar usage
//!   limit (`403 quotaExceeded`, "Calendar usage limits exceeded": the
//!   calendar is read-only for hours) pauses that person for the rest of
//!   the run — no further request is sent for them — and fails their ops
//!   with a message saying so; everyone else syncs, and the next run tries
//!   again. 5xx and connection failures are retried with backoff.
//! * **Listing** (drift repair): `events.list` with
//!   `privateExtendedProperty=` the profile, paged. The last page's
//!   `nextSyncToken`, with the calendar's id and the name it was found by,
//!   is the calendar's change marker (a marker of another name, after the
//!   `calendar` setting changed, is not used), kept in the state store
//!   (`Store::calendar_markers`) once the
//!   ledger agrees with the listing. With a stored marker only the changes
//!   since are asked for (`syncToken`, which Google does not allow with a
//!   filter: the changes are filtered on the marker here) and applied to
//!   what the ledger holds (`CalendarHint`: remote id → etag), so a
//!   calendar nobody changed costs one small request. A `410` (token
//!   expired) or a calendar that is gone lists in full again. Drift repair
//!   compares event `etag`s.
//!
//! * **No batch requests.** Google counts every call inside a batch
//!   against the same quotas, and the per-user quota (10 a second) is what
//!   binds: four requests in flight at ~100 ms already offer 40 a second. A
//!   batch would save connections, not time, and would turn one usage-limit
//!   or rate-limit answer into a whole batch to sort out.
//!
//! Ledger mapping: `remote_id` = the Google event id, `etag` = its etag,
//! `sequence` passed through (the id does not depend on it: a re-create
//! after a hand deletion reuses the id, as Google allows through patch).

mod auth;
mod client;
pub mod mapping;
pub mod target;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use auth::ServiceAccountKey;
pub use client::{Changes, GoogleClient};
pub use mapping::event_id;
pub use target::GoogleTarget;

use crate::adaptive::AdaptiveConfig;
use crate::rate::RequestRate;

/// The private extended property holding the profile (listings filter on it).
pub const MARKER_PROFILE: &str = "edusyncProfile";
/// The private extended property holding the marker value `<profile>/<event id>`.
pub const MARKER_KEY: &str = "edusyncKey";
/// The OAuth scope edusync asks for (and the Admin console must grant).
pub const SCOPE: &str = "https://www.googleapis.com/auth/calendar";

/// Where and as whom to reach Google (the `google` target's keys).
#[derive(Clone)]
pub struct GoogleSettings {
    /// e.g. `https://oauth2.googleapis.com/token`; also the JWT's `aud`.
    pub token_url: String,
    /// e.g. `https://www.googleapis.com/calendar/v3`.
    pub api_url: String,
    /// Name of the secondary calendar edusync writes for each person.
    pub calendar: String,
    /// The service account's key.
    pub key: Arc<ServiceAccountKey>,
}

impl fmt::Debug for GoogleSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleSettings")
            .field("token_url", &self.token_url)
            .field("api_url", &self.api_url)
            .field("calendar", &self.calendar)
            .field("service_account", &self.key.client_email)
            .finish()
    }
}

/// Tuning; `Default` suits Google's service.
#[derive(Debug, Clone)]
pub struct GoogleClientOptions {
    /// The most requests in flight per person: the cap of the adaptive
    /// limit ([`crate::adaptive`]), which halves on rate limits, 503/504,
    /// timeouts and rising latency and grows back by one per round trip.
    pub user_concurrency: usize,
    /// How the per-person limit adapts (its `max` is `user_concurrency`).
    pub adaptive: AdaptiveConfig,
    /// Requests per person per window (Google: 600 a minute per user per project).
    pub user_rate: Option<RequestRate>,
    /// Requests of the whole project per window (Google: 10,000 a minute).
    pub project_rate: Option<RequestRate>,
    /// Tries per request before giving up with a retryable error.
    pub max_attempts: u32,
    /// First backoff after a rate-limit answer, 5xx or connection failure;
    /// doubles each time, plus up to half again of jitter.
    pub backoff_base: Duration,
    /// Longest backoff (Google suggests 32–64 s).
    pub backoff_max: Duration,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// `maxResults` of listings (Google: at most 2500).
    pub page_size: usize,
}

impl Default for GoogleClientOptions {
    fn default() -> Self {
        Self {
            user_concurrency: 4,
            adaptive: AdaptiveConfig::default(),
            user_rate: Some(RequestRate {
                requests: 600,
                window: Duration::from_secs(60),
            }),
            project_rate: Some(RequestRate {
                requests: 10_000,
                window: Duration::from_secs(60),
            }),
            max_attempts: 8,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(32),
            request_timeout: Duration::from_secs(60),
            page_size: 2500,
        }
    }
}

/// An edusync event found in a calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEvent {
    pub id: String,
    /// The marker value `<profile>/<event id>`.
    pub key: String,
    pub etag: Option<String>,
}

/// A failure talking to Google.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GoogleError {
    /// Rate limits, 5xx, timeouts, connection failures: trying again later can help.
    #[error("Google Calendar, {user}: {message} (will be retried)")]
    Retryable {
        user: String,
        status: Option<u16>,
        message: String,
    },
    /// A 4xx for this request: it will fail the same way again.
    #[error("Google Calendar refused a request for {user}: HTTP {status} {reason}: {message}")]
    Rejected {
        user: String,
        status: u16,
        reason: String,
        message: String,
    },
    /// Google's calendar usage limits: the person's calendar is read-only for a while.
    #[error("Google Calendar, {user}: calendar usage limits exceeded ({message}); Google has made this person's calendar read-only for a while (usually a few hours), so edusync paused them for the rest of this run; everyone else is synced, and the next run tries again")]
    UsageLimited { user: String, message: String },
    /// The event (or calendar) is not there (404), or deleted and gone (410).
    #[error("Google Calendar, {user}: {what} not found (HTTP {status})")]
    NotFound {
        user: String,
        status: u16,
        what: String,
    },
    /// The edusync calendar is gone (deleted by hand?).
    #[error("Google Calendar, {user}: calendar {calendar_id} no longer exists (deleted by hand?); it will be created again")]
    CalendarNotFound { user: String, calendar_id: String },
    /// The token endpoint refused the JWT grant (delegation, unknown user, key) or could not be reached.
    #[error("Google token endpoint {url}, as {user}: {message}")]
    Auth {
        url: String,
        user: String,
        message: String,
        retryable: bool,
    },
    /// An answer the client cannot make sense of.
    #[error("Google Calendar, {user}: unexpected answer: {message}")]
    Protocol { user: String, message: String },
}

impl GoogleError {
    /// Whether trying again later in this run can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            GoogleError::Retryable { .. } => true,
            GoogleError::Auth { retryable, .. } => *retryable,
            _ => false,
        }
    }
}
