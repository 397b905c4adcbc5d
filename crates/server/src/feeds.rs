//! Calendar feeds. `/feeds/server-days.ics`: the days the schools' servers
//! are switched on (`[hub] server_days`), as an RFC 5545 calendar of all-day
//! events, from last month to a year ahead. Public: it holds no personal data.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use jiff::civil::{Date, Weekday};

use crate::AppState;

pub fn routes(state: &AppState) -> Router {
    Router::new()
        .route("/feeds/server-days.ics", get(server_days))
        .with_state(state.clone())
}

async fn server_days(State(state): State<AppState>) -> impl IntoResponse {
    let now = jiff::Zoned::now();
    let body = server_days_ics(&state.config.hub.server_days, now.date(), now.timestamp());
    (
        [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
        body,
    )
}

/// Parses `"2FRI"` / `"-1MON"` (validated by the config loader).
fn parse_day(s: &str) -> Option<(i8, Weekday)> {
    let (week, day) = s.split_at(s.len().checked_sub(3)?);
    let wd = match day {
        "MON" => Weekday::Monday,
        "TUE" => Weekday::Tuesday,
        "WED" => Weekday::Wednesday,
        "THU" => Weekday::Thursday,
        "FRI" => Weekday::Friday,
        "SAT" => Weekday::Saturday,
        "SUN" => Weekday::Sunday,
        _ => return None,
    };
    Some((week.parse().ok()?, wd))
}

/// The dates matching `specs` from the first of last month to 12 months after `today`.
pub fn server_dates(specs: &[String], today: Date) -> Vec<Date> {
    let mut out = Vec::new();
    let Ok(start) = today
        .first_of_month()
        .checked_sub(jiff::Span::new().months(1))
    else {
        return out;
    };
    for m in 0..14 {
        let Ok(month) = start.checked_add(jiff::Span::new().months(m)) else {
            continue;
        };
        for s in specs {
            if let Some((n, wd)) = parse_day(s) {
                if let Ok(d) = month.nth_weekday_of_month(n, wd) {
                    out.push(d);
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Folds a content line at 75 octets (RFC 5545 §3.1) and ends it with CRLF.
fn line(out: &mut String, s: &str) {
    let mut width = 0;
    for ch in s.chars() {
        let w = ch.len_utf8();
        if width + w > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(ch);
        width += w;
    }
    out.push_str("\r\n");
}

pub fn server_days_ics(specs: &[String], today: Date, now: jiff::Timestamp) -> String {
    let stamp = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    let mut out = String::new();
    for l in [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//edusync//Server days//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "X-WR-CALNAME:School servers on",
    ] {
        line(&mut out, l);
    }
    for d in server_dates(specs, today) {
        let next = d.tomorrow().unwrap_or(d);
        line(&mut out, "BEGIN:VEVENT");
        line(
            &mut out,
            &format!("UID:server-day-{}@edusync", d.strftime("%Y%m%d")),
        );
        line(&mut out, &format!("DTSTAMP:{stamp}"));
        line(
            &mut out,
            &format!("DTSTART;VALUE=DATE:{}", d.strftime("%Y%m%d")),
        );
        line(
            &mut out,
            &format!("DTEND;VALUE=DATE:{}", next.strftime("%Y%m%d")),
        );
        line(&mut out, "SUMMARY:School servers on");
        line(
            &mut out,
            &format!(
                "DESCRIPTION:School servers are switched on today ({}) so their agents can send data to the hub. Days: {}.",
                d.strftime("%A %-d %B %Y"),
                specs.join("\\, ")
            ),
        );
        line(&mut out, "TRANSP:TRANSPARENT");
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn second_and_fourth_friday() {
        let d = server_dates(&["2FRI".into(), "4FRI".into()], date(2026, 3, 10));
        assert_eq!(d[0], date(2026, 2, 13));
        assert_eq!(d[1], date(2026, 2, 27));
        assert_eq!(d[2], date(2026, 3, 13));
        assert_eq!(d[3], date(2026, 3, 27));
        assert_eq!(d.len(), 28);
        let last = server_dates(&["-1MON".into()], date(2026, 3, 10));
        assert_eq!(last[1], date(2026, 3, 30));
    }

    #[test]
    fn ics_shape() {
        let ics = server_days_ics(
            &["2FRI".into()],
            date(2026, 3, 10),
            "2026-03-10T12:00:00Z".parse().unwrap(),
        );
        assert!(ics.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:"));
        assert!(ics.ends_with("END:VCALENDAR\r\n"));
        assert!(ics.contains("DTSTART;VALUE=DATE:20260313\r\nDTEND;VALUE=DATE:20260314\r\n"));
        assert!(ics.contains("UID:server-day-20260313@edusync\r\n"));
        assert!(ics.contains("DTSTAMP:20260310T120000Z\r\n"));
        for l in ics.split("\r\n") {
            assert!(l.len() <= 75, "{l}");
            assert!(!l.contains('\n'));
        }
        assert_eq!(
            ics.matches("BEGIN:VEVENT").count(),
            ics.matches("END:VEVENT").count()
        );
    }
}
