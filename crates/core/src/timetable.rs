//! From raw rows to a clean [`Timetable`], setting bad rows aside.
//!
//! Every rule of the source contract's "Bad rows" section lives here, once,
//! for every source. A bad row never stops the build: it becomes a
//! [`Quarantined`] record naming the view, the row and what is wrong, and the
//! rest goes ahead. A bad link row costs only that link.
//!
//! Ids are compared as bytes. People, groups, locations and events are
//! sorted by id so that an index into those vectors is also a rank, which
//! [`crate::plan`] relies on to merge with the ledger in one ordered pass.

use std::collections::{HashMap, HashSet};
use std::fmt;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::model::{RawEvent, RawSnapshot};

/// Profile settings that decide whether a row is usable.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Wall-clock times without an offset and without a row time zone are read in this zone.
    pub timezone: TimeZone,
    /// Events longer than this many hours are set aside.
    pub max_event_hours: u32,
}

/// A row set aside, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Full view name, prefix included (`tt_events`).
    pub view: String,
    /// The row's id as `column=value` pairs, or its position when it has no id.
    pub row: String,
    pub reason: String,
}

impl fmt::Display for Quarantined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "source view {}: row {}: {} (row set aside)",
            self.view, self.row, self.reason
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventStatus {
    Confirmed,
    Tentative,
    Cancelled,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Confirmed => "confirmed",
            EventStatus::Tentative => "tentative",
            EventStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Person {
    pub id: String,
    pub kind: String,
    /// Lower-cased; the calendar address.
    pub email: String,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Location {
    pub id: String,
    pub name: String,
    pub building: Option<String>,
    pub campus: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub kind: Option<String>,
    /// Indices into [`Timetable::people`], sorted, de-duplicated.
    pub members: Vec<u32>,
}

/// A person attached to an event directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectAttendee {
    pub person: u32,
    pub role: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub title: String,
    pub event_type: Option<String>,
    pub module_code: Option<String>,
    pub module_name: Option<String>,
    pub description: Option<String>,
    pub start: Timestamp,
    pub end: Timestamp,
    /// The IANA zone the event's times were given in (row zone or profile zone).
    pub timezone: String,
    pub status: EventStatus,
    /// Indices into [`Timetable::locations`].
    pub locations: Vec<u32>,
    /// Indices into [`Timetable::groups`].
    pub groups: Vec<u32>,
    /// Sorted by person index, one row per person.
    pub people: Vec<DirectAttendee>,
}

impl Event {
    /// Lecturers: people attached with role `host`.
    pub fn hosts(&self) -> impl Iterator<Item = u32> + '_ {
        self.people
            .iter()
            .filter(|a| {
                a.role
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case("host"))
            })
            .map(|a| a.person)
    }
}

/// The validated timetable of one profile.
#[derive(Debug, Clone, Default)]
pub struct Timetable {
    pub prefix: String,
    pub people: Vec<Person>,
    pub locations: Vec<Location>,
    pub groups: Vec<Group>,
    pub events: Vec<Event>,
    pub quarantine: Vec<Quarantined>,
    /// Ids of people whose rows were set aside: their calendars are left alone.
    pub quarantined_people: HashSet<String>,
    /// Ids of events whose rows were set aside: their calendar copies are left alone.
    pub quarantined_events: HashSet<String>,
}

impl Timetable {
    pub fn person_index(&self, id: &str) -> Option<u32> {
        self.people
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()
            .map(|i| i as u32)
    }

    pub fn event_index(&self, id: &str) -> Option<u32> {
        self.events
            .binary_search_by(|e| e.id.as_str().cmp(id))
            .ok()
            .map(|i| i as u32)
    }

    /// Finds a person by id or (case-insensitively) by email.
    pub fn find_person(&self, id_or_email: &str) -> Option<u32> {
        self.person_index(id_or_email).or_else(|| {
            let lower = id_or_email.trim().to_ascii_lowercase();
            self.people
                .iter()
                .position(|p| p.email == lower)
                .map(|i| i as u32)
        })
    }

