//! The emulator's HTTP side.
//!
//! Service routes, as on Google's service:
//!
//! * `POST /token` — the JWT grant of a service account
//! * `GET /calendar/v3/users/me/calendarList`, `POST /calendar/v3/calendars`
//! * `GET|POST /calendar/v3/calendars/{calendarId}/events`
//! * `GET|PATCH|DELETE /calendar/v3/calendars/{calendarId}/events/{eventId}`
//!
//! Admin routes (no token), JSON in and out:
//!
//! * `GET /_emulator/stats`, `GET /_emulator/violations`
//! * `PUT /_emulator/faults` ([`super::Faults`])
//! * `PUT /_emulator/users/{email}/read-only` `{"read_only": bool}`
//! * `POST /_emulator/expire-sync-tokens`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::store::{error, Reply, Shared};
use super::Faults;

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let app = Router::new().fallback(handle).with_state(shared);
    let _ = axum::serve(listener, app).await;
}

fn to_response(r: Reply) -> Response {
    let mut resp = Response::new(match &r.body {
        Some(b) => Body::from(serde_json::to_vec(b).unwrap_or_default()),
        None => Body::empty(),
    });
    *resp.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if r.body.is_some() {
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
    }
    resp
}

/// A response whose body fails: the connection is cut after the headers,
/// so the client never learns what happened to its write.
fn dropped() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "google emulator: connection dropped on purpose",
        ))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    resp
}

fn parse_query(q: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(decode(k)).or_default().push(decode(v));
    }
    out
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Counts a user's request as answered when its handler ends, however it ends.
struct Answering {
    sh: Arc<Shared>,
    user: String,
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.sh.world().in_flight(&self.user, false);
    }
}

async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let received = Instant::now();
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let method = parts.method.as_str().to_string();
    let bearer = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let if_match = parts
        .headers
        .get("if-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    if let Some(rest) = path.strip_prefix("/_emulator/") {
        return to_response(admin(&sh, &method, rest, &bytes));
    }
    if path == "/token" {
        return to_response(token(&sh, &method, &bytes));
    }
    let Some(api) = path.strip_prefix("/calendar/v3/") else {
        return to_response(error(404, "global", "notFound", "Not Found"));
    };
    let segs: Vec<String> = api.split('/').map(decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let write = method != "GET";

    let user = {
        let mut w = sh.world();
        match w.authenticate(bearer.as_deref()) {
            Ok(u) => u,
            Err(r) => return to_response(r),
        }
    };
    sh.world().in_flight(&user, true);
    let _answering = Answering {
        sh: sh.clone(),
        user: user.clone(),
    };
    let refused = sh.world().admit(&sh.config, &user, received, write);
    let latency = sh.world().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if let Some(r) = refused {
        if matches!(r.status, 403 | 429)
            && r.body.as_ref().is_some_and(|b| {
                matches!(
                    b.pointer("/error/errors/0/reason").and_then(Value::as_str),
                    Some("rateLimitExceeded" | "userRateLimitExceeded")
                )
            })
        {
            sh.world().limited(&user);
        }
        return to_response(r);
    }
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                return to_response(error(
                    400,
                    "global",
                    "parseError",
                    &format!("Parse Error: {e}"),
                ))
            }
        }
    };
    let reply = {
        let mut w = sh.world();
        let cfg = &sh.config;
        match (method.as_str(), segs.as_slice()) {
            ("GET", ["users", "me", "calendarList"]) => w.calendar_list(&user, &query),
            ("POST", ["calendars"]) => w.calendar_insert(&user, &body),
            ("GET", ["calendars", cal, "events"]) => w.list(&user, cal, &query, cfg),
            ("POST", ["calendars", cal, "events"]) => w.insert(&user, cal, &body, received, cfg),
            ("GET", ["calendars", cal, "events", id]) => w.get(&user, cal, id),
            ("PATCH", ["calendars", cal, "events", id]) => {
                w.patch(&user, cal, id, &body, if_match.as_deref())
            }
            ("DELETE", ["calendars", cal, "events", id]) => w.delete(&user, cal, id),
            _ => error(404, "global", "notFound", "Not Found"),
        }
    };
    if reply.wrote {
        let mut w = sh.world();
        let roll: f64 = rand::Rng::gen(&mut w.rng);
        if w.drop_next_writes > 0 || roll < w.faults.drop_after_write_rate {
            w.drop_next_writes = w.drop_next_writes.saturating_sub(1);
            w.stats.dropped += 1;
            return dropped();
        }
    }
    to_response(reply)
}

fn token(sh: &Shared, method: &str, bytes: &[u8]) -> Reply {
    let oauth = |status: u16, err: &str, desc: &str| Reply {
        status,
        body: Some(json!({ "error": err, "error_description": desc })),
        wrote: false,
    };
    if method != "POST" {
        return oauth(405, "invalid_request", "POST only");
    }
    let form = parse_query(&String::from_utf8_lossy(bytes));
    let one = |k: &str| {
        form.get(k)
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_default()
    };
    if one("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return oauth(400, "unsupported_grant_type", "Invalid grant_type");
    }
    match sh.verify_assertion(&one("assertion"), now_secs()) {
        Ok(user) => {
            let lifetime = sh.config.token_lifetime;
            let token = sh.world().issue_token(&user, lifetime);
            Reply::ok(json!({
                "access_token": token,
                "expires_in": lifetime.as_secs(),
                "token_type": "Bearer",
            }))
        }
        Err((status, err, desc)) => oauth(status, err, &desc),
    }
}

fn admin(sh: &Shared, method: &str, rest: &str, bytes: &[u8]) -> Reply {
    let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let mut w = sh.world();
    match (method, rest.split('/').collect::<Vec<_>>().as_slice()) {
        ("GET", ["stats"]) => Reply::ok(serde_json::to_value(&w.stats).unwrap_or_default()),
        ("GET", ["violations"]) => {
            Reply::ok(serde_json::to_value(&w.violations).unwrap_or_default())
        }
        ("PUT", ["faults"]) => match serde_json::from_value::<Faults>(body) {
            Ok(f) => {
                w.faults = f;
                Reply::ok(json!({}))
            }
            Err(e) => error(400, "global", "invalid", &e.to_string()),
        },
        ("PUT", ["users", user, "read-only"]) => {
            let ro = body["read_only"].as_bool().unwrap_or(true);
            w.set_read_only(&decode(user), ro);
            Reply::ok(json!({}))
        }
        ("POST", ["expire-sync-tokens"]) => {
            w.expire_sync_tokens();
            Reply::ok(json!({}))
        }
        _ => error(404, "global", "notFound", "Not Found"),
    }
}
