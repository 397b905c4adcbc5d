//! The synthetic university, built in memory before anything is written:
//! departments with programmes and year levels, students and staff, rooms,
//! groups (cohort, module, seminar, tutor) and the weekly pattern of every
//! activity (which day, hour and room).
//!
//! Everything is drawn from one seeded [`ChaCha8Rng`] in a fixed order and
//! kept in `Vec`s (never iterated out of a hash map), so the same options
//! give the same university.
//!
//! Weekly pattern, per department and year level (`dy` below):
//! * each of the four modules on offer in a term has its own day,
//!   `(slot + dy) % 5`: a lecture in the morning, seminars in the afternoon,
//!   so a student's own activities never clash;
//! * the remaining day holds the fortnightly personal-tutor meetings
//!   (morning) and the occasional programme meeting (afternoon).

use std::collections::{HashMap, HashSet};

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::calendar::TimeStyle;
use crate::names::{
    Campus, Department, CITY, DEPARTMENTS, DUBAI, FIRST_NAMES, LAST_NAMES, RIVERSIDE,
};

/// Students in one seminar group, at most.
const SEMINAR_SIZE: usize = 20;
/// Students in one personal-tutor group, at most.
const TUTOR_GROUP_SIZE: usize = 10;
/// One department is opened per this many students (at least 3, at most
/// all of [`DEPARTMENTS`]).
const STUDENTS_PER_DEPARTMENT: u32 = 2000;
/// Staff ≈ students / this.
const STUDENTS_PER_STAFF: u32 = 20;
/// Year levels of every programme.
pub(crate) const YEARS: u8 = 3;
/// Modules on offer per department, year level and term (two core, two
/// options of which a student takes one).
const SLOTS: u8 = 4;
/// Index in [`DEPARTMENTS`] of the department whose cohorts have live-link
/// sessions with the partner campus (always opened: at least 3 are).
const PARTNER_DEPARTMENT: usize = 2;
/// Lectures for more students than this are streamed to a second theatre.
const STREAM_ABOVE: usize = 250;

/// Student e-mail domain.
pub(crate) const STUDENT_DOMAIN: &str = "students.example.ac.uk";
/// Staff e-mail domain.
pub(crate) const STAFF_DOMAIN: &str = "example.ac.uk";

/// A row of `tt_people`.
pub(crate) struct Person {
    pub id: String,
    pub kind: &'static str,
    pub email: String,
    pub display: String,
}

/// What a room is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoomKind {
    Theatre,
    Seminar,
    ExamHall,
    Partner,
}

/// A row of `tt_locations`.
pub(crate) struct Room {
    pub id: String,
    pub name: String,
    pub building: &'static str,
    pub campus: &'static str,
    pub lat: f64,
    pub lon: f64,
    pub kind: RoomKind,
    pub capacity: u32,
    /// The department whose building this is, if any.
    pub home: Option<usize>,
}

/// A row of `tt_groups` with its members (indexes into `people`).
pub(crate) struct Group {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub members: Vec<u32>,
}

/// One seminar group of a module.
pub(crate) struct Seminar {
    pub group: usize,
    pub number: usize,
    pub tutor: u32,
    pub hour: i8,
    pub room: usize,
}

/// How a module's exam is held.
pub(crate) struct ExamPlan {
    /// Index into the diet's days.
    pub day: usize,
    pub hour: i8,
    pub minute: i8,
    pub hours: i8,
    /// Also link the module group (students then reach the exam twice).
    pub link_group: bool,
    /// Candidates' `role`: `None` or `Some("candidate")`.
    pub candidate_role: Option<&'static str>,
}

