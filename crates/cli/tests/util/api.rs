//! What the end-to-end tests of the API targets (Graph, Google) share: the
//! runtime their emulator runs on, the profile `teaching` they write from,
//! the timetables they sync, reading a calendar back by edusync's marker,
//! and running cycles until one applies cleanly. Each `<service>_common`
//! keeps only what is the service's own: its emulator, credential and
//! target keys, and where its marker lives on an event.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{days_from_now, wall, Env, Ev, Source};

pub const ALICE: &str = "alice@uni.example";
pub const BOB: &str = "bob@uni.example";
pub const CAROL: &str = "carol@uni.example";
pub const PROF: &str = "x.prof@uni.example";
pub const ALL: [&str; 4] = [ALICE, BOB, CAROL, PROF];

/// The runtime an emulator serves on inside a (synchronous) test; drop it
/// after the emulator.
pub fn emulator_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A config with the one profile `teaching` (SQLite state and source, a
/// year ahead, no deletion guard) writing to the target whose keys are
/// `target` (the lines after `[[profiles.targets]]`); `extra` lines go
/// inside `[[profiles]]`.
pub fn profile_config(extra: &str, target: &str) -> String {
    format!(
        r#"state = "sqlite://./state.db"

[[profiles]]
name = "teaching"
timezone = "Europe/London"
{extra}

[profiles.source]
url = "sqlite://./tt.db"
prefix = "tt_"

[profiles.window]
past_days = 7
future_days = 365

[profiles.guard]
max_delete_percent = 100

[[profiles.targets]]
{target}
"#
    )
}

/// Alice and Bob in group A, Carol in group B, Prof. X hosting.
/// E1 (A + host), E2 (A, B), E3 (B), E4 (A), all in the coming weeks.
pub fn chemistry_timetable(src: &Source) {
    src.person(
        "S1",
        "student",
        Some("Alice@Uni.example"),
        Some("Alice Adams"),
    );
    src.person("S2", "student", Some(BOB), None);
    src.person("S3", "student", Some(CAROL), None);
    src.person("L1", "staff", Some(PROF), Some("Prof. Xavier"));
    src.group("G-A", "CHEM1 Group A", &["S1", "S2"]);
    src.group("G-B", "CHEM1 Group B", &["S3"]);
    src.location("R1", "Room 1.14", Some("Chemistry Building"));
    let event = |id: &str, title: &str, day: i64, groups: &[&str]| {
        let mut e = Ev::new(
            id,
            title,
            &wall(days_from_now(day, 9)),
            &wall(days_from_now(day, 10)),
        );
        e.module_code = Some("CHEM1014".into());
        e.event_type = Some("Lecture".into());
        src.event(&e);
        for gr in groups {
            src.event_group(id, gr);
        }
        src.event_location(id, "R1");
    };
    event("E1", "Organic Chemistry", 3, &["G-A"]);
    src.event_person("E1", "L1", Some("host"), None);
    event("E2", "Lab Safety", 4, &["G-A", "G-B"]);
    event("E3", "Spectroscopy", 5, &["G-B"]);
    event("E4", "Tutorial", 6, &["G-A"]);
}

/// A timetable of `students` students (s01…@uni.example) in one group,
/// attending `events` one-hour events (B001…) on the days after tomorrow.
pub fn bulk_timetable(src: &Source, students: usize, events: usize) -> Vec<String> {
    let mut emails = Vec::new();
    let ids: Vec<String> = (1..=students).map(|i| format!("S{i:02}")).collect();
    for id in &ids {
        emails.push(src.student(id));
    }
    let members: Vec<&str> = ids.iter().map(String::as_str).collect();
    src.group("G-ALL", "Everyone", &members);
    for n in 0..events {
        let day = days_from_now(2 + (n / 8) as i64, 9 + (n % 8) as i8);
        let end = day.checked_add(jiff::ToSpan::hours(1)).unwrap();
        let id = format!("B{n:03}");
        src.event(&Ev::new(
            &id,
            &format!("Lecture {n}"),
            &wall(day),
            &wall(end),
        ));
        src.event_group(&id, "G-ALL");
    }
    emails
}

/// Expected holdings from `(person, [event ids])`.
pub fn expect(rows: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    rows.iter()
        .map(|(u, ids)| (u.to_string(), ids.iter().map(|s| s.to_string()).collect()))
        .collect()
}

/// The events of profile `teaching` among `events` (one calendar of
/// `who`), by event id, read from each event's marker
/// (`teaching/<event id>`). Fails on two events for one id: a duplicate.
pub fn by_event_id<E>(
    who: &str,
    events: Vec<E>,
    marker: impl Fn(&E) -> Option<String>,
    remote_id: impl Fn(&E) -> String,
) -> BTreeMap<String, E> {
    let mut out: BTreeMap<String, E> = BTreeMap::new();
    for e in events {
        let Some(key) = marker(&e) else { continue };
        let Some(id) = key.strip_prefix("teaching/") else {
            continue;
        };
        let id = id.to_string();
        if let Some(prev) = out.insert(id.clone(), e) {
            panic!(
                "{who}: two events for {id}: {} and {}",
                remote_id(&prev),
                remote_id(&out[&id])
            );
        }
    }
    out
}

/// Runs sync cycles of `teaching` until one applies with nothing failed
/// (at most `max`); a cycle may fail with work pending, nothing else.
pub fn sync_until_clean(env: &Env, max: usize) {
    for _ in 0..max {
        let out = env.sync_cmd("teaching").run();
        if out.code() == Some(0) {
            let r = &out.json_lines()[0];
            if r["status"] == "applied" && r["failed_ops"] == 0 {
                return;
            }
        }
        assert!(
            matches!(out.code(), Some(0) | Some(1)),
            "sync may fail with work pending, nothing else{}",
            out.describe()
        );
    }
    panic!("no clean cycle in {max} tries");
}

/// Waits until `f` holds, polling; fails after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
