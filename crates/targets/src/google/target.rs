//! The `google` target: [`CalendarOp`]s onto a [`GoogleClient`].
//!
//! A calendar of the delivery loop is a person (their email, the JWT's
//! `sub`); the edusync calendar in their calendar list is found or created
//! once per run. The ops of one batch run a few at a time (the client's
//! per-person limit), in order of answer.
//!
//! * Create (or a row without `remote_id`): insert at the entry's id; 409
//!   → prove the marker and patch (see [`GoogleClient::insert`]).
//! * Update: patch by id; 404/410 (gone for good) → insert again.
//! * Delete: by id; already gone is done.
//! * A person whose email changed: the copy in the old calendar is
//!   deleted first, as the Graph target does.
//! * A deleted edusync calendar is found or made again, and the op retried once.

use futures_util::stream::{self, StreamExt};

use std::collections::HashMap;

use super::client::Written;
use super::{mapping, GoogleClient, GoogleError, GoogleSettings, RemoteEvent};
use crate::delivery::sum_per_calendar;
use crate::{CalendarHint, CalendarOp, Listing, OpKind, Outcome, RemoteItem, TargetError};

/// People worked on at once. The client keeps each person to a few
/// requests in flight and the project to its quota, so this only has to be
/// large enough to fill the project quota (10,000 a minute ≈ 167 a second:
/// at ~100–300 ms a request and a few in flight per person, a few dozen
/// people at once).
pub const USER_CONCURRENCY: usize = 256;

#[derive(Debug, Clone)]
pub struct GoogleTarget {
    name: String,
    client: GoogleClient,
}

/// A calendar's change marker: its id, the sync token of its last
/// listing, and the calendar name (the `calendar` setting) it was found
/// by. Ids and tokens hold no spaces; the name may.
fn marker(calendar: &str, token: &str, name: &str) -> String {
    format!("{calendar} {token} {name}")
}

/// The calendar id and sync token of a [`marker`] made for the calendar
/// named `name`; a marker of another name (the setting changed since) or
/// of an older shape is no marker: the calendar is looked up and listed
/// in full.
fn parse_marker<'a>(text: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    let mut parts = text.splitn(3, ' ');
    let (calendar, token, made_for) = (parts.next()?, parts.next()?, parts.next()?);
    (made_for == name && !calendar.is_empty() && !token.is_empty()).then_some((calendar, token))
}

fn failed(e: &GoogleError) -> Outcome {
    Outcome::Failed {
        retryable: e.is_retryable(),
        message: e.to_string(),
    }
}

impl GoogleTarget {
    pub fn new(name: &str, client: GoogleClient) -> Self {
        Self {
            name: name.to_string(),
            client,
        }
    }

    pub fn from_settings(name: &str, settings: GoogleSettings) -> Self {
        Self::new(name, GoogleClient::new(settings))
    }

    pub fn client(&self) -> &GoogleClient {
        &self.client
    }

    fn fail(&self, message: String) -> TargetError {
        TargetError::Failed {
            target: format!(
                "google target {} ({})",
                self.name,
                self.client.settings().api_url
            ),
            message,
        }
    }

    /// Applies `ops` to `user`'s calendar, one outcome per op, in order.
    #[tracing::instrument(skip_all, fields(target = %self.name, user = %user, ops = ops.len()))]
    pub async fn apply(&self, user: &str, ops: &[CalendarOp]) -> Vec<Outcome> {
        if let Some(why) = self.client.paused(user) {
            let e = GoogleError::UsageLimited {
                user: user.to_string(),
                message: why,
            };
            return ops.iter().map(|_| failed(&e)).collect();
        }
        let calendar = match self.client.ensure_calendar(user).await {
            Ok(c) => c,
            Err(e) => return ops.iter().map(|_| failed(&e)).collect(),
        };
        let width = self.client.options().user_concurrency.max(1);
        stream::iter(ops)
            .map(|op| {
                let calendar = calendar.clone();
                async move { self.one(user, calendar, op).await }
            })
            .buffered(width)
            .collect()
            .await
    }

