//! The SeaweedFS harness against the real `weed` binary: SigV4, buckets,
//! conditional puts, multipart uploads — what the landing protocol relies on.
//!
//! Skipped (with a notice) when no `weed` binary is found, unless
//! `TRIBUTARY_REQUIRE_S3=1`.

use std::sync::Arc;

use futures::future::join_all;
use futures::TryStreamExt as _;
use object_store::aws::S3CopyIfNotExists;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutPayload, WriteMultipart};
use tributary_testkit::SeaweedFs;

#[tokio::test]
async fn put_get_and_conditional_create() {
    let Some(s3) = SeaweedFs::start_or_skip() else {
        return;
    };
    let bucket = s3.fresh_bucket();
    let store = s3.store(&bucket);

    let path = Path::from("dir/hello.txt");
    store
        .put(&path, PutPayload::from_static(b"hello"))
        .await
        .unwrap();
    let got = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"hello");

    let commit = Path::from("_tributary/commits/orders/0/00000000000000000000.json");
    store
        .put_opts(
            &commit,
            PutPayload::from_static(b"first"),
            PutMode::Create.into(),
        )
        .await
        .expect("first conditional create wins");
    let second = store
        .put_opts(
            &commit,
            PutPayload::from_static(b"second"),
            PutMode::Create.into(),
        )
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "second conditional create must lose with AlreadyExists, got {second:?}"
    );
    let kept = store.get(&commit).await.unwrap().bytes().await.unwrap();
    assert_eq!(&kept[..], b"first", "the losing put must not overwrite");

    let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert_eq!(listed.len(), 2);
}

#[tokio::test]
async fn one_winner_among_racing_conditional_creates() {
    let Some(s3) = SeaweedFs::start_or_skip() else {
        return;
    };
    let store = Arc::new(s3.store(&s3.fresh_bucket()));
    let path = Path::from("race/commit.json");
    let attempts = (0..16).map(|i| {
        let (store, path) = (store.clone(), path.clone());
        async move {
            store
                .put_opts(
                    &path,
                    PutPayload::from(format!("writer {i}")),
                    PutMode::Create.into(),
                )
                .await
        }
    });
    let results = join_all(attempts).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    let losers = results
        .iter()
        .filter(|r| matches!(r, Err(object_store::Error::AlreadyExists { .. })))
        .count();
    assert_eq!((winners, losers), (1, 15), "{results:?}");
}

#[tokio::test]
async fn sigv4_is_enforced() {
    let Some(s3) = SeaweedFs::start_or_skip() else {
        return;
    };
    let bucket = s3.fresh_bucket();
    let wrong = s3
        .store_builder(&bucket)
        .with_secret_access_key("not-the-secret")
        .build()
        .unwrap();
    let denied = wrong
        .put(&Path::from("x"), PutPayload::from_static(b"x"))
        .await;
    assert!(denied.is_err(), "a wrongly signed put must fail");

    let anonymous = s3
        .store_builder(&bucket)
        .with_skip_signature(true)
        .build()
        .unwrap();
    let denied = anonymous
        .put(&Path::from("x"), PutPayload::from_static(b"x"))
        .await;
    assert!(denied.is_err(), "an unsigned put must fail");
}

#[tokio::test]
async fn buckets_are_separate_and_not_created_on_upload() {
    let Some(s3) = SeaweedFs::start_or_skip() else {
        return;
    };
    let (a, b) = (s3.fresh_bucket(), s3.fresh_bucket());
    assert_ne!(a, b);
    let path = Path::from("only-in-a");
    s3.store(&a)
        .put(&path, PutPayload::from_static(b"a"))
        .await
        .unwrap();
    assert!(matches!(
        s3.store(&b).head(&path).await,
        Err(object_store::Error::NotFound { .. })
    ));
    let missing = s3
        .store("no-such-bucket")
        .put(&path, PutPayload::from_static(b"x"))
        .await;
    assert!(missing.is_err(), "no bucket is created on upload");
    assert!(s3.create_bucket(&a).is_err(), "the bucket already exists");
}

#[tokio::test]
async fn multipart_upload_and_copy_if_not_exists() {
    let Some(s3) = SeaweedFs::start_or_skip() else {
        return;
    };
    let bucket = s3.fresh_bucket();
    let store = s3
        .store_builder(&bucket)
        .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
        .build()
        .unwrap();

    // Two parts: S3 wants every part but the last to be at least 5 MiB.
    let big = Path::from("data/big.bin");
    let upload = store.put_multipart(&big).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 5 * 1024 * 1024);
    let block: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..6 {
        writer.write(&block);
    }
    writer.finish().await.unwrap();
    let meta = store.head(&big).await.unwrap();
    assert_eq!(meta.size, 6 * 1024 * 1024);
    let tail = store
        .get_range(&big, meta.size - 4..meta.size)
        .await
        .unwrap();
    assert_eq!(&tail[..], &block[block.len() - 4..]);

    let copy = Path::from("data/copy.bin");
    store.copy_if_not_exists(&big, &copy).await.unwrap();
    let again = store.copy_if_not_exists(&big, &copy).await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "{again:?}"
    );
}
