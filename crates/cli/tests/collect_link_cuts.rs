//! Realistic thin site data across a link cut every 1.5 s (and throttled)
//! arrives complete, every file hash-verified; a file still being written is
//! sent only once it has settled.

mod collect_common;

use std::io::Write;
use std::time::Duration;

use collect_common::*;
use edusync_testkit::proxy::{FaultProxy, ProxyOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thin_data_across_a_link_cut_every_few_seconds_arrives_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = HubProc::start(&tmp.path().join("hub"), "");
    let token = hub.site_add("school-001");
    let proxy = FaultProxy::start(
        hub.addr(),
        ProxyOptions {
            cut_every: Some(Duration::from_millis(1500)),
            bytes_per_second: Some(400_000),
        },
    )
    .await
    .unwrap();
    let mut agent = AgentProc::new(
        &tmp.path().join("site"),
        "school-001",
        &token,
        proxy.addr(),
        &format!("{FAST}chunk_size = 32768\n"),
    );
    let mut rng = Rng::new(1);
    for day in 0..10 {
        write_day(&agent.data, day, 400, &mut rng);
    }
    // A bigger export that needs many chunks, over several cuts.
    std::fs::write(
        agent.data.join("progress/export-full.csv"),
        rng.bytes(1_000_000),
    )
    .unwrap();
    agent.spawn();

    // A file still being written: appended every 100 ms for 2 s.
    let live = agent.data.join("assessments/live.json");
    let mut f = std::fs::File::create(&live).unwrap();
    for i in 0..20 {
        writeln!(f, "{{\"chunk\":{i},\"pad\":\"{}\"}}", "x".repeat(200)).unwrap();
        f.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(f);

    let want = expected(&agent.data);
    wait_until(
        "every file at the hub",
        Duration::from_secs(90),
        || hub.manifest("school-001") == want,
        || {
            format!(
                "agent log:\n{}\nhub log:\n{}",
                agent.log_tail(),
                hub.log_tail()
            )
        },
    )
    .await;
    agent.assert_running();
    assert_complete(&hub, "school-001", &agent.data);
    assert!(
        proxy.cuts() >= 2,
        "the link was cut only {} times",
        proxy.cuts()
    );
    // The file being written was never sent half-written: one version only.
    let versions: i64 = hub
        .db()
        .query_row(
            "SELECT COUNT(*) FROM hub_files WHERE site_id = 'school-001' AND path = 'live.json'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(versions, 1, "a half-written file was sent");
    let hb = hub
        .last_heartbeat("school-001")
        .expect("a heartbeat arrived");
    assert!(
        hb["agent_version"].is_string() && hb["disk_free_bytes"].as_u64().unwrap_or(0) > 0,
        "{hb}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_cap_is_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = HubProc::start(&tmp.path().join("hub"), "");
    let token = hub.site_add("school-capped");
    let proxy = FaultProxy::start(hub.addr(), ProxyOptions::default())
        .await
        .unwrap();
    let mut agent = AgentProc::new(
        &tmp.path().join("site"),
        "school-capped",
        &token,
        proxy.addr(),
        &format!("{FAST}chunk_size = 65536\nmax_bytes_per_second = 150000\n"),
    );
    // Incompressible: 450 kB at 150 kB/s takes about 3 s (less the first burst).
    std::fs::write(
        agent.data.join("progress/capped.csv"),
        Rng::new(9).bytes(450_000),
    )
    .unwrap();
    let want = expected(&agent.data);
    let t = std::time::Instant::now();
    agent.spawn();
    wait_until(
        "the capped file at the hub",
        Duration::from_secs(30),
        || hub.manifest("school-capped") == want,
        || agent.log_tail(),
    )
    .await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(2500),
        "cap not honoured: 450 kB in {took:?}"
    );
    assert_complete(&hub, "school-capped", &agent.data);
}
