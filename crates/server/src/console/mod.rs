//! The admin console: server-rendered HTML, no JavaScript required.
//!
//! Everything under `/console` goes through [`require_login`]. For now that
//! is a bearer admin token from `EDUSYNC_CONSOLE_TOKEN`; session login will
//! replace this one function without touching the pages.

pub mod sites;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::AppState;

/// Environment variable holding the console admin token (until session login exists).
pub const CONSOLE_TOKEN_ENV: &str = "EDUSYNC_CONSOLE_TOKEN";

pub fn routes(state: &AppState) -> Router {
    Router::new()
        .merge(sites::routes(state))
        .layer(axum::middleware::from_fn(require_login))
}

/// The console's login check: `Authorization: Bearer $EDUSYNC_CONSOLE_TOKEN`.
pub async fn require_login(req: Request, next: Next) -> Response {
    let Ok(expected) = std::env::var(CONSOLE_TOKEN_ENV) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The console is locked: set {CONSOLE_TOKEN_ENV} for `edusync serve` and send it as `Authorization: Bearer <token>`.\n"),
        )
            .into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = match given {
        Some(g) if !expected.is_empty() => {
            blake3::hash(g.as_bytes()) == blake3::hash(expected.as_bytes())
        }
        _ => false,
    };
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"edusync console\"")],
            "Log in: send `Authorization: Bearer <console token>`.\n",
        )
            .into_response();
    }
    next.run(req).await
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

/// A whole page around `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} — edusync</title><style>\
body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}}\
table{{border-collapse:collapse;margin:1rem 0}}th,td{{padding:.3rem .6rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}\
th{{background:#f4f4f4}}td.n{{text-align:right;font-variant-numeric:tabular-nums}}\
tr.silent td{{background:#fde8e8}}tr.silent td:first-child{{border-left:4px solid #c00}}\
.badge{{background:#c00;color:#fff;border-radius:3px;padding:0 .3rem;font-size:.8rem}}\
code{{font-size:.85rem}}nav a{{margin-right:1rem}}\
</style></head><body><nav><a href=\"/console/sites\">Sites</a><a href=\"/feeds/server-days.ics\">Server days (ICS)</a></nav><h1>{t}</h1>\n{body}\n</body></html>\n",
        t = esc(title)
    )
}

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
