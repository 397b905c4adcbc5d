//! The service account's key file, and access tokens per person from the
//! JWT grant (RFC 7523), cached per subject and refreshed before expiry
//! ([`crate::token`]). The cache is one per process for each token
//! endpoint and key ([`TokenCache::shared`]): `serve` builds its targets
//! anew every cycle, and a token lives an hour, so without it every
//! cycle would ask the token endpoint once more for every person.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::{GoogleError, SCOPE};
use crate::jwt::RsaSigner;
use crate::token::{read_answer, NoToken, TokenSlot};

/// What edusync uses of a service account's JSON key file.
#[derive(Debug)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key_id: Option<String>,
    /// The key file's `token_uri` (the config's `token_url` is what is used).
    pub token_uri: Option<String>,
    signer: RsaSigner,
    /// SHA-256 of the private key's PEM: which key this is, with or
    /// without a `private_key_id`.
    digest: [u8; 32],
}

impl ServiceAccountKey {
    /// Parses a key file's text; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| {
            format!("{origin} is not JSON ({e}); it must be a service account key file (Google Cloud console → IAM & Admin → Service accounts → Keys → Add key → JSON)")
        })?;
        if let Some(t) = v.get("type").and_then(Value::as_str) {
            if t != "service_account" {
                return Err(format!(
                    "{origin} is a `{t}` credential, not a service account key; domain-wide delegation needs a service account's JSON key"
                ));
            }
        }
        let field = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_string);
        let client_email = field("client_email").ok_or_else(|| {
            format!("{origin} has no `client_email`; is it a service account's JSON key file?")
        })?;
        let pem = field("private_key").ok_or_else(|| {
            format!("{origin} has no `private_key`; download a new JSON key for {client_email}")
        })?;
        let signer = RsaSigner::from_pem(&pem)
            .map_err(|e| format!("{origin}: the `private_key` cannot be used: {e}"))?;
        let mut digest = [0; 32];
        digest
            .copy_from_slice(ring::digest::digest(&ring::digest::SHA256, pem.as_bytes()).as_ref());
        Ok(Self {
            client_email,
            private_key_id: field("private_key_id"),
            token_uri: field("token_uri"),
            signer,
            digest,
        })
    }

    /// Reads the key file at `path`; `env_var` is the variable that named it.
    pub fn from_file(path: &Path, env_var: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the Google service account key file {} (named by ${env_var}): {e}; set ${env_var} to the path of the JSON key",
                path.display()
            )
        })?;
        Self::from_json(
            &text,
            &format!(
                "the Google service account key file {} (named by ${env_var})",
                path.display()
            ),
        )
    }

    /// The signed JWT grant for `subject`, valid for an hour from `now` (seconds since the epoch).
    pub fn assertion(&self, subject: &str, audience: &str, now: u64) -> String {
        let mut header = json!({});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.client_email,
            "sub": subject,
            "scope": SCOPE,
            "aud": audience,
            "iat": now,
            "exp": now + 3600,
        });
        self.signer.sign(&header, &claims)
    }
}

/// Which token cache: the token endpoint, the service account and its key.
type CacheKey = (String, String, [u8; 32]);

/// The token caches of this process (see the module doc).
static SHARED: LazyLock<Mutex<HashMap<CacheKey, Arc<TokenCache>>>> =
    LazyLock::new(Default::default);

/// Access tokens per subject; one fetch at a time per subject.
pub(crate) struct TokenCache {
    url: String,
    key: Arc<ServiceAccountKey>,
    by_subject: Mutex<HashMap<String, Arc<TokenSlot<String>>>>,
}

impl TokenCache {
    fn new(url: &str, key: Arc<ServiceAccountKey>) -> Self {
        Self {
            url: url.to_string(),
            key,
            by_subject: Mutex::new(HashMap::new()),
        }
    }

    /// The process's cache for tokens of `key` from `url`, made on first use.
    pub fn shared(url: &str, key: &Arc<ServiceAccountKey>) -> Arc<Self> {
        let id = (url.to_string(), key.client_email.clone(), key.digest);
        crate::lock(&SHARED)
            .entry(id)
            .or_insert_with(|| Arc::new(Self::new(url, key.clone())))
            .clone()
    }

    fn slot(&self, subject: &str) -> Arc<TokenSlot<String>> {
        crate::lock(&self.by_subject)
            .entry(subject.to_lowercase())
            .or_default()
            .clone()
    }

    /// A token for `subject` valid for a while yet.
    pub async fn get(&self, http: &reqwest::Client, subject: &str) -> Result<String, GoogleError> {
        self.slot(subject).get(|| self.fetch(http, subject)).await
    }

    /// Forgets `subject`'s token (after a 401).
    pub async fn invalidate(&self, subject: &str) {
        self.slot(subject).invalidate().await;
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        subject: &str,
    ) -> Result<(String, Duration), GoogleError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let assertion = self.key.assertion(subject, &self.url, now);
        let auth_err = |message: String, retryable: bool| GoogleError::Auth {
            url: self.url.clone(),
            user: subject.to_string(),
            message,
            retryable,
        };
        let resp = http
            .post(&self.url)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| auth_err(format!("cannot reach the token endpoint: {e}"), true))?;
        match read_answer(resp).await {
            Ok(token) => Ok(token),
            Err(NoToken::Malformed(m)) => Err(auth_err(m, false)),
            Err(NoToken::Refused(r)) => {
                let (err, desc) = (r.error.as_str(), r.description.as_str());
                let hint = match err {
                    "unauthorized_client" => format!(
                        " — domain-wide delegation is not granted: in the Google Admin console, Security → Access and data control → API controls → Manage Domain Wide Delegation, add the service account's client id with the scope {SCOPE}"
                    ),
                    "invalid_grant" if desc.to_ascii_lowercase().contains("email") || desc.to_ascii_lowercase().contains("user") => {
                        " — this person has no Google Workspace account in the domain (check the email in the source)".to_string()
                    }
                    "invalid_grant" => " — the key may have been deleted or the machine's clock is off".to_string(),
                    _ => String::new(),
                };
                Err(auth_err(
                    format!("HTTP {} {err}: {desc}{hint}", r.status),
                    r.retryable,
                ))
            }
        }
    }
}
