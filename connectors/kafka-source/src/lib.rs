//! # tributary-kafka-source
//!
//! The Kafka [`Source`] of Tributary: a member of a Kafka consumer group that
//! hands batches of raw records to the runtime, lets the runtime (which reads
//! the lake) decide where each newly assigned partition resumes, and commits
//! group offsets only when the runtime says the records are durable.
//!
//! ## Threads
//!
//! An rdkafka [`BaseConsumer`] is owned by a dedicated OS thread (not a tokio
//! worker) and shared through an `Arc` with the async side:
//!
//! ```text
//!            poll thread                                 async side (runtime task)
//! ┌───────────────────────────────────┐  bounded mpsc   ┌────────────────────────────┐
//! │ batches until max_poll_records or │ ─SourceEvent─▶  │ next()                     │
//! │ poll_timeout; group per partition │ (blocking_send: │                            │
//! │                                   │  backpressure)  │ commit(): spawn_blocking,  │
//! │ rebalance callback (inside poll)  │ ◀─ack oneshot─  │   sync commit on the       │
//! │ blocks on the runtime's answer    │                 │   shared consumer          │
//! │ seeks between polls               │ ◀─std mpsc────  │ seek()                     │
//! └───────────────────────────────────┘                 └────────────────────────────┘
//! ```
//!
//! Messages are taken in batches: every partition is routed, before it is
//! assigned, to a fetch queue of the source's own, and the poll thread takes
//! thousands of messages from it per `rd_kafka_consume_batch_queue` call
//! (see [`fetch`]). The consumer queue still carries rebalances and errors;
//! the poll thread serves it between batches, and anything arriving there
//! ends a batch call's wait at once.
//!
//! A slow pipeline fills the channel and stops the poll thread; librdkafka
//! keeps heartbeating from its own threads, and `max.poll.interval.ms`
//! defaults to five minutes (overridable through the passthrough map).
//!
//! ## Rebalances
//!
//! The eager protocol is the default (`partition.assignment.strategy =
//! range,roundrobin`). The rebalance callback runs on the poll thread:
//!
//! * **Assign**: sends [`SourceEvent::Assigned`] and blocks until the runtime
//!   answers with a [`ResumeAt`] per partition (`Offset(o)` → read from `o`;
//!   `Default` → the group's committed offset, else `start`), then assigns.
//!   No record of the partitions is read before the answer. Without an
//!   answer in time the source fails (`next()` returns the error).
//! * **Revoke**: first sends what was gathered, then
//!   [`SourceEvent::Revoked`], and blocks until the runtime has landed and
//!   committed (it calls [`Source::commit`] from its own task meanwhile; the
//!   commit runs on a blocking thread and works while the poll thread waits
//!   in the callback), then unassigns.
//! * **Lost** (session expired, generation fenced): the partitions are
//!   forgotten at once, their gathered records dropped, and
//!   [`SourceEvent::Lost`] sent without waiting.
//!
//! Records of a partition that is not assigned are never delivered, and
//! [`Source::commit`] refuses partitions this consumer does not hold with
//! [`SourceError::Fenced`] (a broker accepts a commit from any current group
//! member for any partition, so this check is the source's own).
//!
//! [`Source::seek`] is carried out by the poll thread between polls: it drops
//! the partition's gathered records, seeks, and then sends
//! [`SourceEvent::Seeked`] in the same channel, so every record of the
//! partition after that event comes from the new position.
//!
//! While closing, the callback sends nothing and waits for nothing.
//!
//! ## Pause and lag
//!
//! [`Source::set_paused`] pauses (or resumes) every assigned partition in
//! librdkafka at once; the group membership and the assignment stay, and
//! partitions assigned while paused are paused by the rebalance callback
//! before anything is fetched. A watermark thread queries the high
//! watermark of every assigned partition once a second
//! ([`SourceTuning::watermark_interval`]) for [`Source::high_watermarks`],
//! which the runtime turns into lag.

#![warn(missing_docs)]

