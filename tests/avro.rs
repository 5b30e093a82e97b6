//! Avro end to end: Confluent-framed Avro records of two writer schema
//! versions (v2 adds a nullable field), interleaved, read from the mock
//! Kafka broker by the real `tributary run` binary with writer schemas from
//! the test kit's Schema Registry process (basic auth, the password given by
//! environment). Records naming an unknown schema id and truncated records
//! are dead-lettered with their reasons. The lake is read back by pyarrow
//! and DuckDB; the dead-letter files as plain JSON lines.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tributary_e2e::{
    assert_each_once, dead_letter_records, wait_landed, LakeCounter, Progress, Target, Worker,
};
use tributary_testkit::avro::apache_avro::types::Value;
use tributary_testkit::avro::apache_avro::{Decimal, Schema};
use tributary_testkit::avro::{confluent_avro, produce_raw};
use tributary_testkit::schema_registry::SchemaRegistryProcess;
use tributary_testkit::{read_lake, MockKafka};

const TOPIC: &str = "avro-users";
const SUBJECT: &str = "avro-users-value";
const TOTAL: u64 = 300;
const UNKNOWN_ID: u32 = 9999;
const USER: &str = "tributary";
const PASSWORD: &str = "registry-secret";

const V1: &str = r#"{"type": "record", "name": "User", "namespace": "shop", "fields": [
  {"name": "id", "type": "long"},
  {"name": "name", "type": "string"},
  {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "balance", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
  {"name": "tier", "type": {"type": "enum", "name": "Tier", "symbols": ["FREE", "PRO"]}}
]}"#;

/// v2 adds a nullable field, as a compatible producer upgrade does.
const V2: &str = r#"{"type": "record", "name": "User", "namespace": "shop", "fields": [
  {"name": "id", "type": "long"},
  {"name": "name", "type": "string"},
  {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "balance", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
  {"name": "tier", "type": {"type": "enum", "name": "Tier", "symbols": ["FREE", "PRO"]}},
  {"name": "email", "type": ["null", "string"], "default": null}
]}"#;

/// What record `id` is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    V1,
    V2,
    UnknownId,
    Truncated,
}

fn kind(id: u64) -> Kind {
    match id % 50 {
        7 => Kind::UnknownId,
        13 => Kind::Truncated,
        // Versions alternate in runs of three, so batches mix them.
        _ if (id / 3).is_multiple_of(2) => Kind::V1,
        _ => Kind::V2,
    }
}

fn value(id: u64, with_email: bool) -> Value {
    let mut fields = vec![
        ("id".to_string(), Value::Long(id as i64)),
        ("name".to_string(), Value::String(format!("user-{id}"))),
        (
            "at".to_string(),
            Value::TimestampMillis(1_795_501_800_000 + id as i64 * 1_000),
        ),
        (
            "balance".to_string(),
            Value::Decimal(Decimal::from((id as i64 * 101).to_be_bytes().to_vec())),
        ),
        (
            "tier".to_string(),
            Value::Enum(
                (id % 2) as u32,
                if id.is_multiple_of(2) { "FREE" } else { "PRO" }.into(),
            ),
        ),
    ];
    if with_email {
        let email = if id % 4 == 1 {
            Value::Union(0, Box::new(Value::Null))
        } else {
            Value::Union(
                1,
                Box::new(Value::String(format!("user-{id}@example.invalid"))),
            )
        };
        fields.push(("email".to_string(), email));
    }
    Value::Record(fields)
}

/// A record to produce: partition, key, value.
type Record = (i32, String, Vec<u8>);

/// All records and the bad values among them.
fn records(id1: u32, id2: u32) -> (Vec<Record>, Vec<Vec<u8>>) {
    let (v1, v2) = (
        Schema::parse_str(V1).unwrap(),
        Schema::parse_str(V2).unwrap(),
    );
    let mut all = Vec::new();
    let mut bad = Vec::new();
    for id in 0..TOTAL {
        let payload = match kind(id) {
            Kind::V1 => confluent_avro(id1, &v1, value(id, false)),
            Kind::V2 => confluent_avro(id2, &v2, value(id, true)),
            Kind::UnknownId => confluent_avro(UNKNOWN_ID, &v1, value(id, false)),
            Kind::Truncated => {
                // The enum index (last byte) is cut off.
                let mut p = confluent_avro(id1, &v1, value(id, false));
                p.pop();
                p
            }
        };
        if matches!(kind(id), Kind::UnknownId | Kind::Truncated) {
            bad.push(payload.clone());
        }
        all.push(((id % 2) as i32, id.to_string(), payload));
    }
    (all, bad)
}

