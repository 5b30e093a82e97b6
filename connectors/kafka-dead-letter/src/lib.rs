//! # tributary-kafka-dead-letter
//!
//! The Kafka dead-letter topic route: records a converter or transform
//! rejected are produced to a dead-letter topic with their **original key,
//! value, headers and timestamp**, plus error headers ([`HEADER_REASON`],
//! [`HEADER_SOURCE_TOPIC`], [`HEADER_SOURCE_PARTITION`],
//! [`HEADER_SOURCE_OFFSET`], [`HEADER_SOURCE_TIMESTAMP`],
//! [`HEADER_PIPELINE`], [`HEADER_WRITER`]).
//!
//! [`KafkaDeadLetter`] implements [`DeadLetterRoute`]: the Parquet sink calls
//! it for each range it lands, before the lake commit of the range, and the
//! commit lists the positions it returns. Its guarantees:
//!
//! * **Never lost.** The producer is idempotent with `acks=all`;
//!   [`DeadLetterRoute::deliver`] returns only when every record is
//!   acknowledged, and any failure fails the landing, so the range is read
//!   again and nothing is committed.
//! * **Never doubled by a replay.** One source partition always writes to
//!   one dead-letter partition (chosen by [`DeadLetterPartitioner`], then
//!   kept: the previous commit's partition is reused). Before producing the
//!   rejects of a range that a previous attempt may have written (the first
//!   landing after taking a partition over, or after a failed landing), the
//!   route reads that dead-letter partition from the previous commit's
//!   `scan_from` to its high watermark and reuses every record whose
//!   `tributary.source.*` and `tributary.pipeline` headers put it inside the
//!   range, instead of producing it again. Records of later ranges that the
//!   scan sees keep the next landings scanning (and `scan_from` before
//!   them) until a scan finds none.
//!
//! What it does not prevent: a zombie writer (one whose lake commit will be
//! fenced) can still produce records that no commit lists. docs/LANDING.md
//! ("Kafka dead-letter topic") says how a consumer tells them apart.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tracing::{debug, info, warn};
use tributary_config::{DeadLetterPartitioner, KafkaDeadLetterConfig};
use tributary_core::{
    DeadLetterDelivery, DeadLetterPositions, DeadLetterRequest, DeadLetterRoute, ErrorClass,
    Reject, SinkError, TopicPartition,
};

/// Header with the reason the record was rejected (naming the field when known).
pub const HEADER_REASON: &str = "tributary.error.reason";
/// Header with the source topic of the record.
pub const HEADER_SOURCE_TOPIC: &str = "tributary.source.topic";
/// Header with the source partition (decimal).
pub const HEADER_SOURCE_PARTITION: &str = "tributary.source.partition";
/// Header with the source offset (decimal).
pub const HEADER_SOURCE_OFFSET: &str = "tributary.source.offset";
/// Header with the source timestamp in ms since the epoch (decimal; absent
/// when the source record had none).
pub const HEADER_SOURCE_TIMESTAMP: &str = "tributary.source.timestamp";
/// Header with the pipeline name.
pub const HEADER_PIPELINE: &str = "tributary.pipeline";
/// Header with the writer id of the landing that produced the record.
pub const HEADER_WRITER: &str = "tributary.writer";

/// Errors of the dead-letter route.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeadLetterError {
    /// The configuration cannot be used.
    #[error("dead-letter topic {topic}: {message}")]
    Setup {
        /// The dead-letter topic.
        topic: String,
        /// What is wrong.
        message: String,
    },
    /// Talking to the brokers failed.
    #[error("dead-letter topic {topic} partition {partition}: {operation} failed: {message}")]
    Kafka {
        /// The dead-letter topic.
        topic: String,
        /// Its partition (-1 before one is chosen).
        partition: i32,
        /// What was being done.
        operation: &'static str,
        /// What went wrong.
        message: String,
        /// Retry hint.
        class: ErrorClass,
    },
}