    /// Validates `raw` under `rules`.
    pub fn build(raw: RawSnapshot, rules: &Rules) -> Timetable {
        Builder {
            prefix: raw.prefix.clone(),
            rules,
            quarantine: Vec::new(),
        }
        .build(raw)
    }
}

struct Builder<'a> {
    prefix: String,
    rules: &'a Rules,
    quarantine: Vec<Quarantined>,
}

/// Trims and turns empty text into `None`.
fn clean(t: Option<String>) -> Option<String> {
    let s = t?;
    let trimmed = s.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.len() == s.len() {
        Some(s)
    } else {
        Some(trimmed.to_string())
    }
}

fn is_usable_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !e
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '\\')
}

/// Keeps rows whose id is unique; rows sharing an id are all set aside.
/// Returns the kept `(id, row)` pairs sorted by id, and every id seen.
fn unique_by_id<T>(
    rows: Vec<(Option<String>, T)>,
    mut reject: impl FnMut(String, usize),
) -> (Vec<(String, T)>, HashSet<String>) {
    let mut counts: HashMap<String, usize> = HashMap::with_capacity(rows.len());
    for (id, _) in &rows {
        if let Some(id) = id {
            *counts.entry(id.clone()).or_default() += 1;
        }
    }
    let mut kept = Vec::with_capacity(rows.len());
    let mut seen = HashSet::with_capacity(counts.len());
    for (i, (id, row)) in rows.into_iter().enumerate() {
        let Some(id) = id else {
            reject(String::new(), i + 1);
            continue;
        };
        let n = counts[&id];
        seen.insert(id.clone());
        if n > 1 {
            reject(id, n);
        } else {
            kept.push((id, row));
        }
    }
    kept.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    (kept, seen)
}

