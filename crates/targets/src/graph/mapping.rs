//! edusync event ⇄ Graph JSON.

use jiff::{civil, tz::TimeZone, Timestamp};
use serde_json::{json, Value};

use super::{GraphEvent, RemoteEvent, MARKER_PROPERTY_ID};

/// The `transactionId` of a create: a stable digest of the marker value and
/// the create's generation, so every retry of the same create sends the same one.
pub fn transaction_id(key: &str, generation: u32) -> String {
    let h = xxhash_rust::xxh3::xxh3_128(format!("{key}\u{1f}{generation}").as_bytes());
    format!("edusync-{h:032x}")
}

fn graph_time(ts: Timestamp) -> Value {
    json!({ "dateTime": ts.strftime("%Y-%m-%dT%H:%M:%S").to_string(), "timeZone": "UTC" })
}

/// The JSON of a create or update: content plus the marker.
pub(crate) fn event_body(key: &str, ev: &GraphEvent, transaction_id: Option<&str>) -> Value {
    let subject = if ev.cancelled {
        format!("Cancelled: {}", ev.subject)
    } else {
        ev.subject.clone()
    };
    let mut v = json!({
        "subject": subject,
        "body": { "contentType": "text", "content": ev.body_text },
        "location": { "displayName": ev.location },
        "start": graph_time(ev.start_utc),
        "end": graph_time(ev.end_utc),
        "categories": ev.categories,
        "showAs": if ev.show_as_busy && !ev.cancelled { "busy" } else { "free" },
        "isReminderOn": ev.reminder && !ev.cancelled,
        "singleValueExtendedProperties": [ { "id": MARKER_PROPERTY_ID, "value": key } ],
    });
    if let Some(tx) = transaction_id {
        v["transactionId"] = Value::String(tx.to_string());
    }
    v
}

/// Parses Graph's `dateTimeTimeZone` (UTC, as requested with `Prefer: outlook.timezone="UTC"`).
pub(crate) fn parse_graph_time(v: &Value) -> Option<Timestamp> {
    let dt = v.get("dateTime")?.as_str()?;
    let tz = v.get("timeZone").and_then(Value::as_str).unwrap_or("UTC");
    let civil: civil::DateTime = dt.trim_end_matches('Z').parse().ok()?;
    let zone = if tz.eq_ignore_ascii_case("utc") {
        TimeZone::UTC
    } else {
        TimeZone::get(tz).ok()?
    };
    civil.to_zoned(zone).ok().map(|z| z.timestamp())
}

/// The marker value of an event returned with the marker expanded.
pub(crate) fn marker_of(v: &Value) -> Option<String> {
    let want = MARKER_PROPERTY_ID.to_ascii_lowercase();
    v.get("singleValueExtendedProperties")?
        .as_array()?
        .iter()
        .find(|p| {
            p.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.to_ascii_lowercase() == want)
        })
        .and_then(|p| p.get("value")?.as_str().map(String::from))
}

/// A listed event, when it carries the marker.
pub(crate) fn remote_event(v: &Value) -> Option<RemoteEvent> {
    Some(RemoteEvent {
        id: v.get("id")?.as_str()?.to_string(),
        key: marker_of(v)?,
        change_key: v
            .get("changeKey")
            .and_then(Value::as_str)
            .or_else(|| v.get("@odata.etag").and_then(Value::as_str))
            .map(String::from),
        subject: v
            .get("subject")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        start: parse_graph_time(v.get("start")?)?,
        end: parse_graph_time(v.get("end")?)?,
    })
}

/// Percent-encodes one path segment (a mailbox or an id).
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@' | b'=' | b'+')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a query value.
pub(crate) fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An OData string literal.
pub(crate) fn odata_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_id_is_stable_and_distinct() {
        assert_eq!(transaction_id("p/e1", 0), transaction_id("p/e1", 0));
        assert_ne!(transaction_id("p/e1", 0), transaction_id("p/e1", 1));
        assert_ne!(transaction_id("p/e1", 0), transaction_id("p/e2", 0));
        assert_eq!(transaction_id("p/e1", 0).len(), "edusync-".len() + 32);
    }

    #[test]
    fn body_carries_marker_and_utc_times() {
        let ev = GraphEvent {
            subject: "Maths".into(),
            body_text: "Room 1".into(),
            location: "R1".into(),
            start_utc: "2026-01-05T09:00:00Z".parse().unwrap(),
            end_utc: "2026-01-05T10:00:00Z".parse().unwrap(),
            categories: vec!["Timetable".into()],
            show_as_busy: true,
            reminder: false,
            cancelled: false,
        };
        let v = event_body("p/e1", &ev, Some("tx"));
        assert_eq!(v["start"]["dateTime"], "2026-01-05T09:00:00");
        assert_eq!(v["start"]["timeZone"], "UTC");
        assert_eq!(v["singleValueExtendedProperties"][0]["value"], "p/e1");
        assert_eq!(v["transactionId"], "tx");
        assert_eq!(v["showAs"], "busy");
        assert_eq!(parse_graph_time(&v["end"]), Some(ev.end_utc));
    }
}
