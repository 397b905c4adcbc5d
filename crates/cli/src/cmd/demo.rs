use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use super::common;
use crate::output::{n, Progress};

#[derive(clap::Args)]
pub struct Args {
    /// Folder for the demo's files (timetable, state, calendars, config).
    #[arg(long, default_value = "edusync-demo")]
    pub dir: PathBuf,
    /// Students in the generated timetable.
    #[arg(long, default_value_t = 300)]
    pub students: u32,
    /// Seconds between sync cycles while the demo runs (the profiles' `schedule`).
    #[arg(long, default_value_t = 30)]
    pub every: u64,
    /// Sync once and exit instead of serving the console and feeds until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Port for the console and feeds on 127.0.0.1 (default 8080, or a free one if 8080 is taken).
    #[arg(long)]
    pub port: Option<u16>,
}

const CONFIG: &str = r#"# Written by `edusync demo`. A real deployment's config looks like this,
# with its own source and targets: see edusync.example.toml.
state = "sqlite://./state.db"

[server]
listen = "127.0.0.1:{port}"

[[profiles]]
name = "teaching"
timezone = "Europe/London"
schedule = "{every}s"
[profiles.source]
url = "sqlite://./timetable.db"
prefix = "tt_"
[profiles.window]
past_days = 7
future_days = 365
[[profiles.targets]]
kind = "vdir"
path = "./calendars"

[[profiles]]
name = "exams"
timezone = "Europe/London"
schedule = "{every}s"
[profiles.source]
url = "sqlite://./timetable.db"
prefix = "ex_"
[profiles.window]
past_days = 7
future_days = 365
[[profiles.targets]]
kind = "vdir"
path = "./calendars"
"#;