    async fn one(&self, user: &str, mut calendar: String, op: &CalendarOp) -> Outcome {
        let prior = op.prior.as_ref();
        // Moved from another person's calendar: remove the old copy first.
        if op.kind != OpKind::Delete {
            if let Some(p) = prior {
                if !p.calendar.eq_ignore_ascii_case(user) {
                    if let Some(id) = &p.remote_id {
                        if let Err(e) = self.delete_in(&p.calendar, id).await {
                            return failed(&e);
                        }
                    }
                }
            }
        }
        let mut again = true;
        loop {
            match self.write(user, &calendar, op).await {
                Err(GoogleError::CalendarNotFound { .. }) if again => {
                    again = false;
                    self.client.forget_calendar(user);
                    calendar = match self.client.ensure_calendar(user).await {
                        Ok(c) => c,
                        Err(e) => return failed(&e),
                    };
                }
                Err(e) => return failed(&e),
                Ok(o) => return o,
            }
        }
    }

    async fn delete_in(&self, user: &str, id: &str) -> Result<(), GoogleError> {
        match self.client.find_calendar(user).await {
            Ok(Some(cal)) => match self.client.delete(user, &cal, id).await {
                Err(GoogleError::CalendarNotFound { .. }) => Ok(()),
                r => r,
            },
            Ok(None) => Ok(()),
            // The old address no longer exists: nothing of it to remove.
            Err(GoogleError::Auth {
                retryable: false, ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn write(
        &self,
        user: &str,
        calendar: &str,
        op: &CalendarOp,
    ) -> Result<Outcome, GoogleError> {
        let prior = op.prior.as_ref();
        let sequence = prior.map_or(0, |p| p.sequence);
        let done = |w: Written| Outcome::Written {
            remote_id: w.id,
            etag: w.etag,
            sequence,
        };
        match op.kind {
            OpKind::Delete => {
                let Some(id) = prior.and_then(|p| p.remote_id.clone()) else {
                    return Ok(Outcome::Deleted);
                };
                self.client.delete(user, calendar, &id).await?;
                Ok(Outcome::Deleted)
            }
            OpKind::Create | OpKind::Update => {
                let Some(ev) = op.event.as_ref() else {
                    return Ok(Outcome::Failed {
                        retryable: false,
                        message: "internal: write without an event".into(),
                    });
                };
                let id = mapping::event_id(&op.profile, &op.person_id, &op.event_id);
                let same_calendar = prior.is_some_and(|p| p.calendar.eq_ignore_ascii_case(user));
                let known = prior
                    .and_then(|p| p.remote_id.clone())
                    .filter(|_| same_calendar);
                if let Some(remote) = known {
                    let body = self.client.body(None, &op.profile, ev);
                    match self.client.patch(user, calendar, &remote, &body).await {
                        Ok(w) => return Ok(done(w)),
                        Err(GoogleError::NotFound { .. }) => {
                            tracing::info!(user, event = %op.event_id, "google: event gone from the calendar, creating it again");
                        }
                        Err(e) => return Err(e),
                    }
                }
                let body = self.client.body(Some(&id), &op.profile, ev);
                let w = self
                    .client
                    .insert(user, calendar, &ev.marker, &body)
                    .await?;
                Ok(done(w))
            }
        }
    }

    /// The edusync events of `profile` in `user`'s calendar (all dates).
    pub async fn list(&self, user: &str, profile: &str) -> Result<Vec<RemoteItem>, TargetError> {
        Ok(self
            .list_checked(user, profile, &CalendarHint::default())
            .await?
            .items)
    }

    /// [`GoogleTarget::list`] with the calendar's change marker
    /// (`<calendar id> <sync token>`): when `hint.marker` holds one, only
    /// the changes since its token are fetched and applied to what the
    /// ledger says the calendar holds (`hint.items`, `hint.etags`); an
    /// expired token (410) or a calendar that is gone lists in full. The
    /// answer carries the marker to store once the ledger agrees with it.
    pub async fn list_checked(
        &self,
        user: &str,
        profile: &str,
        hint: &CalendarHint,
    ) -> Result<Listing, TargetError> {
        let prefix = format!("{profile}/");
        let item = |e: RemoteEvent| {
            Some(RemoteItem {
                event_id: e.key.strip_prefix(&prefix)?.to_string(),
                remote_id: e.id,
                etag: e.etag,
            })
        };
        let name = &self.client.settings().calendar;
        if let Some((calendar, token)) = hint.marker.as_deref().and_then(|m| parse_marker(m, name))
        {
            match self.client.list_since(user, calendar, profile, token).await {
                Ok(changes) => {
                    self.client.remember_calendar(user, calendar);
                    let mut items: HashMap<&str, RemoteItem> = hint
                        .items
                        .iter()
                        .map(|(remote_id, event_id)| {
                            let known = RemoteItem {
                                event_id: event_id.clone(),
                                remote_id: remote_id.clone(),
                                etag: hint.etags.get(remote_id).cloned(),
                            };
                            (remote_id.as_str(), known)
                        })
                        .collect();
                    for id in &changes.gone {
                        items.remove(id.as_str());
                    }
                    for c in &changes.live {
                        items.remove(c.id.as_str());
                    }
                    let mut listing = Listing {
                        items: items.into_values().collect(),
                        marker: changes.next.map(|t| marker(calendar, &t, name)),
                    };
                    listing
                        .items
                        .extend(changes.live.into_iter().filter_map(item));
                    return Ok(listing);
                }
                Err(GoogleError::NotFound { status: 410, .. }) => {
                    tracing::info!(
                        user,
                        "google: sync token expired, listing the calendar in full"
                    );
                }
                Err(GoogleError::CalendarNotFound { .. }) => {
                    self.client.forget_calendar(user);
                }
                Err(e) => return Err(self.fail(e.to_string())),
            }
        }
        let calendar = match self.client.find_calendar(user).await {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(Listing::default()),
            Err(e) => return Err(self.fail(e.to_string())),
        };
        let (events, next) = match self.client.list_profile(user, &calendar, profile).await {
            Ok(listed) => listed,
            Err(GoogleError::CalendarNotFound { .. }) => {
                self.client.forget_calendar(user);
                return Ok(Listing::default());
            }
            Err(e) => return Err(self.fail(e.to_string())),
        };
        Ok(Listing {
            items: events.into_iter().filter_map(item).collect(),
            marker: next.map(|t| marker(&calendar, &t, name)),
        })
    }

    /// Removes every event of `profile` from each person's calendar in
    /// `users`, found by marker. A person without an edusync calendar (or
    /// without an account) holds nothing to remove.
    pub async fn cleardown(&self, profile: &str, users: &[String]) -> Result<u64, TargetError> {
        sum_per_calendar(users, 64, |u| async move {
            self.cleardown_user(profile, &u).await
        })
        .await
    }

    async fn cleardown_user(&self, profile: &str, user: &str) -> Result<u64, TargetError> {
        let calendar = match self.client.find_calendar(user).await {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(0),
            Err(GoogleError::Auth {
                retryable: false,
                ref message,
                ..
            }) if message.contains("invalid_grant") => return Ok(0),
            Err(e) => return Err(self.fail(e.to_string())),
        };
        let events = match self.client.list_profile(user, &calendar, profile).await {
            Ok((ev, _)) => ev,
            Err(GoogleError::CalendarNotFound { .. }) => return Ok(0),
            Err(e) => return Err(self.fail(e.to_string())),
        };
        let width = self.client.options().user_concurrency.max(1);
        let results: Vec<Result<(), GoogleError>> = stream::iter(events)
            .map(|e| {
                let calendar = calendar.clone();
                async move { self.client.delete(user, &calendar, &e.id).await }
            })
            .buffer_unordered(width)
            .collect()
            .await;
        let mut removed = 0;
        for r in results {
            match r {
                Ok(()) => removed += 1,
                Err(e) => {
                    return Err(self.fail(format!(
                        "{e} (cleardown stopped for this person; run it again to finish)"
                    )))
                }
            }
        }
        Ok(removed)
    }

    /// Gets a token as `probe` (one person) and reads their calendar list;
    /// explains what to fix.
    pub async fn check(&self, probe: Option<&str>) -> Result<String, TargetError> {
        let s = self.client.settings();
        let Some(user) = probe else {
            return Ok(format!(
                "google target {}: key of service account {} loaded (no person known yet to probe; domain-wide delegation is proven per person, run a sync to see per-person results)",
                self.name, s.key.client_email
            ));
        };
        if let Err(e) = self.client.token(user).await {
            return Err(self.fail(format!(
                "cannot get a token for {user} as {}: {e}",
                s.key.client_email
            )));
        }
        match self.client.probe(user).await {
            Ok(n) => Ok(format!(
                "google target {}: token issued for {user} through domain-wide delegation; calendar list readable ({n} calendars)",
                self.name
            )),
            Err(GoogleError::Rejected { status: 403, reason, message, .. }) => Err(self.fail(format!(
                "{user}: access denied ({reason}: {message}); in the Google Admin console, API controls → Domain-wide delegation, the service account's client id needs the scope {}", super::SCOPE
            ))),
            Err(e) => Err(self.fail(e.to_string())),
        }
    }
}
