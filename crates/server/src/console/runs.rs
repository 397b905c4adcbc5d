//! `/console/runs` (history with plan summary and timings) and
//! `/console/runs/{id}` (errors grouped by kind, quarantined rows with their
//! reasons, approve / reject for a held run).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use edusync_store::{Run, RunStatus};
use serde::Deserialize;

use super::dashboard::CsrfForm;
use super::{button, check, err500, esc, page, see_other};
use crate::auth::{Principal, Role};
use crate::AppState;

pub fn routes(state: &AppState) -> Router {
    Router::new()
        .route("/console/runs", get(list))
        .route("/console/runs/{id}", get(one))
        .route("/console/runs/{id}/approve", post(approve))
        .route("/console/runs/{id}/reject", post(reject))
        .with_state(state.clone())
}

#[derive(Deserialize)]
struct ListQuery {
    profile: Option<String>,
}

fn ts(secs: Option<i64>) -> String {
    super::when(secs.map(|s| s * 1000))
}

fn duration(r: &Run) -> String {
    match r.finished_at {
        Some(f) => {
            let s = (f - r.started_at).max(0);
            if s < 120 {
                format!("{s} s")
            } else {
                format!("{} min {} s", s / 60, s % 60)
            }
        }
        None => "running".into(),
    }
}

fn status(r: &Run) -> String {
    let s = r.status.as_str();
    format!("<span class=\"st st-{s}\">{s}</span>")
}

async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Response {
    let st = state.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let runs = st
            .store
            .runs(q.profile.as_deref(), 200)
            .map_err(|e| e.to_string())?;
        let mut b = String::new();
        b.push_str("<p>Filter: <a href=\"/console/runs\">all</a>");
        for s in &st.scheduler.slots {
            let _ = write!(
                b,
                " · <a href=\"/console/runs?profile={0}\">{0}</a>",
                esc(&s.profile.name)
            );
        }
        b.push_str("</p>");
        if runs.is_empty() {
            b.push_str("<p>No runs yet.</p>");
        }
        b.push_str("<div class=\"scroll\"><table id=\"runs\"><thead><tr><th>Run</th><th>Profile</th><th>Kind</th><th>Status</th><th>Started</th><th>Took</th>\
<th>Create</th><th>Update</th><th>Delete</th><th>Unchanged</th><th>Quarantined</th><th>Failed ops</th><th>Note</th><th></th></tr></thead><tbody>");
        for r in &runs {
            let mut actions = String::new();
            if r.status == RunStatus::Held && p.can(Role::Operator) {
                actions.push_str(&button(&p, &format!("/console/runs/{}/approve", r.run_id), "Approve deletes", "go"));
                actions.push_str(&button(&p, &format!("/console/runs/{}/reject", r.run_id), "Reject", "stop"));
            }
            let note = r
                .hold_reason
                .as_deref()
                .or(r.message.as_deref())
                .unwrap_or("");
            let _ = write!(
                b,
                "<tr class=\"{cls}\" data-run=\"{id}\" data-status=\"{s}\"><td><a href=\"/console/runs/{id}\">{id}</a></td><td>{pr}</td><td>{k}</td><td>{st}</td>\
<td>{start}</td><td>{took}</td><td class=\"n\">{c}</td><td class=\"n\">{u}</td><td class=\"n\">{d}</td><td class=\"n\">{un}</td>\
<td class=\"n\">{q}</td><td class=\"n\">{f}</td><td>{note}</td><td>{actions}</td></tr>",
                cls = match r.status {
                    RunStatus::Held => "held",
                    RunStatus::Failed => "bad",
                    _ => "ok",
                },
                id = r.run_id,
                s = r.status.as_str(),
                pr = esc(&r.profile),
                k = r.kind.as_str(),
                st = status(r),
                start = ts(Some(r.started_at)),
                took = duration(r),
                c = r.counts.create,
                u = r.counts.update,
                d = r.counts.delete,
                un = r.counts.unchanged,
                q = r.quarantined,
                f = r.failed_ops,
                note = esc(note),
            );
        }
        b.push_str("</tbody></table></div>");
        Ok(page("Runs", &b))
    })
    .await;
    match r {
        Ok(Ok(h)) => Html(h).into_response(),
        Ok(Err(e)) => err500(e),
        Err(e) => err500(e),
    }
}

