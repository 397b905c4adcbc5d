//! The hub's state machine, in process: authentication, refusals, chunk
//! order, verification, crash repair and a full disk; and the `HubStore`
//! contract. Every test runs on both stores: SQLite and PostgreSQL (a
//! throwaway database on the local server, see `edusync_db::testing`).

use std::sync::Arc;

use edusync_collect::hub::disk::{Disk, FsDisk, QuotaDisk};
use edusync_collect::hub::store::{FileEntry, HubStore, SqliteHubStore, StoreError, UploadRow};
use edusync_collect::hub::store_pg::PgHubStore;
use edusync_collect::hub::{add_site, Hub, HubError, HubSettings};
use edusync_collect::protocol::Heartbeat;
use edusync_collect::protocol::{total_chunks, BeginUpload};
use edusync_db::testing::PgTestDb;

const CS: u64 = 4096;

/// Where the hub's records live.
enum Backend {
    Sqlite,
    Pg(PgTestDb),
}

impl Backend {
    fn all() -> Vec<Backend> {
        vec![Backend::Sqlite, Backend::Pg(PgTestDb::create())]
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Pg(_) => "postgres",
        }
    }

    /// Opens (again) the store in `dir` (SQLite) or the test database.
    fn open(&self, dir: &std::path::Path) -> Arc<dyn HubStore> {
        match self {
            Backend::Sqlite => Arc::new(SqliteHubStore::open(&dir.join("state.db")).unwrap()),
            Backend::Pg(db) => Arc::new(PgHubStore::open(&db.url, None).unwrap()),
        }
    }
}

/// Runs an async test body once per backend, naming the backend on failure.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_every_backend() {
                for b in super::Backend::all() {
                    eprintln!("backend: {}", b.name());
                    super::$name(&b).await;
                }
            }
        }
    )*};
}

on_every_backend!(
    authentication_and_refusals,
    resumable_verified_atomic,
    whole_file_hash_mismatch_drops_upload,
    full_disk_corrupts_nothing_and_recovers,
    crash_between_publish_and_record_is_repaired,
    store_contract,
);

fn hub(b: &Backend, dir: &std::path::Path, disk: Arc<dyn Disk>) -> (Hub, Arc<dyn HubStore>) {
    let store = b.open(dir);
    let h = Hub::new(
        store.clone(),
        disk,
        HubSettings {
            root: dir.join("root"),
            max_file_bytes: 1 << 20,
        },
    );
    (h, store)
}

fn begin(path: &str, data: &[u8]) -> BeginUpload {
    BeginUpload {
        dataset: "progress".into(),
        path: path.into(),
        size: data.len() as u64,
        blake3: blake3::hash(data).to_hex().to_string(),
        chunk_size: CS,
        modified: None,
    }
}

fn chunk(data: &[u8], n: u64) -> (String, Vec<u8>) {
    let c = &data[(n * CS) as usize..((n + 1) * CS).min(data.len() as u64) as usize];
    (
        blake3::hash(c).to_hex().to_string(),
        zstd::bulk::compress(c, 3).unwrap(),
    )
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 7) as u8)
        .collect()
}

async fn authentication_and_refusals(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (h, store) = hub(b, dir.path(), Arc::new(FsDisk));
    let ta = add_site(&*store, "school-a").unwrap();
    let tb = add_site(&*store, "school-b").unwrap();
    assert!(add_site(&*store, "school-a").is_err());
    assert!(add_site(&*store, "../x").is_err());

    h.authenticate("school-a", Some(&ta)).await.unwrap();
    assert!(matches!(
        h.authenticate("school-a", Some(&tb)).await,
        Err(HubError::BadToken(_))
    ));
    assert!(matches!(
        h.authenticate("school-z", Some(&ta)).await,
        Err(HubError::UnknownSite(_))
    ));
    assert!(matches!(
        h.authenticate("school-a", None).await,
        Err(HubError::MissingToken)
    ));

    let d = data(100, 1);
    for bad in ["../../etc/passwd", "/abs", "a/../../b", "a\\b"] {
        let e = h.begin("school-a", begin(bad, &d)).await.unwrap_err();
        assert_eq!(e.status(), 400, "{bad}: {e}");
        assert!(e.to_string().contains("refused"), "{e}");
    }
    let mut big = begin("big.csv", &d);
    big.size = 2 << 20;
    let e = h.begin("school-a", big).await.unwrap_err();
    assert_eq!(e.status(), 413);
    assert!(e.to_string().contains("max_file_bytes"), "{e}");

    // An upload of school-a cannot be touched as school-b.
    let st = h.begin("school-a", begin("x.csv", &d)).await.unwrap();
    let (hash, z) = chunk(&d, 0);
    let e = h
        .put_chunk("school-b", &st.upload_id, 0, &hash, z)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 404);
}

