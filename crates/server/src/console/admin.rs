//! Sign-in and sign-out, the configuration view (secrets redacted), the
//! audit log, and accounts (admins add them; `edusync user add` does too).

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Form, Router};
use serde::Deserialize;

use super::dashboard::CsrfForm;
use super::{check, err500, esc, page, see_other, when};
use crate::auth::{
    cookie_value, hash_password, random_hex, same, LoginError, Principal, Role, LOGIN_COOKIE,
    SESSION_COOKIE, SESSION_SECS,
};
use crate::AppState;

/// Routes reachable without signing in.
pub fn public_routes(state: &AppState) -> Router {
    Router::new()
        .route("/console/login", get(login_form).post(login))
        .with_state(state.clone())
}

pub fn routes(state: &AppState) -> Router {
    Router::new()
        .route("/console/logout", get(logout_form).post(logout))
        .route("/console/config", get(config))
        .route("/console/audit", get(audit))
        .route("/console/accounts", get(accounts).post(add_account))
        .route("/metrics", get(metrics))
        .with_state(state.clone())
}

/// The sign-in page (also the body of every 401), with a fresh
/// double-submit token in a cookie and a hidden field.
pub fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    next: &str,
    error: Option<&str>,
) -> Response {
    let token = random_hex(16);
    let mut b = String::new();
    if let Some(e) = error {
        let _ = write!(b, "<p class=\"warn\" role=\"alert\">{}</p>", esc(e));
    }
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/console/login\" id=\"login\">\
<input type=\"hidden\" name=\"csrf\" value=\"{token}\"><input type=\"hidden\" name=\"next\" value=\"{next}\">\
<label for=\"user\">Account</label><input type=\"text\" id=\"user\" name=\"user\" autocomplete=\"username\" required autofocus>\
<label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
<p><button type=\"submit\" class=\"go\">Sign in</button></p></form>\
<p>Accounts are made with <code>edusync user add --config FILE NAME --role viewer|operator|admin --password-env VAR</code>.</p>",
        next = esc(next)
    );
    let html = super::layout("Sign in", &b, false);
    let mut r = Html(html).into_response();
    if let Ok(v) = HeaderValue::from_str(&state.auth.cookie(headers, LOGIN_COOKIE, &token, 3600)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Deserialize)]
struct NextQ {
    next: Option<String>,
}

async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<NextQ>,
) -> Response {
    login_page(
        &state,
        &headers,
        q.next.as_deref().unwrap_or("/console"),
        None,
    )
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

/// Only paths inside the console are followed after sign-in.
fn safe_next(next: &str) -> &str {
    if next.starts_with("/console") && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/console"
    }
}

