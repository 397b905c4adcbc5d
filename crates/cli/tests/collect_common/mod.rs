//! Shared by the `collect_*` end-to-end tests: the built `edusync` binary as
//! hub (`serve`) and agents (`agent`), in temp dirs, on 127.0.0.1, with the
//! fault-injecting proxy from `edusync-testkit` between them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `edusync` binary under test (benches/examples: next to their own executable, or `$EDUSYNC_BIN`).
pub fn bin() -> PathBuf {
    if let Some(b) = option_env!("CARGO_BIN_EXE_edusync") {
        return PathBuf::from(b);
    }
    if let Ok(b) = std::env::var("EDUSYNC_BIN") {
        return PathBuf::from(b);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/examples/<name> -> target/<profile>/edusync
    exe.parent()
        .and_then(Path::parent)
        .map(|p| p.join("edusync"))
        .expect("edusync binary")
}

pub const CONSOLE_TOKEN: &str = "test-console-token";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tail(p: &Path, lines: usize) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// The hub: `edusync serve` with its own config, state and root.
pub struct HubProc {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    child: Option<Child>,
    starts: u32,
}

impl HubProc {
    /// Writes the config (`extra_hub` is appended to `[hub]`) and starts the hub.
    pub fn start(dir: &Path, extra_hub: &str) -> HubProc {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let config = dir.join("edusync.toml");
        std::fs::write(
            &config,
            format!(
                "state = \"sqlite://./state.db\"\n[server]\nlisten = \"127.0.0.1:{port}\"\n[hub]\nroot = \"./collected\"\n{extra_hub}\n"
            ),
        )
        .unwrap();
        let mut h = HubProc {
            dir: dir.to_path_buf(),
            config,
            port,
            child: None,
            starts: 0,
        };
        h.spawn();
        h
    }

    pub fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    pub fn root(&self) -> PathBuf {
        self.dir.join("collected")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("serve-{}.log", self.starts))
    }

    pub fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log()).unwrap();
        let child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("EDUSYNC_CONSOLE_TOKEN", CONSOLE_TOKEN)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn edusync serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http_get(self.addr(), "/healthz").is_some_and(|(c, _)| c == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("hub did not come up; its log:\n{}", tail(&self.log(), 40));
    }

    /// SIGKILL, like a power cut.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Rewrites the `[hub]` extra keys (e.g. remove a quota) for the next start.
    pub fn set_extra(&self, extra_hub: &str) {
        std::fs::write(
            &self.config,
            format!(
                "state = \"sqlite://./state.db\"\n[server]\nlisten = \"127.0.0.1:{}\"\n[hub]\nroot = \"./collected\"\n{extra_hub}\n",
                self.port
            ),
        )
        .unwrap();
    }

    /// `edusync site add`: returns the token printed on stdout.
    pub fn site_add(&self, site: &str) -> String {
        let out = Command::new(bin())
            .args(["site", "add", "--config"])
            .arg(&self.config)
            .arg(site)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "edusync site add {site} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(
            token.starts_with("edst_") && !token.contains('\n'),
            "unexpected stdout {token:?}"
        );
        token
    }

    pub fn db(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(self.dir.join("state.db")).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    /// (dataset/path -> blake3) of the newest manifest entry per path.
    pub fn manifest(&self, site: &str) -> BTreeMap<String, String> {
        let c = self.db();
        let mut st = c
            .prepare("SELECT dataset, path, blake3 FROM hub_files WHERE site_id = ?1 ORDER BY id")
            .unwrap();
        let rows = st
            .query_map([site], |r| {
                Ok((
                    format!("{}/{}", r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                    r.get(2)?,
                ))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    pub fn last_heartbeat(&self, site: &str) -> Option<serde_json::Value> {
        let c = self.db();
        let j: Option<String> = c
            .query_row(
                "SELECT last_heartbeat_json FROM hub_sites WHERE site_id = ?1",
                [site],
                |r| r.get(0),
            )
            .ok()?;
        j.and_then(|j| serde_json::from_str(&j).ok())
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log(), 30)
    }
}

impl Drop for HubProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One site: its data folder and its `edusync agent`.
pub struct AgentProc {
    pub dir: PathBuf,
    pub site: String,
    pub data: PathBuf,
    pub config: PathBuf,
    token: String,
    child: Option<Child>,
    starts: u32,
}

/// Agent knobs for fast tests.
pub const FAST: &str = "scan_interval = \"300ms\"\nsettle = \"300ms\"\nheartbeat_interval = \"2s\"\nretry_max = \"1s\"\nrequest_timeout = \"10s\"\n";

impl AgentProc {
    /// Writes an agent config with datasets `progress` (*.csv), `assessments` (*.json),
    /// `logs` (**/*.log), `stamps` (*.ts) under `dir/data/<dataset>`.
    pub fn new(dir: &Path, site: &str, token: &str, hub: SocketAddr, extra: &str) -> AgentProc {
        let data = dir.join("data");
        for d in ["progress", "assessments", "logs", "stamps"] {
            std::fs::create_dir_all(data.join(d)).unwrap();
        }
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "hub = \"http://{hub}\"\nsite = \"{site}\"\ntoken_env = \"EDUSYNC_SITE_TOKEN\"\nstate_dir = \"./agent-state\"\n{extra}\n\
[[datasets]]\nname = \"progress\"\npath = \"data/progress\"\nglob = \"**/*.csv\"\n\n\
[[datasets]]\nname = \"assessments\"\npath = \"data/assessments\"\nglob = \"**/*.json\"\n\n\
[[datasets]]\nname = \"logs\"\npath = \"data/logs\"\nglob = \"**/*.log\"\n\n\
[[datasets]]\nname = \"stamps\"\npath = \"data/stamps\"\nglob = \"*.ts\"\n"
            ),
        )
        .unwrap();
        AgentProc {
            dir: dir.to_path_buf(),
            site: site.into(),
            data,
            config,
            token: token.into(),
            child: None,
            starts: 0,
        }
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("agent-{}.log", self.starts))
    }

    pub fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log()).unwrap();
        self.child = Some(
            Command::new(bin())
                .args(["agent", "--config"])
                .arg(&self.config)
                .env("EDUSYNC_SITE_TOKEN", &self.token)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn edusync agent"),
        );
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Fails the test if the agent exited by itself.
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                panic!(
                    "agent {} exited ({st}); log:\n{}",
                    self.site,
                    tail(&self.log(), 30)
                );
            }
        }
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log(), 30)
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Minimal HTTP/1.0 GET on loopback: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_get_auth(addr, path, None)
}

