//! The edusync configuration file (TOML).
//!
//! The keys fixed by `shared/spec/interface.md` are parsed here and nowhere
//! else; every default is documented next to its field below and in
//! `edusync.example.toml`. A wrong or missing key is a [`ConfigError`] that
//! names the key, the file and the line, and says what to do.
//!
//! Secrets never live in the file: a key ending in `_env` names an
//! environment variable, read with [`EnvKey::read`] only when the secret
//! is needed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// Everything that can be wrong with a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source} (check the path given to --config)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}, line {line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("config file {path}: {message}")]
    Whole { path: PathBuf, message: String },
    #[error("environment variable {var} is not set (named by `{key}` in {path}); export it before running edusync")]
    MissingEnv {
        var: String,
        key: String,
        path: PathBuf,
    },
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file itself.
    pub path: PathBuf,
    /// The folder relative paths are resolved against.
    pub dir: PathBuf,
    /// Where edusync keeps its ledger, outbox and run history.
    pub state: StateUrl,
    /// `state_password_env`: the environment variable holding the password of
    /// a `postgres://` state, replacing the URL's. Default: none (the URL's
    /// password, or none).
    pub state_password_env: Option<EnvKey>,
    pub server: ServerConfig,
    pub hub: HubConfig,
    pub profiles: Vec<Profile>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceUrl {
    Sqlite(PathBuf),
    Postgres(String),
    Mysql(String),
    Csv(PathBuf),
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address `serve` listens on. Default `127.0.0.1:8080`.
    pub listen: String,
}

#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Received site files land under `root/site/dataset/path`. Default `./collected`.
    pub root: PathBuf,
    /// Largest single file a site may upload, in bytes. Default 1 GiB.
    pub max_file_bytes: u64,
    /// Most bytes the hub keeps under `root`; a write past it fails as a full
    /// disk does (ENOSPC) and the agent retries later. Default: no limit.
    pub quota_bytes: Option<u64>,
    /// A site not heard from (heartbeat or data) for this long is highlighted
    /// on the Sites page. Default 2 days.
    pub silent_after: Duration,
    /// The days the schools' servers are switched on, for the ICS feed:
    /// `"2FRI"` = second Friday of each month, `"-1MON"` = last Monday.
    /// Default `["2FRI", "4FRI"]`.
    pub server_days: Vec<String>,
}

/// One sync profile (for example `exams` or `teaching`).
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// IANA name of the profile's time zone (wall-clock times without an offset are read in it).
    pub timezone_name: String,
    pub timezone: jiff::tz::TimeZone,
    /// Interval between cycles under `serve`. Default 10 minutes.
    pub schedule: Duration,
    /// Events longer than this are quarantined. Default 24.
    pub max_event_hours: u32,
    pub source: SourceConfig,
    pub window: WindowConfig,
    pub guard: GuardConfig,
    pub targets: Vec<TargetConfig>,
    /// Only these people (person ids or emails) are synced; everyone else is left alone.
    /// Empty means everybody. For TEST roll-outs.
    pub pilot: Vec<String>,
    /// What happens to cancelled events. Default `remove`.
    pub cancelled: CancelledMode,
    /// What a cycle does about edusync events edited or deleted by hand. Default `restore`.
    pub drift: DriftMode,
    /// Categories put on every event. Default `["Timetable"]`.
    pub categories: Vec<String>,
    /// Optional minijinja templates replacing the built-in rendering.
    pub templates: Templates,
    /// Times of day (in `timezone`) when `serve` starts no cycle, e.g.
    /// `["01:00-03:30"]`; a window may cross midnight (`"23:00-01:00"`).
    /// Default: none.
    pub blackout: Vec<Blackout>,
}

/// A daily window of wall-clock time in a profile's time zone, as minutes
/// after midnight: `start` inclusive, `end` exclusive; `end < start` crosses midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blackout {
    pub start: u16,
    pub end: u16,
}

impl Blackout {
    /// Parses `"HH:MM-HH:MM"`.
    pub fn parse(s: &str) -> Option<Blackout> {
        let (a, b) = s.trim().split_once('-')?;
        let hm = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            if h.is_empty() || h.len() > 2 || m.len() != 2 {
                return None;
            }
            let h: u16 = h.parse().ok()?;
            let m: u16 = m.parse().ok()?;
            (h < 24 && m < 60)
                .then_some(h * 60 + m)
                .or((h == 24 && m == 0).then_some(1440))
        };
        let (start, end) = (hm(a)?, hm(b)?);
        (start != end && start < 1440).then_some(Blackout { start, end })
    }

    /// Whether `minute` (after local midnight) falls inside the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start < self.end {
            self.start <= minute && minute < self.end
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

