//! Shared helpers for the tier-3 end-to-end tests: the built `edusync`
//! binary run as a user runs it, in a fresh temp dir, with a deadline, and a
//! failure message that shows the command, its exit status, stdout and
//! stderr (in the spirit of ripgrep's `tests/util.rs` and atuin's `FreshEnv`).
//!
//! - [`Env`]: a temp dir holding a config, a source database, the state
//!   store and a vdir; runs commands and reads the calendars back.
//! - [`Source`]: a hand-made SQLite timetable with the source contract's
//!   eight views (as tables), so each test knows exactly what to expect.
//! - [`parse_ics_dir`]: every `.ics` file of a folder parsed by Python's
//!   `icalendar`, an independent reader of what edusync writes.
//! - [`api`]: what the tests of the API targets (Graph, Google) share.

#![allow(dead_code)]

pub mod api;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use rusqlite::Connection;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_edusync");

/// How long any one command may run before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// What a finished command left behind.
#[derive(Debug)]
pub struct Output {
    pub cmd: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// A report of the command for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "\n=== command ===\n{}\n=== exit status ===\n{}\n=== stdout ===\n{}\n=== stderr ===\n{}\n",
            self.cmd, self.status, self.stdout, self.stderr
        )
    }

    /// The one JSON object on stdout.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}){}", self.describe()))
    }

    /// One JSON object per stdout line.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("stdout line {l:?} is not JSON ({e}){}", self.describe())
                })
            })
            .collect()
    }
}

type Pipe = (std::thread::JoinHandle<String>, Arc<Mutex<String>>);

/// Reads a child's pipes to the end on threads, so a chatty child never
/// blocks; what has arrived so far can be looked at while it runs.
fn drain(child: &mut Child) -> (Pipe, Pipe) {
    fn reader(mut r: impl Read + Send + 'static) -> Pipe {
        let seen = Arc::new(Mutex::new(String::new()));
        let s = Arc::clone(&seen);
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => s
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
            let out = s.lock().unwrap().clone();
            out
        });
        (h, seen)
    }
    let out = child.stdout.take().expect("stdout piped");
    let err = child.stderr.take().expect("stderr piped");
    (reader(out), reader(err))
}

/// A command of the binary under test.
pub struct Cmd {
    cmd: Command,
    shown: String,
}

impl Cmd {
    pub fn new(dir: &Path, args: &[&str]) -> Cmd {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = format!("(cd {} && edusync {})", dir.display(), args.join(" "));
        Cmd { cmd, shown }
    }

    pub fn spawn(mut self) -> Running {
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} (was the binary built?)", self.shown));
        let pipes = drain(&mut child);
        Running {
            child,
            pipes: Some(pipes),
            shown: self.shown,
            started: Instant::now(),
        }
    }

    /// Runs to completion within [`DEADLINE`].
    pub fn run(self) -> Output {
        self.spawn().wait(DEADLINE)
    }
}

/// A command that is running.
pub struct Running {
    pub child: Child,
    pipes: Option<(Pipe, Pipe)>,
    shown: String,
    pub started: Instant,
}