async fn one(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<i64>,
) -> Response {
    let st = state.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<Option<String>, String> {
        let run = match st.store.run(id) {
            Ok(r) => r,
            Err(edusync_store::StoreError::NoSuchRun(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let mut b = String::new();
        let _ = write!(
            b,
            "<table><tbody><tr><th>Profile</th><td>{}</td></tr><tr><th>Kind</th><td>{}</td></tr><tr><th>Status</th><td id=\"run-status\">{}</td></tr>\
<tr><th>Started</th><td>{}</td></tr><tr><th>Finished</th><td>{}</td></tr><tr><th>Took</th><td>{}</td></tr>\
<tr><th>Plan</th><td>{} to create, {} to update, {} to delete, {} unchanged, {} left alone</td></tr>\
<tr><th>Quarantined rows</th><td>{}</td></tr><tr><th>Failed operations</th><td>{}</td></tr>",
            esc(&run.profile),
            run.kind.as_str(),
            status(&run),
            ts(Some(run.started_at)),
            ts(run.finished_at),
            duration(&run),
            run.counts.create,
            run.counts.update,
            run.counts.delete,
            run.counts.unchanged,
            run.counts.left_alone,
            run.quarantined,
            run.failed_ops
        );
        if let Some(h) = &run.hold_reason {
            let _ = write!(b, "<tr><th>Held because</th><td>{}</td></tr>", esc(h));
        }
        if let Some(m) = &run.message {
            let _ = write!(b, "<tr><th>Message</th><td>{}</td></tr>", esc(m));
        }
        b.push_str("</tbody></table>");
        if run.status == RunStatus::Held {
            let held: u64 = st
                .scheduler
                .slot(&run.profile)
                .map(|s| {
                    s.profile
                        .targets
                        .iter()
                        .filter_map(|t| {
                            st.store
                                .outbox(&run.profile, &t.name, edusync_store::OpState::Held, Some(id))
                                .ok()
                        })
                        .map(|v| v.len() as u64)
                        .sum()
                })
                .unwrap_or(0);
            let _ = write!(
                b,
                "<p class=\"warn\">This run's creates and updates were applied; its <strong>{held}</strong> deletes are held by the deletion guard.</p>"
            );
            if p.can(Role::Operator) {
                b.push_str("<p>");
                b.push_str(&button(&p, &format!("/console/runs/{id}/approve"), "Approve deletes", "go"));
                b.push_str(&button(&p, &format!("/console/runs/{id}/reject"), "Reject", "stop"));
                b.push_str("</p>");
            }
        }
        let errors = st.store.op_errors(id, 5000).map_err(|e| e.to_string())?;
        b.push_str("<h2>Errors by kind</h2>");
        if errors.is_empty() {
            b.push_str("<p>None.</p>");
        } else {
            let mut groups: BTreeMap<(String, String, bool), Vec<&edusync_store::OpError>> = BTreeMap::new();
            for e in &errors {
                groups
                    .entry((e.target.clone(), e.kind.clone(), e.permanent))
                    .or_default()
                    .push(e);
            }
            b.push_str("<div class=\"scroll\"><table id=\"errors\"><thead><tr><th>Target</th><th>Operation</th><th>Kind</th><th>Count</th><th>Examples</th></tr></thead><tbody>");
            for ((t, k, perm), v) in &groups {
                let mut ex = String::new();
                for e in v.iter().take(5) {
                    let _ = write!(
                        ex,
                        "<div><a href=\"/console/people?q={p}\">{p}</a> / {ev}: {m}</div>",
                        p = esc(&e.person_id),
                        ev = esc(&e.event_id),
                        m = esc(&e.message)
                    );
                }
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{ex}</td></tr>",
                    esc(t),
                    esc(k),
                    if *perm { "permanent" } else { "retryable" },
                    v.len()
                );
            }
            b.push_str("</tbody></table></div>");
        }
        let q = st.store.quarantine(id, 1000).map_err(|e| e.to_string())?;
        let _ = write!(b, "<h2>Quarantined rows</h2>");
        if q.is_empty() {
            b.push_str("<p>None.</p>");
        } else {
            if run.quarantined > q.len() as u64 {
                let _ = write!(b, "<p>Showing the first {} of {}.</p>", q.len(), run.quarantined);
            }
            b.push_str("<div class=\"scroll\"><table id=\"quarantine\"><thead><tr><th>View</th><th>Row</th><th>Reason</th></tr></thead><tbody>");
            for r in &q {
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                    esc(&r.view),
                    esc(&r.row),
                    esc(&r.reason)
                );
            }
            b.push_str("</tbody></table></div>");
        }
        Ok(Some(page(&format!("Run {id}"), &b)))
    })
    .await;
    match r {
        Ok(Ok(Some(h))) => Html(h).into_response(),
        Ok(Ok(None)) => (
            StatusCode::NOT_FOUND,
            Html(page(
                "Unknown run",
                "<p>No run has this id. <a href=\"/console/runs\">All runs</a></p>",
            )),
        )
            .into_response(),
        Ok(Err(e)) => err500(e),
        Err(e) => err500(e),
    }
}

