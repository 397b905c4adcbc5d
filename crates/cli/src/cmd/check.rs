use std::process::ExitCode;

use anyhow::Result;

use super::common;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: crate::ConfigArg,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let config = match common::load(&a.config.config) {
        Ok(c) => c,
        Err(e) => {
            println!("✗ {e}");
            return Ok(ExitCode::from(1));
        }
    };
    println!(
        "✓ config {} is valid ({} profiles)",
        config.path.display(),
        config.profiles.len()
    );
    let mut problems = 0;
    match common::store(&config) {
        Ok(_) => println!("✓ state store {} opens", config.state.redacted()),
        Err(e) => {
            problems += 1;
            println!("✗ state store: {e:#}");
        }
    }
    let rt = common::runtime()?;
    for p in &config.profiles {
        match edusync_sources::probe_source(&p.source) {
            Ok(probe) => {
                let rows: Vec<String> =
                    probe.rows.iter().map(|(v, n)| format!("{v} {n}")).collect();
                println!(
                    "✓ profile {}: source {} has all eight views ({})",
                    p.name,
                    p.source.url.redacted(),
                    rows.join(", ")
                );
            }
            Err(e) => {
                problems += 1;
                println!("✗ profile {}: {e}", p.name);
            }
        }
        if let Err(e) = edusync_engine::renderer(p) {
            problems += 1;
            println!("✗ profile {}: {e}", p.name);
        }
        match edusync_engine::targets(p) {
            Ok(targets) => {
                for (name, t) in targets {
                    // Graph, CalDAV and Google prove access per calendar: probe one person's.
                    let probe = match t.kind() {
                        "graph" | "caldav" | "google" => edusync_engine::probe_person(p),
                        _ => (None, None),
                    };
                    match rt.block_on(t.check_person(probe.0.as_deref(), probe.1.as_deref())) {
                        Ok(msg) => println!("✓ profile {}: {msg}", p.name),
                        Err(e) => {
                            problems += 1;
                            println!("✗ profile {}: target {name}: {e}", p.name);
                        }
                    }
                }
            }
            Err(e) => {
                problems += 1;
                println!("✗ {e}");
            }
        }
    }
    if problems > 0 {
        println!("{problems} problem(s) found");
        Ok(ExitCode::from(1))
    } else {
        println!("all good");
        Ok(ExitCode::SUCCESS)
    }
}