/// A module and the weekly pattern of its teaching.
pub(crate) struct Module {
    pub code: String,
    pub name: String,
    pub term: usize,
    pub core: bool,
    /// The module group (everyone enrolled).
    pub group: usize,
    /// Cohort groups also linked to the lecture (core modules only).
    pub cohort_groups: Vec<usize>,
    pub seminars: Vec<Seminar>,
    pub leader: u32,
    pub co_lead: Option<u32>,
    pub style: TimeStyle,
    /// Write `Europe/London` into the `timezone` column.
    pub tz_column: bool,
    /// Leave `status` NULL (the contract's default, confirmed).
    pub status_null: bool,
    /// Lectures are online: no location.
    pub online: bool,
    /// Week-11 lecture is a tentative revision lecture.
    pub tentative_revision: bool,
    /// Seminar descriptions mention reading.
    pub reading: bool,
    pub day: u8,
    pub lecture_hour: i8,
    pub lecture_hours: i8,
    /// Zero (online), one or two (streamed) theatres.
    pub lecture_rooms: Vec<usize>,
    /// Distinct students reaching a lecture.
    pub lecture_audience: u64,
    pub exam: Option<ExamPlan>,
}

/// A fortnightly personal-tutor group.
pub(crate) struct Tutorial {
    pub group: usize,
    pub tutor: u32,
    pub day: u8,
    pub hour: i8,
    pub room: usize,
}

/// A programme cohort (programme and year level).
pub(crate) struct Cohort {
    pub group: usize,
    pub dept: usize,
    pub programme: &'static str,
    pub year: u8,
    pub director: u32,
    pub day: u8,
    pub room: usize,
    /// Has live-link sessions with the partner campus.
    pub partner: bool,
}

/// The whole synthetic university.
pub(crate) struct University {
    pub people: Vec<Person>,
    pub students: u64,
    pub staff: u64,
    /// All staff, for invigilation.
    pub all_staff: Vec<u32>,
    pub rooms: Vec<Room>,
    pub groups: Vec<Group>,
    pub cohorts: Vec<Cohort>,
    pub modules: Vec<Module>,
    pub tutorials: Vec<Tutorial>,
    /// Exam halls, in rotation order.
    pub exam_halls: Vec<usize>,
    /// The partner-campus room for live links.
    pub partner_room: usize,
}

/// Local part of an e-mail address: lower case, accents folded, anything
/// but letters, digits and hyphens dropped.
pub(crate) fn email_local_part(first: &str, last: &str) -> String {
    fn clean(s: &str) -> String {
        s.chars()
            .flat_map(char::to_lowercase)
            .map(|c| match c {
                'à' | 'á' | 'â' | 'ä' | 'ã' => 'a',
                'è' | 'é' | 'ê' | 'ë' => 'e',
                'ì' | 'í' | 'î' | 'ï' => 'i',
                'ò' | 'ó' | 'ô' | 'ö' | 'õ' => 'o',
                'ù' | 'ú' | 'û' | 'ü' => 'u',
                other => other,
            })
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect()
    }
    format!("{}.{}", clean(first), clean(last))
}

/// Hands out unique addresses: `anna.lee@…`, then `anna.lee2@…`, ….
/// Local parts built from names never end in a digit, so a numbered
/// address cannot collide with another person's plain one.
#[derive(Default)]
struct Emails {
    seen: HashMap<String, u32>,
}

impl Emails {
    fn issue(&mut self, first: &str, last: &str, domain: &str) -> String {
        let local = email_local_part(first, last);
        let n = self.seen.entry(format!("{local}@{domain}")).or_insert(0);
        *n += 1;
        if *n == 1 {
            format!("{local}@{domain}")
        } else {
            format!("{local}{n}@{domain}")
        }
    }
}

/// Weekly room bookings: (room, term, day, hour).
#[derive(Default)]
struct Bookings {
    taken: HashSet<(usize, usize, u8, i8)>,
}

