//! Tests of the generated SQLite file against the source contract: it is
//! deterministic, it scales, its times parse and come out right across the
//! clock changes, and exactly the planted rows are bad.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use edusync_generate::{
    default_start, generate, BadKind, BadRow, GenerateError, GenerateOptions, Summary,
};
use jiff::civil::{date, Date, DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rusqlite::types::Value;
use rusqlite::Connection;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TABLES: &[&str] = &[
    "tt_people",
    "tt_locations",
    "tt_groups",
    "tt_group_members",
    "tt_events",
    "tt_event_groups",
    "tt_event_people",
    "tt_event_locations",
    "ex_events",
    "ex_event_groups",
    "ex_event_people",
    "ex_event_locations",
    "ex_people",
    "ex_locations",
    "ex_groups",
    "ex_group_members",
    "edusync_generate_info",
];

fn is_view(name: &str) -> bool {
    matches!(
        name,
        "ex_people" | "ex_locations" | "ex_groups" | "ex_group_members"
    )
}

fn opts(students: u32, seed: u64) -> GenerateOptions {
    GenerateOptions {
        students,
        seed,
        start: default_start(date(2026, 11, 15)),
    }
}

fn make(dir: &Path, name: &str, o: &GenerateOptions) -> Result<(PathBuf, Summary), GenerateError> {
    let path = dir.join(name);
    let mut lines = Vec::new();
    let summary = generate(&path, o, &mut |l| lines.push(l.to_string()))?;
    assert!(!lines.is_empty(), "progress was never reported");
    Ok((path, summary))
}

/// Every row of every table and view, in insertion order.
fn dump(path: &Path) -> Result<Vec<String>, rusqlite::Error> {
    let conn = Connection::open(path)?;
    let mut out = Vec::new();
    for t in TABLES {
        // Views (ex_people, …) have no rowid: they list their table's rows.
        let order = if is_view(t) { "" } else { " ORDER BY rowid" };
        let mut st = conn.prepare(&format!("SELECT * FROM {t}{order}"))?;
        let n = st.column_count();
        let mut rows = st.query([])?;
        while let Some(row) = rows.next()? {
            let mut line = format!("{t}:");
            for i in 0..n {
                let v: Value = row.get(i)?;
                line.push_str(&format!(" {v:?}"));
            }
            out.push(line);
        }
    }
    Ok(out)
}

#[test]
fn same_seed_same_rows_other_seed_other_rows() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (a, sa) = make(dir.path(), "a.db", &opts(250, 7))?;
    let (b, sb) = make(dir.path(), "b.db", &opts(250, 7))?;
    let (c, _) = make(dir.path(), "c.db", &opts(250, 8))?;
    let (da, db, dc) = (dump(&a)?, dump(&b)?, dump(&c)?);
    assert!(da.len() > 10_000, "only {} rows", da.len());
    assert_eq!(sa, sb);
    assert!(da == db, "two runs with the same seed differ");
    assert!(da != dc, "two seeds gave the same rows");
    Ok(())
}

/// Distinct (event, person) pairs reached through groups or directly, over
/// existing people and events that are not cancelled.
fn attendance(conn: &Connection, p: &str) -> rusqlite::Result<u64> {
    conn.query_row(
        &format!(
            "SELECT COUNT(*) FROM (
               SELECT e.event_id, pe.person_id FROM {p}events e
                 JOIN {p}event_groups eg ON eg.event_id = e.event_id
                 JOIN {p}group_members gm ON gm.group_id = eg.group_id
                 JOIN {p}people pe ON pe.person_id = gm.person_id
                WHERE e.status IS NULL OR e.status <> 'cancelled'
               UNION
               SELECT e.event_id, pe.person_id FROM {p}events e
                 JOIN {p}event_people ep ON ep.event_id = e.event_id
                 JOIN {p}people pe ON pe.person_id = ep.person_id
                WHERE e.status IS NULL OR e.status <> 'cancelled')"
        ),
        [],
        |r| r.get(0),
    )
}

