//! Calendar targets, one folder each, and the delivery loop they share.
//!
//! A target receives, per calendar (one person's calendar), a batch of
//! [`CalendarOp`]s and answers one [`Outcome`] per op. Every target obeys
//! the contract of `shared/spec/interface.md`: it touches only events that
//! carry the edusync marker, and replaying any op is harmless.
//!
//! - [`vdir`]: a local folder of `.ics` files per person.
//! - [`graph`]: Microsoft 365 through Microsoft Graph: the client and [`graph::GraphTarget`].
//! - [`google`]: Google Workspace through the Google Calendar API: [`google::GoogleTarget`].
//! - [`caldav`]: CalDAV servers (Radicale, Xandikos, Nextcloud, SOGo, …), one collection per person.
//! - [`delivery`]: per-calendar queues, concurrency limits and retries.
//! - [`adaptive`]: an AIMD limit on requests in flight per calendar (Vector's ARC as the model).
//! - [`rate`]: sliding-window request quotas kept client-side (per calendar, per app), optionally paced.
//! - `token`: OAuth access tokens cached, refreshed before expiry, fetched one at a time.
//! - [`jwt`]: RS256 JWTs for credentials proven with a private key (Google, Graph certificates).
//!
//! Architecture invariant: only this crate talks to calendar services.

use edusync_core::render::RenderedEvent;
use edusync_core::window::Window;

/// Locks `m`, going on with the data of a holder that panicked: every
/// lock in this crate guards a cache, a counter or a queue that is whole
/// between any two of its operations.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub mod adaptive;
pub mod caldav;
pub mod delivery;
pub mod google;
pub mod graph;
pub mod jwt;
pub mod rate;
mod token;
pub mod vdir;

/// What an op does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Create,
    Update,
    Delete,
}

/// What the ledger says a target holds for an entry (for updates and deletes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prior {
    pub calendar: String,
    pub remote_id: Option<String>,
    pub etag: Option<String>,
    pub sequence: u32,
}

/// One operation on one person's calendar.
#[derive(Debug, Clone)]
pub struct CalendarOp {
    pub kind: OpKind,
    pub profile: String,
    pub person_id: String,
    pub event_id: String,
    /// The calendar (email) the op writes to; for deletes, where it was written.
    pub calendar: String,
    /// The event as it must look (creates and updates).
    pub event: Option<RenderedEvent>,
    pub prior: Option<Prior>,
}

/// A target's answer for one op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Created or updated; this is what the ledger must now say.
    Written {
        remote_id: String,
        etag: Option<String>,
        sequence: u32,
    },
    /// Deleted, or was already gone.
    Deleted,
    /// Not done. `retryable` failures (timeouts, 429, 5xx) are tried again;
    /// permanent ones (unknown mailbox, refused) are reported per person.
    Failed { retryable: bool, message: String },
}

/// An edusync event found in a calendar (reconcile, drift repair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteItem {
    pub event_id: String,
    pub remote_id: String,
    pub etag: Option<String>,
}

/// What the ledger says one calendar holds, for targets that cannot tell
/// an edusync item's event id from the calendar cheaply (CalDAV names
/// resources by a one-way hash, so without this it would have to download
/// them to read their markers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalendarHint {
    /// The person whose calendar it is (CalDAV `{person_id}` URL templates).
    pub person_id: Option<String>,
    /// `remote_id → event_id` of the items the ledger records there.
    pub items: std::collections::HashMap<String, String>,
    /// `remote_id → etag` the ledger records (what a calendar unchanged
    /// since `marker` holds).
    pub etags: std::collections::HashMap<String, String>,
    /// The calendar's change marker stored after its last check
    /// (`Store::calendar_markers`).
    pub marker: Option<String>,
}

/// A calendar's edusync events and, for targets that have one, its change
/// marker as read before the listing: stored once the ledger agrees with
/// the listing, it lets the next cycle skip a calendar nobody changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub items: Vec<RemoteItem>,
    pub marker: Option<String>,
}

/// Percent-encodes `s` for a URL path segment or query value (every byte
/// but RFC 3986's unreserved characters).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{target}: {message}")]
    Failed { target: String, message: String },
}

