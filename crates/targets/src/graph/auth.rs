//! Client-credentials tokens, cached and refreshed before they expire.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use super::{GraphError, GraphSettings};

struct Cached {
    token: String,
    refresh_at: Instant,
    expires_at: Instant,
}

/// One token for the app, shared by all mailboxes. Refreshes are single-flight.
pub(crate) struct TokenCache {
    url: String,
    scope: String,
    client_id: String,
    client_secret: String,
    cached: Mutex<Option<Cached>>,
}

impl TokenCache {
    pub fn new(s: &GraphSettings) -> Self {
        Self {
            url: format!(
                "{}/{}/oauth2/v2.0/token",
                s.authority_url.trim_end_matches('/'),
                s.tenant_id
            ),
            scope: format!("{}/.default", s.graph_url.trim_end_matches('/')),
            client_id: s.client_id.clone(),
            client_secret: s.client_secret.clone(),
            cached: Mutex::new(None),
        }
    }

    /// A token valid for a while yet.
    pub async fn get(&self, http: &reqwest::Client) -> Result<String, GraphError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let now = Instant::now();
            if now < c.refresh_at && now < c.expires_at {
                return Ok(c.token.clone());
            }
        }
        let fresh = self.fetch(http).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Forgets the token (after a 401).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<Cached, GraphError> {
        let started = Instant::now();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
            ("scope", self.scope.as_str()),
        ];
        let resp = http
            .post(&self.url)
            .form(&form)
            .send()
            .await
            .map_err(|e| GraphError::Auth {
                url: self.url.clone(),
                message: format!("cannot reach the token endpoint: {e}"),
                retryable: true,
            })?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status != 200 {
            let err = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown_error");
            let desc = body
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("");
            let retryable = status == 429 || status >= 500;
            let hint = if retryable {
                ""
            } else {
                " — check tenant_id, client_id and the secret in the variable named by client_secret_env"
            };
            return Err(GraphError::Auth {
                url: self.url.clone(),
                message: format!("HTTP {status} {err}: {desc}{hint}"),
                retryable,
            });
        }
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| GraphError::Auth {
                url: self.url.clone(),
                message: "the answer has no access_token".into(),
                retryable: false,
            })?
            .to_string();
        let expires_in = Duration::from_secs(
            body.get("expires_in")
                .and_then(Value::as_u64)
                .unwrap_or(3599),
        );
        let margin = (expires_in / 4).min(Duration::from_secs(300));
        tracing::debug!(expires_in = expires_in.as_secs(), "graph: token acquired");
        Ok(Cached {
            token,
            refresh_at: started + expires_in - margin,
            expires_at: started + expires_in,
        })
    }
}
