//! MariaDB and MySQL: the synchronous `mysql` crate (no runtime needed),
//! with `sslmode` mapped onto its TLS options.

use std::time::Duration;

pub use mysql::{Conn, Error};
use mysql::{Opts, OptsBuilder, SslOpts};

use crate::{take_sslmode, DbError, SslMode};

fn server_of(o: &Opts) -> String {
    format!(
        "MariaDB/MySQL at {}:{}/{}",
        o.get_ip_or_hostname(),
        o.get_tcp_port(),
        o.get_db_name().unwrap_or("")
    )
}

fn opts(url: &str) -> Result<(Opts, Option<SslMode>), DbError> {
    let url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_string(),
    };
    let (url, mode) = take_sslmode(&url)?;
    let o = Opts::from_url(&url)
        .map_err(|e| DbError::Url(format!("the MySQL/MariaDB URL cannot be read: {e}")))?;
    Ok((o, mode))
}

/// A connection's description for messages: `MariaDB/MySQL at host:port/db`.
pub fn describe(url: &str) -> String {
    match opts(url) {
        Ok((o, _)) => server_of(&o),
        Err(_) => "MariaDB/MySQL".to_string(),
    }
}

/// Connects to the server named by `url`
/// (`mysql://user[:password]@host[:port]/db[?sslmode=…]`, `mariadb://` too);
/// `password`, when given, replaces the URL's.
pub fn connect(url: &str, password: Option<&str>) -> Result<Conn, DbError> {
    let (o, mode) = opts(url)?;
    let server = server_of(&o);
    let user = o.get_user().unwrap_or("").to_string();
    let database = o.get_db_name().unwrap_or("").to_string();
    let mut b = OptsBuilder::from_opts(o)
        .prefer_socket(false)
        .tcp_connect_timeout(Some(Duration::from_secs(10)));
    if let Some(p) = password {
        b = b.pass(Some(p));
    }
    b = match mode {
        None | Some(SslMode::Disable) | Some(SslMode::Prefer) => b,
        Some(SslMode::Require) => b.ssl_opts(Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        )),
        Some(SslMode::VerifyFull) => b.ssl_opts(Some(SslOpts::default())),
    };
    Conn::new(b).map_err(|e| classify(&e, &server, &user, &database))
}

fn classify(e: &Error, server: &str, user: &str, database: &str) -> DbError {
    match e {
        Error::MySqlError(m) if m.code == 1045 || m.code == 1044 || m.code == 1698 => {
            DbError::Auth {
                server: server.to_string(),
                user: user.to_string(),
                detail: m.message.clone(),
            }
        }
        Error::MySqlError(m) if m.code == 1049 => DbError::NoDatabase {
            server: server.to_string(),
            database: database.to_string(),
        },
        Error::IoError(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            DbError::Refused {
                server: server.to_string(),
            }
        }
        other => {
            let text = other.to_string();
            if text.contains("Connection refused") || text.contains("os error 111") {
                DbError::Refused {
                    server: server.to_string(),
                }
            } else {
                DbError::Connect {
                    server: server.to_string(),
                    detail: text,
                }
            }
        }
    }
}

/// The server's error number, if the error is the server's.
pub fn code(e: &Error) -> Option<u16> {
    match e {
        Error::MySqlError(m) => Some(m.code),
        _ => None,
    }
}

/// Quotes an identifier; `a.b` becomes `` `a`.`b` `` (database-qualified prefixes).
pub fn quote_ident(name: &str) -> String {
    name.split('.')
        .map(|p| format!("`{}`", p.replace('`', "``")))
        .collect::<Vec<_>>()
        .join(".")
}
