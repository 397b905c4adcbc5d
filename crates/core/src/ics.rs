//! RFC 5545 text for rendered events: one event per calendar object (vdir,
//! CalDAV) or many in one feed.
//!
//! Times are written in UTC (`DTSTART:20261001T080000Z`), which every client
//! converts to its own zone, so no `VTIMEZONE` is needed. Lines are folded at
//! 75 octets without splitting a UTF-8 character; text values are escaped;
//! lines end in CRLF. Every event carries the edusync marker
//! (`X-EDUSYNC-MARKER`), which [`read_marker`] finds again.

use std::fmt::Write as _;

use jiff::Timestamp;

use crate::render::RenderedEvent;
use crate::timetable::EventStatus;

pub const PRODID: &str = "-//edusync//edusync timetable sync//EN";
/// The marker property's name: its value is `<profile>/<event_id>`.
pub const MARKER_PROP: &str = "X-EDUSYNC-MARKER";
/// The person whose copy this is.
pub const PERSON_PROP: &str = "X-EDUSYNC-PERSON";

/// Version data a target keeps per event.
#[derive(Debug, Clone, Copy)]
pub struct Revision {
    /// Bumped on every change.
    pub sequence: u32,
    /// When this version was written.
    pub stamp: Timestamp,
}

/// A whole calendar object holding one event.
pub fn event_object(ev: &RenderedEvent, rev: Revision) -> String {
    let mut out = String::with_capacity(1024);
    begin_calendar(&mut out, None);
    write_event(&mut out, ev, rev);
    end_calendar(&mut out);
    out
}

/// A calendar feed of many events.
pub fn feed<'a>(
    name: &str,
    events: impl IntoIterator<Item = (&'a RenderedEvent, Revision)>,
) -> String {
    let mut out = String::with_capacity(64 * 1024);
    begin_calendar(&mut out, Some(name));
    for (ev, rev) in events {
        write_event(&mut out, ev, rev);
    }
    end_calendar(&mut out);
    out
}

pub fn begin_calendar(out: &mut String, name: Option<&str>) {
    line(out, "BEGIN:VCALENDAR");
    line(out, "VERSION:2.0");
    line(out, &format!("PRODID:{PRODID}"));
    line(out, "CALSCALE:GREGORIAN");
    if let Some(name) = name {
        line(out, "METHOD:PUBLISH");
        line(out, &format!("X-WR-CALNAME:{}", escape(name)));
        line(out, "REFRESH-INTERVAL;VALUE=DURATION:PT1H");
        line(out, "X-PUBLISHED-TTL:PT1H");
    }
}

pub fn end_calendar(out: &mut String) {
    line(out, "END:VCALENDAR");
}

pub fn write_event(out: &mut String, ev: &RenderedEvent, rev: Revision) {
    line(out, "BEGIN:VEVENT");
    line(out, &format!("UID:{}", ev.uid));
    line(out, &format!("DTSTAMP:{}", utc(rev.stamp)));
    line(out, &format!("LAST-MODIFIED:{}", utc(rev.stamp)));
    line(out, &format!("DTSTART:{}", utc(ev.start)));
    line(out, &format!("DTEND:{}", utc(ev.end)));
    line(out, &format!("SEQUENCE:{}", rev.sequence));
    line(out, &format!("SUMMARY:{}", escape(&ev.subject)));
    if !ev.location.is_empty() {
        line(out, &format!("LOCATION:{}", escape(&ev.location)));
    }
    if let Some((lat, lon)) = ev.geo {
        line(out, &format!("GEO:{lat:.6};{lon:.6}"));
    }
    if !ev.body.is_empty() {
        line(out, &format!("DESCRIPTION:{}", escape(&ev.body)));
    }
    if !ev.categories.is_empty() {
        let cats: Vec<String> = ev.categories.iter().map(|c| escape(c)).collect();
        line(out, &format!("CATEGORIES:{}", cats.join(",")));
    }
    let status = match ev.status {
        EventStatus::Confirmed => "CONFIRMED",
        EventStatus::Tentative => "TENTATIVE",
        EventStatus::Cancelled => "CANCELLED",
    };
    line(out, &format!("STATUS:{status}"));
    line(
        out,
        if ev.busy {
            "TRANSP:OPAQUE"
        } else {
            "TRANSP:TRANSPARENT"
        },
    );
    line(out, "CLASS:PUBLIC");
    line(out, &format!("{MARKER_PROP}:{}", escape(&ev.marker)));
    line(out, &format!("{PERSON_PROP}:{}", escape(&ev.person_id)));
    line(out, "END:VEVENT");
}

