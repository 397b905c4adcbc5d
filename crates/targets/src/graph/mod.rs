//! Microsoft 365 calendars through Microsoft Graph.
//!
//! A self-contained async client, independent of the delivery loop:
//!
//! * **Auth**: OAuth 2.0 client credentials at
//!   `{authority_url}/{tenant_id}/oauth2/v2.0/token`, scope
//!   `{graph_url}/.default`, with a client secret or a certificate (a
//!   client assertion, RFC 7523: RS256, `x5t#S256` = the certificate's
//!   SHA-256 thumbprint, `aud` = the token endpoint, `iss` = `sub` = the
//!   client id, a fresh `jti`, valid for 10 minutes); the token is cached
//!   and refreshed before it expires (five minutes before, or a quarter of
//!   its life when shorter).
//! * **Calendar per person**: [`GraphClient::ensure_calendar`] finds the
//!   calendar named by the target's `calendar` key, or creates it.
//! * **Writes**: [`GraphClient::apply`] sends [`GraphOp`]s as JSON `$batch`es
//!   of at most 20. Every create carries a `transactionId` derived from the
//!   op's key (so a retried create returns the event created the first time)
//!   and every event carries the edusync marker, the single-value extended
//!   property [`MARKER_PROPERTY_ID`] whose value is `<profile>/<event key>`.
//! * **Limits** (Outlook, per mailbox): at most 4 requests in flight — a
//!   batch of n requests counts min(n, 4), since Graph runs four of a batch's
//!   requests at a time — and `Retry-After` of a 429 holds that mailbox only.
//!   Below that cap each mailbox has an adaptive limit (AIMD, see
//!   [`crate::adaptive`]) that halves on 429/503/504/timeouts and on rising
//!   latency and grows back by one per healthy round trip; while it is
//!   under 4, a batch holds only as many requests as the limit.
//!   5xx and connection failures are retried with jittered exponential
//!   backoff; other 4xx fail the op permanently; an unknown or unlicensed
//!   mailbox fails that mailbox's ops permanently.
//! * **Rates**: the client also keeps Outlook's 10,000 requests per 10
//!   minutes per mailbox and Graph's global per-app limit (130,000 requests
//!   per 10 seconds) itself, counting each request inside a batch, so a big
//!   initial load runs at the limit instead of into it ([`crate::rate`]:
//!   the mailbox window first, then the app window, which also paces, as
//!   the service admits a 10-second budget spent in one burst late).
//! * **Reconcile**: [`GraphClient::list_marked`] lists the events carrying
//!   the marker in a window (calendarView, all pages); personal events are
//!   never returned.
//!
//! Errors are [`GraphError`]s; [`GraphError::is_retryable`] tells the
//! delivery loop whether trying again later can help.
//!
//! Adapter surface for the delivery loop: one [`GraphClient`] per target,
//! shared (it is cheap to clone); per calendar (mailbox), call
//! `ensure_calendar` once, then `apply` with that mailbox's ops; map each
//! [`GraphOpResult`] onto the ledger (`Created`/`Updated` → remote id and
//! change key; `Deleted`; `NotFound` on update → re-create; retryable → keep
//! pending). Calls for different mailboxes may run concurrently; calls for
//! the same mailbox share its limits.

mod auth;
mod client;
mod mapping;
pub mod target;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::adaptive::AdaptiveConfig;
use crate::jwt::RsaSigner;

pub use client::GraphClient;
pub use mapping::transaction_id;
pub use target::GraphTarget;

/// The edusync marker: a single-value extended property (string) in
/// edusync's own property set. Its value is `<profile>/<event key>`.
pub const MARKER_PROPERTY_ID: &str =
    "String {5e7c1d2a-9b4f-4e6a-8d3c-2f1a0b9c8d7e} Name edusync-key";

/// Where and as whom to reach Microsoft Graph (the `graph` target's keys).
#[derive(Clone)]
pub struct GraphSettings {
    /// e.g. `https://login.microsoftonline.com`.
    pub authority_url: String,
    /// e.g. `https://graph.microsoft.com`.
    pub graph_url: String,
    /// Tenant id or domain.
    pub tenant_id: String,
    /// The app registration's client id.
    pub client_id: String,
    /// How the app proves itself: a client secret or a certificate.
    pub credential: GraphCredential,
    /// Name of the calendar edusync writes in each mailbox.
    pub calendar: String,
}

