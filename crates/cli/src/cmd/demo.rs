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
    /// Seconds between sync cycles while the demo runs.
    #[arg(long, default_value_t = 60)]
    pub every: u64,
    /// Sync once and exit instead of running until Ctrl-C.
    #[arg(long)]
    pub once: bool,
}

const CONFIG: &str = r#"# Written by `edusync demo`. A real deployment's config looks like this,
# with its own source and targets: see edusync.example.toml.
state = "sqlite://./state.db"

[server]
listen = "127.0.0.1:8080"

[[profiles]]
name = "teaching"
timezone = "Europe/London"
schedule = "1m"
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
schedule = "1m"
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
    std::fs::write(&config_path, CONFIG)?;
    let config = common::load(&config_path)?;
    let store = common::store(&config)?;
    let rt = common::runtime()?;
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
