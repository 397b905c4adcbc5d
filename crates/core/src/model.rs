//! Rows of the eight source views exactly as a source reader produced them.
//!
//! Every column is optional text: validation belongs to
//! [`crate::timetable`], so that every source (SQLite, PostgreSQL, MariaDB,
//! CSV) gets the same rules and the same quarantine messages.

/// One consistent read of the eight views.
#[derive(Debug, Default, Clone)]
pub struct RawSnapshot {
    /// The view-name prefix the rows were read with (for messages).
    pub prefix: String,
    pub people: Vec<RawPerson>,
    pub locations: Vec<RawLocation>,
    pub groups: Vec<RawGroup>,
    pub group_members: Vec<RawGroupMember>,
    pub events: Vec<RawEvent>,
    pub event_groups: Vec<RawEventGroup>,
    pub event_people: Vec<RawEventPerson>,
    pub event_locations: Vec<RawEventLocation>,
}

pub type Text = Option<String>;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawPerson {
    pub person_id: Text,
    pub kind: Text,
    pub email: Text,
    pub display_name: Text,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawLocation {
    pub location_id: Text,
    pub name: Text,
    pub building: Text,
    pub campus: Text,
    pub latitude: Text,
    pub longitude: Text,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawGroup {
    pub group_id: Text,
    pub name: Text,
    pub kind: Text,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawGroupMember {
    pub group_id: Text,
    pub person_id: Text,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawEvent {
    pub event_id: Text,
    pub title: Text,
    pub event_type: Text,
    pub module_code: Text,
    pub module_name: Text,
    pub description: Text,
    pub starts_at: Text,
    pub ends_at: Text,
    pub timezone: Text,
    pub status: Text,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawEventGroup {
    pub event_id: Text,
    pub group_id: Text,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawEventPerson {
    pub event_id: Text,
    pub person_id: Text,
    pub role: Text,
    pub note: Text,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawEventLocation {
    pub event_id: Text,
    pub location_id: Text,
}

/// The eight view names (without prefix), in the order they are read.
pub const VIEWS: [&str; 8] = [
    "people",
    "locations",
    "groups",
    "group_members",
    "events",
    "event_groups",
    "event_people",
    "event_locations",
];

/// The columns of each view, as fixed by the source contract.
pub fn columns(view: &str) -> &'static [&'static str] {
    match view {
        "people" => &["person_id", "kind", "email", "display_name"],
        "locations" => &[
            "location_id",
            "name",
            "building",
            "campus",
            "latitude",
            "longitude",
        ],
        "groups" => &["group_id", "name", "kind"],
        "group_members" => &["group_id", "person_id"],
        "events" => &[
            "event_id",
            "title",
            "event_type",
            "module_code",
            "module_name",
            "description",
            "starts_at",
            "ends_at",
            "timezone",
            "status",
        ],
        "event_groups" => &["event_id", "group_id"],
        "event_people" => &["event_id", "person_id", "role", "note"],
        "event_locations" => &["event_id", "location_id"],
        _ => &[],
    }
}

/// Builds a raw row of `view` from its column values in [`columns`] order.
/// Source readers call this so that the column order lives in one place.
impl RawSnapshot {
    pub fn push_row(&mut self, view: &str, mut cols: Vec<Text>) {
        let mut take = |i: usize| cols.get_mut(i).and_then(Option::take);
        match view {
            "people" => self.people.push(RawPerson {
                person_id: take(0),
                kind: take(1),
                email: take(2),
                display_name: take(3),
            }),
            "locations" => self.locations.push(RawLocation {
                location_id: take(0),
                name: take(1),
                building: take(2),
                campus: take(3),
                latitude: take(4),
                longitude: take(5),
            }),
            "groups" => self.groups.push(RawGroup {
                group_id: take(0),
                name: take(1),
                kind: take(2),
            }),
            "group_members" => self.group_members.push(RawGroupMember {
                group_id: take(0),
                person_id: take(1),
            }),
            "events" => self.events.push(RawEvent {
                event_id: take(0),
                title: take(1),
                event_type: take(2),
                module_code: take(3),
                module_name: take(4),
                description: take(5),
                starts_at: take(6),
                ends_at: take(7),
                timezone: take(8),
                status: take(9),
            }),
            "event_groups" => self.event_groups.push(RawEventGroup {
                event_id: take(0),
                group_id: take(1),
            }),
            "event_people" => self.event_people.push(RawEventPerson {
                event_id: take(0),
                person_id: take(1),
                role: take(2),
                note: take(3),
            }),
            "event_locations" => self.event_locations.push(RawEventLocation {
                event_id: take(0),
                location_id: take(1),
            }),
            _ => {}
        }
    }
}
