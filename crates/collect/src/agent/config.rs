//! The agent's own config file (TOML), separate from the hub's `edusync.toml`.
//!
//! ```toml
//! hub = "http://hub.example.org:8080"   # required: the central `edusync serve`
//! site = "school-017"                   # required: this site's id, as given to `edusync site add`
//! token_env = "EDUSYNC_SITE_TOKEN"      # required: env var holding the token `site add` printed
//! state_dir = "./agent-state"           # required: the ledger of what the hub acknowledged
//! scan_interval = "30s"                 # how often the folders are looked at. Default 30s
//! settle = "10s"                        # a file must be unchanged this long before it is sent. Default 10s
//! heartbeat_interval = "5m"             # Default 5m (one is also sent at start-up)
//! chunk_size = 1048576                  # bytes per chunk before compression. Default 1 MiB (4 KiB–16 MiB)
//! compression_level = 3                 # zstd level 1–19. Default 3
//! max_bytes_per_second = 0              # upload bandwidth cap after compression; 0 = none. Default 0
//! parallel_uploads = 4                  # files sent at once (1–32). Default 4
//! proxy = "http://proxy.local:3128"     # HTTP proxy for reaching the hub. Default: none (HTTP_PROXY is ignored)
//! retry_max = "5m"                      # longest wait between attempts while the hub is unreachable. Default 5m
//! request_timeout = "2m"                # one request, start to end. Default 2m
//!
//! [[datasets]]
//! name = "progress"                     # required: [A-Za-z0-9._-], unique
//! path = "/var/lib/clix/progress"       # required: folder to watch
//! glob = "**/*.csv"                     # which files, relative to path. Default "**/*"
//! prune_after = "30d"                   # delete a file this long after the hub acknowledged it
//!                                       # (if unchanged since). Default: never (off)
//! ```
//!
//! Relative paths are relative to the folder of the config file. Every error
//! names the file, the line and the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::glob::Glob;
use crate::protocol::{is_valid_name, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};

/// Everything that can be wrong with an agent config file.
#[derive(Debug, thiserror::Error)]
pub enum AgentConfigError {
    #[error("cannot read agent config file {path}: {source} (check the path given to --config)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("agent config file {path}, line {line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("environment variable {var} is not set (named by `token_env` in {path}); export the token `edusync site add` printed before starting the agent")]
    MissingToken { var: String, path: PathBuf },
}

/// A loaded, validated agent config.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub path: PathBuf,
    /// Base URL of the hub, without a trailing `/`.
    pub hub: String,
    pub site: String,
    pub token_env: String,
    pub state_dir: PathBuf,
    pub scan_interval: Duration,
    pub settle: Duration,
    pub heartbeat_interval: Duration,
    pub chunk_size: u64,
    pub compression_level: i32,
    /// 0 = no cap.
    pub max_bytes_per_second: u64,
    /// Files sent at once.
    pub parallel_uploads: usize,
    pub proxy: Option<String>,
    pub retry_max: Duration,
    pub request_timeout: Duration,
    pub datasets: Vec<DatasetConfig>,
}

#[derive(Debug, Clone)]
pub struct DatasetConfig {
    pub name: String,
    pub path: PathBuf,
    pub glob: Glob,
    pub prune_after: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    hub: Option<Spanned<String>>,
    site: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
    scan_interval: Option<Spanned<String>>,
    settle: Option<Spanned<String>>,
    heartbeat_interval: Option<Spanned<String>>,
    chunk_size: Option<Spanned<i64>>,
    compression_level: Option<Spanned<i64>>,
    max_bytes_per_second: Option<Spanned<i64>>,
    parallel_uploads: Option<Spanned<i64>>,
    proxy: Option<Spanned<String>>,
    retry_max: Option<Spanned<String>>,
    request_timeout: Option<Spanned<String>>,
    #[serde(default)]
    datasets: Vec<Spanned<RawDataset>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    name: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    glob: Option<Spanned<String>>,
    prune_after: Option<Spanned<String>>,
}

struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
    dir: PathBuf,
}

