//! Crash safety: `sync` killed with SIGKILL at many points, then run again,
//! leaves exactly the timetable in the calendars — no duplicates, nothing
//! missing, no half-written or temporary files — and nothing left to do.

mod util;

use std::collections::BTreeSet;
use std::time::Duration;

use util::{days_from_now, props, wall, Env, Ev, ProfileConf, Source};

const PEOPLE: usize = 200;
const GROUPS: usize = 10;
const EVENTS_PER_GROUP: usize = 30;

/// 200 students in 10 groups of 20; 30 events per group: 6,000 copies.
fn build(src: &Source) {
    src.exec("BEGIN");
    for p in 0..PEOPLE {
        src.student(&format!("S{p:03}"));
    }
    src.location("R1", "Room 1", Some("Old Building"));
    src.location("R2", "Room 2", Some("New Building"));
    for g in 0..GROUPS {
        let members: Vec<String> = (0..PEOPLE)
            .filter(|p| p % GROUPS == g)
            .map(|p| format!("S{p:03}"))
            .collect();
        let refs: Vec<&str> = members.iter().map(String::as_str).collect();
        src.group(&format!("G{g}"), &format!("Group {g}"), &refs);
        for e in 0..EVENTS_PER_GROUP {
            let id = format!("E{g}-{e:02}");
            let day = 1 + e as i64;
            src.event(&Ev::new(
                &id,
                &format!("Class {g}/{e}"),
                &wall(days_from_now(day, 9)),
                &wall(days_from_now(day, 10)),
            ));
            src.event_group(&id, &format!("G{g}"));
            src.event_location(&id, "R1");
        }
    }
    src.exec("COMMIT");
}

/// What the calendars must hold for the source as it now is.
fn expected(env: &Env) -> BTreeSet<(String, String)> {
    let src = env.source();
    let mut st = src
        .conn
        .prepare(
            "SELECT lower(p.email), eg.event_id FROM tt_event_groups eg \
             JOIN tt_group_members m ON m.group_id = eg.group_id \
             JOIN tt_people p ON p.person_id = m.person_id \
             JOIN tt_events e ON e.event_id = eg.event_id",
        )
        .unwrap();
    let rows = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows
}

