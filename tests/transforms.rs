//! Transforms end to end: the real `tributary` binary reads JSON orders from
//! a mock Kafka through a chain of rename, drop, insert (Kafka offset and a
//! static value), cast, filter, flatten and timestamp, and lands them in a
//! local lake. pyarrow and DuckDB read the rows back and must see the
//! transformed columns and values; the landing commits and `tributary verify`
//! must account for every record produced: landed + filtered (skipped) +
//! dead-lettered (a value the cast or the timestamp parse cannot take, kept
//! with its original bytes) = produced. `tributary validate` must reject a
//! bad expression and an unknown field with the exact key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tributary_e2e::{dead_letter_lines, Progress, Worker};
use tributary_testkit::{bin_path, python, wait_for, workspace_root, MockKafka};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 2;
const TOTAL: u64 = 300;
const TS0: i64 = 1_763_900_000_000;
/// 2026-11-24 06:00:00 UTC (07:00 in Paris) in milliseconds.
const CREATED0_UTC_MS: i64 = 1_795_500_000_000;

/// What happens to record `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Landed,
    /// `amount` is not a number: the cast rejects it.
    BadAmount,
    /// `created` is not a time: the timestamp step rejects it.
    BadCreated,
    /// Filtered out (country XX, or amount not above 0).
    Filtered,
}

fn fate(i: u64) -> Fate {
    match i % 10 {
        3 => Fate::BadAmount,
        7 => Fate::BadCreated,
        1 | 5 => Fate::Filtered,
        _ => Fate::Landed,
    }
}

fn payload(i: u64) -> String {
    let amount = match i % 10 {
        3 => "n/a".to_string(),
        1 => "-5.00".to_string(),
        _ => format!("{i}.25"),
    };
    let country = match i % 10 {
        5 => "XX",
        _ if i.is_multiple_of(2) => "DE",
        _ => "FR",
    };
    let created = if fate(i) == Fate::BadCreated {
        "yesterday".to_string()
    } else {
        format!("2026-11-24 {:02}:{:02}:00", 7 + i / 60, i % 60)
    };
    format!(
        r#"{{"id": {i}, "customer": {{"name": "c{i}", "address": {{"country": "{country}", "zip": "{i:05}"}}}}, "amount": "{amount}", "created": "{created}", "internal": "secret-{i}"}}"#
    )
}

const SCHEMA: &str = r#"{"fields": [
  {"name": "id", "type": "int64", "nullable": false},
  {"name": "customer", "type": "struct", "fields": [
    {"name": "name", "type": "string"},
    {"name": "address", "type": "struct", "fields": [
      {"name": "country", "type": "string"},
      {"name": "zip", "type": "string"}]}]},
  {"name": "amount", "type": "string"},
  {"name": "created", "type": "string"},
  {"name": "internal", "type": "string"}
]}"#;

const TRANSFORMS: &str = r#"
[[pipelines.transforms]]
type = "rename"
fields = { id = "order_id", "customer.address.country" = "country_code" }

[[pipelines.transforms]]
type = "drop"
fields = ["internal", "customer.address.zip"]

[[pipelines.transforms]]
type = "insert"
field = "source_offset"
metadata = "offset"

[[pipelines.transforms]]
type = "insert"
field = "source"
value = "shop"

[[pipelines.transforms]]
type = "cast"
fields = { amount = "decimal(12,2)" }

[[pipelines.transforms]]
type = "filter"
expr = "amount > 0 and customer.address.country_code != 'XX'"

[[pipelines.transforms]]
type = "flatten"

[[pipelines.transforms]]
type = "timestamp"
field = "created"
format = "%Y-%m-%d %H:%M:%S"
timezone = "Europe/Paris"
target = "timestamp_ms"
"#;

