//! `edusync user add`: console accounts (argon2id password hashes in the state store).

use std::process::ExitCode;

use anyhow::{bail, Context};

use super::common;

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Create a console account (or change the role and password of an existing one).
    Add {
        #[command(flatten)]
        config: crate::ConfigArg,
        /// Account name (letters, digits, - _ . @).
        name: String,
        /// viewer (reads), operator (also runs, pauses, approves) or admin (also manages accounts and feed links).
        #[arg(long)]
        role: String,
        /// Environment variable holding the password (at least 12 characters); never pass it as an argument.
        #[arg(long, value_name = "VAR")]
        password_env: String,
    },
}

pub fn run(cmd: UserCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCommand::Add {
            config,
            name,
            role,
            password_env,
        } => {
            let config = common::load(&config.config)?;
            let password = std::env::var(&password_env).with_context(|| {
                format!("environment variable {password_env} (named by --password-env) is not set; put the account's password in it")
            })?;
            if let Err(e) =
                edusync_server::console::admin::validate_account(&name, &role, &password)
            {
                bail!("cannot add account {name:?}: {e}");
            }
            let store = common::store(&config)?;
            let existed = store.user(&name)?.is_some();
            let hash = edusync_server::auth::hash_password(&password)
                .map_err(|e| anyhow::anyhow!("hashing the password failed: {e}"))?;
            store.put_user(&edusync_store::ConsoleUser {
                name: name.clone(),
                role: role.clone(),
                password_hash: hash,
                created_at: edusync_store::now(),
            })?;
            store.record_audit(&edusync_store::AuditEntry {
                at: edusync_store::now(),
                user: "cli".into(),
                action: "user-add".into(),
                target: name.clone(),
                detail: format!(
                    "role {role}{}",
                    if existed {
                        " (password and role replaced)"
                    } else {
                        ""
                    }
                ),
            })?;
            println!(
                "account {name} {} with role {role}",
                if existed { "updated" } else { "created" }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
