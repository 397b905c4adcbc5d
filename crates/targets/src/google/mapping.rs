//! Pure JSON and naming for the Google Calendar API: event ids, the
//! marker, event bodies, error bodies. No I/O.

use edusync_core::render::RenderedEvent;
use edusync_core::timetable::EventStatus;
use jiff::Timestamp;
use serde_json::{json, Value};

use super::{MARKER_KEY, MARKER_PROFILE};

/// base32hex (RFC 4648 §7) alphabet, lowercase: the characters Google
/// allows in a client-chosen event id.
const BASE32HEX: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";

/// The event id of one person's copy of one event: base32hex of its
/// 128-bit entry key (`edusync_core::keys::entry_key`), 26 characters.
/// Google's rules: characters `a–v` and `0–9`, 5 to 1024 long, unique per
/// calendar. The same entry always gets the same id, so a retried or
/// replayed insert is answered `409 duplicate` instead of making a second
/// event.
pub fn event_id(profile: &str, person_id: &str, event_id: &str) -> String {
    base32hex(edusync_core::keys::entry_key(profile, person_id, event_id))
}

/// `v` as 26 base32hex digits, most significant first.
pub fn base32hex(v: u128) -> String {
    // 26 digits of 5 bits = 130 bits: the top digit carries 3 bits.
    (0..26)
        .rev()
        .map(|i| BASE32HEX[((v >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// Whether `id` is an id Google accepts from a client.
pub fn valid_event_id(id: &str) -> bool {
    (5..=1024).contains(&id.len()) && id.bytes().all(|b| BASE32HEX.contains(&b))
}

/// The `extendedProperties.private` of an edusync event: the profile (the
/// `privateExtendedProperty` filter of listings) and the marker value
/// `<profile>/<event id>`.
pub fn marker_properties(profile: &str, key: &str) -> Value {
    json!({ MARKER_PROFILE: profile, MARKER_KEY: key })
}

/// The marker value of a Google event, when it carries edusync's marker.
pub fn marker_of(event: &Value) -> Option<&str> {
    event
        .pointer("/extendedProperties/private")
        .and_then(|p| p.get(MARKER_KEY))
        .and_then(Value::as_str)
}

fn rfc3339(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The JSON of an insert (with `id`) or a full patch (without): content,
/// `status: confirmed` (which also brings back an event deleted by hand,
/// whose id Google keeps) and the marker. Reminders are off: a timetable
/// would otherwise ring before every lecture.
pub fn event_body(id: Option<&str>, profile: &str, ev: &RenderedEvent) -> Value {
    let cancelled = ev.status == EventStatus::Cancelled;
    let summary = if cancelled && !ev.subject.starts_with("Cancelled: ") {
        format!("Cancelled: {}", ev.subject)
    } else {
        ev.subject.clone()
    };
    let mut v = json!({
        "summary": summary,
        "description": ev.body,
        "location": ev.location,
        "start": { "dateTime": rfc3339(ev.start), "timeZone": "UTC" },
        "end": { "dateTime": rfc3339(ev.end), "timeZone": "UTC" },
        "status": "confirmed",
        "transparency": if ev.busy && !cancelled { "opaque" } else { "transparent" },
        "reminders": { "useDefault": false, "overrides": [] },
        "extendedProperties": { "private": marker_properties(profile, &ev.marker) },
    });
    if let Some(id) = id {
        v["id"] = json!(id);
    }
    v
}

/// `(http status, reason, message)` of a Google error body
/// (`{"error": {"errors": [{"domain", "reason", "message"}], "code", "message"}}`).
pub fn error_parts(body: &Value) -> (String, String) {
    let e = body.get("error");
    let reason = e
        .and_then(|e| e.pointer("/errors/0/reason"))
        .and_then(Value::as_str)
        .or_else(|| e.and_then(|e| e.get("status")).and_then(Value::as_str))
        .unwrap_or("")
        .to_string();
    let message = e
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    (reason, message)
}

/// Reasons Google answers when a request rate is exceeded (403 or 429): back off and try again.
pub fn is_rate_limit(status: u16, reason: &str) -> bool {
    status == 429
        || (status == 403 && matches!(reason, "rateLimitExceeded" | "userRateLimitExceeded"))
}

/// Google's calendar usage limit: the calendar was made read-only for hours.
pub fn is_usage_limit(status: u16, reason: &str, message: &str) -> bool {
    status == 403
        && (reason == "quotaExceeded"
            || message
                .to_ascii_lowercase()
                .contains("calendar usage limits exceeded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_follow_googles_rules_and_are_stable() {
        let a = event_id("teaching", "P1", "E1");
        assert_eq!(a, event_id("teaching", "P1", "E1"));
        assert_ne!(a, event_id("teaching", "P2", "E1"));
        assert_ne!(a, event_id("exams", "P1", "E1"));
        assert_eq!(a.len(), 26);
        assert!(valid_event_id(&a), "{a}");
        assert_eq!(base32hex(0), "0".repeat(26));
        assert_eq!(base32hex(31), format!("{}v", "0".repeat(25)));
        assert_eq!(base32hex(u128::MAX), format!("7{}", "v".repeat(25)));
        assert!(!valid_event_id("abcw1"));
        assert!(!valid_event_id("ab1"));
    }

    #[test]
    fn classifies_googles_quota_errors() {
        assert!(is_rate_limit(403, "rateLimitExceeded"));
        assert!(is_rate_limit(403, "userRateLimitExceeded"));
        assert!(is_rate_limit(429, "rateLimitExceeded"));
        assert!(!is_rate_limit(403, "quotaExceeded"));
        assert!(is_usage_limit(
            403,
            "quotaExceeded",
            "Calendar usage limits exceeded."
        ));
        assert!(!is_usage_limit(403, "forbidden", "no"));
        let body = json!({"error": {"errors": [{"domain": "usageLimits", "reason": "quotaExceeded", "message": "Calendar usage limits exceeded."}], "code": 403, "message": "Calendar usage limits exceeded."}});
        assert_eq!(
            error_parts(&body),
            (
                "quotaExceeded".to_string(),
                "Calendar usage limits exceeded.".to_string()
            )
        );
    }
}