impl DeadLetterError {
    fn class(&self) -> ErrorClass {
        match self {
            DeadLetterError::Setup { .. } => ErrorClass::Permanent,
            DeadLetterError::Kafka { class, .. } => *class,
        }
    }
}

/// Properties the route sets itself (the config crate rejects them in the
/// passthrough map already; this is the last line of defence).
const OWNED: [&str; 6] = [
    "bootstrap.servers",
    "enable.idempotence",
    "acks",
    "message.timeout.ms",
    "transactional.id",
    "group.id",
];

/// The Kafka dead-letter topic route of one pipeline.
pub struct KafkaDeadLetter {
    topic: String,
    pipeline: String,
    partitioner: DeadLetterPartitioner,
    timeout: Duration,
    producer_config: ClientConfig,
    consumer_config: ClientConfig,
    /// Rebuilt after a fatal idempotence error (the old one is unusable).
    producer: Mutex<Arc<FutureProducer>>,
    partitions: OnceLock<i32>,
}

impl std::fmt::Debug for KafkaDeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaDeadLetter")
            .field("topic", &self.topic)
            .field("pipeline", &self.pipeline)
            .field("partitioner", &self.partitioner)
            .finish_non_exhaustive()
    }
}

impl KafkaDeadLetter {
    /// Builds the route. `source_bootstrap` is the source's
    /// `bootstrap_servers`, used when the config names none. Connects
    /// lazily: the topic is first looked up by the first delivery.
    pub fn new(
        cfg: &KafkaDeadLetterConfig,
        source_bootstrap: Option<&str>,
        pipeline: &str,
    ) -> Result<Self, DeadLetterError> {
        let setup = |message: String| DeadLetterError::Setup {
            topic: cfg.topic.clone(),
            message,
        };
        let bootstrap = cfg
            .bootstrap_servers
            .as_deref()
            .or(source_bootstrap)
            .ok_or_else(|| {
                setup("`bootstrap_servers` is required without a Kafka source".into())
            })?;
        if let Some(key) = cfg.librdkafka.keys().find(|k| OWNED.contains(&k.as_str())) {
            return Err(setup(format!(
                "librdkafka property `{key}` is set by Tributary and cannot be passed through"
            )));
        }
        let producer_config = producer_config(cfg, bootstrap, pipeline);
        let consumer_config = consumer_config(cfg, bootstrap, pipeline);
        let producer = producer_config
            .create::<FutureProducer>()
            .map_err(|e| setup(format!("cannot create the producer: {e}")))?;
        Ok(Self {
            topic: cfg.topic.clone(),
            pipeline: pipeline.to_string(),
            partitioner: cfg.partitioner,
            timeout: cfg.timeout.0,
            producer_config,
            consumer_config,
            producer: Mutex::new(Arc::new(producer)),
            partitions: OnceLock::new(),
        })
    }

    fn kafka_error(
        &self,
        partition: i32,
        operation: &'static str,
        message: impl Into<String>,
        class: ErrorClass,
    ) -> DeadLetterError {
        DeadLetterError::Kafka {
            topic: self.topic.clone(),
            partition,
            operation,
            message: message.into(),
            class,
        }
    }

    fn producer(&self) -> Arc<FutureProducer> {
        self.producer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces a producer that hit a fatal error (an idempotent producer
    /// whose sequence broke cannot be used again).
    fn renew_producer_if_fatal(&self, producer: &FutureProducer) {
        let Some((code, reason)) = producer.client().fatal_error() else {
            return;
        };
        warn!(topic = %self.topic, ?code, %reason, "The dead-letter producer hit a fatal error; creating a new one.");
        match self.producer_config.create::<FutureProducer>() {
            Ok(fresh) => {
                *self.producer.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
            }
            Err(e) => {
                warn!(topic = %self.topic, error = %e, "Cannot create a new dead-letter producer.")
            }
        }
    }

    /// Partitions of the dead-letter topic (looked up once per process).
    async fn partition_count(&self) -> Result<i32, DeadLetterError> {
        if let Some(n) = self.partitions.get() {
            return Ok(*n);
        }
        let producer = self.producer();
        let topic = self.topic.clone();
        let timeout = self.timeout;
        let metadata = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map(|m| {
                    m.topics()
                        .first()
                        .map(|t| (t.error(), t.partitions().len() as i32))
                })
        })
        .await
        .map_err(|e| self.kafka_error(-1, "metadata", e.to_string(), ErrorClass::Retryable))?
        .map_err(|e| self.kafka_error(-1, "metadata", e.to_string(), ErrorClass::Retryable))?;
        match metadata {
            Some((None, n)) if n > 0 => Ok(*self.partitions.get_or_init(|| n)),
            Some((Some(code), _)) => Err(self.kafka_error(
                -1,
                "metadata",
                format!(
                    "the topic is not usable ({code:?}); create it before starting the pipeline"
                ),
                ErrorClass::Permanent,
            )),
            _ => Err(self.kafka_error(
                -1,
                "metadata",
                "the topic does not exist; create it before starting the pipeline",
                ErrorClass::Permanent,
            )),
        }
    }

