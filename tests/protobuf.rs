//! Protobuf end to end: Confluent-framed protobuf records (schema in the
//! test kit's Schema Registry process) read from the mock Kafka broker by
//! the real `tributary run` binary, through a graceful restart, with records
//! encoded against another schema dead-lettered. The lake is read back by
//! pyarrow and DuckDB; the dead-letter files as plain JSON lines.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prost_reflect::prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tributary_e2e::{
    assert_each_once, dead_letter_records, wait_landed, LakeCounter, Progress, Target, Worker,
};
use tributary_testkit::schema_registry::SchemaRegistryProcess;
use tributary_testkit::{read_lake, MockKafka};

const TOPIC: &str = "pb-orders";
const TOTAL: u64 = 400;
const HALF: u64 = TOTAL / 2;

const ORDERS: &str = r#"syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";

enum Channel {
  CHANNEL_UNSPECIFIED = 0;
  WEB = 1;
  STORE = 2;
}

message Order {
  message Item {
    string sku = 1;
    int32 qty = 2;
  }
  int64 id = 1;
  string customer = 2;
  google.protobuf.Timestamp at = 3;
  repeated Item items = 4;
  map<string, string> tags = 5;
  Channel channel = 6;
  optional double discount = 7;
}
"#;

/// What a producer with the wrong schema writes: `id` is a string.
const WRONG: &str = r#"syntax = "proto3";
package shop;
message Order {
  string id = 1;
}
"#;

fn pool(text: &str) -> DescriptorPool {
    struct One(String);
    impl protox::file::FileResolver for One {
        fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
            if name == "orders.proto" {
                protox::file::File::from_source(name, &self.0)
            } else {
                Err(protox::Error::file_not_found(name))
            }
        }
    }
    let mut chain = protox::file::ChainFileResolver::new();
    chain.add(One(text.to_string()));
    chain.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(chain);
    compiler
        .open_file("orders.proto")
        .expect("compiling the test schema");
    compiler.descriptor_pool()
}

fn is_bad(id: u64) -> bool {
    id % 50 == 7
}

/// Confluent framing: magic byte 0, schema id, message indexes `[0]` (one
/// zero byte), the message. Written out here rather than with the
/// converter's helpers.
fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.push(0);
    out.extend_from_slice(body);
    out
}

