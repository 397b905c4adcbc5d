//! Runs the Microsoft Graph emulator by hand, for demos and manual testing.
//!
//! ```text
//! edusync-graph-emulator --listen 127.0.0.1:0 --users users.txt
//! edusync-graph-emulator --auto-users
//! ```
//!
//! The users file has one UPN a line; `#` starts a comment; a line
//! `upn unlicensed` or `upn unknown` sets that mailbox's state.

use std::time::Duration;

use clap::Parser;
use edusync_testkit::cli::CommonArgs;
use edusync_testkit::graph::{self, GraphEmulatorConfig, MailboxState, UserSpec};

#[derive(Parser, Debug)]
#[command(
    name = "edusync-graph-emulator",
    about = "A Microsoft Graph emulator (token endpoint, calendars, events, $batch, Outlook limits) for demos and tests; in the users file, `upn unlicensed` or `upn unknown` sets that mailbox's state"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Tenant accepted by the token endpoint.
    #[arg(long, default_value = "contoso.onmicrosoft.com")]
    tenant_id: String,
    /// Client id accepted by the token endpoint.
    #[arg(long, default_value = "00000000-0000-0000-0000-000000000000")]
    client_id: String,
    /// Environment variable holding the accepted client secret (default secret: `emulator-secret`).
    #[arg(long)]
    client_secret_env: Option<String>,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = 3599)]
    token_lifetime_secs: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let c = &args.common;
    let users = c
        .users_or_exit(&["ok", "unlicensed", "unknown"])
        .into_iter()
        .map(|(upn, state)| UserSpec {
            upn,
            id: None,
            state: match state.as_deref() {
                Some("unlicensed") => MailboxState::Unlicensed,
                Some("unknown") => MailboxState::Unknown,
                _ => MailboxState::Ok,
            },
        })
        .collect();
    let mut config = GraphEmulatorConfig {
        listen: c.listen,
        tenant_id: args.tenant_id,
        client_id: args.client_id,
        token_lifetime: Duration::from_secs(args.token_lifetime_secs),
        users,
        auto_users: c.auto_users,
        ..GraphEmulatorConfig::default()
    };
    if let Some(var) = &args.client_secret_env {
        match std::env::var(var) {
            Ok(s) => config.client_secret = s,
            Err(_) => {
                eprintln!("error: --client-secret-env {var}: the variable is not set");
                std::process::exit(2);
            }
        }
    }
    let emu = match graph::try_spawn(config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", c.listen);
            std::process::exit(1);
        }
    };
    if c.latency_ms > 0 {
        emu.set_latency(Duration::from_millis(c.latency_ms));
    }
    println!("{}", emu.url());
    println!("graph_url = \"{}\"", emu.url());
    println!("authority_url = \"{}\"", emu.authority_url());
    println!("admin: {}/_emulator/stats", emu.url());
    let _ = tokio::signal::ctrl_c().await;
}
