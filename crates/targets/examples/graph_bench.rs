//! The Microsoft Graph benchmarks of BENCHMARKS.md: the `graph` target and
//! the shared delivery loop writing an initial load into the Graph emulator
//! configured with Microsoft's limits and a fixed per-request latency.
//!
//! ```text
//! cargo run --release -p edusync-targets --example graph_bench -- \
//!     --mailboxes 50 --events 2000 --latency-ms 100 --runs 3
//! cargo run --release -p edusync-targets --example graph_bench -- \
//!     --mailboxes 500 --events 150 --latency-ms 100 --app-requests 13000 --runs 3
//! ```
//!
//! The emulator runs on its own runtime threads; the client (target, client,
//! delivery loop, HTTP) runs on a current-thread runtime on the main thread,
//! so the main thread's CPU time is the client's CPU time.
//!
//! The ceiling is what the limits allow, computed from the same numbers the
//! emulator enforces: per mailbox, 4 requests in flight at `latency` each
//! (40 requests/s at 100 ms) and 10,000 requests per 10 minutes; per app,
//! `app_requests` per `app_window`. Each event is one request; each mailbox
//! also costs two (find and create its calendar).

mod bench_support;

use bench_support::{median, process_cpu, thread_cpu};
use std::time::{Duration, Instant};

use edusync_targets::delivery::CalendarWork;
use edusync_targets::graph::{
    GraphClient, GraphClientOptions, GraphCredential, GraphSettings, GraphTarget, RequestRate,
};
use edusync_targets::Target;
use edusync_testkit::graph::{self, GraphEmulatorConfig, RateLimit};

