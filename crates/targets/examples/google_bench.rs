//! The Google Calendar benchmark of BENCHMARKS.md: the `google` target and
//! the shared delivery loop writing an initial load into the Google
//! emulator with Google's quotas (600 requests a minute per user, 10,000 a
//! minute per project, sliding windows) and a fixed latency per request.
//!
//! ```text
//! cargo run --release -p edusync-targets --example google_bench -- \
//!     --users 500 --events 30 --latency-ms 100 --runs 3
//! cargo run --release -p edusync-targets --example google_bench -- \
//!     --users 10 --events 1000 --latency-ms 100 --runs 3
//! ```
//!
//! With `--drift-check`, after each load every calendar is checked for
//! drift as a later cycle checks it (a new client: nothing cached, 32
//! calendars at a time), first without a stored change marker (a full
//! listing: find the calendar, list its edusync events) and then with the
//! marker that listing handed back (the changes since its sync token);
//! the requests and time of each are printed side by side.
//!
//! The ceiling is the fastest any client could finish under the same
//! quotas the emulator enforces: each user's requests (one per event, plus
//! two to find and create the calendar) go 600 per 60 s window, the first
//! window's as fast as 4 requests in flight at `latency` allow; the
//! project's go 10,000 per window. Whichever finishes last sets the time.

mod bench_support;

use bench_support::median;
use std::time::{Duration, Instant};

use edusync_targets::delivery::CalendarWork;
use edusync_targets::google::{
    GoogleClient, GoogleClientOptions, GoogleSettings, GoogleTarget, ServiceAccountKey,
};
use edusync_targets::rate::RequestRate;
use edusync_targets::{CalendarHint, Listing, Target};
use edusync_testkit::google::{self, GoogleEmulatorConfig, RateLimit};
use futures_util::stream::{self, StreamExt};

struct Args {
    users: usize,
    events: usize,
    latency_ms: u64,
    user_quota: u32,
    project_quota: u32,
    runs: usize,
    drift_check: bool,
}

