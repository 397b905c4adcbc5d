//! One sync cycle, start to end: read the source → validate → expand →
//! plan per target → guard → outbox → deliver → record the run.
//!
//! Both the CLI (`plan`, `sync`, `approve`, `cleardown`) and the scheduler
//! under `serve` call these functions; neither holds cycle logic of its own.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use edusync_config::{CancelledMode, Config, DriftMode, Profile, TargetKind};
use edusync_core::expand::Attendance;
use edusync_core::fingerprint::Fingerprints;
use edusync_core::guard::{self, GuardInput, Verdict};
use edusync_core::plan::{Counts, Desired, EntryRef, Plan, Planner};
use edusync_core::render::{RenderSettings, Renderer};
use edusync_core::timetable::{EventStatus, Quarantined, Rules, Timetable};
use edusync_core::window::Window;
use edusync_store::{
    Ack, LedgerEntry, OpError, OpKind as StoreOpKind, OpState, OutboxOp, QuarantineRecord, RunId,
    RunKind, RunOutcome, RunStatus, Store,
};
use edusync_targets::delivery::{deliver, CalendarWork, DeliveryOptions};
use edusync_targets::{CalendarOp, OpKind, Outcome, Prior, Target};
use serde::Serialize;
use tracing::{info, warn};

pub mod drift;
mod workers;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Source(#[from] edusync_sources::SourceError),
    #[error(transparent)]
    Store(#[from] edusync_store::StoreError),
    #[error(transparent)]
    Render(#[from] edusync_core::render::RenderError),
    #[error(transparent)]
    Plan(#[from] edusync_core::plan::PlanError),
    #[error(transparent)]
    Target(#[from] edusync_targets::TargetError),
    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Builds the targets of a profile from its config.
pub fn targets(profile: &Profile) -> Result<Vec<(String, Arc<Target>)>> {
    profile
        .targets
        .iter()
        .map(|t| {
            let target = match &t.kind {
                TargetKind::Vdir(v) => Target::Vdir(edusync_targets::vdir::VdirTarget::new(
                    &t.name,
                    v.path.clone(),
                )),
                TargetKind::Graph(g) => Target::Graph(graph_target(profile, &t.name, g)?),
                TargetKind::Caldav(c) => Target::Caldav(caldav_target(profile, &t.name, c)?),
                TargetKind::Google(g) => Target::Google(google_target(profile, &t.name, g)?),
            };
            Ok((t.name.clone(), Arc::new(target)))
        })
        .collect()
}

/// The `graph` target of a profile; the client secret (or the certificate
/// file's path) is read from its `_env` variable now.
fn graph_target(
    profile: &Profile,
    name: &str,
    g: &edusync_config::GraphConfig,
) -> Result<edusync_targets::graph::GraphTarget> {
    use edusync_config::GraphCredentialConfig;
    use edusync_targets::graph::GraphCredential;
    let usage =
        |e: String| EngineError::Usage(format!("profile {:?}: target {name:?}: {e}", profile.name));
    let value = g
        .credential
        .env()
        .read()
        .map_err(|e| usage(e.to_string()))?;
    let credential = match &g.credential {
        GraphCredentialConfig::Secret(_) => GraphCredential::Secret(value),
        GraphCredentialConfig::Certificate(env) => {
            GraphCredential::certificate_file(std::path::Path::new(&value), &env.var)
                .map_err(usage)?
        }
    };
    Ok(edusync_targets::graph::GraphTarget::from_settings(
        name,
        edusync_targets::graph::GraphSettings {
            authority_url: g.authority_url.clone(),
            graph_url: g.graph_url.clone(),
            tenant_id: g.tenant_id.clone(),
            client_id: g.client_id.clone(),
            credential,
            calendar: g.calendar.clone(),
        },
    ))
}

/// The `google` target of a profile; the service account's key file is
/// read now, from the path in its `credentials_file_env` variable.
fn google_target(
    profile: &Profile,
    name: &str,
    g: &edusync_config::GoogleConfig,
) -> Result<edusync_targets::google::GoogleTarget> {
    let usage =
        |e: String| EngineError::Usage(format!("profile {:?}: target {name:?}: {e}", profile.name));
    let path = g.credentials_file_env.read().map_err(|e| {
        usage(format!(
            "{e} (it must hold the path of the Google service account's JSON key file)"
        ))
    })?;
    let key = edusync_targets::google::ServiceAccountKey::from_file(
        std::path::Path::new(&path),
        &g.credentials_file_env.var,
    )
    .map_err(usage)?;
    Ok(edusync_targets::google::GoogleTarget::from_settings(
        name,
        edusync_targets::google::GoogleSettings {
            token_url: g.token_url.clone(),
            api_url: g.api_url.clone(),
            calendar: g.calendar.clone(),
            key: Arc::new(key),
        },
    ))
}

/// The `caldav` target of a profile; the password is read from its `_env` variable now.
fn caldav_target(
    profile: &Profile,
    name: &str,
    c: &edusync_config::CaldavConfig,
) -> Result<edusync_targets::caldav::CaldavTarget> {
    let password = match &c.password_env {
        Some(env) => Some(env.read().map_err(|e| {
            EngineError::Usage(format!("profile {:?}: target {name:?}: {e}", profile.name))
        })?),
        None => None,
    };
    edusync_targets::caldav::CaldavTarget::new(
        name,
        edusync_targets::caldav::CaldavSettings {
            calendar_url: c.calendar_url.clone(),
            username: c.username.clone(),
            password,
        },
    )
    .map_err(|e| EngineError::Usage(format!("profile {:?}: {e}", profile.name)))
}

/// The email and id of the person whose calendar `check` probes: the one
/// with the first email in the source (or, when nobody has one, the first
/// id, for CalDAV `{person_id}` templates).
pub fn probe_person(profile: &Profile) -> (Option<String>, Option<String>) {
    let Ok(raw) = edusync_sources::read_source(&profile.source) else {
        return (None, None);
    };
    let with_email = raw
        .people
        .iter()
        .filter_map(|p| {
            let email = p.email.as_deref()?.trim().to_lowercase();
            let id = p.person_id.as_deref()?.trim();
            (email.contains('@') && !id.is_empty()).then(|| (email, id.to_string()))
        })
        .min();
    match with_email {
        Some((email, id)) => (Some(email), Some(id)),
        None => (
            None,
            raw.people
                .iter()
                .filter_map(|p| p.person_id.as_deref().map(str::trim))
                .filter(|id| !id.is_empty())
                .min()
                .map(str::to_string),
        ),
    }
}

/// One person's calendar of `profile` to probe in `check` (targets like
/// Graph prove access per mailbox): the first person with an email in the source.
pub fn probe_calendar(profile: &Profile) -> Option<String> {
    let raw = edusync_sources::read_source(&profile.source).ok()?;
    raw.people
        .into_iter()
        .filter_map(|p| p.email)
        .map(|e| e.trim().to_lowercase())
        .filter(|e| e.contains('@'))
        .min()
}

pub fn renderer(profile: &Profile) -> Result<Renderer> {
    Ok(Renderer::new(RenderSettings {
        profile: profile.name.clone(),
        categories: profile.categories.clone(),
        keep_cancelled: profile.cancelled == CancelledMode::Mark,
        subject_template: profile.templates.subject.clone(),
        location_template: profile.templates.location.clone(),
        body_template: profile.templates.body.clone(),
    })?)
}

/// What calendars must hold, computed from one read of the source.
pub struct Desire {
    pub tt: Timetable,
    pub attendance: Attendance,
    pub fingerprints: Fingerprints,
    pub renderer: Renderer,
    pub window: Window,
    pub pilot: Option<HashSet<String>>,
}

impl Desire {
    pub fn desired(&self) -> Desired<'_> {
        Desired {
            tt: &self.tt,
            attendance: &self.attendance,
            fingerprints: &self.fingerprints,
            window: self.window,
            pilot: self.pilot.as_ref(),
        }
    }
}

/// Reads the source of `profile` and works out what every calendar must hold.
pub fn desire(profile: &Profile, now: jiff::Timestamp) -> Result<Desire> {
    let raw = edusync_sources::read_source(&profile.source)?;
    let tt = Timetable::build(
        raw,
        &Rules {
            timezone: profile.timezone.clone(),
            max_event_hours: profile.max_event_hours,
        },
    );
    let keep_cancelled = profile.cancelled == CancelledMode::Mark;
    let attendance = Attendance::expand(&tt, |e| {
        keep_cancelled || tt.events[e as usize].status != EventStatus::Cancelled
    });
    let renderer = renderer(profile)?;
    let fingerprints = Fingerprints::compute(&tt, renderer.salt());
    let pilot = if profile.pilot.is_empty() {
        None
    } else {
        Some(
            profile
                .pilot
                .iter()
                .map(|p| match tt.find_person(p) {
                    Some(i) => tt.people[i as usize].id.clone(),
                    None => p.clone(),
                })
                .collect(),
        )
    };
    Ok(Desire {
        window: Window::around(now, profile.window.past_days, profile.window.future_days),
        tt,
        attendance,
        fingerprints,
        renderer,
        pilot,
    })
}

/// A whole profile's plan.
pub struct ProfilePlan {
    pub desire: Desire,
    pub targets: Vec<(String, Plan)>,
    pub counts: Counts,
    pub synced: u64,
    pub verdict: Verdict,
}

impl ProfilePlan {
    pub fn quarantined(&self) -> &[Quarantined] {
        &self.desire.tt.quarantine
    }
}

/// Plans every target of `profile` against the ledger (no writes anywhere).
pub fn plan(profile: &Profile, store: &dyn Store, now: jiff::Timestamp) -> Result<ProfilePlan> {
    let desire = desire(profile, now)?;
    plan_with(profile, store, desire)
}

pub fn plan_with(profile: &Profile, store: &dyn Store, desire: Desire) -> Result<ProfilePlan> {
    let mut targets = Vec::new();
    let mut counts = Counts::default();
    let mut synced = 0;
    {
        let d = desire.desired();
        for t in &profile.targets {
            let mut planner = Planner::new(&d);
            store.scan_ledger(&profile.name, &t.name, &mut |row| planner.feed(row))?;
            let plan = planner.finish()?;
            counts.add(&plan.counts());
            synced += plan.ledger_rows;
            targets.push((t.name.clone(), plan));
        }
    }
    let verdict = guard::assess(GuardInput {
        deletes: counts.delete,
        synced,
        source_events: desire.tt.events.len(),
        source_people: desire.tt.people.len(),
        max_delete_percent: profile.guard.max_delete_percent,
    });
    Ok(ProfilePlan {
        desire,
        targets,
        counts,
        synced,
        verdict,
    })
}

/// The result of one cycle, as `sync --format json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub profile: String,
    pub run_id: RunId,
    pub status: &'static str,
    pub create: u64,
    pub update: u64,
    pub delete: u64,
    pub unchanged: u64,
    pub quarantined: u64,
    pub left_alone: u64,
    pub held_deletes: u64,
    pub failed_ops: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A few of the per-operation errors, for the summary.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl CycleReport {
    /// The report of a cycle that failed with `error`; `run_id` is the run
    /// it recorded, 0 when it failed before recording one.
    pub fn failed(profile: &str, run_id: RunId, error: String) -> CycleReport {
        CycleReport {
            profile: profile.to_string(),
            run_id,
            status: "failed",
            create: 0,
            update: 0,
            delete: 0,
            unchanged: 0,
            quarantined: 0,
            left_alone: 0,
            held_deletes: 0,
            failed_ops: 0,
            hold_reason: None,
            error: Some(error),
            errors: Vec::new(),
        }
    }
}

/// Progress callbacks, so the CLI can draw a bar and the server can count.
pub trait Progress: Send {
    fn phase(&mut self, _profile: &str, _what: &str) {}
    fn total(&mut self, _ops: u64) {}
    fn advance(&mut self, _ops: u64) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

/// Runs one sync cycle of `profile`.
pub async fn sync(
    config: &Config,
    profile: &Profile,
    store: &dyn Store,
    progress: &mut dyn Progress,
) -> Result<CycleReport> {
    Ok(sync_keeping_desire(config, profile, store, progress)
        .await?
        .0)
}

/// [`sync`], also handing back what the cycle computed calendars must hold
/// (`None` when the cycle failed before reading the source), so `serve` can
/// publish feeds from it without reading the source a second time.
pub async fn sync_keeping_desire(
    config: &Config,
    profile: &Profile,
    store: &dyn Store,
    progress: &mut dyn Progress,
) -> Result<(CycleReport, Option<Desire>)> {
    // Several workers on one store: one cycle per profile at a time (see workers.rs).
    let _cycle = match store.shared() {
        true => Some(workers::acquire(profile, store, progress).await?),
        false => None,
    };
    let run = store.start_run(&profile.name, RunKind::Sync)?;
    match sync_run(config, profile, store, run, progress).await {
        Ok((r, d)) => Ok((r, Some(d))),
        Err(e) => {
            let msg = e.to_string();
            warn!(profile = %profile.name, run, error = %msg, "cycle failed");
            store.finish_run(
                run,
                RunStatus::Failed,
                &RunOutcome {
                    message: Some(msg.clone()),
                    ..Default::default()
                },
            )?;
            Ok((CycleReport::failed(&profile.name, run, msg), None))
        }
    }
}

async fn sync_run(
    _config: &Config,
    profile: &Profile,
    store: &dyn Store,
    run: RunId,
    progress: &mut dyn Progress,
) -> Result<(CycleReport, Desire)> {
    progress.phase(&profile.name, "reading source");
    let now = jiff::Timestamp::now();
    let desire = desire(profile, now)?;
    let quarantine: Vec<QuarantineRecord> = desire
        .tt
        .quarantine
        .iter()
        .take(10_000)
        .map(|q| QuarantineRecord {
            view: q.view.clone(),
            row: q.row.clone(),
            reason: q.reason.clone(),
        })
        .collect();
    store.record_quarantine(run, &quarantine)?;
    let targets = targets(profile)?;
    store.begin_planning(&profile.name, workers::LEASE)?;
    if profile.drift != DriftMode::Off {
        progress.phase(&profile.name, "checking calendars for changes made by hand");
        for (name, target) in &targets {
            drift::reconcile(
                profile,
                name,
                target,
                store,
                &desire.window,
                &desire.tt.people,
            )
            .await?;
        }
    }
    progress.phase(&profile.name, "planning");
    let plan = plan_with(profile, store, desire)?;
    let hold = match &plan.verdict {
        Verdict::Apply => None,
        Verdict::Hold { reason } => Some(reason.clone()),
    };
    // Written before sent (see edusync_store::outbox).
    for (name, p) in &plan.targets {
        let tt = &plan.desire.tt;
        let fps = &plan.desire.fingerprints;
        let state = if hold.is_some() {
            OpState::Held
        } else {
            OpState::Pending
        };
        let mut ops = p
            .creates
            .iter()
            .map(|e| (StoreOpKind::Create, *e))
            .chain(p.updates.iter().map(|e| (StoreOpKind::Update, *e)))
            .map(|(kind, e)| OutboxOp {
                person_id: tt.people[e.person as usize].id.clone(),
                event_id: tt.events[e.event as usize].id.clone(),
                kind,
                state: OpState::Pending,
                fingerprint: fps.entry(tt, e.person, e.event),
            })
            .chain(p.deletes.iter().map(|d| OutboxOp {
                person_id: d.person_id.clone(),
                event_id: d.event_id.clone(),
                kind: StoreOpKind::Delete,
                state,
                fingerprint: 0,
            }));
        store.replace_outbox(run, &profile.name, name, &mut ops)?;
    }
    store.end_planning(&profile.name)?;
    let total: u64 = plan
        .targets
        .iter()
        .map(|(_, p)| {
            (p.creates.len() + p.updates.len() + if hold.is_some() { 0 } else { p.deletes.len() })
                as u64
        })
        .sum();
    progress.total(total);
    progress.phase(&profile.name, "applying");
    let mut failed_ops = 0u64;
    let mut retryable_left = 0u64;
    let mut errors = Vec::new();
    if store.shared() {
        // Delivered by claims, shared with helping workers; then wait for theirs.
        let r = workers::deliver_claimed(profile, &targets, store, &plan.desire, progress).await?;
        store.begin_planning(&profile.name, workers::LEASE)?;
        store.end_planning(&profile.name)?;
        failed_ops += r.failed;
        retryable_left += r.retryable;
        errors.extend(r.samples);
    }
    for (name, target) in targets.iter().filter(|_| !store.shared()) {
        let Some((_, p)) = plan.targets.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let deletes: &[edusync_core::plan::Delete] = if hold.is_some() { &[] } else { &p.deletes };
        let r = apply_target(
            profile,
            name,
            target,
            store,
            run,
            &plan.desire,
            &p.creates,
            &p.updates,
            deletes,
            None,
            progress,
        )
        .await?;
        failed_ops += r.failed;
        retryable_left += r.retryable;
        errors.extend(r.samples);
    }
    if profile.drift != DriftMode::Off {
        // Check again the calendars just written to, so their stored change
        // markers include edusync's own writes and the next cycle can skip
        // them (see drift.rs). A failure here only costs that skip.
        for (name, target) in targets.iter().filter(|(_, t)| t.keeps_change_markers()) {
            let Some((_, p)) = plan.targets.iter().find(|(n, _)| n == name) else {
                continue;
            };
            let tt = &plan.desire.tt;
            let mut touched: std::collections::HashSet<&str> = p
                .creates
                .iter()
                .chain(p.updates.iter())
                .map(|e| tt.people[e.person as usize].id.as_str())
                .collect();
            if hold.is_none() {
                touched.extend(p.deletes.iter().map(|d| d.person_id.as_str()));
            }
            if touched.is_empty() {
                continue;
            }
            let people: Vec<edusync_core::timetable::Person> = tt
                .people
                .iter()
                .filter(|x| touched.contains(x.id.as_str()))
                .cloned()
                .collect();
            if let Err(e) =
                drift::reconcile(profile, name, target, store, &plan.desire.window, &people).await
            {
                warn!(profile = %profile.name, target = %name, error = %e, "calendars written to could not be checked again; the next cycle lists them");
            }
        }
    }
    let held_deletes = if hold.is_some() {
        plan.counts.delete
    } else {
        0
    };
    let status = if retryable_left > 0 {
        RunStatus::Failed
    } else if hold.is_some() {
        RunStatus::Held
    } else {
        RunStatus::Applied
    };
    let message = (retryable_left > 0).then(|| {
        format!("{retryable_left} operations could not be applied yet (the target did not accept them after retries); they stay pending for the next cycle")
    });
    store.finish_run(
        run,
        status,
        &RunOutcome {
            counts: plan.counts,
            quarantined: plan.quarantined().len() as u64,
            failed_ops,
            hold_reason: hold.clone(),
            message: message.clone(),
        },
    )?;
    info!(
        profile = %profile.name,
        run,
        status = status.as_str(),
        created = plan.counts.create,
        updated = plan.counts.update,
        deleted = plan.counts.delete,
        unchanged = plan.counts.unchanged,
        quarantined = plan.quarantined().len(),
        failed_ops,
        "cycle finished"
    );
    let report = CycleReport {
        profile: profile.name.clone(),
        run_id: run,
        status: status.as_str(),
        create: plan.counts.create,
        update: plan.counts.update,
        delete: plan.counts.delete,
        unchanged: plan.counts.unchanged,
        quarantined: plan.quarantined().len() as u64,
        left_alone: plan.counts.left_alone,
        held_deletes,
        failed_ops,
        hold_reason: hold,
        error: message,
        errors,
    };
    Ok((report, plan.desire))
}

struct ApplyResult {
    failed: u64,
    retryable: u64,
    samples: Vec<String>,
}

/// Renders, delivers and acknowledges one target's ops.
#[allow(clippy::too_many_arguments)]
async fn apply_target(
    profile: &Profile,
    target_name: &str,
    target: &Target,
    store: &dyn Store,
    run: RunId,
    desire: &Desire,
    creates: &[EntryRef],
    updates: &[EntryRef],
    deletes: &[edusync_core::plan::Delete],
    calendar_limit: Option<usize>,
    progress: &mut dyn Progress,
) -> Result<ApplyResult> {
    let tt = &desire.tt;
    let mut by_calendar: BTreeMap<String, Vec<CalendarOp>> = BTreeMap::new();
    let mut failures: Vec<OpError> = Vec::new();
    let mut fingerprints: std::collections::HashMap<(String, String), (u64, i64)> =
        Default::default();

    // Priors for updates and deletes come from the ledger.
    let mut prior_keys: Vec<(String, String)> = updates
        .iter()
        .map(|e| {
            (
                tt.people[e.person as usize].id.clone(),
                tt.events[e.event as usize].id.clone(),
            )
        })
        .collect();
    prior_keys.extend(
        deletes
            .iter()
            .map(|d| (d.person_id.clone(), d.event_id.clone())),
    );
    // Creates may also have a ledger row (re-created after being deleted by hand).
    prior_keys.extend(creates.iter().map(|e| {
        (
            tt.people[e.person as usize].id.clone(),
            tt.events[e.event as usize].id.clone(),
        )
    }));
    let priors = store.ledger_entries(&profile.name, target_name, &prior_keys)?;
    let prior_of: std::collections::HashMap<(String, String), LedgerEntry> = prior_keys
        .into_iter()
        .zip(priors)
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let to_prior = |l: &LedgerEntry| Prior {
        calendar: l.calendar.clone(),
        remote_id: l.remote_id.clone(),
        etag: l.etag.clone(),
        sequence: l.sequence,
    };

    for (kind, e) in creates
        .iter()
        .map(|e| (OpKind::Create, e))
        .chain(updates.iter().map(|e| (OpKind::Update, e)))
    {
        let person = &tt.people[e.person as usize];
        let event = &tt.events[e.event as usize];
        let key = (person.id.clone(), event.id.clone());
        match desire.renderer.render(tt, e.person, e.event) {
            Ok(rendered) => {
                fingerprints.insert(
                    key.clone(),
                    (
                        desire.fingerprints.entry(tt, e.person, e.event),
                        event.start.as_second(),
                    ),
                );
                let prior = prior_of.get(&key).map(to_prior);
                by_calendar
                    .entry(person.email.clone())
                    .or_default()
                    .push(CalendarOp {
                        kind: if prior.is_some() {
                            OpKind::Update
                        } else {
                            kind
                        },
                        profile: profile.name.clone(),
                        person_id: person.id.clone(),
                        event_id: event.id.clone(),
                        calendar: person.email.clone(),
                        event: Some(rendered),
                        prior,
                    });
            }
            Err(err) => failures.push(OpError {
                run_id: run,
                target: target_name.to_string(),
                person_id: person.id.clone(),
                event_id: event.id.clone(),
                kind: "create".into(),
                permanent: true,
                message: err.to_string(),
                at: edusync_store::now(),
            }),
        }
    }
    for d in deletes {
        let key = (d.person_id.clone(), d.event_id.clone());
        let prior = prior_of.get(&key);
        let calendar = prior.map(|l| l.calendar.clone()).unwrap_or_default();
        by_calendar
            .entry(calendar.clone())
            .or_default()
            .push(CalendarOp {
                kind: OpKind::Delete,
                profile: profile.name.clone(),
                person_id: d.person_id.clone(),
                event_id: d.event_id.clone(),
                calendar,
                event: None,
                prior: prior.map(to_prior),
            });
    }
    let work: Vec<CalendarWork> = by_calendar
        .into_iter()
        .map(|(calendar, ops)| CalendarWork { calendar, ops })
        .collect();
    let mut result = ApplyResult {
        failed: failures.len() as u64,
        retryable: 0,
        samples: Vec::new(),
    };
    let mut store_error: Option<edusync_store::StoreError> = None;
    let mut opts = DeliveryOptions::default();
    if let Some(n) = calendar_limit {
        opts.calendar_concurrency = n;
    }
    deliver(target, work, &opts, |ops, outcomes| {
        let mut acks = Vec::with_capacity(ops.len());
        for (op, outcome) in ops.iter().zip(outcomes) {
            match outcome {
                Outcome::Written {
                    remote_id,
                    etag,
                    sequence,
                } => {
                    let (fp, starts_at) = fingerprints
                        .get(&(op.person_id.clone(), op.event_id.clone()))
                        .copied()
                        .unwrap_or((0, 0));
                    acks.push(Ack::Written(LedgerEntry {
                        person_id: op.person_id.clone(),
                        event_id: op.event_id.clone(),
                        fingerprint: fp,
                        starts_at,
                        calendar: op.calendar.clone(),
                        remote_id: Some(remote_id),
                        etag,
                        sequence,
                        gone: false,
                        updated_at: edusync_store::now(),
                    }));
                }
                Outcome::Deleted => acks.push(Ack::Deleted {
                    person_id: op.person_id.clone(),
                    event_id: op.event_id.clone(),
                }),
                Outcome::Failed { retryable, message } => {
                    result.failed += 1;
                    if retryable {
                        result.retryable += 1;
                    }
                    failures.push(OpError {
                        run_id: run,
                        target: target_name.to_string(),
                        person_id: op.person_id.clone(),
                        event_id: op.event_id.clone(),
                        kind: match op.kind {
                            OpKind::Create => "create",
                            OpKind::Update => "update",
                            OpKind::Delete => "delete",
                        }
                        .into(),
                        permanent: !retryable,
                        message,
                        at: edusync_store::now(),
                    });
                }
            }
        }
        progress.advance(ops.len() as u64);
        if let Err(e) = store.ack(&profile.name, target_name, &acks) {
            store_error.get_or_insert(e);
        }
    })
    .await;
    if let Some(e) = store_error {
        return Err(e.into());
    }
    for f in failures.iter().take(5) {
        result.samples.push(format!(
            "{} {} of event {} for person {}: {}",
            f.target, f.kind, f.event_id, f.person_id, f.message
        ));
    }
    store.record_failures(&profile.name, &failures)?;
    Ok(result)
}

/// Applies the held deletes of `run` (an operator's approval).
pub async fn approve(config: &Config, store: &dyn Store, run: RunId) -> Result<CycleReport> {
    let held = store.run(run)?;
    if held.status != RunStatus::Held {
        return Err(EngineError::Usage(format!(
            "run {run} is {}, not held; only a held run can be approved (see the run list in the console or `edusync sync` output)",
            held.status.as_str()
        )));
    }
    let profile = config.profile(&held.profile).ok_or_else(|| {
        EngineError::Usage(format!(
            "run {run} belongs to profile {:?}, which is no longer in {}",
            held.profile,
            config.path.display()
        ))
    })?;
    store.release_held(run)?;
    let targets = targets(profile)?;
    let mut failed = 0;
    let mut deleted = 0;
    let mut samples = Vec::new();
    for (name, target) in &targets {
        let rows = store.outbox(&profile.name, name, OpState::Pending, Some(run))?;
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|r| r.kind == StoreOpKind::Delete)
            .collect();
        let keys: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r.person_id.clone(), r.event_id.clone()))
            .collect();
        let priors = store.ledger_entries(&profile.name, name, &keys)?;
        let mut by_calendar: BTreeMap<String, Vec<CalendarOp>> = BTreeMap::new();
        for (r, prior) in rows.iter().zip(priors) {
            let calendar = prior
                .as_ref()
                .map(|p| p.calendar.clone())
                .unwrap_or_default();
            by_calendar
                .entry(calendar.clone())
                .or_default()
                .push(CalendarOp {
                    kind: OpKind::Delete,
                    profile: profile.name.clone(),
                    person_id: r.person_id.clone(),
                    event_id: r.event_id.clone(),
                    calendar,
                    event: None,
                    prior: prior.map(|l| Prior {
                        calendar: l.calendar,
                        remote_id: l.remote_id,
                        etag: l.etag,
                        sequence: l.sequence,
                    }),
                });
        }
        let work = by_calendar
            .into_iter()
            .map(|(calendar, ops)| CalendarWork { calendar, ops })
            .collect();
        let mut store_error = None;
        deliver(
            target,
            work,
            &DeliveryOptions::default(),
            |ops, outcomes| {
                let mut acks = Vec::new();
                for (op, o) in ops.iter().zip(outcomes) {
                    match o {
                        Outcome::Deleted | Outcome::Written { .. } => {
                            deleted += 1;
                            acks.push(Ack::Deleted {
                                person_id: op.person_id.clone(),
                                event_id: op.event_id.clone(),
                            });
                        }
                        Outcome::Failed { message, .. } => {
                            failed += 1;
                            if samples.len() < 5 {
                                samples.push(format!(
                                    "delete of event {} for person {}: {message}",
                                    op.event_id, op.person_id
                                ));
                            }
                        }
                    }
                }
                if let Err(e) = store.ack(&profile.name, name, &acks) {
                    store_error.get_or_insert(e);
                }
            },
        )
        .await;
        if let Some(e) = store_error {
            return Err(e.into());
        }
    }
    let status = if failed == 0 {
        RunStatus::Approved
    } else {
        RunStatus::Held
    };
    if failed == 0 {
        store.set_run_status(run, RunStatus::Approved)?;
    }
    info!(profile = %profile.name, run, deleted, failed, "held deletes approved");
    Ok(CycleReport {
        profile: profile.name.clone(),
        run_id: run,
        status: status.as_str(),
        create: 0,
        update: 0,
        delete: deleted,
        unchanged: 0,
        quarantined: 0,
        left_alone: 0,
        held_deletes: 0,
        failed_ops: failed,
        hold_reason: None,
        error: (failed > 0)
            .then(|| format!("{failed} deletes failed; run approve again to retry them")),
        errors: samples,
    })
}

/// Rejects a held run: its deletes are dropped (a later cycle plans them again
/// if the source still says so).
pub fn reject(store: &dyn Store, run: RunId) -> Result<u64> {
    let held = store.run(run)?;
    if held.status != RunStatus::Held {
        return Err(EngineError::Usage(format!(
            "run {run} is {}, not held",
            held.status.as_str()
        )));
    }
    let n = store.drop_held(run)?;
    store.set_run_status(run, RunStatus::Rejected)?;
    Ok(n)
}

/// Removes every event `profile` created from every target, found by marker,
/// then forgets them in the ledger. Resumable: running it again finishes.
pub async fn cleardown(profile: &Profile, store: &dyn Store) -> Result<(RunId, u64)> {
    let run = store.start_run(&profile.name, RunKind::Cleardown)?;
    let mut removed = 0;
    // Every calendar known: the source's people (when it can be read) and the ledger's.
    let people: std::collections::BTreeSet<String> = match edusync_sources::read_source(
        &profile.source,
    ) {
        Ok(raw) => raw
            .people
            .into_iter()
            .filter_map(|p| p.email)
            .map(|e| e.trim().to_lowercase())
            .filter(|e| e.contains('@'))
            .collect(),
        Err(e) => {
            warn!(profile = %profile.name, error = %e, "cleardown: source unreadable; clearing the calendars the ledger knows");
            Default::default()
        }
    };
    for (name, target) in targets(profile)? {
        let mut calendars = people.clone();
        calendars.extend(
            store
                .ledger_all(&profile.name, &name)?
                .into_iter()
                .map(|l| l.calendar)
                .filter(|c| !c.is_empty()),
        );
        let calendars: Vec<String> = calendars.into_iter().collect();
        removed += target.cleardown(&profile.name, &calendars).await?;
        // Nothing of this profile is left on the target: forget it, and drop its pending work.
        let forget: Vec<(String, String, Option<LedgerEntry>)> = store
            .ledger_all(&profile.name, &name)?
            .into_iter()
            .map(|l| (l.person_id, l.event_id, None))
            .collect();
        store.reconcile_ledger(&profile.name, &name, &forget)?;
        store.replace_outbox(run, &profile.name, &name, &mut std::iter::empty())?;
    }
    store.finish_run(
        run,
        RunStatus::Applied,
        &RunOutcome {
            counts: Counts {
                delete: removed,
                ..Default::default()
            },
            message: Some(format!("cleardown removed {removed} events")),
            ..Default::default()
        },
    )?;
    Ok((run, removed))
}
