//! The deliberately bad rows: a few of every kind the source contract says
//! a sync must set aside, each recorded in [`Summary::bad_rows`].
//!
//! Each planted row has exactly one thing wrong with it, and nothing else
//! depends on it: bad events have no link rows, bad people belong to no
//! group. So a reader that sets aside exactly the rows the contract names
//! sets aside exactly `bad_rows` and nothing more. Bad link rows hang off
//! ordinary events and groups, which must still be synced.
//!
//! People, locations and groups are shared by both profiles (`ex_people`
//! is a view over `tt_people`), so a bad row planted there is listed once
//! under each view name.
//!
//! [`Summary::bad_rows`]: crate::Summary::bad_rows

use jiff::civil::Date;
use rusqlite::{params, Connection};

use crate::calendar::{add_days, wall, Clock, TimeStyle};
use crate::model::{University, STUDENT_DOMAIN};
use crate::write::{EventRow, EventSink};
use crate::{BadKind, BadRow, Inner};

/// How many rows of each kind are planted per profile.
const COPIES: usize = 2;

/// Where bad events of one profile are planted.
pub(crate) struct Plot<'a> {
    /// `tt_` or `ex_`.
    pub prefix: &'static str,
    /// Prefix of planted event ids (the academic year).
    pub year_tag: &'a str,
    /// A date in the profile's season (a teaching week or an exam diet).
    pub date: Date,
    /// Ordinary events to hang bad link rows on (at least one).
    pub anchors: &'a [String],
    /// An ordinary group to link a ghost event to.
    pub group: &'a str,
    /// An ordinary person to link a ghost event to.
    pub person: &'a str,
    /// Used in titles: the event type and what it is about.
    pub event_type: &'static str,
    pub subject: &'a str,
}

fn record(bad: &mut Vec<BadRow>, view: &'static str, id: impl Into<String>, kind: BadKind) {
    bad.push(BadRow {
        view,
        id: id.into(),
        kind,
    });
}

fn events_view(prefix: &str) -> &'static str {
    if prefix == crate::write::EXAMS {
        "ex_events"
    } else {
        "tt_events"
    }
}

fn link_view(prefix: &str, table: &str) -> &'static str {
    match (prefix == crate::write::EXAMS, table) {
        (false, "groups") => "tt_event_groups",
        (false, "people") => "tt_event_people",
        (false, _) => "tt_event_locations",
        (true, "groups") => "ex_event_groups",
        (true, "people") => "ex_event_people",
        (true, _) => "ex_event_locations",
    }
}

/// Plants bad events and bad link rows in one profile's event tables.
pub(crate) fn plant_events(
    sink: &mut EventSink<'_>,
    plot: &Plot<'_>,
    clock: &Clock,
    bad: &mut Vec<BadRow>,
) -> Result<(), Inner> {
    let view = events_view(plot.prefix);
    let mut seq = 0usize;
    let mut next_id = || {
        seq += 1;
        format!(
            "{}-{}-X{seq:02}",
            plot.year_tag,
            plot.subject.split(' ').next().unwrap_or("EVT")
        )
    };
    let title = format!("{}: extra {}", plot.subject, plot.event_type);
    for i in 0..COPIES {
        let date = add_days(plot.date, i as i64)?;
        let start = clock.format(date, 10, 0, TimeStyle::Wall)?;
        let end = clock.format(date, 11, 0, TimeStyle::Wall)?;
        let base = EventRow {
            title: Some(&title),
            event_type: Some(plot.event_type),
            starts_at: Some(&start),
            ends_at: Some(&end),
            status: Some("confirmed"),
            ..EventRow::default()
        };

        // Missing id.
        sink.event(&EventRow { id: None, ..base })?;
        record(bad, view, "", BadKind::MissingId);

        // Missing title.
        let id = next_id();
        sink.event(&EventRow {
            id: Some(&id),
            title: None,
            ..base
        })?;
        record(bad, view, id, BadKind::MissingTitle);

        // Unparseable time.
        let id = next_id();
        let garbage = if i == 0 {
            format!("31/02/{} 9am", date.year())
        } else {
            format!("{} 25:61:00", crate::calendar::date_text(date))
        };
        sink.event(&EventRow {
            id: Some(&id),
            starts_at: Some(&garbage),
            ..base
        })?;
        record(bad, view, id, BadKind::UnparseableTime);

        // Missing time (start, then end).
        let id = next_id();
        let row = if i == 0 {
            EventRow {
                id: Some(&id),
                starts_at: None,
                ..base
            }
        } else {
            EventRow {
                id: Some(&id),
                ends_at: None,
                ..base
            }
        };
        sink.event(&row)?;
        record(bad, view, id, BadKind::MissingTime);

        // End before start.
        let id = next_id();
        let early = clock.format(date, 9, 0, TimeStyle::Wall)?;
        sink.event(&EventRow {
            id: Some(&id),
            ends_at: Some(&early),
            ..base
        })?;
        record(bad, view, id, BadKind::EndBeforeStart);

        // Unknown time zone.
        let id = next_id();
        let zone = if i == 0 {
            "Mars/Olympus"
        } else {
            "Europe/Atlantis"
        };
        sink.event(&EventRow {
            id: Some(&id),
            timezone: Some(zone),
            ..base
        })?;
        record(bad, view, id, BadKind::UnknownTimeZone);

        // Duplicate id: two rows, both bad.
        let id = next_id();
        let later = clock.format(date, 15, 0, TimeStyle::Wall)?;
        let later_end = clock.format(date, 16, 0, TimeStyle::Wall)?;
        sink.event(&EventRow {
            id: Some(&id),
            ..base
        })?;
        sink.event(&EventRow {
            id: Some(&id),
            starts_at: Some(&later),
            ends_at: Some(&later_end),
            ..base
        })?;
        record(bad, view, id.clone(), BadKind::DuplicateId);
        record(bad, view, id, BadKind::DuplicateId);

        // Longer than 24 hours: a residential trip of two days and more.
        let id = next_id();
        let trip_end = wall(add_days(date, 2 + i as i64)?.at(17, 0, 0, 0));
        let trip_title = format!("{}: residential field trip", plot.subject);
        sink.event(&EventRow {
            id: Some(&id),
            title: Some(&trip_title),
            ends_at: Some(&trip_end),
            ..base
        })?;
        record(bad, view, id, BadKind::TooLong);

        // Link rows naming an event that does not exist.
        let ghost = format!("{}-GHOST-{:03}", plot.year_tag, i + 1);
        sink.group(&ghost, plot.group)?;
        record(
            bad,
            link_view(plot.prefix, "groups"),
            format!("{ghost}/{}", plot.group),
            BadKind::DanglingEvent,
        );
        let ghost_p = format!("{}-GHOST-{:03}", plot.year_tag, i + 11);
        sink.person(&ghost_p, (plot.person, Some("host"), None))?;
        record(
            bad,
            link_view(plot.prefix, "people"),
            format!("{ghost_p}/{}", plot.person),
            BadKind::DanglingEvent,
        );

        // Link rows on ordinary events naming what does not exist.
        let Some(anchor) = plot
            .anchors
            .get(i % plot.anchors.len().max(1))
            .map(String::as_str)
        else {
            continue;
        };
        let no_group = format!("GRP-WITHDRAWN-{:02}", i + 1);
        sink.group(anchor, &no_group)?;
        record(
            bad,
            link_view(plot.prefix, "groups"),
            format!("{anchor}/{no_group}"),
            BadKind::DanglingGroup,
        );

        let no_person = format!("X{:07}", 9_000_001 + i);
        let note = (plot.prefix == crate::write::EXAMS).then_some("Seat 999");
        sink.person(anchor, (&no_person, None, note))?;
        record(
            bad,
            link_view(plot.prefix, "people"),
            format!("{anchor}/{no_person}"),
            BadKind::DanglingPerson,
        );

        let no_room = format!("OLD-{}.99", i + 1);
        sink.location(anchor, &no_room)?;
        record(
            bad,
            link_view(plot.prefix, "locations"),
            format!("{anchor}/{no_room}"),
            BadKind::DanglingLocation,
        );
    }
    Ok(())
}

