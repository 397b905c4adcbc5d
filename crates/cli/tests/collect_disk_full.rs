//! The hub's disk fills up mid-upload (a quota whose writes fail with
//! ENOSPC part-way, as a real full disk does): nothing is corrupted, nothing
//! unverified becomes visible, the agent keeps its backlog, and once space
//! is freed everything arrives.

mod collect_common;

use std::time::Duration;

use collect_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_corrupts_nothing_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut hub = HubProc::start(&tmp.path().join("hub"), "quota_bytes = 350000");
    let token = hub.site_add("school-full");
    let mut agent = AgentProc::new(
        &tmp.path().join("site"),
        "school-full",
        &token,
        hub.addr(),
        &format!("{FAST}chunk_size = 16384\nparallel_uploads = 1\n"),
    );
    let mut rng = Rng::new(3);
    for i in 0..8 {
        std::fs::write(
            agent.data.join(format!("progress/export-{i}.csv")),
            rng.bytes(100_000),
        )
        .unwrap();
    }
    agent.spawn();
    wait_until(
        "the agent to hit the full disk",
        Duration::from_secs(40),
        || {
            std::fs::read_to_string(agent.log())
                .unwrap_or_default()
                .contains("disk is full")
        },
        || agent.log_tail(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    agent.assert_running();

    // Whatever is visible at the hub is complete and verified.
    let want = expected(&agent.data);
    let got = stored(&hub.root(), "school-full");
    let manifest = hub.manifest("school-full");
    assert!(
        !got.is_empty() && got.len() < want.len(),
        "expected a partial arrival, got {} of {}",
        got.len(),
        want.len()
    );
    assert_eq!(got, manifest, "visible files and manifest disagree");
    for (k, h) in &got {
        assert_eq!(want.get(k), Some(h), "{k} is stored with a wrong hash");
    }
    let partial_bytes: u64 = std::fs::read_dir(hub.root().join(".partial"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let stored_bytes: u64 = got
        .keys()
        .map(|k| {
            std::fs::metadata(hub.root().join("school-full").join(k))
                .unwrap()
                .len()
        })
        .sum();
    assert!(
        stored_bytes + partial_bytes <= 350_000,
        "quota overrun: {stored_bytes} + {partial_bytes}"
    );

    // Space is freed: the hub restarts without the quota; the backlog flushes.
    hub.kill9();
    hub.set_extra("");
    hub.spawn();
    wait_until(
        "the backlog at the hub",
        Duration::from_secs(40),
        || hub.manifest("school-full") == want,
        || agent.log_tail(),
    )
    .await;
    assert_complete(&hub, "school-full", &agent.data);
}
