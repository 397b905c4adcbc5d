//! The HTTP side of the CalDAV target: one `reqwest::Client` (so connections
//! are kept alive and reused), a limit on requests in flight per server, and
//! retries with jittered backoff for what can succeed later (connection
//! errors, timeouts, 429 and 5xx, honouring `Retry-After`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderValue, CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH, RETRY_AFTER,
};
use reqwest::{Method, StatusCode};
use tokio::sync::Semaphore;

use super::mapping;

/// A password that never shows in `Debug` output or logs.
#[derive(Clone)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A failed request: whether trying again later can help, and what to tell a person.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DavError {
    pub retryable: bool,
    pub status: Option<u16>,
    pub message: String,
}

impl DavError {
    pub fn permanent(message: impl Into<String>) -> DavError {
        DavError {
            retryable: false,
            status: None,
            message: message.into(),
        }
    }
}

/// An answer, whatever its status.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub body: String,
}

/// Preconditions of a write.
#[derive(Debug, Clone, Copy)]
pub enum Precondition<'a> {
    None,
    /// `If-None-Match: *`: only if nothing is there.
    Absent,
    /// `If-Match: <etag>`: only if it is still this version.
    Matches(&'a str),
}

#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub username: Option<String>,
    pub password: Option<Password>,
    /// Requests in flight per server.
    pub per_server: usize,
    /// Attempts per request for retryable failures (1 = no retry).
    pub attempts: u32,
    pub backoff: Duration,
    /// Longest `Retry-After` honoured inside one request; longer ones fail
    /// the op as retryable and the next cycle tries again.
    pub max_retry_after: Duration,
    pub timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            username: None,
            password: None,
            per_server: 8,
            attempts: 4,
            backoff: Duration::from_millis(250),
            max_retry_after: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug)]
pub struct DavClient {
    http: reqwest::Client,
    settings: ClientSettings,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
}

pub fn method(name: &'static str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap_or(Method::GET)
}

impl DavClient {
    pub fn new(settings: ClientSettings) -> Result<DavClient, DavError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(settings.timeout)
            .pool_max_idle_per_host(settings.per_server.max(1))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("edusync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DavError::permanent(format!("cannot set up the HTTP client: {e}")))?;
        Ok(DavClient {
            http,
            settings,
            limits: Mutex::new(HashMap::new()),
        })
    }

    pub fn username(&self) -> &str {
        self.settings.username.as_deref().unwrap_or("(no username)")
    }

