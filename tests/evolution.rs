//! Schema evolution end to end: the real `tributary` binary reads JSON records
//! from the mock Kafka broker with an inferred schema while the records gain a
//! nullable field, an integer field turns fractional, old and new shapes
//! alternate, and two records do not fit at all. Every record must be read
//! back once by pyarrow (unified schema) and DuckDB (`union_by_name`), with
//! nulls where a record had no value, the misfits must be dead-lettered with
//! a reason naming the field, and the lake must hold one file per schema
//! change and landing, not one per alternation.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{json, Value};
use tributary_e2e::{dead_letter_lines, wait_landed, LakeCounter, Progress, Target, Worker};
use tributary_testkit::{bin_path, python, workspace_root, MockKafka};

const TOPIC: &str = "evolving";
/// Records 0..500 convert; 500 and 501 do not fit; 502..510 convert again.
const RECORDS: u64 = 510;
const MISFITS: [u64; 2] = [500, 501];

/// Record `id`'s JSON, and the `(qty, note)` a reader must see for it.
fn record(id: u64) -> (Value, Value, Value) {
    let i = id as f64;
    match id {
        // The first shape: an integer quantity.
        0..100 => (json!({"id": id, "qty": id}), json!(i), Value::Null),
        // A new nullable field.
        100..200 => {
            let note = format!("n{id}");
            (
                json!({"id": id, "qty": id, "note": note}),
                json!(i),
                json!(note),
            )
        }
        // The quantity turns fractional: int64 widens to float64.
        200..300 => (
            json!({"id": id, "qty": i + 0.5}),
            json!(i + 0.5),
            Value::Null,
        ),
        // Old and new shapes alternate, record by record.
        300..500 if id.is_multiple_of(2) => (json!({"id": id, "qty": id}), json!(i), Value::Null),
        300..500 => {
            let note = format!("n{id}");
            (
                json!({"id": id, "qty": i + 0.5, "note": note}),
                json!(i + 0.5),
                json!(note),
            )
        }
        // A string where a number was; an object where a number was.
        500 => (json!({"id": id, "qty": "lots"}), Value::Null, Value::Null),
        501 => (
            json!({"id": id, "qty": {"value": 1}}),
            Value::Null,
            Value::Null,
        ),
        _ => (json!({"id": id, "qty": id}), json!(i), Value::Null),
    }
}

fn produce(bootstrap: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .create()
        .expect("creating the producer");
    for id in 0..RECORDS {
        let payload = record(id).0.to_string();
        let key = id.to_string();
        producer
            .send(BaseRecord::to(TOPIC).key(&key).payload(&payload))
            .unwrap_or_else(|(e, _)| panic!("queueing record {id}: {e}"));
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("every record acknowledged");
}

fn write_config(dir: &Path, bootstrap: &str, target: &Target<'_>) -> std::path::PathBuf {
    // Small polls: the schema changes between batches, several times per
    // landing (flush by age, 2 s, long enough to hold them all).
    let text = format!(
        r#"[worker]
id = "evolution"
shutdown_timeout = "30s"
http_addr = "127.0.0.1:0"

[[pipelines]]
name = "evolution"

[pipelines.source]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topics = ["{TOPIC}"]
group_id = "evolution"
start = "earliest"
max_poll_records = 40

[pipelines.converter]
type = "json"
infer = true
infer_records = 50
schema_evolution = "merge"
on_error = "dead_letter"

[pipelines.sink]
type = "parquet"
url = "{url}"
flush = {{ max_records = 100000, max_age = "2s" }}
"#,
        url = target.url(),
    );
    let path = dir.join("worker.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn read_evolution(dir: &Path) -> Value {
    let out = Command::new(python())
        .arg(workspace_root().join("scripts/read_evolution.py"))
        .arg(dir)
        .args(["--id-column", "id"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "read_evolution.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The dead-letter lines of the lake: `(offset, reason)`.
fn dead_letters(dir: &Path) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = dead_letter_lines(dir)
        .iter()
        .map(|v| {
            (
                v["offset"].as_u64().unwrap(),
                v["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn fields_added_and_widened_mid_stream_are_read_back_by_pyarrow_and_duckdb() {
    let kafka = MockKafka::start(&[(TOPIC, 1)]);
    produce(kafka.bootstrap());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let target = Target::Local(root.clone());
    let config = write_config(dir.path(), kafka.bootstrap(), &target);
    let progress = Arc::new(Progress::default());
    let lake = LakeCounter::new(&target);
    let mut w = Worker::start(&config, &[], progress.clone());
    let rows = RECORDS - MISFITS.len() as u64;
    wait_landed(&mut w, &lake, &progress, rows, Duration::from_secs(120));
    w.signal(libc::SIGTERM);
    let status = w.wait(Duration::from_secs(60));
    assert!(status.success(), "{status}; log:\n{}", progress.tail());

    // The lake is consistent.
    let verify = Command::new(bin_path("tributary"))
        .args(["verify", "--json", "--url"])
        .arg(target.url())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "tributary verify: {}\n{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    // Both readers see every converted record once, with the merged schema.
    let read = read_evolution(&root);
    let expected: Vec<Value> = (0..RECORDS)
        .filter(|id| !MISFITS.contains(id))
        .map(|id| {
            let (_, qty, note) = record(id);
            json!([id, qty, note])
        })
        .collect();
    assert_eq!(
        read["pyarrow"]["schema"],
        json!({"id": "int64", "qty": "double", "note": "string"}),
        "{read}"
    );
    for reader in ["pyarrow", "duckdb"] {
        let got = read[reader]["rows"].as_array().unwrap();
        assert_eq!(got.len(), expected.len(), "{reader} rows");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g, e, "{reader}");
        }
    }

    // The misfits are in the dead-letter file, each with a reason naming the field.
    let dead = dead_letters(&root);
    assert_eq!(
        dead.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        MISFITS,
        "{dead:?}"
    );
    assert!(dead[0].1.starts_with(r#"field "qty": "#), "{dead:?}");
    assert!(
        dead[1]
            .1
            .starts_with(r#"field "qty": type Float64 cannot change to Struct"#),
        "{dead:?}"
    );

    // No small-file storm: three schemas (first shape, + note, qty widened),
    // so at most three files per landing, and two more files than landings
    // over the run; 200 alternating records made none.
    let landings = progress.landings.load(std::sync::atomic::Ordering::SeqCst);
    let files = read["files"].as_u64().unwrap();
    eprintln!(
        "evolution: {files} data files, {} distinct file schemas, {landings} landings logged",
        read["file_schemas"]
    );
    assert!(read["file_schemas"].as_u64().unwrap() <= 3, "{read}");
    assert!(landings >= 1);
    assert!(
        files <= landings + 2,
        "{files} data files for {landings} landings:\n{}",
        lake.commit_table()
    );
}
