//! The emulator's HTTP side.
//!
//! Service routes, as on Microsoft's service:
//!
//! * `POST /{tenant}/oauth2/v2.0/token` — client credentials (secret, or a
//!   JWT client assertion signed with a registered certificate's key,
//!   verified as in `assertion.rs`)
//! * `/v1.0/users/{id|upn}` … `calendars`, `calendars/{id}`,
//!   `calendars/{id}/events`, `calendars/{id}/calendarView`,
//!   `calendars/{id}/events/{id}`, `events`, `events/{id}`, `calendar/…`
//! * `POST /v1.0/$batch`
//!
//! Admin routes (no token needed), JSON in and out:
//!
//! * `GET /_emulator/stats`
//! * `GET /_emulator/violations`, `DELETE /_emulator/violations`
//! * `GET /_emulator/faults`, `PUT /_emulator/faults` ([`super::Faults`])
//! * `POST /_emulator/drop-next-writes` `{"count": N}`
//! * `POST /_emulator/outage` `{"duration_ms": N, "mode": "unavailable"|"refuse"}`, `DELETE /_emulator/outage`
//! * `PUT /_emulator/mailboxes/{upn}` `{"state": "ok"|"unlicensed"|"unknown"}`
//! * `GET /_emulator/mailboxes/{upn}/events`
//! * `POST /_emulator/mailboxes/{upn}/events` `{"subject", "start", "end", "calendar"?}` (RFC 3339) — a personal event
//! * `PATCH /_emulator/mailboxes/{upn}/events/{id}` (Graph event JSON), `DELETE …/{id}` — edits as the person would

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::serve::IncomingStream;
use axum::Router;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::store::{new_guid, Reply, ResourceRequest, Shared, ViolationKind};
use super::{assertion, odata};
use super::{Faults, MailboxState, OutageMode};

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let listener = EmuListener {
        inner: listener,
        shared: shared.clone(),
    };
    let app = Router::new().fallback(handle).with_state(shared);
    let _ = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<ConnInfo>(),
    )
    .await;
}

// ---------- connections that can be reset on purpose ----------

struct EmuListener {
    inner: TcpListener,
    shared: Arc<Shared>,
}

/// Per-connection handle given to the handler: lets it reset the connection.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    kill: Arc<AtomicBool>,
}

impl ConnInfo {
    fn kill(&self) {
        self.kill.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, EmuListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, EmuListener>) -> Self {
        stream.remote_addr().clone()
    }
}

impl axum::serve::Listener for EmuListener {
    type Io = EmuStream;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((s, _)) => {
                    let refuse = {
                        let mut w = self.shared.world();
                        matches!(w.outage_now(), Some((OutageMode::Refuse, _)))
                    };
                    if refuse || self.shared.is_shut_down() {
                        let _ = s.set_zero_linger();
                        continue;
                    }
                    let _ = s.set_nodelay(true);
                    let kill = Arc::new(AtomicBool::new(false));
                    return (
                        EmuStream {
                            s,
                            kill: kill.clone(),
                            shared: self.shared.clone(),
                            reset: false,
                        },
                        ConnInfo { kill },
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnInfo {
            kill: Arc::new(AtomicBool::new(false)),
        })
    }
}

pub(crate) struct EmuStream {
    s: TcpStream,
    kill: Arc<AtomicBool>,
    shared: Arc<Shared>,
    reset: bool,
}

impl EmuStream {
    fn dead(&mut self) -> bool {
        if self.kill.load(Ordering::SeqCst) || self.shared.is_shut_down() {
            if !self.reset {
                self.reset = true;
                let _ = self.s.set_zero_linger();
            }
            return true;
        }
        false
    }
}

fn reset_err() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "graph emulator: connection reset on purpose",
    )
}

impl AsyncRead for EmuStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.dead() {
            return Poll::Ready(Err(reset_err()));
        }
        Pin::new(&mut me.s).poll_read(cx, buf)
    }
}

impl AsyncWrite for EmuStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.dead() {
            return Poll::Ready(Err(reset_err()));
        }
        Pin::new(&mut me.s).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.dead() {
            return Poll::Ready(Err(reset_err()));
        }
        Pin::new(&mut me.s).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().s).poll_shutdown(cx)
    }
}

