//! Helpers for the CalDAV end-to-end tests: a hand-made timetable (SQLite,
//! the source contract's eight views as tables), a config pointing the
//! `caldav` target at a real server from `edusync_testkit::dav`, the built
//! binary run with a deadline, and the server's calendars read back over
//! HTTP by Python's standard library (an independent client).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use edusync_testkit::dav::{DavKind, DavServer};

pub const BIN: &str = env!("CARGO_BIN_EXE_edusync");
pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Env {
    pub dir: tempfile::TempDir,
    pub server: DavServer,
}

pub fn email(p: usize) -> String {
    format!("person{p}@example.ac.uk")
}

impl Env {
    /// A server, and a timetable where each of `people` attends `events` events.
    pub fn new(kind: DavKind, people: usize, events: usize) -> Env {
        Env::with_server(DavServer::start(kind), people, events)
    }

    /// [`Env::new`] with a server started by the caller (e.g. other rights).
    pub fn with_server(server: DavServer, people: usize, events: usize) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "state = \"sqlite://./state.db\"\n\
             [[profiles]]\nname = \"teaching\"\ntimezone = \"Europe/London\"\n\
             [profiles.source]\nurl = \"sqlite://./tt.db\"\n\
             [profiles.window]\npast_days = 7\nfuture_days = 365\n\
             [profiles.guard]\nmax_delete_percent = 100\n\
             [[profiles.targets]]\nkind = \"caldav\"\n\
             calendar_url = \"{}/{{email}}/timetable/\"\nusername = \"edusync\"\npassword_env = \"EDUSYNC_TEST_CALDAV_PW\"\n",
            server.url()
        );
        std::fs::write(dir.path().join("edusync.toml"), config).unwrap();
        let env = Env { dir, server };
        env.write_source(people, events, "");
        env
    }

    /// Points the target at `path` on the server (e.g. `/{person_id}/timetable/`).
    pub fn set_calendar_url(&self, path: &str) {
        let file = self.path("edusync.toml");
        let config = std::fs::read_to_string(&file).unwrap().replace(
            &format!("{}/{{email}}/timetable/", self.server.url()),
            &format!("{}{path}", self.server.url()),
        );
        std::fs::write(file, config).unwrap();
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// (Re)writes the timetable; `suffix` is appended to every title.
    pub fn write_source(&self, people: usize, events: usize, suffix: &str) {
        let path = self.path("tt.db");
        let _ = std::fs::remove_file(&path);
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE tt_people (person_id TEXT, kind TEXT, email TEXT, display_name TEXT);
             CREATE TABLE tt_locations (location_id TEXT, name TEXT, building TEXT, campus TEXT, latitude REAL, longitude REAL);
             CREATE TABLE tt_groups (group_id TEXT, name TEXT, kind TEXT);
             CREATE TABLE tt_group_members (group_id TEXT, person_id TEXT);
             CREATE TABLE tt_events (event_id TEXT, title TEXT, event_type TEXT, module_code TEXT, module_name TEXT,
                 description TEXT, starts_at TEXT, ends_at TEXT, timezone TEXT, status TEXT);
             CREATE TABLE tt_event_groups (event_id TEXT, group_id TEXT);
             CREATE TABLE tt_event_people (event_id TEXT, person_id TEXT, role TEXT, note TEXT);
             CREATE TABLE tt_event_locations (event_id TEXT, location_id TEXT);
             INSERT INTO tt_locations VALUES ('R1', 'Room 1', 'Main Building', 'City', NULL, NULL);",
        )
        .unwrap();
        let base = jiff::Zoned::now()
            .date()
            .checked_add(jiff::Span::new().days(1))
            .unwrap();
        let tx = c.unchecked_transaction().unwrap();
        for p in 0..people {
            tx.execute(
                "INSERT INTO tt_people VALUES (?1, 'student', ?2, ?3)",
                rusqlite::params![format!("P{p}"), email(p), format!("Person {p}")],
            )
            .unwrap();
        }
        for e in 0..events {
            let day = base.checked_add(jiff::Span::new().days(e as i64)).unwrap();
            tx.execute(
                "INSERT INTO tt_events VALUES (?1, ?2, 'lecture', 'M1', 'Module 1', NULL, ?3, ?4, NULL, 'confirmed')",
                rusqlite::params![format!("E{e}"), format!("Lecture {e}{suffix}"), format!("{day} 09:00:00"), format!("{day} 10:00:00")],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO tt_event_locations VALUES (?1, 'R1')",
                rusqlite::params![format!("E{e}")],
            )
            .unwrap();
            for p in 0..people {
                tx.execute(
                    "INSERT INTO tt_event_people VALUES (?1, ?2, 'attendee', NULL)",
                    rusqlite::params![format!("E{e}"), format!("P{p}")],
                )
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.dir.path())
            .args(args)
            .env("EDUSYNC_TEST_CALDAV_PW", "secret")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs the binary to completion (within the deadline).
    pub fn run(&self, args: &[&str]) -> Output {
        let child = self.cmd(args).spawn().unwrap();
        finish(child, &format!("edusync {}", args.join(" ")))
    }

    /// `sync --format json`, expecting success; returns the JSON line.
    pub fn sync(&self) -> serde_json::Value {
        let out = self.run(&["sync", "--config", "edusync.toml", "--format", "json"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "sync failed{}", describe(&out));
        serde_json::from_str(text.lines().next().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}{}", describe(&out)))
    }

    pub fn calendar_url(&self, p: usize) -> String {
        format!("{}/{}/timetable/", self.server.url(), email(p))
    }

    /// Every object in a person's calendar: name → body.
    pub fn calendar(&self, p: usize) -> BTreeMap<String, String> {
        let out = Command::new("python3")
            .args(["-c", PY_LIST, &self.calendar_url(p)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "listing failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// PUT or DELETE an object by hand (body None = delete).
    pub fn by_hand(&self, p: usize, name: &str, body: Option<&str>) {
        let url = format!("{}{name}", self.calendar_url(p));
        let out = Command::new("python3")
            .args(["-c", PY_WRITE, &url, body.unwrap_or("")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "write by hand failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Asserts the calendar holds exactly these summaries among edusync's objects,
/// each once (one object per UID), and returns the personal objects' names.
pub fn check_calendar(cal: &BTreeMap<String, String>, want: &[String]) -> Vec<String> {
    let mut uids = std::collections::BTreeSet::new();
    let mut summaries = Vec::new();
    let mut personal = Vec::new();
    for (name, body) in cal {
        if !body.contains("X-EDUSYNC-MARKER") {
            personal.push(name.clone());
            continue;
        }
        let uid = body
            .lines()
            .find_map(|l| l.strip_prefix("UID:"))
            .unwrap()
            .trim()
            .to_string();
        assert!(uids.insert(uid.clone()), "duplicate UID {uid} in {cal:?}");
        summaries.push(
            body.lines()
                .find_map(|l| l.strip_prefix("SUMMARY:"))
                .unwrap()
                .trim()
                .to_string(),
        );
    }
    summaries.sort();
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(summaries, want);
    personal
}

pub fn describe(out: &Output) -> String {
    format!(
        "\n=== status ===\n{}\n=== stdout ===\n{}\n=== stderr ===\n{}\n",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn finish(mut child: Child, what: &str) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} did not finish within {DEADLINE:?}{}",
                describe(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub const PERSONAL: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//me//EN\r\nBEGIN:VEVENT\r\nUID:dentist-1\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20261002T080000Z\r\nDTEND:20261002T090000Z\r\nSUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

pub fn titles(n: usize, suffix: &str) -> Vec<String> {
    (0..n).map(|e| format!("M1 Lecture {e}{suffix}")).collect()
}

const PY_LIST: &str = r#"
import base64, json, sys, urllib.request, urllib.parse, xml.etree.ElementTree as ET
url = sys.argv[1]
auth = {"Authorization": "Basic " + base64.b64encode(b"someone:pw").decode()}
req = urllib.request.Request(url, method="PROPFIND", headers=dict(auth, Depth="1"))
out = {}
try:
    body = urllib.request.urlopen(req).read()
except urllib.error.HTTPError as e:
    if e.code == 404:
        print("{}"); sys.exit(0)
    raise
base = urllib.parse.urlsplit(url)
for r in ET.fromstring(body).findall("{DAV:}response"):
    href = r.find("{DAV:}href").text
    if href.endswith("/"):
        continue
    name = urllib.parse.unquote(href.rstrip("/").rsplit("/", 1)[-1])
    full = f"{base.scheme}://{base.netloc}{href}"
    out[name] = urllib.request.urlopen(urllib.request.Request(full, headers=auth)).read().decode()
print(json.dumps(out))
"#;

const PY_WRITE: &str = r#"
import base64, sys, urllib.request
url, body = sys.argv[1], sys.argv[2]
auth = {"Authorization": "Basic " + base64.b64encode(b"someone:pw").decode()}
if body:
    req = urllib.request.Request(url, data=body.encode(), method="PUT", headers=dict(auth, **{"Content-Type": "text/calendar"}))
else:
    req = urllib.request.Request(url, method="DELETE", headers=auth)
urllib.request.urlopen(req).read()
"#;

pub fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(20));
    }
}
