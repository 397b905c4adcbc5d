//! Connections to the real databases edusync reads from and keeps state in:
//! PostgreSQL ([`pg`]) and MariaDB/MySQL ([`my`]).
//!
//! Both are used through blocking calls, like `rusqlite`, because the
//! source readers and the `Store` trait are synchronous. A PostgreSQL
//! connection is driven by a tokio current-thread runtime on a thread of
//! its own; callers wait on query futures with [`block_on`], which needs
//! no runtime, so the same code is safe on a plain thread, inside a
//! current-thread runtime and on a multi-thread runtime's worker.
//! MariaDB uses the synchronous `mysql` crate, which needs no runtime.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

pub mod my;
pub mod pg;
pub mod testing;

/// A failure to reach or log in to a database server. Errors that belong to
/// one view or table (missing, permission) are the callers' to word.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Url(String),
    #[error("cannot connect to {server}: connection refused; is the server running and listening there?")]
    Refused { server: String },
    #[error("cannot connect to {server}: {detail}")]
    Connect { server: String, detail: String },
    #[error("{server}: login as user {user:?} was refused ({detail}); check the user in the URL and the password (password_env)")]
    Auth {
        server: String,
        user: String,
        detail: String,
    },
    #[error("{server}: database {database:?} does not exist; create it or fix the database name in the URL")]
    NoDatabase { server: String, database: String },
    #[error("{server}: {detail}")]
    Other { server: String, detail: String },
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `fut` to completion on the calling thread by parking it between
/// polls. Only for futures that need no runtime of their own (a
/// tokio-postgres client's futures talk to the connection thread over
/// channels).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// `sslmode` values understood in both kinds of URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// TLS when the server offers it (PostgreSQL's default), without verifying the certificate.
    Prefer,
    /// TLS or fail; the certificate is not verified (libpq's `require`).
    Require,
    /// TLS with the certificate and host name verified against the system's roots.
    VerifyFull,
}

impl SslMode {
    pub fn parse(v: &str) -> Result<SslMode, DbError> {
        match v {
            "disable" => Ok(SslMode::Disable),
            "allow" | "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" | "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(DbError::Url(format!(
                "sslmode={other} is not understood; use disable, prefer, require or verify-full"
            ))),
        }
    }
}

/// Splits `sslmode=…` off a URL's query string: (URL without it, mode).
pub fn take_sslmode(url: &str) -> Result<(String, Option<SslMode>), DbError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut mode = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => mode = Some(SslMode::parse(v)?),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, mode))
}

fn tls_connector(mode: SslMode) -> Result<native_tls::TlsConnector, String> {
    let mut b = native_tls::TlsConnector::builder();
    if mode != SslMode::VerifyFull {
        // libpq's `prefer` and `require` encrypt without checking who answers.
        b.danger_accept_invalid_certs(true);
        b.danger_accept_invalid_hostnames(true);
    }
    b.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_split_off() {
        let (u, m) = take_sslmode("mysql://a@h/db?sslmode=require&x=1").unwrap();
        assert_eq!(
            (u.as_str(), m),
            ("mysql://a@h/db?x=1", Some(SslMode::Require))
        );
        let (u, m) = take_sslmode("mysql://a@h/db").unwrap();
        assert_eq!((u.as_str(), m), ("mysql://a@h/db", None));
        assert!(take_sslmode("mysql://h/db?sslmode=maybe")
            .unwrap_err()
            .to_string()
            .contains("sslmode=maybe"));
    }

    #[test]
    fn block_on_waits_for_a_wake_from_another_thread() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(7).unwrap();
        });
        assert_eq!(block_on(rx).unwrap(), 7);
    }
}
