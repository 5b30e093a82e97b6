//! The Kafka dead-letter route, end to end: the real `tributary` binary with
//! `on_error = "dead_letter"` and `[pipelines.dead_letter] type = "kafka"`
//! reads a mix of good records and bad ones (malformed JSON, wrong types),
//! all with headers, from a mock Kafka. An independent consumer
//! (`scripts/read_topic.py`, confluent-kafka) then checks that every bad
//! record is in the dead-letter topic exactly once, with its original key,
//! value, headers and timestamp plus the `tributary.*` error headers; pyarrow
//! and DuckDB check that every good record landed once; and the lake's
//! commits list exactly the dead-letter positions the topic holds.
//!
//! The crash test stops the worker at `after_dead_letter_produce` (the
//! rejects of a range are acknowledged, its lake commit is not written; needs
//! a binary built with `--features tributary-cli/fault-injection`) and
//! restarts it: the replayed range must reuse the records the crashed
//! attempt wrote, not write them again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tributary_e2e::{
    assert_each_once, wait_crashed, write_config_with, Progress, Target, Tuning, Worker,
};
use tributary_testkit::{python, read_lake, try_wait_for, workspace_root, MockKafka};

const TOPIC: &str = "orders";
const DLQ: &str = "orders-dlq";
const PARTITIONS: i32 = 2;
const TOTAL: u64 = 480;
const GROUP: &str = "dlq-group";
const PIPELINE: &str = "e2e";
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);
const TS0: i64 = 1_763_900_000_000;

/// Record headers: names and values (`None` is a null value).
type Headers = Vec<(String, Option<Vec<u8>>)>;

/// One record as produced.
#[derive(Clone, Debug)]
struct Produced {
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Vec<u8>,
    value: Vec<u8>,
    headers: Headers,
    bad: bool,
}

