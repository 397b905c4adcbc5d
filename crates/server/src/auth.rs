//! Console sign-in: local accounts with argon2id passwords, server-side
//! sessions, CSRF tokens, sign-in rate limiting, and the role check.
//!
//! - A session cookie (`edusync_session`) holds 256 random bits; the store
//!   keeps only its BLAKE3 hash, with the account and the session's CSRF token.
//!   The cookie is `HttpOnly; SameSite=Strict`, and `Secure` unless the
//!   service listens on a loopback address over plain HTTP.
//! - Every state-changing form carries the session's CSRF token, compared in
//!   constant time; the sign-in form uses a double-submit cookie instead.
//! - Failed sign-ins are counted per account and per client address over a
//!   sliding quarter hour; past the limit the form answers 429.
//! - `EDUSYNC_CONSOLE_TOKEN`, when set, is still accepted as a bearer token
//!   for read-only (viewer) GET requests: scripts, Prometheus and the site
//!   collection tests use it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::{header, HeaderMap};
use edusync_store::{AuditEntry, SessionRecord, Store};

/// Environment variable holding an optional read-only bearer token for the console and `/metrics`.
pub const CONSOLE_TOKEN_ENV: &str = "EDUSYNC_CONSOLE_TOKEN";
pub const SESSION_COOKIE: &str = "edusync_session";
pub const LOGIN_COOKIE: &str = "edusync_login";
/// How long a session lasts.
pub const SESSION_SECS: i64 = 12 * 3600;
/// Failed sign-ins allowed per account in [`LIMIT_WINDOW_SECS`].
pub const MAX_FAILS_PER_USER: u32 = 5;
/// Failed sign-ins allowed per client address in [`LIMIT_WINDOW_SECS`].
pub const MAX_FAILS_PER_ADDR: u32 = 20;
pub const LIMIT_WINDOW_SECS: i64 = 15 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// Who is asking, once signed in.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    /// The session's CSRF token; `None` for the read-only bearer token.
    pub csrf: Option<String>,
    pub session_hash: Option<String>,
}

impl Principal {
    pub fn can(&self, role: Role) -> bool {
        self.role >= role
    }
}

/// `n` random bytes as lowercase hex, from the operating system.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::getrandom(&mut b).expect("the operating system's random source failed");
    let mut s = String::with_capacity(n * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// The stored form of a session id or feed token.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// Equal strings, compared in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    blake3::hash(a.as_bytes()) == blake3::hash(b.as_bytes())
}

/// An argon2id PHC string for `password` (the crate's default cost: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub fn verify_password(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the account does not exist, so a wrong
/// name costs as long as a wrong password.
fn decoy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hash_password("decoy password").unwrap_or_default())
}

/// Sign-in and session state shared by the console.
pub struct Auth {
    pub store: Arc<dyn Store>,
    /// The service listens on loopback over plain HTTP (cookies may not be `Secure`).
    pub loopback_http: bool,
    fails: Mutex<HashMap<String, Vec<i64>>>,
}

pub enum LoginError {
    Invalid,
    Limited { retry_after_secs: i64 },
    Store(String),
}

impl Auth {
    pub fn new(store: Arc<dyn Store>, listen: &str) -> Auth {
        let loopback_http = listen
            .parse::<SocketAddr>()
            .map(|a| a.ip().is_loopback())
            .unwrap_or_else(|_| listen.starts_with("localhost:"));
        Auth {
            store,
            loopback_http,
            fails: Mutex::new(HashMap::new()),
        }
    }

    /// Whether cookies for this request must be `Secure`.
    pub fn secure_cookies(&self, headers: &HeaderMap) -> bool {
        let https = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"));
        https || !self.loopback_http
    }

    pub fn cookie(&self, headers: &HeaderMap, name: &str, value: &str, max_age: i64) -> String {
        format!(
            "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
            if self.secure_cookies(headers) {
                "; Secure"
            } else {
                ""
            }
        )
    }

    fn limited(&self, keys: &[(String, u32)], now: i64) -> Option<i64> {
        let mut f = self.fails.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = None;
        for (k, max) in keys {
            if let Some(v) = f.get_mut(k) {
                v.retain(|t| now - t < LIMIT_WINDOW_SECS);
                if v.len() as u32 >= *max {
                    let w = LIMIT_WINDOW_SECS - (now - v[0]);
                    wait = Some(wait.map_or(w, |x: i64| x.max(w)));
                }
            }
        }
        wait
    }

