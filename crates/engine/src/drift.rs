//! Drift repair: finds edusync events edited or deleted by hand in a
//! calendar and adjusts the ledger so the next plan puts them back
//! (`drift = "restore"`) or leaves them be (`drift = "respect"`).
//!
//! Only the ledger changes here; the plan that follows does the writing, so
//! drift repair goes through the same outbox, guard and delivery as any
//! other change.

use std::collections::{BTreeMap, HashMap};

use edusync_config::{DriftMode, Profile};
use edusync_core::window::Window;
use edusync_store::{LedgerEntry, Store};
use edusync_targets::Target;
use tracing::info;

use crate::Result;

pub async fn reconcile(
    profile: &Profile,
    target_name: &str,
    target: &Target,
    store: &dyn Store,
    window: &Window,
) -> Result<()> {
    let mut by_calendar: BTreeMap<String, Vec<LedgerEntry>> = BTreeMap::new();
    for l in store.ledger_all(&profile.name, target_name)? {
        if window.contains_secs(l.starts_at) {
            by_calendar.entry(l.calendar.clone()).or_default().push(l);
        }
    }
    let mut changes = Vec::new();
    let (mut edited, mut deleted) = (0u64, 0u64);
    for (calendar, rows) in by_calendar {
        let remote: HashMap<String, edusync_targets::RemoteItem> = target
            .list(&calendar, &profile.name)
            .await?
            .into_iter()
            .map(|r| (r.event_id.clone(), r))
            .collect();
        for l in rows {
            if l.gone {
                continue;
            }
            match remote.get(&l.event_id) {
                None => {
                    deleted += 1;
                    match profile.drift {
                        DriftMode::Restore => {
                            changes.push((l.person_id.clone(), l.event_id.clone(), None))
                        }
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
    }
    if !changes.is_empty() {
        info!(profile = %profile.name, target = target_name, edited, deleted, "events changed by hand found");
        store.reconcile_ledger(&profile.name, target_name, &changes)?;
    }
    Ok(())
}
