//! The scheduler of `edusync serve`: one task per profile, each running
//! [`edusync_engine::sync_keeping_desire`] every `schedule`.
//!
//! - **Independent.** A profile's cycle runs on its own blocking thread, so a
//!   slow or failing profile never delays another, nor the HTTP service.
//! - **One at a time.** Each profile has a cycle lock, taken by its cycles
//!   and by approvals of its held runs.
//! - **Run now, pause, resume** wake the profile's task; a paused profile
//!   runs only when asked to.
//! - **Blackout windows** (`blackout = ["01:00-03:30"]`, the profile's local
//!   time): no cycle starts inside one; a due or requested cycle waits for its end.
//! - **Shutdown** lets a running cycle finish for a short grace period, then
//!   drops it at its next await point (between batches). The outbox keeps
//!   what was planned and not acknowledged, and the run is marked failed
//!   with a message saying so; the next start finishes the work.
//! - After each cycle the profile's [`Published`] desire is replaced, and
//!   the feeds are served from it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use edusync_config::{Config, Profile};
use edusync_engine::{CycleReport, Desire, Progress};
use edusync_store::{RunStatus, Store};
use tokio::sync::watch;

/// How long a running cycle may go on after shutdown was asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Upper bounds of the cycle duration histogram, seconds.
pub const DURATION_BUCKETS: [f64; 9] = [0.1, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 1800.0];

/// What the last cycle computed every calendar of a profile must hold.
pub struct Published {
    pub desire: Desire,
    /// Bumped at every publication (feeds use it to notice changes).
    pub generation: u64,
    pub built_at: jiff::Timestamp,
}

/// A profile's state as the dashboard and `/metrics` show it.
#[derive(Debug, Clone, Default)]
pub struct SlotState {
    pub paused: bool,
    pub running: bool,
    pub run_requested: bool,
    pub phase: String,
    pub last_started_ms: Option<i64>,
    pub last_finished_ms: Option<i64>,
    pub next_run_ms: Option<i64>,
    /// Set while a due cycle waits for the end of a blackout window.
    pub blackout_until_ms: Option<i64>,
    pub last_report: Option<CycleReport>,
    pub last_success_ms: Option<i64>,
    pub last_duration_secs: Option<f64>,
    /// At least one cycle finished (any outcome) since start.
    pub attempted: bool,
    pub duration_buckets: [u64; DURATION_BUCKETS.len()],
    pub duration_sum: f64,
    pub duration_count: u64,
    /// Cycles by final status.
    pub cycles: BTreeMap<String, u64>,
    /// Operations by (kind, outcome).
    pub ops: BTreeMap<(String, String), u64>,
}

pub struct Slot {
    pub profile: Profile,
    pub state: Mutex<SlotState>,
    wake: tokio::sync::Notify,
    /// Held by a cycle or an approval of this profile.
    pub cycle_lock: tokio::sync::Mutex<()>,
    pub published: RwLock<Option<Arc<Published>>>,
}

