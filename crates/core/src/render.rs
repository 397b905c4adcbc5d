//! What one person's copy of one event looks like in a calendar.
//!
//! The built-in rendering is written for a phone's agenda view: the subject
//! starts with the module code, the location names the room and building,
//! the body lists module, type, staff, groups and the person's own note (an
//! exam seat, say). A profile can replace subject, location or body with
//! minijinja templates over [`EventContext`].

use jiff::Timestamp;
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;

use crate::keys;
use crate::timetable::{EventStatus, Timetable};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template `{which}` does not compile: {detail} (fix [profiles.templates] {which})")]
    Compile { which: &'static str, detail: String },
    #[error("template `{which}` failed for event {event_id}: {detail}")]
    Render {
        which: &'static str,
        event_id: String,
        detail: String,
    },
}

/// Profile settings that shape every event.
#[derive(Debug, Clone, Default)]
pub struct RenderSettings {
    pub profile: String,
    pub categories: Vec<String>,
    /// Keep cancelled events, marked cancelled, instead of removing them.
    pub keep_cancelled: bool,
    pub subject_template: Option<String>,
    pub location_template: Option<String>,
    pub body_template: Option<String>,
}

/// A calendar event ready for any target.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedEvent {
    pub uid: String,
    /// The marker value (`<profile>/<event_id>`).
    pub marker: String,
    pub profile: String,
    pub event_id: String,
    pub person_id: String,
    pub subject: String,
    pub location: String,
    pub body: String,
    pub categories: Vec<String>,
    pub start: Timestamp,
    pub end: Timestamp,
    /// The zone the timetable gave the times in, for targets that show it.
    pub timezone: String,
    pub status: EventStatus,
    /// Shown as busy (always, for timetabled events).
    pub busy: bool,
    /// Coordinates of the single room, when known.
    pub geo: Option<(f64, f64)>,
}

/// The data a template sees.
#[derive(Debug, Serialize)]
pub struct EventContext<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub event_type: Option<&'a str>,
    pub module_code: Option<&'a str>,
    pub module_name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub status: &'a str,
    pub starts_at: String,
    pub ends_at: String,
    pub timezone: &'a str,
    pub locations: Vec<LocationContext<'a>>,
    pub groups: Vec<&'a str>,
    pub hosts: Vec<&'a str>,
    pub note: Option<&'a str>,
    pub role: Option<&'a str>,
    pub person: PersonContext<'a>,
}

#[derive(Debug, Serialize)]
pub struct LocationContext<'a> {
    pub name: &'a str,
    pub building: Option<&'a str>,
    pub campus: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct PersonContext<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub display_name: Option<&'a str>,
    pub kind: &'a str,
}

