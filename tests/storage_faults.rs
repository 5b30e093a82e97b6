//! Exactly-once on a real S3 server (SeaweedFS) whose requests fail.
//!
//! Needs a `tributary` binary built with the `fault-injection` feature
//! (`./scripts/test.sh` builds one). The worker runs with
//! `TRIBUTARY_FAULT_STORAGE`: about 5 % of its storage requests fail like an
//! HTTP 500/503, 0.5 % stall for 2 s and time out, 1 % of its writes take
//! effect but lose their response, and every request waits up to 5 ms more.
//! It must land all 30,000 records anyway, retrying (logged as "Landing
//! failed; re-reading the partition."), and stop with exit code 0 on SIGTERM;
//! pyarrow and DuckDB then count each record exactly once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tributary_e2e::{
    wait_armed, wait_landed, write_config_with, LakeCounter, Progress, Target, Tuning, Worker,
};
use tributary_testkit::{read_lake, MockKafka, RecordKind, SeaweedFs};

const RECORDS: u64 = 30_000;
/// `tributary_lake::faults::INJECTED_STORAGE_FAULT` (that module exists only
/// in the `fault-injection` build).
const INJECTED_STORAGE_FAULT: &str = "Injected storage fault.";
const FAULTS: &str =
    "error_rate=0.05,latency=5ms,timeout_rate=0.005,timeout=2s,lost_response_rate=0.01,seed=7";

#[test]
fn exactly_once_on_s3_with_storage_faults() {
    let Some(server) = SeaweedFs::start_or_skip() else {
        return;
    };
    let started = Instant::now();
    let target = Target::S3 {
        server: &server,
        bucket: server.fresh_bucket(),
    };
    let kafka = MockKafka::start(&[("orders", 3)]);
    let dir = tempfile::tempdir().unwrap();
    // Small landings, so that faults meet many of them.
    let tuning = Tuning {
        max_poll_records: 250,
        max_records: 500,
        max_age: "300ms",
    };
    let config = write_config_with(
        dir.path(),
        kafka.bootstrap(),
        "orders",
        "faults-group",
        &target,
        &tuning,
    );
    let mut env = target.env();
    env.push(("TRIBUTARY_FAULT_STORAGE".into(), FAULTS.into()));
    let progress = Arc::new(Progress::default());
    let lake = LakeCounter::new(&target);

    let mut worker = Worker::start(&config, &env, progress.clone());
    wait_armed(&mut worker, &progress);
    // Produced while the worker runs (6 s), so that it lands range after
    // range of about 500 records rather than a few large backlogs.
    let producer = kafka.produce_in_background("orders", RECORDS, RecordKind::Small, Some(5_000));
    wait_landed(
        &mut worker,
        &lake,
        &progress,
        RECORDS,
        Duration::from_secs(300),
    );
    assert_eq!(producer.join(), 0..RECORDS);
    worker.signal(libc::SIGTERM);
    let status = worker.wait(Duration::from_secs(90));
    assert!(
        status.success(),
        "SIGTERM must exit 0 under storage faults, got {status}; log tail:\n{}",
        progress.tail()
    );

    let failed = progress.failed.load(Ordering::SeqCst);
    let open_retries = progress.count("Recovering assigned partitions failed; retrying.");
    // Most injected faults are absorbed by the lake's per-request retries;
    // failed commit creates and lost responses reach the landing protocol.
    let injected = progress.count(INJECTED_STORAGE_FAULT);
    assert!(
        injected > 0,
        "no storage fault was injected; log tail:\n{}",
        progress.tail()
    );
    assert_eq!(lake.rows(), Some(RECORDS), "rows in committed ranges");

    // What failed landings left: never listed by a commit, always named by
    // an intent, so that the partition's next recovery removes it.
    let (uncommitted, unnamed) = lake.uncommitted_files();
    assert!(
        unnamed.is_empty(),
        "uncommitted files no intent names (no recovery would remove them): {unnamed:?}"
    );
    let intents = lake.intents().unwrap_or(0);
    lake.recover_all();
    assert_eq!(lake.uncommitted_files().0, Vec::<String>::new());
    assert_eq!(lake.intents(), Some(0));

    let read = read_lake(target.url(), "id", Some(&server));
    eprintln!(
        "storage faults on S3: {RECORDS} records in {} landings, {injected} injected faults, \
         {failed} failed landings, \
         {open_retries} recovery retries; left until the next recovery: {} uncommitted files, \
         {intents} intents; {:?}; readers: {read}",
        progress.landings.load(Ordering::SeqCst),
        uncommitted.len(),
        started.elapsed()
    );
    assert_eq!(read["rows"], RECORDS, "pyarrow rows");
    assert_eq!(read["distinct_ids"], RECORDS, "pyarrow distinct ids");
    assert_eq!(read["min_id"], 0);
    assert_eq!(read["max_id"], RECORDS - 1);
    assert_eq!(read["duckdb"]["rows"], RECORDS, "duckdb rows");
    assert_eq!(
        read["duckdb"]["distinct_ids"], RECORDS,
        "duckdb distinct ids"
    );
}