/// Every fifth record is bad (in both source partitions), in turn:
/// malformed JSON, a string id, a string amount. All carry headers (a null
/// value and binary bytes among them).
fn record(i: u64) -> (Vec<u8>, Vec<u8>, Headers, bool) {
    let ts = TS0 + i as i64;
    let bad = i % 5 == 3;
    let value = if !bad {
        format!(r#"{{"id": {i}, "user": "u{i}", "amount": 1.5, "ts": {ts}}}"#)
    } else {
        match (i / 5) % 3 {
            0 => format!(r#"{{"id": {i}, "user": "u{i}", "amou"#),
            1 => format!(r#"{{"id": "id-{i}", "user": "u{i}", "amount": 1.5, "ts": {ts}}}"#),
            _ => format!(r#"{{"id": {i}, "user": "u{i}", "amount": "lots", "ts": {ts}}}"#),
        }
    };
    let key = format!("{}-{i}", if bad { "bad" } else { "good" });
    let headers = vec![
        ("trace-id".to_string(), Some(format!("t{i}").into_bytes())),
        ("nullable".to_string(), None),
        ("bin".to_string(), Some(vec![0xff, 0x00, i as u8])),
    ];
    (key.into_bytes(), value.into_bytes(), headers, bad)
}

fn produce(bootstrap: &str) -> Vec<Produced> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        let mut pending = Vec::new();
        for i in 0..TOTAL {
            let (key, value, headers, bad) = record(i);
            let mut owned = OwnedHeaders::new();
            for (k, v) in &headers {
                owned = owned.insert(Header {
                    key: k,
                    value: v.as_deref(),
                });
            }
            let partition = (i % PARTITIONS as u64) as i32;
            let delivery = producer
                .send_result(
                    FutureRecord::to(TOPIC)
                        .partition(partition)
                        .key(&key)
                        .payload(&value)
                        .timestamp(TS0 + i as i64)
                        .headers(owned),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue");
            pending.push((delivery, key, value, headers, bad, i));
        }
        let mut out = Vec::new();
        for (delivery, key, value, headers, bad, i) in pending {
            let d = delivery.await.expect("delivery").expect("delivered");
            out.push(Produced {
                partition: d.partition,
                offset: d.offset,
                timestamp: TS0 + i as i64,
                key,
                value,
                headers,
                bad,
            });
        }
        out
    })
}

/// A mock Kafka with the source and the dead-letter topic, a local lake and
/// a worker config routing rejects to the topic.
struct Setup {
    kafka: MockKafka,
    dir: tempfile::TempDir,
    lake_dir: PathBuf,
    config: PathBuf,
    /// The same with other batch and flush sizes, so that a replay cuts the
    /// source partitions into other ranges than the crashed run did.
    replay_config: PathBuf,
    lake: tributary_lake::Lake,
    runtime: tokio::runtime::Runtime,
}

impl Setup {
    fn new() -> Setup {
        let kafka = MockKafka::start(&[(TOPIC, PARTITIONS), (DLQ, PARTITIONS)]);
        let dir = tempfile::tempdir().expect("tempdir");
        let lake_dir = dir.path().join("lake");
        let target = Target::Local(lake_dir.clone());
        let tuning = Tuning {
            max_poll_records: 25,
            max_records: 60,
            max_age: "300ms",
        };
        let config = write_config_with(
            dir.path(),
            kafka.bootstrap(),
            TOPIC,
            GROUP,
            &target,
            &tuning,
        );
        let text = std::fs::read_to_string(&config).expect("reading the config");
        assert!(text.contains("on_error = \"fail\""));
        let text = text.replace("on_error = \"fail\"", "on_error = \"dead_letter\"")
            + &format!(
                "\n[pipelines.dead_letter]\ntype = \"kafka\"\ntopic = \"{DLQ}\"\ntimeout = \"30s\"\n"
            );
        std::fs::write(&config, &text).expect("writing the config");
        let replay_config = dir.path().join("replay.toml");
        let replay = text
            .replace("max_records = 60,", "max_records = 37,")
            .replace("max_poll_records = 25", "max_poll_records = 10");
        assert_ne!(replay, text);
        std::fs::write(&replay_config, replay).expect("writing the replay config");
        let lake =
            tributary_lake::Lake::open(&target.url(), &tributary_config::StorageConfig::default())
                .expect("opening the lake");
        Setup {
            kafka,
            dir,
            lake_dir,
            config,
            replay_config,
            lake,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn start(&self, crash: Option<&str>, progress: &Arc<Progress>) -> Worker {
        let env: Vec<(String, String)> = crash
            .map(|spec| vec![("TRIBUTARY_FAULT_CRASH".to_string(), spec.to_string())])
            .unwrap_or_default();
        Worker::start(&self.config, &env, progress.clone())
    }

    /// A worker with the replay config (other range boundaries).
    fn start_replay(&self, progress: &Arc<Progress>) -> Worker {
        Worker::start(&self.replay_config, &[], progress.clone())
    }

    /// The committed commits of every partition, or `None` if the lake
    /// could not be read just now.
    fn commits(&self) -> Option<Vec<tributary_lake::CommitRecord>> {
        self.runtime.block_on(async {
            let mut out = Vec::new();
            for tp in self.lake.partitions().await.ok()? {
                out.extend(self.lake.commits(&tp).await.ok()?);
            }
            Some(out)
        })
    }

    /// Source records the commits cover (rows + dead-lettered + skipped).
    fn covered(&self) -> Option<u64> {
        self.commits().map(|cs| {
            cs.iter()
                .map(|c| c.rows + c.dead_lettered + c.skipped)
                .sum()
        })
    }

    /// Dead-letter positions the commits list.
    fn listed_positions(&self) -> BTreeSet<(i32, i64)> {
        let mut out = BTreeSet::new();
        for c in self.commits().expect("reading the commits") {
            if let Some(d) = &c.dead_letter_topic {
                assert_eq!(d.topic, DLQ);
                for o in &d.offsets {
                    assert!(out.insert((d.partition, *o)), "{o} listed twice");
                }
            }
        }
        out
    }

    /// Lets `worker` cover every record, then stops it with SIGTERM.
    fn finish(&self, mut worker: Worker, progress: &Progress) {
        let done = try_wait_for(PHASE_TIMEOUT, || {
            if let Some(status) = worker.exited() {
                panic!(
                    "tributary exited with {status}; log tail:\n{}",
                    progress.tail()
                );
            }
            (self.covered() == Some(TOTAL)).then_some(())
        });
        assert!(
            done.is_some(),
            "timed out: {:?} of {TOTAL} records covered; log tail:\n{}",
            self.covered(),
            progress.tail()
        );
        worker.signal(libc::SIGTERM);
        let status = worker.wait(Duration::from_secs(60));
        assert!(
            status.success(),
            "SIGTERM must exit 0, got {status}; log tail:\n{}",
            progress.tail()
        );
    }

    /// The verdict, from the lake's commits, pyarrow and DuckDB, and an
    /// independent Kafka consumer.
    fn check(&self, produced: &[Produced]) {
        let bad: Vec<&Produced> = produced.iter().filter(|p| p.bad).collect();
        let good = produced.len() - bad.len();
        let commits = self.commits().expect("commits");
        let rows: u64 = commits.iter().map(|c| c.rows).sum();
        let dead: u64 = commits.iter().map(|c| c.dead_lettered).sum();
        let skipped: u64 = commits.iter().map(|c| c.skipped).sum();
        assert_eq!((rows, dead, skipped), (good as u64, bad.len() as u64, 0));
        assert_eq!(rows + dead, TOTAL, "landed + dead-lettered = produced");
        assert!(
            !self.lake_dir.join("_dead_letter").exists(),
            "the Kafka route writes no dead-letter files"
        );

        let read = read_lake(Path::new(&self.lake_dir), "id", None);
        assert_each_once(&read, good as u64, "good records");

        let topic = read_topic(self.kafka.bootstrap(), DLQ);
        let records = topic["records"].as_array().expect("records");
        assert_eq!(
            records.len(),
            bad.len(),
            "every bad record once in the dead-letter topic, nothing else"
        );
        let by_source: BTreeMap<(i32, i64), &Produced> =
            bad.iter().map(|p| ((p.partition, p.offset), *p)).collect();
        let mut seen = BTreeSet::new();
        let mut in_topic = BTreeSet::new();
        for r in records {
            let headers: Headers = r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (h[0].as_str().unwrap().to_string(), unhex(&h[1])))
                .collect();
            let text = |name: &str| {
                let v = headers.iter().find(|(k, _)| k == name).unwrap_or_else(|| {
                    panic!("header {name} missing in {r}");
                });
                String::from_utf8(v.1.clone().expect("a value")).unwrap()
            };
            let source = (
                text("tributary.source.partition").parse::<i32>().unwrap(),
                text("tributary.source.offset").parse::<i64>().unwrap(),
            );
            assert!(
                seen.insert(source),
                "{source:?} twice in the dead-letter topic"
            );
            let original = by_source
                .get(&source)
                .unwrap_or_else(|| panic!("{source:?} is not a bad record: {r}"));
            assert_eq!(unhex(&r["key"]).as_deref(), Some(&original.key[..]));
            assert_eq!(unhex(&r["value"]).as_deref(), Some(&original.value[..]));
            assert_eq!(r["timestamp"], original.timestamp);
            assert_eq!(
                headers[..original.headers.len()],
                original.headers[..],
                "original headers first, in order"
            );
            assert_eq!(text("tributary.source.topic"), TOPIC);
            assert_eq!(
                text("tributary.source.timestamp"),
                original.timestamp.to_string()
            );
            assert_eq!(text("tributary.pipeline"), PIPELINE);
            assert!(text("tributary.writer").starts_with("e2e_"), "{r}");
            assert!(!text("tributary.error.reason").is_empty());
            let partition = r["partition"].as_i64().unwrap() as i32;
            assert_eq!(
                partition,
                source.0 % PARTITIONS,
                "one dead-letter partition per source partition"
            );
            in_topic.insert((partition, r["offset"].as_i64().unwrap()));
        }
        assert_eq!(seen.len(), bad.len());
        assert_eq!(
            self.listed_positions(),
            in_topic,
            "the commits list exactly the dead-letter records in the topic"
        );
    }
}

fn unhex(v: &serde_json::Value) -> Option<Vec<u8>> {
    let s = v.as_str()?;
    Some(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect(),
    )
}

/// Every record of `topic`, read by `scripts/read_topic.py` (confluent-kafka).
fn read_topic(bootstrap: &str, topic: &str) -> serde_json::Value {
    let script = workspace_root().join("scripts/read_topic.py");
    let output = Command::new(python())
        .arg(&script)
        .arg(bootstrap)
        .arg(topic)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "read_topic.py failed ({}): {stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn rejects_go_to_the_topic_exactly_once_with_their_headers() {
    let s = Setup::new();
    let produced = produce(s.kafka.bootstrap());
    assert_eq!(produced.iter().filter(|p| p.bad).count(), 96);
    for partition in 0..PARTITIONS {
        assert!(produced.iter().any(|p| p.bad && p.partition == partition));
    }
    let progress = Arc::new(Progress::default());
    let worker = s.start(None, &progress);
    s.finish(worker, &progress);
    s.check(&produced);
}

#[test]
fn crash_after_dead_letter_produce_does_not_double_rejects() {
    const SPEC: &str = "after_dead_letter_produce:3";
    let s = Setup::new();
    let produced = produce(s.kafka.bootstrap());

    let doomed = Arc::new(Progress::default());
    let worker = s.start(Some(SPEC), &doomed);
    wait_crashed(worker, &doomed, SPEC, PHASE_TIMEOUT);
    // The crashed landing's rejects are in the topic but no commit lists them.
    let topic = read_topic(s.kafka.bootstrap(), DLQ);
    let in_topic = topic["records"].as_array().unwrap().len();
    let listed = s.listed_positions().len();
    assert!(
        in_topic > listed,
        "the crash must leave unlisted dead-letter records ({in_topic} in the topic, {listed} listed)"
    );

    // The replay cuts ranges differently: a range may end before records
    // the crashed attempt wrote, or start without rejects.
    const SCANNED: &str = "Scanned the dead-letter partition for records of an earlier attempt.";
    let log = s.dir.path().join("replay.log");
    let progress = Arc::new(Progress::logging_to(&log));
    let worker = s.start_replay(&progress);
    s.finish(worker, &progress);
    assert!(
        progress.count(SCANNED) > 0,
        "the restarted worker must scan for the crashed attempt's records"
    );
    let scans: Vec<String> = std::fs::read_to_string(&log)
        .expect("the replay's log")
        .lines()
        .filter(|l| l.contains(SCANNED))
        .map(str::to_string)
        .collect();
    eprintln!("the replay's scans:\n{}", scans.join("\n"));
    s.check(&produced);
    eprintln!(
        "crash at {SPEC}: {in_topic} dead-letter records in the topic at the crash, {listed} of them listed; \
         after the restart every one of the {} rejects is there exactly once",
        produced.iter().filter(|p| p.bad).count()
    );
}
