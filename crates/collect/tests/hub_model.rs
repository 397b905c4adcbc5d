//! Property test: the hub's upload state machine against a model, across
//! random chunk orders, repeats, damaged chunks, full-disk failures (half a
//! chunk written, then ENOSPC) and hub restarts. After every step the hub's
//! answer matches the model and the published files are exactly the
//! versions the model says were acknowledged.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use edusync_collect::hub::disk::{disk_full, Disk, FsDisk};
use edusync_collect::hub::store::{HubStore, SqliteHubStore};
use edusync_collect::hub::{add_site, Hub, HubSettings};
use edusync_collect::protocol::{total_chunks, BeginUpload};
use proptest::prelude::*;

const CS: u64 = 4096;

/// A disk that, while `full`, writes half of a chunk and then fails like a full disk.
struct FlakyDisk {
    full: AtomicBool,
}

impl Disk for FlakyDisk {
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            FsDisk.write_at(path, offset, &data[..data.len() / 2])?;
            return Err(disk_full());
        }
        FsDisk.write_at(path, offset, data)
    }
    fn hash(&self, path: &Path) -> io::Result<(u64, String)> {
        FsDisk.hash(path)
    }
    fn publish(&self, from: &Path, to: &Path) -> io::Result<()> {
        FsDisk.publish(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        FsDisk.remove(path)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Begin(usize),
    Put { v: usize, delta: i8, corrupt: bool },
    Complete(usize),
    Full(bool),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..3usize).prop_map(Op::Begin),
        8 => (0..3usize, -1i8..=1, prop::bool::weighted(0.1)).prop_map(|(v, delta, corrupt)| Op::Put { v, delta, corrupt }),
        2 => (0..3usize).prop_map(Op::Complete),
        1 => any::<bool>().prop_map(Op::Full),
        1 => Just(Op::Restart),
    ]
}

/// Versions: 0 and 1 are two contents of `a.csv`, 2 is `b.csv`.
fn versions() -> Vec<(&'static str, Vec<u8>)> {
    let mk = |len: usize, seed: u8| {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 8) as u8)
            .collect::<Vec<u8>>()
    };
    vec![
        ("a.csv", mk(3 * CS as usize + 10, 3)),
        ("a.csv", mk(2 * CS as usize, 5)),
        ("b.csv", mk(CS as usize / 2, 7)),
    ]
}

fn req(path: &str, d: &[u8]) -> BeginUpload {
    BeginUpload {
        dataset: "ds".into(),
        path: path.into(),
        size: d.len() as u64,
        blake3: blake3::hash(d).to_hex().to_string(),
        chunk_size: CS,
        modified: None,
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(FlakyDisk {
            full: AtomicBool::new(false),
        });
        let open = || {
            let store: Arc<dyn HubStore> =
                Arc::new(SqliteHubStore::open(&dir.path().join("state.db")).unwrap());
            Hub::new(
                store,
                disk.clone(),
                HubSettings {
                    root: dir.path().join("root"),
                    max_file_bytes: 1 << 20,
                },
            )
        };
        let mut hub = open();
        add_site(&**hub.store(), "s").unwrap();
        let vs = versions();
        // Model: per version, the upload's next chunk (None: no upload); per path, the published version.
        let mut uploads: [Option<u64>; 3] = [None; 3];
        let mut published: [Option<usize>; 2] = [None; 2];
        let path_ix = |v: usize| if vs[v].0 == "a.csv" { 0 } else { 1 };
        let mut full = false;
        for o in ops {
            match o {
                Op::Begin(v) => {
                    let st = hub.begin("s", req(vs[v].0, &vs[v].1)).await.unwrap();
                    let total = total_chunks(vs[v].1.len() as u64, CS);
                    match uploads[v] {
                        Some(n) => prop_assert_eq!((st.next_chunk, st.complete), (n, false)),
                        None if published[path_ix(v)] == Some(v) => prop_assert!(st.complete),
                        None => {
                            prop_assert_eq!(
                                (st.next_chunk, st.complete, st.total_chunks),
                                (0, false, total)
                            );
                            uploads[v] = Some(0);
                        }
                    }
                }
                Op::Put { v, delta, corrupt } => {
                    let total = total_chunks(vs[v].1.len() as u64, CS);
                    let id = edusync_collect::protocol::upload_id("s", &req(vs[v].0, &vs[v].1));
                    let next = uploads[v].unwrap_or(0);
                    let n = (next as i64 + delta as i64).max(0) as u64;
                    let d = &vs[v].1;
                    let lo = ((n * CS) as usize).min(d.len());
                    let chunk = &d[lo..(((n + 1) * CS) as usize).min(d.len())];
                    let hash = if corrupt {
                        "0".repeat(64)
                    } else {
                        blake3::hash(chunk).to_hex().to_string()
                    };
                    let r = hub
                        .put_chunk("s", &id, n, &hash, zstd::bulk::compress(chunk, 1).unwrap())
                        .await;
                    match uploads[v] {
                        None => prop_assert_eq!(r.unwrap_err().status(), 404),
                        Some(next) if n < next => prop_assert_eq!(r.unwrap().next_chunk, next),
                        Some(_) if n > next || n >= total => {
                            prop_assert_eq!(r.unwrap_err().status(), 409)
                        }
                        Some(_) if corrupt => prop_assert_eq!(r.unwrap_err().status(), 422),
                        Some(_) if full => prop_assert_eq!(r.unwrap_err().status(), 507),
                        Some(next) => {
                            prop_assert_eq!(r.unwrap().next_chunk, next + 1);
                            uploads[v] = Some(next + 1);
                        }
                    }
                }
                Op::Complete(v) => {
                    let total = total_chunks(vs[v].1.len() as u64, CS);
                    let id = edusync_collect::protocol::upload_id("s", &req(vs[v].0, &vs[v].1));
                    let r = hub.complete("s", &id).await;
                    match uploads[v] {
                        None => prop_assert_eq!(r.unwrap_err().status(), 404),
                        Some(n) if n < total => prop_assert_eq!(r.unwrap_err().status(), 409),
                        Some(_) => {
                            prop_assert!(r.unwrap().complete);
                            uploads[v] = None;
                            published[path_ix(v)] = Some(v);
                        }
                    }
                }
                Op::Full(f) => {
                    full = f;
                    disk.full.store(f, Ordering::SeqCst);
                }
                Op::Restart => {
                    drop(hub);
                    hub = open();
                }
            }
            // Published files are exactly the acknowledged versions; nothing else is visible.
            for (pi, name) in ["a.csv", "b.csv"].iter().enumerate() {
                let on_disk = std::fs::read(dir.path().join("root/s/ds").join(name)).ok();
                let want = published[pi].map(|v| vs[v].1.clone());
                prop_assert_eq!(on_disk, want, "{}", name);
                let latest = hub
                    .store()
                    .latest_file("s", "ds", name)
                    .unwrap()
                    .map(|f| f.blake3);
                prop_assert_eq!(
                    latest,
                    published[pi].map(|v| blake3::hash(&vs[v].1).to_hex().to_string())
                );
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn hub_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
