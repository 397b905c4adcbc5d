//! Runs the Microsoft Graph emulator by hand, for demos and manual testing.
//!
//! ```text
//! edusync-graph-emulator --listen 127.0.0.1:0 --users users.txt
//! edusync-graph-emulator --auto-users
//! ```
//!
//! The users file has one UPN a line; `#` starts a comment; a line
//! `upn unlicensed` or `upn unknown` sets that mailbox's state.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use edusync_testkit::graph::{self, GraphEmulatorConfig, MailboxState, UserSpec};

#[derive(Parser, Debug)]
#[command(
    name = "edusync-graph-emulator",
    about = "A Microsoft Graph emulator (token endpoint, calendars, events, $batch, Outlook limits) for demos and tests"
)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// File of mailboxes: one UPN a line, optionally followed by `unlicensed` or `unknown`.
    #[arg(
        long,
        conflicts_with = "auto_users",
        required_unless_present = "auto_users"
    )]
    users: Option<PathBuf>,
    /// Create any mailbox on first use.
    #[arg(long)]
    auto_users: bool,
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
    /// Added latency per Graph request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

fn read_users(path: &PathBuf) -> Result<Vec<UserSpec>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let upn = parts.next().unwrap_or_default();
        let state = match parts.next() {
            None | Some("ok") => MailboxState::Ok,
            Some("unlicensed") => MailboxState::Unlicensed,
            Some("unknown") => MailboxState::Unknown,
            Some(other) => {
                return Err(format!(
                    "{}:{}: unknown mailbox state '{other}' (use ok, unlicensed or unknown)",
                    path.display(),
                    n + 1
                ))
            }
        };
        users.push(UserSpec {
            upn: upn.to_string(),
            id: None,
            state,
        });
    }
    Ok(users)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let users = match &args.users {
        Some(p) => match read_users(p) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("error: --users {e}");
                std::process::exit(2);
            }
        },
        None => Vec::new(),
    };
    let mut config = GraphEmulatorConfig {
        listen: args.listen,
        tenant_id: args.tenant_id,
        client_id: args.client_id,
        token_lifetime: Duration::from_secs(args.token_lifetime_secs),
        users,
        auto_users: args.auto_users,
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
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    if args.latency_ms > 0 {
        emu.set_latency(Duration::from_millis(args.latency_ms));
    }
    println!("{}", emu.url());
    println!("graph_url = \"{}\"", emu.url());
    println!("authority_url = \"{}\"", emu.authority_url());
    println!("admin: {}/_emulator/stats", emu.url());
    let _ = tokio::signal::ctrl_c().await;
}
