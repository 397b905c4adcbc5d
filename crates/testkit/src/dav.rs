//! Real CalDAV servers for tests: Radicale and Xandikos, each started on
//! `127.0.0.1` with a free port and a storage folder of its own, waited for
//! (with a deadline) until its port answers, and killed when dropped.
//!
//! The servers are the Python packages `radicale` and `xandikos`; when one
//! is missing the test fails with a message saying to run `./scripts/test`,
//! which installs them. Nothing is skipped silently.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DavKind {
    Radicale,
    Xandikos,
}

impl DavKind {
    fn module(self) -> &'static str {
        match self {
            DavKind::Radicale => "radicale",
            DavKind::Xandikos => "xandikos",
        }
    }
}

/// Who may write where (Radicale only; Xandikos has a single user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rights {
    /// Every authenticated user may read and write every collection.
    Everyone,
    /// Radicale's `owner_only`: a user may touch only `/<user>/…`, the
    /// default of a fresh install, where a service account cannot write
    /// into people's calendars.
    OwnerOnly,
}

/// A running server; killed (and its storage removed) on drop.
pub struct DavServer {
    pub kind: DavKind,
    pub port: u16,
    dir: tempfile::TempDir,
    rights: Rights,
    child: Option<Child>,
}

/// How long a server may take to start answering.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// Fails the test, loudly, when the server's Python package is missing.
pub fn require(kind: DavKind) {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {}", kind.module())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the Python package `{0}` is not installed, and this test runs against a real {0} server; \
         run `./scripts/test` (it installs it) or `python3 -m pip install {0}`",
        kind.module()
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

impl DavServer {
    /// Starts `kind` where every user may write everywhere.
    pub fn start(kind: DavKind) -> DavServer {
        DavServer::start_with(kind, Rights::Everyone)
    }

    pub fn start_with(kind: DavKind, rights: Rights) -> DavServer {
        require(kind);
        let dir = tempfile::Builder::new()
            .prefix(&format!("edusync-{}-", kind.module()))
            .tempdir()
            .expect("cannot make a temp dir for the server's storage");
        let mut s = DavServer {
            kind,
            port: free_port(),
            dir,
            rights,
            child: None,
        };
        s.spawn();
        s
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where the server keeps its collections.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("collections")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let storage = self.storage();
        std::fs::create_dir_all(&storage).expect("cannot make the storage folder");
        let log = std::fs::File::create(self.dir.path().join("server.log"))
            .expect("cannot make the server log");
        let mut cmd = Command::new("python3");
        match self.kind {
            DavKind::Radicale => {
                // Owner-only as an explicit rights file: each user reads and
                // writes only under /<user>/ (and may list the root).
                let rights_file = self.dir.path().join("rights");
                std::fs::write(
                    &rights_file,
                    "[root]\nuser: .+\ncollection:\npermissions: R\n\n\
                     [owner]\nuser: .+\ncollection: {user}(/.*)?\npermissions: RrWw\n",
                )
                .expect("cannot write the Radicale rights file");
                let rights = match self.rights {
                    Rights::Everyone => "authenticated".to_string(),
                    Rights::OwnerOnly => format!("from_file\nfile = {}", rights_file.display()),
                };
                let config = self.dir.path().join("radicale.conf");
                std::fs::write(
                    &config,
                    format!(
                        "[server]\nhosts = 127.0.0.1:{port}\n\
                         [auth]\ntype = none\n\
                         [rights]\ntype = {rights}\n\
                         [logging]\nlevel = warning\nmask_passwords = True\n\
                         [web]\ntype = none\n\
                         [storage]\nfilesystem_folder = {storage}\n",
                        port = self.port,
                        storage = storage.display()
                    ),
                )
                .expect("cannot write the Radicale config");
                cmd.args(["-m", "radicale", "--config"]).arg(&config);
            }
            DavKind::Xandikos => {
                cmd.args([
                    "-m",
                    "xandikos.web",
                    "--autocreate",
                    "--no-detect-systemd",
                    "-l",
                    "127.0.0.1",
                    "-p",
                ])
                .arg(self.port.to_string())
                .arg("-d")
                .arg(&storage)
                .arg("--state-dir")
                .arg(self.dir.path().join("state"));
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("cannot start python3");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let start = Instant::now();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "{:?} exited ({status}) before answering on port {}; its log:\n{}",
                    self.kind,
                    self.port,
                    self.log()
                );
            }
            if start.elapsed() > START_DEADLINE {
                panic!(
                    "{:?} did not answer on port {} within {START_DEADLINE:?}; its log:\n{}",
                    self.kind,
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Kills the server at once (SIGKILL); the storage stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port with the same storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The paths (relative to the storage folder) of every `.ics` file, sorted.
    pub fn ics_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.storage(), &self.storage(), &mut out);
        out.sort();
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            walk(root, &p, out);
        } else if name.ends_with(".ics") {
            out.push(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
        }
    }
}

impl Drop for DavServer {
    fn drop(&mut self) {
        self.kill();
    }
}
