//! What the emulator binaries (`edusync-graph-emulator`,
//! `edusync-google-emulator`) share: the common flags and the users file
//! (one address a line, `#` starts a comment, an optional word after the
//! address setting that user's state).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The flags every emulator binary takes.
#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// File of users: one address a line, optionally followed by a state
    /// word (see the binary's description).
    #[arg(
        long,
        conflicts_with = "auto_users",
        required_unless_present = "auto_users"
    )]
    pub users: Option<PathBuf>,
    /// Any address is a user, created on first use.
    #[arg(long)]
    pub auto_users: bool,
    /// Added latency per API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
}

/// A users file's `(address, state word)` lines; a word not in `states`
/// is an error naming the file and line.
pub fn read_users(path: &Path, states: &[&str]) -> Result<Vec<(String, Option<String>)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut parts = line.split_whitespace();
        let Some(address) = parts.next() else {
            continue;
        };
        let state = parts.next().map(str::to_string);
        if let Some(s) = &state {
            if !states.contains(&s.as_str()) {
                return Err(format!(
                    "{}:{}: unknown state '{s}' (use {} or nothing)",
                    path.display(),
                    n + 1,
                    states.join(", ")
                ));
            }
        }
        users.push((address.to_string(), state));
    }
    Ok(users)
}

impl CommonArgs {
    /// The users of `--users` (none with `--auto-users`); exits with a
    /// message on a file that cannot be read or has an unknown state.
    pub fn users_or_exit(&self, states: &[&str]) -> Vec<(String, Option<String>)> {
        let Some(path) = &self.users else {
            return Vec::new();
        };
        read_users(path, states).unwrap_or_else(|e| {
            eprintln!("error: --users {e}");
            std::process::exit(2);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_addresses_states_and_comments_and_names_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.txt");
        std::fs::write(
            &path,
            "# staff\nada@uni.example\n\nbo@uni.example read-only # usage-limited\n",
        )
        .unwrap();
        assert_eq!(
            read_users(&path, &["read-only"]).unwrap(),
            vec![
                ("ada@uni.example".to_string(), None),
                ("bo@uni.example".to_string(), Some("read-only".to_string())),
            ]
        );
        let err = read_users(&path, &["unlicensed", "unknown"]).unwrap_err();
        assert!(
            err.ends_with(
                "users.txt:4: unknown state 'read-only' (use unlicensed, unknown or nothing)"
            ),
            "{err}"
        );
    }
}
