use std::process::ExitCode;

use anyhow::Result;

use super::common;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: crate::ConfigArg,
    /// The profile whose events to remove.
    #[arg(long)]
    pub profile: String,
    /// Confirm: remove every event this profile created, from every target.
    #[arg(long)]
    pub yes: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let config = common::load(&a.config.config)?;
    let profile = common::profile(&config, &a.profile)?;
    if !a.yes {
        anyhow::bail!(
            "cleardown removes every event profile {:?} created from every target; add --yes to confirm",
            profile.name
        );
    }
    let store = common::store(&config)?;
    let rt = common::runtime()?;
    let (run, removed) = rt.block_on(edusync_engine::cleardown(profile, store.as_ref()))?;
    println!(
        "profile {}: cleardown run {run} removed {removed} events; people's own events were not touched",
        profile.name
    );
    Ok(ExitCode::SUCCESS)
}