mod ack;
pub mod bounded;
mod client_config;
mod commit;
mod context;
mod error;
pub mod fetch;
mod poll_loop;
mod watermarks;

use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use tributary_config::KafkaSourceConfig;
use tributary_core::{ErrorClass, Source, SourceError, SourceEvent, TopicPartition};

use crate::context::{Shared, SourceContext};
use crate::error::io_error;
use crate::poll_loop::{Command, Limits};

pub use crate::client_config::client_config;
#[doc(no_inline)]
pub use tributary_core::{ResumeAt, SourceBatch};

/// Knobs that are not part of the user configuration.
#[derive(Clone, Copy, Debug)]
pub struct SourceTuning {
    /// Longest the rebalance callback waits for the runtime to answer an
    /// assignment or acknowledge a revocation before the source fails.
    pub rebalance_ack_timeout: Duration,
    /// Events buffered between the poll thread and the runtime.
    pub channel_capacity: usize,
    /// Longest [`Source::close`] waits for the consumer to leave the group.
    pub close_timeout: Duration,
    /// How often the high watermarks of assigned partitions are refreshed
    /// (for [`Source::high_watermarks`], i.e. lag).
    pub watermark_interval: Duration,
    /// Whether records carry their headers ([`tributary_core::RawRecord::headers`]).
    /// Only rejects use them (the Kafka dead-letter route forwards them);
    /// without them a record costs librdkafka one allocation less, which
    /// it makes even for a message with no headers.
    pub headers: bool,
}

impl Default for SourceTuning {
    fn default() -> Self {
        Self {
            rebalance_ack_timeout: Duration::from_secs(300),
            channel_capacity: 4,
            close_timeout: Duration::from_secs(30),
            watermark_interval: Duration::from_secs(1),
            headers: true,
        }
    }
}

/// A Kafka consumer-group source. See the [crate documentation](crate).
pub struct KafkaSource {
    // Dropped first (fields drop in order): a source dropped without
    // `close` stops its poll thread before anything else goes.
    control: Control,
    consumer: Arc<BaseConsumer<SourceContext>>,
    shared: Arc<Shared>,
    events: mpsc::Receiver<SourceEvent>,
    thread: Option<JoinHandle<()>>,
    watermark_thread: Option<JoinHandle<()>>,
    done: Option<oneshot::Receiver<()>>,
    close_timeout: Duration,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("assignment", &self.shared.assignment())
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Creates the consumer, subscribes to the configured topics (entries
    /// starting with `^` are regular expressions) and starts the poll thread.
    ///
    /// Does no blocking network I/O: the group is joined in the background
    /// and the first event is usually [`SourceEvent::Assigned`].
    pub fn start(cfg: &KafkaSourceConfig, pipeline: &str) -> Result<Self, SourceError> {
        Self::start_with(cfg, pipeline, SourceTuning::default())
    }

    /// [`KafkaSource::start`] with explicit tuning.
    pub fn start_with(
        cfg: &KafkaSourceConfig,
        pipeline: &str,
        tuning: SourceTuning,
    ) -> Result<Self, SourceError> {
        let client_config = client_config::client_config(cfg, pipeline)?;
        let (tx, events) = mpsc::channel(tuning.channel_capacity.max(1));
        let shared = Arc::new(Shared::new(tx, tuning.rebalance_ack_timeout));
        shared.pending().headers = tuning.headers;
        let mut consumer: BaseConsumer<SourceContext> = client_config
            .create_with_context(SourceContext {
                shared: shared.clone(),
            })
            .map_err(|e| SourceError::Setup {
                message: format!("creating the Kafka consumer failed: {e}"),
            })?;
        let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| SourceError::Setup {
                message: format!("subscribing to {topics:?} failed: {e}"),
            })?;
        let waker = fetch::wake_on(&mut consumer);
        let consumer = Arc::new(consumer);
        let (commands, command_rx) = std_mpsc::channel();
        let (done_tx, done) = oneshot::channel();
        let limits = Limits {
            max_records: cfg.max_poll_records,
            poll_timeout: cfg.poll_timeout.0,
        };
        let thread = poll_loop::spawn(
            format!("kafka-{pipeline}"),
            consumer.clone(),
            shared.clone(),
            command_rx,
            limits,
            waker,
            done_tx,
        )
        .map_err(|e| SourceError::Setup {
            message: format!("starting the poll thread failed: {e}"),
        })?;
        let (watermark_stop, watermark_rx) = std_mpsc::channel();
        let watermark_thread = watermarks::spawn(
            format!("kafka-wm-{pipeline}"),
            consumer.clone(),
            shared.clone(),
            watermark_rx,
            tuning.watermark_interval,
        )
        .map_err(|e| SourceError::Setup {
            message: format!("starting the watermark thread failed: {e}"),
        })?;
        info!(pipeline, group_id = %cfg.group_id, topics = ?cfg.topics, "Kafka source started.");
        let shared_for_control = shared.clone();
        Ok(Self {
            consumer,
            shared,
            events,
            control: Control {
                shared: shared_for_control,
                commands,
                watermark_stop,
            },
            thread: Some(thread),
            watermark_thread: Some(watermark_thread),
            done: Some(done),
            close_timeout: tuning.close_timeout,
        })
    }

