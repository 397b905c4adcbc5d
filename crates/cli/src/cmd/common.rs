//! Loading config and state, shared by the commands.

use anyhow::{Context, Result};
use edusync_config::{Config, Profile};
use edusync_store::Store;

pub fn load(path: &std::path::Path) -> Result<Config> {
    Ok(Config::load(path)?)
}

pub fn store(config: &Config) -> Result<Box<dyn Store>> {
    edusync_store::open(config).with_context(|| {
        format!(
            "opening the state store named by `state` in {}",
            config.path.display()
        )
    })
}

pub fn profile<'c>(config: &'c Config, name: &str) -> Result<&'c Profile> {
    config.profile(name).ok_or_else(|| {
        let names: Vec<&str> = config.profiles.iter().map(|p| p.name.as_str()).collect();
        anyhow::anyhow!(
            "profile {name:?} is not in {}; profiles there: {}",
            config.path.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )
    })
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// `--format text|json`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}
