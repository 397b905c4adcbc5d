//! Shared by the `serve_*` tests: the built `edusync` binary as `serve`, in a
//! temp dir, on a free loopback port, with a generated timetable and a vdir
//! target; plain HTTP/1.0 requests; and a headless Chromium driven through
//! chromedriver (WebDriver) when the machine has them.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_edusync");
pub const PASSWORD: &str = "correct horse battery";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs an `edusync` command to the end (bounded) and returns its stdout.
pub fn edusync(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(dir).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
    assert!(
        out.status.success(),
        "edusync {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `edusync serve` with its own folder; killed on drop.
pub struct Serve {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub child: Option<Child>,
    /// Environment given to every `edusync` this test runs (e.g. the state's password).
    pub env: Vec<(String, String)>,
}

impl Serve {
    /// A timetable of `students`, one profile `teaching` syncing to a vdir
    /// every `schedule`, accounts `admin`/`operator`/`viewer` (password [`PASSWORD`]).
    pub fn start(students: u32, schedule: &str) -> Serve {
        Serve::start_on(students, schedule, "state = \"sqlite://./state.db\"", &[])
    }

    /// As [`Serve::start`], with the config's top-level state keys
    /// (`state_lines`, e.g. a `postgres://` state and its `state_password_env`)
    /// and `env` for every command.
    pub fn start_on(
        students: u32,
        schedule: &str,
        state_lines: &str,
        env: &[(&str, &str)],
    ) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        edusync(
            d,
            &[
                "generate",
                "--out",
                "timetable.db",
                "--students",
                &students.to_string(),
                "--seed",
                "7",
            ],
            &[],
        );
        let port = free_port();
        std::fs::write(
            d.join("edusync.toml"),
            format!(
                "{state_lines}\n[server]\nlisten = \"127.0.0.1:{port}\"\n[hub]\nroot = \"./collected\"\n\
[[profiles]]\nname = \"teaching\"\ntimezone = \"Europe/London\"\nschedule = \"{schedule}\"\n\
[profiles.source]\nurl = \"sqlite://./timetable.db\"\nprefix = \"tt_\"\n[profiles.guard]\nmax_delete_percent = 10\n\
[[profiles.targets]]\nkind = \"vdir\"\npath = \"./calendars\"\n"
            ),
        )
        .unwrap();
        for role in ["admin", "operator", "viewer"] {
            edusync(
                d,
                &[
                    "user",
                    "add",
                    "--config",
                    "edusync.toml",
                    role,
                    "--role",
                    role,
                    "--password-env",
                    "PW",
                ],
                &[env, &[("PW", PASSWORD)]].concat(),
            );
        }
        let mut s = Serve {
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            dir,
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.spawn();
        s
    }

    pub fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("serve.log")).unwrap();
        let child = Command::new(BIN)
            .args(["-v", "serve", "--config", "edusync.toml"])
            .current_dir(self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("EDUSYNC_CONSOLE_TOKEN", "test-bearer-token")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(120));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// Waits for `/readyz` (the first cycle finished).
    pub fn wait_ready(&self, limit: Duration) {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some((200, _, _)) = get(self.addr, "/readyz", &[]) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "edusync serve was not ready within {limit:?}; its log:\n{}",
            self.log()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Events in the vdir (all people).
    pub fn calendar_files(&self) -> usize {
        let mut n = 0;
        if let Ok(rd) = std::fs::read_dir(self.path("calendars")) {
            for person in rd.flatten() {
                if let Ok(files) = std::fs::read_dir(person.path()) {
                    n += files
                        .flatten()
                        .filter(|f| f.path().extension().is_some_and(|e| e == "ics"))
                        .count();
                }
            }
        }
        n
    }

    /// Some student id with events in the generated timetable.
    pub fn a_student(&self) -> String {
        let c = rusqlite::Connection::open(self.path("timetable.db")).unwrap();
        c.query_row(
            "SELECT p.person_id FROM tt_people p JOIN tt_group_members m ON m.person_id = p.person_id \
             WHERE p.kind = 'student' ORDER BY p.person_id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap()
    }

    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SIGTERM, then wait (bounded).
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let t = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if t.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!(
                    "edusync serve did not stop within 30 s of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The value of the form field `name` in a page.
pub fn form_value(html: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let i = html
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} field in:\n{html}"))
        + key.len();
    html[i..].split('"').next().unwrap().to_string()
}

/// Signs in (password [`PASSWORD`]); returns the `Cookie` header value and the session's CSRF token.
pub fn sign_in(s: &Serve, user: &str) -> (String, String) {
    let (code, hs, page) = get(s.addr, "/console/login", &[]).unwrap();
    assert_eq!(code, 200);
    let login_cookie = header(&hs, "set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = form_value(&page, "csrf");
    let (code, hs, _) = request(
        s.addr,
        "POST",
        "/console/login",
        &[("Cookie", &login_cookie)],
        &format!("csrf={csrf}&next=%2Fconsole&user={user}&password=correct+horse+battery"),
    )
    .unwrap();
    assert_eq!(code, 303, "sign-in as {user}");
    let set = hs
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .find(|v| v.starts_with("edusync_session="))
        .expect("a session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains("Secure"),
        "plain http on loopback: not Secure ({set})"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let (code, _, page) = get(s.addr, "/console/logout", &[("Cookie", &cookie)]).unwrap();
    assert_eq!(code, 200);
    (cookie, form_value(&page, "csrf"))
}

/// Status, headers (lowercase names) and body of a response.
pub type Reply = (u16, Vec<(String, String)>, String);

/// One HTTP/1.0 request.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let code = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let hs = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((code, hs, body.to_string()))
}

pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Option<Reply> {
    request(addr, "GET", path, headers, "")
}

pub fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Where screenshots go: `target/test-artifacts/`.
pub fn artifacts() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// chromedriver and chromium, or why not. On CI their absence fails the test.
pub fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        names.iter().find_map(|n| {
            ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"]
                .iter()
                .map(|d| Path::new(d).join(n))
                .find(|p| p.exists())
        })
    };
    match (
        find(&["chromedriver"]),
        find(&["chromium", "chromium-browser"]),
    ) {
        (Some(d), Some(c)) => Some((d, c)),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "chromium and chromium-driver are required on CI (scripts/test installs them)"
                );
            }
            eprintln!("SKIPPED: browser test needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver); scripts/test installs them");
            None
        }
    }
}

/// A running chromedriver; killed on drop.
pub struct Driver {
    pub child: Child,
    pub port: u16,
    pub profile_dir: tempfile::TempDir,
}

impl Driver {
    pub fn start(chromedriver: &Path) -> Driver {
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver {
            child,
            port,
            profile_dir: tempfile::tempdir().unwrap(),
        }
    }

    pub async fn client(&self, chromium: &Path) -> fantoccini::Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", self.profile_dir.path().display()),
                    "--window-size=1280,900"
                ]
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session with headless Chromium")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