impl Cx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text[..end].bytes().filter(|b| *b == b'\n').count() + 1
    }
    fn err(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> AgentConfigError {
        AgentConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line_of(span.start),
            message: message.into(),
        }
    }
    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
    fn required(
        &self,
        v: Option<Spanned<String>>,
        key: &str,
        hint: &str,
    ) -> Result<Spanned<String>, AgentConfigError> {
        match v {
            Some(s) if !s.get_ref().trim().is_empty() => Ok(s),
            Some(s) => Err(self.err(s.span(), format!("`{key}` is empty; {hint}"))),
            None => Err(AgentConfigError::Invalid {
                path: self.path.to_path_buf(),
                line: 1,
                message: format!("missing required key `{key}`; {hint}"),
            }),
        }
    }
    fn duration(
        &self,
        v: Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, AgentConfigError> {
        match v {
            None => Ok(default),
            Some(s) => parse_duration(s.get_ref()).ok_or_else(|| {
                self.err(
                    s.span(),
                    format!("`{key}` = {:?} is not a duration; write e.g. \"500ms\", \"30s\", \"5m\", \"1h\", \"30d\"", s.get_ref()),
                )
            }),
        }
    }
    fn int(
        &self,
        v: Option<Spanned<i64>>,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        default: i64,
    ) -> Result<i64, AgentConfigError> {
        match v {
            None => Ok(default),
            Some(n) if range.contains(n.get_ref()) => Ok(*n.get_ref()),
            Some(n) => Err(self.err(
                n.span(),
                format!(
                    "`{key}` = {} must be a whole number from {} to {}",
                    n.get_ref(),
                    range.start(),
                    range.end()
                ),
            )),
        }
    }
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<AgentConfig, AgentConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| AgentConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        AgentConfig::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<AgentConfig, AgentConfigError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let cx = Cx { path, text, dir };
        let raw: Raw = toml::from_str(text).map_err(|e| AgentConfigError::Invalid {
            path: path.to_path_buf(),
            line: e.span().map(|s| cx.line_of(s.start)).unwrap_or(1),
            message: e.message().to_string(),
        })?;

        let hub = cx.required(
            raw.hub,
            "hub",
            "add e.g. hub = \"http://hub.example.org:8080\"",
        )?;
        if !(hub.get_ref().starts_with("http://") || hub.get_ref().starts_with("https://")) {
            return Err(cx.err(
                hub.span(),
                format!(
                    "`hub` = {:?} must start with http:// or https://",
                    hub.get_ref()
                ),
            ));
        }
        let site = cx.required(
            raw.site,
            "site",
            "add e.g. site = \"school-017\" (the id given to `edusync site add`)",
        )?;
        if !is_valid_name(site.get_ref()) {
            return Err(cx.err(
                site.span(),
                format!(
                    "`site` = {:?}: use 1–64 letters, digits, '.', '-' or '_'",
                    site.get_ref()
                ),
            ));
        }
        let token_env = cx.required(
            raw.token_env,
            "token_env",
            "add e.g. token_env = \"EDUSYNC_SITE_TOKEN\" and export the token in that variable",
        )?;
        let state_dir = cx.required(
            raw.state_dir,
            "state_dir",
            "add e.g. state_dir = \"./agent-state\"",
        )?;
        let chunk_size = cx.int(
            raw.chunk_size,
            "chunk_size",
            MIN_CHUNK_SIZE as i64..=MAX_CHUNK_SIZE as i64,
            1 << 20,
        )? as u64;
        let compression_level =
            cx.int(raw.compression_level, "compression_level", 1..=19, 3)? as i32;
        let max_bytes_per_second = cx.int(
            raw.max_bytes_per_second,
            "max_bytes_per_second",
            0..=i64::MAX,
            0,
        )? as u64;
        if max_bytes_per_second != 0 && max_bytes_per_second < 1024 {
            return Err(AgentConfigError::Invalid {
                path: path.to_path_buf(),
                line: 1,
                message: "`max_bytes_per_second` must be 0 (no cap) or at least 1024".into(),
            });
        }
        let proxy = match raw.proxy {
            None => None,
            Some(p)
                if p.get_ref().starts_with("http://")
                    || p.get_ref().starts_with("https://")
                    || p.get_ref().starts_with("socks5://") =>
            {
                Some(p.into_inner())
            }
            Some(p) => {
                return Err(cx.err(
                    p.span(),
                    format!(
                        "`proxy` = {:?} must be a URL like \"http://proxy.local:3128\"",
                        p.get_ref()
                    ),
                ))
            }
        };

        let mut datasets: Vec<DatasetConfig> = Vec::new();
        for (i, d) in raw.datasets.into_iter().enumerate() {
            let span = d.span();
            let d = d.into_inner();
            let name = match d.name {
                Some(n) if is_valid_name(n.get_ref()) => n,
                Some(n) => return Err(cx.err(n.span(), format!("datasets[{i}].name = {:?}: use 1–64 letters, digits, '.', '-' or '_' (not starting with '.')", n.get_ref()))),
                None => return Err(cx.err(span, format!("datasets[{i}] has no `name`; add e.g. name = \"progress\""))),
            };
            if datasets.iter().any(|x| x.name == *name.get_ref()) {
                return Err(cx.err(name.span(), format!("datasets[{i}].name = {:?} is already used by another dataset; names must be unique", name.get_ref())));
            }
            let Some(dpath) = d.path else {
                return Err(cx.err(span, format!("datasets[{i}] ({:?}) has no `path`; add the folder to watch, e.g. path = \"/var/lib/clix/progress\"", name.get_ref())));
            };
            let glob = match d.glob {
                None => Glob::new("**/*").expect("valid"),
                Some(g) => Glob::new(g.get_ref()).map_err(|m| {
                    cx.err(
                        g.span(),
                        format!("datasets[{i}].glob = {:?}: {m}", g.get_ref()),
                    )
                })?,
            };
            let prune_after = match d.prune_after {
                None => None,
                Some(p) => Some(cx.duration(
                    Some(p),
                    &format!("datasets[{i}].prune_after"),
                    Duration::ZERO,
                )?),
            };
            datasets.push(DatasetConfig {
                name: name.into_inner(),
                path: cx.resolve(dpath.get_ref()),
                glob,
                prune_after,
            });
        }
        if datasets.is_empty() {
            return Err(AgentConfigError::Invalid {
                path: path.to_path_buf(),
                line: cx.line_of(text.len()),
                message: "no [[datasets]]; add at least one with name, path and glob".into(),
            });
        }

        Ok(AgentConfig {
            path: path.to_path_buf(),
            hub: hub.get_ref().trim_end_matches('/').to_string(),
            site: site.into_inner(),
            token_env: token_env.into_inner(),
            state_dir: cx.resolve(state_dir.get_ref()),
            scan_interval: cx.duration(
                raw.scan_interval,
                "scan_interval",
                Duration::from_secs(30),
            )?,
            settle: cx.duration(raw.settle, "settle", Duration::from_secs(10))?,
            heartbeat_interval: cx.duration(
                raw.heartbeat_interval,
                "heartbeat_interval",
                Duration::from_secs(300),
            )?,
            chunk_size,
            compression_level,
            max_bytes_per_second,
            parallel_uploads: cx.int(raw.parallel_uploads, "parallel_uploads", 1..=32, 4)? as usize,
            proxy,
            retry_max: cx.duration(raw.retry_max, "retry_max", Duration::from_secs(300))?,
            request_timeout: cx.duration(
                raw.request_timeout,
                "request_timeout",
                Duration::from_secs(120),
            )?,
            datasets,
        })
    }

    /// Reads the site token from the environment variable named by `token_env`.
    pub fn token(&self) -> Result<secrecy::SecretString, AgentConfigError> {
        match std::env::var(&self.token_env) {
            Ok(v) if !v.trim().is_empty() => Ok(secrecy::SecretString::from(v.trim().to_string())),
            _ => Err(AgentConfigError::MissingToken {
                var: self.token_env.clone(),
                path: self.path.clone(),
            }),
        }
    }
}

