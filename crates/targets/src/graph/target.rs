//! The `graph` target: [`CalendarOp`]s onto a [`GraphClient`].
//!
//! * A calendar of the delivery loop is a mailbox (the person's email); the
//!   edusync calendar in it is found or created once per run, or not at
//!   all when drift repair has its id from the stored change marker.
//! * Ledger mapping: `remote_id` = Graph event id, `etag` = `changeKey`
//!   (drift repair compares it), `sequence` = the **generation** of the
//!   event's `transactionId`.
//! * Generation: a create sends `transactionId(key, generation)`. The
//!   generation is the ledger row's `sequence` (0 without a row), so every
//!   retry of a create — in this run, or in the next one after a crash,
//!   when the ledger has not moved — sends the same `transactionId`, and
//!   Graph answers with the event made the first time. A deliberate
//!   re-create bumps it: an update answered 404 (the person deleted the
//!   event) is re-created at `sequence + 1` in the same call, and drift
//!   repair, when it finds an event deleted by hand, keeps the row with
//!   `sequence + 1` and no `remote_id` (see `edusync_engine::drift`). So a
//!   re-create never reuses the `transactionId` of an event that is gone
//!   (which Exchange may still hold in Deleted Items), and a replay of the
//!   re-create reuses its own. Updates keep the row's generation.
//! * Failures: an unknown or unlicensed mailbox fails that mailbox's ops
//!   permanently (everyone else syncs); 429/5xx/timeouts are retryable.

use std::ops::Range;

use edusync_core::render::RenderedEvent;
use edusync_core::timetable::EventStatus;
use jiff::Timestamp;

use super::{GraphApplied, GraphClient, GraphError, GraphEvent, GraphOp, GraphSettings};
use crate::{CalendarHint, CalendarOp, Listing, OpKind, Outcome, RemoteItem, TargetError};

/// Mailboxes worked on at once. The client keeps each mailbox to 4 requests
/// in flight and the whole app to Graph's global rate, so this only has to
/// be large enough to keep the global rate busy: at ~100–300 ms a request,
/// one mailbox does 13–40 requests a second, and 130,000 per 10 s needs
/// several hundred mailboxes going at once.
pub const MAILBOX_CONCURRENCY: usize = 1000;

#[derive(Debug, Clone)]
pub struct GraphTarget {
    name: String,
    client: GraphClient,
}

/// A calendar's change marker: its id and the calendar name it was found
/// by (ids hold no spaces; the name may).
fn marker(calendar: &str, name: &str) -> String {
    format!("{calendar} {name}")
}

/// The calendar id of a [`marker`] made for the calendar named `name`; a
/// marker of another name (the setting changed since) is no marker.
fn parse_marker<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let (calendar, made_for) = text.split_once(' ')?;
    (made_for == name && !calendar.is_empty()).then_some(calendar)
}

/// `RenderedEvent` → the content written to Outlook.
pub fn graph_event(ev: &RenderedEvent) -> GraphEvent {
    let cancelled = ev.status == EventStatus::Cancelled;
    // The client writes "Cancelled: " itself; the renderer may already have.
    let subject = match ev.subject.strip_prefix("Cancelled: ") {
        Some(rest) if cancelled => rest.to_string(),
        _ => ev.subject.clone(),
    };
    GraphEvent {
        subject,
        body_text: ev.body.clone(),
        location: ev.location.clone(),
        start_utc: ev.start,
        end_utc: ev.end,
        categories: ev.categories.clone(),
        show_as_busy: ev.busy,
        reminder: false,
        cancelled,
    }
}

fn failed(e: &GraphError) -> Outcome {
    Outcome::Failed {
        retryable: e.is_retryable(),
        message: e.to_string(),
    }
}

/// What one op became, and what to record when it is written.
enum Step {
    Send(GraphOp, u32),
    Done(Outcome),
}

impl GraphTarget {
    pub fn new(name: &str, client: GraphClient) -> Self {
        Self {
            name: name.to_string(),
            client,
        }
    }

    pub fn from_settings(name: &str, settings: GraphSettings) -> Self {
        Self::new(name, GraphClient::new(settings))
    }

    pub fn client(&self) -> &GraphClient {
        &self.client
    }

    fn fail(&self, message: String) -> TargetError {
        TargetError::Failed {
            target: format!(
                "graph target {} ({})",
                self.name,
                self.client.settings().graph_url
            ),
            message,
        }
    }

