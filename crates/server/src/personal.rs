//! Per-person subscription feeds and the "my timetable" page, both behind
//! an unguessable token.
//!
//! - `GET /feeds/p/{token}.ics`: everything the person's calendars should
//!   hold (every profile's desire from its last cycle, inside the sync
//!   window), rendered with the profile's renderer, times in UTC. `ETag` is
//!   a hash of the entries' fingerprints, so it changes only when the
//!   content does; `If-None-Match` and `If-Modified-Since` answer 304.
//! - `GET /my/{token}`: today and the rest of this week, in the profile's
//!   time zone, as plain semantic HTML readable on a phone.
//!
//! A token is 160 random bits shown once when an admin issues it; the store
//! keeps only its BLAKE3 hash. Rendered feeds are cached per person (bounded
//! in bytes) and rebuilt only when a new cycle changed what they hold.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hasher;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use edusync_core::ics::{self, Revision};
use edusync_core::render::RenderedEvent;
use jiff::Timestamp;

use crate::auth::token_hash;
use crate::console::esc;
use crate::scheduler::{Published, Scheduler};
use crate::AppState;

/// Cached feed bodies are dropped, oldest first, past this many bytes.
pub const CACHE_BYTES: usize = 256 << 20;
/// How long a token's person is remembered without asking the store.
const TOKEN_TTL_SECS: i64 = 60;

pub fn routes(state: &AppState) -> Router {
    Router::new()
        .route("/feeds/p/{file}", get(feed))
        .route("/my/{token}", get(my_page))
        .with_state(state.clone())
}

/// One person's rendered feed.
pub struct BuiltFeed {
    pub generations: Vec<u64>,
    pub etag: String,
    pub last_modified: String,
    pub body: Bytes,
}

/// When a person's feed content last changed (kept after the body is evicted).
#[derive(Clone)]
struct Version {
    etag: String,
    last_modified: Timestamp,
}

#[derive(Default)]
pub struct FeedCache {
    built: Mutex<HashMap<String, Arc<BuiltFeed>>>,
    bytes: Mutex<usize>,
    versions: Mutex<HashMap<String, Version>>,
    tokens: Mutex<HashMap<String, (Option<String>, i64)>>,
}

impl FeedCache {
    /// Forgets a token's person at once (rotation, revocation).
    pub fn forget_tokens(&self) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn person_for(&self, state: &AppState, token: &str) -> Option<String> {
        let h = token_hash(token);
        let now = edusync_store::now();
        if let Some((p, at)) = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&h)
        {
            if now - at < TOKEN_TTL_SECS {
                return p.clone();
            }
        }
        let p = state.store.feed_token_person(&h).ok().flatten();
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() > 200_000 {
            t.clear();
        }
        t.insert(h, (p.clone(), now));
        p
    }

    fn get(&self, person: &str, generations: &[u64]) -> Option<Arc<BuiltFeed>> {
        self.built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(person)
            .filter(|b| b.generations == generations)
            .cloned()
    }

    fn put(&self, person: &str, feed: Arc<BuiltFeed>) {
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        let mut bytes = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = built.insert(person.to_string(), feed.clone()) {
            *bytes -= old.body.len();
        }
        *bytes += feed.body.len();
        if *bytes > CACHE_BYTES {
            // Drop everything but this one: simple, and rebuilt on demand.
            built.retain(|k, _| k == person);
            *bytes = feed.body.len();
        }
    }
}

/// One desired entry of a person: (slot index, person index, event index).
type Entry = (usize, u32, u32);

/// The person's entries in every published profile, inside each window.
fn entries(published: &[Option<Arc<Published>>], person: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, p) in published.iter().enumerate() {
        let Some(p) = p else { continue };
        let d = &p.desire;
        let Some(pi) = d.tt.person_index(person) else {
            continue;
        };
        if d.pilot.as_ref().is_some_and(|pl| !pl.contains(person)) {
            continue;
        }
        for &e in d.attendance.of(pi) {
            if d.window.contains(d.tt.events[e as usize].start) {
                out.push((i, pi, e));
            }
        }
    }
    out
}

fn content_etag(published: &[Option<Arc<Published>>], entries: &[Entry]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for &(i, p, e) in entries {
        let d = &published[i]
            .as_ref()
            .expect("entry of a published profile")
            .desire;
        h.write(d.renderer.settings().profile.as_bytes());
        h.write(d.tt.events[e as usize].id.as_bytes());
        h.write_u64(d.fingerprints.entry(&d.tt, p, e));
    }
    format!("\"{:016x}\"", h.finish())
}

