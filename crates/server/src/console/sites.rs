//! Sites pages: `/console/sites` (every site at a glance, what arrived this
//! week, bytes per dataset per month) and `/console/sites/{site}` (one
//! site's heartbeat, uploads in progress and recent files).

use std::collections::HashMap;
use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{ago, esc, human_bytes, page, when};
use crate::AppState;
use edusync_collect::hub::now_ms;
use edusync_collect::hub::store::{HubStore, MonthlyBytes, SiteOverview};

pub fn routes(state: &AppState) -> Router {
    Router::new()
        .route("/console/sites", get(list))
        .route("/console/sites/{site}", get(one))
        .with_state(state.clone())
}

fn err500(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console page failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Cannot read the hub's state: {e}\n"),
    )
        .into_response()
}

const WEEK_MS: i64 = 7 * 86_400_000;

/// When a site was last heard from (heartbeat or data).
fn last_heard(s: &SiteOverview) -> Option<i64> {
    s.last_heartbeat_ms.max(s.last_data_ms)
}

fn is_silent(s: &SiteOverview, now: i64, silent_ms: i64) -> bool {
    last_heard(s).is_none_or(|t| now - t > silent_ms)
}

async fn list(State(state): State<AppState>) -> Response {
    let store = state.hub.store().clone();
    let silent_ms = state.config.hub.silent_after.as_millis() as i64;
    let silent_label = humantime(state.config.hub.silent_after.as_secs());
    let r = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let now = now_ms();
        let sites = store.sites().map_err(|e| e.to_string())?;
        let week: HashMap<String, (u64, u64)> = store
            .received_since(now - WEEK_MS)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(s, f, b)| (s, (f, b)))
            .collect();
        let monthly = store.monthly_bytes(None).map_err(|e| e.to_string())?;
        Ok(render_list(
            &sites,
            &week,
            &monthly,
            now,
            silent_ms,
            &silent_label,
        ))
    })
    .await;
    match r {
        Ok(Ok(html)) => Html(html).into_response(),
        Ok(Err(e)) => err500(e),
        Err(e) => err500(e),
    }
}

fn humantime(secs: u64) -> String {
    if secs % 86_400 == 0 {
        format!("{} d", secs / 86_400)
    } else if secs % 3600 == 0 {
        format!("{} h", secs / 3600)
    } else {
        format!("{} min", secs.div_ceil(60))
    }
}

fn render_list(
    sites: &[SiteOverview],
    week: &HashMap<String, (u64, u64)>,
    monthly: &[MonthlyBytes],
    now: i64,
    silent_ms: i64,
    silent_label: &str,
) -> String {
    let silent = sites
        .iter()
        .filter(|s| is_silent(s, now, silent_ms))
        .count();
    let (wf, wb) = week.values().fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1));
    let mut b = String::new();
    let _ = write!(
        b,
        "<p>{} sites; <strong>{silent}</strong> silent for more than {silent_label} (highlighted). \
This week (last 7 days): {wf} files, {} from {} sites.</p>",
        sites.len(),
        human_bytes(wb),
        week.len()
    );
    b.push_str(
        "<table id=\"sites\"><thead><tr><th>Site</th><th>Last heartbeat</th><th>Last data</th><th>Backlog (agent)</th>\
<th>This week</th><th>Total received</th><th>Agent</th><th>Disk free</th></tr></thead><tbody>",
    );
    for s in sites {
        let silent = is_silent(s, now, silent_ms);
        let hb = s.last_heartbeat.as_ref();
        let backlog = hb
            .map(|h| {
                format!(
                    "{} files, {}",
                    h.backlog_files,
                    human_bytes(h.backlog_bytes)
                )
            })
            .unwrap_or_else(|| "—".into());
        let (f, by) = week.get(&s.site).copied().unwrap_or((0, 0));
        let _ = write!(
            b,
            "<tr class=\"{cls}\" data-site=\"{id}\"><td><a href=\"/console/sites/{id}\">{id}</a>{badge}</td>\
<td title=\"{hbw}\">{hba}</td><td title=\"{ldw}\">{lda}</td><td class=\"n\">{backlog}</td>\
<td class=\"n\">{f} files, {wb}</td><td class=\"n\">{tf} files, {tb}</td><td>{ver}</td><td class=\"n\">{disk}</td></tr>",
            cls = if silent { "silent" } else { "ok" },
            id = esc(&s.site),
            badge = if silent { " <span class=\"badge\">silent</span>" } else { "" },
            hbw = when(s.last_heartbeat_ms),
            hba = ago(s.last_heartbeat_ms, now),
            ldw = when(s.last_data_ms),
            lda = ago(s.last_data_ms, now),
            wb = human_bytes(by),
            tf = s.files_total,
            tb = human_bytes(s.bytes_total),
            ver = esc(hb.map(|h| h.agent_version.as_str()).unwrap_or("—")),
            disk = hb.and_then(|h| h.disk_free_bytes).map(human_bytes).unwrap_or_else(|| "—".into()),
        );
    }
    b.push_str("</tbody></table>");
    b.push_str("<h2>Bytes per dataset per month</h2>");
    b.push_str(&monthly_table(monthly, true));
    page("Sites", &b)
}

