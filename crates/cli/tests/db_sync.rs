//! End to end on real databases: the generated timetable loaded into
//! PostgreSQL and MariaDB, synced through the built binary with every
//! source × state combination, and two workers sharing a PostgreSQL state
//! (also with one of them killed at random points).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use edusync_db::testing::{MyTestDb, PgTestDb};
use edusync_db::{block_on, my, pg};
use mysql::prelude::Queryable;

const BIN: &str = env!("CARGO_BIN_EXE_edusync");
const VIEWS: [&str; 8] = [
    "people",
    "locations",
    "groups",
    "group_members",
    "events",
    "event_groups",
    "event_people",
    "event_locations",
];

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "edusync_engine=info")
        .output()
        .unwrap();
    out
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "edusync {} failed ({})\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The generated timetable's `tt_` views: (view, columns, rows of optional text).
type Tables = Vec<(String, Vec<String>, Vec<Vec<Option<String>>>)>;

fn generate(dir: &Path, students: &str) -> (PathBuf, Tables) {
    let db = dir.join("tt.db");
    ok(&[
        "generate",
        "--out",
        db.to_str().unwrap(),
        "--students",
        students,
        "--seed",
        "7",
    ]);
    let c = rusqlite::Connection::open(&db).unwrap();
    let mut tables = Vec::new();
    for v in VIEWS {
        let mut st = c.prepare(&format!("SELECT * FROM tt_{v}")).unwrap();
        let cols: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
        let n = cols.len();
        let rows: Vec<Vec<Option<String>>> = st
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => None,
                            rusqlite::types::ValueRef::Integer(x) => Some(x.to_string()),
                            rusqlite::types::ValueRef::Real(x) => Some(x.to_string()),
                            rusqlite::types::ValueRef::Text(t)
                            | rusqlite::types::ValueRef::Blob(t) => {
                                Some(String::from_utf8_lossy(t).into_owned())
                            }
                        })
                    })
                    .collect()
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        tables.push((format!("tt_{v}"), cols, rows));
    }
    (db, tables)
}

/// Loads the tables into PostgreSQL (TEXT columns, tables behind views).
fn load_pg(db: &PgTestDb, tables: &Tables) {
    let c = db.client();
    for (view, cols, rows) in tables {
        let defs: Vec<String> = cols.iter().map(|c| format!("\"{c}\" TEXT")).collect();
        block_on(c.batch_execute(&format!(
            "CREATE TABLE src_{view} ({}); CREATE VIEW {view} AS SELECT * FROM src_{view};",
            defs.join(", ")
        )))
        .unwrap();
        let arrays: Vec<Vec<Option<String>>> = (0..cols.len())
            .map(|i| rows.iter().map(|r| r[i].clone()).collect())
            .collect();
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = arrays
            .iter()
            .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let unnest: Vec<String> = (1..=cols.len()).map(|i| format!("${i}::text[]")).collect();
        block_on(c.execute(
            &format!(
                "INSERT INTO src_{view} SELECT * FROM unnest({})",
                unnest.join(", ")
            ),
            &params,
        ))
        .unwrap_or_else(|e| panic!("{}", pg::message(&e)));
    }
}

/// Loads the tables into MariaDB (TEXT columns, tables behind views).
fn load_my(db: &MyTestDb, tables: &Tables) {
    let mut c = db.conn();
    for (view, cols, rows) in tables {
        let defs: Vec<String> = cols.iter().map(|c| format!("`{c}` TEXT")).collect();
        c.query_drop(format!("CREATE TABLE src_{view} ({})", defs.join(", ")))
            .unwrap();
        c.query_drop(format!("CREATE VIEW {view} AS SELECT * FROM src_{view}"))
            .unwrap();
        let one = format!("({})", vec!["?"; cols.len()].join(","));
        for chunk in rows.chunks(500) {
            let sql = format!(
                "INSERT INTO src_{view} VALUES {}",
                vec![one.as_str(); chunk.len()].join(",")
            );
            let params: Vec<mysql::Value> = chunk
                .iter()
                .flatten()
                .map(|v| match v {
                    Some(s) => mysql::Value::from(s.as_str()),
                    None => mysql::Value::NULL,
                })
                .collect();
            c.exec_drop(sql, params).unwrap();
        }
    }
}