fn render_entries(published: &[Option<Arc<Published>>], entries: &[Entry]) -> Vec<RenderedEvent> {
    let mut out: Vec<RenderedEvent> = entries
        .iter()
        .filter_map(|&(i, p, e)| {
            let d = &published[i].as_ref()?.desire;
            d.renderer.render(&d.tt, p, e).ok()
        })
        .collect();
    out.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.uid.cmp(&b.uid)));
    out
}

fn display_name(published: &[Option<Arc<Published>>], person: &str) -> Option<String> {
    published.iter().flatten().find_map(|p| {
        let tt = &p.desire.tt;
        let i = tt.person_index(person)?;
        let pe = &tt.people[i as usize];
        Some(pe.display_name.clone().unwrap_or_else(|| pe.email.clone()))
    })
}

fn http_date(t: Timestamp) -> String {
    t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn published_all(s: &Scheduler) -> Vec<Option<Arc<Published>>> {
    s.slots.iter().map(|s| s.published()).collect()
}

/// Builds (or finds) `person`'s feed. `None` when no profile has published yet.
pub fn build_feed(state: &AppState, person: &str) -> Option<Arc<BuiltFeed>> {
    let published = published_all(&state.scheduler);
    if published.iter().all(Option::is_none) {
        return None;
    }
    let generations: Vec<u64> = published
        .iter()
        .map(|p| p.as_ref().map_or(0, |p| p.generation))
        .collect();
    if let Some(hit) = state.feeds.get(person, &generations) {
        return Some(hit);
    }
    let entries = entries(&published, person);
    let etag = content_etag(&published, &entries);
    let now = Timestamp::now();
    let version = {
        let mut v = state
            .feeds
            .versions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let cur = v.get(person).filter(|v| v.etag == etag).cloned();
        cur.unwrap_or_else(|| {
            let nv = Version {
                etag: etag.clone(),
                last_modified: now,
            };
            v.insert(person.to_string(), nv.clone());
            nv
        })
    };
    let events = render_entries(&published, &entries);
    let name = match display_name(&published, person) {
        Some(n) => format!("Timetable – {n}"),
        None => "Timetable".to_string(),
    };
    let stamp = version.last_modified;
    let body = ics::feed(
        &name,
        events.iter().map(|e| (e, Revision { sequence: 0, stamp })),
    );
    let built = Arc::new(BuiltFeed {
        generations,
        etag: version.etag,
        last_modified: http_date(stamp),
        body: Bytes::from(body),
    });
    state.feeds.put(person, built.clone());
    Some(built)
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, "no-store")],
        "No feed has this address. It may have been replaced or revoked: ask for the new link.\n",
    )
        .into_response()
}

fn not_ready() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "60")],
        "The first sync cycle has not finished yet; try again in a minute.\n",
    )
        .into_response()
}

async fn feed(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = file.strip_suffix(".ics") else {
        return not_found();
    };
    if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return not_found();
    }
    let Some(person) = state.feeds.person_for(&state, token) else {
        return not_found();
    };
    let Some(f) = build_feed(&state, &person) else {
        return not_ready();
    };
    let fresh = match headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        Some(inm) => inm
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == f.etag || t == "*"),
        None => headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == f.last_modified),
    };
    let common = [
        (
            header::ETAG,
            HeaderValue::from_str(&f.etag).unwrap_or(HeaderValue::from_static("\"\"")),
        ),
        (
            header::LAST_MODIFIED,
            HeaderValue::from_str(&f.last_modified).unwrap_or(HeaderValue::from_static("")),
        ),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=300"),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/calendar; charset=utf-8"),
        )],
        f.body.clone(),
    )
        .into_response()
}