    /// Partitions currently assigned to this consumer (answered and not
    /// revoked or lost), sorted.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.shared.assignment()
    }

    /// Low and high watermarks of a partition (the high one is the offset the
    /// next produced record gets). Blocks for up to `timeout`: call it from
    /// `spawn_blocking` or a synchronous context.
    pub fn watermarks(
        &self,
        partition: &TopicPartition,
        timeout: Duration,
    ) -> Result<(i64, i64), SourceError> {
        self.consumer
            .fetch_watermarks(&partition.topic, partition.partition, timeout)
            .map_err(|e| io_error("fetch watermarks", e))
    }

    /// The group's committed offsets (next offset to read) for `partitions`;
    /// `None` where the group has none. Blocks for up to `timeout`.
    pub fn committed_offsets(
        &self,
        partitions: &[TopicPartition],
        timeout: Duration,
    ) -> Result<Vec<(TopicPartition, Option<i64>)>, SourceError> {
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for tp in partitions {
            tpl.add_partition(&tp.topic, tp.partition);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, timeout)
            .map_err(|e| io_error("fetch committed offsets", e))?;
        let result = committed
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                (TopicPartition::new(e.topic(), e.partition()), offset)
            })
            .collect();
        // A list the consumer returned must not outlive it.
        drop(committed);
        Ok(result)
    }
}

/// Tells the poll thread to stop, at `close` or when the source is dropped
/// without it.
struct Control {
    shared: Arc<Shared>,
    commands: std_mpsc::Sender<Command>,
    watermark_stop: std_mpsc::Sender<()>,
}

impl Control {
    fn stop(&self) {
        self.shared.start_closing();
        let _ = self.commands.send(Command::Stop);
        let _ = self.watermark_stop.send(());
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop();
    }
}

#[async_trait]
impl Source for KafkaSource {
    async fn next(&mut self) -> Result<SourceEvent, SourceError> {
        match self.events.recv().await {
            Some(event) => Ok(event),
            None => Err(self
                .shared
                .failure()
                .map_or(SourceError::Closed, |f| f.to_source_error())),
        }
    }

    /// Commits the offsets of partitions this consumer holds, synchronously
    /// on a blocking thread. Offsets of partitions it does not hold (revoked,
    /// lost, never assigned) are not sent; they are reported as
    /// [`SourceError::Fenced`] after the others are committed.
    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<(), SourceError> {
        let (owned, foreign) = self.shared.split_owned(offsets);
        if !owned.is_empty() {
            let consumer = self.consumer.clone();
            tokio::task::spawn_blocking(move || commit::commit_sync(&consumer, &owned))
                .await
                .map_err(|e| SourceError::Io {
                    operation: "commit".into(),
                    source: Box::new(e),
                    class: ErrorClass::Permanent,
                })??;
        }
        if !foreign.is_empty() {
            return Err(SourceError::Fenced {
                partitions: foreign,
                reason: "not assigned to this consumer (revoked or lost)".into(),
            });
        }
        Ok(())
    }