    fn note_failure(&self, keys: &[(String, u32)], now: i64) {
        let mut f = self.fails.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() > 100_000 {
            f.retain(|_, v| v.last().is_some_and(|t| now - t < LIMIT_WINDOW_SECS));
        }
        for (k, _) in keys {
            f.entry(k.clone()).or_default().push(now);
        }
    }

    /// Checks a name and password (argon2 on a blocking thread) and, when
    /// they match, starts a session. Returns the session cookie value and record.
    pub async fn login(
        self: &Arc<Self>,
        user: &str,
        password: &str,
        addr: Option<SocketAddr>,
    ) -> Result<(String, SessionRecord), LoginError> {
        let now = edusync_store::now();
        let keys = vec![
            (format!("user:{user}"), MAX_FAILS_PER_USER),
            (
                format!(
                    "addr:{}",
                    addr.map(|a| a.ip().to_string()).unwrap_or_default()
                ),
                MAX_FAILS_PER_ADDR,
            ),
        ];
        if let Some(w) = self.limited(&keys, now) {
            return Err(LoginError::Limited {
                retry_after_secs: w.max(1),
            });
        }
        let me = self.clone();
        let (u, p) = (user.to_string(), password.to_string());
        let ok = tokio::task::spawn_blocking(move || -> Result<bool, String> {
            let account = me.store.user(&u).map_err(|e| e.to_string())?;
            Ok(match account {
                Some(a) => verify_password(&a.password_hash, &p) && Role::parse(&a.role).is_some(),
                None => {
                    let _ = verify_password(decoy_hash(), &p);
                    false
                }
            })
        })
        .await
        .map_err(|e| LoginError::Store(e.to_string()))?
        .map_err(LoginError::Store)?;
        if !ok {
            self.note_failure(&keys, now);
            return Err(LoginError::Invalid);
        }
        self.fails
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&keys[0].0);
        let id = random_hex(32);
        let record = SessionRecord {
            user: user.to_string(),
            csrf: random_hex(32),
            created_at: now,
            expires_at: now + SESSION_SECS,
        };
        self.store
            .put_session(&token_hash(&id), &record)
            .map_err(|e| LoginError::Store(e.to_string()))?;
        let _ = self.store.purge_sessions(now);
        Ok((id, record))
    }

    /// The signed-in principal for a request, from its session cookie or the bearer token.
    pub fn principal(&self, headers: &HeaderMap, read_only_request: bool) -> Option<Principal> {
        if let Some(id) = cookie_value(headers, SESSION_COOKIE) {
            let h = token_hash(id);
            if let Ok(Some(s)) = self.store.session(&h, edusync_store::now()) {
                if let Ok(Some(u)) = self.store.user(&s.user) {
                    if let Some(role) = Role::parse(&u.role) {
                        return Some(Principal {
                            user: u.name,
                            role,
                            csrf: Some(s.csrf),
                            session_hash: Some(h),
                        });
                    }
                }
            }
        }
        if read_only_request {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            if let (Some(g), Ok(expected)) = (given, std::env::var(CONSOLE_TOKEN_ENV)) {
                if !expected.is_empty() && same(g, &expected) {
                    return Some(Principal {
                        user: "bearer-token".into(),
                        role: Role::Viewer,
                        csrf: None,
                        session_hash: None,
                    });
                }
            }
        }
        None
    }

    /// Appends to the audit log; a failure to record is logged, not fatal.
    pub fn audit(&self, user: &str, action: &str, target: &str, detail: &str) {
        tracing::info!(user, action, target, detail, "console action");
        if let Err(e) = self.store.record_audit(&AuditEntry {
            at: edusync_store::now(),
            user: user.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            detail: detail.to_string(),
        }) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horsf"));
        assert!(!verify_password("garbage", "x"));
        assert_ne!(h, hash_password("correct horse").unwrap(), "salted");
    }

    #[test]
    fn tokens_are_long_and_random() {
        let a = random_hex(32);
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_hex(32));
        assert_eq!(token_hash("x").len(), 64);
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; edusync_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie_value(&h, "c"), None);
    }
}