#[test]
fn entries_scale_with_students() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (path, s) = make(dir.path(), "t.db", &opts(2000, 1))?;
    assert_eq!(s.students, 2000);
    assert_eq!(s.staff, 100);
    assert_eq!(s.people, 2100);
    let conn = Connection::open(&path)?;
    let entries = attendance(&conn, "tt_")?;
    assert_eq!(entries, s.entries_estimate);
    let per_student = entries as f64 / 2000.0;
    assert!(
        (120.0..=170.0).contains(&per_student),
        "{per_student} entries per student"
    );
    assert_eq!(attendance(&conn, "ex_")?, s.exam_entries);
    assert!(s.exam_events > 50, "{} exams", s.exam_events);

    // Every student has a full programme: six modules and a tutor group.
    let (min, max): (i64, i64) = conn.query_row(
        "SELECT MIN(n), MAX(n) FROM (
           SELECT p.person_id, COUNT(*) AS n FROM tt_people p
             JOIN tt_group_members gm ON gm.person_id = p.person_id
             JOIN tt_groups g ON g.group_id = gm.group_id AND g.kind IN ('module', 'tutor')
            WHERE p.kind = 'student' GROUP BY p.person_id)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    assert_eq!((min, max), (7, 7));

    // Group kinds and seminar sizes.
    let kinds: Vec<String> = conn
        .prepare("SELECT DISTINCT kind FROM tt_groups ORDER BY kind")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    assert_eq!(kinds, ["cohort", "module", "seminar", "tutor"]);
    let biggest_seminar: i64 = conn.query_row(
        "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM tt_group_members gm
           JOIN tt_groups g ON g.group_id = gm.group_id WHERE g.kind = 'seminar' GROUP BY gm.group_id)",
        [],
        |r| r.get(0),
    )?;
    assert!(biggest_seminar <= 20, "{biggest_seminar}");
    Ok(())
}

/// A time as the contract reads it: with an offset, or wall clock in `tz`.
fn parse_time(s: &str, tz: &TimeZone) -> Option<Timestamp> {
    let has_offset = s.ends_with('Z') || (s.len() > 19 && matches!(s.as_bytes()[19], b'+' | b'-'));
    if has_offset {
        s.parse::<Timestamp>().ok()
    } else {
        let dt: DateTime = s.parse().ok()?;
        tz.to_timestamp(dt).ok()
    }
}

