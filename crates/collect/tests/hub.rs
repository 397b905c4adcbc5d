//! The hub's state machine, in process: authentication, refusals, chunk
//! order, verification, crash repair and a full disk.

use std::sync::Arc;

use edusync_collect::hub::disk::{Disk, FsDisk, QuotaDisk};
use edusync_collect::hub::store::{HubStore, SqliteHubStore};
use edusync_collect::hub::{add_site, Hub, HubError, HubSettings};
use edusync_collect::protocol::{total_chunks, BeginUpload};

const CS: u64 = 4096;

fn hub(dir: &std::path::Path, disk: Arc<dyn Disk>) -> (Hub, Arc<dyn HubStore>) {
    let store: Arc<dyn HubStore> = Arc::new(SqliteHubStore::open(&dir.join("state.db")).unwrap());
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

#[tokio::test]
async fn authentication_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (h, store) = hub(dir.path(), Arc::new(FsDisk));
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

#[tokio::test]
async fn resumable_verified_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let (h, store) = hub(dir.path(), Arc::new(FsDisk));
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
    let (h, _) = hub(dir.path(), Arc::new(FsDisk));
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

#[tokio::test]
async fn whole_file_hash_mismatch_drops_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (h, store) = hub(dir.path(), Arc::new(FsDisk));
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

#[tokio::test]
async fn full_disk_corrupts_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let quota: Arc<dyn Disk> = Arc::new(QuotaDisk::new(&root, 3 * CS + 100).unwrap());
    let (h, store) = hub(dir.path(), quota);
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
    let (h, _) = hub(dir.path(), Arc::new(FsDisk));
    let st = h.begin("s", begin("p.csv", &v2)).await.unwrap();
    assert_eq!(st.next_chunk, failed_at);
    for i in failed_at..4 {
        let (hash, z) = chunk(&v2, i);
        h.put_chunk("s", &st.upload_id, i, &hash, z).await.unwrap();
    }
    h.complete("s", &st.upload_id).await.unwrap();
    assert_eq!(std::fs::read(root.join("s/progress/p.csv")).unwrap(), v2);
}

#[tokio::test]
async fn crash_between_publish_and_record_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let (h, store) = hub(dir.path(), Arc::new(FsDisk));
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