pub fn run(a: Args) -> Result<ExitCode> {
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let dir = a.dir.canonicalize()?;
    let timetable = dir.join("timetable.db");
    let config_path = dir.join("edusync.toml");
    if !timetable.exists() {
        eprintln!("generating a sample timetable for {} students…", a.students);
        let opts = edusync_generate::GenerateOptions {
            students: a.students,
            seed: 1,
            start: edusync_generate::default_start(jiff::Zoned::now().date()),
        };
        let s = edusync_generate::generate(&timetable, &opts, &mut |_| {})?;
        eprintln!(
            "  {} people, {} teaching events, {} exam events, {} rows deliberately bad",
            n(s.people),
            n(s.events),
            n(s.exam_events),
            s.bad_rows.len()
        );
    }
    let rt = common::runtime()?;
    if !a.once {
        return serve_demo(&a, &dir, &config_path, &rt);
    }
    std::fs::write(
        &config_path,
        CONFIG
            .replace("{port}", "8080")
            .replace("{every}", &a.every.to_string()),
    )?;
    let config = common::load(&config_path)?;
    let store = common::store(&config)?;
    let mut first = true;
    loop {
        for profile in &config.profiles {
            let mut progress = Progress::new(!first);
            let r = rt.block_on(edusync_engine::sync(
                &config,
                profile,
                store.as_ref(),
                &mut progress,
            ))?;
            progress.finish();
            println!(
                "profile {}: run {} {}: created {}, updated {}, deleted {}, unchanged {}, quarantined {}",
                r.profile, r.run_id, r.status, n(r.create), n(r.update), n(r.delete), n(r.unchanged), n(r.quarantined)
            );
        }
        if first {
            let calendars = dir.join("calendars");
            let example = std::fs::read_dir(&calendars)
                .ok()
                .and_then(|mut d| d.find_map(|e| e.ok().map(|e| e.path())))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            println!(
                "\nper-person calendars (one .ics file per event): {}",
                calendars.display()
            );
            println!("  for example: {example}");
            println!("config used: {}", config_path.display());
            println!("try: edusync plan --config {} --profile teaching --person <an email from the folder above>", config_path.display());
            first = false;
        }
        if a.once {
            return Ok(ExitCode::SUCCESS);
        }
        println!("next cycle in {}s (Ctrl-C to stop)", a.every);
        let stop = rt.block_on(async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => true,
                _ = tokio::time::sleep(Duration::from_secs(a.every)) => false,
            }
        });
        if stop {
            println!("stopped");
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// The demo as a service: the console, feeds and the scheduler on 127.0.0.1.
fn serve_demo(
    a: &Args,
    dir: &std::path::Path,
    config_path: &std::path::Path,
    rt: &tokio::runtime::Runtime,
) -> Result<ExitCode> {
    rt.block_on(async {
        let listener = match a.port {
            Some(p) => tokio::net::TcpListener::bind(("127.0.0.1", p))
                .await
                .with_context(|| format!("cannot listen on 127.0.0.1:{p}; choose another --port"))?,
            None => match tokio::net::TcpListener::bind("127.0.0.1:8080").await {
                Ok(l) => l,
                Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await?,
            },
        };
        let addr = listener.local_addr()?;
        std::fs::write(
            config_path,
            CONFIG
                .replace("{port}", &addr.port().to_string())
                .replace("{every}", &a.every.max(1).to_string()),
        )?;
        let config = common::load(config_path)?;
        let state = edusync_server::AppState::open(config)?;
        let password = edusync_server::auth::random_hex(10);
        state.store.put_user(&edusync_store::ConsoleUser {
            name: "admin".into(),
            role: "admin".into(),
            password_hash: edusync_server::auth::hash_password(&password)
                .map_err(|e| anyhow::anyhow!("hashing the demo password failed: {e}"))?,
            created_at: edusync_store::now(),
        })?;
        let server = tokio::spawn(edusync_server::serve_on(
            listener,
            state.clone(),
            super::serve::shutdown_signal(),
        ));
        eprintln!("running the first sync cycles…");
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        while state
            .scheduler
            .slots
            .iter()
            .any(|s| !s.snapshot().attempted)
        {
            if server.is_finished() || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for slot in &state.scheduler.slots {
            if let Some(r) = slot.snapshot().last_report {
                println!(
                    "profile {}: run {} {}: created {}, updated {}, deleted {}, unchanged {}, quarantined {}",
                    r.profile, r.run_id, r.status, n(r.create), n(r.update), n(r.delete), n(r.unchanged), n(r.quarantined)
                );
            }
        }
        let base = format!("http://{addr}");
        println!();
        println!("console:      {base}/console");
        println!("  sign in as: admin");
        println!("  password:   {password}   (one-time: a new one is made each time the demo starts)");
        if let Some(student) = demo_student(&state) {
            let token = edusync_server::console::people::issue_token(&state, &student)
                .map_err(|e| anyhow::anyhow!("issuing a feed link: {e}"))?;
            println!("student {student}:");
            println!("  feed:        {base}/feeds/p/{token}.ics");
            println!("  subscribe:   webcal://{addr}/feeds/p/{token}.ics");
            println!("  my timetable: {base}/my/{token}");
            println!("  in the console: {base}/console/people?q={student}");
        }
        println!("calendars (one .ics file per event): {}", dir.join("calendars").display());
        println!("config used: {}", config_path.display());
        println!("cycles run every {}s; Ctrl-C to stop", a.every.max(1));
        match server.await {
            Ok(r) => r?,
            Err(e) => anyhow::bail!("the demo server stopped: {e}"),
        }
        println!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// The first student with events this week in the teaching profile.
fn demo_student(state: &edusync_server::AppState) -> Option<String> {
    let slot = state.scheduler.slot("teaching")?;
    let p = slot.published()?;
    let d = &p.desire;
    let now = jiff::Timestamp::now();
    let week = now
        .checked_add(jiff::SignedDuration::from_hours(24 * 7))
        .ok()?;
    d.tt.people
        .iter()
        .enumerate()
        .find_map(|(i, pe)| {
            (pe.kind == "student"
                && d.attendance.of(i as u32).iter().any(|&e| {
                    let s = d.tt.events[e as usize].start;
                    s >= now && s < week
                }))
            .then(|| pe.id.clone())
        })
        .or_else(|| {
            d.tt.people
                .iter()
                .enumerate()
                .find(|(i, _)| !d.attendance.of(*i as u32).is_empty())
                .map(|(_, pe)| pe.id.clone())
        })
}
