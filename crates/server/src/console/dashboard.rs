//! `/console`: every profile and target at a glance (state, last and next
//! run, counts, pending work, errors), with run now / pause / resume; and
//! the POST routes behind those buttons.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;

use super::{ago, button, check, esc, page, see_other, when};
use crate::auth::{Principal, Role};
use crate::AppState;

pub fn routes(state: &AppState) -> Router {
    Router::new()
        .route("/console", get(dashboard))
        .route("/console/", get(dashboard))
        .route("/console/profiles/{name}/{action}", post(profile_action))
        .with_state(state.clone())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

fn secs(s: Option<f64>) -> String {
    match s {
        None => "—".into(),
        Some(s) if s < 10.0 => format!("{s:.1} s"),
        Some(s) if s < 120.0 => format!("{s:.0} s"),
        Some(s) => format!("{:.1} min", s / 60.0),
    }
}

fn until(ms: Option<i64>, now_ms: i64) -> String {
    match ms {
        None => "—".into(),
        Some(t) if t <= now_ms => "now".into(),
        Some(t) => {
            let s = (t - now_ms) / 1000;
            match s {
                0..=59 => format!("in {s} s"),
                60..=3599 => format!("in {} min", s / 60),
                _ => format!("in {} h {} min", s / 3600, (s % 3600) / 60),
            }
        }
    }
}

async fn dashboard(State(state): State<AppState>, Extension(p): Extension<Principal>) -> Response {
    let st = state.clone();
    let r = tokio::task::spawn_blocking(move || render(&st, &p)).await;
    match r {
        Ok(html) => Html(html).into_response(),
        Err(e) => super::err500(e),
    }
}

fn render(state: &AppState, p: &Principal) -> String {
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let mut b = String::new();
    let _ = write!(
        b,
        "<p>Signed in as <strong>{}</strong> ({}).</p>",
        esc(&p.user),
        p.role.as_str()
    );
    let held_runs: Vec<_> = state
        .store
        .runs(None, 200)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.status == edusync_store::RunStatus::Held)
        .collect();
    if !held_runs.is_empty() {
        let _ = write!(
            b,
            "<p class=\"warn\"><strong>{} held run(s)</strong> wait for approval: ",
            held_runs.len()
        );
        for r in &held_runs {
            let _ = write!(
                b,
                "<a href=\"/console/runs/{0}\">run {0} ({1})</a> ",
                r.run_id,
                esc(&r.profile)
            );
        }
        b.push_str("</p>");
    }
    if state.scheduler.slots.is_empty() {
        b.push_str(
            "<p>No profiles are configured: add a [[profiles]] section to the config file.</p>",
        );
    }
    b.push_str("<div class=\"scroll\"><table id=\"profiles\"><thead><tr><th>Profile</th><th>State</th><th>Last run</th><th>Next run</th>\
<th>Created</th><th>Updated</th><th>Deleted</th><th>Unchanged</th><th>Quarantined</th><th>Pending</th><th>Held</th><th>Errors</th><th>Targets</th><th>Actions</th></tr></thead><tbody>");
    for slot in &state.scheduler.slots {
        let s = slot.snapshot();
        let name = &slot.profile.name;
        let (pending, held) = state.store.outbox_counts(name).unwrap_or((0, 0));
        let r = s.last_report.as_ref();
        let status = if s.running {
            "running"
        } else {
            r.map(|r| r.status).unwrap_or("never run")
        };
        let state_text = if s.running {
            format!("running: {}", s.phase)
        } else if s.paused {
            "paused".into()
        } else if s.blackout_until_ms.is_some() {
            format!("blackout until {}", super::when(s.blackout_until_ms))
        } else {
            "scheduled".into()
        };
        let errors = match r {
            Some(r) if r.error.is_some() => format!(
                "<span class=\"badge\">error</span> {}",
                esc(r.error.as_deref().unwrap_or_default())
            ),
            Some(r) if r.failed_ops > 0 => format!("{} failed operations", r.failed_ops),
            Some(r) if r.hold_reason.is_some() => {
                format!(
                    "held: {}",
                    esc(r.hold_reason.as_deref().unwrap_or_default())
                )
            }
            _ => "none".into(),
        };
        let bad = r.is_some_and(|r| r.status == "failed");
        let n = |f: fn(&edusync_engine::CycleReport) -> u64| {
            r.filter(|r| r.run_id != 0)
                .map(|r| f(r).to_string())
                .unwrap_or_else(|| "—".into())
        };
        let targets: Vec<String> = slot
            .profile
            .targets
            .iter()
            .map(|t| format!("{} ({})", esc(&t.name), t.kind.kind_name()))
            .collect();
        let mut actions = String::new();
        if p.can(Role::Operator) {
            let base = format!("/console/profiles/{}", esc(name));
            actions.push_str(&button(p, &format!("{base}/run"), "Run now", "go"));
            if s.paused {
                actions.push_str(&button(p, &format!("{base}/resume"), "Resume", ""));
            } else {
                actions.push_str(&button(p, &format!("{base}/pause"), "Pause", "stop"));
            }
            if s.run_requested {
                actions.push_str(" <em>run requested</em>");
            }
        }
        let last = match (s.last_finished_ms, r) {
            (Some(t), Some(r)) => format!(
                "<span class=\"st st-{st}\">{st}</span> {ago} ({dur}){run}",
                st = esc(r.status),
                ago = ago(Some(t), now_ms),
                dur = secs(s.last_duration_secs),
                run = if r.run_id != 0 {
                    format!(" <a href=\"/console/runs/{0}\">run {0}</a>", r.run_id)
                } else {
                    String::new()
                }
            ),
            _ => "never".into(),
        };
        let _ = write!(
            b,
            "<tr class=\"{cls}\" data-profile=\"{np}\" data-status=\"{status}\"><th scope=\"row\"><a href=\"/console/runs?profile={np}\">{np}</a></th><td>{state_text}</td>\
<td title=\"{lw}\">{last}</td><td title=\"{nw}\">{next}</td>\
<td class=\"n\">{c}</td><td class=\"n\">{u}</td><td class=\"n\">{d}</td><td class=\"n\">{un}</td><td class=\"n\">{q}</td>\
<td class=\"n\">{pending}</td><td class=\"n\">{held}</td><td>{errors}</td><td>{targets}</td><td>{actions}</td></tr>",
            cls = if bad { "bad" } else if held > 0 { "held" } else { "ok" },
            np = esc(name),
            lw = when(s.last_finished_ms),
            nw = when(s.next_run_ms),
            next = if s.paused && !s.run_requested {
                "paused".to_string()
            } else if s.running {
                "after this one".to_string()
            } else {
                until(s.next_run_ms, now_ms)
            },
            c = n(|r| r.create),
            u = n(|r| r.update),
            d = n(|r| r.delete),
            un = n(|r| r.unchanged),
            q = n(|r| r.quarantined),
            targets = targets.join("<br>"),
        );
    }
    b.push_str("</tbody></table></div>");
    b.push_str("<p>Counts are those of each profile's last cycle. Pending and held are operations waiting in the outbox now. \
<a href=\"/console/runs\">All runs</a> · <a href=\"/console/sites\">Sites</a> · <a href=\"/metrics\">Metrics</a></p>");
    page("Dashboard", &b)
}

async fn profile_action(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((name, action)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check(&p, Role::Operator, &f.csrf) {
        return r;
    }
    let Some(slot) = state.scheduler.slot(&name) else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            Html(page("Unknown profile", "<p>No profile has this name.</p>")),
        )
            .into_response();
    };
    let detail = match action.as_str() {
        "run" => {
            slot.run_now();
            "cycle requested"
        }
        "pause" => {
            slot.pause();
            "paused"
        }
        "resume" => {
            slot.resume();
            "resumed"
        }
        _ => {
            return (
                axum::http::StatusCode::NOT_FOUND,
                Html(page("Unknown action", "<p>Use run, pause or resume.</p>")),
            )
                .into_response()
        }
    };
    let action_name = if action == "run" {
        "run-now"
    } else {
        action.as_str()
    };
    state.auth.audit(&p.user, action_name, &name, detail);
    see_other("/console")
}
