//! Syncthing over the same faulty link, for `collect_bench` (BENCHMARKS.md,
//! "Site data collection").
//!
//! Two `syncthing serve` processes on 127.0.0.1, each with its own `--home`
//! made by `syncthing generate`: the "site" shares a send-only folder (the
//! site's data), the "centre" holds it as receive-only. Discovery (global and
//! local), relays, NAT traversal, usage and crash reporting and upgrades are
//! off, listening is TCP on 127.0.0.1 only (no QUIC), the GUI/REST listens on
//! 127.0.0.1. The site knows the centre only by the proxy's address; the
//! centre knows the site only by a closed port, so the one connection there
//! can be is the site's, through the proxy: every byte of TLS, index and
//! block exchange is throttled, counted and cut with the others.
//!
//! Done when the centre's folder holds every file of the site's, with the
//! same BLAKE3 (checked once the sizes all match; temporary files are only
//! renamed into place when whole).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::collect_common::{free_port, http_get_auth};
use edusync_testkit::proxy::{FaultProxy, ProxyOptions};

/// How Syncthing is set up for a run.
pub struct StOpts {
    pub rate: u64,
    pub cut: u64,
    /// Per-device `compression`: `metadata` (Syncthing's default) or `always` (LZ4).
    pub compression: String,
    /// `reconnectionIntervalS` and `pullerPauseS`; `None` keeps Syncthing's
    /// defaults (60 s for both).
    pub retry: Option<u64>,
    /// Give up after this long.
    pub limit: Duration,
}

pub fn installed() -> Option<String> {
    let out = Command::new("syncthing").arg("--version").output().ok()?;
    let v = String::from_utf8_lossy(&out.stdout);
    Some(v.split_whitespace().nth(1).unwrap_or("?").to_string())
}

/// One Syncthing instance: its home, ports and the process (killed on drop).
struct Node {
    home: PathBuf,
    id: String,
    apikey: String,
    gui: u16,
    listen: u16,
    child: Option<Child>,
}

impl Node {
    fn generate(home: &Path) -> Node {
        std::fs::create_dir_all(home).unwrap();
        let out = Command::new("syncthing")
            .arg("generate")
            .arg(format!("--home={}", home.display()))
            .arg("--no-default-folder")
            .arg("--skip-port-probing")
            .output()
            .expect("syncthing generate");
        assert!(out.status.success(), "syncthing generate: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        let id = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Device ID:"))
            .expect("device ID in `syncthing generate` output")
            .trim()
            .to_string();
        let generated = std::fs::read_to_string(home.join("config.xml")).unwrap();
        let apikey = between(&generated, "<apikey>", "</apikey>").to_string();
        Node {
            home: home.to_path_buf(),
            id,
            apikey,
            gui: free_port(),
            listen: free_port(),
            child: None,
        }
    }

    /// Rewrites the generated config.xml: options, both devices, the folder.
    fn configure(&self, o: &StOpts, peer: (&str, &str), folder: (&Path, &str), dial: String) {
        let generated = std::fs::read_to_string(self.home.join("config.xml")).unwrap();
        let version = between(&generated, "<configuration version=\"", "\"");
        let device = |id: &str, name: &str, addr: &str| {
            format!(
                "    <device id=\"{id}\" name=\"{name}\" compression=\"{}\" introducer=\"false\">\n        <address>{addr}</address>\n        <autoAcceptFolders>false</autoAcceptFolders>\n    </device>\n",
                o.compression
            )
        };
        let retry = o.retry.unwrap_or(0);
        let reconnect = o.retry.unwrap_or(60);
        let (path, kind) = folder;
        let config = format!(
            "<configuration version=\"{version}\">\n\
    <folder id=\"site-data\" label=\"site-data\" path=\"{path}\" type=\"{kind}\" rescanIntervalS=\"10\" fsWatcherEnabled=\"true\" fsWatcherDelayS=\"1\" ignorePerms=\"false\" autoNormalize=\"true\">\n\
        <filesystemType>basic</filesystemType>\n\
        <device id=\"{me}\"></device>\n\
        <device id=\"{peer_id}\"></device>\n\
        <pullerPauseS>{retry}</pullerPauseS>\n\
    </folder>\n\
{self_dev}{peer_dev}\
    <gui enabled=\"true\" tls=\"false\">\n\
        <address>127.0.0.1:{gui}</address>\n\
        <apikey>{apikey}</apikey>\n\
    </gui>\n\
    <options>\n\
        <listenAddress>tcp://127.0.0.1:{listen}</listenAddress>\n\
        <globalAnnounceEnabled>false</globalAnnounceEnabled>\n\
        <localAnnounceEnabled>false</localAnnounceEnabled>\n\
        <relaysEnabled>false</relaysEnabled>\n\
        <natEnabled>false</natEnabled>\n\
        <reconnectionIntervalS>{reconnect}</reconnectionIntervalS>\n\
        <startBrowser>false</startBrowser>\n\
        <urAccepted>-1</urAccepted>\n\
        <crashReportingEnabled>false</crashReportingEnabled>\n\
        <autoUpgradeIntervalH>0</autoUpgradeIntervalH>\n\
        <setLowPriority>false</setLowPriority>\n\
    </options>\n\
</configuration>\n",
            path = path.display(),
            me = self.id,
            peer_id = peer.0,
            self_dev = device(&self.id, "self", "dynamic"),
            peer_dev = device(peer.0, peer.1, &dial),
            gui = self.gui,
            apikey = self.apikey,
            listen = self.listen,
        );
        std::fs::write(self.home.join("config.xml"), config).unwrap();
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.home.join("syncthing.log")).unwrap();
        let child = Command::new("syncthing")
            .arg("serve")
            .arg(format!("--home={}", self.home.display()))
            .args(["--no-browser", "--no-restart", "--no-upgrade"])
            .arg(format!("--gui-address=127.0.0.1:{}", self.gui))
            .env("STNOUPGRADE", "1")
            .env("STNORESTART", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("syncthing serve");
        self.child = Some(child);
    }

    fn report(&self, what: &str) -> String {
        let rest = http_get_auth(
            format!("127.0.0.1:{}", self.gui).parse().unwrap(),
            "/rest/db/status?folder=site-data",
            Some(&self.apikey),
        )
        .map(|(_, b)| b)
        .unwrap_or_default();
        let log = std::fs::read_to_string(self.home.join("syncthing.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("--- {what}: {rest}\n{}", tail.join("\n"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn between<'a>(s: &'a str, a: &str, b: &str) -> &'a str {
    let start = s.find(a).expect(a) + a.len();
    let len = s[start..].find(b).expect(b);
    &s[start..start + len]
}

/// Syncthing's own files in a folder: the marker and temporaries.
fn syncthing_file(rel: &str) -> bool {
    rel.starts_with(".stfolder")
        || rel.starts_with(".stignore")
        || rel
            .rsplit('/')
            .next()
            .unwrap_or("")
            .starts_with(".syncthing.")
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(base, &p, out);
        } else {
            let rel = p.strip_prefix(base).unwrap().to_str().unwrap().to_string();
            if !syncthing_file(&rel) {
                out.push((rel, p));
            }
        }
    }
}