// ---------- request handling ----------

fn to_response(r: Reply) -> Response {
    let mut resp = Response::new(match &r.body {
        Some(b) => Body::from(serde_json::to_vec(b).unwrap_or_default()),
        None => Body::empty(),
    });
    *resp.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    if r.body.is_some() {
        h.insert("content-type", HeaderValue::from_static("application/json"));
    }
    for (k, v) in &r.headers {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    resp
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(
    State(sh): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    req: Request,
) -> Response {
    let received = Instant::now();
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let method = parts.method.as_str().to_string();
    if sh.is_shut_down() {
        conn.kill();
        return to_response(Reply::empty(503));
    }
    sh.world().counters.http_requests += 1;

    if let Some(rest) = path.strip_prefix("/_emulator/") {
        return to_response(admin(&sh, &method, rest, &bytes));
    }

    let outage = sh.world().outage_now();
    if let Some((mode, left)) = outage {
        let mut w = sh.world();
        w.counters.injected_errors += 1;
        if mode == OutageMode::Refuse {
            conn.kill();
        }
        let secs = left.as_secs().max(1);
        return to_response(
            w.error(503, "ServiceNotAvailable", "Service Unavailable")
                .header("Retry-After", secs.to_string()),
        );
    }

    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segs.len() == 4 && segs[1] == "oauth2" && segs[2] == "v2.0" && segs[3] == "token" {
        if method != "POST" {
            return to_response(Reply::empty(405));
        }
        let latency = sh.world().faults.latency_ms;
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        return to_response(token(&sh, segs[0], &bytes));
    }

    let Some(rel) = path.strip_prefix("/v1.0/") else {
        let mut w = sh.world();
        return to_response(w.error(
            404,
            "BadRequest",
            &format!("Invalid version in '{path}'; use /v1.0/."),
        ));
    };
    let desc = format!("{method} {path}");
    if let Err(r) = sh
        .world()
        .check_token(header(&parts.headers, "authorization"), &desc)
    {
        return to_response(r);
    }
    let body_json: Option<Value> = if bytes.is_empty() {
        None
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut w = sh.world();
                return to_response(w.error(
                    400,
                    "BadRequest",
                    &format!("Unable to read JSON request payload: {e}"),
                ));
            }
        }
    };
    let reply = if odata::percent_decode(rel, false) == "$batch" {
        if method != "POST" {
            Reply::empty(405)
        } else {
            batch(&sh, body_json, received).await
        }
    } else {
        serve_one(
            &sh,
            &method,
            rel,
            &query,
            header(&parts.headers, "if-match"),
            body_json.as_ref(),
            received,
        )
        .await
    };
    if reply.wrote && sh.world().should_drop_after_write() {
        conn.kill();
    }
    to_response(reply)
}

/// Serves one Graph request (top level or inside a batch).
async fn serve_one(
    sh: &Arc<Shared>,
    method: &str,
    rel_path: &str,
    raw_query: &str,
    if_match: Option<&str>,
    body: Option<&Value>,
    received: Instant,
) -> Reply {
    let segs: Vec<String> = rel_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| odata::percent_decode(s, false))
        .collect();
    if segs.len() < 2 || !segs[0].eq_ignore_ascii_case("users") {
        let mut w = sh.world();
        let first = segs.first().cloned().unwrap_or_default();
        return w.error(
            400,
            "BadRequest",
            &format!("Resource not found for the segment '{first}' (the emulator serves /users/{{id}}/…)."),
        );
    }
    let user = match sh.world().resolve_user(&segs[1]) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let desc = format!("{method} /v1.0/{rel_path}");
    let _slot = match sh.admit(user, received, &desc) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = sh.world().maybe_inject_error() {
        return r;
    }
    let latency = sh.world().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let req = ResourceRequest {
        method,
        rest: segs[2..].to_vec(),
        raw_path: rel_path,
        raw_query,
        query: odata::parse_query(raw_query),
        if_match,
        body,
    };
    let mut w = sh.world();
    w.execute(user, &req)
}

struct Inner {
    id: String,
    method: String,
    path: String,
    query: String,
    if_match: Option<String>,
    body: Option<Value>,
    depends_on: Vec<String>,
    mailbox: String,
    bad: Option<Reply>,
}

