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

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use edusync_testkit::cli::CommonArgs;
use edusync_testkit::google::{self, GoogleEmulatorConfig, RateLimit};

#[derive(Parser, Debug)]
#[command(
    name = "edusync-google-emulator",
    about = "A Google Calendar API emulator (service-account token endpoint, calendars, events, quotas, usage limits) for demos and tests; in the users file, `email read-only` starts that calendar usage-limited"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Writes a service account key file the emulator accepts here.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Requests per user per minute (Google: 600).
    #[arg(long, default_value_t = 600)]
    user_quota: u32,
    /// Requests of the project per minute (Google: 10,000).
    #[arg(long, default_value_t = 10_000)]
    project_quota: u32,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let c = &args.common;
    let listed = c.users_or_exit(&["read-only"]);
    let users: Vec<String> = listed.iter().map(|(u, _)| u.clone()).collect();
    let read_only = listed.iter().filter(|(_, s)| s.is_some()).map(|(u, _)| u);
    let minute = Duration::from_secs(60);
    let config = GoogleEmulatorConfig {
        listen: c.listen,
        users,
        auto_users: c.auto_users,
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
    for u in read_only {
        emu.set_read_only(u, true);
    }
    emu.set_latency(Duration::from_millis(c.latency_ms));
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
