//! The `graph` target under failure, end to end: `kill -9` in the middle of
//! applying (also with the service resetting connections after it applied
//! a write), and an outage, each followed by cycles that finish the work
//! with exactly the expected events and no duplicate.

mod graph_common;
mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use edusync_testkit::graph::{Faults, GraphEmulatorConfig, OutageMode};
use graph_common::{bulk_timetable, wait_until, GraphEnv};
use util::api::sync_until_clean;

const STUDENTS: usize = 4;
const EVENTS: usize = 60;

fn emulator(students: usize) -> GraphEmulatorConfig {
    GraphEmulatorConfig::with_users((1..=students).map(|i| format!("s{i:02}@uni.example")))
}

fn all_there(g: &GraphEnv, upns: &[String], events: usize) -> bool {
    let want: BTreeSet<String> = (0..events).map(|n| format!("B{n:03}")).collect();
    upns.iter()
        .all(|u| g.synced(u).into_keys().collect::<BTreeSet<_>>() == want)
}

/// Every mailbox holds exactly B000…, each once (`synced` fails on a duplicate).
fn assert_exact(g: &GraphEnv, upns: &[String], events: usize) {
    let want: BTreeSet<String> = (0..events).map(|n| format!("B{n:03}")).collect();
    let got: BTreeMap<String, BTreeSet<String>> = upns
        .iter()
        .map(|u| (u.clone(), g.synced(u).into_keys().collect()))
        .collect();
    for (u, ids) in &got {
        assert_eq!(ids, &want, "{u}");
        let all = g.emu.calendar_events(u, graph_common::CALENDAR).len();
        assert_eq!(all, events, "{u}: {all} events in the calendar");
    }
}

#[test]
fn kill_9_during_apply_then_rerun_leaves_exact_events_without_duplicates() {
    let g = GraphEnv::with_config(emulator(STUDENTS));
    let upns = bulk_timetable(&g.source(), STUDENTS, EVENTS);
    let total = (STUDENTS * EVENTS) as u64;
    // Slow enough that a cycle is still applying when it is killed.
    g.emu.set_latency(Duration::from_millis(15));

    // Killed at three different points of the initial load; once while the
    // service resets connections after applying writes.
    // Each kill waits for writes of its own run (counted from its start), and
    // the second also for a reset connection, whatever the machine's speed.
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
            now.events_created >= before.events_created + step
                && (i != 1 || now.dropped_connections > before.dropped_connections)
        });
        let (running, out) = run.kill9();
        assert!(
            running,
            "the cycle finished before it was killed{}",
            out.describe()
        );
    }
    assert!(g.emu.stats().events_created < total);
    assert!(g.emu.stats().dropped_connections > 0);

    // The service still resets connections after writes; the re-runs finish anyway.
    sync_until_clean(&g.env, 4);
    g.emu.set_faults(Faults::default());
    assert_exact(&g, &upns, EVENTS);
    assert_eq!(
        g.emu.stats().events_created,
        total,
        "no create was made twice"
    );

    // And nothing is left to do.
    let r = g.sync();
    assert_eq!(r["unchanged"], total, "{r}");
    g.emu.assert_no_violations();
}

#[test]
fn an_outage_mid_cycle_drains_afterwards_with_nothing_lost() {
    let g = GraphEnv::with_config(emulator(STUDENTS));
    let upns = bulk_timetable(&g.source(), STUDENTS, EVENTS);
    let total = (STUDENTS * EVENTS) as u64;
    g.emu.set_latency(Duration::from_millis(15));

    // 503 with Retry-After for 3 s (standing in for a 10-minute outage).
    let run = g.env.sync_cmd("teaching").spawn();
    wait_until(Duration::from_secs(30), "writes to arrive", || {
        g.emu.stats().events_created >= 40
    });
    g.emu
        .outage(Duration::from_secs(3), OutageMode::Unavailable);
    let out = run.wait(util::DEADLINE);
    assert!(
        matches!(out.code(), Some(0) | Some(1)),
        "{}",
        out.describe()
    );
    sync_until_clean(&g.env, 3);
    assert_exact(&g, &upns, EVENTS);
    assert_eq!(g.emu.stats().events_created, total);

    // A change, then refused connections for 3 s in the middle of applying it.
    g.source()
        .exec("UPDATE {p}events SET title = title || ' (moved)' WHERE event_id < 'B030'");
    let run = g.env.sync_cmd("teaching").spawn();
    wait_until(
        Duration::from_secs(30),
        "the cycle to start writing",
        || g.emu.stats().graph_requests > 0 && run.started.elapsed() > Duration::from_millis(300),
    );
    g.emu.outage(Duration::from_secs(3), OutageMode::Refuse);
    let out = run.wait(util::DEADLINE);
    assert!(
        matches!(out.code(), Some(0) | Some(1)),
        "{}",
        out.describe()
    );
    sync_until_clean(&g.env, 3);
    assert_exact(&g, &upns, EVENTS);
    for u in &upns {
        let moved = g
            .synced(u)
            .values()
            .filter(|e| e.subject.ends_with("(moved)"))
            .count();
        assert_eq!(moved, 30, "{u}");
    }
    assert!(all_there(&g, &upns, EVENTS));
    g.emu.assert_no_violations();
}
