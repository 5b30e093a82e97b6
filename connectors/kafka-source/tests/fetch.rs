//! Batch consumption through the fetch queue, against the mock cluster.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use support::{tp, Kafka, WAIT};
use tributary_kafka_source::fetch::{self, FetchQueue, Polled};

const TOPIC: &str = "fetched";
const PER_PARTITION: i64 = 300;

/// What one message looked like when taken.
#[derive(Debug, PartialEq)]
struct Taken {
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp_ms: Option<i64>,
}

fn expected(partition: i32, offset: i64) -> Taken {
    Taken {
        offset,
        key: (offset % 7 != 3).then(|| format!("k{offset}").into_bytes()),
        // Every tenth record of partition 0 is a tombstone.
        payload: (partition != 0 || offset % 10 != 5)
            .then(|| format!("{partition}/{offset}").into_bytes()),
        headers: if partition == 1 {
            vec![
                ("trace".into(), Some(format!("t{offset}").into_bytes())),
                ("empty".into(), None),
            ]
        } else {
            Vec::new()
        },
        timestamp_ms: Some(support::TS0 + offset),
    }
}

fn produce(producer: &BaseProducer, partition: i32, offset: i64) {
    let want = expected(partition, offset);
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(TOPIC)
        .partition(partition)
        .timestamp(support::TS0 + offset);
    if let Some(k) = &want.key {
        record = record.key(k.as_slice());
    }
    if let Some(p) = &want.payload {
        record = record.payload(p.as_slice());
    }
    if !want.headers.is_empty() {
        let mut h = OwnedHeaders::new();
        for (key, value) in &want.headers {
            h = h.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        record = record.headers(h);
    }
    producer.send(record).map_err(|(e, _)| e).expect("produce");
    producer.poll(Duration::ZERO);
}

#[test]
fn split_partitions_arrive_in_batches_in_order_and_the_consumer_queue_wakes_the_wait() {
    let kafka = Kafka::new();
    kafka.topic(TOPIC, 3);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for offset in 0..PER_PARTITION {
        produce(&producer, 0, offset);
        produce(&producer, 1, offset);
    }
    producer.flush(WAIT).expect("flush");

    let mut consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("group.id", "fetch-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let waker = fetch::wake_on(&mut consumer);
    let consumer = Arc::new(consumer);
    let mut queue = FetchQueue::new(consumer.clone(), waker);
    // Partitions 0 and 1 are routed before they are assigned; 2 is not.
    assert!(queue.split(&tp(TOPIC, 0)));
    assert!(queue.split(&tp(TOPIC, 1)));
    assert!(queue.is_split(&tp(TOPIC, 1)) && !queue.is_split(&tp(TOPIC, 2)));
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    drop(tpl);

    let mut taken: BTreeMap<i32, Vec<Taken>> = BTreeMap::new();
    let mut largest = 0;
    let started = Instant::now();
    while taken.values().map(Vec::len).sum::<usize>() < 2 * PER_PARTITION as usize {
        assert!(started.elapsed() < WAIT, "only {taken:?} taken");
        if let Some(m) = consumer.poll(Duration::ZERO) {
            let m = m.expect("no consumer error");
            panic!(
                "partition {} offset {} came through the consumer queue",
                Message::partition(&m),
                Message::offset(&m)
            );
        }
        let n = queue.take(Duration::from_millis(100), 1000, |m| {
            let m = m.expect("no message error");
            assert_eq!(m.topic(), TOPIC);
            taken.entry(m.partition()).or_default().push(Taken {
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .into_iter()
                    .map(|h| (h.key, h.value.map(|v| v.to_vec())))
                    .collect(),
                timestamp_ms: m.timestamp_ms(),
            });
        });
        largest = largest.max(n);
    }
    for p in 0..2 {
        let want: Vec<Taken> = (0..PER_PARTITION).map(|o| expected(p, o)).collect();
        assert_eq!(taken[&p], want, "partition {p}");
    }
    assert!(largest > 1, "every call took one message");

    // A wait on the fetch queue ends when the consumer queue gets
    // something: here a message of the partition that was not routed.
    produce(&producer, 2, 0);
    producer.flush(WAIT).expect("flush");
    let long = Duration::from_secs(120);
    let started = Instant::now();
    let message = loop {
        assert!(
            started.elapsed() < WAIT,
            "the consumer queue's message did not end the wait"
        );
        assert_eq!(queue.take(long, 10, |_| panic!("nothing is routed")), 0);
        if let Some(m) = consumer.poll(Duration::ZERO) {
            break m.expect("no consumer error").detach();
        }
    };
    assert_eq!((message.partition(), message.offset()), (2, 0));
    assert!(started.elapsed() < long);
    drop(queue);
}
