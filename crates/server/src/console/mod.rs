//! The admin console: server-rendered HTML that works without JavaScript,
//! on a laptop or a phone.
//!
//! Every route under `/console` (and `/metrics`) goes through
//! [`require_login`]: a session cookie from the sign-in form (see
//! [`crate::auth`]), or the read-only bearer token `EDUSYNC_CONSOLE_TOKEN`
//! for GET requests. Without either, a page answers 401 with the sign-in
//! form. Forms that change anything carry the session's CSRF token and
//! check the role: viewers read; operators run, pause, resume, approve and
//! reject; admins also manage accounts and feed links. Every such action
//! is written to the audit log.

pub mod admin;
pub mod dashboard;
pub mod people;
pub mod runs;
pub mod sites;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::Router;

use crate::auth::{Principal, Role};
use crate::AppState;

pub use crate::auth::CONSOLE_TOKEN_ENV;

pub fn routes(state: &AppState) -> Router {
    let protected = Router::new()
        .merge(sites::routes(state))
        .merge(dashboard::routes(state))
        .merge(runs::routes(state))
        .merge(people::routes(state))
        .merge(admin::routes(state))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_login,
        ));
    Router::new()
        .merge(protected)
        .merge(admin::public_routes(state))
}

/// The console's login check: a session, or the read-only bearer token.
pub async fn require_login(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    let auth = state.auth.clone();
    let headers = req.headers().clone();
    let principal = tokio::task::spawn_blocking(move || auth.principal(&headers, read_only))
        .await
        .ok()
        .flatten();
    match principal {
        Some(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        None if read_only => {
            let next_path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/console".into());
            let mut r = admin::login_page(&state, req.headers(), &next_path, None);
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"edusync console\""),
            );
            r
        }
        None => (StatusCode::UNAUTHORIZED, "Sign in first: /console/login\n").into_response(),
    }
}

/// Answers 403 unless `p` has at least `role`, and the form's CSRF token matches.
#[allow(clippy::result_large_err)] // the error is the response itself, built once per request
pub fn check(p: &Principal, role: Role, csrf: &str) -> Result<(), Response> {
    let token_ok = p
        .csrf
        .as_deref()
        .is_some_and(|t| crate::auth::same(t, csrf));
    if !token_ok {
        return Err((
            StatusCode::FORBIDDEN,
            Html(page(
                "Form expired",
                "<p>This form is out of date (its security token does not match your session). Go back, reload the page and try again.</p>",
            )),
        )
            .into_response());
    }
    if !p.can(role) {
        return Err((
            StatusCode::FORBIDDEN,
            Html(page(
                "Not allowed",
                &format!(
                    "<p>Your account ({}) is a {}; this needs the {} role. Ask an admin.</p>",
                    esc(&p.user),
                    p.role.as_str(),
                    role.as_str()
                ),
            )),
        )
            .into_response());
    }
    Ok(())
}

/// A small form with one button that POSTs to `action` (with the CSRF token).
pub fn button(p: &Principal, action: &str, label: &str, class: &str) -> String {
    match &p.csrf {
        Some(t) => format!(
            "<form method=\"post\" action=\"{}\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" class=\"{class}\">{}</button></form>",
            esc(action),
            esc(t),
            esc(label)
        ),
        None => String::new(),
    }
}

/// 303 to `to`.
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

pub fn err500(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console page failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Html(page(
            "Something went wrong",
            &format!(
                "<p>{}</p><p>The service log has details.</p>",
                esc(&e.to_string())
            ),
        )),
    )
        .into_response()
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A whole console page around `body`.
pub fn page(title: &str, body: &str) -> String {
    layout(title, body, true)
}

/// A page around `body`, with or without the console navigation.
pub fn layout(title: &str, body: &str, nav: bool) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} — edusync</title><style>{CSS}</style></head><body><header>{nav}</header>\
<main><h1>{t}</h1>\n{body}\n</main></body></html>\n",
        t = esc(title),
        nav = if nav { NAV } else { "<span class=\"brand\">edusync</span>" }
    )
}

const NAV: &str = "<nav aria-label=\"Console\"><a href=\"/console\">Dashboard</a><a href=\"/console/runs\">Runs</a>\
<a href=\"/console/people\">People</a><a href=\"/console/sites\">Sites</a><a href=\"/console/config\">Configuration</a>\
<a href=\"/console/audit\">Audit log</a><a href=\"/console/accounts\">Accounts</a><a href=\"/feeds/server-days.ics\">Server days (ICS)</a>\
<a href=\"/console/logout\">Sign out</a></nav>";

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1a1a1a;line-height:1.4}\
header{background:#1d3557;padding:.4rem 1rem;color:#fff}.brand{font-weight:700}nav a{color:#fff;margin-right:1rem;display:inline-block;padding:.25rem 0}\
main{padding:0 1rem 2rem;max-width:80rem}.scroll{overflow-x:auto}\
table{border-collapse:collapse;margin:1rem 0}th,td{padding:.3rem .6rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
th{background:#f1f3f5}td.n{text-align:right;font-variant-numeric:tabular-nums}\
tr.silent td,tr.bad td{background:#fde8e8}tr.silent td:first-child,tr.bad td:first-child{border-left:4px solid #b00}\
tr.held td{background:#fff4d6}.badge{background:#b00;color:#fff;border-radius:3px;padding:0 .3rem;font-size:.8rem}\
.st{border-radius:3px;padding:0 .35rem;font-size:.85rem;color:#fff;background:#555}.st-applied,.st-approved{background:#1b7f3b}\
.st-held{background:#9a6700}.st-failed{background:#b00}.st-running{background:#1d5fa8}\
code{font-size:.85rem}form.inline{display:inline;margin:0 .2rem 0 0}button{font:inherit;padding:.2rem .6rem;cursor:pointer}\
button.go{background:#1b7f3b;color:#fff;border:1px solid #145c2b}button.stop{background:#b00;color:#fff;border:1px solid #800}\
.note{background:#eef5ff;border-left:4px solid #1d5fa8;padding:.5rem .8rem}.warn{background:#fff4d6;border-left:4px solid #9a6700;padding:.5rem .8rem}\
label{display:block;margin:.5rem 0 .2rem}input[type=text],input[type=password],input[type=search],select{font:inherit;padding:.3rem;max-width:100%}\
a:focus,button:focus,input:focus{outline:3px solid #1d5fa8;outline-offset:1px}pre{background:#f6f8fa;padding:.8rem;overflow-x:auto}";

/// `1.2 MB`, `340 B`.
pub fn human_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < U.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// `3 min ago`, `2 d ago`, `never`.
pub fn ago(ms: Option<i64>, now_ms: i64) -> String {
    let Some(ms) = ms else { return "never".into() };
    let s = (now_ms - ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// `2026-03-10 14:02 UTC`.
pub fn when(ms: Option<i64>) -> String {
    ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "—".into())
}
