//! `edusync site add`: registers a site with the hub.

use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Subcommand)]
pub enum SiteCommand {
    /// Register a site with the hub and print its new token (shown only once).
    Add {
        #[command(flatten)]
        config: crate::ConfigArg,
        /// The site's id, e.g. school-017.
        site_id: String,
    },
}

pub fn run(cmd: SiteCommand) -> Result<ExitCode> {
    match cmd {
        SiteCommand::Add { config, site_id } => {
            let config = super::common::load(&config.config)?;
            let store = edusync_collect::hub::open_store(&config)?;
            let token = edusync_collect::hub::add_site(&*store, &site_id)?;
            // The token alone on stdout, so scripts can capture it; it is not stored anywhere in clear.
            println!("{token}");
            eprintln!(
                "Site {site_id:?} registered. Put the token above in the agent's environment \
(the variable its config names in `token_env`); it cannot be shown again."
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
