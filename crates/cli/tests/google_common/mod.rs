//! Shared by the `google_*` end-to-end tests: the built binary against a
//! Google Calendar emulator spawned in the test, on top of `util`'s [`Env`]
//! (temp dir, hand-made source, commands with deadlines). The service
//! account's key file is written into the temp dir and named by
//! [`KEY_ENV`], as an operator would.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use edusync_testkit::google::{self, EmulatedEvent, GoogleEmulator, GoogleEmulatorConfig};

use crate::util::api::{by_event_id, emulator_runtime, profile_config};
use crate::util::{Env, Source};

pub const KEY_ENV: &str = "EDUSYNC_GOOGLE_KEY";
pub const CALENDAR: &str = "Timetable";

/// An [`Env`] whose profile `teaching` writes to a Google emulator.
pub struct GoogleEnv {
    pub env: Env,
    pub emu: GoogleEmulator,
    // Dropped last: the emulator's server runs on it.
    pub rt: tokio::runtime::Runtime,
}

impl GoogleEnv {
    /// An emulator knowing `users`, and a config pointing at it.
    pub fn new(users: &[&str]) -> GoogleEnv {
        Self::with_config(GoogleEmulatorConfig::with_users(users.iter().copied()))
    }

    pub fn with_config(cfg: GoogleEmulatorConfig) -> GoogleEnv {
        let rt = emulator_runtime();
        let emu = rt.block_on(google::spawn(cfg));
        let g = GoogleEnv {
            env: Env::new(),
            emu,
            rt,
        };
        let key = g.env.path("service-account.json");
        std::fs::write(&key, g.emu.key_file_json()).expect("write key file");
        // Children inherit it.
        std::env::set_var(KEY_ENV, &key);
        g.write_config("");
        g
    }

    /// Writes the config; `extra` lines go inside `[[profiles]]`.
    pub fn write_config(&self, extra: &str) {
        let target = format!(
            r#"kind = "google"
credentials_file_env = "{KEY_ENV}"
calendar = "{CALENDAR}"
token_url = "{token}"
api_url = "{api}""#,
            token = self.emu.token_url(),
            api = self.emu.api_url(),
        );
        self.env.write_config_text(&profile_config(extra, &target));
    }

    pub fn source(&self) -> Source {
        self.env.source()
    }

    /// edusync's events of profile `teaching` in `user`'s Timetable calendar,
    /// by event id. Fails on two events for one id (a duplicate).
    pub fn synced(&self, user: &str) -> BTreeMap<String, EmulatedEvent> {
        by_event_id(
            user,
            self.emu.events(user, Some(CALENDAR)),
            |e| e.private.get("edusyncKey").cloned(),
            |e| e.id.clone(),
        )
    }

    /// `user → event ids` of every user in `users`.
    pub fn holdings(&self, users: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
        users
            .iter()
            .map(|u| (u.to_string(), self.synced(u).into_keys().collect()))
            .collect()
    }

    /// Every event without the marker in `user`'s calendars: `(calendar, summary)`.
    pub fn personal(&self, user: &str) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for cal in [None, Some(CALENDAR)] {
            for e in self.emu.events(user, cal) {
                if e.private.is_empty() {
                    out.insert((e.calendar, e.summary));
                }
            }
        }
        out
    }

    pub fn sync(&self) -> serde_json::Value {
        self.env.sync("teaching")
    }
}
