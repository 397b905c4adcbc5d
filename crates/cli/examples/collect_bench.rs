//! Full-size site data collection benchmarks (see BENCHMARKS.md, "Site data
//! collection"). Not run in CI: the CI-sized versions are the
//! `crates/cli/tests/collect_*.rs` tests.
//!
//! ```sh
//! cargo build --release -p edusync --example collect_bench
//! target/release/examples/collect_bench                    # both scenarios, full size
//! target/release/examples/collect_bench --mb 20 --sites 100 --no-rsync
//! target/release/examples/collect_bench --mb 100 --only syncthing --rate 2000000 --cut 5
//! ```
//!
//! 1. `data`: one site with `--mb` MB of realistic data (CSV progress files,
//!    JSON assessments, tool logs, timestamp files, a heartbeat log, and a
//!    quarter as incompressible exports) over a link throttled to `--rate`
//!    bytes/s and cut every `--cut` seconds. edusync agent → hub, then (if
//!    rsync is installed) `rsync --partial` in a retry loop to an rsync
//!    daemon over the same kind of proxy link. Reports wall time and bytes on
//!    the wire. Then (if syncthing is installed) Syncthing, a send-only
//!    folder to a receive-only one over the same kind of link (see
//!    `collect_bench/syncthing.rs`; `--st-compression metadata|always`,
//!    `--st-retry SECONDS` for its reconnection interval and puller pause,
//!    `--st-defaults` to keep Syncthing's 60 s for both). `--only syncthing`
//!    runs just that, on freshly generated data.
//! 2. `sites`: `--sites` agents (separate processes) upload at once through
//!    one cut link; reports the time until every file is at the hub.

#[path = "../tests/collect_common/mod.rs"]
mod collect_common;
#[path = "collect_bench/syncthing.rs"]
mod syncthing;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use collect_common::*;
use edusync_testkit::proxy::{FaultProxy, ProxyOptions};

struct Opts {
    mb: u64,
    sites: usize,
    rate: u64,
    cut: u64,
    rsync: bool,
    syncthing: bool,
    st_compression: String,
    st_retry: Option<u64>,
    only: Option<String>,
}

fn opts() -> Opts {
    let mut o = Opts {
        mb: 100,
        sites: 500,
        rate: 4_000_000,
        cut: 5,
        rsync: true,
        syncthing: true,
        st_compression: "always".into(),
        st_retry: Some(1),
        only: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--mb" => o.mb = v.parse().expect("--mb N"),
            "--sites" => o.sites = v.parse().expect("--sites N"),
            "--rate" => o.rate = v.parse().expect("--rate BYTES_PER_SEC"),
            "--cut" => o.cut = v.parse().expect("--cut SECONDS"),
            "--only" => o.only = Some(v),
            "--no-rsync" => {
                o.rsync = false;
                i -= 1;
            }
            "--no-syncthing" => {
                o.syncthing = false;
                i -= 1;
            }
            "--st-compression" => o.st_compression = v,
            "--st-retry" => o.st_retry = Some(v.parse().expect("--st-retry SECONDS")),
            "--st-defaults" => {
                o.st_retry = None;
                i -= 1;
            }
            other => panic!("unknown argument {other}; see the file's header"),
        }
        i += 2;
    }
    o
}

/// Writes about `mb` MB of site data; returns the bytes written.
fn make_data(data: &Path, mb: u64) -> u64 {
    let mut rng = Rng::new(2026);
    let target = mb * 1_000_000;
    let mut total = 0;
    let mut day = 0;
    while total < target * 3 / 4 {
        total += write_day(data, day, 4000, &mut rng);
        day += 1;
    }
    let mut i = 0;
    while total < target {
        let n = (4_000_000).min((target - total) as usize).max(1);
        std::fs::write(
            data.join(format!("progress/export-{i:03}.csv")),
            rng.bytes(n),
        )
        .unwrap();
        total += n as u64;
        i += 1;
    }
    total
}

pub(crate) fn mbps(bytes: u64, d: Duration) -> String {
    format!("{:.2} MB/s", bytes as f64 / 1e6 / d.as_secs_f64())
}

async fn bench_data(o: &Opts, tmp: &Path) {
    println!(
        "## data: one site, {} MB, link {} B/s cut every {} s",
        o.mb, o.rate, o.cut
    );
    let hub = HubProc::start(&tmp.join("hub"), "");
    let token = hub.site_add("school-bench");
    let proxy = FaultProxy::start(
        hub.addr(),
        ProxyOptions {
            cut_every: Some(Duration::from_secs(o.cut)),
            bytes_per_second: Some(o.rate),
        },
    )
    .await
    .unwrap();
    let knobs = "scan_interval = \"1s\"\nsettle = \"1s\"\nheartbeat_interval = \"30s\"\nretry_max = \"2s\"\nrequest_timeout = \"30s\"\n";
    let mut agent = AgentProc::new(
        &tmp.join("site"),
        "school-bench",
        &token,
        proxy.addr(),
        knobs,
    );
    let size = make_data(&agent.data, o.mb);
    let want = expected(&agent.data);
    let t = Instant::now();
    agent.spawn();
    wait_until(
        "all data at the hub",
        Duration::from_secs(3600),
        || hub.manifest("school-bench") == want,
        || agent.log_tail(),
    )
    .await;
    let took = t.elapsed();
    assert_complete(&hub, "school-bench", &agent.data);
    println!(
        "edusync agent: {} files, {size} bytes in {took:.1?} ({}), {} bytes on the wire up ({:.3} x data), {} down, {} cuts, all hashes verified",
        want.len(),
        mbps(size, took),
        proxy.bytes_up(),
        proxy.bytes_up() as f64 / size as f64,
        proxy.bytes_down(),
        proxy.cuts()
    );
    drop(agent);
    if o.rsync {
        bench_rsync(o, tmp, &tmp.join("site/data"), size).await;
    }
    if o.syncthing {
        bench_syncthing(o, tmp, &tmp.join("site/data"), size).await;
    }
}

