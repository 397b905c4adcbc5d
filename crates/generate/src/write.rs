//! Writing the university into SQLite: the schema (tables for the two
//! profiles, `tt_` teaching and `ex_` exams, with `ex_` views over the
//! shared people, locations and groups), the rows, and the indexes.
//!
//! Design constraints:
//! * One transaction and one prepared statement per table; the file is a
//!   temporary one that is renamed into place only when complete, so the
//!   build runs with `journal_mode=OFF` and `synchronous=OFF`.
//! * Tables have no keys or unique constraints: the planted bad rows
//!   include duplicate and missing ids. Indexes for the joins a reader
//!   makes are created after the rows are in.
//! * Rows are inserted in one fixed order, so the same university gives
//!   the same tables.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rusqlite::{params, Connection, Statement};

use crate::calendar::{AcademicYear, Clock, TimeStyle, WEEKS_PER_TERM};
use crate::model::University;
use crate::names::DUBAI_TZ;
use crate::Inner;

/// The teaching profile's prefix.
pub(crate) const TEACHING: &str = "tt_";
/// The exams profile's prefix.
pub(crate) const EXAMS: &str = "ex_";

/// Chance that one teaching occurrence is cancelled.
const CANCEL_CHANCE: f64 = 0.004;
/// Candidates per invigilator.
const CANDIDATES_PER_INVIGILATOR: usize = 40;

/// Creates the tables and the `ex_` views over the shared ones.
pub(crate) fn create_schema(conn: &Connection) -> Result<(), Inner> {
    let mut sql = String::from(
        "CREATE TABLE tt_people (person_id TEXT, kind TEXT, email TEXT, display_name TEXT);
         CREATE TABLE tt_locations (location_id TEXT, name TEXT, building TEXT, campus TEXT, latitude REAL, longitude REAL);
         CREATE TABLE tt_groups (group_id TEXT, name TEXT, kind TEXT);
         CREATE TABLE tt_group_members (group_id TEXT, person_id TEXT);
         CREATE VIEW ex_people AS SELECT person_id, kind, email, display_name FROM tt_people;
         CREATE VIEW ex_locations AS SELECT location_id, name, building, campus, latitude, longitude FROM tt_locations;
         CREATE VIEW ex_groups AS SELECT group_id, name, kind FROM tt_groups;
         CREATE VIEW ex_group_members AS SELECT group_id, person_id FROM tt_group_members;
         CREATE TABLE edusync_generate_info (key TEXT, value TEXT);
        ",
    );
    for p in [TEACHING, EXAMS] {
        sql.push_str(&format!(
            "CREATE TABLE {p}events (event_id TEXT, title TEXT, event_type TEXT, module_code TEXT, module_name TEXT,
                 description TEXT, starts_at TEXT, ends_at TEXT, timezone TEXT, status TEXT);
             CREATE TABLE {p}event_groups (event_id TEXT, group_id TEXT);
             CREATE TABLE {p}event_people (event_id TEXT, person_id TEXT, role TEXT, note TEXT);
             CREATE TABLE {p}event_locations (event_id TEXT, location_id TEXT);
            "
        ));
    }
    conn.execute_batch(&sql)?;
    Ok(())
}

/// Indexes for the joins a reader makes (created after the bulk insert).
pub(crate) fn create_indexes(conn: &Connection) -> Result<(), Inner> {
    let mut sql = String::from(
        "CREATE INDEX tt_people_id ON tt_people (person_id);
         CREATE INDEX tt_locations_id ON tt_locations (location_id);
         CREATE INDEX tt_groups_id ON tt_groups (group_id);
         CREATE INDEX tt_group_members_group ON tt_group_members (group_id);
         CREATE INDEX tt_group_members_person ON tt_group_members (person_id);
        ",
    );
    for p in [TEACHING, EXAMS] {
        sql.push_str(&format!(
            "CREATE INDEX {p}events_id ON {p}events (event_id);
             CREATE INDEX {p}event_groups_event ON {p}event_groups (event_id);
             CREATE INDEX {p}event_groups_group ON {p}event_groups (group_id);
             CREATE INDEX {p}event_people_event ON {p}event_people (event_id);
             CREATE INDEX {p}event_people_person ON {p}event_people (person_id);
             CREATE INDEX {p}event_locations_event ON {p}event_locations (event_id);
            "
        ));
    }
    conn.execute_batch(&sql)?;
    Ok(())
}

