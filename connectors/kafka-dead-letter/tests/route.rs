//! The Kafka dead-letter route against a mock broker (`tributary-mock-kafka`,
//! build it with `cargo build -p tributary-testkit --bins`): what it
//! produces, and that an attempt replayed after a crash reuses what the
//! crashed attempt wrote instead of writing it again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tributary_config::{DeadLetterPartitioner, HumanDuration, KafkaDeadLetterConfig};
use tributary_core::{
    DeadLetterPositions, DeadLetterRequest, DeadLetterRoute, Header, Reject, TopicPartition,
};
use tributary_kafka_dead_letter::KafkaDeadLetter;
use tributary_testkit::MockKafka;

const DLQ: &str = "orders-dlq";

fn route(kafka: &MockKafka) -> KafkaDeadLetter {
    let cfg = KafkaDeadLetterConfig {
        topic: DLQ.into(),
        bootstrap_servers: None,
        partitioner: DeadLetterPartitioner::SourcePartition,
        timeout: HumanDuration::from_secs(30),
        librdkafka: BTreeMap::new(),
    };
    KafkaDeadLetter::new(&cfg, Some(kafka.bootstrap()), "orders-to-lake").expect("route")
}

fn reject(offset: i64) -> Reject {
    Reject {
        partition: TopicPartition::new("orders", 1),
        offset,
        timestamp_ms: Some(1_700_000_000_000 + offset),
        key: Some(Bytes::from(format!("key-{offset}"))),
        payload: Some(Bytes::from(format!("{{\"id\": {offset}, broken"))),
        headers: vec![
            Header {
                key: "trace-id".into(),
                value: Some(Bytes::from(format!("t{offset}"))),
            },
            Header {
                key: "empty".into(),
                value: None,
            },
        ],
        reason: format!("record {offset}: expected ',' or '}}'"),
    }
}

fn request(
    first: i64,
    last: i64,
    rejects: &[i64],
    previous: Option<DeadLetterPositions>,
    may_exist: bool,
) -> DeadLetterRequest {
    DeadLetterRequest {
        partition: TopicPartition::new("orders", 1),
        first_offset: first,
        last_offset: last,
        writer: "test_0000".into(),
        rejects: rejects.iter().map(|o| reject(*o)).collect(),
        previous,
        may_exist,
    }
}

/// Every record of the dead-letter partition: (offset, key, value, headers).
type Dumped = (
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

fn dump(kafka: &MockKafka, partition: i32) -> Vec<Dumped> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("group.id", "route-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (low, high) = consumer
        .fetch_watermarks(DLQ, partition, Duration::from_secs(30))
        .expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(DLQ, partition, Offset::Offset(low))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < (high - low) as usize {
        assert!(
            Instant::now() < deadline,
            "reading the dead-letter topic timed out"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("message");
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.offset(),
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                headers,
            ));
        }
    }
    out
}

fn header<'a>(headers: &'a [(String, Option<Vec<u8>>)], key: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_deref())
        .map(|v| std::str::from_utf8(v).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produces_originals_with_error_headers_and_never_twice_on_replay() {
    let kafka = MockKafka::start(&[("orders", 2), (DLQ, 2)]);
    let route = route(&kafka);

    // A first attempt at 0..=9 writes 3, 7 and 9, then "crashes" (its
    // positions are never committed).
    let crashed = route
        .deliver(request(0, 9, &[3, 7, 9], None, true))
        .await
        .expect("deliver");
    assert!(crashed.settled);
    let crashed = crashed.positions;
    assert_eq!(
        crashed.partition, 1,
        "source partition 1 → dead-letter partition 1"
    );
    assert_eq!(crashed.offsets, vec![0, 1, 2]);

    // The replay of the same range finds all three and writes nothing.
    let replay = route
        .deliver(request(0, 9, &[3, 7, 9], None, true))
        .await
        .expect("replay");
    assert!(replay.settled);
    let replay = replay.positions;
    assert_eq!(replay.offsets, crashed.offsets);
    assert_eq!(dump(&kafka, 1).len(), 3);

    // A replay that lands a shorter range first (0..=5) reuses 3 and keeps
    // the scan start before 7, which belongs to its next range.
    let short = route
        .deliver(request(0, 5, &[3], None, true))
        .await
        .expect("short range");
    assert!(
        !short.settled,
        "records of later ranges were seen: the next range must scan too"
    );
    let short = short.positions;
    assert_eq!(short.offsets, vec![0]);
    assert_eq!(
        short.scan_from, 1,
        "the next scan must see offset 7's record"
    );
    // The next range 6..=12 reuses 7 and 9 and writes only 11.
    let next = route
        .deliver(request(6, 12, &[7, 9, 11], Some(short.clone()), true))
        .await
        .expect("next range");
    assert!(next.settled);
    let next = next.positions;
    assert_eq!(next.offsets, vec![1, 2, 3]);
    assert_eq!(next.scan_from, 4);
    // A settled partition (no earlier attempt possible) is not scanned.
    let settled = route
        .deliver(request(13, 20, &[15], Some(next.clone()), false))
        .await
        .expect("settled range");
    assert!(settled.settled);
    let settled = settled.positions;
    assert_eq!(settled.offsets, vec![4]);
    assert_eq!(settled.scan_from, 5);

    let records = dump(&kafka, 1);
    assert_eq!(records.len(), 5, "3, 7, 9, 11 and 15 once each");
    let sources: Vec<&str> = records
        .iter()
        .map(|(_, _, _, h)| header(h, "tributary.source.offset").unwrap())
        .collect();
    assert_eq!(sources, ["3", "7", "9", "11", "15"]);
    let (_, key, value, headers) = &records[1];
    assert_eq!(key.as_deref(), Some(&b"key-7"[..]));
    assert_eq!(value.as_deref(), Some(&b"{\"id\": 7, broken"[..]));
    assert_eq!(headers[0], ("trace-id".to_string(), Some(b"t7".to_vec())));
    assert_eq!(headers[1], ("empty".to_string(), None));
    assert_eq!(
        header(headers, "tributary.error.reason"),
        Some("record 7: expected ',' or '}'")
    );
    assert_eq!(header(headers, "tributary.source.topic"), Some("orders"));
    assert_eq!(header(headers, "tributary.source.partition"), Some("1"));
    assert_eq!(
        header(headers, "tributary.source.timestamp"),
        Some("1700000000007")
    );
    assert_eq!(
        header(headers, "tributary.pipeline"),
        Some("orders-to-lake")
    );
    assert_eq!(header(headers, "tributary.writer"), Some("test_0000"));
    assert!(dump(&kafka, 0).is_empty());
}