fn config(dir: &Path, name: &str, state: &str, source: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "state = \"{state}\"\n\n[[profiles]]\nname = \"teaching\"\ntimezone = \"Europe/London\"\n\n[profiles.source]\nurl = \"{source}\"\nprefix = \"tt_\"\n\n[[profiles.targets]]\nkind = \"vdir\"\npath = \"./cal-{name}\"\n"
        ),
    )
    .unwrap();
    path
}

/// Every calendar file under `root`, with the lines that carry the time of writing removed.
fn calendars(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "ics") {
                let text = std::fs::read_to_string(&p).unwrap();
                let text: String = text
                    .lines()
                    .filter(|l| !l.starts_with("DTSTAMP") && !l.starts_with("LAST-MODIFIED"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                out.insert(p.strip_prefix(root).unwrap().display().to_string(), text);
            }
        }
    }
    out
}

/// The arguments of `edusync plan|sync --profile teaching --format json`.
fn cycle_args<'a>(command: &'a str, cfg: &'a str) -> [&'a str; 7] {
    [
        command,
        "--config",
        cfg,
        "--profile",
        "teaching",
        "--format",
        "json",
    ]
}

/// `edusync plan|sync --profile teaching --format json`, answered as JSON.
fn cycle(command: &str, cfg: &str) -> serde_json::Value {
    json(&ok(&cycle_args(command, cfg)))
}