async fn batch(sh: &Arc<Shared>, mut body: Option<Value>, received: Instant) -> Reply {
    sh.world().counters.batches += 1;
    let Some(reqs) = body
        .as_mut()
        .and_then(|b| b.get_mut("requests"))
        .and_then(Value::as_array_mut)
    else {
        let mut w = sh.world();
        return w.error(
            400,
            "BadRequest",
            "Invalid batch payload format: 'requests' is missing.",
        );
    };
    let max = sh.config.max_batch;
    if reqs.len() > max {
        let mut w = sh.world();
        let n = reqs.len();
        w.violations_push(
            ViolationKind::OversizeBatch,
            format!("$batch of {n} requests (limit {max})"),
        );
        return w.error(
            400,
            "BadRequest",
            &format!("Invalid batch payload format: the number of requests ({n}) exceeds the limit of {max}."),
        );
    }
    let mut inners = Vec::with_capacity(reqs.len());
    let mut seen = HashSet::new();
    for r in reqs {
        let id = r.get("id").map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let method = r
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_ascii_uppercase);
        let url = r.get("url").and_then(Value::as_str).map(str::to_owned);
        let (Some(id), Some(method), Some(url)) = (id, method, url) else {
            let mut w = sh.world();
            return w.error(
                400,
                "BadRequest",
                "Invalid batch payload format: every request needs id, method and url.",
            );
        };
        if !seen.insert(id.to_lowercase()) {
            let mut w = sh.world();
            return w.error(
                400,
                "BadRequest",
                &format!("Invalid batch payload format: duplicate request id '{id}'."),
            );
        }
        let headers: HashMap<String, String> = r
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .filter_map(|(k, v)| {
                        v.as_str().map(|v| (k.to_ascii_lowercase(), v.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body = r.get_mut("body").map(Value::take).filter(|b| !b.is_null());
        let bad = if body.is_some() && !headers.contains_key("content-type") {
            let mut w = sh.world();
            Some(w.error(
                400,
                "BadRequest",
                "A request in a batch with a body needs a Content-Type header.",
            ))
        } else {
            None
        };
        let url = url.trim_start_matches('/');
        let url = url.strip_prefix("v1.0/").unwrap_or(url);
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let mailbox = path.split('/').nth(1).unwrap_or("").to_lowercase();
        let depends_on = r
            .get("dependsOn")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        inners.push(Inner {
            id,
            method,
            path: path.to_string(),
            query: query.to_string(),
            if_match: headers.get("if-match").cloned(),
            body,
            depends_on,
            mailbox,
            bad,
        });
    }

    let mut results: Vec<Option<Reply>> = vec![None; inners.len()];
    let inners = Arc::new(inners);
    if inners.iter().any(|i| !i.depends_on.is_empty()) {
        // With dependsOn the batch runs in order.
        let mut status_by_id: HashMap<String, u16> = HashMap::new();
        for (i, inner) in inners.iter().enumerate() {
            let failed_dep = inner
                .depends_on
                .iter()
                .any(|d| status_by_id.get(d).is_none_or(|s| !(200..300).contains(s)));
            let r = if failed_dep {
                let mut w = sh.world();
                w.error(
                    424,
                    "FailedDependency",
                    "A request this one depends on did not succeed.",
                )
            } else {
                run_inner(sh, &inners[i], received).await
            };
            status_by_id.insert(inner.id.clone(), r.status);
            results[i] = Some(r);
        }
    } else {
        // Otherwise each mailbox runs `batch_parallelism` of its requests at a time.
        let mut groups: HashMap<String, VecDeque<usize>> = HashMap::new();
        for (i, inner) in inners.iter().enumerate() {
            groups
                .entry(inner.mailbox.clone())
                .or_default()
                .push_back(i);
        }
        let out: Arc<Mutex<Vec<(usize, Reply)>>> = Arc::new(Mutex::new(Vec::new()));
        let mut set = tokio::task::JoinSet::new();
        for (_, queue) in groups {
            let queue = Arc::new(Mutex::new(queue));
            for _ in 0..sh.config.batch_parallelism.max(1) {
                let (queue, inners, out, sh) =
                    (queue.clone(), inners.clone(), out.clone(), sh.clone());
                set.spawn(async move {
                    loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                        let Some(i) = next else { break };
                        let r = run_inner(&sh, &inners[i], received).await;
                        out.lock().unwrap_or_else(|e| e.into_inner()).push((i, r));
                    }
                });
            }
        }
        while set.join_next().await.is_some() {}
        for (i, r) in std::mem::take(&mut *out.lock().unwrap_or_else(|e| e.into_inner())) {
            results[i] = Some(r);
        }
    }

    let mut wrote = false;
    let responses: Vec<Value> = inners
        .iter()
        .zip(results)
        .map(|(inner, r)| {
            let r = r.unwrap_or_else(|| Reply::empty(500));
            wrote |= r.wrote;
            let mut headers = serde_json::Map::new();
            if r.body.is_some() {
                headers.insert("Content-Type".into(), json!("application/json"));
            }
            for (k, v) in &r.headers {
                headers.insert(k.clone(), json!(v));
            }
            let mut v = json!({ "id": inner.id, "status": r.status, "headers": headers });
            if let Some(b) = r.body {
                v["body"] = b;
            }
            v
        })
        .collect();
    let mut reply = Reply::json(200, json!({ "responses": responses }));
    reply.wrote = wrote;
    reply
}

async fn run_inner(sh: &Arc<Shared>, i: &Inner, received: Instant) -> Reply {
    if let Some(bad) = &i.bad {
        return bad.clone();
    }
    serve_one(
        sh,
        &i.method,
        &i.path,
        &i.query,
        i.if_match.as_deref(),
        i.body.as_ref(),
        received,
    )
    .await
}

// ---------- token endpoint ----------

fn token_error(sh: &Shared, status: u16, error: &str, code: u32, description: &str) -> Reply {
    let mut w = sh.world();
    let trace = new_guid(&mut w.rng);
    let corr = new_guid(&mut w.rng);
    let ts = jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M:%SZ")
        .to_string();
    Reply::json(
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {ts}"),
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": format!("{}/error?code={code}", sh.base_url),
        }),
    )
}

