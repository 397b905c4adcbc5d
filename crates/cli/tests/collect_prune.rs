//! "Prune after acknowledged" (send-then-delete): a dataset with
//! `prune_after` loses its files at the site only once the hub acknowledged
//! them and the retention passed; unacknowledged files are never deleted.
//! Datasets without it are left alone.

mod collect_common;

use std::time::Duration;

use collect_common::*;
use edusync_testkit::proxy::{FaultProxy, ProxyOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_only_acknowledged_files_after_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = HubProc::start(&tmp.path().join("hub"), "");
    let token = hub.site_add("school-prune");
    let proxy = FaultProxy::start(hub.addr(), ProxyOptions::default())
        .await
        .unwrap();
    let mut agent = AgentProc::new(
        &tmp.path().join("site"),
        "school-prune",
        &token,
        proxy.addr(),
        FAST,
    );
    let cfg = std::fs::read_to_string(&agent.config).unwrap();
    std::fs::write(
        &agent.config,
        cfg.replace(
            "glob = \"**/*.log\"\n",
            "glob = \"**/*.log\"\nprune_after = \"1s\"\n",
        ),
    )
    .unwrap();
    let mut rng = Rng::new(5);
    write_day(&agent.data, 0, 50, &mut rng);
    let want = expected(&agent.data);
    agent.spawn();
    wait_until(
        "day 0 at the hub",
        Duration::from_secs(30),
        || hub.manifest("school-prune") == want,
        || agent.log_tail(),
    )
    .await;
    let logs = |a: &AgentProc| {
        expected(&a.data)
            .keys()
            .filter(|k| k.starts_with("logs/"))
            .count()
    };
    wait_until(
        "acknowledged logs pruned at the site",
        Duration::from_secs(15),
        || logs(&agent) == 0,
        || agent.log_tail(),
    )
    .await;
    // Other datasets keep their files; the hub keeps the pruned ones.
    assert_eq!(expected(&agent.data).len(), want.len() - 2);
    assert_eq!(stored(&hub.root(), "school-prune"), want);

    // A log written while the hub is unreachable is not acknowledged, so it stays.
    proxy.set_offline(true);
    std::fs::write(agent.data.join("logs/late.log"), "late line\n").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        agent.data.join("logs/late.log").exists(),
        "an unacknowledged file was pruned"
    );
    proxy.set_offline(false);
    wait_until(
        "the late log sent, then pruned",
        Duration::from_secs(20),
        || {
            !agent.data.join("logs/late.log").exists()
                && hub.root().join("school-prune/logs/late.log").exists()
        },
        || agent.log_tail(),
    )
    .await;
    agent.assert_running();
}
