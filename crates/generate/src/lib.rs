//! A synthetic but realistic university timetable, written as an SQLite
//! file that follows the source contract, for demos and benchmarks.
//! Backs `edusync generate --out FILE [--students N] [--seed S]`.
//!
//! The file holds two profiles' worth of views:
//!
//! * `tt_` (teaching): `tt_people`, `tt_locations`, `tt_groups`,
//!   `tt_group_members`, `tt_events`, `tt_event_groups`, `tt_event_people`,
//!   `tt_event_locations`, as tables;
//! * `ex_` (exams): `ex_events`, `ex_event_groups`, `ex_event_people`,
//!   `ex_event_locations` as tables, and `ex_people`, `ex_locations`,
//!   `ex_groups`, `ex_group_members` as views over the `tt_` tables.
//!
//! plus a small `edusync_generate_info` table (key, value) saying how the
//! file was made.
//!
//! What is in it: departments (three or more, one per 2,000 students) each
//! with two programmes of three year levels (`cohort` groups); per
//! department, year and term four modules (`CHEM2041 Organic Chemistry
//! II`), two core and two options, so a student takes three per term and
//! six a year (`module` groups); seminar groups of at most 20 (`seminar`)
//! and personal-tutor groups of at most 10 (`tutor`); staff ≈ students/20,
//! attached to events as `event_people` with role `host`. Each module has a
//! weekly lecture for 11 weeks (linked to the module group and, for core
//! modules, to the cohort groups too, so students reach it twice) and a
//! weekly seminar in weeks 2–11; tutor groups meet fortnightly; cohorts
//! have programme meetings. That is about 140 calendar entries per student.
//! Term 1 starts on [`GenerateOptions::start`] and spans the late-October
//! clock change; term 2 starts in late January and spans the late-March
//! one. Exams: one per examined module in the January or the May–June
//! diet, in exam halls, candidates listed one by one in `ex_event_people`
//! with a note `Seat N`, invigilators as hosts.
//!
//! Times are mostly wall-clock text without an offset
//! (`2026-10-26 09:00:00`, the profile's time zone applies); some module
//! series carry an explicit offset (`2026-10-01T09:00:00+01:00`) or are in
//! UTC (`…Z`), a few set the `timezone` column (`Europe/London`, and
//! `Asia/Dubai` for live links with a partner campus). A few events are
//! `tentative` or `cancelled`.
//!
//! A few rows of every kind the contract says must be set aside are planted
//! on purpose and listed in [`Summary::bad_rows`]; everything else is
//! valid (unique ids, unique lower-case e-mail addresses).
//!
//! Deterministic: the same [`GenerateOptions`] give identical table
//! contents (all randomness comes from a `ChaCha8Rng` seeded with
//! [`GenerateOptions::seed`], and rows are inserted in a fixed order).

mod bad;
mod calendar;
mod model;
mod names;
mod write;

use std::fmt;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rusqlite::Connection;

pub use calendar::default_start;

/// The largest `students` accepted (memory grows with it: about 1 GB for
/// a million).
pub const MAX_STUDENTS: u32 = 1_000_000;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Number of students (at least 1, at most [`MAX_STUDENTS`]).
    pub students: u32,
    /// Seed of the random number generator.
    pub seed: u64,
    /// First Monday of the academic year (week 1 of term 1); a date that
    /// is not a Monday is moved back to the Monday before it. See
    /// [`default_start`].
    pub start: jiff::civil::Date,
}

/// What was generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Usable people (students + staff); the planted bad people are not
    /// counted here but listed in `bad_rows`.
    pub people: u64,
    /// Students.
    pub students: u64,
    /// Staff.
    pub staff: u64,
    /// Usable teaching events (`tt_events` rows less the planted bad ones).
    pub events: u64,
    /// Usable exam events (`ex_events` rows less the planted bad ones).
    pub exam_events: u64,
    /// Calendar entries the teaching profile makes: distinct person–event
    /// pairs over usable events that are not cancelled (hosts included).
    /// Exact for the teaching profile as generated; what a sync makes also
    /// depends on its window.
    pub entries_estimate: u64,
    /// The same for the exams profile.
    pub exam_entries: u64,
    /// Groups (all kinds).
    pub groups: u64,
    /// Locations.
    pub locations: u64,
    /// The rows deliberately planted bad, in the order written.
    pub bad_rows: Vec<BadRow>,
}

/// One deliberately bad row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BadRow {
    /// The view it is in, with its prefix (`tt_events`, `ex_people`, …).
    /// Rows of the shared tables are listed under both profiles' views.
    pub view: &'static str,
    /// The row's id: `event_id` or `person_id`; empty when the id is
    /// missing; for a link row, its two ids joined by `/`
    /// (`event_id/group_id`, `group_id/person_id`, …). A duplicate id is
    /// listed twice, once per row.
    pub id: String,
    /// What is wrong with it.
    pub kind: BadKind,
}

