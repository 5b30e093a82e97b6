//! The conformance suite on object_store backends opened with
//! `Lake::open_with_store`: in-memory and LocalFileSystem.

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use tributary_lake::{conformance, Lake, LakeError};

#[tokio::test]
async fn conformance_in_memory() {
    let lake = Lake::open_with_store(Arc::new(InMemory::new()), "lakes/orders").expect("open");
    conformance::run_all(&lake).await;
}

#[tokio::test]
async fn conformance_in_memory_at_store_root() {
    let lake = Lake::open_with_store(Arc::new(InMemory::new()), "").expect("open");
    conformance::run_all(&lake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_local_file_system() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalFileSystem::new_with_prefix(dir.path()).expect("store");
    let lake = Lake::open_with_store(Arc::new(store), "root").expect("open");
    conformance::run_all(&lake).await;
}

#[tokio::test]
async fn roots_are_checked() {
    let store = Arc::new(InMemory::new());
    for bad in ["a/../b", "a//b"] {
        assert!(
            matches!(
                Lake::open_with_store(store.clone(), bad),
                Err(LakeError::Path { .. })
            ),
            "{bad}"
        );
    }
    let lake = Lake::open_with_store(store, "/a/b/").expect("slashes are trimmed");
    assert!(lake.location().ends_with("a/b"));
    assert!(lake.read("nothing/here").await.unwrap_err().is_not_found());
    assert!(lake.read("../x").await.is_err());
}