impl std::fmt::Display for Blackout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub url: SourceUrl,
    /// View name prefix. Default `tt_`.
    pub prefix: String,
    /// Environment variable holding the database password (PostgreSQL and
    /// MariaDB/MySQL sources); it replaces any password in `url`. Default: none.
    pub password_env: Option<EnvKey>,
}

#[derive(Debug, Clone, Copy)]
pub struct WindowConfig {
    /// Default 7.
    pub past_days: u32,
    /// Default 365.
    pub future_days: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct GuardConfig {
    /// Default 10.
    pub max_delete_percent: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelledMode {
    Remove,
    Mark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftMode {
    /// Put hand-edited or hand-deleted events back as the timetable says.
    Restore,
    /// Leave events people changed by hand alone until the timetable changes them.
    Respect,
    /// Do not look for drift.
    Off,
}

#[derive(Debug, Clone, Default)]
pub struct Templates {
    pub subject: Option<String>,
    pub location: Option<String>,
    pub body: Option<String>,
}

/// One calendar target of a profile.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// Stable name of the target within its profile (the ledger is keyed by it).
    /// Default: the kind.
    pub name: String,
    pub kind: TargetKind,
}

#[derive(Debug, Clone)]
pub enum TargetKind {
    Graph(GraphConfig),
    Caldav(CaldavConfig),
    Google(GoogleConfig),
    Vdir(VdirConfig),
}

impl TargetKind {
    pub fn kind_name(&self) -> &'static str {
        match self {
            TargetKind::Graph(_) => "graph",
            TargetKind::Caldav(_) => "caldav",
            TargetKind::Google(_) => "google",
            TargetKind::Vdir(_) => "vdir",
        }
    }
}

#[derive(Debug, Clone)]
pub struct GraphConfig {
    pub tenant_id: String,
    pub client_id: String,
    /// `client_secret_env` or `client_certificate_env`: exactly one is given.
    pub credential: GraphCredentialConfig,
    pub calendar: String,
    pub authority_url: String,
    pub graph_url: String,
}

/// How a `graph` target proves itself to the Microsoft identity platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphCredentialConfig {
    /// `client_secret_env`: the variable holds the client secret.
    Secret(EnvKey),
    /// `client_certificate_env`: the variable holds the path of a PEM file
    /// with the private key and the certificate uploaded to the app
    /// registration; edusync signs a client assertion with the key.
    Certificate(EnvKey),
}

impl GraphCredentialConfig {
    /// The variable named, whichever kind.
    pub fn env(&self) -> &EnvKey {
        match self {
            Self::Secret(e) | Self::Certificate(e) => e,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CaldavConfig {
    pub calendar_url: String,
    pub username: Option<String>,
    pub password_env: Option<EnvKey>,
}

#[derive(Debug, Clone)]
pub struct GoogleConfig {
    pub credentials_file_env: EnvKey,
    pub calendar: String,
    pub token_url: String,
    pub api_url: String,
}

#[derive(Debug, Clone)]
pub struct VdirConfig {
    pub path: PathBuf,
}

/// The name of an environment variable holding a secret, and where it was named.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvKey {
    pub var: String,
    /// Dotted key path, for messages (`profiles[0].targets[1].client_secret_env`).
    pub key: String,
    /// The config file that names it, for messages.
    pub config: PathBuf,
}

impl fmt::Debug for EnvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", self.var)
    }
}

impl EnvKey {
    /// Reads the secret from the environment; unset or empty is an error
    /// naming the variable, the key and the config file.
    pub fn read(&self) -> Result<String, ConfigError> {
        match std::env::var(&self.var) {
            Ok(v) if !v.is_empty() => Ok(v),
            _ => Err(ConfigError::MissingEnv {
                var: self.var.clone(),
                key: self.key.clone(),
                path: self.config.clone(),
            }),
        }
    }
}