impl Builder<'_> {
    fn view(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    fn reject(&mut self, view: &str, row: String, reason: String) {
        let view = self.view(view);
        self.quarantine.push(Quarantined { view, row, reason });
    }

    fn build(mut self, raw: RawSnapshot) -> Timetable {
        let mut quarantined_people = HashSet::new();
        let mut quarantined_events = HashSet::new();

        // people
        let rows = raw
            .people
            .into_iter()
            .map(|p| (clean(p.person_id.clone()), p))
            .collect::<Vec<_>>();
        let mut dup = Vec::new();
        let (people_rows, people_seen) = unique_by_id(rows, |id, n| dup.push((id, n)));
        for (id, n) in dup {
            if id.is_empty() {
                self.reject("people", format!("#{n}"), "person_id is missing".into());
            } else {
                quarantined_people.insert(id.clone());
                self.reject(
                    "people",
                    format!("person_id={id}"),
                    format!("person_id is used by {n} rows; all of them are set aside until it is unique"),
                );
            }
        }
        let mut people = Vec::with_capacity(people_rows.len());
        let mut email_owner: HashMap<String, Vec<usize>> = HashMap::new();
        for (id, p) in people_rows {
            let email = clean(p.email).map(|e| e.to_ascii_lowercase());
            match email {
                Some(e) if is_usable_email(&e) => {
                    email_owner.entry(e.clone()).or_default().push(people.len());
                    people.push(Person {
                        id,
                        kind: clean(p.kind)
                            .map(|k| k.to_ascii_lowercase())
                            .unwrap_or_else(|| "student".into()),
                        email: e,
                        display_name: clean(p.display_name),
                    });
                }
                other => {
                    let reason = match other {
                        None => "email is missing, so there is no calendar to write to".to_string(),
                        Some(e) => format!("email {e:?} is not a usable address"),
                    };
                    quarantined_people.insert(id.clone());
                    self.reject("people", format!("person_id={id}"), reason);
                }
            }
        }
        // Two people sharing one mailbox would write the same events twice into it.
        let mut shared: Vec<usize> = Vec::new();
        for (email, owners) in &email_owner {
            if owners.len() > 1 {
                for &i in owners {
                    let others: Vec<&str> = owners
                        .iter()
                        .filter(|&&j| j != i)
                        .map(|&j| people[j].id.as_str())
                        .collect();
                    self.reject(
                        "people",
                        format!("person_id={}", people[i].id),
                        format!(
                            "email {email} is also used by person_id={}; each calendar must belong to one person",
                            others.join(",")
                        ),
                    );
                    shared.push(i);
                }
            }
        }
        if !shared.is_empty() {
            shared.sort_unstable();
            for &i in shared.iter().rev() {
                quarantined_people.insert(people[i].id.clone());
                people.remove(i);
            }
        }

        // locations
        let rows = raw
            .locations
            .into_iter()
            .map(|l| (clean(l.location_id.clone()), l))
            .collect::<Vec<_>>();
        let mut dup = Vec::new();
        let (loc_rows, locations_seen) = unique_by_id(rows, |id, n| dup.push((id, n)));
        for (id, n) in dup {
            self.reject_dup("locations", "location_id", id, n);
        }
        let mut locations = Vec::with_capacity(loc_rows.len());
        for (id, l) in loc_rows {
            let coord = |t: Option<String>| clean(t).and_then(|s| s.parse::<f64>().ok());
            let name = clean(l.name).unwrap_or_else(|| id.clone());
            locations.push(Location {
                id,
                name,
                building: clean(l.building),
                campus: clean(l.campus),
                latitude: coord(l.latitude),
                longitude: coord(l.longitude),
            });
        }

        // groups
        let rows = raw
            .groups
            .into_iter()
            .map(|g| (clean(g.group_id.clone()), g))
            .collect::<Vec<_>>();
        let mut dup = Vec::new();
        let (group_rows, groups_seen) = unique_by_id(rows, |id, n| dup.push((id, n)));
        for (id, n) in dup {
            self.reject_dup("groups", "group_id", id, n);
        }
        let mut groups: Vec<Group> = group_rows
            .into_iter()
            .map(|(id, g)| Group {
                name: clean(g.name).unwrap_or_else(|| id.clone()),
                id,
                kind: clean(g.kind),
                members: Vec::new(),
            })
            .collect();

        let person_idx: HashMap<&str, u32> = people
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.as_str(), i as u32))
            .collect();
        let group_idx: HashMap<String, u32> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.id.clone(), i as u32))
            .collect();
        let location_idx: HashMap<&str, u32> = locations
            .iter()
            .enumerate()
            .map(|(i, l)| (l.id.as_str(), i as u32))
            .collect();

        // group_members
        for (n, m) in raw.group_members.into_iter().enumerate() {
            let (g, p) = (clean(m.group_id), clean(m.person_id));
            let row = link_row(n, "group_id", &g, "person_id", &p);
            let (Some(g), Some(p)) = (g, p) else {
                self.reject(
                    "group_members",
                    row,
                    "group_id or person_id is missing".into(),
                );
                continue;
            };
            let gi = match group_idx.get(&g) {
                Some(&gi) => gi,
                None => {
                    if !groups_seen.contains(&g) {
                        self.reject(
                            "group_members",
                            row,
                            format!("group {g} does not exist in {}", self.view("groups")),
                        );
                    }
                    continue;
                }
            };
            match person_idx.get(p.as_str()) {
                Some(&pi) => groups[gi as usize].members.push(pi),
                None => {
                    if !people_seen.contains(&p) {
                        self.reject(
                            "group_members",
                            row,
                            format!("person {p} does not exist in {}", self.view("people")),
                        );
                    }
                }
            }
        }
        for g in &mut groups {
            g.members.sort_unstable();
            g.members.dedup();
        }

        // events
        let rows = raw
            .events
            .into_iter()
            .map(|e| (clean(e.event_id.clone()), e))
            .collect::<Vec<_>>();
        let mut dup = Vec::new();
        let (event_rows, events_seen) = unique_by_id(rows, |id, n| dup.push((id, n)));
        for (id, n) in dup {
            if !id.is_empty() {
                quarantined_events.insert(id.clone());
            }
            self.reject_dup("events", "event_id", id, n);
        }
        let max = SignedDuration::from_hours(i64::from(self.rules.max_event_hours));
        let mut events = Vec::with_capacity(event_rows.len());
        for (id, e) in event_rows {
            match self.event(&id, e, max) {
                Ok(ev) => events.push(ev),
                Err(reason) => {
                    quarantined_events.insert(id.clone());
                    self.reject("events", format!("event_id={id}"), reason);
                }
            }
        }
        let event_idx: HashMap<&str, u32> = events
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.as_str(), i as u32))
            .collect();

        // links to events
        let mut ev_groups: Vec<Vec<u32>> = vec![Vec::new(); events.len()];
        for (n, l) in raw.event_groups.into_iter().enumerate() {
            let (e, g) = (clean(l.event_id), clean(l.group_id));
            let row = link_row(n, "event_id", &e, "group_id", &g);
            let (Some(e), Some(g)) = (e, g) else {
                self.reject(
                    "event_groups",
                    row,
                    "event_id or group_id is missing".into(),
                );
                continue;
            };
            let Some(&ei) = event_idx.get(e.as_str()) else {
                if !events_seen.contains(&e) {
                    self.reject(
                        "event_groups",
                        row,
                        format!("event {e} does not exist in {}", self.view("events")),
                    );
                }
                continue;
            };
            match group_idx.get(&g) {
                Some(&gi) => ev_groups[ei as usize].push(gi),
                None => {
                    if !groups_seen.contains(&g) {
                        self.reject(
                            "event_groups",
                            row,
                            format!("group {g} does not exist in {}", self.view("groups")),
                        );
                    }
                }
            }
        }
        let mut ev_people: Vec<Vec<DirectAttendee>> = vec![Vec::new(); events.len()];
        for (n, l) in raw.event_people.into_iter().enumerate() {
            let (e, p) = (clean(l.event_id), clean(l.person_id));
            let row = link_row(n, "event_id", &e, "person_id", &p);
            let (Some(e), Some(p)) = (e, p) else {
                self.reject(
                    "event_people",
                    row,
                    "event_id or person_id is missing".into(),
                );
                continue;
            };
            let Some(&ei) = event_idx.get(e.as_str()) else {
                if !events_seen.contains(&e) {
                    self.reject(
                        "event_people",
                        row,
                        format!("event {e} does not exist in {}", self.view("events")),
                    );
                }
                continue;
            };
            match person_idx.get(p.as_str()) {
                Some(&pi) => ev_people[ei as usize].push(DirectAttendee {
                    person: pi,
                    role: clean(l.role).map(|r| r.to_ascii_lowercase()),
                    note: clean(l.note),
                }),
                None => {
                    if !people_seen.contains(&p) {
                        self.reject(
                            "event_people",
                            row,
                            format!("person {p} does not exist in {}", self.view("people")),
                        );
                    }
                }
            }
        }
        let mut ev_locs: Vec<Vec<u32>> = vec![Vec::new(); events.len()];
        for (n, l) in raw.event_locations.into_iter().enumerate() {
            let (e, loc) = (clean(l.event_id), clean(l.location_id));
            let row = link_row(n, "event_id", &e, "location_id", &loc);
            let (Some(e), Some(loc)) = (e, loc) else {
                self.reject(
                    "event_locations",
                    row,
                    "event_id or location_id is missing".into(),
                );
                continue;
            };
            let Some(&ei) = event_idx.get(e.as_str()) else {
                if !events_seen.contains(&e) {
                    self.reject(
                        "event_locations",
                        row,
                        format!("event {e} does not exist in {}", self.view("events")),
                    );
                }
                continue;
            };
            match location_idx.get(loc.as_str()) {
                Some(&li) => ev_locs[ei as usize].push(li),
                None => {
                    if !locations_seen.contains(&loc) {
                        self.reject(
                            "event_locations",
                            row,
                            format!(
                                "location {loc} does not exist in {}",
                                self.view("locations")
                            ),
                        );
                    }
                }
            }
        }
        for (i, ev) in events.iter_mut().enumerate() {
            let mut g = std::mem::take(&mut ev_groups[i]);
            g.sort_unstable();
            g.dedup();
            ev.groups = g;
            let mut l = std::mem::take(&mut ev_locs[i]);
            // Keep the source's room order for display, but drop repeats.
            let mut seen = HashSet::new();
            l.retain(|x| seen.insert(*x));
            ev.locations = l;
            let mut p = std::mem::take(&mut ev_people[i]);
            // One row per person: a host role or a note wins over a bare row.
            p.sort_by(|a, b| {
                a.person
                    .cmp(&b.person)
                    .then_with(|| b.role.is_some().cmp(&a.role.is_some()))
                    .then_with(|| b.note.is_some().cmp(&a.note.is_some()))
            });
            p.dedup_by_key(|a| a.person);
            ev.people = p;
        }

        Timetable {
            prefix: self.prefix,
            people,
            locations,
            groups,
            events,
            quarantine: self.quarantine,
            quarantined_people,
            quarantined_events,
        }
    }

    fn reject_dup(&mut self, view: &str, col: &str, id: String, n: usize) {
        if id.is_empty() {
            self.reject(view, format!("#{n}"), format!("{col} is missing"));
        } else {
            self.reject(
                view,
                format!("{col}={id}"),
                format!("{col} is used by {n} rows; all of them are set aside until it is unique"),
            );
        }
    }

    fn event(&self, id: &str, e: RawEvent, max: SignedDuration) -> Result<Event, String> {
        let title = clean(e.title).ok_or_else(|| "title is missing".to_string())?;
        let (tz_name, tz) = match clean(e.timezone) {
            None => (None, self.rules.timezone.clone()),
            Some(name) => match TimeZone::get(&name) {
                Ok(tz) => (Some(name), tz),
                Err(_) => return Err(format!("timezone {name:?} is not a known IANA time zone")),
            },
        };
        let start = parse_time(clean(e.starts_at).as_deref(), &tz, "starts_at")?;
        let end = parse_time(clean(e.ends_at).as_deref(), &tz, "ends_at")?;
        if end < start {
            return Err(format!(
                "ends_at {} is before starts_at {}",
                end.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M %Z"),
                start.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M %Z")
            ));
        }
        if end.duration_since(start) > max {
            let hours = end.duration_since(start).as_secs() as f64 / 3600.0;
            return Err(format!(
                "event lasts {hours:.1} hours, longer than max_event_hours = {}",
                self.rules.max_event_hours
            ));
        }
        let status = match clean(e.status).map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("confirmed") => EventStatus::Confirmed,
            Some("tentative") => EventStatus::Tentative,
            Some("cancelled") | Some("canceled") => EventStatus::Cancelled,
            Some(other) => {
                return Err(format!(
                    "status {other:?} is not confirmed, tentative or cancelled"
                ))
            }
        };
        Ok(Event {
            id: id.to_string(),
            title,
            event_type: clean(e.event_type),
            module_code: clean(e.module_code),
            module_name: clean(e.module_name),
            description: clean(e.description),
            start,
            end,
            timezone: tz_name
                .or_else(|| tz.iana_name().map(str::to_string))
                .unwrap_or_else(|| "UTC".into()),
            status,
            locations: Vec::new(),
            groups: Vec::new(),
            people: Vec::new(),
        })
    }
}

