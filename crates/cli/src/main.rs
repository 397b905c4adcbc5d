//! The `edusync` binary: command-line parsing, config loading, logging set-up.
//!
//! Thin glue: every command hands over to a library crate as soon as its
//! arguments are parsed. No sync logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod output;

/// Keeps an institution's timetable in its people's calendars, and gets data
/// home from sites that are only sometimes online.
#[derive(Parser)]
#[command(name = "edusync", version, about, long_about = None)]
struct Cli {
    /// More log output (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything needed to see edusync work: sample timetable, sync, console.
    Demo(cmd::demo::Args),
    /// Write a synthetic, realistic timetable (the source contract, as SQLite).
    Generate(cmd::generate::Args),
    /// Validate the config and reach every source and target.
    Check(cmd::check::Args),
    /// Dry run: what a sync would do, without touching any calendar.
    Plan(cmd::plan::Args),
    /// One sync cycle of a profile (or of all profiles), then exit.
    Sync(cmd::sync::Args),
    /// Remove from every target every event this profile created, and nothing else.
    Cleardown(cmd::cleardown::Args),
    /// Apply the deletes of a run held by the deletion guard.
    Approve(cmd::approve::Args),
    /// The long-running service: scheduler, admin console, feeds, hub, metrics.
    Serve(cmd::serve::Args),
    /// Console accounts.
    #[command(subcommand)]
    User(cmd::user::UserCommand),
    /// Sites that report to the hub.
    #[command(subcommand)]
    Site(cmd::site::SiteCommand),
    /// The site agent: ships a site's data files to the hub whenever it can.
    Agent(cmd::agent::Args),
    /// Performance benchmarks (see BENCHMARKS.md).
    Bench(cmd::bench::Args),
}

/// Shared `--config FILE` argument.
#[derive(clap::Args, Clone)]
pub struct ConfigArg {
    /// The edusync config file (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Demo(a) => cmd::demo::run(a),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Plan(a) => cmd::plan::run(a),
        Command::Sync(a) => cmd::sync::run(a),
        Command::Cleardown(a) => cmd::cleardown::run(a),
        Command::Approve(a) => cmd::approve::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::User(c) => cmd::user::run(c),
        Command::Site(c) => cmd::site::run(c),
        Command::Agent(a) => cmd::agent::run(a),
        Command::Bench(a) => cmd::bench::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            output::print_error(&e);
            ExitCode::from(1)
        }
    }
}