fn write_config(
    dir: &Path,
    bootstrap: &str,
    registry: &str,
    lake: &Target<'_>,
) -> std::path::PathBuf {
    let text = format!(
        r#"[worker]
id = "avro"
http_addr = "127.0.0.1:0"

[[pipelines]]
name = "avro"

[pipelines.source]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topics = ["{TOPIC}"]
group_id = "avro-group"
start = "earliest"
max_poll_records = 64
librdkafka = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}

[pipelines.converter]
type = "avro"
# The password comes from TRIBUTARY_PIPELINES__0__CONVERTER__SCHEMA_REGISTRY__PASSWORD.
schema_registry = {{ url = "{registry}", username = "{USER}", timeout = "5s" }}
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
fn avro_records_of_two_schema_versions_land_once_and_bad_ones_are_dead_lettered() {
    let kafka = MockKafka::start(&[(TOPIC, 2)]);
    let registry = SchemaRegistryProcess::start(Some((USER, PASSWORD)));
    let id1 = registry.register(SUBJECT, V1, None);
    let id2 = registry.register(SUBJECT, V2, None);
    assert_ne!(id1, id2);
    let (all, bad) = records(id1, id2);
    produce_raw(kafka.bootstrap(), TOPIC, &all).expect("producing the records");
    let good_total = TOTAL - bad.len() as u64;

    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let target = Target::Local(lake_dir.clone());
    let config = write_config(dir.path(), kafka.bootstrap(), &registry.url(), &target);
    let lake = LakeCounter::new(&target);
    let progress = Arc::new(Progress::default());
    let env = [(
        "TRIBUTARY_PIPELINES__0__CONVERTER__SCHEMA_REGISTRY__PASSWORD".to_string(),
        PASSWORD.to_string(),
    )];
    let mut w = Worker::start(&config, &env, progress.clone());
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
    assert!(
        !progress.tail().contains(PASSWORD),
        "the registry password appears in the log"
    );

    let read = read_lake(&lake_dir, "id", None);
    eprintln!(
        "avro e2e: produced {TOTAL} ({} bad); readers: {read}",
        bad.len()
    );
    assert_each_once(&read, good_total, "good records");
    assert_eq!(read["min_id"], 0);
    assert_eq!(read["max_id"], TOTAL - 1);
    let schema = &read["schema"];
    assert_eq!(schema["id"], "int64", "{read}");
    assert_eq!(schema["name"], "string", "{read}");
    assert_eq!(schema["at"], "timestamp[ms, tz=UTC]", "{read}");
    assert_eq!(schema["balance"], "decimal128(12, 2)", "{read}");
    assert_eq!(schema["email"], "string", "{read}");
    assert_eq!(read["nullable"]["email"], true, "{read}");
    assert_eq!(read["nullable"]["id"], false, "{read}");

    // Each bad record is dead-lettered exactly once, with its reason.
    let dead = dead_letter_records(&lake_dir);
    let positions: HashSet<(i64, i64)> = dead.iter().map(|d| (d.0, d.1)).collect();
    assert_eq!(
        positions.len(),
        dead.len(),
        "a record dead-lettered twice: {dead:?}"
    );
    assert_eq!(dead.len(), bad.len(), "{dead:?}");
    let expected: HashSet<Vec<u8>> = bad.iter().cloned().collect();
    let found: HashSet<Vec<u8>> = dead.iter().map(|d| d.3.clone()).collect();
    assert_eq!(found, expected);
    for d in &dead {
        if d.3[1..5] == UNKNOWN_ID.to_be_bytes() {
            assert_eq!(
                d.2,
                "schema id 9999 not found in the schema registry (40403: Schema 9999 not found)"
            );
        } else {
            assert!(
                d.2.starts_with(
                    "truncated Avro body: field \"tier\": enum index (a varint) is cut off"
                ) && d.2.ends_with(&format!("(schema id {id1})")),
                "{}",
                d.2
            );
        }
    }
}
