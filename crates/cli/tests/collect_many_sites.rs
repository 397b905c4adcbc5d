//! Many sites (separate agent processes) upload at once through one cut,
//! shared link; nothing is dropped. `EDUSYNC_COLLECT_SITES` overrides the
//! count (default 100; the 500-site run is in benches/collect.rs).

mod collect_common;

use std::time::{Duration, Instant};

use collect_common::*;
use edusync_testkit::proxy::{FaultProxy, ProxyOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sites_at_once_nothing_dropped() {
    let n: usize = std::env::var("EDUSYNC_COLLECT_SITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let tmp = tempfile::tempdir().unwrap();
    let hub = HubProc::start(&tmp.path().join("hub"), "");
    let proxy = FaultProxy::start(
        hub.addr(),
        ProxyOptions {
            cut_every: Some(Duration::from_secs(3)),
            bytes_per_second: None,
        },
    )
    .await
    .unwrap();
    let slow = "scan_interval = \"1s\"\nsettle = \"200ms\"\nheartbeat_interval = \"10s\"\nretry_max = \"2s\"\nrequest_timeout = \"20s\"\n";
    let mut agents = Vec::new();
    for i in 0..n {
        let site = format!("school-{i:03}");
        let token = hub.site_add(&site);
        let a = AgentProc::new(&tmp.path().join(&site), &site, &token, proxy.addr(), slow);
        let mut rng = Rng::new(i as u64);
        for day in 0..2 {
            write_day(&a.data, day, 40, &mut rng);
        }
        agents.push(a);
    }
    let t = Instant::now();
    for a in &mut agents {
        a.spawn();
    }
    let wants: Vec<_> = agents.iter().map(|a| expected(&a.data)).collect();
    wait_until(
        "every site's files at the hub",
        Duration::from_secs(120),
        || {
            let c = hub.db();
            let count: i64 = c.query_row("SELECT COUNT(DISTINCT site_id || '/' || dataset || '/' || path) FROM hub_files", [], |r| r.get(0)).unwrap();
            count as usize == wants.iter().map(|w| w.len()).sum::<usize>()
        },
        || format!("hub:\n{}\nfirst agent:\n{}", hub.log_tail(), agents[0].log_tail()),
    )
    .await;
    eprintln!(
        "{n} sites flushed in {:?} across {} link cuts",
        t.elapsed(),
        proxy.cuts()
    );
    for (a, w) in agents.iter_mut().zip(&wants) {
        a.assert_running();
        assert_eq!(&hub.manifest(&a.site), w, "site {}", a.site);
        assert_complete(&hub, &a.site, &a.data);
    }
}
