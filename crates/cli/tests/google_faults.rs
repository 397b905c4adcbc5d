//! The `google` target under failure, end to end: `kill -9` in the middle
//! of applying (also with the service dropping connections after it
//! applied a write) followed by runs that finish with exactly the expected
//! events and no duplicate; and a storm of rate-limit answers and 5xx
//! ridden out with backoff. Zero client violations in each.

mod google_common;
mod util;

use std::collections::BTreeSet;
use std::time::Duration;

use edusync_testkit::google::{Faults, GoogleEmulatorConfig};
use google_common::GoogleEnv;
use util::api::{bulk_timetable, sync_until_clean, wait_until};

const STUDENTS: usize = 4;
const EVENTS: usize = 60;

fn emulator(students: usize) -> GoogleEmulatorConfig {
    GoogleEmulatorConfig::with_users((1..=students).map(|i| format!("s{i:02}@uni.example")))
}

/// Every calendar holds exactly B000…, each once (`synced` fails on a duplicate).
fn assert_exact(g: &GoogleEnv, users: &[String], events: usize) {
    let want: BTreeSet<String> = (0..events).map(|n| format!("B{n:03}")).collect();
    for u in users {
        let got: BTreeSet<String> = g.synced(u).into_keys().collect();
        assert_eq!(got, want, "{u}");
        let all = g.emu.events(u, Some(google_common::CALENDAR)).len();
        assert_eq!(all, events, "{u}: {all} events in the calendar");
    }
}

#[test]
fn kill_9_during_apply_then_rerun_leaves_exact_events_without_duplicates() {
    let g = GoogleEnv::with_config(emulator(STUDENTS));
    let users = bulk_timetable(&g.source(), STUDENTS, EVENTS);
    let total = (STUDENTS * EVENTS) as u64;
    g.emu.set_latency(Duration::from_millis(15));

    // Killed at three points of the initial load; the second time while the
    // service drops connections after applying writes.
    for (i, step) in [20u64, 30, 30].into_iter().enumerate() {
        if i == 1 {
            g.emu.set_faults(Faults {
                latency_ms: 15,
                drop_after_write_rate: 0.3,
                ..Faults::default()
            });
        }
        let before = g.emu.stats();
        let run = g.env.sync_cmd("teaching").spawn();
        wait_until(Duration::from_secs(30), "writes to arrive", || {
            let now = g.emu.stats();
            now.inserts >= before.inserts + step && (i != 1 || now.dropped > before.dropped)
        });
        let (running, out) = run.kill9();
        assert!(
            running,
            "the cycle finished before it was killed{}",
            out.describe()
        );
    }
    assert!(g.emu.stats().inserts < total);
    assert!(g.emu.stats().dropped > 0);

    // Still dropping connections; the re-runs finish anyway.
    sync_until_clean(&g.env, 4);
    g.emu.set_faults(Faults::default());
    assert_exact(&g, &users, EVENTS);
    assert_eq!(g.emu.stats().inserts, total, "no event was inserted twice");
    assert!(
        g.emu.stats().conflicts > 0,
        "replayed inserts were answered 409"
    );

    let r = g.env.sync("teaching");
    assert_eq!(r["unchanged"], total, "{r}");
    g.emu.assert_no_violations();
}

#[test]
fn a_storm_of_rate_limit_answers_is_ridden_out_politely() {
    let g = GoogleEnv::with_config(emulator(STUDENTS));
    let users = bulk_timetable(&g.source(), STUDENTS, 30);
    // A fifth of all requests answered 403 rateLimitExceeded, some 503.
    g.emu.set_faults(Faults {
        latency_ms: 5,
        rate_limit_rate: 0.2,
        error_rate: 0.05,
        ..Faults::default()
    });
    sync_until_clean(&g.env, 3);
    g.emu.set_faults(Faults::default());
    assert_exact(&g, &users, 30);
    let stats = g.emu.stats();
    assert!(stats.rate_limited > 10, "the storm hit: {stats:?}");
    // Backing off per person, never sooner than a backoff allows.
    g.emu.assert_no_violations();
}
