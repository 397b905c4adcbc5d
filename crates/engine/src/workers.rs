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
//! - Delivery is by claims ([`deliver_claimed`]), by the planner and its
//!   helpers alike; a worker keeps several claims in flight so the target
//!   stays busy, each claim of whole people.
//!
//! Stores one process uses alone (SQLite) skip all of this.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edusync_config::Profile;
use edusync_core::plan::{Delete, EntryRef};
use edusync_store::{OpKind as StoreOpKind, OutboxRow, Store};
use edusync_targets::Target;
use futures_util::stream::{FuturesUnordered, StreamExt};
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
///
/// A worker keeps a target busy: while earlier claims are being delivered
/// it claims the next ones, up to [`CLAIMS_IN_FLIGHT`] claims and the
/// target's [`Target::calendar_concurrency`] calendars (people) at once.
/// Each claim goes through the shared delivery loop on its own, is
/// acknowledged calendar by calendar, and is let go as soon as it is done;
/// the leases of the claims still in flight are renewed every
/// [`RENEW_EVERY`]. An op this call already tried and let go (failed,
/// after the delivery loop's own bounded retries) is not sent again by it:
/// it stays pending for another worker or the next cycle.
pub(crate) async fn deliver_claimed(
    profile: &Profile,
    targets: &[(String, Arc<Target>)],
    store: &dyn Store,
    desire: &Desire,
    progress: &mut dyn Progress,
) -> Result<Delivered> {
    let mut out = Delivered::default();
    let progress = Mutex::new(progress);
    for (name, target) in targets {
        let r = deliver_target(profile, name, target, store, desire, &progress, &mut out).await;
        if r.is_err() {
            // The claims still in flight were dropped with their requests:
            // let them go for another worker (what was sent but not
            // acknowledged is replayed harmlessly, outbox constraint 3).
            let _ = store.release_claims(&profile.name, name, RETRY_AFTER);
        }
        r?;
    }
    Ok(out)
}

/// Claims of one target one worker delivers at once, at most.
const CLAIMS_IN_FLIGHT: usize = 64;
/// How often a worker renews the leases of the claims it is delivering
/// (well within [`LEASE`]).
const RENEW_EVERY: Duration = Duration::from_secs(30);

/// [`deliver_claimed`] for one target.
async fn deliver_target(
    profile: &Profile,
    name: &str,
    target: &Target,
    store: &dyn Store,
    desire: &Desire,
    progress: &Mutex<&mut dyn Progress>,
    out: &mut Delivered,
) -> Result<()> {
    let cap = target.calendar_concurrency().max(1);
    let mut in_flight = FuturesUnordered::new();
    // People (calendars) in the claims being delivered.
    let mut calendars = 0usize;
    // Ops this call let go after trying them: not sent again by it.
    let mut tried: HashSet<(String, String)> = HashSet::new();
    let mut more = true;
    let mut renew =
        tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        while more && in_flight.len() < CLAIMS_IN_FLIGHT && calendars < cap {
            let rows = store.claim(&profile.name, name, BATCH, LEASE)?;
            if rows.is_empty() {
                more = false;
                break;
            }
            out.claimed += rows.len() as u64;
            let mut people: Vec<String> = rows.iter().map(|r| r.person_id.clone()).collect();
            people.dedup();
            let claimed = rows.len();
            let fresh: Vec<OutboxRow> = rows
                .into_iter()
                .filter(|r| !tried.contains(&(r.person_id.clone(), r.event_id.clone())))
                .collect();
            if fresh.is_empty() {
                // Only ops this call already tried came back (their retry
                // delay ran out): let them go again, untouched.
                store.release_claims_of(&profile.name, name, &people, RETRY_AFTER)?;
                continue;
            }
            let limit = cap - calendars;
            calendars += people.len();
            in_flight.push(deliver_claim(
                profile, name, target, store, desire, fresh, claimed, people, limit, progress,
            ));
        }
        if in_flight.is_empty() {
            return Ok(());
        }
        tokio::select! {
            done = in_flight.next() => {
                let Some(done) = done else { continue };
                let d = done?;
                calendars -= d.people;
                tried.extend(d.let_go);
                out.failed += d.result.failed;
                out.retryable += d.result.retryable;
                out.samples.extend(d.result.samples);
            }
            _ = renew.tick() => {
                store.renew_claims(&profile.name, name, LEASE)?;
            }
        }
    }
}

/// One claim, delivered.
struct Finished {
    /// People (calendars) the claim held.
    people: usize,
    /// Ops let go undelivered (failed, or not in this worker's snapshot).
    let_go: Vec<(String, String)>,
    result: crate::ApplyResult,
}

/// Renders, delivers and acknowledges one claim's `rows` (of `claimed`
/// claimed; the rest were tried before), then lets go of what is left of
/// its `people`.
#[allow(clippy::too_many_arguments)]
async fn deliver_claim(
    profile: &Profile,
    name: &str,
    target: &Target,
    store: &dyn Store,
    desire: &Desire,
    rows: Vec<OutboxRow>,
    claimed: usize,
    people: Vec<String>,
    calendar_limit: usize,
    progress: &Mutex<&mut dyn Progress>,
) -> Result<Finished> {
    let tt = &desire.tt;
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
        // An op whose person or event this worker's snapshot lacks (the
        // source changed between two reads) is released below for a worker
        // that has it, or for the next plan.
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
    let result = crate::apply_target(
        profile,
        name,
        target,
        store,
        run,
        desire,
        &creates,
        &updates,
        &deletes,
        Some(calendar_limit),
        &mut SharedProgress(progress),
    )
    .await?;
    // Whatever of these people is still ours is failed, unrenderable or
    // tried before: let it go (the claims still in flight stay ours).
    let let_go = store.release_claims_of(&profile.name, name, &people, RETRY_AFTER)?;
    let delivered = attempted.saturating_sub(result.failed);
    info!(profile = %profile.name, target = %name, claimed, delivered, "delivered claimed ops");
    Ok(Finished {
        people: people.len(),
        let_go,
        result,
    })
}

/// One worker's progress, reported by the claims it delivers at once.
struct SharedProgress<'a, 'b>(&'a Mutex<&'b mut dyn Progress>);

impl SharedProgress<'_, '_> {
    fn with(&self, f: impl FnOnce(&mut dyn Progress)) {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut **p);
    }
}

impl Progress for SharedProgress<'_, '_> {
    fn phase(&mut self, profile: &str, what: &str) {
        self.with(|p| p.phase(profile, what));
    }
    fn total(&mut self, ops: u64) {
        self.with(|p| p.total(ops));
    }
    fn advance(&mut self, ops: u64) {
        self.with(|p| p.advance(ops));
    }
}
