//! `tributary-mock-kafka` and [`MockKafka`]: records arrive where and as
//! documented, and the process lives and dies as documented.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use tributary_datagen_source::{order_json, small_json};
use tributary_testkit::{bin_path, spawn_tied, wait_for, MockKafka, RecordKind};

/// A consumed record: (partition, offset, key, payload).
type Consumed = (i32, i64, String, Vec<u8>);

/// Reads `expected` records of `topic` (partitions `0..partitions`) from
/// the beginning, failing after 60 s.
fn consume(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "testkit-check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::with_capacity(expected);
    let records = wait_for(
        Duration::from_secs(60),
        format!("{expected} records from {topic}"),
        || {
            while let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.expect("consume error");
                out.push((
                    message.partition(),
                    message.offset(),
                    String::from_utf8(message.key().unwrap().to_vec()).unwrap(),
                    message.payload().unwrap().to_vec(),
                ));
                if out.len() >= expected {
                    break;
                }
            }
            (out.len() >= expected).then(|| std::mem::take(&mut out))
        },
    );
    drop(assignment);
    drop(consumer);
    records
}

fn check_layout(records: &[Consumed], partitions: i32, kind: RecordKind) -> HashSet<u64> {
    let mut ids = HashSet::new();
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for (partition, offset, key, payload) in records {
        let seq: u64 = key.parse().unwrap();
        assert_eq!(
            *partition as u64,
            seq % partitions as u64,
            "partition of {seq}"
        );
        let expected_offset = next_offset.entry(*partition).or_insert(0);
        assert_eq!(*offset, *expected_offset, "offsets are dense");
        *expected_offset += 1;
        let mut expected = Vec::new();
        match kind {
            RecordKind::Orders => order_json(seq, 0, &mut expected),
            RecordKind::Small => small_json(seq, &mut expected),
        }
        assert_eq!(payload, &expected, "payload of {seq}");
        assert!(ids.insert(seq), "{seq} twice");
    }
    ids
}

#[test]
fn produced_records_have_the_documented_layout() {
    let kafka = MockKafka::start(&[("orders", 3), ("small", 2)]);
    assert!(
        kafka.bootstrap().starts_with("127.0.0.1:"),
        "{}",
        kafka.bootstrap()
    );

    assert_eq!(kafka.produce("orders", 600, RecordKind::Orders), 0..600);
    assert_eq!(kafka.produce("orders", 300, RecordKind::Orders), 600..900);
    let orders = consume(kafka.bootstrap(), "orders", 3, 900);
    let ids = check_layout(&orders, 3, RecordKind::Orders);
    assert_eq!(ids, (0..900).collect());

    assert_eq!(kafka.produce("small", 500, RecordKind::Small), 0..500);
    let small = consume(kafka.bootstrap(), "small", 2, 500);
    assert_eq!(check_layout(&small, 2, RecordKind::Small).len(), 500);
}

#[test]
fn background_production_at_a_rate() {
    let kafka = MockKafka::start(&[("paced", 2)]);
    let started = std::time::Instant::now();
    let producer = kafka.produce_in_background("paced", 400, RecordKind::Small, Some(2_000));
    // Consume while producing.
    let records = consume(kafka.bootstrap(), "paced", 2, 400);
    assert_eq!(producer.join(), 0..400);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "400 records at 2000/s take about 200 ms, took {:?}",
        started.elapsed()
    );
    assert_eq!(check_layout(&records, 2, RecordKind::Small).len(), 400);
}

#[test]
fn binary_announces_produces_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut command = Command::new(bin_path("tributary-mock-kafka"));
    command
        .args(["--topic", "t1:2,t2", "--partitions", "3"])
        .args([
            "--produce",
            "1000",
            "--kind",
            "small",
            "--produce-rate",
            "20000",
        ])
        .arg("--ready-file")
        .arg(&ready)
        .arg("--exit-on-stdin-eof")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = spawn_tied(command).unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("BOOTSTRAP=127.0.0.1:"), "{first}");
    assert_eq!(
        std::fs::read_to_string(&ready).unwrap().trim_end(),
        first,
        "ready file holds the same line"
    );
    assert_eq!(lines.next().unwrap().unwrap(), "PRODUCED=1000");
    let bootstrap = &first["BOOTSTRAP=".len()..];
    let records = consume(bootstrap, "t1", 2, 1000);
    assert_eq!(check_layout(&records, 2, RecordKind::Small).len(), 1000);

    // Producer-only mode against the running cluster; t2 has 3 partitions.
    let output = Command::new(bin_path("tributary-mock-kafka"))
        .args([
            "--bootstrap",
            bootstrap,
            "--produce",
            "30",
            "--produce-topic",
            "t2",
        ])
        .args(["--first-seq", "100"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "PRODUCED=30\n");
    let records = consume(bootstrap, "t2", 3, 30);
    let ids = check_layout(&records, 3, RecordKind::Orders);
    assert_eq!(ids, (100..130).collect());

    // Closing stdin ends it with status 0.
    drop(child.stdin.take());
    let status = wait_for(Duration::from_secs(30), "exit on stdin EOF", || {
        child.try_wait().unwrap()
    });
    assert!(status.success(), "{status:?}");
}

#[test]
fn binary_exits_zero_on_sigterm() {
    let mut command = Command::new(bin_path("tributary-mock-kafka"));
    command.args(["--topic", "x"]).stdout(Stdio::piped());
    let mut child = spawn_tied(command).unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().starts_with("BOOTSTRAP="));
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = wait_for(Duration::from_secs(30), "exit on SIGTERM", || {
        child.try_wait().unwrap()
    });
    assert!(status.success(), "{status:?}");
}

/// The group member id librdkafka holds for `consumer` (empty before it joined).
fn member_id(consumer: &BaseConsumer) -> String {
    // SAFETY: a live client handle; rd_kafka_memberid returns a malloc'ed
    // string or null, freed here with rd_kafka_mem_free.
    unsafe {
        let ptr = rdkafka::bindings::rd_kafka_memberid(consumer.client().native_ptr());
        if ptr.is_null() {
            return String::new();
        }
        let id = std::ffi::CStr::from_ptr(ptr).to_string_lossy().into_owned();
        rdkafka::bindings::rd_kafka_mem_free(consumer.client().native_ptr(), ptr.cast());
        id
    }
}

/// Joins `group` on `topic`, waits for an assignment, returns the member id.
fn join(bootstrap: &str, group: &str, topic: &str) -> (BaseConsumer, String) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    wait_for(Duration::from_secs(60), "an assignment", || {
        let _ = consumer.poll(Duration::from_millis(100));
        let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        (assigned > 0).then_some(())
    });
    let id = member_id(&consumer);
    (consumer, id)
}

/// The standalone broker gives every new group member a fresh id, where
/// librdkafka's mock would reuse the freed address of an expired member
/// (see `member_ids` in the binary): members that come and go never share one.
#[test]
fn group_members_get_unique_ids() {
    let kafka = MockKafka::start(&[("joins", 2)]);
    let mut seen = HashSet::new();
    for _ in 0..4 {
        let (consumer, id) = join(kafka.bootstrap(), "id-check", "joins");
        assert!(id.starts_with("mock-member-"), "member id {id:?}");
        assert!(seen.insert(id.clone()), "member id {id} handed out twice");
        // Leaving frees the member in the broker; the next join allocates anew.
        consumer.unsubscribe();
        drop(consumer);
    }
}
