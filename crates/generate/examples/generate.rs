//! Times a generation run: `cargo run --release -p edusync-generate --example generate -- OUT [STUDENTS] [SEED]`.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().ok_or("usage: generate OUT [STUDENTS] [SEED]")?;
    let students = args.next().map(|s| s.parse()).transpose()?.unwrap_or(300);
    let seed = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let opts = edusync_generate::GenerateOptions {
        students,
        seed,
        start: edusync_generate::default_start(jiff::civil::Date::new(2026, 11, 1)?),
    };
    let t = Instant::now();
    let summary = edusync_generate::generate(out.as_ref(), &opts, &mut |line| {
        println!("{:>8.2?} {line}", t.elapsed())
    })?;
    println!(
        "{:.2?}: {} people, {} events, {} exams, {} entries ({:.1}/student), {} exam entries, {} bad rows",
        t.elapsed(),
        summary.people,
        summary.events,
        summary.exam_events,
        summary.entries_estimate,
        summary.entries_estimate as f64 / summary.students as f64,
        summary.exam_entries,
        summary.bad_rows.len()
    );
    Ok(())
}
