//! `edusync bench plan-postgres`: planning with nothing changed, source and
//! state both on PostgreSQL, side by side with `psql` counting the same
//! de-duplicated attendance join in the same database.
//!
//! Set-up (kept between runs, in databases `edusync_bench_source` and
//! `edusync_bench_state` of the server named by `--pg-url`): the generated
//! timetable's `tt_` views copied into tables, and a ledger exactly in sync.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use edusync_db::{block_on, pg};

use super::bench::Args;
use super::common;

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

fn with_db(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map(|(b, q)| (b, Some(q)))
        .unwrap_or((url, None));
    let start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let end = base[start..]
        .find('/')
        .map(|i| i + start)
        .unwrap_or(base.len());
    match query {
        Some(q) => format!("{}/{db}?{q}", &base[..end]),
        None => format!("{}/{db}", &base[..end]),
    }
}

fn config(dir: &Path, source: &str, state: &str) -> Result<std::path::PathBuf> {
    let p = dir.join("postgres.toml");
    std::fs::write(
        &p,
        format!(
            "state = \"{state}\"\n[[profiles]]\nname = \"teaching\"\ntimezone = \"Europe/London\"\ndrift = \"off\"\n[profiles.guard]\nmax_delete_percent = 100\n[profiles.source]\nurl = \"{source}\"\n[profiles.window]\npast_days = 3650\nfuture_days = 3650\n[[profiles.targets]]\nkind = \"vdir\"\npath = \"./calendars\"\n"
        ),
    )?;
    Ok(p)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Copies the SQLite timetable's `tt_` views into tables of the source database.
fn load_source(sqlite: &Path, client: &pg::Client) -> Result<()> {
    let c =
        rusqlite::Connection::open_with_flags(sqlite, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    for v in VIEWS {
        let mut st = c.prepare(&format!("SELECT * FROM tt_{v}"))?;
        let cols: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
        let defs: Vec<String> = cols.iter().map(|c| format!("\"{c}\" TEXT")).collect();
        block_on(client.batch_execute(&format!(
            "DROP TABLE IF EXISTS tt_{v}; CREATE TABLE tt_{v} ({})",
            defs.join(", ")
        )))?;
        let n = cols.len();
        let mut arrays: Vec<Vec<Option<String>>> = vec![Vec::new(); n];
        let unnest: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
        let sql = format!(
            "INSERT INTO tt_{v} SELECT * FROM unnest({})",
            unnest.join(", ")
        );
        let flush = |arrays: &mut Vec<Vec<Option<String>>>| -> Result<()> {
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = arrays
                .iter()
                .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            block_on(client.execute(&sql, &params))
                .map_err(|e| anyhow::anyhow!(pg::message(&e)))?;
            arrays.iter_mut().for_each(Vec::clear);
            Ok(())
        };
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            for (i, a) in arrays.iter_mut().enumerate() {
                a.push(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => None,
                    rusqlite::types::ValueRef::Integer(x) => Some(x.to_string()),
                    rusqlite::types::ValueRef::Real(x) => Some(x.to_string()),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        Some(String::from_utf8_lossy(t).into_owned())
                    }
                });
            }
            if arrays[0].len() == 50_000 {
                flush(&mut arrays)?;
            }
        }
        flush(&mut arrays)?;
    }
    block_on(client.batch_execute("ANALYZE"))?;
    Ok(())
}