fn monthly_table(rows: &[MonthlyBytes], with_site: bool) -> String {
    if rows.is_empty() {
        return "<p>Nothing received yet.</p>".into();
    }
    let mut b = String::from("<table class=\"monthly\"><thead><tr>");
    if with_site {
        b.push_str("<th>Site</th>");
    }
    b.push_str(
        "<th>Month (UTC)</th><th>Dataset</th><th>Files</th><th>Bytes</th></tr></thead><tbody>",
    );
    for r in rows {
        b.push_str("<tr>");
        if with_site {
            let _ = write!(
                b,
                "<td><a href=\"/console/sites/{0}\">{0}</a></td>",
                esc(&r.site)
            );
        }
        let _ = write!(
            b,
            "<td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\" title=\"{} bytes\">{}</td></tr>",
            esc(&r.month),
            esc(&r.dataset),
            r.files,
            r.bytes,
            human_bytes(r.bytes)
        );
    }
    b.push_str("</tbody></table>");
    b
}

async fn one(State(state): State<AppState>, Path(site): Path<String>) -> Response {
    let store = state.hub.store().clone();
    let silent_ms = state.config.hub.silent_after.as_millis() as i64;
    let r = tokio::task::spawn_blocking(move || -> Result<Option<String>, String> {
        render_one(&*store, &site, now_ms(), silent_ms).map_err(|e| e.to_string())
    })
    .await;
    match r {
        Ok(Ok(Some(html))) => Html(html).into_response(),
        Ok(Ok(None)) => (
            StatusCode::NOT_FOUND,
            Html(page(
                "Unknown site",
                "<p>No site has this id. <a href=\"/console/sites\">All sites</a></p>",
            )),
        )
            .into_response(),
        Ok(Err(e)) => err500(e),
        Err(e) => err500(e),
    }
}

fn render_one(
    store: &dyn HubStore,
    site: &str,
    now: i64,
    silent_ms: i64,
) -> Result<Option<String>, edusync_collect::hub::store::StoreError> {
    let Some(s) = store.sites()?.into_iter().find(|s| s.site == site) else {
        return Ok(None);
    };
    let mut b = String::new();
    if is_silent(&s, now, silent_ms) {
        b.push_str("<p><span class=\"badge\">silent</span> Not heard from for longer than the threshold.</p>");
    }
    let _ = write!(
        b,
        "<table><tbody><tr><th>Registered</th><td>{}</td></tr><tr><th>Last heartbeat</th><td>{} ({})</td></tr>\
<tr><th>Last data</th><td>{} ({})</td></tr><tr><th>Total received</th><td>{} files, {}</td></tr>",
        when(Some(s.created_ms)),
        when(s.last_heartbeat_ms),
        ago(s.last_heartbeat_ms, now),
        when(s.last_data_ms),
        ago(s.last_data_ms, now),
        s.files_total,
        human_bytes(s.bytes_total)
    );
    if let Some(h) = &s.last_heartbeat {
        let _ = write!(
            b,
            "<tr><th>Backlog (agent)</th><td>{} files, {}</td></tr><tr><th>Agent version</th><td>{}</td></tr>\
<tr><th>Agent up for</th><td>{}</td></tr><tr><th>Host up for</th><td>{}</td></tr><tr><th>Disk free</th><td>{}</td></tr>\
<tr><th>Agent clock at heartbeat</th><td>{}</td></tr>",
            h.backlog_files,
            human_bytes(h.backlog_bytes),
            esc(&h.agent_version),
            humantime(h.agent_uptime_secs),
            h.host_uptime_secs.map(humantime).unwrap_or_else(|| "—".into()),
            h.disk_free_bytes.map(human_bytes).unwrap_or_else(|| "—".into()),
            esc(&h.sent_at)
        );
    }
    b.push_str("</tbody></table>");
    let open = store.open_uploads(site)?;
    if !open.is_empty() {
        b.push_str("<h2>Uploads in progress</h2><table><thead><tr><th>Dataset</th><th>Path</th><th>Progress</th><th>Last chunk</th></tr></thead><tbody>");
        for u in &open {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{} of {} chunks ({})</td><td>{}</td></tr>",
                esc(&u.dataset),
                esc(&u.path),
                u.next_chunk,
                u.total_chunks,
                human_bytes(u.size),
                ago(Some(u.updated_ms), now)
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("<h2>Bytes per dataset per month</h2>");
    b.push_str(&monthly_table(&store.monthly_bytes(Some(site))?, false));
    b.push_str("<h2>Recent files</h2>");
    let files = store.recent_files(site, 200)?;
    if files.is_empty() {
        b.push_str("<p>Nothing received yet.</p>");
    } else {
        b.push_str("<table id=\"files\"><thead><tr><th>Received</th><th>Dataset</th><th>Path</th><th>Size</th><th>BLAKE3</th><th>Modified at site</th></tr></thead><tbody>");
        for f in &files {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td><code title=\"{}\">{}…</code></td><td>{}</td></tr>",
                when(Some(f.received_ms)),
                esc(&f.dataset),
                esc(&f.path),
                human_bytes(f.size),
                esc(&f.blake3),
                esc(&f.blake3[..12.min(f.blake3.len())]),
                esc(f.modified.as_deref().unwrap_or("—"))
            );
        }
        b.push_str("</tbody></table>");
    }
    Ok(Some(page(&format!("Site {site}"), &b)))
}
