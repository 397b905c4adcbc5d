use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Create a console account.
    Add {
        #[command(flatten)]
        config: crate::ConfigArg,
        /// Account name.
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
        /// Environment variable holding the password.
        #[arg(long, value_name = "VAR")]
        password_env: String,
    },
}

pub fn run(_cmd: UserCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is being built")
}