pub fn run(a: Args) -> Result<ExitCode> {
    std::fs::create_dir_all(&a.dir)?;
    let dir = a.dir.canonicalize()?;
    let source = with_db(&a.pg_url, "edusync_bench_source");
    let state = with_db(&a.pg_url, "edusync_bench_state");
    let cfg_path = config(&dir, &source, &state)?;
    if a.child.is_some() {
        let cfg = common::load(&cfg_path)?;
        let store = common::store(&cfg)?;
        let t = Instant::now();
        let plan = edusync_engine::plan(&cfg.profiles[0], store.as_ref(), jiff::Timestamp::now())?;
        println!(
            "{{\"secs\":{},\"peak_rss_kib\":{},\"create\":{},\"unchanged\":{},\"entries\":{}}}",
            t.elapsed().as_secs_f64(),
            peak_rss_kib(),
            plan.counts.create,
            plan.counts.unchanged,
            plan.desire.attendance.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let timetable = dir.join("timetable.db");
    let marker = dir.join(format!("pg-students-{}", a.students));
    if !timetable.exists() || !marker.exists() {
        eprintln!(
            "generating {} students and loading them into PostgreSQL…",
            a.students
        );
        let opts = edusync_generate::GenerateOptions {
            students: a.students,
            seed: 1,
            start: edusync_generate::default_start(jiff::Zoned::now().date()),
        };
        let _ = std::fs::remove_file(&timetable);
        edusync_generate::generate(&timetable, &opts, &mut |l| eprintln!("  {l}"))?;
        let admin =
            pg::connect(&a.pg_url, None, "edusync bench").context("connecting to --pg-url")?;
        for db in ["edusync_bench_source", "edusync_bench_state"] {
            block_on(admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))?;
            block_on(admin.batch_execute(&format!("CREATE DATABASE {db}")))?;
        }
        let src = pg::connect(&source, None, "edusync bench")?;
        load_source(&timetable, &src)?;
        eprintln!("seeding a ledger that is in sync…");
        let cfg = common::load(&cfg_path)?;
        let store = common::store(&cfg)?;
        super::bench::seed_in_sync_ledger(&cfg, store.as_ref())?;
        drop(store);
        block_on(
            pg::connect(&state, None, "edusync bench")?.batch_execute("VACUUM ANALYZE ledger"),
        )?;
        std::fs::write(&marker, b"")?;
    }
    let floor_sql = "SELECT COUNT(*) FROM (SELECT person_id, event_id FROM tt_event_people \
                     UNION SELECT gm.person_id, eg.event_id FROM tt_event_groups eg \
                     JOIN tt_group_members gm ON gm.group_id = eg.group_id) x";
    let exe = std::env::current_exe()?;
    let (mut floor, mut plan, mut rss, mut entries, mut count) =
        (Vec::new(), Vec::new(), 0u64, 0u64, String::new());
    for i in 0..a.runs {
        eprintln!("run {}/{}", i + 1, a.runs);
        let t = Instant::now();
        let out = Command::new("psql")
            .args(["-X", "-Atc", floor_sql, &source])
            .output()
            .context("running psql (install postgresql-client)")?;
        floor.push(t.elapsed().as_secs_f64());
        if !out.status.success() {
            bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        count = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let out = Command::new(&exe)
            .args(["bench", "plan-postgres", "--pg-url", &a.pg_url, "--dir"])
            .arg(&dir)
            .args(["--child", "pg"])
            .output()
            .context("running the plan child")?;
        if !out.status.success() {
            bail!(
                "plan child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        if v["create"].as_u64() != Some(0) {
            bail!("the in-sync state was not in sync: {v}");
        }
        plan.push(v["secs"].as_f64().unwrap_or(0.0));
        rss = rss.max(v["peak_rss_kib"].as_u64().unwrap_or(0));
        entries = v["entries"].as_u64().unwrap_or(0);
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (f, p) = (med(floor), med(plan));
    println!(
        "entries: {entries} (psql's de-duplicated join counts {count}); {} runs, medians",
        a.runs
    );
    println!(
        "| scenario (source and state on PostgreSQL) | median time | ratio to floor | peak RSS |"
    );
    println!("|---|---|---|---|");
    println!("| floor: psql counts the de-duplicated attendance join | {f:.2} s | 1.00 | – |");
    println!(
        "| plan, state in sync (nothing to do) | {p:.2} s | {:.2} | {} MiB |",
        p / f,
        rss / 1024
    );
    Ok(ExitCode::SUCCESS)
}
