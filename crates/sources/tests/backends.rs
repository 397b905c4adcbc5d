//! Every source behaviour, on SQLite, PostgreSQL and MariaDB alike: each
//! test builds the contract's views in a throwaway database of each kind
//! (the local servers; see `edusync_db::testing`) and reads them.

use edusync_config::SourceUrl;
use edusync_core::model::{columns, RawSnapshot, VIEWS};
use edusync_core::timetable::{Rules, Timetable};
use edusync_db::testing::{unique_name, MyTestDb, PgTestDb};
use edusync_db::{block_on, my, pg};
use edusync_sources::{read_with, SourceError};
use mysql::prelude::Queryable;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Sqlite,
    Postgres,
    Mariadb,
}

const ALL: [Kind; 3] = [Kind::Sqlite, Kind::Postgres, Kind::Mariadb];

enum Db {
    Sqlite(tempfile::TempDir),
    Pg(PgTestDb),
    My(MyTestDb),
}

impl Db {
    fn new(kind: Kind) -> Db {
        match kind {
            Kind::Sqlite => Db::Sqlite(tempfile::tempdir().unwrap()),
            Kind::Postgres => Db::Pg(PgTestDb::create()),
            Kind::Mariadb => Db::My(MyTestDb::create()),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Db::Sqlite(_) => Kind::Sqlite,
            Db::Pg(_) => Kind::Postgres,
            Db::My(_) => Kind::Mariadb,
        }
    }

    fn exec(&self, sql: &str) {
        match self {
            Db::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("tt.db"))
                .unwrap()
                .execute_batch(sql)
                .unwrap_or_else(|e| panic!("{e}\n{sql}")),
            Db::Pg(db) => db.execute(sql),
            Db::My(db) => db.execute(&format!("SET time_zone = '+00:00';\n{sql}")),
        }
    }

    fn url(&self) -> SourceUrl {
        match self {
            Db::Sqlite(dir) => SourceUrl::Sqlite(dir.path().join("tt.db")),
            Db::Pg(db) => SourceUrl::Postgres(db.url.clone()),
            Db::My(db) => SourceUrl::Mysql(db.url.clone()),
        }
    }

    /// A column type of this kind of database for contract column `col`.
    fn col_type(&self, base: &str, col: &str) -> &'static str {
        match (self.kind(), base, col) {
            (Kind::Sqlite, _, "person_id") if base == "people" => "INTEGER",
            (Kind::Sqlite, _, "latitude" | "longitude") => "REAL",
            (Kind::Sqlite, _, _) => "TEXT",
            (_, "people", "person_id") => "INTEGER",
            (Kind::Postgres, _, "latitude") => "NUMERIC(9,6)",
            (Kind::Postgres, _, "longitude") => "DOUBLE PRECISION",
            (Kind::Postgres, _, "starts_at") => "TIMESTAMP",
            (Kind::Postgres, _, "ends_at") => "TIMESTAMPTZ",
            (Kind::Postgres, _, _) => "TEXT",
            (Kind::Mariadb, _, "latitude") => "DECIMAL(9,6)",
            (Kind::Mariadb, _, "longitude") => "DOUBLE",
            (Kind::Mariadb, _, "starts_at") => "DATETIME",
            (Kind::Mariadb, _, "ends_at") => "TIMESTAMP NULL",
            (Kind::Mariadb, _, _) => "VARCHAR(200)",
        }
    }

    /// Tables `t_<view>` with the contract columns (less `skip`, with
    /// `retype` overriding one type) plus an extra column, and views
    /// `tt_<view>` over them (less `skip_view`).
    fn build(
        &self,
        skip_view: Option<&str>,
        skip: Option<(&str, &str)>,
        retype: Option<(&str, &str, &str)>,
    ) {
        let mut sql = String::new();
        for base in VIEWS {
            let cols: Vec<String> = columns(base)
                .iter()
                .filter(|c| skip != Some((base, c)))
                .map(|c| {
                    let t = match retype {
                        Some((b, col, t)) if b == base && col == *c => t,
                        _ => self.col_type(base, c),
                    };
                    format!("{c} {t}")
                })
                .collect();
            sql.push_str(&format!(
                "CREATE TABLE t_{base} ({}, extra_col TEXT);\n",
                cols.join(", ")
            ));
            if Some(base) != skip_view {
                sql.push_str(&format!(
                    "CREATE VIEW tt_{base} AS SELECT * FROM t_{base};\n"
                ));
            }
        }
        self.exec(&sql);
    }

    fn read(&self) -> Result<RawSnapshot, SourceError> {
        read_with(&self.url(), "tt_", None)
    }
}

fn each(test: impl Fn(&Db)) {
    for kind in ALL {
        let db = Db::new(kind);
        eprintln!("-- {kind:?}");
        test(&db);
    }
}

