//! State shared by the poll thread, the rebalance callback and the async
//! side, and the rdkafka [`ConsumerContext`] that handles rebalances.

use std::collections::{HashMap, HashSet};
use std::mem;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};
use tributary_core::{RawRecord, ResumeAt, SourceBatch, SourceEvent, TopicPartition};

use crate::ack::{self, Answer};
use crate::error::PollFailure;
use crate::fetch::{FetchQueue, Polled};

/// Locks a mutex, ignoring poisoning: every critical section here leaves
/// the data consistent, and a panicking poll thread is reported separately.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records polled but not yet handed to the runtime, grouped per partition.
///
/// Keys and payloads are copied out of librdkafka's buffers into one arena
/// per batch, and the records' [`Bytes`] are slices of it: one allocation
/// per batch instead of two per record.
#[derive(Default)]
pub(crate) struct Gather {
    batches: Vec<Pending>,
    /// Index of the batch the previous record went to (records come in
    /// runs of one partition, so this is usually the right one).
    last: usize,
    records: usize,
    /// Interned topic names, so that a record costs no allocation for them.
    topics: HashSet<Arc<str>>,
    /// Keys and payloads of the gathered records, back to back.
    arena: Vec<u8>,
    /// Size of the previous batch's arena: the next one starts that large.
    arena_hint: usize,
}

/// One partition's records, their keys and payloads still spans of the arena.
struct Pending {
    batch: SourceBatch,
    /// Per record: where its key and payload are in the arena.
    spans: Vec<Spans>,
}

/// Where a record's key and payload are in the arena (`None`: null).
type Spans = (Option<Range<usize>>, Option<Range<usize>>);

impl Gather {
    /// Copies a polled message into the batch of its partition.
    pub(crate) fn push(&mut self, msg: &impl Polled) {
        let topic = msg.topic();
        let partition = msg.partition();
        let hit = |p: &Pending| {
            p.batch.partition.partition == partition && &*p.batch.partition.topic == topic
        };
        let index = match self.batches.get(self.last) {
            Some(p) if hit(p) => self.last,
            _ => match self.batches.iter().position(hit) {
                Some(i) => i,
                None => {
                    let topic = match self.topics.get(topic) {
                        Some(t) => t.clone(),
                        None => {
                            let t: Arc<str> = Arc::from(topic);
                            self.topics.insert(t.clone());
                            t
                        }
                    };
                    self.batches.push(Pending {
                        batch: SourceBatch {
                            partition: TopicPartition { topic, partition },
                            records: Vec::new(),
                        },
                        spans: Vec::new(),
                    });
                    self.batches.len() - 1
                }
            },
        };
        self.last = index;
        if self.arena.capacity() == 0 {
            self.arena.reserve(self.arena_hint);
        }
        let arena = &mut self.arena;
        let mut copy = |bytes: Option<&[u8]>| {
            bytes.map(|b| {
                let start = arena.len();
                arena.extend_from_slice(b);
                start..arena.len()
            })
        };
        let spans = (copy(msg.key()), copy(msg.payload()));
        let pending = &mut self.batches[index];
        debug_assert!(pending.batch.last_offset().is_none_or(|o| o < msg.offset()));
        pending.batch.records.push(RawRecord {
            offset: msg.offset(),
            timestamp_ms: msg.timestamp_ms(),
            key: None,
            payload: None,
            headers: msg.headers(),
        });
        pending.spans.push(spans);
        self.records += 1;
    }

    /// Number of records gathered.
    pub(crate) fn len(&self) -> usize {
        self.records
    }

    /// Takes all gathered batches.
    fn take(&mut self) -> Vec<SourceBatch> {
        self.records = 0;
        self.last = 0;
        self.arena_hint = self.arena.len();
        let arena = Bytes::from(mem::take(&mut self.arena));
        mem::take(&mut self.batches)
            .into_iter()
            .map(|Pending { mut batch, spans }| {
                for (record, (key, payload)) in batch.records.iter_mut().zip(spans) {
                    record.key = key.map(|r| arena.slice(r));
                    record.payload = payload.map(|r| arena.slice(r));
                }
                batch
            })
            .collect()
    }

    /// Drops the gathered records of partitions matching `pred`.
    fn discard(&mut self, pred: impl Fn(&TopicPartition) -> bool) {
        self.batches.retain(|p| !pred(&p.batch.partition));
        self.records = self.batches.iter().map(|p| p.batch.records.len()).sum();
        self.last = 0;
    }
}

