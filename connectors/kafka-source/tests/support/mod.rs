//! Helpers for the tests against librdkafka's in-process mock cluster.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::ClientConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tributary_config::{HumanDuration, KafkaSourceConfig, StartPosition};
use tributary_core::{ResumeAt, Source, SourceError, SourceEvent, TopicPartition};
use tributary_kafka_source::{KafkaSource, SourceTuning};

/// Generous bound for anything the tests wait for (rebalances on the mock
/// take a few seconds: 3 s initial join delay, session timeout − 1 s to
/// wait for members to rejoin).
pub const WAIT: Duration = Duration::from_secs(60);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A one-broker mock cluster and a producer for it.
pub struct Kafka {
    pub mock: MockCluster<'static, DefaultProducerContext>,
    producer: BaseProducer,
}

impl Kafka {
    pub fn new() -> Self {
        init_tracing();
        let mock = MockCluster::new(1).expect("mock cluster");
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        Self { mock, producer }
    }

    pub fn bootstrap(&self) -> String {
        self.mock.bootstrap_servers()
    }

    pub fn topic(&self, name: &str, partitions: i32) {
        self.mock
            .create_topic(name, partitions, 1)
            .expect("create topic");
    }

    /// Produces offsets `range` (the partition must hold `range.start`
    /// records already) with key `k<i>`, payload `<topic>/<p>/<i>` and
    /// timestamp `TS0 + i`.
    pub fn produce(&self, topic: &str, partition: i32, range: std::ops::Range<i64>) {
        for i in range {
            let key = format!("k{i}");
            let payload = payload(topic, partition, i);
            let mut record = BaseRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload(&payload)
                .timestamp(TS0 + i);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        self.producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        self.producer.flush(Duration::from_secs(30)).expect("flush");
    }

    /// Source config with settings that make the mock's rebalances quick.
    pub fn config(&self, topics: &[&str], group: &str) -> KafkaSourceConfig {
        KafkaSourceConfig {
            bootstrap_servers: self.bootstrap(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            group_id: group.to_string(),
            start: StartPosition::Earliest,
            max_poll_records: 500,
            poll_timeout: HumanDuration(Duration::from_millis(50)),
            librdkafka: [
                ("session.timeout.ms", "6000"),
                ("heartbeat.interval.ms", "300"),
                ("topic.metadata.refresh.interval.ms", "500"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        }
    }

    pub fn start(&self, topics: &[&str], group: &str) -> KafkaSource {
        KafkaSource::start(&self.config(topics, group), "test").expect("start")
    }

    pub fn start_with(&self, cfg: &KafkaSourceConfig, tuning: SourceTuning) -> KafkaSource {
        KafkaSource::start_with(cfg, "test", tuning).expect("start")
    }
}

pub const TS0: i64 = 1_700_000_000_000;

pub fn payload(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}/{partition}/{offset}")
}

pub fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// The next event, or a panic after `WAIT`.
pub async fn next_event(source: &mut KafkaSource) -> SourceEvent {
    match tokio::time::timeout(WAIT, source.next()).await {
        Ok(Ok(event)) => event,
        Ok(Err(e)) => panic!("source failed: {e}"),
        Err(_) => panic!("no event within {WAIT:?}"),
    }
}

/// Waits for an assignment and answers it with `answer(partitions)`.
pub async fn expect_assigned(
    source: &mut KafkaSource,
    answer: impl FnOnce(&[TopicPartition]) -> Vec<(TopicPartition, ResumeAt)>,
) -> Vec<TopicPartition> {
    loop {
        match next_event(source).await {
            SourceEvent::Assigned { partitions, ack } => {
                ack.send(answer(&partitions)).expect("ack");
                return partitions;
            }
            SourceEvent::Records(b) if b.is_empty() => {}
            other => panic!("expected Assigned, got {other:?}"),
        }
    }
}

pub fn all_default(partitions: &[TopicPartition]) -> Vec<(TopicPartition, ResumeAt)> {
    partitions
        .iter()
        .map(|p| (p.clone(), ResumeAt::Default))
        .collect()
}

/// Polls `cond` every 20 ms until it holds; panics after `WAIT`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `f` with a timeout, panicking when it expires.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// What a driven source saw, in order.
#[derive(Debug, Clone)]
pub enum Seen {
    Records(TopicPartition, Vec<i64>),
    Assigned(Vec<TopicPartition>),
    Revoked {
        partitions: Vec<TopicPartition>,
        /// Result of the commit made while handling the revocation.
        commit: Result<(), String>,
        /// How long that commit took.
        commit_took: Duration,
    },
    Lost(Vec<TopicPartition>),
    Seeked(TopicPartition, i64),
}

/// Next offset per partition that "landed" (a stand-in for the lake,
/// shared by the members of a group).
pub type Lake = Arc<Mutex<BTreeMap<TopicPartition, i64>>>;

/// A source driven by a task that behaves like the runtime: it lands every
/// record at once (advancing the lake), answers assignments from the lake,
/// and on revocation commits the lake's offsets before acknowledging.
pub struct Driven {
    pub name: &'static str,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<(KafkaSource, Option<SourceError>)>,
}

impl Driven {
    pub fn spawn(name: &'static str, mut source: KafkaSource, lake: Lake) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = watch::channel(false);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = stopped.changed() => return (source, None),
                    event = source.next() => event,
                };
                let event = match event {
                    Ok(e) => e,
                    Err(e) => return (source, Some(e)),
                };
                match event {
                    SourceEvent::Records(batches) => {
                        for b in batches {
                            let offsets: Vec<i64> = b.records.iter().map(|r| r.offset).collect();
                            for r in &b.records {
                                assert_eq!(
                                    r.payload.as_deref(),
                                    Some(
                                        payload(
                                            &b.partition.topic,
                                            b.partition.partition,
                                            r.offset
                                        )
                                        .as_bytes()
                                    )
                                );
                            }
                            if let Some(last) = b.last_offset() {
                                lake.lock().unwrap().insert(b.partition.clone(), last + 1);
                            }
                            log.lock()
                                .unwrap()
                                .push(Seen::Records(b.partition, offsets));
                        }
                    }
                    SourceEvent::Assigned { partitions, ack } => {
                        let answer = {
                            let lake = lake.lock().unwrap();
                            partitions
                                .iter()
                                .map(|p| {
                                    let at = lake
                                        .get(p)
                                        .map_or(ResumeAt::Default, |o| ResumeAt::Offset(*o));
                                    (p.clone(), at)
                                })
                                .collect()
                        };
                        log.lock().unwrap().push(Seen::Assigned(partitions));
                        ack.send(answer).expect("assign ack");
                    }
                    SourceEvent::Revoked { partitions, ack } => {
                        let offsets: Vec<(TopicPartition, i64)> = {
                            let lake = lake.lock().unwrap();
                            partitions
                                .iter()
                                .filter_map(|p| lake.get(p).map(|o| (p.clone(), *o)))
                                .collect()
                        };
                        let started = Instant::now();
                        let commit =
                            tokio::time::timeout(Duration::from_secs(20), source.commit(&offsets))
                                .await
                                .map_err(|_| "commit timed out".to_string())
                                .and_then(|r| r.map_err(|e| format!("{e:?}")));
                        log.lock().unwrap().push(Seen::Revoked {
                            partitions,
                            commit,
                            commit_took: started.elapsed(),
                        });
                        let _ = ack.send(());
                    }
                    SourceEvent::Lost(partitions) => {
                        log.lock().unwrap().push(Seen::Lost(partitions))
                    }
                    SourceEvent::Seeked { partition, offset } => {
                        log.lock().unwrap().push(Seen::Seeked(partition, offset))
                    }
                    SourceEvent::End => {}
                }
            }
        });
        Self {
            name,
            seen,
            stop,
            task,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Partitions held according to the events seen (eager protocol).
    pub fn holds(&self) -> BTreeSet<TopicPartition> {
        let mut held = BTreeSet::new();
        for s in self.seen() {
            match s {
                Seen::Assigned(p) => held.extend(p),
                Seen::Revoked { partitions, .. } | Seen::Lost(partitions) => {
                    for p in partitions {
                        held.remove(&p);
                    }
                }
                _ => {}
            }
        }
        held
    }

    /// Offsets delivered per partition, in delivery order.
    pub fn delivered(&self) -> BTreeMap<TopicPartition, Vec<i64>> {
        let mut out: BTreeMap<TopicPartition, Vec<i64>> = BTreeMap::new();
        for s in self.seen() {
            if let Seen::Records(p, offsets) = s {
                out.entry(p).or_default().extend(offsets);
            }
        }
        out
    }

    /// Stops driving and hands the source back.
    pub async fn stop(self) -> KafkaSource {
        let _ = self.stop.send(true);
        let (source, error) = within("driver stop", self.task).await.expect("driver task");
        if let Some(e) = error {
            panic!("{}: source failed: {e}", self.name);
        }
        source
    }
}
