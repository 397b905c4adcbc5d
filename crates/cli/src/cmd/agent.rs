//! `edusync agent`: the site agent (runs at a school until stopped).

use std::process::ExitCode;

use anyhow::Result;
use edusync_collect::agent::{Agent, AgentConfig};

#[derive(clap::Args)]
pub struct Args {
    /// The agent's config file (TOML; not the hub's edusync.toml).
    #[command(flatten)]
    pub config: crate::ConfigArg,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let cfg = AgentConfig::load(&a.config.config)?;
    eprintln!(
        "edusync agent: site {} -> {} ({} dataset(s), state in {})",
        cfg.site,
        cfg.hub,
        cfg.datasets.len(),
        cfg.state_dir.display()
    );
    let agent = Agent::new(cfg)?;
    // The agent is small: one thread is plenty, and kind to a school server.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(agent.run(super::serve::shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}