impl Config {
    /// The state database's password from `state_password_env`, when the
    /// config names one (read from the environment now, never stored).
    pub fn state_password(&self) -> Result<Option<String>, ConfigError> {
        self.state_password_env
            .as_ref()
            .map(EnvKey::read)
            .transpose()
    }

    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Validates `text` as if it were the file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from("."));
        let cx = Cx {
            path,
            text,
            dir: &dir,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| cx.line_of(s.start)).unwrap_or(1);
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                message: e.message().to_string(),
            }
        })?;
        cx.build(raw)
    }

    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// A copy of the config as TOML with every secret redacted, for the console.
    pub fn redacted_summary(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("state = {:?}\n", self.state.redacted()));
        if let Some(env) = &self.state_password_env {
            out.push_str(&format!("state_password_env = {:?}\n", env.var));
        }
        out.push_str(&format!("[server]\nlisten = {:?}\n", self.server.listen));
        out.push_str(&format!(
            "[hub]\nroot = {:?}\n",
            self.hub.root.display().to_string()
        ));
        for p in &self.profiles {
            out.push_str(&format!(
                "\n[[profiles]]\nname = {:?}\ntimezone = {:?}\nschedule = \"{}s\"\nmax_event_hours = {}\n",
                p.name,
                p.timezone_name,
                p.schedule.as_secs(),
                p.max_event_hours
            ));
            if !p.blackout.is_empty() {
                let b: Vec<String> = p.blackout.iter().map(|b| format!("\"{b}\"")).collect();
                out.push_str(&format!("blackout = [{}]\n", b.join(", ")));
            }
            out.push_str(&format!(
                "[profiles.source]\nurl = {:?}\nprefix = {:?}\n",
                p.source.url.redacted(),
                p.source.prefix
            ));
            out.push_str(&format!(
                "[profiles.window]\npast_days = {}\nfuture_days = {}\n[profiles.guard]\nmax_delete_percent = {}\n",
                p.window.past_days, p.window.future_days, p.guard.max_delete_percent
            ));
            for t in &p.targets {
                out.push_str(&format!(
                    "[[profiles.targets]]\nname = {:?}\nkind = {:?}\n",
                    t.name,
                    t.kind.kind_name()
                ));
                match &t.kind {
                    TargetKind::Graph(g) => out.push_str(&format!(
                        "tenant_id = {:?}\nclient_id = {:?}\n{} = {:?} # value hidden\ncalendar = {:?}\n",
                        g.tenant_id,
                        g.client_id,
                        match &g.credential {
                            GraphCredentialConfig::Secret(_) => "client_secret_env",
                            GraphCredentialConfig::Certificate(_) => "client_certificate_env",
                        },
                        g.credential.env().var,
                        g.calendar
                    )),
                    TargetKind::Caldav(c) => out.push_str(&format!(
                        "calendar_url = {:?}\nusername = {:?}\n",
                        c.calendar_url,
                        c.username.clone().unwrap_or_default()
                    )),
                    TargetKind::Google(g) => out.push_str(&format!(
                        "credentials_file_env = {:?} # value hidden\ncalendar = {:?}\n",
                        g.credentials_file_env.var, g.calendar
                    )),
                    TargetKind::Vdir(v) => {
                        out.push_str(&format!("path = {:?}\n", v.path.display().to_string()))
                    }
                }
            }
        }
        out
    }
}

impl StateUrl {
    pub fn redacted(&self) -> String {
        match self {
            StateUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            StateUrl::Postgres(u) => redact_url(u),
        }
    }
}

impl SourceUrl {
    pub fn redacted(&self) -> String {
        match self {
            SourceUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            SourceUrl::Csv(p) => format!("csv://{}", p.display()),
            SourceUrl::Postgres(u) | SourceUrl::Mysql(u) => redact_url(u),
        }
    }
}

/// Hides the password part of `scheme://user:password@host/...`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Raw, spanned shapes as they appear in the file.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state: Option<Spanned<String>>,
    state_password_env: Option<Spanned<String>>,
    server: Option<RawServer>,
    hub: Option<RawHub>,
    #[serde(default)]
    profiles: Vec<Spanned<RawProfile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHub {
    root: Option<String>,
    max_file_bytes: Option<u64>,
    quota_bytes: Option<u64>,
    silent_after: Option<Spanned<String>>,
    server_days: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    schedule: Option<Spanned<String>>,
    max_event_hours: Option<Spanned<i64>>,
    source: Option<Spanned<RawSource>>,
    window: Option<RawWindow>,
    guard: Option<RawGuard>,
    #[serde(default)]
    targets: Vec<Spanned<RawTarget>>,
    #[serde(default)]
    pilot: Vec<String>,
    cancelled: Option<Spanned<String>>,
    drift: Option<Spanned<String>>,
    categories: Option<Vec<String>>,
    templates: Option<RawTemplates>,
    #[serde(default)]
    blackout: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    url: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    past_days: Option<Spanned<i64>>,
    future_days: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    max_delete_percent: Option<Spanned<f64Like>>,
}