impl fmt::Debug for GraphSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphSettings")
            .field("authority_url", &self.authority_url)
            .field("graph_url", &self.graph_url)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("credential", &self.credential)
            .field("calendar", &self.calendar)
            .finish()
    }
}

/// The app's credential for the client-credentials grant.
#[derive(Clone)]
pub enum GraphCredential {
    /// A client secret (read from the `_env` variable by the caller).
    Secret(String),
    /// A certificate uploaded to the app registration, with its private key:
    /// each token request carries a client assertion (RFC 7523) signed with
    /// the key (RS256) and naming the certificate by its SHA-256 thumbprint.
    Certificate(Arc<RsaSigner>),
}

impl fmt::Debug for GraphCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphCredential::Secret(_) => f.write_str("Secret(<redacted>)"),
            GraphCredential::Certificate(_) => f.write_str("Certificate(<private key hidden>)"),
        }
    }
}

impl GraphCredential {
    /// A certificate credential from PEM text holding the private key and
    /// the certificate. The message says what is missing.
    pub fn certificate_from_pem(pem: &str) -> Result<Self, String> {
        let signer = RsaSigner::from_pem(pem).map_err(|e| e.to_string())?;
        if signer.certificate().is_none() {
            return Err("there is a private key but no `-----BEGIN CERTIFICATE-----` block; put the certificate uploaded to the app registration in the same file as its key (e.g. `cat key.pem cert.pem > edusync-graph.pem`)".into());
        }
        Ok(GraphCredential::Certificate(Arc::new(signer)))
    }

    /// [`GraphCredential::certificate_from_pem`] on the file at `path`,
    /// named by the environment variable `var` (for messages).
    pub fn certificate_file(path: &std::path::Path, var: &str) -> Result<Self, String> {
        let pem = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the certificate file {} (named by ${var}): {e}",
                path.display()
            )
        })?;
        Self::certificate_from_pem(&pem)
            .map_err(|e| format!("certificate file {} (named by ${var}): {e}", path.display()))
    }
}

/// Tuning; `Default` suits Microsoft's service.
#[derive(Debug, Clone)]
pub struct GraphClientOptions {
    /// Requests in flight per mailbox at most (Outlook: 4): the cap of the
    /// mailbox's adaptive limit.
    pub mailbox_concurrency: usize,
    /// How each mailbox's limit adapts below that cap: AIMD on 429/503/
    /// timeouts and on rising latency (see [`crate::adaptive`]).
    pub adaptive: AdaptiveConfig,
    /// Requests per `$batch` (Graph: 20).
    pub max_batch: usize,
    /// Tries per op (or per read) before giving up with a retryable error.
    pub max_attempts: u32,
    /// First backoff after a 5xx or connection failure; doubles each time, with jitter.
    pub backoff_base: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
    /// Longest `Retry-After` waited inside one call; longer ones end the call
    /// with a retryable error so the delivery loop can come back later.
    pub max_retry_after: Duration,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// `$top` of list requests.
    pub page_size: usize,
    /// Requests per mailbox per window (Outlook: 10,000 per 10 minutes); `None` for no client-side limit.
    pub mailbox_rate: Option<RequestRate>,
    /// Requests of the whole app per window (Graph: 130,000 per 10 seconds); `None` for no client-side limit.
    pub app_rate: Option<RequestRate>,
}

pub use crate::rate::RequestRate;

impl Default for GraphClientOptions {
    fn default() -> Self {
        Self {
            mailbox_concurrency: 4,
            adaptive: AdaptiveConfig::default(),
            max_batch: 20,
            max_attempts: 8,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            request_timeout: Duration::from_secs(60),
            page_size: 100,
            mailbox_rate: Some(RequestRate {
                requests: 10_000,
                window: Duration::from_secs(600),
            }),
            app_rate: Some(RequestRate {
                requests: 130_000,
                window: Duration::from_secs(10),
            }),
        }
    }
}