fn write_config(dir: &Path, bootstrap: &str, lake: &Path, transforms: &str) -> PathBuf {
    let schema = dir.join("orders.json");
    std::fs::write(&schema, SCHEMA).unwrap();
    let text = format!(
        r#"[worker]
id = "transforms"
http_addr = "127.0.0.1:0"

[[pipelines]]
name = "orders"

[pipelines.source]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topics = ["{TOPIC}"]
group_id = "transforms"
max_poll_records = 40

[pipelines.converter]
type = "json"
schema = "{schema}"
on_error = "dead_letter"

[pipelines.sink]
type = "parquet"
url = "file://{lake}"
flush = {{ max_records = 70, max_age = "300ms" }}
{transforms}"#,
        schema = schema.display(),
        lake = lake.display(),
    );
    let path = dir.join(format!("worker-{}.toml", text.len()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Produces the records; returns the offset Kafka gave each, by id.
fn produce(bootstrap: &str) -> BTreeMap<u64, i64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .create()
            .expect("producer");
        let mut pending = Vec::new();
        for i in 0..TOTAL {
            let (key, value) = (format!("k{i}"), payload(i));
            let delivery = producer
                .send_result(
                    FutureRecord::to(TOPIC)
                        .partition((i % PARTITIONS as u64) as i32)
                        .key(&key)
                        .payload(&value)
                        .timestamp(TS0 + i as i64),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue");
            pending.push((i, delivery));
        }
        let mut offsets = BTreeMap::new();
        for (i, delivery) in pending {
            let d = delivery.await.expect("delivery").expect("delivered");
            offsets.insert(i, d.offset);
        }
        offsets
    })
}

fn validate(config: &Path) -> (Option<i32>, String) {
    let out = Command::new(bin_path("tributary"))
        .arg("validate")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// (rows, dead-lettered, skipped) over every commit of the lake.
fn totals(
    lake: &tributary_lake::Lake,
    runtime: &tokio::runtime::Runtime,
) -> Option<(u64, u64, u64)> {
    runtime.block_on(async {
        let mut t = (0, 0, 0);
        for tp in lake.partitions().await.ok()? {
            for c in lake.commits(&tp).await.ok()? {
                t.0 += c.rows;
                t.1 += c.dead_lettered;
                t.2 += c.skipped;
            }
        }
        Some(t)
    })
}

#[test]
fn a_chain_of_every_transform_lands_what_it_should_and_counts_the_rest() {
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let config = write_config(dir.path(), kafka.bootstrap(), &lake_dir, TRANSFORMS);

    // validate: the config passes; a bad expression and an unknown field
    // (the schema file is known offline) are named by their key.
    let (code, output) = validate(&config);
    assert_eq!(code, Some(0), "{output}");
    let bad = write_config(
        dir.path(),
        kafka.bootstrap(),
        &lake_dir,
        &TRANSFORMS.replace("amount > 0 and", "amount > and"),
    );
    let (code, output) = validate(&bad);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains(
            "pipelines.0.transforms.5.expr: expected a value after '>', found keyword 'and' at column 10"
        ),
        "{output}"
    );
    let unknown = write_config(
        dir.path(),
        kafka.bootstrap(),
        &lake_dir,
        &TRANSFORMS.replace(
            "customer.address.country_code !=",
            "customer.adress.country_code !=",
        ),
    );
    let (code, output) = validate(&unknown);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains(
            "pipelines.0.transforms.5.expr: field \"customer.adress.country_code\" not found: \
             \"customer\" has fields \"name\", \"address\" (at column 16)"
        ),
        "{output}"
    );

    let offsets = produce(kafka.bootstrap());
    let progress = Arc::new(Progress::default());
    let mut worker = Worker::start(&config, &[], progress.clone());
    let lake = tributary_lake::Lake::open(
        &format!("file://{}", lake_dir.display()),
        &tributary_config::StorageConfig::default(),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let landed = wait_for(
        Duration::from_secs(120),
        "every record accounted for",
        || {
            if let Some(status) = worker.exited() {
                panic!("the worker exited ({status}):\n{}", progress.tail());
            }
            totals(&lake, &runtime).filter(|t| t.0 + t.1 + t.2 >= TOTAL)
        },
    );
    worker.signal(libc::SIGTERM);
    let status = worker.wait(Duration::from_secs(60));
    assert!(status.success(), "{status}:\n{}", progress.tail());

    let count = |f: Fate| (0..TOTAL).filter(|&i| fate(i) == f).count() as u64;
    let expected = (
        count(Fate::Landed),
        count(Fate::BadAmount) + count(Fate::BadCreated),
        count(Fate::Filtered),
    );
    assert_eq!(expected, (180, 60, 60));
    assert_eq!(
        landed, expected,
        "(rows, dead-lettered, skipped) in the commits"
    );
    assert_eq!(
        landed.0 + landed.1 + landed.2,
        TOTAL,
        "landed + dead + filtered = produced"
    );

    // pyarrow and DuckDB.
    let out = Command::new(python())
        .arg(workspace_root().join("scripts/read_rows.py"))
        .arg(&lake_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let schema: Vec<(String, String)> = read["schema"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let mut want: Vec<(String, String)> = [
        ("order_id", "int64"),
        ("customer_name", "string"),
        ("customer_address_country_code", "string"),
        ("amount", "decimal128(12, 2)"),
        ("created", "timestamp[ms, tz=UTC]"),
        ("source_offset", "int64"),
        ("source", "string"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    want.sort();
    let mut got = schema.clone();
    got.sort();
    assert_eq!(got, want, "{}", read["schema"]);
    for reader in ["pyarrow", "duckdb"] {
        let rows = read[reader].as_array().unwrap();
        assert_eq!(rows.len() as u64, expected.0, "{reader} rows");
        let landed_ids: Vec<u64> = (0..TOTAL).filter(|&i| fate(i) == Fate::Landed).collect();
        for (row, &i) in rows.iter().zip(&landed_ids) {
            assert_eq!(row["order_id"], i, "{reader}: {row}");
            assert_eq!(row["customer_name"], format!("c{i}"), "{reader}: {row}");
            assert_eq!(
                row["customer_address_country_code"],
                if i.is_multiple_of(2) { "DE" } else { "FR" },
                "{reader}: {row}"
            );
            assert_eq!(row["amount"], format!("{i}.25"), "{reader}: {row}");
            assert_eq!(
                row["created"],
                CREATED0_UTC_MS + i as i64 * 60_000,
                "{reader}: {row}"
            );
            assert_eq!(row["source_offset"], offsets[&i], "{reader}: {row}");
            assert_eq!(row["source"], "shop", "{reader}: {row}");
        }
    }

    // Dead letters: the original bytes and a reason naming step, field and value.
    let dead = dead_letter_lines(&lake_dir);
    assert_eq!(dead.len() as u64, expected.1);
    for d in &dead {
        let text = d["payload"].as_str().unwrap();
        let id: u64 = serde_json::from_str::<serde_json::Value>(text).unwrap()["id"]
            .as_u64()
            .unwrap();
        assert_eq!(text, payload(id), "original bytes");
        assert_eq!(d["key"], format!("k{id}"));
        let reason = d["reason"].as_str().unwrap();
        match fate(id) {
            Fate::BadAmount => assert_eq!(
                reason,
                "transforms.4 (cast): field \"amount\" value n/a cannot be cast to decimal(12,2)"
            ),
            Fate::BadCreated => assert_eq!(
                reason,
                "transforms.7 (timestamp): field \"created\" value \"yesterday\" does not match \
                 format \"%Y-%m-%d %H:%M:%S\""
            ),
            other => panic!("record {id} ({other:?}) is not a dead letter: {d}"),
        }
    }

    // verify agrees.
    let out = Command::new(bin_path("tributary"))
        .args(["verify", "--json", "--url"])
        .arg(format!("file://{}", lake_dir.display()))
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{doc:#}");
    assert_eq!(doc["status"], "consistent", "{doc:#}");
    let t = &doc["lakes"][0]["totals"];
    assert_eq!(
        (
            t["rows"].as_u64(),
            t["dead_lettered"].as_u64(),
            t["skipped"].as_u64()
        ),
        (Some(expected.0), Some(expected.1), Some(expected.2)),
        "{t}"
    );
}