    async fn deliver_inner(
        &self,
        request: DeadLetterRequest,
    ) -> Result<DeadLetterDelivery, DeadLetterError> {
        let count = self.partition_count().await?;
        let previous = request
            .previous
            .as_ref()
            .filter(|p| p.topic == self.topic && p.partition < count);
        let partition = match previous {
            Some(p) => p.partition,
            None => choose_partition(self.partitioner, &request.partition, count),
        };

        let found = if request.may_exist {
            let started = Instant::now();
            let scan = self
                .scan(
                    partition,
                    previous.map(|p| p.scan_from),
                    &request.partition,
                    request.first_offset,
                    request.last_offset,
                )
                .await?;
            info!(
                partition = %request.partition,
                dead_letter_topic = %self.topic,
                dead_letter_partition = partition,
                from = scan.from,
                to = scan.high,
                found = scan.found.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "Scanned the dead-letter partition for records of an earlier attempt."
            );
            Some(scan)
        } else {
            None
        };

        let producer = self.producer();
        let mut offsets = vec![-1i64; request.rejects.len()];
        let mut pending = Vec::new();
        for (i, reject) in request.rejects.iter().enumerate() {
            if let Some(at) = found.as_ref().and_then(|s| s.found.get(&reject.offset)) {
                offsets[i] = *at;
                continue;
            }
            let headers = record_headers(reject, &self.pipeline, &request.writer);
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
                .partition(partition)
                .headers(headers);
            if let Some(key) = &reject.key {
                record = record.key(key.as_ref());
            }
            if let Some(payload) = &reject.payload {
                record = record.payload(payload.as_ref());
            }
            if let Some(ts) = reject.timestamp_ms {
                record = record.timestamp(ts);
            }
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push((i, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // Back-pressure: wait for the oldest outstanding record.
                        record = back;
                        if pending.is_empty() {
                            // The queue is full of other partitions' records.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                        let (j, delivery) = pending.remove(0);
                        offsets[j] = self.delivered(&producer, partition, delivery).await?;
                    }
                    Err((e, _)) => {
                        self.renew_producer_if_fatal(&producer);
                        return Err(self.kafka_error(
                            partition,
                            "produce",
                            e.to_string(),
                            ErrorClass::Retryable,
                        ));
                    }
                }
            }
        }
        let produced = pending.len();
        let producer = &producer;
        let results = futures::future::join_all(
            pending
                .into_iter()
                .map(|(i, d)| async move { (i, self.delivered(producer, partition, d).await) }),
        )
        .await;
        for (i, result) in results {
            offsets[i] = result?;
        }

        // The next scan may start after everything of this landing, but
        // never after a record of this source partition's later ranges.
        let end = offsets.iter().max().map_or(0, |o| o + 1);
        let mut scan_from = match &found {
            Some(scan) => end.max(scan.high),
            None => end.max(previous.map_or(0, |p| p.scan_from)),
        };
        if let Some(first_later) = found.as_ref().and_then(|s| s.first_later) {
            scan_from = scan_from.min(first_later);
        }
        debug!(
            partition = %request.partition,
            dead_letter_topic = %self.topic,
            dead_letter_partition = partition,
            produced,
            reused = offsets.len() - produced,
            scan_from,
            "Dead-letter records are durable."
        );
        Ok(DeadLetterDelivery {
            positions: DeadLetterPositions {
                topic: self.topic.clone(),
                partition,
                offsets,
                scan_from,
            },
            // Records of later ranges seen by the scan: the next ranges
            // must scan again until one finds none.
            settled: found.as_ref().is_none_or(|s| s.first_later.is_none()),
        })
    }

