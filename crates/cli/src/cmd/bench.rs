//! `edusync bench plan`: the plan benchmarks of BENCHMARKS.md, side by side
//! with their floor, in one run.
//!
//! The floor is SQLite counting the de-duplicated attendance join (direct
//! rows UNION group-member rows) on the same file. Each edusync scenario runs
//! in a fresh child process so its peak RSS is its own.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use edusync_store::{Ack, LedgerEntry};

use super::common;

#[derive(clap::Args)]
pub struct Args {
    /// What to measure.
    #[arg(value_enum)]
    pub what: What,
    /// Working folder (timetable and state are kept there between runs).
    #[arg(long, default_value = "edusync-bench")]
    pub dir: PathBuf,
    /// Students in the generated timetable (35000 ≈ 5 million entries).
    #[arg(long, default_value_t = 35_000)]
    pub students: u32,
    /// Repetitions; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The PostgreSQL server for `plan-postgres` (it creates two databases there).
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
    )]
    pub pg_url: String,
    /// Internal: run one scenario and print its time and peak RSS.
    #[arg(long, hide = true)]
    pub child: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum What {
    /// plan with an empty state and with a state in sync, against the SQLite floor.
    Plan,
    /// plan with a state in sync, source and state on PostgreSQL, against psql counting the join.
    PlanPostgres,
}

const CONFIG: &str = r#"state = "sqlite://./STATE"
[[profiles]]
name = "teaching"
timezone = "Europe/London"
drift = "off"
[profiles.guard]
max_delete_percent = 100
[profiles.source]
url = "sqlite://./SOURCE"
[profiles.window]
past_days = 3650
future_days = 3650
[[profiles.targets]]
kind = "vdir"
path = "./calendars"
"#;

fn config(dir: &Path, state: &str) -> Result<PathBuf> {
    config_with(dir, state, "timetable.db")
}

