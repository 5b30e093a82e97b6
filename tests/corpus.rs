//! The bad-input corpus (`tests/data/bad-input/`, described by its
//! `cases.json`): every case is produced as one Kafka record between good
//! records, to the topic of a JSON, an Avro or a Protobuf pipeline of one
//! real `tributary run` worker (schemas from the test kit's Schema Registry
//! process). Each case must be dead-lettered exactly once with its reason,
//! the good records after it must land (the pipeline keeps running), and per
//! pipeline the rows the readers (pyarrow, DuckDB) find plus the
//! dead-lettered records must equal the records produced. The test prints
//! the corpus table: input → outcome and reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tributary_e2e::{
    assert_each_once, dead_letter_lines, dead_letter_payload, wait_landed, LakeCounter, Progress,
    Target, Worker,
};
use tributary_testkit::schema_registry::SchemaRegistryProcess;
use tributary_testkit::{read_lake, MockKafka};

/// Good records produced before and after each case.
const GOOD_AROUND: u64 = 10;

const JSON_SCHEMA: &str = r#"{"fields": [
  {"name": "id", "type": "int64", "nullable": false},
  {"name": "name", "type": "string"},
  {"name": "amount", "type": "float64"},
  {"name": "at", "type": "timestamp"}
]}"#;

const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "Order", "namespace": "corpus",
  "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": "string"}]}"#;

const PROTO_SCHEMA: &str = r#"syntax = "proto3";
package corpus;
message Order {
  int64 id = 1;
  string name = 2;
}
"#;

const PIPELINES: [&str; 3] = ["json", "avro", "protobuf"];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/bad-input")
}

struct Case {
    name: String,
    pipeline: String,
    reason: String,
    /// The value to produce (`None`: a tombstone).
    value: Option<Vec<u8>>,
}

