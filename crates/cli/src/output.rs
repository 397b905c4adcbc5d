//! Logging set-up, error printing and progress display.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// `error: <what went wrong>`, with every cause on its own line.
pub fn print_error(e: &anyhow::Error) {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        let s = cause.to_string();
        if !e.to_string().contains(&s) {
            eprintln!("  caused by: {s}");
        }
    }
}

/// Progress on stderr: a bar on a terminal, plain lines otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {pos}/{len} ({per_sec}, {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        Progress { bar, quiet }
    }

    pub fn line(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None if !self.quiet => eprintln!("{msg}"),
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl edusync_engine::Progress for Progress {
    fn phase(&mut self, profile: &str, what: &str) {
        self.line(&format!("{profile}: {what}"));
    }
    fn total(&mut self, ops: u64) {
        if let Some(b) = &self.bar {
            b.set_length(ops);
            b.set_position(0);
        } else if !self.quiet && ops > 0 {
            eprintln!("applying {ops} operations");
        }
    }
    fn advance(&mut self, ops: u64) {
        if let Some(b) = &self.bar {
            b.inc(ops);
        }
    }
}

/// Groups digits: 5234567 → "5,234,567".
pub fn n(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
