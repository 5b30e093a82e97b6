//! Producing deterministic test records into a Kafka-protocol broker.
//!
//! Shared by [`crate::MockKafka::produce`] (in-process) and the
//! `tributary-mock-kafka` binary (`--produce`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use tributary_datagen_source::{order_id, order_json, small_json};

/// Which payload generator the produced records use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordKind {
    /// Orders from `tributary_datagen_source::order_json` (~230 bytes, `order_id` = seq, seed 0 unless set).
    #[default]
    Orders,
    /// Small records from `tributary_datagen_source::small_json` (~78 bytes, `id` = seq).
    Small,
}

impl RecordKind {
    /// Appends the payload of record `seq` to `out`.
    pub fn payload(self, seq: u64, seed: u64, out: &mut Vec<u8>) {
        match self {
            RecordKind::Orders => order_json(seq, seed, out),
            RecordKind::Small => small_json(seq, out),
        }
    }
}

/// What to produce.
#[derive(Clone, Debug)]
pub struct ProduceSpec {
    /// Target topic; it must exist.
    pub topic: String,
    /// Number of records.
    pub count: u64,
    /// Payload generator.
    pub kind: RecordKind,
    /// Sequence number of the first record (ids are `first_seq..first_seq + count`).
    pub first_seq: u64,
    /// Seed for [`RecordKind::Orders`].
    pub seed: u64,
    /// Records per second; as fast as possible when `None`.
    pub rate: Option<u64>,
}

impl ProduceSpec {
    /// `count` records of `kind` into `topic`, ids from 0, seed 0, no rate limit.
    pub fn new(topic: impl Into<String>, count: u64, kind: RecordKind) -> Self {
        Self {
            topic: topic.into(),
            count,
            kind,
            first_seq: 0,
            seed: 0,
            rate: None,
        }
    }
}

/// Progress of a production run, shared with whoever watches it.
#[derive(Debug, Default)]
pub struct ProduceProgress {
    /// Set to stop producing early; [`produce`] then returns what was acknowledged.
    pub stop: AtomicBool,
    /// Records acknowledged by the broker so far.
    pub acked: AtomicU64,
}

struct DeliveryCounter {
    progress: Arc<ProduceProgress>,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.progress.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

/// Produces `spec.count` records to `bootstrap` and waits until the broker
/// has acknowledged every one. Returns the number acknowledged.
///
/// Record `seq` goes to partition `seq % partitions` (deterministic: the
/// topic's partition count is read from the broker's metadata), keyed by its
/// decimal id, with the payload of `spec.kind`. The producer uses
/// `compression.type=lz4`, `linger.ms=5`, `acks=all` and idempotence: a
/// retry after a lost response (a broker taken down, an injected error) must
/// not write a record twice, since the tests count every id exactly once in
/// the lake. With `spec.rate`
/// the records are spread evenly over time, so that a consumer can drain them
/// as they arrive (the mock broker keeps only 5 MiB per partition).
pub fn produce(
    bootstrap: &str,
    spec: &ProduceSpec,
    progress: Arc<ProduceProgress>,
) -> anyhow::Result<u64> {
    let context = DeliveryCounter {
        progress: progress.clone(),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
    };
    let producer: BaseProducer<DeliveryCounter> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.messages", "200000")
        .set("message.timeout.ms", "60000")
        .create_with_context(context)
        .context("creating the Kafka producer")?;

    let metadata = producer
        .client()
        .fetch_metadata(Some(&spec.topic), Duration::from_secs(30))
        .with_context(|| format!("fetching metadata of topic {:?}", spec.topic))?;
    let partitions = metadata
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().len()) as u64;
    if partitions == 0 {
        bail!("topic {:?} does not exist on {bootstrap}", spec.topic);
    }

    let started = Instant::now();
    let mut payload = Vec::with_capacity(512);
    let mut key = String::with_capacity(20);
    for i in 0..spec.count {
        if progress.stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(rate) = spec.rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            while let Some(wait) = due.checked_duration_since(Instant::now()) {
                // Serves delivery reports while pacing.
                producer.poll(wait);
            }
        }
        let seq = spec.first_seq + i;
        payload.clear();
        spec.kind.payload(seq, spec.seed, &mut payload);
        key.clear();
        write!(key, "{}", order_id(seq)).expect("writing to a String");
        let mut record = BaseRecord::to(&spec.topic)
            .partition((seq % partitions) as i32)
            .key(key.as_str())
            .payload(payload.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => return Err(error).context("enqueueing a record"),
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .context("waiting for the broker to acknowledge every record")?;

    let context = producer.context();
    let failed = context.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = context
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        bail!("{failed} records were not delivered; first error: {first}");
    }
    Ok(progress.acked.load(Ordering::Relaxed))
}