/// One `events` row; every column may be NULL (bad rows use that).
#[derive(Default, Clone, Copy)]
pub(crate) struct EventRow<'a> {
    pub id: Option<&'a str>,
    pub title: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub module_code: Option<&'a str>,
    pub module_name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub starts_at: Option<&'a str>,
    pub ends_at: Option<&'a str>,
    pub timezone: Option<&'a str>,
    pub status: Option<&'a str>,
}

/// A person attached to an event: (person_id, role, note).
pub(crate) type Attached<'a> = (&'a str, Option<&'a str>, Option<&'a str>);

/// Prepared inserts for one profile's event tables.
pub(crate) struct EventSink<'c> {
    events: Statement<'c>,
    groups: Statement<'c>,
    people: Statement<'c>,
    locations: Statement<'c>,
}

impl<'c> EventSink<'c> {
    pub(crate) fn new(conn: &'c Connection, prefix: &str) -> Result<Self, Inner> {
        Ok(EventSink {
            events: conn.prepare(&format!(
                "INSERT INTO {prefix}events (event_id, title, event_type, module_code, module_name, description,
                     starts_at, ends_at, timezone, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?,
            groups: conn.prepare(&format!(
                "INSERT INTO {prefix}event_groups (event_id, group_id) VALUES (?1, ?2)"
            ))?,
            people: conn.prepare(&format!(
                "INSERT INTO {prefix}event_people (event_id, person_id, role, note) VALUES (?1, ?2, ?3, ?4)"
            ))?,
            locations: conn.prepare(&format!(
                "INSERT INTO {prefix}event_locations (event_id, location_id) VALUES (?1, ?2)"
            ))?,
        })
    }

    pub(crate) fn event(&mut self, e: &EventRow<'_>) -> Result<(), Inner> {
        self.events.execute(params![
            e.id,
            e.title,
            e.event_type,
            e.module_code,
            e.module_name,
            e.description,
            e.starts_at,
            e.ends_at,
            e.timezone,
            e.status
        ])?;
        Ok(())
    }

    pub(crate) fn group(&mut self, event: &str, group: &str) -> Result<(), Inner> {
        self.groups.execute(params![event, group])?;
        Ok(())
    }

    pub(crate) fn person(&mut self, event: &str, a: Attached<'_>) -> Result<(), Inner> {
        self.people.execute(params![event, a.0, a.1, a.2])?;
        Ok(())
    }

    pub(crate) fn location(&mut self, event: &str, location: &str) -> Result<(), Inner> {
        self.locations.execute(params![event, location])?;
        Ok(())
    }

    /// An event with its links.
    pub(crate) fn full(
        &mut self,
        e: &EventRow<'_>,
        groups: &[&str],
        people: &[Attached<'_>],
        locations: &[&str],
    ) -> Result<(), Inner> {
        self.event(e)?;
        let id = e.id.unwrap_or_default();
        for g in groups {
            self.group(id, g)?;
        }
        for p in people {
            self.person(id, *p)?;
        }
        for l in locations {
            self.location(id, l)?;
        }
        Ok(())
    }
}

/// Writes people, locations, groups and members (shared by both profiles).
pub(crate) fn write_shared(conn: &Connection, u: &University) -> Result<u64, Inner> {
    let mut rows = 0u64;
    let mut st = conn.prepare(
        "INSERT INTO tt_people (person_id, kind, email, display_name) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for p in &u.people {
        st.execute(params![p.id, p.kind, p.email, p.display])?;
        rows += 1;
    }
    let mut st = conn.prepare(
        "INSERT INTO tt_locations (location_id, name, building, campus, latitude, longitude) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for r in &u.rooms {
        st.execute(params![r.id, r.name, r.building, r.campus, r.lat, r.lon])?;
        rows += 1;
    }
    let mut st =
        conn.prepare("INSERT INTO tt_groups (group_id, name, kind) VALUES (?1, ?2, ?3)")?;
    for g in &u.groups {
        st.execute(params![g.id, g.name, g.kind])?;
        rows += 1;
    }
    let mut st =
        conn.prepare("INSERT INTO tt_group_members (group_id, person_id) VALUES (?1, ?2)")?;
    for g in &u.groups {
        for &m in &g.members {
            st.execute(params![g.id, u.people[m as usize].id])?;
            rows += 1;
        }
    }
    Ok(rows)
}

/// What writing the events produced.
#[derive(Default)]
pub(crate) struct Written {
    /// Usable event rows.
    pub events: u64,
    /// Person–event pairs of usable, not cancelled events.
    pub entries: u64,
    /// Ids of a few ordinary events, for the planted bad link rows.
    pub anchors: Vec<String>,
}

/// Per-series choices shared by every occurrence.
struct Series<'a> {
    style: TimeStyle,
    timezone: Option<&'a str>,
    status_null: bool,
}

impl Series<'_> {
    fn status(&self) -> Option<&'static str> {
        if self.status_null {
            None
        } else {
            Some("confirmed")
        }
    }
}

