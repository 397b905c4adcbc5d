//! Shared by the `graph_*` end-to-end tests: the built binary against a
//! Microsoft Graph emulator spawned in the test, on top of `util`'s [`Env`]
//! (temp dir, hand-made source, commands with deadlines).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use edusync_testkit::graph::{self, EmulatedEvent, GraphEmulator, GraphEmulatorConfig};

use crate::util::{self, Env, Ev, Source};

pub const SECRET_ENV: &str = "EDUSYNC_GRAPH_SECRET";
/// Holds the path of the PEM file of a certificate credential.
pub const CERT_ENV: &str = "EDUSYNC_GRAPH_CERT";
pub const MARKER_NAME: &str = "Name edusync-key";
pub const CALENDAR: &str = "Timetable";

/// An [`Env`] whose profile `teaching` writes to a Graph emulator.
pub struct GraphEnv {
    pub env: Env,
    pub emu: GraphEmulator,
    // Dropped last: the emulator's server runs on it.
    pub rt: tokio::runtime::Runtime,
}

impl GraphEnv {
    /// An emulator knowing `users` (licensed), and a config pointing at it.
    pub fn new(users: &[&str]) -> GraphEnv {
        Self::with_config(GraphEmulatorConfig::with_users(users.iter().copied()))
    }

    pub fn with_config(cfg: GraphEmulatorConfig) -> GraphEnv {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        // Children inherit it; every test uses the emulator's default secret.
        std::env::set_var(SECRET_ENV, &cfg.client_secret);
        let emu = rt.block_on(graph::spawn(cfg));
        let g = GraphEnv {
            env: Env::new(),
            emu,
            rt,
        };
        g.write_config("");
        g
    }

    /// Writes the config; `extra` lines go inside `[[profiles]]`.
    pub fn write_config(&self, extra: &str) {
        self.write_config_with(extra, &format!("client_secret_env = \"{SECRET_ENV}\""));
    }

    /// Writes the config with a certificate credential: `pem` is written
    /// to `graph.pem` in the test's folder and [`CERT_ENV`] set to its path.
    pub fn write_certificate_config(&self, pem: &str) -> std::path::PathBuf {
        let path = self.env.path("graph.pem");
        std::fs::write(&path, pem).expect("write the PEM file");
        std::env::set_var(CERT_ENV, &path);
        self.write_config_with("", &format!("client_certificate_env = \"{CERT_ENV}\""));
        path
    }

    /// Writes the config with `credential` (the credential's key line).
    pub fn write_config_with(&self, extra: &str, credential: &str) {
        let url = self.emu.url();
        let cfg = self.emu.config();
        self.env.write_config_text(&format!(
            r#"state = "sqlite://./state.db"

[[profiles]]
name = "teaching"
timezone = "Europe/London"
{extra}

[profiles.source]
url = "sqlite://./tt.db"
prefix = "tt_"

[profiles.window]
past_days = 7
future_days = 365

[profiles.guard]
max_delete_percent = 100

[[profiles.targets]]
kind = "graph"
tenant_id = "{tenant}"
client_id = "{client}"
{credential}
calendar = "{CALENDAR}"
authority_url = "{url}"
graph_url = "{url}"
"#,
            tenant = cfg.tenant_id,
            client = cfg.client_id,
        ));
    }

    pub fn source(&self) -> Source {
        self.env.source()
    }

    /// edusync's events of profile `teaching` in `upn`'s Timetable calendar,
    /// by event id. Fails on two events for one id (a duplicate).
    pub fn synced(&self, upn: &str) -> BTreeMap<String, EmulatedEvent> {
        let mut out = BTreeMap::new();
        for e in self.emu.calendar_events(upn, CALENDAR) {
            let Some(key) = marker(&e) else { continue };
            let Some(id) = key.strip_prefix("teaching/") else {
                continue;
            };
            let id = id.to_string();
            if let Some(prev) = out.insert(id.clone(), e) {
                panic!(
                    "{upn}: two events for {id}: {} and {}",
                    prev.id, out[&id].id
                );
            }
        }
        out
    }

    /// `upn → event ids` of every mailbox in `upns`.
    pub fn holdings(&self, upns: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
        upns.iter()
            .map(|u| (u.to_string(), self.synced(u).into_keys().collect()))
            .collect()
    }

    /// Every event without the marker in `upn`'s mailbox (any calendar): `(calendar, subject)`.
    pub fn personal(&self, upn: &str) -> BTreeSet<(String, String)> {
        self.emu
            .events(upn)
            .into_iter()
            .filter(|e| marker(e).is_none())
            .map(|e| (e.calendar, e.subject))
            .collect()
    }

    pub fn sync(&self) -> serde_json::Value {
        self.env.sync("teaching")
    }
}

/// The edusync marker of an emulated event.
pub fn marker(e: &EmulatedEvent) -> Option<String> {
    e.extended_properties
        .iter()
        .find(|(id, _)| id.ends_with(MARKER_NAME))
        .map(|(_, v)| v.clone())
}

/// Expected holdings from `(upn, [event ids])`.
pub fn expect(rows: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    rows.iter()
        .map(|(u, ids)| (u.to_string(), ids.iter().map(|s| s.to_string()).collect()))
        .collect()
}

/// A timetable of `students` students (s01…@uni.example) in one group,
/// attending `events` one-hour events (B001…) on the days after tomorrow.
pub fn bulk_timetable(src: &Source, students: usize, events: usize) -> Vec<String> {
    let mut upns = Vec::new();
    let ids: Vec<String> = (1..=students).map(|i| format!("S{i:02}")).collect();
    for id in &ids {
        upns.push(src.student(id));
    }
    let members: Vec<&str> = ids.iter().map(String::as_str).collect();
    src.group("G-ALL", "Everyone", &members);
    for n in 0..events {
        let day = util::days_from_now(2 + (n / 8) as i64, 9 + (n % 8) as i8);
        let end = day.checked_add(jiff::ToSpan::hours(1)).unwrap();
        let id = format!("B{n:03}");
        src.event(&Ev::new(
            &id,
            &format!("Lecture {n}"),
            &util::wall(day),
            &util::wall(end),
        ));
        src.event_group(&id, "G-ALL");
    }
    upns
}

/// Waits until `f` holds, polling; fails after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