impl Running {
    /// Waits for the command; past `deadline` it is killed and the test fails.
    pub fn wait(mut self, deadline: Duration) -> Output {
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return self.finish(status);
            }
            if self.started.elapsed() > deadline {
                let _ = self.child.kill();
                let status = self.child.wait().expect("wait");
                let out = self.finish(status);
                panic!(
                    "command did not finish within {deadline:?}{}",
                    out.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until stderr holds `text` (true), or the command ends or
    /// `timeout` passes first (false).
    pub fn wait_for_stderr(&mut self, text: &str, timeout: Duration) -> bool {
        let t = Instant::now();
        let seen = Arc::clone(&self.pipes.as_ref().expect("running").1 .1);
        loop {
            if seen.lock().unwrap().contains(text) {
                return true;
            }
            if t.elapsed() > timeout || matches!(self.child.try_wait(), Ok(Some(_))) {
                return seen.lock().unwrap().contains(text);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGKILL. Returns whether the process was still running when killed.
    pub fn kill9(mut self) -> (bool, Output) {
        let running = self.child.try_wait().expect("try_wait").is_none();
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait");
        (running, self.finish(status))
    }

    fn finish(&mut self, status: ExitStatus) -> Output {
        let ((a, _), (b, _)) = self.pipes.take().expect("finished once");
        Output {
            cmd: self.shown.clone(),
            status,
            stdout: a.join().unwrap_or_default(),
            stderr: b.join().unwrap_or_default(),
        }
    }
}

/// Profile settings a test varies; the rest of the config is fixed.
#[derive(Debug, Clone)]
pub struct ProfileConf {
    pub name: String,
    pub prefix: String,
    pub past_days: u32,
    pub future_days: u32,
    pub max_delete_percent: f64,
    /// Extra `key = value` lines inside `[[profiles]]`.
    pub extra: String,
}

impl Default for ProfileConf {
    fn default() -> Self {
        ProfileConf {
            name: "teaching".into(),
            prefix: "tt_".into(),
            past_days: 7,
            future_days: 365,
            max_delete_percent: 100.0,
            extra: String::new(),
        }
    }
}

/// A fresh temp dir with a config, a source, a state store and a vdir.
pub struct Env {
    dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("edusync-e2e-")
            .tempdir()
            .expect("temp dir");
        let config = dir.path().join("edusync.toml");
        Env { dir, config }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The source database every profile reads (`tt.db`).
    pub fn source_path(&self) -> PathBuf {
        self.path("tt.db")
    }

    /// The vdir every profile writes (`cal/`).
    pub fn cal(&self) -> PathBuf {
        self.path("cal")
    }

    pub fn write_config(&self, profiles: &[ProfileConf]) {
        let mut s = String::from("state = \"sqlite://./state.db\"\n");
        for p in profiles {
            write!(
                s,
                "\n[[profiles]]\nname = \"{}\"\ntimezone = \"Europe/London\"\n{}\n\
                 [profiles.source]\nurl = \"sqlite://./tt.db\"\nprefix = \"{}\"\n\n\
                 [profiles.window]\npast_days = {}\nfuture_days = {}\n\n\
                 [profiles.guard]\nmax_delete_percent = {}\n\n\
                 [[profiles.targets]]\nkind = \"vdir\"\npath = \"./cal\"\n",
                p.name, p.extra, p.prefix, p.past_days, p.future_days, p.max_delete_percent
            )
            .unwrap();
        }
        self.write_config_text(&s);
    }

    pub fn write_config_text(&self, text: &str) {
        std::fs::write(&self.config, text).expect("write config");
    }

    pub fn config_arg(&self) -> String {
        self.config.display().to_string()
    }

    pub fn cmd(&self, args: &[&str]) -> Cmd {
        Cmd::new(self.root(), args)
    }

    /// Runs a command that must exit with `code`.
    pub fn expect(&self, code: i32, args: &[&str]) -> Output {
        let out = self.cmd(args).run();
        assert_eq!(
            out.code(),
            Some(code),
            "expected exit status {code}{}",
            out.describe()
        );
        out
    }

    pub fn ok(&self, args: &[&str]) -> Output {
        self.expect(0, args)
    }

    /// `plan --format json` of `profile`.
    pub fn plan(&self, profile: &str) -> Value {
        let c = self.config_arg();
        self.ok(&[
            "plan",
            "--config",
            &c,
            "--profile",
            profile,
            "--format",
            "json",
        ])
        .json()
    }

    /// `sync --profile P --format json`, which must exit with `code`; the report.
    pub fn sync_expect(&self, profile: &str, code: i32) -> Value {
        let c = self.config_arg();
        let out = self.expect(
            code,
            &[
                "sync",
                "--config",
                &c,
                "--profile",
                profile,
                "--format",
                "json",
            ],
        );
        let lines = out.json_lines();
        assert_eq!(lines.len(), 1, "one report line expected{}", out.describe());
        lines.into_iter().next().unwrap()
    }

    /// A sync that must apply cleanly.
    pub fn sync(&self, profile: &str) -> Value {
        let r = self.sync_expect(profile, 0);
        assert_eq!(r["status"], "applied", "{r}");
        assert_eq!(r["failed_ops"], 0, "{r}");
        r
    }

    pub fn sync_cmd(&self, profile: &str) -> Cmd {
        let c = self.config_arg();
        self.cmd(&[
            "sync",
            "--config",
            &c,
            "--profile",
            profile,
            "--format",
            "json",
        ])
    }

    /// Opens the source database (creating the eight views as tables if new).
    pub fn source(&self) -> Source {
        Source::open(&self.source_path())
    }

    /// Every file under the vdir: `(folder, file name) → content`.
    pub fn files(&self) -> Files {
        let mut out = BTreeMap::new();
        let Ok(people) = std::fs::read_dir(self.cal()) else {
            return out;
        };
        for person in people.flatten() {
            let folder = person.file_name().to_string_lossy().into_owned();
            if !person.path().is_dir() {
                continue;
            }
            for f in std::fs::read_dir(person.path()).unwrap().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                out.insert((folder.clone(), name), text);
            }
        }
        out
    }

    /// What the vdir holds of `profile`: see [`calendars_in`].
    pub fn calendars(&self, profile: &str) -> BTreeSet<(String, String)> {
        calendars_in(&self.files(), profile)
    }

    /// Files in the vdir that are not edusync events: see [`strays_in`].
    pub fn stray_files(&self) -> Vec<String> {
        strays_in(&self.files())
    }

    /// The content of person `email`'s copy of `event_id` (by marker).
    pub fn event_file(
        &self,
        profile: &str,
        email: &str,
        event_id: &str,
    ) -> Option<(String, String)> {
        let marker = format!("{profile}/{event_id}");
        self.files()
            .into_iter()
            .find(|((folder, _), text)| {
                folder == email && props(text).get("X-EDUSYNC-MARKER") == Some(&marker)
            })
            .map(|((_, name), text)| (name, text))
    }
}

/// Files of a vdir snapshot ([`Env::files`]).
pub type Files = BTreeMap<(String, String), String>;

/// What a vdir snapshot holds of `profile`: `(folder, event_id)` from each
/// file's marker. Fails on an edusync event in a file not named as edusync
/// names them, and on two files for one event in one folder.
pub fn calendars_in(files: &Files, profile: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for ((folder, name), text) in files {
        let props = props(text);
        let Some(marker) = props.get("X-EDUSYNC-MARKER") else {
            continue;
        };
        let Some((p, event)) = marker.split_once('/') else {
            panic!("{folder}/{name}: marker {marker:?} is not <profile>/<event_id>");
        };
        if p != profile {
            continue;
        }
        assert!(
            name.starts_with(&format!("edusync-{profile}-")) && name.ends_with(".ics"),
            "{folder}/{name}: an edusync event in a file not named edusync-{profile}-….ics"
        );
        assert!(
            out.insert((folder.clone(), event.to_string())),
            "{folder}: two files for event {event}"
        );
    }
    out
}

/// Files of a vdir snapshot that are not edusync events, as `folder/name`.
pub fn strays_in(files: &Files) -> Vec<String> {
    files
        .iter()
        .filter(|(_, text)| !props(text).contains_key("X-EDUSYNC-MARKER"))
        .map(|((folder, name), _)| format!("{folder}/{name}"))
        .collect()
}

/// The unfolded, unescaped properties of the first VEVENT in `text`
/// (a quick reader for assertions; [`parse_ics_dir`] is the strict one).
pub fn props(text: &str) -> BTreeMap<String, String> {
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = raw.strip_prefix([' ', '\t']) {
            if let Some(last) = lines.last_mut() {
                last.push_str(rest);
                continue;
            }
        }
        lines.push(raw.to_string());
    }
    let mut out = BTreeMap::new();
    let mut in_event = false;
    for l in lines {
        match l.as_str() {
            "BEGIN:VEVENT" => in_event = true,
            "END:VEVENT" => break,
            _ if in_event => {
                if let Some((name, value)) = l.split_once(':') {
                    let name = name.split(';').next().unwrap_or(name).to_ascii_uppercase();
                    let value = value
                        .replace("\\n", "\n")
                        .replace("\\N", "\n")
                        .replace("\\,", ",")
                        .replace("\\;", ";")
                        .replace("\\\\", "\\");
                    out.insert(name, value);
                }
            }
            _ => {}
        }
    }
    out
}

const PY_DUMP: &str = r#"
import json, os, sys
try:
    import icalendar
except ImportError:
    sys.stderr.write("MISSING-ICALENDAR\n")
    sys.exit(3)
from datetime import datetime, timezone

def text(v):
    return None if v is None else str(v)

def when(v):
    if v is None:
        return None
    d = v.dt
    if not isinstance(d, datetime):
        return "DATE:" + d.isoformat()
    if d.tzinfo is None:
        return "FLOATING:" + d.isoformat()
    return d.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

root = sys.argv[1]
out = {}
for person in sorted(os.listdir(root)):
    folder = os.path.join(root, person)
    if not os.path.isdir(folder):
        continue
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".ics"):
            continue
        with open(os.path.join(folder, name), "rb") as f:
            cal = icalendar.Calendar.from_ical(f.read())
        events = []
        for ev in cal.walk("VEVENT"):
            events.append({
                "uid": text(ev.get("UID")),
                "summary": text(ev.get("SUMMARY")),
                "location": text(ev.get("LOCATION")),
                "description": text(ev.get("DESCRIPTION")),
                "status": text(ev.get("STATUS")),
                "sequence": int(ev.get("SEQUENCE", 0)),
                "dtstart": when(ev.get("DTSTART")),
                "dtend": when(ev.get("DTEND")),
                "marker": text(ev.get("X-EDUSYNC-MARKER")),
                "person": text(ev.get("X-EDUSYNC-PERSON")),
            })
        out[person + "/" + name] = {"version": text(cal.get("VERSION")), "prodid": text(cal.get("PRODID")), "events": events}
json.dump(out, sys.stdout)
"#;

/// Every `.ics` file under `root` (one folder per person) parsed with
/// Python's `icalendar`: `"folder/file" → {version, prodid, events: [...]}`,
/// times in UTC as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn parse_ics_dir(root: &Path) -> BTreeMap<String, Value> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(PY_DUMP)
        .arg(root)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run python3 ({e}); these tests read the calendars with Python's icalendar: \
             install Python 3 and then `pip install icalendar` (CI does)"
        ),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("MISSING-ICALENDAR") {
        panic!(
            "python3 has no `icalendar` module; these tests read the calendars with it: \
             run `pip install icalendar` (CI installs it)"
        );
    }
    assert!(
        out.status.success(),
        "parsing the calendars with icalendar failed ({}):\n{stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout).expect("icalendar dump is JSON")
}

/// The one VEVENT of a parsed file.
pub fn only_event(parsed: &BTreeMap<String, Value>, key: &str) -> Value {
    let f = parsed.get(key).unwrap_or_else(|| {
        panic!(
            "no file {key} among {:?}",
            parsed.keys().collect::<Vec<_>>()
        )
    });
    let evs = f["events"].as_array().expect("events");
    assert_eq!(evs.len(), 1, "{key}: one VEVENT per file expected: {f}");
    evs[0].clone()
}

// ---------------------------------------------------------------------------
// Hand-made sources.

/// A hand-made source database with the contract's eight views (as tables).
pub struct Source {
    pub conn: Connection,
    prefix: String,
}

/// One `events` row; `None` is NULL.
#[derive(Debug, Clone, Default)]
pub struct Ev {
    pub id: Option<String>,
    pub title: Option<String>,
    pub event_type: Option<String>,
    pub module_code: Option<String>,
    pub module_name: Option<String>,
    pub description: Option<String>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub timezone: Option<String>,
    pub status: Option<String>,
}

impl Ev {
    /// An event `id` called `title` from `start` to `end` (contract time text).
    pub fn new(id: &str, title: &str, start: &str, end: &str) -> Ev {
        Ev {
            id: Some(id.into()),
            title: Some(title.into()),
            starts_at: Some(start.into()),
            ends_at: Some(end.into()),
            ..Default::default()
        }
    }
}

impl Source {
    pub fn open(path: &Path) -> Source {
        Source::open_prefixed(path, "tt_")
    }