/// Every kind of target, dispatched statically.
#[derive(Debug)]
pub enum Target {
    Vdir(vdir::VdirTarget),
    Graph(graph::GraphTarget),
    Caldav(caldav::CaldavTarget),
    Google(google::GoogleTarget),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Vdir(_) => "vdir",
            Target::Graph(_) => "graph",
            Target::Caldav(_) => "caldav",
            Target::Google(_) => "google",
        }
    }

    /// Applies `ops` to `calendar`, answering one outcome per op, in order.
    pub async fn apply(&self, calendar: &str, ops: &[CalendarOp]) -> Vec<Outcome> {
        match self {
            Target::Vdir(t) => t.apply(calendar, ops),
            Target::Graph(t) => t.apply(calendar, ops).await,
            Target::Caldav(t) => t.apply(calendar, ops).await,
            Target::Google(t) => t.apply(calendar, ops).await,
        }
    }

    /// The edusync events of `profile` in `calendar`; targets that can ask
    /// for a time range (Graph) list only events overlapping `window`.
    pub async fn list(
        &self,
        calendar: &str,
        profile: &str,
        window: &Window,
    ) -> Result<Vec<RemoteItem>, TargetError> {
        match self {
            Target::Vdir(t) => t.list(calendar, profile),
            Target::Graph(t) => t.list(calendar, profile, window.start..window.end).await,
            Target::Caldav(t) => t.list(calendar, profile, &CalendarHint::default()).await,
            Target::Google(t) => t.list(calendar, profile).await,
        }
    }

    /// [`Target::list`], given what the ledger knows of the calendar, so
    /// targets that need it (CalDAV) answer from ETags without downloading
    /// events, or from the ledger alone when the calendar's change marker
    /// equals `hint.marker` (Google: from the ledger and the changes since
    /// the marker's sync token; Graph: without looking the calendar up,
    /// its id being the marker). Drift repair calls this.
    pub async fn list_known(
        &self,
        calendar: &str,
        profile: &str,
        window: &Window,
        hint: &CalendarHint,
    ) -> Result<Listing, TargetError> {
        match self {
            Target::Caldav(t) => t.list_checked(calendar, profile, hint).await,
            Target::Google(t) => t.list_checked(calendar, profile, hint).await,
            Target::Graph(t) => {
                t.list_checked(calendar, profile, window.start..window.end, hint)
                    .await
            }
            Target::Vdir(_) => Ok(Listing {
                items: self.list(calendar, profile, window).await?,
                marker: None,
            }),
        }
    }

    /// Removes every event of `profile` from every calendar, found by marker,
    /// so it works with an empty ledger. `calendars` are the calendars known
    /// (the ledger's and the source's people): targets that cannot list
    /// every calendar themselves (Graph) clear those. Returns how many were removed.
    pub async fn cleardown(&self, profile: &str, calendars: &[String]) -> Result<u64, TargetError> {
        match self {
            Target::Vdir(t) => t.cleardown(profile),
            Target::Graph(t) => t.cleardown(profile, calendars).await,
            Target::Caldav(t) => t.cleardown(profile, calendars).await,
            Target::Google(t) => t.cleardown(profile, calendars).await,
        }
    }

    /// Reaches the target and checks it can be written; says what is wrong otherwise.
    pub async fn check(&self) -> Result<String, TargetError> {
        self.check_calendar(None).await
    }

    /// Like [`Target::check`], also reading calendar `probe` (one person's)
    /// where the target can only prove access per calendar (Graph).
    pub async fn check_calendar(&self, probe: Option<&str>) -> Result<String, TargetError> {
        match self {
            Target::Vdir(t) => t.check(),
            Target::Graph(t) => t.check(probe).await,
            Target::Caldav(t) => t.check(probe, None).await,
            Target::Google(t) => t.check(probe).await,
        }
    }

    /// [`Target::check_calendar`] with the sample person's id as well, for
    /// targets whose calendar address may be built from it (CalDAV
    /// `{person_id}` templates).
    pub async fn check_person(
        &self,
        email: Option<&str>,
        person_id: Option<&str>,
    ) -> Result<String, TargetError> {
        match self {
            Target::Caldav(t) => t.check(email, person_id).await,
            _ => self.check_calendar(email).await,
        }
    }

    /// Whether [`Target::list_known`] hands back markers that change with
    /// the calendar (CalDAV, Google), so checking calendars again after
    /// writing to them pays off next cycle. (Graph's marker only names the
    /// calendar.)
    pub fn keeps_change_markers(&self) -> bool {
        matches!(self, Target::Caldav(_) | Target::Google(_))
    }

    /// How many calendars the delivery loop works on at once for this target.
    pub fn calendar_concurrency(&self) -> usize {
        match self {
            Target::Vdir(_) => 4,
            Target::Graph(_) => graph::target::MAILBOX_CONCURRENCY,
            Target::Caldav(t) => t.calendar_concurrency(),
            Target::Google(_) => google::target::USER_CONCURRENCY,
        }
    }
}
