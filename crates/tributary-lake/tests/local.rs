//! The conformance suite on a local-directory lake (`file://`), plus checks
//! of what the durable local writes leave on disk.

use std::path::Path;

use tributary_config::StorageConfig;
use tributary_lake::{conformance, new_writer_id, Lake};

fn open(dir: &Path) -> Lake {
    let url = format!("file://{}", dir.join("lake").display());
    Lake::open(&url, &StorageConfig::default()).expect("open file:// lake")
}

/// Every file under `dir`, recursively, as paths relative to it.
fn files_on_disk(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).expect("under base");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = open(dir.path());
    conformance::run_all(&lake).await;
    let on_disk = files_on_disk(dir.path());
    assert!(!on_disk.is_empty());
    let temps: Vec<_> = on_disk.iter().filter(|p| p.contains(".tmp-")).collect();
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_racing_writers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = open(dir.path());
    conformance::racing_writers(&lake, 16).await;
    let on_disk = files_on_disk(dir.path());
    assert!(
        on_disk.iter().all(|p| !p.contains(".tmp-")),
        "losing creates left temporary files: {on_disk:?}"
    );
}

#[tokio::test]
async fn files_land_where_their_paths_say() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = open(dir.path());
    let tp = conformance::fresh_partition("paths");
    let w = new_writer_id("w");
    let mut log = lake.recover(&tp, &w).await.expect("recover");
    let landing = conformance::sample_landing(&tp, &w, 0, 9);
    let record = lake
        .land(&mut log, &w, landing.clone())
        .await
        .expect("land");
    let root = dir.path().join("lake");
    for f in &landing.files {
        let on_disk = std::fs::read(root.join(&f.path)).expect("file on disk");
        assert_eq!(on_disk, f.bytes);
    }
    let commit = root.join(tributary_lake::commit_path(&tp, 0));
    let json: tributary_lake::CommitRecord =
        serde_json::from_slice(&std::fs::read(commit).expect("commit on disk")).expect("json");
    assert_eq!(json, record);
    assert!(root.join(tributary_lake::hint_path(&tp)).exists());
    assert!(lake.intents(&tp).await.expect("intents").is_empty());
    // A temporary file of an interrupted write is never listed.
    let stray = root.join("dt=2026-11-24/hour=00/.x.parquet.tmp-0123456789abcdef");
    std::fs::write(&stray, b"partial").expect("write stray");
    let listed = lake.list("").await.expect("list");
    assert!(
        listed.iter().all(|(p, _)| !p.contains(".tmp-")),
        "{listed:?}"
    );
    conformance::assert_sound(&lake, &tp).await;
}

#[tokio::test]
async fn missing_root_is_created_on_first_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::open(
        &format!("file://{}/a/b/c", dir.path().display()),
        &StorageConfig::default(),
    )
    .expect("open");
    assert!(!dir.path().join("a").exists(), "open does no I/O");
    assert!(lake.list("").await.expect("list").is_empty());
    assert!(lake.partitions().await.expect("partitions").is_empty());
    let tp = conformance::fresh_partition("root");
    let w = new_writer_id("w");
    let mut log = lake.recover(&tp, &w).await.expect("recover");
    lake.land(&mut log, &w, conformance::sample_landing(&tp, &w, 0, 0))
        .await
        .expect("land");
    assert!(dir.path().join("a/b/c/_tributary").is_dir());
}
