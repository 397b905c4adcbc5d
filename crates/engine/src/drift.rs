//! Drift repair: finds edusync events edited or deleted by hand in a
//! calendar and adjusts the ledger so the next plan puts them back
//! (`drift = "restore"`) or leaves them be (`drift = "respect"`).
//!
//! Only the ledger changes here; the plan that follows does the writing, so
//! drift repair goes through the same outbox, guard and delivery as any
//! other change.
//!
//! An event deleted by hand is restored by keeping its row with no
//! `remote_id`, a fingerprint no content has and `sequence + 1`: the plan
//! rewrites it, and targets that de-duplicate creates by a key (Graph's
//! `transactionId`, derived from the sequence) create it as a new
//! generation instead of being answered with the deleted one.
//!
//! People are checked in timetable order, a few calendars at a time, each
//! from its own ledger rows, and changes are written as they accumulate,
//! so memory does not grow with the ledger. Calendars are listed a few at a time; a calendar that cannot be listed
//! (a mailbox gone, a timeout) is skipped with a warning, and checked again
//! next cycle: drift repair never stops a cycle.
//!
//! Targets with change markers (CalDAV: ctag and sync-token; Google: the
//! calendar's id and sync token) hand one back
//! with each listing; it is stored (`Store::set_calendar_markers`) only
//! after the ledger changes of this check up to that calendar are
//! committed, and passed back next time, so an unchanged calendar costs
//! one small request and a changed one is listed and compared. The engine
//! runs the check again after applying, for the people it wrote to, so
//! their markers describe the calendars with edusync's own writes in them.

use std::collections::{BTreeMap, HashMap};

use futures_util::stream::{self, StreamExt};

use edusync_config::{DriftMode, Profile};
use edusync_core::timetable::Person;
use edusync_core::window::Window;
use edusync_store::{LedgerEntry, Store};
use edusync_targets::Target;
use tracing::{info, warn};

use crate::Result;

/// Ledger changes written per call to the store, so memory stays bounded
/// however large the profile is.
const FLUSH_EVERY: usize = 10_000;

/// Checks the calendars of `people` (the timetable's, in order), one
/// person's ledger rows at a time, so a 5M-row ledger is never held whole.
pub async fn reconcile(
    profile: &Profile,
    target_name: &str,
    target: &Target,
    store: &dyn Store,
    window: &Window,
    people: &[Person],
) -> Result<()> {
    // Each person's rows in the window, by the calendar they were written to
    // (one, unless the person's address changed).
    let calendars = people.iter().flat_map(|p| {
        let rows = match store.ledger_for_person(&profile.name, &p.id) {
            Ok(rows) => rows,
            Err(e) => return vec![Err(e)],
        };
        let mut by_calendar: BTreeMap<String, Vec<LedgerEntry>> = BTreeMap::new();
        for (t, l) in rows {
            if t == target_name && window.contains_secs(l.starts_at) {
                by_calendar.entry(l.calendar.clone()).or_default().push(l);
            }
        }
        by_calendar.into_iter().map(Ok).collect()
    });
    let markers: HashMap<String, String> = store
        .calendar_markers(&profile.name, target_name)?
        .into_iter()
        .collect();
    let markers = &markers;
    let mut new_markers: Vec<(String, Option<String>)> = Vec::new();
    let mut changes = Vec::new();
    let (mut edited, mut deleted) = (0u64, 0u64);
    let concurrency = target.calendar_concurrency().clamp(1, 32);
    let mut listed = stream::iter(calendars)
        .map(|calendar| async move {
            let (calendar, rows) = calendar?;
            // What the ledger knows lets CalDAV answer from ETags alone, or
            // from the ledger when the calendar's marker is unchanged.
            let marker = markers.get(&calendar).cloned();
            let hint = edusync_targets::CalendarHint {
                person_id: rows.first().map(|l| l.person_id.clone()),
                items: rows
                    .iter()
                    .filter_map(|l| l.remote_id.clone().map(|r| (r, l.event_id.clone())))
                    .collect(),
                etags: rows
                    .iter()
                    .filter_map(|l| Some((l.remote_id.clone()?, l.etag.clone()?)))
                    .collect(),
                marker: marker.clone(),
            };
            let r = target
                .list_known(&calendar, &profile.name, window, &hint)
                .await;
            Ok::<_, edusync_store::StoreError>((calendar, rows, marker, r))
        })
        .buffer_unordered(concurrency);
    while let Some(item) = listed.next().await {
        let (calendar, rows, marker, listing) = item?;
        let remote: HashMap<String, edusync_targets::RemoteItem> = match listing {
            Ok(listing) => {
                if listing.marker != marker {
                    new_markers.push((calendar.clone(), listing.marker));
                }
                listing
                    .items
                    .into_iter()
                    .map(|r| (r.event_id.clone(), r))
                    .collect()
            }
            Err(e) => {
                warn!(profile = %profile.name, target = target_name, calendar = %calendar, error = %e, "drift check skipped for this calendar");
                continue;
            }
        };
        for l in rows {
            if l.gone {
                continue;
            }
            match remote.get(&l.event_id) {
                // Already waiting to be created again.
                None if l.remote_id.is_none() => {}
                None => {
                    deleted += 1;
                    match profile.drift {
                        DriftMode::Restore => changes.push((
                            l.person_id.clone(),
                            l.event_id.clone(),
                            Some(LedgerEntry {
                                fingerprint: 0,
                                remote_id: None,
                                etag: None,
                                sequence: l.sequence + 1,
                                ..l
                            }),
                        )),
                        _ => changes.push((
                            l.person_id.clone(),
                            l.event_id.clone(),
                            Some(LedgerEntry { gone: true, ..l }),
                        )),
                    }
                }
                Some(item) if item.etag.is_some() && item.etag != l.etag => {
                    edited += 1;
                    let entry = match profile.drift {
                        // A fingerprint no content has: the next plan rewrites it.
                        DriftMode::Restore => LedgerEntry {
                            fingerprint: 0,
                            ..l
                        },
                        _ => LedgerEntry {
                            etag: item.etag.clone(),
                            ..l
                        },
                    };
                    changes.push((entry.person_id.clone(), entry.event_id.clone(), Some(entry)));
                }
                Some(_) => {}
            }
        }
        if changes.len() >= FLUSH_EVERY || new_markers.len() >= FLUSH_EVERY {
            store.reconcile_ledger(&profile.name, target_name, &std::mem::take(&mut changes))?;
            // Only now do these markers describe calendars the ledger agrees with.
            store.set_calendar_markers(
                &profile.name,
                target_name,
                &std::mem::take(&mut new_markers),
            )?;
        }
    }
    if !changes.is_empty() {
        store.reconcile_ledger(&profile.name, target_name, &changes)?;
    }
    if !new_markers.is_empty() {
        store.set_calendar_markers(&profile.name, target_name, &new_markers)?;
    }
    if edited + deleted > 0 {
        info!(profile = %profile.name, target = target_name, edited, deleted, "events changed by hand found");
    }
    Ok(())
}