/// A plan right after a run has nothing to create, update or delete.
fn assert_nothing_to_do(cfg: &str, what: impl std::fmt::Display) {
    let again = cycle("plan", cfg);
    assert_eq!(
        (
            again["create"].as_u64(),
            again["update"].as_u64(),
            again["delete"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{what}: {again}"
    );
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn every_source_and_state_give_identical_calendars() {
    let dir = tempfile::tempdir().unwrap();
    let (sqlite, tables) = generate(dir.path(), "40");
    let pg_src = PgTestDb::create();
    load_pg(&pg_src, &tables);
    let my_src = MyTestDb::create();
    load_my(&my_src, &tables);
    let sources = [
        ("sqlite", format!("sqlite://{}", sqlite.display())),
        ("postgres", pg_src.url.clone()),
        ("mariadb", my_src.url.clone()),
    ];
    let mut states = Vec::new();
    let mut results: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for (sname, surl) in &sources {
        for state_kind in ["sqlite", "postgres"] {
            let name = format!("{sname}-{state_kind}");
            let state = if state_kind == "sqlite" {
                format!("sqlite://./state-{name}.db")
            } else {
                let db = PgTestDb::create();
                let url = db.url.clone();
                states.push(db);
                url
            };
            let cfg = config(dir.path(), &name, &state, surl);
            let cfg = cfg.to_str().unwrap();
            let plan = cycle("plan", cfg);
            assert!(plan["create"].as_u64().unwrap() > 1000, "{name}: {plan}");
            let sync = cycle("sync", cfg);
            assert_eq!(sync["status"], "applied", "{name}: {sync}");
            assert_eq!(sync["create"], plan["create"], "{name}");
            assert_eq!(sync["quarantined"], plan["quarantined"], "{name}");
            assert_nothing_to_do(cfg, &name);
            results.push((
                name.clone(),
                calendars(&dir.path().join(format!("cal-{name}"))),
            ));
        }
    }
    let (first, want) = &results[0];
    assert!(want.len() > 1000);
    for (name, got) in &results[1..] {
        assert!(
            got == want,
            "calendars of {name} differ from {first}: {} vs {} files",
            got.len(),
            want.len()
        );
    }
}

fn spawn(cfg: &str) -> Child {
    Command::new(BIN)
        .args(cycle_args("sync", cfg))
        .env("RUST_LOG", "edusync_engine=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child, deadline: Duration) -> Output {
    let start = Instant::now();
    let mut child = child;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "a worker did not finish in {deadline:?}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ops each worker says it delivered (`delivered=N` in its log).
fn delivered(stderr: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .filter(|l| l.contains("delivered claimed ops"))
        .filter_map(|l| l.split("delivered=").nth(1))
        .filter_map(|v| {
            v.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// What a single worker on SQLite state makes of the source: the expected calendars.
fn expected(dir: &Path, source: &str) -> (BTreeMap<String, String>, u64) {
    let cfg = config(dir, "expected", "sqlite://./state-expected.db", source);
    let cfg = cfg.to_str().unwrap();
    let sync = cycle("sync", cfg);
    assert_eq!(sync["status"], "applied", "{sync}");
    (
        calendars(&dir.join("cal-expected")),
        sync["create"].as_u64().unwrap(),
    )
}

#[test]
fn two_workers_on_one_postgres_state_split_the_work_and_apply_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (sqlite, _) = generate(dir.path(), "60");
    let source = format!("sqlite://{}", sqlite.display());
    let (want, creates) = expected(dir.path(), &source);
    let state = PgTestDb::create();
    let cfg = config(dir.path(), "two", &state.url, &source);
    let cfg = cfg.to_str().unwrap();
    let (a, b) = (spawn(cfg), spawn(cfg));
    let (a, b) = (
        finish(a, Duration::from_secs(300)),
        finish(b, Duration::from_secs(300)),
    );
    for o in [&a, &b] {
        assert!(
            o.status.success(),
            "stderr:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (da, db) = (delivered(&a.stderr), delivered(&b.stderr));
    assert_eq!(
        da + db,
        creates,
        "each planned op is delivered exactly once (worker a {da}, worker b {db})"
    );
    assert_eq!(calendars(&dir.path().join("cal-two")), want);
    assert_nothing_to_do(cfg, "after the run");
}

#[test]
fn a_worker_killed_mid_batch_leaves_work_the_other_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (sqlite, _) = generate(dir.path(), "40");
    let source = format!("sqlite://{}", sqlite.display());
    let (want, _) = expected(dir.path(), &source);
    let mut seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..3 {
        let state = PgTestDb::create();
        let name = format!("kill{round}");
        let cfg = config(dir.path(), &name, &state.url, &source);
        let cfg = cfg.to_str().unwrap();
        let (mut a, b) = (spawn(cfg), spawn(cfg));
        let wait = 100 + next() % 2500;
        std::thread::sleep(Duration::from_millis(wait));
        // SIGKILL: no chance to release anything.
        let _ = a.kill();
        let _ = a.wait();
        let b = finish(b, Duration::from_secs(300));
        assert!(
            b.status.success(),
            "round {round} (kill after {wait} ms): {}",
            String::from_utf8_lossy(&b.stderr)
        );
        // The survivor (or, if it finished before the kill, a next cycle) completes the work.
        ok(&["sync", "--config", cfg, "--profile", "teaching"]);
        assert_eq!(
            calendars(&dir.path().join(format!("cal-{name}"))),
            want,
            "round {round} (kill after {wait} ms)"
        );
        assert_nothing_to_do(cfg, format!("round {round}"));
    }
}

#[test]
fn an_unreachable_state_server_is_reported_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (sqlite, _) = generate(dir.path(), "5");
    let cfg = config(
        dir.path(),
        "down",
        "postgres://postgres@127.0.0.1:1/x",
        &format!("sqlite://{}", sqlite.display()),
    );
    let out = run(&["sync", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connection refused; is the server running and listening there?"),
        "{err}"
    );
    let _ = my::describe("mysql://x@h/db");
}