/// Temp files in the vdir (names only: cheap enough to run after every kill).
fn temp_files(env: &Env) -> Vec<String> {
    let mut out = Vec::new();
    for person in std::fs::read_dir(env.cal()).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(person.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".ics") {
                out.push(format!("{}/{name}", person.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// Where to kill a sync: once stderr shows `after` (a progress line), plus `delay`.
struct KillPoint {
    after: &'static str,
    delay_ms: u64,
}

const fn at(after: &'static str, delay_ms: u64) -> KillPoint {
    KillPoint { after, delay_ms }
}

/// Runs `sync` once per kill point, SIGKILLing it there; returns how many
/// kills hit a sync that was still running.
fn kill_at(env: &Env, points: &[KillPoint], phase: &str) -> usize {
    let c = env.config_arg();
    let mut hits = 0;
    for (i, p) in points.iter().enumerate() {
        // Text output: progress lines on stderr mark the phases.
        let mut run = env
            .cmd(&["sync", "--config", &c, "--profile", "teaching"])
            .spawn();
        if !p.after.is_empty() {
            run.wait_for_stderr(p.after, Duration::from_secs(30));
        }
        std::thread::sleep(Duration::from_millis(p.delay_ms));
        let (was_running, out) = run.kill9();
        if was_running {
            hits += 1;
        } else {
            assert_eq!(
                out.code(),
                Some(0),
                "{phase}: run {i} ended on its own, badly{}",
                out.describe()
            );
        }
        eprintln!(
            "{phase}: kill {i} ({:?} + {} ms): {}; {} temp files",
            p.after,
            p.delay_ms,
            if was_running {
                "killed mid-run"
            } else {
                "had finished"
            },
            temp_files(env).len()
        );
    }
    hits
}

/// A run to completion, then the vdir must hold exactly the timetable, each
/// file whole, with nothing left to do. Returns the files.
fn finish_and_verify(env: &Env, phase: &str) -> util::Files {
    let r = env.sync("teaching");
    assert_eq!(r["failed_ops"], 0, "{phase}: {r}");
    let temps = temp_files(env);
    assert!(
        temps.is_empty(),
        "{phase}: temporary files left behind after a complete sync: {temps:?}"
    );
    let files = env.files();
    for ((folder, name), text) in &files {
        assert!(
            text.ends_with("END:VCALENDAR\r\n") && props(text).contains_key("X-EDUSYNC-MARKER"),
            "{phase}: {folder}/{name} is not a whole edusync event:\n{text}"
        );
    }
    let want = expected(env);
    let got = util::calendars_in(&files, "teaching");
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{phase}: missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(files.len(), want.len(), "{phase}: one file per copy");
    let plan = env.plan("teaching");
    for k in ["create", "update", "delete"] {
        assert_eq!(plan[k], 0, "{phase}: {k} left after the re-run: {plan}");
    }
    assert_eq!(
        plan["unchanged"].as_u64(),
        Some(want.len() as u64),
        "{phase}: {plan}"
    );
    files
}

#[test]
fn sync_killed_at_many_points_then_rerun_converges_exactly() {
    let env = Env::new();
    env.write_config(&[ProfileConf::default()]);
    build(&env.source());
    assert_eq!(expected(&env).len(), PEOPLE * EVENTS_PER_GROUP);

    // Phase 1: 6,000 creates. Killed at start-up, in each phase, and at
    // points through delivery; each run resumes what the last left.
    let points = [
        at("", 0),
        at("reading source", 0),
        at("planning", 0),
        at("applying", 0),
        at("applying", 40),
        at("applying", 150),
        at("applying", 400),
    ];
    let hits = kill_at(&env, &points, "creates");
    assert!(
        hits >= 4,
        "only {hits} of {} kills hit a running sync",
        points.len()
    );
    finish_and_verify(&env, "creates");

    // Phase 2: every event moves room, one group leaves, a new group arrives.
    let src = env.source();
    src.exec("BEGIN; UPDATE {p}event_locations SET location_id = 'R2'; DELETE FROM {p}group_members WHERE group_id = 'G9'; COMMIT");
    src.exec("BEGIN");
    src.group(
        "G-NEW",
        "New group",
        &["S000", "S001", "S002", "S003", "S004"],
    );
    for e in 0..20 {
        let id = format!("ENEW-{e:02}");
        src.event(&Ev::new(
            &id,
            "New class",
            &wall(days_from_now(2 + e, 14)),
            &wall(days_from_now(2 + e, 15)),
        ));
        src.event_group(&id, "G-NEW");
    }
    src.exec("COMMIT");
    drop(src);
    let plan = env.plan("teaching");
    assert_eq!(plan["delete"], 600, "{plan}");
    assert_eq!(plan["update"], 5400, "{plan}");
    assert_eq!(plan["create"], 100, "{plan}");
    let points = [
        at("checking calendars", 0),
        at("applying", 10),
        at("applying", 100),
        at("applying", 300),
    ];
    kill_at(&env, &points, "updates");
    let files = finish_and_verify(&env, "updates");
    for ((folder, name), text) in files {
        let p = props(&text);
        if !p["X-EDUSYNC-MARKER"].starts_with("teaching/ENEW") {
            let loc = p.get("LOCATION").cloned().unwrap_or_default();
            assert_eq!(
                loc, "Room 2, New Building",
                "{folder}/{name}: stale content after the re-run"
            );
        }
    }
}

/// What a SIGKILL in the middle of writing a file leaves: the event's
/// temporary file. It never counts as an event, and does not outlive the event.
#[test]
fn temp_files_of_writes_cut_short_never_count_and_are_cleaned_up() {
    let env = Env::new();
    env.write_config(&[ProfileConf::default()]);
    let src = env.source();
    src.student("S1");
    for id in ["E1", "E2"] {
        src.event(&Ev::new(
            id,
            id,
            &wall(days_from_now(2, 9)),
            &wall(days_from_now(2, 10)),
        ));
        src.event_person(id, "S1", None, None);
    }
    drop(src);
    env.sync("teaching");
    let folder = env.cal().join("s1@uni.example");
    let tmp_of = |id: &str| {
        let (name, _) = env.event_file("teaching", "s1@uni.example", id).unwrap();
        folder.join(format!(".{name}.tmp"))
    };
    let (tmp1, tmp2) = (tmp_of("E1"), tmp_of("E2"));
    for t in [&tmp1, &tmp2] {
        std::fs::write(
            t,
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:edus",
        )
        .unwrap();
    }
    // Not events: nothing to do, nothing doubled.
    let plan = env.plan("teaching");
    assert_eq!(
        (
            plan["create"].as_u64(),
            plan["update"].as_u64(),
            plan["delete"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{plan}"
    );
    env.sync("teaching");
    assert_eq!(env.calendars("teaching").len(), 2);

    // The event goes: so does its temporary file.
    env.source()
        .exec("DELETE FROM {p}events WHERE event_id = 'E1'");
    let r = env.sync("teaching");
    assert_eq!(r["delete"], 1, "{r}");
    assert!(
        !tmp1.exists(),
        "deleting the event removes its temporary file"
    );
    assert!(tmp2.exists());

    // Cleardown removes every trace of the profile.
    let c = env.config_arg();
    let out = env.ok(&[
        "cleardown",
        "--config",
        &c,
        "--profile",
        "teaching",
        "--yes",
    ]);
    assert!(
        out.stdout.contains("removed 1 events"),
        "{}",
        out.describe()
    );
    assert!(
        !tmp2.exists(),
        "cleardown removes the profile's temporary files"
    );
    assert!(
        temp_files(&env).is_empty() && env.files().is_empty(),
        "{:?}",
        env.files().keys()
    );
}
