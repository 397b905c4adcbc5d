//! OAuth access tokens as the API targets keep them: cached, refreshed a
//! while before they expire (a quarter of their life, at most five
//! minutes, so a request never leaves with a token about to lapse), and
//! fetched one at a time ([`TokenSlot`]: callers arriving while a fetch is
//! on wait for it instead of asking the token endpoint again). Graph keeps
//! one slot for the app, Google one per person. How a token is fetched
//! (client credentials, a JWT grant) stays with each target; reading the
//! token endpoint's answer (RFC 6749 §5.1 and §5.2) is shared here.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;

struct Cached<T> {
    value: T,
    refresh_at: Instant,
}

/// One cached token. `T` is what callers use (the token, or a ready header).
pub(crate) struct TokenSlot<T> {
    cached: tokio::sync::Mutex<Option<Cached<T>>>,
}

impl<T> Default for TokenSlot<T> {
    fn default() -> Self {
        Self {
            cached: tokio::sync::Mutex::new(None),
        }
    }
}

/// When a token valid for `lifetime` from `started` should be replaced.
fn refresh_at(started: Instant, lifetime: Duration) -> Instant {
    let margin = (lifetime / 4).min(Duration::from_secs(300));
    started + lifetime - margin
}

impl<T: Clone> TokenSlot<T> {
    /// The cached token while it is fresh; otherwise `fetch` (which answers
    /// the token and how long it is valid from when the fetch started),
    /// stored for the callers after. A failed fetch is not cached.
    pub async fn get<E, F, Fut>(&self, fetch: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, Duration), E>>,
    {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            if Instant::now() < c.refresh_at {
                return Ok(c.value.clone());
            }
        }
        let started = Instant::now();
        let (value, lifetime) = fetch().await?;
        *cached = Some(Cached {
            value: value.clone(),
            refresh_at: refresh_at(started, lifetime),
        });
        Ok(value)
    }

    /// Forgets the token (the service answered 401).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}

/// A token endpoint's refusal (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    /// `error` (`invalid_grant`, `unauthorized_client`, …).
    pub error: String,
    /// `error_description`, empty when there is none.
    pub description: String,
    /// 429 and 5xx: asking again later may work.
    pub retryable: bool,
}

/// Why a token endpoint's answer holds no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NoToken {
    Refused(Refusal),
    /// A 200 without an `access_token`.
    Malformed(String),
}

/// A token endpoint's answer: the access token and how long it is valid
/// (`expires_in`, an hour less a second when missing), or why not.
pub(crate) async fn read_answer(resp: reqwest::Response) -> Result<(String, Duration), NoToken> {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let field = |name: &str| body.get(name).and_then(Value::as_str);
    if status != 200 {
        return Err(NoToken::Refused(Refusal {
            status,
            error: field("error").unwrap_or("unknown_error").to_string(),
            description: field("error_description").unwrap_or("").to_string(),
            retryable: status == 429 || status >= 500,
        }));
    }
    let token = field("access_token")
        .ok_or_else(|| NoToken::Malformed("the answer has no access_token".into()))?;
    let lifetime = body
        .get("expires_in")
        .and_then(Value::as_u64)
        .unwrap_or(3599);
    Ok((token.to_string(), Duration::from_secs(lifetime)))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    async fn fetch_counted(
        n: &AtomicU32,
        lifetime: Duration,
    ) -> Result<(String, Duration), String> {
        let i = n.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok((format!("token-{i}"), lifetime))
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let slot = Arc::new(TokenSlot::<String>::default());
        let fetches = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (slot, fetches) = (slot.clone(), fetches.clone());
                tokio::spawn(async move {
                    slot.get(|| fetch_counted(&fetches, Duration::from_secs(3600)))
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), "token-0");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refreshed_a_quarter_of_its_life_before_expiry_and_after_a_401() {
        let slot = TokenSlot::<String>::default();
        let fetches = AtomicU32::new(0);
        let life = Duration::from_millis(400);
        let get = || slot.get(|| fetch_counted(&fetches, life));
        assert_eq!(get().await.unwrap(), "token-0");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(get().await.unwrap(), "token-0", "fresh for 3/4 of its life");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            get().await.unwrap(),
            "token-1",
            "replaced before it expires"
        );
        slot.invalidate().await;
        assert_eq!(get().await.unwrap(), "token-2");
        // A failure is not cached: the next caller asks again.
        slot.invalidate().await;
        assert!(slot
            .get(|| async { Err::<(String, Duration), _>("down".to_string()) })
            .await
            .is_err());
        assert_eq!(get().await.unwrap(), "token-3");
    }

    #[test]
    fn the_margin_is_a_quarter_at_most_five_minutes() {
        let t = Instant::now();
        assert_eq!(
            refresh_at(t, Duration::from_secs(3600)),
            t + Duration::from_secs(3300)
        );
        assert_eq!(
            refresh_at(t, Duration::from_secs(400)),
            t + Duration::from_secs(300)
        );
    }
}
