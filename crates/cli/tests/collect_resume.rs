//! Interrupted transfers resume from the last acknowledged chunk: the agent
//! killed with SIGKILL mid-file, and the hub killed and restarted mid-upload.
//! Bytes on the wire stay within 1.1 × the data size.

mod collect_common;

use std::time::Duration;

use collect_common::*;
use edusync_testkit::proxy::{FaultProxy, ProxyOptions};

const SIZE: usize = 4_000_000;

async fn setup(tmp: &std::path::Path, site: &str) -> (HubProc, FaultProxy, AgentProc) {
    let hub = HubProc::start(&tmp.join("hub"), "");
    let token = hub.site_add(site);
    // ~4 s for the file: plenty of time to kill things mid-way.
    let proxy = FaultProxy::start(
        hub.addr(),
        ProxyOptions {
            cut_every: None,
            bytes_per_second: Some(1_000_000),
        },
    )
    .await
    .unwrap();
    let agent = AgentProc::new(
        &tmp.join("site"),
        site,
        &token,
        proxy.addr(),
        &format!("{FAST}chunk_size = 65536\n"),
    );
    // Incompressible, so compression cannot hide a resend.
    std::fs::write(agent.data.join("progress/big.csv"), Rng::new(7).bytes(SIZE)).unwrap();
    (hub, proxy, agent)
}

async fn wait_bytes(proxy: &FaultProxy, n: u64, agent: &AgentProc) {
    wait_until(
        "upload under way",
        Duration::from_secs(30),
        || proxy.bytes_up() > n,
        || agent.log_tail(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_file_resumes_without_resending() {
    let tmp = tempfile::tempdir().unwrap();
    let (hub, proxy, mut agent) = setup(tmp.path(), "school-kill").await;
    agent.spawn();
    wait_bytes(&proxy, SIZE as u64 * 2 / 5, &agent).await;
    agent.kill9();
    let before = proxy.bytes_up();
    assert!(
        hub.manifest("school-kill").is_empty(),
        "finished too early to test a resume"
    );
    agent.spawn();
    let want = expected(&agent.data);
    wait_until(
        "the file at the hub",
        Duration::from_secs(60),
        || hub.manifest("school-kill") == want,
        || agent.log_tail(),
    )
    .await;
    assert_complete(&hub, "school-kill", &agent.data);
    let wire = proxy.bytes_up();
    assert!(
        wire as f64 <= 1.1 * SIZE as f64,
        "{wire} bytes on the wire for {SIZE} bytes of data ({before} before the kill)"
    );
    // A second restart sends nothing but a heartbeat.
    agent.kill9();
    let settled = proxy.bytes_up();
    agent.spawn();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        proxy.bytes_up() - settled < 20_000,
        "a restart resent acknowledged data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_restarted_mid_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut hub, proxy, mut agent) = setup(tmp.path(), "school-hub").await;
    agent.spawn();
    wait_bytes(&proxy, SIZE as u64 * 2 / 5, &agent).await;
    hub.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    hub.spawn();
    let want = expected(&agent.data);
    wait_until(
        "the file at the hub",
        Duration::from_secs(60),
        || hub.manifest("school-hub") == want,
        || format!("agent:\n{}\nhub:\n{}", agent.log_tail(), hub.log_tail()),
    )
    .await;
    assert_complete(&hub, "school-hub", &agent.data);
    let wire = proxy.bytes_up();
    assert!(
        wire as f64 <= 1.1 * SIZE as f64,
        "{wire} bytes on the wire for {SIZE} bytes of data"
    );
    // No partial file left behind.
    let partial: Vec<_> = std::fs::read_dir(hub.root().join(".partial"))
        .unwrap()
        .collect();
    assert!(partial.is_empty(), "partial files left: {partial:?}");
}