/// State shared by the poll thread (and the rebalance callback it runs)
/// and the async side of the source.
pub(crate) struct Shared {
    /// Where events go. Taken (closing the channel) when the poll thread exits.
    events: Mutex<Option<mpsc::Sender<SourceEvent>>>,
    /// Partitions this consumer currently reads and may commit.
    assigned: Mutex<HashSet<TopicPartition>>,
    /// Records polled but not yet sent.
    pending: Mutex<Gather>,
    /// Set by `close`: the rebalance callback then sends nothing and waits for nothing.
    closing: AtomicBool,
    /// Bumped by every rebalance before its event is sent, so that a seek
    /// requested before the runtime saw the rebalance can be recognised as stale.
    epoch: AtomicU64,
    /// Why the poll thread stopped, if it failed.
    failure: Mutex<Option<PollFailure>>,
    /// Longest the rebalance callback waits for the runtime's answer.
    ack_timeout: Duration,
    /// Paused by the runtime: assigned partitions are not fetched, including
    /// partitions assigned while paused.
    paused: AtomicBool,
    /// Latest high watermark of each assigned partition (watermark thread).
    high_watermarks: Mutex<HashMap<TopicPartition, i64>>,
    /// The queue assigned partitions deliver to, while the poll thread runs
    /// (it holds the consumer: the poll thread takes it out when it ends).
    fetch: Mutex<Option<FetchQueue<SourceContext>>>,
}

impl Shared {
    pub(crate) fn new(events: mpsc::Sender<SourceEvent>, ack_timeout: Duration) -> Self {
        Self {
            events: Mutex::new(Some(events)),
            assigned: Mutex::new(HashSet::new()),
            pending: Mutex::new(Gather::default()),
            closing: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            failure: Mutex::new(None),
            ack_timeout,
            paused: AtomicBool::new(false),
            high_watermarks: Mutex::new(HashMap::new()),
            fetch: Mutex::new(None),
        }
    }

    /// The fetch queue slot (empty before the poll thread starts and after
    /// it ends).
    pub(crate) fn fetch(&self) -> MutexGuard<'_, Option<FetchQueue<SourceContext>>> {
        lock(&self.fetch)
    }

    /// Whether fetching is paused.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Sets the paused flag (the poll thread applies it to the consumer).
    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
    }

    /// Replaces the high watermarks with those of the current assignment.
    pub(crate) fn set_high_watermarks(&self, marks: HashMap<TopicPartition, i64>) {
        *lock(&self.high_watermarks) = marks;
    }

    /// Latest high watermarks of partitions still assigned, sorted.
    pub(crate) fn high_watermarks(&self) -> Vec<(TopicPartition, i64)> {
        let assigned = lock(&self.assigned).clone();
        let mut v: Vec<_> = lock(&self.high_watermarks)
            .iter()
            .filter(|(tp, _)| assigned.contains(*tp))
            .map(|(tp, o)| (tp.clone(), *o))
            .collect();
        v.sort();
        v
    }

    /// Sends an event, blocking while the channel is full (backpressure).
    /// Returns false when nobody receives any more.
    pub(crate) fn send(&self, event: SourceEvent) -> bool {
        // Clone the sender so that no lock is held while blocked.
        let Some(tx) = lock(&self.events).clone() else {
            return false;
        };
        tx.blocking_send(event).is_ok()
    }

    /// Closes the event channel (after the events already in it are received).
    pub(crate) fn close_channel(&self) {
        lock(&self.events).take();
    }

    /// The batch under construction.
    pub(crate) fn pending(&self) -> MutexGuard<'_, Gather> {
        lock(&self.pending)
    }

    /// Sends the gathered records of assigned partitions as one
    /// [`SourceEvent::Records`]. Returns false when nobody receives any more.
    pub(crate) fn flush(&self) -> bool {
        let mut batches = self.pending().take();
        if batches.is_empty() {
            return true;
        }
        {
            let assigned = lock(&self.assigned);
            batches.retain(|b| {
                let keep = assigned.contains(&b.partition);
                if !keep {
                    warn!(partition = %b.partition, records = b.records.len(), "Dropped records of a partition this consumer no longer holds.");
                }
                keep
            });
        }
        batches.is_empty() || self.send(SourceEvent::Records(batches))
    }

    /// Drops gathered records of one partition (a seek makes them stale).
    pub(crate) fn discard_pending(&self, partition: &TopicPartition) {
        self.pending().discard(|p| p == partition);
    }

    pub(crate) fn is_assigned(&self, partition: &TopicPartition) -> bool {
        lock(&self.assigned).contains(partition)
    }

    /// Splits commit offsets into those of assigned partitions and the others.
    pub(crate) fn split_owned(
        &self,
        offsets: &[(TopicPartition, i64)],
    ) -> (Vec<(TopicPartition, i64)>, Vec<TopicPartition>) {
        let assigned = lock(&self.assigned);
        let mut owned = Vec::with_capacity(offsets.len());
        let mut foreign = Vec::new();
        for (tp, offset) in offsets {
            if assigned.contains(tp) {
                owned.push((tp.clone(), *offset));
            } else {
                foreign.push(tp.clone());
            }
        }
        (owned, foreign)
    }

    /// Partitions currently assigned, sorted.
    pub(crate) fn assignment(&self) -> Vec<TopicPartition> {
        let mut v: Vec<_> = lock(&self.assigned).iter().cloned().collect();
        v.sort();
        v
    }

    fn forget(&self, partitions: &[TopicPartition]) {
        {
            let mut assigned = lock(&self.assigned);
            for p in partitions {
                assigned.remove(p);
            }
        }
        if let Some(fetch) = self.fetch().as_mut() {
            fetch.forget(partitions);
        }
    }

    /// The current rebalance epoch.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn next_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn start_closing(&self) {
        self.closing.store(true, Ordering::Release);
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Records the first failure; the poll thread stops at its next check.
    pub(crate) fn fail(&self, failure: PollFailure) {
        error!(error = %failure, "Kafka source failed.");
        let mut slot = lock(&self.failure);
        if slot.is_none() {
            *slot = Some(failure);
        }
    }

    pub(crate) fn failure(&self) -> Option<PollFailure> {
        lock(&self.failure).clone()
    }

    /// Whether the poll thread must stop (closing or failed).
    pub(crate) fn stopped(&self) -> bool {
        self.is_closing() || lock(&self.failure).is_some()
    }
}