    fn key(op: &CalendarOp) -> String {
        op.event
            .as_ref()
            .map(|e| e.marker.clone())
            .unwrap_or_else(|| format!("{}/{}", op.profile, op.event_id))
    }

    fn step(&self, mailbox: &str, op: &CalendarOp) -> Step {
        let key = Self::key(op);
        let prior = op.prior.as_ref();
        match op.kind {
            OpKind::Delete => match prior.and_then(|p| p.remote_id.clone()) {
                Some(remote_id) => Step::Send(GraphOp::Delete { key, remote_id }, 0),
                // Never written (or already forgotten): nothing to remove.
                None => Step::Done(Outcome::Deleted),
            },
            OpKind::Create | OpKind::Update => {
                let Some(ev) = op.event.as_ref() else {
                    return Step::Done(Outcome::Failed {
                        retryable: false,
                        message: "internal: write without an event".into(),
                    });
                };
                let event = graph_event(ev);
                let same_mailbox = prior.is_some_and(|p| p.calendar.eq_ignore_ascii_case(mailbox));
                match prior {
                    Some(p) if same_mailbox && p.remote_id.is_some() => Step::Send(
                        GraphOp::Update {
                            key,
                            remote_id: p.remote_id.clone().unwrap_or_default(),
                            event,
                        },
                        p.sequence,
                    ),
                    // No event yet in this mailbox: create at the row's generation
                    // (a moved event's old copy is removed first, see `apply`).
                    Some(p) => Step::Send(
                        GraphOp::Create {
                            key,
                            generation: p.sequence,
                            event,
                        },
                        p.sequence,
                    ),
                    None => Step::Send(
                        GraphOp::Create {
                            key,
                            generation: 0,
                            event,
                        },
                        0,
                    ),
                }
            }
        }
    }

    /// Applies `ops` to mailbox `mailbox`, one outcome per op, in order.
    #[tracing::instrument(skip_all, fields(target = %self.name, mailbox = %mailbox, ops = ops.len()))]
    pub async fn apply(&self, mailbox: &str, ops: &[CalendarOp]) -> Vec<Outcome> {
        let mut out: Vec<Option<Outcome>> = vec![None; ops.len()];
        // A person whose email changed: remove the copy in the old mailbox first.
        for (i, op) in ops.iter().enumerate() {
            if op.kind == OpKind::Delete {
                continue;
            }
            if let Some(p) = &op.prior {
                if !p.calendar.eq_ignore_ascii_case(mailbox) && p.remote_id.is_some() {
                    let del = CalendarOp {
                        kind: OpKind::Delete,
                        event: None,
                        ..op.clone()
                    };
                    if let Some(o @ Outcome::Failed { .. }) =
                        self.write(&p.calendar, &[del]).await.pop()
                    {
                        out[i] = Some(o);
                    }
                }
            }
        }
        if out.iter().all(Option::is_none) {
            // The usual case: nothing moved between mailboxes.
            return self.write(mailbox, ops).await;
        }
        let todo: Vec<usize> = (0..ops.len()).filter(|&i| out[i].is_none()).collect();
        let picked: Vec<CalendarOp> = todo.iter().map(|&i| ops[i].clone()).collect();
        for (i, o) in todo.into_iter().zip(self.write(mailbox, &picked).await) {
            out[i] = Some(o);
        }
        out.into_iter()
            .map(|o| {
                o.unwrap_or(Outcome::Failed {
                    retryable: true,
                    message: "not attempted".into(),
                })
            })
            .collect()
    }