impl Bookings {
    /// The first of `candidates` free for `hours` hours from `hour`, booked;
    /// if all are taken, the first candidate (a clash, as happens).
    fn book(
        &mut self,
        candidates: &[usize],
        term: usize,
        day: u8,
        hour: i8,
        hours: i8,
    ) -> Option<usize> {
        let free = candidates
            .iter()
            .copied()
            .find(|&r| (hour..hour + hours).all(|h| !self.taken.contains(&(r, term, day, h))));
        let room = free.or_else(|| candidates.first().copied())?;
        for h in hour..hour + hours {
            self.taken.insert((room, term, day, h));
        }
        Some(room)
    }
}

/// Three-letter building codes, made unique with a digit.
fn building_code(building: &str, used: &mut HashSet<String>) -> String {
    let word = building
        .split_whitespace()
        .find(|w| !matches!(*w, "Sir" | "The"))
        .unwrap_or(building);
    let base: String = word
        .chars()
        .filter(char::is_ascii_alphabetic)
        .take(3)
        .collect::<String>()
        .to_ascii_uppercase();
    let mut code = base.clone();
    let mut n = 2;
    while !used.insert(code.clone()) {
        code = format!("{base}{n}");
        n += 1;
    }
    code
}

struct RoomBuilder<'a> {
    rooms: Vec<Room>,
    used_codes: HashSet<String>,
    rng: &'a mut ChaCha8Rng,
}

impl RoomBuilder<'_> {
    /// Adds a building; `rooms` lists (room code, room name, kind, capacity).
    fn building(
        &mut self,
        name: &'static str,
        campus: &'static Campus,
        home: Option<usize>,
        rooms: &[(String, String, RoomKind, u32)],
    ) -> Vec<usize> {
        let code = building_code(name, &mut self.used_codes);
        let lat = campus.lat + self.rng.gen_range(-0.004..0.004);
        let lon = campus.lon + self.rng.gen_range(-0.006..0.006);
        let mut out = Vec::new();
        for (room_code, room_name, kind, capacity) in rooms {
            out.push(self.rooms.len());
            self.rooms.push(Room {
                id: format!("{code}-{room_code}"),
                name: room_name.clone(),
                building: name,
                campus: campus.name,
                lat: (lat * 1e6).round() / 1e6,
                lon: (lon * 1e6).round() / 1e6,
                kind: *kind,
                capacity: *capacity,
                home,
            });
        }
        out
    }
}

fn theatre(n: u32, capacity: u32) -> (String, String, RoomKind, u32) {
    (
        format!("LT{n}"),
        format!("Lecture Theatre {n}"),
        RoomKind::Theatre,
        capacity,
    )
}

fn seminar_rooms(floors: u32, per_floor: u32) -> Vec<(String, String, RoomKind, u32)> {
    let mut v = Vec::new();
    for f in 1..=floors {
        for r in 1..=per_floor {
            let code = format!("{f}.{:02}", r + 10 * (f % 2));
            v.push((code.clone(), format!("Room {code}"), RoomKind::Seminar, 30));
        }
    }
    v
}

fn hall(code: &str, name: &str, capacity: u32) -> (String, String, RoomKind, u32) {
    (
        code.to_string(),
        name.to_string(),
        RoomKind::ExamHall,
        capacity,
    )
}

/// Picks from a weighted list of department indexes.
fn pick_weighted(rng: &mut ChaCha8Rng, weights: &[u32], total: u32) -> usize {
    let mut x = rng.gen_range(0..total.max(1));
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len().saturating_sub(1)
}

fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list.choose(rng).copied().unwrap_or("Alex")
}