    pub fn open_prefixed(path: &Path, prefix: &str) -> Source {
        let conn = Connection::open(path).expect("open source db");
        let p = prefix;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {p}people (person_id TEXT, kind TEXT, email TEXT, display_name TEXT);
             CREATE TABLE IF NOT EXISTS {p}locations (location_id TEXT, name TEXT, building TEXT, campus TEXT, latitude REAL, longitude REAL);
             CREATE TABLE IF NOT EXISTS {p}groups (group_id TEXT, name TEXT, kind TEXT);
             CREATE TABLE IF NOT EXISTS {p}group_members (group_id TEXT, person_id TEXT);
             CREATE TABLE IF NOT EXISTS {p}events (event_id TEXT, title TEXT, event_type TEXT, module_code TEXT, module_name TEXT,
                 description TEXT, starts_at TEXT, ends_at TEXT, timezone TEXT, status TEXT);
             CREATE TABLE IF NOT EXISTS {p}event_groups (event_id TEXT, group_id TEXT);
             CREATE TABLE IF NOT EXISTS {p}event_people (event_id TEXT, person_id TEXT, role TEXT, note TEXT);
             CREATE TABLE IF NOT EXISTS {p}event_locations (event_id TEXT, location_id TEXT);"
        ))
        .expect("create views");
        Source {
            conn,
            prefix: prefix.to_string(),
        }
    }

    pub fn exec(&self, sql: &str) {
        let sql = sql.replace("{p}", &self.prefix);
        self.conn
            .execute_batch(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub fn exec_params(&self, sql: &str, params: impl rusqlite::Params) -> usize {
        let sql = sql.replace("{p}", &self.prefix);
        self.conn
            .execute(&sql, params)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn person(&self, id: &str, kind: &str, email: Option<&str>, name: Option<&str>) {
        self.exec_params(
            "INSERT INTO {p}people VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![id, kind, email, name],
        );
    }

    /// A student `id` with email `<id lower-cased>@uni.example`.
    pub fn student(&self, id: &str) -> String {
        let email = format!("{}@uni.example", id.to_ascii_lowercase());
        self.person(id, "student", Some(&email), None);
        email
    }

    pub fn location(&self, id: &str, name: &str, building: Option<&str>) {
        self.exec_params(
            "INSERT INTO {p}locations VALUES (?1, ?2, ?3, NULL, NULL, NULL)",
            rusqlite::params![id, name, building],
        );
    }

    pub fn group(&self, id: &str, name: &str, members: &[&str]) {
        self.exec_params(
            "INSERT INTO {p}groups VALUES (?1, ?2, 'course')",
            rusqlite::params![id, name],
        );
        for m in members {
            self.member(id, m);
        }
    }

    pub fn member(&self, group: &str, person: &str) {
        self.exec_params(
            "INSERT INTO {p}group_members VALUES (?1, ?2)",
            rusqlite::params![group, person],
        );
    }

    pub fn event(&self, e: &Ev) {
        self.exec_params(
            "INSERT INTO {p}events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            rusqlite::params![
                e.id,
                e.title,
                e.event_type,
                e.module_code,
                e.module_name,
                e.description,
                e.starts_at,
                e.ends_at,
                e.timezone,
                e.status
            ],
        );
    }

    pub fn event_group(&self, event: &str, group: &str) {
        self.exec_params(
            "INSERT INTO {p}event_groups VALUES (?1, ?2)",
            rusqlite::params![event, group],
        );
    }

    pub fn event_person(&self, event: &str, person: &str, role: Option<&str>, note: Option<&str>) {
        self.exec_params(
            "INSERT INTO {p}event_people VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![event, person, role, note],
        );
    }

    pub fn event_location(&self, event: &str, location: &str) {
        self.exec_params(
            "INSERT INTO {p}event_locations VALUES (?1, ?2)",
            rusqlite::params![event, location],
        );
    }
}

// ---------------------------------------------------------------------------
// Times relative to now.

pub fn london() -> TimeZone {
    TimeZone::get("Europe/London").expect("tzdb has Europe/London")
}

/// Wall-clock text `YYYY-MM-DD HH:MM:SS`, as a timetable view would hold it.
pub fn wall(dt: DateTime) -> String {
    dt.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as the icalendar dump writes UTC times.
pub fn utc(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The date `month`/`day` that falls within `[now + min_days, now + max_days]`.
pub fn next_date(month: i8, day: i8, min_days: i64, max_days: i64) -> jiff::civil::Date {
    let today = Timestamp::now().to_zoned(TimeZone::UTC).date();
    for year in today.year() - 1..=today.year() + 2 {
        let d = jiff::civil::date(year, month, day);
        // Date - Date is a span in days.
        let days = i64::from((d - today).get_days());
        if days >= min_days && days <= max_days {
            return d;
        }
    }
    panic!("no {month}/{day} within [{min_days}, {max_days}] days of {today}");
}

/// Today (UTC) plus `days`, at `hour`:00 wall-clock.
pub fn days_from_now(days: i64, hour: i8) -> DateTime {
    let today = Timestamp::now().to_zoned(TimeZone::UTC).date();
    today
        .checked_add(days.days())
        .expect("date")
        .at(hour, 0, 0, 0)
}

/// The instant of wall-clock `dt` in `tz`.
pub fn instant(dt: DateTime, tz: &TimeZone) -> Timestamp {
    tz.to_ambiguous_zoned(dt)
        .compatible()
        .expect("placeable")
        .timestamp()
}

pub fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}
