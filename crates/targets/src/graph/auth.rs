//! Client-credentials tokens, cached and refreshed before they expire
//! ([`crate::token`]).

use std::time::Duration;

use reqwest::header::HeaderValue;
use serde_json::json;

use super::{GraphCredential, GraphError, GraphSettings};
use crate::jwt::{b64url, RsaSigner};
use crate::token::{read_answer, NoToken, TokenSlot};

/// One token for the app, shared by all mailboxes. Refreshes are single-flight.
pub(crate) struct TokenCache {
    url: String,
    scope: String,
    client_id: String,
    credential: GraphCredential,
    /// base64url SHA-256 of the certificate's DER (certificate credentials).
    thumbprint: Option<String>,
    /// `Bearer …`, ready to send.
    cached: TokenSlot<HeaderValue>,
}

/// How long a client assertion is valid (Microsoft accepts up to 10 minutes).
const ASSERTION_LIFETIME_SECS: i64 = 600;

/// `client_assertion_type` of a JWT client assertion (RFC 7523).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

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
            thumbprint: match &s.credential {
                GraphCredential::Certificate(signer) => signer
                    .certificate()
                    .map(|der| b64url(ring::digest::digest(&ring::digest::SHA256, der).as_ref())),
                GraphCredential::Secret(_) => None,
            },
            credential: s.credential.clone(),
            cached: TokenSlot::default(),
        }
    }

    /// The `Authorization` header of a token valid for a while yet.
    pub async fn get(&self, http: &reqwest::Client) -> Result<HeaderValue, GraphError> {
        self.cached.get(|| self.fetch(http)).await
    }

    /// Forgets the token (after a 401).
    pub async fn invalidate(&self) {
        self.cached.invalidate().await;
    }

    /// A client assertion (RFC 7523) for the token endpoint, signed with the
    /// certificate's private key.
    fn assertion(&self, signer: &RsaSigner) -> String {
        let now = jiff::Timestamp::now().as_second();
        let jti: [u8; 16] = rand::random();
        let jti: String = jti.iter().map(|b| format!("{b:02x}")).collect();
        let header = json!({ "x5t#S256": self.thumbprint });
        let claims = json!({
            "aud": self.url,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": jti,
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        signer.sign(&header, &claims)
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<(HeaderValue, Duration), GraphError> {
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", self.client_id.clone()),
            ("scope", self.scope.clone()),
        ];
        match &self.credential {
            GraphCredential::Secret(secret) => form.push(("client_secret", secret.clone())),
            GraphCredential::Certificate(signer) => {
                form.push(("client_assertion_type", JWT_BEARER.to_string()));
                form.push(("client_assertion", self.assertion(signer)));
            }
        }
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
        let auth_err = |message: String, retryable: bool| GraphError::Auth {
            url: self.url.clone(),
            message,
            retryable,
        };
        let (token, expires_in) = match read_answer(resp).await {
            Ok(token) => token,
            Err(NoToken::Malformed(m)) => return Err(auth_err(m, false)),
            Err(NoToken::Refused(r)) => {
                let desc = r.description.lines().next().unwrap_or("");
                let hint = match (&self.credential, r.retryable) {
                    (_, true) => "",
                    (GraphCredential::Secret(_), false) => {
                        " — check tenant_id, client_id and the secret in the variable named by client_secret_env"
                    }
                    (GraphCredential::Certificate(_), false) => {
                        " — check tenant_id, client_id and that the certificate in the file named by client_certificate_env is one uploaded to the app registration (Certificates & secrets)"
                    }
                };
                return Err(auth_err(
                    format!("HTTP {} {}: {desc}{hint}", r.status, r.error),
                    r.retryable,
                ));
            }
        };
        let mut header = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            auth_err(
                "the access_token holds characters not allowed in an HTTP header".into(),
                false,
            )
        })?;
        header.set_sensitive(true);
        tracing::debug!(expires_in = expires_in.as_secs(), "graph: token acquired");
        Ok((header, expires_in))
    }
}
