//! The Graph client: per-mailbox gates (concurrency and `Retry-After`),
//! `$batch` writes with retries, calendar lookup and marked-event listing.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};

use super::auth::TokenCache;
use super::mapping::{
    self, odata_string, path_segment, AnswerBody, Batch, BatchAnswer, BatchRequest, EventBody, Fmt,
    InnerAnswer, JsonContent,
};
use super::{
    GraphApplied, GraphClientOptions, GraphError, GraphOp, GraphOpResult, GraphSettings,
    RemoteEvent, MARKER_PROPERTY_ID,
};
use crate::adaptive::{AdaptiveConfig, AdaptiveLimit, Feedback, LimitStats, Permit};
use crate::lock;
use crate::percent_encode as query_value;
use crate::rate::{Hold, SlidingWindow};

/// A Microsoft Graph calendar client. Cheap to clone; clones share the
/// token, the calendar ids found and each mailbox's limits.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

struct Inner {
    settings: GraphSettings,
    opts: GraphClientOptions,
    http: reqwest::Client,
    tokens: TokenCache,
    base: String,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    calendars: Mutex<HashMap<String, String>>,
    /// Graph's global per-app limit, kept by the client.
    app_rate: Option<SlidingWindow>,
}

/// Requests of one `$batch` that Graph runs at once against a mailbox.
const BATCH_PARALLELISM: usize = 4;

/// One mailbox's limits as the client keeps them: an adaptive limit on
/// requests in flight (at most `mailbox_concurrency`) and the instant a
/// `Retry-After` ends.
struct Gate {
    limit: AdaptiveLimit,
    held: Hold,
    /// Outlook's requests per mailbox per window, kept by the client.
    rate: Option<SlidingWindow>,
}

impl Gate {
    /// Waits out any `Retry-After`, then takes up to `want` slots of the
    /// mailbox's limit. Gives up with the time left when the hold is longer
    /// than `max_wait`.
    async fn enter(&self, want: usize, max_wait: Duration) -> Result<Permit, Duration> {
        loop {
            if let Some(left) = self.held.held_for() {
                if left > max_wait {
                    return Err(left);
                }
                tokio::time::sleep(left).await;
                continue;
            }
            let permit = self.limit.acquire(want as u32).await;
            if self.held.held_for().is_none() {
                return Ok(permit);
            }
        }
    }
}

