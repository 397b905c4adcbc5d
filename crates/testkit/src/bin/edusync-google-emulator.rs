//! Runs the Google Calendar API emulator by hand, for demos and manual testing.
//!
//! ```text
//! edusync-google-emulator --auto-users --key-file key.json
//! edusync-google-emulator --users users.txt --latency-ms 100
//! ```
//!
//! The users file has one email a line; `#` starts a comment; a line
//! `email read-only` starts that person's calendar usage-limited. With
//! `--key-file`, a service account key file the emulator accepts is written
//! there (the test key; never use it anywhere else).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use edusync_testkit::google::{self, GoogleEmulatorConfig, RateLimit};

#[derive(Parser, Debug)]
#[command(
    name = "edusync-google-emulator",
    about = "A Google Calendar API emulator (service-account token endpoint, calendars, events, quotas, usage limits) for demos and tests"
)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// File of users: one email a line, optionally followed by `read-only`.
    #[arg(
        long,
        conflicts_with = "auto_users",
        required_unless_present = "auto_users"
    )]
    users: Option<PathBuf>,
    /// Any email is a user of the domain.
    #[arg(long)]
    auto_users: bool,
    /// Writes a service account key file the emulator accepts here.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Requests per user per minute (Google: 600).
    #[arg(long, default_value_t = 600)]
    user_quota: u32,
    /// Requests of the project per minute (Google: 10,000).
    #[arg(long, default_value_t = 10_000)]
    project_quota: u32,
    /// Added latency per API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

fn read_users(path: &PathBuf) -> Result<(Vec<String>, Vec<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut users, mut read_only) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut parts = line.split_whitespace();
        let Some(email) = parts.next() else { continue };
        match parts.next() {
            None => {}
            Some("read-only") => read_only.push(email.to_string()),
            Some(other) => {
                return Err(format!(
                    "{}:{}: unknown flag '{other}' (use read-only or nothing)",
                    path.display(),
                    n + 1
                ))
            }
        }
        users.push(email.to_string());
    }
    Ok((users, read_only))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let (users, read_only) = match &args.users {
        Some(p) => read_users(p).unwrap_or_else(|e| {
            eprintln!("error: --users {e}");
            std::process::exit(2);
        }),
        None => (Vec::new(), Vec::new()),
    };
    let minute = Duration::from_secs(60);
    let config = GoogleEmulatorConfig {
        listen: args.listen,
        users,
        auto_users: args.auto_users,
        user_rate: RateLimit {
            requests: args.user_quota,
            window: minute,
        },
        project_rate: Some(RateLimit {
            requests: args.project_quota,
            window: minute,
        }),
        ..GoogleEmulatorConfig::default()
    };
    let emu = google::spawn(config).await;
    for u in &read_only {
        emu.set_read_only(u, true);
    }
    emu.set_latency(Duration::from_millis(args.latency_ms));
    if let Some(path) = &args.key_file {
        if let Err(e) = std::fs::write(path, emu.key_file_json()) {
            eprintln!("error: --key-file {}: {e}", path.display());
            std::process::exit(1);
        }
        println!("key file: {}", path.display());
    }
    println!("{}", emu.url());
    println!("token_url = \"{}\"", emu.token_url());
    println!("api_url = \"{}\"", emu.api_url());
    println!("admin: {}/_emulator/stats", emu.url());
    let _ = tokio::signal::ctrl_c().await;
}