    async fn delivered(
        &self,
        producer: &FutureProducer,
        partition: i32,
        delivery: rdkafka::producer::DeliveryFuture,
    ) -> Result<i64, DeadLetterError> {
        match delivery.await {
            Ok(Ok(d)) if d.partition == partition => Ok(d.offset),
            Ok(Ok(d)) => Err(self.kafka_error(
                partition,
                "produce",
                format!("the record was delivered to partition {}", d.partition),
                ErrorClass::Permanent,
            )),
            Ok(Err((e, _))) => {
                self.renew_producer_if_fatal(producer);
                Err(self.kafka_error(partition, "produce", e.to_string(), ErrorClass::Retryable))
            }
            Err(_) => Err(self.kafka_error(
                partition,
                "produce",
                "the producer dropped the delivery report",
                ErrorClass::Retryable,
            )),
        }
    }

    /// Reads the dead-letter partition from `from` (its low watermark when
    /// `None`) to its high watermark, collecting this pipeline's records of
    /// `source` with offsets in `first..=last`.
    async fn scan(
        &self,
        partition: i32,
        from: Option<i64>,
        source: &TopicPartition,
        first: i64,
        last: i64,
    ) -> Result<Scan, DeadLetterError> {
        let config = self.consumer_config.clone();
        let topic = self.topic.clone();
        let pipeline = self.pipeline.clone();
        let source = source.clone();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || {
            scan_partition(
                &config, &topic, partition, from, &source, &pipeline, first, last, timeout,
            )
        })
        .await
        .map_err(|e| self.kafka_error(partition, "scan", e.to_string(), ErrorClass::Retryable))?
        .map_err(|message| self.kafka_error(partition, "scan", message, ErrorClass::Retryable))
    }
}

#[async_trait]
impl DeadLetterRoute for KafkaDeadLetter {
    async fn deliver(&self, request: DeadLetterRequest) -> Result<DeadLetterDelivery, SinkError> {
        let partition = request.partition.clone();
        let (first_offset, last_offset) = (request.first_offset, request.last_offset);
        self.deliver_inner(request).await.map_err(|e| {
            warn!(partition = %partition, error = %e, "Dead-letter delivery failed; the range is not committed.");
            SinkError::DeadLetter {
                partition,
                topic: self.topic.clone(),
                first_offset,
                last_offset,
                class: e.class(),
                message: e.to_string(),
            }
        })
    }
}

/// What a scan of the dead-letter partition found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    /// Where the scan started.
    from: i64,
    /// The high watermark it read up to.
    high: i64,
    /// Source offset → dead-letter offset of records inside the range (the
    /// first one, should a zombie have written one twice).
    found: BTreeMap<i64, i64>,
    /// Dead-letter offset of the first record of this source partition past
    /// the range (an earlier attempt that covered more).
    first_later: Option<i64>,
}

impl Scan {
    /// Takes one record of the dead-letter partition into account.
    fn observe(
        &mut self,
        dlq_offset: i64,
        position: Option<SourcePosition<'_>>,
        source: &TopicPartition,
        pipeline: &str,
        first: i64,
        last: i64,
    ) {
        let Some(p) = position else { return };
        if p.pipeline != pipeline || p.topic != &*source.topic || p.partition != source.partition {
            return;
        }
        if (first..=last).contains(&p.offset) {
            self.found.entry(p.offset).or_insert(dlq_offset);
        } else if p.offset > last && self.first_later.is_none() {
            self.first_later = Some(dlq_offset);
        }
    }
}