pub struct Renderer {
    settings: RenderSettings,
    env: minijinja::Environment<'static>,
    salt: u64,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Renderer {
    pub fn new(settings: RenderSettings) -> Result<Renderer, RenderError> {
        let mut env = minijinja::Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        for (which, t) in [
            ("subject", &settings.subject_template),
            ("location", &settings.location_template),
            ("body", &settings.body_template),
        ] {
            if let Some(t) = t {
                env.add_template_owned(which, t.clone())
                    .map_err(|e| RenderError::Compile {
                        which,
                        detail: e.to_string(),
                    })?;
            }
        }
        let mut salt_src = String::new();
        for part in [
            &settings.subject_template,
            &settings.location_template,
            &settings.body_template,
        ] {
            salt_src.push_str(part.as_deref().unwrap_or("\u{0}builtin"));
            salt_src.push('\u{1}');
        }
        salt_src.push_str(&settings.categories.join("\u{2}"));
        salt_src.push_str(if settings.keep_cancelled {
            "keep"
        } else {
            "drop"
        });
        // Bump the version below when the built-in rendering changes, so every
        // event is refreshed once.
        salt_src.push_str("render-v1");
        let salt = xxh3_64(salt_src.as_bytes());
        Ok(Renderer {
            settings,
            env,
            salt,
        })
    }

    /// Folded into every event fingerprint.
    pub fn salt(&self) -> u64 {
        self.salt
    }

    pub fn settings(&self) -> &RenderSettings {
        &self.settings
    }

    pub fn context<'a>(&self, tt: &'a Timetable, p: u32, e: u32) -> EventContext<'a> {
        let ev = &tt.events[e as usize];
        let person = &tt.people[p as usize];
        let direct = ev
            .people
            .binary_search_by_key(&p, |a| a.person)
            .ok()
            .map(|i| &ev.people[i]);
        EventContext {
            id: &ev.id,
            title: &ev.title,
            event_type: ev.event_type.as_deref(),
            module_code: ev.module_code.as_deref(),
            module_name: ev.module_name.as_deref(),
            description: ev.description.as_deref(),
            status: ev.status.as_str(),
            starts_at: ev.start.to_string(),
            ends_at: ev.end.to_string(),
            timezone: &ev.timezone,
            locations: ev
                .locations
                .iter()
                .map(|&l| {
                    let l = &tt.locations[l as usize];
                    LocationContext {
                        name: &l.name,
                        building: l.building.as_deref(),
                        campus: l.campus.as_deref(),
                    }
                })
                .collect(),
            groups: ev
                .groups
                .iter()
                .map(|&g| tt.groups[g as usize].name.as_str())
                .collect(),
            hosts: ev
                .hosts()
                .map(|h| {
                    let h = &tt.people[h as usize];
                    h.display_name.as_deref().unwrap_or(h.email.as_str())
                })
                .collect(),
            note: direct.and_then(|d| d.note.as_deref()),
            role: direct.and_then(|d| d.role.as_deref()),
            person: PersonContext {
                id: &person.id,
                email: &person.email,
                display_name: person.display_name.as_deref(),
                kind: &person.kind,
            },
        }
    }

    /// Person `p`'s copy of event `e`.
    pub fn render(&self, tt: &Timetable, p: u32, e: u32) -> Result<RenderedEvent, RenderError> {
        let ev = &tt.events[e as usize];
        let cx = self.context(tt, p, e);
        let subject = match &self.settings.subject_template {
            Some(_) => self.run("subject", &cx)?,
            None => builtin_subject(&cx),
        };
        let subject = if ev.status == EventStatus::Cancelled && !subject.starts_with("Cancelled") {
            format!("Cancelled: {subject}")
        } else {
            subject
        };
        let location = match &self.settings.location_template {
            Some(_) => self.run("location", &cx)?,
            None => builtin_location(&cx),
        };
        let body = match &self.settings.body_template {
            Some(_) => self.run("body", &cx)?,
            None => builtin_body(&cx),
        };
        let geo = match ev.locations.as_slice() {
            [l] => {
                let l = &tt.locations[*l as usize];
                l.latitude.zip(l.longitude)
            }
            _ => None,
        };
        Ok(RenderedEvent {
            uid: keys::event_uid(&self.settings.profile, &ev.id),
            marker: keys::marker_value(&self.settings.profile, &ev.id),
            profile: self.settings.profile.clone(),
            event_id: ev.id.clone(),
            person_id: tt.people[p as usize].id.clone(),
            subject: one_line(&subject),
            location: one_line(&location),
            body: body.trim().to_string(),
            categories: self.settings.categories.clone(),
            start: ev.start,
            end: ev.end,
            timezone: ev.timezone.clone(),
            status: ev.status,
            busy: true,
            geo,
        })
    }

    fn run(&self, which: &'static str, cx: &EventContext<'_>) -> Result<String, RenderError> {
        let err = |detail: String| RenderError::Render {
            which,
            event_id: cx.id.to_string(),
            detail,
        };
        let t = self
            .env
            .get_template(which)
            .map_err(|e| err(e.to_string()))?;
        t.render(cx).map_err(|e| err(e.to_string()))
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn builtin_subject(cx: &EventContext<'_>) -> String {
    match cx.module_code {
        Some(code) if !cx.title.contains(code) => format!("{code} {}", cx.title),
        _ => cx.title.to_string(),
    }
}

fn builtin_location(cx: &EventContext<'_>) -> String {
    cx.locations
        .iter()
        .map(|l| match l.building {
            Some(b) if !l.name.contains(b) => format!("{}, {b}", l.name),
            _ => l.name.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn builtin_body(cx: &EventContext<'_>) -> String {
    let mut lines = Vec::new();
    if let Some(note) = cx.note {
        lines.push(note.to_string());
    }
    match (cx.module_code, cx.module_name) {
        (Some(c), Some(n)) => lines.push(format!("Module: {c} {n}")),
        (Some(c), None) => lines.push(format!("Module: {c}")),
        (None, Some(n)) => lines.push(format!("Module: {n}")),
        (None, None) => {}
    }
    if let Some(t) = cx.event_type {
        lines.push(format!("Type: {t}"));
    }
    if !cx.hosts.is_empty() {
        lines.push(format!("Staff: {}", cx.hosts.join(", ")));
    }
    if !cx.groups.is_empty() {
        lines.push(format!("Groups: {}", cx.groups.join(", ")));
    }
    if cx.status == "tentative" {
        lines.push("Status: to be confirmed".to_string());
    }
    if let Some(d) = cx.description {
        lines.push(String::new());
        lines.push(d.to_string());
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use crate::timetable::Rules;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    fn timetable() -> Timetable {
        let raw = RawSnapshot {
            prefix: "tt_".into(),
            people: vec![
                RawPerson {
                    person_id: s("S1"),
                    kind: s("student"),
                    email: s("s1@example.ac.uk"),
                    display_name: s("Sam One"),
                },
                RawPerson {
                    person_id: s("T1"),
                    kind: s("staff"),
                    email: s("t1@example.ac.uk"),
                    display_name: s("Dr Tea"),
                },
            ],
            locations: vec![RawLocation {
                location_id: s("R1"),
                name: s("Room 1.14"),
                building: s("Chemistry Building"),
                latitude: s("51.5"),
                longitude: s("-0.1"),
                ..Default::default()
            }],
            groups: vec![RawGroup {
                group_id: s("G1"),
                name: s("CHEM2-S01"),
                kind: None,
            }],
            group_members: vec![RawGroupMember {
                group_id: s("G1"),
                person_id: s("S1"),
            }],
            events: vec![RawEvent {
                event_id: s("E1"),
                title: s("Organic Chemistry"),
                event_type: s("Lecture"),
                module_code: s("CHEM2041"),
                module_name: s("Organic Chemistry II"),
                starts_at: s("2026-10-01 09:00"),
                ends_at: s("2026-10-01 10:00"),
                ..Default::default()
            }],
            event_groups: vec![RawEventGroup {
                event_id: s("E1"),
                group_id: s("G1"),
            }],
            event_people: vec![
                RawEventPerson {
                    event_id: s("E1"),
                    person_id: s("T1"),
                    role: s("host"),
                    note: None,
                },
                RawEventPerson {
                    event_id: s("E1"),
                    person_id: s("S1"),
                    role: None,
                    note: s("Seat 12"),
                },
            ],
            event_locations: vec![RawEventLocation {
                event_id: s("E1"),
                location_id: s("R1"),
            }],
        };
        Timetable::build(
            raw,
            &Rules {
                timezone: jiff::tz::TimeZone::get("Europe/London").unwrap(),
                max_event_hours: 24,
            },
        )
    }

    #[test]
    fn builtin_rendering_reads_well_on_a_phone() {
        let tt = timetable();
        let r = Renderer::new(RenderSettings {
            profile: "teaching".into(),
            categories: vec!["Timetable".into()],
            ..Default::default()
        })
        .unwrap();
        let s1 = tt.person_index("S1").unwrap();
        let ev = r.render(&tt, s1, 0).unwrap();
        assert_eq!(ev.subject, "CHEM2041 Organic Chemistry");
        assert_eq!(ev.location, "Room 1.14, Chemistry Building");
        expect_test::expect![[r#"
            Seat 12
            Module: CHEM2041 Organic Chemistry II
            Type: Lecture
            Staff: Dr Tea
            Groups: CHEM2-S01"#]]
        .assert_eq(&ev.body);
        assert_eq!(ev.geo, Some((51.5, -0.1)));
        assert_eq!(ev.start.to_string(), "2026-10-01T08:00:00Z");
        // The lecturer's copy has no seat.
        let t1 = tt.person_index("T1").unwrap();
        assert!(!r.render(&tt, t1, 0).unwrap().body.contains("Seat"));
    }

    #[test]
    fn templates_replace_the_builtin_rendering_and_change_the_salt() {
        let tt = timetable();
        let builtin = Renderer::new(RenderSettings {
            profile: "p".into(),
            ..Default::default()
        })
        .unwrap();
        let r = Renderer::new(RenderSettings {
            profile: "p".into(),
            subject_template: Some("{{ event_type }}: {{ title }}".into()),
            body_template: Some("{{ person.display_name }} — {{ hosts | join(', ') }}{% if note %} ({{ note }}){% endif %}".into()),
            ..Default::default()
        })
        .unwrap();
        let ev = r.render(&tt, tt.person_index("S1").unwrap(), 0).unwrap();
        assert_eq!(ev.subject, "Lecture: Organic Chemistry");
        assert_eq!(ev.body, "Sam One — Dr Tea (Seat 12)");
        assert_ne!(r.salt(), builtin.salt());
        let bad = Renderer::new(RenderSettings {
            subject_template: Some("{{ oops".into()),
            ..Default::default()
        });
        assert!(bad
            .unwrap_err()
            .to_string()
            .starts_with("template `subject` does not compile"));
    }
}
