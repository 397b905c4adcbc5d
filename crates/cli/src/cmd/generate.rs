use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::output::n;

#[derive(clap::Args)]
pub struct Args {
    /// Where to write the timetable (an SQLite file; replaced if it exists).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Number of students (about 140 calendar entries each).
    #[arg(long, default_value_t = 2000)]
    pub students: u32,
    /// Random seed: the same seed gives the same timetable.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// First Monday of the academic year (YYYY-MM-DD); default: this academic year's.
    #[arg(long, value_name = "DATE")]
    pub start: Option<jiff::civil::Date>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let start = a
        .start
        .unwrap_or_else(|| edusync_generate::default_start(jiff::Zoned::now().date()));
    let opts = edusync_generate::GenerateOptions {
        students: a.students,
        seed: a.seed,
        start,
    };
    let s = edusync_generate::generate(&a.out, &opts, &mut |line| eprintln!("{line}"))?;
    println!(
        "wrote {}: {} people ({} students, {} staff), {} teaching events, {} exam events, about {} teaching calendar entries; {} rows deliberately bad (they show quarantine)",
        a.out.display(),
        n(s.people),
        n(s.students),
        n(s.staff),
        n(s.events),
        n(s.exam_events),
        n(s.entries_estimate),
        s.bad_rows.len()
    );
    Ok(ExitCode::SUCCESS)
}