/// What is wrong with a bad row (the source contract's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BadKind {
    /// `event_id` or `person_id` is NULL.
    MissingId,
    /// `title` is NULL.
    MissingTitle,
    /// `starts_at` is not a time (`31/02/2026 9am`).
    UnparseableTime,
    /// `starts_at` or `ends_at` is NULL.
    MissingTime,
    /// `ends_at` is before `starts_at`.
    EndBeforeStart,
    /// `timezone` is not an IANA name (`Mars/Olympus`).
    UnknownTimeZone,
    /// Two event rows share an id (both are bad).
    DuplicateId,
    /// A person whose `email` is NULL or not an address.
    PersonWithoutEmail,
    /// An event longer than 24 hours.
    TooLong,
    /// A link row naming an event that does not exist.
    DanglingEvent,
    /// A link row naming a group that does not exist.
    DanglingGroup,
    /// A link row naming a person who does not exist.
    DanglingPerson,
    /// A link row naming a location that does not exist.
    DanglingLocation,
}

impl BadKind {
    /// Every kind, in declaration order.
    pub const ALL: [BadKind; 13] = [
        BadKind::MissingId,
        BadKind::MissingTitle,
        BadKind::UnparseableTime,
        BadKind::MissingTime,
        BadKind::EndBeforeStart,
        BadKind::UnknownTimeZone,
        BadKind::DuplicateId,
        BadKind::PersonWithoutEmail,
        BadKind::TooLong,
        BadKind::DanglingEvent,
        BadKind::DanglingGroup,
        BadKind::DanglingPerson,
        BadKind::DanglingLocation,
    ];

    /// A short snake_case name (`missing_id`, `end_before_start`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            BadKind::MissingId => "missing_id",
            BadKind::MissingTitle => "missing_title",
            BadKind::UnparseableTime => "unparseable_time",
            BadKind::MissingTime => "missing_time",
            BadKind::EndBeforeStart => "end_before_start",
            BadKind::UnknownTimeZone => "unknown_time_zone",
            BadKind::DuplicateId => "duplicate_id",
            BadKind::PersonWithoutEmail => "person_without_email",
            BadKind::TooLong => "too_long",
            BadKind::DanglingEvent => "dangling_event",
            BadKind::DanglingGroup => "dangling_group",
            BadKind::DanglingPerson => "dangling_person",
            BadKind::DanglingLocation => "dangling_location",
        }
    }
}

impl fmt::Display for BadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why generating failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The options cannot be used.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The SQLite file could not be written.
    #[error("cannot write the timetable database {path}: {source} (check that the folder exists, is writable and has free space)")]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A file operation (removing the old temporary file, syncing, renaming
    /// into place) failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A date of the academic calendar could not be computed (a start date
    /// near the end of the supported range).
    #[error(
        "cannot lay out the academic calendar: {0} (choose a start date between 1900 and 2999)"
    )]
    Calendar(String),
}

/// Errors inside the build, before the path is known to the message.
#[derive(Debug)]
pub(crate) enum Inner {
    Sql(rusqlite::Error),
    Other(GenerateError),
}

impl From<rusqlite::Error> for Inner {
    fn from(e: rusqlite::Error) -> Self {
        Inner::Sql(e)
    }
}

impl From<GenerateError> for Inner {
    fn from(e: GenerateError) -> Self {
        Inner::Other(e)
    }
}