async fn login(State(state): State<AppState>, req: Request) -> Response {
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let headers = req.headers().clone();
    let Ok(Form(f)) = Form::<LoginForm>::from_request(req, &()).await else {
        return (StatusCode::BAD_REQUEST, "expected a sign-in form\n").into_response();
    };
    let cookie_ok = cookie_value(&headers, LOGIN_COOKIE)
        .is_some_and(|c| !f.csrf.is_empty() && same(c, &f.csrf));
    if !cookie_ok {
        let mut r = login_page(
            &state,
            &headers,
            safe_next(&f.next),
            Some("The sign-in form expired; please try again."),
        );
        *r.status_mut() = StatusCode::FORBIDDEN;
        return r;
    }
    match state.auth.login(&f.user, &f.password, addr).await {
        Ok((id, _)) => {
            state.auth.audit(&f.user, "login", "console", "signed in");
            let mut r = see_other(safe_next(&f.next));
            if let Ok(v) = HeaderValue::from_str(&state.auth.cookie(
                &headers,
                SESSION_COOKIE,
                &id,
                SESSION_SECS,
            )) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            if let Ok(v) = HeaderValue::from_str(&state.auth.cookie(&headers, LOGIN_COOKIE, "", 0))
            {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(LoginError::Invalid) => {
            state.auth.audit(
                &f.user,
                "login-failed",
                "console",
                "wrong account or password",
            );
            let mut r = login_page(
                &state,
                &headers,
                safe_next(&f.next),
                Some("Wrong account or password."),
            );
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
        Err(LoginError::Limited { retry_after_secs }) => {
            let mut r = login_page(
                &state,
                &headers,
                safe_next(&f.next),
                Some(&format!(
                    "Too many failed sign-ins; try again in {} min.",
                    (retry_after_secs + 59) / 60
                )),
            );
            *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Err(LoginError::Store(e)) => err500(e),
    }
}

use axum::extract::FromRequest as _;

async fn logout_form(Extension(p): Extension<Principal>) -> Response {
    let body = match &p.csrf {
        Some(t) => format!(
            "<form method=\"post\" action=\"/console/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<p>Signed in as <strong>{}</strong>.</p><button type=\"submit\" id=\"signout\">Sign out</button></form>",
            esc(t),
            esc(&p.user)
        ),
        None => "<p>You are using a bearer token; there is no session to end.</p>".into(),
    };
    Html(page("Sign out", &body)).into_response()
}

async fn logout(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check(&p, Role::Viewer, &f.csrf) {
        return r;
    }
    if let Some(h) = &p.session_hash {
        let _ = state.store.delete_session(h);
    }
    state.auth.audit(&p.user, "logout", "console", "signed out");
    let mut r = see_other("/console/login");
    if let Ok(v) = HeaderValue::from_str(&state.auth.cookie(&headers, SESSION_COOKIE, "", 0)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn config(State(state): State<AppState>) -> Response {
    let b = format!(
        "<p>The configuration in use, from <code>{}</code>. Secrets are never in the file (keys ending in <code>_env</code> name environment variables); passwords in URLs are hidden.</p><pre id=\"config\">{}</pre>",
        esc(&state.config.path.display().to_string()),
        esc(&state.config.redacted_summary())
    );
    Html(page("Configuration", &b)).into_response()
}

async fn audit(State(state): State<AppState>) -> Response {
    let st = state.clone();
    let r = tokio::task::spawn_blocking(move || st.store.audit_log(500)).await;
    let log = match r {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return err500(e),
        Err(e) => return err500(e),
    };
    let mut b = String::from("<p>Every operator action and sign-in, newest first (last 500).</p>");
    b.push_str("<div class=\"scroll\"><table id=\"audit\"><thead><tr><th>When</th><th>Account</th><th>Action</th><th>On</th><th>Outcome</th></tr></thead><tbody>");
    for e in &log {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            when(Some(e.at * 1000)),
            esc(&e.user),
            esc(&e.action),
            esc(&e.target),
            esc(&e.detail)
        );
    }
    b.push_str("</tbody></table></div>");
    Html(page("Audit log", &b)).into_response()
}

async fn accounts(State(state): State<AppState>, Extension(p): Extension<Principal>) -> Response {
    accounts_page(&state, &p, None)
}

fn accounts_page(state: &AppState, p: &Principal, msg: Option<&str>) -> Response {
    let users = match state.store.users() {
        Ok(u) => u,
        Err(e) => return err500(e),
    };
    let mut b = String::new();
    if let Some(m) = msg {
        let _ = write!(b, "<p class=\"note\" role=\"status\">{}</p>", esc(m));
    }
    b.push_str("<p>Viewers read; operators also run, pause, resume, approve and reject; admins also manage accounts and feed links.</p>");
    b.push_str("<table id=\"accounts\"><thead><tr><th>Account</th><th>Role</th><th>Created</th></tr></thead><tbody>");
    for u in &users {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&u.name),
            esc(&u.role),
            when(Some(u.created_at * 1000))
        );
    }
    b.push_str("</tbody></table>");
    if p.can(Role::Admin) {
        if let Some(t) = &p.csrf {
            let _ = write!(
                b,
                "<h2>Add or change an account</h2><form method=\"post\" action=\"/console/accounts\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\"><label for=\"name\">Account</label><input type=\"text\" id=\"name\" name=\"name\" required>\
<label for=\"role\">Role</label><select id=\"role\" name=\"role\"><option>viewer</option><option>operator</option><option>admin</option></select>\
<label for=\"pw\">Password (at least 12 characters)</label><input type=\"password\" id=\"pw\" name=\"password\" autocomplete=\"new-password\" required minlength=\"12\">\
<p><button type=\"submit\">Save account</button></p></form>",
                esc(t)
            );
        }
    }
    Html(page("Accounts", &b)).into_response()
}

#[derive(Deserialize)]
struct AccountForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

async fn add_account(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Form(f): Form<AccountForm>,
) -> Response {
    if let Err(r) = check(&p, Role::Admin, &f.csrf) {
        return r;
    }
    let name = f.name.trim().to_string();
    if let Err(e) = validate_account(&name, &f.role, &f.password) {
        let mut r = accounts_page(&state, &p, Some(&e));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    }
    let st = state.clone();
    let (n, role, pw) = (name.clone(), f.role.clone(), f.password.clone());
    let r = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let hash = hash_password(&pw)?;
        st.store
            .put_user(&edusync_store::ConsoleUser {
                name: n,
                role,
                password_hash: hash,
                created_at: edusync_store::now(),
            })
            .map_err(|e| e.to_string())
    })
    .await;
    match r {
        Ok(Ok(())) => {
            state
                .auth
                .audit(&p.user, "user-add", &name, &format!("role {}", f.role));
            accounts_page(&state, &p, Some(&format!("Account {name} saved.")))
        }
        Ok(Err(e)) => err500(e),
        Err(e) => err500(e),
    }
}

/// The rules for an account, shared with `edusync user add`.
pub fn validate_account(name: &str, role: &str, password: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return Err(format!(
            "account name {name:?} must be 1 to 64 letters, digits, -, _, . or @"
        ));
    }
    if Role::parse(role).is_none() {
        return Err(format!(
            "role {role:?} is not one of viewer, operator, admin"
        ));
    }
    if password.chars().count() < 12 {
        return Err("the password must have at least 12 characters".into());
    }
    Ok(())
}

async fn metrics(State(state): State<AppState>) -> Response {
    let st = state.clone();
    match tokio::task::spawn_blocking(move || crate::metrics::render(&st)).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => err500(e),
    }
}
