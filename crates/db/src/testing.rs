//! Throwaway databases on the local servers, for tests: each test creates
//! `edusync_test_<unique>` and drops it when the guard goes out of scope.
//!
//! The servers are found at `EDUSYNC_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and
//! `EDUSYNC_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/`). A
//! server that cannot be reached fails the test with how to start it:
//! tests against real databases are never skipped.

use std::sync::atomic::{AtomicU32, Ordering};

use mysql::prelude::Queryable;

use crate::{block_on, my, pg};

fn pg_admin_url() -> String {
    std::env::var("EDUSYNC_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".into())
}

fn my_admin_url() -> String {
    std::env::var("EDUSYNC_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/".into())
}

/// A name no other test (in this or another process) is using.
pub fn unique_name(kind: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "edusync_{kind}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000
    )
}

fn unreachable(what: &str, url: &str, e: &dyn std::fmt::Display) -> ! {
    panic!(
        "{what} is not reachable at {url} ({e}).\nThese tests need the real server: run ./scripts/test, which starts it, or start it by hand:\n  PostgreSQL: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n  MariaDB:    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"
    )
}

/// Replaces the database part of a URL (`scheme://auth@host:port/DB?query`).
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A fresh PostgreSQL database, dropped with the guard.
pub struct PgTestDb {
    pub name: String,
    pub url: String,
}

impl PgTestDb {
    pub fn create() -> PgTestDb {
        let admin = pg_admin_url();
        let client = pg::connect(&admin, None, "edusync tests")
            .unwrap_or_else(|e| unreachable("PostgreSQL", &admin, &e));
        let name = unique_name("test");
        block_on(client.batch_execute(&format!("CREATE DATABASE {name}")))
            .expect("CREATE DATABASE");
        PgTestDb {
            url: with_database(&admin, &name),
            name,
        }
    }

    /// Runs `sql` (several statements) in the database.
    pub fn execute(&self, sql: &str) {
        let c = self.client();
        if let Err(e) = block_on(c.batch_execute(sql)) {
            panic!("{}\nin:\n{sql}", pg::message(&e));
        }
    }

    pub fn client(&self) -> pg::Client {
        pg::connect(&self.url, None, "edusync tests").unwrap_or_else(|e| panic!("{e}"))
    }

    /// The URL as user `user` (with `password` if given).
    pub fn url_as(&self, user: &str, password: Option<&str>) -> String {
        let auth = match password {
            Some(p) => format!("{user}:{p}"),
            None => user.to_string(),
        };
        let rest = self
            .url
            .split_once('@')
            .map(|(_, r)| r)
            .unwrap_or("127.0.0.1:5432");
        format!("postgres://{auth}@{rest}")
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        if let Ok(c) = pg::connect(&pg_admin_url(), None, "edusync tests") {
            let _ = block_on(c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )));
        }
    }
}

/// A fresh MariaDB/MySQL database, dropped with the guard.
pub struct MyTestDb {
    pub name: String,
    pub url: String,
}

impl MyTestDb {
    pub fn create() -> MyTestDb {
        let admin = my_admin_url();
        let mut c =
            my::connect(&admin, None).unwrap_or_else(|e| unreachable("MariaDB", &admin, &e));
        let name = unique_name("test");
        c.query_drop(format!(
            "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        ))
        .expect("CREATE DATABASE");
        MyTestDb {
            url: with_database(&admin, &name),
            name,
        }
    }

    /// Runs `sql` (statements separated by `;` at line ends) in the database.
    pub fn execute(&self, sql: &str) {
        let mut c = self.conn();
        for stmt in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
            let stmt = stmt.trim_end_matches(';');
            if let Err(e) = c.query_drop(stmt) {
                panic!("{e}\nin:\n{stmt}");
            }
        }
    }

    pub fn conn(&self) -> my::Conn {
        my::connect(&self.url, None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The URL as user `user` (with `password` if given).
    pub fn url_as(&self, user: &str, password: Option<&str>) -> String {
        let auth = match password {
            Some(p) => format!("{user}:{p}"),
            None => user.to_string(),
        };
        let rest = self
            .url
            .split_once('@')
            .map(|(_, r)| r)
            .unwrap_or("127.0.0.1:3306");
        format!("mysql://{auth}@{rest}")
    }
}

impl Drop for MyTestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = my::connect(&my_admin_url(), None) {
            let _ = c.query_drop(format!("DROP DATABASE IF EXISTS {}", self.name));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            super::with_database("postgres://u@h:1/postgres", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(
            super::with_database("mysql://root@h:3306/", "x"),
            "mysql://root@h:3306/x"
        );
        assert_eq!(
            super::with_database("mysql://root@h", "x"),
            "mysql://root@h/x"
        );
        assert_eq!(
            super::with_database("postgres://u@h/p?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