/// `20261001T080000Z`.
pub fn utc(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Escapes a TEXT value (RFC 5545 §3.3.11).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Undoes [`escape`].
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') | Some('N') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Appends a content line, folded at 75 octets (RFC 5545 §3.1).
fn line(out: &mut String, content: &str) {
    let mut width = 0;
    for c in content.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
}

/// Unfolds content lines (RFC 5545 §3.1).
pub fn unfold(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = raw.strip_prefix([' ', '\t']) {
            if let Some(last) = lines.last_mut() {
                last.push_str(rest);
                continue;
            }
        }
        if !raw.is_empty() {
            lines.push(raw.to_string());
        }
    }
    lines
}

/// The edusync marker of a calendar object, if it has one: `(profile, event_id)`.
/// Objects without it are not edusync's and must never be touched.
pub fn read_marker(text: &str) -> Option<(String, String)> {
    for l in unfold(text) {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let prop = name.split(';').next().unwrap_or(name);
        if prop.eq_ignore_ascii_case(MARKER_PROP) {
            let v = unescape(value);
            let (profile, event) = v.split_once('/')?;
            return Some((profile.to_string(), event.to_string()));
        }
    }
    None
}

/// A short description of an object for logs: its UID and SUMMARY.
pub fn describe(text: &str) -> String {
    let mut uid = String::new();
    let mut summary = String::new();
    for l in unfold(text) {
        if let Some(v) = l.strip_prefix("UID:") {
            uid = v.to_string();
        } else if let Some(v) = l.strip_prefix("SUMMARY:") {
            summary = unescape(v);
        }
    }
    let mut s = String::new();
    let _ = write!(s, "{uid} {summary:?}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RenderedEvent {
        RenderedEvent {
            uid: "edusync-t-1@edusync".into(),
            marker: "teaching/E,1;x".into(),
            profile: "teaching".into(),
            event_id: "E,1;x".into(),
            person_id: "P1".into(),
            subject: "CHEM2041 Organic Chemistry; reactions, part 2 — ÄÖÜ ünïcödé ".repeat(3),
            location: "Room 1.14, Chemistry Building".into(),
            body: "Seat 12\nModule: CHEM2041\\x".into(),
            categories: vec!["Timetable".into(), "A,B".into()],
            start: "2026-10-01T08:00:00Z".parse().unwrap(),
            end: "2026-10-01T09:00:00Z".parse().unwrap(),
            timezone: "Europe/London".into(),
            status: EventStatus::Confirmed,
            busy: true,
            geo: Some((51.5, -0.12)),
        }
    }

    #[test]
    fn folds_at_75_octets_without_splitting_characters() {
        let text = event_object(
            &sample(),
            Revision {
                sequence: 2,
                stamp: "2026-09-01T00:00:00Z".parse().unwrap(),
            },
        );
        for l in text.split("\r\n") {
            assert!(l.len() <= 75, "line too long: {l:?}");
        }
        assert!(text.ends_with("END:VCALENDAR\r\n"));
        assert!(text.contains("DTSTART:20261001T080000Z\r\n"));
        assert!(text.contains("SEQUENCE:2\r\n"));
        let unfolded = unfold(&text);
        let summary = unfolded.iter().find(|l| l.starts_with("SUMMARY:")).unwrap();
        assert_eq!(unescape(&summary["SUMMARY:".len()..]), sample().subject);
    }

    #[test]
    fn marker_round_trips() {
        let text = event_object(
            &sample(),
            Revision {
                sequence: 0,
                stamp: Timestamp::UNIX_EPOCH,
            },
        );
        assert_eq!(
            read_marker(&text),
            Some(("teaching".into(), "E,1;x".into()))
        );
        assert_eq!(read_marker("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"), None);
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a,b;c\\d\ne"), "a\\,b\\;c\\\\d\\ne");
        assert_eq!(unescape(&escape("a,b;c\\d\ne")), "a,b;c\\d\ne");
    }
}