impl Slot {
    pub fn snapshot(&self) -> SlotState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn with<T>(&self, f: impl FnOnce(&mut SlotState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn published(&self) -> Option<Arc<Published>> {
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks for a cycle now (it waits for a blackout window to end).
    pub fn run_now(&self) {
        self.with(|s| s.run_requested = true);
        self.wake.notify_one();
    }

    pub fn pause(&self) {
        self.with(|s| s.paused = true);
        self.wake.notify_one();
    }

    pub fn resume(&self) {
        self.with(|s| s.paused = false);
        self.wake.notify_one();
    }

    /// Records operations applied outside a cycle (an approval).
    pub fn count_ops(&self, kind: &str, outcome: &str, n: u64) {
        if n > 0 {
            self.with(|s| *s.ops.entry((kind.into(), outcome.into())).or_default() += n);
        }
    }
}

pub struct Scheduler {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub slots: Vec<Arc<Slot>>,
    stop_tx: watch::Sender<bool>,
    generation: std::sync::atomic::AtomicU64,
    started: std::sync::atomic::AtomicBool,
}

impl Scheduler {
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>) -> Scheduler {
        let slots = config
            .profiles
            .iter()
            .map(|p| {
                Arc::new(Slot {
                    profile: p.clone(),
                    state: Mutex::new(SlotState {
                        phase: "waiting for the first cycle".into(),
                        ..Default::default()
                    }),
                    wake: tokio::sync::Notify::new(),
                    cycle_lock: tokio::sync::Mutex::new(()),
                    published: RwLock::new(None),
                })
            })
            .collect();
        Scheduler {
            config,
            store,
            slots,
            stop_tx: watch::channel(false).0,
            generation: Default::default(),
            started: Default::default(),
        }
    }

    pub fn slot(&self, profile: &str) -> Option<&Arc<Slot>> {
        self.slots.iter().find(|s| s.profile.name == profile)
    }

    pub fn is_started(&self) -> bool {
        self.started.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts one task per profile; returns their handles (awaited at shutdown).
    pub fn start(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        self.started
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.slots
            .iter()
            .map(|slot| {
                let me = self.clone();
                let slot = slot.clone();
                tokio::spawn(async move { me.run_slot(slot).await })
            })
            .collect()
    }

    /// Tells every profile task to stop (a running cycle gets [`SHUTDOWN_GRACE`]).
    pub fn stop(&self) {
        let _ = self.stop_tx.send(true);
        for s in &self.slots {
            s.wake.notify_one();
        }
    }

    fn stopping(&self) -> bool {
        *self.stop_tx.borrow()
    }

    async fn run_slot(self: Arc<Self>, slot: Arc<Slot>) {
        let schedule = slot.profile.schedule;
        let mut stop_rx = self.stop_tx.subscribe();
        // The first cycle starts at once.
        let mut due = jiff::Timestamp::now();
        loop {
            if self.stopping() {
                return;
            }
            let now = jiff::Timestamp::now();
            let (paused, requested) = slot.with(|s| (s.paused, s.run_requested));
            let blackout_end = blackout_end(&slot.profile, now);
            let wants_run = requested || (!paused && now >= due);
            if wants_run && blackout_end.is_none() {
                slot.with(|s| {
                    s.run_requested = false;
                    s.blackout_until_ms = None;
                });
                let started = jiff::Timestamp::now();
                self.cycle(&slot, &mut stop_rx).await;
                due = started
                    .checked_add(jiff::SignedDuration::try_from(schedule).unwrap_or_default())
                    .unwrap_or(started);
                continue;
            }
            // Work out when to look again.
            let wake_at = match blackout_end {
                Some(end) if wants_run => {
                    slot.with(|s| s.blackout_until_ms = Some(end.as_millisecond()));
                    end
                }
                _ => due,
            };
            slot.with(|s| {
                s.next_run_ms = if s.paused && !s.run_requested {
                    None
                } else {
                    Some(wake_at.max(now).as_millisecond())
                };
                if !s.running {
                    s.phase = if s.paused {
                        "paused".into()
                    } else if s.blackout_until_ms.is_some() {
                        "waiting for the blackout window to end".into()
                    } else {
                        "idle".into()
                    };
                }
            });
            let sleep_for = if paused && !requested {
                Duration::from_secs(3600)
            } else {
                wake_at
                    .duration_since(now)
                    .try_into()
                    .unwrap_or(Duration::ZERO)
                    .min(Duration::from_secs(3600))
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep_for) => {}
                _ = slot.wake.notified() => {}
                _ = stop_rx.changed() => {}
            }
        }
    }

    async fn cycle(&self, slot: &Arc<Slot>, stop_rx: &mut watch::Receiver<bool>) {
        let _lock = slot.cycle_lock.lock().await;
        let t0 = Instant::now();
        slot.with(|s| {
            s.running = true;
            s.phase = "starting".into();
            s.last_started_ms = Some(jiff::Timestamp::now().as_millisecond());
            s.next_run_ms = None;
        });
        let config = self.config.clone();
        let store = self.store.clone();
        let profile = slot.profile.clone();
        let progress_slot = slot.clone();
        let handle = tokio::runtime::Handle::current();
        let mut stop = stop_rx.clone();
        let result = tokio::task::spawn_blocking(move || {
            handle.block_on(async move {
                let mut progress = SlotProgress(progress_slot);
                let cycle = edusync_engine::sync_keeping_desire(
                    &config,
                    &profile,
                    store.as_ref(),
                    &mut progress,
                );
                let stopped = async {
                    let _ = stop.wait_for(|v| *v).await;
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                };
                tokio::select! {
                    r = cycle => Some(r),
                    _ = stopped => None,
                }
            })
        })
        .await;
        let secs = t0.elapsed().as_secs_f64();
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let outcome = match result {
            Ok(Some(Ok((report, desire)))) => {
                if let Some(desire) = desire {
                    let generation = 1 + self
                        .generation
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    *slot.published.write().unwrap_or_else(|p| p.into_inner()) =
                        Some(Arc::new(Published {
                            desire,
                            generation,
                            built_at: jiff::Timestamp::now(),
                        }));
                }
                let failed_by_kind = self.failed_by_kind(report.run_id);
                Ok((report, failed_by_kind))
            }
            Ok(Some(Err(e))) => Err(e.to_string()),
            Ok(None) => {
                self.mark_interrupted(&slot.profile.name);
                Err("interrupted by shutdown; planned work stays in the outbox".into())
            }
            Err(e) => Err(format!("the cycle's thread failed: {e}")),
        };
        slot.with(|s| {
            s.running = false;
            s.attempted = true;
            s.last_finished_ms = Some(now_ms);
            s.last_duration_secs = Some(secs);
            s.duration_sum += secs;
            s.duration_count += 1;
            for (i, b) in DURATION_BUCKETS.iter().enumerate() {
                if secs <= *b {
                    s.duration_buckets[i] += 1;
                }
            }
            match outcome {
                Ok((report, failed)) => {
                    *s.cycles.entry(report.status.to_string()).or_default() += 1;
                    if report.status != "failed" {
                        s.last_success_ms = Some(now_ms);
                    }
                    let f = |k: &str| failed.get(k).copied().unwrap_or(0);
                    let mut add = |kind: &str, outcome: &str, n: u64| {
                        if n > 0 {
                            *s.ops.entry((kind.into(), outcome.into())).or_default() += n;
                        }
                    };
                    add(
                        "create",
                        "applied",
                        report.create.saturating_sub(f("create")),
                    );
                    add(
                        "update",
                        "applied",
                        report.update.saturating_sub(f("update")),
                    );
                    if report.held_deletes > 0 {
                        add("delete", "held", report.held_deletes);
                    } else {
                        add(
                            "delete",
                            "applied",
                            report.delete.saturating_sub(f("delete")),
                        );
                    }
                    for (k, n) in &failed {
                        add(k, "failed", *n);
                    }
                    s.phase = report.status.to_string();
                    s.last_report = Some(report);
                }
                Err(msg) => {
                    *s.cycles.entry("failed".into()).or_default() += 1;
                    s.phase = "failed".into();
                    s.last_report = Some(CycleReport::failed(&slot.profile.name, 0, msg));
                }
            }
        });
    }

    fn failed_by_kind(&self, run: i64) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        if let Ok(errs) = self.store.op_errors(run, 1_000_000) {
            for e in errs {
                *m.entry(e.kind).or_default() += 1;
            }
        }
        m
    }

    fn mark_interrupted(&self, profile: &str) {
        if let Ok(runs) = self.store.runs(Some(profile), 1) {
            if let Some(r) = runs.into_iter().find(|r| r.status == RunStatus::Running) {
                let _ = self.store.finish_run(
                    r.run_id,
                    RunStatus::Failed,
                    &edusync_store::RunOutcome {
                        message: Some("interrupted by shutdown; its planned operations stay in the outbox and the next cycle finishes them".into()),
                        ..Default::default()
                    },
                );
            }
        }
    }

    /// The next generation number (feeds combine several profiles' generations).
    pub fn generations(&self) -> Vec<u64> {
        self.slots
            .iter()
            .map(|s| s.published().map_or(0, |p| p.generation))
            .collect()
    }
}

struct SlotProgress(Arc<Slot>);

impl Progress for SlotProgress {
    fn phase(&mut self, _profile: &str, what: &str) {
        self.0.with(|s| s.phase = what.to_string());
    }
}

/// When the blackout window holding `now` ends, if `now` is in one.
pub fn blackout_end(profile: &Profile, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
    if profile.blackout.is_empty() {
        return None;
    }
    let mut t = now;
    let mut inside = false;
    // Adjacent or overlapping windows: follow them to the last end (bounded).
    for _ in 0..8 {
        let z = t.to_zoned(profile.timezone.clone());
        let minute = z.hour() as u16 * 60 + z.minute() as u16;
        let Some(b) = profile.blackout.iter().find(|b| b.contains(minute)) else {
            break;
        };
        inside = true;
        let day = if b.end <= minute {
            z.date().tomorrow().ok()?
        } else {
            z.date()
        };
        let end = if b.end >= 1440 {
            day.tomorrow()
                .ok()?
                .to_zoned(profile.timezone.clone())
                .ok()?
        } else {
            day.at((b.end / 60) as i8, (b.end % 60) as i8, 0, 0)
                .to_zoned(profile.timezone.clone())
                .ok()?
        };
        if end.timestamp() <= t {
            break;
        }
        t = end.timestamp();
    }
    inside.then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(blackout: &[&str]) -> Profile {
        let text = format!(
            "[[profiles]]\nname = \"t\"\ntimezone = \"Europe/London\"\nblackout = [{}]\n[profiles.source]\nurl = \"sqlite://t.db\"\n[[profiles.targets]]\nkind = \"vdir\"\npath = \"c\"\n",
            blackout
                .iter()
                .map(|b| format!("{b:?}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        Config::parse(std::path::Path::new("/x/edusync.toml"), &text)
            .unwrap()
            .profiles
            .remove(0)
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn blackout_windows_in_local_time() {
        let p = profile(&["01:00-03:30"]);
        // 2026-07-01 is BST (UTC+1): 01:30 local = 00:30Z.
        assert_eq!(
            blackout_end(&p, at("2026-07-01T00:30:00Z")),
            Some(at("2026-07-01T02:30:00Z"))
        );
        assert_eq!(blackout_end(&p, at("2026-07-01T02:30:00Z")), None);
        assert_eq!(blackout_end(&p, at("2026-07-01T23:59:00Z")), None);
        // January is GMT.
        assert_eq!(
            blackout_end(&p, at("2026-01-10T01:00:00Z")),
            Some(at("2026-01-10T03:30:00Z"))
        );
    }

    #[test]
    fn blackout_windows_cross_midnight_and_chain() {
        let p = profile(&["23:00-01:00", "01:00-02:00"]);
        assert_eq!(
            blackout_end(&p, at("2026-01-10T23:30:00Z")),
            Some(at("2026-01-11T02:00:00Z"))
        );
        assert_eq!(
            blackout_end(&p, at("2026-01-11T00:10:00Z")),
            Some(at("2026-01-11T02:00:00Z"))
        );
        let all = profile(&["22:00-24:00"]);
        assert_eq!(
            blackout_end(&all, at("2026-01-10T22:00:00Z")),
            Some(at("2026-01-11T00:00:00Z"))
        );
        assert_eq!(
            blackout_end(&profile(&[]), at("2026-01-10T22:00:00Z")),
            None
        );
    }
}
