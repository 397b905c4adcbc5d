use std::process::ExitCode;

use anyhow::Result;

use super::common;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: crate::ConfigArg,
    /// The held run whose deletes to apply.
    pub run_id: i64,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let config = common::load(&a.config.config)?;
    let store = common::store(&config)?;
    let rt = common::runtime()?;
    let report = rt.block_on(edusync_engine::approve(&config, store.as_ref(), a.run_id))?;
    println!(
        "run {} ({}): {} held deletes applied{}",
        report.run_id,
        report.profile,
        report.delete,
        if report.failed_ops > 0 {
            format!(", {} failed", report.failed_ops)
        } else {
            String::new()
        }
    );
    for e in &report.errors {
        println!("  {e}");
    }
    Ok(if report.failed_ops > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