/// Accepts `10` as well as `10.0` for a percentage.
#[derive(Deserialize)]
#[serde(untagged)]
#[allow(non_camel_case_types)]
enum f64Like {
    Int(i64),
    Float(f64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplates {
    subject: Option<String>,
    location: Option<String>,
    body: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    kind: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    // graph
    tenant_id: Option<String>,
    client_id: Option<String>,
    client_secret_env: Option<String>,
    client_certificate_env: Option<String>,
    authority_url: Option<String>,
    graph_url: Option<String>,
    // graph, google
    calendar: Option<String>,
    // caldav
    calendar_url: Option<Spanned<String>>,
    username: Option<String>,
    password_env: Option<String>,
    // google
    credentials_file_env: Option<String>,
    token_url: Option<String>,
    api_url: Option<String>,
    // vdir
    path: Option<String>,
}

struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
    dir: &'a Path,
}

impl Cx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text[..end].bytes().filter(|b| *b == b'\n').count() + 1
    }

    fn err_at(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line_of(span.start),
            message: message.into(),
        }
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let pb = PathBuf::from(p);
        if pb.is_absolute() {
            pb
        } else {
            self.dir.join(pb)
        }
    }

    fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let state = match &raw.state {
            None => StateUrl::Sqlite(self.resolve("edusync-state.db")),
            Some(s) => self.state_url(s)?,
        };
        let state_password_env = match raw.state_password_env {
            None => None,
            Some(v) if !matches!(state, StateUrl::Postgres(_)) => {
                return Err(self.err_at(
                    v.span(),
                    "state_password_env applies only to a postgres:// state; remove it (a SQLite state has no password)",
                ))
            }
            Some(v) if v.get_ref().trim().is_empty() => {
                return Err(self.err_at(
                    v.span(),
                    "state_password_env is empty; name the environment variable that holds the state database's password, e.g. state_password_env = \"EDUSYNC_STATE_PASSWORD\"",
                ))
            }
            Some(v) => Some(EnvKey {
                var: v.into_inner(),
                key: "state_password_env".into(),
                config: self.path.to_path_buf(),
            }),
        };
        let server = ServerConfig {
            listen: raw
                .server
                .and_then(|s| s.listen.map(|l| l.into_inner()))
                .unwrap_or_else(|| "127.0.0.1:8080".to_string()),
        };
        let hub = match raw.hub {
            None => HubConfig {
                root: self.resolve("collected"),
                max_file_bytes: 1 << 30,
                quota_bytes: None,
                silent_after: Duration::from_secs(2 * 86_400),
                server_days: vec!["2FRI".into(), "4FRI".into()],
            },
            Some(h) => {
                let silent_after = match h.silent_after {
                    None => Duration::from_secs(2 * 86_400),
                    Some(s) => parse_duration(s.get_ref()).ok_or_else(|| {
                        self.err_at(
                            s.span(),
                            format!("hub.silent_after = {:?} is not a duration; write e.g. \"36h\" or \"2d\"", s.get_ref()),
                        )
                    })?,
                };
                let mut server_days = Vec::new();
                for d in h.server_days.unwrap_or_else(|| {
                    vec![
                        Spanned::new(0..0, "2FRI".into()),
                        Spanned::new(0..0, "4FRI".into()),
                    ]
                }) {
                    if !is_valid_server_day(d.get_ref()) {
                        return Err(self.err_at(
                            d.span(),
                            format!("hub.server_days: {:?} is not a day of the month; write the week (1-5, or -1 for the last) and the weekday, e.g. \"2FRI\" or \"-1MON\"", d.get_ref()),
                        ));
                    }
                    server_days.push(d.get_ref().to_ascii_uppercase());
                }
                HubConfig {
                    root: self.resolve(h.root.as_deref().unwrap_or("collected")),
                    max_file_bytes: h.max_file_bytes.unwrap_or(1 << 30),
                    quota_bytes: h.quota_bytes,
                    silent_after,
                    server_days,
                }
            }
        };
        let mut profiles: Vec<Profile> = Vec::new();
        for (i, p) in raw.profiles.into_iter().enumerate() {
            let span = p.span();
            let profile = self.profile(i, span.clone(), p.into_inner())?;
            if profiles.iter().any(|q| q.name == profile.name) {
                return Err(self.err_at(
                    span,
                    format!(
                        "profiles[{i}]: a profile named {:?} is already defined; profile names must be unique",
                        profile.name
                    ),
                ));
            }
            profiles.push(profile);
        }
        Ok(Config {
            path: self.path.to_path_buf(),
            dir: self.dir.to_path_buf(),
            state,
            state_password_env,
            server,
            hub,
            profiles,
        })
    }

    fn state_url(&self, s: &Spanned<String>) -> Result<StateUrl, ConfigError> {
        let v = s.get_ref();
        if let Some(p) = strip_scheme(v, "sqlite") {
            if p.is_empty() {
                return Err(self.err_at(s.span(), "`state`: sqlite URL has no path; write e.g. state = \"sqlite://./edusync-state.db\""));
            }
            Ok(StateUrl::Sqlite(self.resolve(p)))
        } else if v.starts_with("postgres://") || v.starts_with("postgresql://") {
            Ok(StateUrl::Postgres(v.clone()))
        } else {
            Err(self.err_at(
                s.span(),
                format!("`state` = {v:?} is not a supported state URL; use sqlite://PATH or postgres://USER@HOST/DB"),
            ))
        }
    }

    fn profile(
        &self,
        i: usize,
        span: std::ops::Range<usize>,
        raw: RawProfile,
    ) -> Result<Profile, ConfigError> {
        let name = match raw.name {
            Some(n) if is_valid_name(n.get_ref()) => n.into_inner(),
            Some(n) => {
                return Err(self.err_at(
                    n.span(),
                    format!(
                        "profiles[{i}].name = {:?}: use letters, digits, '-' or '_' (it appears in event ids and URLs)",
                        n.get_ref()
                    ),
                ))
            }
            None => {
                return Err(self.err_at(
                    span,
                    format!("profiles[{i}] has no `name`; add e.g. name = \"teaching\""),
                ))
            }
        };
        let (timezone_name, timezone) = match raw.timezone {
            None => ("Europe/London".to_string(), tz_or_panic_free("Europe/London")?),
            Some(t) => match jiff::tz::TimeZone::get(t.get_ref()) {
                Ok(tz) => (t.get_ref().clone(), tz),
                Err(_) => {
                    return Err(self.err_at(
                        t.span(),
                        format!(
                            "profiles[{i}].timezone = {:?} is not a known IANA time zone; use a name like \"Europe/London\"",
                            t.get_ref()
                        ),
                    ))
                }
            },
        };
        let schedule = match raw.schedule {
            None => Duration::from_secs(600),
            Some(s) => parse_duration(s.get_ref()).ok_or_else(|| {
                self.err_at(
                    s.span(),
                    format!(
                        "profiles[{i}].schedule = {:?} is not a duration; write e.g. \"90s\", \"10m\", \"1h\"",
                        s.get_ref()
                    ),
                )
            })?,
        };
        let mut blackout = Vec::new();
        for (k, b) in raw.blackout.iter().enumerate() {
            blackout.push(Blackout::parse(b.get_ref()).ok_or_else(|| {
                self.err_at(
                    b.span(),
                    format!(
                        "profiles[{i}].blackout[{k}] = {:?} is not a time window; write \"HH:MM-HH:MM\" in the profile's time zone, e.g. \"01:00-03:30\" (it may cross midnight: \"23:00-01:00\")",
                        b.get_ref()
                    ),
                )
            })?);
        }
        let max_event_hours = match raw.max_event_hours {
            None => 24,
            Some(h) if *h.get_ref() >= 1 && *h.get_ref() <= 24 * 366 => *h.get_ref() as u32,
            Some(h) => {
                return Err(self.err_at(
                    h.span(),
                    format!(
                        "profiles[{i}].max_event_hours = {} must be a whole number of hours from 1 to 8784",
                        h.get_ref()
                    ),
                ))
            }
        };
        let source = match raw.source {
            None => {
                return Err(self.err_at(
                    span,
                    format!("profile {name:?} has no [profiles.source]; add one with url = \"sqlite://./timetable.db\""),
                ))
            }
            Some(s) => {
                let sspan = s.span();
                let s = s.into_inner();
                let url = match s.url {
                    None => {
                        return Err(self.err_at(
                            sspan,
                            format!("profile {name:?}: [profiles.source] has no `url`; add e.g. url = \"sqlite://./timetable.db\""),
                        ))
                    }
                    Some(u) => self.source_url(&name, &u)?,
                };
                let prefix = match s.prefix {
                    None => "tt_".to_string(),
                    Some(p) if p.get_ref().chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') => p.into_inner(),
                    Some(p) => {
                        return Err(self.err_at(
                            p.span(),
                            format!("profile {name:?}: source.prefix = {:?} may contain only letters, digits, '_' and '.' (a schema prefix)", p.get_ref()),
                        ))
                    }
                };
                let password_env = match s.password_env {
                    None => None,
                    Some(v) if !matches!(url, SourceUrl::Postgres(_) | SourceUrl::Mysql(_)) => {
                        return Err(self.err_at(
                            v.span(),
                            format!("profile {name:?}: source.password_env applies only to postgres:// and mysql:// sources; remove it"),
                        ))
                    }
                    Some(v) if v.get_ref().trim().is_empty() => {
                        return Err(self.err_at(
                            v.span(),
                            format!("profile {name:?}: source.password_env is empty; name the environment variable that holds the password, e.g. password_env = \"EDUSYNC_SOURCE_PASSWORD\""),
                        ))
                    }
                    Some(v) => Some(EnvKey {
                        var: v.into_inner(),
                        key: format!("profiles[{i}].source.password_env"),
                        config: self.path.to_path_buf(),
                    }),
                };
                SourceConfig { url, prefix, password_env }
            }
        };
        let window = match raw.window {
            None => WindowConfig {
                past_days: 7,
                future_days: 365,
            },
            Some(w) => WindowConfig {
                past_days: self.days(&name, "window.past_days", w.past_days, 7)?,
                future_days: self.days(&name, "window.future_days", w.future_days, 365)?,
            },
        };
        let guard = match raw.guard.and_then(|g| g.max_delete_percent) {
            None => GuardConfig {
                max_delete_percent: 10.0,
            },
            Some(p) => {
                let v = match p.get_ref() {
                    f64Like::Int(i) => *i as f64,
                    f64Like::Float(f) => *f,
                };
                if !(0.0..=100.0).contains(&v) {
                    return Err(self.err_at(
                        p.span(),
                        format!("profile {name:?}: guard.max_delete_percent = {v} must be between 0 and 100"),
                    ));
                }
                GuardConfig {
                    max_delete_percent: v,
                }
            }
        };
        let cancelled = match raw.cancelled {
            None => CancelledMode::Remove,
            Some(c) => match c.get_ref().as_str() {
                "remove" => CancelledMode::Remove,
                "mark" => CancelledMode::Mark,
                other => {
                    return Err(self.err_at(
                        c.span(),
                        format!(
                            "profile {name:?}: cancelled = {other:?}; use \"remove\" or \"mark\""
                        ),
                    ))
                }
            },
        };
        let drift = match raw.drift {
            None => DriftMode::Restore,
            Some(c) => match c.get_ref().as_str() {
                "restore" => DriftMode::Restore,
                "respect" => DriftMode::Respect,
                "off" => DriftMode::Off,
                other => {
                    return Err(self.err_at(
                        c.span(),
                        format!("profile {name:?}: drift = {other:?}; use \"restore\", \"respect\" or \"off\""),
                    ))
                }
            },
        };
        let mut targets: Vec<TargetConfig> = Vec::new();
        for (j, t) in raw.targets.into_iter().enumerate() {
            let tspan = t.span();
            let target = self.target(&name, i, j, tspan.clone(), t.into_inner())?;
            if targets.iter().any(|u| u.name == target.name) {
                return Err(self.err_at(
                    tspan,
                    format!(
                        "profile {name:?}: two targets are named {:?}; give each target of the same kind its own `name`",
                        target.name
                    ),
                ));
            }
            targets.push(target);
        }
        if targets.is_empty() {
            return Err(self.err_at(
                span,
                format!("profile {name:?} has no [[profiles.targets]]; add at least one (e.g. kind = \"vdir\", path = \"./calendars\")"),
            ));
        }
        Ok(Profile {
            name,
            timezone_name,
            timezone,
            schedule,
            max_event_hours,
            source,
            window,
            guard,
            targets,
            pilot: raw.pilot,
            cancelled,
            drift,
            categories: raw
                .categories
                .unwrap_or_else(|| vec!["Timetable".to_string()]),
            templates: raw
                .templates
                .map(|t| Templates {
                    subject: t.subject,
                    location: t.location,
                    body: t.body,
                })
                .unwrap_or_default(),
            blackout,
        })
    }

    fn days(
        &self,
        profile: &str,
        key: &str,
        v: Option<Spanned<i64>>,
        default: u32,
    ) -> Result<u32, ConfigError> {
        match v {
            None => Ok(default),
            Some(d) if (0..=36_600).contains(d.get_ref()) => Ok(*d.get_ref() as u32),
            Some(d) => Err(self.err_at(
                d.span(),
                format!(
                    "profile {profile:?}: {key} = {} must be a whole number of days from 0 to 36600",
                    d.get_ref()
                ),
            )),
        }
    }

    fn source_url(&self, profile: &str, u: &Spanned<String>) -> Result<SourceUrl, ConfigError> {
        let v = u.get_ref();
        if let Some(p) = strip_scheme(v, "sqlite") {
            return Ok(SourceUrl::Sqlite(self.resolve(p)));
        }
        if let Some(p) = strip_scheme(v, "csv") {
            return Ok(SourceUrl::Csv(self.resolve(p)));
        }
        if v.starts_with("postgres://") || v.starts_with("postgresql://") {
            return Ok(SourceUrl::Postgres(v.clone()));
        }
        if v.starts_with("mysql://") || v.starts_with("mariadb://") {
            return Ok(SourceUrl::Mysql(v.clone()));
        }
        Err(self.err_at(
            u.span(),
            format!("profile {profile:?}: source.url = {v:?} is not a supported source; use sqlite://PATH, postgres://…, mysql://… or csv://FOLDER"),
        ))
    }

    fn target(
        &self,
        profile: &str,
        i: usize,
        j: usize,
        span: std::ops::Range<usize>,
        t: RawTarget,
    ) -> Result<TargetConfig, ConfigError> {
        let at = format!("profiles[{i}].targets[{j}]");
        let Some(kind) = t.kind else {
            return Err(self.err_at(
                span,
                format!("profile {profile:?}: {at} has no `kind`; use one of \"graph\", \"caldav\", \"google\", \"vdir\""),
            ));
        };
        let need = |v: Option<String>, key: &str, hint: &str| -> Result<String, ConfigError> {
            match v {
                Some(s) if !s.trim().is_empty() => Ok(s),
                _ => Err(self.err_at(
                    span.clone(),
                    format!(
                        "profile {profile:?}: {at} (kind = {:?}) needs `{key}`; {hint}",
                        kind.get_ref()
                    ),
                )),
            }
        };
        let env = |var: String, key: &str| EnvKey {
            var,
            key: format!("{at}.{key}"),
            config: self.path.to_path_buf(),
        };
        let kind_v = match kind.get_ref().as_str() {
            "graph" => TargetKind::Graph(GraphConfig {
                tenant_id: need(t.tenant_id, "tenant_id", "the Microsoft Entra tenant, e.g. \"contoso.onmicrosoft.com\"")?,
                client_id: need(t.client_id, "client_id", "the application (client) id of the app registration")?,
                credential: match (t.client_secret_env, t.client_certificate_env) {
                    (Some(_), Some(_)) => {
                        return Err(self.err_at(
                            span.clone(),
                            format!("profile {profile:?}: {at} (kind = \"graph\") sets both `client_secret_env` and `client_certificate_env`; keep exactly one (a certificate is the stronger credential)"),
                        ))
                    }
                    (Some(v), None) => GraphCredentialConfig::Secret(env(
                        need(Some(v), "client_secret_env", "the name of the environment variable holding the client secret")?,
                        "client_secret_env",
                    )),
                    (None, Some(v)) => GraphCredentialConfig::Certificate(env(
                        need(Some(v), "client_certificate_env", "the name of the environment variable holding the path of the PEM file with the certificate and its private key")?,
                        "client_certificate_env",
                    )),
                    (None, None) => {
                        return Err(self.err_at(
                            span.clone(),
                            format!("profile {profile:?}: {at} (kind = \"graph\") needs `client_secret_env` or `client_certificate_env`: the name of the environment variable holding the client secret, or the path of a PEM file with the app's certificate and private key"),
                        ))
                    }
                },
                calendar: t.calendar.unwrap_or_else(|| "Timetable".to_string()),
                authority_url: trim_slash(t.authority_url.unwrap_or_else(|| "https://login.microsoftonline.com".into())),
                graph_url: trim_slash(t.graph_url.unwrap_or_else(|| "https://graph.microsoft.com".into())),
            }),
            "caldav" => {
                let url = match t.calendar_url {
                    Some(u) => u,
                    None => {
                        return Err(self.err_at(
                            span,
                            format!("profile {profile:?}: {at} (kind = \"caldav\") needs `calendar_url`, e.g. \"https://dav.example.ac.uk/{{email}}/timetable/\""),
                        ))
                    }
                };
                if !url.get_ref().contains("{email}") && !url.get_ref().contains("{person_id}") {
                    return Err(self.err_at(
                        url.span(),
                        format!("profile {profile:?}: {at}.calendar_url must contain {{email}} or {{person_id}} so each person gets their own calendar"),
                    ));
                }
                TargetKind::Caldav(CaldavConfig {
                    calendar_url: url.into_inner(),
                    username: t.username,
                    password_env: t.password_env.map(|v| env(v, "password_env")),
                })
            }
            "google" => TargetKind::Google(GoogleConfig {
                credentials_file_env: env(
                    need(t.credentials_file_env, "credentials_file_env", "the name of the environment variable holding the service account key file's path")?,
                    "credentials_file_env",
                ),
                calendar: t.calendar.unwrap_or_else(|| "Timetable".to_string()),
                token_url: t.token_url.unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
                api_url: trim_slash(t.api_url.unwrap_or_else(|| "https://www.googleapis.com/calendar/v3".into())),
            }),
            "vdir" => TargetKind::Vdir(VdirConfig {
                path: self.resolve(&need(t.path, "path", "the folder to write calendars into, e.g. \"./calendars\"")?),
            }),
            other => {
                return Err(self.err_at(
                    kind.span(),
                    format!("profile {profile:?}: {at}.kind = {other:?} is not a target kind; use one of \"graph\", \"caldav\", \"google\", \"vdir\""),
                ))
            }
        };
        let name = match t.name {
            None => kind_v.kind_name().to_string(),
            Some(n) if is_valid_name(n.get_ref()) => n.into_inner(),
            Some(n) => {
                return Err(self.err_at(
                    n.span(),
                    format!(
                        "profile {profile:?}: {at}.name = {:?}: use letters, digits, '-' or '_'",
                        n.get_ref()
                    ),
                ))
            }
        };
        Ok(TargetConfig { name, kind: kind_v })
    }
}