/// Sets aside rows the way the source contract says a sync must, and
/// returns what it set aside.
fn quarantine(conn: &Connection, p: &'static str) -> rusqlite::Result<Vec<BadRow>> {
    let view = |name: &str| -> &'static str {
        TABLES
            .iter()
            .copied()
            .find(|t| *t == format!("{p}{name}"))
            .unwrap_or("unknown")
    };
    let mut bad = Vec::new();
    let london = TimeZone::get("Europe/London").ok();

    // People.
    let mut people = BTreeSet::new();
    let mut st = conn.prepare(&format!("SELECT person_id, email FROM {p}people"))?;
    let rows: Vec<(Option<String>, Option<String>)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, email) in rows {
        match (id, email) {
            (None, _) => bad.push(BadRow {
                view: view("people"),
                id: String::new(),
                kind: BadKind::MissingId,
            }),
            (Some(id), Some(e)) if e.contains('@') => {
                people.insert(id);
            }
            (Some(id), _) => bad.push(BadRow {
                view: view("people"),
                id,
                kind: BadKind::PersonWithoutEmail,
            }),
        }
    }
    let ids = |sql: String| -> rusqlite::Result<BTreeSet<String>> {
        conn.prepare(&sql)?.query_map([], |r| r.get(0))?.collect()
    };
    let groups = ids(format!("SELECT group_id FROM {p}groups"))?;
    let locations = ids(format!("SELECT location_id FROM {p}locations"))?;

    // Events.
    let mut st = conn.prepare(&format!(
        "SELECT event_id, title, starts_at, ends_at, timezone FROM {p}events ORDER BY rowid"
    ))?;
    type Row = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = st
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (id, ..) in &rows {
        if let Some(id) = id {
            *seen.entry(id.clone()).or_default() += 1;
        }
    }
    let mut events = BTreeSet::new();
    let ev = view("events");
    for (id, title, starts, ends, zone) in rows {
        let Some(id) = id else {
            bad.push(BadRow {
                view: ev,
                id: String::new(),
                kind: BadKind::MissingId,
            });
            continue;
        };
        let mut flag = |kind| {
            bad.push(BadRow {
                view: ev,
                id: id.clone(),
                kind,
            })
        };
        if seen[&id] > 1 {
            flag(BadKind::DuplicateId);
            continue;
        }
        if title.is_none() {
            flag(BadKind::MissingTitle);
            continue;
        }
        let (Some(starts), Some(ends)) = (starts, ends) else {
            flag(BadKind::MissingTime);
            continue;
        };
        let tz = match &zone {
            Some(name) => match TimeZone::get(name) {
                Ok(tz) => tz,
                Err(_) => {
                    flag(BadKind::UnknownTimeZone);
                    continue;
                }
            },
            None => london.clone().unwrap_or(TimeZone::UTC),
        };
        let (Some(s), Some(e)) = (parse_time(&starts, &tz), parse_time(&ends, &tz)) else {
            flag(BadKind::UnparseableTime);
            continue;
        };
        if e < s {
            flag(BadKind::EndBeforeStart);
            continue;
        }
        if e.duration_since(s).as_secs() > 24 * 3600 {
            flag(BadKind::TooLong);
            continue;
        }
        events.insert(id);
    }

    // Link rows.
    let pairs = |sql: String| -> rusqlite::Result<Vec<(String, String)>> {
        conn.prepare(&sql)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    };
    for (g, person) in pairs(format!("SELECT group_id, person_id FROM {p}group_members"))? {
        let kind = if !groups.contains(&g) {
            BadKind::DanglingGroup
        } else if !people.contains(&person) {
            BadKind::DanglingPerson
        } else {
            continue;
        };
        bad.push(BadRow {
            view: view("group_members"),
            id: format!("{g}/{person}"),
            kind,
        });
    }
    for (table, col, known, kind) in [
        ("event_groups", "group_id", &groups, BadKind::DanglingGroup),
        (
            "event_people",
            "person_id",
            &people,
            BadKind::DanglingPerson,
        ),
        (
            "event_locations",
            "location_id",
            &locations,
            BadKind::DanglingLocation,
        ),
    ] {
        for (e, other) in pairs(format!("SELECT event_id, {col} FROM {p}{table}"))? {
            let kind = if !events.contains(&e) {
                BadKind::DanglingEvent
            } else if !known.contains(&other) {
                kind
            } else {
                continue;
            };
            bad.push(BadRow {
                view: view(table),
                id: format!("{e}/{other}"),
                kind,
            });
        }
    }
    Ok(bad)
}

fn sorted(mut v: Vec<BadRow>) -> Vec<(String, String, BadKind)> {
    v.sort_by(|a, b| (a.view, &a.id, a.kind).cmp(&(b.view, &b.id, b.kind)));
    v.into_iter()
        .map(|b| (b.view.to_string(), b.id, b.kind))
        .collect()
}

#[test]
fn exactly_the_planted_rows_are_bad_and_every_kind_is_planted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (path, s) = make(dir.path(), "t.db", &opts(300, 3))?;
    let conn = Connection::open(&path)?;
    for p in ["tt_", "ex_"] {
        let planted: Vec<BadRow> = s
            .bad_rows
            .iter()
            .filter(|b| b.view.starts_with(p))
            .cloned()
            .collect();
        let kinds: BTreeSet<BadKind> = planted.iter().map(|b| b.kind).collect();
        let expected: BTreeSet<BadKind> = BadKind::ALL.into_iter().collect();
        assert_eq!(kinds, expected, "{p}: kinds planted");
        for k in BadKind::ALL {
            assert!(
                planted.iter().filter(|b| b.kind == k).count() >= 2,
                "{p}: fewer than 2 {k}"
            );
        }
        let found = quarantine(&conn, p)?;
        assert_eq!(
            sorted(found),
            sorted(planted),
            "{p}: set-aside rows differ from the planted ones"
        );
        let rows: u64 =
            conn.query_row(&format!("SELECT COUNT(*) FROM {p}events"), [], |r| r.get(0))?;
        let bad_events = s
            .bad_rows
            .iter()
            .filter(|b| b.view == format!("{p}events"))
            .count() as u64;
        let usable = if p == "tt_" { s.events } else { s.exam_events };
        assert_eq!(rows, usable + bad_events, "{p}: event rows");
    }
    Ok(())
}