/// Every data file in `dir`: relative path -> size.
fn sizes(dir: &Path) -> BTreeMap<String, u64> {
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.into_iter()
        .map(|(r, p)| {
            let n = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(u64::MAX);
            (r, n)
        })
        .collect()
}

/// Every data file in `dir`: relative path -> BLAKE3.
fn hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.into_iter()
        .map(|(r, p)| {
            let h = blake3::hash(&std::fs::read(&p).unwrap_or_default());
            (r, h.to_hex().to_string())
        })
        .collect()
}

/// Syncs `src` (a site's data folder) to a fresh receive-only folder through
/// a throttled, cut link; prints one result line.
pub async fn bench(o: &StOpts, tmp: &Path, src: &Path, size: u64) {
    let Some(version) = installed() else {
        println!("syncthing: not installed (apt-get install syncthing); skipped");
        return;
    };
    let run = tmp.join(format!("syncthing-{}", free_port()));
    let dest = run.join("centre-data");
    std::fs::create_dir_all(&dest).unwrap();
    let want_sizes = sizes(src);
    let want = hashes(src);

    let mut site = Node::generate(&run.join("site-home"));
    let mut centre = Node::generate(&run.join("centre-home"));
    let proxy = FaultProxy::start(
        format!("127.0.0.1:{}", centre.listen).parse().unwrap(),
        ProxyOptions {
            cut_every: Some(Duration::from_secs(o.cut)),
            bytes_per_second: Some(o.rate),
        },
    )
    .await
    .unwrap();
    let closed = free_port();
    site.configure(
        o,
        (&centre.id, "centre"),
        (src, "sendonly"),
        format!("tcp://127.0.0.1:{}", proxy.addr().port()),
    );
    centre.configure(
        o,
        (&site.id, "site"),
        (&dest, "receiveonly"),
        format!("tcp://127.0.0.1:{closed}"),
    );

    let t = Instant::now();
    centre.spawn();
    site.spawn();
    let deadline = t + o.limit;
    let mut checks = 0;
    let (took, up, down, conns, cuts) = loop {
        if Instant::now() > deadline {
            println!(
                "syncthing {version}: NOT complete after {:?}; {} bytes up, {} down, {} cuts\n{}\n{}",
                o.limit,
                proxy.bytes_up(),
                proxy.bytes_down(),
                proxy.cuts(),
                site.report("site"),
                centre.report("centre")
            );
            return;
        }
        if sizes(&dest) == want_sizes {
            let at = (
                t.elapsed(),
                proxy.bytes_up(),
                proxy.bytes_down(),
                proxy.connections(),
                proxy.cuts(),
            );
            checks += 1;
            if hashes(&dest) == want {
                break at;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "syncthing {version} sendonly -> receiveonly (compression {}, reconnect/puller pause {}): {} files, {size} bytes in {took:.1?} ({}), {} bytes on the wire up ({:.3} x data), {} down, {} connections, {} cuts, all BLAKE3 identical ({checks} full checks)",
        o.compression,
        o.retry
            .map(|s| format!("{s} s"))
            .unwrap_or_else(|| "defaults".into()),
        want.len(),
        crate::mbps(size, took),
        up,
        up as f64 / size as f64,
        down,
        conns,
        cuts
    );
}