    fn limit(&self, url: &str) -> Arc<Semaphore> {
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        limits
            .entry(mapping::authority(url))
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_server.max(1))))
            .clone()
    }

    /// Sends one request, retrying what can succeed later. Any HTTP status
    /// other than 429/5xx is returned for the caller to interpret.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&'static str, String)],
        pre: Precondition<'_>,
        body: Option<(&'static str, String)>,
    ) -> Result<Reply, DavError> {
        let limit = self.limit(url);
        let what = format!("{method} {url}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.http.request(method.clone(), url);
            if let Some(user) = &self.settings.username {
                req = req.basic_auth(user, self.settings.password.as_ref().map(|p| p.0.as_str()));
            }
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                if let Ok(v) = HeaderValue::from_str(v) {
                    h.insert(*k, v);
                }
            }
            match pre {
                Precondition::None => {}
                Precondition::Absent => {
                    h.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
                }
                Precondition::Matches(etag) => {
                    if let Ok(v) = HeaderValue::from_str(etag) {
                        h.insert(IF_MATCH, v);
                    }
                }
            }
            if let Some((ctype, b)) = &body {
                h.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
                req = req.body(b.clone());
            }
            req = req.headers(h);
            let result = {
                let _permit = limit
                    .acquire()
                    .await
                    .map_err(|_| DavError::permanent("internal: limit closed"))?;
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        let etag = resp
                            .headers()
                            .get(ETAG)
                            .and_then(|v| v.to_str().ok())
                            .map(|s| s.trim().to_string());
                        let retry_after = resp
                            .headers()
                            .get(RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|s| s.trim().parse::<u64>().ok())
                            .map(Duration::from_secs);
                        match resp.text().await {
                            Ok(body) => Ok((Reply { status, etag, body }, retry_after)),
                            Err(e) => Err(format!("{what}: the answer was cut off ({e})")),
                        }
                    }
                    Err(e) => Err(format!("{what}: {}", describe(&e))),
                }
            };
            let (failure, wait) = match result {
                Ok((reply, retry_after)) => {
                    let s = reply.status.as_u16();
                    if s == 429 || s >= 500 {
                        let msg = format!(
                            "{what}: the server answered {} {}",
                            reply.status,
                            excerpt(&reply.body)
                        );
                        match retry_after {
                            Some(d) if d > self.settings.max_retry_after => {
                                return Err(DavError {
                                    retryable: true,
                                    status: Some(s),
                                    message: format!("{msg}; it asked to wait {}s, so this is left for the next cycle", d.as_secs()),
                                })
                            }
                            _ => (DavError { retryable: true, status: Some(s), message: msg }, retry_after),
                        }
                    } else {
                        return Ok(reply);
                    }
                }
                Err(message) => (
                    DavError {
                        retryable: true,
                        status: None,
                        message,
                    },
                    None,
                ),
            };
            if attempt >= self.settings.attempts.max(1) {
                return Err(failure);
            }
            let pause =
                wait.unwrap_or_else(|| crate::delivery::backoff(self.settings.backoff, attempt));
            tracing::debug!(url, attempt, error = %failure.message, "caldav request will be retried");
            tokio::time::sleep(pause).await;
        }
    }

    pub async fn put(
        &self,
        url: &str,
        body: String,
        pre: Precondition<'_>,
    ) -> Result<Reply, DavError> {
        self.send(
            Method::PUT,
            url,
            &[],
            pre,
            Some(("text/calendar; charset=utf-8", body)),
        )
        .await
    }

    pub async fn get(&self, url: &str) -> Result<Reply, DavError> {
        self.send(Method::GET, url, &[], Precondition::None, None)
            .await
    }

    pub async fn delete(&self, url: &str, pre: Precondition<'_>) -> Result<Reply, DavError> {
        self.send(Method::DELETE, url, &[], pre, None).await
    }

    pub async fn xml(
        &self,
        method_name: &'static str,
        url: &str,
        depth: Option<&'static str>,
        body: String,
    ) -> Result<Reply, DavError> {
        let headers: Vec<(&'static str, String)> = depth
            .map(|d| ("depth", d.to_string()))
            .into_iter()
            .collect();
        self.send(
            method(method_name),
            url,
            &headers,
            Precondition::None,
            Some(("application/xml; charset=utf-8", body)),
        )
        .await
    }
}

/// A failed request in words a person can act on.
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The start of an error body, on one line.
pub fn excerpt(body: &str) -> String {
    let one: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.is_empty() {
        String::new()
    } else if one.chars().count() > 200 {
        format!("({}…)", one.chars().take(200).collect::<String>())
    } else {
        format!("({one})")
    }
}

/// A non-success answer as an error: 401/403 and other 4xx are permanent.
pub fn unexpected(what: &str, url: &str, reply: &Reply) -> DavError {
    let s = reply.status.as_u16();
    let hint = match s {
        401 => " — the server refused the username or password; check `username` and the variable named by `password_env`",
        403 => " — the service account may not do this here; grant it write access to people's calendars (see `edusync check`)",
        _ => "",
    };
    DavError {
        retryable: s == 408 || s == 429 || s >= 500,
        status: Some(s),
        message: format!(
            "{what} {url}: the server answered {} {}{hint}",
            reply.status,
            excerpt(&reply.body)
        ),
    }
}