#[test]
fn people_are_unique_and_addressable() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (path, s) = make(dir.path(), "t.db", &opts(1500, 5))?;
    let conn = Connection::open(&path)?;
    let mut st = conn.prepare("SELECT person_id, kind, email, display_name FROM tt_people WHERE person_id NOT LIKE 'V%' AND person_id IS NOT NULL")?;
    let rows: Vec<(String, String, String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    assert_eq!(rows.len() as u64, s.people);
    let mut ids = BTreeSet::new();
    let mut emails = BTreeSet::new();
    for (id, kind, email, name) in &rows {
        assert!(ids.insert(id.clone()), "duplicate person_id {id}");
        assert!(emails.insert(email.clone()), "duplicate email {email}");
        assert_eq!(email, &email.to_lowercase());
        let domain = if kind == "student" {
            "@students.example.ac.uk"
        } else {
            "@example.ac.uk"
        };
        assert!(email.ends_with(domain), "{email}");
        let local = email.trim_end_matches(domain);
        assert!(
            local.split('.').count() == 2
                && local
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "{email}"
        );
        assert!(!name.is_empty());
    }
    assert_eq!(
        rows.iter().filter(|r| r.1 == "staff").count() as u64,
        s.staff
    );
    Ok(())
}

/// The last Sunday of `month` in `year`.
fn last_sunday(year: i16, month: i8) -> Date {
    Date::new(year, month, 1)
        .and_then(|d| d.nth_weekday_of_month(-1, Weekday::Sunday))
        .expect("valid month")
}