/// GET with an optional bearer token.
pub fn http_get_auth(addr: SocketAddr, path: &str, bearer: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = bearer
        .map(|b| format!("Authorization: Bearer {b}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n{auth}\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// Deterministic pseudo-random numbers (xorshift), so data is the same every run.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Realistic thin site data for "day" `day`: a CSV progress file, a JSON
/// assessment, a tool log, a timestamp file, and a line in the heartbeat log.
/// Returns the bytes written.
pub fn write_day(data: &Path, day: u32, rows: usize, rng: &mut Rng) -> u64 {
    let mut total = 0u64;
    let mut put = |rel: &str, content: &[u8]| {
        let p = data.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        total += content.len() as u64;
    };
    let date = format!("2026-03-{:02}", day % 28 + 1);
    let mut csv = String::from("student_id,module,activity,score,seconds,completed_at\n");
    for i in 0..rows {
        csv.push_str(&format!(
            "S{:05},M{:02},A{:03},{},{},{}T{:02}:{:02}:00Z\n",
            rng.below(900) + i as u64 % 100,
            rng.below(12),
            rng.below(200),
            rng.below(101),
            rng.below(3600),
            date,
            8 + rng.below(8),
            rng.below(60)
        ));
    }
    put(&format!("progress/{date}/day{day:03}.csv"), csv.as_bytes());
    let mut json = String::from("{\"assessment\":\"weekly\",\"results\":[");
    for i in 0..rows / 4 {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            "{{\"student\":\"S{:05}\",\"score\":{},\"items\":[{},{},{}]}}",
            rng.below(900),
            rng.below(101),
            rng.below(5),
            rng.below(5),
            rng.below(5)
        ));
    }
    json.push_str("]}");
    put(&format!("assessments/day{day:03}.json"), json.as_bytes());
    let mut log = String::new();
    for _ in 0..rows / 2 {
        log.push_str(&format!(
            "{date} 10:{:02}:{:02} INFO clix: sync module M{:02} ok ({} ms)\n",
            rng.below(60),
            rng.below(60),
            rng.below(12),
            rng.below(900)
        ));
    }
    put(&format!("logs/tool/{date}-day{day:03}.log"), log.as_bytes());
    put(
        &format!("stamps/day{day:03}.ts"),
        format!("{date}T{:02}:00:00Z\n", 7 + day % 3).as_bytes(),
    );
    // The heartbeat log grows (an appended, changing file).
    let hb = data.join("logs/heartbeat.log");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&hb)
        .unwrap();
    let line = format!("{date} server up, disk ok\n");
    f.write_all(line.as_bytes()).unwrap();
    total += line.len() as u64;
    total
}

/// Every file the agent should send: (dataset/relative path -> blake3).
pub fn expected(data: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    type Filter = fn(&str) -> bool;
    let globs: [(&str, Filter); 4] = [
        ("progress", |p| p.ends_with(".csv")),
        ("assessments", |p| p.ends_with(".json")),
        ("logs", |p| p.ends_with(".log")),
        ("stamps", |p| p.ends_with(".ts") && !p.contains('/')),
    ];
    for (ds, want) in globs {
        let base = data.join(ds);
        walk(&base, &mut |p| {
            let rel = p
                .strip_prefix(&base)
                .unwrap()
                .to_str()
                .unwrap()
                .replace('\\', "/");
            if want(&rel) {
                out.insert(
                    format!("{ds}/{rel}"),
                    blake3::hash(&std::fs::read(p).unwrap())
                        .to_hex()
                        .to_string(),
                );
            }
        });
    }
    out
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, f);
        } else {
            f(&p);
        }
    }
}

/// Hashes of what the hub stored for `site`: (dataset/path -> blake3).
pub fn stored(root: &Path, site: &str) -> BTreeMap<String, String> {
    let base = root.join(site);
    let mut out = BTreeMap::new();
    walk(&base, &mut |p| {
        let rel = p.strip_prefix(&base).unwrap().to_str().unwrap().to_string();
        out.insert(
            rel,
            blake3::hash(&std::fs::read(p).unwrap())
                .to_hex()
                .to_string(),
        );
    });
    out
}

/// Waits (async, so the in-process proxy keeps running) until `cond` holds.
pub async fn wait_until(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> bool,
    on_fail: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "timed out after {limit:?} waiting for {what}\n{}",
        on_fail()
    );
}

/// Asserts the hub holds exactly what the site has, every file hash-verified
/// against both the site's copy and the hub's manifest.
pub fn assert_complete(hub: &HubProc, site: &str, data: &Path) {
    let want = expected(data);
    let got = stored(&hub.root(), site);
    assert_eq!(got, want, "stored files differ from the site's files");
    let manifest = hub.manifest(site);
    assert_eq!(
        manifest, want,
        "the hub manifest differs from the site's files"
    );
}