/// The teaching profile: lectures, seminars, personal-tutor meetings,
/// programme meetings and partner-campus live links.
pub(crate) fn write_teaching(
    sink: &mut EventSink<'_>,
    u: &University,
    ay: &AcademicYear,
    clock: &Clock,
    year_tag: &str,
    rng: &mut ChaCha8Rng,
) -> Result<Written, Inner> {
    let mut w = Written::default();
    let pid = |i: u32| u.people[i as usize].id.as_str();
    let host = Some("host");

    for m in &u.modules {
        let series = Series {
            style: m.style,
            timezone: m.tz_column.then_some("Europe/London"),
            status_null: m.status_null,
        };
        let module_group = u.groups[m.group].id.as_str();
        let mut lecture_groups: Vec<&str> = vec![module_group];
        lecture_groups.extend(m.cohort_groups.iter().map(|&g| u.groups[g].id.as_str()));
        let lecture_rooms: Vec<&str> = m
            .lecture_rooms
            .iter()
            .map(|&r| u.rooms[r].id.as_str())
            .collect();

        for week in 1..=WEEKS_PER_TERM {
            let date = ay.teaching_day(m.term, week, m.day)?;
            let id = format!("{year_tag}-{}-LEC-W{week:02}", m.code);
            let cancelled = rng.gen_bool(CANCEL_CHANCE);
            let revision = week == WEEKS_PER_TERM && m.tentative_revision;
            let title = if revision {
                format!("{} {}: Revision lecture", m.code, m.name)
            } else {
                format!("{} {}: Lecture", m.code, m.name)
            };
            let description = if cancelled {
                Some("Cancelled: the lecturer is unwell. Slides and a recording will be on the module page.".to_string())
            } else if m.online {
                Some("Online lecture: join from the module page.".to_string())
            } else if week == 1 {
                Some(format!(
                    "Introduction to {} ({} module) and its assessment.",
                    m.name,
                    if m.core { "core" } else { "optional" }
                ))
            } else if m.reading && week % 3 == 0 {
                Some(format!(
                    "Week {week}: read the chapter listed on the module page beforehand."
                ))
            } else {
                None
            };
            let status = if cancelled {
                Some("cancelled")
            } else if revision {
                Some("tentative")
            } else {
                series.status()
            };
            let starts = clock.format(date, m.lecture_hour, 0, series.style)?;
            let ends = clock.format(date, m.lecture_hour + m.lecture_hours, 0, series.style)?;
            let mut hosts: Vec<Attached<'_>> = Vec::with_capacity(2);
            match (m.co_lead, week) {
                (Some(co), 1) => {
                    hosts.push((pid(m.leader), host, None));
                    hosts.push((pid(co), host, None));
                }
                (Some(co), w) if w > 6 => hosts.push((pid(co), host, None)),
                _ => hosts.push((pid(m.leader), host, None)),
            }
            sink.full(
                &EventRow {
                    id: Some(&id),
                    title: Some(&title),
                    event_type: Some("lecture"),
                    module_code: Some(&m.code),
                    module_name: Some(&m.name),
                    description: description.as_deref(),
                    starts_at: Some(&starts),
                    ends_at: Some(&ends),
                    timezone: series.timezone,
                    status,
                },
                &lecture_groups,
                &hosts,
                &lecture_rooms,
            )?;
            w.events += 1;
            if !cancelled {
                w.entries += m.lecture_audience + hosts.len() as u64;
                if w.anchors.len() < 8 && week == 2 {
                    w.anchors.push(id);
                }
            }
        }

        for s in &m.seminars {
            let group = &u.groups[s.group];
            let room = u.rooms[s.room].id.as_str();
            let title = format!("{} {}: Seminar (group {})", m.code, m.name, s.number);
            for week in 2..=WEEKS_PER_TERM {
                let date = ay.teaching_day(m.term, week, m.day)?;
                let id = format!("{year_tag}-{}-SEM{:02}-W{week:02}", m.code, s.number);
                let cancelled = rng.gen_bool(CANCEL_CHANCE);
                let description = if cancelled {
                    Some("Cancelled this week; your tutor will arrange a catch-up.")
                } else if m.reading {
                    Some("Please complete the set reading before the seminar.")
                } else {
                    None
                };
                let starts = clock.format(date, s.hour, 0, series.style)?;
                let ends = clock.format(date, s.hour + 1, 0, series.style)?;
                sink.full(
                    &EventRow {
                        id: Some(&id),
                        title: Some(&title),
                        event_type: Some("seminar"),
                        module_code: Some(&m.code),
                        module_name: Some(&m.name),
                        description,
                        starts_at: Some(&starts),
                        ends_at: Some(&ends),
                        timezone: series.timezone,
                        status: if cancelled {
                            Some("cancelled")
                        } else {
                            series.status()
                        },
                    },
                    &[group.id.as_str()],
                    &[(pid(s.tutor), host, None)],
                    &[room],
                )?;
                w.events += 1;
                if !cancelled {
                    w.entries += group.members.len() as u64 + 1;
                }
            }
        }
    }

    // Fortnightly personal-tutor meetings, both terms.
    for t in &u.tutorials {
        let group = &u.groups[t.group];
        let room = u.rooms[t.room].id.as_str();
        let description = format!(
            "Fortnightly meeting with your personal tutor, {}.",
            u.people[t.tutor as usize].display
        );
        for term in 0..2 {
            for week in (1..=WEEKS_PER_TERM).step_by(2) {
                let date = ay.teaching_day(term, week, t.day)?;
                let id = format!("{year_tag}-{}-T{}W{week:02}", group.id, term + 1);
                let starts = clock.format(date, t.hour, 0, TimeStyle::Wall)?;
                let ends = clock.format(date, t.hour + 1, 0, TimeStyle::Wall)?;
                sink.full(
                    &EventRow {
                        id: Some(&id),
                        title: Some("Personal tutor meeting"),
                        event_type: Some("tutorial"),
                        description: Some(&description),
                        starts_at: Some(&starts),
                        ends_at: Some(&ends),
                        status: Some("confirmed"),
                        ..EventRow::default()
                    },
                    &[group.id.as_str()],
                    &[(pid(t.tutor), host, None)],
                    &[room],
                )?;
                w.events += 1;
                w.entries += group.members.len() as u64 + 1;
            }
        }
    }

    // Programme meetings (weeks 1 and 6) and, for the partner department,
    // live links with the Dubai campus (weeks 4 and 8, 13:00 Dubai time).
    for c in &u.cohorts {
        let group = &u.groups[c.group];
        let room = u.rooms[c.room].id.as_str();
        let partner_room = u.rooms[u.partner_room].id.as_str();
        for term in 0..2 {
            for week in [1u8, 6] {
                let date = ay.teaching_day(term, week, c.day)?;
                let id = format!("{year_tag}-{}-MTG-T{}W{week:02}", group.id, term + 1);
                let title = format!("{} Year {}: programme meeting", c.programme, c.year);
                let starts = clock.format(date, 14, 0, TimeStyle::Wall)?;
                let ends = clock.format(date, 15, 0, TimeStyle::Wall)?;
                sink.full(
                    &EventRow {
                        id: Some(&id),
                        title: Some(&title),
                        event_type: Some("meeting"),
                        description: (week == 1).then_some("Welcome, notices and a chance to raise anything with the programme director."),
                        starts_at: Some(&starts),
                        ends_at: Some(&ends),
                        status: Some("confirmed"),
                        ..EventRow::default()
                    },
                    &[group.id.as_str()],
                    &[(pid(c.director), host, None)],
                    &[room],
                )?;
                w.events += 1;
                w.entries += group.members.len() as u64 + 1;
            }
            if c.partner {
                for week in [4u8, 8] {
                    let date = ay.teaching_day(term, week, c.day)?;
                    let id = format!("{year_tag}-{}-DXB-T{}W{week:02}", group.id, term + 1);
                    let title = format!(
                        "{} Year {}: live link with Dubai campus",
                        c.programme, c.year
                    );
                    let starts = clock.format(date, 13, 0, TimeStyle::Wall)?;
                    let ends = clock.format(date, 14, 0, TimeStyle::Wall)?;
                    sink.full(
                        &EventRow {
                            id: Some(&id),
                            title: Some(&title),
                            event_type: Some("seminar"),
                            description: Some("Joint seminar with students at the Dubai campus; times are Dubai time (Asia/Dubai)."),
                            starts_at: Some(&starts),
                            ends_at: Some(&ends),
                            timezone: Some(DUBAI_TZ),
                            status: Some("confirmed"),
                            ..EventRow::default()
                        },
                        &[group.id.as_str()],
                        &[(pid(c.director), host, None)],
                        &[room, partner_room],
                    )?;
                    w.events += 1;
                    w.entries += group.members.len() as u64 + 1;
                }
            }
        }
    }
    Ok(w)
}