fn token(sh: &Shared, tenant: &str, body: &[u8]) -> Reply {
    let form: HashMap<String, String> = odata::parse_query(&String::from_utf8_lossy(body))
        .into_iter()
        .collect();
    let cfg = &sh.config;
    let tenant_segment = tenant;
    let tenant = odata::percent_decode(tenant, false);
    if !tenant.eq_ignore_ascii_case(&cfg.tenant_id) {
        return token_error(
            sh,
            400,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        );
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return token_error(
            sh,
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type. The emulator supports 'client_credentials'.",
        );
    }
    match form.get("scope") {
        Some(s) if s.ends_with("/.default") => {}
        _ => {
            return token_error(
                sh,
                400,
                "invalid_scope",
                1002012,
                "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
            )
        }
    }
    let client_id = form.get("client_id").map(String::as_str).unwrap_or("");
    if client_id != cfg.client_id {
        return token_error(
            sh,
            400,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
        );
    }
    if let Some(kind) = form.get("client_assertion_type") {
        if kind != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
            return token_error(
                sh,
                400,
                "invalid_request",
                50027,
                &format!("Invalid client_assertion_type '{kind}'; use 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'."),
            );
        }
        let certs: Vec<assertion::RegisteredCert> = cfg
            .client_certificates
            .iter()
            .filter_map(|pem| assertion::RegisteredCert::from_pem(pem).ok())
            .collect();
        let token_url = format!("{}/{}/oauth2/v2.0/token", sh.base_url, tenant_segment);
        let now = jiff::Timestamp::now().as_second();
        let jwt = form
            .get("client_assertion")
            .map(String::as_str)
            .unwrap_or("");
        if let Err(r) = assertion::verify(jwt, &certs, client_id, &token_url, now) {
            return token_error(sh, r.status, r.error, r.code, &r.description);
        }
        let (tok, expires) = sh.world().issue_token();
        return Reply::json(
            200,
            json!({ "token_type": "Bearer", "expires_in": expires, "ext_expires_in": expires, "access_token": tok }),
        );
    }
    let secret_ok = form
        .get("client_secret")
        .is_some_and(|s| *s == cfg.client_secret);
    if !secret_ok {
        return token_error(
            sh,
            401,
            "invalid_client",
            7000215,
            &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."),
        );
    }
    let (tok, expires) = sh.world().issue_token();
    Reply::json(
        200,
        json!({ "token_type": "Bearer", "expires_in": expires, "ext_expires_in": expires, "access_token": tok }),
    )
}