/// Plants bad people and bad group memberships (seen by both profiles).
pub(crate) fn plant_shared(
    conn: &Connection,
    u: &University,
    bad: &mut Vec<BadRow>,
) -> Result<(), Inner> {
    let both = |bad: &mut Vec<BadRow>, views: [&'static str; 2], id: String, kind: BadKind| {
        record(bad, views[0], id.clone(), kind);
        record(bad, views[1], id, kind);
    };
    let people = ["tt_people", "ex_people"];
    let members = ["tt_group_members", "ex_group_members"];
    let mut st = conn.prepare(
        "INSERT INTO tt_people (person_id, kind, email, display_name) VALUES (?1, ?2, ?3, ?4)",
    )?;

    // No usable e-mail: NULL, and text that is not an address.
    st.execute(params![
        "V0000001",
        "student",
        None::<&str>,
        "Visiting Student"
    ])?;
    both(bad, people, "V0000001".into(), BadKind::PersonWithoutEmail);
    st.execute(params![
        "V0000002",
        "staff",
        "not-an-email",
        "Guest Lecturer"
    ])?;
    both(bad, people, "V0000002".into(), BadKind::PersonWithoutEmail);

    // No id.
    for (n, who) in ["pending.applicant", "deferred.entrant"].iter().enumerate() {
        let email = format!("{who}@{STUDENT_DOMAIN}");
        st.execute(params![
            None::<&str>,
            "student",
            email,
            format!("Record {}", n + 1)
        ])?;
        both(bad, people, String::new(), BadKind::MissingId);
    }

    // Memberships naming a person or a group that does not exist.
    let mut st =
        conn.prepare("INSERT INTO tt_group_members (group_id, person_id) VALUES (?1, ?2)")?;
    let group = u
        .groups
        .first()
        .map(|g| g.id.as_str())
        .unwrap_or("COH-NONE");
    for i in 0..COPIES {
        let no_person = format!("X{:07}", 8_000_001 + i);
        st.execute(params![group, no_person])?;
        both(
            bad,
            members,
            format!("{group}/{no_person}"),
            BadKind::DanglingPerson,
        );
    }
    let student = u
        .people
        .first()
        .map(|p| p.id.as_str())
        .unwrap_or("X0000000");
    for i in 0..COPIES {
        let no_group = format!("COH-CLOSED-Y{}", i + 1);
        st.execute(params![no_group, student])?;
        both(
            bad,
            members,
            format!("{no_group}/{student}"),
            BadKind::DanglingGroup,
        );
    }
    Ok(())
}