/// Record `id`: an order, or (for the bad ids) a message of the wrong schema.
fn payload(good: &DescriptorPool, wrong: &DescriptorPool, schema_id: u32, id: u64) -> Vec<u8> {
    let text = if is_bad(id) {
        format!(r#"id: "order-{id}""#)
    } else {
        format!(
            r#"id: {id} customer: "c{c}" at {{ seconds: {s} nanos: 500000 }}
               items {{ sku: "a" qty: {q} }} tags {{ key: "k" value: "v{id}" }}
               channel: {ch} {discount}"#,
            c = id % 7,
            s = 1_795_501_800 + id as i64,
            q = id % 3,
            ch = if id.is_multiple_of(2) { "WEB" } else { "STORE" },
            discount = if id.is_multiple_of(4) {
                "discount: 0.5"
            } else {
                ""
            },
        )
    };
    let pool = if is_bad(id) { wrong } else { good };
    let desc = pool.get_message_by_name("shop.Order").unwrap();
    let body = DynamicMessage::parse_text_format(desc, &text)
        .unwrap()
        .encode_to_vec();
    frame(schema_id, &body)
}

fn produce(bootstrap: &str, ids: std::ops::Range<u64>, schema_id: u32) -> Vec<Vec<u8>> {
    let (good, wrong) = (pool(ORDERS), pool(WRONG));
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .create()
        .expect("creating the producer");
    let mut bad = Vec::new();
    for id in ids {
        let value = payload(&good, &wrong, schema_id, id);
        if is_bad(id) {
            bad.push(value.clone());
        }
        let key = id.to_string();
        producer
            .send(BaseRecord::to(TOPIC).key(&key).payload(&value))
            .unwrap_or_else(|(e, _)| panic!("queueing record {id}: {e}"));
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("every record acknowledged");
    bad
}

fn write_config(
    dir: &Path,
    bootstrap: &str,
    registry: &str,
    lake: &Target<'_>,
) -> std::path::PathBuf {
    let text = format!(
        r#"[worker]
id = "pb"
http_addr = "127.0.0.1:0"

[[pipelines]]
name = "protobuf"

[pipelines.source]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topics = ["{TOPIC}"]
group_id = "pb-group"
start = "earliest"
max_poll_records = 64
librdkafka = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}

[pipelines.converter]
type = "protobuf"
schema_registry = {{ url = "{registry}", timeout = "5s" }}
timestamp_field = "at"
on_error = "dead_letter"
metadata = ["partition", "offset"]

[pipelines.sink]
type = "parquet"
url = "{url}"
flush = {{ max_records = 100, max_age = "500ms" }}
"#,
        url = lake.url(),
    );
    let path = dir.join("worker.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn protobuf_records_land_exactly_once_and_bad_ones_are_dead_lettered() {
    let kafka = MockKafka::start(&[(TOPIC, 2)]);
    let registry = SchemaRegistryProcess::start(None);
    let schema_id = registry.register("pb-orders-value", ORDERS, Some("PROTOBUF"));
    let good_total = (0..TOTAL).filter(|&id| !is_bad(id)).count() as u64;
    let good_half = (0..HALF).filter(|&id| !is_bad(id)).count() as u64;

    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let target = Target::Local(lake_dir.clone());
    let config = write_config(dir.path(), kafka.bootstrap(), &registry.url(), &target);
    let lake = LakeCounter::new(&target);
    let progress = Arc::new(Progress::default());

    // Run 1: the first half, then a graceful stop.
    let mut bad = produce(kafka.bootstrap(), 0..HALF, schema_id);
    let mut w = Worker::start(&config, &[], progress.clone());
    wait_landed(
        &mut w,
        &lake,
        &progress,
        good_half,
        Duration::from_secs(120),
    );
    w.signal(libc::SIGTERM);
    let status = w.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}; log:\n{}",
        progress.tail()
    );

    // Run 2: the second half, produced before the restart.
    bad.extend(produce(kafka.bootstrap(), HALF..TOTAL, schema_id));
    let mut w = Worker::start(&config, &[], progress.clone());
    wait_landed(
        &mut w,
        &lake,
        &progress,
        good_total,
        Duration::from_secs(120),
    );
    w.signal(libc::SIGTERM);
    let status = w.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}; log:\n{}",
        progress.tail()
    );
    assert_eq!(lake.rows(), Some(good_total), "rows in committed ranges");

    let read = read_lake(&lake_dir, "id", None);
    eprintln!(
        "protobuf e2e: produced {TOTAL} ({} bad); readers: {read}",
        bad.len()
    );
    assert_each_once(&read, good_total, "good records");
    assert_eq!(read["min_id"], 0);
    assert_eq!(read["max_id"], TOTAL - 1);
    let schema = &read["schema"];
    assert_eq!(schema["id"], "int64", "{read}");
    assert_eq!(schema["customer"], "string", "{read}");
    assert_eq!(schema["at"], "timestamp[us, tz=UTC]", "{read}");
    assert_eq!(schema["channel"], "string", "{read}");
    assert_eq!(schema["discount"], "double", "{read}");
    assert!(
        schema["items"].as_str().unwrap().starts_with("list<"),
        "{read}"
    );
    assert!(
        schema["tags"]
            .as_str()
            .unwrap()
            .starts_with("map<string, string"),
        "{read}"
    );
    assert_eq!(read["nullable"]["id"], false, "{read}");
    assert_eq!(read["nullable"]["discount"], true, "{read}");

    // Each bad record is dead-lettered exactly once, with the field named.
    let dead = dead_letter_records(&lake_dir);
    let positions: HashSet<(i64, i64)> = dead.iter().map(|d| (d.0, d.1)).collect();
    assert_eq!(
        positions.len(),
        dead.len(),
        "a record dead-lettered twice: {dead:?}"
    );
    let expected: HashSet<Vec<u8>> = bad.iter().cloned().collect();
    let found: HashSet<Vec<u8>> = dead.iter().map(|d| d.3.clone()).collect();
    assert_eq!(dead.len(), bad.len(), "{dead:?}");
    assert_eq!(found, expected);
    let reason = format!(
        "protobuf decode failed for message shop.Order (schema id {schema_id}): field \"id\" \
         (number 1) at byte 0: wire type LEN, but the schema declares int64 (VARINT)"
    );
    for d in &dead {
        assert_eq!(d.2, reason);
    }
}
