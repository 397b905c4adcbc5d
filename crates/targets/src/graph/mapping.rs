//! edusync event ⇄ Graph JSON.

use std::borrow::Cow;
use std::time::Duration;

use jiff::{civil, tz::TimeZone, Timestamp};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::{GraphEvent, RemoteEvent, MARKER_PROPERTY_ID};

/// The `transactionId` of a create: a stable digest of the marker value and
/// the create's generation, so every retry of the same create sends the same one.
pub fn transaction_id(key: &str, generation: u32) -> String {
    let h = xxhash_rust::xxh3::xxh3_128(format!("{key}\u{1f}{generation}").as_bytes());
    format!("edusync-{h:032x}")
}

/// Graph's `dateTimeTimeZone` in UTC, written without an intermediate string.
struct GraphTime(Timestamp);

impl Serialize for GraphTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("dateTime", &Fmt(self.0.strftime("%Y-%m-%dT%H:%M:%S")))?;
        m.serialize_entry("timeZone", "UTC")?;
        m.end()
    }
}

/// Serializes a `Display` value as a JSON string, without allocating it first.
pub(crate) struct Fmt<T>(pub T);

impl<T: std::fmt::Display> Serialize for Fmt<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// The JSON of a create or update (content plus the marker), borrowing
/// from the op: serialized straight into the request body.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventBody<'a> {
    subject: Subject<'a>,
    body: ItemBody<'a>,
    location: Location<'a>,
    start: GraphTime,
    end: GraphTime,
    categories: &'a [String],
    show_as: &'static str,
    is_reminder_on: bool,
    single_value_extended_properties: [ExtendedProperty<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_id: Option<String>,
}

struct Subject<'a> {
    cancelled: bool,
    text: &'a str,
}

impl Serialize for Subject<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.cancelled {
            s.collect_str(&format_args!("Cancelled: {}", self.text))
        } else {
            s.serialize_str(self.text)
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemBody<'a> {
    content_type: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location<'a> {
    display_name: &'a str,
}

#[derive(Serialize)]
struct ExtendedProperty<'a> {
    id: &'static str,
    value: &'a str,
}

impl<'a> EventBody<'a> {
    /// `transaction_id` is given for creates only.
    pub(crate) fn new(key: &'a str, ev: &'a GraphEvent, transaction_id: Option<String>) -> Self {
        EventBody {
            subject: Subject {
                cancelled: ev.cancelled,
                text: &ev.subject,
            },
            body: ItemBody {
                content_type: "text",
                content: &ev.body_text,
            },
            location: Location {
                display_name: &ev.location,
            },
            start: GraphTime(ev.start_utc),
            end: GraphTime(ev.end_utc),
            categories: &ev.categories,
            show_as: if ev.show_as_busy && !ev.cancelled {
                "busy"
            } else {
                "free"
            },
            is_reminder_on: ev.reminder && !ev.cancelled,
            single_value_extended_properties: [ExtendedProperty {
                id: MARKER_PROPERTY_ID,
                value: key,
            }],
            transaction_id,
        }
    }
}

/// The JSON of a create or update, as a value (tests read it).
#[cfg(test)]
pub(crate) fn event_body(key: &str, ev: &GraphEvent, transaction_id: Option<&str>) -> Value {
    serde_json::to_value(EventBody::new(key, ev, transaction_id.map(String::from)))
        .expect("plain JSON")
}

/// One request of a `$batch`, serialized into the batch body as it is.
#[derive(Serialize)]
pub(crate) struct BatchRequest<'a> {
    pub id: Fmt<usize>,
    pub method: &'static str,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<JsonContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<EventBody<'a>>,
}

/// `{"Content-Type": "application/json"}`.
pub(crate) struct JsonContent;

impl Serialize for JsonContent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("Content-Type", "application/json")?;
        m.end()
    }
}

/// `{"requests": [...]}`.
#[derive(Serialize)]
pub(crate) struct Batch<'a> {
    pub requests: &'a [BatchRequest<'a>],
}

/// A `$batch` answer, read without building a tree of every event it echoes.
#[derive(Deserialize)]
pub(crate) struct BatchAnswer<'a> {
    #[serde(borrow, default)]
    pub responses: Vec<InnerAnswer<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct InnerAnswer<'a> {
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub headers: InnerHeaders,
    #[serde(default)]
    pub body: Option<AnswerBody>,
}