async fn approve(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check(&p, Role::Operator, &f.csrf) {
        return r;
    }
    let profile = match state.store.run(id) {
        Ok(r) => r.profile,
        Err(e) => return err500(e),
    };
    let slot = state.scheduler.slot(&profile).cloned();
    // One cycle or approval per profile at a time.
    let _lock = match &slot {
        Some(s) => Some(s.cycle_lock.lock().await),
        None => None,
    };
    let config = state.config.clone();
    let store = state.store.clone();
    let handle = tokio::runtime::Handle::current();
    let r = tokio::task::spawn_blocking(move || {
        handle.block_on(edusync_engine::approve(&config, store.as_ref(), id))
    })
    .await;
    match r {
        Ok(Ok(report)) => {
            if let Some(s) = &slot {
                s.count_ops("delete", "applied", report.delete);
                s.count_ops("delete", "failed", report.failed_ops);
            }
            state.auth.audit(
                &p.user,
                "approve",
                &format!("run {id}"),
                &format!(
                    "{} deletes applied, {} failed",
                    report.delete, report.failed_ops
                ),
            );
            see_other(&format!("/console/runs/{id}"))
        }
        Ok(Err(e)) => {
            state.auth.audit(
                &p.user,
                "approve",
                &format!("run {id}"),
                &format!("refused: {e}"),
            );
            (
                StatusCode::CONFLICT,
                Html(page(
                    "Cannot approve",
                    &format!(
                        "<p>{}</p><p><a href=\"/console/runs/{id}\">Back to the run</a></p>",
                        esc(&e.to_string())
                    ),
                )),
            )
                .into_response()
        }
        Err(e) => err500(e),
    }
}

async fn reject(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check(&p, Role::Operator, &f.csrf) {
        return r;
    }
    let st = state.clone();
    let r =
        tokio::task::spawn_blocking(move || edusync_engine::reject(st.store.as_ref(), id)).await;
    match r {
        Ok(Ok(n)) => {
            state.auth.audit(
                &p.user,
                "reject",
                &format!("run {id}"),
                &format!("{n} held deletes dropped"),
            );
            see_other(&format!("/console/runs/{id}"))
        }
        Ok(Err(e)) => (
            StatusCode::CONFLICT,
            Html(page(
                "Cannot reject",
                &format!("<p>{}</p>", esc(&e.to_string())),
            )),
        )
            .into_response(),
        Err(e) => err500(e),
    }
}
