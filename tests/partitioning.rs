//! Partitioning by field and the late-data policy, end to end: the real
//! `tributary` binary consumes awkward partition values and late records from
//! the mock Kafka broker into two lakes (`late_data.policy = "event_time"` and
//! `"processing_time"`), and pyarrow and DuckDB read the Hive paths back.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use tributary_e2e::{http, wait_landed, LakeCounter, Progress, Target, Worker};
use tributary_testkit::{bin_path, python, wait_for, workspace_root, MockKafka, SeaweedFs};

const TOPIC: &str = "places";
/// Country values, each given to every `COUNTRIES.len()`-th record; `None`
/// is a JSON null.
const COUNTRIES: [Option<&str>; 10] = [
    Some("a/b"),
    Some(".."),
    None,
    Some("x=y"),
    Some("Zürich"),
    Some(""),
    Some("100%"),
    Some("."),
    Some("DE"),
    Some("q?#:*\"<>|\\'"),
];
const RECORDS: u64 = 200;
const DAY_MS: i64 = 86_400_000;
/// 2020-01-15T12:00:00Z: far behind any clock this test runs on.
const LATE_MS: i64 = 1_579_089_600_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `YYYY-MM-DD` of a UTC time (proleptic Gregorian, days from civil).
fn utc_date(ms: i64) -> String {
    let z = ms.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// What record `id` carries: its country and record time. Every 7th record
/// is late (2020), every 11th (not 7th) two days ahead of the clock.
fn record(id: u64, now: i64) -> (Option<&'static str>, i64) {
    let country = COUNTRIES[(id % COUNTRIES.len() as u64) as usize];
    let ts = if id % 7 == 3 {
        LATE_MS
    } else if id % 11 == 5 {
        now + 2 * DAY_MS
    } else {
        now
    };
    (country, ts)
}

fn produce(bootstrap: &str, now: i64) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .create()
        .expect("creating the producer");
    for id in 0..RECORDS {
        let (country, ts) = record(id, now);
        let payload = serde_json::json!({ "id": id, "country": country, "ts": ts }).to_string();
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

fn write_config(
    dir: &std::path::Path,
    bootstrap: &str,
    lakes: &[(&str, &Target<'_>)],
) -> std::path::PathBuf {
    let schema = dir.join("places.json");
    std::fs::write(
        &schema,
        r#"{"fields": [
            {"name": "id", "type": "int64", "nullable": false},
            {"name": "country", "type": "string"},
            {"name": "ts", "type": "timestamp[ms, UTC]", "nullable": false}
        ]}"#,
    )
    .unwrap();
    let mut text = String::from(
        "[worker]\nid = \"partitioning\"\nshutdown_timeout = \"30s\"\nhttp_addr = \"127.0.0.1:0\"\n",
    );
    for (policy, target) in lakes {
        text.push_str(&format!(
            r#"
[[pipelines]]
name = "{policy}"

[pipelines.source]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topics = ["{TOPIC}"]
group_id = "partitioning-{policy}"
start = "earliest"

[pipelines.converter]
type = "json"
schema = "{schema}"
timestamp_field = "ts"
on_error = "fail"

[pipelines.sink]
type = "parquet"
url = "{url}"
partition_by = "country={{country}}/dt=%Y-%m-%d"
late_data = {{ policy = "{policy}", allowed_lateness = "1h", allowed_future = "1h" }}
flush = {{ max_records = 60, max_age = "1s" }}
{storage}"#,
            schema = schema.display(),
            url = target.url(),
            storage = storage_toml(target),
        ));
    }
    let path = dir.join("worker.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The `[pipelines.sink.storage]` table of an S3 target (the secret key
/// comes from the environment, [`secrets`]).
fn storage_toml(target: &Target<'_>) -> String {
    match target {
        Target::Local(_) => String::new(),
        Target::S3 { server, .. } => format!(
            "\n[pipelines.sink.storage]\nendpoint = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\npath_style = true\nallow_http = true\n",
            server.endpoint(),
            server.region(),
            server.access_key()
        ),
    }
}

/// Environment overrides with the secret keys of the S3 targets, by pipeline index.
fn secrets(targets: &[&Target<'_>]) -> Vec<(String, String)> {
    targets
        .iter()
        .enumerate()
        .filter_map(|(i, t)| match t {
            Target::Local(_) => None,
            Target::S3 { server, .. } => Some((
                format!("TRIBUTARY_PIPELINES__{i}__SINK__STORAGE__SECRET_ACCESS_KEY"),
                server.secret_key().to_string(),
            )),
        })
        .collect()
}

/// What pyarrow and DuckDB read from the Hive paths (scripts/read_partitions.py).
fn read_partitions(target: &Target<'_>) -> Value {
    let script = workspace_root().join("scripts/read_partitions.py");
    let mut command = Command::new(python());
    command
        .arg(&script)
        .arg(match target {
            Target::Local(dir) => dir.display().to_string(),
            Target::S3 { .. } => target.url(),
        })
        .args(["--id-column", "id", "--keys", "country,dt"]);
    if let Target::S3 { server, .. } = target {
        command
            .arg("--endpoint")
            .arg(server.endpoint())
            .arg("--region")
            .arg(server.region())
            .env("AWS_ACCESS_KEY_ID", server.access_key())
            .env("AWS_SECRET_ACCESS_KEY", server.secret_key());
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "read_partitions.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn metric(body: &str, name: &str, pipeline: &str) -> u64 {
    let series = format!("{name}{{pipeline=\"{pipeline}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("{series} not in /metrics:\n{body}"))
        .parse()
        .unwrap()
}

#[test]
fn field_partitions_round_trip_and_late_records_follow_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let event = Target::Local(dir.path().join("event"));
    let processing = Target::Local(dir.path().join("processing"));
    round_trip(dir.path(), &event, &processing);
    // The directory names are the escaped values.
    for target in [&event, &processing] {
        let Target::Local(path) = target else {
            unreachable!()
        };
        let mut countries: Vec<String> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("country="))
            .collect();
        countries.sort();
        let mut expected = [
            "country=..",
            "country=.",
            "country=100%25",
            "country=DE",
            "country=Zürich",
            "country=__HIVE_DEFAULT_PARTITION__",
            "country=a%2Fb",
            "country=q%3F%23%3A%2A%22%3C%3E%7C%5C%27",
            "country=x%3Dy",
        ];
        expected.sort();
        assert_eq!(countries, expected, "{path:?}");
    }
    // Late rows of the event-time lake sit in their own (old) partitions.
    let Target::Local(path) = &event else {
        unreachable!()
    };
    assert!(path.join("country=a%2Fb/dt=2020-01-15").is_dir());
}

/// The same on S3 (SeaweedFS): object names keep the escapes as they are
/// (`country=a%2Fb/...`, not encoded twice), so readers decode them back.
#[test]
fn field_partitions_round_trip_on_s3() {
    let Some(server) = SeaweedFs::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let event = Target::S3 {
        server: &server,
        bucket: server.fresh_bucket(),
    };
    let processing = Target::S3 {
        server: &server,
        bucket: server.fresh_bucket(),
    };
    round_trip(dir.path(), &event, &processing);
}

/// Produces the records, runs one worker with an `event_time` and a
/// `processing_time` pipeline into `event` and `processing` until both have
/// landed every record, then checks what pyarrow and DuckDB read, the late
/// counters and `tributary verify`.
fn round_trip(dir: &std::path::Path, event: &Target<'_>, processing: &Target<'_>) {
    let kafka = MockKafka::start(&[(TOPIC, 2)]);
    let start = now_ms();
    produce(kafka.bootstrap(), start);
    let config = write_config(
        dir,
        kafka.bootstrap(),
        &[("event_time", event), ("processing_time", processing)],
    );
    let env = secrets(&[event, processing]);
    let progress = Arc::new(Progress::default());
    let mut w = Worker::start(&config, &env, progress.clone());
    for target in [event, processing] {
        let lake = LakeCounter::new(target);
        wait_landed(&mut w, &lake, &progress, RECORDS, Duration::from_secs(120));
    }
    // Counters move with the landing that the commit log already shows.
    let addr = w.http_addr(Duration::from_secs(30));
    let metrics = wait_for(Duration::from_secs(60), "landed counters", || {
        let body = http("GET", &addr, "/metrics", None).body;
        ["event_time", "processing_time"]
            .iter()
            .all(|p| metric(&body, "tributary_records_landed_total", p) == RECORDS)
            .then_some(body)
    });
    w.signal(libc::SIGTERM);
    let status = w.wait(Duration::from_secs(60));
    assert!(status.success(), "{status}; log:\n{}", progress.tail());
    let end = now_ms();

    let late: Vec<u64> = (0..RECORDS)
        .filter(|&id| record(id, start).1 != start)
        .collect();
    assert!(late.len() > 20, "the test has late and early records");
    // Processing time lies between producing and stopping.
    let processing_days = [utc_date(start), utc_date(end)];
    for (policy, target) in [("event_time", event), ("processing_time", processing)] {
        let read = read_partitions(target);
        eprintln!(
            "{policy}: {RECORDS} records, {} late or early; readers saw {} (pyarrow) and {} (duckdb) rows",
            late.len(),
            read["rows"]["pyarrow"],
            read["rows"]["duckdb"]
        );
        for reader in ["pyarrow", "duckdb"] {
            assert_eq!(
                read["rows"][reader], RECORDS,
                "{policy} {reader}: every record once"
            );
            assert_eq!(
                read["duplicates"][reader],
                serde_json::json!([]),
                "{policy} {reader}"
            );
            let rows = read[reader].as_object().unwrap();
            for id in 0..RECORDS {
                let (country, ts) = record(id, start);
                let row = &rows[&id.to_string()];
                // Null and empty both read back as null.
                let expected = match country {
                    Some("") | None => Value::Null,
                    Some(c) => Value::from(c),
                };
                assert_eq!(row["country"], expected, "{policy} {reader} id {id}: {row}");
                let dt = row["dt"].as_str().unwrap();
                if policy == "processing_time" && late.contains(&id) {
                    assert!(
                        processing_days.iter().any(|d| d == dt),
                        "{policy} {reader} id {id} (late) in dt={dt}, not {processing_days:?}"
                    );
                } else {
                    assert_eq!(dt, utc_date(ts), "{policy} {reader} id {id}");
                }
            }
        }
        assert_eq!(
            metric(&metrics, "tributary_records_late_total", policy),
            late.len() as u64,
            "{policy}"
        );
    }

    // `tributary verify` walks the partitioned layouts.
    let out = Command::new(bin_path("tributary"))
        .args(["verify", "--json", "--config"])
        .arg(&config)
        .envs(env)
        .current_dir(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["status"], "consistent", "{doc:#}");
    let lakes = doc["lakes"].as_array().unwrap();
    assert_eq!(lakes.len(), 2, "{doc:#}");
    for lake in lakes {
        assert_eq!(lake["totals"]["rows"], RECORDS, "{lake:#}");
        assert_eq!(lake["totals"]["orphans"], 0, "{lake:#}");
    }
}

/// `tributary validate` names an unknown `partition_by` field when the
/// schema is known up front.
#[test]
fn validate_names_an_unknown_partition_field() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Local(dir.path().join("lake"));
    let config = write_config(dir.path(), "127.0.0.1:9", &[("event_time", &target)]);
    let text = std::fs::read_to_string(&config).unwrap();
    let ok = Command::new(bin_path("tributary"))
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for (template, says) in [
        (
            "country={countyr}",
            "\"countyr\" is not a column of the rows (columns: id, country, ts)",
        ),
        ("{country}", "starts with a field placeholder"),
        ("c={country.city}", "country is Utf8, not a struct"),
    ] {
        std::fs::write(
            &config,
            text.replace("country={country}/dt=%Y-%m-%d", template),
        )
        .unwrap();
        let out = Command::new(bin_path("tributary"))
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{template}: {stderr}");
        assert!(
            stderr.contains("pipelines.0.sink.partition_by"),
            "{template}: {stderr}"
        );
        assert!(stderr.contains(says), "{template}: {stderr}");
    }
}