/// The rdkafka context of the consumer: routes librdkafka's logs to
/// `tracing` and turns rebalances into [`SourceEvent`]s.
pub(crate) struct SourceContext {
    pub(crate) shared: Arc<Shared>,
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                error!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => {
                warn!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => debug!(target: "librdkafka", facility = fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka retries by itself; fatal errors surface through poll.
        warn!(target: "librdkafka", error = %error, reason, "librdkafka reported an error.");
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.on_assign(consumer, tpl, cooperative)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(consumer, tpl, cooperative)
            }
            other => {
                // librdkafka documents only the two codes above; treat anything
                // else as the loss of everything held.
                let partitions = self.shared.assignment();
                error!(error = ?other, partitions = %list(&partitions), "Unexpected rebalance event; dropping the assignment.");
                self.lose(&partitions);
                unassign(consumer, tpl, cooperative);
            }
        }
    }
}

impl SourceContext {
    fn on_assign(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
        cooperative: bool,
    ) {
        let shared = &self.shared;
        let partitions = partitions_of(tpl);
        if shared.stopped() {
            debug!(partitions = %list(&partitions), "Assignment ignored: the source is stopping.");
            return;
        }
        shared.next_epoch();
        if partitions.is_empty() {
            // Nothing to ask the runtime about (more members than partitions).
            info!("Joined the group with no partitions assigned.");
            assign(consumer, tpl, cooperative, shared, partitions, Vec::new());
            return;
        }
        // Keep event order: whatever was gathered goes out first.
        shared.flush();
        info!(partitions = %list(&partitions), "Partitions assigned; waiting for resume positions.");
        let (ack, rx) = oneshot::channel();
        let event = SourceEvent::Assigned {
            partitions: partitions.clone(),
            ack,
        };
        if !shared.send(event) {
            return;
        }
        let positions = match ack::wait(rx, shared.ack_timeout, &shared.closing) {
            Answer::Given(positions) => positions,
            Answer::Closing => return,
            Answer::Dropped if shared.is_closing() => return,
            Answer::Dropped => {
                shared.fail(PollFailure::AssignAckDropped { partitions });
                return;
            }
            Answer::TimedOut => {
                shared.fail(PollFailure::AssignAckTimeout {
                    partitions,
                    timeout: shared.ack_timeout,
                });
                return;
            }
        };
        let positions: HashMap<TopicPartition, ResumeAt> = positions.into_iter().collect();
        let mut resolved = Vec::with_capacity(partitions.len());
        for tp in &partitions {
            let offset = match positions.get(tp) {
                Some(ResumeAt::Offset(o)) if *o >= 0 => Offset::Offset(*o),
                Some(ResumeAt::Offset(o)) => {
                    warn!(partition = %tp, offset = o, "Negative resume offset; using the group's committed offset.");
                    Offset::Stored
                }
                Some(ResumeAt::Default) => Offset::Stored,
                None => {
                    warn!(partition = %tp, "No resume position given; using the group's committed offset.");
                    Offset::Stored
                }
            };
            if let Err(e) = tpl.set_partition_offset(&tp.topic, tp.partition, offset) {
                shared.fail(PollFailure::Assign {
                    partitions: partitions.clone(),
                    source: e,
                });
                return;
            }
            resolved.push(match offset {
                Offset::Offset(o) => format!("{tp}@{o}"),
                _ => format!("{tp}@committed"),
            });
        }
        assign(consumer, tpl, cooperative, shared, partitions, resolved);
    }