async fn resumable_verified_atomic(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (h, store) = hub(b, dir.path(), Arc::new(FsDisk));
    add_site(&*store, "s").unwrap();
    let d = data(5 * CS as usize + 17, 2);
    let n = total_chunks(d.len() as u64, CS);
    let st = h.begin("s", begin("a/b.csv", &d)).await.unwrap();
    assert_eq!((st.next_chunk, st.total_chunks), (0, n));
    for i in 0..3 {
        let (hash, z) = chunk(&d, i);
        assert_eq!(
            h.put_chunk("s", &st.upload_id, i, &hash, z)
                .await
                .unwrap()
                .next_chunk,
            i + 1
        );
    }
    // A repeated chunk is acknowledged again, not written twice; a skipped one is refused.
    let (hash, z) = chunk(&d, 1);
    assert_eq!(
        h.put_chunk("s", &st.upload_id, 1, &hash, z)
            .await
            .unwrap()
            .next_chunk,
        3
    );
    let (hash, z) = chunk(&d, 4);
    assert_eq!(
        h.put_chunk("s", &st.upload_id, 4, &hash, z)
            .await
            .unwrap_err()
            .status(),
        409
    );
    // A damaged chunk is refused.
    let (_, z) = chunk(&d, 3);
    let e = h
        .put_chunk("s", &st.upload_id, 3, &"0".repeat(64), z)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 422);
    // Not complete yet, and nothing is visible at the final path.
    assert_eq!(
        h.complete("s", &st.upload_id).await.unwrap_err().status(),
        409
    );
    assert!(!dir.path().join("root/s/progress/a/b.csv").exists());

    // "Restart": a new hub on the same state resumes at chunk 3.
    drop(h);
    let (h, _) = hub(b, dir.path(), Arc::new(FsDisk));
    let st2 = h.begin("s", begin("a/b.csv", &d)).await.unwrap();
    assert_eq!(st2.upload_id, st.upload_id);
    assert_eq!(st2.next_chunk, 3);
    for i in 3..n {
        let (hash, z) = chunk(&d, i);
        h.put_chunk("s", &st.upload_id, i, &hash, z).await.unwrap();
    }
    assert!(h.complete("s", &st.upload_id).await.unwrap().complete);
    assert_eq!(
        std::fs::read(dir.path().join("root/s/progress/a/b.csv")).unwrap(),
        d
    );
    // Completing again, or beginning the same version again, says it is already there.
    assert!(h.begin("s", begin("a/b.csv", &d)).await.unwrap().complete);
    let f = store
        .latest_file("s", "progress", "a/b.csv")
        .unwrap()
        .unwrap();
    assert_eq!(f.blake3, blake3::hash(&d).to_hex().to_string());
}

async fn whole_file_hash_mismatch_drops_upload(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (h, store) = hub(b, dir.path(), Arc::new(FsDisk));
    add_site(&*store, "s").unwrap();
    let announced = data(CS as usize, 3);
    let actual = data(CS as usize, 4);
    let st = h.begin("s", begin("f.json", &announced)).await.unwrap();
    let (hash, z) = chunk(&actual, 0);
    h.put_chunk("s", &st.upload_id, 0, &hash, z).await.unwrap();
    let e = h.complete("s", &st.upload_id).await.unwrap_err();
    assert_eq!(e.status(), 422);
    assert!(!dir.path().join("root/s/progress/f.json").exists());
    assert!(store.upload(&st.upload_id).unwrap().is_none());
}