fn args() -> Args {
    let mut a = Args {
        users: 10,
        events: 1000,
        latency_ms: 100,
        user_quota: 600,
        project_quota: 10_000,
        runs: 3,
        drift_check: false,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let val = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--users" => a.users = val.parse().expect("--users N"),
            "--events" => a.events = val.parse().expect("--events N"),
            "--latency-ms" => a.latency_ms = val.parse().expect("--latency-ms N"),
            "--user-quota" => a.user_quota = val.parse().expect("--user-quota N"),
            "--project-quota" => a.project_quota = val.parse().expect("--project-quota N"),
            "--runs" => a.runs = val.parse().expect("--runs N"),
            "--drift-check" => {
                a.drift_check = true;
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

const WINDOW: Duration = Duration::from_secs(60);

/// Seconds to send `n` requests at most `quota` per window, each window's
/// share at `burst` requests a second.
fn windows_secs(n: usize, quota: u32, burst: f64) -> f64 {
    let quota = quota as usize;
    let full = (n.max(1) - 1) / quota;
    let rest = n - full * quota;
    full as f64 * WINDOW.as_secs_f64() + rest as f64 / burst
}

fn ceiling_secs(a: &Args) -> f64 {
    let lat = a.latency_ms as f64 / 1000.0;
    let per_user = a.events + 2;
    let user = windows_secs(per_user, a.user_quota, 4.0 / lat) + 2.0 * lat;
    let width = a
        .users
        .min(edusync_targets::google::target::USER_CONCURRENCY) as f64;
    let project = windows_secs(per_user * a.users, a.project_quota, width * 4.0 / lat);
    user.max(project)
}

struct RunResult {
    secs: f64,
    events: u64,
    failed: u64,
    requests: u64,
    rate_limited: u64,
    violations: usize,
}

fn run_once(a: &Args, seed: u64) -> RunResult {
    let emu_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("emulator")
        .enable_all()
        .build()
        .unwrap();
    let cfg = GoogleEmulatorConfig {
        auto_users: true,
        user_rate: RateLimit {
            requests: a.user_quota,
            window: WINDOW,
        },
        project_rate: Some(RateLimit {
            requests: a.project_quota,
            window: WINDOW,
        }),
        seed,
        ..GoogleEmulatorConfig::default()
    };
    let emu = emu_rt.block_on(google::spawn(cfg));
    emu.set_latency(Duration::from_millis(a.latency_ms));
    let key = ServiceAccountKey::from_json(&emu.key_file_json(), "the emulator's key").unwrap();
    let opts = GoogleClientOptions {
        user_rate: Some(RequestRate {
            requests: a.user_quota,
            window: WINDOW,
        }),
        project_rate: Some(RequestRate {
            requests: a.project_quota,
            window: WINDOW,
        }),
        ..GoogleClientOptions::default()
    };
    let settings = GoogleSettings {
        token_url: emu.token_url(),
        api_url: emu.api_url(),
        calendar: "Timetable".into(),
        key: std::sync::Arc::new(key),
    };
    let client = GoogleClient::with_options(settings.clone(), opts.clone());
    let target = Target::Google(GoogleTarget::new("google", client));
    let work: Vec<CalendarWork> = (0..a.users)
        .map(|u| {
            let user = format!("s{u:05}@uni.example");
            CalendarWork {
                ops: (0..a.events)
                    .map(|n| bench_support::create(&user, n))
                    .collect(),
                calendar: user,
            }
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    let (written, failed) = rt.block_on(bench_support::deliver_counting(&target, work));
    let secs = t0.elapsed().as_secs_f64();
    let stats = emu.stats();
    if a.drift_check {
        rt.block_on(drift_check(a, &emu, &settings, &opts));
    }
    let r = RunResult {
        secs,
        events: written,
        failed,
        requests: stats.requests,
        rate_limited: stats.rate_limited,
        violations: emu.violations().len(),
    };
    drop(emu);
    drop(emu_rt);
    r
}

/// A no-change drift check of every calendar, without and then with the
/// stored change marker, each by a new client; prints both.
async fn drift_check(
    a: &Args,
    emu: &google::GoogleEmulator,
    settings: &GoogleSettings,
    opts: &GoogleClientOptions,
) {
    let users: Vec<String> = (0..a.users)
        .map(|u| format!("s{u:05}@uni.example"))
        .collect();
    let check = |hints: Vec<CalendarHint>| {
        let target = GoogleTarget::new(
            "google",
            GoogleClient::with_options(settings.clone(), opts.clone()),
        );
        let users = users.clone();
        async move {
            let before = emu.stats().requests;
            let t0 = Instant::now();
            let listings: Vec<Listing> = stream::iter(users.iter().zip(hints))
                .map(|(u, hint)| {
                    let target = &target;
                    async move { target.list_checked(u, "bench", &hint).await.unwrap() }
                })
                .buffered(32)
                .collect()
                .await;
            (
                listings,
                emu.stats().requests - before,
                t0.elapsed().as_secs_f64(),
            )
        }
    };
    let (full, full_requests, full_secs) = check(vec![CalendarHint::default(); users.len()]).await;
    // What the ledger holds after the load, and the stored marker.
    let hints: Vec<CalendarHint> = full
        .iter()
        .map(|l| {
            let mut h = CalendarHint {
                marker: l.marker.clone(),
                ..CalendarHint::default()
            };
            for i in &l.items {
                h.items.insert(i.remote_id.clone(), i.event_id.clone());
                h.etags
                    .insert(i.remote_id.clone(), i.etag.clone().unwrap_or_default());
            }
            h
        })
        .collect();
    let (marked, marked_requests, marked_secs) = check(hints).await;
    for (f, m) in full.iter().zip(&marked) {
        assert_eq!(f.items.len(), a.events);
        assert_eq!(
            m.items.len(),
            a.events,
            "the marker's answer holds the same events"
        );
    }
    println!(
        "drift check of {} calendars: without marker {} requests in {:.2} s; with marker {} requests in {:.2} s ({:.1}x fewer requests, {:.1}x faster)",
        a.users,
        full_requests,
        full_secs,
        marked_requests,
        marked_secs,
        full_requests as f64 / marked_requests.max(1) as f64,
        full_secs / marked_secs
    );
}

fn main() {
    let a = args();
    let ceiling = ceiling_secs(&a);
    let total = (a.users * a.events) as f64;
    println!(
        "google bench: {} users x {} events, latency {} ms, quotas {} per user and {} per project a minute, {} runs",
        a.users, a.events, a.latency_ms, a.user_quota, a.project_quota, a.runs
    );
    println!(
        "ceiling: {:.1} s = {:.1} events/s",
        ceiling,
        total / ceiling
    );
    let (mut rates, mut shares) = (vec![], vec![]);
    for run in 0..a.runs {
        let r = run_once(&a, 0x600d + run as u64);
        let rate = r.events as f64 / r.secs;
        let share = rate / (total / ceiling) * 100.0;
        println!(
            "run {}: {} events in {:.2} s = {:.1} events/s ({:.1}% of ceiling); {} requests, {} rate-limited, {} violations, {} failed",
            run + 1,
            r.events,
            r.secs,
            rate,
            share,
            r.requests,
            r.rate_limited,
            r.violations,
            r.failed
        );
        assert_eq!(r.violations, 0, "the emulator recorded violations");
        assert_eq!(r.failed, 0, "every event must be written");
        rates.push(rate);
        shares.push(share);
    }
    println!(
        "median: {:.1} events/s, {:.1}% of ceiling",
        median(rates),
        median(shares)
    );
}