    fn on_revoke(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
        cooperative: bool,
    ) {
        let shared = &self.shared;
        let partitions = partitions_of(tpl);
        shared.next_epoch();
        if partitions.is_empty() {
            // Nothing held, nothing to land.
        } else if shared.is_closing() {
            debug!(partitions = %list(&partitions), "Partitions released while closing.");
            shared.forget(&partitions);
            shared.pending().discard(|p| partitions.contains(p));
        } else if consumer.assignment_lost() {
            self.lose(&partitions);
        } else {
            // Deliver what was gathered so that the runtime can land it
            // before it acknowledges.
            shared.flush();
            info!(partitions = %list(&partitions), "Partitions revoked; waiting for the runtime to land and commit them.");
            let (ack, rx) = oneshot::channel();
            let event = SourceEvent::Revoked {
                partitions: partitions.clone(),
                ack,
            };
            if shared.send(event) {
                match ack::wait(rx, shared.ack_timeout, &shared.closing) {
                    Answer::Given(()) => {
                        info!(partitions = %list(&partitions), "Revocation acknowledged.")
                    }
                    Answer::Closing => {}
                    Answer::Dropped if shared.is_closing() => {}
                    Answer::Dropped => shared.fail(PollFailure::RevokeAckDropped {
                        partitions: partitions.clone(),
                    }),
                    Answer::TimedOut => shared.fail(PollFailure::RevokeAckTimeout {
                        partitions: partitions.clone(),
                        timeout: shared.ack_timeout,
                    }),
                }
            }
            shared.forget(&partitions);
            shared.pending().discard(|p| partitions.contains(p));
        }
        unassign(consumer, tpl, cooperative);
    }

    /// Partitions taken away without a chance to commit: forget them first
    /// (commits are refused from now on), drop their gathered records, tell
    /// the runtime without waiting.
    fn lose(&self, partitions: &[TopicPartition]) {
        let shared = &self.shared;
        shared.next_epoch();
        shared.forget(partitions);
        shared.pending().discard(|p| partitions.contains(p));
        shared.flush();
        warn!(partitions = %list(partitions), "Partitions lost (session expired or fenced); their buffers must be dropped.");
        if !shared.is_closing() {
            shared.send(SourceEvent::Lost(partitions.to_vec()));
        }
    }
}

/// Records the partitions as held and hands the (offset-resolved) list to
/// librdkafka.
fn assign(
    consumer: &BaseConsumer<SourceContext>,
    tpl: &TopicPartitionList,
    cooperative: bool,
    shared: &Shared,
    partitions: Vec<TopicPartition>,
    resolved: Vec<String>,
) {
    lock(&shared.assigned).extend(partitions.iter().cloned());
    // Before fetching starts, so that none of their messages goes to the
    // consumer queue.
    if let Some(fetch) = shared.fetch().as_mut() {
        for p in &partitions {
            if !fetch.split(p) {
                warn!(partition = %p, "Cannot route the partition to the fetch queue; it is read one message at a time.");
            }
        }
    }
    let result = if cooperative {
        consumer.incremental_assign(tpl)
    } else {
        consumer.assign(tpl)
    };
    if result.is_ok() && shared.is_paused() && !partitions.is_empty() {
        // Assigned while paused: keep the new partitions from fetching too.
        if let Err(e) = consumer.pause(tpl) {
            warn!(error = %e, partitions = %list(&partitions), "Pausing newly assigned partitions failed.");
        }
    }
    match result {
        Ok(()) if resolved.is_empty() => {}
        Ok(()) => {
            info!(positions = %resolved.join(", "), paused = shared.is_paused(), "Partitions assigned.")
        }
        Err(e) => {
            shared.forget(&partitions);
            shared.fail(PollFailure::Assign {
                partitions,
                source: e,
            });
        }
    }
}

/// `topic/partition` names, comma-separated, for logs.
pub(crate) fn list(partitions: &[TopicPartition]) -> String {
    partitions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn unassign(consumer: &BaseConsumer<SourceContext>, tpl: &TopicPartitionList, cooperative: bool) {
    let result = if cooperative {
        consumer.incremental_unassign(tpl)
    } else {
        consumer.unassign()
    };
    if let Err(e) = result {
        error!(error = %e, "Unassigning partitions failed.");
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    let mut v: Vec<TopicPartition> = tpl
        .elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect();
    v.sort();
    v
}