fn config_with(dir: &Path, state: &str, source: &str) -> Result<PathBuf> {
    let p = dir.join(format!("{state}.toml"));
    std::fs::write(&p, CONFIG.replace("STATE", state).replace("SOURCE", source))?;
    Ok(p)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    if matches!(a.what, What::PlanPostgres) {
        return super::bench_pg::run(a);
    }
    std::fs::create_dir_all(&a.dir)?;
    let dir = a.dir.canonicalize()?;
    if let Some(which) = &a.child {
        if which == "changed.db" {
            let cfg = common::load(&config_with(&dir, which, "changed-timetable.db")?)?;
            let store = common::store(&cfg)?;
            let rt = common::runtime()?;
            let t = Instant::now();
            let r = rt.block_on(edusync_engine::sync(
                &cfg,
                &cfg.profiles[0],
                store.as_ref(),
                &mut edusync_engine::NoProgress,
            ))?;
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{{\"secs\":{secs},\"peak_rss_kib\":{},\"update\":{},\"unchanged\":{},\"status\":\"{}\"}}",
                peak_rss_kib(),
                r.update,
                r.unchanged,
                r.status
            );
            return Ok(ExitCode::SUCCESS);
        }
        let cfg = common::load(&config(&dir, which)?)?;
        let store = common::store(&cfg)?;
        let t = Instant::now();
        let plan = edusync_engine::plan(&cfg.profiles[0], store.as_ref(), jiff::Timestamp::now())?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{{\"secs\":{secs},\"peak_rss_kib\":{},\"create\":{},\"unchanged\":{},\"entries\":{}}}",
            peak_rss_kib(),
            plan.counts.create,
            plan.counts.unchanged,
            plan.desire.attendance.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let timetable = dir.join("timetable.db");
    let marker = dir.join(format!("students-{}", a.students));
    if !timetable.exists() || !marker.exists() {
        eprintln!("generating {} students…", a.students);
        let opts = edusync_generate::GenerateOptions {
            students: a.students,
            seed: 1,
            start: edusync_generate::default_start(jiff::Zoned::now().date()),
        };
        edusync_generate::generate(&timetable, &opts, &mut |l| eprintln!("  {l}"))?;
        let _ = std::fs::remove_file(dir.join("synced.db"));
        std::fs::write(&marker, b"")?;
    }
    // A state that is exactly in sync: the ledger holds every desired entry.
    let synced = dir.join("synced.db");
    if !synced.exists() {
        eprintln!("seeding a ledger that is in sync…");
        let cfg = common::load(&config(&dir, "synced.db")?)?;
        let store = common::store(&cfg)?;
        seed_in_sync_ledger(&cfg, store.as_ref())?;
    }
    let _ = std::fs::remove_file(dir.join("empty.db"));
    drop(edusync_store::sqlite::SqliteStore::open(
        &dir.join("empty.db"),
    )?);

    let floor_sql = "SELECT COUNT(*) FROM (SELECT person_id, event_id FROM tt_event_people \
                     UNION SELECT gm.person_id, eg.event_id FROM tt_event_groups eg \
                     JOIN tt_group_members gm ON gm.group_id = eg.group_id)";
    let exe = std::env::current_exe()?;
    let mut floor = Vec::new();
    let mut empty = Vec::new();
    let mut insync = Vec::new();
    let (mut rss_empty, mut rss_sync) = (0u64, 0u64);
    let mut floor_count = 0i64;
    let mut entries = 0u64;
    for i in 0..a.runs {
        eprintln!("run {}/{}", i + 1, a.runs);
        let conn = rusqlite::Connection::open_with_flags(
            &timetable,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let t = Instant::now();
        floor_count = conn.query_row(floor_sql, [], |r| r.get(0))?;
        floor.push(t.elapsed().as_secs_f64());
        drop(conn);
        for (name, times, rss) in [
            ("empty.db", &mut empty, &mut rss_empty),
            ("synced.db", &mut insync, &mut rss_sync),
        ] {
            let out = Command::new(&exe)
                .args(["bench", "plan", "--dir"])
                .arg(&dir)
                .args(["--child", name])
                .output()
                .context("running the plan child")?;
            if !out.status.success() {
                bail!(
                    "plan child failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            times.push(v["secs"].as_f64().unwrap_or(0.0));
            *rss = (*rss).max(v["peak_rss_kib"].as_u64().unwrap_or(0));
            entries = v["entries"].as_u64().unwrap_or(0);
            if name == "synced.db" && v["create"].as_u64() != Some(0) {
                bail!("the in-sync state was not in sync: {v}");
            }
        }
    }
    // Plan + apply after a 1% change: a copy of the in-sync state, 1% of events retitled.
    let changed_src = dir.join("changed-timetable.db");
    std::fs::copy(&timetable, &changed_src)?;
    rusqlite::Connection::open(&changed_src)?.execute(
        "UPDATE tt_events SET title = title || ' (revised)' WHERE rowid % 100 = 0",
        [],
    )?;
    let mut changed = Vec::new();
    let mut rss_changed = 0u64;
    let mut updates = 0u64;
    for i in 0..a.runs {
        eprintln!("1% change, run {}/{}", i + 1, a.runs);
        let _ = std::fs::remove_dir_all(dir.join("calendars"));
        for suffix in ["", "-wal", "-shm"] {
            let from = dir.join(format!("synced.db{suffix}"));
            let to = dir.join(format!("changed.db{suffix}"));
            let _ = std::fs::remove_file(&to);
            if from.exists() {
                std::fs::copy(&from, &to)?;
            }
        }
        let out = Command::new(&exe)
            .args(["bench", "plan", "--dir"])
            .arg(&dir)
            .args(["--child", "changed.db"])
            .output()
            .context("running the sync child")?;
        if !out.status.success() {
            bail!(
                "sync child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        changed.push(v["secs"].as_f64().unwrap_or(0.0));
        rss_changed = rss_changed.max(v["peak_rss_kib"].as_u64().unwrap_or(0));
        updates = v["update"].as_u64().unwrap_or(0);
    }
    let c = median(changed);
    let (f, e, s) = (median(floor), median(empty), median(insync));
    println!(
        "entries: {entries} (SQLite's de-duplicated join counts {floor_count}); {} runs, medians",
        a.runs
    );
    println!("| scenario | median time | ratio to floor | peak RSS |");
    println!("|---|---|---|---|");
    println!("| floor: SQLite counts the de-duplicated attendance join | {f:.2} s | 1.00 | – |");
    println!(
        "| plan, empty state (all creates) | {e:.2} s | {:.2} | {} MiB |",
        e / f,
        rss_empty / 1024
    );
    println!(
        "| plan, state in sync (nothing to do) | {s:.2} s | {:.2} | {} MiB |",
        s / f,
        rss_sync / 1024
    );
    println!(
        "| sync after a 1% change ({updates} updates written to vdir) | {c:.2} s | {:.2} | {} MiB |",
        c / f,
        rss_changed / 1024
    );
    Ok(ExitCode::SUCCESS)
}

/// Fills `store` with a ledger exactly in sync with the profile's source
/// (every desired entry, matching fingerprint), for the "nothing to do" scenarios.
pub(crate) fn seed_in_sync_ledger(
    cfg: &edusync_config::Config,
    store: &dyn edusync_store::Store,
) -> Result<()> {
    let p = &cfg.profiles[0];
    let d = edusync_engine::desire(p, jiff::Timestamp::now())?;
    let tt = &d.tt;
    let mut batch = Vec::with_capacity(100_000);
    for (person, event) in d.attendance.iter() {
        let pe = &tt.people[person as usize];
        let ev = &tt.events[event as usize];
        batch.push(Ack::Written(LedgerEntry {
            person_id: pe.id.clone(),
            event_id: ev.id.clone(),
            fingerprint: d.fingerprints.entry(tt, person, event),
            starts_at: ev.start.as_second(),
            calendar: pe.email.clone(),
            remote_id: Some(edusync_core::keys::resource_name(&p.name, &ev.id)),
            etag: None,
            sequence: 0,
            gone: false,
            updated_at: 0,
        }));
        if batch.len() == 100_000 {
            store.ack(&p.name, "vdir", &batch)?;
            batch.clear();
        }
    }
    store.ack(&p.name, "vdir", &batch)?;
    Ok(())
}