fn link_row(n: usize, a: &str, av: &Option<String>, b: &str, bv: &Option<String>) -> String {
    match (av, bv) {
        (Some(x), Some(y)) => format!("{a}={x}, {b}={y}"),
        _ => format!(
            "#{} ({a}={}, {b}={})",
            n + 1,
            av.as_deref().unwrap_or("NULL"),
            bv.as_deref().unwrap_or("NULL")
        ),
    }
}

/// Reads a contract time: an instant with an explicit UTC offset, or a
/// wall-clock time in `tz`. A wall-clock time that falls in a DST gap is
/// moved forward; one that occurs twice takes the earlier instant.
pub fn parse_time(text: Option<&str>, tz: &TimeZone, column: &str) -> Result<Timestamp, String> {
    let Some(s) = text else {
        return Err(format!("{column} is missing"));
    };
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(ts);
    }
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return tz
            .to_ambiguous_zoned(dt)
            .compatible()
            .map(|z| z.timestamp())
            .map_err(|e| format!("{column} {s:?} cannot be placed in the time zone: {e}"));
    }
    Err(format!(
        "{column} {s:?} is not a time (expected ISO 8601, e.g. 2026-10-01 09:00:00 or 2026-10-01T09:00:00+01:00)"
    ))
}

#[cfg(test)]
#[path = "timetable_tests.rs"]
mod tests;