/// The exams profile: one exam per examined module, in the January diet
/// (term 1 modules) or the May–June diet (term 2 modules), candidates
/// seated individually.
pub(crate) fn write_exams(
    sink: &mut EventSink<'_>,
    u: &University,
    ay: &AcademicYear,
    clock: &Clock,
    year_tag: &str,
) -> Result<Written, Inner> {
    let mut w = Written::default();
    let mut hall_turn = 0usize;
    let mut invigilator_turn = 0usize;
    for m in &u.modules {
        let Some(exam) = &m.exam else { continue };
        let (days, diet) = if m.term == 0 {
            (&ay.january_diet, "JAN")
        } else {
            (&ay.summer_diet, "MAY")
        };
        let Some(&date) = days.get(exam.day) else {
            continue;
        };
        let candidates = &u.groups[m.group].members;
        if candidates.is_empty() {
            continue;
        }
        let id = format!("{year_tag}-EXAM-{}-{diet}", m.code);
        let title = format!("Exam: {} {}", m.code, m.name);
        let description = format!(
            "{}-hour written examination. Bring your student card; arrive 15 minutes early.",
            exam.hours
        );
        let starts = clock.format(date, exam.hour, exam.minute, m.style)?;
        let ends = clock.format(date, exam.hour + exam.hours, exam.minute, m.style)?;

        // Halls in rotation until everyone has a seat; seats are numbered
        // across the halls used.
        let mut halls: Vec<&str> = Vec::new();
        let mut seats = 0usize;
        while seats < candidates.len() && halls.len() < u.exam_halls.len() {
            let room = &u.rooms[u.exam_halls[hall_turn % u.exam_halls.len()]];
            hall_turn += 1;
            halls.push(room.id.as_str());
            seats += room.capacity as usize;
        }
        let notes: Vec<String> = (1..=candidates.len())
            .map(|n| format!("Seat {n}"))
            .collect();
        let mut people: Vec<Attached<'_>> = candidates
            .iter()
            .zip(&notes)
            .map(|(&c, note)| {
                (
                    u.people[c as usize].id.as_str(),
                    exam.candidate_role,
                    Some(note.as_str()),
                )
            })
            .collect();
        let invigilators = candidates
            .len()
            .div_ceil(CANDIDATES_PER_INVIGILATOR)
            .max(2)
            .min(u.all_staff.len());
        for _ in 0..invigilators {
            let s = u.all_staff[invigilator_turn % u.all_staff.len()];
            invigilator_turn += 1;
            people.push((u.people[s as usize].id.as_str(), Some("host"), None));
        }
        let groups: Vec<&str> = if exam.link_group {
            vec![u.groups[m.group].id.as_str()]
        } else {
            Vec::new()
        };
        sink.full(
            &EventRow {
                id: Some(&id),
                title: Some(&title),
                event_type: Some("exam"),
                module_code: Some(&m.code),
                module_name: Some(&m.name),
                description: Some(&description),
                starts_at: Some(&starts),
                ends_at: Some(&ends),
                timezone: m.tz_column.then_some("Europe/London"),
                status: if m.status_null {
                    None
                } else {
                    Some("confirmed")
                },
            },
            &groups,
            &people,
            &halls,
        )?;
        w.events += 1;
        w.entries += people.len() as u64;
        if w.anchors.len() < 8 {
            w.anchors.push(id);
        }
    }
    Ok(w)
}