// ---------- admin ----------

fn admin(sh: &Arc<Shared>, method: &str, rest: &str, body: &[u8]) -> Reply {
    let segs: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| odata::percent_decode(s, false))
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let json_body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let bad = |m: String| Reply::json(400, json!({ "error": m }));
    let ok = || Reply::json(200, json!({ "ok": true }));
    let mut w = sh.world();
    match (method, segs.as_slice()) {
        ("GET", ["stats"]) => Reply::json(200, serde_json::to_value(w.stats()).unwrap_or_default()),
        ("GET", ["violations"]) => {
            Reply::json(200, serde_json::to_value(&w.violations).unwrap_or_default())
        }
        ("DELETE", ["violations"]) => {
            w.violations.clear();
            ok()
        }
        ("GET", ["faults"]) => {
            Reply::json(200, serde_json::to_value(&w.faults).unwrap_or_default())
        }
        ("PUT", ["faults"]) => match serde_json::from_value::<Faults>(json_body) {
            Ok(f) => {
                w.faults = f;
                ok()
            }
            Err(e) => bad(format!("faults: {e}")),
        },
        ("POST", ["drop-next-writes"]) => match json_body.get("count").and_then(Value::as_u64) {
            Some(n) => {
                w.drop_next_writes = n as u32;
                ok()
            }
            None => bad("expected {\"count\": N}".into()),
        },
        ("POST", ["outage"]) => {
            let Some(ms) = json_body.get("duration_ms").and_then(Value::as_u64) else {
                return bad(
                    "expected {\"duration_ms\": N, \"mode\": \"unavailable\"|\"refuse\"}".into(),
                );
            };
            let mode = json_body
                .get("mode")
                .cloned()
                .map(serde_json::from_value::<OutageMode>)
                .transpose();
            match mode {
                Ok(m) => {
                    w.set_outage(Duration::from_millis(ms), m.unwrap_or_default());
                    ok()
                }
                Err(e) => bad(format!("mode: {e}")),
            }
        }
        ("DELETE", ["outage"]) => {
            w.outage = None;
            ok()
        }
        ("PUT", ["mailboxes", upn]) => {
            match json_body
                .get("state")
                .cloned()
                .map(serde_json::from_value::<MailboxState>)
            {
                Some(Ok(s)) => {
                    w.set_mailbox_state(upn, s);
                    ok()
                }
                _ => bad("expected {\"state\": \"ok\"|\"unlicensed\"|\"unknown\"}".into()),
            }
        }
        ("GET", ["mailboxes", upn, "events"]) => {
            let evs: Vec<Value> = w
                .inspect_events(upn, None)
                .into_iter()
                .map(|e| e.json)
                .collect();
            Reply::json(200, json!({ "value": evs }))
        }
        ("POST", ["mailboxes", upn, "events"]) => {
            let get = |k: &str| json_body.get(k).and_then(Value::as_str);
            let (Some(subject), Some(start), Some(end)) =
                (get("subject"), get("start"), get("end"))
            else {
                return bad(
                    "expected {\"subject\", \"start\", \"end\"} with RFC 3339 times".into(),
                );
            };
            let (Ok(start), Ok(end)) = (start.parse(), end.parse()) else {
                return bad("start and end must be RFC 3339 timestamps".into());
            };
            match w.add_personal_event(upn, get("calendar"), subject, start, end) {
                Ok(id) => Reply::json(201, json!({ "id": id })),
                Err(e) => bad(e),
            }
        }
        ("PATCH", ["mailboxes", upn, "events", id]) => {
            match w.user_edit_event(upn, id, json_body) {
                Ok(()) => ok(),
                Err(e) => bad(e),
            }
        }
        ("DELETE", ["mailboxes", upn, "events", id]) => match w.user_delete_event(upn, id) {
            Ok(()) => ok(),
            Err(e) => bad(e),
        },
        _ => Reply::json(
            404,
            json!({ "error": format!("no admin route {method} /_emulator/{rest}") }),
        ),
    }
}
