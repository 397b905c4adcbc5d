//! `/console/people?q=ID-OR-EMAIL`: what a person's calendars should hold
//! (from each profile's last cycle), what each target holds according to
//! the ledger, their recent operation errors, and their feed link (issue,
//! rotate, revoke: admins).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;

use super::dashboard::CsrfForm;
use super::{button, check, err500, esc, page, when};
use crate::auth::{random_hex, token_hash, Principal, Role};
use crate::AppState;

pub fn routes(state: &AppState) -> Router {
    Router::new()
        .route("/console/people", get(lookup))
        .route("/console/people/{id}/feed", post(issue_feed))
        .route("/console/people/{id}/feed/revoke", post(revoke_feed))
        .with_state(state.clone())
}

#[derive(Deserialize)]
struct Q {
    #[serde(default)]
    q: String,
}

const SHOW: usize = 200;

fn local(t: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%a %Y-%m-%d %H:%M")
        .to_string()
}

/// Resolves an id or email to a person id with the last cycles' timetables.
fn resolve(state: &AppState, q: &str) -> String {
    for s in &state.scheduler.slots {
        if let Some(p) = s.published() {
            if let Some(i) = p.desire.tt.find_person(q) {
                return p.desire.tt.people[i as usize].id.clone();
            }
        }
    }
    q.to_string()
}

async fn lookup(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<Q>,
) -> Response {
    let st = state.clone();
    let r = tokio::task::spawn_blocking(move || render(&st, &p, q.q.trim(), None)).await;
    match r {
        Ok(Ok(h)) => Html(h).into_response(),
        Ok(Err(e)) => err500(e),
        Err(e) => err500(e),
    }
}

