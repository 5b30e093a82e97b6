//! End-to-end tests: the real `tributary` binary against a real Kafka protocol
//! (librdkafka's mock cluster in its own process) and a real S3 server
//! (SeaweedFS), read back by independent readers (pyarrow and DuckDB).

use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tributary_e2e::{wait_landed, write_config, LakeCounter, Progress, Target, Worker};
use tributary_testkit::{
    bin_path, read_lake, wait_for, workspace_root, MockKafka, RecordKind, SeaweedFs,
};

const TOTAL: u64 = 100_000;
const PARTITIONS: i32 = 3;

/// 100,000 records over 3 partitions, produced while the pipeline runs:
/// run → SIGTERM mid-way → restart → kill -9 mid-way → restart → finish.
/// Then pyarrow and DuckDB must count exactly 100,000 rows and 100,000
/// distinct ids.
fn exactly_once_through_sigterm_and_kill9(target: Target<'_>) {
    let kafka = MockKafka::start(&[("orders", PARTITIONS)]);
    // 5,000 records/s by default: production (20 s) overlaps all three runs,
    // and the topic stays far under the mock broker's 5 MiB-per-partition cap
    // (~80-byte records). E2E_PRODUCE_RATE changes it, for stress runs.
    let rate = std::env::var("E2E_PRODUCE_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5_000);
    let producer = kafka.produce_in_background("orders", TOTAL, RecordKind::Small, Some(rate));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        kafka.bootstrap(),
        "orders",
        "e2e-group",
        &target,
    );
    let env = target.env();
    let progress = Arc::new(Progress::default());
    let lake = LakeCounter::new(&target);

    // Run 1: graceful stop mid-way.
    let mut w = Worker::start(&config, &env, progress.clone());
    wait_landed(&mut w, &lake, &progress, 15_000, Duration::from_secs(120));
    w.signal(libc::SIGTERM);
    let status = w.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}; log:\n{}",
        progress.tail()
    );
    let after_term = lake.rows().unwrap();

    // Run 2: kill -9 mid-way.
    let mut w = Worker::start(&config, &env, progress.clone());
    wait_landed(
        &mut w,
        &lake,
        &progress,
        after_term + 20_000,
        Duration::from_secs(120),
    );
    w.kill9();
    let after_kill = lake.rows().unwrap();
    if rate <= 5_000 {
        assert!(
            after_kill < TOTAL,
            "run 2 should be killed mid-way, landed {after_kill}"
        );
    }

    // Run 3: finish.
    let assigned = progress.assigned.load(Ordering::SeqCst);
    let mut w = Worker::start(&config, &env, progress.clone());
    let ids = producer.join();
    assert_eq!(ids, 0..TOTAL);
    wait_landed(&mut w, &lake, &progress, TOTAL, Duration::from_secs(180));
    wait_for(Duration::from_secs(60), "run 3 to be assigned", || {
        (progress.assigned.load(Ordering::SeqCst) > assigned).then_some(())
    });
    w.signal(libc::SIGTERM);
    let status = w.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}; log:\n{}",
        progress.tail()
    );

    // The commit log covers every record once...
    assert_eq!(lake.rows(), Some(TOTAL), "rows in committed ranges");
    // ...and no worker ever logged landing more than there is (a range landed
    // twice would exceed it; a worker killed between commit and log line
    // makes this an undercount, never an overcount).
    assert!(
        progress.rows() <= TOTAL,
        "logged landed rows {}",
        progress.rows()
    );

    // The verdict: independent readers.
    let (location, s3) = match &target {
        Target::Local(d) => (d.display().to_string(), None),
        Target::S3 { server, .. } => (target.url(), Some(*server)),
    };
    let read = read_lake(&location, "id", s3);
    eprintln!(
        "e2e {}: produced {TOTAL}; landed after SIGTERM {after_term}, after kill -9 {after_kill}; \
         {} landings logged, {} failed; readers: {read}",
        target.url(),
        progress.landings.load(Ordering::SeqCst),
        progress.failed.load(Ordering::SeqCst),
    );
    assert_eq!(read["rows"], TOTAL, "pyarrow rows");
    assert_eq!(read["distinct_ids"], TOTAL, "pyarrow distinct ids");
    assert_eq!(read["min_id"], 0);
    assert_eq!(read["max_id"], TOTAL - 1);
    assert_eq!(read["duckdb"]["rows"], TOTAL, "duckdb rows");
    assert_eq!(read["duckdb"]["distinct_ids"], TOTAL, "duckdb distinct ids");
    assert_eq!(
        read["schema"]["ts"], "timestamp[ms, tz=UTC]",
        "timestamps are UTC TIMESTAMPs: {read}"
    );
    assert_eq!(read["schema"]["user"], "string");
}

#[test]
fn exactly_once_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    exactly_once_through_sigterm_and_kill9(Target::Local(dir.path().join("lake")));
}

#[test]
fn exactly_once_on_s3() {
    let Some(server) = SeaweedFs::start_or_skip() else {
        return;
    };
    let bucket = server.fresh_bucket();
    exactly_once_through_sigterm_and_kill9(Target::S3 {
        server: &server,
        bucket,
    });
}

#[test]
fn demo_lands_every_record_and_pyarrow_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let output = Command::new(bin_path("tributary"))
        .args(["demo", "--records", "5000", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Landed 5000 rows"), "{stdout}");
    assert!(stdout.contains("duckdb -c"), "{stdout}");
    let read = read_lake(&out, "order_id", None);
    assert_eq!(read["rows"], 5000);
    assert_eq!(read["distinct_ids"], 5000);
    // Running it again replaces its own earlier output.
    let again = Command::new(bin_path("tributary"))
        .args(["demo", "--records", "100", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(read_lake(&out, "order_id", None)["rows"], 100);
}

#[test]
fn validate_accepts_shipped_configs_and_names_the_wrong_key() {
    let root = workspace_root();
    let ok = Command::new(bin_path("tributary"))
        .args(["validate", "--config", "config/worker.toml"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("valid (1 pipeline: orders-to-lake)"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(root.join("config/worker.toml"))
        .unwrap()
        .replace("compression = \"zstd\"", "compression = \"brotli\"");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(bin_path("tributary"))
        .args(["validate", "--config"])
        .arg(&bad)
        .current_dir(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pipelines.0.sink.compression"), "{stderr}");
    assert!(stderr.contains("brotli"), "{stderr}");

    // Environment overrides are validated too.
    let out = Command::new(bin_path("tributary"))
        .args(["validate", "--config", "config/worker.toml"])
        .env(
            "TRIBUTARY_PIPELINES__ORDERS_TO_LAKE__SINK__URL",
            "ftp://nope",
        )
        .current_dir(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pipelines.0.sink.url"));
}