/// The source position a dead-letter record's headers name.
#[derive(Debug, PartialEq, Eq)]
struct SourcePosition<'a> {
    pipeline: &'a str,
    topic: &'a str,
    partition: i32,
    offset: i64,
}

fn source_position<'a>(
    headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> Option<SourcePosition<'a>> {
    let (mut pipeline, mut topic, mut partition, mut offset) = (None, None, None, None);
    for (key, value) in headers {
        let text = || value.and_then(|v| std::str::from_utf8(v).ok());
        match key {
            HEADER_PIPELINE => pipeline = text(),
            HEADER_SOURCE_TOPIC => topic = text(),
            HEADER_SOURCE_PARTITION => partition = text().and_then(|t| t.parse().ok()),
            HEADER_SOURCE_OFFSET => offset = text().and_then(|t| t.parse().ok()),
            _ => {}
        }
    }
    Some(SourcePosition {
        pipeline: pipeline?,
        topic: topic?,
        partition: partition?,
        offset: offset?,
    })
}

#[allow(clippy::too_many_arguments)]
fn scan_partition(
    config: &ClientConfig,
    topic: &str,
    partition: i32,
    from: Option<i64>,
    source: &TopicPartition,
    pipeline: &str,
    first: i64,
    last: i64,
    timeout: Duration,
) -> Result<Scan, String> {
    let deadline = Instant::now() + timeout;
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| format!("cannot create the scan consumer: {e}"))?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, timeout)
        .map_err(|e| format!("cannot read the watermarks: {e}"))?;
    let start = from.map_or(low, |f| f.max(low));
    let mut scan = Scan {
        from: start,
        high,
        ..Scan::default()
    };
    if start >= high {
        return Ok(scan);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(start))
        .map_err(|e| e.to_string())?;
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    let mut next = start;
    while next < high {
        if Instant::now() > deadline {
            return Err(format!(
                "timed out after {timeout:?} at offset {next} of {start}..{high}"
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                next = message.offset() + 1;
                let position = message.headers().and_then(|h| {
                    source_position(h.iter().map(|header| (header.key, header.value)))
                });
                scan.observe(message.offset(), position, source, pipeline, first, last);
            }
            Some(Err(e)) => return Err(format!("reading at offset {next}: {e}")),
            None => {
                // Offsets without a record (transaction markers) end the
                // scan early: the position is what counts.
                if let Ok(positions) = consumer.position() {
                    if let Some(Offset::Offset(at)) = positions
                        .find_partition(topic, partition)
                        .map(|e| e.offset())
                    {
                        next = next.max(at);
                    }
                }
            }
        }
    }
    Ok(scan)
}

/// The dead-letter partition a source partition writes to.
pub fn choose_partition(
    partitioner: DeadLetterPartitioner,
    source: &TopicPartition,
    partitions: i32,
) -> i32 {
    let n = partitions.max(1) as u32;
    match partitioner {
        DeadLetterPartitioner::SourcePartition => (source.partition.max(0) as u32 % n) as i32,
        DeadLetterPartitioner::Hash => {
            let key = format!("{}/{}", source.topic, source.partition);
            (crc32c::crc32c(key.as_bytes()) % n) as i32
        }
    }
}

/// The original headers of the record, then the error headers.
fn record_headers(reject: &Reject, pipeline: &str, writer: &str) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(reject.headers.len() + 7);
    for h in &reject.headers {
        headers = headers.insert(KafkaHeader {
            key: &h.key,
            value: h.value.as_deref(),
        });
    }
    for (key, value) in error_headers(reject, pipeline, writer) {
        headers = headers.insert(KafkaHeader {
            key,
            value: Some(value.as_bytes()),
        });
    }
    headers
}