fn render(
    state: &AppState,
    p: &Principal,
    q: &str,
    new_link: Option<&str>,
) -> Result<String, String> {
    let mut b = String::new();
    let _ = write!(
        b,
        "<form method=\"get\" action=\"/console/people\" role=\"search\"><label for=\"q\">Person id or email</label>\
<input type=\"search\" id=\"q\" name=\"q\" value=\"{}\" autocomplete=\"off\"> <button type=\"submit\">Look up</button></form>",
        esc(q)
    );
    if q.is_empty() {
        return Ok(page("People", &b));
    }
    let person = resolve(state, q);
    let mut found = false;
    for slot in &state.scheduler.slots {
        let name = &slot.profile.name;
        let tz = &slot.profile.timezone;
        let published = slot.published();
        let mut desired_fp: HashMap<String, u64> = HashMap::new();
        let mut section = String::new();
        if let Some(pb) = &published {
            let d = &pb.desire;
            if let Some(pi) = d.tt.person_index(&person) {
                found = true;
                let pe = &d.tt.people[pi as usize];
                let _ = write!(
                    section,
                    "<p>{} &lt;{}&gt;, {}{}</p>",
                    esc(pe.display_name.as_deref().unwrap_or(&pe.id)),
                    esc(&pe.email),
                    esc(&pe.kind),
                    if d.pilot.as_ref().is_some_and(|pl| !pl.contains(&person)) {
                        " — <strong>outside the pilot</strong>: left alone"
                    } else {
                        ""
                    }
                );
                let evs: Vec<u32> = d
                    .attendance
                    .of(pi)
                    .iter()
                    .copied()
                    .filter(|&e| d.window.contains(d.tt.events[e as usize].start))
                    .collect();
                for &e in &evs {
                    desired_fp.insert(
                        d.tt.events[e as usize].id.clone(),
                        d.fingerprints.entry(&d.tt, pi, e),
                    );
                }
                let _ = write!(
                    section,
                    "<h3>What their calendar should hold ({} events in the sync window, as of the cycle {})</h3>",
                    evs.len(),
                    when(Some(pb.built_at.as_millisecond()))
                );
                if !evs.is_empty() {
                    section.push_str("<div class=\"scroll\"><table class=\"desired\"><thead><tr><th>Starts</th><th>Ends</th><th>Subject</th><th>Location</th><th>Event id</th></tr></thead><tbody>");
                    for &e in evs.iter().take(SHOW) {
                        match d.renderer.render(&d.tt, pi, e) {
                            Ok(r) => {
                                let _ = write!(
                                    section,
                                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                                    local(r.start, tz),
                                    local(r.end, tz),
                                    esc(&r.subject),
                                    esc(&r.location),
                                    esc(&r.event_id)
                                );
                            }
                            Err(err) => {
                                let _ = write!(
                                    section,
                                    "<tr class=\"bad\"><td colspan=\"4\">cannot render: {}</td><td><code>{}</code></td></tr>",
                                    esc(&err.to_string()),
                                    esc(&d.tt.events[e as usize].id)
                                );
                            }
                        }
                    }
                    section.push_str("</tbody></table></div>");
                    if evs.len() > SHOW {
                        let _ = write!(section, "<p>… and {} more.</p>", evs.len() - SHOW);
                    }
                }
            }
        } else {
            section.push_str("<p>No cycle of this profile has finished since the service started, so what the calendar should hold is not known yet.</p>");
        }
        let ledger = state
            .store
            .ledger_for_person(name, &person)
            .map_err(|e| e.to_string())?;
        if !ledger.is_empty() {
            found = true;
        }
        let mut by_target: BTreeMap<String, Vec<edusync_store::LedgerEntry>> = BTreeMap::new();
        for (t, e) in ledger {
            by_target.entry(t).or_default().push(e);
        }
        for t in &slot.profile.targets {
            let rows = by_target.remove(&t.name).unwrap_or_default();
            let in_sync = rows
                .iter()
                .filter(|r| desired_fp.get(&r.event_id) == Some(&r.fingerprint))
                .count();
            let _ = write!(
                section,
                "<h3>What target {} ({}) holds, by the ledger: {} events{}</h3>",
                esc(&t.name),
                t.kind.kind_name(),
                rows.len(),
                if published.is_some() {
                    format!(", {in_sync} matching the timetable")
                } else {
                    String::new()
                }
            );
            if !rows.is_empty() {
                section.push_str("<div class=\"scroll\"><table class=\"ledger\"><thead><tr><th>Starts</th><th>Event id</th><th>Calendar</th><th>Remote id</th><th>State</th><th>Written</th></tr></thead><tbody>");
                for r in rows.iter().take(SHOW) {
                    let state_txt = if r.gone {
                        "deleted by hand (respected)"
                    } else if published.is_none() {
                        "—"
                    } else {
                        match desired_fp.get(&r.event_id) {
                            Some(fp) if *fp == r.fingerprint => "in sync",
                            Some(_) => "update pending",
                            None => "not in the timetable now",
                        }
                    };
                    let start = jiff::Timestamp::from_second(r.starts_at)
                        .map(|t| local(t, tz))
                        .unwrap_or_default();
                    let _ = write!(
                        section,
                        "<tr><td>{start}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{state_txt}</td><td>{}</td></tr>",
                        esc(&r.event_id),
                        esc(&r.calendar),
                        esc(r.remote_id.as_deref().unwrap_or("—")),
                        when(Some(r.updated_at * 1000))
                    );
                }
                section.push_str("</tbody></table></div>");
                if rows.len() > SHOW {
                    let _ = write!(section, "<p>… and {} more.</p>", rows.len() - SHOW);
                }
            }
        }
        let errs = state
            .store
            .op_errors_for_person(name, &person, 20)
            .map_err(|e| e.to_string())?;
        let _ = write!(section, "<h3>Recent operation errors</h3>");
        if errs.is_empty() {
            section.push_str("<p>None.</p>");
        } else {
            section.push_str("<div class=\"scroll\"><table class=\"errors\"><thead><tr><th>When</th><th>Run</th><th>Target</th><th>Operation</th><th>Event</th><th>Kind</th><th>Message</th></tr></thead><tbody>");
            for e in &errs {
                let _ = write!(
                    section,
                    "<tr><td>{}</td><td><a href=\"/console/runs/{r}\">{r}</a></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                    when(Some(e.at * 1000)),
                    esc(&e.target),
                    esc(&e.kind),
                    esc(&e.event_id),
                    if e.permanent { "permanent" } else { "retryable" },
                    esc(&e.message),
                    r = e.run_id
                );
            }
            section.push_str("</tbody></table></div>");
        }
        let _ = write!(b, "<section class=\"profile\" data-profile=\"{0}\"><h2>Profile {0}</h2>{section}</section>", esc(name));
    }
    if !found {
        let _ = write!(
            b,
            "<p class=\"warn\">No person with id or email “{}” is in the timetable of the last cycles or in the ledger.</p>",
            esc(q)
        );
        return Ok(page("People", &b));
    }
    // Feed link.
    b.push_str("<section id=\"feed\"><h2>Subscription feed</h2>");
    if let Some(link) = new_link {
        let _ = write!(
            b,
            "<div class=\"note\"><p>New links — shown this once (only a hash is kept). Give them to the person:</p>\
<p>Calendar feed: <a id=\"feed-url\" href=\"{0}\">{0}</a></p><p>Subscribe: <a id=\"webcal-url\" href=\"{1}\">{1}</a></p>\
<p>My timetable page: <a id=\"my-url\" href=\"{2}\">{2}</a></p></div>",
            esc(&link_http(link, "feed")),
            esc(&link_http(link, "webcal")),
            esc(&link_http(link, "my")),
        );
    }
    let token = state
        .store
        .feed_token_of(&person)
        .map_err(|e| e.to_string())?;
    match &token {
        Some(t) => {
            let _ = write!(
                b,
                "<p>A feed link was issued {}. Issuing a new one stops the old one working.</p>",
                when(Some(t.created_at * 1000))
            );
        }
        None => b.push_str("<p>No feed link is issued for this person.</p>"),
    }
    if p.can(Role::Admin) {
        let base = format!("/console/people/{}/feed", percent(&person));
        b.push_str(&button(
            p,
            &base,
            if token.is_some() {
                "Rotate feed link"
            } else {
                "Issue feed link"
            },
            "go",
        ));
        if token.is_some() {
            b.push_str(&button(
                p,
                &format!("{base}/revoke"),
                "Revoke feed link",
                "stop",
            ));
        }
    } else {
        b.push_str("<p>Admins can issue, rotate and revoke feed links.</p>");
    }
    b.push_str("</section>");
    Ok(page(&format!("Person {person}"), &b))
}

