//! Several workers on one shared store (PostgreSQL): how `sync` and `serve`
//! processes split a profile's work without doing anything twice. The
//! rules are in `edusync_store::outbox` ("Several workers"); in short:
//!
//! - A cycle runs under the profile's cycle lock ([`acquire`]); a worker
//!   that cannot take it helps instead: it reads the source itself (so it
//!   can render ops it did not plan) and delivers claimed outbox rows until
//!   the lock is free, then runs its own cycle (which finds the work done).
//! - Planning (drift repair, plan, outbox) happens between
//!   `begin_planning` and `end_planning`: no claims meanwhile, and none of
//!   another live worker left over.
//! - Delivery is by claims ([`deliver_claimed`]), batch by batch, by the
//!   planner and its helpers alike.
//!
//! Stores one process uses alone (SQLite) skip all of this.

use std::sync::Arc;
use std::time::Duration;

use edusync_config::Profile;
use edusync_core::plan::{Delete, EntryRef};
use edusync_store::{OpKind as StoreOpKind, Store};
use edusync_targets::Target;
use tracing::info;

use crate::{Desire, Progress, Result};

/// How long a claim lasts before another worker may take it over (a live
/// worker's claims are also returned as soon as its connection is gone).
pub(crate) const LEASE: Duration = Duration::from_secs(120);
/// Ops claimed at once: small enough to share, large enough to keep a
/// target's per-calendar queues busy.
const BATCH: u32 = 500;
/// A failed op is not claimed again by this cycle's workers for this long.
const RETRY_AFTER: Duration = Duration::from_secs(60);

type Targets = Vec<(String, Arc<Target>)>;

/// The profile's cycle lock; gives back the planning and cycle locks when dropped.
pub(crate) struct CycleLock<'a> {
    store: &'a dyn Store,
    profile: String,
}

impl Drop for CycleLock<'_> {
    fn drop(&mut self) {
        let _ = self.store.end_planning(&self.profile);
        let _ = self.store.unlock_profile(&self.profile);
    }
}

/// Takes `profile`'s cycle lock; while another worker holds it, helps
/// deliver that worker's plan.
pub(crate) async fn acquire<'a>(
    profile: &Profile,
    store: &'a dyn Store,
    progress: &mut dyn Progress,
) -> Result<CycleLock<'a>> {
    let mut helping: Option<(Desire, Targets)> = None;
    loop {
        if store.try_lock_profile(&profile.name)? {
            return Ok(CycleLock {
                store,
                profile: profile.name.clone(),
            });
        }
        if helping.is_none() {
            info!(profile = %profile.name, "another worker is running this profile's cycle; helping deliver its plan");
            progress.phase(&profile.name, "helping another worker deliver");
            helping = Some((
                crate::desire(profile, jiff::Timestamp::now())?,
                crate::targets(profile)?,
            ));
        }
        if let Some((desire, targets)) = &helping {
            let r = deliver_claimed(profile, targets, store, desire, progress).await?;
            if r.claimed == 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// What one worker delivered from claimed outbox rows.
#[derive(Default)]
pub(crate) struct Delivered {
    pub claimed: u64,
    pub failed: u64,
    pub retryable: u64,
    pub samples: Vec<String>,
}

/// Claims, renders (from `desire`), delivers and acknowledges batches of
/// pending ops of every target until none is left to claim.
pub(crate) async fn deliver_claimed(
    profile: &Profile,
    targets: &[(String, Arc<Target>)],
    store: &dyn Store,
    desire: &Desire,
    progress: &mut dyn Progress,
) -> Result<Delivered> {
    let mut out = Delivered::default();
    let tt = &desire.tt;
    for (name, target) in targets {
        loop {
            let rows = store.claim(&profile.name, name, BATCH, LEASE)?;
            if rows.is_empty() {
                break;
            }
            out.claimed += rows.len() as u64;
            let run = rows[0].run_id;
            let (mut creates, mut updates, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
            for r in &rows {
                if r.kind == StoreOpKind::Delete {
                    deletes.push(Delete {
                        person_id: r.person_id.clone(),
                        event_id: r.event_id.clone(),
                    });
                    continue;
                }
                // An op whose person or event this worker's snapshot lacks
                // (the source changed between two reads) is released below
                // for a worker that has it, or for the next plan.
                if let (Some(person), Some(event)) =
                    (tt.person_index(&r.person_id), tt.event_index(&r.event_id))
                {
                    let e = EntryRef { person, event };
                    if r.kind == StoreOpKind::Create {
                        creates.push(e);
                    } else {
                        updates.push(e);
                    }
                }
            }
            let attempted = (creates.len() + updates.len() + deletes.len()) as u64;
            let r = crate::apply_target(
                profile, name, target, store, run, desire, &creates, &updates, &deletes, progress,
            )
            .await?;
            // Whatever is still ours is failed or unrenderable: let it go.
            store.release_claims(&profile.name, name, RETRY_AFTER)?;
            let delivered = attempted.saturating_sub(r.failed);
            info!(profile = %profile.name, target = %name, claimed = rows.len(), delivered, "delivered claimed ops");
            out.failed += r.failed;
            out.retryable += r.retryable;
            out.samples.extend(r.samples);
        }
    }
    Ok(out)
}