async fn full_disk_corrupts_nothing_and_recovers(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let quota: Arc<dyn Disk> = Arc::new(QuotaDisk::new(&root, 3 * CS + 100).unwrap());
    let (h, store) = hub(b, dir.path(), quota);
    add_site(&*store, "s").unwrap();
    // A first version that fits is published.
    let v1 = data(CS as usize, 5);
    let st = h.begin("s", begin("p.csv", &v1)).await.unwrap();
    let (hash, z) = chunk(&v1, 0);
    h.put_chunk("s", &st.upload_id, 0, &hash, z).await.unwrap();
    h.complete("s", &st.upload_id).await.unwrap();
    // A second, bigger version runs out of space part-way.
    let v2 = data(4 * CS as usize, 6);
    let st = h.begin("s", begin("p.csv", &v2)).await.unwrap();
    let mut failed_at = None;
    for i in 0..4 {
        let (hash, z) = chunk(&v2, i);
        match h.put_chunk("s", &st.upload_id, i, &hash, z).await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.status(), 507, "{e}");
                assert!(e.to_string().contains("disk is full"));
                failed_at = Some(i);
                break;
            }
        }
    }
    let failed_at = failed_at.expect("the quota should have been hit");
    // The published version is untouched and the upload kept its progress.
    assert_eq!(std::fs::read(root.join("s/progress/p.csv")).unwrap(), v1);
    assert_eq!(
        store.upload(&st.upload_id).unwrap().unwrap().next_chunk,
        failed_at
    );
    // Space is freed (a new hub without the quota): the upload resumes and completes.
    drop(h);
    let (h, _) = hub(b, dir.path(), Arc::new(FsDisk));
    let st = h.begin("s", begin("p.csv", &v2)).await.unwrap();
    assert_eq!(st.next_chunk, failed_at);
    for i in failed_at..4 {
        let (hash, z) = chunk(&v2, i);
        h.put_chunk("s", &st.upload_id, i, &hash, z).await.unwrap();
    }
    h.complete("s", &st.upload_id).await.unwrap();
    assert_eq!(std::fs::read(root.join("s/progress/p.csv")).unwrap(), v2);
}

async fn crash_between_publish_and_record_is_repaired(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (h, store) = hub(b, dir.path(), Arc::new(FsDisk));
    add_site(&*store, "s").unwrap();
    let d = data(100, 7);
    let st = h.begin("s", begin("t.txt", &d)).await.unwrap();
    let (hash, z) = chunk(&d, 0);
    h.put_chunk("s", &st.upload_id, 0, &hash, z).await.unwrap();
    // Simulate: the file was published, then the process died before recording it.
    let part = edusync_collect::hub::disk::partial_path(&dir.path().join("root"), &st.upload_id);
    FsDisk
        .publish(&part, &dir.path().join("root/s/progress/t.txt"))
        .unwrap();
    assert!(h.complete("s", &st.upload_id).await.unwrap().complete);
    assert!(store
        .latest_file("s", "progress", "t.txt")
        .unwrap()
        .is_some());
}