    async fn write(&self, mailbox: &str, ops: &[CalendarOp]) -> Vec<Outcome> {
        let mut out: Vec<Option<Outcome>> = vec![None; ops.len()];
        // Which op, at which generation, and the Graph op sent for it.
        let mut sent: Vec<(usize, u32)> = Vec::with_capacity(ops.len());
        let mut graph_ops: Vec<GraphOp> = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            match self.step(mailbox, op) {
                Step::Done(o) => out[i] = Some(o),
                Step::Send(g, generation) => {
                    sent.push((i, generation));
                    graph_ops.push(g);
                }
            }
        }
        // Up to three rounds: the writes, then re-creates of events deleted by
        // hand, then the writes again if the calendar itself was deleted.
        let mut round = 0;
        while !sent.is_empty() && round < 3 {
            round += 1;
            let calendar = match self.client.ensure_calendar(mailbox).await {
                Ok(c) => c,
                Err(e) => {
                    for (i, _) in sent.drain(..) {
                        out[i] = Some(failed(&e));
                    }
                    break;
                }
            };
            let results = self.client.apply_ops(mailbox, &calendar, &graph_ops).await;
            let mut again = Vec::new();
            let mut again_ops = Vec::new();
            for (((i, generation), g), r) in sent.drain(..).zip(graph_ops.drain(..)).zip(results) {
                match r.outcome {
                    Ok(GraphApplied::Created { id, change_key })
                    | Ok(GraphApplied::Updated { id, change_key }) => {
                        out[i] = Some(Outcome::Written {
                            remote_id: id,
                            etag: change_key,
                            sequence: generation,
                        })
                    }
                    Ok(GraphApplied::Deleted) => out[i] = Some(Outcome::Deleted),
                    // Deleted by hand (or with its calendar): create it again, as a new generation.
                    Err(GraphError::NotFound { .. }) | Err(GraphError::CalendarNotFound { .. })
                        if matches!(g, GraphOp::Update { .. }) =>
                    {
                        let GraphOp::Update { key, event, .. } = g else {
                            unreachable!()
                        };
                        tracing::info!(mailbox, key = %key, "graph: event gone from the calendar, creating it again");
                        let generation = generation + 1;
                        again.push((i, generation));
                        again_ops.push(GraphOp::Create {
                            key,
                            generation,
                            event,
                        });
                    }
                    // The calendar was deleted: it is found or made again next round.
                    Err(GraphError::CalendarNotFound { .. }) => {
                        self.client.forget_calendar(mailbox);
                        again.push((i, generation));
                        again_ops.push(g);
                    }
                    Err(e) => out[i] = Some(failed(&e)),
                }
            }
            sent = again;
            graph_ops = again_ops;
        }
        for (i, _) in sent {
            out[i] = Some(Outcome::Failed {
                retryable: true,
                message: format!("Microsoft Graph, mailbox {mailbox}: the edusync calendar kept disappearing while writing; will try again next cycle"),
            });
        }
        out.into_iter()
            .map(|o| {
                o.unwrap_or(Outcome::Failed {
                    retryable: true,
                    message: "not attempted".into(),
                })
            })
            .collect()
    }

    /// The edusync events of `profile` in mailbox `mailbox` that overlap `window`.
    pub async fn list(
        &self,
        mailbox: &str,
        profile: &str,
        window: Range<Timestamp>,
    ) -> Result<Vec<RemoteItem>, TargetError> {
        Ok(self
            .list_found(mailbox, profile, window)
            .await?
            .map(|(_, items)| items)
            .unwrap_or_default())
    }

    /// [`GraphTarget::list`] for drift repair. The calendar's change
    /// marker is its id and the calendar name (the `calendar` setting) it
    /// was found by: with the marker of the current name, the mailbox is
    /// listed without looking the calendar up first, which halves the
    /// requests of a cycle with nothing to do. A stale id (the calendar was
    /// deleted) is looked up again by name.
    pub async fn list_checked(
        &self,
        mailbox: &str,
        profile: &str,
        window: Range<Timestamp>,
        hint: &CalendarHint,
    ) -> Result<Listing, TargetError> {
        let name = &self.client.settings().calendar;
        let stored = hint.marker.as_deref().and_then(|m| parse_marker(m, name));
        if let Some(id) = stored {
            self.client.remember_calendar(mailbox, id);
        }
        let mut found = self.list_found(mailbox, profile, window.clone()).await?;
        if found.is_none() && stored.is_some() {
            // The client has forgotten the stale id: find the calendar by name.
            found = self.list_found(mailbox, profile, window).await?;
        }
        Ok(match found {
            Some((calendar, items)) => Listing {
                items,
                marker: Some(marker(&calendar, name)),
            },
            None => Listing::default(),
        })
    }

    /// The calendar listed and the events in it; `None` when the calendar
    /// went away while being listed (every event in it is gone).
    async fn list_found(
        &self,
        mailbox: &str,
        profile: &str,
        window: Range<Timestamp>,
    ) -> Result<Option<(String, Vec<RemoteItem>)>, TargetError> {
        let calendar = self
            .client
            .ensure_calendar(mailbox)
            .await
            .map_err(|e| self.fail(e.to_string()))?;
        match self.client.list_marked(mailbox, &calendar, window).await {
            Ok(events) => Ok(Some((calendar, Self::items(events, profile)))),
            Err(GraphError::CalendarNotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(e.to_string())),
        }
    }

    fn items(events: Vec<super::RemoteEvent>, profile: &str) -> Vec<RemoteItem> {
        let prefix = format!("{profile}/");
        events
            .into_iter()
            .filter_map(|e| {
                Some(RemoteItem {
                    event_id: e.key.strip_prefix(&prefix)?.to_string(),
                    remote_id: e.id,
                    etag: e.change_key,
                })
            })
            .collect()
    }

    /// Removes every event of `profile` from each mailbox in `mailboxes`,
    /// found by marker whatever its date. A mailbox that does not exist or
    /// has no edusync calendar holds nothing to remove.
    pub async fn cleardown(&self, profile: &str, mailboxes: &[String]) -> Result<u64, TargetError> {
        crate::delivery::sum_per_calendar(mailboxes, 64, |m| async move {
            self.cleardown_mailbox(profile, &m).await
        })
        .await
    }

    async fn cleardown_mailbox(&self, profile: &str, mailbox: &str) -> Result<u64, TargetError> {
        let calendar = match self.client.ensure_calendar(mailbox).await {
            Ok(c) => c,
            Err(GraphError::MailboxUnavailable { .. }) => return Ok(0),
            Err(e) => return Err(self.fail(e.to_string())),
        };
        let events = match self.client.list_marked_all(mailbox, &calendar).await {
            Ok(ev) => ev,
            Err(GraphError::CalendarNotFound { .. }) => return Ok(0),
            Err(e) => return Err(self.fail(e.to_string())),
        };
        let prefix = format!("{profile}/");
        let ops: Vec<GraphOp> = events
            .into_iter()
            .filter(|e| e.key.starts_with(&prefix))
            .map(|e| GraphOp::Delete {
                key: e.key,
                remote_id: e.id,
            })
            .collect();
        if ops.is_empty() {
            return Ok(0);
        }
        let mut removed = 0;
        for r in self.client.apply(mailbox, &calendar, ops).await {
            match r.outcome {
                Ok(_) => removed += 1,
                Err(e) => {
                    return Err(self.fail(format!(
                        "{e} (cleardown stopped in this mailbox; run it again to finish)"
                    )))
                }
            }
        }
        Ok(removed)
    }

    /// Gets a token and reads one mailbox's calendars (`probe`, or the
    /// first mailbox the ledger or source knows). Explains what to fix.
    pub async fn check(&self, probe: Option<&str>) -> Result<String, TargetError> {
        let s = self.client.settings();
        let consent = "in Microsoft Entra admin center, App registrations → this app → API permissions: add the Microsoft Graph *application* permission Calendars.ReadWrite and grant admin consent; if access is scoped with Exchange RBAC for Applications, make sure the mailbox is in the app's management scope";
        if let Err(e) = self.client.token().await {
            let hint = match (&e, &s.credential) {
                (GraphError::Auth {
                    retryable: false, ..
                }, super::GraphCredential::Secret(_)) => "check tenant_id, client_id and the client secret (it may have expired: make a new one under Certificates & secrets)",
                (GraphError::Auth {
                    retryable: false, ..
                }, super::GraphCredential::Certificate(_)) => "check tenant_id, client_id and the certificate (it must be uploaded under Certificates & secrets and not expired)",
                _ => "check authority_url and that this machine can reach it",
            };
            return Err(self.fail(format!("cannot get a token: {e}; {hint}")));
        }
        let Some(mailbox) = probe else {
            return Ok(format!(
                "graph target {}: token issued by {} for tenant {} (no mailbox known yet to probe; run a sync to see per-mailbox results)",
                self.name, s.authority_url, s.tenant_id
            ));
        };
        match self.client.probe_calendars(mailbox).await {
            Ok(n) => Ok(format!(
                "graph target {}: token issued; mailbox {mailbox} readable ({n} calendars)",
                self.name
            )),
            Err(GraphError::Rejected {
                status: 401,
                code,
                message,
                ..
            })
            | Err(GraphError::Rejected {
                status: 403,
                code,
                message,
                ..
            }) => Err(self.fail(format!(
                "mailbox {mailbox}: access denied ({code}: {message}); {consent}"
            ))),
            Err(e @ GraphError::MailboxUnavailable { .. }) => Err(self.fail(format!(
                "{e} (the token works; only this probe mailbox is unusable)"
            ))),
            Err(e) => Err(self.fail(e.to_string())),
        }
    }
}