/// Parses `"500ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"30d"`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    let mut total_ms: u64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.chars().next()? {
                's' => (1000, 1),
                'm' => (60_000, 1),
                'h' => (3_600_000, 1),
                'd' => (86_400_000, 1),
                _ => return None,
            }
        };
        rest = &rest[len..];
        total_ms = total_ms.checked_add(n.checked_mul(unit_ms)?)?;
    }
    Some(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, AgentConfigError> {
        AgentConfig::parse(Path::new("/etc/edusync/agent.toml"), text)
    }

    const GOOD: &str = r#"hub = "http://127.0.0.1:8080/"
site = "school-017"
token_env = "TOK"
state_dir = "state"

[[datasets]]
name = "progress"
path = "/data/progress"
glob = "**/*.csv"
prune_after = "30d"
"#;

    #[test]
    fn good() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.hub, "http://127.0.0.1:8080");
        assert_eq!(c.state_dir, PathBuf::from("/etc/edusync/state"));
        assert_eq!(
            c.datasets[0].prune_after,
            Some(Duration::from_secs(30 * 86400))
        );
        assert_eq!(c.chunk_size, 1 << 20);
    }

    #[test]
    fn errors_name_line_and_key() {
        let cases = [
            (GOOD.replace("\"**/*.csv\"", "\"a**/*.csv\""), "agent config file /etc/edusync/agent.toml, line 9: datasets[0].glob = \"a**/*.csv\": `**` must be a whole path component (as in \"**/*.csv\"), not part of \"a**\""),
            (GOOD.replace("site = \"school-017\"", "site = \"../x\""), "agent config file /etc/edusync/agent.toml, line 2: `site` = \"../x\": use 1–64 letters, digits, '.', '-' or '_'"),
            (GOOD.replace("\"30d\"", "\"soon\""), "agent config file /etc/edusync/agent.toml, line 10: `datasets[0].prune_after` = \"soon\" is not a duration; write e.g. \"500ms\", \"30s\", \"5m\", \"1h\", \"30d\""),
            (GOOD.replace("token_env = \"TOK\"\n", ""), "agent config file /etc/edusync/agent.toml, line 1: missing required key `token_env`; add e.g. token_env = \"EDUSYNC_SITE_TOKEN\" and export the token in that variable"),
            (format!("{GOOD}bogus = 1\n"), "agent config file /etc/edusync/agent.toml, line 11: unknown field `bogus`, expected one of `name`, `path`, `glob`, `prune_after`"),
            (GOOD.replace("hub = \"http://127.0.0.1:8080/\"", "hub = \"ftp://x\""), "agent config file /etc/edusync/agent.toml, line 1: `hub` = \"ftp://x\" must start with http:// or https://"),
        ];
        for (text, want) in cases {
            assert_eq!(parse(&text).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn the_committed_example_is_valid() {
        let c = parse(include_str!("../../../../dist/agent.example.toml")).unwrap();
        assert_eq!(c.datasets.len(), 2);
        assert_eq!(
            c.datasets[1].prune_after,
            Some(Duration::from_secs(30 * 86_400))
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration(""), None);
    }
}