/// Zig-zag varint, as Avro encodes `long` and lengths.
fn avro_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Plain varint, as protobuf encodes tags, lengths and int64.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn frame_avro(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn frame_protobuf(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = frame_avro(schema_id, &[]);
    out.push(0); // message indexes [0]: the first message
    out.extend_from_slice(body);
    out
}

/// A good record of `pipeline` with id `id`, encoded by hand (not by the
/// converters under test).
fn good(pipeline: &str, id: u64, avro_id: u32, proto_id: u32) -> Vec<u8> {
    let name = format!("ok-{id}");
    match pipeline {
        "json" => format!(
            r#"{{"id": {id}, "name": "{name}", "amount": {}.5, "at": "2026-11-24T10:00:00Z"}}"#,
            id % 100
        )
        .into_bytes(),
        "avro" => {
            let mut body = Vec::new();
            avro_long(&mut body, id as i64);
            avro_long(&mut body, name.len() as i64);
            body.extend_from_slice(name.as_bytes());
            frame_avro(avro_id, &body)
        }
        "protobuf" => {
            let mut body = vec![0x08];
            varint(&mut body, id);
            body.push(0x12);
            varint(&mut body, name.len() as u64);
            body.extend_from_slice(name.as_bytes());
            frame_protobuf(proto_id, &body)
        }
        other => panic!("unknown pipeline {other}"),
    }
}

fn load_cases(avro_id: u32, proto_id: u32) -> Vec<Case> {
    let dir = corpus_dir();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    let mut cases = Vec::new();
    for c in manifest["cases"].as_array().unwrap() {
        let s = |k: &str| c[k].as_str().map(str::to_string);
        let value = match (s("file"), s("generate")) {
            (Some(file), None) => {
                let raw = std::fs::read(dir.join(&file)).unwrap();
                Some(match s("frame").as_deref() {
                    None => raw,
                    Some("avro") => frame_avro(avro_id, &raw),
                    Some("protobuf") => frame_protobuf(proto_id, &raw),
                    Some(other) => panic!("unknown frame {other}"),
                })
            }
            (None, Some(g)) => match g.as_str() {
                "tombstone" => None,
                "empty" => Some(Vec::new()),
                "json-10mib" => {
                    let mut v = br#"{"id": 10, "name": ""#.to_vec();
                    v.resize(v.len() + (10 << 20), b'x');
                    v.extend_from_slice(br#"", "amount": 1.0, "at": "2026-11-24T10:00:00Z"}"#);
                    Some(v)
                }
                other => panic!("unknown generator {other}"),
            },
            _ => panic!("case needs exactly one of file and generate: {c}"),
        };
        cases.push(Case {
            name: s("name").unwrap(),
            pipeline: s("pipeline").unwrap(),
            reason: s("reason").unwrap(),
            value,
        });
    }
    cases
}

fn write_config(
    dir: &Path,
    bootstrap: &str,
    registry: &str,
    lakes: &HashMap<&str, Target<'_>>,
) -> PathBuf {
    let schema = dir.join("orders.schema.json");
    std::fs::write(&schema, JSON_SCHEMA).unwrap();
    let mut text = String::from("[worker]\nid = \"corpus\"\nhttp_addr = \"127.0.0.1:0\"\n");
    for p in PIPELINES {
        let converter = match p {
            "json" => format!(
                "type = \"json\"\nschema = \"{}\"\ntimestamp_field = \"at\"",
                schema.display()
            ),
            other => format!("type = \"{other}\"\nschema_registry = {{ url = \"{registry}\" }}"),
        };
        text.push_str(&format!(
            r#"
[[pipelines]]
name = "{p}"

[pipelines.source]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topics = ["corpus-{p}"]
group_id = "corpus-{p}"
start = "earliest"
max_poll_records = 16
librdkafka = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}

[pipelines.converter]
{converter}
on_error = "dead_letter"

[pipelines.sink]
type = "parquet"
url = "{url}"
flush = {{ max_records = 50, max_age = "500ms" }}
"#,
            url = lakes[p].url(),
        ));
    }
    let path = dir.join("worker.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every dead-letter line under `lake`: offset → (reason, payload length or
/// `None` for a null payload).
fn dead_letters(lake: &Path) -> HashMap<i64, Vec<(String, Option<usize>)>> {
    let mut out: HashMap<i64, Vec<(String, Option<usize>)>> = HashMap::new();
    for v in dead_letter_lines(lake) {
        out.entry(v["offset"].as_i64().unwrap()).or_default().push((
            v["reason"].as_str().unwrap().to_string(),
            dead_letter_payload(&v).map(|p| p.len()),
        ));
    }
    out
}

#[test]
fn every_bad_input_is_dead_lettered_with_its_reason_and_nothing_is_lost() {
    let kafka = MockKafka::start(&[
        ("corpus-json", 1),
        ("corpus-avro", 1),
        ("corpus-protobuf", 1),
    ]);
    let registry = SchemaRegistryProcess::start(None);
    let avro_id = registry.register("corpus-avro-value", AVRO_SCHEMA, None);
    let proto_id = registry.register("corpus-protobuf-value", PROTO_SCHEMA, Some("PROTOBUF"));
    let cases = load_cases(avro_id, proto_id);

    // Per pipeline: the offset of each case, and how many good records.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // The 10 MiB record: allowed by the producer, and compressed so that
        // the mock broker's 5 MiB log cap keeps it.
        .set("message.max.bytes", "16000000")
        .set("compression.type", "lz4")
        .create()
        .expect("creating the producer");
    let mut next_offset: HashMap<&str, i64> = PIPELINES.iter().map(|p| (*p, 0)).collect();
    let mut good_count: HashMap<&str, u64> = PIPELINES.iter().map(|p| (*p, 0)).collect();
    let mut case_at: HashMap<(String, i64), usize> = HashMap::new();
    let mut id = 0u64;
    let mut send = |pipeline: &'static str, value: Option<&[u8]>, id: &mut u64| {
        let topic = format!("corpus-{pipeline}");
        let key = format!("k{id}");
        let mut record = BaseRecord::<String, [u8]>::to(&topic).key(&key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        producer
            .send(record)
            .unwrap_or_else(|(e, _)| panic!("queueing a record to {topic}: {e}"));
        producer.poll(Duration::ZERO);
        *id += 1;
        let offset = next_offset[pipeline];
        next_offset.insert(pipeline, offset + 1);
        offset
    };
    for (i, case) in cases.iter().enumerate() {
        let pipeline = PIPELINES
            .into_iter()
            .find(|p| *p == case.pipeline)
            .unwrap_or_else(|| panic!("case {:?}: unknown pipeline", case.name));
        for _ in 0..GOOD_AROUND {
            let v = good(pipeline, id, avro_id, proto_id);
            send(pipeline, Some(&v), &mut id);
            *good_count.get_mut(pipeline).unwrap() += 1;
        }
        let offset = send(pipeline, case.value.as_deref(), &mut id);
        case_at.insert((case.pipeline.clone(), offset), i);
    }
    // Good records after the last case of every pipeline: it keeps running.
    for pipeline in PIPELINES {
        for _ in 0..GOOD_AROUND {
            let v = good(pipeline, id, avro_id, proto_id);
            send(pipeline, Some(&v), &mut id);
            *good_count.get_mut(pipeline).unwrap() += 1;
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("every record acknowledged");

    let dir = tempfile::tempdir().unwrap();
    let lakes: HashMap<&str, Target<'_>> = PIPELINES
        .iter()
        .map(|p| (*p, Target::Local(dir.path().join(format!("lake-{p}")))))
        .collect();
    let config = write_config(dir.path(), kafka.bootstrap(), &registry.url(), &lakes);
    let progress = Arc::new(Progress::default());
    let mut w = Worker::start(&config, &[], progress.clone());
    for p in PIPELINES {
        let lake = LakeCounter::new(&lakes[p]);
        wait_landed(
            &mut w,
            &lake,
            &progress,
            good_count[p],
            Duration::from_secs(120),
        );
    }
    w.signal(libc::SIGTERM);
    let status = w.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}; log:\n{}",
        progress.tail()
    );

    let mut table = vec![
        "| input | pipeline | outcome | reason |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    let mut seen = vec![false; cases.len()];
    let mut wrong = Vec::new();
    for p in PIPELINES {
        let lake_dir = dir.path().join(format!("lake-{p}"));
        let produced = next_offset[p] as u64;
        let read = read_lake(&lake_dir, "id", None);
        let dead = dead_letters(&lake_dir);
        let dead_total: usize = dead.values().map(Vec::len).sum();
        eprintln!(
            "corpus {p}: produced {produced}, good {}, dead-lettered {dead_total}; readers: {read}",
            good_count[p]
        );
        assert_each_once(&read, good_count[p], p);
        assert_eq!(
            good_count[p] + dead_total as u64,
            produced,
            "{p}: landed + dead-lettered must equal produced"
        );
        for (offset, lines) in &dead {
            let Some(&i) = case_at.get(&(p.to_string(), *offset)) else {
                panic!("{p}: offset {offset} was dead-lettered but is a good record: {lines:?}");
            };
            let case = &cases[i];
            assert_eq!(
                lines.len(),
                1,
                "{}: dead-lettered {} times",
                case.name,
                lines.len()
            );
            let (reason, len) = &lines[0];
            if !reason.contains(&case.reason) {
                wrong.push(format!(
                    "{}: reason {reason:?} does not contain {:?}",
                    case.name, case.reason
                ));
            }
            assert_eq!(
                *len,
                case.value.as_ref().map(Vec::len),
                "{}: the dead letter keeps the value whole",
                case.name
            );
            seen[i] = true;
            let shown = if reason.chars().count() > 110 {
                format!("{}…", reason.chars().take(110).collect::<String>())
            } else {
                reason.clone()
            };
            table.push(format!(
                "| {} | {p} | dead-lettered at offset {offset} | {} |",
                case.name,
                shown.replace('|', "\\|")
            ));
        }
    }
    eprintln!("{}", table.join("\n"));
    for (i, case) in cases.iter().enumerate() {
        if !seen[i] {
            wrong.push(format!("case {:?} was not dead-lettered", case.name));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