fn tz_or_panic_free(name: &str) -> Result<jiff::tz::TimeZone, ConfigError> {
    jiff::tz::TimeZone::get(name).map_err(|e| ConfigError::Whole {
        path: PathBuf::new(),
        message: format!("time zone database lacks {name}: {e}"),
    })
}

/// `"2FRI"`, `"-1MON"`: week of the month (1–5 or -1 for the last) and a weekday.
pub fn is_valid_server_day(s: &str) -> bool {
    let s = s.to_ascii_uppercase();
    let (week, day) = s.split_at(s.len().saturating_sub(3));
    matches!(day, "MON" | "TUE" | "WED" | "THU" | "FRI" | "SAT" | "SUN")
        && matches!(week, "1" | "2" | "3" | "4" | "5" | "-1")
}

fn trim_slash(s: String) -> String {
    s.trim_end_matches('/').to_string()
}

fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `sqlite://./x.db`, `sqlite:./x.db` and `sqlite:///abs/x.db` all name a path.
fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    let rest = url.strip_prefix(scheme)?.strip_prefix(':')?;
    Some(rest.strip_prefix("//").unwrap_or(rest))
}

/// Parses `"90s"`, `"10m"`, `"1h"`, `"1h30m"`, `"2d"` (and a bare number of seconds).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<u64>() {
        return (n > 0).then(|| Duration::from_secs(n));
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !num.is_empty() || total == 0 {
        return None;
    }
    Some(Duration::from_secs(total))
}

#[cfg(test)]
mod tests;