/// The page's own small style sheet: large type, high contrast (at least 7:1), visible focus.
const MY_CSS: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#111;background:#fff;line-height:1.45;font-size:1.05rem}\
main{max-width:40rem;margin:0 auto;padding:1rem}h1{font-size:1.5rem;margin:.2rem 0 1rem}h2{font-size:1.2rem;margin:1.4rem 0 .4rem;border-bottom:2px solid #111}\
h3{font-size:1rem;margin:1rem 0 .3rem}ol{list-style:none;padding:0;margin:0}li{padding:.5rem 0;border-bottom:1px solid #bbb}\
.t{font-weight:700;font-variant-numeric:tabular-nums}.s{font-weight:600}.w{color:#333}.x{text-decoration:line-through}\
a{color:#0645ad}a:focus,button:focus{outline:3px solid #000;outline-offset:2px}.links a{display:inline-block;margin:.3rem 1rem .3rem 0}\
@media (prefers-color-scheme:dark){body{background:#111;color:#eee}h2{border-color:#eee}.w{color:#ccc}a{color:#9cf}a:focus{outline-color:#fff}li{border-color:#555}}";

async fn my_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return not_found();
    }
    let Some(person) = state.feeds.person_for(&state, &token) else {
        return not_found();
    };
    let published = published_all(&state.scheduler);
    if published.iter().all(Option::is_none) {
        return not_ready();
    }
    let entries = entries(&published, &person);
    let events = render_entries(&published, &entries);
    let tz = published
        .iter()
        .flatten()
        .next()
        .map(|_| {
            state
                .scheduler
                .slots
                .iter()
                .find(|s| s.published().is_some())
                .map(|s| s.profile.timezone.clone())
                .unwrap_or(jiff::tz::TimeZone::UTC)
        })
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let name = display_name(&published, &person).unwrap_or_else(|| person.clone());
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let html = render_my_page(&name, &events, Timestamp::now(), &tz, host, &token);
    (
        [
            (header::CACHE_CONTROL, "private, no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(html),
    )
        .into_response()
}

/// The page itself (pure, for tests).
pub fn render_my_page(
    name: &str,
    events: &[RenderedEvent],
    now: Timestamp,
    tz: &jiff::tz::TimeZone,
    host: &str,
    token: &str,
) -> String {
    let today = now.to_zoned(tz.clone()).date();
    let days_to_sunday = 6 - today.weekday().to_monday_zero_offset();
    let week_end = today
        .checked_add(jiff::Span::new().days(days_to_sunday as i64 + 1))
        .unwrap_or(today);
    let mut by_day: Vec<(jiff::civil::Date, Vec<&RenderedEvent>)> = Vec::new();
    for e in events {
        let d = e.start.to_zoned(tz.clone()).date();
        // Today's events that already ended still show (greyed by time), the rest of the week follows.
        if d < today || d >= week_end {
            continue;
        }
        match by_day.last_mut() {
            Some((day, v)) if *day == d => v.push(e),
            _ => by_day.push((d, vec![e])),
        }
    }
    let mut b = String::new();
    let _ = write!(
        b,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>My timetable — {n}</title><style>{MY_CSS}</style></head><body><main>\
<h1>My timetable <span class=\"w\">— {n}</span></h1>",
        n = esc(name)
    );
    let day_list = |b: &mut String, evs: &[&RenderedEvent]| {
        b.push_str("<ol>");
        for e in evs {
            let s = e.start.to_zoned(tz.clone());
            let en = e.end.to_zoned(tz.clone());
            let cancelled = e.status == edusync_core::timetable::EventStatus::Cancelled;
            let _ = write!(
                b,
                "<li{cls}><span class=\"t\"><time datetime=\"{si}\">{st}</time>–<time datetime=\"{ei}\">{et}</time></span> \
<span class=\"s\">{sub}</span>{canc}{loc}</li>",
                cls = if cancelled { " class=\"x\"" } else { "" },
                si = e.start,
                st = s.strftime("%H:%M"),
                ei = e.end,
                et = en.strftime("%H:%M"),
                sub = esc(&e.subject),
                canc = if cancelled { " <strong>(cancelled)</strong>" } else { "" },
                loc = if e.location.is_empty() {
                    String::new()
                } else {
                    format!("<br><span class=\"w\">{}</span>", esc(&e.location))
                },
            );
        }
        b.push_str("</ol>");
    };
    b.push_str("<section aria-labelledby=\"today\"><h2 id=\"today\">Today, ");
    b.push_str(&today.strftime("%A %-d %B").to_string());
    b.push_str("</h2>");
    match by_day.iter().find(|(d, _)| *d == today) {
        Some((_, evs)) => day_list(&mut b, evs),
        None => b.push_str("<p>Nothing today.</p>"),
    }
    b.push_str(
        "</section><section aria-labelledby=\"week\"><h2 id=\"week\">Rest of this week</h2>",
    );
    let rest: Vec<_> = by_day.iter().filter(|(d, _)| *d != today).collect();
    if rest.is_empty() {
        b.push_str("<p>Nothing else this week.</p>");
    }
    for (d, evs) in rest {
        let _ = write!(b, "<h3>{}</h3>", d.strftime("%A %-d %B"));
        day_list(&mut b, evs);
    }
    let _ = write!(
        b,
        "</section><section aria-labelledby=\"sub\"><h2 id=\"sub\">In your calendar app</h2>\
<p class=\"links\"><a href=\"webcal://{h}/feeds/p/{t}.ics\">Subscribe (webcal)</a><a href=\"/feeds/p/{t}.ics\">Download the feed (.ics)</a></p>\
<p class=\"w\">Times are shown in {tz}. This link is personal: do not share it.</p></section></main></body></html>",
        h = esc(host),
        t = esc(token),
        tz = esc(tz.iana_name().unwrap_or("UTC")),
    );
    b.push('\n');
    b
}