    async fn seek(&mut self, partition: &TopicPartition, offset: i64) -> Result<(), SourceError> {
        if offset < 0 {
            return Err(SourceError::Io {
                operation: format!("seek {partition}"),
                source: format!("offset {offset} is negative").into(),
                class: ErrorClass::Permanent,
            });
        }
        self.control
            .commands
            .send(Command::Seek {
                partition: partition.clone(),
                offset,
                epoch: self.shared.epoch(),
            })
            .map_err(|_| {
                self.shared
                    .failure()
                    .map_or(SourceError::Closed, |f| f.to_source_error())
            })
    }

    /// Pauses or resumes every assigned partition at once (librdkafka's
    /// pause is thread-safe and drops what was prefetched for a paused
    /// partition; on resume it fetches again from the next undelivered
    /// offset, so nothing is skipped). Partitions assigned later while paused
    /// are paused by the rebalance callback. Records gathered before the call
    /// may still be delivered.
    async fn set_paused(&mut self, paused: bool) -> Result<bool, SourceError> {
        if let Some(failure) = self.shared.failure() {
            return Err(failure.to_source_error());
        }
        self.shared.set_paused(paused);
        let partitions = self.shared.assignment();
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for tp in &partitions {
            tpl.add_partition(&tp.topic, tp.partition);
        }
        let consumer = self.consumer.clone();
        let result = tokio::task::spawn_blocking(move || {
            let r = if paused {
                consumer.pause(&tpl)
            } else {
                consumer.resume(&tpl)
            };
            // A list must not outlive its consumer's use of it.
            drop(tpl);
            r
        })
        .await
        .map_err(|e| SourceError::Io {
            operation: "pause".into(),
            source: Box::new(e),
            class: ErrorClass::Permanent,
        })?;
        result.map_err(|e| io_error(if paused { "pause" } else { "resume" }, e))?;
        info!(
            paused,
            partitions = partitions.len(),
            "Fetching paused or resumed."
        );
        Ok(true)
    }

    fn high_watermarks(&self) -> Vec<(TopicPartition, i64)> {
        self.shared.high_watermarks()
    }

    async fn close(self: Box<Self>) {
        let started = Instant::now();
        self.control.stop();
        let KafkaSource {
            consumer,
            events,
            thread,
            watermark_thread,
            done,
            close_timeout,
            ..
        } = *self;
        // The watermark thread holds a reference to the consumer: let it end
        // first (it was told to stop; a query in flight takes at most a second).
        if let Some(t) = watermark_thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // Unblocks a poll thread waiting for room in the channel, and drops
        // unanswered acks.
        drop(events);
        // The poll thread (or, if it already ended, this helper thread) drops
        // the last reference: librdkafka then revokes, commits nothing, and
        // leaves the group. That can block, so not on a runtime worker, and
        // not on the blocking pool either (a runtime waits for that at
        // shutdown): a detached thread does not hold the process up.
        let (dropped_tx, dropped) = oneshot::channel::<()>();
        let dropper = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || {
                drop(consumer);
                let _ = dropped_tx.send(());
            });
        if let Err(e) = &dropper {
            warn!(error = %e, "Could not start a thread to close the consumer.");
        }
        let wait = async {
            if let Some(done) = done {
                let _ = done.await;
            }
            let _ = dropped.await;
        };
        match tokio::time::timeout(close_timeout, wait).await {
            Ok(()) => {
                if let Some(t) = thread {
                    let _ = t.join();
                }
                info!(elapsed = ?started.elapsed(), "Kafka source closed.");
            }
            Err(_) => {
                warn!(timeout = ?close_timeout, "Kafka source did not close in time; leaving its thread behind.");
            }
        }
    }
}
