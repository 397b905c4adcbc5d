//! Crashes and outages with the `caldav` target, through the built binary
//! against a real Radicale: `kill -9` of edusync mid-apply, and the server
//! restarted mid-run. The next cycle finishes the work with no duplicate.

mod caldav_common;

use std::time::{Duration, Instant};

use caldav_common::*;

const PEOPLE: usize = 8;
const EVENTS: usize = 25;

/// Starts a sync and waits until some, not all, events are on the server.
fn start_and_wait(env: &Env) -> std::process::Child {
    let child = env
        .cmd(&["sync", "--config", "edusync.toml", "--format", "json"])
        .spawn()
        .unwrap();
    let start = Instant::now();
    while env.server.ics_files().len() < 15 && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

fn all_there_once(env: &Env) {
    let r = env.sync();
    assert_eq!(r["status"].as_str(), Some("applied"), "{r}");
    for p in 0..PEOPLE {
        check_calendar(&env.calendar(p), &titles(EVENTS, ""));
    }
    assert_eq!(env.server.ics_files().len(), PEOPLE * EVENTS);
}

#[test]
fn kill_9_mid_apply_then_rerun_makes_no_duplicate() {
    let env = Env::new(DavKind::Radicale, PEOPLE, EVENTS);
    let mut child = start_and_wait(&env);
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let written = env.server.ics_files().len();
    assert!(
        written < PEOPLE * EVENTS,
        "the sync finished before it could be killed ({written} written)"
    );
    all_there_once(&env);
    // And once more: nothing to do.
    let r = env.sync();
    assert_eq!(
        r["unchanged"].as_u64(),
        Some((PEOPLE * EVENTS) as u64),
        "{r}"
    );
}

#[test]
fn server_restart_mid_run_is_recovered() {
    let mut env = Env::new(DavKind::Radicale, PEOPLE, EVENTS);
    let child = start_and_wait(&env);
    env.server.restart();
    // The run rides out the restart with retries or leaves the rest pending.
    let out = finish(child, "edusync sync");
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        describe(&out)
    );
    all_there_once(&env);
}