/// What the client reads of an answer's body: the id and change key of
/// an event, or Graph's `error`.
#[derive(Deserialize, Default, Debug)]
pub(crate) struct AnswerBody {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, rename = "changeKey")]
    pub change_key: Option<String>,
    #[serde(default)]
    pub error: Option<ErrorBody>,
}

#[derive(Deserialize, Default, Debug)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

impl AnswerBody {
    /// Graph's error `code` and `message`, empty when absent.
    pub(crate) fn error_parts(&self) -> (String, String) {
        let e = self.error.as_ref();
        (
            e.and_then(|e| e.code.clone()).unwrap_or_default(),
            e.and_then(|e| e.message.clone()).unwrap_or_default(),
        )
    }
}

/// The headers of an inner answer; only `Retry-After` (any case) is kept.
#[derive(Default)]
pub(crate) struct InnerHeaders {
    pub retry_after: Option<Duration>,
}

impl<'de> Deserialize<'de> for InnerHeaders {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = InnerHeaders;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of headers")
            }
            fn visit_unit<E>(self) -> Result<InnerHeaders, E> {
                Ok(InnerHeaders::default())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<InnerHeaders, A::Error> {
                let mut out = InnerHeaders::default();
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    if k.eq_ignore_ascii_case("retry-after") {
                        let secs = match map.next_value::<Value>()? {
                            Value::String(s) => s.trim().parse::<f64>().ok(),
                            Value::Number(n) => n.as_f64(),
                            _ => None,
                        };
                        out.retry_after = secs
                            .filter(|s| s.is_finite() && *s >= 0.0)
                            .map(Duration::from_secs_f64);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
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

    #[test]
    fn batch_answers_are_read_without_the_echoed_events() {
        let text = br#"{"responses":[
            {"id":"3","status":201,"headers":{"Content-Type":"application/json"},
             "body":{"id":"AAMk1","changeKey":"ck1","subject":"x","start":{"dateTime":"2026-01-05T09:00:00","timeZone":"UTC"},"attendees":[]}},
            {"id":"4","status":429,"headers":{"retry-after":"7"},
             "body":{"error":{"code":"ApplicationThrottled","message":"over the limit"}}},
            {"id":"5","status":204,"headers":{"Retry-After":2.5}}
        ]}"#;
        let a: BatchAnswer<'_> = serde_json::from_slice(text).unwrap();
        let r = &a.responses;
        assert_eq!(r[0].id.as_deref(), Some("3"));
        let b0 = r[0].body.as_ref().unwrap();
        assert_eq!(
            (b0.id.as_deref(), b0.change_key.as_deref()),
            (Some("AAMk1"), Some("ck1"))
        );
        assert_eq!(r[1].headers.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(
            r[1].body.as_ref().unwrap().error_parts(),
            ("ApplicationThrottled".into(), "over the limit".into())
        );
        assert_eq!(r[2].headers.retry_after, Some(Duration::from_millis(2500)));
        assert!(r[2].body.is_none());
    }

    #[test]
    fn a_batch_request_is_the_json_graph_expects() {
        let ev = GraphEvent {
            subject: "Maths \"A\"".into(),
            body_text: "Line 1\nLine 2".into(),
            location: "R1".into(),
            start_utc: "2026-01-05T09:00:00Z".parse().unwrap(),
            end_utc: "2026-01-05T10:00:00Z".parse().unwrap(),
            categories: vec!["Timetable".into()],
            show_as_busy: true,
            reminder: false,
            cancelled: true,
        };
        let reqs = [BatchRequest {
            id: Fmt(12),
            method: "POST",
            url: "/users/a@b/calendars/c/events".into(),
            headers: Some(JsonContent),
            body: Some(EventBody::new("p/e1", &ev, Some("tx".into()))),
        }];
        let v = serde_json::to_value(Batch { requests: &reqs }).unwrap();
        let r = &v["requests"][0];
        assert_eq!(r["id"], "12");
        assert_eq!(r["headers"]["Content-Type"], "application/json");
        assert_eq!(r["body"]["subject"], "Cancelled: Maths \"A\"");
        assert_eq!(r["body"]["body"]["content"], "Line 1\nLine 2");
        assert_eq!(r["body"]["showAs"], "free");
        assert_eq!(r["body"]["isReminderOn"], false);
        assert_eq!(r["body"]["end"]["dateTime"], "2026-01-05T10:00:00");
        assert_eq!(r["body"]["transactionId"], "tx");
    }
}