/// Builds the university for `students` students in the academic year
/// starting in `year`.
pub(crate) fn build(students: u32, year: i16, rng: &mut ChaCha8Rng) -> University {
    let n_depts = students
        .div_ceil(STUDENTS_PER_DEPARTMENT)
        .clamp(3, DEPARTMENTS.len() as u32) as usize;
    let depts: &[Department] = &DEPARTMENTS[..n_depts];

    // Rooms: a home building per department on alternating campuses, a
    // shared teaching centre, exam venues and the partner campus.
    let mut rb = RoomBuilder {
        rooms: Vec::new(),
        used_codes: HashSet::new(),
        rng: &mut *rng,
    };
    let mut dept_theatres = Vec::new();
    let mut dept_seminar_rooms = Vec::new();
    for (i, d) in depts.iter().enumerate() {
        let campus = if i % 2 == 0 { &CITY } else { &RIVERSIDE };
        let mut spec = vec![theatre(1, 300), theatre(2, 150)];
        spec.extend(seminar_rooms(3, 4));
        let ids = rb.building(d.building, campus, Some(i), &spec);
        dept_theatres.push(ids[..2].to_vec());
        dept_seminar_rooms.push(ids[2..].to_vec());
    }
    let centre_rooms = (n_depts as u32 / 3).max(1);
    let mut spec: Vec<_> = (1..=4).map(|n| theatre(n, 400)).collect();
    spec.extend(seminar_rooms(3 * centre_rooms, 6));
    let centre = rb.building("Teaching Centre", &CITY, None, &spec);
    let centre_theatres: Vec<usize> = centre[..4].to_vec();
    let centre_seminar_rooms: Vec<usize> = centre[4..].to_vec();
    let mut exam_halls = rb.building(
        "Main Building",
        &CITY,
        None,
        &[hall("GH", "Great Hall", 350)],
    );
    exam_halls.extend(rb.building(
        "Examination Centre",
        &CITY,
        None,
        &[
            hall("EHA", "Exam Hall A", 250),
            hall("EHB", "Exam Hall B", 250),
        ],
    ));
    exam_halls.extend(rb.building(
        "Sports Centre",
        &RIVERSIDE,
        None,
        &[hall("SH", "Sports Hall", 450)],
    ));
    let partner = rb.building(
        "Academic Block 2",
        &DUBAI,
        None,
        &[(
            "G.12".to_string(),
            "Room G.12 (live-link studio)".to_string(),
            RoomKind::Partner,
            60,
        )],
    );
    let partner_room = partner[0];
    let rooms = rb.rooms;
    let all_theatres: Vec<usize> = (0..rooms.len())
        .filter(|&r| rooms[r].kind == RoomKind::Theatre)
        .collect();
    let all_seminar: Vec<usize> = (0..rooms.len())
        .filter(|&r| rooms[r].kind == RoomKind::Seminar)
        .collect();
    let theatre_candidates = |d: usize| -> Vec<usize> {
        let mut v = dept_theatres[d].clone();
        v.extend(&centre_theatres);
        v.extend(
            all_theatres
                .iter()
                .copied()
                .filter(|r| rooms[*r].home != Some(d)),
        );
        v
    };
    let seminar_candidates = |d: usize| -> Vec<usize> {
        let mut v = dept_seminar_rooms[d].clone();
        v.extend(&centre_seminar_rooms);
        v.extend(
            all_seminar
                .iter()
                .copied()
                .filter(|r| rooms[*r].home != Some(d)),
        );
        v
    };

    // Students.
    let weights: Vec<u32> = (0..n_depts).map(|_| rng.gen_range(60..140)).collect();
    let total: u32 = weights.iter().sum();
    let mut people =
        Vec::with_capacity(students as usize + (students / STUDENTS_PER_STAFF) as usize + 64);
    let mut emails = Emails::default();
    let mut entry_counters = [0u32; YEARS as usize];
    // (dept, year, programme) per student, by person index.
    let mut placement: Vec<(usize, u8, usize)> = Vec::with_capacity(students as usize);
    for _ in 0..students {
        let d = pick_weighted(rng, &weights, total);
        let y: u8 = rng.gen_range(1..=YEARS);
        let p = usize::from(rng.gen_range(0..100) >= 65);
        let first = pick(rng, FIRST_NAMES);
        let last = pick(rng, LAST_NAMES);
        let counter = &mut entry_counters[usize::from(y - 1)];
        *counter += 1;
        let entry_year = i32::from(year) - i32::from(y - 1);
        people.push(Person {
            id: format!("{entry_year}{:05}", *counter),
            kind: "student",
            email: emails.issue(first, last, STUDENT_DOMAIN),
            display: format!("{first} {last}"),
        });
        placement.push((d, y, p));
    }

    // Staff, round-robin over departments.
    let n_staff = (students / STUDENTS_PER_STAFF).max(2 * n_depts as u32);
    let mut staff_by_dept: Vec<Vec<u32>> = vec![Vec::new(); n_depts];
    let mut all_staff = Vec::new();
    for j in 0..n_staff {
        let first = pick(rng, FIRST_NAMES);
        let last = pick(rng, LAST_NAMES);
        let title = match rng.gen_range(0..100) {
            0..=14 => "Prof ",
            15..=69 => "Dr ",
            _ => "",
        };
        let idx = people.len() as u32;
        people.push(Person {
            id: format!("E{:05}", 10_000 + j),
            kind: "staff",
            email: emails.issue(first, last, STAFF_DOMAIN),
            display: format!("{title}{first} {last}"),
        });
        staff_by_dept[j as usize % n_depts].push(idx);
        all_staff.push(idx);
    }
    let staff_of = |d: usize, k: usize| -> u32 {
        let list = &staff_by_dept[d];
        list[k % list.len()]
    };

    let mut groups: Vec<Group> = Vec::new();
    let mut bookings = Bookings::default();

    // Cohorts: programme × year level.
    let mut cohorts = Vec::new();
    // cohort indexes per (dept, year)
    let mut cohorts_of: Vec<Vec<Vec<usize>>> = vec![vec![Vec::new(); usize::from(YEARS)]; n_depts];
    for (d, dept) in depts.iter().enumerate() {
        for y in 1..=YEARS {
            let dy = d * usize::from(YEARS) + usize::from(y - 1);
            let free_day = ((4 + dy) % 5) as u8;
            for (p, programme) in dept.programmes.iter().enumerate() {
                let members: Vec<u32> = placement
                    .iter()
                    .enumerate()
                    .filter(|(_, &(pd, py, pp))| pd == d && py == y && pp == p)
                    .map(|(i, _)| i as u32)
                    .collect();
                let group = groups.len();
                groups.push(Group {
                    id: format!("COH-{}{}-Y{y}", dept.code, p + 1),
                    name: format!("{programme} Year {y}"),
                    kind: "cohort",
                    members,
                });
                let room = bookings
                    .book(&theatre_candidates(d), 0, free_day, 14, 1)
                    .unwrap_or(0);
                cohorts_of[d][usize::from(y - 1)].push(cohorts.len());
                cohorts.push(Cohort {
                    group,
                    dept: d,
                    programme,
                    year: y,
                    director: staff_of(d, p),
                    day: free_day,
                    room,
                    partner: d == PARTNER_DEPARTMENT,
                });
            }
        }
    }

    // Modules, seminar groups.
    let mut modules = Vec::new();
    let mut module_counter = 0usize;
    for (d, dept) in depts.iter().enumerate() {
        for y in 1..=YEARS {
            let dy = d * usize::from(YEARS) + usize::from(y - 1);
            let dept_year: Vec<u32> = placement
                .iter()
                .enumerate()
                .filter(|(_, &(pd, py, _))| pd == d && py == y)
                .map(|(i, _)| i as u32)
                .collect();
            for term in 0..2usize {
                // Each student takes both core modules and one option.
                let option_of: Vec<u8> =
                    dept_year.iter().map(|_| rng.gen_range(2..SLOTS)).collect();
                for slot in 0..SLOTS {
                    let topic = dept.topics[term * usize::from(SLOTS) + usize::from(slot)];
                    let name = match y {
                        1 => format!("{topic} I"),
                        2 => format!("{topic} II"),
                        _ => format!("Advanced {topic}"),
                    };
                    let code = format!(
                        "{}{y}{:02}{}",
                        dept.code,
                        term * usize::from(SLOTS) + usize::from(slot) + 1,
                        rng.gen_range(1..=9)
                    );
                    let core = slot < 2;
                    let members: Vec<u32> = dept_year
                        .iter()
                        .zip(&option_of)
                        .filter(|(_, &o)| core || o == slot)
                        .map(|(&s, _)| s)
                        .collect();
                    let audience = members.len();
                    let group = groups.len();
                    groups.push(Group {
                        id: format!("MOD-{code}"),
                        name: format!("{code} {name}"),
                        kind: "module",
                        members: members.clone(),
                    });
                    let day = ((usize::from(slot) + dy) % 5) as u8;
                    let k = term * usize::from(SLOTS) + usize::from(slot) + usize::from(y) * 8;
                    let leader = staff_of(d, k);
                    let co = staff_of(d, k + 1);
                    let co_lead = (co != leader && rng.gen_bool(0.6)).then_some(co);
                    let lecture_hour = 9 + ((dy + usize::from(slot)) % 2) as i8;
                    let lecture_hours = if rng.gen_bool(0.25) { 2 } else { 1 };
                    let online = rng.gen_range(0..100) < 6;
                    let streamed = audience > STREAM_ABOVE || (d == 0 && y == 1 && slot == 0);
                    let mut lecture_rooms = Vec::new();
                    if !online {
                        let cands = theatre_candidates(d);
                        if let Some(r) =
                            bookings.book(&cands, term, day, lecture_hour, lecture_hours)
                        {
                            lecture_rooms.push(r);
                            if streamed {
                                let rest: Vec<usize> =
                                    cands.iter().copied().filter(|&c| c != r).collect();
                                if let Some(r2) =
                                    bookings.book(&rest, term, day, lecture_hour, lecture_hours)
                                {
                                    lecture_rooms.push(r2);
                                }
                            }
                        }
                    }

                    // Seminar groups: shuffled, dealt round-robin.
                    let n_sem = members.len().div_ceil(SEMINAR_SIZE);
                    let mut shuffled = members.clone();
                    shuffled.shuffle(rng);
                    let mut seminars = Vec::with_capacity(n_sem);
                    for g in 0..n_sem {
                        let mut sm: Vec<u32> =
                            shuffled.iter().copied().skip(g).step_by(n_sem).collect();
                        sm.sort_unstable();
                        let sg = groups.len();
                        groups.push(Group {
                            id: format!("SEM-{code}-{:02}", g + 1),
                            name: format!("{code} seminar group {}", g + 1),
                            kind: "seminar",
                            members: sm,
                        });
                        let hour = 12 + (g % 6) as i8;
                        let room = bookings
                            .book(&seminar_candidates(d), term, day, hour, 1)
                            .unwrap_or(0);
                        seminars.push(Seminar {
                            group: sg,
                            number: g + 1,
                            tutor: staff_of(d, k * 3 + g),
                            hour,
                            room,
                        });
                    }

                    module_counter += 1;
                    let style = match module_counter {
                        2 => TimeStyle::Offset,
                        3 => TimeStyle::Utc,
                        _ => match rng.gen_range(0..100) {
                            0..=9 => TimeStyle::Offset,
                            10..=19 => TimeStyle::Utc,
                            _ => TimeStyle::Wall,
                        },
                    };
                    let tz_column = module_counter == 4 || rng.gen_range(0..100) < 5;
                    let status_null = rng.gen_range(0..100) < 20;
                    let tentative_revision = rng.gen_range(0..100) < 30;
                    let reading = rng.gen_bool(0.4);
                    let has_exam = !members.is_empty() && (core || rng.gen_bool(0.6));
                    let exam = has_exam.then(|| ExamPlan {
                        day: 0,
                        hour: 0,
                        minute: 0,
                        hours: if y == YEARS { 3 } else { 2 },
                        link_group: rng.gen_range(0..100) < 20,
                        candidate_role: if rng.gen_bool(0.5) {
                            Some("candidate")
                        } else {
                            None
                        },
                    });
                    let cohort_groups = if core {
                        cohorts_of[d][usize::from(y - 1)]
                            .iter()
                            .map(|&c| cohorts[c].group)
                            .collect()
                    } else {
                        Vec::new()
                    };
                    modules.push(Module {
                        code,
                        name,
                        term,
                        core,
                        group,
                        cohort_groups,
                        seminars,
                        leader,
                        co_lead,
                        style,
                        tz_column,
                        status_null,
                        online,
                        tentative_revision,
                        reading,
                        day,
                        lecture_hour,
                        lecture_hours,
                        lecture_rooms,
                        lecture_audience: audience as u64,
                        exam,
                    });
                }
            }
        }
    }

    // Exam slots: the modules of one department, year level and term never
    // share a slot (their students overlap).
    let diet_days = [10usize, 15usize];
    let sessions: [(i8, i8); 2] = [(9, 30), (14, 0)];
    for chunk in modules.chunks_mut(usize::from(SLOTS)) {
        let term = chunk.first().map(|m| m.term).unwrap_or(0);
        let mut slots: Vec<usize> = (0..diet_days[term] * sessions.len()).collect();
        slots.shuffle(rng);
        for (m, s) in chunk.iter_mut().zip(slots) {
            if let Some(exam) = &mut m.exam {
                exam.day = s / sessions.len();
                (exam.hour, exam.minute) = sessions[s % sessions.len()];
            }
        }
    }

    // Personal-tutor groups: consecutive slices of each cohort.
    let mut tutorials = Vec::new();
    let mut tutor_seq = vec![0usize; n_depts];
    for c in 0..cohorts.len() {
        let d = cohorts[c].dept;
        let members = groups[cohorts[c].group].members.clone();
        let n = members.len().div_ceil(TUTOR_GROUP_SIZE);
        for i in 0..n {
            let lo = i * members.len() / n;
            let hi = (i + 1) * members.len() / n;
            tutor_seq[d] += 1;
            let tutor = staff_of(d, tutor_seq[d] + 2);
            let gi = groups.len();
            let hour = 9 + (i % 4) as i8;
            let room = bookings
                .book(&seminar_candidates(d), 0, cohorts[c].day, hour, 1)
                .unwrap_or(0);
            groups.push(Group {
                id: format!("TUT-{}-{:03}", depts[d].code, tutor_seq[d]),
                name: format!(
                    "Personal tutor group ({}): {}",
                    depts[d].name, people[tutor as usize].display
                ),
                kind: "tutor",
                members: members[lo..hi].to_vec(),
            });
            tutorials.push(Tutorial {
                group: gi,
                tutor,
                day: cohorts[c].day,
                hour,
                room,
            });
        }
    }

    University {
        students: u64::from(students),
        staff: u64::from(n_staff),
        people,
        all_staff,
        rooms,
        groups,
        cohorts,
        modules,
        tutorials,
        exam_halls,
        partner_room,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_local_parts_are_folded() {
        assert_eq!(email_local_part("Siobhan", "O'Brien"), "siobhan.obrien");
        assert_eq!(email_local_part("Anna", "Müller"), "anna.muller");
        assert_eq!(email_local_part("Tom", "Smith-Jones"), "tom.smith-jones");
    }

    #[test]
    fn emails_are_numbered_on_collision() {
        let mut e = Emails::default();
        assert_eq!(e.issue("Anna", "Lee", "x.ac.uk"), "anna.lee@x.ac.uk");
        assert_eq!(e.issue("Anna", "Lee", "x.ac.uk"), "anna.lee2@x.ac.uk");
        assert_eq!(e.issue("Anna", "Lee", "y.ac.uk"), "anna.lee@y.ac.uk");
    }
}