/// The content of an edusync event, as written to Outlook.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphEvent {
    pub subject: String,
    /// Plain text body.
    pub body_text: String,
    /// Location display name; empty for none.
    pub location: String,
    pub start_utc: Timestamp,
    pub end_utc: Timestamp,
    /// Outlook categories (by name).
    pub categories: Vec<String>,
    /// `showAs` busy (true) or free.
    pub show_as_busy: bool,
    /// Whether Outlook reminds.
    pub reminder: bool,
    /// A cancelled session: written as "Cancelled: subject", shown as free.
    pub cancelled: bool,
}

/// One write to one mailbox's calendar.
#[derive(Debug, Clone, PartialEq)]
pub enum GraphOp {
    /// Create an event. `key` is the marker value `<profile>/<event key>`;
    /// `generation` goes into the `transactionId` with the key: keep it for
    /// every retry of the same create, change it only for a deliberate
    /// re-create (e.g. after the person deleted the event).
    Create {
        key: String,
        generation: u32,
        event: GraphEvent,
    },
    /// Rewrite an event (content and marker) by its Graph id.
    Update {
        key: String,
        remote_id: String,
        event: GraphEvent,
    },
    /// Delete an event by its Graph id; an event already gone counts as deleted.
    Delete { key: String, remote_id: String },
}

impl GraphOp {
    /// The marker value the op concerns.
    pub fn key(&self) -> &str {
        match self {
            GraphOp::Create { key, .. }
            | GraphOp::Update { key, .. }
            | GraphOp::Delete { key, .. } => key,
        }
    }
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphApplied {
    Created {
        id: String,
        change_key: Option<String>,
    },
    Updated {
        id: String,
        change_key: Option<String>,
    },
    Deleted,
}

/// The answer for one op, in the order the ops were given.
#[derive(Debug, Clone)]
pub struct GraphOpResult {
    pub key: String,
    pub outcome: Result<GraphApplied, GraphError>,
}

/// An edusync event found in a calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEvent {
    pub id: String,
    /// The marker value `<profile>/<event key>`.
    pub key: String,
    pub change_key: Option<String>,
    pub subject: String,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// A failure talking to Microsoft Graph.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GraphError {
    /// 429, 5xx, timeouts and connection failures: trying again later can help.
    #[error("Microsoft Graph, mailbox {mailbox}: {message} (will be retried)")]
    Retryable {
        mailbox: String,
        status: Option<u16>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// A 4xx for this op: it will fail the same way again.
    #[error(
        "Microsoft Graph refused a change in mailbox {mailbox}: HTTP {status} {code}: {message}"
    )]
    Rejected {
        mailbox: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The event to update is not there any more (deleted by hand?): create it again.
    #[error("Microsoft Graph, mailbox {mailbox}: event {id} no longer exists (deleted in Outlook?); it needs to be created again")]
    NotFound { mailbox: String, id: String },
    /// The edusync calendar is gone (deleted by hand?): call `ensure_calendar` again.
    #[error("Microsoft Graph, mailbox {mailbox}: calendar {calendar_id} no longer exists (deleted in Outlook?); it will be created again")]
    CalendarNotFound {
        mailbox: String,
        calendar_id: String,
    },
    /// No such user, or no Exchange Online mailbox: permanent for this mailbox only.
    #[error("Microsoft Graph, mailbox {mailbox}: {code}: {message} — check the address and that the person has an Exchange Online licence; other mailboxes are unaffected")]
    MailboxUnavailable {
        mailbox: String,
        code: String,
        message: String,
    },
    /// The token endpoint refused the credentials or could not be reached.
    #[error("Microsoft identity platform at {url}: {message}")]
    Auth {
        url: String,
        message: String,
        retryable: bool,
    },
    /// An answer the client cannot make sense of.
    #[error("Microsoft Graph, mailbox {mailbox}: unexpected answer: {message}")]
    Protocol { mailbox: String, message: String },
}

impl GraphError {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            GraphError::Retryable { .. } => true,
            GraphError::Auth { retryable, .. } => *retryable,
            GraphError::Rejected { .. }
            | GraphError::NotFound { .. }
            | GraphError::CalendarNotFound { .. }
            | GraphError::MailboxUnavailable { .. }
            | GraphError::Protocol { .. } => false,
        }
    }

    /// The `Retry-After` the service asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GraphError::Retryable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
