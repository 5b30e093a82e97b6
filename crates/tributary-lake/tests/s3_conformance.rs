//! The conformance suite against a real S3 server: SeaweedFS (`weed mini`),
//! a fresh bucket per test, the lake opened by URL with the storage settings
//! a sink's configuration carries (endpoint, region, static keys, path-style
//! requests, plain HTTP). Conditional creates are `If-None-Match: *` puts.
//!
//! Skipped (with a notice) when no `weed` binary is found, unless
//! `TRIBUTARY_REQUIRE_S3=1` (set by `./scripts/test.sh`).

use std::time::Instant;

use tributary_config::{Secret, StorageConfig};
use tributary_lake::{conformance, Lake};
use tributary_testkit::SeaweedFs;

/// The lake at `s3://<bucket>/<root>` (`root` may be empty: the bucket's top).
fn open(s3: &SeaweedFs, bucket: &str, root: &str) -> Lake {
    let storage = StorageConfig {
        endpoint: Some(s3.endpoint()),
        region: Some(s3.region().to_string()),
        access_key_id: Some(s3.access_key().to_string()),
        secret_access_key: Some(Secret::new(s3.secret_key())),
        path_style: Some(true),
        allow_http: Some(true),
        ..Default::default()
    };
    let url = format!("s3://{bucket}/{root}");
    Lake::open(url.trim_end_matches('/'), &storage).expect("open the S3 lake")
}

/// Every check of the suite, in one bucket under a prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let Some(s3) = SeaweedFs::start_or_skip() else {
        return;
    };
    let lake = open(&s3, &s3.fresh_bucket(), "conformance");
    let started = Instant::now();
    conformance::run_all(&lake).await;
    eprintln!("conformance suite on SeaweedFS: {:?}", started.elapsed());
}

/// A lake at the top of its bucket (no prefix): the paths the protocol
/// lists and deletes have no root to strip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lands_and_races_at_the_bucket_root() {
    let Some(s3) = SeaweedFs::start_or_skip() else {
        return;
    };
    let lake = open(&s3, &s3.fresh_bucket(), "");
    conformance::lands_and_recovers(&lake).await;
    conformance::racing_writers(&lake, 8).await;
    conformance::fences_zombies(&lake).await;
}