struct Args {
    mailboxes: usize,
    events: usize,
    latency_ms: u64,
    app_requests: Option<u32>,
    app_window_secs: u64,
    runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        mailboxes: 50,
        events: 2000,
        latency_ms: 100,
        app_requests: None,
        app_window_secs: 10,
        runs: 3,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let val = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--mailboxes" => a.mailboxes = val.parse().expect("--mailboxes N"),
            "--events" => a.events = val.parse().expect("--events N"),
            "--latency-ms" => a.latency_ms = val.parse().expect("--latency-ms N"),
            "--app-requests" => a.app_requests = Some(val.parse().expect("--app-requests N")),
            "--app-window-secs" => a.app_window_secs = val.parse().expect("--app-window-secs N"),
            "--runs" => a.runs = val.parse().expect("--runs N"),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

struct RunResult {
    secs: f64,
    events: u64,
    client_cpu: Duration,
    emulator_requests: u64,
    throttled: u64,
    violations: usize,
    failed: u64,
    decreases: u64,
    min_limit: f64,
}

fn ceiling_secs(a: &Args) -> f64 {
    let per_mailbox = (a.events + 2) as f64;
    let lat = a.latency_ms as f64 / 1000.0;
    // 4 in flight at `lat` each.
    let concurrency = per_mailbox * lat / 4.0;
    // 10,000 per 600 s: only a mailbox with more than 10,000 requests waits.
    let windows = ((per_mailbox - 1.0) / 10_000.0).floor();
    let mailbox_rate = windows * 600.0;
    // The app limit as a sustained rate over the whole load.
    let app_rate = a
        .app_requests
        .map(|n| per_mailbox * a.mailboxes as f64 / (n as f64 / a.app_window_secs as f64))
        .unwrap_or(0.0);
    concurrency.max(mailbox_rate).max(app_rate)
}

fn run_once(a: &Args, seed: u64) -> RunResult {
    let emu_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("emulator")
        .enable_all()
        .build()
        .unwrap();
    let cfg = GraphEmulatorConfig {
        auto_users: true,
        app_rate: a.app_requests.map(|n| RateLimit {
            requests: n,
            window: Duration::from_secs(a.app_window_secs),
        }),
        seed,
        ..GraphEmulatorConfig::default()
    };
    let emu = emu_rt.block_on(graph::spawn(cfg.clone()));
    emu.set_latency(Duration::from_millis(a.latency_ms));

    let opts = GraphClientOptions {
        app_rate: a.app_requests.map(|n| RequestRate {
            requests: n,
            window: Duration::from_secs(a.app_window_secs),
        }),
        ..GraphClientOptions::default()
    };
    let client = GraphClient::with_options(
        GraphSettings {
            authority_url: emu.authority_url(),
            graph_url: emu.url(),
            tenant_id: cfg.tenant_id.clone(),
            client_id: cfg.client_id.clone(),
            credential: GraphCredential::Secret(cfg.client_secret.clone()),
            calendar: "Timetable".into(),
        },
        opts,
    );
    let target = Target::Graph(GraphTarget::new("graph", client.clone()));
    let work: Vec<CalendarWork> = (0..a.mailboxes)
        .map(|m| {
            let mailbox = format!("s{m:05}@uni.example");
            CalendarWork {
                ops: (0..a.events)
                    .map(|n| bench_support::create(&mailbox, n))
                    .collect(),
                calendar: mailbox,
            }
        })
        .collect();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    let (written, failed) = rt.block_on(bench_support::deliver_counting(&target, work));
    let secs = t0.elapsed().as_secs_f64();
    let client_cpu = thread_cpu() - cpu0;
    let stats = emu.stats();
    // How often the mailboxes' adaptive limits backed off, and how low they went.
    let (mut decreases, mut min_limit) = (0u64, f64::MAX);
    for m in 0..a.mailboxes {
        let l = client.mailbox_limit(&format!("s{m:05}@uni.example"));
        decreases += l.decreases;
        min_limit = min_limit.min(l.min_limit);
    }
    let r = RunResult {
        decreases,
        min_limit,
        secs,
        events: written,
        client_cpu,
        emulator_requests: stats.graph_requests,
        throttled: stats.throttled,
        violations: emu.violations().len(),
        failed,
    };
    drop(emu);
    drop(emu_rt);
    r
}

fn main() {
    let a = args();
    let ceiling = ceiling_secs(&a);
    let total = (a.mailboxes * a.events) as f64;
    println!(
        "graph bench: {} mailboxes x {} events, latency {} ms, app limit {}, {} runs",
        a.mailboxes,
        a.events,
        a.latency_ms,
        a.app_requests
            .map(|n| format!("{n} per {} s", a.app_window_secs))
            .unwrap_or_else(|| "none".into()),
        a.runs
    );
    println!(
        "ceiling: {:.1} s = {:.0} events/s",
        ceiling,
        total / ceiling
    );
    let (mut rates, mut shares, mut cpu_per_k, mut throttle_pct) = (vec![], vec![], vec![], vec![]);
    let cpu_total0 = process_cpu();
    for run in 0..a.runs {
        let r = run_once(&a, 0x0ed5_c0de + run as u64);
        let rate = r.events as f64 / r.secs;
        let share = rate / (total / ceiling) * 100.0;
        let per_k = r.client_cpu.as_secs_f64() * 1000.0 / (r.events.max(1) as f64 / 1000.0);
        let tp = r.throttled as f64 * 100.0 / r.emulator_requests.max(1) as f64;
        println!(
            "run {}: {} events in {:.2} s = {:.0} events/s ({:.1}% of ceiling); client CPU {:.2} s ({:.1} ms per 1,000 events); {} Graph requests, {} throttled ({:.2}%), {} violations, {} failed; adaptive limits backed off {} times (lowest {})",
            run + 1,
            r.events,
            r.secs,
            rate,
            share,
            r.client_cpu.as_secs_f64(),
            per_k,
            r.emulator_requests,
            r.throttled,
            tp,
            r.violations,
            r.failed,
            r.decreases,
            r.min_limit
        );
        assert_eq!(r.violations, 0, "the emulator recorded violations");
        rates.push(rate);
        shares.push(share);
        cpu_per_k.push(per_k);
        throttle_pct.push(tp);
    }
    println!(
        "median: {:.0} events/s, {:.1}% of ceiling, client CPU {:.1} ms per 1,000 events, {:.2}% throttled (process CPU incl. emulator: {:.1} s over all runs)",
        median(rates),
        median(shares),
        median(cpu_per_k),
        median(throttle_pct),
        (process_cpu() - cpu_total0).as_secs_f64()
    );
}
