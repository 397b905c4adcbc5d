//! PostgreSQL: `tokio-postgres` with its connection driven on a thread of
//! its own (see the crate docs), and `native-tls` for `sslmode`.

use std::time::Duration;

use postgres_native_tls::MakeTlsConnector;
pub use tokio_postgres::{Client, Error, Row};

use crate::{take_sslmode, tls_connector, DbError, SslMode};

/// `host:port/database` of a config, for messages (never the password).
fn server_of(c: &tokio_postgres::Config) -> String {
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "PostgreSQL at {host}:{port}/{}",
        c.get_dbname().unwrap_or(c.get_user().unwrap_or("postgres"))
    )
}

/// A connection's description for messages: `PostgreSQL at host:port/db`.
pub fn describe(url: &str) -> String {
    match take_sslmode(url)
        .ok()
        .and_then(|(u, _)| u.parse::<tokio_postgres::Config>().ok())
    {
        Some(c) => server_of(&c),
        None => "PostgreSQL".to_string(),
    }
}

/// Connects to the PostgreSQL server named by `url`
/// (`postgres://user[:password]@host[:port]/db[?sslmode=…]`); `password`,
/// when given, replaces the URL's.
pub fn connect(url: &str, password: Option<&str>, application: &str) -> Result<Client, DbError> {
    let (url, mode) = take_sslmode(url)?;
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| DbError::Url(format!("the PostgreSQL URL cannot be read: {e}")))?;
    if let Some(p) = password {
        config.password(p);
    }
    config.application_name(application);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    let mode = mode.unwrap_or(SslMode::Prefer);
    config.ssl_mode(match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
    });
    let server = server_of(&config);
    let user = config.get_user().unwrap_or("").to_string();
    let database = config.get_dbname().unwrap_or(&user).to_string();
    let tls = MakeTlsConnector::new(tls_connector(mode).map_err(|detail| DbError::Other {
        server: server.clone(),
        detail: format!("TLS cannot be set up: {detail}"),
    })?);
    let (tx, rx) = std::sync::mpsc::channel();
    let thread_server = server.clone();
    let (thread_user, thread_db) = (user.clone(), database.clone());
    std::thread::Builder::new()
        .name("edusync-pg".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(DbError::Other {
                        server: thread_server.clone(),
                        detail: e.to_string(),
                    }));
                    return;
                }
            };
            rt.block_on(async move {
                match config.connect(tls).await {
                    Ok((client, connection)) => {
                        let _ = tx.send(Ok(client));
                        // Runs until the client is dropped or the server goes away.
                        let _ = connection.await;
                    }
                    Err(e) => {
                        let _ =
                            tx.send(Err(classify(&e, &thread_server, &thread_user, &thread_db)));
                    }
                }
            });
        })
        .map_err(|e| DbError::Other {
            server: server.clone(),
            detail: format!("cannot start the connection thread: {e}"),
        })?;
    match rx.recv() {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(DbError::Other {
            server,
            detail: "the connection thread ended before connecting".into(),
        }),
    }
}

fn classify(e: &Error, server: &str, user: &str, database: &str) -> DbError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return match code {
            "28P01" | "28000" => DbError::Auth {
                server: server.to_string(),
                user: user.to_string(),
                detail: db.message().to_string(),
            },
            "3D000" => DbError::NoDatabase {
                server: server.to_string(),
                database: database.to_string(),
            },
            _ => DbError::Other {
                server: server.to_string(),
                detail: message(e),
            },
        };
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return DbError::Refused {
                    server: server.to_string(),
                };
            }
        }
        src = s.source();
    }
    DbError::Connect {
        server: server.to_string(),
        detail: message(e),
    }
}

/// An error's text with the server's message, SQLSTATE and hint when it has them.
pub fn message(e: &Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
            while let Some(x) = src {
                s.push_str(&format!(": {x}"));
                src = x.source();
            }
            s
        }
    }
}

/// The SQLSTATE of a server error, if it is one.
pub fn sqlstate(e: &Error) -> Option<&str> {
    e.as_db_error().map(|d| d.code().code())
}

/// Quotes an identifier; `a.b` becomes `"a"."b"` (schema-qualified prefixes).
pub fn quote_ident(name: &str) -> String {
    name.split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}
