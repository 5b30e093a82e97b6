//! Broker faults: the only broker of the cluster goes down for a while, then
//! offset commits and fetches fail with injected errors. The worker must wait,
//! say so in its log, resume, and land every record exactly once.

use std::sync::Arc;
use std::time::Duration;

use tributary_e2e::{wait_landed, write_config, LakeCounter, Progress, Target, Worker};
use tributary_testkit::{read_lake, wait_for, MockKafka, RecordKind};

#[test]
fn waits_out_a_broker_outage_and_request_errors() {
    const HALF: u64 = 10_000;
    let kafka = MockKafka::start(&[("orders", 3)]);
    // Produced in two rounds around the outage (not during it): the test
    // producer is not idempotent, and retries across an outage could write a
    // record twice into the topic itself.
    kafka.produce("orders", HALF, RecordKind::Small);
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Local(dir.path().join("lake"));
    let config = write_config(
        dir.path(),
        kafka.bootstrap(),
        "orders",
        "broker-faults",
        &target,
    );
    let progress = Arc::new(Progress::default());
    let lake = LakeCounter::new(&target);

    let mut w = Worker::start(&config, &target.env(), progress.clone());
    wait_landed(&mut w, &lake, &progress, HALF, Duration::from_secs(120));

    // Outage: the broker (also the group coordinator) goes away.
    kafka.fault("broker-down 1");
    let report = wait_for(
        Duration::from_secs(60),
        "the worker to report the outage",
        || progress.broker_trouble(),
    );
    eprintln!("reported: {report}");
    // Keep the broker down a while longer: the outage's length, not a wait for anything.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        w.exited().is_none(),
        "the worker must wait out the outage, not exit"
    );
    kafka.fault("broker-up 1");

    // Then failing offset commits and fetches while the second round lands.
    kafka.fault("request-errors offset-commit request-timed-out 3");
    kafka.fault("request-errors fetch not-leader 3");
    kafka.produce("orders", HALF, RecordKind::Small);
    wait_landed(&mut w, &lake, &progress, 2 * HALF, Duration::from_secs(180));
    w.signal(libc::SIGTERM);
    let status = w.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}; log:\n{}",
        progress.tail()
    );

    assert_eq!(lake.rows(), Some(2 * HALF));
    let read = read_lake(dir.path().join("lake"), "id", None);
    eprintln!("broker faults: readers {read}");
    assert_eq!(read["rows"], 2 * HALF);
    assert_eq!(read["distinct_ids"], 2 * HALF);
    assert_eq!(read["duckdb"]["rows"], 2 * HALF);
}
