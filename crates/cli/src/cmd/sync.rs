use std::process::ExitCode;

use anyhow::Result;

use super::common::{self, Format};
use crate::output::{n, Progress};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: crate::ConfigArg,
    /// Only this profile (default: every profile, in config order).
    #[arg(long)]
    pub profile: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let config = common::load(&a.config.config)?;
    let profiles: Vec<_> = match &a.profile {
        Some(name) => vec![common::profile(&config, name)?],
        None => config.profiles.iter().collect(),
    };
    let store = common::store(&config)?;
    let rt = common::runtime()?;
    let mut worst = 0u8;
    for profile in profiles {
        let mut progress = Progress::new(a.format == Format::Json);
        let report = rt.block_on(edusync_engine::sync(
            &config,
            profile,
            store.as_ref(),
            &mut progress,
        ))?;
        progress.finish();
        let code = match report.status {
            "failed" => 1,
            "held" => 2,
            _ => 0,
        };
        worst = match (worst, code) {
            (1, _) | (_, 1) => 1,
            (2, _) | (_, 2) => 2,
            _ => 0,
        };
        if a.format == Format::Json {
            println!("{}", serde_json::to_string(&report)?);
            continue;
        }
        println!(
            "profile {}: run {} {}: created {}, updated {}, deleted {}, unchanged {}, quarantined {}",
            report.profile,
            report.run_id,
            report.status,
            n(report.create),
            n(report.update),
            n(if report.status == "held" { 0 } else { report.delete }),
            n(report.unchanged),
            n(report.quarantined)
        );
        if let Some(reason) = &report.hold_reason {
            println!(
                "  {} deletes HELD by the deletion guard: {reason}\n  inspect the run, then apply them with: edusync approve --config {} {}",
                n(report.held_deletes),
                a.config.config.display(),
                report.run_id
            );
        }
        if report.failed_ops > 0 {
            println!("  {} operations failed; first ones:", n(report.failed_ops));
            for e in &report.errors {
                println!("    {e}");
            }
        }
        if let Some(e) = &report.error {
            println!("  error: {e}");
        }
    }
    Ok(ExitCode::from(worst))
}