/// Every `HubStore` method, as the Sites page and the hub rely on them.
async fn store_contract(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let st = b.open(dir.path());
    let name = b.name();
    st.add_site("b-site", "hash-b", 1_000).unwrap();
    st.add_site("a-site", "hash-a", 2_000).unwrap();
    assert!(
        matches!(st.add_site("a-site", "other", 3_000), Err(StoreError::SiteExists(s)) if s == "a-site"),
        "{name}"
    );
    assert_eq!(
        st.site_token_hash("a-site").unwrap().as_deref(),
        Some("hash-a")
    );
    assert_eq!(
        st.site_token_hash("A-site").unwrap(),
        None,
        "{name}: ids are exact"
    );

    let hb = Heartbeat {
        agent_version: "0.1.0".into(),
        agent_uptime_secs: 60,
        host_uptime_secs: None,
        disk_free_bytes: Some(1 << 30),
        backlog_files: 3,
        backlog_bytes: 900,
        sent_at: "2026-02-01T00:00:00Z".into(),
    };
    st.record_heartbeat("a-site", &hb, 5_000).unwrap();
    // 2026-01-31 23:59:59.999 UTC and 2026-02-01 00:00:00 UTC fall in different months.
    let jan = 1_769_903_999_999;
    let feb = 1_769_904_000_000;
    let up = |id: &str, site: &str, updated_ms: i64| UploadRow {
        upload_id: id.into(),
        site: site.into(),
        dataset: "progress".into(),
        path: format!("{id}.csv"),
        size: 10,
        blake3: "h".into(),
        chunk_size: 4096,
        total_chunks: 1,
        next_chunk: 0,
        modified: Some("2026-01-01T00:00:00Z".into()),
        started_ms: updated_ms,
        updated_ms,
    };
    st.create_upload(&up("u1", "a-site", 10)).unwrap();
    st.create_upload(&up("u2", "a-site", 20)).unwrap();
    st.create_upload(&up("u3", "b-site", 30)).unwrap();
    assert!(
        st.create_upload(&up("u1", "a-site", 10)).is_err(),
        "{name}: one row per upload"
    );
    st.set_upload_progress("u1", 1, 40).unwrap();
    let u1 = st.upload("u1").unwrap().unwrap();
    assert_eq!(
        (u1.next_chunk, u1.updated_ms, u1.modified.as_deref()),
        (1, 40, Some("2026-01-01T00:00:00Z")),
        "{name}"
    );
    let stale: Vec<String> = st
        .stale_uploads(25)
        .unwrap()
        .into_iter()
        .map(|u| u.upload_id)
        .collect();
    assert_eq!(stale, vec!["u2".to_string()], "{name}");
    assert_eq!(
        st.open_uploads("a-site")
            .unwrap()
            .iter()
            .map(|u| u.upload_id.as_str())
            .collect::<Vec<_>>(),
        vec!["u1", "u2"],
        "{name}"
    );
    st.delete_upload("u2").unwrap();
    assert!(st.upload("u2").unwrap().is_none());

    let file = |size: u64, received_ms: i64, blake3: &str| FileEntry {
        site: "a-site".into(),
        dataset: "progress".into(),
        path: "u1.csv".into(),
        size,
        blake3: blake3.into(),
        modified: None,
        received_ms,
    };
    st.complete_upload("u1", &file(3_000_000_000, jan, "v1"))
        .unwrap();
    assert!(
        st.upload("u1").unwrap().is_none(),
        "{name}: completing forgets the upload"
    );
    st.complete_upload("u1", &file(5, feb, "v2")).unwrap();
    let latest = st
        .latest_file("a-site", "progress", "u1.csv")
        .unwrap()
        .unwrap();
    assert_eq!(latest.blake3, "v2", "{name}: newest version");
    assert_eq!(st.recent_files("a-site", 1).unwrap()[0].blake3, "v2");
    assert_eq!(st.recent_files("a-site", 10).unwrap().len(), 2);

    let sites = st.sites().unwrap();
    assert_eq!(
        sites.iter().map(|s| s.site.as_str()).collect::<Vec<_>>(),
        vec!["a-site", "b-site"],
        "{name}"
    );
    let a = &sites[0];
    assert_eq!(
        (
            a.created_ms,
            a.last_heartbeat_ms,
            a.last_data_ms,
            a.files_total,
            a.bytes_total
        ),
        (2_000, Some(5_000), Some(feb), 2, 3_000_000_005),
        "{name}"
    );
    assert_eq!(
        a.last_heartbeat.as_ref().unwrap().backlog_files,
        3,
        "{name}"
    );
    let b_site = &sites[1];
    assert_eq!(
        (
            b_site.last_heartbeat_ms,
            b_site.last_data_ms,
            b_site.files_total,
            b_site.bytes_total
        ),
        (None, None, 0, 0),
        "{name}"
    );

    let months: Vec<(String, u64, u64)> = st
        .monthly_bytes(Some("a-site"))
        .unwrap()
        .into_iter()
        .map(|m| (m.month, m.files, m.bytes))
        .collect();
    assert_eq!(
        months,
        vec![
            ("2026-02".to_string(), 1, 5),
            ("2026-01".to_string(), 1, 3_000_000_000)
        ],
        "{name}: newest month first, by UTC month"
    );
    assert!(st.monthly_bytes(Some("b-site")).unwrap().is_empty());
    assert_eq!(st.monthly_bytes(None).unwrap().len(), 2);
    assert_eq!(
        st.received_since(feb).unwrap(),
        vec![("a-site".to_string(), 1, 5)],
        "{name}"
    );

    // Reopening (a restart, or a second `serve` on the same state) sees it all.
    drop(st);
    let again = b.open(dir.path());
    assert_eq!(again.sites().unwrap(), sites, "{name}");
}