async fn bench_syncthing(o: &Opts, tmp: &Path, src: &Path, size: u64) {
    let st = syncthing::StOpts {
        rate: o.rate,
        cut: o.cut,
        compression: o.st_compression.clone(),
        retry: o.st_retry,
        limit: Duration::from_secs(1200),
    };
    syncthing::bench(&st, tmp, src, size).await;
}

async fn bench_rsync(o: &Opts, tmp: &Path, src: &Path, size: u64) {
    if Command::new("rsync")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        println!("rsync: not installed (apt-get install rsync); skipped");
        return;
    }
    let dest = tmp.join("rsync-dest");
    std::fs::create_dir_all(&dest).unwrap();
    let port = free_port();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let conf = tmp.join("rsyncd.conf");
    std::fs::write(
        &conf,
        format!(
            "use chroot = false\n{}pid file = {}\n[hub]\npath = {}\nread only = false\n",
            if root { "uid = root\ngid = root\n" } else { "" },
            tmp.join("rsyncd.pid").display(),
            dest.display()
        ),
    )
    .unwrap();
    let mut daemon = Command::new("rsync")
        .args(["--daemon", "--no-detach", "--address=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--config={}", conf.display()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let proxy = FaultProxy::start(
        format!("127.0.0.1:{port}").parse().unwrap(),
        ProxyOptions {
            cut_every: Some(Duration::from_secs(o.cut)),
            bytes_per_second: Some(o.rate),
        },
    )
    .await
    .unwrap();
    let t = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let st = Command::new("rsync")
            .args([
                "-a",
                "--partial",
                "-z",
                "--compress-choice=zstd",
                "--timeout=30",
                "--contimeout=10",
            ])
            .arg(format!("{}/", src.display()))
            .arg(format!("rsync://127.0.0.1:{}/hub/", proxy.addr().port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if st.success() {
            break;
        }
        assert!(attempts < 10_000, "rsync never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = t.elapsed();
    let same = expected(src) == expected(&dest);
    println!(
        "rsync --partial -z (zstd) retry loop: {size} bytes in {took:.1?} ({}), {} bytes on the wire up ({:.3} x data), {} down, {attempts} attempts, {} cuts, copy identical: {same}",
        mbps(size, took),
        proxy.bytes_up(),
        proxy.bytes_up() as f64 / size as f64,
        proxy.bytes_down(),
        proxy.cuts()
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}

async fn bench_sites(o: &Opts, tmp: &Path) {
    println!(
        "## sites: {} agents at once, one link cut every {} s",
        o.sites, o.cut
    );
    let hub = HubProc::start(&tmp.join("hub-sites"), "");
    let proxy = FaultProxy::start(
        hub.addr(),
        ProxyOptions {
            cut_every: Some(Duration::from_secs(o.cut)),
            bytes_per_second: None,
        },
    )
    .await
    .unwrap();
    let knobs = "scan_interval = \"2s\"\nsettle = \"200ms\"\nheartbeat_interval = \"60s\"\nretry_max = \"5s\"\nrequest_timeout = \"30s\"\n";
    let mut agents = Vec::new();
    let mut bytes = 0;
    for i in 0..o.sites {
        let site = format!("school-{i:03}");
        let token = hub.site_add(&site);
        let a = AgentProc::new(
            &tmp.join("sites").join(&site),
            &site,
            &token,
            proxy.addr(),
            knobs,
        );
        let mut rng = Rng::new(i as u64);
        for day in 0..3 {
            bytes += write_day(&a.data, day, 200, &mut rng);
        }
        agents.push(a);
    }
    let files: usize = agents.iter().map(|a| expected(&a.data).len()).sum();
    let t = Instant::now();
    for a in &mut agents {
        a.spawn();
    }
    wait_until(
        "every site's files at the hub",
        Duration::from_secs(1800),
        || {
            let n: i64 = hub
                .db()
                .query_row("SELECT COUNT(DISTINCT site_id || '/' || dataset || '/' || path) FROM hub_files", [], |r| r.get(0))
                .unwrap();
            n as usize == files
        },
        || hub.log_tail(),
    )
    .await;
    let took = t.elapsed();
    for a in &agents {
        assert_complete(&hub, &a.site, &a.data);
    }
    println!(
        "{} sites, {files} files, {bytes} bytes: all at the hub in {took:.1?}, {} cuts, every hash verified",
        o.sites,
        proxy.cuts()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = opts();
    let tmp = tempfile::tempdir().unwrap();
    println!("edusync binary: {}", bin().display());
    if o.only.as_deref().is_none_or(|x| x == "data") {
        bench_data(&o, tmp.path()).await;
    }
    if o.only.as_deref() == Some("syncthing") {
        println!(
            "## syncthing: one site, {} MB, link {} B/s cut every {} s",
            o.mb, o.rate, o.cut
        );
        let src = tmp.path().join("st-site");
        std::fs::create_dir_all(&src).unwrap();
        let size = make_data(&src, o.mb);
        bench_syncthing(&o, tmp.path(), &src, size).await;
    }
    if o.only.as_deref().is_none_or(|x| x == "sites") {
        bench_sites(&o, tmp.path()).await;
    }
}