/// Writes the timetable to `out`, replacing any file there.
///
/// The file is built as `OUT.tmp` beside `out` and renamed over it only
/// when complete, so `out` is never left half-written. `progress` receives
/// a line per stage ("writing 35000 students and 1750 staff", …).
pub fn generate(
    out: &Path,
    opts: &GenerateOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Summary, GenerateError> {
    if opts.students == 0 || opts.students > MAX_STUDENTS {
        return Err(GenerateError::InvalidOptions(format!(
            "--students {} is out of range: use 1 to {MAX_STUDENTS}",
            opts.students
        )));
    }
    if !(1900..=2999).contains(&opts.start.year()) {
        return Err(GenerateError::InvalidOptions(format!(
            "start date {} is out of range: use a date between 1900 and 2999",
            opts.start
        )));
    }
    let Some(name) = out.file_name() else {
        return Err(GenerateError::InvalidOptions(format!(
            "--out {} does not name a file",
            out.display()
        )));
    };
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = out.with_file_name(tmp_name);
    remove_if_present(&tmp)?;

    let built = build(&tmp, opts, progress);
    let summary = match built {
        Ok(summary) => summary,
        Err(e) => {
            // Best effort: the build failed; a leftover temporary file is
            // harmless and is replaced by the next run.
            let _ = std::fs::remove_file(&tmp);
            return Err(match e {
                Inner::Sql(source) => GenerateError::Database {
                    path: out.to_path_buf(),
                    source,
                },
                Inner::Other(e) => e,
            });
        }
    };
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| GenerateError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", &tmp))?;
    std::fs::rename(&tmp, out).map_err(io("rename the finished file into place as", out))?;
    progress(&format!("wrote {}", out.display()));
    Ok(summary)
}

fn remove_if_present(path: &Path) -> Result<(), GenerateError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(GenerateError::Io {
            action: "remove the leftover temporary file",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Seeds for the independent random streams (so that, say, the number of
/// cancellations does not shift the layout of the university).
const EVENT_STREAM: u64 = 0x5eed_0fe7_e1e1_u64;

fn build(
    tmp: &Path,
    opts: &GenerateOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Summary, Inner> {
    let start = calendar::monday_on_or_before(opts.start)?;
    let ay = calendar::AcademicYear::new(start)?;
    let clock = calendar::Clock::new()?;
    let year_tag = start.year().to_string();

    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let u = model::build(opts.students, start.year(), &mut rng);
    let mut event_rng = ChaCha8Rng::seed_from_u64(opts.seed ^ EVENT_STREAM);
    progress(&format!(
        "laid out {} students and {} staff in {} modules, {} groups, {} rooms",
        u.students,
        u.staff,
        u.modules.len(),
        u.groups.len(),
        u.rooms.len()
    ));

    let mut conn = Connection::open(tmp)?;
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY;",
    )?;
    let tx = conn.transaction()?;
    write::create_schema(&tx)?;
    {
        let mut info =
            tx.prepare("INSERT INTO edusync_generate_info (key, value) VALUES (?1, ?2)")?;
        for (k, v) in [
            (
                "generator",
                format!("edusync-generate {}", env!("CARGO_PKG_VERSION")),
            ),
            ("students", opts.students.to_string()),
            ("seed", opts.seed.to_string()),
            ("start", calendar::date_text(start)),
            ("timezone", "Europe/London".to_string()),
            ("teaching_prefix", write::TEACHING.to_string()),
            ("exams_prefix", write::EXAMS.to_string()),
        ] {
            info.execute(rusqlite::params![k, v])?;
        }
    }

    progress("writing people, rooms and groups");
    write::write_shared(&tx, &u)?;
    let mut bad_rows = Vec::new();
    bad::plant_shared(&tx, &u, &mut bad_rows)?;

    progress("writing teaching events");
    let teaching = {
        let mut sink = write::EventSink::new(&tx, write::TEACHING)?;
        let w = write::write_teaching(&mut sink, &u, &ay, &clock, &year_tag, &mut event_rng)?;
        let m0 = u.modules.first();
        let plot = bad::Plot {
            prefix: write::TEACHING,
            year_tag: &year_tag,
            date: ay.teaching_day(0, 4, 2)?,
            anchors: &w.anchors,
            group: m0
                .map(|m| u.groups[m.group].id.as_str())
                .unwrap_or("MOD-NONE"),
            person: u
                .people
                .first()
                .map(|p| p.id.as_str())
                .unwrap_or("X0000000"),
            event_type: "lecture",
            subject: &m0
                .map(|m| format!("{} {}", m.code, m.name))
                .unwrap_or_default(),
        };
        bad::plant_events(&mut sink, &plot, &clock, &mut bad_rows)?;
        w
    };
    progress(&format!(
        "{} teaching events, {} calendar entries",
        teaching.events, teaching.entries
    ));

    progress("writing exams");
    let exams = {
        let mut sink = write::EventSink::new(&tx, write::EXAMS)?;
        let w = write::write_exams(&mut sink, &u, &ay, &clock, &year_tag)?;
        let m0 = u.modules.iter().find(|m| m.exam.is_some());
        let exam_tag = format!("{year_tag}-EXAM");
        let plot = bad::Plot {
            prefix: write::EXAMS,
            year_tag: &exam_tag,
            date: ay.january_diet.get(3).copied().unwrap_or(ay.terms[1]),
            anchors: &w.anchors,
            group: m0
                .map(|m| u.groups[m.group].id.as_str())
                .unwrap_or("MOD-NONE"),
            person: u
                .people
                .first()
                .map(|p| p.id.as_str())
                .unwrap_or("X0000000"),
            event_type: "exam",
            subject: &m0
                .map(|m| format!("{} {}", m.code, m.name))
                .unwrap_or_default(),
        };
        bad::plant_events(&mut sink, &plot, &clock, &mut bad_rows)?;
        w
    };
    progress(&format!(
        "{} exams, {} candidate and invigilator entries",
        exams.events, exams.entries
    ));

    progress("indexing");
    write::create_indexes(&tx)?;
    tx.commit()?;
    conn.close().map_err(|(_, e)| Inner::Sql(e))?;

    Ok(Summary {
        people: u.students + u.staff,
        students: u.students,
        staff: u.staff,
        events: teaching.events,
        exam_events: exams.events,
        entries_estimate: teaching.entries,
        exam_entries: exams.entries,
        groups: u.groups.len() as u64,
        locations: u.rooms.len() as u64,
        bad_rows,
    })
}