#[test]
fn reads_every_view_whatever_the_column_types() {
    each(|db| {
        db.build(None, None, None);
        let ends = if db.kind() == Kind::Sqlite {
            "2026-07-01T10:00:00Z"
        } else {
            "2026-07-01 10:00:00"
        };
        db.exec(&format!(
            "INSERT INTO t_people VALUES (42, 'student', 'a@b.ac.uk', NULL, 'x');
             INSERT INTO t_people VALUES (7, 'staff', 'l@b.ac.uk', 'Dr Ł Ünicode', NULL);
             INSERT INTO t_locations VALUES ('R1', 'Room', NULL, NULL, 51.5, -0.25, NULL);
             INSERT INTO t_groups VALUES ('G1', 'Group', NULL, NULL);
             INSERT INTO t_group_members VALUES ('G1', '42', NULL);
             INSERT INTO t_events VALUES ('E1', 'Lecture', NULL, 'M1', NULL, NULL, '2026-07-01 09:00:00', '{ends}', NULL, NULL, NULL);
             INSERT INTO t_event_groups VALUES ('E1', 'G1', NULL);
             INSERT INTO t_event_people VALUES ('E1', '7', 'host', NULL, NULL);
             INSERT INTO t_event_locations VALUES ('E1', 'R1', NULL);"
        ));
        let snap = db.read().unwrap_or_else(|e| panic!("{:?}: {e}", db.kind()));
        let mut people: Vec<_> = snap
            .people
            .iter()
            .map(|p| p.person_id.clone().unwrap())
            .collect();
        people.sort();
        assert_eq!(people, ["42", "7"], "{:?}", db.kind());
        let dr = snap
            .people
            .iter()
            .find(|p| p.person_id.as_deref() == Some("7"))
            .unwrap();
        assert_eq!(dr.display_name.as_deref(), Some("Dr Ł Ünicode"));
        let student = snap
            .people
            .iter()
            .find(|p| p.person_id.as_deref() == Some("42"))
            .unwrap();
        assert_eq!(student.display_name, None);
        let l = &snap.locations[0];
        assert_eq!(l.latitude.as_deref().unwrap().parse::<f64>().unwrap(), 51.5);
        assert_eq!(
            l.longitude.as_deref().unwrap().parse::<f64>().unwrap(),
            -0.25
        );
        // Through validation: 09:00 London wall-clock in July is 08:00Z; the end is an instant.
        let tt = Timetable::build(
            snap,
            &Rules {
                timezone: jiff::tz::TimeZone::get("Europe/London").unwrap(),
                max_event_hours: 24,
            },
        );
        assert!(
            tt.quarantine.is_empty(),
            "{:?}: {:?}",
            db.kind(),
            tt.quarantine
        );
        let e = &tt.events[0];
        assert_eq!(
            e.start.to_string(),
            "2026-07-01T08:00:00Z",
            "{:?}",
            db.kind()
        );
        assert_eq!(e.end.to_string(), "2026-07-01T10:00:00Z", "{:?}", db.kind());
    });
}

#[test]
fn a_missing_view_is_named() {
    each(|db| {
        db.build(Some("event_locations"), None, None);
        let e = db.read().unwrap_err().to_string();
        assert!(
            e.ends_with("view tt_event_locations does not exist; create it as described in the source contract (or fix profiles.source.prefix)"),
            "{:?}: {e}",
            db.kind()
        );
    });
}

#[test]
fn a_missing_column_is_named_with_its_type() {
    each(|db| {
        db.build(None, Some(("events", "ends_at")), None);
        let e = db.read().unwrap_err().to_string();
        assert!(
            e.ends_with("view tt_events has no column ends_at (timestamp or ISO-8601 text); the source contract requires it"),
            "{:?}: {e}",
            db.kind()
        );
    });
}

#[test]
fn a_mistyped_column_is_named_with_the_expected_type() {
    for (kind, ty, found) in [
        (Kind::Postgres, "BOOLEAN", "bool"),
        (Kind::Mariadb, "DATE", "DATE"),
    ] {
        let db = Db::new(kind);
        db.build(None, None, Some(("events", "starts_at", ty)));
        let e = db.read().unwrap_err().to_string();
        assert!(
            e.ends_with(&format!("view tt_events column starts_at is of type {found}, which cannot be read as timestamp or ISO-8601 text; change the view to give it a timestamp or ISO-8601 text type")),
            "{kind:?}: {e}"
        );
        let db = Db::new(kind);
        let date = if kind == Kind::Postgres {
            "DATE"
        } else {
            "TIME"
        };
        db.build(None, None, Some(("locations", "latitude", date)));
        let e = db.read().unwrap_err().to_string();
        assert!(
            e.contains("view tt_locations column latitude is of type"),
            "{kind:?}: {e}"
        );
        assert!(
            e.contains("which cannot be read as number"),
            "{kind:?}: {e}"
        );
    }
    // SQLite has no column types to check: any value reads as text and validation judges it.
}