/// What came back for one request.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    bytes: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`Null` when empty or not JSON).
    fn json(&self) -> Value {
        if self.bytes.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

/// A request that got no answer, and whether it timed out (back-pressure).
struct NoAnswer {
    error: GraphError,
    timeout: bool,
}

fn retry_after_of(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

fn error_parts(body: &Value) -> (String, String) {
    let e = body.get("error");
    let code = e
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let message = e
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    (code, message)
}

/// A 404 about the mailbox itself rather than an item in it.
fn mailbox_level_404(code: &str) -> bool {
    !matches!(code, "ErrorItemNotFound" | "ErrorInvalidIdMalformed" | "")
}

/// Statuses that mean "slow down": they shrink the mailbox's limit.
fn is_backpressure(status: u16) -> bool {
    matches!(status, 429 | 503 | 504)
}

impl GraphClient {
    /// A client with default options.
    pub fn new(settings: GraphSettings) -> Self {
        Self::with_options(settings, GraphClientOptions::default())
    }

    /// A client with these options.
    pub fn with_options(settings: GraphSettings, opts: GraphClientOptions) -> Self {
        let http = reqwest::Client::builder()
            .timeout(opts.request_timeout)
            .connect_timeout(Duration::from_secs(10).min(opts.request_timeout))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let base = format!("{}/v1.0", settings.graph_url.trim_end_matches('/'));
        let app_rate = opts.app_rate.map(SlidingWindow::paced);
        Self {
            inner: Arc::new(Inner {
                tokens: TokenCache::new(&settings),
                settings,
                opts,
                http,
                base,
                gates: Mutex::new(HashMap::new()),
                calendars: Mutex::new(HashMap::new()),
                app_rate,
            }),
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &GraphSettings {
        &self.inner.settings
    }

    /// Waits until `n` more requests for `gate`'s mailbox fit in the
    /// mailbox's and the app's rate windows (each request of a batch counts).
    async fn pace(&self, gate: &Gate, n: usize) {
        let n = n as u32;
        if let Some(r) = &gate.rate {
            r.take(n).await;
        }
        if let Some(r) = &self.inner.app_rate {
            r.take(n).await;
        }
    }

    fn gate(&self, mailbox: &str) -> Arc<Gate> {
        let o = &self.inner.opts;
        let max = o.mailbox_concurrency.max(1) as u32;
        let rate = o.mailbox_rate;
        let mut gates = lock(&self.inner.gates);
        if let Some(g) = gates.get(mailbox) {
            return g.clone();
        }
        let key = mailbox.to_lowercase();
        if let Some(g) = gates.get(&key) {
            return g.clone();
        }
        gates
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Gate {
                    limit: AdaptiveLimit::new(AdaptiveConfig {
                        max,
                        initial: o.adaptive.initial.min(max),
                        ..o.adaptive
                    }),
                    held: Hold::default(),
                    rate: rate.map(SlidingWindow::new),
                })
            })
            .clone()
    }

    /// The adaptive limit of `mailbox` as it stands (tests, logs).
    pub fn mailbox_limit(&self, mailbox: &str) -> LimitStats {
        self.gate(mailbox).limit.stats()
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let o = &self.inner.opts;
        let exp = o
            .backoff_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(o.backoff_max);
        let lo = exp.as_secs_f64() / 2.0;
        Duration::from_secs_f64(rand::thread_rng().gen_range(lo..=exp.as_secs_f64().max(lo)))
    }

    fn retryable(
        mailbox: &str,
        status: Option<u16>,
        message: String,
        retry_after: Option<Duration>,
    ) -> GraphError {
        GraphError::Retryable {
            mailbox: mailbox.to_string(),
            status,
            message,
            retry_after,
        }
    }

    /// Sends one HTTP request with a fresh token; a 401 gets one new token and one more try.
    async fn send(
        &self,
        mailbox: &str,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, NoAnswer> {
        let mut renewed = false;
        loop {
            let token = self
                .inner
                .tokens
                .get(&self.inner.http)
                .await
                .map_err(|error| NoAnswer {
                    error,
                    timeout: false,
                })?;
            let mut rb = self
                .inner
                .http
                .request(method.clone(), url)
                .header(reqwest::header::AUTHORIZATION, token)
                .header(
                    reqwest::header::HeaderName::from_static("prefer"),
                    reqwest::header::HeaderValue::from_static("outlook.timezone=\"UTC\""),
                );
            if let Some(b) = body {
                rb = rb
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.to_vec());
            }
            let resp = rb.send().await.map_err(|e| NoAnswer {
                timeout: e.is_timeout(),
                error: Self::retryable(
                    mailbox,
                    None,
                    format!("{method} request failed: {e}"),
                    None,
                ),
            })?;
            let status = resp.status().as_u16();
            let retry_after = retry_after_of(resp.headers());
            let bytes: Vec<u8> = resp
                .bytes()
                .await
                .map_err(|e| NoAnswer {
                    timeout: e.is_timeout(),
                    error: Self::retryable(
                        mailbox,
                        Some(status),
                        format!("reading the answer failed: {e}"),
                        None,
                    ),
                })?
                .into();
            if status == 401 && !renewed {
                renewed = true;
                self.inner.tokens.invalidate().await;
                continue;
            }
            return Ok(Answer {
                status,
                retry_after,
                bytes,
            });
        }
    }

    /// One request to a mailbox, inside its gate, retried on 429/5xx/transport.
    async fn call(
        &self,
        mailbox: &str,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, GraphError> {
        let gate = self.gate(mailbox);
        let opts = &self.inner.opts;
        let body = body.map(|b| serde_json::to_vec(b).expect("a JSON value serializes"));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let permit = gate.enter(1, opts.max_retry_after).await.map_err(|left| {
                Self::retryable(
                    mailbox,
                    Some(429),
                    "mailbox is throttled".into(),
                    Some(left),
                )
            })?;
            self.pace(&gate, 1).await;
            let r = self
                .send(mailbox, method.clone(), url, body.as_deref())
                .await;
            let err = match r {
                Ok(a) if (200..300).contains(&a.status) => {
                    // Reads and calendar lookups take their own time: only
                    // the writes' batches (per round) feed the latency signal.
                    drop(permit);
                    if a.bytes.is_empty() {
                        return Ok(Value::Null);
                    }
                    match serde_json::from_slice(&a.bytes) {
                        Ok(v) => return Ok(v),
                        Err(e) => Self::retryable(
                            mailbox,
                            Some(a.status),
                            format!("the answer is not JSON: {e}"),
                            None,
                        ),
                    }
                }
                Ok(a) if a.status == 429 || a.status >= 500 => {
                    if let Some(ra) = a.retry_after {
                        gate.held.hold(ra);
                    } else if a.status == 429 {
                        gate.held.hold(self.backoff(attempt));
                    }
                    permit.done(if is_backpressure(a.status) {
                        Feedback::Backoff
                    } else {
                        Feedback::Neutral
                    });
                    let (code, message) = error_parts(&a.json());
                    Self::retryable(
                        mailbox,
                        Some(a.status),
                        format!("HTTP {} {code} {message}", a.status),
                        a.retry_after,
                    )
                }
                Ok(a) => {
                    drop(permit);
                    return Err(self.client_error(mailbox, a.status, &a.json()));
                }
                Err(NoAnswer { error, timeout }) => {
                    permit.done(if timeout {
                        Feedback::Backoff
                    } else {
                        Feedback::Neutral
                    });
                    if !error.is_retryable() {
                        return Err(error);
                    }
                    error
                }
            };
            if attempt >= opts.max_attempts {
                return Err(err);
            }
            if err.retry_after().is_none() {
                tokio::time::sleep(self.backoff(attempt)).await;
            }
        }
    }

    /// A 4xx other than 429, classified.
    fn client_error(&self, mailbox: &str, status: u16, body: &Value) -> GraphError {
        let (code, message) = error_parts(body);
        if status == 404 && mailbox_level_404(&code) {
            return GraphError::MailboxUnavailable {
                mailbox: mailbox.to_string(),
                code,
                message,
            };
        }
        GraphError::Rejected {
            mailbox: mailbox.to_string(),
            status,
            code,
            message,
        }
    }

    fn user_url(&self, mailbox: &str) -> String {
        format!("{}/users/{}", self.inner.base, path_segment(mailbox))
    }

    /// The id of the edusync calendar in `mailbox`, created when missing.
    #[tracing::instrument(skip_all, fields(mailbox = %mailbox))]
    pub async fn ensure_calendar(&self, mailbox: &str) -> Result<String, GraphError> {
        let cache_key = mailbox.to_lowercase();
        if let Some(id) = lock(&self.inner.calendars).get(&cache_key) {
            return Ok(id.clone());
        }
        let name = &self.inner.settings.calendar;
        let find_url = format!(
            "{}/calendars?$filter={}&$select=id,name",
            self.user_url(mailbox),
            query_value(&format!("name eq {}", odata_string(name)))
        );
        let mut created_once = false;
        loop {
            let v = self.call(mailbox, Method::GET, &find_url, None).await?;
            let found = v["value"].as_array().and_then(|a| {
                a.iter()
                    .find(|c| {
                        c["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(name))
                    })
                    .and_then(|c| c["id"].as_str().map(String::from))
            });
            if let Some(id) = found {
                lock(&self.inner.calendars).insert(cache_key, id.clone());
                return Ok(id);
            }
            if created_once {
                return Err(GraphError::Protocol {
                    mailbox: mailbox.to_string(),
                    message: format!("calendar '{name}' exists (409) but cannot be found by name"),
                });
            }
            let url = format!("{}/calendars", self.user_url(mailbox));
            match self
                .call(mailbox, Method::POST, &url, Some(&json!({ "name": name })))
                .await
            {
                Ok(v) => {
                    let id =
                        v["id"]
                            .as_str()
                            .map(String::from)
                            .ok_or_else(|| GraphError::Protocol {
                                mailbox: mailbox.to_string(),
                                message: "created calendar has no id".into(),
                            })?;
                    tracing::info!(mailbox, calendar = %name, "graph: calendar created");
                    lock(&self.inner.calendars).insert(cache_key, id.clone());
                    return Ok(id);
                }
                // Created meanwhile (by another run): look again.
                Err(GraphError::Rejected { status: 409, .. }) => created_once = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// Gets (or reuses) the app's token: proves the credentials work.
    pub async fn token(&self) -> Result<(), GraphError> {
        self.inner.tokens.get(&self.inner.http).await.map(|_| ())
    }

    /// Reads the list of `mailbox`'s calendars and answers how many there
    /// are: proves the app may read that mailbox (for `check`).
    pub async fn probe_calendars(&self, mailbox: &str) -> Result<usize, GraphError> {
        let url = format!("{}/calendars?$select=id,name", self.user_url(mailbox));
        let v = self.call(mailbox, Method::GET, &url, None).await?;
        Ok(v["value"].as_array().map_or(0, Vec::len))
    }

    /// Records `calendar_id` as `mailbox`'s edusync calendar (read from a
    /// stored change marker), sparing the lookup; a stale one is forgotten
    /// at the first [`GraphError::CalendarNotFound`].
    pub fn remember_calendar(&self, mailbox: &str, calendar_id: &str) {
        lock(&self.inner.calendars).insert(mailbox.to_lowercase(), calendar_id.to_string());
    }

    /// Forgets the calendar id found for `mailbox` (after [`GraphError::CalendarNotFound`]).
    pub fn forget_calendar(&self, mailbox: &str) {
        lock(&self.inner.calendars).remove(&mailbox.to_lowercase());
    }

    /// Applies `ops` to the calendar `calendar_id` of `mailbox`: `$batch`es of
    /// at most 20, at most 4 requests in flight for the mailbox (fewer while
    /// its adaptive limit is lower: a batch then holds only as many requests
    /// as the limit, since Graph runs up to 4 of a batch at once),
    /// `Retry-After` honoured, 5xx and connection failures retried with
    /// backoff. Answers one result per op, in order. Replaying any op is
    /// harmless.
    pub async fn apply(
        &self,
        mailbox: &str,
        calendar_id: &str,
        ops: Vec<GraphOp>,
    ) -> Vec<GraphOpResult> {
        self.apply_ops(mailbox, calendar_id, &ops).await
    }

    /// [`GraphClient::apply`] on borrowed ops.
    #[tracing::instrument(skip_all, fields(mailbox = %mailbox, ops = ops.len()))]
    pub async fn apply_ops(
        &self,
        mailbox: &str,
        calendar_id: &str,
        ops: &[GraphOp],
    ) -> Vec<GraphOpResult> {
        let n = ops.len();
        let opts = &self.inner.opts;
        let max_batch = opts.max_batch.clamp(1, 20);
        let gate = self.gate(mailbox);
        let batch_url = format!("{}/$batch", self.inner.base);
        let urls = InnerUrls::new(mailbox, calendar_id);
        let mut results: Vec<Slot> = vec![None; n];
        let mut attempts = vec![0u32; n];
        let mut pending: VecDeque<usize> = (0..n).collect();
        let mut round = 0u32;
        let mut dead: Option<GraphError> = None;
        let mut body = Vec::new();

        while !pending.is_empty() {
            round += 1;
            let mut again = Vec::new();
            let mut transient = false;
            while !pending.is_empty() {
                if let Some(e) = &dead {
                    for i in pending.drain(..) {
                        results[i] = Some(Err(e.clone()));
                    }
                    break;
                }
                let permit = match gate.enter(BATCH_PARALLELISM, opts.max_retry_after).await {
                    Ok(p) => p,
                    Err(left) => {
                        let e = Self::retryable(
                            mailbox,
                            Some(429),
                            "mailbox is throttled".into(),
                            Some(left),
                        );
                        for i in pending.drain(..) {
                            results[i] = Some(Err(e.clone()));
                        }
                        break;
                    }
                };
                let slots = permit.slots() as usize;
                let size = if slots >= BATCH_PARALLELISM {
                    max_batch
                } else {
                    slots.min(max_batch)
                };
                let chunk: Vec<usize> = pending.drain(..size.min(pending.len())).collect();
                self.pace(&gate, chunk.len()).await;
                body.clear();
                {
                    let requests: Vec<BatchRequest<'_>> =
                        chunk.iter().map(|&i| urls.request(i, &ops[i])).collect();
                    serde_json::to_writer(
                        &mut body,
                        &Batch {
                            requests: &requests,
                        },
                    )
                    .expect("a batch serializes");
                }
                for &i in &chunk {
                    attempts[i] += 1;
                }
                let started = Instant::now();
                let answer = self
                    .send(mailbox, Method::POST, &batch_url, Some(&body))
                    .await;
                // Graph runs a batch's requests four at a time: the latency
                // the limiter compares is per round.
                let per_round = started.elapsed() / chunk.len().div_ceil(BATCH_PARALLELISM) as u32;

                let a = match answer {
                    Err(NoAnswer { error, timeout }) => {
                        permit.done(if timeout {
                            Feedback::Backoff
                        } else {
                            Feedback::Neutral
                        });
                        let retry = error.is_retryable();
                        if retry {
                            tracing::debug!(error = %error, "graph: batch failed, will retry");
                            transient = true;
                        }
                        for &i in &chunk {
                            if retry {
                                retry_or_fail(
                                    &mut results,
                                    &attempts,
                                    opts.max_attempts,
                                    i,
                                    error.clone(),
                                    &mut again,
                                );
                            } else {
                                results[i] = Some(Err(error.clone()));
                            }
                        }
                        continue;
                    }
                    Ok(a) => a,
                };
                if a.status == 429 || a.status >= 500 {
                    if let Some(ra) = a.retry_after {
                        gate.held.hold(ra);
                    } else {
                        transient = true;
                    }
                    permit.done(if is_backpressure(a.status) {
                        Feedback::Backoff
                    } else {
                        Feedback::Neutral
                    });
                    let e = Self::retryable(
                        mailbox,
                        Some(a.status),
                        format!("$batch answered HTTP {}", a.status),
                        a.retry_after,
                    );
                    for &i in &chunk {
                        retry_or_fail(
                            &mut results,
                            &attempts,
                            opts.max_attempts,
                            i,
                            e.clone(),
                            &mut again,
                        );
                    }
                    continue;
                }
                if a.status != 200 {
                    drop(permit);
                    let e = self.client_error(mailbox, a.status, &a.json());
                    for &i in &chunk {
                        results[i] = Some(Err(e.clone()));
                    }
                    continue;
                }
                let parsed: BatchAnswer<'_> = match serde_json::from_slice(&a.bytes) {
                    Ok(p) => p,
                    Err(e) => {
                        drop(permit);
                        transient = true;
                        let e = Self::retryable(
                            mailbox,
                            Some(200),
                            format!("the $batch answer is not JSON: {e}"),
                            None,
                        );
                        for &i in &chunk {
                            retry_or_fail(
                                &mut results,
                                &attempts,
                                opts.max_attempts,
                                i,
                                e.clone(),
                                &mut again,
                            );
                        }
                        continue;
                    }
                };
                let mut answers: Vec<Option<InnerAnswer<'_>>> =
                    std::iter::repeat_with(|| None).take(chunk.len()).collect();
                for r in parsed.responses {
                    let k =
                        r.id.as_deref()
                            .and_then(|id| id.parse::<usize>().ok())
                            .and_then(|id| chunk.iter().position(|&i| i == id));
                    if let Some(k) = k {
                        answers[k] = Some(r);
                    }
                }
                let mut pushed_back = false;
                for (&i, r) in chunk.iter().zip(answers) {
                    let Some(r) = r else {
                        transient = true;
                        let e = Self::retryable(
                            mailbox,
                            None,
                            "$batch answer lacks a response".into(),
                            None,
                        );
                        retry_or_fail(&mut results, &attempts, opts.max_attempts, i, e, &mut again);
                        continue;
                    };
                    let status = r.status;
                    pushed_back |= is_backpressure(status);
                    let body = r.body.unwrap_or_default();
                    match self.interpret(mailbox, calendar_id, &ops[i], status, body) {
                        Interpreted::Done(res) => results[i] = Some(res),
                        Interpreted::MailboxDead(e) => {
                            results[i] = Some(Err(e.clone()));
                            dead = Some(e);
                        }
                        Interpreted::Retry(e) => {
                            match r.headers.retry_after {
                                Some(ra) => gate.held.hold(ra),
                                None if status == 429 => gate.held.hold(self.backoff(attempts[i])),
                                None => transient = true,
                            }
                            retry_or_fail(
                                &mut results,
                                &attempts,
                                opts.max_attempts,
                                i,
                                e,
                                &mut again,
                            );
                        }
                        Interpreted::Reauth(e) => {
                            self.inner.tokens.invalidate().await;
                            retry_or_fail(
                                &mut results,
                                &attempts,
                                opts.max_attempts,
                                i,
                                e,
                                &mut again,
                            );
                        }
                    }
                }
                permit.done(if pushed_back {
                    Feedback::Backoff
                } else {
                    Feedback::Ok(per_round)
                });
            }
            if let Some(e) = &dead {
                for i in again.drain(..) {
                    results[i] = Some(Err(e.clone()));
                }
            }
            if transient && !again.is_empty() {
                tokio::time::sleep(self.backoff(round)).await;
            }
            pending = again.into();
        }

        ops.iter()
            .zip(results)
            .map(|(op, r)| GraphOpResult {
                key: op.key().to_string(),
                outcome: r.unwrap_or_else(|| {
                    Err(GraphError::Protocol {
                        mailbox: mailbox.to_string(),
                        message: "op left without an answer".into(),
                    })
                }),
            })
            .collect()
    }

    fn interpret(
        &self,
        mailbox: &str,
        calendar_id: &str,
        op: &GraphOp,
        status: u16,
        body: AnswerBody,
    ) -> Interpreted {
        if (200..300).contains(&status) {
            return Interpreted::Done(match op {
                GraphOp::Delete { .. } => Ok(GraphApplied::Deleted),
                GraphOp::Create { .. } => match body.id {
                    Some(id) => Ok(GraphApplied::Created {
                        id,
                        change_key: body.change_key,
                    }),
                    None => Err(GraphError::Protocol {
                        mailbox: mailbox.to_string(),
                        message: "created event has no id".into(),
                    }),
                },
                GraphOp::Update { remote_id, .. } => Ok(GraphApplied::Updated {
                    id: body.id.unwrap_or_else(|| remote_id.clone()),
                    change_key: body.change_key,
                }),
            });
        }
        let (code, message) = body.error_parts();
        if status == 429 || status >= 500 || status == 0 {
            let e = Self::retryable(
                mailbox,
                Some(status),
                format!("HTTP {status} {code} {message}"),
                None,
            );
            return Interpreted::Retry(e);
        }
        if status == 401 {
            let e = Self::retryable(
                mailbox,
                Some(401),
                format!("token refused: {code} {message}"),
                None,
            );
            return Interpreted::Reauth(e);
        }
        if status == 404 {
            if mailbox_level_404(&code) {
                return Interpreted::MailboxDead(GraphError::MailboxUnavailable {
                    mailbox: mailbox.to_string(),
                    code,
                    message,
                });
            }
            return Interpreted::Done(match op {
                GraphOp::Delete { .. } => Ok(GraphApplied::Deleted),
                GraphOp::Update { remote_id, .. } => Err(GraphError::NotFound {
                    mailbox: mailbox.to_string(),
                    id: remote_id.clone(),
                }),
                GraphOp::Create { .. } => {
                    self.forget_calendar(mailbox);
                    Err(GraphError::CalendarNotFound {
                        mailbox: mailbox.to_string(),
                        calendar_id: calendar_id.to_string(),
                    })
                }
            });
        }
        Interpreted::Done(Err(GraphError::Rejected {
            mailbox: mailbox.to_string(),
            status,
            code,
            message,
        }))
    }

    async fn list_pages(
        &self,
        mailbox: &str,
        calendar_id: &str,
        first_url: String,
    ) -> Result<Vec<RemoteEvent>, GraphError> {
        let mut out = Vec::new();
        let mut url = first_url;
        loop {
            let v = match self.call(mailbox, Method::GET, &url, None).await {
                Ok(v) => v,
                Err(GraphError::Rejected { status: 404, .. }) => {
                    self.forget_calendar(mailbox);
                    return Err(GraphError::CalendarNotFound {
                        mailbox: mailbox.to_string(),
                        calendar_id: calendar_id.to_string(),
                    });
                }
                Err(e) => return Err(e),
            };
            if let Some(items) = v["value"].as_array() {
                out.extend(items.iter().filter_map(mapping::remote_event));
            }
            match v["@odata.nextLink"].as_str() {
                Some(next) => url = next.to_string(),
                None => return Ok(out),
            }
        }
    }

    fn marker_expand() -> String {
        query_value(&format!(
            "singleValueExtendedProperties($filter=id eq {})",
            odata_string(MARKER_PROPERTY_ID)
        ))
    }

    /// The edusync events (those carrying the marker) of the calendar that
    /// overlap `window`, all pages. The caller picks its profile by the
    /// `key` prefix `<profile>/`.
    #[tracing::instrument(skip_all, fields(mailbox = %mailbox))]
    pub async fn list_marked(
        &self,
        mailbox: &str,
        calendar_id: &str,
        window: Range<Timestamp>,
    ) -> Result<Vec<RemoteEvent>, GraphError> {
        let fmt = |t: Timestamp| query_value(&t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        let url = format!(
            "{}/calendars/{}/calendarView?startDateTime={}&endDateTime={}&$top={}&$select=id,subject,start,end,changeKey&$expand={}",
            self.user_url(mailbox),
            path_segment(calendar_id),
            fmt(window.start),
            fmt(window.end),
            self.inner.opts.page_size,
            Self::marker_expand(),
        );
        self.list_pages(mailbox, calendar_id, url).await
    }

    /// Every edusync event of the calendar, whatever its date (for cleardown),
    /// found with the marker `$filter`.
    #[tracing::instrument(skip_all, fields(mailbox = %mailbox))]
    pub async fn list_marked_all(
        &self,
        mailbox: &str,
        calendar_id: &str,
    ) -> Result<Vec<RemoteEvent>, GraphError> {
        let filter = query_value(&format!(
            "singleValueExtendedProperties/Any(ep: ep/id eq {})",
            odata_string(MARKER_PROPERTY_ID)
        ));
        let url = format!(
            "{}/calendars/{}/events?$filter={filter}&$top={}&$select=id,subject,start,end,changeKey&$expand={}",
            self.user_url(mailbox),
            path_segment(calendar_id),
            self.inner.opts.page_size,
            Self::marker_expand(),
        );
        self.list_pages(mailbox, calendar_id, url).await
    }
}

type Slot = Option<Result<GraphApplied, GraphError>>;

/// Schedules op `i` for another round, or gives it `e` when out of attempts.
fn retry_or_fail(
    results: &mut [Slot],
    attempts: &[u32],
    max: u32,
    i: usize,
    e: GraphError,
    again: &mut Vec<usize>,
) {
    if attempts[i] >= max {
        results[i] = Some(Err(e));
    } else {
        again.push(i);
    }
}

enum Interpreted {
    Done(Result<GraphApplied, GraphError>),
    MailboxDead(GraphError),
    Retry(GraphError),
    Reauth(GraphError),
}

/// The URLs of a mailbox's inner requests, percent-encoded once per call.
struct InnerUrls {
    user: String,
    events: String,
}

impl InnerUrls {
    fn new(mailbox: &str, calendar_id: &str) -> Self {
        let user = format!("/users/{}", path_segment(mailbox));
        let events = format!("{user}/calendars/{}/events", path_segment(calendar_id));
        Self { user, events }
    }

    /// Op `i` as a request of a batch, borrowing its content.
    fn request<'a>(&self, i: usize, op: &'a GraphOp) -> BatchRequest<'a> {
        let id = Fmt(i);
        match op {
            GraphOp::Create {
                key,
                generation,
                event,
            } => BatchRequest {
                id,
                method: "POST",
                url: self.events.clone(),
                headers: Some(JsonContent),
                body: Some(EventBody::new(
                    key,
                    event,
                    Some(mapping::transaction_id(key, *generation)),
                )),
            },
            GraphOp::Update {
                key,
                remote_id,
                event,
            } => BatchRequest {
                id,
                method: "PATCH",
                url: format!("{}/events/{}", self.user, path_segment(remote_id)),
                headers: Some(JsonContent),
                body: Some(EventBody::new(key, event, None)),
            },
            GraphOp::Delete { remote_id, .. } => BatchRequest {
                id,
                method: "DELETE",
                url: format!("{}/events/{}", self.user, path_segment(remote_id)),
                headers: None,
                body: None,
            },
        }
    }
}
