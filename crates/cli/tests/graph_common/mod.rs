//! Shared by the `graph_*` end-to-end tests: the built binary against a
//! Microsoft Graph emulator spawned in the test, on top of `util`'s [`Env`]
//! (temp dir, hand-made source, commands with deadlines).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use edusync_testkit::graph::{self, EmulatedEvent, GraphEmulator, GraphEmulatorConfig};

// For the graph_* tests, which do not each use every one.
#[allow(unused_imports)]
pub use crate::util::api::{bulk_timetable, expect, wait_until};
use crate::util::api::{by_event_id, emulator_runtime, profile_config};
use crate::util::{Env, Source};

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
        let rt = emulator_runtime();
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
        let target = format!(
            r#"kind = "graph"
tenant_id = "{tenant}"
client_id = "{client}"
{credential}
calendar = "{CALENDAR}"
authority_url = "{url}"
graph_url = "{url}""#,
            tenant = cfg.tenant_id,
            client = cfg.client_id,
        );
        self.env.write_config_text(&profile_config(extra, &target));
    }

    pub fn source(&self) -> Source {
        self.env.source()
    }

    /// edusync's events of profile `teaching` in `upn`'s Timetable calendar,
    /// by event id. Fails on two events for one id (a duplicate).
    pub fn synced(&self, upn: &str) -> BTreeMap<String, EmulatedEvent> {
        by_event_id(upn, self.emu.calendar_events(upn, CALENDAR), marker, |e| {
            e.id.clone()
        })
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