#[test]
fn a_refused_connection_says_to_start_the_server() {
    for url in [
        SourceUrl::Postgres("postgres://postgres@127.0.0.1:1/tt".into()),
        SourceUrl::Mysql("mysql://root@127.0.0.1:1/tt".into()),
    ] {
        let e = read_with(&url, "tt_", None).unwrap_err().to_string();
        assert!(e.contains("127.0.0.1:1"), "{e}");
        assert!(
            e.contains("connection refused; is the server running and listening there?"),
            "{e}"
        );
    }
    let e = read_with(&SourceUrl::Sqlite("/nonexistent/tt.db".into()), "tt_", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the file does not exist"), "{e}");
}

#[test]
fn a_view_without_select_permission_is_named() {
    // PostgreSQL: a login role that may read every view but tt_events.
    let db = Db::new(Kind::Postgres);
    db.build(None, None, None);
    let role = unique_name("role");
    let Db::Pg(pgdb) = &db else { unreachable!() };
    pgdb.execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'secret';
         GRANT CONNECT ON DATABASE {} TO {role};
         GRANT USAGE ON SCHEMA public TO {role};
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};
         REVOKE SELECT ON tt_events FROM {role};",
        pgdb.name
    ));
    let url = SourceUrl::Postgres(pgdb.url_as(&role, None));
    let e = read_with(&url, "tt_", Some("secret"))
        .unwrap_err()
        .to_string();
    let admin = pg::connect("postgres://postgres@127.0.0.1:5432/postgres", None, "t").unwrap();
    drop(db);
    let _ = block_on(admin.batch_execute(&format!("DROP ROLE IF EXISTS {role}")));
    assert!(
        e.contains("no permission to read view tt_events (permission denied for view tt_events"),
        "{e}"
    );
    assert!(
        e.ends_with("grant SELECT on it to the user edusync connects as"),
        "{e}"
    );

    // MariaDB: a user (password from password_env, not the URL) granted all views but tt_events.
    let db = Db::new(Kind::Mariadb);
    db.build(None, None, None);
    let Db::My(mydb) = &db else { unreachable!() };
    let user = unique_name("u");
    let mut admin = my::connect("mysql://root@127.0.0.1:3306/", None).unwrap();
    for host in ["localhost", "127.0.0.1", "%"] {
        admin
            .query_drop(format!(
                "CREATE USER '{user}'@'{host}' IDENTIFIED BY 'secret'"
            ))
            .unwrap();
        for base in VIEWS.iter().filter(|b| **b != "events") {
            admin
                .query_drop(format!(
                    "GRANT SELECT ON {}.tt_{base} TO '{user}'@'{host}'",
                    mydb.name
                ))
                .unwrap();
        }
    }
    let url = SourceUrl::Mysql(mydb.url_as(&user, None));
    let e = read_with(&url, "tt_", Some("secret"))
        .unwrap_err()
        .to_string();
    let wrong = read_with(&url, "tt_", Some("wrong"))
        .unwrap_err()
        .to_string();
    for host in ["localhost", "127.0.0.1", "%"] {
        let _ = admin.query_drop(format!("DROP USER '{user}'@'{host}'"));
    }
    assert!(e.contains("no permission to read view tt_events"), "{e}");
    assert!(e.contains(&user), "{e}");
    assert!(
        wrong.contains(&format!("login as user \"{user}\" was refused")),
        "{wrong}"
    );
}

#[test]
fn the_read_sees_one_snapshot_while_a_writer_commits() {
    // A writer commits to tt_events between the reader's transaction start
    // and its read of that view; the reader must not see it.
    for kind in [Kind::Postgres, Kind::Mariadb] {
        let db = Db::new(kind);
        db.build(None, None, None);
        db.exec("INSERT INTO t_people VALUES (1, 'student', 'a@b.ac.uk', NULL, NULL)");
        // Delay the read of tt_locations (read before tt_events) until a second writer has committed:
        // a view that sleeps once per row.
        match &db {
            Db::Pg(d) => {
                d.execute("INSERT INTO t_locations VALUES ('R1', 'Room', NULL, NULL, 1, 1, NULL);
                     CREATE OR REPLACE VIEW tt_locations AS SELECT t.* FROM t_locations t, LATERAL (SELECT pg_sleep(1.5)) s;");
            }
            Db::My(d) => {
                d.execute("INSERT INTO t_locations VALUES ('R1', 'Room', NULL, NULL, 1, 1, NULL);
                     CREATE OR REPLACE VIEW tt_locations AS SELECT location_id, name, building, campus, latitude, longitude, extra_col FROM t_locations WHERE SLEEP(1.5) = 0;");
            }
            Db::Sqlite(_) => unreachable!(),
        }
        let url = db.url();
        let reader = std::thread::spawn(move || read_with(&url, "tt_", None));
        std::thread::sleep(std::time::Duration::from_millis(700));
        db.exec("INSERT INTO t_events VALUES ('E9', 'Late', NULL, NULL, NULL, NULL, '2026-07-01 09:00:00', NULL, NULL, NULL, NULL)");
        let snap = reader.join().unwrap().unwrap();
        assert_eq!(snap.locations.len(), 1, "{kind:?}");
        assert!(
            snap.events.is_empty(),
            "{kind:?}: the reader saw a row committed after its snapshot began"
        );
    }
}