#[test]
fn times_come_out_right_across_the_clock_changes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let o = opts(300, 11);
    assert_eq!(o.start, date(2026, 9, 28));
    let (path, s) = make(dir.path(), "t.db", &o)?;
    let conn = Connection::open(&path)?;
    let bad_ids: BTreeSet<&str> = s.bad_rows.iter().map(|b| b.id.as_str()).collect();

    // A 09:00 wall-clock lecture in the week after the October change.
    let monday = last_sunday(2026, 10).tomorrow()?;
    let friday = monday.checked_add(jiff::Span::new().days(4))?;
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM tt_events WHERE event_type = 'lecture'
           AND starts_at BETWEEN ?1 AND ?2 AND starts_at LIKE '% 09:00:00'",
        [format!("{monday} 00:00:00"), format!("{friday} 23:59:59")],
        |r| r.get(0),
    )?;
    assert!(n > 0, "no 09:00 lecture in the week of {monday}");

    // Every usable time parses; series in UTC show the clock change.
    let london = TimeZone::get("Europe/London")?;
    let mut st = conn.prepare("SELECT event_id, starts_at, ends_at, timezone, event_type FROM tt_events WHERE event_id IS NOT NULL")?;
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
    );
    let rows: Vec<Row> = st
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut styles: BTreeMap<&str, usize> = BTreeMap::new();
    let mut utc_hours = BTreeSet::new();
    let mut zones = BTreeSet::new();
    for (id, starts, ends, zone, kind) in &rows {
        let (Some(starts), Some(ends)) = (starts, ends) else {
            assert!(bad_ids.contains(id.as_str()), "{id} has no time");
            continue;
        };
        if bad_ids.contains(id.as_str()) {
            continue;
        }
        let tz = match zone {
            Some(z) => {
                zones.insert(z.clone());
                TimeZone::get(z)?
            }
            None => london.clone(),
        };
        let (Some(a), Some(b)) = (parse_time(starts, &tz), parse_time(ends, &tz)) else {
            panic!("{id}: {starts} / {ends} do not parse");
        };
        assert!(a < b, "{id}");
        let local = a.to_zoned(london.clone());
        assert!((8..=18).contains(&local.hour()), "{id} at {local}");
        let style = if starts.ends_with('Z') {
            "utc"
        } else if starts.contains('T') {
            "offset"
        } else {
            "wall"
        };
        *styles.entry(style).or_default() += 1;
        if style == "utc" && kind == "lecture" {
            utc_hours.insert((local.hour(), a.to_zoned(TimeZone::UTC).hour()));
        }
    }
    assert!(
        styles["wall"] > styles["offset"] + styles["utc"],
        "{styles:?}"
    );
    assert!(styles["offset"] > 0 && styles["utc"] > 0, "{styles:?}");
    // A weekly lecture written in UTC keeps its London hour, so its UTC
    // hour moves with the clock changes: 09:00Z in winter, 08:00Z in summer.
    assert!(!utc_hours.is_empty());
    for &(local, _) in &utc_hours {
        assert!((9..=10).contains(&local), "{utc_hours:?}");
        assert!(
            utc_hours.contains(&(local, local)) && utc_hours.contains(&(local, local - 1)),
            "UTC rows do not follow the London clock changes: {utc_hours:?}"
        );
    }
    assert!(
        zones.contains("Asia/Dubai") && zones.contains("Europe/London"),
        "{zones:?}"
    );

    // Term 2 spans the March change; a few tentative and cancelled rows.
    let march = last_sunday(2027, 3);
    let around: i64 = conn.query_row(
        "SELECT COUNT(*) FROM tt_events WHERE substr(starts_at, 1, 10) BETWEEN ?1 AND ?2",
        [
            march.checked_sub(jiff::Span::new().days(6))?.to_string(),
            march.checked_add(jiff::Span::new().days(6))?.to_string(),
        ],
        |r| r.get(0),
    )?;
    assert!(around > 50, "{around} events around {march}");
    for status in ["tentative", "cancelled"] {
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM tt_events WHERE status = ?1",
            [status],
            |r| r.get(0),
        )?;
        assert!(n > 0, "no {status} events");
    }

    // Exams: January and May–June, seats noted, invigilators host.
    let months: BTreeSet<String> = conn
        .prepare("SELECT DISTINCT substr(starts_at, 1, 7) FROM ex_events WHERE event_id LIKE '%-JAN' OR event_id LIKE '%-MAY'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    assert!(
        months.contains("2027-01") && months.contains("2027-05"),
        "{months:?}"
    );
    let (seats, hosts): (i64, i64) = conn.query_row(
        "SELECT SUM(note LIKE 'Seat %'), SUM(role = 'host') FROM ex_event_people",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    assert!(seats > 300 && hosts > 0, "{seats} seats, {hosts} hosts");
    Ok(())
}

#[test]
fn replaces_the_output_and_rejects_bad_options() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("t.db");
    std::fs::write(&out, "not a database")?;
    std::fs::write(dir.path().join("t.db.tmp"), "leftover")?;
    let s = generate(&out, &opts(50, 1), &mut |_| {})?;
    assert!(s.events > 0);
    assert!(!dir.path().join("t.db.tmp").exists());
    let conn = Connection::open(&out)?;
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM tt_people", [], |r| r.get(0))?;
    assert!(n > 50);

    let err = generate(&out, &opts(0, 1), &mut |_| {})
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|e| e.contains("--students 0")),
        "{err:?}"
    );
    let missing = dir.path().join("no-such-folder").join("t.db");
    let err = generate(&missing, &opts(10, 1), &mut |_| {})
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|e| e.contains("no-such-folder")),
        "{err:?}"
    );
    Ok(())
}