/// `new_link` is `BASE|TOKEN`; builds each of the three links.
fn link_http(link: &str, which: &str) -> String {
    let (base, token) = link.split_once('|').unwrap_or((link, ""));
    match which {
        "feed" => format!("http{base}/feeds/p/{token}.ics"),
        "webcal" => format!("webcal{}/feeds/p/{token}.ics", base.trim_start_matches('s')),
        _ => format!("http{base}/my/{token}"),
    }
}

/// Path-segment encoding for person ids in form actions.
fn percent(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// `://host` or `s://host` (so `http` + it is the base URL), from the request.
fn base(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&state.config.server.listen)
        .to_string();
    if state.auth.secure_cookies(headers) && !state.auth.loopback_http {
        format!("s://{host}")
    } else {
        format!("://{host}")
    }
}

/// Issues a fresh token for `person` (replacing any) and returns it.
pub fn issue_token(state: &AppState, person: &str) -> Result<String, String> {
    let token = random_hex(20);
    state
        .store
        .set_feed_token(person, &token_hash(&token), edusync_store::now())
        .map_err(|e| e.to_string())?;
    state.feeds.forget_tokens();
    Ok(token)
}

async fn issue_feed(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check(&p, Role::Admin, &f.csrf) {
        return r;
    }
    let base = base(&state, &headers);
    let st = state.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let had = st
            .store
            .feed_token_of(&id)
            .map_err(|e| e.to_string())?
            .is_some();
        let token = issue_token(&st, &id)?;
        st.auth.audit(
            &p.user,
            "feed-token-rotate",
            &id,
            if had {
                "new link issued, old one revoked"
            } else {
                "link issued"
            },
        );
        render(&st, &p, &id, Some(&format!("{base}|{token}")))
    })
    .await;
    match r {
        Ok(Ok(h)) => ([(header::CACHE_CONTROL, "no-store")], Html(h)).into_response(),
        Ok(Err(e)) => err500(e),
        Err(e) => err500(e),
    }
}

async fn revoke_feed(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check(&p, Role::Admin, &f.csrf) {
        return r;
    }
    match state.store.revoke_feed_token(&id) {
        Ok(had) => {
            state.feeds.forget_tokens();
            state.auth.audit(
                &p.user,
                "feed-token-revoke",
                &id,
                if had { "revoked" } else { "there was no link" },
            );
            (
                StatusCode::SEE_OTHER,
                [(
                    header::LOCATION,
                    format!("/console/people?q={}", percent(&id)),
                )],
            )
                .into_response()
        }
        Err(e) => err500(e),
    }
}