/// The `tributary.*` headers of a dead-letter record.
fn error_headers(reject: &Reject, pipeline: &str, writer: &str) -> Vec<(&'static str, String)> {
    let mut out = vec![
        (HEADER_REASON, reject.reason.clone()),
        (HEADER_SOURCE_TOPIC, reject.partition.topic.to_string()),
        (
            HEADER_SOURCE_PARTITION,
            reject.partition.partition.to_string(),
        ),
        (HEADER_SOURCE_OFFSET, reject.offset.to_string()),
    ];
    if let Some(ts) = reject.timestamp_ms {
        out.push((HEADER_SOURCE_TIMESTAMP, ts.to_string()));
    }
    out.push((HEADER_PIPELINE, pipeline.to_string()));
    out.push((HEADER_WRITER, writer.to_string()));
    out
}

fn producer_config(cfg: &KafkaDeadLetterConfig, bootstrap: &str, pipeline: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", format!("tributary-{pipeline}-dead-letter"))
        .set("linger.ms", "5");
    for (key, value) in &cfg.librdkafka {
        c.set(key, value);
    }
    c.set("enable.idempotence", "true").set("acks", "all").set(
        "message.timeout.ms",
        cfg.timeout.0.as_millis().max(1).to_string(),
    );
    c
}

/// The scan consumer joins no group and commits nothing: it only assigns
/// the dead-letter partition and reads it (librdkafka wants a `group.id`
/// for that all the same; it is never joined).
fn consumer_config(cfg: &KafkaDeadLetterConfig, bootstrap: &str, pipeline: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set(
        "client.id",
        format!("tributary-{pipeline}-dead-letter-scan"),
    );
    for (key, value) in &cfg.librdkafka {
        if is_consumer_property(key) {
            c.set(key, value);
        }
    }
    c.set("group.id", format!("tributary-{pipeline}-dead-letter-scan"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    c
}

/// Producer-only properties are not given to the scan consumer (librdkafka
/// would warn about each).
fn is_consumer_property(key: &str) -> bool {
    const PRODUCER_ONLY: [&str; 9] = [
        "linger.ms",
        "queue.buffering.max.ms",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
        "batch.num.messages",
        "batch.size",
        "compression.type",
        "compression.codec",
        "max.in.flight.requests.per.connection",
    ];
    !PRODUCER_ONLY.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tributary_config::HumanDuration;
    use tributary_core::Header;

    fn cfg(passthrough: &[(&str, &str)]) -> KafkaDeadLetterConfig {
        KafkaDeadLetterConfig {
            topic: "orders-dlq".into(),
            bootstrap_servers: None,
            partitioner: DeadLetterPartitioner::SourcePartition,
            timeout: HumanDuration::from_secs(7),
            librdkafka: passthrough
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn reject(offset: i64) -> Reject {
        Reject {
            partition: TopicPartition::new("orders", 2),
            offset,
            timestamp_ms: Some(1_700_000_000_123),
            key: Some(Bytes::from_static(b"k")),
            payload: Some(Bytes::from_static(b"{not json")),
            headers: vec![Header {
                key: "trace".into(),
                value: Some(Bytes::from_static(b"abc")),
            }],
            reason: "expected value at line 1 column 2".into(),
        }
    }

    #[test]
    fn producer_is_idempotent_and_waits_for_all_replicas() {
        let c = producer_config(
            &cfg(&[("linger.ms", "20"), ("security.protocol", "SSL")]),
            "k1:9092",
            "p",
        );
        assert_eq!(c.get("bootstrap.servers"), Some("k1:9092"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("message.timeout.ms"), Some("7000"));
        assert_eq!(c.get("linger.ms"), Some("20"));
        assert_eq!(c.get("security.protocol"), Some("SSL"));
        let s = consumer_config(
            &cfg(&[("linger.ms", "20"), ("security.protocol", "SSL")]),
            "k1:9092",
            "p",
        );
        assert_eq!(s.get("linger.ms"), None);
        assert_eq!(s.get("security.protocol"), Some("SSL"));
        assert_eq!(s.get("group.id"), Some("tributary-p-dead-letter-scan"));
        assert_eq!(s.get("enable.auto.commit"), Some("false"));
    }

    #[test]
    fn owned_properties_and_missing_servers_are_refused() {
        let e = KafkaDeadLetter::new(&cfg(&[("acks", "1")]), Some("k:9092"), "p").unwrap_err();
        assert!(e.to_string().contains("`acks`"), "{e}");
        let e = KafkaDeadLetter::new(&cfg(&[]), None, "p").unwrap_err();
        assert!(e.to_string().contains("bootstrap_servers"), "{e}");
    }

    #[test]
    fn error_headers_follow_the_original_ones() {
        let r = reject(41);
        let h = error_headers(&r, "orders-to-lake", "w-1");
        let names: Vec<&str> = h.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                HEADER_REASON,
                HEADER_SOURCE_TOPIC,
                HEADER_SOURCE_PARTITION,
                HEADER_SOURCE_OFFSET,
                HEADER_SOURCE_TIMESTAMP,
                HEADER_PIPELINE,
                HEADER_WRITER
            ]
        );
        assert_eq!(h[3].1, "41");
        assert_eq!(h[4].1, "1700000000123");
        let owned = record_headers(&r, "orders-to-lake", "w-1");
        assert_eq!(owned.count(), 8);
        let first = owned.get(0);
        assert_eq!((first.key, first.value), ("trace", Some(&b"abc"[..])));
        let mut no_ts = r.clone();
        no_ts.timestamp_ms = None;
        assert!(!error_headers(&no_ts, "p", "w")
            .iter()
            .any(|(k, _)| *k == HEADER_SOURCE_TIMESTAMP));
    }

    #[test]
    fn partitions_are_chosen_deterministically() {
        let tp = TopicPartition::new("orders", 7);
        assert_eq!(
            choose_partition(DeadLetterPartitioner::SourcePartition, &tp, 3),
            1
        );
        let h = choose_partition(DeadLetterPartitioner::Hash, &tp, 5);
        assert_eq!(h, choose_partition(DeadLetterPartitioner::Hash, &tp, 5));
        assert!((0..5).contains(&h));
    }

    #[test]
    fn scans_keep_records_of_the_range_and_note_later_ones() {
        let tp = TopicPartition::new("orders", 2);
        let at = |pipeline, topic, partition, offset| {
            Some(SourcePosition {
                pipeline,
                topic,
                partition,
                offset,
            })
        };
        let mut scan = Scan::default();
        scan.observe(100, at("p", "orders", 2, 9), &tp, "p", 10, 19); // before the range
        scan.observe(101, at("p", "orders", 2, 12), &tp, "p", 10, 19);
        scan.observe(102, at("p", "orders", 1, 13), &tp, "p", 10, 19); // other partition
        scan.observe(103, at("q", "orders", 2, 14), &tp, "p", 10, 19); // other pipeline
        scan.observe(104, None, &tp, "p", 10, 19); // not ours at all
        scan.observe(105, at("p", "orders", 2, 25), &tp, "p", 10, 19); // a later range
        scan.observe(106, at("p", "orders", 2, 12), &tp, "p", 10, 19); // a zombie's copy
        scan.observe(107, at("p", "orders", 2, 19), &tp, "p", 10, 19);
        scan.observe(108, at("p", "orders", 2, 30), &tp, "p", 10, 19);
        assert_eq!(scan.found, BTreeMap::from([(12, 101), (19, 107)]));
        assert_eq!(scan.first_later, Some(105));
    }

    #[test]
    fn source_positions_need_every_header() {
        let full = [
            (HEADER_PIPELINE, Some(&b"p"[..])),
            (HEADER_SOURCE_TOPIC, Some(&b"orders"[..])),
            (HEADER_SOURCE_PARTITION, Some(&b"3"[..])),
            (HEADER_SOURCE_OFFSET, Some(&b"77"[..])),
        ];
        assert_eq!(
            source_position(full.iter().copied()),
            Some(SourcePosition {
                pipeline: "p",
                topic: "orders",
                partition: 3,
                offset: 77
            })
        );
        assert_eq!(source_position(full[..3].iter().copied()), None);
        let mut bad = full;
        bad[3].1 = Some(b"x7");
        assert_eq!(source_position(bad.iter().copied()), None);
    }
}
